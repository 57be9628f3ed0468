"""store.statefiles.write_atomic in a folder a compromised daemon user can write to (issue 15, finding 5)."""

from __future__ import annotations

import os
import stat

import pytest

from firmware.store.statefiles import write_atomic


@pytest.fixture
def victim(tmp_path):
    """A file elsewhere that root's write must never reach: it stands for /etc/shadow."""
    path = tmp_path / "elsewhere" / "precious"
    path.parent.mkdir()
    path.write_bytes(b"do not touch")
    return path


def untouched(victim) -> bool:
    return victim.read_bytes() == b"do not touch"


def test_a_symlink_planted_at_the_old_predictable_temporary_name_is_never_followed(tmp_path, victim):
    state = tmp_path / "state"
    state.mkdir()
    (state / ".trustlist.cose.tmp").symlink_to(victim)
    write_atomic(state / "trustlist.cose", b"new list")
    assert untouched(victim)
    assert (state / "trustlist.cose").read_bytes() == b"new list"


def test_a_symlink_at_the_final_name_is_replaced_not_written_through(tmp_path, victim):
    state = tmp_path / "state"
    state.mkdir()
    (state / "trustlist.cose").symlink_to(victim)
    write_atomic(state / "trustlist.cose", b"new list", mode=0o600)
    assert untouched(victim)
    st = os.lstat(state / "trustlist.cose")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_the_temporary_name_is_never_the_same_twice(tmp_path, monkeypatch):
    names = []
    real_open = os.open

    def spying(name, flags, *args, **kw):
        if kw.get("dir_fd") is not None:
            names.append(name)
            assert flags & os.O_EXCL and flags & os.O_NOFOLLOW
        return real_open(name, flags, *args, **kw)

    monkeypatch.setattr(os, "open", spying)
    for _ in range(3):
        write_atomic(tmp_path / "f", b"x")
    assert len(names) == 3 and len(set(names)) == 3


def test_a_symlinked_folder_is_refused(tmp_path, victim):
    (tmp_path / "state").symlink_to(victim.parent)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "state" / "precious", b"overwritten")
    assert untouched(victim)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    (tmp_path / "status.json").mkdir()  # what would be replaced is a folder: the rename fails
    with pytest.raises(OSError):
        write_atomic(tmp_path / "status.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_the_mode_is_exact_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "status.json", b"{}", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o644
