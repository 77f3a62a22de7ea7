"""Sync groups (agent/vrrp/sync.py) on a simulated LAN: two routers, each with two
instances (VRID 1 and 2) in one group, so the groups' behaviour is seen end to end."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from keepalived_py.vrrp import packet
from keepalived_py.vrrp.engine import Action, InstanceConfig, SendAdvert, State, Transition
from keepalived_py.vrrp.sync import SyncGroup
from keepalived_py.vrrp.track import PENDING

from tests.unit.engine_sim import Node, Segment, on_wire


class SyncedLan(Segment):
    """A segment carrying several VRIDs, with each router's instances in one group."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, tuple[SyncGroup, list[Node]]] = {}
        self.group_transitions: list[tuple[float, str, State, State]] = []

    def router(self, name: str, address: str, priority: int) -> list[Node]:
        nodes = [self.add(InstanceConfig(f"{name}_{vrid}", vrid, priority=priority,
                                         addresses=(IPv4Address(f"198.18.{vrid}.1"),),
                                         source=IPv4Address(address)))
                 for vrid in (1, 2)]
        for node in nodes:
            node.inst.synced = True
        self.groups[name] = (SyncGroup(name, tuple(n.name for n in nodes)), nodes)
        return nodes

    def _send(self, sender: Node, send: SendAdvert) -> None:
        # only routers of the same VRID hear each other, as the runtime dispatches by VRID
        for target in self.nodes:
            if target is not sender and target.inst.cfg.vrid == sender.inst.cfg.vrid:
                pkt = on_wire(sender.inst.cfg, send, sender.address, packet.VRRP_GROUP_V4)
                self._queue.append((self.now + self.latency, next(self._seq), target, pkt))
        self._queue.sort(key=lambda q: q[:2])

    def _handle(self, node: Node, actions: list[Action]) -> list[Action]:
        super()._handle(node, actions)
        for group, members in self.groups.values():
            if node in members:
                out, changed = group.update(self.now, {m.name: m.inst for m in members})
                by_name = {m.name: m for m in members}
                for name, member_actions in out:
                    self._handle(by_name[name], member_actions)
                if changed:
                    self.group_transitions.append((self.now, group.name, *changed))
        return actions


def states(nodes: list[Node]) -> list[State]:
    return [n.state for n in nodes]


@pytest.fixture
def lan() -> tuple[SyncedLan, list[Node], list[Node]]:
    lan = SyncedLan()
    a = lan.router("A", "198.18.0.11", 200)
    b = lan.router("B", "198.18.0.12", 100)
    for node in (*a, *b):
        lan.start(node, 0.0)
    lan.run_until(10.0)
    return lan, a, b


def test_a_group_becomes_master_as_one(lan) -> None:  # noqa: ANN001 - fixture tuple
    lan_, a, b = lan
    assert states(a) == [State.MASTER, State.MASTER]
    assert states(b) == [State.BACKUP, State.BACKUP]
    assert [(g, old, new) for _, g, old, new in lan_.group_transitions] == [
        ("A", State.INIT, State.BACKUP), ("B", State.INIT, State.BACKUP),
        ("A", State.BACKUP, State.MASTER)]
    # both of A's instances entered MASTER at the same moment
    assert a[0].times_entered(State.MASTER) == a[1].times_entered(State.MASTER)


def test_a_fault_in_one_member_takes_the_whole_group_down_and_back(lan) -> None:  # noqa: ANN001
    lan_, a, b = lan
    lan_.link(a[0], 11.0, False, "if:eth1")
    assert states(a) == [State.FAULT, State.FAULT]
    assert "sync:A" in a[1].inst.fault_reasons and "sync:A" in a[0].inst.fault_reasons
    lan_.run_until(15.0)
    assert states(b) == [State.MASTER, State.MASTER]      # B took over both VRIDs
    lan_.link(a[0], 16.0, True, "if:eth1")
    assert states(a) != [State.FAULT, State.FAULT]
    lan_.run_until(20.0)
    assert states(a) == [State.MASTER, State.MASTER]      # preempts back, both
    assert states(b) == [State.BACKUP, State.BACKUP]
    assert not a[0].inst.fault_reasons and not a[1].inst.fault_reasons


def test_the_group_leaves_fault_only_when_no_member_has_a_fault_of_its_own(lan) -> None:  # noqa
    lan_, a, _ = lan
    lan_.link(a[0], 11.0, False, "if:eth1")
    lan_.link(a[1], 11.5, False, "script:chk")
    lan_.link(a[0], 12.0, True, "if:eth1")
    assert states(a) == [State.FAULT, State.FAULT]       # a[1] still has its own fault
    lan_.link(a[1], 13.0, True, "script:chk")
    assert states(a) == [State.BACKUP, State.BACKUP]


def test_a_group_preempts_only_when_every_member_would(lan) -> None:  # noqa: ANN001
    lan_, a, b = lan
    # Only B's first instance is raised above A: keepalived prefers BACKUP to
    # thrashing, so B waits as long as its second instance hears a better master.
    lan_.set_priority(b[0], 11.0, 250)
    lan_.run_until(20.0)
    assert states(a) == [State.MASTER, State.MASTER]
    assert states(b) == [State.BACKUP, State.BACKUP] and b[0].inst.wants_master
    # Both raised: B takes over as one, and A steps down as one.
    lan_.set_priority(b[1], 20.0, 250)
    lan_.run_until(25.0)
    assert states(b) == [State.MASTER, State.MASTER]
    assert states(a) == [State.BACKUP, State.BACKUP]


def test_a_master_member_that_steps_down_takes_the_group_with_it(lan) -> None:  # noqa: ANN001
    lan_, a, b = lan
    # A priority-0 advert from nobody would not do; a higher priority advert for VRID 1
    # reaching A's first instance does: A_2 leaves MASTER with it although nobody
    # outranks it on VRID 2.
    b_cfg = b[0].inst.cfg
    higher = packet.Advert(version=2, vrid=1, priority=254, interval_cs=100,
                           addresses=b_cfg.addresses)
    pkt = on_wire(b_cfg, SendAdvert(higher), IPv4Address("198.18.0.99"), packet.VRRP_GROUP_V4)
    lan_.inject(a[0], 11.0, pkt)
    assert states(a) == [State.BACKUP, State.BACKUP]
    assert any(new == State.BACKUP for _, g, _old, new in lan_.group_transitions if g == "A")


def test_a_member_waits_for_the_others_before_becoming_master() -> None:
    lan = SyncedLan()
    a = lan.router("A", "198.18.0.11", 200)
    lan.start(a[0], 0.0)
    lan.start(a[1], 0.0)
    lan.link(a[1], 0.0, False, PENDING + "script:slow")    # waits for a first result
    lan.run_until(10.0)
    assert states(a) == [State.FAULT, State.FAULT]
    assert lan.groups["A"][0].silent                     # not notified: the script is pending
    lan.link(a[1], 10.0, True, PENDING + "script:slow")
    assert states(a) == [State.BACKUP, State.BACKUP]
    lan.run_until(14.0)
    assert states(a) == [State.MASTER, State.MASTER]
    masters = [t for t, _, new in a[0].transitions() if new == State.MASTER]
    assert masters == [t for t, _, new in a[1].transitions() if new == State.MASTER]


def test_a_held_member_keeps_the_group_in_backup() -> None:
    lan = SyncedLan()
    a = lan.router("A", "198.18.0.11", 200)
    lan.start(a[0], 0.0)
    lan.start(a[1], 0.0)
    lan.hold(a[1], 0.5, True)
    lan.run_until(20.0)
    assert states(a) == [State.BACKUP, State.BACKUP]
    lan.hold(a[1], 20.0, False)
    lan.run_until(25.0)
    assert states(a) == [State.MASTER, State.MASTER]


def test_transitions_of_members_come_before_the_groups() -> None:
    lan = SyncedLan()
    a = lan.router("A", "198.18.0.11", 200)
    lan.start(a[0], 0.0)
    lan.start(a[1], 0.0)
    lan.run_until(5.0)
    master_at = a[0].times_entered(State.MASTER)[0]
    group_at = [t for t, g, _, new in lan.group_transitions if new == State.MASTER][0]
    assert master_at == group_at
    assert any(isinstance(x, Transition) for x in a[1].actions(master_at))
