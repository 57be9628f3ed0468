"""docs/configuration.md is what `qrgate config reference` writes from config.py: the page cannot drift."""

from pathlib import Path

from firmware import cli
from firmware.technician import config_commands

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_page_is_the_code(capsys):
    assert cli.main(["config", "reference"]) == 0
    printed = capsys.readouterr().out
    assert printed == config_commands.reference()
    assert PAGE.read_text() == printed, "run `qrgate config reference > docs/configuration.md`"


def test_every_key_of_every_section_is_on_the_page():
    text = config_commands.reference()
    for key in ("`venue`", "`door_enabled`", "`recheck_s`", "`session_expiry_s`", "## [dcc]"):
        assert key in text
