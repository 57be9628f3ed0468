"""CertLogic, the JsonLogic dialect of the EU member states' DCC business rules: `evaluate` and `validate`.

As its specification 1.3.3 defines it (tests/data/certlogic/SPECIFICATION.md); its test suites pass
(`qrgate dcc certlogic`). Our own, pure and small: no JsonLogic library knows CertLogic's operations and
truthiness, and nothing here is `eval`.

The expression is a signed rule; the data is a certificate's payload, signed but written by whoever issued
it, so evaluation is bounded whatever either holds: it raises nothing but CertLogicError, refuses an
expression nested more than MAX_DEPTH deep, and stops after MAX_STEPS units of work (an expression node
each; `in` also its array's length, a string operation its string's). An error's text names the problem and
the operation, never a value: the data holds a person's name and birth date.

The specification leaves these open; each is taken the strict way, as an error rather than a guess:
- an integer is a number without a fractional part (JSON Schema's "integer", JavaScript's
  Number.isInteger): 2.0 is 2; a boolean is no integer; other numbers are neither truthy nor falsy;
- an `if` guard neither truthy nor falsy is an error, as it is for `and` and `!` (and the reference);
  `and` holds its last operand to that too;
- `===` compares null, booleans, numbers and strings, by kind and value; arrays, objects and date-times
  are an error (platforms compare them differently: the specification warns it "works reliably" only
  on strings and integers). `in` compares its left operand with each item the same way (the sentence
  on their types is cut short in the specification): the left operand must be one of those kinds, and
  an item of another kind is not equal to it;
- `var`: a fragment of ASCII digits indexes an array, any fragment names an object's key, and anything
  else, a string or a number included, has no fragments (null). A path `validate` refuses is an error;
- dates: an impossible date or time (2021-02-30, month 13, 24:00, an offset past 23:59) is an error, not
  undefined behaviour, and so is a result outside JavaScript's Date range (±8.64e15 ms);
- `plusTime` by years is JavaScript's setUTCFullYear, as the specification's table has it (2020-02-29
  plus a year is 2021-03-01), not the reference implementation's correction of that day (which reads
  the day of the week, and gives 2021-02-28).

The reasons (CertLogicError.reason, and `validate`'s, each followed by " at POINTER", the JSON Pointer of
the offending expression, "/" for the whole):
  not_an_expression    null, or a value JSON has no literal for (an object is an operation)
  non_integer_number   a number literal that is not an integer
  not_one_key          an operation object with no key or several
  operands_not_array   an operation's operands are not an array
  unknown_operation    an operator CertLogic does not have
  var_path_not_string  `var` not given a string
  invalid_var_path     a path with an empty fragment ("x.", "a..b", ".")
  wrong_arity          too few or too many operands for the operation
  amount_not_integer   plusTime's amount (a literal) is not an integer
  unknown_time_unit    plusTime's unit (a literal) is not year, month, day or hour
  index_not_integer    extractFromUVCI's index (a literal) is not an integer
  too_deep             nested more than MAX_DEPTH expressions deep
and those only evaluation finds, with the operation they happened in:
  neither_truthy_nor_falsy  an `if` guard, `and` or `!` operand that is neither
  not_an_integer       an operand of + < > <= >= that is not an integer
  not_a_date_time      an operand of after, before, not-after, not-before that is not a date-time
  not_comparable       an operand of === or `in`'s left one that is an array, object or date-time
  not_an_array         `in`'s right operand, or reduce's non-null operand, that is not an array
  not_a_string         the text plusTime, dccDateOfBirth or extractFromUVCI read is not a string
                       (extractFromUVCI takes null, and answers null)
  invalid_date         a text not in an allowed format, or no such date or time
  date_out_of_range    a plusTime result outside JavaScript's Date range
  too_much_work        MAX_STEPS reached
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

from firmware.errors import QrgateError

ENGINE_VERSION = "1.3.3"  # the specification's version: a rule asking for a higher major needs another engine
MAX_DEPTH = 64  # expressions nested in one another (the whole is 1): the evaluator's recursion
MAX_STEPS = 50_000  # units of work one evaluation may do: a rule is hundreds; ~0.15 s on one x86 core


class CertLogicError(QrgateError, ValueError):
    """What the specification calls an error, or a cap reached; `reason` is its name (see the module)."""

    def __init__(self, reason: str, operation: object = None) -> None:
        super().__init__(reason if operation is None else f"{reason} ({operation})")
        self.reason = reason


@dataclass(frozen=True)
class DateTime:
    """A date-time, which only plusTime and dccDateOfBirth make: milliseconds since 1970-01-01T00:00:00Z."""

    millis: int


_COMPARISONS = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}
_DATE_COMPARISONS = {"before": operator.lt, "after": operator.gt, "not-after": operator.le,
                     "not-before": operator.ge}
# The operations and how many operands each takes (None: no most).
_ARITY: dict[str, tuple[int, int | None]] = {
    "if": (3, 3), "===": (2, 2), "in": (2, 2), "+": (2, 2), "and": (2, None), "!": (1, 1),
    **dict.fromkeys([*_COMPARISONS, *_DATE_COMPARISONS], (2, 3)),
    "plusTime": (3, 3), "reduce": (3, 3), "extractFromUVCI": (2, 2), "dccDateOfBirth": (1, 1),
}
_UNITS = ("year", "month", "day", "hour")  # a tuple: `in` on it compares, where a set would hash a list


def _is_integer(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())


# Operands that are literals, not expressions: operation -> {position: (its test, the reason it fails)}.
_LITERALS: dict[str, dict[int, tuple[Callable[[object], bool], str]]] = {
    "plusTime": {1: (_is_integer, "amount_not_integer"), 2: (lambda unit: unit in _UNITS, "unknown_time_unit")},
    "extractFromUVCI": {1: (_is_integer, "index_not_integer")},
}


def _literal_problem(expr: object) -> str | None:
    """Why `expr`, neither array nor object, is no CertLogic literal; None when it is one."""
    if isinstance(expr, (str, bool)) or _is_integer(expr):
        return None
    return "non_integer_number" if isinstance(expr, (int, float)) else "not_an_expression"


def _operation(expr: dict[object, object]) -> tuple[object, Any, list[str]]:
    """An operation object's operator, its operands, and why it is not one the specification allows.

    (Any: the operands of an operation without problems are a list of as many as it takes.)"""
    if len(expr) != 1:
        return None, None, ["not_one_key"]
    [(op, operands)] = expr.items()
    if op == "var":
        if not isinstance(operands, str):
            return op, operands, ["var_path_not_string"]
        return op, operands, [] if operands == "" or all(operands.split(".")) else ["invalid_var_path"]
    if not isinstance(operands, list):
        return op, operands, ["operands_not_array"]
    if not isinstance(op, str) or op not in _ARITY:
        return op, operands, ["unknown_operation"]
    least, most = _ARITY[op]
    problems = [] if least <= len(operands) <= (most or len(operands)) else ["wrong_arity"]
    for i, (test, reason) in _LITERALS.get(op, {}).items():
        if i < len(operands) and not test(operands[i]):
            problems.append(reason)
    return op, operands, problems


def validate(expr: object) -> list[str]:
    """Why `expr` is no valid CertLogic expression: "REASON at POINTER" each (the module lists them); [] if valid.

    The specification's validation, as its validation test suite has it: every problem found, an
    operation's own before its operands'. It never raises, whatever `expr` holds."""
    found: list[str] = []
    _validate(expr, "", 1, found)
    return found


def _validate(expr: object, at: str, depth: int, found: list[str]) -> None:
    where = at or "/"
    if depth > MAX_DEPTH:
        found.append(f"too_deep at {where}")
        return
    if isinstance(expr, list):
        for i, item in enumerate(expr):
            _validate(item, f"{at}/{i}", depth + 1, found)
        return
    if not isinstance(expr, dict):
        problem = _literal_problem(expr)
        if problem:
            found.append(f"{problem} at {where}")
        return
    op, operands, problems = _operation(expr)
    found.extend(f"{problem} at {where}" for problem in problems)
    if op in _ARITY and isinstance(operands, list):  # a known operation's expression operands, as many as it takes
        literals = _LITERALS.get(str(op), {})
        for i, operand in enumerate(operands[: _ARITY[str(op)][1]]):
            if i not in literals:
                _validate(operand, f"{at}/{op}/{i}", depth + 1, found)


def evaluate(expr: object, data: object) -> object:
    """What `expr` evaluates to on `data`, as the specification defines it; a date-time is a DateTime.

    Raises CertLogicError, and nothing else, for what the specification calls an error and at the caps;
    a rule that raises has not passed. `data` is read, never changed or copied."""
    return _Evaluation().run(expr, data, 1)


class _Evaluation:
    """One evaluation: its work so far, counted against MAX_STEPS."""

    def __init__(self) -> None:
        self.steps = 0

    def charge(self, units: int) -> None:
        self.steps += units
        if self.steps > MAX_STEPS:
            raise CertLogicError("too_much_work")

    def run(self, expr: object, data: object, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise CertLogicError("too_deep")
        self.charge(1)
        if isinstance(expr, list):
            return [self.run(item, data, depth + 1) for item in expr]
        if not isinstance(expr, dict):
            problem = _literal_problem(expr)
            if problem:
                raise CertLogicError(problem)
            return expr
        op, operands, problems = _operation(expr)
        if problems:
            raise CertLogicError(problems[0], op)
        if op == "var":
            return _access(data, str(operands))
        return _OPERATIONS[str(op)](self, str(op), operands, data, depth + 1)

    def if_(self, op: str, operands: list[object], data: object, depth: int) -> object:
        guard, then, else_ = operands
        return self.run(then if _truth(self.run(guard, data, depth), op) else else_, data, depth)

    def and_(self, op: str, operands: list[object], data: object, depth: int) -> object:
        for operand in operands:  # lazily: the first falsy one is the answer, the rest never evaluated
            value = self.run(operand, data, depth)
            if not _truth(value, op):
                return value
        return value

    def not_(self, op: str, operands: list[object], data: object, depth: int) -> object:
        return not _truth(self.run(operands[0], data, depth), op)

    def equal(self, op: str, operands: list[object], data: object, depth: int) -> object:
        left, right = (_comparable(self.run(operand, data, depth), op) for operand in operands)
        return _same(left, right)

    def in_(self, op: str, operands: list[object], data: object, depth: int) -> object:
        item, array = (self.run(operand, data, depth) for operand in operands)
        if not isinstance(array, list):
            raise CertLogicError("not_an_array", op)
        needle = _comparable(item, op)
        self.charge(len(array))
        return any(_same(needle, x) for x in array)

    def plus(self, op: str, operands: list[object], data: object, depth: int) -> object:
        left, right = (_integer(self.run(operand, data, depth), op) for operand in operands)
        return left + right

    def compare(self, op: str, operands: list[object], data: object, depth: int) -> object:
        values = [self.run(operand, data, depth) for operand in operands]
        if op in _COMPARISONS:
            test, keys = _COMPARISONS[op], [_integer(value, op) for value in values]
        else:
            test, keys = _DATE_COMPARISONS[op], [_millis(value, op) for value in values]
        return all(test(a, b) for a, b in zip(keys, keys[1:]))  # the ternary form: a op b, and b op c

    def plus_time(self, op: str, operands: list[object], data: object, depth: int) -> object:
        text, amount, unit = _string(self.run(operands[0], data, depth), op), operands[1], operands[2]
        self.charge(len(text))
        assert isinstance(amount, (int, float))  # what _operation let through
        return DateTime(_plus(_parse(text, op), int(amount), str(unit), op))

    def reduce(self, op: str, operands: list[object], data: object, depth: int) -> object:
        array, function, initial = self.run(operands[0], data, depth), operands[1], operands[2]
        if array is None:
            return self.run(initial, data, depth)
        if not isinstance(array, list):
            raise CertLogicError("not_an_array", op)
        accumulator = self.run(initial, data, depth)
        for current in array:  # the left fold: the function sees only these two, not the outer data
            accumulator = self.run(function, {"accumulator": accumulator, "current": current}, depth)
        return accumulator

    def extract_from_uvci(self, op: str, operands: list[object], data: object, depth: int) -> object:
        uvci, index = self.run(operands[0], data, depth), operands[1]
        if uvci is None:
            return None
        text = _string(uvci, op)
        self.charge(len(text))
        assert isinstance(index, (int, float))  # what _operation let through
        fragments = re.split("[/#:]", text.removeprefix("URN:UVCI:"))
        return fragments[int(index)] if 0 <= index < len(fragments) else None

    def date_of_birth(self, op: str, operands: list[object], data: object, depth: int) -> object:
        text = _string(self.run(operands[0], data, depth), op)
        self.charge(len(text))
        return DateTime(_parse(text, op, dates_only=True))


_Operation = Callable[[_Evaluation, str, list[object], object, int], object]
_OPERATIONS: dict[str, _Operation] = {
    "if": _Evaluation.if_, "and": _Evaluation.and_, "!": _Evaluation.not_, "===": _Evaluation.equal,
    "in": _Evaluation.in_, "+": _Evaluation.plus,
    **dict.fromkeys([*_COMPARISONS, *_DATE_COMPARISONS], _Evaluation.compare),
    "plusTime": _Evaluation.plus_time, "reduce": _Evaluation.reduce,
    "extractFromUVCI": _Evaluation.extract_from_uvci, "dccDateOfBirth": _Evaluation.date_of_birth,
}


def _truth(value: object, op: str) -> bool:
    """Truthy (True) or falsy (False) as CertLogic has them; anything else is an error."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    if _is_integer(value):
        return value != 0
    raise CertLogicError("neither_truthy_nor_falsy", op)


def _integer(value: object, op: str) -> int:
    if not _is_integer(value):
        raise CertLogicError("not_an_integer", op)
    assert isinstance(value, (int, float))
    return int(value)


def _millis(value: object, op: str) -> int:
    if not isinstance(value, DateTime):
        raise CertLogicError("not_a_date_time", op)
    return value.millis


def _string(value: object, op: str) -> str:
    if not isinstance(value, str):
        raise CertLogicError("not_a_string", op)
    return value


def _comparable(value: object, op: str) -> object:
    """`value` if === compares it (null, a boolean, number or string), else an error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CertLogicError("not_comparable", op)


def _same(a: object, b: object) -> bool:
    """Equal in kind and value: true is not 1, and an array is equal to no scalar."""
    return _kind(a) is _kind(b) and a == b


def _kind(value: object) -> type:
    return bool if isinstance(value, bool) else float if isinstance(value, int) else type(value)


_INDEX = re.compile("[0-9]{1,9}")  # a longer index is past the end of any array a certificate holds


def _access(data: object, path: str) -> object:
    """`var`: the value at `path` in `data`, or None where there is none."""
    if path == "":
        return data
    value = data
    for fragment in path.split("."):
        if isinstance(value, dict):
            value = value.get(fragment)
        elif isinstance(value, list) and _INDEX.fullmatch(fragment):
            index = int(fragment)
            value = value[index] if index < len(value) else None
        else:
            return None
    return value


# --- dates -------------------------------------------------------------------------------------------

# YYYY, YYYY-MM, YYYY-MM-DD, or a date and hh:mm:ss, with a fraction of any length and an offset
# (Z, [+-]h, hh, hmm, hhmm, h:mm, hh:mm) each optional. [0-9], not \d: \d takes any script's digits.
_DATE = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:Z|(?P<sign>[+-])(?P<off_hours>[0-9]{1,2})(?::?(?P<off_minutes>[0-9]{2}))?)?)?)?)?")
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_MAX_MS = 8_640_000_000_000_000  # JavaScript's Date range: ±100,000,000 days around 1970
# The Gregorian calendar repeats every 400 years (146,097 days); `date` covers years 1 to 9999 only, so
# dates are mapped into 2000..2399 and the cycles counted apart.
_CYCLE_DAYS = 146_097
_Y2K = date(2000, 1, 1).toordinal()
_EPOCH = date(1970, 1, 1).toordinal()


def _days(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to that date; the month and day may run over, as in JavaScript's MakeDay."""
    cycles, months = divmod((year - 2000) * 12 + month - 1, 400 * 12)
    years, month0 = divmod(months, 12)
    return date(2000 + years, month0 + 1, 1).toordinal() - _EPOCH + cycles * _CYCLE_DAYS + day - 1


def _civil(days: int) -> tuple[int, int, int]:
    """The (year, month, day) `days` after 1970-01-01."""
    cycles, rest = divmod(days + _EPOCH - _Y2K, _CYCLE_DAYS)
    d = date.fromordinal(_Y2K + rest)
    return d.year + 400 * cycles, d.month, d.day


def _parse(text: str, op: str, *, dates_only: bool = False) -> int:
    """Milliseconds since 1970 of a date or date-time in an allowed format (dccDateOfBirth: a date only).

    A partial date is the last day it can be (YYYY: 31 December); no time is midnight, no offset Z, and
    a fraction is cut (not rounded) to milliseconds."""
    m = _DATE.fullmatch(text)
    if m is None or (m["hour"] is not None and dates_only):
        raise CertLogicError("invalid_date", op)
    year, month = int(m["year"]), int(m["month"] or 12)
    if not 1 <= month <= 12:
        raise CertLogicError("invalid_date", op)
    last = _days(year, month + 1, 1) - _days(year, month, 1)
    day = int(m["day"] or last)
    hour, minute, second, off_hours, off_minutes = (
        int(m[part] or 0) for part in ("hour", "minute", "second", "off_hours", "off_minutes"))
    if not 1 <= day <= last or hour > 23 or minute > 59 or second > 59 or off_hours > 23 or off_minutes > 59:
        raise CertLogicError("invalid_date", op)
    offset = (off_hours * 60 + off_minutes) * (-1 if m["sign"] == "-" else 1)
    minutes = (_days(year, month, day) * 24 + hour) * 60 + minute - offset
    return minutes * 60_000 + second * 1000 + int((m["fraction"] or "")[:3].ljust(3, "0"))


def _plus(millis: int, amount: int, unit: str, op: str) -> int:
    """JavaScript's `setUTC<unit>(getUTC<unit>() + amount)`: a month past its length runs into the next."""
    if unit == "hour":
        result = millis + amount * _HOUR_MS
    elif unit == "day":
        result = millis + amount * _DAY_MS
    else:
        days, time_of_day = divmod(millis, _DAY_MS)
        year, month, day = _civil(days)
        result = _days(year, month + amount * (12 if unit == "year" else 1), day) * _DAY_MS + time_of_day
    if abs(result) > _MAX_MS:
        raise CertLogicError("date_out_of_range", op)
    return result
