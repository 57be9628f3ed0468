"""The fuzz harness: a modest run finds nothing and reaches every layer, and a broken verifier is caught."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
from functools import partial

import base45
import pytest

from firmware import cli
from lab import cli as lab_cli
from lab.fuzz import engine as fuzz
from lab.fuzz import targets
from firmware.tokens.verdict import Kind, Verdict

COUNT = 20_000


@pytest.fixture(scope="module")
def result():
    return targets.run("kp1", count=COUNT, workers=2, seed=1)


def test_a_modest_run_has_no_crash_and_no_false_accept(result):
    assert result["count"] == COUNT and result["workers"] == 2
    assert result["crashes"] == 0 and result["crash_types"] == {}
    assert result["false_accepts"] == 0
    assert result["ok"] is True
    assert sum(result["verdicts"].values()) == COUNT


def test_the_oracle_is_live_every_seed_gets_its_verdict_unmutated(result):
    check = result["seed_check"]
    assert check["valid"] >= 10 and check["seeds"] > check["valid"]
    assert check["as_expected"] == check["seeds"] and check["wrong"] == {}


def test_mutants_reach_the_deep_checks(result):
    reasons = result["verdicts"]
    for reason in ("malformed", "bad_signature", "unknown_issuer", "revoked_issuer", "expired", "not_yet_valid"):
        assert reasons.get(reason, 0) > 0, reason
    # malformed must not be nearly everything: most inputs would then only test base45 and CBOR
    assert reasons["malformed"] < 0.95 * COUNT


def test_the_result_holds_no_token_text(result):
    assert "KP1:" not in json.dumps(result)


def test_a_verifier_that_accepts_everything_is_reported_as_false_accepts():
    target = fuzz.kp1_target(0)
    yes = dataclasses.replace(target, verify=lambda text: Verdict(Kind.ACCEPTED))
    result = targets.run(yes, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 1_500  # all but the mutants that came back as a valid seed
    assert result["ok"] is False and result["seed_check"]["as_expected"] < result["seed_check"]["seeds"]


def test_a_verifier_that_raises_is_reported_as_crashes_with_the_inputs_saved(tmp_path):
    target = fuzz.kp1_target(0)

    def flaky(text: str):
        if len(text) % 7 == 0:
            raise ZeroDivisionError("planted")
        return target.verify(text)

    result = targets.run(dataclasses.replace(target, verify=flaky), count=600, workers=2, seed=0, out=tmp_path)
    assert 0 < result["crashes"] < fuzz.MAX_SAVED and set(result["crash_types"]) == {"ZeroDivisionError"}
    assert result["false_accepts"] == 0 and result["ok"] is False
    saved = [json.loads(p.read_text()) for p in tmp_path.glob("kp1-crash-*.json")]
    assert len(saved) == result["crashes"]
    for record in saved:
        assert len(record["text"]) % 7 == 0 and "planted" in record["detail"]
        assert bytes.fromhex(record["hex"]).decode("utf-8", "surrogatepass") == record["text"]


def test_a_worker_that_dies_is_a_crash():
    target, parent = fuzz.kp1_target(0), os.getpid()

    def fatal(text: str):  # as a segfault in a C extension would: no exception, no result
        if os.getpid() != parent:
            os._exit(3)
        return target.verify(text)

    result = targets.run(dataclasses.replace(target, verify=fatal), count=100, workers=2, seed=0)
    assert result["crashes"] == 2 and result["count"] == 0 and result["ok"] is False


def test_a_verifier_that_hangs_is_reported_with_the_input_number():
    target, parent = fuzz.kp1_target(0), os.getpid()

    def stuck(text: str):  # the hostile input this harness exists to find: verify never returns
        if os.getpid() != parent and len(text) % 5 == 0:
            threading.Event().wait()
        return target.verify(text)

    result = targets.run(dataclasses.replace(target, verify=stuck), count=200, workers=2, seed=0, hang_s=0.5)
    assert result["crashes"] == 2 and result["ok"] is False
    assert all("hung on input" in kind for kind in result["crash_types"])


def test_same_seed_same_run():
    a, b = (targets.run("kp1", count=1_000, workers=2, seed=7) for _ in range(2))
    assert a["verdicts"] == b["verdicts"] and a["seed_accepts"] == b["seed_accepts"]


def test_fast_base45_encoder_matches_the_package():
    rng = random.Random(0)
    for n in [0, 1, 2, 3, *(rng.randrange(400) for _ in range(200))]:
        data = rng.randbytes(n)
        assert fuzz.b45encode(data) == base45.b45encode(data).decode("ascii")


def test_the_command_prints_one_json_object_and_exits_by_the_findings(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["fuzz", "kp1", "--count", "300", "--workers", "1", "--seed", "3"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["count"] == 300
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["fuzz", "kp1", "--count", "0"])
    assert refused.value.code == 2 and "argument --count: must be at least 1" in capsys.readouterr().err


def test_the_command_line_offers_every_target_and_only_those():
    assert lab_cli.FUZZ_TARGETS == tuple(sorted(targets.TARGETS))


def test_the_seeds_hold_the_card_issuers_texts_and_a_phone_verifier_that_takes_their_keys_is_reported():
    """One key, one role: a card shown as a phone token, a phone token's claims from a card issuer's key, and a
    card issuer's signature under a phone issuer's kid are seeds; a verifier blind to the role takes the second."""
    target = fuzz.kp1_target(0)
    verifier = target.verify.func.__self__
    trust = verifier.trust()
    assert sum(bool(i.card_days) for i in trust.issuers.values()) >= 3
    blind = dataclasses.replace(trust, issuers={kid: dataclasses.replace(i, card_days=0)
                                                for kid, i in trust.issuers.items()})
    planted = dataclasses.replace(verifier, trust=lambda: blind)
    result = targets.run(dataclasses.replace(target, verify=partial(planted.verify_raising, now=fuzz.NOW)),
                         count=1_000, workers=2, seed=0)
    assert result["ok"] is False
    # the cards themselves are still refused for their days (malformed); the phone token of a card key is taken
    assert result["seed_check"]["wrong"] == {"unknown_issuer->malformed": 3, "unknown_issuer->accepted": 3}
