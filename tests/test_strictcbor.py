"""firmware.strictcbor: what every decoder of outside bytes may and may not build."""

from __future__ import annotations

import cbor2
import pytest

from firmware import strictcbor
from firmware.strictcbor import CborError

CBOR2_TAGS = sorted(strictcbor._CBOR2_DECODES)


def loads(data: bytes, **kw):
    return strictcbor.loads(data, max_bytes=1 << 16, **kw)


def test_plain_values_decode_as_cbor2_would():
    value = {1: [b"x", "y", -3, 2**64 - 1, -(2**64), None, True, 1.5], "k": {}}
    assert loads(cbor2.dumps(value)) == value


@pytest.mark.parametrize("tag", [*CBOR2_TAGS, 6, 18, 24, 61, 2**32, 2**64 - 1])
def test_every_semantic_tag_is_refused_at_its_head(tag):
    with pytest.raises(CborError, match=f"semantic tag {tag} is not allowed"):
        loads(cbor2.dumps(cbor2.CBORTag(tag, 0)))
    # the head alone is enough: nothing after it is read
    with pytest.raises(CborError, match=f"semantic tag {tag} is not allowed"):
        loads(cbor2.dumps(cbor2.CBORTag(tag, 0))[:-1])


def test_a_format_may_allow_tags_cbor2_keeps_as_they_are():
    assert loads(cbor2.dumps(cbor2.CBORTag(18, [1])), tags=frozenset({18})) == cbor2.CBORTag(18, (1,))
    with pytest.raises(CborError, match="tag 4 "):
        loads(cbor2.dumps(cbor2.CBORTag(18, [cbor2.CBORTag(4, [1, 2])])), tags=frozenset({18}))
    with pytest.raises(ValueError, match="decoded by cbor2"):
        loads(b"\x00", tags=frozenset({18, 4}))


@pytest.mark.parametrize("data, why", [
    (b"\x9f\xff", "indefinite"), (b"\x5f\x41\x00\xff", "indefinite"), (b"\xa2\x01\x01\x01\x02", "Duplicate"),
    (b"\x81" * 17 + b"\x00", "nesting"), (b"\x01\x02", "trailing"), (b"\x82\x01", "premature"),
    (b"\x62\xff\xfe", "text"), (b"\x5b" + b"\xff" * 8, "premature"), (b"\x9b" + b"\xff" * 8, "premature"),
])
def test_what_a_strict_format_does_not_allow_is_a_named_error(data, why):
    with pytest.raises(CborError, match=why):
        loads(data)


def test_a_lenient_format_may_allow_indefinite_lengths_and_duplicate_keys():
    assert loads(b"\x9f\x01\xff", indefinite=True) == [1]
    assert loads(b"\xa2\x01\x01\x01\x02", duplicate_keys=True) == {1: 2}


def test_the_size_cap_comes_before_any_decoding(monkeypatch):
    monkeypatch.setattr(cbor2, "CBORDecoder", lambda *a, **kw: pytest.fail("decoded past the cap"))
    with pytest.raises(CborError, match="cap"):
        strictcbor.loads(bytes(101), max_bytes=100)
    with pytest.raises(CborError, match="not bytes"):
        strictcbor.loads("text", max_bytes=100)


# --- Reader: a fixed layout, by position --------------------------------------------------------------

def test_reader_reads_fields_in_order_and_checks_the_end():
    r = strictcbor.Reader(cbor2.dumps([7, b"ab", "cd", 2**40]), 100)
    assert (r.array("a", 4), r.uint("n"), r.bstr("b"), r.tstr("t"), r.uint("big")) == (4, 7, b"ab", "cd", 2**40)
    r.end()


def test_reader_refuses_more_items_than_the_schema_allows_before_reading_them():
    with pytest.raises(CborError, match="holds 5 items, over 4"):
        strictcbor.Reader(cbor2.dumps([0] * 5), 100).array("list", 4)
    with pytest.raises(CborError, match="holds 3 pairs, over 2"):
        strictcbor.Reader(cbor2.dumps({1: 1, 2: 2, 3: 3}), 100).map("map", 2)


def test_reader_takes_fixed_size_byte_strings_in_one_slice():
    kids = [bytes([i]) * 8 for i in range(5)]
    r = strictcbor.Reader(cbor2.dumps(kids), 100)
    assert r.bstrs(r.array("kids", 10), 8, "kids") == kids
    r.end()
    for bad in ([b"x" * 8, b"y" * 7], [b"x" * 8, "y" * 8]):
        r = strictcbor.Reader(cbor2.dumps(bad), 100)
        with pytest.raises(CborError, match="not all 8-byte"):
            r.bstrs(r.array("kids", 10), 8, "kids")


@pytest.mark.parametrize("data", [
    b"\x18\x05",  # 5 in two bytes
    b"\x19\x00\xff", b"\x1a\x00\x00\xff\xff", b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff",
])
def test_reader_takes_each_head_in_preferred_serialization_only(data):
    with pytest.raises(CborError, match="preferred"):
        strictcbor.Reader(data, 100).uint("n")


@pytest.mark.parametrize("data, call, why", [
    (b"", "uint", "ends before"), (b"\x20", "uint", "major type 1"), (b"\x1b\x00", "uint", "ends inside"),
    (b"\x43ab", "bstr", "runs past"), (b"\x1f", "uint", "indefinite"), (b"\x62\xff\xfe", "tstr", "UTF-8"),
])
def test_reader_names_what_is_wrong(data, call, why):
    with pytest.raises(CborError, match=why):
        getattr(strictcbor.Reader(data, 100), call)("field")


def test_reader_refuses_trailing_bytes_and_oversized_messages():
    r = strictcbor.Reader(b"\x01\x00", 100)
    r.uint("n")
    with pytest.raises(CborError, match="trailing"):
        r.end()
    with pytest.raises(CborError, match="cap"):
        strictcbor.Reader(bytes(101), 100)
