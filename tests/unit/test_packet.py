"""The VRRP wire codec against what keepalived 2.2.7 really sends.

Two references:

- the shared capture ``keepalived-2.2.7-runtime/pcap/vrrp_adverts_ka227.pcap`` (config
  ``pcap.conf`` beside it): VRRPv2 PASS multicast, VRRPv3 over IPv6, GARPs, unsolicited NAs and
  the priority-0 adverts at stop. Its VRRPv3 unicast instance never reached the wire there
  (nothing answered ARP for the peer, the capture holds only the kernel's ARP requests), so
  unicast comes from the second reference;
- ``data/ka227_ipv4_adverts.hex``: IPv4 datagrams from keepalived 2.2.7 (Debian bookworm
  package, /usr/sbin/keepalived) with IPSEC-AH (multicast and unicast), VRRPv3 unicast with
  the default and the ``old_unicast_checksum`` pseudo-header, VRRPv2 without auth and VRRPv3
  multicast. Captured as root like this: ``ip netns add kpyah-$$``; inside it a veth pair
  v0/v1, 198.18.0.1/24 on v0, v1 up without an address, and a permanent neighbour entry for
  the unicast peer 198.18.0.2 pointing at v1's MAC so that unicast adverts leave v0; an
  AF_PACKET socket (ETH_P_IP) bound to v1 recorded every frame while
  ``ip netns exec kpyah-$$ keepalived -n -l -D -f ka.conf -p … -r … -c …`` ran for 9 s and was
  then stopped with SIGTERM (hence the priority-0 adverts); the namespace was deleted after.
  The file's header holds the keepalived.conf used; Ethernet headers were stripped.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keepalived_py.vrrp.packet import (
    AUTH_AH,
    AUTH_NONE,
    AUTH_PASS,
    VRRP_GROUP_V4,
    VRRP_GROUP_V6,
    Advert,
    PacketError,
    build_ah_datagram,
    build_ipv4_datagram,
    checksum,
    decode,
    encode,
    garp_frame,
    parse_ipv4,
    pass_key,
    peek_vrid,
    unsolicited_na_frame,
    verify_ah_datagram,
    vrrp_mac,
)

from tests.conftest import SHARED, tier_missing
from tests.pcap import read_pcap

PCAP = SHARED / "conformance" / "keepalived-2.2.7-runtime" / "pcap" / "vrrp_adverts_ka227.pcap"
HEX_FIXTURE = Path(__file__).parent / "data" / "ka227_ipv4_adverts.hex"

V4 = IPv4Address
V6 = IPv6Address

# pcap.conf, by VRID: version, priority, interval (cs), addresses, auth type, auth data.
PCAP_CONF = {
    51: (2, 150, 100, (V4("192.168.77.10"), V4("192.168.77.11")), AUTH_PASS, b"secret12"),
    71: (3, 120, 100, (V6("fe80::71"), V6("fd00::71")), AUTH_NONE, b""),
}
PCAP_GARP_ADDRESSES = {V4("192.168.77.10"), V4("192.168.77.11"), V4("192.168.77.20")}
PCAP_NA_ADDRESSES = {V6("fe80::71"), V6("fd00::71")}

# The keepalived.conf in the hex fixture's header, by VRID.
AH_PASSWORDS = {81: b"ahsecret", 82: b"unicast-key-long"}
FIXTURE_CONF = {
    81: (2, 150, 100, (V4("198.18.1.81"), V4("198.18.1.82")), AUTH_AH),
    82: (2, 140, 100, (V4("198.18.1.83"),), AUTH_AH),
    83: (3, 130, 50, (V4("198.18.1.84"),), AUTH_NONE),
    84: (3, 120, 100, (V4("198.18.1.85"),), AUTH_NONE),
    85: (2, 110, 200, (V4("198.18.1.86"),), AUTH_NONE),
    86: (3, 100, 100, (V4("198.18.1.87"), V4("198.18.1.88"), V4("198.18.1.89")), AUTH_NONE),
}
SENDER, PEER = V4("198.18.0.1"), V4("198.18.0.2")


# --- reading the references ------------------------------------------------------------


def read_frames(path: Path) -> list[bytes]:
    return [frame for _, frame in read_pcap(path)]


@dataclass(frozen=True)
class Vrrp:
    src: V4 | V6
    dst: V4 | V6
    payload: bytes


@dataclass(frozen=True)
class Capture:
    vrrp: list[Vrrp]
    garps: list[bytes]
    nas: list[bytes]


def ethertype(frame: bytes) -> int:
    return struct.unpack_from("!H", frame, 12)[0]


@pytest.fixture(scope="module")
def capture() -> Capture:
    if not PCAP.is_file():
        tier_missing(f"conformance tier: keepalived 2.2.7 VRRP capture not found at {PCAP}")
    vrrp, garps, nas = [], [], []
    for frame in read_frames(PCAP):
        if ethertype(frame) == 0x0800 and frame[14 + 9] == 112:
            ip = parse_ipv4(frame[14:])
            vrrp.append(Vrrp(ip.src, ip.dst, ip.payload))
        elif ethertype(frame) == 0x86DD and frame[14 + 6] == 112:
            vrrp.append(Vrrp(V6(frame[22:38]), V6(frame[38:54]), frame[54:]))
        elif ethertype(frame) == 0x86DD and frame[14 + 6] == 58 and frame[54] == 136:
            nas.append(frame)
        elif ethertype(frame) == 0x0806 and frame[28:32] == frame[38:42]:
            # Gratuitous: sender and target protocol address are both the VIP. The kernel's
            # own ARP requests for the unicast peer are left out.
            garps.append(frame)
    return Capture(vrrp, garps, nas)


def read_fixture() -> dict[str, bytes]:
    out = {}
    for line in HEX_FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, hexdata = line.split()
            out[name] = bytes.fromhex(hexdata)
    return out


FIXTURE = read_fixture()


def with_ip_checksum(datagram: bytes | bytearray) -> bytes:
    header = bytearray(datagram[:20])
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + bytes(datagram[20:])


# --- the shared capture ------------------------------------------------------------------


def test_capture_holds_what_it_is_the_reference_for(capture: Capture) -> None:
    vrids = {p.payload[1] for p in capture.vrrp}
    assert vrids == set(PCAP_CONF)
    assert capture.garps and capture.nas


def test_captured_adverts_decode_to_the_config_and_reencode_byte_for_byte(
    capture: Capture,
) -> None:
    for packet in capture.vrrp:
        adv = decode(packet.payload, packet.src, packet.dst)
        version, priority, interval_cs, addresses, auth_type, auth_data = PCAP_CONF[adv.vrid]
        assert adv.version == version
        assert adv.priority in (priority, 0)
        assert adv.interval_cs == interval_cs
        assert adv.addresses == addresses
        assert adv.auth_type == auth_type
        assert adv.auth_data == auth_data
        assert packet.dst == (VRRP_GROUP_V4 if version == 2 else VRRP_GROUP_V6)
        assert peek_vrid(packet.payload) == adv.vrid
        assert encode(adv, packet.src, packet.dst) == packet.payload


def test_capture_ends_each_instance_with_a_priority_zero_advert(capture: Capture) -> None:
    for vrid in PCAP_CONF:
        priorities = [p.payload[2] for p in capture.vrrp if p.payload[1] == vrid]
        assert priorities[-1] == 0
        assert 0 not in priorities[:-1]


def test_captured_garps_rebuild_byte_for_byte(capture: Capture) -> None:
    seen = set()
    for frame in capture.garps:
        ip = V4(frame[28:32])
        seen.add(ip)
        assert garp_frame(frame[6:12], ip) == frame
    assert seen == PCAP_GARP_ADDRESSES


def test_captured_unsolicited_nas_rebuild_byte_for_byte(capture: Capture) -> None:
    seen = set()
    for frame in capture.nas:
        target = V6(frame[62:78])
        seen.add(target)
        # The capture host did not forward IPv6, so keepalived left the Router flag clear.
        assert unsolicited_na_frame(frame[6:12], target, router=False) == frame
    assert seen == PCAP_NA_ADDRESSES


# --- our own keepalived capture: AH, VRRPv3 unicast --------------------------------------


def test_fixture_has_every_kind() -> None:
    assert {parse_ipv4(d).payload[1] for n, d in FIXTURE.items() if not n.startswith("ah")} == {
        83, 84, 85, 86}
    assert {n for n in FIXTURE if n.startswith("ah")} == {
        "ah_mcast_seq1", "ah_mcast_seq2", "ah_mcast_seq7_prio0",
        "ah_unicast_seq1", "ah_unicast_seq2", "ah_unicast_seq7_prio0"}


@pytest.mark.parametrize("name", sorted(n for n in FIXTURE if n.startswith("ah_")))
def test_keepalived_ah_datagram_verifies_and_rebuilds_byte_for_byte(name: str) -> None:
    datagram = FIXTURE[name]
    vrid = datagram[20 + 24 + 1]
    ip, seq, payload = verify_ah_datagram(datagram, AH_PASSWORDS[vrid])
    assert ip.proto == 51 and ip.ttl == 255 and ip.src == SENDER
    assert ip.dst == (VRRP_GROUP_V4 if "mcast" in name else PEER)
    assert seq == int(name.split("_seq")[1].split("_")[0])

    adv = decode(payload, ip.src, ip.dst)
    version, priority, interval_cs, addresses, auth_type = FIXTURE_CONF[vrid]
    assert (adv.version, adv.interval_cs, adv.addresses, adv.auth_type) == (
        version, interval_cs, addresses, auth_type)
    assert adv.priority == (0 if name.endswith("prio0") else priority)
    assert adv.auth_data == b""

    ip_id = struct.unpack_from("!H", datagram, 4)[0]
    assert build_ah_datagram(adv, ip.src, ip.dst, AH_PASSWORDS[vrid], seq, ip_id) == datagram


def test_ah_key_is_the_password_cut_to_eight_bytes_as_keepalived_does() -> None:
    datagram = FIXTURE["ah_unicast_seq1"]
    verify_ah_datagram(datagram, b"unicast-")
    verify_ah_datagram(datagram, b"unicast-anything")
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(datagram, b"unicast")
    assert err.value.reason == "bad_auth"


@pytest.mark.parametrize("name", ["ah_mcast_seq1", "ah_unicast_seq1"])
def test_ah_rejects_wrong_password(name: str) -> None:
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(FIXTURE[name], b"wrong")
    assert err.value.reason == "bad_auth"


@pytest.mark.parametrize("name", ["ah_mcast_seq1", "ah_unicast_seq1"])
def test_ah_icv_ignores_tos_and_fragment_fields(name: str) -> None:
    datagram = bytearray(FIXTURE[name])
    datagram[1] = 0x00
    datagram[6:8] = b"\x40\x00"  # DF set in flight
    verify_ah_datagram(with_ip_checksum(datagram), AH_PASSWORDS[datagram[45]])


def test_ah_icv_covers_ttl_for_multicast_but_not_for_unicast() -> None:
    mcast = bytearray(FIXTURE["ah_mcast_seq1"])
    mcast[8] = 254
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(with_ip_checksum(mcast), AH_PASSWORDS[81])
    assert err.value.reason == "bad_auth"

    unicast = bytearray(FIXTURE["ah_unicast_seq1"])
    unicast[8] = 64
    ip, _, _ = verify_ah_datagram(with_ip_checksum(unicast), AH_PASSWORDS[82])
    assert ip.ttl == 64


@pytest.mark.parametrize("offset", [4, 20 + 8, 20 + 24 + 2, 20 + 24 + 8])
def test_ah_icv_covers_ip_id_sequence_and_vrrp_message(offset: int) -> None:
    datagram = bytearray(FIXTURE["ah_mcast_seq2"])
    datagram[offset] ^= 0x01
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(with_ip_checksum(datagram), AH_PASSWORDS[81])
    assert err.value.reason == "bad_auth"


def test_ah_rejects_spi_other_than_source_even_with_a_valid_icv() -> None:
    datagram = bytearray(FIXTURE["ah_mcast_seq1"])
    datagram[24:28] = PEER.packed
    # Re-sign by keepalived's recipe so that only the SPI is wrong.
    signed = bytearray(datagram)
    signed[1] = 0
    signed[6:8] = signed[10:12] = b"\0\0"
    signed[32:44] = bytes(12)
    icv = hmac.new(pass_key(AH_PASSWORDS[81]), bytes(signed), hashlib.md5).digest()[:12]
    datagram[32:44] = icv
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(bytes(datagram), AH_PASSWORDS[81])
    assert err.value.reason == "bad_auth"
    assert "SPI" in str(err.value)


def test_ah_datagram_structure() -> None:
    adv = Advert(2, 9, 100, 100, (V4("198.18.2.1"),), AUTH_AH)
    datagram = build_ah_datagram(adv, SENDER, VRRP_GROUP_V4, b"pw", seq=5, ip_id=77)
    assert datagram[:2] == b"\x45\xc0"
    assert struct.unpack_from("!HHH", datagram, 2) == (len(datagram), 77, 0)
    assert datagram[8:10] == bytes((255, 51))
    assert checksum(datagram[:20]) == 0
    assert datagram[20:22] == bytes((112, 4))  # next header VRRP, 6 words - 2
    assert datagram[24:28] == SENDER.packed
    assert struct.unpack_from("!I", datagram, 28)[0] == 5
    assert datagram[44:] == encode(adv, SENDER, VRRP_GROUP_V4)


def test_ah_needs_v2_with_auth_type_ah() -> None:
    with pytest.raises(ValueError):
        build_ah_datagram(Advert(3, 1, 1, 100, ()), SENDER, PEER, b"x", 1, 1)
    with pytest.raises(ValueError):
        build_ah_datagram(Advert(2, 1, 1, 100, (), AUTH_PASS), SENDER, PEER, b"x", 1, 1)


def test_v3_unicast_checksum_uses_the_peer_address_by_default() -> None:
    for name in ("v3_unicast", "v3_unicast_prio0"):
        ip = parse_ipv4(FIXTURE[name])
        assert ip.dst == PEER
        adv = decode(ip.payload, ip.src, ip.dst)
        version, priority, interval_cs, addresses, _ = FIXTURE_CONF[83]
        assert (adv.version, adv.interval_cs, adv.addresses) == (version, interval_cs, addresses)
        assert adv.priority == (0 if name.endswith("prio0") else priority)
        assert encode(adv, ip.src, ip.dst) == ip.payload
        with pytest.raises(PacketError) as err:
            decode(ip.payload, ip.src, VRRP_GROUP_V4)
        assert err.value.reason == "bad_checksum"


def test_v3_old_unicast_checksum_uses_the_multicast_group() -> None:
    for name in ("v3_unicast_old_checksum", "v3_unicast_old_checksum_prio0"):
        ip = parse_ipv4(FIXTURE[name])
        assert ip.dst == PEER
        with pytest.raises(PacketError) as err:
            decode(ip.payload, ip.src, ip.dst)
        assert err.value.reason == "bad_checksum"
        adv = decode(ip.payload, ip.src, VRRP_GROUP_V4)
        assert adv.vrid == 84 and adv.addresses == FIXTURE_CONF[84][3]
        assert encode(adv, ip.src, VRRP_GROUP_V4) == ip.payload


@pytest.mark.parametrize("name", ["v2_noauth_mcast", "v2_noauth_mcast_prio0", "v3_mcast",
                                  "v3_mcast_prio0"])
def test_keepalived_ipv4_multicast_adverts(name: str) -> None:
    ip = parse_ipv4(FIXTURE[name])
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.header[1]) == (
        SENDER, VRRP_GROUP_V4, 255, 112, 0xC0)
    adv = decode(ip.payload, ip.src, ip.dst)
    version, priority, interval_cs, addresses, auth_type = FIXTURE_CONF[adv.vrid]
    assert (adv.version, adv.interval_cs, adv.addresses, adv.auth_type, adv.auth_data) == (
        version, interval_cs, addresses, auth_type, b"")
    assert adv.priority == (0 if name.endswith("prio0") else priority)
    assert encode(adv, ip.src, ip.dst) == ip.payload


@pytest.mark.parametrize("name", sorted(n for n in FIXTURE if not n.startswith("ah_")))
def test_ipv4_datagram_rebuilds_byte_for_byte(name: str) -> None:
    datagram = FIXTURE[name]
    ip = parse_ipv4(datagram)
    ip_id = struct.unpack_from("!H", datagram, 4)[0]
    assert build_ipv4_datagram(ip.payload, ip.src, ip.dst, 112, 255, ip_id) == datagram


# --- encoding rules ----------------------------------------------------------------------


def test_checksum_rfc1071_example() -> None:
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # An odd byte counts as the high half of a last word.
    assert checksum(bytes.fromhex("0001f203f4f5f6")) == 0x2304


def test_v2_interval_is_whole_seconds_on_the_wire() -> None:
    adv = Advert(2, 1, 100, 300, (V4("198.18.2.1"),))
    data = encode(adv, SENDER, VRRP_GROUP_V4)
    assert data[5] == 3
    assert decode(data, SENDER, VRRP_GROUP_V4).interval_cs == 300


def test_v2_auth_data_is_nul_padded_to_eight_bytes() -> None:
    adv = Advert(2, 1, 100, 100, (V4("198.18.2.1"),), AUTH_PASS, pass_key(b"abc"))
    data = encode(adv, SENDER, VRRP_GROUP_V4)
    assert data[-8:] == b"abc\0\0\0\0\0"
    assert decode(data, SENDER, VRRP_GROUP_V4).auth_data == b"abc\0\0\0\0\0"
    plain = encode(Advert(2, 1, 100, 100, (V4("198.18.2.1"),)), SENDER, VRRP_GROUP_V4)
    assert len(plain) == 8 + 4 + 8 and plain[-8:] == bytes(8)


def test_v3_interval_is_centiseconds_and_ignores_reserved_bits_on_receipt() -> None:
    adv = Advert(3, 1, 100, 0xFFF, (V4("198.18.2.1"),))
    data = bytearray(encode(adv, SENDER, VRRP_GROUP_V4))
    assert data[4:6] == b"\x0f\xff"
    data[4] |= 0xF0
    data[6:8] = b"\0\0"
    data[6:8] = struct.pack("!H", checksum(pseudo(SENDER, VRRP_GROUP_V4, bytes(data))))
    assert decode(bytes(data), SENDER, VRRP_GROUP_V4).interval_cs == 0xFFF


def pseudo(src: V4 | V6, dst: V4 | V6, data: bytes) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, 112, len(data)) + data
    return src.packed + dst.packed + struct.pack("!IxxxB", len(data), 112) + data


def test_v2_over_ipv6_has_no_auth_data_and_a_pseudo_header_checksum() -> None:
    # keepalived allows VRRPv2 over IPv6 outside strict mode; the kernel computes the sum.
    src = V6("fe80::1")
    adv = Advert(2, 5, 100, 100, (V6("fd00::5"),))
    data = encode(adv, src, VRRP_GROUP_V6)
    assert len(data) == 8 + 16
    assert checksum(pseudo(src, VRRP_GROUP_V6, data)) == 0
    assert decode(data, src, VRRP_GROUP_V6) == adv


def test_encode_rejects_what_cannot_be_sent() -> None:
    a4 = (V4("198.18.2.1"),)
    bad: list[tuple[Advert, V4 | V6, V4 | V6]] = [
        (Advert(3, 1, 1, 100, a4), SENDER, VRRP_GROUP_V6),
        (Advert(3, 1, 1, 100, (V6("fd00::1"),)), SENDER, VRRP_GROUP_V4),
        (Advert(3, 1, 1, 4096, a4), SENDER, VRRP_GROUP_V4),
        (Advert(2, 1, 1, 25600, a4), SENDER, VRRP_GROUP_V4),
        (Advert(2, 1, 1, 100, a4, AUTH_PASS, b"123456789"), SENDER, VRRP_GROUP_V4),
        (Advert(4, 1, 1, 100, a4), SENDER, VRRP_GROUP_V4),
        (Advert(3, 256, 1, 100, a4), SENDER, VRRP_GROUP_V4),
    ]
    for adv, src, dst in bad:
        with pytest.raises(ValueError):
            encode(adv, src, dst)


def test_pass_key() -> None:
    assert pass_key(b"secret12345") == b"secret12"
    assert pass_key(b"ab") == b"ab" + bytes(6)


def test_vrrp_mac() -> None:
    assert vrrp_mac(51, v6=False) == bytes.fromhex("00005e000133")
    assert vrrp_mac(255, v6=True) == bytes.fromhex("00005e0002ff")
    with pytest.raises(ValueError):
        vrrp_mac(256, v6=False)


def test_garp_fields() -> None:
    mac = bytes.fromhex("020000000001")
    frame = garp_frame(mac, V4("198.18.2.7"))
    assert frame[:12] == b"\xff" * 6 + mac
    assert frame[12:22] == bytes.fromhex("0806" "0001" "0800" "06" "04" "0001")
    assert frame[22:] == mac + bytes((198, 18, 2, 7)) + b"\xff" * 6 + bytes((198, 18, 2, 7))


def test_unsolicited_na_router_flag_and_checksum() -> None:
    mac = bytes.fromhex("020000000001")
    target = V6("2001:db8::7")
    plain = unsolicited_na_frame(mac, target, router=False)
    router = unsolicited_na_frame(mac, target, router=True)
    assert plain[:14] == bytes.fromhex("333300000001") + mac + b"\x86\xdd"
    assert plain[14 + 7] == 255  # hop limit
    assert plain[22:38] == target.packed and V6(plain[38:54]) == V6("ff02::1")
    assert plain[58] == 0x20 and router[58] == 0xA0
    for frame in (plain, router):
        icmp = frame[54:]
        ph = frame[22:54] + struct.pack("!IxxxB", len(icmp), 58)
        assert checksum(ph + icmp) == 0
        assert icmp[24:] == b"\x02\x01" + mac


def test_peek_vrid() -> None:
    assert peek_vrid(bytes((0x31, 42)) + bytes(6)) == 42
    assert peek_vrid(b"\x31\x2a") is None


# --- bad input: one reason each ----------------------------------------------------------


def valid_v2() -> bytes:
    adv = Advert(2, 7, 100, 100, (V4("198.18.2.1"), V4("198.18.2.2")), AUTH_PASS, b"pw")
    return encode(adv, SENDER, VRRP_GROUP_V4)


def resum_v2(data: bytes | bytearray) -> bytes:
    data = bytearray(data)
    data[6:8] = b"\0\0"
    data[6:8] = struct.pack("!H", checksum(bytes(data)))
    return bytes(data)


def reason_of(data: bytes, src: V4 | V6 = SENDER, dst: V4 | V6 = VRRP_GROUP_V4) -> str:
    with pytest.raises(PacketError) as err:
        decode(data, src, dst)
    return err.value.reason


def test_decode_reasons() -> None:
    good = valid_v2()
    assert reason_of(good[:7]) == "too_short"
    assert reason_of(resum_v2(bytes((0x11,)) + good[1:])) == "bad_version"
    assert reason_of(resum_v2(bytes((0x22,)) + good[1:])) == "bad_type"
    assert reason_of(resum_v2(good + b"\0")) == "bad_length"
    assert reason_of(resum_v2(good[:3] + bytes((3,)) + good[4:])) == "bad_address_count"
    assert reason_of(good[:-1] + bytes((good[-1] ^ 1,))) == "bad_checksum"
    # An unknown auth type is for the engine to count, not a malformed message.
    assert decode(resum_v2(good[:4] + bytes((3,)) + good[5:]), SENDER, VRRP_GROUP_V4).auth_type == 3
    v6 = encode(Advert(3, 1, 1, 100, (V6("fd00::1"),)), V6("fe80::1"), VRRP_GROUP_V6)
    assert reason_of(v6, V6("fe80::2"), VRRP_GROUP_V6) == "bad_checksum"
    assert reason_of(v6[:-1], V6("fe80::1"), VRRP_GROUP_V6) == "bad_length"


def test_parse_ipv4_reasons() -> None:
    good = FIXTURE["v3_mcast"]
    cases = {
        "too_short": good[:19],
        "bad_version": with_ip_checksum(bytes((0x65,)) + good[1:]),
        "bad_length": with_ip_checksum(good[:2] + struct.pack("!H", len(good) + 1) + good[4:]),
        "bad_checksum": good[:10] + b"\0\0" + good[12:],
    }
    for reason, data in cases.items():
        with pytest.raises(PacketError) as err:
            parse_ipv4(data)
        assert err.value.reason == reason
    ihl_too_small = with_ip_checksum(bytes((0x44,)) + good[1:])
    with pytest.raises(PacketError):
        parse_ipv4(ihl_too_small)


def test_parse_ipv4_drops_link_padding() -> None:
    good = FIXTURE["v3_unicast"]
    assert parse_ipv4(good + bytes(14)).payload == parse_ipv4(good).payload == good[20:]


def test_verify_ah_reasons() -> None:
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(FIXTURE["v3_mcast"], b"x")
    assert err.value.reason == "bad_protocol"
    ah = FIXTURE["ah_mcast_seq1"]
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(with_ip_checksum(ah[:2] + struct.pack("!H", 40) + ah[4:40]), b"x")
    assert err.value.reason == "too_short"
    with pytest.raises(PacketError) as err:
        verify_ah_datagram(ah[:20] + bytes((6,)) + ah[21:], AH_PASSWORDS[81])
    assert err.value.reason == "bad_protocol"


# --- properties ----------------------------------------------------------------------------

v4_addresses = st.builds(V4, st.integers(0, 2**32 - 1))
v6_addresses = st.builds(V6, st.integers(0, 2**128 - 1))


@st.composite
def adverts(draw: st.DrawFn) -> tuple[Advert, V4 | V6, V4 | V6]:
    v6 = draw(st.booleans())
    version = draw(st.sampled_from([2, 3]))
    addrs = draw(st.lists(v6_addresses if v6 else v4_addresses, max_size=20))
    src = draw(v6_addresses if v6 else v4_addresses)
    dst = draw(v6_addresses if v6 else v4_addresses)
    auth_type, auth_data = AUTH_NONE, b""
    if version == 2:
        interval = draw(st.integers(0, 255)) * 100
        auth_type = draw(st.sampled_from([AUTH_NONE, AUTH_PASS, AUTH_AH]))
        if not v6:
            auth_data = draw(st.binary(min_size=8, max_size=8).filter(any) | st.just(b""))
    else:
        interval = draw(st.integers(0, 0xFFF))
    adv = Advert(version, draw(st.integers(0, 255)), draw(st.integers(0, 255)), interval,
                 tuple(addrs), auth_type, auth_data)
    return adv, src, dst


@given(adverts())
def test_encode_decode_round_trip(case: tuple[Advert, V4 | V6, V4 | V6]) -> None:
    adv, src, dst = case
    data = encode(adv, src, dst)
    assert decode(data, src, dst) == adv
    assert peek_vrid(data) == adv.vrid


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, V4 | V6, V4 | V6]:
    adv, src, dst = draw(adverts())
    data = bytearray(encode(adv, src, dst))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "grow"]))
        if how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[draw(st.integers(0, len(data))):]
        else:
            data += draw(st.binary(max_size=40))
    if draw(st.booleans()) and len(data) >= 8:
        # Fix the checksum so that the checks behind it are reached too.
        data[6:8] = b"\0\0"
        summed = bytes(data) if (src.version == 4 and data[0] >> 4 == 2) else pseudo(
            src, dst, bytes(data))
        data[6:8] = struct.pack("!H", checksum(summed))
    return bytes(data), src, dst


@settings(max_examples=500)
@given(mutated())
def test_decode_of_mutated_adverts_raises_only_packet_error(
    case: tuple[bytes, V4 | V6, V4 | V6],
) -> None:
    data, src, dst = case
    try:
        adv = decode(data, src, dst)
    except PacketError as err:
        assert err.reason
        return
    # Whatever is accepted can be sent back and means the same (v3 reserved bits aside).
    assert decode(encode(adv, src, dst), src, dst) == adv


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans())
def test_decode_of_random_bytes_raises_only_packet_error(data: bytes, v6: bool) -> None:
    src, dst = (ip_address("fe80::1"), VRRP_GROUP_V6) if v6 else (SENDER, VRRP_GROUP_V4)
    try:
        decode(data, src, dst)
    except PacketError:
        pass
    peek_vrid(data)


@settings(max_examples=300)
@given(st.sampled_from(sorted(FIXTURE)), st.binary(max_size=80), st.integers(0, 120))
def test_ipv4_and_ah_parsers_raise_only_packet_error(name: str, noise: bytes, cut: int) -> None:
    for data in (noise, FIXTURE[name][:cut] + noise, FIXTURE[name][:cut]):
        for parse in (parse_ipv4, lambda d: verify_ah_datagram(d, b"ahsecret")):
            try:
                parse(data)
            except PacketError:
                pass
