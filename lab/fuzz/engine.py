"""`qrgate fuzz kp1|kc1|dcc|trustlist|ingest`: mutated inputs thrown at what reads them, judged by an oracle.

The claim under test is the issue's: over at least 1,000,000 inputs derived from
valid tokens, the verifier never lets an exception escape (`verify_raising`) and
never accepts a text that is not a genuine token of a trusted, unrevoked key.

A `Target` is what the harness needs to know of one token kind: seeds, the
function under test, the oracle, how COSE bytes become a text, the keys to
re-sign with and how to spoil its claims. Three exist: KP1, KC1 and the EU DCC.
KP1 phone tokens and KC1 printed cards share one world (phone issuers, card
issuers, a revoked key of each role, revoked cards in the trust list: each
target seeds the other role's texts as well as its own) and one claim spoiler,
told the longest life the re-signing key may sign (300 s; a card issuer's
card_days). The EU DCC (`HC1:`,
zlib inside base45, ES256 and PS256 document signers, the door's DccVerifier with
the default [dcc] rules) adds its own mutators (the zlib stream, the hcert
payload) to the shared ones; see "the DCC target" below for its oracle. The
wire targets (lab.fuzz.wire: the trust list, the custodian's ingest) bring
inputs of their own (bytes, MQTT messages) through `Target.mutant` and an oracle
that reads what the function under test returned through `Target.judge`.

Mutants come in three levels, 1 to 4 stacked per input, drawn from a
`random.Random` seeded by --seed and the worker's index (so any finding is
reproducible from its seed, worker and input number; the world's keys are
derived from --seed too). Text mutations mostly die in base45, so most work is
done below it: on the COSE bytes (so the base45 layer passes and CBOR is hit)
and on the decoded COSE structure (so CBOR passes and the COSE, issuer,
signature and claim checks are hit). Mutants that are re-signed with a trusted
key only ever carry a change that makes them invalid whatever else they hold:
a re-signed mutant is then never a genuine token, and the oracle stays one set,
"the seeds' valid texts". (The DCC verifier is lenient by design, so its oracle is
on the signed content instead, and valid payloads its trusted keys sign for the
harness are allowed: see lab.fuzz.dcc.) What the PS256 signer signs carries the
library's random PSS salt, so those signature bytes alone differ between runs of
one seed; every finding's text is saved (--out) for replay.
"""

from __future__ import annotations

import gc
import json
import os
import random
import struct
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Callable

import cbor2

from lab.fuzz.cbor import head
from lab.signers import Issuer
from lab import signers

NOW = 1_750_000_000  # the fixed moment at which every seed is minted and every mutant judged
SKEW = 5
MAX_SAVED = 100  # finding files per worker and kind: a broken verifier must not fill the disk
HANG_S = 10.0  # a worker whose input counter stands still this long is stuck on one input: a hang


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    text: object  # the input as `verify` takes it: a token's text (a wire target's: bytes, or a message)
    body: bytes  # the COSE_Sign1 bytes inside the text (a wire target's: the bytes themselves)
    expect: str  # the verdict the oracle's own model gives it: "accepted" or a rejection reason


# What a wire target's `judge` answers for one input: its verdict's label, whether it was let
# through, and (when the oracle refuses the answer) what is wrong with it, or None.
Judgement = tuple[str, bool, "str | None"]


def _near_misses(prefix: str) -> tuple[str, ...]:
    """A token kind's prefix almost: none, lower case, no colon, another version, a DCC's, twice, padded."""
    return ("", prefix.lower(), prefix[:-1], prefix[:2] + "2:", "HC1:", prefix * 2, " " + prefix, prefix + " ",
            prefix + "\n", prefix + ":")


_PREFIXES = _near_misses("KP1:")  # what a text mutant puts in place of a token's prefix, unless its Target says


@dataclass(frozen=True)
class Target:
    """One thing under test: seeds + the verify function + the oracle, and what mutators need.

    A token kind (KP1, KC1, DCC) fills in the token fields, which the shared mutators below use; a
    target of other inputs brings `mutant` and `judge` instead and leaves those empty."""

    name: str
    seeds: tuple[Seed, ...]
    verify: Callable[[object], object]  # a token's Verdict (or what `judge` reads); an exception is a crash
    may_accept: Callable[[object], bool]  # the oracle: may this exact input be accepted?
    prefix: str = ""
    wrap: Callable[[bytes], str] | None = None  # COSE bytes -> text (KP1: prefix + base45; DCC: base45(zlib))
    signers: dict[bytes, Issuer] = field(default_factory=dict)  # kid -> key held by the harness, to re-sign
    break_claims: Callable[[random.Random, dict, Issuer], bytes] | None = None  # a payload invalid whatever else
    forger: Issuer | None = None  # a key no trust list holds: what it signs is never genuine, under any kid
    kids: tuple[bytes, ...] = field(default=())  # kids to swap in, beyond the signers'
    alg: int = -8  # the COSE algorithm the seeds are signed with (KP1: EdDSA; DCC: ES256)
    malleate: Callable[[bytes], bytes] | None = None  # the signature's algebraic twin (KP1: s + L)
    levels: tuple | None = None  # (mutator, weight) pairs; None: _LEVELS
    wrap_mutant: Callable[[random.Random, bytes], str] | None = None  # a mutant's COSE -> text, randomly
    untagged: bool = False  # the verifier takes a COSE_Sign1 without its tag 18: mutate those too
    mutant: Callable[[random.Random, "Target", Counter], object] | None = None  # own inputs; None: token texts
    judge: Callable[[object, object], Judgement] | None = None  # (input, verify's answer); None: a Verdict's
    max_verify_us: float | None = None  # an input slower than this is a finding (None: only reported)
    prefixes: tuple[str, ...] = _PREFIXES  # what a text mutant puts in the prefix's place


_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@cache
def _triples() -> list[str]:
    """Every 16-bit value's base45 triple, made on first use (not when `qrgate` builds its parser)."""
    return [_B45[v % 45] + _B45[v // 45 % 45] + _B45[v // 2025] for v in range(1 << 16)]


def b45encode(data: bytes) -> str:
    """base45 by table: six times cheaper than the base45 package, and most mutants are encoded."""
    triples = _triples()
    text = "".join([triples[v] for v in struct.unpack(f">{len(data) // 2}H", data[: len(data) & ~1])])
    return text + triples[data[-1]][:2] if len(data) & 1 else text


@dataclass(frozen=True)
class _TokenWorld:
    """Keys for the KP1 and KC1 targets, derived from one string, and the trust list naming them.

    Phone issuers and card issuers (each role's key refused for the other's tokens), one revoked key of
    each role (listed as an issuer as well: revocation alone must turn it away), a rogue key nobody
    trusts, and revoked cards, listed as keyed hashes under the list's card_key."""

    rng: random.Random  # what drew the keys, to draw the seeds' values on from
    phones: tuple[Issuer, ...]
    cards: tuple[Issuer, ...]
    revoked_phone: Issuer
    revoked_card: Issuer
    rogue: Issuer
    revoked_ctis: dict[bytes, bytes]  # a card issuer's kid -> the id of its revoked card
    trust: object  # the TrustList

    @property
    def by_kid(self) -> dict[bytes, Issuer]:
        """Every key the harness holds, to re-sign with (the trusted last: a shared kid maps to its owner)."""
        return {i.kid: i for i in (self.rogue, self.revoked_phone, self.revoked_card, *self.phones, *self.cards)}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.iss for i in self.by_kid.values())


CARD_ISSUERS = (("centre", 365), ("office", 30), ("library", 1830))  # 1830: a card's hard cap, five years


def _token_world(name: str) -> _TokenWorld:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.tokens import trustlist

    rng = random.Random(name)
    new_key = lambda: Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))  # noqa: E731
    phones = tuple(Issuer(iss, new_key()) for iss in ("naver", "kakao", "toss"))
    revoked_phone, rogue, root = Issuer("payco", new_key()), Issuer("rogue", new_key()), new_key()
    cards = tuple(Issuer(iss, new_key(), card_days=days) for iss, days in CARD_ISSUERS)
    revoked_card = Issuer("ward", new_key(), card_days=365)
    revoked_ctis = {i.kid: rng.randbytes(16) for i in cards}
    # Card issuers' keys valid for six years: a card of the longest life is judged inside its key's validity.
    raw = signers.build_trust_list(root, [*phones, revoked_phone, *cards, revoked_card], seq=1, issued_at=NOW,
                                   issuer_valid_days=6 * 365, revoked=[revoked_phone.kid, revoked_card.kid],
                                   card_revoked=list(revoked_ctis.items()), card_key=rng.randbytes(16))
    return _TokenWorld(rng, phones, cards, revoked_phone, revoked_card, rogue, revoked_ctis,
                       trustlist.parse(raw, root.public_key()))


def _signed_text(prefix: str, issuer: Issuer, iat: int, life: int, att=("vax",), cti: bytes = bytes(16),
                 kid: bytes | None = None, iss: str | None = None) -> str:
    """KP1's claims as they are (any life, any iss), signed by `issuer` under its kid or `kid`, behind `prefix`."""
    from firmware.tokens import cose

    claims: dict = {ISS: issuer.iss if iss is None else iss, IAT: iat, EXP: iat + life, CTI: cti}
    if att:
        claims[ATT] = list(att)
    return prefix + b45encode(cose.sign1(cbor2.dumps(claims), issuer.key, kid or issuer.kid))


def _token_target(name: str, prefix: str, w: _TokenWorld, seeds: list[Seed], verifier, window: Callable[[Issuer], int],
                  cap: int, **kw) -> Target:
    """A token kind's Target (KP1, KC1): the oracle is the set of its valid seeds' texts, nothing else."""
    from firmware.tokens import b45

    for s in seeds:
        if b45encode(s.body) != s.text[len(prefix) :] or b45.decode(s.text[len(prefix) :]) != s.body:
            raise AssertionError("fuzz.b45encode disagrees with the base45 package")
    valid = frozenset(s.text for s in seeds if s.expect == "accepted")
    return Target(
        name=name,
        prefix=prefix,
        seeds=tuple(seeds),
        verify=partial(verifier.verify_raising, now=NOW),
        may_accept=valid.__contains__,
        wrap=lambda data: prefix + b45encode(data),
        signers=w.by_kid,
        break_claims=partial(_break_claims, names=w.names, window=window, cap=cap),
        forger=w.rogue,
        kids=(w.rng.randbytes(8),),
        **kw,
    )


def _seed(text: str, prefix: str, expect: str) -> Seed:
    import base45

    return Seed(text, base45.b45decode(text[len(prefix) :]), expect)


def kp1_target(seed: int = 0) -> Target:
    """An in-memory world of fresh keys (derived from `seed`), a signed trust list and KP1 seeds."""
    from firmware.tokens import kc1, kp1

    w = _token_world(f"kp1-world:{seed}")
    rng, replayed, seeds = w.rng, set(), []

    def add(expect, issuer, iat=NOW, ttl=15, att=("vax",), kid=None, cti=None):
        text = signers.mint(issuer, iat, ttl=ttl, att=att, cti=cti or rng.randbytes(16), kid=kid)
        seeds.append(_seed(text, kp1.PREFIX, expect))

    for issuer in w.phones:
        for ttl, att in ((1, ("vax",)), (15, ("age14", "vax")), (60, ("age19", "vax")), (300, kp1.ATTRIBUTES),
                         (rng.randint(1, 300), ("vax", "age14"))):
            add("accepted", issuer, ttl=ttl, att=att)
        add("accepted", issuer, iat=NOW - 15 - SKEW)  # exp + skew == NOW: the last second it passes
        add("accepted", issuer, iat=NOW + SKEW)  # iat - skew == NOW: the first second it passes
        add("expired", issuer, iat=NOW - 16 - SKEW)
        add("expired", issuer, iat=NOW - 86400, ttl=300)
        add("not_yet_valid", issuer, iat=NOW + SKEW + 1)
        add("missing_attribute", issuer, att=rng.choice(((), ("age19",), ("age14", "age19"))))
        replayed.add(cti := rng.randbytes(16))
        add("replayed_elsewhere", issuer, cti=cti)
        add("bad_signature", Issuer(issuer.iss, w.rogue.key), kid=issuer.kid)  # forged under a trusted kid
    add("unknown_issuer", w.rogue)
    add("unknown_issuer", Issuer(w.phones[1].iss, w.phones[0].key))  # a listed key under another's name
    add("revoked_issuer", w.revoked_phone)
    add("revoked_issuer", w.revoked_phone, att=())
    # One key, one role: a card issuer's key signs no phone token, whatever the token says.
    for card in w.cards:
        text = signers.mint_card(card, NOW, days=1)
        seeds.append(_seed(kp1.PREFIX + text[len(kc1.PREFIX) :], kp1.PREFIX, "unknown_issuer"))  # a card as a token
        add("unknown_issuer", Issuer(card.iss, card.key))  # a phone token's 15 s from a card issuer's key
        # a card issuer's signature under a phone issuer's kid
        seeds.append(_seed(_signed_text(kp1.PREFIX, card, NOW, 15, cti=rng.randbytes(16), kid=w.phones[0].kid,
                                        iss=w.phones[0].iss), kp1.PREFIX, "bad_signature"))

    verifier = kp1.Kp1Verifier(lambda: w.trust, require=("vax",), skew=SKEW, used_elsewhere=replayed.__contains__)
    return _token_target("kp1", kp1.PREFIX, w, seeds, verifier, window=lambda signer: kp1.MAX_WINDOW,
                         cap=kp1.MAX_WINDOW)


def kc1_target(seed: int = 0) -> Target:
    """KP1's world and mutators on printed cards: cards of every card issuer's lives, each rejection's seed, the
    cross-role texts (a phone token as a card), and claims broken and re-signed past a card's life."""
    from firmware.tokens import kc1, kp1

    w = _token_world(f"kc1-world:{seed}")
    rng, replayed, seeds = w.rng, set(), []
    day = 86400

    def add(expect, issuer, iat=NOW, days=None, att=("vax",), kid=None, cti=None):
        text = signers.mint_card(issuer, iat, days=days, att=att, cti=cti or rng.randbytes(16), kid=kid)
        seeds.append(_seed(text, kc1.PREFIX, expect))

    def signed(expect, issuer, life, **kw):
        seeds.append(_seed(_signed_text(kc1.PREFIX, issuer, kw.pop("iat", NOW), life, cti=rng.randbytes(16), **kw),
                           kc1.PREFIX, expect))

    for issuer in w.cards:
        longest = issuer.card_days
        for days, att in ((1, ("vax",)), (longest, ("age14", "vax")), (rng.randint(1, longest), ("age19", "vax")),
                          (rng.randint(1, longest), kp1.ATTRIBUTES), (longest, ("vax", "age14"))):
            add("accepted", issuer, days=days, att=att)
        signed("accepted", issuer, 0)  # a card of no life, at its one second
        add("accepted", issuer, iat=NOW - longest * day - SKEW)  # exp + skew == NOW: the last second it passes
        add("accepted", issuer, iat=NOW + SKEW)  # iat - skew == NOW: the first second it passes
        add("expired", issuer, iat=NOW - longest * day - SKEW - 1)
        add("expired", issuer, iat=NOW - 10 * day, days=1)
        add("not_yet_valid", issuer, iat=NOW + SKEW + 1)
        add("missing_attribute", issuer, att=rng.choice(((), ("age19",), ("age14", "age19"))))
        replayed.add(cti := rng.randbytes(16))
        add("replayed_elsewhere", issuer, cti=cti)
        add("revoked", issuer, cti=w.revoked_ctis[issuer.kid])
        add("bad_signature", Issuer(issuer.iss, w.rogue.key, issuer.card_days), kid=issuer.kid)  # forged
        # Claims the issuer signed that no card may hold: longer than its card_days, past the hard cap, another iss.
        if longest * day < kc1.MAX_LIFETIME_S:  # (a card of the longest issuer's is malformed a second later)
            signed("unknown_issuer", issuer, longest * day + 1)
        signed("malformed", issuer, kc1.MAX_LIFETIME_S + 1)
        signed("unknown_issuer", issuer, day, iss=rng.choice([i.iss for i in w.cards if i is not issuer]))
        # another card issuer's revoked card id, from this issuer: the hash names the kid too
        other = rng.choice([i for i in w.cards if i is not issuer])
        add("accepted", issuer, cti=w.revoked_ctis[other.kid])
    add("unknown_issuer", Issuer("rogue", w.rogue.key, 365))
    add("revoked_issuer", w.revoked_card)
    add("revoked_issuer", w.revoked_card, att=())
    # One key, one role: a phone issuer's key signs no card, whatever the card says.
    for phone in w.phones:
        token = signers.mint(phone, NOW, att=("vax",), cti=rng.randbytes(16))
        seeds.append(_seed(kc1.PREFIX + token[len(kp1.PREFIX) :], kc1.PREFIX, "unknown_issuer"))  # a token as a card
        signed("unknown_issuer", phone, 30 * day)  # a card's life from a phone issuer's key
        signed("bad_signature", phone, 30 * day, kid=w.cards[0].kid, iss=w.cards[0].iss)  # under a card issuer's kid
        signed("unknown_issuer", w.cards[0], 30 * day, kid=phone.kid, iss=phone.iss)  # a card under a phone kid

    verifier = kc1.Kc1Verifier(lambda: w.trust, require=("vax",), skew=SKEW, used_elsewhere=replayed.__contains__)
    # Re-signed claims must be invalid whatever else they hold: for a card issuer's key, a life past its card_days.
    window = lambda signer: signer.card_days * day if signer.card_days else kc1.MAX_LIFETIME_S  # noqa: E731
    return _token_target("kc1", kc1.PREFIX, w, seeds, verifier, window=window, cap=kc1.MAX_LIFETIME_S,
                         prefixes=(*_near_misses(kc1.PREFIX), kp1.PREFIX))


ISS, EXP, IAT, CTI, ATT = 1, 4, 6, 7, -70001  # kp1.CLAIM_*, spelled out: kp1 is imported only when used
_BAD = {
    ISS: (5, "", "x" * 65, b"naver", None, ["naver"], True, 1.5),
    IAT: (True, "now", float(NOW), None, -1, 0, 1_577_836_799, 4_102_444_800, 2**64, -(2**64) - 1, 2**80,
          cbor2.CBORTag(1, NOW), b"\x00"),
    CTI: (b"", bytes(15), bytes(17), "0" * 16, 7, None, [0] * 16),
    ATT: ("vax", [1], ["x" * 33], ["vax"] * 17, {"vax": 1}, None, [None], b"vax", [b"vax"], [["vax"]]),
}
_BAD[EXP] = _BAD[IAT]


def _break_claims(rng: random.Random, claims: dict, signer: Issuer, names: tuple[str, ...],
                  window: Callable[[Issuer], int], cap: int) -> bytes:
    """KP1's claims (a phone token's or a card's) with one change that makes them invalid at NOW, whatever the
    other claims are. `window(signer)` is the longest life that key may sign (a phone token's 300 s, a card
    issuer's card_days), `cap` the longest any token of the kind may claim."""
    c = dict(claims)
    longest = window(signer)
    k = rng.randrange(10)
    if k < 3:  # one claim of a wrong type or value, or missing
        key = rng.choice(tuple(_BAD))
        if rng.random() < 0.15 and key != ATT:
            c.pop(key, None)
        else:
            c[key] = rng.choice(_BAD[key])
    elif k == 3:  # well-formed but naming another issuer than the signing key's
        c[ISS] = rng.choice([n for n in names if n != signer.iss])
    elif k == 4:  # well-formed but not yet valid
        c[IAT] = NOW + SKEW + 1 + rng.randrange(10**6)
        c[EXP] = c[IAT] + rng.randrange(longest + 1)
    elif k == 5:  # well-formed but expired
        c[EXP] = NOW - SKEW - 1 - rng.randrange(10**6)
        c[IAT] = c[EXP] - rng.randrange(longest + 1)
    elif k == 6:  # a life longer than the key may sign (or than any token may claim), or negative
        c[IAT] = NOW - rng.randrange(300)
        c[EXP] = c[IAT] + rng.choice((longest + 1, longest + 2, 12 * longest, max(10**6, cap + 1), -1, -300))
    elif k == 7:  # more than 16 claims
        c.update({1000 + j: j for j in range(17)})
    elif k == 8:  # not a map
        return cbor2.dumps(rng.choice((list(c.items()), cbor2.CBORTag(61, c), None, "claims", b"")))
    else:  # a map CBOR itself forbids here: trailing bytes, indefinite length, duplicate key
        items = [cbor2.dumps(k) + cbor2.dumps(v) for k, v in c.items()] or [b"\x01\x00"]
        form = rng.randrange(3)
        if form == 0:
            return cbor2.dumps(c) + rng.choice((b"\x00", b"\xff", b"\xa0"))
        if form == 1:
            return b"\xbf" + b"".join(items) + b"\xff"
        items.insert(rng.randrange(len(items) + 1), rng.choice(items))
        return head(5, len(items)) + b"".join(items)
    return cbor2.dumps(c)


# --- mutators ------------------------------------------------------------------------------------

_OTHER_ASCII = "abcxyz_#!?=\"'\\\t\n\r\x00\x7f~`{}[]<>@&^|;,"
_NON_ASCII = ("Ä", "é", "\u212a", "\u0130", "\u00a0", "\ufeff", "\u200b", "١", "Ａ", "€", "😀", "\ud800")
_CBOR_BYTES = bytes((0x00, 0x01, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x20, 0x38, 0x40, 0x41, 0x43, 0x48, 0x58, 0x59,
                     0x5B, 0x5F, 0x60, 0x7B, 0x7F, 0x80, 0x84, 0x9B, 0x9F, 0xA0, 0xA1, 0xBB, 0xBF, 0xC0, 0xC2,
                     0xD2, 0xD8, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF))
_CBOR_RUNS = (  # heads with huge lengths or values, bignums, floats, deep nesting, indefinite items, tags
    b"\x5b" + b"\xff" * 8, b"\x5a\xff\xff\xff\xff", b"\x9b\x7f" + b"\xff" * 7, b"\xbb" + bytes(3) + b"\x01" + bytes(4),
    b"\x7b" + b"\xff" * 8, b"\x1b" + b"\xff" * 8, b"\x3b" + b"\xff" * 8, b"\xdb" + b"\xff" * 8,
    b"\xc2\x49\x01" + bytes(8), b"\xfb\x7f\xf8" + bytes(6), b"\xf9\x7c\x00", b"\x81" * 40, b"\x5f\x41\x00\xff",
    b"\xd8\x12", b"\xd9\xd9\xf7", b"\x58\x40", b"\x59\x00\x40",
)
_L = 2**252 + 27742317777372353535851937790883648493  # the Ed25519 group order


def _char(rng: random.Random) -> str:
    r = rng.random()
    return rng.choice(_B45) if r < 0.7 else rng.choice(_OTHER_ASCII) if r < 0.9 else rng.choice(_NON_ASCII)


def mutate_text(rng: random.Random, s: str, t: Target) -> str:
    n, i = len(s), rng.randrange(len(s) + 1)
    k = rng.randrange(9)
    if k == 0:
        return s[:i] + _char(rng) + s[i + 1 :]
    if k == 1:
        return s[:i] + "".join(_char(rng) for _ in range(rng.randint(1, 3))) + s[i:]
    if k == 2:
        return s[:i] + s[i + rng.randint(1, 3) :]
    if k == 3:
        return s[: rng.randrange(n + 1)]
    if k == 4:
        j = rng.randrange(n + 1)
        return s[:i] + s[j : j + rng.randint(1, 40)] + s[i:]
    if k == 5:
        other = rng.choice(t.seeds).text
        return s[:i] + other[rng.randrange(len(other) + 1) :]
    if k == 6:
        return rng.choice(t.prefixes) + (s[len(t.prefix) :] if s.startswith(t.prefix) else s)
    if k == 7:
        pad = rng.choice(("\n", "\r\n", " ", "\x00", "  ", "\t"))
        return s + pad if rng.random() < 0.7 else pad + s
    return (s * (2048 // max(n, 1) + 1))[: rng.choice((1023, 1024, 1025, 2048))]


def mutate_bytes(rng: random.Random, data: bytes, t: Target | None = None) -> bytes:
    """One byte-level change: a flip, a CBOR head byte, an off-by-one length, an insertion, a cut, a run."""
    b = bytearray(data) or bytearray(b"\x00")
    i = rng.randrange(len(b))
    k = rng.randrange(10)
    if k == 0:
        b[i] ^= 1 << rng.randrange(8)
    elif k == 1:
        b[i] = rng.randrange(256)
    elif k == 2:
        b[i] = rng.choice(_CBOR_BYTES)
    elif k == 3:  # off-by-one lengths and values
        b[i] = (b[i] + rng.choice((-2, -1, 1, 2))) & 0xFF
    elif k == 4:
        b[i:i] = rng.randbytes(rng.randint(1, 4)) if rng.random() < 0.5 else bytes((rng.choice(_CBOR_BYTES),))
    elif k == 5:
        del b[i : i + rng.randint(1, 8)]
    elif k == 6:
        del b[i:]
    elif k == 7:
        b += rng.choice(_CBOR_RUNS) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
    else:
        run = rng.choice(_CBOR_RUNS)
        b[i : i + len(run)] = run
    return bytes(b)


def loosen(data: object) -> object:
    try:
        return cbor2.loads(data)
    except Exception:
        return None


def signer_for(t: Target, protected: object, rng: random.Random) -> Issuer:
    header = loosen(protected) if isinstance(protected, bytes) else None
    kid = header.get(4) if isinstance(header, dict | cbor2.frozendict) else None
    return t.signers.get(kid) if isinstance(kid, bytes) and kid in t.signers else rng.choice(list(t.signers.values()))


def resign(signer: Issuer, protected: bytes, payload: bytes) -> bytes:
    return signer.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))


def mutate_structure(rng: random.Random, data: bytes, t: Target) -> bytes:
    """Decode the COSE_Sign1, change one thing in it and encode it again (re-signing where said)."""
    obj = loosen(data)
    if t.untagged and type(obj) in (list, tuple) and len(obj) == 4:
        tag, (prot, unprot, payload, sig) = None, obj
    elif isinstance(obj, cbor2.CBORTag) and type(obj.value) in (list, tuple) and len(obj.value) == 4:
        tag, (prot, unprot, payload, sig) = obj.tag, obj.value
    else:
        return mutate_bytes(rng, data, t)
    alg, other_alg = t.alg, -7 if t.alg == -8 else -8
    items = [prot, unprot, payload, sig]
    k = rng.randrange(12)
    if k == 0:  # another tag, no tag, or a tag around the tag
        value = rng.choice((0, 1, 16, 17, 19, 61, 96, 98, 274, 55799, 2**32, 2**64 - 1))
        r = rng.random()
        return cbor2.dumps(items if r < 0.2 else cbor2.CBORTag(value, _tagged(tag, items) if r < 0.4 else items))
    if k == 1:  # three or five elements
        if rng.random() < 0.5:
            del items[rng.randrange(4)]
        else:
            items.insert(rng.randrange(5), rng.choice((b"", {}, None, sig, payload)))
    elif k == 2:  # a non-empty or wrongly typed unprotected header
        kid = rng.choice(list(t.signers))
        items[1] = rng.choice(({1: alg}, {4: kid}, {1: alg, 4: kid}, {"x": 0}, {0: None}, [], None, b"", "", 0))
    elif k == 3:  # an element of the wrong type
        i = rng.randrange(4)
        x = items[i]
        items[i] = rng.choice((x.hex() if isinstance(x, bytes) else "x", None, list(x) if isinstance(x, bytes) else [],
                               cbor2.CBORTag(24, x), 0, False))
    elif k == 4:  # another kid or alg in the protected header, not re-signed
        kid = rng.choice((*t.signers, *t.kids))
        items[0] = cbor2.dumps(rng.choice(({1: alg, 4: kid}, {4: kid, 1: alg}, {1: other_alg, 4: kid},
                                           {1: alg, 4: kid, 5: b""}, {1: alg, 4: kid, 2: [99]})))
    elif k == 5:  # the payload of another seed, or a payload with its expiry moved, not re-signed
        other = cose_parts(rng.choice(t.seeds).body)[2]
        claims = loosen(payload)
        if rng.random() < 0.5 and isinstance(claims, dict | cbor2.frozendict) and isinstance(claims.get(EXP), int):
            other = cbor2.dumps({**claims, EXP: claims[EXP] + rng.choice((1, 60, 3600))})
        items[2] = other
    elif k == 6:  # signature malleability, zeros, a wrong length, another token's, the forger's over the same data
        r, s = sig[:32], sig[32:]
        forms = [lambda: (t.malleate or _malleate_ed25519)(sig),
                 lambda: bytes(64), lambda: r + bytes(32), lambda: sig[:63], lambda: sig + b"\x00",
                 lambda: cose_parts(rng.choice(t.seeds).body)[3], lambda: s + r,
                 lambda: resign(t.forger, prot, payload)]
        items[3] = rng.choice(forms)()
    elif k == 7:  # the same values, not in preferred serialization
        return _noncanonical(rng, tag, items)
    elif k < 10:  # claims spoiled, then re-signed by the key the kid names
        signer = signer_for(t, prot, rng)
        claims = loosen(payload)
        items[2] = t.break_claims(rng, dict(claims) if isinstance(claims, dict | cbor2.frozendict) else {}, signer)
        if not isinstance(prot, bytes):
            items[0] = prot = cbor2.dumps({1: alg, 4: signer.kid})
        items[3] = resign(signer, prot, items[2])
    else:  # protected header spoiled, then re-signed by the key the kid named
        signer = signer_for(t, prot, rng)
        header = loosen(prot) if isinstance(prot, bytes) else None
        h = dict(header) if isinstance(header, dict | cbor2.frozendict) else {}
        form = rng.randrange(3)
        if form == 0:
            h[1] = rng.choice((-7, -35, -37, -257, 0, 1, -9, True, "EdDSA", None, b"\xf8", -8.0, 2**64, [-8]))
        elif form == 1:
            h[4] = rng.choice((b"", signer.kid[:7], signer.kid + b"\x00", signer.kid.hex(), 4, None, [signer.kid]))
        items[0] = cbor2.dumps(h) if form < 2 else rng.choice(
            (b"", b"\xa0", cbor2.dumps([1, -8, 4, signer.kid]), cbor2.dumps(None), cbor2.dumps(h) + b"\x00"))
        items[3] = resign(signer, items[0], payload if isinstance(payload, bytes) else b"")
    return cbor2.dumps(_tagged(tag, items))


def _tagged(tag: int | None, items: list) -> object:
    return items if tag is None else cbor2.CBORTag(tag, items)


def cose_parts(body: bytes) -> list | None:
    """The four elements of a COSE_Sign1, tagged or not (None when it is no such thing)."""
    obj = loosen(body)
    while isinstance(obj, cbor2.CBORTag):
        obj = obj.value
    return list(obj) if type(obj) in (list, tuple) and len(obj) == 4 else None


def _malleate_ed25519(sig: bytes) -> bytes:
    r, s = sig[:32], sig[32:]
    return r + (int.from_bytes(s, "little") + _L).to_bytes(32, "little") if len(s) == 32 else sig


def _noncanonical(rng: random.Random, tag: int, items: list) -> bytes:
    """The envelope with one head longer than needed or of indefinite length: values equal, bytes not."""
    parts = [cbor2.dumps(x) for x in items]
    tag_head, array_head, end = b"" if tag is None else head(6, tag), head(4, len(items)), b""
    k = rng.randrange(5)
    if k == 0:
        tag_head = head(6, tag if tag is not None else 18, wide=True)
    elif k == 1:
        array_head, end = (head(4, 4, wide=True), b"") if rng.random() < 0.5 else (b"\x9f", b"\xff")
    elif k == 2 and items[1] == {}:
        parts[1] = rng.choice((b"\xb8\x00", b"\xbf\xff"))
    else:
        i = rng.choice([i for i, x in enumerate(items) if isinstance(x, bytes)] or [0])
        x = items[i]
        if isinstance(x, bytes):
            cut = rng.randrange(len(x) + 1)
            parts[i] = (head(2, len(x), wide=True) + x if rng.random() < 0.5 else
                        b"\x5f" + head(2, cut) + x[:cut] + head(2, len(x) - cut) + x[cut:] + b"\xff")
    return tag_head + array_head + b"".join(parts) + end


# Relative weights: structure first (it reaches the deep checks), then bytes, then text.
_LEVELS = ((mutate_structure, 5), (mutate_bytes, 4), (mutate_text, 2))


def _mutant(rng: random.Random, t: Target, stats: Counter) -> str:
    seed = rng.choice(t.seeds)
    levels = t.levels or _LEVELS
    ops = rng.choices([op for op, _ in levels], [w for _, w in levels], k=rng.choice((1, 1, 2, 2, 3, 4)))
    ops.sort(key=lambda op: op is mutate_text)  # bytes and structure below base45 first, then the text
    data, text = seed.body, None
    wrap = t.wrap if t.wrap_mutant is None else partial(t.wrap_mutant, rng)
    for op in ops:
        if op is mutate_text:
            text = op(rng, text if text is not None else seed.text if data is seed.body else wrap(data), t)
            continue
        try:
            data = op(rng, data, t)
        except Exception:  # a mutator's own surprise (cbor2 refusing a value): mutate plainly instead
            stats["mutator_fallbacks"] += 1
            data = mutate_bytes(rng, data, t)
    return text if text is not None else wrap(data)


# --- the run -------------------------------------------------------------------------------------


def _label(verdict) -> str:
    return verdict.reason.value if verdict.reason is not None else verdict.kind.value


def _judge_verdict(text: str, verdict, may_accept: Callable[[str], bool]) -> Judgement:
    """A token's Verdict: green is a false accept unless the oracle allows that exact text."""
    return _label(verdict), verdict.green, repr(verdict) if verdict.green and not may_accept(text) else None


def _judge(t: Target) -> Callable[[object, object], Judgement]:
    return t.judge or partial(_judge_verdict, may_accept=t.may_accept)


def _saved_input(x: object) -> dict:
    """A finding's input as written to its file: a text as itself and in hex, bytes in hex, a message by parts."""
    if isinstance(x, str):
        return {"text": x, "hex": x.encode("utf-8", "surrogatepass").hex()}
    if isinstance(x, bytes | bytearray):
        return {"hex": bytes(x).hex()}
    return {"parts": [_saved_input(part) for part in x]}


def _save(out: Path | None, saved: Counter, kind: str, t: Target, seed: int, worker: int, n: int, text: object,
          detail: str) -> None:
    """The only place an input is written: a finding's file, so that it can be replayed."""
    saved[kind] += 1
    if out is None or saved[kind] > MAX_SAVED:
        return
    record = {"kind": kind, "target": t.name, "seed": seed, "worker": worker, "input": n, "detail": detail,
              **_saved_input(text)}
    (out / f"{t.name}-{kind}-s{seed}-w{worker}-{n}.json").write_text(json.dumps(record, indent=1) + "\n")


def _retime(verify: Callable, text: object, took: int) -> int:
    """The least of four timings: a preempted process is not a slow input."""
    clock = time.perf_counter_ns
    for _ in range(3):
        start = clock()
        try:
            verify(text)
        except Exception:
            pass
        took = min(took, clock() - start)
    return took


def _work(t: Target, seed: int, worker: int, count: int, out: Path | None, conn, progress) -> None:
    gc.freeze()  # the world the harness built is not the code under test's heap: out of the collector's sight
    rng = random.Random(f"{seed}:{worker}")
    verdicts, crash_types, stats, saved = Counter(), Counter(), Counter(), Counter()
    verify, judge, mutant, clock = t.verify, _judge(t), t.mutant or _mutant, time.perf_counter_ns
    limit = None if t.max_verify_us is None else t.max_verify_us * 1000
    slowest = total = 0
    slowest_label = None
    for n in range(count):
        progress[worker] = n  # watched by the parent: a hang shows as a counter standing still
        text = mutant(rng, t, stats)
        start = clock()
        try:
            verdict = verify(text)
        except Exception as exc:
            took = clock() - start
            label = "crash"
            crash_types[type(exc).__name__] += 1
            _save(out, saved, "crash", t, seed, worker, n, text, traceback.format_exc())
        else:
            took = clock() - start
            label, green, refused = judge(text, verdict)
            if refused is not None:
                stats["false_accepts"] += 1
                _save(out, saved, "false_accept", t, seed, worker, n, text, refused)
            elif green:
                stats["seed_accepts"] += 1
        verdicts[label] += 1
        total += took
        over = limit is not None and took > limit
        if took > slowest or over:
            took = _retime(verify, text, took)
            if took > slowest:
                slowest, slowest_label = took, label
            if limit is not None and took > limit:
                stats["slow_inputs"] += 1
                _save(out, saved, "slow", t, seed, worker, n, text, f"{label}: {took / 1000:.0f} us")
    conn.send({"count": count, "verdicts": verdicts, "crash_types": crash_types, "stats": stats,
               "slowest_ns": slowest, "slowest_label": slowest_label, "total_ns": total})
    conn.close()


def _collect(jobs: dict, progress, hang_s: float) -> tuple[list[dict], Counter]:
    """Each worker's result; a worker that died or stood still on one input for `hang_s` is a finding."""
    from multiprocessing.connection import wait

    parts, died = [], Counter()
    seen = {w: (-1, time.monotonic()) for w, _ in jobs.values()}
    while jobs:
        for receive in wait(list(jobs), timeout=min(1.0, hang_s / 4)):
            w, proc = jobs.pop(receive)
            try:
                parts.append(receive.recv())
            except EOFError:  # a crash below Python (a C extension's segfault) or in the harness itself
                proc.join()
                died[f"worker {w} died (exit {proc.exitcode})"] += 1
            proc.join()
        now = time.monotonic()
        for receive, (w, proc) in list(jobs.items()):
            n = progress[w]
            if n != seen[w][0]:
                seen[w] = (n, now)
            elif now - seen[w][1] > hang_s:
                proc.kill()
                proc.join()
                del jobs[receive]
                died[f"worker {w} hung on input {n}"] += 1
    return parts, died


def _check_seeds(t: Target) -> dict:
    """Each seed unmutated must get the oracle's verdict: proof the oracle and the world are live."""
    wrong, judge = Counter(), _judge(t)
    for s in t.seeds:
        try:
            got, green, refused = judge(s.text, t.verify(s.text))
        except Exception as exc:
            got, green, refused = f"crash:{type(exc).__name__}", False, None
        if got != s.expect or refused is not None or green != t.may_accept(s.text):
            wrong[f"{s.expect}->{got}"] += 1
    valid = sum(bool(t.may_accept(s.text)) for s in t.seeds)
    return {"seeds": len(t.seeds), "valid": valid, "as_expected": len(t.seeds) - sum(wrong.values()),
            "wrong": dict(wrong)}


def run(target: Target, count: int = 1_000_000, workers: int | None = None, seed: int = 0,
        out: Path | None = None, hang_s: float = HANG_S) -> dict:
    """Fuzz `target` with `count` mutants over `workers` forked processes; the result as a dict (no inputs)."""
    t = target
    workers = max(1, min(workers or os.cpu_count() or 1, count or 1))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    seed_check = _check_seeds(t)
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the world and any injected target reach workers as they are
    started = time.perf_counter()
    progress = ctx.RawArray("q", workers)
    jobs = {}
    for w in range(workers):
        receive, send = ctx.Pipe(duplex=False)
        share = count // workers + (w < count % workers)
        proc = ctx.Process(target=_work, args=(t, seed, w, share, out, send, progress), daemon=True)
        proc.start()
        send.close()
        jobs[receive] = (w, proc)
    parts, died = _collect(jobs, progress, hang_s)
    seconds = time.perf_counter() - started
    verdicts, crash_types, stats = Counter(), Counter(died), Counter()
    for p in parts:
        verdicts.update(p["verdicts"])
        crash_types.update(p["crash_types"])
        stats.update(p["stats"])
    done = sum(p["count"] for p in parts)
    slow = max(parts, key=lambda p: p["slowest_ns"], default={"slowest_ns": 0, "slowest_label": None})
    crashes, false_accepts = sum(crash_types.values()), stats["false_accepts"]
    limit = {} if t.max_verify_us is None else {"max_verify_us": t.max_verify_us, "slow_inputs": stats["slow_inputs"]}
    return {
        "target": t.name,
        "count": done,
        "workers": workers,
        "seed": seed,
        "seconds": round(seconds, 3),
        "inputs_per_second": round(done / seconds) if seconds else None,
        "verdicts": dict(verdicts.most_common()),
        "seed_accepts": stats["seed_accepts"],
        "crashes": crashes,
        "crash_types": dict(crash_types),
        "false_accepts": false_accepts,
        "slowest_verify_us": round(slow["slowest_ns"] / 1000, 1),
        "slowest_verdict": slow["slowest_label"],
        **limit,
        "mean_verify_us": round(sum(p["total_ns"] for p in parts) / max(done, 1) / 1000, 2),
        "mutator_fallbacks": stats["mutator_fallbacks"],
        "seed_check": seed_check,
        "out": str(out) if out is not None else None,
        "ok": crashes == 0 and false_accepts == 0 and seed_check["as_expected"] == seed_check["seeds"]
        and not stats["slow_inputs"],
    }


# --- the command ---------------------------------------------------------------------------------
