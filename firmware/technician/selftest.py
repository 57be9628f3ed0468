"""`qrgate selftest`: walk every part a technician installed, one clear line each, non-zero on failure.

The LEDs and the buzzer are driven in turn for the technician to watch and
hear (software cannot see an LED; it can only say the pins took the values).
The camera, the store, the broker and the clock are checked for real. The
daemon holds the camera and the pins while it runs: stop it first
(`sudo systemctl stop qrgate`), and a busy part is named as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from firmware import config, credentials, keys
from firmware.clock import ClockSync
from firmware.errors import QrgateError, StorageError
from firmware.store.buffer import inspect
from firmware.tokens import trustlist
from firmware.trust import TrustStore

if TYPE_CHECKING:
    from gpiozero.pins import Factory

STEP_S = 0.5
CAMERA_TIMEOUT_S = 10.0
BROKER_TIMEOUT_S = 10.0
BUSY_HINT = " (is qrgate.service running? `sudo systemctl stop qrgate` first)"


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<10} {self.detail}"


def check_outputs(cfg: config.Config, pin_factory: Factory | None = None) -> Result:
    from firmware.leds import patterns
    from firmware.leds.feedback import GpioFeedback, Pins, default_pin_factory
    from firmware.leds.patterns import Pattern, Step

    g = cfg.gpio
    leds = ("green", "red", "amber")
    steps = [Step(i * STEP_S, led, 1) for i, led in enumerate(leds)]
    steps += [Step((i + 1) * STEP_S, led, 0) for i, led in enumerate(leds)]
    steps += [Step(3 * STEP_S, "buzzer", patterns.HIGH), Step(3 * STEP_S + patterns.BEEP, "buzzer", 0)]
    walk = Pattern("selftest", tuple(steps))
    try:
        feedback = GpioFeedback(Pins.of(cfg.gpio), pin_factory or default_pin_factory(cfg.gpio))
    except Exception as exc:  # noqa: BLE001 - gpiozero's errors are many; the message says which pin
        return Result("outputs", False, f"cannot drive the pins: {exc}{BUSY_HINT}")
    try:
        feedback.show(walk, door=g.door_enabled)
        feedback.idle.wait(walk.duration + 5)
    finally:
        feedback.close()
    door = f", door relay GPIO{g.door} pulsed" if g.door_enabled else ""
    return Result("outputs", True, f"green GPIO{g.green}, red GPIO{g.red}, amber GPIO{g.amber} lit in turn, "
                                   f"buzzer GPIO{g.buzzer} beeped{door}: check them by eye and ear")


def check_camera(cfg: config.Config) -> Result:
    from firmware.scanner.sources import open_source  # OpenCV and the camera libraries: only when checked

    try:
        with open_source(cfg.camera) as source:
            deadline = time.monotonic() + CAMERA_TIMEOUT_S
            for frame in source.frames():
                if frame is not None:
                    shape, mean = frame.gray.shape, float(frame.gray.mean())
                    frame.release()
                    return Result("camera", True, f"{cfg.camera.source}: a {shape[1]}x{shape[0]} frame, "
                                                  f"mean brightness {mean:.0f}/255")
                if time.monotonic() > deadline:
                    break
        return Result("camera", False, f"{cfg.camera.source}: no frame within {CAMERA_TIMEOUT_S:g} s")
    except Exception as exc:  # noqa: BLE001 - a camera library's failure, whatever its type
        return Result("camera", False, f"{cfg.camera.source}: {exc}{BUSY_HINT}")


def check_store(cfg: config.Config) -> Result:
    """A write, an fsynced commit and a read back on the card, beside the real store; then its integrity."""
    state = Path(cfg.device.state_dir)
    payload = os.urandom(4096)
    try:
        # Run as root in the daemon's folder: a fresh folder of root's own with a random name,
        # so no name the daemon's user could have planted a symbolic link at is ever opened.
        probe_dir = Path(tempfile.mkdtemp(prefix=".selftest-", dir=state))
    except OSError as exc:
        return Result("store", False, f"cannot write to {state}: {exc.strerror}")
    try:
        db = sqlite3.connect(probe_dir / "probe.db", isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE probe (v BLOB)")
            db.execute("INSERT INTO probe VALUES (?)", (payload,))
            back = db.execute("SELECT v FROM probe").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Result("store", False, f"cannot write to {state}: {exc}")
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    if back != payload:
        return Result("store", False, f"{state}: what was read back is not what was written")
    try:
        store = inspect(state / "visits.db")
    except StorageError as exc:
        return Result("store", True, f"{state} writable, fsynced and read back; {exc}")
    ok = store["integrity"] == "ok"
    return Result("store", ok, f"{state} writable, fsynced and read back; visits.db integrity "
                               f"{store['integrity']}, {store['queue_depth']} records waiting")


def check_trust(cfg: config.Config, now: float) -> Result:
    """The list in force, or the one the daemon will install at start from `trust.list`."""
    try:
        root = keys.load_root_public(cfg.trust.root_key)
        current = TrustStore(cfg.device.state_dir, root).current()
        pending = None
        if current is None and cfg.trust.list is not None:
            pending = current = trustlist.parse(trustlist.read_file(cfg.trust.list), root)
    except (QrgateError, OSError) as exc:
        return Result("trust", False, str(exc))
    if current is None:
        return Result("trust", False, "no trust list installed (`qrgate trust install FILE`)")
    if current.expired(now):
        return Result("trust", False, f"trust list seq {current.seq} is past its not_after")
    days = (current.not_after - now) / 86400
    where = f", from {cfg.trust.list} (installed when the daemon starts)" if pending else ""
    return Result("trust", True, f"seq {current.seq}, {len(current.issuers)} issuers, valid {days:.0f} more days"
                                 f"{where}")


def check_broker(cfg: config.Config) -> Result:
    from firmware.uplink.mqtt import MqttUplink, Tls

    m = cfg.mqtt
    if not m.enabled:
        return Result("broker", True, "skipped: mqtt.enabled = false")
    states: list[str] = []
    tls = Tls(m.ca, *credentials.client_pair(m.cert, m.key)) if m.tls else None
    try:
        uplink = MqttUplink(m.host, m.port, client_id=f"qrgate-{cfg.device.venue}-{cfg.device.id}-selftest",
                            tls=tls, keepalive=m.keepalive_s, session_expiry_s=0,
                            on_state=lambda up, why: states.append(why))
    except (OSError, ValueError) as exc:  # unreadable CA, key or certificate
        return Result("broker", False, f"cannot set up TLS: {exc}")
    uplink.start()
    try:
        connected = uplink.connected.wait(BROKER_TIMEOUT_S)
    finally:
        uplink.stop()
    where = f"{'mqtts' if m.tls else 'mqtt'}://{m.host}:{m.port}"
    mode = "mutual TLS" if m.cert else "TLS" if m.tls else "no TLS"
    if connected:
        return Result("broker", True, f"{where}: connected ({mode})")
    last = f" (last: {states[-1]})" if states else ""
    return Result("broker", False, f"{where}: no connection within {BROKER_TIMEOUT_S:g} s{last}")


def check_clock(cfg: config.Config, clock: ClockSync | None = None) -> Result:
    clock = clock or ClockSync(require=cfg.clock.require_sync)
    if clock.synchronised():
        return Result("clock", True, f"synchronised, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    if not cfg.clock.require_sync:
        return Result("clock", True, "not NTP-synchronised; clock.require_sync = false (an RTC is trusted)")
    return Result("clock", False, "not synchronised: the device needs NTP once after each boot")


def run(cfg: config.Config, pin_factory: Factory | None = None, clock: ClockSync | None = None,
        out: Callable[[str], None] = print) -> list[Result]:
    checks: list[Callable[[], Result]] = [
        lambda: check_outputs(cfg, pin_factory), lambda: check_camera(cfg), lambda: check_store(cfg),
        lambda: check_trust(cfg, time.time()), lambda: check_broker(cfg), lambda: check_clock(cfg, clock)]
    results = []
    for check in checks:
        result = check()
        out(result.line())
        results.append(result)
    return results


def cmd_selftest(args: argparse.Namespace) -> int:
    results = run(config.load(args.config))
    failed = [r.name for r in results if not r.ok]
    print(f"\nselftest: {len(results) - len(failed)} of {len(results)} checks ok"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
