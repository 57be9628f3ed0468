"""The widths of the PDF base-14 Helvetica and Helvetica-Bold, for the printable ASCII characters a card prints.

Every PDF reader has these two fonts, so the card's PDF embeds none; the layout
needs their advance widths (Adobe's AFM metrics, thousandths of the font size,
WinAnsiEncoding: 0x27 is quotesingle, 0x60 grave) to wrap an issuer's name
within the text column. A character outside this table would need a font of its
own (an issuer named in Hangul): a card issuer's name is refused up front
instead (`printable`), and the PNG's Hershey fonts have the same characters.
"""

from __future__ import annotations

CAP_HEIGHT = 0.718  # Helvetica's, both weights: the height of a capital, in font sizes
FIRST = 0x20

# Advance widths of 0x20..0x7E, in order.
_REGULAR = (
    "278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 "  # space ! " # $ % & ' ( ) * + , - . /
    "556 556 556 556 556 556 556 556 556 556 278 278 584 584 584 556 "  # 0-9 : ; < = > ?
    "1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 "  # @ A-O
    "667 778 722 667 611 722 667 944 667 667 611 278 278 278 469 556 "  # P-Z [ \ ] ^ _
    "333 556 556 500 556 556 278 556 556 222 222 500 222 833 556 556 "  # ` a-o
    "556 556 333 500 278 556 500 722 500 500 500 334 260 334 584"  # p-z { | } ~
)
_BOLD = (
    "278 333 474 556 556 889 722 238 333 333 389 584 278 333 278 278 "
    "556 556 556 556 556 556 556 556 556 556 333 333 584 584 584 611 "
    "975 722 722 722 722 667 611 778 722 278 556 722 611 833 722 778 "
    "667 778 722 667 611 722 667 944 667 667 611 333 278 333 584 556 "
    "333 556 611 556 611 556 333 611 611 278 278 556 278 889 611 611 "
    "611 611 389 556 333 611 556 778 556 556 500 389 280 389 584"
)
WIDTHS = {False: tuple(map(int, _REGULAR.split())), True: tuple(map(int, _BOLD.split()))}
assert all(len(w) == 0x7F - FIRST for w in WIDTHS.values())


def printable(text: str) -> bool:
    """Whether the card's fonts have every character of `text` (printable ASCII)."""
    return all(FIRST <= ord(c) < 0x7F for c in text)


def width(text: str, size: float, bold: bool = False) -> float:
    """The advance width of `text` at `size`, in the size's unit (points in, points out)."""
    table = WIDTHS[bold]
    return sum(table[ord(c) - FIRST] for c in text) * size / 1000
