"""`qrgate dcc certlogic FILE…`: CertLogic's own test suites against `firmware.tokens.certlogic`.

Two layouts, told apart by their cases (schemas in eu-dcc-business-rules' certlogic/specification):
an evaluator suite (testSuite/*.json) whose cases hold assertions, each an expression (or the case's),
data and the expected value; and a validation suite (validation-testSuite/*.json), a case each an
expression and the issues the validator must find, one assertion per case. An issue is the offending
expression and the reference validator's message, which `REFERENCE_MESSAGES` maps to our reason names;
issues compare as a multiset (the specification fixes no order). A "skip" directive on a file, case or
assertion leaves it out (uncounted); "only", a debugging aid, runs as any other. A folder means its *.json.

One JSON line per failing assertion (file, case, assertion index and message, expected, actual), then
`N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from firmware.tokens import certlogic

# The reference validator's (certlogic-js) messages and the reason each is called here.
REFERENCE_MESSAGES = (
    (r"invalid CertLogic expression", "not_an_expression"),
    (r".* is a non-integer number", "non_integer_number"),
    (r"expression object must have exactly one key, but it has \d+", "not_one_key"),
    (r'operation not of the form \{ "<operator>": \[ <values\.\.\.> \] \}', "operands_not_array"),
    (r'unrecognised operator: ".*"', "unknown_operation"),
    (r'not of the form \{ "var": "<path>" \}', "var_path_not_string"),
    (r"data access path doesn't have a valid format: .*", "invalid_var_path"),
    (r'"amount" argument \(#2\) of "plusTime" must be an integer.*', "amount_not_integer"),
    (r'"unit" argument \(#3\) of "plusTime" must be a string .*', "unknown_time_unit"),
    (r'"index" argument \(#2\) of "extractFromUVCI" must be an integer.*', "index_not_integer"),
    (r"an? .*must have .*operands?, but it has \d+", "wrong_arity"),
)


def find_files(paths: Iterable[Path]) -> list[Path]:
    """The files given, and each folder's *.json, once each, in order."""
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        for f in sorted(path.glob("*.json")) if path.is_dir() else [path]:
            seen.setdefault(f.resolve(), f)
    return list(seen.values())


def same_json(a: object, b: object) -> bool:
    """JSON equality: a boolean is no number (Python's True == 1 is not), 2.0 is 2, order of keys aside."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) is str and a == b


def reference_reason(message: str) -> str | None:
    return next((reason for pattern, reason in REFERENCE_MESSAGES if re.fullmatch(pattern, message)), None)


def at(expr: object, pointer: str) -> object:
    """The part of `expr` that `validate`'s pointer names ("/" the whole, "/and/1" the second of an and)."""
    for step in filter(None, pointer.split("/")):
        expr = expr[int(step)] if isinstance(expr, list) else expr[step]  # type: ignore[index]
    return expr


def _issues(expr: object, found: list[str]) -> list[dict]:
    issues = []
    for text in found:
        reason, _, pointer = text.partition(" at ")
        issues.append({"reason": reason, "expr": at(expr, pointer)})
    return issues


def _key(issue: dict) -> str:
    return json.dumps(issue, sort_keys=True, default=repr)


def _skipped(*holders: dict) -> bool:
    return any(h.get("directive") == "skip" for h in holders)


def run_file(path: Path) -> Iterator[dict]:
    """Each assertion's result: {"passed": bool, …} with what a failing line prints (a file unread: one failure)."""
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        yield {"file": str(path), "passed": False, "error": f"unreadable: {type(exc).__name__}"}
        return
    for n, case in enumerate(suite.get("cases", [])):
        name = case.get("name", f"<unnamed> case #{n + 1}")
        if _skipped(suite, case):
            continue
        if "issues" in case:
            expr = case["certLogicExpression"]
            expected = [{"reason": reference_reason(i["message"]) or f"unmapped: {i['message']}", "expr": i["expr"]}
                        for i in case["issues"]]
            actual = _issues(expr, certlogic.validate(expr))
            passed = sorted(map(_key, expected)) == sorted(map(_key, actual))
            yield {"file": str(path), "case": name, "assertion": 0, "passed": passed, "expected": expected,
                   "actual": actual}
            continue
        for i, assertion in enumerate(case["assertions"]):
            if _skipped(assertion):
                continue
            expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
            try:
                actual = certlogic.evaluate(expr, assertion["data"])
                passed = same_json(actual, assertion["expected"])
            except certlogic.CertLogicError as exc:
                actual, passed = {"error": str(exc)}, False
            yield {"file": str(path), "case": name, "assertion": i, "message": assertion.get("message"),
                   "passed": passed, "expected": assertion["expected"], "actual": actual}


def run(paths: Iterable[Path], out=None) -> tuple[int, int]:
    """Print a line per failing assertion and the summary to `out`; (passed, failed)."""
    out = out or sys.stdout
    passed = failed = 0
    for path in find_files(paths):
        for result in run_file(path):
            if result.pop("passed"):
                passed += 1
                continue
            failed += 1
            print(json.dumps(result, ensure_ascii=False, default=repr), file=out, flush=True)
    print(f"{passed} passed, {failed} failed", file=out, flush=True)
    return passed, failed


def main(args: argparse.Namespace) -> int:
    _, failed = run(args.files)
    return 0 if failed == 0 else 1
