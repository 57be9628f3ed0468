"""The systemd side of the appliance: the units verify, the sandbox scores, the unit keeps its promises.

`systemd-analyze verify` checks that ExecStart's binary exists, so the units are
verified inside a fake root (`--root=`) holding a stub `qrgate`, our units, our
sysusers.d and tmpfiles.d files, and a copy of this machine's own system units
(sysinit.target and friends, which every service's default dependencies name).
systemd-analyze reports an unknown key or a bad value on stderr yet exits 0, so
any line it prints about our units fails the test.

Only what needs systemd-analyze is skipped where it is absent; the plain parse
of the unit's promises runs everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target", ".mount")
UNITS = sorted(p.name for p in UNITS_DIR.iterdir() if p.suffix in UNIT_SUFFIXES)
QRGATE = "/opt/qrgate/venv/bin/qrgate"
# The sandbox's promise (DESIGN.md promise 5, issue 6): the daemon's exposure is at most 2.0.
# The first-boot key generator runs as root; its bound only keeps it from drifting.
EXPOSURE_BOUND = {"qrgate.service": 2.0, "qrgate-keygen.service": 3.0}
# Fixed log settings: a SYSTEMD_LOG_LEVEL=debug in the caller's environment must not fail the test.
ENV = {
    **os.environ,
    "SYSTEMD_LOG_LEVEL": "info",
    "SYSTEMD_LOG_COLOR": "0",
    "SYSTEMD_PAGER": "cat",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed on this machine")
    return path


@pytest.fixture
def analyze() -> str:
    return _tool("systemd-analyze")


def _host_unit_dir() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.skip(
        "this machine has no systemd system units (sysinit.target) to verify against"
    )


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """An installed appliance in miniature, as the image would lay it out."""
    root = tmp_path / "root"
    stub = root / QRGATE.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    # The host's units, symlinks kept: masked ones point at /dev/null, resolved inside the root.
    shutil.copytree(_host_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to(
        "usr/lib"
    )  # merged /usr, as on Debian 12 and Raspberry Pi OS Bookworm
    (root / "dev").mkdir()
    (root / "dev/null").touch()
    etc_units = root / "etc/systemd/system"
    etc_units.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(UNITS_DIR / name, etc_units / name)
    for kind in ("sysusers", "tmpfiles"):
        folder = root / f"usr/lib/{kind}.d"
        folder.mkdir(parents=True)
        shutil.copy(UNITS_DIR / f"qrgate.{kind}", folder / "qrgate.conf")
    return root


def _run(args: list, timeout: int = 120) -> subprocess.CompletedProcess:
    """A systemd tool with the test's environment; its exit status is the caller's to judge."""
    return subprocess.run(args, capture_output=True, text=True, errors="replace", env=ENV, timeout=timeout,
                          check=False)


def _verify(analyze: str, root: Path, unit: str) -> tuple[int, list[str]]:
    """Exit status and the lines about our units (a host unit's own complaints are not ours)."""
    done = _run([analyze, "verify", f"--root={root}", str(root / "etc/systemd/system" / unit)])
    host_units = {p.name for p in (root / "usr/lib/systemd/system").iterdir()} - set(
        UNITS
    )
    host_dir = f"{root}/usr/lib/systemd/system/"
    ours = []
    for line in (done.stdout + done.stderr).splitlines():
        if not line.strip():
            continue
        # Narrow: a warning inside a copied host unit file ("/…/root/usr/lib/systemd/system/x.service:12: …")
        # or one that a host unit raises about itself ("x.service: …").
        if line.startswith(host_dir) or line.split(":", 1)[0] in host_units:
            continue
        ours.append(line)
    return done.returncode, ours


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies(analyze, fake_root, unit):
    rc, lines = _verify(analyze, fake_root, unit)
    assert rc == 0 and not lines, (
        f"systemd-analyze verify {unit}: exit {rc}\n" + "\n".join(lines)
    )


def test_verify_would_catch_a_bad_unit(analyze, fake_root):
    """The check above is not vacuous: a misspelt key and a missing binary are both reported."""
    unit = fake_root / "etc/systemd/system/qrgate.service"
    unit.write_text(
        unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    )
    rc, lines = _verify(analyze, fake_root, "qrgate.service")
    assert any("Unknown key" in line and "NoNewPrivilege" in line for line in lines), (
        lines
    )
    (fake_root / QRGATE.lstrip("/")).unlink()
    rc, lines = _verify(analyze, fake_root, "qrgate.service")
    assert rc != 0 and any(QRGATE in line for line in lines), lines


@pytest.mark.parametrize("unit", sorted(EXPOSURE_BOUND))
def test_exposure_score(analyze, unit):
    bound = EXPOSURE_BOUND[unit]
    # --threshold is in tenths of the 0.0–10.0 exposure scale (exit 1 when the score is over it).
    done = _run([analyze, "security", "--offline=true", f"--threshold={round(bound * 10)}", "--no-pager",
                 str(UNITS_DIR / unit)])
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    score = float(found.group(1))
    print(f"{unit}: exposure {score}")
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert not warnings, "\n".join(
        warnings
    )  # a line the parser ignored would not be scored
    assert done.returncode == 0, done.stdout
    assert score <= bound, done.stdout


# --- the unit's promises, from a plain parse -------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of key -> values in order; systemd allows repeated keys, and an empty value resets a list."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, (
            f"{path.name}: not a key=value line: {raw!r}"
        )
        assert not line.endswith("\\"), (
            f"{path.name}: continuation lines are not parsed here: {raw!r}"
        )
        key, value = (part.strip() for part in line.split("=", 1))
        values = current.setdefault(key, [])
        if value == "":
            values.clear()
            values.append("")  # present, and reset
        else:
            if values == [""]:
                values.clear()
            values.append(value)
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNITS_DIR / "qrgate.service")["Service"]


def one(section: dict[str, list[str]], key: str) -> str:
    assert key in section, f"{key}= is missing"
    return section[key][-1]


def test_notify_and_watchdog(service):
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "WatchdogSec") not in ("", "0", "infinity")
    assert one(service, "Restart") == "always"


def test_memory_and_tasks_are_bounded(service):
    """One hostile message must not be able to take the device's memory (a Zero 2 W has 512 MB)."""
    size = {"K": 2**10, "M": 2**20, "G": 2**30}
    high, top = (int(one(service, k)[:-1]) * size[one(service, k)[-1]] for k in ("MemoryHigh", "MemoryMax"))
    assert 131 * 2**20 * 1.5 < high < top <= 384 * 2**20  # above the measured peak, well below the board
    assert one(service, "MemorySwapMax") == "0"  # a card is no place to swap to
    assert 7 * 4 <= int(one(service, "TasksMax")) <= 256


def test_runs_as_its_own_user_in_the_device_groups(service):
    assert one(service, "User") == "qrgate"
    assert one(service, "Group") == "qrgate"
    assert set(" ".join(service["SupplementaryGroups"]).split()) == {"video", "gpio"}


def test_commands(service):
    assert service["ExecStartPre"] == [
        f"{QRGATE} config check --config /etc/qrgate/qrgate.toml"
    ]
    assert service["ExecStart"] == [f"{QRGATE} run --config /etc/qrgate/qrgate.toml"]


def test_only_the_camera_media_dma_heap_and_gpio_devices(service):
    assert one(service, "DevicePolicy") == "closed"
    assert sorted(service["DeviceAllow"]) == sorted(
        ["char-video4linux rw", "char-media rw", "char-dma_heap rw", "char-gpiochip rw"]
    )
    # PrivateDevices=yes would hide these very nodes (its /dev has only pseudo-devices).
    assert service.get("PrivateDevices", ["no"])[-1] in ("no", "false", "0", "off")


def test_network_families(service):
    families = set(" ".join(service["RestrictAddressFamilies"]).split())
    assert (
        {"AF_UNIX", "AF_INET", "AF_INET6"}
        <= families
        <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    )
    assert one(service, "RestrictNamespaces") == "yes"


def test_no_capabilities(service):
    assert service["CapabilityBoundingSet"] == [""]
    assert service.get("AmbientCapabilities", [""]) == [""]
    assert one(service, "NoNewPrivileges") == "yes"


def test_device_key_through_a_credential_that_may_be_missing(service):
    assert "device.key:/etc/qrgate/tls/device.key" in service["LoadCredential"]
    # systemd 252 has no optional LoadCredential=: a SetCredential= of the same id is the fallback
    # that makes a missing key non-fatal (an unprovisioned device still scans offline).
    assert any(v.startswith("device.key:") for v in service.get("SetCredential", []))


def test_clock_check_stays_allowed(service):
    """firmware/clock.py reads adjtimex(2) (glibc: clock_adjtime): no filter may deny it."""
    assert service.get("ProtectClock", ["no"])[-1] in ("no", "false", "0", "off")
    filters = service["SystemCallFilter"]
    assert filters[0] == "@system-service"
    last_allow = max(i for i, f in enumerate(filters) if not f.startswith("~"))
    last_deny = max(i for i, f in enumerate(filters) if f.startswith("~"))
    assert last_allow > last_deny and {"adjtimex", "clock_adjtime"} <= set(
        filters[last_allow].split()
    )


def test_directories(service):
    assert (
        one(service, "StateDirectory") == "qrgate"
        and one(service, "StateDirectoryMode") == "0700"
    )
    assert (
        one(service, "RuntimeDirectory") == "qrgate"
        and one(service, "RuntimeDirectoryMode") == "0755"
    )
    assert one(service, "WorkingDirectory") == "/var/lib/qrgate"
    assert one(service, "ProtectSystem") == "strict"


def test_keygen_runs_once_before_the_daemon():
    unit = parse_unit(UNITS_DIR / "qrgate-keygen.service")
    assert unit["Unit"]["ConditionPathExists"] == ["!/etc/qrgate/tls/device.key"]
    assert "qrgate.service" in " ".join(unit["Unit"]["Before"]).split()
    assert unit["Service"]["ExecStart"] == [f"{QRGATE} provision --generate-key"]
    assert "User" not in unit["Service"]  # root: the key is root's


# --- sysusers.d and tmpfiles.d, applied to the fake root ---------------------------------------


def _entries(path: Path) -> dict[str, list[str]]:
    return {
        line.split(":")[0]: line.split(":")
        for line in path.read_text().splitlines()
        if line
    }


def test_sysusers_and_tmpfiles(fake_root):
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    done = _run([sysusers, f"--root={fake_root}"], timeout=60)
    noise = [
        line
        for line in done.stderr.splitlines()
        if line and not re.match(r"Creating (group|user) '", line)
    ]
    assert done.returncode == 0 and not noise, done.stderr
    passwd, group = (
        _entries(fake_root / "etc/passwd"),
        _entries(fake_root / "etc/group"),
    )
    assert passwd["qrgate"][5:] == ["/var/lib/qrgate", "/usr/sbin/nologin"]
    assert int(passwd["qrgate"][2]) < 1000  # a system user
    for name in ("video", "gpio"):
        assert "qrgate" in group[name][3].split(","), group[name]

    done = _run([tmpfiles, f"--root={fake_root}", "--create"], timeout=60)
    as_root = os.geteuid() == 0
    # Not root: the folders are made but cannot be given away (fchownat EPERM): only that is tolerated.
    noise = [
        line
        for line in done.stderr.splitlines()
        if line
        and not (
            not as_root
            and re.match(r"fchownat\(\) of .* failed: Operation not permitted", line)
        )
    ]
    assert not noise and (done.returncode == 0 or not as_root), done.stderr
    uid = int(passwd["qrgate"][2])
    for path, mode, owner in (
        ("var/lib/qrgate", 0o700, uid),
        ("etc/qrgate", 0o755, 0),
        ("etc/qrgate/conf.d", 0o755, 0),
        ("etc/qrgate/tls", 0o700, 0),
    ):
        st = (fake_root / path).stat()
        assert st.st_mode & 0o7777 == mode, (path, oct(st.st_mode))
        if as_root:
            assert st.st_uid == owner, (path, st.st_uid)
