"""`qrgate provision`: real keys, a real CA (tests/pki.py), real files, a real Mosquitto requiring client certs."""

from __future__ import annotations

import datetime
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware import cli, config, keys
from lab.broker import Mosquitto
from firmware.uplink.mqtt import MqttUplink, Tls
from pki import Pki
from tests.conftest import wait_until
from lab import signers

VENUE, DEVICE = "cafe-1", "door-1"
CN = f"{VENUE}:{DEVICE}"
PEM = serialization.Encoding.PEM
SPKI = dict(encoding=serialization.Encoding.DER, format=serialization.PublicFormat.SubjectPublicKeyInfo)
NOW = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def etc(tmp_path) -> Path:
    return tmp_path / "etc"


def args(world, pki: Pki, etc: Path, **over) -> list[str]:
    """`qrgate provision …` with the world's keys and list and the Pki's CA; `over` replaces (None: drops) options."""
    opts = {"--venue": VENUE, "--device": DEVICE, "--broker": "mqtts://broker.example.org:8883", "--ca": str(pki.ca),
            "--authority-key": str(world.authority_dir / "authority.pub"),
            "--root-key": str(world.root_dir / "root.pub"), "--trust": str(world.trust_file), "--etc": str(etc),
            "--state-dir": str(etc.parent / "state")}
    for name, value in over.items():
        opts["--" + name.replace("_", "-")] = value
    out = ["provision"]
    for name, value in opts.items():
        if value is True:
            out.append(name)
        elif value is not None:
            out += [name, value]
    return out


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def provision(capsys, world, pki, etc, **over) -> tuple[dict, str, str]:
    code, out, err = run(capsys, args(world, pki, etc, **over))
    assert code == 0, err
    first, _, rest = out.partition("\n")
    return json.loads(first), rest, err


def snapshot(folder: Path) -> dict:
    """Every path under `folder` with its mode and bytes: what "unchanged" means."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def sign(pki: Pki, csr_pem: bytes, cn: str | None = None, key=None, days: float = 30, start_days: float = -1,
         eku=ExtendedKeyUsageOID.CLIENT_AUTH) -> bytes:
    """What the custodian's CA does with the CSR: a certificate for its key (or `key`'s), CN as asked (or `cn`)."""
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    subject = csr.subject if cn is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = NOW()
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(pki.cert.subject)
        .public_key(key.public_key() if key is not None else csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start_days))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return builder.sign(pki.key, hashes.SHA256()).public_bytes(PEM)


def self_signed_ca(path: Path, days: float = 30, start_days: float = -1, ca: bool = True) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    now = NOW()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(PEM))
    return path


def device_key(etc: Path):
    return serialization.load_pem_private_key((etc / "tls" / "device.key").read_bytes(), None)


# --- provision ------------------------------------------------------------------------------------------


def test_provision_installs_everything_and_prints_the_csr(capsys, tmp_path, world, pki, etc):
    summary, csr_text, err = provision(capsys, world, pki, etc)

    for name in ("custodian-ca.pem", "root.pub", "trustlist.cose", "qrgate.toml",
                 "tls/device.key", "tls/device.csr"):
        assert (etc / name).is_file(), name
    assert not (etc / "authority.pub").exists()  # checked against the list, not installed: the list's keys rotate
    assert not (etc / "tls" / "device.crt").exists()
    assert stat.S_IMODE((etc / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE((etc / "tls" / "device.key").stat().st_mode) == 0o600
    for name in ("custodian-ca.pem", "root.pub", "trustlist.cose", "qrgate.toml"):
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o644, name
    assert not [p for p in etc.rglob("*") if ".tmp" in p.name]

    # The copies are what was given (the CA and keys as canonical PEM, the list byte for byte).
    assert (etc / "trustlist.cose").read_bytes() == world.trust_file.read_bytes()
    assert x509.load_pem_x509_certificate((etc / "custodian-ca.pem").read_bytes()) == pki.cert

    # The key: ECDSA P-256, PKCS8 PEM, never printed.
    key = device_key(etc)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert b"BEGIN PRIVATE KEY" in (etc / "tls" / "device.key").read_bytes()
    assert "PRIVATE" not in csr_text + err + json.dumps(summary)

    # The CSR: on stdout after the JSON line, also in the tls folder, signed by the device key, CN venue:device.
    assert csr_text.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert csr_text.encode() == (etc / "tls" / "device.csr").read_bytes()
    csr = x509.load_pem_x509_csr(csr_text.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CN
    assert csr.public_key().public_bytes(**SPKI) == key.public_key().public_bytes(**SPKI)

    assert summary == {
        "venue": VENUE, "device": DEVICE, "cn": CN, "broker": "mqtts://broker.example.org:8883", "etc": str(etc),
        "written": [str(etc / n) for n in ("custodian-ca.pem", "root.pub", "trustlist.cose",
                                           "tls/device.key", "tls/device.csr", "qrgate.toml")],
        "key": "generated", "key_path": str(etc / "tls" / "device.key"), "csr": str(etc / "tls" / "device.csr"),
        "certificate": None, "trust_seq": 1,
        "authority_fingerprint": keys.fingerprint(keys.load_authority_public(world.authority_dir)),
        "root_fingerprint": keys.fingerprint(keys.load_root_public(world.root_dir)),
        "venue_secret": None,
    }
    assert "--install-cert" in err and CN in err and len(err.strip().splitlines()) == 2  # and the fingerprints

    # The config the daemon will load: mqtt on, TLS to the custodian CA, no client certificate yet.
    text = (etc / "qrgate.toml").read_text()
    assert text.startswith("# qrgate configuration, written by `qrgate provision`") and "conf.d/*.toml" in text
    cfg = config.load(etc / "qrgate.toml")
    assert (cfg.device.venue, cfg.device.id, cfg.device.state_dir) == (VENUE, DEVICE, tmp_path / "state")
    assert cfg.camera.source == "picamera"
    assert (cfg.trust.root_key, cfg.trust.list) == (etc / "root.pub", etc / "trustlist.cose")
    assert cfg.authority.public_key is None
    m = cfg.mqtt
    assert (m.enabled, m.host, m.port, m.tls, m.ca, m.cert, m.key) == \
        (True, "broker.example.org", 8883, True, etc / "custodian-ca.pem", None, None)
    assert cfg.passback.secret is None  # no venue secret given: each door remembers only its own visits


def test_the_venue_secret_is_installed_root_only_named_in_the_config_and_kept(capsys, world, pki, etc):
    summary, _, _ = provision(capsys, world, pki, etc, venue_secret=str(world.venue_secret))
    installed = etc / "tls" / "venue.secret"
    assert summary["venue_secret"] == "installed" and str(installed) in summary["written"]
    assert installed.read_bytes() == world.venue_secret.read_bytes()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert config.load(etc / "qrgate.toml").passback.secret == installed
    # Provisioned again without it (a new certificate, another broker): the secret stays, and so does the key.
    summary, _, _ = provision(capsys, world, pki, etc)
    assert summary["venue_secret"] == "kept" and str(installed) not in summary["written"]
    assert config.load(etc / "qrgate.toml").passback.secret == installed
    assert installed.read_bytes() == world.venue_secret.read_bytes()


def test_provision_twice_keeps_the_key_and_writes_the_same_config(capsys, world, pki, etc):
    provision(capsys, world, pki, etc)
    key, text = (etc / "tls" / "device.key").read_bytes(), (etc / "qrgate.toml").read_bytes()
    summary, csr_text, _ = provision(capsys, world, pki, etc)
    assert summary["key"] == "kept" and str(etc / "tls" / "device.key") not in summary["written"]
    assert (etc / "tls" / "device.key").read_bytes() == key
    assert (etc / "qrgate.toml").read_bytes() == text
    csr = x509.load_pem_x509_csr(csr_text.encode())
    assert csr.public_key().public_bytes(**SPKI) == device_key(etc).public_key().public_bytes(**SPKI)


def test_the_port_defaults_to_8883(capsys, world, pki, etc):
    summary, _, _ = provision(capsys, world, pki, etc, broker="mqtts://broker.example.org")
    assert (summary["cn"], summary["broker"]) == ("cafe-1:door-1", "mqtts://broker.example.org:8883")
    assert config.load(etc / "qrgate.toml").mqtt.port == 8883


def test_the_device_id_is_asked_for_not_taken_from_the_images_hostname(capsys, monkeypatch, world, pki, etc):
    # Every device flashed from one image is called `qrgate`: two devices of one id would take over each
    # other's broker session and publish under each other's topic (issue 15, finding 11).
    monkeypatch.setattr("socket.gethostname", lambda: "qrgate")
    code, _, err = run(capsys, args(world, pki, etc, device=None))
    assert code == 2 and "--device" in err
    assert not etc.exists()


def test_provision_refuses_an_authority_key_the_trust_list_does_not_vouch_for(capsys, tmp_path, world, pki, etc):
    signers.new_authority(tmp_path / "stranger")
    code, _, err = run(capsys, args(world, pki, etc, authority_key=str(tmp_path / "stranger" / "authority.pub")))
    stranger = keys.fingerprint(keys.load_authority_public(tmp_path / "stranger"))
    assert code == 2 and "not a key the trust list seq 1 vouches for" in err and stranger in err
    assert not etc.exists()


def test_provision_prints_the_fingerprints_to_read_back_to_the_authority(capsys, world, pki, etc):
    summary, _, err = provision(capsys, world, pki, etc)
    authority = keys.fingerprint(keys.load_authority_public(world.authority_dir))
    assert summary["authority_fingerprint"] == authority and len(authority.replace(" ", "")) == 64
    assert summary["root_fingerprint"] == keys.fingerprint(keys.load_root_public(world.root_dir))
    assert authority in err


def test_a_lab_broker_without_tls_needs_the_explicit_flag(capsys, world, pki, etc):
    code, _, err = run(capsys, args(world, pki, etc, broker="mqtt://127.0.0.1"))
    assert code == 2 and "--insecure-no-tls" in err and not etc.exists()
    summary, _, _ = provision(capsys, world, pki, etc, broker="mqtt://127.0.0.1", ca=None, insecure_no_tls=True)
    assert summary["broker"] == "mqtt://127.0.0.1:1883"
    m = config.load(etc / "qrgate.toml").mqtt
    assert (m.host, m.port, m.tls, m.ca) == ("127.0.0.1", 1883, False, None)


def _another_root_list(tmp_path, world) -> str:
    other = signers.new_root(tmp_path / "other-root")
    path = tmp_path / "other.cose"
    path.write_bytes(signers.build_trust_list(other, [world.naver], seq=2, issued_at=int(time.time())))
    return str(path)


def _expired_list(tmp_path, world) -> str:
    path = tmp_path / "old.cose"
    path.write_bytes(signers.build_trust_list(signers.load_root(world.root_dir), [world.naver], seq=2,
                                     issued_at=int(time.time()) - 40 * 86400, valid_days=30))
    return str(path)


def _ca_with_its_key(tmp_path, pki) -> str:
    path = tmp_path / "ca-and-key.pem"
    path.write_bytes(pki.ca.read_bytes() + pki.key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    return str(path)


def _secret(tmp_path, data: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "given.secret"
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def _garbage(tmp_path) -> str:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate\n")
    return str(path)


REFUSALS = {
    # name: (options replaced, text the one-line error must hold)
    "bad venue id": (lambda t, w, p: {"venue": "cafe/1"}, "--venue 'cafe/1'"),
    "bad device id": (lambda t, w, p: {"device": "door#1"}, "--device 'door#1'"),
    "no host": (lambda t, w, p: {"broker": "mqtts://:8883"}, "no host"),
    "bad port": (lambda t, w, p: {"broker": "mqtts://broker.example.org:99999"}, "not a broker URL"),
    "port not a number": (lambda t, w, p: {"broker": "mqtts://broker.example.org:tls"}, "not a broker URL"),
    "a path": (lambda t, w, p: {"broker": "mqtts://broker.example.org:8883/qrgate"}, "without a path"),
    "a password": (lambda t, w, p: {"broker": "mqtts://u:pw@broker.example.org"}, "no user or password"),
    "wrong scheme": (lambda t, w, p: {"broker": "https://broker.example.org:8883"}, "must be mqtts://"),
    "no scheme": (lambda t, w, p: {"broker": "broker.example.org:8883"}, "must be mqtts://"),
    "plain mqtt": (lambda t, w, p: {"broker": "mqtt://broker.example.org"}, "mqtt:// is neither encrypted"),
    "no --ca": (lambda t, w, p: {"ca": None}, "needs --ca"),
    "CA not a CA": (lambda t, w, p: {"ca": str(p.issue("broker", server=True)[0])}, "is not a CA certificate"),
    "CA expired": (lambda t, w, p: {"ca": str(self_signed_ca(t / "old-ca.pem", days=-1, start_days=-60))},
                   "expired on"),
    "CA not yet valid": (lambda t, w, p: {"ca": str(self_signed_ca(t / "new-ca.pem", start_days=2))},
                         "is not valid before"),
    "CA file with its private key": (lambda t, w, p: {"ca": _ca_with_its_key(t, p)}, "holds a private key"),
    "CA not PEM": (lambda t, w, p: {"ca": _garbage(t)}, "is not a PEM X.509 CA certificate"),
    "CA missing": (lambda t, w, p: {"ca": str(t / "nowhere.pem")}, "cannot read CA certificate"),
    "authority key of the wrong type": (lambda t, w, p: {"authority_key": str(w.root_dir / "root.pub")},
                                        "not a X25519 authority public key"),
    "authority private key": (lambda t, w, p: {"authority_key": str(w.authority_dir / "authority.key")},
                              "is not a PEM X25519 authority public key"),
    "root key of the wrong type": (lambda t, w, p: {"root_key": str(w.authority_dir / "authority.pub")},
                                   "not a Ed25519 root public key"),
    "trust list from another root": (lambda t, w, p: {"trust": _another_root_list(t, w)},
                                     "signed by a different root key"),
    "expired trust list": (lambda t, w, p: {"trust": _expired_list(t, w)}, "expired at"),
    "trust list not COSE": (lambda t, w, p: {"trust": _garbage(t)}, "not a COSE_Sign1"),
    "missing options": (lambda t, w, p: {"venue": None, "trust": None}, "provision needs --venue, --trust"),
    "venue secret others may read": (lambda t, w, p: {"venue_secret": _secret(t, os.urandom(32), 0o644)},
                                     "may be read by others (mode 644); it must be 0600"),
    "venue secret too short": (lambda t, w, p: {"venue_secret": _secret(t, os.urandom(16))},
                               "is 16 bytes, not 32 random bytes"),
    "venue secret of zeros": (lambda t, w, p: {"venue_secret": _secret(t, bytes(32))}, "one byte repeated"),
    "venue secret missing": (lambda t, w, p: {"venue_secret": str(t / "nowhere.secret")},
                             "cannot read the venue secret"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_bad_input_is_refused_before_anything_is_written(case, capsys, tmp_path, world, pki, etc):
    over, expected = REFUSALS[case]
    code, out, err = run(capsys, args(world, pki, etc, **over(tmp_path, world, pki)))
    assert code == 2, err
    assert out == ""
    assert err.startswith("qrgate: error: ") and len(err.strip().splitlines()) == 1
    assert expected in err, err
    assert not etc.exists()  # nothing at all, not even the folder


@pytest.mark.parametrize("case", ["CA expired", "trust list from another root", "bad venue id", "plain mqtt"])
def test_a_refused_reprovisioning_leaves_the_installed_files_as_they_were(case, capsys, tmp_path, world, pki, etc):
    provision(capsys, world, pki, etc)
    before = snapshot(etc)
    over, expected = REFUSALS[case]
    code, _, err = run(capsys, args(world, pki, etc, **over(tmp_path, world, pki)))
    assert code == 2 and expected in err
    assert snapshot(etc) == before


def test_a_conf_d_file_the_new_config_conflicts_with_stops_provision(capsys, world, pki, etc):
    provision(capsys, world, pki, etc)
    (etc / "conf.d").mkdir()
    (etc / "conf.d" / "50-site.toml").write_text("[mqtt]\ncert = \"/somewhere/device.crt\"\n")
    before = snapshot(etc)
    code, _, err = run(capsys, args(world, pki, etc))
    assert code == 2 and "does not load" in err and "mqtt.cert and mqtt.key go together" in err
    assert snapshot(etc) == before


def test_a_conf_d_file_that_renames_the_device_stops_provision(capsys, world, pki, etc):
    (etc / "conf.d").mkdir(parents=True)
    (etc / "conf.d" / "50-site.toml").write_text("[device]\nid = \"door-9\"\n")
    before = snapshot(etc)
    code, _, err = run(capsys, args(world, pki, etc))
    assert code == 2 and "50-site.toml sets device.id" in err
    assert snapshot(etc) == before


def test_an_unreadable_existing_key_is_never_replaced(capsys, world, pki, etc):
    (etc / "tls").mkdir(parents=True)
    (etc / "tls" / "device.key").write_text("not a key\n")
    code, _, err = run(capsys, args(world, pki, etc))
    assert code == 2 and "device.key exists but is not" in err
    assert (etc / "tls" / "device.key").read_text() == "not a key\n"
    assert not (etc / "qrgate.toml").exists()


# --- --install-cert ---------------------------------------------------------------------------------------


def provisioned_csr(capsys, world, pki, etc, **over) -> bytes:
    provision(capsys, world, pki, etc, **over)
    return (etc / "tls" / "device.csr").read_bytes()


def test_install_cert_turns_on_mutual_tls(capsys, tmp_path, world, pki, etc):
    cert = tmp_path / "from-the-ca.crt"
    cert.write_bytes(sign(pki, provisioned_csr(capsys, world, pki, etc)))
    code, out, err = run(capsys, ["provision", "--install-cert", str(cert), "--etc", str(etc)])
    assert code == 0, err
    result = json.loads(out)
    assert (result["installed"], result["cn"], result["config"]) == \
        (str(etc / "tls" / "device.crt"), CN, str(etc / "qrgate.toml"))
    assert "systemctl restart qrgate" in err
    assert (etc / "tls" / "device.crt").read_bytes() == cert.read_bytes()
    assert stat.S_IMODE((etc / "tls" / "device.crt").stat().st_mode) == 0o644
    cfg = config.load(etc / "qrgate.toml")
    assert (cfg.mqtt.cert, cfg.mqtt.key) == (etc / "tls" / "device.crt", etc / "tls" / "device.key")
    assert (cfg.device.venue, cfg.device.id, cfg.mqtt.host) == (VENUE, DEVICE, "broker.example.org")
    assert "Mutual TLS" in (etc / "qrgate.toml").read_text()

    # Twice with the same certificate: the same files.
    before = snapshot(etc)
    code, _, err = run(capsys, ["provision", "--install-cert", str(cert), "--etc", str(etc)])
    assert code == 0, err
    assert snapshot(etc) == before

    # Provisioning again keeps the certificate, which still fits the key, the CA and the CN.
    summary, _, err = provision(capsys, world, pki, etc)
    assert summary["certificate"] == str(etc / "tls" / "device.crt") and "still fits" in err
    assert snapshot(etc) == before | {"tls/device.csr": snapshot(etc)["tls/device.csr"]}

    # ... but not once the device has another name: the config leaves the certificate out.
    summary, _, err = provision(capsys, world, pki, etc, device="door-2")
    assert summary["certificate"] is None and "no longer fits" in err and "'cafe-1:door-2'" in err
    assert config.load(etc / "qrgate.toml").mqtt.cert is None


def test_install_cert_keeps_local_keys_of_the_main_file(capsys, tmp_path, world, pki, etc):
    csr = provisioned_csr(capsys, world, pki, etc)
    with (etc / "qrgate.toml").open("a") as f:
        f.write("\n[gpio]\ndoor_enabled = true\n")
    cert = tmp_path / "device.crt"
    cert.write_bytes(sign(pki, csr))
    assert cli.main(["provision", "--install-cert", str(cert), "--etc", str(etc)]) == 0
    cfg = config.load(etc / "qrgate.toml")
    assert cfg.gpio.door_enabled and cfg.mqtt.cert == etc / "tls" / "device.crt"


def _same_name_other_ca(tmp_path, pki, csr) -> bytes:
    """Another CA that calls itself "custodian CA" too: the name matches, the signature does not."""
    return sign(Pki(tmp_path / "impostor"), csr)


CERT_REFUSALS = {
    "a cert for another key": (lambda t, p, csr: sign(p, csr, key=ec.generate_private_key(ec.SECP256R1())),
                               "is for another key"),
    "a cert from another CA": (_same_name_other_ca, "does not verify with the installed CA"),
    "a cert from a CA of another name": (lambda t, p, csr: sign(_renamed(p, t), csr), "not by the installed CA"),
    "an expired cert": (lambda t, p, csr: sign(p, csr, days=-1, start_days=-30), "expired on"),
    "a cert not yet valid": (lambda t, p, csr: sign(p, csr, start_days=1), "is not valid before"),
    "a wrong CN": (lambda t, p, csr: sign(p, csr, cn="cafe-1:door-2"), "its subject CN is 'cafe-1:door-2'"),
    "the old CN convention": (lambda t, p, csr: sign(p, csr, cn="qrgate-cafe-1-door-1"), "ACL (user cafe-1:door-1)"),
    "a server certificate": (lambda t, p, csr: sign(p, csr, eku=ExtendedKeyUsageOID.SERVER_AUTH), "lacks clientAuth"),
    "not PEM": (lambda t, p, csr: b"junk\n", "is not a PEM X.509 device certificate"),
    "with a private key": (lambda t, p, csr: sign(p, csr) + p.key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), "holds a private key"),
    "two certificates": (lambda t, p, csr: sign(p, csr) + p.ca.read_bytes(), "holds 2 certificates"),
}


def _renamed(pki: Pki, tmp_path: Path) -> Pki:
    other = Pki(tmp_path / "renamed")
    now = NOW()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    other.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(other.key.public_key())
                  .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                  .not_valid_after(now + datetime.timedelta(days=1))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .sign(other.key, hashes.SHA256()))
    return other


@pytest.mark.parametrize("case", sorted(CERT_REFUSALS))
def test_install_cert_refuses_a_certificate_the_broker_would_not_take(case, capsys, tmp_path, world, pki, etc):
    make, expected = CERT_REFUSALS[case]
    csr = provisioned_csr(capsys, world, pki, etc)
    cert = tmp_path / "device.crt"
    cert.write_bytes(make(tmp_path, pki, csr))
    before = snapshot(etc)
    code, out, err = run(capsys, ["provision", "--install-cert", str(cert), "--etc", str(etc)])
    assert code == 2 and out == ""
    assert err.startswith("qrgate: error: ") and len(err.strip().splitlines()) == 1
    assert expected in err, err
    assert snapshot(etc) == before
    assert not (etc / "tls" / "device.crt").exists()


def test_install_cert_before_provisioning_says_what_to_do(capsys, tmp_path, pki, etc):
    code, _, err = run(capsys, ["provision", "--install-cert", str(pki.ca), "--etc", str(etc)])
    assert code == 2 and "run `qrgate provision --venue ID" in err
    assert not etc.exists()


def test_install_cert_takes_no_provision_options(capsys, tmp_path, pki, etc):
    code, _, err = run(capsys, ["provision", "--install-cert", str(pki.ca), "--venue", "x", "--etc", str(etc)])
    assert code == 2 and "--install-cert takes only --etc, not --venue" in err


# --- --generate-key ----------------------------------------------------------------------------------------


def test_generate_key_makes_the_key_once(capsys, etc):
    code, out, err = run(capsys, ["provision", "--generate-key", "--etc", str(etc)])
    assert code == 0, err
    assert json.loads(out) == {"key": "generated", "key_path": str(etc / "tls" / "device.key")}
    key = (etc / "tls" / "device.key").read_bytes()
    assert stat.S_IMODE((etc / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE((etc / "tls" / "device.key").stat().st_mode) == 0o600
    assert isinstance(device_key(etc), ec.EllipticCurvePrivateKey)
    assert sorted(str(p.relative_to(etc)) for p in etc.rglob("*")) == ["tls", "tls/device.key"]

    (etc / "tls" / "device.key").chmod(0o644)  # loosened by hand: put back
    code, out, _ = run(capsys, ["provision", "--generate-key", "--etc", str(etc)])
    assert code == 0 and json.loads(out)["key"] == "kept"
    assert (etc / "tls" / "device.key").read_bytes() == key
    assert stat.S_IMODE((etc / "tls" / "device.key").stat().st_mode) == 0o600


def test_provision_keeps_the_key_made_at_first_boot(capsys, world, pki, etc):
    assert cli.main(["provision", "--generate-key", "--etc", str(etc)]) == 0
    capsys.readouterr()
    key = (etc / "tls" / "device.key").read_bytes()
    summary, _, _ = provision(capsys, world, pki, etc)
    assert summary["key"] == "kept" and (etc / "tls" / "device.key").read_bytes() == key


# --- end to end: the provisioned key and certificate at a broker that requires client certificates ----------


def test_a_provisioned_device_connects_with_mutual_tls_and_may_publish_under_its_topic(capsys, tmp_path, world, pki,
                                                                                       etc):
    acl = tmp_path / "acl"
    acl.write_text(f"user {CN}\ntopic write qrgate/v1/{VENUE}/{DEVICE}/#\n")  # the custodian's ACL for this device
    with Mosquitto(tmp_path / "tls-broker", extra=pki.broker_config(acl)) as broker:
        csr = provisioned_csr(capsys, world, pki, etc, broker=f"mqtts://127.0.0.1:{broker.port}")

        def uplink(cfg: config.Config) -> MqttUplink:
            m = cfg.mqtt
            return MqttUplink(m.host, m.port, client_id=f"qrgate-{cfg.device.venue}-{cfg.device.id}",
                              tls=Tls(m.ca, m.cert, m.key))

        # Before the certificate: the broker turns the device away (it scans and keeps records meanwhile).
        before = uplink(config.load(etc / "qrgate.toml"))
        before.start()
        try:
            wait_until(lambda: "peer did not return a certificate" in broker.log_tail(50), 15)
            assert not before.connected.is_set()
        finally:
            before.stop()

        cert = tmp_path / "device.crt"
        cert.write_bytes(sign(pki, csr))
        assert cli.main(["provision", "--install-cert", str(cert), "--etc", str(etc)]) == 0
        cfg = config.load(etc / "qrgate.toml")
        assert (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", broker.port)
        device = uplink(cfg)
        device.start()
        try:
            assert device.connected.wait(15), broker.log_tail(30)
            acks: list[tuple[bool, str]] = []
            done = threading.Event()
            for topic in (f"qrgate/v1/{VENUE}/{DEVICE}/visits", f"qrgate/v1/{VENUE}/door-2/visits"):
                assert device.publish(topic, b"x", on_ack=lambda ok, why: (acks.append((ok, why)),
                                                                           len(acks) == 2 and done.set()))
            assert done.wait(15), acks
        finally:
            device.stop()
    assert acks[0] == (True, "")  # its own topic: the ACL knows it by the CN "cafe-1:door-1"
    assert acks[1][0] is False  # another device's topic: refused
    assert f"u'{CN}'" in broker.log_tail(400)
