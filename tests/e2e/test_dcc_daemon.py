"""The daemon at a venue that requires a vaccination pass: EU DCCs shown on a replay camera, end to end."""

from __future__ import annotations

import logging

from conftest import changes, load, store_rows, write_frames
from test_daemon import Custodian
from firmware import app, keys

NAME, DOB = "Hong-Gildong", "1987-03-14"
UVCI = "URN:UVCI:01:KR:QRGATE0E2E0TEST0000001"
VACCINATION_ONLY = {"policy": 'accept = ["DCC"]', "dcc": 'types = ["v"]', "decoder": "hold_s = 0.2"}


def test_a_vaccination_pass_turns_green_and_its_sealed_visit_reaches_the_broker(tmp_path, world, pins, broker,
                                                                               caplog):
    person = {"name": (NAME, "Gildong"), "dob": DOB}
    shown = [
        world.mint_dcc(uvci=UVCI, **person),  # complete series, 30 days ago
        world.mint_dcc(dn=1, sd=2, **person),  # first dose of two
        world.mint_dcc(kind="t", **person),  # a negative test: not what this venue takes
        world.mint(),  # a KP1 entry token: neither
        world.mint_dcc(uvci=UVCI, **person),  # the same certificate again, minted anew: the same visit
    ]
    frames = write_frames(tmp_path / "frames", shown)
    events = tmp_path / "events.jsonl"
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port,
                                           events=f'path = "{events}"', **VACCINATION_ONLY))
    custodian = Custodian(broker.port)
    decisions = []
    try:
        with caplog.at_level(logging.DEBUG):
            stats = app.run(cfg, on_decision=decisions.append, pin_factory=pins)
        [record] = custodian.wait_for(1)
    finally:
        custodian.close()

    assert [(d.verdict, d.reason) for d in decisions] == [
        ("accepted", None), ("rejected", "series_incomplete"), ("rejected", "type_not_accepted"),
        ("rejected", "kind_not_accepted"), ("already_checked_in", None)]
    assert changes(pins.log, "GPIO17") == [1.0, 0.0, 1.0, 0.0]  # green twice: the visit and its repeat
    assert changes(pins.log, "GPIO27") == [1.0, 0.0] * 3
    assert stats.sealed == 1 and stats.acked == 1 and store_rows(cfg) == 0

    plain = record.open(keys.load_authority_private(world.authority_dir))
    assert (plain["kind"], plain["cti"], plain["iss"]) == ("DCC", UVCI, "KR")
    assert set(plain) == {"v", "rid", "venue", "device", "ts", "iss", "cti", "kind"}  # no name, no birth date
    # Name, birth date and UVCI: not in the logs, the event feed, the card or the wire.
    for where, data in [("log", caplog.text.encode()), ("events", events.read_bytes()), ("wire", record.wire()),
                        *((str(f), f.read_bytes()) for f in cfg.device.state_dir.rglob("*") if f.is_file())]:
        for secret in (NAME, DOB, UVCI, NAME.upper()):
            assert secret.encode() not in data, (where, secret)


def test_a_venue_taking_both_kinds_admits_either_and_keeps_their_visits_apart(tmp_path, world, pins):
    dcc_text, token = world.mint_dcc(), world.mint()
    frames = write_frames(tmp_path / "frames", [token, dcc_text])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, policy='accept = ["KP1", "DCC"]'))
    decisions = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins)
    assert [(d.verdict, d.iss) for d in decisions] == [("accepted", "naver"), ("accepted", "KR")]
    assert store_rows(cfg) == 2


def test_the_dcc_window_is_the_venues_recheck_time(tmp_path, world, pins):
    """recheck_s = 0: a certificate shown again is a new visit as soon as the window has passed."""
    text = world.mint_dcc()
    frames = write_frames(tmp_path / "frames", [text, text], gap_frames=40)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, policy='accept = ["DCC"]',
                                           dcc="recheck_s = 0", decoder="hold_s = 0.2"))
    decisions = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins)
    assert [d.verdict for d in decisions] == ["accepted", "accepted"]
    assert store_rows(cfg) == 2
