"""One VRRP instance as a sans-I/O state machine (RFC 5798, RFC 3768).

The engine never reads a clock, opens a socket or sleeps.  The caller passes
the time in (seconds, any monotonic origin) with every event and carries out
the actions it returns; ``deadline`` says when the engine next wants
``tick()``.  The semantics follow keepalived 2.2.7 (vrrp.c and
vrrp_scheduler.c), including its extensions to the RFC: skew time from the
*effective* priority, ``down_timer_adverts``, ``preempt_delay``,
``higher_prio_send_advert``, ``lower_prio_no_advert`` and the gratuitous ARP
rounds.  Where it differs on purpose, the comment says so.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

from . import packet

IPAddress = IPv4Address | IPv6Address

PRIO_OWNER = 255
PRIO_STOP = 0
TTL = 255
US = 1_000_000          # keepalived keeps times in microseconds; so do the timer sums here


class State(IntEnum):
    """Numbered as in keepalived's JSON dump and SNMP."""

    INIT = 0
    BACKUP = 1
    MASTER = 2
    FAULT = 3


@dataclass(frozen=True)
class Peer:
    address: IPAddress
    min_ttl: int = 0
    max_ttl: int = 255


@dataclass(frozen=True)
class InstanceConfig:
    name: str
    vrid: int
    family: int = 4                          # 4 or 6
    version: int = 2
    priority: int = 100
    advert_int_us: int = US
    initial_master: bool = False             # ``state MASTER``
    addresses: tuple[IPAddress, ...] = ()    # the VIPs carried in adverts
    source: IPAddress | None = None          # our advert source (to break equal-priority ties)
    peers: tuple[Peer, ...] = ()             # unicast when not empty
    check_unicast_src: bool = False
    auth_type: int = 0                       # v2: 0 none, 1 PASS, 2 AH
    auth_pass: bytes = b""                   # NUL-padded to 8 bytes
    # VRRPv3 unicast over IPv4: checksum with 224.0.0.18 in the pseudo-header as
    # keepalived before 2.0.x did.  None: switch to it when a peer uses it;
    # "config": always; "never": never.
    old_unicast_checksum: str | None = None
    nopreempt: bool = False
    preempt_delay_us: int = 0
    skip_check_adv_addr: bool = False
    higher_prio_send_advert: bool = False    # shown as configured; we always do it (_master_rx)
    lower_prio_no_advert: bool = False
    down_timer_adverts: int = 3
    garp_repeat: int = 5
    garp_delay_us: int = 5 * US
    garp_refresh_us: int = 0
    garp_refresh_repeat: int = 1
    garp_lower_prio_repeat: int = 0
    garp_lower_prio_delay_us: int = 0

    @property
    def unicast(self) -> bool:
        return bool(self.peers)


@dataclass
class Stats:
    """keepalived's per-instance counters (keepalived.stats), plus two of its SNMP ones."""

    advert_rcvd: int = 0
    advert_sent: int = 0
    become_master: int = 0
    release_master: int = 0
    packet_len_err: int = 0
    ip_ttl_err: int = 0
    invalid_type_rcvd: int = 0
    advert_interval_err: int = 0
    addr_list_err: int = 0
    invalid_authtype: int = 0
    authtype_mismatch: int = 0
    auth_failure: int = 0
    pri_zero_rcvd: int = 0
    pri_zero_sent: int = 0
    vers_err: int = 0
    chk_err: int = 0


# Actions ------------------------------------------------------------------

@dataclass(frozen=True)
class SendAdvert:
    advert: packet.Advert
    ah_seq: int = 0                 # IPSEC-AH sequence number (auth_type 2 only)
    checksum_dst: IPAddress | None = None   # pseudo-header address, if not the destination


@dataclass(frozen=True)
class TakeAddresses:
    """Add the VIPs, excluded VIPs, virtual routes and rules."""


@dataclass(frozen=True)
class ReleaseAddresses:
    """Remove the VIPs, excluded VIPs, virtual routes and rules."""


@dataclass(frozen=True)
class Announce:
    """Send gratuitous ARPs / unsolicited NAs for every VIP, ``repeat`` rounds.

    Only while the instance holds its addresses (``vips_set``): a round due
    after it let them go must not leave.  ``ticket`` (on becoming master):
    report ``announced(now, ticket)`` once the addresses are set and the first
    round is out, or would have been; the first advert waits for it.
    """

    repeat: int
    ticket: int = 0


@dataclass(frozen=True)
class AnnounceSource:
    """Refresh peers' neighbour caches for our own unicast source address."""


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str
    priority: int


@dataclass(frozen=True)
class Log:
    message: str


@dataclass(frozen=True)
class WantMaster:
    """A sync group member would become master: its group decides (``sync_master``)."""


@dataclass(frozen=True)
class PriorityChanged:
    """The effective priority moved (for ``notify_priority_changes``)."""

    priority: int


@dataclass(frozen=True)
class LowerPriorityHeard:
    """A master heard an advert of lower priority (``notify_master_rx_lower_pri``)."""

    priority: int


Action = (SendAdvert | TakeAddresses | ReleaseAddresses | Announce | AnnounceSource | Transition
          | Log | WantMaster | PriorityChanged | LowerPriorityHeard)


@dataclass(frozen=True)
class Received:
    """A VRRP packet off the wire.

    ``data`` is the whole IPv4 datagram for IPv4 (raw sockets deliver the
    header, which carries the TTL and, with AH, the authentication), and the
    VRRP message alone for IPv6 (the kernel keeps the header; ``hop_limit`` and
    ``dst`` come from ancillary data).
    """

    data: bytes
    src: IPAddress
    dst: IPAddress
    hop_limit: int = -1             # -1: not known


class _Drop(Exception):
    """A received packet that must not be acted on (already counted and logged)."""


@dataclass
class Instance:
    cfg: InstanceConfig
    state: State = State.INIT
    stats: Stats = field(default_factory=Stats)
    base_priority: int = 0
    effective_priority: int = 0
    master_adver_int_us: int = 0
    master_priority: int = 0
    master_source: IPAddress | None = None
    vips_set: bool = False
    deadline: float | None = None       # when to call tick() next; None: nothing pending
    _sands: float | None = None         # advert / master-down timer
    _preempt_time: float | None = None
    _garp_delay_at: float | None = None
    _garp_refresh_at: float | None = None
    _lower_prio_garp_at: float | None = None
    _tickets: int = 0                # the last Announce ticket handed out
    _awaiting: int = 0               # the ticket the first advert as master waits for
    _fault_reasons: set[str] = field(default_factory=set)
    _ah_seq: int = 0
    _ah_last_rx: int = 0
    _old_checksum: bool = False
    _leftover: bool = False          # addresses of a died process may be in the kernel
    _held: bool = False              # forced BACKUP: never becomes master
    synced: bool = False             # a sync group member: its group says when to be master
    wants_master: bool = False       # (synced) the master-down timer ran out
    _out: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base_priority = self.effective_priority = self.cfg.priority
        self._old_checksum = self.cfg.old_unicast_checksum == "config"
        self.master_adver_int_us = self.cfg.advert_int_us

    @property
    def fault_reasons(self) -> frozenset[str]:
        return frozenset(self._fault_reasons)

    @property
    def unicast_checksum_adopted(self) -> bool:
        """Sending the pre-2.0 VRRPv3 unicast checksum (configured or learnt from a peer)."""
        return self._old_checksum

    # -- timing ----------------------------------------------------------

    def skew_us(self, priority: int | None = None) -> int:
        """Skew_Time: v3 scales with Master_Adver_Interval, v2 is (256 - prio) / 256 s."""
        value = 256 - (self.effective_priority if priority is None else priority)
        if self.cfg.version == 3:
            return value * (self.master_adver_int_us // 10_000) * 625 // 16
        return value * US // 256

    def master_down_us(self) -> int:
        return self.cfg.down_timer_adverts * self.master_adver_int_us + self.skew_us()

    # -- events ----------------------------------------------------------

    def start(self, now: float, faults: Iterable[str] = (), resume: bool = False) -> list[Action]:
        """Leave INIT as keepalived's vrrp_init_state does.

        ``faults`` names what is down already (e.g. ``"link"``); each clears
        with ``link(now, True, reason)``.

        ``resume``: the instance was MASTER in a VRRP process that died, and
        its addresses are probably still in the kernel.  It waits Skew_Time
        only, not Master_Down_Interval, so a restart quicker than the
        backups' down interval goes unnoticed; a master it hears within that
        wait is followed as usual (nopreempt is honoured).  The leftover
        addresses stay until the outcome is known, so traffic keeps flowing.
        """
        cfg = self.cfg
        self._fault_reasons.update(faults)
        if resume:
            self._leftover = True
        else:
            self._out.append(ReleaseAddresses())      # clean start: nothing of ours may be left
        if self._fault_reasons:
            self._set_state(State.FAULT, "init")
            self._sands = None
            self._forget_leftover()
        elif cfg.initial_master and cfg.priority == PRIO_OWNER:
            # The owner becomes master at once: a master-down timer of 1 us.
            self._set_state(State.BACKUP, "init")
            self._sands = now + 1 / US
        else:
            self._set_state(State.BACKUP, "init")
            wait = self.skew_us() if resume else self.master_down_us()
            self._sands = now + wait / US
        return self._flush()

    def reconfigure(self, now: float, cfg: InstanceConfig) -> list[Action]:
        """Take new settings on reload and keep the state.

        The caller keeps the identity (interface, family, VRID) the same; a
        new base priority takes effect through ``set_priority``.
        """
        old = self.cfg
        self.cfg = cfg
        if cfg.priority != old.priority:
            self.base_priority = cfg.priority
            if PRIO_OWNER in (cfg.priority, old.priority):
                self.effective_priority = cfg.priority
        if self.state == State.MASTER:
            self.master_adver_int_us = cfg.advert_int_us
            if cfg.advert_int_us != old.advert_int_us and self._sands is not None:
                self._sands = min(self._sands, now + cfg.advert_int_us / US)
        elif self.state == State.BACKUP and cfg.version != old.version:
            self.master_adver_int_us = cfg.advert_int_us
        if cfg.auth_type != 2:
            self._ah_seq = 0
        if cfg.old_unicast_checksum != old.old_unicast_checksum:
            self._old_checksum = cfg.old_unicast_checksum == "config"
        return self._flush()

    def tick(self, now: float) -> list[Action]:
        if self._garp_delay_at is not None and now >= self._garp_delay_at:
            self._garp_delay_at = None
            if self.vips_set:
                self._out.append(Announce(self.cfg.garp_repeat))
        if self._lower_prio_garp_at is not None and now >= self._lower_prio_garp_at:
            self._lower_prio_garp_at = None
            if self.vips_set:
                self._out.append(Announce(self.cfg.garp_lower_prio_repeat))
        if self._sands is not None and now >= self._sands:
            if self.state == State.BACKUP and self.synced and not self._held:
                # keepalived's vrrp_sync_can_goto_master: wait, with the timer
                # running again, until every member of the group wants it.
                self.wants_master = True
                self._sands = now + self.master_down_us() / US
                self._out.append(WantMaster())
            elif self.state == State.BACKUP:
                self._goto_master(now, "advertisement timeout")
            elif self.state == State.MASTER:
                self._master_tx(now)
                # From the deadline, not from now: a loop that wakes a little
                # late must not stretch every interval.
                interval = self.cfg.advert_int_us / US
                self._sands += interval
                if self._sands <= now:
                    self._sands = now + interval
        return self._flush()

    def receive(self, now: float, pkt: Received) -> list[Action]:
        if self.state not in (State.BACKUP, State.MASTER):
            return []
        try:
            adv = self._check(pkt, check_addresses=self._want_address_check(pkt.src))
        except _Drop:
            return self._flush()        # timers run on as if nothing had come
        if self.state == State.BACKUP:
            self._backup_rx(now, adv, pkt.src)
        else:
            self._master_rx(now, adv, pkt.src)
        return self._flush()

    def link(self, now: float, up: bool, reason: str = "link") -> list[Action]:
        """An interface (or other tracked object) went down or came back."""
        if not up:
            if reason in self._fault_reasons:
                return []
            self._fault_reasons.add(reason)
            if len(self._fault_reasons) == 1 or self.state == State.INIT:
                self._enter_fault(now)
        else:
            if reason not in self._fault_reasons:
                return []
            self._fault_reasons.discard(reason)
            if not self._fault_reasons and self.state == State.FAULT:
                self._leave_fault(now)
        return self._flush()

    def set_priority(self, now: float, total: int) -> list[Action]:
        """Apply tracked-object weights: ``total`` is the base priority plus the weights."""
        if self.base_priority == PRIO_OWNER:
            return []
        new = min(max(total, 1), PRIO_OWNER - 1)
        if new == self.effective_priority:
            return []
        self._log(f"Changing effective priority from {self.effective_priority} to {new}")
        old_down = self.master_down_us()
        self.effective_priority = new
        self._out.append(PriorityChanged(new))
        if self.state == State.BACKUP and self._sands is not None:
            self._sands += (self.master_down_us() - old_down) / US
        return self._flush()

    def hold(self, now: float, on: bool) -> list[Action]:
        """Forced BACKUP, for maintenance: the instance never becomes master while held.

        A master hands over at once, with a priority-0 advert as on stop, but
        keeps its addresses until it hears the new master (or, with nobody to
        take over, for a Master_Down_Interval): the backup waits Skew_Time
        before it takes over, and clients must not be left without the
        addresses meanwhile.  A backup stays one even when no master is heard
        (then nobody holds the addresses: that is what was asked).  Not in
        keepalived, which has no such switch; ``set_priority`` is its usual
        stand-in, and its priority-0 hand-over leaves the addresses at once.
        """
        if on == self._held:
            return []
        self._held = on
        self._log("forced to BACKUP" if on else "no longer forced to BACKUP")
        if on and self.state == State.MASTER:
            self._send_advert(PRIO_STOP)
            self.stats.pri_zero_sent += 1
            held_addresses, self.vips_set = self.vips_set, False
            self._leave_master(now, State.BACKUP, "forced backup")
            self._leftover = held_addresses
        return self._flush()

    @property
    def held(self) -> bool:
        return self._held

    def announced(self, now: float, ticket: int) -> list[Action]:
        """The addresses of ``Announce(ticket=...)`` are set and announced: the first
        advert as master goes now (see ``_take_addresses``)."""
        if ticket and ticket == self._awaiting and self.state == State.MASTER:
            self._awaiting = 0
            self._send_advert(self.effective_priority)
        return self._flush()

    def sync_master(self, now: float) -> list[Action]:
        """Its sync group goes to MASTER: a backup member follows at once."""
        if self.state == State.BACKUP:
            self._goto_master(now, "sync group")
        return self._flush()

    def sync_backup(self, now: float) -> list[Action]:
        """Its sync group goes to BACKUP: a master member steps down (no priority-0
        advert, as keepalived's vrrp_sync_backup)."""
        if self.state == State.MASTER:
            self._leave_master(now, State.BACKUP, "sync group")
        return self._flush()

    def stop(self, now: float) -> list[Action]:
        """Graceful stop: a master sends priority 0 so a backup takes over within its skew."""
        if self.state == State.MASTER:
            self._send_advert(PRIO_STOP)
            self.stats.pri_zero_sent += 1
        self._restore()
        self._set_state(State.INIT, "stop")
        self._sands = self._garp_delay_at = self._garp_refresh_at = None
        self._lower_prio_garp_at = None
        return self._flush()

    # -- receive checks (vrrp_check_packet) -------------------------------

    def _want_address_check(self, src: IPAddress) -> bool:
        return not self.cfg.skip_check_adv_addr or src != self.master_source

    def _check(self, pkt: Received, check_addresses: bool) -> packet.Advert:
        cfg, stats = self.cfg, self.stats
        data, hop_limit = pkt.data, pkt.hop_limit
        if cfg.family == 4:
            try:
                dgram = packet.parse_ipv4(data)
            except packet.PacketError as err:
                stats.packet_len_err += 1
                self._drop(f"bad IPv4 header: {err}")
            hop_limit = dgram.ttl
            if (dgram.proto == packet.AH_PROTO) != (cfg.auth_type == 2):
                stats.authtype_mismatch += 1
                self._drop("Received AH header but auth type not AH" if dgram.proto ==
                           packet.AH_PROTO else "No AH header but auth type is AH")
            if cfg.auth_type == 2:
                data = self._check_ah(data)
            else:
                data = dgram.payload
        if not cfg.unicast and hop_limit not in (-1, TTL):
            stats.ip_ttl_err += 1
            self._drop(f"invalid TTL/HL. Received {hop_limit} and expect {TTL}")
        try:
            adv = self._decode(data, pkt)
        except packet.PacketError as err:
            self._count_decode_error(err)
            self._drop(f"bad packet from {pkt.src}: {err}")
        if adv.version != cfg.version:
            stats.vers_err += 1
            self._drop(f"wrong version. Received {adv.version} and expect {cfg.version}")
        if cfg.version == 2:
            if adv.auth_type not in (0, 1, 2):
                stats.invalid_authtype += 1
                self._drop(f"Invalid auth type: {adv.auth_type}")
            if adv.auth_type != cfg.auth_type:
                stats.authtype_mismatch += 1
                self._drop(f"received a {adv.auth_type} auth, expecting {cfg.auth_type}!")
            if cfg.auth_type == 1 and not hmac.compare_digest(adv.auth_data, cfg.auth_pass):
                stats.auth_failure += 1
                self._drop("received an invalid passwd!")
            if adv.interval_cs * 10_000 != cfg.advert_int_us:
                # keepalived drops without counting; the counter exists, so we count.
                stats.advert_interval_err += 1
                self._drop(f"advertisement interval mismatch mine={cfg.advert_int_us // US} sec "
                           f"rcv'd={adv.interval_cs // 100} sec")
        if check_addresses and len(adv.addresses) != len(cfg.addresses):
            stats.addr_list_err += 1
            self._drop(f"received an unexpected ip number count {len(adv.addresses)}, "
                       f"expected {len(cfg.addresses)}!")
        if pkt.dst.is_multicast == cfg.unicast:
            stats.addr_list_err += 1
            kind = ("un", "mult") if cfg.unicast else ("mult", "un")
            self._drop(f"Expected {kind[0]}icast packet but received {kind[1]}icast packet")
        stats.advert_rcvd += 1
        if check_addresses:
            missing = [a for a in cfg.addresses if a not in adv.addresses]
            if missing:
                stats.addr_list_err += 1
                self._drop(f"ip address associated with VRID {cfg.vrid} not present in "
                           f"MASTER advert: {missing[0]}")
            if cfg.unicast and cfg.check_unicast_src:
                peer = next((p for p in cfg.peers if p.address == pkt.src), None)
                if peer is None:
                    self._drop(f"unicast source address {pkt.src} not a unicast peer")
                if hop_limit != -1 and not peer.min_ttl <= hop_limit <= peer.max_ttl:
                    stats.ip_ttl_err += 1
                    self._drop(f"TTL/HL {hop_limit} not in range {peer.min_ttl} - "
                               f"{peer.max_ttl}")
        if adv.priority == 0:
            stats.pri_zero_rcvd += 1
        return adv

    def _decode(self, data: bytes, pkt: Received) -> packet.Advert:
        cfg = self.cfg
        compat = cfg.unicast and cfg.version == 3 and cfg.family == 4
        if compat and self._old_checksum:
            return packet.decode(data, pkt.src, packet.VRRP_GROUP_V4)
        try:
            return packet.decode(data, pkt.src, pkt.dst)
        except packet.PacketError as err:
            if not compat or err.reason != "bad_checksum" or cfg.old_unicast_checksum:
                raise
            adv = packet.decode(data, pkt.src, packet.VRRP_GROUP_V4)
            self._old_checksum = True
            self._log("Setting unicast VRRPv3 checksum to old version")
            return adv

    def _check_ah(self, datagram: bytes) -> bytes:
        try:
            _dgram, seq, payload = packet.verify_ah_datagram(
                datagram, self.cfg.auth_pass)
        except packet.PacketError as err:
            self.stats.auth_failure += 1
            self._drop(f"IPSEC-AH : {err}")
        # Anti-replay as keepalived does it: one counter for what we send and
        # what we accept, so whoever becomes master next goes on counting
        # upwards from the last sequence number seen on the segment.
        if seq <= self._ah_seq:
            self.stats.auth_failure += 1
            self._drop(f"IPSEC-AH : sequence number {seq} already processed. Packet dropped. "
                       f"Local({self._ah_seq})")
        self._ah_seq = seq
        self._ah_last_rx = seq
        return payload

    def _count_decode_error(self, err: packet.PacketError) -> None:
        counter = {
            "too_short": "packet_len_err", "bad_length": "packet_len_err",
            "bad_address_count": "packet_len_err", "bad_type": "invalid_type_rcvd",
            "bad_version": "vers_err", "bad_checksum": "chk_err", "bad_auth": "auth_failure",
        }.get(err.reason, "packet_len_err")
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _drop(self, message: str) -> None:
        self._log(message)
        raise _Drop(message)

    # -- state processing --------------------------------------------------

    def _backup_rx(self, now: float, adv: packet.Advert, src: IPAddress) -> None:
        cfg = self.cfg
        if self._held and adv.priority:
            self._forget_leftover()     # the new master is there: the hand-over is complete
        if adv.priority == 0:
            # The master is leaving: take over after Skew_Time only.
            self._sands = now + self.skew_us() / US
            return
        preempt_waiting = cfg.preempt_delay_us and (
            self._preempt_time is None or self._preempt_time > now)
        if cfg.nopreempt or adv.priority >= self.effective_priority or preempt_waiting:
            self._forget_leftover()     # somebody else is master: what we still hold must go
            self.wants_master = False
            if cfg.version == 3:
                self.master_adver_int_us = adv.interval_cs * 10_000
            self.master_source = src
            self.master_priority = adv.priority
            if cfg.preempt_delay_us:
                if adv.priority >= self.effective_priority:
                    self._preempt_time = None
                elif self._preempt_time is None:
                    self._log(f"start preempt delay ({cfg.preempt_delay_us / US:.6f})")
                    self._preempt_time = now + cfg.preempt_delay_us / US
            self._sands = now + self.master_down_us() / US
        else:
            # A lower priority master and we may preempt: ignore its adverts, so
            # our master-down timer runs out and we take over.
            self._log(f"received lower priority ({adv.priority}) advert from {src} - discarding")
            self.master_source = src

    def _master_rx(self, now: float, adv: packet.Advert, src: IPAddress) -> None:
        cfg = self.cfg
        ours = self.effective_priority
        cmp = _compare(src, cfg.source)
        if adv.priority == 0:
            self._advertise(now)
            return
        if adv.priority == ours:
            if cmp == 0:
                self._log("WARNING - equal priority advert received from remote host with our "
                          "IP address.")
            elif ours == PRIO_OWNER:
                self._log("CONFIGURATION ERROR: local instance and a remote instance are both "
                          "configured as address owner, please fix - reducing local priority")
                self.effective_priority = self.base_priority = ours = PRIO_OWNER - 1
        if adv.priority < ours or (adv.priority == ours and cmp < 0):
            self._log(f"Received advert from {src} with lower priority {adv.priority}, ours "
                      f"{ours}{'' if cfg.lower_prio_no_advert else ', forcing new election'}")
            self._out.append(LowerPriorityHeard(adv.priority))
            if cfg.auth_type == 2:
                self._ah_seq = self._ah_last_rx + 1
            if not cfg.lower_prio_no_advert:
                self._advertise(now)
            if cfg.garp_lower_prio_repeat:
                self._out.append(Announce(cfg.garp_lower_prio_repeat))
                if cfg.garp_lower_prio_delay_us:
                    self._lower_prio_garp_at = now + cfg.garp_lower_prio_delay_us / US
            return
        if adv.priority > ours or cmp > 0:
            if adv.priority > ours:
                self._log(f"Master received advert from {src} with higher priority "
                          f"{adv.priority}, ours {ours}")
            else:
                self._log(f"Master received advert from {src} with same priority "
                          f"{adv.priority} but higher IP address than ours")
            # Our advert before we step down, always (keepalived only with
            # higher_prio_send_advert): after a split brain the other master
            # never heard us, and clients may still follow our announcements.
            # Hearing a lower priority it announces at once
            # (garp_lower_prio_repeat), so they come back within an interval.
            self._send_advert(ours)
            if cfg.version == 3:
                self.master_adver_int_us = adv.interval_cs * 10_000
            self.master_priority = adv.priority
            self.master_source = src
            self._leave_master(now, State.BACKUP, "higher priority advert")

    def _goto_master(self, now: float, reason: str) -> None:
        if self._held:
            self._forget_leftover()
            self._set_state(State.BACKUP, reason)
            self._sands = now + self.master_down_us() / US
            return
        # Addresses still ours (a resumed master, a hold that found no taker): no other
        # router took them, so nobody is to be waited for before the advert.
        kept, self._leftover = self._leftover, False   # TakeAddresses adds them again: harmless
        if self.cfg.auth_type == 2 and self._ah_seq > 0xFFFFFFFD:
            self._ah_seq = 0
        self._preempt_time = None
        self._set_state(State.MASTER, reason)
        self._sands = now + self.cfg.advert_int_us / US
        if kept:
            self._send_advert(self.effective_priority)
            self._take_addresses(now, ticket=False)
        else:
            self._master_tx(now)

    def _master_tx(self, now: float) -> None:
        cfg = self.cfg
        if not self.vips_set:
            self._take_addresses(now)
            return
        self._awaiting = 0      # not announced by the advert timer: it goes anyway
        self._send_advert(self.effective_priority)
        if self._garp_refresh_at is not None and now > self._garp_refresh_at:
            self._out.append(Announce(cfg.garp_refresh_repeat))
            self._garp_refresh_at = now + cfg.garp_refresh_us / US

    def _take_addresses(self, now: float, ticket: bool = True) -> None:
        """Become master: addresses, then announcements, then the first advert.

        Make before break: the old master lets the addresses go when it hears
        our advert, so the advert waits until clients have been told to come
        here (``announced``), or at the latest until the advert timer.
        keepalived sends the advert first, then sets the addresses and
        announces within microseconds; our netlink work takes milliseconds,
        which clients spent knocking at a host that had just let go.
        Without ``ticket`` the advert has gone already.
        """
        cfg = self.cfg
        self.stats.become_master += 1
        self.master_adver_int_us = cfg.advert_int_us
        self.master_source = cfg.source
        self.master_priority = self.effective_priority
        self._out.append(TakeAddresses())
        self.vips_set = True
        if ticket:
            self._tickets += 1
            self._awaiting = self._tickets
        self._out.append(Announce(cfg.garp_repeat, self._awaiting))
        if cfg.garp_refresh_us:
            self._garp_refresh_at = now + cfg.garp_refresh_us / US
        if cfg.garp_delay_us:
            self._garp_delay_at = now + cfg.garp_delay_us / US

    def _advertise(self, now: float) -> None:
        """A master's advert out of turn, which restarts its advert timer."""
        if self._awaiting:
            return              # the first advert is owed: it goes once we have announced
        self._send_advert(self.effective_priority)
        self._sands = now + self.cfg.advert_int_us / US

    def _leave_master(self, now: float, new: State, reason: str) -> None:
        if new == State.FAULT:
            self._send_advert(PRIO_STOP)
            self.stats.pri_zero_sent += 1
        self._restore()
        self._set_state(new, reason)
        self.stats.release_master += 1
        if new == State.BACKUP:
            self._preempt_time = None
            self._sands = now + self.master_down_us() / US
        else:
            self._sands = None

    def _enter_fault(self, now: float) -> None:
        self._forget_leftover()
        if self.state == State.MASTER:
            self._leave_master(now, State.FAULT, "fault")
        else:
            self._set_state(State.FAULT, "fault")
            self._sands = None
        self.master_adver_int_us = self.cfg.advert_int_us

    def _leave_fault(self, now: float) -> None:
        cfg = self.cfg
        self.master_adver_int_us = cfg.advert_int_us
        if cfg.unicast and cfg.source is not None:
            # A master may have forgotten our MAC while we were away: tell it,
            # or its unicast adverts could be late and we would take over.
            self._out.append(AnnounceSource())
        if cfg.initial_master and self.base_priority == PRIO_OWNER and not self.synced:
            # RFC 5798 6.4.1: the owner goes straight to master when its link
            # returns.  keepalived 2.2.7 waits a full down interval here.
            self._goto_master(now, "fault cleared")
        else:
            self._set_state(State.BACKUP, "fault cleared")
            self._preempt_time = None
            self._sands = now + self.master_down_us() / US

    def _forget_leftover(self) -> None:
        if self._leftover:
            self._out.append(ReleaseAddresses())
            self._leftover = False

    def _restore(self) -> None:
        self._forget_leftover()
        self._garp_delay_at = self._garp_refresh_at = self._lower_prio_garp_at = None
        self._awaiting = 0
        if self.vips_set:
            self._out.append(ReleaseAddresses())
            self.vips_set = False

    # -- output ------------------------------------------------------------

    def _send_advert(self, priority: int) -> None:
        cfg = self.cfg
        seq = 0
        if cfg.auth_type == 2:
            if self._ah_seq <= 0xFFFFFFFD:
                self._ah_seq += 1
            seq = self._ah_seq
        auth_data = cfg.auth_pass if cfg.auth_type == 1 else b""
        adv = packet.Advert(version=cfg.version, vrid=cfg.vrid, priority=priority,
                            interval_cs=cfg.advert_int_us // 10_000, addresses=cfg.addresses,
                            auth_type=cfg.auth_type if cfg.version == 2 else 0,
                            auth_data=auth_data)
        old = self._old_checksum and cfg.unicast and cfg.version == 3 and cfg.family == 4
        self._out.append(SendAdvert(adv, seq, packet.VRRP_GROUP_V4 if old else None))
        self.stats.advert_sent += 1

    def _set_state(self, new: State, reason: str) -> None:
        old = self.state
        if new == old:
            return
        self.state = new
        self.wants_master = False
        if new != State.INIT:
            suffix = " (init)" if reason == "init" else ""
            self._log(f"Entering {new.name} STATE{suffix}")
        self._out.append(Transition(old, new, reason, self.effective_priority))

    def _log(self, message: str) -> None:
        self._out.append(Log(f"({self.cfg.name}) {message}"))

    def _update_deadline(self) -> None:
        # The refresh timer is looked at when an advert goes out, as keepalived does.
        times = [t for t in (self._sands, self._garp_delay_at, self._lower_prio_garp_at)
                 if t is not None]
        self.deadline = min(times) if times else None

    def _flush(self) -> list[Action]:
        self._update_deadline()
        out, self._out = self._out, []
        return out


def _compare(a: IPAddress, b: IPAddress | None) -> int:
    """Compare advert sources as keepalived does: as unsigned numbers; unknown is lowest."""
    if b is None:
        return 1
    return (int(a) > int(b)) - (int(a) < int(b))


def parse_address(text: str) -> IPAddress:
    """A VIP or peer as written in the config (with or without a prefix length)."""
    return ip_address(text.split("/", 1)[0])
