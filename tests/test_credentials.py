"""Secrets from systemd's LoadCredential replace the configured root-only files, by file name."""

from pathlib import Path

from firmware import credentials


def test_a_credential_of_the_same_name_replaces_the_configured_path(tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "device.key").write_text("key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    configured = Path("/etc/qrgate/tls/device.key")
    assert credentials.resolve(configured) == creds / "device.key"
    # No credential of that name (the certificate before --install-cert): the configured path stays.
    assert credentials.client_pair(Path("/etc/qrgate/tls/device.crt"), configured) == (
        Path("/etc/qrgate/tls/device.crt"), creds / "device.key")
    assert credentials.client_pair(None, None) == (None, None)


def test_without_systemd_the_configured_path_is_used(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert credentials.resolve(Path("/etc/qrgate/tls/device.key")) == Path("/etc/qrgate/tls/device.key")


def test_the_units_placeholder_is_no_credential(tmp_path, monkeypatch):
    (tmp_path / "device.key").write_text("unprovisioned")  # SetCredential= fallback: the file did not exist
    (tmp_path / "device.crt").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert credentials.resolve(Path("/etc/qrgate/tls/device.key")) == Path("/etc/qrgate/tls/device.key")
    assert credentials.resolve(Path("/etc/qrgate/tls/device.crt")) == Path("/etc/qrgate/tls/device.crt")
