"""The shipped alerting rules (monitoring/qrgate-rules.yml) under `promtool test rules`, and proof that its
tests bite: moving any alert's `for:` by a minute, either way, must make them fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES, TESTS = MONITORING / "qrgate-rules.yml", MONITORING / "qrgate-rules.test.yml"


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: Debian's `prometheus` package has it (./dev test installs it)"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def alerts(rules: dict | None = None) -> list[dict]:
    """The alerting rules of `rules`, or of the shipped file."""
    rules = rules or yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_alert_passes_its_promtool_unit_tests():
    run = promtool("test", "rules", TESTS.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_has_a_unit_test():
    tested = {case["alertname"] for test in yaml.safe_load(TESTS.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in alerts()}


def test_the_example_prometheus_config_and_its_rules_are_valid():
    run = promtool("check", "config", "prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in run.stdout


def _minutes(duration: str) -> int:
    assert duration.endswith("m"), duration  # every shipped `for:` is in minutes
    return int(duration[:-1])


@pytest.mark.parametrize("shift", [-1, 1])
@pytest.mark.parametrize("name", [rule["alert"] for rule in alerts()])
def test_an_alert_whose_for_moves_by_a_minute_fails_its_tests(tmp_path, name, shift):
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [r for r in alerts(rules) if r.get("alert") == name]
    rule["for"] = f"{_minutes(rule['for']) + shift}m"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    run = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert run.returncode != 0, f"{name} with for: {rule['for']} still passes"
    assert name in run.stdout + run.stderr
