"""A bucket body on the card, opened for lookups (revocation.index): checked as it is opened, and every key
found by one page read, across page edges and against runs of bytes that straddle two keys."""

from __future__ import annotations

import hashlib
import os

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.errors import RevocationError
from firmware.keys import kid_of
from firmware.revocation import index, manifest as manifests
from firmware.revocation.index import PER_PAGE, Body, open_body
from firmware.revocation.manifest import EMPTY
from firmware.tokens import cose

ROOT = Ed25519PrivateKey.generate()


def manifest_of(*bodies: bytes, bits: int = 0) -> manifests.Manifest:
    buckets = [[len(b) // 8, hashlib.sha256(b).digest()] if b else [0, EMPTY] for b in bodies]
    payload = {"seq": 1, "issued_at": 1, "not_after": 2, "bits": bits, "buckets": buckets}
    return manifests.parse(cose.sign1(cbor2.dumps(payload), ROOT, kid_of(ROOT.public_key())), ROOT.public_key())


def data_of(keys) -> bytes:
    return np.asarray(keys, dtype=np.uint64).astype(">u8").tobytes()


@pytest.fixture
def keys() -> list[int]:
    """2.5 pages of even keys: every odd number between them is absent."""
    return [2 * (i + 1) * 1_000_003 for i in range(PER_PAGE * 5 // 2)]


@pytest.fixture
def body(tmp_path, keys) -> Body:
    data = data_of(keys)
    (tmp_path / "b").write_bytes(data)
    return open_body(tmp_path / "b", manifest_of(data))


def test_every_key_is_found_and_nothing_between(body, keys):
    assert body.count == len(keys) and body.bucket == 0 and body.bits == 0
    assert all(k in body for k in keys)
    assert not any(k + 1 in body for k in keys)
    assert 0 not in body and keys[0] - 1 not in body and 2**64 - 1 not in body


def test_the_keys_at_each_page_edge_are_found(body, keys):
    for edge in (PER_PAGE, 2 * PER_PAGE):
        assert keys[edge - 1] in body and keys[edge] in body
        assert keys[edge - 1] + 1 not in body and keys[edge] - 1 not in body


def found(tmp_path, keys: list[int], key: int) -> bool:
    """Is `key` found in a body of exactly `keys` (checked: sorted, unique), whose page holds its bytes?"""
    data = data_of(keys)
    assert key.to_bytes(8, "big") in data
    (tmp_path / "b").write_bytes(data)
    return key in open_body(tmp_path / "b", manifest_of(data))


def test_a_run_of_bytes_straddling_two_keys_is_no_key(tmp_path):
    x, y = 0x00AAAAAAAABBBBBB, 0x0500000000000000
    k = 0xAAAAAAAABBBBBB05  # x's last seven bytes and y's first: in the page at offset 1
    assert not found(tmp_path, [x, y], k)
    assert found(tmp_path, [x, y, k], k)  # and at offset 16, where it is a key


def test_a_key_is_found_between_runs_of_its_bytes_that_are_no_key(tmp_path):
    """Its bytes straddle two keys before it (offset 1) and two after it (offset 31): the first match is not
    the key, nor is the last."""
    k = 0xAAAAAAAABBBBBB05
    x2, y2 = 0xAAAAAAAB000000AA, 0xAAAAAABBBBBB0500  # x2's last byte and y2's first seven
    assert found(tmp_path, [0x00AAAAAAAABBBBBB, 0x0500000000000000, k, x2, y2], k)
    assert not found(tmp_path, [0x00AAAAAAAABBBBBB, 0x0500000000000000, x2, y2], k)


def test_a_key_is_found_one_byte_after_a_run_of_its_bytes(tmp_path):
    k = 0xCCCCCCCCCCCCCCCC  # the byte before it is CC too: its bytes start at offset 7 and at 8
    assert found(tmp_path, [0xCC, k], k)
    assert not found(tmp_path, [0xCC, 0xCCCCCCCCCCCCCC00], k)


def test_a_key_whose_bytes_come_again_after_it_is_found(tmp_path):
    k = 0x01223344556677FF  # at offset 0, and at 9: x's last seven bytes and y's first
    assert found(tmp_path, [k, 0x0201223344556677, 0xFF00000000000000], k)


def test_one_page_is_read_a_lookup(body, keys, monkeypatch):
    reads = []
    real = os.pread
    monkeypatch.setattr(index.os, "pread", lambda fd, n, at: reads.append((n, at)) or real(fd, n, at))
    assert keys[PER_PAGE * 2 + 3] in body and keys[5] + 1 not in body
    assert reads == [(4096, 2 * 4096), (4096, 0)]
    reads.clear()
    assert keys[0] - 1 not in body and reads == []  # below the first key: no page can hold it


def test_a_body_is_checked_as_it_is_opened(tmp_path, keys):
    data = data_of(keys)
    m = manifest_of(data)
    (tmp_path / "b").write_bytes(data[:-8] + data[-16:-8])
    with pytest.raises(RevocationError, match="wants"):
        open_body(tmp_path / "b", m)
    with pytest.raises(RevocationError, match=r"revocation body nothere: No such file"):
        open_body(tmp_path / "nothere", m)
    (tmp_path / "real").write_bytes(data)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(RevocationError, match="link"):
        open_body(tmp_path / "link", m)
    with pytest.raises(RevocationError, match="larger than"):
        (tmp_path / "big").write_bytes(bytes(manifests.MAX_BODY + 1))
        open_body(tmp_path / "big", m)


def test_a_refused_body_leaves_no_file_open(tmp_path, keys):
    data = data_of(keys)
    (tmp_path / "b").write_bytes(data + bytes(8))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(RevocationError):
            Body(tmp_path / "b", manifest_of(data))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_body_keeps_the_file_it_checked(tmp_path, keys):
    data = data_of(keys)
    (tmp_path / "b").write_bytes(data)
    body = open_body(tmp_path / "b", manifest_of(data))
    os.replace(tmp_path / "b", tmp_path / "gone")
    (tmp_path / "b").write_bytes(data_of([k + 1 for k in keys]))
    assert keys[7] in body and keys[7] + 1 not in body
    before = len(os.listdir("/proc/self/fd"))
    body.close()
    assert len(os.listdir("/proc/self/fd")) == before - 1
    del body
    assert len(os.listdir("/proc/self/fd")) == before - 1  # closed once


def test_a_body_let_go_closes_its_file(tmp_path, keys):
    data = data_of(keys)
    (tmp_path / "b").write_bytes(data)
    before = len(os.listdir("/proc/self/fd"))
    body = open_body(tmp_path / "b", manifest_of(data))
    assert len(os.listdir("/proc/self/fd")) == before + 1
    del body
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_body_fits_a_manifest_that_says_the_same_of_it(tmp_path):
    low, high = data_of([1, 2]), data_of([1 << 63, (1 << 63) + 1])
    (tmp_path / "b").write_bytes(high)
    m = manifest_of(low, high, bits=1)
    body = open_body(tmp_path / "b", m)
    assert body.bucket == 1 and body.fits(m, 1) and not body.fits(m, 0)
    assert not body.fits(manifest_of(high, low, bits=1), 1)  # its bytes are bucket 0's there
    assert not body.fits(manifest_of(b"", high, b"", b"", bits=2), 1)  # the same bytes, another layout
    digest = hashlib.sha256(high).digest()
    payload = {"seq": 1, "issued_at": 1, "not_after": 2, "bits": 1, "buckets": [[0, EMPTY], [3, digest]]}
    miscounted = manifests.parse(cose.sign1(cbor2.dumps(payload), ROOT, kid_of(ROOT.public_key())), None)
    assert not body.fits(miscounted, 1)  # the same bytes, said to be three keys
