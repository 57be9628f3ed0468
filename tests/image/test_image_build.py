"""The SD-card image recipe, tested where an x86 machine can.

The image itself needs an arm64 host and Raspberry Pi's apt repository
(image-build/README.md). Here: shellcheck on every script, the pi-gen stage's
layout and config. The package the stage installs is tested in tests/package/,
installed with apt in an emulated arm64 Debian 12 root.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"
STAGE = IMAGE_BUILD / "stage-qrgate"


def run(*args, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([str(a) for a in args], **kwargs)


def shell_scripts():
    scripts = sorted(IMAGE_BUILD.rglob("*.sh"))
    scripts += sorted(STAGE.glob("prerun.sh"))
    scripts += [REPO / "dev", REPO / ".ci" / "run", *sorted((REPO / "custodian").rglob("*.sh"))]
    scripts += [REPO / "packaging" / "debian" / name for name in ("postinst", "prerm", "postrm")]
    # Not the work folder build.sh leaves behind (a pi-gen clone), if any.
    return sorted({p for p in scripts if IMAGE_BUILD / "work" not in p.parents})


# --- shellcheck ---------------------------------------------------------------------------


def test_every_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = shell_scripts()
    assert IMAGE_BUILD / "build.sh" in scripts and REPO / "dev" in scripts
    assert STAGE / "prerun.sh" in scripts and STAGE / "00-qrgate" / "01-run.sh" in scripts
    assert REPO / "custodian" / "broker" / "add-device.sh" in scripts
    assert REPO / "packaging" / "debian" / "postinst" in scripts
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
    packages = {w for line in (STAGE / "00-qrgate" / "00-packages-nr").read_text().splitlines()
                if not line.startswith("#") for w in line.split()}
    assert {"python3-picamera2", "python3-lgpio"} <= packages
    # No pip on the device: qrgate comes as the package, with the lock's wheels inside.
    assert not {"python3-pip", "python3-venv"} & packages
    run_sh = (STAGE / "00-qrgate" / "01-run.sh").read_text()
    assert "on_chroot" in run_sh and "apt-get install -y --no-install-recommends /tmp/qrgate-install/" in run_sh
    assert "pip" not in run_sh
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
