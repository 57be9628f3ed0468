"""`qrgate aim`: real QR frames (lab.render) on a replay camera, read by the real zxing-cpp.

What the technician relies on: the PNG is the frame with each code outlined
(green read, orange located but not read), the JSON line has the figures and
boxes and never a code's text, the code's sharpness falls when the frame is
blurred, --watch prints a line per frame, and a camera that cannot be opened
is a clear error. The stand-in picamera2 covers the live camera's settling
frames and the "held by the daemon" message.
"""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lab import render
from firmware.technician import aim
from firmware.errors import QrgateError
from tests.conftest import load, write_frames

QRGATE = str(Path(sys.executable).parent / "qrgate")


def qrgate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([QRGATE, *args], capture_output=True, text=True, timeout=60)


def sharp_frame(token: str, seed: int = 0) -> np.ndarray:
    return render.scene(render.phone_screen(token), np.random.default_rng(seed), bg=render.background())


def damaged_phone(token: str, seed: int = 0) -> np.ndarray:
    """A phone showing `token`'s QR with most of its data modules scrambled: finder and timing patterns intact."""
    modules = render.qr_modules(token)
    n = modules.shape[0]
    keep = np.zeros_like(modules)
    keep[:8, :8] = keep[:8, n - 8:] = keep[n - 8:, :8] = True  # the three finder patterns and their separators
    keep[6, :] = keep[:, 6] = True  # the timing patterns
    rng = np.random.default_rng(seed)
    scrambled = (~keep) & (rng.random(modules.shape) < 0.5)
    modules[scrambled] = rng.random(int(scrambled.sum())) < 0.5
    phone = render.phone_screen(token)  # the same layout as phone_screen's: quiet zone 3, at (30, 130), 240 px
    code = np.where(np.pad(modules, 3), 0, 255).astype(np.uint8)
    phone[130:370, 30:270] = cv2.resize(code, (240, 240), interpolation=cv2.INTER_NEAREST)
    return phone


def camera(world, tmp_path: Path, frames: list[np.ndarray] | None = None, path: Path | None = None,
           **camera_keys: str) -> Path:
    """A config whose replay camera is a folder of `frames` (or `path`); returns the config file."""
    if path is None:
        path = tmp_path / "frames"
        path.mkdir()
        for i, gray in enumerate(frames or []):
            render.write_png(path / f"{i:05d}.png", gray)
    text = world.config_toml(tmp_path / "state", path, camera="\n".join(f"{k} = {v}" for k, v in camera_keys.items()))
    config = tmp_path / "qrgate.toml"
    config.write_text(text)
    return config


def png_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append(data[at + 4:at + 8])
        at += 12 + length
    return chunks


def is_green(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return g > 150 and r < 80 and b < 80


def test_png_outlines_the_read_code_in_green_and_json_never_holds_the_text(world, tmp_path):
    token = world.mint()
    config = camera(world, tmp_path, [sharp_frame(token)])
    out = tmp_path / "aim.png"
    proc = qrgate("aim", "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout and token[4:24] not in proc.stdout and token not in proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"png", "width", "height", "sharpness", "brightness", "codes"}
    assert (result["png"], result["width"], result["height"]) == (str(out), 640, 480)
    assert result["sharpness"] > 0 and 0 < result["brightness"] < 255
    [code] = result["codes"]
    assert set(code) == {"read", "sharpness", "box"} and code["read"] is True
    x0, y0, x1, y1 = code["box"]
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    assert 100 < x1 - x0 < 300 and 100 < y1 - y0 < 300  # phone_screen's code is 240 px, shown at ~0.6 scale

    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.shape == (480, 640, 3)
    # The outline runs through the code's corners, i.e. along its box's edges: green there.
    midpoints = [((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1 - 1), (x0, (y0 + y1) // 2), (x1 - 1, (y0 + y1) // 2)]
    for x, y in midpoints:
        around = image[max(0, y - 4):y + 5, max(0, x - 4):x + 5].reshape(-1, 3)
        assert any(is_green(p) for p in around), f"no green outline near {(x, y)}"
    # Inside the code, away from the outline, the frame is still gray.
    inner = image[y0 + 20:y1 - 20, x0 + 20:x1 - 20]
    assert (inner[..., 0] == inner[..., 1]).all() and (inner[..., 1] == inner[..., 2]).all()
    # No text chunk, and no token text anywhere in the file.
    assert not {b"tEXt", b"iTXt", b"zTXt"} & set(png_chunks(out))
    data = out.read_bytes()
    assert token.encode() not in data and token[4:24].encode() not in data


def test_a_blurred_frame_has_a_lower_code_sharpness(world, tmp_path):
    frame = sharp_frame(world.mint())
    sharp = aim.measure(frame)
    blurred = aim.measure(cv2.GaussianBlur(frame, (0, 0), 1.5))
    [a], [b] = sharp.codes, blurred.codes
    assert a.read and b.box[0] == pytest.approx(a.box[0], abs=10)
    assert b.sharpness < a.sharpness / 2
    assert blurred.sharpness < sharp.sharpness
    # The same through the command, on two frames of one replay camera, in --watch.
    config = camera(world, tmp_path, [frame, cv2.GaussianBlur(frame, (0, 0), 1.5)], paced="false")
    proc = qrgate("aim", "--config", str(config), "--watch", "--frames", "2")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    figure = lambda line: float(line.split("code sharpness ")[1].split()[0])  # noqa: E731
    assert figure(second) < figure(first)


def test_a_frame_without_a_code_has_no_codes(world, tmp_path):
    bg = render.background()
    config = camera(world, tmp_path, [render.scene(None, np.random.default_rng(1), bg=bg)])
    proc = qrgate("aim", "--config", str(config), "--out", str(tmp_path / "empty.png"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["codes"] == [] and result["sharpness"] > 0
    assert cv2.imread(str(tmp_path / "empty.png")).shape == (480, 640, 3)


def test_the_png_goes_to_aim_png_by_default(world, tmp_path):
    config = camera(world, tmp_path, [sharp_frame(world.mint())])
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([QRGATE, "aim", "--config", str(config)], capture_output=True, text=True, timeout=60,
                          cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["png"] == "aim.png" and (work / "aim.png").is_file()


def test_a_damaged_code_is_located_but_not_read_and_outlined_in_orange(world, tmp_path):
    # A fixed text, so that zxing-cpp's view of the damage is the same on every run: a version 3 code
    # that it locates whole. (A token's version 8 code, damaged, is mostly located in parts: below.)
    text = "KP1:SECRETSECRETSECRET0123456789ABCDEF"
    frame = render.scene(damaged_phone(text), np.random.default_rng(2), bg=render.background())
    m = aim.measure(frame)
    [code] = m.codes
    assert not code.read and m.seen == "code located, not read"
    x0, y0, x1, y1 = code.box
    assert 140 < x1 - x0 < 240 and 140 < y1 - y0 < 240  # the whole code (phone_screen's 240 px at ~0.68)
    config = camera(world, tmp_path, [frame])
    out = tmp_path / "aim.png"
    proc = qrgate("aim", "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    [code] = json.loads(proc.stdout)["codes"]
    assert code["read"] is False and code["sharpness"] > 0
    x0, y0, x1, y1 = code["box"]
    image = cv2.imread(str(out))
    edge = image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    orange = (edge[:, 2] > 200) & (edge[:, 1] > 100) & (edge[:, 1] < 180) & (edge[:, 0] < 60)
    assert orange.sum() > 300 and not any(is_green(p) for p in edge)
    assert text not in proc.stdout and text.encode() not in out.read_bytes()


def test_damaged_token_sized_codes_are_each_one_code_located_not_read():
    # zxing-cpp reports a damaged large code as several candidates (the finder patterns' corners, strips
    # between them): each frame is still one code, located and not read. Texts of a token's length
    # (a version 8 code), fixed so that the damage is the same on every run: with random tokens, this
    # damage left nothing located about once in 400.
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    for seed in range(5):
        rng = random.Random(seed)
        text = "KP1:" + "".join(rng.choice(alphabet) for _ in range(185))
        frame = render.scene(damaged_phone(text), np.random.default_rng(2), bg=render.background())
        assert [c.read for c in aim.measure(frame).codes] == [False], seed


def test_watch_prints_a_line_per_frame(world, tmp_path):
    tokens = [world.mint(), world.mint()]
    folder = write_frames(tmp_path / "frames", tokens, code_frames=4, gap_frames=3)
    config = camera(world, tmp_path, path=folder)
    proc = qrgate("aim", "--config", str(config), "--watch", "--frames", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and "\r" not in proc.stdout  # not a terminal: plain lines
    assert all(line.startswith("sharpness ") and "brightness " in line for line in lines)
    assert lines[0].endswith("no code") and any("code read" in line for line in lines)  # 3 empty, then a phone
    assert not any(t in proc.stdout or t[4:24] in proc.stdout for t in tokens)


def test_watch_rewrites_its_line_on_a_terminal(world, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    cfg = load(tmp_path, camera(world, tmp_path, [sharp_frame(world.mint())] * 3, paced="false").read_text())
    out = Terminal()
    assert aim.watch(cfg, frames=3, stream=out, out=tmp_path / "last.png") == 3
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert (tmp_path / "last.png").is_file()


def test_a_missing_replay_path_is_a_clear_error(world, tmp_path):
    config = camera(world, tmp_path, path=tmp_path / "nowhere")
    proc = qrgate("aim", "--config", str(config), "--out", str(tmp_path / "aim.png"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("qrgate: error: cannot open the camera") and str(tmp_path / "nowhere") in proc.stderr
    assert not (tmp_path / "aim.png").exists()


def test_frames_without_watch_is_refused(world, tmp_path):
    config = camera(world, tmp_path, [sharp_frame(world.mint())])
    proc = qrgate("aim", "--config", str(config), "--frames", "3")
    assert proc.returncode == 2 and "--frames goes with --watch" in proc.stderr


def pi_config(world, tmp_path):
    text = world.config_toml(tmp_path / "state", tmp_path / "unused").replace('source = "replay"', 'source = "picamera"')
    return load(tmp_path, text)


def test_a_live_camera_skips_its_first_frames_while_exposure_settles(world, tmp_path, picamera2, monkeypatch):
    monkeypatch.setattr(aim, "SETTLE_S", 0.0)
    monkeypatch.setattr(aim, "SETTLE_FRAMES", 3)
    dark = np.full((480, 640), 5, np.uint8)  # auto exposure not there yet
    picamera2.Picamera2.script = [(dark, 0)] * 3 + [(sharp_frame(world.mint()), 0)] * 3
    result = aim.run(pi_config(world, tmp_path), tmp_path / "aim.png")
    assert [c["read"] for c in result["codes"]] == [True] and result["brightness"] > 50
    camera = picamera2.Picamera2.instances[-1]
    assert camera.handed == 4 and camera.out == [] and camera.closed  # every request given back


def test_a_camera_held_by_the_daemon_says_so(world, tmp_path, picamera2, monkeypatch):
    def busy(self, camera_num: int = 0):
        raise RuntimeError("Failed to acquire camera: Device or resource busy")

    monkeypatch.setattr(picamera2.Picamera2, "__init__", busy)
    with pytest.raises(QrgateError) as caught:
        aim.run(pi_config(world, tmp_path), tmp_path / "aim.png")
    message = str(caught.value)
    assert message.startswith(aim.CAMERA_BUSY) and "resource busy" in message
    assert "sudo systemctl stop qrgate" in message
    assert not (tmp_path / "aim.png").exists()
