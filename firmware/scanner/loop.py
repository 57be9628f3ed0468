"""The scan loop: newest frame → decode in place → decide once per code → answer.

One thread does it all, in order: a frame's buffer goes back to the camera
as soon as it is decoded, and the answer is shown only after the record is
durable. Stale frames are the source's to drop; this loop never queues them.
Every turn, with a frame or with none from a silent camera, calls `on_turn`:
the systemd watchdog is fed from here, so a loop that stalls is restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, Protocol

from firmware.events import Decision
from firmware.gate import Answer
from firmware.leds import patterns
from firmware.leds.patterns import Pattern
from firmware.scanner.decode import Decoder
from firmware.scanner.dedupe import Dedupe
from firmware.scanner.frames import Frame
from firmware.stats import Stats
from firmware.tokens.verdict import Kind

logger = logging.getLogger(__name__)


class Camera(Protocol):
    """Frames until `stop`, or None on a turn with no frame (scanner.camera.SupervisedCamera)."""

    @property
    def dropped(self) -> int: ...

    def frames(self, stop: threading.Event) -> Iterator[Frame | None]: ...


class Decider(Protocol):
    def decide(self, text: str, now: float) -> Answer: ...  # gate.Gate


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
        self.camera, self.decoder, self.gate, self.feedback = camera, decoder, gate, feedback
        self.stats = stats
        self.on_decision = on_decision
        self.dedupe = Dedupe(hold_s)
        self.door = door
        self.clock = clock

    def run(self, stop: threading.Event) -> None:
        for frame in self.camera.frames(stop):
            self.on_turn(frame)
            if frame is None:
                continue
            if stop.is_set():
                frame.release()
                break
            t0 = time.monotonic()
            try:
                texts = self.decoder.decode(frame.gray)
            except Exception:  # a decoder bug on one frame must not stop the entrance
                logger.exception("decoder failed on a frame")
                texts = []
            finally:
                frame.release()  # the camera has its buffer back before the visitor is answered
            decoded = time.monotonic()
            for text in self.dedupe.fresh(texts, frame.t):
                self._answer(text, frame.t)
            self.stats.scanned(frame.seq, texts, (decoded - t0) * 1000, (time.monotonic() - frame.t) * 1000,
                               self.camera.dropped)

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
