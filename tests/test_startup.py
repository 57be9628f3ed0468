"""What keeps `qrgate run`'s start short, held here (the time itself is `qrgate bench start`'s to measure).

The daemon parses its command line without the lab's and custodian's commands;
importing it leaves asn1crypto to the first certificate cryptography refuses;
and the garbage collector waits until READY (firmware/startup.py). READY itself
comes after the first frame's turn of the loop, once it is read
(tests/core/test_loop.py, tests/e2e/test_systemd_notify.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from firmware import cli


def fresh(code: str) -> dict:
    """`code` run in a new interpreter, printing one JSON value."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_daemons_command_is_parsed_without_the_lab_or_the_custodian(tmp_path):
    seen = fresh(f"""
import json, sys
from firmware import cli
code = cli.main(["run", "--config", {str(tmp_path / "missing.toml")!r}])
print(json.dumps({{"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("lab", "custodian"))}}))
""")
    assert seen == {"code": 2, "modules": []}  # the missing file refused, and nothing of the others imported
    full = fresh("""
import json, sys
from firmware import cli
cli.build_parser()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("lab", "custodian"))))
""")
    assert "lab.cli" in full and "custodian.cli" in full  # the control: the whole command line loads them


def _commands(parser, dest: str = "command") -> dict:
    (sub,) = [a for a in parser._actions if a.dest == dest]
    return sub.choices


def test_the_device_commands_are_the_device_parsers_own_and_no_extension_changes_them():
    own, whole = _commands(cli.build_parser(extensions=False)), _commands(cli.build_parser())
    assert cli.DEVICE_COMMANDS == set(own) - {"trust"}  # "trust" is shared: the lab adds `trust build`
    assert set(whole) > set(own)
    for name in cli.DEVICE_COMMANDS:
        assert whole[name].format_help() == own[name].format_help(), name
    assert set(_commands(whole["trust"], "sub")) > set(_commands(own["trust"], "sub"))  # why "trust" is not one


def test_importing_the_daemon_leaves_asn1crypto_for_a_refused_certificate():
    seen = fresh("""
import json, sys
import firmware.app
from firmware.tokens import eku
before = "asn1crypto" in sys.modules
from asn1crypto import core
print(json.dumps({"before": before, "eku_id": eku._EKU_ID == core.ObjectIdentifier(eku.EKU).contents}))
""")
    assert seen == {"before": False, "eku_id": True}


def test_the_collector_waits_for_the_start_then_start_ups_objects_are_frozen():
    seen = fresh("""
import gc, json
from firmware import startup
startup.started()  # not paused: nothing
untouched = gc.isenabled() and gc.get_freeze_count() == 0
startup.pause()
paused = not gc.isenabled()
import weakref
class Part: pass
part = Part(); part.me = part; gone = weakref.ref(part); del part  # start-up's garbage: a cycle
startup.started()
collected = gone() is None  # collected before the freeze, not frozen for good
frozen, on = gc.get_freeze_count(), gc.isenabled()
startup.started()
again = gc.get_freeze_count() == frozen
gc.disable(); startup.pause(); startup.started()  # off before: left off
print(json.dumps({"untouched": untouched, "paused": paused, "frozen": frozen, "on": on, "again": again,
                  "left_off": not gc.isenabled(), "collected": collected}))
""")
    assert seen["untouched"] and seen["paused"] and seen["on"] and seen["again"] and seen["left_off"]
    assert seen["frozen"] > 1000 and seen["collected"]
