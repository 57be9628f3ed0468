"""The composition root: builds the daemon's parts from config, wires them and runs the scan loop.

This is the only module that knows the concrete classes; everything else is
handed its collaborators. Teardown goes through one ExitStack, registered where
each part is opened, so that each part stops before what it uses closes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from firmware import health, keys, startup
from firmware.backoff import Backoff
from firmware.clock import ClockGuard, ClockSync
from firmware.config import Config
from firmware.events import Decision, EventLog
from firmware.faults import Faults
from firmware.gate import Gate
from firmware.housekeeping import Housekeeping
from firmware.leds.feedback import GpioFeedback, Pins, default_pin_factory
from firmware.passback import share as passback
from firmware.readiness import DccList, Readiness
from firmware.revocation.feed import RevocationFeed
from firmware.revocation.store import RevocationStore
from firmware.scanner.camera import SupervisedCamera
from firmware.scanner.decode import DECODERS, STAGED
from firmware.scanner.loop import ScanLoop
from firmware.scanner.sources import open_source
from firmware.scanner.workers import DecodePool, default_count
from firmware.sdnotify import Notifier
from firmware.stats import Stats
from firmware.store.buffer import SqliteRecordStore
from firmware.store.marks import CLOCK, Mark
from firmware.store.opener import corrupt_stores, open_store
from firmware.tokens.dcc_rules import RulesInForce
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.kc1 import Kc1Verifier
from firmware.tokens.kp1 import Kp1Verifier
from firmware.tokens.verifier import TokenVerifier
from firmware.trust import TrustStore
from firmware.uplink import link as uplinks
from firmware.uplink import topics

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from firmware.scanner.frames import Frame

logger = logging.getLogger(__name__)


def _background(name: str, target: Callable[[], None], failed: threading.Event,
                stop: threading.Event) -> threading.Thread:
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
    pin_factory: Factory | None = None,
    clock: ClockSync | None = None,
    stats: Stats | None = None,
    notifier: Notifier | None = None,
) -> Stats:
    """Run until `stop` is set or a non-looping replay ends. Raises on a fatal start-up error.

    `pin_factory` and `clock` replace what only a Pi has: its GPIO chip and its
    kernel's NTP state (tests give a stand-in; by default both are real);
    `stats` lets a benchmark keep every frame's figures. Under systemd
    (Type=notify) it says READY once the store is open and the camera's first
    frame has been decoded (or at once, with the fault as its status, while the
    store cannot be opened: up and amber, not restarted in a loop), and the
    scan loop feeds the watchdog. Then start-up is over (`startup.started`).
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
    link: uplinks.Link = uplinks.OfflineLink()
    spawn: uplinks.Spawn = lambda name, target: _background(name, target, failed, stop)  # noqa: E731

    with contextlib.ExitStack() as stack:
        root = keys.load_root_public(config.trust.root_key)
        feedback = GpioFeedback(Pins.of(config.gpio), pin_factory or default_pin_factory(config.gpio))
        stack.callback(feedback.close)

        def faults_changed(active: dict[str, str]) -> None:
            feedback.set_fault(", ".join(sorted(active)) or None)
            notifier.status(f"fault: {', '.join(sorted(active))}" if active else "scanning")
            link.wake(status=True)

        faults = Faults(faults_changed)
        trust = TrustStore(state_dir, root)
        if config.trust.list is not None:
            trust.offer_file(config.trust.list, time.time())
        guard = ClockGuard(clock or ClockSync(require=config.clock.require_sync), Mark(state_dir / CLOCK))
        revocations = RevocationStore(state_dir, root, required=config.dcc.revocation,
                                      max_age_s=config.dcc.max_list_age_h * 3600)
        feed = RevocationFeed(revocations)
        # What DCCs wait for beyond the trust list, at a venue that takes them.
        dcc_lists: list[DccList] = [RulesInForce(trust.current, config.dcc.rules_country,
                                                 config.dcc.max_list_age_h * 3600), revocations]
        readiness = Readiness(guard, trust, faults, dcc_lists if "DCC" in config.policy.accept else [])
        store: SqliteRecordStore | None = None
        share = passback.build(config.passback.secret, config.mqtt.enabled, topics.passback(dev.venue))

        def snapshot() -> dict[str, Any]:
            return health.snapshot(stats, store, faults, trust, guard.sync, link.uplink, camera, share.status(),
                                   config.cards.daily_visits_alert if "KC1" in config.policy.accept else None)

        def write_status() -> None:
            try:
                health.write_file(Path(dev.runtime_dir) / health.FILE, snapshot())
            except OSError as exc:  # only `qrgate status` reads it: worth a warning, not a fault
                logger.warning("cannot write %s: %s", dev.runtime_dir, exc.strerror)

        def store_waiting() -> None:
            readiness.blocking(time.time())
            write_status()
            notifier.ready(f"fault: {', '.join(sorted(faults.active()))}")  # up, amber, saying why
            notifier.alive()
            startup.started()

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

        if config.mqtt.enabled:
            m = config.mqtt

            def broker_state(up: bool, why: str) -> None:
                logger.info("broker %s:%d %s", m.host, m.port, why)
                share.link(up)

            link = uplinks.connect(
                m, dev.venue, dev.id, store=store, snapshot=snapshot, stats=stats, faults=faults,
                on_trust_list=lambda data: trust.offer(data, time.time()), on_state=broker_state,
                subscriptions={**share.subscriptions(), **feed.subscriptions()})
            share.attach(link.uplink)
            feed.attach(link.uplink)
        link.start(spawn)
        stack.callback(link.close)  # stops the drain before the store closes (LIFO)

        def recorded() -> None:
            stats.add("sealed")
            link.wake()

        policy = config.policy
        tokens = TokenVerifier(Kp1Verifier(trust.current, tuple(policy.require), policy.skew_s),
                               DccVerifier(trust.current, config.dcc, policy.skew_s, revocations=revocations),
                               Kc1Verifier(trust.current, tuple(policy.require), policy.skew_s, config.cards.recheck_s),
                               tuple(policy.accept))
        # A token a peer door accepted is replayed_elsewhere before the gate records anything; a new visit,
        # once durable, is told to the venue's other doors.
        verifier = passback.VenueVerifier(tokens, share)
        gate = Gate(verifier, store, trust.sealing_key, dev.venue, dev.id, faults, readiness, on_recorded=recorded)
        door = passback.VenueGate(gate, share)
        housekeeping = Housekeeping(store, readiness, guard, faults, state_dir, dev.min_free_mb, write_status,
                                    refreshers=[feed.refresh])
        keeper = spawn("housekeeping", lambda: housekeeping.run(stop))
        stack.callback(keeper.join, 10)  # unwinds before the store closes (LIFO)
        stack.callback(stop.set)

        def decided(decision: Decision) -> None:
            for listener in listeners:
                listener(decision)

        dec = config.decoder
        workers = (default_count() if dec.workers is None else dec.workers) if dec.backend in STAGED else 0
        camera = SupervisedCamera(lambda: open_source(config.camera, held=workers + 1 if workers else 0), faults,
                                  config.camera.lost_after_s, Backoff(1.0, config.camera.reopen_max_s))

        def turn(frame: Frame | None) -> None:  # after the frame's fast read: READY means the door reads
            notifier.alive()
            if frame is not None and not notifier.ready_sent:
                notifier.ready("scanning")
                logger.info("ready: the store is open and the camera's first frame decoded")
                startup.started()
            elif frame is None and camera is not None and camera.lost:
                startup.started()  # not READY (no frame yet), but start-up is over: the loop waits for the camera

        loop = ScanLoop(camera, DECODERS[dec.backend](), door, feedback, stats, decided, dec.hold_s,
                        door=config.gpio.door_enabled, on_turn=turn)
        if workers:  # the loop closes the pool as it ends, before the camera closes
            loop.use_pool(DecodePool(STAGED[dec.backend], workers, loop.recovered, faults, stats))
        logger.info("starting: venue %s device %s, %s camera, %s decoder, %d decode workers",
                    dev.venue, dev.id, config.camera.source, dec.backend, workers)
        stack.callback(notifier.close)
        stack.callback(notifier.stopping)
        loop.run(stop)
        feedback.idle.wait(timeout=5)  # let the last answer finish before the LEDs close
        # The replay ended (not a stop): what waits is given a chance to leave.
        link.close(config.mqtt.drain_on_exit_s if not stop.is_set() else 0.0)
        stop.set()
    if failed.is_set():
        raise RuntimeError("a background thread of the daemon died; see the log")
    return stats

