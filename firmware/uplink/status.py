"""The retained status message: the device's health at a glance (DESIGN.md, MQTT)."""

from __future__ import annotations

import time

from firmware import __version__
from firmware.clock import ClockSync
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.trust import TrustStore
from firmware.uplink.mqtt import MqttUplink

OFFLINE = b'{"state":"offline"}'


def snapshot(stats: Stats, store: SqliteRecordStore, faults: Faults, trust: TrustStore, clock: ClockSync,
             uplink: MqttUplink | None = None) -> dict:
    depth, oldest = store.depth()
    now = time.time()
    current = trust.current()
    decode = list(stats.decode_ms)
    return {
        "state": "online",
        "version": __version__,
        "uptime_s": round(time.monotonic() - stats.started),
        "fps": round(stats.fps(), 1),
        "decode_ms": round(sum(decode) / len(decode), 2) if decode else None,
        "queue_depth": depth,
        "oldest_queued_age_s": round(now - oldest) if oldest is not None else None,
        "last_delivery": stats.last_delivery,
        "broker": None if uplink is None else {
            "connected": uplink.connected.is_set(),
            "session_resumed": uplink.session_present,
            "reconnects": uplink.reconnects,
        },
        "clock_sync": clock.synchronised(),
        "trust_seq": current.seq if current else None,
        "trust_not_after": current.not_after if current else None,
        "faults": faults.active(),
    }
