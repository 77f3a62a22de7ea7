"""The VRRP process: engines, sockets, netlink and timers on one asyncio loop.

Adverts are sent the moment an engine asks; kernel work (addresses, routes,
rules) and the announcements that must follow it run in order on a queue per
instance, so a slow netlink call never delays an advert.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import NamedTuple

from ..config.model import Node
from . import engine as e
from .build import InstanceSpec, with_vmacs
from .firewall import AcceptModeFirewall, FirewallError, VmacFirewall
from .kernel import (
    Kernel,
    KernelError,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
)
from .static import StaticEntries, number_all_rules
from .sync import SyncGroup
from .track import INTERFACE, Tracking, Value, evaluate, only_pending
from .transport import Announcer, VrrpSocket
from .vmac import VmacPlan, Vmacs, mentions_vmac, plan_vmacs

log = logging.getLogger("keepalived_py.vrrp")

TRANSITIONS_KEPT = 20
DRAIN_LIMIT = 1024      # packets read from one socket before a timer acts (see _drain)

IPAddress = IPv4Address | IPv6Address


def identity(spec: InstanceSpec) -> tuple:
    """What makes an instance the same VRRP router across a reload (keepalived's
    vrrp_exist): interface, family, VRID, and its unicast source, or its multicast
    group and whether it has a VMAC and use_vmac_addr."""
    cfg = spec.cfg
    if cfg.unicast:
        where: tuple = ("unicast", spec.source_configured)
    else:
        vmacs = spec.vmacs
        where = ("multicast", spec.group, bool(vmacs and vmacs.vmac),
                 bool(vmacs and vmacs.use_vmac_addr))
    return (spec.ifname, cfg.family, cfg.vrid, where)


KEEP = object()     # an override argument that was not given


@dataclass(frozen=True)
class Override:
    """The operator's maintenance settings for one instance."""

    priority: int | None = None
    force_backup: bool = False

    def __post_init__(self) -> None:
        p = self.priority
        if p is not None and not (isinstance(p, int) and 1 <= p <= 254):
            raise ValueError(f"priority {p!r}: an override is 1 to 254, or null")


def kernel_objects(spec: InstanceSpec) -> dict[str, list]:
    """The VIPs, excluded VIPs and routes of an instance, as the kernel adapter takes them
    (rules are numbered across the whole config, see ``_number_rules``).  With use_vmac
    a VIP goes on the link ``plan_vmacs`` chose; routes and rules keep their ``dev``."""
    def address(words: tuple[str, ...]) -> VirtualAddress:
        addr = VirtualAddress.from_words(words, spec.ifname)
        link = spec.vmacs.link_of(words) if spec.vmacs else None
        return addr if link is None else replace(addr, ifname=link)

    return {"vips": [address(w) for w in spec.vips],
            "evips": [address(w) for w in spec.excluded_vips],
            "routes": [VirtualRoute.from_words(w) for w in spec.routes]}


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Diff:
    """A master's kernel objects before and after a reload."""

    old: list
    new: list
    protected: set      # held by some master after the reload: never removed on the way

    @property
    def added(self) -> list:
        return [x for x in self.new if x not in self.old]

    @property
    def removed(self) -> list:
        return [x for x in self.old if x not in self.new and x not in self.protected]


class TransitionRecord(NamedTuple):
    """A state change as the control socket shows it."""

    at: float           # loop time
    old: e.State
    new: e.State
    wall: float         # time.time() when it happened: taken once, never recomputed


@dataclass
class Running:
    """One instance at run time."""

    spec: InstanceSpec
    engine: e.Instance
    sock: VrrpSocket
    announcer: Announcer
    mac: bytes
    vips: list[VirtualAddress]
    evips: list[VirtualAddress]
    routes: list[VirtualRoute]
    rules: list[VirtualRule]
    work: asyncio.Queue = field(default_factory=asyncio.Queue)
    timer: asyncio.TimerHandle | None = None
    worker: asyncio.Task | None = None
    resolving: asyncio.Task | None = None
    priority_override: int | None = None    # maintenance: replaces the configured priority
    extra_garp_at: float | None = None      # garp_extra_if: when the next round is due
    # the recent ones, for the control socket; the log has them all
    transitions: deque[TransitionRecord] = field(
        default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT))


class VrrpRuntime:
    def __init__(self, specs: list[InstanceSpec], kernel: Kernel | None = None,
                 on_transition: Callable[[Running, e.Transition], None] | None = None,
                 config: Node | None = None,
                 on_group_transition: Callable[[SyncGroup, e.State, e.State], None] | None = None,
                 on_notice: Callable[[Running, e.Action], None] | None = None) -> None:
        self.specs = specs
        self.config = config            # the model the specs were built from (for dumps)
        self.overrides: dict[str, Override] = {}
        self.kernel = kernel or Kernel()
        self.instances: list[Running] = []
        self.on_transition = on_transition
        self.on_group_transition = on_group_transition
        self.on_notice = on_notice      # PriorityChanged, LowerPriorityHeard
        self.groups: dict[str, SyncGroup] = {}
        # the state of every tracked script, file and process (interfaces: _link_up)
        self.tracker_values: dict[tuple[str, str], Value] = {}
        self._stopping = False
        self._sockets: dict[tuple[str, int], VrrpSocket] = {}
        self._announcers: dict[str, Announcer] = {}
        self._by_vrid: dict[tuple[int, int], list[Running]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._links: dict[str, LinkState] = {}
        self._link_up: dict[str, bool] = {}
        self._sources: dict[tuple[int, int], IPAddress | None] = {}     # during start or reload
        self._socket_needs: dict[tuple[str, int], tuple[set[IPAddress], bool]] = {}
        self.firewall = AcceptModeFirewall() if any(not s.accept for s in specs) else None
        self.static = StaticEntries(self.kernel)
        self._static_watch: asyncio.Task | None = None
        self.vmacs = Vmacs(self.kernel)
        self.vmac_firewall = VmacFirewall()
        # VMACs being made at start or reload: their link events wait until it is done
        self._vmacs_busy = False
        self._vmacs_dirty: set[str] = set()     # to look at again (see _vmac_event)
        self._vmacs_gone: set[str] = set()      # deleted under us, not made again yet
        self._vmac_checks: dict[str, asyncio.Task] = {}

    # -- start and stop ------------------------------------------------------

    async def start(self, resume: Collection[str] = (),
                    overrides: dict[str, Override] | None = None) -> None:
        """Start every instance; those named in ``resume`` were MASTER in a process that
        died, ``overrides`` are the operator's settings it had (see ``override``)."""
        self._loop = asyncio.get_running_loop()
        self.overrides = dict(overrides or {})
        # the VMACs first: sockets, link states and sources need them
        self.specs, plan = await self._plan_vmacs(self.specs, self.config)
        if plan.specs:
            await self.vmac_firewall.clean_start()
        await self._sync_vmacs(plan)
        self._sources.clear()
        self._plan_sockets()
        await self._read_links(self.specs)
        rules = self._number_rules(self.specs, self.config)
        for spec in self.specs:
            self.instances.append(await self._make(spec, rules[spec.cfg.name]))
        self._set_groups()
        if self.firewall:
            await self.firewall.clean_start()
        fresh = [r for r in self.instances if r.spec.cfg.name not in resume]
        await self.kernel.clean_start([a for r in fresh for a in (*r.vips, *r.evips)],
                                      [x for r in fresh for x in r.routes],
                                      [x for r in fresh for x in r.rules])
        if self.config is not None:
            await self.static.start(self.config)
        self._tasks.append(asyncio.create_task(self._watch_links()))
        self._start_static_watch()
        now = self._loop.time()
        for run in self.instances:
            self._begin(run, now, resume=run.spec.cfg.name in resume)
        for group in self.groups.values():
            self._sync(group, now)

    async def _read_links(self, specs: Iterable[InstanceSpec]) -> None:
        """The state of every interface the instances use or track, once."""
        for spec in specs:
            if spec.ifname not in self._links:
                self._links[spec.ifname] = await self.kernel.link_state(spec.ifname)
            tx = self._tx_link(spec)
            if tx not in self._links:
                self._links[tx] = await self.kernel.link_state(tx)
            for ifname in (t.name for t in spec.tracks if t.kind == INTERFACE):
                if ifname not in self._links:
                    try:
                        self._links[ifname] = await self.kernel.link_state(ifname)
                    except KernelError as err:
                        log.info("(%s) %s - taken as down", spec.cfg.name, err)
                        self._links[ifname] = LinkState(0, ifname, False, b"", 0)
                self._link_up.setdefault(ifname, self._links[ifname].up)
            self._link_up.setdefault(spec.ifname, self._links[spec.ifname].up)

    @staticmethod
    def _number_rules(specs: Iterable[InstanceSpec],
                      config: Node | None) -> dict[str, list[VirtualRule]]:
        """Rules without a preference are numbered across the whole config (static_rules
        too), as keepalived does."""
        specs = list(specs)
        if config is not None:
            return number_all_rules(config)[1]
        numbered = iter(number_rules([VirtualRule.from_words(w) for s in specs for w in s.rules]))
        return {s.cfg.name: [next(numbered) for _ in s.rules] for s in specs}

    def _begin(self, run: Running, now: float, resume: bool = False) -> None:
        run.worker = asyncio.create_task(self._worker(run))
        wanted = self.overrides.get(run.spec.cfg.name, Override())
        run.priority_override = wanted.priority
        if run.priority_override is not None:
            run.engine.reconfigure(now, replace(run.engine.cfg, priority=self._base(run)))
        if wanted.force_backup:
            run.engine.hold(now, True)
        tracking = self._tracking(run)
        self._perform(run, run.engine.start(now, tracking.faults, resume=resume))
        self._perform(run, run.engine.set_priority(now, self._base(run) + tracking.delta))

    @staticmethod
    def _base(run: Running) -> int:
        """The base priority: the operator's override, or the configured one."""
        return run.priority_override or run.spec.cfg.priority

    def _tracking(self, run: Running) -> Tracking:
        """What the instance's tracked objects do to it now."""
        values = self.tracker_values
        if any(t.kind == INTERFACE for t in run.spec.tracks):
            values = {**values, **{(INTERFACE, name): up for name, up in self._link_up.items()}}
        tracking = evaluate(run.spec.tracks, values)
        vmac = run.spec.vmacs.vmac if run.spec.vmacs else None
        if vmac is not None and vmac.ifname not in self.vmacs.owned:
            # keepalived could not make it either: the instance stays in FAULT
            return replace(tracking, faults=tracking.faults | {f"vmac:{vmac.ifname}"})
        return tracking

    def _set_groups(self) -> None:
        """The sync groups of the current specs; a group that keeps its name and
        members keeps its state across a reload."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for spec in self.specs:
            if spec.sync_group:
                wanted[spec.sync_group].append(spec.cfg.name)
        groups = {}
        for name, members in wanted.items():
            group = self.groups.get(name)
            if group is None or group.members != tuple(members):
                group = SyncGroup(name, tuple(members))
            groups[name] = group
        self.groups = groups
        for run in self.instances:
            run.engine.synced = run.spec.sync_group is not None

    async def _make(self, spec: InstanceSpec, rules: list[VirtualRule]) -> Running:
        cfg = spec.cfg
        link = self._links[spec.ifname]
        key = (link.ifindex, cfg.family)
        if spec.source_configured is None and key not in self._sources:
            # one address dump per link and family, not per instance: a dump
            # costs milliseconds of Python per thousand addresses
            self._sources[key] = await self._source_address(*key)
        source = spec.source_configured or self._vmac_source(spec) or self._sources[key]
        engine = e.Instance(replace(cfg, source=source))
        engine.synced = spec.sync_group is not None
        sock = self._socket(self._tx_link(spec), cfg.family)
        announcer = self._announcers.get(spec.ifname)
        if announcer is None:
            announcer = self._announcers[spec.ifname] = Announcer(spec.ifname)
        run = Running(
            spec=spec, engine=engine, sock=sock, announcer=announcer, mac=link.mac,
            **kernel_objects(spec), rules=rules)
        self._by_vrid[(id(sock), cfg.vrid)].append(run)
        return run

    def _plan_sockets(self) -> None:
        """What each interface and family's socket must join and read (once, not per instance)."""
        needs: dict[tuple[str, int], tuple[set[IPAddress], bool]] = {}
        for spec in self.specs:
            key = (self._tx_link(spec), spec.cfg.family)
            groups, ah = needs.setdefault(key, (set(), False))
            if not spec.cfg.unicast:
                groups.add(spec.group)
            needs[key] = (groups, ah or spec.cfg.auth_type == 2)
        self._socket_needs = needs

    def _socket(self, ifname: str, family: int) -> VrrpSocket:
        """The shared socket of an interface and family, opened as the current specs need it."""
        key = (ifname, family)
        groups, ah = self._socket_needs[key]
        sock = self._sockets.get(key)
        if sock is not None and sock.groups == groups and sock.ah == ah and \
                sock.ifindex == self._links[ifname].ifindex:
            return sock
        new = VrrpSocket(ifname, self._links[ifname].ifindex, family, groups, ah)
        for rx in new.rx:
            self._loop.add_reader(rx.fileno(), self._on_readable, new, rx)
        self._sockets[key] = new
        if sock is not None:
            # Groups or AH changed on reload, or the link was made again: the
            # instances move to the new socket.
            for (sock_id, vrid), runs in list(self._by_vrid.items()):
                if sock_id == id(sock):
                    del self._by_vrid[(sock_id, vrid)]
                    self._by_vrid[(id(new), vrid)] = runs
                    for run in runs:
                        run.sock = new
            self._close_socket(sock)
        return new

    def _close_socket(self, sock: VrrpSocket) -> None:
        for rx in sock.rx:
            self._loop.remove_reader(rx.fileno())
        sock.close()

    async def _source_address(self, ifindex: int, family: int) -> IPAddress | None:
        """The interface's primary IPv4 address, or its IPv6 link-local one (RFC 5798 5.1.2.1)."""
        addrs = await self.kernel.interface_addresses(ifindex, family)
        if family == 6:
            addrs = [a for a in addrs if a.is_link_local] or addrs
        return addrs[0] if addrs else None

    # -- VMACs (use_vmac, agent/vrrp/vmac.py) ----------------------------------------

    def _tx_link(self, spec: InstanceSpec) -> str:
        """Where the instance's adverts leave and arrive: its VMAC, or its interface
        with vmac_xmit_base (keepalived's sockpool), without a VMAC, or when the VMAC
        could not be made."""
        vmac = spec.vmacs.vmac if spec.vmacs else None
        if vmac is None or vmac.xmit_base or vmac.ifname not in self.vmacs.owned:
            return spec.ifname
        return vmac.ifname

    def _vmac_source(self, spec: InstanceSpec) -> IPAddress | None:
        """IPv6 adverts from a VMAC leave from its own /64 (keepalived's vrrp_send_adv
        takes the VMAC's address): normally the interface's link-local address, but
        the EUI-64 one of the interface's MAC when the interface has none."""
        tx = self._tx_link(spec)
        return self.vmacs.link_local(tx) if tx != spec.ifname else None

    async def _plan_vmacs(self, specs: list[InstanceSpec],
                          config: Node | None) -> tuple[list[InstanceSpec], VmacPlan]:
        """The specs with their VMACs, named from the links that exist now."""
        if config is None or not (self.vmacs.owned or mentions_vmac(config)):
            return specs, VmacPlan()
        plan = plan_vmacs(config, await self.vmacs.links(), owned=set(self.vmacs.owned))
        for message in plan.messages:
            log.info("%s", message)
        return [with_vmacs(s, plan.instances.get(s.cfg.name)) for s in specs], plan

    async def _sync_vmacs(self, plan: VmacPlan) -> None:
        """Have the plan's VMACs (start, reload).  One made again under a known name
        (a new ifindex) is taken up as a link event would be, at once."""
        if not plan.specs and not self.vmacs.owned:
            return
        self._vmacs_busy = True
        try:
            made = await self.vmacs.sync(plan.specs)
            for name in made:
                self._vmacs_gone.discard(name)
                state = await self.kernel.link_state(name)
                known = self._links.get(name)
                if known is not None and known.ifindex != state.ifindex:
                    self._relink(state)
                self._links[name] = state
                self._link_state(state)
        finally:
            self._vmacs_busy = False
        for name in list(self._vmacs_dirty):
            self._vmac_event(name)
        await self._update_vmac_firewall()

    async def _update_vmac_firewall(self) -> None:
        """keepalived's IGMP/MLD rules for the instances' own VMACs (not with
        disable_local_igmp for IPv4 ones; IPv6 too for other-family eVIPs)."""
        glob = self.config.blocks("global_defs") if self.config is not None else []
        no_igmp = bool(glob and glob[0].get("disable_local_igmp"))
        vmacs = []
        for spec in self.specs:
            vmac = spec.vmacs.vmac if spec.vmacs else None
            if vmac is None or vmac.ifname not in self.vmacs.owned or \
                    vmac.ifname in self._vmacs_gone or (vmac.family == 4 and no_igmp):
                continue
            vmacs.append((vmac.ifname, vmac.base, vmac.family))
            if vmac.family == 4 and vmac.ipv6:
                vmacs.append((vmac.ifname, vmac.base, 6))
        try:
            await self.vmac_firewall.update(vmacs)
        except FirewallError as err:
            log.error("VMAC IGMP/MLD rules not set: %s", err)

    async def _close_vmacs(self) -> None:
        if not self.vmacs.owned:
            return
        try:
            await self.vmac_firewall.close()
        except FirewallError as err:
            log.error("VMAC IGMP/MLD rules not removed: %s", err)
        await self.vmacs.close()

    def _vmac_event(self, name: str) -> None:
        """Something happened to a VMAC of ours: look at it as it is now, since events
        queued while it was being made tell an older story."""
        self._vmacs_dirty.add(name)
        task = self._vmac_checks.get(name)
        if not self._vmacs_busy and not self._stopping and (task is None or task.done()):
            self._vmac_checks[name] = asyncio.create_task(self._vmac_check(name))

    async def _vmac_check(self, name: str) -> None:
        while name in self._vmacs_dirty and not self._stopping:
            self._vmacs_dirty.discard(name)
            spec = self.vmacs.owned.get(name)
            if spec is None:
                return
            try:
                state = await self.kernel.link_state(name)
            except KernelError:
                # deleted under us (or with its base): made again, as keepalived
                # does; its instance is in FAULT until then
                self._vmacs_gone.add(name)
                self._link_state(LinkState(0, name, False, b"", 0, deleted=True))
                try:
                    await self.vmacs.create(spec)
                except KernelError as err:
                    log.info("%s - made again when %s is back", err, spec.base)
                    return
                log.info("(%s) VMAC %s made again", spec.instance, name)
                self._vmacs_gone.discard(name)
                await self._update_vmac_firewall()
                state = await self.kernel.link_state(name)
            known = self._links.get(name)
            if known is not None and known.ifindex != state.ifindex:
                self._relink(state)
            self._link_state(state)

    def _relink(self, state: LinkState) -> None:
        """A link is back under a known name with another ifindex (a VMAC made again):
        sockets bound to it are reopened, announcements take a new packet socket, and
        a master puts back the VIPs that went with the old link."""
        name = state.ifname
        self._links[name] = state
        if name in self.vmacs.owned:
            announcer = self._announcers.pop(name, None)
            if announcer is not None:
                announcer.close()
        for run in self.instances:
            if run.sock.ifname == name and not self._vmacs_busy:
                self._rebind(run)       # (a reload moves its sockets itself)
            lost = [a for a in (*run.vips, *run.evips) if a.ifname == name]
            if lost and run.engine.vips_set:
                run.work.put_nowait(lambda run=run, lost=lost: self._put_back(run, lost))

    def _rebind(self, run: Running) -> None:
        """Move the instance to the socket of its link as it is now."""
        key = (self._tx_link(run.spec), run.spec.cfg.family)
        if key not in self._socket_needs:
            self._plan_sockets()
        sock = self._socket(*key)
        if sock is run.sock:
            return
        vrid = run.spec.cfg.vrid
        runs = self._by_vrid[(id(run.sock), vrid)]
        runs.remove(run)
        if not runs:
            del self._by_vrid[(id(run.sock), vrid)]
        run.sock = sock
        self._by_vrid[(id(sock), vrid)].append(run)

    async def _put_back(self, run: Running, lost: list[VirtualAddress]) -> None:
        if not run.engine.vips_set:
            return
        log.info("(%s) adding VIPs %s again", run.spec.cfg.name,
                 ", ".join(str(a.address) for a in lost))
        await self.kernel.add_addresses(lost)
        await self._announce(run, run.engine.cfg.garp_repeat, lost)

    async def _announce_extra(self, run: Running) -> None:
        """garp_extra_if: one GARP/NA per other link of the VIPs (keepalived's
        vrrp_send_vmac_update): each address VMAC, with ``all`` every other link
        too, and the own VMAC only with vmac_xmit_base (adverts refresh it otherwise)."""
        vmacs = run.spec.vmacs
        if vmacs is None or not run.engine.vips_set:
            return
        own = vmacs.vmac.ifname if vmacs.vmac else run.spec.ifname
        xmit_base = bool(vmacs.vmac and vmacs.vmac.xmit_base)
        first: dict[str, VirtualAddress] = {}
        for vip in (*run.vips, *run.evips):
            if vip.ifname not in self.vmacs.owned and not vmacs.garp_extra_if_all:
                continue
            if vip.ifname == own and not xmit_base:
                continue
            first.setdefault(vip.ifname, vip)
        if first:
            await self._announce(run, 1, list(first.values()))

    async def stop(self, release: bool = True) -> None:
        """Graceful stop: priority 0 from masters; every address of ours removed unless
        ``release`` is False (keepalived's -V)."""
        if self._loop is None:
            return
        self._stopping = True
        now = self._loop.time()
        for run in self.instances:
            actions = run.engine.stop(now)
            if not release:
                actions = [a for a in actions if not isinstance(a, e.ReleaseAddresses)]
            self._perform(run, actions)
        for run in self.instances:
            await run.work.join()
        for task in self._tasks:
            task.cancel()
        await self.static.stop(release=release)
        for run in self.instances:
            self._retire(run)
        for sock in self._sockets.values():
            self._close_socket(sock)
        for announcer in self._announcers.values():
            announcer.close()
        if self.firewall and release:
            await self.firewall.close()
        for task in self._vmac_checks.values():
            task.cancel()
        if release:
            # keepalived keeps its VMACs with -V too
            await self._close_vmacs()
        await self.kernel.close()

    def _retire(self, run: Running) -> None:
        if run.timer:
            run.timer.cancel()
            run.timer = None
        if run.worker:
            run.worker.cancel()
        if run.resolving:
            run.resolving.cancel()

    # -- reload ----------------------------------------------------------------

    async def reload(self, specs: list[InstanceSpec], config: Node | None = None) -> ReloadReport:
        """Apply a new configuration as a difference.

        Instances are matched as keepalived's vrrp_exist matches them: by what
        the LAN sees (interface, family, VRID, unicast source or multicast
        group), not by name, so a renamed instance and swapped VRIDs keep
        their state.  A matched instance keeps its state and timers; a master
        adds and removes only the addresses that changed, and no address that
        some master still holds after the reload is ever removed on the way.
        """
        loop = self._loop
        assert loop is not None, "reload before start"
        began = loop.time()
        report = ReloadReport()
        specs, plan = await self._plan_vmacs(specs, config)
        old = {identity(r.spec): r for r in self.instances}
        new = {identity(s): s for s in specs}
        rules = self._number_rules(specs, config)
        self.specs, self.config = specs, config
        # What masters hold once the reload is done.
        parsed: dict[tuple, dict[str, list]] = {}     # parsed once, for masters and changes

        def objects(key: tuple) -> dict[str, list]:
            if key not in parsed:
                parsed[key] = kernel_objects(new[key])
            return parsed[key]

        protected = set()
        for key, run in old.items():
            if key in new and run.engine.vips_set:
                protected.update(*objects(key).values(), rules[new[key].cfg.name])
        now = loop.time()
        for key, run in old.items():
            if key not in new:
                report.removed.append(run.spec.cfg.name)
                await self._remove(run, now, protected)
        # VMACs after the removed instances said goodbye on them (as keepalived's
        # clear_diff_vrrp), before the new ones need theirs
        await self._sync_vmacs(plan)
        self._sources.clear()
        await self._read_links(specs)
        self._plan_sockets()
        if self.firewall is None and any(not s.accept for s in specs):
            self.firewall = AcceptModeFirewall()
            await self.firewall.clean_start()
        instances = []
        for key, spec in new.items():
            run = old.get(key)
            if run is None:
                run = await self._make(spec, rules[spec.cfg.name])
                self._begin(run, loop.time())
                report.added.append(spec.cfg.name)
            elif run.spec == spec and run.rules == rules[spec.cfg.name]:
                report.unchanged.append(spec.cfg.name)
            else:
                self._update(run, spec, objects(key), rules[spec.cfg.name], protected,
                             loop.time())
                self._rebind(run)       # vmac_xmit_base or the VMAC changed
                report.changed.append(spec.cfg.name)
            instances.append(run)
        self.instances = instances
        if config is not None:
            await self.static.reload(config)
            self._start_static_watch()
        self._set_groups()
        now = loop.time()
        for run in instances:
            mine = f"sync:{run.spec.sync_group}"
            for reason in run.engine.fault_reasons:
                if reason.startswith("sync:") and reason != mine:
                    self._perform(run, run.engine.link(now, True, reason))
        for group in self.groups.values():
            self._sync(group, now)
        for key, sock in list(self._sockets.items()):
            if not any(r.sock is sock for r in instances):
                del self._sockets[key]
                self._close_socket(sock)
            else:
                self._socket(*key)      # re-opened if its groups or AH changed
        for run in instances:
            await run.work.join()
        report.seconds = loop.time() - began
        return report

    async def _remove(self, run: Running, now: float, protected: set) -> None:
        actions = run.engine.stop(now)
        release = any(isinstance(a, e.ReleaseAddresses) for a in actions)
        self._perform(run, [a for a in actions if not isinstance(a, e.ReleaseAddresses)])
        if release:
            gone = _Diff(old=[*run.vips, *run.evips, *run.routes, *run.rules], new=[],
                         protected=protected)
            run.work.put_nowait(lambda: self._apply_diff(run, gone, run.spec.accept, True))
        await run.work.join()
        self._retire(run)
        self._by_vrid[(id(run.sock), run.spec.cfg.vrid)].remove(run)
        log.info("(%s) removed", run.spec.cfg.name)

    def _update(self, run: Running, spec: InstanceSpec, objects: dict[str, list],
                rules: list[VirtualRule], protected: set, now: float) -> None:
        old_spec = run.spec
        name = spec.cfg.name
        if old_spec.cfg.name != name:
            log.info("(%s) renamed to %s", old_spec.cfg.name, name)
        vips, evips, routes = objects["vips"], objects["evips"], objects["routes"]
        if run.engine.vips_set:
            diff = _Diff(old=[*run.vips, *run.evips, *run.routes, *run.rules],
                         new=[*vips, *evips, *routes, *rules], protected=protected)
            if diff.added or diff.removed or old_spec.accept != spec.accept:
                run.work.put_nowait(
                    lambda: self._apply_diff(run, diff, old_spec.accept, spec.accept))
        run.vips, run.evips, run.routes, run.rules = vips, evips, routes, rules
        run.spec = spec
        cfg = replace(spec.cfg, source=spec.source_configured or run.engine.cfg.source,
                      priority=self._base(run))
        self._perform(run, run.engine.reconfigure(now, cfg))
        self._apply_tracking(run, now)

    async def _apply_diff(self, run: Running, diff: _Diff, was_accept: bool,
                          accept: bool) -> None:
        """A master's kernel objects from the old set to the new: rules and routes go
        first, as on release; new addresses are announced."""
        name = run.spec.cfg.name
        gone_rules = [x for x in diff.removed if isinstance(x, VirtualRule)]
        gone_routes = [x for x in diff.removed if isinstance(x, VirtualRoute)]
        gone_addrs = [x for x in diff.removed if isinstance(x, VirtualAddress)]
        new_addrs = [x for x in diff.added if isinstance(x, VirtualAddress)]
        if gone_rules:
            await self.kernel.remove_rules(gone_rules)
        if gone_routes:
            await self.kernel.remove_routes(gone_routes)
        if gone_addrs:
            log.info("(%s) removing VIPs %s", name, ", ".join(str(a.address) for a in gone_addrs))
            await self.kernel.remove_addresses(gone_addrs)
        if self.firewall:
            kept = [ip_address(v.address.ip) for v in diff.new if isinstance(v, VirtualAddress)]
            old = [ip_address(v.address.ip) for v in diff.old if isinstance(v, VirtualAddress)]
            if not was_accept:
                await self.firewall.unblock([a for a in old if accept or a not in kept])
            if not accept:
                await self.firewall.block([a for a in kept if was_accept or a not in old])
        if new_addrs:
            log.info("(%s) adding VIPs %s", name, ", ".join(str(a.address) for a in new_addrs))
            await self.kernel.add_addresses(new_addrs)
        new_routes = [x for x in diff.added if isinstance(x, VirtualRoute)]
        new_rules = [x for x in diff.added if isinstance(x, VirtualRule)]
        if new_routes:
            await self.kernel.add_routes(new_routes)
        if new_rules:
            await self.kernel.add_rules(new_rules)
        if new_addrs:
            await self._announce(run, run.engine.cfg.garp_repeat, new_addrs)

    # -- what the control socket and the dumps read -------------------------------

    def states(self) -> dict[str, str]:
        return {r.spec.cfg.name: r.engine.state.name for r in self.instances}

    def override(self, name: str, *, priority: int | None | object = KEEP,
                 force_backup: bool | object = KEEP) -> Override:
        """Maintenance settings of an instance, kept across reloads (by name).

        ``priority`` replaces the configured priority (1..254; None: back to the
        configured one); tracked weights still apply.  ``force_backup``: see
        ``Instance.hold``.
        """
        run = next((r for r in self.instances if r.spec.cfg.name == name), None)
        if run is None:
            raise KeyError(f"no instance {name!r}")
        current = self.overrides.get(name, Override())
        # Override checks the priority before anything changes
        wanted = Override(current.priority if priority is KEEP else priority,
                          current.force_backup if force_backup is KEEP else bool(force_backup))
        self.overrides[name] = wanted
        now = self._loop.time()
        if wanted.priority != run.priority_override:
            run.priority_override = wanted.priority
            log.info("(%s) priority %s", name, f"override {wanted.priority}"
                     if wanted.priority is not None else "back to the configured one")
            self._perform(run, run.engine.reconfigure(
                now, replace(run.engine.cfg, priority=self._base(run))))
            self._apply_tracking(run, now)
        self._perform(run, run.engine.hold(now, wanted.force_backup))
        return wanted

    def clear_stats(self) -> None:
        for run in self.instances:
            run.engine.stats = e.Stats()

    # -- events --------------------------------------------------------------

    def _on_readable(self, sock: VrrpSocket, rx: socket.socket, limit: int = 64) -> None:
        now = self._loop.time()
        for pkt in sock.read(rx, limit):
            candidates = self._by_vrid.get((id(sock), pkt.vrid))
            if not candidates:
                continue                # another router's VRID: not ours to judge
            run = candidates[0]
            if len(candidates) > 1:     # same VRID, different unicast peers
                src = pkt.received.src
                run = next((r for r in candidates
                            if any(p.address == src for p in r.spec.cfg.peers)), run)
            self._perform(run, run.engine.receive(now, pkt.received))

    def _on_timer(self, run: Running) -> None:
        run.timer = None
        if run.engine.state == e.State.BACKUP:     # only a backup's timer can find a master down
            self._drain()
        self._perform(run, run.engine.tick(self._loop.time()))

    def _drain(self) -> None:
        """Read what the VRRP sockets hold before a timer acts.

        After a freeze (SIGSTOP, a stalled VM) the loop may run an expired
        master-down timer before the reader of the adverts that queued
        meanwhile: a live master would be declared down, and our takeover
        would pull clients away from it.  An advert read here restarts the
        down timer, and ``tick`` then finds nothing due.
        """
        for sock in list(self._sockets.values()):
            for rx in sock.rx:
                try:
                    self._on_readable(sock, rx, DRAIN_LIMIT)
                except OSError as err:
                    log.info("reading %s before a timer: %s", sock.ifname, err)

    async def _watch_links(self) -> None:
        while True:
            try:
                async for state in self.kernel.watch_links():
                    self._on_link(state)
                return                  # the kernel connection was closed: we are stopping
            except KernelError as err:
                # Events were lost: watching again starts with every link's state.
                log.info("link events lost (%s) - reading links again", err)

    def _start_static_watch(self) -> None:
        """Listen for deleted static entries once there are any (no socket otherwise)."""
        config = self.static.config
        if self._static_watch is None and (config.addresses or config.routes or config.rules):
            self._static_watch = asyncio.create_task(self._watch_static())
            self._tasks.append(self._static_watch)

    async def _watch_static(self) -> None:
        """Put back static entries that someone deletes (agent/vrrp/static.py)."""
        while True:
            try:
                await self.static.watch()
                return
            except KernelError as err:
                log.info("%s - listening again", err)

    def _on_link(self, state: LinkState) -> None:
        name = state.ifname
        if name in self.vmacs.owned:
            self._vmac_event(name)      # looked at as it is now, not as the event says
            return
        known = self._links.get(name)
        if known is not None and known.ifindex and state.ifindex != known.ifindex:
            if state.deleted:
                return                  # the end of a link that was replaced
            self._relink(state)
        if not state.deleted:
            # a base back: the VMACs that went with it are made again
            for vmac in [n for n in self._vmacs_gone if n in self.vmacs.owned
                         and self.vmacs.owned[n].base == name]:
                self._vmac_event(vmac)
        self._link_state(state)

    def _link_state(self, state: LinkState) -> None:
        """A link's up/down state as tracking sees it."""
        if state.ifname not in self._link_up or self._link_up[state.ifname] == state.up:
            return
        self._link_up[state.ifname] = state.up
        self._links[state.ifname] = state
        log.info("Netlink reports %s %s", state.ifname, "up" if state.up else "down")
        self._tracked_changed(INTERFACE, state.ifname)

    def set_tracker(self, kind: str, name: str, value: Value) -> None:
        """A tracked script, file or process has a new state (from the trackers' adapters)."""
        if self.tracker_values.get((kind, name)) == value and (kind, name) in self.tracker_values:
            return
        self.tracker_values[(kind, name)] = value
        self._tracked_changed(kind, name)

    def _tracked_changed(self, kind: str, name: str) -> None:
        if self._loop is None or self._stopping:
            return
        now = self._loop.time()
        for run in self.instances:
            if any(t.key == (kind, name) for t in run.spec.tracks):
                self._apply_tracking(run, now)

    def _apply_tracking(self, run: Running, now: float) -> None:
        """Faults and priority from the tracked objects, as keepalived's weights give
        them (agent/vrrp/track.py).  New faults go first, so an instance that moves
        from one fault to another does not pass through BACKUP."""
        tracking = self._tracking(run)
        current = {r for r in run.engine.fault_reasons if not r.startswith("sync:")}
        for reason in sorted(tracking.faults - current):
            self._perform(run, run.engine.link(now, False, reason))
        for reason in sorted(current - tracking.faults):
            self._perform(run, run.engine.link(now, True, reason))
        self._perform(run, run.engine.set_priority(now, self._base(run) + tracking.delta))
        if run.spec.sync_group in self.groups:
            self._sync(self.groups[run.spec.sync_group], now)

    def _sync(self, group: SyncGroup, now: float) -> None:
        if self._stopping:
            return
        engines = {r.spec.cfg.name: r.engine for r in self.instances
                   if r.spec.sync_group == group.name}
        member_actions, changed = group.update(now, engines)
        runs = {r.spec.cfg.name: r for r in self.instances}
        for name, actions in member_actions:
            self._perform(runs[name], actions)
        if changed is not None:
            old, new = changed
            log.info("VRRP_Group(%s) Syncing instances to %s state", group.name, new.name)
            if self.on_group_transition:
                self.on_group_transition(group, old, new)

    def silent_fault(self, run: Running) -> bool:
        """In FAULT only while a tracked script has not answered yet: keepalived sends
        no notify for that."""
        own = [r for r in run.engine.fault_reasons if not r.startswith("sync:")]
        if own:
            return only_pending(own)
        group = self.groups.get(run.spec.sync_group or "")
        return group is not None and group.silent

    # -- actions -------------------------------------------------------------

    def _perform(self, run: Running, actions: list[e.Action]) -> None:
        regroup = False
        for action in actions:
            if isinstance(action, e.SendAdvert):
                self._send(run, action)
            elif isinstance(action, e.Log):
                log.info("%s", action.message)
            elif isinstance(action, e.Transition):
                run.transitions.append(TransitionRecord(self._loop.time(), action.old,
                                                        action.new, time.time()))
                if self.on_transition:
                    self.on_transition(run, action)
                regroup = True
            elif isinstance(action, e.WantMaster):
                regroup = True
            elif isinstance(action, (e.PriorityChanged, e.LowerPriorityHeard)):
                if self.on_notice:
                    self.on_notice(run, action)
            else:
                run.work.put_nowait(action)
        self._arm(run)
        if regroup and run.spec.sync_group in self.groups:
            self._sync(self.groups[run.spec.sync_group], self._loop.time())

    def _extra_garps(self, run: Running, action: e.Action | None = None) -> None:
        """garp_extra_if: due every so many seconds from when a master's VIPs are set
        (keepalived's vrrp_state_become_master), looked at when it sends an advert
        (vrrp_state_master_tx)."""
        every = run.spec.vmacs.garp_extra_if_s if run.spec.vmacs else 0
        if not every:
            return
        now = self._loop.time()
        if isinstance(action, e.TakeAddresses):
            run.extra_garp_at = now + every
        elif isinstance(action, e.ReleaseAddresses):
            run.extra_garp_at = None
        elif action is None and run.extra_garp_at is not None and now > run.extra_garp_at:
            run.extra_garp_at = now + every
            run.work.put_nowait(lambda: self._announce_extra(run))

    def _arm(self, run: Running) -> None:
        deadline = run.engine.deadline
        timer = run.timer
        # Every advert a backup hears moves its deadline later.  Keeping a timer
        # that fires early (tick() then does nothing and we arm again) is
        # cheaper than cancelling and re-arming on each packet.
        if timer is not None and deadline is not None and timer.when() <= deadline:
            return
        if timer is not None:
            timer.cancel()
            run.timer = None
        if deadline is not None:
            run.timer = self._loop.call_at(deadline, self._on_timer, run)

    def _send(self, run: Running, action: e.SendAdvert) -> None:
        cfg = run.engine.cfg
        if cfg.source is None:
            # An interface without carrier at start has no IPv6 link-local
            # address yet: look again, and send from the next advert on.
            log.info("(%s) no source address on %s yet - advert not sent", cfg.name,
                     run.spec.ifname)
            if run.resolving is None or run.resolving.done():
                run.resolving = asyncio.create_task(self._resolve_source(run))
            return
        if run.extra_garp_at is not None:
            self._extra_garps(run)
        targets = [p.address for p in cfg.peers] if cfg.unicast else [run.spec.group]
        ttl = run.spec.unicast_ttl if cfg.unicast else 255
        for dst in targets:
            try:
                run.sock.send(action.advert, cfg.source, dst, ttl, cfg.auth_pass, action.ah_seq,
                              action.checksum_dst)
            except OSError as err:
                if action.advert.priority or self._link_up.get(run.spec.ifname, True):
                    log.info("(%s) send advert error to %s: %s", cfg.name, dst, err)

    async def _resolve_source(self, run: Running) -> None:
        cfg = run.engine.cfg
        try:
            ifindex = (await self.kernel.link_state(run.spec.ifname)).ifindex
            source = self._vmac_source(run.spec) or \
                await self._source_address(ifindex, cfg.family)
        except KernelError as err:
            log.info("(%s) %s", cfg.name, err)
            return
        if source is not None:
            log.info("(%s) sending adverts from %s", cfg.name, source)
            run.engine.cfg = replace(cfg, source=source)

    async def _worker(self, run: Running) -> None:
        while True:
            action = await run.work.get()
            try:
                if callable(action):
                    await action()
                else:
                    await self._kernel_action(run, action)
            except Exception as err:  # noqa: BLE001 - a kernel refusal must not stop VRRP
                log.error("(%s) %s", run.spec.cfg.name, err)
            finally:
                run.work.task_done()

    async def _kernel_action(self, run: Running, action: e.Action) -> None:
        name = run.spec.cfg.name
        if isinstance(action, e.TakeAddresses):
            log.info("(%s) setting VIPs.", name)
            if self.firewall and not run.spec.accept:
                try:
                    await self.firewall.block(self._addresses(run))
                except FirewallError as err:
                    # The VIPs still go up: a master that answers is better than none.
                    log.error("(%s) no_accept not enforced: %s", name, err)
            await self.kernel.add_addresses([*run.vips, *run.evips])
            if run.routes:
                await self.kernel.add_routes(run.routes)
            if run.rules:
                await self.kernel.add_rules(run.rules)
            self._extra_garps(run, action)
        elif isinstance(action, e.ReleaseAddresses):
            self._extra_garps(run, action)
            if run.rules:
                await self.kernel.remove_rules(run.rules)
            if run.routes:
                await self.kernel.remove_routes(run.routes)
            await self.kernel.remove_addresses([*run.vips, *run.evips])
            if self.firewall and not run.spec.accept:
                await self.firewall.unblock(self._addresses(run))
        elif isinstance(action, e.Announce):
            await self._announce(run, action.repeat, ticket=action.ticket)
        elif isinstance(action, e.AnnounceSource):
            source = run.engine.cfg.source
            if source is not None:
                run.announcer.announce(run.mac, source)

    @staticmethod
    def _addresses(run: Running) -> list[IPAddress]:
        return [ip_address(v.address.ip) for v in (*run.vips, *run.evips)]

    async def _announce(self, run: Running, repeat: int,
                        vips: list[VirtualAddress] | None = None, ticket: int = 0) -> None:
        """``repeat`` rounds of GARPs / NAs, each only while the instance holds its
        addresses: a round queued before it stepped down (after a freeze, say) would
        pull clients to a host that no longer answers.  ``ticket``: the engine hears
        when the first round is out (or will not be), and sends its first advert."""
        spec = run.spec
        try:
            vips = [*run.vips, *run.evips] if vips is None else vips
            # A VIP on another link is announced there, with that link's MAC.
            senders = {spec.ifname: (run.announcer, run.mac)}
            for vip in vips:
                if vip.ifname not in senders:
                    senders[vip.ifname] = await self._announcer(vip.ifname)
            for i in range(repeat):
                for vip in vips:
                    if not run.engine.vips_set:
                        return
                    address = ip_address(vip.address.ip)
                    announcer, mac = senders[vip.ifname]
                    if announcer is not None:
                        announcer.announce(mac, address)
                    gap = spec.gna_interval_us if address.version == 6 else spec.garp_interval_us
                    if gap and i + 1 < repeat:
                        await asyncio.sleep(gap / e.US)
                if ticket:
                    self._announced(run, ticket)
                    ticket = 0
        finally:
            if ticket:
                self._announced(run, ticket)

    def _announced(self, run: Running, ticket: int) -> None:
        self._perform(run, run.engine.announced(self._loop.time(), ticket))

    async def _announcer(self, ifname: str) -> tuple[Announcer | None, bytes]:
        announcer = self._announcers.get(ifname)
        try:
            mac = (await self.kernel.link_state(ifname)).mac
            if announcer is None:
                vmac = self.vmacs.owned.get(ifname)
                announcer = self._announcers[ifname] = Announcer(ifname,
                                                                 vmac.base if vmac else None)
        except Exception as err:  # noqa: BLE001 - a missing link must not stop the others
            log.info("cannot announce on %s: %s", ifname, err)
            return None, b""
        return announcer, mac
