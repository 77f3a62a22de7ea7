"""The checker process: health checks of the real servers, and the IPVS table they drive.

The parent (agent/core/supervisor.py) starts it as its declaration (``child.py``)
says.  It has its own event loop, so no storm of checks can delay a VRRP advert.
When it starts, also after a crash, it reads the kernel's IPVS table and adopts
what it finds (nothing is flushed unless ``lvs_flush`` says so): healthy real
servers never leave the pool because the process restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ParseResult
from ..core.child_process import ChildLoop, child_main
from ..core.daemon import (
    EXIT_CONFIG,
    ConfigRefused,
    read_checked,
)
from ..core.ipc import Message
from ..core.paths import AgentKey, write_atomic, write_pid_file
from ..host.scripts import ConfigScripts
from . import dumps
from .build import BuildError, build_checked
from .dataplane import NoDataPlane
from .probing import Prober
from .runtime import CheckerRuntime, DataPlane, Settings
from .snapshot import check_snapshot
from .spec import LvsConfig

log = logging.getLogger("keepalived_py")


@dataclass
class Config:
    result: ParseResult
    lvs: LvsConfig
    scripts: ConfigScripts


def read_config(path: str, config_id: str, strict: bool) -> Config:
    result = read_checked(path, config_id, strict)
    try:
        lvs, scripts = build_checked(result.root)
    except BuildError as err:
        raise ConfigRefused([str(err)]) from None
    return Config(result, lvs, scripts)


@dataclass
class Options:
    path: str
    config_id: str
    release: bool = True                # False: -I, leave IPVS as it is on stop
    pid_file: str | None = None
    key: AgentKey = AgentKey()
    ipc_fd: int | None = None


def make_dataplane(*, flush_at_start: bool = False) -> DataPlane:
    """IPVS in our network namespace when the kernel has it; else none, said once."""
    try:
        from .ipvs_plane import IpvsDataPlane, ipvs_missing
    except ImportError as err:          # pragma: no cover - a broken install
        return NoDataPlane(f"the IPVS data plane cannot load: {err}")
    reason = ipvs_missing()
    if reason is not None:
        return NoDataPlane(reason)
    return IpvsDataPlane(flush_at_start=flush_at_start)


def _settle_heap() -> None:
    """Take what start-up or a reload built out of the cyclic collector's sight: at
    thousands of checks a second its full passes over a large configuration's
    objects showed in the checker's CPU.  What a reload replaced is collected
    first (a frozen cycle would never be)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class CheckerProcess:
    def __init__(self, opts: Options, config: Config, dataplane: DataPlane,
                 ipvs_globals: Any = None) -> None:   # noqa: ANN401 - ipvs.settings.IpvsGlobals
        self.ipvs_globals = ipvs_globals
        self.opts = opts
        self.config = config
        self.dataplane = dataplane
        self.prober = Prober(config.result.root, config.scripts)
        self.runtime = CheckerRuntime(config.lvs, config.result.root, config.scripts,
                                      prober=self.prober, dataplane=dataplane)
        self.loop = ChildLoop(opts.ipc_fd, {"snapshot": self._snapshot, "reload": self._reload,
                                            "dump": self._dump})
        self._busy = asyncio.Lock()

    async def run(self) -> int:
        await self.loop.start(on_reload=self.reload, on_dump=self.dump, dumps=("data", "json"))
        for note in self.config.lvs.notes:
            log.warning("%s", note)
        await self.runtime.start()
        _settle_heap()
        if self.opts.pid_file:
            write_pid_file(self.opts.pid_file)
        log.info("Startup complete")
        self.loop.ready()
        await self.loop.done.wait()
        if not self.loop.supervised:
            log.info("Stopping")
        await self.runtime.stop(keep_table=not self.opts.release)
        if self.opts.pid_file:
            Path(self.opts.pid_file).unlink(missing_ok=True)
        log.info("Stopped")
        return 0

    async def snapshot(self, *, detail: bool = False) -> dict:
        """The status (``detail``: with every setting the dumps print)."""
        plane = self.dataplane.describe()
        counters = await self.dataplane.counters()
        return check_snapshot(self.runtime.pool, now=self.runtime.clock(), plane=plane,
                              counters=counters,
                              fifo_lines=self.runtime.notifications.lines,
                              probes_run=self.runtime.probes_run,
                              root=self.config.result.root, scripts=self.config.scripts,
                              detail=detail)

    async def _snapshot(self, message: Message) -> Message:
        return {"ok": True, "result": await self.snapshot()}

    async def _reload(self, message: Message) -> Message:
        return await self.reload()

    async def _dump(self, message: Message) -> Message:
        return await self.dump(str(message.get("kind", "data")))

    async def reload(self) -> Message:
        async with self._busy:
            log.info("Reloading")
            began = time.monotonic()
            try:
                config = await asyncio.to_thread(
                    read_config, self.opts.path, self.opts.config_id, True)
            except ConfigRefused as refused:
                refused.log("Reload refused: keeping the running configuration")
                return {"ok": False, "error": "configuration refused", "errors": refused.lines}
            self.config = config
            self.prober = self.runtime.prober = Prober(config.result.root, config.scripts)
            if self.ipvs_globals is not None:
                await asyncio.to_thread(self.ipvs_globals.apply, config.result.root)
            report = await self.runtime.reload(config.lvs, config.result.root, config.scripts)
            _settle_heap()
            took = time.monotonic() - began
            log.info("Reload finished in %d usec: %d added, %d removed, %d changed, "
                     "%d unchanged", took * 1e6, len(report.added), len(report.removed),
                     len(report.changed), len(report.unchanged))
            return {"ok": True, "seconds": took, "added": report.added,
                    "removed": report.removed, "changed": report.changed,
                    "unchanged": len(report.unchanged)}

    async def dump(self, kind: str) -> Message:
        async with self._busy:
            if kind not in ("data", "json"):
                return {"ok": False, "error": f"unknown dump {kind!r}"}
            log.info("Printing checker %s for process(%d) on signal",
                     "data" if kind == "data" else "as json", os.getpid())
            snap = await self.snapshot(detail=True)
            path = dumps.dump_path(kind, self.opts.key)
            text = dumps.data_dump(snap) if kind == "data" else dumps.json_dump(snap)
            write_atomic(path, text)
            return {"ok": True, "path": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
    return child_main("keepalived-py checker process", "Keepalived_healthcheckers", argv,
                      lambda parser: parser.add_argument("-I", dest="keep_ipvs",
                                                         action="store_true"),
                      _start)


def _start(args: argparse.Namespace, hello: dict) -> int:
    opts = Options(path=args.path, config_id=args.config_id, release=not args.keep_ipvs,
                   pid_file=args.pid_file, key=AgentKey(args.namespace, args.instance),
                   ipc_fd=args.ipc_fd)
    try:
        config = read_config(opts.path, opts.config_id, strict=False)
    except ConfigRefused as refused:
        refused.log("Stopping: the configuration cannot be run")
        return EXIT_CONFIG
    log.info("Configuration file %s", opts.path)
    settings = Settings.from_root(config.result.root)
    dataplane = make_dataplane(flush_at_start=settings.lvs_flush)
    globals_ = None
    if dataplane.name == "ipvs":
        from ..ipvs.netlink import IpvsTable
        from ..ipvs.settings import IpvsGlobals
        globals_ = IpvsGlobals(IpvsTable())
        globals_.apply(config.result.root)
    try:
        return asyncio.run(CheckerProcess(opts, config, dataplane, globals_).run())
    finally:
        if globals_ is not None and opts.release:
            globals_.restore()


if __name__ == "__main__":
    sys.exit(main())
