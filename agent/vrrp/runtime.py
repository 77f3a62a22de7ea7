"""The VRRP process: engines, sockets, netlink and timers on one asyncio loop.

Adverts are sent the moment an engine asks; kernel work (addresses, routes,
rules) and the announcements that must follow it run in order on a queue per
instance, so a slow netlink call never delays an advert.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from ..config.model import Node
from . import engine as e
from .build import InstanceSpec
from .firewall import AcceptModeFirewall, FirewallError
from .kernel import (
    Kernel,
    KernelError,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
)
from .transport import Announcer, VrrpSocket

log = logging.getLogger("keepalived_py.vrrp")

IPAddress = IPv4Address | IPv6Address


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
    transitions: list[tuple[float, e.State, e.State]] = field(default_factory=list)


class VrrpRuntime:
    def __init__(self, specs: list[InstanceSpec], kernel: Kernel | None = None,
                 on_transition: Callable[[Running, e.Transition], None] | None = None,
                 config: Node | None = None) -> None:
        self.specs = specs
        self.config = config            # the model the specs were built from (for dumps)
        self.kernel = kernel or Kernel()
        self.instances: list[Running] = []
        self.on_transition = on_transition
        self._sockets: dict[tuple[str, int], VrrpSocket] = {}
        self._announcers: dict[str, Announcer] = {}
        self._by_vrid: dict[tuple[int, int], list[Running]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._link_up: dict[str, bool] = {}
        self._rules: dict[str, list[VirtualRule]] = {}
        self.firewall = AcceptModeFirewall() if any(not s.accept for s in specs) else None

    # -- start and stop ------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        links = {}
        for spec in self.specs:
            links.setdefault(spec.ifname, await self.kernel.link_state(spec.ifname))
            for tracked in spec.tracked:
                if tracked.ifname not in links:
                    try:
                        links[tracked.ifname] = await self.kernel.link_state(tracked.ifname)
                    except KernelError as err:
                        log.info("(%s) %s - taken as down", spec.cfg.name, err)
                        links[tracked.ifname] = LinkState(0, tracked.ifname, False, b"", 0)
        self._link_up = {name: link.up for name, link in links.items()}
        # Rules without a preference are numbered across the whole config, as keepalived does.
        numbered = iter(number_rules([VirtualRule.from_words(w) for s in self.specs
                                      for w in s.rules]))
        self._rules = {s.cfg.name: [next(numbered) for _ in s.rules] for s in self.specs}
        for spec in self.specs:
            self.instances.append(await self._make(spec, links[spec.ifname]))
        if self.firewall:
            await self.firewall.clean_start()
        await self.kernel.clean_start(
            [a for r in self.instances for a in (*r.vips, *r.evips)],
            [x for r in self.instances for x in r.routes],
            [x for r in self.instances for x in r.rules])
        self._tasks.append(asyncio.create_task(self._watch_links()))
        now = self._loop.time()
        for run in self.instances:
            run.worker = asyncio.create_task(self._worker(run))
            faults = [f"if:{t.ifname}" for t in run.spec.tracked
                      if t.weight == 0 and self._link_up[t.ifname] == t.reverse]
            self._perform(run, run.engine.start(now, faults))
            self._apply_weights(run, now)

    async def _make(self, spec: InstanceSpec, link) -> Running:  # noqa: ANN001 - LinkState
        cfg = spec.cfg
        source = spec.source_configured or await self._source_address(link.ifindex, cfg.family)
        engine = e.Instance(replace(cfg, source=source))
        key = (spec.ifname, cfg.family)
        sock = self._sockets.get(key)
        if sock is None:
            same = [s for s in self.specs if (s.ifname, s.cfg.family) == key]
            groups = {s.group for s in same if not s.cfg.unicast}
            ah = any(s.cfg.auth_type == 2 for s in same)
            sock = self._sockets[key] = VrrpSocket(spec.ifname, link.ifindex, cfg.family,
                                                   groups, ah)
            for rx in sock.rx:
                self._loop.add_reader(rx.fileno(), self._on_readable, sock, rx)
        announcer = self._announcers.get(spec.ifname)
        if announcer is None:
            announcer = self._announcers[spec.ifname] = Announcer(spec.ifname)
        run = Running(
            spec=spec, engine=engine, sock=sock, announcer=announcer, mac=link.mac,
            vips=[VirtualAddress.from_words(w, spec.ifname) for w in spec.vips],
            evips=[VirtualAddress.from_words(w, spec.ifname) for w in spec.excluded_vips],
            routes=[VirtualRoute.from_words(w) for w in spec.routes],
            rules=self._rules.pop(spec.cfg.name, []))
        self._by_vrid[(id(sock), cfg.vrid)].append(run)
        return run

    async def _source_address(self, ifindex: int, family: int) -> IPAddress | None:
        """The interface's primary IPv4 address, or its IPv6 link-local one (RFC 5798 5.1.2.1)."""
        addrs = await self.kernel.interface_addresses(ifindex, family)
        if family == 6:
            addrs = [a for a in addrs if a.is_link_local] or addrs
        return addrs[0] if addrs else None

    async def stop(self) -> None:
        """Graceful stop: priority 0 from masters, every address of ours removed."""
        if self._loop is None:
            return
        now = self._loop.time()
        for run in self.instances:
            self._perform(run, run.engine.stop(now))
        for run in self.instances:
            await run.work.join()
        for task in self._tasks:
            task.cancel()
        for run in self.instances:
            if run.timer:
                run.timer.cancel()
            if run.worker:
                run.worker.cancel()
        for sock in self._sockets.values():
            for rx in sock.rx:
                self._loop.remove_reader(rx.fileno())
            sock.close()
        for announcer in self._announcers.values():
            announcer.close()
        if self.firewall:
            await self.firewall.close()
        await self.kernel.close()

    # -- events --------------------------------------------------------------

    def _on_readable(self, sock: VrrpSocket, rx: socket.socket) -> None:
        now = self._loop.time()
        for pkt in sock.read(rx):
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
        self._perform(run, run.engine.tick(self._loop.time()))

    async def _watch_links(self) -> None:
        while True:
            try:
                async for state in self.kernel.watch_links():
                    self._on_link(state)
                return                  # the kernel connection was closed: we are stopping
            except KernelError as err:
                # Events were lost: watching again starts with every link's state.
                log.info("link events lost (%s) - reading links again", err)

    def _on_link(self, state: LinkState) -> None:
        if state.ifname not in self._link_up or self._link_up[state.ifname] == state.up:
            return
        self._link_up[state.ifname] = state.up
        log.info("Netlink reports %s %s", state.ifname, "up" if state.up else "down")
        now = self._loop.time()
        for run in self.instances:
            for tracked in run.spec.tracked:
                if tracked.ifname != state.ifname:
                    continue
                if tracked.weight == 0:
                    up = state.up != tracked.reverse
                    self._perform(run, run.engine.link(now, up, f"if:{state.ifname}"))
                else:
                    self._apply_weights(run, now)

    def _apply_weights(self, run: Running, now: float) -> None:
        """keepalived's weights: a positive one counts while up, a negative one while down."""
        total = run.spec.cfg.priority
        for tracked in run.spec.tracked:
            up = self._link_up.get(tracked.ifname, False) != tracked.reverse
            if (tracked.weight > 0 and up) or (tracked.weight < 0 and not up):
                total += tracked.weight
        self._perform(run, run.engine.set_priority(now, total))

    # -- actions -------------------------------------------------------------

    def _perform(self, run: Running, actions: list[e.Action]) -> None:
        for action in actions:
            if isinstance(action, e.SendAdvert):
                self._send(run, action)
            elif isinstance(action, e.Log):
                log.info("%s", action.message)
            elif isinstance(action, e.Transition):
                run.transitions.append((self._loop.time(), action.old, action.new))
                if self.on_transition:
                    self.on_transition(run, action)
            else:
                run.work.put_nowait(action)
        self._arm(run)

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
            source = await self._source_address(ifindex, cfg.family)
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
        elif isinstance(action, e.ReleaseAddresses):
            if run.rules:
                await self.kernel.remove_rules(run.rules)
            if run.routes:
                await self.kernel.remove_routes(run.routes)
            await self.kernel.remove_addresses([*run.vips, *run.evips])
            if self.firewall and not run.spec.accept:
                await self.firewall.unblock(self._addresses(run))
        elif isinstance(action, e.Announce):
            await self._announce(run, action.repeat)
        elif isinstance(action, e.AnnounceSource):
            source = run.engine.cfg.source
            if source is not None:
                run.announcer.announce(run.mac, source)

    @staticmethod
    def _addresses(run: Running) -> list[IPAddress]:
        return [ip_address(v.address.ip) for v in (*run.vips, *run.evips)]

    async def _announce(self, run: Running, repeat: int) -> None:
        spec = run.spec
        # A VIP on another link is announced there, with that link's MAC.
        senders = {spec.ifname: (run.announcer, run.mac)}
        for vip in (*run.vips, *run.evips):
            if vip.ifname not in senders:
                senders[vip.ifname] = await self._announcer(vip.ifname)
        for i in range(repeat):
            for vip in (*run.vips, *run.evips):
                address = ip_address(vip.address.ip)
                announcer, mac = senders[vip.ifname]
                if announcer is not None:
                    announcer.announce(mac, address)
                gap = spec.gna_interval_us if address.version == 6 else spec.garp_interval_us
                if gap and i + 1 < repeat:
                    await asyncio.sleep(gap / e.US)

    async def _announcer(self, ifname: str) -> tuple[Announcer | None, bytes]:
        announcer = self._announcers.get(ifname)
        try:
            mac = (await self.kernel.link_state(ifname)).mac
            if announcer is None:
                announcer = self._announcers[ifname] = Announcer(ifname)
        except Exception as err:  # noqa: BLE001 - a missing link must not stop the others
            log.info("cannot announce on %s: %s", ifname, err)
            return None, b""
        return announcer, mac
