"""The gate on fakes at its seams (verifier, record store, readiness): green only after the store's commit."""

from __future__ import annotations

import hashlib
import os


from firmware.errors import StorageError
from firmware.faults import Faults
from firmware.gate import Gate
from firmware.leds import patterns
from firmware.store.buffer import SqliteRecordStore, local_day
from firmware.readiness import AUTHORITY_KEY_NOT_LISTED
from firmware.store.records import SealedRecord
from firmware.store.seal import OpeningKey
from firmware.tokens.verdict import Claims, Kind, Reason, Verdict, rejected

NOW = 1_800_000_000


def accepted(kind: str = "KP1") -> Verdict:
    claims = Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=os.urandom(16), kind=kind)
    return Verdict(Kind.ACCEPTED, None, claims, seen_until=NOW + 20)


class Verifier:
    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def verify(self, text: str, now: float) -> Verdict:
        return self.verdict


class Ready:
    def __init__(self, blocked: str | None = None):
        self.blocked = blocked

    def blocking(self, now: float, text: str | None = None) -> str | None:
        return self.blocked


class Store:
    """Records what happened in order; `fail` raises as a full card does, `seen` answers "already recorded"."""

    def __init__(self, events: list, fail: bool = False, seen: bool = False):
        self.events, self.fail, self.seen = events, fail, seen
        self.records = []
        self.days: list[int | None] = []

    def admit(self, cti: bytes, seen_until: int, now: int, make_record, day: int | None = None) -> bool:
        self.days.append(day)
        if self.fail:
            raise StorageError("the card is full")
        if self.seen:
            return False
        self.records.append(make_record())
        self.events.append("committed")
        return True


KEY = OpeningKey.generate().public_key()


def gate(verdict: Verdict, store: Store, events: list, blocked: str | None = None, faults: Faults | None = None,
         authority=lambda now: KEY):
    return Gate(Verifier(verdict), store, authority, "cafe-1", "door-1",
                faults or Faults(), Ready(blocked), on_recorded=lambda: events.append("recorded"))


def test_green_only_after_the_store_committed_the_sealed_record():
    events: list = []
    store = Store(events)
    answer = gate(accepted(), store, events).decide("KP1:…", NOW)
    assert answer.pattern == patterns.for_verdict(Kind.ACCEPTED) and answer.verdict.kind is Kind.ACCEPTED
    assert events == ["committed", "recorded"]
    assert answer.rid == store.records[0].rid and store.records[0].venue == "cafe-1"


def test_a_visit_is_sealed_to_the_key_in_force_at_the_scan_and_without_one_it_is_a_fault_never_green():
    events, asked = [], []
    old, new = KEY, OpeningKey.generate().public_key()
    store = Store(events)

    def in_force(now):
        asked.append(now)
        return new if now >= NOW else old if now >= NOW - 10 else None

    assert gate(accepted(), store, events, authority=in_force).decide("KP1:…", NOW).verdict.kind is Kind.ACCEPTED
    assert gate(accepted(), store, events, authority=in_force).decide("KP1:…", NOW - 5).verdict.kind is Kind.ACCEPTED
    assert [r.kid for r in store.records] == [new.kid, old.kid] and asked == [NOW, NOW - 5]
    answer = gate(accepted(), store, events, authority=in_force).decide("KP1:…", NOW - 11)
    assert (answer.verdict, answer.pattern, answer.fault) == (None, patterns.FAULT, AUTHORITY_KEY_NOT_LISTED)
    assert len(store.records) == 2 and events == ["committed", "recorded"] * 2


def test_a_storage_error_is_a_fault_never_green():
    events, faults = [], Faults()
    answer = gate(accepted(), Store(events, fail=True), events, faults=faults).decide("KP1:…", NOW)
    assert (answer.verdict, answer.pattern, answer.fault) == (None, patterns.FAULT, "storage_failed")
    assert "storage" in faults.active() and events == []


def test_the_next_good_commit_clears_the_storage_fault():
    events, faults = [], Faults()
    faults.set("storage", "the card was full")
    gate(accepted(), Store(events), events, faults=faults).decide("KP1:…", NOW)
    assert "storage" not in faults.active()


def test_a_token_already_recorded_is_already_checked_in_and_nothing_new_is_recorded():
    events: list = []
    answer = gate(accepted(), Store(events, seen=True), events).decide("KP1:…", NOW)
    assert answer.verdict.kind is Kind.ALREADY_CHECKED_IN and answer.rid is None and events == []
    assert answer.pattern == patterns.for_verdict(Kind.ALREADY_CHECKED_IN)


def test_a_rejected_token_never_reaches_the_store():
    events: list = []
    store = Store(events, fail=True)  # it would raise if asked
    answer = gate(rejected(Reason.EXPIRED), store, events).decide("KP1:…", NOW)
    assert answer.verdict.reason is Reason.EXPIRED and answer.pattern == patterns.for_verdict(Kind.REJECTED)


def test_a_device_not_ready_answers_the_fault_without_verifying():
    events: list = []

    class Refusing(Verifier):
        def verify(self, text, now):
            raise AssertionError("verified although the device may not judge")

    g = gate(accepted(), Store(events), events, blocked="no_trust_list")
    g.verifier = Refusing(accepted())
    answer = g.decide("KP1:…", NOW)
    assert (answer.verdict, answer.fault, answer.pattern) == (None, "no_trust_list", patterns.FAULT)


# The gate on the real SQLite store and real sealing: what a visitor is answered over time, and what the authority
# finds in the record.

class Tokens:
    """A verifier: each "KP1:…" text its own token (its id drawn from the text), valid for 15 s, judged at `now`."""

    def verify(self, text: str, now: float) -> Verdict:
        if not text.startswith("KP1:"):
            return rejected(Reason.MALFORMED)
        claims = Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=hashlib.sha256(text.encode()).digest()[:16])
        if now > claims.exp:
            return rejected(Reason.EXPIRED, claims)
        return Verdict(Kind.ACCEPTED, None, claims, seen_until=claims.exp + 5)


class TrustUntil:
    """Readiness: the trust list in force is past its not_after from `not_after` on."""

    def __init__(self, not_after: float):
        self.not_after = not_after

    def blocking(self, now: float, text: str | None = None) -> str | None:
        return "trust_list_expired" if now > self.not_after else None


def real_gate(tmp_path, authority=None, ready=None) -> tuple[Gate, SqliteRecordStore]:
    store = SqliteRecordStore(tmp_path / "visits.db")
    authority = authority or OpeningKey.generate().public_key()
    return Gate(Tokens(), store, lambda now: authority, "cafe-1", "door-1", Faults(), ready or TrustUntil(NOW + 3600)), store


def test_a_token_is_one_visit_however_often_shown_and_each_other_token_is_its_own(tmp_path):
    g, store = real_gate(tmp_path)
    answers = [g.decide(text, NOW + dt) for text, dt in (("KP1:a", 0), ("KP1:a", 5), ("KP1:b", 5), ("KP1:a", 10))]
    assert [(a.label, a.reason, a.verdict.iss) for a in answers] == [
        ("accepted", None, "naver"), ("already_checked_in", None, "naver"), ("accepted", None, "naver"),
        ("already_checked_in", None, "naver")]
    assert [a.rid is not None for a in answers] == [True, False, True, False]
    assert store.depth()[0] == 2
    store.close()


def test_the_token_is_judged_at_the_time_of_the_scan(tmp_path):
    g, store = real_gate(tmp_path)
    assert g.decide("KP1:a", NOW + 15).label == "accepted"
    assert (g.decide("KP1:b", NOW + 16).label, g.decide("KP1:b", NOW + 16).reason) == ("rejected", "expired")
    assert g.decide("not a token", NOW).reason == "malformed"
    store.close()


def test_readiness_is_judged_at_the_time_of_the_scan(tmp_path):
    g, store = real_gate(tmp_path, ready=TrustUntil(NOW + 5))
    assert g.decide("KP1:a", NOW + 5).label == "accepted"
    answer = g.decide("KP1:b", NOW + 6)
    assert (answer.label, answer.reason, answer.pattern) == ("fault", "trust_list_expired", patterns.FAULT)
    store.close()


def test_the_record_opens_for_the_authority_to_the_visit_at_the_second_of_the_scan(tmp_path):
    authority = OpeningKey.generate()
    g, store = real_gate(tmp_path, authority.public_key())
    answer = g.decide("KP1:a", NOW + 0.7)
    [(_, rid, wire)] = store.after(None, 10)
    record = SealedRecord.from_wire(wire)
    assert rid == record.rid == answer.rid and (record.venue, record.device, record.ts) == ("cafe-1", "door-1", NOW)
    visit = record.open(authority)
    assert (visit["iss"], visit["cti"], visit["ts"]) == ("naver", hashlib.sha256(b"KP1:a").digest()[:16], NOW)
    store.close()


def test_the_storage_fault_tells_the_technician_what_the_store_said():
    events, faults = [], Faults()
    gate(accepted(), Store(events, fail=True), events, faults=faults).decide("KP1:…", NOW)
    assert faults.active()["storage"] == "the card is full"


class OnlyFor:
    """Readiness that blocks one text only (a DCC waiting for its lists), and records what it was asked about."""

    def __init__(self, text: str, reason: str):
        self.text, self.reason, self.asked = text, reason, []

    def blocking(self, now: float, text: str | None = None) -> str | None:
        self.asked.append(text)
        return self.reason if text == self.text else None


def test_readiness_is_asked_about_the_text_shown(tmp_path):
    ready = OnlyFor("HC1:pass", "dcc_rules_stale")
    g, _ = real_gate(tmp_path, ready=ready)
    assert (g.decide("HC1:pass", NOW).label, g.decide("HC1:pass", NOW).reason) == ("fault", "dcc_rules_stale")
    assert g.decide("KP1:a", NOW).label == "accepted"
    assert ready.asked == ["HC1:pass", "HC1:pass", "KP1:a"]


def test_an_answer_is_tallied_by_verdict_reason_and_failed_rule():
    events: list = []
    failed = Verdict(Kind.REJECTED, Reason.RULE_FAILED, None, rule="VR-DE-0001")
    assert gate(failed, Store(events), events).decide("HC1:…", NOW).tally == "rejected:rule_failed:VR-DE-0001"
    assert gate(failed, Store(events), events).decide("HC1:…", NOW).rule == "VR-DE-0001"
    assert gate(rejected(Reason.EXPIRED), Store(events), events).decide("KP1:…", NOW).tally == "rejected:expired"
    assert gate(accepted(), Store(events), events).decide("KP1:…", NOW).tally == "accepted"
    blocked = gate(accepted(), Store(events), events, blocked="no_trust_list").decide("KP1:…", NOW)
    assert (blocked.tally, blocked.rule) == ("fault:no_trust_list", None)


def test_only_a_printed_card_is_counted_under_the_local_day():
    events: list = []
    store = Store(events)
    for kind in ("KP1", "KC1", "DCC"):
        gate(accepted(kind), store, events).decide("…", NOW)
    assert store.days == [None, local_day(NOW), None]
