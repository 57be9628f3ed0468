"""Where a device keeps its files by default: named once, for the daemon and for its command line."""

from pathlib import Path

ETC = Path("/etc/qrgate")
CONFIG = ETC / "qrgate.toml"
STATE_DIR = Path("/var/lib/qrgate")
AIM_PNG = Path("aim.png")  # `qrgate aim` writes here, in the technician's folder
