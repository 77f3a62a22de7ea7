"""keepalived's scheduling settings for the BFD process: bfd_priority, bfd_rt_priority
(with bfd_rlimit_rttime), bfd_no_swap, bfd_cpu_affinity.

As keepalived's ``set_process_priorities`` (lib/process.c) applies them, in its
order: real-time scheduling, or else the nice value; then the memory lock; then
the CPU affinity.  Each that cannot be applied (no privilege, a CPU the host
lacks) is said in one line and the process runs without it.

Differences from keepalived 2.2.7:

- SCHED_FIFO rather than SCHED_RR: the process is one thread that sleeps
  between packets, so round-robin's time slice among equals never matters,
  and FIFO is what the BFD issue asks for; SCHED_RESET_ON_FORK as keepalived,
  so scripts and helpers never inherit it.
- RLIMIT_RTTIME is set as keepalived sets it (soft half of the hard limit, for
  SIGXCPU warnings first; the hard limit kills a loop that never blocks, so a
  runaway real-time process cannot hang the host), but its default is 100 ms,
  not keepalived's 10 ms (spec.RLIMIT_RTTIME_DEFAULT): CPython's own exit took
  more than 10 ms of CPU without a blocking call and was killed, and a kill
  restarts the process, which takes every session down.  An explicit
  ``bfd_rlimit_rttime`` is used as given.
- Work of unbounded length never runs under the limit: the configuration is
  read at a reload by a forked child (SCHED_RESET_ON_FORK gives it ordinary
  scheduling), and the process leaves real-time scheduling before it exits
  (``leave_realtime``).  What stays in the real-time loop grows with the number
  of sessions only (a snapshot: some microseconds a session); it is not moved
  to ordinary scheduling for the while, since a CPU hog could then hold the
  loop back for a whole time slice, the false Down the real-time priority is
  there to prevent.
- mlockall with MCL_FUTURE only where growth cannot fail: with CAP_IPC_LOCK or
  an unlimited RLIMIT_MEMLOCK.  Otherwise a later allocation over the limit
  would fail inside Python (MemoryError), which keepalived's C heap does not
  risk in the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import resource
from dataclasses import dataclass, field
from typing import Any

from .spec import ProcessSettings

log = logging.getLogger("keepalived_py")

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
CAP_IPC_LOCK = 14


@dataclass
class Applied:
    """What was applied, for the snapshot (``describe``) and the tests."""

    nice: int | None = None
    rt_priority: int | None = None
    rlimit_rttime_us: int | None = None
    locked: bool = False
    cpu_affinity: tuple[int, ...] = ()
    refused: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"nice": self.nice, "rt_priority": self.rt_priority,
                "rlimit_rttime_us": self.rlimit_rttime_us, "locked_in_memory": self.locked,
                "cpu_affinity": list(self.cpu_affinity), "not_applied": list(self.refused)}


_rt_priority: int | None = None        # what _realtime() applied to this process


def apply(settings: ProcessSettings) -> Applied:
    done = Applied()
    if settings.rt_priority:
        _realtime(settings, done)
    elif settings.priority:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, settings.priority)
            done.nice = settings.priority
        except OSError as err:
            _refuse(done, f"Unable to set process priority to {settings.priority} - "
                          f"{err.strerror}")
    if settings.no_swap:
        _lock_memory(done)
    if settings.cpu_affinity:
        _affinity(settings.cpu_affinity, done)
    return done


def _refuse(done: Applied, message: str) -> None:
    log.warning("%s", message)
    done.refused.append(message)


def _realtime(settings: ProcessSettings, done: Applied) -> None:
    assert settings.rt_priority is not None
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(0, policy, os.sched_param(settings.rt_priority))
    except OSError as err:
        _refuse(done, f"child process: cannot raise priority (SCHED_FIFO "
                      f"{settings.rt_priority}: {err.strerror})")
        return
    global _rt_priority
    _rt_priority = done.rt_priority = settings.rt_priority
    limit = settings.rlimit_rttime_us
    if limit:
        try:
            resource.setrlimit(resource.RLIMIT_RTTIME, (limit // 2, limit))
            done.rlimit_rttime_us = limit
        except (OSError, ValueError) as err:
            _refuse(done, f"child process cannot set realtime rlimit ({err})")


def leave_realtime() -> None:
    """Run the calling thread with ordinary scheduling (Linux applies
    sched_setscheduler to the calling thread when given pid 0)."""
    try:
        if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pass


def _has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return False


def _lock_memory(done: Applied) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and not _has_capability(CAP_IPC_LOCK):
        _refuse(done, "bfd_no_swap: not locked in memory: that needs CAP_IPC_LOCK or an "
                      f"unlimited RLIMIT_MEMLOCK (it is {soft} bytes)")
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    failed = libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0
    code = ctypes.get_errno() if failed else 0
    if failed and code == errno.EINVAL:         # MCL_ONFAULT is Linux 4.4's
        failed = libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0
        code = ctypes.get_errno() if failed else 0
    if failed:
        _refuse(done, f"Unable to lock process in memory - {os.strerror(code)}")
        return
    done.locked = True


def _affinity(cpus: tuple[int, ...], done: Applied) -> None:
    try:
        os.sched_setaffinity(0, cpus)
        done.cpu_affinity = tuple(sorted(os.sched_getaffinity(0)))
    except OSError as err:
        _refuse(done, f"unable to set cpu affinity to bfd process ({err.strerror}: CPUs "
                      f"{' '.join(map(str, cpus))})")
