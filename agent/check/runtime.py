"""The checker engine on asyncio: timers, probes, notifications and the data plane.

:class:`CheckerRuntime` owns a :class:`~.engine.Pool`.  One timer follows the
engine's next deadline.  TCP_CHECKs, the checks that come by the thousand, run
on one :class:`~.connect.Connects` without a task each; every other probe runs
as its own task.  Either way a slow server delays nobody.  The actions come
back here and are carried out: ``RS``/``VS`` lines to the notify FIFOs,
notify_up/notify_down and quorum_up/quorum_down scripts, SMTP alerts, log
lines, and the wanted IPVS table to the data plane, once per loop turn whatever
the number of changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config.model import Node
from ..host.addresses import AddressWatch
from ..host.fifo import NotifyFifo, lvs_notify_fifos
from ..host.inotify import FileWatcher
from ..host.mail import (
    Mailer,
    SmtpSettings,
    checker_body,
    real_server_alert,
    removal_body,
    virtual_server_alert,
)
from ..host.scripts import KEEPALIVED_UMASK, ConfigScripts, spawn_script
from . import engine as E
from .connect import Connects, Endpoint
from .probe import ProbeResult
from .spec import CheckerSpec, LvsConfig, RealServerSpec, VirtualServerSpec

log = logging.getLogger("keepalived_py.check")

DRAIN_POLL = 2.0            # how often draining servers' connections are looked at
PROBES_PER_TURN = 200       # probes started in one turn of the event loop at most
TICK = 0.01                 # a probe starts at most this late


class Probes(Protocol):
    """What runs the checks (probing.Prober): a TCP_CHECK's resolved endpoint, run here on
    one Connects; any other check as a coroutine."""

    def known_endpoint(self, spec: CheckerSpec) -> Endpoint | ProbeResult | None: ...

    def endpoint(self, vs: VirtualServerSpec, rs: RealServerSpec,
                 spec: CheckerSpec) -> Endpoint | ProbeResult: ...

    def __call__(self, vs: VirtualServerSpec, rs: RealServerSpec, spec: CheckerSpec,
                 url: int) -> Awaitable[ProbeResult]: ...


class DataPlane(Protocol):
    """Where the wanted table goes: the kernel's IPVS, or nothing when there is none."""

    name: str

    async def read(self, servers: list[VirtualServerSpec]) -> E.InKernel:
        """Read the kernel's table at start: the real servers of ours serving now, and
        those under our services the configuration no longer has, to drain."""
        ...

    async def apply(self, wanted: E.Wanted) -> None: ...
    async def connections(self) -> dict[tuple[E.VsKey, E.RsKey], int]: ...
    async def counters(self) -> dict[E.VsKey, dict[str, Any]]: ...
    async def stop(self, wanted: E.Wanted, flush: str) -> None: ...
    def describe(self) -> dict[str, Any]:
        """What the status shows of it: its name, whether it works (or why not), ..."""
        ...


@dataclass
class Settings:
    """The global settings the checker process acts on."""

    rs_init_notifies: bool = False
    no_checker_emails: bool = False
    lvs_flush: bool = False
    flush_on_stop: str = "none"         # none | vs | full (lvs_flush_on_stop)
    drain_time: float = E.DEFAULT_DRAIN_TIME
    umask: int = KEEPALIVED_UMASK
    run_global_fifo_script: bool = True

    @classmethod
    def from_root(cls, root: Node) -> Settings:
        glob = root.values.get("global_defs")
        if glob is None:
            return cls(run_global_fifo_script=not root.blocks("vrrp_instance"))
        flush = glob.values.get("lvs_flush_on_stop")
        umask = glob.get("umask")
        return cls(rs_init_notifies=bool(glob.values.get("rs_init_notifies", False)),
                   no_checker_emails=bool(glob.values.get("no_checker_emails", False)),
                   lvs_flush="lvs_flush" in glob.values,
                   flush_on_stop="none" if flush is None else
                   ("vs" if flush == "VS" else "full"),
                   drain_time=float(glob.get("lvs_drain_time")),
                   umask=KEEPALIVED_UMASK if umask is None else umask,
                   # keepalived runs the global FIFO's script in one process only: VRRP's
                   # when there is one
                   run_global_fifo_script=not root.blocks("vrrp_instance"))


class Notifications:
    """RS/VS notifications as keepalived sends them (ipwrapper.c do_rs_notifies,
    do_vs_notifies): the script, the FIFO line, the mail."""

    def __init__(self, root: Node, scripts: ConfigScripts, settings: Settings, *,
                 previous: ConfigScripts | None = None) -> None:
        self.scripts = scripts
        # while a reload's actions are carried out: the scripts of the configuration it
        # replaced, for the servers it removed
        self.previous = previous
        self.settings = settings
        self.fifos: list[NotifyFifo] = lvs_notify_fifos(
            root, scripts, run_global_script=settings.run_global_fifo_script,
            umask=settings.umask)
        self.mailer = Mailer(SmtpSettings.from_config(root))
        self.lines: list[str] = []      # the last FIFO lines, for people and tests

    def start(self) -> None:
        for fifo in self.fifos:
            fifo.open()

    def carry_out(self, action: E.Action) -> None:
        if isinstance(action, E.RsNotify):
            keyword = "notify_up" if action.up else "notify_down"
            self._script("real_server", action.rs.script_name, keyword, action.removed)
            self._line(action.fifo_line)
        elif isinstance(action, E.VsNotify):
            keyword = "quorum_up" if action.up else "quorum_down"
            self._script("virtual_server", action.vs.script_name, keyword, action.removed)
            self._line(action.fifo_line)
            if action.vs.smtp_alert:
                self._mail(virtual_server_alert(self.mailer.settings.router_id, action.vs.name,
                                                action.up, action.mail_body))
        elif isinstance(action, E.RsMail):
            body = checker_body(action.kind, action.up) if action.kind else \
                removal_body(action.stopping)
            self._mail(real_server_alert(self.mailer.settings.router_id,
                                         action.rs.name(action.vs.protocol), action.vs.name,
                                         action.alive, body))

    def _script(self, kind: str, name: str, keyword: str, removed: bool = False) -> None:
        scripts = self.previous if removed and self.previous is not None else self.scripts
        command = scripts.get(kind, name, keyword)
        if command is not None:
            spawn_script(command.argv, command.user, umask=self.settings.umask,
                         shell=command.shell)

    def _line(self, line: str) -> None:
        self.lines = [*self.lines[-99:], line]
        for fifo in self.fifos:
            fifo.write(line + "\n")

    def _mail(self, alert: Any) -> None:  # noqa: ANN401 - host.mail.Alert
        if self.mailer.settings.enabled:
            self.mailer.send(alert.subject, alert.body)

    async def close(self, *, final: bool = True) -> None:
        for fifo in self.fifos:
            await fifo.close(unlink=not final or fifo.created)
        self.fifos = []
        await self.mailer.close()


@dataclass
class CheckerRuntime:
    lvs: LvsConfig
    root: Node
    scripts: ConfigScripts
    prober: Probes                      # replaced at reload
    dataplane: DataPlane
    clock: Callable[[], float] = time.monotonic
    settings: Settings = field(init=False)
    on_change: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.settings = Settings.from_root(self.root)
        self.pool = E.Pool(self.lvs.servers, rs_init_notifies=self.settings.rs_init_notifies,
                           drain_time=self.settings.drain_time,
                           no_checker_emails=self.settings.no_checker_emails)
        self.notifications = Notifications(self.root, self.scripts, self.settings)
        self.files = FileWatcher(self._file_changed)
        self.addresses: AddressWatch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0           # the deadline the timer fires for
        self._fired_at = -TICK          # when the timer last fired
        self._behind = False            # it left due probes for the next turn
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connects = Connects(self._finish)
        self._dirty = False
        self._stopping = False
        self.probes_run = 0
        self.table_errors: list[str] = []

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.connects.attach()
        self.notifications.start()
        values = self._watch_files()
        await self.files.start()
        adopt = await self.dataplane.read(self.lvs.servers)
        local = None
        if any(vs.ha_suspend for vs in self.lvs.servers):
            self.addresses = AddressWatch(self.address_changed)
            local = await self.addresses.start()
            self._spawn(self.addresses.follow())
        actions = self.pool.start(self.clock(), file_values=values, adopt=adopt,
                                  local_addresses=local)
        self._carry_out(actions)
        await self._sync_table()
        self._arm()
        self._spawn(self._drain_loop())

    async def stop(self, *, keep_table: bool = False) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        if self.addresses is not None:
            self.addresses.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.connects.close()
        before = self.pool.wanted()
        actions = self.pool.stop(self.settings.flush_on_stop)
        self._carry_out(actions)
        if not keep_table:
            await self.dataplane.stop(before, self.settings.flush_on_stop)
        await self.files.stop()
        await self.notifications.close()

    async def reload(self, lvs: LvsConfig, root: Node, scripts: ConfigScripts) -> E.ReloadReport:
        previous = self.scripts
        self.lvs, self.root, self.scripts = lvs, root, scripts
        self.settings = Settings.from_root(root)
        self.pool.drain_time = self.settings.drain_time
        self.pool.rs_init_notifies = self.settings.rs_init_notifies
        self.pool.no_checker_emails = self.settings.no_checker_emails
        await self.notifications.close(final=False)
        self.notifications = Notifications(root, scripts, self.settings, previous=previous)
        self.notifications.start()
        values = self._watch_files()
        report = self.pool.reload(lvs.servers, self.clock(), file_values=values)
        self._carry_out(report.actions)
        self.notifications.previous = None
        await self._sync_table()
        self._arm()
        return report

    def _watch_files(self) -> dict[str, int]:
        """Watch the track files FILE_CHECKs use; their values now."""
        wanted = {c.file for rs in (r for vs in self.lvs.servers for r in vs.reals)
                  for c in rs.checkers if c.kind == "FILE_CHECK" and c.file}
        paths = {str(n.head): n.get("file") for n in self.root.blocks("track_file")}
        for name in set(self.files.names()) - wanted:
            self.files.remove(name)
        values = {}
        for name in sorted(wanted):
            if name in self.files.names():
                values[name] = self.files.value(name)
                continue
            path = paths.get(name)
            if not path:
                log.error("FILE_CHECK: track_file %s is not configured - the checker fails",
                          name)
                continue
            value = self.files.add(name, str(path))
            if value is not None:
                values[name] = value
        return values

    # -- timers and probes ----------------------------------------------------------------
    def _arm(self) -> None:
        if self._stopping:
            return
        # one wake-up per TICK at most starts every probe due by then: thousands of
        # checkers each with its own deadline would wake the loop for every probe
        floor = 0.0 if self._behind else self._fired_at + TICK
        if self._timer is not None:
            # after each result: a timer armed no later than needed stays (re-arming
            # per probe was a tenth of the checker's CPU at thousands of checks/s)
            bound = self.pool.earliest()
            if bound is not None and self._armed_for <= max(bound, floor):
                return
        deadline = self.pool.next_deadline()
        if deadline is not None:
            deadline = max(deadline, floor)
        if self._timer is not None:
            if deadline is not None and self._armed_for <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        self._armed_for = deadline
        self._timer = loop.call_later(max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._fired_at = self.clock()
        # a bounded number per loop turn: the rest start on the next turn, after the
        # heartbeat and the control requests had theirs (a turn that starts thousands
        # of probes gets the process killed as hung)
        servers = self.pool.servers
        runs = self.pool.due(self._fired_at, limit=PROBES_PER_TURN)
        self._behind = len(runs) == PROBES_PER_TURN
        for run in runs:
            if run.spec.kind != "TCP_CHECK":
                self._spawn(self._run(run))
                continue
            self.probes_run += 1
            endpoint = self.prober.known_endpoint(run.spec)
            if endpoint is None:
                vs = servers[run.ref[0]]
                endpoint = self.prober.endpoint(vs.spec, vs.reals[run.ref[1]].spec, run.spec)
            if isinstance(endpoint, ProbeResult):
                asyncio.get_running_loop().call_soon(self._finish, run.ref, endpoint)
            else:
                self.connects.connect(endpoint, run.ref)
        self._arm()

    async def _run(self, run: E.RunProbe) -> None:
        vs = self.pool.servers.get(run.ref[0])
        rs = vs.reals.get(run.ref[1]) if vs is not None else None
        if vs is None or rs is None:
            return                      # a reload took it away before the probe began
        self.probes_run += 1
        try:
            outcome = await self.prober(vs.spec, rs.spec, run.spec, run.url)
        except Exception as err:  # noqa: BLE001 - a probe's bug is a failed check, logged
            log.exception("%s probe of %s failed unexpectedly", run.spec.kind,
                          rs.spec.name(vs.spec.protocol))
            outcome = ProbeResult(False, f"{type(err).__name__}: {err}")
        self._finish(run.ref, outcome)

    def _finish(self, ref: E.CheckerRef, outcome: ProbeResult) -> None:
        if self._stopping:
            return
        actions = self.pool.result(ref, outcome.ok, self.clock(), error=outcome.error,
                                   weight=outcome.weight, inconclusive=outcome.inconclusive)
        if actions:
            self._carry_out(actions)
        self._arm()

    def _file_changed(self, name: str, value: int) -> None:
        self._carry_out(self.pool.file_changed(name, value, self.clock()))

    def address_changed(self, address: str, present: bool) -> None:
        self._carry_out(self.pool.address_changed(address, present))
        self._arm()

    # -- actions ----------------------------------------------------------------------------
    def _carry_out(self, actions: list[E.Action]) -> None:
        changed = False
        for action in actions:
            if isinstance(action, E.Log):
                log.info("%s", action.text)
            elif isinstance(action, E.TableChanged):
                changed = True
            else:
                self.notifications.carry_out(action)
        if changed and not self._dirty and not self._stopping:
            self._dirty = True
            asyncio.get_running_loop().call_soon(lambda: self._spawn(self._sync_table()))
        if self.on_change is not None and actions:
            self.on_change()

    async def _sync_table(self) -> None:
        self._dirty = False
        try:
            await self.dataplane.apply(self.pool.wanted())
        except Exception as err:  # noqa: BLE001 - kept and retried by the reconcile loop
            log.error("%s: %s", self.dataplane.name, err)

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_POLL)
            if self.pool.next_drain_deadline() is None:
                continue
            connections = await self.dataplane.connections()
            self._carry_out(self.pool.drained(self.clock(), connections))

    def _spawn(self, coro: Any) -> None:  # noqa: ANN401 - a coroutine
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
