"""Hard frames read on the machine's spare cores, without delaying the easy ones.

The loop's thread reads every frame fast (`StagedDecoder.first`) and answers
what it read; a frame it could not read is offered here, and a worker thread
spends more on it (`more`: other binarizers, sharpened crops, zbar). Threads,
not processes: zxing-cpp, zbar (through ctypes) and OpenCV release the GIL in
every call a worker makes (`qrgate bench gil`), so the frame is shared in place,
not copied. A frame offered is the camera's buffer, held until the worker is
done with it and then released: at most one per busy worker and one waiting.

Newest wins: one frame waits at most; a newer one takes its place (the older
is released, counted `superseded`), so no backlog forms. A worker's answer
for a frame older than `late_s` when it is ready is dropped (`late`): the
visitor has moved on or been read from a newer frame, and a light for the
last visitor must not greet the next. Answers go through `deliver` (the
loop's one way to decide, which dedupes and keeps the gate's order), on the
worker's thread. Workers run niced below the loop (`WORKER_NICE`), so that on
a busy machine the loop's own reads and answers come first; the few answers
a worker finds wait for the machine with it.

A worker that raises is replaced by a new one with a fresh decoder; one that
is busy on a frame past `hang_s` is abandoned (a thread stuck in native code
cannot be stopped) and replaced, as long as no more are stuck than there are
workers; once stuck ones return, the pool is made whole again.
Either is the fault `decoder`, until `fault_hold_s` has passed with no new
trouble and no abandoned worker still stuck. A native crash (a segfault) is
not caught here: it ends the daemon, which systemd restarts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from firmware.faults import Faults
from firmware.scanner.decode import FirstRead, StagedDecoder
from firmware.scanner.frames import Frame
from firmware.stats import Stats

logger = logging.getLogger(__name__)

FAULT = "decoder"


def default_count() -> int:
    """The cores this process may run on, minus the loop's own."""
    return max(0, len(os.sched_getaffinity(0)) - 1)


WORKER_NICE = 5  # how much lower than the loop's thread a worker runs (Linux: a thread's own nice value)


def _yield_to_the_loop() -> None:
    """Run this thread below the loop, the gate and the LEDs: on a busy machine a hard frame waits, not a green."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE)
    except OSError as exc:  # noqa: PERF203 - a sandbox may forbid it; the pool works all the same
        logger.info("decode workers run at the loop's priority: %s", exc.strerror)


def _release(frame: Frame) -> None:
    """Give a frame back; a camera that failed meanwhile may refuse, which must not end a worker."""
    try:
        frame.release()
    except Exception as exc:  # noqa: BLE001 - the camera's supervisor reopens it; the frame is gone either way
        logger.warning("giving a frame back failed: %s", type(exc).__name__)


class _Worker:
    thread: threading.Thread  # set as it is started

    def __init__(self, number: int, decoder: StagedDecoder):
        self.number = number
        self.decoder = decoder
        self.busy_since: float | None = None  # the pool's clock when it took its frame
        self.abandoned = False


class DecodePool:
    def __init__(self, make_decoder: Callable[[], StagedDecoder], count: int,
                 deliver: Callable[[Frame, list[str]], None], faults: Faults, stats: Stats,
                 late_s: float = 0.5, hang_s: float = 2.0, fault_hold_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.make_decoder, self.count = make_decoder, count
        self.deliver = deliver
        self.faults, self.stats = faults, stats
        self.late_s, self.hang_s, self.fault_hold_s = late_s, hang_s, fault_hold_s
        self.clock = clock
        self._cv = threading.Condition()
        self._waiting: tuple[Frame, FirstRead] | None = None
        self._workers: list[_Worker] = []
        self._stuck: list[_Worker] = []  # abandoned, still inside a call
        self._trouble_at: float | None = None  # the clock at the last crash or hang
        self._numbers = 0
        self._closed = False
        for _ in range(count):
            self._start()

    # -- the loop's side -------------------------------------------------------------------------------------------

    def offer(self, frame: Frame, first: FirstRead) -> None:
        """Hand over a frame the fast read could not read; the pool releases it (now, if it is shut)."""
        with self._cv:
            if self._closed:
                older: Frame | None = frame
            else:
                older = self._waiting[0] if self._waiting is not None else None
                self._waiting = (frame, first)
                self._cv.notify()
        if older is not None:
            _release(older)
            if older is not frame:
                self.stats.add("superseded")

    def check(self) -> None:
        """On each turn of the loop: replace workers hung on a frame, and clear the fault once all is well."""
        now = self.clock()
        with self._cv:
            hung = [w for w in self._workers if w.busy_since is not None and now - w.busy_since > self.hang_s]
            for w in hung:
                w.abandoned = True
                self._workers.remove(w)
                self._stuck.append(w)
            self._stuck = [w for w in self._stuck if w.busy_since is not None]
            # Back to `count` working, but never more threads stuck and working than twice that: a frame that
            # hangs every worker must not make threads without end.
            replace = max(0, min(self.count - len(self._workers),
                                 2 * self.count - len(self._stuck) - len(self._workers)))
            quiet = self._trouble_at is None or now - self._trouble_at >= self.fault_hold_s
        for w in hung:
            self._trouble(f"decode worker {w.number} hung on a frame for over {self.hang_s:g} s", now)
        for _ in range(replace):
            self._start()
        if not hung and quiet and not self._stuck:
            self._trouble_at = None
            self.faults.clear(FAULT)

    @property
    def working(self) -> int:
        """Workers able to take a frame (not abandoned)."""
        with self._cv:
            return len(self._workers)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the workers once they have read the frame waiting (a replay's last), within `timeout_s`."""
        with self._cv:
            self._closed = True
            threads = [w.thread for w in self._workers]
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cv:  # every worker hung: the frame goes back unread
            waiting, self._waiting = self._waiting, None
        if waiting is not None:
            _release(waiting[0])

    # -- the workers -----------------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._numbers += 1
            worker = _Worker(self._numbers, self.make_decoder())
            worker.thread = threading.Thread(target=self._work, args=(worker,), name=f"decode-{worker.number}",
                                             daemon=True)
            self._workers.append(worker)
        worker.thread.start()

    def _work(self, worker: _Worker) -> None:
        _yield_to_the_loop()
        while True:
            with self._cv:
                while self._waiting is None and not self._closed:
                    self._cv.wait()
                if self._waiting is None:  # closed, and nothing left to read
                    return
                (frame, first), self._waiting = self._waiting, None
                worker.busy_since = self.clock()
            try:
                texts = worker.decoder.more(frame.gray, first)
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one frame: this worker is replaced
                failure: Exception | None = exc
            else:
                failure = None
            finally:
                _release(frame)  # the camera has its buffer back before the visitor is answered
            with self._cv:
                worker.busy_since = None
                if worker.abandoned:  # replaced while it hung: whatever it read is long late
                    return
                if failure is not None:
                    self._workers.remove(worker)
            if failure is not None:
                logger.error("decode worker %d failed on a frame: %s", worker.number, type(failure).__name__)
                self._trouble(f"decode worker {worker.number} failed on a frame ({type(failure).__name__}); "
                              "replaced", self.clock())
                self._start()
                return
            if not texts:
                continue
            if self.clock() - frame.t > self.late_s:
                self.stats.add("late")
                continue
            self.stats.read_by_worker(frame.seq, texts)
            self.deliver(frame, texts)

    def _trouble(self, why: str, now: float) -> None:
        self._trouble_at = now
        self.stats.add("workers_replaced")
        self.faults.set(FAULT, why)
