"""The Pi camera source, driven by a stand-in picamera2 (tests/fake_picamera2): the one part this machine lacks.

What is checked here is what the source asks of picamera2 and does with what
it gets: the lores YUV420 stream and controls from config, the Y plane read in
place, each request given back to the camera once decoded and before the
visitor is answered, and frames skipped by the camera counted from the sensor
timestamps. That libcamera accepts all this only a Pi can confirm.
"""

from __future__ import annotations

import sys
import threading
import numpy as np
import pytest
from firmware import app
from firmware.errors import QrgateError
from lab import render
from firmware.scanner.sources.picamera import AF_RANGE_MACRO, PicameraSource, camera_controls
from tests.conftest import changes, load


def test_asks_for_a_lores_yuv420_stream_and_phone_screen_controls(picamera2):
    with PicameraSource(800, 600, fps=25.0) as source:
        camera = picamera2.Picamera2.instances[-1]
        assert camera.config["lores"] == {"size": (800, 600), "format": "YUV420", "stride": 800 + 64}
        assert camera.started
    controls = camera.config["controls"]
    assert controls["FrameRate"] == 25.0
    assert controls["AfMode"] == 2 and controls["AfRange"] == AF_RANGE_MACRO  # continuous, macro range
    assert controls["AeExposureMode"] == 1 and "ExposureTime" not in controls  # auto, preferring short
    assert camera.closed and not camera.started
    assert source.controls == controls


def test_controls_are_only_those_the_camera_has():
    from tests.fake_picamera2.picamera2 import CM2_CONTROLS, CM3_CONTROLS

    fixed = camera_controls(CM3_CONTROLS, 30.0, exposure_us=4000, analogue_gain=2.0, focus="manual",
                            lens_position=5.0)
    assert fixed == {"FrameRate": 30.0, "AeEnable": False, "ExposureTime": 4000, "AnalogueGain": 2.0,
                     "AfMode": 0, "LensPosition": 5.0}
    on_cm2 = camera_controls(CM2_CONTROLS, 30.0, 0, 0.0, "macro", 3.0)
    assert not any(k.startswith("Af") for k in on_cm2) and on_cm2["AeExposureMode"] == 1


def test_the_y_plane_is_a_view_of_the_request_buffer_and_skipped_frames_are_counted(picamera2, world):
    y = render.scene(render.phone_screen(world.mint()), np.random.default_rng(0))
    picamera2.Picamera2.script = [(y, 0), (y, 3), (y, 0)]  # the camera skips 3 frames before the second
    with PicameraSource(640, 480) as source:
        camera = picamera2.Picamera2.instances[-1]
        frames = source.frames()
        seqs = []
        for _ in range(3):
            frame = next(frames)
            [held] = camera.out
            assert np.shares_memory(frame.gray, held.buffer) and frame.gray.shape == (480, 640)
            assert frame.gray.strides[0] == 640 + 64  # the ISP's row stride: read as is, no copy
            assert np.array_equal(frame.gray, y)
            frame.release()
            frame.release()  # a second release is harmless
            assert camera.out == []
            seqs.append(frame.seq)
        frames.close()
    assert seqs == [0, 4, 5] and source.dropped == 3


@pytest.mark.parametrize("workers", [0, 1])
def test_the_daemon_gives_each_request_back_before_it_answers(picamera2, world, tmp_path, pins, monkeypatch, workers):
    token = world.mint()
    y_code = render.scene(render.phone_screen(token), np.random.default_rng(1))
    y_empty = render.scene(None, np.random.default_rng(2))
    picamera2.Picamera2.script = [(y_empty, 0)] * 3 + [(y_code, 0)] * 3 + [(y_empty, 0)] * 3
    stop = threading.Event()
    held_when_answering = []

    def decided(decision) -> None:
        held_when_answering.append(len(picamera2.Picamera2.instances[-1].out))

    real_next = picamera2.Picamera2._next

    def capture(self, timeout):
        if not self.script:
            stop.set()  # the scripted visitor has been and gone
            self.script.append((y_empty, 0))
        return real_next(self, timeout)

    monkeypatch.setattr(picamera2.Picamera2, "_next", capture)
    cfg = load(tmp_path, world.config_toml(tmp_path / "state", tmp_path, decoder=f"workers = {workers}").replace(
        'source = "replay"', 'source = "picamera"'))
    stats = app.run(cfg, stop=stop, on_decision=decided, pin_factory=pins)
    camera = picamera2.Picamera2.instances[-1]
    # One visitor, answered with no camera buffer held by the loop; decode workers may hold the empty frames
    # before it (one being read, one waiting), and the camera has that many more buffers, so it never waits.
    assert len(held_when_answering) == 1 and held_when_answering[0] <= (2 if workers else 0)
    assert camera.config["buffer_count"] == 4 + (workers + 1 if workers else 0)
    assert changes(pins.log, "GPIO17")[:1] == [True]  # green
    assert camera.out == [] and camera.closed
    assert stats.frames == 9 and camera.handed == 10  # the tenth came as the daemon stopped: given back unread


def test_without_picamera2_the_pi_camera_is_one_clear_error_not_a_traceback(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # what `import picamera2` meets off a Pi
    with pytest.raises(QrgateError, match="needs picamera2"):
        PicameraSource(640, 480).__enter__()


def test_a_frame_handed_on_stays_mapped_until_released_and_the_stream_gives_back_what_is_held(picamera2, world):
    """A decode worker holds a frame while the loop takes the next: its buffer is not recycled under it."""
    y = render.scene(render.phone_screen(world.mint()), np.random.default_rng(0))
    picamera2.Picamera2.script = [(y, 0)] * 3
    with PicameraSource(640, 480, buffer_count=6) as source:
        camera = picamera2.Picamera2.instances[-1]
        frames = source.frames()
        kept = next(frames)
        second = next(frames)
        assert len(camera.out) == 2 and np.array_equal(kept.gray, y)  # still mapped, still the frame's pixels
        kept.release()
        assert len(camera.out) == 1
        frames.close()  # the stream ends with `second` unreleased: it is given back all the same
        assert camera.out == []
        second.release()  # and its own release later is harmless
