"""SqliteStorage: the exact table, dedupe by rid, the venue-and-window query, 28-day retention."""

from __future__ import annotations

import sqlite3
import time

import pytest
from custodian_kit import new_authority

from custodian.storage import DAY_S, SqliteStorage
from firmware.errors import QrgateError


def test_the_table_is_exactly_the_contract_in_wal_with_full_sync(tmp_path):
    storage = SqliteStorage(tmp_path / "c.db")
    db = storage._db
    columns = [(r[1], r[2], bool(r[3]), bool(r[5])) for r in db.execute("PRAGMA table_info(visits)")]
    assert columns == [("rid", "BLOB", False, True), ("venue", "TEXT", True, False),
                       ("device", "TEXT", True, False), ("ts", "INTEGER", True, False),
                       ("wire", "BLOB", True, False), ("received_at", "REAL", True, False)]
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["visits"]
    index = [r[2] for r in db.execute("PRAGMA index_info(visits_venue_ts)")]
    assert index == ["venue", "ts"]
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


def test_purge_deletes_visits_older_than_28_days_only(tmp_path):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    now = 1_800_000_000
    old = [authority.visit(ts=now - 29 * DAY_S)[1], authority.visit(ts=now - 28 * DAY_S - 1)[1]]
    kept = [authority.visit(ts=now - 28 * DAY_S)[1], authority.visit(ts=now - DAY_S)[1]]
    storage.add([(r, r.wire()) for r in old + kept], received_at=now)
    assert storage.purge(now) == 2
    assert {row.rid for row in storage.between("cafe-1", 0, now)} == {r.rid for r in kept}
    assert storage.purge(now) == 0
    storage.close()


def test_a_second_connection_waits_for_the_write_lock_instead_of_failing(tmp_path):
    authority = new_authority(tmp_path)
    path = tmp_path / "c.db"
    first, second = SqliteStorage(path), SqliteStorage(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    record = authority.visit()[1]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
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
