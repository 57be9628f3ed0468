"""A printed card as drawn: its layout, the PDF (structure, and as poppler renders it) and the 600 dpi PNG, read back
by the door's own decoder at full size and at what the door camera sees. The token is fixed (a fixed key signs
deterministically), so every run draws the same card."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.scanner.decode import ZxingDecoder
from lab import render, signers
from lab.cards import layout, number, pdf, png

CARD_PX = (1276, 2022)  # 54 x 85.6 mm at 600 dpi
PX_PER_MM = 600 / 25.4
CAMERA_PX_PER_MM = 530 / 250  # the door camera: f = 530 px, the card 25 cm away
ISSUER = signers.Issuer("Mapo Community Centre", Ed25519PrivateKey.from_private_bytes(bytes(range(32))), 365)
CTI = bytes(range(100, 116))
TOKEN = signers.mint_card(ISSUER, 1_800_000_000, att=("age19", "vax"), cti=CTI)
LOOKUP = number.of_card(CTI)


@pytest.fixture(scope="module")
def card() -> layout.Layout:
    return layout.card(TOKEN, ISSUER.iss, LOOKUP, dt.date(2027, 1, 14))


def chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """A PNG's chunks: (type, data, CRC as stored)."""
    assert data[:8] == png.SIGNATURE
    out, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        out.append((kind, body, struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]))
        at += 12 + length
    return out


def camera_frames(card_gray: np.ndarray) -> list[np.ndarray]:
    """The card as the door camera sees it held at about 25 cm (2.0 to 2.2 px/mm, a card moving in the hand) in
    front of the entrance, with sensor noise: 640x480 frames."""
    frames = []
    for i, px_mm in enumerate((2.0, 2.06, CAMERA_PX_PER_MM, 2.18)):
        w, h = round(85.6 * px_mm), round(54 * px_mm)
        small = cv2.resize(card_gray, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        frame = render.background(seed=i).astype(np.float32)
        y, x = (480 - h) // 2 + 3 * i, (640 - w) // 2 - 5 * i
        frame[y:y + h, x:x + w] = small
        frame += np.random.default_rng(i).normal(0, 3, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def test_the_card_prints_its_issuer_number_and_last_day_and_nothing_else(card):
    texts = [t.text for t in card.texts]
    assert texts[0] == "ENTRY CARD" and " ".join(texts[1:-3]) == "Mapo Community Centre"  # wrapped: 2 lines
    assert texts[-3:] == ["card number", number.display(LOOKUP), "valid until 2027-01-14"]
    assert not any(a in " ".join(texts) for a in ("age", "vax"))  # attributes are in the code, never printed


def test_a_long_issuer_name_wraps_within_the_column_and_above_the_number():
    name = "Seogyo-dong Community Service Centre of Mapo-gu, Seoul (Annex, 2nd floor)"[:64]
    lay = layout.card(TOKEN, name, LOOKUP, dt.date(2027, 1, 14))
    lines = [t for t in lay.texts if t.text not in ("ENTRY CARD", "card number") and t.size < 11
             and not t.text.startswith("valid")]
    assert " ".join(t.text for t in lines) == name and len(lines) > 1
    assert all(layout.fonts.width(t.text, t.size) * layout.MM_PER_PT <= lay.column for t in lines)
    assert max(t.baseline for t in lines) <= layout.NAME_BOTTOM
    one_word = layout.card(TOKEN, "W" * 64, LOOKUP, dt.date(2027, 1, 14))  # cut inside the word, smaller
    assert "".join(t.text for t in one_word.texts[1:-3]) == "W" * 64


def test_a_name_the_fonts_cannot_print_is_refused():
    with pytest.raises(layout.LayoutError, match="printable ASCII"):
        layout.card(TOKEN, "마포구 주민센터", LOOKUP, dt.date(2027, 1, 14))


def test_the_png_is_the_card_at_600_dpi_in_gray_and_says_so(card):
    data = png.render(card)
    found = chunks(data)
    assert [k for k, _, _ in found[:2]] == [b"IHDR", b"pHYs"] and found[-1][0] == b"IEND"
    assert [k for k, _, _ in found].count(b"pHYs") == 1
    assert all(zlib.crc32(kind + body) == crc for kind, body, crc in found)
    width, height, depth, colour = struct.unpack(">IIBB", found[0][1][:10])
    assert (height, width, depth, colour) == (*CARD_PX, 8, 0)  # 8-bit grayscale
    x_ppm, y_ppm, unit = struct.unpack(">IIB", found[1][1])
    assert unit == 1 and x_ppm == y_ppm and round(x_ppm * 0.0254) == 600
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == CARD_PX and image.dtype == np.uint8


def test_the_symbol_is_42_mm_error_correction_q_left_and_centred_in_its_quiet_zone(card):
    image = png.raster(card)
    modules = card.modules.shape[0]
    left = image[:, : round((card.qr_x + card.qr_size) * PX_PER_MM) + 2]
    rows, cols = np.nonzero(left < 128)
    top, bottom, first, last = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = 42 * PX_PER_MM
    assert abs((bottom - top) - side) <= 1 and abs((last - first) - side) <= 1
    assert abs(top - (CARD_PX[0] - bottom)) <= 1  # vertically centred
    quiet = round(4 * side / modules)
    around = image[top - quiet:bottom + quiet, first - quiet:last + quiet].copy()
    around[quiet:-quiet, quiet:-quiet] = 255
    assert first >= quiet and (around == 255).all()  # 4 modules of white all round, and within the card
    text_left = min(t.x for t in card.texts) * PX_PER_MM
    assert last + quiet <= text_left
    [read] = zxingcpp.read_barcodes(image)
    assert read.text == TOKEN and read.ec_level == "Q"


def test_the_png_reads_at_the_door_cameras_scale(card):
    decoder = ZxingDecoder()
    assert [decoder.decode(f) for f in camera_frames(png.raster(card))] == [[TOKEN]] * 4


def pdf_objects(data: bytes) -> dict[int, bytes]:
    """The PDF's objects by number, each found through the cross-reference table, which must point at it exactly."""
    assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", data)[1])
    assert data[startxref:].startswith(b"xref\n0 ")
    head, _, rest = data[startxref + 5:].partition(b"\n")
    first, count = map(int, head.split())
    entries = [rest[i * 20:(i + 1) * 20] for i in range(count)]
    assert first == 0 and entries[0] == b"0000000000 65535 f \n"
    trailer = rest[count * 20:]
    assert trailer.startswith(b"trailer\n<< /Size %d /Root 1 0 R" % count)
    objects = {}
    for n, entry in enumerate(entries[1:], start=1):
        assert re.fullmatch(rb"\d{10} 00000 n \n", entry)
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj\n" % n)
        end = data.index(b"\nendobj\n", offset)
        objects[n] = data[offset + len(b"%d 0 obj\n" % n):end]
    assert max(offset for offset in (int(e[:10]) for e in entries[1:])) < startxref
    return objects


def test_the_pdf_is_one_card_sized_page_with_a_correct_cross_reference_table(card):
    objects = pdf_objects(pdf.render(card))
    assert len(objects) == 7
    assert objects[1] == b"<< /Type /Catalog /Pages 2 0 R >>"
    assert b"/Count 1" in objects[2]
    assert b"/MediaBox [0 0 242.646 153.071]" in objects[3]  # 85.6 x 54 mm in points
    fonts = {re.search(rb"/BaseFont /(\S+)", objects[n])[1] for n in (5, 6)}
    assert fonts == {b"Helvetica", b"Helvetica-Bold"} and not any(b"FontFile" in o for o in objects.values())
    head, _, stream = objects[4].partition(b"\nstream\n")
    stream = stream.removesuffix(b"\nendstream")
    assert int(re.search(rb"/Length (\d+)", head)[1]) == len(stream) and b"/FlateDecode" in head
    drawing = zlib.decompress(stream).decode("ascii")
    assert "(ENTRY CARD) Tj" in drawing and f"({number.display(LOOKUP)}) Tj" in drawing
    assert "vax" not in drawing and "age" not in drawing


def test_the_pdfs_rectangles_are_the_symbols_dark_modules_in_horizontal_runs(card):
    objects = pdf_objects(pdf.render(card))
    drawing = zlib.decompress(objects[4].partition(b"\nstream\n")[2].removesuffix(b"\nendstream")).decode()
    rects = [tuple(map(float, m)) for m in re.findall(r"^(\S+) (\S+) (\S+) (\S+) re$", drawing, re.M)]
    n = card.modules.shape[0]
    module = 42 * 72 / 25.4 / n
    x0, top = card.qr_x * 72 / 25.4, 153.0709 - card.qr_y * 72 / 25.4
    rebuilt = np.zeros_like(card.modules)
    for x, y, w, h in rects:
        assert abs(h - module) < 0.002
        row, col, length = round((top - y) / module) - 1, round((x - x0) / module), round(w / module)
        assert not rebuilt[row, col:col + length].any()  # no module drawn twice
        rebuilt[row, col:col + length] = True
    assert (rebuilt == card.modules).all()
    assert len(rects) == len(pdf.runs(card.modules)) < card.modules.sum()  # runs merged
    assert drawing.count(" f ") + drawing.count("\nf ") == 1  # one fill for the whole symbol


def test_pdf_strings_are_escaped():
    assert pdf.string("a(b)c\\d") == b"(a\\(b\\)c\\\\d)"
    assert pdf.string("\t\u00e9") == b"(\\011\\351)"


def poppler(pdf_file: Path, dpi: int) -> np.ndarray:
    exe = shutil.which("pdftoppm")
    assert exe, "pdftoppm is missing: Debian's poppler-utils has it (./dev test installs it)"
    subprocess.run([exe, "-r", str(dpi), "-gray", "-singlefile", str(pdf_file), str(pdf_file.with_suffix(""))],
                   check=True, timeout=60)
    return cv2.imread(str(pdf_file.with_suffix(".pgm")), cv2.IMREAD_GRAYSCALE)


def test_the_pdf_as_poppler_renders_it_reads_at_full_size_and_at_the_door_cameras_scale(card, tmp_path):
    path = tmp_path / "card.pdf"
    path.write_bytes(pdf.render(card))
    page = poppler(path, 600)
    assert page.shape[0] == CARD_PX[0] and abs(page.shape[1] - CARD_PX[1]) <= 1  # poppler rounds 2022.05 up
    [read] = zxingcpp.read_barcodes(page)
    assert read.text == TOKEN and read.ec_level == "Q"
    decoder = ZxingDecoder()
    assert [decoder.decode(f) for f in camera_frames(page)] == [[TOKEN]] * 4
