"""The DCC revocation list's commands, as the authority and a technician run them: `qrgate dcc revocation-hashes`,
`qrgate trust revocation build|publish|install|show`, and the list's row in `qrgate status`."""

from __future__ import annotations

import base64
import json
import time

import pytest

from firmware import cli, keys
from firmware.revocation import store as stores
from firmware.revocation.hashes import HashType, eu_hashes
from firmware.tokens import dcc
from lab import revocation
from tests.conftest import load
from tests.technician.test_status import fixture_root


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def setup(tmp_path, world):
    """A device's config, and the entries of a genuine DCC of the world's signer as the EU would list them."""
    load(tmp_path, world.config_toml(tmp_path / "state", tmp_path))
    text = world.mint_dcc()
    return tmp_path / "qrgate.toml", text


def world_root(world):
    return keys.load_root_public(world.root_dir)


def hashes_of(capsys, text: str) -> list[dict]:
    code, out, _ = run(capsys, "dcc", "revocation-hashes", text)
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def build(capsys, world, tmp_path, lines: list[dict], seq: int, name: str) -> tuple[int, dict | str]:
    entries = tmp_path / f"{name}.jsonl"
    entries.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = run(capsys, "trust", "revocation", "build", "--root", str(world.root_dir), "--entries",
                         str(entries), "--seq", str(seq), "--out", str(tmp_path / name))
    return code, json.loads(out) if code == 0 else err


def test_a_dccs_hashes_are_the_three_entries_that_would_revoke_it(capsys, world):
    text = world.mint_dcc()
    result = dcc.verify(text, [world.dsc.cert], time.time())
    want = eu_hashes(result.uvci, result.iss, result.alg, result.signature)
    got = hashes_of(capsys, text)
    assert [line["type"] for line in got] == ["UCI", "COUNTRYCODEUCI", "SIGNATURE"]
    for line in got:
        assert base64.b64decode(line["kid"]) == world.dsc.kid and set(line) == {"kid", "type", "hash"}
        assert bytes.fromhex(line["hash"]) == want[HashType[line["type"]]]
    code, out, _ = run(capsys, "dcc", "revocation-hashes", "HC1:NOT A DCC")
    assert code == 2


def test_build_install_show_and_status(capsys, world, tmp_path, setup):
    config, text = setup
    code, built = build(capsys, world, tmp_path, hashes_of(capsys, text)[:1], seq=2, name="two")
    assert code == 0 and built["seq"] == 2 and built["entries"] == 1 and built["bits"] == 0 and built["bodies"] == 1
    code, out, _ = run(capsys, "trust", "revocation", "install", str(tmp_path / "two"), "--config", str(config))
    installed = json.loads(out)
    assert code == 0 and installed["replaced_seq"] is None and installed["installed"]["seq"] == 2
    assert installed["installed"]["entries"] == 1
    state = tmp_path / "state"
    result = dcc.verify(text, [world.dsc.cert], time.time())
    assert stores.RevocationStore(state, world_root(world)).revoked(result)
    code, out, _ = run(capsys, "trust", "revocation", "show", "--config", str(config))
    shown = json.loads(out)
    assert code == 0 and shown["in_force"]["seq"] == 2 and shown["in_force"]["bodies_missing"] == 0
    assert shown["next"] is None
    code, out, _ = run(capsys, "trust", "revocation", "show", str(tmp_path / "two"), "--config", str(config))
    assert code == 0 and set(json.loads(out)) == {"in_force"} and json.loads(out)["in_force"]["seq"] == 2

    code, older = build(capsys, world, tmp_path, hashes_of(capsys, text)[1:], seq=1, name="one")
    code, _, err = run(capsys, "trust", "revocation", "install", str(tmp_path / "one"), "--config", str(config))
    assert code == 2 and "seq 1 is not higher than the seq in force 2" in err

    code, out, _ = run(capsys, "status", "--config", str(config), "--sys-root", str(fixture_root(tmp_path / "root")),
                       "--json")
    report = json.loads(out)
    assert report["revocation"]["in_force"]["seq"] == 2 and report["revocation"]["required"] is False
    code, out, _ = run(capsys, "status", "--config", str(config), "--sys-root", str(fixture_root(tmp_path / "r2")))
    [row] = [line for line in out.splitlines() if line.startswith("revocation list")]
    assert row.split(None, 2)[2].startswith("seq 2, 1 entries, issued ")


def test_status_says_no_list_and_a_list_coming(capsys, world, tmp_path, setup):
    config, _ = setup
    root = fixture_root(tmp_path / "root")
    code, out, _ = run(capsys, "status", "--config", str(config), "--sys-root", str(root))
    [row] = [line for line in out.splitlines() if line.startswith("revocation list")]
    assert row.endswith("none (not required: dcc.revocation = false)")
    rl = world.revocation_list(revocation.read_entries(
        [json.dumps(e.as_json()) for e in revocation.entries_of_dcc(world.mint_dcc())]), seq=3)
    stores.RevocationStore(tmp_path / "state", world_root(world)).offer_manifest(rl.manifest, time.time())
    code, out, _ = run(capsys, "status", "--config", str(config), "--sys-root", str(fixture_root(tmp_path / "r2")))
    [row] = [line for line in out.splitlines() if line.startswith("revocation list")]
    assert row.endswith("none (not required: dcc.revocation = false); seq 3 coming, 1 of 1 bodies to fetch")


def test_entries_are_read_in_hex_or_base64_and_a_bad_line_is_named(capsys, world, tmp_path):
    kid, digest = bytes(range(8)), bytes(range(16))
    as_hex = {"kid": kid.hex(), "type": "UCI", "hash": digest.hex()}
    as_b64 = {"kid": base64.b64encode(kid).decode(), "type": "UCI", "hash": base64.b64encode(digest).decode()}
    code, built = build(capsys, world, tmp_path, [as_hex, as_b64], seq=1, name="both")
    assert code == 0 and built["entries"] == 1  # one entry, twice
    for bad, words in (({**as_hex, "type": "UVCI"}, "type is one of UCI, COUNTRYCODEUCI, SIGNATURE"),
                       ({**as_hex, "hash": digest.hex()[:-2]}, "hash is neither 32 hex digits nor base64"),
                       ({**as_hex, "hash": base64.b64encode(digest[:15]).decode()}, "hash is 16 bytes"),
                       ({**as_hex, "kid": ""}, "kid is 1 to 32 bytes"),
                       ({**as_hex, "kid": 7}, "kid is not a string"),
                       ({**as_hex, "kid": "not base64!"}, "kid is neither 16 hex digits nor base64"),
                       ({**as_hex, "extra": 1}, "nothing else"),
                       ({"kid": kid.hex(), "type": "UCI"}, "nothing else"),
                       ([as_hex], "nothing else"),
                       ({**as_hex, "type": None}, "type is one of")):
        code, err = build(capsys, world, tmp_path, [as_hex, bad], seq=1, name="bad")
        assert code == 2 and "bad.jsonl line 2: " in err and words in err, err
    code, err = build(capsys, world, tmp_path, [], seq=1, name="empty")
    assert code == 0 and err["entries"] == 0 and err["bodies"] == 0


def test_publish_sends_a_built_list_to_the_broker(capsys, world, tmp_path, broker, setup):
    _, text = setup
    code, _ = build(capsys, world, tmp_path, hashes_of(capsys, text), seq=1, name="one")
    code, out, _ = run(capsys, "trust", "revocation", "publish", str(tmp_path / "one"), "--broker",
                       f"mqtt://127.0.0.1:{broker.port}")
    assert code == 0 and json.loads(out) == {"bodies": 1, "cleared": 0}
    publisher = revocation.Publisher("127.0.0.1", broker.port)
    try:
        assert publisher.retained("qrgate/v1/trust/revocation") == (tmp_path / "one" / stores.MANIFEST).read_bytes()
    finally:
        publisher.close()
    code, _, err = run(capsys, "trust", "revocation", "publish", str(tmp_path / "one"), "--broker", "http://x")
    assert code == 2 and "--broker is mqtts://HOST[:PORT]" in err
