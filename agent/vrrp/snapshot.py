"""The visible state of the VRRP process, as one JSON-able dict.

``vrrp_snapshot(runtime)`` is what the control socket answers under "vrrp",
what Ansible facts and ``status`` read, and what ``vrrp/dumps.py`` turns into
keepalived 2.2.7's keepalived.data / .stats / .json files.  Only str, int,
float, bool, None, list and dict appear in it; times are Unix epoch seconds.
docs/control-socket.md describes every field.

Three kinds of values, kept apart on purpose:

- settings: the configuration as read, with keepalived 2.2.7's defaults where
  a keyword is absent (``global``, and an instance's timers and options);
- state: what the agent is doing now (states, priorities, addresses set,
  counters, links);
- sync groups and the tracked scripts, files and processes are added by the
  VRRP process (agent/vrrp/main.py), which runs them; SNMP and DBus: the agent
  has none yet.

The per-instance part is a plain function of a ``Running`` (or any object
with the same attributes) and the wall-clock offset, so it can be tested
without a network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any

from ..config.model import Node
from ..core.global_dump import global_snapshot as _global_snapshot
from . import engine as e
from .firewall import TABLE as FIREWALL_TABLE
from .kernel import (
    FR_ACT_GOTO,
    FR_ACT_NOP,
    FR_ACT_TO_TBL,
    IFA_F_NODAD,
    IPROUTE2_DIR,
    RT_TABLE_MAIN,
    RTN_UNICAST,
    KernelError,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
)
from .track import INTERFACE, Value, evaluate
from .transport import RX_BUFFER
from .vmac import vrrp_mac

if TYPE_CHECKING:
    from .runtime import Running, VrrpRuntime

SCHEMA_VERSION = 1
FIREWALL_CHAIN_PRIORITY = -1    # the hook priority of firewall.py's chains
PARAMETER_UNSET = 0xFFFFFFFF    # keepalived's "not set" for unsigned settings

IPAddress = IPv4Address | IPv6Address


# -- the whole process -----------------------------------------------------------

async def vrrp_snapshot(runtime: VrrpRuntime) -> dict[str, Any]:
    """Everything the VRRP process shows: settings, instances, sockets, links."""
    offset = time.time() - asyncio.get_running_loop().time()
    glob = global_snapshot(runtime.config, firewall=runtime.firewall is not None)
    nodes = instance_nodes(runtime.config)
    runs = list(runtime.instances)
    sockets, socket_of = sockets_snapshot(runs)
    instances = [
        instance_snapshot(run, offset, node=nodes.get(run.spec.cfg.name), glob=glob,
                          link_up=runtime._link_up, firewall=runtime.firewall is not None,
                          socket_index=socket_of[id(run.sock)],
                          tracker_values=runtime.tracker_values)
        for run in runs]
    return {
        "schema_version": SCHEMA_VERSION,
        "pid": os.getpid(),
        "time": time.time(),
        "global": glob,
        "instances": instances,
        "sockets": sockets,
        "sync_groups": [],
        "scripts": [],
        "track_files": [],
        "interfaces": await interfaces_snapshot(runtime.kernel, runs, runtime._link_up),
    }


def instance_nodes(root: Node | None) -> dict[str, Node]:
    """The vrrp_instance blocks by name."""
    return {node.head: node for node in root.blocks("vrrp_instance")} if root else {}


# -- global_defs -------------------------------------------------------------------

def global_snapshot(root: Node | None, firewall: bool = False) -> dict[str, Any]:
    """The global settings keepalived's dumps print (core/global_dump.py); ``firewall``:
    the agent's own accept-mode firewall is on, its table is named."""
    return _global_snapshot(root, FIREWALL_TABLE if firewall else None,
                            FIREWALL_CHAIN_PRIORITY)


# -- one instance ------------------------------------------------------------------

def instance_snapshot(run: Running, offset: float, *, node: Node | None = None,
                      glob: dict[str, Any] | None = None,
                      link_up: dict[str, bool] | None = None, firewall: bool = False,
                      socket_index: int | None = None,
                      tracker_values: dict[tuple[str, str], Value] | None = None
                      ) -> dict[str, Any]:
    """One instance; ``offset`` turns loop time into epoch time (time.time() - loop.time()).

    ``node`` is the instance's vrrp_instance block (for the options the
    runtime does not carry), ``glob`` the global snapshot, ``link_up`` the
    runtime's link states, ``tracker_values`` its scripts', files' and
    processes' states.
    """
    spec, eng = run.spec, run.engine
    cfg = eng.cfg
    glob = glob or {}
    link_up = link_up or {}
    values = node.values if node is not None else {}
    unicast = cfg.unicast
    transitions = [{"time": _transition_time(record, offset), "from": record[1].name,
                    "to": record[2].name} for record in run.transitions]
    nftable = firewall and not spec.accept and eng.vips_set
    return {
        "name": cfg.name,
        "vrid": cfg.vrid,
        "interface": spec.ifname,
        "ifindex": getattr(run.sock, "ifindex", None),
        "vmac": _vmac(run, link_up),
        "use_vmac_addr": bool(spec.vmacs and spec.vmacs.use_vmac_addr),
        "family": cfg.family,
        "version": cfg.version,
        "state": eng.state.name,
        # the engine goes to the state it wants at once
        "want_state": eng.state.name,
        "initial_state": "MASTER" if cfg.initial_master else "BACKUP",
        "base_priority": eng.base_priority,
        "configured_priority": spec.cfg.priority,
        "priority_override": run.priority_override,
        "force_backup": eng.held,
        "effective_priority": eng.effective_priority,
        "total_priority": _total_priority(run, link_up, tracker_values or {}),
        "master_address": _str(eng.master_source),
        "master_priority": eng.master_priority,
        "master_advert_interval": eng.master_adver_int_us / e.US,
        "source_address": _str(cfg.source),
        "source_from_config": spec.source_configured is not None,
        "multicast_group": None if unicast else str(spec.group),
        "unicast": unicast,
        "unicast_peers": [{"address": str(p.address), "min_ttl": p.min_ttl,
                           "max_ttl": p.max_ttl} for p in cfg.peers],
        "unicast_ttl": spec.unicast_ttl if unicast else None,
        "check_unicast_src": cfg.check_unicast_src,
        "unicast_checksum_compat": _checksum_compat(eng),
        "advert_interval": cfg.advert_int_us / e.US,
        "master_down_interval": eng.master_down_us() / e.US,
        "preempt": not cfg.nopreempt,
        "nopreempt": cfg.nopreempt,
        "preempt_delay": cfg.preempt_delay_us / e.US,
        "accept": spec.accept,
        "strict_mode": _strict(values, glob),
        "dont_track_primary": bool(values.get("dont_track_primary")),
        "skip_check_adv_addr": cfg.skip_check_adv_addr,
        "lower_prio_no_advert": cfg.lower_prio_no_advert,
        "higher_prio_send_advert": cfg.higher_prio_send_advert,
        "down_timer_adverts": cfg.down_timer_adverts,
        "garp_master_delay": cfg.garp_delay_us / e.US,
        "garp_master_repeat": cfg.garp_repeat,
        "garp_master_refresh": cfg.garp_refresh_us / e.US,
        "garp_master_refresh_repeat": cfg.garp_refresh_repeat,
        "garp_lower_prio_delay": cfg.garp_lower_prio_delay_us / e.US,
        "garp_lower_prio_repeat": cfg.garp_lower_prio_repeat,
        "auth_type": {0: "none", 1: "PASS", 2: "AH"}[cfg.auth_type],
        "promote_secondaries": bool(values.get("promote_secondaries")),
        "notify_deleted": values.get("notify_deleted") is not None,
        "notify_priority_changes": bool(values.get(
            "notify_priority_changes", glob.get("vrrp_notify_priority_changes", False))),
        # keepalived's resolution: the instance's own, else smtp_alert_vrrp, else smtp_alert
        "smtp_alert": bool(next((v for v in (values.get("smtp_alert"),
                                             glob.get("smtp_alert_vrrp"), glob.get("smtp_alert"))
                                 if v is not None), False)),
        "flags": _flags(run, values),
        "vips": [format_address(a, w, eng.vips_set, nftable)
                 for a, w in zip(run.vips, spec.vips, strict=False)],
        "excluded_vips": [format_address(a, w, eng.vips_set, nftable)
                          for a, w in zip(run.evips, spec.excluded_vips, strict=False)],
        "routes": [format_route(r, w) for r, w in zip(run.routes, spec.routes, strict=False)],
        "rules": [format_rule(r, w) for r, w in zip(run.rules, spec.rules, strict=False)],
        "vips_set": eng.vips_set,
        "trackers": {
            "interfaces": _tracked_interfaces(run, values, link_up),
            "scripts": [], "files": [], "processes": [],
        },
        "faults": sorted(eng.fault_reasons),
        "config_faults": 0,             # a config fault stops the start: none while running
        "last_transition": transitions[-1]["time"] if transitions else None,
        "transitions": transitions,
        "next_timer": None if eng.deadline is None else _epoch(eng.deadline, offset),
        "socket": socket_index,
        "stats": dataclasses.asdict(eng.stats),
    }


def _vmac(run: Running, link_up: dict[str, bool]) -> dict[str, Any] | None:
    """The instance's VMAC as keepalived's dumps show it ("Use VMAC, i/f name ...",
    vmac_ifname in the JSON); None without use_vmac."""
    vmac = run.spec.vmacs.vmac if run.spec.vmacs else None
    if vmac is None:
        return None
    return {"ifname": vmac.ifname, "base": vmac.base, "mac": vmac.mac.hex(":"),
            "mac_configured": vmac.mac != vrrp_mac(vmac.family, vmac.vrid),
            "up": link_up.get(vmac.ifname, False), "xmit_base": vmac.xmit_base}


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)


def _transition_time(record: tuple, offset: float) -> float:
    """When a transition happened, in epoch seconds: the wall clock the runtime took
    then (``TransitionRecord.wall``).  Recomputing it from the loop time and the
    current offset would give a different answer at every read; records without one
    (made by hand) have only that."""
    wall = getattr(record, "wall", None)
    return round(wall, 6) if wall is not None else _epoch(record[0], offset)


def _epoch(loop_time: float, offset: float) -> float:
    # microseconds, as keepalived keeps them; more digits would only be noise
    return round(loop_time + offset, 6)


def _total_priority(run: Running, link_up: dict[str, bool],
                    tracker_values: dict[tuple[str, str], Value]) -> int:
    """keepalived's total priority: base plus the weights that apply, unclamped."""
    values = {**tracker_values, **{(INTERFACE, name): up for name, up in link_up.items()}}
    return run.engine.base_priority + evaluate(run.spec.tracks, values).delta


def _checksum_compat(eng: e.Instance) -> str:
    """keepalived's unicast checksum compatibility mode names."""
    configured = eng.cfg.old_unicast_checksum
    if configured in ("config", "never"):
        return configured
    return "auto" if eng.unicast_checksum_adopted else "no"


def _strict(values: dict[str, Any], glob: dict[str, Any]) -> bool:
    strict = values.get("strict_mode")
    return bool(glob.get("vrrp_strict", False)) if strict is None else bool(strict)


_UNICAST_KEYWORDS = ("unicast_peer", "unicast_src_ip", "unicast_fault_no_peer",
                     "check_unicast_src", "old_unicast_checksum")


def _flags(run: Running, values: dict[str, Any]) -> list[str]:
    """The instance flags keepalived keeps (its ``Flags:`` line is "none" without any)."""
    cfg = run.engine.cfg
    present = {
        "unicast_configured": any(k in values for k in _UNICAST_KEYWORDS) or cfg.unicast,
        "unicast": cfg.unicast,
        "unicast_fault_no_peer": "unicast_fault_no_peer" in values,
        "dont_track_primary": bool(values.get("dont_track_primary")),
        "skip_check_adv_addr": cfg.skip_check_adv_addr,
        "source_from_config": run.spec.source_configured is not None,
        "track_src_ip": bool(values.get("track_src_ip")),
        "check_unicast_src": cfg.check_unicast_src,
        "promote_secondaries": bool(values.get("promote_secondaries")),
        "nopreempt": cfg.nopreempt,
    }
    return [name for name, on in present.items() if on]


def _tracked_interfaces(run: Running, values: dict[str, Any],
                        link_up: dict[str, bool]) -> list[dict[str, Any]]:
    """Every link the instance follows; ``kind`` says why it is followed."""
    explicit = {t[0] for t in values.get("track_interface") or ()}
    vmac = run.spec.vmacs.vmac if run.spec.vmacs else None
    # keepalived's instance interface is its VMAC, and the configured one too
    own = {run.spec.ifname, vmac.ifname if vmac else run.spec.ifname}
    out, seen = [], set()
    for tracked in _unique_tracked(run):
        if tracked.name in seen:
            continue
        seen.add(tracked.name)
        if tracked.name in explicit:
            kind = "track_interface"
        elif tracked.name in own:
            kind = "interface"
        else:
            kind = "virtual"            # named by a VIP, route or rule
        out.append({"name": tracked.name, "weight": tracked.weight,
                    "reverse": tracked.reverse, "kind": kind,
                    "up": link_up.get(tracked.name)})
    return out


# -- sockets -------------------------------------------------------------------------

def sockets_snapshot(runs: Iterable[Running]) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The shared VRRP sockets (one per interface and family), and each one's index by id()."""
    out: list[dict[str, Any]] = []
    index: dict[int, int] = {}
    for run in runs:
        sock = run.sock
        if id(sock) not in index:
            index[id(sock)] = len(out)
            rx = list(getattr(sock, "rx", ()))
            tx = getattr(sock, "tx", None)
            out.append({
                "interface": sock.ifname,
                "ifindex": sock.ifindex,
                "family": sock.family,
                # the second receive socket, when there is one, reads IPSEC-AH
                "protocols": ["VRRP", "AH"][:max(1, len(rx))],
                "fd_in": [_fileno(s) for s in rx],
                "fd_out": _fileno(tx) if tx is not None else None,
                "rx_buf_size": RX_BUFFER,
                "multicast_groups": [],
                "instances": [],
            })
        entry = out[index[id(sock)]]
        cfg = run.engine.cfg
        entry["instances"].append({"name": cfg.name, "vrid": cfg.vrid, "unicast": cfg.unicast})
        if not cfg.unicast and str(run.spec.group) not in entry["multicast_groups"]:
            entry["multicast_groups"].append(str(run.spec.group))
    return out, index


def _fileno(sock: Any) -> int:
    try:
        return sock.fileno()
    except OSError:
        return -1


# -- interfaces ----------------------------------------------------------------------

def interface_names(runs: Iterable[Running], link_up: Iterable[str] = ()) -> list[str]:
    """The links the runtime uses, in the order instances name them."""
    names: dict[str, None] = {}
    for run in runs:
        names[run.spec.ifname] = None
        for tracked in _unique_tracked(run):
            names[tracked.name] = None
    for name in link_up:
        names[name] = None
    return list(names)


async def interfaces_snapshot(kernel: Any, runs: Sequence[Running],
                              link_up: dict[str, bool]) -> list[dict[str, Any]]:
    """What the kernel says of each link the runtime uses."""
    out = []
    for name in interface_names(runs, link_up):
        try:
            link = await kernel.link_state(name)
        except KernelError:
            out.append(interface_snapshot(name, None, [], [], runs))
            continue
        try:
            ipv4 = await kernel.interface_addresses(link.ifindex, 4)
            ipv6 = await kernel.interface_addresses(link.ifindex, 6)
        except Exception:  # noqa: BLE001 - a link going away must not spoil the answer
            ipv4, ipv6 = [], []
        out.append(interface_snapshot(name, link, ipv4, ipv6, runs))
    return out


def interface_snapshot(name: str, link: LinkState | None, ipv4: Sequence[IPAddress],
                       ipv6: Sequence[IPAddress], runs: Iterable[Running]) -> dict[str, Any]:
    """One link: ``link`` None when it does not exist (any more)."""
    # link-local first, as the source of IPv6 adverts is chosen
    ipv6 = sorted(ipv6, key=lambda a: not a.is_link_local)
    return {
        "name": name,
        "index": link.ifindex if link else 0,
        "exists": link is not None,
        "up": link.up if link else False,
        "mac": ":".join(f"{b:02x}" for b in link.mac) if link and link.mac else None,
        "mtu": link.mtu if link else None,
        "ipv4": [str(a) for a in ipv4],
        "ipv6": [str(a) for a in ipv6],
        "ours": sorted({str(ip_address(a.address.ip)) for run in runs
                        for a in (*run.vips, *run.evips) if a.ifname == name}),
        "tracking": [{"instance": run.spec.cfg.name, "weight": t.weight, "reverse": t.reverse}
                     for run in runs for t in _unique_tracked(run) if t.name == name],
    }


def _unique_tracked(run: Running) -> list[Any]:
    """The interfaces an instance tracks, each once."""
    seen: dict[str, Any] = {}
    for tracked in run.spec.tracks:
        if tracked.kind == INTERFACE:
            seen.setdefault(tracked.name, tracked)
    return list(seen.values())


# -- keepalived's one-line forms of addresses, routes and rules ------------------------

_DEFAULT_SCOPES = {0: "global", 255: "nowhere", 254: "host", 253: "link", 200: "site"}
_ROUTE_TYPE_NAMES = {2: "local", 10: "nat", 3: "broadcast", 4: "anycast", 5: "multicast",
                     8: "prohibit", 7: "unreachable", 6: "blackhole", 11: "xresolve",
                     1: "unicast", 9: "throw"}
_PREF_NAMES = {3: "low", 0: "medium", 1: "high"}
# the metrics keepalived prints, in its order, with whether they can be locked
_ROUTE_METRICS = (("RTAX_FEATURES", "features", False), ("RTAX_MTU", "mtu", True),
                  ("RTAX_WINDOW", "window", False), ("RTAX_SSTHRESH", "ssthresh", True),
                  ("RTAX_CWND", "cwnd", True), ("RTAX_ADVMSS", "advmss", True),
                  ("RTAX_REORDERING", "reordering", True), ("RTAX_HOPLIMIT", "hoplimit", False),
                  ("RTAX_INITCWND", "initcwnd", False), ("RTAX_INITRWND", "initrwnd", False),
                  ("RTAX_QUICKACK", "quickack", False))


def scope_name(scope: int) -> str:
    """A scope number as keepalived names it: /etc/iproute2/rt_scopes, then its defaults."""
    try:
        lines = (IPROUTE2_DIR / "rt_scopes").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and not fields[0].startswith("#"):
            try:
                if int(fields[0], 0) == scope:
                    return fields[1]
            except ValueError:
                continue
    return _DEFAULT_SCOPES.get(scope, str(scope))


def _addr(value: Any) -> str:
    """keepalived's ipaddresstos: the prefix length only when it is not a host's."""
    net = getattr(value, "network", value)
    ip = getattr(value, "ip", getattr(value, "network_address", value))
    full = 32 if ip.version == 4 else 128
    return str(ip) if net.prefixlen == full else f"{ip}/{net.prefixlen}"


def format_address(addr: VirtualAddress, words: Sequence[str] = (), is_set: bool = False,
                   nftable_set: bool = False) -> str:
    """A VIP as keepalived 2.2.7 prints it; ``words`` is its config line."""
    parts = [_addr(addr.address)]
    if addr.broadcast is not None:
        parts.append(f"brd {addr.broadcast}")
    parts.append(f"dev {addr.ifname}")
    if addr.use_vmac:
        parts.append("use_vmac")
    parts.append(f"scope {scope_name(addr.scope)}")
    if addr.label:
        parts.append(f"label {addr.label}")
    if addr.peer is not None:
        parts.append(f"peer {addr.peer}/{addr.address.network.prefixlen}")
    if addr.flags & 0x10:
        parts.append("home")
    if "-nodad" in words or (addr.address.version == 6 and not addr.flags & IFA_F_NODAD):
        parts.append("-nodad")
    for name, bit in (("mngtmpaddr", 0x100), ("noprefixroute", 0x200), ("autojoin", 0x400)):
        if addr.flags & bit:
            parts.append(name)
    if addr.no_track:
        parts.append("no_track")
    if addr.address.version == 6:
        lft = addr.preferred_lft
        parts.append("deprecated" if lft == 0 else "preferred_lft forever" if lft is None
                     else f"preferred_lft {lft}")
    if is_set:
        parts.append("set")
    if nftable_set:
        parts.append("nftable_set")
    return " ".join(parts)


def format_route(route: VirtualRoute, words: Sequence[str] = ()) -> str:
    """A virtual route as keepalived 2.2.7 prints it; ``words`` is its config line."""
    parts = [route.mode]
    if route.type != RTN_UNICAST:
        parts.append(_ROUTE_TYPE_NAMES.get(route.type, str(route.type)))
    parts.append(_addr(route.dst))
    if route.from_prefix is not None:
        parts.append(f"from {_addr(route.from_prefix)}")
    if route.src is not None:
        parts.append(f"src {route.src}")
    if "tos" in words or "dsfield" in words:
        parts.append(f"tos {route.tos}")
    if route.via is not None:
        parts.append(f"via {'inet6' if route.via.version == 6 else 'inet'} {route.via}")
    if route.dev:
        parts.append(f"dev {route.dev}")
    if route.table != RT_TABLE_MAIN:
        parts.append(f"table {route.table}")
    # a tracked route always carries keepalived's protocol; an untracked one only if given
    if not route.no_track or "protocol" in words:
        parts.append(f"proto {route.protocol}")
    if route.scope is not None:
        parts.append(f"scope {route.scope}")
    if route.metric is not None:
        parts.append(f"metric {route.metric}")
    if route.onlink and route.dst.version == 4:
        parts.append("onlink")
    parts += _route_metrics(route)
    if route.pref is not None:
        parts.append(f"pref {_PREF_NAMES.get(route.pref, 'unknown')}")
    fastopen = dict(route.metrics).get("RTAX_FASTOPEN_NO_COOKIE")
    if fastopen is not None:
        parts.append(f"fastopen_no_cookie {fastopen}")
    # keepalived cannot follow a route without an interface, so it does not track it
    if route.no_track or not route.dev:
        parts.append("no_track")
    return " ".join(parts)


def _route_metrics(route: VirtualRoute) -> list[str]:
    metrics = dict(route.metrics)
    out = []
    for rtax, word, lockable in _ROUTE_METRICS:
        if rtax not in metrics:
            continue
        if rtax == "RTAX_FEATURES":
            out.append("features ecn")
        else:
            lock = "lock " if lockable and rtax in route.locked else ""
            out.append(f"{word} {lock}{metrics[rtax]}")
    return out


def format_rule(rule: VirtualRule, words: Sequence[str] = ()) -> str:
    """A virtual rule as keepalived 2.2.7 prints it; ``words`` is its config line."""
    v6 = rule.family == socket.AF_INET6
    whole = "::/0" if v6 else "0.0.0.0/0"
    # "from all" written out is kept by keepalived as a zero-length prefix
    src = _addr(rule.src) if rule.src is not None else whole if "from" in words else None
    dst = _addr(rule.dst) if rule.dst is not None else whole if "to" in words else None
    parts = ["inet6"] if src is None and dst is None and v6 else []
    if rule.invert:
        parts.append("not")
    parts.append(f"from {src or 'all'}")
    if dst is not None:
        parts.append(f"to {dst}")
    if rule.priority is not None:
        parts.append(f"priority {rule.priority}")
    parts.append(f"tos {rule.tos:#x}" if rule.tos else "tos 0x0")
    if rule.fwmark is not None or rule.fwmask is not None:
        mark = f"fwmark {rule.fwmark or 0:#x}" if rule.fwmark else "fwmark 0x0"
        if rule.fwmask is not None and rule.fwmask != 0xFFFFFFFF:
            mark += f"/{rule.fwmask:#x}"
        parts.append(mark)
    if rule.iif:
        parts.append(f"iif {rule.iif}")
    if rule.oif:
        parts.append(f"oif {rule.oif}")
    if rule.suppress_prefixlength is not None:
        parts.append(f"suppress_prefixlen {rule.suppress_prefixlength}")
    if rule.uidrange is not None:
        parts.append(f"uidrange {rule.uidrange[0]}-{rule.uidrange[1]}")
    if rule.l3mdev:
        parts.append("l3mdev")
    if not rule.no_track or "protocol" in words:
        parts.append(f"protocol {rule.protocol}")
    if rule.ipproto is not None:
        parts.append(f"ipproto {rule.ipproto}")
    for word, span in (("sport", rule.sport), ("dport", rule.dport)):
        if span is not None:
            parts.append(f"{word} {span[0]}-{span[1]}")
    parts.append(_rule_action(rule))
    if rule.no_track:
        parts.append("no_track")
    return " ".join(parts)


def _rule_action(rule: VirtualRule) -> str:
    if rule.action == FR_ACT_TO_TBL:
        return f"lookup {rule.table}"
    if rule.action == FR_ACT_GOTO:
        return f"goto {rule.goto}"
    if rule.action == FR_ACT_NOP:
        return "nop"
    # blackhole, unreachable and prohibit have the numbers of the route types
    return f"type {_ROUTE_TYPE_NAMES.get(rule.action, str(rule.action))}"


__all__ = [
    "PARAMETER_UNSET", "SCHEMA_VERSION", "format_address", "format_route", "format_rule",
    "global_snapshot", "instance_snapshot", "interface_snapshot", "interfaces_snapshot",
    "sockets_snapshot", "vrrp_snapshot",
]
