"""The parent process: supervises one child per subsystem, as keepalived's parent does.

It reads the configuration only to check it and to know which children to
run; the children do the work.  It restarts a child that dies with
keepalived's back-off (at once after more than 60 s of uptime, otherwise 0,
1, 2, 4 … 60 s), and one that stops sending heartbeats (a hang, not a
death) is killed and restarted the same way.  A VRRP child that was MASTER
is restarted in resume mode (see VrrpRuntime.start), so that a restart
quicker than the backups' Master_Down_Interval causes no failover.

The parent owns the control socket, the systemd notifications and the
watchdog, and forwards keepalived's signals to the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.model import Node
from ..vrrp.main import EXIT_CONFIG, EXIT_FATAL, SIGJSON, SIGSTATS_CLEAR, ConfigRefused, read_config
from ..vrrp.runtime import Override
from . import sdnotify
from .logs import LogOptions

log = logging.getLogger("keepalived_py")

HUNG_AFTER = 5.0            # seconds without a heartbeat from a started child
STARTUP_LIMIT = 120.0       # seconds a child may take to start
STOP_LIMIT = 20.0           # seconds a child may take to stop gracefully
RESPAWN_UPTIME = 60.0       # a child that ran longer restarts at once
MAX_DELAY = 60
EXIT_MISSING_PERMISSION = 4
PERMANENT_EXITS = {EXIT_FATAL: "FATAL", EXIT_CONFIG: "CONFIG",
                   EXIT_MISSING_PERMISSION: "missing permission"}


def next_delay(uptime: float, delay: int) -> tuple[int, int]:
    """keepalived's calc_restart_delay: (wait now, the next wait)."""
    if uptime >= RESPAWN_UPTIME:
        return 0, 0
    following = 1 if delay == 0 else (MAX_DELAY if delay > 30 else delay * 2)
    return delay, following


@dataclass
class Settings:
    path: str
    config_id: str
    log: LogOptions = field(default_factory=LogOptions)
    pid_file: str | None = None
    vrrp_pid_file: str | None = None
    respawn: bool = True                # not -R
    release_vips: bool = True           # not -V
    run_vrrp: bool = True               # not -C
    control_socket: str | None = None
    metrics_listen: str | None = None
    # reload_check_config LOG_FILE.  A reload is always checked before it is
    # applied, with or without the keyword (keepalived checks only with it).
    reload_check_log: str | None = None
    # where the operator's maintenance settings (``keepalived-py set``) are kept, so
    # that they outlive a restart of the agent or of the host
    maintenance_file: str | None = None
    # global_defs startup_script / shutdown_script as checked (scripts.ConfigScripts),
    # with their timeouts: run before the children start and after they stop
    startup_script: Any = None
    startup_timeout: float = 10
    shutdown_script: Any = None
    shutdown_timeout: float = 10


@dataclass
class Child:
    """One supervised child process (``vrrp`` today; checker and BFD later)."""

    name: str
    ident: str                          # its log ident, as keepalived names it
    module: str
    proc: asyncio.subprocess.Process | None = None
    channel: Any = None                 # ipc.Channel
    started: float = 0.0                # wall clock
    started_mono: float = 0.0
    ready: bool = False
    last_heartbeat: float = 0.0         # monotonic
    states: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    next_delay: int = 0
    restarting: bool = False
    last_exit: str | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.proc.pid if self.running else None,
                "running": self.running, "ready": self.ready, "started": self.started,
                "restarts": self.restarts, "last_exit": self.last_exit}


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.children: list[Child] = []
        self.started = time.time()
        self.stopping = False
        self.exit_code = 0
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._control = None
        self._metrics: Callable[[], None] | None = None
        self._reloading = asyncio.Lock()
        # the operator's maintenance settings, handed to a restarted VRRP process
        self.overrides: dict[str, dict[str, Any]] = load_maintenance(settings.maintenance_file)

    # -- life cycle -------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self._spawn_task(self.stop()))
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn_task(self.reload()))
        for sig, kind in ((signal.SIGUSR1, "data"), (signal.SIGUSR2, "stats"),
                          (SIGJSON, "json"), (SIGSTATS_CLEAR, "stats_clear")):
            loop.add_signal_handler(sig, lambda kind=kind: self._spawn_task(self.dump(kind)))
        if self.s.pid_file:
            Path(self.s.pid_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.s.pid_file).write_text(f"{os.getpid()}\n")
        if self.s.control_socket:
            from .control import serve_control
            self._control = await serve_control(self.s.control_socket, self.handle)
        if self.s.metrics_listen:
            self._start_metrics(loop)
        if self.s.run_vrrp:
            self.children.append(Child("vrrp", "Keepalived_vrrp", "keepalived_py.vrrp.main"))
        await self._start_stop_script("startup script", self.s.startup_script,
                                      self.s.startup_timeout)
        for child in self.children:
            await self._start_child(child)
        self._spawn_task(self._watch())
        if not self.children:
            self._ready()
        await self.done.wait()
        await self._shutdown()
        return self.exit_code

    def _spawn_task(self, coro) -> None:  # noqa: ANN001 - a coroutine
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ready(self) -> None:
        running = ", ".join(f"{c.name} pid {c.proc.pid}" for c in self.children if c.running)
        sdnotify.notify("READY=1", f"STATUS=running: {running or 'no subsystem configured'}")

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        sdnotify.notify("STOPPING=1")
        log.info("Stopping")
        self.done.set()

    async def _shutdown(self) -> None:
        for child in self.children:
            if child.running:
                child.proc.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.running:
                try:
                    await asyncio.wait_for(child.proc.wait(), STOP_LIMIT)
                except TimeoutError:
                    log.error("%s child process(%d) did not stop - killing", child.name,
                              child.proc.pid)
                    child.proc.kill()
                    await child.proc.wait()
        await self._start_stop_script("shutdown script", self.s.shutdown_script,
                                      self.s.shutdown_timeout)
        if self._control is not None:
            self._control.close()
        if self._metrics is not None:
            self._metrics()
        for path in (self.s.pid_file, self.s.vrrp_pid_file):
            if path:
                Path(path).unlink(missing_ok=True)
        log.info("Stopped keepalived-py %s", __version__)

    @staticmethod
    async def _start_stop_script(what: str, command: Any, timeout: float) -> None:
        """keepalived's startup / shutdown script (main.c): the children start after
        the startup script ends, and the parent exits after the shutdown script; a
        script that outlives its timeout is killed with its whole process group."""
        if command is None:
            return
        from ..host.scripts import run_script
        log.info("Running %s %s", what, command.argv[0])
        status = await run_script(command.argv, command.user, timeout, shell=command.shell)
        if status is None:
            log.info("%s timed out", what)
        elif status > 0:
            log.info("%s script failed, status %d", what, status)
        elif status < 0:
            log.info("%s script killed by signal %d", what, -status)

    # -- children ---------------------------------------------------------------

    def _child_argv(self, child: Child, fd: int) -> list[str]:
        argv = [sys.executable, "-m", child.module, "-f", self.s.path, "-i", self.s.config_id,
                "--ipc-fd", str(fd), *self.s.log.argv()]
        if child.name == "vrrp":
            masters = [name for name, state in child.states.items() if state == "MASTER"]
            argv += ["--resume", json.dumps(masters), "--overrides", json.dumps(self.overrides)]
            if self.s.vrrp_pid_file:
                argv += ["--pid-file", self.s.vrrp_pid_file]
            if not self.s.release_vips:
                argv.append("-V")
        return argv

    async def _start_child(self, child: Child) -> None:
        from .ipc import Channel
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *self._child_argv(child, theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        child.channel = await Channel.open(ours)
        child.started, child.started_mono = time.time(), time.monotonic()
        child.ready, child.restarting = False, False
        child.last_heartbeat = time.monotonic()
        log.info("Starting %s child process, pid=%d", child.ident, child.proc.pid)
        listening = asyncio.create_task(
            child.channel.serve(lambda m, c=child: self._on_event(c, m)))
        self._spawn_task(self._reap(child, child.proc, listening))

    def _on_event(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "heartbeat":
            child.last_heartbeat = time.monotonic()
            child.states = dict(message.get("states") or {})
        elif event == "states":
            child.last_heartbeat = time.monotonic()
            child.states.update(message.get("changed") or {})
        elif event == "ready":
            child.last_heartbeat = time.monotonic()
            first = not child.ready and child.restarts == 0
            child.ready = True
            if first and all(c.ready for c in self.children):
                self._ready()

    async def _reap(self, child: Child, proc: asyncio.subprocess.Process,
                    listening: asyncio.Task) -> None:
        code = await proc.wait()
        # Its last words (a state change just before it died) may still be in the
        # socket: read them to the end, or a MASTER would not be resumed.
        try:
            await asyncio.wait_for(asyncio.shield(listening), 2.0)
        except TimeoutError:
            listening.cancel()
        if child.channel is not None:
            child.channel.close()
        child.last_exit = (f"killed by {signal.Signals(-code).name}" if code < 0
                           else f"exit {code}")
        if self.stopping:
            return
        if code in PERMANENT_EXITS:
            log.error("%s exited with permanent error %s. Terminating", child.ident,
                      PERMANENT_EXITS[code])
            self.exit_code = code
            await self.stop()
            return
        if not self.s.respawn:
            log.error("%s child process(%d) died: Exiting", child.name, proc.pid)
            self.exit_code = EXIT_FATAL
            await self.stop()
            return
        log.error("%s child process(%d) died (%s): Respawning", child.name, proc.pid,
                  child.last_exit)
        child.restarting = True
        wait, child.next_delay = next_delay(time.monotonic() - child.started_mono,
                                            child.next_delay)
        if wait:
            log.info("Restart of %s process delayed %d seconds to limit respawn rate",
                     child.name, wait)
            await asyncio.sleep(wait)
        if self.stopping:
            return
        child.restarts += 1
        await self._start_child(child)

    async def _watch(self) -> None:
        """Kill a child whose event loop stopped turning; feed systemd's watchdog."""
        feed_every = sdnotify.watchdog_interval()
        last_feed = 0.0
        while not self.stopping:
            now = time.monotonic()
            healthy = True
            for child in self.children:
                if not child.running or child.restarting:
                    continue
                limit = HUNG_AFTER if child.ready else STARTUP_LIMIT
                silent = now - child.last_heartbeat
                if silent > limit:
                    healthy = False
                    log.error("%s child process(%d) sent no heartbeat for %.1f s: killing it",
                              child.name, child.proc.pid, silent)
                    child.restarting = True
                    child.proc.kill()
            if feed_every is not None and healthy and now - last_feed >= feed_every:
                sdnotify.notify("WATCHDOG=1")
                last_feed = now
            await asyncio.sleep(min(0.5, feed_every or 0.5))

    # -- requests: signals and the control socket -----------------------------------

    async def _ask(self, child: Child, request: dict[str, Any],
                   timeout: float = 30.0) -> dict[str, Any]:
        if not child.running or child.channel is None or not child.ready:
            return {"ok": False, "error": f"the {child.name} process is not running"}
        try:
            return await child.channel.request(request, timeout)
        except TimeoutError:
            return {"ok": False, "error": f"no answer from the {child.name} process"}
        except ConnectionError as err:
            return {"ok": False, "error": f"the {child.name} process is gone ({err})"}

    def _vrrp(self) -> Child | None:
        return next((c for c in self.children if c.name == "vrrp"), None)

    async def reload(self) -> dict[str, Any]:
        async with self._reloading:
            sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            log.info("Reloading ...")
            try:
                try:
                    result = (await asyncio.to_thread(
                        read_config, self.s.path, self.s.config_id, True)).result
                except ConfigRefused as refused:
                    refused.log("Reload refused: the running configuration is kept")
                    self._write_check_log(refused.lines)
                    return {"ok": False, "error": "configuration refused",
                            "errors": refused.lines}
                self.s.reload_check_log = reload_check_log(result.root)
                answers = {}
                for child in self.children:
                    answers[child.name] = await self._ask(child, {"request": "reload"}, 300.0)
                ok = all(a.get("ok") for a in answers.values())
                return {"ok": ok, "children": answers}
            finally:
                self._ready()

    def _write_check_log(self, lines: list[str]) -> None:
        """``reload_check_config LOG_FILE``: the refused reload's errors go there too."""
        if not self.s.reload_check_log:
            return
        try:
            with open(self.s.reload_check_log, "a", encoding="utf-8") as out:
                out.writelines(f"{line}\n" for line in lines)
        except OSError as err:
            log.error("cannot write %s: %s", self.s.reload_check_log, err)

    async def dump(self, kind: str) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        if kind == "data":
            answers["parent"] = await self._parent_dump()
        vrrp = self._vrrp()
        if vrrp is not None:
            answers["vrrp"] = await self._ask(vrrp, {"request": "dump", "kind": kind})
        return {"ok": all(a.get("ok") for a in answers.values()), "dumps": answers}

    async def _parent_dump(self) -> dict[str, Any]:
        from . import dumps
        try:
            result = (await asyncio.to_thread(
                read_config, self.s.path, self.s.config_id, False)).result
            glob = dumps.global_settings(result.root)
            path = dumps.dump_paths({"global": glob})["parent"]
            dumps.write_atomic(path, dumps.parent_dump({"global": glob}))
        except (ConfigRefused, OSError) as err:
            return {"ok": False, "error": str(err)}
        log.info("Printing parent data for process(%d) on signal", os.getpid())
        return {"ok": True, "path": str(path)}

    async def status(self) -> dict[str, Any]:
        agent = {"version": __version__, "pid": os.getpid(), "started": self.started,
                 "config_file": os.path.abspath(self.s.path),
                 "children": [c.describe() for c in self.children]}
        vrrp = self._vrrp()
        snapshot = None
        if vrrp is not None:
            answer = await self._ask(vrrp, {"request": "snapshot"})
            if not answer.get("ok"):
                return {"ok": False, "error": answer.get("error", "no VRRP state"),
                        "agent": agent}
            snapshot = answer["result"]
        return {"ok": True, "agent": agent, "vrrp": snapshot}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        what = request.get("request")
        if what == "status":
            return await self.status()
        if what == "reload":
            return await self.reload()
        if what == "dump":
            return await self.dump(str(request.get("what", "data")))
        if what == "set":
            return await self.set_override(request)
        return {"ok": False, "error": f"unknown request {what!r}"}

    async def set_override(self, request: dict[str, Any]) -> dict[str, Any]:
        vrrp = self._vrrp()
        if vrrp is None:
            return {"ok": False, "error": "no VRRP process runs"}
        fields = {k: request[k] for k in ("instance", "priority", "force_backup") if k in request}
        answer = await self._ask(vrrp, {"request": "set", **fields})
        if answer.get("ok"):
            setting = {"priority": answer["priority_override"],
                       "force_backup": answer["force_backup"]}
            if setting == {"priority": None, "force_backup": False}:
                self.overrides.pop(answer["instance"], None)
            else:
                self.overrides[answer["instance"]] = setting
            if self.s.maintenance_file:
                try:
                    save_maintenance(self.s.maintenance_file, self.overrides)
                except OSError as err:
                    log.error("Cannot keep the maintenance settings in %s: %s",
                              self.s.maintenance_file, err)
                    answer = {**answer, "warning": "applied, but not kept across a restart: "
                              f"{self.s.maintenance_file}: {err.strerror}"}
        return answer

    def _start_metrics(self, loop: asyncio.AbstractEventLoop) -> None:
        from .metrics import start_metrics_server, state_from_loop
        server = start_metrics_server(self.s.metrics_listen, state_from_loop(loop, self.handle))
        log.info("Prometheus metrics on http://%s/metrics", self.s.metrics_listen)
        self._metrics = server.close


def load_maintenance(path: str | None) -> dict[str, dict[str, Any]]:
    """The maintenance settings kept in ``path`` ({} when there are none).

    A file that cannot be read is logged and ignored: the agent then runs the
    configuration as written, the safe side for a host coming back."""
    if not path or not os.path.exists(path):
        return {}
    try:
        data = json.loads(Path(path).read_text())
        settings = {}
        for name, s in data["instances"].items():
            kept = Override(s.get("priority"), bool(s["force_backup"]))    # checks the priority
            settings[str(name)] = {"priority": kept.priority, "force_backup": kept.force_backup}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.error("Ignoring the maintenance settings in %s: %s", path, err)
        return {}
    for name, s in settings.items():
        log.info("(%s) maintenance kept from before: priority %s, force backup %s", name,
                 s["priority"] if s["priority"] is not None else "as configured",
                 "on" if s["force_backup"] else "off")
    return settings


def save_maintenance(path: str, overrides: dict[str, dict[str, Any]]) -> None:
    Path(path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    from .dumps import write_atomic
    write_atomic(path, json.dumps({"schema_version": 1, "instances": overrides},
                                  indent=2, sort_keys=True) + "\n")


def reload_check_log(root: Node) -> str | None:
    """The LOG_FILE of ``reload_check_config LOG_FILE``, if given."""
    for glob in root.blocks("global_defs"):
        value = glob.get("reload_check_config")
        if value:
            return os.path.abspath(value)
    return None


def already_running(pid_file: str | None) -> int | None:
    """The pid in ``pid_file`` if that process is alive (keepalived refuses to start then)."""
    if not pid_file:
        return None
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, 0)
        return pid if pid != os.getpid() else None
    return None


def daemonize() -> None:
    """Detach as keepalived does without -n: fork, new session, stdio to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
