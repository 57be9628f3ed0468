"""The set of active faults: amber blinking while any is set, listed in status (DESIGN promise 6)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

logger = logging.getLogger(__name__)


class Faults:
    def __init__(self, on_change: Callable[[dict[str, str]], None] = lambda active: None):
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    def set(self, name: str, message: str) -> None:
        with self._lock:
            if self._active.get(name) == message:
                return
            self._active[name] = message
            active = dict(self._active)
        logger.warning("fault %s: %s", name, message)
        self._on_change(active)

    def clear(self, name: str) -> None:
        with self._lock:
            if self._active.pop(name, None) is None:
                return
            active = dict(self._active)
        logger.info("fault %s cleared", name)
        self._on_change(active)

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)
