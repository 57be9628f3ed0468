"""The door's DCC check: document signers from the trust list, the venue's [dcc] rules, and the kind dispatch."""

from __future__ import annotations

import dataclasses
import time

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config import DccConfig
from firmware.errors import TrustListError
from firmware.keys import kid_of
from lab.signers import Issuer
from lab import dcc_issuer
from firmware.tokens import cose, dcc_policy, kc1, kp1, trustlist
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.verdict import Kind, Reason
from firmware.tokens.verifier import TokenVerifier
from lab import signers

NOW = 1_750_000_000
DAY = 86400
RULES = DccConfig()


@pytest.fixture(scope="module")
def signer():
    return dcc_issuer.make_signer("KR", not_before=NOW - 30 * DAY)


@pytest.fixture(scope="module")
def root():
    return Ed25519PrivateKey.generate()


def trust_with(root, *dscs):
    return trustlist.parse(signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[s.der for s in dscs]),
                           root.public_key())


def verify(text, signers, rules=RULES, now=NOW, root_key=None):
    tl = trust_with(root_key or Ed25519PrivateKey.generate(), *signers)
    return DccVerifier(lambda: tl, rules).verify(text, now)


def mint(signer, kind="v", **fields):
    return dcc_issuer.mint(signer, NOW, kind=kind, **fields)


def day(offset: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(NOW + offset * DAY))


# --- the trust list's document signers -------------------------------------------------------------


def test_signers_come_from_the_trust_lists_dsc_field(root, signer):
    tl = trust_with(root, signer)
    assert tl.dsc == (signer.der,) and list(tl.dcc_signers) == [signer.kid]
    assert trust_with(root).dcc_signers == {}


def test_a_list_with_a_dsc_that_is_not_a_certificate_is_refused(root):
    payload = cose.strict_loads(cose.parse_sign1(signers.build_trust_list(root, [], seq=1, issued_at=NOW)).payload)
    payload["dsc"] = [b"\x30\x03junk"]
    forged = cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key()))
    with pytest.raises(TrustListError, match="not a DER X.509 certificate"):
        trustlist.parse(forged, root.public_key())
    with pytest.raises(TrustListError, match="not a DER X.509 certificate"):
        signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[b"not DER"])


# --- genuine, then enough for the venue ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["v", "t", "r"])
def test_each_type_is_accepted_with_its_uvci_in_place_of_a_token_id(signer, kind):
    uvci = dcc_issuer.new_uvci("KR")
    verdict = verify(mint(signer, kind, uvci=uvci), [signer])
    assert verdict.kind is Kind.ACCEPTED, verdict
    assert (verdict.claims.kind, verdict.claims.cti, verdict.claims.iss) == ("DCC", uvci, "KR")
    assert verdict.seen_until == NOW + RULES.recheck_s
    assert uvci not in repr(verdict) and "Gabriele" not in repr(verdict)


def test_the_same_uvci_never_collides_with_a_kp1_token_id(signer):
    claims = verify(mint(signer, uvci="URN:UVCI:01:KR:A"), [signer]).claims
    assert claims.seen_key == b"DCC\0URN:UVCI:01:KR:A"


@pytest.mark.parametrize("why, text_of, reason", [
    ("an unknown signer", lambda s, o: mint(o), Reason.UNKNOWN_ISSUER),
    ("a forgery under the trusted kid", lambda s, o: mint(dcc_issuer.Signer(o.key, s.cert)), Reason.BAD_SIGNATURE),
    ("a mangled text", lambda s, o: mint(s)[:-7], Reason.MALFORMED),
    ("a CWT past exp", lambda s, o: dcc_issuer.mint(s, NOW - 400 * DAY), Reason.EXPIRED),
    ("a signer only for tests, on a vaccination", lambda s, o: mint(o), Reason.KEY_USAGE),
])
def test_a_dcc_that_is_not_genuine_gets_its_reason(signer, why, text_of, reason):
    tests_only = dcc_issuer.make_signer("KR", types="t", not_before=NOW - DAY)
    other = tests_only if reason is Reason.KEY_USAGE else dcc_issuer.make_signer("KR", not_before=NOW - DAY)
    trusted = [signer, tests_only] if reason is Reason.KEY_USAGE else [signer]
    assert verify(text_of(signer, other), trusted).reason is reason, why


def test_a_signer_outside_its_validity_is_unknown(signer):
    late = dcc_issuer.make_signer("KR", not_before=NOW + DAY)
    assert verify(mint(late), [late]).reason is Reason.UNKNOWN_ISSUER


def test_no_trust_list_is_unknown_issuer(signer):
    assert DccVerifier(lambda: None, RULES).verify(mint(signer), NOW).reason is Reason.UNKNOWN_ISSUER


def rules(**kw) -> DccConfig:
    return dataclasses.replace(RULES, **kw)


@pytest.mark.parametrize("kind, fields, venue, reason", [
    ("v", {"mp": "Sputnik-V"}, {"vaccines": ["EU/1/20/1528", "EU/1/20/1507"]}, Reason.VACCINE_NOT_ACCEPTED),
    ("v", {"mp": "EU/1/20/1507"}, {"vaccines": ["EU/1/20/1528", "EU/1/20/1507"]}, None),
    ("v", {"mp": 1528}, {"vaccines": ["EU/1/20/1528"]}, Reason.MALFORMED),
    ("v", {"mp": 1528}, {}, None),  # the product is read only where the venue names products
    ("v", {"dn": 1, "sd": 2}, {}, Reason.SERIES_INCOMPLETE),
    ("v", {"dn": 1, "sd": 2}, {"vaccination_complete": False}, None),
    ("v", {"dn": 3, "sd": 2}, {}, None),  # a booster
    ("v", {"dt": day(-13)}, {}, Reason.VACCINATION_TOO_RECENT),
    ("v", {"dt": day(-14)}, {}, None),
    ("v", {"dt": day(-271)}, {"vaccination_max_days": 270}, Reason.VACCINATION_TOO_OLD),
    ("v", {"dt": day(-270)}, {"vaccination_max_days": 270}, None),
    ("v", {"dt": day(-30) + "T08:00:00Z"}, {}, None),  # a time where the schema says a date
    ("v", {}, {"types": ["t"]}, Reason.TYPE_NOT_ACCEPTED),
    ("v", {"tg": "0000"}, {}, Reason.TYPE_NOT_ACCEPTED),
    ("t", {"tr": dcc_issuer.POSITIVE}, {}, Reason.TEST_POSITIVE),
    ("t", {"tt": dcc_issuer.TEST_RAT}, {"test_types": ["LP6464-4"]}, Reason.TEST_TYPE_NOT_ACCEPTED),
    ("t", {"sc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 49 * 3600))}, {}, Reason.TEST_TOO_OLD),
    ("t", {"sc": time.strftime("%Y-%m-%dT%H:%M:%S+09:00", time.gmtime(NOW - 47 * 3600 + 9 * 3600))}, {}, None),
    ("t", {"sc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 3600))}, {}, Reason.NOT_YET_VALID),
    ("r", {"du": day(-1)}, {}, Reason.RECOVERY_NOT_VALID),
    ("r", {"df": day(1)}, {}, Reason.RECOVERY_NOT_VALID),
    ("r", {"fr": day(-181)}, {}, Reason.RECOVERY_NOT_VALID),
    ("r", {"fr": day(-181)}, {"recovery_max_days": 0}, None),
    # A field of the wrong type or shape: malformed, whichever rule reads it.
    ("v", {"dn": "2"}, {}, Reason.MALFORMED),
    ("v", {"dt": "last spring"}, {}, Reason.MALFORMED),
    ("t", {"sc": 1_700_000_000}, {}, Reason.MALFORMED),
    ("r", {"du": None}, {}, Reason.MALFORMED),
])
def test_the_venue_policy(signer, kind, fields, venue, reason):
    verdict = verify(mint(signer, kind, **fields), [signer], rules(**venue))
    assert verdict.reason is reason, verdict
    if reason is not None:
        assert verdict.claims is not None and verdict.claims.kind == "DCC"  # known, so the log can say which


def test_policy_reads_one_entry_only():
    payload = {"v": [dcc_issuer.entry("v", NOW, "U", "KR")] * 2}
    assert dcc_policy.check("v", payload, RULES, NOW) is Reason.MALFORMED
    assert dcc_policy.check(None, {}, RULES, NOW) is Reason.TYPE_NOT_ACCEPTED


# --- which verifier, by prefix and the venue's policy.accept ---------------------------------------


def test_the_dispatch_follows_policy_accept(signer):
    issuer = Issuer("naver", Ed25519PrivateKey.generate())
    root = Ed25519PrivateKey.generate()
    tl = trustlist.parse(signers.build_trust_list(root, [issuer], seq=1, issued_at=NOW, dsc=[signer.der]), root.public_key())
    both = TokenVerifier(kp1.Kp1Verifier(lambda: tl), DccVerifier(lambda: tl, RULES), kc1.Kc1Verifier(lambda: tl),
                         ("KP1", "DCC"))
    token, pass_ = signers.mint(issuer, NOW), mint(signer)
    assert [both.verify(t, NOW).kind for t in (token, pass_)] == [Kind.ACCEPTED, Kind.ACCEPTED]
    only_dcc = dataclasses.replace(both, accept=("DCC",))
    only_kp1 = dataclasses.replace(both, accept=("KP1",))
    assert only_dcc.verify(token, NOW).reason is Reason.KIND_NOT_ACCEPTED
    assert only_kp1.verify(pass_, NOW).reason is Reason.KIND_NOT_ACCEPTED
    for v in (both, only_dcc, only_kp1):
        assert v.verify("https://example.com/menu", NOW).reason is Reason.MALFORMED
        assert v.verify(None, NOW).reason is Reason.MALFORMED


# --- the rules' edges, straight on check(): no signature needed to say what a venue admits ----------


def at(offset_s: int, zone: str = "Z") -> str:
    """A test's sample time `offset_s` from NOW, written in UTC ("Z"), unzoned ("") or at +09:00."""
    shift = 9 * 3600 if zone == "+09:00" else 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW + offset_s + shift)) + zone


@pytest.fixture(params=["UTC0", "KST-9"])
def local_zone(request, monkeypatch):
    """The device's own time zone, which must change nothing: at NOW it is already the next day in KST."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("kind, fields, venue, reason", [
    # Dose counts: zero doses is an incomplete series, a count past any series is malformed.
    ("v", {"dn": 0, "sd": 1}, {}, Reason.SERIES_INCOMPLETE),
    ("v", {"dn": 99, "sd": 2}, {}, None),
    ("v", {"dn": 100, "sd": 2}, {}, Reason.MALFORMED),
    ("v", {"dn": 2, "sd": 100}, {}, Reason.MALFORMED),
    ("v", {"dn": -1, "sd": 2}, {}, Reason.MALFORMED),
    # The vaccination's age counts in UTC days, whatever the device's zone (KST is a day ahead at NOW).
    ("v", {"dt": day(-13)}, {}, Reason.VACCINATION_TOO_RECENT),
    # A test's sample time: up to skew seconds ahead of the door's clock, up to test_max_hours old.
    ("t", {"sc": at(0)}, {}, None),
    ("t", {"sc": at(5)}, {}, None),
    ("t", {"sc": at(6)}, {}, Reason.NOT_YET_VALID),
    ("t", {"sc": at(-48 * 3600)}, {}, None),
    ("t", {"sc": at(-48 * 3600 - 1)}, {}, Reason.TEST_TOO_OLD),
    ("t", {"sc": at(-3600, "+09:00")}, {}, None),  # an hour ago in Seoul, written in Seoul's time
    ("t", {"sc": at(-47 * 3600, "")}, {}, None),  # unzoned is UTC, not the device's zone
    ("t", {"sc": at(-49 * 3600, "")}, {}, Reason.TEST_TOO_OLD),
    ("t", {"sc": "yesterday at noon"}, {}, Reason.MALFORMED),
    # A recovery is valid from df to du, both days included; the positive test up to recovery_max_days ago.
    ("r", {"df": day(0)}, {}, None),
    ("r", {"du": day(0)}, {}, None),
    ("r", {"fr": day(-180)}, {}, None),
    ("r", {"fr": day(-181)}, {}, Reason.RECOVERY_NOT_VALID),
])
def test_what_the_venue_admits_at_the_edges_of_its_rules(local_zone, kind, fields, venue, reason):
    payload = {kind: [dcc_issuer.entry(kind, NOW, "URN:UVCI:01:KR:EDGE", "KR", **fields)]}
    assert dcc_policy.check(kind, payload, rules(**venue), NOW, skew=5) is reason
