"""Ingest on a real Mosquitto: dedupe, rejection by reason, acknowledgement only after commit, purging."""

from __future__ import annotations

import logging
import sqlite3
import time

import cbor2
import pytest
from custodian_kit import connected_devices, new_authority, running_ingest

from custodian.ingest import Ingest, check
from custodian.storage import DAY_S, SqliteStorage
from firmware.broker import Mosquitto
from tests.conftest import wait_until


def test_stores_each_visit_once_however_often_it_comes(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        records = [authority.visit()[1] for _ in range(5)]
        for r in records + records[:2]:
            door.publish(r)
        wait_until(lambda: ingest.stored + ingest.duplicates == 7)
    assert (ingest.received, ingest.stored, ingest.duplicates, ingest.rejected) == (7, 5, 2, 0)
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}


def test_check_names_what_is_wrong(tmp_path):
    authority = new_authority(tmp_path)
    record = authority.visit("cafe-1", "door-1")[1]
    assert check("qrgate/v1/cafe-1/door-1/visits", record.wire()) == record
    assert check("qrgate/v1/cafe-1/door-2/visits", record.wire()) == "topic_mismatch"
    assert check("qrgate/v1/gym-2/door-1/visits", record.wire()) == "topic_mismatch"
    assert check("qrgate/v1/cafe-1/door-1/visits", b"\xff\x00garbage") == "malformed"
    assert check("qrgate/v1/cafe-1/door-1/visits", cbor2.dumps([1, b"short", "cafe-1", "door-1", 1, b""])) \
        == "malformed"
    assert check("qrgate/v1/cafe-1/door-1/visits", cbor2.dumps([2, b"x" * 16, "cafe-1", "door-1", 1, b""])) \
        == "malformed"


def test_bad_payloads_are_rejected_counted_acked_and_never_logged(tmp_path, broker, caplog):
    authority = new_authority(tmp_path)
    caplog.set_level(logging.DEBUG, logger="custodian")
    storage = SqliteStorage(tmp_path / "c.db")
    elsewhere = authority.visit("gym-2", "door-9")[1]  # a valid record, on another device's topic
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        door.publish(b"SECRET-MARKER not a record")
        door.publish(cbor2.dumps({"SECRET-MARKER": 1}))
        door.publish(elsewhere)
        good = authority.visit()[1]
        door.publish(good)
        wait_until(lambda: ingest.received == 4 and ingest.stored + ingest.rejected == 4)
    assert ingest.rejected_by_reason == {"malformed": 2, "topic_mismatch": 1}
    assert [row.rid for row in storage.between("cafe-1", 0, 2**40)] == [good.rid]
    assert list(storage.between("gym-2", 0, 2**40)) == []
    assert "SECRET-MARKER" not in caplog.text and elsewhere.rid.hex() not in caplog.text
    assert "malformed" in caplog.text and "topic_mismatch" in caplog.text
    # They were acknowledged: the same session, resumed, gets nothing again.
    with running_ingest(broker.port, storage, client_id="ingest-a") as again, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        door.publish(authority.visit()[1])
        wait_until(lambda: again.stored == 1)
    assert (again.received, again.rejected) == (1, 0)


def test_acks_only_after_commit_so_an_ingest_stopped_before_commit_loses_nothing(tmp_path, broker):
    authority = new_authority(tmp_path)
    db = tmp_path / "c.db"
    SqliteStorage(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: every commit fails
    locked = SqliteStorage(db, busy_timeout_s=0.05)
    records = [authority.visit()[1] for _ in range(5)]
    with running_ingest(broker.port, locked, client_id="ingest-a", retry_s=0.05) as first, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        for r in records:
            door.publish(r)
        wait_until(lambda: first.received == 5 and door.all_acked())
    assert (first.stored, first.duplicates) == (0, 0)  # stopped with its batch uncommitted
    blocker.execute("ROLLBACK")
    assert locked.count() == 0
    # The broker kept them unacknowledged in the session: the next process with that id gets them.
    storage = SqliteStorage(db)
    with running_ingest(broker.port, storage, client_id="ingest-a") as second:
        wait_until(lambda: second.stored == 5)
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}


def test_a_failed_commit_is_retried_until_it_succeeds(tmp_path, broker):
    authority = new_authority(tmp_path)
    db = tmp_path / "c.db"
    SqliteStorage(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    storage = SqliteStorage(db, busy_timeout_s=0.05)
    with running_ingest(broker.port, storage, client_id="ingest-a", retry_s=0.05) as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        for _ in range(3):
            door.publish(authority.visit()[1])
        wait_until(lambda: ingest.received == 3)
        assert ingest.stored == 0
        blocker.execute("ROLLBACK")
        wait_until(lambda: ingest.stored == 3)
    assert storage.count() == 3


def test_purges_records_past_28_days_when_it_starts(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    now = int(time.time())
    old, recent = authority.visit(ts=now - 29 * DAY_S)[1], authority.visit(ts=now - 27 * DAY_S)[1]
    storage.add([(old, old.wire()), (recent, recent.wire())], received_at=now)
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest:
        wait_until(lambda: ingest.purged == 1)
    assert [row.rid for row in storage.between("cafe-1", 0, now)] == [recent.rid]


def test_purges_again_every_period(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a", purge_every_s=0.1) as ingest:
        old = authority.visit(ts=int(time.time()) - 29 * DAY_S)[1]
        storage.add([(old, old.wire())], received_at=time.time())
        wait_until(lambda: ingest.purged == 1)
    assert storage.count() == 0


def test_reconnects_and_subscribes_again_after_the_broker_restarts(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest:
        broker.stop()
        wait_until(lambda: not ingest.connected.is_set())
        with Mosquitto(tmp_path / "mosquitto-again", port=broker.port), \
                connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
            wait_until(lambda: ingest.reconnects == 1 and ingest.subscribed.is_set())
            door.publish(authority.visit()[1])
            wait_until(lambda: ingest.stored == 1)


def test_an_ingest_needs_a_storage():
    with pytest.raises(ValueError, match="storage"):
        Ingest("127.0.0.1", 1883)
