"""The VRRP process: the instances of one configuration, until told to stop.

The parent (agent/core/supervisor.py) starts it as its declaration
(``child.py``) says, with a socketpair to talk over (agent/core/ipc.py): it
answers requests (snapshot, reload, dump, set, stop), publishes the state of
its instances (topic ``vrrp.instance``, agent/core/events.py) and sends a
heartbeat every second from its event loop, which is how the parent tells a
hung process from a busy one.  The process also takes keepalived's signals
itself, as keepalived's children do.  When the parent is gone (its end of the
line closes) it stops gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ParseResult
from ..core import logs
from ..core.child_process import ChildLoop, child_main
from ..core.daemon import (
    EXIT_CONFIG,
    EXIT_FATAL,
    ConfigRefused,
    read_checked,
)
from ..core.events import publish_message
from ..core.ipc import Message
from ..core.paths import AgentKey, write_atomic, write_pid_file
from ..host.scripts import ConfigScripts, cmd_str, run_script
from .build import BuildError, InstanceSpec, build_checked, refused_scripts
from .child import INSTANCE_TOPIC
from .engine import Action, LowerPriorityHeard, PriorityChanged, State
from .events import StateEvents
from .kernel import KernelError
from .runtime import Override, Running, VrrpRuntime
from .sync import SyncGroup
from .track import only_pending
from .tracking_io import Trackers

if TYPE_CHECKING:
    from ..ipvs.settings import SyncDaemonDriver

log = logging.getLogger("keepalived_py")



@dataclass
class Config:
    result: ParseResult
    specs: list[InstanceSpec]
    scripts: ConfigScripts          # every script, checked, with its user

    @property
    def refused_scripts(self) -> set[str]:
        return refused_scripts(self.scripts)


def sync_daemon_driver(config: Config) -> SyncDaemonDriver | None:
    """The sync daemon this process drives (``lvs_sync_daemon IF inst VI``), if any."""
    glob = config.result.root.values.get("global_defs")
    if glob is None or not glob.values.get("lvs_sync_daemon"):
        return None                     # IPVS's modules are imported only when needed
    from ..ipvs.settings import SyncDaemonDriver, sync_daemon_of
    daemon = sync_daemon_of(config.result.root)
    if daemon is None or daemon.instance is None:
        return None
    vrid = next((s.cfg.vrid for s in config.specs if s.cfg.name == daemon.instance), None)
    if vrid is None:
        log.error("Unable to find vrrp instance %s for lvs_syncd - clearing lvs_syncd config",
                  daemon.instance)
        return None
    return SyncDaemonDriver(daemon, vrid)


def read_config(path: str, config_id: str, strict: bool) -> Config:
    result = read_checked(path, config_id, strict)
    try:
        specs, scripts = build_checked(result.root)
    except BuildError as err:
        raise ConfigRefused([str(err)]) from None
    return Config(result, specs, scripts)


def log_diagnostics(config: Config) -> None:
    """The checker's messages, then the script checks' (each message once)."""
    seen = set()
    for diag in config.result.diags:
        seen.add(diag.message)
        log.info("%s", diag)
    for diag in config.scripts.diagnostics:
        if diag.message not in seen:
            log.info("%s", diag)


@dataclass
class Options:
    path: str
    config_id: str
    release: bool = True                # False: -V, leave the VIPs on stop
    pid_file: str | None = None
    key: AgentKey = field(default_factory=AgentKey)
    resume: list[str] = field(default_factory=list)
    overrides: dict[str, Override] = field(default_factory=dict)
    ipc_fd: int | None = None
    log: logs.LogOptions = field(default_factory=lambda: logs.LogOptions(console=True))


class VrrpProcess:
    def __init__(self, opts: Options, config: Config) -> None:
        self.opts = opts
        self.config = config
        # The parent learns each state change at once: it restarts a died
        # process with the instances that were MASTER resumed.
        self.runtime = VrrpRuntime(config.specs, config=config.result.root,
                                   on_transition=self._changed,
                                   on_group_transition=self._group_changed,
                                   on_notice=self._notice)
        self.events = StateEvents(config.result.root, config.scripts)
        self.trackers = Trackers(config.result.root, self._run_tracker_script,
                                 self.runtime.set_tracker, refused=config.refused_scripts)
        self._changes: dict[str, str] = {}
        self.sync_daemon = sync_daemon_driver(config)
        self.loop = ChildLoop(opts.ipc_fd, {"snapshot": self._snapshot, "reload": self._reload,
                                            "dump": self._dump, "set": self._set})
        self._busy = asyncio.Lock()     # one reload or dump at a time

    async def run(self) -> int:
        await self.loop.start(on_reload=self.reload, on_dump=self.dump,
                              dumps=("data", "stats", "json", "stats_clear"))
        try:
            self.events.start()
            await self.trackers.start(scripts=False)
            self._read_trackers()
            await self.runtime.start(resume=self.opts.resume, overrides=self.opts.overrides)
            self.trackers.start_scripts()
        except (KernelError, OSError) as err:
            # A link that is not there, a socket refused: say it in one line; the
            # parent stops too (keepalived's EXIT_FATAL), a restart would not help.
            log.error("Stopping: cannot start VRRP: %s", err)
            await self._stop(release=True)
            return EXIT_FATAL
        except Exception:
            await self._stop(release=True)
            raise
        if self.opts.pid_file:
            write_pid_file(self.opts.pid_file)
        log.info("Startup complete")
        self._publish_all()
        self.loop.ready()
        await self.loop.done.wait()
        if not self.loop.supervised:    # with a parent, the parent says it
            log.info("Stopping")
        await self._stop(release=self.opts.release)
        if self.opts.pid_file:
            Path(self.opts.pid_file).unlink(missing_ok=True)
        log.info("Stopped")
        return 0

    async def _stop(self, release: bool) -> None:
        """Priority 0 and addresses away first, then the trackers, then the STOP
        notifications (keepalived's vrrp_terminate_phase1 order)."""
        priorities = {r.spec.cfg.name: r.engine.effective_priority
                      for r in self.runtime.instances}
        await self.runtime.stop(release=release)
        if self.sync_daemon is not None:
            await asyncio.to_thread(self.sync_daemon.stop)
        await self.trackers.stop()
        await self.events.stop(priorities)

    def _read_trackers(self) -> None:
        """Every running tracker's state, into the runtime (later changes come by
        ``on_change``)."""
        for kind in ("script", "file", "process"):
            for name in self.trackers.names(kind):
                self.runtime.set_tracker(kind, name, self.trackers.status(kind, name))

    async def _run_tracker_script(self, name: str, argv: list[str],
                                  user: tuple[str, ...] | None, timeout: float) -> int | None:
        command = self.config.scripts.get("vrrp_script", name, "script")
        if command is None:
            return 1                    # refused or not runnable: never a success
        return await run_script(command.argv, command.user, timeout, shell=command.shell)

    def _spawn(self, coro) -> None:  # noqa: ANN001 - a coroutine
        self.loop.spawn(coro)

    def _event(self, message: Message) -> None:
        self.loop.send(message)

    def _changed(self, run: Running, change) -> None:  # noqa: ANN001 - engine.Transition
        # Sent once per loop turn, only what changed: a thousand instances
        # resuming make two thousand transitions within a few turns.
        if not self._changes:
            asyncio.get_running_loop().call_soon(self._send_changes)
        self._changes[run.spec.cfg.name] = change.new.name
        driver = self.sync_daemon
        if driver is not None and run.spec.cfg.name == driver.config.instance \
                and change.new != State.INIT:
            self._spawn(asyncio.to_thread(driver.follow, change.new.name))
        # INIT: stopping or removed, notified as STOP or DELETED by the caller
        if change.new == State.INIT:
            return
        if change.new == State.FAULT and self.runtime.silent_fault(run):
            return
        self.events.instance(run.spec.cfg.name, change.new.name, change.priority)

    def _notice(self, run: Running, notice: Action) -> None:
        name = run.spec.cfg.name
        if isinstance(notice, PriorityChanged):
            self.events.notifier.priority_changed(name, run.engine.state.name, notice.priority)
        elif isinstance(notice, LowerPriorityHeard):
            self.events.notifier.rx_lower_priority(name, run.engine.effective_priority)

    def _group_changed(self, group: SyncGroup, old: State, new: State) -> None:
        if new == State.INIT or (new == State.FAULT and group.silent):
            return
        self.events.group(group.name, new.name)

    def _send_changes(self) -> None:
        changes, self._changes = self._changes, {}
        self._event(publish_message(INSTANCE_TOPIC,
                                    {name: {"state": state} for name, state in changes.items()}))

    def _publish_all(self) -> None:
        """Every instance's state; instances that are gone are withdrawn."""
        self._changes.clear()
        self._event(publish_message(
            INSTANCE_TOPIC, {name: {"state": state}
                             for name, state in self.runtime.states().items()}, replace=True))

    async def _snapshot(self, message: Message) -> Message:
        return {"ok": True, "result": await self.snapshot()}

    async def _reload(self, message: Message) -> Message:
        return await self.reload()

    async def _dump(self, message: Message) -> Message:
        return await self.dump(str(message.get("kind", "data")))

    async def _set(self, message: Message) -> Message:
        return self.set_override(message)

    def set_override(self, message: Message) -> Message:
        name = str(message.get("instance"))
        given = {k: message[k] for k in ("priority", "force_backup") if k in message}
        try:
            wanted = self.runtime.override(name, **given)
        except (KeyError, ValueError) as err:
            return {"ok": False, "error": str(err.args[0])}
        run = next(r for r in self.runtime.instances if r.spec.cfg.name == name)
        kept = None if wanted == Override() else {"priority": wanted.priority,
                                                  "force_backup": wanted.force_backup}
        return {"ok": True, "instance": name, "priority_override": wanted.priority,
                "force_backup": wanted.force_backup, "state": run.engine.state.name,
                "effective_priority": run.engine.effective_priority,
                "keep": {name: kept}}

    async def snapshot(self) -> dict:
        from .snapshot import vrrp_snapshot
        snap = await vrrp_snapshot(self.runtime)
        trackers = self.trackers.snapshot()
        snap["scripts"] = trackers["scripts"]
        snap["track_files"] = trackers["files"]
        snap["track_processes"] = trackers["processes"]
        snap["sync_groups"] = self._sync_groups()
        return snap

    def _sync_groups(self) -> list[dict]:
        """What keepalived's data dump shows of each sync group (vrrp_data.c,
        dump_sync_group): its state, members, counts and notify scripts."""
        engines = {r.spec.cfg.name: r.engine for r in self.runtime.instances}
        nodes = {n.head: n for n in self.config.result.root.blocks("vrrp_sync_group")}
        out = []
        for group in self.runtime.groups.values():
            own = [group.own_faults(engines[m]) for m in group.members if m in engines]
            node = nodes.get(group.name)
            scripts = []
            for kind, keyword in (("Backup", "notify_backup"), ("Master", "notify_master"),
                                  ("Fault", "notify_fault"), ("Stop", "notify_stop"),
                                  ("Generic", "notify")):
                command = self.config.scripts.get("vrrp_sync_group", group.name, keyword)
                if command is not None:
                    scripts.append({"type": kind, "command": cmd_str(command.argv),
                                    "uid": command.user.uid, "gid": command.user.gid})
            out.append({
                "name": group.name, "state": group.state.name, "members": list(group.members),
                "member_faults": sum(1 for f in own if f and not only_pending(f)),
                "member_init": sum(1 for f in own if only_pending(f)),
                "tracking_weight": bool(node and node.get("sync_group_tracking_weight")),
                "smtp_alert": self.events.mailer.settings.vrrp_alert(
                    node.values.get("smtp_alert") if node else None),
                "notify_scripts": scripts,
            })
        return out

    def _tracker_dump(self) -> list[str]:
        """keepalived's "VRRP Scripts", "VRRP Track files" and "VRRP Track processes"."""
        tracking: dict[tuple[str, str], list[tuple[str, int, bool]]] = {}
        for spec in self.runtime.specs:
            for t in spec.tracks:
                if t.kind != "if":
                    tracking.setdefault(t.key, []).append((spec.cfg.name, t.weight, t.reverse))
        return self.trackers.dump_lines(tracking)

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
            log_diagnostics(config)
            before = {r.spec.cfg.name: (r.engine.state.name, r.engine.effective_priority)
                      for r in self.runtime.instances}
            self.config = config
            root = config.result.root
            # the trackers first, so that changed instances are judged on their states
            await self.trackers.reload(root, config.refused_scripts)
            self._read_trackers()
            report = await self.runtime.reload(config.specs, root)
            await self._reload_sync_daemon(config)
            await self.events.reload(root, config.scripts)
            for name in report.removed:
                self.events.notifier.deleted(name, *before[name])
            self._publish_all()     # renamed and removed instances too
            took = time.monotonic() - began
            log.info("Reload finished in %d usec: %d added, %d removed, %d changed, "
                     "%d unchanged", took * 1e6, len(report.added), len(report.removed),
                     len(report.changed), len(report.unchanged))
            return {"ok": True, "seconds": took, "added": report.added,
                    "removed": report.removed, "changed": report.changed,
                    "unchanged": len(report.unchanged)}

    async def _reload_sync_daemon(self, config: Config) -> None:
        """keepalived restarts the sync daemon at a reload only when its settings
        changed."""
        new = sync_daemon_driver(config)
        old = self.sync_daemon
        if (new and (new.config, new.vrid)) == (old and (old.config, old.vrid)):
            return
        if old is not None:
            await asyncio.to_thread(old.stop)
        self.sync_daemon = new
        if new is not None:
            states = self.runtime.states()
            if new.config.instance in states:
                await asyncio.to_thread(new.follow, states[new.config.instance])

    async def dump(self, kind: str) -> Message:
        from . import dumps
        async with self._busy:
            words = {"data": "VRRP data", "stats": "VRRP stats",
                     "stats_clear": "and clearing VRRP stats", "json": "VRRP as json"}
            if kind not in words:
                return {"ok": False, "error": f"unknown dump {kind!r}"}
            log.info("Printing %s for process(%d) on signal", words[kind], os.getpid())
            snap = await self.snapshot()
            paths = dumps.dump_paths(snap, self.opts.key)
            if kind == "data":
                path, text = paths["data"], dumps.data_dump(snap, self._tracker_dump())
            elif kind == "json":
                path, text = paths["json"], dumps.json_dump(snap)
            else:
                path, text = paths["stats"], dumps.stats_dump(snap)
                if kind == "stats_clear":
                    self.runtime.clear_stats()
            write_atomic(path, text)
            return {"ok": True, "path": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
    return child_main("keepalived-py vrrp process", "Keepalived_vrrp", argv,
                      lambda parser: parser.add_argument("-V", dest="keep_vips",
                                                         action="store_true"),
                      _start)


def _start(args: argparse.Namespace, hello: dict) -> int:
    last = hello.get("last_state", {}).get(INSTANCE_TOPIC, {})
    opts = Options(path=args.path, config_id=args.config_id, release=not args.keep_vips,
                   pid_file=args.pid_file, key=AgentKey(args.namespace, args.instance),
                   resume=[name for name, v in last.items() if v.get("state") == "MASTER"],
                   ipc_fd=args.ipc_fd, overrides=kept_overrides(hello.get("kept", {})),
                   log=logs.LogOptions(console=args.console, detail=args.detail,
                                       facility=args.facility, syslog=not args.no_syslog))
    return run(opts)


def kept_overrides(kept: dict) -> dict[str, Override]:
    """The maintenance settings the parent kept for us; one that is not valid is
    logged and dropped (its instance runs as configured: the safe side)."""
    overrides = {}
    for name, setting in kept.items():
        try:
            overrides[name] = Override(setting.get("priority"), bool(setting["force_backup"]))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            log.error("(%s) ignoring the kept maintenance setting %r: %s", name, setting, err)
            continue
        o = overrides[name]
        log.info("(%s) maintenance kept from before: priority %s, force backup %s", name,
                 o.priority if o.priority is not None else "as configured",
                 "on" if o.force_backup else "off")
    return overrides


def run(opts: Options) -> int:
    try:
        config = read_config(opts.path, opts.config_id, strict=False)
    except ConfigRefused as refused:
        refused.log("Stopping: the configuration cannot be run")
        return EXIT_CONFIG
    log_diagnostics(config)
    log.info("Configuration file %s", opts.path)
    return asyncio.run(VrrpProcess(opts, config).run())


if __name__ == "__main__":
    sys.exit(main())
