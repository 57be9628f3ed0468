"""The scan loop on fakes at its seams (camera, decoder, gate, feedback): the order of a frame's life."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from firmware.faults import Faults
from firmware.gate import Answer
from firmware.leds import patterns
from firmware.scanner.decode import FirstRead
from firmware.scanner.dedupe import Dedupe
from firmware.scanner.frames import Frame
from firmware.scanner.loop import ScanLoop
from firmware.scanner.workers import DecodePool
from firmware.stats import Stats
from firmware.tokens.verdict import Claims, Kind, Reason, Verdict, rejected


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


# What a decision leaves behind: the event (the events log, a display), the counters (`qrgate status`, the demo,
# the benchmarks) and the journal. The fakes below script a camera whose frames carry their code in the pixels.

NOW = 1_800_000_000.0
CODES = {1: ["KP1:new"], 2: ["KP1:again"], 3: ["KP1:expired"], 4: ["KP1:broken"], 5: [], 6: ["HC1:rule"]}
RID = bytes(range(16))
NAVER = Claims(iss="naver", iat=int(NOW), exp=int(NOW) + 15, cti=b"\x07" * 16)


class Scripted:
    """A camera: for each turn None (a silent turn) or (code, t), a frame of that code arriving at monotonic t."""

    def __init__(self, turns: list, dropped: int = 0):
        self.turns, self.dropped, self.shown = turns, dropped, []

    def frames(self, stop: threading.Event):
        for seq, turn in enumerate(self.turns):
            if turn is None:
                yield None
                continue
            code, t = turn
            frame = Frame(np.full((4, 4), code, np.uint8), seq, t)
            self.shown.append(frame)
            yield frame


class Pixels:
    """A decoder that reads the code from the plane it is handed, and notes when it was busy decoding."""

    def __init__(self):
        self.busy: list[tuple[float, float]] = []

    def decode(self, gray) -> list[str]:
        entered = time.monotonic()
        texts = CODES[int(gray[0, 0])]
        while time.monotonic() == entered:  # some measurable time spent decoding, at the clock's resolution
            pass
        self.busy.append((entered, time.monotonic()))
        return texts


class Judge:
    """The gate: an answer per code, and the time each code was judged at."""

    def __init__(self):
        self.judged: list[tuple[str, float]] = []

    def decide(self, text: str, now: float) -> Answer:
        self.judged.append((text, now))
        if text == "KP1:broken":
            raise RuntimeError("a bug")
        if text == "KP1:new":
            return Answer(Verdict(Kind.ACCEPTED, None, NAVER, seen_until=int(NOW) + 20), patterns.for_verdict(
                Kind.ACCEPTED), rid=RID)
        if text == "KP1:again":
            return Answer(Verdict(Kind.ALREADY_CHECKED_IN, None, NAVER), patterns.for_verdict(Kind.ALREADY_CHECKED_IN))
        if text == "HC1:rule":
            return Answer(Verdict(Kind.REJECTED, Reason.RULE_FAILED, rule="VR-DE-0001"),
                          patterns.for_verdict(Kind.REJECTED))
        return Answer(rejected(Reason.EXPIRED), patterns.for_verdict(Kind.REJECTED))


class Recorder(Stats):
    """The daemon's counters, also keeping what each call was given, as the scan benchmark's recorder does."""

    def __init__(self):
        super().__init__()
        self.frames_seen: list[tuple[int, list[str]]] = []
        self.answers: list[tuple[str, float, float]] = []

    def scanned(self, seq, texts, decode_ms, frame_ms, dropped) -> None:
        super().scanned(seq, texts, decode_ms, frame_ms, dropped)
        self.frames_seen.append((seq, texts))

    def answered(self, label, frame_t, latency_ms) -> None:
        super().answered(label, frame_t, latency_ms)
        self.answers.append((label, frame_t, latency_ms))


def scan(turns: list, dropped: int = 0, decoder: Pixels | None = None, **kw):
    camera, judge, stats, decisions = Scripted(turns, dropped), Judge(), Recorder(), []
    decoder = decoder or Pixels()
    loop = ScanLoop(camera, decoder, judge, Feedback([]), stats, decisions.append, clock=lambda: NOW, **kw)
    loop.run(threading.Event())
    return camera, decoder, judge, stats, decisions


def test_each_event_carries_the_verdict_reason_issuer_pattern_time_and_the_new_visits_rid():
    _, _, judge, _, decisions = scan([(c, time.monotonic()) for c in (1, 2, 3, 4)])
    assert [(d.verdict, d.reason, d.iss, d.pattern, d.rid) for d in decisions] == [
        ("accepted", None, "naver", patterns.for_verdict(Kind.ACCEPTED).name, RID.hex()),
        ("already_checked_in", None, "naver", patterns.for_verdict(Kind.ALREADY_CHECKED_IN).name, None),
        ("rejected", "expired", None, patterns.for_verdict(Kind.REJECTED).name, None),
        ("fault", "internal_error", None, patterns.FAULT.name, None),
    ]
    assert all(d.ts == NOW for d in decisions)  # the wall clock of the answer
    assert all(d.rule is None for d in decisions)
    assert judge.judged == [(text, NOW) for text in ("KP1:new", "KP1:again", "KP1:expired", "KP1:broken")]


def test_the_counters_count_each_answer_by_verdict_and_reason():
    _, _, _, stats, _ = scan([(c, time.monotonic()) for c in (1, 2, 3, 4, 1)], hold_s=0.0)
    assert stats.decisions == {"accepted": 2, "already_checked_in": 1, "rejected:expired": 1,
                               "fault:internal_error": 1}


def test_latency_is_from_the_frames_arrival_to_its_answer_in_milliseconds_in_the_event_and_the_counters():
    """Frames that arrived 1000 s and 2000 s before the run: the latency is bracketed by the clock read around it."""
    before = time.monotonic()
    camera, _, _, stats, decisions = scan([(1, before - 1000.0), (3, before - 2000.0)])
    after = time.monotonic()
    for frame, decision, (_, frame_t, latency), frame_ms in zip(camera.shown, decisions, stats.answers,
                                                                  stats.frame_ms):
        assert frame_t == frame.t  # the benchmark pairs each green with the frame it was decided on
        assert (before - frame.t) * 1000 <= latency <= (after - frame.t) * 1000
        assert (before - frame.t) * 1000 <= frame_ms <= (after - frame.t) * 1000
        assert abs(decision.latency_ms - latency) <= 0.005  # the event's figure, to its hundredths
    assert stats.latency()["median"] is not None and len(decisions) == 2


def test_decode_time_is_the_decoders_time_on_the_frame_in_milliseconds():
    before = time.monotonic()
    _, decoder, _, stats, _ = scan([(5, time.monotonic()), (1, time.monotonic())])
    after = time.monotonic()
    for (entered, left), decode_ms in zip(decoder.busy, stats.decode_ms, strict=True):
        assert (left - entered) * 1000 <= decode_ms <= (after - before) * 1000


def test_the_counters_see_every_frame_its_codes_and_the_cameras_drops():
    _, _, _, stats, _ = scan([None, (5, time.monotonic()), None, (1, time.monotonic())], dropped=7)
    assert stats.frames_seen == [(1, []), (3, ["KP1:new"])] and stats.frames == 2 and stats.dropped == 7


def test_a_silent_turn_feeds_the_watchdog_and_the_loop_goes_on_to_the_next_frame():
    turns: list = []
    decoded: list = []
    decoder = Pixels()
    camera, _, _, _, decisions = scan([None, (1, time.monotonic())], decoder=decoder,
                                      on_turn=lambda frame: (turns.append(frame), decoded.append(len(decoder.busy))))
    assert turns == [None, camera.shown[0]]  # the daemon is READY only once a turn brings a frame
    assert decoded == [0, 1]  # ... and that frame has been read
    assert [d.verdict for d in decisions] == ["accepted"]


def test_the_loop_ends_when_stopped_and_the_camera_is_told_to_stop():
    stop = threading.Event()

    class Endless:
        dropped = 0

        def frames(self, stop: threading.Event):
            for seq in range(100):
                if stop.is_set():
                    return
                yield Frame(np.full((4, 4), 1, np.uint8), seq, time.monotonic())
            raise AssertionError("the camera was never told to stop")

    decisions: list = []
    loop = ScanLoop(Endless(), Pixels(), Judge(), Feedback([]), Stats(), lambda d: (decisions.append(d), stop.set()))
    loop.run(stop)
    assert [d.verdict for d in decisions] == ["accepted"]


def test_by_default_a_code_is_held_for_the_documented_one_and_a_half_seconds_and_the_door_stays_shut():
    """docs/configuration.md: `hold_s` 1.5; the door relay is pulsed only where the configuration enables it."""
    events: list = []
    camera = Scripted([(1, 100.0), (1, 101.4), (1, 103.0)])
    loop = ScanLoop(camera, Pixels(), Judge(), Feedback(events), Stats(), lambda d: None)
    loop.run(threading.Event())
    assert events == [("show", patterns.for_verdict(Kind.ACCEPTED).name, False)] * 2


def test_the_journal_names_each_verdict_and_its_reason_never_the_code(caplog):
    caplog.set_level(logging.INFO, logger="firmware.scanner.loop")
    _, _, _, _, decisions = scan([(c, time.monotonic()) for c in (1, 2, 3)])
    lines = [r.getMessage() for r in caplog.records if r.name == "firmware.scanner.loop"]
    assert len(lines) == len(decisions) == 3
    for line, d in zip(lines, decisions):
        assert d.verdict in line and (f"({d.reason})" in line if d.reason else "(" not in line)
    assert "KP1:" not in caplog.text and RID.hex() not in caplog.text


def test_a_failed_business_rule_is_named_in_the_event_and_counted_by_its_identifier():
    _, _, _, stats, decisions = scan([(6, time.monotonic()), (3, time.monotonic())])
    assert [(d.verdict, d.reason, d.rule) for d in decisions] == [("rejected", "rule_failed", "VR-DE-0001"),
                                                                   ("rejected", "expired", None)]
    assert stats.decisions == {"rejected:rule_failed:VR-DE-0001": 1, "rejected:expired": 1}
    assert [label for label, _, _ in stats.answers] == ["rejected:rule_failed:VR-DE-0001", "rejected:expired"]


# With decode workers: the loop reads each frame fast and offers the pool what it missed. A real DecodePool
# on a two-stage decoder that reads codes from the pixels: code 5 (empty to the fast read) is "KP1:new" to a
# worker, and code 7 is a frame whose worker the test holds until the loop has moved on.

class Staged(Pixels):
    """`first` reads what Pixels reads; `more` reads code 5 as KP1:new, once `go` is set (code 7 waits for it)."""

    def __init__(self, events: list | None = None):
        super().__init__()
        self.events = events if events is not None else []
        self.go = threading.Event()
        self.go.set()

    def first(self, gray) -> FirstRead:
        code = int(gray[0, 0])
        self.events.append(("first", code))
        return FirstRead([] if code == 7 else self.decode(gray), located=[f"located in {code}"])

    def more(self, gray, first: FirstRead) -> list[str]:
        code = int(gray[0, 0])
        self.events.append(("more", code))
        assert self.go.wait(10)
        # Read where the fast read located it: the worker is handed what `first` found.
        return ["KP1:new"] if code in (5, 7) and first.located == [f"located in {code}"] else []


class Camera2(Scripted):
    """A Scripted camera whose frames note their release, and which notes when the stream is closed. It keeps
    the stream it handed out, as a live camera does: only closing it ends the stream."""

    def __init__(self, turns: list, events: list):
        super().__init__(turns)
        self.events = events
        self.streams: list = []

    def frames(self, stop: threading.Event):
        self.streams.append(self._frames(stop))
        return self.streams[-1]

    def _frames(self, stop: threading.Event):
        try:
            for frame in super().frames(stop):
                yield frame if frame is None else Frame(frame.gray, frame.seq, frame.t,
                                                        lambda seq=frame.seq: self.events.append(("release", seq)))
        finally:
            self.events.append(("camera closed",))


def pooled(turns: list, decoder: Staged | None = None, late_s: float = 30.0, hold_s: float = 1.5, events=None):
    events = [] if events is None else events
    decoder = decoder or Staged(events)
    judge, stats, decisions = Judge(), Recorder(), []
    camera = Camera2(turns, events)
    feedback = Feedback(events)
    loop = ScanLoop(camera, decoder, judge, feedback, stats, decisions.append, hold_s=hold_s, clock=lambda: NOW)
    loop.use_pool(DecodePool(lambda: decoder, 1, loop.recovered, Faults(), stats, late_s=late_s))
    loop.run(threading.Event())
    return events, judge, stats, decisions


def test_with_workers_a_frame_the_fast_read_missed_is_read_by_a_worker_released_then_decided():
    t = time.monotonic()
    events, judge, stats, decisions = pooled([(5, t)])
    assert [d.verdict for d in decisions] == ["accepted"] and judge.judged == [("KP1:new", NOW)]
    assert events.index(("first", 5)) < events.index(("more", 5)) < events.index(("release", 0)) \
        < events.index(("show", patterns.for_verdict(Kind.ACCEPTED).name, False))
    assert stats.frames_seen == [(0, [])] and stats.recovered == 1  # the loop's own read found nothing


def test_a_frame_the_fast_read_reads_is_never_offered_to_a_worker():
    events, _, stats, decisions = pooled([(1, time.monotonic())])
    assert ("more", 1) not in events and stats.recovered == 0 and [d.verdict for d in decisions] == ["accepted"]
    assert events.index(("release", 0)) < events.index(("show", patterns.for_verdict(Kind.ACCEPTED).name, False))


def test_one_code_read_by_the_loop_and_by_a_worker_is_decided_once_whichever_comes_first():
    decoder = Staged()
    decoder.go.clear()  # the worker reads frame 0 only after the loop has decided frame 1's same code
    t = time.monotonic()
    judge_calls: list = []

    class Releasing(Judge):
        def decide(self, text, now):
            judge_calls.append(text)
            decoder.go.set()
            return super().decide(text, now)

    events: list = []
    stats, decisions = Recorder(), []
    loop = ScanLoop(Camera2([(7, t), (1, t + 0.1)], events), decoder, Releasing(), Feedback(events), stats,
                    decisions.append, clock=lambda: NOW)
    loop.use_pool(DecodePool(lambda: decoder, 1, loop.recovered, Faults(), stats))
    loop.run(threading.Event())
    assert judge_calls == ["KP1:new"] and stats.recovered == 1  # the worker's older read came, and was not decided


def test_a_workers_answer_after_the_visitor_has_gone_is_dropped():
    events, judge, stats, decisions = pooled([(5, time.monotonic() - 10)], late_s=5.0)
    assert decisions == [] and judge.judged == [] and stats.late == 1 and ("release", 0) in events


def test_the_pool_is_checked_every_turn_and_closed_before_the_camera_when_stopped():
    events: list = []
    stop = threading.Event()

    class Pool:
        def offer(self, frame, first):
            frame.release()

        def check(self):
            events.append(("check",))

        def close(self):
            events.append(("pool closed",))

    t = time.monotonic()
    loop = ScanLoop(Camera2([None, (5, t), (1, t), (1, t)], events), Staged(events), Judge(), Feedback([]), Stats(),
                    lambda d: stop.set())
    loop.use_pool(Pool())
    loop.run(stop)  # stopped by the decision on the third turn: the camera is not asked for the fourth
    assert [e for e in events if e[0] in ("check", "pool closed", "camera closed")] == [
        ("check",), ("check",), ("check",), ("pool closed",), ("camera closed",)]
    assert ("first", 1) in events and [e for e in events if e[0] == "release"] == [("release", 1), ("release", 2)]


def test_a_decoder_in_one_stage_cannot_take_workers():
    loop = ScanLoop(Scripted([]), Pixels(), Judge(), Feedback([]), Stats(), lambda d: None)
    with pytest.raises(TypeError, match="the Pixels decodes in one stage"):
        loop.use_pool(DecodePool(Staged, 1, loop.recovered, Faults(), Stats()))


def test_a_fast_read_that_raises_releases_the_frame_and_offers_nothing():
    events: list = []

    class Broken(Staged):
        def first(self, gray):
            raise RuntimeError("a decoder bug")

    _, _, stats, decisions = pooled([(5, time.monotonic())], decoder=Broken(events), events=events)
    assert ("release", 0) in events and ("more", 5) not in events and decisions == [] and stats.frames == 1


def test_an_older_frame_read_late_never_moves_a_codes_last_sighting_back():
    dedupe = Dedupe(hold_s=1.5)
    assert dedupe.fresh(["KP1:a"], 10.0) == ["KP1:a"]
    assert dedupe.fresh(["KP1:a"], 9.0) == []  # a worker's read of an older frame
    assert dedupe.fresh(["KP1:a"], 11.4) == []  # still within the hold of the sighting at 10.0
    assert dedupe.fresh(["KP1:a"], 13.0) == ["KP1:a"]


def test_a_frame_that_comes_once_stopped_goes_back_unread():
    stop = threading.Event()
    released: list = []

    class Late:
        dropped = 0

        def frames(self, stop_: threading.Event):
            stop.set()  # the daemon is told to stop while the camera is handing over a frame
            yield Frame(np.full((4, 4), 1, np.uint8), 0, time.monotonic(), release=lambda: released.append(0))

    decoder, turns = Pixels(), []
    loop = ScanLoop(Late(), decoder, Judge(), Feedback([]), Stats(), lambda d: None, on_turn=turns.append)
    loop.run(stop)
    assert released == [0] and decoder.busy == [] and len(turns) == 1
