"""The broker goes away, for a while or again and again: scanning goes on and every green visit arrives.

The real daemon (app.run) scans a replay camera of distinct tokens, one frame
each and unpaced, so thousands of visits pass in seconds; its event log (the
feed a venue display reads) names the rid of every green visit. A custodian
with a persistent session counts what the broker delivered, by rid.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import zxingcpp
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import load, store_rows, wait_until
from firmware import app
from lab import render
from lab.broker import Mosquitto
from firmware.store.records import SealedRecord


def write_code_frames(folder: Path, tokens: list[str], frames_each: int = 3) -> Path:
    """Each token as a plain QR held for a few frames (zxing-cpp's writer: a thousand codes in a second or two).

    A few frames each, as a phone is held up: the camera's newest frame wins, so a
    frame arriving while the loop commits a visit may be dropped, never the visitor.
    """
    folder.mkdir(parents=True)
    for n, token in enumerate(tokens):
        first = folder / f"{n:05d}-0.png"
        render.write_png(first, np.asarray(zxingcpp.create_barcode(token, zxingcpp.BarcodeFormat.QRCode).to_image(scale=3)))
        for k in range(1, frames_each):
            os.link(first, folder / f"{n:05d}-{k}.png")
    return folder


class Custodian:
    """Subscribes with a persistent session, so what arrives while it reconnects waits for it at the broker."""

    def __init__(self, port: int):
        self.rids: list[bytes] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="custodian", protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = lambda client, *a: client.subscribe("qrgate/v1/+/+/visits", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._message
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c
        assert subscribed.wait(10)

    def _message(self, client, userdata, message) -> None:
        with self.lock:
            self.rids.append(SealedRecord.from_wire(message.payload).rid)

    def received(self) -> list[bytes]:
        with self.lock:
            return list(self.rids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


RESTARTS = 6


def run_with_broker_faults(tmp_path, world, pins, visits: int, fps: int | None, faults) -> tuple[list[dict], list[bytes]]:
    """Run the daemon over `visits` tokens shown at `fps` (None: as fast as the loop takes frames, none
    dropped) while `faults(broker, done)` plays with the broker.

    Returns the daemon's events for the green visits and every rid the custodian received.
    """
    frames = write_code_frames(tmp_path / "frames", [world.mint(ttl=300) for _ in range(visits)])
    events = tmp_path / "events.jsonl"
    broker = Mosquitto(tmp_path / "broker", persistent=True).start()
    custodian = Custodian(broker.port)
    text = world.config_toml(
        tmp_path / "state", frames, mqtt_port=broker.port, decoder="hold_s = 0.5", events=f'path = "{events}"',
        mqtt="drain_on_exit_s = 60\nreconnect_min_s = 0.2\nreconnect_max_s = 2\nstatus_interval_s = 5")
    cfg = load(tmp_path, text.replace("fps = 30.0", f"fps = {fps}" if fps else "paced = false"))
    done = threading.Event()
    player = threading.Thread(target=faults, args=(broker, done))
    player.start()
    try:
        app.run(cfg, pin_factory=pins, stop=None)  # ends when the replay ends and what waits has drained
    finally:
        done.set()
        player.join(60)
    try:
        decided = [json.loads(line) for line in events.read_text().splitlines()]
        accepted = [e for e in decided if e["verdict"] == "accepted"]
        assert len(accepted) == len(decided)  # no fault, no refusal: the broker's state never reaches the door
        green = {bytes.fromhex(e["rid"]) for e in accepted}
        wait_until(lambda: green <= set(custodian.received()), timeout=60)
        return accepted, custodian.received()
    finally:
        custodian.close()
        broker.stop()
        assert store_rows(cfg) == 0  # everything acknowledged left the card


def rids(events: list[dict]) -> set[bytes]:
    return {bytes.fromhex(e["rid"]) for e in events}


def answered(tmp_path) -> int:
    """How many visitors the daemon has answered so far, from its event log (polled: the display's feed)."""
    events = tmp_path / "events.jsonl"
    return events.read_bytes().count(b"\n") if events.exists() else 0


def test_scanning_goes_on_through_a_broker_outage_and_every_visit_arrives(tmp_path, world, pins):
    down: list[float] = []

    def outage(broker, done) -> None:  # down in the middle of the run while 30 visitors are answered, then back
        while answered(tmp_path) < 30 and not done.wait(0.02):
            pass
        if done.is_set():
            return
        broker.stop()
        down.append(time.time())
        at_stop = answered(tmp_path)
        while answered(tmp_path) < at_stop + 30 and not done.wait(0.02):
            pass  # bounded: the run ends (done) if the door froze, and the count below then fails
        down.append(time.time())
        broker.start()

    accepted, received = run_with_broker_faults(tmp_path, world, pins, 300, 100, outage)
    # Every visitor the camera caught was answered green, broker or not (a loaded machine may drop
    # every frame of a rare one: the newest frame wins) ...
    assert len(accepted) >= 290
    assert sum(down[0] < e["ts"] < down[1] for e in accepted) >= 30  # ... and 30 of them while it was down
    assert set(received) == rids(accepted)  # each arrived; nothing arrived that was not answered green


def test_a_flapping_broker_loses_nothing_over_2000_visits(tmp_path, world, pins):
    rng = random.Random(7)
    restarts = Counter()

    def flapping(broker, done) -> None:  # restarted after every 150 visitors (of 2,000), whatever the machine's pace
        for _ in range(RESTARTS):
            due = answered(tmp_path) + rng.randint(100, 200)
            while answered(tmp_path) < due and not done.wait(0.02):
                pass
            if done.is_set():
                return
            broker.stop()
            done.wait(rng.uniform(0.05, 0.2))
            broker.start()
            restarts["n"] += 1

    # Unpaced: the loop takes every frame, so all 2,000 visitors are decided, as fast as the card allows.
    accepted, received = run_with_broker_faults(tmp_path, world, pins, 2000, None, flapping)
    assert len(accepted) == 2000 and restarts["n"] == RESTARTS
    assert set(received) == rids(accepted)  # nothing lost, nothing unknown: duplicates only re-deliver a rid
    duplicates = len(received) - len(set(received))
    print(f"\nflapping: {restarts['n']} restarts, {len(accepted)} visits, {duplicates} re-deliveries")
