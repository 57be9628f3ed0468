"""Which store a `--db` names: a `postgresql://` URL is PostgreSQL, anything else a SQLite file.

A module of its own so that SQLite alone needs no psycopg (the `custodian` extra):
pgstore is imported only for a URL.
"""

from __future__ import annotations

from pathlib import Path

from custodian.storage import SqliteStorage, Storage

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(url_or_path: str | Path) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(URL_SCHEMES)


def open_storage(url_or_path: str | Path, create: bool = True) -> Storage:
    """The store `--db` names; `create=False` refuses one that was never made (purge, investigate)."""
    if is_url(url_or_path):
        from custodian.pgstore import PostgresStorage

        return PostgresStorage(str(url_or_path), create=create)
    return SqliteStorage(url_or_path, create=create)
