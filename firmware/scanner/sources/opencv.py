"""A USB camera through OpenCV (V4L2). Reads luma without a colour conversion where the camera gives YUYV.

`device` is a V4L2 index (/dev/videoN) or a video file: the tests run this very source on a recorded video
(tests/scanner/test_frame_sources.py); what a real USB camera gives (YUYV, its buffering) only a camera confirms.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Generator

import cv2

from firmware.errors import QrgateError
from firmware.scanner.frames import Frame


class OpenCvSource:
    def __init__(self, device: int | Path = 0, width: int = 640, height: int = 480, fps: float = 30.0):
        self.device, self.width, self.height, self.fps = device, width, height, fps
        self.name = f"camera /dev/video{device}" if isinstance(device, int) else f"video {device}"
        self.dropped = 0
        self._cap: cv2.VideoCapture | None = None
        self._raw_yuyv = False

    def __enter__(self) -> "OpenCvSource":
        if isinstance(self.device, int):
            cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(str(self.device))
        if not cap.isOpened():
            raise QrgateError(f"cannot open {self.name}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"YUYV"))
        self._raw_yuyv = bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        self._cap = cap
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cap is not None:
            self._cap.release()

    def frames(self) -> Generator[Frame, None, None]:
        assert self._cap is not None
        seq = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                raise QrgateError(f"{self.name} delivered no frame")
            if self._raw_yuyv and image.ndim == 3 and image.shape[2] == 2:
                gray = image[:, :, 0]  # YUYV: luma is every other byte, a strided view
            elif image.ndim == 3:
                gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            else:
                gray = image
            yield Frame(gray, seq, time.monotonic())
            seq += 1
