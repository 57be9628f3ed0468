"""The built-in frame set of `qrgate bench scan`: visitors holding up phones, as the camera sees them.

Synthetic but honest camera input: 8-bit grayscale frames of the size the
camera delivers, each a fixed venue background with a visitor in front
holding a phone that shows a QR token, seen through a pinhole camera
(f = 530 px, a Pi camera's 62° field at 640 px) with vignetting, lens blur
and sensor noise. The phone is drawn at about twice the camera's resolution
and warped onto a canvas twice the frame's size, which is then averaged down
(`INTER_AREA`), as a sensor integrates light over each pixel.

Each visitor shows one code under one condition, the failures a venue's
reader meets (see `_LOOKS`), in two parts. The first (`CONDITIONS`): a clean
phone, a small code at the frame's edge, a tilted phone, a blurred one,
glare, dark mode, moiré. The second, what real phones add (issue 22,
`MORE_CONDITIONS`): a dimmed screen, its brightness stepping while the
shutter reads the frame, a hand moving the phone, the ceiling's lights
reflected in it, a cracked screen protector, a code turned a quarter, a half
or three quarters, one filling the frame. The third, visitors without a
smartphone (issue 23, `CARD_CONDITIONS`): a printed entry card (KC1), an
ID-1 card (85.6 x 54 mm) of matte white or off-white paper with its code
printed 42 mm wide at error correction Q (version 10, 57 modules) on its
left, inside a 4-module quiet zone, and on its right "ENTRY CARD", the
issuer, a 12-digit lookup number and its expiry; held up as a phone is, a
thumb over one of its right-hand corners on most cards. No screen: no
glare, no moiré, no pixel grid; the paper's fibres and the room's light
falling across it instead. Its conditions (`_CARD_LOOKS`): a fresh card, a
sticker-size print (the code 20-26 mm), smudges and grease, a wallet's
folds, a faded print. Visitor `i` of a part gets the part's `i % 7`th (a
card's `i % 5`th) condition (round-robin), holds the phone or card for
`frames_per_visitor` frames — the hand moving a little between frames —
and leaves `gap_frames` empty frames behind. Each part draws from a random
stream of its own: the first part's frames are the same with the second
part or without it, and as they were before it existed; both are the same
with the third or without it.

Calibrated so that zxing-cpp, called bare, reads most but not all frames of
the hard conditions: a second attempt has something to recover, and a
reader that reads nothing there is a reader a venue would return. Measured
on 210 visitors (seed 3): plain and dark 100%, tilt 90%, blur 87%, glare
85%, moiré 76%, small_edge 73%; no read in any empty frame. The second
part, on 210 visitors of its own (seed 3), zxing-cpp / zbar: dimmed 84 /
28%, brightness_step 82 / 83%, motion 84 / 70%, ceiling 84 / 93%, cracked
83 / 95%; rotated and large, checks more than hard conditions, 100 / 100%;
no read in any of its 630 empty frames, no misread. The third part, on 210
cards of its own (seed 3, real KC1 cards of 190 characters), zxing-cpp /
zbar / either: card 100 / 100 / 100%, card_small 83 / 62 / 83%,
card_smudged 95 / 100 / 100%, card_creased 76 / 50 / 82%, card_faded
77 / 40 / 78%; no read in any of its 630 empty frames, no misread. Q's
error correction absorbs most smudges; what it cannot is a module too
small to resolve (zxing-cpp reads a sticker's code down to ~1.8 px a
module) or a sticker nearer than the autofocus reaches, a fold that bends
the module grid, toner too faint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from lab.cards import layout as card_layout
from lab.render import background, qr_modules, write_png

CONDITIONS = ("plain", "small_edge", "tilt", "blur", "glare", "dark", "moire")  # the first part's conditions
MORE_CONDITIONS = ("dimmed", "brightness_step", "motion", "ceiling", "cracked", "rotated", "large")  # the second's
CARD_CONDITIONS = ("card", "card_small", "card_smudged", "card_creased", "card_faded")  # the third's: printed cards
EMPTY = "empty"

FOCAL_PX = 530.0  # a Pi camera's ~62° horizontal field at 640 px
SS = 2  # the canvas is SS times the frame; each frame pixel averages SS x SS canvas pixels
LINE_MS = 0.05  # the rolling shutter reads a row every ~50 µs: 480 rows in 24 ms of a 33 ms frame
FRAME_MS = 1000 / 30
APERTURE_MM = 1.52  # a Pi camera's lens, f = 3.04 mm at f/2: a point Z mm away, focused at F, blurs into a disc
FOCUS_MM = 250.0  # FOCAL_PX * APERTURE_MM * |1/Z - 1/F| frame pixels across; focused where visitors hold phones
NEAR_FOCUS_MM = 100.0  # the nearest the default macro autofocus (a Camera Module 3) focuses: a card nearer blurs
# A printed entry card as `qrgate card issue` lays it out (lab.cards.layout): its size, its code's side and error
# correction (version 10 at Q: 57 modules of 0.74 mm).
CARD_MM = (card_layout.CARD_W, card_layout.CARD_H)
CARD_CODE_MM = card_layout.QR_MM
CARD_CODE_AT_MM = (5.0, 6.0)  # the symbol's top left on the card; its 4-module quiet zone is the card's own white
CARD_EC = card_layout.EC_LEVEL


@dataclass(frozen=True)
class FrameSpec:
    name: str  # file name inside the folder, e.g. "00042.png"; sorted(names) == playing order
    condition: str  # one of CONDITIONS, or EMPTY
    text: str | None  # the QR text shown (None for an empty frame)
    visitor: int | None  # index of the visitor (0..), None for an empty frame


@dataclass(frozen=True)
class Look:
    """How one visitor holds the phone; every frame of theirs jitters it a little."""

    code_px: float  # the symbol's width in frame pixels if the phone faced the camera
    cx: float = 0.0  # where the symbol's centre is in the frame
    cy: float = 0.0
    roll: float = 0.0  # in-plane rotation, degrees
    tilt_x: float = 0.0  # the phone turned about the camera's horizontal axis, degrees
    tilt_y: float = 0.0  # ... about its vertical axis
    screen: float = 220.0  # luminance of the screen's background as the camera sees it
    ink: float = 25.0  # luminance of the modules (lighter than `screen` in dark mode)
    optics: float = 0.6  # the lens's own blur, Gaussian sigma in frame pixels
    defocus: float = 0.0  # extra Gaussian blur, sigma in frame pixels
    motion: float = 0.0  # length of a motion-blur streak, frame pixels
    motion_angle: float = 0.0
    glare: tuple | None = None  # (x, y, a, b, angle, peak): ellipse in modules of the symbol, peak in grey levels
    grid: tuple | None = None  # (screen pixels per module, canvas sub-pixels per screen pixel, gap darkness)
    noise: float = 2.0  # read noise, grey levels (shot noise comes on top)
    gain: float = 1.0  # exposure of the whole scene
    margin: float = 6.0  # keep the symbol at least this far from the frame's border
    edge: tuple | None = None  # (sx, sy): put the symbol against the left/right (-1/1), top/bottom border
    # The second part's conditions (None: as in the first part):
    streak: tuple | None = None  # (first, last, exposure ms): a moving hand's streak on the first and last frame;
    #   `motion` is then the phone's own streak (the venue stays sharp) and the rolling shutter skews it
    step: tuple | None = None  # (at, top, bottom, rows): the phone's light times `top` above the row `at` of the
    #   way down the symbol, times `bottom` below it, changing over `rows` rows
    reflections: tuple | None = None  # ((x, y, length, width, angle, peak), ...), sigma: lights in the glass,
    #   rectangles in modules of the symbol adding `peak` grey levels, blurred by `sigma` modules
    cracks: tuple | None = None  # ((x, y, r, light), lines, shifts, fade): a cracked protector, see `_cracked`
    # The third part's: a printed card in place of a phone (`screen` is then its paper, `ink` its toner)
    card: Card | None = None


@dataclass(frozen=True)
class Card:
    """A printed entry card as one visitor holds it, drawn once (`_card_image`): its layout scaled to `code_mm`, its
    paper, and what wear did to it. What lies over the code is placed in modules of the symbol from its top left, as
    the phone's glare is; the thumb in mm of the card, from its top left."""

    code_mm: float = CARD_CODE_MM  # the symbol's side; a sticker is the card's layout printed smaller
    lines: tuple = ()  # the text printed right of the code
    grain: float = 0.02  # paper: its light varies by about this share, in fibres and clouds
    light: tuple = (0.0, 1.0)  # (angle, low): the room's light across the card falls from 1 to `low` along `angle`
    thumb: tuple | None = None  # (x, y, a, b, angle, skin): a thumb's tip over a corner, never over the code
    smudges: tuple = ()  # ((kind, x, y, a, b, angle, strength), ...): "dirt", "grease" (a fingerprint), "smear"
    creases: tuple = ()  # ((x, y, angle, bend, gap, shade, width, flaked), ...): folds, see `_fold`
    fade: tuple | None = None  # (blotch, speckle, angle, low): toner worn unevenly, the print bleached along `angle`


# -- the conditions: one function each, drawing a visitor's Look ----------------------------------------------------


def _plain(rng: np.random.Generator, n: int) -> Look:
    """The phone held up fairly square to the camera: the case every reader must get."""
    return Look(code_px=rng.uniform(140, 260), roll=rng.uniform(-15, 15),
                tilt_x=rng.uniform(-8, 8), tilt_y=rng.uniform(-8, 8), screen=rng.uniform(195, 235),
                ink=rng.uniform(15, 40), noise=rng.uniform(1.5, 3.0))


def _small_edge(rng: np.random.Generator, n: int) -> Look:
    """A visitor standing back or off to one side: a small code (1.7-2.3 px modules; zxing's edge is
    near 1.85) by an edge or corner, where the lens is softest and vignetting darkest."""
    edge = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)][int(rng.integers(8))]
    return Look(code_px=n * rng.uniform(1.7, 2.3), roll=rng.uniform(-12, 12),
                tilt_x=rng.uniform(-10, 10), tilt_y=rng.uniform(-10, 10), screen=rng.uniform(190, 230),
                ink=rng.uniform(20, 45), optics=rng.uniform(0.6, 0.8), noise=rng.uniform(2.0, 3.0),
                margin=rng.uniform(3, 20), edge=edge)


def _tilt(rng: np.random.Generator, n: int) -> Look:
    """The phone shown at an angle (30-55° about one axis) and turned in-plane: cheap readers that expect a
    square code facing them misread or miss these; the far side's modules shrink to ~2 px."""
    tilt = rng.choice([-1, 1]) * rng.uniform(30, 55)
    about_x = rng.random() < 0.5
    return Look(code_px=rng.uniform(170, 250), roll=rng.uniform(-40, 40),
                tilt_x=tilt if about_x else rng.uniform(-5, 5), tilt_y=rng.uniform(-5, 5) if about_x else tilt,
                screen=rng.uniform(185, 230), ink=rng.uniform(20, 45), noise=rng.uniform(1.5, 3.0))


def _blur(rng: np.random.Generator, n: int) -> Look:
    """A phone held too close for the fixed-focus lens (defocus, Gaussian sigma 1.0-1.9 px on ~3.4-4.8 px
    modules), or a hand still moving into place (a 5-8 px motion streak; the phone close, 4.2-5.4 px
    modules). Past ~0.42 module of blur sigma, or a streak ~1.45 modules long, the code is gone for
    any reader; the ranges straddle that edge, so some frames of a visitor read and some do not."""
    look = Look(code_px=0, roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-8, 8),
                tilt_y=rng.uniform(-8, 8), screen=rng.uniform(195, 235), ink=rng.uniform(15, 40),
                noise=rng.uniform(1.5, 3.0))
    if rng.random() < 0.5:
        return replace(look, code_px=n * rng.uniform(3.4, 4.8), defocus=rng.uniform(1.0, 1.9))
    return replace(look, code_px=n * rng.uniform(4.2, 5.4), motion=rng.uniform(5, 8),
                   motion_angle=rng.uniform(0, 180))


def _glare(rng: np.random.Generator, n: int) -> Look:
    """A ceiling light reflected in the screen: a saturated soft patch over part of the code. Never over
    more than one finder pattern (then no reader could), but often over data the error correction must
    rebuild, or over the timing patterns a cheap reader samples."""
    finders = [(3.5, 3.5), (n - 3.5, 3.5), (3.5, n - 3.5)]
    while True:
        x, y = rng.uniform(0.1, 0.9, 2) * n
        a, b = rng.uniform(0.16, 0.3) * n, rng.uniform(0.09, 0.17) * n
        angle = rng.uniform(0, 180)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        covered = sum(((((fx - x) * c + (fy - y) * s) / (a + 3.5)) ** 2
                       + ((-(fx - x) * s + (fy - y) * c) / (b + 3.5)) ** 2) < 1 for fx, fy in finders)
        if covered <= 1:
            break
    return Look(code_px=rng.uniform(150, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-12, 12),
                tilt_y=rng.uniform(-12, 12), screen=rng.uniform(180, 215), ink=rng.uniform(25, 50),
                glare=(x, y, a, b, angle, rng.uniform(220, 320)), noise=rng.uniform(1.5, 3.0))


def _dark(rng: np.random.Generator, n: int) -> Look:
    """Dark mode at low brightness: light modules on a dark screen, 60-120 grey levels apart, the exposure
    pushed up (more noise). Readers that only look for dark-on-light codes see nothing."""
    screen = rng.uniform(20, 45)
    return Look(code_px=rng.uniform(140, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-10, 10),
                tilt_y=rng.uniform(-10, 10), screen=screen, ink=screen + rng.uniform(60, 120),
                noise=rng.uniform(3.0, 5.0))


def _moire(rng: np.random.Generator, n: int) -> Look:
    """The screen's own pixel grid beating against the camera's: fringes of light and dark across the
    code, on a dimmer, lower-contrast screen, with a sharp lens that does not filter them out. The grid
    is drawn at about one screen pixel per frame pixel, coarser than a 400 ppi phone at 25 cm: the
    worst case, a low-dpi screen or one held close, where the fringes are strongest."""
    module = rng.uniform(2.8, 3.6)
    per_module = int(round(module / rng.uniform(0.8, 1.25)))  # screen pixels per module: ~1 per frame pixel
    return Look(code_px=n * module, roll=rng.uniform(-6, 6), tilt_x=rng.uniform(-6, 6),
                tilt_y=rng.uniform(-6, 6), screen=rng.uniform(150, 190), ink=rng.uniform(40, 70), optics=0.35,
                grid=(per_module, int(rng.integers(3, 5)), rng.uniform(0.35, 0.6)), noise=rng.uniform(1.5, 3.0))


# -- the second part: what real phones add (issue 22), from a random stream of its own ------------------------------


def _dimmed(rng: np.random.Generator, n: int) -> Look:
    """A screen at its lowest brightness (battery saver, a setting kept from the night): light mode, but its
    white only 14-30 grey levels above its modules' 10-20 (the panel's black and the entrance's light on the
    glass), and the camera, metering a frame the dim phone fills much of, raising its gain 1.2-1.6x: the
    venue brighter, the read noise 3-5 levels, 15-53 levels of contrast left in the code."""
    ink = rng.uniform(10, 20)
    return Look(code_px=rng.uniform(140, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-10, 10),
                tilt_y=rng.uniform(-10, 10), screen=ink + rng.uniform(14, 30), ink=ink,
                gain=rng.uniform(1.2, 1.6), noise=rng.uniform(3.0, 5.0))


def _brightness_step(rng: np.random.Generator, n: int) -> Look:
    """The screen's brightness stepping while the rolling shutter reads the frame (an entry-pass app turning
    the screen up as it shows the code, most do; an automatic brightness hunting): the rows read before the
    step see one level, those after it a level 2-4.5x brighter or dimmer, the change spread over the rows
    read during one exposure (0.3-1.5 ms in a lit entrance: 6-30 rows). The frames of this condition are
    those that caught a step, each at a row of its own across the code (`_moment`): a binarizer that
    averages its threshold over the step takes the dim side's light modules for dark ones."""
    ratio = rng.uniform(2.0, 4.5)
    top, bottom = (1 / ratio, 1.0) if rng.random() < 0.5 else (1.0, 1 / ratio)
    return Look(code_px=rng.uniform(150, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-8, 8),
                tilt_y=rng.uniform(-8, 8), screen=rng.uniform(195, 235), ink=rng.uniform(15, 40),
                noise=rng.uniform(1.5, 3.0), step=(0.5, top, bottom, rng.uniform(0.3, 1.5) / LINE_MS))


def _motion(rng: np.random.Generator, n: int) -> Look:
    """A hand moving the phone between frames (bringing it to the reader, or waving it there): the phone
    streaked along one direction, any, the venue behind it sharp. The streak grows from 0.5-2 px on a
    visitor's first frame (the code sharp-ish) to 1.1-2.2 modules on the last (3-4.2 px modules), ±15%
    frame to frame; indoors the exposure is long (8-16 ms), so between frames the phone travels
    FRAME_MS / exposure times its streak, and the rolling shutter skews it as it goes (`_moment`). Past a
    streak of ~1.5 modules the code is gone for any reader: a visitor's last frames are lost."""
    module = rng.uniform(3.0, 4.2)
    return Look(code_px=n * module, roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-8, 8),
                tilt_y=rng.uniform(-8, 8), screen=rng.uniform(195, 235), ink=rng.uniform(15, 40),
                noise=rng.uniform(1.5, 3.0), motion_angle=rng.uniform(0, 180),
                streak=(rng.uniform(0.5, 2.0), module * rng.uniform(1.1, 2.2), rng.uniform(8, 16)))


def _ceiling(rng: np.random.Generator, n: int) -> Look:
    """The ceiling's lights reflected in the screen's glass: one or two fluorescent tubes (bands across the
    whole phone, 1.2-2.5 modules wide, 4-9 modules apart as in a twin fitting) or a row of LED panels or
    downlights (3-5 bright rectangles along a line). Hard-edged, not glare's soft spot: the lights are 2-3 m
    away, their reflection little out of focus (sigma 0.15-0.3 module). Each adds 100-250 grey levels over
    light and dark modules alike: the brighter ones saturate the sensor and wipe out the modules under them,
    the dimmer ones leave a band of low contrast with hard edges across the code. Never over more than 7%
    of the symbol, nor over more than one finder pattern or one copy of the version information (then no
    reader could read it)."""
    while True:
        angle = rng.uniform(0, 180)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        x, y = rng.uniform(0.15, 0.85, 2) * n  # the bands or the row cross the code here
        peak = rng.uniform(100, 250)
        if rng.random() < 0.6:  # tubes
            width, gap = rng.uniform(1.2, 2.5), rng.uniform(4, 9)
            rects = tuple((x - s * gap * k, y + c * gap * k, 4.0 * n, width, angle, peak * rng.uniform(0.85, 1))
                          for k in range(1 + int(rng.random() < 0.5)))
        else:  # panels in a row
            count, length, width = int(rng.integers(3, 6)), rng.uniform(2, 4), rng.uniform(1.5, 3)
            pitch = length + rng.uniform(1.5, 4)
            rects = tuple((x + c * pitch * (k - (count - 1) / 2), y + s * pitch * (k - (count - 1) / 2), length, width,
                           angle, peak * rng.uniform(0.85, 1)) for k in range(count))
        if _readable(_covered(rects, n)):
            break
    return Look(code_px=rng.uniform(150, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-10, 10),
                tilt_y=rng.uniform(-10, 10), screen=rng.uniform(185, 230), ink=rng.uniform(20, 45),
                noise=rng.uniform(1.5, 3.0), reflections=(rects, rng.uniform(0.15, 0.3)))


def _covered(rects: tuple, n: int, ellipse: bool = False) -> np.ndarray:
    """Which of the symbol's modules (n x n, True = covered) have their centre under one of the rectangles (or the
    ellipses with those axes)."""
    y, x = np.mgrid[0:n, 0:n] + 0.5
    covered = np.zeros((n, n), bool)
    for cx, cy, length, width, angle, _ in rects:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        along, across = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
        if ellipse:
            covered |= (along / (length / 2)) ** 2 + (across / (width / 2)) ** 2 < 1
        else:
            covered |= (abs(along) < length / 2) & (abs(across) < width / 2)
    return covered


def _readable(covered: np.ndarray, share: float = 0.07) -> bool:
    """Whether a symbol with these modules lost could still be read: at most `share` of it, at most one finder
    pattern (with its separator), at most one copy of the version information (versions 7 and up)."""
    n = covered.shape[0]
    finders = [covered[:8, :8], covered[:8, n - 8:], covered[n - 8:, :8]]
    versions = [covered[:6, n - 11: n - 8], covered[n - 11: n - 8, :6]] if n >= 45 else []
    return covered.mean() <= share and sum(f.any() for f in finders) <= 1 and sum(v.any() for v in versions) <= 1


def _cracked(rng: np.random.Generator, n: int) -> Look:
    """A cracked screen protector: 4-7 cracks radiating from where the phone was hit (a shattered, milky
    spot 2-5 modules across at 80-140 grey levels, never on a finder pattern) across the whole phone, each
    kinked a little (±10°), thin (0.15-0.4 module) and either bright (light scattered by its faces, +50-130
    grey levels) or dark (its shadow, 30-60% darker). The shards between them lie unevenly over the screen,
    an air film under their edges: the image seen through each is shifted by 0.2-0.45 module at the crack,
    fading over 1-2 modules away from it (`_crack`), so the module grid breaks at every crack."""
    while True:
        ix, iy = rng.uniform(-0.2, 1.2, 2) * n
        r = rng.uniform(1.0, 2.5)
        if all(math.hypot(ix - fx, iy - fy) > 5 + r for fx, fy in [(3.5, 3.5), (n - 3.5, 3.5), (3.5, n - 3.5)]):
            break
    count = int(rng.integers(4, 8))
    while True:
        angles = np.sort(rng.uniform(0, 360, count))
        if np.min(np.diff(np.append(angles, angles[0] + 360))) > 30:
            break
    lines = []
    for a in angles:
        points, turn, length = [(ix, iy)], 0.0, 0.0
        while length < 4 * n:  # beyond the phone's edge
            turn = float(np.clip(turn + rng.normal(0, 5), -10, 10))
            step = rng.uniform(4, 10)
            t = math.radians(a + turn)
            points.append((points[-1][0] + step * math.cos(t), points[-1][1] + step * math.sin(t)))
            length += step
        bright = rng.random() < 0.5
        lines.append((tuple(points), rng.uniform(0.15, 0.4), rng.uniform(50, 130) if bright else 0.0,
                      0.0 if bright else rng.uniform(0.3, 0.6)))
    shifts = tuple(tuple(rng.uniform(0.2, 0.45) * np.array([math.cos(t), math.sin(t)]))
                   for t in rng.uniform(0, 2 * math.pi, count))
    return Look(code_px=rng.uniform(150, 240), roll=rng.uniform(-15, 15), tilt_x=rng.uniform(-10, 10),
                tilt_y=rng.uniform(-10, 10), screen=rng.uniform(190, 230), ink=rng.uniform(15, 40),
                noise=rng.uniform(1.5, 3.0), cracks=((ix, iy, r, rng.uniform(80, 140)), tuple(lines), shifts,
                                                     rng.uniform(1, 2)))


def _rotated(rng: np.random.Generator, n: int) -> Look:
    """A phone held sideways or upside down: the code turned 90°, 180° or 270° (±10°) in its plane, otherwise
    as plain. A check: every reader should read these; one that assumes an upright code does not."""
    return replace(_plain(rng, n), roll=90 * int(rng.integers(1, 4)) + rng.uniform(-10, 10))


def _large(rng: np.random.Generator, n: int) -> Look:
    """A phone held right against the reader, the code filling most of the frame: its side 365-410 px
    (76-85% of the 480 rows, 7.5-8.4 px modules), turned and tilted little, kept 3-8 px or more inside the
    frame's border, and out of focus: a code 44-50 mm wide on the screen is then FOCAL_PX * width / side =
    57-73 mm from the lens, which, focused at FOCUS_MM, blurs it by a disc 8-11 px across (Gaussian sigma
    a quarter of that: 0.23-0.37 module). A check: readers should read nearly all of these."""
    side = rng.uniform(365, 410)
    distance = FOCAL_PX * rng.uniform(44, 50) / side
    return Look(code_px=side, roll=rng.uniform(-2, 2), tilt_x=rng.uniform(-3, 3), tilt_y=rng.uniform(-3, 3),
                screen=rng.uniform(195, 235), ink=rng.uniform(15, 40), noise=rng.uniform(1.5, 3.0),
                defocus=FOCAL_PX * APERTURE_MM * (1 / distance - 1 / FOCUS_MM) / 4, margin=rng.uniform(3, 8))


# -- the third part: printed entry cards (issue 23), from a random stream of its own -----------------------------------


def _card_plain(rng: np.random.Generator, n: int) -> Look:
    """A fresh card held up where visitors hold phones, 110-180 mm from the lens (the 42 mm code 124-202 px wide:
    2.2-3.5 px modules), on white or off-white matte paper (150-215 grey levels) with black toner (15-35): the
    reference every reader must get."""
    return _held(rng, CARD_CODE_MM, 110, 180, paper=rng.uniform(150, 215), ink=rng.uniform(15, 35))


def _card_small(rng: np.random.Generator, n: int) -> Look:
    """A sticker-size print: the card's layout printed with its code 20-26 mm wide (0.35-0.46 mm modules), held
    70-130 mm from the lens, as a card is or a little nearer: 1.4-3.5 px modules, the farther ones below what
    zxing-cpp resolves (~1.8 px), the nearest nearer than the autofocus reaches (NEAR_FOCUS_MM), so blurred."""
    return _held(rng, rng.uniform(20, 26), 70, 130, paper=rng.uniform(150, 215), ink=rng.uniform(15, 35))


def _card_smudged(rng: np.random.Generator, n: int) -> Look:
    """A card carried for months: 1-3 marks over the code: grey or dark dirt (6-15 mm across, the paper 50-85%
    darker under it, its edge ragged), a greasy fingerprint (12-16 mm, its ridges 0.5 mm apart, 15-35% darker:
    finer than the camera resolves, a grey patch to it), or toner smeared by a thumb (6-15 mm, the dark modules
    dragged 2-4 modules over the light ones, which turn grey or dark). Never over more than one finder pattern, nor
    dirt and smears together over more than 26% of the symbol: about what Q's error correction may rebuild."""
    kinds = ("dirt", "grease", "smear")
    while True:
        smudges = []
        for _ in range(int(rng.integers(1, 4))):
            kind = kinds[int(rng.integers(3))]
            a = rng.uniform(4, 10) if kind != "grease" else rng.uniform(8, 11)  # semi-axes, modules
            strength = {"dirt": rng.uniform(0.5, 0.85), "grease": rng.uniform(0.15, 0.35), "smear": rng.uniform(0.7, 1)}
            smudges.append((kind, *(rng.uniform(0.1, 0.9, 2) * n), a, a * rng.uniform(0.5, 0.9), rng.uniform(0, 180),
                            strength[kind]))
        dark = tuple((x, y, 2 * a, 2 * b, angle, 0) for kind, x, y, a, b, angle, _ in smudges if kind != "grease")
        everything = tuple((x, y, 2 * a, 2 * b, angle, 0) for _, x, y, a, b, angle, _ in smudges)
        if _readable(_covered(dark, n, ellipse=True), 0.26) and _readable(_covered(everything, n, ellipse=True), 1):
            break
    return _held(rng, CARD_CODE_MM, 110, 180, paper=rng.uniform(150, 215), ink=rng.uniform(15, 35),
                 smudges=tuple(smudges))


def _card_creased(rng: np.random.Generator, n: int) -> Look:
    """A card kept folded in a wallet: a fold across the code, the card's middle one (upright, through the top right
    finder pattern) or its long one (across the code's middle), or a crease at any angle through it; one card in
    four folded both ways. The paper beyond the fold lies 12-35° out of the card's plane (foreshortened by up to
    18%), the fold itself a strip up to 0.6 module wide that stretches the print on it, or the sides overlapping by
    up to 0.35 module and hiding that much; the side beyond it lit 15-30% brighter or darker than this one, and along
    the fold either its valley's shadow or a white line where the toner cracked off the ridge (0.15-0.6 module)."""
    mm = CARD_CODE_MM / n  # mm per module
    x_mid = (CARD_MM[0] / 2 - CARD_CODE_AT_MM[0]) / mm  # the card's middle, in modules from the symbol's left
    y_mid = (CARD_MM[1] / 2 - CARD_CODE_AT_MM[1]) / mm
    creases = []
    first = rng.random()
    for fold in ((0, 1) if rng.random() < 0.25 else ((0,) if first < 0.35 else (1,) if first < 0.7 else (2,))):
        if fold == 0:
            x, y, angle = x_mid + rng.uniform(-2, 2) / mm, rng.uniform(0.2, 0.8) * n, 90 + rng.uniform(-3, 3)
        elif fold == 1:
            x, y, angle = rng.uniform(0.2, 0.8) * n, y_mid + rng.uniform(-2, 2) / mm, rng.uniform(-3, 3)
        else:
            x, y, angle = *(rng.uniform(0.2, 0.8, 2) * n), rng.uniform(0, 180)
        creases.append((x, y, angle + 180 * int(rng.integers(2)), rng.uniform(12, 35), rng.uniform(-0.35, 0.6),
                        rng.choice([-1, 1]) * rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.4), bool(rng.random() < 0.5)))
    return _held(rng, CARD_CODE_MM, 110, 180, paper=rng.uniform(150, 215), ink=rng.uniform(15, 35),
                 creases=tuple(creases))


def _card_faded(rng: np.random.Generator, n: int) -> Look:
    """Low contrast: a card printed with a toner running out, or bleached by the sun on a dashboard: ink grey, 30-65
    grey levels below the paper rather than 150, its density uneven (blotches 15-35% lighter, specks where the toner
    did not take), the print fading further, to 55-90% of that, towards one side; on paper yellowed or off-white
    (140-200)."""
    paper = rng.uniform(140, 200)
    return _held(rng, CARD_CODE_MM, 110, 180, paper=paper, ink=paper - rng.uniform(30, 65),
                 fade=(rng.uniform(0.15, 0.35), rng.uniform(0.02, 0.08), rng.uniform(0, 360), rng.uniform(0.55, 0.9)))


def _held(rng: np.random.Generator, code_mm: float, near: float, far: float, paper: float, ink: float,
          **wear) -> Look:
    """A card (or sticker) whose code is `code_mm` wide, held `near`-`far` mm from the lens, turned and tilted as a
    hand holds it up: its width in frame pixels, and the blur of depth where the autofocus (`[camera] focus`,
    macro by default) cannot follow it, nearer than NEAR_FOCUS_MM. Matte paper: no glare, no screen."""
    distance = rng.uniform(near, far)
    k = code_mm / CARD_CODE_MM
    card = Card(code_mm=code_mm, lines=_card_lines(rng), grain=rng.uniform(0.005, 0.015),
                light=(rng.uniform(0, 360), rng.uniform(0.8, 1.0)), thumb=_thumb(rng, k), **wear)
    return Look(code_px=FOCAL_PX * code_mm / distance, roll=rng.uniform(-20, 20), tilt_x=rng.uniform(-12, 12),
                tilt_y=rng.uniform(-12, 12), screen=paper, ink=ink, noise=rng.uniform(1.5, 3.0),
                defocus=FOCAL_PX * APERTURE_MM * (1 / distance - 1 / max(distance, NEAR_FOCUS_MM)) / 4, card=card)


def _card_lines(rng: np.random.Generator) -> tuple:
    """What a card says beside its code: its kind, the issuer, the lookup number staff can type, its expiry."""
    number = " ".join(f"{int(rng.integers(10000)):04d}" for _ in range(3))
    until = f"valid until {int(rng.integers(2027, 2029))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
    return ("ENTRY CARD", "Community Centre", number, until)


def _thumb(rng: np.random.Generator, k: float) -> tuple | None:
    """The holding thumb's tip (semi-axes 8-10 by 11-14 mm) over a right-hand corner or the long edge beside it, on
    seven cards in ten: the code is on the card's left, and the thumb stays clear of its quiet zone."""
    if rng.random() < 0.3:
        return None
    a, b = rng.uniform(8, 10), rng.uniform(11, 14)
    clear = (CARD_CODE_AT_MM[0] + CARD_CODE_MM * (1 + 4 / 57)) * k + b + 1  # the quiet zone, a thumb, its soft edge
    x = max(clear, CARD_MM[0] * k - rng.uniform(2, 12))
    y = CARD_MM[1] * k * int(rng.integers(2)) + rng.uniform(-3, 3)
    return (x, y, a, b, rng.uniform(0, 180), rng.uniform(110, 175))


_CARD_LOOKS: dict[str, Callable[[np.random.Generator, int], Look]] = {
    "card": _card_plain, "card_small": _card_small, "card_smudged": _card_smudged, "card_creased": _card_creased,
    "card_faded": _card_faded}


_MORE_LOOKS: dict[str, Callable[[np.random.Generator, int], Look]] = {
    "dimmed": _dimmed, "brightness_step": _brightness_step, "motion": _motion, "ceiling": _ceiling,
    "cracked": _cracked, "rotated": _rotated, "large": _large}


_LOOKS: dict[str, Callable[[np.random.Generator, int], Look]] = {
    "plain": _plain, "small_edge": _small_edge, "tilt": _tilt, "blur": _blur, "glare": _glare, "dark": _dark,
    "moire": _moire, **_MORE_LOOKS, **_CARD_LOOKS}


def _jitter(look: Look, rng: np.random.Generator) -> Look:
    """The next frame of the same visitor: the hand drifts, turns and shakes a little."""
    return replace(look, cx=look.cx + rng.normal(0, 2.5), cy=look.cy + rng.normal(0, 2.5),
                   code_px=look.code_px * rng.normal(1, 0.015), roll=look.roll + rng.normal(0, 1.2),
                   tilt_x=look.tilt_x + rng.normal(0, 1.5), tilt_y=look.tilt_y + rng.normal(0, 1.5),
                   defocus=look.defocus * rng.uniform(0.9, 1.1),
                   motion=max(0.0, look.motion + rng.uniform(-1, 1)) if look.motion else 0.0,
                   motion_angle=look.motion_angle + rng.normal(0, 5))


def _moment(look: Look, k: int, frames: int, rng: np.random.Generator) -> Look:
    """Frame `k` of a visitor's `frames`, where the condition changes within a visit (none of the first part's
    does, nor draws from `rng` here): a moving hand's streak grows and the phone travels; the screen's
    brightness steps at another row."""
    if look.streak is not None:
        first, last, exposure = look.streak
        lengths = [first + (last - first) * j / max(1, frames - 1) for j in range(frames)]
        travel = FRAME_MS / exposure * (sum(lengths[:k]) - sum(lengths) / 2)  # the middle frame near the centre
        a = math.radians(look.motion_angle)
        look = replace(look, motion=lengths[k] * rng.uniform(0.85, 1.15), cx=look.cx + travel * math.cos(a),
                       cy=look.cy + travel * math.sin(a))
    if look.step is not None:
        look = replace(look, step=(rng.uniform(0.2, 0.8), *look.step[1:]))
    return look


# -- drawing ----------------------------------------------------------------------------------------------------------


def _modules(text: str, ec: str = "M") -> np.ndarray:
    """The QR symbol as a boolean matrix, True = dark, without quiet zone: error correction M, as phone apps draw
    their codes, or a card's (CARD_EC)."""
    return qr_modules(text, ec)


def _card_image(modules: np.ndarray, u: int, look: Look, rng: np.random.Generator,
                ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The card of `look.card` at `u` pixels per module, as the camera would see it lit: toner on matte paper, the
    text beside the code, the wear, the room's light across it, the holding thumb.

    Returns the image (float32 luminance, premultiplied by its cover), its cover (1 on the card and the thumb, 0
    around them: the thumb reaches past the card's edge) and the symbol's box (x0, y0, side) in its pixels.
    """
    card = look.card
    assert card is not None
    n = len(modules)
    k = card.code_mm / CARD_CODE_MM  # a sticker: the card's layout printed smaller
    ppm = u * n / card.code_mm  # pixels per mm
    pad = math.ceil(16 * ppm) if card.thumb else 2
    cw, ch = round(CARD_MM[0] * k * ppm), round(CARD_MM[1] * k * ppm)
    h, w = ch + 2 * pad, cw + 2 * pad
    x0, y0 = pad + round(CARD_CODE_AT_MM[0] * k * ppm), pad + round(CARD_CODE_AT_MM[1] * k * ppm)
    # What is printed: the share of each pixel the toner covers.
    toner = np.zeros((h, w), np.float32)
    toner[y0: y0 + n * u, x0: x0 + n * u] = np.kron(modules, np.ones((u, u), np.float32))
    text = np.zeros((h, w), np.uint8)
    left, width, top = pad + round(53 * k * ppm), round(30 * k * ppm), pad + round(CARD_CODE_AT_MM[1] * k * ppm)
    for line, height, bold, gap in zip(card.lines, (4.2, 2.4, 3.4, 2.2), (3, 1, 2, 1), (0, 4, 12, 9)):
        top += round(gap * k * ppm)
        (tw, th), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
        scale = min(height * k * ppm / th, width / tw)
        top += round(th * scale)
        cv2.putText(text, line, (left, top), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                    max(1, round(bold * scale * 0.9)), cv2.LINE_AA)
    toner = np.maximum(toner, text.astype(np.float32) / 255)
    for kind, x, y, a, b, angle, strength in card.smudges:  # toner dragged by a thumb: dark over the light modules
        if kind == "smear":
            drag = cv2.filter2D(toner, -1, _streak(rng.uniform(2, 4) * u, rng.uniform(0, 180)))
            toner = np.maximum(toner, strength * np.minimum(1, 1.5 * drag)
                               * _blob(rng, (h, w), x0 + x * u, y0 + y * u, a * u, b * u, angle))
    contrast = np.full((h, w), look.screen - look.ink, np.float32)
    if card.fade is not None:
        blotch, speckle, angle, low = card.fade
        toner *= 1 - blotch * np.clip(0.5 + 0.4 * _clouds(rng, (h, w), 4 * ppm), 0, 1)
        toner *= rng.random((h, w), dtype=np.float32) >= speckle
        contrast *= 1 - (1 - low) * _across(h, w, angle)
    paper = look.screen * (1 + card.grain * (0.5 * _clouds(rng, (h, w), 0.15 * ppm) + _clouds(rng, (h, w), 2 * ppm)))
    lum = paper - contrast * toner
    for kind, x, y, a, b, angle, strength in card.smudges:
        if kind == "dirt":
            lum *= 1 - strength * _blob(rng, (h, w), x0 + x * u, y0 + y * u, a * u, b * u, angle)
        elif kind == "grease":  # a fingerprint: its ridges, 0.5 mm apart, greyer than the paper between them
            cx, cy, turn = x0 + x * u, y0 + y * u, math.radians(angle)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            along = (xx - cx) * math.cos(turn) + (yy - cy) * math.sin(turn)
            across = -(xx - cx) * math.sin(turn) + (yy - cy) * math.cos(turn)
            r = np.hypot(along, 1.3 * across) / (rng.uniform(0.45, 0.55) * ppm)
            ridges = 0.5 + 0.5 * np.cos(2 * math.pi * r + 2.5 * _clouds(rng, (h, w), 1.5 * ppm))
            lum *= 1 - strength * (0.3 + 0.7 * ridges) * _blob(rng, (h, w), cx, cy, a * u, b * u, angle)
    cover = np.zeros((h, w), np.float32)
    cover[pad: pad + ch, pad: pad + cw] = 1
    for crease in card.creases:
        lum, cover = _fold(lum, cover, crease, x0, y0, u, look.screen)
    angle, low = card.light
    lum *= 1 - (1 - low) * _across(h, w, angle)
    if card.thumb is not None:
        x, y, a, b, angle, skin = card.thumb
        tip = _blob(rng, (h, w), pad + x * ppm, pad + y * ppm, a * ppm, b * ppm, angle, ragged=0.0, soft=0.3 * ppm)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rounded = 1 - 0.35 * np.clip(np.hypot(xx - pad - x * ppm, yy - pad - y * ppm) / (b * ppm), 0, 1) ** 2
        lum = lum * (1 - tip) + skin * rounded * tip
        cover = np.maximum(cover, tip)
    return (lum * cover).astype(np.float32), cover, (x0 - 0.5, y0 - 0.5, float(n * u))


def _fold(lum: np.ndarray, cover: np.ndarray, crease: tuple, x0: int, y0: int, u: int, paper: float,
          ) -> tuple[np.ndarray, np.ndarray]:
    """A fold through (x, y) (modules of the symbol) at `angle`: beyond it (the side its normal points to) the paper
    lies `bend` degrees out of the card's plane, so the camera sees it foreshortened by cos(bend); the fold itself
    is a strip `gap` modules wide (negative: the sides overlap and hide that much print) showing its line stretched;
    beyond it the light is `1 + shade` times this side's; along it either the valley's shadow or, `flaked`, a white
    line `width` modules wide where the toner cracked off the ridge."""
    x, y, angle, bend, gap, shade, width, flaked = crease
    h, w = lum.shape
    turn = math.radians(angle)
    nx, ny = -math.sin(turn), math.cos(turn)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx - (x0 + x * u)) * nx + (yy - (y0 + y * u)) * ny  # pixels beyond the fold
    g = gap * u
    source = np.where(t > 0, np.maximum(0.0, (t - g) / math.cos(math.radians(bend))), t)
    mx, my = xx + (source - t) * nx, yy + (source - t) * ny
    lum = cv2.remap(lum, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cover = cv2.remap(cover, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lum = lum * (1 + shade * np.clip(t / (0.3 * u) + 0.5, 0, 1))
    half = max(abs(g), width * u) / 2
    line = np.clip(half + 0.5 - np.abs(t - g / 2), 0, 1)  # 1 on the fold's line, anti-aliased at its edges
    light = paper * (1 + shade * np.clip((g / 2) / (0.3 * u) + 0.5, 0, 1))
    lum = lum + (light - lum) * 0.8 * line if flaked else lum * (1 - 0.45 * line)
    return lum, cover


def _blob(rng: np.random.Generator, shape: tuple, cx: float, cy: float, a: float, b: float, angle: float,
          ragged: float = 0.5, soft: float | None = None) -> np.ndarray:
    """An ellipse (semi-axes a, b pixels) with an edge `soft` pixels wide (a smudge's: 15% of b), its outline
    `ragged` as a smudge's is: 0 to 1."""
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (round(cx * 16), round(cy * 16)), (round(a * 16), round(b * 16)), angle, 0, 360, 1.0, -1,
                cv2.LINE_AA, 4)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.15 * b if soft is None else soft))
    if ragged:
        mask *= np.clip(1 + ragged * _clouds(rng, shape, max(1.0, 0.4 * b)), 0, 1)
    return mask


def _clouds(rng: np.random.Generator, shape: tuple, scale: float) -> np.ndarray:
    """Smooth random texture varying over about `scale` pixels: mean 0, deviation 1."""
    h, w = shape
    coarse = rng.standard_normal((max(2, round(h / scale) + 2), max(2, round(w / scale) + 2))).astype(np.float32)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (fine - fine.mean()) / (fine.std() + 1e-6)


def _across(h: int, w: int, angle: float) -> np.ndarray:
    """0 to 1 across an image along `angle` degrees: where a light falls off, or a print fades."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * c + yy * s
    return (t - t.min()) / (t.max() - t.min())


def _phone(modules: np.ndarray | None, u: int, screen: float, ink: float, rng: np.random.Generator,
           ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A phone showing the code (or, without one, an app's text screen) at `u` pixels per module.

    Returns the image (float32 luminance) and the symbol's box (x0, y0, side) in its pixels.
    """
    n = modules.shape[0] if modules is not None else 49
    sw = int(1.45 * n * u)  # screen width: the code fills ~70% of it, as entry-pass apps draw it
    sh, bezel = int(sw * 2.1), max(2, int(0.08 * sw))
    phone = np.full((sh + 2 * bezel, sw + 2 * bezel), 12, np.uint8)  # 8 bits: OpenCV draws text on nothing else
    phone[bezel: bezel + sh, bezel: bezel + sw] = round(screen)
    lo, hi = min(screen, ink), max(screen, ink)
    bar = hi * 0.8 + lo * 0.2 if screen > ink else lo * 0.6 + hi * 0.4  # the app's header bar
    cv2.rectangle(phone, (bezel, bezel), (bezel + sw, bezel + int(0.12 * sh)), float(bar), -1)
    fs, th = sw / 420, max(1, int(sw / 200))
    cv2.putText(phone, "12:4" + str(int(rng.integers(10))), (bezel + int(0.05 * sw), bezel + int(0.035 * sh)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.8 * fs, float(ink), th, cv2.LINE_AA)
    cv2.putText(phone, "Entry pass", (bezel + int(0.06 * sw), bezel + int(0.095 * sh)), cv2.FONT_HERSHEY_SIMPLEX,
                1.3 * fs, float(ink), 2 * th, cv2.LINE_AA)
    x0, y0 = bezel + (sw - n * u) // 2, bezel + int(0.2 * sh)
    if modules is not None:
        phone[y0: y0 + n * u, x0: x0 + n * u] = np.where(np.kron(modules, np.ones((u, u), bool)), round(ink),
                                                          round(screen))
        lines = ["Show this code at", "the entrance."]
        top = y0 + n * u + int(0.08 * sh)
    else:  # an app screen with no code: a list of entries and a button
        lines = [f"{w} {int(rng.integers(10, 99))}" for w in rng.choice(
            ["Visit", "Cafe", "Library", "Museum", "Gym", "Office", "Hall"], 7)]
        top = y0
        cv2.rectangle(phone, (bezel + int(0.1 * sw), bezel + int(0.85 * sh)),
                      (bezel + int(0.9 * sw), bezel + int(0.93 * sh)), float(bar), -1)
    for k, line in enumerate(lines):
        cv2.putText(phone, line, (bezel + int(0.08 * sw), top + k * int(0.06 * sh)), cv2.FONT_HERSHEY_SIMPLEX,
                    1.0 * fs, float(ink), th, cv2.LINE_AA)
    return phone.astype(np.float32), (x0 - 0.5, y0 - 0.5, float(n * u))


def _homography(box: tuple[float, float, float], look: Look, w: int, h: int) -> np.ndarray:
    """Phone pixels -> frame pixels: the symbol's plane turned by (roll, tilt_x, tilt_y), seen by a pinhole
    camera with the symbol's centre at (cx, cy), or as near as keeps the whole symbol `margin` inside."""
    x0, y0, side = box
    src = np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], np.float32)
    return cv2.getPerspectiveTransform(src, _corners(look, w, h)[0].astype(np.float32))


def _corners(look: Look, w: int, h: int) -> tuple[np.ndarray, float, float]:
    """Where the symbol's four corners land in the frame (clockwise from its top left), and its centre."""
    r = look.code_px / 2
    local = np.array([[-r, -r, 0], [r, -r, 0], [r, r, 0], [-r, r, 0]])
    rot = cv2.Rodrigues(np.radians([look.tilt_x, 0, 0]))[0] @ cv2.Rodrigues(np.radians([0, look.tilt_y, 0]))[0] \
        @ cv2.Rodrigues(np.radians([0, 0, look.roll]))[0]
    cx, cy, m = look.cx, look.cy, look.margin
    for _ in range(10):  # shift the centre until the symbol fits (a shift barely changes the perspective)
        p = local @ rot.T + [cx - w / 2, cy - h / 2, FOCAL_PX]
        dst = FOCAL_PX * p[:, :2] / p[:, 2:] + [w / 2, h / 2]
        lo, hi = dst.min(0), dst.max(0)
        dx = max(0.0, m - lo[0]) - max(0.0, hi[0] - (w - 1 - m))
        dy = max(0.0, m - lo[1]) - max(0.0, hi[1] - (h - 1 - m))
        if abs(dx) < 0.05 and abs(dy) < 0.05:
            break
        cx, cy = cx + dx, cy + dy
    return dst, cx, cy


def _centre(look: Look, rng: np.random.Generator, w: int, h: int) -> Look:
    """Where the visitor holds the code: near the middle, or (small_edge) against the border the Look asks for."""
    if look.edge is None:
        return replace(look, cx=w / 2 + rng.uniform(-0.15, 0.15) * w, cy=h / 2 + rng.uniform(-0.12, 0.12) * h)
    sx, sy = look.edge  # far beyond the border, then pulled back to `margin` from it
    look = replace(look, cx={-1: -w, 1: 2 * w, 0: w / 2 + rng.uniform(-0.25, 0.25) * w}[sx],
                   cy={-1: -h, 1: 2 * h, 0: h / 2 + rng.uniform(-0.25, 0.25) * h}[sy])
    _, cx, cy = _corners(look, w, h)
    return replace(look, cx=cx, cy=cy)


def _person(bg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The visitor behind the phone: a torso and a head, some shade of clothing and skin."""
    h, w = bg.shape
    out = bg.astype(np.float32).copy()
    cx = w / 2 + rng.uniform(-0.2, 0.2) * w
    cv2.ellipse(out, (int(cx), int(h * 1.05)), (int(w * rng.uniform(0.25, 0.35)), int(h * 0.55)), 0, 180, 360,
                float(rng.uniform(30, 170)), -1)
    cv2.circle(out, (int(cx + rng.uniform(-20, 20)), int(h * 0.22)), int(h * 0.13), float(rng.uniform(90, 180)), -1)
    return out


def _grid(phone: np.ndarray, box: tuple, sub: int, gap: float) -> np.ndarray:
    """Darken the last of every `sub` rows and columns, in step with the code: the gaps between screen pixels."""
    out = phone.copy()
    x0, y0 = int(box[0] + 0.5) % sub, int(box[1] + 0.5) % sub
    out[(y0 - 1) % sub:: sub, :] *= 1 - gap
    out[:, (x0 - 1) % sub:: sub] *= 1 - gap
    return out


def _reflect(phone: np.ndarray, box: tuple, n: int, reflections: tuple) -> np.ndarray:
    """Add the ceiling's lights, reflected in the glass, to the phone's light (it saturates later, in `_camera`)."""
    rects, sigma = reflections
    x0, y0, side = box
    u = side / n
    light = np.zeros_like(phone)
    for x, y, length, width, angle, peak in rects:
        corners = cv2.boxPoints(((x0 + x * u, y0 + y * u), (length * u, width * u), angle))
        cv2.fillConvexPoly(light, np.round(corners * 16).astype(np.int32), float(peak), cv2.LINE_AA, 4)
    return phone + cv2.GaussianBlur(light, (0, 0), sigma * u)


def _crack(phone: np.ndarray, box: tuple, n: int, cracks: tuple) -> np.ndarray:
    """A cracked protector over the screen: each shard's image shifted (most next to the cracks), then the cracks
    and the shattered spot drawn on it (see `_cracked`)."""
    (ix, iy, r, milk), lines, shifts, fade = cracks
    x0, y0, side = box
    u = side / n
    h, w = phone.shape

    def px(points) -> np.ndarray:
        return np.array([[x0 + x * u, y0 + y * u] for x, y in points], np.float32)

    shard = np.full((h, w), -1, np.int32)  # which shard each pixel lies under: between ray i and ray i + 1
    for i, (points, *_) in enumerate(lines):
        after = lines[(i + 1) % len(lines)][0]
        a0 = math.atan2(points[-1][1] - iy, points[-1][0] - ix)
        a1 = math.atan2(after[-1][1] - iy, after[-1][0] - ix)
        a1 += 2 * math.pi if a1 <= a0 else 0.0
        arc = [(ix + 6 * n * math.cos(t), iy + 6 * n * math.sin(t)) for t in np.linspace(a0, a1, 12)]
        polygon = list(points) + arc + list(after[::-1])
        cv2.fillPoly(shard, [np.round(px(polygon)).astype(np.int32)], i)
    on_crack = np.full((h, w), 255, np.uint8)
    for points, *_ in lines:
        cv2.polylines(on_crack, [np.round(px(points)).astype(np.int32)], False, 0, 1)
    weight = np.exp(-cv2.distanceTransform(on_crack, cv2.DIST_L2, 5) / (fade * u))
    shift = (np.array([*shifts, (0, 0)], np.float32) * u)[shard]  # shard -1 (under no shard): no shift
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(phone, x - shift[..., 0] * weight, y - shift[..., 1] * weight, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    for points, width, light, shade in lines:
        line = np.zeros((h, w), np.uint8)
        cv2.polylines(line, [np.round(px(points) * 16).astype(np.int32)], False, 255,
                      max(1, round(width * u)), cv2.LINE_AA, 4)
        a = line.astype(np.float32) / 255
        out = out * (1 - shade * a) + light * a
    spot = np.zeros((h, w), np.uint8)
    cv2.circle(spot, (round((x0 + ix * u) * 16), round((y0 + iy * u) * 16)), round(r * u * 16), 255, -1,
               cv2.LINE_AA, 4)
    a = cv2.GaussianBlur(spot.astype(np.float32) / 255, (0, 0), 0.3 * u)
    return out * (1 - a) + milk * a


def _streak(length: float, angle: float) -> np.ndarray:
    """A motion-blur kernel: a line `length` frame pixels long at `angle` degrees, summing to 1."""
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    half = length / 2
    cv2.line(kernel, (int(round(k // 2 - c * half)), int(round(k // 2 - s * half))),
             (int(round(k // 2 + c * half)), int(round(k // 2 + s * half))), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def _camera(scene: np.ndarray, look: Look, rng: np.random.Generator, vignette: np.ndarray,
            glare: np.ndarray | None = None) -> np.ndarray:
    """The sensor's view: exposure, glare, vignetting, blur, shot and read noise, 8-bit quantisation."""
    frame = scene * look.gain
    if glare is not None:
        frame = frame + glare
    frame = np.minimum(frame, 255.0) * vignette  # the screen saturates before the lens darkens the corners
    sigma = math.hypot(look.optics, look.defocus)
    frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    if look.motion and look.streak is None:  # the camera shaken, or everything moving: the whole frame
        frame = cv2.filter2D(frame, -1, _streak(look.motion, look.motion_angle))
    noise = np.sqrt(look.noise ** 2 + 0.04 * np.maximum(frame, 0))
    frame = frame + noise * rng.standard_normal(frame.shape, np.float32)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def _render(bg: np.ndarray, phone: np.ndarray, box: tuple, look: Look, n: int, rng: np.random.Generator,
            vignette: np.ndarray, cover: np.ndarray | None = None) -> np.ndarray:
    """One frame: the phone (or a card, with its `cover`, premultiplied) warped onto a 2x canvas, averaged down to
    the frame, over the scene."""
    h, w = bg.shape
    hom = _homography(box, look, w, h)
    x0, y0, side = box
    corners = cv2.perspectiveTransform(np.array([[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side],
                                                  [x0, y0 + side]]], np.float32), hom)[0]
    top, bottom = float(corners[:, 1].min()), float(corners[:, 1].max())
    if look.streak is not None and look.motion:  # row y is read (y - middle) * LINE_MS later: the phone has moved
        a, middle = math.radians(look.motion_angle), (top + bottom) / 2
        moved = look.motion / look.streak[2] * LINE_MS  # frame pixels per row
        c, s = moved * math.cos(a), moved * math.sin(a)
        hom = np.array([[1, c, -c * middle], [0, 1 + s, -s * middle], [0, 0, 1]]) @ hom
    to_canvas = np.array([[SS, 0, (SS - 1) / 2], [0, SS, (SS - 1) / 2], [0, 0, 1]])
    size = (w * SS, h * SS)
    if look.grid is None:  # a camera's lens does not resolve finer than its pixels: no aliasing from drawing
        phone = cv2.GaussianBlur(phone, (0, 0), 0.5)
    warped = cv2.warpPerspective(phone, to_canvas @ hom, size, flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.warpPerspective(np.ones_like(phone) if cover is None else cover, to_canvas @ hom, size,
                                flags=cv2.INTER_LINEAR, borderValue=0)
    warped = cv2.resize(warped, (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    if look.step is not None:  # the phone's own light, row by row as the shutter read it
        at, above, below, rows = look.step
        row = top + at * (bottom - top)
        t = np.clip((np.arange(h, dtype=np.float32) - row) / rows + 0.5, 0, 1)
        warped = warped * (above + (below - above) * t)[:, None]
    if look.streak is not None and look.motion:  # the phone streaked, the venue behind it sharp
        kernel = _streak(look.motion, look.motion_angle)
        warped, alpha = cv2.filter2D(warped, -1, kernel), cv2.filter2D(alpha, -1, kernel)
    scene = bg * (1 - alpha) + warped
    glare = None
    if look.glare is not None:
        gx, gy, a, b, angle, peak = look.glare
        x0, y0, side = box
        u = side / n
        pt = cv2.perspectiveTransform(np.array([[[x0 + gx * u, y0 + gy * u]]], np.float32), hom)[0, 0]
        px = look.code_px / n  # frame pixels per module
        glare = np.zeros_like(scene)
        cv2.ellipse(glare, (int(pt[0]), int(pt[1])), (int(a * px), int(b * px)), angle + look.roll, 0, 360,
                    float(peak), -1)
        glare = cv2.GaussianBlur(glare, (0, 0), max(2.0, b * px / 2.5))
    return _camera(scene, look, rng, vignette, glare)


def _empty(bg: np.ndarray, rng: np.random.Generator, vignette: np.ndarray) -> np.ndarray:
    """Nobody in front of the reader, someone passing by, or a phone showing an app screen without a code."""
    h, w = bg.shape
    kind = rng.integers(3)
    look = Look(code_px=rng.uniform(120, 220), roll=rng.uniform(-20, 20), tilt_x=rng.uniform(-15, 15),
                tilt_y=rng.uniform(-15, 15), noise=rng.uniform(1.5, 3.5), gain=rng.uniform(0.9, 1.1))
    if kind == 0:
        return _camera(bg.astype(np.float32), look, rng, vignette)
    scene = _person(bg, rng)
    if kind == 1:
        return _camera(scene, look, rng, vignette)
    dark = rng.random() < 0.3
    screen, ink = (rng.uniform(25, 45), rng.uniform(140, 200)) if dark else (rng.uniform(190, 235), rng.uniform(15, 45))
    phone, box = _phone(None, 4, screen, ink, rng)
    return _render(scene, phone, box, _centre(look, rng, w, h), 49, rng, vignette)


def build(folder: Path, texts: Sequence[str], frames_per_visitor: int = 6, gap_frames: int = 3,
          seed: int = 0, width: int = 640, height: int = 480, more_texts: Sequence[str] = (),
          card_texts: Sequence[str] = ()) -> list[FrameSpec]:
    """Write the frames as PNGs into `folder` (created if missing) and return them in playing order.

    Visitor `i` shows `texts[i]` under `CONDITIONS[i % 7]` for `frames_per_visitor` frames, then
    `gap_frames` empty frames follow. Then, the same way, visitor `len(texts) + j` shows `more_texts[j]`
    under `MORE_CONDITIONS[j % 7]`, and after them each of `card_texts` is held up on a printed card under
    `CARD_CONDITIONS[j % 5]`, each part drawn from a random stream of its own: a part's frames are the same
    whatever follows them. `folder/manifest.json` lists the specs, for a later run to reuse.
    Deterministic for a seed.
    """
    if not texts:
        raise ValueError("build needs at least one text")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    venue = background(width, height, seed).astype(np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - width / 2) ** 2 + (y - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    vignette = (1 - 0.25 * r2).astype(np.float32)
    total = (len(texts) + len(more_texts) + len(card_texts)) * (frames_per_visitor + gap_frames)
    digits = max(5, len(str(total - 1)))
    specs: list[FrameSpec] = []

    def emit(frame: np.ndarray, condition: str, text: str | None, visitor: int | None) -> None:
        name = f"{len(specs):0{digits}d}.png"
        write_png(folder / name, frame)
        specs.append(FrameSpec(name, condition, text, visitor))

    visitor = 0
    for part, conditions, rng in ((texts, CONDITIONS, np.random.default_rng(seed)),
                                  (more_texts, MORE_CONDITIONS, np.random.default_rng([seed, 1])),
                                  (card_texts, CARD_CONDITIONS, np.random.default_rng([seed, 2]))):
        for j, text in enumerate(part):
            condition = conditions[j % len(conditions)]
            modules = _modules(text, CARD_EC if condition in CARD_CONDITIONS else "M")
            n = modules.shape[0]
            look = _centre(_LOOKS[condition](rng, n), rng, width, height)
            look = replace(look, gain=look.gain * rng.uniform(0.9, 1.1))
            scene = _person(venue, rng)
            cover = None
            # The phone is drawn at ~2 px per canvas pixel's worth of module, or on its own pixel grid for moiré.
            if look.card is not None:
                phone, cover, box = _card_image(modules, max(3, math.ceil(SS * look.code_px / n)), look, rng)
            elif look.grid is None:
                u = max(3, math.ceil(SS * look.code_px / n))
                phone, box = _phone(modules, u, look.screen, look.ink, rng)
            else:
                per_module, sub, gap = look.grid
                phone, box = _phone(modules, per_module * sub, look.screen, look.ink, rng)
                phone = _grid(phone, box, sub, gap)  # the bezel too: it is dark enough not to matter
            if look.reflections is not None:
                phone = _reflect(phone, box, n, look.reflections)
            if look.cracks is not None:
                phone = _crack(phone, box, n, look.cracks)
            for k in range(frames_per_visitor):
                frame_look = _moment(_jitter(look, rng), k, frames_per_visitor, rng)
                emit(_render(scene, phone, box, frame_look, n, rng, vignette, cover), condition, text, visitor)
            for _ in range(gap_frames):
                emit(_empty(venue, rng, vignette), EMPTY, None, None)
            visitor += 1
    (folder / "manifest.json").write_text(json.dumps([asdict(s) for s in specs], indent=1) + "\n")
    return specs
