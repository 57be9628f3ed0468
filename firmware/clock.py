"""Is the system clock synchronised? Expiry is judged on it, so the door must not guess.

Two witnesses, either is enough:
- the kernel's NTP state, read with adjtimex(2) in read-only mode: TIME_ERROR
  means "unsynchronised" (STA_UNSYNC, or the kernel's error bound grew past
  16 s without an update, about nine hours after the last one);
- systemd-timesyncd's flag file /run/systemd/timesync/synchronized, created
  at its first synchronisation after boot and kept until the next boot. A
  Pi's crystal drifts a few seconds a day, so once synchronised the clock
  stays good enough through a long network outage, while the kernel's bound
  has given up.

A Pi without a real-time clock boots with the time it had at shutdown
(fake-hwclock), hours or days wrong: that is the case this catches. A device
with a battery-backed RTC sets `clock.require_sync = false`.

Only a Pi can confirm how its own image behaves here (timesyncd's service
running, fake-hwclock); tests give the kernel state and a root folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from firmware.utc import iso

if TYPE_CHECKING:
    from firmware.store.marks import Mark

logger = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
TIMESYNCD_FLAG = "run/systemd/timesync/synchronized"
_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; room to spare


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def kernel_state() -> int | None:
    """adjtimex(2) with modes = 0 (reads, changes nothing); None if the call is unavailable
    (not Linux, or refused by a seccomp filter: the systemd unit must allow it)."""
    try:
        state = _libc().adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))  # zeroed: modes = 0
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


@dataclass
class ClockSync:
    require: bool = True
    root: Path = Path("/")
    kernel: Callable[[], int | None] = field(default=kernel_state, repr=False)
    # The flag's path, built once: the door asks on every decision, and a Path built per call interns its four
    # parts, strings that die with it. That churn used up the free slots of the interpreter's table of interned
    # strings, which CPython then rebuilds, here at twice its size: +0.9 MB resident at some 4,700 decisions
    # (`qrgate bench scan`, issue 22), and a new 1.9 MB table each time the churn used it up again.
    _flag: Path = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._flag = Path(self.root) / TIMESYNCD_FLAG

    def synchronised(self) -> bool:
        """What the witnesses say (shown in status whether or not it is required)."""
        if self._flag.exists():
            return True
        state = self.kernel()
        return state is not None and state != TIME_ERROR

    def trusted(self) -> bool:
        """May expiry be judged on this clock?"""
        return not self.require or self.synchronised()


CLOCK_NOT_SYNCHRONISED = "clock_not_synchronised"
CLOCK_STEPPED_BACK = "clock_stepped_back"
CLOCK_JUMPED = "clock_jumped"
SLACK_S = 5  # what either check forgives: the skew a token's own window already allows
KEEP_EVERY_S = 60  # how far the mark may run ahead of its file (a card is not written every second)


class ClockGuard:
    """May the door judge, and purge, on the wall clock now? Synchronised (or trusted by config), and consistent.

    Consistent means two things the synchronisation flags cannot see:
    - not behind a persisted high-water mark, the latest time the device has
      judged on. A clock stepped back past it could make a used token new
      again, its "already seen" hash having been dropped at the later time;
    - not jumped forward while unsynchronised: the wall clock ran ahead of the
      monotonic clock between two readings by more than SLACK_S. A jump of
      over 28 days would otherwise purge every undelivered record. It holds
      until the clock is synchronised, or a technician restarts the daemon
      (which then takes the new time as it is).
    The mark only moves on a consistent reading, so a wrong time never raises
    it; a mark that is itself wrong (NTP that lied) keeps the door amber until
    the clock passes it, or until a technician removes the mark's file with
    the daemon stopped (the fault says which file).
    """

    def __init__(self, sync: ClockSync, mark: Mark, monotonic: Callable[[], float] = time.monotonic):
        self.sync, self.mark, self._monotonic = sync, mark, monotonic
        self.high = self._kept = mark.read()
        self._last: tuple[float, float] | None = None  # (wall, monotonic) at the last reading
        self._jumped = False
        self._lock = threading.Lock()

    def problem(self, now: float) -> str | None:
        """None when the clock may be believed at `now`; else the reason, by name."""
        synchronised = self.sync.synchronised()
        if self.sync.require and not synchronised:  # ClockSync.trusted(), without asking the witnesses twice
            return CLOCK_NOT_SYNCHRONISED
        with self._lock:
            mono = self._monotonic()
            if synchronised:
                self._jumped = False
            elif self._last is not None and (now - self._last[0]) - (mono - self._last[1]) > SLACK_S:
                self._jumped = True
            self._last = (now, mono)
            if self._jumped:
                return CLOCK_JUMPED
            if now < self.high - SLACK_S:
                return CLOCK_STEPPED_BACK
            self.high = max(self.high, int(now))
            return None

    def describe(self, problem: str) -> str:
        """The fault's message: stable while the problem lasts (it is logged on every change)."""
        if problem == CLOCK_NOT_SYNCHRONISED:
            return "system clock not synchronised (no NTP since boot)"
        if problem == CLOCK_JUMPED:
            return ("the clock jumped forward while not synchronised: judging and purging wait for NTP "
                    "(or a restart, which takes the new time as it is)")
        return (f"the clock is behind {iso(self.high)}, a time this device has already judged on: it stepped back; "
                f"judging and purging wait until it passes (if that mark is wrong, stop qrgate and remove "
                f"{self.mark.path})")

    def keep(self) -> None:
        """Persist the mark when it has moved on by KEEP_EVERY_S (housekeeping's call). Raises OSError."""
        with self._lock:
            high = self.high
        if high >= self._kept + KEEP_EVERY_S:
            self.mark.raise_to(high)
            self._kept = high
