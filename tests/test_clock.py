"""ClockSync: the kernel's NTP state and systemd-timesyncd's flag, read under a root folder tests can point at a tree."""

from firmware.clock import TIME_ERROR, TIMESYNCD_FLAG, ClockSync, kernel_state

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


def test_an_unavailable_adjtimex_counts_as_unsynchronised(tmp_path):
    assert ClockSync(root=tmp_path, kernel=lambda: None).trusted() is False


def test_a_device_with_an_rtc_is_trusted_but_still_reports_what_it_sees(tmp_path):
    clock = ClockSync(require=False, root=tmp_path, kernel=lambda: TIME_ERROR)
    assert clock.trusted() is True and clock.synchronised() is False
