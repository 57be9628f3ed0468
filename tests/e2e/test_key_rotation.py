"""The health authority's sealing key rotates through a trust list on the wire, with no technician: the real
daemon seals to the key in force, the authority opens every record with the key it names (issue 20)."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import load, running_daemon, wait_until, write_frames
from custodian.investigate import investigate
from custodian.storage import SqliteStorage
from firmware import app, keys
from firmware.store import seal
from lab import signers
from tests.e2e.test_daemon import Custodian


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    authority = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="authority", protocol=mqtt.MQTTv5)
    authority.connect("127.0.0.1", port)
    authority.loop_start()
    try:
        authority.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        authority.disconnect()
        authority.loop_stop()


def test_an_authority_key_rotates_through_a_trust_list_and_every_record_opens_with_its_own_key(
        tmp_path, world, pins, broker):
    old = signers.new_authority(tmp_path / "old", seal.X25519)  # the key devices in the field seal to
    new = keys.load_authority_private(world.authority_dir)  # a new key: the post-quantum hybrid
    world.trust_file.write_bytes(world.trust_list([world.naver], seq=1, authority=[old.public_key()]))
    custodian = Custodian(broker.port)
    try:
        before = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "f1", [world.mint()]),
                                                  mqtt_port=broker.port))
        decisions: list = []
        app.run(before, on_decision=decisions.append, pin_factory=pins)
        [first] = custodian.wait_for(1)

        # The next list names both keys, the new one in force from now; it arrives over MQTT only.
        seq2 = world.trust_list([world.naver, world.kakao], seq=2,
                                authority=[old.public_key(), (new.public_key(), int(time.time()) - 1)])
        _publish_retained(broker.port, "qrgate/v1/trustlist", seq2)
        # A kakao token: unknown to list 1, so nothing is recorded until list 2 is in force (no race to lose).
        frames = write_frames(tmp_path / "f2", [world.mint(world.kakao, ttl=300)], gap_frames=10)
        after = load(tmp_path, world.config_toml(tmp_path / "state", frames, mqtt_port=broker.port,
                                                 camera="loop = true", decoder="hold_s = 0.2"))
        with running_daemon(after, pins, on_decision=decisions.append):
            wait_until(lambda: ("accepted", None) in [(d.verdict, d.reason) for d in decisions[1:]])
            _, second = custodian.wait_for(2)
    finally:
        custodian.close()

    assert (first.version, first.suite, first.kid) == (2, 0x0020, old.public_key().kid)
    assert (second.version, second.suite, second.kid) == (2, 0x647A, new.public_key().kid)
    assert {(d.verdict, d.reason) for d in decisions[1:]} <= {("rejected", "unknown_issuer"), ("accepted", None),
                                                              ("already_checked_in", None)}
    storage = SqliteStorage(tmp_path / "custodian.db")
    storage.add([(r, r.wire()) for r in (first, second)], received_at=time.time())
    found = investigate(storage, [new, old], "cafe-1", first.ts, second.ts, "dr-kim", "C", tmp_path / "audit.jsonl")
    assert found.failed == {} and [v["iss"] for v in found.visits] == ["naver", "kakao"]
    only_new = investigate(storage, [new], "cafe-1", first.ts, second.ts, "dr-kim", "C", tmp_path / "audit.jsonl")
    assert [v["iss"] for v in only_new.visits] == ["kakao"] and only_new.failed == {"key_not_given": 1}
