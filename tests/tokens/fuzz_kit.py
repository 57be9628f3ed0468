"""What every fuzz target's sample run must show, said once for the targets' tests."""

from __future__ import annotations


def assert_found_nothing(result: dict, count: int, max_verify_us: float) -> None:
    """Every input judged, none crashed, was falsely accepted or slow, and every seed got its verdict."""
    assert result["count"] == count and sum(result["verdicts"].values()) == count
    assert result["crashes"] == 0 and result["crash_types"] == {} and result["false_accepts"] == 0
    assert result["slow_inputs"] == 0 and result["slowest_verify_us"] < max_verify_us
    assert result["seed_check"]["as_expected"] == result["seed_check"]["seeds"] and result["ok"] is True


def assert_reaches(result: dict, verdicts: set[str], accepted: int) -> None:
    """Every verdict came, each for at least half a percent of the inputs; `accepted` of them were seeds' greens."""
    got = result["verdicts"]
    assert set(got) == verdicts, got
    assert all(n > 0.005 * result["count"] for n in got.values()), got
    assert 0 < accepted == result["seed_accepts"]
