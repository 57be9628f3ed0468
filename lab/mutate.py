"""`./dev mutate [MODULE…]`: mutation testing of the core with mutmut, one module at a time.

A test names a promise only if breaking the promise makes it fail. mutmut
breaks the code one small change at a time (a `<` for a `<=`, a `True` for a
`False`, a call dropped) and runs the tests that reach the changed function;
a mutant no test notices has survived. For each module in CORE, a copy of the
working tree in `.mutate/<module>/` gets a `[tool.mutmut]` section that
mutates that one file and selects that module's tests, and `mutmut run` runs
there: it keeps its results, so a second run tests only what changed.

The result is read from mutmut's own record (`mutants/<file>.meta`), and each
survivor is listed with its diff unless `docs/mutation.md` names it as
equivalent (a change no behaviour can tell apart) with its reason. Per module:
the raw score (killed, timeouts included, over all mutants) and the score
(killed over the mutants that are not equivalent). The goal is a score of 90%
in each module and no survivor unexplained; the exit status is 1 when either
fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutate"
EQUIVALENTS = REPO / "docs" / "mutation.md"
GOAL = 0.90
KILLED = {1, 3, 24, -24, 36, 152, 255}  # mutmut's exit codes for killed and timed out (mutmut.stats)


@dataclass(frozen=True)
class Module:
    file: str
    tests: tuple[str, ...]
    by_name_only: bool = False  # too slow for the default run, so only when named (none now: the ingest took 39 min
    # on two cores until its tests stopped waiting out clocks; 6 to 10 min since)


CORE: dict[str, Module] = {
    "gate": Module("firmware/gate.py", ("tests/core/test_gate.py",)),
    "loop": Module("firmware/scanner/loop.py", ("tests/core/test_loop.py",)),
    "workers": Module("firmware/scanner/workers.py", ("tests/scanner/test_workers.py",)),
    "drain": Module("firmware/uplink/drain.py", ("tests/core/test_drain.py",)),
    "mqtt": Module("firmware/uplink/mqtt.py", ("tests/uplink/test_session.py", "tests/uplink/test_mqtt_acks.py")),
    "buffer": Module("firmware/store/buffer.py", ("tests/store/test_buffer.py",)),
    "seal": Module("firmware/store/seal.py", ("tests/store/test_seal.py",)),
    "seal_v1": Module("firmware/store/seal_v1.py", ("tests/store/test_seal.py",)),
    "records": Module("firmware/store/records.py", ("tests/store/test_seal.py", "tests/store/test_buffer.py")),
    "kp1": Module("firmware/tokens/kp1.py", ("tests/tokens/test_kp1.py", "tests/tokens/test_strict.py",
                                            "tests/tokens/test_properties.py", "tests/tokens/test_kc1.py")),
    "kc1": Module("firmware/tokens/kc1.py", ("tests/tokens/test_kc1.py", "tests/tokens/test_properties.py")),
    "trustlist": Module("firmware/tokens/trustlist.py", ("tests/tokens/test_trustlist.py",
                                                        "tests/tokens/test_strict.py")),
    "dcc": Module("firmware/tokens/dcc.py", ("tests/tokens/test_dcc.py", "tests/tokens/test_dcc_keyusage.py")),
    "eku": Module("firmware/tokens/eku.py", ("tests/tokens/test_dcc_keyusage.py",)),
    "dcc_policy": Module("firmware/tokens/dcc_policy.py", ("tests/tokens/test_dcc_policy.py",)),
    "dcc_rules": Module("firmware/tokens/dcc_rules.py", ("tests/tokens/test_dcc_rules.py",
                                                        "tests/tokens/test_trustlist.py")),
    "certlogic": Module("firmware/tokens/certlogic.py", ("tests/tokens/test_certlogic.py",
                                                        "tests/tokens/test_certlogic_suite.py")),
    "dcc_verifier": Module("firmware/tokens/dcc_verifier.py", ("tests/tokens/test_dcc_policy.py",
                                                              "tests/tokens/test_dcc.py",
                                                              "tests/tokens/test_dcc_verifier.py")),
    "feedback": Module("firmware/leds/feedback.py", ("tests/leds/test_feedback.py",)),
    "readiness": Module("firmware/readiness.py", ("tests/core/test_readiness.py",)),
    "ingest": Module("custodian/ingest.py", ("tests/custodian/test_ingest_unit.py",)),
    "passback_memory": Module("firmware/passback/memory.py", ("tests/passback/test_passback_memory.py",)),
    "passback_message": Module("firmware/passback/message.py", ("tests/passback/test_passback_message.py",)),
    "passback_share": Module("firmware/passback/share.py", ("tests/passback/test_passback_share.py",)),
    "revocation_hashes": Module("firmware/revocation/hashes.py", ("tests/revocation/test_revocation_hashes.py",)),
    "revocation_manifest": Module("firmware/revocation/manifest.py",
                                  ("tests/revocation/test_revocation_manifest.py",)),
    "revocation_index": Module("firmware/revocation/index.py", ("tests/revocation/test_revocation_index.py",)),
    "revocation_store": Module("firmware/revocation/store.py", ("tests/revocation/test_revocation_store.py",)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"of {', '.join(CORE)} (default: all"
                             + (f" but {', '.join(_by_name_only())})" if _by_name_only() else ")"))
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once (default: 2)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results and test every mutant again")
    parser.add_argument("--json", action="store_true", help="one JSON object at the end, not the table")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        parser.error(f"no core module {', '.join(unknown)}; the modules are {', '.join(CORE)}")
    equivalents = _equivalents()
    names = args.modules or [name for name in CORE if name not in _by_name_only()]
    results = [run(name, CORE[name], args.children, args.fresh, equivalents) for name in names]
    if args.json:
        print(json.dumps({"goal": GOAL, "modules": results}))
    else:
        for r in results:
            for s in r["unexplained"]:
                print(f"\n--- {r['module']}: survived {s['name']}\n{s['diff']}")
        print(f"\n{'module':<14}{'mutants':>8}{'killed':>8}{'survived':>9}{'equiv.':>7}{'raw':>8}{'score':>8}"
              f"{'s':>6}")
        for r in results:
            print(f"{r['module']:<14}{r['mutants']:>8}{r['killed']:>8}{r['survived']:>9}{r['equivalent']:>7}"
                  f"{r['raw_score']:>8.1%}{r['score']:>8.1%}{r['seconds']:>6.0f}")
        for r in results:
            if r["stale_equivalents"]:
                print(f"{r['module']}: docs/mutation.md lists mutants that no longer survive: "
                      + ", ".join(r["stale_equivalents"]))
    return 0 if all(r["met"] for r in results) else 1


def run(name: str, module: Module, children: int, fresh: bool, equivalents: set[str]) -> dict:
    work = WORK / name
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    _copy_tree(work)
    (work / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + _section(module))
    t0 = time.monotonic()
    log = work / "mutmut.log"
    meta = work / "mutants" / (module.file + ".meta")
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children)]
    with log.open("w") as out:
        done = subprocess.run(command, cwd=work, stdout=out, stderr=subprocess.STDOUT)
        # mutmut keeps a result until the function changes; the tests may have changed since, so what
        # survived before is tried again against them (what was killed stays killed: tests are only added).
        survivors = _survivors(_codes(meta)) if done.returncode == 0 and meta.exists() else []
        if survivors:
            done = subprocess.run(command + survivors, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if done.returncode != 0 or not meta.exists():
        raise SystemExit(f"./dev mutate: mutmut failed on {module.file} (exit {done.returncode}); see {log}")
    codes = _codes(meta)
    survived = _survivors(codes)
    killed = len(codes) - len(survived)
    unexplained = [{"name": m, "diff": _diff(work, m)} for m in survived if m not in equivalents]
    prefix = module.file.removesuffix(".py").replace("/", ".") + "."
    equivalent = len(survived) - len(unexplained)
    raw = killed / len(codes) if codes else 1.0
    # An equivalent mutant is no program a test could tell apart: it leaves the count it cannot be killed in.
    score = killed / (len(codes) - equivalent) if len(codes) > equivalent else 1.0
    return {
        "module": name, "file": module.file, "tests": list(module.tests), "mutants": len(codes),
        "killed": killed, "survived": len(survived), "equivalent": equivalent,
        "raw_score": round(raw, 4), "score": round(score, 4), "unexplained": unexplained,
        "stale_equivalents": sorted(e for e in equivalents if e.startswith(prefix) and e not in survived),
        "met": score >= GOAL and not unexplained, "seconds": round(seconds, 1),
    }


def _by_name_only() -> list[str]:
    return [name for name, module in CORE.items() if module.by_name_only]


def _codes(meta: Path) -> dict[str, int | None]:
    """mutmut's exit code for each mutant of the file: its record of what killed it, or None if untested."""
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def _survivors(codes: dict[str, int | None]) -> list[str]:
    return sorted((m for m, code in codes.items() if code not in KILLED), key=_natural)


def _section(module: Module) -> str:
    return f"""
[tool.mutmut]
source_paths = ["firmware/", "custodian/"]
only_mutate = [{json.dumps(module.file)}]
pytest_add_cli_args_test_selection = {json.dumps(list(module.tests))}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
also_copy = ["lab/", "tests/", "systemd/", "image-build/", "docs/", "DESIGN.md", "README.md"]
"""


def _copy_tree(work: Path) -> None:
    """The working tree as git sees it (committed or not, ignored files left out), copied where it changed."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src, dst = REPO / rel, work / rel
        if not src.is_file():
            continue
        if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _diff(work: Path, mutant: str) -> str:
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True,
                           text=True)
    lines = [line for line in shown.stdout.splitlines() if line.startswith(("-", "+")) and
             not line.startswith(("---", "+++"))]
    return "\n".join(lines) or shown.stdout.strip()


def _equivalents() -> set[str]:
    """The mutants docs/mutation.md lists as equivalent: the backquoted names in its tables, before "## Left"."""
    if not EQUIVALENTS.exists():
        return set()
    listed = EQUIVALENTS.read_text().partition("\n## Left")[0]  # what is left is not equivalent
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", listed))


def _natural(name: str) -> tuple[str, int]:
    stem, _, n = name.rpartition("_")
    return stem, int(n) if n.isdigit() else 0


if __name__ == "__main__":
    sys.exit(main())
