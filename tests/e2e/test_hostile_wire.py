"""Hostile retained trust lists while the real daemon scans (issue 15, finding 1).

The message of the security review: an unsigned ~320 KB payload, tag 4 over a
huge integer, on `qrgate/v1/trustlist`. cbor2 spent ~11 s building a Decimal
of it with the GIL held: every thread of the daemon froze (the scan loop, the
keep-alives, the status file), longer than WatchdogSec, and as a retained
message it came back on every reconnect. Here a real Mosquitto delivers it and
its kin while the daemon decides visitors on a looping camera; the loop must
keep deciding, the keep-alives and the status file keep their cadence, and a
good list published after them all is still installed.
"""

from __future__ import annotations

import json
import threading
import time

import cbor2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import load, running_daemon, wait_until, write_frames
from firmware import housekeeping, keys
from firmware.tokens import cose, trustlist
from firmware.uplink import topics
from tests.e2e.test_systemd_notify import NotifySocket
from lab import signers

TOPIC = "qrgate/v1/trustlist"


def hostile_lists(world, tmp_path) -> dict[str, bytes]:
    stranger = signers.new_root(tmp_path / "stranger")
    root_kid = keys.kid_of(keys.load_root_public(world.root_dir))
    bomb = cbor2.dumps(cbor2.CBORTag(4, [-2, 10 ** 770_000]))  # about 320 KB
    nested = b"\x81" * 500_000 + b"\x00"
    return {
        "unsigned tag-4 bomb": bomb,
        "tag-4 bomb in the root's layout, signed by a stranger": cose.sign1(bomb, stranger, root_kid),
        "bignum bomb, signed by a stranger": cose.sign1(cbor2.dumps({"seq": 2**800_000}), stranger, root_kid),
        "half a million nested arrays": cose.sign1(nested, stranger, root_kid),
        "over the packet cap": cose.sign1(bytes(topics.MAX_PACKET), stranger, root_kid),
    }


class StatusWatcher:
    """Every distinct `written_at` of the status file, as the test's own thread sees it appear."""

    def __init__(self, path):
        self.path, self.seen = path, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):  # polling a file the daemon rewrites; bounded by stop()
            try:
                written = json.loads(self.path.read_text())["written_at"]
            except (OSError, ValueError, KeyError):
                continue
            if not self.seen or written != self.seen[-1]:
                self.seen.append(written)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def test_hostile_retained_lists_never_stall_the_door(tmp_path, world, pins, broker, monkeypatch, caplog):
    monkeypatch.setattr(housekeeping, "CHECK_S", 0.2)
    notify = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a keep-alive due every 0.1 s
    frames = write_frames(tmp_path / "frames", [world.mint(ttl=300)], gap_frames=12)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port,
                                           camera="loop = true", decoder="hold_s = 0.2"))
    decided: list[float] = []
    authority = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="authority", protocol=mqtt.MQTTv5)
    authority.connect("127.0.0.1", broker.port)
    authority.loop_start()
    kept = tmp_path / "state" / "trustlist.cose"
    try:
        with running_daemon(cfg, pins, on_decision=lambda d: decided.append(time.monotonic())):
            wait_until(lambda: len(decided) >= 2)  # scanning: the token comes round again and again
            watcher = StatusWatcher(cfg.device.runtime_dir / "status.json")
            hostile = hostile_lists(world, tmp_path)
            start, start_wall = time.monotonic(), time.time()
            rounds = 0
            # A flood while four visitors come and go (bounded: a daemon that froze fails the gaps below).
            while rounds < 2 or sum(t > start for t in decided) < 4 and time.monotonic() - start < 60:
                for payload in hostile.values():
                    authority.publish(TOPIC, payload, qos=1, retain=True).wait_for_publish(30)
                rounds += 1
            authority.publish(TOPIC, world.trust_list([world.naver], seq=2), qos=1, retain=True) \
                .wait_for_publish(30)
            wait_until(lambda: trustlist.parse(kept.read_bytes(), None).seq == 2)  # after every hostile one
            end, end_wall = time.monotonic(), time.time()
            written = watcher.stop()
    finally:
        authority.disconnect()
        authority.loop_stop()
        notify.close()
    def longest_gap(times: list[float], first: float, last: float) -> float:
        return float(np.diff([first, *(t for t in times if first <= t <= last), last]).max())

    assert longest_gap(notify.times("WATCHDOG", "1"), start, end) < 1.0  # due every 0.1 s
    assert longest_gap(written, start_wall, end_wall) < 1.5  # every 0.2 s, give or take a busy machine
    assert longest_gap(decided, start, end) < 2.5  # the token comes round every 0.9 s
    assert caplog.text.count("trust list refused") == rounds * 4  # the broker dropped the one over the packet cap
    assert "larger than 1 MiB" not in caplog.text
