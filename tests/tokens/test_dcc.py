"""EU DCC (`HC1:`): the dgc-testdata conformance vectors, DCCs built here, and hostile input."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import shutil
import time
import zlib
from pathlib import Path

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from firmware import cli
from lab import dcc_conformance
from firmware.tokens import dcc
from firmware.tokens.dcc import Reason

DATA = Path(__file__).parent.parent / "data" / "dgc-testdata"
NOW = 1_750_000_000
EKU_TEST, EKU_VAX, EKU_REC = (x509.ObjectIdentifier(f"1.3.6.1.4.1.1847.2021.1.{i}") for i in (1, 2, 3))
EKU_VAX_ALT = x509.ObjectIdentifier("1.3.6.1.4.1.0.1847.2021.1.2")
NAME, DOB = "Testperson-Ünique", "1961-07-13"
UVCI = "URN:UVCI:01:XX:QRGATE0TEST0000000001"


def payload(kind: str = "v") -> dict:
    entry = {"v": {"tg": "840539006", "dn": 2, "sd": 2, "dt": "2021-06-01", "co": "XX", "is": "qrgate", "ci": UVCI},
             "t": {"tg": "840539006", "tt": "LP6464-4", "sc": "2021-06-01T10:00:00Z", "tr": "260415000",
                   "co": "XX", "is": "qrgate", "ci": UVCI},
             "r": {"tg": "840539006", "fr": "2021-05-01", "df": "2021-05-12", "du": "2021-11-01", "co": "XX",
                   "is": "qrgate", "ci": UVCI}}[kind]
    return {"ver": "1.3.0", "nam": {"fn": NAME, "fnt": "TESTPERSON", "gn": "A", "gnt": "A"}, "dob": DOB,
            kind: [entry]}


def make_cert(key, eku=(), days=(-10, 365)) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"), x509.NameAttribute(NameOID.COMMON_NAME, "DSC")])
    start = dt.datetime.fromtimestamp(NOW, dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(start + dt.timedelta(days=days[0])).not_valid_after(start + dt.timedelta(days=days[1])))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return b.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def es_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def es_cert(es_key):
    return make_cert(es_key)


def build(key, cert, *, kind="v", iat=NOW - 3600, exp=NOW + 86400, alg=-7, kid_where="protected",
          compress=True, tag=True, claims=None, flip=None) -> str:
    kid = dcc.kid_of(cert)
    prot = {1: alg, 4: kid} if kid_where == "protected" else {1: alg}
    unprot = {4: kid} if kid_where == "unprotected" else {}
    if claims is None:
        claims = {1: "XX", 4: exp, 6: iat, -260: {1: payload(kind)}}
    protected, body = cbor2.dumps(prot), cbor2.dumps(claims)
    tbs = cbor2.dumps(["Signature1", protected, b"", body])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key.sign(tbs, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    if flip is not None:
        sig = bytearray(sig)
        sig[flip] ^= 0x01
        sig = bytes(sig)
    items = [protected, unprot, body, sig]
    cose = cbor2.dumps(cbor2.CBORTag(18, items) if tag else items)
    return dcc.PREFIX + base45.b45encode(zlib.compress(cose, 9) if compress else cose).decode("ascii")


# --- conformance -----------------------------------------------------------------------------------


def test_conformance_vectors_all_pass():
    out = io.StringIO()
    passed, failed = dcc_conformance.run([DATA], out=out)
    lines = out.getvalue().splitlines()
    assert (passed, failed) == (397, 0), [line for line in lines if '"passed": false' in line]
    assert lines[-1] == "397 passed, 0 failed"
    cases = [json.loads(line) for line in lines[:-1]]
    assert len(cases) == 401
    assert sum(bool(c.get("skipped")) for c in cases) == 4  # ES 401-403, FR test_pcr_ok (known_issues.csv)
    # Every false expectation of the suite is met as a failure, not skipped.
    falses = sum(not f["expected"] for c in cases for f in c.get("flags", {}).values())
    assert falses >= 80


def test_conformance_prints_nothing_personal():
    out = io.StringIO()
    dcc_conformance.run([DATA / "CZ", DATA / "common", DATA / "DK"], out=out)
    text = out.getvalue()
    for case in dcc_conformance.find_cases([DATA / "CZ", DATA / "common", DATA / "DK"]):
        j = json.loads(case.read_text()).get("JSON")
        if isinstance(j, dict) and isinstance(j.get("nam"), dict):
            assert j["nam"]["fnt"] not in text
            assert j["dob"] not in text


def test_conformance_command_country_folders_and_exit_code(tmp_path, capsys):
    assert cli.main(["dcc", "conformance", str(DATA / "CZ"), str(DATA / "common")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "29 passed, 0 failed"
    # A case whose expectation is wrong fails the run.
    bad = tmp_path / "XX" / "2DCode" / "raw"
    bad.mkdir(parents=True)
    case = json.loads((DATA / "CZ" / "2DCode" / "raw" / "1.json").read_text())
    case["EXPECTEDRESULTS"]["EXPECTEDVERIFY"] = False
    (bad / "1.json").write_text(json.dumps(case))
    assert cli.main(["dcc", "conformance", str(tmp_path)]) == 1
    last = capsys.readouterr().out.splitlines()
    assert last[-1] == "0 passed, 1 failed"
    assert json.loads(last[0])["flags"]["EXPECTEDVERIFY"] == {"expected": False, "actual": True}


def test_known_issue_rows(tmp_path):
    shutil.copytree(DATA / "ES", tmp_path / "ES")
    shutil.copy(DATA / "known_issues.csv", tmp_path)
    out = io.StringIO()
    assert dcc_conformance.run([tmp_path / "ES"], out=out) == (24, 0)
    skipped = [json.loads(line)["case"] for line in out.getvalue().splitlines()[:-1] if '"skipped": true' in line]
    assert sorted(Path(c).name for c in skipped) == ["401.json", "402.json", "403.json"]


# --- DCCs built here -------------------------------------------------------------------------------


def test_es256_dcc_verifies(es_key, es_cert):
    result = dcc.verify(build(es_key, es_cert), [es_cert], NOW)
    assert result.ok, result
    assert result.dcc_type == "v" and result.uvci == UVCI and result.iss == "XX"
    assert all(result.steps[s] for s in dcc.STEPS)
    assert NAME not in repr(result) and DOB not in repr(result) and UVCI not in repr(result)
    assert NAME not in json.dumps(result.as_json()) and UVCI not in json.dumps(result.as_json())


@pytest.mark.parametrize("variant", [{"kid_where": "unprotected"}, {"compress": False}, {"tag": False},
                                     {"kind": "t"}, {"kind": "r"}])
def test_es256_variants_verify(es_key, es_cert, variant):
    assert dcc.verify(build(es_key, es_cert, **variant), [es_cert], NOW).ok


def test_ps256_dcc_verifies():
    key = rsa.generate_private_key(65537, 2048)
    cert = make_cert(key, eku=[EKU_VAX])
    assert dcc.verify(build(key, cert, alg=-37), [cert], NOW).ok
    assert dcc.verify(build(key, cert, alg=-37, flip=5), [cert], NOW).reason is Reason.BAD_SIGNATURE


def test_every_certificate_sharing_the_kid_is_tried(es_key, es_cert):
    other = make_cert(ec.generate_private_key(ec.SECP256R1()))
    text = build(es_key, es_cert)
    kid = dcc.kid_of(es_cert)
    assert dcc.verify(text, {kid: [other, es_cert]}, NOW).ok
    assert dcc.verify(text, {kid: [other]}, NOW).reason is Reason.BAD_SIGNATURE
    assert dcc.verify(text, [other], NOW).reason is Reason.UNKNOWN_SIGNER


@pytest.mark.parametrize("byte", [0, 31, 32, 63])
def test_flipped_signature_byte_is_bad_signature(es_key, es_cert, byte):
    result = dcc.verify(build(es_key, es_cert, flip=byte), [es_cert], NOW)
    assert result.reason is Reason.BAD_SIGNATURE and result.steps["verify"] is False


def test_expired_and_not_yet_valid(es_key, es_cert):
    assert dcc.verify(build(es_key, es_cert, exp=NOW - 1), [es_cert], NOW).reason is Reason.EXPIRED
    assert dcc.verify(build(es_key, es_cert, iat=NOW + 600), [es_cert], NOW).reason is Reason.NOT_YET_VALID
    claims = {1: "XX", 6: NOW - 10, -260: {1: payload()}}  # no exp at all
    assert dcc.verify(build(es_key, es_cert, claims=claims), [es_cert], NOW).reason is Reason.EXPIRED


def test_signer_certificate_outside_its_validity(es_key):
    cert = make_cert(es_key, days=(-400, -1))
    result = dcc.verify(build(es_key, cert), [cert], NOW)
    assert result.reason is Reason.SIGNER_NOT_VALID and result.steps["verify"] is True


@pytest.mark.parametrize("eku, kind, ok", [
    ([EKU_TEST], "v", False), ([EKU_TEST], "t", True), ([EKU_VAX], "v", True), ([EKU_VAX_ALT], "v", True),
    ([EKU_VAX_ALT], "r", False), ([EKU_TEST, EKU_REC], "r", True), ([EKU_TEST, EKU_REC], "v", False),
    ([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH], "v", True),  # none of the DCC OIDs: no restriction
])
def test_key_usage_against_certificate_type(es_key, eku, kind, ok):
    cert = make_cert(es_key, eku=eku)
    result = dcc.verify(build(es_key, cert, kind=kind), [cert], NOW)
    assert result.ok is ok and result.steps["keyusage"] is ok
    if not ok:
        assert result.reason is Reason.KEY_USAGE


def test_unsupported_algorithm_and_missing_hcert(es_key, es_cert):
    assert dcc.verify(build(es_key, es_cert, alg=-35), [es_cert], NOW).reason is Reason.UNSUPPORTED_ALGORITHM
    text = build(es_key, es_cert, claims={1: "XX", 4: NOW + 60, 6: NOW})
    assert dcc.verify(text, [es_cert], NOW).reason is Reason.MALFORMED


# --- hostile input ---------------------------------------------------------------------------------


def test_random_bytes_after_prefix_are_named_rejections_quickly(es_cert):
    rng = random.Random(7)
    start = time.perf_counter()
    for n in range(2000):
        blob = rng.randbytes(rng.randrange(0, 400))
        if n % 2:  # a valid zlib stream of junk, to reach the CBOR layers
            blob = zlib.compress(blob)
        elif n % 4 == 2:
            blob = zlib.compress(b"\xd2\x84" + blob)
        result = dcc.verify(dcc.PREFIX + base45.b45encode(blob).decode("ascii"), [es_cert], NOW)
        assert isinstance(result.reason, Reason) and not result.ok
    for text in ("", "HC1:", "HC1:!!!", "HC1:A", "KP1:AAA", "hc1:" + "A" * 30, "HC1:" + "Z" * 9000, None, b"HC1:",
                 "HC1:" + "\x00" * 30):
        result = dcc.verify(text, [es_cert], NOW)
        assert isinstance(result.reason, Reason) and not result.ok
    assert time.perf_counter() - start < 5


def test_zlib_bomb_is_bad_compression_quickly(es_cert):
    bomb = zlib.compress(b"\x00" * (4 * 1024 * 1024), 9)  # 4 MiB inflated from ~4 KiB: one QR code's worth
    text = dcc.PREFIX + base45.b45encode(bomb).decode("ascii")
    assert len(text) <= dcc.MAX_TEXT
    start = time.perf_counter()
    result = dcc.verify(text, [es_cert], NOW)
    assert result.reason is Reason.BAD_COMPRESSION and time.perf_counter() - start < 0.5
    assert dcc.inflate(bomb) is None
    assert dcc.inflate(bomb[:-8]) is None  # truncated
    assert dcc.inflate(zlib.compress(os.urandom(100))) is not None


class _DecimalSpy:
    """cbor2 builds tag 4 (a decimal fraction) through decimal.Decimal, looked up when it decodes one."""

    def __init__(self, monkeypatch):
        import decimal

        self.built = 0
        real = decimal.Decimal
        spy = self

        class Counting(real):
            def __new__(cls, *args, **kw):
                spy.built += 1
                return real.__new__(cls, *args, **kw)

        monkeypatch.setattr(decimal, "Decimal", Counting)


@pytest.mark.parametrize("where", ["envelope", "protected", "claims"])
def test_a_tag_4_bomb_in_a_short_qr_is_refused_at_its_head(es_key, es_cert, monkeypatch, where):
    # 60 KB of 0xff compress to under 100 bytes: a QR of about 190 characters that cost the door 0.4 s.
    bomb = cbor2.CBORTag(4, [-2, (1 << (8 * 60_000)) - 1])
    if where == "envelope":
        cose = cbor2.dumps(bomb)
    else:
        good = cbor2.loads(zlib.decompress(base45.b45decode(build(es_key, es_cert)[4:])))
        items = list(good.value)
        items[0 if where == "protected" else 2] = cbor2.dumps({1: -7, 4: dcc.kid_of(es_cert), 99: bomb}
                                                               if where == "protected" else {-260: bomb})
        cose = cbor2.dumps(cbor2.CBORTag(18, items))
    text = dcc.PREFIX + base45.b45encode(zlib.compress(cose, 9)).decode("ascii")
    assert len(text) < 700  # a small QR code (version 15 or so)
    spy = _DecimalSpy(monkeypatch)
    result = dcc.verify(text, [es_cert], NOW)
    assert not result.ok and spy.built == 0
    assert result.reason in (Reason.MALFORMED, Reason.UNKNOWN_SIGNER, Reason.BAD_SIGNATURE)
