"""Both stores, one suite: dedupe by rid, the venue-and-window query, retention by arrival, and the line
between a database that fails (StorageUnavailable) and a record it refuses — for SqliteStorage and
PostgresStorage alike (`store`); then what is each one's own (SQLite's file and locks, PostgreSQL's
partitions and a server killed mid-run)."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest
from custodian_kit import new_authority
from pg_kit import pg_url, postgres, store  # noqa: F401  fixtures

from custodian.pgstore import PostgresStorage
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


def test_add_dedupes_by_rid_within_and_across_batches(tmp_path, store):
    authority = new_authority(tmp_path)
    storage = store.open()
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


def test_between_is_one_venue_and_inclusive_window_oldest_first(tmp_path, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    made = [authority.visit(venue, ts=ts)[1] for venue in ("cafe-1", "gym-2") for ts in (100, 200, 300, 400)]
    storage.add([(r, r.wire()) for r in made], received_at=time.time())
    assert [row.ts for row in storage.between("cafe-1", 200, 300)] == [200, 300]
    assert {row.venue for row in storage.between("gym-2", 0, 1000)} == {"gym-2"}
    assert list(storage.between("nowhere", 0, 1000)) == []
    storage.close()


NOW = 1_800_000_000


def purged_and_kept(storage, authority, gone_s: tuple[float, float], kept_s: float):
    """One record received `gone_s[0]` ago and two `gone_s[1]` ago are purged; two received `kept_s` ago (their
    device ts far in the past) are kept; a second purge finds nothing. Returns the first purged record, whose
    ts is far in the future: receipt decides, not the device's ts."""
    far_future, long_ago = authority.visit(ts=2**62)[1], authority.visit(ts=-(2**40))[1]
    storage.add([(far_future, far_future.wire())], received_at=NOW - gone_s[0])
    storage.add([(r, r.wire()) for r in (authority.visit()[1], authority.visit()[1])], received_at=NOW - gone_s[1])
    kept = [long_ago, authority.visit(ts=NOW - 100 * DAY_S)[1]]
    storage.add([(r, r.wire()) for r in kept], received_at=NOW - kept_s)
    assert storage.purge(NOW) == 3
    assert {row.rid for row in storage.between("cafe-1", -(2**62), 2**62)} == {r.rid for r in kept}
    assert storage.purge(NOW) == 0
    return far_future


def test_purge_goes_by_when_the_custodian_received_a_record_not_by_the_devices_ts(tmp_path, store):
    """A day past the retention is gone, a day inside it kept, whatever the devices' ts say."""
    storage = store.open()
    far_future = purged_and_kept(storage, new_authority(tmp_path), gone_s=(30 * DAY_S, 29 * DAY_S + 1),
                                 kept_s=27 * DAY_S)
    assert storage.count() == 2
    # A purged rid is forgotten with its record: sent again, it is new.
    assert storage.add([(far_future, far_future.wire())], received_at=NOW) == 1
    storage.close()


def test_sqlite_purges_to_the_second(tmp_path):
    storage = SqliteStorage(tmp_path / "c.db")
    purged_and_kept(storage, new_authority(tmp_path), gone_s=(29 * DAY_S, 28 * DAY_S + 1), kept_s=28 * DAY_S)
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


def test_a_record_the_database_cannot_hold_is_refused_as_itself_and_its_batch_is_not_stored(tmp_path, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    good = authority.visit()[1]
    huge_ts = SealedRecord(b"h" * 16, "cafe-1", "door-1", 2**63, b"sealed")  # past a 64-bit INTEGER, a bigint
    with pytest.raises(OverflowError if store.kind == "sqlite" else psycopg.errors.NumericValueOutOfRange):
        storage.add([(good, good.wire()), (huge_ts, huge_ts.wire())], received_at=1.0)
    refused = authority.visit("gym-2")[1]
    with pytest.raises(store.refuse_venue(storage, "gym-2")):
        storage.add([(good, good.wire()), (refused, refused.wire())], received_at=1.0)
    assert storage.count() == 0
    assert storage.add([(good, good.wire())], received_at=1.0) == 1  # the connection is still good
    assert storage.add([(good, good.wire())], received_at=2.0) == 0  # stored once: no refused batch left its rid
    storage.close()


def test_a_closed_store_is_unavailable_not_the_records_fault(tmp_path, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    record = authority.visit()[1]
    storage.close()
    with pytest.raises(StorageUnavailable, match="closed"):
        storage.add([(record, record.wire())], received_at=1.0)
    with pytest.raises(StorageUnavailable, match="closed"):
        storage.purge(1.0)


def test_a_full_or_closed_sqlite_database_is_unavailable_not_the_records_fault(tmp_path):
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


def test_opening_a_missing_store_without_create_is_a_clear_error(tmp_path, store):
    with pytest.raises(QrgateError, match="no custodian (database|tables)"):
        store.open(create=False)
    if store.kind == "sqlite":
        assert not store.where.exists()
    else:
        with psycopg.connect(store.where) as conn:
            assert conn.execute("SELECT to_regclass('visits'), to_regclass('rids')").fetchone() == (None, None)
    store.open().close()
    assert store.open(create=False).count() == 0  # made once, it opens



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


# PostgreSQL's own: the schema, partitions dropped by purge, a server killed mid-run.


def _partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                           " WHERE i.inhparent = 'visits'::regclass ORDER BY 1")]


def test_postgres_visits_are_partitioned_by_day_of_receipt_and_rids_keyed_alone(pg_url):
    PostgresStorage(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT pg_get_partkeydef('visits'::regclass)").fetchone()[0] == "RANGE (received_at)"
        assert conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'rids'::regclass"
                            " AND contype = 'p'").fetchone()[0] == "PRIMARY KEY (rid)"
        columns = conn.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                               " WHERE table_name = 'visits' ORDER BY ordinal_position").fetchall()
    assert columns == [("rid", "bytea", "NO"), ("venue", "text", "NO"), ("device", "text", "NO"),
                       ("ts", "bigint", "NO"), ("wire", "bytea", "NO"), ("received_at", "double precision", "NO")]


def test_postgres_purge_drops_whole_partitions_and_their_rids(tmp_path, pg_url):
    authority = new_authority(tmp_path)
    storage = PostgresStorage(pg_url)
    day0 = 1_800_000_000 // DAY_S * DAY_S  # midnight UTC
    old = [authority.visit()[1] for _ in range(3)]
    storage.add([(r, r.wire()) for r in old], received_at=day0 + 60)  # day 0, its partition and day 1's
    straddling = authority.visit()[1]
    storage.add([(straddling, straddling.wire())], received_at=day0 + DAY_S + 60)  # day 1
    assert _partitions(pg_url) == ["visits_20270115", "visits_20270116", "visits_20270117"]
    # 28 days after day 1 began plus an hour: day 0 is wholly past, day 1 only in part, so it stays whole.
    now = day0 + DAY_S + 28 * DAY_S + 3600
    assert storage.purge(now) == 3
    assert _partitions(pg_url) == ["visits_20270116", "visits_20270117"]
    assert [row.rid for row in storage.between("cafe-1", 0, 2**62)] == [straddling.rid]
    with psycopg.connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT rid FROM rids")] == [straddling.rid]
        # A drop, not a delete: the partition's rows were never deleted one by one.
        assert conn.execute("SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'visits_20270116'"
                            ).fetchone()[0] == 0
    assert storage.purge(now + DAY_S) == 1  # the next day, day 1 is past too
    assert storage.count() == 0
    storage.close()


def test_postgres_killed_mid_run_is_unavailable_then_recovers_with_nothing_lost(tmp_path, postgres, pg_url):
    authority = new_authority(tmp_path)
    storage = PostgresStorage(pg_url)
    before = [authority.visit()[1] for _ in range(20)]
    assert storage.add([(r, r.wire()) for r in before], received_at=time.time()) == 20
    during = [authority.visit()[1] for _ in range(20)]
    postgres.stop("immediate")  # every server process killed, as a crash
    try:
        with pytest.raises(StorageUnavailable, match="custodian database postgresql://postgres@127.0.0.1"):
            storage.add([(r, r.wire()) for r in during], received_at=time.time())
        with pytest.raises(StorageUnavailable):  # and again: each call tries to connect afresh
            storage.count()
    finally:
        postgres.start()
    assert storage.count() == 20  # what committed before the crash survived it
    assert storage.add([(r, r.wire()) for r in before + during], received_at=time.time()) == 20  # the retry
    assert {row.rid for row in storage.between("cafe-1", 0, 2**62)} == {r.rid for r in before + during}
    storage.close()


def test_postgres_url_is_never_shown_with_its_password(pg_url):
    from custodian.pgstore import describe

    assert describe("postgresql://ingest:s3cret@db.example:5433/visits") == "postgresql://ingest@db.example:5433/visits"
    with pytest.raises(QrgateError) as refused:
        PostgresStorage("postgresql://ingest:s3cret@127.0.0.1:1/visits", connect_timeout_s=2)
    assert "s3cret" not in str(refused.value) and "127.0.0.1:1" in str(refused.value)
