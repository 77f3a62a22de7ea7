"""Checks made once the whole file is read, as keepalived 2.2.7 makes them.

keepalived checks, after parsing, what only the host can tell: whether the
interfaces exist, whether script users exist, whether scripts exist and may run
as root without ``enable_script_security``.  It also completes the virtual
servers and VRRP instances with defaults and says so.  We make the same checks,
with the same messages and levels, so that ``-t`` verdicts agree; where 2.2.7
skips its checks by accident (a ``net_namespace`` it cannot enter), we check
anyway.

Values are read back as words through each keyword's own ``render``, so these
checks need no knowledge of how a value type stores its words.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
from dataclasses import dataclass, field
from typing import Any

from .diag import Level, Where
from .model import Node
from .parser import ParseResult

# Message of keepalived's config test when an interface lookup failed.
NON_EXISTENT_INTERFACE = "Non-existent interface specified in configuration"
DEFAULT_SCRIPT_USER = "keepalived_script"
CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK",
            "PING_CHECK", "FILE_CHECK", "MISC_CHECK", "BFD_CHECK")


def local_interfaces() -> set[str]:
    """The links of the network namespace this process runs in."""
    return {name for _index, name in socket.if_nameindex()}


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


# -- reading values back as words --------------------------------------------

def words(node: Node, name: str) -> list[str] | None:
    """The words of a one-line keyword's value, or None when not set."""
    if name not in node.values:
        return None
    kw = node.spec.keyword(name)
    value = node.values[name]
    if kw.repeat:
        value = value[-1]
    return [name, *kw.arg.render(value)] if kw.lines is None and kw.block is None else [name]


def lines(node: Node, name: str) -> list[list[str]]:
    """The words of every line of a line block (``virtual_ipaddress { ... }``)."""
    if name not in node.values:
        return []
    kw = node.spec.keyword(name)
    assert kw.lines is not None, name
    return [kw.lines.render(item) for item in node.values[name]]


def after(ws: list[str], keyword: str) -> str | None:
    """The word following ``keyword`` in a line, if any."""
    for i, w in enumerate(ws[:-1]):
        if w == keyword:
            return ws[i + 1]
    return None


def split_command(command: str) -> list[str]:
    """A script string split into argv as keepalived splits it (script_words.py); for
    messages, so a string keepalived would refuse is shown split on blanks."""
    from .script_words import ScriptError
    from .script_words import split_command as split
    try:
        return split(command)
    except ScriptError:
        return command.split()


@dataclass
class Script:
    """A script the configuration asks keepalived to run."""

    command: str
    user: str | None
    group: str | None
    where: Where | None

    def program(self) -> str:
        argv = split_command(self.command)
        return argv[0] if argv else ""

    def is_program(self) -> bool:
        """Does it name a program at all?  (A ``</path`` test opens a file: no script.)"""
        prog = self.program()
        return bool(prog) and not (prog.startswith("<") and prog[1:].lstrip(" \t").startswith("/"))

    def found(self) -> bool:
        """Can the file be found on this machine?"""
        if not self.is_program():
            return False
        prog = self.program()
        if "/" not in prog:
            return shutil.which(prog) is not None
        return os.path.exists(prog)


def script_of(ws: list[str] | None, where: Where | None) -> Script | None:
    """``keyword "command" [user [group]]`` as a Script."""
    if not ws or len(ws) < 2:
        return None
    return Script(ws[1], ws[2] if len(ws) > 2 else None, ws[3] if len(ws) > 3 else None,
                  where)


# -- the checks ---------------------------------------------------------------

@dataclass
class _Checker:
    result: ParseResult
    links: set[str] | None          # None: interfaces cannot be checked here
    host_checks: bool = True        # False: users, groups and script files taken as present
    script_security: bool = False
    dynamic_interfaces: bool = False
    default_user_failed: bool = False
    default_user_known: bool = False
    missing_interface: bool = False
    removed_vrrp_scripts: set[str] = field(default_factory=set)
    next_rule_preference: dict[int, int] = field(default_factory=dict)

    @property
    def root(self) -> Node:
        return self.result.root

    def report(self, level: Level, message: str, where: Where | None = None) -> None:
        self.result.diags.add(level, message, where)

    def at(self, node: Node, name: str) -> Where | None:
        return node.value_where.get(name, node.where)

    # what only the target machine can tell ------------------------------------
    def user_exists(self, name: str) -> bool:
        return not self.host_checks or user_exists(name)

    def group_exists(self, name: str) -> bool:
        return not self.host_checks or group_exists(name)

    def found(self, script: Script) -> bool:
        return script.found() if self.host_checks else script.is_program()

    # users ------------------------------------------------------------------
    def globals_(self) -> None:
        gd = self.root.values.get("global_defs")
        if gd is None:
            return
        self.script_security = bool(gd.values.get("enable_script_security"))
        self.dynamic_interfaces = "dynamic_interfaces" in gd.values
        su = words(gd, "script_user")
        if su and len(su) > 1:
            self.default_user_known = True
            user, group = su[1], su[2] if len(su) > 2 else None
            if not self.user_exists(user) or (group is not None and not self.group_exists(group)):
                self.report(Level.GENERAL_ERROR, "Error setting global script uid/gid",
                            self.at(gd, "script_user"))
                self.default_user_failed = True

    def default_user_ok(self) -> bool:
        """Can a script without its own user run?  keepalived falls back to
        ``keepalived_script``, or to root unless script security is on."""
        if self.default_user_failed:
            return False
        if not self.default_user_known:
            self.default_user_known = True
            if not self.user_exists(DEFAULT_SCRIPT_USER) and self.script_security:
                self.report(Level.GENERAL_ERROR,
                            f"Unable to set default user {DEFAULT_SCRIPT_USER} for script")
                self.default_user_failed = True
                return False
        return True

    def script_runs(self, script: Script | None) -> bool:
        """Does the script survive (its user resolves) and exist as a file?"""
        if script is None:
            return False
        if script.user is None:
            if not self.default_user_ok():
                return False
        elif not self.user_exists(script.user) or (
                script.group and not self.group_exists(script.group)):
            return False
        return self.found(script)

    def security(self, scripts: list[Script | None], what: str) -> None:
        if self.script_security:
            return
        if any(self.script_runs(s) for s in scripts):
            self.report(Level.SECURITY_ERROR, f"SECURITY VIOLATION - {what}are being executed "
                        "but script_security not enabled.")

    # interfaces -------------------------------------------------------------
    def interface_missing(self, name: str) -> bool:
        if self.links is None or self.dynamic_interfaces or name in self.links:
            return False
        self.missing_interface = True
        return True

    def startup_scripts(self) -> None:
        gd = self.root.values.get("global_defs")
        if gd is None:
            return
        scripts = [script_of(words(gd, k), self.at(gd, k))
                   for k in ("startup_script", "shutdown_script")]
        if any(scripts) and not self.script_security:
            if any(s is not None and self.found(s) for s in scripts):
                self.report(Level.SECURITY_ERROR, "SECURITY VIOLATION - start/shutdown scripts "
                            "are being executed but script_security not enabled.")

    # virtual servers -------------------------------------------------------
    def checker(self) -> None:
        servers = [vs for vs in self.root.blocks("virtual_server")
                   if vs.blocks("real_server")]
        for vs in self.root.blocks("virtual_server"):
            if not vs.blocks("real_server"):
                self.report(Level.GENERAL_ERROR,
                            f"Virtual server {vs_name(vs)} has no real servers - ignoring")
        scripts: list[Script | None] = []
        for vs in servers:
            self.complete_virtual_server(vs)
            for key in ("quorum_up", "quorum_down"):
                scripts.append(script_of(words(vs, key), self.at(vs, key)))
            for rs in vs.blocks("real_server"):
                for key in ("notify_up", "notify_down"):
                    scripts.append(script_of(words(rs, key), self.at(rs, key)))
                for misc in rs.blocks("MISC_CHECK"):
                    scripts.append(self.misc_script(misc))
        if not servers:
            return
        gd = self.root.values.get("global_defs")
        if gd is not None:
            for key in ("notify_fifo_script", "lvs_notify_fifo_script"):
                scripts.append(script_of(words(gd, key), self.at(gd, key)))
        self.security(scripts, "check scripts ")

    def misc_script(self, misc: Node) -> Script | None:
        path = words(misc, "misc_path")
        if not path or len(path) < 2:
            return None
        user = words(misc, "user")
        script = Script(path[1], user[1] if user and len(user) > 1 else None,
                        user[2] if user and len(user) > 2 else None, self.at(misc, "misc_path"))
        shown = " ".join(f"'{a}'" for a in split_command(script.command))
        if script.user is None:
            if not self.default_user_ok():
                self.report(Level.GENERAL_ERROR,
                            f"Unable to set default user for misc script {shown} - removing",
                            misc.where)
                return None
        elif not self.user_exists(script.user):
            self.report(Level.GENERAL_ERROR,
                        f"Failed to set uid/gid for misc checker script {shown} - removing",
                        self.at(misc, "user"))
            return None
        return script

    def complete_virtual_server(self, vs: Node) -> None:
        name = vs_name(vs)
        fwmark = vs_is_fwmark(vs)
        if not fwmark and "protocol" not in vs.values and not vs_is_group(vs):
            self.report(Level.GENERAL_ERROR,
                        f"Virtual server {name}: no protocol set - defaulting to UDP")
        if fwmark and "protocol" in vs.values:
            self.report(Level.GENERAL_ERROR, f"Warning: Virtual server {name}: protocol "
                        "specified for fwmark - protocol will be ignored")
        if "lvs_sched" not in vs.values:
            self.report(Level.GENERAL_ERROR,
                        f"Virtual server {name}: no scheduler set, setting default 'wlc'")
        if "lvs_method" not in vs.values and any(
                "lvs_method" not in rs.values for rs in vs.blocks("real_server")):
            self.report(Level.GENERAL_ERROR,
                        f"Virtual server {name}: no forwarding method set, setting default NAT")
        self.real_server_ports(vs, name, fwmark)
        default_weight = vs.values.get("weight", 1)
        total = sum(_int(rs.values.get("weight", default_weight), 1)
                    for rs in vs.blocks("real_server"))
        quorum = _int(vs.values.get("quorum", 1), 1)
        if quorum > total:
            self.report(Level.GENERAL_ERROR, f"Warning - quorum {quorum} for {name} exceeds "
                        f"total weight of real servers {total}, reducing quorum to {total}")

    def real_server_ports(self, vs: Node, name: str, fwmark: bool) -> None:
        proto = str(vs.values.get("protocol", "none")).lower()
        vs_words = _head_words(vs)
        vs_port = vs_words[1] if len(vs_words) > 1 and not fwmark else None
        sorry = words(vs, "sorry_server")
        vs_method = (words(vs, "lvs_method") or ["", "NAT"])[1]
        for rs in vs.blocks("real_server"):
            rs_words = _head_words(rs)
            rs_name = f"[{rs_words[0] if rs_words else ''}]:{proto}:" \
                      f"{rs_words[1] if len(rs_words) > 1 else 0}"
            if sorry and sorry[1:3] == rs_words[:2]:
                rs_inhibit = bool(rs.values.get("inhibit_on_failure"))
                if rs_inhibit != bool(vs.values.get("sorry_server_inhibit")):
                    how = "sett" if rs_inhibit else "clear"
                    self.report(Level.GENERAL_ERROR, f"Virtual server {name}: real server "
                                f"{rs_name} matches sorry server, but inhibit setting differs, "
                                f"{how}ing on sorry server")
            method = (words(rs, "lvs_method") or ["", vs_method])[1]
            rs_port = rs_words[1] if len(rs_words) > 1 else "0"
            if vs_port is not None and not vs_is_group(vs) and method != "NAT" \
                    and rs_port not in ("0", vs_port):
                self.report(Level.GENERAL_ERROR, f"WARNING - virtual server {name} and real "
                            f"server {rs_name} ports don't match - resetting")

    # VRRP --------------------------------------------------------------------
    def vrrp(self) -> None:
        root = self.root
        self.static_and_groups()
        scripts_by_name: dict[str, Node] = {}
        for vs in root.blocks("vrrp_script"):
            scripts_by_name[str(vs.head)] = vs
            self.vrrp_script(vs)
        instances = root.blocks("vrrp_instance")
        vmac_users: dict[str, str] = {}
        for inst in instances:
            self.instance_interfaces(inst)
            vmac = words(inst, "use_vmac")
            if vmac and len(vmac) > 1:
                if vmac[1] in vmac_users:
                    self.report(Level.GENERAL_ERROR, f"({inst.head}) VRRP instance "
                                f"{vmac_users[vmac[1]]} is already using {vmac[1]} - ignoring "
                                "name", self.at(inst, "use_vmac"))
                else:
                    vmac_users[vmac[1]] = str(inst.head)
        for sg in root.blocks("vrrp_sync_group"):
            for ws in lines(sg, "track_interface"):
                if ws and self.interface_missing(ws[0]):
                    self.report(Level.GENERAL_ERROR,
                                f"({sg.head}) tracked interface {ws[0]} doesn't exist",
                                self.at(sg, "track_interface"))
        for owner in [*instances, *root.blocks("vrrp_sync_group")]:
            for ws in lines(owner, "track_script"):
                if ws and (ws[0] not in scripts_by_name or ws[0] in self.removed_vrrp_scripts):
                    self.report(Level.GENERAL_ERROR,
                                f"({owner.head}) track script {ws[0]} not found, ignoring...",
                                self.at(owner, "track_script"))
        if self.missing_interface:
            self.report(Level.BAD_IF, NON_EXISTENT_INTERFACE)
            return
        if not instances:
            return
        self.vrrp_complete(instances)

    def vrrp_script(self, vs: Node) -> None:
        script = words(vs, "script")
        if not script or len(script) < 2 or not script[1]:
            self.report(Level.GENERAL_ERROR, f"No script set for vrrp_script {vs.head} - removing",
                        vs.where)
            self.removed_vrrp_scripts.add(str(vs.head))
            return
        user = words(vs, "user")
        if user and len(user) > 1:
            if not self.user_exists(user[1]) or (len(user) > 2 and not self.group_exists(user[2])):
                shown = " ".join(f"'{a}'" for a in split_command(script[1]))
                self.report(Level.GENERAL_ERROR, f"Unable to set uid/gid for script {shown}",
                            self.at(vs, "user"))
                self.removed_vrrp_scripts.add(str(vs.head))
        elif not self.default_user_ok():
            self.report(Level.GENERAL_ERROR,
                        f"Unable to set default user for vrrp script {vs.head} - removing",
                        vs.where)
            self.removed_vrrp_scripts.add(str(vs.head))

    def instance_interfaces(self, inst: Node) -> None:
        ifname = inst.values.get("interface")
        if isinstance(ifname, str) and ifname != "lo" and self.interface_missing(ifname):
            self.report(Level.GENERAL_ERROR, f"WARNING - interface {ifname} for vrrp_instance "
                        f"{inst.head} doesn't exist", self.at(inst, "interface"))
        vrf = inst.values.get("vrf")
        if isinstance(vrf, str) and self.interface_missing(vrf):
            self.report(Level.GENERAL_ERROR,
                        f"({inst.head}) WARNING - VRF interface {vrf} doesn't exist",
                        self.at(inst, "vrf"))
        for ws in lines(inst, "track_interface"):
            if ws and self.interface_missing(ws[0]):
                self.report(Level.GENERAL_ERROR,
                            f"({inst.head}) tracked interface {ws[0]} doesn't exist",
                            self.at(inst, "track_interface"))
        for key in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
            self.address_interfaces(inst, key)
        self.route_interfaces(inst, "virtual_routes")
        self.rule_interfaces(inst, "virtual_rules")
        self.rule_preferences(inst, "virtual_rules")

    def address_interfaces(self, node: Node, key: str, static: bool = False) -> None:
        for ws in lines(node, key):
            dev = after(ws, "dev")
            if dev is not None:
                if self.interface_missing(dev):
                    self.report(Level.GENERAL_ERROR, f"WARNING - interface {dev} for ip address "
                                f"{ws[0]} doesn't exist", self.at(node, key))
            elif static and self.links is not None:
                gd = self.root.values.get("global_defs")
                default = gd.values.get("default_interface", "eth0") if gd else "eth0"
                if self.interface_missing(default):
                    self.report(Level.FATAL, f"Static address {ws[0]} requires either an "
                                "interface or default interface must exist", self.at(node, key))

    def route_interfaces(self, node: Node, key: str) -> None:
        for ws in lines(node, key):
            for i, w in enumerate(ws[:-1]):
                if w in ("dev", "oif") and self.interface_missing(ws[i + 1]):
                    self.report(Level.GENERAL_ERROR, f"WARNING - interface {ws[i + 1]} for "
                                "VROUTE nexthop doesn't exist", self.at(node, key))

    def rule_interfaces(self, node: Node, key: str) -> None:
        for ws in lines(node, key):
            for i, w in enumerate(ws[:-1]):
                if w in ("dev", "iif", "oif") and self.interface_missing(ws[i + 1]):
                    self.report(Level.GENERAL_ERROR, f"WARNING - interface {ws[i + 1]} for rule "
                                "doesn't exist", self.at(node, key))

    def rule_preferences(self, node: Node, key: str) -> None:
        for ws in lines(node, key):
            if any(w in ("preference", "priority", "order", "pref", "prio") for w in ws):
                continue
            family = 6 if "inet6" in ws or any(":" in w for w in ws) else 4
            pref = self.next_rule_preference.get(family, 16384)
            self.next_rule_preference[family] = pref - 1
            self.report(Level.GENERAL_ERROR, f"Rule has no preference specified - setting to "
                        f"{pref}. This is probably not what you want.", self.at(node, key))

    def static_and_groups(self) -> None:
        root = self.root
        self.address_interfaces(root, "static_ipaddress", static=True)
        self.route_interfaces(root, "static_routes")
        self.rule_interfaces(root, "static_rules")
        self.rule_preferences(root, "static_rules")
        for gg in root.blocks("garp_group"):
            names = [w for ws in lines(gg, "interfaces") for w in ws] \
                if "interfaces" in gg.values else []
            single = words(gg, "interface")
            if single and len(single) > 1:
                names.append(single[1])
            for name in names:
                if self.interface_missing(name):
                    self.report(Level.GENERAL_ERROR, f"WARNING - interface {name} specified for "
                                "garp_group doesn't exist", gg.where)
        for key, what in (("linkbeat_interfaces", "linkbeat interface"),
                          ("interface_up_down_delays", "up/down delay")):
            for ws in lines(root, key):
                if ws and self.links is not None and not self.dynamic_interfaces \
                        and ws[0] not in self.links:
                    self.report(Level.FATAL, f"unknown interface {ws[0]} specified for {what}",
                                self.at(root, key))

    def vrrp_complete(self, instances: list[Node]) -> None:
        root = self.root
        scripts: list[Script | None] = []
        for vs in root.blocks("vrrp_script"):
            if str(vs.head) in self.removed_vrrp_scripts:
                continue
            script = script_of(words(vs, "script"), self.at(vs, "script"))
            user = words(vs, "user")
            if script is not None and user and len(user) > 1:
                script.user = user[1]
            if script is not None and not self.found(script) and script.program() \
                    and not script.program().startswith("<"):
                self.report(Level.GENERAL_ERROR,
                            f"Disabling track script {vs.head} since not found/accessible")
            scripts.append(script)
        notify_keys = ("notify_backup", "notify_master", "notify_fault", "notify_stop",
                       "notify_deleted", "notify", "notify_master_rx_lower_pri")
        for owner in [*instances, *root.blocks("vrrp_sync_group")]:
            for key in notify_keys:
                if key in owner.values:
                    scripts.append(script_of(words(owner, key), self.at(owner, key)))
        gd = root.values.get("global_defs")
        if gd is not None:
            for key in ("notify_fifo_script", "vrrp_notify_fifo_script"):
                scripts.append(script_of(words(gd, key), self.at(gd, key)))
        self.security(scripts, "scripts ")
        for inst in instances:
            if "virtual_router_id" not in inst.values:
                self.report(Level.GENERAL_ERROR, f"({inst.head}) the virtual router id must be set")
                return
            ifname = inst.values.get("interface")
            if not isinstance(ifname, str) or ifname == "lo":
                self.report(Level.GENERAL_ERROR, f"({inst.head}) Unknown interface!")
                return
        for inst in instances:
            own = inst.values.get("interface")
            for ws in lines(inst, "track_interface"):
                if ws and ws[0] == own:
                    self.report(Level.GENERAL_ERROR,
                                f"({inst.head}) Ignoring track_interface {own} since own interface")
        for sg in root.blocks("vrrp_sync_group"):
            members = [w for ws in lines(sg, "group") for w in ws] if "group" in sg.values else []
            if len(members) == 1:
                self.report(Level.GENERAL_ERROR, f"Sync group {sg.head} has only 1 virtual "
                            "router(s) - this probably isn't what you want")
        strict = bool(gd and gd.values.get("vrrp_strict"))
        default_version = gd.values.get("vrrp_version", 2) if gd else 2
        for inst in instances:
            if not lines(inst, "virtual_ipaddress") and not inst.values.get(
                    "no_virtual_ipaddress"):
                version = inst.values.get("version", default_version)
                if version == 3 or strict or inst.values.get("strict_mode"):
                    self.report(Level.GENERAL_ERROR,
                                f"({inst.head}) No VIP specified; at least one is required")
                    return
                self.report(Level.GENERAL_ERROR,
                            f"({inst.head}) No VIP specified; at least one is sensible")
                self.report(Level.WARNING,
                            f"({inst.head}) No VIP specified; at least one is sensible")
            unicast = any(k in inst.values for k in (
                "unicast_peer", "unicast_src_ip", "check_unicast_src", "old_unicast_checksum"))
            if unicast and not lines(inst, "unicast_peer") \
                    and "unicast_fault_no_peer" not in inst.values:
                self.report(Level.DEPRECATED, f"({inst.head}) A unicast keyword has been "
                            "specified without any unicast peers. Defaulting to multicast. This "
                            "usage is deprecated - please update your configuration.")

    # BFD ---------------------------------------------------------------------
    def bfd(self) -> None:
        for bfd in self.root.blocks("bfd_instance"):
            if "neighbor_ip" not in bfd.values:
                self.report(Level.GENERAL_ERROR, f"Configuration error: BFD instance {bfd.head} "
                            "has no neighbor address set, disabling instance", bfd.where)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _head_words(node: Node) -> list[str]:
    if node.head is None or node.spec.head is None:
        return []
    return node.spec.head.render(node.head)


def vs_is_fwmark(vs: Node) -> bool:
    return _head_words(vs)[:1] == ["fwmark"]


def vs_is_group(vs: Node) -> bool:
    return _head_words(vs)[:1] == ["group"]


def vs_name(vs: Node) -> str:
    """A virtual server as keepalived names it in messages (FMT_VS)."""
    ws = _head_words(vs)
    if vs_is_fwmark(vs):
        return f"FWM {ws[1] if len(ws) > 1 else ''}"
    if vs_is_group(vs):
        return f"[{ws[1] if len(ws) > 1 else ''}]:0"
    proto = str(vs.values.get("protocol", "none")).lower()
    addr = ws[0] if ws else ""
    port = ws[1] if len(ws) > 1 else "0"
    return f"[{addr}]:{proto}:{port}"


def validate(result: ParseResult, interfaces: set[str] | None = None, *,
             host_checks: bool = True) -> None:
    """Add to ``result.diags`` what keepalived reports after reading the file.

    ``host_checks=False`` takes the users, groups and script files the file names as
    present: for checking, elsewhere, a file meant for another machine (which checks
    them itself when it loads the file).  Interfaces are ``interfaces``' business.
    """
    namespace = result.root.values.get("net_namespace")
    if namespace is not None:
        links: set[str] | None = None
        result.diags.add(Level.NOTE, f"interfaces are not checked: the agent looks them up in "
                         f"network namespace {namespace!s} when it starts")
    else:
        links = local_interfaces() if interfaces is None else interfaces
    check = _Checker(result, links, host_checks)
    check.globals_()
    check.startup_scripts()
    check.checker()
    check.vrrp()
    check.bfd()

