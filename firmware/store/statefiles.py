"""Atomic replacement of small state files: a power cut leaves the old file or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644, owner_of: Path | None = None) -> None:
    """Replace `path` with `data`. `owner_of`: when run as root (a technician's sudo), give the
    file to that folder's owner, so the unprivileged daemon that owns the state folder can read it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask (a unit's UMask=0077, a sudo's 077)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if owner_of is not None and os.geteuid() == 0:
            st = os.stat(owner_of)
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
