"""A throwaway Mosquitto on a free loopback port, for the demo and the tests (not used by the daemon)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class MosquittoError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """`extra` is appended to the listener's config (TLS files, ACLs); the port is chosen free."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "allow_anonymous true\n",
                 persistent: bool = False, log_types: tuple[str, ...] = ("all",)):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.extra = extra
        # persistent: sessions and queued messages survive a (graceful) restart, as on a custodian's broker.
        self.persistence = f"persistence true\npersistence_location {self.folder}/\n" if persistent else "persistence false\n"
        # `all` logs four lines per QoS 1 message relayed: at thousands a second, a scale run passes fewer.
        self.log_types = log_types
        self._proc: subprocess.Popen | None = None

    def config_text(self) -> str:
        """The whole mosquitto.conf (a subclass may bring its own listener and rules)."""
        return (f"per_listener_settings true\nlistener {self.port} 127.0.0.1\n{self.extra}{self.persistence}"
                + self.local_lines())

    def local_lines(self) -> str:
        """What any config needs to run here: the user (as root, mosquitto would switch to its own, which
        cannot write this folder) and the log in this folder."""
        user = "user root\n" if os.geteuid() == 0 else ""
        return (f"{user}log_dest file {self.folder / 'mosquitto.log'}\n"
                + "".join(f"log_type {t}\n" for t in self.log_types))

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        exe = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if exe is None:
            raise MosquittoError("mosquitto is not installed (apt-get install mosquitto)")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(self.config_text())
        self._proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
                raise MosquittoError(f"mosquitto exited at start: {err or self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)  # polling for the listener to open, bounded by the deadline
        self.stop()
        raise MosquittoError(f"mosquitto did not open port {self.port} within {timeout:g} s")

    def log_tail(self, lines: int = 20) -> str:
        log = self.folder / "mosquitto.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
