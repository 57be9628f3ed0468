"""Fleet health end to end, every part real and as shipped: the custodian's broker (custodian/broker/, mutual
TLS, dynamic security), `qrgate run` on a replay camera and mock pins, an ingest publishing its status, the
Debian `prometheus-mqtt-exporter` with monitoring/mqtt-exporter.yaml, and the Debian `prometheus` with
monitoring/prometheus.yml and the shipped rules. What the operator sees is read through Prometheus' HTTP API.

The device's visits are refused by the broker (a deny added to its role), so that what it reports is not
all zeros: one visit waits on its card and one fault is active. Then the daemon is killed (SIGKILL: no
goodbye, so only the broker's last will can say offline) and the ingest stopped, and their alerts go
pending (a rule's first evaluation where its expression holds).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from custodian.storage import SqliteStorage
from lab.broker import free_port
from tests.conftest import wait_until, write_frames
from tests.custodian.custodian_kit import ShippedBroker, running_ingest
from tests.pki import Pki

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
QRGATE = str(Path(sys.executable).parent / "qrgate")
DOOR = {"venue": "cafe-1", "device": "door-1"}
INGEST = {"venue": "custodian", "device": "ingest-1"}


class Process:
    """A program of the test's, its output in a log file; killed at the end whatever happened."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(argv: list[str], log: Path):
    process = Process(argv, log)
    try:
        yield process
    finally:
        process.kill()


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def _get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def value(self, metric: str, labels: dict[str, str]) -> float | None:
        """The one series of `metric` with exactly these venue and device labels, or None."""
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        found = self._get("/api/v1/query", query=f"{metric}{{{selector}}}")["result"]
        assert len(found) <= 1, found
        return float(found[0]["value"][1]) if found else None

    def series(self, metric: str, labels: dict[str, str]) -> dict[str, str]:
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        (found,) = self._get("/api/v1/query", query=f"{metric}{{{selector}}}")["result"]
        return found["metric"]

    def alerts(self) -> list[dict]:
        return self._get("/api/v1/alerts")["alerts"]

    def alert(self, name: str, labels: dict[str, str]) -> str | None:
        """The state (pending, firing) of alert `name` for these labels, or None."""
        states = [a["state"] for a in self.alerts() if a["labels"]["alertname"] == name
                  and all(a["labels"].get(k) == v for k, v in labels.items())]
        return states[0] if states else None


def exporter_config(folder: Path, broker: ShippedBroker) -> Path:
    """The shipped exporter config, its placeholders filled for this broker and the monitor's identity."""
    monitor = broker.identity("custodian:monitor")
    text = (MONITORING / "mqtt-exporter.yaml").read_text()
    for name, value in {"BROKER_HOST": "127.0.0.1", "BROKER_PORT": broker.port, "CAFILE": monitor.ca,
                        "CERTFILE": monitor.cert, "KEYFILE": monitor.key}.items():
        text = text.replace(f"@{name}@", str(value))
    assert "@" not in text.split("metrics:")[0].replace("@…@", ""), "a placeholder was left"
    path = folder / "mqtt-exporter.yaml"
    path.write_text(text)
    return path


def prometheus_config(folder: Path, exporter_port: int) -> Path:
    """The shipped example, scraping and evaluating every second, the exporter on its test port, the shipped
    rules; no Alertmanager (the alerts' states are read from Prometheus itself)."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "qrgate-rules.yml")]
    del config["alerting"]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def device_config(folder: Path, world, broker: ShippedBroker) -> Path:
    """cafe-1:door-1 with its own certificate, one visitor with a printed card in view for good, its status every
    second."""
    tls = broker.identity("cafe-1:door-1")
    frames = write_frames(folder / "frames", [world.mint_card()])
    text = world.config_toml(folder / "state", frames, mqtt_port=broker.port, camera="loop = true",
                             decoder="hold_s = 60", mqtt="status_interval_s = 1.0")
    text = text.replace("tls = false\n", f'tls = true\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n')
    path = folder / "qrgate.toml"
    path.write_text(text)
    return path


def refuse_visits(broker: ShippedBroker, cn: str) -> None:
    """A deny above add-device.sh's allow: the broker refuses the device's visits (PUBACK 0x87)."""
    admin = broker.identity("custodian:admin")
    venue, device = cn.split(":")
    run = subprocess.run(["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(admin.ca),
                          "--cert", str(admin.cert), "--key", str(admin.key), "dynsec", "addRoleACL",
                          f"device:{cn}", "publishClientSend", f"qrgate/v1/{venue}/{device}/visits", "deny", "10"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr


def binary(name: str) -> str:
    path = f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: Debian's {name} package (./dev test installs it)")
    return path


def test_prometheus_sees_the_device_and_the_ingest_then_their_offline_alerts_go_pending(tmp_path, world):
    exporter_port, prometheus_port = free_port(), free_port()
    prometheus = Prometheus(prometheus_port)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(ShippedBroker(tmp_path / "broker", Pki(tmp_path / "pki")))
        broker.add_device("cafe-1:door-1")
        refuse_visits(broker, "cafe-1:door-1")
        storage = SqliteStorage(tmp_path / "visits.db")
        stack.callback(storage.close)
        ingest = stack.enter_context(running_ingest(broker.port, storage, client_id="custodian:ingest-1",
                                                    tls=broker.identity("custodian:ingest-1"),
                                                    status_name="ingest-1"))
        daemon = stack.enter_context(running([QRGATE, "run", "--config", str(device_config(tmp_path, world, broker))],
                                             tmp_path / "daemon.log"))
        exporter = stack.enter_context(running(
            [binary("prometheus-mqtt-exporter"), "-config", str(exporter_config(tmp_path, broker)),
             "-listen-address", "127.0.0.1", "-listen-port", str(exporter_port)], tmp_path / "exporter.log"))
        server = stack.enter_context(running(
            [binary("prometheus"), f"--config.file={prometheus_config(tmp_path, exporter_port)}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            tmp_path / "prometheus.log"))

        def logs() -> str:
            return "\n\n".join(f"{p.log.name}:\n{p.tail()}" for p in (daemon, exporter, server))

        try:
            wait_until(prometheus.ready, timeout=20)
            # Online, its one visit waiting on the card (refused), that refusal its one fault.
            wait_until(lambda: (prometheus.value("qrgate_online", DOOR), prometheus.value("qrgate_queue_depth", DOOR),
                                prometheus.value("qrgate_faults", DOOR)) == (1, 1, 1), timeout=30)
            assert prometheus.value("qrgate_trust_seq", DOOR) == 1  # the world's trust list
            # Nested fields of the status, read by their dotted paths: one card came today, no card too often.
            wait_until(lambda: (prometheus.value("qrgate_card_visits_today", DOOR),
                                prometheus.value("qrgate_cards_over_alert", DOOR)) == (1, 0))
            labels = prometheus.series("qrgate_queue_depth", DOOR)
            assert labels == {"__name__": "qrgate_queue_depth", "job": "qrgate-fleet",
                              "instance": f"127.0.0.1:{exporter_port}", **DOOR}  # topic and sensor dropped
            assert prometheus.value("qrgate_online", INGEST) == 1
            wait_until(lambda: prometheus.alert("QrgateFaultActive", DOOR) == "pending")
            assert prometheus.alert("QrgateDeviceOffline", DOOR) is None

            daemon.kill()  # SIGKILL: the broker's last will says offline
            wait_until(lambda: prometheus.value("qrgate_online", DOOR) == 0)
            wait_until(lambda: prometheus.alert("QrgateDeviceOffline", DOOR) == "pending")
            wait_until(lambda: prometheus.alert("QrgateFaultActive", DOOR) is None)  # judged only while online
            assert prometheus.alert("QrgateIngestOffline", INGEST) is None

            ingest.stop()  # a clean stop: the ingest says offline itself
            wait_until(lambda: prometheus.value("qrgate_online", INGEST) == 0)
            wait_until(lambda: prometheus.alert("QrgateIngestOffline", INGEST) == "pending")
            assert prometheus.alert("QrgateDeviceOffline", INGEST) is None
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
