"""The composition root: builds the daemon's parts from config and runs it. No logic of its own.

This is the only module that knows the concrete classes; everything else is
handed its collaborators. Teardown goes through one ExitStack, registered where
each part is opened.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from firmware import credentials, keys
from firmware.clock import ClockGuard, ClockSync
from firmware.config import Config
from firmware.errors import StorageError
from firmware.events import Decision, EventLog
from firmware.faults import Faults
from firmware.gate import Gate
from firmware.leds.feedback import GpioFeedback, Pins
from firmware.readiness import Readiness
from firmware.sdnotify import Notifier
from firmware.scanner.decode import DECODERS
from firmware.scanner.camera import SupervisedCamera
from firmware.scanner.loop import ScanLoop
from firmware.scanner.sources.opencv import OpenCvSource
from firmware.scanner.sources.picamera import PicameraSource
from firmware.scanner.sources.replay import ReplaySource
from firmware.stats import Stats
from firmware.store.buffer import CorruptStore, SqliteRecordStore, kept_aside, set_aside
from firmware.store.marks import CLOCK, Mark
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.kp1 import Verifier
from firmware.tokens.verifier import TokenVerifier
from firmware.trust import TrustStore
from firmware.uplink import status, topics
from firmware.uplink.backoff import Backoff
from firmware.uplink.drain import Drain
from firmware.uplink.mqtt import MqttUplink, Tls, Will

logger = logging.getLogger(__name__)

CHECK_S = 5.0  # clock and trust list (also checked on every decision); delivered bytes scrubbed
PURGE_S = 3600.0  # 28-day retention
REOPEN_S = 2.0  # a store that cannot be opened is tried again this often, the watchdog fed meanwhile


def make_source(config: Config):
    cam = config.camera
    sources = {
        "replay": lambda: ReplaySource(cam.path, fps=cam.fps, paced=cam.paced, loop=cam.loop),
        "picamera": lambda: PicameraSource(cam.width, cam.height, cam.fps, cam.exposure_us, cam.analogue_gain,
                                           cam.focus, cam.lens_position),
        "opencv": lambda: OpenCvSource(cam.index, cam.width, cam.height, cam.fps),
    }
    return sources[cam.source]()


def make_pins(config: Config) -> Pins:
    g = config.gpio
    return Pins(green=g.green, red=g.red, amber=g.amber, buzzer=g.buzzer, door=g.door,
                tonal_buzzer=g.buzzer_kind == "tonal", door_enabled=g.door_enabled, door_pulse_s=g.door_pulse_s)


def make_pin_factory(config: Config):
    if config.gpio.backend == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    return None  # gpiozero's own choice: lgpio on a Pi


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


def open_store(path: Path, faults: Faults, stop: threading.Event, waiting: Callable[[], None]):
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


def _background(name: str, target: Callable[[], None], failed: threading.Event, stop: threading.Event):
    """A thread whose unexpected death stops the daemon (systemd restarts it), never a silent stall."""

    def body() -> None:
        try:
            target()
        except Exception:
            logger.exception("%s thread died", name)
            failed.set()
            stop.set()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


def run(
    config: Config,
    stop: threading.Event | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    pin_factory=None,
    clock: ClockSync | None = None,
    stats: Stats | None = None,
    notifier: Notifier | None = None,
) -> Stats:
    """Run until `stop` is set or a non-looping replay ends. Raises on a fatal start-up error.

    `pin_factory` and `clock` replace what only a Pi has: its GPIO chip and its
    kernel's NTP state (tests give a stand-in; by default both are real);
    `stats` lets a benchmark keep every frame's figures. Under systemd
    (Type=notify) it says READY once the store is open and the camera has
    delivered a frame (or at once, with the fault as its status, while the
    store cannot be opened: up and amber, not restarted in a loop), and the
    scan loop feeds the watchdog.
    """
    stop = stop or threading.Event()
    failed = threading.Event()
    dev = config.device
    state_dir = Path(dev.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stats = stats or Stats()
    listeners: list[Callable[[Decision], None]] = [on_decision] if on_decision else []
    notifier = notifier or Notifier()
    camera: SupervisedCamera | None = None

    with contextlib.ExitStack() as stack:
        root = keys.load_root_public(config.trust.root_key)
        authority = keys.load_authority_public(config.authority.public_key)
        feedback = GpioFeedback(make_pins(config), pin_factory or make_pin_factory(config))
        stack.callback(feedback.close)
        drain: Drain | None = None

        def faults_changed(active: dict[str, str]) -> None:
            feedback.set_fault(", ".join(sorted(active)) or None)
            notifier.status(f"fault: {', '.join(sorted(active))}" if active else "scanning")
            if drain is not None:
                drain.wake(status=True)

        faults = Faults(faults_changed)
        trust = TrustStore(state_dir, root)
        if config.trust.list is not None:
            trust.offer_file(config.trust.list, time.time())
        guard = ClockGuard(clock or ClockSync(require=config.clock.require_sync), Mark(state_dir / CLOCK))
        readiness = Readiness(guard, trust, faults, authority)
        store: SqliteRecordStore | None = None
        uplink: MqttUplink | None = None

        def snapshot() -> dict:
            return status.snapshot(stats, store, faults, trust, guard.sync, uplink, camera)

        def write_status() -> None:
            try:
                status.write_file(Path(dev.runtime_dir) / status.FILE, snapshot())
            except OSError as exc:  # only `qrgate status` reads it: worth a warning, not a fault
                logger.warning("cannot write %s: %s", dev.runtime_dir, exc.strerror)

        def store_waiting() -> None:
            readiness.blocking(time.time())
            write_status()
            notifier.ready(f"fault: {', '.join(sorted(faults.active()))}")  # up, amber, saying why
            notifier.alive()

        store = open_store(state_dir / "visits.db", faults, stop, store_waiting)
        if store is None:
            return stats
        stack.callback(store.close)
        faults.clear("storage")
        corrupt_stores(store.path, faults)
        if config.events.path is not None:
            log = EventLog(config.events.path)
            stack.callback(log.close)
            listeners.append(log)

        def housekeeping() -> None:
            last_purge = -PURGE_S
            while not stop.is_set():
                readiness.blocking(time.time())
                write_status()
                try:
                    store.scrub()
                    # Purging waits for a clock the door may judge on: a jump would wipe the store.
                    if readiness.clock_problem is None and time.monotonic() - last_purge >= PURGE_S:
                        last_purge = time.monotonic()
                        purged = store.purge(int(time.time()))
                        if purged:
                            logger.info("purged %d records older than 28 days", purged)
                except StorageError as exc:  # a full or failing card: loud, and tried again
                    faults.set("storage", str(exc))
                try:
                    guard.keep()
                except OSError as exc:
                    faults.set("storage", f"cannot keep the clock mark: {exc.strerror}")
                corrupt_stores(store.path, faults)
                low_space(state_dir, dev.min_free_mb, faults)
                stop.wait(CHECK_S)

        if config.mqtt.enabled:
            m = config.mqtt
            uplink = MqttUplink(
                m.host, m.port, client_id=f"qrgate-{dev.venue}-{dev.id}",
                tls=Tls(m.ca, *credentials.client_pair(m.cert, m.key)) if m.tls else None,
                will=Will(topics.status(dev.venue, dev.id), status.OFFLINE),
                keepalive=m.keepalive_s, max_inflight=m.window,
                subscriptions={topics.TRUSTLIST: lambda data: trust.offer(data, time.time())},
                on_connected=lambda: drain.reconnected() if drain else None,
                on_state=lambda up, why: logger.info("broker %s:%d %s", m.host, m.port, why),
                session_expiry_s=m.session_expiry_s,
                backoff=Backoff(m.reconnect_min_s, max(m.reconnect_min_s, m.reconnect_max_s)),
                max_packet=topics.MAX_PACKET,
            )
            drain = Drain(
                store, uplink, topics.visits(dev.venue, dev.id), topics.status(dev.venue, dev.id),
                status=snapshot,
                stats=stats, faults=faults, window=m.window, status_interval_s=m.status_interval_s,
            )
            drain_stop = threading.Event()
            uplink.start()
            _background("drain", lambda: drain.run(drain_stop), failed, stop)

        def recorded() -> None:
            stats.add("sealed")
            if drain is not None:
                drain.wake()

        policy = config.policy
        verifier = TokenVerifier(Verifier(trust.current, tuple(policy.require), policy.skew_s),
                                 DccVerifier(trust.current, config.dcc, policy.skew_s), tuple(policy.accept))
        gate = Gate(
            verifier, store, authority, dev.venue, dev.id, faults, readiness, on_recorded=recorded,
        )
        keeper = _background("housekeeping", housekeeping, failed, stop)
        stack.callback(keeper.join, 10)  # unwinds before the store closes (LIFO)
        stack.callback(stop.set)

        def decided(decision: Decision) -> None:
            for listener in listeners:
                listener(decision)

        camera = SupervisedCamera(lambda: make_source(config), faults, config.camera.lost_after_s,
                                  Backoff(1.0, config.camera.reopen_max_s))

        def turn(frame) -> None:
            notifier.alive()
            if frame is not None and not notifier.ready_sent:
                notifier.ready("scanning")
                logger.info("ready: the camera delivers frames and the store is open")

        decoder = DECODERS[config.decoder.backend]()
        loop = ScanLoop(camera, decoder, gate, feedback, stats, decided, config.decoder.hold_s,
                        door=config.gpio.door_enabled, on_turn=turn)
        logger.info("starting: venue %s device %s, %s camera, %s decoder",
                    dev.venue, dev.id, config.camera.source, config.decoder.backend)
        stack.callback(notifier.close)
        stack.callback(notifier.stopping)
        loop.run(stop)
        feedback.idle.wait(timeout=5)  # let the last answer finish before the LEDs close

        if uplink is not None and drain is not None:
            if not stop.is_set():  # the replay ended: give what waits a chance to leave
                drain.wait_empty(config.mqtt.drain_on_exit_s)
            drain_stop.set()
            drain.wake()
            uplink.stop(final=(topics.status(dev.venue, dev.id), status.OFFLINE))
        stop.set()
    if failed.is_set():
        raise RuntimeError("a background thread of the daemon died; see the log")
    return stats
