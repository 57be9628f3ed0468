"""`qrgate status`: the daemon's own report and what the command reads itself, against a fixture /sys."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from firmware import cli
from firmware.technician import status as status_module, sysinfo
from firmware import health
from tests.conftest import load, running_daemon, wait_until, write_frames


def fixture_root(root: Path, throttled: str = "50000", temp: str = "48312") -> Path:
    """A Raspberry Pi's /sys and timesyncd's flag, as its kernel lays them out."""
    zones = root / "sys/class/thermal"
    for n, (kind, value) in enumerate([("gpu-thermal", "90000"), ("cpu-thermal", temp)]):
        (zones / f"thermal_zone{n}").mkdir(parents=True)
        (zones / f"thermal_zone{n}" / "type").write_text(kind + "\n")
        (zones / f"thermal_zone{n}" / "temp").write_text(value + "\n")
    firmware = root / "sys/devices/platform/soc/soc:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text(throttled + "\n")
    (root / "run/systemd/timesync").mkdir(parents=True)
    (root / "run/systemd/timesync/synchronized").touch()
    return root


def status(config: Path, root: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["status", "--config", str(config), "--sys-root", str(root), *extra])
    return code, capsys.readouterr().out


def test_a_running_daemon_at_a_glance(tmp_path, world, pins, broker, capsys):
    frames = write_frames(tmp_path / "frames", [world.mint()])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port,
                                           camera="loop = true"))
    root = fixture_root(tmp_path / "root")
    with running_daemon(cfg, pins):
        wait_until(lambda: (cfg.device.runtime_dir / health.FILE).exists())
        wait_until(lambda: json.loads((cfg.device.runtime_dir / health.FILE).read_text())["fps"] > 0)
        # The one visit delivered (its repeats are already checked in): nothing waits in the store.
        wait_until(lambda: json.loads((cfg.device.runtime_dir / health.FILE).read_text())["last_delivery"])
        code, out = status(tmp_path / "qrgate.toml", root, capsys, "--json")
        text_code, text = status(tmp_path / "qrgate.toml", root, capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["problems"] == []
    d = report["daemon"]
    assert d["running"] and d["camera"]["lost"] is False and d["frames"] > 0 and d["fps"] > 0
    assert d["broker"]["connected"] is True
    assert report["store"]["integrity"] == "ok" and report["store"]["queue_depth"] == 0
    assert report["trust"]["seq"] == 1 and report["trust"]["expired"] is False
    assert report["clock_sync"] is True  # timesyncd's flag in the fixture root
    assert report["cpu"]["temperature_c"] == 48.3  # the cpu-thermal zone, not the first one
    assert report["cpu"]["throttling"]["flags"] == ["under-voltage since boot", "throttled since boot"]
    assert report["disk"]["free_bytes"] > 0
    assert text_code == 0
    lines = dict(line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("!!", "free", "last", "trust")))
    assert lines["daemon"].startswith("running") and lines["camera"].startswith("ok")
    assert "connected" in lines["broker"] and "48.3 °C" in lines["cpu"] and text.rstrip().endswith("all well")
    # No venue secret here: the door keeps working on its own memory, and says so (no problem, no fault).
    assert d["passback"] == {"mode": "door", "why": "no venue secret provisioned (passback.secret)"}
    assert lines["passback"] == "per door only (no venue secret provisioned (passback.secret))"
    assert d["rules_failed"] == {} and re.search(r"\ndcc rules +none failed\n", text)
    assert d["workers"]["workers_replaced"] == 0 and d["workers"]["recovered"] >= 0
    assert re.search(r"\ndecode workers +\d+ frames read, \d+ too late, \d+ displaced, replaced 0x\n", text)
    assert d["cards_today"] == {"cards": 0, "visits": 0, "most_by_one_card": 0, "over_alert": 0, "alert": 4}
    assert re.search(r"\ncards today +0 visits by 0 cards, at most 0 by one card\n", text)


def test_no_daemon_no_store_is_said_plainly_with_exit_1(tmp_path, world, capsys):
    load(tmp_path, world.config_toml(tmp_path / "state", tmp_path))
    code, text = status(tmp_path / "qrgate.toml", fixture_root(tmp_path / "root"), capsys)
    assert code == 1
    assert "NOT RUNNING" in text and "!! daemon not running" in text and "no store at" in text


def test_a_stale_report_is_a_dead_daemon_and_its_faults_are_listed(tmp_path, world, capsys):
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", tmp_path))
    health.write_file(cfg.device.runtime_dir / health.FILE,
                              {"written_at": time.time() - 600, "faults": {}})
    code, out = status(tmp_path / "qrgate.toml", fixture_root(tmp_path / "root"), capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["daemon"]["running"] is False and "600 s old" in report["daemon"]["why"]
    health.write_file(cfg.device.runtime_dir / health.FILE,
                              {"written_at": time.time(), "faults": {"camera": "no frame for 3 s"}})
    report = json.loads(status(tmp_path / "qrgate.toml", fixture_root(tmp_path / "root2"), capsys, "--json")[1])
    assert "fault camera: no frame for 3 s" in report["problems"]


def test_throttling_now_needs_attention(tmp_path, world, capsys):
    load(tmp_path, world.config_toml(tmp_path / "state", tmp_path))
    report = json.loads(status(tmp_path / "qrgate.toml", fixture_root(tmp_path / "root", "0x50005"), capsys,
                               "--json")[1])
    assert any(p.startswith("board throttled: under-voltage now") for p in report["problems"])


@pytest.mark.parametrize("text,flags", [
    ("0", []), ("0x50005", ["under-voltage now", "throttled now", "under-voltage since boot", "throttled since boot"]),
    ("80008", ["soft temperature limit now", "soft temperature limit since boot"]),
])
def test_throttle_bits_are_named(tmp_path, text, flags):
    assert sysinfo.throttling(fixture_root(tmp_path, text))["flags"] == flags


def test_without_the_firmware_file_the_volt_monitor_or_nothing(tmp_path):
    assert sysinfo.throttling(tmp_path) is None and sysinfo.cpu_temperature_c(tmp_path) is None
    hwmon = tmp_path / "sys/class/hwmon/hwmon3"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("rpi_volt\n")
    (hwmon / "in0_lcrit_alarm").write_text("1\n")
    assert sysinfo.throttling(tmp_path) == {"raw": None, "flags": ["under-voltage now"]}
    (tmp_path / "sys/devices/platform/soc/soc:firmware").mkdir(parents=True)
    (tmp_path / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("garbage\n")
    assert sysinfo.throttling(tmp_path)["flags"] == ["under-voltage now"]  # an unreadable value falls back


def test_the_daemons_report_is_readable_by_a_technician_past_the_units_umask(tmp_path):
    old = os.umask(0o077)  # the unit's UMask=0077
    try:
        health.write_file(tmp_path / "run" / health.FILE, {"written_at": time.time()})
    finally:
        os.umask(old)
    assert (tmp_path / "run" / health.FILE).stat().st_mode & 0o777 == 0o644


def test_cards_seen_more_often_than_the_alert_are_called_out_and_a_venue_without_cards_shows_none():
    running = {"running": True, "cards_today": {"cards": 3, "visits": 11, "most_by_one_card": 6, "over_alert": 1,
                                                "alert": 4}}
    assert status_module._cards(running) == "11 visits by 3 cards, at most 6 by one card; 1 cards OVER 4 visits (copied?)"
    assert status_module._cards({"running": True, "cards_today": None}) == "-"
