"""The revoked-cards file: what a card issuer sends the authority, and what `qrgate trust build --revoked-cards` reads.

One `kid:card_id:last_day` a line: the kid and card id in hex (16 and 32
digits), and the last day the card is valid (YYYY-MM-DD, as printed on it),
which lets the authority leave a card out of its lists once it has expired
anyway (a list holds at most 16,384 revoked cards). A line without the day (the
first files had none) is kept for good. Blank lines and `#` comments are allowed. It names cards by their ids, never by their lookup
numbers or anyone's name; the authority turns each pair into a keyed hash in
the next trust list (tokens.kc1.revocation_hash), so the list that reaches
every door names no card to a reader who has not got it in hand. A centre
appends to its file (`qrgate card revoke`) and sends the whole file each
time; lines the authority has seen before change nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from firmware.errors import QrgateError

KID_BYTES, CTI_BYTES = 8, 16
HEADER = ("# qrgate revoked cards: one kid:card_id:last_day (hex, hex, YYYY-MM-DD) a line, for the authority's "
          "`qrgate trust build --revoked-cards`\n")


class RevokedError(QrgateError, ValueError):
    """A line of a revoked-cards file that is not kid:card_id[:last_day]."""


@dataclass(frozen=True)
class Revoked:
    kid: bytes
    card_id: bytes
    last_day: dt.date | None = None  # None: not known, kept for good

    def expired(self, today: dt.date) -> bool:
        """Past its last day by more than one: the card expires during the day after it, at the hour it was issued."""
        return self.last_day is not None and today > self.last_day + dt.timedelta(days=1)


def parse(text: str, name: str = "revoked cards") -> list[Revoked]:
    """The revoked cards of a file's text, in order; a bad line is an error naming its number."""
    cards = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([0-9a-fA-F]+):([0-9a-fA-F]+)(?::(\d{4}-\d{2}-\d{2}))?", line)
        try:
            if not match or len(match[1]) != 2 * KID_BYTES or len(match[2]) != 2 * CTI_BYTES:
                raise ValueError
            last_day = dt.date.fromisoformat(match[3]) if match[3] else None
        except ValueError:
            raise RevokedError(f"{name} line {n}: not kid:card_id:last_day, {2 * KID_BYTES} and {2 * CTI_BYTES} hex "
                               f"digits and a date ({line[:70]!r})") from None
        cards.append(Revoked(bytes.fromhex(match[1]), bytes.fromhex(match[2]), last_day))
    return cards


def read(path: Path) -> list[Revoked]:
    return parse(_text(Path(path)), str(path))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RevokedError(f"{path} is not a revoked-cards file: not text") from None


def append(path: Path, kid: bytes, cti: bytes, last_day: dt.date) -> bool:
    """Add the card's line (with a header comment if the file is new); False if the file has it already."""
    path = Path(path)
    before = _text(path) if path.exists() else ""
    if any((r.kid, r.card_id) == (kid, cti) for r in parse(before, str(path))):
        return False
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        lead = HEADER if not before else "" if before.endswith("\n") else "\n"  # a hand-edited last line ends
        data = (lead + f"{kid.hex()}:{cti.hex()}:{last_day.isoformat()}\n").encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
