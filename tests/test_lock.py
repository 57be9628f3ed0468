"""The lock (lab/lock.py, docs/developer.md "The lock"): what pyproject.toml asks for, and what this venv runs."""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

from lab import lock

REQUIREMENTS = lock.REQUIREMENTS


def requirements(path: Path) -> list[str]:
    """The pins, markers and hashes, without uv's comments (which name the files it read)."""
    return [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]


def test_the_lock_holds_what_pyproject_asks_for_and_nothing_else(tmp_path):
    """Compiled again without --upgrade (pins kept), the lock comes out unchanged: a dependency
    added to or dropped from pyproject.toml without `./dev lock` fails here."""
    for name in ("device.txt", "test.txt"):
        shutil.copy(REQUIREMENTS / name, tmp_path / name)
    lock.compile_lock(tmp_path)
    for name in ("device.txt", "test.txt"):
        assert requirements(tmp_path / name) == requirements(REQUIREMENTS / name), name


def test_every_pin_has_hashes_and_the_test_lock_keeps_the_devices_pins():
    device, test = lock.pins(REQUIREMENTS / "device.txt"), lock.pins(REQUIREMENTS / "test.txt")
    assert {"cryptography", "numpy", "opencv-python-headless", "paho-mqtt", "zxing-cpp"} <= set(device)
    assert {name: test[name] for name in device} == device
    for path in (REQUIREMENTS / "device.txt", REQUIREMENTS / "test.txt"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text().split("\n", 2)[2])
        assert all("--hash=sha256:" in block for block in blocks if "==" in block), path


def test_this_venv_runs_exactly_the_test_lock():
    """./dev installed the lock and nothing else: what CI tests is what the package ships."""
    wanted = lock.pins(REQUIREMENTS / "test.txt")
    installed = {lock.normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    markers_elsewhere = {"colorama", "tzdata", "pyyaml-ft"}  # Windows only (tzdata: psycopg's); Python 3.13 only
    assert {n: installed.get(n) for n in wanted if n not in markers_elsewhere} == \
        {n: v for n, v in wanted.items() if n not in markers_elsewhere}
