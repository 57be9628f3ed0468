"""`qrgate custodian backlog`: after an outage, how fast does each store take what waited in the broker?

What an outage of the custodian leaves: every ingest process gone, its
persistent broker session kept, and the fleet's records queued in those
sessions by the broker. One run, on one loopback Mosquitto:

1. For each store named (`--db`, in order), a group of `ingest` processes
   (the real `qrgate custodian ingest`, group `backlog-<i>`) subscribes, and
   is stopped: its sessions stay, as after a crash or a custodian outage.
2. A simulated fleet (custodian.fleet: `devices` connections, the firmware's
   own uplink and sealing) publishes `records` visits at once; each is
   PUBACKed only once the broker has queued it, and the broker queues a copy
   for every group.
3. Each store in turn: its group's processes start again, with the same
   client ids, and drain their share. Timed from the first process's start to
   the last commit (the stored `received_at`), and its CPU over that time.

Records/s is stored / that time. CPU per record is the whole machine's busy
time over it (all cores: the ingest processes, the broker, the database
server, the kernel) divided by the records, and the same split by process
where the run can see it (a database server named by URL runs elsewhere, or
at least outside what this run counts). Lost: acknowledged to a device and not
in the store; duplicates: rows beyond one per rid. The broker keeps the backlog
in memory (`persistence false`; docs/custodian.md gives what that costs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt

from custodian.bench_store import FreshStore
from custodian.fleet import DEVICES_PER_WORKER, Fleet, Published, throwaway_key
from custodian.scale import (BROKER_LOG_TYPES, BROKER_SETTINGS, Ingests, broker_version, cpu_so_far, settle,
                             wait_subscribed)
from firmware.errors import QrgateError
from lab.bench.machine import cpu_model
from lab.broker import Mosquitto

GOAL = {"postgresql_per_s": 10_000.0, "postgresql_over_sqlite": 3.0}
DEFAULT_STORES = ("sqlite", "postgresql")
PUBLISH_RATE_PER_S = 20_000.0  # how fast the simulated fleet offers the backlog (it is not what is timed)


def run(records: int = 1_000_000, devices: int = 1000, stores: list[str] | tuple[str, ...] = DEFAULT_STORES,
        ingest: int = 2, batch: int = 100, folder: Path | None = None, timeout_s: float = 3600.0,
        sealed: str = "v2-hybrid") -> dict:
    """One backlog, drained into each store in turn; the side-by-side result."""
    if records < 1 or devices < 1 or ingest < 1 or not stores:
        raise QrgateError("backlog: records, devices, ingest processes and stores must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="qrgate-backlog-", dir=folder) as tmp_name:
        tmp = Path(tmp_name)
        targets: list[FreshStore] = []
        try:
            for i, spec in enumerate(stores):
                targets.append(FreshStore(spec, tmp, f"backlog-{i}"))
            with Mosquitto(tmp / "broker", extra=BROKER_SETTINGS, log_types=BROKER_LOG_TYPES) as broker:
                groups = [_Group(i, target, broker, ingest, batch, tmp) for i, target in enumerate(targets)]
                for group in groups:
                    group.subscribe_and_leave()
                published = _fill(broker, records, devices, timeout_s, sealed)
                drains = [group.drain(published, timeout_s) for group in groups]
                version = broker_version(broker)
        finally:
            for target in targets:
                target.close()
    return _result(records, devices, ingest, batch, published, drains, version)


class _Group:
    """One store's ingest group: `backlog-<i>`, its processes' client ids fixed so that a restart resumes."""

    def __init__(self, i: int, target: FreshStore, broker: Mosquitto, ingest: int, batch: int, folder: Path):
        self.name, self.target, self.broker, self.folder = f"backlog-{i}", target, broker, folder
        self.client_ids = [f"{self.name}-{k}" for k in range(ingest)]
        self.extra = ("--batch", str(batch))

    def _start(self) -> Ingests:
        return Ingests(self.broker.port, self.target.db, self.client_ids, self.name, self.folder, self.extra)

    def subscribe_and_leave(self) -> None:
        ingests = self._start()
        try:
            wait_subscribed(self.broker, self.client_ids, self.name)
        finally:
            ingests.stop()

    def drain(self, published: Published, timeout_s: float) -> dict:
        before = cpu_so_far(self.broker, self.target)  # the ingest processes are new: none yet
        started = time.time()
        ingests = self._start()
        try:
            settle(self.target, len(published.times), timeout_s)
            after = cpu_so_far(self.broker, self.target, ingests)
        finally:
            summaries = ingests.stop()
        stored = self.target.stored()
        rows, distinct, wire = self.target.totals()
        found = sum(1 for rid in published.times if rid in stored)
        window = max(stored.values(), default=started) - started
        cpu = {"ingest": sum(after["ingest"]), "broker": after["broker"] - before["broker"],
               "whole_machine": after["machine"] - before["machine"]}
        if self.target.server_pids():
            cpu["database"] = after["database"] - before["database"]
        return {
            "store": self.target.version(),
            "store_settings": self.target.settings(),
            "stored": found,
            "seconds": round(window, 2),
            "stored_per_s": round(found / window, 1) if window > 0 else 0.0,
            "cpu_us_per_record": {k: round(v / found * 1e6, 1) for k, v in cpu.items()} if found else None,
            "lost": len(published.times) - found,
            "duplicates_stored": rows - distinct,
            "stored_not_acked": len(stored) - found,
            "mean_wire_bytes": round(wire, 1),
            "ingest_summaries": summaries,
        }


def _fill(broker: Mosquitto, records: int, devices: int, timeout_s: float, sealed: str) -> Published:
    """The fleet's backlog, published and PUBACKed: queued by the broker for every group."""
    seconds = max(1.0, records / PUBLISH_RATE_PER_S)
    key, version = throwaway_key(sealed)
    with Fleet("127.0.0.1", broker.port, devices, records / seconds, seconds, key, DEVICES_PER_WORKER,
               answer_timeout_s=timeout_s, version=version) as fleet:
        fleet.start()
        fleet.go()
        return fleet.join()


def _result(records: int, devices: int, ingest: int, batch: int, published: Published, drains: list[dict],
            mosquitto: str) -> dict:
    fleet = published.summary
    rates = {d["store"].split()[0].lower(): d["stored_per_s"] for d in drains}
    ratio = rates["postgresql"] / rates["sqlite"] if rates.get("sqlite") and "postgresql" in rates else None
    met = {"lost": all(d["lost"] == 0 for d in drains) and fleet["acked"] == fleet["offered_visits"],
           "duplicates": all(d["duplicates_stored"] == 0 for d in drains)}
    if "postgresql" in rates:
        met["postgresql_per_s"] = rates["postgresql"] >= GOAL["postgresql_per_s"]
    if ratio is not None:
        met["postgresql_over_sqlite"] = ratio >= GOAL["postgresql_over_sqlite"]
    return {
        "bench": "custodian backlog",
        "records": records,
        "devices": devices,
        "backlog": {"offered": fleet["offered_visits"], "acked_by_broker": fleet["acked"],
                    "publish_seconds": fleet["publish_seconds"], "seal_seconds": fleet["seal_seconds"]},
        "ingest_processes": ingest,
        "batch": batch,
        "drains": drains,
        "postgresql_over_sqlite": round(ratio, 2) if ratio is not None else None,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version(), "paho_mqtt": paho.mqtt.__version__, "mosquitto": mosquitto},
        "goal": GOAL | {"lost": 0, "duplicates": 0},
        "goals_met": met,
        "goal_met": all(met.values()),
    }


# -- `qrgate custodian backlog` ----------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> int:
    # A SIGTERM unwinds like Ctrl-C, so the broker, the ingests and a throwaway server are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args.records, args.devices, args.db or DEFAULT_STORES, args.ingest, args.batch, args.folder,
                 args.timeout_s, args.sealed)
    print(json.dumps(result), flush=True)
    return 0 if result["goals_met"]["lost"] and result["goals_met"]["duplicates"] else 1
