"""One BFD session as a sans-I/O state machine (RFC 5880; RFC 5881 single hop, 5883 multihop).

The engine never reads a clock, opens a socket or sleeps.  Every call takes the
time in integer microseconds (any monotonic origin) and returns the actions to
carry out; ``next_deadline()`` says when the engine next wants ``fire()``.
Asynchronous mode only: no Echo function (we advertise Required Min Echo RX 0),
no authentication (packets with the A bit are discarded), and we never ask for
Demand mode ourselves, but we honour a peer's.

The hot path (a periodic send, an ordinary packet received while Up) makes no
container objects: the packet is encoded into the session's own 24-byte buffer,
received packets are decoded into the session's own ``Control``, ``Send`` and
``Dropped`` actions are preallocated, and every call returns the same list,
cleared.  So the caller must finish with one call's actions (and send the
packet) before it calls into the same session again.  docs/bfd.md has the rest
of the caller's side.

Where the behaviour is a choice the RFC leaves open, or differs from keepalived
2.2.7, the comment says so; docs/bfd.md lists them together.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .packet import (
    FINAL,
    LENGTH,
    MAX_U32,
    POLL,
    PORT,
    PORT_MULTIHOP,
    TTL,
    Control,
    Diag,
    Discard,
    State,
    decode,
    pack_into,
)

__all__ = ["Action", "Control", "DetectionTimeChanged", "Diag", "Discard", "Dropped", "Send",
           "Session", "SessionConfig", "State", "StateChanged", "Stats", "demultiplex"]

SECOND_US = 1_000_000
SLOW_TX_US = SECOND_US       # 6.8.3: bfd.DesiredMinTxInterval >= 1 s while not Up

# A random source: ``rand(n)`` returns an int in [0, n), as random.Random.randrange(n) does.
Rand = Callable[[int], int]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A session's settings, in keepalived's terms (``bfd_instance``), times in microseconds.

    ``idle_tx_us`` is what we ask for while the session is not Up (slow start,
    6.8.3); below 1 s it counts as 1 s.  ``ttl`` is the TTL / hop limit we send
    (the transport sets it) and, with ``max_hops``, what we accept, as
    keepalived checks it: a packet whose TTL + max_hops < ttl is dropped;
    max_hops 255 turns the check off.  ``max_hops`` None: 0 for single hop
    (exactly TTL 255, RFC 5881 section 5) and 255 for multihop (RFC 5883 has
    no TTL rule).
    """

    min_tx_us: int = 10_000
    min_rx_us: int = 10_000
    idle_tx_us: int = SECOND_US
    multiplier: int = 5
    passive: bool = False
    multihop: bool = False
    ttl: int = TTL
    max_hops: int | None = None

    def __post_init__(self) -> None:
        for name in ("min_tx_us", "min_rx_us", "idle_tx_us"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_U32:
                raise ValueError(f"{name} {value} is not in 1..{MAX_U32} us")
        if not 1 <= self.multiplier <= 255:
            raise ValueError(f"multiplier {self.multiplier} is not in 1..255")
        if not 1 <= self.ttl <= 255:
            raise ValueError(f"ttl {self.ttl} is not in 1..255")
        if self.max_hops is not None and not 0 <= self.max_hops <= 255:
            raise ValueError(f"max_hops {self.max_hops} is not in 0..255")

    @property
    def port(self) -> int:
        """The destination UDP port: 3784 single hop, 4784 multihop."""
        return PORT_MULTIHOP if self.multihop else PORT

    @property
    def min_rx_ttl(self) -> int:
        """The lowest TTL / hop limit accepted; 0: no check."""
        hops = self.max_hops if self.max_hops is not None else (255 if self.multihop else 0)
        return 0 if hops == 255 else max(self.ttl - hops, 0)

    @property
    def slow_tx_us(self) -> int:
        return max(self.idle_tx_us, SLOW_TX_US)


# Actions ------------------------------------------------------------------

@dataclass(slots=True)
class Send:
    """Send ``packet`` (24 bytes) to the peer, now.

    The bytes live in the session's buffer: send them (or copy them) before
    calling into the session again.  One per call at most.
    """

    packet: memoryview


@dataclass(frozen=True, slots=True)
class StateChanged:
    """bfd.SessionState moved.  ``diag`` is bfd.LocalDiag after the change.

    ``remote_admin_down``: the peer signalled AdminDown (diag 3).  RFC 5882
    section 3.2: that is not a failure of the path, so a client must not act
    as if the path had failed (keepalived sends no Down event for it).
    """

    old: State
    new: State
    diag: int
    remote_admin_down: bool = False

    @property
    def failure(self) -> bool:
        """An Up session went Down because of the path (timeout or the peer saw it down)."""
        return self.old == State.UP and self.new == State.DOWN and not self.remote_admin_down


@dataclass(frozen=True, slots=True)
class DetectionTimeChanged:
    detection_time_us: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A received packet was discarded; also counted in ``Session.stats.drops``."""

    reason: Discard


Action = Send | StateChanged | DetectionTimeChanged | Dropped

DROPPED = tuple(Dropped(reason) for reason in Discard)     # preallocated: no object per drop


@dataclass(slots=True)
class Stats:
    rx: int = 0                 # packets accepted (not discarded)
    tx: int = 0                 # packets sent, Finals included
    drops: list[int] = field(default_factory=lambda: [0] * len(Discard))

    def drops_by_label(self) -> dict[str, int]:
        return {reason.label: self.drops[reason] for reason in Discard}


def _system_rand(n: int) -> int:
    return random.randrange(n)


class Session:
    """One BFD session (RFC 5880 section 6.8.1's state variables, and timers).

    ``local_discr`` (bfd.LocalDiscr) is chosen by the caller: non-zero and
    unique on this system.  ``rand`` draws the jitter; tests pass their own.
    An active session sends its first packet at ``now_us``.
    """

    __slots__ = ("config", "local_discr", "state", "local_diag", "remote_discr",
                 "remote_state", "remote_demand", "remote_min_rx_us", "remote_min_tx_us",
                 "remote_multiplier", "desired_min_tx_us", "required_min_rx_us",
                 "detection_time_us", "polling", "stats", "_rand", "_tx_in_use",
                 "_rx_in_use", "_remote_tx_for_detection", "_poll_tx", "_poll_rx", "_last_rx",
                 "_last_tx", "_next_tx", "_scheduled_interval", "_urgent", "_rx_pkt",
                 "_tx_buf", "_send", "_out")

    def __init__(self, config: SessionConfig, local_discr: int, now_us: int,
                 rand: Rand = _system_rand) -> None:
        if not 0 < local_discr <= MAX_U32:
            raise ValueError(f"local discriminator {local_discr} is not in 1..{MAX_U32}")
        self.config = config
        self.local_discr = local_discr
        self.state = State.DOWN
        self.local_diag: int = Diag.NONE
        self.stats = Stats()
        self._rand = rand
        # What we learnt from the peer (6.8.1 initial values).
        self.remote_discr = 0
        self.remote_state = State.DOWN
        self.remote_demand = False
        self.remote_min_rx_us = 1
        self.remote_min_tx_us = 0           # the last Desired Min TX received
        self.remote_multiplier = 0          # 0: nothing received yet
        # What we advertise, and what is in force while a Poll Sequence runs (6.8.3).
        self.desired_min_tx_us = config.slow_tx_us
        self.required_min_rx_us = config.min_rx_us
        self._tx_in_use = self.desired_min_tx_us
        self._rx_in_use = self.required_min_rx_us
        self._remote_tx_for_detection = 0
        self.polling = False
        self._poll_tx = self._poll_rx = 0   # the values the running Poll carries
        self.detection_time_us = 0          # 0: not known yet
        # Timers.
        self._last_rx: int | None = None    # the detection timer runs from here
        self._last_tx: int | None = None    # the last packet sent other than a Final
        self._next_tx: int | None = now_us if self._periodic() else None
        self._scheduled_interval = self.tx_interval_us
        self._urgent = False                # a state change to tell the peer at once
        # Preallocated for the hot path.
        self._rx_pkt = Control()
        self._tx_buf = bytearray(LENGTH)
        self._send = Send(memoryview(self._tx_buf))
        self._out: list[Action] = []

    # -- what the caller reads ---------------------------------------------

    @property
    def tx_interval_us(self) -> int:
        """The negotiated transmit interval before jitter (6.8.7); 0: no periodic sending."""
        if self.remote_min_rx_us == 0:
            return 0
        return max(self._tx_in_use, self.remote_min_rx_us)

    @property
    def next_tx_us(self) -> int | None:
        """When the next periodic packet is due; None: none is (passive, Demand, ...)."""
        return self._next_tx

    def next_deadline(self) -> int | None:
        """When ``fire()`` is next due (microseconds); None: nothing is."""
        tx = self._next_tx
        if self._last_rx is None:
            return tx
        expiry = self._last_rx + self.detection_time_us
        return expiry if tx is None or expiry < tx else tx

    # -- events ----------------------------------------------------------

    def fire(self, now_us: int) -> list[Action]:
        """Run the timers due at ``now_us``: the detection time, the next periodic packet.

        The caller should drain its socket into ``receive()`` first: a packet
        already queued must not lose the race against the detection timer.
        """
        out = self._begin()
        if self._last_rx is not None and now_us >= self._last_rx + self.detection_time_us:
            self._detection_expired()
        self._finish(now_us, final=False)
        return out

    def receive(self, data: bytes | bytearray | memoryview, now_us: int,
                ttl: int | None = None) -> list[Action]:
        """A UDP payload from the peer; ``ttl`` the received TTL / hop limit if known."""
        out = self._begin()
        if ttl is not None and ttl < self.config.min_rx_ttl:
            self._drop(Discard.TTL)
            return out
        pkt = decode(data, self._rx_pkt)
        if isinstance(pkt, Discard):
            self._drop(pkt)
            return out
        self._accept(pkt, now_us)
        return out

    def receive_packet(self, pkt: Control, now_us: int, ttl: int | None = None) -> list[Action]:
        """A packet the caller has decoded already (with ``packet.decode``, to demultiplex)."""
        out = self._begin()
        if ttl is not None and ttl < self.config.min_rx_ttl:
            self._drop(Discard.TTL)
            return out
        self._accept(pkt, now_us)
        return out

    def set_timers(self, min_tx_us: int, min_rx_us: int, multiplier: int, now_us: int,
                   idle_tx_us: int | None = None) -> list[Action]:
        """New timers (a reload).  A change of what we advertise starts a Poll Sequence.

        An increased transmit interval takes effect after the Final, a reduced
        receive interval shortens the detection time after the Final (6.8.3).
        The multiplier is sent from the next packet on; 6.8.3 asks no Poll for it.
        """
        out = self._begin()
        idle = self.config.idle_tx_us if idle_tx_us is None else idle_tx_us
        self.config = replace(self.config, min_tx_us=min_tx_us, min_rx_us=min_rx_us,
                              multiplier=multiplier, idle_tx_us=idle)
        self._advertise()
        self._finish(now_us, final=False)
        return out

    def admin_down(self, now_us: int, diag: int = Diag.ADMIN_DOWN) -> list[Action]:
        """Hold the session AdminDown (6.8.16); Path Down (5) when told the path failed.

        We go on sending (AdminDown, at the slow rate) so that the peer learns
        it within its detection time and keeps its session (6.8.16, 6.8.18).
        """
        out = self._begin()
        if self.state != State.ADMIN_DOWN:
            self._set_state(State.ADMIN_DOWN, diag)
        self._finish(now_us, final=False)
        return out

    def admin_up(self, now_us: int) -> list[Action]:
        """Leave AdminDown for Down (6.8.16); the diagnostic stays until the session is Up."""
        out = self._begin()
        if self.state == State.ADMIN_DOWN:
            self._set_state(State.DOWN)
        self._finish(now_us, final=False)
        return out

    # -- reception (6.8.6) ---------------------------------------------------

    def _accept(self, pkt: Control, now: int) -> None:
        # decode() applied the rules that need no session; these need ours.
        if pkt.your_discr != 0 and pkt.your_discr != self.local_discr:
            self._drop(Discard.YOUR_DISCR_UNKNOWN)
            return
        if pkt.auth:
            self._drop(Discard.AUTH)
            return
        self._take_remote(pkt, now)
        if self.state == State.ADMIN_DOWN:
            # 6.8.6 discards here, after the remote's values are taken, so no Final either.
            self._drop(Discard.ADMIN_DOWN)
            self._finish(now, final=False)
            return
        self.stats.rx += 1
        self._advance(pkt.state)
        self._finish(now, final=pkt.poll)

    def _take_remote(self, pkt: Control, now: int) -> None:
        self.remote_discr = pkt.my_discr
        self.remote_state = pkt.state
        self.remote_demand = pkt.demand
        self.remote_min_rx_us = pkt.required_min_rx_us
        self.remote_min_tx_us = pkt.desired_min_tx_us
        self.remote_multiplier = pkt.detect_mult
        # 6.8.4 takes the last Desired Min TX received.  But a peer that lowers it
        # in a Poll may keep sending at the old rate until it has our Final (FRR
        # does, on reaching Up); should that Final be lost, the shorter detection
        # time would expire between its packets.  So a decrease carried with P
        # counts only once the peer's Poll is over (a packet without P).
        if not pkt.poll or pkt.desired_min_tx_us > self._remote_tx_for_detection:
            self._remote_tx_for_detection = pkt.desired_min_tx_us
        if pkt.final and self.polling:
            self._poll_done()
        # Every packet past the checks refreshes the timer, also one that AdminDown
        # discards: it is valid, so bfd.RemoteDiscr must not expire (6.8.1).
        self._last_rx = now

    def _advance(self, received: State) -> None:
        """The state machine of 6.2 / 6.8.6."""
        state = self.state
        if received == State.ADMIN_DOWN:
            if state != State.DOWN:
                self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN, remote_admin_down=True)
        elif state == State.DOWN:
            if received == State.DOWN:
                self._set_state(State.INIT)
            elif received == State.INIT:
                self._set_state(State.UP, Diag.NONE)
        elif state == State.INIT:
            if received != State.DOWN:
                self._set_state(State.UP, Diag.NONE)
        elif received == State.DOWN:        # Up
            self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN)

    def _detection_expired(self) -> None:
        """6.8.4: Init or Up go Down; in every state bfd.RemoteDiscr is forgotten (6.8.1)."""
        self._last_rx = None
        self.remote_discr = 0
        # Not in the RFC: what we knew of the peer's state is stale; Down keeps
        # the visible state honest and Demand mode off.
        self.remote_state = State.DOWN
        self.remote_demand = False
        if self.state in (State.INIT, State.UP):
            self._set_state(State.DOWN, Diag.CONTROL_DETECTION_EXPIRED)

    def _set_state(self, new: State, diag: int | None = None,
                   remote_admin_down: bool = False) -> None:
        old = self.state
        self.state = new
        if diag is not None:
            self.local_diag = diag
        self._out.append(StateChanged(old, new, self.local_diag, remote_admin_down))
        # Tell the peer at once rather than at the next periodic packet: the
        # three-way handshake would otherwise take up to a slow interval (1 s) a step.
        self._urgent = True
        self._advertise()

    # -- timer negotiation (6.8.2, 6.8.3, 6.5) --------------------------------

    def _advertise(self) -> None:
        """Work out what we advertise after a change of state or of configuration."""
        cfg = self.config
        up = self.state == State.UP
        desired = cfg.min_tx_us if up else cfg.slow_tx_us
        required = cfg.min_rx_us
        # While Up, a slower transmit rate waits for the Final and a faster
        # receive rate (a shorter detection time) too; anything else is safe at once.
        if not up or desired < self._tx_in_use:
            self._tx_in_use = desired
        if not up or required > self._rx_in_use:
            self._rx_in_use = required
        if desired == self.desired_min_tx_us and required == self.required_min_rx_us:
            return
        self.desired_min_tx_us = desired
        self.required_min_rx_us = required
        if not self.polling:
            self._start_poll()
        # else: the running Poll may be answered for the older values; the next
        # one starts from _poll_done() with these.

    def _start_poll(self) -> None:
        self.polling = True
        self._poll_tx = self.desired_min_tx_us
        self._poll_rx = self.required_min_rx_us

    def _poll_done(self) -> None:
        """The Final came: the peer knows the values the Poll carried; apply what waited."""
        self.polling = False
        self._tx_in_use = max(self._tx_in_use, min(self.desired_min_tx_us, self._poll_tx))
        self._rx_in_use = min(self._rx_in_use, max(self.required_min_rx_us, self._poll_rx))
        if (self._poll_tx, self._poll_rx) != (self.desired_min_tx_us, self.required_min_rx_us):
            self._start_poll()

    # -- transmission (6.8.7) --------------------------------------------------

    def _may_send(self) -> bool:
        """A passive session says nothing until the peer has (6.8.7)."""
        return self.remote_discr != 0 or not self.config.passive

    def _periodic(self) -> bool:
        if self.remote_min_rx_us == 0 or not self._may_send():
            return False
        remote_demand = (self.remote_demand and self.state == State.UP
                         and self.remote_state == State.UP)
        return not remote_demand or self.polling

    def _jittered(self) -> int:
        """6.8.7: 75-100 % of the interval, 75-90 % when our Detect Mult is 1."""
        interval = self.tx_interval_us
        low = -(-interval * 3 // 4)                 # rounded up: never under 75 %
        high = interval * 9 // 10 if self.config.multiplier == 1 else interval
        high = max(high, low)
        return low + self._rand(high - low + 1)

    def _finish(self, now: int, final: bool) -> None:
        """Bring the timers up to date and send what is due: a Final, a state change, a tick."""
        # A Final carries a new state to the peer as well as a state-change packet would.
        send_now = self._urgent and not final
        self._urgent = False
        periodic = self._refresh_timers(now, send_now)
        if not self._may_send():
            return
        if final:
            # At once and outside the periodic timer; P is clear even while our
            # own Poll runs (6.8.6), which goes on with the next periodic packet.
            self._transmit(FINAL)
        elif send_now or (self._next_tx is not None and now >= self._next_tx):
            self._transmit(POLL if self.polling else 0)
            self._last_tx = now
            self._next_tx = now + self._jittered() if periodic else None

    def _refresh_timers(self, now: int, send_now: bool) -> bool:
        """Reschedule after whatever changed; says whether periodic sending is on."""
        interval = self.tx_interval_us
        periodic = self._periodic()
        if not periodic:
            self._next_tx = None
        elif self._next_tx is None:
            self._next_tx = now                     # sending resumes (Demand off, Poll, ...)
        elif interval != self._scheduled_interval and not send_now:
            # 6.8.3: a shorter interval counts from the previous packet (at once if
            # that is past already); a longer one must not be undercut either.
            last = self._last_tx
            self._next_tx = now if last is None else max(now, last + self._jittered())
        self._scheduled_interval = interval
        detection = self.remote_multiplier * max(self._rx_in_use, self._remote_tx_for_detection)
        if detection != self.detection_time_us:
            self.detection_time_us = detection
            self._out.append(DetectionTimeChanged(detection))
        return periodic

    def _transmit(self, flags: int) -> None:
        pack_into(self._tx_buf, 0, self.state, self.local_diag, flags, self.config.multiplier,
                  self.local_discr, self.remote_discr, self.desired_min_tx_us,
                  self.required_min_rx_us, 0)
        self.stats.tx += 1
        self._out.append(self._send)

    # -- plumbing --------------------------------------------------------------

    def _begin(self) -> list[Action]:
        self._out.clear()
        return self._out

    def _drop(self, reason: Discard) -> None:
        self.stats.drops[reason] += 1
        self._out.append(DROPPED[reason])


S = TypeVar("S")
K = TypeVar("K")


def demultiplex(pkt: Control, by_discr: Mapping[int, S], by_peer: Mapping[K, S],
                peer: K) -> S | Discard:
    """Find the session a decoded packet belongs to (6.8.6, RFC 5881 section 3).

    A non-zero Your Discriminator selects by our discriminator; zero selects by
    ``peer``, the caller's key: for single hop the source address and the
    interface, for multihop (RFC 5883) the source and destination addresses.
    """
    if pkt.your_discr:
        found = by_discr.get(pkt.your_discr)
        return Discard.YOUR_DISCR_UNKNOWN if found is None else found
    found = by_peer.get(peer)
    return Discard.NO_SESSION if found is None else found
