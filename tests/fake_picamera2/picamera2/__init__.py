"""A stand-in for picamera2, for the one thing this machine lacks: the Pi camera.

It keeps to picamera2's API as PicameraSource uses it (Picamera2 with
camera_controls, create_video_configuration, configure, start,
capture_request(wait=False) and wait(job, timeout), stop, close;
CompletedRequest with get_metadata and release; MappedArray over a request's
stream) and records what it was asked, so tests can check the source's
configuration, that the Y plane is read in place, and when each request goes
back to the camera. Frames come from `Picamera2.script`: a list of (grayscale
image or None, frames skipped before it); STALL: this camera delivers
nothing more, each `wait` blocking for its timeout then raising TimeoutError
as picamera2's does, until it is closed (the next camera opened reads on);
or a callable, called when reached. The next `Picamera2.open_failures`
cameras fail to open, as picamera2 does with no camera attached.
"""

from __future__ import annotations

import time

import numpy as np

CM3_CONTROLS = {name: (0, 1, 0) for name in (
    "AeEnable", "ExposureTime", "AnalogueGain", "AeExposureMode", "AfMode", "AfRange", "AfSpeed", "LensPosition",
    "FrameDurationLimits")}
CM2_CONTROLS = {k: v for k, v in CM3_CONTROLS.items() if not k.startswith("Af") and k != "LensPosition"}


STALL = "stall"


class Picamera2:
    camera_controls_for_next = CM3_CONTROLS
    script: list = []
    instances: list["Picamera2"] = []
    open_failures = 0
    stride_padding = 64  # the ISP pads rows: stride > width

    def __init__(self, camera_num: int = 0):
        if Picamera2.open_failures > 0:
            Picamera2.open_failures -= 1
            raise IndexError("list index out of range")  # what picamera2 raises when no camera is attached
        self.camera_controls = dict(self.camera_controls_for_next)
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.out: list[CompletedRequest] = []  # handed out, not yet released
        self.handed = 0
        self.stalled = False
        self._frame = 0
        Picamera2.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, buffer_count=6, controls=None, **kw) -> dict:
        return {"main": dict(main or {}), "lores": dict(lores) if lores else None, "buffer_count": buffer_count,
                "controls": dict(controls or {}), **kw}

    def configure(self, config: dict) -> None:
        lores = config["lores"]
        if lores is None or lores["format"] != "YUV420":
            raise RuntimeError("this fake only does a YUV420 lores stream")
        width, height = lores["size"]
        lores["stride"] = width + self.stride_padding
        self.config = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def capture_request(self, wait=None):
        """wait=False: a job for `wait`, as picamera2 gives; otherwise the request itself."""
        assert self.started, "capture_request on a camera not started"
        job = Job(self)
        return job if wait is False else self.wait(job)

    def wait(self, job: "Job", timeout: float | None = None) -> "CompletedRequest":
        assert not self.closed, "waiting on a closed camera"
        if job.result is None:
            job.result = self._next(timeout)
        return job.result

    def _next(self, timeout: float | None) -> "CompletedRequest":
        if len(self.out) >= self.config["buffer_count"] - 1:
            raise RuntimeError("every buffer is held by the application: the camera would stall")
        if not self.script:
            raise RuntimeError("the fake camera has no more frames")
        while callable(self.script[0]):  # an event in the test's story (the ribbon pulled…), then on
            self.script.pop(0)()
        if self.stalled or self.script[0] == STALL:
            if not self.stalled:
                self.script.pop(0)
            self.stalled = True  # this camera delivers nothing more; the next one opened reads on
            assert timeout is not None, "waiting without a timeout on a stalled camera would hang for ever"
            time.sleep(timeout)  # the real wait blocks this long before it gives up
            raise TimeoutError()
        image, skipped = self.script.pop(0)
        self._frame += skipped
        width, height = self.config["lores"]["size"]
        stride = self.config["lores"]["stride"]
        buffer = np.full((height * 3 // 2, stride), 128, np.uint8)  # Y plane, then chroma
        if image is not None:
            buffer[:height, :width] = image
        duration_us = int(1e6 / self.config["controls"].get("FrameRate", 30))
        request = CompletedRequest(self, buffer, {"SensorTimestamp": self._frame * duration_us * 1000,
                                                  "FrameDuration": duration_us})
        self._frame += 1
        self.out.append(request)
        self.handed += 1
        return request


class Job:
    def __init__(self, camera: Picamera2):
        self.camera = camera
        self.result: CompletedRequest | None = None


class CompletedRequest:
    def __init__(self, camera: Picamera2, buffer: np.ndarray, metadata: dict):
        self.camera, self.buffer, self.metadata = camera, buffer, metadata
        self.released = False
        self.mapped = 0  # MappedArrays open on it

    def get_metadata(self) -> dict:
        return dict(self.metadata)

    def release(self) -> None:
        assert not self.released, "a request released twice"
        assert self.mapped == 0, "a request released while its buffer is still mapped"
        self.released = True
        self.camera.out.remove(self)


class MappedArray:
    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True):
        assert stream == "lores", "PicameraSource reads the lores stream"
        self.request = request
        self.array: np.ndarray | None = None

    def __enter__(self) -> "MappedArray":
        self.request.mapped += 1
        self.array = self.request.buffer  # (height*3/2, stride), as picamera2 reshapes YUV420: the buffer itself
        return self

    def __exit__(self, *exc) -> None:
        self.request.mapped -= 1
        self.array = None
