"""Key files: read and checked, written with their modes (private keys 0600), kids and fingerprints.

The folders `qrgate issuer|root|authority new` makes, and what each holds, are
lab.signers' (the device makes none of them); a key is named here by its file
or by its folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from firmware.errors import KeyFileError

K = TypeVar("K")


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid_of(key: Ed25519PublicKey) -> bytes:
    """8 bytes naming a signing key: the start of SHA-256 of its raw public key."""
    return hashlib.sha256(raw_public(key)).digest()[:8]


def fingerprint(key: X25519PublicKey | Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key in groups of four hex digits: what a technician reads back over the phone."""
    digest = hashlib.sha256(raw_public(key)).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def write_private(path: Path, key: Ed25519PrivateKey | X25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def write_public(path: Path, key: Ed25519PublicKey | X25519PublicKey) -> None:
    path.write_bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# The key classes are abstract, and mypy takes none for a type[K] (python/mypy#4717): the calls below say
# type-abstract, though `want` is only given to isinstance.
def _load(path: Path, loader: Callable[[bytes], object], want: type[K], what: str) -> K:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        key = loader(data)
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM {what}") from None
    if not isinstance(key, want):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not a {what}")
    return key


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


def load_authority_private(path: Path) -> X25519PrivateKey:
    return load_private(in_folder(path, "authority.key"), X25519PrivateKey,  # type: ignore[type-abstract]
                        "X25519 authority key")


def load_authority_public(path: Path) -> X25519PublicKey:
    return load_public(in_folder(path, "authority.pub"), X25519PublicKey,  # type: ignore[type-abstract]
                       "X25519 authority public key")
