"""A member state's business rules at the door, end to end: carried in the signed trust list, run on the real
daemon, named when failed, and a fault when older than the venue allows (issue 21)."""

from __future__ import annotations

import json
import logging
import time

from conftest import load, running_daemon, wait_until, write_frames
from tests.tokens.rules_kit import GERMANY_RULES, GERMANY_VALUESETS
from tests.e2e.test_key_rotation import _publish_retained
from firmware import app, health

RULES_AT_A_VENUE_IN_GERMANY = {"policy": 'accept = ["KP1", "DCC"]', "dcc": 'rules_country = "DE"',
                               "decoder": "hold_s = 0.2"}
UVCI = "URN:UVCI:01:KR:QRGATE0RULES0E2E000001"


def test_a_pass_failing_the_countrys_rule_is_refused_by_the_rules_name(tmp_path, world, pins, caplog):
    world.trust_file.write_bytes(world.trust_list(world.issuers.values(), seq=2, dcc_rules=GERMANY_RULES,
                                                  valuesets=GERMANY_VALUESETS))
    shown = [world.mint_dcc(uvci=UVCI, mp="EU/1/21/1618"),  # a product Germany's value set leaves out
             world.mint_dcc(),  # Comirnaty: in the value set
             world.mint()]
    events = tmp_path / "events.jsonl"
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", shown),
                                           events=f'path = "{events}"', **RULES_AT_A_VENUE_IN_GERMANY))
    decisions: list = []
    with caplog.at_level(logging.DEBUG):
        stats = app.run(cfg, on_decision=decisions.append, pin_factory=pins)
    assert [(d.verdict, d.reason, d.rule) for d in decisions] == [
        ("rejected", "rule_failed", "VR-DE-0001"), ("accepted", None, None), ("accepted", None, None)]
    assert json.loads(events.read_text().splitlines()[0])["rule"] == "VR-DE-0001"
    assert stats.decisions["rejected:rule_failed:VR-DE-0001"] == 1
    assert stats.sealed == 2
    for where, data in [("log", caplog.text), ("events", events.read_text())]:
        assert UVCI not in data and "EU/1/21/1618" not in data, where


def test_rules_older_than_the_venue_allows_fault_dccs_until_a_fresh_list_arrives_on_the_wire(
        tmp_path, world, pins, broker):
    """A list issued two hours ago, for a venue that allows one: DCCs get the fault, KP1 tokens are still judged;
    the authority's next list, on the broker, clears it with no one on site."""
    world.trust_file.write_bytes(world.trust_list(world.issuers.values(), seq=2, dcc_rules=GERMANY_RULES,
                                                  valuesets=GERMANY_VALUESETS, issued_at=int(time.time()) - 7200))
    pass_, token = world.mint_dcc(), world.mint(ttl=300)
    cfg = load(tmp_path, world.config_toml(
        tmp_path / "state", write_frames(tmp_path / "frames", [pass_, token], gap_frames=10), mqtt_port=broker.port,
        camera="loop = true", policy='accept = ["KP1", "DCC"]', decoder="hold_s = 0.2",
        dcc='rules_country = "DE"\nmax_list_age_h = 1'))
    decisions: list = []
    status_file = cfg.device.runtime_dir / health.FILE
    with running_daemon(cfg, pins, on_decision=decisions.append):
        # The stale rules hold DCCs back, while the KP1 token is judged (and accepted) all the same.
        wait_until(lambda: {("fault", "dcc_rules_stale", None), ("accepted", None, "naver")}
                   <= {(d.verdict, d.reason, d.iss) for d in decisions})
        wait_until(lambda: status_file.exists() and "dcc_rules" in json.loads(status_file.read_text())["faults"])
        assert "issued 2 h ago" in json.loads(status_file.read_text())["faults"]["dcc_rules"]
        judged = len(decisions)
        _publish_retained(broker.port, "qrgate/v1/trustlist",
                          world.trust_list(world.issuers.values(), seq=3, dcc_rules=GERMANY_RULES,
                                           valuesets=GERMANY_VALUESETS))
        wait_until(lambda: any(d.verdict != "fault" and d.iss == "KR" for d in decisions[judged:]))
        wait_until(lambda: "dcc_rules" not in json.loads(status_file.read_text())["faults"])


def test_a_country_the_list_carries_no_rules_for_is_a_fault_for_dccs(tmp_path, world, pins):
    world.trust_file.write_bytes(world.trust_list(world.issuers.values(), seq=2, dcc_rules=GERMANY_RULES,
                                                  valuesets=GERMANY_VALUESETS))
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", [world.mint_dcc()]),
                                           policy='accept = ["DCC"]', dcc='rules_country = "FR"'))
    decisions: list = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins)
    assert [(d.verdict, d.reason) for d in decisions] == [("fault", "dcc_rules_missing")]
