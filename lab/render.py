"""Draws QR codes and phone screens showing them: for `token mint --png`, the demo and tests.

QR symbols come from zxing-cpp's writer (the decoder's own package) and PNGs
from OpenCV: nothing beyond the device's own dependencies. The phone screens are synthetic but honest
camera input: a phone at an angle in a cluttered grey scene, with blur, glare
and sensor noise, as 8-bit grayscale frames the size the camera delivers.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import zxingcpp


def qr_modules(text: str, ec: str = "M") -> np.ndarray:
    """The QR symbol as a boolean matrix (True = dark), without quiet zone; error correction `ec` (L, M, Q, H):
    M, as phone apps draw their codes, by default; a printed card's is Q (issue 23), to outlast smudges and folds."""
    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level=ec)
    return np.asarray(code.to_image(scale=1, add_quiet_zones=False)) < 128


def qr_image(text: str, module_px: int = 8, quiet: int = 4) -> np.ndarray:
    """A plain black-on-white QR as a grayscale image."""
    modules = np.pad(qr_modules(text), quiet, constant_values=False)
    gray = np.where(modules, 0, 255).astype(np.uint8)
    return np.kron(gray, np.ones((module_px, module_px), dtype=np.uint8))


def write_png(path: Path, gray: np.ndarray) -> None:
    if not cv2.imwrite(str(path), gray):
        raise OSError(f"cannot write {path}")


def phone_screen(text: str, app: str = "entry pass", dark: bool = False, qr_px: int = 240) -> np.ndarray:
    """A phone (bezel, status bar, app header) showing `text` as a QR code."""
    w, h = qr_px + 60, int((qr_px + 60) * 1.9)
    phone = np.full((h, w), 20, np.uint8)  # the bezel
    screen_bg, ink = (30, 235) if dark else (250, 20)
    cv2.rectangle(phone, (10, 40), (w - 11, h - 41), screen_bg, -1)
    cv2.rectangle(phone, (10, 40), (w - 11, 100), 90 if dark else 200, -1)
    cv2.putText(phone, app, (24, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.8, ink, 2, cv2.LINE_AA)
    code = qr_image(text, module_px=1, quiet=3)
    if dark:
        code = 255 - code
    code = cv2.resize(code, (qr_px, qr_px), interpolation=cv2.INTER_NEAREST)
    top = 130
    phone[top : top + qr_px, 30 : 30 + qr_px] = code
    cv2.putText(phone, "show this at the entrance", (24, top + qr_px + 50), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, ink, 1, cv2.LINE_AA)
    return phone


def background(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """An entrance seen by the camera: a gradient, a few shapes, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    scene = (90 + 60 * x / width + 30 * y / height).astype(np.float32)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(scene, (x0, y0), (x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 160))),
                      float(rng.integers(40, 200)), -1)
    return np.clip(scene, 0, 255).astype(np.uint8)


def scene(phone: np.ndarray | None, rng: np.random.Generator, width: int = 640, height: int = 480,
          angle: float = 0.0, blur: float = 0.0, glare: bool = False, bg: np.ndarray | None = None) -> np.ndarray:
    """One camera frame: the phone (or nothing) held in front of the background."""
    frame = (bg if bg is not None else background(width, height)).astype(np.float32)
    if phone is not None:
        ph, pw = phone.shape
        cx = width / 2 + rng.uniform(-20, 20)
        cy = height / 2 + rng.uniform(-15, 15)
        scale = min(1.0, (height * 0.98) / ph)
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
        m[0, 2] += cx - pw / 2
        m[1, 2] += cy - ph / 2 + ph * scale * 0.18  # the QR sits in the upper part of the phone
        warped = cv2.warpAffine(phone, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpAffine(np.full_like(phone, 255), m, (width, height), flags=cv2.INTER_NEAREST)
        frame = np.where(mask > 0, warped.astype(np.float32), frame)
    if glare:
        overlay = np.zeros_like(frame)
        cv2.ellipse(overlay, (int(width * 0.6), int(height * 0.35)), (70, 35), 30, 0, 360, 90.0, -1)
        frame += cv2.GaussianBlur(overlay, (0, 0), 15)
    if blur > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    frame += rng.normal(0, 3, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)
