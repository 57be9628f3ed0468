"""The daemon survives its own state (issue 15): a corrupt or unreadable store, a clock it may not believe,
a trust list naming no authority key valid now. Each is a loud fault, never a crash loop or a lost record."""

from __future__ import annotations

import json
import os
import time

from conftest import changes, load, running_daemon, store_rows, wait_until, write_frames
from firmware import app, housekeeping, keys
from firmware.store import opener
from firmware.clock import TIME_ERROR, TIMESYNCD_FLAG, ClockSync
from firmware.store.buffer import SqliteRecordStore
from firmware.store.records import Visit
from firmware.tokens.verdict import Claims
from tests.e2e.test_systemd_notify import NotifySocket

DAY = 86400


def status_of(cfg) -> dict:
    try:
        return json.loads((cfg.device.runtime_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_corrupt_store_is_set_aside_and_the_door_goes_on_amber_until_a_technician_deals_with_it(
        tmp_path, world, pins):
    state = tmp_path / "state"
    state.mkdir()
    (state / "visits.db").write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # a card that went bad
    cfg = load(tmp_path, world.config_toml(state, write_frames(tmp_path / "frames", [world.mint()])))
    decisions = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins)  # no exception: no crash loop
    assert [(d.verdict, d.reason) for d in decisions] == [("accepted", None)]  # into a new store
    assert store_rows(cfg) == 1
    aside = sorted(state.glob("visits.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"SQLite format 3\x00")
    assert "store_corrupt" in status_of(cfg)["faults"] and aside[0].name in status_of(cfg)["faults"]["store_corrupt"]
    assert changes(pins.log, "GPIO22")[:1] == [1.0]  # amber
    # The technician copies it off and removes it: the fault clears at the next start.
    aside[0].unlink()
    app.run(load(tmp_path, world.config_toml(state, write_frames(tmp_path / "f2", []))), pin_factory=pins)
    assert "store_corrupt" not in status_of(cfg)["faults"]


def test_an_unreadable_store_is_the_storage_fault_until_it_can_be_opened(tmp_path, world, pins, monkeypatch):
    monkeypatch.setattr(opener, "REOPEN_S", 0.1)
    state = tmp_path / "state"
    (state / "visits.db").mkdir(parents=True)  # what should be the store cannot be opened as one
    frames = write_frames(tmp_path / "frames", [world.mint(ttl=300)])
    cfg = load(tmp_path, world.config_toml(state, frames, camera="loop = true"))
    notify = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    decisions = []
    try:
        with running_daemon(cfg, pins, on_decision=decisions.append):
            wait_until(lambda: "storage" in status_of(cfg).get("faults", {}))
            assert status_of(cfg)["queue_depth"] is None
            wait_until(lambda: notify.times("READY", "1"))  # up, so systemd does not kill and restart it
            ready = [m for _, m in notify.messages if m.get("READY") == "1"][0]
            assert ready["STATUS"].startswith("fault: ") and "storage" in ready["STATUS"]
            assert changes(pins.log, "GPIO22")[:1] == [1.0] and decisions == []
            (state / "visits.db").rmdir()  # the technician frees it
            wait_until(lambda: ("accepted", None) in [(d.verdict, d.reason) for d in decisions])
            wait_until(lambda: "storage" not in status_of(cfg).get("faults", {"storage": ""}))
    finally:
        notify.close()
    assert store_rows(cfg) == 1


def _old_record(state, world, age_s: int) -> None:
    """One undelivered visit of `age_s` ago in the store, as the daemon would have sealed it then."""
    store = SqliteRecordStore(state / "visits.db")
    authority = keys.load_authority_public(world.authority_dir)
    then = int(time.time()) - age_s
    claims = Claims(iss="naver", iat=then, exp=then + 15, cti=os.urandom(16))
    store.admit(claims.cti, then + 15, then, lambda: Visit.of(claims, "cafe-1", "door-1", then).seal(authority))
    store.close()


def test_no_purge_on_a_clock_that_is_not_believed(tmp_path, world, pins, monkeypatch):
    """A Pi without an RTC can boot weeks off: purging on that clock would wipe undelivered visits."""
    monkeypatch.setattr(housekeeping, "CHECK_S", 0.1)
    state = tmp_path / "state"
    state.mkdir()
    _old_record(state, world, 29 * DAY)  # past 28 days by this machine's clock, which the daemon may not believe yet
    cfg = load(tmp_path, world.config_toml(state, write_frames(tmp_path / "frames", []), camera="loop = true"))
    sysroot = tmp_path / "sysroot"
    clock = ClockSync(require=True, root=sysroot, kernel=lambda: TIME_ERROR)
    with running_daemon(cfg, pins, clock=clock):
        wait_until(lambda: "clock" in status_of(cfg).get("faults", {}))
        written = status_of(cfg)["written_at"]
        wait_until(lambda: status_of(cfg).get("written_at", written) > written)  # a later round of housekeeping
        assert store_rows(cfg) == 1
        (sysroot / TIMESYNCD_FLAG).parent.mkdir(parents=True)
        (sysroot / TIMESYNCD_FLAG).touch()
        wait_until(lambda: store_rows(cfg) == 0)  # now it may: promise 3 holds


def test_a_trust_list_naming_no_authority_key_valid_now_seals_nothing(tmp_path, world, pins):
    """Its only key is announced for tomorrow (a rotation's next key, or a list built wrong): no key to seal to."""
    tomorrow = int(time.time()) + 86400
    world.trust_file.write_bytes(world.trust_list([world.naver], seq=1, authority=[
        (keys.load_authority_public(world.authority_dir), tomorrow)]))
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "frames", [world.mint()])))
    decisions = []
    app.run(cfg, on_decision=decisions.append, pin_factory=pins)
    assert [(d.verdict, d.reason) for d in decisions] == [("fault", "authority_key_not_listed")]
    assert store_rows(cfg) == 0 and changes(pins.log, "GPIO17") == []
    assert "authority_key" in status_of(cfg)["faults"]
