"""Both decoder backends on real QR photographs and on rendered phone screens, reading planes in place."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lab import render
from firmware.scanner.decode import DECODERS
from firmware.scanner.dedupe import Dedupe

SAMPLES = Path(__file__).parent.parent / "data" / "qr-samples" / "zxing-cpp"


def _samples() -> list[tuple[Path, str]]:
    cases = []
    for txt in sorted(SAMPLES.glob("*/*.txt")):
        if txt.name.endswith(".result.txt"):
            continue
        images = [p for p in txt.parent.glob(txt.stem + ".*") if p.suffix != ".txt"]
        if images:
            cases.append((images[0], txt.read_text(encoding="utf-8", errors="replace")))
    return cases


@pytest.mark.parametrize("backend, least", [("zxing", 0.70), ("zbar", 0.55)])
def test_reads_real_photographs_without_misreads(backend, least):
    decoder = DECODERS[backend]()
    cases = _samples()
    assert len(cases) > 100
    read = 0
    for image, expected in cases:
        texts = decoder.decode(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE))
        read += expected in texts
    # Upstream marks some samples as not expected to decode; the rate is the measure.
    assert read / len(cases) >= least, f"{backend} read {read}/{len(cases)}"


@pytest.mark.parametrize("backend", ["zxing", "zbar"])
def test_reads_a_rendered_phone_screen(backend, world):
    token = world.mint()
    frame = render.scene(render.phone_screen(token), np.random.default_rng(1), angle=6, blur=0.6)
    assert DECODERS[backend]().decode(frame) == [token]


@pytest.mark.parametrize("backend", ["zxing", "zbar"])
def test_reads_the_y_plane_of_a_padded_yuv420_buffer_in_place(backend, world):
    """As picamera2 maps it: rows of `stride` bytes, Y first, then U and V; the decoder gets a view."""
    token = world.mint()
    y = render.scene(render.phone_screen(token), np.random.default_rng(2))
    height, width = y.shape
    stride = width + 64
    buffer = np.full((height * 3 // 2, stride), 128, np.uint8)
    buffer[:height, :width] = y
    plane = buffer[:height, :width]
    assert np.shares_memory(plane, buffer) and not plane.flags.c_contiguous
    assert DECODERS[backend]().decode(plane) == [token]


@pytest.mark.parametrize("backend", ["zxing", "zbar"])
def test_empty_frame_decodes_to_nothing(backend):
    assert DECODERS[backend]().decode(render.background()) == []


def test_a_code_in_view_is_decided_once_and_again_after_it_left():
    d = Dedupe(hold_s=1.0)
    assert d.fresh(["A"], 0.0) == ["A"]
    assert d.fresh(["A", "A"], 0.5) == []
    assert d.fresh(["A", "B"], 1.4) == ["B"]  # A still in view: held for 1 s after each sighting
    assert d.fresh([], 2.0) == []
    assert d.fresh(["A"], 2.5) == ["A"]  # gone for over a second: a new showing


def _padded_plane(world) -> tuple[np.ndarray, np.ndarray, str]:
    token = world.mint()
    y = render.scene(render.phone_screen(token), np.random.default_rng(3))
    height, width = y.shape
    buffer = np.full((height * 3 // 2, width + 64), 128, np.uint8)
    buffer[:height, :width] = y
    return buffer, buffer[:height, :width], token


def test_zxing_is_handed_the_camera_plane_itself(world, monkeypatch):
    import zxingcpp

    buffer, plane, token = _padded_plane(world)
    seen = []
    real = zxingcpp.read_barcodes

    def spy(image, *args, **kwargs):
        seen.append(image)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(zxingcpp, "read_barcodes", spy)
    assert DECODERS["zxing"]().decode(plane) == [token]
    # The first (and, for a frame read at once, only) read is of the plane itself, strides and all:
    # zxing-cpp's binding wraps a 2-D uint8 buffer in an ImageView without copying it.
    assert seen[0] is plane and np.shares_memory(seen[0], buffer) and len(seen) == 1


def test_zbar_is_given_the_address_of_the_camera_plane(world, monkeypatch):
    from pyzbar import wrapper

    buffer, plane, token = _padded_plane(world)
    given = []
    real = wrapper.zbar_image_set_data

    def spy(image, data, length, cleanup):
        given.append((data.value, length))
        return real(image, data, length, cleanup)

    monkeypatch.setattr(wrapper, "zbar_image_set_data", spy)
    assert DECODERS["zbar"]().decode(plane) == [token]
    [(address, length)] = given
    assert address == buffer.ctypes.data  # the plane starts where the buffer does: zbar reads it in place
    assert length == buffer.strides[0] * (plane.shape[0] - 1) + plane.shape[1]  # and nothing past the Y plane


def test_no_micro_qr_ghost_beside_a_phone_code():
    """A rendered frame where zxing-cpp's whole QR family also "reads" a Micro QR out of the noise (found by CI)."""
    import zxingcpp

    frame = cv2.imread(str(Path(__file__).parent.parent / "data" / "micro-qr-ghost.png"), cv2.IMREAD_GRAYSCALE)
    family = zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode)
    assert {b.format for b in family} == {zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.MicroQRCode}
    texts = DECODERS["zxing"]().decode(frame)
    assert len(texts) == 1 and texts[0].startswith("KP1:")


@pytest.fixture(scope="module")
def phone_frames(tmp_path_factory):
    """A small built-in scan set, both parts (every condition twice): (gray, expected text or None) per frame.
    Seed 2 has frames each of `more`'s reads is needed for: the full read (a dimmed screen) and zbar."""
    from lab.bench import scenes

    folder = tmp_path_factory.mktemp("phones")
    n = 2 * len(scenes.CONDITIONS)
    specs = scenes.build(folder, [f"KP1:first-{i:03d}-" + "x" * 60 for i in range(n)], seed=2,
                         more_texts=[f"KP1:second-{i:03d}-" + "y" * 60 for i in range(n)])
    return [(cv2.imread(str(folder / s.name), cv2.IMREAD_GRAYSCALE), s.text) for s in specs]


def test_the_fast_read_and_a_workers_read_together_read_all_that_zxing_or_zbar_reads(phone_frames):
    """What the pool promises the loop: a frame either bare decoder reads is read by `first` or by `more`."""
    import zxingcpp
    from pyzbar import pyzbar

    from firmware.scanner.decode import ZxingDecoder, qr_formats

    decoder = ZxingDecoder()
    light = recovered = 0
    for gray, text in phone_frames:
        bare = {b.text for b in zxingcpp.read_barcodes(gray, formats=qr_formats())} | {
            s.data.decode() for s in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])}
        first = decoder.first(gray)
        read = first.texts or decoder.more(gray, first)
        assert set(read) <= ({text} if text else set())  # nothing but the code shown: no misread
        if text in bare:
            assert read == [text]
        light += bool(first.texts)
        recovered += bool(read) and not first.texts
    assert light > recovered > 0  # most read fast; some only by a worker
