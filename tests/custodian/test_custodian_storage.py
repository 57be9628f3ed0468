"""SqliteStorage: the exact table, dedupe by rid, the venue-and-window query, 28-day retention by arrival,
and the line between a database that fails (StorageUnavailable) and a record it refuses."""

from __future__ import annotations

import sqlite3
import time

import pytest
from custodian_kit import new_authority

from custodian.storage import DAY_S, SqliteStorage, StorageUnavailable
from firmware.errors import QrgateError
from firmware.store.records import SealedRecord


def test_the_table_is_exactly_the_contract_in_wal_with_full_sync(tmp_path):
    storage = SqliteStorage(tmp_path / "c.db")
    db = storage._db
    columns = [(r[1], r[2], bool(r[3]), bool(r[5])) for r in db.execute("PRAGMA table_info(visits)")]
    assert columns == [("rid", "BLOB", False, True), ("venue", "TEXT", True, False),
                       ("device", "TEXT", True, False), ("ts", "INTEGER", True, False),
                       ("wire", "BLOB", True, False), ("received_at", "REAL", True, False)]
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["visits"]
    assert [r[2] for r in db.execute("PRAGMA index_info(visits_venue_ts)")] == ["venue", "ts"]
    assert [r[2] for r in db.execute("PRAGMA index_info(visits_received_at)")] == ["received_at"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    storage.close()


def test_add_dedupes_by_rid_within_and_across_batches(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    records = [authority.visit()[1] for _ in range(3)]
    pairs = [(r, r.wire()) for r in records]
    assert storage.add(pairs + pairs[:1], received_at=1.0) == 3
    assert storage.add(pairs[1:], received_at=2.0) == 0
    assert storage.count() == 3
    rows = list(storage.between("cafe-1", 0, 2**40))
    assert {row.rid for row in rows} == {r.rid for r in records}
    assert {row.received_at for row in rows} == {1.0}  # the first copy stays
    assert all(row.wire == r.wire() for row in rows for r in records if r.rid == row.rid)
    storage.close()


def test_between_is_one_venue_and_inclusive_window_oldest_first(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    made = [authority.visit(venue, ts=ts)[1] for venue in ("cafe-1", "gym-2") for ts in (100, 200, 300, 400)]
    storage.add([(r, r.wire()) for r in made], received_at=time.time())
    assert [row.ts for row in storage.between("cafe-1", 200, 300)] == [200, 300]
    assert {row.venue for row in storage.between("gym-2", 0, 1000)} == {"gym-2"}
    assert list(storage.between("nowhere", 0, 1000)) == []
    storage.close()


def test_purge_goes_by_when_the_custodian_received_a_record_not_by_the_devices_ts(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    now = 1_800_000_000
    far_future, long_ago = authority.visit(ts=2**62)[1], authority.visit(ts=-(2**40))[1]
    storage.add([(far_future, far_future.wire())], received_at=now - 29 * DAY_S)
    storage.add([(r, r.wire()) for r in (authority.visit()[1], authority.visit()[1])], received_at=now - 28 * DAY_S - 1)
    kept = [long_ago, authority.visit(ts=now - 100 * DAY_S)[1]]
    storage.add([(r, r.wire()) for r in kept], received_at=now - 28 * DAY_S)
    assert storage.purge(now) == 3
    assert {row.rid for row in storage.between("cafe-1", -(2**62), 2**62)} == {r.rid for r in kept}
    assert storage.purge(now) == 0
    storage.close()


def test_an_older_file_gains_the_received_at_index_and_purge_uses_it(tmp_path):
    path = tmp_path / "c.db"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE visits(rid BLOB PRIMARY KEY, venue TEXT NOT NULL, device TEXT NOT NULL,"
                      " ts INTEGER NOT NULL, wire BLOB NOT NULL, received_at REAL NOT NULL);"
                      "CREATE INDEX visits_venue_ts ON visits(venue, ts);")
    old.close()
    storage = SqliteStorage(path)
    plan = " ".join(r[3] for r in storage._db.execute("EXPLAIN QUERY PLAN DELETE FROM visits WHERE received_at < 1"))
    assert "visits_received_at" in plan
    storage.close()


def test_a_record_the_database_cannot_hold_is_refused_as_itself_and_its_batch_is_not_stored(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    good = authority.visit()[1]
    huge_ts = SealedRecord(b"h" * 16, "cafe-1", "door-1", 2**63, b"sealed")  # past SQLite's 64-bit INTEGER
    with pytest.raises(OverflowError):
        storage.add([(good, good.wire()), (huge_ts, huge_ts.wire())], received_at=1.0)
    storage._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON visits WHEN NEW.venue = 'gym-2'"
                        " BEGIN SELECT RAISE(ABORT, 'refused'); END")
    refused = authority.visit("gym-2")[1]
    with pytest.raises(sqlite3.IntegrityError):
        storage.add([(good, good.wire()), (refused, refused.wire())], received_at=1.0)
    assert storage.count() == 0
    assert storage.add([(good, good.wire())], received_at=1.0) == 1  # the connection is still good
    storage.close()


def test_a_full_or_closed_database_is_unavailable_not_the_records_fault(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    pages = storage._db.execute("PRAGMA page_count").fetchone()[0]
    storage._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as on a full disk
    records = [authority.visit()[1] for _ in range(50)]
    with pytest.raises(StorageUnavailable, match="full"):
        storage.add([(r, r.wire()) for r in records], received_at=1.0)
    storage._db.execute(f"PRAGMA max_page_count = {10 * pages + 1000}")
    assert storage.add([(r, r.wire()) for r in records], received_at=1.0) == 50
    storage.close()
    with pytest.raises(StorageUnavailable, match="closed"):
        storage.add([(records[0], records[0].wire())], received_at=1.0)
    with pytest.raises(StorageUnavailable, match="closed"):
        storage.purge(1.0)


def test_a_second_connection_waits_for_the_write_lock_instead_of_failing(tmp_path):
    authority = new_authority(tmp_path)
    path = tmp_path / "c.db"
    first, second = SqliteStorage(path), SqliteStorage(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    record = authority.visit()[1]
    with pytest.raises(StorageUnavailable, match="locked"):
        second.add([(record, record.wire())], received_at=1.0)
    assert first.count() == 0  # WAL: readers are not blocked by the writer
    blocker.execute("ROLLBACK")
    assert second.add([(record, record.wire())], received_at=1.0) == 1
    assert first.count() == 1
    for s in (first, second):
        s.close()


def test_opening_a_missing_store_without_create_is_a_clear_error(tmp_path):
    with pytest.raises(QrgateError, match="no custodian database"):
        SqliteStorage(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()



def _open_and_count(path: str, barrier) -> int:
    from custodian.storage import SqliteStorage

    barrier.wait()
    store = SqliteStorage(path)
    try:
        return store.count()
    finally:
        store.close()


def test_several_processes_may_open_one_new_file_at_once(tmp_path):
    """The switch to WAL takes an exclusive lock SQLite's busy handler does not wait for: opening retries."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        barrier = ctx.Manager().Barrier(6)
        with ctx.Pool(6) as pool:
            counts = pool.starmap(_open_and_count, [(str(tmp_path / f"new-{attempt}.db"), barrier)] * 6)
        assert counts == [0] * 6
