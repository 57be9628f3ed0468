"""lab.fuzz.cbor: each hostile piece is what it says it is, so the targets may sign it where they do."""

from __future__ import annotations

import random

import cbor2
import pytest

from firmware import strictcbor
from lab.fuzz import cbor as fuzz_cbor
from lab.fuzz.cbor import LENIENT_REFUSES, STRICT_REFUSES

# Definite-length structures for a piece to stand in, as the targets' payloads are
CONTEXTS = ({"seq": 1, "issuers": [{"kid": b"12345678", "n": 5}], "x": [1, [2, {"y": 3}]]},
            [1, b"r" * 16, "venue", "device", 1_750_000_000, b"sealed"], {1: "iss", -260: {1: {"v": [{"dn": 2}]}}})
LENIENT = {"tags": frozenset({18, 61}), "indefinite": True, "duplicate_keys": True}  # tokens.dcc's decoder


def refused(data: bytes, **kw) -> bool:
    try:
        strictcbor.loads(data, max_bytes=4 << 20, **kw)
    except strictcbor.CborError:
        return True
    return False


@pytest.mark.parametrize("context", CONTEXTS, ids=("list", "record", "cwt"))
def test_a_piece_is_refused_wherever_it_stands_by_the_decoders_its_flaw_names(context):
    rng, flaws = random.Random(0), set()
    for _ in range(1_500):
        piece = fuzz_cbor.item(rng, rng.choice((4096, 65_536, 1 << 20)))
        flaws.add(piece.flaw)
        data = fuzz_cbor.splice(context, fuzz_cbor.random_path(rng, context), piece.data, cbor2.dumps)
        if piece.flaw in STRICT_REFUSES:
            assert refused(data), piece
        if piece.flaw in LENIENT_REFUSES:
            assert refused(data, **LENIENT), piece
        if piece.flaw == "plain":  # well-formed, and never what an integer, text or id field could take
            value = strictcbor.loads(piece.data, max_bytes=4 << 20)
            assert not isinstance(value, str | bytes) or type(value) is bytes and len(value) not in (8, 16, 32)
            assert not (type(value) is int and 0 <= value < 1 << 40)
    assert flaws == {"tag", "deep", "indefinite", "duplicate", "malformed", "plain"}


def test_a_spoilt_message_is_refused_by_the_strict_decoder():
    rng, flaws = random.Random(1), set()
    for _ in range(500):
        piece = fuzz_cbor.spoil(rng, cbor2.dumps(rng.choice(CONTEXTS)))
        flaws.add(piece.flaw)
        assert refused(piece.data), piece
        if piece.flaw in LENIENT_REFUSES:
            assert refused(piece.data, **LENIENT), piece
    assert flaws == {"malformed", "trailing", "tag", "indefinite"}


def test_every_tag_cbor2_would_decode_is_thrown_and_none_a_format_allows():
    assert set(fuzz_cbor.TAGS) >= strictcbor._CBOR2_DECODES | {6, 24, 2**64 - 1}
    assert not set(fuzz_cbor.TAGS) & {18, 61}  # COSE_Sign1's and CWT's: a DCC allows them


def test_bombs_are_mostly_big_and_compress_to_a_qr_code():
    import zlib

    rng = random.Random(2)
    bombs = [fuzz_cbor.bomb(rng, 65_536) for _ in range(200)]
    assert all(b[0] in (0xC4, 0xC5) for b in bombs)
    big = [b for b in bombs if len(b) > 20_000]
    assert len(big) > 100 and min(len(zlib.compress(b, 9)) for b in big) < 300  # a QR holds it in base45


def test_splice_puts_raw_cbor_where_the_path_says():
    obj = {"a": [1, {"b": 2}], "c": 3}
    assert cbor2.loads(fuzz_cbor.splice(obj, ("a", 1, "b"), b"\x63xyz", cbor2.dumps)) == {"a": [1, {"b": "xyz"}],
                                                                                         "c": 3}
    assert fuzz_cbor.splice(obj, (), b"\xff", cbor2.dumps) == b"\xff"
