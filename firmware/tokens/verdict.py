"""What a verifier answers: a value, never an exception, so bad input cannot stop the loop."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(str, enum.Enum):
    ACCEPTED = "accepted"
    ALREADY_CHECKED_IN = "already_checked_in"
    REJECTED = "rejected"


class Reason(str, enum.Enum):
    """The named rejection reasons of DESIGN.md."""

    MALFORMED = "malformed"
    UNKNOWN_ISSUER = "unknown_issuer"
    REVOKED_ISSUER = "revoked_issuer"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MISSING_ATTRIBUTE = "missing_attribute"
    # Known only when the device has been told of the token's use at another
    # device (tokens.kp1.Verifier's `used_elsewhere` lookup).
    REPLAYED_ELSEWHERE = "replayed_elsewhere"


@dataclass(frozen=True)
class Claims:
    """The claims of a verified token. `cti` is personal: it is kept out of repr and logs."""

    iss: str
    iat: int
    exp: int
    cti: bytes = field(repr=False)
    att: tuple[str, ...] = ()
    kind: str = "KP1"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: Reason | None = None
    claims: Claims | None = None

    @property
    def iss(self) -> str | None:
        return self.claims.iss if self.claims else None

    @property
    def green(self) -> bool:
        return self.kind is not Kind.REJECTED

    def as_json(self) -> dict:
        """The public form (CLI, event log): never the token id."""
        return {
            "verdict": self.kind.value,
            "reason": self.reason.value if self.reason else None,
            "iss": self.iss,
        }


def rejected(reason: Reason, claims: Claims | None = None) -> Verdict:
    return Verdict(Kind.REJECTED, reason, claims)
