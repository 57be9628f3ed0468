"""`qrgate fuzz passback`: what a venue's peers (or anyone who gets onto its topic) send, against the door's parser.

Bytes into `passback.message.parse`, which must answer a Note or raise
MessageError, within 50 ms (it runs on paho's thread: a slow message would hold
every other one). Seeds are real notes (hashes under a venue secret, seen_until
from the first to the last second allowed) and a spread of invalid messages;
mutants are byte changes (engine.mutate_bytes), the note's fields replaced by
hostile CBOR items (lab.fuzz.cbor), whole messages spoiled (truncated, trailing
bytes, tagged, indefinite), other arrays and maps of the same fields, and
oversized messages up to 1 MiB (what the broker lets through).

The oracle is a model of its own, not the parser: a note has one encoding, 24
bytes `83 01 50 <16 bytes> 1a <4-byte seen_until>` with seen_until in
2020..2100, so what parse accepts must be exactly that, and read as the same
hash and time.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import partial

import cbor2

from firmware.passback import message
from firmware.passback.message import MessageError, Note
from firmware.passback.secret import VenueSecret
from lab.fuzz.cbor import head, item, random_path, splice, spoil
from lab.fuzz.engine import NOW, Judgement, Seed, Target, mutate_bytes

MAX_VERIFY_US = 50_000.0
LO, HI = message.UNTIL_RANGE
_LABELS = (("cap", "too_large"), ("version", "bad_version"), ("16-byte", "bad_hash"), ("2020", "bad_time"),
           ("preferred", "not_preferred"), ("3 fields", "bad_shape"), ("over 3", "bad_shape"),
           ("major type", "bad_shape"))


def model(data: bytes) -> tuple[bytes, int] | None:
    """The note these bytes are, by the format's own definition (not the parser's), or None."""
    if len(data) != 24 or data[:3] != b"\x83\x01\x50" or data[19] != 0x1A:
        return None
    until = int.from_bytes(data[20:24], "big")
    return (data[3:19], until) if LO <= until < HI else None


def _label(exc: MessageError) -> str:
    text = str(exc)
    return next((label for words, label in _LABELS if words in text), "bad_cbor")


def _parse(data: bytes, parse=message.parse) -> object:
    """parse's answer: the Note, or the MessageError it raised (anything else escaping is a crash)."""
    try:
        return parse(data)
    except MessageError as exc:
        return exc


def _judge(data: bytes, answer: object) -> Judgement:
    if isinstance(answer, MessageError):
        return _label(answer), False, None
    if not isinstance(answer, Note):
        return "odd_answer", False, f"parse answered a {type(answer).__name__}"
    want = model(data)
    if want is None:
        return "accepted", True, "accepted bytes that are not the one encoding of a note"
    if (answer.hash, answer.seen_until) != want:
        return "accepted", True, "read a note other than the one sent"
    return "accepted", True, None


def _fields(rng: random.Random) -> list:
    return [1, rng.randbytes(16), rng.choice((LO, HI - 1, NOW + rng.randrange(-86_400, 86_400)))]


def _hostile_field(rng: random.Random) -> bytes:
    fields = _fields(rng)
    return splice(fields, random_path(rng, fields), item(rng, rng.choice((8, 64, 4096))).data, cbor2.dumps)


def _odd_value(rng: random.Random) -> bytes:
    """The fields of a note, one replaced by a value of the wrong kind or size, or the array reshaped."""
    fields = _fields(rng)
    i = rng.randrange(3)
    fields[i] = rng.choice((0, 2, -1, LO - 1, HI, 2**32, 2**64 - 1, "1", b"", b"\x00" * 15, b"\x00" * 17, None,
                            True, 1.5, [], {}, float(NOW), fields[1].hex()))
    shape = rng.randrange(4)
    if shape == 0:
        return cbor2.dumps(fields[: rng.randrange(3)] if rng.random() < 0.5 else fields + [0])
    if shape == 1:
        return cbor2.dumps(dict(enumerate(fields)))
    return cbor2.dumps(fields)


def _wide(rng: random.Random) -> bytes:
    """A valid note's values in a longer head than preferred (one value, two ways to write it)."""
    h, until = rng.randbytes(16), NOW
    parts = [head(4, 3, wide=rng.random() < 0.3), head(0, 1, wide=rng.random() < 0.5),
             head(2, 16, wide=rng.random() < 0.5) + h, b"\x1b" + until.to_bytes(8, "big") if rng.random() < 0.5
             else b"\x1a" + until.to_bytes(4, "big")]
    return b"".join(parts)


def _oversized(rng: random.Random) -> bytes:
    size = rng.choice((25, 32, 33, 1024, 65_536, 1 << 20))
    return message.encode(rng.randbytes(16), NOW) + rng.randbytes(max(0, size - 24))


def _mutant(rng: random.Random, t: Target, stats: Counter) -> bytes:
    seed = rng.choice(t.seeds).text
    assert isinstance(seed, bytes)
    k = rng.randrange(10)
    if k < 4:
        data = mutate_bytes(rng, seed)
        for _ in range(rng.randrange(3)):
            data = mutate_bytes(rng, data)
        return data
    if k == 4:
        return spoil(rng, seed).data
    if k == 5:
        return _hostile_field(rng)
    if k in (6, 7):
        return _odd_value(rng)
    if k == 8:
        return _wide(rng)
    return _oversized(rng)


def _seeds(seed: int) -> list[Seed]:
    rng = random.Random(f"passback-world:{seed}")
    secret = VenueSecret(rng.randbytes(32))
    valid = [message.encode(secret.hash(rng.randbytes(16)), until) for until in (LO, HI - 1, NOW, NOW + 300)]
    h = secret.hash(b"seed")
    invalid = [
        (b"", "bad_cbor"), (cbor2.dumps([2, h, NOW]), "bad_version"), (cbor2.dumps([1, h[:15], NOW]), "bad_hash"),
        (cbor2.dumps([1, h, LO - 1]), "bad_time"), (cbor2.dumps([1, h, HI]), "bad_time"),
        (cbor2.dumps([1, h]), "bad_shape"), (cbor2.dumps({1: h}), "bad_shape"),
        (b"\x83\x01\x50" + h + b"\x1b" + NOW.to_bytes(8, "big"), "not_preferred"),
        (message.encode(h, NOW) + b"\x00", "bad_cbor"), (bytes(1 << 20), "too_large"),
    ]
    return [Seed(v, v, "accepted") for v in valid] + [Seed(d, d, expect) for d, expect in invalid]


def passback_target(seed: int = 0, parse=None) -> Target:
    """Notes against `passback.message.parse` (or an injected `parse`, for the harness's own tests)."""
    return Target(
        name="passback",
        seeds=tuple(_seeds(seed)),
        verify=partial(_parse, parse=parse or message.parse),
        may_accept=lambda data: isinstance(data, bytes) and model(data) is not None,
        mutant=_mutant,
        judge=_judge,
        max_verify_us=MAX_VERIFY_US,
    )
