"""Frame sources, chosen by name from config: a dict, not discovery, so a typo is a config error.

Each backend is imported only when chosen: picamera2 exists only on a Pi.
"""

from __future__ import annotations

from firmware.config import CameraConfig
from firmware.errors import ConfigError
from firmware.scanner.frames import FrameSource


def open_source(cam: CameraConfig, held: int = 0) -> FrameSource:
    """The frame source `[camera] source` names, not yet entered.

    `held`: frames the decode workers may hold on top of the loop's one; the Pi
    camera gets that many more buffers than its four, so that it never waits
    for one (the other sources hand out frames of their own).
    """
    if cam.source == "replay":
        from firmware.scanner.sources.replay import ReplaySource

        if cam.path is None:
            raise ConfigError("camera.path: the replay camera needs a video file or a folder of images")
        return ReplaySource(cam.path, fps=cam.fps, paced=cam.paced, loop=cam.loop)
    if cam.source == "picamera":
        from firmware.scanner.sources.picamera import PicameraSource

        return PicameraSource(cam.width, cam.height, cam.fps, cam.exposure_us, cam.analogue_gain, cam.focus,
                              cam.lens_position, buffer_count=4 + held)
    if cam.source == "opencv":
        from firmware.scanner.sources.opencv import OpenCvSource

        return OpenCvSource(cam.index, cam.width, cam.height, cam.fps)
    raise ValueError(f"no frame source {cam.source!r}")  # config.py's choices keep this from happening
