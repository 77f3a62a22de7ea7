"""The parent process: supervises one child per subsystem, as keepalived's parent does.

It reads the configuration only to check it and to know which children to
run; the children do the work.  What it knows of a kind of child comes from
its declaration (``core/children.py``): the supervisor imports no subsystem.
It restarts a child that dies with keepalived's back-off (at once after more
than 60 s of uptime, otherwise 0, 1, 2, 4 … 60 s), and one that stops sending
heartbeats (a hang, not a death) is killed and restarted the same way.  A
restarted child is handed back what it last published (``--last-state``:
VRRP resumes the instances that were MASTER, so that a restart quicker than
the backups' Master_Down_Interval causes no failover) and the operator's
settings it asked to keep (``--kept``).

The parent owns the control socket, the systemd notifications, the watchdog
and the events between children (``core/events.py``), and forwards
keepalived's signals to the children.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.model import Node
from . import sdnotify
from .children import ChildKind, hello_message
from .daemon import (
    EXIT_FATAL,
    PERMANENT_EXITS,
    SIGJSON,
    SIGSTATS_CLEAR,
    ConfigRefused,
    read_checked,
)
from .events import EventHub
from .logs import LogOptions
from .paths import (
    RUN_DIR,
    AgentKey,
    RunPaths,
    make_dir,
    remove_empty_dirs,
    write_atomic,
    write_pid_file,
)

log = logging.getLogger("keepalived_py")

STARTUP_LIMIT = 120.0       # seconds a child may take to start
STOP_LIMIT = 20.0           # seconds a child may take to stop gracefully
RESPAWN_UPTIME = 60.0       # a child that ran longer restarts at once
MAX_DELAY = 60
KEPT_SCHEMA = 2


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
    key: AgentKey = field(default_factory=AgentKey)
    pid_file: str | None = None
    # each child's pid file by its name (None: it writes none)
    child_pid_files: dict[str, str | None] = field(default_factory=dict)
    # which kinds of child the command line lets run (-P, -C, -B)
    enabled: Callable[[str], bool] = lambda name: True
    respawn: bool = True                # not -R
    release_vips: bool = True           # not -V
    release_ipvs: bool = True           # not -I
    control_socket: str | None = None
    metrics_listen: str | None = None
    # reload_check_config LOG_FILE.  A reload is always checked before it is
    # applied, with or without the keyword (keepalived checks only with it).
    reload_check_log: str | None = None
    # where the operator's settings that children ask to keep (``keepalived-py
    # set``) are kept, so that they outlive a restart of the agent or of the host
    maintenance_file: str | None = None
    # global_defs startup_script / shutdown_script as checked (scripts.ConfigScripts),
    # with their timeouts: run before the children start and after they stop
    startup_script: Any = None
    startup_timeout: float = 10
    shutdown_script: Any = None
    shutdown_timeout: float = 10


@dataclass
class Child:
    """One supervised child process, of a declared kind."""

    kind: ChildKind
    proc: asyncio.subprocess.Process | None = None
    channel: Any = None                 # ipc.Channel
    started: float = 0.0                # wall clock
    started_mono: float = 0.0
    ready: bool = False
    last_heartbeat: float = 0.0         # monotonic
    restarts: int = 0
    next_delay: int = 0
    restarting: bool = False
    retired: bool = False               # no longer wanted: not restarted
    last_exit: str | None = None

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.proc.pid if self.running else None,
                "running": self.running, "ready": self.ready, "started": self.started,
                "restarts": self.restarts, "last_exit": self.last_exit}


ParentDump = Callable[[Node, AgentKey], tuple[Path, str]]


class Supervisor:
    def __init__(self, settings: Settings, kinds: Sequence[ChildKind], root: Node,
                 parent_dump: ParentDump | None = None) -> None:
        self.s = settings
        self.kinds = list(kinds)
        self.root = root                    # the configuration running now
        self.parent_dump = parent_dump
        self.children: list[Child] = []
        self.started = time.time()
        self.stopping = False
        self.exit_code = 0
        self.done = asyncio.Event()
        self.events = EventHub({t: k.name for k in self.kinds for t in k.publishes})
        self._tasks: set[asyncio.Task] = set()
        self._control = None
        self._metrics: Callable[[], None] | None = None
        self._reloading = asyncio.Lock()
        # the operator's settings each child asked to keep, handed back at its restart
        self.kept: dict[str, dict[str, Any]] = load_kept(settings.maintenance_file)

    # -- life cycle -------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self._spawn_task(self.stop()))
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn_task(self.reload()))
        for sig, kind in ((signal.SIGUSR1, "data"), (signal.SIGUSR2, "stats"),
                          (SIGJSON, "json"), (SIGSTATS_CLEAR, "stats_clear")):
            loop.add_signal_handler(sig, lambda kind=kind: self._spawn_task(self.dump(kind)))
        try:
            await self._open_house(loop)
        except BaseException:
            self._close_house()
            raise
        try:
            await self._start_stop_script("startup script", self.s.startup_script,
                                          self.s.startup_timeout)
            for kind in self._wanted(self.root):
                await self._add_child(kind)
            self._spawn_task(self._watch())
            if not self.children:
                self._ready()
            await self.done.wait()
        finally:
            self.stopping = True
            await self._shutdown()
        return self.exit_code

    async def _open_house(self, loop: asyncio.AbstractEventLoop) -> None:
        """The pid file, the control socket, the metrics listener: a failure says why in
        one line (``PathsError``, ``ControlError``, ``OSError``) and leaves nothing."""
        if self.s.pid_file:
            write_pid_file(self.s.pid_file)
        if self.s.control_socket:
            from .control import serve_control
            self._control = await serve_control(self.s.control_socket, self.handle)
        if self.s.metrics_listen:
            self._start_metrics(loop)

    def _close_house(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._metrics is not None:
            self._metrics()
            self._metrics = None
        for path in (self.s.pid_file, *self.s.child_pid_files.values()):
            if path:
                Path(path).unlink(missing_ok=True)
        if self.s.key != AgentKey():
            remove_empty_dirs(RunPaths.of(self.s.key).run_dir, RUN_DIR)

    def _wanted(self, root: Node) -> list[ChildKind]:
        return [k for k in self.kinds if self.s.enabled(k.name) and k.wanted(root)]

    async def _add_child(self, kind: ChildKind) -> None:
        child = Child(kind)
        self.children.append(child)
        await self._start_child(child)

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
        await asyncio.gather(*(self._stop_child(c) for c in self.children))
        await self._start_stop_script("shutdown script", self.s.shutdown_script,
                                      self.s.shutdown_timeout)
        self._close_house()
        log.info("Stopped keepalived-py %s", __version__)

    async def _stop_child(self, child: Child) -> None:
        if not child.running:
            return
        child.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.proc.wait(), STOP_LIMIT)
        except TimeoutError:
            log.error("%s child process(%d) did not stop - killing", child.name, child.proc.pid)
            child.proc.kill()
            await child.proc.wait()

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
        key = self.s.key
        argv = [sys.executable, "-m", child.kind.module, "-f", self.s.path,
                "-i", self.s.config_id, "--ipc-fd", str(fd), *self.s.log.argv()]
        if key.namespace:
            argv += ["--namespace", key.namespace]
        if key.instance:
            argv += ["--instance", key.instance]
        pid_file = self.s.child_pid_files.get(child.name)
        if pid_file:
            argv += ["--pid-file", pid_file]
        return argv + list(child.kind.extra_argv(self.s))

    async def _start_child(self, child: Child) -> None:
        from .ipc import Channel
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *self._child_argv(child, theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        if self.stopping or child.retired:     # stopped while it was being started
            child.proc.terminate()
        child.channel = await Channel.open(ours)
        child.channel.send(hello_message(self.events.state_of(child.name),
                                         self.kept.get(child.name, {})))
        child.started, child.started_mono = time.time(), time.monotonic()
        child.ready, child.restarting = False, False
        child.last_heartbeat = time.monotonic()
        log.info("Starting %s child process, pid=%d", child.kind.ident, child.proc.pid)
        listening = asyncio.create_task(
            child.channel.serve(lambda m, c=child: self._on_event(c, m)))
        self._spawn_task(self._reap(child, child.proc, listening))

    def _on_event(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        child.last_heartbeat = time.monotonic()
        if event == "publish":
            self.events.publish(child.name, str(message.get("topic")),
                                message.get("items") or {}, bool(message.get("replace")))
        elif event == "ready":
            first = not child.ready and child.restarts == 0
            child.ready = True
            self.events.attach(child.name, child.kind.consumes, child.channel.send)
            if first and all(c.ready for c in self.children):
                self._ready()

    async def _reap(self, child: Child, proc: asyncio.subprocess.Process,
                    listening: asyncio.Task) -> None:
        code = await proc.wait()
        self.events.detach(child.name)
        # Its last words (a state change just before it died) may still be in the
        # socket: read them to the end, or a MASTER would not be resumed.
        try:
            await asyncio.wait_for(asyncio.shield(listening), 2.0)
        except TimeoutError:
            listening.cancel()
        if child.channel is not None:
            child.channel.close()
        child.ready = False
        child.last_exit = f"killed by {signal_name(-code)}" if code < 0 else f"exit {code}"
        if child.retired:
            self.events.withdraw(child.name)        # after its last words
        if self.stopping or child.retired:
            return
        if code in PERMANENT_EXITS:
            log.error("%s exited with permanent error %s. Terminating", child.kind.ident,
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
        if self.stopping or child.retired:
            return
        child.restarts += 1
        try:
            await self._start_child(child)
        except OSError as err:
            log.error("Cannot restart the %s child process: %s. Terminating", child.name, err)
            self.exit_code = EXIT_FATAL
            await self.stop()

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
                limit = child.kind.hung_after if child.ready else STARTUP_LIMIT
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

    def _child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name and not c.retired), None)

    async def reload(self) -> dict[str, Any]:
        async with self._reloading:
            sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            log.info("Reloading ...")
            try:
                try:
                    root = await asyncio.to_thread(self._read_for_reload)
                except ConfigRefused as refused:
                    refused.log("Reload refused: the running configuration is kept")
                    self._write_check_log(refused.lines)
                    return {"ok": False, "error": "configuration refused",
                            "errors": refused.lines}
                self.root = root
                self.s.reload_check_log = reload_check_log(root)
                answers = await self._reload_children(root)
                return {"ok": all(a.get("ok") for a in answers.values()), "children": answers}
            finally:
                self._ready()

    def _read_for_reload(self) -> Node:
        """The new configuration, refused when the parser or any child that will run
        it finds an error: a reload is all or nothing."""
        root = read_checked(self.s.path, self.s.config_id, strict=True).root
        errors = [e for kind in self._wanted(root) for e in kind.check(root, self.s.path)]
        if errors:
            raise ConfigRefused(errors)
        return root

    async def _reload_children(self, root: Node) -> dict[str, Any]:
        """Running children reload; a kind the configuration no longer needs stops, one
        it needs now starts (keepalived 2.2.7 does the same at a reload)."""
        wanted = self._wanted(root)
        answers: dict[str, Any] = {}
        for child in list(self.children):
            if child.retired:
                continue
            if child.kind in wanted:
                answers[child.name] = await self._ask(child, {"request": "reload"}, 300.0)
                continue
            log.info("%s is no longer needed by the configuration: stopping it", child.name)
            child.retired = True
            await self._stop_child(child)
            answers[child.name] = {"ok": True, "stopped": True}
        self.children = [c for c in self.children if not c.retired]
        for kind in wanted:
            if self._child(kind.name) is None:
                await self._add_child(kind)
                answers[kind.name] = {"ok": True, "started": True}
        return answers

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
        if kind == "data" and self.parent_dump is not None:
            answers["parent"] = self._parent_dump()
        for child in self.children:
            if kind in child.kind.dumps:
                answers[child.name] = await self._ask(child, {"request": "dump", "kind": kind})
        return {"ok": all(a.get("ok") for a in answers.values()), "dumps": answers}

    def _parent_dump(self) -> dict[str, Any]:
        assert self.parent_dump is not None
        try:
            path, text = self.parent_dump(self.root, self.s.key)
            write_atomic(path, text)
        except OSError as err:
            return {"ok": False, "error": str(err)}
        log.info("Printing parent data for process(%d) on signal", os.getpid())
        return {"ok": True, "path": str(path)}

    async def status(self) -> dict[str, Any]:
        agent = {"version": __version__, "pid": os.getpid(), "started": self.started,
                 "config_file": os.path.abspath(self.s.path),
                 "namespace": self.s.key.namespace, "instance": self.s.key.instance,
                 "children": [c.describe() for c in self.children]}
        answer: dict[str, Any] = {"ok": True, "agent": agent}
        for kind in self._wanted(self.root):   # null: wanted, not running now
            answer[kind.name] = None
        for child in self.children:
            reply = await self._ask(child, {"request": "snapshot"})
            if not reply.get("ok"):
                return {"ok": False, "agent": agent,
                        "error": reply.get("error", f"no {child.name} state")}
            answer[child.name] = reply["result"]
        return answer

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        what = request.get("request")
        if what == "status":
            return await self.status()
        if what == "reload":
            return await self.reload()
        if what == "dump":
            return await self.dump(str(request.get("what", "data")))
        for child in self.children:
            if what in child.kind.requests:
                return await self._handed(child, request)
        if any(what in k.requests for k in self.kinds):
            return {"ok": False, "error": f"no process runs that answers {what!r}"}
        return {"ok": False, "error": f"unknown request {what!r}"}

    async def _handed(self, child: Child, request: dict[str, Any]) -> dict[str, Any]:
        """A request a child answers; what it asks to keep (``"keep": {KEY: VALUE|null}``)
        is kept for its restarts and in the maintenance file."""
        answer = await self._ask(child, request)
        keep = answer.pop("keep", None)
        if not answer.get("ok") or not isinstance(keep, dict):
            return answer
        kept = self.kept.setdefault(child.name, {})
        for key, value in keep.items():
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value
        if self.s.maintenance_file:
            try:
                save_kept(self.s.maintenance_file, self.kept)
            except OSError as err:
                log.error("Cannot keep the maintenance settings in %s: %s",
                          self.s.maintenance_file, err)
                answer = {**answer, "warning": "applied, but not kept across a restart: "
                          f"{self.s.maintenance_file}: {err.strerror}"}
        return answer

    def _start_metrics(self, loop: asyncio.AbstractEventLoop) -> None:
        from .metrics import start_metrics_server, state_from_loop
        try:
            server = start_metrics_server(self.s.metrics_listen,
                                          state_from_loop(loop, self.handle), kinds=self.kinds)
        except OSError as err:      # the port is taken (another agent's?): say which
            raise OSError(err.errno, err.strerror,
                          f"metrics listener {self.s.metrics_listen}") from None
        log.info("Prometheus metrics on http://%s/metrics", self.s.metrics_listen)
        self._metrics = server.close


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:          # a real-time signal: keepalived's JSON, STATS_CLEAR...
        return f"signal {number}"


def load_kept(path: str | None) -> dict[str, dict[str, Any]]:
    """The settings kept in ``path``, by child ({} when there are none).

    A file that cannot be read is logged and ignored: the agent then runs the
    configuration as written, the safe side for a host coming back.  Each
    child checks its own part again when it starts."""
    if not path or not os.path.exists(path):
        return {}
    try:
        data = json.loads(Path(path).read_text())
        if data.get("schema_version", 1) == 1:       # 0.1: VRRP's instances only
            data = {"children": {"vrrp": data["instances"]}}
        kept = data["children"]
        if not all(isinstance(values, dict) and all(isinstance(v, dict) for v in values.values())
                   for values in kept.values()):
            raise ValueError("a setting is not an object")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.error("Ignoring the maintenance settings in %s: %s", path, err)
        return {}
    return kept


def save_kept(path: str, kept: dict[str, dict[str, Any]]) -> None:
    make_dir(Path(path).parent)
    write_atomic(path, json.dumps({"schema_version": KEPT_SCHEMA,
                                   "children": {k: v for k, v in kept.items() if v}},
                                  indent=2, sort_keys=True) + "\n")


def reload_check_log(root: Node) -> str | None:
    """The LOG_FILE of ``reload_check_config LOG_FILE``, if given."""
    for glob in root.blocks("global_defs"):
        value = glob.get("reload_check_config")
        if value:
            return os.path.abspath(value)
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
