"""`qrgate fuzz trustlist|ingest`: a sample of each finds nothing, reaches every check, holds every input to
50 ms; and the oracle is live: a parse or an ingest stage that accepts too much, raises, is slow or hangs is
reported as such."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

import cbor2
import pytest
from cryptography.exceptions import InvalidTag

from custodian import investigate
from lab.fuzz import wire as fuzz_wire
from firmware import cli
from lab.fuzz import engine as fuzz
from lab.fuzz import targets
from firmware.store import records, seal, seal_v1
from firmware.store.records import SealedRecord
from firmware.errors import TrustListError
from firmware.tokens import trustlist
from firmware.tokens.trustlist import TrustList

COUNT = 20_000
LIST_VERDICTS = {"accepted", "bad_envelope", "bad_signature", "wrong_root", "bad_payload", "bad_content", "too_large"}


@pytest.fixture(scope="module")
def list_result():
    return targets.run("trustlist", count=COUNT, workers=2, seed=1)


@pytest.fixture(scope="module")
def ingest_result():
    return targets.run("ingest", count=COUNT, workers=2, seed=1)


def assert_clean(result):
    assert result["count"] == COUNT and sum(result["verdicts"].values()) == COUNT
    assert result["crashes"] == 0 and result["crash_types"] == {}  # a hang or a dead worker is listed here
    assert result["false_accepts"] == 0
    assert result["slow_inputs"] == 0 and result["slowest_verify_us"] < fuzz_wire.MAX_VERIFY_US
    assert result["seed_check"]["as_expected"] == result["seed_check"]["seeds"] and result["ok"] is True


# --- the trust list ------------------------------------------------------------------------------


def test_a_sample_of_trust_lists_finds_nothing(list_result):
    assert_clean(list_result)


def test_trust_list_mutants_reach_every_check(list_result):
    verdicts = list_result["verdicts"]
    assert set(verdicts) == LIST_VERDICTS, verdicts
    assert 0 < verdicts["accepted"] == list_result["seed_accepts"]  # seeds that came back as they are
    # what the root signs must reach the schema reader and the keys' and certificates' checks, not die at the envelope
    assert verdicts["bad_payload"] > 0.2 * COUNT and verdicts["bad_content"] > 0.001 * COUNT


def test_the_trust_list_seeds_check_out():
    target = fuzz_wire.trustlist_target(0)
    check = fuzz._check_seeds(target)
    assert check["as_expected"] == check["seeds"] and check["wrong"] == {} and check["valid"] >= 10
    valid = [s.text for s in target.seeds if s.expect == "accepted"]
    sizes = sorted(len(s) for s in valid)
    assert sizes[0] < 200 and sizes[-1] == trustlist.MAX_BYTES  # from the empty list to the cap itself
    assert any(65_536 + 88 <= n < trustlist.MAX_BYTES for n in sizes)  # a payload head of four bytes
    lists = [trustlist.parse(s, target.verify.keywords["root"]) for s in valid]
    assert max(len(tl.issuers) for tl in lists) == trustlist.MAX_ISSUERS
    assert max(len(tl.revoked) for tl in lists) >= trustlist.MAX_REVOKED // 2
    assert max(len(tl.authority) for tl in lists) == trustlist.MAX_AUTHORITY
    assert any(tl.dsc and tl.authority and tl.revoked for tl in lists)
    assert {s.expect for s in target.seeds} == LIST_VERDICTS


def test_the_security_reviews_message_is_a_seed_and_is_refused_at_once():
    """The ~320 KB tag 4 over a huge integer, unsigned, signed by the root, and without an envelope."""
    target = fuzz_wire.trustlist_target(0)
    bombs = [s for s in target.seeds if len(s.text) > 300_000 and s.text.count(b"\xff" * 1000) > 100]
    assert {s.expect for s in bombs} == {"bad_signature", "bad_payload", "bad_envelope"}
    for s in bombs:
        start = time.perf_counter()
        assert fuzz._judge(target)(s.text, target.verify(s.text))[0] == s.expect
        assert time.perf_counter() - start < 0.05


def test_the_world_and_every_mutation_come_from_the_seed():
    a, b = (targets.run("trustlist", count=1_000, workers=2, seed=7) for _ in range(2))
    assert a["verdicts"] == b["verdicts"]
    assert [s.text for s in fuzz_wire.trustlist_target(3).seeds] == [s.text for s in fuzz_wire.trustlist_target(3).seeds]


def test_a_parse_that_accepts_everything_is_reported():
    yes = fuzz_wire.trustlist_target(0, parse=lambda data, root: TrustList(seq=1, issued_at=0, not_after=0, issuers={}))
    result = targets.run(yes, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] == 2_000 and result["ok"] is False
    assert result["seed_check"]["as_expected"] == 0  # valid seeds too: not read as signed


def test_a_parse_that_skips_the_signature_is_reported():
    unchecked = fuzz_wire.trustlist_target(0, parse=lambda data, root: trustlist.parse(data, None))
    result = targets.run(unchecked, count=2_000, workers=2, seed=0)
    assert result["false_accepts"] > 20 and result["crashes"] == 0 and result["ok"] is False


def test_a_parse_that_raises_is_reported_with_its_input_saved_as_hex(tmp_path):
    def flaky(data: bytes, root):
        if len(data) % 7 == 0:
            raise ZeroDivisionError("planted")
        return trustlist.parse(data, root)

    result = targets.run(fuzz_wire.trustlist_target(0, parse=flaky), count=600, workers=2, seed=0, out=tmp_path)
    assert 0 < result["crashes"] < fuzz.MAX_SAVED and set(result["crash_types"]) == {"ZeroDivisionError"}
    saved = [json.loads(p.read_text()) for p in tmp_path.glob("trustlist-crash-*.json")]
    assert len(saved) == result["crashes"]
    for record in saved:
        assert len(bytes.fromhex(record["hex"])) % 7 == 0 and "planted" in record["detail"] and "text" not in record


def test_a_slow_parse_is_a_finding_with_its_verdict(tmp_path):
    def slow(data: bytes, root):
        if len(data) % 50 == 0:
            time.sleep(0.06)  # a parse that takes 60 ms: what the oracle must catch (not synchronisation)
        return trustlist.parse(data, root)

    result = targets.run(fuzz_wire.trustlist_target(0, parse=slow), count=1_000, workers=2, seed=0, out=tmp_path)
    assert result["slow_inputs"] > 0 and result["ok"] is False
    assert result["slowest_verify_us"] >= 60_000 and result["slowest_verdict"] in LIST_VERDICTS
    assert result["crashes"] == 0 and result["false_accepts"] == 0
    assert all(len(bytes.fromhex(json.loads(p.read_text())["hex"])) % 50 == 0
               for p in tmp_path.glob("trustlist-slow-*.json"))


def test_a_parse_that_hangs_is_reported_with_the_input_number():
    parent = os.getpid()

    def stuck(data: bytes, root):
        if os.getpid() != parent and len(data) % 5 == 0:
            threading.Event().wait()  # never returns: the hostile input this harness exists to find
        return trustlist.parse(data, root)

    result = targets.run(fuzz_wire.trustlist_target(0, parse=stuck), count=200, workers=2, seed=0, hang_s=0.5)
    assert result["crashes"] == 2 and all("hung on input" in kind for kind in result["crash_types"])


# --- the trust list: printed cards (issue 23) ----------------------------------------------------


def test_the_trust_list_seeds_sign_card_issuers_and_revoked_cards_at_their_caps_and_spoilt():
    target = fuzz_wire.trustlist_target(0)
    root = target.verify.keywords["root"]
    lists = [trustlist.parse(s.text, root) for s in target.seeds if s.expect == "accepted"]
    days = {i.card_days for tl in lists for i in tl.issuers.values()}
    assert {0, 1, 365, trustlist.MAX_CARD_DAYS} <= days
    assert max(len(tl.card_revoked) for tl in lists) == trustlist.MAX_CARD_REVOKED
    assert any(tl.card_key and not tl.card_revoked for tl in lists)  # a key alone
    assert any(tl.card_revoked and len(tl.issuers) == trustlist.MAX_ISSUERS and len(tl.raw) == trustlist.MAX_BYTES
               for tl in lists)  # the revoked cards in the list at every cap
    refusals = []
    for s in target.seeds:
        if s.expect != "accepted":
            try:
                trustlist.parse(s.text, root)
            except TrustListError as exc:
                refusals.append(str(exc))
    cards = [r for r in refusals if "card" in r]
    assert {"trust list payload: its card_days is not 1-1830", "trust list payload: its card_key is not 16 bytes",
            "trust list payload: its revoked cards are not all 16-byte strings",
            "trust list payload: its card_revoked holds 16385 items, over 16384",
            "trust list payload: its card_revoked comes without a card_key"} <= set(cards), cards


def test_card_fields_broken_and_re_signed_by_the_root_are_never_a_list():
    """The harness's own promise, on which its oracle stands: a payload `_break_cards` spoilt is refused."""
    w, _ = fuzz_wire._list_world(0)
    rng = random.Random(0)
    small = [i for i, e in enumerate(w.encoded) if len(e) < 60_000]
    for _ in range(1_500):
        i = rng.choice(small)
        spoilt = cbor2.dumps(fuzz_wire._break_cards(rng, dict(w.payloads[i]), w))
        with pytest.raises(TrustListError):
            trustlist.parse(fuzz_wire._signed(w.root, w.kid, spoilt), w.root.public_key())


@pytest.mark.parametrize("cap", ["MAX_CARD_DAYS", "MAX_CARD_REVOKED"])
def test_a_parse_that_lets_a_card_field_past_its_cap_is_reported(cap, monkeypatch):
    monkeypatch.setattr(trustlist, cap, 1_000_000)  # the forked workers inherit it
    result = targets.run("trustlist", count=4_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["crashes"] == 0 and result["ok"] is False
    assert result["seed_check"]["wrong"].get("bad_payload->accepted", 0) >= 1


# --- the ingest ----------------------------------------------------------------------------------


def test_a_sample_of_messages_finds_nothing(ingest_result):
    assert_clean(ingest_result)


def test_messages_reach_every_check_and_the_opening(ingest_result):
    """Of both versions: check's every verdict, and the opening's, re-sealed plaintexts the opening refuses among
    them (the version is the label's prefix where the message is a record within the rules)."""
    verdicts = ingest_result["verdicts"]
    checked = {label.split(":")[-1].split("/")[0] for label in verdicts}
    assert checked >= {"accepted", "malformed", "topic_mismatch", "ts_out_of_range", "oversized"}, checked
    for version, reasons in ((1, {"envelope_mismatch"}), (2, {"key_not_given"})):
        opened = {label.split("/")[1] for label in verdicts if label.startswith(f"v{version}:")}
        assert opened >= {"opened", "wrong_key_or_tampered", "bad_plaintext", *reasons}, (version, opened)
        # records the storage takes, and re-sealed plaintexts the opening refuses
        assert verdicts[f"v{version}:accepted/bad_plaintext"] > 0.04 * COUNT, version
        assert verdicts[f"v{version}:accepted/opened"] > 0.002 * COUNT, version
    assert verdicts["v2:accepted/bad_plaintext"] > 0.1 * COUNT


def test_the_ingest_seeds_check_out():
    """Records of both versions, version 2 in both suites, version 1 sealed to each of two X25519 keys."""
    target = fuzz_wire.ingest_target(0)
    check = fuzz._check_seeds(target)
    assert check["as_expected"] == check["seeds"] >= 36 and check["wrong"] == {}
    records = [SealedRecord.from_wire(s.body) for s in target.seeds]
    model = target.judge.keywords["model"]
    assert {r.ts for r in records} >= {model.oldest, model.newest, fuzz.NOW}  # the window's edges
    assert {len(r.venue) for r in records} >= {1, 64}
    assert [s.text[0] for s in target.seeds] == [f"qrgate/v1/{r.venue}/{r.device}/visits" for r in records]
    third = len(records) // 3
    assert Counter((r.version, r.suite) for r in records) == {(1, None): third, (2, 0x647A): third, (2, 0x0020): third}
    keys = target.verify.keywords["key"]
    assert [k.suite.alg for k in keys] == ["MLKEM768-X25519", "X25519", "X25519"]
    assert {r.kid for r in records if r.version == 2} == {k.public_key().kid for k in keys[:2]}
    opened_by = Counter(next(n for n, k in enumerate(keys) if _opens(r, k)) for r in records if r.version == 1)
    assert set(opened_by) == {1, 2}


def _opens(record: SealedRecord, key) -> bool:
    try:
        record.open(key)
    except (ValueError, InvalidTag):  # KeyMismatch, a version 1 record opened with a hybrid key; another key
        return False
    return True


def test_the_same_seed_makes_the_same_keys():
    a, b = (fuzz_wire.ingest_target(3).verify.keywords["key"] for _ in range(2))
    assert [k.public_key() for k in a] == [k.public_key() for k in b]
    assert a[0].public_key() != fuzz_wire.ingest_target(4).verify.keywords["key"][0].public_key()


def test_the_model_takes_only_a_record_as_a_device_writes_it():
    target = fuzz_wire.ingest_target(0)
    model = target.judge.keywords["model"]
    topic, wire = target.seeds[0].text
    fields = cbor2.loads(wire)
    assert fields[0] == 1 and model.why_not(topic, wire) is None
    for ts, ok in ((model.oldest, True), (model.oldest - 1, False), (model.newest, True), (model.newest + 1, False),
                   (2**63, False), (2**64 - 1, False)):
        assert (model.why_not(topic, cbor2.dumps([*fields[:4], ts, fields[5]])) is None) is ok, ts
    for bad_topic in (topic + "/", topic.replace("qrgate", "QRGATE"), topic.replace("visits", "status"),
                      topic.replace("/v1/", "/v2/"), "x/y/" + "/".join(topic.split("/")[2:4]) + "/z"):
        assert model.why_not(bad_topic, wire) is not None, bad_topic
    assert model.why_not(topic, b"\x86\x18\x01" + wire[2:]) is not None  # a version head one size wide
    assert model.why_not(topic, wire + b"\x00") is not None
    assert model.why_not(topic, cbor2.dumps([2, *fields[1:]])) is not None  # version 2 without suite and kid


def test_the_model_takes_a_version_2_record_only_within_its_rules():
    target = fuzz_wire.ingest_target(0)
    model = target.judge.keywords["model"]
    topic, wire = next(s.text for s in target.seeds if s.body[1] == 2)
    version, rid, venue, device, ts, suite, kid, sealed = cbor2.loads(wire)
    assert model.why_not(topic, wire) is None
    # the other suite and an 8-byte kid of no key: check may take them (only the opening knows the keys)
    other = {0x647A: 0x0020, 0x0020: 0x647A}[suite]
    assert model.why_not(topic, cbor2.dumps([2, rid, venue, device, ts, other, bytes(8), sealed])) is None
    for bad in ([1, rid, venue, device, ts, suite, kid, sealed], [3, rid, venue, device, ts, suite, kid, sealed],
                [2, rid, venue, device, ts, 0x0021, kid, sealed], [2, rid, venue, device, ts, -suite, kid, sealed],
                [2, rid, venue, device, ts, str(suite), kid, sealed],
                [2, rid, venue, device, ts, suite, kid[:7], sealed],
                [2, rid, venue, device, ts, suite, kid + b"\x00", sealed],
                [2, rid, venue, device, ts, suite, kid.hex(), sealed],
                [2, rid, venue, device, ts, kid, suite, sealed], [2, rid, venue, device, ts, suite, kid],
                [2, rid, venue, device, ts, suite, kid, sealed, b""]):
        assert model.why_not(topic, cbor2.dumps(bad)) is not None, bad
    parts = [cbor2.dumps(f) for f in (version, rid, venue, device, ts, suite, kid, sealed)]
    parts[5] = fuzz_wire._widen(parts[5])
    assert model.why_not(topic, b"\x88" + b"".join(parts)) is not None  # the suite's head one size wide


VISIT = {"v": 1, "rid": bytes(16), "venue": "v", "device": "d", "ts": 1, "iss": "naver", "cti": bytes(16),
         "kind": "KP1"}
SECRET = {"iss": "naver", "cti": bytes(16), "kind": "KP1"}


def test_the_model_remembers_only_valid_plaintexts():
    model = fuzz_wire.ingest_target(0).judge.keywords["model"]
    before = len(model.sealed)
    visit = VISIT
    for bad in ({**visit, "iss": b"naver"}, {**visit, "ts": 1.0}, {**visit, "kind": "DCC"}, {**visit, "v": True},
                {k: v for k, v in visit.items() if k != "cti"}, {**visit, "x": 0}, SECRET):
        model.note(cbor2.dumps(bad), bad)
    model.note(cbor2.dumps(visit) + b"\x00", visit)
    model.note(records.pad(cbor2.dumps(SECRET)), SECRET)  # version 2's plaintext, sealed as version 1's
    assert len(model.sealed) == before
    model.note(cbor2.dumps(visit), visit)
    assert len(model.sealed) == before + 1


def test_the_model_remembers_only_version_2_plaintexts_padded_as_a_device_pads_them():
    model = fuzz_wire.ingest_target(0).judge.keywords["model"]
    before, info = len(model.sealed), records.INFO_V2 + b"\x80"
    body = cbor2.dumps(SECRET)
    padded = records.pad(body)
    for bad in (padded[:-1], padded + bytes(records.PAD), padded[:-1] + b"\x01", body, padded[2:] + b"\x00\x00",
                b"\x00\x00" + padded[2:], b"\xff\xff" + padded[2:], (len(body) + 1).to_bytes(2, "big") + padded[2:]):
        model.note(bad, SECRET, info)
    for p in ({**SECRET, "iss": b"naver"}, {**SECRET, "v": 2}, {**SECRET, "kind": "DCC"}, VISIT):
        model.note(records.pad(cbor2.dumps(p)), p, info)
    assert len(model.sealed) == before
    model.note(padded, SECRET, info)
    long = {"iss": "i" * 64, "cti": "U" * 256, "kind": "DCC"}
    model.note(records.pad(cbor2.dumps(long)), long, info)
    assert len(model.sealed) == before + 2
    assert len(records.pad(cbor2.dumps(long))) == 2 * records.PAD  # the seeds' longest takes a second pad


def the_check_before_the_window(topic: str, payload: bytes, received_at: float):
    """check() as it was before issue 15: any ts, the topic compared by two levels."""
    try:
        record = SealedRecord.from_wire(payload)
    except ValueError:
        return "malformed"
    levels = topic.split("/")
    return record if len(levels) == 5 and (levels[2], levels[3]) == (record.venue, record.device) else "topic_mismatch"


def test_the_poison_pill_is_a_crash_in_the_storage_and_a_false_accept():
    result = targets.run(fuzz_wire.ingest_target(0, check=the_check_before_the_window), count=2_000, workers=2, seed=0)
    assert result["crash_types"].get("OverflowError", 0) > 0  # ts >= 2**63: SQLite cannot hold it
    assert result["false_accepts"] > 0 and result["ok"] is False  # a ts outside the window, stored


def _unchecked(version: int):
    """An opening that reads the plaintext of records of `version` without checking it (version 2's padding is
    still undone by records.unpad) and hands the other version to investigate._open."""

    def opener(wire: bytes, keys):
        try:
            record = SealedRecord.from_wire(wire)
            if record.version != version:
                return investigate._open(wire, keys)
            if version == 1:
                plain = cbor2.loads(seal_v1.open_sealed(record.enc_and_ct, keys[1].x25519,
                                                        seal_v1.aad_for(record.rid, record.venue, record.device)))
            else:
                key = next(k for k in keys if k.public_key().kid == record.kid)
                plain = cbor2.loads(records.unpad(key.open(record.enc_and_ct, record.info())))
        except Exception:  # noqa: BLE001
            return "did_not_open"
        cti = plain.get("cti") if isinstance(plain, dict) else None
        return {"rid": record.rid.hex(), "device": record.device, "ts": record.ts, "time": "", "v": version,
                "kind": str(plain.get("kind")) if isinstance(plain, dict) else "",
                "iss": plain.get("iss") if isinstance(plain, dict) else "",  # bytes, when the plaintext says so
                "cti": cti.hex() if isinstance(cti, bytes) else str(cti)}

    return opener


@pytest.mark.parametrize("version", [1, 2])
def test_an_opening_that_does_not_check_the_plaintext_is_reported(version, tmp_path):
    result = targets.run(fuzz_wire.ingest_target(0, opener=_unchecked(version)), count=2_000, workers=2, seed=0,
                         out=tmp_path)
    assert result["false_accepts"] > 40 and result["crashes"] == 0 and result["ok"] is False
    assert {_version_of(p) for p in tmp_path.glob("ingest-false_accept-*.json")} == {version}


def _version_of(finding) -> int:
    """The version of the record a saved finding carries."""
    return cbor2.loads(bytes.fromhex(json.loads(finding.read_text())["parts"][1]["hex"]))[0]


def test_an_opening_that_skips_the_padding_check_is_reported(monkeypatch, tmp_path):
    """unpad taking the length's word for it: a tail not zero, a plaintext not of whole pads, must be findings."""
    monkeypatch.setattr(records, "unpad", lambda padded: padded[2:2 + int.from_bytes(padded[:2], "big")])
    result = targets.run(fuzz_wire.ingest_target(0), count=2_000, workers=2, seed=0, out=tmp_path)
    assert result["false_accepts"] > 10 and result["crashes"] == 0 and result["ok"] is False
    findings = [json.loads(p.read_text()) for p in tmp_path.glob("ingest-false_accept-*.json")]
    assert {_version_of(p) for p in tmp_path.glob("ingest-false_accept-*.json")} == {2}
    assert {f["detail"] for f in findings} == {"_open opened a plaintext the harness never sealed as a valid visit "
                                               "(v2: under its info)"}


def test_an_opening_that_picks_the_key_by_kid_alone_is_a_crash(monkeypatch):
    """A record naming one key's kid under the other suite then reaches SealedRecord.open's own check, whose
    KeyMismatch _open does not catch: the suite mutants reach the choice of the key."""
    monkeypatch.setattr(investigate, "_candidates", lambda record, keys: [
        k for k in keys if (k.suite is seal.X25519 if record.version == 1 else k.public_key().kid == record.kid)])
    result = targets.run(fuzz_wire.ingest_target(0), count=2_000, workers=2, seed=0)
    assert set(result["crash_types"]) == {"KeyMismatch"} and result["false_accepts"] == 0 and result["ok"] is False


def test_an_opening_that_raises_on_a_bad_plaintext_is_a_crash():
    def raising(wire: bytes, key):
        opened = investigate._open(wire, key)
        if opened == "bad_plaintext":
            raise TypeError("planted: a record whose iss is bytes")
        return opened

    result = targets.run(fuzz_wire.ingest_target(0, opener=raising), count=1_000, workers=2, seed=0)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"TypeError"} and result["ok"] is False


def test_a_storage_that_refuses_a_record_is_a_crash():
    from custodian.storage import SqliteStorage

    class Refusing(SqliteStorage):
        def add(self, records, received_at):
            if any(r.venue == "x" for r, _ in records):
                raise OverflowError("planted: SQLite refusing a value")
            return super().add(records, received_at)

    result = targets.run(fuzz_wire.ingest_target(0, storage=lambda: Refusing(":memory:")), count=1_000, workers=2,
                      seed=0)
    assert result["crash_types"].get("OverflowError", 0) > 0 and result["ok"] is False
    assert result["seed_check"]["as_expected"] < result["seed_check"]["seeds"]  # the seeds of venue x


def test_a_slow_check_is_a_finding():
    from custodian import ingest

    def slow(topic: str, payload: bytes, received_at: float):
        if len(payload) % 40 == 0:
            time.sleep(0.06)  # a check that takes 60 ms: what the oracle must catch (not synchronisation)
        return ingest.check(topic, payload, received_at)

    result = targets.run(fuzz_wire.ingest_target(0, check=slow), count=1_000, workers=2, seed=0)
    assert result["slow_inputs"] > 0 and result["slowest_verify_us"] >= 60_000 and result["ok"] is False


def test_a_check_that_hangs_is_reported_with_the_input_number():
    from custodian import ingest

    parent = os.getpid()

    def stuck(topic: str, payload: bytes, received_at: float):
        if os.getpid() != parent and len(payload) % 5 == 0:
            threading.Event().wait()
        return ingest.check(topic, payload, received_at)

    result = targets.run(fuzz_wire.ingest_target(0, check=stuck), count=200, workers=2, seed=0, hang_s=0.5)
    assert result["crashes"] == 2 and all("hung on input" in kind for kind in result["crash_types"])


def test_a_finding_keeps_its_topic_and_payload(tmp_path):
    def flaky(topic: str, payload: bytes, received_at: float):
        raise ZeroDivisionError("planted")

    targets.run(fuzz_wire.ingest_target(0, check=flaky), count=50, workers=1, seed=0, out=tmp_path)
    record = json.loads(next(tmp_path.glob("ingest-crash-*.json")).read_text())
    topic, payload = record["parts"]
    assert topic["text"].encode("utf-8", "surrogatepass").hex() == topic["hex"] and bytes.fromhex(payload["hex"])


def test_the_results_hold_no_input(list_result, ingest_result):
    for result in (list_result, ingest_result):
        text = json.dumps(result)
        assert len(text) < 4_000 and "qrgate/v1/" not in text and '"hex"' not in text


def test_the_command_takes_the_wire_targets(capsys):
    parser = cli.build_parser()
    for name in ("trustlist", "ingest"):
        args = parser.parse_args(["fuzz", name, "--count", "200", "--workers", "1", "--seed", "3"])
        code = args.func(args)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1
        result = json.loads(lines[0])
        assert result["target"] == name and result["count"] == 200 and code == (0 if result["ok"] else 1)
