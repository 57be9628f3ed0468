"""Reconnect delays: exponential growth to a cap, full jitter, a fresh start after success."""

import random

import pytest

from firmware.backoff import Backoff


def test_delays_stay_between_half_the_base_and_a_doubling_ceiling_up_to_the_cap():
    backoff = Backoff(1.0, 60.0, random.Random(1))
    for attempt in range(12):
        delay = backoff.next()
        assert 0.5 <= delay <= min(60.0, 2.0**attempt)


def test_the_ceiling_is_reached_and_delays_spread_under_it():
    backoff = Backoff(1.0, 8.0, random.Random(2))
    late = [backoff.next() for _ in range(200)][10:]
    assert max(late) <= 8.0 and max(late) > 7.0 and min(late) < 2.0  # jittered over the whole range


def test_success_starts_over():
    backoff = Backoff(1.0, 60.0, random.Random(3))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 1.0


def test_two_devices_do_not_retry_in_step():
    a, b = Backoff(rng=random.Random(10)), Backoff(rng=random.Random(11))
    assert [round(a.next(), 3) for _ in range(5)] != [round(b.next(), 3) for _ in range(5)]


def test_nonsense_bounds_are_refused():
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(10, 1)
