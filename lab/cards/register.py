"""The card issuer's register: one CSV line per card, mapping its lookup number to its card id, and nothing personal.

One register per issuer key. It is what lets staff revoke a lost card by the
number printed on it, and it holds what that takes and no more: the number,
the card id and the kid (what the revocation names), the dates, the
attributes signed into the card. No name, no phone number: the centre keeps
who holds which number in its own files, apart from this tool, so that the
register and the revocation file it feeds link no card to a person. The file
is created 0600 with its header, opened append-only under an exclusive lock
(two staff issuing at once each add a whole line), and never rewritten.
The number is kept as printed ("1234 5678 9012"), which a spreadsheet leaves
as text.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from firmware.errors import QrgateError
from lab.cards import number

COLUMNS = ("number", "card_id", "kid", "issued", "valid_until", "attributes")


class RegisterError(QrgateError, ValueError):
    """A register that is not one, is another issuer's, or lacks the card asked for."""


@dataclass(frozen=True)
class Entry:
    number: str  # 12 digits
    card_id: bytes  # the card's cti, 16 bytes
    kid: bytes  # its issuer's key id, 8 bytes
    issued: str  # UTC date, YYYY-MM-DD
    valid_until: str  # the last UTC day the card is valid all day, as printed on it
    attributes: tuple[str, ...] = ()

    def row(self) -> list[str]:
        return [number.display(self.number), self.card_id.hex(), self.kid.hex(), self.issued, self.valid_until,
                " ".join(self.attributes)]


def read(path: Path) -> list[Entry]:
    """Every entry, each line checked; a missing file has none."""
    try:
        rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline="")))
    except FileNotFoundError:
        return []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RegisterError(f"{path} is not a card register ({exc})") from None
    if not rows:
        return []
    if tuple(rows[0]) != COLUMNS:
        raise RegisterError(f"{path} is not a card register: its header is not {','.join(COLUMNS)}")
    return [_entry(path, i, row) for i, row in enumerate(rows[1:], start=2)]


def _entry(path: Path, line: int, row: list[str]) -> Entry:
    where = f"{path} line {line}"
    if len(row) != len(COLUMNS):
        raise RegisterError(f"{where}: {len(row)} fields, not {len(COLUMNS)}")
    num, card_id, kid, issued, valid_until, attributes = row
    try:
        parsed = number.parse(num)
    except number.NumberError as exc:
        raise RegisterError(f"{where}: {exc}") from None
    if not re.fullmatch(r"[0-9a-f]{32}", card_id) or not re.fullmatch(r"[0-9a-f]{16}", kid):
        raise RegisterError(f"{where}: the card id is 32 hex digits and the kid 16")
    if parsed != number.of_card(bytes.fromhex(card_id)):
        raise RegisterError(f"{where}: the number is not the card id's")
    return Entry(parsed, bytes.fromhex(card_id), bytes.fromhex(kid), issued, valid_until, tuple(attributes.split()))


def check_issuer(path: Path, kid: bytes) -> list[Entry]:
    """The register's entries, if it is `kid`'s (or new); another issuer's register is refused."""
    entries = read(path)
    others = sorted({e.kid.hex() for e in entries if e.kid != kid})
    if others:
        raise RegisterError(f"{path} is the register of another issuer key ({', '.join(others)}), not of "
                            f"{kid.hex()}: each card issuer keeps a register of its own")
    return entries


def find(path: Path, lookup: str) -> Entry:
    """The card with this lookup number (12 digits, checked), or a clear error."""
    if not Path(path).exists():
        raise RegisterError(f"{path}: no such register")
    for entry in read(path):
        if entry.number == lookup:
            return entry
    raise RegisterError(f"no card numbered {number.display(lookup)} in {path}")


def append(path: Path, entry: Entry) -> None:
    """Add the entry's line, with the header first if the file is new. Refuses another issuer's register."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        check_issuer(path, entry.kid)  # again, under the lock: what another process added meanwhile counts
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            writer.writerow(COLUMNS)
        writer.writerow(entry.row())
        data = out.getvalue().encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
