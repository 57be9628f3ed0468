"""A full SD card: the visit that cannot be stored gets the fault, never green; the rest survives; scanning recovers."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import changes, load, write_frames
from firmware import app


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, as a small SD card would be: mounted by the test, which needs root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "card"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write until the filesystem says it is full."""
    with open(path, "wb", buffering=0) as f:  # unbuffered: nothing left over to fail again at close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_card_answers_fault_keeps_what_it_had_and_recovers(tmp_path, world, pins, small_disk):
    state = small_disk / "state"
    frames = write_frames(tmp_path / "frames", [world.mint(ttl=300) for _ in range(3)])
    cfg = load(tmp_path, world.config_toml(state, frames))
    filler = small_disk / "filler"
    decisions: list = []

    def decided(d) -> None:  # first visitor stored; then the card fills; then space returns
        decisions.append((d.verdict, d.reason))
        if len(decisions) == 1:
            fill(filler)
        elif len(decisions) == 2:
            filler.unlink()

    app.run(cfg, on_decision=decided, pin_factory=pins)
    assert decisions == [("accepted", None), ("fault", "storage_failed"), ("accepted", None)]
    assert changes(pins.log, "GPIO17") == [1.0, 0.0, 1.0, 0.0]  # green twice, never for the second visitor
    assert changes(pins.log, "GPIO22")[:1] == [1.0]  # amber while the card was full
    db = sqlite3.connect(state / "visits.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 2
    finally:
        db.close()
