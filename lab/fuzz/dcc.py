"""The DCC target of `qrgate fuzz`: EU DCCs (`HC1:`) against the door's DccVerifier, and their oracle.

The harness and the mutators shared with KP1 are in lab.fuzz.engine; this adds
the world (document signers, a trust list with their certificates), the seeds,
the DCC's own mutators (the zlib stream, the hcert payload, hostile CBOR from
lab.fuzz.cbor) and its oracle, which judges the signed content rather than
the text (see below).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import random
import zlib
from dataclasses import dataclass
from functools import partial

import cbor2

from firmware import utc
from lab.fuzz.engine import (CTI, EXP, IAT, ISS, NOW, SKEW, Seed, Target, loosen, cose_parts, resign, signer_for,
                           mutate_structure, mutate_text, b45encode, mutate_bytes)
from lab.fuzz.cbor import LENIENT_REFUSES, bomb, item, random_path, splice, spoil
from lab import dcc_issuer
from firmware.tokens import dcc
from firmware.tokens.dcc import CLAIM_HCERT as HCERT
from firmware.tokens.dcc import MAX_INFLATED
from lab.dcc_issuer import POSITIVE
from firmware.tokens.dcc_policy import COVID19, NEGATIVE
from lab import signers

# --- the DCC target ------------------------------------------------------------------------------
#
# The oracle of the DCC target is on the signed content, not on the text. tokens.dcc is lenient on
# purpose (base45 through the package, zlib optional and at any level, trailing bytes after the
# stream or the COSE ignored, CBOR indefinite lengths, tag 18 optional, the kid in the protected or
# else the unprotected header), so one signed DCC has many texts the door rightly accepts; ECDSA is
# malleable too ((r, n - s) verifies as (r, s) does) and PSS is randomised, so not even the signature
# bytes name a DCC. What a trusted signer vouches for is its payload under its kid: a text may be
# accepted iff some reading of it (inflated or not, any tags) holds a (kid, payload) pair that a
# trusted, valid signer signed and whose claims are valid at NOW.
#
# Such pairs are the genuine valid seeds' and those the harness itself signs with a trusted key
# (structure and hcert mutants are re-signed: without that the policy checks after the signature
# would never see a hostile payload). A harness-signed payload's verdict is known only when the
# harness built it to fail: `_break_dcc_claims` makes one change that no signer and no other field
# can rescue (exp gone or past, iat ahead, a field the door reads of the wrong type, a failing
# policy value, several types...) and records the payload as broken (a type the signer's key usage
# does not allow is recorded with that signer's kid: another signer may sign it). Accepting a broken
# payload (or one broken for the kid that verified it) is a false accept; accepting any other payload
# a trusted key signed is not counted (the harness does not model the policy in full, and so would
# otherwise report the door's documented leniency as findings). The per-worker records hold digests.


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


@dataclass(frozen=True, eq=False)
class DccSigner:
    """A document signer the harness holds; `key.sign(Sig_structure)` answers its COSE signature."""

    iss: str  # its country, as its DCCs' iss claim
    types: str  # the DCC types its key usage allows
    private: object  # ec.EllipticCurvePrivateKey or rsa.RSAPrivateKey
    cert: object  # x509.Certificate
    kid: bytes
    alg: int  # -7 (ES256) or -37 (PS256)
    signed: set | None = None  # where a trusted, valid signer records each (kid, payload digest) it signs

    @property
    def key(self) -> "DccSigner":  # fuzz.resign calls signer.key.sign(tbs)
        return self

    def raw_sign(self, tbs: bytes) -> bytes:
        """The signature alone, not recorded as harness-signed: for the seeds."""
        return self._pss(tbs) if self.alg == -37 else self._es256(tbs)

    def _pss(self, tbs: bytes) -> bytes:
        """The library's PSS, salt 32 (RFC 8230): its salt is random, so PS256 signature bytes differ between runs."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return self.private.sign(tbs, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())

    def _es256(self, tbs: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(self.private.sign(tbs, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign(self, tbs: bytes) -> bytes:
        if self.signed is not None:
            structure = loosen(tbs)
            if isinstance(structure, list) and len(structure) == 4 and isinstance(structure[3], bytes):
                self.signed.add((self.kid, _digest(structure[3])))
        return self.raw_sign(tbs)


_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _malleate_es256(sig: bytes) -> bytes:
    """(r, n - s): as valid an ECDSA signature as (r, s), other bytes."""
    if len(sig) != 64:
        return sig
    s = int.from_bytes(sig[32:], "big")
    return sig[:32] + ((_P256_N - s) % _P256_N).to_bytes(32, "big")


def _prime(rng: random.Random, bits: int) -> int:
    small = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]
    while True:
        n = rng.getrandbits(bits) | 3 << bits - 2 | 1
        if any(n % p == 0 for p in small):
            continue
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for _ in range(24):  # Miller-Rabin
            x = pow(rng.randrange(2, n - 1), d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n


def _rsa_key(rng: random.Random):
    """A 2048-bit RSA key from `rng`: the library's generator cannot be seeded."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    e = 65537
    while True:
        p, q = _prime(rng, 1024), _prime(rng, 1024)
        if p != q and (p - 1) % e and (q - 1) % e:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 rsa.RSAPublicNumbers(e, p * q)).private_key()


def _dcc_signer(rng: random.Random, country: str, types: str = "vtr", rsa_key: bool = False,
                start_days: int = -30, days: int = 365, signed: set | None = None,
                extensions: list[tuple[str, bytes]] | None = None) -> DccSigner:
    """A document signer as dcc_issuer.make_signer makes one, but with every byte derived from `rng`; with
    `extensions`, its certificate holds exactly those (a P-256 key only), and `types` says what they allow."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _rsa_key(rng) if rsa_key else ec.derive_private_key(rng.randrange(1, _P256_N), ec.SECP256R1())
    start = dt.datetime.fromtimestamp(NOW, dt.UTC) + dt.timedelta(days=start_days)
    cert = dcc_issuer.signer_certificate(key, country, types or "v", start, days, serial=rng.getrandbits(120) + 1)
    if extensions is not None:
        cert = dcc_issuer.with_extensions(cert, key, extensions)
    return DccSigner(country, types, key, cert, dcc.kid_of(cert), -37 if rsa_key else -7, signed)


def _odd_signers(rng: random.Random, signed: set) -> tuple[DccSigner, ...]:
    """Signers whose extensions cryptography refuses, so that their key usage is read from the DER
    (tokens.eku): Finland's cA FALSE written out beside an EKU of the alternative OIDs (v and r), an empty
    EKU (every type), an EKU of another purpose only, and a repeated EKU (no type). The last two may sign
    nothing: what they sign is not recorded, so any acceptance of it is a false accept."""
    from cryptography import x509

    eku = x509.oid.ExtensionOID.EXTENDED_KEY_USAGE.dotted_string
    bc = x509.oid.ExtensionOID.BASIC_CONSTRAINTS.dotted_string
    alt = x509.ExtendedKeyUsage([x509.ObjectIdentifier(f"1.3.6.1.4.1.0.1847.2021.1.{i}") for i in (2, 3)])
    foreign = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    ca_false, empty = bytes.fromhex("3003010100"), bytes.fromhex("3000")
    return (_dcc_signer(rng, "FI", "vr", signed=signed, extensions=[(bc, ca_false), (eku, alt.public_bytes())]),
            _dcc_signer(rng, "IS", "vtr", signed=signed, extensions=[(eku, empty)]),
            _dcc_signer(rng, "ES", "", extensions=[(bc, ca_false), (eku, foreign.public_bytes())]),
            _dcc_signer(rng, "LU", "", extensions=[(eku, alt.public_bytes()), (eku, alt.public_bytes())]))


def _date(days: int) -> str:
    """NOW's UTC date moved by `days`, as the DCC schema writes dates."""
    return (dt.datetime.fromtimestamp(NOW, dt.UTC).date() + dt.timedelta(days=days)).isoformat()


def _instant(seconds: int) -> str:
    return utc.iso(NOW + seconds)


_READ = {"v": ("dn", "sd", "dt"), "t": ("tr", "tt", "sc"), "r": ("df", "du", "fr")}  # what dcc_policy reads
_UNREAD = {"v": ("co", "is", "vp", "mp", "ma"), "t": ("co", "is", "nm", "ma", "tc"), "r": ("co", "is")}
_WRONG = (None, True, False, -1, 100, 1.5, float("nan"), 2**64, -(2**64), b"", b"x", [], [1], {}, {"a": 1},
          cbor2.CBORTag(1004, "2021-06-01"), cbor2.CBORTag(0, "2021-06-01T10:00:00Z"), cbor2.undefined)
_BAD_VALUE = {  # guaranteed refusals by dcc_policy, strings included
    "dn": ("2", 2.0, True, -1, 100, 2**64, [2], b"\x02"), "sd": ("2", 2.0, False, -1, 100, 2**70, [2]),
    "dt": (20210601, "", "yesterday", "2021-13-01", "2021-06-32", "21-06-01", b"2021-06-01"),
    "tr": (POSITIVE, "", NEGATIVE + " ", int(NEGATIVE), "260415001"), "tt": ("LP0000-0", "", "lp6464-4", 6464),
    "sc": ("", "now", "2021-06-01T25:00:00Z", 1_750_000_000, "tomorrow"),
    "df": ("", "x", "2021-02-30", 20210601), "du": ("", "x", "2021-02-30", 20210601),
    "fr": ("", "x", "2021-02-30", 20210601),
    "tg": ("840539007", "", COVID19 + " ", int(COVID19), "COVID-19"), "ci": ("", "U" * 81, "U" * 1000),
}


def _plain(obj: object) -> dict | None:
    """A decoded CBOR map as a dict of its int, text and byte-string keys (so that 4.0 or True cannot
    stand in for the label 4 or 1 the verifier looks up by type); None for anything else."""
    if not isinstance(obj, dict | cbor2.frozendict):
        return None
    return {k: v for k, v in obj.items() if type(k) in (int, str, bytes)}


def _dcc_parts(claims: dict) -> tuple[dict | None, dict | None, str | None, dict | None]:
    """(hcert, the DCC in it, its one type, that type's one entry) of a claims map, each None when absent."""
    hcert = _plain(claims.get(HCERT))
    doc = _plain(hcert.get(1)) if hcert else None
    kinds = [k for k in "vtr" if doc and k in doc]
    kind = kinds[0] if len(kinds) == 1 else None
    entries = doc.get(kind) if kind else None
    entry = _plain(entries[0]) if type(entries) is list and len(entries) == 1 else None
    return hcert, doc, kind, entry


def _put(claims: dict, hcert: dict, doc: dict) -> dict:
    return {**claims, HCERT: {**hcert, 1: doc}}


def _break_dcc_claims(rng: random.Random, claims: dict, signer: DccSigner, broken: set) -> bytes:
    """DCC claims with one change the door must refuse at NOW whoever signed them; recorded as broken."""
    c = _plain(claims) or {}
    hcert, doc, kind, entry = _dcc_parts(c)
    k = rng.randrange(10)
    if entry is None and k > 2:
        k = rng.randrange(3)
    if k == 0:  # exp missing, past or not a number
        if rng.random() < 0.3:
            c.pop(EXP, None)
        else:
            c[EXP] = rng.choice((NOW - 1 - rng.randrange(10**8), NOW - 0.5, "2099-01-01", None, True, b"\x7f",
                                 float("nan"), float("-inf"), [NOW + 86400], cbor2.CBORTag(1, NOW + 86400)))
    elif k == 1:  # issued after NOW
        c[IAT] = NOW + 1 + rng.randrange(10**8) if rng.random() < 0.8 else NOW + 1.5
    elif k == 2:  # no hcert, or no DCC in it
        bad = rng.choice((None, [], "x", b"", {2: {}}, {1: None}, {1: []}, {"1": {}}, {1: {"ver": "1.3.0"}}))
        if rng.random() < 0.2:
            c.pop(HCERT, None)
        else:
            c[HCERT] = bad
        if rng.random() < 0.1:
            return _finish(broken, cbor2.dumps(rng.choice((list(c.items()), None, "claims", b"", 0))))
    elif k in (3, 4, 5):  # a field the door reads, of the wrong type, missing or of a refused value
        name = rng.choice(_READ[kind]) if k == 3 else "tg" if k == 4 else "ci"
        e = dict(entry)
        if rng.random() < 0.2:
            e.pop(name, None)
        else:
            e[name] = rng.choice(_BAD_VALUE[name] + _WRONG)  # _WRONG holds no text and no count 0..99
        c = _put(c, hcert, {**doc, kind: [e]})
    elif k == 6:  # several types at once, or none
        d = dict(doc)
        if rng.random() < 0.2:
            d.pop(kind)
        else:
            for x in rng.sample([x for x in "vtr" if x != kind], rng.randint(1, 2)):
                d[x] = rng.choice(([entry], [], None, doc[kind]))
        c = _put(c, hcert, d)
    elif k == 7:  # not exactly one entry
        c = _put(c, hcert, {**doc, kind: rng.choice(([], [entry, entry], [entry] * 17, [entry, {}], entry, None,
                                                     "x", [[entry]]))})
    elif k == 8 and set("vtr") - set(signer.types) - {kind}:  # a type this signer's key usage does not allow
        other = rng.choice(sorted(set("vtr") - set(signer.types) - {kind}))
        d = {x: y for x, y in doc.items() if x != kind}
        d[other] = [entry]
        # Refused for this signer only: another may sign that type, so the record names the signer.
        return _finish(broken, cbor2.dumps(_put(c, hcert, d)), signer.kid)
    else:  # well-formed, but refused by the venue's rules
        e = dict(entry)
        if kind == "v":
            form = rng.randrange(3)
            if form == 0:
                e["dn"], e["sd"] = rng.choice(((1, 2), (0, 1), (2, 3), (0, 99)))
            else:
                e["dt"] = _date(-rng.randrange(14) if form == 1 else rng.randrange(1, 10**4))
        elif kind == "t":
            form = rng.randrange(4)
            if form == 0:
                e["tr"] = POSITIVE
            elif form == 1:
                e["tt"] = "LP6464-5"
            else:
                late = rng.randrange(10**7)  # sampled over 48 h before NOW, or over the skew after it
                e["sc"] = _instant(-48 * 3600 - 1 - late if form == 2 else SKEW + 1 + late)
        else:  # a recovery not yet or no longer valid, or its positive test too long ago
            form = rng.randrange(3)
            e[("df", "du", "fr")[form]] = _date((1, -1, -181)[form] - (-1, 1, 1)[form] * rng.randrange(1000))
        c = _put(c, hcert, {**doc, kind: [e]})
    return _finish(broken, cbor2.dumps(c))


def _finish(broken: set, payload: bytes, kid: bytes | None = None) -> bytes:
    """Record `payload` as refused by the door: whoever signs it, or (with `kid`) when that signer does."""
    broken.add(_digest(payload) if kid is None else (kid, _digest(payload)))
    return payload


def _huge_string(rng: random.Random) -> str:
    n = (rng.choice((100, 1000, 4096, 30_000, 60_000, 64_500)) if rng.random() < 0.8 else
         rng.choice((65_300, 65_536, 70_000, 200_000)))  # the COSE then inflates past the 64 KiB cap
    return (rng.choice(("A", "ab", "Gößinger ", "\u00e9\u20ac", "\x00")) * n)[:n]


_NEST = b"\xfe\xed\xfa\xce\xfe\xed\xfa\xce"  # a placeholder byte string, replaced by raw nested CBOR


def _hcert(rng: random.Random, data: bytes, t: Target, broken: set) -> bytes:
    """The hcert changed where the door does not look (types, sizes, depth, extra keys), 1 to 3 times,
    then (half the time) broken on top, and re-signed by the key the kid names. These changes cannot
    rescue a broken payload, so a broken one stays broken."""
    parts = cose_parts(data)
    if parts is None or not isinstance(parts[2], bytes) or not isinstance(parts[0], bytes):
        return mutate_bytes(rng, data, t)
    prot, unprot, payload, _ = parts
    c = _plain(loosen(payload))
    if c is None:
        return mutate_bytes(rng, data, t)
    old = _digest(payload)
    was_broken = [kid for kid in (None, *t.signers) if (old if kid is None else (kid, old)) in broken]
    hcert, doc, kind, entry = _dcc_parts(c)
    nest = None
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(7)
        value = rng.choice(_WRONG) if rng.random() < 0.8 else _huge_string(rng)
        if rng.random() < 0.15:
            value, nest = _NEST, rng.choice((4, 8, 12, 15, 16, 17, 40, 400, 5000))
        if k == 0 and doc is not None:  # name, birth date, version
            name = rng.choice(("nam", "dob", "ver"))
            doc = {x: y for x, y in doc.items() if x != name} if rng.random() < 0.3 else {**doc, name: value}
        elif k == 1 and entry is not None:  # an entry field the door does not read
            name = rng.choice(_UNREAD[kind])
            entry = {x: y for x, y in entry.items() if x != name} if rng.random() < 0.3 else {**entry, name: value}
        elif k == 2 and entry is not None:  # an extra entry field: another type's, or unknown
            name = rng.choice(("dn", "sd", "dt", "tr", "tt", "sc", "df", "du", "fr", "x", "", "ci2", "TG"))
            if name not in _READ[kind]:
                entry = {**entry, name: value}
        elif k == 3 and doc is not None:  # an extra top-level hcert field (no type letter)
            doc = {**doc, rng.choice(("x", "V", "T", "vr", 1, "", "nam2")): value}
        elif k == 4:  # the iss claim, or an extra claim
            c = {**c, rng.choice((ISS, ISS, 2, 3, 5, CTI, -259, -261, "4", 1000)): value}
        elif k == 5 and hcert is not None:  # an extra hcert key beside 1
            hcert = {**hcert, rng.choice((2, -1, "1", 1000)): value}
        elif k == 6 and doc is not None:  # the name's parts
            nam = _plain(doc.get("nam")) or {}
            doc = {**doc, "nam": {**nam, rng.choice(("fn", "gn", "fnt", "gnt", "x")): value}}
    if doc is not None:
        if entry is not None:
            doc = {**doc, kind: [entry]}
        c = _put(c, hcert, doc)
    elif hcert is not None:
        c = {**c, HCERT: hcert}
    signer = signer_for(t, prot, rng)
    if rng.random() < 0.5:
        new = t.break_claims(rng, c, signer)
    else:
        new = cbor2.dumps(c)
        if nest is not None:
            enc = cbor2.dumps(_NEST)
            new = new.replace(enc, b"\x81" * nest + b"\x00", 1)
        for kid in was_broken:
            _finish(broken, new, kid)
    return cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, new, resign(signer, prot, new)]))


def _same(rng: random.Random, data: bytes, t: Target) -> bytes:
    """No change to the COSE bytes: the text is only encoded anew (`_dcc_wrap_mutant`)."""
    return data




def _hostile(rng: random.Random, data: bytes, t: Target, broken: set) -> bytes:
    """Hostile CBOR as the COSE itself, or as or in its payload re-signed by the key its kid names (recorded
    as broken where the DCC's decoder must refuse it: it allows indefinite lengths and duplicate keys)."""
    parts = cose_parts(data)
    k = rng.randrange(3)
    if k == 0 or parts is None or not isinstance(parts[0], bytes) or not isinstance(parts[2], bytes):
        # the 189-character HC1: that cost the door 0.4 s was a zlib-compressed tag-4 number
        return bomb(rng, MAX_INFLATED) if rng.random() < 0.5 else item(rng, MAX_INFLATED).data
    prot, unprot, payload, _ = parts
    if k == 1:  # no CWT at all: refused whoever signs it
        new = _finish(broken, item(rng, MAX_INFLATED).data)
    else:
        new, flaw = _hostile_payload(rng, payload)
        if flaw in LENIENT_REFUSES:
            _finish(broken, new)
    return cbor2.dumps(cbor2.CBORTag(18, [prot, unprot, new, resign(signer_for(t, prot, rng), prot, new)]))


def _hostile_payload(rng: random.Random, payload: bytes) -> tuple[bytes, str]:
    """The payload truncated, with bytes after it, in a tag or indefinite; or a hostile piece inside it."""
    claims = loosen(payload)
    if rng.random() < 0.5 or not isinstance(claims, dict):
        piece = spoil(rng, payload)
        return piece.data, piece.flaw
    piece = item(rng, MAX_INFLATED // 4)
    return splice(claims, random_path(rng, claims), piece.data, cbor2.dumps), piece.flaw


def _hostile_wrap_mutant(rng: random.Random, data: bytes, t: Target, broken: set) -> str:
    """Now and then hostile CBOR, then the text. Last of a mutant's changes: the others decode what they
    change with plain cbor2, which a tag-4 bomb would hold for seconds."""
    if rng.random() < 0.15:
        try:
            data = _hostile(rng, data, t, broken)
        except ValueError:  # a splice marker that was not unique: vanishingly rare
            pass
    return _dcc_wrap_mutant(rng, data)


def _dcc_wrap_mutant(rng: random.Random, data: bytes) -> str:
    """COSE bytes -> `HC1:` text: zlib at any level or none, the compressed stream mutated, a bomb."""
    k = rng.randrange(40) - 20
    if k < 8:  # 70%: zlib at any level (a seed is at 9)
        wire = zlib.compress(data, rng.randrange(-1, 10))
    elif k < 11:  # uncompressed, as some issuers send it
        wire = data
    elif k < 16:  # the compressed stream's bytes
        wire = mutate_bytes(rng, zlib.compress(data, rng.choice((1, 6, 9))), None)
    elif k == 16:  # another window, raw deflate, gzip
        z = zlib.compressobj(rng.randrange(10), zlib.DEFLATED, rng.choice((9, 10, 12, 15, -15, 31)))
        wire = z.compress(data) + z.flush()
    elif k == 17:  # a zip bomb, or padding up to the cap and one byte past it
        pad = rng.choice((MAX_INFLATED - len(data) - 1, MAX_INFLATED - len(data), MAX_INFLATED - len(data) + 1,
                          MAX_INFLATED * 2, 1 << 20, 4 << 20))
        wire = zlib.compress(data + rng.choice((b"\x00", b"\xf6", b"A")) * max(pad, 0), 9)
    elif k == 18:  # twice compressed, or a second stream or junk after the first
        z = zlib.compress(data)
        wire = rng.choice((zlib.compress(z), z + z, z + rng.randbytes(rng.randint(1, 8)), z + zlib.compress(b"")))
    else:  # a dictionary the device does not have
        z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=data[:32] or b"x")
        wire = z.compress(data) + z.flush()
    return "HC1:" + b45encode(wire)


def _dcc_contents(text: object) -> set[tuple[bytes, bytes]]:
    """Every (kid, payload digest) some reading of `text` holds: inflated or not, any tags, trailing
    bytes ignored, the kid from either header. A superset of what the verifier can read."""
    import base45

    if not isinstance(text, str) or not text.startswith("HC1:"):
        return set()
    try:
        raw = base45.b45decode(text[4:])
    except Exception:
        return set()
    forms = [raw]
    d = zlib.decompressobj()
    try:
        out = d.decompress(raw, MAX_INFLATED + 1)
        if d.eof:
            forms.append(out)
    except zlib.error:
        pass
    found = set()
    for form in forms:
        try:
            obj = cbor2.CBORDecoder(io.BytesIO(form)).decode()
        except Exception:
            continue
        while isinstance(obj, cbor2.CBORTag):
            obj = obj.value
        if not (type(obj) in (list, tuple) and len(obj) == 4 and isinstance(obj[2], bytes)):
            continue
        prot, unprot = obj[0], obj[1]
        headers = [loosen(prot) if isinstance(prot, bytes) else None, unprot]
        kids = {v for h in headers if isinstance(h, dict | cbor2.frozendict)
                for key, v in h.items() if type(key) is int and key == 4 and isinstance(v, bytes)}
        found |= {(kid, _digest(obj[2])) for kid in kids}
    return found


def _dcc_may_accept(text: str, genuine: frozenset, signed: set, broken: set) -> bool:
    return any(h not in broken and (kid, h) not in broken and ((kid, h) in genuine or (kid, h) in signed)
               for kid, h in _dcc_contents(text))


def dcc_target(seed: int = 0) -> Target:
    """Document signers (ES256 and PS256, keys and certificates derived from `seed`), a signed trust
    list naming them, the door's DCC verifier with the default [dcc] rules, and DCC seeds."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.config import DccConfig
    from firmware.tokens import trustlist
    from firmware.tokens.dcc_verifier import DccVerifier

    rng = random.Random(f"dcc-world:{seed}")
    signed: set = set()  # (kid, payload digest) a trusted, valid signer signed for the harness
    broken: set = set()  # payload digests the door must refuse, whoever signs them
    de = _dcc_signer(rng, "DE", "vtr", signed=signed)
    fr = _dcc_signer(rng, "FR", "t", signed=signed)  # may sign tests only
    nl = _dcc_signer(rng, "NL", "vr", rsa_key=True, signed=signed)  # PS256
    old = _dcc_signer(rng, "AT", "vtr", start_days=-400)  # certificate expired 35 days before NOW
    new = _dcc_signer(rng, "BE", "vtr", start_days=10)  # certificate valid from 10 days after NOW
    rogue = _dcc_signer(rng, "XX", "vtr")  # in no trust list
    root = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    fi, empty, foreign, twice = _odd_signers(rng, signed)
    listed = (de, fr, nl, old, new, fi, empty, foreign, twice)
    raw = signers.build_trust_list(root, [], seq=1, issued_at=NOW, dsc=[s.cert.public_bytes(_DER()) for s in listed])
    trust = trustlist.parse(raw, root.public_key())
    verifier = DccVerifier(lambda: trust, DccConfig(), skew=SKEW)
    seeds: list[Seed] = []
    intrinsic = ("expired", "not_yet_valid", "series_incomplete", "vaccination_too_recent", "test_positive",
                 "test_too_old", "test_type_not_accepted", "recovery_not_valid", "type_not_accepted", "malformed")

    def claims(signer, kind, iat=NOW - 60, exp=NOW + 365 * 86400, doc=None, **fields):
        uvci = f"URN:UVCI:01:{signer.iss}:{rng.randbytes(10).hex().upper()}"
        hcert = {"ver": "1.3.0", "dob": "1998-02-26",
                 "nam": {"fn": "Musterfrau-Gößinger", "gn": "Gabriele", "fnt": "MUSTERFRAU<GOESSINGER",
                         "gnt": "GABRIELE"},
                 kind: [dcc_issuer.entry(kind, NOW, uvci, signer.iss, **fields)]}
        c = {ISS: signer.iss, IAT: iat, EXP: exp, HCERT: {1: {**hcert, **(doc or {})}}}
        return {k: v for k, v in c.items() if v is not None}

    def add(expect, signer, kind="v", *, by=None, kid_where="protected", tag=True, level=9, spoilt=None, **kw):
        c = kw.pop("raw_claims", None) or claims(signer, kind, **kw)
        prot = cbor2.dumps({1: signer.alg, 4: signer.kid} if kid_where == "protected" else {1: signer.alg})
        payload = cbor2.dumps(c)
        sig = (by or signer).raw_sign(cbor2.dumps(["Signature1", prot, b"", payload]))
        items = [prot, {4: signer.kid} if kid_where == "unprotected" else {}, payload, sig]
        body = cbor2.dumps(cbor2.CBORTag(18, items) if tag else items)
        text = "HC1:" + b45encode(zlib.compress(body, level) if level is not None else body)
        seeds.append(Seed(text, body, expect))
        if spoilt if spoilt is not None else expect in intrinsic:  # refused whoever signs this payload
            broken.add(_digest(payload))

    for signer, kinds in ((de, "vtr"), (fr, "t"), (nl, "vr")):
        for kind in kinds:
            add("accepted", signer, kind)
            add("accepted", signer, kind, level=rng.choice((1, 6)))
        add("accepted", signer, kinds[0], kid_where="unprotected")
        add("accepted", signer, kinds[-1], tag=False)
        add("accepted", signer, kinds[0], level=None)  # uncompressed
        add("accepted", signer, kinds[0], exp=NOW, iat=NOW)  # the last second of its CWT, the first too
        add("expired", signer, kinds[0], exp=NOW - 1)
        add("expired", signer, kinds[-1], exp=None)
        add("not_yet_valid", signer, kinds[0], iat=NOW + 1)
        add("bad_signature", signer, kinds[0], by=rogue)  # forged under a trusted kid
    add("accepted", de, "v", dt=_date(-14))  # the first day the dose counts
    add("accepted", de, "v", dn=3, sd=2)
    add("accepted", de, "t", sc=_instant(-48 * 3600))  # the last second the test counts
    add("accepted", de, "t", sc=_instant(SKEW), tt=dcc_issuer.TEST_RAT)
    add("accepted", de, "r", df=_date(0), du=_date(0), fr=_date(-180))
    add("accepted", nl, "r", dt="ignored", doc={"x-extra": [1, 2, 3]})
    add("unknown_issuer", rogue, "v")  # unknown signer
    add("unknown_issuer", old, "v")  # signer certificate expired
    add("unknown_issuer", new, "t")  # signer certificate not yet valid
    add("key_usage", fr, "v")  # a tests-only signer signing a vaccination
    add("key_usage", nl, "t")
    add("series_incomplete", de, "v", dn=1, sd=2)
    add("series_incomplete", nl, "v", dn=2, sd=3)
    add("vaccination_too_recent", de, "v", dt=_date(-13))
    add("vaccination_too_recent", nl, "v", dt=_date(1))
    add("test_positive", de, "t", tr=dcc_issuer.POSITIVE)
    add("test_positive", fr, "t", tr=dcc_issuer.POSITIVE)
    add("test_too_old", de, "t", sc=_instant(-48 * 3600 - 1))
    add("test_too_old", fr, "t", sc=_instant(-30 * 86400))
    add("not_yet_valid", fr, "t", sc=_instant(SKEW + 1))
    add("test_type_not_accepted", fr, "t", tt="LP0000-0")
    add("recovery_not_valid", de, "r", du=_date(-1))
    add("recovery_not_valid", nl, "r", df=_date(1))
    add("recovery_not_valid", de, "r", fr=_date(-181))
    add("type_not_accepted", de, "v", tg="840539007")  # another disease
    add("type_not_accepted", fr, "t", tg="")
    add("type_not_accepted", nl, "r", tg="840539007")
    add("malformed", de, "v", ci="URN:UVCI:" + "0" * 72)  # a UVCI of 81 characters
    # Key usage read from the DER where cryptography refuses the extensions (tokens.eku).
    add("accepted", fi, "v")
    add("accepted", fi, "r")
    add("key_usage", fi, "t")
    add("accepted", empty, "t")
    add("accepted", empty, "r")
    add("key_usage", foreign, "v")
    add("key_usage", twice, "r")
    # v and t at once: no one type, which no key usage allows (and without one there is no UVCI)
    add("key_usage", de, "v", doc={"t": [dcc_issuer.entry("t", NOW, "URN:UVCI:01:DE:TWO", "DE")]}, spoilt=True)

    genuine = frozenset(pair for s in seeds if s.expect == "accepted" for pair in _dcc_contents(s.text))
    by_kid = {s.kid: s for s in (rogue, old, new, de, fr, nl, fi, empty, foreign, twice)}
    target = Target(
        name="dcc",
        prefix="HC1:",
        seeds=tuple(seeds),
        verify=partial(verifier.verify_raising, now=NOW),
        may_accept=partial(_dcc_may_accept, genuine=genuine, signed=signed, broken=broken),
        wrap=lambda data: "HC1:" + b45encode(zlib.compress(data, 9)),
        signers=by_kid,
        break_claims=partial(_break_dcc_claims, broken=broken),
        forger=rogue,
        kids=(rng.randbytes(8), bytes(8), rogue.kid),
        alg=-7,
        malleate=_malleate_es256,
        levels=((mutate_structure, 5), (mutate_bytes, 3), (partial(_hcert, broken=broken), 4), (_same, 1), (mutate_text, 2)),
        untagged=True,
    )
    return dataclasses.replace(target, wrap_mutant=partial(_hostile_wrap_mutant, t=target, broken=broken))


def _DER():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


