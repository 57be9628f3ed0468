"""EU Digital COVID Certificates (`HC1:`), verified offline: base45 → zlib → COSE_Sign1 → CWT (hcert, −260).

`verify` is pure (it is given the document signer certificates and `now`) and
answers a `DccResult` for every input: each step's outcome and, on a failure,
one named reason; never an exception. Unlike KP1 (`tokens.kp1`, strict: one
accepted text per token) this reads what the member states issue, so each
layer is as lenient as the specification and the public test vectors need:
base45 through the `base45` package, CBOR with indefinite lengths, tag 18
optional, the kid from the protected header else the unprotected one; but no
semantic tag other than 18 and 61 (`_loads`).

A DCC holds a name and a birth date. They stay in `DccResult.payload`, which is
kept out of repr; nothing here logs. Only the certificate type, the UVCI (the
certificate identifier, in place of a token id) and the CWT times are for use
outside memory.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard, cast
from dataclasses import dataclass, field
from datetime import UTC, datetime

import base45
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from firmware import strictcbor
from firmware.tokens import eku

PREFIX = "HC1:"
MAX_TEXT = 8192  # a QR code holds at most 4296 alphanumeric characters
MAX_INFLATED = 64 * 1024  # zlib output cap: a zip bomb stops here
MAX_DEPTH = 16

COSE_SIGN1_TAG, CWT_TAG = 18, 61
_TAGS = frozenset({COSE_SIGN1_TAG, CWT_TAG})
HDR_ALG, HDR_KID = 1, 4
ALG_ES256, ALG_PS256 = -7, -37
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_DCC = 1
TYPES = ("v", "t", "r")

# Extended key usage of a document signer certificate: which DCC types it may sign (`signer_types`).
EKU_OIDS = {"t": "1.3.6.1.4.1.1847.2021.1.1", "v": "1.3.6.1.4.1.1847.2021.1.2", "r": "1.3.6.1.4.1.1847.2021.1.3"}
# The same, with the alternative OIDs some member states issued, which the EU reference accepts as well.
_EKU_TYPE = {oid: t for t, oid in EKU_OIDS.items()} | {
    "1.3.6.1.4.1.0.1847.2021.1.1": "t",
    "1.3.6.1.4.1.0.1847.2021.1.2": "v",
    "1.3.6.1.4.1.0.1847.2021.1.3": "r",
}

# The steps in order; each is True (passed), False (failed) or None (not reached).
STEPS = ("unprefix", "b45decode", "compression", "cose", "verify", "signer_validity", "decode",
         "expiration", "keyusage")


class Reason(str, enum.Enum):
    """Why a DCC is turned away: the first failing step, by name."""

    NOT_DCC = "not_dcc"  # no `HC1:` prefix, or far too long to be a QR code's text
    BAD_BASE45 = "bad_base45"
    BAD_COMPRESSION = "bad_compression"  # broken zlib, or inflating past MAX_INFLATED
    MALFORMED = "malformed"  # not a COSE_Sign1, or no CWT with an hcert inside
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_SIGNER = "unknown_signer"  # no kid, or no document signer certificate with that kid
    BAD_SIGNATURE = "bad_signature"
    SIGNER_NOT_VALID = "signer_not_valid"  # the signer certificate is outside its validity period
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # issued after `now`
    KEY_USAGE = "key_usage"  # the signer certificate may not sign this type (v, t, r)


@dataclass(frozen=True)
class DccResult:
    steps: Mapping[str, bool | None]
    reason: Reason | None
    dcc_type: str | None = None  # "v", "t" or "r"
    uvci: str | None = field(default=None, repr=False)
    iss: str | None = None
    iat: int | None = None
    exp: int | None = None
    # The decoded DCC (hcert claim 1): name and birth date. Memory only, never repr, logs or the wire.
    payload: Mapping[Any, Any] | None = field(default=None, repr=False, compare=False)
    # The signer's kid, the COSE signature and its algorithm (ES256 or PS256), for the revocation list's
    # kid-scoped hashes (firmware.revocation.hashes: of an ES256 signature only its first half counts).
    kid: bytes | None = field(default=None, repr=False, compare=False)
    signature: bytes | None = field(default=None, repr=False, compare=False)
    alg: int | None = field(default=None, repr=False, compare=False)
    # The intermediate forms, for the conformance runner; personal too.
    stages: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.reason is None

    def as_json(self) -> dict[str, Any]:
        """The public form: steps, reason, type and CWT times; never the payload or the UVCI."""
        return {"ok": self.ok, "reason": self.reason.value if self.reason else None, "type": self.dcc_type,
                "iss": self.iss, "iat": self.iat, "exp": self.exp, "steps": dict(self.steps)}


class _Stop(Exception):
    def __init__(self, reason: Reason) -> None:
        self.reason = reason


def kid_of(cert: x509.Certificate) -> bytes:
    """The DCC kid of a document signer certificate: the first 8 bytes of its DER's SHA-256."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()[:8]


def signers_by_kid(certs: Iterable[x509.Certificate]) -> dict[bytes, list[x509.Certificate]]:
    out: dict[bytes, list[x509.Certificate]] = {}
    for cert in certs:
        out.setdefault(kid_of(cert), []).append(cert)
    return out


def _loads(data: bytes) -> object:
    """Lenient as the member states need (indefinite lengths, duplicate keys), but no semantic tags beyond
    COSE_Sign1's and CWT's: a tag cbor2 would build an object for (tag 4 over a huge integer costs seconds)
    is refused at its head, and so are bignums."""
    try:
        return strictcbor.loads(data, max_bytes=MAX_INFLATED, tags=_TAGS, indefinite=True, duplicate_keys=True,
                                max_depth=MAX_DEPTH)
    except strictcbor.CborError:
        raise _Stop(Reason.MALFORMED) from None


def _is_map(obj: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(obj, (dict, cbor2.frozendict))


def _get(m: Mapping[Any, Any], label: int) -> object:
    """m[label] for an integer label only: True and 1.0 are equal to 1 in Python, not in CBOR."""
    for key, value in m.items():
        if type(key) is int and key == label:
            return value
    return None


def inflate(data: bytes) -> bytes | None:
    """zlib-inflate at most MAX_INFLATED bytes; None for a broken, truncated or oversized stream."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_INFLATED)
    except zlib.error:
        return None
    if d.unconsumed_tail or not d.eof:
        return None
    return out


def _is_zlib(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


def _time(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):  # inf, nan
        return None


def _check_signature(cert: x509.Certificate, alg: int, signature: bytes, tbs: bytes) -> bool:
    try:
        key = cert.public_key()
        if alg == ALG_ES256:
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == ALG_PS256:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            # COSE (RFC 8230) fixes the salt at the hash length; AUTO also reads it from the signature.
            key.verify(signature, tbs, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                       hashes.SHA256())
            return True
    except (InvalidSignature, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - an unsupported key in a certificate: not this signer
        return False
    return False


def signer_types(cert: x509.Certificate) -> list[str]:
    """The DCC types a document signer may sign, by its extended key usage as the EU reference reads it
    (test_ehealth_certs.py of the member states' test vectors): all three when it names no purpose (no
    EKU, or an empty one); else those whose OIDs it names, so none when it names only other purposes;
    none when what it names cannot be told (docs/device.md, "Key usage")."""
    oids = eku.purposes(cert)
    if oids is None:
        return []
    named = {_EKU_TYPE[oid] for oid in oids if oid in _EKU_TYPE}
    return [t for t in TYPES if not oids or t in named]


def _cert_valid(cert: x509.Certificate, now: float) -> bool:
    try:
        return cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()
    except Exception:  # noqa: BLE001 - a validity the library cannot read: not valid
        return False


def dcc_type(payload: object) -> str | None:
    """v, t or r: the one entry kind the DCC holds (None when it holds none or several)."""
    if not _is_map(payload):
        return None
    kinds = [t for t in TYPES if t in payload]
    return kinds[0] if len(kinds) == 1 else None


def _uvci(payload: Mapping[Any, Any], kind: str | None) -> str | None:
    entries = payload.get(kind) if kind else None
    if isinstance(entries, (list, tuple)) and entries and _is_map(entries[0]):
        ci = entries[0].get("ci")
        return ci if isinstance(ci, str) else None
    return None


Signers = Mapping[bytes, list[x509.Certificate]] | Iterable[x509.Certificate]


def verify(text: object, signers: Signers, now: float) -> DccResult:
    """The verifier's call: a DccResult for any input whatsoever, never an exception."""
    try:
        return verify_raising(text, signers, now)
    except Exception:  # noqa: BLE001 - a bug, not bad input: still no green
        return DccResult(dict.fromkeys(STEPS), Reason.MALFORMED)


def verify_raising(text: object, signers: Signers, now: float) -> DccResult:
    """Like verify, but an unexpected exception escapes: what the fuzz harness calls."""
    if not isinstance(signers, Mapping):
        signers = signers_by_kid(signers)
    steps: dict[str, bool | None] = dict.fromkeys(STEPS)
    stages: dict[str, bytes] = {}
    facts: dict[str, Any] = {}
    try:
        reason = _verify(text, signers, now, steps, stages, facts)
    except _Stop as stop:
        reason = stop.reason
    return DccResult(steps, reason, stages=stages, **facts)


def _verify(text: object, signers: Mapping[bytes, list[x509.Certificate]], now: float, steps: dict[str, bool | None],
            stages: dict[str, bytes], facts: dict[str, Any]) -> Reason | None:
    # Prefix, base45, zlib.
    steps["unprefix"] = isinstance(text, str) and len(text) <= MAX_TEXT and text.startswith(PREFIX)
    if not steps["unprefix"]:
        raise _Stop(Reason.NOT_DCC)
    body = cast(str, text)[len(PREFIX):]  # a str: steps["unprefix"] says so
    try:
        raw = base45.b45decode(body)
    except Exception:  # noqa: BLE001 - the package raises ValueError, and others on non-ASCII
        steps["b45decode"] = False
        raise _Stop(Reason.BAD_BASE45) from None
    steps["b45decode"] = True
    stages["compressed"] = raw
    if _is_zlib(raw):
        cose = inflate(raw)
        steps["compression"] = cose is not None
        if cose is None:
            raise _Stop(Reason.BAD_COMPRESSION)
    else:  # some issuers skip compression: the COSE itself, when it looks like one
        steps["compression"] = False
        cose = raw
    stages["cose"] = cose

    # COSE_Sign1, optionally tagged (18, and 61 around it).
    obj = _loads(cose)
    if isinstance(obj, cbor2.CBORTag) and obj.tag == CWT_TAG:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            steps["cose"] = False
            raise _Stop(Reason.MALFORMED)
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        steps["cose"] = False
        raise _Stop(Reason.MALFORMED)
    protected, unprotected, payload, signature = obj
    if not (isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(signature, bytes)
            and _is_map(unprotected)):
        steps["cose"] = False
        raise _Stop(Reason.MALFORMED)
    header = _loads(protected) if protected else {}
    if not _is_map(header):
        steps["cose"] = False
        raise _Stop(Reason.MALFORMED)
    steps["cose"] = True
    stages["cbor"] = payload
    alg = _get(header, HDR_ALG)
    if alg is None:
        alg = _get(unprotected, HDR_ALG)
    kid = _get(header, HDR_KID)
    if not isinstance(kid, bytes):
        kid = _get(unprotected, HDR_KID)

    # The CWT claims, decoded before the signature is judged so every check below has its outcome.
    claims = None
    try:
        claims = _loads(payload)
    except _Stop:
        pass
    hcert = _get(claims, CLAIM_HCERT) if _is_map(claims) else None
    dcc = _get(hcert, HCERT_DCC) if _is_map(hcert) else None
    steps["decode"] = _is_map(dcc)
    kind = dcc_type(dcc) if steps["decode"] else None
    if steps["decode"]:
        claims, dcc = cast(Mapping[Any, Any], claims), cast(Mapping[Any, Any], dcc)  # maps: steps["decode"] says so
        iss = _get(claims, CLAIM_ISS)
        facts.update(payload=dcc, dcc_type=kind, uvci=_uvci(dcc, kind), iss=iss if isinstance(iss, str) else None,
                     iat=_time(_get(claims, CLAIM_IAT)), exp=_time(_get(claims, CLAIM_EXP)))

    # Signature: every certificate sharing the kid.
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    candidates = signers.get(kid, []) if isinstance(kid, bytes) else []
    signer = None
    if alg in (ALG_ES256, ALG_PS256):
        signer = next((c for c in candidates if _check_signature(c, alg, signature, tbs)), None)
    steps["verify"] = signer is not None
    if signer is not None:
        facts.update(kid=kid, signature=signature, alg=alg)
        steps["signer_validity"] = _cert_valid(signer, now)
        steps["keyusage"] = kind in signer_types(signer)  # a DCC of no one type: no signer may sign it
    if steps["decode"]:
        iat, exp = facts["iat"], facts["exp"]
        if exp is None or now > exp:
            steps["expiration"], expiry = False, Reason.EXPIRED
        elif iat is not None and now < iat:
            steps["expiration"], expiry = False, Reason.NOT_YET_VALID
        else:
            steps["expiration"], expiry = True, None

    if alg not in (ALG_ES256, ALG_PS256):
        return Reason.UNSUPPORTED_ALGORITHM
    if not candidates:
        return Reason.UNKNOWN_SIGNER
    if signer is None:
        return Reason.BAD_SIGNATURE
    if not steps["signer_validity"]:
        return Reason.SIGNER_NOT_VALID
    if not steps["decode"]:
        return Reason.MALFORMED
    if expiry is not None:
        return expiry
    if not steps["keyusage"]:
        return Reason.KEY_USAGE
    return None


def parse_time(text: str) -> float:
    """An ISO 8601 time (as the test vectors write VALIDATIONCLOCK) as a POSIX timestamp; UTC when unzoned."""
    t = datetime.fromisoformat(text.strip())
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()
