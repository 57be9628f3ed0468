"""Secrets handed over by systemd's LoadCredential, in place of files the daemon's user cannot read.

The device's TLS key and certificate are root-only on the card
(/etc/qrgate/tls/, mode 0700). The unit passes them with
`LoadCredential=device.key:…` and `device.crt:…`, and systemd
puts a copy only this service can read in $CREDENTIALS_DIRECTORY. A configured
path is replaced by the credential of the same file name when there is one, so
the same config works for the daemon under systemd and for a technician's
`sudo qrgate selftest`.
"""

from __future__ import annotations

import os
from pathlib import Path

# What the unit's `SetCredential=ID:unprovisioned` fallback leaves when the file is missing
# (systemd 252 has no optional LoadCredential=): no credential at all.
PLACEHOLDERS = (b"", b"unprovisioned")


def resolve(path: Path) -> Path:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if folder:
        credential = Path(folder) / Path(path).name
        if credential.is_file() and credential.read_bytes().strip() not in PLACEHOLDERS:
            return credential
    return Path(path)


def client_pair(cert: Path | None, key: Path | None) -> tuple[Path | None, Path | None]:
    """The TLS client certificate and key to use: each its credential when systemd handed one over."""
    return (resolve(cert) if cert else None, resolve(key) if key else None)
