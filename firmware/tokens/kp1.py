"""KP1 one-time entry tokens: `KP1:` + base45(COSE_Sign1(Ed25519, CWT claims)).

`Kp1Verifier.verify` is what the door runs (the lab's test issuer mints: lab.signers). Verify is
pure (it is given `now`) and returns a Verdict for every input: anything that
does not parse at some layer is `malformed`, never an exception. Every layer is
strict (prefix, base45, CBOR, COSE, claims), so that a token has exactly one
accepted text and hostile input is turned away as early and cheaply as possible.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import base45
import cbor2

from firmware.tokens import b45, cose
from firmware.tokens.trustlist import IssuerKey, TrustList
from firmware.tokens.verdict import Claims, Kind, Reason, Verdict, rejected

logger = logging.getLogger(__name__)

PREFIX = "KP1:"
MAX_TEXT = 1024
MAX_WINDOW = 300  # exp - iat never over 300 s
DEFAULT_TTL = 15
ATTRIBUTES = ("age14", "age19", "vax")
# Times outside 2020-01-01 .. 2100-01-01 are not a clock's reading but a forgery or a bug.
TIME_RANGE = (1_577_836_800, 4_102_444_800)
MAX_CLAIMS = 16

CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_ATT = 1, 4, 6, 7, -70001

# Every KP1 envelope begins with the same six bytes (cose.parse_eddsa_sign1), so every
# KP1 body begins with their nine base45 characters: a free first filter for other QR codes.
BODY_START = base45.b45encode(bytes.fromhex("d2844da20127")).decode("ascii")


def _time(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not TIME_RANGE[0] <= value < TIME_RANGE[1]:
        raise cose.CoseError("time claim is not an integer between 2020 and 2100")
    return value


def parse_claims(payload: bytes, max_window: int = MAX_WINDOW, kind: str = "KP1") -> Claims:
    """The CWT claims, in preferred serialization like the envelope: one signed token, one encoding.

    `max_window` caps exp - iat: 300 s for a phone token, a card's hard cap for a printed card (tokens.kc1)."""
    body = cose.labelled_map(cose.strict_loads(payload))
    if len(body) > MAX_CLAIMS:
        raise cose.CoseError("more than 16 claims")
    if cbor2.dumps(body) != payload:
        raise cose.CoseError("claims not in preferred serialization")
    iss, cti, att = body.get(CLAIM_ISS), body.get(CLAIM_CTI), body.get(CLAIM_ATT, [])
    if not isinstance(iss, str) or not 0 < len(iss) <= 64:
        raise cose.CoseError("iss is not a short text")
    if not (isinstance(cti, bytes) and len(cti) == 16):
        raise cose.CoseError("cti is not 16 bytes")
    if not (cose.is_array(att) and len(att) <= 16 and all(isinstance(a, str) and len(a) <= 32 for a in att)):
        raise cose.CoseError("att is not a list of short strings")
    iat, exp = _time(body.get(CLAIM_IAT)), _time(body.get(CLAIM_EXP))
    if not 0 <= exp - iat <= max_window:
        raise cose.CoseError(f"validity window is negative or over {max_window} s")
    return Claims(iss=iss, iat=iat, exp=exp, cti=cti, att=tuple(att), kind=kind)


def sign1_of(text: object, prefix: str) -> cose.Sign1 | None:
    """The COSE envelope of a `prefix` token (KP1, or a KC1 card: tokens.kc1), or None where the text is not one
    (not text, over MAX_TEXT, another prefix, a body not starting as every envelope does). Raises CoseError or
    Base45Error for a body that starts as one and is malformed."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or not text.startswith(prefix):
        return None
    body = text[len(prefix) :]
    if not body.startswith(BODY_START):
        return None
    return cose.parse_eddsa_sign1(b45.decode(body))


def signer_of(envelope: cose.Sign1, trust: TrustList | None, now: float, cards: bool) -> IssuerKey | Reason:
    """The issuer key whose signature the envelope carries, or why there is none: no list, a revoked kid, a kid the
    list does not name in its validity or names in the other role (a card issuer's key signs only printed cards,
    tokens.kc1; a phone app's only phone tokens), a signature that does not verify."""
    if trust is None:
        return Reason.UNKNOWN_ISSUER
    if envelope.kid in trust.revoked:
        return Reason.REVOKED_ISSUER
    issuer = trust.issuers.get(envelope.kid)
    if issuer is None or bool(issuer.card_days) is not cards or not issuer.not_before <= now <= issuer.not_after:
        return Reason.UNKNOWN_ISSUER
    if not envelope.verify(issuer.key):
        return Reason.BAD_SIGNATURE
    return issuer


class Guarded:
    """A token verifier's two entries around its own `_verify`: the door's, which answers a Verdict for any
    input whatsoever, and the fuzz harness's, which lets a bug's exception escape."""

    def verify(self, text: str, now: float) -> Verdict:
        """The door's call: a Verdict for any input whatsoever."""
        try:
            return self.verify_raising(text, now)
        except Exception as exc:  # a bug, not bad input: still no green, and the loop goes on
            logger.error("verifier error %s; token rejected as malformed", type(exc).__name__)
            return rejected(Reason.MALFORMED)

    def verify_raising(self, text: str, now: float) -> Verdict:
        """Like verify, but an unexpected exception escapes: what the fuzz harness and property tests call."""
        try:
            return self._verify(text, now)
        except (cose.CoseError, b45.Base45Error):
            return rejected(Reason.MALFORMED)

    def _verify(self, text: str, now: float) -> Verdict:
        raise NotImplementedError


@dataclass
class Kp1Verifier(Guarded):
    """Checks KP1 tokens against the trust list in force and the venue's policy."""

    trust: Callable[[], TrustList | None]
    require: tuple[str, ...] = ()
    skew: int = 5
    # Optional knowledge of tokens accepted at other devices (None: not known here).
    used_elsewhere: Callable[[bytes | str], bool] | None = None

    def _verify(self, text: str, now: float) -> Verdict:
        envelope = sign1_of(text, PREFIX)
        if envelope is None:
            return rejected(Reason.MALFORMED)
        issuer = signer_of(envelope, self.trust(), now, cards=False)
        if not isinstance(issuer, IssuerKey):
            return rejected(issuer)
        claims = parse_claims(envelope.payload)
        if claims.iss != issuer.iss:
            return rejected(Reason.UNKNOWN_ISSUER)
        if now < claims.iat - self.skew:
            return rejected(Reason.NOT_YET_VALID, claims)
        if now > claims.exp + self.skew:
            return rejected(Reason.EXPIRED, claims)
        if any(a not in claims.att for a in self.require):
            return rejected(Reason.MISSING_ATTRIBUTE, claims)
        if self.used_elsewhere is not None and self.used_elsewhere(claims.cti):
            return rejected(Reason.REPLAYED_ELSEWHERE, claims)
        return Verdict(Kind.ACCEPTED, None, claims, seen_until=claims.exp + self.skew)
