"""`qrgate config check` and `qrgate config show`: what a technician asks of the layered configuration.

`check` is what the unit runs as ExecStartPre: it loads every layer and opens
every file the config names, as the daemon would, so a broken config stops
the start with one clear line instead of a restart loop. `show` prints the
configuration in force as TOML, each key set by a file marked with that file,
so "why does it do that?" has an answer without reading four files.
`reference` is docs/configuration.md, written from config.py's fields (a
test holds the page and the code equal).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

from firmware import config, credentials, keys
from firmware.errors import ConfigError


def check(cfg: config.Config) -> list[str]:
    """Open what the daemon will open at start; a QrgateError names the first that fails."""
    keys.load_root_public(cfg.trust.root_key)
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


def _default(f: dataclasses.Field[Any]) -> object:
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


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _allowed(f: dataclasses.Field[Any], kind: object) -> str:
    m = f.metadata
    if m.get("choices"):
        many = "any of " if typing.get_origin(kind) is list else ""
        return many + ", ".join(f"`{c}`" for c in m["choices"])
    if m.get("lo") is not None:
        return f"{m['lo']:g} to {m['hi']:g}" if isinstance(m["lo"], float) else f"{m['lo']:,} to {m['hi']:,}"
    if m.get("pattern") is not None:
        return f"`{m['pattern'].pattern}`"
    if kind is bool:
        return "`true`, `false`"
    return "a path" if "Path" in str(kind) else ("a list" if typing.get_origin(kind) is list else "text")


def reference() -> str:
    """The configuration reference (docs/configuration.md) as Markdown, from config.py's fields."""
    lines = ["# Configuration reference", "",
             "Written by `qrgate config reference` from `firmware/config.py`; "
             "`tests/test_config_reference.py` fails when this page and the code differ. How the layers "
             "combine, and an example, are in [technician.md](technician.md#configuration).", ""]
    for section in dataclasses.fields(config.Config):
        table = typing.get_type_hints(config.Config)[section.name]
        lines += [f"## [{section.name}]", ""]
        if table.__doc__ and not table.__doc__.startswith(table.__name__ + "("):
            lines += [table.__doc__.strip(), ""]
        lines += ["| key | default | allowed | what |", "| --- | --- | --- | --- |"]
        hints = typing.get_type_hints(table)
        for f in dataclasses.fields(table):
            default = _default(f)
            shown = ("required" if default is dataclasses.MISSING else "not set" if default is None
                     else f"`{config.toml_value(default)}`")
            lines.append(f"| `{f.name}` | {_cell(shown)} | {_cell(_allowed(f, hints[f.name]))} "
                         f"| {_cell(f.metadata.get('help', ''))} |")
        lines.append("")
    return "\n".join(lines)


def cmd_reference(args: argparse.Namespace) -> int:
    print(reference(), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    loaded = config.load_layers(args.config)
    for line in check(loaded.config):
        print(f"  {line}")
    print(f"{', '.join(loaded.files)}: ok")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(show(config.load_layers(args.config), changed=args.changed), end="")
    return 0
