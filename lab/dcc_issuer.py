"""A test issuer of EU DCCs: a document signer (P-256 key and certificate) and the `HC1:` texts it signs.

Real DCCs come from a member state's issuing service; this one exists so that
the tests, the demo, the fuzz harness and a technician's dry run have genuine
vaccination, test and recovery certificates to show the camera, signed by a
signer the trust list names (its `dsc` field). The certificate is self-signed:
the device trusts a signer because the authority's signed trust list lists
it, not through a certificate chain.

A signer folder holds `dsc.key` (PKCS#8 PEM, 0600) and `dsc.pem`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from firmware import utc
from firmware.errors import KeyFileError
from firmware.keys import load_private, write_private
from firmware.tokens import dcc
from firmware.tokens.dcc_policy import COVID19, NEGATIVE

POSITIVE = "260373001"  # SNOMED CT "detected" (tr)
TEST_NAAT, TEST_RAT = "LP6464-4", "LP217198-3"


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def kid(self) -> bytes:
        return dcc.kid_of(self.cert)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def country(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        return str(names[0].value) if names else "XX"


def signer_certificate(key, country: str, types: str, not_before: dt.datetime, days: int,
                       serial: int | None = None) -> x509.Certificate:
    """A document signer's self-signed certificate, its key usage naming exactly the DCC types in `types`.

    With a `serial` (and a P-256 key, signed per RFC 6979) the same inputs give the same bytes: the fuzz
    harness derives its world from a seed.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"qrgate test DSC {country}")])
    deterministic = {"ecdsa_deterministic": True} if isinstance(key, ec.EllipticCurvePrivateKey) else {}
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_before + dt.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(dcc.EKU_OIDS[t]) for t in sorted(set(types))]),
                           critical=False)
            .sign(key, hashes.SHA256(), **deterministic))


def with_extensions(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                    extensions: list[tuple[str, bytes]]) -> x509.Certificate:
    """`cert` with exactly these extensions (dotted OID, DER value), written as given, repeated or malformed:
    what member states issued and cryptography's builder will not write. Its TBS is rewritten with
    asn1crypto and signed again by `key` (deterministic ECDSA: the same inputs give the same bytes)."""
    from asn1crypto import core, parser
    from asn1crypto import x509 as asn1_x509

    def sequence(contents: bytes) -> bytes:
        return parser.emit(0, 1, 16, contents)

    whole = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = asn1_x509.TbsCertificate.load(cert.tbs_certificate_bytes)
    # Loaded from bytes, not built from values: asn1crypto would parse (and refuse) a value it knows.
    tbs["extensions"] = asn1_x509.Extensions.load(sequence(b"".join(
        sequence(core.ObjectIdentifier(oid).dump() + core.OctetString(value).dump()) for oid, value in extensions)))
    der = tbs.dump()
    signature = key.sign(der, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return x509.load_der_x509_certificate(asn1_x509.Certificate({
        "tbs_certificate": asn1_x509.TbsCertificate.load(der), "signature_algorithm": whole["signature_algorithm"],
        "signature_value": signature}).dump())


def make_signer(country: str = "XX", types: str = "vtr", not_before: float | None = None,
                days: int = 365) -> Signer:
    """A fresh signer, allowed the DCC types in `types` (its key usage names exactly those)."""
    if len(country) != 2 or not country.isalpha() or not country.isupper():
        raise KeyFileError(f"a country is two capital letters, not {country!r}")
    if not types or set(types) - set(dcc.EKU_OIDS):
        raise KeyFileError(f"types are letters of 'vtr', not {types!r}")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (dt.datetime.fromtimestamp(not_before, dt.UTC) if not_before is not None
             else dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    return Signer(key, signer_certificate(key, country, types, start, days))


def new_signer(out: Path, country: str = "XX", types: str = "vtr", days: int = 365) -> Signer:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "dsc.key").exists():
        raise KeyFileError(f"{out / 'dsc.key'} exists already; refusing to overwrite a key")
    signer = make_signer(country, types, days=days)
    write_private(out / "dsc.key", signer.key)
    (out / "dsc.pem").write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
    return signer


def load_certificate(path: Path) -> x509.Certificate:
    """A signer certificate, PEM or DER; a folder means its `dsc.pem`."""
    path = Path(path)
    path = path / "dsc.pem" if path.is_dir() else path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read certificate {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise KeyFileError(f"{path} is not an X.509 certificate (PEM or DER)") from None


def load_signer(folder: Path) -> Signer:
    folder = Path(folder)
    key = load_private(folder / "dsc.key", ec.EllipticCurvePrivateKey, "P-256 document signer key")
    return Signer(key, load_certificate(folder / "dsc.pem"))


def entry(kind: str, at: float, uvci: str, country: str, **fields) -> dict:
    """One vaccination, test or recovery entry dated relative to `at`; `fields` override (e.g. dn=1)."""
    day = lambda offset: dt.datetime.fromtimestamp(at + offset * 86400, dt.UTC).date().isoformat()  # noqa: E731
    common = {"tg": COVID19, "co": country, "is": "qrgate test issuer", "ci": uvci}
    if kind == "v":
        body = {"vp": "J07BX03", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": day(-30)}
    elif kind == "t":
        sampled = utc.iso(at - 6 * 3600)
        body = {"tt": TEST_NAAT, "nm": "qrgate test", "sc": sampled, "tr": NEGATIVE, "tc": "qrgate test centre"}
    elif kind == "r":
        body = {"fr": day(-40), "df": day(-29), "du": day(140)}
    else:
        raise ValueError(f"a DCC type is v, t or r, not {kind!r}")
    return {**common, **body, **fields}


def new_uvci(country: str = "XX") -> str:
    return f"URN:UVCI:01:{country}:{os.urandom(10).hex().upper()}"


def mint(signer: Signer, now: float, kind: str = "v", uvci: str | None = None, valid_days: int = 365,
         name: tuple[str, str] = ("Musterfrau-Gößinger", "Gabriele"), dob: str = "1998-02-26", **fields) -> str:
    """An `HC1:` text: the DCC a member state would issue, as a phone shows it (ES256, compressed)."""
    country = signer.country
    hcert = {"ver": "1.3.0", "dob": dob,
             "nam": {"fn": name[0], "gn": name[1], "fnt": name[0].upper(), "gnt": name[1].upper()},
             kind: [entry(kind, now, uvci or new_uvci(country), country, **fields)]}
    claims = {1: country, 6: int(now) - 60, 4: int(now) + valid_days * 86400, -260: {1: hcert}}
    protected = cbor2.dumps({1: dcc.ALG_ES256, 4: signer.kid})
    payload = cbor2.dumps(claims)
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(signer.key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    cose = cbor2.dumps(cbor2.CBORTag(dcc.COSE_SIGN1_TAG, [protected, {}, payload,
                                                          r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
    return dcc.PREFIX + base45.b45encode(zlib.compress(cose, 9)).decode("ascii")


def business_rule(identifier: str, logic: object, *, country: str | None = None, type: str = "Acceptance",
                  certificate_type: str = "Vaccination", version: str = "1.0.0",
                  valid_from: str = "2021-06-01T00:00:00Z", valid_to: str = "2030-06-01T00:00:00Z",
                  engine_version: str = "1.0.0", **extra) -> str:
    """One business rule's JSON text in the EU gateway's format (tokens.dcc_rules reads it), for tests and the
    fuzz harness; the country is the Identifier's unless given."""
    body = {
        "Identifier": identifier, "Type": type, "Country": country or identifier.split("-")[1],
        "Version": version, "SchemaVersion": "1.0.0", "Engine": "CERTLOGIC", "EngineVersion": engine_version,
        "CertificateType": certificate_type,
        "Description": [{"lang": "en", "desc": f"test rule {identifier}"}],
        "ValidFrom": valid_from, "ValidTo": valid_to, "AffectedFields": ["v.0.mp"], "Logic": logic,
    }
    body.update(extra)
    return json.dumps(body)
