"""A real PostgreSQL for the custodian's tests (lab.postgres.PgServer: Debian's server, in a temporary folder),
and `store`: one suite run against both stores.

A module, not a conftest.py (see custodian_kit). `postgres` is session-scoped: one
server on a free loopback port, stopped at the end. `pg_url` gives each test a
database of its own (CREATE DATABASE), so tests stay independent at a fraction of
a server's start-up.
"""

from __future__ import annotations

import os
import sqlite3

import psycopg
import pytest

from custodian.stores import open_storage
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


class Store:
    """One store under test, and how a test makes it refuse a venue or opens it again."""

    def __init__(self, kind: str, where):
        self.kind, self.where = kind, where

    def open(self, create: bool = True):
        return open_storage(self.where, create=create)

    def refuse_venue(self, storage, venue: str) -> type[Exception]:
        """From now on the database refuses records of `venue`; returns what it raises."""
        if self.kind == "sqlite":
            storage._db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON visits WHEN NEW.venue = '{venue}'"
                                " BEGIN SELECT RAISE(ABORT, 'refused'); END")
            return sqlite3.IntegrityError
        with psycopg.connect(self.where, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE visits ADD CONSTRAINT refuse CHECK (venue <> '{venue}')")
        return psycopg.errors.CheckViolation


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", tmp_path / "c.db")
    return Store("postgres", request.getfixturevalue("pg_url"))
