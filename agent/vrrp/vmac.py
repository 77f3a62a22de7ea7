"""VMAC (``use_vmac``): a macvlan interface that carries a VRRP router's virtual MAC.

keepalived 2.2.7 (vrrp_vmac.c, vrrp_if_config.c, vrrp.c) gives an instance
with ``use_vmac`` its own link: a macvlan in private mode on the configured
interface, with MAC 00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID
(IPv6) unless one is configured.  The VIPs of the instance's family go on
it, so a failover moves the MAC with the addresses and clients keep their
neighbour entries.  It is made when the configuration is read and stays up
whatever the VRRP state; it is deleted on stop.

Making one, as keepalived does:

- RTM_NEWLINK macvlan mode private, link = the configured interface, the MAC;
- IPv4 only: net.ipv4.conf.all.rp_filter is moved to 0 without changing any
  interface's effective value (each one below it is raised first, and
  ``default`` too), then on the VMAC arp_ignore=1, accept_local=1,
  rp_filter=0, promote_secondaries=1, and on the configured interface
  arp_ignore=1, arp_filter=1 (counted per interface, put back by the last);
- disable_ipv6=1 unless the instance is IPv6 or has eVIPs of the other
  family; IPv6 address generation off (IFLA_INET6_ADDR_GEN_MODE none);
- link up;
- IPv6 without ``vmac_xmit_base``: one /64 address, nodad and deprecated
  (preferred_lft 0), which is the configured source address, else the
  configured interface's link-local address, else the EUI-64 address of its
  MAC: adverts then leave from the VMAC with the base's link-local source.

``plan_vmacs`` works out, from the configuration and the links that exist,
which VMACs to have and on which link each VIP goes; ``Vmacs`` makes and
removes them in the namespace the process runs in (sysctls are files in
/proc/sys, which shows the namespace of the one who reads it).

The runtime (runtime.py) makes them before it reads links, puts the VIPs on
the links planned here, sends and receives adverts on the VMAC, and adds
keepalived's nftables rules for them (firewall.py, VmacFirewall).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Interface, ip_address
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from ..config.model import Node
from .kernel import IFA_F_NODAD, Kernel, KernelError, VirtualAddress, word_after

log = logging.getLogger("keepalived_py.vrrp")

IFNAMSIZ = 16
VRRP_MAC_PREFIX = bytes([0x00, 0x00, 0x5E, 0x00])
MACVLAN = "macvlan"
MACVLAN_PRIVATE = "private"
IN6_ADDR_GEN_MODE_NONE = 1
PROC_SYS = Path("/proc/sys")

# vrrp_if_config.c: what a VMAC needs so that it hears adverts and VIP traffic
# without an address of its own, and what its base needs so that it does not
# answer ARP for the VIPs with its own MAC.
VMAC_IPV4_SYSCTLS = {"arp_ignore": 1, "accept_local": 1, "rp_filter": 0,
                     "promote_secondaries": 1}
BASE_IPV4_SYSCTLS = {"arp_ignore": 1, "arp_filter": 1}


class VmacError(KernelError):
    """A VMAC cannot be made; the message names the instance and the link."""


# -- what the configuration asks for ------------------------------------------------

@dataclass(frozen=True)
class Link:
    """An existing link, as far as choosing and checking VMACs needs it."""

    ifname: str
    ifindex: int
    mac: bytes = b""
    kind: str | None = None             # IFLA_INFO_KIND
    mode: str | None = None             # a macvlan's mode
    base_ifindex: int | None = None     # a macvlan's lower link (IFLA_LINK)

    @classmethod
    def from_message(cls, msg: Any) -> Link:
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else None
        data = info.get("IFLA_INFO_DATA") if info and kind == MACVLAN else None
        mode = data.get("IFLA_MACVLAN_MODE") if data else None
        mac = (msg.get("IFLA_ADDRESS") or "").replace(":", "")
        return cls(msg.get("IFLA_IFNAME") or "", msg["index"], bytes.fromhex(mac), kind,
                   mode, msg.get("IFLA_LINK") if kind == MACVLAN else None)

    def is_vmac_for(self, base: Link | None, mac: bytes) -> bool:
        return (self.kind == MACVLAN and self.mode == MACVLAN_PRIVATE and base is not None
                and self.base_ifindex == base.ifindex and self.mac == mac)


@dataclass(frozen=True)
class VmacSpec:
    """One VMAC: an instance's own, or one that VIPs of another link or family go on."""

    ifname: str
    base: str                           # the configured interface: the macvlan's lower link
    family: int                         # 4 or 6: the sysctls and the link-local address
    vrid: int
    mac: bytes
    instance: str                       # for messages
    xmit_base: bool = False             # adverts leave from the base: no link-local address
    ipv6: bool = False                  # IPv6 stays enabled (IPv6, or other-family eVIPs)
    source: IPv6Address | None = None   # a configured IPv6 source: its address on the VMAC

    @property
    def wants_link_local(self) -> bool:
        return self.family == 6 and not self.xmit_base

    def same_link(self, other: VmacSpec) -> bool:
        """Whether ``other`` is this VMAC (what a reload keeps), settings aside."""
        return (self.ifname, self.base, self.mac, self.family) == \
            (other.ifname, other.base, other.mac, other.family)


@dataclass(frozen=True)
class InstanceVmacs:
    """What VMAC does to one instance."""

    vmac: VmacSpec | None               # the instance's own, where its adverts and VIPs go
    # the link of each virtual_ipaddress line, then of each virtual_ipaddress_excluded
    # line (None: the line names none and the instance has no interface)
    vip_links: tuple[str | None, ...] = ()
    garp_extra_if_s: int = 0            # GARPs on the other links every so often; 0: never
    garp_extra_if_all: bool = False     # ... on every other link, not only on VMACs
    vip_lines: tuple[tuple[str, ...], ...] = ()     # the lines vip_links are for
    tracked: tuple[str, ...] = ()       # the VMACs the instance tracks (its own first)
    use_vmac_addr: bool = False

    def link_of(self, words: tuple[str, ...]) -> str | None:
        """The link of a virtual_ipaddress(_excluded) line (None: as the line says)."""
        return next((link for line, link in zip(self.vip_lines, self.vip_links, strict=True)
                     if line == words), None)


@dataclass
class VmacPlan:
    instances: dict[str, InstanceVmacs] = field(default_factory=dict)
    specs: list[VmacSpec] = field(default_factory=list)     # every VMAC, in making order
    messages: list[str] = field(default_factory=list)       # as keepalived reports them


def vrrp_mac(family: int, vrid: int) -> bytes:
    """RFC 5798 7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6."""
    return VRRP_MAC_PREFIX + bytes([2 if family == 6 else 1, vrid])


def eui64_link_local(mac: bytes) -> IPv6Address:
    """fe80::/64 with the modified EUI-64 interface identifier of ``mac``."""
    eui = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def vmac_name(prefix: str, vrid: int, family: int, taken: Collection[str]) -> str:
    """keepalived's create_vmac_name: PREFIX.VRID, then PREFIXn.VRID with n = 1, 2...
    (IPv6 tries 6 first); a long prefix is cut so that the name fits IFNAMSIZ."""
    def fit(number: str) -> str:
        tail = f"{number}.{vrid}"
        return prefix[:IFNAMSIZ - 1 - len(tail)] + tail

    numbers = (str(n) for n in itertools.count(1) if not (family == 6 and n == 6))
    first = ["", "6"] if family == 6 else [""]
    return next(name for name in map(fit, itertools.chain(first, numbers)) if name not in taken)


def _use_vmac_words(words: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The name and the MAC of a ``use_vmac`` value (the parser has checked both)."""
    name = mac = None
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word in ("name", "group") and rest:
            value = rest.pop(0)             # 2.3's "name IFNAME" / "group ID"
            name = value if word == "name" else name
        elif ":" in word:
            mac = mac or word
        elif word != "netlink_notify_msg":
            name = name or word
    return name, mac


def _parse_mac(text: str, vrid: int) -> bytes:
    """6 octets, or 5 and the VRID."""
    octets = [int(part, 16) for part in text.rstrip(":").split(":")]
    return bytes(octets if len(octets) == 6 else [*octets, vrid])


def _family_of(words: tuple[str, ...]) -> int:
    return 6 if ":" in words[0] else 4


def mentions_vmac(root: Node) -> bool:
    """Whether any instance asks for a VMAC (use_vmac, use_vmac_addr, or on a VIP line)."""
    for node in root.blocks("vrrp_instance"):
        lines = (*(node.get("virtual_ipaddress") or ()),
                 *(node.get("virtual_ipaddress_excluded") or ()))
        if node.get("use_vmac") is not None or node.get("use_vmac_addr") or \
                any("use_vmac" in words for words in lines):
            return True
    return False


def plan_vmacs(root: Node, links: Iterable[Link] = (),
               owned: Collection[str] = ()) -> VmacPlan:
    """The VMACs a configuration asks for, named and placed as keepalived 2.2.7 does.

    ``links`` are the links that exist (an existing VMAC for the same base and
    MAC is reused under its name); ``owned`` names the VMACs this process made,
    which a reload may drop for a newly configured name.
    """
    glob = root.blocks("global_defs")

    def gget(name: str) -> Any:
        if glob:
            return glob[0].get(name)
        from ..config.keywords_vrrp import GLOBAL_DEFS
        return GLOBAL_DEFS.keyword(name).default

    plan = VmacPlan()
    existing = sorted(links, key=lambda link: link.ifindex)
    by_name = {link.ifname: link for link in existing}
    instances = root.blocks("vrrp_instance")
    names = _configured_names(instances, by_name, plan.messages)
    taken = set(by_name) | {n for n in names.values() if n}
    planner = _Planner(plan, existing, by_name, taken, owned, gget)
    for node in instances:
        plan.instances[node.head] = planner.instance(node, names.get(node.head))
    return plan


def _configured_names(instances: list[Node], by_name: dict[str, Link],
                      messages: list[str]) -> dict[str, str | None]:
    """The ``use_vmac`` names that stand, checked as keepalived's parser does."""
    names: dict[str, str | None] = {}
    users: dict[str, str] = {}
    for node in instances:
        name, _ = _use_vmac_words(node.get("use_vmac") or ())
        if name is not None and name in users:
            messages.append(f"({node.head}) VRRP instance {users[name]} is already using "
                            f"{name} - ignoring name")
            name = None
        link = by_name.get(name) if name else None
        if link is not None and (link.kind != MACVLAN or link.mode != MACVLAN_PRIVATE):
            messages.append(f"({node.head}) interface {name} already exists and is not a "
                            "private macvlan; ignoring vmac if_name")
            name = None
        if name is not None:
            users[name] = node.head
        names[node.head] = name
    return names


class _Planner:
    """vrrp_complete_instance's VMAC part, one instance after another."""

    def __init__(self, plan: VmacPlan, existing: list[Link], by_name: dict[str, Link],
                 taken: set[str], owned: Collection[str], gget: Callable[[str], Any]) -> None:
        self.plan, self.existing, self.by_name = plan, existing, by_name
        self.taken, self.owned, self.gget = taken, owned, gget

    def say(self, message: str) -> None:
        self.plan.messages.append(message)

    def instance(self, node: Node, name: str | None) -> InstanceVmacs:
        iname = node.head
        words = node.get("use_vmac")
        vips = tuple(node.get("virtual_ipaddress") or ())
        evips = tuple(node.get("virtual_ipaddress_excluded") or ())
        if not vips and not evips:
            return InstanceVmacs(None)
        family = _family_of((vips or evips)[0])
        vrid: int = node.get("virtual_router_id")
        ifname: str | None = node.get("interface")
        strict = node.get("strict_mode")
        strict = bool(self.gget("vrrp_strict")) if strict is None else bool(strict)
        xmit_base = bool(node.get("vmac_xmit_base"))
        unicast = bool(node.get("unicast_peer"))
        if words is not None and unicast:
            if not ifname:
                self.say(f"({iname}): Cannot use VMAC/ipvlan with unicast and no interface - "
                         "clearing use_vmac")
                words = None
            elif not xmit_base:
                self.say(f"({iname}) unicast with use_vmac requires vmac_xmit_base - setting")
                xmit_base = True
        mac = self._configured_mac(iname, words or (), vrid, strict)
        vmac = None
        if words is not None and ifname:
            if strict and xmit_base:
                self.say(f"({iname}) xmit_base is incompatible with strict mode - resetting")
                xmit_base = False
            source = node.get("unicast_src_ip" if unicast else "mcast_src_ip")
            source = ip_address(source) if source else None
            vmac_mac = mac or vrrp_mac(family, vrid)
            vmac = VmacSpec(
                ifname=self._instance_name(iname, name, ifname, vrid, family, vmac_mac),
                base=ifname, family=family, vrid=vrid, mac=vmac_mac, instance=iname,
                xmit_base=xmit_base,
                # keepalived looks at the eVIPs only: it drops VIPs of the other family
                ipv6=family == 6 or any(_family_of(w) != family for w in evips),
                source=source if isinstance(source, IPv6Address) else None)
            self.plan.specs.append(vmac)
        elif xmit_base:
            self.say(f"({iname}) vmac_xmit_base is only valid with a vmac")
        vmac_addr = bool(node.get("use_vmac_addr"))
        lines = (*vips, *evips)
        vip_links = tuple(self._vip_link(iname, w, family, vrid, ifname, vmac, mac, vmac_addr)
                          for w in lines)
        seconds, all_if = self._garp_extra_if(node, vmac, ifname, vip_links)
        # keepalived tracks its VMAC as it tracks the interface (not with
        # dont_track_primary), and an address VMAC as any link a VIP names
        own_name = vmac.ifname if vmac is not None else None
        own = [own_name] if own_name and not node.get("dont_track_primary") else []
        vmacs = {s.ifname for s in self.plan.specs}
        others = [link for w, link in zip(lines, vip_links, strict=True)
                  if link in vmacs and link != own_name and "no_track" not in w]
        return InstanceVmacs(vmac, vip_links, seconds, all_if, lines,
                             tuple(dict.fromkeys([*own, *others])), vmac_addr)

    def _configured_mac(self, iname: str, words: tuple[str, ...], vrid: int,
                        strict: bool) -> bytes | None:
        _, text = _use_vmac_words(words)
        if text is None:
            return None
        mac = _parse_mac(text, vrid)
        if mac[:4] == VRRP_MAC_PREFIX and mac[4] in (1, 2):
            self.say(f"VMAC MAC address not allowed to be RFC5798 address ({text}) - ignoring")
            return None
        if strict:
            self.say(f"({iname}): cannot specify MAC address with strict mode - clearing")
            return None
        return mac

    def _instance_name(self, iname: str, name: str | None, ifname: str, vrid: int,
                       family: int, mac: bytes) -> str:
        base = self.by_name.get(ifname)
        found = next((link for link in self.existing if link.is_vmac_for(base, mac)), None)
        if found is not None:
            if name is None or name == found.ifname or found.ifname not in self.owned:
                if name is not None and name != found.ifname:
                    self.say(f"({iname}) vmac name mismatch {name} <=> {found.ifname}. "
                             f"changing to {found.ifname}.")
                return found.ifname
            self.say(f"({iname}) Deleting old VMAC interface {found.ifname}")
            return name
        link = self.by_name.get(name) if name else None
        if link is not None:
            # a private macvlan by that name: made again on this base, or given this MAC
            self.say(f"({iname}) VMAC {name} already exists but is incompatible. "
                     "It will be deleted/updated")
        if name is None:
            name = vmac_name(self.gget("vmac_prefix") or "vrrp", vrid, family, self.taken)
        self.taken.add(name)
        return name

    def _vip_link(self, iname: str, words: tuple[str, ...], family: int, vrid: int,
                  ifname: str | None, vmac: VmacSpec | None, mac: bytes | None,
                  vmac_addr: bool) -> str | None:
        """vrrp_complete_instance's use_vmac / use_vmac_addr rules for one VIP."""
        addr_family = _family_of(words)
        dev = word_after(words, "dev")
        own_link = dev is None or dev == ifname
        on_vmac = "use_vmac" in words
        if on_vmac:
            if own_link and vmac is not None and addr_family == family:
                self.say(f"({iname}) use_vmac specified for VIP/eVIP {words[0]} and vrrp "
                         "instance")
                on_vmac = False
            elif (not own_link or addr_family != family) and vmac_addr:
                self.say(f"({iname}) use_vmac_addr specified and use_vmac specified for "
                         f"VIP/eVIP {words[0]}")
                on_vmac = False
        if own_link:
            if vmac is not None and addr_family == family:
                return vmac.ifname
            link, needs_vmac = ifname, on_vmac or (vmac_addr and addr_family != family)
        else:
            link, needs_vmac = dev, on_vmac or vmac_addr
        if not needs_vmac or link is None:
            return link
        return self._address_vmac(iname, link, addr_family, vrid, mac).ifname

    def _address_vmac(self, iname: str, base: str, family: int, vrid: int,
                      mac: bytes | None) -> VmacSpec:
        """if_get_by_vmac, else a new one named from vmac_addr_prefix."""
        mac = mac or vrrp_mac(family, vrid)
        planned = next((s for s in self.plan.specs if s.base == base and s.mac == mac), None)
        if planned is not None:
            return planned
        base_link = self.by_name.get(base)
        found = next((link for link in self.existing if link.is_vmac_for(base_link, mac)), None)
        if found is not None:
            name = found.ifname
        else:
            prefix = self.gget("vmac_addr_prefix") or self.gget("vmac_prefix") or "vrrp"
            name = vmac_name(prefix, vrid, family, self.taken)
        self.taken.add(name)
        spec = VmacSpec(ifname=name, base=base, family=family, vrid=vrid, mac=mac,
                        instance=iname, ipv6=family == 6)
        self.plan.specs.append(spec)
        return spec

    def _garp_extra_if(self, node: Node, vmac: VmacSpec | None, ifname: str | None,
                       vip_links: tuple[str | None, ...]) -> tuple[int, bool]:
        value = node.get("garp_extra_if") or self.gget("vrrp_garp_extra_if")
        if not value:
            return 0, False
        all_if, seconds = value
        own = vmac.ifname if vmac else ifname
        vmacs = {s.ifname for s in self.plan.specs}
        extra_vmac = any(link != own and link in vmacs for link in vip_links)
        extra_if = any(link != own and link not in vmacs for link in vip_links)
        if (not extra_if and not extra_vmac) or (not extra_vmac and not all_if):
            return 0, bool(all_if)
        return seconds, bool(all_if)


# -- the kernel side ----------------------------------------------------------------

def _read_sysctl(key: str) -> int | None:
    try:
        return int((PROC_SYS / key).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_sysctl(key: str, value: int) -> None:
    try:
        (PROC_SYS / key).write_text(f"{value}\n")
    except OSError as err:
        # keepalived goes on without it too (no IPv6 in this kernel, a link just gone)
        log.info("cannot set %s to %d: %s", key.replace("/", "."), value, err.strerror)


def _ipv4_conf(ifname: str, key: str) -> str:
    return f"net/ipv4/conf/{ifname}/{key}"


@dataclass
class _HeldBase:
    """A configured interface whose ARP sysctls IPv4 VMACs need, and its values before."""

    users: int
    before: dict[str, int | None]


class Vmacs:
    """The VMACs this process made, in the network namespace it runs in.

    ``create`` is idempotent: on a VMAC that exists (ours, or one a previous run
    left) it only makes the settings right, so it also serves a reload and a
    VMAC that must be made again after its base came back.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.owned: dict[str, VmacSpec] = {}
        self._bases: dict[str, _HeldBase] = {}
        self._addresses: dict[str, IPv6Address] = {}    # the /64 we gave each IPv6 VMAC
        # rp_filter values before we moved all.rp_filter to 0 ("all", "default", links)
        self._rp_filter: dict[str, int] | None = None

    async def links(self) -> list[Link]:
        """Every link now, for ``plan_vmacs``."""
        return [Link.from_message(msg) for msg in await self._netlink("link", "dump")]

    async def create(self, spec: VmacSpec) -> int:
        """Make (or adopt) the VMAC and configure it as keepalived does; its ifindex."""
        owned = self.owned.get(spec.ifname)
        if owned is not None and not owned.same_link(spec):
            await self.remove(owned)
        base = await self._link(spec.base)
        if base is None:
            raise VmacError(f"({spec.instance}) cannot make VMAC {spec.ifname}: no interface "
                            f"{spec.base}", errno.ENODEV)
        try:
            link = await self._make(spec, base, await self._link(spec.ifname))
            first = spec.ifname not in self.owned
            self.owned[spec.ifname] = spec
            await self._configure(spec, base, link, first)
        except NetlinkError as err:
            raise VmacError(f"({spec.instance}): Unable to create VMAC interface {spec.ifname}: "
                            f"{os.strerror(err.code)}", err.code) from None
        return link.ifindex

    async def _configure(self, spec: VmacSpec, base: Link, link: Link, first: bool) -> None:
        if spec.family == 4:
            self._clear_rp_filter()
            for key, value in VMAC_IPV4_SYSCTLS.items():
                _write_sysctl(_ipv4_conf(spec.ifname, key), value)
            if first:
                self._hold_base(spec.base)
        _write_sysctl(f"net/ipv6/conf/{spec.ifname}/disable_ipv6", 0 if spec.ipv6 else 1)
        # no automatic link-local address (RFC 5798 7.4); the kernel ignores this
        # while making the link, and would make one as the link comes up
        await self._netlink("link", "set", index=link.ifindex, IFLA_AF_SPEC={"attrs": [
            ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]})
        await self._netlink("link", "set", index=link.ifindex, state="up")
        await self.kernel.link_state(spec.ifname)      # the adapter learns the new index
        if spec.family == 6:
            await self._set_link_local(spec, base, link)

    async def remove(self, spec: VmacSpec) -> None:
        """Delete the VMAC (its addresses go with it) and put back the base's ARP sysctls."""
        owned = self.owned.pop(spec.ifname, None)
        self._addresses.pop(spec.ifname, None)
        if owned is not None and owned.family == 4:
            self._release_base(owned.base)
        link = await self._link(spec.ifname)
        if link is None:
            return
        if owned is None and not link.is_vmac_for(await self._link(spec.base), spec.mac):
            log.info("(%s) %s is not a VMAC of ours - not removed", spec.instance, spec.ifname)
            return
        await self._delete(link)
        log.info("(%s) Success removing VMAC interface %s", spec.instance, spec.ifname)
        try:
            await self.kernel.link_state(spec.ifname)   # the adapter forgets the index
        except KernelError:
            pass

    async def sync(self, specs: Iterable[VmacSpec]) -> dict[str, int]:
        """Have these VMACs (at start, and after a reload): ours that are not wanted
        go, the others are made, adopted or updated; the ifindex of each.

        One that cannot be made is logged and left out, as keepalived goes on
        without it (its instance stays in FAULT, see the runtime).
        """
        specs = list(specs)
        wanted = {spec.ifname for spec in specs}
        for name in [name for name in self.owned if name not in wanted]:
            await self.remove(self.owned[name])
        made = {}
        for spec in specs:
            try:
                made[spec.ifname] = await self.create(spec)
            except KernelError as err:
                log.error("%s", err)
        return made

    def link_local(self, ifname: str) -> IPv6Address | None:
        """The /64 address given to an IPv6 VMAC: its adverts' source address."""
        return self._addresses.get(ifname)

    async def close(self) -> None:
        """On stop: rp_filter back, then every VMAC of ours removed."""
        self._restore_rp_filter()
        for spec in list(self.owned.values()):
            try:
                await self.remove(spec)
            except (KernelError, NetlinkError, OSError) as err:
                log.info("(%s) Error removing VMAC interface %s: %s", spec.instance,
                         spec.ifname, err)

    # -- links --

    async def _netlink(self, method: str, *args: Any, **kw: Any) -> Any:
        reply = await getattr(self.kernel.ipr, method)(*args, **kw)
        if hasattr(reply, "__aiter__"):
            reply = [msg async for msg in reply]
        return reply

    async def _link(self, ifname: str) -> Link | None:
        try:
            return Link.from_message((await self._netlink("link", "get", ifname=ifname))[0])
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise

    async def _delete(self, link: Link) -> None:
        try:
            await self._netlink("link", "del", index=link.ifindex)
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise

    async def _make(self, spec: VmacSpec, base: Link, link: Link | None) -> Link:
        """netlink_link_add_vmac: reuse, update in place, or replace what has the name."""
        mac = spec.mac.hex(":")
        if link is not None and not link.is_vmac_for(base, spec.mac):
            if link.kind != MACVLAN:
                raise VmacError(f"VMAC {spec.ifname} conflicts with existing interface",
                                errno.EEXIST)
            if link.base_ifindex != base.ifindex:
                log.info("(%s) Removing old VMAC interface %s due to conflicting interface",
                         spec.instance, spec.ifname)
                await self._delete(link)
                link = None
            else:
                log.info("(%s) Update old VMAC interface %s due to wrong MAC/mode",
                         spec.instance, spec.ifname)
                await self._netlink("link", "set", index=link.ifindex, kind=MACVLAN,
                                    macvlan_mode=MACVLAN_PRIVATE, address=mac)
        if link is None:
            await self._netlink("link", "add", ifname=spec.ifname, kind=MACVLAN,
                                macvlan_mode=MACVLAN_PRIVATE, link=base.ifindex, address=mac)
            log.info("(%s): Success creating VMAC interface %s", spec.instance, spec.ifname)
        made = await self._link(spec.ifname)
        if made is None:
            raise VmacError(f"({spec.instance}) VMAC {spec.ifname} vanished", errno.ENODEV)
        return made

    async def _set_link_local(self, spec: VmacSpec, base: Link, link: Link) -> None:
        """The VMAC's one /64: the configured source, the base's link-local address, or
        one from the base's MAC; none with vmac_xmit_base.  Only the address we put
        there is ever taken away: a link-local VIP may sit on the VMAC too."""
        wanted = None
        if spec.wants_link_local:
            base_ll = [a for a in await self.kernel.interface_addresses(base.ifindex, 6)
                       if a.is_link_local]
            wanted = spec.source or (base_ll[0] if base_ll else eui64_link_local(base.mac))
        ours = self._addresses.pop(spec.ifname, None)
        if ours is not None and ours != wanted:
            await self.kernel.remove_addresses([self._link_local(spec, ours)])
        if wanted is not None:
            if wanted not in await self.kernel.interface_addresses(link.ifindex, 6):
                await self.kernel.add_addresses([self._link_local(spec, wanted)])
            self._addresses[spec.ifname] = wanted

    @staticmethod
    def _link_local(spec: VmacSpec, address: IPv6Address) -> VirtualAddress:
        # keepalived adds it without DAD and deprecated, so nothing picks it as a source
        return VirtualAddress(IPv6Interface((address, 64)), spec.ifname, flags=IFA_F_NODAD,
                              preferred_lft=0)

    # -- sysctls --

    def _hold_base(self, base: str) -> None:
        held = self._bases.get(base)
        if held is not None:
            held.users += 1
            return
        before = {key: _read_sysctl(_ipv4_conf(base, key)) for key in BASE_IPV4_SYSCTLS}
        for key, value in BASE_IPV4_SYSCTLS.items():
            if before[key] != value:
                _write_sysctl(_ipv4_conf(base, key), value)
        self._bases[base] = _HeldBase(1, before)

    def _release_base(self, base: str) -> None:
        """The last IPv4 VMAC on ``base`` is gone: what we changed there goes back,
        unless someone changed it since.  (keepalived 2.2.7 means to, but reads the
        value to restore back from the kernel after it set it, so leaves 1 and 1.)"""
        held = self._bases.get(base)
        if held is None:
            return
        held.users -= 1
        if held.users:
            return
        del self._bases[base]
        for key, before in held.before.items():
            ours = BASE_IPV4_SYSCTLS[key]
            if before is not None and before != ours and \
                    _read_sysctl(_ipv4_conf(base, key)) == ours:
                _write_sysctl(_ipv4_conf(base, key), before)

    def _clear_rp_filter(self) -> None:
        """A VMAC needs rp_filter 0, and a link's is the larger of its own and all's:
        raise ``default`` and every link to all's value, then set all's to 0."""
        if self._rp_filter is not None:
            return
        strictest = _read_sysctl(_ipv4_conf("all", "rp_filter"))
        if not strictest:
            return
        saved = {"all": strictest}
        links = sorted(os.listdir(PROC_SYS / "net/ipv4/conf"))
        for name in ["default", *(n for n in links if n not in ("all", "default"))]:
            value = _read_sysctl(_ipv4_conf(name, "rp_filter"))
            if value is not None and value < strictest:
                if name == "default":
                    log.info("NOTICE: setting sysctl net.ipv4.conf.default.rp_filter from %d "
                             "to %d", value, strictest)
                _write_sysctl(_ipv4_conf(name, "rp_filter"), strictest)
                saved[name] = value
        log.info("NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from %d to 0", strictest)
        _write_sysctl(_ipv4_conf("all", "rp_filter"), 0)
        self._rp_filter = saved

    def _restore_rp_filter(self) -> None:
        """Each rp_filter back to its value before, where it is still what we set."""
        saved, self._rp_filter = self._rp_filter, None
        if saved is None:
            return
        strictest = saved.pop("all")
        if _read_sysctl(_ipv4_conf("all", "rp_filter")) == 0:
            log.info("NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to %d", strictest)
            _write_sysctl(_ipv4_conf("all", "rp_filter"), strictest)
        for name, before in saved.items():
            if _read_sysctl(_ipv4_conf(name, "rp_filter")) == strictest:
                _write_sysctl(_ipv4_conf(name, "rp_filter"), before)
