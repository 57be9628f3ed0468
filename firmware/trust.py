"""The trust list in force on this device: kept in the state folder, replaced only by a newer signed one.

Installing refuses, with a reason and keeping the old list: a bad signature, a
different root, a seq not strictly higher (no rollback), a list past not_after.
The daemon and a technician's `qrgate trust install` share the file: the
daemon's `refresh` adopts a list written by the other process, under the same rules.
No rollback outlives the file either: the newest seq ever held is also kept as a
mark (store.marks), and a list older than it is refused even when no list is in
force (the kept file was lost, deleted, or put back by hand).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.errors import TrustListError
from firmware.store.marks import TRUST_SEQ, Mark
from firmware.store.seal import SealingKey
from firmware.store.statefiles import write_atomic
from firmware.tokens import trustlist
from firmware.tokens.trustlist import TrustList

logger = logging.getLogger(__name__)

FILENAME = "trustlist.cose"


class TrustStore:
    def __init__(self, state_dir: Path, root: Ed25519PublicKey):
        self.path = Path(state_dir) / FILENAME
        self.root = root
        self.mark = Mark(Path(state_dir) / TRUST_SEQ)
        self._lock = threading.Lock()
        self._current: TrustList | None = None
        self._seen_file: tuple[int, int, int] | None = None
        self.refresh()

    def current(self) -> TrustList | None:
        return self._current

    def sealing_key(self, now: float) -> SealingKey | None:
        """The authority key visits are sealed to now: the list's (TrustList.sealing_key), None without a list."""
        current = self._current
        return current.sealing_key(now) if current is not None else None

    def refresh(self) -> None:
        """Adopt the kept file if it changed since last read (another process installed a list)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("kept trust list %s: %s", self.path, exc.strerror)
            return
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._seen_file:
            return
        self._seen_file = signature
        try:
            new = trustlist.parse(trustlist.read_file(self.path), self.root)
            self._refuse_rollback(new.seq)
        except (OSError, TrustListError) as exc:
            logger.error("kept trust list %s is unusable: %s", self.path, exc)
            return
        with self._lock:
            old = self._current
            if old is not None and new.seq <= old.seq:
                return  # our own write, or an older list put back by hand: keep the newer
            self._current = new
        self._raise_mark(new.seq)
        logger.info("trust list seq %d in force (%d issuers, %d revoked, %d DCC signers)", new.seq, len(new.issuers),
                    len(new.revoked), len(new.dsc))

    def install(self, data: bytes, now: float) -> TrustList:
        new = trustlist.parse(data, self.root)
        with self._lock:
            old = self._current
            if old is not None and new.raw == old.raw:
                return old  # the same list again (a retained message redelivered)
            if new.expired(now):
                raise TrustListError(f"trust list seq {new.seq} is past its not_after")
            if old is not None and new.seq <= old.seq:
                raise TrustListError(f"trust list seq {new.seq} is not higher than the installed seq {old.seq}")
            self._refuse_rollback(new.seq)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_atomic(self.path, data, owner_of=self.path.parent)
            except OSError as exc:
                raise TrustListError(f"cannot write {self.path}: {exc.strerror}") from None
            self._current = new
            self._seen_file = None  # our own write: the next refresh reads it back and keeps it
        self._raise_mark(new.seq)
        logger.info("trust list seq %d installed (%d issuers, %d revoked, %d DCC signers)", new.seq, len(new.issuers),
                    len(new.revoked), len(new.dsc))
        return new

    def _refuse_rollback(self, seq: int) -> None:
        held = self.mark.read()
        if seq < held:
            raise TrustListError(f"trust list seq {seq} is older than seq {held}, which this device has held")

    def _raise_mark(self, seq: int) -> None:
        try:
            self.mark.raise_to(seq)
        except OSError as exc:  # the list file itself still holds the seq while it is there
            logger.error("cannot keep trust list seq %d as a mark in %s: %s", seq, self.mark.path, exc.strerror)

    def offer_file(self, path: Path, now: float) -> bool:
        """`offer` for a file (the config's trust.list at start): an unreadable one is logged, not raised."""
        try:
            return self.offer(trustlist.read_file(path), now)
        except (OSError, TrustListError) as exc:
            logger.warning("trust list %s refused: %s", path, exc.strerror if isinstance(exc, OSError) else exc)
            return False

    def offer(self, data: bytes, now: float) -> bool:
        """Install if acceptable; a refusal is logged, not raised (a list arriving over MQTT)."""
        try:
            self.install(data, now)
            return True
        except TrustListError as exc:
            logger.warning("trust list refused: %s", exc)
            return False
