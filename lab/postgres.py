"""A throwaway PostgreSQL: Debian's `postgresql` server in a temporary folder, for the tests and the benchmarks.

initdb and pg_ctl, run as the `postgres` user when we are root (initdb refuses
root), on a free loopback port with its socket in its own folder; nothing of the
packaged cluster (/etc/postgresql, port 5432) is touched.

`durable=False` (the tests) turns fsync off: the tests' data outlives the server
process, not the machine, and an immediate stop still loses nothing committed
(the kernel holds it). The benchmarks keep the server's defaults (fsync and
synchronous_commit on): the ingest acknowledges a record once its commit
returns, so a commit must reach the disk, as SQLite's synchronous=FULL does.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from firmware.errors import QrgateError
from lab.broker import free_port


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise QrgateError("PostgreSQL's server is not installed (the Debian package `postgresql`; "
                          "./dev test installs it)")
    return Path(found[-1]).parent


class PgServer:
    """`settings`: extra `-c name=value` server settings (e.g. a benchmark's shared_buffers)."""

    def __init__(self, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self.bin = bin_dir()
        self.settings = ({} if durable else {"fsync": "off"}) | (settings or {})
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # Not under pytest's tmp_path: its parents are root's, mode 0700, closed to the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="qrgate-pg-"))
        self.data, self.sockets, self.log = self.folder / "data", self.folder / "sockets", self.folder / "server.log"
        self.sockets.mkdir()
        if self.as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (self.folder, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        run = subprocess.run([*self.as_postgres, str(self.bin / tool), *args], capture_output=True, text=True,
                             timeout=120)
        if run.returncode != 0:
            raise QrgateError(f"{tool}: {run.stdout}{run.stderr}")

    def start(self) -> "PgServer":
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1" + "".join(
            f" -c {name}={value}" for name, value in self.settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: every server process killed at once, as a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and its children (backends, writers, the WAL writer): where the server's CPU goes."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        return [postmaster, *(int(p) for p in children.read_text().split())] if children.exists() else [postmaster]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        return self.start()

    def close(self) -> None:
        """Stop the server, then remove its folder (whatever the stop did)."""
        try:
            self.stop()
        finally:
            self.remove()

    def __exit__(self, *exc: object) -> None:
        self.close()
