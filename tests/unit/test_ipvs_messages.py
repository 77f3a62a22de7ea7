"""agent/ipvs/messages.py: requests as the kernel reads them, replies as it writes them.

The bytes are checked with a netlink attribute walker of its own, not with the
message classes under test (a wrong type would decode back to what was encoded).
The layouts are the kernel's (ip_vs_ctl.c: ip_vs_genl_parse_service/_dest,
ip_vs_genl_fill_service/_dest/_daemon); test_ipvs_vm.py checks them on a real one.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from keepalived_py.ipvs import messages as m
from keepalived_py.ipvs.model import (
    AF_INET6,
    DestKey,
    DestSpec,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
    Stats,
    SyncDaemon,
    Timeouts,
)

GENL_HEADER = 16 + 4        # nlmsghdr + genlmsghdr
NLA_F_MASK = 0x3FFF          # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# attribute numbers of include/uapi/linux/ip_vs.h
CMD_SERVICE, CMD_DEST, CMD_DAEMON, CMD_TIMEOUT_TCP, CMD_TIMEOUT_UDP = 1, 2, 3, 4, 6
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK = 1, 2, 3, 4, 5
SVC_SCHED, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK, SVC_PE = 6, 7, 8, 9, 11
DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_U, DEST_L = 1, 2, 3, 4, 5, 6
DEST_FAMILY, DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS = 11, 13, 14, 15
DAEMON_STATE, DAEMON_IFN, DAEMON_ID, DAEMON_MAXLEN = 1, 2, 3, 4
DAEMON_GROUP, DAEMON_GROUP6, DAEMON_PORT, DAEMON_TTL = 5, 6, 7, 8


def attributes(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type -> payload) of ``data``."""
    found = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        found[kind & NLA_F_MASK] = data[4:length]
        data = data[(length + 3) & ~3:]
    return found


def wire(msg: m.IpvsMessage) -> dict[int, bytes]:
    msg.encode()
    return attributes(msg.data[GENL_HEADER:])


WEB = ServiceKey.of("tcp", "198.18.1.10", 80)


def test_a_service_key_is_af_protocol_address_port() -> None:
    top = wire(m.request(m.DEL_SERVICE, service=m.service_key_attrs(WEB)))
    svc = attributes(top[CMD_SERVICE])
    assert svc == {SVC_AF: struct.pack("=H", 2), SVC_PROTOCOL: struct.pack("=H", 6),
                   SVC_ADDR: socket.inet_aton("198.18.1.10"), SVC_PORT: b"\x00\x50"}


def test_a_fwmark_service_key_is_af_and_mark() -> None:
    svc = attributes(wire(m.request(m.DEL_SERVICE, service=m.service_key_attrs(
        ServiceKey.of_fwmark(7, AF_INET6))))[CMD_SERVICE])
    assert svc == {SVC_AF: struct.pack("=H", 10), SVC_FWMARK: struct.pack("=I", 7)}


def test_a_whole_service_replaces_every_flag_and_says_its_netmask() -> None:
    spec = ServiceSpec(WEB, scheduler="sh", flags=ServiceFlag.SH_PORT | ServiceFlag.SH_FALLBACK,
                       timeout=600, granularity="255.255.255.0", pe_name="sip")
    svc = attributes(wire(m.request(m.NEW_SERVICE, service=m.service_attrs(spec)))[CMD_SERVICE])
    assert svc[SVC_SCHED] == b"sh\0"
    assert svc[SVC_FLAGS] == struct.pack("=II", 0x19, 0xFFFFFFFF)
    assert svc[SVC_TIMEOUT] == struct.pack("=I", 600)
    assert svc[SVC_NETMASK] == b"\xff\xff\xff\x00"          # network order
    assert svc[SVC_PE] == b"sip\0"


def test_an_ipv6_service_sends_its_prefix_length_in_host_order() -> None:
    # nla_get_be32 reads it, but ip_vs_add_service compares it with 1..128 as is:
    # pyroute2's "128.0.0.0" trick only works on a little-endian host
    for key in (ServiceKey.of("udp", "2001:db8::10", 53), ServiceKey.of_fwmark(3, AF_INET6)):
        spec = ServiceSpec(key, timeout=10, granularity=64)
        svc = attributes(wire(m.request(m.NEW_SERVICE, service=m.service_attrs(spec)))[1])
        assert svc[SVC_NETMASK] == struct.pack("=I", 64)
    v6 = ServiceKey.of("udp", "2001:db8::10", 53)
    svc = attributes(wire(m.request(m.NEW_SERVICE, service=m.service_attrs(ServiceSpec(v6))))[1])
    assert svc[SVC_ADDR] == socket.inet_pton(socket.AF_INET6, "2001:db8::10")
    assert svc[SVC_NETMASK] == struct.pack("=I", 128)


def test_a_fwmark_service_has_a_netmask_too() -> None:
    # the kernel refuses a whole service without one (pyroute2 sent none: EINVAL)
    svc = attributes(wire(m.request(m.NEW_SERVICE, service=m.service_attrs(
        ServiceSpec(ServiceKey.of_fwmark(9)))))[CMD_SERVICE])
    assert svc[SVC_NETMASK] == b"\xff\xff\xff\xff" and SVC_ADDR not in svc


def test_a_whole_dest_has_every_setting_and_a_big_endian_tunnel_port() -> None:
    dest = DestSpec(DestKey("198.18.2.14", 80), fwd="TUN", weight=4, u_threshold=100,
                    l_threshold=10, tun_type="gue", tun_port=6080, tun_flags="remcsum")
    top = wire(m.request(m.NEW_DEST, service=m.service_key_attrs(WEB), dest=m.dest_attrs(dest)))
    assert set(attributes(top[CMD_SERVICE])) == {SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT}
    assert attributes(top[CMD_DEST]) == {
        DEST_FAMILY: struct.pack("=H", 2), DEST_ADDR: socket.inet_aton("198.18.2.14"),
        DEST_PORT: b"\x00\x50", DEST_FWD: struct.pack("=I", 2),
        DEST_WEIGHT: struct.pack("=I", 4), DEST_U: struct.pack("=I", 100),
        DEST_L: struct.pack("=I", 10), DEST_TUN_TYPE: b"\x01",
        DEST_TUN_PORT: b"\x17\xc0",                     # 6080, be16 (pyroute2: c0 17)
        DEST_TUN_FLAGS: struct.pack("=H", 2)}


@pytest.mark.parametrize("fwd, code", [("NAT", 0), ("TUN", 2), ("DR", 3)])
def test_the_forwarding_method_is_always_sent(fwd: Any, code: int) -> None:
    # pyroute2's IPVSDest defaults to DR: an edit without it turned NAT into DR
    dest = DestSpec(DestKey("2001:db8::11", 8080), fwd=fwd)
    sent = attributes(wire(m.request(m.SET_DEST, service=m.service_key_attrs(WEB),
                                     dest=m.dest_attrs(dest)))[CMD_DEST])
    assert sent[DEST_FWD] == struct.pack("=I", code)
    assert sent[DEST_FAMILY] == struct.pack("=H", 10)


def test_a_dest_key_is_enough_to_delete() -> None:
    sent = attributes(wire(m.request(m.DEL_DEST, service=m.service_key_attrs(WEB),
                                     dest=m.dest_key_attrs(DestKey("198.18.2.1", 8080))))[2])
    assert set(sent) == {DEST_FAMILY, DEST_ADDR, DEST_PORT}


def test_sync_daemon_start_sends_only_what_is_set() -> None:
    full = SyncDaemon("master", "eth0", syncid=5, maxlen=1400, port=8849, ttl=3,
                      group="239.1.1.1")
    sent = attributes(wire(m.request(m.NEW_DAEMON, daemon=m.daemon_attrs(full)))[CMD_DAEMON])
    assert sent == {DAEMON_STATE: struct.pack("=I", 1), DAEMON_IFN: b"eth0\0",
                    DAEMON_ID: struct.pack("=I", 5), DAEMON_MAXLEN: struct.pack("=H", 1400),
                    DAEMON_PORT: struct.pack("=H", 8849), DAEMON_TTL: b"\x03",
                    DAEMON_GROUP: socket.inet_aton("239.1.1.1")}
    least = attributes(wire(m.request(m.NEW_DAEMON, daemon=m.daemon_attrs(
        SyncDaemon("backup", "eth1", group="ff02::81"))))[CMD_DAEMON])
    assert set(least) == {DAEMON_STATE, DAEMON_IFN, DAEMON_ID, DAEMON_GROUP6}
    assert least[DAEMON_STATE] == struct.pack("=I", 2)
    stop = attributes(wire(m.request(m.DEL_DAEMON, daemon=m.daemon_stop_attrs("backup")))[3])
    assert stop == {DAEMON_STATE: struct.pack("=I", 2)}


def test_timeouts_left_at_zero_are_not_sent() -> None:
    sent = wire(m.request(m.SET_CONFIG, **m.timeout_attrs(Timeouts(tcp=1000, udp=77))))
    assert sent == {CMD_TIMEOUT_TCP: struct.pack("=I", 1000),
                    CMD_TIMEOUT_UDP: struct.pack("=I", 77)}
    assert wire(m.request(m.FLUSH)) == {}


# -- replies: built as the kernel fills them, then parsed ---------------------------

def kernel_reply(**top: Any) -> m.IpvsMessage:
    msg = m.request(m.GET_SERVICE, **top)
    msg.encode()
    return m.decode(msg.data)


def stats(prefix_values: dict[str, int]) -> dict[str, Any]:
    return {"attrs": [(f"IPVS_STATS_ATTR_{k.upper()}", v) for k, v in prefix_values.items()]}


def test_a_service_reply_is_read_whole() -> None:
    reply = kernel_reply(service={"attrs": [
        ("IPVS_SVC_ATTR_AF", 2), ("IPVS_SVC_ATTR_PROTOCOL", 17),
        # the kernel sends the whole union nf_inet_addr: 16 bytes for IPv4 too
        ("IPVS_SVC_ATTR_ADDR", socket.inet_aton("198.18.1.10") + bytes(12)),
        ("IPVS_SVC_ATTR_PORT", 53), ("IPVS_SVC_ATTR_SCHED_NAME", "mh"),
        ("IPVS_SVC_ATTR_PE_NAME", "sip"),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": 0x1 | 0x2 | 0x10, "mask": 0xFFFFFFFF}),
        ("IPVS_SVC_ATTR_TIMEOUT", 300), ("IPVS_SVC_ATTR_NETMASK", b"\xff\xff\xfe\x00"),
        ("IPVS_SVC_ATTR_STATS", stats({"conns": 1, "inbytes": 2})),
        ("IPVS_SVC_ATTR_STATS64", stats({"conns": 2**40, "inbytes": 7, "outbps": 9})),
    ]})
    spec, counters = m.parse_service(reply)
    assert spec == ServiceSpec(ServiceKey.of("udp", "198.18.1.10", 53), scheduler="mh",
                               flags=ServiceFlag.PERSISTENT | ServiceFlag.MH_PORT, timeout=300,
                               granularity="255.255.254.0", pe_name="sip")
    # the 64-bit counters win
    assert counters == Stats(conns=2**40, inbytes=7, outbps=9)


def test_an_ipv6_fwmark_service_reply() -> None:
    reply = kernel_reply(service={"attrs": [
        ("IPVS_SVC_ATTR_AF", 10), ("IPVS_SVC_ATTR_FWMARK", 8),
        ("IPVS_SVC_ATTR_SCHED_NAME", "rr"),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": 2, "mask": 0xFFFFFFFF}),
        ("IPVS_SVC_ATTR_TIMEOUT", 0), ("IPVS_SVC_ATTR_NETMASK", struct.pack("=I", 128)),
        ("IPVS_SVC_ATTR_STATS", stats({"conns": 3}))]})
    spec, counters = m.parse_service(reply)
    assert spec == ServiceSpec(ServiceKey.of_fwmark(8, AF_INET6), scheduler="rr", timeout=0)
    assert spec.granularity == 128 and counters == Stats(conns=3)


def dest_reply(fwd: int, **extra: Any) -> m.IpvsMessage:
    attrs = [("IPVS_DEST_ATTR_ADDR", socket.inet_aton("198.18.2.11") + bytes(12)),
             ("IPVS_DEST_ATTR_PORT", 8080), ("IPVS_DEST_ATTR_FWD_METHOD", fwd),
             ("IPVS_DEST_ATTR_WEIGHT", 5), ("IPVS_DEST_ATTR_TUN_TYPE", extra.get("tun_type", 0)),
             ("IPVS_DEST_ATTR_TUN_PORT", extra.get("tun_port", 0)),
             ("IPVS_DEST_ATTR_TUN_FLAGS", extra.get("tun_flags", 0)),
             ("IPVS_DEST_ATTR_U_THRESH", 20), ("IPVS_DEST_ATTR_L_THRESH", 2),
             ("IPVS_DEST_ATTR_ACTIVE_CONNS", 4), ("IPVS_DEST_ATTR_INACT_CONNS", 6),
             ("IPVS_DEST_ATTR_PERSIST_CONNS", 1),
             ("IPVS_DEST_ATTR_STATS64", stats({"conns": 10, "outpkts": 11}))]
    if "family" in extra:
        attrs.append(("IPVS_DEST_ATTR_ADDR_FAMILY", extra["family"]))
    return kernel_reply(dest={"attrs": attrs})


@pytest.mark.parametrize("code, fwd", [(0, "NAT"), (1, "LOCAL"), (2, "TUN"), (3, "DR")])
def test_a_dest_reply_keeps_its_forwarding_method(code: int, fwd: str) -> None:
    dest = m.parse_dest(dest_reply(code, family=2), service_af=2)
    assert dest.spec == DestSpec(DestKey("198.18.2.11", 8080), fwd=fwd,  # type: ignore[arg-type]
                                 weight=5, u_threshold=20, l_threshold=2)
    assert (dest.active_conns, dest.inact_conns, dest.persist_conns) == (4, 6, 1)
    assert dest.stats == Stats(conns=10, outpkts=11)


def test_a_dest_reply_reads_the_tunnel_of_tun_only() -> None:
    tun = m.parse_dest(dest_reply(2, tun_type=1, tun_port=6080, tun_flags=1), service_af=2)
    assert (tun.spec.tun_type, tun.spec.tun_port, tun.spec.tun_flags) == ("gue", 6080, "csum")
    # the kernel keeps whatever it was given for other methods; it means nothing there
    nat = m.parse_dest(dest_reply(0, tun_type=1, tun_port=6080, tun_flags=1), service_af=2)
    assert (nat.spec.tun_type, nat.spec.tun_port, nat.spec.tun_flags) == ("ipip", 0, "nocsum")


def test_a_dest_reply_without_a_family_has_its_services() -> None:
    assert m.parse_dest(dest_reply(3), service_af=2).spec.key.af == 2


def test_unknown_kernel_values_are_errors_not_guesses() -> None:
    with pytest.raises(ValueError, match="forwarding 4"):
        m.parse_dest(dest_reply(4), service_af=2)
    reply = kernel_reply(service={"attrs": [
        ("IPVS_SVC_ATTR_AF", 2), ("IPVS_SVC_ATTR_PROTOCOL", 1),
        ("IPVS_SVC_ATTR_ADDR", bytes(16)), ("IPVS_SVC_ATTR_PORT", 0)]})
    with pytest.raises(ValueError, match="protocol 1"):
        m.parse_service(reply)


def test_daemon_and_timeout_replies() -> None:
    reply = kernel_reply(daemon={"attrs": [
        ("IPVS_DAEMON_ATTR_STATE", 2), ("IPVS_DAEMON_ATTR_MCAST_IFN", "v1"),
        ("IPVS_DAEMON_ATTR_SYNC_ID", 6), ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", 1472),
        ("IPVS_DAEMON_ATTR_MCAST_PORT", 8848), ("IPVS_DAEMON_ATTR_MCAST_TTL", 1),
        # the kernel fills both groups, the unused one with zeros
        ("IPVS_DAEMON_ATTR_MCAST_GROUP", socket.inet_aton("224.0.0.81")),
        ("IPVS_DAEMON_ATTR_MCAST_GROUP6", bytes(16))]})
    assert m.parse_daemon(reply) == SyncDaemon("backup", "v1", syncid=6, maxlen=1472,
                                               port=8848, ttl=1, group="224.0.0.81")
    reply = kernel_reply(timeout_tcp=900, timeout_tcp_fin=120, timeout_udp=300)
    assert m.parse_timeouts(reply) == Timeouts(900, 120, 300)
