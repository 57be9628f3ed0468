"""The DESIGN.md patterns driven on gpiozero mock pins, in order; waits on the feedback's idle event."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import RecordingPin, changes
from firmware.config import GpioConfig
from firmware.leds import patterns
from firmware.leds.feedback import GpioFeedback, Pins, default_pin_factory
from firmware.tokens.verdict import Kind


@pytest.fixture
def feedback(pins):
    fb = GpioFeedback(Pins(door_enabled=True, door_pulse_s=0.2), pins)
    yield fb
    fb.close()


def tones(log: list) -> list[float]:
    return [e[2] for e in log if e[0] == "GPIO18" and len(e) == 3 and e[2] >= 440]


def play(feedback, pattern, door=False):
    feedback.show(pattern, door=door)
    assert feedback.idle.wait(5), "pattern did not finish"


def test_accepted_is_green_for_a_second_and_one_high_beep(feedback, pins):
    play(feedback, patterns.for_verdict(Kind.ACCEPTED))
    assert changes(pins.log, "GPIO17") == [1.0, 0.0]
    assert changes(pins.log, "GPIO18") == [0.5, 0.0]
    assert tones(pins.log) == [patterns.HIGH]
    assert changes(pins.log, "GPIO27") == [] and changes(pins.log, "GPIO23") == []


def test_already_checked_in_is_green_with_a_plain_beep(feedback, pins):
    play(feedback, patterns.for_verdict(Kind.ALREADY_CHECKED_IN))
    assert changes(pins.log, "GPIO17") == [1.0, 0.0]
    assert tones(pins.log) == [patterns.MID]


def test_rejected_is_red_with_two_low_beeps(feedback, pins):
    play(feedback, patterns.for_verdict(Kind.REJECTED))
    assert changes(pins.log, "GPIO27") == [1.0, 0.0]
    assert changes(pins.log, "GPIO18") == [0.5, 0.0, 0.5, 0.0]
    assert tones(pins.log) == [patterns.LOW, patterns.LOW]
    assert changes(pins.log, "GPIO17") == []


def test_door_pulses_only_when_asked(feedback, pins):
    play(feedback, patterns.ACCEPTED, door=True)
    assert changes(pins.log, "GPIO23") == [1.0, 0.0]


def play_long_green(feedback, pins) -> None:
    """Start a pattern that would keep green on for 30 s, and return once green is on."""
    feedback.show(patterns.Pattern("green for half a minute", (patterns.Step(0.0, "green", 1),
                                                               patterns.Step(30.0, "green", 0))))
    deadline = time.monotonic() + 5
    while changes(pins.log, "GPIO17") != [1.0]:
        assert time.monotonic() < deadline, "the first pattern never started"
        time.sleep(0.01)  # polling the feedback thread's output, bounded


def test_a_new_pattern_cuts_the_one_playing_and_leaves_nothing_on(feedback, pins):
    """The next visitor is answered at once: a pattern that is playing stops and leaves its outputs off."""
    play_long_green(feedback, pins)
    feedback.show(patterns.REJECTED)
    assert feedback.idle.wait(5), "the playing pattern was not cut"  # uncut, it would play for 30 s
    for pin in ("GPIO17", "GPIO27", "GPIO18"):
        assert pins.pin(int(pin[4:])).state == 0
    assert changes(pins.log, "GPIO27") == [1.0, 0.0]
    assert pins.log.index(("GPIO17", 0.0)) < pins.log.index(("GPIO27", 1.0))  # green off before red on


def test_answers_shown_together_play_the_newest_only(feedback, pins):
    feedback.show(patterns.ACCEPTED)
    feedback.show(patterns.REJECTED)
    assert feedback.idle.wait(5)
    assert changes(pins.log, "GPIO27") == [1.0, 0.0]


def test_fault_blinks_amber_until_cleared(feedback, pins):
    feedback.set_fault("storage")
    amber = pins.pin(22)
    deadline = time.monotonic() + 5
    while len(changes(pins.log, "GPIO22")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the blink thread's output, bounded
    assert changes(pins.log, "GPIO22")[:3] == [1.0, 0.0, 1.0]
    feedback.set_fault(None)
    assert amber.state == 0


def test_active_buzzer_beeps_on_and_off(pins):
    fb = GpioFeedback(Pins(tonal_buzzer=False), pins)
    try:
        play(fb, patterns.REJECTED)
        assert changes(pins.log, "GPIO18") == [1.0, 0.0, 1.0, 0.0]
    finally:
        fb.close()


def test_every_gpio_key_reaches_its_pin():
    g = GpioConfig(green=5, red=6, amber=13, buzzer=12, buzzer_kind="active", door=26, door_enabled=True,
                   door_pulse_s=0.7)
    assert Pins.of(g) == Pins(green=5, red=6, amber=13, buzzer=12, door=26, tonal_buzzer=False, door_enabled=True,
                              door_pulse_s=0.7)
    assert Pins.of(GpioConfig()).tonal_buzzer is True  # the default: a passive piezo, played as tones


def test_the_mock_backend_gives_pins_that_play_tones_and_auto_leaves_the_choice_to_gpiozero():
    factory = default_pin_factory(GpioConfig(backend="mock"))
    assert isinstance(factory, MockFactory)
    fb = GpioFeedback(Pins(), factory)  # a TonalBuzzer refuses pins without PWM: these have it
    try:
        play(fb, patterns.ACCEPTED)
    finally:
        fb.close()
        factory.reset()
    assert default_pin_factory(GpioConfig(backend="auto")) is None


def test_a_door_that_is_not_enabled_is_never_driven(pins):
    fb = GpioFeedback(Pins(door_enabled=False), pins)
    try:
        play(fb, patterns.ACCEPTED, door=True)
        assert changes(pins.log, "GPIO17") == [1.0, 0.0]
        assert "GPIO23" not in {entry[0] for entry in pins.log}  # the pin is not even claimed
    finally:
        fb.close()


def test_the_door_pulses_only_when_the_caller_says_so(feedback, pins):
    feedback.show(patterns.ACCEPTED)  # no door argument: an unmanned store's door stays shut
    assert feedback.idle.wait(5)
    assert changes(pins.log, "GPIO23") == []


def test_each_step_comes_at_its_time(feedback, pins):
    """The visitor sees green for LIGHT and hears each beep for BEEP (lower bounds: a busy machine only adds)."""
    play(feedback, patterns.REJECTED)
    red = [t for pin, _, t in pins.timed if pin == "GPIO27"]
    buzz = [(v, t) for pin, v, t in pins.timed if pin == "GPIO18"]
    assert red[1] - red[0] >= patterns.LIGHT
    starts = [t for v, t in buzz if v]
    ends = [t for v, t in buzz if not v]
    assert len(starts) == len(ends) == 2
    assert all(end - start >= patterns.BEEP for start, end in zip(starts, ends))
    assert starts[1] - starts[0] >= 2 * patterns.BEEP


class Schedule(threading.Event):
    """The feedback's cut, never set while a pattern plays: it notes each wait's length and returns at once,
    so the schedule a pattern keeps is seen without a clock (and on a loaded machine too)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


@pytest.mark.parametrize("name", ["ACCEPTED", "REJECTED", "ALREADY_CHECKED_IN"])
def test_each_step_waits_only_for_its_own_time_so_a_pattern_lasts_its_length(feedback, name):
    pattern = getattr(patterns, name)
    feedback._cut = schedule = Schedule()
    play(feedback, pattern)
    assert all(w > 0 for w in schedule.waits)
    assert sum(schedule.waits) == pytest.approx(max(step.at for step in pattern.steps))


def test_of_several_answers_waiting_only_the_newest_plays(feedback, pins):
    play_long_green(feedback, pins)
    feedback.show(patterns.ACCEPTED)
    feedback.show(patterns.REJECTED)
    assert feedback.idle.wait(5)
    assert changes(pins.log, "GPIO17") == [1.0, 0.0]  # the long green cut; the accepted answer never shown
    assert changes(pins.log, "GPIO27") == [1.0, 0.0]


def test_the_fault_blinks_half_a_second_on_half_off(feedback, pins):
    feedback.set_fault("storage")
    deadline = time.monotonic() + 5
    while len([e for e in pins.timed if e[0] == "GPIO22"]) < 3:
        assert time.monotonic() < deadline, "no blinking"
        time.sleep(0.05)  # polling the blink thread's output, bounded
    feedback.set_fault(None)
    t = [t for pin, _, t in pins.timed if pin == "GPIO22"]
    # 0.5 s each; the bound of 0.9 s tells it from gpiozero's default of 1 s, with room for a busy machine.
    assert 0.45 <= t[1] - t[0] < 0.9 and 0.45 <= t[2] - t[1] < 0.9


def test_a_pin_error_leaves_the_feedback_answering_the_next_visitor(caplog):
    class FlakyPin(RecordingPin):
        failed = False

        def _change_state(self, value):
            if self.info.name == "GPIO27" and value and not FlakyPin.failed:
                FlakyPin.failed = True
                raise OSError("the GPIO chip said no")
            return super()._change_state(value)

    RecordingPin.log = []
    factory = MockFactory(pin_class=FlakyPin)
    fb = GpioFeedback(Pins(), factory)
    try:
        play(fb, patterns.REJECTED)
        assert FlakyPin.failed and "feedback pattern red+2 low beeps failed" in caplog.text
        play(fb, patterns.ACCEPTED)
        assert changes(RecordingPin.log, "GPIO17") == [1.0, 0.0]  # the next answer is shown whole
    finally:
        fb.close()
        factory.reset()
