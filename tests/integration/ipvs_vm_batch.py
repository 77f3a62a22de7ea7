"""The IPVS cases, run inside the test VM (tests/vm/) by test_ipvs_vm.py, all in one boot.

``python -m tests.integration.ipvs_vm_batch OUTDIR`` runs every case in one Python
process (Python in the VM is slow: one import of pyroute2, several seconds), each in
a network namespace of its own, hence an IPVS table of its own. A case records what
it saw: what ``ipvsadm`` printed and what ``IpvsTable.dump`` read back. The
assertions are in test_ipvs_vm.py, on the host, one test per case; here a case only
fails when it cannot go on. Each case's result is ``OUTDIR/<case>.json``:
``{"case", "seconds", "error", "seen"}``.

Everything here dies with the VM; nothing reaches the host but OUTDIR.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keepalived_py.ipvs.model import (
    AF_INET6,
    DestKey,
    DestSpec,
    IpvsError,
    IpvsUnavailable,
    KernelService,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
    SyncDaemon,
)
from keepalived_py.ipvs.netlink import IpvsTable
from keepalived_py.ipvs.reconcile import AddDest, AddService, Op, apply, plan

Seen = dict[str, Any]
CASES: dict[str, Callable[[str], Seen]] = {}
VIP = "198.18.1.10"
VIP6 = "2001:db8:1::10"
TCP80 = ServiceKey.of("tcp", VIP, 80)


def case(function: Callable[[str], Seen]) -> Callable[[str], Seen]:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout + done.stderr


def ipvsadm(ns: str, *args: str, check: bool = True) -> str:
    return run("ip", "netns", "exec", ns, "ipvsadm", *args, check=check)


def saved(ns: str) -> list[str]:
    """The table as ipvsadm saves it (-S -n): one line per service and real server."""
    return ipvsadm(ns, "-S", "-n").splitlines()


DIRECTOR = """\
link set lo up
link add v0 type veth peer name v1
link set v0 up
link set v1 up
addr add 198.18.0.1/15 dev v0
addr add 2001:db8::1/32 dev v0 nodad
"""


def director(ns: str) -> None:
    """A namespace with lo up (the kernel refuses IPv4 real servers in a namespace
    without an IPv4 address) and a veth pair of its own (for the sync daemon)."""
    run("ip", "netns", "add", ns)
    done = subprocess.run(["ip", "-n", ns, "-batch", "-"], input=DIRECTOR, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip -n {ns} -batch: {done.stderr.strip()}")


def as_json(table: dict[ServiceKey, KernelService]) -> dict[str, Any]:
    """A dump, keyed by the services' and real servers' names."""
    out = {}
    for key, service in table.items():
        out[str(key)] = {
            "spec": dataclasses.asdict(service.spec),
            "stats": dataclasses.asdict(service.stats),
            "dests": {str(dest_key): {"spec": dataclasses.asdict(dest.spec),
                                      "active_conns": dest.active_conns,
                                      "inact_conns": dest.inact_conns,
                                      "persist_conns": dest.persist_conns,
                                      "stats": dataclasses.asdict(dest.stats)}
                      for dest_key, dest in dest_items(service)},
        }
    return out


def dest_items(service: KernelService) -> list[tuple[DestKey, Any]]:
    return sorted(service.dests.items(), key=lambda item: item[0].sort_key())


def error_of(action: Callable[[], object]) -> str | None:
    """The IpvsError's message of ``action``, None when it worked."""
    try:
        action()
    except IpvsError as e:
        return str(e)
    return None


# -- cases -------------------------------------------------------------------------

@case
def case_modprobe(ns: str) -> Seen:
    """The first table of the boot finds no IPVS family and loads ip_vs, as keepalived
    does (nothing loaded it before: the batch runs this case first)."""
    director(ns)
    seen: Seen = {"loaded_before": os.path.isdir("/sys/module/ip_vs")}
    table = IpvsTable(ns)
    seen["available"] = table.available()
    seen["loaded_after"] = os.path.isdir("/sys/module/ip_vs")
    seen["dump"] = as_json(table.dump())
    return seen


@case
def case_dests(ns: str) -> Seen:
    """NAT, DR and TUN (ipip, gue with a port and csum, IPv6 in an IPv4 service) real
    servers, weight 0, thresholds; edits, deletes, and keepalived's idempotence."""
    director(ns)
    table = IpvsTable(ns)
    seen: Seen = {}
    table.add_service(ServiceSpec(TCP80, scheduler="wrr"))
    nat = DestSpec(DestKey("198.18.2.11", 8080), fwd="NAT", weight=3)
    # DR and TUN are given another port than the service's: keepalived forces it to 80
    dr = DestSpec(DestKey("198.18.2.12", 8080), fwd="DR", weight=0, u_threshold=100,
                  l_threshold=10)
    ipip = DestSpec(DestKey("198.18.2.13", 8080), fwd="TUN")
    gue = DestSpec(DestKey("198.18.2.14", 80), fwd="TUN", tun_type="gue", tun_port=6080,
                   tun_flags="csum")
    ipip6 = DestSpec(DestKey("2001:db8:2::15", 80), fwd="TUN", weight=2)
    for dest in (nat, dr, ipip, gue, ipip6):
        table.add_dest(TCP80, dest)
    seen["added"] = saved(ns)
    seen["added_tun_info"] = ipvsadm(ns, "-L", "-n", "--tun-info").splitlines()
    seen["added_dump"] = as_json(table.dump())

    # adding what exists, deleting what is gone: no error (keepalived's ipvs_talk)
    seen["idempotent_errors"] = [
        error_of(lambda: table.add_service(ServiceSpec(TCP80, scheduler="wrr"))),
        error_of(lambda: table.add_dest(TCP80, nat)),
        error_of(lambda: table.del_dest(TCP80, DestKey("198.18.2.99", 80))),
        error_of(lambda: table.del_service(ServiceKey.of("tcp", VIP, 81))),
        error_of(lambda: table.del_dest(ServiceKey.of("tcp", VIP, 81), DestKey("198.18.2.99", 80))),
    ]
    # edits: a NAT weight (stays NAT), a DR server made NAT, the thresholds, a gue port;
    # an edit of a server that is gone adds it
    table.edit_dest(TCP80, dataclasses.replace(nat, weight=5))
    table.edit_dest(TCP80, DestSpec(DestKey("198.18.2.12", 80), fwd="NAT", weight=4,
                                    u_threshold=50, l_threshold=5))
    table.edit_dest(TCP80, dataclasses.replace(gue, tun_port=6081, tun_flags="remcsum"))
    table.edit_dest(TCP80, DestSpec(DestKey("198.18.2.16", 8080), fwd="NAT", weight=7))
    table.del_dest(TCP80, DestKey("198.18.2.13", 80))
    seen["edited"] = saved(ns)
    seen["edited_tun_info"] = ipvsadm(ns, "-L", "-n", "--tun-info").splitlines()
    seen["edited_dump"] = as_json(table.dump())
    table.del_service(TCP80)
    seen["deleted"] = saved(ns)
    seen["deleted_dump"] = as_json(table.dump())
    return seen


@case
def case_ipv6(ns: str) -> Seen:
    """An IPv6 service with IPv6 NAT and DR servers, persistence by /64."""
    director(ns)
    table = IpvsTable(ns)
    key = ServiceKey.of("tcp", VIP6, 443)
    table.add_service(ServiceSpec(key, scheduler="lc", timeout=600, granularity=64))
    table.add_dest(key, DestSpec(DestKey("2001:db8:2::11", 8443), fwd="NAT", weight=2))
    table.add_dest(key, DestSpec(DestKey("2001:db8:2::12", 8443), fwd="DR"))
    seen: Seen = {"saved": saved(ns), "dump": as_json(table.dump())}
    table.edit_service(ServiceSpec(key, scheduler="rr"))
    seen["edited"] = saved(ns)
    seen["edited_dump"] = as_json(table.dump())
    return seen


@case
def case_fwmark(ns: str) -> Seen:
    """Firewall-mark services, inet and inet6: DR real servers on port 0, NAT on its own."""
    director(ns)
    table = IpvsTable(ns)
    mark4, mark6 = ServiceKey.of_fwmark(7), ServiceKey.of_fwmark(8, AF_INET6)
    table.add_service(ServiceSpec(mark4, scheduler="wlc"))
    table.add_service(ServiceSpec(mark6, scheduler="rr", timeout=30))
    table.add_dest(mark4, DestSpec(DestKey("198.18.2.11", 80), fwd="DR"))
    table.add_dest(mark4, DestSpec(DestKey("198.18.2.12", 8080), fwd="NAT"))
    table.add_dest(mark6, DestSpec(DestKey("2001:db8:2::11", 80), fwd="DR", weight=3))
    table.add_dest(mark6, DestSpec(DestKey("2001:db8:2::12", 80), fwd="TUN"))
    seen: Seen = {"saved": saved(ns), "dump": as_json(table.dump())}
    table.del_dest(mark6, DestKey("2001:db8:2::12", 0))
    table.del_service(mark4)
    seen["after_delete"] = saved(ns)
    return seen


@case
def case_persistence(ns: str) -> Seen:
    """Persistence: a timeout and a netmask; a granularity alone (360 s); none again."""
    director(ns)
    table = IpvsTable(ns)
    with_mask = ServiceKey.of("tcp", VIP, 443)
    granularity_only = ServiceKey.of("udp", VIP, 53)
    table.add_service(ServiceSpec(with_mask, scheduler="rr", timeout=600,
                                  granularity="255.255.255.0"))
    table.add_service(ServiceSpec(granularity_only, scheduler="rr",
                                  granularity="255.255.0.0"))
    seen: Seen = {"saved": saved(ns), "dump": as_json(table.dump())}
    table.edit_service(ServiceSpec(with_mask, scheduler="rr", timeout=0))
    seen["unpersisted"] = saved(ns)
    seen["unpersisted_dump"] = as_json(table.dump())
    return seen


@case
def case_schedulers(ns: str) -> Seen:
    """sh with sh-port and sh-fallback, mh with mh-port, ops (one-packet), the sip
    persistence engine, and the others by name."""
    director(ns)
    table = IpvsTable(ns)
    services = [
        ServiceSpec(ServiceKey.of("tcp", VIP, 1), scheduler="sh",
                    flags=ServiceFlag.SH_PORT | ServiceFlag.SH_FALLBACK),
        ServiceSpec(ServiceKey.of("tcp", VIP, 2), scheduler="mh", flags=ServiceFlag.MH_PORT),
        ServiceSpec(ServiceKey.of("udp", VIP, 3), scheduler="wrr", flags=ServiceFlag.ONEPACKET),
        ServiceSpec(ServiceKey.of("udp", VIP, 5060), scheduler="rr", timeout=60, pe_name="sip"),
        ServiceSpec(ServiceKey.of("sctp", VIP, 4), scheduler="lc"),
    ]
    for name in ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sed", "nq", "fo", "ovf"):
        services.append(ServiceSpec(ServiceKey.of("tcp", VIP, 1000 + len(services)),
                                    scheduler=name))
    errors = {str(spec.key): error_of(functools.partial(table.add_service, spec))
              for spec in services}
    seen: Seen = {"errors": errors, "saved": saved(ns), "dump": as_json(table.dump())}
    # sh's flags off again, by an edit
    table.edit_service(ServiceSpec(ServiceKey.of("tcp", VIP, 1), scheduler="sh"))
    seen["sh_edited"] = [line for line in saved(ns) if f"{VIP}:1 " in line]
    return seen


@case
def case_flush(ns: str) -> Seen:
    director(ns)
    table = IpvsTable(ns)
    table.add_service(ServiceSpec(TCP80))
    table.add_dest(TCP80, DestSpec(DestKey("198.18.2.11", 80)))
    table.add_service(ServiceSpec(ServiceKey.of_fwmark(3)))
    before = saved(ns)
    table.flush()
    return {"before": before, "after": saved(ns), "dump": as_json(table.dump())}


@case
def case_timeouts(ns: str) -> Seen:
    """lvs_timeouts: read, set two, set one (the others stay), as ipvsadm sees them."""
    director(ns)
    table = IpvsTable(ns)
    seen: Seen = {"initial": dataclasses.asdict(table.get_timeouts())}
    table.set_timeouts(tcp=1000, udp=77)
    seen["set"] = dataclasses.asdict(table.get_timeouts())
    seen["set_ipvsadm"] = ipvsadm(ns, "-L", "--timeout").strip()
    table.set_timeouts(tcpfin=33)
    seen["set_again"] = dataclasses.asdict(table.get_timeouts())
    ipvsadm(ns, "--set", "500", "60", "200")
    seen["set_by_ipvsadm"] = dataclasses.asdict(table.get_timeouts())
    return seen


@case
def case_sync_daemon(ns: str) -> Seen:
    """lvs_sync_daemon: start master and backup, read, stop; read what ipvsadm started;
    the kernel's refusal while a service mixes families."""
    director(ns)
    table = IpvsTable(ns)
    seen: Seen = {"none": repr(table.sync_daemons())}
    table.start_sync_daemon(SyncDaemon("master", "v0", syncid=5, maxlen=1400, port=8849,
                                       ttl=3, group="239.1.1.1"))
    table.start_sync_daemon(SyncDaemon("backup", "v1", syncid=6))
    seen["both"] = {state: dataclasses.asdict(d) for state, d in table.sync_daemons().items()}
    seen["both_ipvsadm"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    seen["again"] = error_of(lambda: table.start_sync_daemon(SyncDaemon("master", "v0")))
    table.stop_sync_daemon("master")
    seen["stop_twice"] = error_of(lambda: table.stop_sync_daemon("master"))
    seen["backup_only"] = sorted(table.sync_daemons())
    table.stop_sync_daemon("backup")
    seen["stopped"] = sorted(table.sync_daemons())
    ipvsadm(ns, "--start-daemon", "master", "--mcast-interface", "v0", "--syncid", "9",
            "--mcast-group", "239.2.2.2", "--mcast-port", "9000", "--mcast-ttl", "2",
            "--sync-maxlen", "1000")
    seen["by_ipvsadm"] = {s: dataclasses.asdict(d) for s, d in table.sync_daemons().items()}
    table.stop_sync_daemon("master")
    table.start_sync_daemon(SyncDaemon("master", "v0", group="ff02::81"))
    seen["ipv6_group"] = {s: dataclasses.asdict(d) for s, d in table.sync_daemons().items()}
    table.stop_sync_daemon("master")
    seen["missing_interface"] = error_of(
        lambda: table.start_sync_daemon(SyncDaemon("master", "nosuch0")))
    table.add_service(ServiceSpec(TCP80))
    table.add_dest(TCP80, DestSpec(DestKey("2001:db8:2::11", 80), fwd="TUN"))
    seen["mixed_families"] = error_of(lambda: table.start_sync_daemon(SyncDaemon("master", "v0")))
    return seen


GLOBALS_CONF = """
global_defs {
    lvs_timeouts tcp 1000 udp 77
    lvs_sync_daemon v0 id 7 port 8850
}
"""


@case
def case_globals(ns: str) -> Seen:
    """lvs_timeouts and lvs_sync_daemon from a configuration (ipvs/settings.py): set,
    kept across an unchanged reload, undone at the end; the VRRP-driven daemon
    following its instance's state."""
    from keepalived_py.config import load
    from keepalived_py.ipvs.settings import IpvsGlobals, SyncDaemonDriver, sync_daemon_of
    director(ns)
    table = IpvsTable(ns)
    seen: Seen = {"before": dataclasses.asdict(table.get_timeouts())}
    root = load("globals.conf", text=GLOBALS_CONF, interfaces={"v0"}).root
    settings = IpvsGlobals(table)
    settings.apply(root)
    seen["timeouts"] = dataclasses.asdict(table.get_timeouts())
    seen["daemons"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    settings.apply(root)                # a reload with the same settings: no restart
    seen["daemons_after_reload"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    settings.restore()
    seen["restored"] = dataclasses.asdict(table.get_timeouts())
    seen["daemons_restored"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    driven = load("driven.conf", text=GLOBALS_CONF.replace("id 7", "inst VI_1"),
                  interfaces={"v0"}).root
    config = sync_daemon_of(driven)
    assert config is not None
    driver = SyncDaemonDriver(config, vrid=51, netns=ns)
    driver.follow("BACKUP")
    seen["driven_backup"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    driver.follow("MASTER")
    seen["driven_master"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    driver.stop()
    seen["driven_stopped"] = ipvsadm(ns, "-L", "--daemon").splitlines()
    return seen


@case
def case_reconcile(ns: str) -> Seen:
    """Dump, plan, apply: from nothing; after ipvsadm broke it; a service dropped. A
    service made by ipvsadm is foreign and left alone throughout."""
    director(ns)
    table = IpvsTable(ns)
    ipvsadm(ns, "-A", "-t", "198.18.1.99:25", "-s", "rr")
    ipvsadm(ns, "-a", "-t", "198.18.1.99:25", "-r", "198.18.2.99:25", "-m", "-w", "9")
    foreign = saved(ns)
    web = ServiceSpec(TCP80, scheduler="wrr")
    dns6 = ServiceSpec(ServiceKey.of("udp", VIP6, 53), scheduler="sh",
                       flags=ServiceFlag.SH_PORT)
    mark = ServiceSpec(ServiceKey.of_fwmark(5), scheduler="rr", timeout=100)
    wanted = {
        web.key: (web, {d.key: d for d in (
            DestSpec(DestKey("198.18.2.11", 8080), fwd="NAT", weight=2),
            DestSpec(DestKey("198.18.2.12", 8080), fwd="NAT", weight=1),
            DestSpec(DestKey("198.18.2.13", 80), fwd="DR", weight=0))}),
        dns6.key: (dns6, {d.key: d for d in (
            DestSpec(DestKey("2001:db8:2::11", 53), fwd="DR"),
            DestSpec(DestKey("198.18.2.21", 53), fwd="TUN", tun_type="gue", tun_port=5555))}),
        mark.key: (mark, {d.key: d for d in (
            DestSpec(DestKey("198.18.2.31", 443), fwd="DR"),)}),
    }
    seen: Seen = {}

    def round_(name: str, owned: set[ServiceKey]) -> None:
        ops = plan(wanted, table.dump(), owned)
        seen[f"{name}_ops"] = [str(op) for op in ops]
        seen[f"{name}_foreign"] = [str(k) for k in ops.foreign]
        seen[f"{name}_errors"] = [str(e) for e in apply(table, ops)]
        seen[f"{name}_saved"] = saved(ns)
        again = plan(wanted, table.dump(), owned)
        seen[f"{name}_ops_after"] = [str(op) for op in again]

    round_("first", set())
    ipvsadm(ns, "-d", "-t", f"{VIP}:80", "-r", "198.18.2.12:8080")
    ipvsadm(ns, "-e", "-t", f"{VIP}:80", "-r", "198.18.2.11:8080", "-m", "-w", "9")
    ipvsadm(ns, "-e", "-t", f"{VIP}:80", "-r", "198.18.2.13:80", "-m", "-w", "0")
    ipvsadm(ns, "-a", "-t", f"{VIP}:80", "-r", "198.18.2.77:80", "-m")
    ipvsadm(ns, "-E", "-f", "5", "-s", "wlc")
    round_("repair", set(wanted))
    del wanted[mark.key]
    round_("dropped", {web.key, dns6.key, mark.key})
    seen["foreign_before"] = foreign
    return seen


@case
def case_ipvsadm_words(ns: str) -> Seen:
    """The operations' text, given to ipvsadm in one namespace, makes the same table as
    the operations run by IpvsTable in another."""
    director(ns)
    other = f"{ns}-ipvsadm"
    director(other)
    key6 = ServiceKey.of("udp", VIP6, 53)
    mark6 = ServiceKey.of_fwmark(9, AF_INET6)
    ops: list[Op] = [
        AddService(ServiceSpec(TCP80, scheduler="wrr", timeout=300, granularity="255.255.255.0")),
        AddDest(TCP80, DestSpec(DestKey("198.18.2.11", 8080), fwd="NAT", weight=3,
                                u_threshold=10, l_threshold=2)),
        AddDest(TCP80, DestSpec(DestKey("198.18.2.12", 80), fwd="DR", weight=0)),
        AddDest(TCP80, DestSpec(DestKey("198.18.2.13", 80), fwd="TUN", tun_type="gue",
                                tun_port=6080, tun_flags="csum")),
        AddService(ServiceSpec(key6, scheduler="sh", timeout=60, granularity=48,
                               flags=ServiceFlag.SH_PORT | ServiceFlag.SH_FALLBACK
                               | ServiceFlag.ONEPACKET)),
        AddDest(key6, DestSpec(DestKey("2001:db8:2::11", 53), fwd="DR")),
        AddService(ServiceSpec(mark6, scheduler="mh", flags=ServiceFlag.MH_FALLBACK)),
        AddDest(mark6, DestSpec(DestKey("2001:db8:2::12", 0), fwd="TUN", tun_type="ipip")),
    ]
    errors = apply(IpvsTable(ns), ops)
    words = [str(op) for op in ops]
    refused = [line for line in words
               if subprocess.run(["ip", "netns", "exec", other, "ipvsadm", *line.split()],
                                 capture_output=True).returncode != 0]
    # ipvsadm -S leaves the thresholds out
    return {"words": words, "errors": [str(e) for e in errors], "refused": refused,
            "ours": saved(ns), "ipvsadm": saved(other),
            "ours_thresholds": ipvsadm(ns, "-L", "-n", "--thresholds").splitlines(),
            "ipvsadm_thresholds": ipvsadm(other, "-L", "-n", "--thresholds").splitlines()}


@case
def case_errors(ns: str) -> Seen:
    """The kernel's refusals, as one line each naming the operation and the errno."""
    director(ns)
    table = IpvsTable(ns)
    table.add_service(ServiceSpec(TCP80))
    seen: Seen = {
        "edit_missing_service": error_of(
            lambda: table.edit_service(ServiceSpec(ServiceKey.of("tcp", VIP, 81)))),
        "unknown_scheduler": error_of(
            lambda: table.add_service(ServiceSpec(ServiceKey.of("tcp", VIP, 82),
                                                  scheduler="nosuch"))),
        "nat_of_other_family": error_of(
            lambda: table.add_dest(TCP80, DestSpec(DestKey("2001:db8:2::1", 80)))),
        "gue_without_port": error_of(
            lambda: table.add_dest(TCP80, DestSpec(DestKey("198.18.2.1", 80), fwd="TUN",
                                                   tun_type="gue"))),
        "dest_of_missing_service": error_of(
            lambda: table.add_dest(ServiceKey.of("tcp", VIP, 83),
                                   DestSpec(DestKey("198.18.2.1", 80)))),
    }
    # a namespace without any IPv4 address, not even lo's
    bare = f"{ns}-bare"
    run("ip", "netns", "add", bare)
    bare_table = IpvsTable(bare)
    bare_table.add_service(ServiceSpec(TCP80))
    seen["no_ipv4_address"] = error_of(
        lambda: bare_table.add_dest(TCP80, DestSpec(DestKey("198.18.2.1", 80))))
    seen["no_ipv4_address_ipv6_dest"] = error_of(
        lambda: bare_table.add_dest(TCP80, DestSpec(DestKey("2001:db8:2::1", 80), fwd="TUN")))
    run("ip", "-n", bare, "link", "set", "lo", "up")
    seen["lo_up"] = error_of(
        lambda: bare_table.add_dest(TCP80, DestSpec(DestKey("198.18.2.1", 80))))
    missing = IpvsTable("kpy-no-such-namespace")
    seen["missing_namespace_available"] = missing.available()
    try:
        missing.dump()
    except IpvsUnavailable as e:
        seen["missing_namespace"] = str(e)
    seen["namespace_exists_after"] = os.path.exists("/run/netns/kpy-no-such-namespace")
    return seen


@case
def case_traffic(ns: str) -> Seen:
    """Counters after real traffic: a client fetches through a NAT virtual server from a
    busybox httpd in a real-server namespace."""
    client, server = f"{ns}-client", f"{ns}-server"
    for name in (ns, client, server):
        run("ip", "netns", "add", name)
        run("ip", "-n", name, "link", "set", "lo", "up")
    run("ip", "link", "add", "c0", "netns", ns, "type", "veth", "peer", "name", "eth0",
        "netns", client)
    run("ip", "link", "add", "s0", "netns", ns, "type", "veth", "peer", "name", "eth0",
        "netns", server)
    for name, dev, address in ((ns, "c0", "198.18.10.1/24"), (client, "eth0", "198.18.10.2/24"),
                               (ns, "s0", "198.18.20.1/24"), (server, "eth0", "198.18.20.11/24")):
        run("ip", "-n", name, "addr", "add", address, "dev", dev)
        run("ip", "-n", name, "link", "set", dev, "up")
    run("ip", "-n", client, "route", "add", "default", "via", "198.18.10.1")
    run("ip", "-n", server, "route", "add", "default", "via", "198.18.20.1")
    run("ip", "-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
    run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    docroot = Path(f"/run/{server}")
    docroot.mkdir()
    (docroot / "index.html").write_text("real server 11\n")
    httpd = subprocess.Popen(["ip", "netns", "exec", server, "busybox", "httpd", "-f",
                              "-p", "8080", "-h", str(docroot)])
    try:
        table = IpvsTable(ns)
        table.add_service(ServiceSpec(TCP80, scheduler="rr"))
        table.add_dest(TCP80, DestSpec(DestKey("198.18.20.11", 8080), fwd="NAT"))
        seen: Seen = {}
        # five fetches, each a new connection, in one shell (a fork from Python is slow)
        fetch = f"for i in 1 2 3 4 5; do curl -s -m 3 http://{VIP}/; done"
        seen["bodies"] = run("ip", "netns", "exec", client, "sh", "-c", fetch,
                             check=False).splitlines()
        deadline = time.monotonic() + 15
        # the kernel folds its per-cpu counters into the totals every 2 s
        polls = 0
        while True:
            polls += 1
            dump = table.dump()
            dest = dump[TCP80].dests[DestKey("198.18.20.11", 8080)]
            if dest.stats.conns >= 5 and dest.stats.outbytes or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        seen["polls"] = polls
        seen["dump"] = as_json(dump)
        seen["ipvsadm_stats"] = ipvsadm(ns, "-L", "-n", "--stats", "--exact").splitlines()
        seen["dump_after_ipvsadm"] = as_json(table.dump())
        seen["ipvsadm_list"] = ipvsadm(ns, "-L", "-n").splitlines()
        return seen
    finally:
        httpd.send_signal(signal.SIGKILL)
        httpd.wait()


@case
def case_pyroute2(ns: str) -> Seen:
    """What pyroute2 0.9.7's own IPVS helpers do (why agent/ipvs builds its messages)."""
    from pyroute2 import IPVS, IPVSDest, IPVSService
    from pyroute2.netlink.exceptions import NetlinkError

    director(ns)
    seen: Seen = {}
    ipvs = IPVS(netns=ns, flags=0)
    try:
        service = IPVSService(addr=VIP, port=80, protocol=6)
        ipvs.service("add", service=service)
        ipvs.dest("add", service=service, dest=IPVSDest(addr="198.18.2.11", port=80,
                                                        fwd_method=0))
        flags = ipvs.service("dump")[0].get_nested("IPVS_CMD_ATTR_SERVICE",
                                                   "IPVS_SVC_ATTR_FLAGS")
        seen["raw_flags"] = flags["flags"]
        reply = ipvs.dest("dump", service=service)[0]
        seen["from_message_fwd"] = IPVSDest.from_message(reply)["fwd_method"]
        seen["raw_fwd"] = reply.get_nested("IPVS_CMD_ATTR_DEST", "IPVS_DEST_ATTR_FWD_METHOD")
        ipvs.dest("set", service=service, dest=IPVSDest(addr="198.18.2.11", port=80, weight=2))
        seen["after_set"] = saved(ns)
        ipvs.service("update", service=IPVSService(addr=VIP, port=80, protocol=6,
                                                   sched_name="rr"))
        seen["after_update"] = saved(ns)
        for name, spec in (("fwmark", {"fwmark": 5}),
                           ("ipv6", {"addr": VIP6, "port": 80, "protocol": 6})):
            try:
                ipvs.service("add", service=IPVSService(**spec))
                seen[name] = "accepted"
            except NetlinkError as e:
                seen[name] = e.code
        ipvs.service("add", service=service)
        ipvs.dest("add", service=service, dest=IPVSDest(addr="198.18.2.13", port=80,
                                                        fwd_method=2, tun_type=1, tun_port=6080))
        seen["gue_port"] = ipvsadm(ns, "-L", "-n", "--tun-info").splitlines()
    finally:
        ipvs.close()
    return seen


RESTART_CONF = f"""
global_defs {{
    lvs_drain_time 60
}}
virtual_server {VIP} 53 {{
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server 198.18.2.11 53 {{
        weight 1
    }}
}}
"""
# one UDP flow, from one port, a datagram every 0.2 s (no imports beyond these: the VM)
UDP_FLOW = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.10.2", 5353))
while True:
    s.sendto(b"q", ("{VIP}", 53))
    time.sleep(0.2)
"""
UDP53 = ServiceKey.of("udp", VIP, 53)
STRAY = DestKey("198.18.2.12", 53)


def wait_dump(table: IpvsTable, until: Callable[[dict[ServiceKey, KernelService]], bool],
              timeout: float, what: str) -> dict[ServiceKey, KernelService]:
    deadline = time.monotonic() + timeout
    while True:
        dump = table.dump()
        if until(dump):
            return dump
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not seen in {timeout:g} s; the table: "
                               f"{as_json(dump)}")
        time.sleep(0.2)


def stray_conns(dump: dict[ServiceKey, KernelService]) -> int:
    dest = dump[UDP53].dests.get(STRAY) if UDP53 in dump else None
    return -1 if dest is None else dest.active_conns + dest.inact_conns


@case
def case_restart_drain(ns: str) -> Seen:
    """Our checker process started over a table a previous one left: its configuration
    has .11 only; .12, which has a UDP flow on it, is drained (weight 0) while the flow
    goes on and deleted once its connection entry has expired, long before
    lvs_drain_time."""
    client = f"{ns}-client"
    for name in (ns, client):
        run("ip", "netns", "add", name)
    # the real servers' side: nobody there, their MACs made up (no ARP, no ICMP errors)
    run("ip", "-n", ns, "-batch", "-", input=(
        "link set lo up\n"
        f"addr add {VIP}/32 dev lo\n"
        f"link add c0 type veth peer name eth0 netns {client}\n"
        "addr add 198.18.10.1/24 dev c0\nlink set c0 up\n"
        "link add s0 type veth peer name s1\nlink set s0 up\nlink set s1 up\n"
        "addr add 198.18.2.1/24 dev s0\n"
        "neigh add 198.18.2.11 lladdr 02:00:00:00:00:11 dev s0 nud permanent\n"
        "neigh add 198.18.2.12 lladdr 02:00:00:00:00:12 dev s0 nud permanent\n"))
    run("ip", "-n", client, "-batch", "-", input=(
        "link set lo up\nlink set eth0 up\naddr add 198.18.10.2/24 dev eth0\n"
        "route add default via 198.18.10.1\n"))
    run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # a UDP connection entry then lives 2 s after the flow's last datagram
    ipvsadm(ns, "--set", "0", "0", "2")
    # what a previous checker process left: .12 (weight 3, thresholds) serving the flow
    ipvsadm(ns, "-A", "-u", f"{VIP}:53", "-s", "rr")
    ipvsadm(ns, "-a", "-u", f"{VIP}:53", "-r", "198.18.2.12:53", "-m", "-w", "3",
            "-x", "100", "-y", "10")
    table = IpvsTable(ns)
    seen: Seen = {}
    directory = Path(f"/run/{ns}")
    directory.mkdir()
    conf = directory / "keepalived.conf"
    conf.write_text(RESTART_CONF)
    log_path = directory / "checker.log"
    flow = subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-S", "-c",
                             UDP_FLOW])
    checker: subprocess.Popen | None = None
    try:
        wait_dump(table, lambda d: stray_conns(d) > 0, 30, "the flow on .12")
        ipvsadm(ns, "-a", "-u", f"{VIP}:53", "-r", "198.18.2.11:53", "-m", "-w", "1")
        seen["before_dump"] = as_json(table.dump())
        with log_path.open("w") as log:
            started = time.monotonic()
            checker = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "keepalived_py.check.main",
                 "-f", str(conf), "-i", "kpy", "-l", "-G"],
                stdout=log, stderr=subprocess.STDOUT)
        dump = wait_dump(table, lambda d: UDP53 in d and STRAY in d[UDP53].dests
                         and d[UDP53].dests[STRAY].spec.weight == 0, 180,
                         "the checker setting .12 to weight 0")
        seen["started_seconds"] = round(time.monotonic() - started, 2)
        seen["draining_dump"] = as_json(dump)
        seen["draining_saved"] = saved(ns)
        # the checker looks at the connections every 2 s (runtime.DRAIN_POLL): some of
        # its looks, while the flow still goes on
        time.sleep(5)
        seen["held_dump"] = as_json(table.dump())
        flow.kill()
        flow.wait()
        stopped = time.monotonic()
        seen["after_flow_dump"] = as_json(table.dump())
        dump = wait_dump(table, lambda d: stray_conns(d) < 0, 55, ".12 deleted")
        seen["gone_seconds"] = round(time.monotonic() - stopped, 2)
        seen["after_saved"] = saved(ns)
    finally:
        for proc in (flow, checker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if log_path.exists():
            seen["log"] = [line for line in log_path.read_text(errors="replace").splitlines()
                           if "198.18.2.12" in line or "IPVS" in line]
    return seen


# -- the batch ---------------------------------------------------------------------

def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2:] or list(CASES)
    for number, name in enumerate(only):
        started = time.monotonic()
        result: dict[str, Any] = {"case": name, "error": None, "seen": None}
        try:
            result["seen"] = CASES[name](f"kpy{number}")
        except Exception:
            result["error"] = traceback.format_exc()
        result["seconds"] = round(time.monotonic() - started, 2)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"{name}: {result['seconds']} s{' FAILED' if result['error'] else ''}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
