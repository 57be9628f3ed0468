"""`qrgate config check` and `qrgate config show`: what a technician asks of the layered configuration.

`check` is what the unit runs as ExecStartPre: it loads every layer and opens
every file the config names, as the daemon would, so a broken config stops
the start with one clear line instead of a restart loop. `show` prints the
configuration in force as TOML, each key set by a file marked with that file,
so "why does it do that?" has an answer without reading four files.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from firmware import config, credentials, keys
from firmware.errors import ConfigError


def check(cfg: config.Config) -> list[str]:
    """Open what the daemon will open at start; a QrgateError names the first that fails."""
    keys.load_root_public(cfg.trust.root_key)
    keys.load_authority_public(cfg.authority.public_key)
    named = {"trust.list": cfg.trust.list, "mqtt.ca": cfg.mqtt.ca if cfg.mqtt.enabled and cfg.mqtt.tls else None,
             **dict(zip(("mqtt.cert", "mqtt.key"), credentials.client_pair(cfg.mqtt.cert, cfg.mqtt.key)
                        if cfg.mqtt.enabled else (None, None)))}
    if cfg.camera.source == "replay":
        named["camera.path"] = cfg.camera.path
    for key, path in named.items():
        if path is None:
            continue
        if not Path(path).exists():
            raise ConfigError(f"{key}: {path} does not exist")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{key}: {path} is not readable by this user")
    return [f"{key} = {path}" for key, path in named.items() if path is not None]


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def show(loaded: config.Loaded, changed: bool = False) -> str:
    """The config in force as TOML; `changed`: only the keys that differ from the packaged defaults."""
    lines = [f"# files: {', '.join(loaded.files)}"]
    for section in dataclasses.fields(loaded.config):
        table = getattr(loaded.config, section.name)
        body = []
        for f in dataclasses.fields(table):
            value, key = getattr(table, f.name), f"{section.name}.{f.name}"
            default = _default(f)
            if changed and default is not dataclasses.MISSING and value == default:
                continue
            if value is None:
                body.append(f"# {f.name} is not set")
                continue
            origin = loaded.origins.get(key)
            body.append(f"{f.name} = {config.toml_value(value)}" + (f"  # {origin}" if origin else "  # default"))
        if body:
            lines += ["", f"[{section.name}]", *body]
    return "\n".join(lines) + "\n"


def cmd_check(args) -> int:
    loaded = config.load_layers(args.config)
    for line in check(loaded.config):
        print(f"  {line}")
    print(f"{', '.join(loaded.files)}: ok")
    return 0


def cmd_show(args) -> int:
    print(show(config.load_layers(args.config), changed=args.changed), end="")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("config", help="check or show the layered configuration")
    cmds = parser.add_subparsers(dest="sub", required=True)
    s = cmds.add_parser("check", help="load every layer and open every file it names (for ExecStartPre)")
    s.add_argument("--config", type=Path, default=config.DEFAULT_PATH)
    s.set_defaults(func=cmd_check)
    s = cmds.add_parser("show", help="the configuration in force as TOML, each key marked with its file")
    s.add_argument("--config", type=Path, default=config.DEFAULT_PATH)
    s.add_argument("--changed", action="store_true", help="only keys that differ from the packaged defaults")
    s.set_defaults(func=cmd_show)

