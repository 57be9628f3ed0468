"""Store-and-forward: the sealed store is the outbox, drained oldest first.

Each record leaves the card only when the broker's PUBACK carries a success
code. A refusal (reason code >= 0x80, an ACL say) is a fault and the record
stays, to be tried again later. After a reconnect everything not yet
acknowledged is sent again: delivery is at least once, and the custodian drops
duplicates by rid.

Throughput, measured with `qrgate bench drain`: paho keeps `window` messages on
the wire and up to `HANDOFF` times as many queued behind them, so the window
never runs dry between acknowledgements; records are read ahead from a
position in the store rather than re-read from its head per PUBACK; and the
PUBACK callback, which runs on paho's network thread (the bottleneck: anything
done there costs throughput), only notes the rid: this thread counts and deletes
what was acknowledged, in one transaction every FLUSH_S. A power cut between a
PUBACK and that commit only sends those records once more.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Protocol

from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.uplink.mqtt import AckCallback

logger = logging.getLogger(__name__)

HANDOFF = 4  # records handed to paho per message it may have on the wire
FLUSH_S = 0.1  # acknowledged records are deleted this often, together


class Outbox(Protocol):
    """The sealed store as the drain reads it (store.buffer.SqliteRecordStore)."""

    def after(self, position: int | None, limit: int) -> list[tuple[int, bytes, bytes]]:
        """Up to `limit` (position, rid, wire) rows past `position` (None: from the oldest)."""

    def delete(self, rids: Iterable[bytes]) -> None:
        """Forget delivered records; raises StorageError when the card fails."""

    def depth(self) -> tuple[int, int | None]:
        """Records waiting, and the oldest one's time."""


class Uplink(Protocol):
    """The broker connection as the drain uses it (uplink.mqtt.MqttUplink)."""

    connected: threading.Event

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_ack: AckCallback | None = None) -> bool:
        """False when it cannot take the message now; `on_ack(ok, reason)` on its PUBACK."""


class Drain:
    def __init__(
        self,
        store: Outbox,
        uplink: Uplink,
        visits_topic: str,
        status_topic: str,
        status: Callable[[], dict[str, Any]],
        stats: Stats,
        faults: Faults,
        window: int = 16,
        status_interval_s: float = 30.0,
        retry_refused_s: float = 30.0,
    ):
        self.store, self.uplink, self.stats, self.faults = store, uplink, stats, faults
        self.visits_topic, self.status_topic, self.status = visits_topic, status_topic, status
        self.window, self.status_interval_s, self.retry_refused_s = window, status_interval_s, retry_refused_s
        self._cond = threading.Condition()
        self._inflight: set[bytes] = set()  # handed to paho, not yet acknowledged
        self._acked: list[bytes] = []  # acknowledged, not yet deleted
        self._held: dict[bytes, float] = {}  # refused rids -> monotonic time to try again
        self._refusal_shown = False  # publish_refused is set: the next success ends it (paho's thread only)
        # Reading ahead (this thread's alone): read, not yet handed over; and where reading goes on from.
        self._ahead: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._position: int | None = None
        self._reread = False  # asked from another thread: read from the oldest record again
        self._wake = False
        self._status_due = 0.0
        self._flush_due = 0.0

    def wake(self, status: bool = False) -> None:
        with self._cond:
            self._wake = True
            if status:
                self._status_due = 0.0
            self._cond.notify_all()

    def reconnected(self) -> None:
        """Send again whatever was not acknowledged: read from the oldest record once more."""
        with self._cond:
            self._inflight.clear()
            self._reread = True
        self.wake(status=True)

    def _restart_reading(self) -> None:
        self._ahead.clear()
        self._position = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._cond:
                if not self._wake:
                    self._cond.wait(timeout=FLUSH_S if self._acked else 1.0)
                self._wake = False
            now = time.monotonic()
            if self._acked and now >= self._flush_due:
                self._flush(now)
            if not self.uplink.connected.is_set():
                continue
            if now >= self._status_due:
                self._status_due = now + self.status_interval_s
                self.uplink.publish(self.status_topic, json.dumps(self.status()).encode(), qos=1, retain=True)
            self._send(now)
        if self._acked:
            self._flush(time.monotonic())

    def _flush(self, now: float) -> None:
        with self._cond:
            done, self._acked = self._acked, []
        self._flush_due = now + FLUSH_S
        self.stats.add("acked", len(done))
        self.stats.last_delivery = time.time()
        try:
            self.store.delete(done)
        except StorageError as exc:  # the records stay and will be sent again: a duplicate, not a loss
            self.faults.set("storage", str(exc))

    def _send(self, now: float) -> None:
        with self._cond:
            if any(t <= now for t in self._held.values()):  # a refused record's time to try again
                self._held = {rid: t for rid, t in self._held.items() if t > now}
                self._reread = True
            reread, self._reread = self._reread, False
            room = self.window * HANDOFF - len(self._inflight)
            busy = self._inflight | set(self._acked) | self._held.keys()
        if reread:
            self._restart_reading()
        while room > 0:
            if not self._ahead:
                if not self._read_ahead(busy):
                    return
                continue
            rid, wire = self._ahead.popleft()
            if rid in busy:
                continue
            with self._cond:
                self._inflight.add(rid)
            if not self.uplink.publish(self.visits_topic, wire, qos=1, on_ack=self._ack_handler(rid)):
                with self._cond:  # paho cannot take it now: read from the oldest again next time
                    self._inflight.discard(rid)
                self._restart_reading()
                return
            busy.add(rid)
            room -= 1

    def _read_ahead(self, busy: set[bytes]) -> bool:
        rows = self.store.after(self._position, self.window * HANDOFF)
        if not rows:
            # At the end: the next round starts from the head again, so nothing is
            # missed that was stored behind the position (rowids start over once
            # the table has been emptied).
            self._position = None
            return False
        self._position = rows[-1][0]
        self._ahead.extend((rid, wire) for _, rid, wire in rows if rid not in busy)
        return True

    def _ack_handler(self, rid: bytes) -> Callable[[bool, str], None]:
        def acked(ok: bool, reason: str) -> None:
            # On paho's network thread, the drain's bottleneck: note the rid and
            # nothing more; counting and the card are this thread's work.
            if not ok:
                self.stats.add("refused")
                self.faults.set("publish_refused", f"the broker refused a visit record: {reason}")
                self._refusal_shown = True
            elif self._refusal_shown:  # this success ends it, the retried record's own included
                self._refusal_shown = False
                self.faults.clear("publish_refused")
            with self._cond:
                self._inflight.discard(rid)
                if ok:
                    self._acked.append(rid)
                else:
                    self._held[rid] = time.monotonic() + self.retry_refused_s
                if not self._wake and (len(self._inflight) <= self.window * HANDOFF // 2 or len(self._acked) >= 256):
                    self._wake = True
                    self._cond.notify_all()

        return acked

    def wait_empty(self, timeout: float) -> bool:
        """True once nothing waits in the store (used on stop and by the demo)."""
        deadline = time.monotonic() + timeout
        while self.store.depth()[0] > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(timeout=min(remaining, 0.5))
        return True
