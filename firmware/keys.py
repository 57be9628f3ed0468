"""Key files: read and checked, written with their modes (private keys 0600), kids and fingerprints.

The folders `qrgate issuer|root|authority new` makes, and what each holds, are
lab.signers' (the device makes none of them); a key is named here by its file
or by its folder. An authority key is an X25519 key in one PEM block (PKCS#8
or SubjectPublicKeyInfo) or, for the post-quantum hybrid (store.seal), two
blocks in one file: the ML-KEM-768 key (its private half as its 64-byte seed)
and then the X25519 key. Each block is a standard one cryptography, or
OpenSSL, loads back on its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from firmware.errors import KeyFileError
from firmware.store.seal import X25519, OpeningKey, SealingKey

K = TypeVar("K")


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid_of(key: Ed25519PublicKey) -> bytes:
    """8 bytes naming a signing key: the start of SHA-256 of its raw public key."""
    return hashlib.sha256(raw_public(key)).digest()[:8]


def fingerprint(key: X25519PublicKey | Ed25519PublicKey | SealingKey) -> str:
    """SHA-256 of the raw public key in groups of four hex digits: what a technician reads back over the phone."""
    digest = hashlib.sha256(key.raw if isinstance(key, SealingKey) else raw_public(key)).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


PRIVATE_MODE = 0o600
_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----\r?\n.*?-----END [A-Z0-9 ]+-----", re.S)


def _pem_private(key: Ed25519PrivateKey | X25519PrivateKey | MLKEM768PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key: Ed25519PublicKey | X25519PublicKey | MLKEM768PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_private(path: Path, key: Ed25519PrivateKey | X25519PrivateKey) -> None:
    _write_secret(path, _pem_private(key))


def write_public(path: Path, key: Ed25519PublicKey | X25519PublicKey) -> None:
    path.write_bytes(_pem_public(key))


def authority_public_pem(public: SealingKey) -> bytes:
    """The public half's file: one SubjectPublicKeyInfo block, or the hybrid's two."""
    x25519 = _pem_public(X25519PublicKey.from_public_bytes(public.raw[-32:]))
    if public.suite is X25519:
        return x25519
    return _pem_public(MLKEM768PublicKey.from_public_bytes(public.raw[:-32])) + x25519


def write_authority(folder: Path, key: OpeningKey) -> None:
    """authority.key (mode 0600) and authority.pub in `folder`."""
    x25519 = _pem_private(key.x25519)
    _write_secret(folder / "authority.key", x25519 if key.mlkem is None else _pem_private(key.mlkem) + x25519)
    (folder / "authority.pub").write_bytes(authority_public_pem(key.public_key()))


# The key classes are abstract, and mypy takes none for a type[K] (python/mypy#4717): the calls below say
# type-abstract, though `want` is only given to isinstance.
def _load(path: Path, loader: Callable[[bytes], object], want: type[K], what: str) -> K:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    return _one(path, data, loader, want, what)


def load_private(path: Path, want: type[K], what: str) -> K:
    return _load(path, lambda d: serialization.load_pem_private_key(d, None), want, what)


def load_public(path: Path, want: type[K], what: str) -> K:
    return _load(path, serialization.load_pem_public_key, want, what)


def in_folder(path: Path, filename: str) -> Path:
    """A key is named by its file or by the folder `qrgate … new` made for it."""
    path = Path(path)
    return path / filename if path.is_dir() else path


def load_root_public(path: Path) -> Ed25519PublicKey:
    return load_public(in_folder(path, "root.pub"), Ed25519PublicKey,  # type: ignore[type-abstract]
                       "Ed25519 root public key")


def _blocks(path: Path, what: str) -> list[bytes]:
    """The PEM blocks of a key file: one, or the hybrid's two (a file is kilobytes; 64 KiB is not one)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    blocks = _PEM_BLOCK.findall(data)
    if len(blocks) not in (1, 2):
        raise KeyFileError(f"{path} is not a PEM {what}")
    return blocks


def _one(path: Path, block: bytes, loader: Callable[[bytes], object], want: type[K], what: str) -> K:
    try:
        key = loader(block)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not a PEM {what}") from None
    if not isinstance(key, want):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not a {what}")
    return key


def load_authority_private(path: Path) -> OpeningKey:
    """An X25519 authority key, or the hybrid's ML-KEM-768 and X25519 keys (OpeningKey)."""
    path = in_folder(path, "authority.key")
    what = "X25519 authority key (or an ML-KEM-768 key, then an X25519 key)"
    blocks = _blocks(path, what)
    private: Callable[[bytes], object] = lambda d: serialization.load_pem_private_key(d, None)  # noqa: E731
    x25519 = _one(path, blocks[-1], private, X25519PrivateKey, what)  # type: ignore[type-abstract]
    if len(blocks) == 1:
        return OpeningKey(x25519)
    return OpeningKey(x25519, _one(path, blocks[0], private, MLKEM768PrivateKey, what))  # type: ignore[type-abstract]


def load_authority_public(path: Path) -> SealingKey:
    path = in_folder(path, "authority.pub")
    what = "X25519 authority public key (or an ML-KEM-768 public key, then an X25519 one)"
    blocks = _blocks(path, what)
    load = serialization.load_pem_public_key
    x25519 = raw_public(_one(path, blocks[-1], load, X25519PublicKey, what))  # type: ignore[type-abstract]
    if len(blocks) == 1:
        return SealingKey(X25519, x25519)
    mlkem = _one(path, blocks[0], load, MLKEM768PublicKey, what)  # type: ignore[type-abstract]
    return SealingKey.of("MLKEM768-X25519", mlkem.public_bytes_raw() + x25519)
