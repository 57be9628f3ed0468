"""May the door judge tokens at all? Only on a clock it may believe, with a trust list in force that
names an authority key valid now, to seal visits to. And may it judge an EU DCC? Only with the lists
the venue has asked DCCs to be judged by (business rules, revocation) in force and fresh.

When any is missing the device shows the fault pattern (DESIGN promise 6)
and answers every scan with the fault and its reason: a red would blame the
visitor for the device's state, and a green would be judged on a guess or
sealed to a key the health authority never vouched for. Checked on every
decision and periodically, so amber shows with no one at the door; each check
first adopts a trust list a technician installed meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from firmware.clock import ClockGuard
from firmware.faults import Faults
from firmware.tokens import dcc
from firmware.trust import TrustStore

NO_TRUST_LIST = "no_trust_list"
TRUST_LIST_EXPIRED = "trust_list_expired"
AUTHORITY_KEY_NOT_LISTED = "authority_key_not_listed"


class DccList(Protocol):
    """A list EU DCCs are judged by beyond the trust list's signers (tokens.dcc_rules, revocation)."""

    @property
    def fault(self) -> str:
        """The fault's name while it is missing or stale."""

    def problem(self, now: float) -> tuple[str, str] | None:
        """(the reason DCCs get, the fault's message) when DCCs may not be judged by it now, else None."""


class Readiness:
    def __init__(self, clock: ClockGuard, trust: TrustStore, faults: Faults, dcc_lists: Sequence[DccList] = ()):
        self.clock, self.trust, self.faults = clock, trust, faults
        self.dcc_lists = tuple(dcc_lists)
        self.clock_problem: str | None = None  # from the last check: purging waits while there is one

    def blocking(self, now: float, text: str | None = None) -> str | None:
        """Bring the faults up to date; return the reason that blocks judgement now (of `text`, when given: a
        DCC also waits for its lists, a KP1 token does not), or None."""
        self.clock_problem = blocked = self.clock.problem(now)
        if blocked is None:
            self.faults.clear("clock")
        else:
            self.faults.set("clock", self.clock.describe(blocked))
        self.trust.refresh()
        current = self.trust.current()
        if current is None:
            self.faults.set("trust_list", "no trust list installed")
            blocked = blocked or NO_TRUST_LIST
        elif current.expired(now):
            self.faults.set("trust_list", f"trust list seq {current.seq} is past its not_after")
            blocked = blocked or TRUST_LIST_EXPIRED
        else:
            self.faults.clear("trust_list")
        if current is not None and current.sealing_key(now) is None:
            self.faults.set("authority_key", f"the trust list (seq {current.seq}) names no authority key valid now "
                                             "to seal visits to")
            blocked = blocked or AUTHORITY_KEY_NOT_LISTED
        else:
            self.faults.clear("authority_key")
        for lst in self.dcc_lists:
            problem = lst.problem(now)
            if problem is None:
                self.faults.clear(lst.fault)
                continue
            self.faults.set(lst.fault, problem[1])
            if text is not None and text.startswith(dcc.PREFIX):
                blocked = blocked or problem[0]
        return blocked
