"""VRRP wire codec: adverts (v2 and v3, IPv4 and IPv6), IPSEC-AH, GARP and unsolicited NA.

Pure functions over bytes, no I/O. The output matches what keepalived 2.2.7 puts on the wire
byte for byte, so a keepalived peer cannot tell us apart. Points where keepalived differs from
a plain reading of the RFCs are noted where they are implemented.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

VRRP_PROTO = 112
AH_PROTO = 51
ICMPV6_PROTO = 58
VRRP_GROUP_V4 = IPv4Address("224.0.0.18")
VRRP_GROUP_V6 = IPv6Address("ff02::12")

AUTH_NONE = 0
AUTH_PASS = 1
AUTH_AH = 2
PASS_LEN = 8  # VRRPv2 authentication data, and keepalived's auth_pass length limit

ADVERT_TYPE = 1
HEADER_LEN = 8
IPV4_HEADER_LEN = 20
AH_LEN = 24  # next header, payload length, reserved, SPI, sequence, 96-bit ICV
ICV_LEN = 12
IP_TOS_NETWORK_CONTROL = 0xC0
TTL = 255

BROADCAST_MAC = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")
ALL_NODES = IPv6Address("ff02::1")


class PacketError(ValueError):
    """Malformed or unauthenticated input; ``reason`` names the counter to bump."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Advert:
    version: int
    vrid: int
    priority: int
    # Centiseconds in both versions; the v2 wire field holds whole seconds.
    interval_cs: int
    addresses: tuple[IPAddress, ...]
    auth_type: int = AUTH_NONE
    # The 8 bytes as sent (v2 over IPv4 only); all zeros decode as b"".
    auth_data: bytes = b""


@dataclass(frozen=True)
class Ipv4Datagram:
    src: IPv4Address
    dst: IPv4Address
    ttl: int
    proto: int
    header: bytes
    payload: bytes


def pass_key(password: bytes) -> bytes:
    """auth_pass as keepalived stores it: cut to 8 bytes, NUL-padded (PASS data and AH key)."""
    return password[:PASS_LEN].ljust(PASS_LEN, b"\0")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int, proto: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def _uses_pseudo_header(version: int, src: IPAddress) -> bool:
    # v2 over IPv4 sums the message alone. Over IPv6 keepalived leaves the sum to the kernel
    # (IPV6_CHECKSUM), which always includes the pseudo-header, so v2-over-IPv6 has it too.
    return version == 3 or src.version == 6


def _has_auth_data(version: int, src: IPAddress) -> bool:
    # keepalived appends the 8 auth bytes only to v2 over IPv4.
    return version == 2 and src.version == 4


def _check_family(src: IPAddress, dst: IPAddress) -> None:
    if src.version != dst.version:
        raise ValueError(f"src {src} and dst {dst} are of different address families")


def encode(adv: Advert, src: IPAddress, dst: IPAddress) -> bytes:
    """The VRRP message (the IP payload) with its checksum.

    For VRRPv3 over IPv4 the pseudo-header uses ``dst`` as given: the unicast peer for
    keepalived's default, or ``VRRP_GROUP_V4`` to mimic ``old_unicast_checksum``.
    """
    _check_family(src, dst)
    if adv.version not in (2, 3):
        raise ValueError(f"VRRP version {adv.version}")
    if any(a.version != src.version for a in adv.addresses):
        raise ValueError("advert addresses must be of the same family as src")
    if not (0 <= adv.vrid <= 255 and 0 <= adv.priority <= 255 and len(adv.addresses) <= 255):
        raise ValueError("vrid, priority and address count must fit in a byte")
    if adv.version == 2:
        interval = adv.interval_cs // 100
        if not 0 <= interval <= 255 or not 0 <= adv.auth_type <= 255:
            raise ValueError("v2 interval (s) and auth type must fit in a byte")
        second_word = struct.pack("!BB", adv.auth_type, interval)
    else:
        # The top 4 bits are reserved and must be sent as zero.
        if not 0 <= adv.interval_cs <= 0x0FFF:
            raise ValueError(f"v3 interval {adv.interval_cs} cs does not fit in 12 bits")
        second_word = struct.pack("!H", adv.interval_cs)
    if len(adv.auth_data) > PASS_LEN:
        raise ValueError(f"auth data longer than {PASS_LEN} bytes")

    first_word = struct.pack(
        "!BBBB", adv.version << 4 | ADVERT_TYPE, adv.vrid, adv.priority, len(adv.addresses)
    )
    body = b"".join(a.packed for a in adv.addresses)
    if _has_auth_data(adv.version, src):
        body += adv.auth_data.ljust(PASS_LEN, b"\0")
    message = first_word + second_word + b"\0\0" + body
    summed = message
    if _uses_pseudo_header(adv.version, src):
        summed = _pseudo_header(src, dst, len(message), VRRP_PROTO) + message
    return message[:6] + struct.pack("!H", checksum(summed)) + message[8:]


def decode(data: bytes, src: IPAddress, dst: IPAddress) -> Advert:
    """Parse and validate a VRRP message; ``src``/``dst`` come from the IP header.

    The length must match the address count exactly, as keepalived requires. Only
    PacketError is raised for bad bytes; the engine checks what needs configuration
    (auth match, interval, VIP list).
    """
    _check_family(src, dst)
    if len(data) < HEADER_LEN:
        raise PacketError("too_short", f"{len(data)} bytes")
    version, vtype = data[0] >> 4, data[0] & 0x0F
    if version not in (2, 3):
        raise PacketError("bad_version", str(version))
    if vtype != ADVERT_TYPE:
        raise PacketError("bad_type", str(vtype))

    count = data[3]
    addr_len = 4 if src.version == 4 else 16
    trailer = PASS_LEN if _has_auth_data(version, src) else 0
    expected = HEADER_LEN + count * addr_len + trailer
    if len(data) != expected:
        # If the bytes hold a whole number of addresses, the count field is what is wrong.
        spare = len(data) - HEADER_LEN - trailer
        whole = spare >= 0 and spare % addr_len == 0
        reason = "bad_address_count" if whole else "bad_length"
        raise PacketError(reason, f"{len(data)} bytes for {count} addresses, expected {expected}")

    summed = data
    if _uses_pseudo_header(version, src):
        summed = _pseudo_header(src, dst, len(data), VRRP_PROTO) + data
    if checksum(summed) != 0:
        raise PacketError("bad_checksum")

    auth_type, auth_data = AUTH_NONE, b""
    if version == 2:
        # An unknown auth type is passed on: the engine counts it (invalid_authtype).
        auth_type, interval_cs = data[4], data[5] * 100
        if trailer:
            auth_data = data[-PASS_LEN:]
            if not any(auth_data):
                auth_data = b""
    else:
        # Reserved bits are ignored on receipt (RFC 5798 §5.2.7).
        interval_cs = struct.unpack_from("!H", data, 4)[0] & 0x0FFF

    family = IPv4Address if src.version == 4 else IPv6Address
    addresses = tuple(
        family(data[i : i + addr_len])
        for i in range(HEADER_LEN, HEADER_LEN + count * addr_len, addr_len)
    )
    return Advert(version, data[1], data[2], interval_cs, addresses, auth_type, auth_data)


def peek_vrid(data: bytes) -> int | None:
    """The VRID byte of a VRRP message, unvalidated, to pick the instance that decodes it."""
    return data[1] if len(data) >= HEADER_LEN else None


# IPv4 datagrams (raw IPv4 sockets deliver, and with IP_HDRINCL take, the IP header).


def parse_ipv4(datagram: bytes) -> Ipv4Datagram:
    """Split an IPv4 datagram; bytes beyond the total length (link padding) are dropped."""
    if len(datagram) < IPV4_HEADER_LEN:
        raise PacketError("too_short", f"{len(datagram)} bytes of IPv4")
    if datagram[0] >> 4 != 4:
        raise PacketError("bad_version", f"IP version {datagram[0] >> 4}")
    header_len = (datagram[0] & 0x0F) * 4
    total_len = struct.unpack_from("!H", datagram, 2)[0]
    if header_len < IPV4_HEADER_LEN or not header_len <= total_len <= len(datagram):
        raise PacketError("bad_length", f"IPv4 header {header_len}, total {total_len}")
    header = datagram[:header_len]
    if checksum(header) != 0:
        raise PacketError("bad_checksum", "IPv4 header")
    return Ipv4Datagram(
        src=IPv4Address(header[12:16]),
        dst=IPv4Address(header[16:20]),
        ttl=header[8],
        proto=header[9],
        header=header,
        payload=datagram[header_len:total_len],
    )


def _ipv4_header(
    src: IPv4Address, dst: IPv4Address, proto: int, payload_len: int, ttl: int, ip_id: int
) -> bytes:
    """keepalived's header: TOS network control, no DF, checksum left zero."""
    return struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        IP_TOS_NETWORK_CONTROL,
        IPV4_HEADER_LEN + payload_len,
        ip_id,
        0,
        ttl,
        proto,
        0,
        src.packed,
        dst.packed,
    )


def _with_ip_checksum(header: bytes) -> bytes:
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def build_ipv4_datagram(
    payload: bytes, src: IPv4Address, dst: IPv4Address, proto: int, ttl: int, ip_id: int
) -> bytes:
    """An IPv4 datagram as keepalived builds it for its IP_HDRINCL socket.

    The kernel rewrites the checksum (and fills a zero ``ip_id``); both are set here
    so that the bytes are complete as they stand.
    """
    header = _ipv4_header(src, dst, proto, len(payload), ttl, ip_id)
    return _with_ip_checksum(header) + payload


# IPSEC-AH as keepalived implements it for VRRPv2 (auth_type AH).


def _ah_icv(ip_header: bytes, ah_and_vrrp: bytes, password: bytes, unicast: bool) -> bytes:
    """HMAC-MD5-96 over the IP header with mutable fields zeroed, then AH (ICV zero) + VRRP.

    keepalived zeroes TOS, fragment offset and header checksum, but the TTL only for
    unicast: multicast adverts must have TTL 255 anyway, so it stays in the ICV.
    """
    mutable_cleared = bytearray(ip_header)
    mutable_cleared[1] = 0
    mutable_cleared[6:8] = b"\0\0"
    mutable_cleared[10:12] = b"\0\0"
    if unicast:
        mutable_cleared[8] = 0
    zero_icv = ah_and_vrrp[: AH_LEN - ICV_LEN] + bytes(ICV_LEN) + ah_and_vrrp[AH_LEN:]
    mac = hmac.new(pass_key(password), bytes(mutable_cleared) + zero_icv, hashlib.md5)
    return mac.digest()[:ICV_LEN]


def build_ah_datagram(
    adv: Advert,
    src: IPv4Address,
    dst: IPv4Address,
    password: bytes,
    seq: int,
    ip_id: int,
    ttl: int = TTL,
) -> bytes:
    """The whole IPv4 datagram (IP + AH + VRRPv2) to send on an IP_HDRINCL socket.

    The SPI is the source address. ``seq`` should start at 1 and grow by one per advert;
    keepalived takes ``ip_id`` from a counter that skips 0 (0 would let the kernel choose).
    A multicast ``dst`` is taken to mean a multicast instance, any other a unicast one.
    """
    if adv.version != 2 or adv.auth_type != AUTH_AH or src.version != 4:
        raise ValueError("AH is for VRRPv2 over IPv4 with auth_type AH")
    vrrp = encode(adv, src, dst)
    ah_fixed = struct.pack("!BBH4sI", VRRP_PROTO, (AH_LEN // 4) - 2, 0, src.packed, seq)
    header = _ipv4_header(src, dst, AH_PROTO, AH_LEN + len(vrrp), ttl, ip_id)
    body = ah_fixed + bytes(ICV_LEN) + vrrp
    icv = _ah_icv(header, body, password, unicast=not dst.is_multicast)
    return _with_ip_checksum(header) + ah_fixed + icv + vrrp


def verify_ah_datagram(datagram: bytes, password: bytes) -> tuple[Ipv4Datagram, int, bytes]:
    """Check an AH-protected advert; returns the datagram, the sequence number, the VRRP message.

    The sequence number is not judged here: replay protection needs the instance's state.
    """
    ip = parse_ipv4(datagram)
    if ip.proto != AH_PROTO:
        raise PacketError("bad_protocol", f"IP protocol {ip.proto}, expected AH")
    if len(ip.payload) < AH_LEN:
        raise PacketError("too_short", f"{len(ip.payload)} bytes of AH")
    next_header, _, _, spi, seq = struct.unpack_from("!BBH4sI", ip.payload)
    if next_header != VRRP_PROTO:
        raise PacketError("bad_protocol", f"AH next header {next_header}")
    icv = ip.payload[AH_LEN - ICV_LEN : AH_LEN]
    expected = _ah_icv(ip.header, ip.payload, password, unicast=not ip.dst.is_multicast)
    if not hmac.compare_digest(icv, expected):
        raise PacketError("bad_auth", "AH ICV mismatch")
    if spi != ip.src.packed:
        raise PacketError("bad_auth", "AH SPI is not the source address")
    return ip, seq, ip.payload[AH_LEN:]


# Link-layer announcements, built as keepalived's AF_PACKET sockets send them.


def vrrp_mac(vrid: int, v6: bool) -> bytes:
    """The virtual router MAC: 00:00:5e:00:01:VRID, or 00:00:5e:00:02:VRID for IPv6."""
    if not 0 <= vrid <= 255:
        raise ValueError(f"VRID {vrid}")
    return bytes((0x00, 0x00, 0x5E, 0x00, 0x02 if v6 else 0x01, vrid))


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")


def garp_frame(src_mac: bytes, ip: IPv4Address) -> bytes:
    """A gratuitous ARP request for ``ip``, as a full Ethernet frame (42 bytes, unpadded).

    keepalived sends an ARP *request* whose target hardware address is the broadcast
    address, not zeros.
    """
    _check_mac(src_mac)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
    arp += src_mac + ip.packed + BROADCAST_MAC + ip.packed
    return BROADCAST_MAC + src_mac + struct.pack("!H", 0x0806) + arp


def unsolicited_na_frame(src_mac: bytes, ip: IPv6Address, router: bool) -> bytes:
    """An unsolicited Neighbour Advertisement for ``ip`` to all nodes, as a full Ethernet frame.

    As keepalived does, the IPv6 source is the advertised address itself (even a global
    one), the Override flag is always set, Solicited never, and Router when the interface
    forwards IPv6. The target link-layer address option carries ``src_mac``.
    """
    _check_mac(src_mac)
    flags = 0x20 | (0x80 if router else 0)
    option = bytes((2, 1)) + src_mac  # target link-layer address, 8 bytes
    icmp = struct.pack("!BBHB3x", 136, 0, 0, flags) + ip.packed + option
    pseudo = _pseudo_header(ip, ALL_NODES, len(icmp), ICMPV6_PROTO)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), ICMPV6_PROTO, TTL) + ip.packed
    ipv6 += ALL_NODES.packed
    return ALL_NODES_MAC + src_mac + struct.pack("!H", 0x86DD) + ipv6 + icmp
