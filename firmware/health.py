"""The device's health at a glance: the retained status message (DESIGN.md, MQTT), and the same
snapshot in the runtime folder's status.json, which `qrgate status` reads over SSH."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware import __version__
from firmware.clock import ClockSync
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore, local_day
from firmware.trust import TrustStore
from firmware.store.statefiles import write_atomic
from firmware.uplink.mqtt import MqttUplink

if TYPE_CHECKING:
    from firmware.scanner.camera import SupervisedCamera

OFFLINE = b'{"state":"offline"}'
FILE = "status.json"
RULE_FAILED = "rejected:rule_failed:"  # gate.Answer.tally of a failed business rule, before its Identifier


def snapshot(stats: Stats, store: SqliteRecordStore | None, faults: Faults, trust: TrustStore, clock: ClockSync,
             uplink: MqttUplink | None = None, camera: "SupervisedCamera | None" = None,
             passback: dict[str, Any] | None = None, card_alert: int | None = None) -> dict[str, Any]:
    """`store` None: it could not be opened (the storage fault says why), so nothing is known of the queue.
    `passback`: the venue share's status (firmware.passback.share): which memory answers, and its counts.
    `card_alert`: `[cards] daily_visits_alert`, where the venue takes printed cards."""
    depth, oldest = store.depth() if store is not None else (None, None)
    now = time.time()
    current = trust.current()
    decode = list(stats.decode_ms)
    active = faults.active()
    return {
        "state": "online",
        "version": __version__,
        "uptime_s": round(time.monotonic() - stats.started),
        "written_at": round(now, 3),
        "pid": os.getpid(),
        "camera": None if camera is None else {"lost": camera.lost, "reopened": camera.reopened,
                                               "dropped": camera.dropped},
        "frames": stats.frames,
        "fps": round(stats.fps(), 1),
        "decode_ms": round(sum(decode) / len(decode), 2) if decode else None,
        "workers": stats.workers(),
        "queue_depth": depth,
        "oldest_queued_age_s": round(now - oldest) if oldest is not None else None,
        "last_delivery": stats.last_delivery,
        "broker": None if uplink is None else {
            "connected": uplink.connected.is_set(),
            "session_resumed": uplink.session_present,
            "reconnects": uplink.reconnects,
        },
        "passback": passback,
        "cards_today": None if store is None or card_alert is None else cards_today(store, now, card_alert),
        "clock_sync": clock.synchronised(),
        "trust_seq": current.seq if current else None,
        "trust_not_after": current.not_after if current else None,
        # EU DCC business rules failed, by the rule's Identifier (stats' decisions): which rule turns people away.
        "rules_failed": {label.split(":", 2)[2]: n for label, n in sorted(stats.decisions.items())
                         if label.startswith(RULE_FAILED)},
        "faults": active,
        # A number beside the names: a metrics exporter reads numbers, not the keys of an object.
        "fault_count": len(active),
    }


def cards_today(store: SqliteRecordStore, now: float, alert: int) -> dict[str, int]:
    """Today's printed-card visits as counts: how many cards, how many visits, the most by one card, and how many
    cards came more often than `alert` (a card copied and passed round shows so). Never which card."""
    visits = store.card_visits(local_day(now))
    return {"cards": len(visits), "visits": sum(visits), "most_by_one_card": visits[0] if visits else 0,
            "over_alert": sum(1 for n in visits if n > alert), "alert": alert}


def write_file(path: Path, snapshot: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half; world-readable (past the unit's UMask): counts, never a token."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(snapshot).encode(), mode=0o644)
