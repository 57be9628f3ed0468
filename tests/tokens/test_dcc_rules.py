"""Business rules (tokens.dcc_rules): read strictly, chosen as the EU apps choose them, failed by name."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from firmware.tokens import dcc_rules
from firmware.tokens.dcc_rules import RuleError, RuleSet, RulesInForce, parse_rule, rule_set
from rules_kit import SERIES_COMPLETE, VACCINE_LISTED, VACCINES, dose_within, rule

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC).timestamp()
COMIRNATY, OTHER = "EU/1/20/1528", "Sputnik-V"


def vaccination(mp: str = COMIRNATY, dn: int = 2, sd: int = 2, dt_: str = "2026-11-01") -> dict:
    return {"ver": "1.3.0", "dob": "1990-01-01", "nam": {"fn": "Doe"},
            "v": [{"tg": "840539006", "mp": mp, "dn": dn, "sd": sd, "dt": dt_, "ci": "URN:UVCI:01:DE:X"}]}


def failure(rules: RuleSet, payload: dict, country: str = "DE", kind: str = "v", issuer: str | None = "FR",
            now: float = NOW) -> str | None:
    return rules.first_failure(country, kind, payload, issuer_country=issuer, iat=int(now) - 3600,
                               exp=int(now) + 86400, kid=b"\x01" * 8, now=now)


GERMANY = rule_set([rule("VR-DE-0001", VACCINE_LISTED), rule("VR-DE-0002", SERIES_COMPLETE)],
                   {VACCINES: [COMIRNATY]})


def test_a_certificate_passing_every_rule_of_the_country_passes():
    assert failure(GERMANY, vaccination()) is None


@pytest.mark.parametrize("payload, failed", [
    (vaccination(mp=OTHER), "VR-DE-0001"),
    (vaccination(dn=1), "VR-DE-0002"),
    (vaccination(mp=OTHER, dn=1), "VR-DE-0001"),  # the first by Identifier
])
def test_a_failed_rule_is_named_by_its_identifier(payload, failed):
    assert failure(GERMANY, payload) == failed


def test_the_value_sets_are_what_the_rules_read():
    assert failure(rule_set([rule("VR-DE-0001", VACCINE_LISTED)], {VACCINES: [OTHER]}), vaccination(mp=OTHER)) is None
    assert failure(rule_set([rule("VR-DE-0001", VACCINE_LISTED)], {}), vaccination()) == "VR-DE-0001"


def test_the_validation_clock_is_the_time_judged_at():
    rules = rule_set([rule("VR-DE-0003", dose_within(30))], {})
    assert failure(rules, vaccination(dt_="2026-11-10")) is None
    assert failure(rules, vaccination(dt_="2026-11-10"), now=NOW + 40 * 86400) == "VR-DE-0003"


def test_only_the_venues_acceptance_rules_and_the_issuers_invalidation_rules_apply():
    rules = rule_set([
        rule("VR-FR-0001", False),  # France's acceptance rule: a venue in Germany does not apply it
        rule("IR-DE-0001", False, type="Invalidation"),  # Germany invalidates its own certificates
        rule("IR-FR-0001", False, type="Invalidation"),
    ], {})
    assert failure(rules, vaccination(), issuer="IT") is None
    assert failure(rules, vaccination(), issuer="FR") == "IR-FR-0001"
    assert failure(rules, vaccination(), issuer="DE") == "IR-DE-0001"
    assert failure(rules, vaccination(), country="FR", issuer="IT") == "VR-FR-0001"
    assert failure(rules, vaccination(), issuer=None) is None


@pytest.mark.parametrize("certificate_type, kinds_held", [
    ("General", "vtr"), ("Vaccination", "v"), ("Test", "t"), ("Recovery", "r")])
def test_a_rule_applies_to_its_certificate_type_or_to_all(certificate_type, kinds_held):
    rules = rule_set([rule("GR-DE-0001", False, certificate_type=certificate_type)], {})
    for kind in "vtr":
        assert (failure(rules, vaccination(), kind=kind) == "GR-DE-0001") is (kind in kinds_held), kind


def test_a_rule_applies_from_its_valid_from_until_before_its_valid_to():
    rules = rule_set([rule("VR-DE-0001", False, valid_from="2026-12-07T12:00:00Z",
                           valid_to="2026-12-08T12:00:00+00:00")], {})
    assert failure(rules, vaccination(), now=NOW - 1) is None
    assert failure(rules, vaccination(), now=NOW) == "VR-DE-0001"
    assert failure(rules, vaccination(), now=NOW + 86400 - 1) == "VR-DE-0001"
    assert failure(rules, vaccination(), now=NOW + 86400) is None


def test_of_one_identifier_the_highest_version_in_force_applies():
    rules = rule_set([rule("VR-DE-0001", True, version="1.0.0"), rule("VR-DE-0001", False, version="1.10.0"),
                      rule("VR-DE-0001", True, version="1.9.0"),
                      rule("VR-DE-0001", True, version="2.0.0", valid_from="2027-01-01T00:00:00Z")], {})
    assert [r.version for r in rules.applicable("DE", None, "v", NOW)] == [(1, 10, 0)]
    assert failure(rules, vaccination()) == "VR-DE-0001"
    assert failure(rules, vaccination(), now=dt.datetime(2027, 1, 2, tzinfo=dt.UTC).timestamp()) is None


def test_a_rule_for_a_later_engine_fails_closed_and_an_earlier_one_runs():
    later = rule_set([rule("VR-DE-0001", True, engine_version="2.0.0")], {})
    earlier = rule_set([rule("VR-DE-0001", True, engine_version="0.7.5")], {})
    assert failure(later, vaccination()) == "VR-DE-0001"
    assert failure(earlier, vaccination()) is None


@pytest.mark.parametrize("logic, failed", [
    ({"===": [{"var": "payload.v.0.dn"}, 2]}, None),  # true: passes
    (1, "VR-DE-0001"),  # truthy but not true: the EU apps pass only `true`
    ({"var": "payload.v.0.mp"}, "VR-DE-0001"),  # a truthy string
    ({"in": [{"var": "payload.v.0.mp"}, {"var": "payload.nam"}]}, "VR-DE-0001"),  # an error: `in` on a non-array
])
def test_only_true_passes(logic, failed):
    assert failure(rule_set([rule("VR-DE-0001", logic)], {}), vaccination()) == failed


def test_the_rules_read_the_external_parameters_the_eu_apps_give():
    seen = {"and": [
        {"===": [{"var": "external.countryCode"}, "DE"]},
        {"===": [{"var": "external.issuerCountryCode"}, "FR"]},
        {"===": [{"var": "external.kid"}, "AQEBAQEBAQE="]},
        {"===": [{"var": "external.validationClock"}, "2026-12-07T12:00:00Z"]},
        {"===": [{"var": "external.iat"}, "2026-12-07T11:00:00Z"]},
        {"===": [{"var": "external.exp"}, "2026-12-08T12:00:00Z"]},
        {"===": [{"var": "external.region"}, ""]},
    ]}
    assert failure(rule_set([rule("GR-DE-0001", seen, certificate_type="General")], {}), vaccination()) is None


def test_no_issuing_country_and_no_kid_are_empty_texts_to_the_rules():
    empty = {"and": [{"===": [{"var": "external.issuerCountryCode"}, ""]}, {"===": [{"var": "external.kid"}, ""]}]}
    rules = rule_set([rule("GR-DE-0001", empty, certificate_type="General")], {})
    assert rules.first_failure("DE", "v", vaccination(), issuer_country=None, iat=int(NOW), exp=int(NOW) + 1,
                               kid=None, now=NOW) is None
    assert failure(rules, vaccination()) == "GR-DE-0001"  # with both given, they are not empty


def test_of_two_rules_of_one_version_the_first_listed_applies():
    assert failure(rule_set([rule("VR-DE-0001", True), rule("VR-DE-0001", False)], {}), vaccination()) is None
    assert failure(rule_set([rule("VR-DE-0001", False), rule("VR-DE-0001", True)], {}), vaccination()) == "VR-DE-0001"


def test_a_payload_is_given_to_the_rules_as_json():
    assert dcc_rules.plain({"a": [b"\x00", 1, 2.5, None, True], 7: "int key", "m": {"k": ("v", {1.5: 1})}}) == \
        {"a": [None, 1, 2.5, None, True], "m": {"k": ["v", {}]}}


# Reading a rule: every malformation refused by name, before anything runs.

GOOD = json.loads(rule("VR-DE-0001", VACCINE_LISTED))


@pytest.mark.parametrize("change, message", [
    (lambda r: "not json", "a rule is not JSON"),
    (lambda r: "[" * 10_000, "a rule is not JSON"),  # nested past the JSON reader's recursion
    (lambda r: "[]", "a rule is not a JSON object"),
    (lambda r: {**r, "Identifier": "VR-de-0001"}, "a rule's Identifier is not like VR-DE-0001"),
    (lambda r: {**r, "Identifier": 7}, "a rule's Identifier is not like VR-DE-0001"),
    (lambda r: {k: v for k, v in r.items() if k not in ("ValidTo", "Logic")}, "rule VR-DE-0001 lacks ValidTo, Logic"),
    (lambda r: {**r, "Type": "acceptance"}, "rule VR-DE-0001: Type is neither Acceptance nor Invalidation"),
    (lambda r: {**r, "Country": "DEU"}, "rule VR-DE-0001: Country is not an ISO 3166 alpha-2 code"),
    (lambda r: {**r, "Country": 49}, "rule VR-DE-0001: Country is not an ISO 3166 alpha-2 code"),
    (lambda r: {**r, "CertificateType": "Vax"},
     "rule VR-DE-0001: CertificateType is not General, Vaccination, Test or Recovery"),
    (lambda r: {**r, "Engine": "JSONLOGIC"}, "rule VR-DE-0001: Engine is not CERTLOGIC"),
    (lambda r: {**r, "Version": "1.0"}, "rule VR-DE-0001: Version is not a version like 1.0.0"),
    (lambda r: {**r, "Version": 1}, "rule VR-DE-0001: Version is not a version like 1.0.0"),
    (lambda r: {**r, "EngineVersion": "01.0.0"}, "rule VR-DE-0001: EngineVersion is not a version like 1.0.0"),
    (lambda r: {**r, "ValidFrom": "2021-06-01T00:00:00"}, "rule VR-DE-0001: ValidFrom has no time zone"),
    (lambda r: {**r, "ValidFrom": "soon"}, "rule VR-DE-0001: ValidFrom is not an ISO 8601 time"),
    (lambda r: {**r, "ValidTo": None}, "rule VR-DE-0001: ValidTo is not an ISO 8601 time"),
    (lambda r: {**r, "ValidTo": "2030-06-01T00:00"}, "rule VR-DE-0001: ValidTo has no time zone"),
    (lambda r: {**r, "AffectedFields": ["x" * dcc_rules.MAX_RULE_BYTES]}, "a rule is larger than 64 KiB"),
])
def test_a_malformed_rule_is_refused_with_its_reason(change, message):
    changed = change(dict(GOOD))
    text = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(RuleError) as refused:
        parse_rule(text)
    assert str(refused.value) == message


def test_a_rule_whose_logic_is_not_certlogic_is_refused_naming_the_first_problem():
    from firmware.tokens import certlogic

    logic = {"and": [{"eval": ["rm -rf"]}, {"var": 7}]}
    with pytest.raises(RuleError) as refused:
        parse_rule(rule("VR-DE-0001", logic))
    assert str(refused.value) == f"rule VR-DE-0001: its Logic is not valid CertLogic: {certlogic.validate(logic)[0]}"


def test_a_rule_of_exactly_64_kib_is_read():
    text = rule("VR-DE-0001", True, AffectedFields=[""])
    exact = rule("VR-DE-0001", True, AffectedFields=["x" * (dcc_rules.MAX_RULE_BYTES - len(text.encode()))])
    assert len(exact.encode()) == dcc_rules.MAX_RULE_BYTES and parse_rule(exact).identifier == "VR-DE-0001"


def test_a_rule_is_read_whole():
    r = parse_rule(rule("VR-DE-0001", VACCINE_LISTED, version="1.2.3", engine_version="1.3.0"))
    assert (r.identifier, r.type, r.country, r.version, r.certificate_type, r.engine_version) == \
        ("VR-DE-0001", "Acceptance", "DE", (1, 2, 3), "Vaccination", (1, 3, 0))
    assert (r.valid_from, r.valid_to, r.logic) == (
        dt.datetime(2021, 6, 1, tzinfo=dt.UTC).timestamp(), dt.datetime(2030, 6, 1, tzinfo=dt.UTC).timestamp(),
        VACCINE_LISTED)
    assert GERMANY.countries() == {"DE"}
    assert rule_set([rule("IR-FR-0001", True, type="Invalidation")], {}).countries() == set()


# Freshness: the readiness.DccList of the rules.

class Listed:
    def __init__(self, issued_at: float, rules: RuleSet = GERMANY, seq: int = 7):
        self.issued_at, self.rules, self.seq = issued_at, rules, seq


@pytest.mark.parametrize("country, current, problem", [
    ("", Listed(NOW - 10 * 86400), None),  # no country chosen: no rules asked for
    ("DE", None, None),  # no trust list: its own fault stands
    ("DE", Listed(NOW - 3600), None),
    ("DE", Listed(NOW - 24 * 3600), None),  # exactly the age allowed
    ("DE", Listed(NOW - 24 * 3600 - 1), "dcc_rules_stale"),
    ("FR", Listed(NOW), "dcc_rules_missing"),
])
def test_rules_missing_or_older_than_allowed_are_a_problem(country, current, problem):
    got = RulesInForce(lambda: current, country, 24 * 3600).problem(NOW)
    assert (got[0] if got else None) == problem


def test_the_freshness_fault_says_which_list_and_why():
    assert RulesInForce(lambda: Listed(NOW, seq=9), "FR", 3600).problem(NOW) == (
        "dcc_rules_missing", "the trust list (seq 9) carries no business rules for FR")
    assert RulesInForce(lambda: Listed(NOW - 30 * 3600, seq=9), "DE", 3600).problem(NOW) == (
        "dcc_rules_stale", "the business rules (trust list seq 9) were issued 30 h ago, over dcc.max_list_age_h")
    assert "issued 29 h ago" in RulesInForce(lambda: Listed(NOW - 30 * 3600 + 1), "DE", 3600).problem(NOW)[1]
    assert RulesInForce(lambda: None, "DE", 3600).fault == "dcc_rules"
