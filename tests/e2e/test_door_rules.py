"""The daemon's rules at the door, end to end: one-time use across restarts, policy, clock and trust-list faults."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import base45
import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import changes, load, running_daemon, store_rows, wait_until, write_frames
from firmware import app
from firmware.clock import TIME_ERROR, TIMESYNCD_FLAG, ClockSync
from firmware.tokens import cose, kp1, trustlist
from lab import signers

QRGATE = str(Path(sys.executable).parent / "qrgate")


def run(cfg, pins, **kw) -> list:
    decisions: list = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins, **kw)
    return [(d.verdict, d.reason) for d in decisions]


def test_a_token_stays_checked_in_across_a_restart(tmp_path, world, pins):
    token = world.mint(ttl=300)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", [token])))
    assert run(cfg, pins) == [("accepted", None)]
    assert run(cfg, pins) == [("already_checked_in", None)]  # a new process, the same state folder
    assert store_rows(cfg) == 1
    # The card keeps a keyed hash of the token id, never the id itself.
    cti = cbor2.loads(cose.parse_sign1(base45.b45decode(token[4:])).payload)[kp1.CLAIM_CTI]
    assert cti not in (tmp_path / "state" / "visits.db").read_bytes()


def test_venue_policy_requires_attributes(tmp_path, world, pins):
    adult, child = world.mint(att=["age19"]), world.mint(att=["age14"])
    frames = write_frames(tmp_path / "frames", [child, adult])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, policy='require = ["age19"]'))
    assert run(cfg, pins) == [("rejected", "missing_attribute"), ("accepted", None)]


def test_an_unsynchronised_clock_answers_fault_until_it_is_synchronised(tmp_path, world, pins):
    frames = write_frames(tmp_path / "frames", [world.mint(ttl=300), world.mint(ttl=300)])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames))
    sysroot = tmp_path / "sysroot"
    clock = ClockSync(require=True, root=sysroot, kernel=lambda: TIME_ERROR)
    flag = sysroot / TIMESYNCD_FLAG
    decisions: list = []

    def decided(d) -> None:  # the first visitor is turned away; then timesyncd synchronises
        decisions.append((d.verdict, d.reason))
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()

    app.run(cfg, on_decision=decided, pin_factory=pins, clock=clock)
    assert decisions == [("fault", "clock_not_synchronised"), ("accepted", None)]
    assert changes(pins.log, "GPIO22")[:1] == [1.0]  # amber blinked
    assert changes(pins.log, "GPIO17") == [1.0, 0.0]  # one green, for the second visitor only
    assert store_rows(cfg) == 1


def test_a_device_with_an_rtc_may_judge_on_an_unsynchronised_clock(tmp_path, world, pins):
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", [world.mint()])))
    clock = ClockSync(require=False, root=tmp_path, kernel=lambda: TIME_ERROR)
    assert run(cfg, pins, clock=clock) == [("accepted", None)]


def test_a_kept_trust_list_past_not_after_is_a_fault(tmp_path, world, pins):
    state = tmp_path / "state"
    state.mkdir()
    old = int(time.time()) - 40 * 86400
    (state / "trustlist.cose").write_bytes(world.trust_list([world.naver], seq=7, issued_at=old, valid_days=30))
    frames = write_frames(tmp_path / "frames", [world.mint()])
    text = world.config_toml(state, frames).replace(f'list = "{world.trust_file}"\n', "")
    assert run(load(tmp_path, text), pins) == [("fault", "trust_list_expired")]
    assert changes(pins.log, "GPIO22")[:1] == [1.0]
    assert changes(pins.log, "GPIO17") == []


def test_a_list_installed_by_a_technician_takes_effect_in_the_running_daemon(tmp_path, world, pins):
    newcomer = signers.new_issuer("pass", tmp_path / "pass")
    seq2 = tmp_path / "seq2.cose"
    seq2.write_bytes(world.trust_list([world.naver, newcomer], seq=2))
    frames = write_frames(tmp_path / "frames", [world.mint(newcomer, ttl=300), world.mint(newcomer, ttl=300)])
    cfg_path = tmp_path / "qrgate.toml"
    # Unpaced: the loop waits for the technician instead of dropping the next visitor's frames meanwhile.
    cfg_path.write_text(world.config_toml(tmp_path / "state", frames, camera="paced = false"))
    decisions: list = []

    def decided(d) -> None:  # after the first refusal, the technician installs seq 2 over SSH
        decisions.append((d.verdict, d.reason))
        if len(decisions) == 1:
            proc = subprocess.run([QRGATE, "trust", "install", str(seq2), "--config", str(cfg_path)],
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr

    app.run(load(tmp_path, cfg_path.read_text()), on_decision=decided, pin_factory=pins)
    assert decisions == [("rejected", "unknown_issuer"), ("accepted", None)]


def test_trust_lists_arrive_over_mqtt_under_the_same_checks(tmp_path, world, pins, broker, caplog):
    now = int(time.time())
    seq2 = world.trust_list([world.naver, world.kakao], seq=2)
    other_root = signers.new_root(tmp_path / "other-root")
    forged = signers.build_trust_list(other_root, [world.rogue], seq=9, issued_at=now)
    rollback = world.trust_list([world.rogue], seq=1)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", []),
                                           mqtt_port=broker.port, camera="loop = true"))
    kept = tmp_path / "state" / "trustlist.cose"

    def kept_seq() -> int | None:
        try:
            return trustlist.parse(kept.read_bytes(), None).seq
        except (OSError, ValueError):
            return None

    authority = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="authority", protocol=mqtt.MQTTv5)
    authority.connect("127.0.0.1", broker.port)
    authority.loop_start()
    try:
        with running_daemon(cfg, pins):
            wait_until(lambda: kept_seq() == 1)  # the configured list, installed at start
            authority.publish("qrgate/v1/trustlist", seq2, qos=1, retain=True).wait_for_publish(10)
            wait_until(lambda: kept_seq() == 2)
            for refused in (forged, rollback):
                authority.publish("qrgate/v1/trustlist", refused, qos=1, retain=True).wait_for_publish(10)
            wait_until(lambda: caplog.text.count("trust list refused") == 2)
            assert "different root" in caplog.text and "not higher than the installed seq 2" in caplog.text
            assert kept_seq() == 2
            seq3 = world.trust_list([world.naver], seq=3)
            authority.publish("qrgate/v1/trustlist", seq3, qos=1, retain=True).wait_for_publish(10)
            wait_until(lambda: kept_seq() == 3)
    finally:
        authority.disconnect()
        authority.loop_stop()


def test_the_door_relay_opens_for_a_new_visit_only(tmp_path, world, pins):
    """An unmanned store's door: one pulse per recorded visit; never for a token already checked in (a
    KP1 in its window, a DCC within its recheck hour) nor for a refusal (issue 15, finding 6)."""
    token, dcc = world.mint(ttl=300), world.mint_dcc()
    door = 'door_enabled = true\ndoor_pulse_s = 0.3'
    config = dict(gpio=door, policy='accept = ["KP1", "DCC"]')
    # The visitors 1.3 s apart (40 frames at 30 fps): each pulse has its full length before the next answer.
    frames = write_frames(tmp_path / "f1", [token, dcc], gap_frames=36)
    first = load(tmp_path, world.config_toml(tmp_path / "state", frames, **config))
    assert run(first, pins) == [("accepted", None), ("accepted", None)]
    assert changes(pins.log, "GPIO23") == [1, 0, 1, 0]
    edges = [t for pin, _, t in pins.timed if pin == "GPIO23"]
    assert all(off - on >= 0.3 for on, off in zip(edges[::2], edges[1::2]))  # each pulse lasts door_pulse_s
    pins.log.clear()
    again = load(tmp_path, world.config_toml(tmp_path / "state",
                                             write_frames(tmp_path / "f2", [token, dcc, world.forge()]), **config))
    assert run(again, pins) == [("already_checked_in", None), ("already_checked_in", None),
                                ("rejected", "bad_signature")]
    assert changes(pins.log, "GPIO17") == [1.0, 0.0, 1.0, 0.0]  # green both times: they are let in
    assert changes(pins.log, "GPIO23") == []
