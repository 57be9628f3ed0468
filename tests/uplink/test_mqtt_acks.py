"""MqttUplink against a real Mosquitto: each publish's PUBACK reaches its caller, refusals by name; the
connection's ups and downs, the reconnect delays, the last will and the final status.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from firmware.backoff import Backoff
from firmware.uplink.mqtt import MqttUplink, Tls, Will
from lab.broker import Mosquitto, free_port
from pki import Pki
from relay import Relay

VISITS, STATUS, TRUSTLIST = "qrgate/v1/cafe-1/door-1/visits", "qrgate/v1/cafe-1/door-1/status", "qrgate/v1/trustlist"


def settle(predicate) -> None:
    """A loopback broker answers in milliseconds; the bound only stops a broken client hanging the run."""
    wait_until(predicate, timeout=10)


class Ceilings(random.Random):
    """The backoff's randomness, drawing the shortest delay and noting each draw's ceiling: the ceiling doubles
    with every failed attempt and starts over after a connection, so the list shows how the delays went."""

    def __init__(self):
        super().__init__(0)
        self.ceilings: list[float] = []
        self.lock = threading.Lock()

    def uniform(self, a: float, b: float) -> float:
        with self.lock:
            self.ceilings.append(b)
        return a

    def seen(self) -> list[float]:
        with self.lock:
            return list(self.ceilings)


class Acks:
    """on_ack callbacks, one per message, remembering what each was told."""

    def __init__(self):
        self.got: dict[int, list[tuple[bool, str]]] = {}
        self.lock = threading.Lock()

    def for_(self, n: int):
        def on_ack(ok: bool, reason: str) -> None:
            with self.lock:
                self.got.setdefault(n, []).append((ok, reason))

        return on_ack

    def count(self) -> int:
        with self.lock:
            return len(self.got)


def uplink(port: int, rng: random.Random | None = None, **kw) -> MqttUplink:
    return MqttUplink("127.0.0.1", port, client_id="qrgate-cafe-1-door-1", backoff=Backoff(0.1, 0.4, rng), **kw)


def reader(port: int, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="custodian", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, message: got.append(message.payload)
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client, got


def test_a_puback_tells_the_caller_success_or_the_brokers_refusal_by_name(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite qrgate/v1/cafe-1/door-1/#\n")  # anonymous clients: door-1's topics only
    with Mosquitto(tmp_path / "broker", extra=f"allow_anonymous true\nacl_file {acl}\n") as broker:
        custodian, got = reader(broker.port, VISITS)
        link = uplink(broker.port, keepalive=7)
        link.start()
        try:
            assert link.connected.wait(10)
            acks = Acks()
            assert link.publish(VISITS, b"record", on_ack=acks.for_(0)) is True
            assert link.publish("qrgate/v1/cafe-1/door-2/visits", b"record", on_ack=acks.for_(1)) is True
            settle(lambda: acks.count() == 2)
            assert acks.got == {0: [(True, "")], 1: [(False, "Not authorized")]}  # reason code 0x87
            settle(lambda: got == [b"record"])  # what was acknowledged arrived whole
            assert "as qrgate-cafe-1-door-1 (p5, c0, k7)" in broker.log_tail(200)  # [mqtt] keepalive_s
        finally:
            link.stop()
            custodian.disconnect()
            custodian.loop_stop()


def test_nothing_is_taken_before_the_connection_is_up():
    link = uplink(free_port())  # never started
    called: list = []
    assert link.publish(VISITS, b"record", on_ack=lambda ok, reason: called.append(ok)) is False
    assert called == []


def test_every_publish_gets_its_own_acknowledgement_once(broker):
    """Hundreds in a row, as the drain hands them over: no callback is lost, called twice or given another's."""
    link = uplink(broker.port)
    link.start()
    try:
        assert link.connected.wait(10)
        acks = Acks()
        for n in range(300):
            assert link.publish(VISITS, b"record %d" % n, on_ack=acks.for_(n))
        assert link.publish(STATUS, b"{}", qos=0, retain=True)  # QoS 0: no PUBACK, nothing to wait for
        settle(lambda: acks.count() == 300)
        assert all(acks.got[n] == [(True, "")] for n in range(300))
    finally:
        link.stop()
    late, got = reader(broker.port, VISITS)
    late.subscribe(STATUS, qos=1)  # after VISITS: its retained message comes after any of VISITS'
    try:
        settle(lambda: got != [])
        assert got == [b"{}"]  # the status is kept for whoever comes later; visits are not
    finally:
        late.disconnect()
        late.loop_stop()


def test_a_puback_read_before_publish_returns_still_reaches_its_caller_once(broker, monkeypatch):
    """paho's network thread may read the PUBACK before publish() has noted the caller's on_ack. Forced here:
    paho's publish returns only once its PUBACK has been handled (paho 2.2 marks a message published after its
    on_publish callback returns); the ack is kept for publish() to hand over, once."""
    link = uplink(broker.port)
    real = link._client.publish

    def publish_then_wait_for_the_puback(*args, **kw):
        info = real(*args, **kw)
        info.wait_for_publish(10)
        return info

    monkeypatch.setattr(link._client, "publish", publish_then_wait_for_the_puback)
    link.start()
    try:
        assert link.connected.wait(10)
        acks = Acks()
        for n in range(3):
            assert link.publish(VISITS, b"record %d" % n, on_ack=acks.for_(n)) is True
            assert acks.got.get(n) == [(True, "")]  # handed over before publish() returned
        assert link.publish(VISITS, b"no one asks", on_ack=None) is True
    finally:
        link.stop()


def test_a_link_lost_between_the_check_and_pahos_publish_takes_nothing(broker, monkeypatch):
    """`connected` was set when publish() looked, and the link dropped before paho's publish: paho answers
    MQTT_ERR_NO_CONN (asked here of a client that never connected), and the caller keeps its record."""
    link = uplink(broker.port)
    never_connected = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    monkeypatch.setattr(link._client, "publish", never_connected.publish)
    link.start()
    try:
        assert link.connected.wait(10)
        called: list = []
        assert link.publish(VISITS, b"record", on_ack=lambda ok, reason: called.append(ok)) is False
        assert called == []
    finally:
        link.stop()


def test_a_message_handler_that_fails_does_not_stop_the_next_messages(broker):
    got: list[bytes] = []

    def on_list(data: bytes) -> None:
        got.append(data)
        if data == b"bad list":
            raise ValueError("not a trust list")

    link = uplink(broker.port, subscriptions={TRUSTLIST: on_list})
    link.start()
    sender, _ = reader(broker.port, "nothing/here")
    try:
        assert link.connected.wait(10)
        settle(lambda: "Received SUBSCRIBE from qrgate-cafe-1-door-1" in broker.log_tail(200))
        sender.publish("qrgate/v1/other", b"not subscribed", qos=1).wait_for_publish(10)
        sender.publish(TRUSTLIST, b"bad list", qos=1).wait_for_publish(10)
        sender.publish(TRUSTLIST, b"list seq 2", qos=1).wait_for_publish(10)
        settle(lambda: got == [b"bad list", b"list seq 2"])
        assert link.connected.is_set()
    finally:
        sender.disconnect()
        sender.loop_stop()
        link.stop()


def test_each_subscription_hears_the_verdict_of_its_own_suback(broker):
    """A refusal comes from an ACL that checks subscriptions (the shipped broker's dynamic security, shown in
    tests/custodian/test_custodian_broker.py); here the SUBACK paho reads is handed over as such a broker sends it."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from firmware.uplink.mqtt import Subscription

    verdicts: dict[str, list[bool]] = {"a": [], "b": []}
    subs = {name: Subscription(lambda data: None, on_granted=verdicts[name].append) for name in verdicts}
    link = uplink(broker.port, subscriptions={f"qrgate/v1/{name}": sub for name, sub in subs.items()})
    link.start()
    try:
        settle(lambda: verdicts == {"a": [True], "b": [True]})
    finally:
        link.stop()
    refused = ReasonCode(PacketTypes.SUBACK, "Not authorized")
    for mid, codes in ((901, [refused]), (902, [])):
        link._suback[mid] = subs["a"]
        link._subscribed(None, None, mid, codes, None)
    link._subscribed(None, None, 903, [refused], None)  # a SUBACK for no subscription of ours: nobody is told
    assert verdicts == {"a": [True, False, False], "b": [True]} and link._suback == {}


def test_stopping_leaves_the_final_status_retained(broker):
    link = uplink(broker.port)
    link.start()
    assert link.connected.wait(10)
    link.stop(final=(STATUS, b'{"state":"offline"}'))
    custodian, got = reader(broker.port, STATUS)  # subscribes after the fact: only a retained message comes
    try:
        settle(lambda: got == [b'{"state":"offline"}'])
    finally:
        custodian.disconnect()
        custodian.loop_stop()


def test_a_cut_link_leaves_the_last_will_retained_and_is_seen_as_down(broker):
    relay = Relay(broker.port)
    states: list[bool] = []
    link = uplink(relay.port, will=Will(STATUS, b'{"state":"offline"}'),
                  on_state=lambda up, why: states.append(up if isinstance(why, str) else None))
    link.start()
    try:
        assert link.connected.wait(10)
        relay.cut()
        settle(lambda: not link.connected.is_set())
        assert states == [True, False]
        custodian, got = reader(broker.port, STATUS)  # after the fact: the will was kept retained
        try:
            settle(lambda: got == [b'{"state":"offline"}'])
        finally:
            custodian.disconnect()
            custodian.loop_stop()
    finally:
        link.stop()
        relay.cut()


def test_a_broker_that_refuses_the_device_leaves_it_down_and_retrying(tmp_path):
    rng = Ceilings()
    states: list[tuple[bool, str]] = []
    with Mosquitto(tmp_path / "broker", extra="allow_anonymous false\n") as broker:
        link = uplink(broker.port, rng, on_state=lambda up, why: states.append((up, why)))
        link.start()
        try:
            settle(lambda: len(states) >= 2)  # refused, and tried again
            assert not link.connected.is_set()
            assert all(up is False and isinstance(why, str) for up, why in states)
            assert link.publish(VISITS, b"record") is False
        finally:
            link.stop()


def test_the_reconnect_delay_grows_while_the_broker_is_away_and_starts_over_once_connected(tmp_path):
    """Backoff(0.1, 0.4): the ceilings of the delays drawn go 0.1, 0.2, 0.4, 0.4… over failed attempts, and
    back to 0.1 once a connection is made; the first delay comes before the first attempt."""
    rng = Ceilings()
    broker = Mosquitto(tmp_path / "broker")
    # The port is held, bound but not listening: refused at once, and no connect from an ephemeral port can land
    # on it (a TCP self-connect to a free port would keep the broker from binding it).
    away = socket.socket()
    away.bind(("127.0.0.1", broker.port))
    connected: list[int] = []
    link = uplink(broker.port, rng, on_connected=lambda: connected.append(len(rng.seen())))
    link.start()
    try:
        settle(lambda: len(rng.seen()) >= 4)
        away.close()
        broker.start()
        assert link.connected.wait(10)
        settle(lambda: len(connected) == 1)
        drawn = rng.seen()
        n = connected[0]
        assert drawn[:4] == [0.1, 0.2, 0.4, 0.4] and drawn[n - 1] == 0.1  # a fresh delay, from the base
        assert link.reconnects == 0 and link.session_present is False
        broker.stop()
        settle(lambda: not link.connected.is_set())
        broker.start()
        settle(lambda: len(connected) == 2 and link.connected.is_set())
        assert link.reconnects == 1
        broker.stop()
        settle(lambda: not link.connected.is_set())
        broker.start()
        settle(lambda: len(connected) == 3 and link.connected.is_set())
        assert link.reconnects == 2  # the figure `qrgate status` shows
    finally:
        away.close()
        link.stop()
        broker.stop()


def test_mutual_tls_connects_with_the_devices_own_certificate(tmp_path):
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("cafe-1:door-1")
    acl = tmp_path / "acl"
    acl.write_text("user cafe-1:door-1\ntopic write qrgate/v1/cafe-1/door-1/#\n")
    with Mosquitto(tmp_path / "broker", extra=pki.broker_config(acl)) as broker:
        link = uplink(broker.port, tls=Tls(pki.ca, cert, key))
        link.start()
        try:
            assert link.connected.wait(10)
            acks = Acks()
            assert link.publish(VISITS, b"record", on_ack=acks.for_(0))
            settle(lambda: acks.got == {0: [(True, "")]})  # the broker knows the device by its certificate
        finally:
            link.stop()


def test_server_only_tls_needs_no_client_certificate(tmp_path):
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("broker", server=True)
    with Mosquitto(tmp_path / "broker", extra=f"cafile {pki.ca}\ncertfile {cert}\nkeyfile {key}\n"
                                              "allow_anonymous true\n") as broker:
        link = uplink(broker.port, tls=Tls(pki.ca))
        link.start()
        try:
            assert link.connected.wait(10)
        finally:
            link.stop()


def test_tls_asks_paho_for_exactly_the_files_given_and_the_systems_cas_without_one(monkeypatch):
    """No file named "None" is ever opened: a missing CA is the system's, a missing key is none (Tls's type)."""
    asked: list[dict] = []
    monkeypatch.setattr(mqtt.Client, "tls_set", lambda self, **kw: asked.append(kw))
    for tls in (Tls(Path("/ca.pem"), Path("/me.pem"), Path("/me.key")), Tls(Path("/ca.pem")), Tls(None)):
        tls.apply(mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5))
    client = ssl.PROTOCOL_TLS_CLIENT  # checks the broker's name and certificate
    assert asked == [{"ca_certs": "/ca.pem", "certfile": "/me.pem", "keyfile": "/me.key", "tls_version": client},
                     {"ca_certs": "/ca.pem", "certfile": None, "keyfile": None, "tls_version": client},
                     {"ca_certs": None, "certfile": None, "keyfile": None, "tls_version": client}]


def test_stopping_does_not_hang_on_a_broker_that_no_longer_answers(broker):
    """The final status waits for its PUBACK a bounded time (2 s), so a daemon's stop always completes."""
    relay = Relay(broker.port)
    link = uplink(relay.port)
    link.start()
    try:
        assert link.connected.wait(10)
        relay.frozen = True
        stopper = threading.Thread(target=link.stop, kwargs={"final": (STATUS, b'{"state":"offline"}')}, daemon=True)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive()
    finally:
        relay.cut()
