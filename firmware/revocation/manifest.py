"""A revocation list's signed manifest, and the check of a bucket body against it.

The list is the set of the device's 8-byte keys (revocation.hashes), split into
2^bits buckets by their top bits, so that a change touches one bucket. The
manifest is a COSE_Sign1 (Ed25519) by the trust list's root, read as the trust
list is (tokens.trustlist): its size capped first, its envelope read by position
and its signature checked before a byte of CBOR is decoded, then its payload
read by schema (strictcbor.Reader):

    {"seq": uint, "issued_at": time, "not_after": time, "bits": 0..8,
     "buckets": [[count, SHA-256 of the body], ...]}       (2^bits of them)

Each bucket's body is its keys, sorted, unique, 8 bytes each big-endian, at most
1 MiB (131,072 keys), and is addressed by its SHA-256 alone: a body is read only
when its size is under the cap and its hash is one the verified manifest names,
so nothing unsigned is ever parsed; then it must be exactly its count, sorted,
unique, and every key in its bucket. An empty bucket has no body (its hash must
be that of no bytes). At most 256 buckets of 1 MiB: a list of up to 33 million
entries. The manifest's required keys are not the trust list's, and each schema
refuses the other's keys, so the root's signature on one never passes as the other.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from numpy.typing import NDArray

from firmware import strictcbor
from firmware.errors import RevocationError
from firmware.revocation.hashes import KEY_BYTES
from firmware.tokens import cose

MAX_MANIFEST = 64 * 1024  # 256 buckets take 10 KiB
MAX_BITS = 8
MAX_BODY = 1 << 20  # one MQTT message (uplink.topics.MAX_PACKET)
MAX_KEYS = MAX_BODY // KEY_BYTES
MAX_TIME = 1 << 40
DIGEST_BYTES = 32
EMPTY = hashlib.sha256(b"").digest()


@dataclass(frozen=True)
class Bucket:
    count: int
    digest: bytes  # the SHA-256 of its body


@dataclass(frozen=True)
class Manifest:
    seq: int
    issued_at: int
    not_after: int
    bits: int
    buckets: tuple[Bucket, ...]
    raw: bytes = field(default=b"", repr=False)  # the signed bytes, as kept on disk

    @property
    def entries(self) -> int:
        return sum(b.count for b in self.buckets)

    def bucket_of(self, key: int) -> int:
        return key >> (64 - self.bits)

    @functools.cached_property
    def wanted(self) -> dict[bytes, int]:
        """The bodies it names, by their SHA-256: the bucket each is (empty buckets have none)."""
        return {b.digest: i for i, b in enumerate(self.buckets) if b.count}


def _time(r: strictcbor.Reader, name: str) -> int:
    value = r.uint(name)
    if value >= MAX_TIME:
        raise strictcbor.CborError(f"its {name} is not a time")
    return value


def _bits(r: strictcbor.Reader) -> int:
    bits = r.uint("bits")
    if bits > MAX_BITS:
        raise strictcbor.CborError(f"its bits is over {MAX_BITS}")
    return bits


def _bucket(r: strictcbor.Reader) -> Bucket:
    if r.array("bucket", 2) != 2:
        raise strictcbor.CborError("a bucket is not [count, digest]")
    count = r.uint("bucket count")
    if count > MAX_KEYS:
        raise strictcbor.CborError(f"a bucket holds over {MAX_KEYS} keys")
    digest = r.bstr("bucket digest")
    if len(digest) != DIGEST_BYTES:
        raise strictcbor.CborError("a bucket digest is not 32 bytes")
    if (count == 0) != (digest == EMPTY):
        raise strictcbor.CborError("an empty bucket's digest is not that of no bytes, or a body's is")
    return Bucket(count, digest)


def _buckets(r: strictcbor.Reader) -> list[Bucket]:
    return [_bucket(r) for _ in range(r.array("buckets", 1 << MAX_BITS))]


_PAYLOAD: dict[bytes, tuple[str, Callable[[strictcbor.Reader], Any]]] = {
    b"seq": ("seq", lambda r: _time(r, "seq")),
    b"issued_at": ("issued_at", lambda r: _time(r, "issued_at")),
    b"not_after": ("not_after", lambda r: _time(r, "not_after")),
    b"bits": ("bits", _bits),
    b"buckets": ("buckets", _buckets),
}


def parse(data: bytes, root: Ed25519PublicKey | None) -> Manifest:
    """Verify, then read, a signed manifest. `root=None` skips the signature (a technician's look at a file)."""
    try:
        r = strictcbor.Reader(cose.root_signed(data, root, "revocation manifest", MAX_MANIFEST), MAX_MANIFEST)
        body = r.fields("payload", _PAYLOAD, [name for name, _ in _PAYLOAD.values()])
        r.end()
    except cose.CoseError as exc:
        raise RevocationError(str(exc)) from None
    except strictcbor.CborError as exc:
        raise RevocationError(f"revocation manifest payload: {exc}") from None
    buckets, bits = tuple(body["buckets"]), body["bits"]
    if len(buckets) != 1 << bits:
        raise RevocationError(f"revocation manifest has {len(buckets)} buckets, not 2^{bits}")
    named = [b.digest for b in buckets if b.count]
    if len(set(named)) != len(named):
        raise RevocationError("revocation manifest names one body for two buckets")
    return Manifest(body["seq"], body["issued_at"], body["not_after"], bits, buckets, raw=data)


def check_body(manifest: Manifest, data: bytes) -> tuple[int, NDArray[np.uint64]]:
    """A body the manifest wants: (its bucket, its keys); else RevocationError, read no further than needed."""
    if not isinstance(data, bytes):
        raise RevocationError("a revocation body is not bytes")
    if len(data) > MAX_BODY:
        raise RevocationError(f"a revocation body is larger than {MAX_BODY} bytes")
    index = manifest.wanted.get(hashlib.sha256(data).digest())
    if index is None:
        raise RevocationError("not a body the revocation manifest wants")
    count = manifest.buckets[index].count
    if len(data) != count * KEY_BYTES:
        raise RevocationError(f"revocation body of bucket {index} is not {count} keys")
    keys = np.frombuffer(data, ">u8")
    if not bool(np.all(keys[1:] > keys[:-1])):
        raise RevocationError(f"revocation body of bucket {index} is not sorted and unique")
    if manifest.bucket_of(int(keys[0])) != index or manifest.bucket_of(int(keys[-1])) != index:
        raise RevocationError(f"revocation body of bucket {index} holds keys of another bucket")
    return index, keys
