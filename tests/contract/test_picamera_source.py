"""The Picamera2 source against a stand-in for the camera (the one part that cannot exist here).

It checks what the source promises the loop: picamera2 is imported only when
the camera is opened, the lores YUV420 stream is asked for, the frame is the Y
plane as a view of the mapped buffer (no copy), and each request is released
only once the loop asks for the next frame, i.e. after decoding. What the real
Picamera2 and libcamera do is for a Pi to confirm (README).
"""

from __future__ import annotations

import sys
import types

import numpy as np

from firmware.scanner.sources.picamera import PicameraSource

WIDTH, HEIGHT, STRIDE = 64, 48, 96


class FakeRequest:
    def __init__(self, log: list, n: int):
        self.log, self.n = log, n
        self.buffer = np.full((HEIGHT * 3 // 2, STRIDE), n, np.uint8)  # Y rows, then U and V

    def release(self) -> None:
        self.log.append(("release", self.n))


class FakeMappedArray:
    def __init__(self, request: FakeRequest, stream: str):
        assert stream == "lores"
        self.array = request.buffer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakePicamera2:
    log: list = []

    def __init__(self):
        self.count = 0

    def create_video_configuration(self, **kw):
        self.log.append(("configure", kw["lores"]))
        return kw

    def configure(self, config):
        pass

    def start(self):
        self.log.append(("start",))

    def capture_request(self, flush=False):
        self.count += 1
        self.log.append(("capture", self.count))
        self.last = FakeRequest(self.log, self.count)
        return self.last

    def stop(self):
        self.log.append(("stop",))

    def close(self):
        pass


def test_yields_the_y_plane_in_place_and_releases_after_the_next_ask(monkeypatch):
    fake = types.ModuleType("picamera2")
    fake.Picamera2, fake.MappedArray = FakePicamera2, FakeMappedArray
    FakePicamera2.log = log = []
    monkeypatch.setitem(sys.modules, "picamera2", fake)

    source = PicameraSource(WIDTH, HEIGHT, fps=30)
    assert log == []  # nothing touches the camera before it is opened
    with source:
        assert ("configure", {"size": (WIDTH, HEIGHT), "format": "YUV420"}) in log
        frames = source.frames()
        first = next(frames)
        camera = source._camera
        assert first.gray.shape == (HEIGHT, WIDTH)
        assert np.shares_memory(first.gray, camera.last.buffer)
        assert ("release", 1) not in log  # still being decoded
        second = next(frames)
        assert log[-2:] == [("release", 1), ("capture", 2)]
        assert second.seq == 1 and int(second.gray[0, 0]) == 2
        frames.close()
    assert ("release", 2) in log and log[-1] == ("stop",)
