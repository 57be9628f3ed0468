"""A card's lookup number: 12 digits printed on the card, derived from its card id (cti), Luhn-checked.

The register maps the number to the card id, so that staff can revoke a lost
card by what is printed on it (or what the visitor reads out over the phone)
without the card in hand, and without the card id ever being printed or typed.
11 digits come from a hash of the card id (about 10^11 numbers: a centre's
few thousand cards collide with odds near 10^-5, and `card issue` draws a new
id if the register already has the number); the 12th is a Luhn check digit, so
every mistyped single digit and every swap of two adjacent digits (but 09/90)
is refused instead of revoking someone else's card.
"""

from __future__ import annotations

import hashlib
import re

from firmware.errors import QrgateError

DIGITS = 12
_DOMAIN = b"qrgate card number\0"


class NumberError(QrgateError, ValueError):
    """A lookup number that is not 12 digits or whose check digit is wrong."""


def of_card(cti: bytes) -> str:
    """The 12 digits of the card with this card id."""
    body = int.from_bytes(hashlib.sha256(_DOMAIN + cti).digest()[:8], "big") % 10 ** (DIGITS - 1)
    digits = f"{body:0{DIGITS - 1}d}"
    return digits + luhn_digit(digits)


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to `digits`: from the right, every other digit doubled (less 9 past 9)."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 0:  # the rightmost digit of the body sits next to the check digit: it is doubled
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str(-total % 10)


def display(number: str) -> str:
    """As printed and typed: "1234 5678 9012"."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def parse(text: str) -> str:
    """The 12 digits of a number as someone typed it ("1234 5678 9012", "1234-5678-9012", "123456789012")."""
    compact = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(rf"[0-9]{{{DIGITS}}}", compact):
        raise NumberError(f"a card number is {DIGITS} digits like 1234 5678 9012, not {text!r}")
    if luhn_digit(compact[:-1]) != compact[-1]:
        raise NumberError(f"{text!r} is not a card number: its check digit is wrong (a digit mistyped or two "
                          "swapped?)")
    return compact
