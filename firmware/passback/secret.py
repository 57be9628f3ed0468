"""The venue secret: 32 random bytes every device of one venue holds, and nobody else.

A token's seen key (`Claims.seen_key`: a KP1 cti or a DCC's UVCI) leaves the
device only as HMAC-SHA256 under this secret, truncated to 16 bytes. Without the
secret the custodian, whose broker relays every hash, can neither compute the
hash of a token id it knows nor link two venues' hashes (each venue has its own
secret). 16 bytes because a hash names one token among a venue's live ones: with
at most `memory.CAPACITY` held, a fresh token collides with one of them with a
chance of about 2^14 / 2^128 = 2^-114, and truncation does not weaken the key.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import stat
from pathlib import Path

from firmware import credentials
from firmware.errors import KeyFileError

SECRET_BYTES = 32
HASH_BYTES = 16
# Domain separation: the same bytes, were they ever reused as another key, would hash other things differently.
_LABEL = b"qrgate passback v1\0"


class VenueSecret:
    """Holds the secret; gives out only hashes. repr names no byte of it."""

    def __init__(self, key: bytes):
        check(key, "the venue secret")
        self._key = key

    def hash(self, seen_key: bytes) -> bytes:
        return hmac.new(self._key, _LABEL + seen_key, hashlib.sha256).digest()[:HASH_BYTES]

    def __repr__(self) -> str:
        return "VenueSecret(…)"


def check(data: bytes, what: str) -> None:
    """Exactly 32 bytes, and not an obviously made-up value (one byte repeated: zeros, a filled file)."""
    if len(data) != SECRET_BYTES:
        raise KeyFileError(f"{what} is {len(data)} bytes, not {SECRET_BYTES} random bytes "
                           f"(make one with `qrgate venue-secret new --out FILE`)")
    if len(set(data)) == 1:
        raise KeyFileError(f"{what} is one byte repeated, not random")


def read(path: Path, owner_only: bool = True) -> bytes:
    """A secret file as a private key file must be: a regular file that only its owner may read (systemd's
    credential copies, `owner_only` False, are guarded by their folder instead)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise KeyFileError(f"cannot read the venue secret {path}: {why}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"the venue secret {path} is not a regular file")
        if owner_only and info.st_mode & 0o077:
            raise KeyFileError(f"the venue secret {path} may be read by others (mode {info.st_mode & 0o777:o}); "
                               "it must be 0600")
        data = f.read(SECRET_BYTES + 1)
    check(data, f"the venue secret {path}")
    return data


def load(path: Path) -> VenueSecret:
    """The configured secret, or systemd's credential of the same file name (credentials.resolve)."""
    resolved = credentials.resolve(path)
    return VenueSecret(read(resolved, owner_only=resolved == Path(path)))


def write_new(path: Path) -> None:
    """A fresh secret, mode 0600, refusing to replace one: a venue's doors must all hold the same."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(os.urandom(SECRET_BYTES))
        f.flush()
        os.fsync(f.fileno())
