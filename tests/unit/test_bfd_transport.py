"""The BFD sockets: the options they set (read back from the kernel) and what a receiver
reports of a datagram (its TTL / hop limit, source, destination), over loopback."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest
from keepalived_py.bfd.packet import SOURCE_PORTS, Control, encode
from keepalived_py.bfd.transport import (
    IP_PKTINFO,
    IP_RECVTTL,
    TOS,
    Receiver,
    Sender,
)


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")
LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


@pytest.fixture
def closing() -> Iterator[list]:
    made: list = []
    yield made
    for thing in made:
        thing.close()


def receiver(family: int, made: list) -> Receiver:
    rx = Receiver(family, port=0, address=LOOPBACK[family])
    made.append(rx)
    return rx


def sender(family: int, port: int, made: list, **kw: object) -> Sender:
    tx = Sender(family, LOOPBACK[family], port, source=LOOPBACK[family], **kw)  # type: ignore[arg-type]
    made.append(tx)
    return tx


def test_ipv4_sender_options(closing: list) -> None:
    tx = sender(socket.AF_INET, 9, closing)
    sock = tx.sock
    assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
    assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == TOS == 0xC0
    address, port = sock.getsockname()
    assert address == "127.0.0.1" and port == tx.source_port and port in SOURCE_PORTS
    assert not sock.getblocking()
    tx.set_ttl(254)
    assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 254


@IPV6
def test_ipv6_sender_options(closing: list) -> None:
    tx = sender(socket.AF_INET6, 9, closing)
    sock = tx.sock
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 255
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS) == 0xC0
    assert sock.getsockname()[1] in SOURCE_PORTS
    assert tx.destination == ("::1", 9, 0, 0)


def test_without_a_source_address_the_port_is_still_fixed_in_range(closing: list) -> None:
    # keepalived 2.2.7 leaves this socket unbound: the kernel picks any port
    tx = Sender(socket.AF_INET, "127.0.0.1", 9)
    closing.append(tx)
    address, port = tx.sock.getsockname()
    assert (address, port) == ("0.0.0.0", tx.source_port)
    assert port in SOURCE_PORTS


def test_a_taken_port_is_skipped(closing: list) -> None:
    first = sender(socket.AF_INET, 9, closing)
    taken = first.source_port
    # the random start falls on the taken port: the next one is used
    second = sender(socket.AF_INET, 9, closing, rand=lambda n: taken - SOURCE_PORTS.start)
    assert second.source_port == (taken + 1 if taken < 65535 else SOURCE_PORTS.start)


def test_no_free_port_at_all(closing: list) -> None:
    first = sender(socket.AF_INET, 9, closing)
    only = range(first.source_port, first.source_port + 1)
    with pytest.raises(OSError) as caught:
        sender(socket.AF_INET, 9, closing, ports=only)
    assert caught.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=IPV6)])
def test_receiver_options(family: int, closing: list) -> None:
    sock = receiver(family, closing).sock
    if family == socket.AF_INET:
        assert sock.getsockopt(socket.IPPROTO_IP, IP_RECVTTL) == 1
        assert sock.getsockopt(socket.IPPROTO_IP, IP_PKTINFO) == 1
    else:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT) == 1
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO) == 1
    assert not sock.getblocking()


@pytest.mark.parametrize("family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=IPV6)])
def test_a_datagram_with_its_ttl_source_and_destination(family: int, closing: list) -> None:
    rx = receiver(family, closing)
    port = rx.sock.getsockname()[1]
    tx = sender(family, port, closing)
    assert rx.receive() is False                        # nothing queued: no exception
    packet = encode(Control(my_discr=7))
    assert tx.send(packet)
    tx.set_ttl(17)
    assert tx.send(packet)
    got = []
    for _ in range(2):
        rx.sock.settimeout(2)
        while not rx.receive():
            pass
        got.append((bytes(rx.view[:rx.nbytes]), rx.ttl, rx.source, rx.destination()))
    here = LOOPBACK[family]
    assert got == [(packet, 255, here, here), (packet, 17, here, here)]


def test_a_send_error_is_counted_not_raised(closing: list) -> None:
    tx = sender(socket.AF_INET, 9, closing)

    class Refusing:
        def sendto(self, data: object, address: object) -> int:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")

        def close(self) -> None:
            pass

    real = tx.sock
    closing.append(real)
    tx.sock = Refusing()  # type: ignore[assignment]
    assert tx.send(b"x" * 24) is False
    assert (tx.errors, tx.last_error) == (1, errno.ENETUNREACH)
