"""The member states' business rules for EU DCCs, run as the EU verifier apps run them.

A rule is the EU gateway's JSON (Identifier, Type, Country, Version,
CertificateType, ValidFrom, ValidTo, EngineVersion, Logic…) with its logic in
CertLogic (tokens.certlogic). The rules, and the value sets they name, travel
in the signed trust list (tokens.trustlist), so they are read here only once
the root's signature holds; they are still read strictly, each under a size
cap, and a rule whose logic CertLogic's validation refuses makes the whole list
refused (the authority's `qrgate trust build` validates the same way first).

At the door, for a certificate of type v, t or r: the Acceptance rules of the
venue's country ([dcc] rules_country) and the Invalidation rules of the
certificate's issuing country apply, of type General or the certificate's own,
valid at the clock (ValidFrom <= now < ValidTo), of each Identifier its highest
Version. Each must evaluate to `true`. A `false`, an evaluation error, or an
EngineVersion of a later major than this engine's is a failure (the EU apps' "fail"
and "open" alike: no green on a rule not passed), named by the rule's
Identifier, never by what the certificate holds. The rule's SchemaVersion is
not compared with the certificate's `ver`.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from firmware import utc
from firmware.tokens import certlogic

MAX_RULE_BYTES = 64 * 1024  # one rule's JSON; the EU's longest are a few kilobytes
CERTIFICATE_TYPES: dict[str | None, str] = {"v": "Vaccination", "t": "Test", "r": "Recovery"}
_IDENTIFIER = re.compile(r"(GR|VR|TR|RR|IR)-[A-Z]{2}-[0-9]{4}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_SEMVER = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
_REQUIRED = ("Identifier", "Type", "Country", "Version", "SchemaVersion", "Engine", "EngineVersion",
             "CertificateType", "Description", "ValidFrom", "ValidTo", "AffectedFields", "Logic")


class RuleError(ValueError):
    """A rule the list may not carry: the message names the rule and why, never a certificate."""


Version = tuple[int, int, int]


@dataclass(frozen=True)
class Rule:
    identifier: str
    type: str  # Acceptance | Invalidation
    country: str
    version: Version
    certificate_type: str  # General | Vaccination | Test | Recovery
    valid_from: float
    valid_to: float
    engine_version: Version
    logic: Any = field(repr=False, compare=False)

    def in_force(self, now: float) -> bool:
        return self.valid_from <= now < self.valid_to


def _semver(rule: Mapping[str, Any], key: str, name: str) -> Version:
    m = _SEMVER.fullmatch(rule[key]) if isinstance(rule[key], str) else None
    if m is None:
        raise RuleError(f"rule {name}: {key} is not a version like 1.0.0")
    return int(m[1]), int(m[2]), int(m[3])


def _time(rule: Mapping[str, Any], key: str, name: str) -> float:
    try:
        t = dt.datetime.fromisoformat(rule[key])
    except (TypeError, ValueError):
        raise RuleError(f"rule {name}: {key} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise RuleError(f"rule {name}: {key} has no time zone")
    return t.timestamp()


def parse_rule(text: str) -> Rule:
    """One rule of the list (its JSON text): read, typed and its logic validated, or RuleError."""
    if len(text.encode()) > MAX_RULE_BYTES:
        raise RuleError("a rule is larger than 64 KiB")
    try:
        rule = json.loads(text)
    except (ValueError, RecursionError):
        raise RuleError("a rule is not JSON") from None
    if not isinstance(rule, dict):
        raise RuleError("a rule is not a JSON object")
    name = rule.get("Identifier")
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise RuleError("a rule's Identifier is not like VR-DE-0001")
    missing = [k for k in _REQUIRED if k not in rule]
    if missing:
        raise RuleError(f"rule {name} lacks {', '.join(missing)}")
    if rule["Type"] not in ("Acceptance", "Invalidation"):
        raise RuleError(f"rule {name}: Type is neither Acceptance nor Invalidation")
    if not isinstance(rule["Country"], str) or _COUNTRY.fullmatch(rule["Country"]) is None:
        raise RuleError(f"rule {name}: Country is not an ISO 3166 alpha-2 code")
    if rule["CertificateType"] not in ("General", *CERTIFICATE_TYPES.values()):
        raise RuleError(f"rule {name}: CertificateType is not General, Vaccination, Test or Recovery")
    if rule["Engine"] != "CERTLOGIC":
        raise RuleError(f"rule {name}: Engine is not CERTLOGIC")
    problems = certlogic.validate(rule["Logic"])
    if problems:
        raise RuleError(f"rule {name}: its Logic is not valid CertLogic: {problems[0]}")
    return Rule(name, rule["Type"], rule["Country"], _semver(rule, "Version", name), rule["CertificateType"],
                _time(rule, "ValidFrom", name), _time(rule, "ValidTo", name),
                _semver(rule, "EngineVersion", name), rule["Logic"])


ENGINE_MAJOR = int(certlogic.ENGINE_VERSION.split(".")[0])  # a rule for a later major fails closed


def plain(value: object) -> object:
    """A decoded CBOR payload as the JSON a rule reads: text keys only, and what JSON has not (bytes, tags)
    as null. Its recursion is bounded by the DCC reader's own depth cap (tokens.dcc.MAX_DEPTH)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return None


@dataclass(frozen=True)
class RuleSet:
    """The rules and value sets one trust list carries."""

    rules: tuple[Rule, ...] = ()
    valuesets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @functools.cached_property
    def _value_sets(self) -> dict[str, list[str]]:
        """The value sets as the rules read them (CertLogic's arrays), built once per list, not per scan:
        evaluation only reads its data."""
        return {k: list(v) for k, v in self.valuesets.items()}

    def countries(self) -> set[str]:
        """The countries whose Acceptance rules the set carries."""
        return {r.country for r in self.rules if r.type == "Acceptance"}

    def applicable(self, country: str, issuer_country: str | None, kind: str | None, now: float) -> list[Rule]:
        """The rules a certificate of `kind` is held to at `now`, by Identifier (see the module's docstring)."""
        chosen: dict[str, Rule] = {}
        for rule in self.rules:
            owner = country if rule.type == "Acceptance" else issuer_country
            if (rule.country == owner and rule.certificate_type in ("General", CERTIFICATE_TYPES.get(kind))
                    and rule.in_force(now)):
                held = chosen.get(rule.identifier)  # of equal versions, the first listed
                if held is None or rule.version > held.version:
                    chosen[rule.identifier] = rule
        return [chosen[k] for k in sorted(chosen)]

    def first_failure(self, country: str, kind: str | None, payload: Mapping[Any, Any], *, issuer_country: str | None,
                      iat: int, exp: int, kid: bytes | None, now: float) -> str | None:
        """The Identifier of the first applicable rule the certificate does not pass, or None."""
        rules = self.applicable(country, issuer_country, kind, now)
        if not rules:
            return None
        data = {"payload": plain(payload), "external": {
            "valueSets": self._value_sets,
            "validationClock": utc.iso(now), "countryCode": country, "issuerCountryCode": issuer_country or "",
            "iat": utc.iso(iat), "exp": utc.iso(exp), "kid": base64.b64encode(kid or b"").decode(), "region": ""}}
        for rule in rules:
            try:
                if rule.engine_version[0] > ENGINE_MAJOR or certlogic.evaluate(rule.logic, data) is not True:
                    return rule.identifier
            except certlogic.CertLogicError:
                return rule.identifier
        return None


def rule_set(texts: Iterable[str], valuesets: Mapping[str, Iterable[str]]) -> RuleSet:
    """The set a trust list carries, every rule parsed (RuleError for the first one that cannot be)."""
    rules = tuple(parse_rule(t) for t in texts)
    return RuleSet(rules, {k: tuple(v) for k, v in valuesets.items()})


class Carrier(Protocol):
    """What carries the rules: the trust list in force (tokens.trustlist.TrustList)."""

    @property
    def seq(self) -> int: ...
    @property
    def issued_at(self) -> int: ...
    @property
    def rules(self) -> RuleSet: ...


@dataclass(frozen=True)
class RulesInForce:
    """readiness.DccList for the business rules: DCCs wait while the trust list in force carries no
    rules for the venue's country, or was issued longer ago than the rules may be trusted for (the EU apps
    refuse to verify on rules a day old). Without a trust list the trust list's own fault stands."""

    trust: Callable[[], Carrier | None]
    country: str
    max_age_s: int
    fault: str = "dcc_rules"

    def problem(self, now: float) -> tuple[str, str] | None:
        current = self.trust()
        if not self.country or current is None:
            return None
        if self.country not in current.rules.countries():
            return "dcc_rules_missing", (f"the trust list (seq {current.seq}) carries no business rules for "
                                         f"{self.country}")
        age = now - current.issued_at
        if age > self.max_age_s:
            return "dcc_rules_stale", (f"the business rules (trust list seq {current.seq}) were issued "
                                       f"{age // 3600:.0f} h ago, over dcc.max_list_age_h")
        return None
