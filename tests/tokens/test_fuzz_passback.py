"""`qrgate fuzz passback`: a sample finds nothing, reaches every check and holds every input to 50 ms; and the
oracle is live: a parser that accepts too much, or raises, is reported."""

from __future__ import annotations

import json

import cbor2
import pytest
from fuzz_kit import assert_found_nothing, assert_reaches

from firmware import cli
from firmware.passback import message
from firmware.passback.message import Note
from lab.fuzz import engine as fuzz
from lab.fuzz import passback as fuzz_passback
from lab.fuzz import targets

COUNT = 20_000
VERDICTS = {"accepted", "too_large", "bad_version", "bad_hash", "bad_time", "not_preferred", "bad_shape", "bad_cbor"}


@pytest.fixture(scope="module")
def result():
    return targets.run("passback", count=COUNT, workers=2, seed=1)


def test_a_sample_of_notes_finds_nothing(result):
    assert_found_nothing(result, COUNT, fuzz_passback.MAX_VERIFY_US)


def test_the_mutants_reach_every_check(result):
    assert_reaches(result, VERDICTS, result["verdicts"].get("accepted", 0))


def test_the_model_takes_exactly_one_encoding():
    h = bytes(range(16))
    assert fuzz_passback.model(message.encode(h, fuzz.NOW)) == (h, fuzz.NOW)
    for other in (cbor2.dumps([1, h, fuzz.NOW]) + b"\x00", b"\x83\x01\x50" + h + b"\x1b" + fuzz.NOW.to_bytes(8, "big"),
                  cbor2.dumps([1, h, 5]), cbor2.dumps([2, h, fuzz.NOW])):
        assert fuzz_passback.model(other) is None


def test_a_parser_that_accepts_everything_is_reported():
    yes = fuzz_passback.passback_target(0, parse=lambda data: Note(bytes(16), fuzz.NOW))
    result = targets.run(yes, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 1_900 and result["ok"] is False


def test_a_parser_that_takes_any_head_width_is_reported():
    def lenient(data: bytes) -> Note:
        fields = cbor2.loads(data)
        if not (isinstance(fields, list) and len(fields) == 3 and fields[0] == 1):
            raise message.MessageError("not a note")
        return Note(fields[1], fields[2])

    result = targets.run(fuzz_passback.passback_target(0, parse=lenient), count=3_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["ok"] is False


def test_a_parser_that_raises_is_a_crash(tmp_path):
    def flaky(data: bytes) -> Note:
        if len(data) == 23:
            raise IndexError("planted")
        return message.parse(data)

    result = targets.run(fuzz_passback.passback_target(0, parse=flaky), count=2_000, workers=2, seed=0, out=tmp_path)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"IndexError"} and result["ok"] is False


def test_the_command_takes_the_target_and_its_result_holds_no_input(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["fuzz", "passback", "--count", "300", "--workers", "1", "--seed", "3"])
    assert args.func(args) == 0
    [line] = capsys.readouterr().out.splitlines()
    out = json.loads(line)
    assert out["target"] == "passback" and out["ok"] is True and '"hex"' not in line
