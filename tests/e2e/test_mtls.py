"""Mutual TLS to the custodian's broker: the device's own certificate, the custodian CA, an ACL per device."""

from __future__ import annotations

import json
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import changes, load, running_daemon, store_rows, wait_until, write_frames
from firmware import app
from lab.broker import Mosquitto
from firmware.store.records import SealedRecord
from pki import Pki

DEVICE = "cafe-1:door-1"  # the certificate's CN, <venue>:<device> (qrgate provision): the broker's username for it


class TlsCustodian:
    """The custodian's reader, itself authenticated by a certificate."""

    def __init__(self, port: int, pki: Pki, topics: list[str]):
        cert, key = pki.issue("custodian")
        self.messages: dict[str, list[bytes]] = {}
        self.cond = threading.Condition()
        ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="custodian", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda client, *a: client.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert ready.wait(10), "custodian could not subscribe"

    def _message(self, client, userdata, message) -> None:
        with self.cond:
            self.messages.setdefault(message.topic, []).append(message.payload)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.messages), timeout), self.messages.keys()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


def tls_broker(tmp_path, pki: Pki, device_acl: str) -> Mosquitto:
    acl = tmp_path / "acl"
    acl.write_text(f"user custodian\ntopic read qrgate/v1/#\n\nuser {DEVICE}\n{device_acl}")
    return Mosquitto(tmp_path / "tls-broker", extra=pki.broker_config(acl))


def device_config(tmp_path, world, pki: Pki, port: int, frames, cn: str = DEVICE, **sections) -> str:
    cert, key = pki.issue(cn)
    text = world.config_toml(tmp_path / "state", frames, mqtt_port=port, **sections)
    return text.replace("tls = false\n", f'tls = true\nca = "{pki.ca}"\ncert = "{cert}"\nkey = "{key}"\n')


OWN_TOPICS = "topic write qrgate/v1/cafe-1/door-1/#\ntopic read qrgate/v1/trustlist\n"


def test_a_device_with_its_own_certificate_delivers_under_its_own_topic(tmp_path, world, pins, pki):
    frames = write_frames(tmp_path / "frames", [world.mint(), world.mint()])
    with tls_broker(tmp_path, pki, OWN_TOPICS) as broker:
        custodian = TlsCustodian(broker.port, pki, ["qrgate/v1/+/+/visits"])
        try:
            cfg = load(tmp_path, device_config(tmp_path, world, pki, broker.port, frames,
                                               mqtt="drain_on_exit_s = 20"))
            app.run(cfg, pin_factory=pins)
            custodian.wait_for(lambda m: len(m.get("qrgate/v1/cafe-1/door-1/visits", [])) == 2)
        finally:
            custodian.close()
    records = [SealedRecord.from_wire(p) for p in custodian.messages["qrgate/v1/cafe-1/door-1/visits"]]
    assert {(r.venue, r.device) for r in records} == {("cafe-1", "door-1")}
    assert store_rows(cfg) == 0  # acknowledged, so gone from the card
    assert f"u'{DEVICE}'" in broker.log_tail(400)  # the broker knows the device by its certificate's CN


def test_visits_the_acl_refuses_stay_on_the_card_and_status_says_so(tmp_path, world, pins, pki):
    # The custodian's ACL lets this device write its status but, by mistake, not its visits.
    frames = write_frames(tmp_path / "frames", [world.mint()])
    with tls_broker(tmp_path, pki, "topic write qrgate/v1/cafe-1/door-1/status\n") as broker:
        custodian = TlsCustodian(broker.port, pki, ["qrgate/v1/+/+/status"])
        try:
            cfg = load(tmp_path, device_config(tmp_path, world, pki, broker.port, frames, camera="loop = true",
                                               decoder="hold_s = 60", mqtt="status_interval_s = 1"))
            with running_daemon(cfg, pins):
                def refused(messages) -> bool:
                    reports = [json.loads(p) for p in messages.get("qrgate/v1/cafe-1/door-1/status", [])]
                    return any("publish_refused" in r.get("faults", {}) and r["queue_depth"] == 1 for r in reports)

                custodian.wait_for(refused)
        finally:
            custodian.close()
    assert store_rows(cfg) == 1
    assert changes(pins.log, "GPIO22")[:1] == [1.0]
    assert "Denied PUBLISH" in broker.log_tail(400)


def test_a_device_cannot_write_under_another_devices_topic(tmp_path, world, pins, pki):
    # door-2's certificate on a device configured as door-1: the ACL names the identity, not the config.
    frames = write_frames(tmp_path / "frames", [world.mint()])
    other_acl = "topic write qrgate/v1/cafe-1/door-1/#\n"
    with tls_broker(tmp_path, pki, other_acl) as broker:
        cfg = load(tmp_path, device_config(tmp_path, world, pki, broker.port, frames, cn="cafe-1:door-2",
                                           camera="loop = true", decoder="hold_s = 60"))
        with running_daemon(cfg, pins):
            wait_until(lambda: any("Denied PUBLISH" in line and "/visits" in line
                                   for line in broker.log_tail(400).splitlines()))
    assert store_rows(cfg) == 1


def test_a_client_without_a_certificate_is_turned_away(tmp_path, pki):
    with tls_broker(tmp_path, pki, OWN_TOPICS) as broker:
        connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stranger", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(pki.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda client, userdata, flags, rc, props: None if rc.is_failure else connected.set()
        try:
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
        except (ssl.SSLError, OSError):
            pass  # refused during the handshake
        try:
            wait_until(lambda: "peer did not return a certificate" in broker.log_tail(50))
            assert not connected.is_set()
        finally:
            c.loop_stop()
