"""The sans-I/O BFD engine (RFC 5880) on a simulated clock, to the microsecond.

Two kinds of test: one session against packets written by hand (``Peer``), and
two sessions joined by a simulated ``Link`` with a delay and loss.  Jitter is
drawn from a function passed in: ``TOP`` gives 100 % of the interval (90 % with
multiplier 1), ``BOTTOM`` 75 %, so that every time is exact.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from keepalived_py.bfd import packet
from keepalived_py.bfd.engine import (
    Action,
    Control,
    DetectionTimeChanged,
    Diag,
    Discard,
    Dropped,
    Send,
    Session,
    SessionConfig,
    State,
    StateChanged,
    demultiplex,
)

MS = 1_000
S = 1_000_000
LOCAL, REMOTE = 0x1111, 0x2222
DOWN, INIT, UP, ADMIN_DOWN = State.DOWN, State.INIT, State.UP, State.ADMIN_DOWN


def TOP(n: int) -> int:
    return n - 1


def BOTTOM(n: int) -> int:
    return 0


FAST = SessionConfig(min_tx_us=10 * MS, min_rx_us=10 * MS, multiplier=3)


def sent(actions: list[Action]) -> list[Control]:
    out = []
    for action in actions:
        if isinstance(action, Send):
            decoded = packet.decode(bytes(action.packet))
            assert isinstance(decoded, Control)
            out.append(decoded)
    return out


def changes(actions: list[Action]) -> list[StateChanged]:
    return [a for a in actions if isinstance(a, StateChanged)]


def dropped(actions: list[Action]) -> list[Discard]:
    return [a.reason for a in actions if isinstance(a, Dropped)]


def from_peer(state: State = DOWN, your: int = LOCAL, tx: int = 10 * MS, rx: int = 10 * MS,
              mult: int = 3, **kw: object) -> bytes:
    """A packet the peer (discriminator REMOTE) might send us."""
    return packet.encode(Control(state=state, my_discr=REMOTE, your_discr=your,
                                 desired_min_tx_us=tx, required_min_rx_us=rx,
                                 detect_mult=mult, **kw))  # type: ignore[arg-type]


def copied(actions: list[Action]) -> list[object]:
    """The actions with each Send decoded (its buffer is reused by the next call)."""
    out: list[object] = []
    for action in actions:
        out.extend(sent([action]) if isinstance(action, Send) else [action])
    return out


def run(session: Session, start: int, until: int, peer: bytes | None | bool = True,
        every: int = 10 * MS) -> list[tuple[int, object]]:
    """Run the session from ``start`` to ``until`` (both in us), recording what it does.

    The peer sends ``peer`` every ``every`` us after ``start`` (True: an ordinary
    Up packet at 10 ms x 3; None: the peer is silent).  At equal times its packet
    is received before our timers fire, as the BFD process drains its socket first.
    """
    packet_from_peer = from_peer(UP) if peer is True else peer
    peer_times = iter(range(start + every, until + 1, every) if packet_from_peer else ())
    next_peer = next(peer_times, None)
    events: list[tuple[int, object]] = []
    while True:
        ours = session.next_deadline()
        if ours is not None and ours > until:
            ours = None
        if next_peer is not None and (ours is None or next_peer <= ours):
            assert packet_from_peer is not None
            actions = copied(session.receive(packet_from_peer, next_peer))
            events += [(next_peer, a) for a in actions]
            next_peer = next(peer_times, None)
        elif ours is not None:
            events += [(ours, a) for a in copied(session.fire(ours))]
        else:
            return events


def send_times(events: list[tuple[int, object]]) -> list[int]:
    return [t for t, a in events if isinstance(a, Control)]


def bring_up(cfg: SessionConfig = FAST, rand: Callable[[int], int] = TOP) -> Session:
    """A session Up at 2 ms, its Poll (slow -> fast) answered, peer at 10 ms x 3.

    At 0 it sends Down; at 1 ms the peer's Init brings it Up (sending P at once);
    at 2 ms the peer's Final ends the Poll.  Last packet sent at 1 ms.
    """
    session = Session(cfg, LOCAL, 0, rand)
    session.fire(0)
    session.receive(from_peer(INIT, tx=S, rx=S), 1 * MS)
    session.receive(from_peer(UP, final=True), 2 * MS)
    assert session.state == UP and not session.polling
    return session


# -- the simulated link ------------------------------------------------------

@dataclass
class Link:
    """Sessions A and B on a wire: a packet arrives ``delay_us`` later unless lost.

    Time moves from event to event.  At equal times packets are delivered
    before timers fire, as the BFD process drains its socket first.
    ``drop(sender, packet)`` can pick packets to lose; B hears nothing before
    ``b_starts_at`` (its process is not running yet).
    """

    a: Session
    b: Session
    delay_us: int = 500
    loss: float = 0.0
    seed: int = 0
    drop: Callable[[str, Control], bool] = lambda sender, pkt: False
    b_starts_at: int = 0
    now: int = 0
    changes: list[tuple[int, str, StateChanged]] = field(default_factory=list)
    sent: list[tuple[int, str, Control]] = field(default_factory=list)
    arrivals: dict[str, list[int]] = field(default_factory=lambda: {"A": [], "B": []})
    _queue: list[tuple[int, int, str, bytes]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def session(self, name: str) -> Session:
        return self.a if name == "A" else self.b

    def run_until(self, end_us: int) -> None:
        while True:
            times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
            if self._queue:
                times.append(self._queue[0][0])
            if not times or min(times) > end_us:
                break
            self.now = min(times)
            while self._queue and self._queue[0][0] <= self.now:
                _, _, dst, data = heapq.heappop(self._queue)
                if dst == "B" and self.now < self.b_starts_at:
                    continue
                self.arrivals[dst].append(self.now)
                self._record(dst, self.session(dst).receive(data, self.now, ttl=255))
            for name in ("A", "B"):
                deadline = self.session(name).next_deadline()
                if deadline is not None and deadline <= self.now:
                    self._record(name, self.session(name).fire(self.now))
        self.now = end_us

    def act(self, name: str, call: Callable[[Session, int], list[Action]]) -> None:
        """Call into a session now (``admin_down``, ``set_timers``) and wire what it does."""
        self._record(name, call(self.session(name), self.now))

    def _record(self, name: str, actions: list[Action]) -> None:
        other = "B" if name == "A" else "A"
        for action in actions:
            if isinstance(action, StateChanged):
                self.changes.append((self.now, name, action))
            elif isinstance(action, Send):
                data = bytes(action.packet)
                decoded = packet.decode(data)
                assert isinstance(decoded, Control)
                self.sent.append((self.now, name, decoded))
                if self._rng.random() < self.loss or self.drop(name, decoded):
                    continue
                heapq.heappush(self._queue, (self.now + self.delay_us, next(self._seq),
                                             other, data))

    def downs(self, name: str) -> list[tuple[int, StateChanged]]:
        return [(t, c) for t, n, c in self.changes if n == name and c.new == DOWN]


def link(cfg_a: SessionConfig = FAST, cfg_b: SessionConfig = FAST, start_b: int = 0,
         jitter: int | None = None, **kw: object) -> Link:
    """Two sessions on a ``Link``; ``jitter``: a seed for random jitter (else TOP)."""
    rand_a = TOP if jitter is None else random.Random(jitter).randrange
    rand_b = TOP if jitter is None else random.Random(jitter + 1).randrange
    a = Session(cfg_a, LOCAL, 0, rand_a)
    b = Session(cfg_b, REMOTE, start_b, rand_b)
    return Link(a, b, b_starts_at=start_b, **kw)  # type: ignore[arg-type]


# -- the three-way handshake ---------------------------------------------------

def test_handshake_from_both_sides() -> None:
    wire = link(delay_us=500)
    wire.run_until(100 * MS)
    steps = [(t, n, c.old, c.new) for t, n, c in wire.changes]
    # Both send Down at 0; each sees Down at 0.5 ms (-> Init, told at once) and Init at 1 ms.
    assert sorted(steps) == [(500, "A", DOWN, INIT), (500, "B", DOWN, INIT),
                             (1000, "A", INIT, UP), (1000, "B", INIT, UP)]


def test_handshake_with_one_side_late() -> None:
    wire = link(start_b=300 * MS, delay_us=500)
    wire.run_until(400 * MS)
    steps = [(t, n, c.old, c.new) for t, n, c in wire.changes]
    # B's Down reaches A at 300.5 ms: A goes Init, and its Init brings B straight Up.
    assert steps == [(300_500, "A", DOWN, INIT), (301_000, "B", DOWN, UP),
                     (301_500, "A", INIT, UP)]


def test_timers_after_the_handshake() -> None:
    wire = link(cfg_a=FAST, cfg_b=SessionConfig(min_tx_us=20 * MS, min_rx_us=15 * MS,
                                                multiplier=5))
    wire.run_until(1 * S)
    a, b = wire.a, wire.b
    assert a.tx_interval_us == 15 * MS          # max(A's 10 ms tx, B's 15 ms rx)
    assert b.tx_interval_us == 20 * MS          # max(B's 20 ms tx, A's 10 ms rx)
    assert a.detection_time_us == 5 * 20 * MS   # B's multiplier x max(10 ms, B's 20 ms tx)
    assert b.detection_time_us == 3 * 15 * MS   # A's multiplier x max(15 ms, A's 10 ms tx)


@pytest.mark.parametrize("seed", range(20))
def test_bring_up_under_loss_ends_up(seed: int) -> None:
    wire = link(loss=0.05, seed=seed, delay_us=300, jitter=seed)
    wire.run_until(10 * S)
    assert (wire.a.state, wire.b.state) == (UP, UP)


def test_bring_up_under_heavy_loss() -> None:
    # 30 % loss: 10 ms x 3 cannot stay Up for long, but the handshake gets through.
    wire = link(loss=0.3, seed=7)
    wire.run_until(10 * S)
    assert {n for _, n, c in wire.changes if c.new == UP} == {"A", "B"}


def test_a_state_change_is_sent_at_once() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    session.fire(0)
    [pkt] = sent(session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 400 * MS))
    assert (pkt.state, pkt.your_discr, pkt.poll) == (INIT, REMOTE, False)
    # ... and the periodic timer restarts from it.
    assert session.next_deadline() == 400 * MS + S


def test_diagnostic_kept_until_up() -> None:
    session = bring_up()
    session.fire(100 * MS)                                  # detection expired at 32 ms
    assert (session.state, session.local_diag) == (DOWN, Diag.CONTROL_DETECTION_EXPIRED)
    [pkt] = sent(session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 200 * MS))
    assert (pkt.state, pkt.diag) == (INIT, Diag.CONTROL_DETECTION_EXPIRED)
    session.receive(from_peer(UP, tx=S, rx=S), 300 * MS)
    assert (session.state, session.local_diag) == (UP, Diag.NONE)


# -- reception checks (6.8.6) -------------------------------------------------------

def up_and_counting() -> tuple[Session, int]:
    session = bring_up()
    return session, session.stats.rx


# Each would take the Up session Down (or is a Down) if it were accepted; none may be.
@pytest.mark.parametrize(("data", "reason"), [
    (b"", Discard.TRUNCATED),
    (from_peer(DOWN, version=0), Discard.VERSION),
    (from_peer(DOWN, length=23), Discard.LENGTH_TOO_SHORT),
    (from_peer(DOWN, length=25, auth=True) + b"\0", Discard.LENGTH_TOO_SHORT),
    (from_peer(DOWN)[:20], Discard.LENGTH_EXCEEDS_PAYLOAD),
    (from_peer(DOWN, length=40), Discard.LENGTH_EXCEEDS_PAYLOAD),
    (from_peer(DOWN, mult=0), Discard.DETECT_MULT_ZERO),
    (from_peer(DOWN, multipoint=True), Discard.MULTIPOINT),
    (packet.encode(Control(state=DOWN, my_discr=0, your_discr=LOCAL)), Discard.MY_DISCR_ZERO),
    (from_peer(UP, your=0), Discard.YOUR_DISCR_ZERO),
    (from_peer(INIT, your=0), Discard.YOUR_DISCR_ZERO),
    (from_peer(DOWN, your=LOCAL + 1), Discard.YOUR_DISCR_UNKNOWN),
    (from_peer(DOWN, auth=True, length=28) + b"\x01\x04\x00\x00", Discard.AUTH),
    (from_peer(ADMIN_DOWN, your=0, auth=True, length=28) + b"\x01\x04\x00\x00", Discard.AUTH),
], ids=lambda v: v.name if isinstance(v, Discard) else None)
def test_each_discard_is_counted_and_changes_nothing(data: bytes, reason: Discard) -> None:
    session, rx = up_and_counting()
    actions = session.receive(data, 10 * MS, ttl=255)
    assert actions == [Dropped(reason)]
    assert session.stats.drops[reason] == 1 and session.stats.rx == rx
    assert (session.state, session.remote_discr, session.next_tx_us) == (UP, REMOTE, 11 * MS)
    # The detection timer was not refreshed: it runs out 30 ms after the last good packet.
    assert send_times(run(session, 10 * MS, 32 * MS - 1, peer=None)) == [11 * MS, 21 * MS,
                                                                         31 * MS]
    assert session.state == UP
    assert changes(session.fire(32 * MS))[0].new == DOWN


def test_a_down_packet_is_acted_on_when_it_is_well_formed() -> None:
    # The counterpart of the test above: the same Down, valid, does take the session Down.
    session = bring_up()
    [change] = changes(session.receive(from_peer(DOWN), 10 * MS))
    assert (change.new, change.diag, change.failure) == (DOWN, Diag.NEIGHBOR_DOWN, True)


def test_single_hop_requires_ttl_255() -> None:
    session, rx = up_and_counting()
    assert session.receive(from_peer(DOWN), 10 * MS, ttl=254) == [Dropped(Discard.TTL)]
    assert session.state == UP and session.stats.drops[Discard.TTL] == 1


def test_multihop_has_no_ttl_rule_unless_max_hops() -> None:
    multihop = SessionConfig(multihop=True)
    assert (multihop.port, multihop.min_rx_ttl) == (4784, 0)
    limited = SessionConfig(multihop=True, max_hops=3)
    assert limited.min_rx_ttl == 252                    # keepalived: ttl + max_hops >= 255
    session = Session(limited, LOCAL, 0, TOP)
    assert session.receive(from_peer(DOWN, your=0), 1, ttl=251) == [Dropped(Discard.TTL)]
    assert changes(session.receive(from_peer(DOWN, your=0), 2, ttl=252))[0].new == INIT


def test_keepalived_hoplimit_setting() -> None:
    # hoplimit 64 (keepalived 2.2.7's IPv6 default) accepts 64 and more.
    cfg = SessionConfig(ttl=64)
    assert cfg.min_rx_ttl == 64 and cfg.port == 3784


def test_your_discr_zero_accepted_while_peer_down() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    assert dropped(session.receive(from_peer(DOWN, your=0), 1)) == []
    assert dropped(session.receive(from_peer(ADMIN_DOWN, your=0), 2)) == []
    assert session.remote_discr == REMOTE


def test_poll_and_final_together_are_answered() -> None:
    # 4.1 forbids sending both; 6.8.6 does not discard it: answer the P, end our Poll.
    session = bring_up()
    session.set_timers(20 * MS, 10 * MS, 3, 3 * MS)
    [reply] = sent(session.receive(from_peer(UP, poll=True, final=True), 4 * MS))
    assert reply.final and not session.polling


# -- detection time (6.8.4) -------------------------------------------------------

@pytest.mark.parametrize(("local_rx", "remote_tx", "remote_mult", "expected"), [
    (10 * MS, 20 * MS, 5, 100 * MS),       # the remote's tx is the larger
    (30 * MS, 20 * MS, 5, 150 * MS),       # our rx is the larger
    (10 * MS, 10 * MS, 1, 10 * MS),        # the remote's multiplier, not ours (3)
    (3_300, 3_300, 3, 9_900),              # RFC 7419's 3.3 ms, to the microsecond
])
def test_detection_time(local_rx: int, remote_tx: int, remote_mult: int, expected: int) -> None:
    cfg = SessionConfig(min_tx_us=10 * MS, min_rx_us=local_rx, multiplier=3)
    session = Session(cfg, LOCAL, 0, TOP)
    actions = session.receive(from_peer(DOWN, your=0, tx=remote_tx, mult=remote_mult), 7)
    assert session.detection_time_us == expected
    assert DetectionTimeChanged(expected) in actions


def test_detection_expires_to_the_microsecond() -> None:
    session = bring_up()
    run(session, 2 * MS, 42 * MS)                           # the peer's last packet: 42 ms
    events = run(session, 42 * MS, 72 * MS - 1, peer=None)
    assert send_times(events) == [51 * MS, 61 * MS, 71 * MS] and session.state == UP
    assert session.next_deadline() == 72 * MS
    actions = session.fire(72 * MS)                         # 42 ms + 3 x 10 ms
    [change] = changes(actions)
    assert (change.old, change.new, change.diag) == (UP, DOWN, Diag.CONTROL_DETECTION_EXPIRED)
    assert change.failure
    [pkt] = sent(actions)                                   # the peer hears it at once
    assert (pkt.state, pkt.your_discr, pkt.desired_min_tx_us) == (DOWN, 0, S)


def test_init_times_out_too() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    session.receive(from_peer(DOWN, your=0, tx=S, mult=3), 0)
    assert session.state == INIT and session.next_deadline() == 0 + S      # our next packet
    session.fire(S)
    session.fire(2 * S)
    [change] = changes(session.fire(3 * S))
    assert (change.new, change.diag, change.failure) == (DOWN, 1, False)


def test_remote_discr_cleared_after_the_detection_time() -> None:
    session = bring_up()                                    # last packet from the peer: 2 ms
    events = run(session, 2 * MS, 32 * MS, peer=None)
    assert (session.state, session.remote_discr) == (DOWN, 0)
    [down] = [a for t, a in events if t == 32 * MS and isinstance(a, Control)]
    assert down.your_discr == 0
    assert session.next_deadline() == 32 * MS + S           # no detection timer, slow rate


def test_remote_discr_cleared_also_while_down() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    session.receive(from_peer(ADMIN_DOWN, your=0, tx=S, mult=3), 0)
    assert (session.state, session.remote_discr) == (DOWN, REMOTE)
    session.fire(3 * S - 1)
    assert session.remote_discr == REMOTE
    session.fire(3 * S)
    assert session.remote_discr == 0


# -- transmission: jitter, slow start (6.8.7, 6.8.3) ------------------------------

def gaps(events: list[tuple[int, object]], start: int) -> list[int]:
    """The intervals between the packets sent, the first counted from ``start``."""
    return [b - a for a, b in itertools.pairwise([start, *send_times(events)])]


@pytest.mark.parametrize(("rand", "mult", "gap"), [
    (TOP, 3, 10_000), (BOTTOM, 3, 7_500), (TOP, 1, 9_000), (BOTTOM, 1, 7_500)])
def test_jitter_bounds_exact(rand: Callable[[int], int], mult: int, gap: int) -> None:
    session = bring_up(SessionConfig(min_tx_us=10 * MS, min_rx_us=10 * MS, multiplier=mult),
                       rand)
    assert set(gaps(run(session, 2 * MS, 1 * S), 1 * MS)) == {gap}  # Up: sent at 1 ms


@pytest.mark.parametrize("mult", [1, 3])
def test_jitter_stays_within_bounds(mult: int) -> None:
    cfg = SessionConfig(min_tx_us=10_001, min_rx_us=10 * MS, multiplier=mult)
    session = bring_up(cfg, random.Random(mult).randrange)
    found = gaps(run(session, 2 * MS, 30 * S), 1 * MS)
    assert len(found) > 3000
    # 75 % rounded up, 100 % (90 % with multiplier 1) rounded down; and the range is used.
    top = 9_000 if mult == 1 else 10_001
    assert 7_501 <= min(found) < 7_600 and top - 100 < max(found) <= top


def test_slow_start_until_up() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    assert session.next_deadline() == 0                     # an active session starts at once
    events = run(session, 0, 3 * S, peer=None)              # no peer: 1 s, not 10 ms
    assert send_times(events) == [0, S, 2 * S, 3 * S]
    first = events[0][1]
    assert isinstance(first, Control)
    assert (first.state, first.desired_min_tx_us, first.required_min_rx_us) == (DOWN, S, 10 * MS)


def test_slow_start_uses_idle_tx_but_never_under_a_second() -> None:
    assert Session(SessionConfig(idle_tx_us=2 * S), LOCAL, 0).desired_min_tx_us == 2 * S
    assert Session(SessionConfig(idle_tx_us=500 * MS), LOCAL, 0).desired_min_tx_us == S


def test_fast_once_up() -> None:
    session = bring_up()
    # Up at 1 ms (packet sent then); the peer's 10 ms rx arrived at 2 ms.
    assert send_times(run(session, 2 * MS, 31 * MS)) == [11 * MS, 21 * MS, 31 * MS]


def test_remote_min_rx_bounds_our_rate() -> None:
    session = bring_up()
    session.receive(from_peer(UP, rx=50 * MS), 5 * MS)      # the peer wants it slower
    assert session.tx_interval_us == 50 * MS
    assert session.next_tx_us == 51 * MS                    # counted from our last, at 1 ms


def test_remote_min_rx_reduced_is_honoured_at_once() -> None:
    session = bring_up()
    slower = from_peer(UP, rx=50 * MS)
    session.receive(slower, 5 * MS)
    assert send_times(run(session, 5 * MS, 51 * MS, peer=slower)) == [51 * MS]
    assert session.next_tx_us == 101 * MS
    # Back to our own 10 ms: counted from our last packet, so due at 61 ms, past already.
    actions = session.receive(from_peer(UP, rx=5 * MS), 65 * MS)
    assert len(sent(actions)) == 1 and session.tx_interval_us == 10 * MS
    assert session.next_tx_us == 75 * MS


def test_remote_min_rx_zero_stops_periodic_sending() -> None:
    session = bring_up()
    session.receive(from_peer(UP, rx=0), 5 * MS)
    assert session.next_tx_us is None
    assert session.next_deadline() == 5 * MS + 30 * MS      # only the detection timer
    [reply] = sent(session.receive(from_peer(UP, rx=0, poll=True), 6 * MS))
    assert reply.final                                      # a Poll is still answered


# -- Poll / Final (6.5, 6.8.3) ---------------------------------------------------

def test_increased_tx_waits_for_the_final() -> None:
    session = bring_up()
    session.set_timers(50 * MS, 10 * MS, 3, 5 * MS)
    events = run(session, 5 * MS, 31 * MS)                  # the peer's packets: no Final
    polls = [(t, a.poll, a.desired_min_tx_us) for t, a in events if isinstance(a, Control)]
    # Advertised at once, but not used yet.
    assert polls == [(11 * MS, True, 50 * MS), (21 * MS, True, 50 * MS),
                     (31 * MS, True, 50 * MS)]
    session.receive(from_peer(UP, final=True), 35 * MS)
    assert not session.polling
    assert send_times(run(session, 35 * MS, 200 * MS)) == [81 * MS, 131 * MS, 181 * MS]


def test_lost_final_means_the_poll_goes_on() -> None:
    session = bring_up()
    session.set_timers(50 * MS, 10 * MS, 3, 5 * MS)
    events = run(session, 5 * MS, 1 * S)                    # the peer's packets, no Final
    polls = [a.poll for _, a in events if isinstance(a, Control)]
    assert len(polls) == 99 and all(polls) and session.polling      # 11 ms ... 991 ms
    assert session.tx_interval_us == 10 * MS


def test_decreased_tx_applies_at_once() -> None:
    session = bring_up()
    session.set_timers(50 * MS, 10 * MS, 3, 3 * MS)
    session.receive(from_peer(UP, final=True, rx=1 * MS), 4 * MS)   # now at 50 ms
    assert session.next_tx_us == 51 * MS                    # from our last packet, at 1 ms
    run(session, 4 * MS, 51 * MS, peer=from_peer(UP, rx=1 * MS))
    actions = session.set_timers(5 * MS, 10 * MS, 3, 70 * MS)
    [pkt] = sent(actions)                                   # 51 + 5 ms is past: at once
    assert pkt.poll and pkt.desired_min_tx_us == 5 * MS
    assert session.next_tx_us == 75 * MS


def test_decreased_rx_keeps_the_detection_time_until_the_final() -> None:
    session = bring_up(SessionConfig(min_tx_us=10 * MS, min_rx_us=40 * MS, multiplier=3))
    assert session.detection_time_us == 120 * MS
    session.set_timers(10 * MS, 10 * MS, 3, 5 * MS)
    [pkt] = sent(session.fire(11 * MS))
    assert pkt.poll and pkt.required_min_rx_us == 10 * MS
    session.receive(from_peer(UP), 12 * MS)
    assert session.detection_time_us == 120 * MS            # the old rx until the Final
    actions = session.receive(from_peer(UP, final=True), 15 * MS)
    assert DetectionTimeChanged(30 * MS) in actions
    assert session.next_deadline() == 21 * MS               # next packet; expiry at 45 ms


def test_increased_rx_lengthens_the_detection_time_at_once() -> None:
    session = bring_up()
    actions = session.set_timers(10 * MS, 100 * MS, 3, 5 * MS)
    assert DetectionTimeChanged(300 * MS) in actions and session.polling


def test_every_poll_is_answered_at_once_with_a_final() -> None:
    session = bring_up()
    for t in (3 * MS, 3 * MS + 1, 3 * MS + 2):              # even back to back
        [reply] = sent(session.receive(from_peer(UP, poll=True), t))
        assert (reply.final, reply.poll, reply.state) == (True, False, UP)
    assert session.next_deadline() == 11 * MS               # the periodic timer is untouched


def test_final_while_our_poll_runs_then_our_poll_goes_on() -> None:
    # keepalived 2.2.7 drops its own Poll when it has to answer one.
    session = bring_up()
    session.set_timers(20 * MS, 10 * MS, 3, 3 * MS)
    [reply] = sent(session.receive(from_peer(UP, poll=True), 4 * MS))
    assert reply.final and not reply.poll
    [pkt] = sent(session.fire(11 * MS))
    assert pkt.poll and not pkt.final


def test_a_change_during_a_poll_gets_its_own_poll() -> None:
    session = bring_up()
    session.set_timers(20 * MS, 10 * MS, 3, 3 * MS)
    session.fire(11 * MS)                                   # P with 20 ms
    session.set_timers(40 * MS, 10 * MS, 3, 12 * MS)
    session.receive(from_peer(UP, final=True), 13 * MS)     # the Final answers the 20 ms
    assert session.polling and session.tx_interval_us == 20 * MS
    session.fire(31 * MS)
    session.receive(from_peer(UP, final=True), 32 * MS)
    assert not session.polling and session.tx_interval_us == 40 * MS


def test_unchanged_timers_start_no_poll() -> None:
    session = bring_up()
    assert session.set_timers(10 * MS, 10 * MS, 3, 5 * MS) == []
    assert not session.polling


def test_a_multiplier_change_needs_no_poll() -> None:
    session = bring_up()
    session.set_timers(10 * MS, 10 * MS, 5, 5 * MS)
    [pkt] = sent(session.fire(11 * MS))
    assert (pkt.detect_mult, pkt.poll) == (5, False)


def test_going_up_polls_and_speeds_up() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    session.fire(0)
    [pkt] = sent(session.receive(from_peer(INIT, tx=S, rx=10 * MS), 1 * MS))
    assert (pkt.state, pkt.poll, pkt.desired_min_tx_us) == (UP, True, 10 * MS)
    assert session.next_deadline() == 11 * MS


def test_peer_poll_with_a_shorter_tx_keeps_our_detection_time_until_it_ends() -> None:
    # FRR on reaching Up polls with its fast timers but keeps sending at 1 s until it
    # has our Final.  Our Finals lost, its 1 s packets must not find us timed out.
    session = Session(FAST, LOCAL, 0, TOP)
    session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 0)
    session.receive(from_peer(UP, tx=S, rx=S), 10 * MS)
    assert session.detection_time_us == 3 * S
    polling = from_peer(UP, poll=True, tx=10 * MS, rx=10 * MS)
    events = run(session, 10 * MS, 6 * S, peer=polling, every=S)   # at 1.01 s ... 5.01 s
    assert [a for _, a in events if isinstance(a, StateChanged)] == []
    assert len([a for _, a in events if isinstance(a, Control) and a.final]) == 5
    assert session.state == UP and session.detection_time_us == 3 * S
    session.receive(from_peer(UP, tx=10 * MS, rx=10 * MS), 6 * S)   # its Poll is over
    assert session.detection_time_us == 30 * MS


def test_peer_poll_with_a_longer_tx_lengthens_our_detection_time_at_once() -> None:
    session = bring_up()
    session.receive(from_peer(UP, poll=True, tx=100 * MS), 5 * MS)
    assert session.detection_time_us == 300 * MS


def test_poll_and_final_between_two_sessions() -> None:
    wire = link()
    wire.run_until(1 * S)
    wire.act("A", lambda s, now: s.set_timers(50 * MS, 10 * MS, 3, now))
    wire.run_until(2 * S)
    assert not wire.a.polling
    assert wire.a.tx_interval_us == 50 * MS and wire.b.detection_time_us == 150 * MS
    assert [c.new for _, _, c in wire.changes] == [INIT, INIT, UP, UP]


def test_lost_final_between_two_sessions() -> None:
    lost = []

    def lose_first_final(sender: str, pkt: Control) -> bool:
        if sender == "B" and pkt.final and wire.now > 1 * S and not lost:
            lost.append(wire.now)
            return True
        return False

    wire = link(drop=lose_first_final)
    wire.run_until(1 * S)
    wire.act("A", lambda s, now: s.set_timers(50 * MS, 10 * MS, 3, now))
    wire.run_until(2 * S)
    polls = [t for t, n, p in wire.sent if n == "A" and p.poll and t > 1 * S]
    assert lost and len(polls) == 2                         # repeated once, then answered
    assert polls[1] - polls[0] == 10 * MS                   # still at the old interval
    assert wire.a.tx_interval_us == 50 * MS and wire.a.state == wire.b.state == UP


# -- passive, Demand, AdminDown -------------------------------------------------

def test_passive_waits_for_the_peer() -> None:
    session = Session(SessionConfig(passive=True), LOCAL, 0, TOP)
    assert session.next_deadline() is None and session.fire(10 * S) == []
    [pkt] = sent(session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 11 * S))
    assert (pkt.state, pkt.your_discr) == (INIT, REMOTE)


def test_passive_goes_quiet_when_the_peer_is_gone() -> None:
    session = Session(SessionConfig(passive=True), LOCAL, 0, TOP)
    session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 0)
    session.fire(S)
    actions = session.fire(3 * S)                           # the detection time, 3 x 1 s
    assert [c.new for c in changes(actions)] == [DOWN] and sent(actions) == []
    assert session.next_deadline() is None


def test_passive_and_active_come_up() -> None:
    wire = link(cfg_b=SessionConfig(min_tx_us=10 * MS, min_rx_us=10 * MS, multiplier=3,
                                    passive=True))
    wire.run_until(1 * S)
    assert (wire.a.state, wire.b.state) == (UP, UP)
    first_b = min(t for t, n, _ in wire.sent if n == "B")
    assert first_b == 500                                   # only after A's packet arrived


def test_both_passive_never_come_up() -> None:
    passive = SessionConfig(passive=True)
    wire = link(cfg_a=passive, cfg_b=passive)
    wire.run_until(10 * S)
    assert wire.sent == [] and wire.a.state == wire.b.state == DOWN


def test_demand_mode_of_the_peer_stops_our_periodic_packets() -> None:
    session = bring_up()
    session.receive(from_peer(UP, demand=True), 5 * MS)
    assert session.next_deadline() == 35 * MS               # the detection timer only
    [reply] = sent(session.receive(from_peer(UP, demand=True, poll=True), 6 * MS))
    assert reply.final and not reply.demand


def test_demand_mode_resumes_for_our_poll_and_when_cleared() -> None:
    session = bring_up()
    session.receive(from_peer(UP, demand=True), 5 * MS)
    [pkt] = sent(session.set_timers(20 * MS, 10 * MS, 3, 7 * MS))
    assert pkt.poll                                         # a Poll is sent even so
    assert session.next_tx_us == 17 * MS                    # and repeated until the Final
    session.receive(from_peer(UP, demand=True, final=True), 8 * MS)
    assert session.next_tx_us is None
    assert len(sent(session.receive(from_peer(UP), 9 * MS))) == 1   # Demand off: at once
    assert session.next_tx_us == 29 * MS                    # 20 ms: the Poll is over


def test_demand_bit_ignored_unless_both_up() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    session.fire(0)
    session.receive(from_peer(DOWN, your=0, tx=S, rx=S, demand=True), 1 * MS)
    assert session.state == INIT and session.next_deadline() == 1 * MS + S


def test_remote_admin_down_is_not_a_failure() -> None:
    session = bring_up()
    actions = session.receive(from_peer(ADMIN_DOWN), 5 * MS)
    [change] = changes(actions)
    assert (change.old, change.new, change.diag) == (UP, DOWN, Diag.NEIGHBOR_DOWN)
    assert change.remote_admin_down and not change.failure
    [pkt] = sent(actions)
    assert (pkt.state, pkt.diag) == (DOWN, Diag.NEIGHBOR_DOWN)
    # While the peer stays AdminDown we stay Down (not Init).
    assert changes(session.receive(from_peer(ADMIN_DOWN), 6 * MS)) == []


def test_local_admin_down() -> None:
    session = bring_up()
    actions = session.admin_down(5 * MS)
    [change] = changes(actions)
    assert (change.new, change.diag, change.failure) == (ADMIN_DOWN, Diag.ADMIN_DOWN, False)
    [pkt] = sent(actions)
    assert (pkt.state, pkt.diag, pkt.desired_min_tx_us) == (ADMIN_DOWN, 7, S)
    # Packets go on at the slow rate; received ones are discarded, Polls too.
    assert session.receive(from_peer(DOWN, poll=True), 6 * MS) == [Dropped(Discard.ADMIN_DOWN)]
    assert session.state == ADMIN_DOWN and session.next_tx_us == 5 * MS + S
    events = run(session, 5 * MS, 3 * S, peer=from_peer(DOWN))
    assert gaps(events, 5 * MS) == [S, S]
    assert {a.state for _, a in events if isinstance(a, Control)} == {ADMIN_DOWN}


def test_admin_up_goes_down_then_up() -> None:
    session = bring_up()
    session.admin_down(5 * MS)
    [change] = changes(session.admin_up(10 * MS))
    assert (change.old, change.new, change.diag) == (ADMIN_DOWN, DOWN, Diag.ADMIN_DOWN)
    session.receive(from_peer(DOWN, your=0, tx=S, rx=S), 20 * MS)
    session.receive(from_peer(UP, tx=S, rx=S), 30 * MS)
    assert session.state == UP


def test_admin_down_seen_by_the_peer() -> None:
    wire = link()
    wire.run_until(1 * S)
    wire.act("A", Session.admin_down)
    wire.run_until(5 * S)
    [(t, change)] = wire.downs("B")
    assert t == 1 * S + 500 and change.remote_admin_down and not change.failure
    assert wire.b.state == DOWN                             # and it stays so
    wire.act("A", Session.admin_up)
    wire.run_until(6 * S)
    assert wire.a.state == wire.b.state == UP


# -- long runs -------------------------------------------------------------------

def test_no_false_down_under_random_loss() -> None:
    """60 s at 10 ms x 3, 5 % loss each way (about 13,000 packets).

    A Down may only come when nothing arrived for a whole detection time; then
    the session must come back Up.
    """
    wire = link(loss=0.05, seed=2024, delay_us=200, jitter=5)
    wire.run_until(60 * S)
    assert len(wire.sent) > 13_000
    # With these seeds the loss does make one 30 ms gap: the check below is exercised.
    assert wire.downs("A") or wire.downs("B")
    for name in ("A", "B"):
        for t, change in wire.downs(name):
            if change.diag == Diag.CONTROL_DETECTION_EXPIRED:
                last = max(a for a in wire.arrivals[name] if a < t)
                assert t - last == 30 * MS, (name, t, last)
            else:       # the peer timed out first and told us
                assert change.diag == Diag.NEIGHBOR_DOWN
    assert wire.a.state == wire.b.state == UP


def test_no_down_at_all_with_multiplier_5_under_loss() -> None:
    cfg = SessionConfig(min_tx_us=10 * MS, min_rx_us=10 * MS, multiplier=5)
    wire = link(cfg_a=cfg, cfg_b=cfg, loss=0.05, seed=1, jitter=1)
    wire.run_until(60 * S)
    assert [c for _, _, c in wire.changes if c.new == DOWN] == []


def test_link_cut_detected_within_the_detection_time() -> None:
    cut = []
    wire = link(drop=lambda sender, pkt: bool(cut), delay_us=200)
    wire.run_until(1 * S)
    cut.append(True)
    wire.run_until(2 * S)
    for name in ("A", "B"):
        [(t, change)] = wire.downs(name)
        assert t == wire.arrivals[name][-1] + 30 * MS and change.failure


# -- the hot path, demultiplexing ---------------------------------------------------

def test_steady_state_reuses_its_objects() -> None:
    session = bring_up()
    first = session.fire(11 * MS)
    send = first[0]
    second = session.fire(21 * MS)
    assert second is first and second[0] is send            # one list, one Send, one buffer
    assert session.receive(from_peer(UP), 22 * MS) is first and first == []


def test_demultiplex() -> None:
    session = Session(FAST, LOCAL, 0)
    by_discr, by_peer = {LOCAL: session}, {("192.0.2.1", 2): session}
    known = packet.decode(from_peer(UP, your=LOCAL))
    unknown = packet.decode(from_peer(UP, your=7))
    fresh = packet.decode(from_peer(DOWN, your=0))
    assert isinstance(known, Control) and isinstance(unknown, Control)
    assert isinstance(fresh, Control)
    assert demultiplex(known, by_discr, by_peer, ("198.51.100.9", 2)) is session
    assert demultiplex(unknown, by_discr, by_peer, ("192.0.2.1", 2)) is \
        Discard.YOUR_DISCR_UNKNOWN
    assert demultiplex(fresh, by_discr, by_peer, ("192.0.2.1", 2)) is session
    assert demultiplex(fresh, by_discr, by_peer, ("192.0.2.1", 3)) is Discard.NO_SESSION


def test_receive_packet_takes_a_decoded_packet() -> None:
    session = Session(FAST, LOCAL, 0, TOP)
    decoded = packet.decode(from_peer(DOWN, your=0))
    assert isinstance(decoded, Control)
    assert changes(session.receive_packet(decoded, 1, ttl=255))[0].new == INIT


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        SessionConfig(multiplier=0)
    with pytest.raises(ValueError):
        SessionConfig(min_rx_us=0)
    with pytest.raises(ValueError):
        Session(FAST, 0, 0)
