"""The keys that sign and seal away from the door, and what they sign: the lab's, never the device's.

A token issuer (KP1) and its `mint`, a card issuer and its `mint_card` (KC1), the root that signs trust lists and
`build_trust_list`, the health authority's sealing pair: made by
`qrgate issuer|root|authority new`, and read back from the folders those make.
An issuer folder holds `issuer.key` (Ed25519, PEM), `issuer.pub` and `issuer.json`
(name, kid, and a card issuer's `card_days`): the issuer sends the authority the
last two, which `load_listed` reads; a root folder `root.key` and `root.pub`; an authority folder
`authority.key` and `authority.pub` (firmware.keys: the post-quantum hybrid by default). Private keys are written
with mode 0600 (firmware.keys, which also reads the public halves a device
needs).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import base45
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.errors import KeyFileError, TrustListError
from firmware.keys import (in_folder, kid_of, load_private, load_public, raw_public, write_authority, write_private,
                           write_public)
from firmware.store import seal
from firmware.store.seal import OpeningKey, SealingKey
from firmware.tokens import cose, kc1, kp1, trustlist
from firmware.tokens import dcc_rules as dcc_rules_module


@dataclass(frozen=True)
class Issuer:
    iss: str
    key: Ed25519PrivateKey
    card_days: int = 0  # a card issuer's: the longest life of a printed card it signs (0: a phone-token issuer)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def kid(self) -> bytes:
        return kid_of(self.public)


@dataclass(frozen=True)
class ListedIssuer:
    """An issuer as the authority knows it: its name, public key and role, from the `issuer.json` and
    `issuer.pub` it sent. Enough to list it in a trust list; it signs nothing."""

    iss: str
    public: Ed25519PublicKey
    card_days: int = 0

    @property
    def kid(self) -> bytes:
        return kid_of(self.public)


def _new_folder(out: Path, marker: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / marker).exists():
        raise KeyFileError(f"{out / marker} exists already; refusing to overwrite a key")
    return out


def new_issuer(name: str, out: Path, card_days: int = 0) -> Issuer:
    """A phone-token issuer, or with `card_days` a card issuer (docs/cards.md): one key, one role."""
    if not name or len(name) > 64:
        raise KeyFileError("an issuer name is 1 to 64 characters")
    if not 0 <= card_days <= trustlist.MAX_CARD_DAYS:
        raise KeyFileError(f"a card issuer's cards live 1 to {trustlist.MAX_CARD_DAYS} days")
    out = _new_folder(out, "issuer.key")
    issuer = Issuer(name, Ed25519PrivateKey.generate(), card_days)
    write_private(out / "issuer.key", issuer.key)
    write_public(out / "issuer.pub", issuer.public)  # with issuer.json, what the authority lists it by
    meta: dict[str, object] = {"iss": name, "kid": issuer.kid.hex()}
    if card_days:
        meta["card_days"] = card_days
    (out / "issuer.json").write_text(json.dumps(meta) + "\n")
    return issuer


def load_issuer(folder: Path) -> Issuer:
    folder = Path(folder)
    key = load_private(folder / "issuer.key", Ed25519PrivateKey, "Ed25519 issuer key")
    name, card_days = _issuer_meta(folder)
    return Issuer(name, key, card_days)


def load_listed(folder: Path) -> ListedIssuer:
    """An issuer's folder as the authority holds it: `issuer.json` and `issuer.pub`, or, where the folder is
    the issuer's own, the public half of its `issuer.key`."""
    folder = Path(folder)
    name, card_days = _issuer_meta(folder)
    if (folder / "issuer.pub").exists():
        public = load_public(folder / "issuer.pub", Ed25519PublicKey, "Ed25519 issuer public key")
    else:
        public = load_private(folder / "issuer.key", Ed25519PrivateKey, "Ed25519 issuer key").public_key()
    return ListedIssuer(name, public, card_days)


def _issuer_meta(folder: Path) -> tuple[str, int]:
    """The name and card_days of `issuer.json`, checked."""
    try:
        meta = json.loads((folder / "issuer.json").read_text())
        name, card_days = meta["iss"], meta.get("card_days", 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise KeyFileError(f"{folder / 'issuer.json'} is missing or has no 'iss'") from None
    if type(card_days) is not int or not 0 <= card_days <= trustlist.MAX_CARD_DAYS:
        raise KeyFileError(f"{folder / 'issuer.json'}: card_days is not 0-{trustlist.MAX_CARD_DAYS}")
    return str(name), card_days


def _new_pair(out: Path, name: str, key):
    """A folder with `name`.key (0600) and `name`.pub."""
    out = _new_folder(out, f"{name}.key")
    write_private(out / f"{name}.key", key)
    write_public(out / f"{name}.pub", key.public_key())
    return key


def new_root(out: Path) -> Ed25519PrivateKey:
    return _new_pair(out, "root", Ed25519PrivateKey.generate())


def load_root(folder: Path) -> Ed25519PrivateKey:
    return load_private(in_folder(folder, "root.key"), Ed25519PrivateKey, "Ed25519 root key")


def new_authority(out: Path, suite: seal.Suite = seal.DEFAULT) -> OpeningKey:
    key = OpeningKey.generate(suite)
    write_authority(_new_folder(out, "authority.key"), key)
    return key


def mint(
    issuer: Issuer,
    now: int,
    ttl: int = kp1.DEFAULT_TTL,
    att: Iterable[str] = (),
    cti: bytes | None = None,
    kid: bytes | None = None,
) -> str:
    """Issue one KP1 token, as an issuer app would show it on a phone.

    `kid` overrides the key's own kid: that is how tests and the demo forge a
    token claiming a trusted issuer.
    """
    if issuer.card_days:
        raise ValueError(f"{issuer.iss} is a card issuer: its key signs printed cards, not phone tokens")
    if not 0 < ttl <= kp1.MAX_WINDOW:
        raise ValueError(f"ttl must be 1..{kp1.MAX_WINDOW} seconds")
    return kp1.PREFIX + _signed(issuer, now, ttl, att, cti, kid)


def mint_card(
    issuer: Issuer,
    now: int,
    days: int | None = None,
    att: Iterable[str] = (),
    cti: bytes | None = None,
    kid: bytes | None = None,
) -> str:
    """Sign one KC1 printed entry card, valid from `now` for `days` (the issuer's longest by default)."""
    if not issuer.card_days:
        raise ValueError(f"{issuer.iss} is a phone-token issuer: its key signs no printed card")
    days = issuer.card_days if days is None else days
    if not 0 < days <= issuer.card_days:
        raise ValueError(f"a card of {issuer.iss} lives 1..{issuer.card_days} days")
    return kc1.PREFIX + _signed(issuer, now, days * 86400, att, cti, kid)


def _signed(issuer: Issuer, now: int, life: int, att: Iterable[str], cti: bytes | None, kid: bytes | None) -> str:
    """The base45 of the COSE_Sign1 of KP1's claims: a phone token's, or with a card's life, a card's."""
    claims: dict = {
        kp1.CLAIM_ISS: issuer.iss,
        kp1.CLAIM_IAT: now,
        kp1.CLAIM_EXP: now + life,
        kp1.CLAIM_CTI: cti if cti is not None else os.urandom(16),
    }
    att = list(att)
    if att:
        claims[kp1.CLAIM_ATT] = att
    return base45.b45encode(cose.sign1(cbor2.dumps(claims), issuer.key, kid or issuer.kid)).decode("ascii")


def build_trust_list(
    root: Ed25519PrivateKey,
    issuers: Iterable[Issuer | ListedIssuer],
    seq: int,
    issued_at: int,
    valid_days: int = 30,
    revoked: Iterable[bytes] = (),
    issuer_valid_days: int = 365,
    dsc: Iterable[bytes] = (),
    authority: Iterable[SealingKey | tuple[SealingKey, int]] = (),
    dcc_rules: Iterable[str] = (),
    valuesets: Mapping[str, Iterable[str]] | None = None,
    card_revoked: Iterable[tuple[bytes, bytes]] = (),
    card_key: bytes | None = None,
) -> bytes:
    """A trust list signed by `root`, as DESIGN.md lays it out (firmware.tokens.trustlist reads it).

    `dsc`: the DER of each EU DCC document signer certificate the devices are to trust;
    `authority`: the health authority's sealing keys, each valid until the list's not_after, from a
    day before issued_at or from the time paired with it (a key the devices move to then);
    `dcc_rules`: EU business rules, each its gateway JSON text, and `valuesets` the codes they name by
    value set id (both checked as the devices check them, so a list they would refuse is never signed);
    `card_revoked`: the (kid, card id) of each revoked printed card, listed as keyed hashes under `card_key`
    (a new random key by default, so that no two lists' hashes can be matched)."""
    if seq < 0:
        raise TrustListError("seq must not be negative")
    payload: dict[str, object] = {
        "seq": seq,
        "issued_at": issued_at,
        "not_after": issued_at + valid_days * 86400,
        "issuers": [
            {
                "kid": i.kid,
                "iss": i.iss,
                "alg": "EdDSA",
                "key": raw_public(i.public),
                "not_before": issued_at - 86400,
                "not_after": issued_at + issuer_valid_days * 86400,
                **({"card_days": i.card_days} if i.card_days else {}),
            }
            for i in issuers
        ],
        "revoked": list(revoked),
        "dsc": [trustlist.certificate_entry(der) for der in dsc],
        "authority": [
            {"alg": k.suite.alg, "key": k.raw, "not_before": since, "not_after": issued_at + valid_days * 86400}
            for k, since in (a if isinstance(a, tuple) else (a, issued_at - 86400) for a in authority)
        ],
    }
    rules = list(dcc_rules)
    try:
        dcc_rules_module.rule_set(rules, valuesets or {})
    except dcc_rules_module.RuleError as exc:
        raise TrustListError(f"dcc_rules: {exc}") from None
    if rules:
        payload["dcc_rules"] = rules
    if valuesets:
        payload["valuesets"] = [{"id": k, "codes": list(v)} for k, v in valuesets.items()]
    cards = list(card_revoked)
    if cards:
        key = card_key or os.urandom(trustlist.CARD_KEY_BYTES)
        payload["card_key"] = key
        payload["card_revoked"] = sorted({kc1.revocation_hash(key, kid, cti) for kid, cti in cards})
    return cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key()))
