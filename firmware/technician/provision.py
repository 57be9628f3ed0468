"""`qrgate provision`: a technician makes this device one of the custodian's, over SSH, with sudo.

Three modes:

- `qrgate provision --venue ID --broker mqtts://HOST[:PORT] --ca FILE --authority-key FILE --root-key FILE
  --trust FILE --device ID [--etc DIR] [--state-dir DIR]` checks every input first (ids, the URL, the
  custodian CA, the authority and root public keys, the trust list against that root), and only then
  installs copies of the CA, keys and trust list in the config folder, makes the device key if there is
  none (ECDSA P-256, on the device, mode 0600 in a 0700 folder; an existing key is kept), writes a CSR for
  the certificate CN "<venue>:<device>" and the config, and prints the CSR for the custodian's CA.
  With `--venue-secret FILE` (32 random bytes, mode 0600, the same file on every device of the venue) it
  also installs the venue secret beside the key (tls/venue.secret, 0600) and names it in the config, so
  that the venue's doors share the tokens they accept (firmware.passback); an installed one is kept.
- `qrgate provision --install-cert FILE [--etc DIR]` checks the certificate the CA sent back (this device's
  key, issued by the installed CA, valid now, for TLS clients, the CN of the installed config) and adds it
  to the config: from the next start the daemon connects with mutual TLS.
- `qrgate provision --generate-key [--etc DIR]` only makes the key when it is missing (the image's
  first-boot unit).

Each file is replaced atomically, and the config last: it is written beside the old one, loaded back with
`config.load` (conf.d drop-ins included) and only then renamed over it, so a refused input or a config the
daemon would refuse changes nothing. Nothing is ever given to the user behind sudo: what is written as
root stays root's (the daemon gets its key through systemd's LoadCredential), the private key never
leaves the device and is never printed.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware import config, keys, paths
from firmware.errors import QrgateError, TrustListError
from firmware.passback import secret as venue_secret
from firmware.store.statefiles import fsync_dir, write_atomic
from firmware.tokens import trustlist
from firmware.utc import iso

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

DEFAULT_ETC = paths.ETC
DEFAULT_STATE_DIR = paths.STATE_DIR
MQTTS_PORT, MQTT_PORT = 8883, 1883

DeviceKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_PEM = serialization.Encoding.PEM
_SPKI: dict[str, Any] = dict(encoding=serialization.Encoding.DER,
                             format=serialization.PublicFormat.SubjectPublicKeyInfo)
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\.?$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Layout:
    """Where provisioning puts things in the config folder (/etc/qrgate on a device)."""

    etc: Path

    config = property(lambda self: self.etc / "qrgate.toml")
    ca = property(lambda self: self.etc / "custodian-ca.pem")
    root = property(lambda self: self.etc / "root.pub")
    trust = property(lambda self: self.etc / "trustlist.cose")
    tls = property(lambda self: self.etc / "tls")
    key = property(lambda self: self.etc / "tls" / "device.key")
    csr = property(lambda self: self.etc / "tls" / "device.csr")
    cert = property(lambda self: self.etc / "tls" / "device.crt")
    venue_secret = property(lambda self: self.etc / "tls" / "venue.secret")


def common_name(venue: str, device: str) -> str:
    """The device's certificate CN, which the broker takes as its username (use_identity_as_username)."""
    return f"{venue}:{device}"


# --- checking the inputs ---------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise QrgateError(f"cannot read {what} {path}: {exc.strerror}") from None


def topic_level(value: str, option: str) -> str:
    if not config.TOPIC_LEVEL.fullmatch(value):
        raise QrgateError(f"{option} {value!r}: an id is 1-64 letters, digits, '.', '_' or '-' "
                          "(it is an MQTT topic level and part of the certificate's CN)")
    return value


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker(url: str, insecure: bool = False) -> Broker:
    """mqtts://HOST[:PORT] (port 8883 by default); mqtt:// only with --insecure-no-tls, for a lab."""
    where = f"--broker {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise QrgateError(f"{where}: not a broker URL ({exc}); expected mqtts://HOST:PORT") from None
    scheme = parts.scheme.lower()
    if scheme == "mqtt" and not insecure:
        raise QrgateError(f"{where}: mqtt:// is neither encrypted nor authenticated; use mqtts://HOST:PORT "
                          "(or add --insecure-no-tls, for a lab only)")
    if scheme == "mqtts" and insecure:
        raise QrgateError(f"{where}: --insecure-no-tls goes only with an mqtt:// URL")
    if scheme not in ("mqtt", "mqtts"):
        raise QrgateError(f"{where}: the scheme must be mqtts:// (expected mqtts://HOST:PORT)")
    if parts.username is not None or parts.password is not None:
        raise QrgateError(f"{where}: no user or password in the URL: the device logs in with its certificate")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise QrgateError(f"{where}: only mqtts://HOST:PORT, without a path, query or fragment")
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise QrgateError(f"{where}: {host!r} is not a host name or IP address" if host
                              else f"{where}: no host; expected mqtts://HOST:PORT") from None
    tls = scheme == "mqtts"
    if port is None:
        port = MQTTS_PORT if tls else MQTT_PORT
    if not 1 <= port <= 65535:
        raise QrgateError(f"{where}: port {port} is outside 1..65535")
    return Broker(host, port, tls)


E = TypeVar("E", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, cls: type[E], source: str) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise QrgateError(f"{source}: its extensions do not parse: {exc}") from None


def _check_valid_now(cert: x509.Certificate, now: datetime.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise QrgateError(f"{what} is not valid before {iso(cert.not_valid_before_utc)} (this device's clock says "
                          f"{iso(now)}: is it synchronised?)")
    if now > cert.not_valid_after_utc:
        raise QrgateError(f"{what} expired on {iso(cert.not_valid_after_utc)}")


def _certificates(data: bytes, path: Path, what: str) -> list[x509.Certificate]:
    if b"PRIVATE KEY" in data:
        raise QrgateError(f"{path} holds a private key: give only the {what} (no private key goes in this file)")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise QrgateError(f"{path} is not a PEM X.509 {what}") from None


def load_ca(path: Path, now: datetime.datetime) -> list[x509.Certificate]:
    """The custodian CA: one or more PEM certificates, each a CA and valid now."""
    certs = _certificates(_read(path, "CA certificate"), path, "CA certificate")
    for cert in certs:
        what = f"{path}: CA certificate {cert.subject.rfc4514_string()!r}"
        bc = _extension(cert, x509.BasicConstraints, str(path))
        if bc is None or not bc.ca:
            raise QrgateError(f"{what} is not a CA certificate (no basicConstraints CA:TRUE): give the custodian "
                              "CA's own certificate, not a broker's or a device's")
        usage = _extension(cert, x509.KeyUsage, str(path))
        if usage is not None and not usage.key_cert_sign:
            raise QrgateError(f"{what} may not sign certificates (its keyUsage lacks keyCertSign)")
        _check_valid_now(cert, now, what)
    return certs


def load_trust(path: Path, root: Ed25519PublicKey, now: float) -> trustlist.TrustList:
    try:
        tl = trustlist.parse(trustlist.read_file(path), root)
    except OSError as exc:
        raise QrgateError(f"cannot read trust list {path}: {exc.strerror}") from None
    except TrustListError as exc:
        raise QrgateError(f"{path}: {exc} (checked against --root-key)") from None
    if tl.expired(now):
        raise QrgateError(f"{path}: trust list seq {tl.seq} expired at {iso(tl.not_after)}; "
                          "ask the authority for a current one")
    return tl


def load_device_key(path: Path) -> DeviceKey:
    data = _read(path, "device key")
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise QrgateError(f"{path} exists but is not an unencrypted PEM ECDSA or RSA private key; move it away "
                          "to let provision make a new one (a certificate for the old key then stops working)")
    return key


def _same_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    return a.public_bytes(**_SPKI) == b.public_bytes(**_SPKI)


def check_certificate(data: bytes, source: Path, key: DeviceKey, key_path: Path, cas: list[x509.Certificate],
                      ca_path: Path, cn: str, now: datetime.datetime) -> x509.Certificate:
    """The device certificate: for `key`, directly issued by one of `cas`, valid now, for TLS clients, CN `cn`."""
    certs = _certificates(data, source, "device certificate")
    if len(certs) != 1:
        raise QrgateError(f"{source} holds {len(certs)} certificates: give only this device's own certificate")
    cert = certs[0]
    if not _same_key(cert.public_key(), key.public_key()):
        raise QrgateError(f"{source} is for another key, not this device's {key_path}: was it made from this "
                          f"device's CSR ({key_path.with_name('device.csr')})?")
    issuers = [ca for ca in cas if ca.subject == cert.issuer]
    if not issuers:
        names = ", ".join(repr(ca.subject.rfc4514_string()) for ca in cas)
        raise QrgateError(f"{source} was issued by {cert.issuer.rfc4514_string()!r}, not by the installed CA "
                          f"{ca_path} ({names})")
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    else:
        raise QrgateError(f"{source} names {cert.issuer.rfc4514_string()!r} as its issuer, but its signature does "
                          f"not verify with the installed CA {ca_path}: it comes from another CA")
    _check_valid_now(cert, now, f"{source}: the certificate")
    bc = _extension(cert, x509.BasicConstraints, str(source))
    if bc is not None and bc.ca:
        raise QrgateError(f"{source} is a CA certificate, not a device's")
    eku = _extension(cert, x509.ExtendedKeyUsage, str(source))
    if eku is not None and not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku):
        raise QrgateError(f"{source} is not for TLS clients (its extendedKeyUsage lacks clientAuth): the broker "
                          "would refuse it")
    usage = _extension(cert, x509.KeyUsage, str(source))
    if usage is not None and not usage.digital_signature:
        raise QrgateError(f"{source}: its keyUsage lacks digitalSignature, which a TLS client key needs")
    got = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if got != [cn]:
        shown = repr(got[0]) if len(got) == 1 else f"{len(got)} CNs {got!r}"
        raise QrgateError(f"{source}: its subject CN is {shown}, not {cn!r}: the broker knows a device by its "
                          f"certificate's CN, and its ACL (user {cn}) would refuse every publish")
    return cert


def make_csr(key: DeviceKey, cn: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(_PEM)


# --- writing ------------------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """A new file with exactly `mode` (whatever the umask), written and fsynced, owned by whoever runs this."""
    try:
        path.unlink()  # a leftover of an interrupted run
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.provision-tmp")


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write `path` only if it does not exist, atomically; False when it appeared meanwhile (kept as it is)."""
    tmp = _tmp(path)
    _write_new(tmp, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _make_folders(layout: Layout) -> None:
    if not layout.etc.is_dir():
        layout.etc.mkdir(parents=True, mode=0o755)
        os.chmod(layout.etc, 0o755)
    if layout.tls.is_symlink():
        raise QrgateError(f"{layout.tls} is a symbolic link; the key folder must be a real folder")
    layout.tls.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0 and layout.tls.stat().st_uid != 0:
        os.chown(layout.tls, 0, 0)  # the key folder stays root's, never the sudo user's
    os.chmod(layout.tls, 0o700)


def ensure_key(layout: Layout) -> tuple[DeviceKey, str]:
    """The device key, made here when missing: (key, "generated" | "kept")."""
    _make_folders(layout)
    if not layout.key.exists() and not layout.key.is_symlink():
        key: DeviceKey = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        if _create_exclusive(layout.key, pem, 0o600):
            return key, "generated"
    key = load_device_key(layout.key)
    if os.geteuid() == 0 and layout.key.stat().st_uid != 0:
        os.chown(layout.key, 0, 0)
    os.chmod(layout.key, 0o600)
    return key, "kept"


# --- the config file ------------------------------------------------------------------------------

HEADER = """\
# qrgate configuration, written by `qrgate provision` (and rewritten by
# `qrgate provision --install-cert`). Running provision again replaces this file.
# Local changes belong in conf.d/*.toml beside it: each file there, in name
# order, overrides this one key by key (for example conf.d/50-door.toml holding
# [gpio] and door_enabled = true). Check the result: qrgate config check.
"""

COMMENTS = {
    "device": "# venue and id are this device's MQTT topic levels; its certificate's CN is \"venue:id\".",
    "trust": "# The root key checks every trust list; the list here is installed at start when newer.",
    "passback": "# The venue's doors share the hashes of the tokens they accept under this secret (anti-passback).",
}
MQTT_NO_CERT = ("# No client certificate yet: until `qrgate provision --install-cert FILE` adds cert and key,\n"
                "# a broker that requires one turns this device away, and visits wait on the card.")
MQTT_CERT = "# Mutual TLS: the broker knows this device by its certificate's CN ({cn})."
MQTT_NO_TLS = "# Without TLS (provisioned with --insecure-no-tls): for a lab only."


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else config.toml_value(k)


def _toml_value(v: object, where: str) -> str:
    try:
        return config.toml_value(v)
    except TypeError:
        raise QrgateError(f"{where}: a value provision cannot rewrite ({type(v).__name__}); "
                          "move it to a conf.d/*.toml file") from None


def render(doc: dict[str, dict[str, Any]], cn: str, source: str = "qrgate.toml") -> str:
    """The config as readable TOML: the header, then each section with a line saying what it is."""
    lines = [HEADER.rstrip("\n")]
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise QrgateError(f"{source}: {section} is not a table; move it to a conf.d/*.toml file")
        lines.append("")
        comment = COMMENTS.get(section)
        if section == "mqtt":
            if table.get("tls", True) is False:
                comment = MQTT_NO_TLS
            elif "cert" in table:
                comment = MQTT_CERT.format(cn=cn)
            else:
                comment = MQTT_NO_CERT
        if comment:
            lines.append(comment)
        lines.append(f"[{_toml_key(section)}]")
        for key, value in table.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value, f'{source}: {section}.{key}')}")
    return "\n".join(lines) + "\n"


def config_doc(layout: Layout, venue: str, device: str, state_dir: Path, broker: Broker,
               ca: bool, cert: bool, secret: bool = False) -> dict[str, dict[str, Any]]:
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "tls": broker.tls}
    if ca:
        mqtt["ca"] = str(layout.ca)
    if cert:
        mqtt.update(cert=str(layout.cert), key=str(layout.key))
    doc: dict[str, dict[str, Any]] = {
        "device": {"venue": venue, "id": device, "state_dir": str(state_dir)},
        "camera": {"source": "picamera"},
        "trust": {"root_key": str(layout.root), "list": str(layout.trust)},
        "mqtt": mqtt,
    }
    if secret:
        doc["passback"] = {"secret": str(layout.venue_secret)}
    return doc


def _with_cert(mqtt: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """The [mqtt] table with cert and key set, placed right after ca."""
    out: dict[str, Any] = {}
    for key, value in mqtt.items():
        if key in ("cert", "key"):
            continue
        out[key] = value
        if key == "ca":
            out.update(cert=str(layout.cert), key=str(layout.key))
    out.setdefault("cert", str(layout.cert))
    out.setdefault("key", str(layout.key))
    return out


def stage_config(layout: Layout, text: str) -> tuple[Path, config.Loaded]:
    """Write the new config beside the old one and load it as the daemon would (conf.d included)."""
    tmp = _tmp(layout.config)
    _write_new(tmp, text.encode(), 0o644)
    try:
        loaded = config.load_layers(tmp)
    except QrgateError as exc:
        tmp.unlink(missing_ok=True)
        message = str(exc).replace(str(tmp), str(layout.config))
        raise QrgateError(f"the config provision would write does not load, nothing was changed: {message}") from None
    return tmp, loaded


def _commit_config(tmp: Path, layout: Layout) -> None:
    os.replace(tmp, layout.config)
    fsync_dir(layout.etc)


def _check_identity(loaded: config.Loaded, venue: str, device: str, tmp: Path) -> None:
    """A conf.d drop-in overriding the ids would make the topics disagree with the certificate's CN."""
    for key, want in (("device.venue", venue), ("device.id", device)):
        origin = loaded.origins.get(key, "")
        if origin and origin != str(tmp):
            tmp.unlink(missing_ok=True)
            raise QrgateError(f"{origin} sets {key}; the topics would then disagree with the certificate's CN "
                              f"{common_name(venue, device)!r}: remove it from conf.d and run provision again")


# --- the commands -----------------------------------------------------------------------------------

PROVISION_ONLY = ("venue", "device", "broker", "ca", "authority_key", "root_key", "trust", "state_dir",
                  "insecure_no_tls", "venue_secret")
# --device has no default: every image has the same hostname, and two devices of one name take over each
# other's broker session and topics.
REQUIRED = ("venue", "device", "broker", "authority_key", "root_key", "trust")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _now() -> tuple[datetime.datetime, float]:
    t = time.time()
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc), t


def provision(args: argparse.Namespace) -> int:
    missing = [_option(d) for d in REQUIRED if getattr(args, d) is None]
    if missing:
        raise QrgateError(f"provision needs {', '.join(missing)} (or --install-cert FILE, or --generate-key)")
    now, now_ts = _now()
    layout = Layout(Path(args.etc).absolute())
    venue = topic_level(args.venue, "--venue")
    device = topic_level(args.device, "--device")
    cn = common_name(venue, device)
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR).absolute()
    broker = parse_broker(args.broker, args.insecure_no_tls)
    if broker.tls and args.ca is None:
        raise QrgateError("provision needs --ca FILE (the custodian CA's certificate) with an mqtts:// broker")
    cas = load_ca(args.ca, now) if args.ca is not None else None
    authority = keys.load_authority_public(args.authority_key)
    root = keys.load_root_public(args.root_key)
    tl = load_trust(args.trust, root, now_ts)
    if not tl.names_authority(authority, now_ts):
        raise QrgateError(f"--authority-key {args.authority_key} (fingerprint {keys.fingerprint(authority)}) is not "
                          f"a key the trust list seq {tl.seq} vouches for: visits sealed to it could be opened by "
                          "someone other than the health authority; ask the authority for its key and a current list")
    if layout.etc.exists() and not layout.etc.is_dir():
        raise QrgateError(f"--etc {layout.etc} is not a folder")
    # The venue secret: checked as a key file (a regular file only its owner reads, 32 random bytes).
    secret = venue_secret.read(args.venue_secret) if args.venue_secret is not None else None
    secret_how = "installed" if secret is not None else "kept" if layout.venue_secret.is_file() else None

    # An existing key and certificate are kept: the certificate only while it still fits the key, CA and CN.
    old_key = load_device_key(layout.key) if layout.key.exists() else None
    cert_kept, cert_note = False, None
    if old_key is not None and cas is not None and broker.tls and layout.cert.exists():
        try:
            check_certificate(_read(layout.cert, "certificate"), layout.cert, old_key, layout.key, cas,
                              Path(args.ca), cn, now)
            cert_kept = True
        except QrgateError as exc:
            cert_note = str(exc)

    text = render(config_doc(layout, venue, device, state_dir, broker, ca=cas is not None, cert=cert_kept,
                             secret=secret_how is not None), cn, str(layout.config))
    public_pem: Callable[[Ed25519PublicKey], bytes] = \
        lambda k: k.public_bytes(_PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # noqa: E731
    files = []
    if cas is not None:
        files.append((layout.ca, b"".join(c.public_bytes(_PEM) for c in cas)))
    files += [(layout.root, public_pem(root)), (layout.trust, tl.raw)]

    if not layout.etc.is_dir():
        layout.etc.mkdir(parents=True, mode=0o755)
        os.chmod(layout.etc, 0o755)
    tmp, loaded = stage_config(layout, text)
    try:
        _check_identity(loaded, venue, device, tmp)
        _make_folders(layout)
        for path, data in files:
            write_atomic(path, data)
        if secret is not None:
            write_atomic(layout.venue_secret, secret, mode=0o600)
        key, how = ensure_key(layout)
        csr = make_csr(key, cn)
        write_atomic(layout.csr, csr)
        _commit_config(tmp, layout)
    finally:
        tmp.unlink(missing_ok=True)

    summary = {
        "venue": venue, "device": device, "cn": cn, "broker": broker.url, "etc": str(layout.etc),
        "written": [str(p) for p, _ in files] + [str(layout.venue_secret)] * (secret is not None)
                   + [str(layout.key)] * (how == "generated") + [str(layout.csr), str(layout.config)],
        "key": how, "key_path": str(layout.key), "csr": str(layout.csr),
        "certificate": str(layout.cert) if cert_kept else None, "trust_seq": tl.seq,
        "authority_fingerprint": keys.fingerprint(authority), "root_fingerprint": keys.fingerprint(root),
        "venue_secret": secret_how,
    }
    print(json.dumps(summary), flush=True)
    sys.stdout.write(csr.decode())
    sys.stdout.flush()
    print(f"qrgate: read these back to the health authority: authority key {keys.fingerprint(authority)}, root key "
          f"{keys.fingerprint(root)}", file=sys.stderr)
    if cert_note is not None:
        print(f"qrgate: warning: the installed certificate {layout.cert} no longer fits ({cert_note}); the config "
              "leaves it out until a new one is installed", file=sys.stderr)
    if cert_kept:
        print(f"qrgate: the installed certificate {layout.cert} still fits; restart the daemon to use this config: "
              "sudo systemctl restart qrgate", file=sys.stderr)
    else:
        print(f"qrgate: send the CSR above (also in {layout.csr}) to the custodian's CA for a TLS client certificate "
              f"with CN {cn}, then run: sudo qrgate provision --install-cert FILE", file=sys.stderr)
    return 0


def install_cert(args: argparse.Namespace) -> int:
    now, _ = _now()
    layout = Layout(Path(args.etc).absolute())
    if not layout.config.exists():
        raise QrgateError(f"no {layout.config}: run `qrgate provision --venue ID …` first")
    cfg = config.load_layers(layout.config).config
    if not (cfg.mqtt.enabled and cfg.mqtt.tls):
        raise QrgateError(f"{layout.config}: mqtt is {'not enabled' if not cfg.mqtt.enabled else 'without TLS'}, "
                          "so a client certificate would not be used")
    if not layout.key.exists():
        raise QrgateError(f"no device key {layout.key}: run `qrgate provision` first")
    key = load_device_key(layout.key)
    cas = load_ca(layout.ca, now)
    cn = common_name(cfg.device.venue, cfg.device.id)
    source = Path(args.install_cert)
    data = _read(source, "certificate")
    cert = check_certificate(data, source, key, layout.key, cas, layout.ca, cn, now)
    try:
        doc = tomllib.loads(layout.config.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # config.load read it a moment ago
        raise QrgateError(f"{layout.config}: cannot read it back: {exc}") from None
    mqtt = doc.get("mqtt", {})
    if not isinstance(mqtt, dict):
        raise QrgateError(f"{layout.config}: [mqtt] must be a table")
    doc["mqtt"] = _with_cert(mqtt, layout)
    text = render(doc, cn, str(layout.config))

    tmp, _ = stage_config(layout, text)
    try:
        write_atomic(layout.cert, cert.public_bytes(_PEM))
        _commit_config(tmp, layout)
    finally:
        tmp.unlink(missing_ok=True)
    print(json.dumps({"installed": str(layout.cert), "cn": cn, "issuer": cert.issuer.rfc4514_string(),
                      "not_after": iso(cert.not_valid_after_utc), "config": str(layout.config)}), flush=True)
    print("qrgate: restart the daemon to connect with mutual TLS: sudo systemctl restart qrgate", file=sys.stderr)
    return 0


def generate_key(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.etc).absolute())
    _, how = ensure_key(layout)
    print(json.dumps({"key": how, "key_path": str(layout.key)}), flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    if args.install_cert is not None or args.generate_key:
        mode = "--install-cert" if args.install_cert is not None else "--generate-key"
        extra = [_option(d) for d in PROVISION_ONLY if getattr(args, d) not in (None, False)]
        if extra:
            raise QrgateError(f"{mode} takes only --etc, not {', '.join(extra)}")
    try:
        if args.install_cert is not None:
            return install_cert(args)
        if args.generate_key:
            return generate_key(args)
        return provision(args)
    except PermissionError as exc:
        raise QrgateError(f"cannot write {exc.filename}: permission denied (run it with sudo)") from None
