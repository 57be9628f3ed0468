"""KP1 tokens: mint -> verify, and every named rejection reason."""

from types import SimpleNamespace

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.keys import kid_of, raw_public

from lab.signers import Issuer, new_issuer, new_root
from firmware.tokens import cose, kp1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab import signers

NOW = 1_750_000_000
CTI = bytes(range(16))


def qr(signed: bytes, prefix: str = kp1.PREFIX) -> str:
    return prefix + base45.b45encode(signed).decode("ascii")


def signed_claims(issuer: Issuer, claims: dict, prefix: str = kp1.PREFIX, kid: bytes | None = None) -> str:
    """`claims` as they are (any types, any window), signed by `issuer` under its kid or `kid`."""
    return qr(cose.sign1(cbor2.dumps(claims), issuer.key, kid or issuer.kid), prefix)


def good_claims(issuer: Issuer) -> dict:
    return {kp1.CLAIM_ISS: issuer.iss, kp1.CLAIM_IAT: NOW, kp1.CLAIM_EXP: NOW + 15, kp1.CLAIM_CTI: CTI}


@pytest.fixture
def kp1_setup(tmp_path):
    issuer = new_issuer("naver", tmp_path / "issuer")
    root = new_root(tmp_path / "root")
    tl = trustlist.parse(signers.build_trust_list(root, [issuer], seq=1, issued_at=NOW), root.public_key())
    return SimpleNamespace(
        issuer=issuer, root=root, tmp=tmp_path, trust=tl, verifier=kp1.Kp1Verifier(trust=lambda: tl)
    )


def test_accepts_minted_token_with_its_claims(kp1_setup):
    text = signers.mint(kp1_setup.issuer, NOW, att=["age19", "vax"], cti=CTI)
    verdict = kp1_setup.verifier.verify(text, NOW)
    assert verdict.kind is Kind.ACCEPTED and verdict.reason is None and verdict.green
    assert verdict.claims.iss == "naver" and verdict.iss == "naver"
    assert verdict.claims.att == ("age19", "vax")
    assert verdict.claims.cti == CTI
    assert (verdict.claims.iat, verdict.claims.exp) == (NOW, NOW + kp1.DEFAULT_TTL)


def test_verdict_repr_and_json_never_show_the_token_id(kp1_setup):
    verdict = kp1_setup.verifier.verify(signers.mint(kp1_setup.issuer, NOW, cti=CTI), NOW)
    assert verdict.kind is Kind.ACCEPTED
    for shown in (repr(verdict), str(verdict.as_json()), repr(verdict.claims)):
        assert CTI.hex() not in shown and repr(CTI) not in shown
    assert verdict.as_json() == {"verdict": "accepted", "reason": None, "iss": "naver"}


def test_mint_without_cti_draws_a_random_one(kp1_setup):
    a = kp1_setup.verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW)
    b = kp1_setup.verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW)
    assert len(a.claims.cti) == 16 and a.claims.cti != b.claims.cti


@pytest.mark.parametrize("ttl", [0, 301, -1])
def test_mint_refuses_ttl_outside_1_to_300(kp1_setup, ttl):
    with pytest.raises(ValueError):
        signers.mint(kp1_setup.issuer, NOW, ttl=ttl)


def test_mint_allows_ttl_300(kp1_setup):
    assert kp1_setup.verifier.verify(signers.mint(kp1_setup.issuer, NOW, ttl=300), NOW).kind is Kind.ACCEPTED


# --- malformed ---------------------------------------------------------------


def test_accepts_hand_built_claims(kp1_setup):
    # the control for the hand-built malformed tokens below
    assert kp1_setup.verifier.verify(signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer)), NOW).kind is Kind.ACCEPTED


def test_rejects_trailing_bytes_after_the_cose_structure_as_malformed(kp1_setup):
    signed = base45.b45decode(signers.mint(kp1_setup.issuer, NOW)[len(kp1.PREFIX):])
    assert kp1_setup.verifier.verify(qr(signed + b"\x00"), NOW).reason is Reason.MALFORMED


def test_rejects_token_without_prefix_as_malformed(kp1_setup):
    text = signers.mint(kp1_setup.issuer, NOW)
    assert kp1_setup.verifier.verify(text[len(kp1.PREFIX):], NOW).reason is Reason.MALFORMED
    assert kp1_setup.verifier.verify("HC1:" + text[4:], NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("junk", ["kp1:abc", "KP1:abc", "KP1:", "KP1:ÄÖÜ", "KP1:\x00\x01\x02", "KP1:::::"])
def test_rejects_non_base45_as_malformed(kp1_setup, junk):
    verdict = kp1_setup.verifier.verify(junk, NOW)
    assert verdict.kind is Kind.REJECTED and verdict.reason is Reason.MALFORMED


@pytest.mark.parametrize("cut", [1, 2, 3, 10, 40])
def test_rejects_truncated_token_as_malformed(kp1_setup, cut):
    text = signers.mint(kp1_setup.issuer, NOW)
    assert kp1_setup.verifier.verify(text[:-cut], NOW).reason is Reason.MALFORMED


def test_rejects_text_over_1024_chars_even_if_validly_signed(kp1_setup):
    short = signers.mint(kp1_setup.issuer, NOW, att=["x" * 20] * 16)
    long = signers.mint(kp1_setup.issuer, NOW, att=["x" * 40] * 16)
    assert len(short) <= kp1.MAX_TEXT < len(long)
    assert kp1_setup.verifier.verify(short, NOW).kind is Kind.ACCEPTED
    assert kp1_setup.verifier.verify(long, NOW).reason is Reason.MALFORMED


def test_rejects_non_string_input_as_malformed(kp1_setup):
    assert kp1_setup.verifier.verify(signers.mint(kp1_setup.issuer, NOW).encode(), NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3, 4], cbor2.CBORTag(18, [b"", {}, b"", b""]), cbor2.CBORTag(98, [])])
def test_rejects_base45_of_non_cose_cbor_as_malformed(kp1_setup, obj):
    assert kp1_setup.verifier.verify(qr(cbor2.dumps(obj)), NOW).reason is Reason.MALFORMED


def test_rejects_alg_other_than_eddsa_as_malformed(kp1_setup):
    payload = cbor2.dumps(good_claims(kp1_setup.issuer))
    protected = cbor2.dumps({cose.HDR_ALG: -7, cose.HDR_KID: kp1_setup.issuer.kid})  # ES256
    signature = kp1_setup.issuer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    signed = cbor2.dumps(cbor2.CBORTag(cose.COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    assert kp1_setup.verifier.verify(qr(signed), NOW).reason is Reason.MALFORMED


def test_rejects_alg_only_in_unprotected_header_as_malformed(kp1_setup):
    payload = cbor2.dumps(good_claims(kp1_setup.issuer))
    protected = cbor2.dumps({cose.HDR_KID: kp1_setup.issuer.kid})
    signature = kp1_setup.issuer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    body = [protected, {cose.HDR_ALG: cose.ALG_EDDSA}, payload, signature]
    signed = cbor2.dumps(cbor2.CBORTag(cose.COSE_SIGN1_TAG, body))
    assert kp1_setup.verifier.verify(qr(signed), NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("cti", [b"", bytes(15), bytes(17), "0" * 16, 7])
def test_rejects_cti_that_is_not_16_bytes_as_malformed(kp1_setup, cti):
    text = signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer) | {kp1.CLAIM_CTI: cti})
    assert kp1_setup.verifier.verify(text, NOW).reason is Reason.MALFORMED


def test_rejects_window_over_300_seconds_as_malformed(kp1_setup):
    ok = signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer) | {kp1.CLAIM_EXP: NOW + 300})
    too_long = signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer) | {kp1.CLAIM_EXP: NOW + 301})
    assert kp1_setup.verifier.verify(ok, NOW).kind is Kind.ACCEPTED
    assert kp1_setup.verifier.verify(too_long, NOW).reason is Reason.MALFORMED


def test_rejects_exp_before_iat_as_malformed(kp1_setup):
    text = signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer) | {kp1.CLAIM_EXP: NOW - 1})
    assert kp1_setup.verifier.verify(text, NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("claim,value", [(kp1.CLAIM_IAT, True), (kp1.CLAIM_IAT, "now"), (kp1.CLAIM_ISS, 5), (kp1.CLAIM_ATT, "vax")])
def test_rejects_claim_of_wrong_type_as_malformed(kp1_setup, claim, value):
    text = signed_claims(kp1_setup.issuer, good_claims(kp1_setup.issuer) | {claim: value})
    assert kp1_setup.verifier.verify(text, NOW).reason is Reason.MALFORMED


# --- issuer ------------------------------------------------------------------


def test_rejects_issuer_not_in_list(kp1_setup):
    stranger = new_issuer("naver", kp1_setup.tmp / "stranger")
    assert kp1_setup.verifier.verify(signers.mint(stranger, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


def test_rejects_every_token_when_there_is_no_trust_list(kp1_setup):
    verifier = kp1.Kp1Verifier(trust=lambda: None)
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


def test_rejects_token_whose_iss_differs_from_the_listed_issuer(kp1_setup):
    impostor = Issuer("kakao", kp1_setup.issuer.key)  # same key and kid, other name
    assert kp1_setup.verifier.verify(signers.mint(impostor, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


@pytest.mark.parametrize("not_before,not_after", [(NOW + 10, NOW + 86400), (NOW - 86400, NOW - 10)])
def test_rejects_issuer_key_outside_its_validity_period(kp1_setup, not_before, not_after):
    entry = {
        "kid": kp1_setup.issuer.kid, "iss": kp1_setup.issuer.iss, "alg": "EdDSA",
        "key": raw_public(kp1_setup.issuer.key.public_key()), "not_before": not_before, "not_after": not_after,
    }
    payload = {"seq": 1, "issued_at": NOW, "not_after": NOW + 86400, "issuers": [entry], "revoked": [], "dsc": []}
    signed = cose.sign1(cbor2.dumps(payload), kp1_setup.root, kid_of(kp1_setup.root.public_key()))
    tl = trustlist.parse(signed, kp1_setup.root.public_key())
    verifier = kp1.Kp1Verifier(trust=lambda: tl)
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW).reason is Reason.UNKNOWN_ISSUER
    # the same key is fine once inside its period
    inside = (not_before + not_after) // 2
    assert verifier.verify(signers.mint(kp1_setup.issuer, inside), inside).kind is Kind.ACCEPTED


def test_rejects_revoked_issuer(kp1_setup):
    raw = signers.build_trust_list(kp1_setup.root, [kp1_setup.issuer], seq=2, issued_at=NOW, revoked=[kp1_setup.issuer.kid])
    tl = trustlist.parse(raw, kp1_setup.root.public_key())
    verifier = kp1.Kp1Verifier(trust=lambda: tl)
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW).reason is Reason.REVOKED_ISSUER


def test_rejects_forged_token_claiming_a_trusted_kid(kp1_setup):
    forger = Issuer(kp1_setup.issuer.iss, Ed25519PrivateKey.generate())
    text = signers.mint(forger, NOW, kid=kp1_setup.issuer.kid)
    verdict = kp1_setup.verifier.verify(text, NOW)
    assert verdict.reason is Reason.BAD_SIGNATURE and not verdict.green


def test_rejects_token_with_a_flipped_signature_byte(kp1_setup):
    signed = bytearray(base45.b45decode(signers.mint(kp1_setup.issuer, NOW)[4:]))
    signed[-1] ^= 0x01
    assert kp1_setup.verifier.verify(qr(bytes(signed)), NOW).reason is Reason.BAD_SIGNATURE


# --- time --------------------------------------------------------------------


def test_expiry_edge_allows_skew(kp1_setup):
    text = signers.mint(kp1_setup.issuer, NOW, ttl=15)
    exp = NOW + 15
    assert kp1_setup.verifier.verify(text, exp + 5).kind is Kind.ACCEPTED
    verdict = kp1_setup.verifier.verify(text, exp + 6)
    assert verdict.reason is Reason.EXPIRED and not verdict.green


def test_not_yet_valid_edge_allows_skew(kp1_setup):
    text = signers.mint(kp1_setup.issuer, NOW)
    assert kp1_setup.verifier.verify(text, NOW - 5).kind is Kind.ACCEPTED
    assert kp1_setup.verifier.verify(text, NOW - 6).reason is Reason.NOT_YET_VALID


def test_skew_is_configurable(kp1_setup):
    verifier = kp1.Kp1Verifier(trust=lambda: kp1_setup.trust, skew=0)
    text = signers.mint(kp1_setup.issuer, NOW, ttl=15)
    assert verifier.verify(text, NOW + 15).kind is Kind.ACCEPTED
    assert verifier.verify(text, NOW + 16).reason is Reason.EXPIRED
    assert verifier.verify(text, NOW - 1).reason is Reason.NOT_YET_VALID


# --- policy and replay ---------------------------------------------------------


def test_rejects_token_missing_a_required_attribute(kp1_setup):
    verifier = kp1.Kp1Verifier(trust=lambda: kp1_setup.trust, require=("vax",))
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW, att=["age19"]), NOW).reason is Reason.MISSING_ATTRIBUTE
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW), NOW).reason is Reason.MISSING_ATTRIBUTE
    assert verifier.verify(signers.mint(kp1_setup.issuer, NOW, att=["age19", "vax"]), NOW).kind is Kind.ACCEPTED


def test_rejects_token_known_used_elsewhere(kp1_setup):
    asked = []
    verifier = kp1.Kp1Verifier(trust=lambda: kp1_setup.trust, used_elsewhere=lambda cti: asked.append(cti) or True)
    verdict = verifier.verify(signers.mint(kp1_setup.issuer, NOW, cti=CTI), NOW)
    assert verdict.reason is Reason.REPLAYED_ELSEWHERE and asked == [CTI]
    fresh = kp1.Kp1Verifier(trust=lambda: kp1_setup.trust, used_elsewhere=lambda cti: False)
    assert fresh.verify(signers.mint(kp1_setup.issuer, NOW), NOW).kind is Kind.ACCEPTED


def test_a_verifier_bug_rejects_as_malformed_and_logs_the_exception_type_not_the_token(kp1_setup, caplog):
    # A bug (here: the trust list in force cannot be read) must not stop the loop nor light green, and the
    # operator learns what broke from the log, which names the exception's type only: its message may quote
    # the token, and nothing personal goes to a log.
    text = signers.mint(kp1_setup.issuer, NOW, cti=CTI)

    def broken_trust():
        raise ZeroDivisionError(f"cannot judge {text}")

    verifier = kp1.Kp1Verifier(trust=broken_trust)
    with caplog.at_level("ERROR", logger=kp1.__name__):
        verdict = verifier.verify(text, NOW)
    assert verdict.kind is Kind.REJECTED and verdict.reason is Reason.MALFORMED and not verdict.green
    with pytest.raises(ZeroDivisionError):
        verifier.verify_raising(text, NOW)  # the fuzz harness's call lets the bug through
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and "ZeroDivisionError" in logged[0]
    assert text[len(kp1.PREFIX):] not in logged[0] and CTI.hex() not in logged[0]
