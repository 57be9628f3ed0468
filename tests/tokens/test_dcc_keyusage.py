"""A document signer's extended key usage (EKU) against the DCC's type, as the EU reference judges it.

The reference is `test_expected_key_usage` of the member states' test vectors (dgc-testdata's
test_ehealth_certs.py): the signer's EKU OIDs as a set, empty when the certificate has no EKU; an empty
set allows every type; otherwise the set must hold one of the type's two OIDs (the specification's,
1.3.6.1.4.1.1847.2021.1.x, or the alternative 1.3.6.1.4.1.0.1847.2021.1.x some states issued), so an EKU
of other purposes only allows none. Where cryptography refuses a certificate's extensions, the EKU is read
from the DER (tokens.eku): each of those corners is a real certificate here, its bytes written by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shutil
import zlib
from pathlib import Path

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from lab import dcc_conformance, dcc_issuer
from firmware.tokens import dcc, eku
from firmware.tokens.dcc import Reason

DATA = Path(__file__).parent.parent / "data" / "dgc-testdata"
NOW = 1_750_000_000
SPEC = {t: f"1.3.6.1.4.1.1847.2021.1.{i}" for t, i in (("t", 1), ("v", 2), ("r", 3))}
ALT = {t: f"1.3.6.1.4.1.0.1847.2021.1.{i}" for t, i in (("t", 1), ("v", 2), ("r", 3))}
CLIENT_AUTH, ANY_PURPOSE = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string, "2.5.29.37.0"
EKU_ID, BASIC_CONSTRAINTS, SUBJECT_KEY_ID = (o.dotted_string for o in (
    ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.SUBJECT_KEY_IDENTIFIER))


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def plain(key):
    """A signer certificate with no extension at all."""
    start = dt.datetime.fromtimestamp(NOW, dt.UTC) - dt.timedelta(days=10)
    return dcc_issuer.with_extensions(dcc_issuer.signer_certificate(key, "XX", "v", start, 365), key, [])


def cert_with(plain, key, *extensions: tuple[str, bytes]) -> x509.Certificate:
    """The signer certificate with these extensions, bytes as given; each is checked to be in it, as given."""
    cert = dcc_issuer.with_extensions(plain, key, list(extensions))
    for _, value in extensions:
        assert value in cert.tbs_certificate_bytes
    return cert


def usage(*oids: str) -> bytes:
    """An EKU extension's value, written by cryptography (DER, so at least one OID)."""
    return x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in oids]).public_bytes()


def tlv(tag: int, *parts: bytes) -> bytes:
    """One DER item, short-form length: every item here is under 128 bytes."""
    body = b"".join(parts)
    return bytes([tag, len(body)]) + body


SEQUENCE, SET, OID, NULL = 0x30, 0x31, 0x06, 0x05
V = usage(SPEC["v"])[4:]  # the octets of the vaccination OID: 2b 06 01 04 01 8e37 8f65 01 02


def sign(key, cert, hcert: dict) -> str:
    """An `HC1:` text of this DCC content (hcert claim 1), signed by `key` under the certificate's kid."""
    protected = cbor2.dumps({1: dcc.ALG_ES256, 4: dcc.kid_of(cert)})
    payload = cbor2.dumps({1: "XX", 6: NOW - 60, 4: NOW + 86400, -260: {1: hcert}})
    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", protected, b"", payload]),
                                         ec.ECDSA(hashes.SHA256())))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
    return dcc.PREFIX + base45.b45encode(zlib.compress(cose)).decode("ascii")


def of_type(*kinds: str) -> dict:
    """DCC content holding an entry of each of these types."""
    return {"ver": "1.3.0", "dob": "1990-01-01", "nam": {"fnt": "X", "gnt": "Y"},
            **{k: [dcc_issuer.entry(k, NOW, f"URN:UVCI:01:XX:{k.upper()}1", "XX")] for k in kinds}}


def verdicts(key, cert) -> dict[str, tuple[bool | None, Reason | None]]:
    """Per type, the keyusage step and the reason of a DCC of that type the certificate's key signed."""
    out = {}
    for kind in dcc.TYPES:
        result = dcc.verify(sign(key, cert, of_type(kind)), [cert], NOW)
        out[kind] = (result.steps["keyusage"], result.reason)
    return out


def allows(types: str) -> dict[str, tuple[bool | None, Reason | None]]:
    """What `verdicts` is for a signer allowed exactly these types: accepted, or refused for its key usage."""
    return {t: (True, None) if t in types else (False, Reason.KEY_USAGE) for t in dcc.TYPES}


# --- the EKU's OIDs against the type: what cryptography reads --------------------------------------

@pytest.mark.parametrize("oids, types", [
    (None, "vtr"),  # no EKU extension: no restriction
    ((SPEC["v"],), "v"), ((SPEC["t"],), "t"), ((SPEC["r"],), "r"),
    ((ALT["v"],), "v"), ((ALT["t"],), "t"), ((ALT["r"],), "r"),  # the alternative OIDs, as the reference
    ((SPEC["t"], SPEC["r"]), "tr"), ((ALT["v"], SPEC["r"]), "vr"),  # several types
    ((SPEC["t"], SPEC["v"], SPEC["r"]), "vtr"), ((ALT["t"], ALT["v"], ALT["r"]), "vtr"),
    ((CLIENT_AUTH, SPEC["v"]), "v"),  # another purpose beside a DCC one: the DCC one counts
    ((CLIENT_AUTH,), ""),  # only other purposes: none of the three
    ((CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string), ""),
    ((ANY_PURPOSE,), ""),  # anyExtendedKeyUsage is one more OID to the reference, not a DCC type
    (("1.3.6.1.4.1.1847.2021.1.4",), ""), (("1.3.6.1.4.1.1847.2021.1",), ""),  # near the DCC OIDs, not them
    (("1.3.6.1.4.1.0.1847.2021.1.2.1",), ""),
], ids=lambda x: "-".join(x) if isinstance(x, tuple) else str(x))
def test_the_eku_oids_against_the_dccs_type(key, plain, oids, types):
    cert = plain if oids is None else cert_with(plain, key, (EKU_ID, usage(*oids)))
    assert eku.purposes(cert) == frozenset(oids or ())  # read by cryptography: none of this refuses
    assert dcc.signer_types(cert) == [t for t in dcc.TYPES if t in types]
    assert verdicts(key, cert) == allows(types)


# --- extensions cryptography refuses: the EKU read from the DER -------------------------------------

# BasicConstraints with cA FALSE written out: DER leaves a default out, and cryptography refuses it (as it
# does Finland's document signers), which leaves it no extension to read.
CA_FALSE_ENCODED = bytes.fromhex("3003010100")


@pytest.mark.parametrize("extensions, types", [
    ([(EKU_ID, tlv(SEQUENCE))], "vtr"),  # an empty EKU: names no purpose, as none at all
    ([(BASIC_CONSTRAINTS, CA_FALSE_ENCODED), (EKU_ID, usage(SPEC["t"]))], "t"),
    ([(EKU_ID, usage(ALT["v"], ALT["r"])), (BASIC_CONSTRAINTS, CA_FALSE_ENCODED)], "vr"),
    ([(BASIC_CONSTRAINTS, CA_FALSE_ENCODED), (EKU_ID, usage(CLIENT_AUTH))], ""),
    ([(BASIC_CONSTRAINTS, CA_FALSE_ENCODED)], "vtr"),  # no EKU beside it
    ([(BASIC_CONSTRAINTS, CA_FALSE_ENCODED), (EKU_ID, tlv(SEQUENCE))], "vtr"),
    ([(SUBJECT_KEY_ID, tlv(0x04, b"\1")), (SUBJECT_KEY_ID, tlv(0x04, b"\2")),
      (EKU_ID, usage(SPEC["r"]))], "r"),  # another extension repeated
    ([(BASIC_CONSTRAINTS, tlv(NULL)), (EKU_ID, usage(SPEC["v"]))], "v"),  # another malformed
    ([(EKU_ID, bytes([SEQUENCE, 0x81, len(V) + 2]) + tlv(OID, V))], "v"),  # BER's long-form length
    ([(EKU_ID, bytes([SEQUENCE, 0x80]) + tlv(OID, V) + b"\0\0")], "v"),  # BER's indefinite length
], ids=["empty", "ca-false-encoded-t", "alt-vr-then-ca-false", "ca-false-client-auth", "ca-false-no-eku",
        "ca-false-empty", "ski-twice", "bc-null", "long-length", "indefinite-length"])
def test_an_eku_cryptography_refuses_is_read_from_the_der(key, plain, extensions, types):
    cert = cert_with(plain, key, *extensions)
    with pytest.raises((ValueError, x509.DuplicateExtension)):
        cert.extensions
    assert dcc.signer_types(cert) == [t for t in dcc.TYPES if t in types]
    assert verdicts(key, cert) == allows(types)


@pytest.mark.parametrize("value", [
    b"",  # no bytes at all
    tlv(NULL),  # not a SEQUENCE
    tlv(SET, tlv(OID, V)),
    tlv(SEQUENCE, tlv(OID, V)) + b"\0",  # a byte after the SEQUENCE
    tlv(SEQUENCE, tlv(OID, V), tlv(NULL)),  # a NULL among the OIDs
    tlv(SEQUENCE, tlv(0x02, b"\1")),  # an INTEGER
    tlv(SEQUENCE, tlv(SEQUENCE, tlv(OID, V))),  # a SEQUENCE
    tlv(SEQUENCE, tlv(OID, b"")),  # an OID of no octets
    tlv(SEQUENCE, tlv(OID, V[:-1] + b"\x82")),  # its last octet says more follows
    tlv(SEQUENCE, tlv(OID, V[:6])),  # cut inside 1847
    tlv(SEQUENCE, tlv(OID, V[:-1] + b"\x80\x02")),  # its last subidentifier padded: asn1crypto reads V's OID
    tlv(SEQUENCE, tlv(OID, b"\x80" + V)),  # its first one padded
    tlv(SEQUENCE, tlv(OID, V))[:-1],  # the OID's length past the value's end
], ids=["none", "null", "set", "trailing", "oid-and-null", "integer", "nested", "empty-oid", "unfinished",
        "cut", "padded-last", "padded-first", "short"])
def test_an_eku_that_names_nothing_readable_allows_no_type(key, plain, value):
    cert = cert_with(plain, key, (EKU_ID, value))
    with pytest.raises(ValueError):
        cert.extensions
    assert eku.purposes(cert) is None
    assert dcc.signer_types(cert) == []
    assert verdicts(key, cert) == allows("")


@pytest.mark.parametrize("first, second", [
    (usage(SPEC["v"]), usage(SPEC["v"])),  # the same twice
    (usage(SPEC["v"]), usage(SPEC["t"])),
    (usage(SPEC["v"]), tlv(SEQUENCE)),
], ids=["same", "v-and-t", "v-and-empty"])
def test_a_repeated_eku_allows_no_type(key, plain, first, second):
    """RFC 5280 allows an extension once: which of the two the issuer meant cannot be told."""
    cert = cert_with(plain, key, (EKU_ID, first), (SUBJECT_KEY_ID, tlv(0x04, b"\1")), (EKU_ID, second))
    with pytest.raises(x509.DuplicateExtension):
        cert.extensions
    assert eku.purposes(cert) is None
    assert verdicts(key, cert) == allows("")


def test_the_der_reading_agrees_with_cryptography_wherever_cryptography_reads(key, plain):
    for oids in ((SPEC["v"],), (ALT["t"], SPEC["r"], CLIENT_AUTH), (ANY_PURPOSE,), ("2.999.1", "0.0")):
        cert = cert_with(plain, key, (SUBJECT_KEY_ID, tlv(0x04, b"\1")), (EKU_ID, usage(*oids)))
        assert eku.from_der(cert.tbs_certificate_bytes) == eku.purposes(cert) == frozenset(oids)
    for cert in (plain, dcc_issuer.signer_certificate(key, "XX", "v", dt.datetime(2021, 1, 1), 1)):
        assert eku.from_der(cert.tbs_certificate_bytes) == eku.purposes(cert)  # no extension; cryptography's EKU


def test_what_cryptography_reads_is_not_read_again_from_the_der(key, plain, monkeypatch):
    """cryptography keeps its reading on the certificate (microseconds a call); asn1crypto's costs a tenth of
    a millisecond and more at every DCC that signer signs: only what cryptography refuses pays for it."""
    cert = cert_with(plain, key, (EKU_ID, usage(SPEC["v"])))
    monkeypatch.setattr(eku, "from_der", lambda tbs: pytest.fail("read again from the DER"))
    assert eku.purposes(cert) == {SPEC["v"]} and eku.purposes(plain) == frozenset()


@pytest.mark.parametrize("tbs", [b"", b"\x30\x00", b"\x30\x80", b"\xff" * 40, b"\x30\x03\x02\x01\x02"],
                         ids=["empty", "empty-seq", "indefinite", "junk", "version-only"])
def test_a_tbs_that_is_no_certificate_is_read_as_none(tbs):
    assert eku.from_der(tbs) is None


# --- the DCC's type ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kinds", [("v", "t"), ("t", "r"), ("v", "t", "r"), ()], ids=["vt", "tr", "vtr", "none"])
@pytest.mark.parametrize("oids", [None, (SPEC["v"], SPEC["t"], SPEC["r"])], ids=["no-eku", "all-three"])
def test_a_dcc_of_no_one_type_no_signer_may_sign(key, plain, kinds, oids):
    """The reference asserts one type before it judges the key usage: with none or several it has no answer.
    (Claims that do not decode have no type either: test_dcc's step table.)"""
    cert = plain if oids is None else cert_with(plain, key, (EKU_ID, usage(*oids)))
    result = dcc.verify(sign(key, cert, of_type(*kinds)), [cert], NOW)
    assert (result.steps["decode"], result.steps["keyusage"], result.reason) == (True, False, Reason.KEY_USAGE)


# --- the vectors and the runner ---------------------------------------------------------------------

def test_finlands_signers_whose_extensions_cryptography_refuses_meet_their_key_usage_flags(tmp_path):
    """Upstream's known_issues.csv skips FI's key usage (its issue 407: cryptography refuses the
    certificates' BasicConstraints); read from the DER, every FI case meets its EXPECTEDKEYUSAGE."""
    shutil.copytree(DATA / "FI", tmp_path / "FI")  # without known_issues.csv: every flag evaluated
    for case in dcc_conformance.find_cases([tmp_path]):
        cert = dcc_conformance._certificate(json.loads(case.read_text())["TESTCTX"])[0]
        with pytest.raises(ValueError):
            cert.extensions
    out = io.StringIO()
    assert dcc_conformance.run([tmp_path / "FI"], out=out) == (10, 0)
    lines = [json.loads(line) for line in out.getvalue().splitlines()[:-1]]
    assert all(c["flags"]["EXPECTEDKEYUSAGE"] == {"expected": True, "actual": True} for c in lines)


def test_a_certificate_cryptography_cannot_load_is_no_signer(tmp_path):
    """The reference cannot load it either: its signature check then expects a failure, and its key usage
    check has no answer. Here it is no signer: the signature step fails and the key usage is not reached."""
    case = json.loads((DATA / "CZ" / "2DCode" / "raw" / "1.json").read_text())
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(der[:-1])
    case["TESTCTX"]["CERTIFICATE"] = base64.b64encode(der[:-1]).decode()  # its last byte cut
    case["EXPECTEDRESULTS"] = {"EXPECTEDVERIFY": False, "EXPECTEDKEYUSAGE": False}
    folder = tmp_path / "XX" / "2DCode" / "raw"
    folder.mkdir(parents=True)
    (folder / "1.json").write_text(json.dumps(case))
    line = dcc_conformance.run_case(folder / "1.json", [], {})
    assert line["passed"] and line["reason"] == Reason.UNKNOWN_SIGNER.value
    assert line["flags"]["EXPECTEDKEYUSAGE"] == {"expected": False, "actual": False}
    case["EXPECTEDRESULTS"] = {"EXPECTEDKEYUSAGE": True}  # never met: no signer, no key usage judged
    (folder / "1.json").write_text(json.dumps(case))
    assert not dcc_conformance.run_case(folder / "1.json", [], {})["passed"]


def test_the_crafted_certificates_are_signed_and_the_same_bytes_each_time(key, plain):
    cert = cert_with(plain, key, (EKU_ID, tlv(SEQUENCE)))
    key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    again = dcc_issuer.with_extensions(plain, key, [(EKU_ID, tlv(SEQUENCE))])
    assert again.public_bytes(serialization.Encoding.DER) == cert.public_bytes(serialization.Encoding.DER)
