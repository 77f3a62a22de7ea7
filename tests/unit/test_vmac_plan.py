"""The VMAC planner (agent/vrrp/vmac.py, plan_vmacs) and what the runtime takes from it.

Expected names, MACs and messages are keepalived 2.2.7's (vrrp.c create_vmac_name and
vrrp_complete_instance, vrrp_parser.c vrrp_vmac_handler); test_vmac_kernel.py
compares the same plans with what keepalived makes on a real kernel.
"""

from __future__ import annotations

import pytest
from keepalived_py.config import parse
from keepalived_py.vrrp.build import build_instances, with_vmacs
from keepalived_py.vrrp.runtime import identity, kernel_objects
from keepalived_py.vrrp.track import INTERFACE, Track
from keepalived_py.vrrp.vmac import (
    IFNAMSIZ,
    Link,
    VmacPlan,
    mentions_vmac,
    plan_vmacs,
    vmac_name,
    vrrp_mac,
)


def instance(name: str, vrid: int, vips: str, extra: str = "", interface: str = "eth0",
             evips: str = "") -> str:
    excluded = f"    virtual_ipaddress_excluded {{\n{evips}\n    }}\n" if evips else ""
    return (f"vrrp_instance {name} {{\n    interface {interface}\n"
            f"    virtual_router_id {vrid}\n{extra}\n"
            f"    virtual_ipaddress {{\n{vips}\n    }}\n{excluded}}}\n")


def plan(*instances: str, globals_: str = "", links: tuple[Link, ...] = (),
         owned: tuple[str, ...] = ()) -> VmacPlan:
    text = (f"global_defs {{\n{globals_}\n}}\n" if globals_ else "") + "".join(instances)
    return plan_vmacs(parse("t.conf", text=text).root, links, owned)


def names(p: VmacPlan) -> list[str]:
    return [s.ifname for s in p.specs]


ETH0 = Link("eth0", 2, bytes.fromhex("020000000011"))


# -- names ----------------------------------------------------------------------------

def test_names_follow_keepalived_s_order() -> None:
    # PREFIX.VRID first; IPv6 tries PREFIX6.VRID next; then PREFIXn.VRID
    assert vmac_name("vrrp", 51, 4, ()) == "vrrp.51"
    assert vmac_name("vrrp", 51, 4, {"vrrp.51"}) == "vrrp1.51"
    assert vmac_name("vrrp", 51, 6, {"vrrp.51"}) == "vrrp6.51"
    assert vmac_name("vrrp", 51, 6, {"vrrp.51", "vrrp6.51"}) == "vrrp1.51"
    taken = {"vrrp.51", "vrrp6.51", *(f"vrrp{n}.51" for n in range(1, 6))}
    assert vmac_name("vrrp", 51, 6, taken) == "vrrp7.51"   # 6 is not tried twice
    assert vmac_name("vrrp", 51, 4, taken) == "vrrp7.51"


def test_a_long_prefix_is_cut_to_fit_ifnamsiz() -> None:
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac"),
             instance("B", 51, "2001:db8::1/64", "use_vmac"),
             globals_="vmac_prefix averyveryverylongprefix")
    assert names(p) == ["averyveryver.51", "averyveryve6.51"]
    assert all(len(name) == IFNAMSIZ - 1 for name in names(p))


def test_two_instances_of_one_vrid_and_the_default_macs() -> None:
    p = plan(instance("V4", 51, "198.18.0.1/24", "use_vmac"),
             instance("V6", 51, "2001:db8::1/64", "use_vmac"))
    v4, v6 = p.specs
    assert (v4.ifname, v4.mac, v4.family) == ("vrrp.51", bytes.fromhex("00005e000133"), 4)
    assert (v6.ifname, v6.mac, v6.family) == ("vrrp6.51", bytes.fromhex("00005e000233"), 6)
    assert v6.wants_link_local and not v4.wants_link_local
    assert p.messages == []


def test_an_existing_vmac_of_the_same_base_and_mac_is_reused_under_its_name() -> None:
    left = Link("old51", 7, vrrp_mac(4, 51), "macvlan", "private", ETH0.ifindex)
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac"), links=(ETH0, left))
    assert names(p) == ["old51"]
    # with a name configured, the running one of ours is renamed as keepalived says
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac mine"), links=(ETH0, left))
    assert names(p) == ["old51"]
    assert p.messages == ["(A) vmac name mismatch mine <=> old51. changing to old51."]
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac mine"), links=(ETH0, left),
             owned=("old51",))
    assert names(p) == ["mine"]
    assert p.messages == ["(A) Deleting old VMAC interface old51"]


# -- MACs and errors ------------------------------------------------------------------

def test_a_five_octet_mac_takes_the_vrid_as_sixth() -> None:
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac mine 02:00:5e:11:22"))
    assert (p.specs[0].ifname, p.specs[0].mac) == ("mine", bytes.fromhex("02005e112233"))


@pytest.mark.parametrize(("extra", "message"), [
    ("use_vmac 00:00:5e:00:01:34",
     "VMAC MAC address not allowed to be RFC5798 address (00:00:5e:00:01:34) - ignoring"),
    ("use_vmac 02:00:00:00:00:01\n    strict_mode on",
     "(A): cannot specify MAC address with strict mode - clearing"),
])
def test_refused_macs_fall_back_to_the_rfc_mac(extra: str, message: str) -> None:
    p = plan(instance("A", 51, "198.18.0.1/24", extra))
    assert p.specs[0].mac == vrrp_mac(4, 51)
    assert p.messages == [message]


def test_a_name_used_twice_or_held_by_another_kind_of_link_is_ignored() -> None:
    veth = Link("taken", 9, bytes(6), "veth")
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac same"),
             instance("B", 52, "198.18.0.2/24", "use_vmac same"),
             instance("C", 53, "198.18.0.3/24", "use_vmac taken"), links=(ETH0, veth))
    assert names(p) == ["same", "vrrp.52", "vrrp.53"]
    assert p.messages == [
        "(B) VRRP instance A is already using same - ignoring name",
        "(C) interface taken already exists and is not a private macvlan; ignoring vmac if_name",
    ]


def test_unicast_forces_vmac_xmit_base_and_strict_mode_clears_it() -> None:
    p = plan(instance("U", 51, "198.18.0.1/24", "use_vmac\n    unicast_peer { 198.18.0.2 }"),
             instance("S", 52, "198.18.0.2/24", "use_vmac\n    vmac_xmit_base\n"
                      "    strict_mode on"),
             instance("N", 53, "198.18.0.3/24", "vmac_xmit_base"))
    u, s = p.specs
    assert u.xmit_base and not s.xmit_base
    assert p.instances["N"].vmac is None
    assert p.messages == [
        "(U) unicast with use_vmac requires vmac_xmit_base - setting",
        "(S) xmit_base is incompatible with strict mode - resetting",
        "(N) vmac_xmit_base is only valid with a vmac",
    ]


# -- where the VIPs go, and what is tracked -------------------------------------------

def test_vip_links() -> None:
    p = plan(instance("A", 51, "198.18.0.1/24\n198.18.1.1/24 dev eth1\n"
                      "198.18.2.1/24 dev eth1 use_vmac no_track", "use_vmac",
                      evips="2001:db8::1/64\n198.18.0.9/24 dev eth0"),
             instance("B", 52, "198.18.0.2/24", "use_vmac\n    use_vmac_addr",
                      evips="2001:db8::2/64\n198.18.3.2/24 dev eth1"))
    a, b = p.instances["A"], p.instances["B"]
    # the instance's family on its interface: the VMAC; other links and families stay,
    # unless use_vmac on the line or use_vmac_addr gives them an address VMAC
    assert a.vip_links == ("vrrp.51", "eth1", "vrrp1.51", "eth0", "vrrp.51")
    assert b.vip_links == ("vrrp.52", "vrrp6.52", "vrrp1.52")
    assert [(s.ifname, s.base, s.family) for s in p.specs] == [
        ("vrrp.51", "eth0", 4), ("vrrp1.51", "eth1", 4), ("vrrp.52", "eth0", 4),
        ("vrrp6.52", "eth0", 6), ("vrrp1.52", "eth1", 4)]
    # tracked: the own VMAC, and address VMACs whose line does not say no_track
    assert a.tracked == ("vrrp.51",)
    assert b.tracked == ("vrrp.52", "vrrp6.52", "vrrp1.52")
    assert a.link_of(("198.18.1.1/24", "dev", "eth1")) == "eth1"
    assert a.link_of(("198.18.7.7/24",)) is None


def test_dont_track_primary_leaves_the_vmac_untracked() -> None:
    p = plan(instance("A", 51, "198.18.0.1/24", "use_vmac\n    dont_track_primary"))
    assert p.instances["A"].vmac is not None and p.instances["A"].tracked == ()


def test_garp_extra_if_only_with_other_vmacs_or_all() -> None:
    own_only = instance("A", 51, "198.18.0.1/24", "use_vmac\n    garp_extra_if 10")
    other_if = instance("B", 52, "198.18.0.2/24\n198.18.1.2/24 dev eth1",
                        "use_vmac\n    garp_extra_if 10")
    other_if_all = instance("C", 53, "198.18.0.3/24\n198.18.1.3/24 dev eth1",
                            "use_vmac\n    garp_extra_if all 10")
    p = plan(own_only, other_if, other_if_all)
    assert [(i.garp_extra_if_s, i.garp_extra_if_all) for i in p.instances.values()] == \
        [(0, False), (0, False), (10, True)]


# -- what the runtime makes of a plan -------------------------------------------------

def specs_with(text: str, links: tuple[Link, ...] = ()) -> list:
    root = parse("t.conf", text=text).root
    p = plan_vmacs(root, links)
    return [with_vmacs(s, p.instances.get(s.cfg.name)) for s in build_instances(root)]


def test_the_vmac_is_tracked_after_the_interface_and_holds_the_vips() -> None:
    (spec,) = specs_with(instance("A", 51, "198.18.0.1/24\n2001:db8::1/64",
                                  "use_vmac\n    track_interface { eth2 }"))
    assert spec.tracks[:3] == (Track(INTERFACE, "eth0", 0), Track(INTERFACE, "vrrp.51", 0),
                               Track(INTERFACE, "eth2", 0))
    objects = kernel_objects(spec)
    # the other-family line, kept as an eVIP, stays on the interface
    assert [(str(a.address), a.ifname) for a in objects["vips"] + objects["evips"]] == [
        ("198.18.0.1/24", "vrrp.51"), ("2001:db8::1/64", "eth0")]


def test_identity_sees_use_vmac_for_multicast_only() -> None:
    """keepalived's vrrp_exist: a multicast instance that gains or loses use_vmac (or
    use_vmac_addr) is another router; a unicast one is matched before that check."""
    def ident(extra: str) -> tuple:
        (spec,) = specs_with(instance("A", 51, "198.18.0.1/24", extra))
        return identity(spec)

    assert ident("use_vmac") != ident("") != ident("use_vmac_addr")
    assert ident("use_vmac") == ident("use_vmac mine")
    assert ident("use_vmac") == ident("use_vmac\n    vmac_xmit_base")
    peer = "unicast_peer { 198.18.0.2 }\n    unicast_src_ip 198.18.0.11"
    assert ident(f"use_vmac\n    {peer}") == ident(peer)


def test_without_a_vmac_specs_are_left_as_they_are() -> None:
    text = instance("A", 51, "198.18.0.1/24")
    root = parse("t.conf", text=text).root
    assert not mentions_vmac(root)
    (spec,) = build_instances(root)
    assert with_vmacs(spec, None) is spec
    assert mentions_vmac(parse("t.conf", text=instance(
        "A", 51, "198.18.0.1/24 dev eth1 use_vmac")).root)
    # a VMAC change is a change of the spec: a reload does not take it as unchanged
    (vmac,) = specs_with(instance("A", 51, "198.18.0.1/24", "use_vmac"))
    (other,) = specs_with(instance("A", 51, "198.18.0.1/24", "use_vmac mine"))
    assert vmac.cfg == other.cfg and vmac.vips == other.vips and vmac != other
