"""`qrgate fuzz kc1`: printed cards through KP1's harness; a modest run finds nothing and reaches every layer, and a
card verifier that trusts a card longer than its issuer may sign, takes a phone issuer's key or forgets the revoked
cards is caught."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from functools import partial

import base45
import cbor2
import pytest

from firmware.tokens import cose, kc1, kp1
from firmware.tokens.verdict import Kind, Verdict
from lab.fuzz import engine as fuzz
from lab.fuzz import targets

COUNT = 20_000
DAY = 86400
REASONS = {"malformed", "bad_signature", "unknown_issuer", "revoked_issuer", "expired", "not_yet_valid",
           "missing_attribute", "replayed_elsewhere", "revoked"}


@pytest.fixture(scope="module")
def result():
    return targets.run("kc1", count=COUNT, workers=2, seed=1)


@pytest.fixture(scope="module")
def target():
    return fuzz.kc1_target(0)


def test_a_modest_run_has_no_crash_and_no_false_accept(result):
    assert result["target"] == "kc1" and result["count"] == COUNT and sum(result["verdicts"].values()) == COUNT
    assert result["crashes"] == 0 and result["crash_types"] == {} and result["false_accepts"] == 0
    assert result["seed_check"]["as_expected"] == result["seed_check"]["seeds"] and result["ok"] is True


def test_mutants_reach_the_deep_checks(result):
    reasons = result["verdicts"]
    for reason in ("malformed", "bad_signature", "unknown_issuer", "revoked_issuer", "expired", "not_yet_valid"):
        assert reasons.get(reason, 0) > 0, reason
    assert reasons["malformed"] < 0.95 * COUNT  # most inputs must get past base45 and CBOR
    assert 0 < reasons["accepted"] == result["seed_accepts"]  # only the seeds' own texts, come back as they were


def test_the_result_holds_no_card_text(result):
    assert "KC1:" not in json.dumps(result)


def test_every_seed_gets_its_verdict_and_every_reason_has_a_seed(target):
    check = fuzz._check_seeds(target)
    assert check["as_expected"] == check["seeds"] and check["wrong"] == {} and check["valid"] >= 20
    assert {s.expect for s in target.seeds} == REASONS | {"accepted"}


def _claims(text: str) -> dict:
    return cbor2.loads(cose.parse_sign1(base45.b45decode(text[len(kc1.PREFIX):])).payload)


def test_the_seeds_are_cards_of_every_life_and_the_other_roles_texts(target):
    cards = [s for s in target.seeds if s.text.startswith(kc1.PREFIX)]
    assert len(cards) == len(target.seeds)
    lives = {(_claims(s.text)[kp1.CLAIM_EXP] - _claims(s.text)[kp1.CLAIM_IAT]) for s in cards if s.expect == "accepted"}
    assert {0, DAY, 30 * DAY, 365 * DAY, 1830 * DAY} <= lives  # each card issuer's shortest and longest
    atts = {tuple(_claims(s.text).get(kp1.CLAIM_ATT, ())) for s in cards if s.expect == "accepted"}
    assert len(atts) >= 4
    # claims a card issuer itself signed past its card_days, and past the hard cap
    signers = target.signers
    past = Counter()
    for s in cards:
        issuer, claims = signers[cose.parse_sign1(s.body).kid], _claims(s.text)
        if issuer.card_days and claims[kp1.CLAIM_EXP] - claims[kp1.CLAIM_IAT] > issuer.card_days * DAY:
            past[s.expect] += 1
    assert past == {"unknown_issuer": 2, "malformed": 3}
    # phone tokens shown as cards: a phone issuer's kid under KC1
    phones = [s for s in cards if not signers[cose.parse_sign1(s.body).kid].card_days]
    assert {s.expect for s in phones} == {"unknown_issuer"}
    assert sum(_claims(s.text)[kp1.CLAIM_EXP] - _claims(s.text)[kp1.CLAIM_IAT] == 15 for s in phones) >= 3


def test_claims_broken_and_re_signed_by_a_card_issuer_are_never_a_card(target):
    """The harness's own promise, on which its oracle stands: what `break_claims` returns, signed by the key the kid
    names, is refused whatever it holds."""
    rng = random.Random(0)
    verify = target.verify
    genuine = [s for s in target.seeds if s.expect == "accepted"]
    refused = Counter()
    for _ in range(3000):
        seed = rng.choice(genuine)
        envelope = cose.parse_sign1(seed.body)
        signer = target.signers[envelope.kid]
        payload = target.break_claims(rng, dict(cbor2.loads(envelope.payload)), signer)
        text = target.wrap(cose.sign1(payload, signer.key, envelope.kid))
        verdict = verify(text)
        assert not verdict.green, (text, verdict)
        refused[verdict.reason.value] += 1
    assert {"malformed", "unknown_issuer", "expired", "not_yet_valid"} <= set(refused), refused


def _lenient(target, issuer):
    """The target's verifier reading a trust list whose issuer entries `issuer` changed: a planted bug."""
    verifier = target.verify.func.__self__
    trust = verifier.trust()
    changed = dataclasses.replace(trust, issuers={kid: issuer(i) for kid, i in trust.issuers.items()})
    planted = dataclasses.replace(verifier, trust=lambda: changed)
    return dataclasses.replace(target, verify=partial(planted.verify_raising, now=fuzz.NOW))


def test_a_verifier_that_trusts_every_card_issuer_for_five_years_is_reported(target):
    bug = _lenient(target, lambda i: dataclasses.replace(i, card_days=1830) if i.card_days else i)
    result = targets.run(bug, count=4_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["crashes"] == 0 and result["ok"] is False
    assert result["seed_check"]["wrong"].get("unknown_issuer->accepted", 0) >= 2  # the seeds past card_days


def test_a_verifier_that_takes_a_phone_issuers_key_for_cards_is_reported(target):
    bug = _lenient(target, lambda i: dataclasses.replace(i, card_days=i.card_days or 1830))
    result = targets.run(bug, count=2_000, workers=2, seed=0)
    # the phone tokens shown as cards and the phone keys' cards are taken; a card issuer's signature under a phone
    # issuer's kid is then a bad signature
    assert result["ok"] is False
    assert result["seed_check"]["wrong"] == {"unknown_issuer->accepted": 6, "unknown_issuer->bad_signature": 3}


def test_a_verifier_that_forgets_the_revoked_cards_is_reported(target):
    verifier = target.verify.func.__self__
    trust = verifier.trust()
    forgetful = dataclasses.replace(verifier, trust=lambda: dataclasses.replace(trust, card_revoked=frozenset()))
    result = targets.run(dataclasses.replace(target, verify=partial(forgetful.verify_raising, now=fuzz.NOW)),
                         count=1_000, workers=2, seed=0)
    assert result["ok"] is False and result["seed_check"]["wrong"] == {"revoked->accepted": 3}


def test_a_verifier_that_accepts_everything_is_reported_as_false_accepts(target):
    yes = dataclasses.replace(target, verify=lambda text: Verdict(Kind.ACCEPTED))
    result = targets.run(yes, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 1_500 and result["ok"] is False


def test_same_seed_same_run():
    a, b = (targets.run("kc1", count=1_000, workers=2, seed=7) for _ in range(2))
    assert a["verdicts"] == b["verdicts"] and a["seed_accepts"] == b["seed_accepts"]
    assert [s.text for s in fuzz.kc1_target(3).seeds] == [s.text for s in fuzz.kc1_target(3).seeds]
