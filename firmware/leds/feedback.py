"""Drives the LEDs, the buzzer and the door relay (all of the `leds` package's outputs) through gpiozero, with an
injected pin factory.

`show` never blocks the scan loop: patterns play on one worker thread, and a
new pattern cuts the one playing short (the next visitor matters more). The
amber fault blinks on gpiozero's own background thread until cleared.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpiozero import LED, Buzzer, DigitalOutputDevice, TonalBuzzer
from gpiozero.tones import Tone

from firmware.config import GpioConfig
from firmware.leds import patterns
from firmware.leds.patterns import Pattern

if TYPE_CHECKING:
    from gpiozero.pins import Factory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pins:
    green: int = 17
    red: int = 27
    amber: int = 22
    buzzer: int = 18
    door: int = 23
    tonal_buzzer: bool = True  # False: an active (on/off) buzzer
    door_enabled: bool = False
    door_pulse_s: float = 1.0

    @classmethod
    def of(cls, g: GpioConfig) -> "Pins":
        return cls(green=g.green, red=g.red, amber=g.amber, buzzer=g.buzzer, door=g.door,
                   tonal_buzzer=g.buzzer_kind == "tonal", door_enabled=g.door_enabled, door_pulse_s=g.door_pulse_s)


def default_pin_factory(g: GpioConfig) -> Factory | None:
    """gpiozero's mock pins when `[gpio] backend = "mock"`; else None, gpiozero's own choice (lgpio on a Pi)."""
    if g.backend == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    return None


class GpioFeedback:
    def __init__(self, pins: Pins, pin_factory: Factory | None = None):
        self.pins = pins
        f = pin_factory
        self._leds = {name: LED(getattr(pins, name), pin_factory=f) for name in ("green", "red", "amber")}
        if pins.tonal_buzzer:
            self._buzzer = TonalBuzzer(pins.buzzer, mid_tone=Tone("A5"), octaves=1, pin_factory=f)
        else:
            self._buzzer = Buzzer(pins.buzzer, pin_factory=f)
        self._door = DigitalOutputDevice(pins.door, pin_factory=f) if pins.door_enabled else None
        self._queue: queue.Queue[Pattern | None] = queue.Queue()
        self._cut = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.idle = threading.Event()  # set whenever no pattern is playing or waiting
        self.idle.set()
        self.fault: str | None = None
        self._worker = threading.Thread(target=self._run, name="feedback", daemon=True)
        self._worker.start()

    def show(self, pattern: Pattern, door: bool = False) -> None:
        if door and self._door is not None:
            pattern = Pattern(pattern.name + "+door", pattern.steps + patterns.door_pulse(self.pins.door_pulse_s))
        with self._pending_lock:
            self._pending += 1
            self.idle.clear()
        self._cut.set()
        self._queue.put(pattern)

    def set_fault(self, reason: str | None) -> None:
        """Amber blinking while `reason` is set; off when cleared."""
        if reason == self.fault:
            return
        self.fault = reason
        if reason:
            self._leds["amber"].blink(on_time=0.5, off_time=0.5)
        else:
            self._leds["amber"].off()

    def _set(self, output: str, value: float) -> None:
        if output == "buzzer":
            if isinstance(self._buzzer, TonalBuzzer):
                self._buzzer.play(Tone(frequency=value)) if value else self._buzzer.stop()
            else:
                self._buzzer.value = bool(value)
        elif output == "door":
            if self._door is not None:
                self._door.value = bool(value)
        else:
            self._leds[output].value = bool(value)

    def _all_off(self, pattern: Pattern) -> None:
        for output in {s.output for s in pattern.steps}:
            self._set(output, 0)

    def _play(self, pattern: Pattern) -> None:
        self._cut.clear()
        elapsed = 0.0
        for step in sorted(pattern.steps, key=lambda s: s.at):
            if step.at > elapsed:
                if self._cut.wait(step.at - elapsed):
                    break
                elapsed = step.at
            self._set(step.output, step.value)
        self._all_off(pattern)

    def _run(self) -> None:
        while True:
            pattern, taken = self._queue.get(), 1
            while pattern is not None and not self._queue.empty():
                pattern, taken = self._queue.get_nowait(), taken + 1  # only the newest plays
            if pattern is None:
                break
            try:
                self._play(pattern)
            except Exception:  # a pin error must not kill the feedback thread for good
                logger.exception("feedback pattern %s failed", pattern.name)
            with self._pending_lock:
                self._pending -= taken
                if self._pending == 0:
                    self.idle.set()

    def close(self) -> None:
        self._cut.set()
        self._queue.put(None)
        self._worker.join(timeout=5)
        for device in (*self._leds.values(), self._buzzer, self._door):
            if device is not None:
                device.close()
