"""A small scale run end to end: real Mosquitto, real `qrgate custodian ingest` processes, a simulated fleet."""

from __future__ import annotations

import json

import psycopg
import pytest
from pg_kit import postgres  # noqa: F401  fixture

from custodian import backlog, fleet, scale
from firmware import cli


def test_scale_and_fleet_are_custodian_subcommands(monkeypatch, capsys):
    parser = cli.build_parser()
    ran = []
    monkeypatch.setattr(scale, "command", lambda args: ran.append(("scale", args.devices, args.rate, args.ingest)) or 0)
    monkeypatch.setattr(fleet, "command", lambda args: ran.append(("fleet", args.port)) or 0)
    monkeypatch.setattr(backlog, "command", lambda args: ran.append(("backlog", args.records, args.db)) or 0)
    for argv in (["custodian", "scale", "--devices", "10,100", "--rate", "50", "--ingest", "3"],
                 ["custodian", "fleet", "--port", "1884"],
                 ["custodian", "backlog", "--records", "5000", "--db", "sqlite", "--db", "postgresql://u@h/d"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert ran == [("scale", [10, 100], 50.0, 3), ("fleet", 1884), ("backlog", 5000, ["sqlite", "postgresql://u@h/d"])]
    assert parser.parse_args(["custodian", "scale"]).db == "sqlite"
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["custodian", "scale", "--devices", "10,ten"])
    assert refused.value.code == 2 and "argument --devices: a comma-separated list" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["custodian", "backlog", "--db", "visits.db"])
    assert refused.value.code == 2 and "argument --db: a store is `sqlite`, `postgresql`" in capsys.readouterr().err


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_small_fleet_is_stored_whole_once_and_promptly(tmp_path, capsys, store, request):
    """PostgreSQL: the session's server, by URL, where the run makes a database of its own and drops it after."""
    db = request.getfixturevalue("postgres").url() if store == "postgresql" else "sqlite"
    status = cli.main(["custodian", "scale", "--devices", "10", "--rate", "200", "--seconds", "3", "--ingest", "2",
                       "--folder", str(tmp_path), "--db", db])
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
    assert result["store"].startswith({"sqlite": "SQLite 3.", "postgresql": "PostgreSQL "}[store])
    if store == "postgresql":  # the run's own database was dropped
        with psycopg.connect(db) as conn:
            assert not conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'qrgate%'").fetchall()


def test_a_backlog_waiting_in_the_broker_is_drained_whole_into_each_store(tmp_path, capsys):
    """The default stores: a SQLite file, then a throwaway PostgreSQL server (lab.postgres, fsync on)."""
    status = cli.main(["custodian", "backlog", "--records", "600", "--devices", "6", "--folder", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["backlog"]["acked_by_broker"] == 600
    assert [d["store"].split()[0] for d in result["drains"]] == ["SQLite", "PostgreSQL"]
    assert result["drains"][1]["store_settings"]["fsync"] == "on"
    for drain in result["drains"]:
        assert (drain["stored"], drain["lost"], drain["duplicates_stored"], drain["stored_not_acked"]) == (600, 0, 0, 0)
        # Drained from the sessions the stopped ingests left: the broker held the whole backlog for each group.
        assert sum(s["received"] for s in drain["ingest_summaries"]) == 600
        assert all(s["received"] > 0 for s in drain["ingest_summaries"])
        assert drain["stored_per_s"] > 0 and drain["cpu_us_per_record"]["ingest"] > 0
    assert "database" in result["drains"][1]["cpu_us_per_record"]  # the server this run started is counted
    assert result["postgresql_over_sqlite"] == pytest.approx(
        result["drains"][1]["stored_per_s"] / result["drains"][0]["stored_per_s"], abs=0.01)
    assert result["goals_met"]["lost"] and result["goals_met"]["duplicates"]
    assert list(tmp_path.iterdir()) == []  # the broker, the file and the server's folder are gone
