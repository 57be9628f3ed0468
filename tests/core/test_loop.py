"""The scan loop on fakes at its seams (camera, decoder, gate, feedback): the order of a frame's life."""

from __future__ import annotations

import threading

import numpy as np

from firmware.gate import Answer
from firmware.leds import patterns
from firmware.scanner.frames import Frame
from firmware.scanner.loop import ScanLoop
from firmware.stats import Stats
from firmware.tokens.verdict import Kind, Verdict


class Camera:
    dropped = 0

    def __init__(self, events: list, count: int):
        self.events, self.count = events, count

    def frames(self, stop: threading.Event):
        for seq in range(self.count):
            yield Frame(np.zeros((4, 4), np.uint8), seq, 0.0, release=lambda seq=seq: self.events.append(("release", seq)))


class Decoder:
    """Frame 0 breaks the decoder; every other frame shows its own code."""

    def __init__(self, events: list):
        self.events, self.seq = events, -1

    def decode(self, gray) -> list[str]:
        self.seq += 1
        self.events.append(("decode", self.seq))
        if self.seq == 0:
            raise RuntimeError("a decoder bug")
        return [f"KP1:token-{self.seq}"]


class Gate:
    def __init__(self, events: list, kind: Kind = Kind.ACCEPTED):
        self.events, self.kind = events, kind

    def decide(self, text: str, now: float) -> Answer:
        self.events.append(("decide", text))
        return Answer(Verdict(self.kind), patterns.for_verdict(self.kind))


class Feedback:
    def __init__(self, events: list):
        self.events = events

    def show(self, pattern, door: bool = False) -> None:
        self.events.append(("show", pattern.name, door))


def run(events: list, frames: int, kind: Kind = Kind.ACCEPTED, door: bool = False) -> list:
    decisions: list = []
    turns: list = []
    loop = ScanLoop(Camera(events, frames), Decoder(events), Gate(events, kind), Feedback(events), Stats(),
                    decisions.append, hold_s=0.0, door=door, on_turn=turns.append)
    loop.run(threading.Event())
    assert len(turns) == frames  # every turn feeds the watchdog
    return decisions


def test_a_frame_goes_back_to_the_camera_before_its_visitor_is_answered():
    events: list = []
    run(events, frames=2)
    assert events.index(("release", 1)) < events.index(("decide", "KP1:token-1"))
    assert events.index(("decide", "KP1:token-1")) < events.index(("show", patterns.for_verdict(Kind.ACCEPTED).name,
                                                                   False))


def test_a_decoder_exception_releases_the_frame_and_the_loop_goes_on():
    events: list = []
    decisions = run(events, frames=3)
    assert ("release", 0) in events and [d.verdict for d in decisions] == ["accepted", "accepted"]


def test_the_door_opens_for_a_new_visit_only():
    for kind, opens in ((Kind.ACCEPTED, True), (Kind.ALREADY_CHECKED_IN, False), (Kind.REJECTED, False)):
        events: list = []
        run(events, frames=2, kind=kind, door=True)
        assert [e[2] for e in events if e[0] == "show"] == [opens]


def test_a_gate_that_raises_is_the_fault_never_green():
    events: list = []

    class Broken(Gate):
        def decide(self, text, now):
            raise RuntimeError("a bug")

    decisions: list = []
    loop = ScanLoop(Camera(events, 2), Decoder(events), Broken(events), Feedback(events), Stats(), decisions.append,
                    hold_s=0.0, door=True)
    loop.run(threading.Event())
    assert [(d.verdict, d.reason) for d in decisions] == [("fault", "internal_error")]
    assert [e for e in events if e[0] == "show"] == [("show", patterns.FAULT.name, False)]
