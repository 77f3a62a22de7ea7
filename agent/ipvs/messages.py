"""IPVS generic netlink messages: building requests, reading replies. No I/O.

The message classes are pyroute2's netlink machinery (``genlmsg``, ``nla`` and the
stats attributes of ``pyroute2.netlink.generic.ipvs``) with the attribute types the
kernel really uses, where pyroute2 0.9.7's ``ipvsmsg`` has them wrong or opaque:

- ``IPVS_DEST_ATTR_TUN_PORT`` is big-endian (pyroute2: a native u16, so a GUE port
  6080 reached the kernel as 49175);
- ``IPVS_SVC_ATTR_NETMASK`` is four raw bytes, a netmask in network order for IPv4 but
  the prefix length as a host-order u32 for IPv6 (pyroute2 types it an IPv4 address:
  IPv6 and firewall-mark services could not be expressed without tricks);
- ``IPVS_CMD_ATTR_DAEMON`` is a nest and the three timeouts are u32 (pyroute2: hex);
- addresses are raw bytes, read and written by family here (``IPVS_SVC_ATTR_ADDR`` is
  16 bytes on the way back whatever the family).

Every request carries the whole service (scheduler, flags with a full mask,
timeout, netmask) or the whole real server (forwarding method, weight, thresholds,
tunnel), as keepalived's ``ipvs_set_srule`` / ``ipvs_set_drule`` do: nothing is left
to a default of the library.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from pyroute2.netlink import genlmsg, nla
from pyroute2.netlink.generic.ipvs import ipvsstats

from .model import (
    AF_INET,
    AF_INET6,
    DAEMON_STATE_CODES,
    FORWARDING_CODES,
    PROTOCOL_NUMBERS,
    TUNNEL_CHECKSUM_CODES,
    TUNNEL_TYPE_CODES,
    DaemonState,
    DestKey,
    DestSpec,
    KernelDest,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
    Stats,
    SyncDaemon,
    Timeouts,
)

GENL_NAME = "IPVS"
GENL_VERSION = 1

# IPVS_CMD_*
NEW_SERVICE, SET_SERVICE, DEL_SERVICE, GET_SERVICE = 1, 2, 3, 4
NEW_DEST, SET_DEST, DEL_DEST, GET_DEST = 5, 6, 7, 8
NEW_DAEMON, DEL_DAEMON, GET_DAEMON = 9, 10, 11
SET_CONFIG, GET_CONFIG = 12, 13
ZERO, FLUSH = 16, 17

FULL_MASK = 0xFFFFFFFF      # a service's flags are replaced whole
Attrs = dict[str, Any]


class IpvsMessage(genlmsg):
    """A message of the IPVS family (``include/uapi/linux/ip_vs.h``)."""

    prefix = "IPVS_CMD_ATTR_"
    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    class service(nla, ipvsstats):
        prefix = "IPVS_SVC_ATTR_"
        nla_map = (
            ("IPVS_SVC_ATTR_UNSPEC", "none"),
            ("IPVS_SVC_ATTR_AF", "uint16"),
            ("IPVS_SVC_ATTR_PROTOCOL", "uint16"),
            ("IPVS_SVC_ATTR_ADDR", "cdata"),
            ("IPVS_SVC_ATTR_PORT", "be16"),
            ("IPVS_SVC_ATTR_FWMARK", "uint32"),
            ("IPVS_SVC_ATTR_SCHED_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_FLAGS", "flags"),
            ("IPVS_SVC_ATTR_TIMEOUT", "uint32"),
            ("IPVS_SVC_ATTR_NETMASK", "cdata"),
            ("IPVS_SVC_ATTR_STATS", "stats"),
            ("IPVS_SVC_ATTR_PE_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_STATS64", "stats64"),
        )

        class flags(nla):
            fields = (("flags", "I"), ("mask", "I"))

    class dest(nla, ipvsstats):
        prefix = "IPVS_DEST_ATTR_"
        nla_map = (
            ("IPVS_DEST_ATTR_UNSPEC", "none"),
            ("IPVS_DEST_ATTR_ADDR", "cdata"),
            ("IPVS_DEST_ATTR_PORT", "be16"),
            ("IPVS_DEST_ATTR_FWD_METHOD", "uint32"),
            ("IPVS_DEST_ATTR_WEIGHT", "uint32"),
            ("IPVS_DEST_ATTR_U_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_L_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_ACTIVE_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_INACT_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_PERSIST_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_STATS", "stats"),
            ("IPVS_DEST_ATTR_ADDR_FAMILY", "uint16"),
            ("IPVS_DEST_ATTR_STATS64", "stats64"),
            ("IPVS_DEST_ATTR_TUN_TYPE", "uint8"),
            ("IPVS_DEST_ATTR_TUN_PORT", "be16"),
            ("IPVS_DEST_ATTR_TUN_FLAGS", "uint16"),
        )

    class daemon(nla):
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


# -- requests ----------------------------------------------------------------------

def request(command: int, **attrs: Attrs | int) -> IpvsMessage:
    """A request of ``command`` with top-level attributes by short name
    (``service=``, ``dest=``, ``daemon=``, ``timeout_tcp=`` ...)."""
    msg = IpvsMessage()
    msg["cmd"] = command
    msg["version"] = GENL_VERSION
    msg["attrs"] = [(IpvsMessage.name2nla(name), value) for name, value in attrs.items()]
    return msg


def _nest(cls: type[nla], **values: Any) -> Attrs:
    return {"attrs": [(cls.name2nla(name), value) for name, value in values.items()]}


def _pack_address(af: int, text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if af == AF_INET6 else socket.AF_INET, text)


def _unpack_address(af: int, data: bytes) -> str:
    if af == AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return socket.inet_ntop(socket.AF_INET, data[:4])


def service_key_attrs(key: ServiceKey) -> Attrs:
    """The attributes that find a service (all a delete or a destination request needs)."""
    if key.fwmark:
        return _nest(IpvsMessage.service, af=key.af, fwmark=key.fwmark)
    assert key.protocol is not None and key.addr is not None
    return _nest(IpvsMessage.service, af=key.af, protocol=PROTOCOL_NUMBERS[key.protocol],
                 addr=_pack_address(key.af, key.addr), port=key.port)


def _netmask_bytes(spec: ServiceSpec) -> bytes:
    if spec.key.af == AF_INET6:
        # the kernel reads the prefix length as a host-order u32 in this be32 field
        assert isinstance(spec.granularity, int)
        return struct.pack("=I", spec.granularity)
    assert isinstance(spec.granularity, str)
    return socket.inet_aton(spec.granularity)


def service_attrs(spec: ServiceSpec) -> Attrs:
    """A whole service, for an add or an edit."""
    attrs = service_key_attrs(spec.key)
    attrs["attrs"] += [
        ("IPVS_SVC_ATTR_SCHED_NAME", spec.scheduler),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": int(spec.flags), "mask": FULL_MASK}),
        ("IPVS_SVC_ATTR_TIMEOUT", spec.persistence),
        ("IPVS_SVC_ATTR_NETMASK", _netmask_bytes(spec)),
    ]
    if spec.pe_name:
        attrs["attrs"].append(("IPVS_SVC_ATTR_PE_NAME", spec.pe_name))
    return attrs


def dest_key_attrs(dest: DestKey) -> Attrs:
    """The attributes that find a real server within its service."""
    return _nest(IpvsMessage.dest, addr_family=dest.af, addr=_pack_address(dest.af, dest.addr),
                 port=dest.port)


def dest_attrs(dest: DestSpec) -> Attrs:
    """A whole real server, for an add or an edit."""
    attrs = dest_key_attrs(dest.key)
    attrs["attrs"] += [
        ("IPVS_DEST_ATTR_FWD_METHOD", FORWARDING_CODES[dest.fwd]),
        ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
        ("IPVS_DEST_ATTR_U_THRESH", dest.u_threshold),
        ("IPVS_DEST_ATTR_L_THRESH", dest.l_threshold),
        ("IPVS_DEST_ATTR_TUN_TYPE", TUNNEL_TYPE_CODES[dest.tun_type]),
        ("IPVS_DEST_ATTR_TUN_PORT", dest.tun_port),
        ("IPVS_DEST_ATTR_TUN_FLAGS", TUNNEL_CHECKSUM_CODES[dest.tun_flags]),
    ]
    return attrs


def daemon_attrs(daemon: SyncDaemon) -> Attrs:
    """A sync daemon to start; the optional settings only when set, as keepalived does."""
    values: dict[str, Any] = {"state": DAEMON_STATE_CODES[daemon.state],
                              "mcast_ifn": daemon.ifname, "sync_id": daemon.syncid}
    if daemon.maxlen:
        values["sync_maxlen"] = daemon.maxlen
    if daemon.port:
        values["mcast_port"] = daemon.port
    if daemon.ttl:
        values["mcast_ttl"] = daemon.ttl
    if daemon.group is not None:
        if ":" in daemon.group:
            values["mcast_group6"] = _pack_address(AF_INET6, daemon.group)
        else:
            values["mcast_group"] = _pack_address(AF_INET, daemon.group)
    return _nest(IpvsMessage.daemon, **values)


def daemon_stop_attrs(state: DaemonState) -> Attrs:
    """The sync daemon to stop: the kernel needs only its state."""
    return _nest(IpvsMessage.daemon, state=DAEMON_STATE_CODES[state])


def timeout_attrs(timeouts: Timeouts) -> dict[str, Any]:
    """The timeouts to change (0: left as it is, so not sent)."""
    sent = {"timeout_tcp": timeouts.tcp, "timeout_tcp_fin": timeouts.tcpfin,
            "timeout_udp": timeouts.udp}
    return {name: value for name, value in sent.items() if value}


# -- replies -----------------------------------------------------------------------

def _stats(nested: Any) -> Stats:
    """Counters from STATS64 when the kernel sends them (it does since 4.1), else STATS."""
    stats = nested.get_attr(f"{nested.prefix}STATS64") or nested.get_attr(f"{nested.prefix}STATS")
    if stats is None:
        return Stats()
    values = {name.removeprefix("IPVS_STATS_ATTR_").lower(): value
              for name, value in stats["attrs"]}
    return Stats(**{name: values.get(name, 0) for name in Stats.__dataclass_fields__})


def _protocol_name(number: int) -> Any:
    for name, known in PROTOCOL_NUMBERS.items():
        if known == number:
            return name
    raise ValueError(f"the kernel holds a service of protocol {number}")


def parse_service(msg: IpvsMessage) -> tuple[ServiceSpec, Stats]:
    """A service of a GET_SERVICE reply."""
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    af = svc.get_attr("IPVS_SVC_ATTR_AF")
    fwmark = svc.get_attr("IPVS_SVC_ATTR_FWMARK") or 0
    if fwmark:
        key = ServiceKey.of_fwmark(fwmark, af)
    else:
        key = ServiceKey(af=af, protocol=_protocol_name(svc.get_attr("IPVS_SVC_ATTR_PROTOCOL")),
                         addr=_unpack_address(af, svc.get_attr("IPVS_SVC_ATTR_ADDR")),
                         port=svc.get_attr("IPVS_SVC_ATTR_PORT"), fwmark=0)
    netmask = svc.get_attr("IPVS_SVC_ATTR_NETMASK")
    granularity: str | int = (struct.unpack("=I", netmask)[0] if af == AF_INET6
                              else socket.inet_ntoa(netmask))
    flags = svc.get_attr("IPVS_SVC_ATTR_FLAGS")
    spec = ServiceSpec(key=key, scheduler=svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME"),
                       flags=ServiceFlag(flags["flags"]),
                       timeout=svc.get_attr("IPVS_SVC_ATTR_TIMEOUT"),
                       granularity=granularity,
                       pe_name=svc.get_attr("IPVS_SVC_ATTR_PE_NAME") or None)
    return spec, _stats(svc)


def _name_of(codes: dict[Any, int], value: int, what: str) -> Any:
    for name, code in codes.items():
        if code == value:
            return name
    raise ValueError(f"the kernel holds a real server with {what} {value}")


def parse_dest(msg: IpvsMessage, service_af: int) -> KernelDest:
    """A real server of a GET_DEST reply (read from the raw attributes: the forwarding
    method especially, which pyroute2's ``IPVSDest.from_message`` reports as 3, DR,
    whatever the kernel said)."""
    dest = msg.get_attr("IPVS_CMD_ATTR_DEST")
    af = dest.get_attr("IPVS_DEST_ATTR_ADDR_FAMILY") or service_af
    fwd = _name_of(FORWARDING_CODES, dest.get_attr("IPVS_DEST_ATTR_FWD_METHOD"), "forwarding")
    tunnel = fwd == "TUN"
    spec = DestSpec(
        key=DestKey(_unpack_address(af, dest.get_attr("IPVS_DEST_ATTR_ADDR")),
                    dest.get_attr("IPVS_DEST_ATTR_PORT")),
        fwd=fwd,
        weight=dest.get_attr("IPVS_DEST_ATTR_WEIGHT"),
        u_threshold=dest.get_attr("IPVS_DEST_ATTR_U_THRESH") or 0,
        l_threshold=dest.get_attr("IPVS_DEST_ATTR_L_THRESH") or 0,
        # the kernel reports the tunnel attributes for every method; they mean
        # something for TUN only
        tun_type=_name_of(TUNNEL_TYPE_CODES, dest.get_attr("IPVS_DEST_ATTR_TUN_TYPE") or 0,
                          "tunnel type") if tunnel else "ipip",
        tun_port=(dest.get_attr("IPVS_DEST_ATTR_TUN_PORT") or 0) if tunnel else 0,
        tun_flags=_name_of(TUNNEL_CHECKSUM_CODES, dest.get_attr("IPVS_DEST_ATTR_TUN_FLAGS") or 0,
                           "tunnel flags") if tunnel else "nocsum",
    )
    return KernelDest(spec=spec,
                      active_conns=dest.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
                      inact_conns=dest.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0,
                      persist_conns=dest.get_attr("IPVS_DEST_ATTR_PERSIST_CONNS") or 0,
                      stats=_stats(dest))


def parse_daemon(msg: IpvsMessage) -> SyncDaemon:
    daemon = msg.get_attr("IPVS_CMD_ATTR_DAEMON")
    group: str | None = None
    if raw := daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP6"):
        group = _unpack_address(AF_INET6, raw)
        group = None if group == "::" else group
    if group is None and (raw := daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP")):
        group = _unpack_address(AF_INET, raw)
    return SyncDaemon(
        state=_name_of(DAEMON_STATE_CODES, daemon.get_attr("IPVS_DAEMON_ATTR_STATE"), "state"),
        ifname=daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_IFN"),
        syncid=daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_ID") or 0,
        maxlen=daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_MAXLEN") or 0,
        port=daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_PORT") or 0,
        ttl=daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_TTL") or 0,
        group=group)


def parse_timeouts(msg: IpvsMessage) -> Timeouts:
    return Timeouts(tcp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP") or 0,
                    tcpfin=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN") or 0,
                    udp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_UDP") or 0)


def decode(data: bytes) -> IpvsMessage:
    """A message from its bytes (what the kernel would read), for tests."""
    msg = IpvsMessage(data)
    msg.decode()
    return msg
