"""`qrgate fuzz dcc`: the EU DCC target finds nothing in a short run, reaches the door's checks, and its
oracle (on the signed content, not the text) both lets the lenient re-encodings pass and catches a
verifier that accepts too much."""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import zlib

import cbor2
import pytest

from lab.fuzz import dcc as fuzz_dcc
from firmware import cli
from lab.fuzz import engine as fuzz
from lab.fuzz import targets
from firmware.tokens import dcc
from firmware.tokens.verdict import Kind, Reason, Verdict

COUNT = 4_000
POLICY = {"series_incomplete", "vaccination_too_recent", "test_positive", "test_too_old", "test_type_not_accepted",
          "recovery_not_valid", "type_not_accepted"}


@pytest.fixture(scope="module")
def target():
    return fuzz_dcc.dcc_target(0)


@pytest.fixture(scope="module")
def result():
    return targets.run("dcc", count=COUNT, workers=2, seed=1)


def test_a_short_run_has_no_crash_no_hang_and_no_false_accept(result):
    assert result["target"] == "dcc" and result["count"] == COUNT and result["workers"] == 2
    assert result["crashes"] == 0 and result["crash_types"] == {}  # a hang or a dead worker would be listed here
    assert result["false_accepts"] == 0 and result["ok"] is True
    assert result["slowest_verify_us"] < 50_000  # hostile CBOR among the mutants: no bomb costs the door
    assert sum(result["verdicts"].values()) == COUNT
    assert "HC1:" not in json.dumps(result)


def test_mutants_reach_the_signature_the_cwt_and_the_venue_rules(result):
    verdicts = result["verdicts"]
    for reason in ("malformed", "bad_signature", "unknown_issuer", "expired", "not_yet_valid", "key_usage"):
        assert verdicts.get(reason, 0) > 0, reason
    assert len(POLICY & set(verdicts)) >= 5, verdicts
    assert len(set(verdicts) - {"accepted"}) >= 10
    assert verdicts["malformed"] < 0.9 * COUNT
    # Re-encodings of genuine DCCs (and valid payloads the harness signed) come back accepted, allowed.
    assert verdicts.get("accepted", 0) == result["seed_accepts"] > 0


def test_every_seed_gets_its_expected_verdict(target, result):
    check = result["seed_check"]
    assert check["as_expected"] == check["seeds"] and check["wrong"] == {}
    expects = {s.expect for s in target.seeds}
    assert expects >= {"accepted", "unknown_issuer", "bad_signature", "expired", "not_yet_valid", "key_usage",
                       "malformed"} | POLICY
    for s in target.seeds:
        assert fuzz._label(target.verify(s.text)) == s.expect, s.expect
        assert target.may_accept(s.text) is (s.expect == "accepted")
    kinds = {(s.expect, dcc.verify(s.text, target.verify.func.__self__.trust().dcc_signers, fuzz.NOW).dcc_type)
             for s in target.seeds}
    assert {("accepted", k) for k in "vtr"} <= kinds
    algs = {cbor2.loads(fuzz.cose_parts(s.body)[0]).get(1) for s in target.seeds if s.expect == "accepted"}
    assert algs == {dcc.ALG_ES256, dcc.ALG_PS256}


def test_the_oracle_allows_the_same_signed_content_in_another_encoding(target):
    seed = next(s for s in target.seeds if s.expect == "accepted" and
                cbor2.loads(fuzz.cose_parts(s.body)[0])[1] == dcc.ALG_ES256 and s.body[:1] == b"\xd2")
    prot, unprot, payload, sig = fuzz.cose_parts(seed.body)
    untagged = cbor2.dumps([prot, unprot, payload, sig])
    malleated = cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, payload, fuzz_dcc._malleate_es256(sig)]))
    for text in ("HC1:" + fuzz.b45encode(zlib.compress(seed.body, 1)),  # another zlib level
                 "HC1:" + fuzz.b45encode(seed.body),  # uncompressed
                 "HC1:" + fuzz.b45encode(zlib.compress(untagged)),  # tag 18 dropped
                 "HC1:" + fuzz.b45encode(zlib.compress(seed.body) + b"\x00"),  # junk after the stream
                 "HC1:" + fuzz.b45encode(zlib.compress(malleated))):  # (r, n - s): ECDSA is malleable
        assert text != seed.text
        assert target.verify(text).kind is Kind.ACCEPTED
        assert target.may_accept(text)


def test_the_oracle_refuses_broken_or_foreign_content_whoever_signed_it(target):
    rng = random.Random(0)
    signer = next(s for s in target.signers.values() if s.types == "vtr" and s.signed is not None)
    seed = next(s for s in target.seeds if s.expect == "accepted" and fuzz.cose_parts(s.body)[0] ==
                cbor2.dumps({1: -7, 4: signer.kid}))
    prot, unprot, payload, _ = fuzz.cose_parts(seed.body)
    for _ in range(200):  # re-signed by the trusted key its kid names, but broken: never to be accepted
        bad = target.break_claims(rng, cbor2.loads(payload), signer)
        text = target.wrap(cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, bad, fuzz.resign(signer, prot, bad)])))
        assert not target.may_accept(text)
        assert not target.verify(text).green, cbor2.loads(bad)
    # The forger's signature over a genuine payload under the trusted kid: refused, and not allowed either.
    forged = cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, payload, fuzz.resign(target.forger, prot, payload)]))
    assert target.verify(target.wrap(forged)).reason is Reason.BAD_SIGNATURE
    # An invalid seed's payload re-signed by a trusted key stays invalid (it is recorded as broken).
    old = next(s for s in target.seeds if s.expect == "vaccination_too_recent")
    p = fuzz.cose_parts(old.body)
    again = cbor2.dumps(cbor2.CBORTag(18, [p[0], p[1], p[2], fuzz.resign(target.signers[cbor2.loads(p[0])[4]],
                                                                        p[0], p[2])]))
    assert not target.may_accept(target.wrap(again))


def test_a_verifier_that_accepts_everything_is_reported_as_false_accepts(target):
    yes = dataclasses.replace(target, verify=lambda text: Verdict(Kind.ACCEPTED))
    result = targets.run(yes, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 1_500  # all but the mutants that are genuine content re-encoded
    assert result["ok"] is False and result["seed_check"]["as_expected"] < result["seed_check"]["seeds"]


def test_a_verifier_that_skips_the_venue_rules_is_reported_as_false_accepts(target):
    def no_rules(text: str):
        verdict = target.verify(text)
        return Verdict(Kind.ACCEPTED, claims=verdict.claims) if verdict.reason and verdict.reason.value in POLICY \
            else verdict

    result = targets.run(dataclasses.replace(target, verify=no_rules), count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 20 and result["ok"] is False


def test_an_exception_tokens_dcc_swallows_is_still_a_crash(target, monkeypatch):
    real = dcc.dcc_type

    def flaky(payload):
        if dcc._is_map(payload) and "r" in payload:
            raise ZeroDivisionError("planted")
        return real(payload)

    monkeypatch.setattr(dcc, "dcc_type", flaky)  # the forked workers inherit it
    assert dcc.verify(target.seeds[0].text, {}, fuzz.NOW).reason is not None  # dcc.verify alone: no exception
    result = targets.run(target, count=400, workers=2, seed=0)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"ZeroDivisionError"} and result["ok"] is False


def test_hostile_cbor_reaches_the_decoder(monkeypatch):
    """With the plain cbor2 decoder that cost the door 0.4 s for one 189-character QR, the run finds a slow one."""
    import io

    def plain(data: bytes):
        try:
            return cbor2.CBORDecoder(io.BytesIO(data)).decode()
        except Exception:  # noqa: BLE001
            raise dcc._Stop(Reason.MALFORMED) from None

    monkeypatch.setattr(dcc, "_loads", plain)  # the forked workers inherit it
    result = targets.run("dcc", count=1_500, workers=2, seed=1)
    assert result["slowest_verify_us"] > 50_000 and result["slowest_verdict"] == "malformed"


def test_the_command_takes_dcc(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["fuzz", "dcc", "--count", "200", "--workers", "1", "--seed", "3"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["target"] == "dcc" and json.loads(lines[0])["count"] == 200


def test_every_payload_recorded_as_broken_is_refused_when_a_trusted_key_signs_it(target):
    """The oracle's soundness: what it would call a false accept is one (no false alarms from breaks)."""
    rng = random.Random(11)
    trusted = [s for s in target.signers.values() if s.signed is not None]
    checked = steps = surprises = 0
    for _ in range(600):
        broken: set = set()
        t = dataclasses.replace(target, break_claims=functools.partial(fuzz_dcc._break_dcc_claims, broken=broken))
        data = rng.choice(target.seeds).body
        for _ in range(rng.randint(1, 3)):  # hcert changes and breaks stacked, some on broken payloads
            steps += 1
            try:
                data = rng.choice((functools.partial(fuzz_dcc._hcert, broken=broken), fuzz.mutate_structure))(rng, data, t)
            except Exception:  # a mutator's own surprise (cbor2 refusing a value), as _mutant falls back
                surprises += 1
        parts = fuzz.cose_parts(data)
        if not parts or not isinstance(parts[2], bytes):
            continue
        h = fuzz_dcc._digest(parts[2])
        for signer in trusted:
            if h in broken or (signer.kid, h) in broken:
                prot = cbor2.dumps({1: signer.alg, 4: signer.kid})
                sig = signer.raw_sign(cbor2.dumps(["Signature1", prot, b"", parts[2]]))
                verdict = target.verify(target.wrap(cbor2.dumps(cbor2.CBORTag(18, [prot, {}, parts[2], sig]))))
                assert not verdict.green, cbor2.loads(parts[2])
                checked += 1
    assert checked > 300
    assert surprises < steps // 10  # a mutator that mostly failed would leave this test checking little


def test_same_seed_same_world(target):
    """Keys, certificates and seed texts come from --seed alone (RFC 6979 ECDSA), but for the PS256
    seeds' signatures: the library draws PSS salts at random."""
    again, other = fuzz_dcc.dcc_target(0), fuzz_dcc.dcc_target(1)
    es256 = lambda t: [s.text for s in t.seeds if cbor2.loads(fuzz.cose_parts(s.body)[0]).get(1) != -37]  # noqa: E731
    assert es256(again) == es256(target) and len(es256(target)) < len(target.seeds)
    assert [s.expect for s in again.seeds] == [s.expect for s in target.seeds]
    assert set(again.signers) == set(target.signers) and not set(other.signers) & set(target.signers)
