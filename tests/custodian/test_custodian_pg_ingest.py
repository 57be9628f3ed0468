"""The ingest on a real PostgreSQL and a real Mosquitto: what the PostgreSQL store must do under the ingest's
rules — a poison record refused by name and acknowledged, a server killed under load waited for,
unacknowledged, with nothing lost."""

from __future__ import annotations

import logging

import psycopg
from custodian_kit import assert_nothing_comes_back, connected_devices, new_authority, running_ingest
from pg_kit import pg_url, postgres  # noqa: F401  fixtures

from custodian.pgstore import PostgresStorage
from tests.conftest import wait_until


def test_on_postgres_each_visit_is_stored_once_and_a_poison_record_is_refused_by_name(tmp_path, broker, pg_url):
    authority = new_authority(tmp_path)
    storage = PostgresStorage(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the database refuses gym-2's records
        conn.execute("ALTER TABLE visits ADD CONSTRAINT refuse CHECK (venue <> 'gym-2')")
    records = [authority.visit()[1] for _ in range(5)]
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1"), ("gym-2", "door-1")) as (door, gym):
        gym.publish(authority.visit("gym-2")[1])
        for r in records + records[:2]:
            door.publish(r)
        wait_until(lambda: ingest.stored + ingest.duplicates + ingest.rejected == 8)
    assert (ingest.received, ingest.stored, ingest.duplicates) == (8, 5, 2)
    assert ingest.rejected_by_reason == {"unstorable": 1}
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}
    assert list(storage.between("gym-2", 0, 2**40)) == []
    # Refused and acknowledged, never retried: the same session, resumed, gets nothing again.
    assert_nothing_comes_back(broker.port, storage, authority)
    storage.close()


def test_postgres_killed_under_the_ingest_is_waited_for_unacknowledged_and_nothing_is_lost(
        tmp_path, broker, postgres, pg_url, caplog):
    caplog.set_level(logging.ERROR, logger="custodian")
    authority = new_authority(tmp_path)
    storage = PostgresStorage(pg_url)
    first, second = [authority.visit()[1] for _ in range(5)], [authority.visit()[1] for _ in range(5)]
    with running_ingest(broker.port, storage, client_id="ingest-a", retry_s=0.05) as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        for r in first:
            door.publish(r)
        wait_until(lambda: ingest.stored == 5)
        postgres.stop("immediate")  # the server crashes mid-run
        try:
            for r in second:
                door.publish(r)
            wait_until(lambda: ingest.received == 10 and "retrying, unacknowledged" in caplog.text)
            assert (ingest.stored, ingest.rejected) == (5, 0)  # a dead database is not the records' fault
        finally:
            postgres.start()
        wait_until(lambda: ingest.stored == 10)
    assert (ingest.duplicates, ingest.rejected) == (0, 0)
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in first + second}
    assert_nothing_comes_back(broker.port, storage, authority)  # all ten were acknowledged, once committed
    assert storage.count() == 11
    storage.close()
