"""What our agent puts on the wire, field for field against keepalived 2.2.7's own packets.

The reference is keepalived's capture in shared/conformance/keepalived-2.2.7-runtime/pcap
(``pcap.conf``: a VRRPv2 PASS multicast instance, a VRRPv3 unicast one, a VRRPv3 IPv6 one).
Here our agent runs the same configuration on lab host ``a``, with 192.168.77.x moved to
198.18.0.x and fd00:: to 2001:db8:: (host ``a`` takes 198.18.0.1, the peer ``b`` 198.18.0.2,
as in the reference), while an AF_PACKET socket on ``b`` records everything through start,
master and SIGTERM.  Both captures are decoded here, independently of the agent's codec, and
every header field is compared after mapping keepalived's addresses and MAC onto ours.

keepalived's VRRPv3 unicast adverts never reached the wire in that capture (nothing answered
ARP for its peer), so that kind is compared with the unicast datagrams in
tests/unit/data/ka227_ipv4_adverts.hex (same keepalived, same interval, source and peer;
only the VRID, priority and VIP differ and are taken from pcap.conf instead).
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path

import pytest

from tests.conftest import SHARED, tier_missing
from tests.integration.agents import Router, wait_for
from tests.lab import Host, Lab, ip
from tests.pcap import read_pcap

REFERENCE = SHARED / "conformance" / "keepalived-2.2.7-runtime" / "pcap"
REFERENCE_PCAP = REFERENCE / "vrrp_adverts_ka227.pcap"
UNICAST_HEX = Path(__file__).resolve().parent.parent / "unit" / "data" / "ka227_ipv4_adverts.hex"
CAPTURE = str(Path(__file__).resolve().parent.parent / "pcap.py")

# pcap.conf with the lab's addresses; no global_defs, so every default is keepalived's.
CONFIG = """
vrrp_instance V2_MCAST {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret12
    }
    virtual_ipaddress {
        198.18.0.10/24
        198.18.0.11/24
    }
}
vrrp_instance V3_UNICAST {
    state BACKUP
    interface eth0
    virtual_router_id 61
    priority 100
    version 3
    advert_int 0.5
    unicast_src_ip 198.18.0.1
    unicast_peer {
        198.18.0.2
    }
    virtual_ipaddress {
        198.18.0.20/24
    }
}
vrrp_instance V3_IPV6 {
    state BACKUP
    interface eth0
    virtual_router_id 71
    priority 120
    virtual_ipaddress {
        fe80::71/64
        2001:db8::71/64
    }
}
"""
SOURCE, PEER = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
# VRID: priority, interval in centiseconds, advertised addresses
INSTANCES = {
    51: (150, 100, (IPv4Address("198.18.0.10"), IPv4Address("198.18.0.11"))),
    61: (100, 50, (IPv4Address("198.18.0.20"),)),
    71: (120, 100, (IPv6Address("fe80::71"), IPv6Address("2001:db8::71"))),
}
GARP_VIPS = {IPv4Address(f"198.18.0.{n}") for n in (10, 11, 20)}
NA_VIPS = {IPv6Address("fe80::71"), IPv6Address("2001:db8::71")}
GARP_REPEAT, GARP_DELAY = 5, 5.0        # keepalived's defaults: garp_master_repeat, _delay

ETH_IP, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
VRRP, ICMPV6, NEIGHBOUR_ADVERT = 112, 58, 136

Fields = dict[str, object]


# -- decoding, independent of agent/vrrp/packet.py --------------------------------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, length: int,
                  proto: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def vrrp_fields(msg: bytes, src: IPv4Address | IPv6Address,
                dst: IPv4Address | IPv6Address) -> Fields:
    version, kind = msg[0] >> 4, msg[0] & 0x0F
    count = msg[3]
    size = 4 if src.version == 4 else 16
    addresses = tuple(ip_address(msg[8 + i * size:8 + (i + 1) * size]) for i in range(count))
    out: Fields = {"vrrp.version": version, "vrrp.type": kind, "vrrp.vrid": msg[1],
                   "vrrp.priority": msg[2], "vrrp.count": count, "vrrp.addresses": addresses,
                   "vrrp.length": len(msg)}
    if version == 2:
        out["vrrp.auth_type"] = msg[4]
        out["vrrp.interval_cs"] = msg[5] * 100
        out["vrrp.auth_data"] = msg[8 + count * size:]
        out["vrrp.checksum_ok"] = checksum(msg) == 0
    else:
        out["vrrp.reserved"] = msg[4] >> 4
        out["vrrp.interval_cs"] = struct.unpack_from("!H", msg, 4)[0] & 0x0FFF
        out["vrrp.trailer"] = msg[8 + count * size:]
        out["vrrp.checksum_ok"] = checksum(pseudo_header(src, dst, len(msg), VRRP) + msg) == 0
    return out


def ipv4_fields(datagram: bytes) -> tuple[Fields, bytes]:
    ihl = datagram[0] & 0x0F
    flags_fragment = struct.unpack_from("!H", datagram, 6)[0]
    out: Fields = {
        "ip.version": datagram[0] >> 4, "ip.ihl": ihl, "ip.tos": datagram[1],
        "ip.length_ok": struct.unpack_from("!H", datagram, 2)[0] == len(datagram),
        "ip.id_set": struct.unpack_from("!H", datagram, 4)[0] != 0,
        "ip.reserved_flag": bool(flags_fragment & 0x8000), "ip.df": bool(flags_fragment & 0x4000),
        "ip.mf": bool(flags_fragment & 0x2000), "ip.fragment_offset": flags_fragment & 0x1FFF,
        "ip.ttl": datagram[8], "ip.proto": datagram[9],
        "ip.checksum_ok": checksum(datagram[:ihl * 4]) == 0,
        "ip.src": IPv4Address(datagram[12:16]), "ip.dst": IPv4Address(datagram[16:20]),
    }
    return out, datagram[ihl * 4:]


def ipv6_fields(packet: bytes) -> tuple[Fields, bytes]:
    first = struct.unpack_from("!I", packet, 0)[0]
    out: Fields = {
        "ip6.version": first >> 28, "ip6.traffic_class": (first >> 20) & 0xFF,
        # the kernel's automatic flow label, a hash of the addresses: only whether it is set
        "ip6.flow_label_set": bool(first & 0xFFFFF),
        "ip6.length_ok": struct.unpack_from("!H", packet, 4)[0] == len(packet) - 40,
        "ip6.next_header": packet[6], "ip6.hop_limit": packet[7],
        "ip6.src": IPv6Address(packet[8:24]), "ip6.dst": IPv6Address(packet[24:40]),
    }
    return out, packet[40:]


def ethernet_fields(frame: bytes) -> Fields:
    return {"eth.dst": frame[0:6], "eth.src": frame[6:12],
            "eth.type": struct.unpack_from("!H", frame, 12)[0]}


def arp_fields(frame: bytes) -> Fields:
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    return {**ethernet_fields(frame), "frame.length": len(frame),
            "arp.htype": htype, "arp.ptype": ptype, "arp.hlen": hlen, "arp.plen": plen,
            "arp.op": op, "arp.sender_mac": frame[22:28],
            "arp.sender_ip": IPv4Address(frame[28:32]), "arp.target_mac": frame[32:38],
            "arp.target_ip": IPv4Address(frame[38:42])}


def na_fields(frame: bytes) -> Fields:
    ip6, icmp = ipv6_fields(frame[14:])
    flags = icmp[4]
    assert isinstance(ip6["ip6.src"], IPv6Address) and isinstance(ip6["ip6.dst"], IPv6Address)
    icmp_ok = checksum(pseudo_header(ip6["ip6.src"], ip6["ip6.dst"], len(icmp), ICMPV6)
                       + icmp) == 0
    return {**ethernet_fields(frame), **ip6, "frame.length": len(frame),
            "icmp6.type": icmp[0], "icmp6.code": icmp[1], "icmp6.checksum_ok": icmp_ok,
            "na.router": bool(flags & 0x80), "na.solicited": bool(flags & 0x40),
            "na.override": bool(flags & 0x20),
            "na.reserved": struct.unpack_from("!I", icmp, 4)[0] & 0x1FFFFFFF,
            "na.target": IPv6Address(icmp[8:24]), "na.option_type": icmp[24],
            "na.option_length": icmp[25], "na.option_mac": icmp[26:32]}


def advert_fields(frame: bytes, ethernet: bool = True) -> Fields:
    """An advert in an Ethernet frame, or from the IP header on (``ethernet=False``)."""
    eth: Fields = {}
    if ethernet:
        eth, frame = ethernet_fields(frame), frame[14:]
    if frame[0] >> 4 == 4:
        ip_part, msg = ipv4_fields(frame)
        src, dst = ip_part["ip.src"], ip_part["ip.dst"]
    else:
        ip_part, msg = ipv6_fields(frame)
        src, dst = ip_part["ip6.src"], ip_part["ip6.dst"]
    assert isinstance(src, IPv4Address | IPv6Address) and isinstance(dst, IPv4Address | IPv6Address)
    return {**eth, **ip_part, **vrrp_fields(msg, src, dst)}


@dataclass
class Wire:
    """The frames one router sent, sorted by kind."""

    adverts: dict[int, list[tuple[float, Fields]]]      # by VRID
    garps: dict[IPv4Address, list[tuple[float, Fields]]]
    nas: dict[IPv6Address, list[tuple[float, Fields]]]


def sort_frames(frames: list[tuple[float, bytes]], mac: bytes) -> Wire:
    wire = Wire(defaultdict(list), defaultdict(list), defaultdict(list))
    for when, frame in frames:
        if frame[6:12] != mac:
            continue
        kind = struct.unpack_from("!H", frame, 12)[0]
        if (kind == ETH_IP and frame[14 + 9] == VRRP) or (kind == ETH_IPV6 and frame[20] == VRRP):
            fields = advert_fields(frame)
            wire.adverts[fields["vrrp.vrid"]].append((when, fields))  # type: ignore[index]
        elif kind == ETH_ARP and frame[28:32] == frame[38:42]:
            # gratuitous: sender and target address are the VIP (not the kernel's own ARP)
            wire.garps[IPv4Address(frame[28:32])].append((when, arp_fields(frame)))
        elif kind == ETH_IPV6 and frame[20] == ICMPV6 and frame[54] == NEIGHBOUR_ADVERT:
            wire.nas[IPv6Address(frame[62:78])].append((when, na_fields(frame)))
    return wire


# -- mapping keepalived's capture onto our lab ---------------------------------------------------


def translator(ka_mac: bytes, mac: bytes, ka_link_local: IPv6Address,
               link_local: IPv6Address) -> Callable[[Fields], Fields]:
    """Rewrites a reference packet's fields with our addresses and MAC."""
    old4, old6 = IPv4Network("192.168.77.0/24"), IPv6Network("fd00::/64")
    new4, new6 = IPv4Network("198.18.0.0/24"), IPv6Network("2001:db8::/64")

    def one(value: object) -> object:
        if isinstance(value, tuple):
            return tuple(one(v) for v in value)
        if value == ka_mac:
            return mac
        if value == ka_link_local:
            return link_local
        if isinstance(value, IPv4Address) and value in old4:
            return new4[int(value) - int(old4.network_address)]
        if isinstance(value, IPv6Address) and value in old6:
            return new6[int(value) - int(old6.network_address)]
        return value

    return lambda fields: {key: one(value) for key, value in fields.items()}


def link_local_of(host: Host) -> IPv6Address:
    for text in host.addresses():
        address = IPv6Address(text.split("/")[0]) if ":" in text else None
        if address is not None and address.is_link_local and address != IPv6Address("fe80::71"):
            return address
    raise LookupError(f"{host.name}: no link-local address")


def unicast_reference() -> dict[bool, Fields]:
    """keepalived's VRRPv3 unicast adverts (by priority 0 or not), as pcap.conf's V3_UNICAST."""
    out = {}
    for line in UNICAST_HEX.read_text().splitlines():
        if line.startswith("v3_unicast ") or line.startswith("v3_unicast_prio0 "):
            name, hexdata = line.split()
            fields = advert_fields(bytes.fromhex(hexdata), ethernet=False)
            assert (fields["vrrp.vrid"], fields["vrrp.interval_cs"]) == (83, 50)
            assert (fields["ip.src"], fields["ip.dst"]) == (SOURCE, PEER)
            stop = name.endswith("prio0")
            priority, _interval, addresses = INSTANCES[61]
            fields.update({"vrrp.vrid": 61, "vrrp.priority": 0 if stop else priority,
                           "vrrp.addresses": addresses})
            out[stop] = fields
    assert set(out) == {False, True}
    return out


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Run:
    ours: Wire
    ka: Wire
    translate: Callable[[Fields], Fields]
    a: Host
    b: Host
    stopped_at: float           # wall clock of our SIGTERM
    log: str


def renumber(host: Host, old: IPv4Address, new: IPv4Address) -> None:
    ip("-n", host.netns, "addr", "del", f"{old}/24", "dev", "eth0")
    ip("-n", host.netns, "addr", "add", f"{new}/24", "dev", "eth0")


@pytest.fixture(scope="module")
def run(root_only: None) -> Iterator[Run]:
    if not REFERENCE_PCAP.is_file() or not UNICAST_HEX.is_file():
        tier_missing(f"wire tier: keepalived 2.2.7 reference capture not found at "
                     f"{REFERENCE_PCAP} (or {UNICAST_HEX})")
    reference = read_pcap(REFERENCE_PCAP)
    ka_mac = reference[0][1][6:12]
    ka_v6 = [f for _, f in reference if f[6:12] == ka_mac and f[12:14] == b"\x86\xdd"
             and f[20] == VRRP]
    ka_link_local = IPv6Address(ka_v6[0][22:38])

    with Lab(["a", "b"]) as lab:
        a, b = lab.host("a"), lab.host("b")
        renumber(a, a.ip4, SOURCE)
        renumber(b, b.ip4, PEER)
        router = Router(a, CONFIG, "agent")
        try:
            path = router.dir / "wire.pcap"
            capture = b.spawn([sys.executable, CAPTURE, "eth0", str(path)],
                              stdout=subprocess.PIPE, text=True)
            assert capture.stdout is not None and capture.stdout.readline().strip() == "ready"
            router.start()
            for name in ("V2_MCAST", "V3_UNICAST", "V3_IPV6"):
                wait_for(f"{name} master", lambda n=name: f"({n}) Entering MASTER STATE"
                         in router.log_text(), timeout=10)
            # the delayed round of gratuitous ARPs / NAs, then a graceful stop
            time.sleep(GARP_DELAY + 1.0)
            stopped_at = time.time()
            router.stop(signal.SIGTERM)
            time.sleep(0.3)
            capture.send_signal(signal.SIGTERM)
            capture.wait(5)
            ours = sort_frames(read_pcap(path), a.mac)
            translate = translator(ka_mac, a.mac, ka_link_local, link_local_of(a))
            yield Run(ours, sort_frames(reference, ka_mac), translate, a, b, stopped_at,
                      router.log_text())
        finally:
            router.close()


def distinct(packets: list[tuple[float, Fields]]) -> list[Fields]:
    """The different field sets among ``packets``, in order of first appearance."""
    out: list[Fields] = []
    for _, fields in packets:
        if fields not in out:
            out.append(fields)
    return out


def split_stop(packets: list[tuple[float, Fields]]) -> tuple[list[Fields], list[Fields]]:
    """(the distinct running adverts, the distinct priority-0 ones)."""
    running = [(t, f) for t, f in packets if f["vrrp.priority"] != 0]
    stopping = [(t, f) for t, f in packets if f["vrrp.priority"] == 0]
    return distinct(running), distinct(stopping)


# -- the tests -------------------------------------------------------------------------------


def test_capture_has_every_kind(run: Run) -> None:
    assert set(run.ours.adverts) == set(INSTANCES), run.log
    assert set(run.ours.garps) == GARP_VIPS
    assert set(run.ours.nas) == NA_VIPS
    assert set(run.ka.adverts) == {51, 71}


@pytest.mark.parametrize("vrid", [51, 71], ids=["v2-pass-multicast", "v3-ipv6"])
def test_multicast_adverts_match_keepalived_field_for_field(run: Run, vrid: int) -> None:
    ours_running, ours_stop = split_stop(run.ours.adverts[vrid])
    ka_running, ka_stop = split_stop(run.ka.adverts[vrid])
    # every advert of a kind is the same, bar the IP identification and checksums
    assert len(ours_running) == 1 and len(ka_running) == 1
    assert len(ours_stop) == 1 and len(ka_stop) == 1
    priority, interval_cs, addresses = INSTANCES[vrid]
    expected = run.translate(ka_running[0])
    assert (expected["vrrp.priority"], expected["vrrp.interval_cs"],
            expected["vrrp.addresses"]) == (priority, interval_cs, addresses)
    assert ours_running[0] == expected
    assert ours_stop[0] == run.translate(ka_stop[0])


def test_unicast_adverts_match_keepalived_field_for_field(run: Run) -> None:
    ours_running, ours_stop = split_stop(run.ours.adverts[61])
    reference = unicast_reference()
    ethernet = {"eth.dst": run.b.mac, "eth.src": run.a.mac, "eth.type": ETH_IP}
    assert ours_running == [{**ethernet, **reference[False]}]
    assert ours_stop == [{**ethernet, **reference[True]}]


@pytest.mark.parametrize("kind", ["garps", "nas"])
def test_announcements_match_keepalived_field_for_field(run: Run, kind: str) -> None:
    ours: dict = getattr(run.ours, kind)
    ka: dict = getattr(run.ka, kind)
    reference = {run.translate({"vip": vip})["vip"]: packets for vip, packets in ka.items()}
    assert set(ours) == set(reference)
    for vip, packets in ours.items():
        assert distinct(packets) == [run.translate(f) for f in distinct(reference[vip])], vip


def bursts(packets: list[tuple[float, Fields]]) -> list[tuple[float, int]]:
    """(start, size) of each run of packets less than a second apart."""
    out: list[tuple[float, int]] = []
    last = None
    for when, _ in packets:
        if last is None or when - last > 1.0:
            out.append((when, 0))
        out[-1] = (out[-1][0], out[-1][1] + 1)
        last = when
    return out


def test_announcement_rounds_as_keepalived(run: Run) -> None:
    """garp_master_repeat at once on becoming master, as many again after garp_master_delay."""
    # keepalived's capture: .20 (master first) shows both rounds; its stop came before
    # the second round of the others.
    ka20 = bursts(run.ka.garps[IPv4Address("192.168.77.20")])
    assert [size for _, size in ka20] == [GARP_REPEAT, GARP_REPEAT]
    assert GARP_DELAY - 0.1 < ka20[1][0] - ka20[0][0] < GARP_DELAY + 0.1
    for packets in (*run.ka.garps.values(), *run.ka.nas.values()):
        assert bursts(packets)[0][1] == GARP_REPEAT

    figures = {}
    for vip, packets in (*run.ours.garps.items(), *run.ours.nas.items()):
        rounds = bursts(packets)
        figures[str(vip)] = rounds
        assert [size for _, size in rounds] == [GARP_REPEAT, GARP_REPEAT], (vip, rounds)
        gap = rounds[1][0] - rounds[0][0]
        assert GARP_DELAY - 0.1 < gap < GARP_DELAY + 0.3, (vip, gap)
        # one round goes out at once (keepalived's vrrp_garp_interval is 0)
        first = [t for t, _ in packets if t < rounds[0][0] + 1.0]
        assert first[-1] - first[0] < 0.1, (vip, first)
    print({vip: [(round(t - rounds[0][0], 3), n) for t, n in rounds]
           for vip, rounds in figures.items()})


def test_stop_sends_one_priority_zero_advert_per_instance(run: Run) -> None:
    for vrid in INSTANCES:
        priorities = [f["vrrp.priority"] for _, f in run.ours.adverts[vrid]]
        times = [t for t, _ in run.ours.adverts[vrid]]
        assert priorities[-1] == 0 and 0 not in priorities[:-1], (vrid, priorities)
        assert times[-1] >= run.stopped_at - 0.01
    for vrid in (51, 71):
        priorities = [f["vrrp.priority"] for _, f in run.ka.adverts[vrid]]
        assert priorities[-1] == 0 and 0 not in priorities[:-1]


def test_adverts_keep_their_interval(run: Run) -> None:
    for vrid, (_priority, interval_cs, _addresses) in INSTANCES.items():
        times = [t for t, f in run.ours.adverts[vrid] if f["vrrp.priority"]]
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        assert len(gaps) >= 4
        median = gaps[len(gaps) // 2]
        assert abs(median - interval_cs / 100) < 0.02, (vrid, gaps)
