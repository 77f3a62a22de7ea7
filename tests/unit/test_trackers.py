"""The tracked objects' own state machines against keepalived 2.2.7's rules.

Sources: vrrp/vrrp_scheduler.c (vrrp_script_child_thread), vrrp/vrrp.c
(clear_diff_script), trackers/track_file.c (process_track_file,
track_file_end_handler), core/track_process.c (check_process*, check_params).
The rise/fall sequences were also watched on keepalived 2.2.7 itself (its
SIGUSR1 dump's "Result =" line, rise 3 fall 2): 4 4 3 0 while failing, then
0 1 2 4 while succeeding.
"""

from __future__ import annotations

import ctypes
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keepalived_py.config import load
from keepalived_py.config.model import Node
from keepalived_py.host.procevents import Needs, ProcEvent, listen_message, parse_event
from keepalived_py.trackers import (
    DONE,
    INIT,
    INIT_FAILED,
    INIT_RELOAD,
    UNLIMITED,
    FileConfig,
    FileValue,
    ProcessInfo,
    ProcessQuorum,
    ProcessSpec,
    ScriptConfig,
    ScriptState,
    file_config,
    process_spec,
    script_config,
    strtol,
)
from keepalived_py.vrrp.tracking_io import tracked_names

OK, FAIL = 0, 1


def feed(state: ScriptState, results: list[int | None]) -> list[tuple[int, bool | None]]:
    """(counter, status) after each result."""
    out = []
    for n, exit_status in enumerate(results):
        state.result(float(n), exit_status)
        out.append((state.counter, state.status))
    return out


def node(text: str, kind: str, name: str) -> Node:
    root = load("t.conf", text=text, interfaces={"eth0"}).root
    return next(b for b in root.blocks(kind) if b.head == name)


# -- vrrp_script ----------------------------------------------------------------


class TestScriptCounter:
    def test_starts_undecided_one_below_rise(self) -> None:
        state = ScriptState(ScriptConfig(rise=3, fall=2))
        assert (state.counter, state.status, state.init_state) == (2, None, INIT)

    @pytest.mark.parametrize("first, status", [(OK, True), (FAIL, False), (None, False),
                                               (-9, False)])
    def test_one_result_decides_from_init(self, first: int | None, status: bool) -> None:
        state = ScriptState(ScriptConfig(rise=3, fall=2))
        assert state.result(0.0, first) is True
        assert state.status is status and state.init_state == DONE

    def test_rise_3_fall_2_as_keepalived_dumps_it(self) -> None:
        state = ScriptState(ScriptConfig(rise=3, fall=2))
        assert feed(state, [OK, OK]) == [(4, True), (4, True)]
        assert feed(state, [FAIL, FAIL, FAIL]) == [(3, True), (0, False), (0, False)]
        assert feed(state, [OK, OK, OK, OK]) == [(1, False), (2, False), (4, True), (4, True)]

    def test_a_success_between_failures_restarts_the_fall(self) -> None:
        state = ScriptState(ScriptConfig(rise=1, fall=3))
        feed(state, [OK])
        assert feed(state, [FAIL, FAIL, OK, FAIL, FAIL]) == [
            (2, True), (1, True), (3, True), (2, True), (1, True)]
        assert feed(state, [FAIL]) == [(0, False)]

    def test_a_failure_between_successes_restarts_the_rise(self) -> None:
        state = ScriptState(ScriptConfig(rise=3, fall=1))
        feed(state, [FAIL])
        assert feed(state, [OK, OK, FAIL, OK, OK]) == [
            (1, False), (2, False), (0, False), (1, False), (2, False)]
        assert feed(state, [OK]) == [(3, True)]

    @pytest.mark.parametrize("exit_status", [1, 2, 127, 255, -15, -9, None])
    def test_every_non_zero_outcome_is_a_failure(self, exit_status: int | None) -> None:
        state = ScriptState(ScriptConfig())
        feed(state, [OK])
        assert state.result(1.0, exit_status) is True
        assert state.status is False

    def test_changed_only_on_a_flip(self) -> None:
        state = ScriptState(ScriptConfig(rise=2, fall=2))
        flips = [state.result(float(n), r) for n, r in enumerate([OK, OK, FAIL, FAIL, FAIL, OK])]
        assert flips == [True, False, False, True, False, False]

    def test_init_fail_starts_bad_and_needs_rise_successes(self) -> None:
        state = ScriptState(ScriptConfig(rise=2, fall=1, init_fail=True))
        assert (state.counter, state.status, state.init_state) == (0, False, INIT_FAILED)
        assert state.result(0.0, FAIL) is False         # still BAD: no report
        assert state.result(1.0, OK) is False
        assert state.result(2.0, OK) is True and state.status is True

    def test_last_exit_status_kept_for_the_now_returning_log(self) -> None:
        state = ScriptState(ScriptConfig())
        feed(state, [3, None, -9])
        assert state.last_status == 3


class TestScriptSchedule:
    def test_first_run_at_once_then_every_interval_after_the_start(self) -> None:
        state = ScriptState(ScriptConfig(interval=5))
        assert state.next_run_at(100.0) == 100.0
        assert state.begin(100.0) is True and state.running
        state.result(103.5, OK)                 # a slow run does not push the next one
        assert state.next_run_at(103.5) == 105.0

    def test_a_tick_while_still_running_is_skipped(self) -> None:
        state = ScriptState(ScriptConfig(interval=1, timeout=3))
        assert state.begin(0.0) is True
        assert state.begin(1.0) is False        # keepalived 2.3+ skips (2.2.7 ran a 2nd copy)
        assert state.next_run_at(1.0) == 2.0
        state.result(2.5, None)
        assert state.begin(3.0) is True

    def test_timeout_defaults_to_the_interval(self) -> None:
        assert ScriptConfig(interval=4).run_timeout == 4
        assert ScriptConfig(interval=4, timeout=9).run_timeout == 9


class TestScriptReload:
    """vrrp.c, clear_diff_script: the old result mapped onto the new rise/fall."""

    def reloaded(self, old: ScriptState, rise: int, fall: int) -> ScriptState:
        new = ScriptState(ScriptConfig(rise=rise, fall=fall), reloading=True)
        new.carry_over(old)
        return new

    def test_a_new_script_waits_in_init_reload(self) -> None:
        state = ScriptState(ScriptConfig(rise=2), reloading=True)
        assert (state.init_state, state.counter, state.status) == (INIT_RELOAD, 1, None)

    def test_still_in_init_stays_in_init(self) -> None:
        new = self.reloaded(ScriptState(ScriptConfig(rise=3, fall=2)), 5, 1)
        assert (new.init_state, new.counter) == (INIT, 4)

    def test_good_at_the_top_stays_at_the_top(self) -> None:
        old = ScriptState(ScriptConfig(rise=2, fall=2))
        feed(old, [OK])
        new = self.reloaded(old, 4, 5)
        assert (new.counter, new.status, new.init_state) == (8, True, DONE)

    def test_good_while_falling_keeps_its_distance_from_rise(self) -> None:
        old = ScriptState(ScriptConfig(rise=2, fall=4))
        feed(old, [OK, FAIL, FAIL])             # 5 -> 4 -> 3
        assert old.counter == 3
        assert self.reloaded(old, 1, 4).counter == 2
        assert self.reloaded(old, 1, 1).counter == 1      # capped at the new top

    def test_bad_while_rising_keeps_its_distance_from_rise(self) -> None:
        old = ScriptState(ScriptConfig(rise=4, fall=1))
        feed(old, [FAIL, OK, OK])               # 0 -> 1 -> 2
        assert self.reloaded(old, 5, 1).counter == 3
        assert self.reloaded(old, 2, 1).counter == 0
        assert self.reloaded(old, 2, 1).status is False

    def test_bad_at_zero_stays_at_zero(self) -> None:
        old = ScriptState(ScriptConfig(rise=1, fall=1))
        feed(old, [FAIL])
        new = self.reloaded(old, 3, 3)
        assert (new.counter, new.status) == (0, False)


def test_script_config_from_the_config() -> None:
    text = """vrrp_script chk {
        script "/bin/true"
        interval 3
        rise 2
        fall 4
        init_fail
    }
    vrrp_script plain {
        script "/bin/true"
    }"""
    assert script_config(node(text, "vrrp_script", "chk")) == ScriptConfig(3, None, 2, 4, True)
    plain = script_config(node(text, "vrrp_script", "plain"))
    assert plain == ScriptConfig(1, None, 1, 1, False) and plain.run_timeout == 1


# -- track_file ------------------------------------------------------------------


@pytest.mark.parametrize("content, value", [
    (None, 0), (b"", 0), (b"\n", 0), (b"1\n", 1), (b"-7\n", -7), (b"+5", 5),
    (b"  \t 12abc\n", 12), (b"abc\n", 0), (b"0x10\n", 16), (b"0X1f", 31), (b"010", 8),
    (b"08", 0), (b"0x", 0), (b"- 5", 0), (b"1\x002", 1),
    (b"2147483647", 2147483647), (b"2147483648", 2147483648),      # one past: let through
    (b"2147483649", None), (b"-2147483648", -2147483648), (b"-2147483649", None),
    (b"99999999999999999999", None), (b"-0x8000000000000000", None),
    (b" " * 126 + b"9", 9), (b" " * 127 + b"9", 0),               # only 127 bytes are read
])
def test_file_content_as_keepalived_reads_it(content: bytes | None, value: int | None) -> None:
    assert FileValue.parse(content) == value


_libc = ctypes.CDLL(None, use_errno=True)
_libc.strtol.restype = ctypes.c_long
_libc.strtol.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]


@given(st.one_of(
    st.binary(max_size=30),
    st.from_regex(rb"\A[ \t\n]*[+-]?(0[xX]?)?[0-9a-fA-F]{0,22}[^\x00]{0,3}\Z")))
def test_strtol_agrees_with_the_c_library(data: bytes) -> None:
    text = data.split(b"\0")[0]
    ctypes.set_errno(0)
    expected = _libc.strtol(text, None, 0)
    overflow = ctypes.get_errno() != 0
    assert strtol(data) == (None if overflow else expected)


def test_file_value_changes_only_on_a_new_number() -> None:
    value = FileValue()
    assert value.value == 0
    assert value.update(b"0\n") is False
    assert value.update(b"3\n") is True and value.value == 3
    assert value.update(b"3 \n") is False
    assert value.update(b"99999999999\n") is False and value.value == 3   # ignored, kept
    assert value.update(None) is True and value.value == 0             # deleted


@pytest.mark.parametrize("init, exists, regular, reloading, content", [
    (None, False, False, False, None),
    ((0, False), False, False, False, "0\n"),      # created when missing
    ((5, False), True, True, False, None),         # left alone without overwrite
    ((5, True), True, True, False, "5\n"),         # overwritten when asked
    ((5, True), True, True, True, None),           # ... but not on a reload
    ((5, True), False, False, True, "5\n"),        # a missing one is made on a reload too
    ((5, True), True, False, False, None),         # not a regular file
    ((-300, False), False, False, False, "-300\n"),
])
def test_init_file(init: tuple[int, bool] | None, exists: bool, regular: bool, reloading: bool,
                   content: str | None) -> None:
    assert FileValue.init_content(init, exists=exists, regular=regular,
                                  reloading=reloading) == content


def test_file_config_from_the_config() -> None:
    text = """track_file a {
        file /run/a
        init_file 7 overwrite
    }
    track_file b {
        file /run/b
        init_file
    }
    track_file c {
        weight 2
    }"""
    assert file_config(node(text, "track_file", "a")) == FileConfig("/run/a", (7, True))
    assert file_config(node(text, "track_file", "b")) == FileConfig("/run/b", (0, False))
    assert file_config(node(text, "track_file", "c")) is None


# -- vrrp_track_process ---------------------------------------------------------------


def proc(comm: str | None = None, *argv: str) -> ProcessInfo:
    cmdline = b"".join(a.encode() + b"\0" for a in argv) if argv else None
    return ProcessInfo(comm=comm.encode() if comm is not None else None, cmdline=cmdline)


class TestMatching:
    @pytest.mark.parametrize("spec, info, matches", [
        (ProcessSpec("sleep"), proc("sleep"), True),
        (ProcessSpec("sleep"), proc("sleepy"), False),           # exact, unlike pgrep
        (ProcessSpec("ssh"), proc("sshd"), False),
        (ProcessSpec("a-very-long-process-name"), proc("a-very-long-pro"), False),
        (ProcessSpec("/bin/x", full_command=True), proc("x", "/bin/x", "-d"), True),
        (ProcessSpec("x", full_command=True), proc("x", "/bin/x"), False),
        (ProcessSpec("x", param_match="exact", full_command=True), proc("x", "x"), True),
        (ProcessSpec("x", param_match="exact", full_command=True), proc("x", "x", "1"), False),
        (ProcessSpec("x", ("a", "b"), "exact", True), proc("x", "x", "a", "b"), True),
        (ProcessSpec("x", ("a", "b"), "exact", True), proc("x", "x", "a", "b", "c"), False),
        (ProcessSpec("x", ("a", "b"), "exact", True), proc("x", "x", "a", "bc"), False),
        (ProcessSpec("x", ("a", "b"), "partial", True), proc("x", "x", "a", "b", "c"), True),
        (ProcessSpec("x", ("a", "b"), "partial", True), proc("x", "x", "a", "bc"), False),
        (ProcessSpec("x", ("a", "b"), "partial", True), proc("x", "x", "a"), False),
        (ProcessSpec("x", ("a", "b"), "initial", True), proc("x", "x", "a", "bc"), True),
        (ProcessSpec("x", ("a", "b"), "initial", True), proc("x", "x", "a", "b", "c"), True),
        (ProcessSpec("x", ("a", "b"), "initial", True), proc("x", "x", "ab"), False),
        (ProcessSpec("x", (), "partial", True), proc("x", "x", "anything"), True),
        (ProcessSpec("x", ("",), "initial", True), proc("x", "x", "y"), True),
        (ProcessSpec("x", ("",), "initial", True), proc("x", "x"), False),
    ])
    def test_names_and_parameters(self, spec: ProcessSpec, info: ProcessInfo,
                                  matches: bool) -> None:
        assert spec.matches(info) is matches

    def test_process_spec_from_the_config(self) -> None:
        text = """
        vrrp_track_process plain {
            process sleep
        }
        vrrp_track_process params {
            process "/usr/bin/x" "a b" c
            quorum 2
            quorum_max 3
            delay 1.5
            fork_delay 0.25
        }
        vrrp_track_process ordered {
            process x
            fork_delay 0.25
            delay 1.5
            param_match initial
        }
        vrrp_track_process none {
            process x
            quorum_max 0
        }
        vrrp_track_process ignored {
            process x
            quorum 3
            quorum_max 2
        }
        vrrp_track_process ignored2 {
            process x
            quorum_max 2
            quorum 3
        }"""

        def spec(name: str) -> ProcessSpec | None:
            return process_spec(node(text, "vrrp_track_process", name))

        assert spec("plain") == ProcessSpec("sleep")
        assert spec("params") == ProcessSpec("/usr/bin/x", ("a b", "c"), "exact", True, 2, 3,
                                             fork_delay=0.25, terminate_delay=1.5)
        assert spec("ordered") == ProcessSpec("x", (), "initial", True,
                                              fork_delay=1.5, terminate_delay=1.5)
        assert spec("none") == ProcessSpec("x", quorum=0, quorum_max=0)
        assert spec("ignored") == ProcessSpec("x", quorum=3, quorum_max=UNLIMITED)
        assert spec("ignored2") == ProcessSpec("x", quorum=1, quorum_max=2)


SLEEP = proc("sleep")
OTHER = proc("other")


def quorum(**kw: object) -> ProcessQuorum:
    q = ProcessQuorum(ProcessSpec("sleep", **kw))  # type: ignore[arg-type]
    q.start({})
    return q


class TestQuorum:
    def test_initial_scan_sets_the_quorum_at_once(self) -> None:
        q = ProcessQuorum(ProcessSpec("sleep", quorum=2, fork_delay=5))
        assert q.have_quorum is False
        assert q.start({1: SLEEP, 2: OTHER, 3: SLEEP}) is True
        assert (q.count, q.have_quorum, q.deadline) == (2, True, None)

    def test_exec_and_exit_move_the_quorum_at_once(self) -> None:
        q = quorum(quorum=2)
        assert q.exec(0.0, 10, SLEEP) is False
        assert q.exec(0.0, 11, SLEEP) is True and q.have_quorum
        assert q.exec(0.0, 11, SLEEP) is False and q.count == 2     # counted once
        assert q.exit(1.0, 10) is True and not q.have_quorum
        assert q.exit(1.0, 99) is False

    def test_exec_into_another_name_stops_counting(self) -> None:
        q = quorum()
        q.exec(0.0, 10, SLEEP)
        assert q.exec(1.0, 10, OTHER) is True and q.count == 0
        assert q.exec(2.0, 10, None) is False       # gone before /proc could be read

    def test_comm_change(self) -> None:
        q = quorum()
        assert q.comm(0.0, 10, b"sleep") is True and q.count == 1
        assert q.comm(1.0, 10, b"sleep") is False
        assert q.comm(2.0, 10, b"renamed") is True and not q.have_quorum

    def test_full_command_ignores_comm_changes(self) -> None:
        q = ProcessQuorum(ProcessSpec("/bin/sleep", full_command=True))
        q.start({10: proc("sleep", "/bin/sleep", "9")})
        assert q.comm(0.0, 10, b"renamed") is False and q.have_quorum

    def test_fork_of_a_counted_process_counts(self) -> None:
        q = quorum(quorum=2)
        q.exec(0.0, 10, SLEEP)
        assert q.fork(1.0, 10, 11) is True and q.count == 2
        assert q.fork(1.0, 99, 12) is False and q.count == 2       # parent not counted

    def test_fork_delay_holds_back_a_gain_by_fork(self) -> None:
        q = quorum(quorum=2, fork_delay=0.5)
        q.exec(0.0, 10, SLEEP)
        assert q.fork(1.0, 10, 11) is False and q.deadline == 1.5
        assert q.advance(1.4) is False and not q.have_quorum
        assert q.advance(1.5) is True and q.have_quorum and q.deadline is None

    def test_fork_delay_does_not_apply_to_exec(self) -> None:
        q = quorum(quorum=2, fork_delay=0.5)
        q.exec(0.0, 10, SLEEP)
        assert q.exec(1.0, 11, SLEEP) is True and q.deadline is None

    def test_exit_during_a_fork_delay_cancels_it(self) -> None:
        q = quorum(quorum=2, fork_delay=0.5, terminate_delay=3)
        q.exec(0.0, 10, SLEEP)
        q.fork(1.0, 10, 11)
        assert q.exit(1.2, 11) is False             # no terminate delay armed either
        assert q.deadline is None and not q.have_quorum
        assert q.advance(5.0) is False

    def test_terminate_delay_holds_back_a_loss_by_exit(self) -> None:
        q = quorum(terminate_delay=2)
        q.exec(0.0, 10, SLEEP)
        assert q.exit(1.0, 10) is False and q.have_quorum and q.deadline == 3.0
        assert q.advance(3.0) is True and not q.have_quorum

    def test_a_fork_during_a_terminate_delay_cancels_it(self) -> None:
        q = quorum(quorum=2, terminate_delay=2, fork_delay=2)
        q.start({10: SLEEP, 11: SLEEP})
        q.exit(1.0, 11)
        assert q.fork(1.5, 10, 12) is False         # a restart: no bounce, no fork delay
        assert q.deadline is None and q.have_quorum

    def test_an_exec_during_a_terminate_delay_cancels_it(self) -> None:
        q = quorum(terminate_delay=2)
        q.exec(0.0, 10, SLEEP)
        q.exit(1.0, 10)
        assert q.exec(1.5, 20, SLEEP) is False and q.deadline is None and q.have_quorum

    def test_exec_away_is_not_delayed(self) -> None:
        q = quorum(terminate_delay=2)
        q.exec(0.0, 10, SLEEP)
        assert q.exec(1.0, 10, OTHER) is True and not q.have_quorum

    def test_quorum_max(self) -> None:
        q = quorum(quorum=1, quorum_max=2)
        q.exec(0.0, 10, SLEEP)
        q.exec(0.0, 11, SLEEP)
        assert q.have_quorum
        assert q.exec(1.0, 12, SLEEP) is True and not q.have_quorum
        assert q.exit(2.0, 12) is True and q.have_quorum

    def test_quorum_max_zero_means_none_may_run(self) -> None:
        q = quorum(quorum=0, quorum_max=0)
        assert q.have_quorum
        assert q.exec(0.0, 10, SLEEP) is True and not q.have_quorum
        assert q.exit(1.0, 10) is True and q.have_quorum

    def test_delays_follow_the_event_not_the_direction(self) -> None:
        """Too many by fork waits fork_delay; back in range by exit waits terminate_delay."""
        q = quorum(quorum=1, quorum_max=1, fork_delay=1, terminate_delay=2)
        q.exec(0.0, 10, SLEEP)
        assert q.fork(1.0, 10, 11) is False and q.have_quorum and q.deadline == 2.0
        assert q.advance(2.0) is True and not q.have_quorum
        assert q.exit(3.0, 11) is False and q.deadline == 5.0
        assert q.advance(5.0) is True and q.have_quorum

    def test_a_second_fork_timer_leaves_the_first_running(self) -> None:
        """keepalived keeps one handle per kind of delay: a second fork timer
        replaces the first in it, an exit cancels only that second one (and
        applies its change at once), and the first still fires and checks."""
        q = ProcessQuorum(ProcessSpec("sleep", quorum=2, quorum_max=2, fork_delay=1))
        q.start({9: SLEEP})
        assert q.fork(1.0, 9, 10) is False          # 2 == quorum: timer A, due 2.0
        assert q.fork(1.5, 9, 11) is False          # 3 == max + 1: timer B, due 2.5
        assert q.fork_delay_running
        assert q.exit(1.8, 11) is True              # back to 2 == max: B cancelled
        assert q.have_quorum and q.deadline == 2.0  # A still pending
        assert not q.fork_delay_running             # ... but no longer held
        assert q.exit(1.9, 10) is True              # below quorum: nothing to cancel
        assert not q.have_quorum
        assert q.advance(2.0) is False and q.deadline is None   # A agrees

    def test_rescan_after_lost_events(self) -> None:
        q = quorum(quorum=2, fork_delay=1, terminate_delay=2)
        q.exec(0.0, 10, SLEEP)
        assert q.rescan(5.0, {10: SLEEP, 11: SLEEP}) is False and q.deadline == 6.0
        assert q.advance(6.0) is True and q.have_quorum
        assert q.rescan(7.0, {}) is False and q.deadline == 9.0 and q.count == 0
        assert q.advance(9.0) is True and not q.have_quorum
        plain = quorum()
        assert plain.rescan(0.0, {5: SLEEP}) is True and plain.have_quorum


# -- the proc connector's messages -------------------------------------------------------


def connector_message(what: int, body: bytes, idx: int = 1, nl_type: int = 3) -> bytes:
    event = struct.pack("=IIQ", what, 0, 123) + body
    cn = struct.pack("=IIIIHH", idx, 1, 7, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), nl_type, 0, 0, 0) + cn


class TestConnectorMessages:
    def test_listen_message_layout(self) -> None:
        msg = listen_message()
        assert len(msg) == 40
        assert struct.unpack("=IHHII", msg[:16]) == (40, 3, 0, 0, 0)
        assert struct.unpack("=IIIIHHI", msg[16:]) == (1, 1, 0, 0, 4, 0, 1)

    def test_events(self) -> None:
        fork = struct.pack("=iiii", 100, 100, 200, 200)
        assert parse_event(connector_message(0x1, fork)) == ProcEvent("fork", 200, parent=100)
        assert parse_event(connector_message(0x2, struct.pack("=ii", 5, 5))) == \
            ProcEvent("exec", 5)
        comm = struct.pack("=ii", 5, 5) + b"newname\0\0\0\0\0\0\0\0\0"
        assert parse_event(connector_message(0x200, comm)) == \
            ProcEvent("comm", 5, comm=b"newname")
        exit_ = struct.pack("=iiII", 5, 5, 0, 17)
        assert parse_event(connector_message(0x80000000, exit_)) == ProcEvent("exit", 5)
        assert parse_event(connector_message(0x0, b"\0\0\0\0")) == ProcEvent("ack")

    def test_threads_and_others_are_ignored(self) -> None:
        thread = struct.pack("=iiii", 100, 100, 201, 200)
        assert parse_event(connector_message(0x1, thread)) is None
        assert parse_event(connector_message(0x80000000, struct.pack("=iiII", 6, 5, 0, 0))) \
            is None
        assert parse_event(connector_message(0x4, struct.pack("=iiII", 5, 5, 0, 0))) is None
        assert parse_event(connector_message(0x2, struct.pack("=ii", 5, 5), idx=2)) is None
        assert parse_event(connector_message(0x2, struct.pack("=ii", 5, 5), nl_type=2)) is None

    @given(st.binary(max_size=120))
    def test_never_raises_on_garbage(self, data: bytes) -> None:
        parse_event(data)

    @pytest.mark.parametrize("cut", range(0, 68))
    def test_short_messages_are_dropped(self, cut: int) -> None:
        full = connector_message(0x200, struct.pack("=ii", 5, 5) + b"x" * 16)
        assert parse_event(full[:cut]) is None

    def test_what_to_read_of_each_process(self) -> None:
        assert Needs.of([ProcessSpec("a")]) == Needs(comm=True, cmdline=0)
        both = Needs.of([ProcessSpec("a"), ProcessSpec("/bin/xy", ("ab",), "exact", True)])
        assert both == Needs(comm=True, cmdline=len(b"/bin/xy\0ab\0") + 2)


# -- which objects run ---------------------------------------------------------------


def test_tracked_names_follow_instances_and_populated_sync_groups() -> None:
    text = """
    vrrp_script s1 {
        script /bin/true
    }
    vrrp_script s2 {
        script /bin/true
    }
    vrrp_script s3 {
        script /bin/true
    }
    track_file f1 {
        file /tmp/x
    }
    vrrp_sync_group G {
        group {
            VI
        }
        track_script {
            s2
        }
    }
    vrrp_sync_group EMPTY {
        group {
            NOPE
        }
        track_script {
            s3
        }
    }
    vrrp_instance VI {
        interface eth0
        virtual_router_id 1
        priority 100
        track_script {
            s1
        }
        track_file {
            f1 weight 0
        }
        virtual_ipaddress {
            198.18.0.100
        }
    }"""
    root = load("t.conf", text=text, interfaces={"eth0"}).root
    used = tracked_names(root)
    assert used["script"] == {"s1", "s2"}
    assert used["file"] == {"f1"}
    assert used["process"] == set()
