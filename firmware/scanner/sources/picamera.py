"""The Raspberry Pi camera (Camera Module 2/3) through picamera2: the lores YUV420 Y plane, in place.

Each frame is one request taken with `capture_request`: picamera2 keeps only
the newest completed request for us and recycles the rest, so the newest
frame wins by construction; frames skipped in between are counted from the
sensor timestamps. A request is waited for at most `wait_s`; a camera that
delivers nothing yields None each time instead of blocking, so the loop goes
on feeding the watchdog and the supervisor (scanner/camera.py) can declare
the camera lost. The loop reads the Y plane through the request's mapped
buffer (no copy) and releases the request as soon as it has decoded it, or
hands it to a decode worker, which releases it when done: `buffer_count`
must leave the camera enough while workers hold some (`open_source`).

The controls suit phone screens: a short exposure (screens are bright and
hands move), and on a Camera Module 3 continuous autofocus in the macro range,
where a phone held up to the device is.

Only a Pi can run this for real: picamera2 comes from Raspberry Pi OS's apt and
needs libcamera and a camera. Tests drive it with a stand-in picamera2 module
(tests/fake_picamera2), which checks what this code asks of the library; what
only a Pi can confirm is that libcamera accepts the configuration and controls,
the lores stream's real stride, and the frame rate reached with decoding.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Generator

from firmware.errors import QrgateError
from firmware.scanner.frames import Frame

# libcamera's control enums, by value (libcamera.controls.*Enum), so building
# the controls needs no libcamera import.
AF_MODE = {"manual": 0, "continuous": 2}
AF_RANGE_MACRO = 1
AF_SPEED_FAST = 1
AE_EXPOSURE_SHORT = 1


def camera_controls(available: Mapping[str, object], fps: float, exposure_us: int, analogue_gain: float, focus: str,
                    lens_position: float) -> dict[str, object]:
    """The controls to set, limited to those this camera has (`Picamera2.camera_controls`).

    focus: "macro" (continuous autofocus, macro range), "continuous" (full
    range), "manual" (fixed at `lens_position` dioptres: 1/metres), or "fixed"
    (a lens without autofocus: nothing set).
    """
    wanted: dict[str, object] = {"FrameRate": fps}
    if exposure_us > 0:
        wanted.update(AeEnable=False, ExposureTime=exposure_us)
    else:
        wanted["AeExposureMode"] = AE_EXPOSURE_SHORT  # auto, preferring short exposures
    if analogue_gain > 0:
        wanted["AnalogueGain"] = analogue_gain
    if focus in ("macro", "continuous"):
        wanted.update(AfMode=AF_MODE["continuous"], AfSpeed=AF_SPEED_FAST)
        if focus == "macro":
            wanted["AfRange"] = AF_RANGE_MACRO
    elif focus == "manual":
        wanted.update(AfMode=AF_MODE["manual"], LensPosition=lens_position)
    # FrameRate is picamera2's own shorthand for FrameDurationLimits.
    return {k: v for k, v in wanted.items() if k in available or k == "FrameRate"}


class PicameraSource:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, exposure_us: int = 0,
                 analogue_gain: float = 0.0, focus: str = "macro", lens_position: float = 3.0,
                 buffer_count: int = 4, wait_s: float = 0.5):
        self.size = (width, height)
        self.fps = fps
        self.exposure_us, self.analogue_gain = exposure_us, analogue_gain
        self.focus, self.lens_position = focus, lens_position
        self.buffer_count = buffer_count
        self.wait_s = wait_s
        self.dropped = 0
        self.controls: dict[str, object] = {}
        self._camera = None

    def __enter__(self) -> "PicameraSource":
        try:
            from picamera2 import Picamera2  # only on the Pi
        except ImportError:
            raise QrgateError("the Pi camera needs picamera2, which this machine lacks (Raspberry Pi OS: apt install "
                              "python3-picamera2); elsewhere set camera.source to opencv or replay") from None
        try:
            camera = Picamera2()
        except (RuntimeError, IndexError) as exc:
            raise QrgateError(f"cannot open the Pi camera: {exc}") from None
        self._camera = camera
        self.controls = camera_controls(camera.camera_controls, self.fps, self.exposure_us, self.analogue_gain,
                                        self.focus, self.lens_position)
        # The main stream is required; at lores size it costs least. The lores
        # stream is YUV420 (what a Pi 4's ISP gives for lores): a Y plane of
        # `height` rows of `stride` bytes, then the chroma.
        config = camera.create_video_configuration(
            main={"size": self.size, "format": "YUV420"},
            lores={"size": self.size, "format": "YUV420"},
            buffer_count=self.buffer_count,
            controls=self.controls,
        )
        try:
            camera.configure(config)
            camera.start()
        except RuntimeError as exc:
            self.__exit__()
            raise QrgateError(f"the Pi camera refused its configuration: {exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.stop()
            camera.close()

    def frames(self) -> Generator[Frame | None, None, None]:
        from picamera2 import MappedArray

        width, height = self.size
        seq, last_ts = 0, None
        job = None
        camera = self._camera
        assert camera is not None, "frames() outside `with`"
        held: set[contextlib.ExitStack] = set()  # requests handed out and not yet released (by a decode worker)
        try:
            while True:
                job = job or camera.capture_request(wait=False)
                try:
                    request = camera.wait(job, timeout=self.wait_s)
                except TimeoutError:
                    yield None  # nothing from the camera yet: the same request stays awaited
                    continue
                job = None
                metadata = request.get_metadata()
                ts, duration = metadata.get("SensorTimestamp"), metadata.get("FrameDuration")  # ns, µs
                if last_ts is not None and ts and duration:
                    missed = max(0, round((ts - last_ts) / (duration * 1000)) - 1)
                    self.dropped += missed
                    seq += missed
                last_ts = ts
                buffers = contextlib.ExitStack()  # closing it unmaps the buffer, then gives the request back
                buffers.callback(request.release)
                plane = buffers.enter_context(MappedArray(request, "lores")).array
                held.add(buffers)

                def release(buffers: contextlib.ExitStack = buffers) -> None:
                    held.discard(buffers)
                    buffers.close()  # closing twice is harmless

                # The first `height` rows of `stride` bytes are the Y plane: a view, no copy. It stays mapped
                # until released: by the loop once decoded, or by the decode worker it was handed to.
                yield Frame(plane[:height, :width], seq, time.monotonic(), release)
                seq += 1
        finally:
            for buffers in list(held):  # the stream ends: what was not released is given back now
                buffers.close()
