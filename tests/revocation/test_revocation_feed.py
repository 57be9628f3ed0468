"""A revocation list over MQTT (revocation.feed): the manifest, then the bodies it wants, a window at a time.

On a recording stand-in for the uplink first (which topics are taken and given up, in what order), then end
to end on a real Mosquitto: the authority's `publish` (lab.revocation) and the device's uplink and store.
"""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import wait_until
from firmware.backoff import Backoff
from firmware.revocation.feed import RevocationFeed
from firmware.revocation.hashes import HashType
from firmware.revocation.store import RevocationStore
from firmware.uplink import topics
from firmware.uplink.mqtt import MqttUplink
from lab import revocation

NOW = 1_750_000_000


class Uplink:
    """Records what the feed takes and gives up; `deliver` plays the broker handing a retained message over."""

    def __init__(self):
        self.taken: dict[str, object] = {}
        self.log: list[tuple[str, str]] = []

    def subscribe(self, topic, sub) -> None:
        self.taken[topic] = sub
        self.log.append(("+", topic))

    def unsubscribe(self, topic) -> None:
        del self.taken[topic]
        self.log.append(("-", topic))

    def bodies(self) -> list[str]:
        return sorted(t.rsplit("/", 1)[1] for t in self.taken)


def entries(n: int, seed: int) -> list[revocation.Entry]:
    rng = random.Random(seed)
    return [revocation.Entry(HashType.UCI, rng.randbytes(8), rng.randbytes(16)) for _ in range(n)]


@pytest.fixture
def root():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path, root):
    return RevocationStore(tmp_path / "state", root.public_key())


def test_the_manifests_topic_is_taken_at_every_connection(store):
    feed = RevocationFeed(store)
    [(topic, sub)] = feed.subscriptions().items()
    assert topic == topics.REVOCATION == "qrgate/v1/trust/revocation" and sub.qos == 0
    assert sub.handler == feed.manifest


def test_bodies_are_taken_a_window_at_a_time_and_each_given_up_once_here(store, root):
    rl = revocation.build(root, entries(300, 1), seq=1, issued_at=NOW, bits=3)
    uplink = Uplink()
    feed = RevocationFeed(store, window=3, clock=lambda: NOW)
    feed.attach(uplink)
    assert uplink.log == []
    feed.manifest(rl.manifest)
    order = [d.hex() for d in store.wanted()]
    assert len(order) == 8 and uplink.bodies() == sorted(order[:3])
    assert all(topic == topics.revocation_body(name) for _, topic in uplink.log for name in [topic[-64:]])
    for step in range(8):
        first = order[step]
        uplink.taken[topics.revocation_body(first)].handler(rl.bodies[first])
        assert uplink.bodies() == sorted(order[step + 1 : step + 4])
    assert store.current().manifest.seq == 1 and uplink.taken == {}
    assert len(uplink.log) == 16


def offered(store, root, seed: int) -> tuple[revocation.RevocationList, Uplink, RevocationFeed]:
    """A one-body list's manifest, as it arrives at a feed attached to a recording uplink."""
    rl = revocation.build(root, entries(50, seed), seq=1, issued_at=NOW)
    uplink = Uplink()
    feed = RevocationFeed(store, clock=lambda: NOW)
    feed.attach(uplink)
    feed.manifest(rl.manifest)
    return rl, uplink, feed


def test_a_refused_body_keeps_its_topic_taken(store, root, caplog):
    rl, uplink, _ = offered(store, root, 2)
    [name] = rl.bodies
    topic = topics.revocation_body(name)
    uplink.taken[topic].handler(rl.bodies[name][:-1])  # tampered on the broker
    uplink.taken[topic].handler(b"")  # cleared by the authority's next publish
    assert "revocation body refused" in caplog.text and uplink.bodies() == [name]
    uplink.taken[topic].handler(rl.bodies[name])
    assert uplink.taken == {} and store.current() is not None


def test_a_refused_manifest_takes_nothing(store, root):
    uplink = Uplink()
    feed = RevocationFeed(store, clock=lambda: NOW)
    feed.attach(uplink)
    other = revocation.build(Ed25519PrivateKey.generate(), entries(50, 3), seq=1, issued_at=NOW)
    feed.manifest(other.manifest)
    feed.manifest(b"\x00")
    assert uplink.log == [] and store.pending() is None


def test_without_a_broker_nothing_is_taken_and_a_later_uplink_takes_what_is_wanted(store, root):
    rl = revocation.build(root, entries(50, 4), seq=1, issued_at=NOW)
    feed = RevocationFeed(store, clock=lambda: NOW)
    feed.attach(None)
    feed.manifest(rl.manifest)  # as a technician's install would leave it pending
    assert store.pending().seq == 1
    uplink = Uplink()
    feed.attach(uplink)
    assert uplink.bodies() == sorted(rl.bodies)


def test_a_technicians_install_is_adopted_and_its_topics_given_up(store, root, tmp_path):
    rl, uplink, feed = offered(store, root, 5)
    assert uplink.bodies() == sorted(rl.bodies)
    RevocationStore(tmp_path / "state", root.public_key()).install(rl.write(tmp_path / "list"), NOW)
    feed.refresh()
    assert store.current().manifest.seq == 1 and uplink.taken == {}


def test_a_published_list_reaches_the_device_over_a_real_broker(broker, store, root):
    old = revocation.build(root, entries(3000, 6), seq=1, issued_at=NOW, bits=2)
    new = revocation.build(root, entries(3000, 6)[:-1] + entries(1, 7), seq=2, issued_at=NOW, bits=2)
    publisher = revocation.Publisher("127.0.0.1", broker.port)
    try:
        assert revocation.publish(old, publisher) == {"bodies": 4, "cleared": 0}
        feed = RevocationFeed(store, window=2, clock=lambda: NOW)
        link = MqttUplink("127.0.0.1", broker.port, client_id="qrgate-cafe-1-door-1", backoff=Backoff(0.1, 0.5),
                          subscriptions=feed.subscriptions(), max_packet=topics.MAX_PACKET)
        feed.attach(link)
        link.start()
        try:
            wait_until(lambda: store.current() is not None and store.current().manifest.seq == 1)
            changed = set(new.bodies) - set(old.bodies)
            assert revocation.publish(new, publisher) == {"bodies": 4, "cleared": len(changed)}
            wait_until(lambda: store.current().manifest.seq == 2)
            assert publisher.retained(topics.REVOCATION) == new.manifest
            for gone in set(old.bodies) - set(new.bodies):
                assert publisher.retained(topics.revocation_body(gone)) is None  # cleared from the broker
            wait_until(lambda: broker.log_tail(500).count("Received UNSUBSCRIBE from qrgate-cafe-1-door-1")
                       == 4 + len(changed))
        finally:
            link.stop()
    finally:
        publisher.close()
