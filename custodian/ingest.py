"""The custodian's ingest: sealed visits from the broker into storage, each one at least once, stored once.

Any number of ingest processes share the load through one MQTT v5 shared
subscription (`$share/<group>/qrgate/v1/+/+/visits`): the broker hands each
message to one member of the group. A PUBLISH is acknowledged only after its
record is committed (paho's manual_ack), so a process that dies with messages
in hand leaves them unacknowledged in its broker session, and they come again
when it reconnects with the same client id (clean_start false, a session
expiry). Redelivery and the device's own at-least-once resends are absorbed by
the rid primary key.

Messages are committed in batches (up to `batch`, or whatever arrived within
`batch_window_s`): one fsync per batch, then one PUBACK per message. The
client's Receive Maximum is `batch`, so the broker should never have more
unacknowledged QoS 1 messages out to one process than fit one batch; QoS 0
messages bypass Receive Maximum, and devices publish visits at QoS 1 only, so
a QoS 0 message is rejected as it arrives, never queued. Mosquitto 2.0.11 does
send past Receive Maximum, without bound when it hands out a backlog (as after
an outage: each PUBACK may release up to Receive Maximum more), so a full inbox
holds paho's network thread for up to INBOX_WAIT_S while the writer commits:
the broker is held back by TCP, at the rate the database takes. A message that
still finds no room (the database is away) is dropped unacknowledged, and the
ingest reconnects once it has committed what it holds, since only a new
connection makes a broker send again what waits unacknowledged in the session. The CONNECT's Maximum Packet Size is the
broker's own (topics.MAX_PACKET): Mosquitto 2.0.11 never frees the in-flight
slot of a QoS 1 message it drops as too large for a client, and `batch` of
them would stop this process for good, so it takes every packet the broker
admits, keeps no more of one than a record's size, and rejects the rest as
oversized. A broker that does not say it admits no more than that (CONNACK's
Maximum Packet Size) is named in a warning at every connection.

An ack belongs to the connection its message came on: after a disconnect the
broker resends the unacknowledged ones, so acks of an older connection are
dropped rather than sent on a newer one, where the packet id may mean another
message. A disconnect with reason 0x8E (session taken over) means another
connection now holds this client id and its session: it is logged as critical
and counted, and the ingest reconnects.

Two kinds of failure to store, kept apart by the Storage (StorageUnavailable):
the database failing (down, locked, full) is retried, unacknowledged, until it
succeeds or the ingest stops, so nothing is lost; the database refusing a
record is that record's fault: the batch is then stored record by record, and
the refused one is rejected as `unstorable`, never retried forever.

A message that is not a sealed record, is larger than one, whose clear venue and
device are not the topic's, whose ts is outside [received − 28 days, received +
TS_SKEW_S], or that its device sends beyond its rate (a token bucket per venue
and device, in this process) is rejected: counted by reason and logged as
reason and count (never its bytes), acknowledged so it is not resent forever,
not stored. The ingest also purges records received over 28 days ago, at start
and every hour.
"""

from __future__ import annotations

import logging
import math
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from custodian.storage import DAY_S, RETENTION_DAYS, Storage, StorageUnavailable
from firmware.health import OFFLINE
from firmware.store.records import MAX_WIRE, SealedRecord
from firmware.uplink import topics
from firmware.uplink.mqtt import Tls

logger = logging.getLogger(__name__)

VISITS_FILTER = "qrgate/v1/+/+/visits"
TS_SKEW_S = 300  # how far ahead of the custodian's clock a device's may run
MAX_AGE_S = RETENTION_DAYS * DAY_S  # a device purges its own records at 28 days: none comes older
INBOX_BATCHES = 4  # a batch in hand, Receive Maximum's worth from the broker, and what older connections left
INBOX_WAIT_S = 1.0  # a full inbox holds the network thread this long at most: longer than a commit, well under keepalive
SESSION_TAKEN_OVER = 0x8E
LOG_EVERY_S = 60.0
# An ingest's health, where a scanner's would be: qrgate/v1/custodian/<name>/status (--status NAME).
STATUS_VENUE = "custodian"
ONLINE = b'{"state":"online","role":"ingest"}'
# Per device: a busy door holds a few hundred thousand records after 28 days offline and drains them at
# ~13,000/s, so a burst of 1,000,000 takes its whole backlog at once; 1 a second refills it at twice what one
# scanner can admit around the clock (a visitor every 2 s). A device cannot add more than that.
DEVICE_RATE_PER_S = 1.0
DEVICE_BURST = 1_000_000


def share_filter(group: str) -> str:
    return f"$share/{group}/{VISITS_FILTER}"


@dataclass(frozen=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    connection: int  # which connection it came on


def check(topic: str, payload: bytes, received_at: float) -> SealedRecord | str:
    """The record a message carries, or the reason it is rejected; the size first, before any byte is read."""
    if len(payload) > MAX_WIRE:
        return "oversized"
    try:
        record = SealedRecord.from_wire(payload)
    except ValueError:  # from_wire refuses anything but a version 1 record as a device writes it
        return "malformed"
    if topic != topics.visits(record.venue, record.device):
        return "topic_mismatch"
    if not received_at - MAX_AGE_S <= record.ts <= received_at + TS_SKEW_S:
        return "ts_out_of_range"
    return record


class DeviceBuckets:
    """A token bucket per (venue, device): `burst` records at once, refilled at `rate_per_s`.

    A full bucket says nothing a new one would not, so `prune` forgets those:
    what is kept is the devices that sent more than their rate lately.
    """

    def __init__(self, rate_per_s: float = DEVICE_RATE_PER_S, burst: int = DEVICE_BURST, clock=time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a device's rate must be over 0 and its burst 1 or more")
        self.rate_per_s, self.burst, self._clock = rate_per_s, burst, clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (venue, device) -> (tokens, when)

    def _tokens(self, key: tuple[str, str], now: float) -> float:
        tokens, when = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate_per_s)

    def take(self, venue: str, device: str) -> bool:
        """One record's token from its device's bucket; False when it is empty."""
        now, key = self._clock(), (venue, device)
        tokens = self._tokens(key, now)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed

    def prune(self) -> None:
        now = self._clock()
        self._buckets = {k: v for k, v in self._buckets.items() if self._tokens(k, now) < self.burst}

    def __len__(self) -> int:
        return len(self._buckets)


class _ThrottledLog:
    """One warning per kind of event at most every `every_s`, saying how many there were: a flood floods no log."""

    def __init__(self, every_s: float = LOG_EVERY_S):
        self.every_s = every_s
        self._lock = threading.Lock()  # held for a dict update only: paho's network thread logs through it too
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def note(self, what: str, topic: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._since[what] += 1
            if now - self._last.get(what, -math.inf) < self.every_s:
                return
            self._last[what] = now
            count = self._since.pop(what)
        logger.warning("%s: %d message(s) since the last such line, the latest on %s", what, count, topic)


class Ingest:
    def __init__(
        self,
        host: str,
        port: int,
        group: str = "custodian",
        storage: Storage | None = None,
        client_id: str | None = None,
        tls: Tls | None = None,
        batch: int = 100,
        batch_window_s: float = 0.01,
        session_expiry_s: int = 28 * 86400,  # a session outliving the records it holds is no use
        purge_every_s: float = 3600.0,
        keepalive: int = 30,
        retry_s: float = 1.0,
        device_rate_per_s: float = DEVICE_RATE_PER_S,
        device_burst: int = DEVICE_BURST,
        inbox_wait_s: float = INBOX_WAIT_S,
        status_name: str | None = None,
    ):
        if storage is None:
            raise ValueError("an Ingest needs a storage")
        if batch < 1:
            raise ValueError("batch must be 1 or more")
        self.host, self.port, self.group, self.storage = host, port, group, storage
        # A stable id, so a restarted process resumes its broker session (and what waits in it).
        self.client_id = client_id or f"{group}-{socket.gethostname()}"
        self.batch, self.batch_window_s, self.retry_s = batch, batch_window_s, retry_s
        self.session_expiry_s, self.purge_every_s, self.keepalive = session_expiry_s, purge_every_s, keepalive
        self.buckets = DeviceBuckets(device_rate_per_s, device_burst)
        self.status_topic = topics.status(STATUS_VENUE, status_name) if status_name else None
        # Counted by the writer thread, under _counts_lock:
        self.stored = self.duplicates = self.purged = 0
        self._rejected: Counter[str] = Counter()
        # Counted by paho's network thread alone:
        self.received = self.reconnects = self.takeovers = self.inbox_full = self._qos0 = 0
        self._counts_lock = threading.Lock()
        self._log = _ThrottledLog()
        self.connected = threading.Event()
        self.died = threading.Event()  # the writer thread ended on an unexpected exception
        self.subscribed = threading.Event()  # the broker granted the shared subscription
        self._connection = 0
        self._ever_connected = False
        self._ack_lock = threading.Lock()  # an ack and a change of connection never interleave
        self._inbox: queue.Queue[_Message] = queue.Queue(maxsize=INBOX_BATCHES * batch)
        self.inbox_wait_s = inbox_wait_s
        self._dropped = threading.Event()  # the inbox was full: what it dropped waits in the broker, unacknowledged
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._client = self._make_client(tls)

    def _make_client(self, tls: Tls | None) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if tls is not None:
            tls.apply(c)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.status_topic:  # the fleet's monitoring reads it as a scanner's (docs/monitoring.md)
            c.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_subscribe, c.on_message = self._on_subscribe, self._on_message
        return c

    def start(self, on_death: Callable[[], None] = lambda: None) -> None:
        """Connect in the background (paho reconnects by itself) and start committing."""
        self._writer = threading.Thread(target=self._write_or_die, args=(on_death,), name=f"ingest-{self.client_id}",
                                        daemon=True)
        self._writer.start()
        self._connect()

    def _connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = min(self.batch, 65535)
        properties.MaximumPacketSize = topics.MAX_PACKET
        self._client.connect_async(self.host, self.port, self.keepalive, clean_start=False, properties=properties)
        self._client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what has arrived, then disconnect; the session keeps anything later."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        if self.status_topic and self.connected.is_set():  # a clean DISCONNECT does not send the will
            try:
                self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True).wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection went meanwhile: the broker sends the will
                pass
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("ingest %s stopped: %s", self.client_id, self.summary())

    @property
    def rejected_by_reason(self) -> Counter[str]:
        with self._counts_lock:
            merged = Counter(self._rejected)
        if self._qos0:
            merged["qos0"] += self._qos0
        return merged

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def summary(self) -> dict:
        with self._counts_lock:
            stored, duplicates, purged = self.stored, self.duplicates, self.purged
        by_reason = self.rejected_by_reason
        return {
            "client_id": self.client_id,
            "received": self.received,
            "stored": stored,
            "duplicates": duplicates,
            "rejected": sum(by_reason.values()),
            "rejected_by_reason": dict(by_reason),
            "dropped_inbox_full": self.inbox_full,
            "purged": purged,
            "reconnects": self.reconnects,
            "takeovers": self.takeovers,
        }

    # paho's network thread: nothing here may block or wait for the writer, but for room in a full inbox (above)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("broker refused ingest %s: %s", self.client_id, reason_code)
            return
        with self._ack_lock:
            self._connection += 1
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self.connected.set()
        logger.info("ingest %s connected (%s)", self.client_id,
                    "session resumed" if flags.session_present else "new session")
        admits = getattr(properties, "MaximumPacketSize", None)
        if admits is None or admits > topics.MAX_PACKET:
            logger.warning("the broker admits packets of %s, larger than the %d bytes this ingest takes: a flood of "
                           "larger messages would stop it; set max_packet_size %d in mosquitto.conf "
                           "(custodian/broker/mosquitto.conf)", f"up to {admits} bytes" if admits else "any size",
                           topics.MAX_PACKET, topics.MAX_PACKET)
        client.subscribe(share_filter(self.group), options=SubscribeOptions(qos=1))
        if self.status_topic:
            client.publish(self.status_topic, ONLINE, qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._connection += 1
        self.connected.clear()
        self.subscribed.clear()
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER:
            self.takeovers += 1
            logger.critical("ingest %s: SESSION TAKEN OVER (DISCONNECT 0x8E): another connection with this client id "
                            "now holds its broker session, and what the broker hands it is not stored here; "
                            "a second process with this id, or its identity in other hands; reconnecting",
                            self.client_id)
        elif not self._stopping.is_set():
            logger.warning("ingest %s disconnected: %s; reconnecting", self.client_id, reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            logger.error("broker refused the subscription %s: %s", share_filter(self.group),
                         ", ".join(str(rc) for rc in reason_codes))
            return
        self.subscribed.set()
        logger.info("ingest %s subscribed to %s", self.client_id, share_filter(self.group))

    def _on_message(self, client, userdata, message) -> None:
        self.received += 1
        if message.qos == 0:  # past Receive Maximum, and never how a device sends a visit
            self._qos0 += 1
            self._log.note("rejected as qos0", message.topic)
            return
        try:
            # No more of a payload than check() needs to call it oversized: the inbox holds records, not packets.
            self._inbox.put(_Message(message.mid, message.qos, message.topic, message.payload[:MAX_WIRE + 1],
                                     self._connection), timeout=self.inbox_wait_s)
        except queue.Full:  # unacknowledged: the broker resends it after a reconnect, which the writer makes
            self.inbox_full += 1
            self._dropped.set()
            self._log.note("dropped unacknowledged, the inbox is full", message.topic)

    # the writer thread

    def _write_or_die(self, on_death: Callable[[], None]) -> None:
        """A writer that dies of a bug must not leave a process that looks alive and stores nothing:
        `on_death` (the command's stop) ends it, and its supervisor starts it again."""
        try:
            self._write_loop()
        except Exception:
            logger.critical("ingest %s: the writer died; nothing more is stored or acknowledged by this process",
                            self.client_id, exc_info=True)
            self.died.set()
            on_death()

    def _write_loop(self) -> None:
        next_purge = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() >= next_purge:
                self._purge()
                next_purge = time.monotonic() + self.purge_every_s
            messages = self._collect(self.batch, timeout=min(0.2, max(0.0, next_purge - time.monotonic())))
            if messages:
                self._commit(messages)
            if self._dropped.is_set() and self._inbox.empty():
                self._reconnect()
        # Stopping: what has arrived so far is committed and acknowledged; later ones stay in the session.
        pending = self._inbox.qsize()
        while pending > 0 and (messages := self._collect(min(pending, self.batch), timeout=0)):
            pending -= len(messages)
            if not self._commit(messages):
                return

    def _collect(self, most: int, timeout: float) -> list[_Message]:
        """Up to `most` messages: the first within `timeout`, the rest within the batch window."""
        try:
            messages = [self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_window_s
        while len(messages) < most:
            try:
                messages.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return messages

    def _judge(self, m: _Message, received_at: float) -> SealedRecord | str:
        """check(), then the device's rate: the record to store, or the reason it is rejected."""
        verdict = check(m.topic, m.payload, received_at)
        if isinstance(verdict, SealedRecord) and not self.buckets.take(verdict.venue, verdict.device):
            return "rate_limited"
        return verdict

    def _commit(self, messages: list[_Message]) -> bool:
        """False when stopping left the batch uncommitted (and so unacknowledged)."""
        records, rejected, received_at = [], Counter(), time.time()
        for m in messages:
            verdict = self._judge(m, received_at)
            if isinstance(verdict, str):
                rejected[verdict] += 1
                self._log.note(f"rejected as {verdict}", m.topic)
            else:
                records.append((verdict, m.payload))
        outcome = self._store(records)
        if outcome is None:
            return False
        new, refused = outcome
        rejected["unstorable"] += refused
        with self._counts_lock:
            self.stored += new
            self.duplicates += len(records) - refused - new
            self._rejected.update(+rejected)
        self._ack(messages)
        logger.debug("batch of %d: %d new, %d duplicates, %d rejected",
                     len(messages), new, len(records) - refused - new, sum(rejected.values()))
        return True

    def _store(self, records: list[tuple[SealedRecord, bytes]]) -> tuple[int, int] | None:
        """(new, refused): the batch in one transaction, or record by record if the database refuses it.

        None when stopping left it uncommitted.
        """
        if not records:
            return 0, 0
        try:
            new = self._add(records)
        except Exception as exc:  # noqa: BLE001  not StorageUnavailable: a record the database refuses
            logger.warning("the database refused a batch of %d (%s); storing it record by record",
                           len(records), type(exc).__name__)
        else:
            return None if new is None else (new, 0)
        new = refused = 0
        for record, wire in records:
            try:
                added = self._add([(record, wire)])
            except Exception as exc:  # noqa: BLE001  this record's fault: rejected, acknowledged, never retried
                refused += 1
                self._log.note(f"rejected as unstorable ({type(exc).__name__})",
                               topics.visits(record.venue, record.device))
                continue
            if added is None:
                return None
            new += added
        return new, refused

    def _add(self, records: list[tuple[SealedRecord, bytes]]) -> int | None:
        """Storage.add, retried while the database is unavailable; None when stopping came first."""
        while True:
            try:
                return self.storage.add(records, received_at=time.time())
            except StorageUnavailable as exc:
                logger.error("committing %d records failed (%s); retrying, unacknowledged", len(records), exc)
            if self._stopping.wait(self.retry_s):
                return None

    def _reconnect(self) -> None:
        """What a full inbox dropped waits unacknowledged in the broker's session, sent again only on a new
        connection: so, one, from the writer's thread once all it held is committed and acknowledged (a broker
        sending past Receive Maximum would otherwise fill the inbox again at once, with what is still in it).
        Anything arriving meanwhile is of the old connection: `_on_disconnect` has counted a new one before
        `loop_stop` returns, so its acks are not sent."""
        self._dropped.clear()
        logger.warning("ingest %s: reconnecting, so that the broker sends again what the full inbox dropped",
                       self.client_id)
        self._client.disconnect()
        self._client.loop_stop()
        self._connect()

    def _ack(self, messages: list[_Message]) -> None:
        with self._ack_lock:
            for m in messages:
                if m.connection == self._connection:
                    self._client.ack(m.mid, m.qos)

    def _purge(self) -> None:
        self.buckets.prune()
        try:
            deleted = self.storage.purge(time.time(), RETENTION_DAYS)
        except Exception as exc:  # noqa: BLE001  the next hour tries again; ingest goes on
            logger.error("purging records received over %d days ago failed: %s", RETENTION_DAYS, exc)
            return
        with self._counts_lock:
            self.purged += deleted
        logger.info("purged %d records received over %d days ago; so far %s", deleted, RETENTION_DAYS,
                    self.summary())
