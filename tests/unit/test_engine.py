"""The sans-I/O VRRP engine on a simulated clock: RFC 5798 §6.4 and keepalived 2.2.7's extensions.

Times are plain floats.  Where the RFC fixes a time (Master_Down_Interval = 3 *
Master_Adver_Interval + Skew_Time, Skew_Time = (256 - Priority) / 256 s for VRRPv2 and
((256 - Priority) * Master_Adver_Interval) / 256 for VRRPv3) the tests assert it to 1e-6 s
(keepalived keeps microseconds, so VRRPv3 skews are truncated to the microsecond).

Most tests run routers on ``engine_sim.Segment``: adverts really go through the codec.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest
from keepalived_py.vrrp import packet
from keepalived_py.vrrp.engine import (
    US,
    Action,
    Announce,
    AnnounceSource,
    Instance,
    InstanceConfig,
    Log,
    LowerPriorityHeard,
    Peer,
    PriorityChanged,
    Received,
    ReleaseAddresses,
    SendAdvert,
    State,
    TakeAddresses,
    Transition,
)

from tests.unit.engine_sim import Node, Segment, ipv4_datagram, on_wire

INIT, BACKUP, MASTER, FAULT = State.INIT, State.BACKUP, State.MASTER, State.FAULT
VIP = IPv4Address("10.0.0.100")
VIP2 = IPv4Address("10.0.0.101")
A = IPv4Address("10.0.0.1")
B = IPv4Address("10.0.0.2")
C = IPv4Address("10.0.0.3")
GROUP = packet.VRRP_GROUP_V4
KEY = packet.pass_key(b"secret")
TOL = 1e-6


def at(t: float) -> object:
    return pytest.approx(t, abs=TOL + 1e-9)     # the margin absorbs float rounding


def config(name: str, source: str | IPv4Address | IPv6Address, priority: int = 100,
           **kw: Any) -> InstanceConfig:
    kw.setdefault("addresses", (VIP,))
    return InstanceConfig(name=name, vrid=51, priority=priority,
                          source=ip_address(str(source)), **kw)


def skew(priority: int, version: int = 2, master_adver_int: float = 1.0) -> float:
    """RFC 5798 §6.1 Skew_Time (RFC 3768 §6.1 for v2)."""
    if version == 3:
        return (256 - priority) * master_adver_int / 256
    return (256 - priority) / 256


def down(priority: int, version: int = 2, master_adver_int: float = 1.0, adverts: int = 3) -> float:
    """Master_Down_Interval."""
    return adverts * master_adver_int + skew(priority, version, master_adver_int)


def pair(prio_a: int = 200, prio_b: int = 100, **kw: Any) -> tuple[Segment, Node, Node]:
    """A (10.0.0.1) and B (10.0.0.2), same options, both started at 0."""
    seg = Segment()
    a = seg.add(config("A", A, prio_a, **kw))
    b = seg.add(config("B", B, prio_b, **kw))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    return seg, a, b


def advert(priority: int = 200, *, version: int = 2, interval_cs: int = 100,
           addresses: tuple[IPv4Address, ...] = (VIP,), auth_type: int = 0,
           auth_data: bytes = b"") -> packet.Advert:
    return packet.Advert(version=version, vrid=51, priority=priority, interval_cs=interval_cs,
                         addresses=addresses, auth_type=auth_type, auth_data=auth_data)


def wire(adv: packet.Advert, src: IPv4Address = A, dst: IPv4Address = GROUP,
         ttl: int = 255) -> Received:
    """A plain (no AH) IPv4 VRRP datagram as received."""
    return Received(ipv4_datagram(packet.encode(adv, src, dst), src, dst, ttl=ttl), src, dst)


def ah_wire(adv: packet.Advert, seq: int, key: bytes = KEY, src: IPv4Address = A,
            dst: IPv4Address = GROUP) -> Received:
    return Received(packet.build_ah_datagram(adv, src, dst, key, seq, 1), src, dst)


def listening_backup(**kw: Any) -> tuple[Segment, Node]:
    """B (priority 100, advert_int 1 s) started at 0: its down timer runs out at 3.609375."""
    seg = Segment()
    node = seg.add(config("B", B, 100, **kw))
    seg.start(node, 0.0)
    assert node.inst.deadline == at(down(100))
    return seg, node


def assert_accepted(node: Node, when: float, interval: float = down(100)) -> None:
    """The advert heard at ``when`` restarted the down timer (Master_Down_Interval ``interval``)."""
    assert node.state == BACKUP
    assert node.inst.deadline == at(when + interval)


def assert_dropped(node: Node) -> None:
    assert node.state == BACKUP
    assert node.inst.deadline == at(down(100))      # the timer from the start runs on


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


# -- start (RFC 5798 §6.4.1) --------------------------------------------------------


@pytest.mark.parametrize(("version", "advert_int", "priority", "expected"), [
    (2, 1.0, 100, 3.609375),
    (3, 1.0, 100, 3.609375),
    (2, 2.0, 100, 6.609375),        # v2: the skew does not scale with the interval
    (3, 2.0, 100, 7.21875),         # v3: it does
    (3, 0.5, 100, 1.8046875),
    (2, 1.0, 1, 3.99609375),
    (2, 1.0, 254, 3.0078125),
    (3, 1.0, 254, 3.0078125),
])
def test_backup_becomes_master_after_master_down_interval(
        version: int, advert_int: float, priority: int, expected: float) -> None:
    assert expected == down(priority, version, advert_int)
    seg = Segment()
    node = seg.add(config("R", A, priority, version=version,
                          advert_int_us=int(advert_int * US)))
    actions = seg.start(node, 0.0)
    assert node.state == BACKUP
    assert node.inst.deadline == at(expected)
    assert Transition(INIT, BACKUP, "init", priority) in actions
    assert not any(isinstance(a, SendAdvert) for a in actions)     # a backup is silent
    seg.run_until(expected - 0.001)
    assert node.state == BACKUP
    seg.run_until(expected + 0.001)
    assert node.transitions() == [(0.0, INIT, BACKUP), (at(expected), BACKUP, MASTER)]


def test_start_clean_releases_addresses_first() -> None:
    seg = Segment()
    node = seg.add(config("R", A))
    actions = seg.start(node, 0.0)
    assert isinstance(actions[0], ReleaseAddresses)
    assert not node.inst.vips_set


def test_owner_with_state_master_becomes_master_at_once() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 255, initial_master=True))
    seg.start(node, 0.0)
    seg.run_until(0.0 + TOL)
    assert node.state == MASTER
    assert node.times_entered(MASTER) == [at(0.0)]
    assert node.adverts()[0] == (at(0.0), advert(255))


@pytest.mark.parametrize(("priority", "initial_master"), [(255, False), (100, True)])
def test_only_an_owner_with_state_master_skips_the_down_timer(
        priority: int, initial_master: bool) -> None:
    # keepalived vrrp_init_state: only base_priority 255 *and* wantstate MASTER skip the timer.
    seg = Segment()
    node = seg.add(config("R", A, priority, initial_master=initial_master))
    seg.start(node, 0.0)
    seg.run_until(30.0)
    assert node.times_entered(MASTER) == [at(down(priority))]


def test_start_with_link_down_is_fault() -> None:
    seg = Segment()
    node = seg.add(config("R", A))
    actions = seg.start(node, 0.0, faults=("link",))
    assert ReleaseAddresses() in actions
    assert Transition(INIT, FAULT, "init", 100) in actions
    assert node.state == FAULT
    assert node.inst.deadline is None
    seg.run_until(60.0)
    assert node.state == FAULT and node.adverts() == []
    seg.link(node, 61.0, up=True)
    assert node.transitions()[-1] == (at(61.0), FAULT, BACKUP)
    assert node.inst.deadline == at(61.0 + down(100))


# -- election ------------------------------------------------------------------------


def test_higher_priority_wins_and_backup_stays_silent() -> None:
    seg, a, b = pair(100, 200)
    seg.run_until(30.0)
    assert b.transitions() == [(0.0, INIT, BACKUP), (at(down(200)), BACKUP, MASTER)]
    assert a.transitions() == [(0.0, INIT, BACKUP)]
    assert a.adverts() == []
    assert a.inst.master_priority == 200 and a.inst.master_source == B


@pytest.mark.parametrize("higher_first", [False, True])
def test_equal_priority_higher_source_address_wins(higher_first: bool) -> None:
    # Both time out together; with 10 ms on the wire each sees the other as master.
    seg = Segment(latency=0.01)
    cfgs = [config("low", A, 100), config("high", B, 100)]
    nodes = {cfg.name: seg.add(cfg) for cfg in (cfgs[::-1] if higher_first else cfgs)}
    low, high = nodes["low"], nodes["high"]
    for node in seg.nodes:
        seg.start(node, 0.0)
    seg.run_until(30.0)
    assert high.transitions() == [(0.0, INIT, BACKUP), (at(3.609375), BACKUP, MASTER)]
    assert low.transitions() == [(0.0, INIT, BACKUP), (at(3.609375), BACKUP, MASTER),
                                 (at(3.619375), MASTER, BACKUP)]
    assert low.inst.stats.release_master == 1
    assert seg.masters() == [high]


def test_two_routers_starting_together_converge_to_one_master() -> None:
    seg, a, b = pair(100, 100)
    seg.run_until(60.0)
    masters = seg.masters()
    assert len(masters) == 1
    assert sum(len(n.times_entered(MASTER)) for n in seg.nodes) == 1
    assert masters[0].times_entered(MASTER) == [at(down(100))]


def test_three_routers_master_then_next_highest_takes_over() -> None:
    seg = Segment()
    low = seg.add(config("low", A, 100))
    mid = seg.add(config("mid", B, 150))
    top = seg.add(config("top", C, 200))
    for node in seg.nodes:
        seg.start(node, 0.0)
    seg.run_until(10.4)
    assert seg.masters() == [top]
    assert top.times_entered(MASTER) == [at(3.21875)]
    seg.crash(top, 10.5)                       # last advert went out at 10.21875
    seg.run_until(40.0)
    assert mid.times_entered(MASTER) == [at(10.21875 + down(150))]
    assert low.times_entered(MASTER) == []
    assert seg.masters() == [mid]


def test_partition_heals_and_the_lower_master_yields() -> None:
    seg, a, b = pair(200, 100)
    seg.detach(b, 5.0)                     # A's last advert heard by B: 4.21875
    seg.run_until(10.0)
    assert b.times_entered(MASTER) == [at(4.21875 + down(100))]       # 7.828125
    assert len(seg.masters()) == 2
    seg.attach(b, 10.5)
    seg.run_until(30.0)
    # B's advert at 10.828125 reaches A first: A answers at once ("forcing new election")
    # and B, hearing the higher priority, goes back to BACKUP.
    assert (at(10.828125), advert(200)) in a.adverts()
    assert b.times_entered(BACKUP)[-1] == at(10.828125)
    assert seg.masters() == [a]
    assert a.times_entered(MASTER) == [at(3.21875)]


def test_unicast_election_through_the_codec() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 200, version=3, peers=(Peer(B, min_ttl=60),),
                       check_unicast_src=True), ttl=64)
    b = seg.add(config("B", B, 100, version=3, peers=(Peer(A, min_ttl=60),),
                       check_unicast_src=True), ttl=64)
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.run_until(10.5)
    assert a.times_entered(MASTER) == [at(3.21875)]
    assert b.inst.stats.advert_rcvd == 8 and b.inst.stats.ip_ttl_err == 0
    seg.crash(a, 10.5)
    seg.run_until(20.0)
    assert b.times_entered(MASTER) == [at(10.21875 + down(100))]


@pytest.mark.parametrize("advert_int", [1.0, 2.0])
def test_master_sends_an_advert_every_advert_interval(advert_int: float) -> None:
    seg = Segment()
    node = seg.add(config("R", A, 200, advert_int_us=int(advert_int * US)))
    seg.start(node, 0.0)
    seg.run_until(40.0)
    t0 = down(200, 2, advert_int)
    times = [t for t, _ in node.adverts()]
    assert times == [at(t0 + k * advert_int) for k in range(len(times))]
    assert t0 + (len(times) - 1) * advert_int <= 40.0 < t0 + len(times) * advert_int
    assert all(adv.priority == 200 and adv.interval_cs == advert_int * 100
               for _, adv in node.adverts())


def test_becoming_master_takes_addresses_announces_then_advertises() -> None:
    # Make before break: the old master lets the addresses go when it hears our
    # advert, so the advert follows the announcement (keepalived: the other way round).
    seg = Segment()
    node = seg.add(config("R", A, 200, garp_repeat=3))
    seg.start(node, 0.0)
    seg.run_until(4.0)
    t = down(200)
    actions = node.actions(t)
    assert kinds(actions) == [Transition, TakeAddresses, Announce, SendAdvert]
    assert (actions[0].old, actions[0].new, actions[0].priority) == (BACKUP, MASTER, 200)
    assert actions[1:] == [TakeAddresses(), Announce(3, ticket=1), SendAdvert(advert(200))]
    assert node.inst.vips_set
    assert node.inst.stats.become_master == 1


@pytest.mark.parametrize(("garp_delay", "expected"), [
    (5.0, [(3.21875, 5), (8.21875, 5)]),       # keepalived's default garp_master_delay 5
    (2.5, [(3.21875, 5), (5.71875, 5)]),
    (0.0, [(3.21875, 5)]),                     # 0: no second round
])
def test_second_garp_round_after_garp_delay(garp_delay: float,
                                            expected: list[tuple[float, int]]) -> None:
    seg = Segment()
    node = seg.add(config("R", A, 200, garp_delay_us=int(garp_delay * US)))
    seg.start(node, 0.0)
    seg.run_until(30.0)
    assert node.announces() == [(at(t), n) for t, n in expected]


def test_garp_refresh_goes_out_with_the_first_advert_after_the_refresh_interval() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 200, garp_delay_us=0, garp_refresh_us=9_500_000,
                          garp_refresh_repeat=2))
    seg.start(node, 0.0)
    seg.run_until(35.0)
    t0 = down(200)
    assert node.announces() == [(at(t0), 5), (at(t0 + 10), 2), (at(t0 + 20), 2),
                                (at(t0 + 30), 2)]


# -- preemption (RFC 5798 §6.4.2) ---------------------------------------------------------


def preemption(**b_options: Any) -> tuple[Segment, Node, Node]:
    """A (100) is master from 3.609375 (adverts at 3.609375 + k); B (200) starts at 10."""
    seg = Segment()
    a = seg.add(config("A", A, 100))
    b = seg.add(config("B", B, 200, **b_options))
    seg.start(a, 0.0)
    seg.run_until(9.0)
    assert a.state == MASTER
    seg.start(b, 10.0)
    return seg, a, b


def test_higher_priority_backup_preempts_after_its_down_timer() -> None:
    # B discards A's lower adverts, so its own timer from 10.0 runs out.
    seg, a, b = preemption()
    seg.run_until(40.0)
    assert b.times_entered(MASTER) == [at(10.0 + down(200))]
    assert b.inst.stats.advert_rcvd >= 3
    # The old master hears the higher advert and gives up at once, after one
    # advert of its own (see test_a_master_stepping_down_sends_its_own_advert_first).
    t = 13.21875
    assert [type(x) for x in a.actions(t)] == [SendAdvert, ReleaseAddresses, Transition]
    assert a.actions(t)[0].advert.priority == 100
    assert a.actions(t)[2].old == MASTER and a.actions(t)[2].new == BACKUP
    assert a.inst.stats.release_master == 1
    assert not a.inst.vips_set
    assert a.inst.master_priority == 200 and a.inst.master_source == B
    assert seg.masters() == [b]


def test_nopreempt_backup_never_takes_over_a_live_lower_master() -> None:
    seg, a, b = preemption(nopreempt=True)
    seg.run_until(60.0)
    assert b.times_entered(MASTER) == []
    assert seg.masters() == [a]
    # Its down timer is reset by every advert.
    assert b.inst.deadline == at(59.609375 + down(200))


def test_preempt_delay_waits_before_preempting() -> None:
    # First advert heard at 10.609375: preemption allowed from 15.109375.  Adverts before
    # then still reset the timer; the one at 15.609375 is discarded.
    seg, a, b = preemption(preempt_delay_us=4_500_000)
    seg.run_until(60.0)
    assert b.times_entered(MASTER) == [at(14.609375 + down(200))]
    assert a.times_entered(BACKUP)[-1] == at(14.609375 + down(200))


# -- graceful stop and master failure ------------------------------------------------------


def test_graceful_stop_sends_priority_zero_and_backup_takes_over_after_skew_time() -> None:
    seg, a, b = pair(200, 100)
    seg.run_until(10.4)
    assert a.state == MASTER
    actions = [x for x in seg.stop(a, 10.5) if not isinstance(x, Log)]
    assert kinds(actions) == [SendAdvert, ReleaseAddresses, Transition]
    assert actions[0].advert.priority == 0
    assert actions[2].old == MASTER and actions[2].new == INIT
    assert a.inst.stats.pri_zero_sent == 1
    assert a.inst.deadline is None
    seg.run_until(30.0)
    assert b.times_entered(MASTER) == [at(10.5 + skew(100))]
    assert b.inst.stats.pri_zero_rcvd == 1
    assert a.adverts()[-1] == (at(10.5), advert(0))


def test_stop_in_backup_sends_nothing() -> None:
    seg, a, b = pair(200, 100)
    seg.run_until(10.4)
    actions = seg.stop(b, 10.5)
    assert not any(isinstance(x, SendAdvert | ReleaseAddresses) for x in actions)
    assert b.state == INIT and b.inst.stats.pri_zero_sent == 0


def test_master_failure_backup_takes_over_master_down_interval_after_last_advert() -> None:
    seg, a, b = pair(200, 100)
    seg.crash(a, 10.5)
    assert a.adverts()[-1][0] == at(10.21875)
    seg.run_until(30.0)
    assert b.times_entered(MASTER) == [at(10.21875 + down(100))]


def test_master_answers_priority_zero_with_an_advert_at_once() -> None:
    # RFC 5798 §6.4.3: priority 0 received -> send an ADVERTISEMENT, reset the Adver_Timer.
    seg = Segment()
    node = seg.add(config("R", B, 200))
    seg.start(node, 0.0)
    seg.run_until(5.0)
    actions = seg.inject(node, 5.5, wire(advert(0)))
    assert [a for a in actions if isinstance(a, SendAdvert)] == [SendAdvert(advert(200))]
    assert node.state == MASTER
    assert node.inst.deadline == at(6.5)


# -- VRRPv3 intervals ----------------------------------------------------------------------


def test_v3_backup_learns_master_adver_interval_and_resets_it_on_becoming_master() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 200, version=3, advert_int_us=500_000))
    b = seg.add(config("B", B, 100, version=3, advert_int_us=1_000_000))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.run_until(4.9)
    assert a.times_entered(MASTER) == [at(down(200, 3, 0.5))]       # 1.609375
    assert b.inst.master_adver_int_us == 500_000
    last = a.adverts()[-1][0]
    assert b.inst.deadline == at(last + down(100, 3, 0.5))          # 1.8046875, not 3.609375
    seg.crash(a, 5.0)
    seg.run_until(20.0)
    t_master = b.times_entered(MASTER)
    assert t_master == [at(last + 1.8046875)]
    assert b.inst.master_adver_int_us == 1_000_000                   # its own again
    times = [t for t, _ in b.adverts()]
    assert times == [at(t_master[0] + k) for k in range(len(times))]
    assert all(adv.interval_cs == 100 for _, adv in b.adverts())


def test_v3_master_yielding_takes_the_new_master_interval() -> None:
    # RFC 5798 §6.4.3: Master_Adver_Interval from the advert, then Master_Down_Interval.
    seg = Segment()
    node = seg.add(config("A", A, 100, version=3))
    seg.start(node, 0.0)
    seg.run_until(5.0)
    seg.inject(node, 5.5, wire(advert(200, version=3, interval_cs=50), src=B))
    assert node.state == BACKUP
    assert node.inst.master_adver_int_us == 500_000
    assert node.inst.deadline == at(5.5 + down(100, 3, 0.5))


def test_v3_leaving_fault_forgets_the_learned_interval() -> None:
    seg, node = listening_backup(version=3)
    seg.inject(node, 0.5, wire(advert(200, version=3, interval_cs=50)))
    assert node.inst.deadline == at(0.5 + down(100, 3, 0.5))
    seg.link(node, 1.0, up=False)
    seg.link(node, 2.0, up=True)
    assert node.inst.master_adver_int_us == 1_000_000
    assert node.inst.deadline == at(2.0 + down(100, 3, 1.0))


def test_v3_priority_zero_skew_uses_master_adver_interval() -> None:
    seg, node = listening_backup(version=3)
    seg.inject(node, 0.5, wire(advert(200, version=3, interval_cs=200)))
    seg.inject(node, 1.0, wire(advert(0, version=3, interval_cs=200)))
    assert node.inst.deadline == at(1.0 + skew(100, 3, 2.0))           # 1.21875 s
    seg.run_until(5.0)
    assert node.times_entered(MASTER) == [at(1.0 + skew(100, 3, 2.0))]


def test_v3_centisecond_advert_interval() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 200, version=3, advert_int_us=50_000))
    b = seg.add(config("B", B, 100, version=3, advert_int_us=50_000))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.crash(a, 1.0)
    t0 = down(200, 3, 0.05)                                          # 0.1609375
    times = [t for t, _ in a.adverts()]
    assert times == [at(t0 + 0.05 * k) for k in range(len(times))]
    assert len(times) == 17
    assert all(adv.interval_cs == 5 for _, adv in a.adverts())
    seg.run_until(3.0)
    assert b.times_entered(MASTER) == [at(times[-1] + 0.18046875)]


# -- receive checks --------------------------------------------------------------------


def corrupt_vrrp_checksum(pkt: Received) -> Received:
    data = bytearray(pkt.data)
    data[20 + 6] ^= 0x5A
    return Received(bytes(data), pkt.src, pkt.dst)


def with_type(pkt: Received, vtype: int) -> Received:
    data = bytearray(pkt.data[20:])
    data[0] = (data[0] & 0xF0) | vtype
    data[6:8] = b"\0\0"
    data[6:8] = packet.checksum(bytes(data)).to_bytes(2, "big")
    return Received(ipv4_datagram(bytes(data), pkt.src, pkt.dst), pkt.src, pkt.dst)


def truncated(pkt: Received) -> Received:
    return Received(ipv4_datagram(pkt.data[20:-4], pkt.src, pkt.dst), pkt.src, pkt.dst)


DROPPED = {
    "ttl 254 on multicast": (lambda: wire(advert(), ttl=254), {}, "ip_ttl_err"),
    "wrong version": (lambda: wire(advert(version=3)), {}, "vers_err"),
    "v2 interval mismatch": (lambda: wire(advert(interval_cs=200)), {}, "advert_interval_err"),
    "address count": (lambda: wire(advert(addresses=(VIP, VIP2))), {}, "addr_list_err"),
    "address list": (lambda: wire(advert(addresses=(VIP2,))), {}, "addr_list_err"),
    "bad checksum": (lambda: corrupt_vrrp_checksum(wire(advert())), {}, "chk_err"),
    "truncated": (lambda: truncated(wire(advert())), {}, "packet_len_err"),
    "not an advert": (lambda: with_type(wire(advert()), 2), {}, "invalid_type_rcvd"),
    "unicast on multicast instance": (lambda: wire(advert(), dst=B), {}, "addr_list_err"),
    "PASS on no-auth instance": (
        lambda: wire(advert(auth_type=1, auth_data=KEY)), {}, "authtype_mismatch"),
    "no auth on PASS instance": (
        lambda: wire(advert()), {"auth_type": 1, "auth_pass": KEY}, "authtype_mismatch"),
    "bad password": (
        lambda: wire(advert(auth_type=1, auth_data=packet.pass_key(b"other"))),
        {"auth_type": 1, "auth_pass": KEY}, "auth_failure"),
    "AH on no-auth instance": (
        lambda: ah_wire(advert(auth_type=2), seq=1), {}, "authtype_mismatch"),
    "no AH on AH instance": (
        lambda: wire(advert(auth_type=2)), {"auth_type": 2, "auth_pass": KEY},
        "authtype_mismatch"),
    "AH bad ICV": (
        lambda: ah_wire(advert(auth_type=2), seq=1, key=packet.pass_key(b"other")),
        {"auth_type": 2, "auth_pass": KEY}, "auth_failure"),
}


@pytest.mark.parametrize("case", list(DROPPED))
def test_invalid_advert_is_counted_and_does_not_reset_the_down_timer(case: str) -> None:
    make, options, counter = DROPPED[case]
    seg, node = listening_backup(**options)
    actions = seg.inject(node, 1.0, make())
    assert [a for a in actions if not isinstance(a, Log)] == []
    assert getattr(node.inst.stats, counter) == 1
    assert_dropped(node)
    seg.run_until(10.0)
    assert node.times_entered(MASTER) == [at(down(100))]


@pytest.mark.parametrize(("options", "pkt", "interval"), [
    ({}, lambda: wire(advert()), 3.609375),
    ({"auth_type": 1, "auth_pass": KEY},
     lambda: wire(advert(auth_type=1, auth_data=KEY)), 3.609375),
    ({"auth_type": 2, "auth_pass": KEY},
     lambda: ah_wire(advert(auth_type=2), seq=1), 3.609375),
    ({"version": 3}, lambda: wire(advert(version=3, interval_cs=100)), 3.609375),
    # v3 has no interval mismatch rule: the backup adopts the master's interval.
    ({"version": 3}, lambda: wire(advert(version=3, interval_cs=50)), 1.8046875),
])
def test_valid_advert_is_accepted_and_resets_the_down_timer(
        options: dict[str, Any], pkt: Callable[[], Received], interval: float) -> None:
    seg, node = listening_backup(**options)
    seg.inject(node, 1.0, pkt())
    assert node.inst.stats.advert_rcvd == 1
    assert_accepted(node, 1.0, interval)
    assert node.inst.master_source == A and node.inst.master_priority == 200


def test_ah_replayed_sequence_number_is_dropped() -> None:
    seg, node = listening_backup(auth_type=2, auth_pass=KEY)
    first = ah_wire(advert(auth_type=2), seq=5)
    seg.inject(node, 1.0, first)
    assert_accepted(node, 1.0)
    seg.inject(node, 2.0, first)                          # the same datagram again
    assert node.inst.stats.auth_failure == 1
    assert_accepted(node, 1.0)                            # not reset at 2.0
    seg.inject(node, 2.5, ah_wire(advert(auth_type=2), seq=4))
    assert node.inst.stats.auth_failure == 2
    seg.inject(node, 3.0, ah_wire(advert(auth_type=2), seq=6))
    assert_accepted(node, 3.0)


def test_ttl_is_not_checked_for_unicast() -> None:
    seg, node = listening_backup(peers=(Peer(A),))
    seg.inject(node, 1.0, wire(advert(), dst=B, ttl=64))
    assert node.inst.stats.ip_ttl_err == 0
    assert_accepted(node, 1.0)


def test_multicast_on_unicast_instance_is_dropped() -> None:
    seg, node = listening_backup(peers=(Peer(A),))
    seg.inject(node, 1.0, wire(advert()))
    assert node.inst.stats.addr_list_err == 1
    assert_dropped(node)


def test_check_unicast_src_with_ttl_range() -> None:
    seg, node = listening_backup(peers=(Peer(A, min_ttl=250, max_ttl=255),),
                                 check_unicast_src=True)
    seg.inject(node, 0.5, wire(advert(), src=C, dst=B))        # not a peer
    assert_dropped(node)
    seg.inject(node, 0.7, wire(advert(), dst=B, ttl=64))       # below min_ttl
    assert node.inst.stats.ip_ttl_err == 1
    assert_dropped(node)
    seg.inject(node, 1.0, wire(advert(), dst=B, ttl=254))
    assert_accepted(node, 1.0)


def test_unicast_without_check_unicast_src_accepts_any_source() -> None:
    seg, node = listening_backup(peers=(Peer(A),))
    seg.inject(node, 1.0, wire(advert(), src=C, dst=B))
    assert_accepted(node, 1.0)


def test_skip_check_adv_addr_skips_the_vip_check_for_the_known_master_only() -> None:
    seg, node = listening_backup(skip_check_adv_addr=True)
    seg.inject(node, 0.5, wire(advert(addresses=(VIP2,))))     # unknown master: checked
    assert node.inst.stats.addr_list_err == 1
    assert_dropped(node)
    seg.inject(node, 1.0, wire(advert()))
    assert_accepted(node, 1.0)
    seg.inject(node, 2.0, wire(advert(addresses=(VIP, VIP2))))  # same master: not checked
    assert_accepted(node, 2.0)
    seg.inject(node, 2.5, wire(advert(addresses=(VIP2,)), src=C))   # other source: checked
    assert node.inst.stats.addr_list_err == 2
    assert_accepted(node, 2.0)


def test_wrong_ttl_on_multicast_ipv6_is_dropped() -> None:
    g6 = packet.VRRP_GROUP_V6
    src = IPv6Address("fe80::1")
    seg = Segment()
    node = seg.add(config("B", "fe80::2", 100, family=6, version=3,
                          addresses=(IPv6Address("2001:db8::100"),)))
    seg.start(node, 0.0)
    adv = packet.Advert(3, 51, 200, 100, (IPv6Address("2001:db8::100"),))
    seg.inject(node, 0.5, Received(packet.encode(adv, src, g6), src, g6, hop_limit=254))
    assert node.inst.stats.ip_ttl_err == 1
    assert_dropped(node)
    seg.inject(node, 1.0, Received(packet.encode(adv, src, g6), src, g6, hop_limit=255))
    assert_accepted(node, 1.0)


FUZZ_CONFIGS = {
    "v2": {},
    "v2 PASS": {"auth_type": 1, "auth_pass": KEY},
    "v2 AH": {"auth_type": 2, "auth_pass": KEY},
    "v3": {"version": 3},
    "v3 unicast": {"version": 3, "peers": (Peer(A),), "check_unicast_src": True},
}


@pytest.mark.parametrize("name", list(FUZZ_CONFIGS))
def test_truncated_mutated_and_garbage_bytes_never_raise(name: str) -> None:
    options = FUZZ_CONFIGS[name]
    seg, node = listening_backup(**options)
    cfg = config("A", A, 200, **options)
    dst = B if "unicast" in name else GROUP
    good = on_wire(cfg, SendAdvert(packet.Advert(
        cfg.version, 51, 200, 100, (VIP,), cfg.auth_type if cfg.version == 2 else 0,
        cfg.auth_pass if cfg.auth_type == 1 else b""), ah_seq=7), A, dst).data
    rng = random.Random(5798)
    samples = [good[:n] for n in range(len(good))]
    samples += [good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:] for i in range(len(good))]
    samples += [rng.randbytes(rng.randrange(0, 120)) for _ in range(300)]
    samples += [good[:20] + rng.randbytes(rng.randrange(0, 60)) for _ in range(300)]
    for data in samples:
        seg.inject(node, 0.5, Received(data, A, dst))
        assert_dropped(node)
    seg.inject(node, 1.0, Received(good, A, dst))
    assert_accepted(node, 1.0)


def test_invalid_adverts_from_a_live_master_let_the_backup_take_over() -> None:
    # A's adverts carry the wrong password: B drops them all, so B's timer from 0 runs out.
    seg = Segment()
    a = seg.add(config("A", A, 200, auth_type=1, auth_pass=packet.pass_key(b"other")))
    b = seg.add(config("B", B, 100, auth_type=1, auth_pass=KEY))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.run_until(10.0)
    assert b.times_entered(MASTER) == [at(down(100))]
    assert b.inst.stats.auth_failure > 0


def test_v2_interval_mismatch_both_become_master() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 200, advert_int_us=2 * US))
    b = seg.add(config("B", B, 100, advert_int_us=1 * US))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.run_until(20.0)
    assert b.times_entered(MASTER) == [at(down(100))]
    assert a.times_entered(MASTER) == [at(down(200, 2, 2.0))]
    assert a.inst.stats.advert_interval_err > 0 and b.inst.stats.advert_interval_err > 0
    assert a.inst.stats.release_master == b.inst.stats.release_master == 0


@pytest.mark.parametrize("options", [
    {"auth_type": 1, "auth_pass": KEY},
    {"auth_type": 2, "auth_pass": KEY},
    {"version": 3},
    {"version": 3, "family": 6},
])
def test_election_through_the_codec(options: dict[str, Any]) -> None:
    seg = Segment()
    if options.get("family") == 6:
        v6 = {"addresses": (IPv6Address("2001:db8::100"),)}
        a = seg.add(config("A", "fe80::1", 200, **options, **v6))
        b = seg.add(config("B", "fe80::2", 100, **options, **v6))
    else:
        a = seg.add(config("A", A, 200, **options))
        b = seg.add(config("B", B, 100, **options))
    seg.start(a, 0.0)
    seg.start(b, 0.0)
    seg.run_until(10.5)
    assert a.times_entered(MASTER) == [at(3.21875)]
    assert b.times_entered(MASTER) == []
    assert b.inst.stats.advert_rcvd == a.inst.stats.advert_sent == 8
    seg.crash(a, 10.5)
    seg.run_until(20.0)
    assert b.times_entered(MASTER) == [at(10.21875 + 3.609375)]
    if options.get("auth_type") == 2:
        # The new master goes on counting from the last sequence number it accepted.
        assert b.adverts()[0][1].auth_type == 2
        first_seq = next(a.ah_seq for _, a in b.log if isinstance(a, SendAdvert))
        last_seen = [a.ah_seq for _, a in seg.nodes[0].log if isinstance(a, SendAdvert)][-1]
        assert first_seq > last_seen


# -- keepalived extensions ---------------------------------------------------------------


@pytest.mark.parametrize("send", [False, True])
def test_a_master_stepping_down_sends_its_own_advert_first(send: bool) -> None:
    # keepalived does it only with higher_prio_send_advert; we always do: after a
    # split brain the higher master may never have heard us, and only hearing our
    # lower priority makes it announce again (garp_lower_prio_repeat).
    seg = Segment()
    a = seg.add(config("A", A, 100, higher_prio_send_advert=send))
    seg.start(a, 0.0)
    seg.run_until(5.0)
    actions = [x for x in seg.inject(a, 5.5, wire(advert(200), src=B))
               if not isinstance(x, Log)]
    assert kinds(actions) == [SendAdvert, ReleaseAddresses, Transition]
    assert actions[0].advert.priority == 100
    assert a.state == BACKUP
    assert a.inst.deadline == at(5.5 + down(100))


def test_higher_prio_send_advert_on_equal_priority_higher_address() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 100, higher_prio_send_advert=True))
    seg.start(a, 0.0)
    seg.run_until(5.0)
    actions = seg.inject(a, 5.5, wire(advert(100), src=B))
    assert kinds([x for x in actions if isinstance(x, SendAdvert | Transition)]) == [
        SendAdvert, Transition]
    assert a.state == BACKUP


@pytest.mark.parametrize("no_advert", [False, True])
def test_master_receiving_lower_priority_sends_advert_unless_lower_prio_no_advert(
        no_advert: bool) -> None:
    seg = Segment()
    b = seg.add(config("B", B, 200, lower_prio_no_advert=no_advert))
    seg.start(b, 0.0)
    seg.run_until(5.0)                                  # adverts at 3.21875, 4.21875
    actions = seg.inject(b, 5.5, wire(advert(100)))
    sent = [x for x in actions if isinstance(x, SendAdvert)]
    assert b.state == MASTER
    if no_advert:
        assert sent == []
        assert b.inst.deadline == at(6.21875)          # the Adver_Timer runs on
    else:
        assert sent == [SendAdvert(advert(200))]
        assert b.inst.deadline == at(6.5)              # reset by the advert just sent


def test_master_receiving_equal_priority_from_lower_address_forces_election() -> None:
    seg = Segment()
    b = seg.add(config("B", B, 100))
    seg.start(b, 0.0)
    seg.run_until(5.0)
    actions = seg.inject(b, 5.5, wire(advert(100), src=A))
    assert [x for x in actions if isinstance(x, SendAdvert)] == [SendAdvert(advert(100))]
    assert b.state == MASTER


@pytest.mark.parametrize(("repeat", "delay", "expected"), [
    (2, 1.5, [(5.5, 2), (7.0, 2)]),
    (2, 0.0, [(5.5, 2)]),
    (0, 1.5, []),
])
def test_garp_lower_prio_repeat_and_delay(repeat: int, delay: float,
                                          expected: list[tuple[float, int]]) -> None:
    seg = Segment()
    b = seg.add(config("B", B, 200, garp_delay_us=0, garp_lower_prio_repeat=repeat,
                       garp_lower_prio_delay_us=int(delay * US)))
    seg.start(b, 0.0)
    seg.run_until(5.0)
    seg.inject(b, 5.5, wire(advert(100)))
    seg.run_until(20.0)
    assert [(t, n) for t, n in b.announces() if t > 5.0] == [(at(t), n) for t, n in expected]


@pytest.mark.parametrize("other", ["10.0.0.2", "10.0.0.9"])
def test_two_address_owners_the_one_hearing_the_other_lowers_to_254(other: str) -> None:
    seg = Segment()
    a = seg.add(config("A", "10.0.0.5", 255, initial_master=True))
    b = seg.add(config("B", other, 255, initial_master=True))
    seg.start(a, 0.0)
    seg.run_until(5.0)
    assert a.state == MASTER
    seg.start(b, 5.5)
    seg.run_until(30.0)
    assert b.times_entered(MASTER) == [at(5.5)]
    assert a.inst.effective_priority == 254
    assert a.times_entered(BACKUP)[-1] == at(5.5)
    assert b.inst.effective_priority == 255
    assert seg.masters() == [b]


def test_owner_lowered_to_254_is_no_longer_treated_as_owner() -> None:
    # After the conflict its priority is 254: it is no longer the address owner, so leaving
    # FAULT it must wait in BACKUP like any other router.  keepalived lowers base_priority
    # too (vrrp_state_master_rx) and try_up_instance only fast-tracks base_priority 255.
    seg = Segment()
    a = seg.add(config("A", "10.0.0.5", 255, initial_master=True))
    b = seg.add(config("B", "10.0.0.9", 255, initial_master=True))
    seg.start(a, 0.0)
    seg.start(b, 5.5)
    seg.run_until(10.0)
    assert a.inst.effective_priority == 254 and a.state == BACKUP
    seg.link(a, 10.5, up=False)
    seg.link(a, 11.0, up=True)
    assert a.transitions()[-1] == (at(11.0), FAULT, BACKUP)
    assert a.inst.deadline == at(11.0 + down(254))
    seg.run_until(30.0)
    assert a.times_entered(MASTER) == [at(0.0)]
    assert seg.masters() == [b]


# -- faults and tracking --------------------------------------------------------------


def test_link_down_in_master_gives_up_with_priority_zero_and_link_up_returns_to_backup() -> None:
    seg, a, b = pair(200, 100)
    seg.run_until(10.4)
    actions = [x for x in seg.link(a, 10.5, up=False) if not isinstance(x, Log)]
    assert isinstance(actions[0], SendAdvert) and actions[0].advert.priority == 0
    assert all(x.advert.priority == 0 for x in actions if isinstance(x, SendAdvert))
    assert ReleaseAddresses() in actions
    assert isinstance(actions[-1], Transition)
    assert (actions[-1].old, actions[-1].new, actions[-1].priority) == (MASTER, FAULT, 200)
    assert kinds(actions).index(ReleaseAddresses) < kinds(actions).index(Transition)
    assert a.inst.stats.pri_zero_sent >= 1 and a.inst.stats.release_master == 1
    assert a.inst.deadline is None and not a.inst.vips_set
    seg.run_until(19.9)
    assert b.times_entered(MASTER) == [at(10.5 + skew(100))]
    rcvd = a.inst.stats.advert_rcvd
    seg.run_until(19.95)
    assert a.inst.stats.advert_rcvd == rcvd                     # FAULT ignores adverts
    assert a.adverts()[-1][0] == at(10.5)                       # and sends none
    seg.link(a, 20.0, up=True)
    assert a.transitions()[-1] == (at(20.0), FAULT, BACKUP)
    assert a.inst.deadline == at(20.0 + down(200))              # a fresh down timer
    seg.run_until(40.0)
    assert a.times_entered(MASTER)[-1] == at(20.0 + down(200))  # it preempts B again
    assert b.times_entered(BACKUP)[-1] == at(20.0 + down(200))


def test_link_down_in_backup_and_back() -> None:
    seg, a, b = pair(200, 100)
    seg.run_until(5.0)
    actions = seg.link(b, 5.5, up=False)
    assert b.transitions()[-1] == (at(5.5), BACKUP, FAULT)
    assert not any(isinstance(x, SendAdvert | ReleaseAddresses) for x in actions)
    assert b.inst.deadline is None
    seg.link(b, 7.0, up=True)
    assert b.state == BACKUP
    assert b.inst.deadline == at(7.0 + down(100))
    seg.run_until(20.0)
    assert b.times_entered(MASTER) == []


def test_owner_leaving_fault_becomes_master_at_once() -> None:
    seg = Segment()
    a = seg.add(config("A", A, 255, initial_master=True))
    seg.start(a, 0.0)
    seg.link(a, 5.5, up=False)
    assert a.state == FAULT
    seg.link(a, 7.0, up=True)
    assert kinds(a.actions(7.0)) == [Transition, TakeAddresses, Announce, SendAdvert]
    assert a.actions(7.0)[0].old == FAULT and a.actions(7.0)[0].new == MASTER
    assert a.actions(7.0)[3].advert.priority == 255


def test_all_fault_reasons_must_clear() -> None:
    seg, node = listening_backup()
    seg.link(node, 1.0, up=False, reason="link")
    assert node.state == FAULT
    assert seg.link(node, 1.5, up=False, reason="link") == []          # already down
    before = len(node.transitions())
    seg.link(node, 2.0, up=False, reason="script")
    assert node.state == FAULT and len(node.transitions()) == before
    seg.link(node, 3.0, up=True, reason="link")
    assert node.state == FAULT and node.inst.deadline is None
    assert seg.link(node, 3.5, up=True, reason="link") == []           # not down any more
    seg.link(node, 4.0, up=True, reason="script")
    assert node.state == BACKUP
    assert node.inst.deadline == at(4.0 + down(100))


@pytest.mark.parametrize("unicast", [False, True])
def test_unicast_leaving_fault_announces_own_source(unicast: bool) -> None:
    seg, node = listening_backup(peers=(Peer(A),) if unicast else ())
    seg.link(node, 1.0, up=False)
    actions = seg.link(node, 2.0, up=True)
    assert (AnnounceSource() in actions) == unicast


@pytest.mark.parametrize(("total", "effective"), [
    (300, 254), (255, 254), (254, 254), (150, 150), (1, 1), (0, 1), (-20, 1)])
def test_set_priority_clamps_to_1_254(total: int, effective: int) -> None:
    seg, node = listening_backup()
    seg.set_priority(node, 1.0, total)
    assert node.inst.effective_priority == effective


def test_a_priority_change_is_an_action_and_no_change_is_none() -> None:
    seg, node = listening_backup()
    assert PriorityChanged(120) in seg.set_priority(node, 1.0, 120)
    assert not any(isinstance(a, PriorityChanged) for a in seg.set_priority(node, 1.1, 120))


def test_a_master_hearing_a_lower_priority_says_so() -> None:
    seg, a, b = pair(200, 150)
    seg.run_until(5.0)
    assert a.state == MASTER
    lower = seg.inject(a, 5.5, on_wire(b.inst.cfg, SendAdvert(advert(150)), B,
                                       packet.VRRP_GROUP_V4))
    assert LowerPriorityHeard(150) in lower


def test_set_priority_is_ignored_for_the_owner() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 255, initial_master=True))
    seg.start(node, 0.0)
    assert seg.set_priority(node, 1.0, 100) == []
    assert node.inst.effective_priority == 255


def test_set_priority_shifts_the_backup_down_timer() -> None:
    seg, node = listening_backup()                      # deadline 3.609375
    seg.set_priority(node, 1.0, 200)
    assert node.inst.deadline == at(3.21875)
    seg.set_priority(node, 1.5, 50)
    assert node.inst.deadline == at(down(50))          # 3.8046875
    seg.run_until(10.0)
    assert node.times_entered(MASTER) == [at(down(50))]


def test_master_lowered_by_tracking_is_preempted() -> None:
    seg, a, b = pair(200, 150)
    seg.run_until(10.4)
    seg.set_priority(a, 10.5, 100)
    seg.run_until(30.0)
    assert a.adverts()[8] == (at(11.21875), advert(100))
    # B discards the priority 100 adverts: its timer from the last 200 one runs out.
    assert b.times_entered(MASTER) == [at(10.21875 + down(150))]
    assert a.times_entered(BACKUP)[-1] == at(10.21875 + down(150))


@pytest.mark.parametrize("adverts", [1, 3, 5])
def test_down_timer_adverts(adverts: int) -> None:
    seg = Segment()
    node = seg.add(config("B", B, 100, down_timer_adverts=adverts))
    seg.start(node, 0.0)
    assert node.inst.deadline == at(down(100, adverts=adverts))
    seg.inject(node, 0.5, wire(advert(200)))
    assert node.inst.deadline == at(0.5 + down(100, adverts=adverts))
    seg.run_until(10.0)
    assert node.times_entered(MASTER) == [at(0.5 + adverts + skew(100))]


# -- bookkeeping ----------------------------------------------------------------------


def test_transitions_and_counters() -> None:
    seg, a, b = pair(200, 100)
    seg.run_until(10.5)
    assert [(t, old, new) for t, old, new in a.transitions()] == [
        (0.0, INIT, BACKUP), (at(3.21875), BACKUP, MASTER)]
    transitions = [x for _, x in a.log if isinstance(x, Transition)]
    assert [x.priority for x in transitions] == [200, 200]
    assert a.inst.stats.advert_sent == 8 == len(a.adverts())
    assert a.inst.stats.become_master == 1
    assert b.inst.stats.advert_rcvd == 8
    assert b.inst.stats.advert_sent == 0 and b.inst.stats.become_master == 0
    assert a.inst.stats.advert_rcvd == 0


def test_v3_unicast_switches_to_the_old_checksum_when_a_peer_uses_it() -> None:
    """keepalived before 2.0 put 224.0.0.18 in the unicast pseudo-header; 2.2.7 adapts."""
    pk = packet
    me, peer = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
    vip = IPv4Address("198.18.0.100")

    def instance(mode: str | None) -> Instance:
        cfg = InstanceConfig(name="U", vrid=9, version=3, priority=100, addresses=(vip,),
                             source=me, peers=(Peer(peer),), old_unicast_checksum=mode)
        inst = Instance(cfg)
        inst.start(0.0)
        return inst

    adv = pk.Advert(version=3, vrid=9, priority=200, interval_cs=100, addresses=(vip,))
    old_style = ipv4_datagram(pk.encode(adv, peer, pk.VRRP_GROUP_V4), peer, me)
    inst = instance(None)
    before = inst.deadline
    actions = inst.receive(0.5, Received(old_style, peer, me))
    assert inst.stats.chk_err == 0 and inst.deadline != before     # accepted
    assert any("old version" in str(a) for a in actions)
    (ticket,) = [a.ticket for a in inst.tick(100.0) if isinstance(a, Announce)]
    sent = [a for a in inst.announced(100.0, ticket) if isinstance(a, SendAdvert)]
    assert sent and sent[0].checksum_dst == pk.VRRP_GROUP_V4

    never = instance("never")
    never.receive(0.5, Received(old_style, peer, me))
    assert never.stats.chk_err == 1

    always = instance("config")
    (ticket,) = [a.ticket for a in always.tick(100.0) if isinstance(a, Announce)]
    sent = [a for a in always.announced(100.0, ticket) if isinstance(a, SendAdvert)]
    assert sent and sent[0].checksum_dst == pk.VRRP_GROUP_V4


def test_a_late_timer_does_not_stretch_the_advert_interval() -> None:
    """Adverts are paced from their deadlines: waking 3 ms late must not drift the schedule."""
    inst = Instance(InstanceConfig(name="M", vrid=1, version=3, priority=255,
                                   initial_master=True, advert_int_us=100_000,
                                   addresses=(IPv4Address("198.18.0.100"),),
                                   source=IPv4Address("198.18.0.11")))
    inst.start(0.0)
    inst.tick(inst.deadline)
    assert inst.state == MASTER
    first = inst.deadline
    inst.tick(first + 0.003)
    assert abs(inst.deadline - (first + 0.1)) < 1e-9
    inst.tick(inst.deadline + 0.5)              # far too late: start again from now
    assert inst.deadline > first + 0.6
