"""Shared parts of the custodian's tests: the authority's keys, sealed visits, devices, ingests.

A module, not a conftest.py: without packages, a second conftest would shadow
tests/conftest.py for the suites that import it by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from custodian.ingest import Ingest
from firmware import keys
from firmware.store.records import SealedRecord, Visit
from firmware.uplink import topics
from firmware.uplink.mqtt import MqttUplink
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Authority:
    dir: Path
    key: X25519PrivateKey

    def visit(self, venue: str = "cafe-1", device: str = "door-1", ts: int | None = None,
              kind: str = "KP1", cti: bytes | str | None = None) -> tuple[Visit, SealedRecord]:
        if cti is None:
            cti = os.urandom(16) if kind == "KP1" else f"URN:UVCI:01:DE:TEST{os.urandom(4).hex().upper()}#X"
        visit = Visit(os.urandom(16), venue, device, int(time.time()) if ts is None else ts,
                      "naver" if kind == "KP1" else "DE", cti, kind)
        return visit, visit.seal(self.key.public_key())


def new_authority(tmp_path: Path) -> Authority:
    folder = tmp_path / "authority"
    return Authority(folder, keys.new_authority(folder))


class Device:
    """One scanner's uplink: its own MQTT connection and client id, publishing at QoS 1."""

    def __init__(self, port: int, venue: str, device: str):
        self.venue, self.device = venue, device
        self.uplink = MqttUplink("127.0.0.1", port, client_id=f"dev-{venue}-{device}")
        self.published = self.acked = 0
        self._lock = threading.Lock()

    def publish(self, payload: SealedRecord | bytes, topic: str | None = None) -> None:
        wire = payload.wire() if isinstance(payload, SealedRecord) else payload
        assert self.uplink.publish(topic or topics.visits(self.venue, self.device), wire, on_ack=self._ack)
        self.published += 1

    def _ack(self, ok: bool, reason: str) -> None:
        assert ok, reason
        with self._lock:
            self.acked += 1

    def all_acked(self) -> bool:
        return self.acked == self.published


@contextlib.contextmanager
def connected_devices(port: int, *names: tuple[str, str]):
    devs = [Device(port, venue, device) for venue, device in names]
    for d in devs:
        d.uplink.start()
    try:
        wait_until(lambda: all(d.uplink.connected.is_set() for d in devs))
        yield devs
    finally:
        for d in devs:
            d.uplink.stop()


@contextlib.contextmanager
def running_ingest(port: int, storage, **kw):
    """An in-process Ingest, subscribed before the block runs, stopped after it."""
    ingest = Ingest("127.0.0.1", port, storage=storage, **kw)
    ingest.start()
    try:
        wait_until(ingest.subscribed.is_set)
        yield ingest
    finally:
        ingest.stop()


class IngestProcess:
    """`qrgate custodian ingest` as a real process; its log goes to a file the test can poll."""

    def __init__(self, folder: Path, port: int, db: Path, client_id: str, group: str = "custodian"):
        self.log = folder / f"{client_id}.log"
        self.out = folder / f"{client_id}.out"
        cmd = [sys.executable, "-m", "firmware", "custodian", "ingest", "--host", "127.0.0.1",
               "--port", str(port), "--group", group, "--db", str(db), "--client-id", client_id]
        with open(self.log, "ab") as err, open(self.out, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_subscribed(self, times: int = 1) -> None:
        wait_until(lambda: self.log_text().count(" subscribed to ") >= times or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.log_text()

    def stop(self) -> dict:
        """SIGTERM, then the one JSON summary line it prints."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0, self.log_text()
        return json.loads(self.out.read_text().strip().splitlines()[-1])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
