"""The engine under operations: a restart of the VRRP process, a reload, maintenance.

``start(resume=True)``: the instance was MASTER in a process that died; its
addresses are probably still in the kernel.  ``reconfigure``: new settings
for a running instance, its state kept.  ``hold``: forced BACKUP.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from keepalived_py.vrrp.engine import (
    US,
    Announce,
    ReleaseAddresses,
    SendAdvert,
    State,
    TakeAddresses,
)

from tests.unit.engine_sim import Segment
from tests.unit.test_engine import VIP2, A, B, at, config, down

BACKUP, MASTER, FAULT = State.BACKUP, State.MASTER, State.FAULT


def skew(priority: int) -> float:
    return (256 - priority) / 256


def releases(node) -> list[float]:  # noqa: ANN001 - engine_sim.Node
    return [t for t, a in node.log if isinstance(a, ReleaseAddresses)]


def test_resumed_master_waits_skew_only_and_keeps_its_addresses_meanwhile() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    actions = seg.start(node, 0.0, resume=True)
    assert not any(isinstance(a, ReleaseAddresses) for a in actions)
    assert node.inst.deadline == at(skew(150))
    seg.run_until(skew(150) + 0.001)
    assert node.times_entered(MASTER) == [at(skew(150))]
    assert TakeAddresses() in node.actions(at=node.times_entered(MASTER)[0])
    assert releases(node) == []


def test_resumed_master_advertises_at_once() -> None:
    # its addresses never left and nobody took them: nobody is to be waited for, and a
    # thousand instances announcing first would keep their adverts back for seconds
    seg = Segment()
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0, resume=True)
    seg.run_until(skew(150) + 0.0001)
    became = node.times_entered(MASTER)[0]
    actions = node.actions(at=became)
    sent = [i for i, a in enumerate(actions) if isinstance(a, SendAdvert)]
    assert sent and sent[0] < actions.index(TakeAddresses())
    assert any(isinstance(a, Announce) and a.ticket == 0 for a in actions)


def test_resumed_master_silences_a_lower_backup_that_was_about_to_take_over() -> None:
    seg = Segment()
    peer = seg.add(config("P", B, 100))
    node = seg.add(config("R", A, 150))
    seg.start(peer, 0.0)
    # our process died just before 0; it is back at 1.5 s, before the peer's down timer.
    seg.start(node, 1.5, resume=True)
    seg.run_until(20.0)
    assert peer.times_entered(MASTER) == []
    assert node.times_entered(MASTER) == [at(1.5 + skew(150))]


def test_resumed_instance_that_hears_a_higher_master_drops_the_leftovers() -> None:
    seg = Segment()
    high = seg.add(config("H", B, 200))
    seg.start(high, 0.0)
    seg.run_until(5.0)
    assert high.state == MASTER
    node = seg.add(config("R", A, 150))
    seg.start(node, 5.05, resume=True)
    # The master's next advert (every 1 s) may come after our skew of 0.41 s:
    # then we take over for an instant and yield to its advert.  Either way the
    # leftover addresses go and one master remains.
    seg.run_until(10.0)
    assert high.state == MASTER and node.state == BACKUP
    assert releases(node), "the addresses left by the died process were not removed"


def test_resumed_nopreempt_instance_follows_the_lower_master_it_hears() -> None:
    seg = Segment()
    low = seg.add(config("L", B, 100))
    seg.start(low, 0.0)
    seg.run_until(5.0)
    node = seg.add(config("R", A, 150, nopreempt=True))
    # the lower master adverts at down(100) + k s; its next one comes within our skew (0.41 s)
    seg.start(node, 5.3, resume=True)
    seg.run_until(20.0)
    assert low.state == MASTER and node.state == BACKUP
    assert node.times_entered(MASTER) == []
    assert releases(node) == [at(down(100) + 2)]


def test_resumed_instance_with_a_fault_drops_the_leftovers() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    actions = seg.start(node, 0.0, faults=("link",), resume=True)
    assert node.state == FAULT
    assert ReleaseAddresses() in actions


def test_resumed_instance_stopped_before_the_outcome_drops_the_leftovers() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0, resume=True)
    actions = seg.stop(node, 0.1)
    assert ReleaseAddresses() in actions


def test_reconfigure_keeps_a_master_master_and_adverts_the_new_addresses() -> None:
    seg = Segment()
    peer = seg.add(config("P", B, 100))
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.start(peer, 0.0)
    seg.run_until(10.0)
    assert node.state == MASTER
    # Both routers get the new address list (a peer with the old one would drop
    # our adverts as addr_list_err and take over: that is its config's doing).
    new = replace(node.inst.cfg, addresses=(*node.inst.cfg.addresses, VIP2))
    seg.reconfigure(peer, 10.1, replace(peer.inst.cfg, addresses=new.addresses))
    actions = seg.reconfigure(node, 10.2, new)
    assert not any(isinstance(a, (ReleaseAddresses, TakeAddresses)) for a in actions)
    seg.run_until(20.0)
    assert node.transitions()[-1][2] == MASTER and len(node.times_entered(MASTER)) == 1
    assert peer.times_entered(MASTER) == []
    last = [a for _t, a in node.log if isinstance(a, SendAdvert)][-1]
    assert last.advert.addresses == new.addresses


def test_reconfigure_to_a_faster_interval_applies_from_the_next_advert() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.run_until(5.0)
    seg.reconfigure(node, 5.0, replace(node.inst.cfg, advert_int_us=US // 4))
    seg.run_until(8.0)
    times = [t for t, _adv in node.adverts() if t > 6.0]
    gaps = {round(b - a, 6) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.25}


def test_reconfigure_priority_of_a_backup_lets_it_preempt() -> None:
    seg = Segment()
    master = seg.add(config("M", B, 150))
    node = seg.add(config("R", A, 100))
    seg.start(master, 0.0)
    seg.start(node, 0.0)
    seg.run_until(10.0)
    assert master.state == MASTER
    seg.reconfigure(node, 10.0, replace(node.inst.cfg, priority=200))
    seg.set_priority(node, 10.0, 200)
    seg.run_until(20.0)
    assert node.state == MASTER and master.state == BACKUP
    # it ignored the lower master's adverts and took over at its down timer
    assert node.times_entered(MASTER)[0] <= 10.0 + 1.0 + down(200) + 1e-6


def test_forced_backup_hands_over_at_once_and_never_takes_back() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    peer = seg.add(config("P", B, 100))
    seg.start(node, 0.0)
    seg.start(peer, 0.0)
    seg.run_until(10.0)
    assert node.state == MASTER
    actions = seg.hold(node, 10.0, True)
    sent = [a for a in actions if isinstance(a, SendAdvert)]
    assert [a.advert.priority for a in sent] == [0]
    assert node.state == BACKUP
    # make before break: the addresses stay until the new master is heard
    assert ReleaseAddresses() not in actions
    seg.run_until(30.0)
    # the peer took over within its skew time and the held node never came back
    assert peer.times_entered(MASTER) == [at(10.0 + skew(100))]
    assert node.state == BACKUP and node.times_entered(MASTER) == [at(down(150))]
    # released on the new master's first advert, right after it took the addresses
    assert releases(node) == [0.0, peer.times_entered(MASTER)[0]]      # 0.0: the start


def test_forced_backup_with_nobody_to_take_over_releases_after_the_down_interval() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.run_until(10.0)
    assert node.state == MASTER and releases(node) == [0.0]
    seg.hold(node, 10.0, True)
    seg.run_until(30.0)
    assert releases(node) == [0.0, at(10.0 + down(150))]
    assert node.state == BACKUP


def test_forced_backup_stays_backup_with_no_master_at_all() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.hold(node, 0.0, True)
    seg.run_until(60.0)
    assert node.state == BACKUP and node.adverts() == []


def test_released_from_forced_backup_it_preempts_as_usual() -> None:
    seg = Segment()
    node = seg.add(config("R", A, 150))
    peer = seg.add(config("P", B, 100))
    seg.hold(node, 0.0, True)
    seg.start(node, 0.0)
    seg.start(peer, 0.0)
    seg.run_until(10.0)
    assert peer.state == MASTER and node.state == BACKUP
    seg.hold(node, 10.0, False)
    seg.run_until(20.0)
    assert node.state == MASTER and peer.state == BACKUP
    # it ignored the lower master's adverts and took over at its down timer
    assert node.times_entered(MASTER)[0] <= 10.0 + down(150) + 1e-6


# -- make before break: the old master lets go once clients were told -------------------

KERNEL = 0.008          # setting the addresses and the first announcement round take a while


def announces(node) -> list[float]:  # noqa: ANN001 - engine_sim.Node
    return [t for t, a in node.log if isinstance(a, Announce)]


def first_advert_as_master(node, since: float) -> float:  # noqa: ANN001 - engine_sim.Node
    return next(t for t, a in node.log if isinstance(a, SendAdvert) and t >= since
                and a.advert.priority)


def test_forced_hand_over_lets_go_only_after_the_new_master_announced() -> None:
    seg = Segment(kernel_delay=KERNEL)
    node = seg.add(config("R", A, 150))
    peer = seg.add(config("P", B, 100))
    seg.start(node, 0.0)
    seg.start(peer, 0.0)
    seg.run_until(10.0)
    seg.hold(node, 10.0, True)
    seg.run_until(20.0)
    took = peer.times_entered(MASTER)[-1]
    assert took == at(10.0 + skew(100))
    # the new master: addresses and announcement first, its advert after them
    assert peer.announced_at[-1] == at(took + KERNEL)
    assert first_advert_as_master(peer, took) == at(took + KERNEL)
    # the old master kept its addresses until that advert
    assert releases(node)[-1] == at(took + KERNEL)


def test_preemption_hand_back_lets_go_only_after_the_new_master_announced() -> None:
    # P (the lower) is master while R is forced to BACKUP; released, R preempts.
    # P's adverts reach R while it is setting up: R answers none of them before
    # its announcement, so P keeps the addresses until clients were told.
    slow = 0.9          # a kernel slow enough that one of P's adverts falls in the window
    seg = Segment(kernel_delay=slow)
    node = seg.add(config("R", A, 150))
    peer = seg.add(config("P", B, 100))
    seg.hold(node, 0.0, True)
    seg.start(node, 0.0)
    seg.start(peer, 0.0)
    seg.run_until(10.0)
    assert peer.state == MASTER
    seg.hold(node, 10.0, False)
    seg.run_until(30.0)
    took = node.times_entered(MASTER)[-1]
    heard = [t for t, _ in peer.adverts() if took < t < took + slow]
    assert heard, "the test wants one of P's adverts within R's set-up"
    assert first_advert_as_master(node, took) == at(took + slow)
    assert releases(peer)[-1] == at(took + slow)
    assert peer.state == BACKUP and node.state == MASTER


def test_the_first_advert_goes_at_the_advert_timer_if_the_announcement_never_comes() -> None:
    seg = Segment(kernel_delay=4.5)          # netlink hangs
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.run_until(20.0)
    took = node.times_entered(MASTER)[0]
    times = [t for t, _ in node.adverts()]
    assert times[0] == at(took + 1.0)
    # the late report is not a second first advert
    assert not [t for t in times if abs(t - (took + 4.5)) < 1e-3]
    assert times == [at(took + 1.0 + k) for k in range(len(times))]


def test_a_stale_ticket_does_not_release_the_first_advert() -> None:
    seg = Segment(kernel_delay=5.0)
    node = seg.add(config("R", A, 150))
    seg.start(node, 0.0)
    seg.run_until(down(150))
    assert node.state == MASTER and node.adverts() == []
    assert node.inst.announced(seg.now, 999) == []
    (announce,) = [a for _, a in node.log if isinstance(a, Announce)]
    sent = node.inst.announced(seg.now, announce.ticket)
    assert [a.advert.priority for a in sent if isinstance(a, SendAdvert)] == [150]


# -- a thawed backup, a healed split brain ------------------------------------------------

def test_a_thawed_backup_reads_the_queued_adverts_before_its_timer() -> None:
    """What the runtime's drain gives: a backup frozen past its down timer reads the
    adverts that queued meanwhile before it acts on the timer, and stays backup."""
    seg = Segment()
    master = seg.add(config("M", A, 150))
    backup = seg.add(config("B", B, 100))
    seg.start(master, 0.0)
    seg.start(backup, 0.0)
    seg.run_until(10.0)
    seg.freeze(backup, 10.0)
    late = 10.0 + down(100) + 1.5          # its down timer ran out 1.5 s ago
    seg.thaw(backup, late)
    assert backup.inst.deadline > late
    seg.run_until(late + 5.0)
    assert backup.state == BACKUP and backup.times_entered(MASTER) == []
    assert backup.inst.stats.advert_rcvd > 8


@pytest.mark.parametrize("phase", [0.05, 0.3, 0.55, 0.8, 0.97])
def test_a_healed_split_brain_brings_clients_back_within_an_advert_interval(
        phase: float) -> None:
    seg = Segment()
    # keepalived's defaults: garp_lower_prio_repeat follows garp_master_repeat
    high = seg.add(config("H", A, 200, garp_lower_prio_repeat=5))
    low = seg.add(config("L", B, 100, garp_lower_prio_repeat=5))
    seg.start(high, 0.0)
    seg.start(low, 0.0)
    seg.run_until(10.0)
    seg.detach(low, 10.0)                 # VRRP cut: both masters
    seg.run_until(20.0)
    assert high.state == MASTER and low.state == MASTER
    heal = 20.0 + phase                   # any phase of the two advert timers
    seg.attach(low, heal)
    seg.run_until(heal + 3.0)
    # the high master announces again on hearing the low one, who either adverts
    # first or answers the high master's advert as it steps down
    again = [t for t in announces(high) if t >= heal]
    assert again and again[0] <= heal + 1.0 + 1e-6
    assert low.state == BACKUP and not low.inst.vips_set
