"""The topics of DESIGN.md."""

TRUSTLIST = "qrgate/v1/trustlist"


def visits(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/visits"


def status(venue: str, device: str) -> str:
    return f"qrgate/v1/{venue}/{device}/status"
