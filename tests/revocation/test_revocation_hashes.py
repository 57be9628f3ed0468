"""The EU's three revocation hashes of a verified DCC and the device's lookup keys (revocation.hashes).

Each hash is checked against its definition written out here (SHA-256, first 16 bytes) on a certificate
whose entry's country differs from its CWT issuer, so that the country the COUNTRYCODEUCI takes is seen.
"""

from __future__ import annotations

import hashlib

import pytest

from firmware.revocation import hashes
from firmware.revocation.hashes import HashType
from firmware.tokens import dcc
from lab import dcc_issuer

NOW = 1_750_000_000
UVCI = "URN:UVCI:01:KR:QRGATE0HASHES0TEST"


def sha128(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


@pytest.fixture(scope="module")
def signer():
    return dcc_issuer.make_signer("KR", not_before=NOW - 86400)


@pytest.fixture(scope="module")
def result(signer):
    """A genuine vaccination signed in KR (the CWT's iss) whose entry names DE as the country of vaccination."""
    text = dcc_issuer.mint(signer, NOW, uvci=UVCI, co="DE")
    found = dcc.verify(text, [signer.cert], NOW)
    assert found.ok and found.iss == "KR" and found.payload["v"][0]["co"] == "DE"
    return found


def test_uci_is_of_the_uvci_and_countrycodeuci_of_the_cwt_issuer_then_the_uvci(result):
    found = hashes.eu_hashes(result.uvci, result.iss, result.alg, result.signature)
    assert found[HashType.UCI] == sha128(UVCI.encode())
    assert found[HashType.COUNTRYCODEUCI] == sha128(b"KR" + UVCI.encode())  # the issuer, not the entry's DE
    assert found[HashType.COUNTRYCODEUCI] != sha128(b"DE" + UVCI.encode())


def test_signature_of_es256_is_of_its_first_half_only(result):
    found = hashes.eu_hashes(result.uvci, result.iss, result.alg, result.signature)
    assert found[HashType.SIGNATURE] == sha128(result.signature[:32])
    assert found[HashType.SIGNATURE] != sha128(result.signature)


def test_signature_of_ps256_is_of_all_of_it():
    signature = bytes(range(256))
    found = hashes.eu_hashes(None, None, dcc.ALG_PS256, signature)
    assert found == {HashType.SIGNATURE: sha128(signature)}


def test_what_a_certificate_lacks_gives_no_hash():
    assert hashes.eu_hashes(None, "KR", None, None) == {}
    assert set(hashes.eu_hashes(UVCI, None, -8, bytes(64))) == {HashType.UCI, HashType.COUNTRYCODEUCI}


def test_no_issuer_counts_as_empty_as_the_eu_core_library_has_it():
    found = hashes.eu_hashes(UVCI, None, None, None)
    assert found[HashType.COUNTRYCODEUCI] == found[HashType.UCI] == sha128(UVCI.encode())


def test_a_uvci_is_hashed_as_utf_8():
    uvci = "URN:UVCI:01:DE:ÄÖÜ#1"
    assert hashes.eu_hashes(uvci, "DE", None, None)[HashType.COUNTRYCODEUCI] == sha128(("DE" + uvci).encode("utf-8"))


def test_a_key_is_the_first_8_bytes_of_sha256_of_type_kid_and_hash():
    kid, digest = bytes.fromhex("c8b1cb36f4a5e36f"), bytes(range(16))
    for kind, code in ((HashType.UCI, 1), (HashType.COUNTRYCODEUCI, 2), (HashType.SIGNATURE, 3)):
        want = int.from_bytes(hashlib.sha256(bytes((code,)) + kid + digest).digest()[:8], "big")
        assert hashes.key(kind, kid, digest) == want
    assert len({hashes.key(kind, kid, digest) for kind in HashType}) == 3


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_a_key_takes_only_a_16_byte_hash(size):
    with pytest.raises(ValueError, match="16 bytes"):
        hashes.key(HashType.UCI, b"kid", bytes(size))


def test_a_verified_certificate_has_a_key_per_hash_under_its_signers_kid(result, signer):
    found = hashes.eu_hashes(result.uvci, result.iss, result.alg, result.signature)
    assert hashes.keys_of(result) == [hashes.key(kind, signer.kid, digest) for kind, digest in found.items()]
    assert len(set(hashes.keys_of(result))) == 3


def test_a_certificate_not_verified_has_no_key(signer):
    text = dcc_issuer.mint(signer, NOW, uvci=UVCI)
    unverified = dcc.verify(text, [], NOW)
    assert unverified.reason is dcc.Reason.UNKNOWN_SIGNER and hashes.keys_of(unverified) == []
