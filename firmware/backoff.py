"""Reconnect delays: exponential, capped, with full jitter.

After a broker outage every device of a city retries; without jitter they
would all come back in the same second, again and again ("thundering herd").
Each delay is drawn uniformly between half the base and the current ceiling,
which doubles per failed attempt up to the cap, and starts over on success.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None):
        if not 0 < base_s <= cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self.base_s, self.cap_s = base_s, cap_s
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return self._rng.uniform(self.base_s / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
