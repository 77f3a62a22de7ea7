"""The BFD process's sockets (RFC 5881 single hop, RFC 5883 multihop).

- ``Receiver``: one listening socket per family and port (3784 single hop,
  4784 multihop), wildcard-bound, asking the kernel for the received TTL / hop
  limit (IP_RECVTTL, IPV6_RECVHOPLIMIT: the engine applies GTSM, RFC 5881
  section 5) and the destination address (IP_PKTINFO, IPV6_RECVPKTINFO: a
  packet with Your Discriminator 0 is matched on it as keepalived does).
  ``receive()`` reads one datagram with ``recvmsg_into`` into a buffer made
  once, and leaves what it read in attributes: nothing is built per packet but
  what ``recvmsg_into`` itself returns.
- ``Sender``: one socket per session, bound to the session's source address
  (if any) and to a source port chosen once in 49152-65535 and kept for the
  session's life (RFC 5881 section 4; keepalived 2.2.7 leaves the socket
  unbound without ``source_ip``, so the kernel picks a port outside that
  range), sending with TTL / hop limit 255 and TOS / traffic class 0xC0
  (network control, as BIRD and FRR send BFD).

The sender is not connected: a connected UDP socket reports an ICMP port
unreachable by failing the *next* send, which would drop a packet we want to
go out (a peer's daemon restarting answers unreachable for a moment).
"""

from __future__ import annotations

import errno
import random
import socket
import sys
from collections.abc import Callable

from .packet import PORT, SOURCE_PORTS, TTL

__all__ = ["TOS", "Receiver", "Sender", "SocketOptions"]

# Linux values, for Pythons whose socket module does not name them
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)

TOS = 0xC0                          # IPTOS_PREC_INTERNETCONTROL / CS6
BUFFER = 512                        # a Control packet is 24 bytes, 52 with authentication
# The two control messages we ask for: the TTL / hop limit (an int) and the packet
# info (in_pktinfo 12 bytes, in6_pktinfo 20).
ANCILLARY = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)
_TTL_TYPES = (socket.IP_TTL, socket.IPV6_HOPLIMIT)   # 2 and 52: never confused
_INT_LOW_BYTE = 0 if sys.byteorder == "little" else 3   # the TTL int's low byte
WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}

Rand = Callable[[int], int]


class SocketOptions:
    """What ``Sender`` sets, in one place (and read back by the tests)."""

    @staticmethod
    def hop_limit(family: int) -> tuple[int, int]:
        if family == socket.AF_INET6:
            return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS
        return socket.IPPROTO_IP, socket.IP_TTL

    @staticmethod
    def traffic_class(family: int) -> tuple[int, int]:
        if family == socket.AF_INET6:
            return socket.IPPROTO_IPV6, socket.IPV6_TCLASS
        return socket.IPPROTO_IP, socket.IP_TOS


class Receiver:
    """A listening socket for one family and port; ``receive()`` is the hot path."""

    __slots__ = ("sock", "family", "port", "multihop", "view", "_bufs", "nbytes", "ttl",
                 "source", "ancdata")

    def __init__(self, family: int, port: int = PORT, multihop: bool = False,
                 address: str | None = None) -> None:
        sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            if family == socket.AF_INET6:
                # one socket per family: IPv4-mapped addresses would hide the real TTL
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setblocking(False)
            sock.bind((address or WILDCARD[family], port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.family = family
        self.port = port
        self.multihop = multihop
        buf = bytearray(BUFFER)
        self.view = memoryview(buf)
        self._bufs = [self.view]
        self.nbytes = 0
        self.ttl: int | None = None
        self.source = ""
        self.ancdata: list[tuple[int, int, bytes]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bool:
        """Read one datagram, if one is queued: its bytes are ``view[:nbytes]``, its
        sender ``source`` (address text), its TTL / hop limit ``ttl`` (None if the
        kernel did not say).  False when nothing is queued.  Other errors (an ICMP
        error reported on the socket) raise OSError; the caller counts and goes on."""
        try:
            nbytes, ancdata, _flags, address = self.sock.recvmsg_into(self._bufs, ANCILLARY)
        except BlockingIOError:
            return False
        ttl = None
        for _level, kind, data in ancdata:
            if kind in _TTL_TYPES and len(data) >= 4:
                ttl = data[_INT_LOW_BYTE]
        self.nbytes = nbytes
        self.ttl = ttl
        self.source = address[0]
        self.ancdata = ancdata
        return True

    def destination(self) -> str | None:
        """The destination address of the last datagram (from its packet info)."""
        for level, kind, data in self.ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
                return socket.inet_ntop(socket.AF_INET, data[8:12])     # ipi_addr
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO \
                    and len(data) >= 16:
                return socket.inet_ntop(socket.AF_INET6, data[:16])
        return None

    def close(self) -> None:
        self.sock.close()


class Sender:
    """One session's sending socket: fixed source port, TTL 255, TOS 0xC0."""

    __slots__ = ("sock", "family", "neighbor", "port", "source", "source_port",
                 "destination", "errors", "last_error")

    def __init__(self, family: int, neighbor: str, port: int = PORT,
                 source: str | None = None, ttl: int = TTL, tos: int = TOS,
                 rand: Rand = random.randrange, ports: range = SOURCE_PORTS) -> None:
        sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            level, name = SocketOptions.hop_limit(family)
            sock.setsockopt(level, name, ttl)
            level, name = SocketOptions.traffic_class(family)
            sock.setsockopt(level, name, tos)
            if source is not None:
                # The source may not be on an interface yet (a VIP that comes with
                # MASTER): bind anyway; sends fail and are counted until it is.
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            self.source_port = _bind_in(sock, source or WILDCARD[family], ports, rand)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.family = family
        self.neighbor = neighbor
        self.port = port
        self.source = source
        self.destination: tuple[str, int] | tuple[str, int, int, int] = \
            (neighbor, port, 0, 0) if family == socket.AF_INET6 else (neighbor, port)
        self.errors = 0
        self.last_error = 0

    def send(self, data: bytes | bytearray | memoryview) -> bool:
        """Send one packet; a failure (no route, a full queue) is counted, not raised:
        BFD's answer to a lost packet is the next one."""
        try:
            self.sock.sendto(data, self.destination)
            return True
        except OSError as err:
            self.errors += 1
            self.last_error = err.errno or 0
            return False

    def set_ttl(self, ttl: int) -> None:
        level, name = SocketOptions.hop_limit(self.family)
        self.sock.setsockopt(level, name, ttl)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def _bind_in(sock: socket.socket, address: str, ports: range, rand: Rand) -> int:
    """Bind to a free port of ``ports``, from a random one on (as keepalived searches)."""
    start = rand(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        try:
            sock.bind((address, port))
            return port
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free source port in {ports.start}-{ports.stop - 1}")
