"""High-water marks: integers that only grow, each in a small file of its own in the state folder.

They remember what the state they guard could lose or be tricked out of: the
newest trust list seq and DCC revocation list seq the device has held (so that
a lost or deleted kept list does not let an older signed list back in) and the
latest time the device has judged on (so that a clock stepped back cannot make a
used token new again).
Each is a decimal number and a newline, replaced atomically; reading one that
is missing or unreadable gives 0 (nothing known), with a warning for the
latter. The daemon and a technician's `sudo qrgate trust install` (or `trust
revocation install`) both raise the seq marks; whoever writes re-reads first, so
a mark never goes down.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from firmware.store.statefiles import write_atomic

logger = logging.getLogger(__name__)

TRUST_SEQ = "trust-seq.mark"
REVOCATION_SEQ = "revocation-seq.mark"  # the DCC revocation list's (firmware.revocation.store)
CLOCK = "clock.mark"


class Mark:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("mark %s unreadable (%s); taken as 0", self.path, exc)
            return 0
        try:
            value = int(text.strip())
        except ValueError:
            value = -1
        if value < 0:
            logger.warning("mark %s does not hold a count; taken as 0", self.path)
            return 0
        return value

    def raise_to(self, value: int) -> None:
        """Make the mark at least `value`. Raises OSError when it cannot be written."""
        with self._lock:
            if value > self.read():
                write_atomic(self.path, f"{int(value)}\n".encode("ascii"), mode=0o644, owner_of=self.path.parent)
