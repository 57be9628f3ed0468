"""Decisions as events: one JSON line each, for a venue display, a harness, or the demo's console.

An event carries the verdict, the reason, the issuer, the pattern driven, the
time from frame to verdict and, for a new visit, the rid its sealed record was
stored under (a receipt: random, and on the wire in clear anyway) and, for
`rule_failed`, the business rule's Identifier; never the token id or the QR text.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    verdict: str  # accepted | already_checked_in | rejected | fault
    reason: str | None
    iss: str | None
    pattern: str
    latency_ms: float
    ts: float  # wall clock
    rid: str | None = None  # hex, for an accepted (new) visit
    rule: str | None = None  # rule_failed: the business rule's Identifier (VR-DE-0001)

    def as_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class EventLog:
    """Appends decisions to a JSON-lines file, flushed per line (a reader sees each at once)."""

    def __init__(self, path: Path):
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, decision: Decision) -> None:
        with self._lock:
            self._file.write(decision.as_json() + "\n")

    def close(self) -> None:
        self._file.close()


def console_line(decision: Decision) -> str:
    what = decision.verdict.replace("_", " ")
    if decision.reason:
        what += f" ({decision.reason}{' ' + decision.rule if decision.rule else ''})"
    return (
        f"{time.strftime('%H:%M:%S', time.localtime(decision.ts))}  {what:<34} "
        f"{decision.iss or '-':<10} LEDs: {decision.pattern:<24} {decision.latency_ms:6.1f} ms"
    )
