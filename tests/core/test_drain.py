"""The drain on fakes at its seams (record store, uplink): a record leaves the card on a success PUBACK only.

The drain runs in its own thread, as in the daemon; the tests play the broker by calling the acknowledgement
callbacks the fake uplink kept, and wait (bounded) on what the seams see: a publish, a delete, a read that
reached the end of the store, a look at the connection.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import wait_until
from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.uplink.drain import HANDOFF, Drain

VISITS, STATUS = "qrgate/v1/cafe-1/door-1/visits", "qrgate/v1/cafe-1/door-1/status"


def settle(predicate) -> None:
    """What the drain does in a round takes milliseconds; the bound only stops a broken drain hanging the run."""
    wait_until(predicate, timeout=10)


class Store:
    """The outbox: rows by position, as SQLite's rowids; `ends` counts the reads that found nothing more."""

    def __init__(self, rids: list[bytes]):
        self.rows: dict[int, tuple[bytes, bytes]] = {}
        self.deleted: list[bytes] = []
        self.failing: StorageError | None = None  # raised by delete, as by a failing card
        self.ends = 0
        self.read: list[bytes] = []  # every rid a read returned, in order
        self.limits: list[int] = []
        self.lock = threading.Lock()
        for rid in rids:
            self.add(rid)

    def add(self, rid: bytes, position: int | None = None) -> None:
        with self.lock:
            self.rows[position or max(self.rows, default=0) + 1] = (rid, b"wire-" + rid)

    def after(self, position, limit):
        with self.lock:
            rows = [(k, rid, wire) for k, (rid, wire) in sorted(self.rows.items())
                    if position is None or k > position][:limit]
            if not rows:
                self.ends += 1
            self.limits.append(limit)
            self.read += [rid for _, rid, _ in rows]
            return rows

    def delete(self, rids):
        rids = list(rids)
        with self.lock:
            if self.failing is not None:
                raise self.failing
            self.deleted += rids
            self.rows = {k: v for k, v in self.rows.items() if v[0] not in set(rids)}

    def depth(self):
        with self.lock:
            return len(self.rows), None

    def rids(self) -> set[bytes]:
        with self.lock:
            return {rid for rid, _ in self.rows.values()}


class Connection(threading.Event):
    """The uplink's `connected`; `looks` counts how often the drain asked, a round's sync point while offline."""

    def __init__(self):
        super().__init__()
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return super().is_set()


class Uplink:
    """Takes every publish (unless told to refuse the next ones) and keeps its ack callback; the test plays the
    broker."""

    def __init__(self):
        self.connected = Connection()
        self.connected.set()
        self.sent: dict[bytes, list] = {}  # rid -> the on_ack of each time it was handed over
        self.order: list[bytes] = []  # each hand-over, in order
        self.statuses: list[tuple[dict, int, bool]] = []
        self.cannot_take = 0  # so many publishes of visits return False, as paho's when it cannot take one
        self.lock = threading.Lock()

    def publish(self, topic, payload, qos=1, retain=False, on_ack=None):
        with self.lock:
            if topic == STATUS:
                self.statuses.append((json.loads(payload), qos, retain))
                return True
            assert topic == VISITS and qos == 1
            if self.cannot_take:
                self.cannot_take -= 1
                return False
            self.sent.setdefault(payload.removeprefix(b"wire-"), []).append(on_ack)
            self.order.append(payload.removeprefix(b"wire-"))
        return True

    def times(self, rid: bytes) -> int:
        with self.lock:
            return len(self.sent.get(rid, []))

    def handed(self) -> int:
        with self.lock:
            return sum(len(acks) for acks in self.sent.values())

    def ack(self, rid: bytes, ok: bool = True, reason: str = "") -> None:
        with self.lock:
            callback = self.sent[rid][-1]
        callback(ok, reason)


class Running:
    def __init__(self, store: Store, uplink: Uplink, **kw):
        self.store, self.uplink, self.faults, self.stats = store, uplink, Faults(), Stats()
        self.drain = Drain(store, uplink, VISITS, STATUS,
                           status=lambda: {"state": "online", "queue_depth": store.depth()[0]},
                           stats=self.stats, faults=self.faults, **{"window": 2, "retry_refused_s": 3600, **kw})
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> "Running":
        """Run the drain in a thread, woken as the link wakes it on connecting; again after `close`."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.drain.run, args=(self.stop,), daemon=True)
        self.thread.start()
        self.drain.wake()
        return self

    def round(self) -> None:
        """Wake the drain and wait until it has read to the end of the store once more."""
        ends = self.store.ends
        self.drain.wake()
        settle(lambda: self.store.ends > ends)

    def close(self) -> None:
        """Stop the drain and wait for its thread: after this, every round it began is over."""
        self.stop.set()
        self.drain.wake()
        if self.thread is not None:
            self.thread.join(10)
            assert not self.thread.is_alive(), "the drain did not stop"


@pytest.fixture
def drain_on():
    started: list[Running] = []

    def start(store: Store, uplink: Uplink | None = None, **kw) -> Running:
        started.append(Running(store, uplink or Uplink(), **kw).start())
        return started[-1]

    yield start
    for r in started:
        r.close()


def test_only_a_success_puback_deletes_and_a_refused_record_stays_a_fault(drain_on):
    r = drain_on(Store([b"a", b"b", b"c"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b", b"c"})
    assert r.store.deleted == []  # handed to paho is not delivered
    r.uplink.ack(b"a")
    r.uplink.ack(b"b", ok=False, reason="Not authorized")
    settle(lambda: r.store.deleted == [b"a"])
    assert "Not authorized" in r.faults.active()["publish_refused"]  # the status names the broker's reason
    r.uplink.ack(b"c")
    settle(lambda: r.store.deleted == [b"a", b"c"])
    r.round()
    assert r.store.rids() == {b"b"} and r.uplink.times(b"b") == 1  # held, not resent at once


def test_deliveries_and_refusals_are_counted_and_the_last_delivery_time_kept_for_the_status(drain_on):
    before = time.time()
    r = drain_on(Store([b"a", b"b", b"c"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b", b"c"})
    assert r.stats.last_delivery is None  # nothing is delivered until a PUBACK says so
    r.uplink.ack(b"a")
    r.uplink.ack(b"b")
    r.uplink.ack(b"c", ok=False, reason="Quota exceeded")
    settle(lambda: r.stats.acked == 2)
    assert r.stats.refused == 1
    assert before <= r.stats.last_delivery <= time.time()  # wall clock, as `qrgate status` shows it


def test_a_success_after_a_refusal_ends_the_publish_refused_fault(drain_on):
    r = drain_on(Store([b"a", b"b"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    r.uplink.ack(b"a", ok=False, reason="Not authorized")
    assert "publish_refused" in r.faults.active()
    r.uplink.ack(b"b")
    assert "publish_refused" not in r.faults.active()


def test_a_refused_record_is_tried_again_once_its_hold_is_over(drain_on):
    r = drain_on(Store([b"a"]), retry_refused_s=0)
    settle(lambda: r.uplink.times(b"a") == 1)
    r.uplink.ack(b"a", ok=False, reason="Not authorized")
    settle(lambda: r.uplink.times(b"a") == 2)
    assert r.store.rids() == {b"a"}
    r.uplink.ack(b"a")
    settle(lambda: r.store.deleted == [b"a"])


def test_a_refused_record_is_offered_again_30_s_later_by_default():
    """The figure docs/promises.md gives: often enough to notice a mended ACL, seldom enough not to spin.
    (A drain built without the figure holds a refused record for `retry_refused_s`; the signature's
    default alone would not do: mutmut's trampoline keeps the original signature.)"""
    store = Store([])
    drain = Drain(store, Uplink(), VISITS, STATUS, status=dict, stats=Stats(), faults=Faults())
    assert drain.retry_refused_s == 30.0


def test_the_refused_record_accepted_on_its_retry_ends_the_publish_refused_fault(drain_on):
    r = drain_on(Store([b"a"]), retry_refused_s=0)
    settle(lambda: r.uplink.times(b"a") == 1)
    r.uplink.ack(b"a", ok=False, reason="Not authorized")
    settle(lambda: r.uplink.times(b"a") == 2)
    r.uplink.ack(b"a")  # the broker's ACL was mended
    settle(lambda: r.store.deleted == [b"a"])
    assert "publish_refused" not in r.faults.active()


def test_a_refused_record_is_not_resent_by_a_reconnect_while_it_is_held(drain_on):
    r = drain_on(Store([b"a", b"b"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    r.uplink.ack(b"a", ok=False, reason="Not authorized")
    r.drain.reconnected()
    settle(lambda: r.uplink.times(b"b") == 2)  # b was not acknowledged: sent again
    assert r.uplink.times(b"a") == 1


def test_after_a_reconnect_what_was_not_acknowledged_is_sent_again(drain_on):
    r = drain_on(Store([b"a", b"b"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    r.uplink.ack(b"a")
    settle(lambda: r.store.deleted == [b"a"])
    r.drain.reconnected()
    settle(lambda: r.uplink.times(b"b") == 2)
    assert r.uplink.times(b"a") == 1


def test_a_record_in_flight_is_not_handed_over_twice_without_a_reconnect(drain_on):
    r = drain_on(Store([b"a", b"b"]))
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    r.round()
    r.round()
    assert r.uplink.times(b"a") == r.uplink.times(b"b") == 1


def test_no_more_than_window_times_handoff_records_wait_unacknowledged(drain_on):
    r = drain_on(Store([bytes([i]) for i in range(3 * 2 * HANDOFF)]), window=2)
    limit = 2 * HANDOFF
    settle(lambda: r.uplink.handed() == limit)
    r.close()
    assert r.uplink.handed() == limit
    first = sorted(r.uplink.sent)
    assert first == [bytes([i]) for i in range(limit)]  # oldest first
    for rid in first[:3]:
        r.uplink.ack(rid)
    r.start()
    settle(lambda: r.store.deleted == first[:3])
    settle(lambda: r.uplink.handed() == limit + 3)  # each acknowledgement made room for one more
    r.close()
    assert r.uplink.handed() == limit + 3


def test_every_record_leaves_in_order_as_the_acknowledgements_come(drain_on):
    rids = [bytes([i]) for i in range(40)]
    r = drain_on(Store(rids), window=2)
    for rid in rids:
        settle(lambda: r.uplink.times(rid) == 1)
        r.uplink.ack(rid)
    settle(lambda: r.store.deleted == rids)
    assert all(r.uplink.times(rid) == 1 for rid in rids) and r.stats.acked == 40


def test_a_record_paho_cannot_take_now_is_handed_over_again_later(drain_on):
    uplink = Uplink()
    uplink.cannot_take = 1
    r = drain_on(Store([b"a", b"b"]), uplink)
    settle(lambda: uplink.cannot_take == 0)
    r.drain.wake()  # a record stored, say: no reconnect needed
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    assert r.uplink.times(b"a") == r.uplink.times(b"b") == 1
    r.uplink.ack(b"a")
    r.uplink.ack(b"b")
    settle(lambda: r.store.deleted == [b"a", b"b"])


def test_records_stored_while_the_drain_runs_are_sent_even_when_the_store_numbers_them_anew(drain_on):
    r = drain_on(Store([b"a"]))
    settle(lambda: r.uplink.times(b"a") == 1)
    r.store.add(b"b")
    r.drain.wake()
    settle(lambda: r.uplink.times(b"b") == 1)
    r.uplink.ack(b"a")
    r.uplink.ack(b"b")
    settle(lambda: r.store.rids() == set())
    r.store.add(b"c", position=1)  # SQLite starts rowids over once the table is empty
    r.drain.wake()
    settle(lambda: r.uplink.times(b"c") == 1)


def test_nothing_is_sent_while_disconnected_and_everything_once_connected(drain_on):
    uplink = Uplink()
    uplink.connected.clear()
    r = drain_on(Store([b"a"]), uplink)
    settle(lambda: uplink.connected.looks >= 1)  # a round looked: offline, it hands nothing over
    assert uplink.handed() == 0 and uplink.statuses == []
    uplink.connected.set()
    r.drain.reconnected()  # the same drain, still running
    settle(lambda: uplink.times(b"a") == 1)
    assert uplink.statuses[0][0]["state"] == "online"


def test_the_status_is_published_retained_on_connecting_and_on_a_fault_change_not_with_every_record(drain_on):
    r = drain_on(Store([b"a", b"b"]), status_interval_s=3600)
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    assert r.uplink.statuses == [({"state": "online", "queue_depth": 2}, 1, True)]  # QoS 1, retained
    r.uplink.ack(b"a")
    settle(lambda: r.store.deleted == [b"a"])
    r.round()
    assert len(r.uplink.statuses) == 1  # the interval has not passed
    r.drain.wake(status=True)  # as the daemon does when the faults change
    settle(lambda: len(r.uplink.statuses) == 2)
    assert r.uplink.statuses[1] == ({"state": "online", "queue_depth": 1}, 1, True)
    r.drain.reconnected()
    settle(lambda: len(r.uplink.statuses) == 3)


def test_the_status_is_published_again_each_interval(drain_on):
    r = drain_on(Store([]), status_interval_s=0.0)
    settle(lambda: len(r.uplink.statuses) == 1)
    r.round()
    r.round()
    assert len(r.uplink.statuses) >= 3


def test_a_card_that_fails_to_delete_is_the_storage_fault_and_the_record_is_sent_again(drain_on):
    store = Store([b"a"])
    store.failing = StorageError("disk I/O error")
    r = drain_on(store)
    settle(lambda: r.uplink.times(b"a") == 1)
    r.uplink.ack(b"a")
    settle(lambda: r.faults.active().get("storage") == "disk I/O error")
    store.failing = None
    settle(lambda: r.uplink.times(b"a") == 2)  # a duplicate the custodian drops, never a loss
    r.uplink.ack(b"a")
    settle(lambda: store.deleted == [b"a"])


def test_acknowledgements_that_came_as_the_drain_stopped_are_deleted_before_run_returns(drain_on):
    store = Store([b"a", b"b"])
    r = drain_on(store)
    settle(lambda: set(r.uplink.sent) == {b"a", b"b"})
    r.close()
    r.uplink.ack(b"a")  # paho's network thread is still up while the link closes
    r.uplink.ack(b"b")
    assert store.deleted == []
    r.drain.run(r.stop)  # already stopped: only the last flush
    assert store.deleted == [b"a", b"b"] and r.stats.acked == 2


def test_wait_empty_says_whether_the_store_emptied_in_time(drain_on):
    store = Store([])
    r = Running(store, Uplink())
    assert r.drain.wait_empty(0) is True
    store.add(b"a")
    assert r.drain.wait_empty(0.01) is False
    r = drain_on(store)
    settle(lambda: r.uplink.times(b"a") == 1)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: r.drain.wait_empty(10) and done.set())
    waiter.start()
    r.uplink.ack(b"a")
    waiter.join(10)
    assert done.is_set()


def test_a_reconnect_sends_again_from_the_oldest_unacknowledged_record(drain_on):
    rids = [bytes([i]) for i in range(3 * 2 * HANDOFF)]
    r = drain_on(Store(rids), window=2)
    limit = 2 * HANDOFF
    settle(lambda: r.uplink.handed() == limit)
    r.drain.reconnected()
    settle(lambda: r.uplink.handed() == 2 * limit)
    assert r.uplink.order[limit:] == rids[:limit]  # the same records again, oldest first, not the next ones


def test_a_refused_record_whose_hold_is_over_goes_before_newer_records(drain_on):
    rids = [bytes([i]) for i in range(3 * 2 * HANDOFF)]
    r = drain_on(Store(rids), window=2, retry_refused_s=0)
    limit = 2 * HANDOFF
    settle(lambda: r.uplink.handed() == limit)
    r.uplink.ack(rids[0], ok=False, reason="Not authorized")  # room for one more
    r.drain.wake()
    settle(lambda: r.uplink.handed() == limit + 1)
    assert r.uplink.order[limit] == rids[0]


def test_one_round_hands_over_a_whole_window_so_the_wire_never_runs_dry(drain_on):
    """Records are read and handed over in the same round: what one read brought in leaves at once."""
    uplink = Uplink()
    rids = [bytes([i]) for i in range(3 * 2 * HANDOFF)]
    store = Store(rids)
    r = drain_on(store, uplink, window=2)
    settle(lambda: len(store.read) > 0)
    uplink.connected.clear()  # no later round hands anything over
    r.close()
    assert uplink.order == rids[:2 * HANDOFF]


def test_a_stored_record_leaves_in_the_round_its_wake_starts(drain_on):
    uplink = Uplink()
    store = Store([])
    r = drain_on(store, uplink)
    r.round()
    store.add(b"a")
    r.drain.wake()  # as the gate does once the record is stored
    settle(lambda: b"a" in store.read)
    uplink.connected.clear()  # no later round hands anything over
    r.close()
    assert uplink.order == [b"a"]


def test_a_long_backlog_is_read_a_window_at_a_time(drain_on):
    """The card may hold days of records: the drain holds only what the window can take, never the backlog."""
    rids = [i.to_bytes(2, "big") for i in range(500)]
    r = drain_on(Store(rids), window=2)
    settle(lambda: r.uplink.handed() == 2 * HANDOFF)
    for rid in rids[:40]:
        settle(lambda: r.uplink.times(rid) == 1)
        r.uplink.ack(rid)
    settle(lambda: r.store.deleted == rids[:40])
    assert max(r.store.limits) <= 2 * HANDOFF


def test_wait_empty_notices_the_store_emptied_while_it_waits(drain_on):
    """Even with less than a second to wait, as `drain_on_exit_s` may give it."""
    store = Store([b"a"])
    drain = Running(store, Uplink()).drain
    looks = iter([1, 0])
    store.depth = lambda: (next(looks), None)  # delivered by the time of its second look
    assert drain.wait_empty(0.5) is True
