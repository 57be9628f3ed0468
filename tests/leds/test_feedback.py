"""The DESIGN.md patterns driven on gpiozero mock pins, in order; waits on the feedback's idle event."""

from __future__ import annotations

import time

import pytest

from conftest import changes
from firmware.leds import patterns
from firmware.leds.feedback import GpioFeedback, Pins
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


def test_a_new_pattern_cuts_the_one_playing_and_leaves_nothing_on(feedback, pins):
    """The next visitor is answered at once: a pattern that is playing stops and leaves its outputs off."""
    long = patterns.Pattern("green for half a minute", (patterns.Step(0.0, "green", 1),
                                                        patterns.Step(30.0, "green", 0)))
    feedback.show(long)
    deadline = time.monotonic() + 5
    while changes(pins.log, "GPIO17") != [1.0]:
        assert time.monotonic() < deadline, "the first pattern never started"
        time.sleep(0.01)  # polling the feedback thread's output, bounded
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
