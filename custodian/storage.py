"""Where the custodian keeps sealed visit records: the sealed bytes and their clear envelope, nothing else.

The custodian holds no key that opens a record; it stores what the wire carries
(`[1, rid, venue, device, ts, enc_and_ct]`) and indexes the clear envelope so
an investigation can pick one venue and window, and retention can drop what
arrived more than 28 days ago.

Retention runs on `received_at`, the custodian's own clock at the commit, not
on the device's `ts`: a device's word about time must not decide when its
record goes (a far-future ts would never be purged, an old one at once).

`SqliteStorage` is meant to be shared by several ingest PROCESSES on one file:
WAL lets readers (an investigation, a count) run beside a writer, a busy
timeout makes writers queue for the one write lock instead of failing, and
every write takes that lock up front (BEGIN IMMEDIATE), because a deferred
transaction that upgrades from read to write can fail with SQLITE_BUSY at once,
whatever the timeout.

synchronous=FULL: the ingest acknowledges a message to the broker only after
its batch is committed, and the broker then forgets it. With NORMAL, a WAL
commit is not fsynced, so a power cut could undo a batch the broker has
already let go: a lost visit. FULL fsyncs each commit; batching spreads that
cost over many records.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from firmware.errors import QrgateError
from firmware.store.records import SealedRecord

DAY_S = 86400
RETENTION_DAYS = 28

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visits(
    rid BLOB PRIMARY KEY,
    venue TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    wire BLOB NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_venue_ts ON visits(venue, ts);
CREATE INDEX IF NOT EXISTS visits_received_at ON visits(received_at);
"""

# What SQLite raises when it refuses a value (a constraint or trigger, a size, a type it cannot bind),
# as against the database itself failing. OverflowError, ValueError and TypeError come from the binding
# and are not sqlite3.Error at all.
_REFUSED_VALUES = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)


class StorageUnavailable(QrgateError):
    """The database cannot take or give records now (locked, full, failing, closed): nothing was written.

    Transient by nature: the caller retries and acknowledges nothing meanwhile. Anything
    else a Storage raises from `add` is the fault of the records it was given.
    """


class StoredRow(NamedTuple):
    rid: bytes
    venue: str
    device: str
    ts: int
    wire: bytes
    received_at: float  # Unix time of the commit that stored it


class Storage(Protocol):
    def add(self, records: list[tuple[SealedRecord, bytes]], received_at: float) -> int:
        """Store (record, its wire bytes) pairs in one transaction; returns how many rids were new.

        Raises StorageUnavailable when the database fails; any other exception means it
        refused one of these records (all or nothing: none of them was stored).
        """

    def count(self) -> int: ...

    def purge(self, now: float, days: int = RETENTION_DAYS) -> int:
        """Delete records received more than `days` before `now`; returns how many."""

    def between(self, venue: str, start_ts: int, end_ts: int) -> Iterator[StoredRow]:
        """The records of `venue` with start_ts <= ts <= end_ts, oldest first."""

    def close(self) -> None: ...


class SqliteStorage:
    """`create=False` refuses a missing file (purge and investigate must not invent an empty store)."""

    def __init__(self, path: Path | str, create: bool = True, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise QrgateError(f"no custodian database at {self.path}")
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._db = self._open(busy_timeout_s)
                break
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL takes an exclusive lock that SQLite's busy handler
                # does not wait for: two processes starting on one new file retry here instead.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise QrgateError(f"cannot open the custodian database {self.path}: {exc}") from None
                time.sleep(0.05)  # another process holds the lock for a moment: bounded by the deadline
            except sqlite3.DatabaseError as exc:
                raise QrgateError(f"cannot open the custodian database {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        # Autocommit mode: the transactions below are explicit. One connection may be
        # used from several threads (an ingest's writer, a caller's count()); the lock
        # keeps them from interleaving.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE … COMMIT under the lock; the database's own failures become StorageUnavailable."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            except _REFUSED_VALUES:
                raise
            except sqlite3.Error as exc:  # locked, busy, full, I/O, corrupt, closed: not the records' doing
                raise StorageUnavailable(f"the custodian database {self.path}: {exc}") from exc

    def add(self, records: list[tuple[SealedRecord, bytes]], received_at: float) -> int:
        rows = [(r.rid, r.venue, r.device, r.ts, wire, received_at) for r, wire in records]
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO visits VALUES (?, ?, ?, ?, ?, ?)", rows)
            return self._db.total_changes - before

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM visits").fetchone()[0]

    def purge(self, now: float, days: int = RETENTION_DAYS) -> int:
        with self._transaction():
            return self._db.execute("DELETE FROM visits WHERE received_at < ?", (now - days * DAY_S,)).rowcount

    def between(self, venue: str, start_ts: int, end_ts: int) -> Iterator[StoredRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rid, venue, device, ts, wire, received_at FROM visits"
                " WHERE venue = ? AND ts BETWEEN ? AND ? ORDER BY ts, rid",
                (venue, start_ts, end_ts),
            ).fetchall()
        return (StoredRow(*row) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
