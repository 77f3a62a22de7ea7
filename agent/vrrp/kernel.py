"""The kernel side of VRRP: virtual addresses, routes and rules, and link state.

The engine decides *what* to add or remove; this adapter carries it out over
rtnetlink with pyroute2's ``AsyncIPRoute``, so that no netlink round trip ever
blocks the event loop that also sends adverts.

The config model keeps virtual_ipaddress / virtual_routes / virtual_rules lines
as tuples of words (``config/values_vrrp.py``).  ``from_words`` turns them into
what keepalived 2.2.7 would send to the kernel, defaults included:

- addresses: scope global, no broadcast unless ``brd`` is given (``+``/``-``
  are computed for prefixes up to /30), the address's own label; IPv6 ones get
  no scope and no label, are added with IFA_F_NODAD unless ``-nodad``, and a
  /128 without ``preferred_lft`` is added deprecated (preferred_lft 0);
- routes are *prepended* (NLM_F_CREATE without NLM_F_EXCL) unless ``add`` or
  ``append`` is written, with scope universe and protocol keepalived (18);
- rules carry protocol keepalived (18); a rule without a preference gets one
  from ``number_rules``, as keepalived numbers them.

All requests are idempotent: adding what is there, or removing what is not,
is not an error.  Any other refusal comes back as ``KernelError`` naming the
object.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from pathlib import Path
from typing import Any, TypeVar

from pyroute2.netlink import NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWROUTE, RTMGRP_LINK

from ..host.netlink import KernelError, NetlinkSession

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

RTPROT_KEEPALIVED = 18
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_NOWHERE = 255
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
INFINITY_LIFE_TIME = 0xFFFFFFFF
RULE_START_PRIORITY = 16384

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
FIB_RULE_INVERT = 0x2
FR_ACT_TO_TBL, FR_ACT_GOTO, FR_ACT_NOP = 1, 2, 3
FR_ACT_BLACKHOLE, FR_ACT_UNREACHABLE, FR_ACT_PROHIBIT = 6, 7, 8

_ADDR_FLAGS = {"home": 0x10, "mngtmpaddr": 0x100, "noprefixroute": 0x200, "autojoin": 0x400}
_ROUTE_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "brd": 3, "anycast": 4,
                "multicast": 5, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9,
                "nat": 10, "xresolve": 11}
_RULE_ACTIONS = {"blackhole": FR_ACT_BLACKHOLE, "unreachable": FR_ACT_UNREACHABLE,
                 "prohibit": FR_ACT_PROHIBIT, "nop": FR_ACT_NOP}
# integer route metrics: word -> RTAX attribute, and whether "lock" may precede the value
_ROUTE_METRICS = {
    "mtu": ("RTAX_MTU", True), "advmss": ("RTAX_ADVMSS", True),
    "reordering": ("RTAX_REORDERING", True), "cwnd": ("RTAX_CWND", True),
    "ssthresh": ("RTAX_SSTHRESH", True), "window": ("RTAX_WINDOW", False),
    "hoplimit": ("RTAX_HOPLIMIT", False), "initcwnd": ("RTAX_INITCWND", False),
    "initrwnd": ("RTAX_INITRWND", False), "quickack": ("RTAX_QUICKACK", False),
    "fastopen_no_cookie": ("RTAX_FASTOPEN_NO_COOKIE", False),
}
# bit numbers in RTAX_LOCK of the metrics that may be locked
_RTAX_NUMBERS = {"RTAX_MTU": 2, "RTAX_SSTHRESH": 6, "RTAX_CWND": 7, "RTAX_ADVMSS": 8,
                 "RTAX_REORDERING": 9}
_IPV6_PREF = {"low": 3, "medium": 0, "high": 1}   # ICMPV6_ROUTER_PREF_*

# keepalived's own names when /etc/iproute2 does not name a number
_DEFAULT_NAMES = {
    "rt_tables": {"default": 253, "main": 254, "local": 255},
    "rt_scopes": {"global": 0, "nowhere": 255, "host": 254, "link": 253, "site": 200},
    "rt_protos": {"none": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8,
                  "ra": 9, "mrt": 10, "zebra": 11, "bird": 12, "babel": 42, "dnrouted": 13,
                  "xorp": 14, "ntk": 15, "dhcp": 16},
    "rt_dsfield": {},
}
IPROUTE2_DIR = Path("/etc/iproute2")


# -- reading words ------------------------------------------------------------

def _c_number(word: str, hi: int) -> int | None:
    """``strtoul(word, 0)`` as keepalived reads it: decimal, 0x hex or 0 octal."""
    text = word.strip()
    try:
        if text[:2].lower() == "0x":
            value = int(text[2:], 16)
        elif text.startswith("0") and len(text) > 1:
            value = int(text[1:], 8)
        else:
            value = int(text, 10) if text.isdigit() else -1
    except ValueError:
        return None
    return value if 0 <= value <= hi else None


def _rt_name(kind: str, word: str, hi: int = 255) -> int:
    """A number or a name from /etc/iproute2/<kind>, then keepalived's defaults."""
    value = _c_number(word, hi)
    if value is not None:
        return value
    path = IPROUTE2_DIR / kind
    for file in [path, *sorted(path.with_suffix(".d").glob("*.conf"))]:
        try:
            lines = file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) == 2 and fields[1] == word:
                number = _c_number(fields[0], hi)
                if number is not None:
                    return number
    if word in _DEFAULT_NAMES[kind]:
        return _DEFAULT_NAMES[kind][word]
    raise ValueError(f"unknown {kind[3:].rstrip('s')} '{word}'")


def _uint(word: str, what: str, hi: int = 0xFFFFFFFF) -> int:
    value = _c_number(word, hi)
    if value is None:
        raise ValueError(f"invalid {what} '{word}'")
    return value


def _range(word: str, what: str, hi: int) -> tuple[int, int]:
    """``START[-END]``."""
    low, _, high = word.partition("-")
    start = _uint(low, what, hi)
    return start, _uint(high, what, hi) if high else start


class _Words:
    """A cursor over a line's words, for ``keyword VALUE`` grammars."""

    def __init__(self, words: Sequence[str]) -> None:
        if not words:
            raise ValueError("empty line")
        self.words = list(words)
        self.i = 0

    def __bool__(self) -> bool:
        return self.i < len(self.words)

    def next(self) -> str:
        word = self.words[self.i]
        self.i += 1
        return word

    def value(self, keyword: str) -> str:
        if self.i >= len(self.words):
            raise ValueError(f"no value given for '{keyword}' in '{' '.join(self.words)}'")
        return self.next()


def _prefix(word: str, family: int | None) -> IPNetwork | None:
    """``parse_route``: a prefix, or None for default/any/all (the whole family)."""
    if word in ("default", "any", "all", "default6"):
        return None
    net = ip_network(word, strict=False)
    if family and _family(net) != family:
        raise ValueError(f"'{word}' mixes IPv4 and IPv6")
    return net


def _family(obj: IPAddress | IPNetwork | IPInterface) -> int:
    return socket.AF_INET6 if obj.version == 6 else socket.AF_INET


def _join(family: int, word: str) -> int:
    """The family of a line so far, checked against one more address."""
    found = socket.AF_INET6 if ":" in word else socket.AF_INET
    if family and found != family:
        raise ValueError(f"'{word}' mixes IPv4 and IPv6")
    return found


# -- virtual addresses ----------------------------------------------------------

@dataclass(frozen=True)
class VirtualAddress:
    """One virtual_ipaddress (or static_ipaddress) as keepalived adds it."""

    address: IPInterface
    ifname: str
    scope: int = RT_SCOPE_UNIVERSE
    label: str | None = None
    broadcast: IPv4Address | None = None
    peer: IPAddress | None = None
    flags: int = 0                       # IFA_F_* bits sent on add
    preferred_lft: int | None = None     # IPv6 only; None is forever
    no_track: bool = False
    use_vmac: bool = False

    def __str__(self) -> str:
        peer = f" peer {self.peer}" if self.peer else ""
        return f"{self.address}{peer} dev {self.ifname}"

    @classmethod
    def from_words(cls, words: Sequence[str], default_ifname: str) -> VirtualAddress:
        """From an AddressLine value; without ``dev`` it goes on ``default_ifname``."""
        cursor = _Words(words)
        address = ip_interface(cursor.next())
        v6 = address.version == 6
        ifname, scope, label, brd = default_ifname, RT_SCOPE_UNIVERSE, None, None
        peer: IPAddress | None = None
        flags, nodad, no_track, use_vmac = 0, True, False, False
        preferred: int | None = None
        preferred_set = False
        while cursor:
            word = cursor.next()
            if word == "dev":
                ifname = cursor.value(word)
            elif word == "scope":
                scope = _rt_name("rt_scopes", cursor.value(word))
            elif word in ("brd", "broadcast"):
                brd = cursor.value(word)
            elif word == "label":
                label = cursor.value(word)
            elif word == "peer":
                peer = ip_address(cursor.value(word))
                if peer.version != address.version:
                    raise ValueError(f"peer {peer} does not match {address}'s family")
            elif word == "preferred_lft":
                value = cursor.value(word)
                preferred = None if value == "forever" else _uint(value, "preferred_lft")
                preferred_set = True
            elif word == "track_group":
                cursor.value(word)         # tracking is the engine's business
            elif word in _ADDR_FLAGS:
                flags |= _ADDR_FLAGS[word]
            elif word == "-nodad":
                nodad = False
            elif word == "no_track":
                no_track = True
            elif word == "use_vmac":
                use_vmac = True
            else:
                raise ValueError(f"unknown option '{word}' for address {address}")
        if peer is not None:
            # keepalived takes the peer's length, which is always the full one
            address = ip_interface(address.ip)
        broadcast = None
        if v6:
            # the kernel picks IPv6 scopes itself and has no IPv6 labels
            scope, label = RT_SCOPE_UNIVERSE, None
            if nodad:
                flags |= IFA_F_NODAD
            if not preferred_set and address.network.prefixlen == 128:
                preferred = 0          # keepalived's old default: /128 VIPs deprecated
        elif brd is not None and peer is None:
            broadcast = _broadcast(address, brd)
        return cls(address, ifname, scope, label, broadcast, peer, flags,
                   preferred if v6 else None, no_track, use_vmac)


def _broadcast(address: IPInterface, brd: str) -> IPv4Address | None:
    if brd not in ("+", "-"):
        return IPv4Address(brd)
    if address.network.prefixlen > 30:
        return None                    # keepalived: prefix too long for broadcast
    net = address.network
    return net.broadcast_address if brd == "+" else net.network_address


# -- virtual routes -------------------------------------------------------------

@dataclass(frozen=True)
class VirtualRoute:
    """One virtual_routes (or static_routes) line as keepalived adds it.

    ``src`` is the preferred source (``src``), ``from_prefix`` the source
    prefix (``from``, IPv6 only).  ``metrics`` holds RTAX names and values.
    """

    dst: IPNetwork
    type: int = RTN_UNICAST
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    from_prefix: IPv6Network | None = None
    table: int = RT_TABLE_MAIN
    metric: int | None = None
    scope: int | None = None           # None: universe on add, any on remove
    protocol: int = RTPROT_KEEPALIVED
    tos: int = 0
    onlink: bool = False
    metrics: tuple[tuple[str, int], ...] = ()
    locked: tuple[str, ...] = ()       # RTAX names written with "lock"
    pref: int | None = None            # IPv6 router preference
    mode: str = "prepend"              # "prepend" | "add" | "append", as in ip-route
    no_track: bool = False

    @property
    def family(self) -> int:
        return _family(self.dst)

    def __str__(self) -> str:
        kind = {v: k for k, v in _ROUTE_TYPES.items() if k != "brd"}[self.type]
        parts = [] if self.type == RTN_UNICAST else [kind]
        parts.append(str(self.dst) if self.dst.prefixlen else "default")
        for word, value in (("from", self.from_prefix), ("via", self.via), ("dev", self.dev),
                            ("src", self.src), ("metric", self.metric)):
            if value is not None:
                parts += [word, str(value)]
        if self.table != RT_TABLE_MAIN:
            parts += ["table", str(self.table)]
        return " ".join(parts)

    @classmethod
    def from_words(cls, words: Sequence[str],
                   default_ifname: str | None = None) -> VirtualRoute:
        """From a RouteLine value.

        ``default_ifname`` is accepted for symmetry with VirtualAddress and not
        used: keepalived 2.2.7 never gives a virtual route the instance's
        interface, only the ``dev`` written on the line.
        """
        cursor = _Words(words)
        family = 0
        dst_word: str | None = None
        found: dict[str, Any] = {}
        metrics: list[tuple[str, int]] = []
        locked: list[str] = []
        given_protocol: int | None = None
        while cursor:
            word = cursor.next()
            if word in ("inet", "inet6"):
                family = _join(family, "::" if word == "inet6" else "0.0.0.0")
            elif word == "src":
                found["src"] = ip_address(cursor.value(word))
                family = _join(family, str(found["src"]))
            elif word in ("via", "gw"):
                value = cursor.value(word)
                if value in ("inet", "inet6"):
                    value = cursor.value(word)     # the address tells its family anyway
                found["via"] = ip_address(value)
                if family and _family(found["via"]) != family:
                    raise ValueError("'via' in another address family (RTA_VIA) is not supported")
                family = _join(family, value)
            elif word == "from":
                value = cursor.value(word)
                if ":" not in value and value != "default6":
                    raise ValueError(f"route from address only supported with IPv6 ({value})")
                family = _join(family, "::")
                found["from_prefix"] = _prefix(value, family)
            elif word == "as":
                # keepalived ignores "as [to] ADDR" (MPLS only), and so do we
                if cursor.value(word) == "to":
                    cursor.value(word)
            elif word in ("tos", "dsfield"):
                found["tos"] = _rt_name("rt_dsfield", cursor.value(word))
            elif word == "table":
                found["table"] = _rt_name("rt_tables", cursor.value(word), 0xFFFFFFFF)
            elif word == "protocol":
                given_protocol = _rt_name("rt_protos", cursor.value(word))
            elif word == "scope":
                found["scope"] = _rt_name("rt_scopes", cursor.value(word))
            elif word in ("metric", "priority", "preference"):
                found["metric"] = _uint(cursor.value(word), "metric")
            elif word in ("dev", "oif"):
                found["dev"] = cursor.value(word)
            elif word == "onlink":
                found["onlink"] = True
            elif word in _ROUTE_METRICS:
                name, lockable = _ROUTE_METRICS[word]
                value = cursor.value(word)
                if lockable and value == "lock":
                    locked.append(name)
                    value = cursor.value(word)
                metrics.append((name, _uint(value, word)))
            elif word == "features":
                if cursor.value(word) != "ecn":
                    raise ValueError("route features other than 'ecn' are not supported")
                metrics.append(("RTAX_FEATURES", 1))
            elif word == "pref":
                value = cursor.value(word)
                pref = _IPV6_PREF.get(value)
                found["pref"] = _uint(value, "pref", 255) if pref is None else pref
                family = _join(family, "::")
            elif word in ("add", "prepend", "append"):
                found["mode"] = word
            elif word == "no_track":
                found["no_track"] = True
            elif word == "track_group":
                cursor.value(word)         # tracking is the engine's business
            elif word in ("encap", "nexthop", "or", "expires", "realms", "rtt", "rttvar",
                          "rto_min", "congctl", "ttl-propagate", "vrf"):
                raise ValueError(f"route option '{word}' is not supported")
            else:
                if word == "to":
                    word = cursor.value(word)
                if word in _ROUTE_TYPES:
                    found["type"] = _ROUTE_TYPES[word]
                    word = cursor.value(word)
                if dst_word is not None:
                    raise ValueError(f"unknown route option '{word}'")
                dst_word = word
                if word == "default6":
                    family = _join(family, "::")
                elif word not in ("default", "any", "all"):
                    family = _join(family, word)
        if dst_word is None:
            raise ValueError(f"route has no destination: '{' '.join(words)}'")
        family = family or socket.AF_INET
        dst = _prefix(dst_word, family) or ip_network("::/0" if family == socket.AF_INET6
                                                      else "0.0.0.0/0")
        # keepalived only keeps another protocol on routes it does not track
        protocol = given_protocol if found.get("no_track") and given_protocol is not None \
            else RTPROT_KEEPALIVED
        return cls(dst=dst, protocol=protocol, metrics=tuple(metrics), locked=tuple(locked),
                   **found)


# -- virtual rules --------------------------------------------------------------

@dataclass(frozen=True)
class VirtualRule:
    """One virtual_rules (or static_rules) line as keepalived adds it."""

    family: int
    action: int
    priority: int | None = None        # None until number_rules gives one
    src: IPNetwork | None = None       # "from"; None is all
    dst: IPNetwork | None = None       # "to"
    table: int = 0
    goto: int | None = None
    invert: bool = False
    tos: int = 0
    fwmark: int | None = None
    fwmask: int | None = None
    iif: str | None = None
    oif: str | None = None
    l3mdev: bool = False
    suppress_prefixlength: int | None = None
    protocol: int = RTPROT_KEEPALIVED
    ipproto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    uidrange: tuple[int, int] | None = None
    no_track: bool = False

    def __str__(self) -> str:
        parts = ["not"] if self.invert else []
        parts += ["from", str(self.src) if self.src else "all"]
        for word, value in (("to", self.dst), ("iif", self.iif), ("oif", self.oif),
                            ("fwmark", self.fwmark)):
            if value is not None:
                parts += [word, str(value)]
        if self.l3mdev:
            parts.append("lookup [l3mdev-table]")
        elif self.action == FR_ACT_TO_TBL:
            parts += ["lookup", str(self.table)]
        elif self.action == FR_ACT_GOTO:
            parts += ["goto", str(self.goto)]
        else:
            parts.append({v: k for k, v in _RULE_ACTIONS.items()}[self.action])
        if self.priority is not None:
            parts += ["priority", str(self.priority)]
        return " ".join(parts)

    @classmethod
    def from_words(cls, words: Sequence[str]) -> VirtualRule:
        """From a RuleLine value; see ``number_rules`` for rules without a preference."""
        cursor = _Words(words)
        family = 0
        found: dict[str, Any] = {}
        action: int | None = None
        given_protocol: int | None = None

        def set_action(value: int) -> None:
            nonlocal action
            if action is not None:
                raise ValueError("more than one of table/nop/goto/blackhole/prohibit/"
                                 f"unreachable/l3mdev in rule '{' '.join(words)}'")
            action = value

        while cursor:
            word = cursor.next()
            if word in ("inet", "inet6"):
                family = _join(family, "::" if word == "inet6" else "0.0.0.0")
            elif word in ("from", "to"):
                value = cursor.value(word)
                if value == "default6" or ":" in value:
                    family = _join(family, "::")
                elif value not in ("default", "any", "all"):
                    family = _join(family, value)
                found["src" if word == "from" else "dst"] = _prefix(value, family)
            elif word in ("table", "lookup"):
                found["table"] = _rt_name("rt_tables", cursor.value(word), 0xFFFFFFFF)
                if found["table"] == 0:
                    raise ValueError("table 0 is not valid for a rule")
                set_action(FR_ACT_TO_TBL)
            elif word == "not":
                found["invert"] = True
            elif word in ("preference", "order", "priority"):
                found["priority"] = _uint(cursor.value(word), "rule preference")
            elif word in ("tos", "dsfield"):
                found["tos"] = _rt_name("rt_dsfield", cursor.value(word))
            elif word == "fwmark":
                mark, slash, mask = cursor.value(word).partition("/")
                found["fwmark"] = _uint(mark, "fwmark")
                if slash:
                    found["fwmask"] = _uint(mask, "fwmark mask")
            elif word in ("dev", "iif"):
                found["iif"] = cursor.value(word)
            elif word == "oif":
                found["oif"] = cursor.value(word)
            elif word == "l3mdev":
                found["l3mdev"] = True
                set_action(FR_ACT_TO_TBL)
            elif word in ("suppress_prefixlength", "sup_pl"):
                found["suppress_prefixlength"] = _uint(cursor.value(word),
                                                       "suppress_prefixlength", 2**31 - 1)
            elif word == "protocol":
                given_protocol = _uint(cursor.value(word), "protocol", 255)
            elif word == "ipproto":
                value = cursor.value(word)
                try:
                    found["ipproto"] = _c_number(value, 127) if value.isdigit() \
                        else socket.getprotobyname(value)
                except OSError:
                    found["ipproto"] = None
                if found["ipproto"] is None:
                    raise ValueError(f"invalid ipproto '{value}'")
            elif word in ("sport", "dport"):
                found[word] = _range(cursor.value(word), word, 0xFFFF)
            elif word == "uidrange":
                found["uidrange"] = _range(cursor.value(word), word, 0xFFFFFFFF)
            elif word == "no_track":
                found["no_track"] = True
            elif word == "track_group":
                cursor.value(word)         # tracking is the engine's business
            elif word in ("realms", "tunnel-id", "suppress_ifgroup", "sup_group"):
                raise ValueError(f"rule option '{word}' is not supported")
            else:
                if word == "type":
                    word = cursor.value(word)
                if word == "goto":
                    found["goto"] = _uint(cursor.value(word), "goto target")
                    set_action(FR_ACT_GOTO)
                elif word in _RULE_ACTIONS:
                    set_action(_RULE_ACTIONS[word])
                else:
                    raise ValueError(f"unknown rule option '{word}'")
        if action is None:
            raise ValueError(f"no action for rule '{' '.join(words)}'")
        if found.get("l3mdev") and found.get("table"):
            raise ValueError("table cannot be given for l3mdev rules")
        if action == FR_ACT_GOTO and ("priority" not in found
                                      or found["priority"] >= found["goto"]):
            raise ValueError("a goto rule needs a preference below its target")
        # keepalived marks only tracked rules; an untracked one keeps what was given, or none
        protocol = (given_protocol or 0) if found.get("no_track") else RTPROT_KEEPALIVED
        return cls(family=family or socket.AF_INET, action=action, protocol=protocol, **found)


def word_after(words: Sequence[str], key: str) -> str | None:
    """The word after ``key`` in an address, route or rule line, if any."""
    for i, word in enumerate(words[:-1]):
        if word == key:
            return words[i + 1]
    return None


def number_rules(rules: Iterable[VirtualRule]) -> list[VirtualRule]:
    """Give rules without a preference keepalived's: 16384 downwards, per family.

    keepalived counts across the whole configuration in the order read, so
    pass every instance's rules (and the static ones) in config order.
    """
    next_free = {socket.AF_INET: RULE_START_PRIORITY, socket.AF_INET6: RULE_START_PRIORITY}
    numbered = []
    for rule in rules:
        if rule.priority is None:
            rule = replace(rule, priority=next_free[rule.family])
            next_free[rule.family] -= 1
        numbered.append(rule)
    return numbered


# -- the adapter ----------------------------------------------------------------

@dataclass(frozen=True)
class LinkState:
    """What VRRP needs of a link; ``up`` is keepalived's IF_ISUP (IFF_UP and IFF_RUNNING)."""

    ifindex: int
    ifname: str
    up: bool
    mac: bytes
    mtu: int
    deleted: bool = False

    @classmethod
    def from_message(cls, msg: Any) -> LinkState:
        flags = msg["flags"]
        mac = msg.get("IFLA_ADDRESS") or ""
        return cls(ifindex=msg["index"], ifname=msg.get("IFLA_IFNAME") or "",
                   up=flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING,
                   mac=bytes.fromhex(mac.replace(":", "")), mtu=msg.get("IFLA_MTU") or 0,
                   deleted=msg["header"]["type"] == RTM_DELLINK)


T = TypeVar("T")

# refusals that mean "already done"
_ADDED = frozenset({errno.EEXIST})
_ADDR_GONE = frozenset({errno.EADDRNOTAVAIL, errno.ENODEV})
_ROUTE_GONE = frozenset({errno.ESRCH, errno.ENOENT, errno.ENODEV})
_RULE_GONE = frozenset({errno.ENOENT})


class Kernel(NetlinkSession):
    """Addresses, routes, rules and links of one network namespace (``None``: the
    one we run in), over a netlink session.
    """

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(netns)
        # link name -> index: every address or route names its link, and a
        # "link get" per request costs a 1.5 kB reply (kept fresh by link_state
        # and watch_links; a stale one fails with ENODEV and is dropped)
        self._indexes: dict[str, int] = {}

    async def __aenter__(self) -> Kernel:
        return self

    async def _index(self, ifname: str) -> int | None:
        index = self._indexes.get(ifname)
        if index is not None:
            return index
        try:
            links = await self.request("link", "get", ifname=ifname)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        self._indexes[ifname] = links[0]["index"]
        return self._indexes[ifname]

    def _learn(self, link: LinkState) -> LinkState:
        if link.deleted:
            self._indexes.pop(link.ifname, None)
        elif link.ifname:
            self._indexes[link.ifname] = link.ifindex
        return link

    async def _each(self, items: Iterable[T], doing: str,
                    act: Callable[[T], Awaitable[None]]) -> None:
        """Carry out ``act`` on every item; then report every refusal at once."""
        failures = []
        for item in items:
            try:
                await act(item)
            except KernelError as e:
                failures.append(e)
            except (NetlinkError, OSError) as e:
                code = getattr(e, "code", None) or e.errno or 0
                failures.append(KernelError(f"cannot {doing} {item}: {os.strerror(code)}",
                                            code))
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise KernelError("; ".join(str(e) for e in failures), failures[0].code)

    async def _tolerate(self, ok: frozenset[int], request: Awaitable[object],
                        ifname: str | None = None) -> None:
        try:
            await request
        except NetlinkError as e:
            if e.code == errno.ENODEV and ifname:
                self._indexes.pop(ifname, None)     # the link was replaced: look again next time
            if e.code not in ok:
                raise

    # -- addresses --

    async def add_addresses(self, addrs: Iterable[VirtualAddress]) -> None:
        async def add(addr: VirtualAddress) -> None:
            index = await self._index(addr.ifname)
            if index is None:
                raise KernelError(f"cannot add {addr}: {os.strerror(errno.ENODEV)}",
                                  errno.ENODEV)
            kw = self._addr_args(addr, index)
            kw.update(scope=addr.scope, flags=addr.flags)
            if addr.label:
                kw["label"] = addr.label
            if addr.broadcast:
                kw["broadcast"] = str(addr.broadcast)
            if addr.preferred_lft is not None:
                kw.update(preferred_lft=addr.preferred_lft, valid_lft=INFINITY_LIFE_TIME)
            await self._tolerate(_ADDED, self.request("addr", "add", **kw), addr.ifname)

        await self._each(addrs, "add", add)

    async def remove_addresses(self, addrs: Iterable[VirtualAddress]) -> None:
        async def remove(addr: VirtualAddress) -> None:
            index = await self._index(addr.ifname)
            if index is not None:      # a deleted link took its addresses along
                await self._tolerate(
                    _ADDR_GONE, self.request("addr", "del", **self._addr_args(addr, index)),
                    addr.ifname)

        await self._each(addrs, "remove", remove)

    @staticmethod
    def _addr_args(addr: VirtualAddress, index: int) -> dict[str, Any]:
        ip = str(addr.address.ip)
        kw: dict[str, Any] = {"index": index, "family": _family(addr.address),
                              "prefixlen": addr.address.network.prefixlen,
                              "address": str(addr.peer) if addr.peer else ip}
        if addr.address.version == 4 or addr.peer:
            kw["local"] = ip
        return kw

    async def present_addresses(self, addrs: Iterable[VirtualAddress]) -> set[VirtualAddress]:
        """Those of ``addrs`` that are on their interface now (address and prefix length)."""
        links = await self.request("link", "dump")
        names = {msg["index"]: msg.get("IFLA_IFNAME") for msg in links}
        have = set()
        for msg in await self.request("addr", "dump"):
            local = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            have.add((names.get(msg["index"]), ip_address(local), msg["prefixlen"]))
        return {a for a in addrs
                if (a.ifname, a.address.ip, a.address.network.prefixlen) in have}

    # -- routes --

    async def add_routes(self, routes: Iterable[VirtualRoute]) -> None:
        async def add(route: VirtualRoute) -> None:
            flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | {
                "prepend": 0, "add": NLM_F_EXCL, "append": NLM_F_APPEND}[route.mode]
            kw = await self._route_args(route, "add")
            await self._tolerate(_ADDED, self.request("route", (RTM_NEWROUTE, flags), **kw),
                                 route.dev)

        await self._each(routes, "add route", add)

    async def remove_routes(self, routes: Iterable[VirtualRoute]) -> None:
        async def remove(route: VirtualRoute) -> None:
            try:
                kw = await self._route_args(route, "remove")
            except KernelError:
                return                 # its device is gone, and the route with it
            await self._tolerate(_ROUTE_GONE, self.request("route", "del", **kw), route.dev)

        await self._each(routes, "remove route", remove)

    async def _route_args(self, route: VirtualRoute, doing: str) -> dict[str, Any]:
        default_scope = RT_SCOPE_UNIVERSE if doing == "add" else RT_SCOPE_NOWHERE
        kw: dict[str, Any] = {
            "family": route.family, "dst": str(route.dst.network_address),
            "dst_len": route.dst.prefixlen, "table": route.table, "proto": route.protocol,
            "type": route.type, "tos": route.tos,
            "scope": default_scope if route.scope is None else route.scope,
        }
        if route.dev:
            index = await self._index(route.dev)
            if index is None:
                raise KernelError(f"cannot {doing} route {route}: "
                                  f"{os.strerror(errno.ENODEV)}", errno.ENODEV)
            kw["oif"] = index
        if route.via:
            kw["gateway"] = str(route.via)
        if route.src:
            kw["prefsrc"] = str(route.src)
        if route.from_prefix:
            kw.update(src=str(route.from_prefix.network_address),
                      src_len=route.from_prefix.prefixlen)
        if route.metric is not None:
            kw["priority"] = route.metric
        if route.onlink:
            kw["flags"] = RTNH_F_ONLINK
        if route.pref is not None:
            kw["pref"] = route.pref
        if route.metrics:
            metrics = dict(route.metrics)
            if route.locked:
                metrics["RTAX_LOCK"] = sum(1 << _RTAX_NUMBERS[name] for name in route.locked)
            kw["metrics"] = metrics
        return kw

    # -- rules --

    async def add_rules(self, rules: Iterable[VirtualRule]) -> None:
        async def add(rule: VirtualRule) -> None:
            await self._tolerate(_ADDED, self.request("rule", "add", **self._rule_args(rule)))

        await self._each(rules, "add rule", add)

    async def remove_rules(self, rules: Iterable[VirtualRule]) -> None:
        async def remove(rule: VirtualRule) -> None:
            await self._tolerate(_RULE_GONE, self.request("rule", "del", **self._rule_args(rule)))

        await self._each(rules, "remove rule", remove)

    @staticmethod
    def _rule_args(rule: VirtualRule) -> dict[str, Any]:
        if rule.priority is None:
            # the kernel would pick one, and the rule could not be found again
            raise ValueError(f"rule {rule} has no preference: use number_rules()")
        kw: dict[str, Any] = {"family": rule.family, "action": rule.action,
                              "priority": rule.priority, "protocol": rule.protocol,
                              "tos": rule.tos,
                              "flags": FIB_RULE_INVERT if rule.invert else 0}
        if rule.action == FR_ACT_TO_TBL and not rule.l3mdev:
            kw["table"] = rule.table
        for key, net in (("src", rule.src), ("dst", rule.dst)):
            if net is not None:
                kw.update({key: str(net.network_address), f"{key}_len": net.prefixlen})
        optional = {"goto": rule.goto, "fwmark": rule.fwmark, "fwmask": rule.fwmask,
                    "iifname": rule.iif, "oifname": rule.oif,
                    "suppress_prefixlen": rule.suppress_prefixlength,
                    "ip_proto": rule.ipproto}
        kw.update({key: value for key, value in optional.items() if value is not None})
        if rule.l3mdev:
            kw["l3mdev"] = 1
        for key, span in (("sport_range", rule.sport), ("dport_range", rule.dport)):
            if span is not None:
                kw[key] = f"{span[0]}:{span[1]}"
        if rule.uidrange is not None:
            kw["uid_range"] = f"{rule.uidrange[0]}:{rule.uidrange[1]}"
        return kw

    # -- all three --

    async def clean_start(self, addrs: Iterable[VirtualAddress],
                          routes: Iterable[VirtualRoute], rules: Iterable[VirtualRule]) -> None:
        """Remove configured objects an unclean exit left behind, as keepalived does
        at startup: rules, then routes, then addresses; nothing else is touched."""
        await self.remove_rules(rules)
        await self.remove_routes(routes)
        await self.remove_addresses(addrs)

    # -- links --

    async def interface_addresses(self, ifindex: int, version: int) -> list[IPAddress]:
        """The addresses of one IP version on a link, primary ones first."""
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        primary: list[IPAddress] = []
        secondary: list[IPAddress] = []
        for msg in await self.request("addr", "dump", family=family, index=ifindex):
            addr = ip_address(msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS"))
            # IPv6 temporary (privacy) addresses share the bit, and go last too
            (secondary if msg["flags"] & IFA_F_SECONDARY else primary).append(addr)
        return primary + secondary

    async def link_state(self, ifname: str) -> LinkState:
        try:
            links = await self.request("link", "get", ifname=ifname)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                self._indexes.pop(ifname, None)
            raise KernelError(f"cannot read link {ifname}: {os.strerror(e.code)}",
                              e.code) from None
        return self._learn(LinkState.from_message(links[0]))

    async def watch_links(self) -> AsyncIterator[LinkState]:
        """Every link's state now, then every RTM_NEWLINK/RTM_DELLINK.

        The snapshot is read after subscribing, so no change can fall between
        it and the events; a state may therefore repeat, as may events the
        engine does not care about.  Iteration ends when the Kernel is closed;
        if the kernel drops events (KernelError), watch again.
        """
        sock = self.open_socket(RTMGRP_LINK)
        self.watching(sock)
        try:
            await sock.bind()
            for msg in await self.request("link", "dump"):
                yield self._learn(LinkState.from_message(msg))
            while True:
                async for msg in sock.get():
                    # bridge port events repeat the link's own, in family AF_BRIDGE
                    if msg.get("family", 0) == socket.AF_UNSPEC and "index" in msg:
                        yield self._learn(LinkState.from_message(msg))
        except (NetlinkError, OSError) as e:
            if self.unwatch(sock):     # not closed by us: events were lost
                code = getattr(e, "code", None) or e.errno or 0
                raise KernelError(f"link events stopped: {os.strerror(code)}", code) from None
        finally:
            self.unwatch(sock)
            sock.close()
