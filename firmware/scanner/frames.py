"""What a camera source hands the loop: the newest grayscale frame, as a view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """`gray` is a view into the source's buffer, valid only until the next frame is asked for."""

    gray: np.ndarray
    seq: int
    t: float  # time.monotonic() when the frame was captured


class FrameSource(Protocol):
    """Yields the newest frame each time it is asked; stale frames are dropped and counted, never queued."""

    dropped: int

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc: object) -> None: ...

    def frames(self) -> Iterator[Frame]: ...
