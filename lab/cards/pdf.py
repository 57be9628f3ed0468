"""A card's Layout as a one-page PDF 1.4 the size of the card, written by hand: no dependency for forty lines.

The page (its MediaBox) is the card itself, 85.6 x 54 mm, so a card printer,
or an office printer at "actual size" on card stock, prints it to scale. The
QR code is vector: each row's runs of dark modules are rectangles, all of them
one path filled once (a renderer's anti-aliasing leaves no seams between
modules filled together), sharp at any printer's resolution. The text is in
the base-14 Helvetica and Helvetica-Bold, which every reader has, so nothing
is embedded. The content stream is deflated; the cross-reference table's
offsets are counted as the file is written.
"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.typing import NDArray

from lab.cards.layout import Layout

PT_PER_MM = 72 / 25.4
FONTS = {False: "F1", True: "F2"}


def num(value: float) -> str:
    """A PDF number: three decimals (1/2800 inch), trailing zeros dropped."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def string(text: str) -> bytes:
    """A PDF literal string: `\\`, `(` and `)` escaped, anything but printable ASCII as an octal escape."""
    out = bytearray(b"(")
    for byte in text.encode("latin-1"):
        if byte in b"\\()":
            out += b"\\" + bytes([byte])
        elif 0x20 <= byte < 0x7F:
            out.append(byte)
        else:
            out += f"\\{byte:03o}".encode()
    return bytes(out + b")")


def runs(modules: NDArray[np.bool_]) -> list[tuple[int, int, int]]:
    """The dark modules as horizontal runs: (row, first column, length)."""
    out = []
    for r, row in enumerate(modules):
        c, n = 0, len(row)
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                out.append((r, start, c - start))
            else:
                c += 1
    return out


def content(layout: Layout) -> bytes:
    """The page's drawing: the code's runs as one filled path, then each line of text."""
    height = layout.height * PT_PER_MM
    module = layout.qr_size / layout.modules.shape[0] * PT_PER_MM
    x0, top = layout.qr_x * PT_PER_MM, height - layout.qr_y * PT_PER_MM
    ops = [b"q 0 g"]
    for r, c, n in runs(layout.modules):
        ops.append(f"{num(x0 + c * module)} {num(top - (r + 1) * module)} {num(n * module)} {num(module)} re".encode())
    ops.append(b"f Q")
    for t in layout.texts:
        ops.append(b"BT /%s %s Tf %s %s Td %s Tj ET" % (
            FONTS[t.bold].encode(), num(t.size).encode(), num(t.x * PT_PER_MM).encode(),
            num(height - t.baseline * PT_PER_MM).encode(), string(t.text)))
    return b"\n".join(ops) + b"\n"


def render(layout: Layout) -> bytes:
    """The whole file."""
    stream = zlib.compress(content(layout), 9)
    box = f"[0 0 {num(layout.width * PT_PER_MM)} {num(layout.height * PT_PER_MM)}]".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox " + box + b" /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >>"
        b" /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Title (Entry card) /Producer (qrgate) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # the binary comment: transfer programs keep it binary
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
