"""The BFD process: keepalived's ``bfd_instance`` sessions, on a loop built for timing.

The parent (agent/core/supervisor.py) starts it as its declaration
(``child.py``) says.  It runs no asyncio: ``runner.Runner`` is a select loop
on absolute monotonic deadlines, speaking the same line to the parent as the
other children (``core/line.py``).  Start-up, in order:

1. the configuration read and resolved (``spec.build_checked``, not strict:
   keepalived's errors about an instance drop that instance, as keepalived
   runs without it; what cannot run at all stops the process, EXIT_CONFIG);
2. the receivers opened and the sessions made (their discriminators are new:
   a restarted process cannot resume its sessions, the peers see them go Down
   and come back);
3. the whole ``bfd.session`` state published, the pid file written;
4. what start-up made frozen out of the collector's sight (``gc.freeze``) and
   automatic collection stopped (the runner collects at quiet moments);
5. global_defs' bfd_priority / bfd_rt_priority / bfd_no_swap / bfd_cpu_affinity
   applied (``realtime.py``), after the start-up work so that it does not run
   under the real-time CPU limit;
6. ``ready``, and the loop.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.child_process import child_main
from ..core.daemon import EXIT_CONFIG, EXIT_PROGRAM_ERROR, ConfigRefused, read_checked
from ..core.line import LineChannel
from ..core.paths import AgentKey, write_atomic, write_pid_file
from . import dumps, realtime
from .runner import Runner, monotonic_us
from .sessions import SessionTable, TransportError
from .spec import BfdConfig, BuildError, build_checked

log = logging.getLogger("keepalived_py")

IDENT = "Keepalived_bfd"


def read_config(path: str, config_id: str, strict: bool) -> BfdConfig:
    result = read_checked(path, config_id, strict)
    try:
        return build_checked(result.root, strict=strict)
    except BuildError as err:
        raise ConfigRefused(str(err).split("; ")) from None


def main(argv: Sequence[str] | None = None) -> int:
    return child_main("keepalived-py BFD process", IDENT, argv, lambda parser: None, _start)


def _start(args: argparse.Namespace, hello: dict[str, Any]) -> int:
    key = AgentKey(args.namespace, args.instance)
    try:
        config = read_config(args.path, args.config_id, strict=False)
    except ConfigRefused as refused:
        refused.log("Stopping: the configuration cannot be run")
        return EXIT_CONFIG
    log.info("Configuration file %s", args.path)
    for line in config.errors:
        log.error("%s", line)
    table = SessionTable()
    try:
        table.apply(config, monotonic_us())
    except TransportError as err:
        # not a permanent exit: the parent restarts us with its back-off, and the
        # port may be free by then (another BFD daemon stopping)
        log.error("Stopping: %s", err.strerror)
        return EXIT_PROGRAM_ERROR
    line = LineChannel(socket.socket(fileno=args.ipc_fd)) if args.ipc_fd is not None else None

    def dump(kind: str, snap: dict[str, Any]) -> str:
        path = dumps.dump_path(kind, key)
        write_atomic(path, dumps.data_dump(snap) if kind == "data" else dumps.json_dump(snap))
        return str(path)

    process: dict[str, Any] = {}
    runner = Runner(table, config, line=line, dump=dump, process=process,
                    load=lambda: read_config(args.path, args.config_id, strict=True))
    runner.publish_all()
    if args.pid_file:
        write_pid_file(args.pid_file)
    gc.collect()
    gc.freeze()
    gc.disable()
    process.update(realtime.apply(config.settings).describe())
    log.info("Startup complete: %d BFD session%s", len(table.entries),
             "" if len(table.entries) == 1 else "s")
    runner.ready()
    try:
        code = runner.run()
    finally:
        if args.pid_file:
            Path(args.pid_file).unlink(missing_ok=True)
    log.info("Stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
