"""``bfd_instance`` resolved for the BFD process: keepalived 2.2.7's defaults and
end-of-block decisions, the IPv6 hop limit fixed, and what refuses a configuration."""

from __future__ import annotations

import socket

import pytest
from keepalived_py.bfd.spec import (
    BuildError,
    ProcessSettings,
    SessionSpec,
    build,
    build_checked,
)
from keepalived_py.config import load
from keepalived_py.config.model import Node
from keepalived_py.core.children import build_refusals

# the check the BFD child declares (child.py), as the parent runs it before a reload
check = build_refusals("keepalived_py.bfd.spec")


def root(text: str) -> Node:
    return load("t.conf", text=text, interfaces={"eth0"}).root


def one(body: str, name: str = "s") -> SessionSpec:
    (spec,) = build(root(f"bfd_instance {name} {{\n{body}\n}}\n")).sessions
    return spec


def test_keepalived_defaults_with_an_ipv6_hop_limit_of_255() -> None:
    v4 = one("neighbor_ip 198.18.0.12")
    assert (v4.min_rx_us, v4.min_tx_us, v4.idle_tx_us, v4.multiplier) == \
        (10_000, 10_000, 1_000_000, 5)
    assert (v4.ttl, v4.max_hops, v4.passive, v4.multihop) == (255, 0, False, False)
    assert (v4.family, v4.source, v4.port) == (socket.AF_INET, None, 3784)
    assert (v4.weight, v4.reverse, v4.to_vrrp, v4.to_checker) == (0, False, True, True)
    v6 = one("neighbor_ip 2001:db8::12")
    # keepalived 2.2.7: 64, which every RFC 5881 peer drops (GTSM)
    assert (v6.family, v6.ttl) == (socket.AF_INET6, 255)
    config = v6.engine_config()
    assert (config.ttl, config.min_rx_ttl, config.port) == (255, 255, 3784)


def test_intervals_in_milliseconds_with_microsecond_resolution() -> None:
    spec = one("neighbor_ip 198.18.0.12\nmin_rx 3.312\nmin_tx 20\nidle_tx 2000.5\n"
               "multiplier 3")
    assert (spec.min_rx_us, spec.min_tx_us, spec.idle_tx_us, spec.multiplier) == \
        (3_312, 20_000, 2_000_500, 3)
    config = spec.engine_config()
    assert (config.min_rx_us, config.min_tx_us, config.idle_tx_us, config.multiplier) == \
        (3_312, 20_000, 2_000_500, 3)


def test_the_other_settings() -> None:
    spec = one("neighbour_ip 2001:DB8:0::0012\nsource_ip 2001:db8::11\npassive\nhoplimit 200\n"
               "max_hops 10\nweight -20 reverse\nchecker")
    # canonical text, as recvmsg() reports the source of a packet
    assert (spec.neighbor, spec.source) == ("2001:db8::12", "2001:db8::11")
    assert (spec.passive, spec.ttl, spec.max_hops) == (True, 200, 10)
    assert spec.engine_config().min_rx_ttl == 190
    assert (spec.weight, spec.reverse, spec.to_vrrp, spec.to_checker) == (-20, True, False, True)
    assert one("neighbor_ip 198.18.0.12\nvrrp").to_checker is False
    both = one("neighbor_ip 198.18.0.12\nvrrp\nchecker")
    assert (both.to_vrrp, both.to_checker) == (True, True)


def test_an_address_with_a_mask_or_a_range_is_read_as_keepalived_reads_it() -> None:
    assert one("neighbor_ip 198.18.0.12/24").neighbor == "198.18.0.12"


def test_max_hops_above_the_ttl_is_lowered_to_it_and_255_turns_the_check_off() -> None:
    config = build(root("bfd_instance s {\nneighbor_ip 198.18.0.12\nttl 200\nmax_hops 250\n}\n"))
    (spec,) = config.sessions
    assert spec.max_hops == 200
    assert config.errors == ("t.conf:1: BFD instance s: max_hops exceeds ttl/hoplimit - "
                             "setting to ttl/hoplimit",)
    assert one("neighbor_ip 198.18.0.12\nmax_hops 255").engine_config().min_rx_ttl == 0


def test_multihop_uses_port_4784_and_no_ttl_rule_unless_max_hops_is_given() -> None:
    spec = one("neighbor_ip 198.18.0.12\nmultihop yes")
    assert (spec.multihop, spec.max_hops, spec.port) == (True, None, 4784)
    assert spec.engine_config().min_rx_ttl == 0
    assert one("neighbor_ip 198.18.0.12\nmultihop\nmax_hops 5").engine_config().min_rx_ttl == 250


def test_keepalived_drops_duplicates_and_a_source_of_the_other_family() -> None:
    config = build(root("""
bfd_instance a {
    neighbor_ip 198.18.0.12
    source_ip 198.18.0.11
}
bfd_instance a {
    neighbor_ip 198.18.0.13
}
bfd_instance b {
    neighbor_ip 198.18.0.12
    source_ip 198.18.0.10
}
bfd_instance c {
    neighbor_ip 198.18.0.12
}
bfd_instance d {
    neighbor_ip 198.18.0.14
    source_ip 2001:db8::11
}
bfd_instance e {
    source_ip 198.18.0.11
}
"""))
    assert [s.name for s in config.sessions] == ["a", "b"]     # two sources: two sessions
    assert config.errors == (
        "t.conf:6: Configuration error: BFD instance a already configured - ignoring",
        "t.conf:13: Configuration error: BFD instance c has duplicate neighbor address "
        "198.18.0.12, ignoring instance",
        "t.conf:16: Configuration error: BFD instance d source address 2001:db8::11 and "
        "neighbor address 198.18.0.14 are not of the same family, disabling instance")
    # e: the validator reported the missing neighbor; it is dropped without a second word
    with pytest.raises(BuildError, match="already configured"):
        build_checked(root("bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n"
                           "bfd_instance a {\nneighbor_ip 198.18.0.13\n}\n"))
    # at start the process runs without them, as keepalived does
    assert len(build_checked(root("bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n"
                                  "bfd_instance a {\nneighbor_ip 198.18.0.13\n}\n"),
                             strict=False).sessions) == 1


@pytest.mark.parametrize(("body", "why"), [
    ("neighbor_ip fe80::1", "link-local neighbor address"),
    ("neighbor_ip 2001:db8::1\nsource_ip fe80::2", "link-local source address"),
    ("neighbor_ip 198.18.0.12\nmax_hops -1", "max_hops -1 would drop every packet"),
])
def test_what_the_parser_takes_but_the_process_cannot_run(body: str, why: str) -> None:
    conf = root(f"bfd_instance s {{\n{body}\n}}\n")
    with pytest.raises(BuildError, match=why):
        build_checked(conf, strict=False)
    assert check(conf, "t.conf") and why in check(conf, "t.conf")[0]


def test_the_parent_refuses_a_reload_the_process_would_run_without_an_instance() -> None:
    good = root("bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n")
    assert check(good, "t.conf") == []
    dup = root("bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n"
               "bfd_instance b {\nneighbor_ip 198.18.0.12\n}\n")
    assert "duplicate neighbor address" in check(dup, "t.conf")[0]


def test_global_defs_scheduling_settings() -> None:
    config = build(root("global_defs {\nbfd_priority -5\nbfd_rt_priority 50\n"
                        "bfd_rlimit_rttime 20000\nbfd_no_swap\nbfd_cpu_affinity 0 1\n}\n"
                        "bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n"))
    assert config.settings == ProcessSettings(priority=-5, rt_priority=50,
                                              rlimit_rttime_us=20000, no_swap=True,
                                              cpu_affinity=(0, 1))
    assert build(root("bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n")).settings == \
        ProcessSettings()


def test_a_path_change_is_a_new_session_a_timer_change_is_not() -> None:
    spec = one("neighbor_ip 198.18.0.12\nsource_ip 198.18.0.11")
    assert spec.path == one("neighbor_ip 198.18.0.12\nsource_ip 198.18.0.11\nmin_tx 50").path
    assert spec.path != one("neighbor_ip 198.18.0.12").path
    assert spec.path != one("neighbor_ip 198.18.0.12\nsource_ip 198.18.0.11\nmultihop").path
