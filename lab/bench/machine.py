"""What every benchmark needs from the machine: what it is, a process's memory, and a fresh process to run in."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from firmware.errors import QrgateError


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def proc_status_kb(key: str) -> int | None:
    """A figure of /proc/self/status in kB (VmRSS, VmHWM), None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Restart VmHWM (the peak) from now: writing 5 to clear_refs, allowed on one's own process since Linux 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return proc_status_kb("VmHWM") is not None


def kb_to_mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb is not None else None


def filesystem(path: Path) -> str:
    """The filesystem type `path` lives on: what an fsync costs depends on it (tmpfs: nothing)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fs = line.split()[:3]
                if str(path).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fs
    except OSError:
        pass
    return kind


def in_fresh_process(module: str, side: str, kwargs: dict, limit_s: float) -> dict:
    """`module._child()` run in a new interpreter, given {"side", "kwargs"} as JSON, printing its result as JSON.

    Not multiprocessing: nothing of whatever __main__ is gets re-imported, and
    the child's heap and resident memory are its own.
    """
    root = str(Path(__file__).resolve().parents[2])  # where `firmware` is, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run(
        [sys.executable, "-c", f"from {module} import _child; _child()"],
        input=json.dumps({"side": side, "kwargs": kwargs}), capture_output=True, text=True, env=env,
        timeout=limit_s,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1].removeprefix("firmware.errors.QrgateError: ") if lines else f"exit status {proc.returncode}"
        raise QrgateError(f"the {side} side failed: {why}")
    return json.loads(proc.stdout)
