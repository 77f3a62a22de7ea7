"""What an IPVS table holds: virtual services, their real servers, counters.

Plain frozen values, checked and put in canonical form when made, so that what we
want and what the kernel reads back compare equal when they mean the same
(addresses in their compressed form, the persistence netmask of each family).

keepalived's rules for turning a configuration into kernel values live here too,
as defaults and normalisations:

- a persistence granularity without a persistence timeout means 360 s;
- the persistence netmask is 255.255.255.255 for IPv4 and the prefix length 128
  for IPv6 unless set;
- a persistence timeout sets the persistent flag;
- a direct-routing or tunnelled real server takes the virtual service's port
  (``DestSpec.for_service``), which is 0 for a firewall-mark service; NAT keeps its own.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Literal

AF_INET: Literal[2] = 2
AF_INET6: Literal[10] = 10
Family = Literal[2, 10]
Protocol = Literal["tcp", "udp", "sctp"]
Forwarding = Literal["NAT", "DR", "TUN", "LOCAL"]
TunnelType = Literal["ipip", "gue", "gre"]
TunnelChecksum = Literal["nocsum", "csum", "remcsum"]
DaemonState = Literal["master", "backup"]

PROTOCOL_NUMBERS: dict[Protocol, int] = {"tcp": 6, "udp": 17, "sctp": 132}
# IP_VS_CONN_F_MASQ, _LOCALNODE, _TUNNEL, _DROUTE. The kernel itself makes a real
# server whose address is local to the director "LOCAL" whatever was asked.
FORWARDING_CODES: dict[Forwarding, int] = {"NAT": 0, "LOCAL": 1, "TUN": 2, "DR": 3}
TUNNEL_TYPE_CODES: dict[TunnelType, int] = {"ipip": 0, "gue": 1, "gre": 2}
# IP_VS_TUNNEL_ENCAP_FLAG_*
TUNNEL_CHECKSUM_CODES: dict[TunnelChecksum, int] = {"nocsum": 0, "csum": 1, "remcsum": 2}
DAEMON_STATE_CODES: dict[DaemonState, int] = {"master": 1, "backup": 2}

IMPLIED_PERSISTENCE = 360       # seconds, when only a granularity is given (keepalived)
SCHEDULER_NAME_MAX = 15         # IP_VS_SCHEDNAME_MAXLEN - 1
PE_NAME_MAX = 15                # IP_VS_PENAME_MAXLEN - 1
IFNAME_MAX = 15                 # IP_VS_IFNAME_MAXLEN - 1
U32_MAX = 2**32 - 1
INT_MAX = 2**31 - 1


class IpvsError(Exception):
    """The kernel refused an IPVS operation; the message names the operation and the
    kernel's errno, ``code`` (0 if none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class IpvsUnavailable(IpvsError):
    """No IPVS table can be reached: the kernel has none, or the namespace is gone."""


class ServiceFlag(enum.IntFlag):
    """``IP_VS_SVC_F_*``: a virtual service's flags."""

    PERSISTENT = 0x01
    HASHED = 0x02           # the kernel's bookkeeping (in its hash table), not a setting
    ONEPACKET = 0x04        # "ops": one-packet scheduling, UDP
    SCHED1 = 0x08           # sh-fallback, mh-fallback
    SCHED2 = 0x10           # sh-port, mh-port
    SCHED3 = 0x20
    SH_FALLBACK = 0x08
    SH_PORT = 0x10
    MH_FALLBACK = 0x08
    MH_PORT = 0x10


def canonical_address(text: str) -> tuple[Family, str]:
    """The family and compressed text of an IP address; ValueError if it is none."""
    address = ipaddress.ip_address(text)
    return (AF_INET if address.version == 4 else AF_INET6), address.compressed


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} port {port} is not within 0-65535")


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass(frozen=True)
class ServiceKey:
    """What identifies a virtual service: protocol, address and port, or a firewall mark.

    Make them with ``ServiceKey.of(protocol, addr, port)`` or ``ServiceKey.of_fwmark(mark)``.
    """

    af: Family
    protocol: Protocol | None
    addr: str | None
    port: int
    fwmark: int

    def __post_init__(self) -> None:
        if self.af not in (AF_INET, AF_INET6):
            raise ValueError(f"address family {self.af} is neither 2 (inet) nor 10 (inet6)")
        if self.fwmark:
            if not 0 < self.fwmark <= U32_MAX:
                raise ValueError(f"firewall mark {self.fwmark} is not within 1-{U32_MAX}")
            if self.addr is not None or self.protocol is not None or self.port:
                raise ValueError("a firewall-mark service has no protocol, address or port")
            return
        if self.addr is None or self.protocol is None:
            raise ValueError("a virtual service needs a protocol and an address, or a fwmark")
        if self.protocol not in PROTOCOL_NUMBERS:
            raise ValueError(f"protocol {self.protocol!r} is not tcp, udp or sctp")
        _check_port(self.port, "virtual service")
        af, addr = canonical_address(self.addr)
        if af != self.af:
            raise ValueError(f"address {self.addr} is not of family {self.af}")
        object.__setattr__(self, "addr", addr)

    @classmethod
    def of(cls, protocol: Protocol, addr: str, port: int) -> ServiceKey:
        af, _ = canonical_address(addr)
        return cls(af=af, protocol=protocol, addr=addr, port=port, fwmark=0)

    @classmethod
    def of_fwmark(cls, fwmark: int, af: Family = AF_INET) -> ServiceKey:
        return cls(af=af, protocol=None, addr=None, port=0, fwmark=fwmark)

    def sort_key(self) -> tuple[int, bool, int, str, bytes, int]:
        """A total order (by family, firewall marks first, then protocol, address and
        port) for stable plans and reports."""
        packed = ipaddress.ip_address(self.addr).packed if self.addr else b""
        return (self.af, self.fwmark == 0, self.fwmark, self.protocol or "", packed, self.port)

    def __str__(self) -> str:
        """As keepalived's logs name it: ``TCP 198.18.1.10:80``, ``FWM 7 inet6``."""
        if self.fwmark:
            return f"FWM {self.fwmark}" + (" inet6" if self.af == AF_INET6 else "")
        assert self.protocol is not None and self.addr is not None
        return f"{self.protocol.upper()} {_endpoint(self.addr, self.port)}"


@dataclass(frozen=True)
class ServiceSpec:
    """A virtual service as the kernel holds it.

    ``timeout``: persistence in seconds, 0 for none; left out (None), it is 360 when a
    ``granularity`` is given, else 0. ``granularity``: the persistence netmask, an IPv4
    netmask ("255.255.255.0") or an IPv6 prefix length; None is a single address.
    After construction both are always set, in canonical form.
    """

    key: ServiceKey
    scheduler: str = "wlc"
    flags: ServiceFlag = ServiceFlag(0)
    timeout: int | None = None
    granularity: str | int | None = None
    pe_name: str | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.scheduler) <= SCHEDULER_NAME_MAX:
            raise ValueError(f"scheduler name {self.scheduler!r} is empty or too long")
        if self.pe_name is not None and not 0 < len(self.pe_name) <= PE_NAME_MAX:
            raise ValueError(f"persistence engine name {self.pe_name!r} is empty or too long")
        timeout = self.timeout
        if timeout is None:
            timeout = IMPLIED_PERSISTENCE if self.granularity is not None else 0
        if not 0 <= timeout <= U32_MAX:
            raise ValueError(f"persistence timeout {timeout} is out of range")
        flags = ServiceFlag(int(self.flags)) & ~ServiceFlag.HASHED
        if timeout:
            flags |= ServiceFlag.PERSISTENT
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "granularity", self._canonical_granularity())

    def _canonical_granularity(self) -> str | int:
        value = self.granularity
        if self.key.af == AF_INET6:
            if value is None:
                return 128
            if isinstance(value, str) or not 1 <= value <= 128:
                raise ValueError(f"IPv6 persistence granularity {value!r} is not a prefix "
                                 f"length within 1-128")
            return value
        if value is None:
            return "255.255.255.255"
        if not isinstance(value, str):
            raise ValueError(f"IPv4 persistence granularity {value!r} is not a netmask")
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValueError(f"IPv4 persistence granularity {value!r} is not a netmask"
                             ) from None

    @property
    def persistence(self) -> int:
        """The persistence timeout in seconds (always set after construction)."""
        assert self.timeout is not None
        return self.timeout


@dataclass(frozen=True)
class DestKey:
    """What identifies a real server within its virtual service."""

    addr: str
    port: int

    def __post_init__(self) -> None:
        _check_port(self.port, "real server")
        object.__setattr__(self, "addr", canonical_address(self.addr)[1])

    def sort_key(self) -> tuple[int, bytes, int]:
        address = ipaddress.ip_address(self.addr)
        return (address.version, address.packed, self.port)

    @property
    def af(self) -> Family:
        """The real server's own family (it may differ from the service's when tunnelled)."""
        return canonical_address(self.addr)[0]

    def __str__(self) -> str:
        return _endpoint(self.addr, self.port)


@dataclass(frozen=True)
class DestSpec:
    """A real server as the kernel holds it. The tunnel settings are for ``TUN`` only."""

    key: DestKey
    fwd: Forwarding = "NAT"
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: TunnelType = "ipip"
    tun_port: int = 0
    tun_flags: TunnelChecksum = "nocsum"

    def __post_init__(self) -> None:
        if self.fwd not in FORWARDING_CODES:
            raise ValueError(f"forwarding method {self.fwd!r} is not NAT, DR or TUN")
        if not 0 <= self.weight <= INT_MAX:
            raise ValueError(f"weight {self.weight} is not within 0-{INT_MAX}")
        for name in ("u_threshold", "l_threshold"):
            if not 0 <= getattr(self, name) <= U32_MAX:
                raise ValueError(f"{name} {getattr(self, name)} is out of range")
        if self.tun_type not in TUNNEL_TYPE_CODES:
            raise ValueError(f"tunnel type {self.tun_type!r} is not ipip, gue or gre")
        if self.tun_flags not in TUNNEL_CHECKSUM_CODES:
            raise ValueError(f"tunnel checksum {self.tun_flags!r} is not nocsum, csum or remcsum")
        _check_port(self.tun_port, "tunnel")
        tunnel = (self.tun_type, self.tun_port, self.tun_flags)
        if self.fwd != "TUN" and tunnel != ("ipip", 0, "nocsum"):
            raise ValueError(f"tunnel settings are for TUN real servers, not {self.fwd}")

    @property
    def af(self) -> Family:
        return self.key.af

    def for_service(self, service: ServiceKey) -> DestSpec:
        """This real server as keepalived programs it under ``service``: DR and TUN take
        the service's port (0 for a firewall mark), NAT keeps its own."""
        if self.fwd in ("DR", "TUN") and self.key.port != service.port:
            return replace(self, key=DestKey(self.key.addr, service.port))
        return self


@dataclass(frozen=True)
class Stats:
    """Traffic counters (totals since creation or a zeroing) and rates (per second,
    estimated by the kernel every 2 s)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True)
class KernelDest:
    """A real server as read back, with its connection counts and traffic."""

    spec: DestSpec
    active_conns: int = 0
    inact_conns: int = 0
    persist_conns: int = 0
    stats: Stats = Stats()

    @property
    def key(self) -> DestKey:
        return self.spec.key


@dataclass(frozen=True)
class KernelService:
    """A virtual service as read back, with its real servers and traffic."""

    spec: ServiceSpec
    dests: dict[DestKey, KernelDest] = field(default_factory=dict, hash=False)
    stats: Stats = Stats()

    @property
    def key(self) -> ServiceKey:
        return self.spec.key


@dataclass(frozen=True)
class Timeouts:
    """IPVS's connection timeouts in seconds (``ipvsadm --set``, keepalived's
    ``lvs_timeouts``). In a change, 0 leaves a timeout as it is."""

    tcp: int = 0
    tcpfin: int = 0
    udp: int = 0

    def __post_init__(self) -> None:
        for name in ("tcp", "tcpfin", "udp"):
            if not 0 <= getattr(self, name) <= INT_MAX:
                raise ValueError(f"{name} timeout {getattr(self, name)} is out of range")


@dataclass(frozen=True)
class SyncDaemon:
    """IPVS's connection synchronisation daemon (keepalived's ``lvs_sync_daemon``).

    ``maxlen``, ``port``, ``ttl`` and ``group`` at 0 / None are the kernel's defaults
    (a payload fitting the interface's MTU, port 8848, TTL 1, group 224.0.0.81).
    """

    state: DaemonState
    ifname: str
    syncid: int = 0
    maxlen: int = 0
    port: int = 0
    ttl: int = 0
    group: str | None = None

    def __post_init__(self) -> None:
        if self.state not in DAEMON_STATE_CODES:
            raise ValueError(f"sync daemon state {self.state!r} is not master or backup")
        if not 0 < len(self.ifname) <= IFNAME_MAX:
            raise ValueError(f"interface name {self.ifname!r} is empty or too long")
        if not 0 <= self.syncid <= 255:
            raise ValueError(f"sync id {self.syncid} is not within 0-255")
        if not 0 <= self.maxlen <= 65535 or not 0 <= self.ttl <= 255:
            raise ValueError("sync daemon maxlen or ttl out of range")
        _check_port(self.port, "sync daemon")
        if self.group is not None:
            object.__setattr__(self, "group", canonical_address(self.group)[1])
