"""Readiness on fakes (clock guard, trust store): which reason blocks judgement, and which faults show."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from firmware.faults import Faults
from firmware.readiness import AUTHORITY_KEY_NOT_LISTED, NO_TRUST_LIST, TRUST_LIST_EXPIRED, Readiness
from firmware.store.seal import OpeningKey

NOW = 1_800_000_000
AUTHORITY = OpeningKey.generate().public_key()


class Clock:
    def __init__(self, problem: str | None = None):
        self._problem = problem

    def problem(self, now: float) -> str | None:
        return self._problem

    def describe(self, problem: str) -> str:
        return f"the clock: {problem}"


@dataclass
class List:
    seq: int = 1
    not_after: int = NOW + 86400
    vouches: bool = True

    def expired(self, now: float) -> bool:
        return now > self.not_after

    def sealing_key(self, now: float):
        return AUTHORITY if self.vouches else None


class Trust:
    def __init__(self, current: List | None):
        self._current, self.refreshed = current, 0

    def refresh(self) -> None:
        self.refreshed += 1

    def current(self) -> List | None:
        return self._current


@pytest.mark.parametrize("clock, current, blocked, faults", [
    (None, List(), None, set()),
    ("clock_not_synchronised", List(), "clock_not_synchronised", {"clock"}),
    (None, None, NO_TRUST_LIST, {"trust_list"}),
    (None, List(not_after=NOW - 1), TRUST_LIST_EXPIRED, {"trust_list"}),
    (None, List(vouches=False), AUTHORITY_KEY_NOT_LISTED, {"authority_key"}),
    ("clock_jumped", List(not_after=NOW - 1, vouches=False), "clock_jumped", {"clock", "trust_list", "authority_key"}),
])
def test_the_first_reason_blocks_and_every_problem_is_a_fault(clock, current, blocked, faults):
    f = Faults()
    ready = Readiness(Clock(clock), Trust(current), f)
    assert ready.blocking(NOW) == blocked
    assert set(f.active()) == faults and ready.clock_problem == clock


def test_faults_clear_when_their_cause_is_gone_and_a_new_list_is_adopted_first():
    f = Faults()
    trust = Trust(None)
    ready = Readiness(Clock("clock_not_synchronised"), trust, f)
    ready.blocking(NOW)
    ready.clock, trust._current = Clock(None), List()
    assert ready.blocking(NOW) is None and f.active() == {} and trust.refreshed == 2


class SteppedBack(Clock):
    """A guard whose high-water mark is NOW: a time before it is a clock stepped back."""

    def problem(self, now: float) -> str | None:
        return "clock_stepped_back" if now < NOW else None


@dataclass
class VouchingUntil(List):
    """A list in force that names an authority key only until `until`."""

    until: float = NOW

    def sealing_key(self, now: float):
        return AUTHORITY if now <= self.until else None


def test_the_clock_and_the_authority_key_are_judged_at_the_time_asked_about():
    f = Faults()
    ready = Readiness(SteppedBack(), Trust(VouchingUntil()), f)
    assert ready.blocking(NOW - 1) == "clock_stepped_back"
    assert ready.blocking(NOW) is None and f.active() == {}
    assert ready.blocking(NOW + 1) == AUTHORITY_KEY_NOT_LISTED and set(f.active()) == {"authority_key"}


def test_the_clock_fault_says_what_the_guard_found():
    f = Faults()
    Readiness(Clock("clock_jumped"), Trust(List()), f).blocking(NOW)
    assert f.active() == {"clock": "the clock: clock_jumped"}


def test_the_authority_key_fault_clears_once_a_list_naming_one_is_in_force():
    f = Faults()
    trust = Trust(List(vouches=False))
    ready = Readiness(Clock(), trust, f)
    assert ready.blocking(NOW) == AUTHORITY_KEY_NOT_LISTED
    assert f.active() == {"authority_key": "the trust list (seq 1) names no authority key valid now to seal visits to"}
    trust._current = List(seq=2)
    assert ready.blocking(NOW) is None and f.active() == {}
