"""The ingest's own logic, driven as paho's network thread drives it, with no broker: fast enough to mutate.

The ingest's writer thread runs for real, on a real SQLite file; what stands
where paho's client stands records what the ingest asks of the broker (acks,
the subscription). The broker's side of the same promises (a message
acknowledged only after commit comes again after a crash, a resumed session)
is tested on a real Mosquitto in test_custodian_ingest.py and
test_custodian_hostile.py.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import ssl
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cbor2
import paho.mqtt.client as mqtt
import pytest
from custodian_kit import new_authority
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from custodian.ingest import INBOX_BATCHES, INBOX_WAIT_S, MAX_AGE_S, TS_SKEW_S, DeviceBuckets, Ingest, _ThrottledLog, check, \
    share_filter
from custodian.storage import DAY_S, RETENTION_DAYS, SqliteStorage, StorageUnavailable
from firmware.store.records import MAX_WIRE, SealedRecord
from firmware.uplink import topics
from firmware.uplink.mqtt import Tls

TOPIC = topics.visits("cafe-1", "door-1")


def wait_until(predicate, timeout: float = 5.0) -> None:
    """Poll an observable condition every millisecond, up to `timeout`: the writer answers within milliseconds, and
    each mutant that breaks it costs this timeout (tests.conftest's waits 30 s, polling every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


class FakeClient:
    """Where paho's client stands: what the ingest asks of the broker, recorded; no network."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []
        self.acked = threading.Condition()  # notified at each ack: a test waits for acks, not for a clock
        self.subscriptions: list[tuple[str, int]] = []
        self.connect_properties: Properties | None = None
        self.connected_to: tuple[str, int, int] | None = None  # host, port, keepalive
        self.looping = False  # paho's network thread runs
        self.disconnected = False
        self.connects = 0
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.waited_for_publish = 0
        self.may_loop = threading.Event()  # cleared by a test: loop_start waits (the writer holds in its reconnect)
        self.may_loop.set()

    def ack(self, mid: int, qos: int) -> None:
        with self.acked:
            self.acks.append((mid, qos))
            self.acked.notify_all()

    def subscribe(self, topic: str, options) -> None:
        self.subscriptions.append((topic, options.QoS))

    def connect_async(self, host, port, keepalive, clean_start, properties) -> None:
        assert clean_start is False  # the session, and what waits in it, outlives a restart
        self.connected_to, self.connect_properties = (host, port, keepalive), properties
        self.connects += 1

    def loop_start(self) -> None:
        assert self.may_loop.wait(5)
        self.looping = True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool):
        self.published.append((topic, payload, qos, retain))
        return SimpleNamespace(wait_for_publish=lambda timeout: setattr(self, "waited_for_publish", timeout))

    def loop_stop(self) -> None:
        self.looping = False

    def disconnect(self) -> None:
        self.disconnected = True


class Scripted:
    """The real storage behind a script: unavailable for its first `fails` commits, or until `available` is set;
    refusing any batch that holds a `poison` rid, as a constraint would; failing every purge if `purge_fails`.
    The size of each batch it is asked to commit is recorded."""

    def __init__(self, storage: SqliteStorage, fails: int = 0, available: threading.Event | None = None,
                 poison: frozenset[bytes] = frozenset(), purge_fails: bool = False) -> None:
        self.storage, self.fails, self.available, self.poison = storage, fails, available, poison
        self.purge_fails, self.purges = purge_fails, 0
        self.batches: list[int] = []

    def add(self, records, received_at):
        self.batches.append(len(records))
        if len(self.batches) <= self.fails or (self.available is not None and not self.available.is_set()):
            raise StorageUnavailable("the database is locked")
        if any(r.rid in self.poison for r, _ in records):
            raise sqlite3.IntegrityError("CHECK constraint failed")
        return self.storage.add(records, received_at)

    def purge(self, now, days=RETENTION_DAYS):
        self.purges += 1
        if self.purge_fails:
            raise sqlite3.OperationalError("disk I/O error")
        return self.storage.purge(now, days)


def message(mid: int, payload: bytes, topic: str = TOPIC, qos: int = 1) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    m.qos, m.payload = qos, payload
    return m


def connack(ok: bool = True, max_packet: int | None = topics.MAX_PACKET, resumed: bool = False) -> tuple:
    properties = Properties(PacketTypes.CONNACK)
    if max_packet is not None:
        properties.MaximumPacketSize = max_packet
    code = ReasonCode(PacketTypes.CONNACK, "Success" if ok else "Not authorized")
    return ConnectFlags(session_present=resumed), code, properties


def disconnect(code: int = 0x8B) -> tuple:
    return DisconnectFlags(is_disconnect_packet_from_server=True), ReasonCode(PacketTypes.DISCONNECT, identifier=code), None


class Inbox(queue.Queue):
    """The ingest's inbox, but a wait on it also ends when the ingest stops (see `wake`); it notes that a reader
    waited on it, empty, rather than only polling it.

    An idle writer waits on its inbox up to 0.2 s before it looks at its stop again, so each stop of a real
    one costs up to 0.2 s, and each mutant runs some thirty stops. Ending that wait early is what a message
    arriving does, so the writer sees nothing it could not see with the real queue.
    """

    def __init__(self, maxsize: int, stopping: threading.Event) -> None:
        super().__init__(maxsize)
        self.stopping = stopping
        self.waited = threading.Event()

    def get(self, block: bool = True, timeout: float | None = None):
        if block:
            end = None if timeout is None else time.monotonic() + timeout
            with self.not_empty:
                while not self._qsize() and not self.stopping.is_set():
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self.waited.set()
                    self.not_empty.wait(left)
        return super().get(block=False)

    def wake(self) -> None:
        with self.not_empty:
            self.not_empty.notify_all()


def waking(stopping: threading.Event, inbox: Inbox) -> None:
    """The ingest's own stop flag (not a stand-in), made to wake a writer waiting on its Inbox when it is set."""
    set_flag = stopping.set

    def set_and_wake() -> None:
        set_flag()
        inbox.wake()

    stopping.set = set_and_wake  # type: ignore[method-assign]


class Wired:
    """An Ingest on a FakeClient, connected once, its writer running; `deliver` is paho's network thread."""

    def __init__(self, storage, batch: int = 100, connect: bool = True, **kw) -> None:
        self.ingest = Ingest("127.0.0.1", 1, storage=storage, client_id="ingest-a", batch=batch, **kw)
        self.client = FakeClient()
        self.ingest._client = self.client
        self.ingest._inbox = inbox = Inbox(self.ingest._inbox.maxsize, self.ingest._stopping)
        waking(self.ingest._stopping, inbox)
        self.died = threading.Event()
        self.ingest.start(on_death=self._died)
        if connect:
            self.connect()

    def connect(self, **kw) -> None:
        self.ingest._on_connect(self.client, None, *connack(**kw))

    def drop(self, code: int = 0x8B) -> None:
        self.ingest._on_disconnect(self.client, None, *disconnect(code))

    def deliver(self, *messages: mqtt.MQTTMessage) -> None:
        for m in messages:
            self.ingest._on_message(self.client, None, m)

    def _died(self) -> None:
        """The command's stop, here: noted, and any wait for acks told, as no ack is coming."""
        self.died.set()
        with self.client.acked:
            self.client.acked.notify_all()

    def settled(self, n: int) -> None:
        """Wait until n messages are acknowledged (or the writer died)."""
        with self.client.acked:
            self.client.acked.wait_for(lambda: len(self.client.acks) >= n or self.died.is_set(), timeout=5)
        assert len(self.client.acks) >= n and not self.died.is_set()

    def __enter__(self) -> "Wired":
        return self

    def __exit__(self, *exc) -> None:
        self.ingest.stop()


@pytest.fixture
def authority(tmp_path):
    return new_authority(tmp_path)


@pytest.fixture
def storage(tmp_path):
    s = SqliteStorage(tmp_path / "c.db")
    yield s
    s.close()


def records(authority, n: int, **kw) -> list[SealedRecord]:
    return [authority.visit(**kw)[1] for _ in range(n)]


# check: one message's verdict


def test_check_names_what_is_wrong(authority):
    now = 1_800_000_000
    record = authority.visit("cafe-1", "door-1", ts=now)[1]
    assert check(TOPIC, record.wire(), now) == record
    assert check("qrgate/v1/cafe-1/door-2/visits", record.wire(), now) == "topic_mismatch"
    assert check("qrgate/v1/gym-2/door-1/visits", record.wire(), now) == "topic_mismatch"
    for elsewhere in ("qrgate/v2/cafe-1/door-1/visits", "qrgate/v1/cafe-1/door-1/status", "x/v1/cafe-1/door-1/visits",
                      "$share/custodian/qrgate/v1/cafe-1/door-1/visits"):
        assert check(elsewhere, record.wire(), now) == "topic_mismatch", elsewhere
    assert check(TOPIC, b"\xff\x00garbage", now) == "malformed"
    assert check(TOPIC, cbor2.dumps([1, b"short", "cafe-1", "door-1", now, b""]), now) == "malformed"
    assert check(TOPIC, cbor2.dumps([2, b"x" * 16, "cafe-1", "door-1", now, b""]), now) == "malformed"
    assert check(TOPIC, cbor2.dumps([1, b"x" * 16, "cafe-1", "door-1", -1, b""]), now) == "malformed"
    assert check(TOPIC, b"\x00" * (MAX_WIRE + 1), now) == "oversized"


def test_check_reads_no_byte_of_a_payload_larger_than_a_record():
    """A record exactly MAX_WIRE long is read; one byte more is oversized before it is parsed."""
    now = 1_800_000_000
    head = cbor2.dumps([1, b"r" * 16, "cafe-1", "door-1", now, b""])  # its sealed bytes' length takes 1 byte here,
    at_most = cbor2.dumps([1, b"r" * 16, "cafe-1", "door-1", now, b"s" * (MAX_WIRE - len(head) - 2)])  # 3 here
    assert len(at_most) == MAX_WIRE and isinstance(check(TOPIC, at_most, now), SealedRecord)
    assert check(TOPIC, at_most + b"\x00", now) == "oversized"


def test_check_takes_ts_only_from_28_days_before_arrival_to_a_short_skew_after():
    now = 1_800_000_000
    assert MAX_AGE_S == 28 * DAY_S
    for ts, verdict in ((now - 28 * DAY_S, "ok"), (now + TS_SKEW_S, "ok"), (now - 28 * DAY_S - 1, "ts_out_of_range"),
                        (now + TS_SKEW_S + 1, "ts_out_of_range"), (2**63, "ts_out_of_range"),
                        (2**64 - 1, "ts_out_of_range"), (0, "ts_out_of_range")):
        record = SealedRecord(b"r" * 16, "cafe-1", "door-1", ts, b"sealed")
        assert check(TOPIC, record.wire(), now) == (record if verdict == "ok" else verdict), ts


def test_the_shared_subscription_is_the_groups_over_every_devices_visits():
    assert share_filter("national") == "$share/national/qrgate/v1/+/+/visits"


# the device's rate


def test_a_door_draining_28_days_of_backlog_is_never_refused_by_the_default_rate():
    clock = [0.0]
    buckets = DeviceBuckets(clock=lambda: clock[0])
    for i in range(400_000):  # a busy door's 28 days offline, drained at 13,000 a second
        clock[0] = i / 13_000
        assert buckets.take("cafe-1", "door-1"), i
    assert buckets.take("cafe-1", "door-2")  # each device its own bucket


def test_a_device_past_its_rate_is_refused_until_its_bucket_refills_and_full_buckets_are_forgotten():
    clock = [1000.0]
    buckets = DeviceBuckets(rate_per_s=2.0, burst=10, clock=lambda: clock[0])
    assert [buckets.take("cafe-1", "door-1") for _ in range(12)] == [True] * 10 + [False] * 2
    assert buckets.take("cafe-1", "door-2")
    clock[0] += 1.0
    assert [buckets.take("cafe-1", "door-1") for _ in range(3)] == [True, True, False]
    buckets.prune()
    assert len(buckets) == 1  # door-2's bucket is full again a second after its one record; door-1's is empty
    clock[0] += 5.0
    buckets.prune()
    assert len(buckets) == 0


def test_a_bucket_refills_no_higher_than_its_burst():
    clock = [0.0]
    buckets = DeviceBuckets(rate_per_s=1.0, burst=3, clock=lambda: clock[0])
    assert buckets.take("cafe-1", "door-1")
    clock[0] += 1000.0
    assert [buckets.take("cafe-1", "door-1") for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("rate, burst", [(0, 10), (-1.0, 10), (1.0, 0)])
def test_a_rate_must_be_over_0_and_a_burst_1_or_more(rate, burst):
    with pytest.raises(ValueError, match="over 0 and its burst 1 or more"):
        DeviceBuckets(rate_per_s=rate, burst=burst)
    DeviceBuckets(rate_per_s=0.001, burst=1)


# the log


def test_a_flood_logs_one_line_per_period_with_its_count(caplog):
    caplog.set_level(logging.WARNING, logger="custodian")
    log = _ThrottledLog(every_s=3600)
    for _ in range(5):
        log.note("rejected as malformed", TOPIC)
    log.note("rejected as oversized", TOPIC)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"rejected as malformed: 1 message(s) since the last such line, the latest on {TOPIC}",
                     f"rejected as oversized: 1 message(s) since the last such line, the latest on {TOPIC}"]
    caplog.clear()
    log = _ThrottledLog(every_s=0)
    for _ in range(2):
        log.note("rejected as malformed", TOPIC)
    assert [r.getMessage().split(":")[1] for r in caplog.records] == [" 1 message(s) since the last such line, the "
                                                                      "latest on qrgate/v1/cafe-1/door-1/visits"] * 2


def test_the_next_line_counts_what_the_period_held_back(caplog, monkeypatch):
    import custodian.ingest as ingest_module

    clock = [100.0]
    monkeypatch.setattr(ingest_module.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="custodian")
    log = _ThrottledLog(every_s=60)
    for _ in range(4):
        log.note("rejected as malformed", TOPIC)
    clock[0] += 59.9
    log.note("rejected as malformed", TOPIC)
    clock[0] += 0.1
    log.note("rejected as malformed", TOPIC)
    counts = [r.args[1] for r in caplog.records]
    assert counts == [1, 5]


# construction and connection


def test_an_ingest_needs_a_storage_and_a_batch_of_one_or_more(storage):
    with pytest.raises(ValueError, match="needs a storage"):
        Ingest("127.0.0.1", 1883)
    with pytest.raises(ValueError, match="batch must be 1 or more"):
        Ingest("127.0.0.1", 1883, storage=storage, batch=0)
    assert Ingest("127.0.0.1", 1883, storage=storage, batch=1).batch == 1


def test_its_client_id_is_stable_across_restarts_so_its_session_resumes(storage):
    import socket

    assert Ingest("h", 1, storage=storage, group="national").client_id == f"national-{socket.gethostname()}"
    assert Ingest("h", 1, storage=storage, client_id="ingest-7").client_id == "ingest-7"


def test_its_paho_client_keeps_its_id_speaks_mqtt5_hears_the_broker_and_acknowledges_only_when_told(storage):
    """The broker session belongs to the client id (so a restart resumes it), and paho must not acknowledge a
    PUBLISH as it arrives: the ingest does, after the commit. paho keeps both in fields of its own."""
    ingest = Ingest("127.0.0.1", 1, storage=storage, client_id="ingest-7")
    client = ingest._client
    assert client._client_id == b"ingest-7" and client.protocol == mqtt.MQTTv5 and client._manual_ack is True
    assert client._callback_api_version == CallbackAPIVersion.VERSION2  # the callbacks' signatures
    # paho reconnects by itself: after 1 s, backing off to 30 s, so a broker back is heard from within 30 s
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (1, 30)
    assert (client.on_connect, client.on_disconnect, client.on_subscribe, client.on_message) == \
        (ingest._on_connect, ingest._on_disconnect, ingest._on_subscribe, ingest._on_message)


def test_with_tls_it_asks_paho_for_its_ca_and_its_own_certificate_and_key(storage, monkeypatch):
    """What Tls.apply asks of paho is tests/uplink/test_mqtt_acks.py's; here, that the ingest applies its own."""
    asked: list[dict] = []
    monkeypatch.setattr(mqtt.Client, "tls_set", lambda self, **kw: asked.append(kw))
    Ingest("h", 1, storage=storage, tls=Tls(Path("/etc/ca.pem"), Path("/etc/me.pem"), Path("/etc/me.key")))
    Ingest("h", 1, storage=storage)
    assert asked == [{"ca_certs": "/etc/ca.pem", "certfile": "/etc/me.pem", "keyfile": "/etc/me.key",
                      "tls_version": ssl.PROTOCOL_TLS_CLIENT}]


def test_it_connects_with_its_session_its_receive_maximum_and_the_brokers_packet_size(storage):
    with Wired(storage, batch=70, connect=False, session_expiry_s=1234, keepalive=45) as w:
        sent = w.client.connect_properties
        assert (sent.SessionExpiryInterval, sent.ReceiveMaximum, sent.MaximumPacketSize) == \
            (1234, 70, topics.MAX_PACKET)
        assert w.client.connected_to == ("127.0.0.1", 1, 45) and w.client.looping
    assert not w.client.looping and w.client.disconnected
    with Wired(storage, batch=100_000, connect=False) as w:
        assert w.client.connect_properties.ReceiveMaximum == 65535  # MQTT's largest
        # docs/custodian.md: what waits in the session (28 days of a device's records) waits as long
        assert w.client.connect_properties.SessionExpiryInterval == 28 * DAY_S


def test_a_connection_subscribes_the_group_at_qos1_and_counts_reconnects(storage, caplog):
    caplog.set_level(logging.INFO, logger="custodian")
    with Wired(storage, connect=False, group="national") as w:
        assert not w.ingest.connected.is_set()
        w.connect()
        assert w.ingest.connected.is_set() and w.ingest.reconnects == 0
        assert w.client.subscriptions == [("$share/national/qrgate/v1/+/+/visits", 1)]
        assert not w.ingest.subscribed.is_set()  # not before the broker grants it
        w.ingest._on_subscribe(w.client, None, 1, [ReasonCode(PacketTypes.SUBACK, identifier=1)], None)
        assert w.ingest.subscribed.is_set()
        said = [r.getMessage() for r in caplog.records if "subscribed" in r.getMessage()]
        assert len(said) == 1 and "ingest-a" in said[0] and "$share/national/qrgate/v1/+/+/visits" in said[0]
        w.drop()
        assert not w.ingest.connected.is_set() and not w.ingest.subscribed.is_set()
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(said) == 1 and all(part in said[0] for part in ("ingest-a", "disconnected", "Server shutting down",
                                                                     "reconnecting"))
        w.connect()
        w.connect(resumed=True)
        assert w.ingest.reconnects == 2 and w.ingest.summary()["reconnects"] == 2
        assert len(w.client.subscriptions) == 3
    # whether what waited in the broker session comes now: the operator's first question after an outage
    said = [r.getMessage() for r in caplog.records if " connected (" in r.getMessage()]
    assert len(said) == 3 and all("ingest-a" in line for line in said)
    assert ["session resumed" in line for line in said] == [False, False, True]
    assert ["new session" in line for line in said] == [True, True, False]


def test_a_refused_connection_or_subscription_is_named_and_nothing_is_subscribed(storage, caplog):
    caplog.set_level(logging.INFO, logger="custodian")
    with Wired(storage, connect=False) as w:
        w.connect(ok=False)
        assert not w.ingest.connected.is_set() and w.client.subscriptions == []
        assert "broker refused ingest ingest-a: Not authorized" in caplog.text
        w.connect()
        assert w.ingest.reconnects == 0  # the refusal was no connection
        w.ingest._on_subscribe(w.client, None, 1, [ReasonCode(PacketTypes.SUBACK, identifier=0x87)], None)
        assert not w.ingest.subscribed.is_set()
        assert "broker refused the subscription $share/custodian/qrgate/v1/+/+/visits: Not authorized" in caplog.text


@pytest.mark.parametrize("admits, named", [(None, True), (topics.MAX_PACKET + 1, True), (topics.MAX_PACKET, False),
                                           (1024, False)])
def test_a_broker_admitting_larger_packets_than_the_ingest_takes_is_named(storage, caplog, admits, named):
    caplog.set_level(logging.WARNING, logger="custodian")
    with Wired(storage, connect=False) as w:
        w.connect(max_packet=admits)
    said = [r.getMessage() for r in caplog.records if "max_packet_size" in r.getMessage()]
    assert bool(said) == named
    if said:
        assert f"the broker admits packets of {f'up to {admits} bytes' if admits else 'any size'}, larger than " \
               f"the {topics.MAX_PACKET} bytes this ingest takes" in said[0]
        assert f"set max_packet_size {topics.MAX_PACKET} in mosquitto.conf" in said[0]
        assert "custodian/broker/mosquitto.conf" in said[0]  # the shipped one, which does


def test_a_session_taken_over_is_counted_and_an_alarm(storage, caplog):
    caplog.set_level(logging.INFO, logger="custodian")
    with Wired(storage) as w:
        w.drop(0x8E)
        w.drop(0x8B)
        w.connect()
        w.drop(0x8E)
        assert w.ingest.takeovers == 2 and w.ingest.summary()["takeovers"] == 2
    alarms = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(alarms) == 2 and all("SESSION TAKEN OVER" in a and "ingest-a" in a for a in alarms)


def test_a_disconnect_while_stopping_is_no_warning(storage, caplog):
    w = Wired(storage)
    w.ingest.stop()
    caplog.set_level(logging.WARNING, logger="custodian")
    caplog.clear()
    w.drop()
    assert caplog.records == [] and w.client.disconnected


# the network thread's side


def test_qos0_is_rejected_as_it_arrives_and_never_queued(storage, authority, caplog):
    caplog.set_level(logging.WARNING, logger="custodian")
    with Wired(storage, connect=False) as w:
        w.deliver(message(0, authority.visit()[1].wire(), qos=0))
        assert w.ingest._inbox.qsize() == 0
        assert (w.ingest.received, w.ingest.rejected_by_reason, w.ingest.rejected) == (1, {"qos0": 1}, 1)
        assert w.ingest.summary()["rejected_by_reason"] == {"qos0": 1}
    assert f"rejected as qos0: 1 message(s) since the last such line, the latest on {TOPIC}" in caplog.text


def test_a_full_inbox_drops_unacknowledged_once_the_network_thread_has_waited_its_moment(storage, caplog):
    caplog.set_level(logging.WARNING, logger="custodian")
    ingest = Ingest("127.0.0.1", 1, storage=storage, batch=2, inbox_wait_s=0.01)  # no writer drains its inbox
    bound = INBOX_BATCHES * 2
    flood = [message(i, b"x") for i in range(1, bound + 6)] + [message(0, b"x", qos=0) for _ in range(3)]
    network = threading.Thread(target=lambda: [ingest._on_message(None, None, m) for m in flood], daemon=True)
    network.start()
    network.join(5)
    assert not network.is_alive(), "the network thread blocked on the inbox"
    assert (ingest._inbox.qsize(), ingest.inbox_full, ingest.received) == (bound, 5, bound + 8)
    assert ingest.summary()["dropped_inbox_full"] == 5 and ingest.rejected_by_reason == {"qos0": 3}
    assert f"dropped unacknowledged, the inbox is full: 1 message(s) since the last such line, the latest on {TOPIC}" \
        in caplog.text


def test_a_full_inbox_holds_the_network_thread_until_the_writer_makes_room(storage, authority):
    """A broker sending past Receive Maximum (Mosquitto 2.0.11 with a backlog) is held back, not dropped from."""
    assert Ingest("127.0.0.1", 1, storage=storage).inbox_wait_s == INBOX_WAIT_S == 1.0
    sent = records(authority, 30)
    with Wired(storage, batch=2, inbox_wait_s=5.0) as w:
        w.deliver(*(message(i + 1, r.wire()) for i, r in enumerate(sent)))  # 30 into an inbox of 8, at once
        w.settled(30)
    assert (w.ingest.inbox_full, w.client.connects, storage.count()) == (0, 1, 30)


def test_what_a_full_inbox_dropped_is_fetched_again_on_a_new_connection(storage, authority, caplog):
    """Dropped unacknowledged, it waits in the broker's session: only a reconnect brings it again, made once all
    the inbox held is committed and acknowledged on the connection it came on."""
    available = threading.Event()
    sent = records(authority, 8)
    scripted = Scripted(storage, available=available)
    with Wired(scripted, batch=1, retry_s=0.001, inbox_wait_s=0) as w:
        w.deliver(message(1, sent[0].wire()))
        wait_until(lambda: scripted.batches)  # the writer holds the first, retrying
        w.deliver(*(message(i + 2, r.wire()) for i, r in enumerate(sent[1:])))  # 4 in the inbox, 3 dropped
        assert w.ingest.inbox_full == 3 and w.client.connects == 1 and not w.client.disconnected
        w.client.may_loop.clear()
        available.set()
        wait_until(lambda: w.client.connects == 2)  # the writer waits in loop_start
        assert w.client.acks == [(i, 1) for i in range(1, 6)] and storage.count() == 5
        w.deliver(message(6, sent[5].wire()))  # a late one on the old connection
        w.drop(0)  # paho's on_disconnect, before its loop stops: so the late one's ack is not sent
        w.client.may_loop.set()
        wait_until(lambda: w.client.looping and storage.count() == 6)
        assert w.client.disconnected and w.client.connect_properties.ReceiveMaximum == 1
        w.connect(resumed=True)  # the broker sends again all it has no ack for
        for k, r in enumerate(sent[5:]):  # as fast as the writer takes them: the inbox never fills again
            w.deliver(message(k + 1, r.wire()))
            w.settled(k + 6)
    assert w.client.acks[5:] == [(1, 1), (2, 1), (3, 1)]
    assert storage.count() == 8 and w.ingest.stored == 8 and w.ingest.duplicates == 1
    assert w.client.connects == 2  # one reconnect for what was dropped, not one per message
    assert "ingest ingest-a: reconnecting, so that the broker sends again what the full inbox dropped" in caplog.text


def test_an_ingest_with_a_status_name_says_online_and_offline_retained_and_its_will_says_offline(storage):
    """The fleet's monitoring reads it as a scanner's (docs/monitoring.md): QoS 1, retained, under `custodian`."""
    topic = "qrgate/v1/custodian/ingest-1/status"
    ingest = Ingest("127.0.0.1", 1, storage=storage, status_name="ingest-1")
    paho = ingest._client
    assert (paho._will_topic, paho._will_payload, paho._will_qos, paho._will_retain) == \
        (topic.encode(), b'{"state":"offline"}', 1, True)
    with Wired(storage, status_name="ingest-1") as w:
        assert w.client.published == [(topic, b'{"state":"online","role":"ingest"}', 1, True)]
    assert w.client.published[1:] == [(topic, b'{"state":"offline"}', 1, True)]  # a clean stop sends no will
    assert w.client.waited_for_publish == 10.0 and w.client.disconnected
    assert not Ingest("127.0.0.1", 1, storage=storage)._client._will


def test_an_ingest_without_a_status_name_publishes_nothing_and_a_lost_one_no_offline(storage):
    with Wired(storage) as w:
        pass
    with Wired(storage, status_name="ingest-1") as lost:
        lost.drop()  # the connection is gone: the broker's copy of the will says offline, not the stop
    assert w.client.published == [] and lost.client.published[1:] == []


def test_the_inbox_keeps_no_more_of_a_payload_than_a_records_size(storage):
    ingest = Ingest("127.0.0.1", 1, storage=storage)
    ingest._on_message(None, None, message(1, bytes(topics.MAX_PACKET - 1024)))
    ingest._on_message(None, None, message(2, bytes(MAX_WIRE)))
    assert [len(ingest._inbox.get_nowait().payload) for _ in range(2)] == [MAX_WIRE + 1, MAX_WIRE]


# the writer


def test_each_record_is_stored_once_and_every_message_acknowledged_after_its_commit(storage, authority):
    batch = records(authority, 5)
    with Wired(storage) as w:
        w.deliver(*[message(i, r.wire()) for i, r in enumerate(batch + batch[:2], start=1)])
        w.settled(7)
        assert sorted(w.client.acks) == [(i, 1) for i in range(1, 8)]
        assert (w.ingest.received, w.ingest.stored, w.ingest.duplicates, w.ingest.rejected) == (7, 5, 2, 0)
        w.deliver(message(8, batch[4].wire()))  # a later batch: its duplicate adds to the count
        w.settled(8)
        summary = w.ingest.summary()
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == {r.rid for r in batch}
    assert summary == {"client_id": "ingest-a", "received": 8, "stored": 5, "duplicates": 3, "rejected": 0,
                       "rejected_by_reason": {}, "dropped_inbox_full": 0, "purged": 0, "reconnects": 0,
                       "takeovers": 0}


def test_rejected_messages_are_counted_by_reason_acknowledged_and_not_stored(storage, authority, caplog):
    caplog.set_level(logging.DEBUG, logger="custodian")
    good = authority.visit()[1]
    elsewhere = authority.visit("gym-2", "door-9")[1]
    old = authority.visit(ts=int(time.time()) - 29 * DAY_S)[1]
    with Wired(storage) as w:
        w.deliver(message(1, b"SECRET-MARKER"), message(2, elsewhere.wire()), message(3, old.wire()),
                  message(4, bytes(MAX_WIRE + 1)), message(5, good.wire()))
        w.settled(5)
        assert sorted(w.client.acks) == [(i, 1) for i in range(1, 6)]
        assert w.ingest.rejected_by_reason == {"malformed": 1, "topic_mismatch": 1, "ts_out_of_range": 1,
                                               "oversized": 1}
        assert (w.ingest.stored, w.ingest.rejected) == (1, 4)
    assert not w.ingest.died.is_set()  # every line it wrote on the way, DEBUG included, was a line, not an error
    assert [row.rid for row in storage.between("cafe-1", 0, 2**62)] == [good.rid]
    assert "SECRET-MARKER" not in caplog.text and elsewhere.rid.hex() not in caplog.text
    for reason in ("malformed", "topic_mismatch", "ts_out_of_range", "oversized"):
        assert f"rejected as {reason}: 1 message(s) since the last such line, the latest on {TOPIC}" in caplog.text


def test_records_past_a_devices_rate_are_rejected_as_rate_limited(storage, authority):
    """Each device its bucket: another door of the venue, or a door of the same name at another venue, is not held
    back by this one's."""
    with Wired(storage, batch=7, batch_window_s=5, device_rate_per_s=0.001, device_burst=3) as w:
        w.deliver(*[message(i, r.wire()) for i, r in enumerate(records(authority, 5), start=1)])
        w.deliver(message(6, authority.visit(device="door-2")[1].wire(), topic=topics.visits("cafe-1", "door-2")))
        w.deliver(message(7, authority.visit(venue="gym-2")[1].wire(), topic=topics.visits("gym-2", "door-1")))
        w.settled(7)
        assert (w.ingest.stored, w.ingest.rejected_by_reason) == (5, {"rate_limited": 2})


def test_an_idle_writer_waits_on_its_inbox_rather_than_spinning(storage):
    """Polling an empty inbox would burn a core of the custodian's for nothing."""
    with Wired(storage) as w:
        assert w.ingest._inbox.waited.wait(5)


def test_a_lone_message_waits_no_longer_than_the_batch_window(storage, authority):
    """`--batch-ms` bounds how long a batch gathers: with 0 ms, five messages one at a time are committed one by
    one at once (here within 4 s, in a few ms each), not after a second's wait apiece."""
    with Wired(storage, batch_window_s=0.0) as w:
        t0 = time.monotonic()
        for mid in range(1, 6):
            w.deliver(message(mid, authority.visit()[1].wire()))
            w.settled(mid)
        assert time.monotonic() - t0 < 4.0


def test_a_batch_holds_at_most_batch_messages_and_waits_its_window_for_more(storage, authority):
    scripted = Scripted(storage)
    with Wired(scripted, batch=3, batch_window_s=0.1) as w:
        w.deliver(*[message(i, r.wire()) for i, r in enumerate(records(authority, 7), start=1)])
        w.settled(7)
        assert sorted(w.client.acks) == [(i, 1) for i in range(1, 8)] and w.ingest.stored == 7
    assert scripted.batches == [3, 3, 1]
    scripted = Scripted(storage)
    first, second = records(authority, 2)
    with Wired(scripted, batch=2, batch_window_s=5) as w:  # the second message ends the window: the batch is full
        w.deliver(message(1, first.wire()))
        wait_until(lambda: w.ingest._inbox.qsize() == 0)  # the writer holds it, and waits its window for more
        w.deliver(message(2, second.wire()))
        w.settled(2)
    assert scripted.batches == [2]  # one commit for both


def test_a_batch_of_only_rejected_messages_stores_nothing_and_counts_only_its_reasons(storage, authority):
    """No record to commit is no commit: nothing counted as stored, duplicate or unstorable."""
    with Wired(storage, batch=2, batch_window_s=5) as w:
        w.deliver(message(1, b"junk"), message(2, bytes(MAX_WIRE + 1)))
        w.settled(2)
        summary = w.ingest.summary()
    assert (summary["stored"], summary["duplicates"], summary["rejected_by_reason"]) == \
        (0, 0, {"malformed": 1, "oversized": 1})
    assert storage.count() == 0


def dropped_while_in_hand(w, scripted, authority) -> None:
    """Message 1 delivered and in the writer's hand, its commit failing, when the connection drops."""
    w.deliver(message(1, authority.visit()[1].wire()))
    wait_until(lambda: scripted.batches)
    w.drop()


def test_a_message_of_a_lost_connection_is_not_acknowledged_even_before_the_next_one(storage, authority):
    """Its ack could only go out on the next connection, where its packet id may mean another message; the broker
    resends it anyway, and its rid keeps it stored once."""
    available = threading.Event()
    scripted = Scripted(storage, available=available)
    with Wired(scripted, retry_s=0.01) as w:
        dropped_while_in_hand(w, scripted, authority)
        available.set()
        wait_until(lambda: w.ingest.stored == 1)
    assert w.client.acks == []  # the writer has ended: no ack is still to come


def test_acks_of_an_older_connection_are_never_sent_on_a_newer_one(storage, authority):
    """After a disconnect the broker resends what was unacknowledged, under packet ids that may mean others now."""
    available = threading.Event()
    scripted = Scripted(storage, available=available)
    with Wired(scripted, retry_s=0.01) as w:
        dropped_while_in_hand(w, scripted, authority)
        w.connect()
        available.set()
        w.deliver(message(2, authority.visit()[1].wire()))
        wait_until(lambda: w.ingest.stored == 2 and w.client.acks)
        assert w.client.acks == [(2, 1)]


def test_a_database_unavailable_is_retried_unacknowledged_until_it_commits(storage, authority, caplog):
    caplog.set_level(logging.ERROR, logger="custodian")
    scripted = Scripted(storage, fails=3)
    with Wired(scripted, batch=2, retry_s=0.01, batch_window_s=5) as w:
        w.deliver(message(1, authority.visit()[1].wire()), message(2, authority.visit()[1].wire()))
        w.settled(2)
        assert scripted.batches == [2] * 4 and w.ingest.stored == 2 and w.ingest.rejected == 0
    assert caplog.text.count("committing 2 records failed (the database is locked); retrying, unacknowledged") == 3


def test_a_stop_during_an_outage_leaves_the_batch_unacknowledged(storage, authority):
    """And what waits in the inbox is tried once, not a batch at a time: each try may wait out the database's
    busy timeout, and the stop would wait for all of them."""
    scripted = Scripted(storage, available=threading.Event())
    w = Wired(scripted, batch=1, retry_s=60)
    w.deliver(message(1, authority.visit()[1].wire()))
    wait_until(lambda: scripted.batches)
    w.deliver(*[message(i, authority.visit()[1].wire()) for i in range(2, 5)])
    w.ingest.stop(timeout=30)
    assert not w.ingest._writer.is_alive()  # the retry's wait ended with the stop, not after 60 s
    assert w.client.acks == [] and w.ingest.stored == 0 and storage.count() == 0
    assert scripted.batches == [1, 1]  # message 1, then message 2 as the stop began


def test_a_record_the_database_refuses_is_rejected_as_unstorable_and_the_rest_stored(storage, authority, caplog):
    batch = records(authority, 5)
    scripted = Scripted(storage, poison={batch[1].rid, batch[3].rid})
    with Wired(scripted, batch=6, batch_window_s=5) as w:
        w.deliver(*[message(i, r.wire()) for i, r in enumerate(batch + batch[:1], start=1)])
        w.settled(6)
        assert sorted(w.client.acks) == [(i, 1) for i in range(1, 7)]
        assert (w.ingest.stored, w.ingest.duplicates, w.ingest.rejected_by_reason) == (3, 1, {"unstorable": 2})
    assert scripted.batches == [6, 1, 1, 1, 1, 1, 1]  # the batch, then record by record
    assert {row.rid for row in storage.between("cafe-1", 0, 2**40)} == \
        {r.rid for i, r in enumerate(batch) if i not in (1, 3)}
    assert "refused a batch of 6 (IntegrityError); storing it record by record" in caplog.text
    assert f"rejected as unstorable (IntegrityError): 1 message(s) since the last such line, the latest on {TOPIC}" \
        in caplog.text


def test_a_stop_while_storing_record_by_record_leaves_the_rest_unacknowledged(storage, authority):
    batch = records(authority, 3)

    class RefusesOneThenGoesAway(Scripted):
        def add(self, records, received_at):
            if len(records) == 1 and records[0][0].rid == batch[2].rid:
                raise StorageUnavailable("gone")
            return super().add(records, received_at)

    w = Wired(RefusesOneThenGoesAway(storage, poison={batch[0].rid}), batch=3, batch_window_s=5, retry_s=60)
    w.deliver(*[message(i, r.wire()) for i, r in enumerate(batch, start=1)])
    wait_until(lambda: storage.count() == 1)  # batch[1] stored; batch[2] waits out its retry
    w.ingest.stop(timeout=30)
    assert not w.ingest._writer.is_alive()
    assert w.client.acks == [] and w.ingest.stored == 0 and w.ingest.rejected == 0


def test_a_stop_gives_up_on_a_writer_stuck_in_the_database_and_leaves_it_no_hold_on_the_process(storage, authority):
    """A storage call that never returns must not keep a SIGTERMed ingest from exiting: the stop waits for the
    writer only up to its timeout, and the writer is a daemon thread, so the interpreter does not wait for it."""
    entered, release = threading.Event(), threading.Event()

    class Stuck(Scripted):
        def add(self, records, received_at):
            entered.set()
            release.wait()
            return super().add(records, received_at)

    w = Wired(Stuck(storage))
    try:
        w.deliver(message(1, authority.visit()[1].wire()))
        assert entered.wait(5)
        stopping = threading.Thread(target=w.ingest.stop, kwargs={"timeout": 0.05}, daemon=True)
        stopping.start()
        stopping.join(5)
        assert not stopping.is_alive() and w.client.disconnected and w.client.acks == []
        assert w.ingest._writer.is_alive() and w.ingest._writer.daemon
    finally:
        release.set()
        w.ingest._writer.join(5)


def test_stopping_commits_and_acknowledges_what_has_arrived(storage, authority):
    scripted = Scripted(storage, fails=1)
    w = Wired(scripted, batch=2, batch_window_s=0.0, retry_s=0.5)
    w.deliver(message(1, authority.visit()[1].wire()))
    wait_until(lambda: scripted.batches)  # the writer holds message 1, waiting out a retry
    w.deliver(*[message(i, authority.visit()[1].wire()) for i in range(2, 7)])  # these wait in the inbox
    w.ingest.stop()
    assert sorted(w.client.acks) == [(i, 1) for i in range(2, 7)] and w.ingest.stored == 5
    assert scripted.batches == [1, 2, 2, 1] and storage.count() == 5


def test_a_stop_commits_what_had_arrived_and_leaves_what_arrives_later_in_the_session(storage, authority):
    """A stream that goes on does not keep a stop from ending: a message arriving while the stop commits waits in
    the broker session for the next run."""
    late = message(3, authority.visit()[1].wire())

    class DeliversWhileStopping(Scripted):
        def add(self, records, received_at):
            if w.ingest._stopping.is_set() and late.mid not in self.delivered:
                self.delivered.add(late.mid)
                w.deliver(late)  # paho's network thread, meanwhile
            return super().add(records, received_at)

    scripted = DeliversWhileStopping(storage, fails=1)
    scripted.delivered = set()
    w = Wired(scripted, batch=2, batch_window_s=0.0, retry_s=30)
    w.deliver(message(1, authority.visit()[1].wire()))
    wait_until(lambda: scripted.batches)  # the writer holds message 1, waiting out a retry
    w.deliver(message(2, authority.visit()[1].wire()))
    w.ingest.stop()
    assert scripted.delivered == {3} and w.client.acks == [(2, 1)] and storage.count() == 1
    assert w.ingest._inbox.qsize() == 1  # message 3, unacknowledged: the broker hands it over again


def test_a_purge_comes_once_a_period_not_with_every_batch(storage, authority, monkeypatch):
    """docs/custodian.md: hourly, by default; the period is on the process's monotonic clock, here a fake one."""
    import custodian.ingest as ingest_module

    clock = [0.0]
    monkeypatch.setattr(ingest_module, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    scripted = Scripted(storage)
    with Wired(scripted, batch=1) as w:
        # Message 1, committed at 0 s, says the writer has read the clock after its first purge.
        for mid, clock[0] in enumerate((0.0, 3599.9), start=1):
            w.deliver(message(mid, authority.visit()[1].wire()))
            w.settled(mid)  # each a batch of its own, committed: the writer went round its loop
        assert scripted.purges == 1
        clock[0] = 3600.0
        wait_until(lambda: scripted.purges == 2)


def test_purges_at_start_and_every_period_by_the_time_of_receipt(storage, authority):
    old, recent = authority.visit(ts=2**40)[1], authority.visit(ts=0)[1]  # their ts has no say
    now = time.time()
    storage.add([(old, old.wire())], received_at=now - RETENTION_DAYS * DAY_S - 60)
    storage.add([(recent, recent.wire())], received_at=now - (RETENTION_DAYS - 1) * DAY_S)
    with Wired(storage, purge_every_s=0.05) as w:
        wait_until(lambda: w.ingest.purged == 1)
        assert [row.rid for row in storage.between("cafe-1", 0, 2**41)] == [recent.rid]
        again = authority.visit()[1]
        storage.add([(again, again.wire())], received_at=now - 30 * DAY_S)
        wait_until(lambda: w.ingest.purged == 2)
        assert w.ingest.summary()["purged"] == 2


def test_the_first_purge_comes_before_the_first_period(storage, authority):
    old = authority.visit()[1]
    storage.add([(old, old.wire())], received_at=time.time() - 29 * DAY_S)
    with Wired(storage, purge_every_s=3600) as w:
        wait_until(lambda: w.ingest.purged == 1)


def test_a_failed_purge_is_logged_and_the_ingest_goes_on(storage, authority, caplog):
    caplog.set_level(logging.ERROR, logger="custodian")
    scripted = Scripted(storage, purge_fails=True)
    with Wired(scripted, purge_every_s=0.05) as w:
        wait_until(lambda: scripted.purges >= 2)
        w.deliver(message(1, authority.visit()[1].wire()))
        w.settled(1)
        assert w.ingest.stored == 1 and w.ingest.purged == 0
    assert "purging records received over 28 days ago failed: disk I/O error" in caplog.text


def test_a_purge_forgets_the_full_buckets(storage, authority):
    with Wired(storage, purge_every_s=0.05, device_rate_per_s=1000.0, device_burst=5) as w:
        w.deliver(message(1, authority.visit()[1].wire()))
        w.settled(1)
        wait_until(lambda: len(w.ingest.buckets) == 0)


def test_a_writer_that_dies_of_a_bug_says_so_and_calls_for_its_end(storage, authority, monkeypatch, caplog):
    import custodian.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "check", lambda *a: 1 / 0)
    with Wired(storage) as w:
        w.deliver(message(1, authority.visit()[1].wire()))
        assert w.died.wait(10)
        assert w.ingest.died.is_set() and w.client.acks == []
    died = [r for r in caplog.records if "the writer died" in r.getMessage()]
    assert len(died) == 1 and died[0].levelno == logging.CRITICAL and "ingest-a" in died[0].getMessage()
    assert died[0].exc_info[0] is ZeroDivisionError  # the bug's traceback, for whoever fixes it
