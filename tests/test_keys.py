"""Authority key files: what `qrgate authority new` writes is what the library, and OpenSSL, load back; anything
else is a clear error."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization

from firmware import keys
from firmware.errors import KeyFileError
from firmware.store import seal
from lab.signers import new_authority


@pytest.mark.parametrize("suite", [seal.MLKEM768_X25519, seal.X25519])
def test_an_authority_key_file_round_trips_in_its_suite(tmp_path, suite):
    made = new_authority(tmp_path / "a", suite)
    assert stat.S_IMODE((tmp_path / "a" / "authority.key").stat().st_mode) == 0o600
    back = keys.load_authority_private(tmp_path / "a")
    assert back.suite is suite and back.public_key() == made.public_key() == keys.load_authority_public(tmp_path / "a")
    blocks = (tmp_path / "a" / "authority.key").read_bytes().split(b"-----END PRIVATE KEY-----")[:-1]
    assert len(blocks) == (2 if suite is seal.MLKEM768_X25519 else 1)
    for block in blocks:  # each block alone is a standard PKCS#8 key
        serialization.load_pem_private_key(block + b"-----END PRIVATE KEY-----\n", None)


def test_the_hybrid_private_key_is_kept_as_its_seed(tmp_path):
    made = new_authority(tmp_path / "a")
    first = (tmp_path / "a" / "authority.key").read_bytes().split(b"-----END PRIVATE KEY-----")[0]
    mlkem = serialization.load_pem_private_key(first + b"-----END PRIVATE KEY-----\n", None)
    assert mlkem.private_bytes_raw() == made.mlkem.private_bytes_raw() and len(mlkem.private_bytes_raw()) == 64




@pytest.mark.parametrize("spoil, match", [
    (lambda pem: b"", "not a PEM"),
    (lambda pem: pem * 2, "not a PEM"),  # four blocks
    (lambda pem: b"".join(reversed([b + b"-----END PRIVATE KEY-----\n"
                                    for b in pem.split(b"-----END PRIVATE KEY-----\n")[:2]])), "holds a"),
    (lambda pem: pem.replace(b"MFQCAQAw", b"MFQCAQAx", 1), "not a PEM"),
])
def test_a_spoilt_authority_key_file_is_a_clear_error(tmp_path, spoil, match):
    new_authority(tmp_path / "a")
    path = tmp_path / "a" / "authority.key"
    path.write_bytes(spoil(path.read_bytes()))
    with pytest.raises(KeyFileError, match=match):
        keys.load_authority_private(path)


def test_a_root_key_is_not_an_authority_key(tmp_path):
    from lab.signers import new_root

    new_root(tmp_path / "r")
    with pytest.raises(KeyFileError, match="Ed25519PublicKey, not a X25519 authority public key"):
        keys.load_authority_public(tmp_path / "r" / "root.pub")
