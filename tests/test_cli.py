"""The `qrgate` console command, run as a technician or an outside check would: a world built from nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

QRGATE = str(Path(sys.executable).parent / "qrgate")


def qrgate(*args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([QRGATE, *args], input=stdin, capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture
def cli_world(tmp_path: Path) -> Path:
    qrgate("issuer", "new", "--name", "naver", "--out", str(tmp_path / "naver"))
    qrgate("issuer", "new", "--name", "kakao", "--out", str(tmp_path / "kakao"))
    qrgate("issuer", "new", "--name", "stranger", "--out", str(tmp_path / "stranger"))
    qrgate("root", "new", "--out", str(tmp_path / "root"))
    qrgate("authority", "new", "--out", str(tmp_path / "authority"))
    qrgate("trust", "build", "--root", str(tmp_path / "root"), "--issuer", str(tmp_path / "naver"),
           "--issuer", str(tmp_path / "kakao"), "--seq", "1", "--out", str(tmp_path / "trust.cose"))
    return tmp_path


def test_private_keys_are_written_for_the_owner_only(cli_world):
    for key in ("naver/issuer.key", "root/root.key", "authority/authority.key"):
        assert (cli_world / key).stat().st_mode & 0o077 == 0
    again = qrgate("root", "new", "--out", str(cli_world / "root"), ok=False)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_mint_then_verify_one_token(cli_world):
    token = qrgate("token", "mint", "--issuer", str(cli_world / "kakao"), "--att", "vax").stdout.strip()
    assert token.startswith("KP1:")
    out = lines(qrgate("token", "verify", "--trust", str(cli_world / "trust.cose"), "--root",
                       str(cli_world / "root"), "--require", "vax", token))
    assert out == [{"verdict": "accepted", "reason": None, "iss": "kakao"}]


def test_verify_from_stdin_one_line_per_token(cli_world):
    mint = lambda who, *a: qrgate("token", "mint", "--issuer", str(cli_world / who), *a).stdout.strip()  # noqa: E731
    good, stranger, short = mint("naver"), mint("stranger"), mint("naver", "--ttl", "1")
    stdin = "\n".join([good, good, stranger, good[:-5], "https://example.com/menu", short]) + "\n"
    proc = qrgate("token", "verify", "--trust", str(cli_world / "trust.cose"), "--at", str(time.time() + 12), "-",
                  stdin=stdin)
    assert [(o["verdict"], o["reason"]) for o in lines(proc)] == [
        ("accepted", None),
        ("already_checked_in", None),
        ("rejected", "unknown_issuer"),
        ("rejected", "malformed"),
        ("rejected", "malformed"),
        ("rejected", "expired"),
    ]
    assert all(set(o) == {"verdict", "reason", "iss"} for o in lines(proc))


def test_mint_png_decodes_back_to_the_token(cli_world):
    png = cli_world / "token.png"
    token = qrgate("token", "mint", "--issuer", str(cli_world / "naver"), "--png", str(png)).stdout.strip()
    for backend in ("zxing", "zbar"):
        out = lines(qrgate("decode", "--backend", backend, str(png)))
        assert out == [{"file": str(png), "texts": [token]}]


def test_decode_reports_an_unreadable_file_and_goes_on(cli_world, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    png = tmp_path / "t.png"
    token = qrgate("token", "mint", "--issuer", str(cli_world / "naver"), "--png", str(png)).stdout.strip()
    proc = qrgate("decode", str(junk), str(png), ok=False)
    assert proc.returncode == 1
    assert [o["texts"] for o in lines(proc)] == [[], [token]]


def test_a_trust_list_from_another_root_is_refused_with_a_reason(cli_world):
    qrgate("root", "new", "--out", str(cli_world / "other-root"))
    proc = qrgate("token", "verify", "--trust", str(cli_world / "trust.cose"), "--root",
                  str(cli_world / "other-root"), "KP1:X", ok=False)
    assert proc.returncode == 2 and "different root" in proc.stderr


def test_trust_install_keeps_the_newer_list(cli_world, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "qrgate.toml"
    config.write_text(f"""[device]\nvenue = "v"\nid = "d"\nstate_dir = "{state}"\n
[trust]\nroot_key = "{cli_world / 'root'}"\n[authority]\npublic_key = "{cli_world / 'authority/authority.pub'}"\n
[mqtt]\nenabled = false\n""")
    build = lambda seq: qrgate("trust", "build", "--root", str(cli_world / "root"), "--issuer",  # noqa: E731
                               str(cli_world / "naver"), "--seq", str(seq), "--out", str(tmp_path / f"t{seq}.cose"))
    build(5), build(4)
    assert json.loads(qrgate("trust", "install", str(tmp_path / "t5.cose"), "--config", str(config)).stdout)[
        "installed_seq"] == 5
    rollback = qrgate("trust", "install", str(tmp_path / "t4.cose"), "--config", str(config), ok=False)
    assert rollback.returncode == 2 and "not higher" in rollback.stderr
    assert (state / "trustlist.cose").read_bytes() == (tmp_path / "t5.cose").read_bytes()


def test_a_broken_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[device]\nvenue = "v"\nid = "d"\ncolour = "blue"\n')
    proc = qrgate("run", "--config", str(config), ok=False)
    assert proc.returncode == 2 and f"{config}: unknown key device.colour" in proc.stderr


def test_bench_verify_prints_side_by_side_figures():
    result = json.loads(qrgate("bench", "verify", "--rounds", "2", "--tokens", "20").stdout)
    assert result["bench"] == "verify" and result["tokens"] == 20
    assert result["valid_tokens_per_s"] > 0 and result["bare_ed25519_checks_per_s"] > 0
    # The full verify includes the bare check, so it can only be slower (allowing timer noise).
    assert 0 < result["ratio_valid_to_bare"] < 1.1
    assert set(result["garbage_per_s_by_kind"]) == {"other_qr", "bad_base45", "random_cose_bytes", "truncated"}
