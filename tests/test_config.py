"""The daemon's TOML configuration: defaults, relative paths, and errors that name file and key."""

import copy
from pathlib import Path

import pytest

from firmware import config
from firmware.errors import ConfigError

SOURCE = "/etc/qrgate/gate.toml"
MINIMAL = {
    "device": {"venue": "cafe-1", "id": "door-a"},
    "trust": {"root_key": "keys/root.pub"},
    "authority": {"public_key": "/keys/authority.pub"},
    "mqtt": {"ca": "ca.pem"},
}


def load(**sections) -> config.Config:
    """MINIMAL with some keys changed: load(camera={"fps": 10}); a value of None removes the key."""
    data = copy.deepcopy(MINIMAL)
    for name, table in sections.items():
        if table is None:
            del data[name]
            continue
        data.setdefault(name, {})
        for key, value in table.items():
            if value is None:
                data[name].pop(key, None)
            else:
                data[name][key] = value
    return config.from_dict(data, SOURCE, Path("/base"))


def config_error(**sections) -> str:
    with pytest.raises(ConfigError) as info:
        load(**sections)
    assert SOURCE in str(info.value)
    return str(info.value)


def test_minimal_config_loads_with_defaults():
    cfg = load()
    assert (cfg.device.venue, cfg.device.id) == ("cafe-1", "door-a")
    assert cfg.device.state_dir == Path("/var/lib/qrgate")
    assert cfg.camera.source == "picamera" and cfg.camera.path is None
    assert (cfg.camera.width, cfg.camera.height, cfg.camera.fps) == (640, 480, 30.0)
    assert cfg.decoder.backend == "zxing"
    assert (cfg.gpio.green, cfg.gpio.red, cfg.gpio.amber, cfg.gpio.buzzer, cfg.gpio.door) == (17, 27, 22, 18, 23)
    assert cfg.gpio.door_enabled is False
    assert cfg.policy.require == [] and cfg.policy.skew_s == 5
    assert (cfg.mqtt.enabled, cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == (True, "localhost", 8883, True)
    assert cfg.events.path is None


def test_values_given_override_defaults():
    cfg = load(camera={"fps": 15, "source": "opencv", "index": 2}, policy={"require": ["vax", "age19"]})
    assert cfg.camera.fps == 15.0 and isinstance(cfg.camera.fps, float)
    assert (cfg.camera.source, cfg.camera.index) == ("opencv", 2)
    assert cfg.policy.require == ["vax", "age19"]


def test_relative_paths_resolve_against_base():
    cfg = load(device={"state_dir": "state"}, events={"path": "log/events.jsonl"})
    assert cfg.trust.root_key == Path("/base/keys/root.pub")
    assert cfg.mqtt.ca == Path("/base/ca.pem")
    assert cfg.device.state_dir == Path("/base/state")
    assert cfg.events.path == Path("/base/log/events.jsonl")
    assert cfg.authority.public_key == Path("/keys/authority.pub")  # absolute stays


def test_unknown_key_is_named():
    assert "camera.fsp" in config_error(camera={"fsp": 10})


def test_unknown_section_is_named():
    assert "cmaera" in config_error(cmaera={"fps": 10})


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("camera", "fps", "fast"),
        ("camera", "width", 640.0),
        ("mqtt", "port", True),
        ("mqtt", "tls", "yes"),
        ("device", "venue", 7),
        ("device", "venue", ""),
        ("policy", "require", "vax"),
        ("trust", "root_key", 1),
    ],
)
def test_wrong_type_is_named(section, key, value):
    assert f"{section}.{key}" in config_error(**{section: {key: value}})


@pytest.mark.parametrize(
    "section,key,value",
    [("camera", "fps", 0.5), ("camera", "fps", 241), ("mqtt", "port", 0), ("mqtt", "port", 65536), ("gpio", "green", 28), ("policy", "skew_s", -1)],
)
def test_out_of_range_number_is_named(section, key, value):
    assert f"{section}.{key}" in config_error(**{section: {key: value}})


def test_range_edges_are_allowed():
    cfg = load(camera={"fps": 240, "width": 64}, mqtt={"port": 65535}, policy={"skew_s": 0})
    assert (cfg.camera.fps, cfg.camera.width, cfg.mqtt.port, cfg.policy.skew_s) == (240.0, 64, 65535, 0)


def test_nan_is_out_of_range():
    assert "camera.fps" in config_error(camera={"fps": float("nan")})


@pytest.mark.parametrize(
    "section,key,value",
    [("policy", "require", ["vax", "age21"]), ("camera", "source", "usb"), ("decoder", "backend", "zbar2")],
)
def test_value_not_among_choices_is_named(section, key, value):
    message = config_error(**{section: {key: value}})
    assert f"{section}.{key}" in message and repr(value[-1] if isinstance(value, list) else value) in message


@pytest.mark.parametrize("section,key", [("device", "venue"), ("device", "id"), ("trust", "root_key")])
def test_missing_required_key_is_named(section, key):
    assert f"{section}.{key}" in config_error(**{section: {key: None}})


def test_missing_required_section_is_named():
    assert "trust" in config_error(trust=None)


def test_the_authority_key_is_no_longer_required_and_an_old_config_naming_one_still_loads():
    """Visits are sealed to the trust list's current key (issue 20); configs from before name a file, unread."""
    without = copy.deepcopy(MINIMAL)
    del without["authority"]
    assert config.from_dict(without, SOURCE).authority.public_key is None
    assert config.from_dict(copy.deepcopy(MINIMAL), SOURCE).authority.public_key == Path("/keys/authority.pub")


def test_section_that_is_not_a_table_is_an_error():
    with pytest.raises(ConfigError, match="camera"):
        config.from_dict(copy.deepcopy(MINIMAL) | {"camera": 5}, SOURCE)


def test_replay_source_needs_a_path():
    assert "camera.path" in config_error(camera={"source": "replay"})
    cfg = load(camera={"source": "replay", "path": "clips/door.mp4"})
    assert cfg.camera.path == Path("/base/clips/door.mp4")


def test_mqtt_tls_needs_a_ca():
    assert "mqtt.ca" in config_error(mqtt={"ca": None})
    assert load(mqtt={"ca": None, "tls": False}).mqtt.ca is None
    assert load(mqtt={"ca": None, "enabled": False}).mqtt.enabled is False


def test_venue_or_device_id_that_cannot_be_a_topic_level_is_refused():
    assert "device.venue" in config_error(device={"venue": "cafe/1"})
    assert "device.id" in config_error(device={"id": "#"})


def test_load_reads_toml_and_resolves_against_its_folder(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(
        '[device]\nvenue = "cafe-1"\nid = "door-a"\n'
        '[trust]\nroot_key = "root.pub"\n'
        '[authority]\npublic_key = "authority.pub"\n'
        '[camera]\nsource = "replay"\npath = "frames"\nfps = 12\n'
        '[mqtt]\nenabled = false\n'
    )
    cfg = config.load(path)
    assert cfg.trust.root_key == tmp_path.resolve() / "root.pub"
    assert cfg.camera.path == tmp_path.resolve() / "frames"
    assert cfg.camera.fps == 12.0 and cfg.mqtt.enabled is False


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('[device]\nvenue = "cafe-1"\nid = "door-a"\ncolour = "red"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value) and "device.colour" in str(info.value)


def test_broken_toml_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[device\nvenue = cafe\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        config.load(tmp_path / "nope.toml")


def test_a_venue_takes_phone_tokens_and_cards_by_default_and_the_dcc_rules_are_the_eus():
    cfg = load()
    assert cfg.policy.accept == ["KP1", "KC1"]
    assert (cfg.dcc.types, cfg.dcc.vaccination_complete, cfg.dcc.vaccination_min_days) == (["v", "t", "r"], True, 14)
    assert (cfg.dcc.test_max_hours, cfg.dcc.recovery_max_days, cfg.dcc.recheck_s) == (48, 180, 3600)
    cfg = load(policy={"accept": ["DCC"]}, dcc={"types": ["v"], "vaccination_max_days": 270})
    assert cfg.policy.accept == ["DCC"] and cfg.dcc.types == ["v"] and cfg.dcc.vaccination_max_days == 270


@pytest.mark.parametrize("sections, named", [
    ({"policy": {"accept": []}}, "policy.accept must name at least one"),
    ({"policy": {"accept": ["QR"]}}, "policy.accept: 'QR' is not one of KP1, KC1, DCC"),
    ({"dcc": {"types": []}}, "dcc.types must not be empty"),
    ({"dcc": {"types": ["x"]}}, "dcc.types: 'x' is not one of v, t, r"),
    ({"dcc": {"test_max_hours": 0}}, "dcc.test_max_hours: 0 is outside 1..720"),
    ({"dcc": {"recheck_s": "1h"}}, "dcc.recheck_s: expected int"),
    ({"dcc": {"vaccines": [1528]}}, "dcc.vaccines: expected a list of strings, got [1528]"),
])
def test_a_bad_token_policy_is_named(sections, named):
    assert named in config_error(**sections)
