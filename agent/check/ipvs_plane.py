"""The checker's tables on the kernel's IPVS (agent/ipvs), reconciled, not just diffed.

At start the kernel's table is read and what it already serves of ours is
adopted (a restarted checker process takes no healthy server out); a real
server found under one of our virtual servers that the configuration no longer
has is handed to the engine as it is in the kernel, to be drained as a reload
drains a server it removed (not cut at once).  Each
change of the tables we want is planned (``ipvs.reconcile.plan``) against the
kernel's table as it was last read and changed by us, so that a server that
failed its check leaves the kernel after one request, not after a dump of every
service first (a dump costs a lot more than the request, and the more so the
bigger the table).  Every ``RECONCILE_EVERY`` seconds, and after any refusal,
the plan is made against a fresh dump instead: a destination someone deleted
with ipvsadm is put back, a weight someone changed is set again.  Services that
are not in our configuration are never touched; they are reported
(``foreign``) in the status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from ..ipvs.model import (
    AF_INET6,
    DestKey,
    DestSpec,
    KernelDest,
    KernelService,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
)
from ..ipvs.netlink import IpvsError, IpvsTable, IpvsUnavailable
from ..ipvs.reconcile import apply as apply_ops
from ..ipvs.reconcile import plan
from . import engine as E
from .spec import Forwarding, RealServerSpec, VirtualServerSpec

log = logging.getLogger("keepalived_py.check")

RECONCILE_EVERY = 10.0
T = TypeVar("T")
FLAGS = {"ops": ServiceFlag.ONEPACKET, "flag-1": ServiceFlag.SCHED1,
         "flag-2": ServiceFlag.SCHED2, "flag-3": ServiceFlag.SCHED3,
         "sh-fallback": ServiceFlag.SH_FALLBACK, "sh-port": ServiceFlag.SH_PORT,
         "mh-fallback": ServiceFlag.MH_FALLBACK, "mh-port": ServiceFlag.MH_PORT}


def ipvs_missing() -> str | None:
    """Why this kernel cannot be programmed, or None when it can."""
    try:
        with IpvsTable() as table:
            table.dump()
    except IpvsUnavailable as err:
        return str(err)
    except IpvsError as err:
        return f"IPVS cannot be used: {err}"
    return None


def service_key(vs: VirtualServerSpec) -> ServiceKey:
    if vs.kind == "fwmark":
        return ServiceKey.of_fwmark(vs.fwmark, vs.af)  # type: ignore[arg-type]
    assert vs.ip is not None
    return ServiceKey.of(vs.protocol, vs.ip, vs.port)  # type: ignore[arg-type]


def service_spec(vs: VirtualServerSpec) -> ServiceSpec:
    flags = ServiceFlag(0)
    for name in vs.flags:
        flags |= FLAGS.get(name, ServiceFlag(0))
    granularity = vs.persistence_granularity
    if granularity is not None and vs.af == AF_INET6:
        granularity = int(granularity)
    return ServiceSpec(service_key(vs), scheduler=vs.scheduler, flags=flags,
                       timeout=vs.persistence_timeout or None, granularity=granularity,
                       pe_name=vs.persistence_engine)


def dest_spec(service: ServiceKey, rs: RealServerSpec, weight: int) -> DestSpec:
    f = rs.forwarding
    tunnel: dict[str, Any] = {}
    if f.method == "TUN":
        tunnel = {"tun_type": f.tun_type, "tun_port": f.tun_port, "tun_flags": f.tun_csum}
    spec = DestSpec(DestKey(rs.ip, rs.port), fwd=f.method, weight=weight,  # type: ignore
                    u_threshold=rs.uthreshold, l_threshold=rs.lthreshold, **tunnel)
    return spec.for_service(service)


def stray_spec(service: ServiceKey, dest: KernelDest) -> RealServerSpec | None:
    """A destination of the kernel's as a real-server spec that programs it back as it
    is (``dest_spec`` of it, at its own weight, gives the kernel's values), or None when
    no spec can (then the reconcile deletes it at once, as before)."""
    kernel = dest.spec
    # the kernel makes a server with one of the director's addresses LOCAL whatever it
    # was given; asked again as NAT it stays LOCAL (the plan takes the two for one)
    method = "NAT" if kernel.fwd == "LOCAL" else kernel.fwd
    forwarding = Forwarding(method, tun_type=kernel.tun_type, tun_port=kernel.tun_port,
                            tun_csum=kernel.tun_flags)
    spec = RealServerSpec(ip=kernel.key.addr, port=kernel.key.port, weight=kernel.weight,
                          forwarding=forwarding, inhibit=False, alpha=False,
                          uthreshold=kernel.u_threshold, lthreshold=kernel.l_threshold,
                          smtp_alert=False)
    again = dest_spec(service, spec, kernel.weight)
    if kernel.fwd == "LOCAL":
        again = replace(again, fwd="LOCAL")
    # a DR or TUN server on another port than the service's would come back under
    # another key: not this destination
    return spec if again == kernel else None


def held_after(desired: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, DestSpec]]],
               actual: dict[ServiceKey, KernelService],
               owned: set[ServiceKey]) -> dict[ServiceKey, KernelService]:
    """The kernel's table once a plan from ``actual`` to ``desired`` has run without a
    refusal: ours as desired (no counters: a plan does not look at them), ours that
    are no longer desired gone, the foreign ones as they were."""
    held = {key: service for key, service in actual.items()
            if key not in owned and key not in desired}
    for key, (spec, dests) in desired.items():
        held[key] = KernelService(spec, {d.key: KernelDest(d) for d in dests.values()})
    return held


class IpvsDataPlane:
    name = "ipvs"

    def __init__(self, *, flush_at_start: bool = False) -> None:
        self.table = IpvsTable()
        self.flush_at_start = flush_at_start
        self.owned: set[ServiceKey] = set()
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.repairs = 0
        self._keys: dict[ServiceKey, E.VsKey] = {}
        self._lock = asyncio.Lock()
        self._wanted: E.Wanted = {}
        self._task: asyncio.Task[None] | None = None
        # the kernel's table as last read and changed by us; None: read it first
        self._known: dict[ServiceKey, KernelService] | None = None
        # every call to the kernel on one thread of its own: pyroute2 sets its socket
        # up again for each new thread (0.2 s and more in the test VM), and the loop's
        # default executor hands work to whichever thread is free
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipvs")

    async def _call(self, function: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def read(self, servers: list[VirtualServerSpec]) -> E.InKernel:
        """The kernel's table at start: the configured real servers serving there (to
        adopt), and the destinations under our virtual servers that the configuration
        does not have (to drain)."""
        async with self._lock:
            if self.flush_at_start:
                log.info("lvs_flush: flushing the IPVS table")
                await self._call(self.table.flush)
            actual = await self._call(self.table.dump)
        found = E.InKernel()
        for vs in servers:
            kernel = actual.get(service_key(vs))
            if kernel is None:
                continue
            self.owned.add(kernel.key)
            configured: set[DestKey] = set()
            for rs in vs.reals:
                key = dest_spec(kernel.key, rs, 0).key
                configured.add(key)
                dest = kernel.dests.get(key)
                if dest is not None and dest.spec.weight > 0:
                    found.add((vs.key, rs.key))
            if vs.sorry is not None:        # the pool programs it: no stray either
                configured.add(dest_spec(kernel.key, vs.sorry, 0).key)
            for key, dest in kernel.dests.items():
                if key in configured:
                    continue
                spec = stray_spec(kernel.key, dest)
                if spec is None:
                    log.warning("IPVS: %s of %s is not in the configuration and cannot be "
                                "drained as it is: deleting it", key, kernel.key)
                    continue
                found.strays[(vs.key, spec.key)] = spec
        if found:
            log.info("IPVS: adopting %d real servers found serving in the kernel", len(found))
        if found.strays:
            log.info("IPVS: %d real servers in the kernel are no longer in the configuration: "
                     "draining them", len(found.strays))
        self._task = asyncio.create_task(self._reconcile_loop())
        return found

    async def apply(self, wanted: E.Wanted) -> None:
        self._wanted = wanted
        await self._reconcile(report=False, fresh=False)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY)
            try:
                await self._reconcile(report=True)
            except IpvsError as err:
                log.error("IPVS: %s", err)

    async def _reconcile(self, *, report: bool, fresh: bool = True) -> None:
        """Make the kernel hold what we want; ``fresh``: plan against a new dump of
        the kernel rather than the table as we last left it."""
        desired: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, DestSpec]]] = {}
        keys: dict[ServiceKey, E.VsKey] = {}
        for vs_key, (vs, dests) in self._wanted.items():
            spec = service_spec(vs)
            keys[spec.key] = vs_key
            desired[spec.key] = (spec, {d.key: d for d in (
                dest_spec(spec.key, rs, weight) for rs, weight in dests.values())})
        async with self._lock:
            if fresh or self._known is None:
                actual = await self._call(self.table.dump)
            else:
                actual = self._known
            owned = self.owned | set(desired)
            ops = plan(desired, actual, owned)
            foreign = ops.foreign
            if report and ops:
                self.repairs += len(ops)
                for op in ops:
                    log.warning("IPVS: the kernel differed from what we program - %s", op)
            errors = await self._call(apply_ops, self.table, ops) if ops else []
            # after a refusal, what the kernel holds is not known: read it next time
            self._known = None if errors else held_after(desired, actual, owned)
        for error in errors:
            log.error("IPVS: %s", error)
        self.errors = [str(e) for e in errors][-20:]
        self.owned = set(desired)
        self._keys = keys
        shown = sorted(str(k) for k in foreign)
        if shown != self.foreign and shown:
            log.info("IPVS: services not in our configuration, left alone: %s",
                     ", ".join(shown))
        self.foreign = shown

    async def _dump(self) -> dict[ServiceKey, KernelService]:
        async with self._lock:
            return await self._call(self.table.dump)

    async def connections(self) -> dict[tuple[E.VsKey, E.RsKey], int]:
        out = {}
        for key, kernel in (await self._dump()).items():
            vs_key = self._keys.get(key)
            if vs_key is None:
                continue
            for dest in kernel.dests.values():
                out[(vs_key, (dest.key.addr, dest.key.port))] = \
                    dest.active_conns + dest.inact_conns
        return out

    async def counters(self) -> dict[E.VsKey, dict[str, Any]]:
        out: dict[E.VsKey, dict[str, Any]] = {}
        for key, kernel in (await self._dump()).items():
            vs_key = self._keys.get(key)
            if vs_key is None:
                continue
            dests = {(d.key.addr, d.key.port): {
                "weight": d.spec.weight, "active_conns": d.active_conns,
                "inact_conns": d.inact_conns, "persist_conns": d.persist_conns,
                "conns": d.stats.conns, "cps": d.stats.cps, "inbps": d.stats.inbps,
                "outbps": d.stats.outbps} for d in kernel.dests.values()}
            out[vs_key] = {"dests": dests, "conns": kernel.stats.conns,
                           "cps": kernel.stats.cps}
        return out

    async def stop(self, wanted: E.Wanted, flush: str) -> None:
        if self._task is not None:
            self._task.cancel()
        async with self._lock:
            if flush == "full":
                await self._call(self.table.flush)
            else:
                for key in sorted(self.owned, key=ServiceKey.sort_key):
                    try:
                        await self._call(self.table.del_service, key)
                    except IpvsError as err:
                        log.error("IPVS: %s", err)
            await self._call(self.table.close)
        self._thread.shutdown(wait=False)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "available": True, "foreign": self.foreign,
                "errors": self.errors, "repairs": self.repairs}
