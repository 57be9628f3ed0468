"""The fleet simulator: each device its own connection, identity and topic, every visit a sealed record."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from custodian.fleet import MAX_DEVICES_PER_WORKER, RECORDS, Fleet, identities, shares
from firmware.store.seal import OpeningKey
from firmware.errors import QrgateError
from firmware.store.records import SealedRecord
from tests.conftest import wait_until


def test_identities_are_distinct_and_follow_the_topic_scheme():
    fleet = identities(3)
    assert [d.client_id for d in fleet] == [f"qrgate-venue-0000{i}-door-1" for i in range(3)]
    assert [d.topic for d in fleet] == [f"qrgate/v1/venue-0000{i}/door-1/visits" for i in range(3)]


def test_shares_split_a_total_exactly():
    assert shares(10, 3) == [4, 3, 3]
    assert sum(shares(2201, 4)) == 2201


def test_more_devices_per_worker_than_select_can_watch_is_refused():
    with pytest.raises(QrgateError, match="select"):
        Fleet("127.0.0.1", 1, 10, 1.0, 1.0, OpeningKey.generate().public_key(),
              devices_per_worker=MAX_DEVICES_PER_WORKER + 1)


@pytest.mark.parametrize("sealed", list(RECORDS))
def test_each_device_publishes_sealed_visits_under_its_own_identity(broker, sealed):
    """A subscriber sees every visit on its device's topic, sealed to the authority as `sealed` says (a record of
    either version, either suite), from that device's client."""
    suite, version = RECORDS[sealed]
    authority = OpeningKey.generate(suite)
    seen: dict[bytes, tuple[str, dict]] = {}
    lock = threading.Lock()

    def on_message(client, userdata, message):
        record = SealedRecord.from_wire(message.payload)
        with lock:
            seen[record.rid] = (message.topic, record.open(authority))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        sub.subscribe("qrgate/v1/+/+/visits", qos=1)
        assert subscribed.wait(10)
        # Two workers of two devices each, 40 visits over one second.
        with Fleet("127.0.0.1", broker.port, 4, 40, 1.0, authority.public_key(), devices_per_worker=2,
                   version=version) as fleet:
            fleet.start()
            fleet.go()
            published = fleet.join()
        assert published.summary["workers"] == 2
        assert published.summary["devices_connected"] == 4
        assert published.summary["acked"] == published.summary["offered_visits"] == 40
        wait_until(lambda: len(seen) == 40, timeout=10)
    finally:
        sub.disconnect()
        sub.loop_stop()

    assert set(seen) == set(published.times)
    for topic, visit in seen.values():
        assert topic == f"qrgate/v1/{visit['venue']}/{visit['device']}/visits"
        assert visit["kind"] == "KP1" and len(visit["cti"]) == 16 and visit["v"] == version
    assert len({topic for topic, _ in seen.values()}) > 1  # visits spread over the devices
    log = broker.log_tail(10_000)
    for device in identities(4):
        assert f"as {device.client_id} (p5" in log  # each device is its own MQTT v5 connection
    for wall, mono, ack in published.times.values():
        assert wall > 0 and ack >= mono
