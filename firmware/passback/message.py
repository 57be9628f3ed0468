"""What one door tells the others of its venue: CBOR `[1, hash, seen_until]`, nothing else.

`hash` is the token's 16-byte keyed hash (secret.VenueSecret.hash) and
`seen_until` the Unix second its window ends. The message names neither the
device nor the token; it is 24 bytes. Whatever arrives on the venue topic
is hostile: its size is capped before a byte is read, and it is read field by
field by strictcbor.Reader (preferred serialization, exactly this layout, nothing
after it), so one accepted encoding per message and no general CBOR decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from firmware.passback.secret import HASH_BYTES
from firmware.strictcbor import CborError, Reader

VERSION = 1
MAX_BYTES = 32  # a note is 24 bytes (1 + 1 + 1 + 16 + 5); the cap is checked before anything is read
# Seconds since the epoch from 2020 to 2100, as kp1.TIME_RANGE: a value outside is a forgery or a bug.
UNTIL_RANGE = (1_577_836_800, 4_102_444_800)


class MessageError(CborError):
    """Not a passback message; the text says why, never the bytes."""


@dataclass(frozen=True)
class Note:
    hash: bytes
    seen_until: int

    def __repr__(self) -> str:  # the hash is a token's pseudonym: kept out of logs and tracebacks
        return f"Note(seen_until={self.seen_until})"


def encode(hash: bytes, seen_until: int) -> bytes:
    if len(hash) != HASH_BYTES or not UNTIL_RANGE[0] <= seen_until < UNTIL_RANGE[1]:
        raise ValueError("not a passback note")
    return cbor2.dumps([VERSION, hash, seen_until])  # preferred serialization: the one encoding parse takes


def parse(data: bytes) -> Note:
    """The note in `data`, or MessageError (raised for anything else, whatever the bytes)."""
    try:
        if not isinstance(data, (bytes, bytearray)):
            raise CborError("not bytes")
        r = Reader(data, MAX_BYTES)
        if r.array("message", 3) != 3:
            raise CborError("its message is not of 3 fields")
        if r.uint("version") != VERSION:
            raise CborError("its version is not 1")
        [hash] = r.bstrs(1, HASH_BYTES, "hash")
        seen_until = r.uint("seen_until")
        r.end()
    except MessageError:
        raise
    except CborError as exc:
        raise MessageError(str(exc)) from None
    if not UNTIL_RANGE[0] <= seen_until < UNTIL_RANGE[1]:
        raise MessageError("its seen_until is not a time between 2020 and 2100")
    return Note(hash, seen_until)
