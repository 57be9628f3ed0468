"""Fixtures shared by the suite: the lab's world of keys made from nothing, mock pins, a real Mosquitto."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware import app, config
from lab import render
from lab.broker import Mosquitto
from lab.world import World

DATA = Path(__file__).parent / "data"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path / "world")


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "qrgate.toml"
    path.write_text(text)
    return config.load(path)


def store_rows(cfg: config.Config) -> int:
    path = cfg.device.state_dir / "visits.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:  # the daemon has not created its tables yet
        return 0
    finally:
        db.close()


def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # polling an observable condition, bounded by the deadline


class RunningDaemon:
    """`app.run` in a thread, as `qrgate run` runs it, until `stop()`; `stats` once it has returned."""

    def __init__(self, cfg: config.Config, pins, **kw):
        self._stop = threading.Event()
        self.stats = None
        self._thread = threading.Thread(target=self._run, args=(cfg, pins, kw))
        self._thread.start()

    def _run(self, cfg, pins, kw) -> None:
        self.stats = app.run(cfg, stop=self._stop, pin_factory=pins, **kw)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the daemon did not stop"


@contextlib.contextmanager
def running_daemon(cfg: config.Config, pins, **kw):
    daemon = RunningDaemon(cfg, pins, **kw)
    try:
        yield daemon
    finally:
        daemon.stop()


def write_frames(folder: Path, tokens: list[str], code_frames: int = 4, gap_frames: int = 3) -> Path:
    """A replay camera folder: each token as a phone held up for a few frames, empty frames between."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bg = render.background()
    n = 0
    for token in [None, *tokens]:
        if token is not None:
            phone = render.phone_screen(token)
            for _ in range(code_frames):
                render.write_png(folder / f"{n:05d}.png", render.scene(phone, rng, angle=rng.uniform(-5, 5), bg=bg))
                n += 1
        for _ in range(gap_frames):
            render.write_png(folder / f"{n:05d}.png", render.scene(None, rng, bg=bg))
            n += 1
    return folder


class RecordingPin(MockPWMPin):
    """A mock PWM pin that also logs (pin, state) and (pin, "Hz", frequency) in one shared, ordered list."""

    log: list = []
    timed: list = []  # (pin, state, monotonic time) of every state change, for what lasts how long

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self.log.append((self.info.name, value))
            self.timed.append((self.info.name, value, time.monotonic()))
        return changed

    def _set_frequency(self, value):
        if value is not None:
            self.log.append((self.info.name, "Hz", value))
        super()._set_frequency(value)


@pytest.fixture
def pins():
    """gpiozero's MockFactory; `pins.log` lists every output change in order, by pin name (GPIO17…)."""
    RecordingPin.log, RecordingPin.timed = [], []
    factory = MockFactory(pin_class=RecordingPin)
    factory.log, factory.timed = RecordingPin.log, RecordingPin.timed
    yield factory
    factory.reset()


def changes(log: list, pin: str) -> list:
    """The states a pin went through, in order (initial state excluded)."""
    return [entry[1] for entry in log if entry[0] == pin and len(entry) == 2]


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "mosquitto") as b:
        yield b


@pytest.fixture
def picamera2(monkeypatch):
    """The stand-in picamera2 (tests/fake_picamera2) on the import path, with a fresh script."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_picamera2"))
    import picamera2

    monkeypatch.setattr(picamera2.Picamera2, "script", [])
    monkeypatch.setattr(picamera2.Picamera2, "instances", [])
    monkeypatch.setattr(picamera2.Picamera2, "camera_controls_for_next", picamera2.CM3_CONTROLS)
    monkeypatch.setattr(picamera2.Picamera2, "open_failures", 0)
    return picamera2


class BuiltPackages:
    """The `.deb` files `./dev package`'s own code built for the package tests (tests/package/)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def deb(self, arch: str, revision: int = 1) -> Path:
        from lab import package
        return package.deb_path(self.folder, arch, revision)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> BuiltPackages:
    """Both architectures, two revisions each: the second has the same contents and is
    what an upgrade installs over the first."""
    from lab import package
    folder = tmp_path_factory.mktemp("dist")
    package.build(list(package.ARCHES), folder, revisions=(1, 2))
    return BuiltPackages(folder)
