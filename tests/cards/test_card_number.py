"""A card's lookup number: derived from its card id as documented, and a mistyped one is refused, not looked up."""

from __future__ import annotations

import hashlib

import pytest

from lab.cards import number

SAMPLES = [bytes(16), bytes(range(16)), b"\xff" * 16, hashlib.sha256(b"a card").digest()[:16]]


def textbook_luhn_valid(digits: str) -> bool:
    """Luhn as usually stated: from the right, double every second digit, add the digits of each; a multiple of 10."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n // 10 + n % 10
    return total % 10 == 0


@pytest.mark.parametrize("cti", SAMPLES)
def test_the_number_is_eleven_digits_of_the_card_ids_hash_and_a_luhn_digit(cti):
    n = number.of_card(cti)
    body = int.from_bytes(hashlib.sha256(b"qrgate card number\0" + cti).digest()[:8], "big") % 10**11
    assert len(n) == 12 and n[:11] == f"{body:011d}" and textbook_luhn_valid(n)
    assert number.parse(n) == n


def test_known_luhn_check_digits():
    assert number.luhn_digit("7992739871") == "3"  # the usual worked example
    assert number.luhn_digit("0") == "0" and number.luhn_digit("1") == "8"


@pytest.mark.parametrize("cti", SAMPLES)
def test_every_single_digit_error_is_refused(cti):
    n = number.of_card(cti)
    for i in range(12):
        for d in "0123456789":
            if d != n[i]:
                with pytest.raises(number.NumberError, match="check digit"):
                    number.parse(n[:i] + d + n[i + 1:])


@pytest.mark.parametrize("cti", SAMPLES)
def test_every_adjacent_transposition_is_refused_but_09_and_90(cti):
    n = number.of_card(cti)
    for i in range(11):
        a, b = n[i], n[i + 1]
        swapped = n[:i] + b + a + n[i + 2:]
        if a == b:
            continue
        if {a, b} == {"0", "9"}:  # Luhn's one blind spot: 0 doubled is 0, 9 doubled is 9 (18 -> 9)
            assert number.parse(swapped) == swapped
            continue
        with pytest.raises(number.NumberError):
            number.parse(swapped)


def test_the_number_is_printed_and_typed_in_groups_of_four():
    n = number.of_card(SAMPLES[1])
    shown = number.display(n)
    assert shown == f"{n[:4]} {n[4:8]} {n[8:]}"
    for typed in (shown, shown.replace(" ", "-"), f"  {shown} ", n, f"{n[:4]} - {n[4:8]}-{n[8:]}"):
        assert number.parse(typed) == n


@pytest.mark.parametrize("typed", ["", "1234 5678 901", "1234 5678 90123", "1234.5678.9012", "abcd efgh ijkl",
                                   "١٢٣٤٥٦٧٨٩٠١٢"])
def test_anything_but_twelve_digits_is_a_clear_error(typed):
    with pytest.raises(number.NumberError, match="12 digits"):
        number.parse(typed)
