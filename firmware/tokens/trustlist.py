"""The signed trust list: which issuer keys the device believes, and which are revoked.

A COSE_Sign1 (Ed25519) signed by the authority's root key, with the CBOR payload
of DESIGN.md and the authority's sealing keys. It arrives from outside (a
retained MQTT message anyone on the broker may have written, a file a
technician copies), so `parse` caps its size, reads the envelope by position
and checks the root's signature before a single byte of CBOR is decoded; the
signed payload is then decoded strictly (no semantic tags) and every field's
shape checked. The caller decides about seq (no rollback) and expiry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from firmware.errors import TrustListError
from firmware.keys import Issuer, kid_of, raw_public
from firmware.tokens import cose, dcc

MAX_BYTES = cose.MAX_BYTES  # 1 MiB
SEALING_ALG = "X25519"  # HPKE DHKEM(X25519): store.seal


@dataclass(frozen=True)
class AuthorityKey:
    """A key the health authority holds the private half of: devices seal visits to it, and to no other."""

    key: bytes  # raw public key
    alg: str
    not_before: int
    not_after: int

    def valid(self, now: float) -> bool:
        return self.not_before <= now <= self.not_after


@dataclass(frozen=True)
class IssuerKey:
    kid: bytes
    iss: str
    alg: str
    key: Ed25519PublicKey
    not_before: int
    not_after: int


@dataclass(frozen=True)
class TrustList:
    seq: int
    issued_at: int
    not_after: int
    issuers: dict[bytes, IssuerKey]
    revoked: frozenset[bytes] = frozenset()
    dsc: tuple[bytes, ...] = ()  # document signer certificates (EU DCC), DER
    authority: tuple[AuthorityKey, ...] = ()  # the sealing keys the root vouches for
    raw: bytes = field(default=b"", repr=False)  # the signed bytes, as kept on disk

    def expired(self, now: float) -> bool:
        return now > self.not_after

    def names_authority(self, key: X25519PublicKey, now: float) -> bool:
        """Does the list vouch for sealing to `key` at `now`?"""
        raw = raw_public(key)
        return any(a.key == raw and a.alg == SEALING_ALG and a.valid(now) for a in self.authority)

    @functools.cached_property
    def dcc_signers(self) -> dict[bytes, list[x509.Certificate]]:
        """The document signers by DCC kid, parsed once per list (parse() has checked every one loads)."""
        return dcc.signers_by_kid(x509.load_der_x509_certificate(der) for der in self.dsc)


def build(
    root: Ed25519PrivateKey,
    issuers: Iterable[Issuer],
    seq: int,
    issued_at: int,
    valid_days: int = 30,
    revoked: Iterable[bytes] = (),
    issuer_valid_days: int = 365,
    dsc: Iterable[bytes] = (),
    authority: Iterable[X25519PublicKey] = (),
) -> bytes:
    """`dsc`: the DER of each EU DCC document signer certificate the devices are to trust;
    `authority`: the health authority's sealing keys, each valid as long as the list."""
    if seq < 0:
        raise TrustListError("seq must not be negative")
    payload = {
        "seq": seq,
        "issued_at": issued_at,
        "not_after": issued_at + valid_days * 86400,
        "issuers": [
            {
                "kid": i.kid,
                "iss": i.iss,
                "alg": "EdDSA",
                "key": raw_public(i.key.public_key()),
                "not_before": issued_at - 86400,
                "not_after": issued_at + issuer_valid_days * 86400,
            }
            for i in issuers
        ],
        "revoked": list(revoked),
        "dsc": [_certificate(der) for der in dsc],
        "authority": [
            {"alg": SEALING_ALG, "key": raw_public(k), "not_before": issued_at - 86400,
             "not_after": issued_at + valid_days * 86400}
            for k in authority
        ],
    }
    return cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key()))


def read_file(path: Path) -> bytes:
    """A trust list file, read no further than the cap (a technician may name /dev/zero). Raises OSError."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise TrustListError(f"{path} is larger than 1 MiB: not a trust list")
    return data


def _int(obj: Mapping, name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
        raise TrustListError(f"trust list field {name!r} is not a valid integer")
    return value


def _issuer(entry: object) -> IssuerKey:
    if not cose.is_map(entry):
        raise TrustListError("trust list issuer entry is not a map")
    kid, iss, alg, key = (entry.get(k) for k in ("kid", "iss", "alg", "key"))
    if not (isinstance(kid, bytes) and len(kid) == 8):
        raise TrustListError("trust list issuer kid is not 8 bytes")
    if not isinstance(iss, str) or alg != "EdDSA" or not (isinstance(key, bytes) and len(key) == 32):
        raise TrustListError("trust list issuer entry has a bad iss, alg or key")
    try:
        public = Ed25519PublicKey.from_public_bytes(key)
    except ValueError:
        raise TrustListError("trust list issuer key is not an Ed25519 key") from None
    return IssuerKey(kid, iss, alg, public, _int(entry, "not_before"), _int(entry, "not_after"))


def _authority(entry: object) -> AuthorityKey:
    if not cose.is_map(entry):
        raise TrustListError("trust list authority entry is not a map")
    alg, key = entry.get("alg"), entry.get("key")
    if alg != SEALING_ALG or not (isinstance(key, bytes) and len(key) == 32):
        raise TrustListError("trust list authority entry is not a 32-byte X25519 key")
    try:
        X25519PublicKey.from_public_bytes(key)
    except ValueError:
        raise TrustListError("trust list authority key is not an X25519 key") from None
    return AuthorityKey(key, alg, _int(entry, "not_before"), _int(entry, "not_after"))


def _certificate(der: object) -> bytes:
    """A document signer entry: the DER of an X.509 certificate, or the list is refused."""
    try:
        x509.load_der_x509_certificate(der)
    except (TypeError, ValueError):
        raise TrustListError("trust list dsc entry is not a DER X.509 certificate") from None
    return der


def parse(data: bytes, root: Ed25519PublicKey | None) -> TrustList:
    """Verify, then parse, a signed trust list. `root=None` skips the signature (a technician's look)."""
    if not isinstance(data, bytes):
        raise TrustListError("trust list is not bytes")
    if len(data) > MAX_BYTES:
        raise TrustListError("trust list is larger than 1 MiB")
    try:
        envelope = cose.parse_eddsa_sign1(data)
    except cose.CoseError as exc:
        raise TrustListError(f"trust list is not a COSE_Sign1 as the root signs them: {exc}") from None
    if root is not None:
        if envelope.kid != kid_of(root):
            raise TrustListError("trust list is signed by a different root key")
        if not envelope.verify(root):
            raise TrustListError("trust list signature does not verify")
    try:
        body = cose.strict_loads(envelope.payload)
    except cose.CoseError as exc:
        raise TrustListError(f"trust list payload: {exc}") from None
    if not cose.is_map(body):
        raise TrustListError("trust list payload is not a map")
    issuers_raw, revoked_raw, dsc_raw, authority_raw = (body.get(k, []) for k in ("issuers", "revoked", "dsc",
                                                                                      "authority"))
    if not all(cose.is_array(x) for x in (issuers_raw, revoked_raw, dsc_raw, authority_raw)):
        raise TrustListError("trust list issuers, revoked, dsc and authority must be lists")
    if not all(isinstance(k, bytes) for k in (*revoked_raw, *dsc_raw)):
        raise TrustListError("trust list revoked kids and dsc must be byte strings")
    issuers = {entry.kid: entry for entry in map(_issuer, issuers_raw)}
    return TrustList(
        seq=_int(body, "seq"),
        issued_at=_int(body, "issued_at"),
        not_after=_int(body, "not_after"),
        issuers=issuers,
        revoked=frozenset(revoked_raw),
        dsc=tuple(map(_certificate, dsc_raw)),
        authority=tuple(map(_authority, authority_raw)),
        raw=data,
    )
