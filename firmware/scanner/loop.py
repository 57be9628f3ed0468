"""The scan loop: newest frame → decode in place → decide once per code → answer.

One thread does it in order: a frame's buffer goes back to the camera as
soon as it is decoded, and the answer is shown only after the record is
durable. Stale frames are the source's to drop; this loop never queues them.
Every turn, with a frame (once it is read) or with none from a silent camera,
calls `on_turn`: the systemd watchdog is fed from here, so a loop that stalls
is restarted, and the daemon is READY after its first frame's turn.

With a pool of decode workers (scanner/workers.py), this thread reads each
frame fast and hands the frames it could not read to the pool; a worker's
answer comes back through `_decide`, the one way to a decision, which holds a
lock: one code is decided once, in one order, whichever thread read it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generator, Protocol

from numpy.typing import NDArray

from firmware.events import Decision
from firmware.gate import Answer
from firmware.leds import patterns
from firmware.leds.patterns import Pattern
from firmware.scanner.decode import Decoder, FirstRead
from firmware.scanner.dedupe import Dedupe
from firmware.scanner.frames import Frame
from firmware.stats import Stats
from firmware.tokens.verdict import Kind

logger = logging.getLogger(__name__)


class Camera(Protocol):
    """Frames until `stop`, or None on a turn with no frame (scanner.camera.SupervisedCamera)."""

    @property
    def dropped(self) -> int: ...

    def frames(self, stop: threading.Event) -> Generator[Frame | None, None, None]: ...


class Decider(Protocol):
    def decide(self, text: str, now: float) -> Answer: ...  # gate.Gate


class Pool(Protocol):
    """Decode workers for the frames the fast read missed (scanner.workers.DecodePool)."""

    def offer(self, frame: Frame, first: FirstRead) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


class Feedback(Protocol):
    def show(self, pattern: Pattern, door: bool = False) -> None:
        """Start `pattern` (and pulse the door relay); never blocks the loop (leds.feedback.GpioFeedback)."""


class ScanLoop:
    def __init__(
        self,
        camera: Camera,
        decoder: Decoder,
        gate: Decider,
        feedback: Feedback,
        stats: Stats,
        on_decision: Callable[[Decision], None],
        hold_s: float = 1.5,
        door: bool = False,
        clock: Callable[[], float] = time.time,
        on_turn: Callable[[Frame | None], None] = lambda frame: None,
    ):
        self.on_turn = on_turn
        self.pool: Pool | None = None  # set by `use_pool`; a decoder alone reads every frame whole
        self._first: Callable[[NDArray[Any]], FirstRead] | None = None  # the decoder's fast read, with a pool
        self.camera, self.decoder, self.gate, self.feedback = camera, decoder, gate, feedback
        self.stats = stats
        self.on_decision = on_decision
        self.dedupe = Dedupe(hold_s)
        self.door = door
        self.clock = clock
        self._deciding = threading.Lock()

    def use_pool(self, pool: Pool) -> None:
        """From now on the loop reads frames fast and offers the pool those it missed (a StagedDecoder only)."""
        first = getattr(self.decoder, "first", None)
        if first is None:
            raise TypeError(f"the {type(self.decoder).__name__} decodes in one stage: it cannot use workers")
        self._first, self.pool = first, pool

    def run(self, stop: threading.Event) -> None:
        frames = self.camera.frames(stop)
        try:
            for frame in frames:
                self._turn(frame, stop)
                if stop.is_set():  # leave before the camera is asked again: it would close under the workers
                    break
        finally:
            if self.pool is not None:
                self.pool.close()  # the workers give back their frames before the camera closes
            frames.close()

    def _turn(self, frame: Frame | None, stop: threading.Event) -> None:
        """One frame (or a turn with none) through, then `on_turn`: a frame that comes once stopped goes back
        unread."""
        if self.pool is not None:
            self.pool.check()
        if frame is not None and stop.is_set():
            frame.release()
        elif frame is not None:
            t0 = time.monotonic()
            texts = self._read(frame)
            decoded = time.monotonic()
            self._decide(frame, texts)
            self.stats.scanned(frame.seq, texts, (decoded - t0) * 1000, (time.monotonic() - frame.t) * 1000,
                               self.camera.dropped)
        self.on_turn(frame)

    def _read(self, frame: Frame) -> list[str]:
        """The frame's codes; it is released here, or handed to the pool, which releases it."""
        offered = False
        try:
            if self._first is None:
                return self.decoder.decode(frame.gray)
            first = self._first(frame.gray)
            if not first.texts:
                assert self.pool is not None  # set with `_first`
                self.pool.offer(frame, first)
                offered = True
            return first.texts
        except Exception:  # a decoder bug on one frame must not stop the entrance
            logger.exception("decoder failed on a frame")
            return []
        finally:
            if not offered:
                frame.release()  # the camera has its buffer back before the visitor is answered

    def recovered(self, frame: Frame, texts: list[str]) -> None:
        """A worker's answer for `frame` (its buffer already released): decided as the loop's own are."""
        self._decide(frame, texts)

    def _decide(self, frame: Frame, texts: list[str]) -> None:
        if not texts:
            return
        with self._deciding:
            for text in self.dedupe.fresh(texts, frame.t):
                self._answer(text, frame.t)

    def _answer(self, text: str, frame_t: float) -> None:
        try:
            answer = self.gate.decide(text, self.clock())
        except Exception:  # never crash the loop on one visitor; never green either
            logger.exception("deciding a code failed")
            answer = Answer(None, patterns.FAULT, "internal_error")
        # The door opens for a new visit only: a token already checked in is let in once, not again and again.
        new_visit = answer.verdict is not None and answer.verdict.kind is Kind.ACCEPTED
        self.feedback.show(answer.pattern, door=new_visit and self.door)
        latency = (time.monotonic() - frame_t) * 1000
        self.stats.answered(answer.tally, frame_t, latency)
        decision = Decision(
            verdict=answer.label,
            reason=answer.reason,
            iss=answer.verdict.iss if answer.verdict else None,
            pattern=answer.pattern.name,
            latency_ms=round(latency, 2),
            ts=self.clock(),
            rid=answer.rid.hex() if answer.rid else None,
            rule=answer.rule,
        )
        logger.info("%s%s", decision.verdict, f" ({decision.reason})" if decision.reason else "")
        self.on_decision(decision)
