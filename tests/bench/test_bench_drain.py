"""`qrgate bench drain` on a small store: every figure present, every record drained and acknowledged."""

from __future__ import annotations

import json

from lab.bench import drain

RECORDS = 2_000


def test_bench_drain_small_store(tmp_path):
    result = drain.run(records=RECORDS, folder=tmp_path)

    json.dumps(result)  # JSON-able as printed
    for key in ("bench", "machine", "cpu", "python", "paho_mqtt", "mosquitto", "records", "window", "qos", "fill",
                "drain_seconds", "drain_records_per_s", "bare_seconds", "bare_records_per_s",
                "ratio_drain_to_bare", "peak_rss_mb_while_draining", "runs", "goals", "goals_met"):
        assert key in result, key
    assert result["bench"] == "drain" and result["records"] == RECORDS and result["window"] == 16
    assert [r["side"] for r in result["runs"]] == ["bare", "drain", "bare"]
    for r in result["runs"]:
        # Each side's own count and the broker's log agree: every record published once and acknowledged.
        assert r["acked"] == RECORDS and r["refused"] == 0
        assert r["broker_saw"]["visit_publishes"] == RECORDS
        assert r["broker_saw"]["success_pubacks"] == r["broker_saw"]["publishes"] >= RECORDS
        assert r["seconds"] > 0 and r["records_per_s"] > 0
    (drained,) = [r for r in result["runs"] if r["side"] == "drain"]
    assert drained["store_left"] == 0
    assert result["drain_records_per_s"] > 0 and result["bare_records_per_s"] > 0
    assert result["ratio_drain_to_bare"] > 0
    assert result["peak_rss_mb_while_draining"] > 0 and drained["rss_before_drain_mb"] > 0
    assert result["fill"]["seconds"] > 0
    met, goals = result["goals_met"], result["goals"]
    assert met == {  # each verdict is its figure against its goal
        "ratio_drain_to_bare": result["ratio_drain_to_bare"] >= goals["ratio_drain_to_bare"],
        "peak_rss_mb_while_draining": result["peak_rss_mb_while_draining"] <= goals["peak_rss_mb_while_draining"],
        "all": met["ratio_drain_to_bare"] and met["peak_rss_mb_while_draining"]}
    assert list(tmp_path.iterdir()) == []  # the store copies, the broker and its log are gone
