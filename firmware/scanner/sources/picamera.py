"""The Raspberry Pi camera (Camera Module 2/3) through picamera2: the lores YUV420 Y plane, in place.

Only a Pi can run this: picamera2 comes from Raspberry Pi OS's apt and needs
libcamera and the camera itself, so it is imported inside `__enter__` and
nothing here is exercised by the test suite off the Pi. What a Pi must confirm:
the lores stream shape (height*3/2 rows of `stride` bytes), that the Y plane
view needs no copy, and the frame rate reached with decoding in the loop.
"""

from __future__ import annotations

import time
from typing import Iterator

from firmware.scanner.frames import Frame


class PicameraSource:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0):
        self.size = (width, height)
        self.fps = fps
        self.dropped = 0
        self._camera = None

    def __enter__(self) -> "PicameraSource":
        from picamera2 import Picamera2  # only on the Pi

        self._camera = Picamera2()
        config = self._camera.create_video_configuration(
            main={"size": self.size, "format": "YUV420"},
            lores={"size": self.size, "format": "YUV420"},
            buffer_count=4,
            controls={"FrameRate": self.fps},
        )
        self._camera.configure(config)
        self._camera.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()

    def frames(self) -> Iterator[Frame]:
        from picamera2 import MappedArray

        width, height = self.size
        seq = 0
        while True:
            # flush=True: a request completed before this call is stale and skipped.
            request = self._camera.capture_request(flush=True)
            try:
                with MappedArray(request, "lores") as mapped:
                    # Rows of `stride` bytes: the Y plane is the first `height` rows.
                    yield Frame(mapped.array[:height, :width], seq, time.monotonic())
            finally:
                request.release()  # after the loop has decoded this frame and asked for the next
            seq += 1
