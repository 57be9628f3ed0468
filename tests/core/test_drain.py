"""The drain on fakes at its seams (record store, uplink): a record leaves the card on a success PUBACK only."""

from __future__ import annotations

import threading

from conftest import wait_until
from firmware.faults import Faults
from firmware.stats import Stats
from firmware.uplink.drain import Drain


class Store:
    def __init__(self, rids: list[bytes]):
        self.rows = {i + 1: (rid, b"wire-" + rid) for i, rid in enumerate(rids)}
        self.deleted: list[bytes] = []
        self.lock = threading.Lock()

    def after(self, position, limit):
        with self.lock:
            return [(k, rid, wire) for k, (rid, wire) in sorted(self.rows.items()) if position is None or k > position][:limit]

    def delete(self, rids):
        with self.lock:
            self.deleted += rids
            self.rows = {k: v for k, v in self.rows.items() if v[0] not in set(rids)}

    def depth(self):
        with self.lock:
            return len(self.rows), None


class Uplink:
    """Takes every publish and keeps its ack callback; the test plays the broker."""

    def __init__(self):
        self.connected = threading.Event()
        self.connected.set()
        self.sent: dict[bytes, list] = {}
        self.lock = threading.Lock()

    def publish(self, topic, payload, qos=1, retain=False, on_ack=None):
        with self.lock:
            if topic.endswith("/visits"):
                self.sent.setdefault(payload.removeprefix(b"wire-"), []).append(on_ack)
        return True


def running(store, uplink, faults):
    drain = Drain(store, uplink, "qrgate/v1/cafe-1/door-1/visits", "qrgate/v1/cafe-1/door-1/status",
                  status=lambda: {}, stats=Stats(), faults=faults, window=2, retry_refused_s=3600)
    stop = threading.Event()
    thread = threading.Thread(target=drain.run, args=(stop,), daemon=True)
    thread.start()
    return drain, stop, thread


def test_only_a_success_puback_deletes_and_a_refused_record_stays_a_fault():
    store, uplink, faults = Store([b"a", b"b", b"c"]), Uplink(), Faults()
    drain, stop, thread = running(store, uplink, faults)
    try:
        wait_until(lambda: set(uplink.sent) == {b"a", b"b", b"c"})
        assert store.deleted == []  # handed to paho is not delivered
        uplink.sent[b"a"][0](True, "")
        uplink.sent[b"b"][0](False, "Not authorized")
        wait_until(lambda: store.deleted == [b"a"])
        assert "publish_refused" in faults.active()
        uplink.sent[b"c"][0](True, "")
        wait_until(lambda: store.deleted == [b"a", b"c"])
        assert store.depth()[0] == 1 and len(uplink.sent[b"b"]) == 1  # held, not resent at once
    finally:
        stop.set()
        drain.wake()
        thread.join(5)
    assert not thread.is_alive()


def test_after_a_reconnect_what_was_not_acknowledged_is_sent_again():
    store, uplink, faults = Store([b"a", b"b"]), Uplink(), Faults()
    drain, stop, thread = running(store, uplink, faults)
    try:
        wait_until(lambda: set(uplink.sent) == {b"a", b"b"})
        uplink.sent[b"a"][0](True, "")
        wait_until(lambda: store.deleted == [b"a"])
        drain.reconnected()
        wait_until(lambda: len(uplink.sent[b"b"]) == 2)
        assert len(uplink.sent[b"a"]) == 1
    finally:
        stop.set()
        drain.wake()
        thread.join(5)
