"""`qrgate bench verify`: how fast the door verifies tokens, against the bare signature check.

The Ed25519 check is the irreducible cost of a valid token; everything else
(prefix, base45, CBOR, COSE, claims, trust lookup) should cost less than a
third of it. Both are measured in the same run, on one core, on the same keys
and tokens, token by token: the full verify of a token, then the bare check of
its signature, timed back to back. So a noisy machine moves both sides alike,
and the bare check runs in the same cache conditions as inside the verifier
(a tight loop of bare checks alone would flatter it). Garbage (other QR codes,
broken base45, random COSE-looking bytes, truncated tokens) must be turned away
before any signature check, at 100,000 or more per second.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import base45
import cryptography

from lab.bench.machine import cpu_model
from firmware import keys
from firmware.errors import QrgateError
from firmware.tokens import b45, cose, kp1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab.world import APPS, World

NOW = 1_750_000_000
GOAL_RATIO = 0.75
GOAL_GARBAGE_PER_S = 100_000


def _world(n_tokens: int, rng: random.Random):
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-verify-") as tmp:
        world = World.create(Path(tmp), issued_at=NOW)
        trust = trustlist.parse(world.trust_file.read_bytes(), keys.load_root_public(world.root_dir))
    tokens = [
        world.mint(APPS[i % len(APPS)], NOW, ttl=rng.choice((15, 30, 300)), att=rng.sample(kp1.ATTRIBUTES, i % 4))
        for i in range(n_tokens)
    ]
    return trust, tokens


def _garbage(tokens: list[str], rng: random.Random) -> dict[str, list[str]]:
    n = len(tokens)
    printable = [chr(c) for c in range(32, 127)]
    start = bytes.fromhex("d2844da201270448")  # KP1's envelope head: the layout check must reject the rest
    return {
        "other_qr": [rng.choice(("https://menu.example/", "WIFI:S:cafe;T:WPA;P:", "BEGIN:VCARD "))
                     + "".join(rng.choices(printable, k=rng.randint(5, 120))) for _ in range(n)],
        "bad_base45": ["KP1:" + "".join(rng.choices(printable, k=len(t) - 4)) for t in tokens],
        "random_cose_bytes": ["KP1:" + base45.b45encode(start + rng.randbytes(len(b45.decode(t[4:])) - len(start))).decode()
                              for t in tokens],
        "truncated": [t[: rng.randint(4, len(t) - 1)] for t in tokens],
    }


def _rate(fn: Callable[[object], object], items: list) -> float:
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - t0)


def _side_by_side(verify: Callable[[str], object], tokens: list[str], bare: list[tuple]) -> tuple[float, float]:
    """Nanoseconds spent in full verifies and in bare signature checks, interleaved token by token."""
    clock = time.perf_counter_ns
    full_ns = bare_ns = 0
    for text, (key, signature, message) in zip(tokens, bare):
        t0 = clock()
        verify(text)
        t1 = clock()
        key.verify(signature, message)
        t2 = clock()
        full_ns += t1 - t0
        bare_ns += t2 - t1
    return full_ns, bare_ns


@contextlib.contextmanager
def _one_core():
    """Pin this process to one CPU for the measurement, so "per second" means per core."""
    try:
        before = os.sched_getaffinity(0)
        cpu = min(before)
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        yield None
        return
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def run(rounds: int = 15, n_tokens: int = 300, seed: int = 1) -> dict:
    with _one_core() as cpu:
        result = _measure(rounds, n_tokens, seed)
    result["pinned_to_cpu"] = cpu
    return result


def _measure(rounds: int, n_tokens: int, seed: int) -> dict:
    rng = random.Random(seed)
    trust, tokens = _world(n_tokens, rng)
    verifier = kp1.Kp1Verifier(lambda: trust)
    bare = []
    for t in tokens:
        envelope = cose.parse_sign1(b45.decode(t[len(kp1.PREFIX):]))
        bare.append((trust.issuers[envelope.kid].key, envelope.signature, envelope.sig_structure()))
    garbage = _garbage(tokens, rng)

    # The figures mean something only if the answers are right.
    if any(verifier.verify(t, NOW).kind is not Kind.ACCEPTED for t in tokens):
        raise QrgateError("bench: a valid token was not accepted")
    for kind, texts in garbage.items():
        if any(verifier.verify(t, NOW).reason is not Reason.MALFORMED for t in texts):
            raise QrgateError(f"bench: garbage of kind {kind} was not rejected as malformed")

    def verify(text):
        return verifier.verify(text, NOW)

    valid_rates, bare_rates, ratios = [], [], []
    garbage_rates: dict[str, list[float]] = {kind: [] for kind in garbage}
    for _ in range(rounds):
        full_ns, bare_ns = _side_by_side(verify, tokens, bare)
        valid_rates.append(len(tokens) * 1e9 / full_ns)
        bare_rates.append(len(tokens) * 1e9 / bare_ns)
        ratios.append(bare_ns / full_ns)
        for kind, texts in garbage.items():
            garbage_rates[kind].append(_rate(verify, texts))

    by_kind = {kind: round(statistics.median(r)) for kind, r in garbage_rates.items()}
    all_garbage = [t for texts in garbage.values() for t in texts]
    garbage_overall = statistics.median(_rate(verify, all_garbage) for _ in range(rounds))
    ratio = statistics.median(ratios)
    return {
        "bench": "verify",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "rounds": rounds,
        "tokens": n_tokens,
        "valid_tokens_per_s": round(statistics.median(valid_rates)),
        "bare_ed25519_checks_per_s": round(statistics.median(bare_rates)),
        "ratio_valid_to_bare": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "garbage_per_s": round(garbage_overall),
        "garbage_per_s_by_kind": by_kind,
        "goal_garbage_per_s": GOAL_GARBAGE_PER_S,
        "goals_met": ratio >= GOAL_RATIO and garbage_overall >= GOAL_GARBAGE_PER_S,
    }
