"""KC1 printed entry cards: `KC1:` + base45(COSE_Sign1(Ed25519, CWT claims)), as KP1 but signed once to last months.

For visitors without a smartphone. A card issuer (a community centre, a district
office) signs a card with a key the trust list marks as a card issuer's
(`card_days`, the longest a card of that key may live); a phone issuer's key
signs no card, and a card issuer's no phone token (tokens.kp1). The claims are
KP1's, read by the same strict parser, with the card's life in place of the
phone token's 300 s: `cti` is the card id, which only its issuer links to a
person, and the sealed record carries it as a phone token's.

A card is shown again and again, so "already checked in" is the venue's window
(`[cards] recheck_s`), as for a DCC. A lost or stolen card is revoked in the
trust list by a keyed hash of its kid and id (`revocation_hash`), never by the
id itself. Like KP1's (kp1.Guarded), `verify` answers a Verdict for every input.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Callable

from firmware.tokens import kp1
from firmware.tokens.trustlist import CARD_HASH_BYTES, MAX_CARD_DAYS, IssuerKey, TrustList
from firmware.tokens.verdict import Kind, Reason, Verdict, rejected

PREFIX = "KC1:"
KIND = "KC1"
MAX_LIFETIME_S = MAX_CARD_DAYS * 86400


def revocation_hash(card_key: bytes, kid: bytes, cti: bytes) -> bytes:
    """What the trust list holds for a revoked card: HMAC-SHA256(card_key, kid ‖ cti), its first 16 bytes."""
    return hmac.new(card_key, kid + cti, hashlib.sha256).digest()[:CARD_HASH_BYTES]


@dataclass
class Kc1Verifier(kp1.Guarded):
    """Checks printed cards against the trust list in force and the venue's policy."""

    trust: Callable[[], TrustList | None]
    require: tuple[str, ...] = ()
    skew: int = 5
    recheck_s: int = 3600  # the same card again within this time is "already checked in"
    used_elsewhere: Callable[[bytes | str], bool] | None = None  # as Kp1Verifier's

    def _verify(self, text: str, now: float) -> Verdict:
        envelope = kp1.sign1_of(text, PREFIX)
        if envelope is None:
            return rejected(Reason.MALFORMED)
        trust = self.trust()
        issuer = kp1.signer_of(envelope, trust, now, cards=True)  # only a card issuer's key signs a card
        if not isinstance(issuer, IssuerKey):
            return rejected(issuer)
        assert trust is not None
        claims = kp1.parse_claims(envelope.payload, MAX_LIFETIME_S, KIND)
        if claims.iss != issuer.iss or claims.exp - claims.iat > issuer.card_days * 86400:
            return rejected(Reason.UNKNOWN_ISSUER)  # the issuer is not trusted for a card that long
        if now < claims.iat - self.skew:
            return rejected(Reason.NOT_YET_VALID, claims)
        if now > claims.exp + self.skew:
            return rejected(Reason.EXPIRED, claims)
        assert isinstance(claims.cti, bytes)
        if trust.card_revoked and revocation_hash(trust.card_key, envelope.kid, claims.cti) in trust.card_revoked:
            return rejected(Reason.REVOKED, claims)
        if any(a not in claims.att for a in self.require):
            return rejected(Reason.MISSING_ATTRIBUTE, claims)
        if self.used_elsewhere is not None and self.used_elsewhere(claims.cti):
            return rejected(Reason.REPLAYED_ELSEWHERE, claims)
        return Verdict(Kind.ACCEPTED, None, claims, seen_until=int(now) + self.recheck_s)
