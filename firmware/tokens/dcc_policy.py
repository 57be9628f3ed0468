"""What a venue asks of an EU DCC beyond its being genuine: the `[dcc]` rules of the config.

`tokens.dcc` says whether a certificate is authentic and in date; this says
whether it is enough to enter here: vaccination series complete, old enough
and of a product the venue takes, a negative test recent enough, a recovery
still in its period. Each refusal has its own reason, so the technician and
the visitor's red light mean one thing. The dates are the certificate's own (ISO dates, a test's sample
time), compared with the device's clock in UTC; the name and birth date are
never looked at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from firmware.tokens.verdict import Reason

if TYPE_CHECKING:
    from firmware.config import DccConfig

COVID19 = "840539006"  # SNOMED CT, the disease every DCC entry targets (tg)
NEGATIVE = "260415000"  # SNOMED CT "not detected" (tr)


class _Refused(Exception):
    def __init__(self, reason: Reason) -> None:
        self.reason = reason


def _text(entry: Mapping[Any, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise _Refused(Reason.MALFORMED)
    return value


def _count(entry: Mapping[Any, Any], key: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 100:
        raise _Refused(Reason.MALFORMED)
    return value


def _date(entry: Mapping[Any, Any], key: str) -> dt.date:
    """A date field; some issuers write a whole time where the schema says a date: its date is taken."""
    try:
        return dt.date.fromisoformat(_text(entry, key)[:10])
    except ValueError:
        raise _Refused(Reason.MALFORMED) from None


def _instant(entry: Mapping[Any, Any], key: str) -> float:
    try:
        t = dt.datetime.fromisoformat(_text(entry, key))
    except ValueError:
        raise _Refused(Reason.MALFORMED) from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _vaccination(e: Mapping[Any, Any], rules: "DccConfig", today: dt.date) -> None:
    if rules.vaccines and _text(e, "mp") not in rules.vaccines:
        raise _Refused(Reason.VACCINE_NOT_ACCEPTED)
    if rules.vaccination_complete and _count(e, "dn") < _count(e, "sd"):
        raise _Refused(Reason.SERIES_INCOMPLETE)
    days = (today - _date(e, "dt")).days
    if days < rules.vaccination_min_days:
        raise _Refused(Reason.VACCINATION_TOO_RECENT)
    if rules.vaccination_max_days and days > rules.vaccination_max_days:
        raise _Refused(Reason.VACCINATION_TOO_OLD)


def _test(e: Mapping[Any, Any], rules: "DccConfig", now: float, skew: int) -> None:
    if _text(e, "tr") != NEGATIVE:
        raise _Refused(Reason.TEST_POSITIVE)
    if _text(e, "tt") not in rules.test_types:
        raise _Refused(Reason.TEST_TYPE_NOT_ACCEPTED)
    sampled = _instant(e, "sc")
    if sampled > now + skew:
        raise _Refused(Reason.NOT_YET_VALID)
    if now - sampled > rules.test_max_hours * 3600:
        raise _Refused(Reason.TEST_TOO_OLD)


def _recovery(e: Mapping[Any, Any], rules: "DccConfig", today: dt.date) -> None:
    if not _date(e, "df") <= today <= _date(e, "du"):
        raise _Refused(Reason.RECOVERY_NOT_VALID)
    if rules.recovery_max_days and (today - _date(e, "fr")).days > rules.recovery_max_days:
        raise _Refused(Reason.RECOVERY_NOT_VALID)


def check(kind: str | None, payload: Mapping[Any, Any], rules: "DccConfig", now: float, skew: int = 5) -> Reason | None:
    """None when the DCC (type `kind`, its decoded hcert `payload`) meets the venue's rules, else why not.

    `skew`: seconds a test's sample time may lie ahead of this clock (the venue's policy.skew_s).
    """
    try:
        if kind not in rules.types:
            raise _Refused(Reason.TYPE_NOT_ACCEPTED)
        entries = payload.get(kind)
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], Mapping):
            raise _Refused(Reason.MALFORMED)  # the schema allows exactly one entry
        entry = entries[0]
        if _text(entry, "tg") != COVID19:
            raise _Refused(Reason.TYPE_NOT_ACCEPTED)
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        {"v": lambda: _vaccination(entry, rules, today), "t": lambda: _test(entry, rules, now, skew),
         "r": lambda: _recovery(entry, rules, today)}[kind]()
    except _Refused as refused:
        return refused.reason
    return None
