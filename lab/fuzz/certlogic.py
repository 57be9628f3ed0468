"""`qrgate fuzz certlogic`: mutated rules and certificate data against `tokens.certlogic`.

An input is CBOR `[expression, data]` (CBOR so that the data can hold what a certificate's payload can:
bytes, integer keys, floats, big integers, tags decoded to sets, decimals, dates; and so that a finding is
a file to replay). Seeds are rules of the kind the member states write (a vaccination's product, doses and
age, a test's window, a recovery's validity, a UCI's country, a fold over the vaccinations, a minor's birth
date) on a vaccination, a test and a recovery certificate, each with the answer the specification gives.
Mutants change the seeds: an expression node replaced by a random expression (any operator, an unknown
one, too few or too many operands, wrong literals) or a hostile literal, an operator swapped, nesting
around the cap, var paths that are not there; a data value replaced by a hostile one (strings of 64 KB,
arrays of 20,000 items, nesting 300 deep, values of every kind, impossible dates); or both.

A finding is any exception from `validate`, any but CertLogicError from `evaluate`, and (the oracle) an
evaluation refused for a reason that is the expression's form while `validate` found nothing wrong with it.
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from functools import partial

import cbor2

from firmware.tokens import certlogic
from firmware.tokens.certlogic import CertLogicError
from lab.fuzz.engine import Judgement, Seed, Target

MAX_VERIFY_US = 1_000_000.0  # the work cap holds an evaluation to ~0.1 s here: ten times that is a finding
# Reasons of an expression's form, which `validate` must have named (the module's first list).
STRUCTURAL = frozenset({"not_an_expression", "non_integer_number", "not_one_key", "operands_not_array",
                        "unknown_operation", "var_path_not_string", "invalid_var_path", "wrong_arity",
                        "amount_not_integer", "unknown_time_unit", "index_not_integer", "too_deep"})
OPERATORS = ("if", "===", "in", "+", "and", "!", "<", ">", "<=", ">=", "after", "before", "not-after",
             "not-before", "plusTime", "reduce", "extractFromUVCI", "dccDateOfBirth")
_ARITY = {"if": 3, "===": 2, "in": 2, "+": 2, "and": 2, "!": 1, "plusTime": 3, "reduce": 3, "extractFromUVCI": 2,
          "dccDateOfBirth": 1}  # the comparisons: 2 (or 3)
_UNKNOWN = ("var ", "or", "==", "map", "all", "", "IF", "plustime", "some", "missing")
_PATHS = ("", "payload", "payload.v", "payload.v.0", "payload.v.0.dt", "payload.v.0.dn", "payload.v.0.mp",
          "payload.t.0.sc", "payload.r.0.du", "payload.dob", "payload.nam.fn", "external.validationClock",
          "external.valueSets.vaccines", "accumulator", "current", "current.dn", "0", "1", "x.", "..", ".",
          "payload.v.999999999", "payload.v.-1", "payload.v.0.dn.x", "payload.v.00", "a." * 40 + "b")
_DATES = ("2021-06-01", "2021", "2020-02", "2020-02-29", "2021-02-29", "2021-13-01", "2021-06-00", "0000-01-01",
          "9999-12-31T23:59:59.999-23:59", "2021-06-01T00:00:00Z", "2021-06-01T12:00:00+1", "2021-06-01T12:00:00+130",
          "2021-06-01T12:00:00.123456789+23:59", "2021-06-01T24:00:00", "2021-06-01T12:00", "2021-06-01 12:00:00",
          "٢٠٢١-06-01", "1990-XX-XX", "")
_LITERALS = (0, 1, -1, 2, 17, 2.0, -0.0, 0.5, float("nan"), float("inf"), 10**30, 2**64, -(2**63), 10**300, True,
             False, None, "", "x", "0", "true", "URN:UVCI:01:NL:1/2#3", "a::c/#/f", "EU/1/20/1528", *_DATES, [], [1, "a"],
             {}, {"a": 1}, b"x")
_AMOUNTS = (0, 1, -1, 14, 365, -18, 2.0, 0.5, 100_000_000, 100_000_001, 2_400_000_001, 10**6, 10**4000, "1", None, True)
_UNITS = ("year", "month", "day", "hour", "days", "week", "", None, 1, ["day"])

CLOCK = "2021-07-01T12:00:00Z"
_EXTERNAL = {"validationClock": CLOCK, "countryCode": "NL",
             "valueSets": {"vaccines": ["EU/1/20/1528", "EU/1/20/1507"], "tests": ["LP6464-4", "LP217198-3"]}}
VACCINATION = {"payload": {"ver": "1.3.0", "dob": "1990-05", "nam": {"fn": "Mustermann", "gn": "Erika"}, "v": [
    {"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2,
     "dt": "2021-06-01", "co": "DE", "is": "Robert Koch-Institut", "ci": "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W"}]},
    "external": _EXTERNAL}
TEST = {"payload": {"ver": "1.3.0", "dob": "2005", "nam": {"fn": "Jansen"}, "t": [
    {"tg": "840539006", "tt": "LP6464-4", "sc": "2021-07-01T08:00:00+02:00", "tr": "260415000", "co": "NL",
     "ci": "URN:UVCI:01:NL:ABC/123"}]}, "external": _EXTERNAL}
RECOVERY = {"payload": {"ver": "1.3.0", "dob": "1980-01-31", "r": [
    {"tg": "840539006", "fr": "2021-01-10", "df": "2021-01-20", "du": "2021-07-09", "co": "FR",
     "ci": "URN:UVCI:01:FR:T5DWTJYS4ZR8#4"}]}, "external": _EXTERNAL}


def _var(path: str) -> dict:
    return {"var": path}


def _day(path: str, amount: int = 0, unit: str = "day") -> dict:
    return {"plusTime": [_var(path), amount, unit]}


def _only_if(field: str, check: object) -> dict:
    """A rule the member states write: the check when the certificate holds that entry, else passed."""
    return {"if": [_var(f"payload.{field}.0"), check, True]}


RULES = (  # (expression, data, the answer the specification gives)
    (_only_if("v", {"===": [_var("payload.v.0.tg"), "840539006"]}), VACCINATION, "true"),
    (_only_if("v", {"in": [_var("payload.v.0.mp"), _var("external.valueSets.vaccines")]}), VACCINATION, "true"),
    (_only_if("v", {">=": [_var("payload.v.0.dn"), _var("payload.v.0.sd")]}), VACCINATION, "true"),
    (_only_if("v", {"not-before": [_day("external.validationClock"), _day("payload.v.0.dt", 14)]}), VACCINATION,
     "true"),
    (_only_if("v", {"not-after": [_day("payload.v.0.dt", 14), _day("external.validationClock"),
                                  _day("payload.v.0.dt", 270)]}), VACCINATION, "true"),
    (_only_if("v", {"before": [_day("payload.v.0.dt", 1, "month"), _day("external.validationClock", -1, "year")]}),
     VACCINATION, "false"),
    (_only_if("t", {"before": [_day("payload.t.0.sc", 0, "hour"), _day("external.validationClock", 0, "hour"),
                               _day("payload.t.0.sc", 72, "hour")]}), TEST, "true"),
    (_only_if("t", {"and": [{"===": [_var("payload.t.0.tr"), "260415000"]},
                            {"in": [_var("payload.t.0.tt"), _var("external.valueSets.tests")]}]}), TEST, "true"),
    (_only_if("r", {"not-after": [_day("payload.r.0.df"), _day("external.validationClock"), _day("payload.r.0.du")]}),
     RECOVERY, "true"),
    (_only_if("r", {"after": [_day("external.validationClock"), _day("payload.r.0.fr", 180)]}), RECOVERY, "false"),
    ({"after": [{"dccDateOfBirth": [_var("payload.dob")]}, _day("external.validationClock", -18, "year")]}, TEST,
     "true"),
    ({"after": [{"dccDateOfBirth": [_var("payload.dob")]}, _day("external.validationClock", -18, "year")]},
     VACCINATION, "false"),
    (_only_if("v", {"===": [{"extractFromUVCI": [_var("payload.v.0.ci"), 0]}, "01DE"]}), VACCINATION, "true"),
    (_only_if("t", {"!": [{"in": [{"extractFromUVCI": [_var("payload.t.0.ci"), 1]}, ["XX", "YY"]]}]}), TEST, "true"),
    ({"reduce": [_var("payload.v"), {"+": [_var("accumulator"), {"if": [{">=": [_var("current.dn"), 2]}, 1, 0]}]},
                 0]}, VACCINATION, "value"),
    ({"reduce": [_var("payload.v"), _var("current"), 0]}, TEST, "value"),
    ({"if": [_var("payload.v"), "v", {"if": [_var("payload.t"), "t", "r"]}]}, RECOVERY, "value"),
    ({"+": [_var("payload.nam"), 1]}, VACCINATION, "not_an_integer"),
    ({"and": [_var("payload.v.0.dn"), {"or": [True]}]}, VACCINATION, "unknown_operation"),
    ({"plusTime": [_var("payload.dob"), 1, "week"]}, VACCINATION, "unknown_time_unit"),
)


def _label(answer: object) -> str:
    if isinstance(answer, CertLogicError):
        return answer.reason
    return "true" if answer is True else "false" if answer is False else "value"


def _run(blob: bytes, evaluate=certlogic.evaluate, validate=certlogic.validate) -> tuple[object, object]:
    """(validate's issues, evaluate's value or the CertLogicError it raised): anything else escaping is a crash."""
    expr, data = cbor2.loads(blob)
    issues = validate(expr)
    try:
        return issues, evaluate(expr, data)
    except CertLogicError as exc:
        return issues, exc


def _judge(blob: object, answer: object) -> Judgement:
    issues, outcome = answer  # type: ignore[misc]
    label = _label(outcome)
    if not isinstance(issues, list) or not all(isinstance(i, str) and " at /" in i for i in issues):
        return label, False, "validate answered something other than its named reasons"
    if isinstance(outcome, CertLogicError) and outcome.reason in STRUCTURAL and not issues:
        return label, False, f"evaluate refused the expression's form ({outcome.reason}); validate found nothing"
    return label, False, None


# --- mutators -----------------------------------------------------------------------------------------


def _literal(rng: random.Random) -> object:
    return rng.choice(_LITERALS)


def _expression(rng: random.Random, depth: int) -> object:
    """A random expression: any operator, with about the right operands, literals and var paths at its leaves."""
    if depth <= 0 or rng.random() < 0.3:
        return _var(rng.choice(_PATHS)) if rng.random() < 0.5 else _literal(rng)
    op = rng.choice(OPERATORS + _UNKNOWN[:3])
    n = max(0, _ARITY.get(op, rng.choice((2, 3))) + rng.choice((0, 0, 0, 0, -1, 1)))
    operands = [_expression(rng, depth - 1) for _ in range(n)]
    if op == "plusTime" and n > 2:
        operands[1], operands[2] = rng.choice(_AMOUNTS), rng.choice(_UNITS)
    if op == "extractFromUVCI" and n > 1:
        operands[1] = rng.choice((0, 1, 2, -1, 10**20, 1.0, 0.5, "0", None))
    return {op: operands} if rng.random() < 0.95 else rng.choice(({op: operands[0] if operands else None},
                                                                  {op: operands, "and": []}, {}))


def _nested(rng: random.Random, inner: object) -> object:
    """`inner` under as many expressions as the cap allows, one more, or many more."""
    for _ in range(rng.choice((certlogic.MAX_DEPTH - 2, certlogic.MAX_DEPTH - 1, certlogic.MAX_DEPTH,
                               certlogic.MAX_DEPTH + 5, 150))):
        inner = rng.choice(({"!": [inner]}, [inner], {"and": [True, inner]}, {"if": [True, inner, False]}))
    return inner


def _hostile(rng: random.Random) -> object:
    """A data value of a kind, size or shape a certificate's payload can take and no rule expects."""
    k = rng.randrange(9)
    if k == 0:
        deep: object = rng.choice((1, "2021-06-01", None))
        for _ in range(rng.choice((2, 50, 300))):
            deep = [deep] if rng.random() < 0.5 else {"0": deep, "dn": 2}
        return deep
    if k == 1:
        return rng.choice(("2021-06-01T00:00:00." + "9" * 65_000, "a/" * 32_000, "x" * 65_536, "URN:UVCI:" * 7000))
    if k == 2:
        return rng.choice(([0] * 20_000, list(range(20_000)), ["EU/1/20/1528"] * 10_000, [[]] * 20_000,
                           [{"dn": 2, "dt": "2021-06-01"}] * 20_000))
    if k == 3:
        return rng.choice((float("nan"), float("inf"), -0.0, 0.5, 1e308, 2**64, -(2**63), 10**300, 2.0))
    if k == 4:
        return rng.choice((b"", b"\x00" * 64, {1: "a", "1": "b"}, {(1, 2): 1}, {1.5: "x", None: None}))
    if k == 5:
        return rng.choice(({1, 2}, Decimal("1.5"), Fraction(1, 3), cbor2.CBORTag(12345, "x"), frozenset()))
    if k == 6:
        return rng.choice(_DATES)
    return _literal(rng)


def _paths(obj: object, limit: int = 40) -> list[tuple]:
    """Every place in `obj` (a path of keys and indexes), the root included, up to `limit` deep."""
    found: list[tuple] = [()]
    stack: list[tuple[tuple, object]] = [((), obj)]
    while stack:
        at, value = stack.pop()
        if len(at) >= limit:
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            found.append((*at, key))
            stack.append(((*at, key), child))
    return found


def _replace(obj: object, path: tuple, new: object) -> object:
    """`obj` with the value at `path` replaced: the containers on the way copied, nothing changed in place."""
    if not path:
        return new
    copy = dict(obj) if isinstance(obj, dict) else list(obj)  # type: ignore[call-overload]
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _mutate_expression(rng: random.Random, expr: object) -> object:
    path = rng.choice(_paths(expr))
    k = rng.randrange(8)
    if k < 3:
        new: object = _expression(rng, rng.randrange(5))
    elif k == 3:
        new = _literal(rng)
    elif k == 4:
        new = _nested(rng, rng.choice((True, _var("payload.v.0.dn"), _expression(rng, 2))))
    elif k == 5:
        new = _var(rng.choice(_PATHS))
    else:  # the same operands under another operator (known or not)
        node = _at(expr, path)
        if not (isinstance(node, dict) and len(node) == 1) or "var" in node:
            return _replace(expr, path, _expression(rng, 2))
        [operands] = node.values()
        new = {rng.choice(OPERATORS + _UNKNOWN): operands}
    return _replace(expr, path, new)


def _at(obj: object, path: tuple) -> object:
    for key in path:
        obj = obj[key]  # type: ignore[index]
    return obj


def _mutant(rng: random.Random, t: Target, stats: Counter) -> bytes:
    expr, data = rng.choice(RULES)[:2]
    k = rng.randrange(10)
    if k < 4:
        expr = _mutate_expression(rng, expr)
    elif k < 7:
        data = _replace(data, rng.choice(_paths(data)), _hostile(rng))
    elif k < 9:
        for _ in range(rng.randint(1, 3)):
            expr = _mutate_expression(rng, expr)
        data = _replace(data, rng.choice(_paths(data)), _hostile(rng))
    else:
        expr = _expression(rng, rng.randrange(8))
    return cbor2.dumps([expr, data])


def certlogic_target(seed: int = 0, evaluate=None, validate=None) -> Target:
    """Rules and data against certlogic (or an injected `evaluate`, `validate`, for the harness's own tests)."""
    seeds = tuple(Seed(blob, blob, expect) for blob, expect in
                  ((cbor2.dumps([expr, data]), expect) for expr, data, expect in RULES))
    return Target(
        name="certlogic",
        seeds=seeds,
        verify=partial(_run, evaluate=evaluate or certlogic.evaluate, validate=validate or certlogic.validate),
        may_accept=lambda blob: False,  # nothing is "accepted": the oracle is in `judge`
        mutant=_mutant,
        judge=_judge,
        max_verify_us=MAX_VERIFY_US,
    )
