"""A replay camera: a video file or a folder of images, for CI, demos and benchmarks.

Paced, it behaves like a camera: frame i is due at start + i/fps, and when the
loop asks late it gets the newest due frame while the ones it missed are
counted as dropped. Unpaced, it hands every frame as fast as it is asked.
A frame's seq is its number in the stream (pass after pass when looping), so
a benchmark can tell which file it was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Generator

import cv2
from numpy.typing import NDArray

from firmware.errors import QrgateError
from firmware.scanner.frames import Frame

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".pgm", ".tif", ".tiff"}


class ReplayError(QrgateError):
    pass


def _read_gray(path: Path) -> NDArray[Any]:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ReplayError(f"cannot read image {path}")
    return gray


class ReplaySource:
    def __init__(self, path: Path, fps: float = 30.0, paced: bool = True, loop: bool = False):
        self.path = Path(path)
        self.fps = fps
        self.paced = paced
        self.loop = loop
        self.dropped = 0
        self._images: list[Path] = []
        self._video: cv2.VideoCapture | None = None

    def __enter__(self) -> "ReplaySource":
        if self.path.is_dir():
            self._images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise ReplayError(f"no images in {self.path}")
        elif self.path.is_file():
            self._video = cv2.VideoCapture(str(self.path))
            if not self._video.isOpened():
                raise ReplayError(f"cannot open video {self.path}")
        else:
            raise ReplayError(f"replay path {self.path} does not exist")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._video is not None:
            self._video.release()

    def _read(self, index: int) -> NDArray[Any] | None:
        """Frame `index` of the current pass, or None past the end."""
        if self._images:
            return _read_gray(self._images[index]) if index < len(self._images) else None
        assert self._video is not None
        while self._position < index:  # skip what the loop was too slow for, without decoding it
            if not self._video.grab():
                return None
            self._position += 1
        ok, bgr = self._video.read()
        self._position += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if ok else None

    def _rewind(self) -> None:
        if self._video is not None:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._position = 0

    def frames(self) -> Generator[Frame, None, None]:
        offset = 0  # frames in the passes before this one: seq numbers run on across passes, like a camera's
        while True:
            self._rewind()
            start, index = time.monotonic(), 0
            while True:
                if self.paced:
                    due = int((time.monotonic() - start) * self.fps)
                    if due > index:
                        self.dropped += due - index
                        index = due
                    else:
                        time.sleep(max(0.0, start + index / self.fps - time.monotonic()))
                gray = self._read(index)
                if gray is None:
                    break
                yield Frame(gray, offset + index, time.monotonic())
                index += 1
            if not self.loop:
                return
            offset += index
