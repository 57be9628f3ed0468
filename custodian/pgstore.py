"""PostgreSQL as the custodian's store, for a national custodian (SQLite stays the embedded default).

The same `Storage` rules as `SqliteStorage`, on a server several ingest
processes and machines can share:

- `visits` is partitioned by the day the custodian RECEIVED a record
  (`PARTITION BY RANGE (received_at)`, Unix seconds, one partition per UTC day,
  made as the first batch of a day needs it, and the next day's ahead of it).
  Retention DROPs whole partitions: no row-by-row deletes of visits, no bloat.
  A partition goes when everything in it is past the retention, so a record is
  kept 28 to 29 days after it arrived (SQLite: exactly 28).
- Dedupe by rid needs a unique key, and PostgreSQL has no unique index across
  partitions: a key on visits must include `received_at`, and (rid, day) would
  store a record twice when its copy comes on another day — and it does: a
  device that lost a PUBACK resends when it next connects, maybe days later.
  So the key is a small separate table, `rids` (rid PRIMARY KEY, received_at),
  and a batch is `INSERT INTO rids … ON CONFLICT DO NOTHING RETURNING rid`,
  then a COPY of the new ones into `visits`, in one transaction: two ingests
  racing on one rid store it once (the second waits on the first's key). Purge
  deletes the rids of the partitions it dropped (16 bytes and an index entry
  per visit, a fraction of the visits; autovacuum reuses the space).
- A database that fails (unreachable, restarting, killed, full, a deadlock)
  raises `StorageUnavailable`: the ingest retries unacknowledged, and the next
  call connects again. A value the database refuses (out of range, a
  constraint) is raised as the psycopg error it is: the ingest then stores the
  batch record by record and rejects that one as `unstorable`.
- Commits are durable before they return (synchronous_commit on, the server's
  default and what the ingest's acknowledgement relies on).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from custodian.storage import DAY_S, RETENTION_DAYS, StorageUnavailable, StoredRow
from firmware.errors import QrgateError
from firmware.store.records import SealedRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rids(
    rid bytea PRIMARY KEY,
    received_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS rids_received_at ON rids(received_at);
CREATE TABLE IF NOT EXISTS visits(
    rid bytea NOT NULL,
    venue text NOT NULL,
    device text NOT NULL,
    ts bigint NOT NULL,
    wire bytea NOT NULL,
    received_at double precision NOT NULL
) PARTITION BY RANGE (received_at);
CREATE INDEX IF NOT EXISTS visits_venue_ts ON visits(venue, ts);
"""

# Every process making partitions (or the schema) takes this transaction lock first: two ingests
# starting a new day at once would otherwise race on the catalogue.
_DDL_LOCK = 0x71726761  # "qrga"

# What the database raises when it refuses a VALUE (class 22 data exception, class 23 integrity
# constraint): the records' fault. Any other psycopg error is the database's: StorageUnavailable.
_REFUSED_VALUES = (psycopg.DataError, psycopg.IntegrityError)


def _day(received_at: float) -> int:
    return int(received_at // DAY_S)


def _partition(day: int) -> str:
    """visits_YYYYMMDD (UTC); days before 1970 have negative numbers, named as such."""
    if day < 0:
        return f"visits_m{-day}"
    return "visits_" + datetime.fromtimestamp(day * DAY_S, timezone.utc).strftime("%Y%m%d")


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an unreadable URL)"
    return f"postgresql://{params.get('user', '')}@{params.get('host', '')}:{params.get('port', '')}/" \
           f"{params.get('dbname', '')}"


class PostgresStorage:
    """A `Storage` on PostgreSQL; `create=False` refuses a database without the custodian's tables."""

    def __init__(self, url: str, create: bool = True, connect_timeout_s: int = 5):
        self.url, self.name, self._timeout = url, describe(url), connect_timeout_s
        self._lock = threading.Lock()  # one connection, several threads (an ingest's writer, a caller's count)
        self._conn: psycopg.Connection | None = None
        self._days: set[int] = set()  # partitions known to exist
        self._closed = False
        try:
            with self._lock, self._transaction() as conn:
                if not create and conn.execute("SELECT to_regclass('visits')").fetchone()[0] is None:
                    raise QrgateError(f"no custodian tables in {self.name}")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                conn.execute(_SCHEMA)
        except StorageUnavailable as exc:
            raise QrgateError(f"cannot open the custodian database: {exc}") from None

    def _connection(self) -> psycopg.Connection:
        if self._closed:
            raise StorageUnavailable(f"the custodian database {self.name}: closed")
        if self._conn is None or self._conn.broken or self._conn.closed:
            if self._conn is not None:
                self._conn.close()
                self._conn, self._days = None, set()
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
            except psycopg.Error as exc:
                raise StorageUnavailable(f"the custodian database {self.name}: {_first_line(exc)}") from None
        return self._conn

    def _transaction(self):
        """A transaction on a live connection; the database's own failures become StorageUnavailable."""
        storage = self

        class _Tx:
            def __enter__(self) -> psycopg.Connection:
                conn = storage._connection()
                self._tx = conn.transaction()
                try:
                    self._tx.__enter__()
                except psycopg.Error as exc:
                    raise StorageUnavailable(f"the custodian database {storage.name}: {_first_line(exc)}") from None
                return conn

            def __exit__(self, kind, exc, tb) -> bool:
                try:
                    self._tx.__exit__(kind, exc, tb)
                except _REFUSED_VALUES:
                    raise
                except psycopg.Error as failed:  # the COMMIT or ROLLBACK itself: the connection's fault
                    raise StorageUnavailable(f"the custodian database {storage.name}: {_first_line(failed)}") \
                        from None
                if isinstance(exc, _REFUSED_VALUES):
                    return False
                if isinstance(exc, psycopg.Error):
                    raise StorageUnavailable(f"the custodian database {storage.name}: {_first_line(exc)}") from None
                return False

        return _Tx()

    def _ensure_partitions(self, days: set[int]) -> None:
        """Each day's partition, and the next day's ahead of it (so midnight finds it made)."""
        wanted = {d for day in days for d in (day, day + 1)} - self._days
        if not wanted:
            return
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for day in sorted(wanted):
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF visits FOR VALUES FROM ({}) TO ({})")
                             .format(sql.Identifier(_partition(day)), sql.Literal(float(day * DAY_S)),
                                     sql.Literal(float((day + 1) * DAY_S))))
        self._days |= wanted

    def add(self, records: list[tuple[SealedRecord, bytes]], received_at: float) -> int:
        first: dict[bytes, tuple] = {}
        for r, wire in records:  # a rid twice in one batch: the first copy, as SQLite's INSERT OR IGNORE
            first.setdefault(r.rid, (r.rid, r.venue, r.device, r.ts, wire, received_at))
        if not first:
            return 0
        with self._lock:
            self._ensure_partitions({_day(received_at)})
            with self._transaction() as conn:
                # Sorted: two ingests taking overlapping rids take their keys in one order, no deadlock.
                new = {row[0] for row in conn.execute(
                    "INSERT INTO rids(rid, received_at) SELECT r, %s FROM unnest(%s::bytea[]) AS r"
                    " ON CONFLICT DO NOTHING RETURNING rid", (received_at, sorted(first))).fetchall()}
                if new:
                    with conn.cursor().copy("COPY visits(rid, venue, device, ts, wire, received_at) FROM STDIN") \
                            as copy:
                        for rid in sorted(new):
                            copy.write_row(first[rid])
                return len(new)

    def count(self) -> int:
        with self._lock, self._transaction() as conn:
            return conn.execute("SELECT count(*) FROM visits").fetchone()[0]

    def purge(self, now: float, days: int = RETENTION_DAYS) -> int:
        """DROP the partitions whose whole day is past the retention; returns how many records they held."""
        cutoff = now - days * DAY_S
        with self._lock, self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            partitions = conn.execute(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'visits'::regclass").fetchall()
            purged, upto = 0, None
            for name, bound in partitions:
                upper = float(bound.rsplit("TO ('", 1)[1].split("'")[0])
                if upper <= cutoff:
                    purged += conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    upto = upper if upto is None else max(upto, upper)
            if upto is not None:  # what is left of the dropped partitions' rids
                conn.execute("DELETE FROM rids WHERE received_at < %s", (upto,))
        self._days = {d for d in self._days if (d + 1) * DAY_S > cutoff}
        return purged

    def between(self, venue: str, start_ts: int, end_ts: int) -> Iterator[StoredRow]:
        with self._lock, self._transaction() as conn:
            rows = conn.execute(
                "SELECT rid, venue, device, ts, wire, received_at FROM visits"
                " WHERE venue = %s AND ts BETWEEN %s AND %s ORDER BY ts, rid", (venue, start_ts, end_ts)).fetchall()
        return (StoredRow(*row) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
