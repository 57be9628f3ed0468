"""Visit records sealed with HPKE to the health authority's key: version 2 (what devices write), version 1 (what
they wrote), and the authority's opening of both."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cbor2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization

from lab.signers import new_authority
from firmware.store import records, seal, seal_v1
from firmware.store.records import SealedRecord, Visit
from firmware.store.seal import OpeningKey
from firmware.tokens.verdict import Claims

NOW = 1_750_000_000
CTI = bytes.fromhex("00112233445566778899aabbccddeeff")
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(params=["MLKEM768-X25519", "X25519"])
def seal_setup(tmp_path, request):
    authority = new_authority(tmp_path / "authority", seal.BY_ALG[request.param])
    claims = Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=CTI)
    visit = Visit.of(claims, venue="cafe-1", device="door-a", ts=NOW + 2)
    return SimpleNamespace(authority=authority, visit=visit, sealed=visit.seal(authority.public_key()))


def test_new_authority_keys_are_the_post_quantum_hybrid(tmp_path):
    key = new_authority(tmp_path / "a")
    assert key.suite is seal.MLKEM768_X25519 is seal.DEFAULT
    record = Visit.of(Claims("naver", NOW, NOW + 15, CTI), "cafe-1", "door-a", NOW).seal(key.public_key())
    assert (record.version, record.suite, record.kid) == (2, 0x647A, key.public_key().kid)
    assert len(record.enc_and_ct) == seal.MLKEM768_X25519.enc_length + records.PAD + 16 == 1120 + 192 + 16


def test_visit_of_claims_takes_iss_cti_kind_and_a_fresh_rid(seal_setup):
    v = seal_setup.visit
    assert (v.iss, v.cti, v.kind, v.venue, v.device, v.ts) == ("naver", CTI, "KP1", "cafe-1", "door-a", NOW + 2)
    assert len(v.rid) == 16
    other = Visit.of(Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=CTI), "cafe-1", "door-a", NOW)
    assert other.rid != v.rid
    assert CTI.hex() not in repr(v) and repr(CTI) not in repr(v)


def test_seal_gives_a_sealed_record_naming_its_suite_and_key(seal_setup):
    s, public = seal_setup.sealed, seal_setup.authority.public_key()
    assert isinstance(s, SealedRecord)
    assert (s.rid, s.venue, s.device, s.ts) == (seal_setup.visit.rid, "cafe-1", "door-a", NOW + 2)
    assert (s.version, s.suite, s.kid) == (2, public.suite.kem_id, public.kid)
    assert CTI not in s.enc_and_ct


def test_wire_round_trips(seal_setup):
    back = SealedRecord.from_wire(seal_setup.sealed.wire())
    assert back == seal_setup.sealed
    assert back.wire() == seal_setup.sealed.wire()
    assert cbor2.loads(back.wire())[:7] == [2, back.rid, "cafe-1", "door-a", NOW + 2, back.suite, back.kid]


@pytest.mark.parametrize("bad", [b"\x80", b"\x86\x02\x40\x60\x60\x00\x40", b"\xa0"])
def test_from_wire_refuses_other_shapes(bad):
    with pytest.raises(ValueError):
        SealedRecord.from_wire(bad)


def test_authority_opens_the_record(seal_setup):
    plain = SealedRecord.from_wire(seal_setup.sealed.wire()).open(seal_setup.authority)
    assert plain == {"v": 2, "rid": seal_setup.visit.rid, "venue": "cafe-1", "device": "door-a", "ts": NOW + 2,
                     "iss": "naver", "cti": CTI, "kind": "KP1"}


def test_another_key_cannot_open_the_record(seal_setup):
    stranger = OpeningKey.generate(seal_setup.authority.suite)
    with pytest.raises(records.KeyMismatch, match="^the record is sealed to another authority key$"):
        seal_setup.sealed.open(stranger)
    named = dataclasses.replace(seal_setup.sealed, kid=stranger.public_key().kid)  # a record that lies about its key
    with pytest.raises(InvalidTag):
        named.open(stranger)


@pytest.mark.parametrize("change", [{"venue": "cafe-2"}, {"device": "door-b"}, {"rid": bytes(16)}, {"ts": NOW + 3}])
def test_a_record_opened_under_another_envelope_fails(seal_setup, change):
    """The envelope is bound through HPKE's info (the public API's only binding): any change, the time too, fails."""
    with pytest.raises(InvalidTag):
        dataclasses.replace(seal_setup.sealed, **change).open(seal_setup.authority)


def test_shifted_venue_device_boundary_is_detected(seal_setup):
    moved = dataclasses.replace(seal_setup.sealed, venue="cafe-1d", device="oor-a")
    with pytest.raises(InvalidTag):
        moved.open(seal_setup.authority)


def test_the_info_is_the_label_and_the_clear_envelope_as_the_wire_has_it(seal_setup):
    s = seal_setup.sealed
    assert s.info() == records.INFO_V2 + cbor2.dumps([2, s.rid, s.venue, s.device, s.ts, s.suite, s.kid])
    padded = seal_setup.authority.open(s.enc_and_ct, s.info())
    assert records.unpad(padded) == cbor2.dumps({"iss": "naver", "cti": CTI, "kind": "KP1"})


def test_wire_bytes_do_not_contain_the_token_id(seal_setup):
    wire = seal_setup.sealed.wire()
    assert CTI not in wire and CTI.hex().encode() not in wire
    assert seal_setup.visit.plaintext().find(CTI) >= 0  # the check above is meaningful
    assert CTI.hex() not in repr(seal_setup.sealed)


def test_sealing_twice_gives_different_ciphertexts(seal_setup):
    again = seal_setup.visit.seal(seal_setup.authority.public_key())
    assert again.enc_and_ct != seal_setup.sealed.enc_and_ct
    assert again.open(seal_setup.authority) == seal_setup.sealed.open(seal_setup.authority)


# --- records that all look alike --------------------------------------------------------------------

VISITS = [("pass", CTI, "KP1"), ("naver", CTI, "KP1"), ("kakao", CTI, "KP1"), ("toss-app", CTI, "KP1"),
          ("i" * records.MAX_ID, CTI, "KP1"), ("Mapo-gu Community Centre", CTI, "KC1"),
          ("DE", "URN:UVCI:01:DE:ABC/1234#Q", "DCC"),
          ("XX", "URN:UVCI:01:XX:" + "X" * 65, "DCC"), ("i" * records.MAX_ID, "U" * 80, "DCC")]


def test_records_of_every_kind_and_issuer_have_one_length(seal_setup):
    """A KP1 token of any issuer, a DCC of any UVCI the schema allows (80 at most): the same bytes on the wire."""
    key = seal_setup.authority.public_key()
    sealed = [Visit(bytes(16), "cafe-1", "door-a", NOW, iss, cti, kind).seal(key) for iss, cti, kind in VISITS]
    assert {len(s.enc_and_ct) for s in sealed} == {key.suite.enc_length + records.PAD + 16}
    assert len({len(s.wire()) for s in sealed}) == 1
    assert [s.open(seal_setup.authority)["iss"] for s in sealed] == [iss for iss, _, _ in VISITS]


def test_a_plaintext_past_one_pad_takes_a_whole_further_one():
    full = b"x" * (records.PAD - 2)
    assert records.pad(full) == b"\x00\xbe" + full and records.unpad(records.pad(full)) == full
    assert len(records.pad(full + b"x")) == 2 * records.PAD
    assert records.pad(b"abc") == b"\x00\x03abc" + bytes(records.PAD - 5)
    assert records.unpad(records.pad(b"abc")) == b"abc" and records.unpad(records.pad(b"a")) == b"a"
    assert records.unpad(records.pad(b"y" * 300)) == b"y" * 300  # a length past 255: both bytes, big-endian


@pytest.mark.parametrize("padded", [
    b"\x00\x03abc" + bytes(records.PAD - 6),  # not a whole pad
    b"\x00\x03abc" + bytes(2 * records.PAD - 5),  # a whole pad more than it needs
    b"\x00\x03abc" + bytes(records.PAD - 6) + b"\x01",  # a byte after the text that is not zero
    b"\x00\x03abc\x01" + bytes(records.PAD - 6),  # the very next byte
    b"\x00\x00" + bytes(records.PAD - 2),  # nothing in it
    b"\x00\xbf" + bytes(records.PAD - 2),  # one byte longer than the pad holds
    b"\xff\xff" + bytes(records.PAD - 2),  # a length far past the end
    b"",
], ids=["short", "wider", "tail", "next-byte", "empty", "one-past", "far-past", "nothing"])
def test_unpad_refuses_what_pad_does_not_write(padded):
    with pytest.raises(records.PlaintextError, match="^the plaintext is not padded as a version 2 record pads it$"):
        records.unpad(padded)


def test_a_sealing_key_is_checked_against_its_suite():
    x, h = OpeningKey.generate(seal.X25519).public_key(), OpeningKey.generate().public_key()
    assert seal.SealingKey.of("X25519", x.raw) == x and seal.SealingKey.of("MLKEM768-X25519", h.raw) == h
    with pytest.raises(ValueError, match=r"^'X448' is not a sealing suite \(MLKEM768-X25519, X25519\)$"):
        seal.SealingKey.of("X448", x.raw)
    with pytest.raises(ValueError, match="^a X25519 public key is 32 bytes, not 31$"):
        seal.SealingKey.of("X25519", x.raw[:-1])
    with pytest.raises(ValueError):
        seal.SealingKey.of("MLKEM768-X25519", b"\xff" * 1184 + x.raw)  # no ML-KEM key: coefficients past q


# --- a record from a device the custodian cannot see into (issue 15) ---------------------------------

def _wire(*fields) -> bytes:
    return cbor2.dumps(list(fields))


KID = bytes(8)


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
    ((2, bytes(16), "cafe-1", "door-a", 1, b"x"), "version"),  # version 2 with version 1's fields
    ((1, bytes(16), "cafe-1", "door-a", 1, 0x20, KID, b"x"), "version"),  # and the other way round
    ((3, bytes(16), "cafe-1", "door-a", 1, 0x20, KID, b"x"), "version"),
    ((1, bytes(16), "cafe-1", "door-a", 1, b"x", 0), "version"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x20, KID, b"x", 0), "record"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x10, KID, b"x"), "suite"),  # P-256: not one records are sealed with
    ((2, bytes(16), "cafe-1", "door-a", 1, -1, KID, b"x"), "suite"),
    ((2, bytes(16), "cafe-1", "door-a", 1, "X25519", KID, b"x"), "suite"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x647A, bytes(7), b"x"), "kid"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x647A, "k" * 8, b"x"), "kid"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x647A, KID, "x"), "sealed part"),
    ((2, bytes(15), "cafe-1", "door-a", 1, 0x647A, KID, b"x"), "rid"),
    ((2, bytes(16), "cafe-1", "a/b", 1, 0x647A, KID, b"x"), "venue or device"),
])
def test_from_wire_refuses_every_field_out_of_shape(fields, why):
    # The refusal names the field at fault, as a word of its own ("ts", not the "ts" inside "its").
    with pytest.raises(ValueError, match=rf"\b{why}\b"):
        SealedRecord.from_wire(_wire(*fields))


@pytest.mark.parametrize("fields, message", [
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x10, KID, b"x"), "its suite is not one records are sealed with"),
    ((2, bytes(16), "cafe-1", "door-a", 1, 0x20, bytes(7), b"x"), "its kid is not 8 bytes"),
    ((2, bytes(15), "cafe-1", "door-a", 1, 0x20, KID, b"x"), "its rid is not 16 bytes"),
    ((2, bytes(16), "cafe-1", "a/b", 1, 0x20, KID, b"x"),
     r"its venue or device is not an id \(one topic level of 1-64 characters\)"),
    ((4, bytes(16), "cafe-1", "door-a", 1, b"x"), "not a version 1 or version 2 sealed visit record"),
])
def test_from_wire_says_what_is_wrong(fields, message):
    """The ingest counts these by reason and a technician reads them: the words are part of the answer."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        SealedRecord.from_wire(_wire(*fields))


def test_from_wire_reads_both_versions():
    v1 = SealedRecord.from_wire(_wire(1, bytes(16), "cafe-1", "door-a", 5, b"x"))
    v2 = SealedRecord.from_wire(_wire(2, bytes(16), "cafe-1", "door-a", 5, 0x20, KID, b"x"))
    assert (v1.version, v1.suite, v1.kid) == (1, None, None)
    assert (v2.version, v2.suite, v2.kid) == (2, 0x20, KID)


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


def _resealed(authority: OpeningKey, sealed: SealedRecord, body: bytes) -> SealedRecord:
    """`sealed` with its secret part replaced by `body`, padded and sealed again to the authority."""
    return dataclasses.replace(sealed, enc_and_ct=authority.public_key().seal(records.pad(body), sealed.info()))


def _secret(record: SealedRecord, authority: OpeningKey) -> dict:
    plain = record.open(authority)
    return {k: plain[k] for k in ("iss", "cti", "kind")}


@pytest.mark.parametrize("change, why", [
    ({"iss": b"naver"}, "issuer or kind"), ({"iss": ""}, "issuer or kind"), ({"kind": "KP2"}, "issuer or kind"),
    ({"iss": None}, "issuer or kind"), ({"cti": "0" * 32}, "token id"), ({"cti": bytes(15)}, "token id"),
    ({"extra": 1}, "not a visit's map"), ({"v": 2}, "not a visit's map"), ({"rid": bytes(16)}, "not a visit's map"),
    ({"iss": [["n"]]}, "the plaintext: "),  # nested deeper than a visit's map goes: refused while decoding
])
def test_open_refuses_a_plaintext_that_is_not_a_visit(seal_setup, change, why):
    plain = {**_secret(seal_setup.sealed, seal_setup.authority), **change}
    bad = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    messages = {"issuer or kind": "^the plaintext's issuer or kind is not a visit's$",
                "token id": "^the plaintext's token id is not one of its kind$",
                "not a visit's map": "^the plaintext is not a visit's map$", "the plaintext: ": "^the plaintext: "}
    with pytest.raises(records.PlaintextError, match=messages[why]):
        bad.open(seal_setup.authority)


@pytest.mark.parametrize("plaintext", [b"\xff", cbor2.dumps([1, 2]), cbor2.dumps(cbor2.CBORTag(4, [-2, 10**400]))])
def test_open_refuses_a_plaintext_that_is_not_cbor_of_a_map(seal_setup, plaintext):
    with pytest.raises(records.PlaintextError):
        _resealed(seal_setup.authority, seal_setup.sealed, plaintext).open(seal_setup.authority)


def test_open_refuses_a_plaintext_that_is_not_padded(seal_setup):
    body = cbor2.dumps(_secret(seal_setup.sealed, seal_setup.authority))
    bare = dataclasses.replace(seal_setup.sealed, enc_and_ct=seal_setup.authority.public_key().seal(
        len(body).to_bytes(2, "big") + body, seal_setup.sealed.info()))
    with pytest.raises(records.PlaintextError, match="padded"):
        bare.open(seal_setup.authority)


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
    plain = {**_secret(seal_setup.sealed, seal_setup.authority), "iss": iss}
    record = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    assert record.open(seal_setup.authority)["iss"] == iss


def test_a_visit_from_a_printed_card_opens_as_a_card_with_its_16_byte_id_and_no_other(seal_setup):
    visit = Visit.of(Claims(iss="centre", iat=NOW, exp=NOW + 86400, cti=CTI, kind="KC1"), "cafe-1", "door-a", NOW)
    plain = SealedRecord.from_wire(visit.seal(seal_setup.authority.public_key()).wire()).open(seal_setup.authority)
    assert (plain["kind"], plain["cti"], plain["iss"]) == ("KC1", CTI, "centre")
    for cti in (CTI[:15], CTI.hex()):  # a card's id is 16 bytes, as a phone token's
        wrong = {**_secret(seal_setup.sealed, seal_setup.authority), "kind": "KC1", "cti": cti}
        with pytest.raises(records.PlaintextError, match="token id is not one of its kind"):
            _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(wrong)).open(seal_setup.authority)


def test_a_visit_from_a_dcc_is_sealed_with_its_uvci_and_opens_as_a_dcc(seal_setup):
    uvci = "URN:UVCI:01:XX:TEST/0001#X"
    visit = Visit.of(Claims(iss="XX", iat=NOW, exp=NOW + 86400, cti=uvci, kind="DCC"), "cafe-1", "door-a", NOW)
    assert visit.kind == "DCC"
    plain = SealedRecord.from_wire(visit.seal(seal_setup.authority.public_key()).wire()).open(seal_setup.authority)
    assert (plain["kind"], plain["cti"], plain["iss"]) == ("DCC", uvci, "XX")


@pytest.mark.parametrize("length, opens", [(0, False), (1, True), (256, True), (257, False)])
def test_a_dccs_uvci_in_the_plaintext_is_1_to_256_characters(seal_setup, length, opens):
    plain = {**_secret(seal_setup.sealed, seal_setup.authority), "kind": "DCC", "cti": "U" * length}
    record = _resealed(seal_setup.authority, seal_setup.sealed, cbor2.dumps(plain))
    if opens:
        assert record.open(seal_setup.authority)["cti"] == "U" * length
    else:
        with pytest.raises(records.PlaintextError):
            record.open(seal_setup.authority)


# --- version 1: what devices sealed before, still opened ----------------------------------------------

def test_version_1_records_the_old_code_sealed_still_open():
    """tests/data/v1-records.json: sealed by the version 1 code (cryptography's private _encrypt_with_aad)."""
    data = json.loads((DATA / "v1-records.json").read_text())
    key = OpeningKey(serialization.load_pem_private_key(data["authority_key_pem"].encode(), None))
    opened = [SealedRecord.from_wire(bytes.fromhex(h)).open(key) for h in data["records_hex"]]
    assert [(p["v"], p["venue"], p["device"], p["ts"], p["iss"], p["cti"], p["kind"]) for p in opened] == [
        (1, "cafe-1", "door-a", NOW + 2, "naver", CTI, "KP1"),
        (1, "cafe-1", "door-a", NOW + 2, "DE", "URN:UVCI:01:DE:TEST/0001#X", "DCC")]


def test_seal_v1_is_rfc_9180_as_cryptography_implements_it():
    """With no associated data, seal_v1 and cryptography's public HPKE open each other's ciphertexts."""
    key = OpeningKey.generate(seal.X25519)
    public = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    theirs = public.encrypt(b"visit", key.x25519.public_key(), info=seal_v1.INFO)
    assert seal_v1.open_sealed(theirs, key.x25519, b"") == b"visit"
    assert public.decrypt(seal_v1.seal(b"visit", key.x25519.public_key(), b""), key.x25519, info=seal_v1.INFO) == b"visit"
    with pytest.raises(InvalidTag):
        seal_v1.open_sealed(theirs, key.x25519, b"other aad")
    with pytest.raises(InvalidTag):
        seal_v1.open_sealed(theirs[:40], key.x25519, b"")


@pytest.fixture
def v1():
    key = OpeningKey.generate(seal.X25519)
    visit = Visit.of(Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=CTI), "cafe-1", "door-a", NOW + 2)
    return SimpleNamespace(authority=key, sealed=records.sealed_v1(visit, key.x25519.public_key()), visit=visit)


def test_a_version_1_record_opens_to_its_visit(v1):
    back = SealedRecord.from_wire(v1.sealed.wire())
    assert cbor2.loads(v1.sealed.wire())[0] == 1 and back.version == 1
    assert back.open(v1.authority) == {"v": 1, "rid": v1.visit.rid, "venue": "cafe-1", "device": "door-a",
                                       "ts": NOW + 2, "iss": "naver", "cti": CTI, "kind": "KP1"}


def test_a_version_1_record_needs_an_x25519_key(v1):
    with pytest.raises(records.KeyMismatch, match="^a version 1 record is sealed to an X25519 key$"):
        v1.sealed.open(OpeningKey.generate(seal.MLKEM768_X25519))
    with pytest.raises(InvalidTag):
        v1.sealed.open(OpeningKey.generate(seal.X25519))


@pytest.mark.parametrize("change", [{"venue": "cafe-2"}, {"device": "door-b"}, {"rid": bytes(16)}])
def test_a_version_1_record_under_another_envelope_fails(v1, change):
    with pytest.raises(InvalidTag):
        dataclasses.replace(v1.sealed, **change).open(v1.authority)


@pytest.mark.parametrize("change", [{"ts": NOW + 3}, {"ts": float(NOW + 2)}, {"venue": "cafe-2"}])
def test_a_version_1_sealed_envelope_that_is_not_the_clear_one_is_refused(v1, change):
    plain = {**v1.sealed.open(v1.authority), **change}  # 1750000002.0 == 1750000002 in Python
    aad = seal_v1.aad_for(v1.sealed.rid, v1.sealed.venue, v1.sealed.device)
    resealed = dataclasses.replace(v1.sealed, enc_and_ct=seal_v1.seal(cbor2.dumps(plain), v1.authority.x25519.public_key(), aad))
    with pytest.raises(records.EnvelopeMismatch, match="^the clear envelope does not match the sealed record$"):
        resealed.open(v1.authority)


@pytest.mark.parametrize("change, message", [
    ({"v": True}, "^the plaintext is not of version 1$"), ({"v": 2}, "^the plaintext is not of version 1$"),
    ({"extra": 1}, "^the plaintext is not a visit's map$"),
    ({"kind": "KP2"}, "^the plaintext's issuer or kind is not a visit's$")])
def test_a_version_1_plaintext_that_is_not_a_visit_is_refused(v1, change, message):
    plain = {**v1.sealed.open(v1.authority), **change}
    aad = seal_v1.aad_for(v1.sealed.rid, v1.sealed.venue, v1.sealed.device)
    resealed = dataclasses.replace(v1.sealed, enc_and_ct=seal_v1.seal(cbor2.dumps(plain), v1.authority.x25519.public_key(), aad))
    with pytest.raises(records.PlaintextError, match=message):
        resealed.open(v1.authority)


def test_seal_v1_opens_a_record_with_nothing_in_it_but_its_tag():
    """16 bytes after enc: an empty plaintext's tag, which opens; 15 cannot be a ciphertext."""
    key = OpeningKey.generate(seal.X25519)
    empty = seal_v1.seal(b"", key.x25519.public_key(), b"aad")
    assert len(empty) == 32 + 16 and seal_v1.open_sealed(empty, key.x25519, b"aad") == b""
    with pytest.raises(InvalidTag):
        seal_v1.open_sealed(empty[:-1], key.x25519, b"aad")


def test_no_private_function_of_cryptography_is_called():
    """Sealing and opening use cryptography's public API only (issue 20): nothing under its bindings' _rust."""
    for module in (seal, seal_v1, records):
        text = Path(module.__file__).read_text()
        assert "_rust" not in text and "_with_aad" not in text
