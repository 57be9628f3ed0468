"""A record is deleted on its PUBACK, never when it is handed to paho (issue 17).

paho re-sends an unacknowledged message on the same session, so a test in
which the daemon lives on cannot tell "deleted on PUBACK" from "deleted on
hand-off": the broker gets the record either way. Here the PUBLISH is lost and
the daemon that sent it does not live on: a relay swallows the first visit
PUBLISH, drops the link and refuses the device, and the daemon is stopped.
Only the store can still hold the record, and the next daemon must send it.
"""

from __future__ import annotations

import socket
import threading

from conftest import load, running_daemon, store_rows, write_frames
from crashharness import Custodian, wait_for
from firmware import app
from relay import Relay


def _packet(buf: bytes) -> int | None:
    """The length of the MQTT packet at the head of `buf`, or None while it is incomplete."""
    length, shift = 0, 0
    for i in range(1, min(len(buf), 5)):
        length |= (buf[i] & 0x7F) << shift
        shift += 7
        if not buf[i] & 0x80:
            total = i + 1 + length
            return total if len(buf) >= total else None
    return None


def _is_visit_publish(packet: bytes) -> bool:
    if packet[0] >> 4 != 3:
        return False
    head = next(i for i in range(1, 5) if not packet[i] & 0x80) + 1
    topic = packet[head + 2:head + 2 + int.from_bytes(packet[head:head + 2], "big")]
    return topic.endswith(b"/visits")


class LosingRelay(Relay):
    """Relays both ways until the device's first visit PUBLISH: that one it swallows, then it drops the link and
    turns the device away, until `restore()` makes it a plain relay."""

    def __init__(self, target_port: int):
        self.swallowed = threading.Event()
        self.restored = False
        super().__init__(target_port)

    def admit(self) -> bool:
        return self.restored or not self.swallowed.is_set()

    def _upward(self, down: socket.socket, up: socket.socket) -> None:
        buf = b""
        try:
            while data := down.recv(65536):
                buf += data
                while (n := _packet(buf)) is not None:
                    packet, buf = buf[:n], buf[n:]
                    if not self.restored and not self.swallowed.is_set() and _is_visit_publish(packet):
                        self.swallowed.set()
                        self.drop(down, up)
                        return
                    up.sendall(packet)
        except OSError:
            pass
        self.drop(down, up)

    def restore(self) -> None:
        self.restored = True


def test_a_publish_lost_before_its_puback_stays_in_the_store_and_the_next_run_sends_it(tmp_path, world, pins,
                                                                                      broker):
    relay = LosingRelay(broker.port)
    custodian = Custodian(broker.port)
    try:
        cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "f1", [world.mint()]),
                                               mqtt_port=relay.port, camera="loop = true", decoder="hold_s = 60",
                                               mqtt="drain_on_exit_s = 0"))
        with running_daemon(cfg, pins):
            assert relay.swallowed.wait(30), "the daemon never published its visit"
        assert store_rows(cfg) == 1  # handed to paho, never acknowledged: still kept
        assert custodian.count() == 0

        relay.restore()
        cfg = load(tmp_path, world.config_toml(tmp_path / "state", write_frames(tmp_path / "f2", []),
                                               mqtt_port=relay.port, mqtt="drain_on_exit_s = 30"))
        app.run(cfg, pin_factory=pins)
        wait_for(lambda: custodian.count() == 1, 30, "the record at the custodian")
        assert store_rows(cfg) == 0
    finally:
        custodian.close()
        relay.cut()
