"""`qrgate bench gil`: does each native call the decoder makes release the GIL? Measured, before threads are chosen.

Threads beside the scan loop (a second decoder, the uplink, the housekeeping)
only run while the loop's calls let go of the GIL. For every call
firmware/scanner/decode.py makes, on one 640x480 grayscale frame with a code
in it:

- (a) N calls in one thread: the time per call;
- (b) the same N calls split over two threads started together: the speedup,
  (a)'s time over (b)'s. A call that holds the GIL runs one thread at a time
  (1.0 or a little less); one that releases it runs on both cores (2.0 on two
  idle cores);
- (c) a pure-Python counter thread's progress while another thread loops on
  the call, as a fraction of its progress alone over the same time. A call
  that holds the GIL shares it with the counter at the interpreter's switch
  interval (about 0.5); one that releases it leaves the counter a core of its
  own (about 1.0 on an idle machine);
- (d) the GIL wait of a thread waking from a 1 ms sleep while another thread
  loops on the call: the median of its lateness, less its lateness alone.

(b) and (c) need a free core: where other work holds the second one (a
shared machine, a Pi running more than the door), a releasing call's counter
gets some 2/3 of a core instead of all of it while a holding call's still gets
half, and the speedup of both is near 1. (d) needs next to no CPU: a thread
that wakes finds the GIL free at once beside a call that released it (its
lateness is the kernel's wake-up, tens of µs), while beside a call that holds
it, it waits out the switch interval (5 ms) before the interpreter even asks
the holder to let go, and then until the call returns. So `releases_gil` is
(d) under a quarter of the switch interval: far from both. A call that
released it for only part of its time lands between; its (c) says how much.

Controls run first, so that a reader sees both ends on the same machine:
pure Python and sorting a list in C (both hold the GIL: the method tells the
GIL apart, not C from Python); time.sleep and SHA-256 of 1 MiB (both release
it; hashlib does for data over 2 KiB, and burns a core meanwhile as a decoder
does).

OpenCV is held to one thread of its own (cv2.setNumThreads(1)) while measured,
so that its internal pool does not pass for two of ours; its default is
reported. The frame is a real photograph from the checkout's
tests/data/qr-samples (grayscale, resized to 640x480) or `--image FILE`; where
neither is at hand (an installed device), a rendered phone screen.
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from firmware.errors import QrgateError
from lab.bench.machine import cpu_model

SAMPLE = Path(__file__).resolve().parents[2] / "tests/data/qr-samples/zxing-cpp/qrcode-2/6.webp"  # a code in a hand
WIDTH, HEIGHT = 640, 480
CALIBRATE_S = 0.5  # by default, N is as many calls as take this long in one thread
MIN_CALLS = 20
MIN_WINDOW_S = 0.1  # the counter's and the waking thread's shortest window
NAP_S = 0.001  # the waking thread's sleep


@dataclass(frozen=True)
class Call:
    name: str
    run: Callable[[], object]
    known: str | None = None  # a control's: "holds" or "releases"


def run(calls: int | None = None, image: Path | None = None, repeats: int = 3) -> dict:
    """Each call measured `repeats` times (medians reported); `calls` per measurement, or calibrated to ~0.5 s."""
    if (calls is not None and calls < 2) or repeats < 1:
        raise QrgateError("bench gil: --calls must be 2 or more and --repeats 1 or more")
    frame, origin = _frame(image)
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rows = [_measure(call, calls, repeats) for call in _calls(frame)]
    finally:
        cv2.setNumThreads(opencv_threads)
    import zxingcpp

    return {
        "bench": "gil",
        "machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
        "zxing_cpp": _version("zxing-cpp") or getattr(zxingcpp, "__version__", None), "pyzbar": _version("pyzbar"),
        "opencv": cv2.__version__, "opencv_threads_default": opencv_threads, "opencv_threads_measured": 1,
        "frame": origin, "frame_size": [WIDTH, HEIGHT],
        "repeats": repeats,
        "releases_gil_below_wait_ms": _threshold_ms(),
        "calls": rows,
        "controls_agree": all(r["releases_gil"] == (r["known"] == "releases") for r in rows if "known" in r),
    }


def _threshold_ms() -> float:
    """A waking thread's GIL wait under which a call released the GIL: a quarter of the switch interval."""
    return round(sys.getswitchinterval() * 1000 / 4, 3)


# -- the frame and the calls --------------------------------------------------------------------------------------


def _frame(image: Path | None) -> tuple[np.ndarray, str]:
    """A 640x480 grayscale frame with a code: `image`, the checkout's sample photograph, or a rendered scene."""
    path = image if image is not None else SAMPLE if SAMPLE.exists() else None
    if path is not None:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise QrgateError(f"bench gil: cannot read image {path}")
        shown = path.relative_to(SAMPLE.parents[5]) if path == SAMPLE else path
        return np.ascontiguousarray(cv2.resize(gray, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)), str(shown)
    from lab import render

    phone = render.phone_screen("KP1:bench-gil-" + "x" * 120)
    return render.scene(phone, np.random.default_rng(0)), "rendered phone screen (lab.render)"


def _crop(frame: np.ndarray) -> np.ndarray:
    """The located code's region with a quarter of its size as margin, as the decoder crops it before upscaling;
    the frame's centre where nothing is located."""
    import zxingcpp

    found = zxingcpp.read_barcodes(frame, return_errors=True)
    if found:
        p = found[0].position
        xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
        margin = max(8, (max(xs) - min(xs)) // 4, (max(ys) - min(ys)) // 4)
        x0, x1 = max(0, min(xs) - margin), min(WIDTH, max(xs) + margin)
        y0, y1 = max(0, min(ys) - margin), min(HEIGHT, max(ys) + margin)
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            return frame[y0:y1, x0:x1]
    return frame[HEIGHT // 4: 3 * HEIGHT // 4, WIDTH // 4: 3 * WIDTH // 4]


def _python_work() -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def _calls(frame: np.ndarray) -> list[Call]:
    import zxingcpp

    from firmware.scanner.decode import ZbarDecoder, qr_formats

    qr = qr_formats()
    crop = _crop(frame)
    upscaled = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    smooth = cv2.GaussianBlur(upscaled, (0, 0), 2.0)
    zbar = ZbarDecoder()
    rng = np.random.default_rng(0)
    unsorted = rng.integers(0, 1 << 30, 50_000).tolist()
    data = rng.bytes(1 << 20)
    hist = zxingcpp.Binarizer.GlobalHistogram
    return [
        Call("control: pure Python", _python_work, known="holds"),
        Call("control: sorted() of 50,000 ints (C, holding the GIL)", lambda: sorted(unsorted), known="holds"),
        Call("control: time.sleep(1 ms)", lambda: time.sleep(0.001), known="releases"),
        Call("control: hashlib.sha256 of 1 MiB (C, releasing it)", lambda: hashlib.sha256(data).digest(),
             known="releases"),
        Call("zxingcpp.read_barcodes(return_errors=True)",
             lambda: zxingcpp.read_barcodes(frame, formats=qr, return_errors=True)),  # type: ignore[arg-type]
        Call("zxingcpp.read_barcodes()", lambda: zxingcpp.read_barcodes(frame, formats=qr)),  # type: ignore[arg-type]
        Call("zxingcpp.read_barcodes(binarizer=GlobalHistogram)",
             lambda: zxingcpp.read_barcodes(frame, formats=qr, binarizer=hist)),  # type: ignore[arg-type]
        Call("ZbarDecoder().decode (pyzbar's ctypes)", lambda: zbar.decode(frame)),
        Call("cv2.blur 3x3", lambda: cv2.blur(frame, (3, 3))),
        Call(f"cv2.resize 2x INTER_CUBIC ({crop.shape[1]}x{crop.shape[0]} crop)",
             lambda: cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)),
        Call("cv2.GaussianBlur sigma 2 (the upscaled crop)", lambda: cv2.GaussianBlur(upscaled, (0, 0), 2.0)),
        Call("cv2.addWeighted (the unsharp mask)", lambda: cv2.addWeighted(upscaled, 1.8, smooth, -0.8, 0)),
    ]


# -- the measurements ---------------------------------------------------------------------------------------------


def _in_threads(f: Callable[[], object], counts: list[int]) -> float:
    """Wall seconds for threads, started together, each calling `f` its count of times."""
    gate = threading.Barrier(len(counts) + 1)
    ends: list[float] = []

    def work(n: int) -> None:
        gate.wait()
        for _ in range(n):
            f()
        ends.append(time.perf_counter())

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in counts]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return max(ends) - start


def _beside(probe: Callable[[list[bool]], Any], seconds: float, call: Callable[[], object] | None) -> Any:
    """What `probe` (run in a thread of its own until told to stop) measured over `seconds`, alone or while
    another thread loops on `call`."""
    stop = [False]
    out: list[Any] = []

    def looping() -> None:
        while not stop[0]:
            call()  # type: ignore[misc]

    threads = [threading.Thread(target=lambda: out.append(probe(stop)), daemon=True)]
    if call is not None:
        threads.append(threading.Thread(target=looping, daemon=True))
    for t in threads:
        t.start()
    time.sleep(seconds)  # the window measured; the main thread waits without the GIL
    stop[0] = True
    for t in threads:
        t.join()
    return out[0]


def _count(stop: list[bool]) -> int:
    """A pure-Python counter: its progress until stopped."""
    n = 0
    while not stop[0]:
        n += 1
    return n


def _lateness_ms(stop: list[bool]) -> float:
    """The median time a thread waking from a short sleep comes back late: the kernel's wake-up, and the GIL."""
    late = []
    while not stop[0]:
        t = time.perf_counter()
        time.sleep(NAP_S)
        late.append(time.perf_counter() - t - NAP_S)
    return statistics.median(late) * 1000 if late else 0.0


def _measure(call: Call, calls: int | None, repeats: int) -> dict[str, Any]:
    call.run()  # the first call's one-time costs (a lazy import, a cache) are not the call's
    t0 = time.perf_counter()
    call.run()
    estimate = max(time.perf_counter() - t0, 1e-6)
    n = calls or max(MIN_CALLS, round(CALIBRATE_S / estimate))
    n += n % 2  # split evenly over two threads
    one, two, fraction, wait = [], [], [], []
    for _ in range(repeats):
        t1 = _in_threads(call.run, [n])
        one.append(t1)
        two.append(_in_threads(call.run, [n // 2, n // 2]))
        window = max(MIN_WINDOW_S, t1)
        before = _beside(_count, window, None)
        beside = _beside(_count, window, call.run)
        alone = (before + _beside(_count, window, None)) / 2  # alone just before and after: the load alike
        fraction.append(beside / alone if alone else 0.0)
        wait.append(_beside(_lateness_ms, window, call.run) - _beside(_lateness_ms, window, None))
    t1, t2 = statistics.median(one), statistics.median(two)
    row: dict[str, Any] = {
        "call": call.name, "calls": n,
        "ms_per_call": round(t1 / n * 1000, 4),
        "speedup_2_threads": round(t1 / t2, 2),
        "counter_fraction": round(statistics.median(fraction), 2),
        "gil_wait_ms": round(statistics.median(wait), 3),
    }
    row["releases_gil"] = row["gil_wait_ms"] < _threshold_ms()
    if call.known:
        row["known"] = call.known
    return row


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
