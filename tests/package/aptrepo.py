"""A signed apt repository made from nothing, as a fleet's publisher makes one (docs/technician.md,
"Updating a fleet"): a fresh OpenPGP key, the packages, their index, and the index's signature.

A flat repository (`deb [signed-by=KEYRING] URI ./`) from `apt-ftparchive`, signed with gpg:
apt checks InRelease against the keyring named by `signed-by=`, then every package's SHA-256
against the signed index, so a package that was not published is refused.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr}"
    return result.stdout


class SignedRepo:
    """`folder` holds the repository; `keyring` is the public key a device installs to trust it."""

    def __init__(self, folder: Path, gnupg: Path, name: str = "qrgate fleet <fleet@qrgate.invalid>"):
        self.folder = folder
        self.gnupg = gnupg
        folder.mkdir(parents=True)
        gnupg.mkdir(mode=0o700, parents=True)
        self._gpg("--quick-generate-key", name, "ed25519", "sign", "never")
        self.keyring = gnupg / "fleet.gpg"
        self.keyring.write_bytes(subprocess.run(["gpg", "--homedir", str(gnupg), "--export"],
                                                capture_output=True, check=True).stdout)

    def _gpg(self, *args: object) -> str:
        return _run("gpg", "--homedir", self.gnupg, "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    *args)

    def publish(self, *debs: Path) -> None:
        """Add packages and sign the new index (what a publisher does for each release)."""
        for deb in debs:
            shutil.copy(deb, self.folder)
        packages = _run("apt-ftparchive", "packages", ".", cwd=self.folder)
        (self.folder / "Packages").write_text(packages)
        release = _run("apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=qrgate",
                       "-o", "APT::FTPArchive::Release::Label=qrgate", "release", ".", cwd=self.folder)
        (self.folder / "Release").write_text(release)
        (self.folder / "InRelease").write_bytes(self.sign(self.folder / "Release"))

    def sign(self, release: Path) -> bytes:
        """`release` clear-signed with this repository's key: what apt reads as InRelease."""
        return subprocess.run(["gpg", "--homedir", str(self.gnupg), "--batch", "--clearsign", "--output", "-",
                               str(release)], capture_output=True, check=True).stdout
