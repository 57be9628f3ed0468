"""QR decoders that read the grayscale plane they are given, without converting or copying it.

zxing-cpp is the default (measured faster and more robust, DESIGN.md); pyzbar
stays selectable. zbar is driven through pyzbar's ctypes bindings with the
array's own address, because pyzbar.decode() copies the image with tobytes().
"""

from __future__ import annotations

import ctypes
from typing import Protocol

import numpy as np


class Decoder(Protocol):
    def decode(self, gray: np.ndarray) -> list[str]: ...


class ZxingDecoder:
    name = "zxing"

    def __init__(self) -> None:
        import zxingcpp

        self._zx = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def decode(self, gray: np.ndarray) -> list[str]:
        # A 2-D uint8 array, strided or not, is read through the buffer protocol in place.
        return [b.text for b in self._zx.read_barcodes(gray, formats=self._formats) if b.valid]


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

    def decode(self, gray: np.ndarray) -> list[str]:
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


DECODERS = {"zxing": ZxingDecoder, "zbar": ZbarDecoder}
