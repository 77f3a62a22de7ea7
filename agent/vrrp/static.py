"""static_ipaddress, static_routes and static_rules; track_group; garp_group.

Static entries are addresses, routes and rules that the VRRP process keeps in
place whatever the instances' states; they are never moved by a transition.
What keepalived 2.2.7 does with them (vrrp_daemon.c, vrrp_ipaddress.c,
vrrp_iproute.c, vrrp_iprule.c, vrrp_static_track.c, keepalived_netlink.c),
and so what this module does:

- start: leftover static *rules* are removed first, then addresses, routes and
  rules are added; an address or route that is already there is adopted.
- reload: only the difference is touched.  Rules are compared whole; a rule
  that changed is removed and the new one added.  Routes are matched on
  keepalived's route key (destination, tos, metric, table, scope, type, via,
  dev); a matched route is replaced in place (NLM_F_REPLACE), never deleted,
  so it takes the new values of its other attributes.  Addresses are matched on
  (interface, address, prefix length, scope, label): a matched address is left
  alone even if its broadcast, peer, flags or lifetime changed.
- stop: rules, routes, then addresses are removed.  ``-V``
  (--dont-release-vrrp) does not keep them: it even removes configured
  addresses this process did not add.
- tracking: a static entry without ``no_track`` that someone deletes is put
  back.  Addresses are always watched; routes and rules only in the address
  families where keepalived subscribes to their events (some static entry of
  that family has a track_group, or some instance has a tracked virtual route
  or rule).  When a link comes up, the tracked static addresses and routes on
  it are added again.  A static route without ``dev`` cannot be tracked.
- track_group: the instances of the group track the link of each static entry
  naming the group (address ``dev``, route ``dev``, rule ``iif``) like a
  track_interface of weight 0: that link down puts them in FAULT.  Nothing
  happens to the static entry when the instances change state.
- garp_group: its garp_interval / gna_interval replace the global
  vrrp_garp_interval / vrrp_gna_interval on its interfaces, and all the
  interfaces of one group share one pacing clock.  An interval the group does
  not set is 0 on its interfaces, not the global value.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV4_RULE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_IPV6_RULE,
    RTMGRP_LINK,
)

from ..config.model import Node
from .kernel import (
    FIB_RULE_INVERT,
    FR_ACT_TO_TBL,
    IFF_RUNNING,
    IFF_UP,
    RTPROT_KEEPALIVED,
    IPNetwork,
    Kernel,
    KernelError,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
    word_after,
)

log = logging.getLogger("keepalived_py.vrrp")

US = 1_000_000
DEFAULT_INTERFACE = "eth0"      # keepalived's DFLT_INT, when global_defs names none
FWMASK_ALL = 0xFFFFFFFF          # what the kernel reports for a fwmark without a mask
_ROUTE_GROUPS = {socket.AF_INET: RTMGRP_IPV4_ROUTE, socket.AF_INET6: RTMGRP_IPV6_ROUTE}
_RULE_GROUPS = {socket.AF_INET: RTMGRP_IPV4_RULE, socket.AF_INET6: RTMGRP_IPV6_RULE}

KernelObject = VirtualAddress | VirtualRoute | VirtualRule


# -- the configuration: pure ------------------------------------------------------

@dataclass(frozen=True)
class StaticAddress:
    address: VirtualAddress
    track_group: str | None = None

    @property
    def tracked(self) -> bool:
        return not self.address.no_track


@dataclass(frozen=True)
class StaticRoute:
    route: VirtualRoute
    track_group: str | None = None

    @property
    def tracked(self) -> bool:
        # keepalived cannot follow a route that names no link, so it stops trying
        return not self.route.no_track and self.route.dev is not None


@dataclass(frozen=True)
class StaticRule:
    rule: VirtualRule
    track_group: str | None = None

    @property
    def tracked(self) -> bool:
        return not self.rule.no_track


def address_key(addr: VirtualAddress) -> tuple:
    """What keepalived compares to call two addresses the same (compare_ipaddress)."""
    return (addr.ifname, addr.address.ip, addr.address.network.prefixlen, addr.scope,
            addr.label, addr.use_vmac)


def route_key(route: VirtualRoute) -> tuple:
    """What keepalived compares to match a route across a reload (route_exist)."""
    return (route.dst, route.tos, route.metric, route.table, route.scope or 0, route.type,
            route.via, route.dev)


@dataclass(frozen=True)
class StaticConfig:
    """The static entries of one configuration, as the kernel adapter takes them."""

    addresses: tuple[StaticAddress, ...] = ()
    routes: tuple[StaticRoute, ...] = ()
    rules: tuple[StaticRule, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    route_families: frozenset[int] = frozenset()     # whose route deletions are watched
    rule_families: frozenset[int] = frozenset()

    @classmethod
    def from_root(cls, root: Node) -> StaticConfig:
        groups = track_groups(root)

        def group_of(words: Sequence[str]) -> str | None:
            name = word_after(words, "track_group")
            if name is not None and name not in groups:
                log.info("track_group %s of static entry '%s' has no VRRP instance - "
                         "not tracking", name, " ".join(words))
                return None
            return name

        default_if = _global(root, "default_interface") or DEFAULT_INTERFACE
        addresses = []
        for words in _lines(root, "static_ipaddress"):
            made = _make(root, "static_ipaddress", words,
                         lambda w: VirtualAddress.from_words(w, default_if))
            if made is not None:
                addresses.append(StaticAddress(made, group_of(words)))
        routes = []
        for words in _lines(root, "static_routes"):
            made = _make(root, "static_routes", words, VirtualRoute.from_words)
            if made is not None:
                # keepalived drops the group of a route that names no link
                routes.append(StaticRoute(made, group_of(words) if made.dev else None))
        rules = []
        static_rules, _ = number_all_rules(root)
        for words, rule in static_rules:
            # and of a rule that names no incoming link
            rules.append(StaticRule(rule, group_of(words) if rule.iif else None))
        route_families, rule_families = _watched_families(root, routes, rules)
        return cls(tuple(addresses), tuple(routes), tuple(rules), groups,
                   route_families, rule_families)

    # -- what the instances track --

    def tracked_links(self) -> dict[str, tuple[str, ...]]:
        """Instance name -> links it tracks (weight 0) because of a static entry's
        track_group (vrrp_static_track.c, static_track_group_init)."""
        links: dict[str, list[str]] = {}
        entries: list[tuple[str | None, str | None, bool]] = [
            *((a.track_group, a.address.ifname, a.tracked) for a in self.addresses),
            *((r.track_group, r.route.dev, r.tracked) for r in self.routes),
            *((r.track_group, r.rule.iif, r.tracked) for r in self.rules)]
        for group, link, tracked in entries:
            if group is None or link is None:
                continue
            if not tracked:
                log.info("static entry on %s has both track_group and no_track - not "
                         "tracking", link)
                continue
            for instance in self.groups[group]:
                have = links.setdefault(instance, [])
                if link not in have:
                    have.append(link)
        return {name: tuple(found) for name, found in links.items()}

    # -- what to put back (keepalived_netlink.c) --

    def address_deleted(self, ifname: str, ip: str) -> VirtualAddress | None:
        """The static address to add again after ``ip`` left ``ifname``, if any."""
        wanted = ip_address(ip)
        for entry in self.addresses:
            addr = entry.address
            if entry.tracked and addr.ifname == ifname and addr.address.ip == wanted:
                return addr
        return None

    def route_deleted(self, family: int, table: int, dst: IPNetwork, tos: int,
                      protocol: int) -> VirtualRoute | None:
        """The static route to add again after this route was deleted, if any.

        keepalived hears only routes of protocol keepalived, in the families it
        watches; it takes the first static route with the same table, family,
        destination and tos, and puts it back unless that one is not tracked.
        """
        if protocol != RTPROT_KEEPALIVED or family not in self.route_families:
            return None
        for entry in self.routes:
            route = entry.route
            if (route.table, route.family, route.dst, route.tos) == (table, family, dst, tos):
                return route if entry.tracked else None
        return None

    def rule_deleted(self, seen: RuleSeen) -> VirtualRule | None:
        """The static rule to add again after this rule was deleted, if any."""
        if seen.protocol not in (None, RTPROT_KEEPALIVED) \
                or seen.family not in self.rule_families:
            return None
        for entry in self.rules:
            if entry.tracked and seen.matches(entry.rule):
                return entry.rule
        return None

    def on_link(self, ifname: str) -> tuple[list[VirtualAddress], list[VirtualRoute]]:
        """The tracked static addresses and routes on ``ifname``: added again when it
        comes up (vrrp_if.c interface_up).  Rules survive a link going down."""
        return ([a.address for a in self.addresses if a.tracked and a.address.ifname == ifname],
                [r.route for r in self.routes if r.tracked and r.route.dev == ifname])


@dataclass(frozen=True)
class RuleSeen:
    """A rule as a netlink event shows it, in the terms keepalived's compare_rule uses."""

    family: int
    priority: int | None
    action: int
    table: int
    invert: bool = False
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    tos: int = 0
    fwmark: int | None = None
    fwmask: int | None = None
    iif: str | None = None
    oif: str | None = None
    goto: int | None = None
    protocol: int | None = None

    def matches(self, rule: VirtualRule) -> bool:
        mask = rule.fwmask if rule.fwmask is not None else (
            FWMASK_ALL if rule.fwmark is not None else None)
        table = rule.table if rule.action == FR_ACT_TO_TBL and not rule.l3mdev else 0
        return (self.family, self.priority, self.action, self.invert, self.src, self.dst,
                self.tos, self.fwmark, self.iif, self.oif) == (
            rule.family, rule.priority, rule.action, rule.invert, rule.src, rule.dst,
            rule.tos, rule.fwmark, rule.iif, rule.oif) \
            and (self.goto is None or self.goto == rule.goto) \
            and self.table == table and (self.fwmask or None) == mask

    @classmethod
    def from_message(cls, msg: dict) -> RuleSeen:
        family = msg["family"]

        def prefix(attr: str, length: int) -> IPNetwork | None:
            value = _attr(msg, attr)
            return None if value is None else ip_network(f"{value}/{length}")

        table = _attr(msg, "FRA_TABLE")
        return cls(family=family, priority=_attr(msg, "FRA_PRIORITY"), action=msg["action"],
                   table=msg["table"] if table is None else table,
                   invert=bool(msg["flags"] & FIB_RULE_INVERT),
                   src=prefix("FRA_SRC", msg["src_len"]), dst=prefix("FRA_DST", msg["dst_len"]),
                   tos=msg["tos"], fwmark=_attr(msg, "FRA_FWMARK"),
                   fwmask=_attr(msg, "FRA_FWMASK"), iif=_attr(msg, "FRA_IIFNAME"),
                   oif=_attr(msg, "FRA_OIFNAME"), goto=_attr(msg, "FRA_GOTO"),
                   protocol=_attr(msg, "FRA_PROTOCOL"))


def track_groups(root: Node) -> dict[str, tuple[str, ...]]:
    """track_group name -> its member instances that exist.  keepalived drops a
    group left with none, and a repeated name (static_track_group_set)."""
    instances = {str(node.head) for node in root.blocks("vrrp_instance")}
    groups: dict[str, tuple[str, ...]] = {}
    for block in root.blocks("track_group"):
        name = str(block.head)
        if name in groups:
            continue
        members = [w for line in block.get("group") or () for w in line]
        for member in members:
            if member not in instances:
                log.info("vrrp instance %s specified in track group %s doesn't exist - ignoring",
                         member, name)
        kept = tuple(dict.fromkeys(m for m in members if m in instances))
        if kept:
            groups[name] = kept
        else:
            log.info("static track group %s has no VRRP instance - removed", name)
    return groups


def number_all_rules(root: Node) -> tuple[list[tuple[tuple[str, ...], VirtualRule]],
                                          dict[str, list[VirtualRule]]]:
    """Every rule of the configuration, numbered as keepalived numbers them.

    keepalived gives rules without a preference 16384, 16383... per family in
    the order it reads them, static_rules and virtual_rules alike.  Returns the
    static rules with their words, and each instance's rules.
    """
    instances = root.blocks("vrrp_instance")
    at = _static_rules_position(root, instances)
    owners: list[tuple[str | None, tuple[str, ...]]] = []
    for index, node in enumerate([*instances, None]):
        if index == at:
            owners += [(None, words) for words in _lines(root, "static_rules")]
        if node is not None:
            owners += [(str(node.head), words) for words in node.get("virtual_rules") or ()]
    parsed = []
    for owner, words in owners:
        where = "static_rules" if owner is None else f"({owner}) virtual_rules"
        try:
            parsed.append((owner, words, VirtualRule.from_words(words)))
        except ValueError as err:
            log.warning("%s '%s': %s - ignored", where, " ".join(words), err)
    numbered = number_rules(rule for _, _, rule in parsed)
    static: list[tuple[tuple[str, ...], VirtualRule]] = []
    per_instance: dict[str, list[VirtualRule]] = {str(n.head): [] for n in instances}
    for (owner, words, _), rule in zip(parsed, numbered, strict=True):
        if owner is None:
            static.append((words, rule))
        else:
            per_instance[owner].append(rule)
    return static, per_instance


def _static_rules_position(root: Node, instances: list[Node]) -> int:
    """How many instances keepalived reads before the (first) static_rules block.

    The model keeps blocks by keyword, so the order is rebuilt from positions:
    keyword order in the file, then line numbers within one file.  Across
    include files only the first test is exact; there the block is taken as
    following the instances of other files.
    """
    keys = list(root.values)
    if "static_rules" not in keys or "vrrp_instance" not in keys \
            or keys.index("static_rules") < keys.index("vrrp_instance"):
        return 0
    where = root.value_where.get("static_rules")
    for index, node in enumerate(instances):
        if where is not None and node.where is not None and node.where.file == where.file \
                and node.where.line > where.line:
            return index
    return len(instances)


def _watched_families(root: Node, routes: list[StaticRoute],
                      rules: list[StaticRule]) -> tuple[frozenset[int], frozenset[int]]:
    """The families whose route / rule events keepalived subscribes to (vrrp.c:
    process_static_entries and the instances' tracked virtual routes and rules)."""
    route_families = {r.route.family for r in routes if r.track_group}
    rule_families = {r.rule.family for r in rules if r.track_group}
    for node in root.blocks("vrrp_instance"):
        for words in node.get("virtual_routes") or ():
            try:
                route = VirtualRoute.from_words(words)
            except ValueError:
                continue
            if not route.no_track and route.dev is not None:
                route_families.add(route.family)
        for words in node.get("virtual_rules") or ():
            try:
                rule = VirtualRule.from_words(words)
            except ValueError:
                continue
            if not rule.no_track:
                rule_families.add(rule.family)
    return frozenset(route_families), frozenset(rule_families)


# -- garp_group: pure -------------------------------------------------------------

class GarpIntervals(dict[str, tuple[int, int]]):
    """Interface -> (GARP interval, NA interval) in microseconds.

    Interfaces of a garp_group are listed; any other gives ``default``, the
    global vrrp_garp_interval / vrrp_gna_interval (index it: ``.get`` does not
    fall back).  ``pacing`` names the clock an interface's announcements share:
    the group's for interfaces of one garp_group, else the interface's own.
    VMACs use their parent interface's entry, as keepalived does.
    """

    def __init__(self, explicit: dict[str, tuple[int, int]], default: tuple[int, int],
                 pacing: dict[str, str]) -> None:
        super().__init__(explicit)
        self.default = default
        self._pacing = pacing

    def __missing__(self, ifname: str) -> tuple[int, int]:
        return self.default

    def pacing(self, ifname: str) -> str:
        return self._pacing.get(ifname, ifname)


def garp_intervals(root: Node) -> GarpIntervals:
    """The per-interface GARP / NA pacing of a configuration (vrrp_parser.c garp_group
    handlers, vrrp_if.c set_default_garp_delay)."""
    default = (_us(_global(root, "vrrp_garp_interval")), _us(_global(root, "vrrp_gna_interval")))
    explicit: dict[str, tuple[int, int]] = {}
    pacing: dict[str, str] = {}
    for number, block in enumerate(root.blocks("garp_group"), 1):
        garp, gna = block.values.get("garp_interval"), block.values.get("gna_interval")
        if garp is None and gna is None:
            log.info("garp group %d does not have any delay set - removing", number)
            continue
        names = [block.values["interface"]] if "interface" in block.values else []
        names += [w for line in block.values.get("interfaces") or () for w in line]
        for ifname in names:
            if ifname in explicit:
                log.info("garp_group already specified for %s - ignoring", ifname)
                continue
            explicit[ifname] = (_us(garp), _us(gna))
            pacing[ifname] = f"garp_group {number}"
    return GarpIntervals(explicit, default, pacing)


# -- reload planning: pure ----------------------------------------------------------

@dataclass
class ReloadPlan:
    """What a reload does to the kernel, in keepalived's order: removals
    (rules, routes, addresses), replacements, then additions."""

    remove_rules: list[VirtualRule] = field(default_factory=list)
    remove_routes: list[VirtualRoute] = field(default_factory=list)
    replace_routes: list[tuple[VirtualRoute, VirtualRoute]] = field(default_factory=list)
    remove_addresses: list[VirtualAddress] = field(default_factory=list)
    kept: set[KernelObject] = field(default_factory=set)   # new entries already in place
    add_addresses: list[VirtualAddress] = field(default_factory=list)
    add_routes: list[VirtualRoute] = field(default_factory=list)
    add_rules: list[VirtualRule] = field(default_factory=list)


def plan_reload(old: StaticConfig, installed: set[KernelObject],
                new: StaticConfig) -> ReloadPlan:
    """The difference between two configurations, given what the old one installed
    (vrrp_iprule.c clear_diff_rules, vrrp_iproute.c clear_diff_routes,
    vrrp_ipaddress.c clear_diff_static_addresses)."""
    plan = ReloadPlan()
    new_rules = [r.rule for r in new.rules]
    for entry in old.rules:
        if entry.rule in installed:
            if entry.rule in new_rules:
                plan.kept.add(entry.rule)
            else:
                plan.remove_rules.append(entry.rule)
    new_routes = {}
    for entry in new.routes:
        new_routes.setdefault(route_key(entry.route), entry.route)
    for entry in old.routes:
        route = entry.route
        if route not in installed:
            continue
        match = new_routes.get(route_key(route))
        if match is None:
            plan.remove_routes.append(route)
        else:
            # even an unchanged one: keepalived does not compare the other
            # attributes; the kernel announces it for IPv6, not for IPv4
            plan.replace_routes.append((route, match))
    new_addresses = {}
    for entry in new.addresses:
        new_addresses.setdefault(address_key(entry.address), entry.address)
    for entry in old.addresses:
        addr = entry.address
        if addr not in installed:
            continue
        match = new_addresses.get(address_key(addr))
        if match is None:
            plan.remove_addresses.append(addr)
        else:
            if match != addr:
                log.info("static address %s: only a restart applies the changes to its "
                         "broadcast, peer, flags or lifetime", match)
            plan.kept.add(match)
    replaced = {new_route for _, new_route in plan.replace_routes}
    plan.add_addresses = _unique(a.address for a in new.addresses
                                 if a.address not in plan.kept)
    plan.add_routes = _unique(r.route for r in new.routes
                              if r.route not in plan.kept and r.route not in replaced)
    plan.add_rules = _unique(r.rule for r in new.rules if r.rule not in plan.kept)
    return plan


# -- the adapter --------------------------------------------------------------------

class StaticEntries:
    """The static entries of the running configuration, kept in the kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.config = StaticConfig()
        self.installed: set[KernelObject] = set()
        self._watcher: AsyncIPRoute | None = None
        self._stopping = False

    async def start(self, root: Node) -> None:
        """Add the entries of ``root``: stale static rules go first, addresses and
        routes already there are adopted (vrrp_daemon.c start_vrrp)."""
        self.config = StaticConfig.from_root(root)
        self.installed.clear()
        await self._quietly(self.kernel.remove_rules([r.rule for r in self.config.rules]))
        await self._add_all(self.config)

    async def reload(self, root: Node) -> ReloadPlan:
        """Move to the entries of ``root``, touching only what differs."""
        new = StaticConfig.from_root(root)
        plan = plan_reload(self.config, self.installed, new)
        # the new entries first: a deletion heard from now on is judged by them
        old, self.config, self.installed = self.config, new, set(plan.kept)
        if (old.route_families, old.rule_families) != (new.route_families, new.rule_families):
            self._close_watcher()               # watch() listens again, to the new groups
        await self._each(plan.remove_rules, self.kernel.remove_rules, "remove")
        await self._each(plan.remove_routes, self.kernel.remove_routes, "remove")
        not_replaced = []
        for old_route, new_route in plan.replace_routes:
            if await self._replace_route(new_route):
                self.installed.add(new_route)
            else:
                await self._each([old_route], self.kernel.remove_routes, "remove")
                not_replaced.append(new_route)
        await self._each(plan.remove_addresses, self.kernel.remove_addresses, "remove")
        await self._add(plan.add_addresses, self.kernel.add_addresses)
        await self._add([*plan.add_routes, *not_replaced], self.kernel.add_routes)
        await self._add(plan.add_rules, self.kernel.add_rules)
        return plan

    async def stop(self, release: bool = True) -> None:
        """Remove the entries: rules, routes, addresses (vrrp_daemon.c
        vrrp_terminate_phase1).  ``release=False`` is keepalived's -V, which
        removes every configured static address, added by us or not."""
        self._stopping = True
        self._close_watcher()
        config = self.config
        await self._each([r.rule for r in config.rules if r.rule in self.installed],
                         self.kernel.remove_rules, "remove")
        await self._each([r.route for r in config.routes if r.route in self.installed],
                         self.kernel.remove_routes, "remove")
        await self._each([a.address for a in config.addresses
                          if not release or a.address in self.installed],
                         self.kernel.remove_addresses, "remove")
        self.installed.clear()

    async def watch(self) -> None:
        """Put back tracked entries that are deleted, and those of a link that comes
        up; runs until ``stop``.  Listens to address and link events, and to route
        and rule events in the families keepalived watches (again after a reload
        that changes them)."""
        self._stopping = False
        while not self._stopping:
            await self._watch_once()

    async def _watch_once(self) -> None:
        """Until the socket is closed by ``stop`` or by a reload that needs other groups."""
        groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
        for family in self.config.route_families:
            groups |= _ROUTE_GROUPS[family]
        for family in self.config.rule_families:
            groups |= _RULE_GROUPS[family]
        sock = AsyncIPRoute(netns=self.kernel.netns, flags=0, groups=groups) \
            if self.kernel.netns else AsyncIPRoute(groups=groups)
        self._watcher = sock
        names: dict[int, str] = {}
        up: dict[str, bool] = {}
        try:
            await sock.bind()
            # the links as they are now, read after subscribing so no change is missed
            for msg in [m async for m in await sock.link("dump")]:
                names[msg["index"]] = _attr(msg, "IFLA_IFNAME") or ""
                up[names[msg["index"]]] = _is_up(msg)
            while self._watcher is sock:
                async for msg in sock.get():
                    await self._event(msg, names, up)
        except (NetlinkError, OSError) as err:
            if self._watcher is sock:           # not closed by us: events were lost
                code = getattr(err, "code", None) or err.errno or 0
                raise KernelError(f"static entry events stopped: {err}", code) from None
        finally:
            sock.close()
            if self._watcher is sock:
                self._watcher = None

    # -- events --

    async def _event(self, msg: dict, names: dict[int, str], up: dict[str, bool]) -> None:
        kind = msg["header"]["type"]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            if msg.get("family", 0) != socket.AF_UNSPEC:
                return              # a bridge port's copy of the link event
            ifname = _attr(msg, "IFLA_IFNAME") or names.get(msg["index"], "")
            names[msg["index"]] = ifname
            now = kind == RTM_NEWLINK and _is_up(msg)
            was = up.get(ifname, False)
            up[ifname] = now
            if now and not was:
                await self._link_up(ifname)
            elif was and not now:
                # the kernel takes the link's routes with it (vrrp_if.c interface_down)
                _, routes = self.config.on_link(ifname)
                self.installed.difference_update(routes)
        elif kind == RTM_DELADDR:
            ip = _attr(msg, "IFA_LOCAL") or _attr(msg, "IFA_ADDRESS")
            addr = self.config.address_deleted(names.get(msg["index"], ""), ip)
            if addr is not None:
                log.info("Restoring deleted static address %s", addr)
                await self._add([addr], self.kernel.add_addresses)
        elif kind == RTM_DELROUTE:
            dst = _attr(msg, "RTA_DST") or ("::" if msg["family"] == socket.AF_INET6
                                             else "0.0.0.0")
            table = _attr(msg, "RTA_TABLE")
            route = self.config.route_deleted(
                msg["family"], msg["table"] if table is None else table,
                ip_network(f"{dst}/{msg['dst_len']}"), msg["tos"], msg["proto"])
            if route is not None:
                log.info("Restoring deleted static route %s", route)
                await self._add([route], self.kernel.add_routes)
        elif kind == RTM_DELRULE:
            rule = self.config.rule_deleted(RuleSeen.from_message(msg))
            if rule is not None:
                log.info("Restoring deleted static rule %s", rule)
                await self._add([rule], self.kernel.add_rules)

    async def _link_up(self, ifname: str) -> None:
        addresses, routes = self.config.on_link(ifname)
        if addresses or routes:
            log.info("%s is up: restoring its static addresses and routes", ifname)
        await self._add(addresses, self.kernel.add_addresses)
        await self._add(routes, self.kernel.add_routes)

    # -- plumbing --

    async def _add_all(self, config: StaticConfig) -> None:
        await self._add(_unique(a.address for a in config.addresses), self.kernel.add_addresses)
        await self._add(_unique(r.route for r in config.routes), self.kernel.add_routes)
        await self._add(_unique(r.rule for r in config.rules), self.kernel.add_rules)

    async def _add(self, items: Iterable[KernelObject], add) -> None:  # noqa: ANN001
        # one at a time: what failed stays out of ``installed`` and is tried again
        # by a later reload, as keepalived's "set" flag does
        for item in items:
            try:
                await add([item])
            except KernelError as err:
                log.warning("static entry: %s", err)
                self.installed.discard(item)
            else:
                self.installed.add(item)

    async def _each(self, items: Iterable[KernelObject], act, doing: str) -> None:  # noqa: ANN001
        for item in items:
            try:
                await act([item])
            except KernelError as err:
                log.warning("static entry: cannot %s: %s", doing, err)
            self.installed.discard(item)

    @staticmethod
    async def _quietly(request) -> None:  # noqa: ANN001 - an awaitable
        try:
            await request
        except KernelError as err:
            log.info("static entry: %s", err)

    async def _replace_route(self, route: VirtualRoute) -> bool:
        """NLM_F_REPLACE, as keepalived updates a route it keeps across a reload.

        Kernel has no public replace yet, so this borrows its request builder.
        """
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        try:
            kw = await self.kernel._route_args(route, "add")
            await self.kernel.request("route", (RTM_NEWROUTE, flags), **kw)
        except (KernelError, NetlinkError, OSError) as err:
            log.info("static route %s cannot be replaced (%s): removing and adding it",
                     route, getattr(err, "code", err))
            return False
        return True

    def _close_watcher(self) -> None:
        sock, self._watcher = self._watcher, None
        if sock is not None:
            sock.close()


# -- helpers ---------------------------------------------------------------------

def _lines(root: Node, keyword: str) -> tuple[tuple[str, ...], ...]:
    return tuple(root.values.get(keyword) or ())


def _make(root: Node, keyword: str, words: tuple[str, ...], make):  # noqa: ANN001, ANN202
    try:
        return make(words)
    except ValueError as err:
        where = root.value_where.get(keyword)
        log.warning("%s%s '%s': %s - ignored", f"{where}: " if where else "", keyword,
                    " ".join(words), err)
        return None


def _global(root: Node, keyword: str):  # noqa: ANN202 - a keyword's value
    blocks = root.blocks("global_defs")
    if blocks:
        return blocks[0].get(keyword)
    from ..config.keywords_vrrp import GLOBAL_DEFS
    return GLOBAL_DEFS.keyword(keyword).default


def _us(seconds: float | None) -> int:
    return round((seconds or 0) * US)


def _unique(items: Iterable[KernelObject]) -> list:
    return list(dict.fromkeys(items))


def _attr(msg: dict, name: str):  # noqa: ANN202 - a netlink attribute's value
    for key, value in msg.get("attrs", ()):
        if key == name:
            return value
    return None


def _is_up(msg: dict) -> bool:
    return msg["flags"] & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING


__all__ = [
    "GarpIntervals", "ReloadPlan", "RuleSeen", "StaticAddress", "StaticConfig", "StaticEntries",
    "StaticRoute", "StaticRule", "address_key", "garp_intervals", "number_all_rules",
    "plan_reload", "route_key", "track_groups",
]
