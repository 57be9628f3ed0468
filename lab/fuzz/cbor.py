"""Hostile CBOR for the fuzz targets: what a peer on the broker, or a QR code, can hand a decoder.

Every semantic tag cbor2 would build an object for (and others, and big tag
numbers), bignums, tag 4/5 bombs over huge integers (the ~320 KB trust list
that froze the daemon for 11 s; the 189-character `HC1:` that cost the door
0.4 s), deep nesting, indefinite lengths, duplicate keys, huge declared
lengths, huge real arrays, maps keyed by floats, bools and arrays, invalid
UTF-8, reserved heads; and whole messages truncated, with trailing bytes,
wrapped in a tag or made indefinite.

Each piece says what is wrong with it (`Hostile.flaw`), so that a target may
sign it where the harness knows it leaves the message invalid, and its oracle
stays "nothing accepted that the harness did not sign as valid": a flaw in
`STRICT_REFUSES` is refused by `strictcbor.loads` with its defaults (the trust
list, the sealed record's plaintext) wherever it stands in a definite-length
structure; one in `LENIENT_REFUSES` also by the DCC's decoder, which allows
indefinite lengths and duplicate keys (and tags 18 and 61, which no piece holds
but inside a message `spoil` wraps). A `plain` piece is well-formed and
refused by nothing: it only ever stands where no well-formed value can be
right (it is never a text, never an integer in 0..2**40, never a byte string
of 8, 16 or 32 bytes).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

TAGS = (*range(7), *range(21, 38), 52, 54, 100, 256, 258, 260, 261, 1004, 43000, 55799,
        65535, 2**32 - 1, 2**63, 2**64 - 1)  # every tag cbor2 decodes itself, its neighbours, and big ones
STRICT_REFUSES = frozenset({"tag", "malformed", "deep", "indefinite", "duplicate", "trailing"})
LENIENT_REFUSES = frozenset({"tag", "malformed", "deep", "trailing"})
DEEP = 17  # one container more than strictcbor.MAX_DEPTH allows


@dataclass(frozen=True)
class Hostile:
    data: bytes
    flaw: str  # "tag", "malformed", "deep", "indefinite", "duplicate", "trailing" or "plain"


def head(major: int, n: int, wide: bool = False) -> bytes:
    """A CBOR head; `wide` spends one size more than preferred serialization allows (where one is left)."""
    if n < 24 and not wide:
        return bytes((major << 5 | n,))
    fits = [(info, size) for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)) if n < 1 << 8 * size]
    info, size = fits[1] if wide and n >= 24 and len(fits) > 1 else fits[0]
    return bytes((major << 5 | info,)) + n.to_bytes(size, "big")


def _length(rng: random.Random, size: int) -> int:
    """Mostly small; sometimes about a third of `size` (the 11 s trust list), at it, or just past it."""
    r = rng.random()
    if r < 0.6:
        return rng.choice((0, 1, 8, 9, 23, 24, 100, 255, 256, 1000))
    if r < 0.93:
        return rng.randint(1, max(1, size // 3))
    return max(0, size + rng.choice((-64, -8, -1, 0, 1, 64)))


def _filler(rng: random.Random, n: int) -> bytes:
    """n bytes: runs that compress to nothing (a zlib bomb's payload) or noise that does not."""
    return bytes((rng.choice((0x00, 0xFF, 0x7F)),)) * n if rng.random() < 0.7 else rng.randbytes(n)


def bignum(rng: random.Random, n: int, negative: bool = False) -> bytes:
    return head(6, 3 if negative else 2) + head(2, n) + _filler(rng, n)


def _tag(rng: random.Random, size: int) -> bytes:
    tag = rng.choice(TAGS)
    content = rng.choice((b"\x01", b"\x1a\x68\x4e\xe1\x80", b"\x74" + b"2021-06-01T00:00:00Z", b"\x48" + bytes(8),
                          b"\x82\x21\x19\x6a\xb3", b"\x82\x3b" + b"\xff" * 8 + b"\x01", b"\xa0", b"\x80", b"\xf6",
                          head(6, rng.choice(TAGS)) + b"\x00", bignum(rng, _length(rng, size))))
    return head(6, tag) + content


def bomb(rng: random.Random, size: int) -> bytes:
    """Tag 4 (decimal fraction) or 5 (bigfloat) over a huge mantissa or exponent: O(n²) in cbor2's decoder."""
    exponent = rng.choice((b"\x00", b"\x21", b"\x1b\x7f" + b"\xff" * 7, b"\x3b\x7f" + b"\xff" * 7, b"\x1a\x00\x0f\x42\x40",
                           bignum(rng, rng.choice((9, 64, 1000)))))
    n = rng.choice((size // 10, size // 3, size - 64, size - 16, _length(rng, size)))  # mostly big: the point
    mantissa = bignum(rng, max(0, n), rng.random() < 0.3) if rng.random() < 0.9 else b"\x1b" + b"\xff" * 8
    return head(6, rng.choice((4, 5))) + b"\x82" + exponent + mantissa


def _deep(rng: random.Random, size: int) -> bytes:
    n = rng.choice((DEEP, DEEP + 1, 64, 1000, max(DEEP, min(size // 2, 200_000))))
    opener = rng.choice((b"\x81", b"\xa1\x00", b"\x82\x00", b"\xa1\x61k"))
    return opener * n + b"\x00"


def _indefinite(rng: random.Random, size: int) -> bytes:
    n = _length(rng, size) // 2
    return rng.choice((
        b"\x9f\x01\x02\xff", b"\xbf\x01\x02\xff", b"\x5f\x41a\x41b\xff", b"\x7f\x61a\x61b\xff", b"\x9f\xff",
        b"\x9f\x9f\xff\xff", b"\xbf\x61k\x9f\xff\xff", b"\x9f" + b"\x00" * n + b"\xff", b"\x5f" + b"\x41\x00" * (n // 2) + b"\xff",
        b"\x9f\x01\x02", b"\x5f\x41a",  # never closed
    ))


def _duplicate(rng: random.Random, size: int) -> bytes:
    n = max(1, _length(rng, size) // 3)
    return rng.choice((
        b"\xa2\x01\x00\x01\x00", b"\xa2\x63seq\x01\x63seq\x02", b"\xa2\x41k\x00\x41k\x00", b"\xa2\x80\x00\x80\x01",
        b"\xa2\x01\x00\xf9\x3c\x00\x01",  # 1 and 1.0: one key to Python
        head(5, n + 1) + b"\x01\x00" * (n + 1),  # as many entries as bytes allow, all under one key
        head(5, n + 1) + _distinct_pairs(min(n, _MAX_DISTINCT)) + b"\x00\x01",  # the repeat comes last
    ))


_MAX_DISTINCT = 200_000


@functools.cache
def _all_distinct_pairs() -> bytes:
    return b"".join(head(0, i) + b"\x80" for i in range(_MAX_DISTINCT))


def _distinct_pairs(count: int) -> bytes:
    """`count` map entries {0: [], 1: [], ...}: a prefix of one table built once (a fresh join costs 60 ms)."""
    c = count
    end = 2 * min(c, 24) + 3 * max(0, min(c, 256) - 24) + 4 * max(0, min(c, 65536) - 256) + 6 * max(0, c - 65536)
    return _all_distinct_pairs()[:end]


def _malformed(rng: random.Random, size: int) -> bytes:
    """Refused by any decoder wherever it stands: lengths past any message, reserved heads, a lone break."""
    big = rng.choice((2**32, 2**40, 2**63, 2**64 - 1)).to_bytes(8, "big")
    return rng.choice((
        bytes((rng.choice((0x5B, 0x7B, 0x9B, 0xBB)),)) + big + b"\x00",
        bytes((rng.choice((0x5A, 0x7A, 0x9A, 0xBA)),)) + b"\xff\xff\xff\xff\x00",
        bytes((rng.choice((0x1C, 0x1D, 0x1E, 0x1F, 0x3C, 0x5C, 0x7C, 0x9C, 0xBC, 0xDC, 0xDF, 0xFC, 0xFD, 0xFE, 0xFF)),)),
        b"\x62\xff\xfe", b"\x63\xed\xa0\x80", b"\x61\xc0",  # invalid UTF-8, a surrogate, an overlong form
        b"\xf8\x00", b"\xf8\x1f",  # two-byte simple values below 32
    ))


def _plain(rng: random.Random, size: int) -> bytes:
    """Well-formed, untagged, definite, shallow: floats, simple values, far integers, odd keys, huge arrays."""
    n = _length(rng, size)
    k = rng.randrange(4)
    if k == 0:
        return rng.choice((b"\xfb\x7f\xf8" + bytes(6), b"\xf9\x7c\x00", b"\xf9\xfc\x00", b"\xfa\x47\xc3\x50\x00",
                           b"\xfb\x41\xda\x13\x7b\x88\x00\x00\x00", b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\x20",
                           b"\xf8\xff", b"\x1b" + b"\xff" * 8, b"\x3b" + b"\xff" * 8, b"\x1b\x00\x00\x01" + bytes(5),
                           b"\x20", b"\x3a\x7f\xff\xff\xff"))
    if k == 1:  # maps keyed by what is no COSE label, no field name
        key = rng.choice((b"\xf9\x3c\x00", b"\xfb\x7f\xf8" + bytes(6), b"\xf5", b"\xf4", b"\xf6", b"\xf7", b"\x81\x00",
                          b"\x80", b"\xa0", b"\xa1\x00\x00", b"\x41k", b"\x20", b"\x1b" + b"\xff" * 8))
        return b"\xa1" + key + rng.choice((b"\x00", b"\x63seq", b"\x80"))
    if k == 2:  # a huge array of small items: each is an object to build (empty containers are the costly ones)
        unit = rng.choice((b"\x00", b"\x80", b"\xa0", b"\x40", b"\x60", b"\x81\x00", b"\xf6", b"\xf9\x00\x00"))
        count = max(2, n // len(unit))
        return head(4, count) + unit * count
    # a huge map of distinct keys, or one huge string
    if rng.random() < 0.5:
        count = max(2, min(n // 4, _MAX_DISTINCT))
        return head(5, count) + _distinct_pairs(count)
    return head(2, max(n, 33)) + _filler(rng, max(n, 33)) if rng.random() < 0.5 else head(4, 2) + b"\x78\x40" + b"a" * 64 + b"\x80"


_KINDS = (("tag", _tag, 3), ("tag", bomb, 3), ("deep", _deep, 2), ("indefinite", _indefinite, 2),
          ("duplicate", _duplicate, 2), ("malformed", _malformed, 2), ("plain", _plain, 3))


def item(rng: random.Random, size: int) -> Hostile:
    """One hostile CBOR item of up to about `size` bytes (some at and just past it)."""
    flaw, make, _ = rng.choices(_KINDS, [w for *_, w in _KINDS])[0]
    if flaw == "tag" and rng.random() < 0.15:  # a bignum as an integer field's value
        return Hostile(bignum(rng, _length(rng, size), rng.random() < 0.5), "tag")
    return Hostile(make(rng, size), flaw)


def spoil(rng: random.Random, data: bytes) -> Hostile:
    """A whole message of one well-formed item, made hostile: truncated, with bytes after it, in a tag, or with
    its first head made indefinite. (A DCC's decoder allows indefinite lengths: made indefinite, it may pass.)"""
    k = rng.randrange(4)
    if k == 0 and data:
        return Hostile(data[: rng.randrange(len(data))], "malformed")
    if k == 1:
        return Hostile(data + rng.choice((b"\x00", b"\xff", b"\xa0", b"\xd8\x18", rng.randbytes(rng.randint(1, 9)))),
                       "trailing")
    if k == 2:
        return Hostile(head(6, rng.choice(TAGS)) + data, "tag")
    indefinite = _indefinite_form(data)
    return Hostile(indefinite, "indefinite") if indefinite is not None else Hostile(data[:-1], "malformed")


def _indefinite_form(data: bytes) -> bytes | None:
    """`data` with its first head (an array's, a map's, a string's) made indefinite; None for other items."""
    if not data:
        return None
    major, info = data[0] >> 5, data[0] & 0x1F
    if major not in (2, 3, 4, 5) or info > 27:
        return None
    skip = 1 + (0 if info < 24 else 1 << (info - 24))
    if major in (4, 5):
        return bytes((major << 5 | 31,)) + data[skip:] + b"\xff"
    return bytes((major << 5 | 31,)) + data + b"\xff"  # one chunk: the definite string itself


def random_path(rng: random.Random, obj: object, stop: float = 0.3) -> tuple:
    """The path (keys and indices) to a value inside `obj` (`obj` itself: the empty path), by a random walk."""
    path = []
    while isinstance(obj, dict | list) and obj and rng.random() >= stop:
        key = rng.choice(list(obj)) if isinstance(obj, dict) else rng.randrange(len(obj))
        path.append(key)
        obj = obj[key]
    return tuple(path)


def splice(obj: object, path: tuple, raw: bytes, dumps) -> bytes:
    """`obj` encoded by `dumps` with the value at `path` replaced by the raw CBOR `raw`."""
    if not path:
        return raw
    marker = random.Random(repr(path)).randbytes(16) + b"\x00hostile-cbor\x00"  # a value no world holds
    encoded = dumps(marker)
    replaced = dumps(_replace(obj, path, marker))
    if replaced.count(encoded) != 1:
        raise ValueError("the marker is not unique in the encoding")
    return replaced.replace(encoded, raw)


def _replace(obj: object, path: tuple, value: object) -> object:
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, key: _replace(obj[key], rest, value)}
    out = list(obj)
    out[key] = _replace(obj[key], rest, value)
    return out
