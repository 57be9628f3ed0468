"""ClockSync: the kernel's NTP state and systemd-timesyncd's flag, read under a root folder tests can point at a tree."""

import sys

from firmware.clock import (CLOCK_JUMPED, CLOCK_NOT_SYNCHRONISED, CLOCK_STEPPED_BACK, KEEP_EVERY_S, SLACK_S, TIME_ERROR,
                           TIMESYNCD_FLAG, ClockGuard, ClockSync, kernel_state)
from firmware.store.marks import CLOCK, Mark

TIME_OK = 0


def test_the_kernel_state_of_this_machine_is_readable():
    # adjtimex(2) in read-only mode works unprivileged; its answer depends on this machine's NTP.
    assert kernel_state() in {0, 1, 2, 3, 4, TIME_ERROR}


def test_kernel_time_error_without_the_flag_is_unsynchronised(tmp_path):
    clock = ClockSync(root=tmp_path, kernel=lambda: TIME_ERROR)
    assert clock.synchronised() is False and clock.trusted() is False


def test_kernel_ok_is_synchronised(tmp_path):
    assert ClockSync(root=tmp_path, kernel=lambda: TIME_OK).trusted() is True


def test_timesyncd_flag_is_enough_when_the_kernel_bound_has_given_up(tmp_path):
    (tmp_path / TIMESYNCD_FLAG).parent.mkdir(parents=True)
    (tmp_path / TIMESYNCD_FLAG).touch()
    assert ClockSync(root=tmp_path, kernel=lambda: TIME_ERROR).synchronised() is True


def test_asking_builds_no_path_so_deciding_interns_no_strings(tmp_path, monkeypatch):
    # The door asks on every decision. A Path built at each call interns its parts (sys.intern), strings that die
    # with it; that churn used up the interpreter's table of interned strings, which grew by 0.9 MB resident at
    # some 4,700 decisions and was rebuilt every ~15,000 after (issue 22).
    flagged = tmp_path / "flagged"
    (flagged / TIMESYNCD_FLAG).parent.mkdir(parents=True)
    (flagged / TIMESYNCD_FLAG).touch()
    unflagged, flag = ClockSync(root=tmp_path, kernel=lambda: TIME_ERROR), ClockSync(root=flagged, kernel=lambda: None)
    interned: list[str] = []
    monkeypatch.setattr(sys, "intern", lambda s: interned.append(s) or s)
    assert [unflagged.synchronised(), flag.synchronised(), unflagged.trusted()] == [False, True, False]
    assert interned == []


def test_an_unavailable_adjtimex_counts_as_unsynchronised(tmp_path):
    assert ClockSync(root=tmp_path, kernel=lambda: None).trusted() is False


def test_a_device_with_an_rtc_is_trusted_but_still_reports_what_it_sees(tmp_path):
    clock = ClockSync(require=False, root=tmp_path, kernel=lambda: TIME_ERROR)
    assert clock.trusted() is True and clock.synchronised() is False


# --- ClockGuard: a clock the door may judge and purge on (issue 15, finding 8) -----------------------

T = 1_750_000_000


class Ticking:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def guard(tmp_path, synchronised: bool = True, require: bool = True, mono: Ticking | None = None):
    sync = ClockSync(require=require, root=tmp_path, kernel=lambda: TIME_OK if synchronised else TIME_ERROR)
    return ClockGuard(sync, Mark(tmp_path / CLOCK), mono or Ticking())


def test_an_unsynchronised_clock_is_refused_where_sync_is_required(tmp_path):
    assert guard(tmp_path, synchronised=False).problem(T) == CLOCK_NOT_SYNCHRONISED


def test_a_clock_stepped_back_past_the_mark_is_refused_until_it_passes_it_again(tmp_path):
    g = guard(tmp_path)
    assert g.problem(T) is None
    assert g.problem(T - SLACK_S) is None  # within the slack a token's window forgives
    assert g.problem(T - SLACK_S - 1) == CLOCK_STEPPED_BACK
    assert "stepped back" in g.describe(CLOCK_STEPPED_BACK) and str(g.mark.path) in g.describe(CLOCK_STEPPED_BACK)
    assert g.problem(T + 1) is None


def test_the_mark_outlives_a_restart_once_kept(tmp_path):
    g = guard(tmp_path)
    assert g.problem(T) is None
    g.keep()
    assert guard(tmp_path).problem(T - 3600) == CLOCK_STEPPED_BACK


def test_the_mark_is_written_only_once_it_has_moved_on_a_minute(tmp_path):
    g = guard(tmp_path)
    g.problem(T)
    g.keep()
    g.problem(T + KEEP_EVERY_S - 1)
    g.keep()
    assert Mark(tmp_path / CLOCK).read() == T
    g.problem(T + KEEP_EVERY_S)
    g.keep()
    assert Mark(tmp_path / CLOCK).read() == T + KEEP_EVERY_S


def test_a_forward_jump_while_unsynchronised_holds_until_the_clock_is_synchronised(tmp_path):
    mono = Ticking()
    flag = tmp_path / TIMESYNCD_FLAG
    g = guard(tmp_path, synchronised=False, require=False, mono=mono)  # a device with an RTC
    assert g.problem(T) is None
    mono.t += 10
    assert g.problem(T + 10 + SLACK_S) is None  # drift within the slack
    mono.t += 10
    assert g.problem(T + 40 * 86400) == CLOCK_JUMPED  # 40 days in 10 s: a purge now would wipe the card
    mono.t += 10
    assert g.problem(T + 40 * 86400 + 10) == CLOCK_JUMPED  # and it holds
    assert g.mark.read() == 0 and g.high == T + 10 + SLACK_S  # the jump never raised the mark
    flag.parent.mkdir(parents=True)
    flag.touch()  # NTP has spoken
    assert g.problem(T + 40 * 86400 + 20) is None


def test_a_synchronised_clock_may_step_forward(tmp_path):
    mono = Ticking()
    g = guard(tmp_path, mono=mono)
    assert g.problem(T) is None
    mono.t += 1
    assert g.problem(T + 86400) is None  # NTP corrects a Pi that booted with yesterday's time


def test_a_mark_file_that_does_not_hold_a_count_reads_as_nothing_known(tmp_path, caplog):
    (tmp_path / CLOCK).write_text("garbage\n")
    assert Mark(tmp_path / CLOCK).read() == 0 and "does not hold a count" in caplog.text
    Mark(tmp_path / CLOCK).raise_to(5)
    Mark(tmp_path / CLOCK).raise_to(3)
    assert Mark(tmp_path / CLOCK).read() == 5
