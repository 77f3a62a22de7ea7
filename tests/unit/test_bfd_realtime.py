"""bfd_priority, bfd_rt_priority (+ bfd_rlimit_rttime), bfd_no_swap and bfd_cpu_affinity,
each applied in a throw-away process (they are the whole process's settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.geteuid() == 0


def applied(settings: str, probe: str = "{}") -> dict:
    """Apply ``ProcessSettings(settings)`` in a child Python; its Applied and ``probe``."""
    code = textwrap.dedent(f"""
        import json, os, resource
        from keepalived_py.bfd import realtime
        from keepalived_py.bfd.spec import ProcessSettings
        done = realtime.apply(ProcessSettings({settings}))
        probe = {probe}
        realtime.leave_realtime()   # before the work of printing and exiting
        print(json.dumps({{"applied": done.describe(), "probe": probe}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def test_nice_and_cpu_affinity() -> None:
    cpu = min(os.sched_getaffinity(0))
    got = applied(f"priority=5, cpu_affinity=({cpu},)",
                  '{"nice": os.getpriority(os.PRIO_PROCESS, 0), '
                  '"cpus": sorted(os.sched_getaffinity(0))}')
    assert got["probe"] == {"nice": 5, "cpus": [cpu]}
    assert got["applied"]["nice"] == 5 and got["applied"]["cpu_affinity"] == [cpu]
    assert got["applied"]["not_applied"] == []


def test_a_cpu_the_host_lacks_is_said_and_skipped() -> None:
    got = applied("cpu_affinity=(4095,)")
    assert got["applied"]["cpu_affinity"] == []
    assert "unable to set cpu affinity to bfd process" in got["applied"]["not_applied"][0]


@pytest.mark.skipif(not ROOT, reason="SCHED_FIFO and mlockall need root")
def test_sched_fifo_with_the_rttime_guard_and_memory_locked() -> None:
    got = applied("rt_priority=10, rlimit_rttime_us=50000, no_swap=True, priority=5",
                  '{"policy": os.sched_getscheduler(0) & 0xff, '
                  '"param": os.sched_getparam(0).sched_priority, '
                  '"rttime": resource.getrlimit(resource.RLIMIT_RTTIME), '
                  '"nice": os.getpriority(os.PRIO_PROCESS, 0), '
                  '"locked": [l for l in open("/proc/self/status") '
                  'if l.startswith("VmLck")][0].split()[1] != "0"}')
    assert got["probe"]["policy"] == os.SCHED_FIFO and got["probe"]["param"] == 10
    # keepalived's soft limit: half, for a SIGXCPU warning before the kill
    assert got["probe"]["rttime"] == [25000, 50000]
    assert got["probe"]["nice"] == 0            # real-time: the nice value is not applied
    assert got["applied"]["rt_priority"] == 10 and got["applied"]["locked_in_memory"] is True
    assert got["probe"]["locked"]


def test_leaving_realtime_in_a_thread() -> None:
    if not ROOT:
        pytest.skip("SCHED_FIFO needs root")
    code = textwrap.dedent("""
        import os, threading
        from keepalived_py.bfd import realtime
        from keepalived_py.bfd.spec import ProcessSettings
        realtime.apply(ProcessSettings(rt_priority=5))
        seen = []
        def work():
            realtime.leave_realtime()
            seen.append(os.sched_getscheduler(0))
        t = threading.Thread(target=work); t.start(); t.join()
        policy = os.sched_getscheduler(0) & 0xff
        realtime.leave_realtime()
        print(seen[0], policy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == [str(os.SCHED_OTHER), str(os.SCHED_FIFO)]
