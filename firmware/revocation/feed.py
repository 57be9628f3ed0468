"""A revocation list's way in over MQTT: the retained manifest, then each body it wants on a topic of its own.

The device subscribes to qrgate/v1/trust/revocation, where the authority keeps
the manifest of its newest list retained (so every subscription, and every
reconnection, brings it). When a manifest names bodies the device lacks, the
feed subscribes to their topics, qrgate/v1/trust/revocation/<SHA-256 hex>,
WINDOW at a time, so that the broker hands over at most WINDOW MiB at once, and
unsubscribes from each as soon as it is here or no longer wanted. Messages are
handled on paho's thread, one at a time: nothing is queued, so a list of any
size costs at most one message of memory on its way to the card. A body is
taken only if the store's manifest wants its hash (revocation.store), whatever
topic it came on; anything else is logged and dropped.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

from firmware.uplink import topics
from firmware.uplink.mqtt import Subscription

WINDOW = 4


class Lists(Protocol):
    """What the feed hands over to and asks of (revocation.store.RevocationStore)."""

    def offer_manifest(self, data: bytes, now: float) -> bool: ...

    def offer_body(self, data: bytes) -> bool: ...

    def wanted(self) -> list[bytes]: ...

    def refresh(self) -> None: ...


class Subscriber(Protocol):
    """Topics taken and given up while connected (uplink.mqtt.MqttUplink)."""

    def subscribe(self, topic: str, sub: Subscription) -> None: ...

    def unsubscribe(self, topic: str) -> None: ...


class RevocationFeed:
    def __init__(self, lists: Lists, window: int = WINDOW, clock: Callable[[], float] = time.time):
        self.lists, self.window, self.clock = lists, window, clock
        self.uplink: Subscriber | None = None
        self._subscribed: set[str] = set()  # body digests, hex
        self._lock = threading.Lock()

    def subscriptions(self) -> dict[str, Subscription]:
        """The manifest's topic, for the uplink to take at every connection."""
        return {topics.REVOCATION: Subscription(self.manifest)}

    def attach(self, uplink: Subscriber | None) -> None:
        """The uplink once it exists (None: no broker, lists come from a technician only)."""
        self.uplink = uplink
        self.sync()

    def manifest(self, data: bytes) -> None:
        self.lists.offer_manifest(data, self.clock())
        self.sync()

    def body(self, data: bytes) -> None:
        self.lists.offer_body(data)
        self.sync()

    def refresh(self) -> None:
        """Adopt what a technician installed meanwhile, and follow it (housekeeping's, every few seconds)."""
        self.lists.refresh()
        self.sync()

    def sync(self) -> None:
        """Be subscribed to the first WINDOW bodies still wanted, and to no other."""
        with self._lock:
            uplink = self.uplink
            if uplink is None:
                return
            wanted = [d.hex() for d in self.lists.wanted()][: self.window]
            for digest in sorted(self._subscribed - set(wanted)):
                uplink.unsubscribe(topics.revocation_body(digest))
                self._subscribed.discard(digest)
            for digest in wanted:
                if digest not in self._subscribed:
                    self._subscribed.add(digest)
                    uplink.subscribe(topics.revocation_body(digest), Subscription(self.body))
