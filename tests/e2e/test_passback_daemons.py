"""Anti-passback with two real daemons (firmware.app.run, as `qrgate run`) of one venue on one real Mosquitto,
each on its replay camera and its own mock pins: the token green at door-1 is `replayed_elsewhere` at door-2;
and with the broker down each door falls back to its own memory and says so."""

from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as mqtt
from gpiozero.pins.mock import MockFactory, MockPWMPin
from paho.mqtt.enums import CallbackAPIVersion

from conftest import changes, load, running_daemon, store_rows, wait_until, write_frames
from firmware import cli, health
from firmware.passback import message, secret
from firmware.uplink import topics
from lab.broker import Mosquitto, free_port


class Spy:
    """Everything the broker relays under qrgate/, as it went over the wire."""

    def __init__(self, port: int):
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe("qrgate/#", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert subscribed.wait(10), "the spy could not subscribe"

    def _message(self, client, userdata, msg) -> None:
        with self._lock:
            self.seen.append((msg.topic, bytes(msg.payload)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self.seen if t == topic]

    def publish_retained(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def door(tmp_path, world, name: str, token: str, port: int, trust_file: bool = True):
    """A door's config: its own folder (store, runtime status), the token looping on its camera, the venue secret."""
    folder = tmp_path / name
    frames = write_frames(folder / "frames", [token], gap_frames=8)  # out of view longer than hold_s: shown again
    text = world.config_toml(folder / "state", frames, mqtt_port=port, device=f'id = "{name}"', camera="loop = true",
                             decoder="hold_s = 0.2", mqtt="reconnect_max_s = 2",
                             passback=f'secret = "{world.venue_secret}"')
    if not trust_file:  # it gets its trust list from the broker, when the test says
        text = text.replace(f'list = "{world.trust_file}"\n', "")
    folder.mkdir(exist_ok=True)
    return load(folder, text)


def status(cfg) -> dict:
    path = cfg.device.runtime_dir / health.FILE
    return json.loads(path.read_text()) if path.exists() else {}


def passback(cfg) -> dict:
    return status(cfg).get("passback") or {}


def test_a_token_green_at_door_1_is_replayed_elsewhere_at_door_2_with_no_record(tmp_path, world, pins, broker,
                                                                                caplog):
    cti = bytes(range(16))
    token = world.mint(cti=cti, ttl=300)
    door1 = door(tmp_path, world, "door-1", token, broker.port)
    # Door-2 has no trust list yet, so it cannot judge (amber, no record) until the test publishes one: by
    # then it has heard door-1's hash, which is the order this test is about.
    door2 = door(tmp_path, world, "door-2", token, broker.port, trust_file=False)
    first, second = [], []
    spy = Spy(broker.port)
    try:
        with caplog.at_level(logging.DEBUG), \
                running_daemon(door2, pins, on_decision=second.append) as d2:
            wait_until(lambda: passback(door2).get("mode") == "venue")  # subscribed to the venue topic
            with running_daemon(door1, MockFactory(pin_class=MockPWMPin), on_decision=first.append) as d1:
                wait_until(lambda: ("accepted", None) in [(d.verdict, d.reason) for d in first])
                wait_until(lambda: passback(door2).get("peer_hashes") == 1)  # door-2 heard it
                assert not [d for d in second if d.verdict != "fault"]  # and could judge nothing yet
                spy.publish_retained(topics.TRUSTLIST, world.trust_file.read_bytes())
                wait_until(lambda: ("rejected", "replayed_elsewhere") in [(d.verdict, d.reason) for d in second])
                wait_until(lambda: len(spy.on(topics.visits("cafe-1", "door-1"))) == 1)
                d1.stop()
            d2.stop()
    finally:
        spy.close()

    # Door-1: one visit, green, and its own repeats "already checked in" (never replayed_elsewhere).
    assert {(d.verdict, d.reason) for d in first} == {("accepted", None), ("already_checked_in", None)}
    assert [d.verdict for d in first].count("accepted") == 1 and d1.stats.sealed == 1
    # Door-2: red, never green, no record made, none sent; it told no one (a red answer is not shared).
    assert {(d.verdict, d.reason) for d in second} == {("fault", "no_trust_list"), ("rejected", "replayed_elsewhere")}
    assert d2.stats.sealed == 0 and store_rows(door2) == 0 and spy.on(topics.visits("cafe-1", "door-2")) == []
    assert changes(pins.log, "GPIO17") == [] and 1.0 in changes(pins.log, "GPIO27")
    # On the wire: one 24-byte note on the venue topic, naming neither the token nor the door.
    [note] = spy.on(topics.passback("cafe-1"))
    h = secret.load(world.venue_secret).hash(cti)
    assert len(note) == 24 and message.parse(note).hash == h and b"door" not in note
    for topic, payload in spy.seen:
        assert cti not in payload, topic
    # Nothing personal in the logs: neither the token, nor its id, nor its hash.
    for secret_text in (token[4:40], cti.hex(), h.hex()):
        assert secret_text not in caplog.text
    assert "passback: sharing accepted tokens with the venue's doors" in caplog.text


def test_with_the_broker_down_each_door_keeps_its_own_memory_and_says_so(tmp_path, world, pins, capsys):
    port = free_port()  # no broker there yet
    token = world.mint(ttl=300)
    door1, door2 = (door(tmp_path, world, name, token, port) for name in ("door-1", "door-2"))
    first, second = [], []
    with running_daemon(door1, pins, on_decision=first.append) as d1, \
            running_daemon(door2, MockFactory(pin_class=MockPWMPin), on_decision=second.append) as d2:
        wait_until(lambda: store_rows(door1) == 1 and store_rows(door2) == 1)
        # Both green, a record each: what every door did before anti-passback, and does without its venue.
        wait_until(lambda: all(passback(c).get("unsent") == 1 for c in (door1, door2)))
        for cfg in (door1, door2):
            assert passback(cfg)["mode"] == "door" and passback(cfg)["why"] == "broker not connected"
            assert status(cfg)["faults"] == {}  # the door works: no amber for this
        assert cli.main(["status", "--config", str(tmp_path / "door-2" / "qrgate.toml")]) in (0, 1)
        rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
        assert ["passback", "per door only (broker not connected)"] in rows
        # The broker comes back: the doors share again, and say so.
        with Mosquitto(tmp_path / "late-broker", port=port):
            wait_until(lambda: all(passback(c).get("mode") == "venue" for c in (door1, door2)))
            d1.stop()
            d2.stop()
    for decisions in (first, second):
        assert [d.verdict for d in decisions].count("accepted") == 1
        assert {d.verdict for d in decisions} <= {"accepted", "already_checked_in"}
