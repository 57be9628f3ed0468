"""The EU's three revocation hashes of a verified DCC, and the device's 8-byte lookup key for each.

The EU DCC revocation lists (2022) name a revoked certificate under its document
signer's kid by one of three hashes, each the first 128 bits of a SHA-256:

- UCI: of the UVCI (the `ci` of the certificate's entry), UTF-8 (as every text here).
- COUNTRYCODEUCI: of the issuing country code followed by the UVCI. The country
  code is the CWT's issuer claim (1, `iss`), not the entry's `co`: so the EU's
  own core library computes it (eu-digital-green-certificates/dgca-app-core-ios,
  Sources/Models/HCert.swift: `issCode + uvci`, issCode the claim "1", "" when
  absent, which we follow), and so do Germany's Corona-Warn-App
  (corona-warn-app/cwa-app-android, revocation/calculation: `header.issuer` plus
  the UCI) and the gateway team's dcc-info tool (`payload[1] + uci`). Only
  hcert-dotnet and an early verifier prototype used `co`.
- SIGNATURE: of the COSE signature; for ES256 only its first half, the r of
  (r, s), for PS256 all of it (eu-digital-green-certificates' revocation app,
  `getDccSignatureSha256`: `coseSignature.size / 2`; CWA's `bisect()`).

These definitions give the expected hashes of the three member-state DCCs in
CWA's RevocationCalculationSampleData.json (a German recovery and vaccination,
a Lithuanian vaccination).

The device does not keep the EU's 16-byte hashes: it keeps, per entry, the first
8 bytes of SHA-256(type ‖ kid ‖ hash16) as a big-endian integer (`key`). Eight
bytes are enough: SHA-256 spreads keys evenly, so a certificate that is not on a
list of 10,000,000 entries matches one by chance with a probability of
10^7 / 2^64 ≈ 5.4 × 10^-13 per lookup; with three lookups per DCC, a fleet of
10,000 doors each judging 10,000 DCCs a day would see one wrong `revoked` in
about 17 years. Nobody gains from the truncation: it can only add a false
`revoked`, never hide a revoked certificate (its key is in the list exactly as
the authority built it), and to make someone else's valid certificate collide
an attacker would have to place an entry in a list only the authority signs, or
change a certificate whose hashes its issuer's signature fixes. Putting the kid
and the type inside the hash keeps each signer's and each type's entries apart,
as the EU's lists keep them, in one flat set of keys.
"""

from __future__ import annotations

import enum
import hashlib

from firmware.tokens import dcc

HASH_BYTES = 16  # the EU lists' hashes: the first 128 bits of a SHA-256
KEY_BYTES = 8


class HashType(enum.Enum):
    """The EU's hash types, by name; the value is the byte that stands for the type in a key."""

    UCI = 1
    COUNTRYCODEUCI = 2
    SIGNATURE = 3


def _sha128(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:HASH_BYTES]


def eu_hashes(uvci: str | None, iss: str | None, alg: int | None, signature: bytes | None) -> dict[HashType, bytes]:
    """The EU hashes a certificate has: the UCI ones with a UVCI, SIGNATURE with an ES256 or PS256 signature."""
    out = {}
    if uvci is not None:
        out[HashType.UCI] = _sha128(uvci.encode())
        out[HashType.COUNTRYCODEUCI] = _sha128(((iss or "") + uvci).encode())
    if signature is not None and alg in (dcc.ALG_ES256, dcc.ALG_PS256):
        out[HashType.SIGNATURE] = _sha128(signature[: len(signature) // 2] if alg == dcc.ALG_ES256 else signature)
    return out


def key(kind: HashType, kid: bytes, digest: bytes) -> int:
    """The device's lookup key of one EU entry: SHA-256(type ‖ kid ‖ hash16), its first 8 bytes, big-endian."""
    if len(digest) != HASH_BYTES:
        raise ValueError(f"an EU revocation hash is {HASH_BYTES} bytes")
    data = bytes((kind.value,)) + kid + digest
    return int.from_bytes(hashlib.sha256(data).digest()[:KEY_BYTES], "big")


def keys_of(result: dcc.DccResult) -> list[int]:
    """The lookup keys of a verified certificate (none without the signer's kid: nothing verified)."""
    if result.kid is None:
        return []
    found = eu_hashes(result.uvci, result.iss, result.alg, result.signature)
    return [key(kind, result.kid, digest) for kind, digest in found.items()]
