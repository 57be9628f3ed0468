"""The peer memory: each hash until its window ends, own visits apart from peers', bounded whatever comes."""

from __future__ import annotations

import threading

from firmware.passback.memory import PeerMemory

NOW = 1_750_000_000


def h(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_a_peer_hash_counts_until_its_seen_until_and_not_after():
    m = PeerMemory()
    assert m.note(h(1), NOW + 20, NOW)
    assert m.elsewhere(h(1), NOW) and m.elsewhere(h(1), NOW + 20)
    assert not m.elsewhere(h(1), NOW + 21)
    assert not m.elsewhere(h(2), NOW)


def test_a_hash_already_over_is_not_kept():
    m = PeerMemory()
    assert not m.note(h(1), NOW - 1, NOW)
    assert len(m) == 0 and not m.elsewhere(h(1), NOW - 5)


def test_expired_hashes_leave_when_the_next_comes():
    m = PeerMemory()
    m.note(h(1), NOW + 10, NOW)
    m.note(h(2), NOW + 100, NOW)
    m.note(h(3), NOW + 200, NOW + 50)  # h(1) is over by now
    assert len(m) == 2 and m.evicted == 0  # expiry is not eviction


def test_own_visits_are_never_elsewhere_even_when_a_peer_says_it_too():
    m = PeerMemory()
    m.note(h(1), NOW + 20, NOW, own=True)
    assert not m.elsewhere(h(1), NOW)
    m.note(h(1), NOW + 30, NOW)  # both doors at once: the peer's word comes after our own
    assert not m.elsewhere(h(1), NOW + 25)
    m.note(h(2), NOW + 20, NOW)
    m.note(h(2), NOW + 20, NOW, own=True)  # ours after theirs (both at once, the other order)
    assert not m.elsewhere(h(2), NOW) and m.peers() == 0


def test_a_later_seen_until_extends_and_an_earlier_does_not_shorten():
    m = PeerMemory()
    m.note(h(1), NOW + 20, NOW)
    m.note(h(1), NOW + 60, NOW)
    m.note(h(1), NOW + 5, NOW)
    assert m.elsewhere(h(1), NOW + 60) and not m.elsewhere(h(1), NOW + 61)


def test_a_peer_cannot_make_a_hash_last_past_the_longest_window():
    m = PeerMemory(max_hold_s=100)
    m.note(h(1), NOW + 10**6, NOW)
    assert m.elsewhere(h(1), NOW + 100) and not m.elsewhere(h(1), NOW + 101)


def test_past_the_cap_the_soonest_expiring_go_first():
    m = PeerMemory(capacity=3)
    for i, until in enumerate((50, 10, 40, 30)):
        m.note(h(i), NOW + until, NOW)
    assert len(m) == 3 and m.evicted == 1
    assert not m.elsewhere(h(1), NOW)  # the one ending soonest went
    assert all(m.elsewhere(h(i), NOW) for i in (0, 2, 3))


def test_a_flood_keeps_memory_bounded_heap_included():
    m = PeerMemory(capacity=100)
    for i in range(10_000):
        m.note(h(i % 150), NOW + 1 + i, NOW)  # the same hashes again and again, each time for longer
    assert len(m) == 100 and len(m._heap) <= 200
    assert all(m.elsewhere(h(i % 150), NOW) for i in range(9_900, 10_000))  # the latest are what is kept


def test_paho_noting_while_the_door_asks():
    m = PeerMemory(capacity=1000)
    done = threading.Event()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            while not done.is_set():
                m.elsewhere(h(7), NOW)
                m.peers()
        except BaseException as exc:  # a dict changed while iterated would land here
            errors.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    for i in range(20_000):
        m.note(h(i), NOW + 1 + i % 500, NOW)
    done.set()
    asker.join()
    assert errors == [] and len(m) == 1000


def test_a_hash_lasts_through_its_last_second_and_one_ending_now_is_kept():
    m = PeerMemory()
    assert m.note(h(1), NOW, NOW) and m.elsewhere(h(1), NOW)  # seen_until is inclusive, as the store's
    m.note(h(2), NOW + 10, NOW)
    m.note(h(3), NOW + 50, NOW + 10)  # trimming at h(2)'s last second must not drop it
    assert m.elsewhere(h(2), NOW + 10) and m.evicted == 0


def test_noting_the_same_again_is_kept_and_adds_nothing():
    m = PeerMemory()
    m.note(h(1), NOW + 20, NOW)
    assert m.note(h(1), NOW + 20, NOW) is True and m.note(h(1), NOW + 5, NOW) is True
    m.note(h(1), NOW + 20, NOW, own=True)  # the same window, now our own: no second heap entry
    assert len(m._heap) == 1


def test_an_extended_hash_is_dropped_at_its_new_end_not_its_old_one():
    m = PeerMemory()
    m.note(h(1), NOW + 10, NOW)
    m.note(h(1), NOW + 20, NOW)
    m.note(h(2), NOW + 100, NOW + 15)  # past the old end: the stale heap entry goes, the hash stays
    assert m.elsewhere(h(1), NOW + 15) and len(m) == 2
    m.note(h(3), NOW + 100, NOW + 30)  # past the new end: it goes
    assert not m.elsewhere(h(1), NOW + 20) and len(m) == 2


def test_evictions_are_counted_one_by_one_live_ones_only():
    m = PeerMemory(capacity=1)
    m.note(h(1), NOW, NOW)  # live through NOW
    m.note(h(2), NOW + 5, NOW)  # evicts h(1), still live: counted
    m.note(h(3), NOW + 6, NOW)  # evicts h(2): counted
    assert m.evicted == 2 and len(m) == 1
    m.note(h(4), NOW + 100, NOW + 50)  # h(3) expired meanwhile: dropped, not evicted
    assert m.evicted == 2


def test_the_heap_of_a_hash_extended_again_and_again_is_rebuilt_past_twice_the_capacity():
    m = PeerMemory(capacity=10)
    heights = []
    for i in range(500):
        m.note(h(i % 5), NOW + 1 + i, NOW)  # five hashes, each extended: every note leaves a stale heap entry
        heights.append(len(m._heap))
    assert max(heights) == 20 and min(heights[20:]) == 5  # grows to twice the capacity, then back to the live
    assert len(m) == 5 and all(m.elsewhere(h(i), NOW + 495) for i in range(5))
