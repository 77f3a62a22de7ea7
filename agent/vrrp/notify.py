"""VRRP notifications as keepalived 2.2.7 sends them (vrrp/vrrp_notify.c, lib/notify.c).

On every state change of an instance or a sync group keepalived runs the
state's own script (``notify_master`` ...), then the generic ``notify`` script
with ``INSTANCE|GROUP NAME STATE PRIORITY`` appended, then writes a line such as
``INSTANCE "VI_1" MASTER 150`` to the notify FIFOs.  The decisions are pure
functions of the configuration and the event (:func:`instance_notices` ...);
:class:`Notifier` carries them out; ``host/fifo.py`` owns the FIFOs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config.model import Node
from ..host.fifo import notify_fifos
from ..host.scripts import (
    KEEPALIVED_UMASK,
    ConfigScripts,
    ScriptCommand,
    ScriptProcess,
    config_scripts,
    spawn_script,
)

log = logging.getLogger("keepalived_py.vrrp")

MASTER, BACKUP, FAULT, STOP, DELETED = "MASTER", "BACKUP", "FAULT", "STOP", "DELETED"
STATES = (MASTER, BACKUP, FAULT, STOP, DELETED)
MASTER_RX_LOWER_PRI = "MASTER_RX_LOWER_PRI"
MASTER_PRIORITY, BACKUP_PRIORITY = "MASTER_PRIORITY", "BACKUP_PRIORITY"
INSTANCE, GROUP = "INSTANCE", "GROUP"
# keepalived gives the scripts run for STOP this long before it SIGKILLs them and exits
STOP_SCRIPT_WAIT = 1.0

_STATE_KEYWORDS = {"notify_master": MASTER, "notify_backup": BACKUP, "notify_fault": FAULT,
                   "notify_stop": STOP, "notify_deleted": DELETED}


# -- decisions ------------------------------------------------------------------

def fifo_line(kind: str, name: str, state: str, priority: int) -> str:
    return f'{kind} "{name}" {state} {priority}\n'


def generic_argv(argv: Sequence[str], kind: str, name: str, state: str,
                 priority: int) -> tuple[str, ...]:
    """The generic ``notify`` script's argv: the configured words and 4 more."""
    return (*argv, kind, name, state, str(priority))


@dataclass(frozen=True)
class NotifySettings:
    """The notify configuration of one instance or sync group."""

    kind: str                                       # INSTANCE or GROUP
    name: str
    by_state: Mapping[str, ScriptCommand] = field(default_factory=dict)
    generic: ScriptCommand | None = None
    rx_lower_pri: ScriptCommand | None = None       # instances only
    notify_deleted: bool = False                    # instances only
    priority_changes: bool = False                  # instances only
    sync_group: str | None = None                   # an instance's group


@dataclass(frozen=True)
class Launch:
    command: ScriptCommand
    wait: bool = False          # a STOP script keepalived waits for (then kills) at shutdown


@dataclass(frozen=True)
class Notices:
    """What one event makes happen: scripts to start, in order, and FIFO lines."""

    launches: tuple[Launch, ...] = ()
    lines: tuple[str, ...] = ()


def _state_notices(cfg: NotifySettings, state: str, priority: int,
                   own_stop_waits: bool) -> Notices:
    if state not in STATES:
        raise ValueError(f"no notification for state {state!r}")
    launches: list[Launch] = []
    own = cfg.by_state.get(state)
    if own is not None:
        launches.append(Launch(own, wait=own_stop_waits and state == STOP))
    if cfg.generic is not None:
        argv = generic_argv(cfg.generic.argv, cfg.kind, cfg.name, state, priority)
        launches.append(Launch(cfg.generic.with_args(*argv[len(cfg.generic.argv):]),
                               wait=state == STOP))
    return Notices(tuple(launches), (fifo_line(cfg.kind, cfg.name, state, priority),))


def instance_notices(cfg: NotifySettings, state: str, priority: int, *,
                     notified_before: bool = False, group_state: str | None = None) -> Notices:
    """An instance entered ``state`` (send_instance_notifies).

    Nothing is sent when the instance has sent notifications before and its sync
    group is already in that state (the group's notification speaks for it).  An
    instance without ``notify_deleted`` reports DELETED as FAULT.
    """
    if notified_before and cfg.sync_group is not None and group_state == state:
        return Notices()
    if state == DELETED and not cfg.notify_deleted:
        state = FAULT
    return _state_notices(cfg, state, priority, own_stop_waits=True)


def deleted_notices(cfg: NotifySettings, state_before: str, priority: int) -> Notices:
    """An instance disappeared at a reload (clear_diff_vrrp): DELETED with
    ``notify_deleted``; without it FAULT, unless it was in FAULT already."""
    if not cfg.notify_deleted and state_before == FAULT:
        return Notices()
    return instance_notices(cfg, DELETED, priority)


def group_notices(cfg: NotifySettings, state: str) -> Notices:
    """A sync group entered ``state`` (send_group_notifies): its priority is always 0,
    and keepalived does not wait for its own notify_stop script."""
    if state == DELETED:
        raise ValueError("sync groups have no DELETED notification")
    return _state_notices(cfg, state, 0, own_stop_waits=False)


def priority_notices(cfg: NotifySettings, state: str, priority: int) -> Notices:
    """The effective priority changed: a FIFO line with ``notify_priority_changes``."""
    if not cfg.priority_changes:
        return Notices()
    event = MASTER_PRIORITY if state == MASTER else BACKUP_PRIORITY
    return Notices((), (fifo_line(INSTANCE, cfg.name, event, priority),))


def rx_lower_notices(cfg: NotifySettings, priority: int) -> Notices:
    """A master heard a lower priority master (send_event_notify)."""
    launches = (Launch(cfg.rx_lower_pri),) if cfg.rx_lower_pri is not None else ()
    return Notices(launches, (fifo_line(INSTANCE, cfg.name, MASTER_RX_LOWER_PRI, priority),))


def notify_settings(root: Node, scripts: ConfigScripts) -> dict[str, NotifySettings]:
    """Every instance's and group's settings, keyed ``INSTANCE:name`` / ``GROUP:name``
    in configuration order (instances first)."""
    glob = root.blocks("global_defs")
    global_changes = bool(glob and glob[0].get("vrrp_notify_priority_changes"))
    groups = root.blocks("vrrp_sync_group")
    group_of: dict[str, Node] = {}
    for group in groups:
        for words in group.get("group") or ():
            for member in words:
                group_of.setdefault(member, group)
    out: dict[str, NotifySettings] = {}
    for node in root.blocks("vrrp_instance"):
        group = group_of.get(node.head)
        changes = node.values.get("notify_priority_changes")
        if changes is None and group is not None:
            changes = group.values.get("notify_priority_changes")
        out[f"{INSTANCE}:{node.head}"] = NotifySettings(
            INSTANCE, node.head, _by_state(scripts, "vrrp_instance", node.head),
            scripts.get("vrrp_instance", node.head, "notify"),
            scripts.get("vrrp_instance", node.head, "notify_master_rx_lower_pri"),
            notify_deleted="notify_deleted" in node.values,
            priority_changes=global_changes if changes is None else bool(changes),
            sync_group=group.head if group is not None else None)
    for group in groups:
        out[f"{GROUP}:{group.head}"] = NotifySettings(
            GROUP, group.head, _by_state(scripts, "vrrp_sync_group", group.head),
            scripts.get("vrrp_sync_group", group.head, "notify"))
    return out


def _by_state(scripts: ConfigScripts, kind: str, name: str) -> dict[str, ScriptCommand]:
    out = {}
    for keyword, state in _STATE_KEYWORDS.items():
        command = scripts.get(kind, name, keyword)
        if command is not None:
            out[state] = command
    return out


# -- the notifier -----------------------------------------------------------------

class Notifier:
    """Notifications for one VRRP process: scripts and FIFO lines on every event.

    The runtime calls :meth:`instance`, :meth:`group`, :meth:`priority_changed`,
    :meth:`rx_lower_priority` and :meth:`deleted` as things happen (inside the
    event loop), :meth:`stop` at shutdown, then :meth:`close`.
    """

    def __init__(self, root: Node, scripts: ConfigScripts | None = None, *,
                 run_global_fifo_script: bool = True) -> None:
        self._run_global_fifo_script = run_global_fifo_script
        self._notified: set[str] = set()
        self._group_state: dict[str, str] = {}
        self._waited: list[ScriptProcess] = []
        self._previous: dict[str, NotifySettings] = {}
        self._configure(root, scripts)

    def _configure(self, root: Node, scripts: ConfigScripts | None) -> None:
        self.scripts = scripts if scripts is not None else config_scripts(root)
        glob = root.blocks("global_defs")
        umask = glob[0].get("umask") if glob else None
        self.umask = KEEPALIVED_UMASK if umask is None else umask
        self.write_states_on_reload = bool(glob and glob[0].get(
            "fifo_write_vrrp_states_on_reload"))
        self.settings = notify_settings(root, self.scripts)
        self.priorities = {node.head: node.get("priority") for node in root.blocks("vrrp_instance")}
        self.fifos = [f for f in notify_fifos(root, self.scripts, umask=self.umask,
                                              run_global_script=self._run_global_fifo_script)
                      if f is not None]

    def start(self) -> None:
        """Open the FIFOs (global first) and start their scripts.  A FIFO that fails to
        open is kept: its script, if started, ends at :meth:`close`, as in keepalived."""
        for fifo in self.fifos:
            fifo.open()

    # events

    def instance(self, name: str, state: str, priority: int) -> bool:
        """Notify; False when the instance's sync group speaks for it (nothing sent)."""
        cfg = self._instance(name)
        notices = instance_notices(
            cfg, state, priority, notified_before=name in self._notified,
            group_state=self._group_state.get(cfg.sync_group or ""))
        if notices.lines:
            self._notified.add(name)
        self.carry_out(notices)
        return bool(notices.lines)

    def group(self, name: str, state: str) -> None:
        self._group_state[name] = state
        self.carry_out(group_notices(self._group(name), state))

    def priority_changed(self, name: str, state: str, priority: int) -> None:
        self.carry_out(priority_notices(self._instance(name), state, priority))

    def rx_lower_priority(self, name: str, priority: int) -> None:
        self.carry_out(rx_lower_notices(self._instance(name), priority))

    def deleted(self, name: str, state_before: str, priority: int) -> None:
        """An instance the reload removed (call after :meth:`reload`)."""
        cfg = self._previous.get(f"{INSTANCE}:{name}") or self._instance(name)
        self.carry_out(deleted_notices(cfg, state_before, priority))

    def restate(self, name: str, state: str, priority: int = 0, group: bool = False) -> None:
        """``fifo_write_vrrp_states_on_reload``: a FIFO line only, for a state that did not
        change at a reload."""
        kind = GROUP if group else INSTANCE
        self._write(fifo_line(kind, name, state, 0 if group else priority))

    def carry_out(self, notices: Notices) -> None:
        for launch in notices.launches:
            command = launch.command
            process = spawn_script(command.argv, command.user, umask=self.umask,
                                   shell=command.shell)
            if process is not None and launch.wait:
                self._waited.append(process)
        for line in notices.lines:
            self._write(line)

    def _write(self, line: str) -> None:
        for fifo in self.fifos:
            fifo.write(line)

    def _instance(self, name: str) -> NotifySettings:
        return self.settings.get(f"{INSTANCE}:{name}") or NotifySettings(INSTANCE, name)

    def _group(self, name: str) -> NotifySettings:
        return self.settings.get(f"{GROUP}:{name}") or NotifySettings(GROUP, name)

    # life cycle

    async def stop(self, priorities: Mapping[str, int] | None = None) -> None:
        """Shutdown (notify_shutdown): STOP for every instance, with its priority from
        ``priorities`` (else the configured one), then for every group; then wait up to a
        second for the STOP scripts and SIGKILL what is left."""
        priorities = {**self.priorities, **(priorities or {})}
        for cfg in self.settings.values():
            if cfg.kind == INSTANCE:
                self.instance(cfg.name, STOP, priorities[cfg.name])
        for cfg in self.settings.values():
            if cfg.kind == GROUP:
                self.group(cfg.name, STOP)
        waited, self._waited = self._waited, []
        if waited:
            await asyncio.wait([p.exited for p in waited], timeout=STOP_SCRIPT_WAIT)
        for process in waited:
            if process.running:
                process.kill_group(signal.SIGKILL)
                await process.wait()

    async def close(self, *, final: bool = True) -> None:
        """Close the FIFOs and end their scripts.  At the final close keepalived 2.2.7
        removes the FIFOs it made only when a ``vrrp_notify_fifo`` is open (a lone
        global ``notify_fifo`` stays behind); at a reload it always does."""
        unlink = not final or any(f.label == "vrrp_" and f.fd is not None for f in self.fifos)
        for fifo in self.fifos:
            await fifo.close(unlink=unlink)
        self.fifos = []

    async def reload(self, root: Node, scripts: ConfigScripts | None = None) -> None:
        """A new configuration: like keepalived, the FIFOs are closed (their scripts get
        SIGTERM, FIFOs we made are removed) and opened again with their scripts
        started afresh.  Instances and groups keep their notification history;
        :meth:`deleted` still knows the removed instances' scripts."""
        await self.close(final=False)
        self._previous = self.settings
        self._configure(root, scripts)
        self._notified &= {c.name for c in self.settings.values() if c.kind == INSTANCE}
        groups = {c.name for c in self.settings.values() if c.kind == GROUP}
        self._group_state = {k: v for k, v in self._group_state.items() if k in groups}
        self.start()

