"""KP1 tokens: mint -> verify, and every named rejection reason."""

from types import SimpleNamespace

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.keys import Issuer, kid_of, new_issuer, new_root, raw_public
from firmware.tokens import cose, kp1, trustlist
from firmware.tokens.verdict import Kind, Reason

NOW = 1_750_000_000
CTI = bytes(range(16))


def qr(signed: bytes) -> str:
    return kp1.PREFIX + base45.b45encode(signed).decode("ascii")


def signed_claims(issuer: Issuer, claims: dict) -> str:
    return qr(cose.sign1(cbor2.dumps(claims), issuer.key, issuer.kid))


def good_claims(issuer: Issuer) -> dict:
    return {kp1.CLAIM_ISS: issuer.iss, kp1.CLAIM_IAT: NOW, kp1.CLAIM_EXP: NOW + 15, kp1.CLAIM_CTI: CTI}


@pytest.fixture
def world(tmp_path):
    issuer = new_issuer("naver", tmp_path / "issuer")
    root = new_root(tmp_path / "root")
    tl = trustlist.parse(trustlist.build(root, [issuer], seq=1, issued_at=NOW), root.public_key())
    return SimpleNamespace(
        issuer=issuer, root=root, tmp=tmp_path, trust=tl, verifier=kp1.Verifier(trust=lambda: tl)
    )


def test_accepts_minted_token_with_its_claims(world):
    text = kp1.mint(world.issuer, NOW, att=["age19", "vax"], cti=CTI)
    verdict = world.verifier.verify(text, NOW)
    assert verdict.kind is Kind.ACCEPTED and verdict.reason is None and verdict.green
    assert verdict.claims.iss == "naver" and verdict.iss == "naver"
    assert verdict.claims.att == ("age19", "vax")
    assert verdict.claims.cti == CTI
    assert (verdict.claims.iat, verdict.claims.exp) == (NOW, NOW + kp1.DEFAULT_TTL)


def test_verdict_repr_and_json_never_show_the_token_id(world):
    verdict = world.verifier.verify(kp1.mint(world.issuer, NOW, cti=CTI), NOW)
    assert verdict.kind is Kind.ACCEPTED
    for shown in (repr(verdict), str(verdict.as_json()), repr(verdict.claims)):
        assert CTI.hex() not in shown and repr(CTI) not in shown
    assert verdict.as_json() == {"verdict": "accepted", "reason": None, "iss": "naver"}


def test_mint_without_cti_draws_a_random_one(world):
    a = world.verifier.verify(kp1.mint(world.issuer, NOW), NOW)
    b = world.verifier.verify(kp1.mint(world.issuer, NOW), NOW)
    assert len(a.claims.cti) == 16 and a.claims.cti != b.claims.cti


@pytest.mark.parametrize("ttl", [0, 301, -1])
def test_mint_refuses_ttl_outside_1_to_300(world, ttl):
    with pytest.raises(ValueError):
        kp1.mint(world.issuer, NOW, ttl=ttl)


def test_mint_allows_ttl_300(world):
    assert world.verifier.verify(kp1.mint(world.issuer, NOW, ttl=300), NOW).kind is Kind.ACCEPTED


# --- malformed ---------------------------------------------------------------


def test_accepts_hand_built_claims(world):
    # the control for the hand-built malformed tokens below
    assert world.verifier.verify(signed_claims(world.issuer, good_claims(world.issuer)), NOW).kind is Kind.ACCEPTED


def test_rejects_trailing_bytes_after_the_cose_structure_as_malformed(world):
    signed = base45.b45decode(kp1.mint(world.issuer, NOW)[len(kp1.PREFIX):])
    assert world.verifier.verify(qr(signed + b"\x00"), NOW).reason is Reason.MALFORMED


def test_rejects_token_without_prefix_as_malformed(world):
    text = kp1.mint(world.issuer, NOW)
    assert world.verifier.verify(text[len(kp1.PREFIX):], NOW).reason is Reason.MALFORMED
    assert world.verifier.verify("HC1:" + text[4:], NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("junk", ["kp1:abc", "KP1:abc", "KP1:", "KP1:ÄÖÜ", "KP1:\x00\x01\x02", "KP1:::::"])
def test_rejects_non_base45_as_malformed(world, junk):
    verdict = world.verifier.verify(junk, NOW)
    assert verdict.kind is Kind.REJECTED and verdict.reason is Reason.MALFORMED


@pytest.mark.parametrize("cut", [1, 2, 3, 10, 40])
def test_rejects_truncated_token_as_malformed(world, cut):
    text = kp1.mint(world.issuer, NOW)
    assert world.verifier.verify(text[:-cut], NOW).reason is Reason.MALFORMED


def test_rejects_text_over_1024_chars_even_if_validly_signed(world):
    short = kp1.mint(world.issuer, NOW, att=["x" * 20] * 16)
    long = kp1.mint(world.issuer, NOW, att=["x" * 40] * 16)
    assert len(short) <= kp1.MAX_TEXT < len(long)
    assert world.verifier.verify(short, NOW).kind is Kind.ACCEPTED
    assert world.verifier.verify(long, NOW).reason is Reason.MALFORMED


def test_rejects_non_string_input_as_malformed(world):
    assert world.verifier.verify(kp1.mint(world.issuer, NOW).encode(), NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3, 4], cbor2.CBORTag(18, [b"", {}, b"", b""]), cbor2.CBORTag(98, [])])
def test_rejects_base45_of_non_cose_cbor_as_malformed(world, obj):
    assert world.verifier.verify(qr(cbor2.dumps(obj)), NOW).reason is Reason.MALFORMED


def test_rejects_alg_other_than_eddsa_as_malformed(world):
    payload = cbor2.dumps(good_claims(world.issuer))
    protected = cbor2.dumps({cose.HDR_ALG: -7, cose.HDR_KID: world.issuer.kid})  # ES256
    signature = world.issuer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    signed = cbor2.dumps(cbor2.CBORTag(cose.COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    assert world.verifier.verify(qr(signed), NOW).reason is Reason.MALFORMED


def test_rejects_alg_only_in_unprotected_header_as_malformed(world):
    payload = cbor2.dumps(good_claims(world.issuer))
    protected = cbor2.dumps({cose.HDR_KID: world.issuer.kid})
    signature = world.issuer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    body = [protected, {cose.HDR_ALG: cose.ALG_EDDSA}, payload, signature]
    signed = cbor2.dumps(cbor2.CBORTag(cose.COSE_SIGN1_TAG, body))
    assert world.verifier.verify(qr(signed), NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("cti", [b"", bytes(15), bytes(17), "0" * 16, 7])
def test_rejects_cti_that_is_not_16_bytes_as_malformed(world, cti):
    text = signed_claims(world.issuer, good_claims(world.issuer) | {kp1.CLAIM_CTI: cti})
    assert world.verifier.verify(text, NOW).reason is Reason.MALFORMED


def test_rejects_window_over_300_seconds_as_malformed(world):
    ok = signed_claims(world.issuer, good_claims(world.issuer) | {kp1.CLAIM_EXP: NOW + 300})
    too_long = signed_claims(world.issuer, good_claims(world.issuer) | {kp1.CLAIM_EXP: NOW + 301})
    assert world.verifier.verify(ok, NOW).kind is Kind.ACCEPTED
    assert world.verifier.verify(too_long, NOW).reason is Reason.MALFORMED


def test_rejects_exp_before_iat_as_malformed(world):
    text = signed_claims(world.issuer, good_claims(world.issuer) | {kp1.CLAIM_EXP: NOW - 1})
    assert world.verifier.verify(text, NOW).reason is Reason.MALFORMED


@pytest.mark.parametrize("claim,value", [(kp1.CLAIM_IAT, True), (kp1.CLAIM_IAT, "now"), (kp1.CLAIM_ISS, 5), (kp1.CLAIM_ATT, "vax")])
def test_rejects_claim_of_wrong_type_as_malformed(world, claim, value):
    text = signed_claims(world.issuer, good_claims(world.issuer) | {claim: value})
    assert world.verifier.verify(text, NOW).reason is Reason.MALFORMED


# --- issuer ------------------------------------------------------------------


def test_rejects_issuer_not_in_list(world):
    stranger = new_issuer("naver", world.tmp / "stranger")
    assert world.verifier.verify(kp1.mint(stranger, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


def test_rejects_every_token_when_there_is_no_trust_list(world):
    verifier = kp1.Verifier(trust=lambda: None)
    assert verifier.verify(kp1.mint(world.issuer, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


def test_rejects_token_whose_iss_differs_from_the_listed_issuer(world):
    impostor = Issuer("kakao", world.issuer.key)  # same key and kid, other name
    assert world.verifier.verify(kp1.mint(impostor, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


@pytest.mark.parametrize("not_before,not_after", [(NOW + 10, NOW + 86400), (NOW - 86400, NOW - 10)])
def test_rejects_issuer_key_outside_its_validity_period(world, not_before, not_after):
    entry = {
        "kid": world.issuer.kid, "iss": world.issuer.iss, "alg": "EdDSA",
        "key": raw_public(world.issuer.key.public_key()), "not_before": not_before, "not_after": not_after,
    }
    payload = {"seq": 1, "issued_at": NOW, "not_after": NOW + 86400, "issuers": [entry], "revoked": [], "dsc": []}
    signed = cose.sign1(cbor2.dumps(payload), world.root, kid_of(world.root.public_key()))
    tl = trustlist.parse(signed, world.root.public_key())
    verifier = kp1.Verifier(trust=lambda: tl)
    assert verifier.verify(kp1.mint(world.issuer, NOW), NOW).reason is Reason.UNKNOWN_ISSUER
    # the same key is fine once inside its period
    inside = (not_before + not_after) // 2
    assert verifier.verify(kp1.mint(world.issuer, inside), inside).kind is Kind.ACCEPTED


def test_rejects_revoked_issuer(world):
    raw = trustlist.build(world.root, [world.issuer], seq=2, issued_at=NOW, revoked=[world.issuer.kid])
    tl = trustlist.parse(raw, world.root.public_key())
    verifier = kp1.Verifier(trust=lambda: tl)
    assert verifier.verify(kp1.mint(world.issuer, NOW), NOW).reason is Reason.REVOKED_ISSUER


def test_rejects_forged_token_claiming_a_trusted_kid(world):
    forger = Issuer(world.issuer.iss, Ed25519PrivateKey.generate())
    text = kp1.mint(forger, NOW, kid=world.issuer.kid)
    verdict = world.verifier.verify(text, NOW)
    assert verdict.reason is Reason.BAD_SIGNATURE and not verdict.green


def test_rejects_token_with_a_flipped_signature_byte(world):
    signed = bytearray(base45.b45decode(kp1.mint(world.issuer, NOW)[4:]))
    signed[-1] ^= 0x01
    assert world.verifier.verify(qr(bytes(signed)), NOW).reason is Reason.BAD_SIGNATURE


# --- time --------------------------------------------------------------------


def test_expiry_edge_allows_skew(world):
    text = kp1.mint(world.issuer, NOW, ttl=15)
    exp = NOW + 15
    assert world.verifier.verify(text, exp + 5).kind is Kind.ACCEPTED
    verdict = world.verifier.verify(text, exp + 6)
    assert verdict.reason is Reason.EXPIRED and not verdict.green


def test_not_yet_valid_edge_allows_skew(world):
    text = kp1.mint(world.issuer, NOW)
    assert world.verifier.verify(text, NOW - 5).kind is Kind.ACCEPTED
    assert world.verifier.verify(text, NOW - 6).reason is Reason.NOT_YET_VALID


def test_skew_is_configurable(world):
    verifier = kp1.Verifier(trust=lambda: world.trust, skew=0)
    text = kp1.mint(world.issuer, NOW, ttl=15)
    assert verifier.verify(text, NOW + 15).kind is Kind.ACCEPTED
    assert verifier.verify(text, NOW + 16).reason is Reason.EXPIRED
    assert verifier.verify(text, NOW - 1).reason is Reason.NOT_YET_VALID


# --- policy and replay ---------------------------------------------------------


def test_rejects_token_missing_a_required_attribute(world):
    verifier = kp1.Verifier(trust=lambda: world.trust, require=("vax",))
    assert verifier.verify(kp1.mint(world.issuer, NOW, att=["age19"]), NOW).reason is Reason.MISSING_ATTRIBUTE
    assert verifier.verify(kp1.mint(world.issuer, NOW), NOW).reason is Reason.MISSING_ATTRIBUTE
    assert verifier.verify(kp1.mint(world.issuer, NOW, att=["age19", "vax"]), NOW).kind is Kind.ACCEPTED


def test_rejects_token_known_used_elsewhere(world):
    asked = []
    verifier = kp1.Verifier(trust=lambda: world.trust, used_elsewhere=lambda cti: asked.append(cti) or True)
    verdict = verifier.verify(kp1.mint(world.issuer, NOW, cti=CTI), NOW)
    assert verdict.reason is Reason.REPLAYED_ELSEWHERE and asked == [CTI]
    fresh = kp1.Verifier(trust=lambda: world.trust, used_elsewhere=lambda cti: False)
    assert fresh.verify(kp1.mint(world.issuer, NOW), NOW).kind is Kind.ACCEPTED
