"""The sealed store on the SD card: the only outbox, and the one-time-use memory.

SQLite in WAL mode with synchronous=FULL, so a commit that returns is on the
card; `admit` returns only then, which is what lets the loop light green
(DESIGN promise 1). The record and the keyed hash of its token id are written in
one transaction: a visit is never recorded without its token being marked seen,
nor the other way round. One connection, serialised by a lock, is shared by the
scan loop and the uplink.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from firmware.errors import StorageError
from firmware.store.records import SealedRecord

logger = logging.getLogger(__name__)

RETENTION_S = 28 * 86400
ASIDE = ".corrupt-"  # visits.db.corrupt-20261202T051500Z: a store found corrupt, kept for a technician


class CorruptStore(StorageError):
    """The store's file is not a sound SQLite database (SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (rid BLOB PRIMARY KEY, ts INTEGER NOT NULL, wire BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE TABLE IF NOT EXISTS seen (h BLOB PRIMARY KEY, expires INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS card_visits (h BLOB NOT NULL, day INTEGER NOT NULL, visits INTEGER NOT NULL,
                                        PRIMARY KEY (h, day)) WITHOUT ROWID;
"""


def local_day(t: float) -> int:
    """The device's local date as a day number: the day a card's visits are counted under (its time zone is the
    one a technician set, UTC on a fresh image)."""
    return int((t + time.localtime(t).tm_gmtoff) // 86400)


class SqliteRecordStore:
    def __init__(self, path: Path, busy_timeout_s: float = 10.0):
        """`busy_timeout_s`: how long a write or a checkpoint waits for another connection (a technician's
        read-only look) before it gives up."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._deleted = 0  # records deleted since the last scrub
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Deleted records are overwritten with zeros, not left readable in free pages.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CorruptStore(f"the store {self.path} fails its integrity check: {check}")
            self._seen_key = self._device_secret()
        except sqlite3.Error as exc:
            self._close_quietly()
            kind = CorruptStore if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB") \
                else StorageError
            raise kind(f"cannot open the store {self.path}: {exc}") from None
        except CorruptStore:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _device_secret(self) -> bytes:
        """A device-local key for hashing token ids: the card keeps no token id in clear."""
        row = self._db.execute("SELECT v FROM meta WHERE k = 'seen_key'").fetchone()
        if row:
            kept: bytes = row[0]
            return kept
        key = os.urandom(32)
        self._db.execute("INSERT INTO meta (k, v) VALUES ('seen_key', ?)", (key,))
        return key

    def seen_hash(self, cti: bytes) -> bytes:
        return hmac.new(self._seen_key, cti, hashlib.sha256).digest()[:16]

    def admit(self, cti: bytes, seen_until: int, now: int, make_record: Callable[[], SealedRecord],
              day: int | None = None) -> bool:
        """Record a visit unless its token was already seen and still in its window.

        Returns True for a new visit, False for "already checked in"; either way
        only once what it answers is durable. Raises StorageError if it cannot be.
        `day`: a printed card's new visit is also counted under this local day, by the token's keyed hash
        (`card_visits`), so that status can tell how often one card came today (a copied card shows so).
        """
        h = self.seen_hash(cti)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT expires FROM seen WHERE h = ?", (h,)).fetchone()
                if row and row[0] >= now:
                    self._db.execute("COMMIT")
                    return False
                record = make_record()
                # Hashes are kept only for their token's window (exp + skew), not until the next purge.
                self._db.execute("DELETE FROM seen WHERE expires < ?", (now,))
                self._db.execute("INSERT OR REPLACE INTO seen (h, expires) VALUES (?, ?)", (h, seen_until))
                self._db.execute(
                    "INSERT INTO records (rid, ts, wire) VALUES (?, ?, ?)", (record.rid, record.ts, record.wire())
                )
                if day is not None:
                    self._db.execute("INSERT INTO card_visits (h, day, visits) VALUES (?, ?, 1) "
                                     "ON CONFLICT (h, day) DO UPDATE SET visits = visits + 1", (h, day))
                self._db.execute("COMMIT")
                return True
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"cannot store the visit: {exc}") from None
            except BaseException:  # sealing failed: never leave the write transaction open
                self._rollback()
                raise

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rollback failed")

    def card_visits(self, day: int) -> list[int]:
        """Each card's count of visits on `day`, most first: counts only, never which card."""
        with self._lock:
            rows = self._db.execute("SELECT visits FROM card_visits WHERE day = ? ORDER BY visits DESC",
                                    (day,)).fetchall()
        return [n for (n,) in rows]

    def after(self, position: int | None, limit: int) -> list[tuple[int, bytes, bytes]]:
        """Up to `limit` records after `position`, oldest first, as (position, rid, wire).

        Oldest means first stored: the order of arrival (rowid), which a clock
        stepped back cannot shuffle, read as a plain range of the table's own
        b-tree. A position is a rowid: the uplink reads ahead with it instead of
        re-reading the head of the queue on every acknowledgement.
        """
        with self._lock:
            return self._db.execute(
                "SELECT rowid, rid, wire FROM records WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (-1 if position is None else position, limit),
            ).fetchall()

    def delete(self, rids: Iterable[bytes]) -> None:
        """Delivered records leave the card, in one transaction (their bytes at the next `scrub`)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._deleted += self._db.executemany("DELETE FROM records WHERE rid = ?", ((r,) for r in rids)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"cannot update the store: {exc}") from None

    def purge(self, now: int) -> int:
        """Drop records older than 28 days (delivered or not), seen hashes past their window, and cards' counts of
        days before today."""
        with self._lock:
            n = self._write("DELETE FROM records WHERE ts < ?", (now - RETENTION_S,))
            self._write("DELETE FROM seen WHERE expires < ?", (now,))
            self._write("DELETE FROM card_visits WHERE day < ?", (local_day(now),))
            self._deleted += n
        self.scrub()
        return n

    def scrub(self) -> None:
        """Leave no deleted record readable on the card.

        secure_delete zeroes freed pages in the database file, but WAL mode keeps
        the old page images in the -wal file until it is checkpointed and reset:
        a TRUNCATE checkpoint moves every page home and empties the WAL. Called
        after a purge and by the daemon's periodic check (every few seconds),
        not per delivery: it costs a few fsyncs.
        """
        with self._lock:
            if not self._deleted:
                return
            try:
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot checkpoint the store: {exc}") from None
            if not busy:  # a reader held it back: try again next time
                self._deleted = 0

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        try:
            return self._db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StorageError(f"cannot update the store: {exc}") from None

    def depth(self) -> tuple[int, int | None]:
        """How many records wait, and the timestamp of the oldest."""
        with self._lock:
            count, oldest = self._db.execute("SELECT count(*), min(ts) FROM records").fetchone()
        return count, oldest

    def close(self) -> None:
        with self._lock:
            self._db.close()


def set_aside(path: Path, now: float | None = None) -> Path:
    """Move a corrupt store (and its -wal and -shm) out of the way, under a name that says when; returns it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    aside = path.with_name(f"{path.name}{ASIDE}{stamp}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash midway leaves it where it was
        try:
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        except FileNotFoundError:
            pass
    return aside


def kept_aside(path: Path) -> list[Path]:
    """Stores set aside beside `path` that a technician has not dealt with yet."""
    path = Path(path)
    return sorted(p for p in path.parent.glob(f"{path.name}{ASIDE}*") if not p.name.endswith(("-wal", "-shm")))


def inspect(path: Path) -> dict[str, Any]:
    """What a technician may know of a store without changing it: depth, oldest record, integrity.

    Opened read-only beside the running daemon (WAL lets a reader in while it
    writes); a StorageError says why it could not be read (no store yet, or a
    user without the rights: the state folder is the daemon's, 0700).
    """
    path = Path(path)
    if not path.exists():
        raise StorageError(f"no store at {path} yet")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            count, oldest = db.execute("SELECT count(*), min(ts) FROM records").fetchone()
            check = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the store {path}: {exc}") from None
    return {"queue_depth": count, "oldest_ts": oldest, "integrity": check}
