"""The investigation step, for the health authority only: open the visits of one venue and window.

Only the authority's private keys open a record; the custodian's store and
ingest never hold them. The authority gives every key it has held: a record of
version 2 names its key (its kid) and is opened with that one, a record of
version 1 names none and is tried with each X25519 key. Every opening is written to an append-only audit
log (who, when, which venue and window, which case, how many records, their
rids; never a token id) and fsynced BEFORE any opened visit is handed out:
an opening that could not be audited does not happen.

A record that does not open (wrong key, tampered, relabelled, malformed) is
counted by reason; it never stops the others.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from collections.abc import Sequence

from cryptography.exceptions import InvalidTag

from custodian.storage import Storage
from firmware.errors import QrgateError
from firmware.store import seal
from firmware.store.records import V1, EnvelopeMismatch, PlaintextError, SealedRecord
from firmware.store.seal import OpeningKey
from firmware.utc import iso


@dataclass
class Findings:
    visits: list[dict] = field(default_factory=list)
    failed: Counter = field(default_factory=Counter)  # reason -> how many records did not open


def parse_time(text: str) -> int:
    """Unix seconds, or an ISO 8601 time with a UTC offset (`Z` or `+09:00`); a bare local time is ambiguous."""
    try:
        seconds = int(float(text))
    except (ValueError, OverflowError):  # OverflowError: "1e999", an infinity
        seconds = None
    if seconds is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise QrgateError(f"{text!r} is neither Unix seconds nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise QrgateError(f"{text!r} has no UTC offset: write it as e.g. {text}Z or {text}+09:00")
        seconds = int(moment.timestamp())
    try:
        iso(seconds)  # the audit log writes it so; the database holds nothing a calendar does not
    except (OverflowError, ValueError, OSError):
        raise QrgateError(f"{text!r} is not a time between the years 1 and 9999") from None
    return seconds


def _token_id(cti) -> str:
    """A KP1 token id or a KC1 card id is 16 bytes (hex); a DCC's is its UVCI, already text."""
    return cti.hex() if isinstance(cti, bytes) else str(cti)


def _candidates(record: SealedRecord, keys: Sequence[OpeningKey]) -> list[OpeningKey]:
    if record.version == V1:
        return [k for k in keys if k.suite is seal.X25519]
    return [k for k in keys if (k.suite.kem_id, k.public_key().kid) == (record.suite, record.kid)]


def _open_with(record: SealedRecord, candidates: list[OpeningKey]) -> dict:
    """The first key that opens it (a version 1 record may need several); raises the last one's InvalidTag."""
    for key in candidates[:-1]:
        with contextlib.suppress(InvalidTag):
            return record.open(key)
    return record.open(candidates[-1])


def _open(wire: bytes, keys: Sequence[OpeningKey]) -> dict | str:
    """The visit as printed, or the reason it did not open."""
    try:
        record = SealedRecord.from_wire(wire)
    except ValueError:
        return "malformed"
    candidates = _candidates(record, keys)
    if not candidates:
        return "key_not_given"
    try:
        plain = _open_with(record, candidates)
    except InvalidTag:
        return "wrong_key_or_tampered"
    except PlaintextError:
        return "bad_plaintext"
    except EnvelopeMismatch:
        return "envelope_mismatch"
    try:
        when = iso(record.ts)
    except (OverflowError, ValueError, OSError):  # a time no calendar holds: the device's word is no good
        return "bad_plaintext"
    return {"rid": record.rid.hex(), "device": record.device, "ts": record.ts, "time": when, "v": record.version,
            "kind": plain["kind"], "iss": plain["iss"], "cti": _token_id(plain["cti"])}


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (some containers)
        return str(os.getuid())


def append_audit(path: Path, entry: dict) -> None:
    """One JSON line, appended (O_APPEND) and fsynced; a new file's folder entry is fsynced too."""
    path = Path(path)
    created = not path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise QrgateError(f"cannot write the audit log {path}: {exc.strerror}; nothing was disclosed") from None


def investigate(storage: Storage, keys: Sequence[OpeningKey], venue: str, start_ts: int, end_ts: int,
                investigator: str, case: str, audit_log: Path, now: float | None = None) -> Findings:
    """Open the records of `venue` with start_ts <= ts <= end_ts; audited before returned."""
    if not investigator.strip() or not case.strip():
        raise QrgateError("an investigation names its investigator and its case")
    if not keys:
        raise QrgateError("an investigation needs the authority's key, or every key it has held")
    if start_ts > end_ts:
        raise QrgateError(f"the window starts ({iso(start_ts)}) after it ends ({iso(end_ts)})")
    findings = Findings()
    for row in storage.between(venue, start_ts, end_ts):
        opened = _open(row.wire, keys)
        if isinstance(opened, str):
            findings.failed[opened] += 1
        else:
            findings.visits.append(opened)
    append_audit(audit_log, {
        "at": iso(time.time() if now is None else now),
        "investigator": investigator,
        "os_user": _os_user(),
        "case": case,
        "venue": venue,
        "from": iso(start_ts),
        "to": iso(end_ts),
        "opened": len(findings.visits),
        "failed": dict(findings.failed),
        "rids": [v["rid"] for v in findings.visits],
    })
    return findings
