"""KP1 strictness, one case per rule: each mutation is the only flaw of an otherwise valid token.

Mutations inside signed bytes (protected header, claims) are re-signed with the trusted
issuer's key, so a correct signature never masks the rule under test: a lax verifier
would answer accepted, unknown_issuer or bad_signature, never malformed. Everything
goes through `verify_raising`, so an exception escaping the parser fails the test.
Where a rule belongs to one layer (base45, COSE, claims), the case also checks that
this layer itself refuses it, not only an earlier filter: for the envelope, both the
verifier's positional `cose.parse_eddsa_sign1` and the generic `cose.parse_sign1`.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.signers import Issuer
from firmware.tokens import b45, cose, kp1, trustlist
from firmware.tokens.verdict import Kind, Reason
from lab import signers

# The contract, written out rather than read from kp1, so that a changed constant fails here.
PREFIX = "KP1:"
MAX_TEXT = 1024
MAX_WINDOW = 300
MAX_CLAIMS = 16
T2020, T2100 = 1_577_836_800, 4_102_444_800  # 2020-01-01 and 2100-01-01, 00:00 UTC
ATTRIBUTES = ("age14", "age19", "vax")
ISS, IAT, EXP, CTI_LABEL, ATT = 1, 6, 4, 7, -70001
DEPTH_LIMIT = 16  # cose.strict_loads: max_depth=16 nested containers

NOW = 1_750_000_000
CTI = bytes(range(16))


def _key(seed: str) -> Ed25519PrivateKey:
    # fixed keys: every case (and every base45 text below) is the same on every run
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


ISSUER = Issuer("naver", _key("test_strict naver"))
KID = ISSUER.kid
ROOT = _key("test_strict root")
TRUST = trustlist.parse(signers.build_trust_list(ROOT, [ISSUER], seq=1, issued_at=NOW), ROOT.public_key())
VERIFIER = kp1.Kp1Verifier(trust=lambda: TRUST)

DROP = object()  # a claim override that removes the claim


# --- builders ------------------------------------------------------------------


def claims(**over) -> dict:
    """The good claims, with overrides by name (iss, iat, exp, cti, att); DROP removes one."""
    names = {"iss": ISS, "iat": IAT, "exp": EXP, "cti": CTI_LABEL, "att": ATT}
    body = {ISS: ISSUER.iss, IAT: NOW, EXP: NOW + 15, CTI_LABEL: CTI}
    for name, value in over.items():
        if value is DROP:
            body.pop(names[name], None)
        else:
            body[names[name]] = value
    return body


PROTECTED = cbor2.dumps({cose.HDR_ALG: cose.ALG_EDDSA, cose.HDR_KID: KID})
PAYLOAD = cbor2.dumps(claims())


def sign(protected: bytes, payload: bytes) -> bytes:
    return ISSUER.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))


def bstr(data: bytes) -> bytes:
    return cbor2.dumps(data)


def bstr_indefinite(data: bytes) -> bytes:
    half = len(data) // 2
    return b"\x5f" + bstr(data[:half]) + bstr(data[half:]) + b"\xff"


def bstr_long(data: bytes) -> bytes:
    """The same byte string with its length in one byte more than needed."""
    n = len(data)
    head = bytes((0x58, n)) if n < 24 else b"\x59" + n.to_bytes(2, "big") if n < 256 else b"\x5a" + n.to_bytes(4, "big")
    return head + data


def cose_bytes(
    protected: bytes = PROTECTED,
    payload: bytes = PAYLOAD,
    *,
    head: bytes = b"\xd2\x84",
    enc_protected=bstr,
    unprotected: bytes = b"\xa0",
    enc_payload=bstr,
    signature: bytes | None = None,
    enc_signature=bstr,
    tail: bytes = b"",
) -> bytes:
    """A COSE_Sign1 assembled byte by byte, signed with the trusted issuer key over (protected, payload)."""
    signature = sign(protected, payload) if signature is None else signature
    return head + enc_protected(protected) + unprotected + enc_payload(payload) + enc_signature(signature) + tail


def token(data: bytes) -> str:
    return PREFIX + base45.b45encode(data).decode("ascii")


def signed_claims(body: object) -> bytes:
    return cose_bytes(payload=cbor2.dumps(body))


def signed_header(header: object, unprotected: bytes = b"\xa0") -> bytes:
    return cose_bytes(protected=cbor2.dumps(header), unprotected=unprotected)


def verdict(text: object):
    return VERIFIER.verify_raising(text, NOW)


def assert_malformed(text: object) -> None:
    result = verdict(text)
    assert result.kind is Kind.REJECTED and result.reason is Reason.MALFORMED, result


def assert_accepted(text: object) -> None:
    result = verdict(text)
    assert result.kind is Kind.ACCEPTED and result.reason is None, result


def body_with_length_mod3(rest: int) -> str:
    """The base45 body of an accepted token whose length is ≡ rest (0 or 2) mod 3, i.e. an even or odd byte count."""
    for extra in ({}, {8: b"x"}):
        text = token(signed_claims(claims() | extra))
        if (len(text) - len(PREFIX)) % 3 == rest:
            assert_accepted(text)
            return text[len(PREFIX) :]
    raise AssertionError("no body of that length")


EVEN = body_with_length_mod3(0)  # bytes in pairs: its last triple is the signature's last two bytes
ODD = body_with_length_mod3(2)  # a final pair: the signature's last byte


def test_builders_make_exactly_what_mint_makes():
    # the controls: the hand assembly is byte for byte cose.sign1 (Ed25519 is deterministic), and accepted
    assert cose_bytes() == cose.sign1(PAYLOAD, ISSUER.key, KID)
    assert_accepted(token(cose_bytes()))
    assert_accepted(PREFIX + EVEN)
    assert_accepted(PREFIX + ODD)


# --- prefix --------------------------------------------------------------------

GOOD = token(cose_bytes())
BODY = GOOD[len(PREFIX) :]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("kp1:" + BODY, id="lowercase-prefix"),
        pytest.param("Kp1:" + BODY, id="mixed-case-prefix"),
        pytest.param("KP1" + BODY, id="missing-colon"),
        pytest.param("KP1;" + BODY, id="semicolon-for-colon"),
        pytest.param("KP1: " + BODY, id="space-after-colon"),
        pytest.param("KP1:KP1:" + BODY, id="prefix-twice"),
        pytest.param(" " + GOOD, id="leading-space"),
        pytest.param("\ufeff" + GOOD, id="leading-byte-order-mark"),
        pytest.param("\n" + GOOD, id="leading-newline"),
    ],
)
def test_prefix_must_be_exactly_kp1_colon(text):
    assert_malformed(text)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\r", " ", "  ", "\t", "\x00"], ids=repr)
@pytest.mark.parametrize("body", [EVEN, ODD], ids=["even", "odd"])
def test_nothing_may_follow_a_valid_token(body, suffix):
    assert_accepted(PREFIX + body)
    assert_malformed(PREFIX + body + suffix)
    with pytest.raises(b45.Base45Error):
        b45.decode(body + suffix)


def test_text_over_1024_characters_is_rejected_before_base45(monkeypatch):
    calls = []
    real = b45.decode

    def spy(text):
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(b45, "decode", spy)
    # a valid token padded with base45 zeros: it passes every filter before base45
    at_limit = GOOD + "0" * (MAX_TEXT - len(GOOD))
    over = GOOD + "0" * (MAX_TEXT + 1 - len(GOOD))
    assert (len(at_limit), len(over)) == (1024, 1025)
    assert_malformed(at_limit)
    assert calls == [1020]  # the control: at 1024 characters base45 is reached (and the spy works)
    calls.clear()
    assert_malformed(over)
    assert calls == []  # rejected on its length alone
    assert_malformed(over + "0" * 100_000)
    assert calls == []


@pytest.mark.parametrize(
    "value",
    [None, 42, 4.2, GOOD.encode(), bytearray(GOOD.encode()), memoryview(GOOD.encode()), [GOOD], (GOOD,), {GOOD: 1}],
    ids=lambda v: type(v).__name__,
)
def test_non_str_input_is_malformed(value):
    assert_malformed(value)


# --- base45 --------------------------------------------------------------------


def replace(text: str, index: int, new: str) -> str:
    index %= len(text)
    return text[:index] + new + text[index + len(new) :]


def lowercased_letter(body: str) -> str:
    # a letter among the signature's characters: a case-blind decoder would read the valid token
    index = max(i for i, c in enumerate(body) if c.isalpha())
    assert index > len(body) - 30
    return replace(body, index, body[index].lower())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(replace(EVEN, -4, "#"), id="hash"),
        pytest.param(replace(EVEN, -4, "_"), id="underscore"),
        pytest.param(replace(EVEN, -4, "="), id="equals"),
        pytest.param(replace(EVEN, -4, "\x00"), id="nul"),
        pytest.param(replace(EVEN, -4, "\n"), id="newline-inside"),
        pytest.param(replace(EVEN, -4, "é"), id="non-ascii"),
        pytest.param(replace(EVEN, -4, "\u0665"), id="arabic-indic-digit-5"),
        pytest.param(replace(EVEN, -4, "\uff21"), id="fullwidth-A"),
        pytest.param(lowercased_letter(EVEN), id="one-lowercase-letter"),
        pytest.param(EVEN[:3] + EVEN[3:].lower(), id="lowercased-after-start"),
        pytest.param(EVEN + "0", id="length-1-mod-3-appended"),
        pytest.param(EVEN[:-2], id="length-1-mod-3-cut"),
        pytest.param(replace(EVEN, -3, ":::"), id="triple-:::-is-91124"),
        pytest.param(replace(EVEN, -3, "GGW"), id="triple-65536"),
        pytest.param(replace(ODD, -2, "V5"), id="pair-256"),
        pytest.param(replace(ODD, -2, "::"), id="pair-2024"),
    ],
)
def test_base45_must_be_strict(body):
    with pytest.raises(b45.Base45Error):
        b45.decode(body)
    assert_malformed(PREFIX + body)


def test_base45_range_edges_decode():
    # the controls of the range cases: 65535 and 255 are fine base45 (then a wrong signature, not malformed)
    raw_even, raw_odd = b45.decode(EVEN), b45.decode(ODD)
    assert b45.decode(replace(EVEN, -3, "FGW")) == raw_even[:-2] + b"\xff\xff"
    assert b45.decode(replace(ODD, -2, "U5")) == raw_odd[:-1] + b"\xff"
    assert verdict(PREFIX + replace(EVEN, -3, "FGW")).reason is Reason.BAD_SIGNATURE


# --- CBOR ----------------------------------------------------------------------


def raw_map(*pairs: tuple[object, object], head: bytes | None = None, indefinite: bool = False) -> bytes:
    """A CBOR map written pair by pair (so keys may repeat)."""
    items = b"".join(cbor2.dumps(k) + (v if isinstance(v, Raw) else cbor2.dumps(v)) for k, v in pairs)
    if indefinite:
        return b"\xbf" + items + b"\xff"
    return (head if head is not None else bytes((0xA0 + len(pairs),))) + items


class Raw(bytes):
    """Already CBOR: raw_map writes it as is."""


GOOD_CLAIM_PAIRS = tuple(claims().items())
GOOD_HEADER_PAIRS = ((cose.HDR_ALG, cose.ALG_EDDSA), (cose.HDR_KID, KID))


def nested(depth: int) -> Raw:
    return Raw(b"\x81" * depth + b"\x00")  # `depth` arrays around a 0


def test_raw_builders_round_trip():
    # the controls of the hand-written CBOR below
    assert raw_map(*GOOD_CLAIM_PAIRS) == PAYLOAD and raw_map(*GOOD_HEADER_PAIRS) == PROTECTED
    assert_accepted(token(cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (8, nested(4))))))


OTHER_KID = bytes(8)
OTHER_CTI = bytes(16)

# mutations of the envelope, outside the signed bytes: the signature stays the valid one
ENVELOPE_CBOR = {
    "trailing-cbor-item": lambda: cose_bytes(tail=b"\xa0"),
    "trailing-break": lambda: cose_bytes(tail=b"\xff"),
    "indefinite-outer-array": lambda: cose_bytes(head=b"\xd2\x9f", tail=b"\xff"),
    "indefinite-protected-bstr": lambda: cose_bytes(enc_protected=bstr_indefinite),
    "indefinite-unprotected-map": lambda: cose_bytes(unprotected=b"\xbf\xff"),
    "indefinite-payload-bstr": lambda: cose_bytes(enc_payload=bstr_indefinite),
    "indefinite-signature-bstr": lambda: cose_bytes(enc_signature=bstr_indefinite),
    "absurd-bstr-length-2^64-1": lambda: b"\xd2\x84\x5b" + b"\xff" * 8 + PROTECTED + b"\x00" * 200,
    "absurd-bstr-length-2^63-1": lambda: b"\xd2\x84\x5b\x7f" + b"\xff" * 7 + b"\x00" * 200,
    "absurd-text-length": lambda: b"\xd2\x84\x7b" + b"\xff" * 8 + b"a" * 200,
    "array-of-2^32-elements": lambda: b"\xd2\x84\x9b\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 200,
    "array-of-2^32-1-elements": lambda: b"\xd2\x84\x9a\xff\xff\xff\xff" + b"\x00" * 200,
    "map-of-2^64-1-pairs": lambda: b"\xd2\x84\xbb" + b"\xff" * 8 + b"\x00" * 200,
    "tag-18-as-d8-12": lambda: cose_bytes(head=b"\xd8\x12\x84"),
    "tag-18-as-d9-0012": lambda: cose_bytes(head=b"\xd9\x00\x12\x84"),
    "array-length-as-98-04": lambda: cose_bytes(head=b"\xd2\x98\x04"),
    "protected-length-one-byte-too-long": lambda: cose_bytes(enc_protected=bstr_long),
    "unprotected-map-length-as-b8-00": lambda: cose_bytes(unprotected=b"\xb8\x00"),
    "payload-length-one-byte-too-long": lambda: cose_bytes(enc_payload=bstr_long),
    "signature-length-as-59-0040": lambda: cose_bytes(enc_signature=bstr_long),
    "self-described-cbor-tag": lambda: b"\xd9\xd9\xf7" + cose_bytes(),
    "shared-reference-tag-on-protected": lambda: cose_bytes(enc_protected=lambda p: b"\xd8\x1c" + bstr(p)),
}

# mutations of the signed bytes, re-signed with the trusted key
SIGNED_CBOR = {
    "indefinite-protected-header-map": lambda: cose_bytes(protected=raw_map(*GOOD_HEADER_PAIRS, indefinite=True)),
    "indefinite-kid": lambda: cose_bytes(protected=raw_map((1, -8), (4, Raw(bstr_indefinite(KID))))),
    "indefinite-claims-map": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, indefinite=True)),
    "indefinite-iss-text": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS[1:], (1, Raw(b"\x7f\x63nav\x62er\xff")))),
    "indefinite-cti-bytes": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS[:3], (7, Raw(bstr_indefinite(CTI))))),
    "indefinite-att-array": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (ATT, Raw(b"\x9f\x63vax\xff")))),
    "duplicate-alg-last-valid": lambda: cose_bytes(protected=raw_map((4, KID), (1, -7), (1, -8))),
    "duplicate-alg-same-value": lambda: cose_bytes(protected=raw_map((1, -8), (4, KID), (1, -8))),
    "duplicate-kid-last-trusted": lambda: cose_bytes(protected=raw_map((1, -8), (4, OTHER_KID), (4, KID))),
    "duplicate-kid-first-trusted": lambda: cose_bytes(protected=raw_map((1, -8), (4, KID), (4, OTHER_KID))),
    "duplicate-cti": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (7, OTHER_CTI))),
    "duplicate-iss-same-value": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (1, ISSUER.iss))),
    "duplicate-exp": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (4, NOW + 20))),
    "trailing-bytes-after-protected-header": lambda: cose_bytes(protected=PROTECTED + b"\x00"),
    "trailing-bytes-after-claims": lambda: cose_bytes(payload=PAYLOAD + b"\x00"),
    "second-claims-map-after-claims": lambda: cose_bytes(payload=PAYLOAD + PAYLOAD),
    "claims-absurd-bstr-length": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (8, Raw(b"\x5b" + b"\xff" * 8)))),
    "claims-array-of-2^32-elements": lambda: cose_bytes(payload=b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 64),
    "claims-map-of-2^32-pairs": lambda: cose_bytes(payload=b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 64),
    "claims-nesting-over-limit": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (8, nested(DEPTH_LIMIT)))),
    "claims-nesting-300": lambda: cose_bytes(payload=raw_map(*GOOD_CLAIM_PAIRS, (8, nested(300)))),
    "header-nesting-over-limit": lambda: cose_bytes(protected=raw_map(*GOOD_HEADER_PAIRS, (5, nested(DEPTH_LIMIT)))),
    "claims-truncated": lambda: cose_bytes(payload=PAYLOAD[:-1]),
}


ENVELOPE_PARSERS = (cose.parse_eddsa_sign1, cose.parse_sign1)


def assert_envelope_refused(data: bytes) -> None:
    for parse in ENVELOPE_PARSERS:
        with pytest.raises(cose.CoseError):
            parse(data)


@pytest.mark.parametrize("make", ENVELOPE_CBOR.values(), ids=ENVELOPE_CBOR.keys())
def test_envelope_cbor_must_be_strict(make):
    data = make()
    assert_envelope_refused(data)
    assert_malformed(token(data))


@pytest.mark.parametrize("make", SIGNED_CBOR.values(), ids=SIGNED_CBOR.keys())
def test_signed_cbor_must_be_strict(make):
    data = make()
    with pytest.raises(cose.CoseError):
        envelope = cose.parse_sign1(data)
        assert envelope.verify(ISSUER.key.public_key())  # correctly signed: only the claims can be at fault
        kp1.parse_claims(envelope.payload)
    assert_malformed(token(data))


ABSURD = {k: v for k, v in ENVELOPE_CBOR.items() if "absurd" in k or "2^" in k} | {
    k: v for k, v in SIGNED_CBOR.items() if "absurd" in k or "2^" in k
}


@pytest.mark.parametrize("make", ABSURD.values(), ids=ABSURD.keys())
def test_absurd_declared_lengths_are_rejected_quickly_without_allocating(make):
    text = token(make())
    assert len(text) <= MAX_TEXT
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = verdict(text)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.reason is Reason.MALFORMED
    assert elapsed < 2.0, f"{elapsed * 1e3:.1f} ms"  # not a hang (speed is the verify benchmark's to measure)
    assert peak < 1 << 20, f"{peak} bytes allocated"


# --- COSE_Sign1 ----------------------------------------------------------------

SIG = sign(PROTECTED, PAYLOAD)

COSE_STRUCTURE = {
    "untagged-array": lambda: cose_bytes(head=b"\x84"),
    "tag-17-cose-mac0": lambda: cose_bytes(head=b"\xd1\x84"),
    "tag-98-cose-sign": lambda: cose_bytes(head=b"\xd8\x62\x84"),
    "tag-61-cwt-around-sign1": lambda: b"\xd8\x3d" + cose_bytes(),
    "three-elements": lambda: b"\xd2\x83" + bstr(PROTECTED) + b"\xa0" + bstr(PAYLOAD),
    "five-elements": lambda: cose_bytes(head=b"\xd2\x85", tail=b"\x40"),
    "protected-header-as-a-map": lambda: cose_bytes(enc_protected=lambda p: p),
    "protected-header-as-text": lambda: cose_bytes(enc_protected=lambda p: cbor2.dumps(p.decode("latin-1"))),
    "protected-header-null": lambda: cose_bytes(enc_protected=lambda p: b"\xf6"),
    "protected-header-not-a-map": lambda: cose_bytes(protected=cbor2.dumps([1, -8, 4, KID])),
    "protected-header-empty-bstr": lambda: cose_bytes(protected=b""),
    "alg-missing": lambda: signed_header({4: KID}),
    "alg-only-in-unprotected": lambda: signed_header({4: KID}, unprotected=cbor2.dumps({1: -8})),
    "alg-as-text": lambda: signed_header({1: "EdDSA", 4: KID}),
    "alg-as-float": lambda: signed_header({1: -8.0, 4: KID}),
    "alg-as-bool": lambda: signed_header({1: True, 4: KID}),
    "kid-missing": lambda: signed_header({1: -8}),
    "kid-only-in-unprotected": lambda: signed_header({1: -8}, unprotected=cbor2.dumps({4: KID})),
    "kid-as-text": lambda: signed_header({1: -8, 4: KID.hex()}),
    "kid-as-int": lambda: signed_header({1: -8, 4: int.from_bytes(KID, "big")}),
    "unprotected-iv": lambda: cose_bytes(unprotected=cbor2.dumps({5: bytes(12)})),
    "unprotected-repeats-alg": lambda: cose_bytes(unprotected=cbor2.dumps({1: -8})),
    "unprotected-repeats-kid": lambda: cose_bytes(unprotected=cbor2.dumps({4: KID})),
    "unprotected-text-label": lambda: cose_bytes(unprotected=cbor2.dumps({"x": 1})),
    "unprotected-empty-array": lambda: cose_bytes(unprotected=b"\x80"),
    "unprotected-empty-bstr": lambda: cose_bytes(unprotected=b"\x40"),
    "unprotected-null": lambda: cose_bytes(unprotected=b"\xf6"),
    "signature-63-bytes": lambda: cose_bytes(signature=SIG[:63]),
    "signature-65-bytes": lambda: cose_bytes(signature=SIG + b"\x00"),
    "signature-empty": lambda: cose_bytes(signature=b""),
    "signature-128-bytes": lambda: cose_bytes(signature=SIG + SIG),
    "signature-as-text": lambda: cose_bytes(enc_signature=lambda s: cbor2.dumps(s.decode("latin-1"))),
    "signature-as-array": lambda: cose_bytes(enc_signature=lambda s: cbor2.dumps(list(s))),
    "payload-as-a-map": lambda: cose_bytes(enc_payload=lambda p: p),
    "payload-as-text": lambda: cose_bytes(enc_payload=lambda p: cbor2.dumps(p.decode("latin-1"))),
    "payload-detached-null": lambda: cose_bytes(enc_payload=lambda p: b"\xf6"),
    "payload-as-embedded-cbor-tag-24": lambda: cose_bytes(enc_payload=lambda p: b"\xd8\x18" + bstr(p)),
}


@pytest.mark.parametrize("make", COSE_STRUCTURE.values(), ids=COSE_STRUCTURE.keys())
def test_cose_sign1_structure_must_be_strict(make):
    data = make()
    assert_envelope_refused(data)
    assert_malformed(token(data))


# the generic parse_sign1 reads these (a trust list could use them); a KP1 token may not
KP1_HEADER = {
    "alg-es256": {1: -7, 4: KID},
    "alg-es512": {1: -36, 4: KID},
    "alg-ps256": {1: -37, 4: KID},
    "alg--35": {1: -35, 4: KID},
    "alg-positive-8": {1: 8, 4: KID},
    "alg-0": {1: 0, 4: KID},
    "kid-7-bytes": {1: -8, 4: KID[:7]},
    "kid-9-bytes": {1: -8, 4: KID + b"\x00"},
    "kid-empty": {1: -8, 4: b""},
    "kid-16-bytes": {1: -8, 4: KID + KID},
}


@pytest.mark.parametrize("header", KP1_HEADER.values(), ids=KP1_HEADER.keys())
def test_alg_must_be_eddsa_and_kid_8_bytes(header):
    data = signed_header(header)
    with pytest.raises(cose.CoseError):
        cose.parse_eddsa_sign1(data)
    assert_malformed(token(data))


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({True: -8, 4: KID}, id="alg-under-label-true"),
        pytest.param({1.0: -8, 4: KID}, id="alg-under-label-1.0"),
        pytest.param({1: -8, 4.0: KID}, id="kid-under-label-4.0"),
    ],
)
def test_header_labels_must_be_integers(header):
    # True == 1.0 == 1 in Python: a reader using dict.get (as cose.parse_sign1 does) finds alg or kid in these
    data = signed_header(header)
    with pytest.raises(cose.CoseError):
        cose.parse_eddsa_sign1(data)
    assert_malformed(token(data))


# --- claims --------------------------------------------------------------------

CLAIMS = {
    # iss
    "iss-int": claims(iss=5),
    "iss-bytes": claims(iss=b"naver"),
    "iss-empty": claims(iss=""),
    "iss-65-chars": claims(iss="n" * 65),
    "iss-null": claims(iss=None),
    "iss-list": claims(iss=["naver"]),
    "iss-missing": claims(iss=DROP),
    # iat (exp kept coherent so that only iat is at fault)
    "iat-float": claims(iat=float(NOW)),
    "iat-float-fraction": claims(iat=NOW + 0.5),
    "iat-str": claims(iat=str(NOW)),
    "iat-bool": claims(iat=True),
    "iat-negative": claims(iat=-1),
    "iat-before-2020": claims(iat=T2020 - 1, exp=T2020 + 14),
    "iat-from-2100": claims(iat=T2100, exp=T2100 + 15),
    "iat-2^64": claims(iat=2**64, exp=2**64 + 15),
    "iat-null": claims(iat=None),
    "iat-missing": claims(iat=DROP),
    "iat-datetime-tag": claims(iat=cbor2.CBORTag(1, NOW)),
    # exp (iat kept coherent so that only exp is at fault where possible)
    "exp-float": claims(exp=float(NOW + 15)),
    "exp-str": claims(exp=str(NOW + 15)),
    "exp-bool": claims(exp=True),
    "exp-negative": claims(exp=-1),
    "exp-before-2020": claims(iat=T2020 - 16, exp=T2020 - 1),
    "exp-from-2100": claims(iat=T2100 - 10, exp=T2100),
    "exp-2^64": claims(exp=2**64),
    "exp-huge-negative": claims(exp=-(2**64) - 1),
    "exp-null": claims(exp=None),
    "exp-missing": claims(exp=DROP),
    # window
    "exp-before-iat": claims(exp=NOW - 1),
    "window-301": claims(exp=NOW + 301),
    # cti
    "cti-15-bytes": claims(cti=CTI[:15]),
    "cti-17-bytes": claims(cti=CTI + b"\x00"),
    "cti-text": claims(cti=CTI.hex()),
    "cti-16-char-text": claims(cti="0123456789abcdef"),
    "cti-int": claims(cti=int.from_bytes(CTI, "big")),
    "cti-array": claims(cti=list(CTI)),
    "cti-null": claims(cti=None),
    "cti-missing": claims(cti=DROP),
    # att
    "att-str": claims(att="vax"),
    "att-bytes": claims(att=b"vax"),
    "att-int": claims(att=1),
    "att-map": claims(att={"vax": True}),
    "att-null": claims(att=None),
    "att-with-int": claims(att=["vax", 1]),
    "att-with-bytes": claims(att=["vax", b"age19"]),
    "att-with-list": claims(att=[["vax"]]),
    "att-with-null": claims(att=[None]),
    "att-with-bool": claims(att=["age19", True]),
}


@pytest.mark.parametrize("body", CLAIMS.values(), ids=CLAIMS.keys())
def test_claims_must_have_the_designed_types_and_ranges(body):
    data = signed_claims(body)
    assert cose.parse_sign1(data).verify(ISSUER.key.public_key())
    with pytest.raises(cose.CoseError):
        kp1.parse_claims(cose.parse_sign1(data).payload)
    assert_malformed(token(data))


NOT_A_MAP = {
    "array-of-values": list(claims().values()),
    "array-of-pairs": [list(pair) for pair in claims().items()],
    "text": "naver",
    "int": NOW,
    "bytes": PAYLOAD,
    "null": None,
    "cwt-tag-61-around-the-map": cbor2.CBORTag(61, claims()),
}


@pytest.mark.parametrize("body", NOT_A_MAP.values(), ids=NOT_A_MAP.keys())
def test_claims_must_be_a_map(body):
    assert_malformed(token(signed_claims(body)))


def test_claims_must_not_be_empty_bytes():
    assert_malformed(token(cose_bytes(payload=b"")))


def test_more_than_16_claims_are_malformed_and_16_are_fine():
    sixteen = claims() | {100 + i: i for i in range(MAX_CLAIMS - 4)}
    assert len(sixteen) == 16
    assert_accepted(token(signed_claims(sixteen)))
    seventeen = sixteen | {200: 0}
    assert_malformed(token(signed_claims(seventeen)))
    assert_malformed(token(signed_claims(claims() | {100 + i: i for i in range(60)})))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(raw_map((True, ISSUER.iss), *GOOD_CLAIM_PAIRS[1:]), id="iss-under-label-true"),
        pytest.param(raw_map((1.0, ISSUER.iss), *GOOD_CLAIM_PAIRS[1:]), id="iss-under-label-1.0"),
        pytest.param(raw_map(*GOOD_CLAIM_PAIRS[:3], (7.0, CTI)), id="cti-under-label-7.0"),
    ],
)
def test_claim_labels_must_be_integers(body):
    # True == 1.0 == 1 in Python: a map read with dict.get would find iss under the label true.
    assert_malformed(token(cose_bytes(payload=body)))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(Raw(b"\x1b" + NOW.to_bytes(8, "big")), id="iat-in-eight-bytes"),
        pytest.param(Raw(b"\xc2\x44" + NOW.to_bytes(4, "big")), id="iat-as-bignum"),
        pytest.param(Raw(b"\xd9\xd9\xf7" + cbor2.dumps(NOW)), id="iat-inside-self-describe-tag"),
    ],
)
def test_claims_must_be_in_preferred_serialization(value):
    # The same values as a good token's, encoded otherwise: one signed token has one accepted text.
    pairs = [(k, value if k == IAT else v) for k, v in GOOD_CLAIM_PAIRS]
    assert_malformed(token(cose_bytes(payload=raw_map(*pairs))))


# --- positive edges --------------------------------------------------------------


def test_window_of_exactly_300_seconds_is_accepted():
    assert_accepted(token(signed_claims(claims(exp=NOW + MAX_WINDOW))))
    assert_accepted(token(signed_claims(claims(exp=NOW))))  # and of 0 s


def test_all_three_attributes_are_accepted():
    result = verdict(token(signed_claims(claims(att=list(ATTRIBUTES)))))
    assert result.kind is Kind.ACCEPTED and result.claims.att == ATTRIBUTES
    assert verdict(token(signed_claims(claims(att=[])))).claims.att == ()


def test_iss_of_64_characters_is_accepted():
    issuer = Issuer("n" * 64, ISSUER.key)
    tl = trustlist.parse(signers.build_trust_list(ROOT, [issuer], seq=1, issued_at=NOW), ROOT.public_key())
    result = kp1.Kp1Verifier(trust=lambda: tl).verify_raising(signers.mint(issuer, NOW, cti=CTI), NOW)
    assert result.kind is Kind.ACCEPTED and result.iss == "n" * 64


def test_time_range_edges_parse():
    low, high = T2020, T2100
    assert kp1.parse_claims(cbor2.dumps(claims(iat=low, exp=low))).iat == low
    assert kp1.parse_claims(cbor2.dumps(claims(iat=high - 1, exp=high - 1))).exp == high - 1
