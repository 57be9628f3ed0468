"""A small scale run end to end: real Mosquitto, real `qrgate custodian ingest` processes, a simulated fleet."""

from __future__ import annotations

import json

import pytest

from custodian import fleet, scale
from firmware import cli


def test_scale_and_fleet_are_custodian_subcommands(monkeypatch, capsys):
    parser = cli.build_parser()
    ran = []
    monkeypatch.setattr(scale, "command", lambda args: ran.append(("scale", args.devices, args.rate, args.ingest)) or 0)
    monkeypatch.setattr(fleet, "command", lambda args: ran.append(("fleet", args.port)) or 0)
    for argv in (["custodian", "scale", "--devices", "10,100", "--rate", "50", "--ingest", "3"],
                 ["custodian", "fleet", "--port", "1884"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert ran == [("scale", [10, 100], 50.0, 3), ("fleet", 1884)]
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["custodian", "scale", "--devices", "10,ten"])
    assert refused.value.code == 2 and "argument --devices: a comma-separated list" in capsys.readouterr().err


def test_a_small_fleet_is_stored_whole_once_and_promptly(tmp_path, capsys):
    status = cli.main(["custodian", "scale", "--devices", "10", "--rate", "200", "--seconds", "3", "--ingest", "2",
                         "--folder", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["devices_connected"] == 10
    assert result["offered_visits"] == 600
    assert result["acked_by_broker"] == result["stored"] == 600
    assert result["lost"] == 0
    assert result["duplicates_stored"] == 0 and result["acked_twice"] == 0 and result["stored_not_acked"] == 0
    latency = result["latency_publish_to_stored_s"]
    assert 0 < latency["median"] <= latency["p99"] <= latency["max"] < 5
    assert 100 < result["stored_per_s"] <= 250
    assert sum(s["stored"] for s in result["ingest_summaries"]) == 600
    assert all(s["received"] > 0 for s in result["ingest_summaries"])  # the shared subscription shares
    assert result["machine"]["cores"] >= 1 and result["mean_wire_bytes"] > 100
    assert result["goals_met"]["lost"] and result["goals_met"]["duplicates"]
    assert not result["goals_met"]["devices_connected"]  # 10 devices are not the goal's 1,000
