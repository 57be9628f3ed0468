"""A card's Layout as a 600 dpi grayscale PNG that prints at the card's real size.

For a printer's software that takes images, not PDFs (a card printer's often
does). 85.6 x 54 mm at 600 dpi is 2022 x 1276 pixels. The image carries a pHYs
chunk with its resolution, so "print at 100%" is the card's size rather than
whatever the printing program assumes for an image without one (often 72 or
96 dpi: a card two metres or a metre wide). OpenCV writes no pHYs, so it is
put in after IHDR, where the PNG specification wants it (before IDAT), with
its CRC. The text is OpenCV's Hershey fonts (no font files), each line sized
to Helvetica's capital height and narrowed if it would run out of its column.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from numpy.typing import NDArray

from lab.cards.fonts import CAP_HEIGHT
from lab.cards.layout import MM_PER_PT, Layout

DPI = 600
SIGNATURE = b"\x89PNG\r\n\x1a\n"
FONTS = {False: cv2.FONT_HERSHEY_SIMPLEX, True: cv2.FONT_HERSHEY_DUPLEX}


def raster(layout: Layout, dpi: int = DPI) -> NDArray[np.uint8]:
    """The card as 8-bit gray, white paper and black ink."""
    px = dpi / 25.4  # pixels per mm
    image = np.full((round(layout.height * px), round(layout.width * px)), 255, np.uint8)
    n = layout.modules.shape[0]
    # Module edges rounded from their exact places: modules a pixel apart in width, the symbol its true size.
    xs = [round((layout.qr_x + layout.qr_size * i / n) * px) for i in range(n + 1)]
    ys = [round((layout.qr_y + layout.qr_size * i / n) * px) for i in range(n + 1)]
    for r, c in zip(*np.nonzero(layout.modules)):
        image[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 0
    for t in layout.texts:
        font = FONTS[t.bold]
        cap = CAP_HEIGHT * t.size * MM_PER_PT * px
        scale = cap / cv2.getTextSize("H", font, 1.0, 1)[0][1]
        thickness = max(1, round(scale * (2.4 if t.bold else 1.4)))
        width = cv2.getTextSize(t.text, font, scale, thickness)[0][0]
        scale *= min(1.0, layout.column * px / width) if width else 1.0
        cv2.putText(image, t.text, (round(t.x * px), round(t.baseline * px)), font, scale, (0,), thickness, cv2.LINE_AA)
    return image


def render(layout: Layout, dpi: int = DPI) -> bytes:
    """The PNG file's bytes."""
    ok, data = cv2.imencode(".png", raster(layout, dpi))
    if not ok:
        raise OSError("OpenCV could not encode the card as PNG")
    return with_dpi(data.tobytes(), dpi)


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_dpi(png: bytes, dpi: int) -> bytes:
    """`png` with a pHYs chunk saying `dpi` (in pixels per metre, as PNG has it) right after IHDR, and no other."""
    if not png.startswith(SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG starting with its IHDR")
    chunks, at = [], len(SIGNATURE)
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        end = at + 12 + length
        if png[at + 4 : at + 8] != b"pHYs":
            chunks.append(png[at:end])
        at = end
    per_metre = round(dpi / 0.0254)
    phys = chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))  # unit 1: the metre
    return SIGNATURE + chunks[0] + phys + b"".join(chunks[1:])
