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
client's Receive Maximum is `batch`, so the broker never has more
unacknowledged messages out to one process than fit one batch.

An ack belongs to the connection its message came on: after a disconnect the
broker resends the unacknowledged ones, so acks of an older connection are
dropped rather than sent on a newer one, where the packet id may mean another
message. A commit that fails (disk full, a lock held too long) is retried,
unacknowledged, until it succeeds or the ingest stops.

A payload that is not a sealed record, or whose clear venue and device are not
the topic's, is rejected: counted and logged by reason (never its bytes),
acknowledged so it is not resent forever, not stored. The ingest also purges
records past 28 days, at start and every hour.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from custodian.storage import RETENTION_DAYS, Storage
from firmware.store.records import SealedRecord
from firmware.uplink.mqtt import Tls

logger = logging.getLogger(__name__)

VISITS_FILTER = "qrgate/v1/+/+/visits"
RID_BYTES = 16


def share_filter(group: str) -> str:
    return f"$share/{group}/{VISITS_FILTER}"


@dataclass(frozen=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    connection: int  # which connection it came on


def check(topic: str, payload: bytes) -> SealedRecord | str:
    """The record a message carries, or the reason it is rejected."""
    try:
        record = SealedRecord.from_wire(payload)
    except Exception:  # noqa: BLE001  cbor2 raises several kinds on hostile input; none may stop the ingest
        return "malformed"
    if len(record.rid) != RID_BYTES:
        return "malformed"
    levels = topic.split("/")
    if len(levels) != 5 or (levels[2], levels[3]) != (record.venue, record.device):
        return "topic_mismatch"
    return record


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
        self.received = self.stored = self.duplicates = self.rejected = self.purged = 0
        self.rejected_by_reason: Counter[str] = Counter()
        self.reconnects = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker granted the shared subscription
        self._connection = 0
        self._ever_connected = False
        self._ack_lock = threading.Lock()  # an ack and a change of connection never interleave
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._client = self._make_client(tls)

    def _make_client(self, tls: Tls | None) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if tls is not None:
            c.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert) if tls.cert else None,
                      keyfile=str(tls.key) if tls.key else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_subscribe, c.on_message = self._on_subscribe, self._on_message
        return c

    def start(self) -> None:
        """Connect in the background (paho reconnects by itself) and start committing."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = min(self.batch, 65535)
        self._writer = threading.Thread(target=self._write_loop, name=f"ingest-{self.client_id}", daemon=True)
        self._writer.start()
        self._client.connect_async(self.host, self.port, self.keepalive, clean_start=False, properties=properties)
        self._client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what has arrived, then disconnect; the session keeps anything later."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("ingest %s stopped: %s", self.client_id, self.summary())

    def summary(self) -> dict:
        return {
            "client_id": self.client_id,
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "purged": self.purged,
            "reconnects": self.reconnects,
        }

    # paho's network thread

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
        client.subscribe(share_filter(self.group), options=SubscribeOptions(qos=1))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._connection += 1
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping.is_set():
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
        self._inbox.put(_Message(message.mid, message.qos, message.topic, message.payload, self._connection))

    # the writer thread

    def _write_loop(self) -> None:
        next_purge = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() >= next_purge:
                self._purge()
                next_purge = time.monotonic() + self.purge_every_s
            messages = self._collect(self.batch, timeout=min(0.2, max(0.0, next_purge - time.monotonic())))
            if messages:
                self._commit(messages)
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

    def _commit(self, messages: list[_Message]) -> bool:
        """False when stopping left the batch uncommitted (and so unacknowledged)."""
        records, rejected = [], Counter()
        for m in messages:
            verdict = check(m.topic, m.payload)
            if isinstance(verdict, str):
                rejected[verdict] += 1
                logger.warning("rejected a message on %s: %s", m.topic, verdict)
            else:
                records.append((verdict, m.payload))
        new = self._add_until_done(records) if records else 0
        if new is None:
            return False
        self.stored += new
        self.duplicates += len(records) - new
        self.rejected += sum(rejected.values())
        self.rejected_by_reason.update(rejected)
        self._ack(messages)
        logger.debug("batch of %d: %d new, %d duplicates, %d rejected",
                     len(messages), new, len(records) - new, sum(rejected.values()))
        return True

    def _add_until_done(self, records: list) -> int | None:
        while True:
            try:
                return self.storage.add(records, received_at=time.time())
            except Exception as exc:  # noqa: BLE001  any Storage's failure: retry, never let the writer die
                logger.error("committing %d records failed (%s); retrying, unacknowledged", len(records), exc)
            if self._stopping.wait(self.retry_s):
                return None

    def _ack(self, messages: list[_Message]) -> None:
        with self._ack_lock:
            for m in messages:
                if m.connection == self._connection:
                    self._client.ack(m.mid, m.qos)

    def _purge(self) -> None:
        try:
            deleted = self.storage.purge(time.time(), RETENTION_DAYS)
        except Exception as exc:  # noqa: BLE001  the next hour tries again; ingest goes on
            logger.error("purging records past %d days failed: %s", RETENTION_DAYS, exc)
            return
        self.purged += deleted
        logger.info("purged %d records past %d days; so far %s", deleted, RETENTION_DAYS, self.summary())
