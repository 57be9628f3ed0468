"""One contract for every frame source: what the loop may count on, whichever camera the config names.

Run over the replay source (a folder of images, and a video file), the OpenCV
source on a video file (the USB camera's code path, fed by a recording), and
the Pi camera source on the stand-in picamera2. On a Pi the same assertions
would hold for the real camera; only a Pi can run that case.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from firmware.scanner.decode import ZxingDecoder
from firmware.scanner.sources.opencv import OpenCvSource
from firmware.scanner.sources.picamera import PicameraSource
from firmware.scanner.sources.replay import ReplaySource
from lab import render

W, H, N = 640, 480, 6
TEXT = "KP1:contract"


def camera_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [render.scene(render.phone_screen(TEXT), rng, width=W, height=H) for _ in range(N)]


def replay_folder(tmp_path, picamera2):
    for i, gray in enumerate(camera_frames()):
        render.write_png(tmp_path / f"{i:05d}.png", gray)
    return ReplaySource(tmp_path, paced=False)


def video(tmp_path):
    path = tmp_path / "door.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H), isColor=False)
    if not out.isOpened():
        pytest.skip("this OpenCV build writes no MJPG video")
    for gray in camera_frames():
        out.write(gray)
    out.release()
    return path


def replay_video(tmp_path, picamera2):
    return ReplaySource(video(tmp_path), paced=False)


def opencv_video(tmp_path, picamera2):
    return OpenCvSource(video(tmp_path), W, H)


def pi_camera(tmp_path, picamera2):
    picamera2.Picamera2.script = [(gray, 0) for gray in camera_frames()]
    return PicameraSource(W, H)


@pytest.mark.parametrize("make", [replay_folder, replay_video, opencv_video, pi_camera],
                         ids=["replay-folder", "replay-video", "opencv-video", "picamera-stand-in"])
def test_every_source_hands_the_loop_numbered_grayscale_frames_it_can_release_and_read(make, tmp_path, picamera2):
    source = make(tmp_path, picamera2)
    decoder = ZxingDecoder()
    with source:
        frames, seen = [], []
        for frame in itertools.islice(source.frames(), N - 1):  # a live camera never ends: take what we need
            frames.append(frame)  # released before the next is asked for, as a camera with few buffers needs
            assert frame.gray.ndim == 2 and frame.gray.dtype == np.uint8 and frame.gray.shape == (H, W)
            seen.append(decoder.decode(frame.gray))
            frame.release()
    seqs, times = [f.seq for f in frames], [f.t for f in frames]
    assert seqs == sorted(set(seqs)) and times == sorted(times) and source.dropped >= 0
    assert all(texts == [TEXT] for texts in seen)
