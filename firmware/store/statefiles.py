"""Atomic replacement of small state files: a power cut leaves the old file or the new one, never half.

Safe in a folder someone else can write to, as root's `qrgate trust install`
writes into the daemon's state folder: the folder is opened once without
following a symbolic link, the temporary file is made in it by descriptor with
a random name, O_EXCL and O_NOFOLLOW (nothing planted there is ever opened),
and the rename replaces whatever entry has the final name, a symbolic link
included, without following it. A compromised daemon user can therefore not
turn root's write against another file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: Path, data: bytes, mode: int = 0o644, owner_of: Path | None = None) -> None:
    """Replace `path` with `data`, exactly `mode` whatever the umask. `owner_of`: when run as root (a
    technician's sudo), give the file to the owner of that folder (path's own), so the unprivileged
    daemon that owns the state folder can read it."""
    path = Path(path)
    if owner_of is not None and Path(owner_of) != path.parent:
        raise ValueError("owner_of must be the folder the file is written in")
    folder = os.open(path.parent, _DIR_FLAGS)
    try:
        tmp, fd = _new_file(folder, path.name, mode)
        try:
            try:
                os.fchmod(fd, mode)  # a unit's UMask=0077 or a sudo's 077 must not narrow it
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if owner_of is not None and os.geteuid() == 0:
                    st = os.fstat(folder)
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            _unlink_quietly(tmp, folder)
            raise
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def _new_file(folder: int, name: str, mode: int) -> tuple[str, int]:
    """A file no one else can have named beforehand: a random name, created exclusively."""
    while True:
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return tmp, os.open(tmp, _NEW_FLAGS, mode, dir_fd=folder)
        except FileExistsError:  # 64 random bits taken already: planted, or a freak; draw again
            continue


def _unlink_quietly(name: str, folder: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
