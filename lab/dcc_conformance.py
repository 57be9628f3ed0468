"""`qrgate dcc conformance DIR…`: the EU DCC test vectors (eu-digital-green-certificates/dgc-testdata layout).

Each case is `<CC>/2DCode/raw/<n>.json`: the QR text (PREFIX) and its
intermediate forms, a TESTCTX (the document signer CERTIFICATE, base64 DER,
and the VALIDATIONCLOCK) and EXPECTEDRESULTS, flags saying which steps must
succeed (true) or fail (false); an absent flag is not tested. The text is run
through `tokens.dcc.verify` and each flag compared with the step's outcome;
EXPECTEDPICTUREDECODE reads the case's QR image (`2DCODE`, base64 PNG, else
`<CC>/png/<n>.png`) with the appliance's own decoder. One JSON line per case,
then `N passed, M failed`. Nothing personal is printed: not the payload, not
the UVCI.

known_issues.csv (upstream's list of wrong vectors, found beside or above the
country folders) names a test per country and optionally per case: a row for
one case skips that case (reported as skipped, not counted); a row for a whole
country skips that test's flag in each of its cases.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from firmware.tokens import dcc

# Upstream's test names (known_issues.csv) and the flag each one checks.
_TEST_FLAGS = {
    "test_verification_check": ("EXPECTEDVERIFY",),
    "test_expiration_check": ("EXPECTEDEXPIRATIONCHECK",),
    "test_expected_key_usage": ("EXPECTEDKEYUSAGE",),
    "test_cose_schema": ("EXPECTEDSCHEMAVALIDATION",),
    "test_cose_json": ("EXPECTEDVALIDJSON",),
    "test_cbor_json": ("EXPECTEDVALIDJSON",),
}

# Flags and the verifier step they read.
_STEP_FLAGS = {
    "EXPECTEDUNPREFIX": "unprefix",
    "EXPECTEDB45DECODE": "b45decode",
    "EXPECTEDCOMPRESSION": "compression",
    "EXPECTEDVERIFY": "verify",
    "EXPECTEDDECODE": "decode",
    "EXPECTEDEXPIRATIONCHECK": "expiration",
    "EXPECTEDKEYUSAGE": "keyusage",
}
# Steps whose output a case may give, as hex: the field, also the name of the verifier's stage.
_STEP_OUTPUT = {"EXPECTEDB45DECODE": "COMPRESSED", "EXPECTEDCOMPRESSION": "COSE"}
# Flags evaluated here beyond the steps; any other flag a case sets is listed as not evaluated.
FLAGS = (*_STEP_FLAGS, "EXPECTEDPICTUREDECODE", "EXPECTEDVALIDJSON")


def find_cases(dirs: Iterable[Path]) -> list[Path]:
    """Every `**/2DCode/raw/*.json` under the folders (a DIR may be the root or one country), once each."""
    seen: dict[Path, Path] = {}
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.suffix == ".json" and d.parent.name == "raw":
            found = [d]
        elif d.is_dir():
            found = sorted(d.glob("**/2DCode/raw/*.json"))
        else:
            continue  # LICENSE, SOURCE.md… when given `root/*`
        for f in found:
            seen.setdefault(f.resolve(), f)
    return sorted(seen.values())


def _country_dir(case: Path) -> Path:
    return case.parent.parent.parent  # <CC>/2DCode/raw/<n>.json


def load_known_issues(case: Path, cache: dict) -> list[dict]:
    """The rows of the known_issues.csv nearest above the case's country folder (cached per file)."""
    for parent in list(_country_dir(case).resolve().parents)[:3]:
        path = parent / "known_issues.csv"
        if path in cache:
            return cache[path]
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                cache[path] = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
            return cache[path]
    return []


def known_issue_flags(case: Path, rows: list[dict]) -> tuple[bool, set[str]]:
    """(skip the whole case, flags to skip in it)."""
    country, stem = _country_dir(case).name, case.stem
    whole, flags = False, set()
    for row in rows:
        if row.get("country") != country:
            continue
        test_set = row.get("test_set", "")
        if test_set == stem:
            whole = True
        elif not test_set:
            flags.update(_TEST_FLAGS.get(row.get("test_name", ""), ()))
    return whole, flags


def _hex(value: object) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _certificate(ctx: dict):
    from cryptography import x509

    text = ctx.get("CERTIFICATE")
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        if "BEGIN CERTIFICATE" in text:
            return [x509.load_pem_x509_certificate(text.encode("ascii"))]
        return [x509.load_der_x509_certificate(base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4)))]
    except ValueError:
        return []


def _clock(ctx: dict) -> float | None:
    value = ctx.get("VALIDATIONCLOCK")
    if isinstance(value, str):
        try:
            return dcc.parse_time(value)
        except ValueError:
            return None
    return None


def _plain(obj: object) -> object:
    """CBOR values as JSON would hold them (dates as ISO texts), to compare with the case's JSON."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, date):
        return obj.isoformat()
    return obj


def _picture_text(case: Path, data: dict, decoder_cache: dict) -> list[str] | None:
    """The texts the appliance's decoder reads in the case's QR image; None when the case has no image."""
    import cv2
    import numpy as np

    blob = None
    png = data.get("2DCODE")
    if isinstance(png, str) and png.strip():
        try:
            blob = base64.b64decode(png.strip() + "=" * (-len(png.strip()) % 4))
        except ValueError:
            blob = None
    if blob is None:
        path = _country_dir(case) / "png" / f"{case.stem}.png"
        if not path.is_file():
            return None
        blob = path.read_bytes()
    gray = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return []
    if "zxing" not in decoder_cache:
        from firmware.scanner.decode import DECODERS

        decoder_cache["zxing"] = DECODERS["zxing"]()
    return decoder_cache["zxing"].decode(np.ascontiguousarray(gray))


def run_case(case: Path, rows: list[dict], decoder_cache: dict) -> dict:
    """One case's JSON line (as a dict): each flag's expected and actual outcome; never the payload."""
    line: dict = {"case": str(case)}
    try:
        data = json.loads(case.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        line.update(error=f"unreadable case: {type(exc).__name__}", flags={}, passed=False)
        return line
    ctx = data.get("TESTCTX") or {}
    whole, skipped_flags = known_issue_flags(case, rows)
    if whole:
        line.update(skipped=True, reason="known_issues.csv")
        return line
    expected = {k: v for k, v in (data.get("EXPECTEDRESULTS") or {}).items() if isinstance(v, bool)}
    now = _clock(ctx) if "VALIDATIONCLOCK" in ctx else time.time()  # upstream: no clock, the current time
    if now is None:
        line.update(error="unreadable VALIDATIONCLOCK", flags={}, passed=False)
        return line
    text = data.get("PREFIX")
    result = dcc.verify(text, _certificate(ctx), now)
    flags, not_evaluated = {}, []
    for flag, want in sorted(expected.items()):
        if flag in skipped_flags:
            not_evaluated.append(flag)
            continue
        if flag in _STEP_FLAGS:
            actual = result.steps.get(_STEP_FLAGS[flag]) is True
            # Where the case gives the step's output (hex), ours must be the same bytes.
            field = _STEP_OUTPUT.get(flag)
            if actual and field in data and field.lower() in result.stages:
                actual = _hex(data[field]) == result.stages[field.lower()]
        elif flag == "EXPECTEDPICTUREDECODE":
            texts = _picture_text(case, data, decoder_cache)
            if texts is None:
                not_evaluated.append(flag)
                continue
            actual = isinstance(text, str) and text in texts
        elif flag == "EXPECTEDVALIDJSON":
            if "JSON" not in data:
                not_evaluated.append(flag)
                continue
            actual = result.payload is not None and _plain(result.payload) == _plain(data["JSON"])
        else:
            not_evaluated.append(flag)
            continue
        flags[flag] = {"expected": want, "actual": actual}
    line["description"] = ctx.get("DESCRIPTION")
    line["flags"] = flags
    if not_evaluated:
        line["not_evaluated"] = not_evaluated
    line["reason"] = result.reason.value if result.reason else None
    line["passed"] = all(f["expected"] == f["actual"] for f in flags.values())
    return line


def run(dirs: Iterable[Path], out=None) -> tuple[int, int]:
    """Print each case's line and the summary to `out`; (passed, failed)."""
    out = out or sys.stdout
    passed = failed = 0
    cache: dict = {}
    decoders: dict = {}
    for case in find_cases(dirs):
        line = run_case(case, load_known_issues(case, cache), decoders)
        print(json.dumps(line, ensure_ascii=False), file=out, flush=True)
        if line.get("skipped"):
            continue
        if line["passed"]:
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed", file=out, flush=True)
    return passed, failed


def main(args: argparse.Namespace) -> int:
    _, failed = run(args.dirs)
    return 0 if failed == 0 else 1
