"""From the configuration model to what the VRRP runtime runs.

Everything keepalived derives from a ``vrrp_instance`` block and the
``global_defs`` defaults is worked out here, once, so that the engine gets
plain numbers and the adapters get plain names and addresses.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from ..config.model import Node
from ..host.scripts import ConfigScripts, config_scripts
from .engine import US, InstanceConfig, Peer, parse_address
from .kernel import VirtualAddress, VirtualRoute, VirtualRule, word_after
from .static import StaticConfig, garp_intervals
from .track import FILE, INTERFACE, PROCESS, SCRIPT, Track
from .vmac import InstanceVmacs

IPAddress = IPv4Address | IPv6Address

AUTH_TYPES = {"PASS": 1, "AH": 2}


@dataclass(frozen=True)
class InstanceSpec:
    """An instance with what its adapters need beside the engine's settings."""

    cfg: InstanceConfig
    ifname: str
    vips: tuple[tuple[str, ...], ...]
    excluded_vips: tuple[tuple[str, ...], ...]
    routes: tuple[tuple[str, ...], ...]
    rules: tuple[tuple[str, ...], ...]
    group: IPAddress                        # multicast destination
    source_configured: IPAddress | None     # mcast_src_ip / unicast_src_ip
    unicast_ttl: int
    tracks: tuple[Track, ...]               # the instance's own interface first, unless untracked
    sync_group: str | None
    garp_interval_us: int
    gna_interval_us: int
    accept: bool                            # False: a master drops traffic for its VIPs
    # use_vmac: which VMACs it has and where its VIPs go, from the links that
    # exist; set by the runtime (see with_vmacs), so a reload sees a change
    vmacs: InstanceVmacs | None = None


class BuildError(ValueError):
    pass


def _us(seconds: float | None) -> int:
    return round((seconds or 0) * US)


def refused_scripts(scripts: ConfigScripts) -> set[str]:
    """vrrp_scripts the security check disabled: keepalived tracks them nowhere."""
    return {name for kind, name, _ in scripts.disabled
            if kind == "vrrp_script" and name is not None}


def build_checked(root: Node) -> tuple[list[InstanceSpec], ConfigScripts]:
    """The instances of a configuration, with its scripts checked (``BuildError`` when
    one cannot run): what the VRRP process runs, and what a reload is checked with."""
    scripts = config_scripts(root)
    return build_instances(root, refused_scripts=refused_scripts(scripts)), scripts


def build_instances(root: Node, refused_scripts: Collection[str] = ()) -> list[InstanceSpec]:
    """The runnable instances of a checked configuration; ``refused_scripts`` are
    vrrp_scripts the script security check disabled (tracked nowhere)."""
    glob = root.blocks("global_defs")
    g = glob[0] if glob else None

    def gget(name: str) -> object:
        if g is not None:
            return g.get(name)
        from ..config.keywords_vrrp import GLOBAL_DEFS
        return GLOBAL_DEFS.keyword(name).default

    groups = sync_groups(root)
    member_of = {name: sg for sg, members in groups.items() for name in members}
    trackables = _trackables(root)
    for name in refused_scripts:
        trackables[SCRIPT].pop(name, None)
    static_links = StaticConfig.from_root(root).tracked_links()
    garp = garp_intervals(root)
    specs = []
    for node in root.blocks("vrrp_instance"):
        spec = _build_one(node, gget, member_of.get(node.head), root, trackables)
        # the links of static entries whose track_group names the instance: weight 0
        links = [Track(INTERFACE, link, 0) for link in static_links.get(node.head, ())]
        garp_us, gna_us = garp[spec.ifname]
        specs.append(replace(spec, tracks=tuple(_unique([*spec.tracks, *links])),
                             garp_interval_us=garp_us, gna_interval_us=gna_us))
    return specs


def with_vmacs(spec: InstanceSpec, vmacs: InstanceVmacs | None) -> InstanceSpec:
    """The instance with its VMACs (``plan_vmacs``), tracked as keepalived tracks them:
    its own right after its interface, address VMACs after that."""
    if vmacs is None:
        return spec
    tracks = list(spec.tracks)
    primary = tracks[:1] if tracks[:1] == [Track(INTERFACE, spec.ifname, 0)] else []
    vmac_tracks = [Track(INTERFACE, name, 0) for name in vmacs.tracked]
    tracks = _unique([*primary, *vmac_tracks, *tracks[len(primary):]])
    return replace(spec, vmacs=vmacs, tracks=tuple(tracks))


def sync_groups(root: Node) -> dict[str, tuple[str, ...]]:
    """Each vrrp_sync_group's members, as keepalived settles them: an instance that
    does not exist, or is already in another group, is left out (the config check
    says so); a group left without members is dropped."""
    instances = {n.head for n in root.blocks("vrrp_instance")}
    taken: set[str] = set()
    groups: dict[str, tuple[str, ...]] = {}
    for sg in root.blocks("vrrp_sync_group"):
        members = []
        for name in (w for words in sg.get("group") or () for w in words):
            if name in instances and name not in taken:
                taken.add(name)
                members.append(name)
        if members:
            groups[sg.head] = tuple(members)
    return groups


def _build_one(node: Node, gget, sync_group: str | None, root: Node,  # noqa: ANN001 - lookup
               trackables: dict[str, dict[str, tuple[int, bool]]]) -> InstanceSpec:
    name = node.head
    vips = tuple(node.get("virtual_ipaddress") or ())
    evips = tuple(node.get("virtual_ipaddress_excluded") or ())
    if not vips and not evips:
        raise BuildError(f"({name}) has no virtual_ipaddress")
    first = (vips or evips)[0]
    family = 6 if ":" in first[0] else 4
    # Addresses of the other family, and those beyond what fits in an advert
    # (the address count is one byte; IPv6 is bound by a 1500-byte frame),
    # are not advertised but still added, as keepalived does.
    same = tuple(v for v in vips if (":" in v[0]) == (family == 6))
    room = 89 if family == 6 else 255
    evips = tuple(v for v in vips if v not in same[:room]) + evips
    vips = same[:room]
    version = 3 if family == 6 else (node.get("version") or gget("vrrp_version") or 2)
    ifname = node.get("interface") or word_after(first, "dev")
    if not ifname:
        raise BuildError(f"({name}) has no interface")
    auth = node.blocks("authentication")
    auth_type = AUTH_TYPES.get(auth[0].get("auth_type"), 0) if auth and version == 2 else 0
    password = (auth[0].get("auth_pass") or "").encode() if auth_type else b""
    peers = tuple(Peer(ip_address(a), lo, hi) for a, lo, hi in node.get("unicast_peer") or ())
    advert_int = node.get("advert_int")
    if version == 2:
        advert_int = max(1, round(advert_int))     # v2 carries whole seconds
    source = node.get("unicast_src_ip") if peers else node.get("mcast_src_ip")
    # keepalived: state MASTER without a priority makes the address owner, and
    # an owner without a state starts as MASTER.
    state = node.values.get("state")
    priority = node.values.get("priority") or (255 if state == "MASTER" else 100)
    group_node = next((sg for sg in root.blocks("vrrp_sync_group") if sg.head == sync_group),
                      None)
    tracks = _tracks(node, ifname, priority, group_node, root, trackables)
    tracks = _implied_links(node, ifname, tracks, (*vips, *evips))
    initial_master = state == "MASTER" or (state is None and priority == 255)

    def inst(kw: str, glob: str) -> object:
        value = node.get(kw)
        return gget(glob) if value is None else value

    cfg = InstanceConfig(
        name=name,
        vrid=node.get("virtual_router_id"),
        family=family,
        version=version,
        priority=priority,
        advert_int_us=_us(advert_int),
        initial_master=initial_master,
        addresses=tuple(parse_address(v[0]) for v in vips),
        source=ip_address(source) if source else None,
        peers=peers,
        check_unicast_src=bool(node.get("check_unicast_src") or gget("vrrp_check_unicast_src")),
        auth_type=auth_type,
        auth_pass=password[:8].ljust(8, b"\0") if auth_type else b"",
        old_unicast_checksum=node.get("old_unicast_checksum"),
        # keepalived clears both with state MASTER, and nopreempt for an owner.
        nopreempt=bool(node.get("nopreempt")) and not initial_master and priority != 255,
        preempt_delay_us=0 if initial_master or node.get("nopreempt")
        else _us(node.get("preempt_delay")),
        skip_check_adv_addr=bool(inst("skip_check_adv_addr", "vrrp_skip_check_adv_addr")),
        higher_prio_send_advert=bool(inst("higher_prio_send_advert",
                                          "vrrp_higher_prio_send_advert")),
        lower_prio_no_advert=bool(inst("lower_prio_no_advert", "vrrp_lower_prio_no_advert")),
        down_timer_adverts=inst("down_timer_adverts", "vrrp_down_timer_adverts") or 3,
        garp_repeat=inst("garp_master_repeat", "vrrp_garp_master_repeat") or 5,
        garp_delay_us=_us(inst("garp_master_delay", "vrrp_garp_master_delay")),
        garp_refresh_us=_us(inst("garp_master_refresh", "vrrp_garp_master_refresh")),
        garp_refresh_repeat=inst("garp_master_refresh_repeat",
                                 "vrrp_garp_master_refresh_repeat") or 1,
        garp_lower_prio_repeat=_lower_prio(node, gget, "repeat"),
        garp_lower_prio_delay_us=_us(_lower_prio(node, gget, "delay")),
    )
    _check_kernel_objects(node, ifname)
    group = ip_address(gget("vrrp_mcast_group6" if family == 6 else "vrrp_mcast_group4"))
    return InstanceSpec(
        cfg=cfg, ifname=ifname, vips=vips, excluded_vips=evips,
        routes=tuple(node.get("virtual_routes") or ()),
        rules=tuple(node.get("virtual_rules") or ()),
        group=group, source_configured=cfg.source,
        unicast_ttl=node.get("unicast_ttl") if node.get("unicast_ttl") is not None else 255,
        tracks=tuple(tracks), sync_group=sync_group,
        garp_interval_us=0, gna_interval_us=0,     # per interface: see build_instances
        accept=_accept(node, gget, priority, version),
    )


# -- tracking ---------------------------------------------------------------

_TRACK_KEYWORDS = {"track_interface": INTERFACE, "track_script": SCRIPT, "track_file": FILE,
                   "track_process": PROCESS}


def _trackables(root: Node) -> dict[str, dict[str, tuple[int, bool]]]:
    """The objects that can be tracked, by kind and name, with their own weight and
    reverse (what a track line without ``weight`` takes)."""
    out: dict[str, dict[str, tuple[int, bool]]] = {SCRIPT: {}, FILE: {}, PROCESS: {}}
    for kind, block in ((SCRIPT, "vrrp_script"), (FILE, "track_file"),
                        (PROCESS, "vrrp_track_process")):
        for node in root.blocks(block):
            if kind == SCRIPT and not node.get("script"):
                continue            # the config check removes a vrrp_script without a script
            weight, reverse = node.get("weight") or (0, False)
            out[kind][node.head] = (weight or 0, bool(reverse))
    return out


def _track_lines(owner: Node, trackables: dict[str, dict[str, tuple[int, bool]]]) -> list[Track]:
    tracks = []
    for keyword, kind in _TRACK_KEYWORDS.items():
        for name, weight, reverse in owner.get(keyword) or ():
            if kind == INTERFACE:
                tracks.append(Track(kind, name, weight or 0, bool(reverse)))
                continue
            own = trackables[kind].get(name)
            if own is None:
                continue            # not defined: the config check says so
            tracks.append(Track(kind, name, own[0] if weight is None else weight,
                                own[1] if reverse is None else reverse))
    return tracks


def _tracks(node: Node, ifname: str, priority: int, group: Node | None, root: Node,
            trackables: dict[str, dict[str, tuple[int, bool]]]) -> list[Track]:
    """An instance's tracked objects, with keepalived's rules for sync groups and
    address owners (vrrp.c, vrrp_complete_instance and sync_group_tracking_init):
    in a sync group without ``sync_group_tracking_weight``, and for an owner,
    the instance's own weighted objects are dropped (a weighted interface is
    tracked with weight 0 in a group, and a track_file of weight 1 too).  The
    group's objects apply to every member, their weights cleared when a member
    is an address owner."""
    own = _track_lines(node, trackables)
    owner = priority == 255
    unweighted = owner or (group is not None and not group.get("sync_group_tracking_weight"))
    if unweighted:
        kept = []
        for t in own:
            if not t.weight:
                kept.append(t)
            elif t.kind == INTERFACE and not owner:
                kept.append(Track(t.kind, t.name, 0, t.reverse))
            elif t.kind == FILE and t.weight == 1:
                kept.append(Track(t.kind, t.name, 0, t.reverse))
        own = kept
    if group is not None:
        members = [n for n in root.blocks("vrrp_instance")
                   if n.head in {w for words in group.get("group") or () for w in words}]
        has_owner = any((n.values.get("priority") or
                         (255 if n.values.get("state") == "MASTER" else 100)) == 255
                        for n in members)
        for t in _track_lines(group, trackables):
            t = Track(t.kind, t.name, 0, t.reverse) if has_owner else t
            mine = next((i for i, o in enumerate(own) if o.key == t.key), None)
            if mine is None:
                own.append(t)
            elif own[mine].weight:
                own[mine] = t       # tracked by both: the group's weight wins, unless unweighted
    tracks = [t for t in own if not (t.kind == INTERFACE and t.name == ifname)]
    if not node.get("dont_track_primary"):
        tracks.insert(0, Track(INTERFACE, ifname, 0))
    return _unique(tracks)


def _implied_links(node: Node, ifname: str, tracks: list[Track],
                   addresses: tuple[tuple[str, ...], ...]) -> list[Track]:
    """The links that VIPs, routes and rules name are tracked too, unless no_track."""
    tracks = list(tracks)
    for words in (*addresses, *(node.get("virtual_routes") or ()),
                  *(node.get("virtual_rules") or ())):
        if "no_track" in words:
            continue
        for key in ("dev", "iif", "oif"):
            link = word_after(words, key)
            if link and link != ifname and all(t.key != (INTERFACE, link) for t in tracks):
                tracks.append(Track(INTERFACE, link, 0))
    return tracks


def _unique(tracks: list[Track]) -> list[Track]:
    """One entry per object: keepalived does not add an object twice to an instance."""
    seen: set[tuple[str, str]] = set()
    out = []
    for t in tracks:
        if t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


def _strict(node: Node, gget) -> bool:  # noqa: ANN001 - a lookup function
    strict = node.get("strict_mode")
    return bool(gget("vrrp_strict")) if strict is None else bool(strict)


def _lower_prio(node: Node, gget, which: str) -> float:  # noqa: ANN001 - a lookup function
    """garp_lower_prio_delay / _repeat as 2.2.7 settles them (vrrp.c): unset globally,
    they follow vrrp_garp_master_delay / _repeat; strict mode forces 0."""
    if _strict(node, gget):
        return 0
    value = node.get(f"garp_lower_prio_{which}")
    if value is None:
        value = gget(f"vrrp_garp_lower_prio_{which}")
    if value is None:
        value = gget(f"vrrp_garp_master_{which}")
    if value is None:
        value = 5
    return value


def _accept(node: Node, gget, priority: int, version: int) -> bool:  # noqa: ANN001
    """keepalived's default: accept unless strict mode; an owner always accepts."""
    strict = _strict(node, gget)
    if priority == 255:
        return True
    if node.get("no_accept"):
        return False
    if node.get("accept"):
        return not (strict and version == 2)    # RFC 3768 has no accept mode
    return not strict


def _check_kernel_objects(node: Node, ifname: str) -> None:
    """Refuse, with the place in the file, what the kernel adapter cannot carry out."""
    makers = {
        "virtual_ipaddress": lambda w: VirtualAddress.from_words(w, ifname),
        "virtual_ipaddress_excluded": lambda w: VirtualAddress.from_words(w, ifname),
        "virtual_routes": VirtualRoute.from_words,
        "virtual_rules": VirtualRule.from_words,
    }
    for keyword, make in makers.items():
        for words in node.get(keyword) or ():
            try:
                make(words)
            except ValueError as err:
                where = node.value_where.get(keyword) or node.where
                raise BuildError(f"{where}: ({node.head}) {keyword} '{' '.join(words)}': "
                                 f"{err}") from None
