"""`qrgate bench passback`: how long from door-1's green until door-2 of the same venue knows the token.

Two doors, each wired as the daemon wires it (uplink.link.connect with the
venue share's subscription, the share attached to its uplink; a store of its
own for the drain), meet on a loopback Mosquitto started as the tests start
one (lab.broker). For each of `tokens` fresh token ids, door-1's share is
told of a new visit, which is the moment its gate has made the visit durable
and is about to light green (firmware.passback.share.VenueGate); the clock
stops when door-2's peer memory holds the hash, on paho's thread, as the
daemon's would. The next token goes once door-2 has it (or after 5 s: lost),
so each figure is one token's way through the broker, not a queue's. At the
end every token must be `replayed_elsewhere` at door-2 and acknowledged to
door-1. The goal: p99 well under 2 s (a visitor walks from one door to the
next in no less).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import paho.mqtt

from firmware.config import MqttConfig
from firmware.errors import QrgateError
from firmware.faults import Faults
from firmware.passback.memory import PeerMemory
from firmware.passback.secret import VenueSecret
from firmware.passback.share import VenueShare
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.uplink import link as uplinks
from firmware.uplink import topics
from lab.bench.machine import cpu_model
from lab.broker import Mosquitto

GOAL_P99_MS = 2000.0
LOST_AFTER_S = 5.0
VENUE = "bench"


class TimedMemory(PeerMemory):
    """Door-2's memory, noting when each hash arrived (perf_counter), and waking whoever waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[bytes, float] = {}
        self.changed = threading.Condition()

    def note(self, hash: bytes, until: int, now: int, own: bool = False) -> bool:
        kept = super().note(hash, until, now, own)
        at = time.perf_counter()
        with self.changed:
            self.arrived.setdefault(hash, at)
            self.changed.notify_all()
        return kept

    def wait_for(self, hash: bytes, timeout: float) -> float | None:
        with self.changed:
            if self.changed.wait_for(lambda: hash in self.arrived, timeout):
                return self.arrived[hash]
        return None


class Door:
    def __init__(self, folder: Path, port: int, name: str, key: bytes, memory: PeerMemory | None = None):
        folder.mkdir(parents=True)
        self.store = SqliteRecordStore(folder / "visits.db")
        self.share = VenueShare(VenueSecret(key), topics.passback(VENUE), memory)
        m = MqttConfig(enabled=True, host="127.0.0.1", port=port, tls=False, reconnect_min_s=0.1)
        self.link = uplinks.connect(m, VENUE, name, store=self.store, snapshot=dict, stats=Stats(), faults=Faults(),
                                    on_trust_list=lambda data: None, on_state=lambda up, why: self.share.link(up),
                                    subscriptions=self.share.subscriptions())
        self.share.attach(self.link.uplink)
        spawn: Callable[[str, Callable[[], None]], threading.Thread] = \
            lambda name, target: _started(threading.Thread(target=target, name=name, daemon=True))  # noqa: E731
        self.link.start(spawn)

    def close(self) -> None:
        self.link.close()
        self.store.close()


def _started(thread: threading.Thread) -> threading.Thread:
    thread.start()
    return thread


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise QrgateError(f"bench passback: {what} within {timeout:g} s")
        time.sleep(0.01)  # polling set-up state (connected, subscribed), bounded by the deadline; not measured


def _mosquitto_version(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if m := re.search(r"mosquitto version (\S+) starting", line):
            return m.group(1)
    return "unknown"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def run(tokens: int = 300, gap_ms: float = 20.0, folder: Path | None = None) -> dict:
    if tokens < 1 or gap_ms < 0:
        raise QrgateError("bench passback: --tokens must be 1 or more and --gap-ms not negative")
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-passback-", dir=folder) as tmp:
        return _measure(Path(tmp), tokens, gap_ms)


def _measure(tmp: Path, n: int, gap_ms: float) -> dict:
    key = os.urandom(32)
    broker = Mosquitto(tmp / "broker").start()
    memory = TimedMemory()
    door1 = door2 = None
    try:
        door1 = Door(tmp / "door-1", broker.port, "door-1", key)
        door2 = Door(tmp / "door-2", broker.port, "door-2", key, memory)
        _wait(lambda: door1.share.mode()[0] == door2.share.mode()[0] == "venue", 10, "both doors subscribed")
        times_ms: list[float] = []
        ctis = [os.urandom(16) for _ in range(n)]
        for cti in ctis:
            h = door2.share.secret.hash(cti)
            now = time.time()
            start = time.perf_counter()
            door1.share.accepted(cti, int(now) + 20, now)  # what VenueGate does once the visit is durable
            arrived = memory.wait_for(h, LOST_AFTER_S)
            if arrived is not None:
                times_ms.append((arrived - start) * 1000)
            if gap_ms:
                time.sleep(gap_ms / 1000)  # the pace of an entrance, not synchronisation
        _wait(lambda: door1.share.shared + door1.share.refused == n, 10, "door-1's publishes acknowledged")
        replayed = sum(door2.share.elsewhere(cti, time.time()) for cti in ctis)
        shared, refused, bad = door1.share.shared, door1.share.refused, door2.share.bad
    finally:
        for d in (door1, door2):
            if d is not None:
                d.close()
        broker.stop()
    if not times_ms:
        raise QrgateError("bench passback: door-2 heard of no token")
    p99 = _percentile(times_ms, 99)
    met = {"p99_ms": p99 <= GOAL_P99_MS, "every_token_known": len(times_ms) == n == replayed}
    return {
        "bench": "passback",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": _mosquitto_version(broker.folder / "mosquitto.log"),
        "tokens": n,
        "gap_ms": gap_ms,
        "qos": 1,
        "known_at_door_2": len(times_ms),
        "lost": n - len(times_ms),
        "replayed_elsewhere_at_door_2": replayed,
        "acknowledged_to_door_1": shared,
        "refused_to_door_1": refused,
        "bad_messages_at_door_2": bad,
        "median_ms": round(statistics.median(times_ms), 3),
        "p99_ms": round(p99, 3),
        "min_ms": round(min(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
        "goals": {"p99_ms": GOAL_P99_MS},
        "goals_met": {**met, "all": all(met.values())},
    }
