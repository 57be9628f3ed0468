"""A real PostgreSQL for the custodian's tests (lab.postgres.PgServer: Debian's server, in a temporary folder).

A module, not a conftest.py (see custodian_kit). `postgres` is session-scoped: one
server on a free loopback port, stopped at the end. `pg_url` gives each test a
database of its own (CREATE DATABASE), so tests stay independent at a fraction of
a server's start-up.
"""

from __future__ import annotations

import os

import pytest

from lab.postgres import PgServer


@pytest.fixture(scope="session")
def postgres():
    with PgServer() as server:
        yield server


_made = 0


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty database on the session's server."""
    global _made
    _made += 1
    return postgres.new_database(f"t{os.getpid()}_{_made}")
