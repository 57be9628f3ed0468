"""The signed trust list (tokens.trustlist) and the one in force on the device (trust.TrustStore)."""

import hashlib
import hmac
import os
import re
from types import SimpleNamespace

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from firmware.errors import TrustListError
from firmware.keys import kid_of, raw_public
from lab.signers import new_issuer, new_root
from firmware.tokens import cose, trustlist
from firmware.trust import FILENAME, TrustStore
from firmware.store import seal
from firmware.store.seal import OpeningKey
from lab import dcc_issuer, signers

NOW = 1_750_000_000
DAY = 86400


@pytest.fixture
def trust_setup(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    return SimpleNamespace(
        tmp=tmp_path,
        state=state,
        root=new_root(tmp_path / "root"),
        naver=new_issuer("naver", tmp_path / "naver"),
        kakao=new_issuer("kakao", tmp_path / "kakao"),
    )


def build(trust_setup, seq, issued_at=NOW, **kw):
    return signers.build_trust_list(trust_setup.root, [trust_setup.naver, trust_setup.kakao], seq=seq, issued_at=issued_at, **kw)


def test_build_parse_round_trip(trust_setup):
    raw = build(trust_setup, 7, revoked=[trust_setup.kakao.kid], valid_days=10)
    tl = trustlist.parse(raw, trust_setup.root.public_key())
    assert (tl.seq, tl.issued_at, tl.not_after) == (7, NOW, NOW + 10 * DAY)
    assert set(tl.issuers) == {trust_setup.naver.kid, trust_setup.kakao.kid}
    naver = tl.issuers[trust_setup.naver.kid]
    assert (naver.iss, naver.alg, naver.kid) == ("naver", "EdDSA", trust_setup.naver.kid)
    assert naver.key.public_bytes_raw() == trust_setup.naver.key.public_key().public_bytes_raw()
    assert naver.not_before <= NOW <= naver.not_after
    assert tl.revoked == frozenset({trust_setup.kakao.kid})
    assert tl.raw == raw
    assert not tl.expired(NOW + 10 * DAY) and tl.expired(NOW + 10 * DAY + 1)


def test_parse_with_another_root_raises(trust_setup):
    other = new_root(trust_setup.tmp / "other")
    with pytest.raises(TrustListError, match="different root key"):
        trustlist.parse(build(trust_setup, 1), other.public_key())


def test_parse_with_another_root_claiming_the_kid_raises(trust_setup):
    # signed by an impostor root but naming the real root's kid
    impostor = new_root(trust_setup.tmp / "impostor")
    raw = signers.build_trust_list(impostor, [trust_setup.naver], seq=1, issued_at=NOW)
    payload = cose.parse_sign1(raw).payload
    forged = cose.sign1(payload, impostor, kid_of(trust_setup.root.public_key()))
    with pytest.raises(TrustListError, match="signature"):
        trustlist.parse(forged, trust_setup.root.public_key())


def test_any_flipped_byte_in_the_signed_list_raises(trust_setup):
    raw = build(trust_setup, 1)
    root = trust_setup.root.public_key()
    assert trustlist.parse(raw, root).seq == 1
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(TrustListError):
            trustlist.parse(bytes(flipped), root)


@pytest.mark.parametrize("junk", [b"", b"\x00", b"not cbor at all", b"\xd2\x80"])
def test_parse_of_junk_raises_trust_list_error(trust_setup, junk):
    with pytest.raises(TrustListError):
        trustlist.parse(junk, trust_setup.root.public_key())


def test_build_refuses_negative_seq(trust_setup):
    with pytest.raises(TrustListError):
        build(trust_setup, -1)


# --- TrustStore --------------------------------------------------------------


def test_store_starts_empty(trust_setup):
    assert TrustStore(trust_setup.state, trust_setup.root.public_key()).current() is None


def test_install_persists_across_restarts(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    installed = store.install(build(trust_setup, 3), NOW)
    assert installed.seq == 3 and store.current().seq == 3
    again = TrustStore(trust_setup.state, trust_setup.root.public_key())
    assert again.current() is not None and again.current().seq == 3
    assert set(again.current().issuers) == {trust_setup.naver.kid, trust_setup.kakao.kid}


def test_install_accepts_strictly_higher_seq(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 3), NOW)
    assert store.install(build(trust_setup, 4), NOW).seq == 4
    assert TrustStore(trust_setup.state, trust_setup.root.public_key()).current().seq == 4


@pytest.mark.parametrize("seq", [3, 2, 0])
def test_install_refuses_rollback_and_keeps_the_old_list(trust_setup, seq):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 3), NOW)
    on_disk = (trust_setup.state / FILENAME).read_bytes()
    with pytest.raises(TrustListError):
        store.install(build(trust_setup, seq, issued_at=NOW + 60), NOW + 60)  # different bytes, not higher seq
    assert store.current().seq == 3
    assert (trust_setup.state / FILENAME).read_bytes() == on_disk


def test_install_refuses_list_past_not_after(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    stale = build(trust_setup, 5, issued_at=NOW - 2 * DAY, valid_days=1)
    with pytest.raises(TrustListError):
        store.install(stale, NOW)
    assert store.current() is None
    assert not (trust_setup.state / FILENAME).exists()


def test_install_refuses_list_signed_by_another_root(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 1), NOW)
    other = new_root(trust_setup.tmp / "other")
    with pytest.raises(TrustListError):
        store.install(signers.build_trust_list(other, [trust_setup.naver], seq=9, issued_at=NOW), NOW)
    assert store.current().seq == 1


def test_installing_the_same_bytes_again_is_a_no_op(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    raw = build(trust_setup, 3)
    first = store.install(raw, NOW)
    assert store.install(raw, NOW + 10) is first
    assert store.current() is first
    assert store.offer(raw, NOW + 20) is True


def test_offer_returns_false_on_refusal_and_true_on_success(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    assert store.offer(build(trust_setup, 2), NOW) is True
    assert store.offer(build(trust_setup, 1), NOW) is False
    assert store.offer(b"garbage", NOW) is False
    assert store.offer(build(trust_setup, 5, issued_at=NOW - 2 * DAY, valid_days=1), NOW) is False
    assert store.current().seq == 2
    assert store.offer(build(trust_setup, 3), NOW) is True and store.current().seq == 3


def test_corrupt_kept_list_leaves_no_list_in_force(trust_setup):
    (trust_setup.state / FILENAME).write_bytes(b"\xd2\x84junk")
    assert TrustStore(trust_setup.state, trust_setup.root.public_key()).current() is None


def test_refresh_adopts_a_list_another_process_installed(trust_setup):
    daemon = TrustStore(trust_setup.state, trust_setup.root.public_key())
    daemon.install(build(trust_setup, 1), NOW)
    technician = TrustStore(trust_setup.state, trust_setup.root.public_key())
    technician.install(build(trust_setup, 2), NOW)
    assert daemon.current().seq == 1
    daemon.refresh()
    assert daemon.current().seq == 2


def test_refresh_keeps_the_newer_list_when_an_older_file_is_put_back(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 5), NOW)
    (trust_setup.state / FILENAME).write_bytes(build(trust_setup, 4))
    store.refresh()
    assert store.current().seq == 5


def test_refresh_ignores_a_corrupt_file_and_keeps_the_list_in_force(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 5), NOW)
    (trust_setup.state / FILENAME).write_bytes(b"\xd2\x84junk")
    store.refresh()
    assert store.current().seq == 5


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root, as `sudo qrgate trust install` has")
def test_a_list_installed_as_root_belongs_to_the_owner_of_the_state_folder(trust_setup):
    os.chown(trust_setup.state, 4242, 4243)  # the daemon's user
    TrustStore(trust_setup.state, trust_setup.root.public_key()).install(build(trust_setup, 1), NOW)
    st = (trust_setup.state / FILENAME).stat()
    assert (st.st_uid, st.st_gid) == (4242, 4243)


# --- hostile lists (issue 15, finding 1) -------------------------------------------------------------

def _tag4_bomb(digits: int) -> bytes:
    """Tag 4 (a decimal fraction) over a huge integer: cbor2 builds a Decimal from it in O(n²), holding the GIL."""
    return cbor2.dumps(cbor2.CBORTag(4, [-2, 10**digits]))


class _DecoderSpy:
    """Counts every CBOR item decoded, whichever module asks cbor2 for it."""

    def __init__(self, monkeypatch):
        self.calls = 0
        decoder, loads = cbor2.CBORDecoder, cbor2.loads

        def counting(real):
            def call(*args, **kw):
                self.calls += 1
                return real(*args, **kw)
            return call

        monkeypatch.setattr(cbor2, "CBORDecoder", counting(decoder))
        monkeypatch.setattr(cbor2, "loads", counting(loads))


def test_an_unsigned_list_is_refused_before_any_of_its_cbor_is_decoded(trust_setup, monkeypatch):
    # The envelope the root signs, with a payload it never signed: the tag-4 bomb of the security review.
    bomb = _tag4_bomb(20_000)
    unsigned = cose.sign1(bomb, new_root(trust_setup.tmp / "stranger"), kid_of(trust_setup.root.public_key()))
    spy = _DecoderSpy(monkeypatch)
    with pytest.raises(TrustListError, match="signature"):
        trustlist.parse(unsigned, trust_setup.root.public_key())
    assert spy.calls == 0


def test_a_list_in_a_layout_the_root_never_writes_is_refused_undecoded(trust_setup, monkeypatch):
    loose = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: kid_of(trust_setup.root.public_key())}), {},
                                           _tag4_bomb(20_000), bytes(64)]), canonical=False)
    padded = loose[:1] + b"\x98\x04" + loose[2:]  # the same array with a wide head
    spy = _DecoderSpy(monkeypatch)
    for data in (padded, cbor2.dumps(cbor2.CBORTag(4, [-2, 10**1000]))):
        with pytest.raises(TrustListError, match="COSE_Sign1"):
            trustlist.parse(data, trust_setup.root.public_key())
    assert spy.calls == 0


@pytest.mark.parametrize("tag", [0, 1, 2, 3, 4, 5, 24, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261,
                                 1004, 43000, 55799, 18, 61, 2**32])
def test_a_signed_payload_holding_any_semantic_tag_is_refused(trust_setup, tag):
    payload = cbor2.loads(cose.parse_eddsa_sign1(build(trust_setup, 1)).payload)
    payload["issued_at"] = cbor2.CBORTag(tag, 1)
    signed = cose.sign1(cbor2.dumps(payload), trust_setup.root, kid_of(trust_setup.root.public_key()))
    with pytest.raises(TrustListError, match="issued_at is of CBOR major type 6"):  # a tag is never read as a value
        trustlist.parse(signed, trust_setup.root.public_key())


def test_a_list_of_64_kib_and_more_reads_by_position_too(trust_setup):
    revoked = [os.urandom(8) for _ in range(8000)]  # about 80 KB: the payload's length needs a 4-byte head
    raw = build(trust_setup, 2, revoked=revoked)
    assert raw[17] == 0x5A
    assert trustlist.parse(raw, trust_setup.root.public_key()).revoked == frozenset(revoked)


def test_a_list_past_one_mib_is_refused_before_its_signature_is_checked(trust_setup, monkeypatch):
    raw = build(trust_setup, 2, revoked=[os.urandom(8) for _ in range(120_000)])
    assert len(raw) > trustlist.MAX_BYTES
    monkeypatch.setattr(cose.Sign1, "verify", lambda *a: pytest.fail("verified a list over the cap"))
    with pytest.raises(TrustListError) as refused:
        trustlist.parse(raw, trust_setup.root.public_key())
    assert str(refused.value) == "trust list is larger than 1 MiB"  # what it is, named


# --- no rollback once the kept list is gone (issue 15, finding 11) ------------------------------------

def test_an_older_list_is_refused_after_the_kept_one_was_lost(trust_setup):
    store = TrustStore(trust_setup.state, trust_setup.root.public_key())
    store.install(build(trust_setup, 7), NOW)
    (trust_setup.state / FILENAME).unlink()
    fresh = TrustStore(trust_setup.state, trust_setup.root.public_key())
    assert fresh.current() is None
    with pytest.raises(TrustListError, match="older than seq 7"):
        fresh.install(build(trust_setup, 6), NOW)
    assert fresh.install(build(trust_setup, 7), NOW).seq == 7  # the very seq it held is no rollback
    assert fresh.install(build(trust_setup, 8), NOW).seq == 8


def test_an_older_list_put_back_in_place_of_the_kept_one_is_not_adopted(trust_setup):
    old = build(trust_setup, 4)
    TrustStore(trust_setup.state, trust_setup.root.public_key()).install(build(trust_setup, 5), NOW)
    (trust_setup.state / FILENAME).write_bytes(old)
    assert TrustStore(trust_setup.state, trust_setup.root.public_key()).current() is None


def test_a_list_another_process_installed_raises_the_mark_too(trust_setup):
    daemon = TrustStore(trust_setup.state, trust_setup.root.public_key())
    daemon.install(build(trust_setup, 1), NOW)
    TrustStore(trust_setup.state, trust_setup.root.public_key()).install(build(trust_setup, 3), NOW)
    daemon.refresh()
    assert daemon.current().seq == 3 and daemon.mark.read() == 3


def test_a_trust_list_file_is_read_no_further_than_the_cap(tmp_path):
    big = tmp_path / "big.cose"
    big.write_bytes(bytes(trustlist.MAX_BYTES + 1))
    for path in (big, "/dev/zero"):  # a technician's slip: an endless file
        with pytest.raises(TrustListError, match="larger than 1 MiB"):
            trustlist.read_file(path)
    exact = tmp_path / "exact.cose"
    exact.write_bytes(bytes(trustlist.MAX_BYTES))
    assert len(trustlist.read_file(exact)) == trustlist.MAX_BYTES


# --- the payload's schema, field by field -------------------------------------------------------------
# A refusal says why: `qrgate provision` and `trust install` show the technician the reason, which names the
# field at fault by its key in the payload (DESIGN.md's names).

_ROOT = Ed25519PrivateKey.generate()
_ISSUER_KEY = Ed25519PrivateKey.generate()
_SEALING = OpeningKey.generate(seal.X25519).public_key()
_HYBRID = OpeningKey.generate().public_key()


def _signed(payload: dict | bytes) -> bytes:
    """`payload` (a dict, or CBOR bytes of the test's own making) signed by the root, as the root signs lists."""
    data = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
    return cose.sign1(data, _ROOT, kid_of(_ROOT.public_key()))


def _parse(payload: dict | bytes) -> trustlist.TrustList:
    return trustlist.parse(_signed(payload), _ROOT.public_key())


def _issuer_entry(**over) -> dict:
    return {"kid": b"\x11" * 8, "iss": "naver", "alg": "EdDSA", "key": raw_public(_ISSUER_KEY.public_key()),
            "not_before": NOW - DAY, "not_after": NOW + DAY, **over}


def _authority_entry(**over) -> dict:
    return {"alg": "X25519", "key": _SEALING.raw, "not_before": NOW - DAY, "not_after": NOW + DAY, **over}


def _payload(**over) -> dict:
    return {"seq": 1, "issued_at": NOW, "not_after": NOW + DAY, "issuers": [_issuer_entry()], "revoked": [],
            "dsc": [], "authority": [_authority_entry()], **over}


def _without(entry: dict, key: str) -> dict:
    return {k: v for k, v in entry.items() if k != key}


def _enc(*items: object) -> bytes:
    return b"".join(cbor2.dumps(item) for item in items)


def _with_repeated_key(entry: str) -> bytes:
    """A payload whose one issuer or authority entry names `key` twice (and so, at its count, lacks another)."""
    if entry == "issuer":
        e = _issuer_entry()
        inner = b"\xa6" + _enc("kid", e["kid"], "kid", e["kid"], "iss", "naver", "alg", "EdDSA", "key", e["key"],
                               "not_before", NOW)
    else:
        inner = b"\xa4" + _enc("alg", "X25519", "key", _SEALING.raw, "key", _SEALING.raw,
                               "not_before", NOW)
    name = "issuers" if entry == "issuer" else "authority"
    return b"\xa4" + _enc("seq", 1, "issued_at", NOW, "not_after", NOW + DAY, name) + b"\x81" + inner


@pytest.mark.parametrize("payload, reason", [
    (_without(_payload(), "seq"), "payload lacks seq"),
    ([1, NOW, NOW + DAY], "payload"),
    (_payload(issuers=[_without(_issuer_entry(), "not_after")]), "issuer entry lacks not_after"),
    (_payload(issuers=[{**_without(_issuer_entry(), "alg"), "note": "EdDSA"}]), "issuer entry"),  # a key it has not
    (_payload(issuers=[7]), "issuer entry"),
    (_with_repeated_key("issuer"), "issuer entry repeats"),
    (_payload(issuers=[_issuer_entry(kid=b"\x11" * 7)]), "issuer kid is not 8 bytes"),
    (_payload(issuers=[_issuer_entry(kid="11111111")]), "issuer kid"),
    (_payload(issuers=[_issuer_entry(alg="ES256")]), "issuer alg"),
    (_payload(issuers=[_issuer_entry(iss="")]), "issuer name"),
    (_payload(issuers=[_issuer_entry(iss="n" * 65)]), "issuer name"),
    (_payload(issuers=[_issuer_entry(iss=7)]), "issuer name"),
    (_payload(issuers=[_issuer_entry(not_after=2**40)]), "not_after"),
    (_payload(seq=2**40), "seq"),
    (_payload(authority=[_without(_authority_entry(), "key")]), "authority entry lacks key"),
    (_payload(authority=[_without(_without(_authority_entry(), "not_before"), "not_after")]),
     r"authority entry lacks not_before\b.*\bnot_after"),  # every field it lacks
    (_payload(authority=[_authority_entry(alg="P-256")]), "authority alg"),
    (_payload(authority=[_authority_entry(key=bytes(31))]), "authority key"),
    (_payload(authority=[_authority_entry(alg="MLKEM768-X25519")]), "authority key"),  # an X25519 key's 32 bytes
    (_payload(authority=[_authority_entry(key=_HYBRID.raw)]), "authority key"),  # a hybrid key as X25519
    (_payload(authority=[_authority_entry(alg="MLKEM768-X25519", key=b"\xff" * 1184 + _SEALING.raw)]),
     "authority key"),  # 1,216 bytes, but no ML-KEM-768 key (its coefficients past the modulus)
    (_with_repeated_key("authority"), "authority entry repeats"),
    (_payload(authority=[_authority_entry()] * (trustlist.MAX_AUTHORITY + 1)), "authority"),
    (_payload(dsc=[b"not a certificate"]), "DER X.509"),
], ids=lambda v: re.sub(r"\W+", "_", v) if isinstance(v, str) else None)  # plain ids mutmut can pass on
def test_a_signed_list_off_its_schema_is_refused_naming_the_field(payload, reason):
    with pytest.raises(TrustListError, match=rf"\b{reason}\b"):  # the field's name as a word of its own
        _parse(payload)


def test_a_list_of_only_the_required_fields_trusts_nothing():
    tl = _parse({"seq": 4, "issued_at": NOW, "not_after": NOW + DAY})
    assert (tl.seq, tl.issued_at, tl.not_after) == (4, NOW, NOW + DAY)
    assert (tl.issuers, tl.revoked, tl.dsc, tl.authority) == ({}, frozenset(), (), ())
    assert not tl.names_authority(_SEALING, NOW) and tl.sealing_key(NOW) is None


def test_the_largest_times_and_the_shortest_and_longest_issuer_names_are_read():
    last = 2**40 - 1  # trustlist.MAX_TIME is the first value that is not a time
    tl = _parse(_payload(seq=last, not_after=last, issuers=[_issuer_entry(iss="n", not_after=last),
                                                             _issuer_entry(kid=b"\x22" * 8, iss="n" * 64)]))
    assert tl.seq == last and tl.not_after == last
    assert tl.issuers[b"\x11" * 8].iss == "n" and tl.issuers[b"\x11" * 8].not_after == last
    assert tl.issuers[b"\x22" * 8].iss == "n" * 64


def test_the_authority_keys_are_read_as_the_root_signed_them(trust_setup):
    raw = build(trust_setup, 2, valid_days=10, authority=[_SEALING, (_HYBRID, NOW + DAY)])
    tl = trustlist.parse(raw, trust_setup.root.public_key())
    assert tl.authority == (trustlist.AuthorityKey(_SEALING.raw, "X25519", NOW - DAY, NOW + 10 * DAY),
                            trustlist.AuthorityKey(_HYBRID.raw, "MLKEM768-X25519", NOW + DAY, NOW + 10 * DAY))
    assert [a.sealing_key for a in tl.authority] == [_SEALING, _HYBRID]


def test_the_list_names_an_authority_key_only_when_listed_and_in_its_validity():
    tl = _parse(_payload(authority=[_authority_entry(not_before=NOW - DAY, not_after=NOW + DAY)]))
    assert tl.names_authority(_SEALING, NOW)
    assert tl.names_authority(_SEALING, NOW - DAY) and tl.names_authority(_SEALING, NOW + DAY)  # both ends inclusive
    assert not tl.names_authority(_SEALING, NOW - DAY - 1) and not tl.names_authority(_SEALING, NOW + DAY + 1)
    assert not tl.names_authority(OpeningKey.generate(seal.X25519).public_key(), NOW)  # sealing to it: no
    assert not tl.names_authority(seal.SealingKey(seal.MLKEM768_X25519, _SEALING.raw), NOW)  # same bytes, other suite


def test_visits_are_sealed_to_the_valid_key_that_became_valid_last():
    """Rotation: the next key rides in the list ahead of its time, and devices move to it at its not_before."""
    third = OpeningKey.generate().public_key()
    tl = _parse(_payload(authority=[
        _authority_entry(not_before=NOW - DAY, not_after=NOW + 3 * DAY),
        _authority_entry(alg="MLKEM768-X25519", key=_HYBRID.raw, not_before=NOW + DAY, not_after=NOW + 2 * DAY),
        _authority_entry(alg="MLKEM768-X25519", key=third.raw, not_before=NOW + DAY, not_after=NOW + 3 * DAY)]))
    assert tl.sealing_key(NOW - DAY - 1) is None
    assert tl.sealing_key(NOW) == _SEALING and tl.sealing_key(NOW + DAY - 1) == _SEALING
    assert tl.sealing_key(NOW + DAY) == _HYBRID  # a tie on not_before: the first listed
    assert tl.sealing_key(NOW + 2 * DAY + 1) == third  # past the hybrid's not_after
    assert tl.sealing_key(NOW + 3 * DAY + 1) is None
    assert _parse(_payload(authority=[])).sealing_key(NOW) is None


def test_document_signers_are_kept_as_signed_and_found_by_their_dcc_kid(trust_setup):
    signer = dcc_issuer.make_signer()
    tl = trustlist.parse(build(trust_setup, 2, dsc=[signer.der]), trust_setup.root.public_key())
    assert tl.dsc == (signer.der,)
    assert [c.public_bytes(Encoding.DER) for c in tl.dcc_signers[signer.kid]] == [signer.der]


def test_the_authoritys_tool_refuses_a_dsc_that_is_not_der_bytes():
    with pytest.raises(TrustListError, match="DER X.509"):
        trustlist.certificate_entry(dcc_issuer.make_signer().cert)  # the certificate object, not its DER


def test_parse_refuses_what_is_not_bytes():
    with pytest.raises(TrustListError, match="not bytes"):
        trustlist.parse(_signed(_payload()).hex(), _ROOT.public_key())


def _exactly(length: int) -> bytes:
    """A valid list whose message is exactly `length` bytes: document signers for the bulk, revoked kids
    (9 bytes each) and the length of one issuer's name (24 to 64 characters: one head size) for the rest."""
    der = dcc_issuer.make_signer().der
    target = length - 88  # the root's envelope around a payload of 64 KiB or more: 17 + 5 + payload + 66
    bulk = (target - 2000) // (len(der) + 3)

    def payload(kids: int, name: int) -> dict:
        return _payload(dsc=[der] * bulk, revoked=[i.to_bytes(8, "big") for i in range(kids)],
                        issuers=[_issuer_entry(iss="n" * name)])

    kids = 0
    for _ in range(8):
        extra = target - len(cbor2.dumps(payload(kids, 40)))
        if -16 <= extra <= 24:
            return _signed(payload(kids, 40 + extra))
        kids = max(0, kids + extra // 9)
    raise AssertionError("no padding makes the list that long")


def test_a_list_of_exactly_one_mib_is_read():
    raw = _exactly(trustlist.MAX_BYTES)
    assert len(raw) == trustlist.MAX_BYTES
    assert trustlist.parse(raw, _ROOT.public_key()).seq == 1


# The EU DCC business rules and value sets the list may carry (tokens.dcc_rules).

def _rule(identifier: str = "VR-DE-0001", **over) -> str:
    from rules_kit import VACCINE_LISTED, rule

    return rule(identifier, over.pop("logic", VACCINE_LISTED), **over)


def test_rules_and_value_sets_are_read_as_the_root_signed_them(trust_setup):
    raw = build(trust_setup, 3, dcc_rules=[_rule(), _rule("IR-FR-0001", type="Invalidation")],
                valuesets={"vaccines-covid-19-names": ["EU/1/20/1528", "EU/1/21/1529"], "empty": []})
    tl = trustlist.parse(raw, trust_setup.root.public_key())
    assert [(r.identifier, r.type) for r in tl.rules.rules] == [("VR-DE-0001", "Acceptance"),
                                                                 ("IR-FR-0001", "Invalidation")]
    assert tl.rules.valuesets == {"vaccines-covid-19-names": ("EU/1/20/1528", "EU/1/21/1529"), "empty": ()}
    assert build(trust_setup, 4) and trustlist.parse(build(trust_setup, 4), None).rules.rules == ()


def test_the_authority_cannot_sign_a_rule_the_devices_would_refuse(trust_setup):
    with pytest.raises(TrustListError, match="rule VR-DE-0001: its Logic is not valid CertLogic"):
        build(trust_setup, 3, dcc_rules=[_rule(logic={"eval": []})])


def _valueset(id: object = "vs", codes: object = ("a",)) -> dict:
    return {"id": id, "codes": list(codes) if isinstance(codes, tuple) else codes}


@pytest.mark.parametrize("payload, reason", [
    (_payload(dcc_rules=[_rule(logic={"eval": []})]), "dcc_rules"),
    (_payload(dcc_rules=["{"]), "dcc_rules"),
    (_payload(dcc_rules=[b"{}"]), "dcc rule"),
    (_payload(dcc_rules=[_rule()] * (trustlist.MAX_RULES + 1)), "dcc_rules"),
    (_payload(valuesets=[_valueset(), _valueset()]), "valuesets repeat an id"),
    (_payload(valuesets=[_valueset(id="")]), "value set code"),
    (_payload(valuesets=[_valueset(codes=("c" * (trustlist.MAX_CODE + 1),))]), "value set code"),
    (_payload(valuesets=[_valueset(codes=[7])]), "value set code"),
    (_payload(valuesets=[_valueset(codes=("c",) * (trustlist.MAX_CODES + 1))]), "value set codes"),
    (_payload(valuesets=[_valueset(id=f"{i}") for i in range(trustlist.MAX_VALUESETS + 1)]), "valuesets"),
    (_payload(valuesets=[{"id": "vs"}]), "value set lacks codes"),
    (_payload(valuesets={"vs": ["a"]}), "valuesets"),
], ids=lambda v: re.sub(r"\W+", "_", v)[:40] if isinstance(v, str) else None)
def test_rules_or_value_sets_off_their_schema_are_refused(payload, reason):
    with pytest.raises(TrustListError, match=rf"\b{reason}\b"):
        _parse(payload)


def test_the_longest_codes_and_the_most_value_sets_and_rules_are_read():
    tl = _parse(_payload(dcc_rules=[_rule(f"VR-DE-{i:04d}") for i in range(trustlist.MAX_RULES)],
                         valuesets=[_valueset(id=f"{i}", codes=("c" * trustlist.MAX_CODE,) * 2)
                                    for i in range(trustlist.MAX_VALUESETS)]))
    assert len(tl.rules.rules) == trustlist.MAX_RULES and len(tl.rules.valuesets) == trustlist.MAX_VALUESETS
    assert tl.rules.valuesets["0"] == ("c" * trustlist.MAX_CODE,) * 2


# --- printed cards (KC1): card issuers and revoked cards --------------------------------------------------
# A card issuer's entry carries card_days, the longest a card of its key lives; a list may carry revoked cards as
# 16-byte keyed hashes under its card_key (tokens.kc1.revocation_hash). The texts are a technician's to read.

def _hashes(n: int) -> list[bytes]:
    return [i.to_bytes(16, "big") for i in range(n)]


def test_a_list_without_any_card_field_is_read_as_before():
    tl = _parse(_payload())
    assert tl.issuers[b"\x11" * 8].card_days == 0  # a phone-token issuer
    assert (tl.card_key, tl.card_revoked) == (b"", frozenset())
    empty = _parse(_payload(card_revoked=[]))  # an empty card_revoked names no card: it needs no key
    assert (empty.card_key, empty.card_revoked) == (b"", frozenset())


@pytest.mark.parametrize("days", [1, 365, trustlist.MAX_CARD_DAYS], ids=["1", "365", "1830"])
def test_a_card_issuers_card_days_is_read_from_1_to_1830(days):
    tl = _parse(_payload(issuers=[_issuer_entry(card_days=days), _issuer_entry(kid=b"\x22" * 8, iss="kakao")]))
    assert tl.issuers[b"\x11" * 8].card_days == days and tl.issuers[b"\x22" * 8].card_days == 0
    assert trustlist.MAX_CARD_DAYS == 1830  # five years, as the format says


def test_card_issuers_and_revoked_cards_are_read_as_the_authoritys_tool_signs_them(trust_setup):
    centre = new_issuer("centre", trust_setup.tmp / "centre", card_days=365)
    key = bytes(range(16))
    raw = signers.build_trust_list(trust_setup.root, [trust_setup.naver, centre], seq=2, issued_at=NOW,
                                   card_revoked=[(centre.kid, b"\x07" * 16), (centre.kid, b"\x08" * 16)], card_key=key)
    tl = trustlist.parse(raw, trust_setup.root.public_key())
    assert tl.issuers[centre.kid].card_days == 365 and tl.issuers[trust_setup.naver.kid].card_days == 0
    assert tl.card_key == key
    assert tl.card_revoked == {hmac.new(key, centre.kid + cti, hashlib.sha256).digest()[:16]
                               for cti in (b"\x07" * 16, b"\x08" * 16)}


def test_a_card_key_alone_revokes_nothing():
    tl = _parse(_payload(card_key=b"\x05" * 16))
    assert (tl.card_key, tl.card_revoked) == (b"\x05" * 16, frozenset())


def test_the_most_revoked_cards_are_read():
    tl = _parse(_payload(card_key=bytes(16), card_revoked=_hashes(trustlist.MAX_CARD_REVOKED)))
    assert len(tl.card_revoked) == trustlist.MAX_CARD_REVOKED == 16384
    assert max(tl.card_revoked) == (16383).to_bytes(16, "big")


@pytest.mark.parametrize("payload, text", [
    (_payload(issuers=[_issuer_entry(card_days=0)]), "its card_days is not 1-1830"),
    (_payload(issuers=[_issuer_entry(card_days=1831)]), "its card_days is not 1-1830"),
    (_payload(issuers=[_issuer_entry(card_days=2**40)]), "its card_days is not 1-1830"),
    (_payload(issuers=[_issuer_entry(card_days=-1)]), "its card_days is of CBOR major type 1, not 0"),
    (_payload(issuers=[_issuer_entry(card_days="365")]), "its card_days is of CBOR major type 3, not 0"),
    (_payload(issuers=[_issuer_entry(card_days=True)]), "its card_days is of CBOR major type 7, not 0"),
    (_payload(issuers=[_issuer_entry(card_days=365.0)]), "its card_days is of CBOR major type 7, not 0"),
    (_payload(card_key=bytes(15)), "its card_key is not 16 bytes"),
    (_payload(card_key=bytes(17)), "its card_key is not 16 bytes"),
    (_payload(card_key=b""), "its card_key is not 16 bytes"),
    (_payload(card_key="k" * 16), "its card_key is of CBOR major type 3, not 2"),
    (_payload(card_key=bytes(16), card_revoked=[bytes(15)]), "its revoked cards are not all 16-byte strings"),
    (_payload(card_key=bytes(16), card_revoked=[bytes(16), bytes(17)]),
     "its revoked cards are not all 16-byte strings"),
    (_payload(card_key=bytes(16), card_revoked=[bytes(16), "x" * 16]),
     "its revoked cards are not all 16-byte strings"),
    (_payload(card_key=bytes(16), card_revoked=bytes(16)), "its card_revoked is of CBOR major type 2, not 4"),
    (_payload(card_key=bytes(16), card_revoked=_hashes(trustlist.MAX_CARD_REVOKED + 1)),
     "its card_revoked holds 16385 items, over 16384"),
    (_payload(card_revoked=[bytes(16)]), "its card_revoked comes without a card_key"),
    (_payload(card_revoked=_hashes(3)), "its card_revoked comes without a card_key"),
], ids=lambda v: re.sub(r"\W+", "_", v)[:40] if isinstance(v, str) else None)
def test_a_card_field_off_its_schema_is_refused_saying_what_is_wrong(payload, text):
    with pytest.raises(TrustListError) as refused:
        _parse(payload)
    assert str(refused.value) == f"trust list payload: {text}"
