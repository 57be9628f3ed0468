"""CertLogic (`tokens/certlogic.py`), written from its specification (tests/data/certlogic/SPECIFICATION.md):
each operation, truthiness and null, the errors by name, the caps, and `validate`'s reasons.

The specification's own suites run in test_certlogic_suite.py."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.errors import QrgateError
from firmware.tokens import certlogic
from firmware.tokens.certlogic import MAX_DEPTH, MAX_STEPS, CertLogicError, DateTime, evaluate, validate

SPEC = Path(__file__).resolve().parent.parent / "data" / "certlogic" / "SPECIFICATION.md"


def error(expr: object, data: object = None) -> str:
    """The text of the CertLogicError evaluating `expr` raises (any other outcome fails the test)."""
    with pytest.raises(CertLogicError) as raised:
        evaluate(expr, data)
    assert str(raised.value).startswith(raised.value.reason)
    return str(raised.value)


def reason(expr: object, data: object = None) -> str:
    with pytest.raises(CertLogicError) as raised:
        evaluate(expr, data)
    return raised.value.reason


def ms(text: str) -> int:
    """Milliseconds since 1970 of an ISO 8601 date-time, by Python's own reading."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def utc(text: str) -> int:
    """Milliseconds since 1970 of a date or date-time in UTC (also of year 0, which `datetime` lacks)."""
    year, rest = int(text[:4]), text[4:] + ("" if "T" in text else "T00:00:00")
    cycles = (2000 - year) // 400 + 1  # the Gregorian calendar repeats every 400 years, 146,097 days
    return ms(f"{year + 400 * cycles}{rest}+00:00") - cycles * 146_097 * 86_400_000


def at(text: str) -> DateTime:
    return DateTime(ms(text))


def plus(text: object, amount: object = 0, unit: object = "day") -> object:
    return evaluate({"plusTime": [text, amount, unit]}, None)


BOOM = {"var": 0}  # an expression that raises whenever it is evaluated (a var's path must be a string)


# --- the module's facts ----------------------------------------------------------------------------


def test_the_engine_version_is_the_specifications():
    assert re.search(r"identification of this specification is: \*\*(\d+\.\d+\.\d+)\*\*", SPEC.read_text())[1] \
        == certlogic.ENGINE_VERSION == "1.3.3"


def test_the_error_is_qrgates_own_and_says_its_reason_and_operation():
    assert issubclass(CertLogicError, QrgateError) and issubclass(CertLogicError, ValueError)
    assert error({"+": [1, "2"]}) == "not_an_integer (+)"
    assert error({"foo": [1]}) == "unknown_operation (foo)"
    assert error({}) == "not_one_key"


def test_a_date_time_is_milliseconds_since_1970():
    assert plus("1970-01-01") == DateTime(0) and plus("1970-01-01T00:00:01.5Z") == DateTime(1500)
    with pytest.raises(AttributeError):
        DateTime(0).millis = 1  # type: ignore[misc]


# --- literals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["", "apple", 0, 17, -3, True, False, 2.0, 10**30])
def test_a_literal_evaluates_to_itself(literal):
    assert evaluate(literal, {"x": 1}) is literal


def test_an_array_evaluates_each_item():
    assert evaluate([1, {"var": "x"}, [{"var": "y"}, "z"]], {"x": 2, "y": 3}) == [1, 2, [3, "z"]]
    assert evaluate([], None) == []


@pytest.mark.parametrize("literal, why", [
    (None, "not_an_expression"), (3.14, "non_integer_number"), (float("nan"), "non_integer_number"),
    (float("inf"), "non_integer_number"), (b"x", "not_an_expression"), ((1, 2), "not_an_expression"),
    ({1, 2}, "not_an_expression"), (DateTime(0), "not_an_expression"),
])
def test_what_has_no_literal_is_an_error(literal, why):
    assert error(literal) == why
    assert error([1, literal]) == why


# --- var ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, data, value", [
    ("", {"a": 1}, {"a": 1}), ("", None, None), ("", 7, 7),
    ("a", {"a": 1}, 1), ("a.b", {"a": {"b": "c"}}, "c"), ("a.0.b", {"a": [{"b": 5}]}, 5),
    ("1", ["x", "y"], "y"), ("1.1", ["x", ["y", "z"]], "z"), ("01", ["x", "y"], "y"),
    ("0", {"0": "key"}, "key"),  # an integer fragment names an object's key as any other
    ("a", {"a": None}, None), ("a", {"a": False}, False), ("a", {"a": 0}, 0),
])
def test_var_drills_into_objects_by_key_and_arrays_by_index(path, data, value):
    got = evaluate({"var": path}, data)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("path, data", [
    ("a", None), ("a.b.c", None), ("a.b.c", {"a": None}), ("a.b.c", {"a": {"b": None}}),
    ("b", {"a": 1}), ("a.q", {"a": {"b": "c"}}), ("x.y", {"x": {"z": 1}}),
    ("2", ["x", "y"]), ("0", []), ("-1", ["x", "y"]), ("length", ["x"]), ("1x", ["x", "y"]),
    ("\u0661", ["x", "y"]),  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, no index here
    ("0" * 9 + "1", ["x", "y"]),  # past nine digits, no index: past any array's end
    ("0", "abc"), ("length", "abc"), ("a", 5), ("real", 5), ("a", True), ("a", DateTime(0)),
])
def test_var_of_what_is_not_there_is_null(path, data):
    assert evaluate({"var": path}, data) is None


def test_an_index_of_nine_digits_is_read():
    assert evaluate({"var": "000000001"}, ["x", "y"]) == "y"


def test_var_reads_data_of_any_depth_without_recursing():
    deep: object = "bottom"
    for _ in range(100_000):
        deep = [deep]
    assert evaluate({"var": "0.0.0"}, deep) is deep[0][0][0]  # type: ignore[index]
    assert evaluate({"var": ""}, deep) is deep


@pytest.mark.parametrize("form, why", [
    ({"var": 0}, "var_path_not_string"), ({"var": None}, "var_path_not_string"),
    ({"var": ["x", 1]}, "var_path_not_string"), ({"var": "x."}, "invalid_var_path"),
    ({"var": ".x"}, "invalid_var_path"), ({"var": "a..b"}, "invalid_var_path"), ({"var": "."}, "invalid_var_path"),
])
def test_var_takes_a_path_string_only(form, why):
    assert error(form, {"x": {"": 1}, "a": {"": {"b": 2}}}) == f"{why} (var)"


# --- truthiness --------------------------------------------------------------------------------------

FALSY = [False, None, "", 0, 0.0, -0.0, [], {}]
TRUTHY = [True, "0", "false", " ", 1, -1, 2.0, 10**30, [0], [None], {"a": None}]
NEITHER = [0.5, -1.5, float("nan"), float("inf"), DateTime(0), b"", b"x", (1,)]


@pytest.mark.parametrize("value", FALSY)
def test_falsy_values(value):
    assert evaluate({"!": [{"var": ""}]}, value) is True
    assert evaluate({"if": [{"var": ""}, "then", "else"]}, value) == "else"
    assert evaluate({"and": [{"var": ""}, BOOM]}, value) is value


@pytest.mark.parametrize("value", TRUTHY)
def test_truthy_values(value):
    assert evaluate({"!": [{"var": ""}]}, value) is False
    assert evaluate({"if": [{"var": ""}, "then", "else"]}, value) == "then"
    assert evaluate({"and": [{"var": ""}, "last"]}, value) == "last"


@pytest.mark.parametrize("value", NEITHER, ids=repr)
def test_a_value_neither_truthy_nor_falsy_is_an_error_where_truth_is_asked(value):
    assert error({"!": [{"var": ""}]}, value) == "neither_truthy_nor_falsy (!)"
    assert error({"if": [{"var": ""}, "then", "else"]}, value) == "neither_truthy_nor_falsy (if)"
    assert error({"and": [{"var": ""}, True]}, value) == "neither_truthy_nor_falsy (and)"
    assert error({"and": [True, {"var": ""}]}, value) == "neither_truthy_nor_falsy (and)"


# --- if, and, ! --------------------------------------------------------------------------------------


def test_if_evaluates_only_the_branch_its_guard_chooses():
    assert evaluate({"if": [True, {"var": "a"}, BOOM]}, {"a": "A"}) == "A"
    assert evaluate({"if": [False, BOOM, {"var": "b"}]}, {"b": "B"}) == "B"
    assert evaluate({"if": [{">": [2, 1]}, "apple", "banana"]}, None) == "apple"
    assert evaluate({"if": [{"var": "x"}, [{"var": "y"}], 99]}, {"x": True, "y": 42}) == [42]
    assert error({"if": [BOOM, 1, 2]}) == "var_path_not_string (var)"


def test_and_answers_its_first_falsy_operand_or_its_last():
    assert evaluate({"and": [1, 3]}, None) == 3
    assert evaluate({"and": [True, True, 1]}, None) == 1
    assert evaluate({"and": ["a", 0, False]}, None) == 0
    assert evaluate({"and": [True, "", BOOM]}, None) == ""
    assert evaluate({"and": [[], True]}, None) == []
    assert evaluate({"and": [{"var": "x"}, {"var": "y"}]}, {"x": True, "y": {}}) == {}
    assert error({"and": [True, True, BOOM]}) == "var_path_not_string (var)"


def test_not_negates_truthiness():
    assert evaluate({"!": [[]]}, None) is True and evaluate({"!": ["0"]}, None) is False


@pytest.mark.parametrize("form", [
    {"if": [True, 1]}, {"if": [True, 1, 2, 3]}, {"and": [True]}, {"and": []}, {"!": []}, {"!": [True, True]},
    {"===": [1]}, {"===": [1, 1, 1]}, {"in": [1]}, {"in": [1, [1], [1]]}, {"+": [1]}, {"+": [1, 2, 3]},
    {"<": [1]}, {"<": [1, 2, 3, 4]}, {"after": [1]}, {"not-before": [1, 2, 3, 4]},
    {"plusTime": ["2021", 1]}, {"plusTime": ["2021", 1, "day", 1]}, {"reduce": [[], 1]},
    {"reduce": [[], 1, 0, 0]}, {"extractFromUVCI": ["a"]}, {"extractFromUVCI": ["a", 0, 0]},
    {"dccDateOfBirth": []}, {"dccDateOfBirth": ["2000", "2000"]},
], ids=str)
def test_a_wrong_number_of_operands_is_an_error_before_any_is_evaluated(form):
    [(op, operands)] = form.items()
    assert error({op: [BOOM, *operands[1:]] if operands else []}) == f"wrong_arity ({op})"


def test_and_takes_any_number_of_operands_from_two():
    assert evaluate({"and": [1] * 50}, None) == 1


# --- === and in --------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, equal", [
    ("foo", "foo", True), ("foo", "bar", False), (1, 1, True), (1, 2, False), (1, "1", False), (0, "0", False),
    (1, 1.0, True), (True, True, True), (False, False, True), (True, 1, False), (False, 0, False),
    (None, None, True), (None, False, False), (None, 0, False), (None, "", False), ("", "", True),
])
def test_strict_equality_compares_kind_and_value(a, b, equal):
    assert evaluate({"===": [{"var": "a"}, {"var": "b"}]}, {"a": a, "b": b}) is equal
    assert evaluate({"===": [{"var": "b"}, {"var": "a"}]}, {"a": a, "b": b}) is equal


@pytest.mark.parametrize("value", [[], [1], {}, {"a": 1}, b"x"], ids=repr)
def test_strict_equality_of_arrays_or_objects_is_an_error(value):
    assert error({"===": [{"var": "v"}, 1]}, {"v": value}) == "not_comparable (===)"
    assert error({"===": ["x", {"var": "v"}]}, {"v": value}) == "not_comparable (===)"


def test_strict_equality_of_date_times_is_an_error():
    assert error({"===": [{"plusTime": ["2021", 0, "day"]}, {"plusTime": ["2021", 0, "day"]}]}) \
        == "not_comparable (===)"


@pytest.mark.parametrize("item, array, member", [
    ("Bart", ["Bart", "Homer", "Lisa"], True), ("Milhouse", ["Bart", "Homer"], False), ("foo", [], False),
    (None, [], False), (None, [None], True), (None, ["a", "b"], False), (1, ["1"], False), ("1", [1], False),
    (True, [1], False), (1, [True], False), (1, [1.0], True), (0, [False, None, ""], False),
    ("a", [["a"], {"a": 1}, "a"], True), ("a", [["a"], {"a": "a"}], False),  # items of other kinds: never equal
    (1, [Decimal(1), Fraction(1)], False), (None, [b""], False),  # what CBOR decodes and JSON has not: the same
])
def test_in_asks_for_an_equal_item(item, array, member):
    assert evaluate({"in": [{"var": "i"}, {"var": "a"}]}, {"i": item, "a": array}) is member


@pytest.mark.parametrize("array", [None, "abc", {"a": 1}, 1, DateTime(0)], ids=repr)
def test_in_on_something_not_an_array_is_an_error(array):
    assert error({"in": ["a", {"var": "a"}]}, {"a": array}) == "not_an_array (in)"


@pytest.mark.parametrize("item", [[1], {"a": 1}, DateTime(0)], ids=repr)
def test_in_with_an_array_or_object_on_its_left_is_an_error(item):
    assert error({"in": [{"var": "i"}, [1, [1]]]}, {"i": item}) == "not_comparable (in)"


def test_in_checks_its_right_operand_before_its_left():
    assert error({"in": [{"var": "i"}, {"var": "a"}]}, {"i": [1], "a": None}) == "not_an_array (in)"


# --- + and comparisons -------------------------------------------------------------------------------


def test_plus_adds_integers():
    assert evaluate({"+": [1, 2]}, None) == 3 and evaluate({"+": [-5, 2]}, None) == -3
    assert evaluate({"+": [{"var": "a"}, 10**30]}, {"a": 1}) == 10**30 + 1
    got = evaluate({"+": [{"var": "a"}, 1]}, {"a": 2.0})
    assert got == 3 and type(got) is int


@pytest.mark.parametrize("value", [None, "1", True, 0.5, [1], DateTime(0)], ids=repr)
def test_plus_of_anything_but_integers_is_an_error(value):
    assert error({"+": [{"var": "v"}, 1]}, {"v": value}) == "not_an_integer (+)"
    assert error({"+": [1, {"var": "v"}]}, {"v": value}) == "not_an_integer (+)"


@pytest.mark.parametrize("op, table", [
    ("<", (False, False, True)), (">", (True, False, False)), ("<=", (False, True, True)), (">=", (True, True, False)),
])
def test_comparisons_of_two_integers(op, table):
    assert tuple(evaluate({op: [a, b]}, None) for a, b in ((2, 1), (1, 1), (1, 2))) == table
    assert evaluate({op: [{"var": "a"}, 1]}, {"a": 1.0}) is table[1]


@pytest.mark.parametrize("op, triples", [
    ("<", {(1, 2, 3): True, (1, 1, 3): False, (1, 3, 3): False, (1, 4, 3): False, (3, 2, 1): False}),
    ("<=", {(1, 2, 3): True, (1, 1, 1): True, (1, 4, 3): False, (2, 1, 3): False}),
    (">", {(3, 2, 1): True, (3, 3, 1): False, (3, 1, 1): False, (1, 2, 3): False}),
    (">=", {(3, 2, 1): True, (1, 1, 1): True, (3, 4, 1): False, (3, 1, 2): False}),
])
def test_the_ternary_form_is_between(op, triples):
    for operands, value in triples.items():
        assert evaluate({op: list(operands)}, None) is value, operands


@pytest.mark.parametrize("value", [None, "1", True, 0.5, DateTime(0)], ids=repr)
def test_a_comparison_of_anything_but_integers_is_an_error(value):
    for operands in ([{"var": "v"}, 1], [1, {"var": "v"}], [1, 2, {"var": "v"}], [2, 1, {"var": "v"}]):
        assert error({"<": operands}, {"v": value}) == "not_an_integer (<)"


DAY1, DAY2, DAY3 = ({"plusTime": [d, 0, "day"]} for d in ("2021-06-01", "2021-06-02", "2021-06-03"))


@pytest.mark.parametrize("op, table", [
    ("before", (False, False, True)), ("after", (True, False, False)),
    ("not-after", (False, True, True)), ("not-before", (True, True, False)),
])
def test_date_time_comparisons(op, table):
    assert tuple(evaluate({op: [a, b]}, None) for a, b in ((DAY2, DAY1), (DAY1, DAY1), (DAY1, DAY2))) == table


def test_date_time_comparisons_take_the_ternary_form():
    assert evaluate({"before": [DAY1, DAY2, DAY3]}, None) is True
    assert evaluate({"before": [DAY1, DAY3, DAY2]}, None) is False
    assert evaluate({"not-after": [DAY1, DAY1, DAY2]}, None) is True
    assert evaluate({"after": [DAY3, DAY2, DAY2]}, None) is False


@pytest.mark.parametrize("value", [1, "2021-06-01", None, True], ids=repr)
def test_a_date_time_comparison_of_anything_but_date_times_is_an_error(value):
    assert error({"after": [{"var": "v"}, DAY1]}, {"v": value}) == "not_a_date_time (after)"
    assert error({"not-before": [DAY1, DAY2, {"var": "v"}]}, {"v": value}) == "not_a_date_time (not-before)"


def test_integer_comparisons_do_not_take_date_times_nor_date_comparisons_integers():
    assert error({"<": [DAY1, DAY2]}) == "not_an_integer (<)"
    assert error({"before": [1, 2]}) == "not_a_date_time (before)"


# --- plusTime ----------------------------------------------------------------------------------------

FORMATS = [  # every format the specification allows, and the instant it is
    ("2021", "2021-12-31T00:00:00+00:00"), ("2020-02", "2020-02-29T00:00:00+00:00"),
    ("2021-06-01", "2021-06-01T00:00:00+00:00"), ("2021-06-01T12:34:56", "2021-06-01T12:34:56+00:00"),
    ("2021-06-01T12:34:56Z", "2021-06-01T12:34:56+00:00"), ("2021-06-01T12:34:56+2", "2021-06-01T12:34:56+02:00"),
    ("2021-06-01T12:34:56-02", "2021-06-01T12:34:56-02:00"), ("2021-06-01T12:34:56+130", "2021-06-01T12:34:56+01:30"),
    ("2021-06-01T12:34:56-1130", "2021-06-01T12:34:56-11:30"), ("2021-06-01T12:34:56+1:30", "2021-06-01T12:34:56+01:30"),
    ("2021-06-01T12:34:56-11:45", "2021-06-01T12:34:56-11:45"), ("2021-06-01T12:34:56.7", "2021-06-01T12:34:56.700+00:00"),
    ("2021-06-01T12:34:56.78Z", "2021-06-01T12:34:56.780+00:00"),
    ("2021-06-01T12:34:56.789+2", "2021-06-01T12:34:56.789+02:00"),
    ("2021-06-01T12:34:56.7891-02", "2021-06-01T12:34:56.789-02:00"),
    ("2021-06-01T12:34:56.9999999+130", "2021-06-01T12:34:56.999+01:30"),
    ("2021-06-01T12:34:56.1+0000", "2021-06-01T12:34:56.100+00:00"),
    ("2021-06-01T12:34:56.01+9:05", "2021-06-01T12:34:56.010+09:05"),
    ("2021-06-01T12:34:56.001-23:59", "2021-06-01T12:34:56.001-23:59"),
    ("0000-01-01", None), ("9999-12-31T23:59:59.999-23:59", "9999-12-31T23:59:59.999-23:59"),
]


@pytest.mark.parametrize("text, instant", FORMATS)
def test_plus_time_reads_every_allowed_format(text, instant):
    expected = DateTime(ms(instant) if instant else -62_167_219_200_000)  # year 0, which `datetime` lacks
    for unit in ("year", "month", "day", "hour"):
        assert plus(text, 0, unit) == expected


@pytest.mark.parametrize("text", [
    "", "21", "20210", "2021-6", "2021-06-1", "2021/06/01", "2021-06-01T", "2021-06-01T12:34", "2021-06-01T12:34Z",
    "2021-06-01 12:34:56", "2021-06-01t12:34:56", "2021-06-01T12:34:56.", "2021-06-01T12:34:56z",
    "2021-06-01T12:34:56+", "2021-06-01T12:34:56+12345", "2021-06-01T12:34:56+1:3", "2021-06-01T12:34:56+1:",
    "2021-06-01T12:34:56+01:", "2021-06-01T12:34:56Z+01", " 2021-06-01", "2021-06-01\n", "２０２１",
    "\u0662\u0660\u0662\u0661-06-01", "2021-06-01T1\u0662:34:56", "-2021-06-01", "+2021-06-01", "12021-06-01",
])
def test_plus_time_refuses_other_formats(text):
    assert error({"plusTime": [text, 0, "day"]}) == "invalid_date (plusTime)"


@pytest.mark.parametrize("text", [
    "2021-00", "2021-13", "2021-00-10", "2021-13-01", "2021-06-00", "2021-06-31", "2021-02-29", "1900-02-29",
    "2021-06-01T24:00:00", "2021-06-01T23:60:00", "2021-06-01T23:59:60", "2021-06-01T00:00:00+24",
    "2021-06-01T00:00:00+2400", "2021-06-01T00:00:00+00:60", "2021-06-01T00:00:00-99",
    "2021-06-01T12:34:56.123456789012+25",
])
def test_plus_time_refuses_dates_and_times_that_do_not_exist(text):
    assert error({"plusTime": [text, 0, "day"]}) == "invalid_date (plusTime)"


@pytest.mark.parametrize("text", ["2000-02-29", "2020-02-29", "2021-04-30", "2021-12-31T23:59:59.999+23:59"])
def test_the_last_day_and_moment_exist(text):
    assert isinstance(plus(text), DateTime)


@pytest.mark.parametrize("text, amount, unit, result", [
    # the specification's table of leap days
    ("2020-02-29", 1, "day", "2020-03-01"), ("2020-02-29", 1, "month", "2020-03-29"),
    ("2020-02-29", 1, "year", "2021-03-01"),
    ("2021-06-01T00:00:00Z", 40, "hour", "2021-06-02T16:00:00"), ("2021-06-01", -1, "hour", "2021-05-31T23:00:00"),
    ("2021-01-01T10:00:00", 365, "day", "2022-01-01T10:00:00"), ("2021-01-01", -1, "day", "2020-12-31"),
    ("2020-12-25", 180, "day", "2021-06-23"),  # across a DST change: days are 24 hours in UTC
    ("2021-01-31", 1, "month", "2021-03-03"), ("2020-01-31", 1, "month", "2020-03-02"),  # past February's end
    ("2021-03-31", -1, "month", "2021-03-03"), ("2021-11-15", 2, "month", "2022-01-15"),
    ("2021-01-15", -13, "month", "2019-12-15"), ("2021-06-15", 120, "month", "2031-06-15"),
    ("2021-06-15T08:09:10.011Z", 1, "month", "2021-07-15T08:09:10.011"), ("2024-02-29", -1, "year", "2023-03-01"),
    ("2021-06-15", -18, "year", "2003-06-15"), ("2021-06-15T23:59:59.999", 400, "year", "2421-06-15T23:59:59.999"),
    ("2021-06-15", -2021, "year", "0000-06-15"),
    # the month and year are the instant's in UTC, not the offset's
    ("2021-01-31T23:30:00-01:00", 1, "month", "2021-03-01T00:30:00"),
    ("2021-01-01T00:30:00+01:00", 1, "year", "2021-12-31T23:30:00"),
])
def test_plus_time_adds_as_javascripts_utc_setters(text, amount, unit, result):
    assert plus(text, amount, unit) == DateTime(utc(result))


def test_plus_time_reaches_the_ends_of_javascripts_date_range_and_no_further():
    assert plus("1970-01-01", 100_000_000, "day") == DateTime(8_640_000_000_000_000)
    assert plus("1970-01-01", -100_000_000, "day") == DateTime(-8_640_000_000_000_000)
    assert plus("1970-01-01", 2_400_000_000, "hour") == DateTime(8_640_000_000_000_000)
    for amount, unit in ((100_000_001, "day"), (-100_000_001, "day"), (2_400_000_001, "hour"),
                         (10**6, "year"), (-(10**6), "year"), (10**7, "month"), (10**4000, "day")):
        assert error({"plusTime": ["1970-01-01", amount, unit]}) == "date_out_of_range (plusTime)"


@pytest.mark.parametrize("amount", [1.5, "1", True, None, {"var": "n"}, [1]], ids=repr)
def test_plus_times_amount_is_a_literal_integer(amount):
    assert error({"plusTime": ["2021-06-01", amount, "day"]}, {"n": 1}) == "amount_not_integer (plusTime)"


def test_plus_time_takes_an_integral_float_amount():
    assert plus("2021-06-01", 2.0, "day") == at("2021-06-03T00:00:00+00:00")


@pytest.mark.parametrize("unit", ["days", "week", "minute", "Day", "", None, 1, ["day"], {"var": "u"}], ids=repr)
def test_plus_times_unit_is_one_of_four(unit):
    assert error({"plusTime": ["2021-06-01", 1, unit]}, {"u": "day"}) == "unknown_time_unit (plusTime)"


@pytest.mark.parametrize("value", [None, 20210601, ["2021"], DateTime(0)], ids=repr)
def test_plus_time_reads_a_string_only(value):
    assert error({"plusTime": [{"var": "v"}, 0, "day"]}, {"v": value}) == "not_a_string (plusTime)"
    assert error({"plusTime": [{"plusTime": ["2021", 0, "day"]}, 0, "day"]}) == "not_a_string (plusTime)"


def test_plus_time_reads_its_date_from_the_data():
    assert evaluate({"plusTime": [{"var": "d"}, 1, "day"]}, {"d": "2021-06-01"}) == at("2021-06-02T00:00:00+00:00")


# --- dccDateOfBirth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dob, last", [
    ("1990", "1990-12-31"), ("1990-02", "1990-02-28"), ("2000-02", "2000-02-29"), ("1900-02", "1900-02-28"),
    ("2024-02", "2024-02-29"), ("1990-04", "1990-04-30"), ("1990-12", "1990-12-31"), ("1990-01", "1990-01-31"),
    ("1990-06-15", "1990-06-15"), ("0000", "0000-12-31"),
])
def test_date_of_birth_is_the_last_day_it_can_be(dob, last):
    assert evaluate({"dccDateOfBirth": [{"var": "dob"}]}, {"dob": dob}) == DateTime(utc(last))


def test_date_of_birth_agrees_with_plus_time_on_full_dates():
    assert evaluate({"dccDateOfBirth": ["1990-06-15"]}, None) == plus("1990-06-15", 0, "hour")


@pytest.mark.parametrize("dob", ["", "90", "1990-6", "1990-02-30", "1990-13", "1990-00", "1990-06-15T00:00:00",
                                 "1990-06-15Z", "1990-XX-XX"])
def test_date_of_birth_refuses_what_is_no_date(dob):
    assert error({"dccDateOfBirth": [dob]}) == "invalid_date (dccDateOfBirth)"


@pytest.mark.parametrize("value", [None, 1990, ["1990"]], ids=repr)
def test_date_of_birth_reads_a_string_only(value):
    assert error({"dccDateOfBirth": [{"var": "v"}]}, {"v": value}) == "not_a_string (dccDateOfBirth)"


@pytest.mark.parametrize("dob, minor", [("2003-06-02", True), ("2003-06-01", False), ("2003-06", True),
                                        ("2003-05", False), ("2003", True), ("2002", False)])
def test_the_specifications_minor_check(dob, minor):
    rule = {"after": [{"dccDateOfBirth": [{"var": "payload.dob"}]},
                      {"plusTime": [{"var": "external.validationClock"}, -18, "year"]}]}
    data = {"payload": {"dob": dob}, "external": {"validationClock": "2021-06-01T12:00:00Z"}}
    assert evaluate(rule, data) is minor


# --- reduce ------------------------------------------------------------------------------------------

SUM = {"+": [{"var": "accumulator"}, {"var": "current"}]}


def test_reduce_folds_from_the_left():
    assert evaluate({"reduce": [{"var": "xs"}, SUM, 0]}, {"xs": [1, 2, 3, 4]}) == 10
    trail = {"if": [{"var": "accumulator"}, [{"var": "accumulator"}, {"var": "current"}], [{"var": "current"}]]}
    assert evaluate({"reduce": [[1, 2, 3], trail, []]}, None) == [[[1], 2], 3]
    qty = {"+": [{"var": "accumulator"}, {"var": "current.qty"}]}
    assert evaluate({"reduce": [{"var": "d"}, qty, 0]}, {"d": [{"qty": 1}, {"qty": 2}, {"qty": 3}]}) == 6


def test_reduce_of_an_empty_array_or_null_is_its_initial_value():
    assert evaluate({"reduce": [[], BOOM, {"var": "i"}]}, {"i": 7}) == 7
    assert evaluate({"reduce": [{"var": "xs"}, BOOM, {"var": "i"}]}, {"i": 7}) == 7


def test_reduces_function_sees_only_the_accumulator_and_the_current_item():
    seen = {"reduce": [[1], [{"var": "accumulator"}, {"var": "current"}, {"var": "x"}, {"var": "data.x"}], "init"]}
    assert evaluate(seen, {"x": 5}) == ["init", 1, None, None]


@pytest.mark.parametrize("value", ["abc", 1, {"a": 1}, True], ids=repr)
def test_reduce_of_anything_else_is_an_error(value):
    assert error({"reduce": [{"var": "v"}, SUM, 0]}, {"v": value}) == "not_an_array (reduce)"


# --- extractFromUVCI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("uvci, index, fragment", [
    ("a::c/#/f", 0, "a"), ("a::c/#/f", 1, ""), ("a::c/#/f", 2, "c"), ("a::c/#/f", 3, ""), ("a::c/#/f", 4, ""),
    ("a::c/#/f", 5, "f"), ("a::c/#/f", 6, None), ("a::c/#/f", -1, None), ("a::c/#/f", 10**30, None),
    ("URN:UVCI:01:NL:187/37512422923", 0, "01"), ("URN:UVCI:01:NL:187/37512422923", 1, "NL"),
    ("URN:UVCI:01:NL:187/37512422923", 3, "37512422923"), ("01:NL:187/37512422923", 2, "187"),
    ("URN:UVCI:", 0, ""), ("urn:uvci:01", 0, "urn"), ("x:URN:UVCI:01", 1, "URN"), ("", 0, ""), ("", 1, None),
    ("URN:UVCI:URN:UVCI:01", 0, "URN"),  # the prefix goes once
])
def test_extract_from_uvci_splits_on_the_separators(uvci, index, fragment):
    assert evaluate({"extractFromUVCI": [{"var": "uci"}, index]}, {"uci": uvci}) == fragment


def test_extract_from_uvci_takes_an_integral_float_index():
    assert evaluate({"extractFromUVCI": ["a/b", 1.0]}, None) == "b"


def test_extract_from_uvci_of_null_is_null():
    assert evaluate({"extractFromUVCI": [{"var": "missing"}, 0]}, {}) is None


@pytest.mark.parametrize("value", [1, ["a"], {"a": 1}, True], ids=repr)
def test_extract_from_uvci_reads_a_string_or_null(value):
    assert error({"extractFromUVCI": [{"var": "v"}, 0]}, {"v": value}) == "not_a_string (extractFromUVCI)"


@pytest.mark.parametrize("index", [1.5, "1", True, None, {"var": "i"}], ids=repr)
def test_extract_from_uvcis_index_is_a_literal_integer(index):
    assert error({"extractFromUVCI": ["a/b", index]}, {"i": 1}) == "index_not_integer (extractFromUVCI)"


# --- operation objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form, text", [
    ({}, "not_one_key"), ({"var": "x", "if": [1, 2, 3]}, "not_one_key"),
    ({"all": [1]}, "unknown_operation (all)"), ({"map": []}, "unknown_operation (map)"),
    ({"==": [1, 1]}, "unknown_operation (==)"), ({"or": [1, 1]}, "unknown_operation (or)"),
    ({"var ": "x"}, "operands_not_array (var )"), ({1: [1]}, "unknown_operation (1)"),
    ({"if": "x"}, "operands_not_array (if)"), ({"!": True}, "operands_not_array (!)"),
    ({"and": {"0": 1, "1": 1}}, "operands_not_array (and)"), ({"all": None}, "operands_not_array (all)"),
])
def test_an_operation_not_of_the_form_is_an_error(form, text):
    assert error(form) == text


# --- the caps ------------------------------------------------------------------------------------------


def nested(depth: int, inner: object = True) -> object:
    """`depth` expressions, each the only operand of the next: a ! around a ! … around `inner`."""
    expr = inner
    for _ in range(depth - 1):
        expr = {"!": [expr]}
    return expr


def test_an_expression_nested_max_depth_deep_is_evaluated_and_one_deeper_refused():
    assert evaluate(nested(MAX_DEPTH), None) is False  # 63 negations of true
    assert error(nested(MAX_DEPTH + 1)) == "too_deep"
    assert validate(nested(MAX_DEPTH)) == []
    assert validate(nested(MAX_DEPTH + 1)) == ["too_deep at " + "/!/0" * MAX_DEPTH]


def test_arrays_and_reduces_function_count_in_the_depth():
    arrays: object = 1
    for _ in range(MAX_DEPTH - 1):
        arrays = [arrays]
    assert evaluate(arrays, None) == arrays and error([arrays]) == "too_deep"
    assert evaluate({"reduce": [[1], nested(MAX_DEPTH - 1), 0]}, None) is True
    assert error({"reduce": [[1], nested(MAX_DEPTH), 0]}) == "too_deep"
    assert evaluate({"reduce": [[], nested(MAX_DEPTH), 0]}, None) == 0  # never evaluated


def test_validate_counts_arrays_in_the_depth():
    arrays: object = 1
    for _ in range(MAX_DEPTH - 1):
        arrays = [arrays]
    assert validate(arrays) == []
    assert validate([arrays]) == ["too_deep at " + "/0" * MAX_DEPTH]
    assert validate({"and": [1, arrays]}) == ["too_deep at /and/1" + "/0" * (MAX_DEPTH - 1)]


def test_validate_of_any_depth_never_recurses_past_the_cap():
    deep = nested(100_000)
    assert validate(deep) == ["too_deep at " + "/!/0" * MAX_DEPTH]
    assert reason(deep) == "too_deep"


def test_evaluation_stops_after_max_steps_of_work():
    count = {"+": [{"var": "accumulator"}, 1]}  # three nodes a step of the fold, and the fold's own three
    fits = (MAX_STEPS - 3) // 3
    assert evaluate({"reduce": [{"var": "xs"}, count, 0]}, {"xs": [0] * fits}) == fits
    assert error({"reduce": [{"var": "xs"}, count, 0]}, {"xs": [0] * (fits + 1)}) == "too_much_work"


def test_in_pays_for_its_arrays_length_and_string_operations_for_the_strings():
    under = MAX_STEPS - 3  # the in and its two operands: exactly MAX_STEPS with the array
    assert evaluate({"in": ["x", {"var": ""}]}, [0] * under) is False
    assert error({"in": ["x", {"var": ""}]}, [0] * (under + 1)) == "too_much_work"
    assert evaluate({"extractFromUVCI": [{"var": ""}, 0]}, "a" * (MAX_STEPS - 2)) == "a" * (MAX_STEPS - 2)
    assert error({"extractFromUVCI": [{"var": ""}, 0]}, "a" * (MAX_STEPS - 1)) == "too_much_work"
    long_date = "2021-06-01T00:00:00." + "1" * (MAX_STEPS - 22)
    assert plus(long_date) == at("2021-06-01T00:00:00.111+00:00")
    assert error({"plusTime": [{"var": ""}, 0, "day"]}, long_date + "1") == "too_much_work"
    assert error({"dccDateOfBirth": [{"var": ""}]}, "1" * (MAX_STEPS - 1)) == "too_much_work"
    assert error({"dccDateOfBirth": [{"var": ""}]}, "1" * (MAX_STEPS - 2)) == "invalid_date (dccDateOfBirth)"


def test_each_evaluation_has_its_own_budget():
    xs = {"xs": [0] * (MAX_STEPS // 4)}
    for _ in range(5):
        assert evaluate({"reduce": [{"var": "xs"}, {"var": "current"}, 0]}, xs) == 0


# --- nothing personal in an error ----------------------------------------------------------------------

NAME, DOB = "Müller-Lüdenscheidt", "1964-08-12"


@pytest.mark.parametrize("expr", [
    {"+": [{"var": "nam"}, 1]}, {"<": [{"var": "nam"}, 1]}, {"after": [{"var": "nam"}, DAY1]},
    {"!": [{"var": "x"}]}, {"===": [{"var": "person"}, 1]}, {"in": [{"var": "nam"}, {"var": "nam"}]},
    {"plusTime": [{"var": "nam"}, 0, "day"]}, {"dccDateOfBirth": [{"var": "dob_time"}]},
    {"reduce": [{"var": "nam"}, 1, 0]}, {"extractFromUVCI": [{"var": "person"}, 0]},
    {"plusTime": [{"var": "dob"}, 10**9, "year"]},
], ids=str)
def test_an_error_names_the_problem_never_the_data(expr):
    data = {"nam": NAME, "dob": DOB, "dob_time": DOB + "T00:00:00", "x": 0.5, "person": [NAME, DOB]}
    text = error(expr, data)
    assert NAME not in text and DOB not in text and "Müller" not in text and "1964" not in text


# --- nothing escapes but CertLogicError -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["2021-06-01", "2021", "2020-02", "URN:UVCI:01:NL:1/2", "2021-06-01T00:00:00+1", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)
OPERATORS = sorted(certlogic._ARITY) + ["var", "all", ""]
expressions = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=4)
    | st.builds(lambda op, operands: {op: operands}, st.sampled_from(OPERATORS), st.lists(inner, max_size=4))
    | st.builds(lambda path: {"var": path}, st.sampled_from(["", "a", "a.0", "0", "a.b.c", "x.", 1])),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True)  # the volume is `qrgate fuzz certlogic`
@given(expressions, json_values)
def test_evaluate_raises_nothing_but_certlogic_errors_and_validate_nothing(expr, data):
    found = validate(expr)
    assert all(isinstance(f, str) and re.fullmatch(r"[a-z_]+ at /\S*", f) for f in found)
    try:
        evaluate(expr, data)
    except CertLogicError as exc:
        if exc.reason in STRUCTURAL:
            assert found, exc.reason  # what evaluation refuses as malformed, validation names


# --- validate ------------------------------------------------------------------------------------------

STRUCTURAL = {"not_an_expression", "non_integer_number", "not_one_key", "operands_not_array", "unknown_operation",
              "var_path_not_string", "invalid_var_path", "wrong_arity", "amount_not_integer", "unknown_time_unit",
              "index_not_integer", "too_deep"}


@pytest.mark.parametrize("expr", [
    "", "foo", 0, 42, -1, 2.0, True, False, [], [1, "a", [True]], {"var": ""}, {"var": "x.0.y"},
    {"if": [{"var": "x"}, 1, [2]]}, {"and": [1, 2, 3, 4]}, {"===": [1, 1]}, {"in": [1, []]}, {"+": [1, 1]},
    {"<": [1, 2]}, {">=": [1, 2, 3]}, {"not-after": [1, 2]}, {"before": [1, 2, 3]}, {"!": [0]},
    {"plusTime": [{"var": "d"}, -3, "year"]}, {"plusTime": ["2021", 2.0, "hour"]},
    {"reduce": [{"var": "x"}, {"+": [{"var": "accumulator"}, 1]}, 0]}, {"extractFromUVCI": [{"var": "u"}, 1]},
    {"dccDateOfBirth": [{"var": "dob"}]},
], ids=str)
def test_valid_expressions_have_no_issues(expr):
    assert validate(expr) == []


@pytest.mark.parametrize("expr, issues", [
    (None, ["not_an_expression at /"]), (3.14, ["non_integer_number at /"]), (b"x", ["not_an_expression at /"]),
    (float("nan"), ["non_integer_number at /"]), ({1, 2}, ["not_an_expression at /"]),
    ({}, ["not_one_key at /"]), ({"foo": "bar", "alice": "bob"}, ["not_one_key at /"]),
    ({"all": "foo"}, ["operands_not_array at /"]), ({"all": None}, ["operands_not_array at /"]),
    ({"all": []}, ["unknown_operation at /"]), ({"all": [None]}, ["unknown_operation at /"]),
    ({3: [1]}, ["unknown_operation at /"]),
    ({"var": 0}, ["var_path_not_string at /"]), ({"var": None}, ["var_path_not_string at /"]),
    ({"var": "x."}, ["invalid_var_path at /"]), ({"var": "a..b"}, ["invalid_var_path at /"]),
    ({"if": [1, 2]}, ["wrong_arity at /"]), ({"and": [1]}, ["wrong_arity at /"]),
    ({"<": [1, 2, 3, 4]}, ["wrong_arity at /"]), ({"!": []}, ["wrong_arity at /"]),
    ({"plusTime": ["2021", 1.5, "day"]}, ["amount_not_integer at /"]),
    ({"plusTime": ["2021", 1, "days"]}, ["unknown_time_unit at /"]),
    ({"plusTime": ["2021", {"var": "n"}, ["day"]]}, ["amount_not_integer at /", "unknown_time_unit at /"]),
    ({"plusTime": ["2021"]}, ["wrong_arity at /"]),
    ({"extractFromUVCI": ["a", "0"]}, ["index_not_integer at /"]), ({"extractFromUVCI": ["a"]}, ["wrong_arity at /"]),
    ({"dccDateOfBirth": ["1990", "1991"]}, ["wrong_arity at /"]),
    ([1, None, [2, 2.5]], ["not_an_expression at /1", "non_integer_number at /2/1"]),
    ({"and": [{"all": [1]}, 3.5, {"if": [1]}, {"plusTime": [{"var": "x."}, 1.5, "week"]}]},
     ["unknown_operation at /and/0", "non_integer_number at /and/1", "wrong_arity at /and/2",
      "amount_not_integer at /and/3", "unknown_time_unit at /and/3", "invalid_var_path at /and/3/plusTime/0"]),
    ({"if": [{"var": 1}, None, {"reduce": [[], {"!": [None]}, 0]}]},
     ["var_path_not_string at /if/0", "not_an_expression at /if/1", "not_an_expression at /if/2/reduce/1/!/0"]),
    ({"if": [1, 2, 3, None]}, ["wrong_arity at /"]),  # past what an operation takes, operands are not looked at
    ({"!": [1, None]}, ["wrong_arity at /"]), ({"and": [None, None]}, ["not_an_expression at /and/0",
                                                                      "not_an_expression at /and/1"]),
    ({"extractFromUVCI": [None, 0]}, ["not_an_expression at /extractFromUVCI/0"]),
    ({"dccDateOfBirth": [None]}, ["not_an_expression at /dccDateOfBirth/0"]),
    ({">": [None, 1, None]}, ["not_an_expression at />/0", "not_an_expression at />/2"]),
], ids=str)
def test_invalid_expressions_are_named_with_where(expr, issues):
    assert validate(expr) == issues


def test_validate_and_evaluate_take_what_a_decoder_makes_without_raising_else():
    for odd in (object(), Decimal("1.5"), Fraction(1, 2), frozenset([1]), cbor2.CBORTag(99, 1), b"x"):
        for expr in (odd, [odd], {"var": odd}, {"plusTime": ["2021", odd, odd]}, {"extractFromUVCI": ["x", odd]},
                     {odd: [1]}, {(1, 2): [odd]}, {None: []}, {1.5: []}):
            assert validate(expr) != []
            with pytest.raises(CertLogicError):
                evaluate(expr, odd)


def test_a_date_time_made_by_python_is_no_literal():
    assert validate(datetime(2021, 6, 1, tzinfo=UTC)) == validate(date(2021, 6, 1)) == ["not_an_expression at /"]
