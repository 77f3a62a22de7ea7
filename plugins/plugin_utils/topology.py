# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Cross-host checks of a VRRP topology, on the controller (action keepalived_topology).

Input: per host, its list of instance dicts (keys are keepalived keywords), its
segments (interface name -> segment name) and its gathered facts.  Values are read
with the agent's own keyword table (``agent/config/keywords_vrrp.py``), so a
priority, an ``advert_int`` or a ``virtual_ipaddress`` line means here exactly what
it means to the agent.

Terms:

- **segment**: the L2 segment an instance advertises on: the segment its host's
  segments variable names for its interface (where the interface is attached: a
  property of the host, not of the instance), else the IPv4 network of its
  interface (IPv6 when it has no IPv4) from the host's facts, else (no facts) the
  network of its first VIP.
- **VRRP router**: the instances of all hosts that share segment, address family,
  VRID and the set of ``virtual_ipaddress`` addresses (address and prefix).

No message carries a password: authentication differences are told by labels.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.keepalived_py.ha.agent.config.diag import Invalid, Level
from ansible_collections.keepalived_py.ha.agent.config.keywords_vrrp import VRRP_INSTANCE
from ansible_collections.keepalived_py.ha.agent.config.schema import Arg, Ctx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

DEFAULT_INTERFACE = "eth0"      # keepalived's default_interface
DEFAULT_SEGMENTS_VAR = "keepalived_py_segments"
DEFAULT_VERSION = 2             # keepalived's vrrp_version
OWNER_PRIORITY = 255


@dataclass(frozen=True)
class Vip:
    address: IPInterface
    dev: str | None
    index: int


@dataclass
class Instance:
    """One instance dict of one host, read."""

    host: str
    path: str                       # keepalived_py_instances[0]
    name: str
    interface: str = DEFAULT_INTERFACE
    vrid: int | None = None
    priority: int = 100
    state: str | None = None
    advert_int: float = 1.0
    version: int = DEFAULT_VERSION
    vips: list[Vip] = field(default_factory=list)
    unicast_src: str | None = None
    unicast_src_given: bool = False
    unicast_peers: list[str] = field(default_factory=list)
    auth: tuple[str, str] = ("none", "")
    segment: str | None = None
    segment_from: str = "segments"  # segments (the variable), facts, vips or interface
    segments_var: str = DEFAULT_SEGMENTS_VAR
    facts: Mapping[str, Any] | None = None     # the host's ansible_facts (None: none)

    def ref(self, key: str | None = None) -> str:
        return f"{self.host}: {self.path}" + (f".{key}" if key else "")

    def segment_ref(self) -> str:
        """Where the segment would be named for this instance: the host's variable."""
        return f"{self.host}: {self.segments_var}.{self.interface}"

    @property
    def family(self) -> int:
        if self.vips:
            return self.vips[0].address.version
        if self.unicast_src:
            return ipaddress.ip_address(self.unicast_src).version
        return 4

    def vip_set(self) -> frozenset[str]:
        return frozenset(str(v.address) for v in self.vips)


@dataclass
class Router:
    segment: str
    family: int
    vrid: int
    vips: frozenset[str]
    members: list[Instance] = field(default_factory=list)

    def label(self) -> str:
        vips = ", ".join(sorted(self.vips)) or "no VIPs"
        return f"VRID {self.vrid} (IPv{self.family}, {vips}) on segment {self.segment}"

    @property
    def unicast(self) -> bool:
        return all(m.unicast_peers for m in self.members)

    def addresses(self) -> set[str]:
        found = {m.unicast_src for m in self.members if m.unicast_src}
        return found | {p for m in self.members for p in m.unicast_peers}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostInput:
    """One host's variables, as a task on it sees them, and its gathered facts."""

    instances_var: str
    instances: Any
    facts: Mapping[str, Any] | None = None
    segments_var: str = DEFAULT_SEGMENTS_VAR
    segments: Mapping[str, str] = field(default_factory=dict)   # read by read_segments


# -- the segments variable ------------------------------------------------------------


def read_segments(host: str, var: str, value: Any) -> tuple[dict[str, str], list[str]]:
    """A host's segments variable (interface name -> segment name), and its problems.

    A wrong value is refused rather than partly used: a segment left out would
    silently fall back to the interface's network and split a VRRP router in two.
    """
    if not isinstance(value, Mapping):
        return {}, [f"{host}: {var}: must be a dict of interface name -> segment name, "
                    f"not {kind_of(value)}"]
    segments: dict[str, str] = {}
    problems = []
    for iface, segment in value.items():
        if not isinstance(iface, str):
            problems.append(f"{host}: {var}: {iface!r}: a key must be an interface name "
                            f"(a string), not {kind_of(iface)}")
        elif not iface.strip():
            problems.append(f"{host}: {var}: an empty key: keys are interface names")
        elif not isinstance(segment, str):
            problems.append(f"{host}: {var}.{iface}: must be a segment name (a string), "
                            f"not {kind_of(segment)}")
        elif not segment.strip():
            problems.append(f"{host}: {var}.{iface}: must be a segment name, not empty")
        else:
            segments[iface] = segment.strip()
    return segments, problems


# -- reading values as the agent does -----------------------------------------------


_FROM_DATA = object()


class _Reader:
    """Reads keyword values of one instance dict with the agent's value types."""

    def __init__(self, inst: Instance, data: Mapping[str, Any], report: Report) -> None:
        self.inst, self.data, self.report = inst, data, report

    def value(self, key: str, arg: Arg, raw: Any = _FROM_DATA, path: str | None = None,
              secret: str | None = None) -> Any:
        """The parsed value, or None when absent or unusable (then a problem says why).

        ``raw`` defaults to the instance dict's ``key``; ``path`` names it in messages."""
        raw = self.data.get(key) if raw is _FROM_DATA else raw
        if raw is None:
            return None
        path = path or key
        words = words_of(raw)
        if words is None:
            self.problem(path, f"must be a string or a number, not {kind_of(raw)}")
            return None
        errors: list[str] = []
        ctx = Ctx(lambda level, text: errors.append(text) if _is_error(level) else None,
                  key, head=self.inst.name)
        try:
            value = arg.parse(words, ctx)
        except Invalid:
            value = None
        for text in errors:
            self.problem(path, text.replace(secret, "********") if secret else text)
        return value

    def lines(self, key: str) -> list[tuple[int, Any]]:
        """A block of value lines (virtual_ipaddress, unicast_peer): (index, value)."""
        raw = self.data.get(key)
        if raw is None:
            return []
        if not isinstance(raw, (list, tuple)):
            self.problem(key, f"must be a list of strings, not {kind_of(raw)}")
            return []
        arg = VRRP_INSTANCE.keyword(key).lines
        out = []
        for index, line in enumerate(raw):
            value = self.value(key, arg, raw=line, path=f"{key}[{index}]")
            if value is not None:
                out.append((index, value))
        return out

    def problem(self, path: str, text: str) -> None:
        self.report.problems.append(f"{self.inst.ref(path)}: {text}")


def kind_of(value: Any) -> str:
    """What a variable holds, in YAML's words (not Ansible's internal class names)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else type(value).__name__


def _is_error(level: Level) -> bool:
    return Level.OK < level <= Level.GENERAL_ERROR


def words_of(raw: Any) -> list[str] | None:
    """A variable's value as the words of a keepalived.conf line."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return [str(raw)]
    if isinstance(raw, str):
        return raw.split()
    return None


def _arg(key: str) -> Arg:
    return VRRP_INSTANCE.keyword(key).arg


def read_instance(host: str, path: str, data: Any, given: HostInput,
                  report: Report) -> Instance | None:
    """One instance dict read, or None when it cannot take part in the checks."""
    if not isinstance(data, Mapping):
        report.problems.append(f"{host}: {path}: must be a dict of keepalived keywords, "
                               f"not {kind_of(data)}")
        return None
    inst = Instance(host=host, path=path, name=str(data.get("name") or path),
                    segments_var=given.segments_var, facts=given.facts)
    read = _Reader(inst, data, report)
    inst.vrid = read.value("virtual_router_id", _arg("virtual_router_id"))
    if inst.vrid is None and data.get("virtual_router_id") is None:
        report.problems.append(f"{inst.ref('virtual_router_id')}: missing: every VRRP "
                               "instance needs a virtual_router_id")
    inst.interface = read.value("interface", _arg("interface")) or DEFAULT_INTERFACE
    inst.priority = read.value("priority", _arg("priority")) or 100
    inst.state = read.value("state", _arg("state"))
    inst.advert_int = read.value("advert_int", _arg("advert_int")) or 1.0
    inst.version = read.value("version", _arg("version")) or DEFAULT_VERSION
    inst.vips = [_vip(words, index) for index, words in read.lines("virtual_ipaddress")]
    source = read.value("unicast_src_ip", _arg("unicast_src_ip"))
    inst.unicast_src = None if source is None else str(_address(source))
    inst.unicast_src_given = source is not None
    inst.unicast_peers = [str(_address(line[0])) for _index, line in read.lines("unicast_peer")]
    inst.auth = _auth(read, data.get("authentication"))
    _place(inst, given.segments)
    return None if inst.vrid is None else inst


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("/", 1)[0])


def _vip(words: tuple[str, ...], index: int) -> Vip:
    dev = words[words.index("dev") + 1] if "dev" in words else None
    return Vip(ipaddress.ip_interface(words[0]), dev, index)


def _auth(read: _Reader, block: Any) -> tuple[str, str]:
    if block is None:
        return ("none", "")
    if not isinstance(block, Mapping):
        read.problem("authentication", "must be a dict (auth_type, auth_pass)")
        return ("none", "")
    spec = VRRP_INSTANCE.keyword("authentication").block
    secret = block.get("auth_pass")
    secret = str(secret) if secret is not None else None
    auth_type = read.value("auth_type", spec.keyword("auth_type").arg,
                           raw=block.get("auth_type"), path="authentication.auth_type")
    password = read.value("auth_pass", spec.keyword("auth_pass").arg, raw=block.get("auth_pass"),
                          path="authentication.auth_pass", secret=secret)
    return (auth_type or "none", password or "")


# -- facts ------------------------------------------------------------------------------


def has_network_facts(facts: Mapping[str, Any] | None) -> bool:
    return bool(facts) and "interfaces" in facts


def interface_facts(facts: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The facts of interface ``name`` (setup writes ``-`` and ``:`` in keys as ``_``)."""
    if not has_network_facts(facts):
        return None
    for key in (name, name.replace("-", "_").replace(":", "_")):
        found = facts.get(key)
        if isinstance(found, Mapping):
            return found
    return None


def interface_networks(iface: Mapping[str, Any], family: int) -> list[IPNetwork]:
    if family == 4:
        entries = [iface.get("ipv4") or {}, *(iface.get("ipv4_secondaries") or [])]
        return [ipaddress.ip_network(f"{e['network']}/{e['netmask']}", strict=False)
                for e in entries if e.get("network") and e.get("netmask")]
    return [ipaddress.ip_interface(f"{e['address']}/{e['prefix']}").network
            for e in iface.get("ipv6") or [] if e.get("address") and e.get("prefix")]


def _primary(iface: Mapping[str, Any] | None, family: int) -> str | None:
    if iface is None:
        return None
    if family == 4:
        return (iface.get("ipv4") or {}).get("address")
    for entry in iface.get("ipv6") or []:
        if entry.get("scope") == "link":
            return entry.get("address")
    return None


def _place(inst: Instance, segments: Mapping[str, str]) -> None:
    """The instance's segment, and its unicast source when not given."""
    iface = interface_facts(inst.facts, inst.interface)
    if inst.unicast_src is None and inst.unicast_peers:
        inst.unicast_src = _primary(iface, inst.family)
    if inst.interface in segments:
        inst.segment, inst.segment_from = segments[inst.interface], "segments"
        return
    networks = []
    if iface is not None:
        networks = interface_networks(iface, 4)[:1] or [
            n for n in interface_networks(iface, 6) if not n.is_link_local][:1]
    if networks:
        inst.segment, inst.segment_from = str(networks[0]), "facts"
    elif inst.vips:
        inst.segment, inst.segment_from = str(inst.vips[0].address.network), "vips"
    else:
        inst.segment, inst.segment_from = f"interface {inst.interface}", "interface"


# -- the checks -------------------------------------------------------------------------


def routers_of(instances: list[Instance]) -> list[Router]:
    table: dict[tuple, Router] = {}
    for inst in instances:
        key = (inst.segment, inst.family, inst.vrid, inst.vip_set())
        router = table.setdefault(key, Router(inst.segment, inst.family, inst.vrid,
                                              inst.vip_set()))
        router.members.append(inst)
    return list(table.values())


def check_vrid_clashes(routers: list[Router], report: Report) -> None:
    """One VRID on one segment (and family) used by instances that are not one router."""
    by_vrid: dict[tuple, list[Router]] = defaultdict(list)
    for router in routers:
        by_vrid[(router.segment, router.family, router.vrid)].append(router)
    for (segment, family, vrid), group in by_vrid.items():
        clashing = [r for r in group if any(_clash(r, o) for o in group if o is not r)]
        if not clashing:
            continue
        uses = "; ".join(f"{m.ref('virtual_router_id')} (virtual_ipaddress: "
                         f"{', '.join(sorted(r.vips)) or 'none'}{_named(m)})"
                         for r in clashing for m in r.members)
        report.problems.append(
            f"VRID clash: VRID {vrid} (IPv{family}) on segment {segment} is used by "
            f"instances that are not one VRRP router (their virtual_ipaddress sets differ): "
            f"{uses}")


def _named(inst: Instance) -> str:
    """Which variable put the instance on its segment, when one did."""
    return f"; segment named by {inst.segment_ref()}" if inst.segment_from == "segments" else ""


def _origin(inst: Instance) -> str:
    """Where the instance's segment came from, in words."""
    if inst.segment_from == "segments":
        return f"named by {inst.segment_ref()}"
    if inst.segment_from == "facts":
        return f"the network of {inst.interface} in {inst.host}'s facts"
    if inst.segment_from == "vips":
        return "the network of its first VIP"
    return "its interface name"


def _clash(one: Router, other: Router) -> bool:
    """Two routers with one VRID on one segment meet, unless both are unicast-only
    and neither sends to the other's hosts."""
    if one.unicast and other.unicast:
        return bool(one.addresses() & other.addresses())
    return True


def check_duplicate_hosts(router: Router, report: Report) -> None:
    seen: dict[str, list[Instance]] = defaultdict(list)
    for member in router.members:
        seen[member.host].append(member)
    for host, members in seen.items():
        if len(members) > 1:
            refs = ", ".join(m.ref() for m in members)
            report.problems.append(f"{router.label()}: {host} has {len(members)} instances "
                                   f"of this one VRRP router: {refs}")


def check_priorities(router: Router, report: Report) -> None:
    """Ties between hosts, and exactly one intended master."""
    by_priority: dict[int, list[Instance]] = defaultdict(list)
    for member in router.members:
        by_priority[member.priority].append(member)
    top = max(by_priority)
    for priority, members in sorted(by_priority.items(), reverse=True):
        if len({m.host for m in members}) < 2:
            continue
        refs = ", ".join(m.ref("priority") for m in members)
        note = " - the highest, so no single intended master" if priority == top else ""
        report.problems.append(f"{router.label()}: priority {priority} ties between hosts"
                               f"{note}: {refs}")
    _check_master(router, by_priority[top], report)


def _check_master(router: Router, tops: list[Instance], report: Report) -> None:
    owners = [m for m in router.members if m.priority == OWNER_PRIORITY]
    declared = [m for m in router.members if m.state == "MASTER"]
    label = router.label()
    if len(owners) > 1:
        refs = ", ".join(m.ref("priority") for m in owners)
        report.problems.append(f"{label}: more than one intended master: several address "
                               f"owners (priority 255): {refs}")
    if len(declared) > 1:
        refs = ", ".join(m.ref("state") for m in declared)
        report.problems.append(f"{label}: more than one intended master: state MASTER on "
                               f"{refs}")
    elif declared and len(tops) == 1 and declared[0] is not tops[0]:
        master, top = declared[0], tops[0]
        report.problems.append(
            f"{label}: the intended master is unclear: {master.ref('state')} is MASTER, but "
            f"{top.ref('priority')} has the higher priority ({top.priority} > "
            f"{master.priority}), so {top.host} takes over")


def check_unicast(router: Router, report: Report) -> None:
    """Each host's unicast_src_ip in every other host's unicast_peer, nothing else there."""
    label = router.label()
    users = [m for m in router.members if m.unicast_peers]
    if not users:
        return
    if len(users) != len(router.members):
        plain = ", ".join(m.ref() for m in router.members if not m.unicast_peers)
        report.problems.append(f"{label}: unicast and multicast mixed: "
                               f"{', '.join(m.ref('unicast_peer') for m in users)} send "
                               f"unicast, {plain} multicast")
        return
    for member in router.members:
        if member.unicast_src is None:
            report.warnings.append(
                f"{member.ref('unicast_src_ip')}: not set and no facts for "
                f"{member.interface}: unicast peers of {member.host} not checked")
    for member in router.members:
        _check_peers(label, member, router.members, report)


def _check_peers(label: str, member: Instance, members: list[Instance], report: Report) -> None:
    others = [o for o in members if o is not member and o.unicast_src]
    sources = {o.unicast_src for o in others}
    for other in others:
        if other.unicast_src not in member.unicast_peers:
            how = "unicast_src_ip" if other.unicast_src_given else "primary address"
            report.problems.append(
                f"{label}: unicast peers do not mirror: {member.ref('unicast_peer')} lacks "
                f"{other.unicast_src}, the {how} of {other.host}")
    if len(others) + 1 < len(members):
        return          # a source unknown: extra peers cannot be told
    for peer in member.unicast_peers:
        if peer not in sources and peer != member.unicast_src:
            report.problems.append(
                f"{label}: unicast peers do not mirror: {member.ref('unicast_peer')} lists "
                f"{peer}, which is the unicast source of no other host of this router")


def check_same_settings(router: Router, report: Report) -> None:
    """version, advert_int and authentication equal on every host of the router."""
    label = router.label()
    for key, get in (("version", lambda m: m.version),
                     ("advert_int", lambda m: m.advert_int)):
        if len({get(m) for m in router.members}) > 1:
            refs = ", ".join(f"{m.ref(key)} = {get(m):g}" for m in router.members)
            report.problems.append(f"{label}: {key} differs between hosts: {refs}")
    if all(m.version == 3 for m in router.members):
        return          # VRRPv3 has no authentication (keepalived ignores the block)
    if len({m.auth for m in router.members}) > 1:
        report.problems.append(f"{label}: authentication differs between hosts: "
                               f"{_auth_classes(router.members)}")


def _auth_classes(members: list[Instance]) -> str:
    """Who has which authentication, passwords told apart only by a label."""
    labels: dict[str, str] = {}
    out = []
    for member in members:
        auth_type, password = member.auth
        if auth_type == "none":
            out.append(f"{member.ref('authentication')}: none")
            continue
        tag = labels.setdefault(password, chr(ord("A") + len(labels)))
        out.append(f"{member.ref('authentication')}: {auth_type}, password {tag}")
    return ", ".join(out)


def check_lone(router: Router, routers: list[Router], report: Report) -> None:
    """A router of one host: no peer, or its peers put on another segment (a segment
    named on one host only splits a router in two)."""
    if len({m.host for m in router.members}) > 1:
        return
    member = router.members[0]
    text = (f"{router.label()}: only {member.host} has it ({member.ref()}): no peer among "
            "the hosts")
    if member.segment_from == "segments":
        text += f" on this segment ({_origin(member)})"
    same = (router.family, router.vrid, router.vips)
    twins = [m for other in routers
             if other is not router and (other.family, other.vrid, other.vips) == same
             for m in other.members]
    if twins:
        text += "; the same VRID and VIPs are on another segment for " + ", ".join(
            f"{m.ref()} (segment {m.segment}, {_origin(m)})" for m in twins)
    report.warnings.append(text)


def check_vips_in_subnet(instances: list[Instance], report: Report) -> None:
    """Every VIP inside a network of its interface (from the facts), else a warning."""
    warned: set[str] = set()
    for inst in instances:
        if not has_network_facts(inst.facts):
            if inst.host not in warned:
                warned.add(inst.host)
                report.warnings.append(_without_facts(inst.host, instances))
            continue
        for vip in inst.vips:
            _check_vip(inst, vip, report)


def _without_facts(host: str, instances: list[Instance]) -> str:
    text = f"{host}: no network facts gathered: VIPs not checked against interface subnets"
    guessed = [i for i in instances if i.host == host and i.segment_from != "segments"]
    if not guessed:
        return f"{text} (gather facts first)"
    return (f"{text}, segments taken from the VIPs (gather facts first, or name the segments "
            f"of the interfaces in {guessed[0].segments_var})")


def _check_vip(inst: Instance, vip: Vip, report: Report) -> None:
    ifname = vip.dev or inst.interface
    where = inst.ref(f"virtual_ipaddress[{vip.index}]" if vip.dev else "interface")
    iface = interface_facts(inst.facts, ifname)
    if iface is None:
        report.warnings.append(f"{where}: interface {ifname} is not among {inst.host}'s "
                               f"gathered interfaces: {vip.address} not checked")
        return
    networks = interface_networks(iface, vip.address.version)
    if not any(vip.address.ip in net for net in networks):
        nets = ", ".join(str(n) for n in networks) or "none"
        report.problems.append(
            f"{inst.ref(f'virtual_ipaddress[{vip.index}]')}: {vip.address} is outside the "
            f"subnets of {ifname} on {inst.host} (IPv{vip.address.version}: {nets})")


def check(hosts: Mapping[str, HostInput]) -> tuple[Report, list[Router]]:
    """All checks. ``hosts``: name -> its variables and facts."""
    report = Report()
    instances: list[Instance] = []
    for host, given in hosts.items():
        var, value = given.instances_var, given.instances
        if not isinstance(value, list):
            report.problems.append(f"{host}: {var}: must be a list of instance dicts, "
                                   f"not {kind_of(value)}")
            continue
        for index, data in enumerate(value):
            inst = read_instance(host, f"{var}[{index}]", data, given, report)
            if inst is not None:
                instances.append(inst)
    routers = routers_of(instances)
    check_vrid_clashes(routers, report)
    for router in routers:
        check_duplicate_hosts(router, report)
        check_priorities(router, report)
        check_unicast(router, report)
        check_same_settings(router, report)
        check_lone(router, routers, report)
    check_vips_in_subnet(instances, report)
    report.warnings = list(dict.fromkeys(report.warnings))
    return report, routers


def summary(router: Router) -> dict[str, Any]:
    """A router as the action returns it."""
    tops = sorted(router.members, key=lambda m: m.priority, reverse=True)
    single = len(tops) == 1 or tops[0].priority > tops[1].priority
    return {
        "vrid": router.vrid,
        "family": router.family,
        "segment": router.segment,
        "vips": sorted(router.vips),
        "intended_master": tops[0].host if single else None,
        "members": [{"host": m.host, "instance": m.name, "path": m.path,
                     "priority": m.priority, "state": m.state,
                     "segment_from": m.segment_from} for m in router.members],
    }
