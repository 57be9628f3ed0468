"""The door's DCC verdict (tokens.dcc_verifier): what a genuine DCC is recorded by, and what it is refused for.

test_dcc_policy.py covers the venue's rules end to end; this covers what the verifier itself promises the gate:
the claims a visit is recorded with (UVCI, signing country, CWT times), a genuine DCC with nothing to record it by
turned away as malformed, the venue's skew handed to the rules, and a bug answered as `malformed`, not raised.
"""

from __future__ import annotations

import logging
import zlib

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from firmware.config import DccConfig
from firmware.tokens import dcc, trustlist
from firmware.tokens.dcc_verifier import MAX_ISS, MAX_UVCI, DccVerifier
from firmware.tokens.verdict import Claims, Kind, Reason
from firmware import utc
from lab import dcc_issuer, signers

NOW = 1_750_000_000
DAY = 86400
RULES = DccConfig()
UVCI = "URN:UVCI:01:KR:QRGATE0VERIFIER0TEST"


@pytest.fixture(scope="module")
def signer():
    return dcc_issuer.make_signer("KR", not_before=NOW - 30 * DAY)


@pytest.fixture(scope="module")
def door(signer):
    root = Ed25519PrivateKey.generate()
    tl = trustlist.parse(signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[signer.der]), root.public_key())
    return lambda skew=5: DccVerifier(lambda: tl, RULES, skew)


def sign(signer, claims: dict) -> str:
    """An `HC1:` text over exactly these CWT claims, genuinely signed (dcc_issuer.mint fixes iss, iat and exp)."""
    protected, body = cbor2.dumps({1: dcc.ALG_ES256, 4: signer.kid}), cbor2.dumps(claims)
    r, s = decode_dss_signature(signer.key.sign(cbor2.dumps(["Signature1", protected, b"", body]),
                                                ec.ECDSA(hashes.SHA256())))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, body, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
    return dcc.PREFIX + base45.b45encode(zlib.compress(cose, 9)).decode("ascii")


def claims_of(kind="v", *, iss="KR", iat=NOW - 60, exp=NOW + 365 * DAY, uvci=UVCI, **fields) -> dict:
    """CWT claims around one entry; a claim given as None is left out."""
    hcert = {"ver": "1.3.0", "dob": "1998-02-26", "nam": {"fnt": "MUSTERFRAU", "gnt": "GABRIELE"},
             kind: [dcc_issuer.entry(kind, NOW, uvci, "KR", **fields)]}
    out = {1: iss, 6: iat, 4: exp, -260: {1: hcert}}
    return {k: v for k, v in out.items() if v is not None}


def test_a_visit_is_recorded_with_the_uvci_the_signing_country_and_the_cwt_times(signer, door):
    verdict = door().verify(sign(signer, claims_of(iat=NOW - 120, exp=NOW + 9 * DAY)), NOW)
    assert verdict.kind is Kind.ACCEPTED, verdict
    assert verdict.claims == Claims(iss="KR", iat=NOW - 120, exp=NOW + 9 * DAY, cti=UVCI, kind="DCC")


@pytest.mark.parametrize("uvci, recorded", [
    ("U", True), ("U" * MAX_UVCI, True),  # the UVCI specification allows up to 80 characters
    ("", False), ("U" * (MAX_UVCI + 1), False), (None, False), (1234, False),
])
def test_a_genuine_dcc_without_a_usable_uvci_is_malformed(signer, door, uvci, recorded):
    """The UVCI is what the visit is recorded and recognised by: without one there is nothing to record."""
    claims = claims_of()
    entry = claims[-260][1]["v"][0]
    if uvci is None:
        del entry["ci"]
    else:
        entry["ci"] = uvci
    text = sign(signer, claims)
    for verify in (door().verify, door().verify_raising):  # the fuzz harness's call too: a value, not a raise
        verdict = verify(text, NOW)
        if recorded:
            assert verdict.kind is Kind.ACCEPTED and verdict.claims.cti == uvci, verdict
        else:
            assert (verdict.kind, verdict.reason, verdict.claims) == (Kind.REJECTED, Reason.MALFORMED, None)


def test_a_genuine_dcc_without_an_issue_time_is_malformed(signer, door):
    """tokens.dcc lets a missing iat pass its expiry check; the door still needs both CWT times."""
    assert dcc.verify(sign(signer, claims_of(iat=None)), [signer.cert], NOW).ok
    verdict = door().verify(sign(signer, claims_of(iat=None)), NOW)
    assert (verdict.kind, verdict.reason) == (Kind.REJECTED, Reason.MALFORMED)


@pytest.mark.parametrize("iss, recorded", [
    ("KR", "KR"), ("K", "K"), ("I" * MAX_ISS, "I" * MAX_ISS),
    ("", "DCC"), ("I" * (MAX_ISS + 1), "DCC"), (None, "DCC"), (410, "DCC"),
])
def test_the_issuer_recorded_is_the_cwt_iss_else_dcc(signer, door, iss, recorded):
    """A missing, empty, oversized or non-text iss does not turn a genuine DCC away: the visit says "DCC"."""
    for verify in (door().verify, door().verify_raising):
        verdict = verify(sign(signer, claims_of(iss=iss)), NOW)
        assert verdict.kind is Kind.ACCEPTED and verdict.iss == recorded, verdict


def test_the_venues_skew_reaches_the_test_sample_time(signer, door):
    """policy.skew_s: a test sampled a little ahead of this door's clock counts when the venue allows that much."""
    ahead = sign(signer, claims_of("t", sc=utc.iso(NOW + 30)))
    assert door(skew=60).verify(ahead, NOW).kind is Kind.ACCEPTED
    assert door(skew=5).verify(ahead, NOW).reason is Reason.NOT_YET_VALID


def test_a_bug_is_malformed_and_logged_by_its_type_only(caplog):
    """A verifier bug must not stop the loop or open the door; the log names the exception, never its text."""

    def broken():
        raise LookupError("URN:UVCI:01:KR:SECRET")

    with caplog.at_level(logging.ERROR, logger="firmware.tokens.dcc_verifier"):
        verdict = DccVerifier(broken, RULES).verify("HC1:whatever", NOW)
    assert (verdict.kind, verdict.reason) == (Kind.REJECTED, Reason.MALFORMED)
    [record] = [r for r in caplog.records if r.name == "firmware.tokens.dcc_verifier"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "LookupError" in message and "SECRET" not in message
    with pytest.raises(LookupError):  # the fuzz harness's call lets it escape, to be found
        DccVerifier(broken, RULES).verify_raising("HC1:whatever", NOW)


class Revocations:
    """The Revocations seam: says revoked for the certificates it was told, and keeps what it was asked."""

    def __init__(self, *uvcis: str):
        self.uvcis, self.asked = set(uvcis), []

    def revoked(self, result: dcc.DccResult) -> bool:
        self.asked.append((result.uvci, result.kid, result.signature))
        return result.uvci in self.uvcis


def test_a_revoked_certificate_is_refused_before_the_venues_rules_with_its_claims(signer):
    root = Ed25519PrivateKey.generate()
    tl = trustlist.parse(signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[signer.der]), root.public_key())
    revocations = Revocations(UVCI)
    text = sign(signer, claims_of(dn=1, sd=2))  # a first dose: the venue's rules would refuse it too
    verdict = DccVerifier(lambda: tl, RULES, revocations=revocations).verify(text, NOW)
    assert (verdict.kind, verdict.reason, verdict.claims.cti) == (Kind.REJECTED, Reason.REVOKED, UVCI)
    [(uvci, kid, signature)] = revocations.asked
    assert kid == signer.kid and len(signature) == 64
    other = DccVerifier(lambda: tl, RULES, revocations=Revocations()).verify(text, NOW)
    assert other.reason is Reason.SERIES_INCOMPLETE


def test_a_forgery_is_never_looked_up(signer):
    """Only a verified certificate is looked up: the list's hashes are of genuine ones."""
    root = Ed25519PrivateKey.generate()
    tl = trustlist.parse(signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[signer.der]), root.public_key())
    revocations = Revocations(UVCI)
    forged = sign(dcc_issuer.make_signer("KR", not_before=NOW - DAY), claims_of())
    assert DccVerifier(lambda: tl, RULES, revocations=revocations).verify(forged, NOW).reason is Reason.UNKNOWN_ISSUER
    assert revocations.asked == []


def _with_rules(signer, *rules: str, valuesets=None):
    root = Ed25519PrivateKey.generate()
    return trustlist.parse(signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[signer.der],
                                                    dcc_rules=rules, valuesets=valuesets), root.public_key())


def test_the_countrys_business_rules_apply_after_the_venues_own(signer):
    from rules_kit import VACCINE_LISTED, VACCINES, rule

    tl = _with_rules(signer, rule("VR-DE-0001", VACCINE_LISTED), valuesets={VACCINES: ["EU/1/20/1528"]})
    in_germany = DccVerifier(lambda: tl, DccConfig(rules_country="DE"))
    verdict = in_germany.verify(sign(signer, claims_of(mp="EU/1/21/1618")), NOW)
    assert (verdict.kind, verdict.reason, verdict.rule, verdict.claims.cti) == (
        Kind.REJECTED, Reason.RULE_FAILED, "VR-DE-0001", UVCI)
    assert verdict.as_json() == {"verdict": "rejected", "reason": "rule_failed", "iss": "KR", "rule": "VR-DE-0001"}
    assert in_germany.verify(sign(signer, claims_of()), NOW).kind is Kind.ACCEPTED
    # The venue's own [dcc] refusal comes first, and a venue with no country runs no rule.
    assert in_germany.verify(sign(signer, claims_of(mp="X", dn=1, sd=2)), NOW).reason is Reason.SERIES_INCOMPLETE
    assert DccVerifier(lambda: tl, RULES).verify(sign(signer, claims_of(mp="X")), NOW).kind is Kind.ACCEPTED


def test_the_rules_see_the_signing_country_and_kid(signer):
    from rules_kit import rule

    import base64
    sees = {"and": [{"===": [{"var": "external.issuerCountryCode"}, "KR"]},
                    {"===": [{"var": "external.kid"}, base64.b64encode(signer.kid).decode()]}]}
    tl = _with_rules(signer, rule("GR-DE-0001", sees, certificate_type="General"),
                     rule("IR-KR-0001", {"!": [{"var": "payload.v.0.mp"}]}, type="Invalidation"))
    verdict = DccVerifier(lambda: tl, DccConfig(rules_country="DE")).verify(sign(signer, claims_of()), NOW)
    assert (verdict.reason, verdict.rule) == (Reason.RULE_FAILED, "IR-KR-0001")  # GR-DE-0001 passed before it
