"""The `qrgate` console command, run as a technician or an outside check would: a world built from nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware import keys
from lab import signers

QRGATE = str(Path(sys.executable).parent / "qrgate")


def qrgate(*args: str | Path, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """The installed `qrgate` command, as a user runs it; with `ok`, it must succeed."""
    proc = subprocess.run([QRGATE, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=60)
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
    qrgate("trust", "build", "--root", str(tmp_path / "root"), "--authority-key", str(tmp_path / "authority"), "--issuer", str(tmp_path / "naver"),
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


def test_token_verify_judges_a_printed_card_and_its_repeat(cli_world):
    qrgate("issuer", "new", "--name", "Mapo Centre", "--card-days", "30", "--out", str(cli_world / "centre"))
    qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"),
           "--issuer", str(cli_world / "centre"), "--seq", "2", "--out", str(cli_world / "cards.cose"))
    png = cli_world / "card.png"
    qrgate("card", "issue", "--issuer", str(cli_world / "centre"), "--out", str(png), "--register",
           str(cli_world / "register.csv"))
    [card] = lines(qrgate("decode", str(png)))[0]["texts"]
    assert card.startswith("KC1:")
    out = lines(qrgate("token", "verify", "--trust", str(cli_world / "cards.cose"), "--root", str(cli_world / "root"),
                       "-", stdin=f"{card}\n{card}\n"))
    assert [(o["verdict"], o["iss"]) for o in out] == [("accepted", "Mapo Centre"), ("already_checked_in", "Mapo Centre")]


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


@pytest.fixture
def device(cli_world, tmp_path) -> Path:
    """A device's configuration (no daemon running), with trust list seq 5 installed."""
    config = tmp_path / "qrgate.toml"
    config.write_text(f"""[device]\nvenue = "v"\nid = "d"\nstate_dir = "{tmp_path / 'state'}"\n
[trust]\nroot_key = "{cli_world / 'root'}"\n[authority]\npublic_key = "{cli_world / 'authority/authority.pub'}"\n
[mqtt]\nenabled = false\n""")
    build(cli_world, 5)
    installed = json.loads(qrgate("trust", "install", str(cli_world / "t5.cose"), "--config", str(config)).stdout)
    assert installed["installed"]["seq"] == 5 and installed["replaced_seq"] is None
    return config


def build(cli_world: Path, seq: int, *extra: str) -> Path:
    out = cli_world / f"t{seq}.cose"
    qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"), "--issuer", str(cli_world / "naver"),
           "--issuer", str(cli_world / "kakao"), "--seq", str(seq), "--out", str(out), *extra)
    return out


def installed_seq(config: Path) -> int:
    return json.loads(qrgate("trust", "show", "--config", str(config)).stdout)["seq"]


def test_trust_install_replaces_with_a_higher_seq(cli_world, device):
    proc = qrgate("trust", "install", str(build(cli_world, 6)), "--config", str(device))
    assert json.loads(proc.stdout)["replaced_seq"] == 5 and installed_seq(device) == 6


def _bad_signature(cli_world):
    data = bytearray(build(cli_world, 9).read_bytes())
    data[-1] ^= 1
    (cli_world / "bad.cose").write_bytes(bytes(data))
    return cli_world / "bad.cose"


def _other_root(cli_world):
    qrgate("root", "new", "--out", str(cli_world / "other-root"))
    out = cli_world / "other.cose"
    qrgate("trust", "build", "--root", str(cli_world / "other-root"), "--authority-key", str(cli_world / "authority"), "--issuer", str(cli_world / "naver"),
           "--seq", "9", "--out", str(out))
    return out


def _expired(cli_world):
    pass

    old = int(time.time()) - 60 * 86400
    data = signers.build_trust_list(signers.load_root(cli_world / "root"), [], seq=9, issued_at=old, valid_days=30,
                           authority=[keys.load_authority_public(cli_world / "authority")])
    (cli_world / "expired.cose").write_bytes(data)
    return cli_world / "expired.cose"


@pytest.mark.parametrize("make, reason", [
    (_bad_signature, "signature does not verify"),
    (_other_root, "signed by a different root key"),
    (lambda w: build(w, 4), "seq 4 is not higher than the installed seq 5"),
    (lambda w: build(w, 5, "--revoke", "00" * 8), "seq 5 is not higher than the installed seq 5"),
    (_expired, "past its not_after"),
])
def test_trust_install_refuses_with_the_reason_and_keeps_the_old_list(cli_world, device, make, reason):
    proc = qrgate("trust", "install", str(make(cli_world)), "--config", str(device), ok=False)
    assert proc.returncode == 2 and reason in proc.stderr and "Traceback" not in proc.stderr
    assert installed_seq(device) == 5


def test_trust_install_of_an_endless_file_is_a_clear_error(device):
    proc = qrgate("trust", "install", "/dev/zero", "--config", str(device), ok=False)
    assert proc.returncode == 2 and "larger than 1 MiB" in proc.stderr and "Traceback" not in proc.stderr
    assert installed_seq(device) == 5


def test_trust_show_lists_issuers_and_revocations(cli_world, device):
    kakao = json.loads(qrgate("issuer", "new", "--name", "kakao2", "--out", str(cli_world / "k2")).stdout)["kid"]
    shown = json.loads(qrgate("trust", "show", str(build(cli_world, 7, "--revoke", kakao)), "--config",
                              str(device)).stdout)
    assert shown["seq"] == 7 and shown["expired"] is False and shown["revoked"] == [kakao]
    assert sorted(i["iss"] for i in shown["issuers"]) == ["kakao", "naver"]
    assert all(i["valid_now"] for i in shown["issuers"])
    authority = keys.fingerprint(keys.load_authority_public(cli_world / "authority"))
    assert [(a["fingerprint"], a["valid_now"]) for a in shown["authority"]] == [(authority, True)]


def test_a_revoked_issuer_key_rejects_its_tokens(cli_world):
    naver_kid = json.loads((cli_world / "naver" / "issuer.json").read_text())["kid"]
    trust = build(cli_world, 2, "--revoke", naver_kid)
    token = qrgate("token", "mint", "--issuer", str(cli_world / "naver")).stdout.strip()
    verdict = lines(qrgate("token", "verify", "--trust", str(trust), "--root", str(cli_world / "root"), token))
    assert verdict == [{"verdict": "rejected", "reason": "revoked_issuer", "iss": None}]


@pytest.mark.parametrize("kid", ["xyz", "00" * 7, "00" * 9])
def test_trust_build_refuses_a_malformed_kid(cli_world, kid):
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"), "--issuer", str(cli_world / "naver"),
                  "--seq", "1", "--revoke", kid, "--out", str(cli_world / "x.cose"), ok=False)
    assert proc.returncode == 2 and "16 hex digits" in proc.stderr


def test_trust_show_without_an_installed_list_says_so(cli_world, tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text(f"""[device]\nvenue = "v"\nid = "d"\nstate_dir = "{tmp_path / 'empty'}"\n
[trust]\nroot_key = "{cli_world / 'root'}"\n[authority]\npublic_key = "{cli_world / 'authority/authority.pub'}"\n
[mqtt]\nenabled = false\n""")
    proc = qrgate("trust", "show", "--config", str(config), ok=False)
    assert proc.returncode == 2 and "no trust list is installed" in proc.stderr


def test_a_broken_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[device]\nvenue = "v"\nid = "d"\ncolour = "blue"\n')
    proc = qrgate("run", "--config", str(config), ok=False)
    assert proc.returncode == 2 and f"{config}: unknown key device.colour" in proc.stderr


def test_bench_verify_prints_side_by_side_figures():
    result = json.loads(qrgate("bench", "verify", "--rounds", "2", "--tokens", "20").stdout)
    assert result["bench"] == "verify" and result["tokens"] == 20
    assert result["valid_tokens_per_s"] > 0 and result["bare_ed25519_checks_per_s"] > 0
    assert result["ratio_valid_to_bare"] > 0 and isinstance(result["goals_met"], bool)
    assert set(result["garbage_per_s_by_kind"]) == {"other_qr", "bad_base45", "random_cose_bytes", "truncated"}


def test_a_test_signers_dccs_verify_against_a_trust_list_naming_it(cli_world, device):
    signer = json.loads(qrgate("dcc", "signer", "new", "--out", str(cli_world / "dsc"), "--country", "KR").stdout)
    trust = cli_world / "dcc-trust.cose"
    qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"), "--dsc", str(cli_world / "dsc" / "dsc.pem"),
           "--seq", "3", "--out", str(trust))
    mint = lambda *a: qrgate("dcc", "mint", "--signer", str(cli_world / "dsc"), *a).stdout.strip()  # noqa: E731
    png = cli_world / "dcc.png"
    texts = [mint("--png", str(png)), mint("--doses", "1/2"), mint("--type", "t", "--positive"), mint("--type", "r")]
    assert all(t.startswith("HC1:") for t in texts)
    proc = qrgate("token", "verify", "--trust", str(trust), "--root", str(cli_world / "root"), "-",
                  stdin="\n".join([*texts, texts[0]]) + "\n")
    assert [(o["verdict"], o["reason"], o["iss"]) for o in lines(proc)] == [
        ("accepted", None, "KR"), ("rejected", "series_incomplete", "KR"), ("rejected", "test_positive", "KR"),
        ("accepted", None, "KR"), ("already_checked_in", None, "KR")]
    assert lines(qrgate("decode", str(png)))[0]["texts"] == [texts[0]]
    assert "Gabriele" not in proc.stdout + proc.stderr  # the certificate's name never printed
    shown = json.loads(qrgate("trust", "show", str(trust), "--config", str(device)).stdout)
    assert [(d["kid"], d["types"], d["valid_now"]) for d in shown["dsc"]] == [(signer["kid"], ["v", "t", "r"], True)]


def test_dcc_tools_refuse_bad_arguments_with_a_reason(cli_world):
    proc = qrgate("dcc", "signer", "new", "--out", str(cli_world / "d"), "--types", "vx", ok=False)
    assert proc.returncode == 2 and "letters of 'vtr'" in proc.stderr
    qrgate("dcc", "signer", "new", "--out", str(cli_world / "d"))
    proc = qrgate("dcc", "mint", "--signer", str(cli_world / "d"), "--type", "t", "--doses", "1/2", ok=False)
    assert proc.returncode == 2 and "--doses is N/M" in proc.stderr
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"), "--seq", "1", "--out",
                  str(cli_world / "x.cose"), ok=False)
    assert proc.returncode == 2 and "at least one --issuer or --dsc" in proc.stderr
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--issuer", str(cli_world / "naver"),
                  "--seq", "1", "--out", str(cli_world / "x.cose"), ok=False)
    assert proc.returncode == 2 and "at least one --authority-key" in proc.stderr
    (cli_world / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"), "--dsc", str(cli_world / "junk.pem"),
                  "--seq", "1", "--out", str(cli_world / "x.cose"), ok=False)
    assert proc.returncode == 2 and "is not an X.509 certificate" in proc.stderr


def test_authority_keys_are_the_hybrid_unless_asked_and_say_their_kid_and_fingerprint(cli_world):
    made = json.loads(qrgate("authority", "new", "--out", str(cli_world / "a2")).stdout)
    classic = json.loads(qrgate("authority", "new", "--suite", "X25519", "--out", str(cli_world / "a3")).stdout)
    assert (made["alg"], classic["alg"]) == ("MLKEM768-X25519", "X25519")
    for out, folder in ((made, "a2"), (classic, "a3")):
        public = keys.load_authority_public(cli_world / folder)
        assert (out["kid"], out["fingerprint"]) == (public.kid.hex(), keys.fingerprint(public))
        assert keys.load_authority_private(cli_world / folder).public_key() == public
    assert (cli_world / "a2" / "authority.pub").read_text().count("BEGIN PUBLIC KEY") == 2
    refused = qrgate("authority", "new", "--suite", "X448", "--out", str(cli_world / "a4"), ok=False)
    assert refused.returncode == 2 and "X448" in refused.stderr


def test_trust_build_announces_the_next_authority_key_and_show_says_which_seals_now(cli_world, device):
    qrgate("authority", "new", "--out", str(cli_world / "next"))
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    shown = json.loads(qrgate("trust", "show", str(build(cli_world, 8, "--authority-key", f"{cli_world / 'next'}@{soon}")),
                              "--config", str(device)).stdout)
    now_key, next_key = (keys.load_authority_public(cli_world / d) for d in ("authority", "next"))
    assert [(a["kid"], a["alg"], a["valid_now"], a["sealing_now"]) for a in shown["authority"]] == [
        (now_key.kid.hex(), "MLKEM768-X25519", True, True), (next_key.kid.hex(), "MLKEM768-X25519", False, False)]
    assert shown["authority"][1]["not_before"] == soon
    for bad in ("tomorrow", "2026-12-08T00:00:00"):  # not a time; a time without its Z
        proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key",
                      f"{cli_world / 'next'}@{bad}", "--issuer", str(cli_world / "naver"), "--seq", "9", "--out",
                      str(cli_world / "x.cose"), ok=False)
        assert proc.returncode == 2 and "UTC time" in proc.stderr


def test_trust_build_carries_business_rules_and_value_sets_and_trust_show_counts_them(cli_world, device):
    from tests.tokens.rules_kit import SERIES_COMPLETE, VACCINE_LISTED, rule

    rules = cli_world / "rules-de.json"  # as the gateway publishes them: an array of rules
    rules.write_text(json.dumps([json.loads(rule("VR-DE-0001", VACCINE_LISTED)),
                                 json.loads(rule("VR-DE-0002", SERIES_COMPLETE, valid_from="2030-01-01T00:00:00Z",
                                                 valid_to="2031-01-01T00:00:00Z"))]))
    one = cli_world / "rule-fr.json"  # or one rule alone
    one.write_text(rule("IR-FR-0001", True, type="Invalidation"))
    eu_valueset = cli_world / "vaccines.json"  # the EU's value set file
    eu_valueset.write_text(json.dumps({"valueSetId": "vaccines-covid-19-names", "valueSetDate": "2022-01-01",
                                       "valueSetValues": {"EU/1/20/1528": {"display": "Comirnaty", "active": True},
                                                          "EU/1/20/1507": {"display": "Spikevax", "active": True}}}))
    plain = cli_world / "tests.json"  # or the compressed form the rules read
    plain.write_text(json.dumps({"covid-19-lab-test-type": ["LP6464-4"]}))
    out = build(cli_world, 6, "--dcc-rules", str(rules), "--dcc-rules", str(one), "--valuesets", str(eu_valueset),
                "--valuesets", str(plain))
    qrgate("trust", "install", str(out), "--config", str(device))
    shown = json.loads(qrgate("trust", "show", "--config", str(device)).stdout)
    assert shown["dcc_rules"] == {"DE": {"rules": 2, "in_force": 1}, "FR": {"rules": 1, "in_force": 1}}
    assert shown["valuesets"] == {"covid-19-lab-test-type": 1, "vaccines-covid-19-names": 2}
    # A technician's dry run of a pass against those rules: the rule failed is named.
    qrgate("dcc", "signer", "new", "--out", str(cli_world / "dsc"), "--country", "KR")
    with_signer = cli_world / "t8.cose"
    spikevax_only = cli_world / "spikevax.json"
    spikevax_only.write_text(json.dumps({"vaccines-covid-19-names": ["EU/1/20/1507"]}))
    qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"),
           "--dsc", str(cli_world / "dsc"), "--seq", "8", "--out", str(with_signer), "--dcc-rules", str(rules),
           "--valuesets", str(spikevax_only))
    comirnaty = qrgate("dcc", "mint", "--signer", str(cli_world / "dsc")).stdout.strip()
    verify = ["token", "verify", "--trust", str(with_signer), "--root", str(cli_world / "root")]
    assert lines(qrgate(*verify, comirnaty))[0]["verdict"] == "accepted"  # no country: the rules are not asked
    assert lines(qrgate(*verify, "--rules-country", "DE", comirnaty)) == [
        {"verdict": "rejected", "reason": "rule_failed", "iss": "KR", "rule": "VR-DE-0001"}]


def test_trust_build_refuses_rules_the_devices_would_refuse(cli_world):
    from tests.tokens.rules_kit import rule

    bad = cli_world / "bad.json"
    bad.write_text(rule("VR-DE-0001", {"eval": ["x"]}))
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"),
                  "--issuer", str(cli_world / "naver"), "--seq", "7", "--out", str(cli_world / "t7.cose"),
                  "--dcc-rules", str(bad), ok=False)
    assert proc.returncode != 0 and "VR-DE-0001" in proc.stderr and "not valid CertLogic" in proc.stderr
    assert not (cli_world / "t7.cose").exists()
    junk = cli_world / "junk.json"
    junk.write_text(json.dumps([1, 2]))
    proc = qrgate("trust", "build", "--root", str(cli_world / "root"), "--authority-key", str(cli_world / "authority"),
                  "--issuer", str(cli_world / "naver"), "--seq", "7", "--out", str(cli_world / "t7.cose"),
                  "--valuesets", str(junk), ok=False)
    assert proc.returncode != 0 and "neither EU value sets" in proc.stderr
