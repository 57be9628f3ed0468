"""The real daemon (firmware.app.run, as `qrgate run` calls it) on a replay camera, mock pins, a real store and broker."""

from __future__ import annotations

import json
import sqlite3
import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import changes, load, running_daemon, store_rows, wait_until, write_frames
from firmware import app, keys
from lab.broker import Mosquitto, free_port
from firmware.store.records import SealedRecord


class Custodian:
    """A subscriber on the visits topics: what the custodian's broker delivered."""

    def __init__(self, port: int):
        self.records: list[SealedRecord] = []
        self.arrived = threading.Condition()
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="custodian", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe("qrgate/v1/+/+/visits", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert subscribed.wait(10), "custodian could not subscribe"

    def _message(self, client, userdata, message) -> None:
        with self.arrived:
            self.records.append(SealedRecord.from_wire(message.payload))
            self.arrived.notify_all()

    def wait_for(self, n: int, timeout: float = 30) -> list[SealedRecord]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.records) >= n, timeout), f"got {len(self.records)} of {n}"
            return list(self.records)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_visitors_get_their_answers_on_the_pins_in_order(tmp_path, world, pins, caplog):
    first, forged = world.mint(), world.forge()
    frames = write_frames(tmp_path / "frames", [first, forged, first])
    events = tmp_path / "events.jsonl"
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, decoder="hold_s = 0.2",
                                           events=f'path = "{events}"'))
    decisions = []
    with caplog.at_level(logging.DEBUG):
        stats = app.run(cfg, on_decision=decisions.append, pin_factory=pins)

    assert [(d.verdict, d.reason) for d in decisions] == [
        ("accepted", None), ("rejected", "bad_signature"), ("already_checked_in", None)]
    assert [d.iss for d in decisions] == ["naver", None, "naver"]
    lights = [(pin, state) for pin, state, *_ in pins.log if pin in ("GPIO17", "GPIO27") and not _]
    assert lights == [("GPIO17", 1.0), ("GPIO17", 0.0), ("GPIO27", 1.0), ("GPIO27", 0.0),
                      ("GPIO17", 1.0), ("GPIO17", 0.0)]
    assert stats.sealed == 1 and store_rows(cfg) == 1  # no second visit for the second showing
    assert all(d.latency_ms > 0 for d in decisions)
    # The event log (a display's feed) says the same, one JSON line per decision.
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["verdict"], e["pattern"]) for e in logged] == [(d.verdict, d.pattern) for d in decisions]
    # A new visit's event names the record it was stored as (a receipt); the others name none.
    db = sqlite3.connect(cfg.device.state_dir / "visits.db")
    assert [e["rid"] for e in logged] == [db.execute("SELECT rid FROM records").fetchone()[0].hex(), None, None]
    db.close()
    # Nothing personal in the logs: neither the QR text nor any part of it.
    for text in (caplog.text, events.read_text()):
        assert first[4:40] not in text and forged[4:40] not in text


def test_no_trust_list_means_amber_and_no_green(tmp_path, world, pins):
    frames = write_frames(tmp_path / "frames", [world.mint()])
    text = world.config_toml(tmp_path / "state", frames).replace(f'list = "{world.trust_file}"\n', "")
    decisions = []
    app.run(load(tmp_path, text), on_decision=decisions.append, pin_factory=pins)
    assert [(d.verdict, d.reason) for d in decisions] == [("fault", "no_trust_list")]
    assert changes(pins.log, "GPIO22")[:1] == [1.0]  # the fault blinked
    assert changes(pins.log, "GPIO17") == [] and changes(pins.log, "GPIO27") == []


def test_a_sealed_visit_reaches_the_broker_and_only_the_authority_opens_it(tmp_path, world, pins, broker):
    cti = bytes(range(16))
    token = world.mint(world.kakao, cti=cti)
    frames = write_frames(tmp_path / "frames", [token])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port))
    custodian = Custodian(broker.port)
    try:
        stats = app.run(cfg, pin_factory=pins)
        [record] = custodian.wait_for(1)
    finally:
        custodian.close()
    assert stats.acked == 1 and store_rows(cfg) == 0  # acknowledged, so it left the card
    assert (record.venue, record.device) == ("cafe-1", "door-1")
    assert cti not in record.wire()
    plain = record.open(keys.load_authority_private(world.authority_dir))
    assert plain["cti"] == cti and plain["iss"] == "kakao" and plain["kind"] == "KP1" and plain["rid"] == record.rid
    # The device holds no key that opens it: no private key and no token id anywhere in its state.
    for f in cfg.device.state_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"PRIVATE KEY" not in data and cti not in data, f


def test_visits_wait_in_the_store_while_the_broker_is_down_then_arrive(tmp_path, world, pins):
    port = free_port()
    tokens = [world.mint(), world.mint(world.kakao)]
    frames = write_frames(tmp_path / "frames", tokens)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=port, camera="loop = true",
                                           decoder="hold_s = 60", mqtt="reconnect_max_s = 2"))
    with running_daemon(cfg, pins) as daemon:
        wait_until(lambda: store_rows(cfg) == 2)  # both visits sealed and kept, no broker anywhere
        with Mosquitto(tmp_path / "late-broker", port=port):
            custodian = Custodian(port)
            try:
                records = custodian.wait_for(2, timeout=60)  # the reconnect backoff is capped at 2 s here
                wait_until(lambda: store_rows(cfg) == 0)
            finally:
                custodian.close()
            daemon.stop()  # while the broker is still there for its last status
    assert len({r.rid for r in records}) == 2
    assert daemon.stats.acked >= 2


def test_a_publish_the_broker_refuses_is_a_fault_and_the_record_stays(tmp_path, world, pins):
    # Anonymous clients may only read: the broker answers the visit's PUBLISH with 0x87 (not authorized).
    acl = tmp_path / "acl"
    acl.write_text("topic read qrgate/#\n")
    frames = write_frames(tmp_path / "frames", [world.mint()])
    with Mosquitto(tmp_path / "strict-broker", extra=f"allow_anonymous true\nacl_file {acl}\n") as b:
        cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=b.port,
                                               camera="loop = true", decoder="hold_s = 60"))
        with running_daemon(cfg, pins):
            wait_until(lambda: store_rows(cfg) == 1 and changes(pins.log, "GPIO22"))  # amber: the fault
    assert store_rows(cfg) == 1
    assert "Denied PUBLISH" in b.log_tail(200)
