"""Times as a technician, a custodian and an authority read them: UTC, ISO 8601, to the second, with a Z."""

from __future__ import annotations

import datetime as dt


def iso(t: float | dt.datetime) -> str:
    """Unix seconds or an aware datetime, e.g. 2026-12-02T01:39:11Z."""
    if not isinstance(t, dt.datetime):
        t = dt.datetime.fromtimestamp(t, dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
