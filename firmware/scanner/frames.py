"""What a camera source hands the loop: the newest grayscale frame, as a view into the camera's buffer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Protocol

from numpy.typing import NDArray


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Frame:
    """`gray` is a view into the source's buffer, valid until `release()` is called.

    The loop calls `release()` as soon as the plane is decoded, before it
    answers the visitor, so a camera gets its buffer back within the frame's
    time; sources whose buffers are their own leave it a no-op. `seq` is the
    camera's frame number: a gap between two frames is frames dropped.
    """

    gray: NDArray[Any]
    seq: int
    t: float  # time.monotonic() when the frame arrived
    release: Callable[[], None] = field(default=_nothing, compare=False)


class FrameSource(Protocol):
    """Yields the newest frame each time it is asked; stale frames are dropped and counted, never queued."""

    dropped: int

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc: object) -> None: ...

    def frames(self) -> Generator[Frame | None, None, None]: ...  # None: a turn with no new frame yet
