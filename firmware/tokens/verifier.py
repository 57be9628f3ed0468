"""Which verifier a QR text goes to: `KP1:` entry tokens and `HC1:` EU DCCs, as the venue accepts them.

A venue's `policy.accept` names the kinds it takes. A token of a kind it does
not take is refused as `kind_not_accepted` (so a visitor learns to show the
other one), without being checked further; any other text goes to the KP1
verifier, whose answer for it is `malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.tokens import dcc, kp1
from firmware.tokens.dcc_verifier import DccVerifier
from firmware.tokens.verdict import Reason, Verdict, rejected

KINDS = ("KP1", "DCC")


@dataclass
class TokenVerifier:
    kp1: kp1.Kp1Verifier
    dcc: DccVerifier
    accept: tuple[str, ...] = ("KP1",)

    def verify(self, text: str, now: float) -> Verdict:
        kind = "DCC" if isinstance(text, str) and text.startswith(dcc.PREFIX) else "KP1"
        if kind not in self.accept and isinstance(text, str) and text.startswith((dcc.PREFIX, kp1.PREFIX)):
            return rejected(Reason.KIND_NOT_ACCEPTED)
        return self.dcc.verify(text, now) if kind == "DCC" else self.kp1.verify(text, now)
