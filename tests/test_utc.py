import datetime as dt

from firmware.utc import iso


def test_unix_seconds_and_aware_datetimes_print_as_utc_with_a_z():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1764639551.9) == "2025-12-02T01:39:11Z"  # to the second, not rounded up
    seoul = dt.datetime(2026, 12, 2, 10, 39, 11, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert iso(seoul) == "2026-12-02T01:39:11Z"
