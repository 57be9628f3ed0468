"""A paho-mqtt 2.x client speaking MQTT v5, with per-message acknowledgement callbacks.

v5 because under 3.1.1 a broker that refuses a publish by ACL still acknowledges
it; here a PUBACK's reason code reaches the caller, who deletes a record only
on success. paho reconnects by itself (connect_async + loop_start); the delay
before each attempt comes from `Backoff` (exponential with jitter), set anew
after every lost connection or failed attempt. The session is persistent
(clean_start false, a session expiry), also across a daemon restart, so a
reconnect resumes the subscriptions and the in-flight messages instead of
starting over.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware.backoff import Backoff

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

AckCallback = Callable[[bool, str], None]  # (success, the reason code's name when refused)


@dataclass(frozen=True)
class Tls:
    ca: Path | None  # None: the system's CAs
    cert: Path | None = None
    key: Path | None = None

    def apply(self, client: mqtt.Client) -> None:
        """TLS on a paho client: server checked against `ca`, our certificate and key if given (mutual TLS)."""
        client.tls_set(ca_certs=str(self.ca) if self.ca else None, certfile=str(self.cert) if self.cert else None,
                       keyfile=str(self.key) if self.key else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)


@dataclass(frozen=True)
class Subscription:
    """A topic's handler and its options: QoS 0 unless asked; `no_local` (MQTT v5): not our own messages back;
    `on_granted` hears each SUBACK's verdict (False: the broker's ACL refused it)."""

    handler: Callable[[bytes], object]
    qos: int = 0
    no_local: bool = False
    on_granted: Callable[[bool], None] = lambda ok: None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes


class MqttUplink:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        tls: Tls | None = None,
        will: Will | None = None,
        keepalive: int = 30,
        max_inflight: int = 20,
        subscriptions: dict[str, Callable[[bytes], object] | Subscription] | None = None,
        on_connected: Callable[[], None] = lambda: None,
        on_state: Callable[[bool, str], None] = lambda up, why: None,
        session_expiry_s: int = 86400,
        backoff: Backoff | None = None,
        max_packet: int = 1 << 16,
    ):
        """`max_packet`: the largest packet the broker may send us (MQTT v5 Maximum Packet Size); a larger
        one it drops instead of delivering, so no message can make this client hold more than that. The
        daemon raises it to a trust list's size; a technician's check subscribes to nothing."""
        self.host, self.port, self.keepalive = host, port, keepalive
        self.max_packet = max_packet
        self.session_expiry_s = session_expiry_s
        self.backoff = backoff or Backoff()
        self.session_present: bool | None = None  # from the last CONNACK
        self.reconnects = 0  # successful connections after the first
        self.connected = threading.Event()
        self._subscriptions = {topic: s if isinstance(s, Subscription) else Subscription(s)
                               for topic, s in (subscriptions or {}).items()}
        self._suback: dict[int, Subscription] = {}  # SUBSCRIBE mid -> what it asked for
        self._on_connected, self._on_state = on_connected, on_state
        self._acks: dict[int, AckCallback | None] = {}
        self._early: dict[int, tuple[bool, str]] = {}  # PUBACKs that beat publish() returning
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if tls is not None:
            tls.apply(c)
        if will is not None:
            c.will_set(will.topic, will.payload, qos=1, retain=True)
        c.max_inflight_messages_set(max_inflight)
        c.on_connect, c.on_disconnect = self._connected, self._disconnected
        c.on_connect_fail = lambda client, userdata: self._retry_later()
        c.on_publish, c.on_message, c.on_subscribe = self._published, self._message, self._subscribed
        self._client = c

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.MaximumPacketSize = self.max_packet
        self._retry_later()
        self._client.connect_async(self.host, self.port, self.keepalive, clean_start=False, properties=properties)
        self._client.loop_start()

    def _retry_later(self) -> None:
        """Set paho's next reconnect wait to one jittered delay."""
        delay = self.backoff.next()
        # paho's stub says int; it sleeps a float, and the jitter is sub-second (checked with paho-mqtt 2.1/2.2).
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Disconnect, first publishing `final` (topic, payload) retained if connected."""
        if final is not None and self.connected.is_set():
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # the connection went meanwhile; the last will says offline instead
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_ack: AckCallback | None = None) -> bool:
        """Hand a message to paho; False when it cannot take it now (not connected)."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        if qos == 0:
            return True
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._acks[info.mid] = on_ack
        if early is not None and on_ack is not None:
            on_ack(*early)
        return True

    def _connected(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                   properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._on_state(False, f"broker refused the connection: {reason_code}")
            return
        self.backoff.reset()
        self._retry_later()
        if self.session_present is not None:
            self.reconnects += 1
        self.session_present = bool(flags.session_present)
        self.connected.set()
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        for topic, sub in subscriptions:
            self._subscribe(topic, sub)
        self._on_state(True, "connected (session resumed)" if self.session_present else "connected (new session)")
        self._on_connected()

    def subscribe(self, topic: str, sub: Subscription) -> None:
        """Subscribe to `topic` now if connected, and at every connection after, until `unsubscribe`."""
        with self._lock:
            self._subscriptions[topic] = sub
        if self.connected.is_set():
            self._subscribe(topic, sub)

    def unsubscribe(self, topic: str) -> None:
        """No more of `topic` (a message already on its way is dropped: no handler takes it)."""
        with self._lock:
            if self._subscriptions.pop(topic, None) is None:
                return
        if self.connected.is_set():
            self._client.unsubscribe(topic)

    def _subscribe(self, topic: str, sub: Subscription) -> None:
        # QoS 0 unless a subscription asks: the trust list is retained state, which comes again with every
        # subscribe, so QoS 0 loses nothing a reconnect does not bring back; and Mosquitto 2.0.11 never frees
        # the in-flight slot of a QoS 1 message it drops as larger than our Maximum Packet Size: 20 of those,
        # from a broker not configured as shipped (max_packet_size), would stop every later message to us.
        _, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=sub.qos, noLocal=sub.no_local))
        if mid is not None:
            with self._lock:
                self._suback[mid] = sub

    def _disconnected(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                      reason_code: ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        self._retry_later()
        self._on_state(False, f"disconnected: {reason_code}")

    def _published(self, client: mqtt.Client, userdata: object, mid: int, reason_code: ReasonCode,
                   properties: Properties) -> None:
        ok = not reason_code.is_failure
        reason = "" if ok else str(reason_code)  # naming a code costs a search: only for a refusal
        with self._lock:
            if mid not in self._acks:
                self._early[mid] = (ok, reason)
                return
            callback = self._acks.pop(mid)
        if callback is not None:
            callback(ok, reason)

    def _subscribed(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                    properties: Properties) -> None:
        with self._lock:
            sub = self._suback.pop(mid, None)
        if sub is not None:
            sub.on_granted(bool(reason_codes) and not reason_codes[0].is_failure)

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        sub = self._subscriptions.get(message.topic)
        if sub is not None:
            try:
                # paho says bytes | bytearray; a received message's payload is bytes (struct.unpack's "s").
                sub.handler(cast(bytes, message.payload))
            except Exception:
                logger.exception("handling a message on %s failed", message.topic)
