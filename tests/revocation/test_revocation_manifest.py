"""The signed manifest of a DCC revocation list, and a bucket body checked against it (revocation.manifest).

Manifests are built by the lab's builder (lab.revocation.build) and, for every way one can be wrong, signed
here by hand from a payload: the root's signature alone never makes a manifest or a body acceptable.
"""

from __future__ import annotations

import hashlib
import re

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.errors import RevocationError
from firmware.keys import kid_of
from firmware.revocation import manifest as manifests
from firmware.revocation.manifest import EMPTY, MAX_BODY, MAX_KEYS, MAX_MANIFEST
from firmware.tokens import cose, trustlist
from lab import revocation, signers

NOW = 1_750_000_000
ROOT = Ed25519PrivateKey.generate()
TOP = 1 << 63  # the first key of bucket 1 of 2


def signed(payload: object, root: Ed25519PrivateKey = ROOT) -> bytes:
    return cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key()))


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def body(*keys: int) -> bytes:
    return b"".join(k.to_bytes(8, "big") for k in keys)


def payload(**changes) -> dict:
    """A valid payload of two buckets (bits 1): bucket 0 holds keys 1 and 2, bucket 1 is empty."""
    out = {"seq": 3, "issued_at": NOW, "not_after": NOW + 86400, "bits": 1,
           "buckets": [[2, sha(body(1, 2))], [0, EMPTY]]}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def parse(p: object) -> manifests.Manifest:
    return manifests.parse(signed(p), ROOT.public_key())


def entries(n: int, seed: int = 0) -> list[revocation.Entry]:
    rng = np.random.default_rng(seed)
    return [revocation.Entry(revocation.HashType.UCI, rng.bytes(8), rng.bytes(16)) for _ in range(n)]


def test_a_built_list_reads_back_as_signed():
    rl = revocation.build(ROOT, entries(1000), seq=7, issued_at=NOW, valid_days=2)
    m = manifests.parse(rl.manifest, ROOT.public_key())
    assert (m.seq, m.issued_at, m.not_after, m.bits, m.entries) == (7, NOW, NOW + 2 * 86400, 0, 1000)
    assert m.raw == rl.manifest and [b.count for b in m.buckets] == [1000]
    assert set(rl.bodies) == {d.hex() for d in m.wanted} and m.wanted == {m.buckets[0].digest: 0}


def test_the_payload_is_read_by_its_fields():
    m = parse(payload())
    assert m.buckets == (manifests.Bucket(2, sha(body(1, 2))), manifests.Bucket(0, EMPTY))
    assert m.entries == 2 and m.wanted == {sha(body(1, 2)): 0}


def test_keys_go_to_buckets_by_their_top_bits():
    assert parse(payload(bits=0, buckets=[[2, sha(body(1, 2))]])).bucket_of(2**64 - 1) == 0
    m = parse(payload())
    assert (m.bucket_of(TOP - 1), m.bucket_of(TOP)) == (0, 1)
    eight = parse(payload(bits=8, buckets=[[2, sha(body(1, 2))]] + [[0, EMPTY]] * 255))
    assert (eight.bucket_of(0x00FF << 48), eight.bucket_of(0xAB << 56), eight.bucket_of(2**64 - 1)) == (0, 0xAB, 255)


def refusal(data: object) -> str:
    with pytest.raises(RevocationError) as refused:
        manifests.parse(data, ROOT.public_key())
    return str(refused.value)


def test_a_manifest_of_another_root_or_spoilt_is_refused():
    other = Ed25519PrivateKey.generate()
    assert refusal(signed(payload(), other)) == "revocation manifest is signed by a different root key"
    impostor = cose.sign1(cbor2.dumps(payload()), other, kid_of(ROOT.public_key()))
    assert refusal(impostor) == "revocation manifest signature does not verify"
    assert refusal("text") == "revocation manifest is not bytes"
    assert refusal(b"\xa0").startswith("revocation manifest is not a COSE_Sign1 as the root signs them: ")
    good = signed(payload())
    for i in (30, len(good) // 2, len(good) - 1):
        spoilt = bytearray(good)
        spoilt[i] ^= 1
        with pytest.raises(RevocationError):
            manifests.parse(bytes(spoilt), ROOT.public_key())


def test_without_a_root_the_signature_is_not_checked():
    other = Ed25519PrivateKey.generate()
    assert manifests.parse(signed(payload(), other), None).seq == 3


@pytest.mark.parametrize("junk", [b"", b"\xa0", "text", bytearray(signed(payload())), cbor2.dumps(payload())])
def test_what_is_no_signed_manifest_is_refused(junk):
    with pytest.raises(RevocationError):
        manifests.parse(junk, ROOT.public_key())


def test_the_size_is_capped_before_anything_is_read():
    n = MAX_MANIFEST
    while len(raw := signed(payload(pad=b"x" * n))) > MAX_MANIFEST:
        n -= 1
    big = signed(payload(pad=b"x" * (n + 1)))
    assert len(raw) == MAX_MANIFEST and len(big) == MAX_MANIFEST + 1
    with pytest.raises(RevocationError, match="payload"):  # read, and refused for its extra key
        manifests.parse(raw, ROOT.public_key())
    assert refusal(big) == "revocation manifest is larger than 64 KiB"


def test_trust_lists_and_manifests_never_pass_for_each_other():
    tl = signers.build_trust_list(ROOT, [], seq=9, issued_at=NOW)
    with pytest.raises(RevocationError, match="payload"):
        manifests.parse(tl, ROOT.public_key())
    with pytest.raises(Exception, match="payload"):
        trustlist.parse(signed(payload()), ROOT.public_key())


@pytest.mark.parametrize("change, message", [
    (dict(seq=None), "its payload lacks seq"),
    (dict(bits=None, buckets=None), "its payload lacks bits, buckets"),
    (dict(seq=-1), "its seq is of CBOR major type 1, not 0"),
    (dict(seq="3"), "its seq is of CBOR major type 3, not 0"),
    (dict(issued_at=1 << 40), "its issued_at is not a time"),
    (dict(not_after=1.5), "its not_after is of CBOR major type 7, not 0"),
    (dict(bits=-1), "its bits is of CBOR major type 1, not 0"),
    (dict(bits=9, buckets=[[0, EMPTY]] * 512), "its bits is over 8"),
    (dict(buckets=[[0, EMPTY]] * 257), "its buckets holds 257 items, over 256"),
    (dict(buckets={"0": 1}), "its buckets is of CBOR major type 5, not 4"),
    (dict(buckets=["bucket", [0, EMPTY]]), "its bucket is of CBOR major type 3, not 4"),
    (dict(buckets=[[2, sha(body(1, 2)), 0], [0, EMPTY]]), "its bucket holds 3 items, over 2"),
    (dict(buckets=[[2], [0, EMPTY]]), "a bucket is not [count, digest]"),
    (dict(buckets=[["2", sha(body(1, 2))], [0, EMPTY]]), "its bucket count is of CBOR major type 3, not 0"),
    (dict(buckets=[[MAX_KEYS + 1, sha(b"x")], [0, EMPTY]]), "a bucket holds over 131072 keys"),
    (dict(buckets=[[2, sha(body(1, 2)).hex()], [0, EMPTY]]), "its bucket digest is of CBOR major type 3, not 2"),
    (dict(buckets=[[2, sha(body(1, 2))[:31]], [0, EMPTY]]), "a bucket digest is not 32 bytes"),
    (dict(buckets=[[2, sha(body(1, 2))], [0, sha(b"")[::-1]]]),
     "an empty bucket's digest is not that of no bytes, or a body's is"),
    (dict(buckets=[[2, EMPTY], [0, EMPTY]]), "an empty bucket's digest is not that of no bytes, or a body's is"),
    (dict(seq=None, extra=1), "its payload's key is not one it may be"),
    (dict(extra=1), "its payload holds 6 pairs, over 5"),
])
def test_a_payload_out_of_its_schema_is_refused_naming_what(change, message):
    with pytest.raises(RevocationError) as refused:
        parse(payload(**change))
    assert str(refused.value) == f"revocation manifest payload: {message}"


@pytest.mark.parametrize("change, message", [
    (dict(bits=2), "revocation manifest has 2 buckets, not 2^2"),
    (dict(bits=0), "revocation manifest has 2 buckets, not 2^0"),
    (dict(buckets=[[2, sha(body(1, 2))]] * 2), "revocation manifest names one body for two buckets"),
])
def test_a_bucket_layout_out_of_its_bits_is_refused(change, message):
    with pytest.raises(RevocationError) as refused:
        parse(payload(**change))
    assert str(refused.value) == message


def test_a_payload_that_is_no_map_is_refused():
    with pytest.raises(RevocationError) as refused:
        parse([3, NOW])
    assert str(refused.value) == "revocation manifest payload: its payload is of CBOR major type 4, not 5"


def test_a_bucket_count_at_the_cap_is_read():
    assert parse(payload(buckets=[[MAX_KEYS, sha(b"x")], [0, EMPTY]])).entries == MAX_KEYS


def test_a_repeated_key_is_refused():
    raw = cbor2.dumps(payload(buckets=None))
    repeated = b"\xa5" + raw[1:] + cbor2.dumps("seq") + cbor2.dumps(4)  # five pairs, seq twice
    with pytest.raises(RevocationError) as refused:
        manifests.parse(cose.sign1(repeated, ROOT, kid_of(ROOT.public_key())), ROOT.public_key())
    assert str(refused.value) == "revocation manifest payload: its payload repeats a key"


def test_only_the_preferred_serialization_is_read():
    raw = cbor2.dumps(payload())
    wide = raw.replace(cbor2.dumps("seq") + b"\x03", cbor2.dumps("seq") + b"\x18\x03")
    assert wide != raw and cbor2.loads(wide) == payload()
    with pytest.raises(RevocationError, match="preferred"):
        manifests.parse(cose.sign1(wide, ROOT, kid_of(ROOT.public_key())), ROOT.public_key())
    with pytest.raises(RevocationError, match="trailing"):
        manifests.parse(cose.sign1(raw + b"\x00", ROOT, kid_of(ROOT.public_key())), ROOT.public_key())


# --- bodies ----------------------------------------------------------------------------------------


def wanting(*bodies: bytes) -> manifests.Manifest:
    """A manifest whose buckets (bits 1) are these bodies, whatever they hold."""
    return parse(payload(buckets=[[len(b) // 8 or 1, sha(b)] if b else [0, EMPTY] for b in bodies]))


def test_a_wanted_body_gives_its_bucket_and_keys():
    m = wanting(body(1, 2), body(TOP, TOP + 5))
    index, keys = manifests.check_body(m, body(TOP, TOP + 5))
    assert index == 1 and keys.tolist() == [TOP, TOP + 5]


@pytest.mark.parametrize("data, message", [
    (body(2, 1), "revocation body of bucket 0 is not sorted and unique"),
    (body(1, 1), "revocation body of bucket 0 is not sorted and unique"),
    (body(1, 5, 3), "revocation body of bucket 0 is not sorted and unique"),  # above the first, not the last
    (body(1, TOP), "revocation body of bucket 0 holds keys of another bucket"),
    (body(1, 2, TOP), "revocation body of bucket 0 holds keys of another bucket"),  # the last, not the second
])
def test_a_wanted_body_is_refused_unless_sorted_unique_and_in_its_bucket(data, message):
    with pytest.raises(RevocationError) as refused:
        manifests.check_body(wanting(data, b""), data)
    assert str(refused.value) == message


def test_a_body_is_refused_unless_the_manifest_wants_it_as_it_is():
    for data, m, message in (
            (body(1, 3), wanting(body(1, 2), b""), "not a body the revocation manifest wants"),
            (body(1, 2, 3)[:-1], parse(payload(buckets=[[2, sha(body(1, 2, 3)[:-1])], [0, EMPTY]])),
             "revocation body of bucket 0 is not 2 keys"),
            (bytearray(body(1, 2)), wanting(body(1, 2), b""), "a revocation body is not bytes")):
        with pytest.raises(RevocationError) as refused:
            manifests.check_body(m, data)
        assert str(refused.value) == message


def test_a_body_in_bucket_1_must_stay_there():
    m = wanting(b"", body(1, TOP))
    with pytest.raises(RevocationError) as refused:
        manifests.check_body(m, body(1, TOP))
    assert str(refused.value) == "revocation body of bucket 1 holds keys of another bucket"


def test_a_body_over_the_cap_is_refused_before_it_is_hashed(monkeypatch):
    keys = np.arange(1, MAX_KEYS + 1, dtype=np.uint64)
    full = keys.astype(">u8").tobytes()
    assert len(full) == MAX_BODY
    m = parse(payload(bits=0, buckets=[[MAX_KEYS, sha(full)]]))
    assert manifests.check_body(m, full)[1].tolist() == keys.tolist()
    hashed = []
    monkeypatch.setattr(manifests.hashlib, "sha256", lambda data: hashed.append(len(data)) or hashlib.sha256(data))
    with pytest.raises(RevocationError) as refused:
        manifests.check_body(m, full + bytes(8))
    assert str(refused.value) == "a revocation body is larger than 1048576 bytes"
    assert hashed == []
