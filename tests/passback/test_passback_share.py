"""The venue share on a real gate and store, with a stand-in publisher: what is told, when, and what a door
answers once a peer has told it; per-door memory when the device cannot take part, saying why."""

from __future__ import annotations

import logging
import os

import pytest
from firmware.faults import Faults
from firmware.gate import Gate
from firmware.passback import message, secret
from firmware.passback.share import DOOR, VENUE, DoorOnly, VenueGate, VenueShare, VenueVerifier, build
from firmware.store.buffer import SqliteRecordStore
from firmware.store.seal import OpeningKey
from firmware.tokens.verdict import Claims, Kind, Reason, Verdict, rejected

NOW = 1_800_000_000
TOPIC = "qrgate/v1/cafe-1/passback"


class Publisher:
    """What the uplink was handed; `up` False: it takes nothing (not connected); acks come when `ack()` says."""

    def __init__(self, up: bool = True):
        self.up, self.sent, self.pending = up, [], []

    def publish(self, topic, payload, qos, retain, on_ack) -> bool:  # no defaults: the share says each
        if not self.up:
            return False
        self.sent.append((topic, payload, qos, retain))
        self.pending.append(on_ack)
        return True

    def ack(self, ok: bool = True, reason: str = "") -> None:
        for callback in self.pending:
            callback(ok, reason)
        self.pending.clear()


class Verifier:
    """Accepts every text as the token it names: the text is its cti's hex."""

    def verify(self, text: str, now: float) -> Verdict:
        if text == "junk":
            return rejected(Reason.MALFORMED)
        claims = Claims(iss="naver", iat=NOW, exp=NOW + 15, cti=bytes.fromhex(text))
        return Verdict(Kind.ACCEPTED, None, claims, seen_until=int(now) + 20)


class Ready:
    def blocking(self, now: float, text: str | None = None) -> str | None:
        return None


class Door:
    """One door: its share, its store and its gate, as app.run wires them."""

    def __init__(self, folder, key: bytes, up: bool = True):
        self.share = VenueShare(secret.VenueSecret(key), TOPIC, clock=lambda: NOW)
        self.publisher = Publisher(up)
        self.share.attach(self.publisher)
        self.share.link(up)
        self.share.granted(True)
        self.store = SqliteRecordStore(folder / "visits.db")
        key = OpeningKey.generate().public_key()  # the authority's, as the trust list in force names it
        gate = Gate(VenueVerifier(Verifier(), self.share), self.store, lambda now: key, "cafe-1", folder.name,
                    Faults(), Ready())
        self.gate = VenueGate(gate, self.share)

    def show(self, cti: bytes):
        return self.gate.decide(cti.hex(), NOW)

    def records(self) -> int:
        return self.store.depth()[0]


@pytest.fixture
def doors(tmp_path):
    key = os.urandom(32)
    made = []
    for name in ("door-1", "door-2"):
        (tmp_path / name).mkdir()
        made.append(Door(tmp_path / name, key))
    yield made
    for d in made:
        d.store.close()


def relay(src: Door, dst: Door) -> None:
    """The broker: what one door published, the other receives (never its own: no_local)."""
    for topic, payload, qos, retain in src.publisher.sent:
        assert (topic, qos, retain) == (TOPIC, 1, False)
        dst.share.received(payload)
    src.publisher.ack()


def test_a_token_green_at_one_door_is_replayed_elsewhere_at_the_next_with_no_record(doors):
    door1, door2 = doors
    cti = os.urandom(16)
    first = door1.show(cti)
    assert first.verdict.kind is Kind.ACCEPTED and first.rid is not None and door1.records() == 1
    assert len(door1.publisher.sent) == 1
    payload = door1.publisher.sent[0][1]
    assert cti not in payload and message.parse(payload).seen_until == NOW + 20
    relay(door1, door2)
    second = door2.show(cti)
    assert second.verdict.kind is Kind.REJECTED and second.verdict.reason is Reason.REPLAYED_ELSEWHERE
    assert second.verdict.iss == "naver"  # the claims stay with the refusal: the event log names the issuer
    assert second.rid is None and not second.verdict.green and door2.records() == 0
    assert door2.publisher.sent == []  # a red answer is not told
    assert door1.share.status()["shared"] == 1 and door2.share.status()["replayed_elsewhere"] == 1
    other = os.urandom(16)
    assert door2.show(other).verdict.kind is Kind.ACCEPTED  # what no peer told stays a new visit


def test_its_own_repeat_stays_already_checked_in_and_is_told_once(doors):
    door1, door2 = doors
    cti = os.urandom(16)
    door1.show(cti)
    relay(door1, door2)
    again = door1.show(cti)
    assert again.verdict.kind is Kind.ALREADY_CHECKED_IN and again.verdict.green and again.rid is None
    assert door1.records() == 1 and door1.publisher.sent == [door1.publisher.sent[0]]


def test_both_doors_at_once_each_keeps_its_own_as_already_checked_in(doors):
    door1, door2 = doors
    cti = os.urandom(16)
    assert door1.show(cti).verdict.kind is Kind.ACCEPTED
    assert door2.show(cti).verdict.kind is Kind.ACCEPTED  # before either heard of the other
    relay(door1, door2)
    relay(door2, door1)
    for door in doors:
        assert door.show(cti).verdict.kind is Kind.ALREADY_CHECKED_IN


def test_another_venue_s_secret_gives_another_hash(tmp_path):
    cti = os.urandom(16)
    a, b = secret.VenueSecret(os.urandom(32)), secret.VenueSecret(os.urandom(32))
    assert a.hash(cti) != b.hash(cti) and len(a.hash(cti)) == 16
    assert a.hash(cti) == a.hash(cti) != a.hash(os.urandom(16))
    (tmp_path / "d").mkdir()
    door = Door(tmp_path / "d", os.urandom(32))
    door.share.received(message.encode(a.hash(cti), NOW + 20))
    assert door.show(cti).verdict.kind is Kind.ACCEPTED
    door.store.close()


def test_a_peer_hash_past_its_window_is_dropped_and_counted(doors):
    door1, door2 = doors
    cti = os.urandom(16)
    door2.share.received(message.encode(door2.share.secret.hash(cti), NOW - 1))
    assert door2.share.status()["expired"] == 1 and door2.share.status()["peer_hashes"] == 0
    assert door2.show(cti).verdict.kind is Kind.ACCEPTED


def test_bad_messages_are_counted_dropped_and_logged_sparingly_without_their_bytes(doors, caplog):
    door = doors[0]
    junk = [os.urandom(24) for _ in range(100)] + [b"", bytes(1 << 20), b"\x83\x01\x50" + b"\xab" * 16]
    with caplog.at_level(logging.WARNING):
        for payload in junk:
            door.share.received(payload)  # never raises
    status = door.share.status()
    assert status["bad"] == len(junk) and status["received"] == 0 and status["peer_hashes"] == 0
    assert 1 <= len(caplog.records) <= 8  # 1, 2, 4 … 64: a flood is told, not echoed
    assert "ab" * 4 not in caplog.text and all("bad messages" in r.getMessage() for r in caplog.records)


def test_a_hash_that_cannot_leave_is_counted_and_the_door_still_answers(tmp_path):
    (tmp_path / "d").mkdir()
    door = Door(tmp_path / "d", os.urandom(32), up=False)
    answer = door.show(os.urandom(16))
    assert answer.verdict.kind is Kind.ACCEPTED and door.records() == 1
    assert door.share.status()["unsent"] == 1 and door.share.status()["mode"] == DOOR
    door.store.close()


def test_a_refused_publish_is_counted_and_warned_once(doors, caplog):
    door = doors[0]
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            door.show(os.urandom(16))
            door.publisher.ack(False, "Not authorized")
    assert door.share.status()["refused"] == 3 and door.share.status()["shared"] == 0
    assert caplog.text.count("refused") == 1


def test_the_mode_follows_the_link_and_the_subscription(caplog):
    share = VenueShare(secret.VenueSecret(os.urandom(32)), TOPIC)
    with caplog.at_level(logging.INFO):
        assert share.mode() == (DOOR, "broker not connected")
        share.link(True)
        assert share.mode() == (DOOR, "subscribing to the venue topic")
        share.granted(True)
        assert share.mode() == (VENUE, None) and share.status()["mode"] == VENUE
        share.link(False)
        assert share.mode() == (DOOR, "broker not connected")
        share.link(True)
        share.granted(False)
        assert share.mode() == (DOOR, "the broker refused the venue topic")
    said = [r.getMessage() for r in caplog.records]
    assert said.count("passback: sharing accepted tokens with the venue's doors") == 1
    assert "passback: per-door memory only (the broker refused the venue topic)" in said
    [sub] = share.subscriptions().values()
    assert (sub.qos, sub.no_local) == (1, True) and list(share.subscriptions()) == [TOPIC]


def test_other_answers_pass_through_untold(doors):
    door = doors[0]
    assert door.gate.decide("junk", NOW).verdict.reason is Reason.MALFORMED
    assert door.publisher.sent == []


def write_secret(path, data: bytes, mode: int = 0o600):
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_per_door_memory_when_the_device_cannot_take_part(tmp_path):
    good = write_secret(tmp_path / "venue.secret", os.urandom(32))
    assert isinstance(build(good, True, TOPIC), VenueShare)
    cases = {
        "no venue secret provisioned": build(None, True, TOPIC),
        "MQTT disabled": build(good, False, TOPIC),
        "may be read by others": build(write_secret(tmp_path / "open", os.urandom(32), 0o644), True, TOPIC),
        "not 32 random bytes": build(write_secret(tmp_path / "short", os.urandom(31)), True, TOPIC),
        "one byte repeated": build(write_secret(tmp_path / "zeros", bytes(32)), True, TOPIC),
        "No such file": build(tmp_path / "missing", True, TOPIC),
    }
    (tmp_path / "link").symlink_to(good)
    cases["symbolic link"] = build(tmp_path / "link", True, TOPIC)
    for why, share in cases.items():
        assert isinstance(share, DoorOnly) and share.status()["mode"] == DOOR and why in share.status()["why"], why
        assert not share.elsewhere(os.urandom(16), NOW) and share.subscriptions() == {}


def test_systemd_s_credential_copy_takes_the_place_of_the_root_only_file(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    write_secret(creds / "venue.secret", os.urandom(32), 0o440)  # the service's own copy: its folder guards it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert isinstance(build(tmp_path / "etc" / "venue.secret", True, TOPIC), VenueShare)


def test_a_new_secret_is_32_random_bytes_owner_only_and_never_replaced(tmp_path):
    path = tmp_path / "venue.secret"
    secret.write_new(path)
    assert len(path.read_bytes()) == 32 and path.stat().st_mode & 0o777 == 0o600
    first = path.read_bytes()
    with pytest.raises(FileExistsError):
        secret.write_new(path)
    assert path.read_bytes() == first and "VenueSecret(…)" == repr(secret.load(path))


def test_the_lab_makes_a_venue_secret_once(tmp_path, capsys):
    from firmware import cli

    out = tmp_path / "venue.secret"
    assert cli.main(["venue-secret", "new", "--out", str(out)]) == 0
    made = out.read_bytes()
    assert isinstance(build(out, True, TOPIC), VenueShare) and out.stat().st_mode & 0o777 == 0o600
    assert cli.main(["venue-secret", "new", "--out", str(out)]) == 2  # never replaced: the doors hold it
    assert out.read_bytes() == made and "exists" in capsys.readouterr().err


def test_the_memory_it_is_given_is_the_one_it_fills_even_empty():
    from firmware.passback.memory import PeerMemory

    memory = PeerMemory(capacity=4)  # empty, so falsy: it must not be swapped for a default one
    share = VenueShare(secret.VenueSecret(os.urandom(32)), TOPIC, memory, clock=lambda: NOW)
    share.received(message.encode(bytes(16), NOW + 5))
    assert share.memory is memory and len(memory) == 1



def test_every_count_counts_each_one(doors):
    door1, door2 = doors
    ctis = [os.urandom(16) for _ in range(3)]
    for cti in ctis:
        door1.show(cti)
    relay(door1, door2)
    for cti in ctis[:2]:
        door2.show(cti)
    door2.share.received(message.encode(bytes(16), NOW - 5))
    door2.share.received(message.encode(bytes(16), NOW - 6))
    away = VenueShare(secret.VenueSecret(os.urandom(32)), TOPIC, clock=lambda: NOW)  # never attached to an uplink
    away.accepted(ctis[0], NOW + 20, NOW)
    away.accepted(ctis[1], NOW + 20, NOW)
    assert door1.share.status() == {
        "mode": VENUE, "why": None, "peer_hashes": 0, "shared": 3, "unsent": 0, "refused": 0, "received": 0,
        "expired": 0, "bad": 0, "evicted": 0, "replayed_elsewhere": 0}
    assert door2.share.status() == {
        "mode": VENUE, "why": None, "peer_hashes": 3, "shared": 0, "unsent": 0, "refused": 0, "received": 3,
        "expired": 2, "bad": 0, "evicted": 0, "replayed_elsewhere": 2}
    assert away.status()["unsent"] == 2 and away.status()["mode"] == DOOR


def test_the_first_refusal_is_warned_with_the_broker_s_reason(doors, caplog):
    door = doors[0]
    with caplog.at_level(logging.WARNING):
        door.show(os.urandom(16))
        door.publisher.ack(False, "Not authorized")
        assert [r.getMessage() for r in caplog.records] == [
            "passback: the broker refused to relay this door's hashes: Not authorized"]


def test_bad_messages_are_logged_at_each_power_of_two_with_the_last_reason(doors, caplog):
    door = doors[0]
    with caplog.at_level(logging.WARNING):
        for _ in range(70):
            door.share.received(b"\x82\x01\x02")
    assert [r.getMessage() for r in caplog.records] == [
        f"passback: {n} bad messages on the venue topic dropped (the last: its message is not of 3 fields)"
        for n in (1, 2, 4, 8, 16, 32, 64)]


def test_a_reconnection_waits_for_its_suback_and_the_mode_is_logged_once_per_change(caplog):
    share = VenueShare(secret.VenueSecret(os.urandom(32)), TOPIC)
    with caplog.at_level(logging.INFO):
        share.link(True)
        share.granted(True)
        share.granted(True)
        share.link(True)
        share.link(False)
        share.link(True)
        assert share.mode() == (DOOR, "subscribing to the venue topic")  # the old SUBACK no longer counts
    assert [r.getMessage() for r in caplog.records] == [
        "passback: per-door memory only (subscribing to the venue topic)",
        "passback: sharing accepted tokens with the venue's doors",
        "passback: per-door memory only (broker not connected)",
        "passback: per-door memory only (subscribing to the venue topic)"]


def test_the_subscription_hands_messages_and_subacks_to_the_share():
    share = VenueShare(secret.VenueSecret(os.urandom(32)), TOPIC, clock=lambda: NOW)
    [sub] = share.subscriptions().values()
    sub.on_granted(True)
    share.link(True)
    sub.handler(message.encode(bytes(16), NOW + 5))
    assert share.mode() == (VENUE, None) and share.status()["received"] == 1


def test_what_build_says_and_logs(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert build(None, True, TOPIC).status() == {"mode": DOOR,
                                                     "why": "no venue secret provisioned (passback.secret)"}
        assert build(tmp_path / "s", False, TOPIC).status() == {"mode": DOOR, "why": "MQTT disabled"}
        bad = write_secret(tmp_path / "open", os.urandom(32), 0o644)
        refused = build(bad, True, TOPIC)
    why = f"the venue secret {bad} may be read by others (mode 644); it must be 0600"
    assert refused.status() == {"mode": DOOR, "why": f"the venue secret is unusable: {why}"}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "passback: per-door memory only (no venue secret provisioned (passback.secret))"),
        ("INFO", "passback: per-door memory only (MQTT disabled)"),
        ("WARNING", f"passback: {why}"),
        ("INFO", f"passback: per-door memory only (the venue secret is unusable: {why})")]
    key = os.urandom(32)
    share = build(write_secret(tmp_path / "good", key), True, TOPIC)
    assert isinstance(share, VenueShare) and share.topic == TOPIC
    assert share.secret.hash(b"x") == secret.VenueSecret(key).hash(b"x")
