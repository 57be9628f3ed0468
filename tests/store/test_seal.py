"""Visit records sealed with HPKE to the health authority's key."""

import dataclasses
from types import SimpleNamespace

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from firmware.keys import new_authority
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
