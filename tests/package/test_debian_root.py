"""The package on Debian 12, arm64 (the scanner's) and amd64, as a technician and a fleet use it.

In a fresh copy of an emulated root (lab/debroot.py: debootstrap, proot, and
qemu-user for arm64), per architecture:

- `apt-get install ./qrgate_…-1_ARCH.deb`, as on an existing Raspberry Pi OS: the
  user, the folders and the enabled units are there; `qrgate --version`,
  `config check` and `selftest` (mock pins) run on a provisioned configuration;
  `qrgate demo` accepts every visitor it should;
- then a fleet repository signed with its own key publishes revision 2: `apt-get
  upgrade` takes it and the device's key, configuration and local edit are the
  same, and `apt-get remove` keeps them; on amd64 also: an index that key did not
  sign is refused, a rollback to revision 1 from the same repository keeps the
  device's files, `apt-get purge` keeps its state, and the purge the technician
  asks for (QRGATE_PURGE=state) removes it.

No systemd runs in the root (units are enabled, never started) and the clock is
the host's: what only a booted Pi can confirm is in docs/device.md's last section.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import pytest

from lab import debroot, package, render
from lab.world import World
from aptrepo import SignedRepo

# Besides minbase, what the cached root holds, so that a run downloads only the package's other
# dependencies (systemd cannot be bootstrapped under proot: apt brings it as a Depends).
RECIPE_PACKAGES = ("python3", "libzbar0", "mosquitto", "init-system-helpers", "ca-certificates")
REPO_IN_ROOT = "/srv/fleet-repo"
KEYRING_IN_ROOT = "/etc/apt/keyrings/qrgate-fleet.gpg"
KEPT = ("/etc/qrgate/tls/device.key", "/etc/qrgate/qrgate.toml", "/etc/qrgate/conf.d/50-local.toml")
LOCAL_EDIT = "\n[gpio]\ndoor_pulse_s = 2.5\n"
# What apt and dpkg do with a repository's signature, a rollback and a purge is the same on every
# architecture: checked once, natively, rather than for two minutes more under qemu.
NATIVE = "amd64"
STEP_TIMEOUT = 1200  # under qemu-user a Python start costs seconds: far above what a step takes (developer.md)


class Device:
    """A root of one architecture with the world's files bound at their own path; each step's time."""

    def __init__(self, arch: str, root: debroot.Root, world: World):
        self.arch = arch
        self.root = root
        self.world = world
        self.seconds: dict[str, float] = {}

    def sh(self, step: str, script: str, check: bool = True, env: dict[str, str] | None = None):
        started = time.monotonic()
        result = self.root.run(["sh", "-ec", script], timeout=STEP_TIMEOUT, env=env,
                               binds={self.world.dir: str(self.world.dir)})
        self.seconds[step] = round(self.seconds.get(step, 0.0) + time.monotonic() - started, 1)
        if check:
            assert result.returncode == 0, (f"{self.arch} {step}: exit {result.returncode}\n"
                                            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def file(self, path: str) -> Path:
        return self.root.path / path.lstrip("/")

    def digests(self) -> dict[str, str]:
        return {p: hashlib.sha256(self.file(p).read_bytes()).hexdigest() for p in KEPT}

    def version(self) -> str:
        return self.sh("dpkg-query", "dpkg-query -W -f '${Version}' qrgate").stdout


@pytest.fixture(scope="module", params=["arm64", "amd64"])
def device(request, built, tmp_path_factory):
    """The package installed from its file into a fresh root, as a technician installs it."""
    arch = request.param
    recipe = debroot.Recipe(arch, include=RECIPE_PACKAGES)
    missing = debroot.missing_tools(arch, building=debroot.cached(recipe) is None)
    if missing:
        pytest.skip(f"a {arch} root needs: apt-get install {' '.join(missing)}")
    tmp = tmp_path_factory.mktemp(f"root-{arch}")
    started = time.monotonic()
    root = debroot.fresh(recipe, tmp / "root")
    seconds = time.monotonic() - started
    world = World.create(tmp / "world")
    (world.dir / "frames").mkdir()
    cv2.imwrite(str(world.dir / "frames" / "0000.png"), render.background())
    d = Device(arch, root, world)
    d.seconds["root ready"] = round(seconds, 1)
    deb = built.deb(arch, 1)
    (root.path / "tmp" / deb.name).write_bytes(deb.read_bytes())
    d.sh("install", f"apt-get update -qq && apt-get install -y -q /tmp/{deb.name}")
    yield d
    print(f"\n{arch}: seconds per step {json.dumps(d.seconds)}")


def test_the_package_installs_runs_and_its_demo_accepts_every_visitor(device):
    assert device.version() == package.version(1)
    out = device.sh("version and user", "qrgate --version; getent passwd qrgate; id -nG qrgate; "
                    "stat -c '%a %U' /etc/qrgate/tls /var/lib/qrgate; "
                    "ls /etc/systemd/system/multi-user.target.wants/").stdout.split("\n")
    assert out[0] == f"qrgate {package.version(1).split('-')[0]}"
    assert out[1].startswith("qrgate:") and out[1].endswith(":/var/lib/qrgate:/usr/sbin/nologin")
    assert set(out[2].split()) == {"qrgate", "video", "gpio"}
    assert out[3:5] == ["700 root", "700 qrgate"]
    assert {"qrgate.service", "qrgate-keygen.service"} <= set(out[5:])
    # Byte-compiled on the target by postinst (the daemon cannot write beside its code).
    assert list(device.file("/opt/qrgate/venv/lib/python3.11/site-packages/firmware").glob("__pycache__/*.pyc"))

    # Provisioned as `qrgate provision` leaves a device: its key, then its configuration.
    device.sh("generate key", "qrgate provision --generate-key")
    config = device.world.config_toml(Path("/var/lib/qrgate"), device.world.dir / "frames",
                                      device='runtime_dir = "/run/qrgate"')
    device.file("/etc/qrgate/qrgate.toml").write_text(config)
    check = device.sh("config check", "qrgate config check")
    assert check.stdout.strip().endswith(": ok"), check.stdout
    selftest = device.sh("selftest", "qrgate selftest").stdout  # the configuration's pins are mock ones
    checks = {line.split()[1]: line.split()[0] for line in selftest.splitlines() if line.startswith(("ok", "FAIL"))}
    assert checks == dict.fromkeys(("outputs", "camera", "store", "trust", "broker", "clock"), "ok"), selftest

    demo = device.sh("demo", "qrgate demo")
    summary = json.loads(demo.stdout.strip().splitlines()[-1])
    assert (summary["visitors_accepted"], summary["already_checked_in"], summary["visitors_rejected"]) == (7, 1, 4), \
        demo.stdout
    assert summary["records_received_by_the_custodian"] == summary["records_the_authority_key_opened"] == 7


def test_a_signed_fleet_repository_upgrades_the_device_and_keeps_what_it_made(device, built, tmp_path):
    if not device.file("/etc/qrgate/tls/device.key").exists():
        device.sh("generate key", "qrgate provision --generate-key")
        device.file("/etc/qrgate/qrgate.toml").write_text("# provisioned\n")
    with device.file("/etc/qrgate/conf.d/50-local.toml").open("a") as conffile:
        conffile.write(LOCAL_EDIT)
    before = device.digests()

    repo = SignedRepo(device.file(REPO_IN_ROOT), tmp_path / "gnupg")
    repo.publish(built.deb(device.arch, 1), built.deb(device.arch, 2))
    keyring = device.file(KEYRING_IN_ROOT)
    keyring.parent.mkdir(parents=True, exist_ok=True)
    keyring.write_bytes(repo.keyring.read_bytes())
    device.file("/etc/apt/sources.list.d/qrgate-fleet.list").write_text(
        f"deb [signed-by={KEYRING_IN_ROOT}] file:{REPO_IN_ROOT} ./\n")

    device.sh("upgrade", "apt-get update -qq && apt-get upgrade -y -q")
    assert device.version() == package.version(2)
    assert device.digests() == before
    assert LOCAL_EDIT in device.file("/etc/qrgate/conf.d/50-local.toml").read_text()

    if device.arch == NATIVE:
        # An index the fleet's key did not sign: apt refuses the whole repository.
        impostor = SignedRepo(tmp_path / "impostor", tmp_path / "gnupg-impostor")
        (device.file(REPO_IN_ROOT) / "InRelease").write_bytes(impostor.sign(device.file(REPO_IN_ROOT) / "Release"))
        refused = device.sh("impostor", "apt-get update -q", check=False)
        assert "NO_PUBKEY" in refused.stdout + refused.stderr or "not signed" in refused.stdout + refused.stderr, \
            refused.stdout + refused.stderr
        repo.publish()  # the fleet's own signature again

        device.sh("rollback", f"apt-get update -qq && apt-get install -y -q --allow-downgrades "
                              f"qrgate={package.version(1)}")
        assert device.version() == package.version(1)
        assert device.digests() == before

    device.sh("remove", "apt-get remove -y -q qrgate")
    assert not device.file("/opt/qrgate/venv").exists() and not device.file("/usr/bin/qrgate").exists()
    assert all(device.file(p).exists() for p in KEPT) and device.file("/var/lib/qrgate").is_dir()
    if device.arch == NATIVE:
        purged = device.sh("purge", "apt-get purge -y -q qrgate")
        assert "QRGATE_PURGE=state" in purged.stdout
        assert device.file("/etc/qrgate/tls/device.key").exists() and device.file("/var/lib/qrgate").is_dir()
        assert not device.file("/etc/qrgate/conf.d/50-local.toml").exists()  # the conffile goes with a purge

        device.sh("reinstall", f"apt-get install -y -q qrgate={package.version(2)}")
        device.sh("purge state", "apt-get purge -y -q qrgate", env={"QRGATE_PURGE": "state"})
        assert not device.file("/etc/qrgate").exists() and not device.file("/var/lib/qrgate").exists()
