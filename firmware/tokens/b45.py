"""Strict base45 decoding (RFC 9285) for the verify path, in a handful of C-level operations.

The `base45` package stays the encoder. Its decoder is not used on untrusted
input for two measured reasons: it strips trailing newlines before decoding (a
text that is not base45 would pass), and in pure Python it costs about as much
as the rest of token parsing together (≈26 µs for a 213-character token on one
x86 core, against ≈5 µs here; `qrgate bench verify` shows the whole budget).

How: the digits of each triple are laid into 32-bit lanes of three big
integers, so one multiply-add computes every triple's value at once with no
carry between lanes; a lane above 65535 shows as a non-zero second byte.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

_VALID = re.compile(r"[0-9A-Z $%*+\-./:]*")
_DIGITS = bytes.maketrans(ALPHABET.encode("ascii"), bytes(range(45)))


class Base45Error(ValueError):
    """Not a canonical base45 string: a character outside the alphabet, a bad length or a value out of range."""


def decode(text: str) -> bytes:
    n = len(text)
    if n % 3 == 1:
        raise Base45Error("base45 length leaves a single character")
    if not _VALID.fullmatch(text):
        raise Base45Error("character outside the base45 alphabet")
    digits = text.encode("ascii").translate(_DIGITS)
    k, tail = divmod(n, 3)
    lane = bytearray(4 * k)
    lane[3::4] = digits[0 : 3 * k : 3]
    low = int.from_bytes(lane, "big")
    lane[3::4] = digits[1 : 3 * k : 3]
    mid = int.from_bytes(lane, "big")
    lane[3::4] = digits[2 : 3 * k : 3]
    high = int.from_bytes(lane, "big")
    wide = (low + 45 * mid + 2025 * high).to_bytes(4 * k, "big")
    if wide[1::4].count(0) != k:
        raise Base45Error("base45 triple above 65535")
    out = bytearray(2 * k + (tail > 0))
    out[0 : 2 * k : 2] = wide[2::4]
    out[1 : 2 * k : 2] = wide[3::4]
    if tail:
        last = digits[-2] + 45 * digits[-1]
        if last > 0xFF:
            raise Base45Error("base45 pair above 255")
        out[-1] = last
    return bytes(out)
