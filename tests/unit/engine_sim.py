"""A virtual segment for the sans-I/O VRRP engine, run on a simulated clock.

Several ``Instance`` objects share one segment.  Each ``SendAdvert`` goes through the
wire codec (``packet.encode`` / ``build_ah_datagram`` and, on receipt, the engine's own
``parse_ipv4`` / ``decode``) and reaches the other nodes ``latency`` seconds later.  Time
only moves from one event to the next: a packet delivery or an instance's ``deadline``.
Every action an instance returns is recorded with the time it happened.

As the runtime does, an ``Announce`` with a ticket (becoming master) is reported back
with ``announced`` once "the kernel" has set the addresses and the first round is out:
``kernel_delay`` seconds later (0: at once).  ``announced_at`` records when.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from keepalived_py.vrrp import packet
from keepalived_py.vrrp.engine import (
    Action,
    Announce,
    Instance,
    InstanceConfig,
    Log,
    Received,
    SendAdvert,
    State,
    Transition,
)

IPAddress = IPv4Address | IPv6Address
MAX_EVENTS = 100_000


def ipv4_datagram(payload: bytes, src: IPv4Address, dst: IPv4Address, ttl: int = 255,
                  proto: int = packet.VRRP_PROTO, ip_id: int = 0) -> bytes:
    """An IPv4 datagram (20-byte header, checksum set) around ``payload``."""
    return packet.build_ipv4_datagram(payload, src, dst, proto, ttl, ip_id)


def on_wire(cfg: InstanceConfig, send: SendAdvert, src: IPAddress, dst: IPAddress,
            ttl: int = 255, ip_id: int = 1) -> Received:
    """What a receiver gets when an instance configured as ``cfg`` sends ``send``."""
    if cfg.family == 6:
        return Received(packet.encode(send.advert, src, dst), src, dst, hop_limit=ttl)
    assert isinstance(src, IPv4Address) and isinstance(dst, IPv4Address)
    if cfg.auth_type == packet.AUTH_AH:
        data = packet.build_ah_datagram(send.advert, src, dst, cfg.auth_pass, send.ah_seq,
                                        ip_id, ttl=ttl)
    else:
        data = ipv4_datagram(packet.encode(send.advert, src, dst), src, dst, ttl=ttl)
    return Received(data, src, dst)


@dataclass
class Node:
    """One router on the segment: an engine instance plus what happened to it."""

    inst: Instance
    address: IPAddress
    alive: bool = True          # False: crashed, no more ticks, sends or receipts
    attached: bool = True       # False: cable pulled, ticks go on but no packets pass
    ttl: int = 255              # the TTL / hop limit its adverts arrive with
    log: list[tuple[float, Action]] = field(default_factory=list)
    ip_id: int = 0
    announced_at: list[float] = field(default_factory=list)
    frozen: bool = False        # SIGSTOP: no ticks; packets queue in ``backlog``
    backlog: list[Received] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inst.cfg.name

    @property
    def state(self) -> State:
        return self.inst.state

    def actions(self, at: float | None = None) -> list[Action]:
        """Actions other than Log, in order; only those at time ``at`` if given."""
        return [a for t, a in self.log
                if not isinstance(a, Log) and (at is None or abs(t - at) < 1e-9)]

    def transitions(self) -> list[tuple[float, State, State]]:
        return [(t, a.old, a.new) for t, a in self.log if isinstance(a, Transition)]

    def adverts(self) -> list[tuple[float, packet.Advert]]:
        return [(t, a.advert) for t, a in self.log if isinstance(a, SendAdvert)]

    def announces(self) -> list[tuple[float, int]]:
        return [(t, a.repeat) for t, a in self.log if isinstance(a, Announce)]

    def times_entered(self, state: State) -> list[float]:
        return [t for t, _old, new in self.transitions() if new == state]


class Segment:
    """A LAN (or a set of unicast peers) with a simulated clock."""

    def __init__(self, latency: float = 0.0, kernel_delay: float = 0.0) -> None:
        self.latency = latency
        self.kernel_delay = kernel_delay
        self.now = 0.0
        self.nodes: list[Node] = []
        self._queue: list[tuple[float, int, Node, Received | int]] = []
        self._seq = itertools.count()

    def add(self, cfg: InstanceConfig, ttl: int = 255) -> Node:
        assert cfg.source is not None, "every simulated router needs its source address"
        node = Node(Instance(cfg), cfg.source, ttl=ttl)
        self.nodes.append(node)
        return node

    # -- driving the clock --------------------------------------------------

    def run_until(self, until: float) -> None:
        """Process every delivery and timer due up to and including ``until``."""
        for _ in range(MAX_EVENTS):
            event = self._next_event()
            if event is None or event[0] > until:
                break
            when, node = event
            self.now = max(self.now, when)
            if node is None:
                _, _, target, item = heapq.heappop(self._queue)
                if isinstance(item, int):
                    if target.alive:
                        self._announced(target, item)
                elif target.alive and target.attached:
                    if target.frozen:
                        target.backlog.append(item)
                    else:
                        self._handle(target, target.inst.receive(self.now, item))
            else:
                self._handle(node, node.inst.tick(self.now))
        else:
            raise AssertionError(f"the simulation does not settle by {until}")
        self.now = max(self.now, until)

    def _next_event(self) -> tuple[float, Node | None] | None:
        best: tuple[float, int, Node | None] | None = None
        if self._queue:
            best = (self._queue[0][0], 0, None)      # deliveries first at equal times
        for i, node in enumerate(self.nodes):
            if node.alive and not node.frozen and node.inst.deadline is not None:
                candidate = (max(node.inst.deadline, self.now), 1 + i, node)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        return None if best is None else (best[0], best[2])

    # -- things that happen to a node at a given time ------------------------

    def start(self, node: Node, at: float = 0.0, faults: tuple[str, ...] = (),
              resume: bool = False) -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.start(self.now, faults, resume=resume))

    def hold(self, node: Node, at: float, on: bool) -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.hold(self.now, on))

    def reconfigure(self, node: Node, at: float, cfg: InstanceConfig) -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.reconfigure(self.now, cfg))

    def stop(self, node: Node, at: float) -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.stop(self.now))

    def link(self, node: Node, at: float, up: bool, reason: str = "link") -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.link(self.now, up, reason))

    def set_priority(self, node: Node, at: float, total: int) -> list[Action]:
        self.run_until(at)
        return self._handle(node, node.inst.set_priority(self.now, total))

    def inject(self, node: Node, at: float, pkt: Received) -> list[Action]:
        """Hand ``node`` a packet made by the test."""
        self.run_until(at)
        return self._handle(node, node.inst.receive(self.now, pkt))

    def detach(self, node: Node, at: float) -> None:
        """Pull the cable: the router runs on but no packet reaches it or leaves it."""
        self.run_until(at)
        node.attached = False

    def attach(self, node: Node, at: float) -> None:
        self.run_until(at)
        node.attached = True

    def freeze(self, node: Node, at: float) -> None:
        """SIGSTOP: the router neither runs its timers nor reads; adverts queue up."""
        self.run_until(at)
        node.frozen = True

    def thaw(self, node: Node, at: float) -> None:
        """SIGCONT: what queued is read first, then timers run (the runtime's drain)."""
        self.run_until(at)
        node.frozen = False
        backlog, node.backlog = node.backlog, []
        for pkt in backlog:
            self._handle(node, node.inst.receive(self.now, pkt))

    def crash(self, node: Node, at: float) -> None:
        """The router dies silently: its adverts simply stop."""
        self.run_until(at)
        node.alive = False

    # -- plumbing -------------------------------------------------------------

    def _handle(self, node: Node, actions: list[Action]) -> list[Action]:
        for action in actions:
            node.log.append((self.now, action))
            if isinstance(action, SendAdvert) and node.attached:
                self._send(node, action)
        for action in actions:
            if isinstance(action, Announce) and action.ticket:
                if self.kernel_delay:
                    heapq.heappush(self._queue, (self.now + self.kernel_delay,
                                                 next(self._seq), node, action.ticket))
                else:
                    actions = actions + self._announced(node, action.ticket)
        return actions

    def _announced(self, node: Node, ticket: int) -> list[Action]:
        node.announced_at.append(self.now)
        return self._handle(node, node.inst.announced(self.now, ticket))

    def _send(self, sender: Node, send: SendAdvert) -> None:
        cfg = sender.inst.cfg
        if cfg.unicast:
            targets = [(n, n.address) for n in self.nodes
                       if any(p.address == n.address for p in cfg.peers)]
        else:
            group = packet.VRRP_GROUP_V4 if cfg.family == 4 else packet.VRRP_GROUP_V6
            targets = [(n, group) for n in self.nodes if n is not sender]
        for target, dst in targets:
            sender.ip_id += 1
            pkt = on_wire(cfg, send, sender.address, dst, ttl=sender.ttl, ip_id=sender.ip_id)
            heapq.heappush(self._queue, (self.now + self.latency, next(self._seq), target, pkt))

    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and n.state == State.MASTER]
