"""A fleet of simulated scanners publishing sealed visits, for measuring the custodian (`qrgate custodian fleet`).

Each simulated device is what the firmware is on the wire: its own MQTT v5
connection and identity (client id `qrgate-<venue>-<device>`, topic
`qrgate/v1/<venue>/<device>/visits`), publishing through the firmware's own
MqttUplink (paho 2.x, QoS 1, its in-flight window, one network thread per
device) records made by the firmware's own Visit(...).seal(authority key) and
SealedRecord.wire(): of version 2 with either suite, or of version 1 as older
devices still send them (RECORDS). A visit counts as delivered on its success PUBACK, as the
firmware deletes a record only then.

The offered load is for the whole fleet: exactly rate × seconds visits, each at
a time drawn uniformly over the run (a Poisson process given its count) and at
a device drawn uniformly (so each device is a Poisson process of rate/N).

Sealing is the device's cost, not the custodian's: every record is sealed
before the timed phase, so the simulator's CPU goes to the wire alone.

One paho thread per device is heavy in one interpreter (the GIL), so the fleet
is split across worker processes of `devices_per_worker` devices each. A worker
is a fresh interpreter (not multiprocessing: nothing of __main__ is
re-imported) speaking JSON lines on stdin/stdout: it is given its devices and
its share of the rate, seals and connects, says ready, is told a common start
time (CLOCK_MONOTONIC is one clock for the whole machine), publishes on
schedule, and reports each rid with its publish time (wall, for latency against
a database's time.time(), and monotonic) and its PUBACK time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from firmware.errors import QrgateError
from firmware.store import seal
from firmware.store.records import V1, V2, SealedRecord, Visit, sealed_v1
from firmware.store.seal import OpeningKey, SealingKey
from firmware.uplink import topics
from firmware.uplink.mqtt import MqttUplink

ISSUER = "naver"
DEVICES_PER_WORKER = 250
# paho's network loop waits in select(), which cannot watch a descriptor numbered
# 1024 or more (FD_SETSIZE); each device holds three (its socket and a wake-up
# socket pair), so a worker past ~330 devices has clients that never connect.
MAX_DEVICES_PER_WORKER = 300
CONNECT_TIMEOUT_S = 60.0
START_DELAY_S = 0.5  # from "go" to the first scheduled visit: time for every worker to read it
# What the devices send: `--records NAME` → (suite, record version).
RECORDS = {"v2-hybrid": (seal.MLKEM768_X25519, V2), "v2-x25519": (seal.X25519, V2), "v1": (seal.X25519, V1)}


def seal_visit(visit: Visit, authority: SealingKey, version: int) -> SealedRecord:
    """`visit` sealed as a device of that record version seals it (version 1: X25519 keys only)."""
    if version == V1:
        return sealed_v1(visit, X25519PublicKey.from_public_bytes(authority.raw))
    return visit.seal(authority)


def throwaway_key(records: str) -> tuple[SealingKey, int]:
    """A fresh authority key of the suite `records` names (nobody is meant to open these), and its version."""
    suite, version = RECORDS[records]
    return OpeningKey.generate(suite).public_key(), version


@dataclass(frozen=True)
class Identity:
    """One simulated scanner: a venue of its own with one door."""

    venue: str
    device: str

    @property
    def client_id(self) -> str:
        return f"qrgate-{self.venue}-{self.device}"

    @property
    def topic(self) -> str:
        return topics.visits(self.venue, self.device)


def identities(n: int) -> list[Identity]:
    return [Identity(f"venue-{i:05d}", "door-1") for i in range(n)]


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal whole numbers (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- a worker: some devices, in a process of its own -------------------------------------------------------------


@dataclass
class _Worker:
    host: str
    port: int
    devices: list[Identity]
    visits: int
    seconds: float
    authority: SealingKey
    version: int
    seed: int
    answer_timeout_s: float
    plan: list[tuple[float, int]] = field(default_factory=list)  # (seconds after the start, device index)
    records: list[SealedRecord] = field(default_factory=list)
    wires: list[bytes] = field(default_factory=list)
    uplinks: list[MqttUplink] = field(default_factory=list)

    def prepare(self) -> dict:
        """Seal every visit of the plan, then connect every device."""
        rng = random.Random(self.seed)
        t0 = time.perf_counter()
        now = time.time()
        self.plan = sorted((rng.uniform(0, self.seconds), rng.randrange(len(self.devices)))
                           for _ in range(self.visits))
        for at, i in self.plan:
            d = self.devices[i]
            visit = Visit(os.urandom(16), d.venue, d.device, int(now + at), ISSUER, os.urandom(16))
            self.records.append(seal_visit(visit, self.authority, self.version))
        self.wires = [r.wire() for r in self.records]
        sealed = time.perf_counter()
        self.uplinks = [MqttUplink(self.host, self.port, client_id=d.client_id) for d in self.devices]
        for uplink in self.uplinks:
            uplink.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for uplink in self.uplinks:
            if not uplink.connected.wait(max(0.0, deadline - time.monotonic())):
                raise QrgateError(f"fleet: not every device connected within {CONNECT_TIMEOUT_S:g} s")
        return {"seal_seconds": round(sealed - t0, 3), "connect_seconds": round(time.perf_counter() - sealed, 3)}

    def run(self, start: float) -> dict:
        """Publish each visit at its time (at once when late), then wait for every answer."""
        n = len(self.plan)
        pub_wall, pub_mono, ack_mono = [0.0] * n, [0.0] * n, [0.0] * n
        answers, succeeded = [0] * n, [False] * n
        counts = {"answered": 0, "refused": 0}
        cond = threading.Condition()

        def answer(i: int, ok: bool, reason: str) -> None:
            with cond:
                ack_mono[i] = time.monotonic()
                answers[i] += 1
                succeeded[i] = ok
                counts["answered"] += 1
                counts["refused"] += not ok
                cond.notify_all()

        published, not_taken, latest = 0, 0, 0.0
        while time.monotonic() < start:
            time.sleep(max(0.0, start - time.monotonic()))
        cpu0 = time.process_time()
        for i, ((at, d), wire) in enumerate(zip(self.plan, self.wires)):
            due = start + at
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            pub_wall[i], pub_mono[i] = time.time(), time.monotonic()
            latest = max(latest, pub_mono[i] - due)
            if self.uplinks[d].publish(self.devices[d].topic, wire, qos=1,
                                       on_ack=lambda ok, reason, i=i: answer(i, ok, reason)):
                published += 1
            else:
                not_taken += 1
                pub_wall[i] = pub_mono[i] = 0.0
        finished = time.monotonic()
        with cond:
            cond.wait_for(lambda: counts["answered"] >= published, timeout=self.answer_timeout_s)
        cpu = time.process_time() - cpu0
        acked = [i for i in range(n) if succeeded[i]]
        return {
            "devices": len(self.devices),
            "planned": n,
            "published": published,
            "not_taken": not_taken,
            "answered": counts["answered"],
            "refused": counts["refused"],
            "answered_twice": sum(1 for a in answers if a > 1),
            "publish_seconds": round(finished - start, 3),
            "max_behind_schedule_s": round(latest, 4),
            "cpu_seconds": round(cpu, 3),
            "rid": [self.records[i].rid.hex() for i in acked],
            "pub_wall": [pub_wall[i] for i in acked],
            "pub_mono": [pub_mono[i] for i in acked],
            "ack_mono": [ack_mono[i] for i in acked],
        }

    def close(self) -> None:
        for uplink in self.uplinks:
            uplink.stop()


def _child() -> None:
    """A worker's side of the JSON-lines protocol: order in, "ready" out, "go" in, result out."""
    order = json.loads(sys.stdin.readline())
    worker = _Worker(order["host"], order["port"], [Identity(*d) for d in order["devices"]], order["visits"],
                     order["seconds"], SealingKey.of(order["alg"], bytes.fromhex(order["authority"])),
                     order["version"], order["seed"], order["answer_timeout_s"])
    try:
        print(json.dumps({"ready": worker.prepare()}), flush=True)
        go = json.loads(sys.stdin.readline())
        print(json.dumps(worker.run(go["start_mono"])), flush=True)
    finally:
        worker.close()


# -- the fleet: the workers, from the parent ---------------------------------------------------------------------


@dataclass
class Published:
    """Every acknowledged visit of a fleet run: rid → (wall publish time, monotonic publish time, PUBACK time)."""

    times: dict[bytes, tuple[float, float, float]]
    summary: dict


class Fleet:
    """`devices` scanners offering `rate` visits/s for `seconds` to the broker at host:port."""

    def __init__(self, host: str, port: int, devices: int, rate: float, seconds: float,
                 authority: SealingKey, devices_per_worker: int = DEVICES_PER_WORKER, seed: int = 0,
                 answer_timeout_s: float | None = None, version: int = V2):
        """`answer_timeout_s`: how long a worker waits for its last PUBACKs after its last publish (default
        30 s + `seconds`; a backlog published at once needs as long as the broker takes to queue it)."""
        if devices < 1 or rate <= 0 or seconds <= 0 or not 1 <= devices_per_worker <= MAX_DEVICES_PER_WORKER:
            raise QrgateError(f"fleet: devices, rate and seconds must be positive, devices per worker "
                              f"1 to {MAX_DEVICES_PER_WORKER} (paho's select() loop)")
        self.host, self.port, self.devices, self.rate, self.seconds = host, port, devices, rate, seconds
        self.authority, self.version, self.seed = authority, version, seed
        self.answer_timeout_s = 30 + seconds if answer_timeout_s is None else answer_timeout_s
        self.workers = math.ceil(devices / devices_per_worker)
        self._procs: list[subprocess.Popen] = []
        self.ready: list[dict] = []

    def start(self) -> None:
        """Start the workers and wait until each has sealed its visits and connected its devices."""
        everyone = identities(self.devices)
        sizes = shares(self.devices, self.workers)
        visits = shares(round(self.rate * self.seconds), self.workers)  # the rate split as the devices are
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
        first = 0
        for w, (size, count) in enumerate(zip(sizes, visits)):
            proc = subprocess.Popen([sys.executable, "-c", "from custodian.fleet import _child; _child()"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            self._procs.append(proc)
            mine = [[d.venue, d.device] for d in everyone[first:first + size]]
            first += size
            self._send(proc, {"host": self.host, "port": self.port, "devices": mine, "visits": count,
                              "seconds": self.seconds, "alg": self.authority.suite.alg,
                              "authority": self.authority.raw.hex(), "version": self.version, "seed": self.seed * 1000 + w,
                              "answer_timeout_s": self.answer_timeout_s})
        self.ready = [self._receive(p)["ready"] for p in self._procs]

    def go(self) -> float:
        """Tell every worker one start time, a moment from now; returns it (monotonic)."""
        start = time.monotonic() + START_DELAY_S
        for proc in self._procs:
            self._send(proc, {"start_mono": start})
        return start

    def join(self) -> Published:
        """Each worker's report, merged."""
        reports = [self._receive(p) for p in self._procs]
        for proc in self._procs:
            proc.wait(timeout=30)
        times: dict[bytes, tuple[float, float, float]] = {}
        for r in reports:
            times.update((bytes.fromhex(rid), t) for rid, *t in
                         zip(r.pop("rid"), r.pop("pub_wall"), r.pop("pub_mono"), r.pop("ack_mono")))
        summary = {
            "devices_connected": sum(r["devices"] for r in reports),
            "workers": len(reports),
            "offered_visits": sum(r["planned"] for r in reports),
            "published": sum(r["published"] for r in reports),
            "acked": len(times),
            "not_taken": sum(r["not_taken"] for r in reports),
            "refused": sum(r["refused"] for r in reports),
            "answered_twice": sum(r["answered_twice"] for r in reports),
            "publish_seconds": max(r["publish_seconds"] for r in reports),
            "max_behind_schedule_s": max(r["max_behind_schedule_s"] for r in reports),
            "simulator_cpu_seconds": round(sum(r["cpu_seconds"] for r in reports), 3),
            "seal_seconds": max(x["seal_seconds"] for x in self.ready),
            "connect_seconds": max(x["connect_seconds"] for x in self.ready),
            "sealing": "every record sealed before the timed phase (the device's cost, not the custodian's)",
        }
        return Published(times, summary)

    def close(self) -> None:
        """Stop any worker still running (after a failure: a finished one has exited)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    @staticmethod
    def _send(proc: subprocess.Popen, message: dict) -> None:
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()

    @staticmethod
    def _receive(proc: subprocess.Popen) -> dict:
        line = proc.stdout.readline()
        if not line:
            raise QrgateError(f"fleet: a worker exited (status {proc.wait()}) without reporting")
        return json.loads(line)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(host: str, port: int, devices: int, rate: float, seconds: float,
        devices_per_worker: int = DEVICES_PER_WORKER, seed: int = 0, records: str = "v2-hybrid") -> Published:
    """One fleet run against a broker, sealed to a throwaway authority key."""
    key, version = throwaway_key(records)
    with Fleet(host, port, devices, rate, seconds, key, devices_per_worker, seed, version=version) as fleet:
        fleet.start()
        fleet.go()
        return fleet.join()


# -- `qrgate custodian fleet` ------------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> int:
    published = run(args.host, args.port, args.devices, args.rate, args.seconds,
                    args.devices_per_worker or DEVICES_PER_WORKER, args.seed, args.records)
    print(json.dumps(published.summary), flush=True)
    ok = published.summary["acked"] == published.summary["offered_visits"]
    return 0 if ok else 1
