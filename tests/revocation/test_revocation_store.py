"""The DCC revocation list in force on a device (revocation.store), on real files and real signatures.

A list is built by the authority's builder (lab.revocation) from the EU entries of genuine DCCs, offered as the
daemon receives it (the manifest, then each body it wants) or installed from a folder as a technician does, and
judged by what the door asks: is this verified certificate revoked, may DCCs be judged now.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.errors import RevocationError
from firmware.revocation import store as stores
from firmware.revocation.hashes import HashType
from firmware.revocation.store import MISSING, STALE, RevocationStore, describe
from firmware.store.marks import REVOCATION_SEQ
from firmware.tokens import dcc
from lab import dcc_issuer, revocation

NOW = 1_750_000_000
DAY = 86400


@pytest.fixture(scope="module")
def root():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer():
    return dcc_issuer.make_signer("KR", not_before=NOW - 30 * DAY)


@pytest.fixture(scope="module")
def certs(signer):
    """Four genuine DCCs: (text, verified result) each."""
    out = []
    for _ in range(4):
        text = dcc_issuer.mint(signer, NOW)
        result = dcc.verify(text, [signer.cert], NOW)
        assert result.ok
        out.append((text, result))
    return out


def filler(n: int, seed: int) -> list[revocation.Entry]:
    """Entries of certificates no test shows, so that a list spans buckets."""
    rng = random.Random(seed)
    return [revocation.Entry(HashType.UCI, rng.randbytes(8), rng.randbytes(16)) for _ in range(n)]


def names(text: str, *kinds: HashType) -> list[revocation.Entry]:
    return [e for e in revocation.entries_of_dcc(text) if not kinds or e.kind in kinds]


def build(root, entries, seq: int, issued_at: int = NOW, bits: int | None = 2, **kw) -> revocation.RevocationList:
    return revocation.build(root, entries, seq, issued_at, bits=bits, **kw)


def deliver(store: RevocationStore, rl: revocation.RevocationList, now: float = NOW) -> None:
    """As the daemon receives a list: its manifest, then each body it still wants."""
    assert store.offer_manifest(rl.manifest, now)
    for digest in store.wanted():
        assert store.offer_body(rl.bodies[digest.hex()])


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def new(state, root, **kw) -> RevocationStore:
    return RevocationStore(state, root.public_key(), **kw)


def test_a_store_starts_with_no_list(state, root, certs):
    store = new(state, root)
    assert store.current() is None and store.pending() is None and store.wanted() == []
    assert not store.revoked(certs[0][1])
    assert store.problem(NOW) is None


def test_a_list_is_in_force_once_its_last_body_is_here_and_names_each_hash_type(state, root, certs):
    store = new(state, root)
    (t0, r0), (t1, r1), (t2, r2), (_, r3) = certs
    rl = build(root, names(t0, HashType.UCI) + names(t1, HashType.COUNTRYCODEUCI)
               + names(t2, HashType.SIGNATURE) + filler(200, 1), seq=5)
    assert store.offer_manifest(rl.manifest, NOW)
    m = store.pending()
    assert m is not None and m.seq == 5 and store.current() is None
    wanted = store.wanted()
    assert sorted(d.hex() for d in wanted) == sorted(rl.bodies) and len(wanted) == 4
    for digest in wanted[:-1]:
        assert store.offer_body(rl.bodies[digest.hex()])
        assert store.current() is None and not store.revoked(r0)
    assert store.offer_body(rl.bodies[wanted[-1].hex()])
    assert store.current() is not None and store.current().manifest.raw == rl.manifest and store.pending() is None
    assert [store.revoked(r) for r in (r0, r1, r2, r3)] == [True, True, True, False]
    folder = state / stores.FOLDER
    assert (folder / stores.MANIFEST).read_bytes() == rl.manifest and not (folder / stores.NEXT).exists()
    assert (state / REVOCATION_SEQ).read_text() == "5\n"
    assert {p.name for p in folder.iterdir()} == {stores.MANIFEST, stores.LOCK, *rl.bodies}


def test_a_list_whose_bodies_are_all_here_is_in_force_at_once(state, root, certs):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]) + filler(300, 2), seq=1))
    same_bodies = build(root, names(certs[0][0]) + filler(300, 2), seq=2, issued_at=NOW + 60)
    assert store.offer_manifest(same_bodies.manifest, NOW)
    assert store.current().manifest.seq == 2 and store.wanted() == []


def test_the_old_list_answers_until_the_new_one_is_complete_and_only_changed_buckets_come(state, root, certs):
    store = new(state, root)
    (t0, r0), (t1, r1) = certs[:2]
    old = build(root, names(t0) + filler(400, 3), seq=1, bits=6)
    deliver(store, old)
    new_list = build(root, names(t1) + filler(400, 3), seq=2, bits=6)
    assert store.offer_manifest(new_list.manifest, NOW)
    changed = set(new_list.bodies) - set(old.bodies)
    assert {d.hex() for d in store.wanted()} == changed and 0 < len(changed) <= 6 < len(new_list.bodies)
    for digest in store.wanted()[:-1]:
        store.offer_body(new_list.bodies[digest.hex()])
    assert store.revoked(r0) and not store.revoked(r1) and store.current().manifest.seq == 1
    store.offer_body(new_list.bodies[store.wanted()[-1].hex()])
    assert not store.revoked(r0) and store.revoked(r1) and store.current().manifest.seq == 2
    on_disk = {p.name for p in (state / stores.FOLDER).iterdir()}
    assert on_disk == {stores.MANIFEST, stores.LOCK, *new_list.bodies}  # the old list's own bodies are gone


def test_lookups_go_on_while_a_list_is_replaced(state, root, certs):
    (t0, r0), (t1, r1) = certs[:2]
    store = new(state, root)
    deliver(store, build(root, names(t0, HashType.UCI) + filler(500, 4), seq=1))
    lists = [build(root, names((t0, t1)[i % 2], HashType.UCI) + filler(500, 4 + i), seq=2 + i) for i in range(6)]
    answers, stop = set(), threading.Event()

    def door() -> None:
        while not stop.is_set():
            answers.add((store.revoked(r0), store.revoked(r1)))

    looker = threading.Thread(target=door)
    looker.start()
    try:
        for rl in lists:
            deliver(store, rl)
    finally:
        stop.set()
        looker.join(10)
    assert store.current().manifest.seq == 7
    assert answers <= {(True, False), (False, True), (True, True), (False, False)}
    assert (True, False) in answers  # the door was answered all along, by one list or the next


@pytest.mark.parametrize("seq", [1, 3])
def test_a_list_not_newer_than_the_one_in_force_is_refused(state, root, certs, seq, caplog):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=3))
    older = build(root, names(certs[1][0]), seq=seq)
    assert not store.offer_manifest(older.manifest, NOW)
    assert f"seq {seq} is not higher than the seq in force 3" in caplog.text
    assert store.current().manifest.seq == 3 and store.pending() is None and store.revoked(certs[0][1])


def test_the_same_list_again_is_taken_quietly(state, root, certs, caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]), seq=3)
    deliver(store, rl)
    assert store.offer_manifest(rl.manifest, NOW) and "refused" not in caplog.text
    pending = build(root, names(certs[1][0]), seq=4)
    assert store.offer_manifest(pending.manifest, NOW) and store.offer_manifest(pending.manifest, NOW)
    assert "refused" not in caplog.text and store.pending().seq == 4


def test_a_list_older_than_any_held_is_refused_after_the_files_were_lost(state, root, certs, caplog):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=8))
    for p in (state / stores.FOLDER).iterdir():
        p.unlink()
    again = new(state, root)
    assert again.current() is None
    assert not again.offer_manifest(build(root, names(certs[1][0]), seq=7).manifest, NOW)
    assert "seq 7 is older than seq 8, which this device has held" in caplog.text
    deliver(again, build(root, names(certs[1][0]), seq=8))  # the held seq itself comes back
    assert again.current().manifest.seq == 8


def test_a_list_past_its_not_after_is_refused(state, root, certs, caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]), seq=1, issued_at=NOW - 3 * DAY, valid_days=2)
    assert not store.offer_manifest(rl.manifest, NOW)
    assert "seq 1 is past its not_after" in caplog.text and store.pending() is None
    assert store.offer_manifest(rl.manifest, NOW - DAY)  # still within it
    assert store.offer_manifest(rl.manifest, NOW - 3 * DAY + 2 * DAY)  # its last second


def test_a_list_of_another_root_is_refused(state, root, certs, caplog):
    store = new(state, root)
    assert not store.offer_manifest(build(Ed25519PrivateKey.generate(), names(certs[0][0]), seq=9).manifest, NOW)
    assert "different root" in caplog.text and store.pending() is None


def test_a_newer_list_replaces_the_one_being_assembled_and_an_older_one_does_not(state, root, certs, caplog):
    store = new(state, root)
    first = build(root, names(certs[0][0]) + filler(300, 5), seq=2)
    assert store.offer_manifest(first.manifest, NOW)
    store.offer_body(first.bodies[store.wanted()[0].hex()])
    newer = build(root, names(certs[1][0]) + filler(300, 5), seq=4)
    assert store.offer_manifest(newer.manifest, NOW) and store.pending().seq == 4
    assert not store.offer_manifest(build(root, names(certs[2][0]), seq=3).manifest, NOW)
    assert "seq 3 is not higher than seq 4, being assembled" in caplog.text
    for digest in store.wanted():
        store.offer_body(newer.bodies[digest.hex()])
    assert store.current().manifest.seq == 4 and store.revoked(certs[1][1]) and not store.revoked(certs[0][1])


def test_a_tampered_unwanted_or_untimely_body_is_refused_and_the_list_waits(state, root, certs, caplog):
    store = new(state, root)
    assert not store.offer_body(b"\x00" * 8)
    assert "no revocation list is being assembled" in caplog.text
    rl = build(root, names(certs[0][0]) + filler(300, 6), seq=1)
    other = build(root, filler(300, 7), seq=1)
    store.offer_manifest(rl.manifest, NOW)
    missing = store.wanted()
    body = bytearray(rl.bodies[missing[0].hex()])
    body[-1] ^= 1
    assert not store.offer_body(bytes(body))
    assert not store.offer_body(next(iter(other.bodies.values())))
    assert caplog.text.count("not a body the revocation manifest wants") == 2
    assert store.wanted() == missing and store.current() is None
    assert {p.name for p in (state / stores.FOLDER).iterdir()} == {stores.NEXT, stores.LOCK}  # nothing kept
    store.offer_body(rl.bodies[missing[0].hex()])
    assert store.offer_body(rl.bodies[missing[0].hex()])  # the same body twice: no harm
    assert store.wanted() == missing[1:]


def test_a_restarted_store_holds_the_list_in_force_and_goes_on_with_the_next(state, root, certs):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]) + filler(300, 8), seq=1))
    nxt = build(root, names(certs[1][0]) + filler(300, 9), seq=2)
    store.offer_manifest(nxt.manifest, NOW)
    store.offer_body(nxt.bodies[store.wanted()[0].hex()])
    left = store.wanted()
    again = new(state, root)
    assert again.current().manifest.seq == 1 and again.revoked(certs[0][1])
    assert again.pending().seq == 2 and again.wanted() == left
    for digest in left:
        again.offer_body(nxt.bodies[digest.hex()])
    assert again.current().manifest.seq == 2 and again.revoked(certs[1][1])


def test_a_kept_body_that_no_longer_checks_takes_its_list_out_of_force_until_it_comes_again(state, root, certs,
                                                                                             caplog):
    store = new(state, root, required=True)
    rl = build(root, names(certs[0][0]) + filler(300, 10), seq=3)
    deliver(store, rl)
    spoilt = sorted(rl.bodies)[1]
    path = state / stores.FOLDER / spoilt
    path.write_bytes(path.read_bytes()[:-8] + bytes(8))
    again = new(state, root, required=True)
    assert again.current() is None and again.problem(NOW)[0] == MISSING
    assert [d.hex() for d in again.wanted()] == [spoilt] and again.pending().seq == 3
    assert f"kept revocation body {spoilt[:16]} not taken: not a body the revocation manifest wants" in \
        caplog.messages
    assert again.offer_body(rl.bodies[spoilt])
    assert again.current().manifest.seq == 3 and again.revoked(certs[0][1]) and again.problem(NOW) is None


def test_a_corrupt_kept_manifest_is_logged_and_leaves_no_list(state, root, certs, caplog):
    deliver(new(state, root), build(root, names(certs[0][0]), seq=1))
    kept = state / stores.FOLDER / stores.MANIFEST
    data = kept.read_bytes()
    kept.write_bytes(data[:-1] + bytes((data[-1] ^ 1,)))
    again = new(state, root)
    assert again.current() is None
    assert ("kept revocation manifest manifest.cose is unusable: revocation manifest signature does not verify"
            in caplog.messages)


def test_bodies_named_by_no_list_and_cut_writes_are_cleared_at_the_next_swap(state, root, certs):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=1))
    folder = state / stores.FOLDER
    stray, leftover = folder / ("ab" * 32), folder / ".manifest.cose.0123456789abcdef.tmp"
    stray.write_bytes(b"x")
    leftover.write_bytes(b"x")
    keep = folder / "notes.txt"
    keep.write_bytes(b"a technician's")
    deliver(store, build(root, names(certs[1][0]), seq=2))
    assert not stray.exists() and not leftover.exists() and keep.exists()


def test_a_technician_installs_a_list_from_a_folder_and_the_daemon_adopts_it(state, root, certs, tmp_path):
    daemon = new(state, root)
    deliver(daemon, build(root, names(certs[0][0]) + filler(300, 11), seq=1))
    rl = build(root, names(certs[1][0]) + filler(300, 11), seq=2)
    folder = rl.write(tmp_path / "list")
    technician = new(state, root)
    installed = technician.install(folder, NOW)
    assert installed.manifest.raw == rl.manifest and technician.revoked(certs[1][1])
    assert daemon.current().manifest.seq == 1
    daemon.refresh()
    assert daemon.current().manifest.seq == 2 and daemon.revoked(certs[1][1]) and not daemon.revoked(certs[0][1])
    assert technician.install(folder, NOW).manifest.seq == 2  # again: the same list, nothing to do


def test_an_install_from_a_folder_lacking_bodies_waits_for_them(state, root, certs, tmp_path):
    rl = build(root, names(certs[0][0]) + filler(300, 12), seq=1)
    folder = rl.write(tmp_path / "list")
    gone = sorted(rl.bodies)[:2]
    for name in gone:
        (folder / name).unlink()
    store = new(state, root)
    with pytest.raises(RevocationError, match=f"lacks 2 of the list's {len(rl.bodies)} bodies: seq 1 waits"):
        store.install(folder, NOW)
    assert store.pending().seq == 1 and sorted(d.hex() for d in store.wanted()) == gone
    with pytest.raises(RevocationError, match="different root"):
        other = build(Ed25519PrivateKey.generate(), filler(10, 1), seq=9)
        store.install(other.write(tmp_path / "other"), NOW)


def test_a_daemons_list_newer_than_a_technicians_pending_one_is_kept(state, root, certs, tmp_path):
    """The daemon completes seq 3 while a technician's seq 2 waits: the technician's cannot take over."""
    daemon, technician = new(state, root), new(state, root)
    slow = build(root, names(certs[0][0]) + filler(300, 13), seq=2)
    assert technician.offer_manifest(slow.manifest, NOW)
    deliver(daemon, build(root, names(certs[1][0]), seq=3))
    with pytest.raises(RevocationError) as refused:
        for digest in technician.wanted():
            technician.accept_body(slow.bodies[digest.hex()])
    assert str(refused.value) == "revocation list seq 2 is older than seq 3, which this device has held"
    assert technician.pending() is None
    technician.refresh()
    assert technician.current().manifest.seq == 3


def test_the_files_of_a_newer_pending_list_outlive_an_older_swap(state, root, certs):
    """A technician's seq 5 waits in next.cose while the daemon, not yet aware of it, completes seq 4."""
    daemon, technician = new(state, root), new(state, root)
    four = build(root, names(certs[0][0]), seq=4)
    assert daemon.offer_manifest(four.manifest, NOW)
    five = build(root, names(certs[1][0]) + filler(300, 14), seq=5)
    technician.offer_manifest(five.manifest, NOW)
    kept = store_body = five.bodies[technician.wanted()[0].hex()]
    technician.offer_body(store_body)
    for digest in daemon.wanted():
        daemon.offer_body(four.bodies[digest.hex()])
    folder = state / stores.FOLDER
    assert daemon.current().manifest.seq == 4 and (folder / stores.NEXT).read_bytes() == five.manifest
    assert (folder / hashlib.sha256(kept).hexdigest()).exists()
    daemon.refresh()
    assert daemon.pending().seq == 5 and len(daemon.wanted()) == len(five.bodies) - 1


@pytest.mark.parametrize("required", [False, True])
def test_a_fresh_list_is_no_problem_and_a_stale_one_is_one_only_when_required(state, root, certs, required):
    store = new(state, root, required=required, max_age_s=24 * 3600)
    assert store.problem(NOW) == ((MISSING, "no DCC revocation list in force ([dcc] revocation = true)")
                                  if required else None)
    deliver(store, build(root, names(certs[0][0]), seq=1, issued_at=NOW, valid_days=3))
    assert store.problem(NOW + 24 * 3600) is None
    stale = store.problem(NOW + 24 * 3600 + 1)
    expired = store.problem(NOW + 3 * DAY + 1)
    if not required:
        assert stale is None and expired is None and store.revoked(certs[0][1])  # enforced whatever its age
        return
    assert stale == (STALE, "the DCC revocation list (seq 1) was issued 2025-06-15T15:06:40Z, more than 24 h ago "
                            "([dcc] max_list_age_h)")
    assert expired == (STALE, "the DCC revocation list (seq 1) is past its not_after 2025-06-18T15:06:40Z")
    assert store.problem(NOW + 3 * DAY) == stale  # its last second within not_after: only too old


def test_describe_reads_the_lists_from_their_files(state, root, certs):
    assert describe(state / stores.FOLDER, root.public_key(), NOW) == {"in_force": None, "next": None}
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]) + filler(99, 15), seq=1))
    nxt = build(root, filler(400, 16), seq=2, issued_at=NOW + 3600)
    store.offer_manifest(nxt.manifest, NOW)
    store.offer_body(nxt.bodies[store.wanted()[0].hex()])
    out = describe(state / stores.FOLDER, root.public_key(), NOW + 7200)
    assert out["in_force"] == {"seq": 1, "entries": 102, "buckets": 4, "issued_at": "2025-06-15T15:06:40Z",
                               "age_s": 7200, "not_after": "2025-06-22T15:06:40Z", "bodies_missing": 0}
    assert out["next"]["seq"] == 2 and out["next"]["bodies_missing"] == len(nxt.bodies) - 1
    assert out["next"]["age_s"] == 3600 and out["next"]["entries"] == 400
    other = Ed25519PrivateKey.generate().public_key()
    assert "different root" in describe(state / stores.FOLDER, other, NOW)["in_force"]["error"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root, as `sudo qrgate trust revocation "
                                              "install` has")
def test_a_list_installed_as_root_belongs_to_the_owner_of_the_state_folder(state, root, certs, tmp_path):
    state.mkdir()
    os.chown(state, 4242, 4243)  # the daemon's user
    rl = build(root, names(certs[0][0]), seq=1)
    new(state, root).install(rl.write(tmp_path / "list"), NOW)
    waiting = build(root, names(certs[1][0]) + filler(300, 24), seq=2).write(tmp_path / "two")
    for name in [p.name for p in waiting.iterdir() if p.name != stores.MANIFEST]:
        (waiting / name).unlink()
    with pytest.raises(RevocationError, match="waits for them"):
        new(state, root).install(waiting, NOW)
    folder = state / stores.FOLDER
    assert (folder / stores.NEXT).exists()
    for path in (folder, *folder.iterdir()):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (4242, 4243), path


# --- what the store says, and its edges ------------------------------------------------------------------


def test_a_list_coming_and_in_force_is_logged_and_so_is_each_refusal(state, root, certs, caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]) + filler(200, 17), seq=5)
    caplog.set_level("INFO")
    deliver(store, rl)
    assert "revocation list seq 5: 4 of 4 bodies to fetch" in caplog.messages
    assert "revocation list seq 5 in force (203 entries in 4 buckets, issued 2025-06-15T15:06:40Z)" in caplog.messages
    nxt = build(root, names(certs[0][0]) + filler(200, 17) + filler(1, 99), seq=6)  # one more: one bucket
    store.offer_manifest(nxt.manifest, NOW)
    assert "revocation list seq 6: 1 of 4 bodies to fetch" in caplog.messages
    assert not store.offer_manifest(build(Ed25519PrivateKey.generate(), [], seq=6).manifest, NOW)
    store2 = new(state.parent / "other", root)
    assert not store2.offer_body(b"")
    assert caplog.messages[-2:] == [
        "revocation manifest refused: revocation manifest is signed by a different root key",
        "revocation body refused: no revocation list is being assembled"]


def test_a_list_of_the_seq_being_assembled_is_refused(state, root, certs):
    store = new(state, root)
    assert store.offer_manifest(build(root, names(certs[0][0]), seq=4).manifest, NOW)
    with pytest.raises(RevocationError) as refused:
        store.accept_manifest(build(root, names(certs[1][0]), seq=4).manifest, NOW)
    assert str(refused.value) == "revocation list seq 4 is not higher than seq 4, being assembled"
    assert store.pending().seq == 4 and store.pending().entries == 3


def test_a_body_in_force_serves_the_next_list_as_it_was_checked(state, root, certs, caplog):
    """Its file on the card is not read again: here spoilt after it was opened, and the next list still has it."""
    store = new(state, root)
    old = build(root, filler(300, 18), seq=1, bits=3)
    deliver(store, old)
    for name in old.bodies:
        path = state / stores.FOLDER / name
        path.write_bytes(bytes(len(path.read_bytes())))
    nxt = build(root, filler(300, 18) + names(certs[0][0], HashType.UCI), seq=2, bits=3)
    assert store.offer_manifest(nxt.manifest, NOW)
    assert {d.hex() for d in store.wanted()} == set(nxt.bodies) - set(old.bodies) and len(store.wanted()) == 1
    assert not [m for m in caplog.messages if m.startswith("kept revocation body")]


def test_a_kept_body_is_read_again_for_a_list_of_another_layout(state, root):
    """The same bytes, another number of buckets: checked anew against the new manifest, not fetched again."""
    low = [revocation.Entry(HashType.UCI, bytes(8), bytes([i]) * 16) for i in range(40)]
    keys = revocation.sorted_keys(low)
    entries = [e for e in low if e.key < 1 << 62]  # all in the first quarter
    store = new(state, root)
    deliver(store, build(root, entries, seq=1, bits=0))
    assert len(entries) > 2 and len(keys) > len(entries)
    four = build(root, entries, seq=2, bits=2)
    assert set(four.bodies) == set(build(root, entries, seq=1, bits=0).bodies)  # one body, the same bytes
    assert store.offer_manifest(four.manifest, NOW)
    assert store.wanted() == [] and store.current().manifest.seq == 2 and store.current().manifest.bits == 2


def test_a_newer_list_outlives_a_forged_one_left_beside_it(state, root, certs, caplog):
    """A next.cose another root signed, naming a stray body: neither keeps anything once a list takes over."""
    folder = state / stores.FOLDER
    store = new(state, root)
    stray = build(Ed25519PrivateKey.generate(), filler(20, 19), seq=9, bits=0)
    rl = build(root, names(certs[0][0]), seq=0)
    assert store.offer_manifest(rl.manifest, NOW)
    (folder / stores.NEXT).write_bytes(stray.manifest)
    [(name, body)] = stray.bodies.items()
    (folder / name).write_bytes(body)
    for digest in store.wanted():
        store.offer_body(rl.bodies[digest.hex()])
    assert store.current().manifest.seq == 0
    assert not (folder / stores.NEXT).exists() and not (folder / name).exists()


def test_a_mark_that_cannot_be_written_is_logged_and_the_list_still_taken(state, root, certs, caplog):
    (state / REVOCATION_SEQ).mkdir(parents=True)  # where the mark's file should go
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=3))
    assert store.current().manifest.seq == 3
    [line] = [m for m in caplog.messages if m.startswith("cannot keep")]
    assert line == f"cannot keep revocation list seq 3 as a mark in {state / REVOCATION_SEQ}: Is a directory"


def test_the_default_age_is_24_hours(state, root, certs):
    store = new(state, root, required=True)
    deliver(store, build(root, names(certs[0][0]), seq=1))
    assert store.problem(NOW + 86400) is None and store.problem(NOW + 86401)[0] == STALE


def test_a_file_is_read_no_further_than_its_cap(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert stores.read_capped(tmp_path / "f", 10) == b"x" * 10
    with pytest.raises(RevocationError) as refused:
        stores.read_capped(tmp_path / "f", 9)
    assert str(refused.value) == f"{tmp_path / 'f'} is larger than 9 bytes"
    with pytest.raises(RevocationError):
        stores.read_capped(stores.Path("/dev/zero"), 64)


def test_describe_reads_the_next_list_when_the_one_in_force_is_unreadable(state, root, certs):
    store = new(state, root)
    store.offer_manifest(build(root, names(certs[0][0]), seq=2).manifest, NOW)
    (state / stores.FOLDER / stores.MANIFEST).write_bytes(b"junk")
    out = describe(state / stores.FOLDER, root.public_key(), NOW)
    assert "error" in out["in_force"] and out["next"]["seq"] == 2


# --- a restart, and another process's files ---------------------------------------------------------------


def test_a_restart_goes_on_with_the_list_being_fetched_when_none_is_in_force(state, root, certs):
    rl = build(root, names(certs[0][0]) + filler(300, 20), seq=1)
    new(state, root).offer_manifest(rl.manifest, NOW)
    again = new(state, root)
    assert again.current() is None and again.pending().seq == 1 and len(again.wanted()) == len(rl.bodies)
    (state / stores.FOLDER / stores.MANIFEST).write_bytes(b"junk")  # and with an unreadable list in force
    assert new(state, root).pending().seq == 1


def test_a_kept_next_list_older_than_any_held_is_logged_and_left(state, root, certs, caplog):
    deliver(new(state, root), build(root, names(certs[1][0]), seq=8))
    folder = state / stores.FOLDER
    for path in folder.iterdir():
        path.unlink()
    (folder / stores.NEXT).write_bytes(build(root, names(certs[0][0]), seq=5).manifest)  # put back by hand
    again = new(state, root)
    assert again.current() is None and again.pending() is None
    assert ("kept revocation manifest next.cose not taken: revocation list seq 5 is older than seq 8, which this "
            "device has held") in caplog.messages


def test_a_kept_next_list_older_than_the_one_in_force_is_cleared(state, root, certs):
    deliver(new(state, root), build(root, names(certs[1][0]), seq=2))
    (state / stores.FOLDER / stores.NEXT).write_bytes(build(root, names(certs[0][0]), seq=1).manifest)
    again = new(state, root)
    assert again.current().manifest.seq == 2 and again.pending() is None
    assert not (state / stores.FOLDER / stores.NEXT).exists()


def test_the_list_being_fetched_is_taken_when_a_technician_completes_it(state, root, certs, tmp_path):
    daemon = new(state, root)
    rl = build(root, names(certs[0][0]) + filler(300, 21), seq=1)
    daemon.offer_manifest(rl.manifest, NOW)
    daemon.offer_body(rl.bodies[daemon.wanted()[0].hex()])  # the first bucket's: here already
    new(state, root).install(rl.write(tmp_path / "list"), NOW)
    daemon.refresh()
    assert daemon.current().manifest.seq == 1 and daemon.pending() is None and daemon.revoked(certs[0][1])


def test_a_newer_list_a_technician_installs_replaces_the_one_being_fetched(state, root, certs, tmp_path):
    daemon = new(state, root)
    daemon.offer_manifest(build(root, names(certs[0][0]) + filler(300, 22), seq=2).manifest, NOW)
    newer = build(root, names(certs[1][0]), seq=3)
    new(state, root).install(newer.write(tmp_path / "list"), NOW)
    daemon.refresh()
    assert daemon.current().manifest.seq == 3 and daemon.pending() is None and daemon.revoked(certs[1][1])


def test_a_technician_completing_the_list_being_fetched_and_starting_another_is_followed(state, root, certs,
                                                                                          tmp_path):
    daemon = new(state, root)
    first = build(root, names(certs[0][0]), seq=1)
    daemon.offer_manifest(first.manifest, NOW)
    technician = new(state, root)
    technician.install(first.write(tmp_path / "list"), NOW)
    technician.offer_manifest(build(root, names(certs[1][0]) + filler(300, 23), seq=2).manifest, NOW)
    daemon.refresh()
    assert daemon.current().manifest.seq == 1 and daemon.pending().seq == 2


def test_a_body_gone_from_the_card_meanwhile_does_not_stop_a_list_taking_over(state, root, certs, monkeypatch):
    """A technician's rm between the listing of the folder and the delete: the swap goes on."""
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=1, bits=0))
    real = os.unlink

    def raced(path, *a, **kw):
        if len(os.path.basename(path)) == 64:
            real(path)  # someone else was first
        return real(path, *a, **kw)

    monkeypatch.setattr(stores.os, "unlink", raced)
    deliver(store, build(root, names(certs[1][0]), seq=2, bits=0))
    assert store.current().manifest.seq == 2 and store.revoked(certs[1][1])


def test_a_refresh_reads_the_files_again_only_when_they_changed(state, root, certs, monkeypatch):
    store = new(state, root)
    deliver(store, build(root, names(certs[0][0]), seq=1))
    store.refresh()  # our own writes, seen once
    other = new(state, root)
    reads = []
    real = stores.read_capped
    monkeypatch.setattr(stores, "read_capped", lambda path, cap: reads.append(path.name) or real(path, cap))
    store.refresh()
    store.refresh()
    assert reads == []
    other.offer_manifest(build(root, names(certs[1][0]), seq=2).manifest, NOW)
    store.refresh()
    assert reads == [stores.MANIFEST, stores.NEXT] and store.pending().seq == 2


# --- a card that refuses ----------------------------------------------------------------------------------


def refusing(monkeypatch, only: str | None = None) -> None:
    """The card full: every write refused (or only that of the file named `only`)."""
    real = stores.write_atomic

    def full(path, data, **kw):
        if only is None or path.name == only:
            raise OSError(28, "No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr(stores, "write_atomic", full)


def test_a_card_that_refuses_writes_refuses_what_came_and_raises_nothing(state, root, certs, monkeypatch, caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]) + filler(300, 25), seq=1)
    folder = state / stores.FOLDER
    with monkeypatch.context() as m:
        refusing(m)
        assert not store.offer_manifest(rl.manifest, NOW)
    assert caplog.messages[-1] == ("revocation manifest refused: cannot write "
                                   f"{folder / stores.NEXT}: No space left on device")
    assert store.pending() is None and store.offer_manifest(rl.manifest, NOW)
    first = store.wanted()[0]
    with monkeypatch.context() as m:
        refusing(m)
        assert not store.offer_body(rl.bodies[first.hex()])
    assert caplog.messages[-1] == (f"revocation body refused: cannot write {folder / first.hex()}: "
                                   "No space left on device")
    assert store.wanted()[0] == first and store.offer_body(rl.bodies[first.hex()])


def test_a_list_whose_last_write_was_refused_takes_over_at_a_later_refresh(state, root, certs, monkeypatch, caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]) + filler(300, 26), seq=1)
    store.offer_manifest(rl.manifest, NOW)
    *most, last = store.wanted()
    for digest in most:
        store.offer_body(rl.bodies[digest.hex()])
    with monkeypatch.context() as m:
        refusing(m, only=stores.MANIFEST)
        assert not store.offer_body(rl.bodies[last.hex()])
        store.refresh()
        store.refresh()
        assert store.current() is None and store.wanted() == []
    refused = f"cannot write {state / stores.FOLDER / stores.MANIFEST}: No space left on device"
    assert caplog.messages.count(f"kept revocation manifest next.cose not taken: {refused}") == 1  # said once
    store.refresh()
    assert store.current().manifest.seq == 1 and store.revoked(certs[0][1])


def test_a_folder_that_cannot_be_locked_is_a_refusal(state, root, certs, caplog):
    state.mkdir()
    (state / stores.FOLDER).write_bytes(b"not a folder")
    store = new(state, root)
    assert not store.offer_manifest(build(root, names(certs[0][0]), seq=1).manifest, NOW)
    assert caplog.messages[-1] == (f"revocation manifest refused: cannot lock {state / stores.FOLDER}: "
                                   "Not a directory")


# --- the folder, made safely ------------------------------------------------------------------------------


def test_the_folders_and_the_lock_are_made_for_the_owner_only(tmp_path, root, certs):
    state = tmp_path / "a" / "b" / "state"  # not there yet, nor its parents
    assert new(state, root).offer_manifest(build(root, names(certs[0][0]), seq=1).manifest, NOW)
    folder = state / stores.FOLDER
    modes = {p: p.stat().st_mode & 0o777 for p in (state, folder, folder / stores.LOCK)}
    assert modes == {state: 0o700, folder: 0o700, folder / stores.LOCK: 0o600}


@pytest.mark.parametrize("planted", [stores.FOLDER, f"{stores.FOLDER}/{stores.LOCK}"])
def test_a_link_planted_for_the_folder_or_the_lock_is_refused_never_followed(state, root, certs, caplog, planted):
    victim = state.parent / "victim"
    victim.mkdir()
    (state / stores.FOLDER).mkdir(parents=True)
    if planted == stores.FOLDER:
        (state / stores.FOLDER).rmdir()
    (state / planted).symlink_to(victim if planted == stores.FOLDER else victim / "lock")
    store = new(state, root)
    assert not store.offer_manifest(build(root, names(certs[0][0]), seq=1).manifest, NOW)
    assert caplog.messages[-1].startswith(f"revocation manifest refused: cannot lock {state / stores.FOLDER}: ")
    assert list(victim.iterdir()) == []


def test_a_lock_that_cannot_be_given_away_is_a_refusal_and_leaves_nothing_open(state, root, certs, monkeypatch,
                                                                                caplog):
    store = new(state, root)
    rl = build(root, names(certs[0][0]), seq=1)
    assert store.offer_manifest(rl.manifest, NOW)  # the folder and its lock made
    monkeypatch.setattr(stores.os, "geteuid", lambda: 0)
    monkeypatch.setattr(stores.os, "fchown", lambda *a: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))
    before = len(os.listdir("/proc/self/fd"))
    assert not store.offer_body(rl.bodies[store.wanted()[0].hex()])
    assert len(os.listdir("/proc/self/fd")) == before
    assert caplog.messages[-1] == (f"revocation body refused: cannot lock {state / stores.FOLDER}: "
                                   "Operation not permitted")
