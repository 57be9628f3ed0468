"""The visit record: its plaintext (memory only) and its sealed wire and disk form.

A record read back from the wire comes from a device the custodian cannot
see into, so `from_wire` caps its size and reads it by position, each field
of its type in preferred serialization (one accepted encoding, no general
CBOR decoder); `open` checks every plaintext field's type and range before
handing out a visit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from firmware import strictcbor
from firmware.store import seal
from firmware.tokens.verdict import Claims
from firmware.uplink import topics

WIRE_VERSION = 1
MAX_WIRE = 4096  # a sealed record is about 250 bytes; anything near this is not one
MAX_ID = 64  # an issuer name's length, like a venue's or device's id (topics.ID)
RID_BYTES = 16
KINDS = ("KP1", "DCC")


class PlaintextError(ValueError):
    """An opened record whose plaintext is not a visit (not CBOR, not the map, a field of the wrong type)."""


class EnvelopeMismatch(ValueError):
    """An opened record whose sealed rid, venue, device or time is not its clear envelope's: relabelled."""


@dataclass(frozen=True)
class Visit:
    """Plaintext `{v, rid, venue, device, ts, iss, cti, kind}`; never written anywhere in clear."""

    rid: bytes
    venue: str
    device: str
    ts: int
    iss: str
    cti: bytes | str = field(repr=False)  # a KP1 token id, or a DCC's UVCI
    kind: str = "KP1"

    @classmethod
    def of(cls, claims: Claims, venue: str, device: str, ts: int) -> "Visit":
        return cls(os.urandom(16), venue, device, ts, claims.iss, claims.cti, claims.kind)

    def plaintext(self) -> bytes:
        return cbor2.dumps(
            {
                "v": 1,
                "rid": self.rid,
                "venue": self.venue,
                "device": self.device,
                "ts": self.ts,
                "iss": self.iss,
                "cti": self.cti,
                "kind": self.kind,
            }
        )

    def seal(self, authority: X25519PublicKey) -> "SealedRecord":
        aad = seal.aad_for(self.rid, self.venue, self.device)
        return SealedRecord(self.rid, self.venue, self.device, self.ts, seal.seal(self.plaintext(), authority, aad))


@dataclass(frozen=True)
class SealedRecord:
    """`[1, rid, venue, device, ts, enc_and_ct]`: what the card and the broker see."""

    rid: bytes
    venue: str
    device: str
    ts: int
    enc_and_ct: bytes = field(repr=False)

    def wire(self) -> bytes:
        return cbor2.dumps([WIRE_VERSION, self.rid, self.venue, self.device, self.ts, self.enc_and_ct])

    @classmethod
    def from_wire(cls, data: bytes) -> "SealedRecord":
        """Raises strictcbor.CborError (a ValueError) for anything but a version 1 record as `wire` writes it."""
        r = strictcbor.Reader(data, MAX_WIRE)
        if r.array("record", 6) != 6 or r.uint("version") != WIRE_VERSION:
            raise strictcbor.CborError("not a version 1 sealed visit record")
        rid, venue, device = r.bstr("rid"), r.tstr("venue"), r.tstr("device")
        ts, enc_and_ct = r.uint("ts"), r.bstr("sealed part")
        r.end()
        if len(rid) != RID_BYTES:
            raise strictcbor.CborError("its rid is not 16 bytes")
        if not (topics.ID.fullmatch(venue) and topics.ID.fullmatch(device)):
            raise strictcbor.CborError("its venue or device is not an id (one topic level of 1-64 characters)")
        return cls(rid, venue, device, ts, enc_and_ct)

    def open(self, authority: X25519PrivateKey) -> dict[str, Any]:
        """The authority's side: the plaintext record as a dict, every field checked.

        Raises cryptography's InvalidTag for another key or a tampered record,
        PlaintextError or EnvelopeMismatch after it opened. The aad concatenates
        rid, venue and device without lengths (DESIGN.md), so the clear
        envelope is also compared with the sealed copy: a relabelled record
        (another venue, device, rid or time) is refused.
        """
        aad = seal.aad_for(self.rid, self.venue, self.device)
        opened = seal.open_sealed(self.enc_and_ct, authority, aad)
        try:
            plain = strictcbor.loads(opened, max_bytes=MAX_WIRE, max_depth=2)
        except strictcbor.CborError as exc:
            raise PlaintextError(f"the plaintext: {exc}") from None
        if not (type(plain) is dict and set(plain) == {"v", "rid", "venue", "device", "ts", "iss", "cti", "kind"}):
            raise PlaintextError("the plaintext is not a visit's map")
        sealed = tuple(plain[k] for k in ("rid", "venue", "device", "ts"))
        if sealed != (self.rid, self.venue, self.device, self.ts) or tuple(map(type, sealed)) != (bytes, str, str, int):
            raise EnvelopeMismatch("the clear envelope does not match the sealed record")
        iss, cti, kind = plain["iss"], plain["cti"], plain["kind"]
        if type(plain["v"]) is not int or plain["v"] != 1:
            raise PlaintextError("the plaintext is not of version 1")
        if not (isinstance(iss, str) and 0 < len(iss) <= MAX_ID and kind in KINDS):
            raise PlaintextError("the plaintext's issuer or kind is not a visit's")
        if not (kind == "KP1" and isinstance(cti, bytes) and len(cti) == 16
                or kind == "DCC" and isinstance(cti, str) and 0 < len(cti) <= 256):
            raise PlaintextError("the plaintext's token id is not one of its kind")
        return plain
