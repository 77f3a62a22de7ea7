"""keepalived's global definitions, as every process's data dump prints them.

``global_snapshot(root)`` gives the global_defs settings with keepalived 2.2.7's
defaults filled in; ``global_lines`` prints the "Global definitions" section of
keepalived.data (the VRRP process), keepalived_parent.data and keepalived_check.data
(the checker process) from it.  Both processes' dumps use them: they live here, below
the subsystems.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..config.keywords_vrrp import GLOBAL_DEFS
from ..config.model import Node

PARAMETER_UNSET = 0xFFFFFFFF        # keepalived prints this for an unset unsigned setting


def global_snapshot(root: Node | None, firewall_table: str | None = None,
                    firewall_priority: int = -1) -> dict[str, Any]:
    """The global settings keepalived's dumps print, keepalived 2.2.7's defaults filled in.

    Keys are the global_defs keywords.  ``configured`` lists the keywords the
    file sets, so a reader can tell a default from a choice.  ``nftables*``
    describe the agent's own accept-mode firewall when it has one.
    """
    blocks = root.blocks("global_defs") if root is not None else []
    g = blocks[0] if blocks else None

    def get(name: str, default: Any = None) -> Any:
        value = g.get(name) if g is not None else GLOBAL_DEFS.keyword(name).default
        return default if value is None else value

    def flag(name: str) -> bool:
        return bool(get(name, False))

    garp_delay = get("vrrp_garp_master_delay")
    garp_repeat = get("vrrp_garp_master_repeat")
    extra_if = get("vrrp_garp_extra_if", (False, 0))
    rx_policy = get("vrrp_rx_bufs_policy")
    uid_gid = _script_user(get("script_user"), flag("enable_script_security"))
    out: dict[str, Any] = {
        "net_namespace": root.values.get("net_namespace") if root is not None else None,
        "net_namespace_ipvs": root.values.get("net_namespace_ipvs") if root is not None
        else None,
        "instance": root.values.get("instance") if root is not None else None,
        "router_id": get("router_id") or os.uname().nodename,
        "smtp_alert": get("smtp_alert"),
        "smtp_alert_vrrp": get("smtp_alert_vrrp"),
        "smtp_alert_checker": get("smtp_alert_checker"),
        "checker_log_all_failures": flag("checker_log_all_failures"),
        "data_use_instance": flag("data_use_instance"),
        "dynamic_interfaces": get("dynamic_interfaces") is not None,
        "allow_if_changes": get("dynamic_interfaces") == "allow_if_changes",
        "default_interface": get("default_interface"),
        "disable_local_igmp": flag("disable_local_igmp"),
        "lvs_flush": flag("lvs_flush"),
        "lvs_flush_on_stop": {None: "disabled", "FULL": "full"}.get(
            get("lvs_flush_on_stop"), get("lvs_flush_on_stop")),
        "fifo_write_vrrp_states_on_reload": flag("fifo_write_vrrp_states_on_reload"),
        "vrrp_notify_priority_changes": flag("vrrp_notify_priority_changes"),
        "vrrp_mcast_group4": str(get("vrrp_mcast_group4")),
        "vrrp_mcast_group6": str(get("vrrp_mcast_group6")),
        "vrrp_garp_master_delay": garp_delay,
        "vrrp_garp_master_repeat": garp_repeat,
        "vrrp_garp_master_refresh": get("vrrp_garp_master_refresh"),
        "vrrp_garp_master_refresh_repeat": get("vrrp_garp_master_refresh_repeat"),
        # keepalived's VRRP process takes the master values for these when unset
        "vrrp_garp_lower_prio_delay": get("vrrp_garp_lower_prio_delay", garp_delay),
        "vrrp_garp_lower_prio_repeat": get("vrrp_garp_lower_prio_repeat", garp_repeat),
        "vrrp_down_timer_adverts": get("vrrp_down_timer_adverts"),
        "vrrp_garp_extra_if": extra_if[1],
        "vrrp_garp_extra_if_all": bool(extra_if[0]),
        "vrrp_lower_prio_no_advert": flag("vrrp_lower_prio_no_advert"),
        "vrrp_higher_prio_send_advert": flag("vrrp_higher_prio_send_advert"),
        "vrrp_garp_interval": float(get("vrrp_garp_interval", 0.0)),
        "vrrp_gna_interval": float(get("vrrp_gna_interval", 0.0)),
        "vrrp_version": get("vrrp_version"),
        "nftables": firewall_table,
        "nftables_priority": firewall_priority,
        "nftables_ifindex": False,          # our sets hold addresses only
        "nftables_counters": False,         # our rules count nothing
        "vrrp_check_unicast_src": flag("vrrp_check_unicast_src"),
        "vrrp_skip_check_adv_addr": flag("vrrp_skip_check_adv_addr"),
        "vrrp_strict": flag("vrrp_strict"),
        "max_auto_priority": get("max_auto_priority", 0),
        "min_auto_priority_delay": get("min_auto_priority_delay", 1_000_000),
        "snmp_socket": get("snmp_socket"),
        "enable_script_security": flag("enable_script_security"),
        "script_uid": uid_gid[0] if uid_gid else None,
        "script_gid": uid_gid[1] if uid_gid else None,
        "vrrp_rx_bufs_policy": " ".join(str(w) for w in rx_policy) if rx_policy else None,
        "vrrp_rx_bufs_multiplier": get("vrrp_rx_bufs_multiplier"),
        "umask": process_umask(),
        "vrrp_startup_delay": get("vrrp_startup_delay"),
        "log_unknown_vrids": flag("log_unknown_vrids"),
        "vmac_prefix": get("vmac_prefix"),
        "vmac_addr_prefix": get("vmac_addr_prefix"),
        "rs_init_notifies": flag("rs_init_notifies"),
        "no_checker_emails": flag("no_checker_emails"),
        "state_dump_file": get("state_dump_file"),
        "stats_dump_file": get("stats_dump_file"),
        "json_dump_file": get("json_dump_file"),
    }
    for process in ("vrrp", "checker", "bfd"):
        out[f"{process}_priority"] = get(f"{process}_priority", 0)
        out[f"{process}_no_swap"] = flag(f"{process}_no_swap")
        out[f"{process}_rt_priority"] = get(f"{process}_rt_priority", 0)
        out[f"{process}_rlimit_rttime"] = get(f"{process}_rlimit_rttime")
    for prefix in ("vrrp_netlink_cmd", "vrrp_netlink_monitor", "process_monitor",
                   "lvs_netlink_cmd", "lvs_netlink_monitor"):
        out[f"{prefix}_rcv_bufs"] = get(f"{prefix}_rcv_bufs", 0)
        out[f"{prefix}_rcv_bufs_force"] = flag(f"{prefix}_rcv_bufs_force")
    out["configured"] = sorted(g.values) if g is not None else []
    return out


def _script_user(words: Sequence[str] | None, security: bool) -> tuple[int, int] | None:
    """keepalived's default script uid:gid; None where 2.2.7 prints no line."""
    try:
        if words:
            user = pwd.getpwnam(words[0])
            gid = grp.getgrnam(words[1]).gr_gid if len(words) > 1 else user.pw_gid
            return user.pw_uid, gid
        try:
            user = pwd.getpwnam("keepalived_script")
            return user.pw_uid, user.pw_gid
        except KeyError:
            # 2.2.7 falls back to its own ids, unless script security makes that an error
            return None if security else (os.getuid(), os.getgid())
    except KeyError:
        return None


def process_umask() -> int:
    """The umask we run with, read without changing it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)           # no /proc: the only other way is set-and-restore
    os.umask(old)
    return old


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def english_time(t: float) -> tuple[int, int, str, int]:
    """(seconds, microseconds, "Sat Nov 21 08:47:08", year) of ``t`` in local time, with
    asctime's English names and space-padded day whatever the locale, as keepalived's
    dumps print times."""
    sec, usec = divmod(round(t * 1_000_000), 1_000_000)
    lt = time.localtime(sec)
    day = (f"{_DAYS[lt.tm_wday]} {_MONTHS[lt.tm_mon - 1]} {lt.tm_mday:2d} "
           f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}")
    return sec, usec, day, lt.tm_year


# -- the section --------------------------------------------------------------------

def true_false(value: object) -> str:
    return "true" if value else "false"


def yes_no(value: object) -> str:
    return "yes" if value else "no"


def _onoff(value: bool | None) -> str:
    return "unset" if value is None else "on" if value else "off"


def global_lines(g: dict[str, Any], *, parent: bool, fifos: Iterable[str] = ()) -> list[str]:
    """The "Global definitions" section; ``parent``: as a process without VRRP
    instances prints it (keepalived's parent, and its checker process); ``fifos``:
    the notify FIFO lines, which come after the LVS flush settings."""
    ipvs = g.get("net_namespace_ipvs")
    out = [
        "------< Global definitions >------",
        f" Network namespace = {g.get('net_namespace') or '(default)'}",
        f" Network namespace ipvs = "
        f"{'(main namespace)' if ipvs is None else ipvs or '(default)'}",
    ]
    if g.get("instance"):
        out.append(f" Instance name = {g['instance']}")
    out += [
        f" Router ID = {g['router_id']}",
        f" Default smtp_alert = {_onoff(g.get('smtp_alert'))}",
        f" Default smtp_alert_vrrp = {_onoff(g.get('smtp_alert_vrrp'))}",
        f" Default smtp_alert_checker = {_onoff(g.get('smtp_alert_checker'))}",
        f" Checkers log all failures = {true_false(g.get('checker_log_all_failures'))}",
        # the agent does not reload with a config check (yet)
        " No test config before reload",
    ]
    if g.get("data_use_instance"):
        out.append(" Use instance name in data dumps")
    out.append(f" Dynamic interfaces = {true_false(g.get('dynamic_interfaces'))}")
    if g.get("dynamic_interfaces"):
        out.append(f" Allow interface changes = {true_false(g.get('allow_if_changes'))}")
    if not parent:
        out.append(f" Default interface = {g['default_interface']}")
    out += [
        f" Disable local IGMP = {yes_no(g.get('disable_local_igmp'))}",
        f" LVS flush = {true_false(g.get('lvs_flush'))}",
        f" LVS flush on stop = {g.get('lvs_flush_on_stop', 'disabled')}",
        *fifos,
        " FIFO write vrrp states on reload = "
        f"{true_false(g.get('fifo_write_vrrp_states_on_reload'))}",
        f" VRRP notify priority changes = {true_false(g.get('vrrp_notify_priority_changes'))}",
        f" VRRP IPv4 mcast group = {g['vrrp_mcast_group4']}",
        f" VRRP IPv6 mcast group = {g['vrrp_mcast_group6']}",
    ]
    out += _global_garp_lines(g, parent)
    out += [
        f" Gratuitous ARP interval = {g['vrrp_garp_interval']:f}",
        f" Gratuitous NA interval = {g['vrrp_gna_interval']:f}",
        f" VRRP default protocol version = {g['vrrp_version']}",
    ]
    if g.get("nftables"):
        force = "" if g.get("nftables_ifindex") else "don't "
        out += [f" nftables table name = {g['nftables']}",
                f" nftables base chain priority = {g['nftables_priority']}",
                f" nftables {force}force use ifindex for link local IPv6"]
    out += [
        f" nftables with{'' if g.get('nftables_counters') else 'out'} counters",
        f" VRRP check unicast_src = {true_false(g.get('vrrp_check_unicast_src'))}",
        f" VRRP skip check advert addresses = {true_false(g.get('vrrp_skip_check_adv_addr'))}",
        f" VRRP strict mode = {true_false(g.get('vrrp_strict'))}",
        " Max auto priority = "
        f"{'Disabled' if g['max_auto_priority'] == -1 else g['max_auto_priority']}",
        f" Min auto priority delay = {g['min_auto_priority_delay']} usecs",
    ]
    for process, title in (("vrrp", "VRRP"), ("checker", "Checker"), ("bfd", "BFD")):
        out += [
            f" {title} process priority = {g[f'{process}_priority']}",
            f" {title} don't swap = {true_false(g.get(f'{process}_no_swap'))}",
            f" {title} realtime priority = {g[f'{process}_rt_priority']}",
            f" {title} realtime limit = {g[f'{process}_rlimit_rttime']}",
        ]
    out += _global_tail_lines(g)
    return out


def _global_garp_lines(g: dict[str, Any], parent: bool) -> list[str]:
    delay, repeat = g["vrrp_garp_lower_prio_delay"], g["vrrp_garp_lower_prio_repeat"]
    if parent:
        # only the VRRP process fills these in from the master values
        configured = set(g.get("configured", ()))
        if "vrrp_garp_lower_prio_delay" not in configured:
            delay = PARAMETER_UNSET
        if "vrrp_garp_lower_prio_repeat" not in configured:
            repeat = PARAMETER_UNSET
    all_if = "i/f" if g.get("vrrp_garp_extra_if_all") else "VMAC"
    return [
        f" Gratuitous ARP delay = {g['vrrp_garp_master_delay']}",
        f" Gratuitous ARP repeat = {g['vrrp_garp_master_repeat']}",
        f" Gratuitous ARP refresh timer = {g['vrrp_garp_master_refresh']}",
        f" Gratuitous ARP refresh repeat = {g['vrrp_garp_master_refresh_repeat']}",
        f" Gratuitous ARP lower priority delay = {delay}",
        f" Gratuitous ARP lower priority repeat = {repeat}",
        f" Num adverts before down = {g['vrrp_down_timer_adverts']}",
        f" Gratuitous ARP for each secondary {all_if} = {g.get('vrrp_garp_extra_if', 0)}s",
        " Send advert after receive lower priority advert = "
        f"{true_false(not g.get('vrrp_lower_prio_no_advert'))}",
        " Send advert after receive higher priority advert = "
        f"{true_false(g.get('vrrp_higher_prio_send_advert'))}",
    ]


def _global_tail_lines(g: dict[str, Any]) -> list[str]:
    out = [
        # the agent has no SNMP subagent and no DBus service
        " SNMP vrrp disabled",
        " SNMP checker disabled",
        " SNMP RFCv2 disabled",
        " SNMP RFCv3 disabled",
        " SNMP traps disabled",
        f" SNMP socket = {g.get('snmp_socket') or 'default (unix:/var/agentx/master)'}",
        " DBus disabled",
        " DBus service name = ",
        f" Script security {'enabled' if g.get('enable_script_security') else 'disabled'}",
    ]
    if g.get("script_uid") is not None:
        out.append(f" Default script uid:gid {g['script_uid']}:{g['script_gid']}")
    for prefix in ("vrrp_netlink_cmd", "vrrp_netlink_monitor", "process_monitor",
                   "lvs_netlink_cmd", "lvs_netlink_monitor"):
        out += [f" {prefix}_rcv_bufs = {g[f'{prefix}_rcv_bufs']}",
                f" {prefix}_rcv_bufs_force = {int(bool(g.get(f'{prefix}_rcv_bufs_force')))}"]
    out += [f" rs_init_notifies = {int(bool(g.get('rs_init_notifies')))}",
            f" no_checker_emails = {int(bool(g.get('no_checker_emails')))}"]
    policy = g.get("vrrp_rx_bufs_policy")
    if policy:
        out.append(f" rx_bufs_size = {policy}" if policy.isdigit()
                   else f" rx_bufs_policy = {policy.split()[0]}")
    out += [f" rx_bufs_multiples = {g['vrrp_rx_bufs_multiplier']}",
            f" umask = 0{g['umask']:o}"]
    if g.get("vrrp_startup_delay"):
        out.append(f" vrrp_startup_delay = {g['vrrp_startup_delay']:g}")
    if g.get("log_unknown_vrids"):
        out.append(" log_unknown_vrids")
    if g.get("vmac_prefix"):
        out.append(f" VMAC prefix = {g['vmac_prefix']}")
    if g.get("vmac_addr_prefix"):
        out.append(f" VMAC address prefix = {g['vmac_addr_prefix']}")
    return out
