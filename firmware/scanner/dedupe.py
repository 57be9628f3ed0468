"""A code is decided once, however many frames show it.

A text is fresh when it was not seen within `hold_s` before this frame. A phone
held still for ten seconds is one decision; the same token shown again after
the visitor stepped away is decided again (and found already checked in). A decode worker may read an
older frame after the loop has read a newer one: a frame's time never moves a
code's last sighting back.
"""

from __future__ import annotations


class Dedupe:
    def __init__(self, hold_s: float = 1.5):
        self.hold_s = hold_s
        self._last_seen: dict[str, float] = {}

    def fresh(self, texts: list[str], t: float) -> list[str]:
        fresh = [x for x in dict.fromkeys(texts) if t - self._last_seen.get(x, float("-inf")) > self.hold_s]
        for x in texts:
            self._last_seen[x] = max(t, self._last_seen.get(x, t))
        if len(self._last_seen) > 64:  # forget codes long out of view (they are personal)
            self._last_seen = {x: s for x, s in self._last_seen.items() if t - s <= self.hold_s}
        return fresh
