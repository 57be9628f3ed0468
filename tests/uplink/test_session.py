"""The MQTT session outlives a connection: a reconnect, or a restarted daemon, resumes it."""

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from firmware.backoff import Backoff
from lab.broker import Mosquitto
from firmware.uplink.mqtt import MqttUplink


def uplink(port: int, **kw) -> MqttUplink:
    return MqttUplink("127.0.0.1", port, client_id="qrgate-cafe-1-door-1", backoff=Backoff(0.1, 0.5), **kw)


def test_a_new_connection_resumes_the_session_with_clean_start_false(broker):
    first = uplink(broker.port)
    first.start()
    assert first.connected.wait(10) and first.session_present is False
    first.stop()
    second = uplink(broker.port)  # as after a daemon restart: same client id, no state kept in memory
    second.start()
    try:
        assert second.connected.wait(10) and second.session_present is True
    finally:
        second.stop()
    assert "c0" in broker.log_tail(50)  # the CONNECT asked for no clean start


def authority(port: int) -> mqtt.Client:
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="authority", protocol=mqtt.MQTTv5)
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    return sender


def test_a_list_published_while_the_device_is_away_reaches_it_when_it_reconnects(broker):
    got, arrived = [], threading.Event()

    def on_trustlist(data: bytes) -> None:
        got.append(data)
        arrived.set()

    first = uplink(broker.port, subscriptions={"qrgate/v1/trustlist": on_trustlist})
    first.start()
    assert first.connected.wait(10)
    first.stop()
    sender = authority(broker.port)
    sender.publish("qrgate/v1/trustlist", b"list seq 2", qos=1, retain=True).wait_for_publish(10)
    sender.disconnect()
    sender.loop_stop()
    second = uplink(broker.port, subscriptions={"qrgate/v1/trustlist": on_trustlist})
    second.start()
    try:
        assert arrived.wait(10) and got == [b"list seq 2"]  # retained: it comes with the subscribe
    finally:
        second.stop()


def test_a_flood_of_messages_too_large_for_the_device_never_stops_the_next_list(broker):
    """Mosquitto 2.0.11 keeps an in-flight slot for every QoS 1 message it drops as larger than a client's
    Maximum Packet Size and never frees it: after 20 of them (its max_inflight_messages) nothing more
    reaches that client. The device takes its subscriptions at QoS 0, which holds no slot."""
    got: list[bytes] = []
    link = uplink(broker.port, subscriptions={"qrgate/v1/trustlist": got.append}, max_packet=1 << 12)
    link.start()
    sender = authority(broker.port)
    try:
        assert link.connected.wait(10)
        wait_until(lambda: "Received SUBSCRIBE from qrgate-cafe-1-door-1" in broker.log_tail(200))
        for _ in range(40):
            sender.publish("qrgate/v1/trustlist", bytes(1 << 13), qos=1).wait_for_publish(10)
        sender.publish("qrgate/v1/trustlist", b"list seq 2", qos=1, retain=True).wait_for_publish(10)
        wait_until(lambda: got == [b"list seq 2"])
    finally:
        sender.disconnect()
        sender.loop_stop()
        link.stop()
    assert broker.log_tail(2000).count("Dropping too large outgoing PUBLISH for qrgate-cafe-1-door-1") == 40


def test_a_qos_1_subscription_gets_what_came_while_away_and_never_its_own_messages(broker):
    """The venue's passback topic as the daemon subscribes to it: QoS 1, so the session keeps what a peer said
    while this door was away (a QoS 0 subscription would lose it); no_local, so a door never hears itself."""
    from firmware.uplink.mqtt import Subscription

    topic = "qrgate/v1/cafe-1/passback"
    heard: dict[str, list[bytes]] = {"door-1": [], "door-2": []}
    granted: dict[str, list[bool]] = {"door-1": [], "door-2": []}

    def door(name: str) -> MqttUplink:
        sub = Subscription(heard[name].append, qos=1, no_local=True, on_granted=granted[name].append)
        return MqttUplink("127.0.0.1", broker.port, client_id=f"qrgate-cafe-1-{name}", backoff=Backoff(0.1, 0.5),
                          subscriptions={topic: sub})

    door1, door2 = door("door-1"), door("door-2")
    door1.start()
    door2.start()
    acks: list[bool] = []
    try:
        wait_until(lambda: granted["door-1"] == granted["door-2"] == [True])
        door2.stop()  # away: its session (clean_start false) keeps its QoS 1 subscription
        door1.publish(topic, b"while door-2 was away", on_ack=lambda ok, why: acks.append(ok))
        wait_until(lambda: acks == [True])
        door2 = door("door-2")
        door2.start()
        wait_until(lambda: heard["door-2"] == [b"while door-2 was away"])
        door2.publish(topic, b"from door-2", on_ack=lambda ok, why: acks.append(ok))
        # Door-1's own message went through the broker before door-2's: had it come back, it would be first.
        wait_until(lambda: heard["door-1"] == [b"from door-2"] and acks == [True, True])
    finally:
        door1.stop()
        door2.stop()
    assert heard["door-2"] == [b"while door-2 was away"]  # and not its own "from door-2"
    assert "qrgate/v1/cafe-1/passback (QoS 1)" in broker.log_tail(500)


def test_a_topic_taken_while_connected_brings_its_retained_message_and_is_given_up_on_request(broker):
    """What the revocation feed does with a list's bodies: subscribe to one topic at a time, then let it go."""
    from firmware.uplink.mqtt import Subscription

    got: list[tuple[str, bytes]] = []
    sender = authority(broker.port)
    sender.publish("qrgate/v1/trust/revocation/aa", b"body a", qos=1, retain=True).wait_for_publish(10)
    link = uplink(broker.port)
    link.start()
    try:
        assert link.connected.wait(10)
        link.subscribe("qrgate/v1/trust/revocation/aa", Subscription(lambda data: got.append(("aa", data))))
        wait_until(lambda: got == [("aa", b"body a")])
        link.unsubscribe("qrgate/v1/trust/revocation/aa")
        link.unsubscribe("qrgate/v1/trust/revocation/never")  # nothing taken: nothing to give up
        wait_until(lambda: "Received UNSUBSCRIBE from qrgate-cafe-1-door-1" in broker.log_tail(200))
        link.subscribe("qrgate/v1/trust/revocation/bb", Subscription(lambda data: got.append(("bb", data))))
        wait_until(lambda: broker.log_tail(200).count("Received SUBSCRIBE from qrgate-cafe-1-door-1") == 2)
        sender.publish("qrgate/v1/trust/revocation/aa", b"body a again", qos=1).wait_for_publish(10)
        sender.publish("qrgate/v1/trust/revocation/bb", b"body b", qos=1).wait_for_publish(10)
        wait_until(lambda: ("bb", b"body b") in got)
        assert got == [("aa", b"body a"), ("bb", b"body b")]
    finally:
        sender.disconnect()
        sender.loop_stop()
        link.stop()
    log = broker.log_tail(400)
    assert log.count("Received UNSUBSCRIBE from qrgate-cafe-1-door-1") == 1
    # Given up at the broker too: "body a again" was never sent to the device, only the retained one before.
    assert log.count("'qrgate/v1/trust/revocation/aa'") == 3  # its two publishes received, one sent on


def test_reconnects_are_counted_and_every_topic_taken_is_taken_anew_after_the_broker_comes_back(tmp_path):
    """Topics taken before the connection, and kept, are taken at each: a broker without persistence forgets the
    session, and the device subscribes anew (a topic given up before is not)."""
    from firmware.uplink.mqtt import Subscription

    b = Mosquitto(tmp_path / "broker").start()
    got: list[bytes] = []
    link = uplink(b.port)
    link.subscribe("qrgate/v1/trust/revocation/cc", Subscription(got.append))  # not connected yet
    link.subscribe("qrgate/v1/trust/revocation/dd", Subscription(got.append))
    link.unsubscribe("qrgate/v1/trust/revocation/dd")
    link.start()
    try:
        assert link.connected.wait(10)
        for message, restart in ((b"c", False), (b"c2", True)):
            if restart:
                b.stop()
                b.start()  # same port
                wait_until(lambda: link.reconnects == 1 and link.connected.is_set(), timeout=20)
            sender = authority(b.port)
            # dd first: were it taken, it would come before cc, in the order the broker had them.
            sender.publish("qrgate/v1/trust/revocation/dd", b"d", qos=1, retain=True).wait_for_publish(10)
            sender.publish("qrgate/v1/trust/revocation/cc", message, qos=1, retain=True).wait_for_publish(10)
            wait_until(lambda: got[-1:] == [message])
            sender.disconnect()
            sender.loop_stop()
        assert got == [b"c", b"c2"] and link.reconnects == 1
    finally:
        link.stop()
        b.stop()
