"""Ingest on a real Mosquitto: dedupe, rejection by reason, acknowledgement only after commit, purging, a
backlog; on both stores (`store`: SQLite, PostgreSQL) but where a test holds SQLite's own write lock (PostgreSQL's
own failure, a server killed under the ingest, is in test_custodian_pg_ingest.py)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import cbor2
import pytest
from custodian_kit import assert_nothing_comes_back, connected_devices, new_authority, running_ingest
from pg_kit import pg_url, postgres, store  # noqa: F401  fixtures

from custodian.ingest import Ingest
from custodian.storage import DAY_S, SqliteStorage
from lab.broker import Mosquitto
from tests.conftest import wait_until


def test_stores_each_visit_once_however_often_it_comes(tmp_path, broker, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        records = [authority.visit()[1] for _ in range(5)]
        for r in records + records[:2]:
            door.publish(r)
        wait_until(lambda: ingest.stored + ingest.duplicates == 7)
    assert (ingest.received, ingest.stored, ingest.duplicates, ingest.rejected) == (7, 5, 2, 0)
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}


def test_bad_payloads_are_rejected_counted_acked_and_never_logged(tmp_path, broker, store, caplog):
    authority = new_authority(tmp_path)
    caplog.set_level(logging.DEBUG, logger="custodian")
    storage = store.open()
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
    assert_nothing_comes_back(broker.port, storage, authority)


def test_a_poison_record_is_refused_by_name_acknowledged_and_never_retried(tmp_path, broker, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    store.refuse_venue(storage, "gym-2")  # the database refuses gym-2's records, as a constraint would
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


def test_a_failed_commit_is_retried_until_it_succeeds(tmp_path, broker, caplog):
    caplog.set_level(logging.ERROR, logger="custodian")
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
        wait_until(lambda: ingest.received == 3 and "retrying, unacknowledged" in caplog.text)
        assert ingest.stored == 0 and ingest.rejected == 0  # a locked database is not the records' fault
        blocker.execute("ROLLBACK")
        wait_until(lambda: ingest.stored == 3)
    assert storage.count() == 3


def test_purges_records_received_over_28_days_ago_when_it_starts(tmp_path, broker, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    now = time.time()
    old, recent = authority.visit(ts=2**40)[1], authority.visit(ts=0)[1]  # their ts has no say
    storage.add([(old, old.wire())], received_at=now - 29 * DAY_S)
    storage.add([(recent, recent.wire())], received_at=now - 27 * DAY_S)
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest:
        wait_until(lambda: ingest.purged == 1)
    assert [row.rid for row in storage.between("cafe-1", 0, 2**41)] == [recent.rid]


def test_purges_again_every_period(tmp_path, broker, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    with running_ingest(broker.port, storage, client_id="ingest-a", purge_every_s=0.1) as ingest:
        old = authority.visit()[1]
        storage.add([(old, old.wire())], received_at=time.time() - 29 * DAY_S)
        wait_until(lambda: ingest.purged == 1)
    assert storage.count() == 0


def test_reconnects_and_subscribes_again_after_the_broker_restarts(tmp_path, broker, store):
    authority = new_authority(tmp_path)
    storage = store.open()
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest:
        broker.stop()
        wait_until(lambda: not ingest.connected.is_set())
        with Mosquitto(tmp_path / "mosquitto-again", port=broker.port), \
                connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
            wait_until(lambda: ingest.reconnects == 1 and ingest.subscribed.is_set())
            door.publish(authority.visit()[1])
            wait_until(lambda: ingest.stored == 1)


def test_the_ingest_command_takes_the_device_limits_and_names_itself_by_its_certificate(tmp_path, capsys):
    from custodian.cli import certificate_cn
    from custodian.ingest import DEVICE_BURST, DEVICE_RATE_PER_S
    from firmware.cli import build_parser
    from tests.pki import Pki

    base = ["custodian", "ingest", "--host", "h", "--port", "1", "--db", "d"]
    args = build_parser().parse_args(base)
    assert (args.device_rate, args.device_burst) == (DEVICE_RATE_PER_S, DEVICE_BURST) == (1.0, 1_000_000)
    args = build_parser().parse_args([*base, "--device-rate", "0.5", "--device-burst", "20"])
    assert (args.device_rate, args.device_burst) == (0.5, 20)
    for bad, why in ((["--device-rate", "0"], "argument --device-rate: must be over 0"),
                     (["--device-burst", "0"], "argument --device-burst: must be at least 1")):
        with pytest.raises(SystemExit) as refused:
            build_parser().parse_args([*base, *bad])
        assert refused.value.code == 2 and why in capsys.readouterr().err
    cert, _ = Pki(tmp_path / "pki").issue("custodian:ingest-7")
    assert certificate_cn(cert) == "custodian:ingest-7"


def test_a_writer_that_dies_of_a_bug_ends_the_process_loudly(tmp_path, broker, monkeypatch, caplog):
    """Not a stall that looks alive: the command stops (exit 1) so that its supervisor starts it again."""
    import custodian.ingest as ingest_module

    authority = new_authority(tmp_path)
    monkeypatch.setattr(ingest_module, "check", lambda *a: 1 / 0)  # a bug the fuzzers missed
    died = threading.Event()
    ingest = Ingest("127.0.0.1", broker.port, storage=SqliteStorage(tmp_path / "c.db"), client_id="ingest-a")
    ingest.start(on_death=died.set)
    try:
        wait_until(ingest.subscribed.is_set)
        with connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
            door.publish(authority.visit()[1])
            assert died.wait(30)
    finally:
        ingest.stop()
    assert ingest.died.is_set() and "the writer died" in caplog.text


def test_a_backlog_is_all_stored_though_the_broker_sends_past_receive_maximum(tmp_path, broker, store):
    """What waited for the ingest comes at once when it returns, and Mosquitto 2.0.11 sends it past Receive
    Maximum: a full inbox holds the broker back (TCP) instead of dropping what it cannot hold yet."""
    authority = new_authority(tmp_path)
    storage = store.open()
    with running_ingest(broker.port, storage, client_id="ingest-a"):
        pass  # subscribed, then gone: its session stays
    records = publish_all(broker.port, authority, 900)  # the test broker queues at most 1,000 for a session
    # A wait longer than the default 1 s, so that a machine starved of CPU does not drop either.
    with running_ingest(broker.port, storage, client_id="ingest-a", batch=10, inbox_wait_s=30) as ingest:
        wait_until(lambda: storage.count() == len(records))
    assert (ingest.inbox_full, ingest.reconnects) == (0, 0)
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}
    assert_nothing_comes_back(broker.port, storage, authority)


def test_what_a_full_inbox_dropped_is_fetched_again_by_a_new_connection(tmp_path, broker, store):
    """Dropped unacknowledged, it would wait in the session until some later reconnect: the ingest makes one. No
    wait for room here, so Mosquitto 2.0.11's sending past Receive Maximum overflows the inbox again and again."""
    authority = new_authority(tmp_path)
    storage = store.open()
    with running_ingest(broker.port, storage, client_id="ingest-a"):
        pass
    records = publish_all(broker.port, authority, 900)
    with running_ingest(broker.port, storage, client_id="ingest-a", batch=10, inbox_wait_s=0) as ingest:
        wait_until(lambda: storage.count() == len(records))
    assert ingest.inbox_full > 0 and ingest.reconnects > 0, "the broker kept to Receive Maximum: nothing overflowed"
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}
    assert_nothing_comes_back(broker.port, storage, authority)


def publish_all(port: int, authority, n: int) -> list:
    """n visits from one door, each acknowledged by the broker: queued for the stopped ingest's session."""
    records = [authority.visit()[1] for _ in range(n)]
    with connected_devices(port, ("cafe-1", "door-1")) as (door,):
        for r in records:
            door.publish(r)
        wait_until(door.all_acked)
    return records
