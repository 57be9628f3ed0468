"""Tokens and trust: pure functions from QR text and a trust list to a verdict; no I/O."""
