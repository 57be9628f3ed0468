"""The decode pool: newest frame wins, late answers are dropped, and a worker that fails or hangs is replaced
and faulted. Real threads; the decoder is a stand-in whose stages the test holds or lets go, and the pool's
clock is the test's, so no test waits out a real timeout."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from firmware.faults import Faults
from firmware.scanner.decode import FirstRead
from firmware.scanner.frames import Frame
from firmware.scanner.workers import FAULT, DecodePool, default_count
from firmware.stats import Stats
from tests.conftest import wait_until


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Held:
    """A decoder's second stage that reads the frame's code (its first pixel) once the test lets it go."""

    made = 0

    def __init__(self, gate: threading.Event, fail_on: int | None = None):
        Held.made += 1
        self.gate, self.fail_on = gate, fail_on
        self.entered = threading.Event()

    def first(self, gray) -> FirstRead:
        return FirstRead([])

    def decode(self, gray) -> list[str]:
        return self.more(gray, FirstRead([]))

    def more(self, gray, first: FirstRead) -> list[str]:
        me = threading.current_thread()
        self.thread, self.name, self.daemon, self.first = threading.get_native_id(), me.name, me.daemon, first
        self.entered.set()
        self.gate.wait()
        code = int(gray[0, 0])
        if code == self.fail_on:
            raise RuntimeError("a decoder bug")
        return [f"KP1:code-{code}"] if code else []


class Counted(Stats):
    """The daemon's counters, also keeping each worker read as the benchmark's recorder is told it."""

    def __init__(self):
        super().__init__()
        self.reads: list = []

    def read_by_worker(self, seq, texts) -> None:
        super().read_by_worker(seq, texts)
        self.reads.append((seq, texts))


class Pool:
    """A pool of `count` workers on Held decoders, with what it delivered, released and faulted."""

    def __init__(self, count: int = 1, fail_on: int | None = None, **kw):
        self.gate, self.clock, self.delivered, self.released = threading.Event(), Clock(), [], []
        self.faults, self.stats = Faults(), Counted()
        self.decoders: list[Held] = []

        def make() -> Held:
            self.decoders.append(Held(self.gate, fail_on))
            return self.decoders[-1]

        self.pool = DecodePool(make, count, lambda frame, texts: self.delivered.append((frame.seq, texts)),
                               self.faults, self.stats, clock=self.clock, **kw)

    def frame(self, seq: int, code: int, t: float | None = None) -> Frame:
        return Frame(np.full((4, 4), code, np.uint8), seq, self.clock.now if t is None else t,
                     release=lambda: self.released.append(seq))


def test_a_frame_is_read_by_a_worker_and_released_before_its_answer_is_delivered():
    p = Pool()
    order: list = []
    p.pool.deliver = lambda frame, texts: order.append(("delivered", list(p.released), texts))
    p.gate.set()
    first = FirstRead([], located=["where the fast read saw a code"])
    p.pool.offer(p.frame(1, 7), first)
    wait_until(lambda: order)
    assert order == [("delivered", [1], ["KP1:code-7"])]
    assert p.stats.recovered == 1 and p.stats.late == 0 and p.stats.reads == [(1, ["KP1:code-7"])]
    held = p.decoders[0]
    assert held.first is first  # the worker is handed what the fast read found
    assert held.name == "decode-1" and held.daemon  # named in a thread dump; never holds the process open
    p.pool.close()


def test_a_frame_with_nothing_to_read_leaves_the_worker_ready_for_the_next():
    p = Pool()
    p.gate.set()
    p.pool.offer(p.frame(1, 0), FirstRead([]))  # code 0: nothing there
    wait_until(lambda: p.released == [1])
    p.pool.offer(p.frame(2, 2), FirstRead([]))
    wait_until(lambda: p.delivered)
    assert p.delivered == [(2, ["KP1:code-2"])] and p.stats.reads == [(2, ["KP1:code-2"])]
    p.pool.close()


def test_a_frame_that_cannot_be_given_back_is_logged_and_the_worker_goes_on(caplog):
    p = Pool()
    p.gate.set()

    def refuse():
        raise OSError("the camera is gone")

    p.pool.offer(Frame(np.full((4, 4), 3, np.uint8), 1, p.clock.now, release=refuse), FirstRead([]))
    wait_until(lambda: p.delivered)
    assert p.delivered == [(1, ["KP1:code-3"])]
    assert "giving a frame back failed: OSError" in [r.getMessage() for r in caplog.records]
    p.pool.close()


def test_the_newest_frame_wins_and_the_one_it_displaced_goes_back_to_the_camera():
    p = Pool()
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)  # the worker is busy on frame 1
    p.pool.offer(p.frame(2, 2), FirstRead([]))
    p.pool.offer(p.frame(3, 3), FirstRead([]))  # frame 2 waited; 3 takes its place
    assert p.released == [2] and p.stats.superseded == 1
    p.gate.set()
    wait_until(lambda: len(p.delivered) == 2)
    assert p.delivered == [(1, ["KP1:code-1"]), (3, ["KP1:code-3"])] and sorted(p.released) == [1, 2, 3]
    p.pool.close()


def test_an_answer_ready_after_the_visitor_has_gone_is_dropped():
    p = Pool()  # late after half a second, by default
    p.pool.offer(p.frame(0, 3), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.clock.now += 0.5  # half a second exactly: still in time
    p.gate.set()
    wait_until(lambda: p.delivered)
    p.gate.clear()
    p.decoders[0].entered.clear()
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.clock.now += 0.51  # the worker took longer than a visitor waits
    p.gate.set()
    wait_until(lambda: p.stats.late == 1)
    p.pool.offer(p.frame(2, 2), FirstRead([]))  # a frame on time is still answered
    wait_until(lambda: len(p.delivered) == 2)
    assert p.delivered == [(0, ["KP1:code-3"]), (2, ["KP1:code-2"])] and p.released == [0, 1, 2]
    p.pool.close()


def test_a_worker_that_fails_is_replaced_and_faulted_and_the_next_frame_is_read(caplog):
    p = Pool(fail_on=9)
    p.gate.set()
    p.pool.offer(p.frame(1, 9), FirstRead([]))
    wait_until(lambda: p.stats.workers_replaced == 1 and len(p.decoders) == 2 and p.pool.working == 1)
    assert p.faults.active()[FAULT] == "decode worker 1 failed on a frame (RuntimeError); replaced"
    assert "decode worker 1 failed on a frame: RuntimeError" in [r.getMessage() for r in caplog.records]
    assert p.released == [1]
    p.pool.offer(p.frame(2, 2), FirstRead([]))
    wait_until(lambda: p.delivered)
    assert p.delivered == [(2, ["KP1:code-2"])]
    p.pool.check()
    assert FAULT in p.faults.active()  # shown for a while: a technician sees it happened
    p.clock.now += 60
    p.pool.check()
    assert FAULT not in p.faults.active()
    p.pool.close()


def test_a_worker_that_hangs_is_replaced_and_faulted_until_it_returns_and_a_minute_has_passed():
    p = Pool()  # hung after 2 s on a frame; the fault shown for a minute after the last trouble, by default
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.clock.now += 2.0
    p.pool.check()
    assert p.stats.workers_replaced == 0 and FAULT not in p.faults.active()  # slow is not hung
    p.clock.now += 0.1
    p.pool.check()
    assert p.stats.workers_replaced == 1 and len(p.decoders) == 2 and p.pool.working == 1
    assert p.faults.active()[FAULT] == "decode worker 1 hung on a frame for over 2 s"
    p.clock.now += 100
    p.pool.check()
    assert FAULT in p.faults.active()  # the hung thread still holds a core
    p.gate.set()  # it returns at last: its answer is dropped, its frame released
    wait_until(lambda: p.released == [1])
    p.pool.check()
    assert FAULT not in p.faults.active() and p.delivered == []
    p.pool.offer(p.frame(2, 2), FirstRead([]))  # the replacement reads
    wait_until(lambda: p.delivered)
    assert p.delivered == [(2, ["KP1:code-2"])]
    p.pool.close()


def test_the_fault_stays_a_minute_after_the_hung_worker_returns():
    p = Pool(hang_s=1.0)
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.clock.now += 1.5
    p.pool.check()
    p.gate.set()
    wait_until(lambda: p.released == [1])
    p.clock.now += 59.9
    p.pool.check()
    assert FAULT in p.faults.active()
    p.clock.now += 0.1
    p.pool.check()
    assert FAULT not in p.faults.active()
    p.pool.close()


def test_a_pool_of_two_replaces_each_hung_worker_until_twice_its_count_of_threads():
    p = Pool(count=2, hang_s=1.0)
    for seq in range(1, 4):
        p.pool.offer(p.frame(seq, seq), FirstRead([]))
        wait_until(lambda: sum(d.entered.is_set() for d in p.decoders) == seq)
        p.clock.now += 1.5
        p.pool.check()
        if seq == 1:
            assert p.pool.working == 2 and len(p.decoders) == 3  # one replaced, not two
    assert p.pool.working == 1 and len(p.decoders) == 4  # 3 stuck and 1 working: no more threads
    assert sorted(d.name for d in p.decoders if d.entered.is_set()) == ["decode-1", "decode-2", "decode-3"]
    p.gate.set()
    p.pool.close()


def test_threads_hung_on_frames_are_bounded():
    p = Pool(count=1, hang_s=1.0)
    for seq in range(1, 5):
        p.pool.offer(p.frame(seq, seq), FirstRead([]))
        wait_until(lambda: p.decoders[-1].entered.is_set())
        p.clock.now += 1.5
        p.pool.check()
    # one working and one stuck is the most a frame that hangs every worker can make of a pool of one
    assert len(p.decoders) == 2 and p.pool.working == 0 and FAULT in p.faults.active()
    p.gate.set()  # the stuck return: the pool is whole again (the frame that waited meanwhile is long late)
    wait_until(lambda: (p.pool.check(), p.pool.working == 1)[1])
    wait_until(lambda: p.stats.late == 1)
    p.pool.offer(p.frame(5, 5), FirstRead([]))
    wait_until(lambda: p.delivered)
    assert p.delivered == [(5, ["KP1:code-5"])] and len(p.decoders) == 3
    p.pool.close()


def test_closing_reads_the_waiting_frame_then_refuses_later_ones():
    p = Pool()
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.pool.offer(p.frame(2, 2), FirstRead([]))
    p.gate.set()
    p.pool.close()
    assert p.delivered == [(1, ["KP1:code-1"]), (2, ["KP1:code-2"])] and p.released == [1, 2]
    p.pool.offer(p.frame(3, 3), FirstRead([]))
    assert p.released[-1] == 3 and len(p.delivered) == 2


def test_closing_with_every_worker_hung_gives_the_waiting_frame_back_unread():
    p = Pool()
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    p.pool.offer(p.frame(2, 2), FirstRead([]))
    p.pool.close(timeout_s=0.05)
    assert p.released == [2] and p.delivered == []
    p.gate.set()


def test_a_pool_has_workers_and_the_default_leaves_the_loop_a_core(monkeypatch):
    with pytest.raises(ValueError, match="^a pool needs at least one worker$"):
        DecodePool(lambda: Held(threading.Event()), 0, lambda f, t: None, Faults(), Stats())
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert default_count() == 3  # a Pi's four cores: three workers
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_count() == 0  # one core: the loop alone


def test_workers_run_below_the_loop_so_a_busy_machine_delays_hard_frames_not_answers():
    import os

    from firmware.scanner.workers import WORKER_NICE

    p = Pool()
    p.pool.offer(p.frame(1, 1), FirstRead([]))
    wait_until(p.decoders[0].entered.is_set)
    assert os.getpriority(os.PRIO_PROCESS, p.decoders[0].thread) == min(19, os.getpriority(os.PRIO_PROCESS, 0)
                                                                         + WORKER_NICE)
    p.gate.set()
    p.pool.close()


def test_a_machine_that_forbids_lowering_a_threads_priority_still_gets_its_workers(monkeypatch, caplog):
    import errno
    import logging
    import os

    def forbidden(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", forbidden)
    caplog.set_level(logging.INFO, logger="firmware.scanner.workers")
    p = Pool()
    p.gate.set()
    p.pool.offer(p.frame(1, 4), FirstRead([]))
    wait_until(lambda: p.delivered)
    assert p.delivered == [(1, ["KP1:code-4"])]
    assert "decode workers run at the loop's priority: Operation not permitted" in [
        r.getMessage() for r in caplog.records]
    p.pool.close()
