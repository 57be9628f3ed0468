"""CBOR that arrives from outside, decoded strictly: the one way qrgate turns untrusted bytes into values.

cbor2 on its own turns semantic tags into Python objects as it reads them:
tag 4 (a decimal fraction) over a huge integer costs O(n²) while holding the
GIL, so about 320 KB froze every thread of the daemon for 11 s. `loads` hands
cbor2 a tag table that refuses every tag at its head, before its content is
read, except the few a format names (COSE_Sign1's 18, a CWT's 61), which cbor2
has no decoder for and keeps as a plain `CBORTag`. Bignums are tags too (2, 3),
so integers stay within 64 bits. On top: definite lengths only unless asked,
no duplicate map keys unless asked, a depth cap, a size cap checked before
anything is read, and nothing after the item.

`Reader` is for formats of our own whose schema is fixed (the sealed record,
the trust list's payload): it reads them field by field, by position, each
head in preferred serialization, so such a message has one accepted encoding,
no general decoder ever sees it, and the first byte out of place ends the
reading; the work is bounded by the counts the schema allows, whatever the
bytes hold.

Checked against cbor2 6.3 (its Rust decoder consults `semantic_decoders`
with the tag number before reading the tag's content; a LookupError there
falls back to its built-in table).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar

import cbor2

T = TypeVar("T")

MAX_DEPTH = 16

# Every tag for which cbor2 6.3 builds an object of its own; none may be allowed (see `loads`).
_CBOR2_DECODES = frozenset({0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
                            43000, 55799})


class CborError(ValueError):
    """Not CBOR of the shape qrgate accepts here; the message says why (never the bytes)."""


class _OnlyTags(Mapping[int, Callable[..., object]]):
    """cbor2's `semantic_decoders`, looked up with each tag's number before its content is read."""

    def __init__(self, allowed: frozenset[int]):
        self._allowed = allowed

    def __getitem__(self, tag: int) -> NoReturn:
        if tag in self._allowed:
            raise KeyError(tag)  # cbor2 then keeps it as a CBORTag (none of its own decoders: see loads)
        raise CborError(f"semantic tag {tag} is not allowed here")

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _OnlyTags(frozenset())


def loads(data: bytes, *, max_bytes: int, tags: frozenset[int] = frozenset(), indefinite: bool = False,
          duplicate_keys: bool = False, max_depth: int = MAX_DEPTH) -> object:
    """One CBOR item of at most `max_bytes`, with no semantic tags but `tags`, and nothing after it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborError("not bytes")
    if len(data) > max_bytes:
        raise CborError(f"{len(data)} bytes, over the {max_bytes}-byte cap")
    if tags & _CBOR2_DECODES:
        raise ValueError(f"tags {sorted(tags & _CBOR2_DECODES)} would be decoded by cbor2 itself")
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, semantic_decoders=_OnlyTags(tags) if tags else _NO_TAGS,
                                allow_indefinite=indefinite, allow_duplicate_keys=duplicate_keys,
                                max_depth=max_depth)
    try:
        obj = decoder.decode()
    except CborError:
        raise
    except Exception as exc:  # cbor2 raises several types (and ValueError, TypeError, OverflowError) on junk
        if isinstance(exc.__cause__, CborError):  # a refused tag, as cbor2 passes it on
            raise exc.__cause__ from None
        raise CborError(f"bad CBOR: {str(exc)[:80] or type(exc).__name__}") from None
    if stream.tell() != len(data):
        raise CborError("trailing bytes after the CBOR item")
    return obj


class Reader:
    """Reads a CBOR message of a fixed layout field by field, each head in preferred serialization."""

    def __init__(self, data: bytes, max_bytes: int):
        if not isinstance(data, (bytes, bytearray)):
            raise CborError("not bytes")
        if len(data) > max_bytes:
            raise CborError(f"{len(data)} bytes, over the {max_bytes}-byte cap")
        self._data, self._at = bytes(data), 0

    def _head(self, major: int, what: str) -> int:
        data, at = self._data, self._at
        if at >= len(data):
            raise CborError(f"ends before its {what}")
        first = data[at]
        if first >> 5 != major:
            raise CborError(f"its {what} is of CBOR major type {first >> 5}, not {major}")
        info = first & 0x1F
        if info < 24:
            self._at = at + 1
            return info
        if info > 27:
            raise CborError(f"its {what} has an indefinite or reserved length")
        size = 1 << (info - 24)
        if at + 1 + size > len(data):
            raise CborError(f"ends inside its {what}")
        value = int.from_bytes(data[at + 1 : at + 1 + size], "big")
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise CborError(f"its {what} is not in preferred serialization")
        self._at = at + 1 + size
        return value

    def array(self, what: str, most: int) -> int:
        """The length of an array of at most `most` items."""
        n = self._head(4, what)
        if n > most:
            raise CborError(f"its {what} holds {n} items, over {most}")
        return n

    def map(self, what: str, most: int) -> int:
        """The number of pairs of a map of at most `most`."""
        n = self._head(5, what)
        if n > most:
            raise CborError(f"its {what} holds {n} pairs, over {most}")
        return n

    def bstrs(self, n: int, size: int, what: str) -> list[bytes]:
        """`n` byte strings of exactly `size` (< 24) bytes each, checked in one slice rather than item by item."""
        if not 0 <= size < 24:
            raise ValueError("a size with a one-byte head")
        start, step = self._at, 1 + size
        end = start + n * step
        head = bytes((0x40 | size,))
        if end > len(self._data) or self._data[start:end:step] != head * n:
            raise CborError(f"its {what} are not all {size}-byte strings")
        self._at = end
        # Every step-th byte is the head, so the matches are the items, back to back (C speed, not a loop).
        return re.compile(re.escape(head) + b"(.{%d})" % size, re.S).findall(self._data, start, end)

    def uint(self, what: str) -> int:
        return self._head(0, what)

    def _string(self, major: int, what: str) -> bytes:
        n = self._head(major, what)
        end = self._at + n
        if end > len(self._data):
            raise CborError(f"its {what} runs past the end")
        out = self._data[self._at : end]
        self._at = end
        return out

    def bstr(self, what: str) -> bytes:
        return self._string(2, what)

    def one_of(self, options: Mapping[bytes, T], what: str) -> T:
        """A text string that must be one of `options`, keyed by their UTF-8 (no decoding): what it names."""
        raw = self._string(3, what)
        try:
            return options[raw]
        except KeyError:
            raise CborError(f"its {what} is not one it may be") from None

    def tstr(self, what: str) -> str:
        try:
            return self._string(3, what).decode("utf-8")
        except UnicodeDecodeError:
            raise CborError(f"its {what} is not UTF-8") from None

    def fields(self, what: str, schema: Mapping[bytes, tuple[str, Callable[[Reader], Any]]],
               required: Iterable[str]) -> dict[str, Any]:
        """A map of text keys, each read by its own reader (`schema`: by the key's UTF-8, its name and reader), in
        any order, each once, no other key, and every one of `required` there: a format's fields by name."""
        out: dict[str, Any] = {}
        for _ in range(self.map(what, len(schema))):
            key, read = self.one_of(schema, f"{what}'s key")
            if key in out:
                raise CborError(f"its {what} repeats a key")
            out[key] = read(self)
        missing = [k for k in required if k not in out]
        if missing:
            raise CborError(f"its {what} lacks {', '.join(missing)}")
        return out

    def end(self) -> None:
        if self._at != len(self._data):
            raise CborError("trailing bytes after its last field")
