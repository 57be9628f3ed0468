"""`qrgate fuzz trustlist|ingest`: what arrives over the network, thrown at what reads it first.

The token targets' harness (lab.fuzz.engine: forked workers, a hang watch, one JSON
result) on bytes rather than texts. Each target brings its own inputs
(`Target.mutant`) and an oracle that reads what the code under test answered
(`Target.judge`), and each holds every input to 50 ms (`MAX_VERIFY_US`): one slow
message stops a door, or the custodian's ingest, for as long as it takes.

- trustlist: bytes into `tokens.trustlist.parse(data, root)`, which must answer
  a TrustList or raise TrustListError. Seeds are valid lists signed by an
  in-memory root (empty ones to ones of 1 MiB); mutants are the envelope's bytes,
  payloads broken and RE-SIGNED by the root, hostile CBOR re-signed, unsigned or
  wrongly signed hostile messages up to and past the 1 MiB cap, and lists
  signed by another root under the root's kid. A re-signed mutant only ever
  carries a change that makes it invalid whatever else it holds, so the oracle
  is one set: accepted => the bytes are a valid seed, read as signed.
- ingest: (topic, payload) into the custodian's path for one MQTT message:
  `custodian.ingest.check`, an insert into a real SqliteStorage (in memory, one
  per worker) for what it accepts, then the authority's `investigate._open`.
  Seeds are really sealed records, of version 1 (the oracle's model knows that
  layout; version 2's is held by tests/store/test_seal.py and left to a
  model of its own); mutants are the wire's bytes and fields,
  topics, hostile CBOR, oversized messages, relabelled envelopes, and
  plaintexts mutated and RE-SEALED to the authority's key so that the opening
  is reached. The oracle is a model of its own: what check accepts is the
  canonical encoding of a record within the rules; the storage never raises;
  `_open` never raises and returns a visit (plain str and int values) only for
  a plaintext the harness sealed as valid for that very envelope.

World keys derive from --seed and so do all mutations; what HPKE draws
(its ephemeral keys) is random, so sealed bytes alone differ between runs of
one seed. Findings are saved as hex (--out); the JSON result holds none.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import cbor2

from firmware.errors import TrustListError
from lab.fuzz.engine import NOW, Judgement, Seed, Target, mutate_bytes
from lab.fuzz.cbor import STRICT_REFUSES, head, item, random_path, splice, spoil
from firmware.store import seal, seal_v1
from firmware.store.records import MAX_WIRE, SealedRecord, Visit, sealed_v1
from firmware.store.seal import OpeningKey
from firmware.tokens.trustlist import MAX_AUTHORITY, MAX_ISSUERS, MAX_REVOKED, TrustList
from lab import signers

MAX_VERIFY_US = 50_000.0
MAX_LIST = 1 << 20  # trustlist.MAX_BYTES, as the contract says it
DAY_S = 86400


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def _pick(rng: random.Random, ops: tuple) -> object:
    """One of (op, weight) pairs."""
    return rng.choices([op for op, _ in ops], [w for _, w in ops])[0]


# --- the trust list ------------------------------------------------------------------------------

_EDDSA_PROTECTED = bytes.fromhex("a2012704")  # {1: -8, 4: ...}: the kid's bstr head and the kid follow
_BAD_INT = (-1, -(2**63), 1 << 40, 2**64 - 1, 2**64, True, False, 1.5, float(NOW), "1", b"\x01", None, [], {})
_NOT_LIST = (None, {}, "issuers", b"", 0, True, {"kid": b""}, 1.5)
_BAD_ISSUER = {
    "kid": (b"", bytes(7), bytes(9), "0123456789abcdef", 8, None, [b"\x00" * 8]),
    "iss": (b"naver", 5, None, ["naver"], 1.5),
    "alg": ("eddsa", "ES256", "Ed25519", -8, None, b"EdDSA", ""),
    "key": (bytes(31), bytes(33), b"", "k" * 32, None, 0),
    "not_before": _BAD_INT,
    "not_after": _BAD_INT,
}
_BAD_AUTHORITY = {
    "alg": ("x25519", "X448", "MLKEM1024-P384", "mlkem768-x25519", "", None, 1, b"X25519"),
    "key": (bytes(31), bytes(33), b"", "k" * 32, None, 0),
    "not_before": _BAD_INT,
    "not_after": _BAD_INT,
}
_BOMB_BYTES = 320_000  # the security review's message: ~320 KB, a tag 4 over a huge integer


@dataclass(frozen=True)
class ListWorld:
    """What the trust-list mutators need: the keys, and each valid seed's payload as the harness built it."""

    root: object  # Ed25519PrivateKey
    impostor: object  # another root: what it signs is never a list, under any kid
    kid: bytes  # the root's
    payloads: tuple[dict, ...]  # the valid seeds' payloads, to mutate
    encoded: tuple[bytes, ...]  # the same, encoded
    signed: tuple[bytes, ...]  # the same, signed: the valid seeds
    others: tuple[bytes, ...]  # the invalid seeds, whose bytes are mutated too
    weights: tuple[int, ...]  # large lists are mutated less often: one of 1 MiB costs 10 ms to re-sign
    issuer: dict  # a valid issuer entry, to spoil
    authority: dict  # a valid authority entry, to spoil
    der: bytes  # a document signer certificate, to spoil


def _envelope(kid: bytes, payload: bytes, signature: bytes, *, tag: bytes = b"\xd2", unprotected: bytes = b"\xa0",
              payload_head: bytes | None = None, sig_head: bytes = b"\x58\x40") -> bytes:
    """The root's COSE_Sign1 layout, piece by piece, so that any one piece can be spoilt."""
    protected = _EDDSA_PROTECTED + head(2, len(kid)) + kid
    return (tag + b"\x84" + head(2, len(protected)) + protected + unprotected
            + (head(2, len(payload)) if payload_head is None else payload_head) + payload + sig_head + signature)


def _signed(key, kid: bytes, payload: bytes) -> bytes:
    """`payload` under `kid`, signed by `key` (the root's own, or an impostor's)."""
    protected = _EDDSA_PROTECTED + head(2, len(kid)) + kid
    return _envelope(kid, payload, key.sign(cbor2.dumps(["Signature1", protected, b"", payload])))


def _list_payload(seq: int, issued_at: int, issuers: list, revoked: list, dsc: list, authority: list,
                  not_after: int | None = None) -> dict:
    """A payload as trustlist.build writes one, with the harness's own field values."""
    return {"seq": seq, "issued_at": issued_at, "not_after": issued_at + 30 * DAY_S if not_after is None else not_after,
            "issuers": issuers, "revoked": revoked, "dsc": dsc, "authority": authority}


def _issuer_entry(kid: bytes, iss: str, key: bytes, not_before: int = NOW - DAY_S, not_after: int = NOW + 365 * DAY_S):
    return {"kid": kid, "iss": iss, "alg": "EdDSA", "key": key, "not_before": not_before, "not_after": not_after}


def _authority_entry(key: bytes, not_before: int = NOW - DAY_S, not_after: int = NOW + 30 * DAY_S) -> dict:
    return {"alg": "X25519", "key": key, "not_before": not_before, "not_after": not_after}


def _fill(total: int, base: int) -> int:
    """How long a byte string makes an encoding `total` bytes, where it is `base` bytes with that string empty."""
    for size in (1, 2, 3, 5, 9):
        n = total - base + 1 - size
        if n >= 0 and len(head(2, n)) == size:
            return n
    raise ValueError(f"no byte string makes {base} bytes into {total}")


def _padded(payload: dict, length: int, key: bytes, der: bytes) -> dict:
    """`payload` grown to an encoding of exactly `length` bytes with nothing a list may not hold: copies of a
    document signer for the bulk, revoked kids (9 bytes each) for the rest, and one more issuer whose name's
    length (24 to 64 characters: one head size) makes up the last bytes."""
    bulk = max(0, (length - len(cbor2.dumps(payload))) // (len(der) + 3) - 2)
    dsc = [*payload["dsc"], *[der] * bulk]

    def grown(kids: int, name: int) -> dict:
        return {**payload, "dsc": dsc, "revoked": [*payload["revoked"], *(i.to_bytes(8, "big") for i in range(kids))],
                "issuers": [*payload["issuers"], _issuer_entry(b"\xee" * 8, "p" * name, key)]}

    kids = 0
    for _ in range(8):
        extra = length - len(cbor2.dumps(grown(kids, 40)))
        if -16 <= extra <= 24:
            return grown(kids, 40 + extra)
        kids = max(0, kids + extra // 9)
    raise ValueError(f"no padding makes this payload {length} bytes")


def _one_byte_more(padded: dict) -> dict:
    """A payload `_padded` made, one byte longer: its last issuer's name a character longer, or a kid more and
    eight characters shorter."""
    *issuers, last = padded["issuers"]
    name, revoked = last["iss"], list(padded["revoked"])
    if len(name) >= 32:
        name, revoked = name[:-8], [*revoked, bytes(8)]
    else:
        name += "p"
    return {**padded, "revoked": revoked, "issuers": [*issuers, {**last, "iss": name}]}


def _expected(payload: dict) -> tuple:
    """What parse must read from a valid list: the oracle's own model of it, from what the harness signed."""
    return (payload["seq"], payload["issued_at"], payload["not_after"],
            frozenset(e["kid"] for e in payload["issuers"]), frozenset(payload["revoked"]), tuple(payload["dsc"]),
            tuple(a["key"] for a in payload["authority"]))


def _read(tl) -> tuple:
    return (tl.seq, tl.issued_at, tl.not_after, frozenset(tl.issuers), tl.revoked, tuple(tl.dsc),
            tuple(a.key for a in tl.authority))


@dataclass(frozen=True)
class _Keys:
    root: object
    impostor: object
    issuers: tuple  # firmware.signers.Issuer, for the list trustlist.build makes
    keys: tuple[bytes, ...]  # raw Ed25519 public keys, for the lists the harness writes itself
    sealing: tuple  # store.seal.SealingKey (X25519): the authority's
    ders: tuple[bytes, ...]  # document signer certificates


def _list_keys(rng: random.Random) -> _Keys:
    """Every key and certificate from `rng`: the same world for the same --seed."""
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding

    from firmware.keys import raw_public

    from lab.signers import Issuer
    from lab import dcc_issuer

    ed25519 = lambda: Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))  # noqa: E731
    root, impostor = ed25519(), ed25519()
    issuers = tuple(Issuer(name, ed25519()) for name in ("naver", "kakao", "toss"))
    keys = tuple(raw_public(ed25519().public_key()) for _ in range(8))
    sealing = tuple(seal.SealingKey(seal.X25519, raw_public(X25519PrivateKey.from_private_bytes(rng.randbytes(32))
                                                            .public_key())) for _ in range(3))
    start = dt.datetime.fromtimestamp(NOW - 30 * DAY_S, dt.UTC)
    ders = tuple(dcc_issuer.signer_certificate(ec.derive_private_key(rng.randrange(1, 2**255), ec.SECP256R1()),
                                               country, types, start, 365, serial=rng.getrandbits(64) + 1)
                 .public_bytes(Encoding.DER) for country, types in (("DE", "vtr"), ("FR", "t"), ("NL", "vr"), ("AT", "v")))
    return _Keys(root, impostor, issuers, keys, sealing, ders)


def _valid_lists(rng: random.Random, k: _Keys) -> list[dict]:
    """Valid payloads: empty, small, at every boundary of a field and of the payload's length head, to 1 MiB."""
    from firmware.keys import raw_public

    def issuers(n: int) -> list[dict]:
        return [_issuer_entry(rng.randbytes(8), f"issuer-{i}", k.keys[i % len(k.keys)]) for i in range(n)]

    sealing = [key.raw for key in k.sealing]
    pad = partial(_padded, key=k.keys[0], der=k.ders[0])
    empty = _list_payload(0, NOW, [], [], [], [])
    small = _list_payload(3, NOW, issuers(3), [rng.randbytes(8)], list(k.ders[:2]), [_authority_entry(sealing[0])])
    most = MAX_LIST - 88  # the payload of a message of exactly 1 MiB (17 + 5 + payload + 66 bytes)
    return [
        empty,
        small,
        _list_payload(2**40 - 1, 86_400, [_issuer_entry(rng.randbytes(8), "i", k.keys[0], 0, 2**40 - 1),
                                          _issuer_entry(rng.randbytes(8), "x" * 64, k.keys[1])], [], [],
                      [_authority_entry(sealing[1], 0, 2**40 - 1)], not_after=2**40 - 1),
        _list_payload(40, NOW, issuers(40), [rng.randbytes(8) for _ in range(10)], list(k.ders),
                      [_authority_entry(key) for key in sealing]),
        pad(empty, 255), pad(empty, 256), pad(small, 65535), pad(small, 65536),  # length heads
        _list_payload(7, NOW, issuers(MAX_ISSUERS), [rng.randbytes(8) for _ in range(2000)], list(k.ders),
                      [_authority_entry(sealing[2])]),  # over 64 KiB
        # At every cap at once, to 1 MiB: the most work a list may ask for.
        pad(_list_payload(8, NOW, issuers(MAX_ISSUERS - 1), [rng.randbytes(8) for _ in range(MAX_REVOKED // 2)],
                          list(k.ders), [_authority_entry(sealing[i % 3]) for i in range(MAX_AUTHORITY)]), most),
        pad(_list_payload(9, NOW, [], [rng.randbytes(8) for _ in range(MAX_REVOKED - 3000)], [], []), most),
    ]


def _built(k: _Keys) -> tuple[bytes, dict]:
    """A list as trustlist.build (the authority's own tool) writes it, and its payload."""

    raw = signers.build_trust_list(k.root, k.issuers, seq=5, issued_at=NOW, revoked=[k.issuers[2].kid], dsc=k.ders[:1],
                          authority=k.sealing[:2])
    return raw, cbor2.loads(cbor2.loads(raw).value[2])  # the harness's own bytes: plain cbor2 reads them


def _invalid_lists(k: _Keys, kid: bytes, small: dict, largest: dict) -> list[tuple[bytes, str]]:
    """One message per kind of rejection, the security review's among them."""
    from firmware.keys import kid_of

    bomb = b"\xc4\x82\x00\xc2" + head(2, _BOMB_BYTES) + b"\xff" * _BOMB_BYTES
    encoded = cbor2.dumps(small)
    return [
        (_signed(k.impostor, kid, encoded), "bad_signature"),  # another root under the root's kid
        (_signed(k.impostor, kid_of(k.impostor.public_key()), encoded), "wrong_root"),
        (_signed(k.root, kid, cbor2.dumps({**small, "seq": -1})), "bad_payload"),
        (_signed(k.root, kid, cbor2.dumps({**small, "dsc": [b"\x30\x03not"]})), "bad_content"),  # read, then refused
        (_signed(k.root, kid, bomb), "bad_payload"),  # signed by the root itself: refused at the tag's head
        (_envelope(kid, bomb, bytes(64)), "bad_signature"),  # the review's message, unsigned
        (bomb, "bad_envelope"),
        (_signed(k.root, kid, cbor2.dumps(_one_byte_more(largest))), "too_large"),  # 1 MiB + 1
        (b"", "bad_envelope"),
        # One over each count a list may hold (the document signers' is past 1 MiB before it is reached).
        (_signed(k.root, kid, cbor2.dumps({**small, "issuers": small["issuers"] * (MAX_ISSUERS // 3 + 1)})),
         "bad_payload"),
        (_signed(k.root, kid, cbor2.dumps({**small, "revoked": [bytes(8)] * (MAX_REVOKED + 1)})), "bad_payload"),
        (_signed(k.root, kid, cbor2.dumps({**small, "authority": small["authority"] * (MAX_AUTHORITY + 1)})),
         "bad_payload"),
    ]


def _list_world(seed: int) -> tuple[ListWorld, list[tuple[bytes, str]]]:
    """Keys from `seed`; the valid lists (the world) and the invalid seeds."""
    from firmware.keys import kid_of

    rng = random.Random(f"trustlist-world:{seed}")
    k = _list_keys(rng)
    kid = kid_of(k.root.public_key())
    valid = _valid_lists(rng, k)
    built, payload = _built(k)
    valid.insert(2, payload)
    encoded = tuple(cbor2.dumps(p) for p in valid)
    signed = tuple(_signed(k.root, kid, e) for e in encoded)
    if signed[2] != built:
        raise AssertionError("the harness's envelope differs from cose.sign1's")
    weights = tuple(1 if len(e) > 500_000 else 4 if len(e) > 60_000 else 40 for e in encoded)
    invalid = _invalid_lists(k, kid, valid[1], valid[-2])
    world = ListWorld(k.root, k.impostor, kid, tuple(valid), encoded, signed, tuple(data for data, _ in invalid),
                      weights, valid[1]["issuers"][0], valid[1]["authority"][0], k.ders[0])
    return world, invalid


def _break_list(rng: random.Random, p: dict, w: ListWorld) -> bytes:
    """A payload with one change that makes it invalid whatever else it holds."""
    p = dict(p)
    k = rng.randrange(7)
    if k == 0:  # seq, issued_at or not_after of a wrong type or range, or missing
        name = rng.choice(("seq", "issued_at", "not_after"))
        if rng.random() < 0.2:
            del p[name]
        else:
            p[name] = rng.choice(_BAD_INT)
    elif k == 1:  # a list that is not one (a missing list is an empty one: not a change that breaks it)
        p[rng.choice(("issuers", "revoked", "dsc", "authority"))] = rng.choice(_NOT_LIST)
    elif k == 2:  # one issuer entry spoilt: not a map, or one field of a wrong type, or missing
        p["issuers"] = _spoil_entry(rng, list(p["issuers"]), w.issuer, _BAD_ISSUER)
    elif k == 3:  # one authority entry spoilt
        p["authority"] = _spoil_entry(rng, list(p["authority"]), w.authority, _BAD_AUTHORITY)
    elif k == 4:  # a revoked kid that is no byte string
        p["revoked"] = _insert(rng, list(p["revoked"]), rng.choice((1, "kid", None, [b"x"], {}, True, 1.5)))
    elif k == 5:  # a dsc entry that is no DER certificate: cut short, with a byte after it, PEM, noise, no bytes
        der = w.der
        bad = rng.choice((der[: rng.randrange(len(der))], der + b"\x00", b"-----BEGIN CERTIFICATE-----\n",
                          b"\x31" + rng.randbytes(rng.randint(0, 400)), "der", 0, None, [der]))
        p["dsc"] = _insert(rng, list(p["dsc"]), bad)
    else:  # not a map
        return cbor2.dumps(rng.choice((list(p.items()), None, "trust list", b"", 0, [p])))
    return cbor2.dumps(p)


def _insert(rng: random.Random, items: list, value: object) -> list:
    items.insert(rng.randrange(len(items) + 1), value)
    return items


def _spoil_entry(rng: random.Random, entries: list, template: dict, bad: dict) -> list:
    i = rng.randrange(len(entries)) if entries and rng.random() < 0.8 else None
    entry = dict(entries[i] if i is not None else template)
    if rng.random() < 0.1:
        spoilt = rng.choice(([], "entry", None, 0, b"", [entry]))
    else:
        name = rng.choice(tuple(bad))
        spoilt = entry
        if rng.random() < 0.2:
            del spoilt[name]
        else:
            spoilt[name] = rng.choice(bad[name])
    if i is None:
        return _insert(rng, entries, spoilt)
    entries[i] = spoilt
    return entries


def _int_path(rng: random.Random, p: dict) -> tuple:
    """Where only an integer is right: no hostile value that is not one can make the list valid there."""
    choices = [(name,) for name in ("seq", "issued_at", "not_after")]
    for group in ("issuers", "authority"):
        if p[group]:
            choices.append((group, rng.randrange(len(p[group])), rng.choice(("not_before", "not_after"))))
    return rng.choice(choices)


def _hostile_list(rng: random.Random, p: dict, encoded: bytes) -> bytes:
    """A payload of hostile CBOR: never a valid list (every piece either refused or where nothing but an int fits)."""
    k = rng.randrange(4)
    if k == 0:  # the whole payload one hostile item
        return item(rng, 1 << 20).data
    if k == 1:  # the list truncated, with bytes after it, in a tag, made indefinite
        return spoil(rng, encoded).data
    if k == 2:
        piece = item(rng, 1 << 20)
        path = random_path(rng, p) if piece.flaw in STRICT_REFUSES else _int_path(rng, p)
        return splice(p, path, piece.data, cbor2.dumps)
    # a key of the list's map twice
    name = rng.choice(list(p))
    return head(5, len(p) + 1) + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in p.items()) + \
        cbor2.dumps(name) + cbor2.dumps(rng.choice((p[name], 0, [])))


def _spoil_envelope(rng: random.Random, w: ListWorld, data: bytes, i: int) -> bytes:
    """The root's layout with one piece out of place: heads, headers, tags, signature, length."""
    payload = w.encoded[i]
    sig = data[-64:] if len(data) >= 64 else bytes(64)
    k = rng.randrange(9)
    if k == 0:
        return _envelope(w.kid, payload, sig, payload_head=rng.choice((
            head(2, len(payload), wide=True), head(2, len(payload) + 1), head(2, max(0, len(payload) - 1)),
            b"\x5b" + b"\xff" * 8, b"\x5f")))
    if k == 1:
        return _envelope(w.kid, payload, sig, unprotected=rng.choice((b"\xa1\x04\x48" + w.kid, b"\xbf\xff",
                                                                      b"\xb8\x00", b"\x80", b"\xf6")))
    if k == 2:
        return _envelope(w.kid, payload, sig, tag=rng.choice((b"", b"\xd8\x12", b"\xd9\x00\x12", b"\xd1", b"\xd8\x3d",
                                                              b"\xd2\xd2", b"\xc4")))
    if k == 3:
        return _envelope(w.kid, payload, sig[:63] + rng.choice((b"", b"\x00\x00")),
                         sig_head=rng.choice((b"\x58\x3f", b"\x58\x41", b"\x59\x00\x40")))
    if k == 4:  # another protected header: another order, alg, kid length, an extra key
        kid = rng.choice((w.kid[:7], w.kid + b"\x00", w.kid))
        protected = rng.choice((b"\xa2\x04" + head(2, len(kid)) + kid + b"\x01\x27",
                                b"\xa2\x01\x26\x04" + head(2, len(kid)) + kid,
                                b"\xa3\x01\x27\x04" + head(2, len(kid)) + kid + b"\x05\x40",
                                b"\xa2\x01\x27\x04" + head(2, len(kid)) + kid))
        return b"\xd2\x84" + head(2, len(protected)) + protected + b"\xa0" + head(2, len(payload)) + payload + \
            b"\x58\x40" + sig
    if k == 5:  # the signature zeroed, its s + L, or another list's
        s = (int.from_bytes(sig[32:], "little") + _ED25519_L) % (1 << 256)
        return data[:-64] + rng.choice((bytes(64), sig[:32] + s.to_bytes(32, "little"), w.root.sign(b"another message")))
    if k == 6:  # cut short, or with bytes after it
        return data[: rng.randrange(len(data) + 1)] if rng.random() < 0.5 else data + rng.randbytes(rng.randint(1, 9))
    return mutate_bytes(rng, data)


_ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _unsigned(rng: random.Random, w: ListWorld, i: int) -> bytes:
    """A message no root signed (hostile, or a list), in the root's layout under its kid, at and past the cap."""
    k = rng.randrange(4)
    if k == 0:
        payload = b"\xc4\x82\x00\xc2" + head(2, _BOMB_BYTES) + b"\xff" * _BOMB_BYTES
    elif k == 1:
        payload = item(rng, 1 << 20).data
    else:
        payload = w.encoded[i]
    if k == 3:  # the envelope exactly at the cap, one byte over, or twice it: no byte is read before the signature
        size = rng.choice((1 << 20, (1 << 20) + 1, 2 << 20)) - 88
        payload = payload[:size] + bytes(max(0, size - len(payload)))
    signature = rng.choice((bytes(64), rng.randbytes(64), w.impostor.sign(payload)))
    message = _envelope(w.kid, payload, signature)
    return message if rng.random() < 0.8 else payload  # or no envelope at all


def _impostor(rng: random.Random, w: ListWorld, i: int) -> bytes:
    """A well-formed list another root signed, under the root's kid or its own."""
    from firmware.keys import kid_of

    payload = w.encoded[i]
    kid = w.kid if rng.random() < 0.8 else kid_of(w.impostor.public_key())
    return _signed(w.impostor, kid, payload)


def _envelope_bytes(rng: random.Random, w: ListWorld, i: int) -> bytes:
    """A seed's envelope spoilt by position, or its bytes changed (the invalid seeds' too)."""
    data = rng.choice(w.others) if rng.random() < 0.3 else w.signed[i]
    return _spoil_envelope(rng, w, data, i) if rng.random() < 0.6 else mutate_bytes(rng, data)


def _resigned(rng: random.Random, w: ListWorld, i: int) -> bytes:
    return _signed(w.root, w.kid, _break_list(rng, w.payloads[i], w))


def _hostile_signed(rng: random.Random, w: ListWorld, i: int) -> bytes:
    return _signed(w.root, w.kid, _hostile_list(rng, w.payloads[i], w.encoded[i]))


# Relative weights: what the root signs reaches the payload's decoder and every field check.
_LIST_OPS = ((_envelope_bytes, 5), (_resigned, 5), (_hostile_signed, 4), (_unsigned, 2), (_impostor, 1))


def _list_mutant(rng: random.Random, t: Target, stats: Counter, w: ListWorld) -> bytes:
    """One mutant, from a valid seed (or, for byte changes, an invalid one)."""
    i = rng.choices(range(len(w.payloads)), w.weights)[0]
    try:
        data = _pick(rng, _LIST_OPS)(rng, w, i)
    except (ValueError, TypeError, OverflowError):  # cbor2 refusing a value, a marker not unique: plainly instead
        stats["mutator_fallbacks"] += 1
        data = mutate_bytes(rng, w.signed[i])
    return mutate_bytes(rng, data) if rng.random() < 0.1 else data


_REASONS = (("larger than", "too_large"), ("not a COSE_Sign1", "bad_envelope"), ("different root", "wrong_root"),
            ("does not verify", "bad_signature"), ("payload:", "bad_payload"))


def _list_reason(exc: Exception) -> str:
    """A rejection by kind, for the verdict spread (the message's wording decides; the oracle does not)."""
    text = str(exc)
    return next((label for words, label in _REASONS if words in text), "bad_content")


def _parse_list(data: bytes, parse, root) -> object:
    """parse's answer: the TrustList, or the TrustListError it raised (anything else escaping is a crash)."""
    try:
        return parse(data, root)
    except TrustListError as exc:
        return exc


def _judge_list(data: bytes, answer: object, expected: dict[bytes, tuple]) -> Judgement:
    if isinstance(answer, TrustListError):
        return _list_reason(answer), False, None
    if not isinstance(answer, TrustList):
        return "odd_answer", False, f"parse answered a {type(answer).__name__}"
    want = expected.get(data)
    if want is None:
        return "accepted", True, "accepted a list the harness did not sign as a valid one"
    if _read(answer) != want:
        return "accepted", True, "read a list other than the one signed"
    return "accepted", True, None


def trustlist_target(seed: int = 0, parse=None) -> Target:
    """Trust lists against `tokens.trustlist.parse` (or an injected `parse`, for the harness's own tests)."""
    from firmware.tokens import trustlist

    w, invalid = _list_world(seed)
    seeds = [Seed(s, s, "accepted") for s in w.signed] + [Seed(data, data, expect) for data, expect in invalid]
    expected = {s: _expected(p) for s, p in zip(w.signed, w.payloads)}
    return Target(
        name="trustlist",
        seeds=tuple(seeds),
        verify=partial(_parse_list, parse=parse or trustlist.parse, root=w.root.public_key()),
        may_accept=expected.__contains__,
        mutant=partial(_list_mutant, w=w),
        judge=partial(_judge_list, expected=expected),
        max_verify_us=MAX_VERIFY_US,
    )


# --- the ingest ----------------------------------------------------------------------------------

_KEYS = frozenset({"v", "rid", "venue", "device", "ts", "iss", "cti", "kind"})
_OPENED = frozenset({"rid", "device", "ts", "time", "kind", "iss", "cti"})  # what investigate prints, at least


def _id_ok(x: object) -> bool:
    return type(x) is str and 1 <= len(x) <= 64


def _plain_ok(p: dict) -> bool:
    """The harness's own rules for a visit's plaintext (its envelope is compared when it is opened)."""
    if set(p) != _KEYS or not all(type(k) is str for k in p):
        return False
    v, rid, ts, iss, cti, kind = (p[k] for k in ("v", "rid", "ts", "iss", "cti", "kind"))
    return (type(v) is int and v == 1 and type(rid) is bytes and len(rid) == 16 and _id_ok(p["venue"])
            and _id_ok(p["device"]) and type(ts) is int and 0 <= ts < 2**64 and _id_ok(iss)
            and (kind == "KP1" and type(cti) is bytes and len(cti) == 16
                 or kind == "DCC" and type(cti) is str and 1 <= len(cti) <= 256))


def _plain(visit) -> dict:
    """A Visit's plaintext map, as a version 1 device encodes it (records.sealed_v1)."""
    return {"v": 1, "rid": visit.rid, "venue": visit.venue, "device": visit.device, "ts": visit.ts,
            "iss": visit.iss, "cti": visit.cti, "kind": visit.kind}


def _topic(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/visits"


@dataclass
class IngestModel:
    """The oracle's own idea of a good message and a good opening, and the plaintexts it sealed as valid."""

    key: object  # the authority's store.seal.OpeningKey (X25519)
    max_wire: int
    oldest: int  # the window of ts the custodian takes, at NOW
    newest: int
    sealed: dict[bytes, dict] = field(default_factory=dict)  # digest of a valid plaintext -> the plaintext

    def note(self, plaintext: bytes, p: dict | None) -> None:
        """A plaintext the harness seals: remembered if it is a valid visit's, encoded as Visit encodes one."""
        if p is not None and _plain_ok(p) and cbor2.dumps(p) == plaintext:
            self.sealed[_digest(plaintext)] = p

    def envelope(self, payload: bytes) -> list | None:
        """[1, rid, venue, device, ts, enc_and_ct] if `payload` is one in preferred serialization, else None."""
        if type(payload) is not bytes or len(payload) > self.max_wire:
            return None
        try:
            obj = cbor2.loads(payload)
            canonical = cbor2.dumps(obj) == payload
        except Exception:  # noqa: BLE001  anything cbor2 cannot read or write again is no record
            return None
        if not (canonical and type(obj) is list and len(obj) == 6):
            return None
        v, rid, venue, device, ts, sealed = obj
        ok = (type(v) is int and v == 1 and type(rid) is bytes and len(rid) == 16 and _id_ok(venue)
              and _id_ok(device) and type(ts) is int and 0 <= ts < 2**64 and type(sealed) is bytes)
        return obj if ok else None

    def why_not(self, topic: str, payload: bytes) -> str | None:
        """Why the custodian must refuse this message (None: it may take it)."""
        env = self.envelope(payload)
        if env is None:
            return "no record in preferred serialization"
        _, rid, venue, device, ts, sealed = env
        if not isinstance(topic, str) or topic.split("/") != ["qrgate", "v1", venue, device, "visits"]:
            return "a record on another topic than its own"
        if not self.oldest <= ts <= self.newest:
            return "a ts outside the window"
        return None

    def refuse_check(self, topic: str, payload: bytes, checked: object) -> str | None:
        if isinstance(checked, str):
            return None
        if not isinstance(checked, SealedRecord):
            return f"check answered a {type(checked).__name__}"
        why = self.why_not(topic, payload)
        if why is not None:
            return f"check accepted {why}"
        if (checked.rid, checked.venue, checked.device, checked.ts, checked.enc_and_ct) != tuple(self.envelope(payload)[1:]):
            return "check's record is not the message's"
        return None

    def refuse_open(self, payload: bytes, opened: object) -> str | None:
        if isinstance(opened, str):
            return None
        if not isinstance(opened, dict):
            return f"_open answered a {type(opened).__name__}"
        if not _OPENED <= set(opened) or not all(type(v) in (str, int) for v in opened.values()):
            return "_open answered a visit without its fields, or with values other than str and int"
        try:
            json.dumps(opened)
        except (TypeError, ValueError):
            return "_open answered a visit JSON cannot hold"
        return self._refuse_visit(payload, opened)

    def _refuse_visit(self, payload: bytes, opened: dict) -> str | None:
        env = self.envelope(payload)
        if env is None:
            return "_open opened a message that is no record"
        _, rid, venue, device, ts, sealed = env
        try:
            plaintext = seal_v1.open_sealed(sealed, self.key.x25519, seal_v1.aad_for(rid, venue, device))
        except Exception:  # noqa: BLE001  cryptography's InvalidTag, or anything else: not sealed to this envelope
            return "_open opened what does not open under the authority's key"
        p = self.sealed.get(_digest(plaintext))
        if p is None:
            return "_open opened a plaintext the harness never sealed as a valid visit"
        if (p["rid"], p["venue"], p["device"], p["ts"]) != (rid, venue, device, ts):
            return "_open opened a relabelled record"
        cti = p["cti"].hex() if isinstance(p["cti"], bytes) else p["cti"]
        if (opened["rid"], opened["device"], opened["ts"], opened["kind"], opened["iss"], opened["cti"]) != \
                (rid.hex(), device, ts, p["kind"], p["iss"], cti):
            return "_open's visit is not the one sealed"
        return None


@dataclass(frozen=True)
class Ingested:
    """What the custodian's path answered for one message, stage by stage."""

    checked: object  # check's: a SealedRecord or a rejection reason
    stored: object  # storage.add's for an accepted record (None: not stored)
    opened: object  # _open's: a visit (dict) or the reason it did not open


class _Storages:
    """One in-memory SqliteStorage per process (a SQLite connection must not cross a fork), renewed every
    `renew` records so that the memory of a run of a million stays flat."""

    def __init__(self, make=None, renew: int = 20_000):
        self._make, self._renew = make, renew
        self._pid, self._storage, self._used = None, None, 0

    def __call__(self):
        if self._pid != os.getpid() or self._used >= self._renew:
            if self._pid == os.getpid():
                self._storage.close()
            self._storage, self._pid, self._used = self._new(), os.getpid(), 0
        self._used += 1
        return self._storage

    def _new(self):
        if self._make is not None:
            return self._make()
        from custodian.storage import SqliteStorage

        return SqliteStorage(":memory:")


def _ingest(message: tuple[str, bytes], check, storage, opener, key) -> Ingested:
    """One message through check, the storage (if accepted) and the opening; an exception is a crash."""
    topic, payload = message
    checked = check(topic, payload, NOW)
    stored = storage().add([(checked, payload)], received_at=NOW) if isinstance(checked, SealedRecord) else None
    return Ingested(checked, stored, opener(payload, key))


def _judge_ingest(message: tuple[str, bytes], answer: object, model: IngestModel) -> Judgement:
    if not isinstance(answer, Ingested):
        return "odd_answer", False, f"the ingest answered a {type(answer).__name__}"
    topic, payload = message
    checked = "accepted" if isinstance(answer.checked, SealedRecord) else answer.checked
    opened = "opened" if isinstance(answer.opened, dict) else answer.opened
    label = f"{checked if isinstance(checked, str) else 'odd'}/{opened if isinstance(opened, str) else 'odd'}"
    refused = model.refuse_check(topic, payload, answer.checked) or model.refuse_open(payload, answer.opened)
    return label, checked == "accepted" or opened == "opened", refused


@dataclass(frozen=True)
class IngestWorld:
    """What the ingest mutators need: the seeds' visits, the keys, the model (to note what is sealed)."""

    visits: tuple  # a records.Visit per seed
    messages: tuple[tuple[str, bytes], ...]  # (topic, wire) per seed
    public: object  # the authority's X25519PublicKey
    stranger: object  # a key the authority does not hold
    model: IngestModel


def _ingest_world(seed: int) -> IngestWorld:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from custodian import ingest

    rng = random.Random(f"ingest-world:{seed}")
    key, stranger = (OpeningKey(X25519PrivateKey.from_private_bytes(rng.randbytes(32))) for _ in range(2))
    oldest, newest = NOW - ingest.MAX_AGE_S, NOW + ingest.TS_SKEW_S
    model = IngestModel(key, MAX_WIRE, oldest, newest)
    places = (("cafe-1", "door-1"), ("cafe-1", "door-2"), ("gym.2", "d"), ("V" * 64, "D" * 64), ("x", "y"),
              ("Store_9", "entrance-A"))
    times = (NOW, oldest, newest, NOW - 1, NOW - 3600, rng.randint(oldest, newest))  # the window's edges among them
    visits = [_visit(rng, venue, device, ts, dcc=(i + j) % 2 == 1)
              for i, (venue, device) in enumerate(places) for j, ts in enumerate(times[i % 3 :: 2])]
    messages = []
    for v in visits:
        model.note(cbor2.dumps(_plain(v)), _plain(v))
        messages.append((_topic(v.venue, v.device), sealed_v1(v, key.x25519.public_key()).wire()))
    return IngestWorld(tuple(visits), tuple(messages), key.x25519.public_key(), stranger.x25519.public_key(), model)


def _visit(rng: random.Random, venue: str, device: str, ts: int, dcc: bool) -> Visit:
    """A KP1 or DCC visit, its issuer and token id at their shortest, longest or usual."""
    if dcc:
        cti = rng.choice((f"URN:UVCI:01:DE:{rng.randbytes(10).hex().upper()}", "U" * 256, "u"))
        return Visit(rng.randbytes(16), venue, device, ts, rng.choice(("DE", "FR", "i" * 64)), cti, "DCC")
    return Visit(rng.randbytes(16), venue, device, ts, rng.choice(("naver", "kakao", "n")), rng.randbytes(16), "KP1")


def _ts_values(m: IngestModel) -> tuple:
    return (0, -1, 1, -(2**63), -(2**64), 2**31 - 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**80,
            m.oldest - 1, m.oldest, m.oldest + 1, m.newest, m.newest + 1, NOW + 100 * 365 * DAY_S, 4_102_444_800,
            253_402_300_800, True, 1.5, float(NOW), str(NOW), None, b"")


_WIRE_BAD = {
    0: (0, 2, 255, 2**64 - 1, -1, True, 1.0, "1", b"\x01", None, [1]),
    1: (b"", bytes(15), bytes(17), bytes(16), "0" * 16, 16, None, [0] * 16, bytes(32)),
    2: ("", "x" * 65, "x" * 64, b"cafe-1", 5, None, "caf\u00e9", "a/b", "+", "#", "\x00", " ", "a" * 1000),
    5: (b"", b"\x00", "x", 0, None, [], bytes(31), bytes(48)),
}
_WIRE_BAD[3] = _WIRE_BAD[2]


def _fields(v, sealed: bytes) -> list:
    return [1, v.rid, v.venue, v.device, v.ts, sealed]


def _sealed_part(wire: bytes) -> bytes:
    return cbor2.loads(wire)[5]  # the harness's own record


def _message(fields: list, fallback_topic: str) -> tuple[str, bytes]:
    """The fields encoded as a record, on their own topic when venue and device are texts."""
    venue, device = fields[2:4] if len(fields) > 3 else (None, None)
    topic = _topic(venue, device) if isinstance(venue, str) and isinstance(device, str) else fallback_topic
    return topic, cbor2.dumps(fields)


def _wire_field(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """One field of the wire form of a wrong type, size or value (ts at and past every boundary)."""
    v, (topic, wire) = w.visits[i], w.messages[i]
    fields = _fields(v, _sealed_part(wire))
    index = rng.choice((0, 1, 2, 3, 4, 4, 4, 5))
    fields[index] = rng.choice(_ts_values(w.model) if index == 4 else _WIRE_BAD[index])
    return _message(fields, topic)


def _widen(encoded: bytes) -> bytes:
    """An integer's or a string's head one size wider than preferred serialization allows."""
    major, info = encoded[0] >> 5, encoded[0] & 0x1F
    if info < 24:
        return head(major, info, wide=True) + encoded[1:]
    size = 1 << (info - 24)
    n = int.from_bytes(encoded[1 : 1 + size], "big")
    return (head(major, n, wide=True) if size < 8 else encoded[:1 + size]) + encoded[1 + size :]


def _wire_form(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """The same fields, not as a device writes them: a wide head, other array forms, other versions."""
    v, (topic, wire) = w.visits[i], w.messages[i]
    fields = _fields(v, _sealed_part(wire))
    parts = [cbor2.dumps(f) for f in fields]
    k = rng.randrange(6)
    if k == 0:
        j = rng.randrange(6)
        parts[j] = _widen(parts[j])
        return topic, b"\x86" + b"".join(parts)
    if k == 1:
        return topic, rng.choice((b"\x98\x06", b"\x9f")) + b"".join(parts) + (b"\xff" if rng.random() < 0.5 else b"")
    if k == 2:
        return topic, cbor2.dumps(rng.choice((fields[:5], fields + [0], [fields], dict(enumerate(fields)),
                                              cbor2.CBORTag(rng.choice((18, 24, 55799)), fields))))
    if k == 3:
        return topic, wire + rng.choice((b"\x00", b"\xff", b"\x86", wire))
    if k == 4:  # a later version, carrying what this one does
        return topic, cbor2.dumps([rng.choice((2, 3, 255)), *fields[1:]])
    # the ts moved within the window: a valid envelope whose sealed ts is another
    fields[4] = rng.choice((w.model.oldest, w.model.newest, NOW, v.ts + 1, v.ts - 1))
    return topic, cbor2.dumps(fields)


def _bad_topic(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A good record on a topic that is not its own, or no visits topic at all."""
    v, (_, wire) = w.visits[i], w.messages[i]
    o = rng.choice(w.visits)
    venue, device = v.venue, v.device
    topic = rng.choice((
        _topic(o.venue, device), _topic(venue, o.device), _topic(device, venue), f"qrgate/v2/{venue}/{device}/visits",
        f"qrgate/v1/{venue}/{device}/status", f"/qrgate/v1/{venue}/{device}/visits", _topic(venue, device) + "/",
        _topic(venue, device) + "/x", f"qrgate/v1/{venue}/visits", f"qrgate/v1/{venue}/{device}",
        "qrgate/v1/+/+/visits", "qrgate/v1/#", "", "/", "////", _topic(venue.upper(), device.lower()),
        _topic(venue + "\u200b", device), _topic(venue + "\x00", device), f"$share/custodian/{_topic(venue, device)}",
        f"QRGATE/v1/{venue}/{device}/visits", f"x/y/{venue}/{device}/z", _topic("a" * 65_535, device),
        _topic(venue + " ", device), _topic("", device), _topic(venue, device).replace("/", "\\"),
    ))
    return topic, wire


def _hostile_wire(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """Hostile CBOR as the record, around it, or in one of its fields."""
    v, (topic, wire) = w.visits[i], w.messages[i]
    k = rng.randrange(3)
    if k == 0:
        return topic, item(rng, w.model.max_wire).data
    if k == 1:
        return topic, spoil(rng, wire).data
    return topic, splice(_fields(v, _sealed_part(wire)), (rng.randrange(6),), item(rng, w.model.max_wire).data,
                         cbor2.dumps)


def _oversized(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A record whose sealed part brings it to just under, at or past the cap, or far past it."""
    v, (topic, wire) = w.visits[i], w.messages[i]
    size = rng.choice((w.model.max_wire - 1, w.model.max_wire, w.model.max_wire + 1, 8192, 65_536, 1 << 20))
    sealed = _sealed_part(wire)
    n = _fill(size, len(cbor2.dumps(_fields(v, b""))))
    return topic, cbor2.dumps(_fields(v, sealed[:n] + bytes(max(0, n - len(sealed)))))


def _spoil_plain(rng: random.Random, w: IngestWorld, v) -> tuple[bytes, dict | None]:
    """A visit's plaintext with one change (most make it invalid; a few keep it valid), or hostile CBOR."""
    p = _plain(v)
    k = rng.randrange(10)
    if k == 0:
        p["iss"] = rng.choice((v.iss.encode(), "", "i" * 65, "i" * 64, 5, None, [v.iss], 1.5))
    elif k == 1:
        if rng.random() < 0.5:
            del p[rng.choice(tuple(_KEYS))]
        else:
            p[rng.choice(("x", "v2", "name", "phone"))] = rng.choice((0, "", b""))
    elif k == 2:
        p["kind"] = rng.choice(("kp1", "DCC ", "KP2", "", 1, None, b"KP1", "DCC" if v.kind == "KP1" else "KP1"))
    elif k == 3:
        p["cti"] = rng.choice((bytes(15), bytes(17), v.cti.hex(), 7, None, "", b"") if v.kind == "KP1" else
                              (v.cti.encode(), "", "U" * 257, "U" * 256, 5, None))
    elif k == 4:
        p["v"] = rng.choice((0, 2, True, 1.0, "1", None, 2**64 - 1))
    elif k == 5:  # another rid, venue, device or time than the envelope's
        o = rng.choice(w.visits)
        name = rng.choice(("rid", "venue", "device", "ts"))
        p[name] = rng.choice((getattr(o, name), v.ts + 1, True, float(v.ts))) if name == "ts" else getattr(o, name)
    elif k == 6:  # the plaintext itself hostile: cut, with bytes after it, in a tag, indefinite
        return spoil(rng, cbor2.dumps(p)).data, None
    elif k == 7:
        return splice(p, (rng.choice(tuple(p)),), item(rng, 1024).data, cbor2.dumps), None
    elif k == 8:  # a duplicate key (a second kind, a second ts), or ts as a bignum of the same value
        if rng.random() < 0.5:
            name = rng.choice(tuple(p))
            return head(5, 9) + b"".join(cbor2.dumps(a) + cbor2.dumps(b) for a, b in p.items()) + \
                cbor2.dumps(name) + cbor2.dumps(p[name]), None
        return splice(p, ("ts",), bignum_of(v.ts), cbor2.dumps), None
    else:  # not a map
        return cbor2.dumps(rng.choice((list(p.values()), None, "visit", [p]))), None
    return cbor2.dumps(p), p


def bignum_of(n: int) -> bytes:
    """`n` as a bignum (tag 2): the same value, in a form a record's plaintext does not allow."""
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return head(6, 2) + head(2, len(raw)) + raw


def _resealed(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A valid envelope whose plaintext was changed and sealed again to the authority: the opening is reached."""
    v, (topic, _) = w.visits[i], w.messages[i]
    plaintext, p = _spoil_plain(rng, w, v)
    w.model.note(plaintext, p)
    sealed = seal_v1.seal(plaintext, w.public, seal_v1.aad_for(v.rid, v.venue, v.device))
    return topic, cbor2.dumps(_fields(v, sealed))


def _relabelled(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A valid plaintext under an envelope it was not sealed for, or sealed to a key the authority lacks."""
    v, (topic, wire) = w.visits[i], w.messages[i]
    fields = _fields(v, _sealed_part(wire))
    k = rng.randrange(5)
    if k == 0:  # another rid, or another place for the same sealed part
        o = rng.choice(w.visits)
        fields[1:4] = [rng.choice((o.rid, rng.randbytes(16))), o.venue, o.device] if rng.random() < 0.5 else \
            [rng.randbytes(16), v.venue, v.device]
    elif k == 1 and len(v.venue) > 1 and len(v.device) < 64:  # aad = rid ‖ venue ‖ device: the same bytes
        fields[2:4] = [v.venue[:-1], v.venue[-1] + v.device]
    elif k == 2:
        fields[5] = seal_v1.seal(cbor2.dumps(_plain(v)), w.stranger, seal_v1.aad_for(v.rid, v.venue, v.device))
    elif k == 3:
        o = rng.choice(w.visits)
        fields[5] = seal_v1.seal(cbor2.dumps(_plain(v)), w.public, seal_v1.aad_for(o.rid, o.venue, o.device))
    else:
        fields[5] = _sealed_part(rng.choice(w.messages)[1])
    return _message(fields, topic)


def _wire_bytes(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    topic, wire = w.messages[i]
    for _ in range(rng.randint(1, 3)):
        wire = mutate_bytes(rng, wire)
    return topic, wire


_INGEST_OPS = ((_wire_bytes, 3), (_wire_field, 4), (_wire_form, 2), (_bad_topic, 2), (_hostile_wire, 3),
               (_oversized, 1), (_resealed, 4), (_relabelled, 2))


def _ingest_mutant(rng: random.Random, t: Target, stats: Counter, w: IngestWorld) -> tuple[str, bytes]:
    i = rng.randrange(len(w.visits))
    op = _pick(rng, _INGEST_OPS)
    try:
        topic, payload = op(rng, w, i)
    except (ValueError, TypeError, OverflowError):  # cbor2 refusing a value, a marker not unique: plainly instead
        stats["mutator_fallbacks"] += 1
        topic, payload = _wire_bytes(rng, w, i)
    return topic, mutate_bytes(rng, payload) if rng.random() < 0.1 else payload


def ingest_target(seed: int = 0, check=None, storage=None, opener=None) -> Target:
    """MQTT messages against the custodian's path (or injected stages, for the harness's own tests).

    `storage`: a function that makes a fresh Storage (default: an in-memory SqliteStorage)."""
    from custodian import ingest, investigate

    w = _ingest_world(seed)
    seeds = tuple(Seed(m, m[1], "accepted/opened") for m in w.messages)
    return Target(
        name="ingest",
        seeds=seeds,
        verify=partial(_ingest, check=check or ingest.check, storage=_Storages(storage),
                       opener=opener or investigate._open, key=[w.model.key]),
        may_accept=lambda m: w.model.why_not(*m) is None,
        mutant=partial(_ingest_mutant, w=w),
        judge=partial(_judge_ingest, model=w.model),
        max_verify_us=MAX_VERIFY_US,
    )
