"""Run the VRRP side of the agent in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from ..config import load
from ..config.diag import EXIT_CANNOT_RUN, Level
from ..core import sdnotify
from .build import BuildError, build_instances
from .runtime import VrrpRuntime

log = logging.getLogger("keepalived_py")


class _Formatter(logging.Formatter):
    """keepalived's console time stamp, with milliseconds added for timing."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        t = time.localtime(record.created)
        return (time.strftime("%a %b %d %H:%M:%S", t) + f".{int(record.msecs):03d}"
                + time.strftime(" %Y", t))


def setup_logging(stream=None) -> None:  # noqa: ANN001 - a text stream
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s: %(message)s"))
    root = logging.getLogger("keepalived_py")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def run(path: str, config_id: str) -> int:
    result = load(path, config_id=config_id)
    for diag in result.diags:
        log.info("%s", diag)
    if result.diags.highest() in (Level.FILE_NOT_FOUND, Level.FATAL):
        log.error("Stopping: the configuration cannot be run")
        return EXIT_CANNOT_RUN
    try:
        specs = build_instances(result.root)
    except BuildError as err:
        log.error("Stopping: %s", err)
        return EXIT_CANNOT_RUN
    log.info("Configuration file %s", path)
    return asyncio.run(_serve(specs, result.root))


async def _serve(specs, root) -> int:  # noqa: ANN001 - list[InstanceSpec], Node
    runtime = VrrpRuntime(specs, config=root)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: log.info("Reload (SIGHUP) is not supported yet - ignored"))
    try:
        await runtime.start()
    except Exception:
        await runtime.stop()
        raise
    log.info("Startup complete")
    sdnotify.notify("READY=1", f"STATUS=VRRP: {len(specs)} instance(s)")
    feeding = None
    if (every := sdnotify.watchdog_interval()) is not None:
        feeding = asyncio.create_task(_feed_watchdog(every))
    await done.wait()
    sdnotify.notify("STOPPING=1")
    if feeding:
        feeding.cancel()
    log.info("Stopping")
    await runtime.stop()
    log.info("Stopped")
    return 0


async def _feed_watchdog(every: float) -> None:
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(every)
