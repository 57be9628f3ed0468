"""The store a custodian benchmark (scale, backlog) fills: made fresh for one run, read back, and dropped.

What a benchmark names with `--db`:
- `sqlite`: a new SQLite file in the run's temporary folder;
- `postgresql`: a throwaway PostgreSQL server started for the run (lab.postgres, the
  Debian package's server, fsync on) with the settings below, stopped at the end;
- a `postgresql://…` URL: a new database on that server (its user must be allowed
  CREATE DATABASE), dropped at the end. Nothing already there is touched.

Reading back is the benchmark's own business, not the Storage's: every stored rid
with its commit time, and the rows against the distinct rids (duplicates).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from custodian.storage import SqliteStorage
from custodian.stores import is_url
from firmware.errors import QrgateError

# A custodian's server is tuned for its load; these are the two settings a bulk writer needs first:
# cache for the rid index as it grows, and WAL room so that checkpoints do not run every few seconds.
# Everything else (fsync, synchronous_commit, full_page_writes) is the server's durable default.
PG_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "4GB"}


def parse(spec: str) -> str:
    """`sqlite`, `postgresql` or a postgresql:// URL; anything else is refused (argparse's type)."""
    if spec in ("sqlite", "postgresql") or is_url(spec):
        return spec
    raise ValueError("a store is `sqlite`, `postgresql` (a throwaway local server) or a postgresql:// URL")


class FreshStore:
    """One run's store; `db` is what the ingest's --db is given."""

    def __init__(self, spec: str, folder: Path, name: str):
        self.kind = "sqlite" if parse(spec) == "sqlite" else "postgresql"
        self._server = None
        self._admin_url: str | None = None
        self._dbname = f"qrgate_{name}_{os.getpid()}".replace("-", "_")
        if self.kind == "sqlite":
            self.db: str | Path = folder / f"{name}.db"
            SqliteStorage(self.db).close()  # the schema made once, before several processes open the file
            return
        if spec == "postgresql":
            from lab.postgres import PgServer

            self._server = PgServer(durable=True, settings=PG_SETTINGS).start()
            self._admin_url = self._server.url()
        else:
            self._admin_url = spec
        import psycopg

        try:
            with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self._dbname}"')
        except psycopg.Error as exc:
            self.close()
            raise QrgateError(f"cannot make a database for the benchmark: {exc}") from None
        params = psycopg.conninfo.conninfo_to_dict(self._admin_url)
        self.db = _url(params | {"dbname": self._dbname})
        from custodian.pgstore import PostgresStorage

        PostgresStorage(self.db).close()

    def server_pids(self) -> list[int]:
        """The local server's processes, when this run started it: its CPU is part of the store's cost."""
        return self._server.pids() if self._server is not None else []

    def _query(self, sql: str) -> list[tuple]:
        if self.kind == "sqlite":
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        import psycopg

        with psycopg.connect(str(self.db), autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def count(self) -> int:
        return self._query("SELECT count(*) FROM visits")[0][0]

    def stored(self) -> dict[bytes, float]:
        """rid → received_at (the commit's time) of every stored visit."""
        return {bytes(rid): at for rid, at in self._query("SELECT rid, received_at FROM visits")}

    def totals(self) -> tuple[int, int, float]:
        """Rows, distinct rids, mean wire bytes."""
        rows, distinct, wire = self._query(
            "SELECT count(*), count(DISTINCT rid), avg(length(wire)) FROM visits")[0]
        return rows, distinct, float(wire or 0)

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return "PostgreSQL " + self._query("SHOW server_version")[0][0].split()[0]

    def settings(self) -> dict[str, str]:
        if self.kind == "sqlite":
            return {"journal_mode": "wal", "synchronous": "full"}
        names = ("shared_buffers", "max_wal_size", "fsync", "synchronous_commit")
        return {name: self._query(f"SHOW {name}")[0][0] for name in names}

    def close(self) -> None:
        """Drop the run's database, stop the run's server."""
        try:
            if self._admin_url is not None and self._server is None:
                import psycopg

                with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self._dbname}" WITH (FORCE)')
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    def __enter__(self) -> "FreshStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _url(params: dict) -> str:
    """A postgresql:// URL of conninfo parameters (host, port, user, password, dbname, the rest as a query)."""
    from urllib.parse import quote, urlencode

    p = dict(params)
    user = quote(p.pop("user", ""), safe="")
    password = p.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host, port, dbname = quote(p.pop("host", ""), safe=""), p.pop("port", ""), p.pop("dbname", "")
    query = f"?{urlencode(p)}" if p else ""
    return f"postgresql://{auth}{host}{':' + port if port else ''}/{quote(dbname, safe='')}{query}"
