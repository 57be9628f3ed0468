"""COSE_Sign1 (RFC 9052) with Ed25519, the envelope of KP1 tokens, trust lists and revocation manifests.

Read by position where the layout is qrgate's own (`parse_eddsa_sign1`: the
signature is checked before any CBOR is decoded), else through the strict
decoder (`firmware.strictcbor`); any structural surprise is a `CoseError`,
which callers turn into the `malformed` rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard
from dataclasses import dataclass, field

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware import strictcbor
from firmware.keys import kid_of

COSE_SIGN1_TAG = 18
HDR_ALG = 1
HDR_KID = 4
ALG_EDDSA = -8
MAX_BYTES = 1 << 20  # the largest COSE message qrgate reads: a trust list


class CoseError(ValueError):
    """The bytes are not a well-formed COSE_Sign1 of the kind qrgate accepts."""


# cbor2 decodes arrays inside a tag as tuples and maps as frozendicts. Exact type
# tests, not isinstance against the Mapping ABC: this runs on every token.
_ARRAYS = (list, tuple)
_MAPS = (dict, cbor2.frozendict)


def is_array(obj: object) -> bool:
    return type(obj) in _ARRAYS


def is_map(obj: object) -> TypeGuard[Mapping[Any, Any]]:
    return type(obj) in _MAPS


@dataclass(frozen=True)
class Sign1:
    protected: bytes  # the serialized protected header, signed as is
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes
    # The Sig_structure, when the parser could cut it from the input as it stands.
    tbs: bytes | None = field(default=None, repr=False, compare=False)

    def sig_structure(self) -> bytes:
        if self.tbs is not None:
            return self.tbs
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])

    def verify(self, key: Ed25519PublicKey) -> bool:
        if self.alg != ALG_EDDSA:
            return False
        try:
            key.verify(self.signature, self.sig_structure())
        except InvalidSignature:
            return False
        return True


def strict_loads(data: bytes, tags: frozenset[int] = frozenset()) -> object:
    """One CBOR item without semantic tags (but `tags`), indefinite lengths, duplicate keys or trailing bytes."""
    try:
        return strictcbor.loads(data, max_bytes=MAX_BYTES, tags=tags)
    except strictcbor.CborError as exc:
        raise CoseError(str(exc)) from None


def labelled_map(obj: object) -> Mapping[Any, Any]:
    """A map whose labels are exactly ints or texts, as COSE and CWT define them.

    Python finds `m.get(1)` under the label true or 1.0 too (True == 1.0 == 1),
    so a map with such labels must not reach code that reads it by label.
    """
    if not is_map(obj):
        raise CoseError("not a map")
    if any(type(label) not in (int, str) for label in obj):
        raise CoseError("a map label is neither an integer nor a text")
    return obj


def sign1(payload: bytes, key: Ed25519PrivateKey, kid: bytes) -> bytes:
    protected = cbor2.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: kid})
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    signature = key.sign(to_sign)
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


# Tag 18, an array of four, then the protected header as a 13-byte bstr: {1: -8, 4: h'<8 bytes>'}.
_EDDSA_HEAD = bytes.fromhex("d2844da201270448")
_EMPTY_MAP = 0xA0
_SIG_HEAD = bytes.fromhex("5840")  # bstr of 64 bytes
_TBS_HEAD = bytes.fromhex("84") + cbor2.dumps("Signature1")  # an array of four, then "Signature1"
_EMPTY_BSTR = b"\x40"  # external_aad


def parse_eddsa_sign1(data: bytes) -> Sign1:
    """The one accepted layout of qrgate's own COSE_Sign1, read by position.

    Exactly what `sign1` writes: the protected header {1: -8 (EdDSA), 4: an
    8-byte kid} and nothing else, an empty unprotected header, a payload bstr,
    a 64-byte signature, all in preferred serialization and nothing after.
    Equivalent to `parse_sign1` plus those rules, at a tenth of the cost: this
    runs on every token shown at the door, valid or not.
    """
    if len(data) > MAX_BYTES or data[:8] != _EDDSA_HEAD or len(data) < 17 + 1 + 66 or data[16] != _EMPTY_MAP:
        raise CoseError("not the EdDSA COSE_Sign1 layout")
    head = data[17]
    if 0x40 <= head <= 0x57:
        length, start = head - 0x40, 18
    elif head == 0x58 and data[18] >= 24:
        length, start = data[18], 19
    elif head == 0x59 and int.from_bytes(data[18:20], "big") >= 256:
        length, start = int.from_bytes(data[18:20], "big"), 20
    elif head == 0x5A and int.from_bytes(data[18:22], "big") >= 1 << 16:  # a trust list of 64 KiB or more
        length, start = int.from_bytes(data[18:22], "big"), 22
    else:
        raise CoseError("payload is not a bstr in preferred serialization")
    end = start + length
    if len(data) != end + 66 or data[end : end + 2] != _SIG_HEAD:
        raise CoseError("signature is not the last 64 bytes")
    # Preferred serialization throughout, so the Sig_structure reuses the encoded header and payload.
    tbs = b"".join((_TBS_HEAD, data[2:16], _EMPTY_BSTR, data[17:end]))
    return Sign1(data[3:16], ALG_EDDSA, data[8:16], data[start:end], data[end + 2 :], tbs)


def root_signed(data: object, root: Ed25519PublicKey | None, what: str, max_bytes: int) -> bytes:
    """The payload of what the trust list's root signs (a trust list, a revocation manifest): its size under
    `max_bytes`, its envelope the one layout the root writes and, unless `root` is None (a technician's look at
    a file), its signature the root's, all before a byte of its CBOR is decoded. CoseError naming `what` else."""
    if not isinstance(data, bytes):
        raise CoseError(f"{what} is not bytes")
    if len(data) > max_bytes:
        raise CoseError(f"{what} is larger than {max_bytes >> 10} KiB" if max_bytes < 1 << 20
                        else f"{what} is larger than {max_bytes >> 20} MiB")
    try:
        envelope = parse_eddsa_sign1(data)
    except CoseError as exc:
        raise CoseError(f"{what} is not a COSE_Sign1 as the root signs them: {exc}") from None
    if root is not None:
        if envelope.kid != kid_of(root):
            raise CoseError(f"{what} is signed by a different root key")
        if not envelope.verify(root):
            raise CoseError(f"{what} signature does not verify")
    return envelope.payload


def parse_sign1(data: bytes) -> Sign1:
    """Parse a tagged COSE_Sign1 as qrgate signs them, and nothing looser.

    The algorithm and kid come from the protected header only, the unprotected
    header must be empty, and the envelope must be in CBOR's preferred
    serialization: one signed token then has exactly one accepted encoding, so
    no one can make a "new" token from a seen one by re-encoding it.
    """
    obj = strict_loads(data, tags=frozenset({COSE_SIGN1_TAG}))
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise CoseError("not a COSE_Sign1 tag")
    body = obj.value
    if not is_array(body) or len(body) != 4:
        raise CoseError("COSE_Sign1 must have four elements")
    protected, unprotected, payload, signature = body
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise CoseError("COSE_Sign1 element of the wrong type")
    if not is_map(unprotected) or unprotected:
        raise CoseError("unprotected header is not an empty map")
    if len(signature) != 64:
        raise CoseError("signature is not 64 bytes")
    if cbor2.dumps(obj) != data:
        raise CoseError("COSE_Sign1 not in preferred serialization")
    header = labelled_map(strict_loads(protected))
    alg, kid = header.get(HDR_ALG), header.get(HDR_KID)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise CoseError("no algorithm in the protected header")
    if not isinstance(kid, bytes):
        raise CoseError("no kid in the protected header")
    return Sign1(protected, alg, kid, payload, signature)
