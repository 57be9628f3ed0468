"""`./dev lock`: compile the lock, `requirements/device.txt` and `requirements/test.txt`, with uv.

Every dependency at one version with the hash of each of its wheels, from one
universal resolution for CPython 3.11 (Debian 12, Raspberry Pi OS Bookworm), so
one file serves x86_64 and aarch64; wheels only. device.txt is what a device runs
(pyproject's dependencies, held back by `requirements/constraints.txt`); test.txt
is the same pins plus the `test` extra. `./dev lock` upgrades every pin to its
newest allowed version, then installs the result and runs the suite on it;
without `--upgrade` the existing pins are kept and only what pyproject.toml
added or dropped changes (what tests/test_lock.py checks has been done).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements"
COMMON = ["--universal", "--python-version", "3.11", "--only-binary", ":all:", "--generate-hashes",
          "--quiet", "--custom-compile-command", "./dev lock"]


def pins(path: Path) -> dict[str, str]:
    """name -> version of every pin in a compiled requirements file (markers aside), names normalised (PEP 503)."""
    found = re.findall(r"^([A-Za-z0-9._-]+)==([^ ;\\\n]+)", path.read_text(), re.M)
    return {normalise(name): version for name, version in found}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def compile_lock(folder: Path = REQUIREMENTS, upgrade: bool = False) -> None:
    """(Re)write `folder`/device.txt and test.txt from pyproject.toml and REQUIREMENTS/constraints.txt."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("./dev lock: uv is missing (it comes with the test lock: ./dev sets it up)")
    args = [*COMMON, *(["--upgrade"] if upgrade else [])]
    # Relative to the checkout: uv writes them into the files' comments.
    device, test, constraints = (os.path.relpath(p, REPO) for p in (
        folder / "device.txt", folder / "test.txt", REQUIREMENTS / "constraints.txt"))
    steps = [
        [uv, "pip", "compile", "pyproject.toml", *args, "-c", constraints, "-o", device],
        # The test lock is held to the device's pins: CI tests exactly what a device runs.
        [uv, "pip", "compile", "pyproject.toml", "--extra", "test", *args, "-c", device, "-o", test],
    ]
    for step in steps:
        result = subprocess.run(step, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"./dev lock: uv failed:\n{result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev lock", description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="every pin to its newest allowed version")
    args = parser.parse_args(argv)
    compile_lock(upgrade=args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
