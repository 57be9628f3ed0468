"""Devices → Mosquitto → two `qrgate custodian ingest` processes on one SQLite file → investigation → purge.

Everything real: the broker, the processes, the database, the HPKE seal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from custodian_kit import ROOT, IngestProcess, connected_devices, new_authority

from custodian.storage import DAY_S, SqliteStorage
from firmware.store import seal
from firmware.store.records import V1, V2
from tests.conftest import wait_until

DEVICES = (("cafe-1", "door-1"), ("cafe-1", "door-2"), ("gym-2", "door-1"))


def _qrgate(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", *argv], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def _publish_round(devs, authority, now, start, repeat_every=4):
    """Twelve visits per device, five minutes apart, every `repeat_every`-th sent twice (a redelivery)."""
    made = []
    for dev in devs:
        for i in range(12):
            visit, sealed = authority.visit(dev.venue, dev.device, ts=now - 3600 + start + 300 * i)
            made.append(visit)
            dev.publish(sealed)
            if i % repeat_every == 0:
                dev.publish(sealed)
    return made


def _stored_rids(db) -> set[bytes]:
    storage = SqliteStorage(db, create=False)
    try:
        return {row.rid for venue in ("cafe-1", "gym-2") for row in storage.between(venue, 0, 2**40)}
    finally:
        storage.close()


def test_two_ingest_processes_store_every_visit_once_and_the_authority_opens_one_window(
        tmp_path, broker):
    authority = new_authority(tmp_path)
    db = tmp_path / "custodian.db"
    now = int(time.time())
    a = IngestProcess(tmp_path, broker.port, db, "ingest-a")
    b = IngestProcess(tmp_path, broker.port, db, "ingest-b")
    summaries = []
    try:
        a.wait_subscribed()
        b.wait_subscribed()
        with connected_devices(broker.port, *DEVICES) as devs:
            visits = _publish_round(devs, authority, now, start=0)
            wait_until(lambda: all(d.all_acked() for d in devs) and len(_stored_rids(db)) == len(visits))
            # One process goes away for a while: the broker keeps its share in its session.
            summaries.append(b.stop())
            visits += _publish_round(devs, authority, now, start=100)
            wait_until(lambda: all(d.all_acked() for d in devs))
            b = IngestProcess(tmp_path, broker.port, db, "ingest-b")
            b.wait_subscribed(times=2)
            wait_until(lambda: len(_stored_rids(db)) == len(visits))
            published = sum(d.published for d in devs)
    finally:
        summaries += [p.stop() for p in (a, b) if p.proc.poll() is None]
    assert _stored_rids(db) == {v.rid for v in visits}
    assert SqliteStorage(db).count() == len(visits) == 72
    by_id = {}
    for s in summaries:
        assert s["rejected"] == 0
        by_id.setdefault(s["client_id"], []).append(s)
    assert all(s["stored"] > 0 for s in summaries), summaries  # both took part, before and after the restart
    assert sum(s["stored"] for s in summaries) == len(visits)
    assert sum(s["stored"] + s["duplicates"] for s in summaries) == published
    assert set(by_id) == {"ingest-a", "ingest-b"} and len(by_id["ingest-b"]) == 2

    # The investigation: cafe-1, the middle of the hour, nothing else.
    start, end = now - 3000, now - 1500
    audit = tmp_path / "audit.jsonl"
    run = _qrgate("custodian", "investigate", "--db", str(db), "--key", str(authority.dir), "--venue", "cafe-1",
                  "--from", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)), "--to", str(end),
                  "--investigator", "dr-kim", "--case", "KDCA-2027-0042", "--audit-log", str(audit))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    opened, summary = lines[:-1], lines[-1]["summary"]
    expected = {v.rid: v for v in visits if v.venue == "cafe-1" and start <= v.ts <= end}
    assert len(expected) >= 10
    assert {bytes.fromhex(o["rid"]) for o in opened} == set(expected)
    for o in opened:
        v = expected[bytes.fromhex(o["rid"])]
        assert (o["device"], o["ts"], o["kind"], o["iss"], o["cti"]) == (v.device, v.ts, "KP1", "naver", v.cti.hex())
    assert (summary["opened"], summary["failed"]) == (len(expected), {})
    (entry,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (entry["investigator"], entry["case"], entry["venue"], entry["opened"]) == (
        "dr-kim", "KDCA-2027-0042", "cafe-1", len(expected))
    assert {bytes.fromhex(r) for r in entry["rids"]} == set(expected)

    # Retention: records received over 28 days ago go, the rest stay.
    storage = SqliteStorage(db)
    old = [authority.visit(ts=now - 28 * DAY_S - 60)[1] for _ in range(3)]
    storage.add([(r, r.wire()) for r in old], received_at=time.time() - 28 * DAY_S - 60)
    storage.close()
    run = _qrgate("custodian", "purge", "--db", str(db))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"purged": 3, "left": len(visits), "days": 28}
    assert _stored_rids(db) == {v.rid for v in visits}


def test_an_ingest_killed_mid_stream_loses_nothing_once_it_is_back(tmp_path, broker):
    authority = new_authority(tmp_path)
    db = tmp_path / "custodian.db"
    now = int(time.time())
    a = IngestProcess(tmp_path, broker.port, db, "ingest-a")
    b = IngestProcess(tmp_path, broker.port, db, "ingest-b")
    try:
        a.wait_subscribed()
        b.wait_subscribed()
        with connected_devices(broker.port, *DEVICES) as devs:
            visits = _publish_round(devs, authority, now, start=0, repeat_every=100)
            b.kill()  # SIGKILL while messages are on their way to it, some perhaps in hand, uncommitted
            visits += _publish_round(devs, authority, now, start=100, repeat_every=100)
            wait_until(lambda: all(d.all_acked() for d in devs))
            b = IngestProcess(tmp_path, broker.port, db, "ingest-b")
            b.wait_subscribed(times=2)
            wait_until(lambda: len(_stored_rids(db)) == len(visits))
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop()
    assert _stored_rids(db) == {v.rid for v in visits}
    assert SqliteStorage(db).count() == len(visits)


def test_records_of_both_versions_and_both_suites_are_stored_and_each_opens_with_its_key(tmp_path, broker):
    """A fleet in mid-rotation: older devices still send version 1, others version 2 to the old X25519 key, new
    ones version 2 to the hybrid key. The ingest stores them all; the authority, given both keys, opens them all."""
    old = new_authority(tmp_path, seal.X25519, "old")
    new = new_authority(tmp_path, seal.MLKEM768_X25519, "new")
    db = tmp_path / "custodian.db"
    now = int(time.time())
    ingest = IngestProcess(tmp_path, broker.port, db, "ingest-a")
    try:
        ingest.wait_subscribed()
        with connected_devices(broker.port, *DEVICES) as devs:
            made = []
            for i, (dev, (authority, version)) in enumerate(zip(devs, ((old, V1), (new, V2), (old, V2)))):
                for j in range(4):
                    visit, sealed = authority.visit(dev.venue, dev.device, ts=now - 600 + 10 * j,
                                                    kind="DCC" if j % 2 else "KP1", version=version)
                    assert sealed.version == version
                    made.append(visit)
                    dev.publish(sealed)
            wait_until(lambda: all(d.all_acked() for d in devs) and len(_stored_rids(db)) == len(made))
    finally:
        summary = ingest.stop()
    assert summary["rejected"] == 0 and summary["stored"] == len(made) == 12
    run = _qrgate("custodian", "investigate", "--db", str(db), "--key", str(old.dir), "--key", str(new.dir),
                  "--venue", "cafe-1", "--from", str(now - 700), "--to", str(now),
                  "--investigator", "dr-kim", "--case", "C-9", "--audit-log", str(tmp_path / "audit.jsonl"))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[-1]["summary"]["failed"] == {}
    assert sorted((o["device"], o["v"]) for o in lines[:-1]) == [("door-1", 1)] * 4 + [("door-2", 2)] * 4
    assert {bytes.fromhex(o["rid"]) for o in lines[:-1]} == {v.rid for v in made if v.venue == "cafe-1"}
