"""What a hostile device or broker client can send the ingest, on a real Mosquitto: nothing stalls it, nothing is lost.

A record the database refuses, QoS 0 floods, packets far larger than a
record, a device past its rate, another connection taking the ingest's
session, and a mix of poison records among good ones. The same rules without
a broker, each on its own, are in test_ingest_unit.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from custodian_kit import assert_nothing_comes_back, connected_devices, new_authority, running_ingest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import custodian
from custodian.ingest import TS_SKEW_S, Ingest
from custodian.storage import DAY_S, SqliteStorage
from lab.broker import Mosquitto
from firmware.store.records import MAX_WIRE
from firmware.uplink import topics
from tests.conftest import wait_until

TOPIC = topics.visits("cafe-1", "door-1")


def _settled(ingest: Ingest) -> bool:
    """Everything received is accounted for: stored, a duplicate or rejected (none left waiting)."""
    return ingest.received == ingest.stored + ingest.duplicates + ingest.rejected


def test_a_record_the_database_refuses_is_rejected_as_unstorable_and_its_batch_is_stored(tmp_path, broker):
    authority = new_authority(tmp_path)
    db = tmp_path / "c.db"
    SqliteStorage(db).close()
    setup = sqlite3.connect(db, isolation_level=None)
    setup.execute("CREATE TRIGGER refuse BEFORE INSERT ON visits WHEN NEW.venue = 'gym-2'"
                  " BEGIN SELECT RAISE(ABORT, 'refused'); END")  # a database that refuses one kind of record
    setup.execute("BEGIN IMMEDIATE")  # and is locked for now, so that all of them meet in one batch
    storage = SqliteStorage(db, busy_timeout_s=0.05)
    good = [authority.visit()[1] for _ in range(3)]
    refused = authority.visit("gym-2", "door-1")[1]
    with running_ingest(broker.port, storage, client_id="ingest-a", retry_s=0.05, batch_window_s=0.5) as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1"), ("gym-2", "door-1")) as (door, gym):
        door.publish(good[0])
        gym.publish(refused)
        door.publish(good[1])
        door.publish(good[2])
        wait_until(lambda: ingest.received == 4 and door.all_acked() and gym.all_acked())
        assert ingest.stored == 0  # locked: retried, unacknowledged
        setup.execute("ROLLBACK")
        wait_until(lambda: _settled(ingest))
    assert (ingest.stored, ingest.rejected_by_reason) == (3, {"unstorable": 1})
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in good}
    # Acknowledged, refused for good: the same session, resumed, is not given it again.
    assert_nothing_comes_back(broker.port, storage, authority)


def test_qos0_on_a_visits_topic_is_rejected_as_it_arrives(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        for _ in range(50):
            assert door.uplink.publish(TOPIC, authority.visit()[1].wire(), qos=0)
        door.publish(authority.visit()[1])
        wait_until(lambda: ingest.received == 51 and _settled(ingest))
    assert (ingest.stored, ingest.rejected_by_reason) == (1, {"qos0": 50})
    assert ingest.summary()["rejected_by_reason"] == {"qos0": 50}


def test_the_ingest_takes_what_the_broker_admits_and_rejects_anything_larger_than_a_record(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        door.publish(os.urandom(topics.MAX_PACKET + 1))  # the broker acknowledges it to the device, sends it nowhere
        door.publish(os.urandom(topics.MAX_PACKET - 1024))
        door.publish(cbor2.dumps([1, os.urandom(16), "cafe-1", "door-1", int(time.time()), os.urandom(MAX_WIRE)]))
        good = authority.visit()[1]
        door.publish(good)  # after them all, on one connection: when it is stored, they have been dealt with
        wait_until(lambda: ingest.stored == 1 and door.all_acked())
    assert (ingest.received, ingest.rejected_by_reason) == (3, {"oversized": 2})


@pytest.mark.parametrize("broker_says", ["nothing", "the shipped max_packet_size"])
def test_a_broker_that_admits_larger_packets_than_the_ingest_takes_is_named_at_connect(tmp_path, caplog, broker_says):
    shipped = (Path(custodian.__file__).parent / "broker" / "mosquitto.conf").read_text()
    assert f"\nmax_packet_size {topics.MAX_PACKET}\n" in shipped
    extra = "allow_anonymous true\n" + (f"max_packet_size {topics.MAX_PACKET}\n" if broker_says != "nothing" else "")
    with Mosquitto(tmp_path / "broker", extra=extra) as b, caplog.at_level(logging.WARNING, "custodian.ingest"), \
            running_ingest(b.port, SqliteStorage(tmp_path / "c.db"), client_id="ingest-a"):
        pass
    named = f"set max_packet_size {topics.MAX_PACKET} in mosquitto.conf" in caplog.text
    assert named == (broker_says == "nothing")


def test_a_flood_of_messages_too_large_for_a_record_never_wedges_the_ingests_session(tmp_path, broker):
    """Mosquitto 2.0.11 keeps an in-flight slot for every QoS 1 message it drops as larger than a client's
    Maximum Packet Size, and never frees it: 20 such messages (its max_inflight_messages) and nothing more
    reaches that client. The ingest takes every packet the broker admits and rejects the large ones itself."""
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        for _ in range(ingest.batch + 1):  # the ingest's Receive Maximum, and one more
            door.publish(os.urandom(MAX_WIRE + 512))
        door.publish(authority.visit()[1])
        wait_until(lambda: ingest.stored == 1 and door.all_acked())
    assert ingest.rejected_by_reason == {"oversized": ingest.batch + 1}


def test_records_beyond_a_devices_rate_are_rejected_as_rate_limited(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a", device_burst=3, device_rate_per_s=1e-6) as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1"), ("cafe-1", "door-2")) as (one, two):
        for _ in range(5):
            one.publish(authority.visit("cafe-1", "door-1")[1])
        for _ in range(2):
            two.publish(authority.visit("cafe-1", "door-2")[1])
        wait_until(lambda: ingest.received == 7 and _settled(ingest))
    assert (ingest.stored, ingest.rejected_by_reason) == (5, {"rate_limited": 2})
    assert {row.device for row in storage.between("cafe-1", 0, 2**40)} == {"door-1", "door-2"}


def _impostor(port: int, client_id: str) -> mqtt.Client:
    """A bare client that takes a client id once and never comes back by itself."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    reconnect_on_failure=False)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=properties)
    c.loop_start()
    assert connected.wait(10)
    return c


def test_mosquitto_2_0_cuts_a_taken_over_ingest_off_without_a_word_and_it_comes_back(tmp_path, broker):
    """Without identities bound to client ids (a plain broker), anyone may connect under the ingest's id.
    Mosquitto 2.0.11 then closes the ingest's connection with no DISCONNECT (no 0x8E): the ingest sees a
    lost connection, not a takeover. If this starts failing on takeovers, Mosquitto now says so."""
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest:
        impostor = _impostor(broker.port, "ingest-a")
        try:
            wait_until(lambda: ingest.reconnects == 1 and ingest.subscribed.is_set())  # and took its session back
        finally:
            impostor.disconnect()
            impostor.loop_stop()
        with connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
            door.publish(authority.visit()[1])
            wait_until(lambda: ingest.stored == 1)
    assert ingest.takeovers == 0
    assert "Client ingest-a already connected, closing old connection." in broker.log_tail(200)


def _packet(conn: socket.socket) -> tuple[int, bytes] | None:
    """One MQTT packet: (its first byte, its body); None at the end of the stream."""
    head = conn.recv(1)
    length, shift = 0, 0
    while head:
        byte = conn.recv(1)
        if not byte:
            return None
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            body = b""
            while len(body) < length and (chunk := conn.recv(length - len(body))):
                body += chunk
            return head[0], body
    return None


class _SaysTakenOver:
    """A minimal MQTT 5 server for what Mosquitto 2.0.11 does not do (above): on `take_over()` it sends the
    connection DISCONNECT 0x8E (session taken over, MQTT 5 section 3.1.4), as EMQX, HiveMQ and others do.
    Otherwise it answers CONNECT (the session present from the second on), SUBSCRIBE and PINGREQ."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._server.accept()
                self.connections.append(conn)
                threading.Thread(target=self._serve, args=(conn, len(self.connections) > 1), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket, session_present: bool) -> None:
        with contextlib.suppress(OSError):
            while (packet := _packet(conn)) is not None:
                kind, body = packet[0] >> 4, packet[1]
                if kind == 1:  # CONNECT -> CONNACK: success, no properties
                    conn.sendall(bytes([0x20, 3, int(session_present), 0, 0]))
                elif kind == 8:  # SUBSCRIBE -> SUBACK: its packet id, no properties, QoS 1 granted
                    conn.sendall(bytes([0x90, 4]) + body[:2] + bytes([0, 1]))
                elif kind == 12:  # PINGREQ -> PINGRESP
                    conn.sendall(bytes([0xD0, 0]))

    def take_over(self) -> None:
        conn = self.connections[-1]
        conn.sendall(bytes([0xE0, 2, 0x8E, 0]))  # DISCONNECT, session taken over, no properties
        conn.close()

    def close(self) -> None:
        self._server.close()
        for conn in self.connections:
            conn.close()


def test_a_session_taken_over_is_an_alarm_and_the_ingest_comes_back(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="custodian")
    broker = _SaysTakenOver()
    try:
        with running_ingest(broker.port, SqliteStorage(tmp_path / "c.db"), client_id="ingest-a") as ingest:
            broker.take_over()
            wait_until(lambda: ingest.takeovers == 1)
            wait_until(lambda: ingest.reconnects == 1 and ingest.subscribed.is_set())
    finally:
        broker.close()
    alarms = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(alarms) == 1 and "SESSION TAKEN OVER" in alarms[0] and "ingest-a" in alarms[0]
    assert ingest.summary()["takeovers"] == 1


def _poison(authority, now: int) -> dict[str, list[bytes]]:
    """Hostile payloads by the reason each must be rejected for."""
    def wire(ts=now, rid=None, sealed=b"sealed"):
        return cbor2.dumps([1, rid or os.urandom(16), "cafe-1", "door-1", ts, sealed])

    return {
        "ts_out_of_range": [wire(ts=2**63), wire(ts=2**64 - 1), wire(ts=now + DAY_S), wire(ts=now - 29 * DAY_S),
                            wire(ts=now + TS_SKEW_S + 60)],
        "oversized": [wire(sealed=os.urandom(MAX_WIRE))],
        "malformed": [b"\xff\x00not cbor", wire(rid=b"short"), wire(ts=-5), cbor2.dumps([1, 2, 3]),
                      b"\xc4\x82\x21\xc2\x59\x0f\xa0" + b"\x01" * 4000,  # tag 4 over a 4,000-byte bignum
                      wire()[:-3], wire() + b"\x00", cbor2.dumps({"v": 1})],
    }


def test_poison_records_among_good_ones_stop_nothing_and_each_is_rejected_by_its_reason(tmp_path, broker):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    now = int(time.time())
    poison = _poison(authority, now)
    good = [authority.visit()[1] for _ in range(len(sum(poison.values(), [])) + 1)]
    with running_ingest(broker.port, storage, client_id="ingest-a") as ingest, \
            connected_devices(broker.port, ("cafe-1", "door-1")) as (door,):
        bad = iter(sum(poison.values(), []))
        for record in good:
            door.publish(record)
            if (payload := next(bad, None)) is not None:
                door.publish(payload)
        door.uplink.publish(TOPIC, authority.visit()[1].wire(), qos=0)
        sent = len(good) + len(sum(poison.values(), [])) + 1
        wait_until(lambda: ingest.received == sent and _settled(ingest), timeout=10)
    assert ingest.stored == len(good) and ingest.duplicates == 0
    assert ingest.rejected_by_reason == {reason: len(p) for reason, p in poison.items()} | {"qos0": 1}
    assert {row.rid for row in storage.between("cafe-1", 0, 2**62)} == {r.rid for r in good}
    assert_nothing_comes_back(broker.port, storage, authority)  # every poison was acknowledged
