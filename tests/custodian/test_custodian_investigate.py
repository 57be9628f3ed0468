"""The investigation: opens one venue's window with the authority's key, audits first, survives bad records;
against either store (`db`: a SQLite file, or a database on a real PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import cbor2
import pytest
from custodian_kit import new_authority
from pg_kit import pg_url, postgres  # noqa: F401  fixtures

from custodian.investigate import investigate, parse_time
from custodian.stores import open_storage
from firmware import cli
from firmware.errors import QrgateError
from firmware.store import records, seal
from firmware.store.records import V1, SealedRecord, Visit
from firmware.store.seal import OpeningKey

T0 = 1_800_000_000


class Db:
    """Where the store is (`where`) and a place with none (`missing`), as `--db` names them."""

    def __init__(self, where, missing):
        self.where, self.missing = where, missing


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> Db:
    if request.param == "sqlite":
        return Db(tmp_path / "c.db", tmp_path / "none.db")
    server = request.getfixturevalue("postgres")
    return Db(request.getfixturevalue("pg_url"), server.new_database(f"none_{os.getpid()}"))


class _Row:
    """A stored row's clear envelope, whatever its wire holds (a row no device could have sent)."""

    def __init__(self, rid, venue, device, ts):
        self.rid, self.venue, self.device, self.ts = rid, venue, device, ts


def _store(tmp_path_or_db, records, extra_rows=()):
    where = tmp_path_or_db.where if isinstance(tmp_path_or_db, Db) else tmp_path_or_db / "c.db"
    storage = open_storage(where)
    storage.add([(r, r.wire()) for r in records], received_at=time.time())
    for rid, venue, device, ts, wire, received_at in extra_rows:
        storage.add([(_Row(rid, venue, device, ts), wire)], received_at=received_at)  # type: ignore[list-item]
    return storage


def test_parse_time_takes_unix_seconds_or_iso_with_an_offset():
    assert parse_time("1800000000") == T0
    assert parse_time("2027-01-15T08:00:00Z") == parse_time("2027-01-15T17:00:00+09:00")
    with pytest.raises(QrgateError, match="no UTC offset"):
        parse_time("2027-01-15T08:00:00")
    with pytest.raises(QrgateError, match="neither"):
        parse_time("yesterday")
    for beyond in ("99999999999999999999", "253402300800", "-62135596801"):  # past SQLite's integers, a calendar's
        with pytest.raises(QrgateError, match="between the years 1 and 9999"):
            parse_time(beyond)


def test_opens_exactly_the_venue_and_window_and_audits_without_token_ids(tmp_path, db):
    authority = new_authority(tmp_path)
    inside = [authority.visit("cafe-1", "door-1", ts=T0 + 10), authority.visit("cafe-1", "door-2", ts=T0 + 20,
                                                                                kind="DCC")]
    outside = [authority.visit("cafe-1", ts=T0 - 1), authority.visit("cafe-1", ts=T0 + 101),
               authority.visit("gym-2", ts=T0 + 10)]
    storage = _store(db, [s for _, s in inside + outside])
    audit = tmp_path / "audit.jsonl"
    found = investigate(storage, [authority.key], "cafe-1", T0, T0 + 100, "dr-kim", "CASE-7", audit, now=T0 + 500)
    assert found.failed == {}
    assert found.visits == [
        {"rid": v.rid.hex(), "device": v.device, "ts": v.ts, "time": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.ts)), "v": 2, "kind": v.kind, "iss": v.iss,
         "cti": v.cti.hex() if v.kind == "KP1" else v.cti} for v, _ in inside]
    assert found.visits[1]["cti"].startswith("URN:UVCI:")  # a DCC's UVCI, as it is
    (line,) = audit.read_text().splitlines()
    entry = json.loads(line)
    assert {k: entry[k] for k in ("investigator", "case", "venue", "opened", "rids", "failed")} == {
        "investigator": "dr-kim", "case": "CASE-7", "venue": "cafe-1", "opened": 2,
        "rids": [v.rid.hex() for v, _ in inside], "failed": {}}
    assert (entry["from"], entry["to"]) == ("2027-01-15T08:00:00Z", "2027-01-15T08:01:40Z")
    assert all(v.cti.hex() not in line if v.kind == "KP1" else v.cti not in line for v, _ in inside)
    investigate(storage, [authority.key], "gym-2", T0, T0 + 100, "dr-kim", "CASE-7", audit)
    assert len(audit.read_text().splitlines()) == 2  # appended, one line per opening


def test_records_that_do_not_open_are_counted_by_reason(tmp_path, db):
    authority = new_authority(tmp_path, seal.X25519)  # an authority of version 1 days, still holding its key
    good = authority.visit(ts=T0)[1]
    relabelled = authority.visit(ts=T0 + 1, version=V1)[1]
    moved = SealedRecord(relabelled.rid, relabelled.venue, relabelled.device, T0 + 2, relabelled.enc_and_ct)
    retimed = dataclasses.replace(authority.visit(ts=T0 + 4)[1], ts=T0 + 5)  # version 2 binds the time too
    bad_rows = [(b"m" * 16, "cafe-1", "door-1", T0 + 3, b"\xffnot cbor", 0.0),
                (moved.rid, moved.venue, moved.device, moved.ts, moved.wire(), 0.0),
                (retimed.rid, retimed.venue, retimed.device, retimed.ts, retimed.wire(), 0.0)]
    storage = _store(db, [good], bad_rows)
    found = investigate(storage, [authority.key], "cafe-1", T0, T0 + 10, "dr-kim", "C", tmp_path / "a.jsonl")
    assert [v["rid"] for v in found.visits] == [good.rid.hex()]
    assert found.failed == {"malformed": 1, "envelope_mismatch": 1, "wrong_key_or_tampered": 1}

    wrong = investigate(storage, [OpeningKey.generate()], "cafe-1", T0, T0 + 10, "dr-kim", "C", tmp_path / "a.jsonl")
    assert wrong.visits == []
    assert wrong.failed == {"key_not_given": 3, "malformed": 1}
    last = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[-1])
    assert (last["opened"], last["rids"], last["failed"]) == (0, [], {"key_not_given": 3, "malformed": 1})
    stranger = OpeningKey.generate(seal.X25519)  # an X25519 key: tried on the version 1 record, and it fails
    assert investigate(storage, [stranger], "cafe-1", T0, T0 + 10, "dr-kim", "C", tmp_path / "a.jsonl").failed == \
        {"key_not_given": 2, "wrong_key_or_tampered": 1, "malformed": 1}


def test_each_record_is_opened_with_the_key_it_names_across_a_rotation(tmp_path, db):
    """Version 1 records to the old X25519 key, version 2 to it, then to the new hybrid key: all open, each with
    its own key, in the window's order; without the old key only the new key's records open."""
    old = new_authority(tmp_path, seal.X25519, "old")
    new = new_authority(tmp_path, seal.MLKEM768_X25519, "new")
    records = [old.visit(ts=T0 + 1, version=V1), old.visit(ts=T0 + 2), new.visit(ts=T0 + 3, kind="DCC"),
               new.visit(ts=T0 + 4)]
    storage = _store(db, [s for _, s in records])
    both = investigate(storage, [new.key, old.key], "cafe-1", T0, T0 + 10, "dr-kim", "C", tmp_path / "a.jsonl")
    assert both.failed == {}
    assert [(v["rid"], v["v"]) for v in both.visits] == [(r.rid.hex(), r.version) for _, r in records]
    assert [v["v"] for v in both.visits] == [1, 2, 2, 2]
    only_new = investigate(storage, [new.key], "cafe-1", T0, T0 + 10, "dr-kim", "C", tmp_path / "a.jsonl")
    assert [v["rid"] for v in only_new.visits] == [r.rid.hex() for _, r in records[2:]]
    assert only_new.failed == {"key_not_given": 2}
    two_x25519 = investigate(storage, [OpeningKey.generate(seal.X25519), old.key], "cafe-1", T0, T0 + 1, "dr-kim",
                             "C", tmp_path / "a.jsonl")  # a version 1 record names no key: each is tried
    assert [v["rid"] for v in two_x25519.visits] == [records[0][1].rid.hex()]


def test_the_command_takes_every_key_the_authority_held(tmp_path, capsys, db):
    old = new_authority(tmp_path, seal.X25519, "old")
    new = new_authority(tmp_path, name="new")
    _store(db, [old.visit(ts=T0 + 1)[1], new.visit(ts=T0 + 2)[1]]).close()
    code, out, _ = _run(capsys, "investigate", "--db", str(db.where), "--key", str(old.dir), "--key",
                        str(new.dir / "authority.key"), "--venue", "cafe-1", "--from", str(T0), "--to", str(T0 + 5),
                        "--investigator", "dr-kim", "--case", "C-1", "--audit-log", str(tmp_path / "audit.jsonl"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[-1]["summary"]["opened"] == 2 and lines[-1]["summary"]["failed"] == {}


def test_an_investigation_without_a_key_is_refused(tmp_path):
    with pytest.raises(QrgateError, match="key"):
        investigate(_store(tmp_path, []), [], "cafe-1", T0, T0, "dr-kim", "C", tmp_path / "a.jsonl")


def test_no_audit_no_disclosure(tmp_path):
    authority = new_authority(tmp_path)
    storage = _store(tmp_path, [authority.visit(ts=T0)[1]])
    with pytest.raises(QrgateError, match="audit log"):
        investigate(storage, [authority.key], "cafe-1", T0, T0, "dr-kim", "C", tmp_path / "no" / "such" / "a.jsonl")


def _run(capsys, *argv):
    code = cli.main(["custodian", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_json_lines_and_refuses_bad_input_clearly(tmp_path, capsys, db):
    authority = new_authority(tmp_path)
    v, sealed = authority.visit(ts=T0 + 5)
    _store(db, [sealed]).close()
    base = ["investigate", "--db", str(db.where), "--key", str(authority.dir / "authority.key"),
            "--venue", "cafe-1", "--investigator", "dr-kim", "--case", "C-1",
            "--audit-log", str(tmp_path / "audit.jsonl")]
    code, out, _ = _run(capsys, *base, "--from", "2027-01-15T08:00:00Z", "--to", str(T0 + 60))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["rid"] for line in lines[:-1]] == [v.rid.hex()]
    assert lines[-1]["summary"]["opened"] == 1

    code, _, err = _run(capsys, *base, "--from", "2027-01-15 08:00", "--to", str(T0))
    assert (code, "no UTC offset" in err) == (2, True)
    code, _, err = _run(capsys, *base, "--from", str(T0 + 10), "--to", str(T0))
    assert (code, "after it ends" in err) == (2, True)
    code, _, err = _run(capsys, *[str(db.missing) if a == str(db.where) else a for a in base], "--from", "0",
                        "--to", "1")
    assert (code, "no custodian database" in err or "no custodian tables" in err) == (2, True)
    code, _, err = _run(capsys, *[a.replace("authority.key", "missing.key") for a in base],
                        "--from", "0", "--to", "1")
    assert (code, "cannot read" in err) == (2, True)
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 1  # refused runs opened nothing


def test_purge_command(tmp_path, capsys, db):
    authority = new_authority(tmp_path)
    now = int(time.time())
    storage = _store(db, [authority.visit(ts=now)[1]])
    storage.add([(r, r.wire()) for r in [authority.visit(ts=now)[1]]], received_at=now - 29 * 86400)
    storage.close()
    code, out, _ = _run(capsys, "purge", "--db", str(db.where))
    assert (code, json.loads(out)) == (0, {"purged": 1, "left": 1, "days": 28})
    code, _, err = _run(capsys, "purge", "--db", str(db.missing))
    assert (code, "no custodian database" in err or "no custodian tables" in err) == (2, True)


def test_cbor_payload_not_a_map_is_bad_plaintext(tmp_path):
    authority = new_authority(tmp_path)
    public = authority.key.public_key()
    clear = SealedRecord(b"r" * 16, "cafe-1", "door-1", T0, b"", public.suite.kem_id, public.kid)
    record = dataclasses.replace(clear, enc_and_ct=public.seal(records.pad(cbor2.dumps([1, 2])), clear.info()))
    storage = _store(tmp_path, [record])
    found = investigate(storage, [authority.key], "cafe-1", T0, T0, "dr-kim", "C", tmp_path / "a.jsonl")
    assert found.failed == {"bad_plaintext": 1}


def test_a_record_whose_issuer_is_bytes_is_bad_plaintext_and_the_audit_counts_what_is_printed(tmp_path, capsys):
    """It used to stop the command after the audit line was written: the audit said 7 opened, 3 were printed."""
    authority = new_authority(tmp_path)
    good = [authority.visit(ts=T0 + i)[1] for i in range(6)]
    iss_bytes = Visit(os.urandom(16), "cafe-1", "door-1", T0 + 3, b"naver", os.urandom(16))
    _store(tmp_path, good + [iss_bytes.seal(authority.key.public_key())]).close()
    audit = tmp_path / "audit.jsonl"
    code, out, _ = _run(capsys, "investigate", "--db", str(tmp_path / "c.db"), "--key", str(authority.dir),
                        "--venue", "cafe-1", "--from", str(T0), "--to", str(T0 + 10), "--investigator", "dr-kim",
                        "--case", "C-1", "--audit-log", str(audit))
    lines = [json.loads(line) for line in out.splitlines()]
    printed, summary = lines[:-1], lines[-1]["summary"]
    (entry,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert code == 0
    assert len(printed) == summary["opened"] == entry["opened"] == 6
    assert summary["failed"] == entry["failed"] == {"bad_plaintext": 1}
    assert [v["rid"] for v in printed] == entry["rids"] == [r.rid.hex() for r in good]
