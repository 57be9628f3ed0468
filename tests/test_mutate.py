"""`./dev mutate`'s reading of docs/mutation.md: what it lists as equivalent, and what it leaves."""

from __future__ import annotations

from lab import mutate


def test_only_the_mutants_above_left_count_as_equivalent(tmp_path, monkeypatch):
    doc = tmp_path / "mutation.md"
    doc.write_text("| `firmware.gate.xǁGateǁdecide__mutmut_21` | … |\n"
                   "| `firmware.leds.feedback.x_default_pin_factory__mutmut_3` | … |\n"
                   "## Left\n| `firmware.store.buffer.xǁSqliteRecordStoreǁscrub__mutmut_8` | … |\n")
    monkeypatch.setattr(mutate, "EQUIVALENTS", doc)
    assert mutate._equivalents() == {"firmware.gate.xǁGateǁdecide__mutmut_21",
                                     "firmware.leds.feedback.x_default_pin_factory__mutmut_3"}


def test_every_core_module_names_a_file_and_tests_that_exist():
    for name, module in mutate.CORE.items():
        assert (mutate.REPO / module.file).is_file(), name
        assert module.tests and all((mutate.REPO / t).is_file() for t in module.tests), name
