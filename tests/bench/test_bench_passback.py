"""`qrgate bench passback` on a few tokens: every token reaches door-2 and is refused there, every figure present."""

from __future__ import annotations

import json

from firmware import cli
from lab.bench import passback

TOKENS = 30


def test_bench_passback_few_tokens(tmp_path, capsys):
    assert cli.main(["bench", "passback", "--tokens", str(TOKENS), "--gap-ms", "0", "--folder", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("bench", "machine", "cpu", "python", "paho_mqtt", "mosquitto", "tokens", "median_ms", "p99_ms",
                "max_ms", "goals", "goals_met"):
        assert key in result, key
    assert result["bench"] == "passback" and result["tokens"] == TOKENS and result["mosquitto"] != "unknown"
    assert result["known_at_door_2"] == result["replayed_elsewhere_at_door_2"] == TOKENS and result["lost"] == 0
    assert result["acknowledged_to_door_1"] == TOKENS and result["bad_messages_at_door_2"] == 0
    assert 0 < result["min_ms"] <= result["median_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["goals_met"] == {"p99_ms": result["p99_ms"] <= passback.GOAL_P99_MS, "every_token_known": True,
                                   "all": result["p99_ms"] <= passback.GOAL_P99_MS}
    assert list(tmp_path.iterdir()) == []  # the broker, its log and the stores are gone
