"""`qrgate fuzz trustlist|ingest`: what arrives over the network, thrown at what reads it first.

The token targets' harness (lab.fuzz.engine: forked workers, a hang watch, one JSON
result) on bytes rather than texts. Each target brings its own inputs
(`Target.mutant`) and an oracle that reads what the code under test answered
(`Target.judge`), and each holds every input to 50 ms (`MAX_VERIFY_US`): one slow
message stops a door, or the custodian's ingest, for as long as it takes.

- trustlist: bytes into `tokens.trustlist.parse(data, root)`, which must answer
  a TrustList or raise TrustListError. Seeds are valid lists signed by an
  in-memory root (empty ones to ones of 1 MiB; card issuers of 1 to 1,830 days
  and revoked cards, to the cap of each); mutants are the envelope's bytes,
  payloads broken and RE-SIGNED by the root, hostile CBOR re-signed, unsigned or
  wrongly signed hostile messages up to and past the 1 MiB cap, and lists
  signed by another root under the root's kid. A re-signed mutant only ever
  carries a change that makes it invalid whatever else it holds, so the oracle
  is one set: accepted => the bytes are a valid seed, read as signed.
- ingest: (topic, payload) into the custodian's path for one MQTT message:
  `custodian.ingest.check`, an insert into a real SqliteStorage (in memory, one
  per worker) for what it accepts, then the authority's `investigate._open`
  given every key it holds (MLKEM768-X25519, X25519, an older X25519 key).
  Seeds are each visit's records of both versions (docs/records.md): version 2
  in both suites as Visit.seal writes it, version 1 sealed to either X25519 key.
  Mutants are the wire's bytes and fields (suite and kid among them), each
  layout under the other's version, topics, hostile CBOR, oversized messages,
  envelopes changed under their sealed part, records naming a key other than
  the one they are sealed to (or a stranger's), and plaintexts mutated and
  RE-SEALED to the record's own key, version 2's under its own info, so that
  the opening's checks are reached: the map's keys and types, hostile CBOR,
  version 2's padding, each version's plaintext in the other's record. The
  oracle is a model of its own: what check accepts is the canonical encoding of
  a record of either layout within the rules; the storage never raises; `_open`
  never raises and returns a visit (plain str and int values) only for a
  plaintext the harness sealed as valid for that very envelope (version 1: the
  whole visit, matching it; version 2: the secret, under that exact info, to the
  key its kid names, padded as records.pad pads). A verdict's label names the
  record's version (`v2:accepted/bad_plaintext`) where the model reads one.

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
from cryptography.hazmat.primitives import hpke

from lab.fuzz.engine import NOW, Judgement, Seed, Target, mutate_bytes
from lab.fuzz.cbor import STRICT_REFUSES, head, item, random_path, splice, spoil
from firmware.store import seal, seal_v1
from firmware.store.records import INFO_V2, MAX_WIRE, PAD, SealedRecord, Visit, sealed_v1
from firmware.store.seal import OpeningKey
from firmware.tokens.trustlist import (CARD_HASH_BYTES, CARD_KEY_BYTES, MAX_AUTHORITY, MAX_CARD_DAYS,
                                       MAX_CARD_REVOKED, MAX_CODE, MAX_CODES, MAX_ISSUERS, MAX_REVOKED, MAX_RULES,
                                       MAX_VALUESETS, TrustList)
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
    # A card issuer's: 1 to 1,830 days, an unsigned integer (without it, an entry is a phone issuer's: no change).
    "card_days": (0, MAX_CARD_DAYS + 1, MAX_CARD_DAYS + 2, 3650, 65535, 1 << 40, 2**64 - 1, -1, -MAX_CARD_DAYS,
                  True, False, "365", b"\x01", None, 365.0, [30], {}),
}
_OPTIONAL = frozenset({"card_days"})  # fields whose absence is no fault: spoilt by value only
_BAD_CARD_KEY = (b"", bytes(CARD_KEY_BYTES - 1), bytes(CARD_KEY_BYTES + 1), bytes(32), "k" * 16, None, 0, True,
                 [bytes(16)], {"key": bytes(16)})
_BAD_CARD_HASH = (b"", bytes(CARD_HASH_BYTES - 1), bytes(CARD_HASH_BYTES + 1), bytes(32), "h" * 16, None, 0, 1.5,
                  [bytes(16)], {})
_BAD_AUTHORITY = {
    "alg": ("x25519", "X448", "MLKEM1024-P384", "mlkem768-x25519", "", None, 1, b"X25519"),
    "key": (bytes(31), bytes(33), b"", "k" * 32, None, 0),
    "not_before": _BAD_INT,
    "not_after": _BAD_INT,
}

def _rule(identifier: str, **over) -> str:
    """A business rule the devices read (tokens.dcc_rules): its logic a small CertLogic expression."""
    from lab.dcc_issuer import business_rule

    logic = over.pop("logic", {"if": [{"var": "payload.v.0"},
                                      {"in": [{"var": "payload.v.0.mp"}, {"var": "external.valueSets.vaccines"}]},
                                      True]})
    return business_rule(identifier, logic, **over)


def _bad_rules() -> tuple:
    """Rules a list may not carry: each refused by tokens.dcc_rules (or the reader) whatever else the list holds."""
    good = json.loads(_rule("VR-DE-0001"))
    spoilt = [{**good, "Identifier": "VR-DE-001"}, {**good, "Logic": {"eval": ["x"]}}, {**good, "Type": "Other"},
              {**good, "Country": "de"}, {**good, "CertificateType": "Any"}, {**good, "Engine": "JSONLOGIC"},
              {**good, "Version": "1.0"}, {**good, "EngineVersion": "v1"}, {**good, "ValidFrom": "2021-06-01"},
              {**good, "ValidTo": "never"}, {k: v for k, v in good.items() if k != "Logic"},
              {**good, "Logic": {"var": ["a", "b", "c"]}}, {**good, "AffectedFields": ["x" * 70_000]}]
    return (*(json.dumps(r) for r in spoilt), "{", "[]", "null", '"rule"', "[" * 5000, b"{}", 0, None, [], {})


_BAD_VALUESET = {"id": ("", "x" * 129, 5, None, b"vaccines", ["vaccines"]),
                 "codes": (None, "EU/1/20/1528", [""], ["x" * 129], [5], [None], {}, [b"EU/1/20/1528"])}
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
    bad_rules: tuple  # business rules the devices refuse (_bad_rules)
    card_issuer: dict  # a valid card issuer's entry, to spoil
    card_key: bytes  # a card_key, for revoked cards that lack one
    too_many_cards: tuple[bytes, ...]  # one revoked card over the cap


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


def _issuer_entry(kid: bytes, iss: str, key: bytes, not_before: int = NOW - DAY_S, not_after: int = NOW + 365 * DAY_S,
                  card_days: int = 0):
    """A phone issuer's entry, or with `card_days` a card issuer's."""
    return {"kid": kid, "iss": iss, "alg": "EdDSA", "key": key, "not_before": not_before, "not_after": not_after,
            **({"card_days": card_days} if card_days else {})}


def _card_hashes(rng: random.Random, n: int) -> list[bytes]:
    """`n` revoked cards' hashes, sorted (as trustlist.build writes them)."""
    return sorted(rng.randbytes(CARD_HASH_BYTES) for _ in range(n))


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
    """What parse must read from a valid list: the oracle's own model of it, from what the harness signed (an
    issuer by its kid and role: a phone issuer's card_days is 0)."""
    return (payload["seq"], payload["issued_at"], payload["not_after"],
            frozenset((e["kid"], e.get("card_days", 0)) for e in payload["issuers"]), frozenset(payload["revoked"]),
            tuple(payload["dsc"]), tuple(a["key"] for a in payload["authority"]),
            tuple(json.loads(r)["Identifier"] for r in payload.get("dcc_rules", ())),
            tuple(sorted((v["id"], tuple(v["codes"])) for v in payload.get("valuesets", ()))),
            payload.get("card_key", b""), frozenset(payload.get("card_revoked", ())))


def _read(tl) -> tuple:
    return (tl.seq, tl.issued_at, tl.not_after, frozenset((kid, i.card_days) for kid, i in tl.issuers.items()),
            tl.revoked, tuple(tl.dsc), tuple(a.key for a in tl.authority), tuple(r.identifier for r in tl.rules.rules),
            tuple(sorted(tl.rules.valuesets.items())), tl.card_key, tl.card_revoked)


@dataclass(frozen=True)
class _Keys:
    root: object
    impostor: object
    issuers: tuple  # firmware.signers.Issuer, for the list trustlist.build makes
    cards: tuple  # the same, card issuers (1 and 1,830 days)
    keys: tuple[bytes, ...]  # raw Ed25519 public keys, for the lists the harness writes itself
    sealing: tuple  # store.seal.SealingKey (X25519): the authority's
    ders: tuple[bytes, ...]  # document signer certificates
    card_key: bytes  # the lists' card_key


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
    cards = tuple(Issuer(name, ed25519(), card_days=days) for name, days in (("centre", 1), ("library", MAX_CARD_DAYS)))
    return _Keys(root, impostor, issuers, cards, keys, sealing, ders, rng.randbytes(CARD_KEY_BYTES))


def _valid_lists(rng: random.Random, k: _Keys) -> list[dict]:
    """Valid payloads: empty, small, at every boundary of a field and of the payload's length head, to 1 MiB."""
    from firmware.keys import raw_public

    def issuers(n: int, cards: bool = False) -> list[dict]:
        """`n` issuers; with `cards`, every third a card issuer, of 1 to 1,830 days."""
        return [_issuer_entry(rng.randbytes(8), f"issuer-{i}", k.keys[i % len(k.keys)],
                              card_days=1 + i * 7 % MAX_CARD_DAYS if cards and i % 3 == 2 else 0) for i in range(n)]

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
        # Business rules and their value sets: a few, and every count at its cap.
        {**small, "seq": 10, "dcc_rules": [_rule("VR-DE-0001"), _rule("IR-FR-0001", type="Invalidation"),
                                           _rule("GR-DE-0002", certificate_type="General", logic=True)],
         "valuesets": [{"id": "vaccines", "codes": ["EU/1/20/1528", "EU/1/20/1507"]}, {"id": "empty", "codes": []}]},
        {**empty, "seq": 11, "dcc_rules": [_rule(f"VR-DE-{i:04d}", logic=True) for i in range(MAX_RULES)],
         "valuesets": [{"id": "c" * MAX_CODE, "codes": [f"{i:016d}" for i in range(MAX_CODES)]},
                       *({"id": f"set-{i}", "codes": ["x" * MAX_CODE]} for i in range(MAX_VALUESETS - 1))]},
        # Printed cards: card issuers of the shortest, a middle and the longest life, a few revoked cards; a
        # card_key alone; the most revoked cards a list holds.
        {**small, "seq": 12, "issuers": [*small["issuers"], *(_issuer_entry(rng.randbytes(8), f"card-{d}", k.keys[4],
                                                                            card_days=d) for d in (1, 365, 1830))],
         "card_key": k.card_key, "card_revoked": _card_hashes(rng, 3)},
        {**small, "seq": 13, "card_key": rng.randbytes(CARD_KEY_BYTES)},
        {**empty, "seq": 14, "issuers": issuers(3, cards=True), "card_key": k.card_key,
         "card_revoked": _card_hashes(rng, MAX_CARD_REVOKED)},
        # At every cap at once, to 1 MiB: the most work a list may ask for.
        pad({**_list_payload(8, NOW, issuers(MAX_ISSUERS - 1, cards=True),
                             [rng.randbytes(8) for _ in range(MAX_REVOKED // 2)], list(k.ders),
                             [_authority_entry(sealing[i % 3]) for i in range(MAX_AUTHORITY)]),
             "card_key": k.card_key, "card_revoked": _card_hashes(rng, MAX_CARD_REVOKED)}, most),
        pad(_list_payload(9, NOW, [], [rng.randbytes(8) for _ in range(MAX_REVOKED - 3000)], [], []), most),
    ]


def _built(k: _Keys) -> tuple[bytes, dict]:
    """A list as trustlist.build (the authority's own tool) writes it, and its payload."""

    raw = signers.build_trust_list(k.root, [*k.issuers, *k.cards], seq=5, issued_at=NOW, revoked=[k.issuers[2].kid],
                                   dsc=k.ders[:1], authority=k.sealing[:2], card_key=k.card_key,
                                   card_revoked=[(k.cards[0].kid, bytes(16)), (k.cards[1].kid, b"\x01" * 16)])
    return raw, cbor2.loads(cbor2.loads(raw).value[2])  # the harness's own bytes: plain cbor2 reads them


def _invalid_lists(k: _Keys, kid: bytes, small: dict, largest: dict, too_many_cards: list[bytes]
                   ) -> list[tuple[bytes, str]]:
    """One message per kind of rejection, the security review's among them."""
    from firmware.keys import kid_of

    bomb = b"\xc4\x82\x00\xc2" + head(2, _BOMB_BYTES) + b"\xff" * _BOMB_BYTES
    encoded = cbor2.dumps(small)

    def signed(**over) -> bytes:
        return _signed(k.root, kid, cbor2.dumps({**small, **over}))

    card_issuer = {**small["issuers"][0], "card_days": 30}
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
        # Printed cards: a card issuer of 0 days and of a day past five years, a card_key or a revoked card's hash
        # of 15 or 17 bytes, one revoked card over the cap, revoked cards without their key.
        (signed(issuers=[{**card_issuer, "card_days": 0}]), "bad_payload"),
        (signed(issuers=[{**card_issuer, "card_days": MAX_CARD_DAYS + 1}]), "bad_payload"),
        (signed(issuers=[{**card_issuer, "card_days": "30"}]), "bad_payload"),
        (signed(card_key=bytes(CARD_KEY_BYTES - 1)), "bad_payload"),
        (signed(card_key=bytes(CARD_KEY_BYTES + 1), card_revoked=[bytes(16)]), "bad_payload"),
        (signed(card_key=k.card_key, card_revoked=[bytes(16), bytes(CARD_HASH_BYTES + 1)]), "bad_payload"),
        (signed(card_key=k.card_key, card_revoked=[bytes(CARD_HASH_BYTES - 1)]), "bad_payload"),
        (signed(card_key=k.card_key, card_revoked=too_many_cards), "bad_payload"),
        (signed(card_revoked=too_many_cards[:3]), "bad_payload"),
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
    too_many_cards = _card_hashes(rng, MAX_CARD_REVOKED + 1)
    invalid = _invalid_lists(k, kid, valid[1], valid[-2], too_many_cards)
    card_issuer = next(e for e in valid[2]["issuers"] if "card_days" in e)  # the authority's tool's own
    world = ListWorld(k.root, k.impostor, kid, tuple(valid), encoded, signed, tuple(data for data, _ in invalid),
                      weights, valid[1]["issuers"][0], valid[1]["authority"][0], k.ders[0], _bad_rules(),
                      card_issuer, k.card_key, tuple(too_many_cards))
    return world, invalid


def _break_list(rng: random.Random, p: dict, w: ListWorld) -> bytes:
    """A payload with one change that makes it invalid whatever else it holds."""
    p = dict(p)
    k = rng.randrange(10)
    if k == 0:  # seq, issued_at or not_after of a wrong type or range, or missing
        name = rng.choice(("seq", "issued_at", "not_after"))
        if rng.random() < 0.2:
            del p[name]
        else:
            p[name] = rng.choice(_BAD_INT)
    elif k == 1:  # a list that is not one (a missing list is an empty one: not a change that breaks it)
        p[rng.choice(("issuers", "revoked", "dsc", "authority", "card_revoked"))] = rng.choice(_NOT_LIST)
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
    elif k == 6:  # a business rule the devices refuse, or a value set off its schema
        if rng.random() < 0.5:
            p["dcc_rules"] = _insert(rng, list(p.get("dcc_rules", ())), rng.choice(w.bad_rules))
        elif rng.random() < 0.2:
            p["valuesets"] = rng.choice((*_NOT_LIST, [{"id": "a", "codes": []}] * 2, {"vaccines": ["EU/1/20/1528"]}))
        else:
            template = {"id": "vaccines", "codes": ["EU/1/20/1528"]}
            sets = list(p.get("valuesets", ()))
            p["valuesets"] = _spoil_entry(rng, sets, sets[0] if sets else template, _BAD_VALUESET)
    elif k < 9:  # printed cards: a card issuer's card_days, the card_key, a revoked card spoilt
        p = _break_cards(rng, p, w)
    else:  # not a map
        return cbor2.dumps(rng.choice((list(p.items()), None, "trust list", b"", 0, [p])))
    return cbor2.dumps(p)


def _break_cards(rng: random.Random, p: dict, w: ListWorld) -> dict:
    """One change to the printed cards' fields that makes the list invalid whatever else it holds."""
    form = rng.randrange(6)
    if form == 0:  # an entry's card_days out of 1-1830 or no unsigned integer (a listed issuer's, or a new one's)
        p["issuers"] = _spoil_entry(rng, list(p["issuers"]), w.card_issuer, {"card_days": _BAD_ISSUER["card_days"]})
    elif form == 1:  # a card_key of a wrong size or type
        p["card_key"] = rng.choice(_BAD_CARD_KEY)
    elif form == 2:  # a revoked card's hash of a wrong size or type
        p.setdefault("card_key", w.card_key)
        p["card_revoked"] = _insert(rng, list(p.get("card_revoked", ())), rng.choice(_BAD_CARD_HASH))
    elif form == 3:  # revoked cards without the key they are hashed under
        p.pop("card_key", None)
        p["card_revoked"] = list(p.get("card_revoked", ())) or [rng.randbytes(16) for _ in range(rng.randint(1, 3))]
    elif form == 4:  # no list
        p["card_revoked"] = rng.choice(_NOT_LIST)
    else:  # one revoked card over the cap
        p["card_key"], p["card_revoked"] = w.card_key, list(w.too_many_cards)
    return p


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
        if rng.random() < 0.2 and name not in _OPTIONAL:
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
            i = rng.randrange(len(p[group]))
            names = ("not_before", "not_after", *(("card_days",) if "card_days" in p[group][i] else ()))
            choices.append((group, i, rng.choice(names)))
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

_KEYS_V1 = frozenset({"v", "rid", "venue", "device", "ts", "iss", "cti", "kind"})  # the whole visit
_KEYS_V2 = frozenset({"iss", "cti", "kind"})  # the secret alone
_OPENED = frozenset({"v", "rid", "device", "ts", "time", "kind", "iss", "cti"})  # what investigate prints, at least
MLKEM768_X25519, X25519 = 0x647A, 0x0020  # the KEM ids a version 2 record may name (docs/records.md)
_AEAD = (hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_HPKE = {MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, *_AEAD), X25519: hpke.Suite(hpke.KEM.X25519, *_AEAD)}


def _id_ok(x: object) -> bool:
    return type(x) is str and 1 <= len(x) <= 64


def _plain_ok(p: dict, version: int) -> bool:
    """The harness's own rules for a visit's plaintext: version 1's whole visit (its envelope is compared when it
    is opened), version 2's secret alone."""
    if set(p) != (_KEYS_V1 if version == 1 else _KEYS_V2) or not all(type(k) is str for k in p):
        return False
    iss, cti, kind = p["iss"], p["cti"], p["kind"]
    secret = _id_ok(iss) and (kind == "KP1" and type(cti) is bytes and len(cti) == 16
                              or kind == "DCC" and type(cti) is str and 1 <= len(cti) <= 256)
    if version == 2:
        return secret
    v, rid, ts = p["v"], p["rid"], p["ts"]
    return (secret and type(v) is int and v == 1 and type(rid) is bytes and len(rid) == 16 and _id_ok(p["venue"])
            and _id_ok(p["device"]) and type(ts) is int and 0 <= ts < 2**64)


def _plain(visit) -> dict:
    """A Visit's version 1 plaintext map, as a version 1 device encodes it (records.sealed_v1)."""
    return {"v": 1, "rid": visit.rid, "venue": visit.venue, "device": visit.device, "ts": visit.ts,
            "iss": visit.iss, "cti": visit.cti, "kind": visit.kind}


def _secret(visit) -> dict:
    """A Visit's version 2 plaintext map, before its padding."""
    return {"iss": visit.iss, "cti": visit.cti, "kind": visit.kind}


def _pad(body: bytes) -> bytes:
    """The model's own copy of records.pad: the length in two bytes, the body, zeros to the next multiple of PAD."""
    return len(body).to_bytes(2, "big") + body + bytes(-(2 + len(body)) % PAD)


def _info(fields: list | tuple) -> bytes:
    """A version 2 record's HPKE info: its clear envelope (the first seven fields) after INFO_V2."""
    return INFO_V2 + cbor2.dumps(list(fields[:7]))


def _sealed_as(plaintext: bytes, info: bytes | None) -> bytes:
    """What the model files a plaintext under: itself (version 1), or with the info it was sealed under (2)."""
    return _digest(plaintext if info is None else len(info).to_bytes(4, "big") + info + plaintext)


def _topic(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/visits"


@dataclass(frozen=True)
class AuthorityKey:
    """One authority key as the harness holds it: the KEM id and kid a record names it by, its HPKE keys for the
    harness's own seal and opening, and the same key as investigate takes it."""

    suite: int
    kid: bytes
    public: object  # X25519PublicKey, or hpke.MLKEM768X25519PublicKey
    private: object  # X25519PrivateKey, or hpke.MLKEM768X25519PrivateKey
    opening: OpeningKey

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """Version 2's seal, by cryptography's HPKE: not seal.py's, which is under test."""
        return _HPKE[self.suite].encrypt(plaintext, self.public, info=info)

    def open(self, enc_and_ct: bytes, info: bytes) -> bytes:
        return _HPKE[self.suite].decrypt(enc_and_ct, self.private, info=info)


def _authority_key(rng: random.Random, hybrid: bool) -> AuthorityKey:
    """A key from `rng`: MLKEM768-X25519 (its ML-KEM key from a 64-byte seed) or X25519; named as docs/records.md
    names it (the start of SHA-256 of the raw public key), and checked against seal.py's name for it."""
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    x = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    if hybrid:
        m = MLKEM768PrivateKey.from_seed_bytes(rng.randbytes(64))
        raw = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        key = AuthorityKey(MLKEM768_X25519, hashlib.sha256(raw).digest()[:8],
                           hpke.MLKEM768X25519PublicKey(m.public_key(), x.public_key()),
                           hpke.MLKEM768X25519PrivateKey(m, x), OpeningKey(x, m))
    else:
        raw = x.public_key().public_bytes_raw()
        key = AuthorityKey(X25519, hashlib.sha256(raw).digest()[:8], x.public_key(), x, OpeningKey(x))
    public = key.opening.public_key()
    if (public.suite.kem_id, public.kid) != (key.suite, key.kid):
        raise AssertionError("the harness names an authority key otherwise than seal.py")
    return key


@dataclass
class IngestModel:
    """The oracle's own idea of a good message and a good opening, and the plaintexts it sealed as valid."""

    keys: tuple[AuthorityKey, ...]  # the authority's, all given to _open
    max_wire: int
    oldest: int  # the window of ts the custodian takes, at NOW
    newest: int
    sealed: dict[bytes, dict] = field(default_factory=dict)  # _sealed_as of a valid plaintext -> its map

    def note(self, plaintext: bytes, p: dict | None, info: bytes | None = None) -> None:
        """A plaintext the harness seals: remembered if it is a valid visit's, encoded as a device encodes one.
        `info` None: a version 1 record's; else a version 2 record's, sealed under that info to the key it names."""
        if p is None or not _plain_ok(p, 1 if info is None else 2):
            return
        if plaintext == (cbor2.dumps(p) if info is None else _pad(cbor2.dumps(p))):
            self.sealed[_sealed_as(plaintext, info)] = p

    def envelope(self, payload: bytes) -> list | None:
        """[1, rid, venue, device, ts, enc_and_ct] or [2, rid, venue, device, ts, suite, kid, enc_and_ct] if
        `payload` is one in preferred serialization, else None."""
        if type(payload) is not bytes or len(payload) > self.max_wire:
            return None
        try:
            obj = cbor2.loads(payload)
            canonical = cbor2.dumps(obj) == payload
        except Exception:  # noqa: BLE001  anything cbor2 cannot read or write again is no record
            return None
        if not (canonical and type(obj) is list and len(obj) in (6, 8)):
            return None
        v, rid, venue, device, ts = obj[:5]
        ok = (type(v) is int and v == (1 if len(obj) == 6 else 2) and type(rid) is bytes and len(rid) == 16
              and _id_ok(venue) and _id_ok(device) and type(ts) is int and 0 <= ts < 2**64 and type(obj[-1]) is bytes)
        if len(obj) == 8:
            suite, kid = obj[5:7]
            ok = ok and type(suite) is int and suite in _HPKE and type(kid) is bytes and len(kid) == 8
        return obj if ok else None

    def why_not(self, topic: str, payload: bytes) -> str | None:
        """Why the custodian must refuse this message (None: it may take it)."""
        env = self.envelope(payload)
        if env is None:
            return "no record in preferred serialization"
        venue, device, ts = env[2:5]
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
        env = self.envelope(payload)
        named = env[5:7] if len(env) == 8 else [None, None]
        if [checked.version, checked.rid, checked.venue, checked.device, checked.ts, checked.suite, checked.kid,
                checked.enc_and_ct] != [*env[:5], *named, env[-1]]:
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

    def _opened_v1(self, env: list) -> bytes | None:
        """A version 1 record's plaintext, opened with each X25519 key (it names none); None if none opens it."""
        _, rid, venue, device, _, sealed = env
        for key in self.keys:
            if key.suite == X25519:
                try:
                    return seal_v1.open_sealed(sealed, key.private, seal_v1.aad_for(rid, venue, device))
                except Exception:  # noqa: BLE001  cryptography's InvalidTag, or anything else: not sealed to it
                    continue
        return None

    def _opened_v2(self, env: list) -> bytes | None:
        """A version 2 record's plaintext, opened with the key its suite and kid name under its own info."""
        key = next((k for k in self.keys if (k.suite, k.kid) == tuple(env[5:7])), None)
        if key is None:
            return None
        try:
            return key.open(env[-1], _info(env))
        except Exception:  # noqa: BLE001
            return None

    def _refuse_visit(self, payload: bytes, opened: dict) -> str | None:
        env = self.envelope(payload)
        if env is None:
            return "_open opened a message that is no record"
        version, rid, venue, device, ts = env[:5]
        plaintext = self._opened_v1(env) if version == 1 else self._opened_v2(env)
        if plaintext is None:
            return "_open opened what does not open under the authority's keys (v2: the one its kid names)"
        p = self.sealed.get(_sealed_as(plaintext, None if version == 1 else _info(env)))
        if p is None:
            return "_open opened a plaintext the harness never sealed as a valid visit (v2: under its info)"
        if version == 1 and (p["rid"], p["venue"], p["device"], p["ts"]) != (rid, venue, device, ts):
            return "_open opened a relabelled record"
        cti = p["cti"].hex() if isinstance(p["cti"], bytes) else p["cti"]
        if (opened["v"], opened["rid"], opened["device"], opened["ts"], opened["kind"], opened["iss"],
                opened["cti"]) != (version, rid.hex(), device, ts, p["kind"], p["iss"], cti):
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
    """The label is check's verdict / the opening's, after the record's version (`v2:`) when the model reads one."""
    if not isinstance(answer, Ingested):
        return "odd_answer", False, f"the ingest answered a {type(answer).__name__}"
    topic, payload = message
    checked = "accepted" if isinstance(answer.checked, SealedRecord) else answer.checked
    opened = "opened" if isinstance(answer.opened, dict) else answer.opened
    env = model.envelope(payload)
    label = (f"{'' if env is None else f'v{env[0]}:'}{checked if isinstance(checked, str) else 'odd'}/"
             f"{opened if isinstance(opened, str) else 'odd'}")
    refused = model.refuse_check(topic, payload, answer.checked) or model.refuse_open(payload, answer.opened)
    return label, checked == "accepted" or opened == "opened", refused


@dataclass(frozen=True)
class Sealed:
    """A seed: a visit's record as a device writes it, to one of the authority's keys."""

    visit: Visit
    fields: tuple  # the record's: [1, rid, venue, device, ts, sealed] or [2, ..., ts, suite, kid, sealed]
    key: AuthorityKey  # the key it is sealed to
    topic: str
    wire: bytes

    @property
    def version(self) -> int:
        return self.fields[0]


@dataclass(frozen=True)
class IngestWorld:
    """What the ingest mutators need: the seeds, the keys, the model (to note what is sealed)."""

    seeds: tuple[Sealed, ...]
    keys: tuple[AuthorityKey, ...]  # the authority's: MLKEM768-X25519, X25519, an X25519 key of version 1 only
    strangers: tuple[AuthorityKey, ...]  # one of each suite, which the authority does not hold
    model: IngestModel


def _seeds_of(v: Visit, keys: tuple[AuthorityKey, ...], v1_key: AuthorityKey, model: IngestModel) -> list[Sealed]:
    """The visit's records of both versions, version 2 in both suites; each plaintext noted as valid. Version 2's
    are Visit.seal's (what a device writes), so the harness's info and padding are held to it here."""
    topic = _topic(v.venue, v.device)
    plain = cbor2.dumps(_plain(v))
    model.note(plain, _plain(v))
    record = sealed_v1(v, v1_key.public)
    out = [Sealed(v, (1, v.rid, v.venue, v.device, v.ts, record.enc_and_ct), v1_key, topic, record.wire())]
    for key in keys[:2]:
        record = v.seal(key.opening.public_key())
        fields = (2, v.rid, v.venue, v.device, v.ts, key.suite, key.kid, record.enc_and_ct)
        padded = _pad(cbor2.dumps(_secret(v)))
        if cbor2.dumps(list(fields)) != record.wire() or key.open(record.enc_and_ct, _info(fields)) != padded:
            raise AssertionError("a device's version 2 record is not what the harness's model makes of it")
        model.note(padded, _secret(v), _info(fields))
        out.append(Sealed(v, fields, key, topic, record.wire()))
    return out


def _ingest_world(seed: int) -> IngestWorld:
    from custodian import ingest

    rng = random.Random(f"ingest-world:{seed}")
    keys = (_authority_key(rng, True), _authority_key(rng, False), _authority_key(rng, False))
    strangers = (_authority_key(rng, True), _authority_key(rng, False))
    oldest, newest = NOW - ingest.MAX_AGE_S, NOW + ingest.TS_SKEW_S
    model = IngestModel(keys, MAX_WIRE, oldest, newest)
    places = (("cafe-1", "door-1"), ("cafe-1", "door-2"), ("gym.2", "d"), ("V" * 64, "D" * 64), ("x", "y"),
              ("Store_9", "entrance-A"))
    times = (NOW, oldest, newest, NOW - 1, NOW - 3600, rng.randint(oldest, newest))  # the window's edges among them
    visits = [_visit(rng, venue, device, ts, dcc=(i + j) % 2 == 1)
              for i, (venue, device) in enumerate(places) for j, ts in enumerate(times[i % 3 :: 2])]
    # version 1 records alternate between the two X25519 keys: the opening must try each
    seeds = [s for n, v in enumerate(visits) for s in _seeds_of(v, keys, keys[1 + n % 2], model)]
    return IngestWorld(tuple(seeds), keys, strangers, model)


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


_BAD_ID = ("", "x" * 65, "x" * 64, b"cafe-1", 5, None, "caf\u00e9", "a/b", "+", "#", "\x00", " ", "a" * 1000)
_WIRE_BAD = {
    0: (0, 1, 2, 3, 255, 2**64 - 1, -1, True, 1.0, "1", b"\x01", None, [1]),  # less the record's own version
    1: (b"", bytes(15), bytes(17), bytes(16), "0" * 16, 16, None, [0] * 16, bytes(32)),
    2: _BAD_ID,
    3: _BAD_ID,
    5: (0, 1, 0x0010, 0x0011, 0x0012, 0x001F, 0x0021, 0x0041, 0x6479, 0x647B, 0x7A64, 0x0020 + 2**16, 2**64 - 1,
        -0x20, True, 32.0, "X25519", "MLKEM768-X25519", b"\x00\x20", None, [0x20]),  # a version 2 record's suite
    6: (b"", bytes(7), bytes(9), bytes(16), bytes(8), b"\xff" * 8, "0" * 16, 8, None, [bytes(8)]),  # and kid
}
_SEALED_BAD = (b"", b"\x00", "x", 0, None, [], bytes(31), bytes(48), bytes(1120), bytes(1136))


def _wire_field(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """One field of the wire form of a wrong type, size or value (ts at and past every boundary); a version 2
    record's suite the other one, its kid another key's (the authority's or a stranger's)."""
    s = w.seeds[i]
    fields = list(s.fields)
    last = len(fields) - 1
    index = rng.choice((0, 1, 2, 3, 4, 4, 4, last) + ((5, 5, 6, 6) if s.version == 2 else ()))
    if index == 4:
        bad: tuple = _ts_values(w.model)
    elif index == last:
        bad = _SEALED_BAD
    elif index == 5:
        bad = (*_WIRE_BAD[5], *(k.suite for k in w.keys if k.suite != s.key.suite))
    elif index == 6:
        bad = (*_WIRE_BAD[6], *(k.kid for k in (*w.keys, *w.strangers) if k is not s.key))
    else:
        bad = tuple(x for x in _WIRE_BAD[index] if not (index == 0 and x == s.version and type(x) is int))
    fields[index] = rng.choice(bad)
    return _message(fields, s.topic)


def _message(fields: list, fallback_topic: str) -> tuple[str, bytes]:
    """The fields encoded as a record, on their own topic when venue and device are texts."""
    venue, device = fields[2:4] if len(fields) > 3 else (None, None)
    topic = _topic(venue, device) if isinstance(venue, str) and isinstance(device, str) else fallback_topic
    return topic, cbor2.dumps(fields)


def _widen(encoded: bytes) -> bytes:
    """An integer's or a string's head one size wider than preferred serialization allows."""
    major, info = encoded[0] >> 5, encoded[0] & 0x1F
    if info < 24:
        return head(major, info, wide=True) + encoded[1:]
    size = 1 << (info - 24)
    n = int.from_bytes(encoded[1 : 1 + size], "big")
    return (head(major, n, wide=True) if size < 8 else encoded[:1 + size]) + encoded[1 + size :]


def _wire_form(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """The same fields, not as a device writes them: a wide head, other array forms, the other version's layout."""
    s = w.seeds[i]
    fields = list(s.fields)
    parts = [cbor2.dumps(f) for f in fields]
    k = rng.randrange(6)
    if k == 0:
        j = rng.randrange(len(parts))
        parts[j] = _widen(parts[j])
        return s.topic, head(4, len(parts)) + b"".join(parts)
    if k == 1:
        return s.topic, rng.choice((b"\x98" + bytes((len(parts),)), b"\x9f")) + b"".join(parts) + \
            (b"\xff" if rng.random() < 0.5 else b"")
    if k == 2:
        return s.topic, cbor2.dumps(rng.choice((fields[:-1], fields + [0], [fields], dict(enumerate(fields)),
                                                cbor2.CBORTag(rng.choice((18, 24, 55799)), fields))))
    if k == 3:
        return s.topic, s.wire + rng.choice((b"\x00", b"\xff", b"\x86", b"\x88", s.wire))
    if k == 4:  # a version that is not the layout's: 2 without suite and kid, 1 with them, a later one, swapped
        head_, rest = fields[1:5], fields[5:]
        return s.topic, cbor2.dumps(rng.choice((
            [2 if s.version == 1 else 1, *fields[1:]], [rng.choice((3, 255)), *fields[1:]], [2, *head_, rest[-1]],
            [2, *head_, X25519, bytes(8), *rest], [2, *head_, *reversed(rest[:-1]), rest[-1]] if s.version == 2
            else [1, *head_, *rest, b""])))
    # the ts moved within the window: a valid envelope whose sealed ts is another
    fields[4] = rng.choice((w.model.oldest, w.model.newest, NOW, s.visit.ts + 1, s.visit.ts - 1))
    return s.topic, cbor2.dumps(fields)


def _bad_topic(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A good record on a topic that is not its own, or no visits topic at all."""
    s = w.seeds[i]
    o = rng.choice(w.seeds).visit
    venue, device = s.visit.venue, s.visit.device
    topic = rng.choice((
        _topic(o.venue, device), _topic(venue, o.device), _topic(device, venue), f"qrgate/v2/{venue}/{device}/visits",
        f"qrgate/v1/{venue}/{device}/status", f"/qrgate/v1/{venue}/{device}/visits", _topic(venue, device) + "/",
        _topic(venue, device) + "/x", f"qrgate/v1/{venue}/visits", f"qrgate/v1/{venue}/{device}",
        "qrgate/v1/+/+/visits", "qrgate/v1/#", "", "/", "////", _topic(venue.upper(), device.lower()),
        _topic(venue + "\u200b", device), _topic(venue + "\x00", device), f"$share/custodian/{_topic(venue, device)}",
        f"QRGATE/v1/{venue}/{device}/visits", f"x/y/{venue}/{device}/z", _topic("a" * 65_535, device),
        _topic(venue + " ", device), _topic("", device), _topic(venue, device).replace("/", "\\"),
    ))
    return topic, s.wire


def _hostile_wire(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """Hostile CBOR as the record, around it, or in one of its fields."""
    s = w.seeds[i]
    k = rng.randrange(3)
    if k == 0:
        return s.topic, item(rng, w.model.max_wire).data
    if k == 1:
        return s.topic, spoil(rng, s.wire).data
    return s.topic, splice(list(s.fields), (rng.randrange(len(s.fields)),), item(rng, w.model.max_wire).data,
                           cbor2.dumps)


def _oversized(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A record whose sealed part brings it to just under, at or past the cap, or far past it."""
    s = w.seeds[i]
    size = rng.choice((w.model.max_wire - 1, w.model.max_wire, w.model.max_wire + 1, 8192, 65_536, 1 << 20))
    sealed, fields = s.fields[-1], list(s.fields)
    n = _fill(size, len(cbor2.dumps([*fields[:-1], b""])))
    fields[-1] = sealed[:n] + bytes(max(0, n - len(sealed)))
    return s.topic, cbor2.dumps(fields)


def _spoil_plain(rng: random.Random, w: IngestWorld, v) -> tuple[bytes, dict | None]:
    """A visit's version 1 plaintext with one change (most make it invalid; a few keep it valid), hostile CBOR,
    or version 2's plaintext."""
    p = _plain(v)
    k = rng.randrange(11)
    if k == 0:
        p["iss"] = rng.choice((v.iss.encode(), "", "i" * 65, "i" * 64, 5, None, [v.iss], 1.5))
    elif k == 1:
        if rng.random() < 0.5:
            del p[rng.choice(tuple(_KEYS_V1))]
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
        o = rng.choice(w.seeds).visit
        name = rng.choice(("rid", "venue", "device", "ts"))
        p[name] = rng.choice((getattr(o, name), v.ts + 1, True, float(v.ts))) if name == "ts" else getattr(o, name)
    elif k == 6:  # the plaintext itself hostile: cut, with bytes after it, in a tag, indefinite
        return spoil(rng, cbor2.dumps(p)).data, None
    elif k == 7:
        return splice(p, (rng.choice(tuple(p)),), item(rng, 1024).data, cbor2.dumps), None
    elif k == 8:  # a duplicate key (a second kind, a second ts), or ts as a bignum of the same value
        if rng.random() < 0.5:
            return _duplicated(rng, p), None
        return splice(p, ("ts",), bignum_of(v.ts), cbor2.dumps), None
    elif k == 9:  # not a map
        return cbor2.dumps(rng.choice((list(p.values()), None, "visit", [p]))), None
    else:  # version 2's plaintext in a version 1 record: padded as a version 2 device pads it, or not
        secret = _secret(v)
        return rng.choice((_pad(cbor2.dumps(secret)), cbor2.dumps(secret))), secret
    return cbor2.dumps(p), p


def _duplicated(rng: random.Random, p: dict) -> bytes:
    """The map with one of its keys a second time."""
    name = rng.choice(tuple(p))
    return head(5, len(p) + 1) + b"".join(cbor2.dumps(a) + cbor2.dumps(b) for a, b in p.items()) + \
        cbor2.dumps(name) + cbor2.dumps(p[name])


def _at_length(v, length: int) -> dict:
    """A DCC visit's secret whose CBOR is `length` bytes (its UVCI made to fit): at a pad's edge."""
    for n in range(1, 257):
        p = {"iss": v.iss, "cti": "U" * n, "kind": "DCC"}
        if len(cbor2.dumps(p)) == length:
            return p
    raise ValueError(f"no UVCI makes the secret {length} bytes")


def _spoil_secret(rng: random.Random, w: IngestWorld, v) -> tuple[bytes, dict | None]:
    """A visit's version 2 plaintext with one change (most make it invalid; a few keep it valid): in the map, in
    its CBOR, in the padding, or version 1's plaintext instead."""
    p = _secret(v)
    k = rng.randrange(12)
    if k == 0:
        p["iss"] = rng.choice((v.iss.encode(), "", "i" * 65, "i" * 64, 5, None, [v.iss], 1.5))
    elif k == 1:
        if rng.random() < 0.5:
            del p[rng.choice(tuple(_KEYS_V2))]
        else:
            p[rng.choice(("v", "rid", "ts", "venue", "x"))] = rng.choice((2, 0, "", b"", v.rid))
    elif k == 2:
        p["kind"] = rng.choice(("kp1", "DCC ", "KP2", "", 1, None, b"KP1", "DCC" if v.kind == "KP1" else "KP1"))
    elif k == 3:
        p["cti"] = rng.choice((bytes(15), bytes(17), v.cti.hex(), 7, None, "", b"") if v.kind == "KP1" else
                              (v.cti.encode(), "", "U" * 257, "U" * 256, 5, None))
    elif k == 4:  # version 1's plaintext, the whole visit, in a version 2 record
        p = {**_plain(v), "v": rng.choice((1, 2))}
    elif k == 5:  # hostile CBOR, padded: the body cut, with bytes after it, in a tag, indefinite; or in one field
        body = spoil(rng, cbor2.dumps(p)).data if rng.random() < 0.5 else \
            splice(p, (rng.choice(tuple(p)),), item(rng, 1024).data, cbor2.dumps)
        return _pad(body), None
    elif k == 6:  # a duplicate key, or the token id as a bignum
        body = _duplicated(rng, p) if rng.random() < 0.7 else splice(p, ("cti",), bignum_of(2**64 + 1), cbor2.dumps)
        return _pad(body), None
    elif k == 7:  # not a map
        return _pad(cbor2.dumps(rng.choice((list(p.values()), None, "visit", [p], b"")))), None
    elif k in (8, 9, 10):  # a valid map, padded otherwise than a device pads it
        return _spoil_padding(rng, cbor2.dumps(p)), p
    else:  # valid: the longest (two pads), at a pad's edge, the keys in another order
        p = rng.choice(({"iss": "i" * 64, "cti": "U" * 256, "kind": "DCC"}, _at_length(v, PAD - 2),
                        _at_length(v, PAD - 1), dict(reversed(p.items()))))
    return _pad(cbor2.dumps(p)), p


def _spoil_padding(rng: random.Random, body: bytes) -> bytes:
    """`body` padded wrongly: not to a whole pad or a whole pad more than it needs, a tail byte not zero, a length
    past the end or zero, one short or one long, no padding or no length. (Whether one of them is still as a
    device pads it, the model decides.)"""
    padded, n = _pad(body), len(body)
    k = rng.randrange(6)
    if k == 0:  # not a whole pad
        return rng.choice((padded[:-1], padded[: -rng.randint(1, PAD - 1)], padded + bytes(rng.randint(1, PAD - 1)),
                           padded + bytes(PAD)))
    if k == 1:  # a byte of the tail not zero: its first, its last, any (a body that fills its pad: a pad more)
        nonzero = bytes((rng.choice((1, 0x80, 0xFF)),))
        if len(padded) == 2 + n:
            return padded + nonzero + bytes(PAD - 1)
        at = rng.choice((2 + n, len(padded) - 1, rng.randrange(2 + n, len(padded))))
        return padded[:at] + nonzero + padded[at + 1 :]
    if k == 5:  # no padding, or no length
        return rng.choice((body, n.to_bytes(2, "big") + body, body + bytes(-n % PAD)))
    length = rng.choice((
        (len(padded) - 1, len(padded), 0xFFFF),  # past the end
        (0,),  # nothing in it
        (n - 1, n + 1, len(padded) - 2),  # the body cut, or followed by zeros
    )[k - 2])
    return length.to_bytes(2, "big") + padded[2:]


def bignum_of(n: int) -> bytes:
    """`n` as a bignum (tag 2): the same value, in a form a record's plaintext does not allow."""
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return head(6, 2) + head(2, len(raw)) + raw


def _resealed(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A valid envelope whose plaintext was changed and sealed again to the authority key the record is sealed
    to (version 2: under the record's own info): the opening's checks are reached."""
    s = w.seeds[i]
    fields = list(s.fields)
    if s.version == 1:
        plaintext, p = _spoil_plain(rng, w, s.visit)
        w.model.note(plaintext, p)
        fields[-1] = seal_v1.seal(plaintext, s.key.public, seal_v1.aad_for(*fields[1:4]))
    else:
        info = _info(fields)
        plaintext, p = _spoil_secret(rng, w, s.visit)
        w.model.note(plaintext, p, info)
        fields[-1] = s.key.seal(plaintext, info)
    return s.topic, cbor2.dumps(fields)


def _relabelled(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    """A valid plaintext under an envelope it was not sealed for, or sealed to a key the authority lacks or the
    record does not name."""
    s = w.seeds[i]
    fields = (_relabelled_v1 if s.version == 1 else _relabelled_v2)(rng, w, s, list(s.fields))
    return _message(fields, s.topic)


def _relabelled_v1(rng: random.Random, w: IngestWorld, s: Sealed, fields: list) -> list:
    v, plain = s.visit, cbor2.dumps(_plain(s.visit))
    k = rng.randrange(6)
    if k == 0:  # another rid, or another place for the same sealed part
        o = rng.choice(w.seeds).visit
        fields[1:4] = [rng.choice((o.rid, rng.randbytes(16))), o.venue, o.device] if rng.random() < 0.5 else \
            [rng.randbytes(16), v.venue, v.device]
    elif k == 1 and len(v.venue) > 1 and len(v.device) < 64:  # aad = rid ‖ venue ‖ device: the same bytes
        fields[2:4] = [v.venue[:-1], v.venue[-1] + v.device]
    elif k == 2:  # to a key the authority lacks, or to the X25519 half of its hybrid key (no version 1 key)
        to = rng.choice((w.strangers[1].public, w.keys[0].opening.x25519.public_key()))
        fields[-1] = seal_v1.seal(plain, to, seal_v1.aad_for(v.rid, v.venue, v.device))
    elif k == 3:
        o = rng.choice(w.seeds).visit
        fields[-1] = seal_v1.seal(plain, s.key.public, seal_v1.aad_for(o.rid, o.venue, o.device))
    else:  # another record's sealed part: of either version, either suite
        fields[-1] = rng.choice(w.seeds).fields[-1]
    return fields


def _relabelled_v2(rng: random.Random, w: IngestWorld, s: Sealed, fields: list) -> list:
    v, padded = s.visit, _pad(cbor2.dumps(_secret(s.visit)))
    k = rng.randrange(6)
    if k == 0:  # one field of the envelope changed under the sealed part (its info binds them all)
        o = rng.choice(w.seeds).visit
        j = rng.randrange(1, 7)
        if j == 1:
            fields[1] = rng.choice((o.rid, rng.randbytes(16)))
        elif j in (2, 3):
            fields[2:4] = rng.choice(([o.venue, o.device], [v.venue, o.device], [v.venue[:-1] or "z",
                                                                                 v.venue[-1] + v.device[:63]]))
        elif j == 4:
            fields[4] = rng.choice((v.ts + 1, v.ts - 1, o.ts))
        elif j == 5:
            fields[5] = MLKEM768_X25519 if s.key.suite == X25519 else X25519
        else:
            fields[6] = rng.choice([k.kid for k in (*w.keys, *w.strangers) if k is not s.key])
    elif k == 1:  # naming another key of the authority, sealed to this one under the info naming the other
        other = rng.choice([k for k in w.keys if k is not s.key])
        fields[5:7] = [other.suite, other.kid]
        fields[-1] = s.key.seal(padded, _info(fields))
    elif k == 2:  # naming this key, sealed under its info to another: the authority's, or a stranger's
        to = rng.choice([k for k in (*w.keys, *w.strangers) if k is not s.key])
        fields[-1] = to.seal(padded, _info(fields))
    elif k == 3:  # naming a stranger, sealed to it: no key given for it
        st = rng.choice(w.strangers)
        fields[5:7] = [st.suite, st.kid]
        fields[-1] = st.seal(padded, _info(fields))
    elif k == 4:  # sealed to this key under another info: another record's, version 1's, another encoding
        clear = fields[:7]
        other = rng.choice([o for o in w.seeds if o.version == 2])
        wide = head(4, 7) + b"".join(_widen(cbor2.dumps(f)) if j == 4 else cbor2.dumps(f) for j, f in enumerate(clear))
        fields[-1] = s.key.seal(padded, rng.choice((
            _info(other.fields), cbor2.dumps(clear), seal_v1.INFO + cbor2.dumps(clear),
            INFO_V2 + cbor2.dumps(clear[:5]), INFO_V2 + wide, _info(clear) + b"\x00", INFO_V2, b"",
            INFO_V2 + cbor2.dumps([*clear, b""]), INFO_V2 + seal_v1.aad_for(*clear[1:4]))))
    else:  # another record's sealed part: of either version, either suite
        fields[-1] = rng.choice(w.seeds).fields[-1]
    return fields


def _wire_bytes(rng: random.Random, w: IngestWorld, i: int) -> tuple[str, bytes]:
    s = w.seeds[i]
    wire = s.wire
    for _ in range(rng.randint(1, 3)):
        wire = mutate_bytes(rng, wire)
    return s.topic, wire


_INGEST_OPS = ((_wire_bytes, 3), (_wire_field, 4), (_wire_form, 2), (_bad_topic, 2), (_hostile_wire, 3),
               (_oversized, 1), (_resealed, 6), (_relabelled, 3))


def _ingest_mutant(rng: random.Random, t: Target, stats: Counter, w: IngestWorld) -> tuple[str, bytes]:
    i = rng.randrange(len(w.seeds))
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
    seeds = tuple(Seed((s.topic, s.wire), s.wire, f"v{s.version}:accepted/opened") for s in w.seeds)
    return Target(
        name="ingest",
        seeds=seeds,
        verify=partial(_ingest, check=check or ingest.check, storage=_Storages(storage),
                       opener=opener or investigate._open, key=[k.opening for k in w.keys]),
        may_accept=lambda m: w.model.why_not(*m) is None,
        mutant=partial(_ingest_mutant, w=w),
        judge=partial(_judge_ingest, model=w.model),
        max_verify_us=MAX_VERIFY_US,
    )
