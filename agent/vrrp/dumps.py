"""keepalived 2.2.7's state files, written from a VRRP snapshot (vrrp/snapshot.py).

Pure functions from the snapshot dict to text, so that the same answer the
control socket gives is what lands in the files, and tests need no process:

- ``data_dump``   keepalived.data (SIGUSR1): global definitions, VRRP topology,
  sockpool, interfaces;
- ``parent_dump`` keepalived_parent.data: the global definitions as keepalived's
  parent process prints them;
- ``stats_dump``  keepalived.stats (SIGUSR2, and before clearing on SIGRTMAX-1);
- ``json_dump``   keepalived.json (SIGRTMIN+2), format version 1.

What is printed: every line keepalived 2.2.7 prints for which the snapshot
has the value.  A line whose value we do not have is printed only when
keepalived's "disabled/none" form of it is true of the agent (SNMP, DBus,
SMTP, debounce timers); otherwise it is left out, never made up.  Sections
of facilities the agent does not have yet (sync groups, vrrp_script,
track_file) appear once the snapshot carries them.  Passwords are not in the
snapshot, so the "Password" line and the JSON "auth_data" are not written.

Where the files go (``dump_paths``): keepalived's names under $TMPDIR, or
/tmp.  ``state_dump_file`` (keepalived 2.3.3) places the data files: an
absolute path gives the directory, a name not ending in "/" the file name,
and keepalived_parent.data takes the same name with "_parent" before the
extension.  2.3.3 parses ``stats_dump_file`` and ``json_dump_file`` but still
writes keepalived.stats and keepalived.json under $TMPDIR; we honour them,
with the same rules, because that is what anyone setting them expects.
An agent known by a namespace or an instance adds ".<namespace>_<instance>"
to every file's name (keepalived: with ``data_use_instance``, to the data
files' names only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config.model import Node
from ..core.global_dump import english_time, global_lines, true_false, yes_no
from ..core.paths import AgentKey
from .snapshot import global_snapshot

Snapshot = dict[str, Any]
PARAMETER_UNSET = 0xFFFFFFFF        # keepalived prints this for an unset unsigned setting
STATE_CODES = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}
AUTH_CODES = {"none": 0, "PASS": 1, "AH": 2}


# -- keepalived.data ----------------------------------------------------------------

def data_dump(snap: Snapshot, trackers: Iterable[str] = ()) -> str:
    """keepalived.data as the VRRP process writes it; ``trackers`` are the lines of
    the tracked objects' sections (agent/vrrp/tracking_io.py, ``dump_lines``)."""
    out = global_lines(snap["global"], parent=False)
    if snap.get("instances"):
        out.append("------< VRRP Topology >------")
        for inst in snap["instances"]:
            out += instance_lines(inst, snap.get("sockets", []))
    if snap.get("sockets"):
        out.append("------< VRRP Sockpool >------")
        for sock in snap["sockets"]:
            out += _socket_lines(sock)
    if snap.get("sync_groups"):
        out.append("------< VRRP Sync groups >------")
        for group in snap["sync_groups"]:
            out += _sync_group_lines(group)
    out += trackers
    if snap.get("interfaces"):
        out.append("------< Interfaces >------")
        ours = {a for i in snap["interfaces"] for a in i.get("ours", [])}
        for link in snap["interfaces"]:
            out += _interface_lines(link, ours)
    return _text(out)


def _sync_group_lines(group: dict[str, Any]) -> list[str]:
    out = [f" VRRP Sync Group = {group['name']}, {group['state']}",
           f"   Num member fault {group['member_faults']}, num member init "
           f"{group['member_init']}"]
    if group["members"]:
        out.append("   VRRP member instances :")
        out += [f"     {name}" for name in group["members"]]
    if group.get("tracking_weight"):
        out.append("   sync group tracking weight set")
    out.append(f"   Using smtp notification = {yes_no(group.get('smtp_alert'))}")
    out += [f"   {s['type']} state transition script = {s['command']}, uid:gid "
            f"{s['uid']}:{s['gid']}" for s in group.get("notify_scripts", [])]
    return out


def global_settings(root: Node | None) -> dict[str, Any]:
    """The "global" part of a snapshot, for a process with no VRRP state (the parent)."""
    return global_snapshot(root)


def parent_dump(snap: Snapshot) -> str:
    """keepalived_parent.data: the global definitions as keepalived's parent prints them."""
    return _text(global_lines(snap["global"], parent=True))


def _text(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _epoch_text(t: float) -> str:
    """keepalived's "sec.usec (Sat Nov 21 08:47:08.893499 2026)", in local time."""
    sec, usec, day, year = english_time(t)
    return f"{sec}.{usec:06d} ({day}.{usec:06d} {year})"


def instance_lines(inst: dict[str, Any], sockets: list[dict[str, Any]]) -> list[str]:
    """One " VRRP Instance = X" block of keepalived.data."""
    v3 = inst["version"] == 3
    out = [f" VRRP Instance = {inst['name']}", f"   VRRP Version = {inst['version']}"]
    if inst["family"] == 6:
        out.append("   Using Native IPv6")
    out.append(f"   State = {inst['state']}")
    if inst["state"] == "BACKUP":
        out += [f"   Master router = {inst['master_address'] or '(none)'}",
                f"   Master priority = {inst['master_priority']}"]
        if v3:
            out.append(f"   Master advert int = {inst['master_advert_interval']:.2f} sec")
    out += _flag_lines(inst["flags"])
    out += [
        f"   Wantstate = {inst['want_state']}",
        f"   Number of config faults = {inst['config_faults']}",
        f"   Number of interface and track script faults = {len(inst['faults'])}",
        # the agent has no vrrp_script yet, so none is starting up
        "   Number of track scripts init = 0",
    ]
    if inst.get("last_transition") is not None:
        out.append(f"   Last transition = {_epoch_text(inst['last_transition'])}")
    timer = inst.get("next_timer")
    out.append("   Read timeout = DISABLED" if timer is None
               else f"   Read timeout = {_epoch_text(timer)}")
    out.append(f"   Master down timer = {round(inst['master_down_interval'] * 1e6)} usecs")
    out += _instance_address_lines(inst)
    out += _instance_option_lines(inst)
    out += _instance_list_lines(inst, sockets)
    return out


def _flag_lines(flags: list[str]) -> list[str]:
    if not flags:
        return ["   Flags: none"]
    out = ["   Flags:"]
    if "unicast" in flags:
        out.append("     Using unicast")
    elif "unicast_configured" in flags:
        out.append("     Unicast config option specified but using multicast")
    if "unicast_fault_no_peer" in flags:
        out.append("     If unicast go to fault state if no peers")
    return out


def _instance_address_lines(inst: dict[str, Any]) -> list[str]:
    out = [f"   Interface = {inst['interface']}"]
    if inst.get("dont_track_primary"):
        out.append("   VRRP interface tracking disabled")
    if inst.get("skip_check_adv_addr"):
        out.append("   Skip checking advert IP addresses")
    if inst.get("strict_mode"):
        out.append("   Enforcing strict VRRP compliance")
    source = inst.get("source_address") or "(none)"
    out.append(f"   Using src_ip = {source}"
               f"{' (from configuration)' if inst.get('source_from_config') else ''}")
    if not inst["unicast"]:
        group = inst["multicast_group"]
        out.append(f"   Multicast address {group}" if inst["family"] == 4
                   else f"   Multicast address {group}, ifindex {inst.get('ifindex') or 0}")
    return out


def _instance_option_lines(inst: dict[str, Any]) -> list[str]:
    v3 = inst["version"] == 3
    advert = round(inst["advert_interval"] * (1000 if v3 else 1))
    out = [
        f"   Gratuitous ARP delay = {int(inst['garp_master_delay'])}",
        f"   Gratuitous ARP repeat = {inst['garp_master_repeat']}",
        f"   Gratuitous ARP refresh = {int(inst['garp_master_refresh'])}",
        f"   Gratuitous ARP refresh repeat = {inst['garp_master_refresh_repeat']}",
        f"   Gratuitous ARP lower priority delay = {int(inst['garp_lower_prio_delay'])}",
        f"   Gratuitous ARP lower priority repeat = {inst['garp_lower_prio_repeat']}",
        f"   Down timer adverts = {inst['down_timer_adverts']}",
        "   Send advert after receive lower priority advert = "
        f"{true_false(not inst['lower_prio_no_advert'])}",
        "   Send advert after receive higher priority advert = "
        f"{true_false(inst['higher_prio_send_advert'])}",
        f"   Virtual Router ID = {inst['vrid']}",
        f"   Priority = {inst['base_priority']}",
        f"   Effective priority = {inst['effective_priority']}",
        f"   Total priority = {inst['total_priority']}",
        f"   Advert interval = {advert} {'milli-sec' if v3 else 'sec'}",
    ]
    if inst["state"] == "BACKUP" and v3:
        out.append("   Master advert interval = "
                   f"{round(inst['master_advert_interval'] * 1000)} milli-sec")
    out += [f"   Accept = {'enabled' if inst['accept'] else 'disabled'}",
            f"   Preempt = {'disabled' if inst['nopreempt'] else 'enabled'}"]
    if inst["preempt_delay"]:
        out.append(f"   Preempt delay = {inst['preempt_delay']:g} secs")
    out.append("   Promote_secondaries = "
               f"{'enabled' if inst.get('promote_secondaries') else 'disabled'}")
    auth = inst["auth_type"]
    if auth != "none":
        # the password itself is not in the snapshot
        out.append(f"   Authentication type = {'IPSEC_AH' if auth == 'AH' else 'SIMPLE_PASSWORD'}")
    elif not v3:
        out.append("   Authentication type = none")
    return out


def _instance_list_lines(inst: dict[str, Any], sockets: list[dict[str, Any]]) -> list[str]:
    out = []
    if inst["vips"]:
        out.append(f"   Virtual IP ({len(inst['vips'])}):")
        out += [f"     {v}" for v in inst["vips"]]
    if inst["excluded_vips"]:
        out.append("   Virtual IP Excluded :")
        out += [f"     {v}" for v in inst["excluded_vips"]]
    if inst["unicast"]:
        if inst.get("unicast_ttl") is not None:
            out.append(f"   Unicast TTL = {inst['unicast_ttl']}")
        out.append(f"   Check unicast src : {yes_no(inst['check_unicast_src'])}")
        out.append("   Unicast Peer :")
        out += [f"     {p['address']} min_ttl {p['min_ttl']} max_ttl {p['max_ttl']}"
                for p in inst["unicast_peers"]]
        out.append(f"   Unicast checksum compatibility = {inst['unicast_checksum_compat']}")
    sock = sockets[inst["socket"]] if inst.get("socket") is not None else None
    if sock is not None and sock["fd_in"]:
        out.append(f"   fd_in {sock['fd_in'][0]}, fd_out {sock['fd_out']}")
    else:
        out.append("   No sockets allocated")
    if inst["routes"]:
        out.append("   Virtual Routes :")
        out += [f"     {r}" for r in inst["routes"]]
    if inst["rules"]:
        out.append("   Virtual Rules :")
        out += [f"     {r}" for r in inst["rules"]]
    explicit = [t for t in inst["trackers"]["interfaces"] if t["kind"] == "track_interface"]
    if explicit:
        out.append("   Tracked interfaces :")
        out += [f"     {t['name']} weight {t['weight']}{' reverse' if t['reverse'] else ''}"
                for t in explicit]
    out += [
        f"   Using smtp notification = {'yes' if inst.get('smtp_alert') else 'no'}",
        f"   Notify deleted = {'Deleted' if inst.get('notify_deleted') else 'Fault'}",
        f"   Notify priority changes = {true_false(inst.get('notify_priority_changes'))}",
    ]
    return out


def _socket_lines(sock: dict[str, Any]) -> list[str]:
    kinds = {i["unicast"] for i in sock["instances"]}
    out = [f" fd_in {sock['fd_in'][0] if sock['fd_in'] else -1} fd_out = {sock['fd_out']}",
           f"   Interface = {sock['interface']}",
           f"   Family = {'IPv6' if sock['family'] == 6 else 'IPv4'}",
           f"   Protocol = {'/'.join(sock['protocols'])}"]
    # one of our sockets may serve multicast and unicast instances alike
    if len(kinds) == 1:
        out.append(f"   Type = {'Unicast' if kinds == {True} else 'Multicast'}")
    out += [f"   Rx buf size = {sock['rx_buf_size']}", "   VRRP instances"]
    out += [f"     {i['name']} vrid {i['vrid']}" for i in sock["instances"]]
    return out


def _interface_lines(link: dict[str, Any], ours: set[str]) -> list[str]:
    # keepalived does not count its own VIPs as the interface's addresses
    ipv4 = [a for a in link["ipv4"] if a not in ours]
    ipv6 = [a for a in link["ipv6"] if a not in ours]
    out = [f" Name = {link['name']}",
           f"   index = {link['index']}{'' if link['index'] else ' (deleted)'}",
           f"   IPv4 address = {ipv4[0] if ipv4 else '(none)'}"]
    if len(ipv4) > 1:
        out.append("   Additional IPv4 addresses :")
        out += [f"     {a}" for a in ipv4[1:]]
    out.append(f"   IPv6 address = {ipv6[0] if ipv6 else '(none)'}")
    if len(ipv6) > 1:
        out.append("   Additional IPv6 addresses :")
        out += [f"     {a}" for a in ipv6[1:]]
    if link.get("mac"):
        out.append(f"   MAC = {link['mac']}")
    out += [
        # the agent acts on link changes at once, through netlink
        "   Delayed state change running = false",
        "   Up debounce timer = 0us",
        "   Down debounce timer = 0us",
    ]
    if link.get("mtu") is not None:
        out.append(f"   MTU = {link['mtu']}")
    out += [
        "   NIC netlink status update",
        # the agent changes no ARP or promote_secondaries setting of an interface
        "   Reset ARP config counter 0",
        "   Original arp_ignore 0",
        "   Original arp_filter 0",
        "   Original promote_secondaries 0",
        "   Reset promote_secondaries counter 0",
    ]
    if link.get("tracking"):
        out.append("   Tracking VRRP instances :")
        out += [f"     {t['instance']}, weight {t['weight']}{' reverse' if t['reverse'] else ''}"
                for t in link["tracking"]]
    return out


# -- keepalived.stats ----------------------------------------------------------------

def stats_dump(snap: Snapshot) -> str:
    """keepalived.stats, byte for byte as 2.2.7 writes it."""
    out = []
    for inst in snap.get("instances", []):
        s = inst["stats"]
        out += [
            f"VRRP Instance: {inst['name']}",
            "  Advertisements:",
            f"    Received: {s['advert_rcvd']}",
            f"    Sent: {s['advert_sent']}",
            f"  Became master: {s['become_master']}",
            f"  Released master: {s['release_master']}",
            "  Packet Errors:",
            f"    Length: {s['packet_len_err']}",
            f"    TTL: {s['ip_ttl_err']}",
            f"    Invalid Type: {s['invalid_type_rcvd']}",
            f"    Advertisement Interval: {s['advert_interval_err']}",
            f"    Address List: {s['addr_list_err']}",
            "  Authentication Errors:",
            f"    Invalid Type: {s['invalid_authtype']}",
            f"    Type Mismatch: {s['authtype_mismatch']}",
            f"    Failure: {s['auth_failure']}",
            "  Priority Zero:",
            f"    Received: {s['pri_zero_rcvd']}",
            f"    Sent: {s['pri_zero_sent']}",
        ]
    return _text(out)


# -- keepalived.json -----------------------------------------------------------------

# keepalived's order and JSON writer calls: u unsigned, g "%g", f "%f", b bool,
# s string, a array of strings (left out when empty)
_JSON_STATS = ("advert_rcvd", "advert_sent", "become_master", "release_master",
               "packet_len_err", "advert_interval_err", "ip_ttl_err", "invalid_type_rcvd",
               "addr_list_err", "invalid_authtype", "authtype_mismatch", "auth_failure",
               "pri_zero_rcvd", "pri_zero_sent")


def _json_data(inst: dict[str, Any]) -> list[tuple[str, str, Any]]:
    explicit = [t["name"] for t in inst["trackers"]["interfaces"]
                if t["kind"] == "track_interface"]
    return [
        ("iname", "s", inst["name"]),
        ("dont_track_primary", "u", int(inst["dont_track_primary"])),
        ("skip_check_adv_addr", "u", int(inst["skip_check_adv_addr"])),
        ("strict_mode", "u", int(inst["strict_mode"])),
        ("vmac_ifname", "s", ""),          # no VMAC
        ("ifp_ifname", "s", inst["interface"]),
        ("master_priority", "u", inst["master_priority"]),
        ("last_transition", "f", inst.get("last_transition") or 0.0),
        ("garp_delay", "g", inst["garp_master_delay"]),
        ("garp_refresh", "u", int(inst["garp_master_refresh"])),
        ("garp_rep", "u", inst["garp_master_repeat"]),
        ("garp_refresh_rep", "u", inst["garp_master_refresh_repeat"]),
        ("garp_lower_prio_delay", "u", int(inst["garp_lower_prio_delay"])),
        ("garp_lower_prio_rep", "u", inst["garp_lower_prio_repeat"]),
        ("lower_prio_no_advert", "u", int(inst["lower_prio_no_advert"])),
        ("higher_prio_send_advert", "u", int(inst["higher_prio_send_advert"])),
        ("vrid", "u", inst["vrid"]),
        ("base_priority", "u", inst["base_priority"]),
        ("effective_priority", "u", inst["effective_priority"]),
        ("vipset", "b", inst["vips_set"]),
        ("promote_secondaries", "b", inst.get("promote_secondaries", False)),
        ("adver_int", "g", inst["advert_interval"]),
        ("master_adver_int", "g", inst["master_advert_interval"]),
        ("accept", "u", int(inst["accept"])),
        ("nopreempt", "b", inst["nopreempt"]),
        ("preempt_delay", "u", int(inst["preempt_delay"])),
        ("state", "u", STATE_CODES[inst["state"]]),
        ("wantstate", "u", STATE_CODES[inst["want_state"]]),
        ("version", "u", inst["version"]),
        ("smtp_alert", "b", inst.get("smtp_alert", False)),
        ("notify_deleted", "b", inst.get("notify_deleted", False)),
        ("vips", "a", inst["vips"]),
        ("evips", "a", inst["excluded_vips"]),
        ("vroutes", "a", inst["routes"]),
        ("vrules", "a", inst["rules"]),
        ("track_ifp", "a", explicit),
        ("auth_type", "u", AUTH_CODES[inst["auth_type"]]),
    ]


def _json_string(text: str) -> str:
    escapes = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b",
               # keepalived 2.2.7 writes a backslash as "\n" (a bug); we write it correctly
               "\\": "\\\\", '"': '\\"', "/": "\\/"}
    return '"' + "".join(escapes.get(c, c) for c in text) + '"'


_JSON_VALUE: dict[str, Callable[[Any], str]] = {
    "u": lambda v: str(int(v)),
    "g": lambda v: f"{float(v):g}",
    "f": lambda v: f"{float(v):f}",
    "b": lambda v: "true" if v else "false",
    "s": _json_string,
    "a": lambda v: "[" + ",".join(_json_string(s) for s in v) + "]",
}


def _json_object(fields: Iterable[tuple[str, str, Any]]) -> str:
    members = [f"{_json_string(name)}:{_JSON_VALUE[kind](value)}"
               for name, kind, value in fields if kind != "a" or value]
    return "{" + ",".join(members) + "}"


def json_dump(snap: Snapshot) -> str:
    """keepalived.json, format version 1, as 2.2.7's writer lays it out (one line)."""
    items = []
    for inst in snap.get("instances", []):
        stats = _json_object((name, "u", inst["stats"][name]) for name in _JSON_STATS)
        items.append('{"data":' + _json_object(_json_data(inst)) + ',"stats":' + stats + "}")
    return "[" + ",".join(items) + "]\n"


# -- files ---------------------------------------------------------------------------

def dump_paths(snap_or_global: Snapshot, key: AgentKey = AgentKey(),  # noqa: B008
               environ: dict[str, str] | None = None) -> dict[str, Path]:
    """Where each file goes: keys "data", "parent", "stats", "json".

    An agent known by a namespace or an instance (``core/paths.py``) puts
    ``.NS_INSTANCE`` in every name, as keepalived does with ``data_use_instance``
    for its data files only: several agents on a host must not overwrite each
    other's stats and JSON either."""
    g = snap_or_global.get("global", snap_or_global)
    env = os.environ if environ is None else environ
    tmp = Path(env.get("TMPDIR") or "/tmp")
    tag = f".{key.tag}" if key.tag else ""
    state = g.get("state_dump_file")
    return {
        "data": _place(state, tmp, "keepalived.data", "", tag),
        "parent": _place(state, tmp, "keepalived.data", "_parent", tag),
        "stats": _place(g.get("stats_dump_file"), tmp, "keepalived.stats", "", tag),
        "json": _place(g.get("json_dump_file"), tmp, "keepalived.json", "", tag),
    }


def parent_dump_file(root: Node, key: AgentKey) -> tuple[Path, str]:
    """keepalived_parent.data: where it goes and what it says."""
    glob = global_settings(root)
    return dump_paths({"global": glob}, key)["parent"], parent_dump({"global": glob})


def _place(setting: str | None, tmp: Path, default: str, extra: str, tag: str) -> Path:
    """keepalived 2.3.3's reading of a dump file setting (see the module docstring)."""
    if not setting:
        directory, name = tmp, default
    else:
        directory = Path(setting if setting.endswith("/") else os.path.dirname(setting)) \
            if setting.startswith("/") else tmp
        name = default if setting.endswith("/") else setting.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    return directory / f"{stem}{extra}{tag}{'.' if dot else ''}{ext}"
