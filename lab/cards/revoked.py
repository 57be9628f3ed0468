"""The revoked-cards file: what a card issuer sends the authority, and what `qrgate trust build --revoked-cards` reads.

One `kid:card_id` pair a line, in hex (16 and 32 digits); blank lines and `#`
comments are allowed. It names cards by their ids, never by their lookup
numbers or anyone's name; the authority turns each pair into a keyed hash in
the next trust list (tokens.kc1.revocation_hash), so the list that reaches
every door names no card to a reader who has not got it in hand. A centre
appends to its file (`qrgate card revoke`) and sends the whole file each
time; lines the authority has seen before change nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from firmware.errors import QrgateError

KID_BYTES, CTI_BYTES = 8, 16
HEADER = ("# qrgate revoked cards: one kid:card_id (hex) a line, for the authority's "
          "`qrgate trust build --revoked-cards`\n")


class RevokedError(QrgateError, ValueError):
    """A line of a revoked-cards file that is not a kid:card_id pair."""


def parse(text: str, name: str = "revoked cards") -> list[tuple[bytes, bytes]]:
    """The (kid, card id) pairs of a file's text, in order; a bad line is an error naming its number."""
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([0-9a-fA-F]+):([0-9a-fA-F]+)", line)
        if not match or len(match[1]) != 2 * KID_BYTES or len(match[2]) != 2 * CTI_BYTES:
            raise RevokedError(f"{name} line {n}: not kid:card_id, {2 * KID_BYTES} and {2 * CTI_BYTES} hex digits "
                               f"({line[:60]!r})")
        pairs.append((bytes.fromhex(match[1]), bytes.fromhex(match[2])))
    return pairs


def read(path: Path) -> list[tuple[bytes, bytes]]:
    return parse(_text(Path(path)), str(path))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RevokedError(f"{path} is not a revoked-cards file: not text") from None


def append(path: Path, kid: bytes, cti: bytes) -> bool:
    """Add the pair (with a header comment if the file is new); False if the file has it already."""
    path = Path(path)
    before = _text(path) if path.exists() else ""
    if (kid, cti) in parse(before, str(path)):
        return False
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        lead = HEADER if not before else "" if before.endswith("\n") else "\n"  # a hand-edited last line ends
        data = (lead + f"{kid.hex()}:{cti.hex()}\n").encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
