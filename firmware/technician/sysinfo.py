"""The board's health from /sys: CPU temperature and the Raspberry Pi firmware's throttling flags.

Read under a root path (`/` on a device) so tests can point it at a fixture
tree. On Raspberry Pi OS the firmware driver exposes `get_throttled` (the
bits `vcgencmd get_throttled` prints) and the `rpi_volt` hwmon an
under-voltage alarm; elsewhere they are absent and reported as unknown. That
these files are where the Pi's kernel puts them only a Pi can confirm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

THROTTLED = Path("sys/devices/platform/soc/soc:firmware/get_throttled")
THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage since boot", 17: "ARM frequency capped since boot", 18: "throttled since boot",
    19: "soft temperature limit since boot",
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_temperature_c(root: Path = Path("/")) -> float | None:
    """The SoC's thermal zone (type cpu-thermal on a Pi), else the first zone with a reading."""
    zones = sorted((Path(root) / "sys/class/thermal").glob("thermal_zone*"))
    zones.sort(key=lambda z: _read(z / "type") != "cpu-thermal")
    for zone in zones:
        text = _read(zone / "temp")
        if text and text.lstrip("-").isdigit():
            return round(int(text) / 1000, 1)
    return None


def throttling(root: Path = Path("/")) -> dict[str, Any] | None:
    """{"flags": [...], "raw": "0x50005"}, or None where the board says nothing."""
    text = _read(Path(root) / THROTTLED)
    if text:
        try:
            bits = int(text, 16)
        except ValueError:
            bits = None
        if bits is not None:
            return {"raw": hex(bits), "flags": [name for bit, name in THROTTLE_BITS.items() if bits >> bit & 1]}
    for hwmon in sorted((Path(root) / "sys/class/hwmon").glob("hwmon*")):
        if _read(hwmon / "name") == "rpi_volt":
            alarm = _read(hwmon / "in0_lcrit_alarm")
            return {"raw": None, "flags": ["under-voltage now"] if alarm == "1" else []}
    return None
