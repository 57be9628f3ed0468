"""`qrgate bench scan`: the real scan loop over a frame set, side by side with the bare decoders.

The loop side is the daemon itself (`app.run`, in a fresh process of its own
so that its memory is its alone): a replay camera over the frame set, the
configured decoder, the verifier, the sealed store on a real file, and the
LEDs on gpiozero's mock pins, whose changes are timed. Per frame it records
the time from the frame's arrival to the loop being done with it, and whether
the expected code was read; per accepted visitor, the time from the arrival
of the frame that showed the code to the green LED pin going on (verifying,
sealing and the durable commit included).

The bare side, in this process, on the same frames: zxing-cpp's
`read_barcodes` (QR only, its default options) and pyzbar's `decode` (QR
only), called directly on the image, each timed per frame, each call paced as
the loop's frames are (so both meet a frame after a camera's idle). Every
figure is a ratio measured in one run on one machine.

A replayed frame is read from its PNG before it "arrives", as a camera's
frame is in memory when it arrives: reading files is not the loop's cost.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lab.bench import scenes
from lab.bench.machine import cpu_model, filesystem, in_fresh_process, kb_to_mb, proc_status_kb, reset_hwm
from firmware.errors import QrgateError
from firmware.scanner.decode import qr_formats
from firmware.stats import Stats
from firmware.tokens import kp1
from lab.world import APPS, World

GOALS = {"loop_to_zxing_code_frames": 1.10, "loop_to_zxing_empty_frames": 1.20, "accept_latency_p95_ms": 20.0,
         "peak_rss_mb": 150.0,
         "rss_growth_mb": 2.0}  # from the end of the warm-up to the run's end: flat, however many decisions
RSS_SAMPLES = 50  # samples of resident memory over a run
WARMUP = 0.1  # share of the run after which memory must stop growing
GREEN_PIN = 17  # the green LED, whose going on is timed
GIVEN, UNLABELLED = "given", "unlabelled"  # conditions of a frame set from the command line


@dataclass(frozen=True)
class FrameSet:
    folder: Path
    specs: list[scenes.FrameSpec]
    origin: str  # "built-in", or the path given


def run(frames_from: Path | None = None, frames: int | None = None, fps: float = 30.0, visitors: int = 70,
        decoder: str = "zxing", folder: Path | None = None, seed: int = 0, workers: int | None = None,
        compare: bool = True) -> dict:
    """Build (or read) a frame set, time the bare decoders on it, then the daemon's loop over `frames` frames.

    The built-in set has `visitors` visitors in each of its two parts of phones (`scenes.build`), each with a
    token of their own, then `card_visitors(visitors)` holding up printed cards (KC1), each a card of their own.
    `fps` paces the replay camera (0: as fast as the loop goes); `frames` defaults to two passes
    over the set. `workers` is `[decoder] workers` (None: the daemon's default); with `compare`, a second
    run of the loop with none shows what they add.
    """
    if fps < 0 or visitors < 1 or (frames is not None and frames < 1):
        raise QrgateError("bench scan: --fps must be 0 or more, --visitors and --frames 1 or more")
    with tempfile.TemporaryDirectory(prefix="qrgate-bench-scan-", dir=folder) as tmp:
        tmp = Path(tmp)
        world = World.create(tmp / "world")
        if frames_from is None:
            # valid through the first pass of a long run; a card for a year
            tokens = [world.mint(APPS[i % len(APPS)], ttl=kp1.MAX_WINDOW) for i in range(2 * visitors)]
            cards = [world.mint_card() for _ in range(card_visitors(visitors))]
            fs = FrameSet(tmp / "frames", scenes.build(tmp / "frames", tokens[:visitors], seed=seed,
                                                       more_texts=tokens[visitors:], card_texts=cards), "built-in")
        else:
            fs = _given(Path(frames_from), tmp / "frames")
        n = frames or 2 * len(fs.specs)
        bare = _bare(fs, fps)
        limit_s = 120 + n * 0.5 + (n / fps if fps else 0)
        side = dict(world=str(world.dir), folder=str(fs.folder), expected=[s.text for s in fs.specs], frames=n,
                    fps=fps, decoder=decoder, state=str(tmp / "state"), workers=workers)
        loop = in_fresh_process(__name__, "loop", side, limit_s)
        report = _report(fs, bare, loop, n, fps, decoder, tmp)
        if compare and loop["workers"]:
            alone = in_fresh_process(__name__, "loop", {**side, "workers": 0, "state": str(tmp / "state-0")}, limit_s)
            report["without_workers"] = {k: v for k, v in _report(fs, bare, alone, n, fps, decoder, tmp).items()
                                         if k in ("workers", "per_frame_ms", "decode_success", "accept_latency_ms",
                                                  "decisions", "memory", "goals_met")}
        return report


# -- the frame set ------------------------------------------------------------------------------------------------


def card_visitors(visitors: int) -> int:
    """The built-in set's card part: half as many visitors as a phone part (35 by default, seven a card condition,
    so that the default run takes a quarter longer, not half as long again), and one a condition at least."""
    return max(len(scenes.CARD_CONDITIONS), visitors // 2)


def _given(path: Path, out: Path) -> FrameSet:
    """A folder of images (each with its expected text in `<name>.txt` beside it, where known) or a video."""
    from firmware.scanner.sources.replay import IMAGE_SUFFIXES

    if path.is_file():  # a video: its frames, written out as images, unlabelled
        out.mkdir()
        video = cv2.VideoCapture(str(path))
        if not video.isOpened():
            raise QrgateError(f"bench scan: cannot open video {path}")
        specs = []
        while True:
            ok, bgr = video.read()
            if not ok:
                break
            name = f"{len(specs):06d}.png"
            cv2.imwrite(str(out / name), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
            specs.append(scenes.FrameSpec(name, UNLABELLED, None, None))
        video.release()
        if not specs:
            raise QrgateError(f"bench scan: no frames in {path}")
        return FrameSet(out, specs, str(path))
    if not path.is_dir():
        raise QrgateError(f"bench scan: {path} is neither a folder of images nor a video")
    manifest = path / "manifest.json"
    if manifest.exists():  # a set written by an earlier build
        specs = [scenes.FrameSpec(**d) for d in json.loads(manifest.read_text())]
        return FrameSet(path, specs, str(path))
    specs = []
    for image in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = image.with_suffix(".txt")
        text = label.read_text(encoding="utf-8", errors="replace") if label.exists() else None
        specs.append(scenes.FrameSpec(image.name, GIVEN if text is not None else UNLABELLED, text, None))
    if not specs:
        raise QrgateError(f"bench scan: no images in {path}")
    return FrameSet(path, specs, str(path))


# -- the bare decoders --------------------------------------------------------------------------------------------


def _bare(fs: FrameSet, fps: float = 0.0) -> dict:
    """Per frame: ms and whether the expected text was read, for zxing-cpp and pyzbar called directly.

    With `fps`, each call waits for its tick of a camera at that rate and reads its frame then, as the replay
    camera does for the loop: both sides meet each frame after the same idle, caches as cold; without, the
    calls run back to back.
    """
    import zxingcpp
    from pyzbar import pyzbar

    qr = qr_formats()
    decoders = {
        "zxing": lambda gray: [b.text for b in zxingcpp.read_barcodes(gray, formats=qr)],
        "zbar": lambda gray: [s.data.decode("utf-8", errors="replace")
                              for s in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])],
    }
    out = {name: {"ms": [], "read": []} for name in decoders}
    tick = time.monotonic()
    for spec in fs.specs:
        for name, decode in decoders.items():
            if fps:
                tick += 1 / fps
                time.sleep(max(0.0, tick - time.monotonic()))
            gray = cv2.imread(str(fs.folder / spec.name), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise QrgateError(f"bench scan: cannot read {fs.folder / spec.name}")
            t0 = time.perf_counter()
            texts = decode(gray)
            out[name]["ms"].append((time.perf_counter() - t0) * 1000)
            out[name]["read"].append(_read(spec.text, texts))
    return out


def _read(expected: str | None, texts: list[str]) -> bool:
    """The expected code read; for a frame with none expected, anything read (in an empty frame: a misread)."""
    return expected in texts if expected is not None else bool(texts)


# -- the loop, in a process of its own ----------------------------------------------------------------------------


@dataclass
class _Recorder(Stats):
    """The daemon's Stats, also keeping every frame's figures in arrays sized up front (so they do not grow)."""

    expected: list = field(default_factory=list)
    limit: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # np.full, not np.zeros: zeros come from calloc, whose pages become resident only as they are written,
        # so the arrays grew the loop's memory by 14 bytes a frame (measured: +0.9 MB over 100,000 frames, no decision)
        self.index = np.full(self.limit, 0, np.int32)
        self.all_frame_ms = np.full(self.limit, 0, np.float32)
        self.all_decode_ms = np.full(self.limit, 0, np.float32)
        self.read = np.full(self.limit, False)
        self.wrong = np.full(self.limit, False)  # a text read that is not the one shown: a misread
        self.accepted_at: list[float] = []  # arrival of the frame each accepted visitor was decided on
        self.rss_kb: list[tuple[int, int, int]] = []  # (frames, decisions, VmRSS kB)
        self._slot: dict[int, int] = {}  # seq -> k of the newest frames, for a worker's late read
        self._early: dict[int, list[str]] = {}  # a worker's read of a frame the loop has not yet counted
        self._mark = threading.Lock()

    def scanned(self, seq, texts, decode_ms, frame_ms, dropped) -> None:
        k = self.frames
        super().scanned(seq, texts, decode_ms, frame_ms, dropped)
        if k >= self.limit:
            return
        i = seq % len(self.expected)
        self.index[k], self.all_frame_ms[k], self.all_decode_ms[k] = i, frame_ms, decode_ms
        with self._mark:
            self._slot[seq] = k
            if len(self._slot) > 512:  # a worker reads a frame within a second or drops it: keep the newest
                self._slot = {s: j for s, j in self._slot.items() if s > seq - 256}
            self._note(k, texts + self._early.pop(seq, []))
        if self.frames % max(1, self.limit // RSS_SAMPLES) == 0 or self.frames == self.limit:  # and the last
            self.rss_kb.append((self.frames, sum(self.decisions.values()), proc_status_kb("VmRSS") or 0))
        if self.frames >= self.limit:
            self.done.set()

    def read_by_worker(self, seq, texts) -> None:
        super().read_by_worker(seq, texts)
        with self._mark:
            if seq in self._slot:
                self._note(self._slot[seq], texts)
            else:
                self._early[seq] = texts

    def _note(self, k: int, texts: list[str]) -> None:
        expected = self.expected[self.index[k]]
        self.read[k] |= _read(expected, texts)
        self.wrong[k] |= expected is not None and any(t != expected for t in texts)

    def answered(self, label, frame_t, latency_ms) -> None:
        super().answered(label, frame_t, latency_ms)
        if label == "accepted":
            self.accepted_at.append(frame_t)


def _loop_side(world: str, folder: str, expected: list, frames: int, fps: float, decoder: str,
               state: str, workers: int | None) -> dict:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from firmware import app, config

    # when the green LED went on (at most once a pattern, a pattern a decision, a decision a code read), sized up
    # front like the recorder's arrays: a list appended at every green grew 32 bytes a decision
    green_on, greens = np.full(frames, np.inf), [0]

    class TimedPin(MockPWMPin):
        """Notes when the green LED goes on, and keeps no history: gpiozero's mock pins append every change to
        `states` (a test's record, which a real pin does not keep), some 0.7 kB a decision, which made the
        loop's memory seem to grow with its decisions."""

        def _change_state(self, value):
            changed = super()._change_state(value)
            self.states.clear()
            if changed and value and self.info.name == f"GPIO{GREEN_PIN}":
                if greens[0] < len(green_on):
                    green_on[greens[0]] = time.monotonic()
                    greens[0] += 1
            return changed

    path = Path(state).parent / "qrgate.toml"
    path.write_text(World.load(Path(world)).config_toml(
        Path(state), Path(folder), device='venue = "bench"',
        decoder=f'backend = "{decoder}"' + (f"\nworkers = {workers}" if workers is not None else ""),
        gpio=f"green = {GREEN_PIN}", camera=f"fps = {fps or 30.0}\npaced = {'true' if fps else 'false'}\nloop = true"))
    cfg = config.load(path)
    stats = _Recorder(expected=expected, limit=frames)
    stop = threading.Event()
    threading.Thread(target=lambda: (stats.done.wait(), stop.set()), daemon=True).start()
    hwm_reset = reset_hwm()
    app.run(cfg, stop=stop, pin_factory=MockFactory(pin_class=TimedPin), stats=stats)
    peak_kb = proc_status_kb("VmHWM") if hwm_reset else None  # before the lists below (some 11 MB at 100,000 frames)
    n = min(stats.frames, frames)
    from firmware.scanner.decode import STAGED
    from firmware.scanner.workers import default_count

    used = 0 if decoder not in STAGED else default_count() if workers is None else workers
    green_times = green_on[:greens[0]].tolist()
    latencies = [(_first_after(green_times, t) - t) * 1000 for t in stats.accepted_at]
    return {
        "index": stats.index[:n].tolist(), "frame_ms": stats.all_frame_ms[:n].tolist(),
        "decode_ms": stats.all_decode_ms[:n].tolist(), "read": stats.read[:n].tolist(),
        "wrong": stats.wrong[:n].tolist(),
        "accept_latency_ms": [x for x in latencies if x >= 0], "unpaired_greens": sum(x < 0 for x in latencies),
        "decisions": dict(stats.decisions), "dropped": stats.dropped,
        "rss_kb": stats.rss_kb, "peak_rss_kb": peak_kb,
        "workers": used, "pool": stats.workers(),
    }


def _first_after(times: list[float], t: float) -> float:
    """The first time in `times` (ascending) at or after `t`, or -inf: the LED going on for a frame's answer."""
    return next((x for x in times if x >= t), float("-inf"))


def _child() -> None:
    order = json.loads(sys.stdin.read())
    print(json.dumps({"loop": _loop_side}[order["side"]](**order["kwargs"])))


# -- the report ---------------------------------------------------------------------------------------------------


def _stat(values) -> dict:
    values = sorted(values)
    if not values:
        return {"median": None, "p95": None}
    return {"median": round(statistics.median(values), 3), "p95": round(values[int(0.95 * (len(values) - 1))], 3)}


def _ratio(a: dict, b: dict) -> dict:
    return {k: round(a[k] / b[k], 3) if a[k] and b[k] else None for k in ("median", "p95")}


def _report(fs: FrameSet, bare: dict, loop: dict, n: int, fps: float, decoder: str, tmp: Path) -> dict:
    specs = fs.specs
    has_code = [s.text is not None or (s.condition == UNLABELLED and (bare["zxing"]["read"][i] or
                                                                    bare["zbar"]["read"][i]))
                for i, s in enumerate(specs)]
    # Per-frame time, on frames with a code and on empty ones, loop against the bare decoders on the same frames.
    timing = {}
    for kind, want in (("code_frames", True), ("empty_frames", False)):
        frames_of_kind = [i for i in range(len(specs)) if has_code[i] == want]
        if not frames_of_kind:
            continue
        loop_ms = [ms for i, ms in zip(loop["index"], loop["frame_ms"]) if has_code[i] == want]
        # the loop's time on a frame, and of it its decoder's: the rest is the loop's own (and its answers)
        entry = {"loop": _stat(loop_ms),
                 "loop_decoder": _stat(ms for i, ms in zip(loop["index"], loop["decode_ms"]) if has_code[i] == want)}
        for name in ("zxing", "zbar"):
            entry[name] = _stat(bare[name]["ms"][i] for i in frames_of_kind)
        entry["ratio_loop_to_zxing"] = _ratio(entry["loop"], entry["zxing"])
        timing[kind] = entry
    # Decode success per condition: the loop over every frame it saw, each bare decoder over the set.
    by_condition: dict[str, dict] = defaultdict(lambda: {"frames": 0, "loop_frames": 0, "loop": 0, "zxing": 0,
                                                         "zbar": 0, "union": 0, "loop_misreads": 0})
    for i, spec in enumerate(specs):
        c = by_condition[spec.condition]
        c["frames"] += 1
        c["zxing"] += bare["zxing"]["read"][i]
        c["zbar"] += bare["zbar"]["read"][i]
        c["union"] += bare["zxing"]["read"][i] or bare["zbar"]["read"][i]
    for i, ok, wrong in zip(loop["index"], loop["read"], loop["wrong"]):
        c = by_condition[specs[i].condition]
        c["loop_frames"] += 1
        c["loop"] += ok
        c["loop_misreads"] += wrong
    success = {}
    for name, c in sorted(by_condition.items()):
        rates = {"loop": c["loop"] / c["loop_frames"] if c["loop_frames"] else None,
                 "zxing": c["zxing"] / c["frames"], "zbar": c["zbar"] / c["frames"],
                 "union": c["union"] / c["frames"]}
        entry = {"frames": c["frames"], **{k: round(v, 3) if v is not None else None for k, v in rates.items()},
                 "loop_misreads": c["loop_misreads"]}
        if name == scenes.EMPTY:
            entry = {"frames": c["frames"], "misreads": {"loop": c["loop"], "zxing": c["zxing"], "zbar": c["zbar"]}}
        success[name] = entry
    coded = {k: v for k, v in success.items() if k != scenes.EMPTY and v.get("loop") is not None}
    latency = _stat(loop["accept_latency_ms"])
    rss = loop["rss_kb"]
    warm = [kb for frames, _, kb in rss if frames >= WARMUP * n]
    memory = {
        "peak_rss_mb": kb_to_mb(loop["peak_rss_kb"]),
        "rss_after_warmup_mb": kb_to_mb(warm[0]) if warm else None,
        "rss_at_end_mb": kb_to_mb(warm[-1]) if warm else None,
        "samples": len(rss),
        # the whole run, warm-up included: [frames, decisions, resident MB], to see what memory grows with
        "curve": [[frames, decided, kb_to_mb(kb)] for frames, decided, kb in rss],
    }
    memory["growth_mb"] = (round(memory["rss_at_end_mb"] - memory["rss_after_warmup_mb"], 1)
                           if warm else None)
    met = {f"loop_to_zxing_{kind}": _within(timing, kind) for kind in ("code_frames", "empty_frames")}
    met.update({
        "reads_at_least_the_union": all(v["loop"] >= v["union"] for v in coded.values()),
        "accept_latency_p95_ms": latency["p95"] is not None and latency["p95"] < GOALS["accept_latency_p95_ms"],
        "peak_rss_mb": memory["peak_rss_mb"] is not None and memory["peak_rss_mb"] < GOALS["peak_rss_mb"],
        "rss_growth_mb": memory["growth_mb"] is not None and memory["growth_mb"] <= GOALS["rss_growth_mb"],
        "no_misreads": success.get(scenes.EMPTY, {}).get("misreads", {}).get("loop", 0) == 0
        and all(v["loop_misreads"] == 0 for v in coded.values()),
    })
    import pyzbar
    import zxingcpp

    return {
        "bench": "scan",
        "machine": platform.machine(), "cpu": cpu_model(), "python": platform.python_version(),
        "zxing_cpp": getattr(zxingcpp, "__version__", None) or _version("zxing-cpp"),
        "pyzbar": getattr(pyzbar, "__version__", None), "opencv": cv2.__version__,
        "store_filesystem": filesystem(tmp),
        "frame_set": fs.origin, "frames_in_set": len(specs),
        "frame_size": _size(fs),
        "frames_run": len(loop["index"]), "fps": fps or "unpaced", "decoder": decoder,
        "workers": loop["workers"], "pool": loop["pool"],
        "per_frame_ms": timing,
        "decode_success": success,
        "accept_latency_ms": {**latency, "visitors": len(loop["accept_latency_ms"])},
        "decisions": loop["decisions"],
        "frames_dropped": loop["dropped"],
        "memory": memory,
        "goals": {**GOALS, "reads_at_least_the_union": True, "no_misreads": True},
        "goals_met": {**met, "all": all(met.values())},
    }


def _within(timing: dict, kind: str) -> bool:
    """The loop's median frame of `kind` within its goal's ratio to bare zxing-cpp (met if no such frame)."""
    if kind not in timing:
        return True
    ratio = timing[kind]["ratio_loop_to_zxing"]["median"]
    return ratio is not None and ratio <= GOALS[f"loop_to_zxing_{kind}"]


def _size(fs: FrameSet) -> list[int] | None:
    gray = cv2.imread(str(fs.folder / fs.specs[0].name), cv2.IMREAD_GRAYSCALE)
    return [int(gray.shape[1]), int(gray.shape[0])] if gray is not None else None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
