"""The built-in frame set of `qrgate bench scan`: the files, the manifest, the order, readable codes, the first part
as it was before the second and both as they were before the third, each of the second part's conditions seen in its
frames, and the third's printed cards: their code, where the thumb goes, a fold, a faded print."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import replace

import cv2
import numpy as np
import pytest
import zxingcpp

from lab.bench import scenes

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
VISITORS, MORE, CARDS, PER_VISITOR, GAP = 14, 14, 20, 2, 1  # two visitors per condition in each part, four a card one
PHONES = VISITORS + MORE
# The pixels of the first part's 42 frames (seed 0) as the code before the second part drew them (commit 0d57d61),
# with the lock's numpy and OpenCV: the set the first part's figures were measured on.
FIRST_PART_SHA256 = "99bfc87bfd83e5d378ffcdc18512c8fe09be9965ce700bdd729906e3979a8ede"
# The pixels of both parts' 84 frames (seed 0) as the code before the third part drew them (commit 24a9e84).
PHONE_PARTS_SHA256 = "6c594540e84e07b6a44aae888affc7c772c32196b2fd7f9b18ff3d93c1341bf5"


def _texts(n: int, prefix: str = "KP1:") -> list[str]:
    """Texts of a token's length and alphabet (a card's too: KC1 is 190 characters of base45 as well)."""
    rng = random.Random(0 if prefix == "KP1:" else 1)
    return [prefix + "".join(rng.choice(ALPHABET) for _ in range(186)) for _ in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    texts = _texts(PHONES) + _texts(CARDS, "KC1:")
    return folder, texts, scenes.build(folder, texts[:VISITORS], frames_per_visitor=PER_VISITOR, gap_frames=GAP,
                                       seed=0, more_texts=texts[VISITORS:PHONES], card_texts=texts[PHONES:])


@pytest.fixture(scope="module")
def read(built):
    """Per code frame: its spec, the frame, and zxing-cpp's reading of its code (None if it did not read it)."""
    folder, _, specs = built
    out = []
    for spec in specs:
        if spec.text is None:
            continue
        gray = cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED)
        found = [b for b in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode) if b.text == spec.text]
        out.append((spec, gray, found[0] if found else None))
    return out


def test_files_in_playing_order(built):
    folder, texts, specs = built
    names = [s.name for s in specs]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert len(specs) == (PHONES + CARDS) * (PER_VISITOR + GAP)
    assert sorted(p.name for p in folder.glob("*.png")) == names
    for spec in specs:
        gray = cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED)
        assert gray is not None and gray.shape == (480, 640) and gray.dtype == np.uint8, spec.name


def test_visitors_round_robin_then_gap(built):
    _, texts, specs = built
    it = iter(specs)
    for i, text in enumerate(texts):
        condition = (scenes.CONDITIONS[i % 7] if i < VISITORS else scenes.MORE_CONDITIONS[(i - VISITORS) % 7]
                     if i < PHONES else scenes.CARD_CONDITIONS[(i - PHONES) % 5])
        for _ in range(PER_VISITOR):
            s = next(it)
            assert (s.condition, s.text, s.visitor) == (condition, text, i)
        for _ in range(GAP):
            s = next(it)
            assert (s.condition, s.text, s.visitor) == (scenes.EMPTY, None, None)
    conditions = {s.condition for s in specs}
    assert conditions == set(scenes.CONDITIONS) | set(scenes.MORE_CONDITIONS) | set(scenes.CARD_CONDITIONS) | {
        scenes.EMPTY}
    assert len(set(scenes.CONDITIONS) | set(scenes.MORE_CONDITIONS) | set(scenes.CARD_CONDITIONS)) == 19


def test_manifest_round_trips(built):
    folder, _, specs = built
    assert [scenes.FrameSpec(**d) for d in json.loads((folder / "manifest.json").read_text())] == specs


def test_same_seed_same_bytes(built, tmp_path):
    folder, texts, specs = built
    again = scenes.build(tmp_path, texts[:VISITORS], frames_per_visitor=PER_VISITOR, gap_frames=GAP, seed=0,
                         more_texts=texts[VISITORS:PHONES], card_texts=texts[PHONES:])
    assert again == specs
    for spec in specs:
        assert (tmp_path / spec.name).read_bytes() == (folder / spec.name).read_bytes(), spec.name
    other = scenes.build(tmp_path / "other", texts[:1], frames_per_visitor=1, gap_frames=0, seed=1)
    assert (tmp_path / "other" / other[0].name).read_bytes() != (folder / specs[0].name).read_bytes()


def test_the_first_part_is_the_set_as_it_was(built, tmp_path):
    """Issue 22: the first part's frames are those of the code before the second part existed, and the second
    part, drawn from a random stream of its own, changes none of them."""
    folder, texts, specs = built
    first = specs[:VISITORS * (PER_VISITOR + GAP)]
    assert {s.condition for s in first} == set(scenes.CONDITIONS) | {scenes.EMPTY}
    digest = hashlib.sha256()
    for spec in first:
        digest.update(cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED).tobytes())
    assert digest.hexdigest() == FIRST_PART_SHA256
    alone = scenes.build(tmp_path, texts[:VISITORS], frames_per_visitor=PER_VISITOR, gap_frames=GAP, seed=0)
    assert alone == first
    for spec in first:
        assert (tmp_path / spec.name).read_bytes() == (folder / spec.name).read_bytes(), spec.name


def test_the_phone_parts_are_the_set_as_it_was(built):
    """Issue 23: the printed cards, drawn from a third random stream, change none of the first two parts' frames:
    their figures still compare with earlier runs'."""
    folder, _, specs = built
    phones = specs[:PHONES * (PER_VISITOR + GAP)]
    assert {s.condition for s in phones} == set(scenes.CONDITIONS) | set(scenes.MORE_CONDITIONS) | {scenes.EMPTY}
    digest = hashlib.sha256()
    for spec in phones:
        digest.update(cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED).tobytes())
    assert digest.hexdigest() == PHONE_PARTS_SHA256


def test_the_card_part_is_its_own_per_seed(built, tmp_path):
    """The cards are the same frames whatever phones come before them (their stream is the seed's own), and another
    seed draws other cards."""
    folder, texts, specs = built
    cards = specs[PHONES * (PER_VISITOR + GAP):]
    assert {s.condition for s in cards} == set(scenes.CARD_CONDITIONS) | {scenes.EMPTY}
    alone = scenes.build(tmp_path / "alone", texts[:1], frames_per_visitor=PER_VISITOR, gap_frames=GAP, seed=0,
                         card_texts=texts[PHONES:])[PER_VISITOR + GAP:]
    assert [(s.condition, s.text) for s in alone] == [(s.condition, s.text) for s in cards]
    for mine, theirs in zip(alone, cards):
        assert (tmp_path / "alone" / mine.name).read_bytes() == (folder / theirs.name).read_bytes(), theirs.name
    other = scenes.build(tmp_path / "other", texts[:1], frames_per_visitor=1, gap_frames=0, seed=1,
                         card_texts=texts[PHONES:PHONES + 1])
    assert (tmp_path / "other" / other[1].name).read_bytes() != (folder / cards[0].name).read_bytes()


def test_zxing_reads_each_condition_and_nothing_in_empty_frames(built):
    folder, _, specs = built
    read: dict[str, int] = {}
    for spec in specs:
        gray = cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED)
        texts = [b.text for b in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode)]
        if spec.condition == scenes.EMPTY:
            assert texts == [], spec.name
        else:
            assert set(texts) <= {spec.text}, spec.name  # never another visitor's code, never garbage
            read[spec.condition] = read.get(spec.condition, 0) + (spec.text in texts)
    assert all(read.get(c, 0) >= 1 for c in scenes.CONDITIONS + scenes.MORE_CONDITIONS + scenes.CARD_CONDITIONS), read


# -- the second part's conditions, each seen in its frames ------------------------------------------------------------


def _symbol(gray: np.ndarray, barcode, shrink: float = 0.1) -> tuple[np.ndarray, float]:
    """The pixels inside the symbol zxing-cpp located (its corners pulled `shrink` towards the middle: no quiet zone),
    and its side in frame pixels."""
    p = barcode.position
    corners = np.float32([[q.x, q.y] for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)])
    side = float(np.mean([np.linalg.norm(corners[i] - corners[(i + 1) % 4]) for i in range(4)]))
    mask = np.zeros(gray.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners + shrink * (corners.mean(0) - corners)).astype(np.int32), 1)
    return mask.astype(bool), side


def _by_condition(read) -> dict[str, list]:
    """The frames zxing-cpp read, per condition: (spec, frame, barcode)."""
    out = defaultdict(list)
    for spec, gray, barcode in read:
        if barcode is not None:
            out[spec.condition].append((spec, gray, barcode))
    return out


def _off_zero(degrees: float) -> float:
    """How far an orientation is from upright, in degrees (0-180)."""
    return abs((degrees + 180) % 360 - 180)


def test_rotated_codes_are_read_turned_a_quarter_a_half_or_three_quarters(read):
    seen = _by_condition(read)
    assert seen["rotated"] and seen["plain"]
    for spec, _, barcode in seen["rotated"]:
        turn = round(barcode.orientation / 90) % 4
        assert turn != 0 and _off_zero(barcode.orientation - 90 * turn) <= 25, (spec.name, barcode.orientation)
    for spec, _, barcode in seen["plain"]:
        assert _off_zero(barcode.orientation) <= 25, (spec.name, barcode.orientation)


def test_large_codes_fill_the_frame(read):
    seen = _by_condition(read)
    assert len(seen["large"]) == 2 * PER_VISITOR  # a check: every frame read
    for spec, gray, barcode in seen["large"]:
        assert _symbol(gray, barcode)[1] >= 0.7 * gray.shape[0], spec.name
    for condition in set(seen) - {"large"}:
        for spec, gray, barcode in seen[condition]:
            assert _symbol(gray, barcode)[1] < 0.6 * gray.shape[0], spec.name


def test_a_brightness_step_crosses_the_code(read):
    """The light modules' level, in ten bands of rows across the symbol: a step between the brightest and dimmest."""
    def step(gray, barcode) -> float:
        mask, _ = _symbol(gray, barcode)
        rows, values = np.nonzero(mask)[0], gray[mask].astype(float)
        edges = np.quantile(rows, np.linspace(0, 1, 11))
        light = [np.percentile(values[(rows >= a) & (rows <= b)], 90) for a, b in zip(edges, edges[1:])]
        return max(light) / min(light)

    seen = _by_condition(read)
    assert seen["brightness_step"]
    assert all(step(g, b) >= 1.7 for _, g, b in seen["brightness_step"])
    assert all(step(g, b) <= 1.2 for _, g, b in seen["plain"] + seen["rotated"] + seen["dimmed"])


def contrast(gray, barcode) -> float:
    """The spread of grey levels over a read code's symbol: ink to paper (or screen)."""
    values = gray[_symbol(gray, barcode)[0]]
    return float(np.percentile(values, 90) - np.percentile(values, 10))


def test_a_dimmed_screen_shows_the_code_at_low_contrast(read):
    seen = _by_condition(read)
    assert seen["dimmed"]
    assert all(contrast(g, b) <= 60 for _, g, b in seen["dimmed"])
    assert all(contrast(g, b) >= 100 for _, g, b in seen["plain"] + seen["rotated"] + seen["cracked"])


def test_a_moving_hand_blurs_the_later_frames(read):
    """A visitor's last frame against their first: less fine detail (the Laplacian's variance) under `motion`."""
    frames = defaultdict(list)
    for spec, gray, _ in read:
        frames[(spec.condition, spec.visitor)].append(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F).var())
    moving = [v[-1] / v[0] for (c, _), v in frames.items() if c == "motion"]
    still = [v[-1] / v[0] for (c, _), v in frames.items() if c in ("plain", "rotated", "dimmed")]
    assert len(moving) == 2 and all(r < 0.9 for r in moving), moving
    assert still and all(0.95 < r < 1.05 for r in still), still


def _paired(condition: str, dress, seed: int):
    """A visitor's frame under `condition` (without jitter, in the middle), drawn with and without what `dress` adds to
    the phone, with the same noise: (look, the difference, module coordinates -> frame, the module coordinates of
    each frame pixel)."""
    rng = np.random.default_rng(seed)
    modules = scenes._modules(_texts(1)[0])
    n = len(modules)
    look = replace(scenes._LOOKS[condition](rng, n), cx=320, cy=240)
    u = math.ceil(scenes.SS * look.code_px / n)
    phone, box = scenes._phone(modules, u, look.screen, look.ink, rng)
    venue, vignette = np.full((480, 640), 100, np.float32), np.ones((480, 640), np.float32)
    plain, dressed = (scenes._render(venue, p, box, look, n, np.random.default_rng(1), vignette).astype(int)
                      for p in (phone, dress(phone, box, n, look)))
    to_frame = scenes._homography(box, look, 640, 480) @ np.array([[u, 0, box[0]], [0, u, box[1]], [0, 0, 1]])
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    where = cv2.perspectiveTransform(np.stack([x, y], -1).reshape(1, -1, 2), np.linalg.inv(to_frame))[0]
    return look, dressed - plain, to_frame, where.reshape(480, 640, 2)


@pytest.mark.parametrize("seed", range(4))
def test_ceiling_lights_are_hard_edged_bands_of_light(seed):
    look, diff, _, where = _paired("ceiling", lambda p, box, n, lk: scenes._reflect(p, box, n, lk.reflections), seed)
    n, mx, my = 49, where[..., 0], where[..., 1]
    in_symbol = (mx > 0) & (mx < n) & (my > 0) & (my < n)
    inside, near = np.zeros(diff.shape, bool), np.zeros(diff.shape, bool)
    rects, _ = look.reflections
    assert scenes._readable(scenes._covered(rects, n))
    for x, y, length, width, angle, _ in rects:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        along, across = (mx - x) * c + (my - y) * s, -(mx - x) * s + (my - y) * c
        inside |= (abs(along) < length / 2 - 0.5) & (abs(across) < width / 2 - 0.3) & in_symbol
        near |= (abs(along) < length / 2 + 1.5) & (abs(across) < width / 2 + 1.5)
    assert inside.any() and diff[inside].mean() >= 50  # light over the code where the rectangles lie
    assert np.abs(diff[~near]).max() <= 2  # and none a module and a half beyond them: not a soft spot


def test_the_bands_never_cover_what_a_reader_cannot_do_without():
    n = 49
    band = (n / 2, 3.5, 4.0 * n, 2.0, 0.0, 200.0)  # across the top: both upper finder patterns
    assert not scenes._readable(scenes._covered((band,), n))
    assert scenes._readable(scenes._covered((band[:1] + (n / 2,) + band[2:],), n))  # across the middle
    assert not scenes._readable(scenes._covered((band[:1] + (n / 2, 4.0 * n, 5.0) + band[4:],), n))  # 10% of it


@pytest.mark.parametrize("seed", range(4))
def test_cracks_draw_lines_and_shift_the_image_beside_them(seed):
    def crack(p, box, n, lk):
        return scenes._crack(p, box, n, lk.cracks)

    def unshifted(p, box, n, lk):
        spot, lines, shifts, fade = lk.cracks
        return scenes._crack(p, box, n, (spot, lines, tuple((0.0, 0.0) for _ in shifts), fade))

    look, diff, to_frame, where = _paired("cracked", crack, seed)
    _, still, _, _ = _paired("cracked", unshifted, seed)
    n = 49
    (ix, iy, r, _), lines, _, _ = look.cracks
    mx, my = where[..., 0], where[..., 1]
    off = np.full(diff.shape, 255, np.uint8)
    for points, *_ in lines:
        cv2.polylines(off, [np.round(cv2.perspectiveTransform(np.array([points], np.float32), to_frame)[0])
                            .astype(np.int32)], False, 0, 1)
    modules_away = cv2.distanceTransform(off, cv2.DIST_L2, 5) / (look.code_px / n)
    off_spot = np.hypot(mx - ix, my - iy) > r + 3
    clear = (mx > 0) & (mx < n) & (my > 0) & (my < n) & off_spot  # in the code, off the shattered spot
    on, beside = clear & (modules_away < 0.3), clear & (modules_away > 0.6) & (modules_away < 1.5)
    assert np.abs(diff[on]).mean() >= 25  # the cracks' lines
    assert np.abs(diff[beside]).mean() >= 8 > 4 * np.abs(still[beside]).mean()  # the image shifted beside them
    assert np.abs(diff[(modules_away > 8) & off_spot]).max() <= 3  # and not far from them



# -- the third part: printed cards (issue 23) --------------------------------------------------------------------------


def test_cards_carry_their_issuers_code_and_the_hard_ones_are_not_always_read(read):
    """A card's code is printed at error correction Q (version 10 for a card's 190 characters), a phone's at M; a
    fresh card is read on every frame, and the worn, small or faded ones not on all: something for a second
    attempt to recover."""
    seen = _by_condition(read)
    for condition, frames in seen.items():
        for spec, _, barcode in frames:
            expected = ("Q", "10") if condition in scenes.CARD_CONDITIONS else ("M", "8")
            assert (barcode.extra["ECLevel"], barcode.extra["Version"]) == expected, spec.name
    shown = defaultdict(int)
    for spec, _, _ in read:
        shown[spec.condition] += 1
    assert len(seen["card"]) == shown["card"] == 4 * PER_VISITOR
    hard = [c for c in scenes.CARD_CONDITIONS if c != "card"]
    assert sum(len(seen[c]) for c in hard) < sum(shown[c] for c in hard)


def test_a_faded_card_shows_its_code_at_low_contrast(read):
    seen = _by_condition(read)
    assert seen["card_faded"]
    assert all(contrast(g, b) <= 70 for _, g, b in seen["card_faded"])
    assert all(contrast(g, b) >= 100 for _, g, b in seen["card"] + seen["card_small"] + seen["card_creased"])


@pytest.mark.parametrize("condition", ["card", "card_small"])
def test_the_thumb_covers_a_corner_of_the_card_never_the_code(condition):
    """The card drawn with a thumb of the darkest and of the lightest skin: they differ only where the thumb is,
    which is over the card (a corner, an edge) and never over the code or its quiet zone, on a card or a sticker."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        modules = scenes._modules(_texts(1, "KC1:")[0], scenes.CARD_EC)
        n = len(modules)
        look = scenes._LOOKS[condition](rng, n)
        k = look.card.code_mm / scenes.CARD_CODE_MM
        thumb = look.card.thumb or next(t for t in iter(lambda: scenes._thumb(rng, k), 0) if t is not None)
        u = math.ceil(scenes.SS * look.code_px / n)
        drawn = []
        for skin in (0.0, 255.0):
            card = replace(look.card, thumb=(*thumb[:5], skin))
            drawn.append(scenes._card_image(modules, u, replace(look, card=card), np.random.default_rng(seed)))
        (dark, cover, box), (light, _, _) = drawn
        thumb_at = light - dark > 1
        x0, y0, side = (round(v) for v in box)
        quiet = 4 * u
        assert not thumb_at[y0 - quiet: y0 + side + quiet, x0 - quiet: x0 + side + quiet].any(), seed
        mm = u * n / look.card.code_mm  # pixels per mm
        left, top = x0 - round(scenes.CARD_CODE_AT_MM[0] * k * mm), y0 - round(scenes.CARD_CODE_AT_MM[1] * k * mm)
        width, height = round(scenes.CARD_MM[0] * k * mm), round(scenes.CARD_MM[1] * k * mm)
        assert thumb_at[top + 2: top + height - 2, left + 2: left + width - 2].any(), seed  # over the card


def test_a_fold_bends_the_print_beyond_it():
    """`_fold` on a sheet of paper (200 grey levels) with two printed lines across it, 10 px to a module: the line
    before the fold stays put, the one 100 px beyond it comes to 100 cos(bend) + gap, the paper beyond is lit
    1 + shade times, and the fold is a white line through toner where it flaked, a shadow where it did not."""
    paper, u, bend, gap, shade = 200.0, 10, 30.0, 0.4, -0.2
    sheet = np.full((60, 400), paper, np.float32)
    sheet[:, 100] = sheet[:, 300] = 20.0  # printed lines, 100 px either side of the fold at x = 200
    sheet[:30, 150:250] = 20.0  # toner across the fold, in the top half
    cover = np.ones_like(sheet)
    # angle 270: the fold runs down the sheet at x = 200 (20 modules), its normal pointing right
    for flaked in (True, False):
        lum, folded = scenes._fold(sheet, cover, (20.0, 0.0, 270.0, bend, gap, shade, 0.3, flaked), 0, 0, u, paper)
        row = lum[45]  # the bottom half: paper and the two lines
        assert int(np.argmin(row[:200])) == 100
        beyond = 200 + 100 * math.cos(math.radians(bend)) + gap * u
        assert abs(int(np.argmin(row[210:370])) + 210 - beyond) <= 1
        assert row[150] == pytest.approx(paper) and row[250] == pytest.approx(paper * (1 + shade), rel=0.01)
        end = 200 + 200 * math.cos(math.radians(bend)) + gap * u  # the sheet's edge, 200 px beyond the fold
        assert folded[:, :int(end) - 1].min() == 1 and folded[:, int(end) + 2:].max() == 0
        on_fold = lum[10, 201: 203].mean()  # the fold's line, through the toner
        assert on_fold > 120 if flaked else on_fold < 0.8 * 20.0 * (1 + shade / 2)
