"""`qrgate bench seal`: what sealing a visit costs the door, and what it puts on the wire, for each suite.

One visit is sealed the way the gate seals it (Visit.seal: pad, HPKE to the
authority key, the envelope bound in info), for each suite in turn, the suites
interleaved round by round so that a noisy machine moves them alike; the
median of the rounds is reported, per seal. Record sizes are measured for every
kind and issuer the door sees, and must be one size per suite (records.PAD).
Version 1's seal (X25519, the whole visit in the plaintext, no padding) is
measured beside them as what devices did before. Goal (issue 20): a seal under
1 ms here; on a Pi, `qrgate bench seal` there is the figure that counts.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import cryptography
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from lab.bench.machine import cpu_model
from firmware.store import seal
from firmware.store.records import PAD, Visit, sealed_v1
from firmware.store.seal import OpeningKey

GOAL_SEAL_MS = 1.0
NOW = 1_750_000_000
# Every kind and issuer the door sees, at the lengths that used to tell them apart (issue 20's list).
KINDS = [("pass", os.urandom(16), "KP1"), ("naver", os.urandom(16), "KP1"), ("kakao", os.urandom(16), "KP1"),
         ("toss-app", os.urandom(16), "KP1"), ("DE", "URN:UVCI:01:DE:ABCDEFGHIJ/12345#7", "DCC"),
         ("XX", "URN:UVCI:01:XX:" + "X" * 40, "DCC")]


def _visit(i: int) -> Visit:
    iss, cti, kind = KINDS[i % len(KINDS)]
    return Visit(os.urandom(16), "cafe-1", "door-a", NOW + i, iss, cti, kind)


def run(rounds: int = 15, seals: int = 200) -> dict:
    keys = {s.alg: OpeningKey.generate(s).public_key() for s in (seal.MLKEM768_X25519, seal.X25519)}
    v1_key = X25519PublicKey.from_public_bytes(keys["X25519"].raw)
    sealers = {f"v2 {alg}": (lambda v, k=k: v.seal(k)) for alg, k in keys.items()}
    sealers["v1 X25519"] = lambda v: sealed_v1(v, v1_key)
    visits = [_visit(i) for i in range(seals)]
    times: dict[str, list[float]] = {name: [] for name in sealers}
    for _ in range(rounds):
        for name, make in sealers.items():
            t0 = time.perf_counter()
            for v in visits:
                make(v)
            times[name].append((time.perf_counter() - t0) / seals)
    suites = {}
    for name, make in sealers.items():
        sizes = {len(make(_visit(i)).wire()) for i in range(len(KINDS))}
        per_seal = statistics.median(times[name])
        suites[name] = {
            "seal_ms_median": round(per_seal * 1e3, 4),
            "seal_ms_best_round": round(min(times[name]) * 1e3, 4),
            "seals_per_s": round(1 / per_seal),
            "wire_bytes": sorted(sizes),
            "one_length_for_every_kind_and_issuer": len(sizes) == 1,
        }
    return {
        "rounds": rounds, "seals_per_round": seals, "pad_bytes": PAD, "suites": suites,
        "default_suite": seal.DEFAULT.alg,
        "goal": {"seal_ms": GOAL_SEAL_MS},
        "goal_met": all(s["seal_ms_median"] < GOAL_SEAL_MS for name, s in suites.items() if name.startswith("v2")),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version(), "cryptography": cryptography.__version__,
                    "openssl": _openssl()},
    }


def _openssl() -> str:
    from cryptography.hazmat.backends.openssl.backend import backend

    return backend.openssl_version_text()
