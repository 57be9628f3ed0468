"""`qrgate fuzz certlogic`: a sample finds nothing and reaches every reason; the harness is live: an evaluator
that raises something else, a validator that raises or misses a form evaluation refuses, are reported."""

from __future__ import annotations

import json

import cbor2
import pytest

from firmware import cli
from firmware.tokens import certlogic
from lab.fuzz import certlogic as fuzz_certlogic
from lab.fuzz import targets

COUNT = 12_000


@pytest.fixture(scope="module")
def result():
    return targets.run("certlogic", count=COUNT, workers=2, seed=1)


def test_a_sample_finds_nothing(result):
    nothing = {"count": COUNT, "crashes": 0, "crash_types": {}, "false_accepts": 0, "slow_inputs": 0, "ok": True}
    assert {key: result[key] for key in nothing} == nothing
    seeds = len(fuzz_certlogic.RULES)  # each answered as the specification says
    assert result["seed_check"] == {"seeds": seeds, "valid": 0, "as_expected": seeds, "wrong": {}}
    assert sum(result["verdicts"].values()) == COUNT and result["slowest_verify_us"] < fuzz_certlogic.MAX_VERIFY_US


def test_the_mutants_reach_every_answer_and_nearly_every_reason(result):
    verdicts = result["verdicts"]
    reasons = fuzz_certlogic.STRUCTURAL | {"neither_truthy_nor_falsy", "not_an_integer", "not_a_date_time",
                                           "not_comparable", "not_an_array", "not_a_string", "invalid_date"}
    assert {"true", "false", "value"} | reasons <= set(verdicts), verdicts
    assert verdicts["true"] > 0.1 * COUNT and verdicts["false"] > 0.02 * COUNT
    assert set(verdicts) <= reasons | {"true", "false", "value", "date_out_of_range", "too_much_work"}


def test_an_evaluator_that_raises_anything_else_is_a_crash(tmp_path):
    def flaky(expr, data):
        if isinstance(expr, dict) and "reduce" in expr:
            raise TypeError("planted")
        return certlogic.evaluate(expr, data)

    result = targets.run(fuzz_certlogic.certlogic_target(0, evaluate=flaky), count=2_000, workers=2, seed=0,
                         out=tmp_path)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"TypeError"} and result["ok"] is False
    [saved, *_] = sorted(tmp_path.glob("certlogic-crash-*.json"))
    expr, data = cbor2.loads(bytes.fromhex(json.loads(saved.read_text())["hex"]))  # a finding replays
    with pytest.raises(TypeError):
        flaky(expr, data)


def test_a_validator_that_raises_is_a_crash():
    def fragile(expr):
        if isinstance(expr, dict) and "plusTime" in json.dumps(expr, default=repr):
            raise KeyError("planted")
        return certlogic.validate(expr)

    result = targets.run(fuzz_certlogic.certlogic_target(0, validate=fragile), count=2_000, workers=2, seed=0)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"KeyError"} and result["ok"] is False


def test_a_validator_that_misses_what_evaluation_refuses_is_reported():
    def blind(expr):
        return [issue for issue in certlogic.validate(expr) if not issue.startswith("wrong_arity")]

    result = targets.run(fuzz_certlogic.certlogic_target(0, validate=blind), count=3_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["crashes"] == 0 and result["ok"] is False


def test_a_validator_answering_other_than_reasons_is_reported():
    result = targets.run(fuzz_certlogic.certlogic_target(0, validate=lambda expr: ["wrong"]), count=500,
                         workers=1, seed=0)
    assert result["false_accepts"] == 500 - result["crashes"] and result["ok"] is False


def test_the_command_takes_the_target(capsys):
    args = cli.build_parser().parse_args(["fuzz", "certlogic", "--count", "300", "--workers", "1", "--seed", "3"])
    assert args.func(args) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["target"] == "certlogic" and json.loads(line)["count"] == 300
