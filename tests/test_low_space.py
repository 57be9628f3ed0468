"""Amber before the card is full: free space below device.min_free_mb is the fault storage_low."""

import shutil

from firmware.housekeeping import low_space
from firmware.faults import Faults


def test_low_space_is_a_fault_that_clears_when_space_returns(tmp_path):
    faults = Faults()
    free_mb = shutil.disk_usage(tmp_path).free // 2**20  # others may write meanwhile: a GiB either side
    low_space(tmp_path, free_mb + 1024, faults)
    assert "MiB free on the card" in faults.active()["storage_low"]
    low_space(tmp_path, max(free_mb - 1024, 0), faults)
    assert "storage_low" not in faults.active()


def test_a_card_that_cannot_be_read_is_a_fault_too(tmp_path):
    faults = Faults()
    low_space(tmp_path / "gone", 1, faults)
    assert faults.active()["storage_low"].startswith("cannot read free space")
