"""lab.debroot's Debian 12 roots, amd64 and arm64 (the scanner's), entered with proot (and qemu-user for arm64).

The first run bootstraps each root from deb.debian.org (minutes; kept in the roots cache, lab/debroot.py);
later runs only copy it. Skipped, with the command that fixes it, where the host tools are missing (CI
installs them: debootstrap, proot, qemu-user-static).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import debroot


def needs_root_of(arch: str) -> pytest.MarkDecorator:
    """Skipped where the root can be neither made nor entered; made (minutes, once) where it is not cached."""
    cached = debroot.cached(debroot.Recipe(arch)) is not None
    reason = ""
    if missing := debroot.missing_tools(arch, building=not cached):
        reason = f"the {arch} root needs: apt-get install {' '.join(missing)}"
    elif not cached and os.geteuid() != 0:
        reason = f"bootstrapping the {arch} root needs root (or the root made once in {debroot.cache_dir()})"
    return pytest.mark.skipif(bool(reason), reason=reason)


@needs_root_of("amd64")
def test_amd64_root_says_amd64(tmp_path: Path):
    root = debroot.fresh("amd64", tmp_path / "root")
    result = root.run(["dpkg", "--print-architecture"], timeout=120, check=True)
    assert result.stdout.strip() == "amd64"
    # No maintainer script may start a service (it would keep `apt-get install` from returning).
    assert root.run(["/usr/sbin/policy-rc.d", "mosquitto", "start"], timeout=60).returncode == 101


@needs_root_of("arm64")
def test_arm64_root_is_aarch64_inside(tmp_path: Path):
    root = debroot.fresh("arm64", tmp_path / "root")
    result = root.run(["sh", "-c", "dpkg --print-architecture; uname -m; id -u"], timeout=120, check=True)
    assert result.stdout.split() == ["arm64", "aarch64", "0"]


@needs_root_of("amd64")
def test_paths_inside_are_the_roots_for_every_system_call(tmp_path: Path):
    root = debroot.fresh("amd64", tmp_path / "root")
    root.write("/opt/only-inside/tool", "#!/bin/sh\necho ran\n", mode=0o755)
    # test -x is faccessat2, stat and ls are statx: proot 5.1.0 would look them up on the host (lab/debroot.py).
    result = root.run(["sh", "-c", "[ -x /opt/only-inside/tool ] && stat -c %s /opt/only-inside/tool && "
                                   "ls /opt/only-inside && /opt/only-inside/tool"], timeout=60)
    assert result.stdout.split() == ["19", "tool", "ran"], result.stderr


@needs_root_of("amd64")
def test_a_copy_is_private_and_a_bound_folder_is_shared(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    root = debroot.fresh("amd64", tmp_path / "root")
    root.run(["sh", "-c", "cat /mnt/shared/in.txt > /mnt/shared/out.txt; echo mine > /etc/changed"],
             binds={shared: "/mnt/shared"}, timeout=60, check=True)
    assert (shared / "out.txt").read_text() == "from the host\n"
    assert (root.path / "etc" / "changed").exists()
    assert not (debroot.cached(debroot.Recipe("amd64")) / "etc" / "changed").exists()


@needs_root_of("amd64")
def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path: Path):
    root = debroot.fresh("amd64", tmp_path / "root")
    with pytest.raises(subprocess.TimeoutExpired):
        root.run(["sh", "-c", "sleep 300 & sleep 300"], timeout=2)


def test_a_half_made_root_is_never_reused(tmp_path: Path):
    recipe = debroot.Recipe("amd64", include=("python3",))
    leftover = tmp_path / ".build-x1y2z3" / "root"
    leftover.mkdir(parents=True)  # what an interrupted build leaves: never under the recipe's key
    assert debroot.cached(recipe, tmp_path) is None
    (tmp_path / recipe.key() / "root").mkdir(parents=True)  # a completed build's rename
    assert debroot.cached(recipe, tmp_path) == tmp_path / recipe.key() / "root"


def test_the_cache_key_follows_the_recipe():
    base = debroot.Recipe("arm64")
    assert base.key() == debroot.Recipe("arm64", include=()).key()
    assert debroot.Recipe("arm64", include=("b", "a")).key() == debroot.Recipe("arm64", include=("a", "b", "a")).key()
    others = {debroot.Recipe("amd64"), debroot.Recipe("arm64", include=("python3",)),
              debroot.Recipe("arm64", variant="buildd"), debroot.Recipe("arm64", suite="trixie")}
    assert len({r.key() for r in others} | {base.key()}) == 5
    with pytest.raises(debroot.DebrootError, match="no architecture"):
        debroot.Recipe("armhf")


POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    adduser --system --group --home /var/lib/probe --no-create-home probe
    install -d -o probe -g probe -m 0750 /var/lib/probe
    deb-systemd-helper unmask probe.service >/dev/null || true
    deb-systemd-helper enable probe.service >/dev/null
    if [ -d /run/systemd/system ]; then deb-systemd-invoke start probe.service; fi
fi
"""


def build_deb(folder: Path) -> Path:
    """A package as debhelper would make ours: a unit, a system user, the unit enabled in its postinst."""
    (folder / "DEBIAN").mkdir(parents=True)
    (folder / "DEBIAN" / "control").write_text(
        "Package: probe\nVersion: 1.0\nArchitecture: all\nMaintainer: lab <lab@example.org>\n"
        "Description: a postinst as ours would be\n")
    (folder / "DEBIAN" / "postinst").write_text(POSTINST)
    (folder / "DEBIAN" / "postinst").chmod(0o755)
    unit = folder / "lib" / "systemd" / "system" / "probe.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\nUser=probe\n\n[Install]\nWantedBy=multi-user.target\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(folder), str(folder.parent / "probe.deb")],
                   check=True, capture_output=True)
    return folder.parent / "probe.deb"


@needs_root_of("amd64")
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="building the package needs dpkg-deb")
def test_apt_installs_a_local_package_whose_postinst_adds_a_user_and_enables_its_unit(tmp_path: Path):
    deb = build_deb(tmp_path / "probe")
    root = debroot.fresh("amd64", tmp_path / "root")
    result = root.run(["sh", "-c", "apt-get install -y /mnt/probe.deb && getent passwd probe && "
                                   "stat -c %U /var/lib/probe && "
                                   "readlink /etc/systemd/system/multi-user.target.wants/probe.service"],
                      binds={deb.parent: "/mnt"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3].startswith("probe:") and lines[-2:] == ["probe", "/lib/systemd/system/probe.service"]
