"""Opening the sealed store at start, and what a store set aside means until a technician comes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.store.buffer import CorruptStore, SqliteRecordStore, kept_aside, set_aside

logger = logging.getLogger(__name__)

REOPEN_S = 2.0  # a store that cannot be opened is tried again this often, the watchdog fed meanwhile


def open_store(path: Path, faults: Faults, stop: threading.Event,
               waiting: Callable[[], None]) -> SqliteRecordStore | None:
    """The sealed store, never a crash loop: a corrupt one is set aside for a technician and a new one made
    in its place; one that cannot be opened at all (an unreadable card, a folder where the file should be)
    is the storage fault, shown while opening is tried again every REOPEN_S, `waiting` called meanwhile
    (the daemon is up and says why it cannot scan). None when stopped first."""
    set_aside_once = False
    while True:
        try:
            return SqliteRecordStore(path)
        except CorruptStore as exc:
            if set_aside_once:  # a store made new a moment ago is corrupt too: the card, not the file
                faults.set("storage", str(exc))
            else:
                try:
                    aside = set_aside(path)
                except OSError as moved:
                    faults.set("storage", f"{exc}; and it cannot be set aside: {moved.strerror}")
                else:
                    logger.error("%s; kept aside as %s, a new store made in its place", exc, aside.name)
                    set_aside_once = True
                    continue
        except StorageError as exc:
            faults.set("storage", str(exc))
        waiting()
        if stop.wait(REOPEN_S):
            return None


def corrupt_stores(path: Path, faults: Faults) -> None:
    """A store set aside stays a fault until a technician has dealt with it: its visits may be undelivered."""
    aside = kept_aside(path)
    if aside:
        faults.set("store_corrupt", f"a corrupt store was set aside as {', '.join(p.name for p in aside)}: copy it "
                                    "off for recovery (its visits may not have been delivered), then remove it")
    else:
        faults.clear("store_corrupt")
