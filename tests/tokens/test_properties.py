"""Property tests of KP1 verification: what is minted right is accepted as minted, and nothing else is.

Keys and the trust list are made once for the module. Every call goes through
`verify_raising`, so an exception escaping the verifier fails the property.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import base45
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.signers import Issuer
from firmware.tokens import kp1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab import signers

PREFIX = "KP1:"
ATTRIBUTES = ("age14", "age19", "vax")
MAX_WINDOW = 300
NOW = 1_750_000_000
DAY = 86400
ISSUERS = tuple(Issuer(name, Ed25519PrivateKey.generate()) for name in ("naver", "kakao", "toss"))
ROOT = Ed25519PrivateKey.generate()
# Issuer keys valid from NOW - 61 days to NOW + 305 days: every instant drawn below is inside.
TRUST = trustlist.parse(
    signers.build_trust_list(ROOT, ISSUERS, seq=1, issued_at=NOW - 60 * DAY, issuer_valid_days=365), ROOT.public_key()
)
IAT = (NOW - 30 * DAY, NOW + 30 * DAY)
SKEWS = (0, 1, 5, 30)
VERIFIERS = {skew: kp1.Kp1Verifier(trust=lambda: TRUST, skew=skew) for skew in SKEWS}
VERIFIER = VERIFIERS[5]

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
    def cose(self) -> bytes:
        return base45.b45decode(self.text[len(PREFIX) :])


def _mint(issuer: Issuer, iat: int, ttl: int, att: tuple[str, ...], cti: bytes) -> Minted:
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


def qr(cose: bytes) -> str:
    return PREFIX + base45.b45encode(cose).decode("ascii")


def assert_rejected(minted: Minted, text: str) -> None:
    """`text`, made from the valid `minted`, is rejected at an instant when `minted` is accepted."""
    assert text != minted.text
    result = VERIFIER.verify_raising(text, minted.iat)
    assert result.kind is Kind.REJECTED and isinstance(result.reason, Reason), (text, result)


# --- a. accepted as minted -------------------------------------------------------


@FAST
@given(minted=tokens, skew=st.sampled_from(SKEWS), data=st.data())
def test_every_minted_token_is_accepted_with_exactly_its_claims(minted, skew, data):
    low, high = minted.iat - skew, minted.exp + skew
    now = data.draw(st.one_of(st.integers(low, high), st.floats(low, high), st.sampled_from((low, high))), label="now")
    result = VERIFIERS[skew].verify_raising(minted.text, now)
    assert result.kind is Kind.ACCEPTED and result.reason is None and result.green, result
    claims = result.claims
    assert (claims.iss, claims.iat, claims.exp, claims.cti, claims.att) == (
        minted.issuer.iss,
        minted.iat,
        minted.exp,
        minted.cti,
        minted.att,
    )


# --- b. a single changed byte --------------------------------------------------------


@MUTATIONS
@given(minted=tokens, data=st.data())
def test_every_single_byte_change_of_the_text_is_rejected(minted, data):
    raw = bytearray(minted.text.encode("ascii"))
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]), label="value")
    assert_rejected(minted, raw.decode("latin-1"))


@MUTATIONS
@given(minted=tokens, data=st.data())
def test_every_single_byte_change_of_the_cose_bytes_is_rejected(minted, data):
    raw = bytearray(minted.cose)
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]), label="value")
    assert_rejected(minted, qr(bytes(raw)))


def test_every_cose_byte_exhaustively_with_a_handful_of_values():
    minted = _mint(ISSUERS[1], NOW, 300, ATTRIBUTES, bytes(range(16)))
    assert VERIFIER.verify_raising(minted.text, NOW).kind is Kind.ACCEPTED
    raw = minted.cose
    start = time.perf_counter()
    checked = 0
    for i, old in enumerate(raw):
        for new in {0x00, 0xFF, old ^ 0x01, old ^ 0x80} - {old}:
            assert_rejected(minted, qr(raw[:i] + bytes((new,)) + raw[i + 1 :]))
            checked += 1
    elapsed = time.perf_counter() - start
    assert checked >= 3 * len(raw)
    assert elapsed < 5, f"{checked} mutations took {elapsed:.2f} s"


# --- c. shorter and longer ------------------------------------------------------------


@MUTATIONS
@given(minted=tokens, data=st.data())
def test_every_truncation_is_rejected(minted, data):
    n = data.draw(st.integers(0, len(minted.text) - 1), label="text length")
    assert_rejected(minted, minted.text[:n])
    m = data.draw(st.integers(0, len(minted.cose) - 1), label="cose length")
    assert_rejected(minted, qr(minted.cose[:m]))


@MUTATIONS
@given(minted=tokens, data=st.data())
def test_every_extension_is_rejected(minted, data):
    # drawn from base45 characters half the time, so that most appended texts do decode
    extra = data.draw(st.text(min_size=1, max_size=16) | st.text("0123456789ABCXYZ $%*+-./:", min_size=1, max_size=16))
    assert_rejected(minted, minted.text + extra)
    assert_rejected(minted, qr(minted.cose + data.draw(st.binary(min_size=1, max_size=16), label="appended bytes")))


@MUTATIONS
@given(minted=tokens, data=st.data())
def test_every_insertion_is_rejected(minted, data):
    text, raw = minted.text, minted.cose
    i = data.draw(st.integers(0, len(text)), label="text position")
    extra = data.draw(st.text(min_size=1, max_size=16) | st.text("0123456789ABCXYZ $%*+-./:", min_size=1, max_size=16))
    assert_rejected(minted, text[:i] + extra + text[i:])
    j = data.draw(st.integers(0, len(raw)), label="cose position")
    inserted = data.draw(st.binary(min_size=1, max_size=16), label="inserted bytes")
    assert_rejected(minted, qr(raw[:j] + inserted + raw[j:]))


@FAST
@given(body=st.binary(max_size=700))
def test_arbitrary_bytes_behind_the_kp1_envelope_start_are_rejected(body):
    # reaches past the cheap prefix filter into the parsers: a verdict, never an exception
    for head in (b"\xd2\x84", bytes.fromhex("d2844da201270448") + ISSUERS[0].kid):
        result = VERIFIER.verify_raising(qr(head + body), NOW)
        assert result.kind is Kind.REJECTED


# --- d. policy -------------------------------------------------------------------------


@FAST
@given(minted=tokens, require=attributes)
def test_accepted_exactly_when_the_token_has_every_required_attribute(minted, require):
    result = kp1.Kp1Verifier(trust=lambda: TRUST, require=require).verify_raising(minted.text, minted.iat)
    if set(minted.att) >= set(require):
        assert result.kind is Kind.ACCEPTED and result.claims.att == minted.att, result
    else:
        assert result.kind is Kind.REJECTED and result.reason is Reason.MISSING_ATTRIBUTE, result


# --- e. time ---------------------------------------------------------------------------

late = st.one_of(st.integers(1, 20 * DAY), st.floats(1e-3, 20 * DAY))  # seconds past the edge


@FAST
@given(minted=tokens, skew=st.sampled_from(SKEWS), delta=late)
def test_before_iat_minus_skew_is_not_yet_valid(minted, skew, delta):
    now = minted.iat - skew - delta
    assert now < minted.iat - skew
    result = VERIFIERS[skew].verify_raising(minted.text, now)
    assert result.kind is Kind.REJECTED and result.reason is Reason.NOT_YET_VALID, result


@FAST
@given(minted=tokens, skew=st.sampled_from(SKEWS), delta=late)
def test_after_exp_plus_skew_is_expired(minted, skew, delta):
    now = minted.exp + skew + delta
    assert now > minted.exp + skew
    result = VERIFIERS[skew].verify_raising(minted.text, now)
    assert result.kind is Kind.REJECTED and result.reason is Reason.EXPIRED, result


@pytest.mark.parametrize("issuer", ISSUERS, ids=lambda i: i.iss)
def test_every_module_issuer_is_trusted(issuer):
    # the control of the module's world: all three keys are in the trust list, under their own names
    assert TRUST.issuers[issuer.kid].iss == issuer.iss
