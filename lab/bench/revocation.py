"""`qrgate bench revocation`: a DCC revocation list of 10,000,000 entries, built, installed and looked up as a device does.

The authority's builder (lab.revocation.build) makes the list from generated EU
entries (the three hash types, under 200 signer kids) plus the three entries of
one genuine DCC; then, each in a fresh interpreter so that its memory is its
own (machine.in_fresh_process):

- `install`: a technician's `qrgate trust revocation install` of the list's
  folder into an empty state folder (every body read, checked, written, fsynced
  and opened);
- `pread`: the daemon's start, a RevocationStore over that state folder (every
  body read and checked again), then lookups as the door makes them: keys on
  the list and keys not on it one at a time (each timed), `revoked()` of a
  verified DCC the list names and of one it does not, and, after the list's
  files are dropped from the page cache (posix_fadvise DONTNEED), lookups that
  must read the card again;
- `mmap`: the same lookups through mmap in place of pread, to show what it
  would cost the daemon's resident memory.

VmRSS is read before the list is loaded, once it is, and after the lookups.
Goals (issue 21): a lookup under 20 µs, and under 20 MB of resident memory
added by holding the list.
"""

from __future__ import annotations

import array
import bisect
import gc
import json
import mmap
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from firmware.errors import QrgateError
from lab.bench.machine import cpu_model, filesystem, in_fresh_process, kb_to_mb, proc_status_kb

GOAL_LOOKUP_US = 20.0
GOAL_EXTRA_RSS_MB = 20.0
KIDS = 200


def run(entries: int = 10_000_000, lookups: int = 100_000, folder: Path | None = None) -> dict:
    """The figures as JSON-ready values; `folder` holds the list and the state folder while it runs."""
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-revocation-", dir=folder) as tmp:
        return _run(Path(tmp), entries, lookups)


def _run(work: Path, n: int, lookups: int) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware import keys
    from firmware.revocation import manifest as manifests
    from lab import dcc_issuer, revocation

    root = Ed25519PrivateKey.generate()
    keys.write_private(work / "root.key", root)
    signer = dcc_issuer.make_signer("XX")
    now = time.time()
    named, other = dcc_issuer.mint(signer, now), dcc_issuer.mint(signer, now)
    started = time.perf_counter()
    rl = revocation.build(root, _entries(n - 3, revocation.entries_of_dcc(named)), seq=1, issued_at=int(now))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    rl.write(work / "list")
    write_s = time.perf_counter() - started
    size = sum(len(b) for b in rl.bodies.values()) + len(rl.manifest)
    bodies, manifest = len(rl.bodies), rl.manifest
    del rl
    gc.collect()
    kwargs = {"work": str(work), "root": str(work / "root.key"), "lookups": lookups, "now": now,
              "dccs": [named, other], "cert": signer.cert.public_bytes(serialization.Encoding.PEM).decode()}
    limit = 3600.0
    installed = in_fresh_process(__name__, "install", kwargs, limit)
    sides = {side: in_fresh_process(__name__, side, kwargs, limit) for side in ("pread", "mmap")}
    p = sides["pread"]
    extra_mb = kb_to_mb(p["rss_kb"]["after_lookups"] - p["rss_kb"]["before_loading"])
    worst_us = max(p["present_us"]["median"], p["absent_us"]["median"])
    met = {"lookup_median_us": worst_us < GOAL_LOOKUP_US, "extra_rss_mb": (extra_mb or 0) < GOAL_EXTRA_RSS_MB}
    m = manifests.parse(manifest, None)
    return {
        "bench": "revocation",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "filesystem": filesystem(work),
        "entries": n,
        "keys": m.entries,
        "bits": m.bits,
        "bodies": bodies,
        "list_bytes": size,
        "build_s": round(build_s, 2),
        "write_s": round(write_s, 2),
        "install_s": installed["install_s"],
        "load_s": p["load_s"],
        "lookups": lookups,
        "pread": p,
        "mmap": sides["mmap"],
        "extra_rss_mb": extra_mb,
        "goals": {"lookup_median_us": GOAL_LOOKUP_US, "extra_rss_mb": GOAL_EXTRA_RSS_MB},
        "goals_met": {**met, "all": all(met.values())},
    }


def _entries(n: int, first: list):
    """The named DCC's entries, then `n` random ones: the three types under KIDS kids."""
    from lab.revocation import Entry, HashType

    yield from first
    rng = random.Random(0)
    kids = [rng.randbytes(8) for _ in range(KIDS)]
    kinds = list(HashType)
    for _ in range(n):
        yield Entry(kinds[rng.randrange(3)], kids[rng.randrange(KIDS)], rng.randbytes(16))


def _stats(ns: list[int]) -> dict:
    ns = sorted(ns)
    return {"median": round(statistics.median(ns) / 1000, 2), "p99": round(ns[int(len(ns) * 0.99)] / 1000, 2),
            "max": round(ns[-1] / 1000, 1)}


def _rss() -> int:
    rss = proc_status_kb("VmRSS")
    if rss is None:
        raise QrgateError("no /proc/self/status here: resident memory cannot be read")
    return rss


def _sample_keys(folder: Path, count: int, rng: random.Random) -> list[int]:
    """Keys on the list, read from its bodies as files (not through the store under test)."""
    names = sorted(p.name for p in folder.iterdir() if len(p.name) == 64)
    out = []
    for _ in range(count):
        with open(folder / rng.choice(names), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(rng.randrange(size // 8) * 8)
            out.append(int.from_bytes(f.read(8), "big"))
    return out


def _timed(contains, keys: list[int], times: array.array) -> int:
    """Each lookup timed into `times` (made before memory is first read: its 8 bytes a lookup count nowhere)."""
    clock, found = time.perf_counter_ns, 0
    for i, key in enumerate(keys):
        t0 = clock()
        hit = contains(key)
        times[i] = clock() - t0
        found += hit
    return found


class _MmapBody:
    """What a body would be through mmap: the same page index, the page read from the mapping."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            # The index read through the file, not the mapping: only lookups touch its pages.
            size = os.fstat(f.fileno()).st_size
            self._firsts = array.array("Q", (int.from_bytes(os.pread(f.fileno(), 8, at), "big")
                                             for at in range(0, size, 4096)))

    def __contains__(self, key: int) -> bool:
        page = bisect.bisect_right(self._firsts, key) - 1
        if page < 0:
            return False
        data = self._map[page * 4096 : page * 4096 + 4096]
        wanted = key.to_bytes(8, "big")
        at = data.find(wanted)
        while at >= 0:
            if at % 8 == 0:
                return True
            at = data.find(wanted, at + 1)
        return False


def _child() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(_side(job["side"], **job["kwargs"])))


def _side(side: str, work: str, root: str, lookups: int, now: float, dccs: list[str], cert: str) -> dict:
    from cryptography import x509

    from firmware import keys
    from firmware.revocation.manifest import MAX_BODY
    from firmware.revocation.store import FOLDER, MANIFEST, RevocationStore
    from firmware.revocation import manifest as manifests
    from firmware.tokens import dcc

    base = Path(work)
    state = base / "state"
    public = keys.load_private(Path(root), keys.Ed25519PrivateKey, "root key").public_key()
    rng = random.Random(1)
    if side == "install":
        started = time.perf_counter()
        RevocationStore(state, public).install(base / "list", now)
        return {"install_s": round(time.perf_counter() - started, 2)}
    folder = state / FOLDER
    present, absent = _sample_keys(folder, lookups // 2, rng), [rng.getrandbits(64) for _ in range(lookups // 2)]
    results = [dcc.verify(text, [x509.load_pem_x509_certificate(cert.encode())], now) for text in dccs]
    times = [array.array("q", bytes(8 * len(keys))) for keys in (present, absent, range(1000))]
    revoked_ns = {name: array.array("q", bytes(8 * 2000)) for name in ("named", "not_named")}
    gc.collect()
    rss = {"before_loading": _rss()}
    started = time.perf_counter()
    if side == "pread":
        store = RevocationStore(state, public)
        current = store.current()
        assert current is not None, "the installed list is not in force"
        contains = current.__contains__
    else:
        m = manifests.parse((folder / MANIFEST).read_bytes(), public)
        bodies = [_MmapBody(folder / b.digest.hex()) if b.count else None for b in m.buckets]

        def contains(key: int) -> bool:
            body = bodies[m.bucket_of(key)]
            return body is not None and key in body
    load_s = time.perf_counter() - started
    rss["after_loading"] = _rss()
    found = _timed(contains, present, times[0])
    false_hits = _timed(contains, absent, times[1])
    rss["after_lookups"] = _rss()
    out = {"load_s": round(load_s, 2), "rss_kb": rss,
           "rss_mb": {k: kb_to_mb(v) for k, v in rss.items()},
           "present_us": _stats(list(times[0])), "absent_us": _stats(list(times[1])),
           "present_found": found, "present_looked_up": len(present), "absent_found": false_hits}
    if side == "pread":
        for (name, ns), result in zip(revoked_ns.items(), results):
            for i in range(len(ns)):
                t0 = time.perf_counter_ns()
                answer = store.revoked(result)
                ns[i] = time.perf_counter_ns() - t0
            out[f"revoked_{name}"] = answer
        out["revoked_us"] = {k: _stats(list(v)) for k, v in revoked_ns.items()}
        for path in folder.iterdir():  # off the page cache: the next reads go to the card
            if len(path.name) == 64 and path.stat().st_size <= MAX_BODY:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
        _timed(contains, [rng.getrandbits(64) for _ in range(1000)], times[2])
        out["cold_absent_us"] = _stats(list(times[2]))
    return out
