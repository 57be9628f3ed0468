"""The built-in frame set of `qrgate bench scan`: the files, the manifest, the order, and readable codes."""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest
import zxingcpp

from lab.bench import scenes

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
VISITORS, PER_VISITOR, GAP = 14, 2, 1  # two visitors per condition


def _texts(n: int) -> list[str]:
    rng = random.Random(0)
    return ["KP1:" + "".join(rng.choice(ALPHABET) for _ in range(186)) for _ in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    texts = _texts(VISITORS)
    return folder, texts, scenes.build(folder, texts, frames_per_visitor=PER_VISITOR, gap_frames=GAP, seed=0)


def test_files_in_playing_order(built):
    folder, texts, specs = built
    names = [s.name for s in specs]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert len(specs) == VISITORS * (PER_VISITOR + GAP)
    assert sorted(p.name for p in folder.glob("*.png")) == names
    for spec in specs:
        gray = cv2.imread(str(folder / spec.name), cv2.IMREAD_UNCHANGED)
        assert gray is not None and gray.shape == (480, 640) and gray.dtype == np.uint8, spec.name


def test_visitors_round_robin_then_gap(built):
    _, texts, specs = built
    it = iter(specs)
    for i, text in enumerate(texts):
        for _ in range(PER_VISITOR):
            s = next(it)
            assert (s.condition, s.text, s.visitor) == (scenes.CONDITIONS[i % len(scenes.CONDITIONS)], text, i)
        for _ in range(GAP):
            s = next(it)
            assert (s.condition, s.text, s.visitor) == (scenes.EMPTY, None, None)
    conditions = {s.condition for s in specs}
    assert conditions == set(scenes.CONDITIONS) | {scenes.EMPTY}


def test_manifest_round_trips(built):
    folder, _, specs = built
    assert [scenes.FrameSpec(**d) for d in json.loads((folder / "manifest.json").read_text())] == specs


def test_same_seed_same_bytes(built, tmp_path):
    folder, texts, specs = built
    again = scenes.build(tmp_path, texts, frames_per_visitor=PER_VISITOR, gap_frames=GAP, seed=0)
    assert again == specs
    for spec in specs:
        assert (tmp_path / spec.name).read_bytes() == (folder / spec.name).read_bytes(), spec.name
    other = scenes.build(tmp_path / "other", texts[:1], frames_per_visitor=1, gap_frames=0, seed=1)
    assert (tmp_path / "other" / other[0].name).read_bytes() != (folder / specs[0].name).read_bytes()


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
    assert all(read.get(c, 0) >= 1 for c in scenes.CONDITIONS), read
