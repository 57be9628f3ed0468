"""What `qrgate fuzz TARGET` can fuzz, by name: each target's world is built only when it is chosen."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from lab.fuzz import engine
from lab.fuzz.engine import Target


def _dcc(seed: int = 0) -> Target:
    from lab.fuzz.dcc import dcc_target

    return dcc_target(seed)


def _trustlist(seed: int = 0) -> Target:
    from lab.fuzz.wire import trustlist_target

    return trustlist_target(seed)


def _ingest(seed: int = 0) -> Target:
    from lab.fuzz.wire import ingest_target

    return ingest_target(seed)


def _passback(seed: int = 0) -> Target:
    from lab.fuzz.passback import passback_target

    return passback_target(seed)


def _certlogic(seed: int = 0) -> Target:
    from lab.fuzz.certlogic import certlogic_target

    return certlogic_target(seed)


def _revocation(seed: int = 0) -> Target:
    from lab.fuzz.revocation import revocation_target

    return revocation_target(seed)


TARGETS: dict[str, Callable[[int], Target]] = {"kp1": engine.kp1_target, "kc1": engine.kc1_target, "dcc": _dcc,
                                               "trustlist": _trustlist, "ingest": _ingest, "passback": _passback,
                                               "certlogic": _certlogic, "revocation": _revocation}


def run(target: str | Target, count: int = 1_000_000, workers: int | None = None, seed: int = 0,
        out: Path | None = None, hang_s: float = engine.HANG_S) -> dict:
    """`engine.run` on a target given by name (its world seeded by `seed`) or as it is."""
    t = TARGETS[target](seed) if isinstance(target, str) else target
    return engine.run(t, count=count, workers=workers, seed=seed, out=out, hang_s=hang_s)


def main(args: argparse.Namespace) -> int:
    result = run(args.target, count=args.count, workers=args.workers, seed=args.seed, out=args.out)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1
