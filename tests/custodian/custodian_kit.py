"""Shared parts of the custodian's tests: the authority's keys, sealed visits, devices, ingests.

A module, not a conftest.py: without packages, a second conftest would shadow
tests/conftest.py for the suites that import it by name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


from custodian.fleet import seal_visit
from custodian.ingest import Ingest
from lab.broker import Mosquitto
from firmware.store import seal
from firmware.store.records import V2, SealedRecord, Visit
from firmware.store.seal import OpeningKey
from firmware.uplink import topics
from firmware.uplink.mqtt import MqttUplink, Tls
from tests.conftest import wait_until
from tests.pki import Pki
from lab import signers

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "custodian" / "broker"


@dataclass
class Authority:
    dir: Path
    key: OpeningKey

    def visit(self, venue: str = "cafe-1", device: str = "door-1", ts: int | None = None,
              kind: str = "KP1", cti: bytes | str | None = None, version: int = V2) -> tuple[Visit, SealedRecord]:
        """A visit and its record, of version 2 or (an X25519 authority only) of version 1."""
        if cti is None:
            cti = os.urandom(16) if kind == "KP1" else f"URN:UVCI:01:DE:TEST{os.urandom(4).hex().upper()}#X"
        visit = Visit(os.urandom(16), venue, device, int(time.time()) if ts is None else ts,
                      "naver" if kind == "KP1" else "DE", cti, kind)
        return visit, seal_visit(visit, self.key.public_key(), version)


def new_authority(tmp_path: Path, suite: seal.Suite = seal.DEFAULT, name: str = "authority") -> Authority:
    folder = tmp_path / name
    return Authority(folder, signers.new_authority(folder, suite))


class Device:
    """One scanner's uplink: its own MQTT connection and client id, publishing at QoS 1."""

    def __init__(self, port: int, venue: str, device: str, tls: Tls | None = None):
        self.venue, self.device = venue, device
        self.uplink = MqttUplink("127.0.0.1", port, client_id=f"dev-{venue}-{device}", tls=tls)
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
def connected_devices(port: int, *names: tuple[str, str], tls=lambda venue, device: None):
    """`tls(venue, device)` gives each its certificate, or None for none."""
    devs = [Device(port, venue, device, tls(venue, device)) for venue, device in names]
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


def assert_nothing_comes_back(port: int, storage, authority: "Authority", client_id: str = "ingest-a") -> None:
    """The same session, resumed, is given only the one new visit: all before it was acknowledged."""
    with running_ingest(port, storage, client_id=client_id) as again, \
            connected_devices(port, ("cafe-1", "door-1")) as (door,):
        door.publish(authority.visit()[1])
        wait_until(lambda: again.stored == 1)
    assert (again.received, again.rejected) == (1, 0)


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


def identity(pki: Pki, cn: str) -> Tls:
    """A certificate of the custodian CA for `cn` (made once)."""
    cert = pki.folder / f"{cn}.crt"
    if not cert.exists():
        pki.issue(cn)
    return Tls(pki.ca, cert, cert.with_suffix(".key"))


class ShippedBroker(Mosquitto):
    """The custodian's broker as shipped (custodian/broker/): its placeholders rendered to this folder, a free
    loopback port and the test's CA; devices added live with add-device.sh, as an operator adds them."""

    def __init__(self, folder: Path, pki: Pki, conf: str | None = None):
        super().__init__(folder)
        self.pki = pki
        self.conf = (SHIPPED / "mosquitto.conf").read_text() if conf is None else conf

    def identity(self, cn: str) -> Tls:
        return identity(self.pki, cn)

    def config_text(self) -> str:
        plugins = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") +
                         glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
        assert plugins, "Mosquitto's dynamic-security plugin is not installed (Debian's mosquitto has it)"
        self.folder.mkdir(parents=True, exist_ok=True)
        dynsec = self.folder / "dynamic-security.json"
        shutil.copyfile(SHIPPED / "dynamic-security.json", dynsec)
        cert, key = self.pki.issue("broker", server=True)
        text = self.conf
        for name, value in {"PORT": f"{self.port} 127.0.0.1", "CAFILE": self.pki.ca, "CERTFILE": cert,
                            "KEYFILE": key, "PERSISTENCE_DIR": f"{self.folder}/", "DYNSEC_PLUGIN": plugins[0],
                            "DYNSEC_CONFIG": dynsec}.items():
            text = text.replace(f"@{name}@", str(value))
        assert "@" not in text, "a placeholder was left"
        return f"{text}\n{self.local_lines()}"

    def add_device(self, cn: str) -> None:
        admin = self.identity("custodian:admin")
        env = {**os.environ, "MOSQUITTO_CTRL_ARGS": f"-h 127.0.0.1 -p {self.port} --cafile {admin.ca} "
               f"--cert {admin.cert} --key {admin.key}"}
        run = subprocess.run([str(SHIPPED / "add-device.sh"), cn], env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
