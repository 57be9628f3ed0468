"""`qrgate fuzz revocation`: DCC revocation manifests and bucket bodies, mutated, against what the door reads them with.

An input is a manifest's bytes and, when a body is thrown at it too, a body's
bytes: `revocation.manifest.parse` with the root's key, then `check_body`
against what it answered, the way the store takes what arrives over MQTT. Each
must answer a value or raise RevocationError, the named refusal, within 50 ms
(both run on paho's thread); anything else escaping is a crash.

Seeds are lists an in-memory root signed (0 to 3 bits, empty to full buckets),
with each of their bodies, and refused ones: another root, a spoilt signature,
a body of another list. Mutants: bytes changed anywhere (engine.mutate_bytes);
payloads changed by field (values of another type or out of range, keys
missing, repeated or foreign, the bucket layout broken, hostile CBOR from
lab.fuzz.cbor spliced in) and signed again by the root; lists signed by another
root under the root's kid; manifests around the 64 KiB cap; bodies changed by
bytes, cut or lengthened, their keys swapped, repeated or moved to another
bucket, bodies of another list, bodies over the 1 MiB cap; and bodies the root
signed a manifest for whatever they hold (unsorted, repeated keys, keys of
another bucket, a count that is not theirs), so the checks behind the hash are
reached.

The oracle is a model of the format of its own (cbor2 and the signature checked
anew, the payload re-encoded byte for byte, every key of a body looked at), not
the parser: accepted means the model takes the same manifest, and a body the
model finds in the same bucket with the same keys.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping
from functools import partial

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.errors import RevocationError
from firmware.keys import kid_of
from firmware.revocation import manifest as manifests
from lab.fuzz.cbor import item, random_path, splice
from lab.fuzz.engine import NOW, Judgement, Seed, Target, mutate_bytes

MAX_VERIFY_US = 50_000.0
FIELDS = ("seq", "issued_at", "not_after", "bits", "buckets")
_LABELS = (("larger than 64 KiB", "too_large"), ("not a COSE_Sign1", "not_cose"), ("different root", "other_root"),
           ("does not verify", "bad_signature"), ("buckets, not 2^", "bad_layout"), ("one body for two", "bad_layout"),
           ("not bytes", "not_bytes"), ("payload", "bad_payload"), ("body is larger", "body_too_large"),
           ("wants", "body_unwanted"), ("sorted", "body_unsorted"), ("another bucket", "body_bucket"),
           (" keys", "body_count"))


# --- the model ---------------------------------------------------------------------------------------


def model_manifest(data: object, root: Ed25519PublicKey) -> dict | None:
    """The manifest these bytes are, by the format's definition, or None."""
    if not isinstance(data, bytes) or len(data) > manifests.MAX_MANIFEST:
        return None
    try:
        obj = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - not CBOR at all
        return None
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == 18 and isinstance(obj.value, (list, tuple))
            and len(obj.value) == 4 and cbor2.dumps(obj) == data):
        return None
    protected, unprotected, payload, signature = obj.value
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping) and not unprotected
            and isinstance(payload, bytes)
            and isinstance(signature, bytes) and len(signature) == 64):
        return None
    if protected != cbor2.dumps({1: -8, 4: kid_of(root)}):
        return None
    try:
        root.verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))
        body = cbor2.loads(payload)
    except (InvalidSignature, Exception):  # noqa: BLE001 - unsigned, or no CBOR
        return None
    if not isinstance(body, dict) or set(body) != set(FIELDS) or cbor2.dumps(body) != payload:
        return None
    times = [body[k] for k in ("seq", "issued_at", "not_after")]
    if not all(type(t) is int and 0 <= t < 1 << 40 for t in times):
        return None
    bits, buckets = body["bits"], body["buckets"]
    if not (type(bits) is int and 0 <= bits <= manifests.MAX_BITS and isinstance(buckets, list)
            and len(buckets) == 1 << bits):
        return None
    named = []
    for b in buckets:
        if not (isinstance(b, list) and len(b) == 2 and type(b[0]) is int and 0 <= b[0] <= manifests.MAX_KEYS
                and isinstance(b[1], bytes) and len(b[1]) == 32 and (b[0] == 0) == (b[1] == manifests.EMPTY)):
            return None
        if b[0]:
            named.append(b[1])
    if len(set(named)) != len(named):
        return None
    return body


def model_body(m: dict, data: object) -> tuple[int, list[int]] | None:
    """(bucket, keys) of a body the modelled manifest wants, or None."""
    if not isinstance(data, bytes) or len(data) > manifests.MAX_BODY:
        return None
    digest = hashlib.sha256(data).digest()
    found = [i for i, (count, d) in enumerate(m["buckets"]) if count and d == digest]
    if not found:
        return None
    index = found[0]
    if len(data) != 8 * m["buckets"][index][0]:
        return None
    keys = [int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)]
    if any(a >= b for a, b in zip(keys, keys[1:])) or any(k >> (64 - m["bits"]) != index for k in keys):
        return None
    return index, keys


def may_accept(x: object, root: Ed25519PublicKey) -> bool:
    data, body = x  # type: ignore[misc]
    m = model_manifest(data, root)
    return m is not None and (body is None or model_body(m, body) is not None)


# --- what is under test, and its judge ---------------------------------------------------------------


def _verify(x: tuple[bytes, bytes | None], root: Ed25519PublicKey, parse=manifests.parse,
            check=manifests.check_body) -> tuple:
    data, body = x
    try:
        m = parse(data, root)
    except RevocationError as exc:
        return ("manifest", exc)
    if body is None:
        return ("manifest", m)
    try:
        return ("body", check(m, body), m)
    except RevocationError as exc:
        return ("body", exc, m)


def _label(exc: RevocationError) -> str:
    text = str(exc)
    return next((label for words, label in _LABELS if words in text), "refused")


def _judge(x: tuple, answer: tuple, root: Ed25519PublicKey) -> Judgement:
    data, body = x
    if answer[0] == "manifest" and isinstance(answer[1], RevocationError):
        return _label(answer[1]), False, None
    m = answer[1] if answer[0] == "manifest" else answer[2]
    want = model_manifest(data, root)
    if want is None:
        return "accepted_manifest", True, "accepted a manifest that is not one the root signed as valid"
    if (m.seq, m.issued_at, m.not_after, m.bits) != tuple(want[k] for k in FIELDS[:4]) or \
            [[b.count, b.digest] for b in m.buckets] != want["buckets"]:
        return "accepted_manifest", True, "read a manifest other than the one signed"
    if answer[0] == "manifest":
        return "accepted_manifest", True, None
    if isinstance(answer[1], RevocationError):
        return _label(answer[1]), False, None
    index, keys = answer[1]
    got = model_body(want, body)
    if got is None:
        return "accepted_body", True, "accepted a body the manifest does not want as it is"
    if got != (index, [int(k) for k in keys]):
        return "accepted_body", True, "read a body other than the one sent"
    return "accepted_body", True, None


# --- the world and its seeds -------------------------------------------------------------------------


class World:
    def __init__(self, seed: int):
        rng = random.Random(f"revocation-world:{seed}")
        self.rng = rng
        self.root = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.other = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.kid = kid_of(self.root.public_key())
        self.lists = [self.built(bits, n) for bits, n in ((0, 0), (0, 1), (0, 700), (1, 40), (2, 3), (3, 200))]

    def sign(self, payload: bytes, key: Ed25519PrivateKey | None = None, kid: bytes | None = None) -> bytes:
        from firmware.tokens import cose

        return cose.sign1(payload, key or self.root, kid or self.kid)

    def built(self, bits: int, n: int) -> tuple[bytes, list[bytes], dict]:
        """A list of `n` random keys in 2^bits buckets: (manifest, bodies, payload)."""
        keys = sorted({self.rng.getrandbits(64) for _ in range(n)})
        bodies, buckets = [], []
        for i in range(1 << bits):
            mine = [k for k in keys if k >> (64 - bits) == i]
            body = b"".join(k.to_bytes(8, "big") for k in mine)
            if body:
                bodies.append(body)
            buckets.append([len(mine), hashlib.sha256(body).digest()])
        payload = {"seq": self.rng.randrange(1, 1 << 20), "issued_at": NOW, "not_after": NOW + 7 * 86400,
                   "bits": bits, "buckets": buckets}
        return self.sign(cbor2.dumps(payload)), bodies, payload

    def wanting(self, body: bytes, count: int | None = None, bits: int = 0, index: int = 0) -> bytes:
        """A manifest the root signed naming `body` for bucket `index` whatever it holds."""
        buckets = [[0, manifests.EMPTY] for _ in range(1 << bits)]
        buckets[index] = [len(body) // 8 if count is None else count, hashlib.sha256(body).digest()]
        payload = {"seq": 1, "issued_at": NOW, "not_after": NOW + 86400, "bits": bits, "buckets": buckets}
        return self.sign(cbor2.dumps(payload))


def _seeds(w: World) -> list[Seed]:
    seeds = []
    for manifest, bodies, _ in w.lists:
        seeds.append(Seed((manifest, None), manifest, "accepted_manifest"))
        seeds += [Seed((manifest, b), b, "accepted_body") for b in bodies]
    manifest, bodies, payload = w.lists[3]
    other = w.lists[5][1][0]
    spoilt = bytearray(manifest)
    spoilt[-1] ^= 1
    seeds += [
        Seed((w.sign(cbor2.dumps(payload), w.other, kid_of(w.other.public_key())), None), manifest, "other_root"),
        Seed((w.sign(cbor2.dumps(payload), w.other, w.kid), None), manifest, "bad_signature"),
        Seed((bytes(spoilt), None), manifest, "bad_signature"),
        Seed((manifest, other), other, "body_unwanted"),
        Seed((w.wanting(k := _keys(5, 9, 7)), k), k, "body_unsorted"),
        Seed((w.wanting(k := _keys(5, 5)), k), k, "body_unsorted"),
        Seed((w.wanting(k := _keys(1, 1 << 63), bits=1), k), k, "body_bucket"),
        Seed((w.wanting(k := _keys(1, 2), count=3), k), k, "body_count"),
        Seed((w.sign(cbor2.dumps({**payload, "bits": 2})), None), manifest, "bad_layout"),
        Seed((b"", None), b"", "not_cose"),
    ]
    return seeds


def _keys(*keys: int) -> bytes:
    return b"".join(k.to_bytes(8, "big") for k in keys)


# --- mutants -----------------------------------------------------------------------------------------

_ODD = (None, True, -1, 1.5, "3", b"", b"\x00" * 32, [], {}, 2**40, 2**64 - 1, 1 << 63)


def _payload_changed(rng: random.Random, w: World, payload: dict) -> bytes:
    """The payload with one change, encoded (sometimes with hostile CBOR spliced in), and signed by the root."""
    p = {k: (list(map(list, v)) if k == "buckets" else v) for k, v in payload.items()}
    k = rng.randrange(9)
    if k == 0:  # a field of a wrong kind or out of range
        p[rng.choice(FIELDS)] = rng.choice(_ODD)
    elif k == 1:  # a field gone, or one too many
        if rng.random() < 0.5:
            p.pop(rng.choice(FIELDS))
        else:
            p[rng.choice(("extra", "seq2", "Seq", ""))] = rng.choice(_ODD)
    elif k == 2:  # bits other than the buckets' count
        p["bits"] = rng.choice((0, 1, 2, 3, 4, 8, 9))
    elif k == 3 and p["buckets"]:  # a bucket spoilt
        b = rng.choice(p["buckets"])
        form = rng.randrange(5)
        if form == 0:
            b[0] = rng.choice((0, 1, manifests.MAX_KEYS, manifests.MAX_KEYS + 1, -1))
        elif form == 1:
            b[1] = rng.choice((b[1][:31], b[1] + b"\x00", manifests.EMPTY, hashlib.sha256(b"x").digest(), b""))
        elif form == 2:
            b.append(0)
        elif form == 3:
            b.pop()
        else:
            p["buckets"][rng.randrange(len(p["buckets"]))] = list(b)  # a body named twice
    elif k == 4:  # buckets added or dropped
        if rng.random() < 0.5 and p["buckets"]:
            p["buckets"].pop()
        else:
            p["buckets"] += [[0, manifests.EMPTY]] * rng.choice((1, 2, 256))
    elif k == 5:  # valid values, still signed: the model accepts these
        p["seq"], p["issued_at"] = rng.randrange(1 << 40), rng.randrange(1 << 40)
    elif k == 6:  # the same values, not in preferred serialization
        raw = cbor2.dumps(p)
        i = rng.randrange(len(raw))
        return w.sign(raw[:i] + rng.choice((b"\x18", b"\x19\x00", b"\x5f", b"\xbf", b"\xff")) + raw[i:])
    elif k == 7:  # hostile CBOR where a value stood
        return w.sign(splice(p, random_path(rng, p), item(rng, rng.choice((64, 4096, 65_536))).data, cbor2.dumps))
    else:  # repeated keys, or trailing bytes
        raw = cbor2.dumps(p)
        if rng.random() < 0.5:
            return w.sign(raw + rng.choice((b"\x00", b"\xa0", raw)))
        field = rng.choice(FIELDS)
        extra = cbor2.dumps(field) + cbor2.dumps(p.get(field, 1))
        return w.sign(bytes((0xA0 | min(len(p) + 1, 23),)) + raw[1:] + extra)
    return w.sign(cbor2.dumps(p))


def _body_changed(rng: random.Random, body: bytes) -> bytes:
    keys = [body[i : i + 8] for i in range(0, len(body), 8)]
    k = rng.randrange(6)
    if k == 0 or not keys:
        return mutate_bytes(rng, body)
    if k == 1:
        return body[: rng.randrange(len(body) + 1)]
    if k == 2:
        return body + rng.choice((b"\x00", bytes(8), keys[-1], rng.randbytes(8)))
    if k == 3 and len(keys) > 1:
        i = rng.randrange(len(keys) - 1)
        keys[i], keys[i + 1] = keys[i + 1], keys[i]
    elif k == 4:
        keys.insert(rng.randrange(len(keys)), rng.choice(keys))
    else:
        keys[rng.randrange(len(keys))] = rng.randbytes(8)
    return b"".join(keys)


def _hostile_body(rng: random.Random, w: World) -> tuple[bytes, bytes]:
    """A body the root signs a manifest for whatever it holds, so the checks behind the hash are reached."""
    bits = rng.choice((0, 1, 2, 8))
    index = rng.randrange(1 << bits)
    base = index << (64 - bits) if bits else 0
    span = 1 << (64 - bits) if bits else 1 << 64
    keys = sorted(base + rng.randrange(span) for _ in range(rng.choice((1, 2, 3, 50, 512, 513))))
    k = rng.randrange(6)
    if k == 0:  # unsorted
        rng.shuffle(keys)
    elif k == 1:  # a key twice
        keys.insert(rng.randrange(len(keys)), rng.choice(keys))
        keys.sort()
    elif k == 2 and bits:  # a key of another bucket, first or last
        other = (index + rng.choice((-1, 1))) % (1 << bits)
        stray = (other << (64 - bits)) + rng.randrange(span)
        keys = sorted([*keys, stray])
    elif k == 3:  # all valid: the model takes it
        keys = sorted(set(keys))
    body = b"".join(x.to_bytes(8, "big") for x in keys)
    if k == 4:
        body = body[: -rng.randrange(1, 8)]
    count = None if k != 5 else len(keys) + rng.choice((-1, 1, 2**17))
    return w.wanting(body, count=count if count is None or 0 < count <= manifests.MAX_KEYS else None,
                     bits=bits, index=index), body


def _mutant(rng: random.Random, t: Target, stats: Counter, w: World) -> tuple[bytes, bytes | None]:
    manifest, bodies, payload = rng.choice(w.lists)
    k = rng.randrange(20)
    if k < 4:  # the manifest's bytes
        data = manifest
        for _ in range(rng.choice((1, 1, 2, 3))):
            data = mutate_bytes(rng, data)
        return data, None
    if k < 9:
        return _payload_changed(rng, w, payload), rng.choice(bodies) if bodies and rng.random() < 0.3 else None
    if k == 9:  # another root's signature, under its own kid or the root's
        return w.sign(cbor2.dumps(payload), w.other, rng.choice((w.kid, kid_of(w.other.public_key())))), None
    if k == 10:  # around the size cap
        room = manifests.MAX_MANIFEST - len(manifest) + rng.choice((-2, 0, 1, 2, 100))
        return w.sign(cbor2.dumps({**payload, "pad": b"x" * max(0, room)})), None
    if k < 15 and bodies:  # a genuine body, changed
        return manifest, _body_changed(rng, rng.choice(bodies))
    if k == 15:  # a body of another list
        other = rng.choice([b for _, bs, _ in w.lists for b in bs])
        return manifest, other
    if k == 16:  # over the body cap
        return manifest, bytes(manifests.MAX_BODY + rng.choice((1, 8)))
    return _hostile_body(rng, w)


def revocation_target(seed: int = 0, parse=None, check=None) -> Target:
    """Manifests and bodies against `manifest.parse` and `check_body` (or injected ones, for the harness's tests)."""
    w = World(seed)
    root = w.root.public_key()
    return Target(
        name="revocation",
        seeds=tuple(_seeds(w)),
        verify=partial(_verify, root=root, parse=parse or manifests.parse, check=check or manifests.check_body),
        may_accept=partial(may_accept, root=root),
        mutant=partial(_mutant, w=w),
        judge=partial(_judge, root=root),
        max_verify_us=MAX_VERIFY_US,
    )
