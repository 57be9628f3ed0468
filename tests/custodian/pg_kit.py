"""A real PostgreSQL for the custodian's tests: Debian's `postgresql` server, in a temporary folder.

A module, not a conftest.py (see custodian_kit). `postgres` is session-scoped: one
server (initdb and pg_ctl, as the `postgres` user when the tests run as root, since
initdb refuses root), on a free loopback port, its socket in its own folder, stopped
at the end. `pg_url` gives each test a database of its own (CREATE DATABASE), so
tests stay independent at a fraction of a server's start-up.
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
import pytest

from lab.broker import free_port


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    assert found, "PostgreSQL's server is not installed (the Debian package `postgresql`; ./dev test installs it)"
    return Path(found[-1]).parent


class PgServer:
    def __init__(self) -> None:
        self.bin = bin_dir()
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
        assert run.returncode == 0, f"{tool}: {run.stdout}{run.stderr}"

    def start(self) -> None:
        # fsync off: the tests' data outlives the server process, not the machine; immediate stops still lose
        # nothing committed (the kernel holds it).
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: every server process killed at once, as a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.remove()


_made = 0


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty database on the session's server."""
    global _made
    _made += 1
    return postgres.new_database(f"t{os.getpid()}_{_made}")
