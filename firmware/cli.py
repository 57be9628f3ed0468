"""`qrgate`: the one console command. Argument parsing only: the work is imported when a command runs.

The device's own commands are here (the daemon, its configuration, a
technician's provisioning and checks). Other packages add theirs through the
`qrgate.commands` entry points (pyproject.toml): the lab's (demo, benchmarks,
fuzzing, test issuers) and the custodian's. The firmware never imports them; a
device installed without them has its own commands only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable

from firmware import __version__, paths
from firmware.argtypes import positive_int
from firmware.errors import QrgateError

ENTRY_POINTS = "qrgate.commands"
# The device's own commands, which no other package adds to (the lab's and the custodian's add to "trust"): these
# parse without looking for the others, so `qrgate run` after a power cut does not wait for importlib.metadata to
# read every installed package's entry points and for the lab's and custodian's command modules to import
# (qrgate bench start). tests/test_cli.py holds this list to the parser.
DEVICE_COMMANDS = frozenset({"run", "config", "provision", "status", "selftest", "aim", "decode"})
Groups = dict[str, "argparse._SubParsersAction[argparse.ArgumentParser]"]


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A command's work, named "module:function" and imported only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        module, function = target.split(":")
        work: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
        return work(args)

    return run


def _config(s: argparse.ArgumentParser, help: str = f"TOML configuration file (default {paths.CONFIG})") -> None:
    s.add_argument("--config", type=Path, default=paths.CONFIG, metavar="FILE", help=help)


def add_device_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], groups: Groups) -> None:
    work = "firmware.technician"
    s = sub.add_parser("run", help="the daemon")
    s.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    s.add_argument("--check", action="store_true", help="only load and check the configuration")
    s.set_defaults(func=lazy(f"{work}.commands:cmd_run"))

    cmds = sub.add_parser("config", help="check or show the layered configuration").add_subparsers(
        dest="sub", required=True)
    s = cmds.add_parser("check", help="load every layer and open every file it names (for ExecStartPre)")
    _config(s)
    s.set_defaults(func=lazy(f"{work}.config_commands:cmd_check"))
    s = cmds.add_parser("show", help="the configuration in force as TOML, each key marked with its file")
    _config(s)
    s.add_argument("--changed", action="store_true", help="only keys that differ from the packaged defaults")
    s.set_defaults(func=lazy(f"{work}.config_commands:cmd_show"))
    s = cmds.add_parser("reference", help="every key, its default, range and meaning, as Markdown "
                        "(docs/configuration.md)")
    s.set_defaults(func=lazy(f"{work}.config_commands:cmd_reference"))

    s = sub.add_parser(
        "provision", help="make this device the custodian's: check and install keys, CA, trust list and config, "
                          "make the device key and print its CSR; then --install-cert the certificate",
        description="Run on the device, with sudo. Every input is checked before anything is written; running "
                    "it again is safe (the device key is kept). Prints a JSON summary line, then the CSR to send "
                    "to the custodian's CA.")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--install-cert", type=Path, metavar="FILE",
                      help="install the certificate the custodian's CA made from the CSR (checked against this "
                           "device's key, the installed CA and the config's venue:device CN)")
    mode.add_argument("--generate-key", action="store_true",
                      help="only make the device key if it is missing (the image's first boot)")
    s.add_argument("--venue", metavar="ID", help="venue id (an MQTT topic level)")
    s.add_argument("--device", metavar="ID", help="device id, unique in the venue (an MQTT topic level)")
    s.add_argument("--broker", metavar="URL", help="the custodian's broker, mqtts://HOST[:PORT] (port 8883 by "
                   "default)")
    s.add_argument("--insecure-no-tls", action="store_true",
                   help="allow an mqtt:// broker without TLS (a lab only; --ca is then optional)")
    s.add_argument("--ca", type=Path, metavar="FILE", help="the custodian CA's certificate (PEM): it signs the "
                   "broker's certificate and this device's")
    s.add_argument("--authority-key", type=Path, metavar="FILE",
                   help="the health authority's X25519 public key (authority.pub, PEM); the trust list must vouch "
                        "for it")
    s.add_argument("--root-key", type=Path, metavar="FILE",
                   help="the trust-list root public key (root.pub, Ed25519 PEM): needed to check --trust, and "
                        "every later list")
    s.add_argument("--trust", type=Path, metavar="FILE", help="a signed trust list (trustlist.cose)")
    s.add_argument("--venue-secret", type=Path, metavar="FILE",
                   help="the venue secret (32 random bytes, mode 0600; the same file on every device of the venue): "
                        "its doors then share the tokens they accept, so a token used at one is refused at the next")
    s.add_argument("--etc", type=Path, default=paths.ETC, metavar="DIR",
                   help=f"the config folder (default {paths.ETC})")
    s.add_argument("--state-dir", type=Path, metavar="DIR",
                   help=f"the daemon's state folder, written into the config (default {paths.STATE_DIR})")
    s.set_defaults(func=lazy(f"{work}.provision:main"))

    s = sub.add_parser("status", help="the device's health at a glance (exit 1 when something needs attention)")
    _config(s)
    s.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    s.add_argument("--sys-root", type=Path, default=Path("/"),
                   help="where /sys and /run/systemd are read from (default /; tests give a fixture tree)")
    s.set_defaults(func=lazy(f"{work}.status:cmd_status"))

    s = sub.add_parser("selftest", help="walk the LEDs and buzzer, capture a frame, check store, broker and clock")
    _config(s)
    s.set_defaults(func=lazy(f"{work}.selftest:cmd_selftest"))

    s = sub.add_parser(
        "aim", help="a camera frame as a PNG with the QR codes located outlined and the sharpness, to aim and "
                    "focus (stop qrgate.service first: it holds the camera)")
    _config(s, help=f"TOML configuration file (default {paths.CONFIG}); its [camera] section names the camera")
    s.add_argument("--out", type=Path, metavar="PNG", help=f"the PNG to write (default ./{paths.AIM_PNG}; with "
                   "--watch: none unless given, then the last frame)")
    s.add_argument("--watch", action="store_true", help="a line per frame, live: sharpness, brightness, "
                   "whether a code is read, until Ctrl-C")
    s.add_argument("--frames", type=positive_int, metavar="N", help="with --watch: stop after N lines")
    s.set_defaults(func=lazy(f"{work}.aim:main"))

    revocation = groups["trust revocation"]
    s = revocation.add_parser("install", help="install a DCC revocation list on this device from a folder (as "
                              "`qrgate trust revocation build` writes it; refuses rollback)")
    s.add_argument("folder", type=Path, metavar="DIR")
    _config(s)
    s.set_defaults(func=lazy(f"{work}.commands:cmd_revocation_install"))
    s = revocation.add_parser("show", help="the DCC revocation list in force and the next one coming (or the list "
                              "in DIR), checked against the device's root key")
    s.add_argument("folder", type=Path, nargs="?", metavar="DIR")
    _config(s)
    s.set_defaults(func=lazy(f"{work}.commands:cmd_revocation_show"))

    trust = groups["trust"]
    s = trust.add_parser("install", help="install a trust list on this device (refuses rollback)")
    s.add_argument("file", type=Path)
    _config(s)
    s.set_defaults(func=lazy(f"{work}.commands:cmd_trust_install"))
    s = trust.add_parser("show", help="the installed trust list (or FILE), checked against the device's root key")
    s.add_argument("file", type=Path, nargs="?")
    _config(s)
    s.set_defaults(func=lazy(f"{work}.commands:cmd_trust_show"))

    s = sub.add_parser("decode", help="decode QR codes in image files, one JSON line per file")
    s.add_argument("files", nargs="+")
    s.add_argument("--backend", choices=("zxing", "zbar"), default="zxing")
    s.set_defaults(func=lazy(f"{work}.commands:cmd_decode"))


def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without `extensions`, the device's own commands only."""
    p = argparse.ArgumentParser(prog="qrgate", description="qrgate entrance scanner firmware and tools")
    p.add_argument("--version", action="version", version=f"qrgate {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    trust = sub.add_parser("trust", help="build, install and show trust lists").add_subparsers(dest="sub",
                                                                                              required=True)
    groups: Groups = {
        "trust": trust,
        "trust revocation": trust.add_parser("revocation", help="build, install, show and publish DCC revocation "
                                             "lists").add_subparsers(dest="revocation_sub", required=True),
    }
    add_device_commands(sub, groups)
    if extensions:
        from importlib.metadata import entry_points

        for extension in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
            extension.load()(sub, groups)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # the top level's options take no value
    args = build_parser(extensions=command not in DEVICE_COMMANDS).parse_args(argv)
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except QrgateError as exc:
        print(f"qrgate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable file named on the command line
        print(f"qrgate: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
