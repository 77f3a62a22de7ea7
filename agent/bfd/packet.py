"""BFD Control packets (RFC 5880 section 4.1): encode, decode, and the checks of 6.8.6.

Pure functions over bytes, no I/O.  ``decode`` never raises on any bytes: a
packet that must be discarded comes back as a ``Discard`` reason, one per rule
of RFC 5880 section 6.8.6, so that the caller can count drops by reason.  Two
rules need the session and live in the engine: an unknown Your Discriminator
and the A bit (we implement no authentication, so the engine discards every
packet with A set, after the discriminator lookup as 6.8.6 orders it).

For the BFD process's hot path both directions avoid new objects: ``pack_into``
writes into a caller's preallocated buffer, and ``decode`` can fill a caller's
``Control`` instead of making one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
LENGTH = 24                 # the mandatory section; we never send an authentication section
LENGTH_WITH_AUTH = 26       # the least a packet with the A bit can be (6.8.6)
PORT = 3784                 # RFC 5881 single hop
PORT_MULTIHOP = 4784        # RFC 5883
PORT_ECHO = 3785            # not implemented: we advertise Required Min Echo RX 0
SOURCE_PORTS = range(49152, 65536)  # RFC 5881 section 4: one fixed source port per session
TTL = 255                   # RFC 5881 section 5 (GTSM): sent, and required on receipt
MAX_U32 = 0xFFFF_FFFF

# Flag bits of the second byte (after the two State bits).
POLL = 0x20
FINAL = 0x10
CPI = 0x08                  # control plane independent
AUTH = 0x04
DEMAND = 0x02
MULTIPOINT = 0x01

_WIRE = struct.Struct("!BBBBIIIII")


class State(IntEnum):
    """bfd.SessionState, numbered as on the wire."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(IntEnum):
    """bfd.LocalDiag (RFC 5880 section 4.1); 9-31 are reserved and decode as plain ints."""

    NONE = 0
    CONTROL_DETECTION_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class Discard(IntEnum):
    """Why a received packet was dropped; each value is one counter.

    In the order the checks run (RFC 5880 6.8.6, with GTSM first as the
    transport's own rule).  Usable as a list index: ``drops[Discard.VERSION]``.
    """

    TTL = 0                     # RFC 5881 section 5 / keepalived's max_hops: hop limit too low
    TRUNCATED = 1               # fewer than 4 bytes: not even a Length field
    VERSION = 2                 # Vers != 1
    LENGTH_TOO_SHORT = 3        # Length < 24 (26 with the A bit)
    LENGTH_EXCEEDS_PAYLOAD = 4  # Length > the UDP payload
    DETECT_MULT_ZERO = 5
    MULTIPOINT = 6              # M bit set
    MY_DISCR_ZERO = 7
    YOUR_DISCR_UNKNOWN = 8      # non-zero and no session has it (engine or demultiplexer)
    YOUR_DISCR_ZERO = 9         # zero while the packet's State is Init or Up
    NO_SESSION = 10             # zero, and no session for its source (demultiplex())
    AUTH = 11                   # A bit set: authentication is not implemented
    ADMIN_DOWN = 12             # our session is AdminDown (6.8.6: discarded after the remote's
                                # values are taken)

    @property
    def label(self) -> str:
        """The metric label: ``your_discr_unknown``."""
        return self.name.lower()


_STATES = tuple(State)          # index -> member without a call into the enum machinery


@dataclass(slots=True)
class Control:
    """One BFD Control packet, field by field.  Times are microseconds, as on the wire.

    Mutable on purpose: the engine decodes every received packet into the same
    instance.  ``diag`` is an int because reserved codes must decode, not raise.
    """

    state: State = State.DOWN
    diag: int = Diag.NONE
    detect_mult: int = 3
    my_discr: int = 0
    your_discr: int = 0
    desired_min_tx_us: int = 1_000_000
    required_min_rx_us: int = 1_000_000
    required_min_echo_rx_us: int = 0
    poll: bool = False
    final: bool = False
    cpi: bool = False
    auth: bool = False
    demand: bool = False
    multipoint: bool = False
    version: int = VERSION
    length: int = LENGTH

    @property
    def flags(self) -> int:
        return ((POLL if self.poll else 0) | (FINAL if self.final else 0)
                | (CPI if self.cpi else 0) | (AUTH if self.auth else 0)
                | (DEMAND if self.demand else 0) | (MULTIPOINT if self.multipoint else 0))


def pack_into(buf: bytearray | memoryview, offset: int, state: State, diag: int, flags: int,
              detect_mult: int, my_discr: int, your_discr: int, desired_min_tx_us: int,
              required_min_rx_us: int, required_min_echo_rx_us: int = 0) -> None:
    """Write a 24-byte Control packet (version 1, no authentication) into ``buf``.

    No object is made: this is the send path of the BFD process.  Values out of
    range raise ``struct.error``; the engine never produces one.
    """
    _WIRE.pack_into(buf, offset, VERSION << 5 | diag, state << 6 | flags, detect_mult, LENGTH,
                    my_discr, your_discr, desired_min_tx_us, required_min_rx_us,
                    required_min_echo_rx_us)


def encode(pkt: Control) -> bytes:
    """The packet as bytes, every field as given (also a wrong version, M or A: for tests).

    Length is written as ``pkt.length``, so a test can build each discard case.
    """
    buf = bytearray(LENGTH)
    _WIRE.pack_into(buf, 0, (pkt.version & 0x7) << 5 | (pkt.diag & 0x1F),
                    pkt.state << 6 | pkt.flags, pkt.detect_mult, pkt.length, pkt.my_discr,
                    pkt.your_discr, pkt.desired_min_tx_us, pkt.required_min_rx_us,
                    pkt.required_min_echo_rx_us)
    return bytes(buf)


def decode(data: bytes | bytearray | memoryview, out: Control | None = None) -> Control | Discard:
    """Check ``data`` (a UDP payload) against RFC 5880 6.8.6 and decode it.

    Returns the packet (``out`` filled in, when given) or the first rule it
    breaks, in the RFC's order.  Never raises.  Bytes after Length are ignored:
    the RFC discards only when Length exceeds the payload (keepalived 2.2.7
    wants them equal).  An authentication section is not read: the engine
    discards packets with the A bit.
    """
    size = len(data)
    if size == 0:
        return Discard.TRUNCATED
    if data[0] >> 5 != VERSION:
        return Discard.VERSION
    if size < 4:
        return Discard.TRUNCATED
    flags, length = data[1], data[3]
    if length < (LENGTH_WITH_AUTH if flags & AUTH else LENGTH):
        return Discard.LENGTH_TOO_SHORT
    if length > size:
        return Discard.LENGTH_EXCEEDS_PAYLOAD
    # From here the packet holds at least the 24-byte mandatory section.
    (first, flags, mult, length, my_discr, your_discr, desired_tx, required_rx,
     echo_rx) = _WIRE.unpack_from(data)
    if mult == 0:
        return Discard.DETECT_MULT_ZERO
    if flags & MULTIPOINT:
        return Discard.MULTIPOINT
    if my_discr == 0:
        return Discard.MY_DISCR_ZERO
    state = _STATES[flags >> 6]
    if your_discr == 0 and state in (State.INIT, State.UP):
        return Discard.YOUR_DISCR_ZERO
    pkt = Control() if out is None else out
    pkt.version = VERSION
    pkt.diag = first & 0x1F
    pkt.state = state
    pkt.poll = bool(flags & POLL)
    pkt.final = bool(flags & FINAL)
    pkt.cpi = bool(flags & CPI)
    pkt.auth = bool(flags & AUTH)
    pkt.demand = bool(flags & DEMAND)
    pkt.multipoint = False
    pkt.detect_mult = mult
    pkt.length = length
    pkt.my_discr = my_discr
    pkt.your_discr = your_discr
    pkt.desired_min_tx_us = desired_tx
    pkt.required_min_rx_us = required_rx
    pkt.required_min_echo_rx_us = echo_rx
    return pkt
