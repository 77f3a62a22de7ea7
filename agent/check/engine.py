"""The real-server state machine and the virtual-server quorum, without I/O.

keepalived 2.2.7's semantics (check_tcp.c, check_http.c, check_misc.c
epilogs; ipwrapper.c for the pool): a checker is scheduled, its probe's result
comes back, the checker goes up or down after its retries, a real server is
in the pool only while every checker is up, and the virtual server's quorum
swaps the sorry server in and out.  The engine never opens a socket, reads a
clock or runs a script: each call takes the time and returns actions (run
this probe, notify this, log that), and it keeps the IPVS table it wants
(``VirtualServer.table``) for the data plane to make true.

Where 2.2.7 has a bug the engine does better, and says so where it does:
a MISC_CHECK's dynamic weight is taken back whenever it fails, also by a
signal or a timeout (keepalived #2720), and its last exit status is forgotten
then (#2412); a down checker keeps the cadence it was given (delay_before_retry
while retrying, then delay_loop), which 2.2.7's TCP_CHECK only got later.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .spec import (
    IPVS_WEIGHT_LIMIT,
    WEIGHT_FAULT,
    CheckerSpec,
    RealServerSpec,
    VirtualServerSpec,
)

BOOTSTRAP_DELAY = 1.0           # keepalived's first check comes 1 s after start, plus warmup
DEFAULT_DRAIN_TIME = 60.0

RsKey = tuple[str, int]
VsKey = tuple[Any, ...]
CheckerRef = tuple[VsKey, RsKey, int]
Wanted = dict[VsKey, tuple[VirtualServerSpec, dict[RsKey, tuple[RealServerSpec, int]]]]
"""The tables we want: each service with its destinations and their weights."""


def real_weight(weight: int) -> int:
    """What IPVS is given for an effective weight (keepalived's real_weight)."""
    return max(0, min(weight, IPVS_WEIGHT_LIMIT))


# -- actions ---------------------------------------------------------------------------

class RunProbe(NamedTuple):
    """A probe to start (a tuple: thousands are made a second)."""

    ref: CheckerRef
    spec: CheckerSpec
    url: int = 0                        # HTTP_GET / SSL_GET: which URL


@dataclass(frozen=True)
class RsNotify:
    """notify_up / notify_down of a real server, and its ``RS ...`` FIFO line.
    ``removed``: the server is gone from the configuration a reload brought, so its
    script is the one the previous configuration gave it (as keepalived runs it)."""

    vs: VirtualServerSpec
    rs: RealServerSpec
    up: bool
    stopping: bool = False
    removed: bool = False

    @property
    def fifo_line(self) -> str:
        """keepalived's notify_fifo line: ``RS [rip]:tcp:80 [vip]:tcp:80 UP``."""
        return f"RS {self.rs.name(self.vs.protocol)} {self.vs.name} " \
               f"{'UP' if self.up else 'DOWN'}"


@dataclass(frozen=True)
class VsNotify:
    """quorum_up / quorum_down, the ``VS ...`` FIFO line and the VS mail.
    ``removed``: as for RsNotify, a virtual server a reload removed."""

    vs: VirtualServerSpec
    up: bool
    init: bool = False
    threshold: int = 0
    weight_sum: int = 0
    stopping: bool = False
    removed: bool = False

    @property
    def fifo_line(self) -> str:
        """keepalived's notify_fifo line: ``VS [vip]:tcp:80 UP``."""
        return f"VS {self.vs.name} {'UP' if self.up else 'DOWN'}"

    @property
    def mail_body(self) -> str:
        if self.stopping:
            return "=> Shutting down <="
        what = ("Starting with quorum up" if self.init else "Gained quorum") if self.up else \
            ("Starting with quorum down" if self.init else "Lost quorum")
        return f"=> {what} {self.vs.quorum}+{self.vs.hysteresis}={self.threshold} <= " \
               f"{self.weight_sum} <="


@dataclass(frozen=True)
class RsMail:
    """An SMTP alert about a real server (smtp_alert): a checker's result (``kind``,
    its ``up``), or its removal (``kind`` None); ``alive`` is the server's state."""

    vs: VirtualServerSpec
    rs: RealServerSpec
    alive: bool
    kind: str | None = None
    up: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class Log:
    text: str


@dataclass(frozen=True)
class TableChanged:
    """The wanted IPVS table of this virtual server changed."""

    vs: VsKey


Action = RunProbe | RsNotify | VsNotify | RsMail | Log | TableChanged


# -- state -----------------------------------------------------------------------------

@dataclass(eq=False)
class Checker:
    spec: CheckerSpec
    up: bool = True                     # keepalived's is_up
    has_run: bool = False
    retry_it: int = 0
    cur_weight: int = 0                 # what it adds to the real server's weight
    next_run: float | None = None
    running: bool = False
    enabled: bool = True                # ha_suspend: False while the VIP is not here
    url: int = 0                        # HTTP: the URL to fetch next
    failed_url: int | None = None       # HTTP: the URL that failed
    last_ran: float = 0.0               # MISC: its schedule is start to start
    last_exit: int | None = None        # MISC: the exit status whose weight is applied
    file_value: int = 0                 # FILE: the track file's number
    # what people see
    last_result: bool | None = None
    last_error: str = ""
    last_time: float | None = None
    generation: int = 0                 # a result for an older run is dropped


@dataclass
class RealServer:
    spec: RealServerSpec
    alive: bool = False                 # logically in the pool
    set: bool = False                   # in the kernel (possibly at weight 0: inhibit)
    failed: int = 0                     # keepalived's num_failed_checkers
    effective_weight: int = 0
    checkers: list[Checker] = field(default_factory=list)
    reloaded: bool = False

    @property
    def inhibit(self) -> bool:
        return self.spec.inhibit

    def __post_init__(self) -> None:
        if not self.effective_weight:
            self.effective_weight = self.spec.weight


@dataclass
class Draining:
    """A real server removed by a reload, or found in the kernel at start under one of
    our virtual servers although the configuration no longer has it: weight 0 until
    its connections end."""

    spec: RealServerSpec
    since: float
    deadline: float


@dataclass
class VirtualServer:
    spec: VirtualServerSpec
    reals: dict[RsKey, RealServer]
    sorry: RealServer | None = None
    quorum_up: bool = False
    alive: bool = False                 # the service is programmed
    suspended: bool = False             # ha_suspend with the VIP elsewhere
    table: dict[RsKey, int] = field(default_factory=dict)
    """The destinations we want in the kernel and their weights."""
    destinations: dict[RsKey, RealServerSpec] = field(default_factory=dict)
    """Each wanted destination's spec (forwarding, thresholds)."""
    draining: dict[RsKey, Draining] = field(default_factory=dict)

    @property
    def key(self) -> VsKey:
        return self.spec.key

    def live_weight(self) -> int:
        """The sum of the weights of the real servers in the pool (weigh_live_realservers)."""
        return sum(real_weight(rs.effective_weight) for rs in self.reals.values() if rs.alive)


class InKernel(set[tuple[VsKey, RsKey]]):
    """What the data plane found in the kernel at start (a restarted checker process).

    As a set: the real servers of the configuration serving there already, to be
    adopted.  ``strays``: the destinations found under one of our virtual servers that
    the configuration does not have (removed while no checker process ran, or while
    the one that died was still draining them), each as a spec holding what the kernel
    holds (address, port, forwarding, thresholds; ``weight``: the kernel's), so that
    they can stay in the wanted table, at weight 0, until they are drained.  A set, so
    that whoever only wants the adopted servers can take it for one."""

    def __init__(self, adopt: Iterable[tuple[VsKey, RsKey]] = (),
                 strays: dict[tuple[VsKey, RsKey], RealServerSpec] | None = None) -> None:
        super().__init__(adopt)
        self.strays: dict[tuple[VsKey, RsKey], RealServerSpec] = dict(strays or {})


# -- the engine ----------------------------------------------------------------------

class Pool:
    """Every virtual server of a configuration and the checkers of their real servers."""

    def __init__(self, specs: Iterable[VirtualServerSpec], *, rng: random.Random | None = None,
                 rs_init_notifies: bool = False, drain_time: float = DEFAULT_DRAIN_TIME,
                 no_checker_emails: bool = False) -> None:
        self.rng = rng or random.Random()
        self.rs_init_notifies = rs_init_notifies
        self.drain_time = drain_time
        self.no_checker_emails = no_checker_emails
        self.servers: dict[VsKey, VirtualServer] = {}
        # the timers: a heap of the distinct times something is due (floats compare
        # twice as fast as tuples, thousands of times a second) and what is due then,
        # in the order it was scheduled
        self._times: list[float] = []
        self._due_at: dict[float, list[tuple[CheckerRef, int]]] = {}
        self._kept: set[Checker] = set()    # checkers carried over by the running reload
        for spec in specs:
            self.servers[spec.key] = self._new_vs(spec)

    # -- construction ---------------------------------------------------------------
    def _new_vs(self, spec: VirtualServerSpec) -> VirtualServer:
        vs = VirtualServer(spec, {rs.key: self._new_rs(rs) for rs in spec.reals})
        if spec.sorry is not None:
            vs.sorry = RealServer(spec.sorry)
        return vs

    @staticmethod
    def _new_rs(spec: RealServerSpec) -> RealServer:
        rs = RealServer(spec)
        for c in spec.checkers:
            checker = Checker(c, retry_it=c.retry)
            if c.alpha:                 # alpha: a checker is down until it passes
                checker.up = False
                rs.failed += 1
            rs.checkers.append(checker)
        return rs

    def checker(self, ref: CheckerRef) -> tuple[VirtualServer, RealServer, Checker]:
        vs_key, rs_key, index = ref
        vs = self.servers[vs_key]
        rs = vs.reals[rs_key]
        return vs, rs, rs.checkers[index]

    def checkers(self) -> Iterator[tuple[CheckerRef, VirtualServer, RealServer, Checker]]:
        for vs in self.servers.values():
            for rs in vs.reals.values():
                for index, c in enumerate(rs.checkers):
                    yield (vs.key, rs.spec.key, index), vs, rs, c

    # -- start -------------------------------------------------------------------------
    def start(self, now: float, file_values: dict[str, int] | None = None,
              local_addresses: set[str] | None = None,
              adopt: set[tuple[VsKey, RsKey]] | None = None) -> list[Action]:
        """Program every virtual server (keepalived's init_services) and schedule the
        first checks.  ``file_values``: each FILE_CHECK's track file's number now;
        ``local_addresses``: the addresses on this host (ha_suspend); ``adopt``: the
        real servers serving in the kernel already (a restarted checker process):
        they stay in the pool until a check says otherwise, alpha or not.  When it
        is an :class:`InKernel`, its ``strays`` are drained from now on, as a reload
        drains the servers it removes."""
        out: list[Action] = []
        strays = adopt.strays if isinstance(adopt, InKernel) else {}
        for vs in self.servers.values():
            for (vs_key, key), spec in strays.items():
                if vs_key == vs.key:
                    self._drain_stray(vs, key, spec, now, out)
            for key in (rs_key for vs_key, rs_key in adopt or () if vs_key == vs.key):
                rs = vs.reals.get(key)
                if rs is not None:
                    for c in rs.checkers:
                        if c.spec.alpha and not c.up:
                            c.up = True
                            rs.failed -= 1
            self._init_files(vs, file_values or {})
            self._init_vs(vs, out)
            if vs.spec.ha_suspend:
                vs.suspended = (local_addresses is not None
                                and vs.spec.ip not in local_addresses)
            for rs in vs.reals.values():
                for index, c in enumerate(rs.checkers):
                    self._first_run(vs, rs, index, c, now, out)
        return out

    def _first_run(self, vs: VirtualServer, rs: RealServer, index: int, c: Checker,
                   now: float, out: list[Action]) -> None:
        if not c.spec.timed:
            return
        c.enabled = not vs.suspended
        out.append(Log(f"{'A' if c.enabled else 'Dea'}ctivating healthchecker for service "
                       f"{rs.spec.name(vs.spec.protocol)} for VS {vs.spec.name}"))
        warmup = c.spec.warmup * self.rng.random() if c.spec.warmup else 0.0
        self._schedule((vs.key, rs.spec.key, index), c, now + BOOTSTRAP_DELAY + warmup)

    def _init_files(self, vs: VirtualServer, values: dict[str, int]) -> None:
        for rs in vs.reals.values():
            for c in rs.checkers:
                if c.spec.kind != "FILE_CHECK":
                    continue
                c.has_run = True
                c.file_value = values.get(str(c.spec.file), 0)
                status = file_status(c.spec, c.file_value)
                if status == WEIGHT_FAULT:
                    c.up = False
                    rs.failed += 1
                else:
                    c.cur_weight = status
                    rs.effective_weight += status

    def _init_vs(self, vs: VirtualServer, out: list[Action]) -> None:
        if not vs.alive:
            vs.alive = True
            out.append(TableChanged(vs.key))
        for rs in vs.reals.values():
            if rs.reloaded:
                continue                # a failed one is not re-added at a reload
            if (not rs.failed and not rs.alive) or (rs.inhibit and not rs.set):
                self._ipvs(vs, rs, add=True)
                if not rs.failed:
                    rs.alive = True
                    if self.rs_init_notifies:
                        out.append(RsNotify(vs.spec, rs.spec, True))
        self._update_quorum(vs, out, init=True)
        sorry = vs.sorry
        if sorry is not None and sorry.inhibit and not sorry.set:
            self._ipvs(vs, sorry, add=True, weight=0)

    # -- the kernel table we want ----------------------------------------------------
    def _ipvs(self, vs: VirtualServer, rs: RealServer, *, add: bool,
              weight: int | None = None, force: bool = False) -> None:
        """keepalived's ipvs_cmd for a destination, on the table we want: removing an
        inhibited server sets its weight to 0 instead (unless ``force``), adding one
        that is still set gives it back its weight."""
        key = rs.spec.key
        if not add and rs.inhibit and not force:
            self._want(vs, rs.spec, 0)
        elif add and rs.inhibit and rs.set:
            self._want(vs, rs.spec, real_weight(rs.effective_weight))
        elif add:
            rs.set = True
            if weight is None:
                weight = 0 if rs.inhibit and rs.failed else real_weight(rs.effective_weight)
            self._want(vs, rs.spec, weight)
        else:
            rs.set = False
            if key in vs.table and key not in vs.draining:
                del vs.table[key]
                vs.destinations.pop(key, None)

    @staticmethod
    def _want(vs: VirtualServer, spec: RealServerSpec, weight: int) -> None:
        vs.table[spec.key] = weight
        vs.destinations[spec.key] = spec
        vs.draining.pop(spec.key, None)

    def _edit_weight(self, vs: VirtualServer, rs: RealServer) -> None:
        self._want(vs, rs.spec, real_weight(rs.effective_weight))

    # -- scheduling ----------------------------------------------------------------------
    def _schedule(self, ref: CheckerRef, c: Checker, when: float) -> None:
        c.next_run = when
        c.generation += 1
        entries = self._due_at.get(when)
        if entries is None:
            self._due_at[when] = [(ref, c.generation)]
            heapq.heappush(self._times, when)
        else:
            entries.append((ref, c.generation))

    def next_deadline(self) -> float | None:
        """When ``due`` has work next (None: nothing scheduled)."""
        while self._times:
            when = self._times[0]
            entries = self._due_at[when]
            while entries:
                ref, generation = entries[0]
                found = self._lookup(ref)
                if found is not None and found.generation == generation and \
                        not found.running:
                    return when
                del entries[0]          # stale: rescheduled or gone since
            heapq.heappop(self._times)
            del self._due_at[when]
        return None

    def _lookup(self, ref: CheckerRef) -> Checker | None:
        vs = self.servers.get(ref[0])
        rs = vs.reals.get(ref[1]) if vs is not None else None
        if rs is None or ref[2] >= len(rs.checkers):
            return None
        return rs.checkers[ref[2]]

    def earliest(self) -> float | None:
        """A lower bound of ``next_deadline()``, without looking anything up."""
        return self._times[0] if self._times else None

    def due(self, now: float, limit: int | None = None) -> list[RunProbe]:
        """The probes to start now, at most ``limit`` (the rest stay due for the next
        call); a suspended checker only keeps its cadence."""
        out: list[RunProbe] = []
        times, due_at = self._times, self._due_at
        room = -1 if limit is None else limit   # probes still to start (-1: any number)
        while times and times[0] <= now:
            when = times[0]
            entries = due_at[when]
            taken = 0
            for ref, generation in entries:
                if room == 0:
                    break
                taken += 1
                c = self._lookup(ref)
                if c is None or c.generation != generation or c.running:
                    continue
                if not c.enabled:
                    self._schedule(ref, c, now + c.spec.delay_loop)
                    continue
                c.running = True
                c.next_run = None
                c.last_ran = now
                out.append(RunProbe(ref, c.spec, c.url))
                room -= 1
            if taken < len(entries):    # the limit: the rest stay due
                del entries[:taken]
                break
            heapq.heappop(times)
            del due_at[when]
        return out

    # -- results ---------------------------------------------------------------------------
    def result(self, ref: CheckerRef, ok: bool, now: float, *, error: str = "",
               weight: int | None = None, inconclusive: bool = False) -> list[Action]:
        """A probe's result; ``weight``: a MISC_CHECK's dynamic weight (exit status - 2),
        None for an exit 0 or a failure.  ``inconclusive``: the attempt failed on our
        side before reaching the server (no socket, a bind refused): keepalived
        logs it and tries again after delay_loop, counting nothing."""
        vs = self.servers.get(ref[0])
        rs = vs.reals.get(ref[1]) if vs is not None else None
        if rs is None or ref[2] >= len(rs.checkers) or not rs.checkers[ref[2]].running:
            return []                   # its server was removed or changed meanwhile
        c = rs.checkers[ref[2]]
        c.running = False
        c.last_result, c.last_error, c.last_time = ok, error, now
        if ok and c.up and c.has_run and c.spec.kind == "TCP_CHECK":
            # what comes thousands of times a second, in short (as _tcp_epilog)
            c.retry_it = 0
            self._schedule(ref, c, now + c.spec.delay_loop)
            return []
        out: list[Action] = []
        if inconclusive:
            out.append(Log(f"{c.spec.kind} on service {_target(vs, rs, c.spec)}: {error} - "
                           "will try again"))
            self._schedule(ref, c, now + c.spec.delay_loop)
            return out
        kind = c.spec.kind
        if kind in ("HTTP_GET", "SSL_GET"):
            delay = self._http_epilog(vs, rs, c, ok, out)
        elif kind == "MISC_CHECK":
            delay = self._misc_epilog(vs, rs, c, ok, weight, out, error)
            # start to start: the next run counts from when this one began
            self._schedule(ref, c, max(now, c.last_ran + delay))
            return out
        else:
            delay = self._tcp_epilog(vs, rs, c, ok, out)
        self._schedule(ref, c, now + delay)
        return out

    def _tcp_epilog(self, vs: VirtualServer, rs: RealServer, c: Checker, ok: bool,
                    out: list[Action]) -> float:
        """TCP_CHECK (and the connect-style checkers): down after retry+1 failures in a
        row; the first failure ever downs it at once (retry_it starts at retry).  A
        checker that is down is tried every delay_loop: 2.2.7 counted its retries
        again and so alternated delay_before_retry and delay_loop (fixed later in
        keepalived, commit 77dad708)."""
        spec = c.spec
        delay = spec.delay_loop
        if ok or ((c.up or not c.has_run) and c.retry_it >= spec.retry):
            c.retry_it = 0
            if ok and (not c.up or not c.has_run):
                out.append(Log(f"{_check_name(spec)} connection to {_target(vs, rs, spec)} "
                               "success."))
                self._checker_state(vs, rs, c, True, out)
            elif not ok and (c.up or not c.has_run):
                retries = f" after {spec.retry} retries" if spec.retry and c.has_run else ""
                out.append(Log(f"{spec.kind} on service {_target(vs, rs, spec)} "
                               f"failed{retries}."))
                self._checker_state(vs, rs, c, False, out)
        elif c.up:
            delay = spec.delay_before_retry
            c.retry_it += 1
        c.has_run = True
        return delay

    def _http_epilog(self, vs: VirtualServer, rs: RealServer, c: Checker, ok: bool,
                     out: list[Action]) -> float:
        """HTTP_GET / SSL_GET: one URL per run; up once every URL passed in turn; a
        failing URL is retried alone until it passes, then all are checked again."""
        spec = c.spec
        if ok:
            last = c.url + 1 >= spec.urls
            c.url = 0 if last else c.url + 1
            c.retry_it = 0
            if last and c.failed_url is None:
                if not c.up or not c.has_run:
                    out.append(Log(f"Remote Web server {_target(vs, rs, spec)} succeed on "
                                   "service."))
                    self._checker_state(vs, rs, c, True, out)
                    c.has_run = True
                c.url = 0
            elif c.failed_url is not None:
                c.failed_url = None     # the failed URL passes: all of them again
                c.url = 0
            delay = spec.delay_loop
            if not c.has_run:
                c.retry_it = spec.retry
        elif c.up or not c.has_run:
            c.has_run = True            # 2.2.7 marks it before the epilog
            c.retry_it += 1
            if c.retry_it > spec.retry:
                if c.up:
                    retries = f" after {c.retry_it - 1} retries" if spec.retry else ""
                    out.append(Log(f"HTTP_CHECK on service {_target(vs, rs, spec)} "
                                   f"failed{retries}."))
                    self._checker_state(vs, rs, c, False, out)
                c.failed_url = c.url
            delay = max(spec.delay_before_retry, spec.delay_loop) \
                if c.failed_url is not None else spec.delay_before_retry
        else:                           # known down: the same URL again
            delay = max(spec.delay_before_retry, spec.delay_loop) \
                if c.failed_url is not None else spec.delay_before_retry
        if spec.fast_recovery and (not c.has_run or (not c.up and c.failed_url is None)):
            delay = 0.0
        return delay

    def _misc_epilog(self, vs: VirtualServer, rs: RealServer, c: Checker, ok: bool,
                     weight: int | None, out: list[Action], error: str = "") -> float:
        spec = c.spec
        status = 0 if weight is None else weight + 2
        script = str((spec.option("misc_path") or ("",))[0]).split(" ")[0]
        what = f"Misc check for [{_target(vs, rs, spec)} VS {vs.spec.name}] by [{script}]"
        if ok:
            if status != c.last_exit:
                new = (weight - rs.spec.weight) if weight is not None else 0
                self._set_weight(vs, rs, rs.effective_weight - c.cur_weight + new, out)
                c.cur_weight = new
                c.last_exit = status
            if not c.up or not c.has_run:
                out.append(Log(f"{what} succeeded."))
                self._checker_state(vs, rs, c, True, out)
            c.retry_it = 0
        elif c.up or not c.has_run:
            if c.retry_it < spec.retry:
                c.retry_it += 1
            else:
                retries = f"after {spec.retry} retries" if spec.retry else "with retry disabled"
                out.append(Log(f"{what} failed {retries} ({error or 'no reason given'})."))
                c.retry_it = 0
                # the dynamic weight goes with the failure, whatever failed (#2720)
                rs.effective_weight -= c.cur_weight
                c.cur_weight = 0
                c.last_exit = None
                self._checker_state(vs, rs, c, False, out)
        c.has_run = True
        return spec.delay_before_retry if c.retry_it else spec.delay_loop

    def file_changed(self, name: str, value: int, now: float) -> list[Action]:
        """A track file's number changed: every FILE_CHECK on it adjusts its server."""
        out: list[Action] = []
        for _, vs, rs, c in list(self.checkers()):
            if c.spec.kind != "FILE_CHECK" or c.spec.file != name or c.file_value == value:
                continue
            before = file_status(c.spec, c.file_value)
            status = file_status(c.spec, value)
            c.file_value = value
            c.last_time, c.last_result = now, status != WEIGHT_FAULT
            c.last_error = "" if c.last_result else f"file value {value}"
            if before == status:
                continue
            if status == WEIGHT_FAULT:
                self._checker_state(vs, rs, c, False, out, mail=False)
                rs.effective_weight -= c.cur_weight
                c.cur_weight = 0
            elif before == WEIGHT_FAULT:
                c.cur_weight = status
                rs.effective_weight += status
                self._checker_state(vs, rs, c, True, out, mail=False)
            else:
                self._set_weight(vs, rs, rs.effective_weight + status - before, out)
                c.cur_weight = status
        return out

    # -- real server and quorum --------------------------------------------------------
    def _checker_state(self, vs: VirtualServer, rs: RealServer, c: Checker, up: bool,
                       out: list[Action], mail: bool = True) -> None:
        """update_svr_checker_state: a real server is up only when all its checkers are."""
        was_alive = rs.alive
        was_up = c.up
        if c.up == up:
            if not c.has_run:
                if c.spec.alpha or not up:
                    out.append(RsNotify(vs.spec, rs.spec, rs.alive))
                c.has_run = True
        else:
            c.has_run = True
            if up and rs.failed <= 1:
                self._server_state(vs, rs, True, out)
            elif not up and rs.failed == 0:
                self._server_state(vs, rs, False, out)
            c.up = up
            rs.failed += -1 if up else 1
            rs.failed = max(rs.failed, 0)
        if mail and rs.spec.smtp_alert and was_up != up and \
                (was_alive != rs.alive or not self.no_checker_emails):
            out.append(RsMail(vs.spec, rs.spec, rs.alive, c.spec.kind, up))

    def _server_state(self, vs: VirtualServer, rs: RealServer, alive: bool,
                      out: list[Action]) -> None:
        """perform_svr_state: into or out of the pool, unless the sorry server serves."""
        if rs.alive == alive:
            return
        verb = ("Enabl" if rs.inhibit else "Add") if alive else \
            ("Disabl" if rs.inhibit else "Remov")
        prep = "of" if rs.inhibit else ("to" if alive else "from")
        out.append(Log(f"{verb}ing service {rs.spec.name(vs.spec.protocol)} {prep} VS "
                       f"{vs.spec.name}"))
        if self._pool_serves(vs):
            self._ipvs(vs, rs, add=alive)
            out.append(TableChanged(vs.key))
        rs.alive = alive
        out.append(RsNotify(vs.spec, rs.spec, alive))
        self._update_quorum(vs, out, init=False)

    @staticmethod
    def _pool_serves(vs: VirtualServer) -> bool:
        return vs.quorum_up or vs.sorry is None or not vs.sorry.alive

    def _set_weight(self, vs: VirtualServer, rs: RealServer, weight: int,
                    out: list[Action]) -> None:
        """update_svr_wgt: a new effective weight, in the kernel at once when it serves."""
        old, new = real_weight(rs.effective_weight), real_weight(weight)
        rs.effective_weight = weight
        if old == new:
            return
        out.append(Log(f"Changing weight from {old} to {new} for "
                       f"{'' if rs.alive else 'in'}active service "
                       f"{rs.spec.name(vs.spec.protocol)} of VS {vs.spec.name}"))
        if rs.set and rs.alive and self._pool_serves(vs):
            self._edit_weight(vs, rs)
            out.append(TableChanged(vs.key))
        self._update_quorum(vs, out, init=False)

    def _update_quorum(self, vs: VirtualServer, out: list[Action], *, init: bool) -> None:
        spec = vs.spec
        weight_sum = vs.live_weight()
        threshold = spec.quorum + (-1 if vs.quorum_up else 1) * spec.hysteresis
        sorry = vs.sorry
        if not vs.quorum_up and weight_sum >= threshold:
            vs.quorum_up = True
            out.append(Log(f"Gained quorum {spec.quorum}+{spec.hysteresis}={threshold} <= "
                           f"{weight_sum} for VS {spec.name}"))
            if sorry is not None and sorry.alive:
                out.append(Log(f"{'Disabling' if sorry.inhibit else 'Removing'} sorry server "
                               f"{sorry.spec.name(spec.protocol)} from VS {spec.name}"))
                self._ipvs(vs, sorry, add=False)
                sorry.alive = False
                self._pool_swap(vs, add=True, out=out)
            out.append(VsNotify(spec, True, init, threshold, weight_sum))
        elif (vs.quorum_up and (not weight_sum or weight_sum < threshold)) or \
                (init and not vs.quorum_up and sorry is not None and not sorry.alive):
            vs.quorum_up = False
            out.append(Log(f"{'Starting with quorum down' if init else 'Lost quorum'} "
                           f"{spec.quorum}-{spec.hysteresis}={threshold} > {weight_sum} "
                           f"for VS {spec.name}"))
            if sorry is not None and not sorry.alive:
                out.append(Log(f"{'Enabling' if sorry.inhibit else 'Adding'} sorry server "
                               f"{sorry.spec.name(spec.protocol)} to VS {spec.name}"))
                self._pool_swap(vs, add=False, out=out)
                self._ipvs(vs, sorry, add=True)
                sorry.alive = True
            out.append(VsNotify(spec, False, init, threshold, weight_sum))
        out.append(TableChanged(vs.key))

    def _pool_swap(self, vs: VirtualServer, *, add: bool, out: list[Action]) -> None:
        """perform_quorum_state: the alive real servers back into, or out of, the pool."""
        out.append(Log(f"{'Adding alive servers to' if add else 'Removing alive servers from'}"
                       f" the pool for VS {vs.spec.name}"))
        for rs in vs.reals.values():
            if rs.alive:
                self._ipvs(vs, rs, add=add)

    # -- ha_suspend ----------------------------------------------------------------------
    def address_changed(self, address: str, present: bool) -> list[Action]:
        """The VIP of an ha_suspend virtual server came to this host or left it."""
        out: list[Action] = []
        for vs in self.servers.values():
            if not vs.spec.ha_suspend or vs.spec.ip != address or vs.suspended != present:
                continue
            vs.suspended = not present
            for rs in vs.reals.values():
                for c in rs.checkers:
                    if c.spec.timed and c.enabled != present:
                        c.enabled = present
                        out.append(Log(f"{'Activat' if present else 'Suspend'}ing "
                                       f"healthchecker for service "
                                       f"{rs.spec.name(vs.spec.protocol)} for VS "
                                       f"{vs.spec.name}"))
        return out

    # -- reload ----------------------------------------------------------------------------
    def reload(self, specs: Iterable[VirtualServerSpec], now: float,
               file_values: dict[str, int] | None = None) -> ReloadReport:
        """A new configuration, applied as a difference (keepalived's clear_diff_services
        and migrate_checkers, done better): an unchanged checker keeps its state and its
        timer; a kept real server keeps its place in the pool (a failed one is not put
        back before it passes); a removed real server is drained, not cut."""
        report = ReloadReport()
        out = report.actions
        old, self.servers = self.servers, {}
        fresh: list[VirtualServer] = []
        for spec in specs:
            prev = old.pop(spec.key, None)
            if prev is None:
                vs = self._new_vs(spec)
                self._init_files(vs, file_values or {})
                fresh.append(vs)
                report.added.append(spec.name)
            else:
                vs = self._migrate_vs(prev, spec, now, out)
                (report.unchanged if prev.spec == spec else report.changed).append(spec.name)
            self.servers[spec.key] = vs
        for prev in old.values():
            out.append(Log(f"Removing Virtual Server {prev.spec.name}"))
            for rs in prev.reals.values():
                self._clear_rs(prev, rs, out, stopping=False, removed=True)
            # its quorum goes with its last real server: VS ... DOWN, as keepalived
            # 2.2.7 writes it (seen in the VM tier)
            self._vs_down(prev, out, stopping=False, removed=True)
            out.append(TableChanged(prev.key))
            report.removed.append(prev.spec.name)
        for vs in self.servers.values():
            self._init_vs(vs, out)
            for rs in vs.reals.values():
                for index, c in enumerate(rs.checkers):
                    ref = (vs.key, rs.spec.key, index)
                    if c.next_run is not None:
                        self._schedule(ref, c, c.next_run)
                    elif not c.has_run or c not in self._kept:
                        self._first_run(vs, rs, index, c, now, out)
        self._kept = set()
        return report

    def _migrate_vs(self, prev: VirtualServer, spec: VirtualServerSpec, now: float,
                    out: list[Action]) -> VirtualServer:
        vs = VirtualServer(spec, {}, quorum_up=prev.quorum_up, alive=prev.alive,
                           suspended=prev.suspended, table=prev.table,
                           destinations=prev.destinations, draining=prev.draining)
        if prev.sorry is not None and spec.sorry == prev.sorry.spec:
            vs.sorry = prev.sorry
        else:
            if prev.sorry is not None and prev.sorry.set:
                self._ipvs(vs, prev.sorry, add=False, force=True)
            vs.sorry = RealServer(spec.sorry) if spec.sorry is not None else None
            if prev.sorry is not None and prev.sorry.alive and vs.sorry is not None:
                vs.sorry.alive = False  # the new one goes in through the quorum below
        for rs_spec in spec.reals:
            before = prev.reals.pop(rs_spec.key, None)
            vs.reals[rs_spec.key] = (self._migrate_rs(vs, before, rs_spec, now, out)
                                     if before is not None else self._new_rs(rs_spec))
        for gone in prev.reals.values():
            out.append(Log(f"service {gone.spec.name(spec.protocol)} no longer exist"))
            self._drain(vs, gone, now, out)
        self._vs_down(vs, out, stopping=False)
        out.append(TableChanged(vs.key))
        return vs

    def _migrate_rs(self, vs: VirtualServer, before: RealServer, spec: RealServerSpec,
                    now: float, out: list[Action]) -> RealServer:
        rs = RealServer(spec, alive=before.alive, set=before.set, reloaded=True)
        unused = list(before.checkers)
        for c_spec in spec.checkers:
            match = next((old for old in unused if _same_checker(old.spec, c_spec)), None)
            if match is None:
                rs.checkers.append(Checker(c_spec))
                continue
            unused.remove(match)
            kept = Checker(**{**match.__dict__, "spec": c_spec})
            if match.running:           # its result will not find it: run again soon
                kept.running = False
                kept.next_run = now + c_spec.delay_before_retry
            self._kept.add(kept)
            rs.checkers.append(kept)
        rs.failed = sum(1 for c in rs.checkers if c.has_run and not c.up)
        if rs.failed or (not rs.alive and not any(c.has_run for c in rs.checkers)):
            for c in rs.checkers:
                if not c.has_run:
                    if c.spec.alpha and c.up:
                        c.up = False
                        rs.failed += 1
                    c.retry_it = c.spec.retry
        # the configured weight as now written, plus what kept checkers add (as
        # 2.2.7's set_effective_weights; init_service_rs then edits the kernel)
        rs.effective_weight = spec.weight + sum(c.cur_weight for c in rs.checkers)
        if not rs.failed and not rs.alive:
            self._server_state(vs, rs, True, out)
        elif rs.failed and rs.set != rs.inhibit:
            self._ipvs(vs, rs, add=rs.inhibit)
        if rs.set and spec.key in vs.table:
            weight = vs.table[spec.key]
            if rs.alive and self._pool_serves(vs) and weight:
                weight = real_weight(rs.effective_weight)
            self._want(vs, spec, weight)
        return rs

    def _drain(self, vs: VirtualServer, rs: RealServer, now: float, out: list[Action]) -> None:
        """A real server the new configuration dropped: weight 0 at once, so that no new
        connection goes to it; deleted when its connections are gone (``drained``) or
        after the drain time (keepalived deletes it at once: #1228)."""
        was_alive = rs.alive
        rs.alive = False
        if rs.set and self.drain_time <= 0:
            # lvs_drain_time 0: out at once, as keepalived removes it
            out.append(Log(f"Removing service {rs.spec.name(vs.spec.protocol)} from VS "
                           f"{vs.spec.name}"))
            vs.table.pop(rs.spec.key, None)
            vs.destinations.pop(rs.spec.key, None)
            rs.set = False
        elif rs.set:
            out.append(Log(f"Draining service {rs.spec.name(vs.spec.protocol)} from VS "
                           f"{vs.spec.name}"))
            vs.table[rs.spec.key] = 0
            vs.destinations[rs.spec.key] = rs.spec
            vs.draining[rs.spec.key] = Draining(rs.spec, now, now + self.drain_time)
            rs.set = False
        if was_alive:
            out.append(RsNotify(vs.spec, rs.spec, False, removed=True))
            if rs.spec.smtp_alert:
                out.append(RsMail(vs.spec, rs.spec, False))

    def _drain_stray(self, vs: VirtualServer, key: RsKey, spec: RealServerSpec, now: float,
                     out: list[Action]) -> None:
        """A destination found in the kernel at start under ``vs`` that the configuration
        no longer has: drained as ``_drain`` drains a server a reload removed, with the
        same log lines, the drain time counted from now (when it left the configuration
        is not known).  No notify_down, FIFO line or mail: there is no script or alert
        setting for a server that is not in the configuration, and it was never up in
        this process (as a reload notifies only for the servers that were up)."""
        if key in vs.reals or (vs.sorry is not None and vs.sorry.spec.key == key):
            return                      # configured after all: the pool programs it
        name = spec.name(vs.spec.protocol)
        out.append(Log(f"service {name} no longer exist"))
        if self.drain_time <= 0:        # not wanted: the first table deletes it
            out.append(Log(f"Removing service {name} from VS {vs.spec.name}"))
            return
        out.append(Log(f"Draining service {name} from VS {vs.spec.name}"))
        vs.table[key] = 0
        vs.destinations[key] = spec
        vs.draining[key] = Draining(spec, now, now + self.drain_time)
        out.append(TableChanged(vs.key))

    def drained(self, now: float, connections: dict[tuple[VsKey, RsKey], int]) -> list[Action]:
        """Delete the draining destinations whose connections (active + inactive, as
        the kernel counts them) are gone, or whose drain time is over."""
        out: list[Action] = []
        for vs in self.servers.values():
            for key, d in list(vs.draining.items()):
                left = connections.get((vs.key, key), 0)
                if left and now < d.deadline:
                    continue
                why = "drained" if not left else f"drain time over, {left} connections cut"
                out.append(Log(f"Removing service {d.spec.name(vs.spec.protocol)} from VS "
                               f"{vs.spec.name} ({why})"))
                del vs.draining[key]
                vs.table.pop(key, None)
                vs.destinations.pop(key, None)
                out.append(TableChanged(vs.key))
        return out

    def next_drain_deadline(self) -> float | None:
        deadlines = [d.deadline for vs in self.servers.values() for d in vs.draining.values()]
        return min(deadlines, default=None)

    # -- shutdown -----------------------------------------------------------------------
    def stop(self, flush: str = "none") -> list[Action]:
        """keepalived's clear_services: ``flush`` is lvs_flush_on_stop (none, vs, full);
        the table we want ends empty."""
        out: list[Action] = []
        for vs in self.servers.values():
            if flush == "none":
                sorry = vs.sorry
                if sorry is not None and sorry.set:
                    self._ipvs(vs, sorry, add=False, force=True)
                    sorry.alive = False
                for rs in vs.reals.values():
                    self._clear_rs(vs, rs, out, stopping=True)
            elif vs.sorry is not None:
                vs.sorry.alive = False
            self._vs_down(vs, out, stopping=True)
            vs.table.clear()
            vs.destinations.clear()
            vs.draining.clear()
            vs.alive = False
            out.append(TableChanged(vs.key))
        return out

    def _clear_rs(self, vs: VirtualServer, rs: RealServer, out: list[Action], *,
                  stopping: bool, removed: bool = False) -> None:
        if rs.set or stopping:
            out.append(Log(f"{'Shutting down' if stopping else 'Removing'} "
                           f"{'(inhibited) ' if rs.inhibit and not rs.alive else ''}service "
                           f"{rs.spec.name(vs.spec.protocol)} from VS {vs.spec.name}"))
        if not rs.set:
            return
        self._ipvs(vs, rs, add=False, force=True)
        if not rs.alive:
            return
        rs.alive = False
        if stopping and not vs.spec.omega:
            return
        out.append(RsNotify(vs.spec, rs.spec, False, stopping, removed))
        if rs.spec.smtp_alert:
            out.append(RsMail(vs.spec, rs.spec, False, stopping=stopping))

    def _vs_down(self, vs: VirtualServer, out: list[Action], *, stopping: bool,
                 removed: bool = False) -> None:
        """update_vs_notifies: the quorum goes with the server's last real servers."""
        threshold = vs.spec.quorum - vs.spec.hysteresis
        weight_sum = vs.live_weight()
        if stopping or (vs.quorum_up and (not weight_sum or weight_sum < threshold)):
            vs.quorum_up = False
            if not stopping or vs.spec.omega:
                out.append(VsNotify(vs.spec, False, False, threshold, weight_sum, stopping,
                                    removed))

    # -- what is wanted of the kernel --------------------------------------------------
    def wanted(self) -> Wanted:
        """Every service we program, with its destinations and their weights."""
        return {key: (vs.spec, {k: (vs.destinations[k], w) for k, w in vs.table.items()})
                for key, vs in self.servers.items() if vs.alive}


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


def _same_checker(old: CheckerSpec, new: CheckerSpec) -> bool:
    """Whether a checker carries over a reload: the same kind probing the same way
    (keepalived's compare); its place among the server's checkers does not matter."""
    return old == CheckerSpec(**{**new.__dict__, "index": old.index, "nth": old.nth})


def file_status(spec: CheckerSpec, value: int) -> int:
    """What a FILE_CHECK adds to its server's weight for a track file's number, or
    WEIGHT_FAULT when it fails the server (track_file.c)."""
    weight = int(spec.file_weight or 0)
    if weight == 0:
        failed = (value != 0) != spec.file_reverse
        return WEIGHT_FAULT if failed else 0
    product = value * weight * (-1 if spec.file_reverse else 1)
    return max(WEIGHT_FAULT, min(product, IPVS_WEIGHT_LIMIT))


def _check_name(spec: CheckerSpec) -> str:
    return spec.kind.removesuffix("_CHECK")


def _target(vs: VirtualServer, rs: RealServer, spec: CheckerSpec) -> str:
    """keepalived's FMT_CHK: the address and port a checker connects to."""
    ip = spec.option("connect_ip") or rs.spec.ip
    port = spec.option("connect_port") or rs.spec.port
    return f"[{ip}]:{vs.spec.protocol}:{port}"
