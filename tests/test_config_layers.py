"""Configuration in layers: packaged defaults, the main file, then conf.d/*.toml in name order;
`qrgate config check` (the unit's ExecStartPre) and `qrgate config show [--changed]`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from firmware import cli, config
from firmware.errors import ConfigError


@pytest.fixture
def etc(tmp_path: Path, world) -> Path:
    """An /etc/qrgate of a device: the main file and an empty conf.d."""
    folder = tmp_path / "etc"
    (folder / "conf.d").mkdir(parents=True)
    (folder / "qrgate.toml").write_text(world.config_toml(tmp_path / "state", tmp_path / "frames"))
    (tmp_path / "frames").mkdir()
    return folder


def dropin(etc: Path, name: str, text: str) -> Path:
    path = etc / "conf.d" / name
    path.write_text(text)
    return path


def test_dropins_override_the_main_file_key_by_key_in_name_order(etc):
    dropin(etc, "20-door.toml", "[camera]\nfps = 15\n[gpio]\ndoor_enabled = true\n")
    dropin(etc, "10-site.toml", "[camera]\nfps = 10\nwidth = 800\n")
    dropin(etc, "README", "not toml, and not read: only *.toml files are layers\n")
    loaded = config.load_layers(etc / "qrgate.toml")
    cam = loaded.config.camera
    assert (cam.fps, cam.width, cam.height) == (15.0, 800, 480)  # 20 after 10; height stays the default
    assert cam.source == "replay"  # the main file's, untouched by the drop-ins
    assert loaded.config.gpio.door_enabled is True
    assert loaded.origins["camera.fps"].endswith("20-door.toml")
    assert loaded.origins["camera.width"].endswith("10-site.toml")
    assert loaded.origins["camera.source"].endswith("qrgate.toml")
    assert [Path(f).name for f in loaded.files] == ["qrgate.toml", "10-site.toml", "20-door.toml"]


def test_a_dropin_path_is_relative_to_the_dropin(etc):
    dropin(etc, "30-events.toml", '[events]\npath = "events.jsonl"\n')
    assert config.load(etc / "qrgate.toml").events.path == (etc / "conf.d" / "events.jsonl").resolve()


@pytest.mark.parametrize("text,key", [
    ("[camera]\nfsp = 10\n", "camera.fsp"),
    ("[camera]\nfps = 1000\n", "camera.fps"),
    ("[gpio]\ngreen = \"seventeen\"\n", "gpio.green"),
    ("[policy]\nrequire = [\"age21\"]\n", "policy.require"),
])
def test_an_error_in_a_dropin_names_the_dropin_and_the_key(etc, text, key):
    bad = dropin(etc, "50-bad.toml", text)
    with pytest.raises(ConfigError) as info:
        config.load(etc / "qrgate.toml")
    assert str(bad) in str(info.value) and key in str(info.value)


def test_a_broken_dropin_is_named(etc):
    bad = dropin(etc, "50-broken.toml", "[camera\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        config.load(etc / "qrgate.toml")
    assert str(bad) in str(info.value)


def test_a_cross_key_error_names_the_file_that_caused_it(etc):
    bad = dropin(etc, "40-tls.toml", "[mqtt]\nenabled = true\ntls = true\n")
    with pytest.raises(ConfigError) as info:
        config.load(etc / "qrgate.toml")
    assert str(bad) in str(info.value) and "mqtt.ca" in str(info.value)


def test_required_keys_may_come_from_a_dropin(tmp_path, world):
    main = tmp_path / "etc" / "qrgate.toml"
    (main.parent / "conf.d").mkdir(parents=True)
    text = world.config_toml(tmp_path / "state", tmp_path)
    main.write_text(text.replace('venue = "cafe-1"\n', ""))
    with pytest.raises(ConfigError, match="device.venue"):
        config.load(main)
    dropin(main.parent, "10-venue.toml", '[device]\nvenue = "cafe-9"\n')
    assert config.load(main).device.venue == "cafe-9"


def test_config_check_opens_every_file_and_says_ok(etc, capsys):
    assert cli.main(["config", "check", "--config", str(etc / "qrgate.toml")]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(": ok") and "trust.list" in out


def test_config_check_fails_clearly_on_a_missing_key_file(etc, world, capsys):
    (world.root_dir / "root.pub").unlink()
    assert cli.main(["config", "check", "--config", str(etc / "qrgate.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qrgate: error:") and "root.pub" in err


def test_config_check_fails_on_a_bad_dropin(etc, capsys):
    dropin(etc, "99-typo.toml", "[decoder]\nbackend = \"zxingg\"\n")
    assert cli.main(["config", "check", "--config", str(etc / "qrgate.toml")]) == 2
    err = capsys.readouterr().err
    assert "99-typo.toml" in err and "decoder.backend" in err


def test_config_show_is_toml_of_everything_in_force_with_each_keys_file(etc, capsys):
    dropin(etc, "10-site.toml", "[camera]\nfps = 12\n")
    assert cli.main(["config", "show", "--config", str(etc / "qrgate.toml")]) == 0
    out = capsys.readouterr().out
    shown = tomllib.loads(out)  # what it prints is itself a loadable config
    assert shown["camera"]["fps"] == 12.0 and shown["camera"]["width"] == 640
    assert shown["gpio"]["green"] == 17 and shown["device"]["venue"] == "cafe-1"
    line = next(x for x in out.splitlines() if x.startswith("fps ="))
    assert line.endswith("10-site.toml")
    assert next(x for x in out.splitlines() if x.startswith("width =")).endswith("# default")


def test_config_show_changed_lists_only_what_differs_from_the_defaults(etc, capsys):
    dropin(etc, "10-site.toml", "[camera]\nfps = 12\nwidth = 640\n")  # width set, but to its default
    assert cli.main(["config", "show", "--changed", "--config", str(etc / "qrgate.toml")]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["camera"]["fps"] == 12.0 and "width" not in shown["camera"]
    assert "gpio" in shown and shown["gpio"] == {"backend": "mock"}
    assert "decoder" not in shown
