"""The venue topic's message: exactly `[1, hash, seen_until]` in preferred serialization, capped, or refused."""

from __future__ import annotations

import cbor2
import pytest

from firmware.passback import message
from firmware.passback.message import MessageError

H = bytes(range(16))
UNTIL = 1_750_000_020


def test_a_note_goes_and_comes_back():
    data = message.encode(H, UNTIL)
    assert data == cbor2.dumps([1, H, UNTIL]) and len(data) == 24
    note = message.parse(data)
    assert (note.hash, note.seen_until) == (H, UNTIL)
    assert H.hex() not in repr(note) and str(list(H)) not in repr(note)


@pytest.mark.parametrize("data, why", [
    (b"", "ends before"),
    (cbor2.dumps([1, H, UNTIL]) + b"\x00", "trailing"),
    (cbor2.dumps([2, H, UNTIL]), "version"),
    (cbor2.dumps([1, H[:15], UNTIL]), "16-byte"),
    (cbor2.dumps([1, H + b"\x00", UNTIL]), "16-byte"),
    (cbor2.dumps([1, H]), "3 fields"),
    (cbor2.dumps([1, H, UNTIL, 0]), "over 3"),
    (cbor2.dumps({1: H}), "major type"),
    (cbor2.dumps([1, H.hex()[:16], UNTIL]), "16-byte"),
    (cbor2.dumps([1, H, -UNTIL]), "major type"),
    (cbor2.dumps([1, H, 5]), "2020"),
    (cbor2.dumps([1, H, 2**40]), "2020"),
    (cbor2.dumps([1, H, float(UNTIL)]), "major type"),
    (b"\x9f\x01\x50" + H + b"\x1a" + UNTIL.to_bytes(4, "big") + b"\xff", "indefinite"),  # indefinite array
    (b"\x83\x18\x01\x50" + H + b"\x1a" + UNTIL.to_bytes(4, "big"), "preferred"),  # 1 in two bytes
    (b"\x83\x01\x50" + H + b"\x1b" + UNTIL.to_bytes(8, "big"), "preferred"),  # until in eight
    (b"\x83\x01\x50" + H + b"\xc1\x1a" + UNTIL.to_bytes(4, "big"), "major type"),  # a tag
    (bytes(33), "cap"),
    (cbor2.dumps([1, H, UNTIL, "x" * 1000]), "cap"),
    (b"\x83\x01\x5b" + (2**63).to_bytes(8, "big"), "16-byte"),  # a huge length, never read
])
def test_anything_else_is_refused_with_a_reason_and_no_bytes(data, why):
    with pytest.raises(MessageError) as caught:
        message.parse(data)
    assert why in str(caught.value)
    assert H.hex() not in str(caught.value)


def test_a_megabyte_is_refused_before_it_is_read():
    with pytest.raises(MessageError, match="cap"):
        message.parse(b"\x83" + bytes(1 << 20))


def test_only_bytes_are_a_message():
    with pytest.raises(MessageError):
        message.parse("not bytes")  # type: ignore[arg-type]


def test_encode_refuses_what_parse_would():
    for h, until in ((H[:8], UNTIL), (H, 5)):
        with pytest.raises(ValueError):
            message.encode(h, until)


@pytest.mark.parametrize("data, text", [
    pytest.param("text", "not bytes", id="not-bytes"),
    pytest.param(cbor2.dumps({1: H}), "its message is of CBOR major type 5, not 4", id="a-map"),
    pytest.param(cbor2.dumps([1, H]), "its message is not of 3 fields", id="two-fields"),
    pytest.param(cbor2.dumps(["1", H, UNTIL]), "its version is of CBOR major type 3, not 0", id="version-text"),
    pytest.param(cbor2.dumps([2, H, UNTIL]), "its version is not 1", id="version-2"),
    pytest.param(cbor2.dumps([1, "h", UNTIL]), "its hash are not all 16-byte strings", id="hash-text"),
    pytest.param(cbor2.dumps([1, H, "t"]), "its seen_until is of CBOR major type 3, not 0", id="until-text"),
    pytest.param(cbor2.dumps([1, H, 5]), "its seen_until is not a time between 2020 and 2100", id="until-early"),
])
def test_each_refusal_says_which_field_and_why(data, text):
    """The reason is what the door logs for a bad message (never its bytes): it must name the field."""
    with pytest.raises(MessageError) as caught:
        message.parse(data)
    assert str(caught.value) == text


def test_the_first_and_last_seconds_allowed_are_the_range_s_own():
    lo, hi = message.UNTIL_RANGE
    for until in (lo, hi - 1):
        assert message.parse(message.encode(H, until)).seen_until == until
    for until in (lo - 1, hi):
        with pytest.raises(ValueError, match="^not a passback note$"):
            message.encode(H, until)
        with pytest.raises(MessageError):
            message.parse(cbor2.dumps([1, H, until]))
