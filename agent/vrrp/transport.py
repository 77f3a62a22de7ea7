"""VRRP sockets: one per interface and address family, shared by its instances.

IPv4 goes through raw sockets that see the IP header (we need the TTL, and
the AH header when it is used) and sends with IP_HDRINCL, building the header
as keepalived does (TOS network control, TTL 255).  IPv6 raw sockets never
show the header: the hop limit and the destination come as ancillary data.
Announcements (gratuitous ARP, unsolicited NA) go out on AF_PACKET.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from . import packet
from .engine import Received

IPAddress = IPv4Address | IPv6Address

SO_BINDTODEVICE = 25
IP_MULTICAST_ALL = 49
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_TCLASS = 67
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
RX_BUFFER = 1 << 20


@dataclass(frozen=True)
class Packet:
    """What a socket read: the frame for the engine, and the VRID to find the instance."""

    vrid: int
    received: Received


class VrrpSocket:
    """Receive and send VRRP on one interface for one family."""

    def __init__(self, ifname: str, ifindex: int, family: int, groups: set[IPAddress],
                 ah: bool = False) -> None:
        self.ifname, self.ifindex, self.family = ifname, ifindex, family
        self.groups, self.ah = frozenset(groups), ah
        self.rx: list[socket.socket] = []
        self.errors = 0             # reads that could not even be demultiplexed
        self._ip_id = 0
        try:
            if family == 4:
                self._open_v4(groups, ah)
            else:
                self._open_v6(groups)
        except OSError:
            self.close()
            raise

    def _bind_device(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.ifname.encode())

    def _open_v4(self, groups: set[IPAddress], ah: bool) -> None:
        for proto in (packet.VRRP_PROTO, packet.AH_PROTO) if ah else (packet.VRRP_PROTO,):
            rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            self.rx.append(rx)
            rx.setblocking(False)
            self._bind_device(rx)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RX_BUFFER)
            # Only the groups joined here, not every group some other socket joined.
            rx.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            for group in groups:
                mreqn = struct.pack("4s4si", group.packed, b"\0" * 4, self.ifindex)
                rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setblocking(False)
        self._bind_device(self.tx)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                           struct.pack("4s4si", b"\0" * 4, b"\0" * 4, self.ifindex))

    def _open_v6(self, groups: set[IPAddress]) -> None:
        rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, packet.VRRP_PROTO)
        self.rx.append(rx)
        rx.setblocking(False)
        self._bind_device(rx)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RX_BUFFER)
        rx.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        rx.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        for group in groups:
            mreq = struct.pack("16sI", group.packed, self.ifindex)
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, packet.VRRP_PROTO)
        self.tx.setblocking(False)
        self._bind_device(self.tx)
        # Traffic class network control (CS6), as keepalived's if_setsockopt_priority sets it.
        self.tx.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, packet.IP_TOS_NETWORK_CONTROL)
        self.tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, packet.TTL)
        self.tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, packet.TTL)
        self.tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        self.tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)

    # -- receiving -----------------------------------------------------------

    def read(self, sock: socket.socket, limit: int = 64) -> list[Packet]:
        """Drain what is queued (up to ``limit`` packets) without blocking."""
        out: list[Packet] = []
        for _ in range(limit):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65535, 256)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno in (errno.EINTR, errno.ENETDOWN):
                    continue
                raise
            pkt = self._frame(data, ancdata, addr)
            if pkt is None:
                self.errors += 1
            else:
                out.append(pkt)
        return out

    def _frame(self, data: bytes, ancdata: list, addr: tuple) -> Packet | None:
        if self.family == 4:
            # Only what finding the instance needs: the engine checks the rest.
            if len(data) < 20 or data[0] >> 4 != 4:
                return None
            offset = (data[0] & 0x0F) * 4
            if data[9] == packet.AH_PROTO:
                offset += packet.AH_LEN
            if len(data) < offset + packet.HEADER_LEN:
                return None
            return Packet(data[offset + 1],
                          Received(data, IPv4Address(data[12:16]), IPv4Address(data[16:20])))
        hop_limit, dst = -1, None
        for level, kind, value in ancdata:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == IPV6_HOPLIMIT and len(value) >= 4:
                hop_limit = struct.unpack("i", value[:4])[0]
            elif kind == IPV6_PKTINFO and len(value) >= 16:
                dst = IPv6Address(value[:16])
        vrid = packet.peek_vrid(data)
        if vrid is None or dst is None:
            return None
        src = ip_address(addr[0].split("%", 1)[0])
        return Packet(vrid, Received(data, src, dst, hop_limit))

    # -- sending -------------------------------------------------------------

    def send(self, adv: packet.Advert, src: IPAddress, dst: IPAddress, ttl: int = packet.TTL,
             password: bytes = b"", ah_seq: int = 0,
             checksum_dst: IPAddress | None = None) -> None:
        if self.family == 4:
            self._ip_id = self._ip_id % 0xFFFF + 1          # 0 would let the kernel choose
            if adv.auth_type == packet.AUTH_AH:
                datagram = packet.build_ah_datagram(adv, src, dst, password, ah_seq,
                                                    self._ip_id, ttl=ttl)
            else:
                payload = packet.encode(adv, src, checksum_dst or dst)
                datagram = packet.build_ipv4_datagram(payload, src, dst, packet.VRRP_PROTO, ttl,
                                                      self._ip_id)
            # keepalived keeps multicast adverts on the link whatever the routes say.
            flags = socket.MSG_DONTROUTE if dst.is_multicast else 0
            self.tx.sendto(datagram, flags, (str(dst), 0))
        else:
            payload = packet.encode(adv, src, dst)
            pktinfo = struct.pack("16sI", src.packed, self.ifindex)
            scope = self.ifindex if dst.is_link_local or dst.is_multicast else 0
            self.tx.sendmsg([payload], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)], 0,
                           (str(dst), 0, 0, scope))

    def close(self) -> None:
        for sock in self.rx:
            sock.close()
        if hasattr(self, "tx"):
            self.tx.close()


class Announcer:
    """Gratuitous ARP and unsolicited neighbour advertisements on one interface."""

    def __init__(self, ifname: str, forwarding_of: str | None = None) -> None:
        self.ifname = ifname
        # whose forwarding sysctl says "router": a VMAC's base, as keepalived reads it
        self.forwarding_of = forwarding_of or ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setblocking(False)
        self.sock.bind((ifname, 0))

    def announce(self, mac: bytes, address: IPAddress) -> None:
        if address.version == 4:
            frame = packet.garp_frame(mac, address)
        else:
            frame = packet.unsolicited_na_frame(mac, address, self._forwarding())
        try:
            self.sock.send(frame)
        except BlockingIOError:
            pass            # the link is saturated; the next round or refresh repeats it

    def _forwarding(self) -> bool:
        """NAs claim the router flag when the link forwards IPv6, as keepalived's do."""
        try:
            with open(f"/proc/sys/net/ipv6/conf/{self.forwarding_of}/forwarding") as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()
