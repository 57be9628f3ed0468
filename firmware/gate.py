"""The decision at the door: verify the token, make the visit durable, choose the answer.

Green comes only from here and only after the store has committed the sealed
record (or found the token already recorded): DESIGN promise 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.leds import patterns
from firmware.leds.patterns import Pattern
from firmware.readiness import AUTHORITY_KEY_NOT_LISTED
from firmware.store.buffer import local_day
from firmware.store.records import SealedRecord, Visit
from firmware.store.seal import SealingKey
from firmware.tokens.verdict import Kind, Verdict

logger = logging.getLogger(__name__)


class Verifier(Protocol):
    def verify(self, text: str, now: float) -> Verdict:
        """A verdict for any input; never raises on bad input (tokens.verifier.TokenVerifier)."""


class VisitStore(Protocol):
    def admit(self, cti: bytes, seen_until: int, now: int, make_record: Callable[[], SealedRecord],
              day: int | None = None) -> bool:
        """True for a new visit, False for a token already seen; returns only once durable, else raises
        StorageError (store.buffer.SqliteRecordStore). A new visit with a `day` is counted under it."""


class Ready(Protocol):
    def blocking(self, now: float, text: str | None = None) -> str | None:
        """The reason the device may not judge now (this text), or None (readiness.Readiness)."""


@dataclass(frozen=True)
class Answer:
    verdict: Verdict | None  # None: no verdict could be given (a fault)
    pattern: Pattern
    fault: str | None = None
    rid: bytes | None = None  # the record a new visit was stored as: random, on the wire in clear anyway

    @property
    def label(self) -> str:
        return self.verdict.kind.value if self.verdict else "fault"

    @property
    def reason(self) -> str | None:
        if self.verdict is None:
            return self.fault
        return self.verdict.reason.value if self.verdict.reason else None

    @property
    def rule(self) -> str | None:
        return self.verdict.rule if self.verdict else None

    @property
    def tally(self) -> str:
        """What status counts it under: the verdict, its reason, and a failed business rule's Identifier."""
        return ":".join(part for part in (self.label, self.reason, self.rule) if part)


class Gate:
    def __init__(
        self,
        verifier: Verifier,
        store: VisitStore,
        authority: Callable[[float], SealingKey | None],
        venue: str,
        device: str,
        faults: Faults,
        readiness: Ready,
        on_recorded: Callable[[], None] = lambda: None,
    ):
        self.verifier, self.store, self.authority = verifier, store, authority
        self.venue, self.device = venue, device
        self.faults, self.readiness = faults, readiness
        self.on_recorded = on_recorded

    def decide(self, text: str, now: float) -> Answer:
        blocked = self.readiness.blocking(now, text)
        if blocked is not None:
            return Answer(None, patterns.FAULT, blocked)
        verdict = self.verifier.verify(text, now)
        if verdict.kind is not Kind.ACCEPTED:
            return Answer(verdict, patterns.for_verdict(verdict.kind))
        claims = verdict.claims
        assert claims is not None and verdict.seen_until is not None
        key = self.authority(now)  # the trust list's current key (readiness has checked there is one)
        if key is None:  # a list without one replaced it since
            return Answer(None, patterns.FAULT, AUTHORITY_KEY_NOT_LISTED)
        sealed: list[SealedRecord] = []

        def make_record() -> SealedRecord:
            sealed.append(Visit.of(claims, self.venue, self.device, int(now)).seal(key))
            return sealed[-1]

        try:
            new = self.store.admit(claims.seen_key, seen_until=verdict.seen_until, now=int(now),
                                   make_record=make_record, day=local_day(now) if claims.kind == "KC1" else None)
        except StorageError as exc:
            self.faults.set("storage", str(exc))
            return Answer(None, patterns.FAULT, "storage_failed")
        self.faults.clear("storage")
        if not new:
            verdict = Verdict(Kind.ALREADY_CHECKED_IN, None, claims)
            return Answer(verdict, patterns.for_verdict(verdict.kind))
        self.on_recorded()
        return Answer(verdict, patterns.for_verdict(verdict.kind), rid=sealed[-1].rid)
