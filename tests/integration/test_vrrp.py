"""Our VRRP agents against each other, for real: processes, sockets, netlink, a client.

Every test runs routers (r1, r2, sometimes r3) and a client host c on one
bridge.  Each router answers UDP probes with its own name, so the client
learns who holds the VIP by asking it (``who_answers``).  After every
election or failover a test checks, in this order, that exactly one running
router holds the VIP, that the client is answered by that router, and that
the client's ARP / NDP entry for the VIP carries that router's MAC.  The
client's entry is made by traffic before a failover, so that afterwards it is
only right if the new master's gratuitous ARP / unsolicited NA replaced it.

Timings are read from the agents' own log stamps (``Router.times``, wall
clock, 1 ms) rather than from polling here, so that a slow poll on a loaded
machine does not count.  Expected values follow RFC 5798 as keepalived 2.2.7
runs it: Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time, with
Skew_Time = (256 - Priority) * Advertisement_Interval / 256.  Tolerances:

- LATE (0.3 s) above the expected figure: a busy 2-core machine can hold a
  process off the CPU, and each event crosses two processes and the kernel;
- EARLY (0.1 s) below a down interval: the backup's timer was last reset by
  the last advert before the event, which left up to one advert interval (plus
  the sender's own jitter) earlier.

Most tests use VRRPv3 with a 0.1 s advert interval to stay fast; VRRPv2 has
whole-second intervals and is covered by the kill test.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.integration.agents import (
    Router,
    Seen,
    hear_multicast,
    holders,
    link_local,
    serve,
    sniff_vrrp,
    vrrp_config,
    wait_for,
    who_answers,
)
from tests.integration.conftest import LabFactory
from tests.lab import Host, Lab

VIP4 = "198.18.0.100"
VIP6 = "2001:db8::100"
LATE = 0.3
EARLY = 0.1
FAST = 0.1      # VRRPv3 advert interval where the test is not about timing


def skew(priority: int, advert_int: float) -> float:
    return (256 - priority) * advert_int / 256


def down_interval(priority: int, advert_int: float) -> float:
    return 3 * advert_int + skew(priority, advert_int)


def figure(name: str, value: float, expected: str) -> None:
    """Measured timings go to stdout (``pytest -s`` shows them)."""
    print(f"\nFIGURE {name}: {value:.3f} s (expected {expected})")


@dataclass
class Net:
    """The lab of one test: routers r1.. and the client c."""

    lab: Lab
    client: Host
    routers: list[Router] = field(default_factory=list)

    def router(self, name: str, priority: int, vip: str = VIP4, advert_int: float = FAST,
               version: int = 3, extra: str = "", **kw: str) -> Router:
        """A router on host ``name`` (not started); VRRPv3 at 0.1 s unless told."""
        config = vrrp_config(name, priority=priority, vip=vip_prefix(vip),
                             advert_int=str(advert_int), version=version, extra=extra, **kw)
        router = Router(self.lab.host(name), config)
        self.routers.append(router)
        return router

    def assert_master(self, master: Router, vip: str, hold: float = 0.0) -> None:
        """``master`` alone holds ``vip`` (also ``hold`` seconds later), the client
        reaches it there, and the client's neighbour entry is its MAC."""
        wait_for(f"{master.name} alone to hold {vip}",
                 lambda: holders(self.routers, vip) == [master.name], timeout=5)
        if hold:
            time.sleep(hold)
            assert holders(self.routers, vip) == [master.name]
        assert who_answers(self.client, vip) == master.name
        assert self.client.neighbour_mac(vip) == master.host.mac, \
            f"the client's neighbour entry for {vip} is not {master.name}'s MAC"


def vip_prefix(vip: str) -> str:
    return f"{vip}/64" if ":" in vip else f"{vip}/24"


def make_net(lab_factory: LabFactory, routers: int = 2) -> Net:
    names = [f"r{i}" for i in range(1, routers + 1)]
    lab = lab_factory([*names, "c"])
    for name in names:
        serve(lab.host(name))
    return Net(lab, lab.host("c"))


@pytest.fixture
def nets(lab_factory: LabFactory) -> Iterator[Callable[[int], Net]]:
    """Makes a Net; on teardown closes its routers and prints their logs
    (pytest shows them only when the test failed)."""
    made: list[Net] = []

    def make(routers: int = 2) -> Net:
        net = make_net(lab_factory, routers)
        made.append(net)
        return net

    yield make
    for net in made:
        for router in net.routers:
            print(f"----- {router.name} log -----\n{router.log_text()}")
            router.close()


@pytest.fixture
def net(nets: Callable[[int], Net]) -> Net:
    return nets(2)


def ip_json(host: Host, *args: str) -> list[dict]:
    return json.loads(host.run(["ip", "-j", *args]).stdout or "[]")


# -- election -------------------------------------------------------------------

KILL_CASES = {
    # VRRPv2 carries whole seconds; PASS authentication on the way
    "v2-ipv4": dict(version=2, vip=VIP4, advert_int=1.0,
                    extra="authentication {\n auth_type PASS\n auth_pass s3cret\n }"),
    "v3-ipv4": dict(version=3, vip=VIP4, advert_int=FAST, extra=""),
    "v3-ipv6": dict(version=3, vip=VIP6, advert_int=FAST, extra=""),
}


@pytest.mark.parametrize("case", KILL_CASES, ids=list(KILL_CASES))
def test_higher_priority_wins_and_kill_fails_over(net: Net, case: str) -> None:
    """Higher priority wins the election; after kill -9 of the master (no
    priority-0 advert) the backup takes over after its Master_Down_Interval."""
    params = KILL_CASES[case]
    vip, advert_int = str(params["vip"]), float(params["advert_int"])
    r1 = net.router("r1", 150, vip, advert_int, int(params["version"]), str(params["extra"]))
    r2 = net.router("r2", 100, vip, advert_int, int(params["version"]), str(params["extra"]))
    r2.start()
    r1.start()
    net.assert_master(r1, vip)
    # Only the master advertises, in the configured version, to the group, from
    # its primary address (IPv4) or its link-local one (IPv6, RFC 5798 5.1.2.1).
    seen = sniff_vrrp(net.client, 2.5 * advert_int)
    source = str(link_local(r1.host) if ":" in vip else r1.host.ip4)
    group = "ff02::12" if ":" in vip else "224.0.0.18"
    assert len(seen) >= 2
    assert set(seen) == {Seen(source, group, int(params["version"]), 51, 150)}, seen
    assert holders(net.routers, vip) == ["r1"]

    killed = time.time()
    r1.stop(signal.SIGKILL)
    took = r2.wait_log("Entering MASTER STATE", since=killed) - killed
    expected = down_interval(100, advert_int)
    figure(f"kill -9 takeover {case}", took, f"{expected - advert_int:.3f}..{expected:.3f}")
    assert expected - advert_int - EARLY <= took <= expected + LATE
    net.assert_master(r2, vip)


@pytest.mark.parametrize("vip", [VIP4, VIP6], ids=["ipv4", "ipv6"])
def test_equal_priority_higher_address_wins(net: Net, vip: str) -> None:
    """Two masters with equal priority (a partition heals): the one with the
    higher primary address stays master (RFC 5798 6.4.3); for IPv6 that is
    the link-local address the adverts come from."""
    lab = net.lab
    r1, r2 = net.router("r1", 100, vip), net.router("r2", 100, vip)
    for name in ("r1", "r2"):
        hear_multicast(lab, name, False)
    r1.start()
    r2.start()
    wait_for("both to be master while they cannot hear each other",
             lambda: holders(net.routers, vip) == ["r1", "r2"])
    healed = time.time()
    for name in ("r1", "r2"):
        hear_multicast(lab, name, True)
    if ":" in vip:
        addresses = {r: link_local(r.host) for r in (r1, r2)}
    else:
        addresses = {r: r.host.ip4 for r in (r1, r2)}
    winner = max(addresses, key=lambda r: int(addresses[r]))
    loser = r2 if winner is r1 else r1
    loser.wait_log("Entering BACKUP STATE", since=healed, timeout=3)
    net.assert_master(winner, vip, hold=3 * FAST)


# -- preemption -----------------------------------------------------------------

def test_returning_higher_priority_router_preempts(net: Net) -> None:
    """A higher-priority router that comes back takes over after its own
    Master_Down_Interval: it ignores the lower-priority master's adverts."""
    r1, r2 = net.router("r1", 200), net.router("r2", 100)
    r1.start()
    r2.start()
    net.assert_master(r1, VIP4)
    r1.stop(signal.SIGTERM)
    net.assert_master(r2, VIP4)

    restarted = time.time()
    r1.start()
    init = r1.wait_log("Entering BACKUP STATE (init)", since=restarted)
    took = r1.wait_log("Entering MASTER STATE", since=restarted) - init
    expected = down_interval(200, FAST)
    figure("preemption after restart", took, f"{expected:.3f}")
    assert expected - 0.02 <= took <= expected + LATE
    net.assert_master(r1, VIP4)
    assert r2.times("Entering BACKUP STATE", since=init)


def test_nopreempt_keeps_the_lower_priority_master(net: Net) -> None:
    """With nopreempt a returning higher-priority router stays backup; it takes
    over only when the master goes."""
    r1 = net.router("r1", 200, extra="nopreempt")
    r2 = net.router("r2", 100)
    r2.start()
    net.assert_master(r2, VIP4)
    started = time.time()
    r1.start()
    r1.wait_log("Entering BACKUP STATE (init)", since=started)
    # three times r1's Master_Down_Interval (0.32 s): it would have preempted
    net.assert_master(r2, VIP4, hold=3 * down_interval(200, FAST))
    assert not r1.times("Entering MASTER STATE")

    r2.stop(signal.SIGTERM)
    assert not r2.has(VIP4)
    net.assert_master(r1, VIP4)


def test_preempt_delay_holds_the_takeover_back(net: Net) -> None:
    """preempt_delay: the higher-priority router starts the delay on the first
    lower-priority advert and takes over only after it, plus its down timer."""
    delay = 1.0
    r1 = net.router("r1", 200, extra=f"preempt_delay {delay}")
    r2 = net.router("r2", 100)
    r2.start()
    net.assert_master(r2, VIP4)
    r1.start()
    started = r1.wait_log("start preempt delay")
    took = r1.wait_log("Entering MASTER STATE", timeout=5) - started
    expected = delay + down_interval(200, FAST)
    figure("preempt_delay 1 s takeover", took, f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r1, VIP4)


def test_address_owner_is_master_at_once(net: Net) -> None:
    """Priority 255 (the address owner) becomes master at start without waiting
    a Master_Down_Interval, and the running lower-priority master yields."""
    advert_int = 0.3
    r1 = net.router("r1", 255, advert_int=advert_int, state="MASTER")
    r2 = net.router("r2", 100, advert_int=advert_int)
    r2.start()
    net.assert_master(r2, VIP4)
    started = time.time()
    r1.start()
    init = r1.wait_log("Entering BACKUP STATE (init)", since=started)
    took = r1.wait_log("Entering MASTER STATE", since=started) - init
    figure("owner (255) to master after init", took,
           f"0, down interval would be {down_interval(255, advert_int):.3f}")
    assert took <= 0.1
    net.assert_master(r1, VIP4)


# -- failures -------------------------------------------------------------------

@pytest.mark.parametrize("vip", [VIP4, VIP6], ids=["ipv4", "ipv6"])
def test_graceful_stop_hands_over_within_skew_time(net: Net, vip: str) -> None:
    """SIGTERM: the master sends priority 0 and removes its VIP; the backup
    takes over after Skew_Time, not after Master_Down_Interval.  A 0.5 s advert
    interval keeps the two far apart (0.30 s against 1.80 s)."""
    advert_int = 0.5
    r1 = net.router("r1", 150, vip, advert_int)
    r2 = net.router("r2", 100, vip, advert_int)
    r1.start()
    r2.start()
    net.assert_master(r1, vip)

    stopped = time.time()
    r1.stop(signal.SIGTERM)
    assert not r1.has(vip), "the stopped router left its VIP behind"
    took = r2.wait_log("Entering MASTER STATE", since=stopped) - stopped
    figure(f"graceful stop takeover {'ipv6' if ':' in vip else 'ipv4'}", took,
           f"skew {skew(100, advert_int):.3f}, "
           f"down interval {down_interval(100, advert_int):.3f}")
    assert skew(100, advert_int) - 0.02 <= took <= skew(100, advert_int) + LATE
    net.assert_master(r2, vip)


def test_link_down_faults_and_link_up_preempts(net: Net) -> None:
    """Unplugged, the master goes FAULT and drops the VIP, the backup takes over
    after its down interval; plugged back, the higher-priority router preempts."""
    lab = net.lab
    r1, r2 = net.router("r1", 200), net.router("r2", 100)
    r1.start()
    r2.start()
    net.assert_master(r1, VIP4)

    unplugged = time.time()
    lab.cable("r1", False)
    r1.wait_log("Entering FAULT STATE", since=unplugged, timeout=3)
    wait_for("r1 to drop the VIP", lambda: not r1.has(VIP4), timeout=3)
    took = r2.wait_log("Entering MASTER STATE", since=unplugged) - unplugged
    expected = down_interval(100, FAST)
    figure("link down takeover", took, f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r2, VIP4)

    plugged = time.time()
    lab.cable("r1", True)
    back = r1.wait_log("Entering BACKUP STATE", since=plugged, timeout=3)
    took = r1.wait_log("Entering MASTER STATE", since=plugged) - back
    expected = down_interval(200, FAST)
    figure("preemption after link up", took, f"{expected:.3f}")
    assert expected - 0.02 <= took <= expected + LATE
    net.assert_master(r1, VIP4)


def test_three_routers_fail_one_after_another(nets: Callable[[int], Net]) -> None:
    """Three routers: the highest priority is master; kill -9 it and the next
    one takes over (not the lowest); unplug that one and the last takes over.
    The priorities are far apart so that the backups' skew times (22 ms and
    80 ms) order them even on a busy machine."""
    net = nets(3)
    r1, r2, r3 = net.router("r1", 250), net.router("r2", 200), net.router("r3", 50)
    for router in (r3, r2, r1):
        router.start()
    net.assert_master(r1, VIP4, hold=3 * FAST)

    killed = time.time()
    r1.stop(signal.SIGKILL)
    took = r2.wait_log("Entering MASTER STATE", since=killed) - killed
    expected = down_interval(200, FAST)
    figure("three routers: r1 killed, r2 takes over", took,
           f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r2, VIP4, hold=3 * FAST)

    unplugged = time.time()
    net.lab.cable("r2", False)
    took = r3.wait_log("Entering MASTER STATE", since=unplugged) - unplugged
    expected = down_interval(50, FAST)
    figure("three routers: r2 unplugged, r3 takes over", took,
           f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r3, VIP4)
    assert r2.times("Entering FAULT STATE", since=unplugged)


# -- transports -----------------------------------------------------------------

@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_unicast_peers(net: Net, family: int) -> None:
    """unicast_src_ip / unicast_peer both ways: adverts go to the peer's own
    address and never to the multicast group; failover works over them."""
    lab = net.lab
    h1, h2 = lab.host("r1"), lab.host("r2")
    vip = VIP4 if family == 4 else VIP6
    own = {h: h.ip4 if family == 4 else h.ip6 for h in (h1, h2)}

    def unicast(me: Host, peer: Host) -> str:
        return f"unicast_src_ip {own[me]}\nunicast_peer {{\n{own[peer]}\n}}"

    r1 = net.router("r1", 200, vip, extra=unicast(h1, h2))
    r2 = net.router("r2", 100, vip, extra=unicast(h2, h1))
    r1.start()
    r2.start()
    net.assert_master(r1, vip)
    at_backup = sniff_vrrp(h2, 0.5)
    at_client = sniff_vrrp(net.client, 0.5)
    assert len(at_backup) >= 3
    assert set(at_backup) == {Seen(str(own[h1]), str(own[h2]), 3, 51, 200)}, at_backup
    assert at_client == [], "VRRP reached a host that is not a peer"

    killed = time.time()
    r1.stop(signal.SIGKILL)
    took = r2.wait_log("Entering MASTER STATE", since=killed) - killed
    expected = down_interval(100, FAST)
    figure(f"unicast kill -9 takeover ipv{family}", took,
           f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r2, vip)


# -- what the master installs ------------------------------------------------------

ROUTES = """
virtual_routes {
    198.19.5.0/24 via 198.18.0.1 dev eth0
    198.19.6.0/24 dev eth0 table 100
    2001:db8:5::/64 via 2001:db8::1 dev eth0
}
virtual_rules {
    from 198.18.0.100 table 100
    from 2001:db8::100 table 100
}
"""


def keepalived_objects(host: Host) -> set[str]:
    """The routes and rules on ``host`` that carry protocol keepalived."""
    found = set()
    for family in ("-4", "-6"):
        for route in ip_json(host, family, "route", "show", "table", "all", "proto",
                             "keepalived"):
            found.add(f"route {route['dst']} table {route.get('table', 'main')}")
        for rule in ip_json(host, family, "rule", "show"):
            if rule.get("protocol") == "keepalived":
                found.add(f"rule from {rule.get('src')} table {rule.get('table')}")
    return found


def test_virtual_routes_and_rules_follow_the_master(net: Net) -> None:
    """virtual_routes and virtual_rules are on the master with proto keepalived,
    never on the backup, and move with the VIP: the stopped master removes
    them, and a master that is preempted (back to backup) removes them too."""
    wanted = {"route 198.19.5.0/24 table main", "route 198.19.6.0/24 table 100",
              "route 2001:db8:5::/64 table main",
              "rule from 198.18.0.100 table 100", "rule from 2001:db8::100 table 100"}
    r1, r2 = net.router("r1", 200, extra=ROUTES), net.router("r2", 100, extra=ROUTES)
    r1.start()
    r2.start()
    net.assert_master(r1, VIP4)
    wait_for("r1's routes and rules", lambda: keepalived_objects(r1.host) == wanted)
    assert keepalived_objects(r2.host) == set()

    r1.stop(signal.SIGTERM)
    assert keepalived_objects(r1.host) == set(), "the stopped router left routes or rules"
    net.assert_master(r2, VIP4)
    wait_for("r2's routes and rules", lambda: keepalived_objects(r2.host) == wanted)

    r1.start()
    net.assert_master(r1, VIP4)
    wait_for("r1's routes and rules again", lambda: keepalived_objects(r1.host) == wanted)
    wait_for("r2, backup again, to remove its routes and rules",
             lambda: keepalived_objects(r2.host) == set())


# -- tracking ---------------------------------------------------------------------

def test_track_interface_weight_moves_mastership(net: Net) -> None:
    """track_interface with weight -100: its link down lowers the master from
    150 to 50, below the backup's 100, which then preempts; link up again and
    the first router preempts back.  The tracked link is a second veth pair
    made inside r1's namespace (eth1, its far end eth1p)."""
    h1 = net.lab.host("r1")
    h1.run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"])
    h1.run(["ip", "link", "set", "eth1p", "up"])
    h1.run(["ip", "link", "set", "eth1", "up"])
    r1 = net.router("r1", 150, extra="track_interface {\n eth1 weight -100\n }")
    r2 = net.router("r2", 100)
    r1.start()
    r2.start()
    net.assert_master(r1, VIP4)

    down = time.time()
    h1.run(["ip", "link", "set", "eth1p", "down"])
    r1.wait_log("Changing effective priority from 150 to 50", since=down, timeout=3)
    took = r2.wait_log("Entering MASTER STATE", since=down) - down
    expected = down_interval(100, FAST)
    figure("tracked link down: backup preempts", took, f"{expected - FAST:.3f}..{expected:.3f}")
    assert expected - FAST - EARLY <= took <= expected + LATE
    net.assert_master(r2, VIP4)
    assert not r1.times("Entering FAULT STATE"), "a weighted track must not fault"

    up = time.time()
    h1.run(["ip", "link", "set", "eth1p", "up"])
    r1.wait_log("Changing effective priority from 50 to 150", since=up, timeout=3)
    net.assert_master(r1, VIP4)


# -- start ------------------------------------------------------------------------

def test_clean_start_removes_a_leftover_vip(net: Net) -> None:
    """A VIP (and a virtual route) left on a host, e.g. by a crash, is removed
    when the agent starts there as backup."""
    route = "virtual_routes {\n 198.19.5.0/24 via 198.18.0.1 dev eth0\n }"
    r1, r2 = net.router("r1", 200, extra=route), net.router("r2", 100, extra=route)
    r1.start()
    net.assert_master(r1, VIP4)
    h2 = r2.host
    h2.run(["ip", "addr", "add", vip_prefix(VIP4), "dev", "eth0"])
    h2.run(["ip", "route", "add", "198.19.5.0/24", "via", "198.18.0.1", "dev", "eth0",
            "proto", "keepalived"])
    assert VIP4 + "/24" in h2.addresses()

    started = time.time()
    r2.start()
    r2.wait_log("Entering BACKUP STATE (init)", since=started)
    wait_for("r2 to remove the leftover VIP", lambda: not r2.has(VIP4), timeout=2)
    assert keepalived_objects(h2) == set()
    # longer than r2's down interval: it stays backup and the VIP stays away
    net.assert_master(r1, VIP4, hold=2 * down_interval(100, FAST))
    assert not r2.times("Entering MASTER STATE")
