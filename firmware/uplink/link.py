"""The daemon's way to the broker, built one way for the daemon and for `qrgate bench drain`.

`connect` wires MqttUplink and Drain as a device runs them (mTLS, last will,
the trust-list subscription, the persistent session, the backoff). With
`[mqtt] enabled = false` the daemon holds an OfflineLink instead: the same
calls, doing nothing, so no part of the daemon asks whether there is a broker.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

from firmware import credentials, health
from firmware.backoff import Backoff
from firmware.config import MqttConfig
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.uplink import topics
from firmware.uplink.drain import Drain
from firmware.uplink.mqtt import MqttUplink, Subscription, Tls, Will

Spawn = Callable[[str, Callable[[], None]], threading.Thread]


class Link(Protocol):
    @property
    def uplink(self) -> MqttUplink | None:
        """For the health snapshot: connected or not, reconnects."""

    def start(self, spawn: Spawn) -> None: ...

    def wake(self, status: bool = False) -> None:
        """A record was stored (or, `status`, the faults changed): there is something to send."""

    def close(self, deliver_s: float = 0.0) -> None:
        """Give what waits `deliver_s` to leave, stop the drain, say offline, disconnect. Idempotent."""


class OfflineLink:
    uplink = None

    def start(self, spawn: Spawn) -> None:
        pass

    def wake(self, status: bool = False) -> None:
        pass

    def close(self, deliver_s: float = 0.0) -> None:
        pass


class OnlineLink:
    def __init__(self, uplink: MqttUplink, drain: Drain, status_topic: str):
        self.uplink, self.drain, self._status_topic = uplink, drain, status_topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self, spawn: Spawn) -> None:
        self.uplink.start()
        self._thread = spawn("drain", lambda: self.drain.run(self._stop))

    def wake(self, status: bool = False) -> None:
        self.drain.wake(status=status)

    def close(self, deliver_s: float = 0.0) -> None:
        if self._closed:
            return
        self._closed = True
        if deliver_s > 0:
            self.drain.wait_empty(deliver_s)
        self._stop.set()
        self.drain.wake()
        if self._thread is not None:
            self._thread.join(10)  # before the store it reads closes
        self.uplink.stop(final=(self._status_topic, health.OFFLINE))


def connect(m: MqttConfig, venue: str, device: str, *, store: SqliteRecordStore, snapshot: Callable[[], dict[str, Any]],
            stats: Stats, faults: Faults, on_trust_list: Callable[[bytes], object],
            on_state: Callable[[bool, str], None] = lambda up, why: None, client_id: str | None = None,
            subscriptions: dict[str, Subscription] | None = None) -> OnlineLink:
    """MqttUplink and Drain, wired; nothing started. `client_id`: the device's own unless a benchmark names one;
    `subscriptions`: topics beyond the trust list (the venue's passback topic)."""
    status_topic = topics.status(venue, device)
    drain: Drain | None = None
    uplink = MqttUplink(
        m.host, m.port, client_id=client_id or f"qrgate-{venue}-{device}",
        tls=Tls(m.ca, *credentials.client_pair(m.cert, m.key)) if m.tls else None,
        will=Will(status_topic, health.OFFLINE),
        keepalive=m.keepalive_s, max_inflight=m.window,
        subscriptions={topics.TRUSTLIST: on_trust_list, **(subscriptions or {})},
        on_connected=lambda: drain.reconnected() if drain is not None else None,
        on_state=on_state,
        session_expiry_s=m.session_expiry_s,
        backoff=Backoff(m.reconnect_min_s, max(m.reconnect_min_s, m.reconnect_max_s)),
        max_packet=topics.MAX_PACKET,
    )
    drain = Drain(store, uplink, topics.visits(venue, device), status_topic, status=snapshot, stats=stats,
                  faults=faults, window=m.window, status_interval_s=m.status_interval_s)
    return OnlineLink(uplink, drain, status_topic)
