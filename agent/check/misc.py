"""MISC_CHECK: one run of the script (check_misc.c).

The script runs as keepalived runs it (host/scripts.py: its own process group,
its user, no shell unless configured, SIGTERM if we die).  Its exit status is
the verdict:

- 0: success (with ``misc_dynamic`` too: the real server keeps its configured
  weight, ``weight`` None);
- 2..255 with ``misc_dynamic``: success with weight status - 2 (0..253);
- 1, or 2..255 without ``misc_dynamic``: failure;
- killed by a signal: failure;
- still running after misc_timeout: the group gets SIGTERM, SIGKILL 2 s later;
  failure.

Deliberate differences from keepalived 2.2.7:

- a timed-out script is a failure whatever it does next: keepalived takes the
  exit status of a script that catches the SIGTERM and exits, so one that
  exits 0 then counts as a success;
- once a timed-out script is gone, whatever is left of its group gets SIGKILL
  (keepalived does so only when the script died of the SIGTERM itself);
- a script that cannot be started (removed, no longer executable) is a
  failure: keepalived's child exits 0 then, which counts as a success.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Mapping

from ..host.scripts import (
    KEEPALIVED_UMASK,
    TERM_GRACE,
    ScriptCommand,
    ScriptProcess,
    exec_argv,
)
from .connect import describe_error
from .probe import ProbeResult, seconds


def misc_result(status: int | None, dynamic: bool, timeout: float = 0.0) -> ProbeResult:
    """The verdict on a finished run: ``status`` is the exit status (negative: the
    signal that killed it), None when it timed out."""
    if status is None:
        return ProbeResult(False, f"timeout after {seconds(timeout)}")
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "an unknown signal"
        return ProbeResult(False, f"killed by signal {-status} ({name})")
    if status == 0:
        return ProbeResult(True, detail="exit status 0")
    if dynamic and 2 <= status <= 255:
        return ProbeResult(True, weight=status - 2, detail=f"exit status {status}")
    return ProbeResult(False, f"exited with status {status}")


_cleanups: set[asyncio.Task[None]] = set()


async def misc_probe(command: ScriptCommand, timeout: float, dynamic: bool = False, *,
                     env: Mapping[str, str] | None = None,
                     umask: int = KEEPALIVED_UMASK) -> ProbeResult:
    """Run a MISC_CHECK script once.  ``timeout``: misc_timeout, or the virtual
    server's delay_loop when it is not set (the caller resolves it)."""
    try:
        process = ScriptProcess(exec_argv(command.argv, command.shell), command.user,
                                env=dict(env) if env is not None else None, umask=umask)
    except (OSError, subprocess.SubprocessError) as err:
        why = describe_error(err) if isinstance(err, OSError) else str(err)
        return ProbeResult(False, f"cannot run {command.argv[0]}: {why}")
    try:
        status = await process.wait(timeout)
    except asyncio.CancelledError:
        task = asyncio.get_running_loop().create_task(_stop(process))
        _cleanups.add(task)
        task.add_done_callback(_cleanups.discard)
        raise
    if status is None:
        await _stop(process)
    return misc_result(status, dynamic, timeout)


async def _stop(process: ScriptProcess) -> None:
    """SIGTERM to the group, SIGKILL to the group when the script is gone or
    TERM_GRACE later, whichever comes first."""
    process.kill_group(signal.SIGTERM)
    if await process.wait(TERM_GRACE) is None:
        process.kill_group(signal.SIGKILL)
        await process.wait()
    else:
        process.kill_group(signal.SIGKILL)      # whatever it left behind
