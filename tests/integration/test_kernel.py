"""The kernel adapter against a real kernel, in a lab namespace."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Coroutine, Iterator
from ipaddress import IPv4Address
from socket import AF_INET
from typing import Any, TypeVar

import pytest
from keepalived_py.vrrp.kernel import (
    FR_ACT_GOTO,
    Kernel,
    KernelError,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
)

from tests.integration.conftest import LabFactory
from tests.lab import Host, Lab, ip

T = TypeVar("T")


class Side:
    """A host with a Kernel on a loop that lives between the test's steps."""

    def __init__(self, lab: Lab, host: Host) -> None:
        self.lab = lab
        self.host = host
        self.runner = asyncio.Runner()
        self.kernel = Kernel(host.netns)

    def do(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def ip(self, *args: str) -> str:
        return subprocess.run(["ip", "-n", self.host.netns, *args], check=True,
                              capture_output=True, text=True).stdout

    def close(self) -> None:
        self.do(self.kernel.close())
        self.runner.close()


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    lab = lab_factory(["a", "b"])
    # a second interface on host a, for "dev" on another link
    netns = lab.host("a").netns
    ip("-n", netns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    ip("-n", netns, "link", "set", "eth1", "up")
    ip("-n", netns, "link", "set", "eth1p", "up")
    ip("-n", netns, "addr", "add", "198.18.1.11/24", "dev", "eth1")
    return lab


@pytest.fixture
def a(lab: Lab) -> Iterator[Side]:
    side = Side(lab, lab.host("a"))
    yield side
    side.close()


def vip(*words: str) -> VirtualAddress:
    return VirtualAddress.from_words(words, "eth0")


# -- addresses ---------------------------------------------------------------

ADDRESS_CASES = [
    (("198.18.0.100",), "eth0", ["inet 198.18.0.100/32 scope global eth0"]),
    (("198.18.0.100/24",), "eth0", ["inet 198.18.0.100/24 scope global secondary eth0"]),
    (("198.18.0.100/24", "label", "eth0:vip"), "eth0", ["198.18.0.100/24", " eth0:vip"]),
    (("198.18.0.100", "scope", "link"), "eth0", ["198.18.0.100/32 scope link eth0"]),
    (("198.18.0.100/24", "brd", "+"), "eth0", ["198.18.0.100/24 brd 198.18.0.255 scope"]),
    (("198.18.0.100/24", "brd", "198.18.0.127"), "eth0", ["brd 198.18.0.127"]),
    (("198.18.0.100", "peer", "198.18.0.200"), "eth0", ["198.18.0.100 peer 198.18.0.200/32"]),
    (("198.18.0.100/24", "noprefixroute"), "eth0", ["198.18.0.100/24", "noprefixroute"]),
    (("198.18.1.100/24", "dev", "eth1"), "eth1",
     ["inet 198.18.1.100/24 scope global secondary eth1"]),
    (("2001:db8::100/64",), "eth0", ["inet6 2001:db8::100/64 scope global nodad",
                                     "preferred_lft forever"]),
    (("2001:db8::100",), "eth0", ["inet6 2001:db8::100/128 scope global nodad deprecated",
                                  "preferred_lft 0sec"]),
    (("2001:db8::100", "preferred_lft", "forever"), "eth0",
     ["2001:db8::100/128 scope global nodad", "preferred_lft forever"]),
    (("2001:db8::100/64", "-nodad"), "eth0", ["inet6 2001:db8::100/64 scope global"]),
]


@pytest.mark.parametrize(("words", "ifname", "expected"), ADDRESS_CASES,
                         ids=[" ".join(case[0]) for case in ADDRESS_CASES])
def test_address_add_remove(a: Side, words: tuple[str, ...], ifname: str,
                            expected: list[str]) -> None:
    address = vip(*words)
    before = a.host.addresses(ifname)

    def line() -> str | None:
        lines = [x for x in a.ip("-o", "addr", "show", "dev", ifname).splitlines()
                 if f" {address.address.ip}" in x]
        assert len(lines) <= 1
        return lines[0] if lines else None

    assert a.do(a.kernel.present_addresses([address])) == set()
    a.do(a.kernel.add_addresses([address]))
    a.do(a.kernel.add_addresses([address]))           # twice is fine
    shown = line()
    assert shown is not None
    for fragment in expected:
        assert fragment in shown
    if "-nodad" in words:
        assert "nodad" not in shown
    assert a.do(a.kernel.present_addresses([address])) == {address}
    a.do(a.kernel.remove_addresses([address]))
    a.do(a.kernel.remove_addresses([address]))        # twice is fine
    assert line() is None
    assert a.host.addresses(ifname) == before
    assert a.do(a.kernel.present_addresses([address])) == set()


def test_several_addresses_and_presence(a: Side) -> None:
    one, two, three = vip("198.18.0.100/24"), vip("198.18.0.101/24"), vip("2001:db8::101/64")
    a.do(a.kernel.add_addresses([one, three]))
    # same address, other prefix length or other link: not "present"
    others = {vip("198.18.0.100/25"), vip("198.18.0.100/24", "dev", "eth1")}
    assert a.do(a.kernel.present_addresses([one, two, three, *others])) == {one, three}
    a.do(a.kernel.remove_addresses([one, two, three]))
    assert a.do(a.kernel.present_addresses([one, two, three])) == set()


def test_remove_on_a_deleted_link_is_fine(a: Side) -> None:
    address = vip("198.18.1.100/24", "dev", "eth1")
    a.do(a.kernel.add_addresses([address]))
    ip("-n", a.host.netns, "link", "del", "eth1")
    a.do(a.kernel.remove_addresses([address]))


def test_errors_name_the_object(a: Side) -> None:
    with pytest.raises(KernelError) as caught:
        a.do(a.kernel.add_addresses([vip("198.18.0.100/24", "dev", "eth9")]))
    assert str(caught.value) == "cannot add 198.18.0.100/24 dev eth9: No such device"

    bad_route = VirtualRoute.from_words(("198.18.50.0/24", "via", "198.18.99.1"))
    good_route = VirtualRoute.from_words(("198.18.51.0/24", "via", "198.18.0.1"))
    with pytest.raises(KernelError) as caught:
        a.do(a.kernel.add_routes([bad_route, good_route]))
    assert "cannot add route 198.18.50.0/24 via 198.18.99.1: " in str(caught.value)
    assert "198.18.51.0/24 via 198.18.0.1" in a.ip("route")     # the others still went in

    routes = [VirtualRoute.from_words((f"198.18.{n}.0/24", "dev", "eth9")) for n in (52, 53)]
    with pytest.raises(KernelError) as caught:
        a.do(a.kernel.add_routes(routes))
    assert str(caught.value) == ("cannot add route 198.18.52.0/24 dev eth9: No such device; "
                                 "cannot add route 198.18.53.0/24 dev eth9: No such device")

    # the kernel's own check: a goto must jump forwards
    rule = VirtualRule(AF_INET, FR_ACT_GOTO, priority=100, goto=50)
    with pytest.raises(KernelError) as caught:
        a.do(a.kernel.add_rules([rule]))
    assert str(caught.value) == "cannot add rule from all goto 50 priority 100: Invalid argument"


# -- routes ------------------------------------------------------------------

ROUTE_CASES = [
    (("198.18.5.0/24", "via", "198.18.0.1"),
     "198.18.5.0/24 via 198.18.0.1 dev eth0 proto keepalived"),
    (("198.18.5.0/24", "dev", "eth0"), "198.18.5.0/24 dev eth0 proto keepalived"),
    (("198.18.5.0/24", "via", "198.18.1.1", "dev", "eth1"),
     "198.18.5.0/24 via 198.18.1.1 dev eth1 proto keepalived"),
    (("198.18.5.0/24", "via", "198.18.0.1", "table", "100"),
     "198.18.5.0/24 via 198.18.0.1 dev eth0 table 100 proto keepalived"),
    (("default", "via", "198.18.0.1", "table", "1000"),
     "default via 198.18.0.1 dev eth0 table 1000 proto keepalived"),
    (("blackhole", "198.18.5.0/24"), "blackhole 198.18.5.0/24 proto keepalived"),
    (("unreachable", "198.18.5.0/24", "metric", "5"),
     "unreachable 198.18.5.0/24 proto keepalived metric 5"),
    (("198.18.5.0/24", "dev", "eth0", "src", "198.18.0.11"),
     "198.18.5.0/24 dev eth0 proto keepalived src 198.18.0.11"),
    (("198.18.5.0/24", "via", "198.18.0.1", "mtu", "lock", "1400"),
     "198.18.5.0/24 via 198.18.0.1 dev eth0 proto keepalived mtu lock 1400"),
    (("198.18.5.0/24", "via", "198.18.50.1", "dev", "eth0", "onlink"),
     "198.18.5.0/24 via 198.18.50.1 dev eth0 proto keepalived onlink"),
    (("198.18.5.0/24", "dev", "eth0", "scope", "link", "table", "local"),
     "198.18.5.0/24 dev eth0 table local proto keepalived scope link"),
    (("2001:db8:5::/64", "via", "2001:db8::1"),
     "2001:db8:5::/64 via 2001:db8::1 dev eth0 proto keepalived metric 1024 pref medium"),
    (("2001:db8:5::/64", "from", "2001:db8::/64", "dev", "eth0", "metric", "7"),
     "2001:db8:5::/64 from 2001:db8::/64 dev eth0 proto keepalived metric 7 pref medium"),
    (("prohibit", "2001:db8:5::/64"),
     "prohibit 2001:db8:5::/64 dev lo proto keepalived metric 1024 pref medium"),
    (("2001:db8:5::/64", "via", "2001:db8::1", "pref", "high"),
     "2001:db8:5::/64 via 2001:db8::1 dev eth0 proto keepalived metric 1024 pref high"),
]


@pytest.mark.parametrize(("words", "expected"), ROUTE_CASES,
                         ids=[" ".join(case[0]) for case in ROUTE_CASES])
def test_route_add_remove(a: Side, words: tuple[str, ...], expected: str) -> None:
    route = VirtualRoute.from_words(words)
    version = "-6" if route.family == 10 else "-4"

    def ours() -> list[str]:
        # ip names rtm_protocol 18 "keepalived" (/etc/iproute2/rt_protos)
        shown = a.ip(version, "route", "show", "table", "all").splitlines()
        return [line.strip() for line in shown if "proto keepalived" in line]

    a.do(a.kernel.add_routes([route]))
    a.do(a.kernel.add_routes([route]))                # twice is fine
    assert ours() == [expected]
    a.do(a.kernel.remove_routes([route]))
    a.do(a.kernel.remove_routes([route]))             # twice is fine
    assert ours() == []


def test_route_is_prepended_like_keepalived(a: Side) -> None:
    """Without "add", a route beside another to the same prefix goes in too."""
    ip("-n", a.host.netns, "route", "add", "198.18.5.0/24", "via", "198.18.1.1")
    route = VirtualRoute.from_words(("198.18.5.0/24", "via", "198.18.0.1"))
    a.do(a.kernel.add_routes([route]))
    assert "198.18.5.0/24 via 198.18.0.1 dev eth0 proto keepalived" in a.ip("route")
    exclusive = VirtualRoute.from_words(("198.18.6.0/24", "via", "198.18.0.1", "add"))
    ip("-n", a.host.netns, "route", "add", "198.18.6.0/24", "via", "198.18.1.1")
    a.do(a.kernel.add_routes([exclusive]))            # exists: like "ip route add", quiet
    a.do(a.kernel.remove_routes([route]))
    assert "198.18.5.0/24 via 198.18.1.1 dev eth1" in a.ip("route")    # not ours: kept


# -- rules -------------------------------------------------------------------

RULE_CASES = [
    (("from", "198.18.0.100", "table", "100", "priority", "100"),
     "100:\tfrom 198.18.0.100 lookup 100 proto keepalived"),
    (("to", "198.18.5.0/24", "lookup", "main", "preference", "101"),
     "101:\tfrom all to 198.18.5.0/24 lookup main proto keepalived"),
    (("not", "from", "198.18.0.0/24", "table", "100", "order", "102"),
     "102:\tnot from 198.18.0.0/24 lookup 100 proto keepalived"),
    (("fwmark", "0x10/0xff", "table", "100", "priority", "103"),
     "103:\tfrom all fwmark 0x10/0xff lookup 100 proto keepalived"),
    (("iif", "eth0", "blackhole", "priority", "104"),
     "104:\tfrom all iif eth0 blackhole proto keepalived"),
    (("oif", "eth1", "unreachable", "priority", "105"),
     "105:\tfrom all oif eth1 unreachable proto keepalived"),
    (("from", "198.18.0.100", "goto", "200", "priority", "106"),
     "106:\tfrom 198.18.0.100 goto 200 proto keepalived"),
    (("from", "2001:db8::100", "table", "100", "priority", "107"),
     "107:\tfrom 2001:db8::100 lookup 100 proto keepalived"),
    (("inet6", "from", "all", "ipproto", "udp", "dport", "5000-5010", "table", "100",
      "priority", "108"),
     "108:\tfrom all ipproto udp dport 5000-5010 lookup 100 proto keepalived"),
]


@pytest.mark.parametrize(("words", "expected"), RULE_CASES,
                         ids=[" ".join(case[0]) for case in RULE_CASES])
def test_rule_add_remove(a: Side, words: tuple[str, ...], expected: str) -> None:
    rule = VirtualRule.from_words(words)
    version = "-6" if rule.family == 10 else "-4"

    def ours() -> list[str]:
        return [line.strip() for line in a.ip(version, "rule").splitlines()
                if "proto keepalived" in line]

    if rule.action == 2:                              # a goto needs its target
        ip("-n", a.host.netns, "rule", "add", "priority", "200", "table", "main")
    a.do(a.kernel.add_rules([rule]))
    a.do(a.kernel.add_rules([rule]))                  # twice is fine
    assert ours() == [expected]
    a.do(a.kernel.remove_rules([rule]))
    a.do(a.kernel.remove_rules([rule]))               # twice is fine
    assert ours() == []


def test_rules_numbered_like_keepalived(a: Side) -> None:
    rules = number_rules([VirtualRule.from_words(("from", "198.18.0.100", "table", "100")),
                          VirtualRule.from_words(("from", "198.18.0.101", "table", "100"))])
    a.do(a.kernel.add_rules(rules))
    shown = a.ip("rule")
    assert "16384:\tfrom 198.18.0.100 lookup 100 proto keepalived" in shown
    assert "16383:\tfrom 198.18.0.101 lookup 100 proto keepalived" in shown
    with pytest.raises(ValueError, match="number_rules"):
        a.do(a.kernel.add_rules([VirtualRule.from_words(("from", "198.18.0.1", "table", "9"))]))


# -- clean start -------------------------------------------------------------

def test_clean_start_removes_leftovers_only(a: Side) -> None:
    netns = a.host.netns
    addrs = [vip("198.18.0.100/24", "label", "eth0:vip"), vip("2001:db8::100/64"),
             vip("198.18.0.102/24")]                  # the last one was never added
    routes = [VirtualRoute.from_words(("198.18.5.0/24", "via", "198.18.0.1")),
              VirtualRoute.from_words(("blackhole", "198.18.6.0/24"))]
    rules = [VirtualRule.from_words(("from", "198.18.0.100", "table", "100", "priority", "100"))]
    # what a killed agent left behind, and what others own
    a.do(a.kernel.add_addresses(addrs[:2]))
    a.do(a.kernel.add_routes(routes[:1]))
    a.do(a.kernel.add_rules(rules))
    ip("-n", netns, "addr", "add", "198.18.0.150/24", "dev", "eth0")
    ip("-n", netns, "route", "add", "198.18.7.0/24", "via", "198.18.0.1")
    ip("-n", netns, "rule", "add", "from", "198.18.0.150", "table", "100", "priority", "100")

    a.do(a.kernel.clean_start(addrs, routes, rules))

    assert a.host.addresses() == {"198.18.0.11/24", "198.18.0.150/24", "2001:db8::11/64",
                                  *[x for x in a.host.addresses() if x.startswith("fe80:")]}
    assert "proto keepalived" not in a.ip("route", "show", "table", "all")
    assert "198.18.7.0/24 via 198.18.0.1" in a.ip("route")
    rules_shown = a.ip("rule")
    assert "proto keepalived" not in rules_shown
    assert "100:\tfrom 198.18.0.150 lookup 100" in rules_shown


# -- links -------------------------------------------------------------------

def test_link_state(a: Side) -> None:
    state = a.do(a.kernel.link_state("eth0"))
    assert (state.ifname, state.up, state.mac, state.mtu) == ("eth0", True, a.host.mac, 1500)
    a.lab.cable("a", False)
    assert not a.do(a.kernel.link_state("eth0")).up
    ip("-n", a.host.netns, "link", "set", "eth1", "down")
    assert not a.do(a.kernel.link_state("eth1")).up
    with pytest.raises(KernelError, match="cannot read link eth9: No such device"):
        a.do(a.kernel.link_state("eth9"))


def test_interface_addresses(a: Side) -> None:
    index = a.do(a.kernel.link_state("eth0")).ifindex
    a.do(a.kernel.add_addresses([vip("198.18.0.100/24"), vip("198.18.0.9/24")]))
    v4 = a.do(a.kernel.interface_addresses(index, 4))
    assert v4[0] == a.host.ip4                        # the primary, though .9 sorts lower
    assert set(v4) == {a.host.ip4, IPv4Address("198.18.0.100"), IPv4Address("198.18.0.9")}
    v6 = a.do(a.kernel.interface_addresses(index, 6))
    assert a.host.ip6 in v6 and any(addr.is_link_local for addr in v6)
    assert all(addr.version == 6 for addr in v6)


def test_watch_links_reports_cable_and_deletion(a: Side) -> None:
    async def next_change(events: Any, ifname: str, up: bool, deleted: bool = False) -> float:
        start = time.monotonic()
        async with asyncio.timeout(1):
            async for state in events:
                assert isinstance(state, LinkState)
                if state.ifname == ifname and state.up == up and state.deleted == deleted:
                    return time.monotonic() - start
        raise AssertionError("events ended")

    async def scenario() -> None:
        events = a.kernel.watch_links()
        # first every link as it is now
        snapshot = {}
        async with asyncio.timeout(1):
            while set(snapshot) != {"lo", "eth0", "eth1", "eth1p"}:
                state = await anext(events)
                snapshot[state.ifname] = state
        assert snapshot["eth0"] == await a.kernel.link_state("eth0")
        await asyncio.to_thread(a.lab.cable, "a", False)
        assert await next_change(events, "eth0", up=False) < 1
        await asyncio.to_thread(a.lab.cable, "a", True)
        assert await next_change(events, "eth0", up=True) < 1
        await asyncio.to_thread(ip, "-n", a.host.netns, "link", "del", "eth1")
        assert await next_change(events, "eth1", up=False, deleted=True) < 1
        await events.aclose()

    a.do(scenario())


def test_two_watchers_and_close(a: Side) -> None:
    async def scenario() -> None:
        first, second = a.kernel.watch_links(), a.kernel.watch_links()
        async with asyncio.timeout(1):
            await anext(first), await anext(second)      # both subscribed now
        await asyncio.to_thread(a.lab.cable, "a", False)
        async with asyncio.timeout(1):
            for events in (first, second):
                while (state := await anext(events)).ifname != "eth0" or state.up:
                    pass
        draining = asyncio.create_task(drain(first))
        await asyncio.sleep(0.05)
        await a.kernel.close()
        async with asyncio.timeout(1):
            await draining                            # iteration simply ends
        # a closed Kernel opens a new socket when used again
        assert not (await a.kernel.link_state("eth0")).up

    async def drain(events: Any) -> list[LinkState]:
        return [state async for state in events]

    a.do(scenario())
