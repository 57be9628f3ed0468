"""Where everything goes on a printed card, in millimetres from its top left corner: the one layout both drawings use.

The card is ISO/IEC 7810 ID-1 (85.6 x 54 mm, a bank card: it fits a wallet and
a card printer). The QR code is on the left, vertically centred, its symbol
42 mm square whatever its version, with error correction Q (a quarter of the
code may be scuffed, folded or under a thumb and still read) and at least its
4-module quiet zone of white around it. At the door camera's 2.1 px/mm (f = 530
px, 25 cm) a 61-module symbol (a card with attributes) is 1.46 px a module, at
the edge of what the decoder reads: the symbol is made as large as the card
allows beside the text.

On the right, in a column of its own: "ENTRY CARD", the issuer's name (wrapped,
smaller if long), the lookup number, and the last day the card is valid. Never
a person's name (no command takes one) and never the attributes: they are in
the code for the door, and "vax" printed on a card tells a bystander something.
pdf.py and png.py draw a Layout and decide nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.errors import QrgateError
from lab import render
from lab.cards import fonts, number

CARD_W, CARD_H = 85.6, 54.0  # mm, ISO/IEC 7810 ID-1
QR_MM = 42.0  # the symbol, without its quiet zone
QUIET_MODULES = 4
EC_LEVEL = "Q"
MM_PER_PT = 25.4 / 72
MARGIN = 3.0  # mm of white at the card's right edge (card printers print to the edge; office printers do not)
QR_LEFT = 6.0  # mm from the left edge to the symbol: its quiet zone (< 3 mm at 61 modules) and a margin
TEXT_GAP = 1.0  # mm between the quiet zone and the text column
NAME_SIZES = (8.0, 7.0, 6.0)  # pt: an issuer's name is set at the largest of these it fits at
NAME_TOP, NAME_BOTTOM = 14.5, 28.0  # mm: the first and the lowest baseline of the name's lines


class LayoutError(QrgateError, ValueError):
    """Something the card cannot print: a character its fonts lack, a name too long for its column."""


@dataclass(frozen=True)
class Text:
    """One line: its left end at x, its baseline at `baseline` (mm from the top), `size` in points."""

    text: str
    x: float
    baseline: float
    size: float
    bold: bool = False


@dataclass(frozen=True)
class Layout:
    modules: NDArray[np.bool_]  # the symbol, True = dark, without quiet zone
    qr_x: float  # mm: the symbol's top left corner
    qr_y: float
    qr_size: float  # mm: the symbol's side
    texts: tuple[Text, ...]
    column: float  # mm: the text column's width, which no line exceeds in Helvetica
    width: float = CARD_W
    height: float = CARD_H


def card(token: str, iss: str, lookup: str, valid_until: dt.date) -> Layout:
    """The layout of one card: its KC1 text as the code, its issuer's name, its lookup number, its last day."""
    if not fonts.printable(iss):
        raise LayoutError(f"the issuer name {iss!r} has characters the card's fonts lack: a card issuer's name is "
                          "printable ASCII (letters, digits, spaces, punctuation)")
    modules = render.qr_modules(token, EC_LEVEL)
    quiet = QUIET_MODULES * QR_MM / modules.shape[0]
    qr_x = max(QR_LEFT, quiet)
    qr_y = (CARD_H - QR_MM) / 2
    x = qr_x + QR_MM + quiet + TEXT_GAP
    column = CARD_W - MARGIN - x
    name_size, name_lines = _fit_name(iss, column)
    leading = name_size * 1.25 * MM_PER_PT
    texts = [
        Text("ENTRY CARD", x, qr_y + 11 * fonts.CAP_HEIGHT * MM_PER_PT, 11, bold=True),  # capitals level with the code
        *(Text(line, x, NAME_TOP + i * leading, name_size) for i, line in enumerate(name_lines)),
        Text("card number", x, 35.0, 6.5),
        Text(number.display(lookup), x, 39.5, 11, bold=True),
        Text(f"valid until {valid_until.isoformat()}", x, qr_y + QR_MM, 8),  # on the code's bottom edge
    ]
    for t in texts:
        if fonts.width(t.text, t.size, t.bold) * MM_PER_PT > column + 1e-9:
            raise LayoutError(f"{t.text!r} does not fit the card's text column")
    return Layout(modules, qr_x, qr_y, QR_MM, tuple(texts), column)


def _fit_name(iss: str, column: float) -> tuple[float, list[str]]:
    """The largest of NAME_SIZES at which the name, wrapped at spaces (and within words that are too long
    for a line), fits the column and its lines fit between NAME_TOP and NAME_BOTTOM."""
    for size in NAME_SIZES:
        lines = wrap(iss, column / MM_PER_PT, size)
        if NAME_TOP + (len(lines) - 1) * size * 1.25 * MM_PER_PT <= NAME_BOTTOM:
            return size, lines
    raise LayoutError(f"the issuer name {iss!r} is too long for a card")


def wrap(text: str, width: float, size: float, bold: bool = False) -> list[str]:
    """`text` in lines no wider than `width` points, broken at spaces, and inside a word only where one word
    alone is wider than a line."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if fonts.width(candidate, size, bold) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for c in word:  # the word starts a new line; where even that is too narrow, it is cut
            if line and fonts.width(line + c, size, bold) > width:
                lines.append(line)
                line = ""
            line += c
    if line:
        lines.append(line)
    return lines
