"""`qrgate bench start`: the time from `qrgate run` starting to READY, as systemd sees it after a power cut.

A power cut at lunch leaves the door dark until the daemon is READY again:
its store open and the first frame decoded. This starts the real daemon as
the unit does (the venv's `qrgate run --config FILE`, a fresh process each
time), with $NOTIFY_SOCKET naming a datagram socket the bench listens on, and
times the wall clock from the spawn to READY=1; then SIGTERM, and the time
the daemon takes to stop (systemd's restart is a stop and a start). Beside
the wall time, the CPU time all its threads took until READY and the time
they were runnable but waited for a CPU (/proc's schedstat): on a machine
other work shares, the wall time grows with the second, the first far less.

Its configuration is a World's (lab/world.py): a replay camera over empty
scenes (nobody at the door while it boots), mock pins, the uplink on, to a
loopback port nobody answers (the network is often not up yet after a power
cut; paho connects in the background). Each round starts it twice: `first`
on an empty state folder (the store created, the trust list installed: a
device's first boot) and `warm` on the folder an earlier start left (the
store there: every start after a power cut).

Byte-code: a device's package compiles it at install (postinst), so the
daemon reads .pyc files. The bench gives its children a byte-code cache of
their own ($PYTHONPYCACHEPREFIX in its folder), filled by one start before
the measured ones; that start, which compiles every module the daemon
imports, is reported apart (`no_bytecode_s`). The page cache is warm after
it: a real power cut also reads the libraries from the card (only a Pi can
say what that costs).

Where the time goes (`breakdown`): the interpreter's own start (`python -c
pass`); one start traced from inside (lab/bench/start_trace.py: the imports
and app.run's steps, each timed, on the way to READY); and `python -X
importtime` of one start, its import time summed by top-level package
(importtime's own bookkeeping inflates these: they are shares, not times).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.errors import QrgateError
from lab import render
from lab.bench.machine import cpu_model, filesystem
from lab.broker import free_port
from lab.world import World

GOALS = {"cold_start_s": 1.5}  # issue 22: from `qrgate run` starting to READY, on this machine (a Pi: 3-5x)
READY_TIMEOUT_S = 60.0  # the unit's TimeoutStartSec
STOP_TIMEOUT_S = 30.0
EMPTY_FRAMES = 3
TOP_PACKAGES = 12  # packages listed by import time
LIBRARIES = {"numpy": "numpy", "opencv": "opencv-python-headless", "zxing_cpp": "zxing-cpp", "pyzbar": "pyzbar",
             "cryptography": "cryptography", "paho_mqtt": "paho-mqtt", "gpiozero": "gpiozero", "cbor2": "cbor2"}


@dataclass(frozen=True)
class Setup:
    folder: Path
    world: World
    frames: Path
    port: int  # the broker's: nobody listens there
    env: dict[str, str]
    command: list[str]

    def config(self, state: Path) -> Path:
        """A daemon's configuration file keeping its store in `state`."""
        path = state.parent / f"{state.name}.toml"
        path.write_text(self.world.config_toml(state, self.frames, mqtt_port=self.port, device='venue = "bench"',
                                               camera="loop = true"))
        return path


def run(runs: int = 5, folder: Path | None = None) -> dict:
    """`runs` rounds of a first start and a warm start, then one traced start and one under -X importtime."""
    if runs < 1:
        raise QrgateError("bench start: --runs must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-start-", dir=folder) as tmp:
        setup = _setup(Path(tmp))
        warm_state = setup.folder / "state-warm"
        compile_run = start(setup, setup.config(warm_state))  # fills the byte-code cache; leaves a store
        first, warm = [], []
        for i in range(runs):  # interleaved, so that the machine's other load falls on both alike
            first.append(start(setup, setup.config(setup.folder / f"state-first-{i}")))
            warm.append(start(setup, setup.config(warm_state)))
        breakdown = {
            "interpreter_start_ms": _interpreter_start_ms(setup, runs),
            "traced": _traced(setup, setup.config(warm_state)),
            "importtime": _importtime(setup, setup.config(warm_state)),
        }
        return _report(setup, runs, compile_run, first, warm, breakdown)


def _setup(tmp: Path) -> Setup:
    world = World.create(tmp / "world")
    frames = tmp / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(EMPTY_FRAMES):
        render.write_png(frames / f"{i:03d}.png", render.scene(None, rng))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "NOTIFY_SOCKET",
                                                              "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return Setup(tmp, world, frames, free_port(), env, _command())


def _command() -> list[str]:
    """What the unit's ExecStart runs: the venv's console script; `python -m firmware` where there is none."""
    script = Path(sys.executable).parent / "qrgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "firmware"]


# -- one start ----------------------------------------------------------------------------------------------------


class NotifySocket:
    """systemd's end of sd_notify: an abstract AF_UNIX datagram socket, named as systemd names it."""

    def __init__(self) -> None:
        self.name = f"@qrgate-bench-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.05)

    def ready(self, proc: subprocess.Popen, deadline: float) -> tuple[float, dict[str, str]]:
        """The time READY=1 arrived and its fields; raises if the daemon exits or the deadline passes first."""
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if proc.poll() is not None:
                    raise QrgateError(f"bench start: the daemon exited ({proc.returncode}) before READY") from None
                continue
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if fields.get("READY") == "1":
                return at, fields
        raise QrgateError(f"bench start: no READY within {READY_TIMEOUT_S:g} s")

    def close(self) -> None:
        self.sock.close()


def start(setup: Setup, config: Path, python_options: tuple[str, ...] = ()) -> dict:
    """Spawn `qrgate run`, wait for READY, stop it with SIGTERM: the seconds to READY and to exit, its status.

    With `python_options` (-X importtime) the console script is run by the
    venv's interpreter given them; its stderr is then returned as `stderr`.
    """
    notify = NotifySocket()
    command = setup.command
    if python_options:
        command = [sys.executable, *python_options, *(command[1:] if command[0] == sys.executable else command)]
    log = config.with_suffix(".log")
    try:
        with open(log, "w") as err:
            t0 = time.monotonic()
            proc = subprocess.Popen([*command, "run", "--config", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, env={**setup.env,
                                                                                "NOTIFY_SOCKET": notify.name})
            try:
                at, fields = notify.ready(proc, t0 + READY_TIMEOUT_S)
                cpu = _cpu(proc.pid)
                proc.send_signal(signal.SIGTERM)
                stopping = time.monotonic()
                code = proc.wait(STOP_TIMEOUT_S)
                stopped = time.monotonic()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    except QrgateError as exc:
        raise QrgateError(f"{exc}: {_last_line(log)}") from None
    finally:
        notify.close()
    if code != 0:
        raise QrgateError(f"bench start: the daemon stopped with status {code}: {_last_line(log)}")
    out = {"ready_s": round(at - t0, 4), "stop_s": round(stopped - stopping, 4), "status": fields.get("STATUS"),
           "cpu_s": cpu[0] if cpu else None, "runnable_waiting_s": cpu[1] if cpu else None}
    if python_options:
        out["stderr"] = log.read_text(errors="replace")
    return out


def _cpu(pid: int) -> tuple[float, float] | None:
    """The daemon's CPU time so far, all its threads, and the time they were runnable but waited for a CPU
    (/proc/PID/task/*/schedstat, in ns): on a machine other work shares, the wall time to READY grows with the
    second, the first hardly."""
    run = wait = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "schedstat").read_text().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(run / 1e9, 4), round(wait / 1e9, 4)


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


# -- where the time goes ------------------------------------------------------------------------------------------


def _interpreter_start_ms(setup: Setup, runs: int) -> float:
    """The median wall time of the venv's `python -c pass`: what comes before any of qrgate's code runs."""
    times = []
    for _ in range(max(3, runs)):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], env=setup.env, check=True)
        times.append(time.monotonic() - t0)
    return round(statistics.median(times) * 1000, 1)


def _traced(setup: Setup, config: Path) -> dict:
    """One start traced from inside (lab/bench/start_trace.py), in a fresh interpreter."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**setup.env, "PYTHONPATH": os.pathsep.join(filter(None, (root, setup.env.get("PYTHONPATH"))))}
    proc = subprocess.run([sys.executable, "-c", f"from lab.bench.start_trace import main; main({str(config)!r})"],
                          capture_output=True, text=True, env=env, timeout=READY_TIMEOUT_S + STOP_TIMEOUT_S)
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = proc.stderr.strip().splitlines()
        raise QrgateError(f"bench start: the traced start failed: {lines[-1] if lines else proc.returncode}")
    traced = json.loads(proc.stdout.strip().splitlines()[-1])
    if traced["ready"] is None:
        raise QrgateError("bench start: the traced start stopped before READY")
    return {"ready_ms": traced["ready"]["at_ms"], "main_at_ms": traced["main_at_ms"], "missing": traced["missing"],
            "steps": traced["steps"]}


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _importtime(setup: Setup, config: Path) -> dict:
    """One start under `python -X importtime`: import time (self) summed by top-level package, until READY."""
    stderr = start(setup, config, ("-X", "importtime"))["stderr"]
    by_package: Counter[str] = Counter()
    slowest: list[tuple[int, str]] = []
    for line in stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            self_us, name = int(m[1]), m[4]
            top = name.split(".")[0]
            by_package[".".join(name.split(".")[:2]) if top in ("firmware", "lab", "custodian") else top] += self_us
            slowest.append((self_us, name))
    total = sum(by_package.values())
    return {
        "total_ms": round(total / 1000, 1),
        "by_package_ms": {k: round(v / 1000, 1) for k, v in by_package.most_common(TOP_PACKAGES)},
        "slowest_modules_ms": {name: round(us / 1000, 1) for us, name in sorted(slowest, reverse=True)[:10]},
    }


# -- the report ---------------------------------------------------------------------------------------------------


def _stat(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def _report(setup: Setup, runs: int, compile_run: dict, first: list[dict], warm: list[dict], breakdown: dict) -> dict:
    statuses = {r["status"] for r in (compile_run, *first, *warm)}
    first_s = _stat([r["ready_s"] for r in first])
    warm_s = _stat([r["ready_s"] for r in warm])
    cpu = {kind: {key: _stat([r[key] for r in runs]) for key in ("cpu_s", "runnable_waiting_s")}
           for kind, runs in (("first", first), ("warm", warm)) if all(r["cpu_s"] is not None for r in runs)}
    met = {"cold_start_s": max(first_s["median"], warm_s["median"]) < GOALS["cold_start_s"],
           "ready_scanning": statuses == {"scanning"}}
    return {
        "bench": "start",
        "machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "python": platform.python_version(), **_versions(),
        "command": [Path(setup.command[0]).name, *setup.command[1:], "run", "--config", "FILE"],
        "state_filesystem": filesystem(setup.folder),
        "runs": runs,
        "ready_status": sorted(s or "" for s in statuses),
        "first_s": first_s,  # an empty state folder: the store created, the trust list installed
        "warm_s": warm_s,  # the store an earlier start left
        "stop_s": _stat([r["stop_s"] for r in (*first, *warm)]),
        # until READY, all the daemon's threads: its CPU time, and the time it was runnable but waited for a CPU
        "cpu_to_ready": cpu,
        "no_bytecode_s": compile_run["ready_s"],  # the first start: every module compiled, the page cache cold(er)
        "breakdown": breakdown,
        "goals": {**GOALS, "ready_scanning": True},
        "goals_met": {**met, "all": all(met.values())},
    }


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for key, dist in LIBRARIES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out
