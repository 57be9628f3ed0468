"""`qrgate dcc certlogic`: CertLogic's own suites (tests/data/certlogic, see its SOURCE.md) pass whole, and the
runner reports what fails, skips what the suites skip and reads the reference validator's messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware import cli
from lab import dcc_certlogic

DATA = Path(__file__).resolve().parent.parent / "data" / "certlogic"
SUITES = [DATA / "testSuite", DATA / "validation-testSuite"]


def run(capsys, *paths: Path) -> tuple[int, list[str]]:
    args = cli.build_parser().parse_args(["dcc", "certlogic", *map(str, paths)])
    code = args.func(args)
    return code, capsys.readouterr().out.splitlines()


def total() -> int:
    """The suites' assertions, counted from the files: each evaluator assertion and validation case not skipped."""
    n = 0
    for path in DATA.glob("*/*.json"):
        suite = json.loads(path.read_text())
        for case in suite["cases"]:
            if "skip" in (suite.get("directive"), case.get("directive")):
                continue
            n += 1 if "issues" in case else sum(a.get("directive") != "skip" for a in case["assertions"])
    return n


def test_the_whole_suite_passes(capsys):
    assert total() == 182  # 159 evaluations and 23 validations; 14 assertions the suites skip
    code, lines = run(capsys, *SUITES)
    assert lines == [f"{total()} passed, 0 failed"] and code == 0


def test_each_file_of_the_suite_passes_alone_and_a_file_given_twice_runs_once(capsys):
    files = sorted(DATA.glob("*/*.json"))
    assert len(files) == 15
    code, lines = run(capsys, *files, SUITES[0])
    assert lines == [f"{total()} passed, 0 failed"] and code == 0


def write(path: Path, suite: dict) -> Path:
    path.write_text(json.dumps(suite))
    return path


def test_a_failing_assertion_is_one_json_line_and_exit_1(tmp_path, capsys):
    f = write(tmp_path / "mine.json", {"name": "mine", "cases": [
        {"name": "adds", "certLogicExpression": {"+": [{"var": "a"}, 1]}, "assertions": [
            {"data": {"a": 1}, "expected": 2},
            {"data": {"a": 1}, "expected": 3, "message": "one and one are three"},
            {"data": {"a": "x"}, "expected": 2},
            {"certLogicExpression": {"var": "a"}, "data": {"a": True}, "expected": 1},
            {"certLogicExpression": [{"plusTime": ["1970", 0, "day"]}], "data": None, "expected": [1]},
        ]}]})
    code, lines = run(capsys, f)
    assert code == 1 and lines[-1] == "1 passed, 4 failed"
    assert [json.loads(line) for line in lines[:-1]] == [
        {"file": str(f), "case": "adds", "assertion": 1, "message": "one and one are three", "expected": 3,
         "actual": 2},
        {"file": str(f), "case": "adds", "assertion": 2, "message": None, "expected": 2,
         "actual": {"error": "not_an_integer (+)"}},
        {"file": str(f), "case": "adds", "assertion": 3, "message": None, "expected": 1, "actual": True},
        {"file": str(f), "case": "adds", "assertion": 4, "message": None, "expected": [1],
         "actual": ["DateTime(millis=31449600000)"]},
    ]


def test_skip_directives_leave_out_a_file_a_case_or_an_assertion_and_only_runs(tmp_path, capsys):
    wrong = {"certLogicExpression": 1, "data": None, "expected": 2}
    right = {"certLogicExpression": 1, "data": None, "expected": 1}
    write(tmp_path / "a.json", {"name": "a", "directive": "skip", "cases": [{"name": "c", "assertions": [wrong]}]})
    write(tmp_path / "b.json", {"name": "b", "cases": [
        {"name": "skipped", "directive": "skip", "assertions": [wrong]},
        {"name": "partly", "assertions": [{**wrong, "directive": "skip"}, right, {**right, "directive": "only"}]},
        {"name": "validation skipped", "directive": "skip", "certLogicExpression": None, "issues": []},
    ]})
    (tmp_path / "notes.txt").write_text("not a suite")
    code, lines = run(capsys, tmp_path)
    assert lines == ["2 passed, 0 failed"] and code == 0


def test_a_file_that_is_no_json_or_not_there_is_one_failure(tmp_path, capsys):
    (tmp_path / "broken.json").write_text('{"name": "cut short", "cases": [')
    code, lines = run(capsys, tmp_path / "broken.json", tmp_path / "missing.json")
    assert code == 1 and lines[-1] == "0 passed, 2 failed"
    assert [json.loads(line) for line in lines[:-1]] == [
        {"file": str(tmp_path / "broken.json"), "error": "unreadable: JSONDecodeError"},
        {"file": str(tmp_path / "missing.json"), "error": "unreadable: FileNotFoundError"}]


def test_an_empty_run_passes_nothing(tmp_path, capsys):
    code, lines = run(capsys, tmp_path)
    assert lines == ["0 passed, 0 failed"] and code == 0


def test_a_validation_case_compares_reasons_and_the_offending_expressions_in_any_order(tmp_path, capsys):
    two = {"and": [None, 2.5]}
    f = write(tmp_path / "v.json", {"name": "v", "cases": [
        {"certLogicExpression": two, "issues": [{"expr": 2.5, "message": "2.5 is a non-integer number"},
                                                {"expr": None, "message": "invalid CertLogic expression"}]},
        {"certLogicExpression": two, "issues": [{"expr": None, "message": "invalid CertLogic expression"}]},
        {"name": "wrong place", "certLogicExpression": two,
         "issues": [{"expr": 2.5, "message": "invalid CertLogic expression"},
                    {"expr": None, "message": "2.5 is a non-integer number"}]},
        {"certLogicExpression": {"all": []}, "issues": [{"expr": {"all": []}, "message": "something new"}]},
        {"certLogicExpression": 1, "issues": []},
    ]})
    code, lines = run(capsys, f)
    assert code == 1 and lines[-1] == "2 passed, 3 failed"
    failures = [json.loads(line) for line in lines[:-1]]
    assert [(x["case"], x["assertion"]) for x in failures] == [
        ("<unnamed> case #2", 0), ("wrong place", 0), ("<unnamed> case #4", 0)]
    assert failures[0]["expected"] == [{"reason": "not_an_expression", "expr": None}]
    assert sorted(failures[0]["actual"], key=str) == [{"reason": "non_integer_number", "expr": 2.5},
                                                      {"reason": "not_an_expression", "expr": None}]
    assert failures[2]["expected"] == [{"reason": "unmapped: something new", "expr": {"all": []}}]
    assert failures[2]["actual"] == [{"reason": "unknown_operation", "expr": {"all": []}}]


# What the reference validator (certlogic-js) says for each problem, and what `validate` calls it.
REFERENCE = [
    (None, "invalid CertLogic expression", "not_an_expression"),
    (3.14, "3.14 is a non-integer number", "non_integer_number"),
    ({}, "expression object must have exactly one key, but it has 0", "not_one_key"),
    ({"all": "foo"}, 'operation not of the form { "<operator>": [ <values...> ] }', "operands_not_array"),
    ({"all": []}, 'unrecognised operator: "all"', "unknown_operation"),
    ({"var": 0}, 'not of the form { "var": "<path>" }', "var_path_not_string"),
    ({"var": "x."}, "data access path doesn't have a valid format: x.", "invalid_var_path"),
    ({"if": [1]}, 'an "if"-operation must have exactly 3 values/operands, but it has 1', "wrong_arity"),
    ({"and": [1]}, 'an "and" operation must have at least 2 operands, but it has 1', "wrong_arity"),
    ({"<": [1]}, 'an operation with operator "<" must have 2 or 3 operands, but it has 1', "wrong_arity"),
    ({"in": [1]}, 'an operation with operator "in" must have 2 operands, but it has 1', "wrong_arity"),
    ({"!": []}, "a !-operation (logical not/negation) must have exactly 1 operand, but it has 0", "wrong_arity"),
    ({"plusTime": ["2021"]}, 'a "plusTime"-operation must have exactly 3 values/operands, but it has 1',
     "wrong_arity"),
    ({"reduce": [1]}, 'a "reduce"-operation must have exactly 3 values/operands, but it has 1', "wrong_arity"),
    ({"extractFromUVCI": ["a"]}, 'an "extractFromUVCI"-operation must have exactly 2 values/operands, but it has 1',
     "wrong_arity"),
    ({"plusTime": ["2021", 1.5, "day"]}, '"amount" argument (#2) of "plusTime" must be an integer, but it is: 1.5',
     "amount_not_integer"),
    ({"plusTime": ["2021", 1, "week"]},
     '"unit" argument (#3) of "plusTime" must be a string equal to one of year, month, day, hour, but it is: week',
     "unknown_time_unit"),
    ({"extractFromUVCI": ["a", "0"]}, '"index" argument (#2) of "extractFromUVCI" must be an integer, but it is: 0',
     "index_not_integer"),
]


@pytest.mark.parametrize("expr, message, reason", REFERENCE, ids=[r[2] + ":" + str(r[0]) for r in REFERENCE])
def test_every_message_of_the_reference_validator_is_read_as_our_reason(tmp_path, capsys, expr, message, reason):
    assert dcc_certlogic.reference_reason(message) == reason
    f = write(tmp_path / "v.json", {"name": "v", "cases": [
        {"certLogicExpression": expr, "issues": [{"expr": expr, "message": message}]}]})
    assert run(capsys, f) == (0, ["1 passed, 0 failed"])


@pytest.mark.parametrize("a, b, same", [
    (1, 1, True), (1, 1.0, True), (1, True, False), (0, False, False), (None, None, True), (None, 0, False),
    ("a", "a", True), ("1", 1, False), ([1, [2]], [1, [2]], True), ([1], [1, 1], False), ([True], [1], False),
    ({"a": 1, "b": [None]}, {"b": [None], "a": 1}, True), ({"a": 1}, {"a": 1, "b": 1}, False),
    ({"a": 1}, {"a": True}, False), ({}, [], False), ([], {}, False), ("a", ["a"], False), (True, True, True),
    (False, True, False),
])
def test_json_equality_is_jsons(a, b, same):
    assert dcc_certlogic.same_json(a, b) is same and dcc_certlogic.same_json(b, a) is same


def test_a_pointer_names_the_offending_part():
    expr = {"and": [1, {"if": [{"var": 1}, [2, None], 3]}]}
    assert dcc_certlogic.at(expr, "/") is expr
    assert dcc_certlogic.at(expr, "/and/1/if/0") == {"var": 1}
    assert dcc_certlogic.at(expr, "/and/1/if/1/1") is None
