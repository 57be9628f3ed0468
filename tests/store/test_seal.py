"""Visit records sealed with HPKE to the health authority's key."""

import dataclasses
from types import SimpleNamespace

import cbor2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lab.signers import new_authority
from firmware.store import records, seal
from firmware.store.records import SealedRecord, Visit
from firmware.tokens.verdict import Claims

NOW = 1_750_000_000
CTI = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture
def seal_setup(tmp_path):
    authority = new_authority(tmp_path / "authority")
    claims = Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=CTI)
    visit = Visit.of(claims, venue="cafe-1", device="door-a", ts=NOW + 2)
    return SimpleNamespace(authority=authority, visit=visit, sealed=visit.seal(authority.public_key()))


def test_visit_of_claims_takes_iss_cti_kind_and_a_fresh_rid(seal_setup):
    v = seal_setup.visit
    assert (v.iss, v.cti, v.kind, v.venue, v.device, v.ts) == ("naver", CTI, "KP1", "cafe-1", "door-a", NOW + 2)
    assert len(v.rid) == 16
    other = Visit.of(Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=CTI), "cafe-1", "door-a", NOW)
    assert other.rid != v.rid
    assert CTI.hex() not in repr(v) and repr(CTI) not in repr(v)


def test_seal_gives_a_sealed_record_with_the_clear_envelope(seal_setup):
    s = seal_setup.sealed
    assert isinstance(s, SealedRecord)
    assert (s.rid, s.venue, s.device, s.ts) == (seal_setup.visit.rid, "cafe-1", "door-a", NOW + 2)
    assert CTI not in s.enc_and_ct


def test_wire_round_trips(seal_setup):
    back = SealedRecord.from_wire(seal_setup.sealed.wire())
    assert back == seal_setup.sealed
    assert back.wire() == seal_setup.sealed.wire()


@pytest.mark.parametrize("bad", [b"\x80", b"\x86\x02\x40\x60\x60\x00\x40", b"\xa0"])
def test_from_wire_refuses_other_shapes(bad):
    with pytest.raises(ValueError):
        SealedRecord.from_wire(bad)


def test_authority_opens_the_record(seal_setup):
    plain = SealedRecord.from_wire(seal_setup.sealed.wire()).open(seal_setup.authority)
    assert plain == {
        "v": 1,
        "rid": seal_setup.visit.rid,
        "venue": "cafe-1",
        "device": "door-a",
        "ts": NOW + 2,
        "iss": "naver",
        "cti": CTI,
        "kind": "KP1",
    }


def test_another_key_cannot_open_the_record(seal_setup):
    with pytest.raises(InvalidTag):
        seal_setup.sealed.open(X25519PrivateKey.generate())


@pytest.mark.parametrize("change", [{"venue": "cafe-2"}, {"device": "door-b"}, {"rid": bytes(16)}])
def test_changed_clear_envelope_fails_to_open(seal_setup, change):
    with pytest.raises(InvalidTag):
        dataclasses.replace(seal_setup.sealed, **change).open(seal_setup.authority)


def test_shifted_venue_device_boundary_is_detected(seal_setup):
    moved = dataclasses.replace(seal_setup.sealed, venue="cafe-1d", device="oor-a")
    with pytest.raises((InvalidTag, ValueError)):
        moved.open(seal_setup.authority)


def test_wire_bytes_do_not_contain_the_token_id(seal_setup):
    wire = seal_setup.sealed.wire()
    assert CTI not in wire and CTI.hex().encode() not in wire
    assert seal_setup.visit.plaintext().find(CTI) >= 0  # the check above is meaningful
    assert CTI.hex() not in repr(seal_setup.sealed)


def test_sealing_twice_gives_different_ciphertexts(seal_setup):
    again = seal_setup.visit.seal(seal_setup.authority.public_key())
    assert again.enc_and_ct != seal_setup.sealed.enc_and_ct
    assert again.open(seal_setup.authority) == seal_setup.sealed.open(seal_setup.authority)


# --- a record from a device the custodian cannot see into (issue 15) ---------------------------------

def _wire(*fields) -> bytes:
    return cbor2.dumps(list(fields))


@pytest.mark.parametrize("fields, why", [
    ((1, bytes(16), "cafe-1", "door-a", -1, b"x"), "ts"),  # a time before 1970
    ((1, bytes(16), "cafe-1", "door-a", cbor2.CBORTag(2, b"\x01" + bytes(8)), b"x"), "ts"),  # a bignum: 2**64
    ((1, bytes(16), "cafe-1", "door-a", 1.5, b"x"), "ts"),
    ((1, bytes(16), "cafe-1", "door-a", cbor2.CBORTag(4, [-2, 10**400]), b"x"), "ts"),
    ((1, bytes(15), "cafe-1", "door-a", 1, b"x"), "rid"),
    ((1, "0" * 16, "cafe-1", "door-a", 1, b"x"), "rid"),
    ((1, bytes(16), "", "door-a", 1, b"x"), "venue"),
    ((1, bytes(16), "v" * 65, "door-a", 1, b"x"), "venue"),
    ((1, bytes(16), b"cafe-1", "door-a", 1, b"x"), "venue"),
    ((1, bytes(16), "a/b", "door-a", 1, b"x"), "venue"),  # would pass for qrgate/v1/a/b/door-a/visits
    ((1, bytes(16), "cafe-1", "+", 1, b"x"), "venue or device"),
    ((1, bytes(16), "cafe-1", b"door-a", 1, b"x"), "device"),
    ((1, bytes(16), "cafe-1", "door-a", 1, "x"), "sealed part"),
    ((True, bytes(16), "cafe-1", "door-a", 1, b"x"), "version"),
    ((2, bytes(16), "cafe-1", "door-a", 1, b"x"), "version"),
    ((1, bytes(16), "cafe-1", "door-a", 1, b"x", 0), "record"),
])
def test_from_wire_refuses_every_field_out_of_shape(fields, why):
    # The refusal names the field at fault, as a word of its own ("ts", not the "ts" inside "its").
    with pytest.raises(ValueError, match=rf"\b{why}\b"):
        SealedRecord.from_wire(_wire(*fields))


def test_from_wire_takes_one_encoding_only(seal_setup):
    wire = seal_setup.sealed.wire()
    wide_ts = wire.replace(cbor2.dumps(NOW + 2), b"\x1b" + (NOW + 2).to_bytes(8, "big"))
    indefinite = b"\x9f" + wire[1:] + b"\xff"
    for variant in (wide_ts, indefinite, wire + b"\x00", wire[:-1]):
        with pytest.raises(ValueError):
            SealedRecord.from_wire(variant)


def test_from_wire_refuses_a_record_over_the_cap_before_reading_it():
    with pytest.raises(ValueError, match="cap"):
        SealedRecord.from_wire(_wire(1, bytes(16), "cafe-1", "door-a", 1, bytes(records.MAX_WIRE)))


def _resealed(authority, sealed: SealedRecord, plaintext: bytes) -> SealedRecord:
    aad = seal.aad_for(sealed.rid, sealed.venue, sealed.device)
    return dataclasses.replace(sealed, enc_and_ct=seal.seal(plaintext, authority.public_key(), aad))


@pytest.mark.parametrize("change", [{"iss": b"naver"}, {"iss": ""}, {"kind": "KP2"}, {"cti": "0" * 32},
                                    {"cti": bytes(15)}, {"v": True}, {"v": 2}, {"extra": 1}, {"iss": None}])
def test_open_refuses_a_plaintext_that_is_not_a_visit(seal_setup, change):
    plain = {**seal_setup.sealed.open(seal_setup.authority), **change}
    bad = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    with pytest.raises(records.PlaintextError):
        bad.open(seal_setup.authority)


@pytest.mark.parametrize("plaintext", [b"\xff", cbor2.dumps([1, 2]), cbor2.dumps(cbor2.CBORTag(4, [-2, 10**400]))])
def test_open_refuses_a_plaintext_that_is_not_cbor_of_a_map(seal_setup, plaintext):
    with pytest.raises(records.PlaintextError):
        _resealed(seal_setup.authority, seal_setup.sealed, plaintext).open(seal_setup.authority)


@pytest.mark.parametrize("change", [{"ts": NOW + 3}, {"ts": float(NOW + 2)}, {"venue": "cafe-2"}])
def test_open_refuses_a_sealed_envelope_that_is_not_the_clear_one(seal_setup, change):
    plain = {**seal_setup.sealed.open(seal_setup.authority), **change}  # 1750000002.0 == 1750000002 in Python
    with pytest.raises(records.EnvelopeMismatch):
        _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain)).open(seal_setup.authority)


def test_a_record_from_the_wire_never_meets_a_general_cbor_decoder(seal_setup, monkeypatch):
    """The custodian's decode was plain cbor2.loads: one tag-4 record held every ingest for seconds (finding 2)."""
    refuse = lambda *a, **kw: pytest.fail("a general CBOR decoder read a record from the wire")  # noqa: E731
    monkeypatch.setattr(cbor2, "loads", refuse)
    monkeypatch.setattr(cbor2, "CBORDecoder", refuse)
    assert SealedRecord.from_wire(seal_setup.sealed.wire()) == seal_setup.sealed
    with pytest.raises(ValueError):
        SealedRecord.from_wire(b"\x86\x01\xc4\x82\x21\xc2\x5a\x00\x01\x00\x00" + b"\xff" * 65536)


@pytest.mark.parametrize("iss", ["n", "n" * records.MAX_ID])
def test_open_takes_an_issuer_name_of_1_to_64_characters(seal_setup, iss):
    plain = {**seal_setup.sealed.open(seal_setup.authority), "iss": iss}
    record = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    assert record.open(seal_setup.authority)["iss"] == iss


def test_a_visit_from_a_dcc_is_sealed_with_its_uvci_and_opens_as_a_dcc(seal_setup):
    uvci = "URN:UVCI:01:XX:TEST/0001#X"
    visit = Visit.of(Claims(iss="XX", iat=NOW, exp=NOW + 86400, cti=uvci, kind="DCC"), "cafe-1", "door-a", NOW)
    assert visit.kind == "DCC"
    plain = SealedRecord.from_wire(visit.seal(seal_setup.authority.public_key()).wire()).open(seal_setup.authority)
    assert (plain["kind"], plain["cti"], plain["iss"]) == ("DCC", uvci, "XX")


@pytest.mark.parametrize("length, opens", [(0, False), (1, True), (256, True), (257, False)])
def test_a_dccs_uvci_in_the_plaintext_is_1_to_256_characters(seal_setup, length, opens):
    plain = {**seal_setup.sealed.open(seal_setup.authority), "kind": "DCC", "cti": "U" * length}
    record = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    if opens:
        assert record.open(seal_setup.authority)["cti"] == "U" * length
    else:
        with pytest.raises(records.PlaintextError):
            record.open(seal_setup.authority)
