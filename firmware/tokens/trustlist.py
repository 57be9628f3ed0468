"""The signed trust list: which issuer keys the device believes, and which are revoked.

A COSE_Sign1 (Ed25519) signed by the authority's root key, with the CBOR payload
of DESIGN.md, the authority's sealing keys, and the EU DCC business rules with
their value sets (tokens.dcc_rules; docs/records.md lays out the additions). It arrives from outside (a
retained MQTT message anyone on the broker may have written, a file a
technician copies), so `parse` caps its size, reads the envelope by position
and checks the root's signature before a single byte of CBOR is decoded; the
signed payload is then read by its schema (strictcbor.Reader: each field of its
type, each count under its cap, no other key, no general decoder), so that no
list, signed or not, costs more than a list at every cap. The caller decides
about seq (no rollback) and expiry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware import strictcbor
from firmware.errors import TrustListError
from firmware.store import seal
from firmware.store.seal import SealingKey
from firmware.tokens import cose, dcc, dcc_rules
from firmware.tokens.dcc_rules import RuleSet

MAX_BYTES = cose.MAX_BYTES  # 1 MiB


@dataclass(frozen=True)
class AuthorityKey:
    """A key the health authority holds the private half of: devices seal visits to it, and to no other."""

    key: bytes  # raw public key
    alg: str  # a store.seal suite
    not_before: int
    not_after: int

    def valid(self, now: float) -> bool:
        return self.not_before <= now <= self.not_after

    @functools.cached_property
    def sealing_key(self) -> SealingKey:
        """One per entry, so each decision seals with a key already built (SealingKey.hpke_key)."""
        return SealingKey(seal.BY_ALG[self.alg], self.key)


@dataclass(frozen=True)
class IssuerKey:
    kid: bytes
    iss: str
    alg: str
    key: Ed25519PublicKey
    not_before: int
    not_after: int
    # A card issuer (a community centre, a district office) signs printed entry cards (tokens.kc1) that live up to
    # this many days, and nothing else; 0 is a phone-token issuer, whose KP1 tokens live seconds.
    card_days: int = 0


@dataclass(frozen=True)
class TrustList:
    seq: int
    issued_at: int
    not_after: int
    issuers: dict[bytes, IssuerKey]
    revoked: frozenset[bytes] = frozenset()
    dsc: tuple[bytes, ...] = ()  # document signer certificates (EU DCC), DER
    authority: tuple[AuthorityKey, ...] = ()  # the sealing keys the root vouches for
    rules: RuleSet = RuleSet()  # the member states' DCC business rules and their value sets
    # Revoked printed cards: each a keyed hash of the card's kid and id under card_key (tokens.kc1.revocation_hash),
    # so the list names no card to whoever reads it without the card in hand.
    card_key: bytes = b""
    card_revoked: frozenset[bytes] = frozenset()
    raw: bytes = field(default=b"", repr=False)  # the signed bytes, as kept on disk

    def expired(self, now: float) -> bool:
        return now > self.not_after

    def names_authority(self, key: SealingKey, now: float) -> bool:
        """Does the list vouch for sealing to `key` at `now`?"""
        return any(a.sealing_key == key and a.valid(now) for a in self.authority)

    def sealing_key(self, now: float) -> SealingKey | None:
        """The key visits are sealed to at `now`: of those valid then, the one that became valid last
        (the first listed on a tie). A new key is announced in a list ahead of its not_before, and the
        devices move to it on their own at that time; the authority keeps the old private key to open
        what was sealed before."""
        valid = [a for a in self.authority if a.valid(now)]
        return max(valid, key=lambda a: a.not_before).sealing_key if valid else None

    @functools.cached_property
    def dcc_signers(self) -> dict[bytes, list[x509.Certificate]]:
        """The document signers by DCC kid, parsed once per list (parse() has checked every one loads)."""
        return dcc.signers_by_kid(x509.load_der_x509_certificate(der) for der in self.dsc)


def read_file(path: Path) -> bytes:
    """A trust list file, read no further than the cap (a technician may name /dev/zero). Raises OSError."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise TrustListError(f"{path} is larger than 1 MiB: not a trust list")
    return data


# What one list may hold. Far above any real list (a few dozen KP1 issuers; the EU's document signers
# number some hundreds), and what bounds the work of reading one whatever its bytes: each count is
# checked at its array's head, before any item is read.
MAX_ISSUERS = 512
MAX_REVOKED = 16384
MAX_DSC = 4096
MAX_AUTHORITY = 16
MAX_RULES = 1024  # a country's rules number tens; the EU gateway held some 1,500 for all its countries
MAX_VALUESETS = 64
MAX_CODES = 4096  # codes in one value set
MAX_CODE = 128
MAX_TIME = 1 << 40
MAX_ISS = 64  # kp1's limit on an issuer name
MAX_CARD_DAYS = 1830  # five years: a printed card's longest life, whatever its issuer's entry says
MAX_CARD_REVOKED = 16384  # a revoked card leaves the list once it has expired
CARD_KEY_BYTES = CARD_HASH_BYTES = 16


def _time(r: strictcbor.Reader, name: str) -> int:
    value = r.uint(name)
    if value >= MAX_TIME:
        raise strictcbor.CborError(f"its {name} is not a time")
    return value


T = TypeVar("T")
FieldReader = Callable[[strictcbor.Reader], Any]


def _schema(readers: dict[str, FieldReader]) -> dict[bytes, tuple[str, FieldReader]]:
    """Field readers by the UTF-8 of their key, as `Reader.fields` looks them up."""
    return {key.encode(): (key, read) for key, read in readers.items()}


def _fixed(r: strictcbor.Reader, name: str, size: int) -> bytes:
    value = r.bstr(name)
    if len(value) != size:
        raise strictcbor.CborError(f"its {name} is not {size} bytes")
    return value


def _exactly(r: strictcbor.Reader, name: str, want: str) -> str:
    return r.one_of({want.encode(): want}, name)


def _card_days(r: strictcbor.Reader) -> int:
    days = r.uint("card_days")
    if not 0 < days <= MAX_CARD_DAYS:
        raise strictcbor.CborError(f"its card_days is not 1-{MAX_CARD_DAYS}")
    return days


def _iss(r: strictcbor.Reader) -> str:
    iss = r.tstr("issuer name")
    if not 0 < len(iss) <= MAX_ISS:
        raise strictcbor.CborError("its issuer name is not 1-64 characters")
    return iss


_ISSUER = _schema({
    "kid": lambda r: _fixed(r, "issuer kid", 8),
    "iss": _iss,
    "alg": lambda r: _exactly(r, "issuer alg", "EdDSA"),
    "key": lambda r: _fixed(r, "issuer key", 32),
    "not_before": lambda r: _time(r, "not_before"),
    "not_after": lambda r: _time(r, "not_after"),
    "card_days": _card_days,
})
_AUTHORITY = _schema({
    "alg": lambda r: r.one_of({alg.encode(): alg for alg in seal.BY_ALG}, "authority alg"),
    "key": lambda r: r.bstr("authority key"),
    "not_before": lambda r: _time(r, "not_before"),
    "not_after": lambda r: _time(r, "not_after"),
})


_ISSUER_KEYS = ("kid", "iss", "alg", "key", "not_before", "not_after")  # card_days is there for card issuers only
_AUTHORITY_KEYS = tuple(key for key, _ in _AUTHORITY.values())


def _issuer(r: strictcbor.Reader) -> IssuerKey:
    f = r.fields("issuer entry", _ISSUER, _ISSUER_KEYS)
    try:
        key = Ed25519PublicKey.from_public_bytes(f["key"])
    except ValueError:
        raise TrustListError("trust list issuer key is not an Ed25519 key") from None
    return IssuerKey(f["kid"], f["iss"], f["alg"], key, f["not_before"], f["not_after"], f.get("card_days", 0))


def _authority(r: strictcbor.Reader) -> AuthorityKey:
    f = r.fields("authority entry", _AUTHORITY, _AUTHORITY_KEYS)
    try:
        SealingKey.of(f["alg"], f["key"])
    except ValueError as exc:
        raise TrustListError(f"trust list authority key: {exc}") from None
    return AuthorityKey(f["key"], f["alg"], f["not_before"], f["not_after"])


def _code(r: strictcbor.Reader) -> str:
    code = r.tstr("value set code")
    if not 0 < len(code) <= MAX_CODE:
        raise strictcbor.CborError(f"its value set code is not 1-{MAX_CODE} characters")
    return code


_VALUESET = _schema({
    "id": _code,
    "codes": lambda r: _many(r, "value set codes", MAX_CODES, _code),
})
_VALUESET_KEYS = tuple(key for key, _ in _VALUESET.values())


def _valuesets(r: strictcbor.Reader) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _ in range(r.array("valuesets", MAX_VALUESETS)):
        f = r.fields("value set", _VALUESET, _VALUESET_KEYS)
        if f["id"] in out:
            raise strictcbor.CborError("its valuesets repeat an id")
        out[f["id"]] = f["codes"]
    return out


def certificate_entry(der: object) -> bytes:
    """A document signer entry: the DER of an X.509 certificate, or the list is refused."""
    if not isinstance(der, bytes):
        raise TrustListError("trust list dsc entry is not a DER X.509 certificate")
    try:
        x509.load_der_x509_certificate(der)
    except (TypeError, ValueError):
        raise TrustListError("trust list dsc entry is not a DER X.509 certificate") from None
    return der


def _many(r: strictcbor.Reader, name: str, most: int, read: Callable[[strictcbor.Reader], T]) -> list[T]:
    return [read(r) for _ in range(r.array(name, most))]


_PAYLOAD = _schema({
    "seq": lambda r: _time(r, "seq"),
    "issued_at": lambda r: _time(r, "issued_at"),
    "not_after": lambda r: _time(r, "not_after"),
    "issuers": lambda r: _many(r, "issuers", MAX_ISSUERS, _issuer),
    "revoked": lambda r: r.bstrs(r.array("revoked", MAX_REVOKED), 8, "revoked kids"),
    "dsc": lambda r: [certificate_entry(der) for der in _many(r, "dsc", MAX_DSC, lambda r: r.bstr("dsc entry"))],
    "authority": lambda r: _many(r, "authority", MAX_AUTHORITY, _authority),
    "dcc_rules": lambda r: _many(r, "dcc_rules", MAX_RULES, lambda r: r.tstr("dcc rule")),
    "valuesets": _valuesets,
    "card_key": lambda r: _fixed(r, "card_key", CARD_KEY_BYTES),
    "card_revoked": lambda r: r.bstrs(r.array("card_revoked", MAX_CARD_REVOKED), CARD_HASH_BYTES, "revoked cards"),
})


def parse(data: bytes, root: Ed25519PublicKey | None) -> TrustList:
    """Verify, then parse, a signed trust list. `root=None` skips the signature (a technician's look)."""
    try:
        payload = cose.root_signed(data, root, "trust list", MAX_BYTES)
    except cose.CoseError as exc:
        raise TrustListError(str(exc)) from None
    try:
        reader = strictcbor.Reader(payload, MAX_BYTES)
        body = reader.fields("payload", _PAYLOAD, ("seq", "issued_at", "not_after"))
        reader.end()
    except strictcbor.CborError as exc:
        raise TrustListError(f"trust list payload: {exc}") from None
    try:
        rules = dcc_rules.rule_set(body.get("dcc_rules", ()), body.get("valuesets", {}))
    except dcc_rules.RuleError as exc:
        raise TrustListError(f"trust list dcc_rules: {exc}") from None
    if body.get("card_revoked") and "card_key" not in body:
        raise TrustListError("trust list payload: its card_revoked comes without a card_key")
    return TrustList(
        seq=body["seq"],
        issued_at=body["issued_at"],
        not_after=body["not_after"],
        issuers={entry.kid: entry for entry in body.get("issuers", ())},
        revoked=frozenset(body.get("revoked", ())),
        dsc=tuple(body.get("dsc", ())),
        authority=tuple(body.get("authority", ())),
        rules=rules,
        card_key=body.get("card_key", b""),
        card_revoked=frozenset(body.get("card_revoked", ())),
        raw=data,
    )
