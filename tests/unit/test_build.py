"""From keepalived.conf to the settings the VRRP runtime runs, with keepalived's defaults."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from keepalived_py.config import parse
from keepalived_py.vrrp.build import BuildError, build_instances


def specs(body: str, globals_: str = ""):
    text = (f"global_defs {{\n{globals_}\n}}\n" if globals_ else "") + \
        f"vrrp_instance VI {{\n interface eth0\n virtual_router_id 7\n{body}\n}}\n"
    result = parse("t.conf", text=text)
    return build_instances(result.root)[0]


def test_defaults() -> None:
    s = specs("virtual_ipaddress {\n198.18.0.100/24\n}")
    cfg = s.cfg
    assert (cfg.version, cfg.priority, cfg.advert_int_us, cfg.initial_master) == \
        (2, 100, 1_000_000, False)
    assert cfg.addresses == (IPv4Address("198.18.0.100"),)
    assert (cfg.garp_repeat, cfg.garp_delay_us, cfg.down_timer_adverts) == (5, 5_000_000, 3)
    assert s.group == IPv4Address("224.0.0.18") and s.accept and s.unicast_ttl == 255
    assert [t.name for t in s.tracks] == ["eth0"]


def test_state_master_without_priority_is_the_owner_and_an_owner_starts_master() -> None:
    assert specs("state MASTER\nvirtual_ipaddress {\n198.18.0.1\n}").cfg.priority == 255
    owner = specs("priority 255\nvirtual_ipaddress {\n198.18.0.1\n}").cfg
    assert owner.initial_master


def test_nopreempt_and_preempt_delay_are_cleared_with_state_master() -> None:
    cfg = specs("state MASTER\npriority 150\nnopreempt\nvirtual_ipaddress {\n198.18.0.1\n}").cfg
    assert not cfg.nopreempt
    cfg = specs("preempt_delay 3\nnopreempt\nvirtual_ipaddress {\n198.18.0.1\n}").cfg
    assert cfg.nopreempt and cfg.preempt_delay_us == 0
    assert specs("preempt_delay 3\nvirtual_ipaddress {\n198.18.0.1\n}").cfg.preempt_delay_us \
        == 3_000_000


def test_ipv6_is_vrrpv3_and_other_family_addresses_are_not_advertised() -> None:
    s = specs("virtual_ipaddress {\nfe80::1/64\n2001:db8::1/64\n198.18.0.1/24\n}")
    assert s.cfg.family == 6 and s.cfg.version == 3
    assert [str(a) for a in s.cfg.addresses] == ["fe80::1", "2001:db8::1"]
    assert s.excluded_vips == (("198.18.0.1/24",),)


def test_v2_advert_interval_is_whole_seconds_v3_keeps_centiseconds() -> None:
    assert specs("advert_int 0.4\nvirtual_ipaddress {\n198.18.0.1\n}").cfg.advert_int_us \
        == 1_000_000
    assert specs("version 3\nadvert_int 0.05\nvirtual_ipaddress {\n198.18.0.1\n}") \
        .cfg.advert_int_us == 50_000


def test_accept_mode_defaults_as_keepalived() -> None:
    vip = "virtual_ipaddress {\n198.18.0.1\n}"
    assert specs(vip).accept
    assert not specs("no_accept\n" + vip).accept
    assert not specs(vip, globals_="vrrp_strict").accept
    assert specs("priority 255\nno_accept\n" + vip).accept      # the owner always accepts


def test_unicast_auth_and_globals() -> None:
    s = specs("unicast_src_ip 198.18.0.11\nunicast_peer {\n198.18.0.12 min_ttl 250\n}\n"
              "authentication {\nauth_type PASS\nauth_pass verylongsecret\n}\n"
              "track_interface {\neth1 weight -20\n}\ndont_track_primary\n"
              "virtual_ipaddress {\n198.18.0.1\n}",
              globals_="vrrp_garp_master_repeat 2\nvrrp_mcast_group4 224.0.0.19")
    cfg = s.cfg
    assert cfg.unicast and cfg.peers[0].min_ttl == 250
    assert cfg.source == IPv4Address("198.18.0.11")
    assert (cfg.auth_type, cfg.auth_pass) == (1, b"verylong")
    assert cfg.garp_repeat == 2 and s.group == IPv4Address("224.0.0.19")
    assert [(t.name, t.weight) for t in s.tracks] == [("eth1", -20)]


def test_links_of_vips_routes_and_rules_are_tracked_unless_no_track() -> None:
    s = specs("virtual_ipaddress {\n198.18.0.1 dev eth1\n198.18.0.2 dev eth2 no_track\n}\n"
              "virtual_routes {\n198.18.9.0/24 dev eth3\n}\n"
              "virtual_rules {\nfrom 198.18.0.1 iif eth4 table 100\n}")
    assert [t.name for t in s.tracks] == ["eth0", "eth1", "eth3", "eth4"]
    assert all(t.weight == 0 for t in s.tracks)


def test_a_route_the_kernel_adapter_cannot_make_is_refused_with_its_place() -> None:
    with pytest.raises(BuildError, match=r"t\.conf:\d+: \(VI\) virtual_routes .*nexthop"):
        specs("virtual_ipaddress {\n198.18.0.1\n}\nvirtual_routes {\n"
              "198.18.9.0/24 nexthop via 198.18.0.2 nexthop via 198.18.0.3\n}")
