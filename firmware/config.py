"""The daemon's configuration: TOML into frozen dataclasses, checked on load.

Unknown keys, wrong types and out-of-range values are errors that name the file
and the key path (`camera.fps`), so a typo never silently falls back to a
default. Relative paths are taken relative to the file that names them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import paths
from firmware.errors import ConfigError
from firmware.tokens.kp1 import ATTRIBUTES
from firmware.tokens.verdict import KINDS
from firmware.uplink import topics


def _opt(default: Any = dataclasses.MISSING, *, choices: tuple[str, ...] | None = None, lo: float | None = None,
         hi: float | None = None, pattern: re.Pattern[str] | None = None, help: str = "") -> Any:
    kw: dict[str, Any] = {} if default is dataclasses.MISSING else {"default": default}
    if isinstance(default, list):
        kw = {"default_factory": lambda: list(default)}
    return field(**kw, metadata={"choices": choices, "lo": lo, "hi": hi, "pattern": pattern, "help": help})


# A venue or device id is one MQTT topic level: no '/', '+', '#' and nothing odd.
TOPIC_LEVEL = topics.ID
COUNTRY = re.compile(r"(|[A-Z]{2})")  # ISO 3166 alpha-2, or empty


@dataclass(frozen=True)
class DeviceConfig:
    venue: str = _opt(pattern=TOPIC_LEVEL, help="venue id, part of the MQTT topic")
    id: str = _opt(pattern=TOPIC_LEVEL, help="device id, part of the MQTT topic")
    state_dir: Path = _opt(paths.STATE_DIR, help="store, trust list and device state")
    runtime_dir: Path = _opt(Path("/run/qrgate"), help="the daemon's status.json, read by `qrgate status`")
    min_free_mb: int = _opt(32, lo=0, hi=1_000_000, help="less free space on the card is the fault storage_low")


@dataclass(frozen=True)
class CameraConfig:
    source: str = _opt("picamera", choices=("picamera", "opencv", "replay"),
                      help="the Pi camera, a USB camera (index), or a recording (path)")
    path: Path | None = _opt(None, help="replay: a video file or a folder of images")
    index: int = _opt(0, lo=0, hi=63, help="opencv: /dev/videoN")
    width: int = _opt(640, lo=64, hi=4096, help="frame size the loop decodes (picamera: the lores stream)")
    height: int = _opt(480, lo=64, hi=4096)
    fps: float = _opt(30.0, lo=1.0, hi=240.0, help="frames per second asked of the camera, or the replay's pace")
    paced: bool = _opt(True, help="replay: deliver at fps (false: as fast as possible)")
    loop: bool = _opt(False, help="replay: start again at the end (false: the daemon stops)")
    exposure_us: int = _opt(0, lo=0, hi=1_000_000, help="picamera: fixed exposure in µs (0: auto, short)")
    analogue_gain: float = _opt(0.0, lo=0.0, hi=64.0, help="picamera: fixed analogue gain (0: auto)")
    focus: str = _opt("macro", choices=("macro", "continuous", "manual", "fixed"),
                      help="picamera: autofocus in the macro range (Camera Module 3), full range, a fixed "
                           "lens_position, or a lens without autofocus")
    lens_position: float = _opt(3.0, lo=0.0, hi=32.0, help="picamera, focus = manual: dioptres (1/metres)")
    lost_after_s: float = _opt(3.0, lo=0.5, hi=60.0, help="no frame for this long: the camera fault, and a reopen")
    reopen_max_s: float = _opt(30.0, lo=1.0, hi=600.0, help="the cap of the jittered backoff between reopenings")


@dataclass(frozen=True)
class DecoderConfig:
    backend: str = _opt("zxing", choices=("zxing", "zbar"), help="the QR decoder")
    hold_s: float = _opt(1.5, lo=0.0, hi=60.0, help="a code still in view within this time is not decided again")
    workers: int | None = _opt(None, lo=0, hi=16,
                               help="threads that read the frames the loop's fast read missed (zxing only); "
                                    "unset: the machine's cores minus one; 0: the loop reads every frame whole")


@dataclass(frozen=True)
class GpioConfig:
    backend: str = _opt("auto", choices=("auto", "mock"),
                       help="auto: gpiozero's choice (lgpio on a Pi); mock: gpiozero's MockFactory")
    green: int = _opt(17, lo=0, hi=27, help="BCM pin numbers of the LEDs, the buzzer and the door relay")
    red: int = _opt(27, lo=0, hi=27)
    amber: int = _opt(22, lo=0, hi=27)
    buzzer: int = _opt(18, lo=0, hi=27)
    buzzer_kind: str = _opt("tonal", choices=("tonal", "active"), help="a passive buzzer played as tones, or an on/off one")
    door: int = _opt(23, lo=0, hi=27)
    door_enabled: bool = _opt(False, help="pulse the door relay on a new visit (unmanned stores)")
    door_pulse_s: float = _opt(1.0, lo=0.1, hi=10.0, help="how long the relay is pulsed")


@dataclass(frozen=True)
class TrustConfig:
    root_key: Path = _opt(help="the authority's root public key (PEM) that signs trust lists")
    list: Path | None = _opt(None, help="a signed trust list installed at start when newer than the kept one")


@dataclass(frozen=True)
class PolicyConfig:
    accept: list[str] = _opt(["KP1", "KC1"], choices=KINDS,
                             help="the tokens this venue takes: KP1 phone entry tokens, KC1 printed entry cards "
                                  "(docs/cards.md), EU DCCs (vaccination passes)")
    require: list[str] = _opt([], choices=ATTRIBUTES, help="attributes every phone token and card must carry")
    skew_s: int = _opt(5, lo=0, hi=120, help="clock difference allowed between issuer and door, seconds")


@dataclass(frozen=True)
class CardsConfig:
    """KC1 printed entry cards (with "KC1" in policy.accept): docs/cards.md."""

    recheck_s: int = _opt(3600, lo=0, hi=86400, help="the same card again within this time is \"already checked "
                                                     "in\", not a second visit")
    daily_visits_alert: int = _opt(4, lo=1, hi=1000, help="a card with more visits than this in one day is counted "
                                                         "in status as over it (a copied card?); it still enters")


@dataclass(frozen=True)
class DccConfig:
    """What an EU DCC must show here (with "DCC" in policy.accept); the defaults are the EU's 2021 rules."""

    types: list[str] = _opt(["v", "t", "r"], choices=("v", "t", "r"),
                            help="v: vaccination, t: negative test, r: recovery")
    vaccines: list[str] = _opt([], help="the vaccine products (mp) that count, e.g. \"EU/1/20/1528\" "
                                        "(empty: any)")
    vaccination_complete: bool = _opt(True, help="every dose of the series (dn >= sd)")
    vaccination_min_days: int = _opt(14, lo=0, hi=3650, help="days from the last dose before it counts")
    vaccination_max_days: int = _opt(0, lo=0, hi=3650, help="days the last dose counts for (0: no limit)")
    test_types: list[str] = _opt(["LP6464-4", "LP217198-3"], choices=("LP6464-4", "LP217198-3"),
                                 help="LP6464-4: NAAT (PCR), LP217198-3: rapid antigen")
    test_max_hours: int = _opt(48, lo=1, hi=720, help="hours from the sample a negative test counts for")
    recovery_max_days: int = _opt(180, lo=0, hi=3650, help="days from the first positive test (0: only df..du)")
    recheck_s: int = _opt(3600, lo=0, hi=86400, help="the same certificate again within this time is "
                                                     "\"already checked in\", not a second visit")
    rules_country: str = _opt("", pattern=COUNTRY,
                              help="the country (ISO 3166 alpha-2, e.g. \"DE\") whose business rules, carried in "
                                   "the trust list, apply here as well (empty: only the settings above)")
    revocation: bool = _opt(False, help="judge DCCs only with a revocation list in force "
                                        "(qrgate/v1/trust/revocation), as the EU verifier apps do")
    max_list_age_h: int = _opt(24, lo=1, hi=720, help="hours after its issue that a rule set or a revocation list "
                                                      "counts for; older, DCCs are answered with a fault")


@dataclass(frozen=True)
class ClockConfig:
    require_sync: bool = _opt(True, help="judge tokens only on an NTP-synchronised clock (false: a device with an RTC)")


@dataclass(frozen=True)
class AuthorityConfig:
    public_key: Path | None = _opt(None, help="not read: visits are sealed to the trust list's current authority "
                                              "key (kept so that older config files load)")


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = _opt(True, help="false: no broker; records stay on the card")
    host: str = _opt("localhost", help="the custodian's broker")
    port: int = _opt(8883, lo=1, hi=65535)
    tls: bool = _opt(True, help="TLS to the broker (then ca, and cert and key for mutual TLS)")
    ca: Path | None = _opt(None, help="the custodian CA's certificate (PEM)")
    cert: Path | None = _opt(None, help="this device's certificate (PEM)")
    key: Path | None = _opt(None, help="its private key; under systemd read from the credential of the same name, "
                              "so the file stays root-only")
    keepalive_s: int = _opt(30, lo=5, hi=3600, help="MQTT keepalive")
    window: int = _opt(16, lo=1, hi=100, help="sealed records in flight at once")
    status_interval_s: float = _opt(30.0, lo=1.0, hi=3600.0, help="the retained status is published this often")
    drain_on_exit_s: float = _opt(3.0, lo=0.0, hi=60.0, help="on stop, time given to deliver what waits")
    session_expiry_s: int = _opt(86400, lo=0, hi=30 * 86400, help="the broker keeps the session this long offline")
    reconnect_min_s: float = _opt(1.0, lo=0.1, hi=60.0, help="the first wait before reconnecting")
    reconnect_max_s: float = _opt(60.0, lo=1.0, hi=3600.0, help="the cap of the jittered exponential backoff")


@dataclass(frozen=True)
class PassbackConfig:
    """Anti-passback: this venue's doors tell each other the tokens they accept ([device.md](device.md#one-token-one-door-anti-passback))."""

    secret: Path | None = _opt(None, help="the venue secret (32 random bytes, mode 0600) this venue's doors share "
                                          "tokens' hashes under; none: each door remembers only its own visits. "
                                          "Under systemd read from the credential of the same name")


@dataclass(frozen=True)
class EventsConfig:
    path: Path | None = _opt(None, help="append one JSON line per decision (for a display, a harness)")


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    trust: TrustConfig
    authority: AuthorityConfig = AuthorityConfig()
    camera: CameraConfig = CameraConfig()
    decoder: DecoderConfig = DecoderConfig()
    gpio: GpioConfig = GpioConfig()
    policy: PolicyConfig = PolicyConfig()
    cards: CardsConfig = CardsConfig()
    dcc: DccConfig = DccConfig()
    clock: ClockConfig = ClockConfig()
    mqtt: MqttConfig = MqttConfig()
    passback: PassbackConfig = PassbackConfig()
    events: EventsConfig = EventsConfig()


def _value(raw: Any, typ: Any, meta: Mapping[str, Any], where: str, base: Path) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
        origin = typing.get_origin(typ)
    if typ is bool:
        ok = isinstance(raw, bool)
    elif typ is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    elif typ is float:
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        raw = float(raw) if ok else raw
    elif typ in (str, Path):
        ok = isinstance(raw, str) and raw != ""
    elif origin is list:
        ok = isinstance(raw, list) and all(isinstance(x, str) for x in raw)
    else:  # pragma: no cover - a field type this loader does not know
        raise TypeError(typ)
    if not ok:
        expected = "a list of strings" if origin is list else getattr(typ, "__name__", typ)
        raise ConfigError(f"{where}: expected {expected}, got {raw!r}")
    if isinstance(raw, float) and math.isnan(raw):
        raise ConfigError(f"{where}: nan is not a number")
    pattern = meta.get("pattern")
    if pattern is not None and not pattern.fullmatch(raw):
        raise ConfigError(f"{where}: {raw!r} must be 1-64 letters, digits, '.', '_' or '-'")
    choices, lo, hi = meta.get("choices"), meta.get("lo"), meta.get("hi")
    for item in raw if origin is list else [raw]:
        if choices and item not in choices:
            raise ConfigError(f"{where}: {item!r} is not one of {', '.join(choices)}")
    if lo is not None and raw < lo or hi is not None and raw > hi:
        raise ConfigError(f"{where}: {raw!r} is outside {lo}..{hi}")
    if typ is Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (base / path)
    return raw


def _layer_section(cls: type[Any], table: object, name: str, source: str, base: Path) -> dict[str, Any]:
    """One file's keys of one section, each checked and converted on its own, so an error names its file."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {name}.{key}")
        values[key] = _value(raw, hints[key], fields[key].metadata, f"{source}: {name}.{key}", base)
    return values


@dataclass(frozen=True)
class Layer:
    """One file's settings, already checked: {section: {key: value}}; `source` names the file."""

    source: str
    values: dict[str, dict[str, Any]]


def parse_layer(data: dict[str, Any], source: str = "<config>", base: Path = Path(".")) -> Layer:
    hints = typing.get_type_hints(Config)
    values: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name not in hints:
            raise ConfigError(f"{source}: unknown section [{name}]")
        values[name] = _layer_section(hints[name], table, name, source, base)
    return Layer(source, values)


@dataclass(frozen=True)
class Loaded:
    """The config in force and, for each key set by a file, the file that set it last ("camera.fps" -> path)."""

    config: Config
    origins: dict[str, str]
    files: tuple[str, ...]


def merge(layers: list[Layer]) -> Loaded:
    """Later layers override earlier ones key by key; the dataclass defaults are the packaged layer below all."""
    hints = typing.get_type_hints(Config)
    merged: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for layer in layers:
        for name, table in layer.values.items():
            merged.setdefault(name, {}).update(table)
            origins.update({f"{name}.{key}": layer.source for key in table})
    first = layers[0].source if layers else "<config>"
    where: Callable[[str], str] = lambda key: origins.get(key, first)  # noqa: E731 - the file to blame for a key
    sections: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        cls = hints[f.name]
        if f.name not in merged and f.default is dataclasses.MISSING:
            raise ConfigError(f"{first}: missing section [{f.name}]")
        table = merged.get(f.name, {})
        for g in dataclasses.fields(cls):
            if g.name not in table and g.default is dataclasses.MISSING and g.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{first}: missing key {f.name}.{g.name}")
        sections[f.name] = cls(**table)
    config = Config(**sections)
    if not config.policy.accept:
        raise ConfigError(f"{where('policy.accept')}: policy.accept must name at least one of {', '.join(KINDS)}")
    for name in ("types", "test_types"):
        if not getattr(config.dcc, name):
            raise ConfigError(f"{where('dcc.' + name)}: dcc.{name} must not be empty")
    if config.camera.source == "replay" and config.camera.path is None:
        raise ConfigError(f"{where('camera.source')}: camera.path is required when camera.source is 'replay'")
    if config.mqtt.enabled and config.mqtt.tls and config.mqtt.ca is None:
        raise ConfigError(f"{where('mqtt.tls')}: mqtt.ca is required when mqtt.tls is true")
    if config.mqtt.enabled and (config.mqtt.cert is None) != (config.mqtt.key is None):
        raise ConfigError(f"{where('mqtt.cert' if config.mqtt.cert else 'mqtt.key')}: "
                          "mqtt.cert and mqtt.key go together (mutual TLS)")
    return Loaded(config, origins, tuple(layer.source for layer in layers))


def from_dict(data: dict[str, Any], source: str = "<config>", base: Path = Path(".")) -> Config:
    return merge([parse_layer(data, source, base)]).config


def _read_layer(path: Path) -> Layer:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_layer(data, str(path), path.parent.resolve())


def dropins(path: Path) -> list[Path]:
    """`conf.d/*.toml` beside the main file, in name order (`10-site.toml` before `20-door.toml`)."""
    folder = Path(path).parent / "conf.d"
    return sorted(p for p in folder.glob("*.toml") if p.is_file()) if folder.is_dir() else []


def load_layers(path: Path) -> Loaded:
    """The main file, then its conf.d drop-ins in order, over the packaged defaults."""
    path = Path(path)
    return merge([_read_layer(p) for p in [path, *dropins(path)]])


def load(path: Path) -> Config:
    return load_layers(path).config


DEFAULT_PATH = paths.CONFIG


def toml_value(value: object) -> str:
    """A config value as TOML, for the files qrgate writes (`provision`) and shows (`config show`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        # A JSON string without ASCII escaping is a TOML basic string (\uXXXX for controls, \" and \\).
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
