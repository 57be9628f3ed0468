"""`qrgate selftest`: every part walked for real (mock pins stand in for the GPIO chip), one line each."""

from __future__ import annotations

from firmware import cli
from lab.broker import free_port
from firmware.clock import ClockSync
from firmware.technician import selftest
from tests.conftest import changes, load, write_frames


def test_every_check_passes_on_a_whole_device(tmp_path, world, pins, broker):
    frames = write_frames(tmp_path / "frames", [world.mint()])
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port))
    (tmp_path / "state").mkdir()
    lines: list[str] = []
    results = selftest.run(cfg, pin_factory=pins, clock=ClockSync(kernel=lambda: 0), out=lines.append)
    assert [r.name for r in results] == ["outputs", "camera", "store", "trust", "broker", "clock"]
    assert all(r.ok for r in results), lines
    assert all(line.startswith("ok") for line in lines)
    for led in ("GPIO17", "GPIO27", "GPIO22"):  # green, red, amber: each on, then off
        assert changes(pins.log, led) == [True, False], led
    assert any(e[0] == "GPIO18" and e[1] == "Hz" for e in pins.log)  # the buzzer sounded
    assert "640x480" in results[1].detail and f"127.0.0.1:{broker.port}: connected" in results[4].detail
    assert list((tmp_path / "state").iterdir()) == []  # the probe leaves nothing behind


def test_the_store_probe_never_opens_a_name_the_daemons_user_could_have_planted(tmp_path, world):
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", tmp_path / "frames"))
    (tmp_path / "state").mkdir()
    victim = tmp_path / "empty-file-of-roots"  # SQLite would make a database of an empty file
    victim.touch()
    for name in ("selftest.db", "selftest.db-journal", "probe.db"):
        (tmp_path / "state" / name).symlink_to(victim)
    assert selftest.check_store(cfg).ok
    assert victim.read_bytes() == b""


def test_failures_are_named_and_the_exit_status_says_so(tmp_path, world, capsys, monkeypatch):
    monkeypatch.setattr(selftest, "BROKER_TIMEOUT_S", 1.0)
    dead_port = free_port()  # nothing listens there
    text = world.config_toml(tmp_path / "nowhere" / "state", tmp_path / "no-frames", mqtt_port=dead_port)
    text = text.replace("require_sync = false", "require_sync = true")
    load(tmp_path, text)
    code = cli.main(["selftest", "--config", str(tmp_path / "qrgate.toml")])
    out = capsys.readouterr().out
    assert code == 1
    failed = {line.split()[1] for line in out.splitlines() if line.startswith("FAIL")}
    assert {"camera", "store", "broker"} <= failed
    assert "does not exist" in out and f"127.0.0.1:{dead_port}: no connection" in out
    assert out.rstrip().splitlines()[-1].startswith("selftest: ") and "failed: " in out
