"""The BFD process's sessions: each engine ``Session`` on its sockets, their timers,
what they publish, and a reload as a difference.

No clock, no loop: every call takes ``now`` (integer microseconds, monotonic),
and the caller (``runner.py``) decides when to call.  The caller must:

- ``drain()`` every receiver before ``fire_due()`` whenever a timer is due, so
  that a packet already queued is never beaten by the detection timer of a late
  wake-up (docs/bfd.md, "What the caller must do");
- sleep until ``next_deadline()``, which changes after every call;
- publish ``take_changes()`` (the ``bfd.session`` items that changed).

The hot path (``drain`` and ``fire_due`` with nothing changing state) makes no
object of its own: the engine reuses its buffers and actions, the receive
buffer is made once, packets are decoded into one ``Control``.  The heap of
deadlines gets a tuple per rescheduling; tuples die young and, with the
collector paused (runner.py), cost a reference count each.
"""

from __future__ import annotations

import heapq
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .engine import (
    DetectionTimeChanged,
    Diag,
    Discard,
    Send,
    Session,
    State,
    StateChanged,
)
from .packet import PORT, PORT_MULTIHOP, Control, decode
from .spec import BfdConfig, SessionSpec
from .transport import Receiver, Sender

log = logging.getLogger("keepalived_py")

__all__ = ["DIAG_TEXT", "STATE_NAMES", "Entry", "ReloadReport", "SessionTable", "TransportError"]

# keepalived's words (bfd.h BFD_STATE_STR, BFD_DIAG_STR): the log and the data dump
STATE_NAMES = {State.ADMIN_DOWN: "AdminDown", State.DOWN: "Down", State.INIT: "Init",
               State.UP: "Up"}
DIAG_TEXT = {Diag.NONE: "No Diagnostic",
             Diag.CONTROL_DETECTION_EXPIRED: "Control Detection Time Expired",
             Diag.ECHO_FAILED: "Echo Function Failed",
             Diag.NEIGHBOR_DOWN: "Neighbor Signaled Session Down",
             Diag.FORWARDING_RESET: "Forwarding Plane Reset",
             Diag.PATH_DOWN: "Path Down",
             Diag.CONCATENATED_PATH_DOWN: "Concatenated Path Down",
             Diag.ADMIN_DOWN: "Administratively Down",
             Diag.REVERSE_CONCATENATED_PATH_DOWN: "Reverse Concatenated Path Down"}

REOPEN_EVERY_US = 1_000_000     # a session whose socket cannot open retries this often
DRAIN_LIMIT = 1024              # datagrams per receiver per drain: timers get their turn
RECENT_DISCR_US = 300_000_000   # a deleted session's discriminator is not reused for 5 min
# AdminDown for a session a reload removes: sent at once and twice more at its
# interval, so that one lost packet does not make the peer see a failure
RETIRE_SENDS = 3
LATENESS_BUCKETS_US = (100, 500, 1_000, 2_000, 5_000, 10_000)

Rand = Callable[[int], int]


def diag_label(diag: int) -> str:
    try:
        return Diag(diag).name.lower()
    except ValueError:
        return str(diag)


class TransportError(OSError):
    """A listening socket cannot be opened (the port is taken, the family is off)."""


class Entry:
    """A configured session: its spec, its engine, its socket and what we keep about it."""

    __slots__ = ("spec", "session", "sender", "seq", "sched", "removed", "retry_at",
                 "last_rx_us", "remote_diag", "remote_admin_down", "since", "transitions",
                 "failures", "last_expiry", "last_tx_us", "rx_gap_max_us", "tx_gap_max_us")

    def __init__(self, spec: SessionSpec, session: Session, sender: Sender | None,
                 seq: int, wall: float) -> None:
        self.spec = spec
        self.session = session
        self.sender = sender
        self.seq = seq                          # tie-breaker in the heap
        self.sched: int | None = None           # the deadline the heap holds for it
        self.removed = False
        self.retry_at = 0
        self.last_rx_us = 0                     # monotonic, of the last accepted packet
        self.last_tx_us = 0                     # ... of the last packet sent
        # the longest silence each way while Up (since it last came Up): what the
        # detection time is measured against, on the wire and in our own loop
        self.rx_gap_max_us = 0
        self.tx_gap_max_us = 0
        self.remote_diag = 0
        self.remote_admin_down = False
        self.since = wall                       # wall clock of the last state change
        self.transitions = 0
        self.failures = 0
        self.last_expiry: dict[str, Any] | None = None


@dataclass
class _Retiring:
    name: str
    sender: Sender
    data: bytes
    next_at: int
    every: int
    left: int


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class SessionTable:
    def __init__(self, *, rand: Rand = random.randrange,
                 discriminators: Callable[[], int] = lambda: secrets.randbits(32),
                 listen: dict[int, str] | None = None,
                 ports: tuple[int, int] = (PORT, PORT_MULTIHOP),
                 wall: Callable[[], float] = time.time) -> None:
        self._rand = rand
        self._new_discriminator = discriminators
        self._listen = listen or {}             # family -> address (tests); else wildcard
        self._ports = ports
        self._wall = wall
        self.entries: dict[str, Entry] = {}
        self._by_discr: tuple[dict[int, Entry], dict[int, Entry]] = ({}, {})  # by multihop
        self._by_peer: tuple[dict[tuple[str, str | None], Entry],
                             dict[tuple[str, str | None], Entry]] = ({}, {})
        self.receivers: dict[tuple[int, bool], Receiver] = {}
        self._heap: list[tuple[int, int, Entry]] = []
        self._seq = 0
        self._changed: set[str] = set()
        self._retiring: list[_Retiring] = []
        self._recent: dict[int, int] = {}       # discriminator -> when its session went
        self._pkt = Control()
        # drops that belong to no session: the decode rules, unknown discriminators,
        # no session for a zero one; and a known discriminator from another address
        self.drops = [0] * len(Discard)
        self.wrong_source = 0
        self.receive_errors = 0
        self.lateness = [0] * (len(LATENESS_BUCKETS_US) + 1)
        self.late_max_us = 0

    # -- configuration -----------------------------------------------------------

    def apply(self, config: BfdConfig, now: int) -> ReloadReport:
        """Run ``config``: at start, or a reload as a difference.  An unchanged session
        keeps its state (it never flaps); changed timers go through the engine's
        ``set_timers`` (a Poll Sequence); a removed session says AdminDown first.
        ``TransportError`` before anything changed when a socket cannot open."""
        report = ReloadReport()
        new = config.by_name()
        needed = {(s.family, s.multihop) for s in config.sessions}
        self._open_receivers(needed)
        for name, entry in list(self.entries.items()):
            spec = new.get(name)
            if spec is None or spec.path != entry.spec.path:
                self._remove(entry, now)
                report.removed.append(name)
        for name, spec in new.items():
            entry = self.entries.get(name)
            if entry is None:
                self._add(spec, now)
                report.added.append(name)
            elif spec == entry.spec:
                report.unchanged.append(name)
            else:
                self._change(entry, spec, now)
                report.changed.append(name)
        for key in [k for k in self.receivers if k not in needed]:
            self.receivers.pop(key).close()
        cutoff = now - RECENT_DISCR_US
        self._recent = {d: t for d, t in self._recent.items() if t > cutoff}
        return report

    def _open_receivers(self, needed: set[tuple[int, bool]]) -> None:
        opened: list[tuple[int, bool]] = []
        for family, multihop in sorted(needed - self.receivers.keys()):
            port = self._ports[1] if multihop else self._ports[0]
            try:
                self.receivers[(family, multihop)] = Receiver(
                    family, port, multihop, self._listen.get(family))
            except OSError as err:
                for key in opened:              # all or nothing
                    self.receivers.pop(key).close()
                fam = "IPv6" if family == socket.AF_INET6 else "IPv4"
                raise TransportError(err.errno, f"cannot listen on UDP port {port} "
                                                f"({fam}): {err.strerror}") from None
            opened.append((family, multihop))

    def _discriminator(self) -> int:
        while True:
            discr = self._new_discriminator() & 0xFFFF_FFFF
            if discr and discr not in self._recent and all(
                    discr not in table for table in self._by_discr):
                return discr

    def _add(self, spec: SessionSpec, now: int) -> None:
        session = Session(spec.engine_config(), self._discriminator(), now, rand=self._rand)
        self._seq += 1
        entry = Entry(spec, session, None, self._seq, self._wall())
        self.entries[spec.name] = entry
        self._by_discr[spec.multihop][session.local_discr] = entry
        self._by_peer[spec.multihop][(spec.neighbor, spec.source)] = entry
        self._open_sender(entry, now)
        self._changed.add(spec.name)
        self._schedule(entry)

    def _open_sender(self, entry: Entry, now: int) -> None:
        spec = entry.spec
        try:
            port = self._ports[1] if spec.multihop else self._ports[0]
            entry.sender = Sender(spec.family, spec.neighbor, port, spec.source, spec.ttl,
                                  rand=self._rand)
        except OSError as err:
            if entry.session.state != State.ADMIN_DOWN:
                log.error("(%s) cannot open its socket (%s): AdminDown until it can",
                          spec.name, err.strerror or err)
                self._handle(entry, entry.session.admin_down(now), now)
            entry.retry_at = now + REOPEN_EVERY_US
            return
        if entry.session.state == State.ADMIN_DOWN:
            log.info("(%s) its socket is open: leaving AdminDown", spec.name)
            self._handle(entry, entry.session.admin_up(now), now)

    def _change(self, entry: Entry, spec: SessionSpec, now: int) -> None:
        old, session = entry.spec, entry.session
        entry.spec = spec
        if (old.min_tx_us, old.min_rx_us, old.multiplier, old.idle_tx_us) != \
                (spec.min_tx_us, spec.min_rx_us, spec.multiplier, spec.idle_tx_us):
            log.info("(%s) new timers: min_tx %d us, min_rx %d us, multiplier %d",
                     spec.name, spec.min_tx_us, spec.min_rx_us, spec.multiplier)
            self._handle(entry, session.set_timers(spec.min_tx_us, spec.min_rx_us,
                                                   spec.multiplier, now,
                                                   idle_tx_us=spec.idle_tx_us), now)
        if (old.passive, old.ttl, old.max_hops) != (spec.passive, spec.ttl, spec.max_hops):
            # the engine reads these from its config as it goes: nothing to negotiate
            session.config = replace(session.config, passive=spec.passive, ttl=spec.ttl,
                                     max_hops=spec.max_hops)
            if old.ttl != spec.ttl and entry.sender is not None:
                entry.sender.set_ttl(spec.ttl)
            # fire() brings its timers up to date (passive on or off); it expires
            # nothing that is not due
            self._handle(entry, session.fire(now), now)
        self._changed.add(spec.name)            # weight, vrrp / checker: consumers see them
        self._schedule(entry)

    def _remove(self, entry: Entry, now: int) -> None:
        name = entry.spec.name
        entry.removed = True
        del self.entries[name]
        discr = entry.session.local_discr
        self._by_discr[entry.spec.multihop].pop(discr, None)
        self._by_peer[entry.spec.multihop].pop((entry.spec.neighbor, entry.spec.source), None)
        self._recent[discr] = now
        self._changed.add(name)                 # published as gone (null)
        sender = entry.sender
        if sender is None:
            return
        was_up = entry.session.state == State.UP
        every = max(entry.session.tx_interval_us, 1_000)
        data = None
        for action in entry.session.admin_down(now):
            if action.__class__ is Send:
                data = bytes(action.packet)
        log.info("(%s) removed: AdminDown sent to %s", name, entry.spec.neighbor)
        if data is None:
            sender.close()
            return
        sender.send(data)
        if was_up:      # the peer runs a detection timer only while Up
            self._retiring.append(_Retiring(name, sender, data, now + every, every,
                                            RETIRE_SENDS - 1))
        else:
            sender.close()

    # -- timers ------------------------------------------------------------------

    def _schedule(self, entry: Entry) -> None:
        deadline = entry.session.next_deadline()
        if entry.sender is None and (deadline is None or entry.retry_at < deadline):
            deadline = entry.retry_at
        if deadline != entry.sched:
            entry.sched = deadline
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, entry.seq, entry))

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap and (heap[0][2].removed or heap[0][2].sched != heap[0][0]):
            heapq.heappop(heap)                 # stale: rescheduled or removed since
        deadline = heap[0][0] if heap else None
        for retiring in self._retiring:
            if deadline is None or retiring.next_at < deadline:
                deadline = retiring.next_at
        return deadline

    def due(self, now: int) -> bool:
        """Whether a timer is due; if so, how late ``now`` is is counted: the loop's
        wake-up lateness, what the detection time has to absorb.  (Counted here, not
        per timer fired: a packet drained first may send what was due, and the
        timer it replaces is then never fired.)"""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return False
        late = now - deadline
        if late > self.late_max_us:
            self.late_max_us = late
        bucket = 0
        for limit in LATENESS_BUCKETS_US:
            if late < limit:
                break
            bucket += 1
        self.lateness[bucket] += 1
        return True

    def fire_due(self, now: int) -> None:
        """Run every timer due at ``now``.  Drain the receivers first."""
        heap = self._heap
        budget = 2 * len(self.entries) + 8      # a guard: never spin on a deadline
        while heap and heap[0][0] <= now and budget:
            deadline, _seq, entry = heapq.heappop(heap)
            if entry.removed or entry.sched != deadline:
                continue
            budget -= 1
            entry.sched = None
            if entry.sender is None and now >= entry.retry_at:
                self._open_sender(entry, now)
            session = entry.session
            detection = session.detection_time_us
            actions = session.fire(now)
            if actions:
                self._handle(entry, actions, now, detection)
            self._schedule(entry)
        if self._retiring:
            self._fire_retiring(now)

    def _fire_retiring(self, now: int) -> None:
        for retiring in list(self._retiring):
            if retiring.next_at > now:
                continue
            retiring.sender.send(retiring.data)
            retiring.left -= 1
            retiring.next_at = now + retiring.every
            if retiring.left <= 0:
                retiring.sender.close()
                self._retiring.remove(retiring)

    # -- reception ---------------------------------------------------------------

    def drain(self, rx: Receiver, now: int) -> None:
        """Every datagram queued on ``rx``, to its session (RFC 5880 6.8.6 demultiplexing:
        by Your Discriminator, else by source, and destination when the session has a
        source address, as keepalived's find_bfd_by_addr)."""
        pkt = self._pkt
        by_discr = self._by_discr[rx.multihop]
        view = rx.view
        for _ in range(DRAIN_LIMIT):
            try:
                if not rx.receive():
                    return
            except OSError:
                self.receive_errors += 1
                return
            result = decode(view[:rx.nbytes], pkt)
            if result is not pkt:
                self.drops[result] += 1         # a Discard: decode() fills pkt only when valid
                continue
            if pkt.your_discr:
                entry = by_discr.get(pkt.your_discr)
                if entry is None:
                    self.drops[Discard.YOUR_DISCR_UNKNOWN] += 1
                    continue
                if entry.spec.neighbor != rx.source:
                    self.wrong_source += 1
                    continue
            else:
                by_peer = self._by_peer[rx.multihop]
                entry = by_peer.get((rx.source, rx.destination())) \
                    or by_peer.get((rx.source, None))
                if entry is None:
                    self.drops[Discard.NO_SESSION] += 1
                    continue
            session = entry.session
            accepted = session.stats.rx
            actions = session.receive_packet(pkt, now, rx.ttl)
            if session.stats.rx != accepted:
                if session.state == State.UP and entry.last_rx_us \
                        and now - entry.last_rx_us > entry.rx_gap_max_us:
                    entry.rx_gap_max_us = now - entry.last_rx_us
                entry.last_rx_us = now
                entry.remote_diag = pkt.diag
            if actions:
                self._handle(entry, actions, now)
            self._schedule(entry)

    def drain_all(self, now: int) -> None:
        for rx in self.receivers.values():
            self.drain(rx, now)

    # -- actions -----------------------------------------------------------------

    def _handle(self, entry: Entry, actions: list[Any], now: int, detection: int = 0) -> None:
        for action in actions:
            cls = action.__class__
            if cls is Send:
                if entry.sender is not None:
                    entry.sender.send(action.packet)
                if entry.session.state == State.UP and entry.last_tx_us \
                        and now - entry.last_tx_us > entry.tx_gap_max_us:
                    entry.tx_gap_max_us = now - entry.last_tx_us
                entry.last_tx_us = now
            elif cls is StateChanged:
                self._state_changed(entry, action, now, detection)
            elif cls is DetectionTimeChanged:
                self._changed.add(entry.spec.name)
            # Dropped: the engine counts it in its stats

    def _state_changed(self, entry: Entry, change: StateChanged, now: int,
                       detection: int) -> None:
        name = entry.spec.name
        entry.since = self._wall()
        entry.transitions += 1
        entry.remote_admin_down = change.remote_admin_down
        if change.failure:
            entry.failures += 1
        if change.new == State.UP:
            entry.rx_gap_max_us = entry.tx_gap_max_us = 0
        if change.new == State.DOWN and change.old in (State.INIT, State.UP) \
                and change.diag == Diag.CONTROL_DETECTION_EXPIRED and entry.last_rx_us:
            silent = now - entry.last_rx_us
            entry.last_expiry = {"at": entry.since, "silent_us": silent,
                                 "detection_time_us": detection,
                                 "overdue_us": silent - detection}
            if change.old == State.UP:
                log.warning("(%s) Expired after %d ms (%d usec overdue)", name,
                            silent // 1000, silent - detection)
        new = STATE_NAMES[change.new]
        if change.new == State.DOWN:
            log.warning("(%s) Entering %s state (Local diagnostic - %s, Remote diagnostic - "
                        "%s)", name, new, DIAG_TEXT.get(change.diag, "Unknown"),
                        DIAG_TEXT.get(entry.remote_diag, "Unknown"))
        elif change.new == State.ADMIN_DOWN:
            log.warning("(%s) Entering %s state", name, new)
        else:
            log.info("(%s) Entering %s state", name, new)
        self._changed.add(name)

    # -- what others see ---------------------------------------------------------

    def item(self, entry: Entry) -> dict[str, Any]:
        """The ``bfd.session`` value (core/events.py) of a session."""
        session = entry.session
        return {"state": STATE_NAMES[session.state], "diag": diag_label(session.local_diag),
                "remote_admin_down": entry.remote_admin_down,
                "tx_interval_us": session.tx_interval_us,
                "remote_tx_interval_us": _remote_tx(session),
                "detection_time_us": session.detection_time_us,
                "vrrp": entry.spec.to_vrrp, "checker": entry.spec.to_checker}

    def items(self) -> dict[str, Any]:
        return {name: self.item(entry) for name, entry in self.entries.items()}

    def take_changes(self) -> dict[str, Any]:
        """The items that changed since the last call (None: the session is gone)."""
        if not self._changed:
            return {}
        out = {}
        for name in self._changed:
            entry = self.entries.get(name)
            out[name] = None if entry is None else self.item(entry)
        self._changed.clear()
        return out

    def shutdown(self, now: int, sleep: Callable[[float], None] = time.sleep) -> None:
        """Stopping: AdminDown to every peer (three times, 5 ms apart, against a loss),
        so that it does not take our going away for a failure of the path (RFC 5880
        6.8.16; keepalived 2.2.7 just goes silent); then every socket closed."""
        packets = []
        for entry in self.entries.values():
            entry.removed = True
            for action in entry.session.admin_down(now):
                if action.__class__ is Send and entry.sender is not None:
                    packets.append((entry.sender, bytes(action.packet)))
        for attempt in range(RETIRE_SENDS if packets else 0):
            if attempt:
                sleep(0.005)
            for sender, data in packets:
                sender.send(data)
        for entry in self.entries.values():
            if entry.sender is not None:
                entry.sender.close()
        for retiring in self._retiring:
            retiring.sender.close()
        for rx in self.receivers.values():
            rx.close()
        self.entries.clear()
        self._retiring.clear()
        self.receivers.clear()
        self._heap.clear()

    def snapshot(self, now: int) -> dict[str, Any]:
        wall = self._wall()
        sessions = []
        for entry in self.entries.values():
            s = entry.session
            sender = entry.sender
            sessions.append({
                **entry.spec.describe(),
                "state": STATE_NAMES[s.state], "remote_state": STATE_NAMES[s.remote_state],
                "diag": diag_label(s.local_diag), "remote_diag": diag_label(entry.remote_diag),
                "remote_admin_down": entry.remote_admin_down,
                "local_discr": s.local_discr, "remote_discr": s.remote_discr,
                "desired_min_tx_us": s.desired_min_tx_us,
                "required_min_rx_us": s.required_min_rx_us,
                "remote_min_tx_us": s.remote_min_tx_us, "remote_min_rx_us": s.remote_min_rx_us,
                "remote_multiplier": s.remote_multiplier, "remote_demand": s.remote_demand,
                "tx_interval_us": s.tx_interval_us, "remote_tx_interval_us": _remote_tx(s),
                "detection_time_us": s.detection_time_us,
                "remote_detection_time_us": s.config.multiplier * s.tx_interval_us,
                "polling": s.polling,
                "source_port": sender.source_port if sender is not None else None,
                "packets_in": s.stats.rx, "packets_out": s.stats.tx,
                "send_errors": sender.errors if sender is not None else 0,
                "drops": s.stats.drops_by_label(),
                "since": entry.since, "transitions": entry.transitions,
                "failures": entry.failures,
                "last_rx": wall - (now - entry.last_rx_us) / 1e6 if entry.last_rx_us else None,
                "rx_gap_max_us": entry.rx_gap_max_us, "tx_gap_max_us": entry.tx_gap_max_us,
                "last_expiry": entry.last_expiry})
        drops = {reason.label: self.drops[reason] for reason in Discard}
        drops["wrong_source"] = self.wrong_source
        return {"sessions": sessions, "drops": drops, "receive_errors": self.receive_errors,
                "listening": [{"family": "inet6" if family == socket.AF_INET6 else "inet",
                               "port": rx.port, "multihop": multihop}
                              for (family, multihop), rx in sorted(self.receivers.items())],
                "timers": {"late_max_us": self.late_max_us,
                           "late_buckets_us": list(LATENESS_BUCKETS_US),
                           "late_counts": list(self.lateness)}}


def _remote_tx(session: Session) -> int:
    """The interval the peer sends at, as keepalived's remote_tx_intv (0: not known)."""
    if not session.remote_multiplier:
        return 0
    return max(session.required_min_rx_us, session.remote_min_tx_us)
