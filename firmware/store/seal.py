"""HPKE (RFC 9180, base mode) seal of visit records to the health authority's key, by cryptography's public API.

A record of version 2 names its suite by HPKE KEM id (records.py):
- 0x647a, MLKEM768-X25519 (X-Wing, draft-ietf-hpke-pq): ML-KEM-768 and X25519 combined, so a record
  taken off the wire today stays sealed while either holds, against a quantum computer too. The
  default for new authority keys; cryptography has it since 47 (its `hpke` module), the project
  requires 49 (`KEM.enc_length`).
- 0x0020, X25519 (DHKEM(X25519, HKDF-SHA256)): the authority keys already in the field.
Both with HKDF-SHA256 and ChaCha20-Poly1305 (the Pi 4 has no AES instructions).

The public single-shot API takes no associated data, so the clear envelope a record is bound to goes
into `info`, which the key schedule hashes into the key (RFC 9180 §8.1 advises exactly that for
single-shot use): opened under another envelope, a record derives another key and fails its tag.
Version 1 records bound it as aad instead; seal_v1 opens those. The device only ever holds public keys.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

KID_BYTES = 8
MLKEM768_PUBLIC = 1184  # bytes of an ML-KEM-768 encapsulation key (FIPS 203)


@dataclass(frozen=True)
class Suite:
    alg: str  # the trust list's name for it
    kem_id: int  # the record's
    public_len: int  # raw public key: X-Wing's is the ML-KEM key followed by the X25519 one
    kem: hpke.KEM = field(repr=False)

    @functools.cached_property
    def hpke(self) -> hpke.Suite:
        return hpke.Suite(self.kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

    @property
    def enc_length(self) -> int:
        """Bytes of the encapsulated key that leads every sealed part: 1,120 for X-Wing, 32 for X25519."""
        return self.kem.enc_length()


MLKEM768_X25519 = Suite("MLKEM768-X25519", 0x647A, MLKEM768_PUBLIC + 32, hpke.KEM.MLKEM768_X25519)
X25519 = Suite("X25519", 0x0020, 32, hpke.KEM.X25519)
DEFAULT = MLKEM768_X25519
BY_ALG = {s.alg: s for s in (MLKEM768_X25519, X25519)}
BY_KEM_ID = {s.kem_id: s for s in BY_ALG.values()}


def key_id(raw_public: bytes) -> bytes:
    """8 bytes naming an authority key in a record: the start of SHA-256 of its raw public key."""
    return hashlib.sha256(raw_public).digest()[:KID_BYTES]


def _raw(key: X25519PublicKey | MLKEM768PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class SealingKey:
    """An authority's public key as the trust list carries it: suite and raw bytes. What the device seals to."""

    suite: Suite
    raw: bytes = field(repr=False)

    @classmethod
    def of(cls, alg: str, raw: bytes) -> "SealingKey":
        """Raises ValueError for an unknown suite or bytes that are not one of its public keys."""
        suite = BY_ALG.get(alg)
        if suite is None:
            raise ValueError(f"{alg!r} is not a sealing suite ({', '.join(BY_ALG)})")
        key = cls(suite, raw)
        key.hpke_key  # checks length and contents
        return key

    @functools.cached_property
    def kid(self) -> bytes:
        return key_id(self.raw)

    @functools.cached_property
    def hpke_key(self) -> X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        """The library's key, built once per SealingKey (the trust list keeps one for each of its keys)."""
        if len(self.raw) != self.suite.public_len:
            raise ValueError(f"a {self.suite.alg} public key is {self.suite.public_len} bytes, not {len(self.raw)}")
        x25519 = X25519PublicKey.from_public_bytes(self.raw[-32:])
        if self.suite is X25519:
            return x25519
        return hpke.MLKEM768X25519PublicKey(MLKEM768PublicKey.from_public_bytes(self.raw[:-32]), x25519)

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """enc ‖ ct, bound to `info`."""
        return self.suite.hpke.encrypt(plaintext, self.hpke_key, info=info)


@dataclass(frozen=True)
class OpeningKey:
    """The authority's private key: an X25519 key, or for the hybrid an ML-KEM-768 key with an X25519 one."""

    x25519: X25519PrivateKey = field(repr=False)
    mlkem: MLKEM768PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, suite: Suite = DEFAULT) -> "OpeningKey":
        mlkem = MLKEM768PrivateKey.generate() if suite is MLKEM768_X25519 else None
        return cls(X25519PrivateKey.generate(), mlkem)

    @property
    def suite(self) -> Suite:
        return X25519 if self.mlkem is None else MLKEM768_X25519

    def public_key(self) -> SealingKey:
        x = _raw(self.x25519.public_key())
        return SealingKey(self.suite, x if self.mlkem is None else _raw(self.mlkem.public_key()) + x)

    def open(self, enc_and_ct: bytes, info: bytes) -> bytes:
        """Raises cryptography's InvalidTag for a record sealed to another key or under another `info`."""
        key = self.x25519 if self.mlkem is None else hpke.MLKEM768X25519PrivateKey(self.mlkem, self.x25519)
        return self.suite.hpke.decrypt(enc_and_ct, key, info=info)
