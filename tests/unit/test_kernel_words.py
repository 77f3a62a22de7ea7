"""From config words to kernel objects, without a kernel."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_interface, ip_network
from pathlib import Path
from socket import AF_INET, AF_INET6

import pytest
from keepalived_py.config.parser import parse
from keepalived_py.vrrp import kernel
from keepalived_py.vrrp.kernel import (
    FR_ACT_BLACKHOLE,
    FR_ACT_GOTO,
    FR_ACT_NOP,
    FR_ACT_PROHIBIT,
    FR_ACT_TO_TBL,
    FR_ACT_UNREACHABLE,
    IFA_F_NODAD,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
)

HOME, MNGTMPADDR, NOPREFIXROUTE, AUTOJOIN = 0x10, 0x100, 0x200, 0x400


def vip(*words: str) -> VirtualAddress:
    return VirtualAddress.from_words(words, "eth0")


def route(*words: str) -> VirtualRoute:
    return VirtualRoute.from_words(words)


def rule(*words: str) -> VirtualRule:
    return VirtualRule.from_words(words)


# -- addresses ---------------------------------------------------------------

def test_plain_address_is_a_host_address_on_the_instance_interface() -> None:
    assert vip("198.18.0.100") == VirtualAddress(ip_interface("198.18.0.100/32"), "eth0")
    assert str(vip("198.18.0.100")) == "198.18.0.100/32 dev eth0"


@pytest.mark.parametrize(("words", "field", "value"), [
    (("198.18.0.100/24",), "address", ip_interface("198.18.0.100/24")),
    (("198.18.0.100/24", "dev", "eth1"), "ifname", "eth1"),
    (("198.18.0.100/24", "label", "eth0:1"), "label", "eth0:1"),
    (("198.18.0.100", "scope", "link"), "scope", 253),
    (("198.18.0.100", "scope", "host"), "scope", 254),
    (("198.18.0.100", "scope", "site"), "scope", 200),
    (("198.18.0.100", "scope", "nowhere"), "scope", 255),
    (("198.18.0.100", "scope", "global"), "scope", 0),
    (("198.18.0.100", "scope", "42"), "scope", 42),
    (("198.18.0.100/24", "brd", "+"), "broadcast", IPv4Address("198.18.0.255")),
    (("198.18.0.100/24", "brd", "-"), "broadcast", IPv4Address("198.18.0.0")),
    (("198.18.0.100/30", "brd", "+"), "broadcast", IPv4Address("198.18.0.103")),
    (("198.18.0.100/31", "brd", "+"), "broadcast", None),     # too long for one
    (("198.18.0.100/24", "brd", "198.18.0.127"), "broadcast", IPv4Address("198.18.0.127")),
    (("198.18.0.100/24", "broadcast", "198.18.0.127"), "broadcast", IPv4Address("198.18.0.127")),
    (("198.18.0.100", "home"), "flags", HOME),
    (("198.18.0.100", "mngtmpaddr", "noprefixroute", "autojoin"), "flags",
     MNGTMPADDR | NOPREFIXROUTE | AUTOJOIN),
    (("198.18.0.100", "no_track"), "no_track", True),
    (("198.18.0.100", "use_vmac"), "use_vmac", True),
    (("198.18.0.100", "track_group", "G1"), "address", ip_interface("198.18.0.100/32")),
    (("198.18.0.100", "preferred_lft", "0"), "preferred_lft", None),   # IPv6 only
])
def test_address_options(words: tuple[str, ...], field: str, value: object) -> None:
    assert getattr(vip(*words), field) == value


def test_peer_takes_the_full_prefix_and_drops_broadcast() -> None:
    address = vip("198.18.0.100/24", "peer", "198.18.0.200", "brd", "+")
    assert address.address == ip_interface("198.18.0.100/32")
    assert address.peer == ip_address("198.18.0.200")
    assert address.broadcast is None
    assert str(address) == "198.18.0.100/32 peer 198.18.0.200 dev eth0"
    with pytest.raises(ValueError, match="family"):
        vip("198.18.0.100", "peer", "2001:db8::1")


def test_ipv6_defaults_follow_keepalived() -> None:
    host = vip("2001:db8::100")
    assert host.address == ip_interface("2001:db8::100/128")
    assert host.flags == IFA_F_NODAD
    assert host.preferred_lft == 0            # /128 without preferred_lft: deprecated
    assert vip("2001:db8::100/64").preferred_lft is None
    assert vip("2001:db8::100", "preferred_lft", "forever").preferred_lft is None
    assert vip("2001:db8::100/64", "preferred_lft", "30").preferred_lft == 30
    assert vip("2001:db8::100/64", "-nodad").flags == 0
    assert vip("2001:db8::100/64", "home").flags == HOME | IFA_F_NODAD
    # no scope or label for IPv6
    ignored = vip("2001:db8::100/64", "scope", "link", "label", "eth0:1")
    assert (ignored.scope, ignored.label) == (0, None)
    assert vip("198.18.0.100", "-nodad").flags == 0      # IPv4 never gets NODAD


@pytest.mark.parametrize(("words", "message"), [
    ((), "empty"),
    (("198.18.0.100", "frobnicate"), "'frobnicate'"),
    (("198.18.0.100", "dev"), "no value given for 'dev'"),
    (("198.18.0.100", "scope", "galaxy"), "unknown scope 'galaxy'"),
    (("198.18.0.100", "preferred_lft", "soon"), "invalid preferred_lft 'soon'"),
    (("198.18.0.300",), "198.18.0.300"),
])
def test_bad_address_words(words: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VirtualAddress.from_words(words, "eth0")


# -- routes ------------------------------------------------------------------

def test_route_defaults() -> None:
    plain = route("198.18.5.0/24", "via", "198.18.0.1")
    assert plain == VirtualRoute(ip_network("198.18.5.0/24"), via=ip_address("198.18.0.1"))
    assert (plain.table, plain.protocol, plain.scope, plain.mode) == (254, 18, None, "prepend")
    assert plain.family == AF_INET
    assert str(plain) == "198.18.5.0/24 via 198.18.0.1"
    # keepalived gives a route no interface of its own: the instance's is not used
    assert VirtualRoute.from_words(("198.18.5.0/24", "via", "198.18.0.1"), "eth0").dev is None


@pytest.mark.parametrize(("words", "field", "value"), [
    (("198.18.5.0/24", "gw", "198.18.0.1"), "via", ip_address("198.18.0.1")),
    (("198.18.5.0/24", "via", "inet", "198.18.0.1"), "via", ip_address("198.18.0.1")),
    (("198.18.5.0/24", "dev", "eth1"), "dev", "eth1"),
    (("198.18.5.0/24", "oif", "eth1"), "dev", "eth1"),
    (("198.18.5.0/24", "dev", "eth0", "src", "198.18.0.11"), "src", ip_address("198.18.0.11")),
    (("2001:db8:5::/64", "from", "2001:db8::/64", "dev", "eth0"), "from_prefix",
     ip_network("2001:db8::/64")),
    (("198.18.5.0/24", "dev", "eth0", "table", "100"), "table", 100),
    (("198.18.5.0/24", "dev", "eth0", "table", "0x100"), "table", 256),
    (("198.18.5.0/24", "dev", "eth0", "table", "local"), "table", 255),
    (("198.18.5.0/24", "dev", "eth0", "table", "default"), "table", 253),
    (("198.18.5.0/24", "dev", "eth0", "table", "main"), "table", 254),
    (("198.18.5.0/24", "dev", "eth0", "metric", "5"), "metric", 5),
    (("198.18.5.0/24", "dev", "eth0", "priority", "6"), "metric", 6),
    (("198.18.5.0/24", "dev", "eth0", "preference", "7"), "metric", 7),
    (("198.18.5.0/24", "dev", "eth0", "scope", "link"), "scope", 253),
    (("198.18.5.0/24", "dev", "eth0", "tos", "0x10"), "tos", 16),
    (("198.18.5.0/24", "dev", "eth0", "onlink"), "onlink", True),
    (("198.18.5.0/24", "dev", "eth0", "add"), "mode", "add"),
    (("198.18.5.0/24", "dev", "eth0", "append"), "mode", "append"),
    (("198.18.5.0/24", "dev", "eth0", "append", "prepend"), "mode", "prepend"),
    (("blackhole", "198.18.5.0/24"), "type", 6),
    (("unreachable", "198.18.5.0/24"), "type", 7),
    (("prohibit", "198.18.5.0/24"), "type", 8),
    (("throw", "198.18.5.0/24"), "type", 9),
    (("to", "198.18.5.0/24", "dev", "eth0"), "dst", ip_network("198.18.5.0/24")),
    (("198.18.5.1/24", "dev", "eth0"), "dst", ip_network("198.18.5.0/24")),
    (("198.18.5.1", "dev", "eth0"), "dst", ip_network("198.18.5.1/32")),
    (("default", "via", "198.18.0.1"), "dst", ip_network("0.0.0.0/0")),
    (("any", "via", "2001:db8::1"), "dst", ip_network("::/0")),
    (("inet6", "default", "dev", "eth0"), "dst", ip_network("::/0")),
    (("default6", "dev", "eth0"), "dst", ip_network("::/0")),
    (("198.18.5.0/24", "via", "198.18.0.1", "mtu", "1400"), "metrics", (("RTAX_MTU", 1400),)),
    (("198.18.5.0/24", "via", "198.18.0.1", "mtu", "lock", "1400"), "locked", ("RTAX_MTU",)),
    (("198.18.5.0/24", "via", "198.18.0.1", "advmss", "1300", "hoplimit", "9"), "metrics",
     (("RTAX_ADVMSS", 1300), ("RTAX_HOPLIMIT", 9))),
    (("198.18.5.0/24", "via", "198.18.0.1", "features", "ecn"), "metrics",
     (("RTAX_FEATURES", 1),)),
    (("2001:db8:5::/64", "via", "2001:db8::1", "pref", "high"), "pref", 1),
    (("198.18.5.0/24", "via", "198.18.0.1", "as", "to", "198.18.9.9"), "via",
     ip_address("198.18.0.1")),
    (("198.18.5.0/24", "dev", "eth0", "track_group", "G"), "dev", "eth0"),
    (("198.18.5.0/24", "dev", "eth0", "no_track"), "no_track", True),
])
def test_route_options(words: tuple[str, ...], field: str, value: object) -> None:
    assert getattr(route(*words), field) == value


def test_route_protocol_is_keepalived_unless_untracked() -> None:
    assert route("198.18.5.0/24", "dev", "eth0", "protocol", "static").protocol == 18
    assert route("198.18.5.0/24", "dev", "eth0", "protocol", "static", "no_track").protocol == 4
    assert route("198.18.5.0/24", "dev", "eth0", "protocol", "99", "no_track").protocol == 99
    assert route("198.18.5.0/24", "dev", "eth0", "no_track").protocol == 18


def test_route_text() -> None:
    assert str(route("blackhole", "198.18.5.0/24", "table", "100")) == \
        "blackhole 198.18.5.0/24 table 100"
    assert str(route("default", "via", "198.18.0.1", "dev", "eth0", "metric", "5")) == \
        "default via 198.18.0.1 dev eth0 metric 5"


@pytest.mark.parametrize("option", ["encap", "nexthop", "or", "expires", "realms", "rtt",
                                    "rttvar", "rto_min", "congctl", "ttl-propagate", "vrf"])
def test_unsupported_route_options_are_named(option: str) -> None:
    with pytest.raises(ValueError, match=f"route option '{option}' is not supported"):
        route("198.18.5.0/24", "dev", "eth0", option, "x")


@pytest.mark.parametrize(("words", "message"), [
    (("dev", "eth0"), "no destination"),
    (("198.18.5.0/24", "198.18.6.0/24"), "unknown route option '198.18.6.0/24'"),
    (("198.18.5.0/24", "via", "2001:db8::1"), "another address family"),
    (("via", "2001:db8::1", "198.18.5.0/24"), "mixes IPv4 and IPv6"),
    (("inet6", "198.18.5.0/24"), "mixes IPv4 and IPv6"),
    (("198.18.5.0/24", "from", "198.18.0.0/24"), "only supported with IPv6"),
    (("198.18.5.0/24", "via", "inet6", "2001:db8::1"), "another address family"),
    (("198.18.5.0/24", "table", "nosuchtable"), "unknown table 'nosuchtable'"),
    (("198.18.5.0/24", "metric"), "no value given for 'metric'"),
    (("198.18.5.0/24", "metric", "-1"), "invalid metric '-1'"),
    (("198.18.5.0/24", "features", "sack"), "other than 'ecn'"),
])
def test_bad_route_words(words: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        route(*words)


def test_names_from_iproute2_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rt_tables").write_text("# comment\n200\tvips\nbroken line here\n")
    (tmp_path / "rt_tables.d").mkdir()
    (tmp_path / "rt_tables.d" / "more.conf").write_text("0x10 sixteen\n")
    monkeypatch.setattr(kernel, "IPROUTE2_DIR", tmp_path)
    assert route("198.18.5.0/24", "dev", "eth0", "table", "vips").table == 200
    assert rule("from", "198.18.0.1", "lookup", "sixteen", "priority", "5").table == 16
    assert route("198.18.5.0/24", "dev", "eth0", "table", "main").table == 254


# -- rules -------------------------------------------------------------------

def test_rule_defaults() -> None:
    simple = rule("from", "198.18.0.100", "table", "100", "priority", "100")
    assert simple == VirtualRule(AF_INET, FR_ACT_TO_TBL, priority=100,
                                 src=ip_network("198.18.0.100/32"), table=100)
    assert simple.protocol == 18
    assert str(simple) == "from 198.18.0.100/32 lookup 100 priority 100"
    assert rule("to", "2001:db8::/64", "table", "100").priority is None


@pytest.mark.parametrize(("words", "field", "value"), [
    (("from", "all", "table", "100"), "src", None),
    (("from", "default", "table", "100"), "src", None),
    (("to", "198.18.5.0/24", "lookup", "main"), "dst", ip_network("198.18.5.0/24")),
    (("to", "198.18.5.0/24", "lookup", "main"), "table", 254),
    (("from", "2001:db8::1", "table", "100"), "family", AF_INET6),
    (("inet6", "table", "100"), "family", AF_INET6),
    (("from", "default6", "table", "100"), "family", AF_INET6),
    (("table", "100"), "family", AF_INET),
    (("table", "100", "preference", "7"), "priority", 7),
    (("table", "100", "order", "8"), "priority", 8),
    (("not", "from", "198.18.0.0/24", "table", "100"), "invert", True),
    (("tos", "0x10", "table", "100"), "tos", 16),
    (("dsfield", "8", "table", "100"), "tos", 8),
    (("fwmark", "0x10", "table", "100"), "fwmark", 16),
    (("fwmark", "0x10/0xff", "table", "100"), "fwmask", 255),
    (("fwmark", "16", "table", "100"), "fwmask", None),
    (("iif", "eth0", "table", "100"), "iif", "eth0"),
    (("dev", "eth0", "table", "100"), "iif", "eth0"),
    (("oif", "eth1", "table", "100"), "oif", "eth1"),
    (("l3mdev",), "l3mdev", True),
    (("l3mdev",), "action", FR_ACT_TO_TBL),
    (("blackhole",), "action", FR_ACT_BLACKHOLE),
    (("type", "unreachable"), "action", FR_ACT_UNREACHABLE),
    (("prohibit",), "action", FR_ACT_PROHIBIT),
    (("nop",), "action", FR_ACT_NOP),
    (("goto", "200", "priority", "100"), "goto", 200),
    (("goto", "200", "priority", "100"), "action", FR_ACT_GOTO),
    (("table", "100", "suppress_prefixlength", "0"), "suppress_prefixlength", 0),
    (("table", "100", "sup_pl", "8"), "suppress_prefixlength", 8),
    (("table", "100", "ipproto", "udp"), "ipproto", 17),
    (("table", "100", "ipproto", "6"), "ipproto", 6),
    (("table", "100", "sport", "1000-2000"), "sport", (1000, 2000)),
    (("table", "100", "dport", "53"), "dport", (53, 53)),
    (("table", "100", "uidrange", "1000-1999"), "uidrange", (1000, 1999)),
    (("table", "100", "track_group", "G"), "table", 100),
])
def test_rule_options(words: tuple[str, ...], field: str, value: object) -> None:
    assert getattr(rule(*words), field) == value


def test_rule_protocol_is_keepalived_unless_untracked() -> None:
    assert rule("table", "100", "protocol", "4").protocol == 18
    assert rule("table", "100", "protocol", "4", "no_track").protocol == 4
    assert rule("table", "100", "no_track").protocol == 0      # none sent, as keepalived


@pytest.mark.parametrize(("words", "message"), [
    (("from", "198.18.0.1",), "no action"),
    (("table", "100", "blackhole"), "more than one of"),
    (("l3mdev", "table", "100"), "more than one of"),
    (("table", "0"), "table 0"),
    (("goto", "200"), "preference below its target"),
    (("goto", "200", "priority", "300"), "preference below its target"),
    (("from", "198.18.0.1", "to", "2001:db8::/64", "table", "1"), "mixes IPv4 and IPv6"),
    (("inet6", "from", "198.18.0.1", "table", "1"), "mixes IPv4 and IPv6"),
    (("table", "100", "realms", "1"), "rule option 'realms' is not supported"),
    (("table", "100", "tunnel-id", "1"), "rule option 'tunnel-id' is not supported"),
    (("table", "100", "frobnicate"), "unknown rule option 'frobnicate'"),
    (("table", "100", "fwmark", "x"), "invalid fwmark 'x'"),
    (("table", "100", "ipproto", "nosuchproto"), "invalid ipproto"),
    (("table", "100", "priority"), "no value given for 'priority'"),
])
def test_bad_rule_words(words: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rule(*words)


def test_rule_text() -> None:
    assert str(rule("not", "from", "198.18.0.0/24", "iif", "eth0", "blackhole",
                    "priority", "9")) == "not from 198.18.0.0/24 iif eth0 blackhole priority 9"
    assert str(rule("to", "2001:db8::/64", "goto", "20", "priority", "10")) == \
        "from all to 2001:db8::/64 goto 20 priority 10"


def test_number_rules_counts_down_per_family_like_keepalived() -> None:
    rules = [rule("from", "198.18.0.1", "table", "1"), rule("from", "2001:db8::1", "table", "1"),
             rule("from", "198.18.0.2", "table", "1", "priority", "50"),
             rule("from", "198.18.0.3", "table", "1"), rule("from", "2001:db8::2", "table", "1")]
    assert [r.priority for r in number_rules(rules)] == [16384, 16384, 50, 16383, 16383]


# -- what the parser hands over ----------------------------------------------

CONFIG = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        198.18.0.100/24 dev eth0 label eth0:vip broadcast +
        198.18.0.101
        2001:db8::100/64 -nodad
        198.18.1.100/24 dev eth1 scope link no_track
    }
    virtual_ipaddress_excluded {
        198.18.0.102 peer 198.18.0.202
    }
    virtual_routes {
        198.18.5.0/24 via 198.18.0.1 dev eth0 metric 5
        blackhole 198.18.6.0/24
        default via 198.18.0.1 table 100
        2001:db8:5::/64 via 2001:db8::1 gw 2001:db8::2
    }
    virtual_rules {
        from 198.18.0.100 table 100 priority 100
        to 198.18.5.0/24 lookup main
        fwmark 3 blackhole preference 5
    }
}
"""


def test_every_parsed_line_converts() -> None:
    result = parse("keepalived.conf", text=CONFIG)
    instance = result.root.blocks("vrrp_instance")[0]
    addrs = [VirtualAddress.from_words(words, instance.get("interface"))
             for key in ("virtual_ipaddress", "virtual_ipaddress_excluded")
             for words in instance.get(key)]
    routes = [VirtualRoute.from_words(words) for words in instance.get("virtual_routes")]
    rules = number_rules(VirtualRule.from_words(words) for words in instance.get("virtual_rules"))
    assert [str(a) for a in addrs] == [
        "198.18.0.100/24 dev eth0", "198.18.0.101/32 dev eth0", "2001:db8::100/64 dev eth0",
        "198.18.1.100/24 dev eth1", "198.18.0.102/32 peer 198.18.0.202 dev eth0"]
    assert addrs[0].broadcast == IPv4Address("198.18.0.255") and addrs[0].label == "eth0:vip"
    assert addrs[2].flags == 0 and addrs[3].scope == 253 and addrs[3].no_track
    assert [str(r) for r in routes] == [
        "198.18.5.0/24 via 198.18.0.1 dev eth0 metric 5", "blackhole 198.18.6.0/24",
        "default via 198.18.0.1 table 100", "2001:db8:5::/64 via 2001:db8::2"]
    assert [str(r) for r in rules] == [
        "from 198.18.0.100/32 lookup 100 priority 100",
        "from all to 198.18.5.0/24 lookup 254 priority 16384",
        "from all fwmark 3 blackhole priority 5"]


# -- link state --------------------------------------------------------------

@pytest.mark.parametrize(("flags", "kind", "up", "deleted"), [
    (0x1 | 0x40, 16, True, False),         # IFF_UP | IFF_RUNNING
    (0x1, 16, False, False),               # admin up, no carrier
    (0x40, 16, False, False),
    (0x1 | 0x40, 17, True, True),          # RTM_DELLINK
])
def test_link_state_from_message(flags: int, kind: int, up: bool, deleted: bool) -> None:
    msg = {"index": 2, "flags": flags, "header": {"type": kind},
           "IFLA_IFNAME": "eth0", "IFLA_ADDRESS": "02:00:00:00:00:01", "IFLA_MTU": 1500}
    assert LinkState.from_message(msg) == LinkState(2, "eth0", up, bytes.fromhex("020000000001"),
                                                    1500, deleted)
