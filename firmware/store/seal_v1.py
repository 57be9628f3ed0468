"""The seal of version 1 records: HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
`info = b"qrgate visit v1"`, with the clear envelope as associated data (DESIGN.md).

cryptography's public HPKE takes no associated data, and devices sealed version 1 records with a private
function of it until version 2 moved the envelope into `info`. The authority must still open what those
devices sealed, so this is RFC 9180 (sections 4.1, 5.1, 5.2 and 7.1) for that one suite, from public
primitives only. The device no longer calls it; `seal` is here for the lab's simulated older devices.
tests/store/test_seal_v1.py holds it to cryptography's own HPKE, and to a record the old code sealed.
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

INFO = b"qrgate visit v1"
_KEM_ID = b"KEM\x00\x20"  # DHKEM(X25519, HKDF-SHA256)
_SUITE_ID = b"HPKE\x00\x20\x00\x01\x00\x03"  # that KEM, HKDF-SHA256, ChaCha20-Poly1305
_MODE_BASE = b"\x00"


def aad_for(rid: bytes, venue: str, device: str) -> bytes:
    """rid ‖ venue ‖ device: binds the ciphertext to its clear envelope (without lengths: records.py compares)."""
    return rid + venue.encode("utf-8") + device.encode("utf-8")


def _extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, "sha256")


def _expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key_and_nonce(dh: bytes, enc: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    eae_prk = _extract(_KEM_ID, b"", b"eae_prk", dh)
    shared = _expand(_KEM_ID, eae_prk, b"shared_secret", enc + recipient, 32)
    context = (_MODE_BASE + _extract(_SUITE_ID, b"", b"psk_id_hash", b"")
               + _extract(_SUITE_ID, b"", b"info_hash", INFO))
    secret = _extract(_SUITE_ID, shared, b"secret", b"")
    return _expand(_SUITE_ID, secret, b"key", context, 32), _expand(_SUITE_ID, secret, b"base_nonce", context, 12)


def seal(plaintext: bytes, authority: X25519PublicKey, aad: bytes) -> bytes:
    """enc ‖ ct, as a version 1 device sealed it."""
    ephemeral = X25519PrivateKey.from_private_bytes(os.urandom(32))
    enc = _raw(ephemeral.public_key())
    key, nonce = _key_and_nonce(ephemeral.exchange(authority), enc, _raw(authority))
    return enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_sealed(enc_and_ct: bytes, authority: X25519PrivateKey, aad: bytes) -> bytes:
    """Raises cryptography's InvalidTag when the key or the aad is wrong, or the record too short to be one."""
    enc, ct = enc_and_ct[:32], enc_and_ct[32:]
    if len(ct) < 16:
        raise InvalidTag()
    try:
        dh = authority.exchange(X25519PublicKey.from_public_bytes(enc))
    except ValueError:  # a low-order point: no shared secret
        raise InvalidTag() from None
    key, nonce = _key_and_nonce(dh, enc, _raw(authority.public_key()))
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)
