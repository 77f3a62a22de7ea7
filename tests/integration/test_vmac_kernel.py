"""VMACs (use_vmac) on a real kernel, compared field by field with keepalived 2.2.7's.

Our VMACs are made by a small driver process inside a lab host, as the agent
would make them: sysctls are per network namespace, and /proc/sys shows the
namespace of the process that reads it.  keepalived runs in a lab of its own
(its own bridge, so the two hosts' identical MACs never meet) with the same
configuration and the same sysctls to start from.  What the comparison leaves
out is what differs by host: the base interface's MAC and link-local address
(an address equal to the base's link-local one, or to its MAC's EUI-64 one, is
compared as such), and the VIPs keepalived adds once it is master.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agents import Router, wait_for
from tests.integration.conftest import LabFactory
from tests.lab import Host, ip

# Makes the plan's VMACs and prints what it made; then, for each line on stdin,
# "reload PATH" makes the plan of another configuration (as the agent reloads),
# and anything else closes.
DRIVER = r"""
import asyncio, json, sys
from keepalived_py.config import load
from keepalived_py.vrrp.kernel import Kernel
from keepalived_py.vrrp.vmac import Vmacs, plan_vmacs

async def make(vmacs, path):
    plan = plan_vmacs(load(path).root, await vmacs.links(), owned=set(vmacs.owned))
    made = await vmacs.sync(plan.specs)
    vip_links = {name: list(i.vip_links) for name, i in plan.instances.items()}
    print(json.dumps({"made": made, "messages": plan.messages, "vip_links": vip_links}),
          flush=True)

async def main(path):
    loop = asyncio.get_running_loop()
    async with Kernel() as kernel:
        vmacs = Vmacs(kernel)
        await make(vmacs, path)
        while (line := await loop.run_in_executor(None, sys.stdin.readline)).startswith("reload"):
            await make(vmacs, line.split(None, 1)[1].strip())
        await vmacs.close()
    print(json.dumps({"closed": True}), flush=True)

asyncio.run(main(sys.argv[1]))
"""

IPV4_CONF = ("arp_ignore", "arp_filter", "accept_local", "rp_filter", "promote_secondaries")
IPV6_CONF = ("disable_ipv6", "addr_gen_mode")
LINK_FIELDS = ("link", "mtu", "link_type", "address", "broadcast", "operstate",
               "inet6_addr_gen_mode")
ADDRESS_FIELDS = ("family", "prefixlen", "scope", "nodad", "deprecated", "valid_life_time",
                  "preferred_life_time")


@dataclass(frozen=True)
class Case:
    config: str
    vips: frozenset[str]                    # left out of the VMACs' addresses
    before: tuple[tuple[str, ...], ...] = ()    # commands run on both hosts first
    messages: tuple[str, ...] = ()          # what keepalived reports, and we too


DEFAULTS = Case(
    config="""
vrrp_instance V4 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 198.18.0.100/24 }
}
vrrp_instance V6 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 2001:db8::100/64 }
}
""",
    vips=frozenset({"198.18.0.100", "2001:db8::100"}),
    # all.rp_filter above 0: keepalived moves it to 0 and raises the links below it
    before=(("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"),
            ("sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=1")),
)

OPTIONS = Case(
    config="""
global_defs {
    vmac_prefix vm
}
vrrp_instance V4 {
    interface eth0
    virtual_router_id 52
    use_vmac
    use_vmac_addr
    virtual_ipaddress { 198.18.0.52/24 }
    virtual_ipaddress_excluded {
        2001:db8::52/64
        198.18.1.52/24 dev eth1
    }
}
vrrp_instance V6 {
    interface eth0
    virtual_router_id 53
    use_vmac mine6 02:00:5e:11:22
    vmac_xmit_base
    virtual_ipaddress { fe80::53/64 }
}
vrrp_instance U6 {
    interface eth0
    virtual_router_id 54
    use_vmac
    unicast_peer { 2001:db8::99 }
    virtual_ipaddress { 2001:db8::54/64 }
}
vrrp_instance X {
    interface eth0
    virtual_router_id 55
    use_vmac vip1
    virtual_ipaddress { 198.18.0.55/24 }
}
""",
    vips=frozenset({"198.18.0.52", "2001:db8::52", "198.18.1.52", "fe80::53", "2001:db8::54",
                    "198.18.0.55"}),
    # a private macvlan by the configured name, with another MAC: updated in place
    before=(("ip", "link", "add", "vip1", "link", "eth0", "address", "02:00:00:00:00:01",
             "type", "macvlan", "mode", "private"),
            ("sysctl", "-qw", "net.ipv4.conf.eth1.arp_filter=1")),
    messages=("(U6) unicast with use_vmac requires vmac_xmit_base - setting",
              "(X) VMAC vip1 already exists but is incompatible. It will be deleted/updated"),
)

NO_BASE_LINK_LOCAL = Case(
    config="""
vrrp_instance V6 {
    interface eth0
    virtual_router_id 57
    use_vmac
    virtual_ipaddress { 2001:db8::157/64 }
}
vrrp_instance S6 {
    interface eth0
    virtual_router_id 58
    use_vmac
    mcast_src_ip 2001:db8::11
    virtual_ipaddress { 2001:db8::158/64 }
}
""",
    vips=frozenset({"2001:db8::157", "2001:db8::158"}),
    # no link-local address on the base: the VMAC gets the EUI-64 one of the base's
    # MAC; a configured source goes on the VMAC instead
    before=(("ip", "addr", "flush", "dev", "eth0", "scope", "link"),),
)

IPV6_FIRST = Case(
    config="""
vrrp_instance V6 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 2001:db8::100/64 }
}
vrrp_instance V4 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 198.18.0.100/24 }
}
""",
    vips=DEFAULTS.vips,
    # the first instance takes vrrp.51 whatever its family; the IPv6 VMAC, made
    # before all.rp_filter goes to 0, is raised with the other links
    before=(("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"),),
)

# the base's link-local address is not its MAC's EUI-64 one: the VMAC takes the address
OWN_BASE_LINK_LOCAL = Case(
    config=NO_BASE_LINK_LOCAL.config,
    vips=NO_BASE_LINK_LOCAL.vips,
    before=(("ip", "addr", "flush", "dev", "eth0", "scope", "link"),
            ("ip", "addr", "add", "fe80::11/64", "dev", "eth0", "nodad")),
)

CASES = [DEFAULTS, OPTIONS, NO_BASE_LINK_LOCAL, OWN_BASE_LINK_LOCAL, IPV6_FIRST]
CASE_IDS = ["defaults", "options", "no-base-link-local", "own-base-link-local", "ipv6-first"]


# -- looking at a host ----------------------------------------------------------------

def ip_json(host: Host, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", "-n", host.netns, *args], capture_output=True,
                          text=True, check=True, timeout=30)
    return json.loads(done.stdout or "[]")


def sysctls(host: Host, keys: list[str]) -> dict[str, str]:
    """/proc/sys values read inside the host's namespace ("" where there is none)."""
    script = 'for k in "$@"; do printf "%s=%s\\n" "$k" "$(cat /proc/sys/$k 2>/dev/null)"; done'
    out = host.run(["sh", "-c", script, "sh", *keys]).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def conf_keys(ifname: str) -> list[str]:
    return [f"net/ipv4/conf/{ifname}/{k}" for k in IPV4_CONF] + \
        [f"net/ipv6/conf/{ifname}/{k}" for k in IPV6_CONF]


def vmac_names(host: Host) -> dict[str, int]:
    return {link["ifname"]: link["ifindex"] for link in ip_json(host, "-d", "link")
            if link.get("linkinfo", {}).get("info_kind") == "macvlan"}


def link_local(host: Host, ifname: str) -> str | None:
    addrs = ip_json(host, "addr", "show", "dev", ifname)[0].get("addr_info", [])
    return next((a["local"] for a in addrs if a["scope"] == "link"), None)


def eui64(mac: str) -> str:
    """The EUI-64 link-local address of a MAC, worked out by the kernel's rules."""
    octets = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([octets[0] ^ 2]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + eui))


def vmac_view(host: Host, ifname: str, vips: frozenset[str]) -> dict[str, Any]:
    """A VMAC as keepalived's and ours can be compared: its link, sysctls, addresses."""
    link = ip_json(host, "-d", "link", "show", "dev", ifname)[0]
    view: dict[str, Any] = {key: link.get(key) for key in LINK_FIELDS}
    view["flags"] = sorted(link["flags"])
    view["kind"] = link["linkinfo"]["info_kind"]
    view["mode"] = link["linkinfo"]["info_data"]["mode"]
    # "ipv4/arp_ignore": the same key on both hosts
    view["sysctls"] = {f"{key.split('/')[1]}/{key.rsplit('/', 1)[1]}": value
                       for key, value in sysctls(host, conf_keys(ifname)).items()}
    base = ip_json(host, "link", "show", "dev", link["link"])[0]
    names = {eui64(base["address"]): "the base MAC's EUI-64",
             link_local(host, link["link"]): "the base's link-local"}
    addresses = []
    for addr in ip_json(host, "addr", "show", "dev", ifname)[0].get("addr_info", []):
        if addr["local"] in vips:
            continue
        shown = {key: addr.get(key) for key in ADDRESS_FIELDS}
        shown["local"] = names.get(addr["local"], addr["local"])
        addresses.append(shown)
    view["addresses"] = sorted(addresses, key=json.dumps)
    return view


def host_view(host: Host) -> dict[str, str]:
    """The namespace-wide sysctls and those of the base interfaces.

    Not the rp_filter of other links: keepalived raises only those it had news
    of since it started, we raise every one below all.rp_filter (see
    test_every_link_keeps_its_effective_rp_filter)."""
    keys = [f"net/ipv4/conf/{name}/{key}" for name in ("all", "default")
            for key in ("rp_filter", "arp_ignore", "arp_filter")]
    keys += conf_keys("eth0")
    keys += [f"net/ipv4/conf/eth1/{key}" for key in ("arp_ignore", "arp_filter")]
    return sysctls(host, keys)


def everything(host: Host) -> dict[str, Any]:
    """What a host has: links, addresses, and every IPv4/IPv6 conf sysctl of every link."""
    links = ip_json(host, "-d", "link")
    names = sorted(link["ifname"] for link in links)
    keys = [k for name in ["all", "default", *names] for k in conf_keys(name)]
    # DAD's progress ("tentative") is the kernel's, not something we left behind
    addrs = {a["ifname"]: sorted(json.dumps({k: v for k, v in x.items() if k != "tentative"},
                                            sort_keys=True) for x in a.get("addr_info", []))
             for a in ip_json(host, "addr")}
    return {"links": names, "addresses": addrs, "sysctls": sysctls(host, keys)}


# -- running both ---------------------------------------------------------------------

def prepare(host: Host, case: Case) -> None:
    """A second link (for VIPs on another interface), then the case's own commands."""
    ip("-n", host.netns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    ip("-n", host.netns, "link", "set", "eth1", "up")
    ip("-n", host.netns, "link", "set", "eth1p", "up")
    ip("-n", host.netns, "addr", "add", "198.18.1.11/24", "dev", "eth1")
    for command in case.before:
        host.run(list(command))


@dataclass
class Ours:
    """The driver process: our VMACs live as long as it does."""

    host: Host
    config: Path
    proc: subprocess.Popen[str] = field(init=False)
    made: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.proc = self.host.spawn([sys.executable, "-c", DRIVER, str(self.config)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        self.made = self._reply()

    def _reply(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise AssertionError(f"VMAC driver failed: {self.proc.communicate()[1]}")
        return json.loads(line)

    def reload(self, config: Path) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"reload {config}\n")
        self.proc.stdin.flush()
        self.made = self._reply()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self._reply() == {"closed": True}
        self.proc.wait(10)


@pytest.fixture
def hosts(lab_factory: LabFactory) -> tuple[Host, Host]:
    """Our host and keepalived's, each alone on a bridge of its own."""
    return lab_factory(["a"]).host("a"), lab_factory(["k"]).host("k")


@pytest.fixture
def keepalived(hosts: tuple[Host, Host]) -> Iterator[list[Router]]:
    routers: list[Router] = []
    yield routers
    for router in routers:
        router.close()


def start_keepalived(host: Host, config: str, routers: list[Router]) -> Router:
    router = Router(host, config, kind="keepalived")
    routers.append(router)
    router.start()
    wait_for("keepalived to start", lambda: "Startup complete" in router.log_text())
    return router


# -- the tests ------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_vmacs_are_made_as_keepalived_makes_them(
        hosts: tuple[Host, Host], keepalived: list[Router], tmp_path: Path, case: Case) -> None:
    a, k = hosts
    for host in hosts:
        prepare(host, case)
    before = {host: vmac_names(host) for host in hosts}
    config = tmp_path / "keepalived.conf"
    config.write_text(case.config)

    ours = Ours(a, config)
    try:
        router = start_keepalived(k, case.config, keepalived)
        names = vmac_names(a)
        assert names.keys() == vmac_names(k).keys()
        assert set(ours.made["made"]) == names.keys()
        for name in names:
            assert vmac_view(a, name, case.vips) == vmac_view(k, name, case.vips), name
        assert host_view(a) == host_view(k)
        # a link that was there keeps its index (it is updated, not made again)
        for host in hosts:
            for name, index in before[host].items():
                assert vmac_names(host)[name] == index
        for message in case.messages:
            assert message in ours.made["messages"]
            assert message in router.log_text()
    finally:
        ours.close()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_close_leaves_nothing_behind(hosts: tuple[Host, Host], tmp_path: Path,
                                     case: Case) -> None:
    """Every VMAC goes (a pre-existing one we took over too, as keepalived's is), and
    every sysctl is back: rp_filter of all, default and each link, and the base's
    arp_ignore/arp_filter, which keepalived 2.2.7 leaves at 1."""
    a = hosts[0]
    prepare(a, case)
    config = tmp_path / "keepalived.conf"
    config.write_text(case.config)
    taken_over = set(vmac_names(a))
    start = everything(a)

    ours = Ours(a, config)
    assert set(vmac_names(a)) > taken_over
    ours.close()

    after = everything(a)
    assert set(after["links"]) == set(start["links"]) - taken_over
    # what the taken-over links had went with them
    start["links"] = after["links"]
    for name in taken_over:
        start["addresses"].pop(name, None)
        for key in conf_keys(name):
            start["sysctls"].pop(key)
    assert after == start


def test_vip_links(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """Where each VIP goes: the instance's family on its VMAC, the other family on the
    base unless use_vmac_addr gives it one, a VIP on another link on a VMAC there."""
    a = hosts[0]
    prepare(a, OPTIONS)
    config = tmp_path / "keepalived.conf"
    config.write_text(OPTIONS.config)
    ours = Ours(a, config)
    try:
        assert ours.made["vip_links"] == {
            "V4": ["vm.52", "vm6.52", "vm1.52"], "V6": ["mine6"], "U6": ["vm.54"],
            "X": ["vip1"]}
        bases = {link["ifname"]: link.get("link") for link in ip_json(a, "-d", "link")}
        assert (bases["vm6.52"], bases["vm1.52"]) == ("eth0", "eth1")
    finally:
        ours.close()


def test_a_vmac_left_behind_is_taken_over_and_brought_up(hosts: tuple[Host, Host],
                                                         tmp_path: Path) -> None:
    """A VMAC a killed run left (down, sysctls unset) is reused under its index and
    configured.  keepalived 2.2.7 reuses it as it is, and its instance stays in FAULT
    (interface down): a deliberate difference."""
    a = hosts[0]
    prepare(a, DEFAULTS)
    a.run(["ip", "link", "add", "vrrp.51", "link", "eth0", "address", "00:00:5e:00:01:33",
           "type", "macvlan", "mode", "private"])
    index = vmac_names(a)["vrrp.51"]
    config = tmp_path / "keepalived.conf"
    config.write_text(DEFAULTS.config)
    ours = Ours(a, config)
    try:
        assert ours.made["made"]["vrrp.51"] == index
        view = vmac_view(a, "vrrp.51", DEFAULTS.vips)
        assert "UP" in view["flags"] and view["inet6_addr_gen_mode"] == "none"
        assert {key: view["sysctls"][key] for key in (
            "ipv4/arp_ignore", "ipv4/accept_local", "ipv4/rp_filter", "ipv4/promote_secondaries",
            "ipv6/disable_ipv6")} == {"ipv4/arp_ignore": "1", "ipv4/accept_local": "1",
                                      "ipv4/rp_filter": "0", "ipv4/promote_secondaries": "1",
                                      "ipv6/disable_ipv6": "1"}
        assert sysctls(a, ["net/ipv4/conf/eth0/arp_ignore", "net/ipv4/conf/eth0/arp_filter"]) \
            == {"net/ipv4/conf/eth0/arp_ignore": "1", "net/ipv4/conf/eth0/arp_filter": "1"}
    finally:
        ours.close()
    assert "vrrp.51" not in vmac_names(a)


def test_every_link_keeps_its_effective_rp_filter(hosts: tuple[Host, Host],
                                                  tmp_path: Path) -> None:
    """all.rp_filter goes to 0 for the VMAC; every other link is raised to its value
    first, so none filters less than before.  keepalived 2.2.7 raises only the links
    it has had a netlink message about since it started (here eth0, whose
    promiscuity the macvlan changes), and lo and eth1 stop filtering: a deliberate
    difference."""
    a = hosts[0]
    prepare(a, DEFAULTS)
    config = tmp_path / "keepalived.conf"
    config.write_text(DEFAULTS.config)
    ours = Ours(a, config)
    try:
        got = sysctls(a, [f"net/ipv4/conf/{name}/rp_filter"
                          for name in ("all", "default", "lo", "eth0", "eth1", "vrrp.51")])
        assert got == {"net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/default/rp_filter": "2",
                       "net/ipv4/conf/lo/rp_filter": "2", "net/ipv4/conf/eth0/rp_filter": "2",
                       "net/ipv4/conf/eth1/rp_filter": "2", "net/ipv4/conf/vrrp.51/rp_filter": "0"}
    finally:
        ours.close()


RELOAD_BEFORE = """
vrrp_instance V4 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 198.18.0.100/24 }
}
vrrp_instance V6 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 2001:db8::100/64 }
}
vrrp_instance W6 {
    interface eth0
    virtual_router_id 56
    use_vmac
    virtual_ipaddress { 2001:db8::156/64 }
}
"""

# V6 goes, W6 turns to vmac_xmit_base (its link-local address goes), N4 comes
RELOAD_AFTER = """
vrrp_instance V4 {
    interface eth0
    virtual_router_id 51
    use_vmac
    virtual_ipaddress { 198.18.0.100/24 }
}
vrrp_instance W6 {
    interface eth0
    virtual_router_id 56
    use_vmac
    vmac_xmit_base
    virtual_ipaddress { 2001:db8::156/64 }
}
vrrp_instance N4 {
    interface eth0
    virtual_router_id 57
    use_vmac
    virtual_ipaddress { 198.18.0.157/24 }
}
"""


def test_a_reload_keeps_removes_and_makes_vmacs_as_keepalived_does(
        hosts: tuple[Host, Host], keepalived: list[Router], tmp_path: Path) -> None:
    a, k = hosts
    vips = frozenset({"198.18.0.100", "2001:db8::100", "2001:db8::156", "198.18.0.157",
                      "fe80::156"})
    for host in hosts:
        prepare(host, DEFAULTS)
    first, second = tmp_path / "first.conf", tmp_path / "second.conf"
    first.write_text(RELOAD_BEFORE)
    second.write_text(RELOAD_AFTER)
    ours = Ours(a, first)
    try:
        router = start_keepalived(k, RELOAD_BEFORE, keepalived)
        indexes = {host: vmac_names(host) for host in hosts}
        assert indexes[a].keys() == indexes[k].keys() == {"vrrp.51", "vrrp6.51", "vrrp.56"}
        # a master's link-local VIP on the VMAC: the reload must leave it alone
        a.run(["ip", "addr", "add", "fe80::156/64", "dev", "vrrp.56", "nodad"])

        ours.reload(second)
        router.conf.write_text(RELOAD_AFTER)
        router.proc.send_signal(signal.SIGHUP)
        wait_for("keepalived to reload", lambda: "Reload complete" in router.log_text())

        names = vmac_names(a)
        assert names.keys() == vmac_names(k).keys() == {"vrrp.51", "vrrp.56", "vrrp.57"}
        for host in hosts:
            for kept in ("vrrp.51", "vrrp.56"):
                assert vmac_names(host)[kept] == indexes[host][kept], (host, kept)
        for name in names:
            assert vmac_view(a, name, vips) == vmac_view(k, name, vips), name
        assert vmac_view(a, "vrrp.56", vips)["addresses"] == []
        assert "fe80::156/64" in a.addresses("vrrp.56")
        assert host_view(a) == host_view(k)
    finally:
        ours.close()
