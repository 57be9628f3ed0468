"""`qrgate bench revocation` on a few thousand entries: every figure present, every lookup answered right (never a
timing checked here: the figures are docs/benchmarks.md's)."""

from __future__ import annotations

import json

from firmware import cli
from lab.bench import revocation

ENTRIES, LOOKUPS = 3000, 400


def test_bench_revocation_few_entries(tmp_path, capsys):
    assert cli.main(["bench", "revocation", "--entries", str(ENTRIES), "--lookups", str(LOOKUPS),
                     "--folder", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("bench", "machine", "cpu", "cpus", "python", "numpy", "filesystem", "list_bytes", "build_s",
                "write_s", "install_s", "load_s", "pread", "mmap", "extra_rss_mb", "goals", "goals_met"):
        assert key in result, key
    assert result["bench"] == "revocation" and result["entries"] == result["keys"] == ENTRIES
    assert result["bodies"] == 1 << result["bits"] and result["list_bytes"] > 8 * ENTRIES
    for side in ("pread", "mmap"):
        s = result[side]
        assert s["present_found"] == s["present_looked_up"] == LOOKUPS // 2 and s["absent_found"] == 0
        assert s["rss_kb"]["before_loading"] > 0 and set(s["rss_kb"]) == {"before_loading", "after_loading",
                                                                          "after_lookups"}
        assert 0 < s["present_us"]["median"] <= s["present_us"]["p99"] <= s["present_us"]["max"]
    p = result["pread"]
    assert p["revoked_named"] is True and p["revoked_not_named"] is False
    assert set(p["revoked_us"]) == {"named", "not_named"} and p["cold_absent_us"]["median"] > 0
    assert result["goals"] == {"lookup_median_us": revocation.GOAL_LOOKUP_US,
                               "extra_rss_mb": revocation.GOAL_EXTRA_RSS_MB}
    assert result["goals_met"]["all"] == (result["goals_met"]["lookup_median_us"]
                                          and result["goals_met"]["extra_rss_mb"])
    assert list(tmp_path.iterdir()) == []  # the list and the state folder are gone
