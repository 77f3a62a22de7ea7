"""Static addresses, routes and rules in a real kernel, side by side with keepalived 2.2.7.

Two lab hosts on two separate LANs get the same configuration: keepalived
runs on one, our StaticEntries on the other.  What each leaves in the kernel
(``ip -j addr/route/rule``, minus what was there before) must be the same,
field by field, and so must the netlink events a reload causes
(``ip monitor``): an entry that did not change is not touched by either.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from keepalived_py.config import parse
from keepalived_py.vrrp.kernel import Kernel
from keepalived_py.vrrp.static import StaticEntries

from tests.integration.conftest import LabFactory
from tests.lab import Host, ip

T = TypeVar("T")
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"

CONF_1 = """
global_defs {
  router_id static
}
static_ipaddress {
  198.18.1.1/24 dev eth0
  198.18.2.1/32 dev eth0 brd + label eth0:st scope link
  198.18.4.1/24 dev eth1 brd +
  198.18.5.1/24 dev eth1 brd +
  198.18.6.1 dev eth0 peer 198.18.6.2
  2001:db8:1::1/64 dev eth0
  2001:db8:2::1 dev eth1
  2001:db8:3::1/64 dev eth0 -nodad preferred_lft 100
}
static_routes {
  198.18.10.0/24 via 198.18.0.1 dev eth0
  198.18.11.0/24 dev eth1 metric 50 table 100
  198.18.12.0/24 via 198.18.0.1 dev eth0 no_track protocol static
  198.18.14.0/24 via 198.18.0.1
  198.18.15.0/24 via 198.18.0.1 dev eth0 mtu lock 1400 advmss 1300
  198.18.16.0/24 via 198.18.0.1 dev eth0 src 198.18.0.11
  blackhole 198.18.13.0/24
  2001:db8:10::/64 via 2001:db8::1 dev eth0
  2001:db8:11::/64 dev eth1 metric 300 pref high
}
static_rules {
  from 198.18.1.0/24 table 100
  from 198.18.2.0/24 to 198.18.3.0/24 table 101 priority 200
  from 198.18.7.0/24 table 100 priority 400
  fwmark 5/0xff iif eth1 table 100 priority 300
  from 2001:db8:1::/64 table 100
  not from 198.18.8.0/24 unreachable priority 500
}
"""

CONF_2 = """
global_defs {
  router_id static
}
static_ipaddress {
  198.18.1.1/24 dev eth0
  198.18.2.1/32 dev eth0 brd + label eth0:st scope link
  198.18.4.2/24 dev eth1 brd +
  198.18.5.1/24 dev eth1 brd -
  198.18.6.1 dev eth0 peer 198.18.6.2
  2001:db8:1::1/64 dev eth0
  2001:db8:3::1/64 dev eth0 -nodad preferred_lft 100
}
static_routes {
  198.18.10.0/24 via 198.18.0.1 dev eth0
  198.18.11.0/24 dev eth1 metric 60 table 100
  198.18.12.0/24 via 198.18.0.1 dev eth0 no_track protocol static
  198.18.14.0/24 via 198.18.0.1
  198.18.15.0/24 via 198.18.0.1 dev eth0 mtu lock 1300 advmss 1300
  198.18.16.0/24 via 198.18.0.1 dev eth0 src 198.18.1.1
  blackhole 198.18.13.0/24
  2001:db8:10::/64 via 2001:db8::1 dev eth0
  2001:db8:12::/64 dev eth1 metric 300
}
static_rules {
  from 198.18.1.0/24 table 100
  from 198.18.2.0/24 to 198.18.3.0/24 table 101 priority 200
  from 198.18.7.0/24 table 102 priority 400
  fwmark 5/0xff iif eth1 table 100 priority 300
  from 2001:db8:1::/64 table 100
  from 198.18.9.0/24 table 100 priority 600
}
"""

# track_group makes keepalived watch IPv4 routes and rules (vrrp.c
# process_static_entries); the instance is there to be the group's member and
# keeps to its own VIP, which the comparison leaves out
TRACKED = """
track_group TG {{
  group {{
    VI_1
  }}
}}
static_ipaddress {{
  198.18.1.1/24 dev eth0
  198.18.3.1/24 dev eth0 no_track
  198.18.4.1/24 dev eth1
  2001:db8:4::1/64 dev eth1
}}
static_routes {{
  198.18.10.0/24 via 198.18.0.1 dev eth0
  198.18.11.0/24 dev eth1{group}
  198.18.12.0/24 via 198.18.0.1 dev eth0 no_track
  198.18.14.0/24 via 198.18.0.1
}}
static_rules {{
  from 198.18.7.0/24 table 100 priority 400
  from 198.18.8.0/24 iif eth1 table 100 priority 500{group}
}}
vrrp_instance VI_1 {{
  interface eth0
  virtual_router_id 51
  priority 100
  virtual_ipaddress {{
    {vip}/24
  }}
}}
"""
VIP = "198.18.0.100"


# -- the two sides -------------------------------------------------------------------

class Keepalived:
    """keepalived 2.2.7 in a lab host, with its files in a directory of its own."""

    def __init__(self, host: Host, workdir: Path) -> None:
        self.host, self.dir = host, workdir
        self.conf = workdir / "keepalived.conf"
        self.log = workdir / "log"
        self.proc: subprocess.Popen[Any] | None = None

    def start(self, config: str, *options: str) -> None:
        self.conf.write_text(config)
        d = self.dir
        argv = [KEEPALIVED, "-n", "-l", "-D", *options, "-f", str(self.conf),
                "-p", str(d / "ka.pid"), "-r", str(d / "vrrp.pid"), "-c", str(d / "chk.pid"),
                "-b", str(d / "bfd.pid")]
        with self.log.open("a") as log:
            self.proc = self.host.spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        self.wait_log("Startup complete", 1)

    def reload(self, config: str) -> None:
        self.conf.write_text(config)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("Reload complete", 1)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)
        self.proc = None

    def wait_log(self, text: str, count: int) -> None:
        wait_for(f"keepalived to log {text!r}",
                 lambda: self.log.read_text(errors="replace").count(text) >= count)


class Ours:
    """StaticEntries on a loop that lives between the test's steps."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.runner = asyncio.Runner()
        self.kernel = Kernel(host.netns)
        self.entries = StaticEntries(self.kernel)
        self.watcher: asyncio.Task[None] | None = None

    def do(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def start(self, config: str) -> None:
        self.do(self.entries.start(parse("keepalived.conf", text=config).root))

    def reload(self, config: str) -> None:
        self.do(self.entries.reload(parse("keepalived.conf", text=config).root))

    def watch(self) -> None:
        async def begin() -> asyncio.Task[None]:
            task = asyncio.create_task(self.entries.watch())
            await asyncio.sleep(0.2)            # subscribed and links read
            return task
        self.watcher = self.do(begin())

    def let_run(self, seconds: float) -> None:
        """Run the loop, so that the watcher hears what happened meanwhile."""
        self.do(asyncio.sleep(seconds))
        if self.watcher is not None and self.watcher.done():
            self.watcher.result()               # a watcher that died says why

    def stop(self, release: bool = True) -> None:
        self.do(self.entries.stop(release))
        if self.watcher is not None:
            self.do(asyncio.wait_for(self.watcher, 5))

    def close(self) -> None:
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()
        self.do(self.kernel.close())
        self.runner.close()


class Monitor:
    """``ip monitor address route rule`` on a host, as a multiset of event lines."""

    def __init__(self, host: Host, workdir: Path) -> None:
        self.out = workdir / f"monitor-{time.monotonic_ns()}"
        with self.out.open("w") as out:
            self.proc = host.spawn(["ip", "monitor", "address", "route", "rule"], stdout=out,
                                   stderr=subprocess.STDOUT)
        time.sleep(0.3)                         # subscribed before anything happens

    def events(self) -> Counter[str]:
        time.sleep(0.5)                         # the last events written out
        self.proc.terminate()
        self.proc.wait(5)
        lines = self.out.read_text().splitlines()
        # an address event starts with the link's index, which may differ
        return Counter(line.split(": ", 1)[1] if line[:1].isdigit() and ": " in line
                       else line.strip() for line in lines if line.strip())


def wait_for(what: str, check: Any, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- what a host has -------------------------------------------------------------------

def ip_json(host: Host, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", "-n", host.netns, *args], capture_output=True, text=True,
                          check=True, timeout=30)
    return json.loads(done.stdout or "[]")


def kernel_state(host: Host) -> dict[str, Counter[str]]:
    """Addresses per link, routes of every table and rules, as canonical JSON lines."""
    addresses = Counter(json.dumps({"dev": link["ifname"], **a}, sort_keys=True)
                        for link in ip_json(host, "addr", "show")
                        for a in link.get("addr_info", ()))
    state = {"addr": addresses}
    for family in ("-4", "-6"):
        state[f"route{family}"] = Counter(json.dumps(r, sort_keys=True) for r in ip_json(
            host, family, "route", "show", "table", "all"))
        state[f"rule{family}"] = Counter(json.dumps(r, sort_keys=True)
                                         for r in ip_json(host, family, "rule", "show"))
    return state


def added(host: Host, base: dict[str, Counter[str]],
          leave_out: str = "\0") -> dict[str, list[dict[str, Any]]]:
    """What the host has beyond ``base``, without lines mentioning ``leave_out``."""
    now = kernel_state(host)
    return {kind: sorted((json.loads(x) for x in (now[kind] - base[kind]).elements()
                          if leave_out not in x), key=lambda d: json.dumps(d, sort_keys=True))
            for kind in now}


def leftovers(host: Host, base: dict[str, Counter[str]]) -> dict[str, list[dict[str, Any]]]:
    return {kind: found for kind, found in added(host, base).items() if found}


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kpy-static-") as d:
        yield Path(d)


def prepare(host: Host) -> None:
    """A second link (a veth pair inside the host) for entries on another interface."""
    ns = host.netns
    ip("-n", ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    for link in ("eth1", "eth1p"):
        host.run(["sysctl", "-qw", f"net.ipv6.conf.{link}.accept_dad=0"])
        ip("-n", ns, "link", "set", link, "up")
    ip("-n", ns, "addr", "add", "198.18.20.11/24", "dev", "eth1")
    # link-local addresses settled, so that the baselines hold still
    wait_for("link-local addresses", lambda: sum(
        a["family"] == "inet6" and a["scope"] == "link" and not a.get("tentative")
        for link in ip_json(host, "addr", "show") for a in link.get("addr_info", ())) >= 3)


@pytest.fixture
def sides(lab_factory: LabFactory, workdir: Path) -> Iterator[tuple[Keepalived, Ours]]:
    """keepalived and ours, each on a host of its own LAN."""
    ka_host = lab_factory(["ka"]).host("ka")
    py_host = lab_factory(["py"]).host("py")
    for host in (ka_host, py_host):
        prepare(host)
    ours = Ours(py_host)
    try:
        yield Keepalived(ka_host, workdir), ours
    finally:
        ours.close()


def all_removed(ka: Keepalived, ka_base: dict, ours: Ours, py_base: dict) -> None:
    """Both stopped: nothing of theirs is left, but for a keepalived bug.

    keepalived 2.2.7 cannot remove an address with a peer: its RTM_DELADDR
    names the local address as IFA_ADDRESS, which the kernel does not find.
    """
    assert leftovers(ours.host, py_base) == {}
    left = leftovers(ka.host, ka_base)
    assert {a.get("address") for a in left.pop("addr", [])} <= {"198.18.6.2"}
    assert {r["prefsrc"] for r in left.pop("route-4", [])} <= {"198.18.6.1"}
    assert left == {}


def baselines(ka: Keepalived, ours: Ours) -> tuple[dict, dict]:
    return kernel_state(ka.host), kernel_state(ours.host)


# -- tests ------------------------------------------------------------------------------

def test_start_reload_stop_match_keepalived(sides: tuple[Keepalived, Ours],
                                           workdir: Path) -> None:
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)

    ka.start(CONF_1)
    ours.start(CONF_1)
    ka_added, py_added = added(ka.host, ka_base), added(ours.host, py_base)
    assert py_added == ka_added
    # what keepalived gives them, seen in our kernel too
    routes = {r["dst"]: r for r in py_added["route-4"] + py_added["route-6"]}
    assert routes["198.18.10.0/24"]["protocol"] == "keepalived"
    assert routes["198.18.12.0/24"]["protocol"] == "static"          # no_track keeps its own
    assert routes["198.18.13.0/24"]["type"] == "blackhole"
    rules = {r["priority"]: r for r in py_added["rule-4"] + py_added["rule-6"]}
    assert rules[16384]["src"] in ("198.18.1.0", "2001:db8:1::")      # numbered per family
    assert {r["protocol"] for r in rules.values()} == {"keepalived"}
    addrs = {a["local"]: a for a in py_added["addr"] if "local" in a}
    assert addrs["2001:db8:2::1"]["preferred_life_time"] == 0          # a /128: deprecated
    assert addrs["198.18.2.1"]["label"] == "eth0:st"

    ka_events, py_events = Monitor(ka.host, workdir), Monitor(ours.host, workdir)
    ka.reload(CONF_2)
    ours.reload(CONF_2)
    ka_seen, py_seen = ka_events.events(), py_events.events()
    assert py_seen == ka_seen
    assert py_seen                                  # the reload did change things
    # unchanged entries are not touched: no event names them, but for the
    # replace of an unchanged route that the kernel announces for IPv6 only
    for untouched in ("198.18.10.0/24", "198.18.1.1/24", "198.18.1.0/24"):
        assert not [line for line in py_seen if untouched in line], untouched
    # routes kept across the reload are replaced in place, never deleted
    for kept in ("198.18.15.0/24", "2001:db8:10::/64"):
        assert not [line for line in py_seen if line.startswith(f"Deleted {kept}")], kept
        assert [line for line in py_seen if line.startswith(kept)], kept
    assert added(ours.host, py_base) == added(ka.host, ka_base)
    # keepalived leaves an address whose broadcast changed as it was
    brd = {a.get("broadcast") for a in added(ours.host, py_base)["addr"]
           if a.get("local") == "198.18.5.1"}
    assert brd == {"198.18.5.255"}

    ka.stop()
    ours.stop()
    all_removed(ka, ka_base, ours, py_base)


def test_dont_release_does_not_keep_static_entries(sides: tuple[Keepalived, Ours]) -> None:
    # keepalived -V (--dont-release-vrrp) keeps VIPs, not static entries:
    # vrrp_terminate_phase1 clears them whatever the flag
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)
    ka.start(CONF_1, "-V")
    ours.start(CONF_1)
    assert added(ours.host, py_base) == added(ka.host, ka_base)
    assert added(ours.host, py_base)["rule-4"]
    ka.stop()
    ours.stop(release=False)
    all_removed(ka, ka_base, ours, py_base)


def test_leftovers_are_adopted_and_stale_rules_replaced(sides: tuple[Keepalived, Ours],
                                                        workdir: Path) -> None:
    # vrrp_daemon.c start_vrrp: leftover static addresses and routes are added
    # again (EEXIST counts as done), static rules are removed first and re-added
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)
    for host in (ka.host, ours.host):
        host.run(["ip", "addr", "add", "198.18.1.1/24", "dev", "eth0"])
        host.run(["ip", "route", "add", "198.18.10.0/24", "via", "198.18.0.1", "dev", "eth0",
                  "proto", "keepalived"])
        host.run(["ip", "rule", "add", "from", "198.18.7.0/24", "table", "100", "priority",
                  "400", "proto", "keepalived"])
    ka_events, py_events = Monitor(ka.host, workdir), Monitor(ours.host, workdir)
    ka.start(CONF_1)
    ours.start(CONF_1)
    ka_seen, py_seen = ka_events.events(), py_events.events()
    assert py_seen == ka_seen
    assert py_seen["Deleted 400:\tfrom 198.18.7.0/24 lookup 100 proto keepalived"] == 1
    assert not [line for line in py_seen if "198.18.10.0/24" in line]
    assert added(ours.host, py_base) == added(ka.host, ka_base)
    ka.stop()
    ours.stop()
    all_removed(ka, ka_base, ours, py_base)


@pytest.mark.parametrize("group", [" track_group TG", ""], ids=["track_group", "no_group"])
def test_deleted_entries_come_back_as_with_keepalived(sides: tuple[Keepalived, Ours],
                                                      group: str) -> None:
    # keepalived_netlink.c: a deleted static address is always put back, routes
    # and rules only where keepalived listens for them (a track_group in that
    # family); vrrp_if.c interface_up: a link coming up gets its addresses and
    # routes back; no_track entries and a route without dev are left alone
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)
    config = TRACKED.format(group=group, vip=VIP)
    ka.start(config)
    ours.start(config)
    ours.watch()
    assert added(ours.host, py_base) == added(ka.host, ka_base, VIP)

    deletions = [["ip", "addr", "del", "198.18.1.1/24", "dev", "eth0"],
                 ["ip", "addr", "del", "198.18.3.1/24", "dev", "eth0"],
                 ["ip", "route", "del", "198.18.10.0/24"],
                 ["ip", "route", "del", "198.18.11.0/24"],
                 ["ip", "route", "del", "198.18.12.0/24"],
                 ["ip", "route", "del", "198.18.14.0/24"],
                 ["ip", "rule", "del", "priority", "400"],
                 ["ip", "rule", "del", "priority", "500"]]
    for host in (ka.host, ours.host):
        for argv in deletions:
            host.run(argv)
    time.sleep(1)
    ours.let_run(1)
    py_now, ka_now = added(ours.host, py_base), added(ka.host, ka_base, VIP)
    assert py_now == ka_now
    came_back = {r["dst"] for r in py_now["route-4"]}
    assert ("198.18.10.0/24" in came_back) == bool(group)
    assert "198.18.14.0/24" not in came_back and "198.18.12.0/24" not in came_back
    assert "198.18.3.1" not in {a.get("local") for a in py_now["addr"]}
    assert "198.18.1.1" in {a.get("local") for a in py_now["addr"]}

    for state in ("down", "up"):
        for host in (ka.host, ours.host):
            host.run(["ip", "link", "set", "eth1", state])
        time.sleep(1.5)
        ours.let_run(1)
        assert added(ours.host, py_base) == added(ka.host, ka_base, VIP), f"eth1 {state}"
    assert "198.18.11.0/24" in {r["dst"] for r in added(ours.host, py_base)["route-4"]}

    ka.stop()
    ours.stop()
    all_removed(ka, ka_base, ours, py_base)


def test_a_reload_changes_what_is_watched(sides: tuple[Keepalived, Ours]) -> None:
    # vrrp.c: the route/rule netlink groups are chosen again on every (re)load
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)
    ka.start(TRACKED.format(group="", vip=VIP))
    ours.start(TRACKED.format(group="", vip=VIP))
    ours.watch()
    ka.reload(TRACKED.format(group=" track_group TG", vip=VIP))
    ours.reload(TRACKED.format(group=" track_group TG", vip=VIP))
    ours.let_run(0.5)
    for host in (ka.host, ours.host):
        host.run(["ip", "route", "del", "198.18.10.0/24"])
        host.run(["ip", "rule", "del", "priority", "400"])
    time.sleep(1)
    ours.let_run(1)
    py_now = added(ours.host, py_base)
    assert py_now == added(ka.host, ka_base, VIP)
    assert "198.18.10.0/24" in {r["dst"] for r in py_now["route-4"]}
    assert 400 in {r["priority"] for r in py_now["rule-4"]}
    ka.stop()
    ours.stop()
    all_removed(ka, ka_base, ours, py_base)


def test_untracked_rule_without_protocol(sides: tuple[Keepalived, Ours]) -> None:
    ka, ours = sides
    ka_base, py_base = baselines(ka, ours)
    config = "static_rules {\n  fwmark 5 table 100 priority 300 no_track\n}\n"
    ka.start(config)
    ours.start(config)
    try:
        assert added(ours.host, py_base) == added(ka.host, ka_base)
    finally:
        ka.stop()
        ours.stop()
