"""KC1 printed entry cards: mint -> verify, every rejection reason at its edge, and the rule of one key, one role.

The phone tokens' kit (tests/tokens/test_kp1.py: its fixture, its hand-signed claims) and the strict
parser's CBOR builders (test_strict.py) serve the cards too: a card is KP1's claims under `KC1:` with a
card's life, signed by a key the trust list marks as a card issuer's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from types import SimpleNamespace

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config import DccConfig
from firmware.keys import kid_of, raw_public
from firmware.tokens import cose, kc1, kp1, trustlist
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.verdict import Claims, Kind, Reason
from firmware.tokens.verifier import TokenVerifier
from lab import signers
from lab.signers import Issuer, new_issuer
from test_kp1 import CTI, NOW, good_claims, kp1_setup, qr, signed_claims  # noqa: F401 (kp1_setup: a fixture)
from test_strict import Raw, bstr_long, raw_map

DAY = 86400
CARD_DAYS = 365
LIFE = CARD_DAYS * DAY  # the card issuer's longest card, in seconds
SKEW = 5  # Kc1Verifier's default, written out
RECHECK_S = 3600  # Kc1Verifier's default window of "already checked in", written out
HARD_CAP = 1830 * DAY  # no card lives longer, whatever its issuer's entry says


@pytest.fixture
def kc1_setup(kp1_setup):
    """kp1_setup's phone issuer (naver) and a card issuer (centre, cards of up to 365 days) in one list,
    both keys valid from a day before NOW for three years (so a card's whole life is inside)."""
    centre = new_issuer("centre", kp1_setup.tmp / "centre", card_days=CARD_DAYS)
    tl = listed(kp1_setup.root, [kp1_setup.issuer, centre])
    return SimpleNamespace(naver=kp1_setup.issuer, centre=centre, root=kp1_setup.root, tmp=kp1_setup.tmp,
                           trust=tl, verifier=kc1.Kc1Verifier(trust=lambda: tl), kp1=kp1.Kp1Verifier(trust=lambda: tl))


def listed(root, issuers, **kw) -> trustlist.TrustList:
    raw = signers.build_trust_list(root, issuers, seq=1, issued_at=NOW, issuer_valid_days=3 * 365, **kw)
    return trustlist.parse(raw, root.public_key())


def signed_list(root, payload: dict) -> trustlist.TrustList:
    """A payload of the test's own making, signed by the root as the root signs lists."""
    return trustlist.parse(cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key())), root.public_key())


def card_claims(issuer: Issuer, life: int = LIFE, **over) -> dict:
    """A card's claims: issued at NOW, living `life` seconds; `over` by label."""
    return good_claims(issuer) | {kp1.CLAIM_EXP: NOW + life} | over


def card(issuer: Issuer, claims: dict | None = None, kid: bytes | None = None) -> str:
    """Claims as they are (any life, any types), signed by `issuer` under its kid or `kid`, as a card's text."""
    return signed_claims(issuer, card_claims(issuer) if claims is None else claims, kc1.PREFIX, kid)


def verdict(s, text: object, now: float = NOW, **kw):
    verifier = dataclasses.replace(s.verifier, **kw) if kw else s.verifier
    return verifier.verify_raising(text, now)


def reason(s, text: object, now: float = NOW, **kw) -> Reason | None:
    result = verdict(s, text, now, **kw)
    assert (result.kind is Kind.ACCEPTED) is (result.reason is None), result
    return result.reason


# --- accepted ----------------------------------------------------------------------------------------


def test_accepts_a_minted_card_with_its_claims_as_a_card(kc1_setup):
    s = kc1_setup
    result = verdict(s, signers.mint_card(s.centre, NOW, att=["age19", "vax"], cti=CTI))
    assert result.kind is Kind.ACCEPTED and result.reason is None and result.green
    assert result.claims == Claims(iss="centre", iat=NOW, exp=NOW + LIFE, cti=CTI, att=("age19", "vax"), kind="KC1")
    assert result.iss == "centre"


def test_accepts_a_hand_signed_card(kc1_setup):
    # the control for the hand-signed cards below
    assert reason(kc1_setup, card(kc1_setup.centre)) is None


def test_a_card_is_already_checked_in_for_recheck_s_from_when_it_was_shown(kc1_setup):
    s = kc1_setup
    text = signers.mint_card(s.centre, NOW, days=30)
    assert verdict(s, text, NOW + 100.9).seen_until == NOW + 100 + RECHECK_S  # whole seconds, not its expiry
    assert verdict(s, text, NOW + 100.9, recheck_s=60).seen_until == NOW + 100 + 60
    assert verdict(s, text, NOW + 30 * DAY).seen_until == NOW + 30 * DAY + RECHECK_S  # past exp: the window still


def test_a_cards_seen_key_never_meets_a_phone_tokens_of_the_same_id(kc1_setup):
    s = kc1_setup
    a_card = verdict(s, signers.mint_card(s.centre, NOW, cti=CTI)).claims
    a_token = s.kp1.verify_raising(signers.mint(s.naver, NOW, cti=CTI), NOW).claims
    assert a_card.cti == a_token.cti == CTI and (a_card.kind, a_token.kind) == ("KC1", "KP1")
    assert a_token.seen_key == CTI and a_card.seen_key == b"KC1\x00" + CTI
    assert a_card.seen_key != a_token.seen_key


def test_a_verdict_never_shows_the_card_id(kc1_setup):
    result = verdict(kc1_setup, signers.mint_card(kc1_setup.centre, NOW, cti=CTI))
    for shown in (repr(result), str(result.as_json()), repr(result.claims)):
        assert CTI.hex() not in shown and repr(CTI) not in shown
    assert result.as_json() == {"verdict": "accepted", "reason": None, "iss": "centre"}


def test_the_lab_mints_a_card_only_with_a_card_issuers_key_and_within_its_days(kc1_setup):
    s = kc1_setup
    assert reason(s, signers.mint_card(s.centre, NOW, days=1)) is None
    for days in (0, CARD_DAYS + 1):
        with pytest.raises(ValueError, match="lives 1..365 days"):
            signers.mint_card(s.centre, NOW, days=days)
    with pytest.raises(ValueError, match="signs no printed card"):
        signers.mint_card(s.naver, NOW)
    with pytest.raises(ValueError, match="signs printed cards, not phone tokens"):
        signers.mint(s.centre, NOW)


def test_revocation_hash_is_the_documented_keyed_hash():
    key, kid = bytes(range(16)), bytes(range(100, 108))
    expected = hmac.new(key, kid + CTI, hashlib.sha256).digest()[:16]
    assert kc1.revocation_hash(key, kid, CTI) == expected and len(expected) == 16
    assert kc1.revocation_hash(key, kid, CTI) != kc1.revocation_hash(bytes(16), kid, CTI)


# --- the life of a card, to the second -----------------------------------------------------------------


def test_a_card_living_exactly_its_issuers_card_days_is_accepted_and_a_second_more_is_unknown_issuer(kc1_setup):
    s = kc1_setup
    assert reason(s, card(s.centre, card_claims(s.centre, LIFE))) is None
    result = verdict(s, card(s.centre, card_claims(s.centre, LIFE + 1)))
    assert result.reason is Reason.UNKNOWN_ISSUER and not result.green
    assert result.claims is None  # the issuer is not trusted for it: no claims are vouched for


def test_a_card_over_the_hard_cap_is_malformed_even_from_an_issuer_of_the_longest_cards(kc1_setup):
    s = kc1_setup
    longest = Issuer("library", Ed25519PrivateKey.generate(), card_days=1830)
    tl = listed(s.root, [longest])
    verifier = kc1.Kc1Verifier(trust=lambda: tl)
    assert kc1.MAX_LIFETIME_S == HARD_CAP
    assert verifier.verify_raising(card(longest, card_claims(longest, HARD_CAP)), NOW).kind is Kind.ACCEPTED
    assert verifier.verify_raising(card(longest, card_claims(longest, HARD_CAP + 1)), NOW).reason is Reason.MALFORMED


def test_a_card_of_no_life_is_accepted_and_one_ending_before_it_begins_is_malformed(kc1_setup):
    s = kc1_setup
    assert reason(s, card(s.centre, card_claims(s.centre, 0))) is None
    assert reason(s, card(s.centre, card_claims(s.centre, -1))) is Reason.MALFORMED


def test_expiry_edge_allows_skew(kc1_setup):
    s = kc1_setup
    text = signers.mint_card(s.centre, NOW, days=30)
    exp = NOW + 30 * DAY
    assert reason(s, text, exp + SKEW) is None
    result = verdict(s, text, exp + SKEW + 1)
    assert result.reason is Reason.EXPIRED and not result.green and result.claims.exp == exp
    assert reason(s, text, exp + SKEW + 0.001) is Reason.EXPIRED


def test_not_yet_valid_edge_allows_skew(kc1_setup):
    s = kc1_setup
    text = signers.mint_card(s.centre, NOW, days=30)
    assert reason(s, text, NOW - SKEW) is None
    result = verdict(s, text, NOW - SKEW - 1)
    assert result.reason is Reason.NOT_YET_VALID and result.claims.iat == NOW
    assert reason(s, text, NOW - SKEW - 0.001) is Reason.NOT_YET_VALID


def test_skew_is_configurable(kc1_setup):
    s = kc1_setup
    text = signers.mint_card(s.centre, NOW, days=1)
    assert reason(s, text, NOW + DAY, skew=0) is None and reason(s, text, NOW, skew=0) is None
    assert reason(s, text, NOW + DAY + 1, skew=0) is Reason.EXPIRED
    assert reason(s, text, NOW - 1, skew=0) is Reason.NOT_YET_VALID
    assert reason(s, text, NOW + DAY + 60, skew=60) is None and reason(s, text, NOW - 60, skew=60) is None


# --- the issuer ----------------------------------------------------------------------------------------


def test_the_issuers_key_is_trusted_from_its_not_before_to_its_not_after_inclusive(kc1_setup):
    s = kc1_setup
    entry = {"kid": s.centre.kid, "iss": "centre", "alg": "EdDSA", "key": raw_public(s.centre.key.public_key()),
             "not_before": NOW - DAY, "not_after": NOW + DAY, "card_days": CARD_DAYS}
    tl = signed_list(s.root, {"seq": 1, "issued_at": NOW, "not_after": NOW + DAY, "issuers": [entry]})
    text = card(s.centre, card_claims(s.centre, LIFE) | {kp1.CLAIM_IAT: NOW - 100 * DAY,
                                                          kp1.CLAIM_EXP: NOW - 100 * DAY + LIFE})
    verifier = kc1.Kc1Verifier(trust=lambda: tl)
    assert [verifier.verify_raising(text, t).reason for t in (NOW - DAY, NOW, NOW + DAY)] == [None] * 3
    assert verifier.verify_raising(text, NOW - DAY - 1).reason is Reason.UNKNOWN_ISSUER
    assert verifier.verify_raising(text, NOW + DAY + 1).reason is Reason.UNKNOWN_ISSUER


def test_rejects_a_card_issuer_not_in_the_list(kc1_setup):
    stranger = Issuer("centre", Ed25519PrivateKey.generate(), card_days=CARD_DAYS)
    assert reason(kc1_setup, signers.mint_card(stranger, NOW)) is Reason.UNKNOWN_ISSUER


def test_rejects_every_card_when_there_is_no_trust_list(kc1_setup):
    verifier = kc1.Kc1Verifier(trust=lambda: None)
    assert verifier.verify_raising(signers.mint_card(kc1_setup.centre, NOW), NOW).reason is Reason.UNKNOWN_ISSUER


def test_rejects_a_card_whose_iss_differs_from_the_listed_issuer(kc1_setup):
    impostor = Issuer("naver", kc1_setup.centre.key, card_days=CARD_DAYS)  # the card issuer's key, another name
    assert reason(kc1_setup, signers.mint_card(impostor, NOW)) is Reason.UNKNOWN_ISSUER


def test_rejects_a_card_of_a_revoked_issuer(kc1_setup):
    s = kc1_setup
    tl = listed(s.root, [s.naver, s.centre], revoked=[s.centre.kid])  # listed, and revoked: revocation wins
    verifier = kc1.Kc1Verifier(trust=lambda: tl)
    assert verifier.verify_raising(signers.mint_card(s.centre, NOW), NOW).reason is Reason.REVOKED_ISSUER
    # the revocation of another kid changes nothing for this one
    other = listed(s.root, [s.naver, s.centre], revoked=[s.naver.kid])
    assert kc1.Kc1Verifier(trust=lambda: other).verify_raising(signers.mint_card(s.centre, NOW), NOW).green


def test_rejects_a_forged_card_claiming_the_card_issuers_kid(kc1_setup):
    s = kc1_setup
    forger = Issuer("centre", Ed25519PrivateKey.generate(), card_days=CARD_DAYS)
    result = verdict(s, signers.mint_card(forger, NOW, kid=s.centre.kid))
    assert result.reason is Reason.BAD_SIGNATURE and not result.green


def test_rejects_a_card_with_a_flipped_signature_byte(kc1_setup):
    signed = bytearray(base45.b45decode(signers.mint_card(kc1_setup.centre, NOW)[len(kc1.PREFIX):]))
    signed[-1] ^= 0x01
    assert reason(kc1_setup, qr(bytes(signed), kc1.PREFIX)) is Reason.BAD_SIGNATURE


# --- one key, one role ---------------------------------------------------------------------------------


def test_a_phone_token_shown_as_a_card_is_unknown_issuer(kc1_setup):
    s = kc1_setup
    token = signers.mint(s.naver, NOW)
    assert s.kp1.verify_raising(token, NOW).green  # the control: a good phone token
    assert reason(s, kc1.PREFIX + token[len(kp1.PREFIX):]) is Reason.UNKNOWN_ISSUER
    # a card's life signed by the phone issuer's key changes nothing: the key signs no card
    assert reason(s, card(s.naver, card_claims(s.naver, DAY))) is Reason.UNKNOWN_ISSUER


def test_a_card_shown_as_a_phone_token_is_unknown_issuer(kc1_setup):
    s = kc1_setup
    a_card = signers.mint_card(s.centre, NOW)
    assert s.kp1.verify_raising(kp1.PREFIX + a_card[len(kc1.PREFIX):], NOW).reason is Reason.UNKNOWN_ISSUER
    # a phone token's 15 s signed by the card issuer's key changes nothing: the key signs no phone token
    short = signed_claims(s.centre, good_claims(s.centre))
    assert s.kp1.verify_raising(short, NOW).reason is Reason.UNKNOWN_ISSUER


def test_a_signature_under_the_other_roles_kid_is_a_bad_signature(kc1_setup):
    s = kc1_setup
    # the card issuer's signature on a phone token, claimed under the phone issuer's kid
    short = signed_claims(s.centre, good_claims(s.naver), kid=s.naver.kid)
    assert s.kp1.verify_raising(short, NOW).reason is Reason.BAD_SIGNATURE
    # the phone issuer's signature on a card, claimed under the card issuer's kid
    assert reason(s, card(s.naver, card_claims(s.centre), kid=s.centre.kid)) is Reason.BAD_SIGNATURE
    # and a card under the phone issuer's kid is refused for the kid's role before any signature is checked
    assert reason(s, card(s.centre, kid=s.naver.kid)) is Reason.UNKNOWN_ISSUER


def test_the_door_sends_each_prefix_to_its_own_verifier(kc1_setup):
    s = kc1_setup
    door = TokenVerifier(s.kp1, DccVerifier(lambda: s.trust, DccConfig()), s.verifier, ("KP1", "KC1"))
    a_card, token = signers.mint_card(s.centre, NOW), signers.mint(s.naver, NOW)
    assert door.verify(a_card, NOW).claims.kind == "KC1" and door.verify(token, NOW).claims.kind == "KP1"
    assert door.verify(kc1.PREFIX + token[len(kp1.PREFIX):], NOW).reason is Reason.UNKNOWN_ISSUER
    assert door.verify(kp1.PREFIX + a_card[len(kc1.PREFIX):], NOW).reason is Reason.UNKNOWN_ISSUER
    phones_only = dataclasses.replace(door, accept=("KP1",))
    assert phones_only.verify(a_card, NOW).reason is Reason.KIND_NOT_ACCEPTED
    assert phones_only.verify(token, NOW).green


# --- revoked cards ---------------------------------------------------------------------------------------


def test_a_revoked_card_is_revoked_and_its_issuers_other_cards_are_not(kc1_setup):
    s = kc1_setup
    tl = listed(s.root, [s.naver, s.centre], card_revoked=[(s.centre.kid, CTI)])
    verifier = kc1.Kc1Verifier(trust=lambda: tl)
    result = verifier.verify_raising(signers.mint_card(s.centre, NOW, cti=CTI), NOW)
    assert result.reason is Reason.REVOKED and not result.green and result.claims.cti == CTI
    assert verifier.verify_raising(signers.mint_card(s.centre, NOW, cti=bytes(16)), NOW).green


def _with_revoked(s, card_key: bytes, hashes: list[bytes]) -> kc1.Kc1Verifier:
    """A list naming naver and centre, whose card_revoked the test writes itself."""
    def entry(i: Issuer) -> dict:
        return {"kid": i.kid, "iss": i.iss, "alg": "EdDSA", "key": raw_public(i.key.public_key()),
                "not_before": NOW - DAY, "not_after": NOW + 3 * 365 * DAY,
                **({"card_days": i.card_days} if i.card_days else {})}
    tl = signed_list(s.root, {"seq": 1, "issued_at": NOW, "not_after": NOW + DAY, "issuers": [entry(s.naver),
                                                                                              entry(s.centre)],
                              "card_key": card_key, "card_revoked": hashes})
    return kc1.Kc1Verifier(trust=lambda: tl)


def _hash(key: bytes, kid: bytes, cti: bytes) -> bytes:
    """The revocation hash as the format fixes it, computed here rather than by the code under test."""
    return hmac.new(key, kid + cti, hashlib.sha256).digest()[:16]


def test_a_card_is_revoked_by_its_hash_under_the_lists_key_only(kc1_setup):
    s = kc1_setup
    key, other = b"\x01" * 16, b"\x02" * 16
    text = signers.mint_card(s.centre, NOW, cti=CTI)
    assert _with_revoked(s, key, [_hash(key, s.centre.kid, CTI)]).verify_raising(text, NOW).reason is Reason.REVOKED
    assert _with_revoked(s, key, [bytes(16), _hash(key, s.centre.kid, CTI)]).verify_raising(text, NOW).reason \
        is Reason.REVOKED  # wherever it stands in the list
    # the same card's hash under another key, the hash of another kid or of another id: not this card
    for hashes in ([_hash(other, s.centre.kid, CTI)], [_hash(key, s.naver.kid, CTI)],
                   [_hash(key, s.centre.kid, bytes(16))], [hashlib.sha256(s.centre.kid + CTI).digest()[:16]]):
        assert _with_revoked(s, key, hashes).verify_raising(text, NOW).green, hashes


def test_revocation_is_judged_after_the_cards_life_and_before_the_venues_policy(kc1_setup):
    s = kc1_setup
    tl = listed(s.root, [s.centre], card_revoked=[(s.centre.kid, CTI)])
    verifier = kc1.Kc1Verifier(trust=lambda: tl, require=("vax",))
    text = signers.mint_card(s.centre, NOW, days=1, cti=CTI)
    assert verifier.verify_raising(text, NOW).reason is Reason.REVOKED  # though it lacks vax
    assert verifier.verify_raising(text, NOW + 2 * DAY).reason is Reason.EXPIRED


# --- policy and replay ---------------------------------------------------------------------------------


def test_a_refusal_after_the_signature_names_the_cards_issuer_and_before_it_nobody(kc1_setup):
    # An event names the issuer of a card refused for its own claims (firmware/events.py, the demo's console),
    # never one whose signature was not checked or whose issuer is not trusted for it.
    s = kc1_setup
    text = signers.mint_card(s.centre, NOW, days=1, att=["age19"], cti=CTI)
    revoked = kc1.Kc1Verifier(trust=lambda: listed(s.root, [s.centre], card_revoked=[(s.centre.kid, CTI)]))
    for result in (verdict(s, text, NOW + 2 * DAY), verdict(s, text, NOW - DAY), revoked.verify_raising(text, NOW),
                   verdict(s, text, require=("vax",)), verdict(s, text, used_elsewhere=lambda cti: True)):
        assert result.kind is Kind.REJECTED and result.iss == "centre" and result.claims.cti == CTI, result
    forged = signers.mint_card(Issuer("centre", Ed25519PrivateKey.generate(), CARD_DAYS), NOW, kid=s.centre.kid)
    for result in (verdict(s, forged), verdict(s, card(s.centre, card_claims(s.centre, LIFE + 1))),
                   verdict(s, card(s.naver, card_claims(s.naver, DAY)))):
        assert result.kind is Kind.REJECTED and result.iss is None and result.claims is None, result


def test_rejects_a_card_missing_a_required_attribute(kc1_setup):
    s = kc1_setup
    assert reason(s, signers.mint_card(s.centre, NOW, att=["age19"]), require=("vax",)) is Reason.MISSING_ATTRIBUTE
    assert reason(s, signers.mint_card(s.centre, NOW), require=("vax",)) is Reason.MISSING_ATTRIBUTE
    assert reason(s, signers.mint_card(s.centre, NOW, att=["vax"]), require=("age19", "vax")) \
        is Reason.MISSING_ATTRIBUTE
    assert reason(s, signers.mint_card(s.centre, NOW, att=["age19", "vax"]), require=("vax", "age19")) is None
    assert reason(s, signers.mint_card(s.centre, NOW, att=["vax"])) is None  # nothing required


def test_rejects_a_card_known_used_elsewhere(kc1_setup):
    s = kc1_setup
    asked: list = []
    text = signers.mint_card(s.centre, NOW, cti=CTI)
    result = verdict(s, text, used_elsewhere=lambda cti: asked.append(cti) or True)
    assert result.reason is Reason.REPLAYED_ELSEWHERE and asked == [CTI]
    assert reason(s, text, used_elsewhere=lambda cti: False) is None


# --- strictness: one card, one text --------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    pytest.param(lambda t: "kc1:" + t[4:], id="lower-case-prefix"),
    pytest.param(lambda t: "Kc1:" + t[4:], id="mixed-case-prefix"),
    pytest.param(lambda t: "KC1" + t[4:], id="no-colon"),
    pytest.param(lambda t: "KC2:" + t[4:], id="another-version"),
    pytest.param(lambda t: t[4:], id="no-prefix"),
    pytest.param(lambda t: " " + t, id="space-before"),
    pytest.param(lambda t: "KC1:" + t, id="prefix-twice"),
    pytest.param(lambda t: "HC1:" + t[4:], id="dcc-prefix"),
    pytest.param(lambda t: t + "\n", id="newline-after"),
    pytest.param(lambda t: t + " ", id="space-after"),
    pytest.param(lambda t: t + "00", id="base45-after"),
    pytest.param(lambda t: t[:-1], id="one-character-short"),
    pytest.param(lambda t: t[:4] + t[4:].lower(), id="lower-case-base45"),
])
def test_any_other_text_of_a_good_card_is_malformed(kc1_setup, change):
    text = signers.mint_card(kc1_setup.centre, NOW)
    assert reason(kc1_setup, text) is None
    assert reason(kc1_setup, change(text)) is Reason.MALFORMED


def test_nothing_may_follow_the_cose_structure(kc1_setup):
    signed = base45.b45decode(signers.mint_card(kc1_setup.centre, NOW)[len(kc1.PREFIX):])
    for tail in (b"\x00", b"\xa0", signed):
        assert reason(kc1_setup, qr(signed + tail, kc1.PREFIX)) is Reason.MALFORMED


def _signed_raw(issuer: Issuer, payload: bytes, wide_payload: bool = False) -> bytes:
    """A COSE_Sign1 of `payload` bytes as they are; `wide_payload` writes the payload's length a byte wider."""
    protected = cbor2.dumps({cose.HDR_ALG: cose.ALG_EDDSA, cose.HDR_KID: issuer.kid})
    signature = issuer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    encode = bstr_long if wide_payload else cbor2.dumps
    return b"\xd2\x84" + cbor2.dumps(protected) + b"\xa0" + encode(payload) + cbor2.dumps(signature)


def test_claims_not_in_preferred_serialization_are_malformed_though_signed(kc1_setup):
    s = kc1_setup
    pairs = list(card_claims(s.centre).items())
    assert reason(s, qr(_signed_raw(s.centre, raw_map(*pairs)), kc1.PREFIX)) is None  # the control
    wide_exp = [(k, Raw(b"\x1b" + v.to_bytes(8, "big")) if k == kp1.CLAIM_EXP else v) for k, v in pairs]
    for payload in (raw_map(*wide_exp), raw_map(*pairs, indefinite=True),
                    raw_map(*pairs, pairs[0], head=bytes((0xA0 + len(pairs) + 1,)))):
        assert reason(s, qr(_signed_raw(s.centre, payload), kc1.PREFIX)) is Reason.MALFORMED
    # nor the envelope around good claims
    assert reason(s, qr(_signed_raw(s.centre, raw_map(*pairs), wide_payload=True), kc1.PREFIX)) is Reason.MALFORMED


@pytest.mark.parametrize("label,value", [
    pytest.param(kp1.CLAIM_CTI, bytes(15), id="cti-15-bytes"),
    pytest.param(kp1.CLAIM_CTI, "0" * 16, id="cti-text"),
    pytest.param(kp1.CLAIM_IAT, True, id="iat-bool"),
    pytest.param(kp1.CLAIM_EXP, float(NOW + LIFE), id="exp-float"),
    pytest.param(kp1.CLAIM_EXP, 4_102_444_800, id="exp-2100"),
    pytest.param(kp1.CLAIM_ISS, b"centre", id="iss-bytes"),
    pytest.param(kp1.CLAIM_ATT, "vax", id="att-text"),
])
def test_a_claim_of_the_wrong_type_or_range_is_malformed_though_signed(kc1_setup, label, value):
    s = kc1_setup
    assert reason(s, card(s.centre, card_claims(s.centre) | {label: value})) is Reason.MALFORMED


def _card_of_length(issuer: Issuer, length: int) -> str:
    """A card whose text is exactly `length` characters: an extra claim of bytes (any label is allowed) the padding."""
    for n in range(1000):
        text = card(issuer, card_claims(issuer) | {8: b"x" * n})
        if len(text) >= length:
            assert len(text) == length, f"no card of {length} characters"
            return text
    raise AssertionError(f"no card of {length} characters")


def test_a_card_of_1024_characters_is_read_and_a_longer_one_is_malformed_though_validly_signed(kc1_setup):
    s = kc1_setup
    at_limit = _card_of_length(s.centre, kp1.MAX_TEXT)
    assert len(at_limit) == 1024 and reason(s, at_limit) is None
    over = _card_of_length(s.centre, kp1.MAX_TEXT + 2)  # (base45 has no text of 1,021 characters)
    assert len(over) == 1026 and reason(s, over) is Reason.MALFORMED


JUNK = {
    "none": None, "bytes": b"KC1:6BFOXN", "int": 7, "empty": "", "prefix-only": "KC1:",
    "not-base45": "KC1:abc", "non-ascii": "KC1:ÄÖÜ", "nul": "KC1:\x00\x01", "colons": "KC1:::::",
    "lone-surrogate": "KC1:\ud800", "huge": "KC1:" + "A" * 100_000,
    "envelope-start-then-junk": "KC1:" + kp1.BODY_START + "%%%%",
    "envelope-start-then-zeros": "KC1:" + kp1.BODY_START + "000000",
    "phone-prefix": "KP1:" + kp1.BODY_START, "dcc": "HC1:NCFOXN%TS",
}


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
def test_verify_never_raises_on_junk(kc1_setup, junk):
    for result in (kc1_setup.verifier.verify(junk, NOW), kc1_setup.verifier.verify_raising(junk, NOW)):
        assert result.kind is Kind.REJECTED and result.reason is Reason.MALFORMED and result.claims is None


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3, 4], cbor2.CBORTag(18, [b"", {}, b"", b""]), cbor2.CBORTag(98, [])],
                         ids=["map", "array", "empty-sign1", "sign"])
def test_base45_of_other_cbor_is_malformed(kc1_setup, obj):
    assert reason(kc1_setup, qr(cbor2.dumps(obj), kc1.PREFIX)) is Reason.MALFORMED


def test_a_verifier_bug_rejects_as_malformed_and_the_fuzz_harness_sees_it(kc1_setup):
    """The card verifier is guarded as KP1's (kp1.Guarded, whose log line test_kp1 holds to the exception's type)."""
    text = signers.mint_card(kc1_setup.centre, NOW, cti=CTI)

    def broken_trust():
        raise ZeroDivisionError(f"cannot judge {text}")

    verifier = kc1.Kc1Verifier(trust=broken_trust)
    result = verifier.verify(text, NOW)
    assert result.kind is Kind.REJECTED and result.reason is Reason.MALFORMED and not result.green
    with pytest.raises(ZeroDivisionError):
        verifier.verify_raising(text, NOW)
