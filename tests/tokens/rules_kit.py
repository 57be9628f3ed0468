"""Business rules for tests, written here from the rule schema (not copied); `rule` makes one
(lab.dcc_issuer.business_rule)."""

from __future__ import annotations

from lab.dcc_issuer import business_rule as rule

VACCINES = "vaccines-covid-19-names"
# A rule for Germany: the vaccine product must be in the value set (as the EU's VR-EU-0001 says in words).
VACCINE_LISTED = {"if": [{"var": "payload.v.0"},
                         {"in": [{"var": "payload.v.0.mp"}, {"var": f"external.valueSets.{VACCINES}"}]},
                         True]}
# Complete series: doses at least the series' length.
SERIES_COMPLETE = {"if": [{"var": "payload.v.0"}, {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]},
                          True]}


def dose_within(days: int) -> dict:
    """The last dose at most `days` before the validation clock."""
    return {"if": [{"var": "payload.v.0"},
                   {"not-after": [{"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
                                  {"plusTime": [{"var": "payload.v.0.dt"}, days, "day"]}]},
                   True]}


# A venue in Germany, as the e2e tests set it up: only vaccines of the value set.
GERMANY_RULES = [rule("VR-DE-0001", VACCINE_LISTED), rule("VR-DE-0002", SERIES_COMPLETE)]
GERMANY_VALUESETS = {VACCINES: ["EU/1/20/1528", "EU/1/20/1507"]}
