"""What a door knows of the tokens accepted at its venue: its own, and its peers', each until its window ends.

Bounded whatever a peer sends: a hash is held no longer than its seen_until
(and never more than MAX_HOLD_S ahead), and past CAPACITY the soonest-expiring
hashes go first, so a flood costs the oldest knowledge, not the device's memory.
Its own hashes are kept beside the peers' so that a token this door accepted
stays "already checked in" here even when a peer says it accepted it too (both
doors at once, before either heard of the other).
"""

from __future__ import annotations

import heapq
import threading

# A busy door decides a token every two seconds; a venue of 8 doors with 1-hour DCC rechecks holds ~14,000
# live hashes. 16,384 entries of about 200 bytes each (dict slot, tuple, bytes, heap entry) is ~3 MB.
CAPACITY = 16_384
# The longest window a door gives a token: a DCC's recheck_s (at most a day) plus the skew.
MAX_HOLD_S = 86_400 + 120


class PeerMemory:
    """Thread-safe: paho's thread notes peers' hashes while the scan loop asks."""

    def __init__(self, capacity: int = CAPACITY, max_hold_s: int = MAX_HOLD_S):
        self.capacity, self.max_hold_s = capacity, max_hold_s
        self.evicted = 0  # live hashes dropped for room: knowledge lost to a flood (or a venue too busy)
        self._entries: dict[bytes, tuple[int, bool]] = {}  # hash -> (until, own)
        self._heap: list[tuple[int, bytes]] = []  # (until, hash); an entry whose until moved on is stale
        self._lock = threading.Lock()

    def note(self, hash: bytes, until: int, now: int, own: bool = False) -> bool:
        """Remember `hash` until `until`; False when it is already over (nothing kept)."""
        until = min(until, now + self.max_hold_s)
        if until < now:
            return False
        with self._lock:
            old = self._entries.get(hash)
            if old is not None:
                until, own = max(until, old[0]), own or old[1]
                if (until, own) == old:
                    return True
            self._entries[hash] = (until, own)
            if old is None or until != old[0]:
                heapq.heappush(self._heap, (until, hash))
            self._trim(now)
        return True

    def elsewhere(self, hash: bytes, now: int) -> bool:
        """A peer accepted this token and its window is not over (and this door did not accept it itself)."""
        with self._lock:
            entry = self._entries.get(hash)
        return entry is not None and entry[0] >= now and not entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def peers(self) -> int:
        with self._lock:
            return sum(not own for _, own in self._entries.values())

    def _trim(self, now: int) -> None:
        heap, entries = self._heap, self._entries
        while heap and (heap[0][0] < now or len(entries) > self.capacity):
            until, hash = heapq.heappop(heap)
            entry = entries.get(hash)
            if entry is not None and entry[0] == until:
                del entries[hash]
                self.evicted += until >= now
        if len(heap) > 2 * self.capacity:  # stale entries of hashes seen again: rebuilt, so the heap stays bounded
            self._heap = [(until, h) for h, (until, _) in entries.items()]
            heapq.heapify(self._heap)
