"""DCC revocation lists on the real daemon (firmware.app.run, as `qrgate run`), on a real Mosquitto, with the
authority's own publisher (lab.revocation): EU DCCs of four signing countries and a KP1 token shown over and
over on a looping replay camera, while the lists change under the door.

A certificate the list in force names, by any of the EU's three hashes, turns red as `revoked` and is not
recorded; a tampered or unwanted body and an older list change nothing; with `[dcc] revocation = true`, no
list or a stale one is a fault for DCCs only.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from conftest import changes, load, running_daemon, wait_until, write_frames
from firmware import cli, health
from firmware.revocation.hashes import HashType
from firmware.revocation.store import FOLDER, MANIFEST
from firmware.revocation import manifest as manifests
from firmware.uplink import topics
from lab import dcc_issuer, revocation

COUNTRIES = ("DE", "FR", "IT")


class Door:
    """The decisions of a running daemon, by issuer (a DCC's signing country, a KP1 token's issuer)."""

    def __init__(self):
        self.decisions: list = []
        self._lock = threading.Lock()

    def __call__(self, decision) -> None:
        with self._lock:
            self.decisions.append(decision)

    def of(self, iss: str | None) -> list[tuple[str, str | None]]:
        with self._lock:
            return [(d.verdict, d.reason) for d in self.decisions if d.iss == iss]

    def count(self) -> int:
        with self._lock:
            return len(self.decisions)

    def since(self, mark: int) -> list[tuple[str | None, str, str | None]]:
        with self._lock:
            return [(d.iss, d.verdict, d.reason) for d in self.decisions[mark:]]

    def judged_again(self, mark: int, *issuers: str) -> bool:
        """Has every one of these been shown (and judged) at least twice since `mark`?"""
        seen = [iss for iss, _, _ in self.since(mark)]
        return all(seen.count(iss) >= 2 for iss in issuers)


@pytest.fixture
def venue(tmp_path, world):
    """The world's trust list naming document signers of three more countries; a DCC of each and a KP1 token."""
    signers = {"KR": world.dsc, **{c: dcc_issuer.make_signer(c) for c in COUNTRIES}}
    world.trust_file.write_bytes(world.trust_list(world.issuers.values(), seq=1,
                                                  dsc=[s.der for s in signers.values()]))
    texts = {country: dcc_issuer.mint(signer, time.time()) for country, signer in signers.items()}
    return texts, world.mint(ttl=300)


def config(tmp_path, world, texts, token, broker, **sections):
    frames = write_frames(tmp_path / "frames", [*texts.values(), token], gap_frames=8)
    return load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port, camera="loop = true",
                                            decoder="hold_s = 0.2", policy='accept = ["KP1", "DCC"]',
                                            **sections))


def entries(text: str, kind: HashType) -> list[revocation.Entry]:
    return [e for e in revocation.entries_of_dcc(text) if e.kind is kind]


def kept_seq(cfg) -> int | None:
    path = cfg.device.state_dir / FOLDER / MANIFEST
    return manifests.parse(path.read_bytes(), None).seq if path.exists() else None


def test_a_certificate_a_published_list_names_is_revoked_by_each_hash_type_and_nothing_else_moves_it(
        tmp_path, world, pins, broker, venue, caplog):
    texts, token = venue
    cfg = config(tmp_path, world, texts, token, broker)
    names = {"KR": entries(texts["KR"], HashType.UCI), "DE": entries(texts["DE"], HashType.COUNTRYCODEUCI),
             "FR": entries(texts["FR"], HashType.SIGNATURE), "IT": entries(texts["IT"], HashType.UCI)}
    # Each list revokes one more country, by its own hash type; seq 4 adds Italy, its bodies kept back at first.
    lists = {seq: world.revocation_list([e for c in ("KR", "DE", "FR", "IT")[:seq] for e in names[c]], seq=seq,
                                        bits=3) for seq in (1, 2, 3, 4)}
    door = Door()
    publisher = revocation.Publisher("127.0.0.1", broker.port)
    try:
        with caplog.at_level(logging.INFO), running_daemon(cfg, pins, on_decision=door) as daemon:
            wait_until(lambda: all(("accepted", None) in door.of(iss) for iss in ("KR", *COUNTRIES, "naver")))
            for seq, country in ((1, "KR"), (2, "DE"), (3, "FR")):
                revocation.publish(lists[seq], publisher)
                wait_until(lambda: ("rejected", "revoked") in door.of(country))
                assert kept_seq(cfg) == seq
            mark = door.count()
            wait_until(lambda: door.judged_again(mark, "KR", "DE", "FR", "IT", "naver"))
            assert {(iss, verdict, reason) for iss, verdict, reason in door.since(mark)} == {
                ("KR", "rejected", "revoked"), ("DE", "rejected", "revoked"), ("FR", "rejected", "revoked"),
                ("IT", "already_checked_in", None), ("naver", "already_checked_in", None)}

            # Seq 4: its manifest, and on the topic of the body that names Italy a tampered body, then the
            # body of another list: both refused, and seq 3 stays in force (Italy is let in).
            held = sorted(set(lists[4].bodies) - set(lists[3].bodies))
            assert held
            for name, body in lists[4].bodies.items():
                if name not in held:
                    publisher.publish(topics.revocation_body(name), body)
            spoilt = bytearray(lists[4].bodies[held[0]])
            spoilt[3] ^= 0xFF
            publisher.publish(topics.revocation_body(held[0]), bytes(spoilt))
            publisher.publish(topics.REVOCATION, lists[4].manifest)
            wait_until(lambda: "revocation body refused: not a body the revocation manifest wants" in caplog.text)
            unwanted = world.revocation_list(entries(world.mint_dcc(), HashType.UCI), seq=99).bodies
            publisher.publish(topics.revocation_body(held[0]), next(iter(unwanted.values())))
            wait_until(lambda: caplog.text.count("revocation body refused") == 2)
            # An older list, published again: refused as a rollback.
            publisher.publish(topics.REVOCATION, lists[2].manifest)
            wait_until(lambda: "revocation list seq 2 is not higher than the seq in force 3" in caplog.text)
            mark = door.count()
            wait_until(lambda: door.judged_again(mark, "IT", "KR"))
            assert ("IT", "already_checked_in", None) in door.since(mark) and kept_seq(cfg) == 3
            assert not [d for d in door.since(mark) if d[0] == "IT" and d[1] != "already_checked_in"]

            # The genuine body at last: seq 4 takes over.
            for name in held:
                publisher.publish(topics.revocation_body(name), lists[4].bodies[name])
            wait_until(lambda: ("rejected", "revoked") in door.of("IT"))
            assert kept_seq(cfg) == 4
            daemon.stop()
    finally:
        publisher.close()

    # Revoked is red, and never a record: the five first visits only.
    assert daemon.stats.sealed == 5
    assert 1.0 in changes(pins.log, "GPIO27")
    assert set(door.of("naver")) == {("accepted", None), ("already_checked_in", None)}
    for iss in ("KR", "DE", "FR", "IT"):
        assert [v for v in door.of(iss) if v[0] == "accepted"] == [("accepted", None)]
    # Nothing personal in the log: neither a UVCI nor a hash of one.
    for line in revocation.entries_of_dcc(texts["KR"]):
        assert line.digest.hex() not in caplog.text
    assert "URN:UVCI" not in caplog.text


def status(cfg) -> dict:
    path = cfg.device.runtime_dir / health.FILE
    return json.loads(path.read_text()) if path.exists() else {}


def test_with_revocation_required_no_list_or_a_stale_one_is_a_fault_for_dccs_only(tmp_path, world, pins, broker,
                                                                                  venue):
    texts, token = venue
    texts = {"KR": texts["KR"]}
    cfg = config(tmp_path, world, texts, token, broker, dcc="revocation = true\nmax_list_age_h = 1")
    now = int(time.time())
    stale = world.revocation_list([], seq=1, issued_at=now - 2 * 3600)
    fresh = world.revocation_list(entries(world.mint_dcc(), HashType.UCI), seq=2)  # another certificate
    door = Door()
    publisher = revocation.Publisher("127.0.0.1", broker.port)
    try:
        with running_daemon(cfg, pins, on_decision=door) as daemon:
            # A fault names no issuer: the door could not judge. Only the DCC gets it here.
            wait_until(lambda: ("fault", "revocation_list_missing") in door.of(None))
            wait_until(lambda: ("accepted", None) in door.of("naver"))  # KP1 tokens are still judged
            wait_until(lambda: "dcc_revocation" in status(cfg).get("faults", {}))
            assert status(cfg)["faults"]["dcc_revocation"] == ("no DCC revocation list in force "
                                                               "([dcc] revocation = true)")
            revocation.publish(stale, publisher)
            wait_until(lambda: ("fault", "revocation_list_stale") in door.of(None))
            wait_until(lambda: "issued" in status(cfg).get("faults", {}).get("dcc_revocation", ""))
            revocation.publish(fresh, publisher)
            wait_until(lambda: ("accepted", None) in door.of("KR"))
            wait_until(lambda: "dcc_revocation" not in status(cfg).get("faults", {"dcc_revocation": ""}))
            daemon.stop()
    finally:
        publisher.close()
    assert set(door.of("naver")) == {("accepted", None), ("already_checked_in", None)}
    assert set(door.of(None)) == {("fault", "revocation_list_missing"), ("fault", "revocation_list_stale")}
    assert door.of("KR")[0] == ("accepted", None)  # judged only once a fresh list was in force
    assert 1.0 in changes(pins.log, "GPIO22")  # amber: the fault was shown
    assert daemon.stats.sealed == 2


def test_a_list_a_technician_installs_is_adopted_by_the_running_daemon(tmp_path, world, pins, broker, venue,
                                                                       capsys):
    texts, token = venue
    texts = {"KR": texts["KR"]}
    cfg = config(tmp_path, world, texts, token, broker)
    folder = world.revocation_list(entries(texts["KR"], HashType.SIGNATURE), seq=1).write(tmp_path / "list")
    door = Door()
    with running_daemon(cfg, pins, on_decision=door):
        wait_until(lambda: ("accepted", None) in door.of("KR"))
        assert cli.main(["trust", "revocation", "install", str(folder), "--config", str(tmp_path / "qrgate.toml")]) == 0
        assert json.loads(capsys.readouterr().out)["installed"]["seq"] == 1
        wait_until(lambda: ("rejected", "revoked") in door.of("KR"))  # housekeeping adopts it within 5 s
