"""What systemd sees of the daemon (Type=notify, WatchdogSec), and the camera lost and found again.

The notify socket is a real AF_UNIX datagram socket bound by the test, named
in $NOTIFY_SOCKET as systemd names it; the daemon is the real one. The Pi
camera is the stand-in picamera2, scripted to stall and to fail to reopen.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import numpy as np
import pytest

from firmware import app
from lab import render
from firmware.events import Decision
from firmware.scanner.decode import ZxingDecoder
from firmware.sdnotify import Notifier
from tests.conftest import changes, load, running_daemon, wait_until, write_frames


class NotifySocket:
    """systemd's end: every datagram the daemon sends, with the monotonic time it was read."""

    def __init__(self):
        self.name = f"@qrgate-test-{uuid.uuid4().hex}"  # abstract: no path length limit, nothing to clean
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def close(self) -> list[dict]:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return [m for _, m in self.messages]

    def times(self, key: str, value: str | None = None) -> list[float]:
        return [t for t, m in self.messages if key in m and (value is None or m[key] == value)]


@pytest.fixture
def systemd(monkeypatch):
    notify = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # keep-alives due every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield notify
    notify.close()


def test_notifier_reads_systemds_environment():
    assert not Notifier({}).enabled
    n = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_s == 10.0
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "soon"}).watchdog_s is None


def test_ready_once_scanning_then_keepalives_then_stopping(tmp_path, world, pins, systemd):
    """READY comes once, saying scanning. (That it waits for the store is held by test_hostile_state's
    unreadable store: READY there must name the fault.)"""
    frames = write_frames(tmp_path / "frames", [world.mint()], gap_frames=20)  # 44 frames: 1.5 s at 30 fps
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames))
    t0 = time.monotonic()
    stats = app.run(cfg, pin_factory=pins)
    ran_s = time.monotonic() - t0
    messages = systemd.close()
    ready = [m for m in messages if "READY" in m]
    assert len(ready) == 1 and ready[0]["STATUS"] == "scanning"
    assert messages[-1] == {"STOPPING": "1", "STATUS": "stopping"} and messages.index(ready[0]) < len(messages) - 1
    keepalives = systemd.times("WATCHDOG", "1")
    assert stats.frames >= 40 and len(keepalives) >= 5
    # At most one per quarter period (0.1 s), though the loop turns 30 times a second: the socket is not
    # flooded. Counted over the run, not timed on arrival, which a busy machine may bunch up.
    assert len(keepalives) <= ran_s / 0.1 + 1


def test_ready_comes_once_the_first_frame_was_decoded(tmp_path, world, pins, systemd, monkeypatch):
    """READY means the door reads: the camera delivered a frame and the decoder has been through it."""
    decoded: list[float] = []

    class Timed(ZxingDecoder):
        """Notes when each frame was read: by `first` with decode workers (the default), or by `decode`."""

        def _timed(self, read, gray):
            result = read(gray)
            if not decoded:
                time.sleep(0.2)  # a slow first decode: a READY said before it would arrive well before its end
            decoded.append(time.monotonic())
            return result

        def decode(self, gray):
            return self._timed(super().decode, gray)

        def first(self, gray):
            return self._timed(super().first, gray)

    monkeypatch.setitem(app.DECODERS, "zxing", Timed)
    frames = write_frames(tmp_path / "frames", [world.mint()], gap_frames=2)
    app.run(load(tmp_path, world.config_toml(tmp_path / "state", frames, camera="paced = false")), pin_factory=pins)
    (ready,) = systemd.times("READY", "1")
    assert decoded and ready >= decoded[0]


def test_keepalives_come_from_the_daemons_own_loop_so_a_stalled_loop_stops_them(tmp_path, world, pins, systemd):
    """The daemon as app.run wires it; its loop stalls in the middle of answering a visitor (here, in the
    decision's listener, which runs on the loop's thread)."""
    frames = write_frames(tmp_path / "frames", [world.mint(ttl=300)], gap_frames=5)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, camera="loop = true", decoder="hold_s = 60"))
    stalled, release = threading.Event(), threading.Event()

    def decided(decision: Decision) -> None:
        stalled.set()
        release.wait(10)

    with running_daemon(cfg, pins, on_decision=decided):
        assert stalled.wait(10), "no visitor answered"
        stalled_at = time.monotonic()
        time.sleep(1.0)  # 2.5 watchdog periods of a stalled loop: the span under test, not a sync
        during = [t for t in systemd.times("WATCHDOG") if t > stalled_at + 0.05]
        assert during == [], "keep-alives went on while the loop was stalled: systemd would never restart it"
        before = len(systemd.times("WATCHDOG"))
        release.set()
        wait_until(lambda: len(systemd.times("WATCHDOG")) > before)  # and they resume with the loop


def test_a_lost_camera_shows_the_fault_is_reopened_with_backoff_and_recovers_by_itself(tmp_path, world, pins,
                                                                                      picamera2, systemd):
    first, second = world.mint(), world.mint(world.kakao)
    rng = np.random.default_rng(3)
    empty = render.scene(None, rng)
    code1 = render.scene(render.phone_screen(first), rng)
    code2 = render.scene(render.phone_screen(second), rng)
    fam = picamera2.Picamera2

    def pulled() -> None:
        fam.open_failures = 2  # the camera is gone: the next two reopenings fail as well

    fam.script = ([(empty, 0)] * 3 + [(code1, 0)] * 3 + [(empty, 0)] * 2 + [pulled, picamera2.STALL]
                  + [(empty, 0)] * 2 + [(code2, 0)] * 3 + [(empty, 0)] * 40)
    stop = threading.Event()
    decisions: list[Decision] = []

    def decided(d: Decision) -> None:
        decisions.append(d)
        if len(decisions) == 2:
            stop.set()

    text = world.config_toml(tmp_path / "state", tmp_path).replace('source = "replay"', 'source = "picamera"')
    text = text.replace("[camera]\n", "[camera]\nlost_after_s = 0.5\nreopen_max_s = 1.0\n")
    stats = app.run(load(tmp_path, text), stop=stop, on_decision=decided, pin_factory=pins)

    assert [d.verdict for d in decisions] == ["accepted", "accepted"]
    assert [d.iss for d in decisions] == ["naver", "kakao"]
    statuses = [(t, m["STATUS"]) for t, m in systemd.messages if "STATUS" in m]
    fault_at = next(t for t, s in statuses if s == "fault: camera")
    cleared_at = next(t for t, s in statuses if t > fault_at and s == "scanning")
    assert True in changes(pins.log, "GPIO22")  # amber blinked
    assert len([t for t in systemd.times("WATCHDOG") if fault_at < t < cleared_at]) >= 3  # alive through it
    assert len(systemd.times("READY")) == 1  # ready once, not again on each reopening
    assert cleared_at - fault_at >= 3 * 0.5 * 0.9  # three reopenings, each after at least half the base delay
    cameras = fam.instances
    assert len(cameras) == 2 and all(c.closed for c in cameras) and all(c.out == [] for c in cameras)
    assert stats.frames >= 10
