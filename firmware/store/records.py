"""The visit record: its plaintext (memory only) and its sealed wire and disk form, in both versions.

Version 2, what devices write: `[2, rid, venue, device, ts, suite, kid, enc_and_ct]`. `suite` is the
HPKE KEM id (seal.py) and `kid` names the authority key, so the authority opens each record with the
key it names, and keys can rotate. The plaintext is only what is secret, `{iss, cti, kind}`, padded
to PAD bytes so that every record of one device has the same length whatever its kind, issuer or
UVCI; the clear envelope (the array without enc_and_ct, after INFO_V2) is sealed in as HPKE's info.
Version 1 (DESIGN.md), what devices wrote before: `[1, rid, venue, device, ts, enc_and_ct]`, the
whole visit in the plaintext, X25519 only (seal_v1). The custodian stores and the authority opens both.

A record read back from the wire comes from a device the custodian cannot
see into, so `from_wire` caps its size and reads it by position, each field
of its type in preferred serialization (one accepted encoding, no general
CBOR decoder); `open` checks every plaintext field's type and range before
handing out a visit.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from firmware import strictcbor
from firmware.store import seal, seal_v1
from firmware.store.seal import OpeningKey, SealingKey
from firmware.tokens.verdict import KINDS, Claims
from firmware.uplink import topics

V1, V2 = 1, 2
INFO_V2 = b"qrgate visit v2"
# The padded plaintext's size: its two-byte length, the CBOR of {iss, cti, kind}, zeros. 192 holds the longest
# issuer name (64) with the longest UVCI the DCC schema allows (80); anything longer takes a further 192.
PAD = 192
MAX_WIRE = 4096  # a sealed record is at most about 1,450 bytes (X-Wing's is 1,120); anything near this is not one
MAX_ID = 64  # an issuer name's length, like a venue's or device's id (topics.ID)
MAX_UVCI = 256
RID_BYTES = 16


class PlaintextError(ValueError):
    """An opened record whose plaintext is not a visit (not CBOR, not the map, a field of the wrong type)."""


class EnvelopeMismatch(ValueError):
    """An opened record whose sealed rid, venue, device or time is not its clear envelope's: relabelled."""


class KeyMismatch(ValueError):
    """A record sealed to another authority key than the one given to open it."""


@dataclass(frozen=True)
class Visit:
    """Plaintext `{iss, cti, kind}` and its envelope; never written anywhere in clear."""

    rid: bytes
    venue: str
    device: str
    ts: int
    iss: str
    cti: bytes | str = field(repr=False)  # a KP1 token id, a KC1 card id, or a DCC's UVCI
    kind: str = "KP1"

    @classmethod
    def of(cls, claims: Claims, venue: str, device: str, ts: int) -> "Visit":
        return cls(os.urandom(16), venue, device, ts, claims.iss, claims.cti, claims.kind)

    def plaintext(self) -> bytes:
        """Version 2's: what is secret, padded (module docstring)."""
        return pad(cbor2.dumps({"iss": self.iss, "cti": self.cti, "kind": self.kind}))

    def seal(self, authority: SealingKey) -> "SealedRecord":
        clear = SealedRecord(self.rid, self.venue, self.device, self.ts, b"", authority.suite.kem_id, authority.kid)
        return dataclasses.replace(clear, enc_and_ct=authority.seal(self.plaintext(), clear.info()))


def sealed_v1(visit: Visit, authority: X25519PublicKey) -> "SealedRecord":
    """The record a version 1 device made of `visit` (DESIGN.md): for the lab's older devices and the tests."""
    plain = {"v": V1, "rid": visit.rid, "venue": visit.venue, "device": visit.device, "ts": visit.ts,
             "iss": visit.iss, "cti": visit.cti, "kind": visit.kind}
    aad = seal_v1.aad_for(visit.rid, visit.venue, visit.device)
    return SealedRecord(visit.rid, visit.venue, visit.device, visit.ts, seal_v1.seal(cbor2.dumps(plain), authority, aad))


def pad(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body + bytes(-(2 + len(body)) % PAD)


def unpad(padded: bytes) -> bytes:
    """The body, if `padded` is exactly what `pad` makes of it (no wider padding, nothing but zeros after it)."""
    n = int.from_bytes(padded[:2], "big")
    if n == 0 or padded != pad(padded[2:2 + n]):  # a length past the end reads a shorter body: not equal
        raise PlaintextError("the plaintext is not padded as a version 2 record pads it")
    return padded[2:2 + n]


@dataclass(frozen=True)
class SealedRecord:
    """What the card and the broker see: version 2 names its suite and key (`kid`), version 1 names neither."""

    rid: bytes
    venue: str
    device: str
    ts: int
    enc_and_ct: bytes = field(repr=False)
    suite: int | None = None  # HPKE KEM id; None in a version 1 record
    kid: bytes | None = None

    @property
    def version(self) -> int:
        return V1 if self.kid is None else V2

    def _clear(self) -> list[Any]:
        if self.version == V1:
            return [V1, self.rid, self.venue, self.device, self.ts]
        return [V2, self.rid, self.venue, self.device, self.ts, self.suite, self.kid]

    def info(self) -> bytes:
        """Version 2's HPKE info: the clear envelope, as the wire has it, sealed in."""
        return INFO_V2 + cbor2.dumps(self._clear())

    def wire(self) -> bytes:
        return cbor2.dumps([*self._clear(), self.enc_and_ct])

    @classmethod
    def from_wire(cls, data: bytes) -> "SealedRecord":
        """Raises strictcbor.CborError (a ValueError) for anything but a record of either version as `wire` writes it."""
        r = strictcbor.Reader(data, MAX_WIRE)
        items, version = r.array("record", 8), r.uint("version")
        if (items, version) not in ((6, V1), (8, V2)):
            raise strictcbor.CborError("not a version 1 or version 2 sealed visit record")
        rid, venue, device, ts = r.bstr("rid"), r.tstr("venue"), r.tstr("device"), r.uint("ts")
        suite = kid = None
        if version == V2:
            suite, kid = r.uint("suite"), r.bstr("kid")
            if suite not in seal.BY_KEM_ID:
                raise strictcbor.CborError("its suite is not one records are sealed with")
            if len(kid) != seal.KID_BYTES:
                raise strictcbor.CborError("its kid is not 8 bytes")
        enc_and_ct = r.bstr("sealed part")
        r.end()
        if len(rid) != RID_BYTES:
            raise strictcbor.CborError("its rid is not 16 bytes")
        if not (topics.ID.fullmatch(venue) and topics.ID.fullmatch(device)):
            raise strictcbor.CborError("its venue or device is not an id (one topic level of 1-64 characters)")
        return cls(rid, venue, device, ts, enc_and_ct, suite, kid)

    def open(self, authority: OpeningKey) -> dict[str, Any]:
        """The authority's side: the visit as a dict `{v, rid, venue, device, ts, iss, cti, kind}`, every field checked.

        Raises KeyMismatch for a record that names another key; cryptography's InvalidTag for a
        tampered or relabelled record, or another key; PlaintextError or EnvelopeMismatch after it opened.
        """
        public = authority.public_key()
        if self.version == V2:
            if (self.suite, self.kid) != (public.suite.kem_id, public.kid):
                raise KeyMismatch("the record is sealed to another authority key")
            plain = self._secret(authority.open(self.enc_and_ct, self.info()))
        else:
            if public.suite is not seal.X25519:
                raise KeyMismatch("a version 1 record is sealed to an X25519 key")
            aad = seal_v1.aad_for(self.rid, self.venue, self.device)
            plain = self._v1(seal_v1.open_sealed(self.enc_and_ct, authority.x25519, aad))
        iss, cti, kind = plain["iss"], plain["cti"], plain["kind"]
        if not (isinstance(iss, str) and 0 < len(iss) <= MAX_ID and kind in KINDS):
            raise PlaintextError("the plaintext's issuer or kind is not a visit's")
        if not (kind in ("KP1", "KC1") and isinstance(cti, bytes) and len(cti) == 16
                or kind == "DCC" and isinstance(cti, str) and 0 < len(cti) <= MAX_UVCI):
            raise PlaintextError("the plaintext's token id is not one of its kind")
        return {"v": self.version, "rid": self.rid, "venue": self.venue, "device": self.device, "ts": self.ts,
                "iss": iss, "cti": cti, "kind": kind}

    @staticmethod
    def _loads(plaintext: bytes, keys: set[str]) -> dict[str, Any]:
        try:
            plain = strictcbor.loads(plaintext, max_bytes=MAX_WIRE, max_depth=2)
        except strictcbor.CborError as exc:
            raise PlaintextError(f"the plaintext: {exc}") from None
        if not (type(plain) is dict and set(plain) == keys):
            raise PlaintextError("the plaintext is not a visit's map")
        return plain

    def _secret(self, padded: bytes) -> dict[str, Any]:
        return self._loads(unpad(padded), {"iss", "cti", "kind"})

    def _v1(self, opened: bytes) -> dict[str, Any]:
        """Version 1's plaintext repeats the envelope: its aad concatenates rid, venue and device without
        lengths (DESIGN.md), so the sealed copy is compared too, and a relabelled record is refused."""
        plain = self._loads(opened, {"v", "rid", "venue", "device", "ts", "iss", "cti", "kind"})
        sealed = tuple(plain[k] for k in ("rid", "venue", "device", "ts"))
        if sealed != (self.rid, self.venue, self.device, self.ts) or tuple(map(type, sealed)) != (bytes, str, str, int):
            raise EnvelopeMismatch("the clear envelope does not match the sealed record")
        if type(plain["v"]) is not int or plain["v"] != V1:
            raise PlaintextError("the plaintext is not of version 1")
        return plain
