"""The SD-card image recipe and its installer, tested where an x86 machine can.

The image itself needs an arm64 host and Raspberry Pi's apt repository
(image-build/README.md). Here: shellcheck on every script, the pi-gen stage's
layout and config, and image-build/install.sh run for real into a staging root
folder, whose venv, units, enable symlinks and /etc/qrgate are then inspected,
and whose units `systemd-analyze verify` checks against the staged qrgate binary.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"
INSTALL = IMAGE_BUILD / "install.sh"
STAGE = IMAGE_BUILD / "stage-qrgate"
UNITS = ("qrgate.service", "qrgate-keygen.service")
VERSION = re.search(r'__version__\s*=\s*"([^"]+)"', (REPO / "firmware" / "__init__.py").read_text())[1]


def run(*args, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([str(a) for a in args], **kwargs)


def shell_scripts():
    scripts = sorted(IMAGE_BUILD.rglob("*.sh"))
    scripts += sorted(STAGE.glob("prerun.sh"))
    scripts += [REPO / "dev", REPO / ".ci" / "run", *sorted((REPO / "custodian").rglob("*.sh"))]
    # Not the work folder build.sh leaves behind (a pi-gen clone), if any.
    return sorted({p for p in scripts if IMAGE_BUILD / "work" not in p.parents})


# --- shellcheck ---------------------------------------------------------------------------


def test_every_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = shell_scripts()
    assert INSTALL in scripts and IMAGE_BUILD / "build.sh" in scripts
    assert STAGE / "prerun.sh" in scripts and STAGE / "00-qrgate" / "01-run.sh" in scripts
    assert REPO / "custodian" / "broker" / "add-device.sh" in scripts
    result = run("shellcheck", "--external-sources", *scripts, cwd=IMAGE_BUILD)
    assert result.returncode == 0, result.stdout + result.stderr
    # pi-gen's config is a bash fragment that pi-gen sources.
    result = run("shellcheck", "--shell=bash", IMAGE_BUILD / "config")
    assert result.returncode == 0, result.stdout + result.stderr


# --- the pi-gen stage and config ---------------------------------------------------------------


def test_the_stage_has_pi_gens_layout():
    for script in [STAGE / "prerun.sh", *STAGE.glob("[0-9][0-9]-*/[0-9][0-9]-run.sh")]:
        assert os.access(script, os.X_OK), f"{script} must be executable or pi-gen skips it"
    assert "copy_previous" in (STAGE / "prerun.sh").read_text()
    assert (STAGE / "EXPORT_IMAGE").is_file()
    packages = set((STAGE / "00-qrgate" / "00-packages-nr").read_text().split())
    assert {"python3-venv", "python3-pip", "python3-picamera2", "python3-lgpio", "libzbar0"} <= packages
    run_sh = (STAGE / "00-qrgate" / "01-run.sh").read_text()
    assert "on_chroot" in run_sh and "install.sh --no-apt --wheel" in run_sh
    sshd = (STAGE / "01-harden" / "files" / "10-qrgate.conf").read_text()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin no"):
        assert re.search(rf"^{line}$", sshd, re.M), line
    harden = (STAGE / "01-harden" / "01-run.sh").read_text()
    assert 'passwd --lock "${FIRST_USER_NAME}"' in harden


def test_the_config_gives_ssh_by_key_and_no_known_password(tmp_path):
    key = tmp_path / "tech.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7BWqVb+Fy0m5ZbS9hZ9e1Kx3p0nYqRqfL4m3rW1H5b tech@qrgate\n")
    script = 'source "$1"; for v in IMG_NAME RELEASE STAGE_LIST FIRST_USER_NAME FIRST_USER_PASS ' \
             'DISABLE_FIRST_BOOT_USER_RENAME ENABLE_SSH PUBKEY_ONLY_SSH PUBKEY_SSH_FIRST_USER; do ' \
             'printf "%s=%s\\0" "$v" "${!v}"; done'
    env = {"PATH": os.environ["PATH"], "QRGATE_SSH_PUBKEY_FILE": str(key)}
    first = run("bash", "-c", script, "config", IMAGE_BUILD / "config", env=env)
    second = run("bash", "-c", script, "config", IMAGE_BUILD / "config", env=env)
    assert first.returncode == 0, first.stderr
    cfg = dict(item.split("=", 1) for item in first.stdout.split("\0") if item)
    assert cfg["IMG_NAME"] == "qrgate" and cfg["RELEASE"] == "bookworm"
    assert cfg["STAGE_LIST"].split() == ["stage0", "stage1", "stage2", "stage-qrgate"]
    assert cfg["ENABLE_SSH"] == cfg["PUBKEY_ONLY_SSH"] == cfg["DISABLE_FIRST_BOOT_USER_RENAME"] == "1"
    assert cfg["PUBKEY_SSH_FIRST_USER"] == key.read_text().strip()
    assert cfg["FIRST_USER_NAME"] not in ("pi", "root")
    # pi-gen refuses an empty FIRST_USER_PASS with the rename disabled: a random
    # throwaway (different at every build, never written in the repo), locked in the stage.
    assert len(cfg["FIRST_USER_PASS"]) >= 32
    assert cfg["FIRST_USER_PASS"] not in (IMAGE_BUILD / "config").read_text()
    assert cfg["FIRST_USER_PASS"] not in second.stdout
    # Without the key file the config refuses to resolve: an image with no way in.
    missing = run("bash", "-c", script, "config", IMAGE_BUILD / "config", env={"PATH": os.environ["PATH"]})
    assert missing.returncode != 0 and "QRGATE_SSH_PUBKEY_FILE" in missing.stderr


def test_install_sh_refuses_unknown_arguments(tmp_path):
    result = run(INSTALL, "--root", tmp_path / "root", "--frobnicate")
    assert result.returncode != 0 and "unknown argument: --frobnicate" in result.stderr
    assert not (tmp_path / "root").exists()


# --- a staging install ----------------------------------------------------------------------------


class Staged:
    pass


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image")
    s = Staged()
    s.root = tmp / "root"
    t0 = time.monotonic()
    build = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", REPO)
    assert build.returncode == 0, build.stderr
    (s.wheel,) = (tmp / "dist").glob("qrgate-*.whl")
    s.wheel_seconds = time.monotonic() - t0
    # The first run makes an isolated venv, so every dependency really is installed
    # from PyPI (or pip's cache) rather than found in this machine's Python.
    t0 = time.monotonic()
    s.first = run(INSTALL, "--root", s.root, "--wheel", s.wheel, "--no-system-site-packages")
    s.first_seconds = time.monotonic() - t0
    assert s.first.returncode == 0, s.first.stdout + s.first.stderr
    s.first_cfg = (s.root / "opt/qrgate/venv/pyvenv.cfg").read_text()
    # What provisioning leaves behind must survive a reinstall.
    (s.root / "etc/qrgate/qrgate.toml").write_text("# provisioned\n")
    (s.root / "etc/qrgate/tls/device.key").write_text("not a real key\n")
    (s.root / "etc/qrgate/tls/device.key").chmod(0o600)
    # The second run is the default one (--system-site-packages, as on a Pi).
    t0 = time.monotonic()
    s.second = run(INSTALL, "--root", s.root, "--wheel", s.wheel)
    s.second_seconds = time.monotonic() - t0
    print(f"\nwheel build {s.wheel_seconds:.1f} s; install.sh: first run {s.first_seconds:.1f} s, "
          f"second run {s.second_seconds:.1f} s")
    return s


def test_the_second_run_succeeds_and_keeps_the_provisioned_files(staged):
    assert staged.second.returncode == 0, staged.second.stdout + staged.second.stderr
    assert (staged.root / "etc/qrgate/qrgate.toml").read_text() == "# provisioned\n"
    assert (staged.root / "etc/qrgate/tls/device.key").read_text() == "not a real key\n"
    assert "include-system-site-packages = false" in staged.first_cfg
    assert "include-system-site-packages = true" in (staged.root / "opt/qrgate/venv/pyvenv.cfg").read_text()


def test_the_staged_qrgate_runs_and_has_the_package_version(staged):
    qrgate = staged.root / "opt/qrgate/venv/bin/qrgate"
    assert os.access(qrgate, os.X_OK)
    result = run(qrgate, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"qrgate {VERSION}"
    assert os.readlink(staged.root / "usr/local/bin/qrgate") == "/opt/qrgate/venv/bin/qrgate"  # on the PATH
    # Every runtime dependency imports from the staged venv.
    python = staged.root / "opt/qrgate/venv/bin/python"
    imports = "import cv2, numpy, cryptography, zxingcpp, pyzbar.pyzbar, cbor2, base45, gpiozero, paho.mqtt.client, firmware.cli"
    result = run(python, "-c", imports)
    assert result.returncode == 0, result.stderr


def test_the_units_sysusers_and_tmpfiles_are_in_place(staged):
    for unit in UNITS:
        installed = staged.root / "usr/lib/systemd/system" / unit
        assert installed.read_bytes() == (REPO / "systemd" / unit).read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o644
    assert (staged.root / "usr/lib/sysusers.d/qrgate.conf").read_bytes() == (REPO / "systemd/qrgate.sysusers").read_bytes()
    assert (staged.root / "usr/lib/tmpfiles.d/qrgate.conf").read_bytes() == (REPO / "systemd/qrgate.tmpfiles").read_bytes()


def install_targets(unit_file):
    """(target, kind) pairs from a unit's [Install] section: kind is wants or requires."""
    section, pairs = None, []
    for line in unit_file.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and "=" in line:
            key, value = (x.strip() for x in line.split("=", 1))
            kind = {"WantedBy": "wants", "RequiredBy": "requires", "UpheldBy": "upholds"}.get(key)
            if kind:
                pairs += [(target, kind) for target in value.split()]
    return pairs


def test_the_units_are_enabled(staged):
    for unit in UNITS:
        targets = install_targets(REPO / "systemd" / unit)
        assert targets, f"{unit} has no [Install] section to enable it with"
        for target, kind in targets:
            link = staged.root / "etc/systemd/system" / f"{target}.{kind}" / unit
            assert link.is_symlink(), f"{link} is missing"
            assert os.readlink(link) in (f"/usr/lib/systemd/system/{unit}", f"/lib/systemd/system/{unit}")
    assert (staged.root / "etc/systemd/system/multi-user.target.wants/qrgate.service").is_symlink()


def test_etc_qrgate_has_the_right_modes(staged):
    etc = staged.root / "etc/qrgate"
    assert etc.stat().st_mode & 0o777 == 0o755
    assert (etc / "conf.d").stat().st_mode & 0o777 == 0o755
    assert (etc / "tls").stat().st_mode & 0o777 == 0o700


def test_nothing_but_qrgates_files_is_staged(staged):
    assert {p.name for p in staged.root.iterdir()} <= {"etc", "opt", "usr"}
    assert {p.name for p in (staged.root / "etc").iterdir()} <= {"qrgate", "systemd"}
    # No user was created, no key made: those happen on the device, at boot.
    assert not (staged.root / "etc/passwd").exists()
    assert not (staged.root / "var").exists()


@pytest.fixture(scope="module")
def verify_root(staged, tmp_path_factory):
    """The staged root plus this machine's own units (sysinit.target and the rest,
    which `verify --root` looks up inside the root). A hard-linked copy, so the
    staged root itself stays as install.sh left it; /etc is copied for real since
    sysusers and tmpfiles write there."""
    vr = tmp_path_factory.mktemp("verify") / "root"
    vr.mkdir()
    for top in ("opt", "usr"):
        assert run("cp", "-al", staged.root / top, vr / top).returncode == 0
    shutil.copytree(staged.root / "etc", vr / "etc", symlinks=True)
    host_units = Path("/usr/lib/systemd/system")
    for unit in host_units.iterdir():
        dest = vr / "usr/lib/systemd/system" / unit.name
        if not dest.exists() and not dest.is_symlink():
            if unit.is_symlink():
                dest.symlink_to(os.readlink(unit))
            elif unit.is_file():
                shutil.copy2(unit, dest)
    return vr


def test_sysusers_and_tmpfiles_apply_to_the_staged_root(verify_root):
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    result = run("systemd-sysusers", f"--root={verify_root}")
    assert result.returncode == 0, result.stderr
    passwd = (verify_root / "etc/passwd").read_text()
    assert re.search(r"^qrgate:", passwd, re.M), passwd
    result = run("systemd-tmpfiles", f"--root={verify_root}", "--create",
                 verify_root / "usr/lib/tmpfiles.d/qrgate.conf")
    assert result.returncode == 0, result.stderr


def test_systemd_analyze_verifies_the_units_with_the_staged_binary(verify_root):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = [verify_root / "usr/lib/systemd/system" / u for u in UNITS]
    result = run("systemd-analyze", "verify", f"--root={verify_root}", *units)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check is real: without the staged binary the same verify fails.
    binary = verify_root / "opt/qrgate/venv/bin/qrgate"
    binary.rename(binary.with_name("qrgate.moved"))
    try:
        result = run("systemd-analyze", "verify", f"--root={verify_root}", units[0])
        assert result.returncode != 0
        assert "/opt/qrgate/venv/bin/qrgate" in result.stderr
    finally:
        binary.with_name("qrgate.moved").rename(binary)
