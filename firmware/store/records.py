"""The visit record: its plaintext (memory only) and its sealed wire and disk form."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from firmware.store import seal
from firmware.tokens.verdict import Claims

WIRE_VERSION = 1


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
        obj = cbor2.loads(data)
        if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == WIRE_VERSION):
            raise ValueError("not a version 1 sealed visit record")
        _, rid, venue, device, ts, enc_and_ct = obj
        types = (bytes, str, str, int, bytes)
        if not all(isinstance(v, t) for v, t in zip((rid, venue, device, ts, enc_and_ct), types)):
            raise ValueError("a sealed visit record field has the wrong type")
        return cls(rid, venue, device, ts, enc_and_ct)

    def open(self, authority: X25519PrivateKey) -> dict:
        """The authority's side: the plaintext record as a dict.

        The aad concatenates rid, venue and device without lengths (DESIGN.md), so
        the clear envelope is also compared with the sealed copy: a relabelled
        record (another venue, device, rid or time) is refused.
        """
        aad = seal.aad_for(self.rid, self.venue, self.device)
        plain = cbor2.loads(seal.open_sealed(self.enc_and_ct, authority, aad))
        envelope = (self.rid, self.venue, self.device, self.ts)
        if tuple(plain.get(k) for k in ("rid", "venue", "device", "ts")) != envelope:
            raise ValueError("the clear envelope does not match the sealed record")
        return plain
