"""The daemon's housekeeping: every CHECK_S the clock, the lists, the card and the status file; hourly the purge.

One thread, apart from the scan loop, so that nothing slow on the card ever
delays an answer at the door. A failing card is the storage fault, shown and
tried again, never the end of the thread.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from firmware.clock import ClockGuard
from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.readiness import Readiness
from firmware.store.buffer import SqliteRecordStore
from firmware.store.opener import corrupt_stores

logger = logging.getLogger(__name__)

CHECK_S = 5.0  # clock and trust list (also checked on every decision); delivered bytes scrubbed
PURGE_S = 3600.0  # 28-day retention


def low_space(folder: Path, min_free_mb: int, faults: Faults) -> None:
    """Amber before the card is full: a technician gets days of warning, not a visitor's failed commit."""
    try:
        free_mb = shutil.disk_usage(folder).free // 2**20
    except OSError as exc:
        faults.set("storage_low", f"cannot read free space: {exc.strerror}")
        return
    if free_mb < min_free_mb:
        faults.set("storage_low", f"{free_mb} MiB free on the card (device.min_free_mb = {min_free_mb})")
    else:
        faults.clear("storage_low")


class Housekeeping:
    def __init__(self, store: SqliteRecordStore, readiness: Readiness, guard: ClockGuard, faults: Faults,
                 state_dir: Path, min_free_mb: int, write_status: Callable[[], None],
                 refreshers: Sequence[Callable[[], None]] = ()):
        """`refreshers`: each round, before readiness is judged, what adopts a list a technician installed in
        another process and may take a moment to read (the revocation list), so the door never waits for it."""
        self.store, self.readiness, self.guard, self.faults = store, readiness, guard, faults
        self.state_dir, self.min_free_mb, self.write_status = state_dir, min_free_mb, write_status
        self.refreshers = tuple(refreshers)
        self._last_purge = -PURGE_S

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.turn()
            stop.wait(CHECK_S)

    def turn(self) -> None:
        """One round: adopt lists, judge readiness, write the status file, scrub, purge when due, keep the clock
        mark."""
        for refresh in self.refreshers:
            refresh()
        self.readiness.blocking(time.time())
        self.write_status()
        try:
            self.store.scrub()
            # Purging waits for a clock the door may judge on: a jump would wipe the store.
            if self.readiness.clock_problem is None and time.monotonic() - self._last_purge >= PURGE_S:
                self._last_purge = time.monotonic()
                purged = self.store.purge(int(time.time()))
                if purged:
                    logger.info("purged %d records older than 28 days", purged)
        except StorageError as exc:  # a full or failing card: loud, and tried again
            self.faults.set("storage", str(exc))
        try:
            self.guard.keep()
        except OSError as exc:
            self.faults.set("storage", f"cannot keep the clock mark: {exc.strerror}")
        corrupt_stores(self.store.path, self.faults)
        low_space(self.state_dir, self.min_free_mb, self.faults)
