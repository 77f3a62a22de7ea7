"""agent/ipvs/model.py: canonical forms and keepalived's rules for kernel values."""

from __future__ import annotations

import pytest
from keepalived_py.ipvs.model import (
    AF_INET,
    AF_INET6,
    DestKey,
    DestSpec,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
    SyncDaemon,
    Timeouts,
)


def test_addresses_are_canonical_so_wanted_and_read_back_compare_equal() -> None:
    assert ServiceKey.of("tcp", "2001:DB8:0::0:10", 80) == ServiceKey.of("tcp", "2001:db8::10", 80)
    assert DestKey("2001:0db8::0011", 80).addr == "2001:db8::11"
    assert ServiceKey.of("udp", "198.18.1.10", 53).af == AF_INET
    assert DestKey("2001:db8::1", 0).af == AF_INET6


def test_keys_name_themselves_as_keepalived_logs_do() -> None:
    assert str(ServiceKey.of("tcp", "198.18.1.10", 80)) == "TCP 198.18.1.10:80"
    assert str(ServiceKey.of("sctp", "2001:db8::10", 9)) == "SCTP [2001:db8::10]:9"
    assert str(ServiceKey.of_fwmark(7)) == "FWM 7"
    assert str(ServiceKey.of_fwmark(7, AF_INET6)) == "FWM 7 inet6"
    assert str(DestKey("2001:db8::11", 8080)) == "[2001:db8::11]:8080"


@pytest.mark.parametrize("make, message", [
    (lambda: ServiceKey(af=3, protocol="tcp", addr="198.18.1.1", port=1, fwmark=0),
     "neither 2"),
    (lambda: ServiceKey(af=AF_INET, protocol="tcp", addr="198.18.1.1", port=0, fwmark=5),
     "no protocol, address or port"),
    (lambda: ServiceKey(af=AF_INET, protocol=None, addr=None, port=80, fwmark=0),
     "needs a protocol"),
    (lambda: ServiceKey(af=AF_INET6, protocol="tcp", addr="198.18.1.1", port=1, fwmark=0),
     "not of family 10"),
    (lambda: ServiceKey.of("icmp", "198.18.1.1", 1), "not tcp, udp or sctp"),  # type: ignore
    (lambda: ServiceKey.of("tcp", "198.18.1.1", 65536), "0-65535"),
    (lambda: ServiceKey.of_fwmark(2**32), "firewall mark"),
    (lambda: ServiceSpec(ServiceKey.of_fwmark(1), scheduler="x" * 16), "too long"),
    (lambda: ServiceSpec(ServiceKey.of_fwmark(1, AF_INET6), granularity="255.0.0.0"),
     "prefix length"),
    (lambda: ServiceSpec(ServiceKey.of_fwmark(1, AF_INET6), granularity=129), "prefix length"),
    (lambda: ServiceSpec(ServiceKey.of_fwmark(1), granularity=24), "not a netmask"),
    (lambda: ServiceSpec(ServiceKey.of_fwmark(1), granularity="255.255.0"), "not a netmask"),
    (lambda: DestSpec(DestKey("198.18.2.1", 80), weight=-1), "weight"),
    (lambda: DestSpec(DestKey("198.18.2.1", 80), fwd="MASQ"), "forwarding method"),  # type: ignore
    (lambda: DestSpec(DestKey("198.18.2.1", 80), fwd="DR", tun_type="gue", tun_port=1),
     "for TUN real servers"),
    (lambda: DestSpec(DestKey("198.18.2.1", 80), u_threshold=2**32), "u_threshold"),
    (lambda: DestKey("not-an-address", 80), "does not appear to be"),
    (lambda: SyncDaemon("primary", "eth0"), "master or backup"),  # type: ignore[arg-type]
    (lambda: SyncDaemon("master", "an-interface-name"), "too long"),
    (lambda: SyncDaemon("master", "eth0", syncid=256), "0-255"),
    (lambda: Timeouts(tcp=-1), "tcp timeout"),
])
def test_nonsense_is_refused_when_made(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_persistence_defaults_follow_keepalived() -> None:
    plain = ServiceSpec(ServiceKey.of("tcp", "198.18.1.10", 80))
    assert (plain.timeout, plain.granularity, plain.flags) == (0, "255.255.255.255", 0)
    # a granularity alone means 360 s of persistence, and sets the persistent flag
    grouped = ServiceSpec(ServiceKey.of("tcp", "198.18.1.10", 80), granularity="255.255.255.0")
    assert (grouped.timeout, grouped.flags) == (360, ServiceFlag.PERSISTENT)
    six = ServiceSpec(ServiceKey.of("tcp", "2001:db8::10", 80), timeout=50)
    assert (six.timeout, six.granularity, six.flags) == (50, 128, ServiceFlag.PERSISTENT)
    # said explicitly, no persistence stays none (what the kernel reads back)
    read_back = ServiceSpec(ServiceKey.of_fwmark(3), timeout=0, granularity="255.255.0.0")
    assert (read_back.timeout, read_back.flags) == (0, 0)


def test_the_kernels_hashed_bit_is_not_a_setting() -> None:
    spec = ServiceSpec(ServiceKey.of_fwmark(3),
                       flags=ServiceFlag.HASHED | ServiceFlag.SH_PORT)
    assert spec.flags == ServiceFlag.SCHED2
    assert spec == ServiceSpec(ServiceKey.of_fwmark(3), flags=ServiceFlag.SH_PORT)


def test_dr_and_tun_take_the_services_port_nat_keeps_its_own() -> None:
    web, mark = ServiceKey.of("tcp", "198.18.1.10", 80), ServiceKey.of_fwmark(7)
    for fwd in ("DR", "TUN"):
        dest = DestSpec(DestKey("198.18.2.11", 8080), fwd=fwd)  # type: ignore[arg-type]
        assert dest.for_service(web).key == DestKey("198.18.2.11", 80)
        assert dest.for_service(mark).key == DestKey("198.18.2.11", 0)
    nat = DestSpec(DestKey("198.18.2.11", 8080))
    assert nat.for_service(web) is nat and nat.for_service(mark) is nat


def test_sort_keys_give_a_total_order() -> None:
    keys = [ServiceKey.of("udp", "2001:db8::1", 53), ServiceKey.of("tcp", "198.18.1.10", 80),
            ServiceKey.of_fwmark(9, AF_INET6), ServiceKey.of("tcp", "198.18.1.9", 80),
            ServiceKey.of_fwmark(2)]
    assert [str(k) for k in sorted(keys, key=ServiceKey.sort_key)] == [
        "FWM 2", "TCP 198.18.1.9:80", "TCP 198.18.1.10:80", "FWM 9 inet6", "UDP [2001:db8::1]:53"]
    dests = [DestKey("2001:db8::1", 1), DestKey("198.18.2.10", 2), DestKey("198.18.2.9", 3)]
    assert [str(d) for d in sorted(dests, key=DestKey.sort_key)] == [
        "198.18.2.9:3", "198.18.2.10:2", "[2001:db8::1]:1"]


def test_sync_daemon_group_is_canonical() -> None:
    assert SyncDaemon("backup", "eth0", group="FF02::0081").group == "ff02::81"
