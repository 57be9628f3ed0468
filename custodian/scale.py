"""`qrgate custodian scale`: can one small custodian carry a city's scanners? One JSON object per fleet size.

For each fleet size, on a fresh loopback Mosquitto: `ingest` processes of
`qrgate custodian ingest` (the real command, each its own client id, one
shared subscription group, one store: custodian.bench_store), then a simulated fleet
(custodian.fleet: the firmware's own uplink and sealing) offering `rate`
visits a second for `seconds`. Every visit acknowledged to a device is then
looked for in the database, for up to `settle_s`; what is measured:

- stored per second: visits stored / (last commit − first publish);
- publish-to-stored latency: the commit's `received_at` (time.time() in the
  ingest) minus the device's wall-clock publish time; one machine, one clock;
- lost: acknowledged to a device, not in the database after the settle time;
- duplicates: rows beyond one per rid, and PUBACKs that came twice for a visit;
- where the CPU goes: seconds of CPU of the broker, the ingest processes and
  the simulator over the timed phase (first publish to last commit).

The goal, on a 2-core machine: 1,000 devices connected, at least 2,000 visits
stored a second, p99 latency under 1 s, nothing lost or duplicated. The default
offered rate is 2,200/s because the stored rate counts the drain after the
last publish too: offering exactly 2,000 would store a little under 2,000.

The broker is set for the load, as a custodian's would be: queues deep enough
that no QoS 1 message is dropped for a busy subscriber (Mosquitto's default,
1,000 per client, drops them: acknowledged to the device, never stored; it
also keeps handing an offline group member its share, into that member's
persistent session, so a stopped ingest loses visits past the limit),
no Nagle delay on PUBACKs, no $SYS publishing, and a log of connections and
subscriptions only (`log_type all` writes four lines per message relayed).
The log is how the run knows every ingest has subscribed before the fleet
starts: a shared subscription with no member drops what is published to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt

from custodian.fleet import DEVICES_PER_WORKER, Fleet, Published, throwaway_key
from custodian.bench_store import FreshStore
from lab.bench.machine import cpu_model
from lab.broker import Mosquitto
from firmware.errors import QrgateError

GOAL = {"devices_connected": 1000, "stored_per_s": 2000.0, "latency_p99_s": 1.0}
GROUP = "custodian"
SUBSCRIBE_TIMEOUT_S = 30.0
POLL_S = 0.1
BROKER_SETTINGS = (
    "allow_anonymous true\n"
    "max_queued_messages 10000000\n"
    "set_tcp_nodelay true\n"
    "sys_interval 0\n"
)
BROKER_LOG_TYPES = ("error", "warning", "notice", "information", "subscribe")


def run(devices: list[int], rate: float = 2200.0, seconds: float = 20.0, ingest: int = 2,
        folder: Path | None = None, settle_s: float = 15.0, devices_per_worker: int = DEVICES_PER_WORKER,
        store: str = "sqlite", sealed: str = "v2-hybrid"):
    """Yield one result per fleet size, each on a fresh broker, database and ingest processes.

    `store`: `sqlite`, `postgresql` or a postgresql:// URL (custodian.bench_store); `sealed`: what the
    devices send (fleet.RECORDS)."""
    if ingest < 1 or not devices or min(devices) < 1:
        raise QrgateError("scale: fleet sizes and ingest processes must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="qrgate-scale-", dir=folder) as tmp:
        for n in devices:
            yield _one_size(Path(tmp) / f"devices-{n}", n, rate, seconds, ingest, settle_s, devices_per_worker, store,
                            sealed)


def _one_size(tmp: Path, devices: int, rate: float, seconds: float, ingest: int, settle_s: float,
              devices_per_worker: int, store: str, sealed: str) -> dict:
    tmp.mkdir(parents=True)
    with FreshStore(store, tmp, "custodian") as target, \
            Mosquitto(tmp / "broker", extra=BROKER_SETTINGS, log_types=BROKER_LOG_TYPES) as broker:
        ingests = Ingests(broker.port, target.db, [f"{GROUP}-scale-{i}" for i in range(ingest)], GROUP, tmp)
        try:
            wait_subscribed(broker, ingests.client_ids, GROUP)
            key, version = throwaway_key(sealed)
            with Fleet("127.0.0.1", broker.port, devices, rate, seconds, key, devices_per_worker,
                       version=version) as fleet:
                fleet.start()
                cpu0 = cpu_so_far(broker, target, ingests)
                fleet.go()
                published = fleet.join()
            stored = _settle(target, published, settle_s)
            cpu1 = cpu_so_far(broker, target, ingests)
        finally:
            summaries = ingests.stop()
        result = _result(devices, rate, seconds, ingest, published, stored, target, cpu0, cpu1, summaries,
                         broker_version(broker), settle_s)
        return {"sealed": sealed} | result


class Ingests:
    """`qrgate custodian ingest` processes, as an operator runs them: until SIGTERM, a JSON summary at exit."""

    def __init__(self, port: int, db: str | Path, client_ids: list[str], group: str, folder: Path,
                 extra: tuple[str, ...] = ()):
        self.client_ids = client_ids
        self.procs = []
        for cid in self.client_ids:
            with open(folder / f"{cid}.log", "ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "firmware", "custodian", "ingest", "--host", "127.0.0.1",
                     "--port", str(port), "--group", group, "--db", str(db), "--client-id", cid, *extra],
                    stdout=subprocess.PIPE, stderr=log, text=True))

    def stop(self) -> list[dict]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        summaries = []
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = out.strip().splitlines()
            summaries.append(json.loads(lines[-1]) if lines else {"exit_status": proc.returncode})
        return summaries


def wait_subscribed(broker: Mosquitto, client_ids: list[str], group: str) -> None:
    """Until the broker's log shows every ingest's shared subscription (Mosquitto logs `<id> <qos> <filter>`)."""
    pattern = re.compile(rf"^\d+: (\S+) 1 \$share/{re.escape(group)}/qrgate/v1/\+/\+/visits$", re.MULTILINE)
    log = broker.folder / "mosquitto.log"
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
    while not set(client_ids) <= set(pattern.findall(log.read_text(errors="replace") if log.exists() else "")):
        if time.monotonic() > deadline:
            raise QrgateError(f"scale: the ingest processes did not all subscribe within {SUBSCRIBE_TIMEOUT_S:g} s")
        time.sleep(POLL_S)  # polling the broker's log, bounded by the deadline


def settle(target: FreshStore, expected: int, settle_s: float) -> None:
    """Until the store holds `expected` visits, or `settle_s` has passed."""
    deadline = time.monotonic() + settle_s
    while target.count() < expected and time.monotonic() < deadline:
        time.sleep(POLL_S)  # polling the database, bounded by the settle time


def _settle(target: FreshStore, published: Published, settle_s: float) -> dict[bytes, float]:
    """rid → received_at of the stored visits, once every acknowledged one is in or `settle_s` has passed."""
    settle(target, len(published.times), settle_s)
    return target.stored()


def cpu_so_far(broker: Mosquitto, target: FreshStore, ingests: Ingests | None = None) -> dict:
    """CPU seconds so far of the broker, of each ingest process, of the database server when this run
    started one, and of the whole machine (all cores, busy)."""
    return {"broker": proc_cpu_s(broker._proc.pid),
            "ingest": [proc_cpu_s(p.pid) for p in ingests.procs] if ingests is not None else [],
            "database": sum(proc_cpu_s(pid) for pid in target.server_pids()), "machine": machine_busy_s()}


def machine_busy_s() -> float:
    """Non-idle CPU seconds of every core since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_version(broker: Mosquitto) -> str:
    m = re.search(r"mosquitto version (\S+) starting", (broker.folder / "mosquitto.log").read_text(errors="replace"))
    return m.group(1) if m else "unknown"


def _result(devices: int, rate: float, seconds: float, ingest: int, published: Published, stored: dict,
            target: FreshStore, cpu0: dict, cpu1: dict, summaries: list[dict], mosquitto: str,
            settle_s: float) -> dict:
    fleet = published.summary
    acked = published.times
    found = [rid for rid in acked if rid in stored]
    lost = len(acked) - len(found)
    latencies = sorted(stored[rid] - acked[rid][0] for rid in found)
    broker_latencies = sorted(t[2] - t[1] for t in acked.values())
    first_publish = min(t[0] for t in acked.values()) if acked else 0.0
    last_stored = max((stored[rid] for rid in found), default=first_publish)
    window = last_stored - first_publish
    rows, distinct, wire_bytes = target.totals()
    stored_per_s = len(found) / window if window > 0 else 0.0
    p99 = _quantile(latencies, 0.99)
    cpu = {
        "broker": round(cpu1["broker"] - cpu0["broker"], 2),
        "ingest": [round(b - a, 2) for a, b in zip(cpu0["ingest"], cpu1["ingest"])],
        "simulator": fleet["simulator_cpu_seconds"],
    }
    if target.server_pids():
        cpu["database"] = round(cpu1["database"] - cpu0["database"], 2)
    # All cores, busy with anything: beside the three above, the kernel's interrupts and whatever else the
    # machine was running (which then shows in the latencies too).
    cpu["whole_machine"] = round(cpu1["machine"] - cpu0["machine"], 2)
    met = {
        "devices_connected": fleet["devices_connected"] >= GOAL["devices_connected"],
        "stored_per_s": stored_per_s >= GOAL["stored_per_s"],
        "latency_p99_s": p99 is not None and p99 < GOAL["latency_p99_s"],
        "lost": lost == 0 and fleet["acked"] == fleet["offered_visits"],
        "duplicates": rows == distinct and fleet["answered_twice"] == 0,
    }
    return {
        "bench": "custodian scale",
        "devices": devices,
        "devices_connected": fleet["devices_connected"],
        "simulator_processes": fleet["workers"],
        "offered_visits_per_s": rate,
        "seconds": seconds,
        "offered_visits": fleet["offered_visits"],
        "acked_by_broker": fleet["acked"],
        "not_acked": fleet["offered_visits"] - fleet["acked"],
        "stored": len(found),
        "stored_per_s": round(stored_per_s, 1),
        "latency_publish_to_stored_s": {"median": _rounded(_quantile(latencies, 0.5)), "p99": _rounded(p99),
                                        "max": _rounded(latencies[-1] if latencies else None)},
        "latency_publish_to_puback_s": {"median": _rounded(_quantile(broker_latencies, 0.5)),
                                        "p99": _rounded(_quantile(broker_latencies, 0.99))},
        "lost": lost,
        "settle_s": settle_s,
        "duplicates_stored": rows - distinct,
        "acked_twice": fleet["answered_twice"],
        "stored_not_acked": len(stored) - len(found),
        "mean_wire_bytes": round(wire_bytes or 0, 1),
        "simulator_max_behind_schedule_s": fleet["max_behind_schedule_s"],
        "sealing": fleet["sealing"],
        "store": target.version(),
        "store_settings": target.settings(),
        "ingest_processes": ingest,
        "ingest_summaries": summaries,
        "cpu_seconds_timed_phase": cpu,
        "cpu_cores_used": {k: round(sum(v) / window, 2) if isinstance(v, list) else round(v / window, 2)
                           for k, v in cpu.items()} if window > 0 else None,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version(), "paho_mqtt": paho.mqtt.__version__,
                    "mosquitto": mosquitto},
        "goal": GOAL | {"lost": 0, "duplicates": 0},
        "goals_met": met,
        "goal_met": all(met.values()),
    }


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank quantile (no interpolation: the p99 is a latency some visit actually had)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


def _rounded(x: float | None) -> float | None:
    return round(x, 4) if x is not None else None


# -- `qrgate custodian scale` ------------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> int:
    clean = True
    for result in run(args.devices, args.rate, args.seconds, args.ingest, args.folder, args.settle_s,
                      args.devices_per_worker or DEVICES_PER_WORKER, args.db, args.sealed):
        print(json.dumps(result), flush=True)
        clean = clean and result["goals_met"]["lost"] and result["goals_met"]["duplicates"]
    return 0 if clean else 1
