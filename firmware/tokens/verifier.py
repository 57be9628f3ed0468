"""Which verifier a QR text goes to: `KP1:` phone tokens, `KC1:` printed cards and `HC1:` EU DCCs, as the venue
accepts them.

A venue's `policy.accept` names the kinds it takes. A token of a kind it does
not take is refused as `kind_not_accepted` (so a visitor learns to show the
other one), without being checked further; any other text goes to the KP1
verifier, whose answer for it is `malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.tokens import dcc, kc1, kp1
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.verdict import Reason, Verdict, rejected
_PREFIXES = ((dcc.PREFIX, "DCC"), (kc1.PREFIX, "KC1"), (kp1.PREFIX, "KP1"))


@dataclass
class TokenVerifier:
    kp1: kp1.Kp1Verifier
    dcc: DccVerifier
    kc1: kc1.Kc1Verifier
    accept: tuple[str, ...] = ("KP1", "KC1")

    def verify(self, text: str, now: float) -> Verdict:
        kind = next((k for prefix, k in _PREFIXES if isinstance(text, str) and text.startswith(prefix)), None)
        if kind is not None and kind not in self.accept:
            return rejected(Reason.KIND_NOT_ACCEPTED)
        if kind == "DCC":
            return self.dcc.verify(text, now)
        return self.kc1.verify(text, now) if kind == "KC1" else self.kp1.verify(text, now)
