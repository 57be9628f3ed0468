"""The MQTT session outlives a connection: a reconnect, or a restarted daemon, resumes it."""

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from firmware.uplink.backoff import Backoff
from firmware.broker import Mosquitto
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


def test_messages_for_the_device_wait_in_its_session_while_it_is_away(broker):
    got, arrived = [], threading.Event()

    def on_trustlist(data: bytes) -> None:
        got.append(data)
        arrived.set()

    first = uplink(broker.port, subscriptions={"qrgate/v1/trustlist": on_trustlist})
    first.start()
    assert first.connected.wait(10)
    first.stop()
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="authority", protocol=mqtt.MQTTv5)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    sender.publish("qrgate/v1/trustlist", b"list seq 2", qos=1).wait_for_publish(10)
    sender.disconnect()
    sender.loop_stop()
    second = uplink(broker.port, subscriptions={"qrgate/v1/trustlist": on_trustlist})
    second.start()
    try:
        assert arrived.wait(10) and got == [b"list seq 2"]  # queued in the session (not retained)
    finally:
        second.stop()


def test_reconnects_are_counted_after_the_broker_comes_back(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    link = uplink(b.port)
    link.start()
    try:
        assert link.connected.wait(10)
        b.stop()
        b.start()  # same port
        wait_until(lambda: link.reconnects == 1 and link.connected.is_set(), timeout=20)
    finally:
        link.stop()
        b.stop()
