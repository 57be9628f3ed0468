"""systemd's notify protocol (sd_notify(3)): READY, watchdog keep-alives, a status line, STOPPING.

A datagram on the AF_UNIX socket named by $NOTIFY_SOCKET; without it (a
terminal, a test, the demo) every call does nothing. The unit is Type=notify
with WatchdogSec: the daemon says READY=1 once the store is open and the
camera's first frame has been decoded (firmware.app.run says when it is sooner), and
the scan loop itself sends WATCHDOG=1, so a loop that stalls stops the keep-alives and systemd restarts the daemon.
Keep-alives go out at most every quarter of the watchdog period ($WATCHDOG_USEC).
A dozen lines of the protocol are written here rather than taking a C binding
(systemd-python needs libsystemd headers to build).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address  # "@": abstract namespace
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_s = int(usec) / 1e6 if watched else None
        self._next_keepalive = 0.0
        self._lock = threading.Lock()
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> None:
        """One message: send(READY="1", STATUS="scanning"); a lost datagram is logged, never raised."""
        if self._socket is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        with self._lock:
            try:
                self._socket.sendto(message, self._address)
            except OSError as exc:
                logger.warning("sd_notify failed: %s", exc.strerror)

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            self.send(READY="1", STATUS=status)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def alive(self) -> None:
        """Called by the scan loop on every turn; sends a keep-alive when one is due."""
        if self.watchdog_s is None or self._socket is None:
            return
        now = time.monotonic()
        if now >= self._next_keepalive:
            self._next_keepalive = now + self.watchdog_s / 4
            self.send(WATCHDOG="1")

    def stopping(self) -> None:
        self.send(STOPPING="1", STATUS="stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
