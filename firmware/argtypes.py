"""Argument types shared by every command line (device, lab, custodian)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a count of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
