"""`qrgate aim`: a frame from the device's camera, its QR codes outlined and its sharpness, for aiming and focusing.

A technician over SSH stops the daemon (it holds the camera), runs `qrgate aim`,
fetches the PNG with scp and looks at it; `--watch` prints the figures live
while they turn the lens or move the device. The figures:

- sharpness: the variance of the Laplacian (cv2.Laplacian, CV_64F), over the
  whole frame and over each located code's bounding box. The code's figure is
  the one that matters for focus: it rises as the code's module edges get
  crisp. It also rises with contrast and with how much of the box is edges, so
  it compares one set-up against itself (turn the lens, watch it rise to a
  peak), not one camera against another.
- brightness: the mean gray level (0..255) of the frame.
- each code zxing-cpp located (`return_errors=True` gives the position of codes
  it found but could not decode too): "read" (outlined green) or "located, not
  read" (outlined orange).

The decoded text is never drawn, printed or kept: a code is "read", nothing
more (the text is a token id carrier, DESIGN promise 4). This is zxing-cpp's
one plain read, without the daemon's second attempts (decode.py): a code
`qrgate aim` reads is one the daemon reads at its first try.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator, Iterator, TextIO

import cv2
import numpy as np
from numpy.typing import NDArray
import zxingcpp

from firmware import config, paths
from firmware.scanner.sources import open_source
from firmware.errors import QrgateError

if TYPE_CHECKING:
    from firmware.scanner.frames import FrameSource

# A real camera's first frames come while auto exposure, white balance and
# (Camera Module 3) autofocus converge: skip them for this long, and at least
# this many frames. A replay takes the frame that comes.
SETTLE_S = 1.5
SETTLE_FRAMES = 10
NO_FRAME_S = 5.0  # a live camera silent this long is an error
WATCH_INTERVAL_S = 0.25  # a live camera's --watch: one line this often (a replay: one per frame)
DEFAULT_OUT = paths.AIM_PNG
MIN_CODE_PX = 10  # a QR code has 21 modules or more a side: anything smaller is no code
MAX_ELONGATION = 2.5  # an unread candidate's longest side over its shortest; a QR code tilted 60° is 2
SAME_CODE_OVERLAP = 0.1  # of the smaller box: candidates overlapping this much are one code
CAMERA_BUSY = "cannot open the camera (is qrgate.service running? `sudo systemctl stop qrgate` first)"

GREEN = (0, 200, 0)  # BGR
ORANGE = (0, 140, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class Code:
    read: bool
    corners: tuple[tuple[int, int], ...]  # zxing-cpp's top-left, top-right, bottom-right, bottom-left (or a hull)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), inside the frame
    sharpness: float


@dataclass(frozen=True)
class Measure:
    width: int
    height: int
    sharpness: float
    brightness: float
    codes: tuple[Code, ...]

    @property
    def seen(self) -> str:
        if any(c.read for c in self.codes):
            return "code read"
        return "code located, not read" if self.codes else "no code"


def sharpness(gray: NDArray[Any]) -> float:
    """The variance of the Laplacian: higher is sharper (0 for a flat or tiny patch)."""

    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The intersection of two boxes as a fraction of the smaller one."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1)


def _elongation(corners: tuple[tuple[int, int], ...]) -> float:
    """The longest side of the quadrilateral over its shortest: 1 for a square seen head-on."""
    sides = [math.hypot(corners[i][0] - corners[i - 1][0], corners[i][1] - corners[i - 1][1]) for i in range(4)]
    return max(sides) / max(min(sides), 1.0)


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two boxes, each grown by its own size on every side, touch."""
    def grown(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = box
        d = max(x1 - x0, y1 - y0)
        return (x0 - d, y0 - d, x1 + d, y1 + d)
    return _overlap(grown(a), grown(b)) > 0


# A zxing-cpp result as locate() sorts them: (read, corners, box).
_Candidate = tuple[bool, tuple[tuple[int, int], ...], tuple[int, int, int, int]]


def locate(gray: NDArray[Any]) -> list[Code]:
    """The QR codes zxing-cpp finds in the plane, read or only located; one per code, read ones first.

    A code zxing-cpp cannot decode often comes back as several candidates:
    the code itself, quadrilaterals made of two of its finder patterns and a
    wrong third (thin strips reaching out of it), or, for a larger code, a
    small square at each finder pattern. So: a candidate overlapping a code
    already kept is that code (two codes never overlap); an unread one far
    from square is dropped; and unread candidates close to one another are
    one code, outlined by the hull of their corners. Only `valid` and
    `position` are looked at; the text never leaves zxing-cpp's objects.
    """

    height, width = gray.shape
    found = []
    # The whole QR family, Micro QR included (unlike the door's decoder): a damaged code's finder patterns
    # come back as Micro QR candidates, which is what lets it be located when it cannot be read.
    for barcode in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode,  # type: ignore[arg-type]
                                          return_errors=True):  # one format is a set of one (zxing-cpp 3.x)
        p = barcode.position
        corners = tuple((int(q.x), int(q.y)) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
        box = _box(corners, width, height)
        if box[2] - box[0] >= MIN_CODE_PX and box[3] - box[1] >= MIN_CODE_PX:  # not a position-less error
            found.append((bool(barcode.valid), corners, box))
    found.sort(key=lambda f: (not f[0], -(f[2][2] - f[2][0]) * (f[2][3] - f[2][1])))
    read: list[_Candidate] = []
    unread: list[list[_Candidate]] = []  # clusters of candidates
    for candidate in found:
        ok, corners, box = candidate
        if any(_overlap(box, kept[2]) > SAME_CODE_OVERLAP for kept in read):
            continue
        if ok:
            read.append(candidate)
            continue
        if _elongation(corners) > MAX_ELONGATION:
            continue  # two finder patterns paired with a wrong third: no QR code is that shape
        near = [c for c in unread if any(_near(box, other[2]) for other in c)]
        unread = [c for c in unread if not any(c is n for n in near)] + [[candidate, *(x for c in near for x in c)]]
    codes = [Code(True, corners, box, _box_sharpness(gray, box)) for _, corners, box in read]
    for cluster in unread:
        if len(cluster) == 1:
            corners = cluster[0][1]
        else:
            points = np.array([pt for _, cs, _ in cluster for pt in cs], np.int32)
            corners = tuple((int(x), int(y)) for x, y in cv2.convexHull(points).reshape(-1, 2))
        box = _box(corners, width, height)
        codes.append(Code(False, corners, box, _box_sharpness(gray, box)))
    return codes


def _box(corners: tuple[tuple[int, int], ...], width: int, height: int) -> tuple[int, int, int, int]:
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return max(0, min(xs)), max(0, min(ys)), min(width, max(xs) + 1), min(height, max(ys) + 1)


def _box_sharpness(gray: NDArray[Any], box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    return sharpness(gray[y0:y1, x0:x1])


def measure(gray: NDArray[Any]) -> Measure:
    height, width = gray.shape
    return Measure(width, height, sharpness(gray), float(gray.mean()), tuple(locate(gray)))


def summary(m: Measure, png: Path | None) -> dict[str, Any]:
    """The JSON line: figures and boxes, never a code's text."""
    return {
        "png": str(png) if png is not None else None,
        "width": m.width,
        "height": m.height,
        "sharpness": round(m.sharpness, 1),
        "brightness": round(m.brightness, 1),
        "codes": [{"read": c.read, "sharpness": round(c.sharpness, 1), "box": list(c.box)} for c in m.codes],
    }


def _label(image: NDArray[Any], text: str, x: int, y: int, color: tuple[int, int, int], scale: float = 0.5) -> int:
    """`text` on a black band with its baseline at y (kept inside the image); returns the band's height."""

    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    h, w = image.shape[:2]
    x = max(0, min(x, w - tw - 4))
    y = max(th + 3, min(y, h - base - 2))
    cv2.rectangle(image, (x, y - th - 3), (x + tw + 4, y + base + 1), BLACK, -1)
    cv2.putText(image, text, (x + 2, y), font, scale, color, 1, cv2.LINE_AA)
    return th + base + 4


def annotate(gray: NDArray[Any], m: Measure) -> NDArray[Any]:
    """The frame in gray as BGR, each code outlined and labelled, the figures at the top left."""

    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for code in m.codes:
        color = GREEN if code.read else ORANGE
        cv2.polylines(image, [np.array(code.corners, np.int32).reshape(-1, 1, 2)], True, color, 2, cv2.LINE_AA)
        what = "read" if code.read else "located, not read"
        x0, y0, _, y1 = code.box
        above = y0 - 6 if y0 >= 24 else y1 + 18
        _label(image, f"{what}: sharpness {code.sharpness:.0f}", x0, above, color)
    lines = [f"{m.width}x{m.height}  brightness {m.brightness:.0f}/255",
             f"sharpness (frame) {m.sharpness:.0f}"]
    lines += [f"code {i}: {'read' if c.read else 'located, not read'}, sharpness {c.sharpness:.0f}"
              for i, c in enumerate(m.codes, 1)] or ["no code located"]
    y = 16
    for line in lines:
        y += _label(image, line, 4, y, WHITE)
    return image


def write_png(path: Path, gray: NDArray[Any], m: Measure) -> None:

    if not cv2.imwrite(str(path), annotate(gray, m)):
        raise QrgateError(f"cannot write {path}")


def watch_line(m: Measure, best: float | None) -> str:
    codes = [c for c in m.codes if c.read] or list(m.codes)
    line = f"sharpness {m.sharpness:7.1f}  brightness {m.brightness:5.1f}  {m.seen}"
    if codes:
        line += f", code sharpness {codes[0].sharpness:.1f}"
    if best is not None:
        line += f" (best {best:.1f})"
    return line


# --- the camera ----------------------------------------------------------------------------------


def _open(cfg: config.Config) -> FrameSource:
    """The camera source the config names, entered; a live camera's failure says who may hold it."""

    try:
        source = open_source(cfg.camera)
        source.__enter__()
    except ModuleNotFoundError as exc:
        raise QrgateError(f"cannot open the camera: {exc.name} is not installed (on a Pi: apt install "
                          f"python3-picamera2, and a venv made with --system-site-packages)") from None
    except (QrgateError, OSError, RuntimeError, IndexError) as exc:
        if cfg.camera.source == "replay":
            raise QrgateError(f"cannot open the camera: {exc}") from None
        raise QrgateError(f"{CAMERA_BUSY}: {exc}") from None
    return source


def _grays(source: FrameSource, live: bool) -> Generator[NDArray[Any], None, None]:
    """Each frame's plane as an array of its own, the camera's buffer handed back at once.

    A source may yield None while its camera delivers nothing (picamera's
    bounded wait); silence for NO_FRAME_S is an error, not a hang.
    """

    frames = source.frames()
    last = time.monotonic()
    try:
        for frame in frames:
            if frame is None:
                if time.monotonic() - last > NO_FRAME_S:
                    raise QrgateError(f"the camera delivered no frame for {NO_FRAME_S:.0f} s")
                continue
            last = time.monotonic()
            try:
                gray = np.ascontiguousarray(frame.gray).copy()
            finally:
                frame.release()
            yield gray
    except (QrgateError, OSError, RuntimeError) as exc:
        if not live:
            raise
        raise QrgateError(f"the camera stopped delivering frames: {exc}") from None
    finally:
        frames.close()


def _settled(grays: Iterator[NDArray[Any]], settle_s: float, min_frames: int) -> NDArray[Any] | None:
    start, n, gray = time.monotonic(), 0, None
    for gray in grays:
        n += 1
        if n > min_frames and time.monotonic() - start >= settle_s:
            return gray
    return gray  # the stream ended early: its last frame


def run(cfg: config.Config, out: Path = DEFAULT_OUT) -> dict[str, Any]:
    """One settled frame, measured, written to `out`; the summary."""
    live = cfg.camera.source != "replay"
    source = _open(cfg)
    try:
        grays = _grays(source, live)
        try:
            gray = _settled(grays, SETTLE_S, SETTLE_FRAMES) if live else next(grays, None)
        finally:
            grays.close()
    finally:
        source.__exit__(None, None, None)
    if gray is None:
        raise QrgateError("the camera delivered no frame")
    m = measure(gray)
    write_png(out, gray, m)
    return summary(m, out)


def watch(cfg: config.Config, frames: int | None = None, out: Path | None = None, stream: TextIO | None = None) -> int:
    """A line per frame (a live camera: every WATCH_INTERVAL_S) until Ctrl-C, `frames` lines or the replay's end.

    On a terminal the line rewrites itself in place; otherwise (a pipe, a log,
    a test) each is a line of its own. With `out`, the last frame is written there
    at the end. Returns the number of lines.
    """
    stream = stream or sys.stdout
    tty = stream.isatty()
    live = cfg.camera.source != "replay"
    interval = WATCH_INTERVAL_S if live else 0.0
    lines, best, last, gray, m = 0, None, None, None, None
    source = _open(cfg)
    try:
        grays = _grays(source, live)
        try:
            for gray in grays:
                now = time.monotonic()
                if last is not None and now - last < interval:
                    continue
                last = now
                m = measure(gray)
                for code in m.codes:
                    best = code.sharpness if best is None else max(best, code.sharpness)
                line = watch_line(m, best)
                stream.write(f"\r{line}\x1b[K" if tty else line + "\n")
                stream.flush()
                lines += 1
                if frames is not None and lines >= frames:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            grays.close()
    finally:
        source.__exit__(None, None, None)
        if tty and lines:
            stream.write("\n")
            stream.flush()
    if out is not None and gray is not None and m is not None:
        write_png(out, gray, m)
    return lines


# --- the command ---------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:

    if args.frames is not None and not args.watch:
        raise QrgateError("--frames goes with --watch")
    cfg = config.load(args.config)
    if args.watch:
        watch(cfg, frames=args.frames, out=args.out)
        return 0
    print(json.dumps(run(cfg, args.out or DEFAULT_OUT)), flush=True)
    return 0
