"""The signed trust list (tokens.trustlist) and the one in force on the device (trust.TrustStore)."""

import os
from types import SimpleNamespace

import cbor2
import pytest

from firmware.errors import TrustListError
from firmware.keys import kid_of
from lab.signers import new_issuer, new_root
from firmware.tokens import cose, trustlist
from firmware.trust import FILENAME, TrustStore
from lab import signers

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
    with pytest.raises(TrustListError):
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
    with pytest.raises(TrustListError, match="1 MiB"):
        trustlist.parse(raw, trust_setup.root.public_key())


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
