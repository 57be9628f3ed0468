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


class DccLists:
    """A DccList (readiness.DccList) whose problem the test sets, and which records when it was asked."""

    def __init__(self, fault: str, problem: tuple[str, str] | None = None):
        self.fault, self.problem_now, self.asked = fault, problem, []

    def problem(self, now: float) -> tuple[str, str] | None:
        self.asked.append(now)
        return self.problem_now


DCC = "HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC"
KP1 = "KP1:AAAA"


def test_a_dcc_list_problem_blocks_dccs_only_and_is_a_fault_for_every_check():
    f = Faults()
    rules = DccLists("dcc_rules", ("dcc_rules_stale", "the rules are old"))
    fresh = DccLists("dcc_revocation")
    ready = Readiness(Clock(), Trust(List()), f, [fresh, rules])
    assert ready.blocking(NOW, DCC) == "dcc_rules_stale"
    assert ready.blocking(NOW, KP1) is None
    assert ready.blocking(NOW) is None  # the housekeeping's check: no text, no block, but the fault shows
    assert f.active() == {"dcc_rules": "the rules are old"}
    assert rules.asked == fresh.asked == [NOW] * 3


def test_the_first_dcc_list_problem_is_the_reason_and_a_device_fault_comes_before_it():
    f = Faults()
    first = DccLists("dcc_revocation", ("revocation_list_missing", "no list"))
    second = DccLists("dcc_rules", ("dcc_rules_stale", "old"))
    ready = Readiness(Clock(), Trust(List()), f, [first, second])
    assert ready.blocking(NOW, DCC) == "revocation_list_missing"
    assert set(f.active()) == {"dcc_revocation", "dcc_rules"}
    ready.clock = Clock("clock_jumped")
    assert ready.blocking(NOW, DCC) == "clock_jumped"


def test_a_dcc_list_fault_clears_when_its_problem_is_gone():
    f = Faults()
    rules = DccLists("dcc_rules", ("dcc_rules_missing", "none for DE"))
    ready = Readiness(Clock(), Trust(List()), f, [rules])
    assert ready.blocking(NOW, DCC) == "dcc_rules_missing"
    rules.problem_now = None
    assert ready.blocking(NOW, DCC) is None and f.active() == {}
