"""The real daemon with decode workers, on phone frames the loop's fast read misses (moiré, from the scan
benchmark's camera model) and a worker reads: green still only once the record is durable, one decision per
visitor, and `workers = 0` reads the same frames on the loop's thread as before."""

from __future__ import annotations

import shutil

import cv2
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from conftest import load, store_rows
from firmware import app
from firmware.scanner.decode import ZxingDecoder
from lab.bench import scenes
from lab.world import World

MOIRE = scenes.CONDITIONS.index("moire")


@pytest.fixture(scope="module")
def hard_frames(tmp_path_factory):
    """Frames of one visitor's moiré phone that `first` does not read and a worker (`more`) does, and empty ones."""
    world = World.create(tmp_path_factory.mktemp("world") / "world")
    token = world.mint(ttl=300)  # the longest a KP1 token lives: both runs fall within it
    built = tmp_path_factory.mktemp("scenes")
    specs = scenes.build(built, [f"filler-{i}" for i in range(MOIRE)] + [token], seed=0)
    decoder = ZxingDecoder()
    hard, empty = [], []
    for spec in specs:
        gray = cv2.imread(str(built / spec.name), cv2.IMREAD_GRAYSCALE)
        if spec.text == token:
            first = decoder.first(gray)
            if not first.texts and decoder.more(gray, first) == [token] and decoder.decode(gray) == [token]:
                hard.append(built / spec.name)
        elif spec.text is None:
            empty.append(built / spec.name)
    assert hard, "the seed gives no moiré frame for the workers"
    return world, token, hard, empty


def replay(folder, hard, empty):
    folder.mkdir()
    shown = empty[:3] + hard[:2] + empty[3:6]
    for n, path in enumerate(shown):
        shutil.copy(path, folder / f"{n:05d}.png")
    return folder, len(shown)


@pytest.mark.parametrize("workers", [1, 0])
def test_a_frame_only_harder_reading_reads_is_green_only_once_its_record_is_durable(tmp_path, hard_frames, workers):
    world, token, hard, empty = hard_frames
    frames, shown = replay(tmp_path / "frames", hard, empty)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", frames, decoder=f"workers = {workers}"))
    rows_when_green: list[int] = []

    class Pin(MockPWMPin):
        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed and value and self.info.name == "GPIO17":
                rows_when_green.append(store_rows(cfg))
            return changed

    decisions: list = []
    stats = app.run(cfg, on_decision=decisions.append, pin_factory=MockFactory(pin_class=Pin))
    assert [d.verdict for d in decisions] == ["accepted"]  # one decision, however many frames
    assert rows_when_green == [1]  # the record was on the card when the light went green
    assert (stats.recovered >= 1) if workers else (stats.recovered == 0)  # by a worker, or by the loop alone
    assert stats.workers_replaced == 0 and stats.frames == shown
