"""Store-and-forward: the sealed store is the outbox, drained oldest first.

A bounded window of records is in flight; each leaves the card only when the
broker's PUBACK carries a success code. A refusal (reason code >= 0x80, an
ACL say) is a fault and the record stays, to be tried again later. After a
reconnect everything not yet acknowledged is sent again: delivery is at least
once, and the custodian drops duplicates by rid.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from firmware.faults import Faults
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.uplink.mqtt import MqttUplink

logger = logging.getLogger(__name__)


class Drain:
    def __init__(
        self,
        store: SqliteRecordStore,
        uplink: MqttUplink,
        visits_topic: str,
        status_topic: str,
        status: Callable[[], dict],
        stats: Stats,
        faults: Faults,
        window: int = 16,
        status_interval_s: float = 30.0,
        retry_refused_s: float = 30.0,
    ):
        self.store, self.uplink, self.stats, self.faults = store, uplink, stats, faults
        self.visits_topic, self.status_topic, self.status = visits_topic, status_topic, status
        self.window, self.status_interval_s, self.retry_refused_s = window, status_interval_s, retry_refused_s
        self._inflight: set[bytes] = set()
        self._held: dict[bytes, float] = {}  # refused rids -> monotonic time to try again
        self._cond = threading.Condition()
        self._wake = False
        self._status_due = 0.0

    def wake(self, status: bool = False) -> None:
        with self._cond:
            self._wake = True
            if status:
                self._status_due = 0.0
            self._cond.notify_all()

    def reconnected(self) -> None:
        with self._cond:
            self._inflight.clear()
        self.wake(status=True)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._cond:
                if not self._wake:
                    self._cond.wait(timeout=1.0)
                self._wake = False
            if not self.uplink.connected.is_set():
                continue
            now = time.monotonic()
            if now >= self._status_due:
                self._status_due = now + self.status_interval_s
                self.uplink.publish(self.status_topic, json.dumps(self.status()).encode(), qos=1, retain=True)
            self._send(now)

    def _send(self, now: float) -> None:
        with self._cond:
            self._held = {rid: t for rid, t in self._held.items() if t > now}
            room = self.window - len(self._inflight)
            skip = frozenset(self._inflight | self._held.keys())
        if room <= 0:
            return
        for rid, wire in self.store.oldest(room, skip=skip):
            with self._cond:
                self._inflight.add(rid)
            if not self.uplink.publish(self.visits_topic, wire, qos=1, on_ack=self._ack_handler(rid)):
                with self._cond:
                    self._inflight.discard(rid)
                return

    def _ack_handler(self, rid: bytes) -> Callable[[bool, str], None]:
        def acked(ok: bool, reason: str) -> None:
            if ok:
                self.store.delete(rid)
                self.stats.add("acked")
                self.stats.last_delivery = time.time()
                self.faults.clear("publish_refused")
            else:
                self.stats.add("refused")
                self.faults.set("publish_refused", f"the broker refused a visit record: {reason}")
            with self._cond:
                self._inflight.discard(rid)
                if not ok:
                    self._held[rid] = time.monotonic() + self.retry_refused_s
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
