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


class LosingRelay:
    """The device's path to the broker. It relays both ways until the device's first visit PUBLISH: that one it
    swallows, then it drops the link and turns the device away, until `restore()` makes it a plain relay."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.swallowed = threading.Event()
        self.restored = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="losing-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._server.accept()
            except OSError:
                return
            if self.swallowed.is_set() and not self.restored:
                down.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [down, up]
            threading.Thread(target=self._copy, args=(up, down), daemon=True).start()
            threading.Thread(target=self._upward, args=(down, up), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src, dst)

    def _upward(self, down: socket.socket, up: socket.socket) -> None:
        buf = b""
        try:
            while data := down.recv(65536):
                buf += data
                while (n := _packet(buf)) is not None:
                    packet, buf = buf[:n], buf[n:]
                    if not self.restored and not self.swallowed.is_set() and _is_visit_publish(packet):
                        self.swallowed.set()
                        self._drop(down, up)
                        return
                    up.sendall(packet)
        except OSError:
            pass
        self._drop(down, up)

    @staticmethod
    def _drop(*sockets: socket.socket) -> None:
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        self.restored = True

    def close(self) -> None:
        self._server.close()
        self._drop(*self._sockets)
        for s in self._sockets:
            s.close()


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
        relay.close()
