"""The DCC revocation list in force on this device, and the next one, assembled beside it.

In the state folder's `revocation/`: `manifest.cose` (the list in force),
`next.cose` (a newer manifest whose bodies are still coming: at most one), the
bodies, each named by the hex of its SHA-256 and shared by both lists (a new
list that changes one bucket brings one body), and `lock`. A manifest is
accepted as the trust list is (trust.TrustStore): signed by the same root, not
past its not_after, its seq strictly higher than the list in force and never
lower than the highest this device has held (a mark, store.marks), so no list
is rolled back, not even after the files were lost. A body is written only
once its manifest wants it and its bytes check (manifest.check_body).

An update never stops the door: the list in force answers all along, and when
the next one is complete and every body of it opened and checked, it takes over
in one reference assignment (`revoked` reads `_current` once). A body is
written once (statefiles.write_atomic) and read back as it is opened
(index.Body), so a list is in force only as the bytes on the card. The daemon
(bodies over MQTT, on paho's thread) and a technician's `qrgate trust
revocation install` (another process) take turns under an flock, and each
adopts what the other wrote (`refresh`, from the daemon's housekeeping); old
bodies are deleted only under it, once neither file names them.

With `[dcc] revocation = true` a DCC may be judged only with a list in force
whose issued_at is within `max_list_age_h` and which is not past its not_after
(`problem`, a DccList of readiness). With it false the list is optional, but a
list in force is enforced whatever its age: a list never un-revokes, so an old
one is still right about every certificate it names, and its age is shown
(`qrgate status`) rather than made a fault.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.errors import RevocationError
from firmware.revocation import manifest as manifests
from firmware.revocation.hashes import keys_of
from firmware.revocation.index import Body, open_body
from firmware.revocation.manifest import MAX_BODY, MAX_MANIFEST, Manifest
from firmware.store.marks import REVOCATION_SEQ, Mark
from firmware.store.statefiles import fsync_dir, write_atomic
from firmware.tokens import dcc
from firmware.utc import iso

logger = logging.getLogger(__name__)

FOLDER = "revocation"
MANIFEST, NEXT, LOCK = "manifest.cose", "next.cose", "lock"
FAULT = "dcc_revocation"
MISSING, STALE = "revocation_list_missing", "revocation_list_stale"
_BODY_NAME = re.compile(r"[0-9a-f]{64}")
_LEFTOVER = re.compile(r"\..*\.tmp")  # write_atomic's, when a power cut came between write and rename


@dataclass(frozen=True)
class InForce:
    """A complete list: its manifest and each bucket's opened body (None for an empty bucket)."""

    manifest: Manifest
    bodies: tuple[Body | None, ...]

    def __contains__(self, key: int) -> bool:
        body = self.bodies[self.manifest.bucket_of(key)]
        return body is not None and key in body


def read_capped(path: Path, cap: int) -> bytes:
    """A file of at most `cap` bytes (a technician may name /dev/zero): RevocationError past it, OSError as is."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise RevocationError(f"{path} is larger than {cap} bytes")
    return data


class RevocationStore:
    """The list in force (`revoked`, `problem`: the Revocations and DccList of the door) and its updates."""

    fault = FAULT

    def __init__(self, state_dir: Path, root: Ed25519PublicKey, required: bool = False, max_age_s: int = 86400):
        self.folder = Path(state_dir) / FOLDER
        self.root, self.required, self.max_age_s = root, required, max_age_s
        self.mark = Mark(Path(state_dir) / REVOCATION_SEQ)
        self._lock = threading.RLock()
        self._current: InForce | None = None
        self._next: Manifest | None = None
        self._have: dict[bytes, Body] = {}  # the next list's bodies opened so far, by digest
        self._seen: tuple[object, ...] | None = None  # the manifest files as last read (refresh)
        self._refusal: tuple[str, str] | None = None  # the last kept manifest refused, as logged
        self.refresh()

    # --- the door's side (any thread, no lock: one read of _current) ---

    def revoked(self, result: dcc.DccResult) -> bool:
        """Does the list in force name this verified certificate by any of its hashes?"""
        current = self._current
        return current is not None and any(key in current for key in keys_of(result))

    def problem(self, now: float) -> tuple[str, str] | None:
        """(reason, message) while `[dcc] revocation` asks for a fresh list and there is none; else None."""
        if not self.required:
            return None
        current = self._current
        if current is None:
            return MISSING, "no DCC revocation list in force ([dcc] revocation = true)"
        m = current.manifest
        if now > m.not_after:
            return STALE, f"the DCC revocation list (seq {m.seq}) is past its not_after {iso(m.not_after)}"
        if now - m.issued_at > self.max_age_s:
            return STALE, (f"the DCC revocation list (seq {m.seq}) was issued {iso(m.issued_at)}, more than "
                           f"{self.max_age_s // 3600} h ago ([dcc] max_list_age_h)")
        return None

    def current(self) -> InForce | None:
        return self._current

    def pending(self) -> Manifest | None:
        """The next list while its bodies are still coming."""
        return self._next

    def wanted(self) -> list[bytes]:
        """The digests of the next list's bodies not yet here, in bucket order."""
        with self._lock:
            if self._next is None:
                return []
            return [b.digest for b in self._next.buckets if b.count and b.digest not in self._have]

    # --- updates (paho's thread, housekeeping, a technician's process) ---

    def offer_manifest(self, data: bytes, now: float) -> bool:
        """`accept_manifest`, a refusal logged (a retained MQTT message anyone on the broker may have written)."""
        return _logged("manifest", lambda: self.accept_manifest(data, now))

    def accept_manifest(self, data: bytes, now: float) -> Manifest:
        """Take a newer list as the next one (and in force at once if every body is here); RevocationError else."""
        m = manifests.parse(data, self.root)
        with self._lock:
            if self._known(m):
                return m
            if now > m.not_after:
                raise RevocationError(f"revocation list seq {m.seq} is past its not_after")
            self._consider(m)
        return m

    def offer_body(self, data: bytes) -> bool:
        """`accept_body`, a refusal logged (what arrives on a body's topic)."""
        return _logged("body", lambda: self.accept_body(data))

    def accept_body(self, data: bytes) -> None:
        """Keep a body the next list wants; the list takes over once it has them all. RevocationError else."""
        with self._lock:
            if self._next is None:
                raise RevocationError("no revocation list is being assembled")
            index, _ = manifests.check_body(self._next, data)
            digest = self._next.buckets[index].digest
            if digest in self._have:
                return
            with self._flock():
                self._put(digest.hex(), data)
            self._have[digest] = open_body(self.folder / digest.hex(), self._next)
            self._complete()

    def install(self, folder: Path, now: float) -> InForce:
        """A list from a folder as `qrgate trust revocation build` writes it (manifest.cose, each body by its
        hex), put in force; RevocationError when refused, or when bodies are missing (it then waits for them)."""
        m = self.accept_manifest(read_capped(Path(folder) / MANIFEST, MAX_MANIFEST), now)
        for digest in self.wanted():
            try:
                data = read_capped(Path(folder) / digest.hex(), MAX_BODY)
            except FileNotFoundError:
                continue
            self.accept_body(data)
        current = self._current
        if current is None or current.manifest.raw != m.raw:
            raise RevocationError(f"{folder} lacks {len(self.wanted())} of the list's {len(m.wanted)} bodies: "
                                  f"seq {m.seq} waits for them")
        return current

    def refresh(self) -> None:
        """Adopt what another process (a technician's install) wrote since the last look; at start, the kept
        lists; and try again to put in force a list whose last write the card refused."""
        seen = self._stat_pair()
        if seen == self._seen:
            return
        with self._lock:
            self._seen = seen  # a refused write below sets it to None: read again next time
            for name in (MANIFEST, NEXT):
                try:
                    m = manifests.parse(read_capped(self.folder / name, MAX_MANIFEST), self.root)
                except FileNotFoundError:
                    continue
                except (OSError, RevocationError) as exc:
                    logger.error("kept revocation manifest %s is unusable: %s", name, exc)
                    continue
                try:
                    if self._next is not None and m.raw == self._next.raw:  # its bodies may have come meanwhile
                        self._gather({})
                        self._complete()
                    elif not self._known(m):
                        self._consider(m, kept=True)
                except RevocationError as exc:
                    if (name, str(exc)) != self._refusal:  # once, not every 5 s while the card refuses a write
                        logger.warning("kept revocation manifest %s not taken: %s", name, exc)
                    self._refusal = (name, str(exc))
            if self._seen is not None:
                self._seen = self._stat_pair()  # our own writes included

    # --- inside the lock ---

    def _known(self, m: Manifest) -> bool:
        current = self._current.manifest if self._current is not None else None
        return any(x is not None and x.raw == m.raw for x in (self._next, current))

    def _consider(self, m: Manifest, kept: bool = False) -> None:
        """A verified manifest, new to us: the next list, if newer than what is in force, held and assembled.
        `kept`: read from our own files (refresh), so not written again."""
        current, held = self._current, self.mark.read()
        if current is not None and m.seq <= current.manifest.seq:
            raise RevocationError(f"revocation list seq {m.seq} is not higher than the seq in force "
                                  f"{current.manifest.seq}")
        if m.seq < held:
            raise RevocationError(f"revocation list seq {m.seq} is older than seq {held}, which this device has "
                                  "held")
        if self._next is not None and m.seq <= self._next.seq:
            raise RevocationError(f"revocation list seq {m.seq} is not higher than seq {self._next.seq}, "
                                  "being assembled")
        if not kept:
            with self._flock():
                self._put(NEXT, m.raw)
        # Bodies already open (in force, or of a list this one replaces) serve again where they fit as they are.
        pool = {b.digest: b for b in (*(current.bodies if current else ()), *self._have.values()) if b is not None}
        self._next, self._have = m, {}
        self._gather(pool)
        logger.info("revocation list seq %d: %d of %d bodies to fetch", m.seq, len(m.wanted) - len(self._have),
                    len(m.wanted))
        self._complete()

    def _gather(self, pool: dict[bytes, Body]) -> None:
        """The next list's bodies found open in `pool`, or on the card (left by a list before, a restart, or
        another process), each read and checked again."""
        m = self._next
        assert m is not None
        for digest, index in m.wanted.items():
            if digest in self._have:
                continue
            body = pool.get(digest)
            if (body is None or not body.fits(m, index)) and (self.folder / digest.hex()).exists():
                try:
                    body = open_body(self.folder / digest.hex(), m)
                except RevocationError as exc:
                    logger.warning("kept revocation body %s not taken: %s", digest.hex()[:16], exc)
            if body is not None and body.fits(m, index):
                self._have[digest] = body

    def _complete(self) -> None:
        """The next list in force, once every body is here: written as the list in force, then swapped in."""
        m = self._next
        if m is None or len(self._have) < len(m.wanted):
            return
        new = InForce(m, tuple(self._have.get(b.digest) for b in m.buckets))  # an empty bucket's: none
        with self._flock():
            held = self.mark.read()
            if m.seq < held:  # another process put a newer list in force meanwhile
                self._next, self._have = None, {}
                raise RevocationError(f"revocation list seq {m.seq} is older than seq {held}, which this device "
                                      "has held")
            if self._kept(MANIFEST) != m.raw:  # not when it is the kept list, read at start
                try:
                    self._put(MANIFEST, m.raw)
                except RevocationError:
                    self._seen = None  # tried again at the next refresh (housekeeping's, within 5 s)
                    raise
            waiting = self._waiting()
            if waiting is None or waiting.seq <= m.seq:  # else a newer list a technician left there meanwhile
                waiting = None
                with contextlib.suppress(OSError):  # one left behind is refused, and dropped, next time
                    os.unlink(self.folder / NEXT)
                    fsync_dir(self.folder)
            self._raise_mark(m.seq)
            self._current, self._next, self._have = new, None, {}
            self._collect({*m.wanted, *(waiting.wanted if waiting is not None else ())})
        logger.info("revocation list seq %d in force (%d entries in %d buckets, issued %s)", m.seq, m.entries,
                    len(m.buckets), iso(m.issued_at))

    def _kept(self, name: str) -> bytes | None:
        try:
            return read_capped(self.folder / name, MAX_MANIFEST)
        except (OSError, RevocationError):
            return None

    def _waiting(self) -> Manifest | None:
        """The manifest in next.cose, when one is there that verifies."""
        try:
            return manifests.parse(read_capped(self.folder / NEXT, MAX_MANIFEST), self.root)
        except (OSError, RevocationError):
            return None

    def _collect(self, keep: set[bytes]) -> None:
        """Delete the bodies not in `keep` (those of the list in force, and of a newer one waiting beside it),
        and leftovers of a cut write: under the flock, so no other process is writing."""
        names = {d.hex() for d in keep}
        for entry in os.scandir(self.folder):
            if (_BODY_NAME.fullmatch(entry.name) and entry.name not in names) or _LEFTOVER.fullmatch(entry.name):
                with contextlib.suppress(OSError):  # a technician's rm meanwhile; else left for the next time
                    os.unlink(entry.path)

    def _raise_mark(self, seq: int) -> None:
        try:
            self.mark.raise_to(seq)
        except OSError as exc:  # the kept manifest itself still holds the seq while it is there
            logger.error("cannot keep revocation list seq %d as a mark in %s: %s", seq, self.mark.path,
                         exc.strerror)

    def _put(self, name: str, data: bytes) -> None:
        """A file of the folder written whole or not at all (the flock held); a card that refuses is a refusal."""
        try:
            write_atomic(self.folder / name, data, owner_of=self.folder)
        except OSError as exc:
            raise RevocationError(f"cannot write {self.folder / name}: {exc.strerror}") from None

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        """The folder's lock, made on first use (given to the state folder's owner when root makes it)."""
        try:
            fd = self._lock_file()
        except OSError as exc:
            raise RevocationError(f"cannot lock {self.folder}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _lock_file(self) -> int:
        """The lock file's descriptor, the folder made first if need be. Safe when the daemon's user is hostile
        and root runs this (`sudo qrgate trust revocation install`): the folder is opened without following a
        link and the lock made in it by descriptor, so a link planted in either place is refused, never
        followed; both are then given to the state folder's owner, so the daemon can use them too."""
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.folder, 0o700)
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
            try:
                if os.geteuid() == 0:
                    owner = os.stat(self.folder.parent)
                    for f in (folder, fd):
                        os.fchown(f, owner.st_uid, owner.st_gid)
            except OSError:
                os.close(fd)
                raise
        finally:
            os.close(folder)
        return fd

    def _stat_pair(self) -> tuple[object, ...]:
        return tuple(self._stat(name) for name in (MANIFEST, NEXT))

    def _stat(self, name: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.folder / name)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


def _logged(what: str, accept: Callable[[], object]) -> bool:
    try:
        accept()
    except RevocationError as exc:
        logger.warning("revocation %s refused: %s", what, exc)
        return False
    return True


def describe(folder: Path, root: Ed25519PublicKey | None, now: float) -> dict[str, Any]:
    """The lists in a folder (a device's state folder's revocation/, or one `qrgate trust revocation build`
    wrote) as a technician reads them, from the files alone: no body is read, so `qrgate status` may ask.
    `root` None: the manifests' signatures are not checked."""
    folder = Path(folder)
    out: dict[str, Any] = {}
    present = {e.name for e in os.scandir(folder)} if folder.is_dir() else set()
    for key, name in (("in_force", MANIFEST), ("next", NEXT)):
        try:
            m = manifests.parse(read_capped(folder / name, MAX_MANIFEST), root)
        except FileNotFoundError:
            out[key] = None
            continue
        except (OSError, RevocationError) as exc:
            out[key] = {"error": str(exc)}
            continue
        out[key] = {"seq": m.seq, "entries": m.entries, "buckets": len(m.buckets), "issued_at": iso(m.issued_at),
                    "age_s": round(now - m.issued_at), "not_after": iso(m.not_after),
                    "bodies_missing": sum(d.hex() not in present for d in m.wanted)}
    return out
