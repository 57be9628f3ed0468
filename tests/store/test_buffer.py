"""The sealed SQLite store on the card: one-time-use memory, durability settings, retention."""

import sqlite3
from types import SimpleNamespace

import pytest

from firmware.errors import StorageError
from firmware.keys import new_authority
from firmware.store.buffer import RETENTION_S, SqliteRecordStore
from firmware.store.records import SealedRecord, Visit
from firmware.tokens.verdict import Claims

NOW = 1_750_000_000


def cti(n: int) -> bytes:
    return bytes([0xC7, n]) * 8


@pytest.fixture
def world(tmp_path):
    authority = new_authority(tmp_path / "authority")
    path = tmp_path / "visits.db"
    store = SqliteRecordStore(path)
    made = []

    def record(token: bytes, ts: int = NOW):
        def make() -> SealedRecord:
            sealed = Visit.of(Claims("naver", ts, ts + 15, token), "cafe-1", "door-a", ts).seal(authority.public_key())
            made.append(sealed)
            return sealed

        return make

    def admit(token: bytes, now: int = NOW, seen_until: int = NOW + 20, ts: int | None = None) -> bool:
        return world.store.admit(token, seen_until=seen_until, now=now, make_record=record(token, now if ts is None else ts))

    world = SimpleNamespace(authority=authority, path=path, store=store, made=made, record=record, admit=admit)
    yield world
    try:
        world.store.close()
    except sqlite3.ProgrammingError:
        pass


def reopen(world) -> SqliteRecordStore:
    world.store.close()
    world.store = SqliteRecordStore(world.path)
    return world.store


def test_admit_records_a_new_token_once_within_its_window(world):
    assert world.admit(cti(1)) is True
    assert world.admit(cti(1), now=NOW + 5) is False
    assert world.admit(cti(1), now=NOW + 20) is False  # the last second of the window still counts
    assert len(world.made) == 1  # no record was even built for the repeat
    assert world.store.depth() == (1, NOW)
    [(rid, wire)] = world.store.oldest(10)
    assert rid == world.made[0].rid and wire == world.made[0].wire()


def test_admitted_record_opens_to_the_visit(world):
    world.admit(cti(1))
    [(_, wire)] = world.store.oldest(1)
    plain = SealedRecord.from_wire(wire).open(world.authority)
    assert plain["cti"] == cti(1) and plain["venue"] == "cafe-1" and plain["ts"] == NOW


def test_token_is_new_again_after_seen_until(world):
    assert world.admit(cti(1), seen_until=NOW + 20) is True
    assert world.admit(cti(1), now=NOW + 21, seen_until=NOW + 41) is True
    assert world.store.depth()[0] == 2
    assert world.admit(cti(1), now=NOW + 30) is False


def test_other_tokens_are_independent(world):
    assert world.admit(cti(1)) is True
    assert world.admit(cti(2)) is True
    assert world.store.depth()[0] == 2


def test_records_and_seen_memory_survive_reopening(world):
    world.admit(cti(1))
    rid = world.made[0].rid
    store = reopen(world)
    assert [r for r, _ in store.oldest(10)] == [rid]
    assert world.admit(cti(1), now=NOW + 1) is False
    assert world.admit(cti(2), now=NOW + 1) is True
    assert store.depth()[0] == 2


def test_journal_is_wal(world):
    other = sqlite3.connect(world.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_commits_are_synchronous_full_and_deletes_are_secure(world):
    assert world.store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert world.store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_oldest_returns_oldest_first_and_honours_limit_and_skip(world):
    for n, ts in [(1, NOW + 30), (2, NOW + 10), (3, NOW + 20)]:
        world.admit(cti(n), ts=ts)
    by_ts = {r.ts: r.rid for r in world.made}
    first, second, third = by_ts[NOW + 10], by_ts[NOW + 20], by_ts[NOW + 30]
    assert [r for r, _ in world.store.oldest(10)] == [first, second, third]
    assert [r for r, _ in world.store.oldest(2)] == [first, second]
    assert [r for r, _ in world.store.oldest(2, skip=frozenset({first}))] == [second, third]
    assert [r for r, _ in world.store.oldest(1, skip=frozenset({first, second}))] == [third]
    assert world.store.depth() == (3, NOW + 10)


def test_delete_removes_a_record(world):
    world.admit(cti(1))
    world.admit(cti(2))
    gone, kept = world.made[0].rid, world.made[1].rid
    world.store.delete(gone)
    assert [r for r, _ in world.store.oldest(10)] == [kept]
    world.store.delete(gone)  # a second acknowledgement is harmless
    assert world.store.depth()[0] == 1


def test_purge_drops_records_older_than_28_days_and_keeps_newer(world):
    later = NOW + RETENTION_S + 100
    for n, ts in [(1, NOW), (2, later - RETENTION_S - 1), (3, later - RETENTION_S), (4, later - 1)]:
        world.admit(cti(n), ts=ts)
    by_ts = {r.ts: r.rid for r in world.made}
    assert world.store.purge(later) == 2
    assert [r for r, _ in world.store.oldest(10)] == [by_ts[later - RETENTION_S], by_ts[later - 1]]


def test_purge_forgets_seen_tokens_past_their_window(world):
    world.admit(cti(1), seen_until=NOW + 20)
    world.admit(cti(2), seen_until=NOW + 200)
    world.store.purge(NOW + 100)
    assert world.store._db.execute("SELECT count(*) FROM seen").fetchone()[0] == 1
    assert world.admit(cti(2), now=NOW + 100) is False


def test_card_holds_no_token_id(world):
    tokens = [cti(n) for n in range(1, 6)]
    for t in tokens:
        world.admit(t)
    world.store.delete(world.made[0].rid)

    def assert_card_clean():
        data = b"".join(p.read_bytes() for p in world.path.parent.glob(world.path.name + "*"))  # db, -wal, -shm
        assert world.made[1].rid in data  # the records are there ...
        for t in tokens:
            assert t not in data and t.hex().encode() not in data  # ... but not the token ids

    assert_card_clean()  # while open (the commits sit in the WAL)
    reopen(world)
    assert_card_clean()  # after a checkpoint
    hashes = {h for (h,) in world.store._db.execute("SELECT h FROM seen")}
    assert hashes == {world.store.seen_hash(t) for t in tokens}


def test_seen_hash_is_keyed_per_device(world, tmp_path):
    other = SqliteRecordStore(tmp_path / "other.db")
    try:
        assert other.seen_hash(cti(1)) != world.store.seen_hash(cti(1))
        assert world.store.seen_hash(cti(1)) == world.store.seen_hash(cti(1))
    finally:
        other.close()


def test_opening_in_a_missing_directory_raises_storage_error(tmp_path):
    with pytest.raises(StorageError):
        SqliteRecordStore(tmp_path / "no" / "such" / "dir" / "visits.db")


def test_duplicate_rid_raises_storage_error_and_records_nothing(world):
    world.admit(cti(1))
    dup = world.made[0]
    with pytest.raises(StorageError):
        world.store.admit(cti(2), seen_until=NOW + 20, now=NOW, make_record=lambda: dup)
    assert world.store.depth()[0] == 1
    assert world.admit(cti(2)) is True  # the token was not marked seen by the failed attempt


def test_failing_make_record_leaves_the_store_usable(world):
    def boom():
        raise RuntimeError("sealing failed")

    with pytest.raises(RuntimeError):
        world.store.admit(cti(1), seen_until=NOW + 20, now=NOW, make_record=boom)
    assert world.admit(cti(2)) is True
