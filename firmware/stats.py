"""Counters the loop and the uplink keep, for the status message, the demo and benchmarks."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    dropped: int = 0
    decisions: Counter[str] = field(default_factory=Counter)  # verdict/reason -> count
    sealed: int = 0
    acked: int = 0
    refused: int = 0
    # the decode workers (scanner/workers.py): frames read there, answers too late, frames a newer one displaced
    # while waiting, and workers replaced after failing or hanging
    recovered: int = 0
    late: int = 0
    superseded: int = 0
    workers_replaced: int = 0
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    # a frame's arrival to the loop done with it
    frame_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10000))
    last_delivery: float | None = None  # wall clock
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))  # monotonic, the newest frames
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def scanned(self, seq: int, texts: list[str], decode_ms: float, frame_ms: float, dropped: int) -> None:
        """One frame done by the scan loop (a benchmark overrides this to keep every frame's figures)."""
        self.frames += 1
        self.frame_times.append(time.monotonic())
        self.dropped = dropped
        self.decode_ms.append(decode_ms)
        self.frame_ms.append(frame_ms)

    def workers(self) -> dict[str, int]:
        """The decode workers' counters, for status and the scan benchmark."""
        return {k: getattr(self, k) for k in ("recovered", "late", "superseded", "workers_replaced")}

    def read_by_worker(self, seq: int, texts: list[str]) -> None:
        """A frame the loop's fast read missed, read by a decode worker in time (a benchmark marks it read)."""
        self.add("recovered")

    def answered(self, label: str, frame_t: float, latency_ms: float) -> None:
        """A visitor answered: `label` is the verdict (and reason), `frame_t` when the frame arrived."""
        self.decisions[label] += 1
        self.latency_ms.append(latency_ms)

    def fps(self) -> float:
        """The rate of the newest frames (0 once none came for a second: a silent camera)."""
        times = list(self.frame_times)
        if len(times) < 2 or time.monotonic() - times[-1] > 1.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def latency(self) -> dict[str, float | None]:
        values = list(self.latency_ms)
        p95 = percentile(values, 95)
        return {
            "median": round(statistics.median(values), 2) if values else None,
            "p95": round(p95, 2) if p95 is not None else None,
        }
