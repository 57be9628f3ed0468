"""`qrgate demo`, the README's first command: every visitor gets the answer the demo promises."""

from __future__ import annotations

import json

from lab import demo


def test_the_demo_answers_every_visitor_and_the_authority_opens_every_record(tmp_path, capsys):
    assert demo.main(keep=tmp_path / "demo") == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["visitors_accepted"], summary["already_checked_in"], summary["visitors_rejected"]) == (6, 1, 4)
    assert summary["visits_sealed"] == summary["visits_acknowledged_by_the_broker"] == 6
    assert summary["records_received_by_the_custodian"] == summary["records_the_authority_key_opened"] == 6
    assert summary["visits_waiting_in_the_store"] == 0
    for reason in ("expired", "bad_signature", "malformed", "series_incomplete"):
        assert f"rejected ({reason})" in out
