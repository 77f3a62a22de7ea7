"""Static addresses, routes and rules, track_group and garp_group: the pure part.

Each test names the keepalived 2.2.7 source it mirrors.  The kernel side is
tests/integration/test_static.py, against keepalived itself.
"""

from __future__ import annotations

import socket
from ipaddress import ip_network

from keepalived_py.config import parse
from keepalived_py.config.model import Node
from keepalived_py.vrrp.kernel import RTPROT_KEEPALIVED, VirtualRoute
from keepalived_py.vrrp.static import (
    RuleSeen,
    StaticConfig,
    garp_intervals,
    number_all_rules,
    plan_reload,
    track_groups,
)

INSTANCE = """
vrrp_instance {name} {{
  interface eth0
  virtual_router_id {vrid}
  virtual_ipaddress {{
    198.18.0.{vrid}/24
  }}
  {extra}
}}
"""


def root(text: str) -> Node:
    return parse("t.conf", text=text).root


def instance(name: str, vrid: int, extra: str = "") -> str:
    return INSTANCE.format(name=name, vrid=vrid, extra=extra)


def static(text: str) -> StaticConfig:
    return StaticConfig.from_root(root(text))


# -- entries ------------------------------------------------------------------

def test_an_address_without_dev_goes_on_the_default_interface() -> None:
    # vrrp_ipaddress.c alloc_ipaddress: a static address without an interface
    # takes get_default_if(): global_defs default_interface, else "eth0"
    body = "static_ipaddress {\n198.18.1.1/24\n198.18.1.2/24 dev eth1\n}\n"
    assert [a.address.ifname for a in static(body).addresses] == ["eth0", "eth1"]
    config = static("global_defs {\ndefault_interface eth2\n}\n" + body)
    assert [a.address.ifname for a in config.addresses] == ["eth2", "eth1"]


def test_route_protocol_is_keepalived_unless_untracked_with_a_protocol() -> None:
    # vrrp_iproute.c alloc_route: a tracked route is reset to RTPROT_KEEPALIVED;
    # netlink_route sends the given protocol only for no_track routes
    config = static("static_routes {\n"
                    "198.18.5.0/24 dev eth0 protocol static\n"
                    "198.18.6.0/24 dev eth0 no_track protocol static\n"
                    "198.18.7.0/24 dev eth0 no_track\n}\n")
    assert [r.route.protocol for r in config.routes] == [RTPROT_KEEPALIVED, 4, RTPROT_KEEPALIVED]


def test_a_route_without_dev_is_not_tracked_and_loses_its_track_group() -> None:
    # vrrp_iproute.c alloc_route: "cannot track route ... with no interface
    # specified", and "Static route cannot have track group if no oif specified"
    config = static("track_group G {\ngroup {\nVI_1\n}\n}\n"
                    "static_routes {\n198.18.5.0/24 via 198.18.0.1 track_group G\n"
                    "198.18.6.0/24 via 198.18.0.1 dev eth0 track_group G\n}\n"
                    + instance("VI_1", 1))
    first, second = config.routes
    assert (first.tracked, first.track_group) == (False, None)
    assert (second.tracked, second.track_group) == (True, "G")


def test_rules_are_numbered_with_the_instances_in_file_order_per_family() -> None:
    # vrrp_iprule.c alloc_rule: next_rule_priority_ipv4/ipv6-- as lines are read,
    # static_rules and virtual_rules alike (keepalived -t shows 16384 then 16383)
    vrule = "virtual_rules {\nfrom 198.18.9.0/24 table 102\n}"
    srules = "static_rules {\nfrom 198.18.1.0/24 table 100\nfrom 2001:db8:1::/64 table 100\n" \
             "from 198.18.2.0/24 table 101 priority 200\n}\n"
    before = root(srules + instance("VI_1", 1, vrule))
    static_rules, per_instance = number_all_rules(before)
    assert [r.priority for _, r in static_rules] == [16384, 16384, 200]
    assert [r.priority for r in per_instance["VI_1"]] == [16383]
    after = root(instance("VI_1", 1, vrule) + srules + instance("VI_2", 2, vrule))
    static_rules, per_instance = number_all_rules(after)
    assert [r.priority for r in per_instance["VI_1"]] == [16384]
    assert [r.priority for _, r in static_rules] == [16383, 16384, 200]
    assert [r.priority for r in per_instance["VI_2"]] == [16382]


# -- track_group ------------------------------------------------------------------

def test_track_groups_keep_existing_instances_and_drop_empty_groups() -> None:
    # vrrp_static_track.c static_track_group_set: unknown instances are ignored and
    # a group left without any is removed; vrrp_parser.c: a repeated name is skipped
    text = ("track_group G1 {\ngroup {\nVI_1\nNOPE\n}\n}\n"
            "track_group G2 {\ngroup {\nNOPE\n}\n}\n"
            "track_group G1 {\ngroup {\nVI_2\n}\n}\n" + instance("VI_1", 1) + instance("VI_2", 2))
    assert track_groups(root(text)) == {"G1": ("VI_1",)}


def test_group_instances_track_the_link_of_each_static_entry() -> None:
    # vrrp_static_track.c static_track_group_init: add_vrrp_to_interface(weight 0)
    # on the address's interface, the route's oif and the rule's iif (not its oif);
    # an entry with no_track as well is not tracked
    config = static(
        "track_group G {\ngroup {\nVI_1\nVI_2\n}\n}\n"
        "static_ipaddress {\n198.18.1.1/24 dev eth1 track_group G\n"
        "198.18.1.2/24 dev eth4 track_group G no_track\n}\n"
        "static_routes {\n198.18.5.0/24 dev eth2 track_group G\n}\n"
        "static_rules {\nfrom 198.18.1.0/24 iif eth3 table 100 priority 10 track_group G\n"
        "from 198.18.2.0/24 oif eth5 table 100 priority 11 track_group G\n}\n"
        + instance("VI_1", 1) + instance("VI_2", 2) + instance("VI_3", 3))
    assert config.tracked_links() == {"VI_1": ("eth1", "eth2", "eth3"),
                                      "VI_2": ("eth1", "eth2", "eth3")}


def test_route_and_rule_events_are_watched_only_in_some_families() -> None:
    # vrrp.c process_static_entries (a static route/rule with a track_group) and
    # vrrp_complete_instance (a tracked virtual route with a dev, a tracked rule)
    # decide which netlink route/rule groups keepalived joins
    plain = static("static_routes {\n198.18.5.0/24 dev eth0\n}\n"
                   "static_rules {\nfrom 198.18.1.0/24 table 100 priority 10\n}\n")
    assert (plain.route_families, plain.rule_families) == (frozenset(), frozenset())
    grouped = static("track_group G {\ngroup {\nVI_1\n}\n}\n"
                     "static_routes {\n2001:db8:5::/64 dev eth0 track_group G\n}\n"
                     + instance("VI_1", 1, "virtual_rules {\nfrom 198.18.9.0/24 table 9\n}"))
    assert grouped.route_families == {socket.AF_INET6}
    assert grouped.rule_families == {socket.AF_INET}
    untracked = static(instance("VI_1", 1, "virtual_routes {\n198.18.8.0/24 dev eth0 no_track\n"
                                           "198.18.9.0/24 via 198.18.0.1\n}"))
    assert untracked.route_families == frozenset()


# -- putting entries back ------------------------------------------------------

def test_a_deleted_tracked_address_is_put_back() -> None:
    # keepalived_netlink.c netlink_if_address_filter: RTM_DELADDR of a static
    # address without no_track -> reinstate_static_address; matched on family,
    # interface and address (addr_is_equal), not on prefix length
    config = static("static_ipaddress {\n198.18.1.1/24 dev eth0\n198.18.1.2/24 dev eth0 no_track\n"
                    "2001:db8:1::1/64 dev eth0\n}\n")
    assert str(config.address_deleted("eth0", "198.18.1.1").address) == "198.18.1.1/24"
    assert config.address_deleted("eth1", "198.18.1.1") is None
    assert config.address_deleted("eth0", "198.18.1.2") is None
    assert config.address_deleted("eth0", "2001:db8:1::1") is not None


def test_a_deleted_route_is_put_back_only_if_keepalived_hears_of_it() -> None:
    # keepalived_netlink.c netlink_route_filter/route_is_ours: protocol keepalived
    # only, matched on table, family, destination and tos; the first match decides
    text = ("track_group G {\ngroup {\nVI_1\n}\n}\n"
            "static_routes {\n198.18.5.0/24 dev eth0 table 100 track_group G\n"
            "198.18.6.0/24 via 198.18.0.1 dev eth0\n198.18.7.0/24 via 198.18.0.1\n}\n"
            + instance("VI_1", 1))
    config = static(text)
    v4 = socket.AF_INET

    def deleted(dst: str, table: int = 254, protocol: int = RTPROT_KEEPALIVED) -> object:
        return config.route_deleted(v4, table, ip_network(dst), 0, protocol)

    assert deleted("198.18.5.0/24", table=100).dst == ip_network("198.18.5.0/24")
    assert deleted("198.18.5.0/24") is None                    # other table
    assert deleted("198.18.6.0/24").via is not None            # no group, same family: watched
    assert deleted("198.18.6.0/24", protocol=4) is None        # not ours
    assert deleted("198.18.7.0/24") is None                    # no dev: not tracked
    quiet = static(text.replace(" track_group G", ""))
    assert quiet.route_deleted(v4, 254, ip_network("198.18.6.0/24"), 0, 18) is None


def test_a_deleted_rule_is_matched_on_what_the_kernel_reports() -> None:
    # keepalived_netlink.c compare_rule: a fwmark without a mask comes back with
    # mask 0xffffffff; protocol other than keepalived is ignored
    config = static("track_group G {\ngroup {\nVI_1\n}\n}\n"
                    "static_rules {\nfrom 198.18.1.0/24 iif lo fwmark 5 table 100 priority 400 "
                    "track_group G\nfrom 198.18.2.0/24 table 100 priority 401 no_track\n}\n"
                    + instance("VI_1", 1))
    message = {"family": 2, "dst_len": 0, "src_len": 24, "tos": 0, "table": 100, "action": 1,
               "flags": 0, "attrs": [("FRA_TABLE", 100), ("FRA_SUPPRESS_PREFIXLEN", 4294967295),
                                     ("FRA_PROTOCOL", 18), ("FRA_IIFNAME", "lo"),
                                     ("FRA_PRIORITY", 400), ("FRA_FWMARK", 5),
                                     ("FRA_FWMASK", 4294967295), ("FRA_SRC", "198.18.1.0")]}
    assert config.rule_deleted(RuleSeen.from_message(message)).priority == 400
    other = {**message, "attrs": [*message["attrs"][:-1], ("FRA_SRC", "198.18.3.0")]}
    assert config.rule_deleted(RuleSeen.from_message(other)) is None
    foreign = {**message, "attrs": [("FRA_PROTOCOL", 4), *message["attrs"]]}
    assert config.rule_deleted(RuleSeen.from_message(foreign)) is None
    untracked = {"family": 2, "dst_len": 0, "src_len": 24, "tos": 0, "table": 100, "action": 1,
                 "flags": 0, "attrs": [("FRA_TABLE", 100), ("FRA_PRIORITY", 401),
                                       ("FRA_SRC", "198.18.2.0")]}
    assert config.rule_deleted(RuleSeen.from_message(untracked)) is None


def test_a_link_coming_up_gets_its_tracked_addresses_and_routes_back() -> None:
    # vrrp_if.c interface_up -> static_track_group_reinstate_config: addresses and
    # routes of that interface without no_track; rules survive a link going down
    config = static("static_ipaddress {\n198.18.1.1/24 dev eth0\n198.18.1.2/24 dev eth0 no_track\n"
                    "198.18.1.3/24 dev eth1\n}\n"
                    "static_routes {\n198.18.5.0/24 dev eth0\n198.18.6.0/24 dev eth1\n}\n")
    addresses, routes = config.on_link("eth0")
    assert [str(a.address) for a in addresses] == ["198.18.1.1/24"]
    assert [str(r.dst) for r in routes] == ["198.18.5.0/24"]


# -- reload ---------------------------------------------------------------------

OLD = """
static_ipaddress {
  198.18.1.1/24 dev eth0
  198.18.4.1/24 dev eth0
  198.18.5.1/24 dev eth0 brd +
}
static_routes {
  198.18.10.0/24 via 198.18.0.1 dev eth0
  198.18.11.0/24 dev eth0 metric 50 table 100
  198.18.15.0/24 via 198.18.0.1 dev eth0 mtu 1400
}
static_rules {
  from 198.18.2.0/24 table 101 priority 200
  from 198.18.7.0/24 table 100 priority 400
}
"""

NEW = """
static_ipaddress {
  198.18.1.1/24 dev eth0
  198.18.4.2/24 dev eth0
  198.18.5.1/24 dev eth0 brd -
}
static_routes {
  198.18.10.0/24 via 198.18.0.1 dev eth0
  198.18.11.0/24 dev eth0 metric 60 table 100
  198.18.15.0/24 via 198.18.0.1 dev eth0 mtu 1300
}
static_rules {
  from 198.18.2.0/24 table 101 priority 200
  from 198.18.7.0/24 table 102 priority 400
}
"""


def test_reload_touches_only_the_difference() -> None:
    # vrrp_daemon.c reload: clear_diff_static_rules (whole rule compared),
    # clear_diff_static_routes (route_exist's key; a match is replaced), then
    # clear_diff_static_addresses (compare_ipaddress's key), then add the rest
    old, new = static(OLD), static(NEW)
    installed = {*(a.address for a in old.addresses), *(r.route for r in old.routes),
                 *(r.rule for r in old.rules)}
    plan = plan_reload(old, installed, new)
    assert [r.priority for r in plan.remove_rules] == [400]
    assert [r.table for r in plan.add_rules] == [102]
    # metric is in the key: removed and added; mtu is not: replaced in place, and
    # so is the unchanged route, which keepalived does not compare further
    assert [(str(r.dst), r.metric) for r in plan.remove_routes] == [("198.18.11.0/24", 50)]
    assert [(str(r.dst), r.metric) for r in plan.add_routes] == [("198.18.11.0/24", 60)]
    assert [(str(o.dst), dict(o.metrics), dict(n.metrics)) for o, n in plan.replace_routes] == \
        [("198.18.10.0/24", {}, {}), ("198.18.15.0/24", {"RTAX_MTU": 1400}, {"RTAX_MTU": 1300})]
    assert [str(a.address) for a in plan.remove_addresses] == ["198.18.4.1/24"]
    assert [str(a.address) for a in plan.add_addresses] == ["198.18.4.2/24"]
    # unchanged, and the broadcast change keepalived does not see: left alone
    kept = {str(x.address) for x in plan.kept if hasattr(x, "address")}
    assert kept == {"198.18.1.1/24", "198.18.5.1/24"}
    assert not [x for x in plan.kept if isinstance(x, VirtualRoute)]


def test_reload_adds_what_the_old_config_failed_to_install() -> None:
    # netlink_iplist/netlink_rtlist/netlink_rulelist add what is not "set", and
    # the diff only removes what is
    old = static(OLD)
    plan = plan_reload(old, set(), old)
    assert not (plan.remove_rules or plan.remove_routes or plan.remove_addresses or plan.kept)
    assert (len(plan.add_addresses), len(plan.add_routes), len(plan.add_rules)) == (3, 3, 2)


# -- garp_group -------------------------------------------------------------------

def test_garp_group_intervals_replace_the_global_ones_on_its_interfaces() -> None:
    # vrrp_parser.c garp_group handlers; vrrp_if.c set_default_garp_delay gives the
    # global intervals only to interfaces without a group, so an interval a group
    # leaves out is 0 there; the first group naming an interface keeps it; a
    # group without any interval is removed; one group's interfaces share its timer
    config = root("global_defs {\nvrrp_garp_interval 0.01\nvrrp_gna_interval 0.02\n}\n"
                  "garp_group {\ngarp_interval 0.5\ninterface eth1\n"
                  "interfaces {\neth2\neth3\n}\n}\n"
                  "garp_group {\ngna_interval 0.3\ninterfaces {\neth1\neth4\n}\n}\n"
                  "garp_group {\ninterface eth5\n}\n")
    intervals = garp_intervals(config)
    assert dict(intervals) == {"eth1": (500_000, 0), "eth2": (500_000, 0), "eth3": (500_000, 0),
                               "eth4": (0, 300_000)}
    assert intervals["eth0"] == intervals["eth5"] == (10_000, 20_000)
    assert intervals.pacing("eth1") == intervals.pacing("eth3") != intervals.pacing("eth4")
    assert intervals.pacing("eth0") == "eth0"


def test_without_global_defs_there_is_no_pacing() -> None:
    # global_data.c: vrrp_garp_interval and vrrp_gna_interval default to 0
    assert garp_intervals(root(instance("VI_1", 1)))["eth0"] == (0, 0)
