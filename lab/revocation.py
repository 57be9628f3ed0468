"""The authority's side of DCC revocation lists: build one from the EU's entries, write it, publish it.

Entries come as JSON lines, one per EU entry: {"kid": …, "type": "UCI" |
"COUNTRYCODEUCI" | "SIGNATURE", "hash": …}, the kid as 16 hex digits or base64
(as the EU gateway gives it), the hash (16 bytes) as 32 hex digits or base64.
Each becomes the device's 8-byte key (firmware.revocation.hashes.key); the keys,
sorted and unique, are split into 2^bits buckets by their top bits, bits the
fewest that leave every bucket at most half a body (room to grow before a list
has to be split anew), and the root signs the manifest naming each bucket's
count and SHA-256 (firmware.revocation.manifest). A list is a folder:
`manifest.cose` and each body under the hex of its SHA-256, which is what
`qrgate trust revocation install DIR` reads and `publish` sends: each body
retained on qrgate/v1/trust/revocation/<hex>, then the manifest retained on
qrgate/v1/trust/revocation, then the previous list's bodies that the new one no
longer names cleared from the broker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.errors import QrgateError
from firmware.keys import kid_of
from firmware.revocation import manifest as manifests
from firmware.revocation.hashes import HASH_BYTES, KEY_BYTES, HashType, key
from firmware.revocation.store import MANIFEST
from firmware.store.statefiles import write_atomic
from firmware.tokens import cose
from firmware.uplink import topics

_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class Entry:
    kind: HashType
    kid: bytes
    digest: bytes

    @property
    def key(self) -> int:
        return key(self.kind, self.kid, self.digest)

    def as_json(self) -> dict[str, str]:
        """The input line this entry is read from: the kid in base64, as the EU gateway writes it."""
        return {"kid": base64.b64encode(self.kid).decode("ascii"), "type": self.kind.name, "hash": self.digest.hex()}


@dataclass(frozen=True)
class RevocationList:
    manifest: bytes
    bodies: dict[str, bytes]  # by the hex of each one's SHA-256

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, body in self.bodies.items():
            write_atomic(folder / name, body)
        write_atomic(folder / MANIFEST, self.manifest)
        return folder


def _bytes(text: object, hex_digits: int, what: str) -> bytes:
    """Hex when it is exactly `hex_digits` hex digits, else base64: the base64 of those bytes is shorter."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    if len(text) == hex_digits and _HEX.fullmatch(text):
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is neither {hex_digits} hex digits nor base64") from None


def entry(obj: object) -> Entry:
    if not isinstance(obj, dict) or set(obj) != {"kid", "type", "hash"}:
        raise ValueError('an entry is {"kid": …, "type": …, "hash": …}, nothing else')
    try:
        kind = HashType[obj["type"]]
    except (KeyError, TypeError):
        raise ValueError(f"type is one of {', '.join(t.name for t in HashType)}") from None
    kid = _bytes(obj["kid"], 16, "kid")
    digest = _bytes(obj["hash"], 2 * HASH_BYTES, "hash")
    if not 0 < len(kid) <= 32:
        raise ValueError("kid is 1 to 32 bytes")
    if len(digest) != HASH_BYTES:
        raise ValueError(f"hash is {HASH_BYTES} bytes (the first 128 bits of the SHA-256)")
    return Entry(kind, kid, digest)


def read_entries(lines: Iterable[str], source: str = "entries") -> Iterator[Entry]:
    """The entries of JSON lines (blank lines skipped); QrgateError naming the line of the first bad one."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield entry(json.loads(line))
        except ValueError as exc:  # json's errors are ValueErrors too
            raise QrgateError(f"{source} line {number}: {exc}") from None


def sorted_keys(entries: Iterable[Entry]) -> np.ndarray:
    """Every entry's key, sorted, each once (as native uint64)."""
    packed = bytearray()
    for e in entries:
        packed += e.key.to_bytes(KEY_BYTES, "big")
    return np.unique(np.frombuffer(bytes(packed), ">u8").astype(np.uint64))


def choose_bits(keys: np.ndarray) -> int:
    """The fewest bits that leave every bucket at most half a body; QrgateError when 2^MAX_BITS buckets are too few."""
    for bits in range(manifests.MAX_BITS + 1):
        if int(np.max(_counts(keys, bits), initial=0)) <= manifests.MAX_KEYS // 2:
            return bits
    if int(np.max(_counts(keys, manifests.MAX_BITS))) <= manifests.MAX_KEYS:
        return manifests.MAX_BITS
    raise QrgateError(f"{len(keys)} entries do not fit {1 << manifests.MAX_BITS} buckets of "
                      f"{manifests.MAX_KEYS} keys")


def _bounds(keys: np.ndarray, bits: int) -> np.ndarray:
    """Where each bucket starts in the sorted keys, and the end."""
    starts = np.array([i << (64 - bits) for i in range(1 << bits)] if bits else [0], dtype=np.uint64)
    return np.append(np.searchsorted(keys, starts), len(keys))


def _counts(keys: np.ndarray, bits: int) -> np.ndarray:
    return np.diff(_bounds(keys, bits))


def build(root: Ed25519PrivateKey, entries: Iterable[Entry], seq: int, issued_at: int, valid_days: int = 7,
          bits: int | None = None) -> RevocationList:
    """A list signed by `root` naming `entries` (any iterable: a generator of millions is fine)."""
    keys = sorted_keys(entries)
    bits = choose_bits(keys) if bits is None else bits
    bounds = _bounds(keys, bits)
    bodies: dict[str, bytes] = {}
    buckets = []
    for i in range(1 << bits):
        body = keys[bounds[i] : bounds[i + 1]].astype(">u8").tobytes()
        if len(body) > manifests.MAX_BODY:
            raise QrgateError(f"bucket {i} holds {len(body) // KEY_BYTES} keys, over {manifests.MAX_KEYS}: "
                              "more bits")
        digest = hashlib.sha256(body).digest()
        if body:
            bodies[digest.hex()] = body
        buckets.append([len(body) // KEY_BYTES, digest])
    payload = {"seq": seq, "issued_at": issued_at, "not_after": issued_at + valid_days * 86400, "bits": bits,
               "buckets": buckets}
    return RevocationList(cose.sign1(cbor2.dumps(payload), root, kid_of(root.public_key())), bodies)


def load(folder: Path) -> RevocationList:
    """A list as `build` wrote it: its manifest (not checked here) and the bodies it names that are there."""
    folder = Path(folder)
    data = (folder / MANIFEST).read_bytes()
    m = manifests.parse(data, None)
    bodies = {d.hex(): (folder / d.hex()).read_bytes() for d in m.wanted}
    return RevocationList(data, bodies)


class Publisher:
    """An MQTT v5 client that publishes retained messages and waits for each PUBACK's verdict."""

    def __init__(self, host: str, port: int, ca: Path | None = None, cert: Path | None = None,
                 key: Path | None = None, tls: bool = False, timeout: float = 30.0):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.timeout = timeout
        self._acks: dict[int, tuple[bool, str]] = {}
        self._acked = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        if tls:
            c.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                      keyfile=str(key) if key else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_publish = self._published
        self._retained: dict[str, bytes] = {}
        self._subacked: set[int] = set()
        c.on_message = self._message
        c.on_subscribe = self._subscribed
        rc = c.connect(host, port)
        if rc != 0:
            raise QrgateError(f"cannot connect to {host}:{port}")
        c.loop_start()
        self._client = c

    def _published(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            self._acks[mid] = (not reason_code.is_failure, str(reason_code))
            self._acked.notify_all()

    def _message(self, client, userdata, message) -> None:
        self._retained[message.topic] = bytes(message.payload)

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._acked:
            self._subacked.add(mid)
            self._acked.notify_all()

    def retained(self, topic: str) -> bytes | None:
        """The message retained on `topic`, None when there is none. The broker sends it after the first
        SUBACK; a second SUBSCRIBE asking for no retained message is answered after it, on the same
        connection, so once that SUBACK is here so is the message, if there is one."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self._client.subscribe(topic, options=SubscribeOptions(qos=1))
        _, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._subacked, self.timeout):
                raise QrgateError(f"no SUBACK for {topic} within {self.timeout:.0f} s")
        self._client.unsubscribe(topic)
        return self._retained.get(topic) or None

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=True)
        with self._acked:
            if not self._acked.wait_for(lambda: info.mid in self._acks, self.timeout):
                raise QrgateError(f"no PUBACK for {topic} within {self.timeout:.0f} s")
            ok, reason = self._acks.pop(info.mid)
        if not ok:
            raise QrgateError(f"the broker refused {topic}: {reason}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def publish(rl: RevocationList, publisher: Publisher) -> dict[str, int]:
    """Bodies first, then the manifest (a device that reads it finds every body there), then clear the bodies
    of the list it replaces that it no longer names."""
    old = publisher.retained(topics.REVOCATION)
    try:
        old_bodies = {d.hex() for d in manifests.parse(old, None).wanted} if old else set()
    except QrgateError:
        old_bodies = set()
    for name, body in rl.bodies.items():
        publisher.publish(topics.revocation_body(name), body)
    publisher.publish(topics.REVOCATION, rl.manifest)
    cleared = sorted(old_bodies - set(rl.bodies))
    for name in cleared:
        publisher.publish(topics.revocation_body(name), b"")
    return {"bodies": len(rl.bodies), "cleared": len(cleared)}


def entries_of_dcc(text: str) -> list[Entry]:
    """The EU entries that would revoke this DCC, one per hash type it has: its signature is not checked (a
    technician's or a test's tool; the door computes the same from a verified certificate, revocation.hashes)."""
    import zlib

    import base45

    from firmware.revocation.hashes import eu_hashes
    from firmware.tokens import dcc

    if not text.startswith(dcc.PREFIX):
        raise QrgateError("not an EU DCC (no HC1: prefix)")
    try:
        raw = base45.b45decode(text[len(dcc.PREFIX):].strip())
        obj = cbor2.loads(dcc.inflate(raw) or raw)
        protected, unprotected, payload, signature = obj.value if isinstance(obj, cbor2.CBORTag) else obj
        header = cbor2.loads(protected) if protected else {}
        alg, kid = header.get(dcc.HDR_ALG, unprotected.get(dcc.HDR_ALG)), header.get(dcc.HDR_KID,
                                                                                     unprotected.get(dcc.HDR_KID))
        claims = cbor2.loads(payload)
        hcert = claims[dcc.CLAIM_HCERT][dcc.HCERT_DCC]
        uvci = hcert[dcc.dcc_type(hcert)][0]["ci"]
        iss = claims.get(dcc.CLAIM_ISS)
    except Exception as exc:  # noqa: BLE001 - whatever the layers hold, one message
        raise QrgateError(f"not a DCC this tool can read: {type(exc).__name__}") from None
    if not isinstance(kid, bytes):
        raise QrgateError("the DCC names no kid")
    found = eu_hashes(uvci, iss if isinstance(iss, str) else None, alg, signature)
    return [Entry(kind, kid, digest) for kind, digest in found.items()]
