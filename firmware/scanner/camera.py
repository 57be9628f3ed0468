"""The camera, kept alive: opened, watched for silence, and reopened with backoff (DESIGN promise 6).

A camera that cannot be opened (unplugged ribbon, a USB camera gone), that
raises, or that delivers no frame for `lost_after_s` is the fault `camera`:
amber blinking, in the status, and the source is closed and opened again
after a jittered, growing delay. The first frame after that clears the fault
by itself. Meanwhile `frames` yields None every `tick_s`, so the scan loop
keeps turning: the systemd watchdog sees a daemon that is handling a fault,
not a stalled one, and a stop request is noticed at once.

A source that ends (a replay that does not loop) ends the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Generator, Iterator

from firmware.faults import Faults
from firmware.scanner.frames import Frame, FrameSource
from firmware.backoff import Backoff

logger = logging.getLogger(__name__)

FAULT = "camera"


class SupervisedCamera:
    def __init__(self, open_source: Callable[[], FrameSource], faults: Faults, lost_after_s: float = 3.0,
                 backoff: Backoff | None = None, tick_s: float = 0.5):
        self.open_source = open_source
        self.faults = faults
        self.lost_after_s = lost_after_s
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.tick_s = tick_s
        self.reopened = 0  # times the camera was lost and opened again
        self._source: FrameSource | None = None
        self._dropped_before = 0  # frames dropped by sources closed since

    @property
    def dropped(self) -> int:
        return self._dropped_before + (self._source.dropped if self._source is not None else 0)

    @property
    def lost(self) -> bool:
        return FAULT in self.faults.active()

    def frames(self, stop: threading.Event) -> Generator[Frame | None, None, None]:
        while not stop.is_set():
            try:
                source = self.open_source()
                source.__enter__()
            except Exception as exc:  # noqa: BLE001 - any failure to open is the same fault to a technician
                yield from self._lose(f"cannot open the camera: {exc}", stop)
                continue
            self._source = source
            try:
                ended = yield from self._watch(source, stop)
            except Exception as exc:  # noqa: BLE001 - a library error mid-stream is a camera loss too
                logger.warning("camera failed: %s", type(exc).__name__)
                ended, why = False, f"the camera failed: {exc}"
            else:
                why = f"no frame from the camera for {self.lost_after_s:g} s"
            finally:
                self._close(source)
            if ended:
                return
            if not stop.is_set():
                self.reopened += 1
                yield from self._lose(why, stop)

    def _watch(self, source: FrameSource, stop: threading.Event) -> Generator[Frame | None, None, bool]:
        """Frames until the source ends (True) or goes silent (False)."""
        last = time.monotonic()
        for frame in source.frames():
            if frame is None:
                if time.monotonic() - last > self.lost_after_s:
                    return False
                yield None
                continue
            last = frame.t
            if self.lost:
                self.faults.clear(FAULT)
                self.backoff.reset()
            yield frame
            if stop.is_set():
                return True
        return True

    def _lose(self, why: str, stop: threading.Event) -> Iterator[None]:
        """The fault, then a backoff delay spent in ticks."""
        self.faults.set(FAULT, why)
        until = time.monotonic() + self.backoff.next()
        while not stop.is_set() and time.monotonic() < until:
            stop.wait(min(self.tick_s, max(0.0, until - time.monotonic())))
            yield None

    def _close(self, source: FrameSource) -> None:
        self._dropped_before += source.dropped
        self._source = None
        try:
            source.__exit__(None, None, None)
        except Exception as exc:  # noqa: BLE001 - closing a dead camera may fail; reopening is what matters
            logger.warning("closing the camera failed: %s", type(exc).__name__)
