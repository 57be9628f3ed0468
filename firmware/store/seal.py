"""HPKE seal of visit records to the health authority's X25519 key (RFC 9180 base mode).

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (the Pi 4 has
no AES instructions). The device only ever holds the public key: nothing here
can open what it seals. `open_sealed` is for the authority's side and tests.

cryptography's public `Suite.encrypt` takes no associated data; the aad-taking
single-shot functions beside it are used: private, present from cryptography 48
on, checked against 51.0.1 (the lock's). pyproject.toml bounds the version below
the next major, which must be checked again (tests/store/test_seal.py).
"""

from __future__ import annotations

from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

INFO = b"qrgate visit v1"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_encrypt_with_aad = _rust_openssl.hpke._encrypt_with_aad
_decrypt_with_aad = _rust_openssl.hpke._decrypt_with_aad


def aad_for(rid: bytes, venue: str, device: str) -> bytes:
    """rid ‖ venue ‖ device: binds the ciphertext to its clear envelope."""
    return rid + venue.encode("utf-8") + device.encode("utf-8")


def seal(plaintext: bytes, authority: X25519PublicKey, aad: bytes) -> bytes:
    """Returns enc ‖ ct."""
    return _encrypt_with_aad(SUITE, plaintext, authority, info=INFO, aad=aad)


def open_sealed(enc_and_ct: bytes, authority: X25519PrivateKey, aad: bytes) -> bytes:
    """Raises cryptography's InvalidTag when the key or the aad is wrong."""
    return _decrypt_with_aad(SUITE, enc_and_ct, authority, info=INFO, aad=aad)
