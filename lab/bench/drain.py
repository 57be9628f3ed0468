"""`qrgate bench drain`: how fast the daemon empties its store to the broker, against a bare paho client.

A store of real sealed records (HPKE to a fresh authority key) is drained to a
loopback Mosquitto at QoS 1 by the daemon's own code, MqttUplink and Drain
wired by the daemon's own builder (uplink.link.connect), timed from the start until every record has its
success PUBACK and has left the store. In the same run, alternately (bare,
drain, bare, ...), a bare paho-mqtt 2.x client (MQTT v5, QoS 1) publishes the
same payloads (the same records' wire bytes, read into memory beforehand) to
the same topic with the same in-flight window, timed until every PUBACK is in.

Both sides meet the same broker (one Mosquitto for the whole run, no
subscriber: a QoS 1 publish is acknowledged all the same) and each run happens
in a fresh process of its own, so neither inherits the other's heap, and the
drain process holds what the daemon's drain holds (store, uplink, drain,
status), which is what its resident memory is measured on. The broker's log
is read at the end: it must show, for every run, one PUBLISH of every record
and a success PUBACK for every publish.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from lab.bench.machine import cpu_model, filesystem, in_fresh_process, kb_to_mb, proc_status_kb, reset_hwm
from lab.broker import Mosquitto
from firmware.clock import ClockSync
from firmware.errors import QrgateError
from firmware.faults import Faults
from firmware.housekeeping import CHECK_S
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.store.records import SealedRecord, Visit
from firmware.store import seal
from firmware.store.seal import OpeningKey
from firmware.trust import TrustStore
from firmware import health
from firmware.uplink import topics
from firmware.config import MqttConfig
from firmware.uplink.link import connect
from firmware.uplink.mqtt import MqttUplink

GOAL_RATIO = 0.8
GOAL_PEAK_RSS_MB = 100.0
VENUE, DEVICE, ISS = "bench", "door-1", "naver"
TTL_S, SKEW_S = 15, 5  # a visit's token window, for the seen hashes admit() keeps
FILL_CHUNK = 10_000
RSS_SAMPLE_S = 0.02
BARE_BACKLOG = 1000  # messages handed to paho ahead of their PUBACKs (paho's mids are 16 bits: < 65535)

# One broker, the same for both sides, set for throughput: mosquitto sends
# max_inflight_messages to v5 clients as their Receive Maximum, so it must stay
# above any window here; queues generous; PUBACKs sent at once (no Nagle);
# no $SYS publishing. broker.py adds `log_type all`: its log, read at the end,
# is the broker's own count of what it received and acknowledged.
BROKER_SETTINGS = (
    "allow_anonymous true\n"
    "max_inflight_messages 1000\n"
    "max_queued_messages 1000000\n"
    "set_tcp_nodelay true\n"
    "sys_interval 0\n"
)


def run(records: int = 100_000, window: int = 16, rounds: int = 1, folder: Path | None = None,
        profile: bool = False, suite: str = seal.DEFAULT.alg) -> dict:
    """Bare, drain, bare, ... (`rounds` drains, each between two bare runs) on one broker, the records of version 2
    sealed with `suite`.

    `profile` adds one more drain, instrumented and so kept out of the figures,
    reporting where its time goes.
    """
    if records < 1 or rounds < 1 or not 1 <= window <= 100:
        raise QrgateError("bench drain: records and rounds must be 1 or more, window 1 to 100")
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-drain-", dir=folder) as tmp:
        return _measure(Path(tmp), records, window, rounds, profile, suite)


def _measure(tmp: Path, records: int, window: int, rounds: int, profile: bool, suite: str) -> dict:
    template = tmp / "filled.db"
    fill = _fill(template, records, seal.BY_ALG[suite])
    topic = topics.visits(VENUE, DEVICE)
    timeout = 60.0 + records * 0.01
    runs: list[dict] = []
    broker = Mosquitto(tmp / "broker", extra=BROKER_SETTINGS).start()
    try:
        broker_pid = broker._proc.pid if broker._proc else None  # for the broker's CPU time, read from /proc
        for r in range(rounds + 1):
            bare = dict(port=broker.port, template=str(template), topic=topic, window=window,
                        client_id=f"bench-bare-{r}", broker_pid=broker_pid, timeout=timeout)
            runs.append(in_fresh_process(__name__, "bare", bare, timeout + 60))
            if r < rounds:
                runs.append(_drain_copy(tmp, template, broker.port, window, f"{r}", broker_pid, timeout, False))
        diagnosis = (_drain_copy(tmp, template, broker.port, window, "profiled", broker_pid, timeout, True)
                     if profile else None)
    finally:
        broker.stop()
    checked = runs + ([diagnosis] if diagnosis else [])
    mosquitto_version = _check_broker_log(broker.folder / "mosquitto.log", checked, records, topic)

    bares = [x for x in runs if x["side"] == "bare"]
    drains = [x for x in runs if x["side"] == "drain"]
    # Each drain against the mean of the bare runs just before and after it.
    ratios = [d["records_per_s"] / statistics.mean((bares[i]["records_per_s"], bares[i + 1]["records_per_s"]))
              for i, d in enumerate(drains)]
    ratio = statistics.median(ratios)
    drain_rate = statistics.median(d["records_per_s"] for d in drains)
    bare_rate = statistics.median(b["records_per_s"] for b in bares)
    peak_rss = max(d["peak_rss_mb"] for d in drains)
    met = {"ratio_drain_to_bare": ratio >= GOAL_RATIO, "peak_rss_mb_while_draining": peak_rss <= GOAL_PEAK_RSS_MB}
    result = {
        "bench": "drain",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosquitto_version,
        "store_filesystem": filesystem(tmp),
        "records": records, "suite": suite,
        "window": window,
        "qos": 1,
        "rounds": rounds,
        "fill": fill,
        "drain_seconds": round(statistics.median(d["seconds"] for d in drains), 3),
        "drain_records_per_s": round(drain_rate),
        "bare_seconds": round(statistics.median(b["seconds"] for b in bares), 3),
        "bare_records_per_s": round(bare_rate),
        "ratio_drain_to_bare": round(ratio, 3),
        "ratio_by_round": [round(x, 3) for x in ratios],
        "peak_rss_mb_while_draining": round(peak_rss, 1),
        "runs": runs,
        "goals": {"ratio_drain_to_bare": GOAL_RATIO, "peak_rss_mb_while_draining": GOAL_PEAK_RSS_MB},
        "goals_met": {**met, "all": all(met.values())},
    }
    if diagnosis is not None:
        result["profile"] = diagnosis
    return result


# -- the store ---------------------------------------------------------------------------------------------------


def _fill(path: Path, records: int, suite: seal.Suite) -> dict:
    """A store of `records` real sealed visits, one a second up to now, exactly as admit() would have left it.

    admit() commits each visit alone, fsynced (synchronous=FULL): 100,000 of those
    would take minutes and measure the disk, not the uplink, and the fill is not
    what is measured. So the rows are written here in bulk transactions, on a
    connection to the store's own file (schema, WAL and device seen-key made by
    SqliteRecordStore itself), with the very statements admit() runs: `records`
    (rid, ts, wire) where wire is SealedRecord.wire() of a real HPKE seal, and
    `seen` (h, expires) where h is the store's own keyed hash of the token id.
    Each admit() deletes the seen hashes already expired at its time, so only
    those admit() would have kept after the last visit are written.
    """
    authority = OpeningKey.generate(suite)
    public = authority.public_key()
    store = SqliteRecordStore(path)
    db = sqlite3.connect(path, isolation_level=None)
    now = int(time.time())
    first = now - records + 1
    seal_s = insert_s = 0.0
    try:
        for start in range(0, records, FILL_CHUNK):
            t0 = time.perf_counter()
            rows, seen = [], []
            for i in range(start, min(records, start + FILL_CHUNK)):
                ts, cti = first + i, os.urandom(16)
                sealed = Visit(os.urandom(16), VENUE, DEVICE, ts, ISS, cti).seal(public)
                rows.append((sealed.rid, sealed.ts, sealed.wire()))
                if ts + TTL_S + SKEW_S >= now:
                    seen.append((store.seen_hash(cti), ts + TTL_S + SKEW_S))
            t1 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO seen (h, expires) VALUES (?, ?)", seen)
            db.executemany("INSERT INTO records (rid, ts, wire) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
            seal_s += t1 - t0
            insert_s += time.perf_counter() - t1
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is the store: copied for every drain
        count = db.execute("SELECT count(*) FROM records").fetchone()[0]
        ends = db.execute("SELECT rid, wire FROM records WHERE rowid IN "
                          "((SELECT min(rowid) FROM records), (SELECT max(rowid) FROM records))").fetchall()
        wire_bytes = db.execute("SELECT sum(length(wire)) FROM records").fetchone()[0]
    finally:
        db.close()
        store.close()
    if count != records:
        raise QrgateError(f"bench: the store holds {count} records, not {records}")
    for rid, wire in ends:  # the records are what the authority can open
        if SealedRecord.from_wire(wire).open(authority)["rid"] != rid:
            raise QrgateError("bench: a filled record does not open to itself")
    return {
        "seconds": round(seal_s + insert_s, 3),
        "seal_seconds": round(seal_s, 3),
        "insert_seconds": round(insert_s, 3),
        "seals_per_s": round(records / seal_s),
        "mean_wire_bytes": round(wire_bytes / records, 1),
        "store_mb": round(path.stat().st_size / 1e6, 1),
    }


def _drain_copy(tmp: Path, template: Path, port: int, window: int, name: str, broker_pid: int | None,
                timeout: float, profile: bool) -> dict:
    """A drain run on a fresh copy of the filled store (each drain empties its copy)."""
    copy = tmp / f"drain-{name}.db"
    shutil.copyfile(template, copy)
    try:
        side = dict(port=port, db_path=str(copy), window=window, name=name, broker_pid=broker_pid, timeout=timeout,
                    profile=profile)
        return in_fresh_process(__name__, "drain", side, timeout + 60)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)


# -- the two sides, each in a process of its own --------------------------------------------------------------


def _child() -> None:
    order = json.loads(sys.stdin.read())
    side = {"bare": _bare_side, "drain": _drain_side}[order["side"]]
    print(json.dumps(side(**order["kwargs"])))


def _bare_side(port: int, template: str, topic: str, window: int, client_id: str, broker_pid: int | None,
               timeout: float) -> dict:
    """A plain paho 2.x client, MQTT v5, QoS 1, in paho's own in-flight window.

    Payloads are handed to paho up to BARE_BACKLOG ahead of their PUBACKs; paho
    keeps `window` of them on the wire and sends the next from its own network
    thread as each PUBACK comes in.
    """
    db = sqlite3.connect(template)
    try:
        payloads = [wire for (wire,) in db.execute("SELECT wire FROM records ORDER BY ts, rowid")]
    finally:
        db.close()
    n = len(payloads)
    connected, done = threading.Event(), threading.Event()
    acks = {"ok": 0, "refused": 0}
    backlog = threading.BoundedSemaphore(BARE_BACKLOG)

    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            connected.set()

    def on_publish(client, userdata, mid, reason_code, properties):
        acks["refused" if reason_code.is_failure else "ok"] += 1
        backlog.release()
        if acks["ok"] + acks["refused"] >= n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.on_connect, client.on_publish = on_connect, on_publish
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise QrgateError("bench: the bare client could not connect")
        clock = _Clock(broker_pid)
        for payload in payloads:
            if not backlog.acquire(timeout=timeout):
                raise QrgateError("bench: the bare client got no PUBACK in time")
            if client.publish(topic, payload, qos=1).rc != mqtt.MQTT_ERR_SUCCESS:
                raise QrgateError("bench: the bare client could not publish")
        finished = done.wait(timeout)
        figures = clock.stop(n)
        if not finished:
            raise QrgateError(f"bench: the bare client had {acks['ok']} of {n} PUBACKs after {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    return {"side": "bare", "client_id": client_id, **figures, "acked": acks["ok"], "refused": acks["refused"],
            "process_peak_rss_mb": kb_to_mb(proc_status_kb("VmHWM"))}


@dataclass
class _CountedStats(Stats):
    """The daemon's Stats, also telling when `target` records have been acknowledged (and so deleted)."""

    target: int = 0
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        super().add(name, n)
        if name == "acked" and self.acked >= self.target:
            self.done.set()


def _drain_side(port: int, db_path: str, window: int, name: str, broker_pid: int | None, timeout: float,
                profile: bool) -> dict:
    """The daemon's drain as app.py wires it (`link.connect`), status and last will included, started and closed
    as the daemon does; and, as its housekeeping does, the store scrubbed every CHECK_S while it drains and once
    more, timed, when it is empty: the scrub's checkpoint is part of what delivering costs
    (SqliteRecordStore.scrub)."""
    db_path = Path(db_path)
    state = db_path.parent / f"state-{name}"
    state.mkdir(exist_ok=True)
    store = SqliteRecordStore(db_path)
    depth = store.depth()[0]
    stats, faults = _CountedStats(target=depth), Faults()
    trust = TrustStore(state, Ed25519PrivateKey.generate().public_key())
    clock_sync = ClockSync(require=False)
    m = MqttConfig(host="127.0.0.1", port=port, tls=False, keepalive_s=30, window=window)
    link = connect(m, VENUE, DEVICE, store=store, client_id=f"qrgate-{VENUE}-{DEVICE}-{name}",
                   snapshot=lambda: health.snapshot(stats, store, faults, trust, clock_sync),
                   stats=stats, faults=faults, on_trust_list=lambda data: None)
    uplink, drain = link.uplink, link.drain
    timers = _instrument(store, uplink) if profile else None
    run: dict = {}

    def spawn(name: str, target) -> threading.Thread:
        """The link's own start, with the figures beginning once the uplink is connected and before the drain."""
        if not uplink.connected.wait(10):
            raise QrgateError("bench: the drain's uplink could not connect")
        # Resident memory while draining: VmHWM is a peak over the process's
        # life, so it is reset (writing 5 to /proc/self/clear_refs, allowed on
        # one's own process since Linux 4.0) once the store, uplink and drain
        # are up, and read again when the store is empty; a thread also samples
        # VmRSS every 20 ms, which stands in if the reset is refused. The
        # larger of the two is reported.
        run.update(rss_before=proc_status_kb("VmRSS"), hwm_reset=reset_hwm(), sampler=_RssSampler(),
                   clock=_Clock(broker_pid))
        run["thread"] = thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        threading.Thread(target=_scrub_every, args=(CHECK_S, store, emptied), name="scrub", daemon=True).start()
        return thread

    emptied = threading.Event()
    try:
        link.start(spawn)
        # Every PUBACK in, the acknowledged records deleted (the drain deletes them in batches), the last scrub.
        finished = stats.done.wait(timeout) and drain.wait_empty(timeout)
        emptied.set()
        store.scrub()
        figures = run["clock"].stop(depth)
        sampled = run["sampler"].stop()
        hwm = proc_status_kb("VmHWM") if run["hwm_reset"] else None
        left = store.depth()[0]
        if not finished:
            raise QrgateError(f"bench: the drain had {stats.acked} of {depth} PUBACKs after {timeout:g} s")
        threads = _thread_cpu({"drain": run["thread"].native_id, "paho": _paho_thread_id(uplink)}) if profile else None
    finally:
        link.close()
        store.close()
    if left:
        raise QrgateError(f"bench: {left} records still in the store after every PUBACK")
    peak = max(x for x in (hwm, sampled) if x is not None)
    result = {
        "side": "drain", "client_id": f"qrgate-{VENUE}-{DEVICE}-{name}", **figures,
        "acked": stats.acked, "refused": stats.refused, "store_left": left,
        "rss_before_drain_mb": kb_to_mb(run["rss_before"]), "peak_rss_mb": kb_to_mb(peak),
        "rss_method": "VmHWM reset by clear_refs, and VmRSS sampled every 20 ms" if run["hwm_reset"]
        else "VmRSS sampled every 20 ms (clear_refs refused)",
    }
    if timers is not None:
        result["where_the_time_goes"] = _explain(timers, threads, figures["seconds"], depth)
    return result


def _scrub_every(period_s: float, store: SqliteRecordStore, stop: threading.Event) -> None:
    while not stop.wait(period_s):
        store.scrub()


# -- measuring helpers --------------------------------------------------------------------------------------------


class _Clock:
    """Wall and CPU time of this process, and the broker's CPU time, over one run."""

    def __init__(self, broker_pid: int | None):
        self.broker_pid = broker_pid
        self.broker0 = _proc_cpu_s(broker_pid)
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self, n: int) -> dict:
        seconds = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        broker1 = _proc_cpu_s(self.broker_pid)
        broker = broker1 - self.broker0 if broker1 is not None and self.broker0 is not None else None
        return {
            "seconds": round(seconds, 3),
            "records_per_s": round(n / seconds, 1),
            "client_cpu_us_per_record": round(cpu / n * 1e6, 1),
            "client_cpu_share": round(cpu / seconds, 3),  # of one core; 1.0 = a core busy throughout
            "broker_cpu_share": round(broker / seconds, 3) if broker is not None else None,
        }


class _RssSampler:
    def __init__(self, interval: float = RSS_SAMPLE_S):
        self.peak = proc_status_kb("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="rss", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._sample()

    def _sample(self) -> None:
        rss = proc_status_kb("VmRSS")
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.peak


def _proc_cpu_s(pid: int | None, task: str = "") -> float | None:
    """utime + stime of a process (or of one of this process's threads) from /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check_broker_log(log: Path, runs: list[dict], records: int, topic: str) -> str:
    """The broker's own account: per run, one PUBLISH of every record and a success PUBACK for every publish."""
    published: dict[str, int] = {}
    acked: dict[str, int] = {}
    failed: dict[str, int] = {}
    version = "unknown"
    pub = re.compile(r"Received PUBLISH from (\S+) \(d\d, q1, r\d, m\d+, '([^']*)'")
    ack = re.compile(r"Sending PUBACK to (\S+) \(m\d+, rc(\d+)\)")
    with open(log, errors="replace") as f:
        for line in f:
            if m := ack.search(line):
                into = acked if int(m.group(2)) < 0x80 else failed
                into[m.group(1)] = into.get(m.group(1), 0) + 1
            elif m := pub.search(line):
                published[m.group(1)] = published.get(m.group(1), 0) + 1
                if m.group(2) == topic:
                    key = m.group(1) + "\0visits"
                    published[key] = published.get(key, 0) + 1
            elif m := re.search(r"mosquitto version (\S+) starting", line):
                version = m.group(1)
    for x in runs:
        cid = x["client_id"]
        visits = published.get(cid + "\0visits", 0)
        x["broker_saw"] = {"visit_publishes": visits, "publishes": published.get(cid, 0),
                           "success_pubacks": acked.get(cid, 0), "refusals": failed.get(cid, 0)}
        if visits != records or acked.get(cid, 0) != published.get(cid, 0) or failed.get(cid):
            raise QrgateError(f"bench: the broker's log disagrees for {cid}: {x['broker_saw']}, {records} records")
    return version


# -- profile: where the drain's time goes -------------------------------------------------------------------------


def _instrument(store: SqliteRecordStore, uplink: MqttUplink) -> dict:
    """Wall time spent in the store's and the uplink's calls, wrapped on these instances only."""
    timers: dict[str, list[float]] = {}

    def wrap(obj, name):
        fn, slot = getattr(obj, name), timers.setdefault(name, [0, 0.0])
        lock = threading.Lock()

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with lock:
                    slot[0] += 1
                    slot[1] += dt

        setattr(obj, name, timed)

    for name in ("delete", "after", "depth", "scrub"):
        wrap(store, name)
    wrap(uplink, "publish")
    return timers


def _paho_thread_id(uplink: MqttUplink) -> int | None:
    client = getattr(uplink, "_client", None)  # paho's network loop thread (profile only; private, so guarded)
    thread = getattr(client, "_thread", None)
    return thread.native_id if thread is not None else None


def _thread_cpu(ids: dict[str, int | None]) -> dict[str, float | None]:
    return {name: _proc_cpu_s(os.getpid(), f"/task/{tid}") if tid else None for name, tid in ids.items()}


def _explain(timers: dict, threads: dict, seconds: float, n: int) -> dict:
    calls = {
        f"store.{name}" if name != "publish" else "uplink.publish": {
            "calls": count,
            "seconds": round(total, 3),
            "share_of_wall": round(total / seconds, 3),
            "us_per_call": round(total / count * 1e6, 1) if count else None,
        }
        for name, (count, total) in timers.items()
    }
    return {
        "note": "an extra drain, instrumented (wrapped calls), not counted in the figures",
        "calls": calls,
        "records_per_read": round(n / calls["store.after"]["calls"], 2) if calls["store.after"]["calls"] else None,
        "thread_cpu_seconds": {k: round(v, 3) if v is not None else None for k, v in threads.items()},
    }
