"""A USB camera through OpenCV (V4L2). Reads luma without a colour conversion where the camera gives YUYV.

Not exercised off a machine with a camera; the replay source covers the loop in tests.
"""

from __future__ import annotations

import time
from typing import Iterator

import cv2

from firmware.errors import QrgateError
from firmware.scanner.frames import Frame


class OpenCvSource:
    def __init__(self, index: int = 0, width: int = 640, height: int = 480, fps: float = 30.0):
        self.index, self.width, self.height, self.fps = index, width, height, fps
        self.dropped = 0
        self._cap: cv2.VideoCapture | None = None
        self._raw_yuyv = False

    def __enter__(self) -> "OpenCvSource":
        cap = cv2.VideoCapture(self.index, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise QrgateError(f"cannot open camera /dev/video{self.index}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"YUYV"))
        self._raw_yuyv = bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        self._cap = cap
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cap is not None:
            self._cap.release()

    def frames(self) -> Iterator[Frame]:
        assert self._cap is not None
        seq = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                raise QrgateError(f"camera /dev/video{self.index} delivered no frame")
            if self._raw_yuyv and image.ndim == 3 and image.shape[2] == 2:
                gray = image[:, :, 0]  # YUYV: luma is every other byte, a strided view
            elif image.ndim == 3:
                gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            else:
                gray = image
            yield Frame(gray, seq, time.monotonic())
            seq += 1
