"""QR decoders that read the grayscale plane they are given, without converting or copying it.

zxing-cpp is the default (measured faster and more robust, DESIGN.md, and
`qrgate bench scan`); pyzbar stays selectable. zbar is driven through pyzbar's
ctypes bindings with the array's own address, because pyzbar.decode() copies
the image with tobytes().
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import zxingcpp


def qr_formats() -> list[zxingcpp.BarcodeFormat]:
    """The QR symbologies a phone shows: Model 2 (and the old Model 1), never Micro QR or rMQR.

    zxing-cpp 3's `BarcodeFormat.QRCode` is the whole family, Micro QR included;
    a Micro QR's short error correction reads "codes" in a frame's noise (a
    measured 1 misread in ~2,000 phone frames: a text like "908" beside the
    real code). No entry token fits a Micro QR, so it is never asked for.
    """
    import zxingcpp

    return [zxingcpp.BarcodeFormat.QRCodeModel1, zxingcpp.BarcodeFormat.QRCodeModel2]


class Decoder(Protocol):
    def decode(self, gray: NDArray[Any]) -> list[str]: ...


@dataclass(frozen=True)
class FirstRead:
    """The fast read of a frame: the codes read, and those located but not read (where to try harder)."""

    texts: list[str]
    located: list[Any] = field(default_factory=list)  # zxingcpp.Barcode, not valid


class StagedDecoder(Decoder, Protocol):
    """A decoder in two stages, so that a pool of workers can take the second (scanner.workers).

    `decode(gray)` reads a frame whole: what the loop does alone. With workers,
    the loop's thread does `first`, a lighter read, and a worker does `more` on
    a frame `first` read nothing in, spending what a core of its own allows.
    """

    def first(self, gray: NDArray[Any]) -> FirstRead: ...

    def more(self, gray: NDArray[Any], first: FirstRead) -> list[str]: ...


class ZxingDecoder:
    """zxing-cpp, once per frame, and further attempts only where they have paid on phone screens.

    The first read is zxing-cpp's own (local-average binarizer, rotations,
    downscales, inverted codes for dark mode) on the plane in place, asking
    also for the codes it located but could not decode. When it reads nothing
    (measured on `qrgate bench scan`'s phone screens), `rest` tries, in turn:
    - moiré from the screen's pixel grid defeats the local binarizer, often
      before anything is located: the plane box-blurred (3x3), read with the
      global-histogram binarizer at full size only (always tried: the one extra
      cost of an empty frame, about a third of the first read);
    - a code located but not read: its region cropped, upscaled 2x and
      sharpened (small codes at the frame's edge, blur: modules under ~2 px),
      then the plane with the global-histogram binarizer, then zbar on the plane
      (glare over a finder pattern, where zbar's scanline reader does better).
    With workers, the loop's thread reads lighter (`first`), and `more`, on a
    worker's core, reads as `decode` does first, then tries the same as `rest`
    and zbar on every frame, located or not: zbar finds codes zxing-cpp does
    not locate at all (glare, moiré, cracked screens).
    """

    name = "zxing"

    def __init__(self) -> None:
        import zxingcpp

        self._zx = zxingcpp
        self._formats = qr_formats()
        self._zbar: ZbarDecoder | None = None

    def decode(self, gray: NDArray[Any]) -> list[str]:
        first = self._first(gray)
        return first.texts or self.rest(gray, first)

    def first(self, gray: NDArray[Any]) -> FirstRead:
        """The loop's read when workers take the rest: without zxing-cpp's downscaled pyramid and its rotated
        retries (a QR code's finder patterns are found at any angle; rotating helps 1-D codes), a third less
        time than its defaults on 640x480 frames. It reads the same frames but a few of cracked and dimmed
        screens (`qrgate bench scan`'s set), which `more` then reads."""
        return self._first(gray, light=True)

    def _first(self, gray: NDArray[Any], light: bool = False) -> FirstRead:
        # A 2-D uint8 array, strided or not, is read through the buffer protocol in place. (zxing-cpp's stub
        # takes a BarcodeFormats for `formats`; a list of formats converts to one, as these calls rely on.)
        found = self._zx.read_barcodes(gray, formats=self._formats, return_errors=True,  # type: ignore[arg-type]
                                       try_downscale=not light, try_rotate=not light)
        return FirstRead([b.text for b in found if b.valid], [b for b in found if not b.valid])

    def rest(self, gray: NDArray[Any], first: FirstRead) -> list[str]:
        attempts = (self._blurred, self._sharpened_crops, self._global_binarizer, self._with_zbar) \
            if first.located else (self._blurred,)
        return self._attempt(attempts, gray, first.located)

    def more(self, gray: NDArray[Any], first: FirstRead) -> list[str]:
        full = self._first(gray)  # what `first` left out (downscales, rotations): dim screens, cracked ones
        if full.texts:
            return full.texts
        located = full.located or first.located
        attempts = (self._blurred, self._sharpened_crops, self._global_binarizer, self._with_zbar) \
            if located else (self._blurred, self._with_zbar)
        return self._attempt(attempts, gray, located)

    @staticmethod
    def _attempt(attempts: tuple[Callable[[NDArray[Any], list[Any]], list[str]], ...], gray: NDArray[Any],
                 located: list[Any]) -> list[str]:
        for attempt in attempts:
            texts = attempt(gray, located)
            if texts:
                return texts
        return []

    def _read(self, image: NDArray[Any], **options: Any) -> list[str]:
        return [b.text for b in self._zx.read_barcodes(image, formats=self._formats,  # type: ignore[arg-type]
                                                       **options) if b.valid]

    def _sharpened_crops(self, gray: NDArray[Any], found: list[zxingcpp.Barcode]) -> list[str]:
        for x0, y0, x1, y1 in _boxes(gray, found):
            crop = cv2.resize(gray[y0:y1, x0:x1], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            sharp = cv2.addWeighted(crop, 1.8, cv2.GaussianBlur(crop, (0, 0), 2.0), -0.8, 0)  # unsharp mask
            texts = self._read(sharp)
            if texts:
                return texts
        return []

    def _blurred(self, gray: NDArray[Any], found: list[zxingcpp.Barcode]) -> list[str]:
        return self._read(cv2.blur(gray, (3, 3)), binarizer=self._zx.Binarizer.GlobalHistogram, try_downscale=False)

    def _global_binarizer(self, gray: NDArray[Any], found: list[zxingcpp.Barcode]) -> list[str]:
        return self._read(gray, binarizer=self._zx.Binarizer.GlobalHistogram)

    def _with_zbar(self, gray: NDArray[Any], found: list[zxingcpp.Barcode]) -> list[str]:
        # The whole plane: glare often hides the located region's true extent
        # (zbar on the region alone read a third fewer). ~8 ms: the cost of a
        # frame that is about to fail anyway, and of most of the loop's p95.
        if self._zbar is None:
            self._zbar = ZbarDecoder()
        return self._zbar.decode(gray)


def _boxes(gray: NDArray[Any], found: list[zxingcpp.Barcode], most: int = 2) -> Iterator[tuple[int, int, int, int]]:
    """The regions (x0, y0, x1, y1) of the first codes located, with a quarter of their size as margin."""
    for barcode in found[:most]:
        p = barcode.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
        margin = max(8, (max(xs) - min(xs)) // 4, (max(ys) - min(ys)) // 4)
        x0, x1 = max(0, min(xs) - margin), min(gray.shape[1], max(xs) + margin)
        y0, y1 = max(0, min(ys) - margin), min(gray.shape[0], max(ys) + margin)
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            yield x0, y0, x1, y1


def _fourcc(code: str) -> int:
    return sum(ord(c) << (8 * i) for i, c in enumerate(code))


class ZbarDecoder:
    name = "zbar"

    def __init__(self) -> None:
        from pyzbar import wrapper as zbar

        self._z = zbar
        self._scanner = zbar.zbar_image_scanner_create()
        zbar.zbar_image_scanner_set_config(self._scanner, zbar.ZBarSymbol.NONE, zbar.ZBarConfig.CFG_ENABLE, 0)
        zbar.zbar_image_scanner_set_config(self._scanner, zbar.ZBarSymbol.QRCODE, zbar.ZBarConfig.CFG_ENABLE, 1)

    def decode(self, gray: NDArray[Any]) -> list[str]:
        z = self._z
        if gray.ndim != 2 or gray.dtype != np.uint8 or gray.strides[1] != 1:
            raise ValueError("zbar reads a 2-D uint8 plane with contiguous rows")
        height, width = gray.shape
        stride = gray.strides[0]
        # zbar has no row stride: give it `stride` columns; the padding past `width` is only scanned.
        image = z.zbar_image_create()
        try:
            z.zbar_image_set_format(image, _fourcc("Y800"))
            z.zbar_image_set_size(image, stride, height)
            z.zbar_image_set_data(image, ctypes.c_void_p(gray.ctypes.data), stride * (height - 1) + width, None)
            if z.zbar_scan_image(self._scanner, image) < 0:
                raise ValueError("zbar refused the image")
            texts = []
            symbol = z.zbar_image_first_symbol(image)
            while symbol:
                data = ctypes.string_at(z.zbar_symbol_get_data(symbol), z.zbar_symbol_get_data_length(symbol))
                texts.append(data.decode("utf-8", errors="replace"))
                symbol = z.zbar_symbol_next(symbol)
            return texts
        finally:
            z.zbar_image_destroy(image)

    def __del__(self) -> None:
        scanner, self._scanner = getattr(self, "_scanner", None), None
        if scanner:
            self._z.zbar_image_scanner_destroy(scanner)


DECODERS: dict[str, Callable[[], Decoder]] = {"zxing": ZxingDecoder, "zbar": ZbarDecoder}
STAGED: dict[str, Callable[[], StagedDecoder]] = {"zxing": ZxingDecoder}  # those a pool of workers can help
