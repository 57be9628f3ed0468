"""The custodian's broker as shipped (custodian/broker/), on a real Mosquitto with mutual TLS: who may do what.

A device's certificate cannot take the ingest's session, whatever client id it
asks for, nor join the ingests' shared subscription; the ingest loses nothing
either way. Each test renders the shipped files (ShippedBroker) and adds its
device with the shipped add-device.sh.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from custodian_kit import SHIPPED, ShippedBroker, connected_devices, identity, new_authority, running_ingest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from custodian.ingest import share_filter
from custodian.storage import SqliteStorage
from lab.broker import Mosquitto
from firmware.uplink import topics
from firmware.uplink.mqtt import Tls
from tests.conftest import wait_until
from tests.pki import Pki

INGEST = "custodian:ingest-1"
DEVICE = "cafe-1:door-1"  # the hostile one: a device whose certificate and key are in other hands
DOOR = ("cafe-1", "door-2")  # an honest one


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def shipped(tmp_path, pki):
    with ShippedBroker(tmp_path / "broker", pki) as broker:
        broker.add_device(DEVICE)
        broker.add_device(":".join(DOOR))
        yield broker


class Client:
    """A bare MQTT v5 client with a certificate: what it was granted, what it was given."""

    def __init__(self, port: int, tls: Tls, client_id: str, subscribe: list[str] = ()):
        self.messages: list[str] = []
        self.granted: list[str] = []
        self._subacked = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key),
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_message = lambda client, userdata, message: self.messages.append(message.topic)
        c.on_subscribe = self._on_subscribe
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=False, properties=properties)
        c.loop_start()
        self.client = c
        if subscribe:
            c.subscribe([(f, SubscribeOptions(qos=1)) for f in subscribe])
            # The SUBACK comes after the broker has handed over whatever was queued for this session.
            assert self._subacked.wait(10), "no SUBACK"

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.granted = [str(rc) for rc in reason_codes]
        self._subacked.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _device_tls(shipped: ShippedBroker):
    return lambda venue, device: shipped.identity(f"{venue}:{device}")


def test_a_device_certificate_asking_for_the_ingests_client_id_gets_its_own_session_and_nothing_is_lost(
        tmp_path, shipped):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    ingest_tls = shipped.identity(INGEST)
    records = [authority.visit(*DOOR)[1] for _ in range(10)]
    with running_ingest(shipped.port, storage, client_id=INGEST, tls=ingest_tls):
        pass  # subscribed, then gone: its session keeps what comes meanwhile
    with connected_devices(shipped.port, DOOR, tls=_device_tls(shipped)) as (door,):
        for r in records[:5]:
            door.publish(r)
        wait_until(door.all_acked)  # queued in the ingest's session
        impostor = Client(shipped.port, shipped.identity(DEVICE), INGEST, subscribe=[topics.TRUSTLIST])
        try:
            with running_ingest(shipped.port, storage, client_id=INGEST, tls=ingest_tls) as ingest:
                again = Client(shipped.port, shipped.identity(DEVICE), INGEST)  # while the ingest is connected
                for r in records[5:]:
                    door.publish(r)
                wait_until(lambda: ingest.stored == 10)
                assert ingest.connected.is_set() and (ingest.reconnects, ingest.takeovers) == (0, 0)
                again.close()
        finally:
            impostor.close()
    assert impostor.messages == [] and impostor.granted == ["Granted QoS 1"]
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}
    assert f"as {DEVICE} (p5" in shipped.log_tail(10_000)  # the broker named it by its certificate


def test_a_device_certificate_cannot_join_the_ingests_shared_subscription(tmp_path, shipped):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    records = [authority.visit(*DOOR)[1] for _ in range(20)]
    with running_ingest(shipped.port, storage, client_id=INGEST, tls=shipped.identity(INGEST)) as ingest, \
            connected_devices(shipped.port, DOOR, tls=_device_tls(shipped)) as (door,):
        spy = Client(shipped.port, shipped.identity(DEVICE), "spy",
                     subscribe=[share_filter("custodian"), "qrgate/v1/+/+/visits"])
        try:
            for r in records:
                door.publish(r)
            wait_until(lambda: ingest.stored == 20)
        finally:
            spy.close()
    assert spy.granted == ["Not authorized", "Not authorized"] and spy.messages == []
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in records}


def test_a_device_may_publish_only_under_its_own_topic_and_an_unknown_certificate_nothing(tmp_path, shipped):
    authority = new_authority(tmp_path)
    storage = SqliteStorage(tmp_path / "c.db")
    mine, theirs = authority.visit(*DOOR)[1], authority.visit("cafe-1", "door-3")[1]
    refused: list[str] = []

    def note(ok: bool, why: str) -> None:
        refused.append(why)

    with running_ingest(shipped.port, storage, client_id=INGEST, tls=shipped.identity(INGEST)) as ingest, \
            connected_devices(shipped.port, DOOR, ("cafe-1", "door-3"), tls=_device_tls(shipped)) as (door, unknown):
        door.uplink.publish(topics.visits("cafe-1", "door-3"), theirs.wire(), on_ack=note)
        unknown.uplink.publish(topics.visits("cafe-1", "door-3"), theirs.wire(), on_ack=note)  # never added
        door.publish(mine)
        wait_until(lambda: ingest.stored == 1 and len(refused) == 2)
    assert refused == ["Not authorized", "Not authorized"]
    assert [row.rid for row in storage.between("cafe-1", 0, 2**40)] == [mine.rid]


def test_under_an_acl_file_a_device_in_the_shared_group_makes_the_broker_drop_visits(tmp_path, pki):
    """Why the shipped config uses the dynamic-security plugin: Mosquitto 2.0's acl_file grants every SUBSCRIBE
    (security_default.c: 'FIXME - implement ACL subscription strings'), and the member whose turn it is gets
    each message or, if it may not read it, nobody does. If this starts failing, the acl_file is safe again."""
    authority = new_authority(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text(f"user {INGEST}\ntopic read qrgate/v1/+/+/visits\n\n"
                   f"user {DEVICE}\ntopic write qrgate/v1/cafe-1/door-1/#\ntopic read qrgate/v1/trustlist\n\n"
                   "user cafe-1:door-2\ntopic write qrgate/v1/cafe-1/door-2/#\n")
    storage = SqliteStorage(tmp_path / "c.db")
    with Mosquitto(tmp_path / "acl-broker", extra=pki.broker_config(acl) + "use_username_as_clientid true\n") as b:
        with running_ingest(b.port, storage, client_id=INGEST, tls=identity(pki, INGEST)) as ingest, \
                connected_devices(b.port, DOOR, tls=lambda v, d: identity(pki, f"{v}:{d}")) as (door,):
            spy = Client(b.port, identity(pki, DEVICE), "spy", subscribe=[share_filter("custodian")])
            try:
                for _ in range(10):
                    door.publish(authority.visit(*DOOR)[1])
                wait_until(lambda: door.all_acked() and ingest.received == 5)
            finally:
                spy.close()
    assert spy.granted == ["Granted QoS 1"] and spy.messages == [] and storage.count() == 5


@pytest.mark.parametrize("cn", ["custodian:ingest-1", "trust:revocation"])
def test_add_device_refuses_the_venues_the_custodian_and_the_authority_use(cn):
    # qrgate/v1/custodian/<name>/status is an ingest's health (docs/monitoring.md), qrgate/v1/trust/revocation/#
    # the DCC revocation list: no scanner may write there.
    run = subprocess.run([str(SHIPPED / "add-device.sh"), cn], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "MOSQUITTO_CTRL_ARGS": "-h 127.0.0.1 -p 1"}, timeout=30)
    assert run.returncode == 2 and f"the venue {cn.split(':')[0]} is reserved" in run.stderr


# --- the DCC revocation list ---------------------------------------------------------------------------


def test_the_authority_publishes_a_revocation_list_that_devices_take_and_no_one_else_writes_or_reads(
        tmp_path, shipped):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.revocation.feed import RevocationFeed
    from firmware.revocation.hashes import HashType
    from firmware.revocation.store import RevocationStore
    from firmware.uplink.mqtt import MqttUplink
    from lab import revocation

    root = Ed25519PrivateKey.generate()
    rl = revocation.build(root, [revocation.Entry(HashType.UCI, bytes(8), bytes([i]) * 16) for i in range(9)],
                          seq=1, issued_at=int(time.time()))
    [(body_name, body)] = rl.bodies.items()
    tls = shipped.identity("authority:trustlist")
    publisher = revocation.Publisher("127.0.0.1", shipped.port, tls.ca, tls.cert, tls.key, tls=True)
    try:
        assert revocation.publish(rl, publisher) == {"bodies": 1, "cleared": 0}
        assert publisher.retained(topics.REVOCATION) == rl.manifest
    finally:
        publisher.close()
    store = RevocationStore(tmp_path / "state", root.public_key())
    feed = RevocationFeed(store)
    device = MqttUplink("127.0.0.1", shipped.port, client_id=DEVICE, tls=shipped.identity(DEVICE),
                        subscriptions=feed.subscriptions(), max_packet=topics.MAX_PACKET)
    feed.attach(device)
    refused: list[tuple[bool, str]] = []
    ingest = Client(shipped.port, shipped.identity(INGEST), INGEST,
                    subscribe=[topics.REVOCATION, topics.revocation_body(body_name)])
    monitor = Client(shipped.port, shipped.identity("custodian:monitor"), "custodian:monitor",
                     subscribe=["qrgate/v1/trust/revocation/#"])
    device.start()
    try:
        wait_until(lambda: store.current() is not None)
        assert device.publish(topics.REVOCATION, rl.manifest, on_ack=lambda ok, why: refused.append((ok, why)))
        wait_until(lambda: len(refused) == 1)
        # Mosquitto 2.0 drops a client after a refused publish: the device is back once it reconnected.
        wait_until(lambda: device.reconnects == 1 and device.connected.is_set())
        assert device.publish(topics.revocation_body(body_name), body,
                              on_ack=lambda ok, why: refused.append((ok, why)))
        wait_until(lambda: len(refused) == 2)
    finally:
        device.stop()
        ingest.close()
        monitor.close()
    assert store.current().manifest.raw == rl.manifest
    assert refused == [(False, "Not authorized")] * 2
    assert ingest.granted == ["Not authorized", "Not authorized"] and ingest.messages == []
    assert monitor.granted == ["Not authorized"] and monitor.messages == []


# --- anti-passback: the venue topic ------------------------------------------------------------------


class VenueDoor:
    """A device's own uplink (MqttUplink) subscribed to its venue's passback topic as the daemon subscribes."""

    def __init__(self, port: int, tls: Tls, cn: str, topic: str):
        from firmware.uplink.mqtt import MqttUplink, Subscription

        self.heard: list[bytes] = []
        self.granted = threading.Event()
        self.verdicts: list[bool] = []
        self.acks: list[tuple[bool, str]] = []

        def granted(ok: bool) -> None:
            self.verdicts.append(ok)
            self.granted.set()

        self.uplink = MqttUplink("127.0.0.1", port, client_id=cn, tls=tls,
                                 subscriptions={topic: Subscription(self.heard.append, qos=1, no_local=True,
                                                                    on_granted=granted)})
        self.uplink.start()
        assert self.granted.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        assert self.uplink.publish(topic, payload, qos=1, on_ack=lambda ok, why: self.acks.append((ok, why)))

    def close(self) -> None:
        self.uplink.stop()


def test_a_venue_s_doors_share_its_passback_topic_and_no_one_else_reads_or_writes_it(shipped):
    shipped.add_device("cafe-2:door-1")  # another venue
    topic = topics.passback("cafe-1")
    door1 = VenueDoor(shipped.port, shipped.identity(DEVICE), DEVICE, topic)
    door2 = VenueDoor(shipped.port, shipped.identity(":".join(DOOR)), ":".join(DOOR), topic)
    stranger = VenueDoor(shipped.port, shipped.identity("cafe-2:door-1"), "cafe-2:door-1", topic)
    ingest = Client(shipped.port, shipped.identity(INGEST), INGEST, subscribe=[topic, "qrgate/v1/+/+/visits"])
    monitor = Client(shipped.port, shipped.identity("custodian:monitor"), "custodian:monitor",
                     subscribe=[topic, "qrgate/v1/+/+/status"])
    try:
        door1.publish(topic, b"from door-1")
        stranger.publish(topics.passback("cafe-2"), b"its own venue's topic")
        wait_until(lambda: len(stranger.acks) == 1)
        stranger.publish(topic, b"from cafe-2")
        wait_until(lambda: door2.heard == [b"from door-1"] and len(door1.acks) == 1 and len(stranger.acks) == 2)
        door2.publish(topic, b"from door-2")
        wait_until(lambda: door1.heard == [b"from door-2"] and len(door2.acks) == 1)
    finally:
        for c in (door1, door2, stranger, ingest, monitor):
            c.close()
    # (Mosquitto 2.0 drops a client after a refused publish: the stranger reconnected and was refused again.)
    assert door1.verdicts == door2.verdicts == [True] and set(stranger.verdicts) == {False}
    assert door1.acks == door2.acks == [(True, "")]  # and neither heard its own (no_local)
    assert stranger.acks == [(True, ""), (False, "Not authorized")] and stranger.heard == []
    # The custodian's own processes may not read it; and a visits or status filter never matches its 4 levels.
    assert ingest.granted == ["Not authorized", "Granted QoS 1"] and ingest.messages == []
    assert monitor.granted == ["Not authorized", "Granted QoS 1"] and monitor.messages == []
