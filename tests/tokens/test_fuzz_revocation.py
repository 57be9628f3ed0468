"""`qrgate fuzz revocation`: a sample finds nothing, reaches every check and holds every input to 50 ms; and the
oracle is live: a parser or a body check that accepts too much, or raises, is reported."""

from __future__ import annotations

import hashlib

import cbor2
import numpy as np
from fuzz_kit import assert_found_nothing, assert_reaches

from firmware.errors import RevocationError
from firmware.revocation import manifest as manifests
from lab.fuzz import revocation as fuzz_revocation
from lab.fuzz import targets

COUNT = 20_000
VERDICTS = {"accepted_manifest", "accepted_body", "too_large", "not_cose", "other_root", "bad_signature",
            "bad_layout", "bad_payload", "body_too_large", "body_unwanted", "body_unsorted", "body_bucket",
            "body_count"}


def test_a_sample_of_lists_finds_nothing_and_reaches_every_check():
    result = targets.run("revocation", count=COUNT, workers=2, seed=1)
    assert_found_nothing(result, COUNT, fuzz_revocation.MAX_VERIFY_US)
    accepted = result["verdicts"].get("accepted_manifest", 0) + result["verdicts"].get("accepted_body", 0)
    assert_reaches(result, VERDICTS, accepted)


def test_the_model_takes_a_signed_list_and_its_bodies_and_nothing_else():
    w = fuzz_revocation.World(0)
    root = w.root.public_key()
    manifest, bodies, payload = w.lists[3]
    model = fuzz_revocation.model_manifest(manifest, root)
    assert model == payload and len(bodies) == 2
    assert [fuzz_revocation.model_body(model, b)[0] for b in bodies] == [0, 1]
    assert fuzz_revocation.model_manifest(w.sign(cbor2.dumps(payload), w.other), root) is None
    assert fuzz_revocation.model_manifest(w.sign(cbor2.dumps({**payload, "bits": 2})), root) is None
    assert fuzz_revocation.model_manifest(manifest + b"\x00", root) is None
    assert fuzz_revocation.model_body(model, bodies[0][8:] + bodies[0][:8]) is None
    assert fuzz_revocation.model_body(model, bodies[0] + bytes(8)) is None


def test_a_parser_that_skips_the_signature_is_reported():
    lax = lambda data, root: manifests.parse(data, None)  # noqa: E731
    result = targets.run(fuzz_revocation.revocation_target(0, parse=lax), count=3_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["ok"] is False


def test_a_body_check_that_trusts_the_hash_alone_is_reported():
    def hash_only(m, data):
        index = m.wanted.get(hashlib.sha256(data).digest())
        if index is None:
            raise RevocationError("not a body the revocation manifest wants")
        return index, np.frombuffer(data[: len(data) // 8 * 8], ">u8")

    result = targets.run(fuzz_revocation.revocation_target(0, check=hash_only), count=3_000, workers=2, seed=0)
    assert result["false_accepts"] > 0 and result["ok"] is False


def test_a_check_that_raises_is_a_crash(tmp_path):
    def flaky(m, data):
        if len(data) % 8:
            raise IndexError("planted")
        return manifests.check_body(m, data)

    result = targets.run(fuzz_revocation.revocation_target(0, check=flaky), count=2_000, workers=2, seed=0,
                         out=tmp_path)
    assert result["crashes"] > 0 and set(result["crash_types"]) == {"IndexError"} and result["ok"] is False

