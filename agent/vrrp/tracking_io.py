"""The adapter that runs the tracked objects: vrrp_scripts, track_files and
vrrp_track_processes, from the configuration, on the asyncio loop.

:class:`Trackers` keeps each object's own state (``trackers.py``); what the
states do to instances is decided elsewhere (``track.py``).  After ``start()``
and ``reload()``, ``status()`` holds every object's state; ``on_change`` tells
of each later change.

Like keepalived, only the scripts and files that an instance or a sync group
tracks run (vrrp.c, vrrp_complete_init: "script ... is not used";
track_file.c, init_track_files); every vrrp_track_process is followed, tracked
or not, as keepalived 2.2.7 does.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import shutil
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..config.model import Node
from ..host.inotify import FileWatcher, apply_init_file
from ..host.procevents import ProcessWatcher
from ..host.scripts import ScriptError, split_command
from ..trackers import (
    DONE,
    UNLIMITED,
    FileConfig,
    ProcessQuorum,
    ScriptState,
    file_config,
    process_spec,
    script_config,
)
from .build import sync_groups

log = logging.getLogger("keepalived_py.vrrp")

SCRIPT, FILE, PROCESS = "script", "file", "process"

Status = bool | int | None
# (vrrp_script name, argv, its user words, timeout) -> exit status
RunScript = Callable[[str, list[str], tuple[str, ...] | None, float], Awaitable[int | None]]
OnChange = Callable[[str, str, Status], None]
# per tracked object (kind, name): the instances tracking it, with weight and reverse
Tracking = Mapping[tuple[str, str], Sequence[tuple[str, int, bool]]]

# keepalived resets a script's init state when an instance or sync group tracks
# it (vrrp_track.c, alloc_track_script), after the script's own init_fail set
# it: init_fail never takes effect on a script that runs -- seen with
# keepalived 2.2.7 itself ("Init state = INIT", "Result = rise - 1").  That is a
# bug against its documentation ("assume script initially is in failed state"):
# we do what the documentation says (README, "Differences").
HONOUR_INIT_FAIL = True


@dataclass
class _Script:
    name: str
    command: str
    user: tuple[str, ...] | None
    weight: tuple[int, bool]
    state: ScriptState
    loop: asyncio.Task[None] | None = None
    run: asyncio.Task[None] | None = None

    @property
    def definition(self) -> tuple[object, ...]:
        return (self.command, self.user, self.state.config)

    @property
    def argv(self) -> list[str]:
        try:
            return split_command(self.command)
        except ScriptError as err:
            log.error("VRRP_Script(%s) %s", self.name, err)
            return []


@dataclass
class _File:
    name: str
    config: FileConfig
    weight: tuple[int, bool]


@dataclass
class _Process:
    name: str
    weight: tuple[int, bool]
    quorum: ProcessQuorum


def tracked_names(root: Node) -> dict[str, set[str]]:
    """The scripts, files and processes some instance or sync group tracks."""
    used: dict[str, set[str]] = {SCRIPT: set(), FILE: set(), PROCESS: set()}
    groups = sync_groups(root)
    owners = [*root.blocks("vrrp_instance"),
              *(g for g in root.blocks("vrrp_sync_group") if g.head in groups)]
    for owner in owners:
        for kind in used:
            for name, *_ in owner.get(f"track_{kind}") or ():
                used[kind].add(name)
    return used


def _first_by_name(blocks: list[Node]) -> dict[str, Node]:
    found: dict[str, Node] = {}
    for node in blocks:
        found.setdefault(node.head, node)
    return found


class Trackers:
    """Every tracked object of a configuration, running.

    ``run(argv, user_words, timeout)`` runs a script and returns its exit status
    (negative: killed by that signal; None: timed out and killed); it must kill
    the script when cancelled.  ``process_events=False`` makes process tracking
    poll /proc instead of following the kernel's events.
    """

    def __init__(self, root: Node, run: RunScript, on_change: OnChange, *,
                 process_events: bool = True, refused: Collection[str] = ()) -> None:
        self._root = root
        self.refused = set(refused)     # vrrp_scripts the security check disabled
        self._run = run
        self._on_change = on_change
        self._scripts: dict[str, _Script] = {}
        self._files: dict[str, _File] = {}
        self._processes: dict[str, _Process] = {}
        self._filewatch = FileWatcher(lambda name, value: self._changed(FILE, name, value))
        defs = root.blocks("global_defs")
        self._procwatch = ProcessWatcher(
            lambda name, up: self._changed(PROCESS, name, up), events=process_events,
            receive_buffer=int(defs[0].get("process_monitor_rcv_bufs") or 0) if defs else 0,
            force=bool(defs[0].get("process_monitor_rcv_bufs_force")) if defs else False)
        self._started = False

    # -- life cycle --

    async def start(self, scripts: bool = True) -> None:
        """Files and processes are read at once; scripts start running unless
        ``scripts`` is False (then ``start_scripts``: keepalived's instances enter
        their first state before any script has answered)."""
        self._configure(self._root, reloading=False)
        await self._filewatch.start()
        await self._procwatch.start()
        self._started = True
        if scripts:
            self.start_scripts()

    def start_scripts(self) -> None:
        for script in self._scripts.values():
            if script.loop is None:
                self._start_script(script)

    async def reload(self, new_root: Node, refused: Collection[str] = ()) -> None:
        """Move to a new configuration.  An object whose definition is unchanged
        keeps its state and goes on; a script redefined under the same name
        carries its result over (vrrp.c, clear_diff_script) and runs at once;
        new objects start afresh ("INIT/RELOAD" for scripts)."""
        self._root = new_root
        self.refused = set(refused)
        stale = self._configure(new_root, reloading=True)
        for script in stale:
            await self._stop_script(script)
        if self._started:
            for script in self._scripts.values():
                if script.loop is None:
                    self._start_script(script)

    async def stop(self) -> None:
        for script in self._scripts.values():
            await self._stop_script(script)
        await self._filewatch.stop()
        await self._procwatch.stop()
        self._scripts, self._files, self._processes = {}, {}, {}
        self._procwatch.track({})
        self._started = False

    # -- state --

    def status(self, kind: str, name: str) -> Status:
        """A script's GOOD/BAD (None before its first result), a file's number, a
        process tracker's quorum.  KeyError for an object that does not run."""
        if kind == SCRIPT:
            return self._scripts[name].state.status
        if kind == FILE:
            return self._filewatch.value(self._files[name].name)
        if kind == PROCESS:
            return self._processes[name].quorum.have_quorum
        raise KeyError(kind)

    def names(self, kind: str) -> list[str]:
        return list({SCRIPT: self._scripts, FILE: self._files,
                     PROCESS: self._processes}[kind])

    @property
    def process_mode(self) -> str | None:
        """How processes are followed: see procwatch's EVENTS, ... POLLING."""
        return self._procwatch.mode

    @property
    def why_polling(self) -> str | None:
        """Why process events are not used, when they are not."""
        return self._procwatch.why_polling

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Per object, what keepalived's data dump shows of it (vrrp_data.c,
        dump_vscript and dump_vprocess; track_file.c, dump_track_file)."""
        scripts = [{
            "name": s.name, "command": s.command, "interval": s.state.config.interval,
            "timeout": s.state.config.timeout or 0, "weight": s.weight[0],
            "weight_reverse": s.weight[1], "rise": s.state.config.rise,
            "fall": s.state.config.fall, "result": s.state.counter,
            "init_state": s.state.init_state, "status": "GOOD" if s.state.status else "BAD",
            "user": s.user, "state": "running" if s.state.running else "idle",
        } for s in self._scripts.values()]
        files = [{
            "name": f.name, "file": self._filewatch.path(f.name),
            "status": self._filewatch.value(f.name), "weight": f.weight[0],
            "weight_reverse": f.weight[1],
        } for f in self._files.values()]
        processes = []
        for p in self._processes.values():
            spec, q = p.quorum.spec, p.quorum
            processes.append({
                "name": p.name, "process": spec.name, "parameters": list(spec.params),
                "param_match": spec.param_match, "min_processes": spec.quorum,
                "max_processes": None if spec.quorum_max == UNLIMITED else spec.quorum_max,
                "current_processes": q.count, "have_quorum": q.have_quorum,
                "weight": p.weight[0], "weight_reverse": p.weight[1],
                "terminate_delay": spec.terminate_delay, "fork_delay": spec.fork_delay,
                "fork_delay_timer_running": q.fork_delay_running,
                "terminate_delay_timer_running": q.terminate_delay_running,
                "full_command": spec.full_command,
            })
        return {"scripts": scripts, "files": files, "processes": processes}

    def dump_lines(self, tracking: Tracking | None = None) -> list[str]:
        """The "VRRP Scripts", "VRRP Track files" and "VRRP Track processes"
        sections of keepalived's data dump; ``tracking`` fills their "Tracking
        instances" lists."""
        return list(_dump(self.snapshot(), self._root, tracking or {}))

    # -- configuration --

    def _configure(self, root: Node, *, reloading: bool) -> list[_Script]:
        """Set the objects of ``root``; returns the scripts that must stop."""
        used = tracked_names(root)
        stale = self._configure_scripts(root, used[SCRIPT], reloading)
        self._configure_files(root, used[FILE], reloading)
        self._configure_processes(root)
        return stale

    def _configure_scripts(self, root: Node, used: set[str], reloading: bool) -> list[_Script]:
        old, self._scripts = self._scripts, {}
        for name, node in _first_by_name(root.blocks("vrrp_script")).items():
            command = (node.get("script") or ("",))[0]
            if not command:
                continue            # keepalived removes it: "No script set"
            if name not in used:
                log.warning("Warning - script %s is not used", name)
                continue
            if name in self.refused:
                continue            # insecure: keepalived removes it from every track_script
            config = script_config(node)
            if not HONOUR_INIT_FAIL:
                config = replace(config, init_fail=False)
            user = tuple(node.get("user")) if node.get("user") else None
            weight = node.get("weight") or (0, False)
            script = _Script(name, command, user, (weight[0] or 0, bool(weight[1])),
                             ScriptState(config, reloading=reloading))
            previous = old.get(name)
            if previous is not None and previous.definition == script.definition:
                previous.weight = script.weight
                self._scripts[name] = previous
                continue
            if previous is not None:
                script.state.carry_over(previous.state)
            self._scripts[name] = script
        return [s for name, s in old.items() if self._scripts.get(name) is not s]

    def _configure_files(self, root: Node, used: set[str], reloading: bool) -> None:
        wanted: dict[str, tuple[FileConfig, tuple[int, bool]]] = {}
        for node in root.blocks("track_file"):
            config = file_config(node)
            if config is None:
                log.error("No file set for track_file %s - ignoring", node.head)
                continue
            apply_init_file(node.head, config, reloading=reloading)
            if node.head in used and node.head not in wanted:
                weight = node.get("weight") or (1, False)
                wanted[node.head] = (config, (weight[0], bool(weight[1])))
        for name, entry in list(self._files.items()):
            if name not in wanted or wanted[name][0] != entry.config:
                self._filewatch.remove(name)
                del self._files[name]
        for name, (config, weight) in wanted.items():
            if name in self._files:
                self._files[name].weight = weight
            elif self._filewatch.add(name, config.path) is not None:
                self._files[name] = _File(name, config, weight)

    def _configure_processes(self, root: Node) -> None:
        old, self._processes = self._processes, {}
        for name, node in _first_by_name(root.blocks("vrrp_track_process")).items():
            spec = process_spec(node)
            if spec is None:
                log.error("track process '%s' process name not specified", name)
                continue
            if not spec.full_command and len(os.fsencode(spec.name)) > 15:
                log.warning("track process %s: %s is longer than a process name can be "
                            "(15 characters) and can only match with full_command", name,
                            spec.name)
            weight = node.get("weight") or (0, False)
            previous = old.get(name)
            quorum = previous.quorum if previous is not None and previous.quorum.spec == spec \
                else ProcessQuorum(spec)
            self._processes[name] = _Process(name, (weight[0] or 0, bool(weight[1])), quorum)
        self._procwatch.track({name: p.quorum for name, p in self._processes.items()})

    # -- scripts --

    def _start_script(self, script: _Script) -> None:
        script.loop = asyncio.create_task(self._script_ticks(script),
                                          name=f"vrrp_script {script.name}")

    async def _stop_script(self, script: _Script) -> None:
        for task in (script.loop, script.run):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        script.loop = script.run = None

    async def _script_ticks(self, script: _Script) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = script.state.next_run_at(now)
            if due > now:
                await asyncio.sleep(due - now)
                continue
            if script.state.begin(now):
                script.run = asyncio.create_task(self._run_script(script))
            else:
                log.info("Track script %s is already running, expect idle - skipping run",
                         script.name)

    async def _run_script(self, script: _Script) -> None:
        state = script.state
        try:
            exit_status = await self._run(script.name, script.argv, script.user,
                                          state.config.run_timeout)
        except asyncio.CancelledError:
            state.running = False
            raise
        except Exception:
            log.exception("VRRP_Script(%s) could not be run", script.name)
            exit_status = 127
        previous = state.last_status
        changed = state.result(asyncio.get_running_loop().time(), exit_status)
        if exit_status is not None and exit_status >= 0 and exit_status != previous:
            log.info("Script `%s` now returning %d", script.name, exit_status)
        if changed:
            log.info("VRRP_Script(%s) %s", script.name, _outcome(exit_status))
            self._changed(SCRIPT, script.name, state.status)

    def _changed(self, kind: str, name: str, value: Status) -> None:
        try:
            self._on_change(kind, name, value)
        except Exception:       # the caller's trouble must not stop the trackers
            log.exception("tracker change callback for %s %s", kind, name)


def _outcome(exit_status: int | None) -> str:
    if exit_status == 0:
        return "succeeded"
    if exit_status is None:
        return "timed_out"
    if exit_status < 0:
        return f"failed (due to signal {-exit_status})"
    return f"failed (exited with status {exit_status})"


# -- keepalived's data dump ---------------------------------------------------------


def _dump(snap: dict[str, list[dict[str, Any]]], root: Node,
          tracking: Tracking) -> Iterator[str]:

    def reverse(flag: bool) -> str:
        return " reverse" if flag else ""

    def tracked_by(kind: str, name: str) -> Iterator[str]:
        users = tracking.get((kind, name), ())
        if users:
            yield "   Tracking instances :"
        for instance, weight, rev in users:
            yield f"     {instance}, weight {weight}{reverse(rev)}"

    if snap["scripts"]:
        yield "------< VRRP Scripts >------"
    for s in snap["scripts"]:
        yield f" VRRP Script = {s['name']}"
        yield f"   Command = {_command_words(split_command(s['command']))}"
        yield f"   Interval = {int(s['interval'])} sec"
        yield f"   Timeout = {int(s['timeout'])} sec"
        yield f"   Weight = {s['weight']}{reverse(s['weight_reverse'])}"
        yield f"   Rise = {s['rise']}"
        yield f"   Fall = {s['fall']}"
        yield f"   Result = {s['result']}"
        yield "   Insecure = no"
        yield f"   Init state = {'unknown' if s['init_state'] == DONE else s['init_state']}"
        yield f"   Status = {s['status']}"
        yield f"   Script uid:gid = {_uid_gid(s['user'], root)}"
        yield "   VRRP instances :"
        yield from tracked_by(SCRIPT, s["name"])
        yield f"   State = {s['state']}"
    if snap["files"]:
        yield "------< VRRP Track files >------"
    for f in snap["files"]:
        yield f" Track file = {f['name']}"
        yield f"   File = {f['file']}"
        yield f"   Status = {f['status']}"
        yield f"   Weight = {f['weight']}{reverse(f['weight_reverse'])}"
        yield from tracked_by(FILE, f["name"])
    if snap["processes"]:
        yield "------< VRRP Track processes >------"
    for p in snap["processes"]:
        yield f" VRRP Track process = {p['name']}"
        yield f"   Process = {p['process']}"
        if p["parameters"]:
            yield f"   Parameters = {' '.join(p['parameters'])}"
        if p["param_match"]:
            yield "   Param match" + {"exact": "", "partial": " = partial",
                                      "initial": " = initial"}[p["param_match"]]
        yield f"   Min processes = {p['min_processes']}"
        if p["max_processes"] is not None:
            yield f"   Max processes = {p['max_processes']}"
        yield f"   Current processes = {p['current_processes']}"
        yield f"   Have quorum = {'true' if p['have_quorum'] else 'false'}"
        yield f"   Weight = {p['weight']}{reverse(p['weight_reverse'])}"
        yield f"   Terminate delay = {p['terminate_delay']:f}s"
        yield f"   Fork delay = {p['fork_delay']:f}s"
        yield f"   Fork delay timer {'' if p['fork_delay_timer_running'] else 'not '}running"
        yield (f"   Terminate delay timer "
               f"{'' if p['terminate_delay_timer_running'] else 'not '}running")
        yield f"   Full command = {'true' if p['full_command'] else 'false'}"
        yield from tracked_by(PROCESS, p["name"])


def _command_words(argv: list[str]) -> str:
    """keepalived shows the program by its real path, each word quoted."""
    words = list(argv)
    if words:
        found = shutil.which(words[0]) if "/" not in words[0] else words[0]
        if found and os.path.exists(found):
            words[0] = os.path.realpath(found)
    return " ".join(f"'{w}'" for w in words)


def _uid_gid(user: tuple[str, ...] | None, root: Node) -> str:
    """The script's user: its own ``user``, else global_defs' ``script_user``, else
    keepalived_script if that user exists, else root."""
    if user is None:
        defs = root.blocks("global_defs")
        user = tuple(defs[0].get("script_user") or ()) if defs else ()
        if not user:
            user = ("keepalived_script",)
    try:
        entry = pwd.getpwnam(user[0])
    except KeyError:
        return "0:0"
    gid = entry.pw_gid
    if len(user) > 1:
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(user[1].lstrip(":")).gr_gid
    return f"{entry.pw_uid}:{gid}"
