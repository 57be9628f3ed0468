"""The door's check of an EU DCC: genuine (tokens.dcc), not revoked, then enough for this venue
(tokens.dcc_policy) and, with `[dcc] rules_country`, for that country's business rules (tokens.dcc_rules).

It answers the same Verdict as a KP1 token, so the gate records and answers
both alike: the UVCI goes where a token id goes, the country that signed it
where the issuer goes, and the visit's "already checked in" window is the
venue's `dcc.recheck_s` (a DCC is valid for months, unlike a 15-second KP1
token). The certificate's name and birth date stay in `DccResult.payload`,
in this call's memory only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from firmware.tokens import dcc, dcc_policy
from firmware.tokens.trustlist import TrustList
from firmware.tokens.verdict import Claims, Kind, Reason, Verdict, rejected

if TYPE_CHECKING:
    from firmware.config import DccConfig

logger = logging.getLogger(__name__)

# A DCC's own reasons, as the door names them: every parse failure is `malformed`, as for KP1,
# and a signer outside its validity is as unknown as a KP1 issuer key outside its own.
_REASONS = {
    dcc.Reason.NOT_DCC: Reason.MALFORMED,
    dcc.Reason.BAD_BASE45: Reason.MALFORMED,
    dcc.Reason.BAD_COMPRESSION: Reason.MALFORMED,
    dcc.Reason.MALFORMED: Reason.MALFORMED,
    dcc.Reason.UNSUPPORTED_ALGORITHM: Reason.MALFORMED,
    dcc.Reason.UNKNOWN_SIGNER: Reason.UNKNOWN_ISSUER,
    dcc.Reason.SIGNER_NOT_VALID: Reason.UNKNOWN_ISSUER,
    dcc.Reason.BAD_SIGNATURE: Reason.BAD_SIGNATURE,
    dcc.Reason.EXPIRED: Reason.EXPIRED,
    dcc.Reason.NOT_YET_VALID: Reason.NOT_YET_VALID,
    dcc.Reason.KEY_USAGE: Reason.KEY_USAGE,
}
MAX_UVCI = 80  # the UVCI specification's maximum length
MAX_ISS = 64


class Revocations(Protocol):
    def revoked(self, result: dcc.DccResult) -> bool:
        """Is this verified certificate on the revocation list in force (firmware.revocation)?"""


@dataclass
class DccVerifier:
    trust: Callable[[], TrustList | None]
    policy: "DccConfig"
    skew: int = 5
    revocations: Revocations | None = None

    def verify(self, text: str, now: float) -> Verdict:
        """A Verdict for any input whatsoever: a bug is `malformed`, and the loop goes on."""
        try:
            return self.verify_raising(text, now)
        except Exception as exc:  # noqa: BLE001 - a bug, not bad input: still no green
            logger.error("DCC verifier error %s; rejected as malformed", type(exc).__name__)
            return rejected(Reason.MALFORMED)

    def verify_raising(self, text: str, now: float) -> Verdict:
        """Like verify, but an unexpected exception escapes: what the fuzz harness calls."""
        trust = self.trust()
        if trust is None:
            return rejected(Reason.UNKNOWN_ISSUER)
        result = dcc.verify_raising(text, trust.dcc_signers, now)
        if result.reason is not None:
            return rejected(_REASONS[result.reason])
        uvci, iss = result.uvci, result.iss
        if not (isinstance(uvci, str) and 0 < len(uvci) <= MAX_UVCI) or result.iat is None or result.exp is None:
            return rejected(Reason.MALFORMED)  # nothing to record the visit by
        if not (isinstance(iss, str) and 0 < len(iss) <= MAX_ISS):
            iss = "DCC"
        claims = Claims(iss=iss, iat=result.iat, exp=result.exp, cti=uvci, kind="DCC")
        if self.revocations is not None and self.revocations.revoked(result):
            return rejected(Reason.REVOKED, claims)
        refused = dcc_policy.check(result.dcc_type, result.payload or {}, self.policy, now, self.skew)
        if refused is not None:
            return rejected(refused, claims)
        country = self.policy.rules_country
        if country:
            failed = trust.rules.first_failure(
                country, result.dcc_type, result.payload or {}, issuer_country=result.iss, iat=result.iat,
                exp=result.exp, kid=result.kid, now=now)
            if failed is not None:
                return Verdict(Kind.REJECTED, Reason.RULE_FAILED, claims, rule=failed)
        return Verdict(Kind.ACCEPTED, None, claims, seen_until=int(now) + self.policy.recheck_s)
