"""Property tests of KP1 and KC1 verification: what is minted right is accepted as minted, and nothing else is.

Keys and the trust list are made once for the module. Every property holds for phone tokens (KP1) and printed
cards (KC1) alike, each judged by its own verifier; a card's own (its life, the role of its key) follow. Every
call goes through `verify_raising`, so an exception escaping the verifier fails the property.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.signers import Issuer
from firmware.tokens import cose, kc1, kp1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab import signers

PREFIX, CARD_PREFIX = "KP1:", "KC1:"
ATTRIBUTES = ("age14", "age19", "vax")
MAX_WINDOW = 300
NOW = 1_750_000_000
DAY = 86400
HARD_CAP = 1830 * DAY  # no card lives longer
RECHECK_S = 3600  # Kc1Verifier's default: a card shown again within the hour is "already checked in"
ISSUERS = tuple(Issuer(name, Ed25519PrivateKey.generate()) for name in ("naver", "kakao", "toss"))
CARD_ISSUERS = (Issuer("centre", Ed25519PrivateKey.generate(), card_days=30),
                Issuer("office", Ed25519PrivateKey.generate(), card_days=1830))
ROOT = Ed25519PrivateKey.generate()
# Issuer keys valid from NOW - 61 days to NOW + 2,495 days: every instant drawn below is inside, a card's life too.
TRUST = trustlist.parse(
    signers.build_trust_list(ROOT, (*ISSUERS, *CARD_ISSUERS), seq=1, issued_at=NOW - 60 * DAY,
                             issuer_valid_days=7 * 365), ROOT.public_key()
)
IAT = (NOW - 30 * DAY, NOW + 30 * DAY)
SKEWS = (0, 1, 5, 30)
VERIFIERS = {("KP1", skew): kp1.Kp1Verifier(trust=lambda: TRUST, skew=skew) for skew in SKEWS} | {
    ("KC1", skew): kc1.Kc1Verifier(trust=lambda: TRUST, skew=skew) for skew in SKEWS}
VERIFIER = VERIFIERS["KP1", 5]

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Minted:
    issuer: Issuer
    iat: int
    ttl: int
    att: tuple[str, ...]
    cti: bytes
    text: str

    @property
    def exp(self) -> int:
        return self.iat + self.ttl

    @property
    def prefix(self) -> str:
        return self.text[: len(PREFIX)]

    @property
    def kind(self) -> str:
        return self.prefix[:-1]

    @property
    def cose(self) -> bytes:
        return base45.b45decode(self.text[len(PREFIX) :])

    def verifier(self, skew: int = 5):
        return VERIFIERS[self.kind, skew]


def _mint(issuer: Issuer, iat: int, ttl: int, att: tuple[str, ...], cti: bytes) -> Minted:
    """A phone token living `ttl` seconds, or from a card issuer a card living `ttl` // DAY days."""
    if issuer.card_days:
        return Minted(issuer, iat, ttl, att, cti, signers.mint_card(issuer, iat, days=ttl // DAY, att=att, cti=cti))
    return Minted(issuer, iat, ttl, att, cti, signers.mint(issuer, iat, ttl=ttl, att=att, cti=cti))


attributes = st.lists(st.sampled_from(ATTRIBUTES), unique=True).map(tuple)  # any subset, in any order
tokens = st.builds(
    _mint,
    issuer=st.sampled_from(ISSUERS),
    iat=st.integers(*IAT),
    ttl=st.integers(1, MAX_WINDOW),
    att=attributes,
    cti=st.binary(min_size=16, max_size=16),
)
cards = st.sampled_from(CARD_ISSUERS).flatmap(lambda issuer: st.builds(
    _mint,
    issuer=st.just(issuer),
    iat=st.integers(*IAT),
    ttl=st.integers(1, issuer.card_days).map(lambda days: days * DAY),
    att=attributes,
    cti=st.binary(min_size=16, max_size=16),
))
any_token = tokens | cards


def qr(cose: bytes, prefix: str = PREFIX) -> str:
    return prefix + base45.b45encode(cose).decode("ascii")


def assert_rejected(minted: Minted, text: str) -> None:
    """`text`, made from the valid `minted`, is rejected at an instant when `minted` is accepted."""
    assert text != minted.text
    result = minted.verifier().verify_raising(text, minted.iat)
    assert result.kind is Kind.REJECTED and isinstance(result.reason, Reason), (text, result)


# --- a. accepted as minted -------------------------------------------------------


@FAST
@given(minted=any_token, skew=st.sampled_from(SKEWS), data=st.data())
def test_every_minted_token_is_accepted_with_exactly_its_claims(minted, skew, data):
    low, high = minted.iat - skew, minted.exp + skew
    now = data.draw(st.one_of(st.integers(low, high), st.floats(low, high), st.sampled_from((low, high))), label="now")
    result = minted.verifier(skew).verify_raising(minted.text, now)
    assert result.kind is Kind.ACCEPTED and result.reason is None and result.green, result
    claims = result.claims
    assert (claims.iss, claims.iat, claims.exp, claims.cti, claims.att, claims.kind) == (
        minted.issuer.iss,
        minted.iat,
        minted.exp,
        minted.cti,
        minted.att,
        minted.kind,
    )
    # a phone token is "already checked in" until it expires, a card for the venue's window from now
    assert result.seen_until == (minted.exp + skew if minted.kind == "KP1" else int(now) + RECHECK_S)


# --- b. a single changed byte --------------------------------------------------------


@MUTATIONS
@given(minted=any_token, data=st.data())
def test_every_single_byte_change_of_the_text_is_rejected(minted, data):
    raw = bytearray(minted.text.encode("ascii"))
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]), label="value")
    assert_rejected(minted, raw.decode("latin-1"))


@MUTATIONS
@given(minted=any_token, data=st.data())
def test_every_single_byte_change_of_the_cose_bytes_is_rejected(minted, data):
    raw = bytearray(minted.cose)
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]), label="value")
    assert_rejected(minted, qr(bytes(raw), minted.prefix))


@pytest.mark.parametrize("issuer,ttl", [(ISSUERS[1], 300), (CARD_ISSUERS[1], HARD_CAP)], ids=["token", "card"])
def test_every_cose_byte_exhaustively_with_a_handful_of_values(issuer, ttl):
    minted = _mint(issuer, NOW, ttl, ATTRIBUTES, bytes(range(16)))
    assert minted.verifier().verify_raising(minted.text, NOW).kind is Kind.ACCEPTED
    raw = minted.cose
    start = time.perf_counter()
    checked = 0
    for i, old in enumerate(raw):
        for new in {0x00, 0xFF, old ^ 0x01, old ^ 0x80} - {old}:
            assert_rejected(minted, qr(raw[:i] + bytes((new,)) + raw[i + 1 :], minted.prefix))
            checked += 1
    elapsed = time.perf_counter() - start
    assert checked >= 3 * len(raw)
    assert elapsed < 5, f"{checked} mutations took {elapsed:.2f} s"


# --- c. shorter and longer ------------------------------------------------------------


@MUTATIONS
@given(minted=any_token, data=st.data())
def test_every_truncation_is_rejected(minted, data):
    n = data.draw(st.integers(0, len(minted.text) - 1), label="text length")
    assert_rejected(minted, minted.text[:n])
    m = data.draw(st.integers(0, len(minted.cose) - 1), label="cose length")
    assert_rejected(minted, qr(minted.cose[:m], minted.prefix))


@MUTATIONS
@given(minted=any_token, data=st.data())
def test_every_extension_is_rejected(minted, data):
    # drawn from base45 characters half the time, so that most appended texts do decode
    extra = data.draw(st.text(min_size=1, max_size=16) | st.text("0123456789ABCXYZ $%*+-./:", min_size=1, max_size=16))
    assert_rejected(minted, minted.text + extra)
    assert_rejected(minted, qr(minted.cose + data.draw(st.binary(min_size=1, max_size=16), label="appended bytes"),
                               minted.prefix))


@MUTATIONS
@given(minted=any_token, data=st.data())
def test_every_insertion_is_rejected(minted, data):
    text, raw = minted.text, minted.cose
    i = data.draw(st.integers(0, len(text)), label="text position")
    extra = data.draw(st.text(min_size=1, max_size=16) | st.text("0123456789ABCXYZ $%*+-./:", min_size=1, max_size=16))
    assert_rejected(minted, text[:i] + extra + text[i:])
    j = data.draw(st.integers(0, len(raw)), label="cose position")
    inserted = data.draw(st.binary(min_size=1, max_size=16), label="inserted bytes")
    assert_rejected(minted, qr(raw[:j] + inserted + raw[j:], minted.prefix))


@FAST
@given(body=st.binary(max_size=700))
def test_arbitrary_bytes_behind_the_envelope_start_are_rejected(body):
    # reaches past the cheap prefix filter into the parsers: a verdict, never an exception
    for prefix, issuer in ((PREFIX, ISSUERS[0]), (CARD_PREFIX, CARD_ISSUERS[0])):
        for head in (b"\xd2\x84", bytes.fromhex("d2844da201270448") + issuer.kid):
            result = VERIFIERS[prefix[:-1], 5].verify_raising(qr(head + body, prefix), NOW)
            assert result.kind is Kind.REJECTED


# --- d. policy -------------------------------------------------------------------------


@FAST
@given(minted=any_token, require=attributes)
def test_accepted_exactly_when_the_token_has_every_required_attribute(minted, require):
    result = dataclasses.replace(minted.verifier(), require=require).verify_raising(minted.text, minted.iat)
    if set(minted.att) >= set(require):
        assert result.kind is Kind.ACCEPTED and result.claims.att == minted.att, result
    else:
        assert result.kind is Kind.REJECTED and result.reason is Reason.MISSING_ATTRIBUTE, result


# --- e. time ---------------------------------------------------------------------------

late = st.one_of(st.integers(1, 20 * DAY), st.floats(1e-3, 20 * DAY))  # seconds past the edge


@FAST
@given(minted=any_token, skew=st.sampled_from(SKEWS), delta=late)
def test_before_iat_minus_skew_is_not_yet_valid(minted, skew, delta):
    now = minted.iat - skew - delta
    assert now < minted.iat - skew
    result = minted.verifier(skew).verify_raising(minted.text, now)
    assert result.kind is Kind.REJECTED and result.reason is Reason.NOT_YET_VALID, result


@FAST
@given(minted=any_token, skew=st.sampled_from(SKEWS), delta=late)
def test_after_exp_plus_skew_is_expired(minted, skew, delta):
    now = minted.exp + skew + delta
    assert now > minted.exp + skew
    result = minted.verifier(skew).verify_raising(minted.text, now)
    assert result.kind is Kind.REJECTED and result.reason is Reason.EXPIRED, result


@pytest.mark.parametrize("issuer", ISSUERS + CARD_ISSUERS, ids=lambda i: i.iss)
def test_every_module_issuer_is_trusted(issuer):
    # the control of the module's world: all five keys are in the trust list, under their own names and roles
    assert TRUST.issuers[issuer.kid].iss == issuer.iss
    assert TRUST.issuers[issuer.kid].card_days == issuer.card_days


# --- f. a card's own: its life, and one key, one role ----------------------------------------------------


def _signed(issuer: Issuer, iat: int, life: int, prefix: str) -> str:
    """KP1's claims living `life` seconds, as they are, signed by `issuer` under `prefix`."""
    claims = {kp1.CLAIM_ISS: issuer.iss, kp1.CLAIM_IAT: iat, kp1.CLAIM_EXP: iat + life, kp1.CLAIM_CTI: bytes(16)}
    return qr(cose.sign1(cbor2.dumps(claims), issuer.key, issuer.kid), prefix)


@FAST
@given(issuer=st.sampled_from(CARD_ISSUERS), data=st.data())
def test_a_card_is_accepted_exactly_when_it_lives_no_longer_than_its_issuers_card_days(issuer, data):
    longest = issuer.card_days * DAY
    life = data.draw(st.one_of(st.integers(0, longest), st.integers(longest - 2, HARD_CAP + 2),
                               st.integers(HARD_CAP, 10 * HARD_CAP)), label="life")
    result = VERIFIERS["KC1", 5].verify_raising(_signed(issuer, NOW, life, CARD_PREFIX), NOW)
    if life <= longest:
        assert result.kind is Kind.ACCEPTED, (life, result)
    else:  # the issuer is not trusted for it; past five years no card is one
        assert result.reason is (Reason.UNKNOWN_ISSUER if life <= HARD_CAP else Reason.MALFORMED), (life, result)


@FAST
@given(minted=any_token)
def test_a_token_under_the_other_kinds_prefix_is_never_accepted(minted):
    other = CARD_PREFIX if minted.kind == "KP1" else PREFIX
    result = VERIFIERS[other[:-1], 5].verify_raising(other + minted.text[len(other) :], minted.iat)
    assert result.kind is Kind.REJECTED and result.reason is Reason.UNKNOWN_ISSUER, result
