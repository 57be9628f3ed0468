"""The door's side of anti-passback: answer from the peers' memory, share what this door made green.

`VenueShare` is one venue's link between its doors: `received` takes what
arrives on the venue topic (on paho's thread: capped, strictly parsed, counted,
never raising), `accepted` notes a new visit as this door's own and publishes
its hash (QoS 1, not retained), `elsewhere` says whether a peer accepted a token.
`DoorOnly` is the fallback with no venue secret or no broker: every door
remembers only its own visits, which is what the store already does, and says
why. `VenueVerifier` and `VenueGate` wrap the token verifier and the gate, so
that neither knows of any of this: the verifier turns an acceptance a peer
already gave into `replayed_elsewhere` (red, and the gate records nothing),
and the gate's new visits (durable and green: `Answer.rid`) are shared.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from firmware.errors import KeyFileError
from firmware.passback import message, secret
from firmware.passback.memory import PeerMemory
from firmware.passback.secret import VenueSecret
from firmware.uplink.mqtt import Subscription
from firmware.tokens.verdict import Kind, Reason, Verdict, rejected

if TYPE_CHECKING:
    from firmware.gate import Answer

logger = logging.getLogger(__name__)

VENUE, DOOR = "venue", "door"  # the modes `qrgate status` shows


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                on_ack: Callable[[bool, str], None] | None) -> bool:
        """False when the message cannot leave now (uplink.mqtt.MqttUplink)."""


class Share(Protocol):
    def elsewhere(self, seen_key: bytes, now: float) -> bool: ...

    def accepted(self, seen_key: bytes, seen_until: int, now: float) -> None: ...

    def status(self) -> dict[str, Any]: ...


def build(secret_path: Path | None, mqtt: bool, topic: str) -> VenueShare | DoorOnly:
    """The venue share when the device can take part (a secret and a broker), else per-door memory saying why."""
    if secret_path is None:
        return DoorOnly("no venue secret provisioned (passback.secret)")
    if not mqtt:
        return DoorOnly("MQTT disabled")
    try:
        key = secret.load(secret_path)
    except KeyFileError as exc:
        logger.warning("passback: %s", exc)
        return DoorOnly(f"the venue secret is unusable: {exc}")
    return VenueShare(key, topic)


class DoorOnly:
    """Per-door memory only: the store's "already checked in", nothing shared; `why` says what is missing."""

    def __init__(self, why: str):
        self.why = why
        logger.info("passback: per-door memory only (%s)", why)

    def elsewhere(self, seen_key: bytes, now: float) -> bool:
        return False

    def accepted(self, seen_key: bytes, seen_until: int, now: float) -> None:
        pass

    def subscriptions(self) -> dict[str, Subscription]:
        return {}

    def attach(self, publisher: Publisher | None) -> None:
        pass

    def link(self, up: bool) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"mode": DOOR, "why": self.why}


class VenueShare:
    """This door's part in its venue: what it tells its peers, what they told it, and whether it can hear them."""

    def __init__(self, secret: VenueSecret, topic: str, memory: PeerMemory | None = None,
                 clock: Callable[[], float] = time.time):
        self.secret, self.topic, self.clock = secret, topic, clock
        self.memory = memory if memory is not None else PeerMemory()  # (an empty memory is falsy)
        self.publisher: Publisher | None = None  # set once the uplink exists (it is built with `received`)
        self.shared = self.unsent = self.refused = 0  # own hashes: acknowledged, not handed over, refused
        self.kept = self.expired = self.bad = 0  # peers' messages: kept, already over, not a note
        self.replayed = 0  # tokens answered replayed_elsewhere
        self._connected = False
        self._granted: bool | None = None  # the venue topic's SUBACK: None until one came
        self._mode: tuple[str, str | None] | None = None
        self._lock = threading.Lock()

    def subscriptions(self) -> dict[str, Subscription]:
        """The venue topic at QoS 1 (what a short outage held in the session still comes), without our own."""
        return {self.topic: Subscription(self.received, qos=1, no_local=True, on_granted=self.granted)}

    def attach(self, publisher: Publisher | None) -> None:
        self.publisher = publisher

    # --- the door's side (the scan loop's thread) ---

    def elsewhere(self, seen_key: bytes, now: float) -> bool:
        if self.memory.elsewhere(self.secret.hash(seen_key), int(now)):
            self.replayed += 1
            return True
        return False

    def accepted(self, seen_key: bytes, seen_until: int, now: float) -> None:
        """A new visit, durable and green: this door's own, and its peers are told."""
        h = self.secret.hash(seen_key)
        self.memory.note(h, seen_until, int(now), own=True)
        sent = self.publisher is not None and self.publisher.publish(
            self.topic, message.encode(h, seen_until), qos=1, retain=False, on_ack=self._acked)
        if not sent:
            self.unsent += 1

    def _acked(self, ok: bool, reason: str) -> None:
        if ok:
            self.shared += 1
            return
        self.refused += 1
        if self.refused == 1:  # every one would be the same refusal: an ACL without this venue's role
            logger.warning("passback: the broker refused to relay this door's hashes: %s", reason)

    # --- the venue topic's side (paho's thread: never blocks, never raises) ---

    def received(self, payload: bytes) -> None:
        try:
            note = message.parse(payload)
        except message.MessageError as exc:
            self.bad += 1
            if self.bad & (self.bad - 1) == 0:  # 1, 2, 4, 8 …: a flood is told, not logged line by line
                logger.warning("passback: %d bad messages on the venue topic dropped (the last: %s)", self.bad, exc)
            return
        if self.memory.note(note.hash, note.seen_until, int(self.clock())):
            self.kept += 1
        else:
            self.expired += 1

    def link(self, up: bool) -> None:
        """The broker connection came or went (uplink's on_state)."""
        with self._lock:
            self._connected = up
            if not up:
                self._granted = None
        self._changed()

    def granted(self, ok: bool) -> None:
        """The broker's answer to the venue topic's SUBSCRIBE: refused when its ACL lacks this venue's role."""
        with self._lock:
            self._granted = ok
        self._changed()

    # --- what status shows ---

    def mode(self) -> tuple[str, str | None]:
        with self._lock:
            if not self._connected:
                return DOOR, "broker not connected"
            if self._granted is None:
                return DOOR, "subscribing to the venue topic"
            if not self._granted:
                return DOOR, "the broker refused the venue topic"
            return VENUE, None

    def _changed(self) -> None:
        mode = self.mode()
        with self._lock:
            if mode == self._mode:
                return
            self._mode = mode
        if mode[0] == VENUE:
            logger.info("passback: sharing accepted tokens with the venue's doors")
        else:
            logger.info("passback: per-door memory only (%s)", mode[1])

    def status(self) -> dict[str, Any]:
        mode, why = self.mode()
        return {"mode": mode, "why": why, "peer_hashes": self.memory.peers(), "shared": self.shared,
                "unsent": self.unsent, "refused": self.refused, "received": self.kept,
                "expired": self.expired, "bad": self.bad, "evicted": self.memory.evicted,
                "replayed_elsewhere": self.replayed}


class Verifier(Protocol):
    def verify(self, text: str, now: float) -> Verdict: ...


class VenueVerifier:
    """The token verifier, then the venue's memory: an acceptance a peer already gave is `replayed_elsewhere`."""

    def __init__(self, inner: Verifier, share: Share):
        self.inner, self.share = inner, share

    def verify(self, text: str, now: float) -> Verdict:
        verdict = self.inner.verify(text, now)
        if verdict.kind is Kind.ACCEPTED and verdict.claims is not None \
                and self.share.elsewhere(verdict.claims.seen_key, now):
            return rejected(Reason.REPLAYED_ELSEWHERE, verdict.claims)
        return verdict


class Decider(Protocol):
    def decide(self, text: str, now: float) -> Answer: ...


class VenueGate:
    """The gate, then sharing: only a new visit (a record was made durable, the answer green) is told."""

    def __init__(self, gate: Decider, share: Share):
        self.gate, self.share = gate, share

    def decide(self, text: str, now: float) -> Answer:
        answer = self.gate.decide(text, now)
        if answer.rid is not None:
            verdict = answer.verdict
            # A new visit's verdict is an acceptance: the gate stored it with its claims and window.
            assert verdict is not None and verdict.claims is not None and verdict.seen_until is not None
            self.share.accepted(verdict.claims.seen_key, verdict.seen_until, now)
        return answer
