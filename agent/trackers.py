"""The tracked objects' own states, as keepalived 2.2.7 keeps them (sans-I/O).

Three objects an instance can track, each a small state machine driven by the
adapters in ``vrrp/tracking_io`` with the time passed in:

- :class:`ScriptState`: a ``vrrp_script``'s result counter and schedule
  (vrrp_scheduler.c, vrrp_script_thread / vrrp_script_child_thread).
- :class:`FileValue`: a ``track_file``'s number (track_file.c, process_track_file).
- :class:`ProcessQuorum`: a ``vrrp_track_process``'s count of matching processes
  and its quorum, with the fork/terminate delays (track_process.c).

What the states do to an instance (weights, reverse, FAULT) is ``vrrp/track.py``'s job.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import count

from .config.model import Node

# -- vrrp_script ----------------------------------------------------------------

# keepalived's script init states (the data dump's "Init state" words)
INIT = "INIT"                   # started, no result yet
INIT_FAILED = "INIT/FAILED"     # init_fail: counted as failed until a result
INIT_RELOAD = "INIT/RELOAD"     # added by a reload, no result yet
DONE = "DONE"                   # has a result (the dump prints "unknown")


@dataclass(frozen=True)
class ScriptConfig:
    """The settings of a vrrp_script that its state depends on."""

    interval: float = 1.0
    timeout: float | None = None        # as configured; None: the interval
    rise: int = 1
    fall: int = 1
    init_fail: bool = False

    @property
    def run_timeout(self) -> float:
        return self.timeout or self.interval


class ScriptState:
    """A vrrp_script's result counter and run schedule.

    The counter runs from 0 to rise + fall - 1.  Below ``rise`` the script is
    BAD: each success counts up and the rise-th one in a row jumps to the top
    (GOOD); a failure drops it to 0.  At ``rise`` or above it is GOOD: each
    failure counts down and the fall-th one in a row drops it to 0 (BAD); a
    success jumps back to the top.  Before its first result the script sits at
    rise - 1, where one result of either kind decides it.

    A run starts at once, then every ``interval`` after the previous start
    (not after its end); a tick that finds the previous run still going skips.
    """

    def __init__(self, config: ScriptConfig, *, reloading: bool = False) -> None:
        self.config = config
        if config.init_fail:
            self.init_state = INIT_FAILED
            self.counter = 0
        else:
            self.init_state = INIT_RELOAD if reloading else INIT
            self.counter = config.rise - 1
        self.running = False
        self.last_status: int | None = None     # the last exit status, for "now returning"
        self.last_start: float | None = None
        self.last_result_at: float | None = None

    @property
    def top(self) -> int:
        return self.config.rise + self.config.fall - 1

    @property
    def status(self) -> bool | None:
        """GOOD (True), BAD (False), or None while waiting for a first result."""
        if self.init_state in (INIT, INIT_RELOAD):
            return None
        return self.counter >= self.config.rise

    def next_run_at(self, now: float) -> float:
        """When the next tick is due: ``now`` if it never ran."""
        if self.last_start is None:
            return now
        return self.last_start + self.config.interval

    def begin(self, now: float) -> bool:
        """A tick at ``now``: True if a run starts; False if the last one is still going.

        keepalived 2.2.7 logs "skipping run" and then starts a second copy
        anyway; later versions skip, which is what the message means.
        """
        self.last_start = now
        if self.running:
            return False
        self.running = True
        return True

    def result(self, now: float, exit_status: int | None) -> bool:
        """A run ended: exit status 0 is a success; any other status, a death by
        a signal (negative, as asyncio reports it) or a timeout (None) is a
        failure.  Returns True when ``status`` changed."""
        before = self.status
        self.running = False
        self.last_result_at = now
        if exit_status is not None and exit_status >= 0:
            self.last_status = exit_status
        rise = self.config.rise
        if exit_status == 0:
            if self.counter < rise - 1:
                self.counter += 1
            else:
                self.counter = self.top
        elif self.counter > rise:
            self.counter -= 1
        else:
            self.counter = 0
        self.init_state = DONE
        return self.status != before

    def carry_over(self, old: ScriptState) -> None:
        """Take over the state of the same-named script of the configuration a
        reload replaces, mapped onto this one's rise and fall (vrrp.c,
        clear_diff_script)."""
        if old.init_state == INIT:
            self.init_state = INIT
            self.counter = self.config.rise - 1
            return
        if old.init_state == INIT_RELOAD:
            self.init_state = INIT_RELOAD
            self.counter = self.config.rise - 1
            return
        rise = self.config.rise
        if old.counter < old.config.rise:
            if old.counter == 0:
                self.counter = 0
            else:
                self.counter = max(0, rise - (old.config.rise - old.counter))
        elif old.counter == old.top:
            self.counter = self.top
        else:
            self.counter = min(rise + old.counter - old.config.rise, self.top)
        self.last_status = old.last_status
        self.init_state = DONE


def script_config(node: Node) -> ScriptConfig:
    timeout = node.get("timeout")
    return ScriptConfig(interval=float(node.get("interval") or 1),
                        timeout=float(timeout) if timeout else None,
                        rise=int(node.get("rise") or 1), fall=int(node.get("fall") or 1),
                        init_fail=bool(node.get("init_fail")))


# -- track_file -----------------------------------------------------------------

READ_SIZE = 127                     # keepalived reads into a 128-byte buffer
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_C_SPACE = b" \t\n\v\f\r"


def strtol(data: bytes) -> int | None:
    """C's ``strtol(data, NULL, 0)``: leading white space, a sign, then a number in
    base 16 (``0x``), 8 (leading ``0``) or 10, up to the first other character; 0
    when there is no number; None when it overflows a 64-bit long (ERANGE)."""
    text = data.split(b"\0", 1)[0].lstrip(_C_SPACE)
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    base, digits = 10, b"0123456789"
    if text[:2].lower() == b"0x" and text[2:3] and text[2:3] in b"0123456789abcdefABCDEF":
        base, digits, text = 16, b"0123456789abcdefABCDEF", text[2:]
    elif text[:1] == b"0":
        base, digits = 8, b"01234567"
    end = 0
    while end < len(text) and text[end:end + 1] in digits:
        end += 1
    if end == 0:
        return 0
    value = sign * int(text[:end], base)
    return value if LONG_MIN <= value <= LONG_MAX else None


@dataclass(frozen=True)
class FileConfig:
    path: str
    init: tuple[int, bool] | None = None    # init_file VALUE [overwrite]


class FileValue:
    """A track_file's number: what keepalived reads from the file.

    A missing, empty or unreadable file reads 0, and so does one that is
    deleted or moved away.  Content that is not a number reads 0 too (strtol);
    a number outside [-2^31, 2^31] (sic: one above INT32_MAX is let through) is
    logged and ignored, keeping the last value.
    """

    def __init__(self) -> None:
        self.value = 0

    @staticmethod
    def parse(content: bytes | None) -> int | None:
        """The number in a file's content (None: no file); None when ignored."""
        if not content:
            return 0
        number = strtol(content[:READ_SIZE])
        if number is None or not INT32_MIN <= number <= INT32_MAX + 1:
            return None
        return number

    def update(self, content: bytes | None) -> bool:
        """The file was written or moved in (``content``), or is gone (None).
        Returns True when the value changed."""
        number = self.parse(content)
        if number is None or number == self.value:
            return False
        self.value = number
        return True

    @staticmethod
    def init_content(init: tuple[int, bool] | None, *, exists: bool, regular: bool,
                      reloading: bool) -> str | None:
        """What ``init_file VALUE [overwrite]`` writes to the file, or None to leave
        it: without overwrite only a missing file is created; with overwrite an
        existing regular file is rewritten, except on a reload."""
        if init is None:
            return None
        value, overwrite = init
        if exists and (not overwrite or not regular or reloading):
            return None
        return f"{value}\n"


def file_config(node: Node) -> FileConfig | None:
    """None for a track_file without ``file``, which keepalived ignores."""
    path = node.get("file")
    if not path:
        return None
    return FileConfig(path=str(path), init=node.get("init_file"))


# -- vrrp_track_process -----------------------------------------------------------

UNLIMITED = 2**32 - 1               # quorum_max when not set (UINT_MAX)
COMM_LEN = 15                       # the kernel's comm holds 15 characters


@dataclass(frozen=True)
class ProcessInfo:
    """What /proc says about a process: its comm and raw cmdline (NUL-separated);
    either may be None when no tracker needs it."""

    comm: bytes | None = None
    cmdline: bytes | None = None


@dataclass(frozen=True)
class ProcessSpec:
    """A vrrp_track_process's matching rule, quorum and delays."""

    name: str
    params: tuple[str, ...] = ()
    param_match: str | None = None          # None, "exact", "initial" or "partial"
    full_command: bool = False
    quorum: int = 1
    quorum_max: int = UNLIMITED
    fork_delay: float = 0.0
    terminate_delay: float = 0.0

    def matches(self, info: ProcessInfo) -> bool:
        """Exact match of the name on comm, or with ``full_command`` on argv[0]; the
        parameters are compared as keepalived does, on the raw cmdline bytes
        (track_process.c, check_params)."""
        name = os.fsencode(self.name)
        if not self.full_command:
            return info.comm == name
        if info.cmdline is None:
            return False
        argv0, _, rest = info.cmdline.partition(b"\0")
        if argv0 != name:
            return False
        return self.param_match is None or self._params_match(rest)

    def _params_match(self, actual: bytes) -> bool:
        wanted = b"".join(os.fsencode(p) + b"\0" for p in self.params)
        if self.param_match == "exact":
            return actual == wanted
        if len(actual) < len(wanted):
            return False
        if not wanted:
            return True
        if self.param_match == "partial":       # the configured parameters come first
            return actual.startswith(wanted)
        # "initial": the same, but the last one may go on (it lacks its NUL here)
        return actual.startswith(wanted[:-1])

    def in_range(self, number: int) -> bool:
        return self.quorum <= number <= self.quorum_max


def process_spec(node: Node) -> ProcessSpec | None:
    """None for a vrrp_track_process without ``process``, which keepalived drops.

    Keywords that interact are applied in file order, as keepalived's handlers
    run: ``delay`` sets both delays, ``quorum`` above ``quorum_max`` (or the
    reverse) is ignored, and ``quorum_max 0`` makes the quorum 0.
    """
    words = node.get("process")
    if not words:
        return None
    name, *params = words
    param_match = node.get("param_match")
    full_command = bool(node.get("full_command")) or bool(params) or param_match is not None
    if params and param_match is None:
        param_match = "exact"
    quorum, quorum_max = 1, UNLIMITED
    fork_delay = terminate_delay = 0.0
    for keyword in _in_file_order(node, ("quorum", "quorum_max", "delay", "fork_delay",
                                         "terminate_delay")):
        value = node.values[keyword]
        if keyword == "quorum":
            if value <= quorum_max:
                quorum = value
        elif keyword == "quorum_max":
            if not (value or quorum > 1) or value >= quorum:
                quorum_max = value
                quorum = 0 if value == 0 else max(quorum, 1)
        else:
            if keyword != "fork_delay":
                terminate_delay = float(value)
            if keyword != "terminate_delay":
                fork_delay = float(value)
    return ProcessSpec(name=name, params=tuple(params), param_match=param_match,
                       full_command=full_command, quorum=quorum, quorum_max=quorum_max,
                       fork_delay=fork_delay, terminate_delay=terminate_delay)


def _in_file_order(node: Node, keywords: Iterable[str]) -> list[str]:
    present = [k for k in keywords if k in node.values]

    def position(keyword: str) -> tuple[str, int]:
        where = node.value_where.get(keyword)
        return (where.file, where.line) if where is not None else ("", 0)

    return sorted(present, key=position)


class ProcessQuorum:
    """A vrrp_track_process: which processes count and whether it has its quorum.

    Events come from the kernel's process connector (or /proc scans): the
    caller reads /proc for the process concerned and passes what it found.
    keepalived's rules, all per tracker:

    - At start every matching process counts and the quorum is set at once.
    - A process that execs, or changes its comm, is matched again: it starts or
      stops counting, and a quorum change takes effect at once.
    - A child forked by a counted process counts (it inherits the name); if that
      takes the count to ``quorum`` or past ``quorum_max``, the change waits
      ``fork_delay`` -- unless a terminate delay is pending, which is cancelled.
    - A counted process that exits stops counting; if that takes the count below
      ``quorum`` or back to ``quorum_max``, the change waits ``terminate_delay``
      -- unless a fork delay is pending: that one is cancelled and the change
      applies at once.
    - When a delay ends, the quorum is worked out from the count of that time.

    keepalived keeps one handle on each kind of delay timer: arming a second
    one forgets the first, which still fires, and any timer firing clears the
    handle.  The timers here do the same, so the same events give the same
    answers.
    """

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.pids: set[int] = set()
        self.have_quorum = spec.in_range(0)
        self._ids = count()
        self._fork_timers: dict[int, float] = {}
        self._terminate_timers: dict[int, float] = {}
        self._fork_handle: int | None = None
        self._terminate_handle: int | None = None

    @property
    def count(self) -> int:
        return len(self.pids)

    @property
    def deadline(self) -> float | None:
        """When ``advance`` must next be called for a pending delay."""
        pending = [*self._fork_timers.values(), *self._terminate_timers.values()]
        return min(pending) if pending else None

    @property
    def fork_delay_running(self) -> bool:
        return self._fork_handle is not None

    @property
    def terminate_delay_running(self) -> bool:
        return self._terminate_handle is not None

    def start(self, processes: Mapping[int, ProcessInfo]) -> bool:
        """The initial scan of /proc."""
        self.pids = {pid for pid, info in processes.items() if self.spec.matches(info)}
        return self._set(self.spec.in_range(self.count))

    def fork(self, now: float, parent: int, child: int) -> bool:
        if parent not in self.pids or child in self.pids:
            return False
        self.pids.add(child)
        if not self._crossed_up():
            return False
        if self._cancel_terminate():
            return self._set(self.count == self.spec.quorum)
        if self.spec.fork_delay:
            self._fork_handle = self._arm(self._fork_timers, now + self.spec.fork_delay)
            return False
        return self._set(self.count == self.spec.quorum)

    def exec(self, now: float, pid: int, info: ProcessInfo | None) -> bool:
        """A process exec'd; ``info`` is None if it could not be read (then gone)."""
        if info is None:
            return False
        if self.spec.matches(info):
            return self._add(pid)
        return self._drop(pid)

    def comm(self, now: float, pid: int, comm: bytes) -> bool:
        """A process renamed itself (prctl PR_SET_NAME); only comm matching cares."""
        if self.spec.full_command:
            return False
        if os.fsencode(self.spec.name) == comm:
            return self._add(pid)
        return self._drop(pid)

    def exit(self, now: float, pid: int) -> bool:
        if pid not in self.pids:
            return False
        self.pids.discard(pid)
        if not self._crossed_down():
            return False
        if not self._cancel_fork() and self.spec.terminate_delay:
            self._terminate_handle = self._arm(self._terminate_timers,
                                               now + self.spec.terminate_delay)
            return False
        return self._set(self.count == self.spec.quorum_max)

    def rescan(self, now: float, processes: Mapping[int, ProcessInfo]) -> bool:
        """Events were lost (ENOBUFS): count again from a fresh /proc scan, drop the
        pending delays, and move to the new quorum with the delay of its direction."""
        self._fork_timers.clear()
        self._terminate_timers.clear()
        self._fork_handle = self._terminate_handle = None
        self.pids = {pid for pid, info in processes.items() if self.spec.matches(info)}
        wanted = self.spec.in_range(self.count)
        if wanted == self.have_quorum:
            return False
        delay = self.spec.fork_delay if wanted else self.spec.terminate_delay
        if delay:
            timers = self._fork_timers if wanted else self._terminate_timers
            handle = self._arm(timers, now + delay)
            if wanted:
                self._fork_handle = handle
            else:
                self._terminate_handle = handle
            return False
        return self._set(wanted)

    def advance(self, now: float) -> bool:
        """Fire the delays that are due; True when the quorum changed."""
        changed = False
        for timers in (self._fork_timers, self._terminate_timers):
            for ident, at in sorted(timers.items(), key=lambda item: item[1]):
                if at > now:
                    continue
                del timers[ident]
                if timers is self._fork_timers:
                    self._fork_handle = None
                else:
                    self._terminate_handle = None
                changed |= self._set(self.spec.in_range(self.count))
        return changed

    # -- keepalived's counting rules --

    def _add(self, pid: int) -> bool:
        # keepalived 2.2.7 counts a process a second time when it execs again
        # under a matching name; here a process counts once.
        if pid in self.pids:
            return False
        self.pids.add(pid)
        if not self._crossed_up():
            return False
        self._cancel_terminate()
        return self._set(self.count == self.spec.quorum)

    def _drop(self, pid: int) -> bool:
        if pid not in self.pids:
            return False
        self.pids.discard(pid)
        if not self._crossed_down():
            return False
        self._cancel_fork()
        return self._set(self.count == self.spec.quorum_max)

    def _crossed_up(self) -> bool:
        """One more process reached the quorum or went past the maximum."""
        return self.count in (self.spec.quorum, self.spec.quorum_max + 1)

    def _crossed_down(self) -> bool:
        """One fewer process fell below the quorum or came back to the maximum."""
        return self.count in (self.spec.quorum - 1, self.spec.quorum_max)

    def _arm(self, timers: dict[int, float], at: float) -> int:
        ident = next(self._ids)
        timers[ident] = at
        return ident

    def _cancel_fork(self) -> bool:
        if self._fork_handle is None:
            return False
        self._fork_timers.pop(self._fork_handle, None)
        self._fork_handle = None
        return True

    def _cancel_terminate(self) -> bool:
        if self._terminate_handle is None:
            return False
        self._terminate_timers.pop(self._terminate_handle, None)
        self._terminate_handle = None
        return True

    def _set(self, up: bool) -> bool:
        if up == self.have_quorum:
            return False
        self.have_quorum = up
        return True
