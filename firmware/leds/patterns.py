"""The feedback patterns of DESIGN.md as plain data, testable without pins.

A pattern is a list of steps, each "at t seconds, set this output to this
value"; outputs run in parallel (the green LED stays on while the beep ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.tokens.verdict import Kind

HIGH, MID, LOW = 1760.0, 880.0, 440.0  # Hz; within a TonalBuzzer of mid A5 and one octave
BEEP = 0.12
LIGHT = 1.0


@dataclass(frozen=True)
class Step:
    at: float
    output: str  # "green" | "red" | "amber" | "buzzer" | "door"
    value: float  # LED/door: 1 on, 0 off; buzzer: tone in Hz, 0 silent


@dataclass(frozen=True)
class Pattern:
    name: str
    steps: tuple[Step, ...]

    @property
    def duration(self) -> float:
        return max(s.at for s in self.steps)


def _light(output: str) -> tuple[Step, ...]:
    return (Step(0.0, output, 1), Step(LIGHT, output, 0))


def _beeps(tone: float, n: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i in range(n):
        start = i * 2 * BEEP
        steps += [Step(start, "buzzer", tone), Step(start + BEEP, "buzzer", 0)]
    return tuple(steps)


ACCEPTED = Pattern("green+high beep", _light("green") + _beeps(HIGH, 1))
ALREADY_CHECKED_IN = Pattern("green+beep", _light("green") + _beeps(MID, 1))
REJECTED = Pattern("red+2 low beeps", _light("red") + _beeps(LOW, 2))
# A visit that could not be judged or recorded (storage, clock): the amber fault
# blinking is already on; three low beeps tell the visitor to ask staff.
FAULT = Pattern("amber fault+3 low beeps", _beeps(LOW, 3))


def for_verdict(kind: Kind) -> Pattern:
    return {Kind.ACCEPTED: ACCEPTED, Kind.ALREADY_CHECKED_IN: ALREADY_CHECKED_IN, Kind.REJECTED: REJECTED}[kind]


def door_pulse(seconds: float) -> tuple[Step, ...]:
    return (Step(0.0, "door", 1), Step(seconds, "door", 0))
