"""What a verifier answers: a value, never an exception, so bad input cannot stop the loop."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


# The token kinds, by the prefix of their QR text: KP1 phone entry tokens, KC1 printed entry cards, EU DCCs (HC1).
KINDS = ("KP1", "KC1", "DCC")


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
    # Known only when another door of the venue has told this one it accepted
    # the token (passback.share.VenueVerifier).
    REPLAYED_ELSEWHERE = "replayed_elsewhere"
    # The venue does not take this kind of token (policy.accept): a DCC where only KP1 is taken, or the reverse.
    KIND_NOT_ACCEPTED = "kind_not_accepted"
    # EU DCC (tokens.dcc_verifier): the signer certificate may not sign this type of DCC.
    KEY_USAGE = "key_usage"
    # EU DCC, the venue's [dcc] policy (tokens.dcc_policy).
    TYPE_NOT_ACCEPTED = "type_not_accepted"  # a test or recovery where the venue takes only some types
    VACCINE_NOT_ACCEPTED = "vaccine_not_accepted"  # a vaccine product (mp) dcc.vaccines leaves out
    SERIES_INCOMPLETE = "series_incomplete"  # fewer doses than the series has
    VACCINATION_TOO_RECENT = "vaccination_too_recent"
    VACCINATION_TOO_OLD = "vaccination_too_old"
    TEST_POSITIVE = "test_positive"
    TEST_TYPE_NOT_ACCEPTED = "test_type_not_accepted"
    TEST_TOO_OLD = "test_too_old"
    RECOVERY_NOT_VALID = "recovery_not_valid"  # outside its df..du, or the positive test too long ago
    # EU DCC, beyond the venue's policy: a business rule of [dcc] rules_country (tokens.dcc_rules) that the
    # certificate fails, and a certificate on the revocation list (firmware.revocation).
    RULE_FAILED = "rule_failed"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Claims:
    """The claims of a verified token. `cti` is personal: it is kept out of repr and logs.

    For a KP1 token `cti` is its 16-byte token id, for a KC1 printed card its 16-byte card id; for a DCC it is
    the UVCI (text), which the sealed record carries in the token id's place.
    """

    iss: str
    iat: int
    exp: int
    cti: bytes | str = field(repr=False)
    att: tuple[str, ...] = ()
    kind: str = "KP1"

    @property
    def seen_key(self) -> bytes:
        """What the store remembers (as a keyed hash) to answer "already checked in"; kinds never collide."""
        cti = self.cti if isinstance(self.cti, bytes) else self.cti.encode()
        return cti if self.kind == "KP1" else self.kind.encode() + b"\0" + cti


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: Reason | None = None
    claims: Claims | None = None
    # Accepted: until when the same token shown again is "already checked in" (Unix seconds).
    seen_until: int | None = None
    # rule_failed: the Identifier of the business rule failed (VR-DE-0001), which names no one.
    rule: str | None = None

    @property
    def iss(self) -> str | None:
        return self.claims.iss if self.claims else None

    @property
    def green(self) -> bool:
        return self.kind is not Kind.REJECTED

    def as_json(self) -> dict[str, str | None]:
        """The public form (CLI, event log): never the token id."""
        out = {
            "verdict": self.kind.value,
            "reason": self.reason.value if self.reason else None,
            "iss": self.iss,
        }
        if self.rule is not None:
            out["rule"] = self.rule
        return out


def rejected(reason: Reason, claims: Claims | None = None) -> Verdict:
    return Verdict(Kind.REJECTED, reason, claims)
