"""May the door judge tokens at all? Only on a trusted clock and with a trust list in force.

When either is missing the device shows the fault pattern (DESIGN promise 6)
and answers every scan with the fault and its reason: a red would blame the
visitor for the device's state, and a green would be judged on a guess.
Checked on every decision and periodically, so amber shows with no one at the
door; each check first adopts a trust list a technician installed meanwhile.
"""

from __future__ import annotations

from firmware.clock import ClockSync
from firmware.faults import Faults
from firmware.trust import TrustStore

CLOCK_NOT_SYNCHRONISED = "clock_not_synchronised"
NO_TRUST_LIST = "no_trust_list"
TRUST_LIST_EXPIRED = "trust_list_expired"


class Readiness:
    def __init__(self, clock: ClockSync, trust: TrustStore, faults: Faults):
        self.clock, self.trust, self.faults = clock, trust, faults

    def blocking(self, now: float) -> str | None:
        """Bring the faults up to date; return the reason that blocks judgement now, or None."""
        blocked = None
        if self.clock.trusted():
            self.faults.clear("clock")
        else:
            self.faults.set("clock", "system clock not synchronised (no NTP since boot)")
            blocked = CLOCK_NOT_SYNCHRONISED
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
        return blocked
