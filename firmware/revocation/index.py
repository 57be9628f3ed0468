"""A bucket body on the card, opened for lookups: its file held open, the first key of each 4 KiB page in memory.

A lookup finds the one page that can hold the key in the in-memory index (bisect
over 8 bytes a page: 156 KiB for 10,000,000 keys), reads that page with one
os.pread and looks for the key's 8 bytes in it. Why not mmap, which would spare
the syscall: every page a lookup touches stays mapped into the process and
counts in its resident memory, and lookups of random keys touch every page in
time, so a daemon holding a list of 10,000,000 entries (80 MB) would grow
towards 80 MB resident; pread's pages stay in the kernel's page cache, which
the kernel gives back under pressure and which is not the daemon's. `qrgate
bench revocation` measures both (docs/benchmarks.md): pread costs a couple of µs
more a lookup and leaves the process as it was; through mmap it grew by the
list's size. Searching the page with bytes.find (a run of 8 bytes at an 8-byte
boundary) measured faster in CPython than a numpy searchsorted on it, whose call
overhead is most of the work at this size.

A body is opened from its file and checked as it is read (manifest.check_body):
the descriptor kept is the one whose bytes were checked.
"""

from __future__ import annotations

import array
import bisect
import os
import weakref
from pathlib import Path

from firmware.errors import RevocationError
from firmware.revocation.hashes import KEY_BYTES
from firmware.revocation.manifest import MAX_BODY, Manifest, check_body

PAGE = 4096
PER_PAGE = PAGE // KEY_BYTES


class Body:
    """One bucket's keys, on the card; `key in body` reads one page."""

    def __init__(self, path: Path, manifest: Manifest):
        """Open `path` and check its bytes against `manifest` (RevocationError, OSError)."""
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # Closed when the last lookup lets go of the body (a list replaced, its bodies unused), or by close().
        self.close = weakref.finalize(self, os.close, self._fd)
        try:
            self.bucket, keys = check_body(manifest, os.pread(self._fd, MAX_BODY + 1, 0))
        except BaseException:
            self.close()
            raise
        self.digest, self.bits, self.count = manifest.buckets[self.bucket].digest, manifest.bits, len(keys)
        self._firsts = array.array("Q", keys[::PER_PAGE].tolist())

    def __contains__(self, key: int) -> bool:
        page = bisect.bisect_right(self._firsts, key) - 1
        if page < 0:
            return False
        data = os.pread(self._fd, PAGE, page * PAGE)
        wanted = key.to_bytes(KEY_BYTES, "big")
        at = data.find(wanted)
        while at >= 0:
            if at % KEY_BYTES == 0:
                return True
            at = data.find(wanted, at + 1)
        return False

    def fits(self, manifest: Manifest, bucket: int) -> bool:
        """Is this body, checked against another manifest, what `manifest` says its `bucket` is?"""
        b = manifest.buckets[bucket]
        return (self.digest, self.count, self.bucket, self.bits) == (b.digest, b.count, bucket, manifest.bits)


def open_body(path: Path, manifest: Manifest) -> Body:
    """A body file checked against the manifest, or RevocationError naming the file (never OSError)."""
    try:
        return Body(path, manifest)
    except OSError as exc:
        raise RevocationError(f"revocation body {Path(path).name}: {exc.strerror}") from None
