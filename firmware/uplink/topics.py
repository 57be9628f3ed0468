"""The topics of DESIGN.md."""

import re

TRUSTLIST = "qrgate/v1/trustlist"
# A venue or device id: one topic level (no "/", "+" or "#"), and part of a certificate's CN "venue:device".
ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def visits(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/visits"


def status(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/status"
