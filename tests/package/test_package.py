"""What the package holds, read from the built `.deb` files without installing them.

Installing them, on an emulated arm64 Debian 12 root and an amd64 one, is
test_debian_root.py; this file checks the contents, the control fields and the
conffile, and that systemd accepts the units with the package's real binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import lock, package

REPO = Path(__file__).resolve().parents[2]
UNITS = ("qrgate.service", "qrgate-keygen.service")
PYTHON_LIB = "opt/qrgate/venv/lib/python3.11/site-packages"


def run(*args: object, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def control(deb: Path) -> dict[str, str]:
    text = run("dpkg-deb", "--field", deb).stdout
    return {k: v.strip() for k, v in re.findall(r"^([A-Za-z-]+):(.*)$", text, re.M)}


@pytest.fixture(scope="module")
def unpacked(built, tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for arch in package.ARCHES:
        root = tmp_path_factory.mktemp(f"unpacked-{arch}")
        result = run("dpkg-deb", "-x", built.deb(arch), root)
        assert result.returncode == 0, result.stderr
        roots[arch] = root
    return roots


@pytest.mark.parametrize("arch", list(package.ARCHES))
def test_the_control_fields_name_the_architecture_version_and_what_it_needs(built, arch):
    fields = control(built.deb(arch))
    assert fields["Package"] == "qrgate" and fields["Architecture"] == arch
    assert fields["Version"] == package.version(1)
    assert control(built.deb(arch, 2))["Version"] == package.version(2)
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert {"python3 (>= 3.11)", "python3 (<< 3.12)", "libzbar0", "systemd", "init-system-helpers"} <= set(depends)
    assert {r.strip() for r in fields["Recommends"].split(",")} == {"python3-picamera2", "python3-lgpio"}


@pytest.mark.parametrize("arch", list(package.ARCHES))
def test_the_venv_holds_exactly_the_lock_with_wheels_for_its_architecture(unpacked, arch):
    site = unpacked[arch] / PYTHON_LIB
    installed = {}
    for dist in site.glob("*.dist-info"):
        meta = (dist / "METADATA").read_text(errors="replace")
        name = lock.normalise(re.search(r"^Name: (.+)$", meta, re.M)[1].strip())
        installed[name] = re.search(r"^Version: (.+)$", meta, re.M)[1].strip()
        wheel = (dist / "WHEEL").read_text()
        tags = re.findall(r"^Tag: (.+)$", wheel, re.M)
        # A compiled wheel is for this architecture (a pure one says any).
        assert all(t.endswith("-any") or package.ARCHES[arch].machine in t for t in tags), (name, tags)
    want = lock.pins(package.LOCK)
    assert installed.pop("qrgate") == package.version(1).split("-")[0]
    assert installed == want
    # The compiled code really is for the target: an ELF header's machine field.
    so = next(site.glob("cv2/cv2*.so"))
    machine = int.from_bytes(so.read_bytes()[18:20], "little")
    assert machine == {"arm64": 0xB7, "amd64": 0x3E}[arch]


def test_the_venv_lives_at_its_final_path_over_the_systems_python(unpacked):
    venv = unpacked["arm64"] / "opt/qrgate/venv"
    assert os.readlink(venv / "bin/python3") == "/usr/bin/python3"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg  # picamera2 and lgpio from apt on a Pi
    assert (venv / "bin/qrgate").read_text().startswith("#!/opt/qrgate/venv/bin/python3\n")
    assert os.access(venv / "bin/qrgate", os.X_OK)
    assert os.readlink(unpacked["arm64"] / "usr/bin/qrgate") == "/opt/qrgate/venv/bin/qrgate"
    # No script written for the builder's Python, no byte-code of the builder's.
    assert not (venv / "lib/python3.11/site-packages/bin").exists()
    assert not list(venv.rglob("__pycache__"))


def test_the_amd64_venv_runs_here_as_it_would_at_its_path(unpacked):
    """This machine is Debian 12 on amd64: the unpacked venv runs on its /usr/bin/python3."""
    if run("/usr/bin/python3", "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))").returncode:
        pytest.skip("this machine's /usr/bin/python3 is not 3.11")
    python = unpacked["amd64"] / "opt/qrgate/venv/bin/python3"
    imports = ("import sys, cv2, numpy, cryptography, zxingcpp, pyzbar.pyzbar, cbor2, base45, asn1crypto.x509, "
               "gpiozero, paho.mqtt.client, firmware.cli, firmware.tokens.eku; print(sys.prefix, numpy.__version__)")
    result = run(python, "-c", imports, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    prefix, numpy_version = result.stdout.split()
    assert prefix == str(unpacked["amd64"] / "opt/qrgate/venv") and numpy_version == lock.pins(package.LOCK)["numpy"]


def test_the_units_sysusers_tmpfiles_and_conffile_are_the_repositorys(built, unpacked):
    root = unpacked["arm64"]
    for unit in UNITS:
        assert (root / "usr/lib/systemd/system" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    assert (root / "usr/lib/sysusers.d/qrgate.conf").read_bytes() == (REPO / "systemd/qrgate.sysusers").read_bytes()
    assert (root / "usr/lib/tmpfiles.d/qrgate.conf").read_bytes() == (REPO / "systemd/qrgate.tmpfiles").read_bytes()
    listing = run("dpkg-deb", "--info", built.deb("arm64"), "conffiles").stdout.split()
    assert listing == ["/etc/qrgate/conf.d/50-local.toml"]
    # The device's own files are never in the package, so dpkg never replaces them.
    assert not (root / "etc/qrgate/qrgate.toml").exists() and not (root / "etc/qrgate/tls").exists()


def test_the_packaged_conffile_is_read_and_changes_nothing_in_force(unpacked, world, tmp_path):
    """Installed beside a provisioned qrgate.toml, the conffile is read as a layer and overrides no key."""
    from firmware import config
    main = tmp_path / "qrgate.toml"
    main.write_text(world.config_toml(tmp_path / "state", tmp_path / "frames"))
    alone = config.load_layers(main)
    (tmp_path / "conf.d").mkdir()
    shutil.copy(unpacked["amd64"] / "etc/qrgate/conf.d/50-local.toml", tmp_path / "conf.d")
    beside = config.load_layers(main)
    assert beside.files == (*alone.files, str(tmp_path / "conf.d" / "50-local.toml"))
    assert beside.config == alone.config and beside.origins == alone.origins


@pytest.fixture(scope="module")
def verify_root(unpacked, tmp_path_factory) -> Path:
    """The unpacked amd64 package plus this machine's own units (sysinit.target and the rest,
    which `systemd-analyze verify --root` looks up inside the root)."""
    root = tmp_path_factory.mktemp("verify") / "root"
    shutil.copytree(unpacked["amd64"], root, symlinks=True)
    for unit in Path("/usr/lib/systemd/system").iterdir():
        dest = root / "usr/lib/systemd/system" / unit.name
        if not dest.exists() and not dest.is_symlink():
            if unit.is_symlink():
                dest.symlink_to(os.readlink(unit))
            elif unit.is_file():
                shutil.copy2(unit, dest)
    return root


def test_systemd_analyze_verifies_the_units_with_the_packaged_binary(verify_root):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = [verify_root / "usr/lib/systemd/system" / u for u in UNITS]
    result = run("systemd-analyze", "verify", f"--root={verify_root}", *units)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check is real: without the packaged binary the same verify fails.
    (verify_root / "opt/qrgate/venv/bin/qrgate").unlink()
    result = run("systemd-analyze", "verify", f"--root={verify_root}", units[0])
    assert result.returncode != 0 and "/opt/qrgate/venv/bin/qrgate" in result.stderr


def test_an_unknown_architecture_is_refused_by_name_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        package.main(["arm64", "sparc", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "no architecture sparc; the package is built for arm64, amd64" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
