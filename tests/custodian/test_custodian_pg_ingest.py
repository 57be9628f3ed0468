"""The ingest on a real PostgreSQL and a real Mosquitto: a server killed under load is waited for,
unacknowledged, with nothing lost (the rest of the ingest's suite runs on both stores: test_custodian_ingest.py)."""

from __future__ import annotations

import logging

from custodian_kit import assert_nothing_comes_back, connected_devices, new_authority, running_ingest
from pg_kit import pg_url, postgres  # noqa: F401  fixtures

from custodian.pgstore import PostgresStorage
from tests.conftest import wait_until


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
