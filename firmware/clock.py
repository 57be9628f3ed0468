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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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

    def synchronised(self) -> bool:
        """What the witnesses say (shown in status whether or not it is required)."""
        if (self.root / TIMESYNCD_FLAG).exists():
            return True
        state = self.kernel()
        return state is not None and state != TIME_ERROR

    def trusted(self) -> bool:
        """May expiry be judged on this clock?"""
        return not self.require or self.synchronised()
