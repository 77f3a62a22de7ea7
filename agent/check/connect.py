"""TCP connections for the checkers, and TCP_CHECK (keepalived's layer4.c, check_tcp.c).

A connection is opened as keepalived opens it: a non-blocking socket with the
fwmark (SO_MARK), the device (SO_BINDTODEVICE) and the source address/port the
checker asks for, then connect() with connect_timeout.

keepalived sorts connect() errors in two: those that say something about the
path to the server (refused, unreachable, reset ...) fail the check at once;
any other error at connect() time, and any failure to set the socket up, is
"a failure to run the check": it is logged and the check is tried again later
without a verdict.  We return the latter as ``ProbeResult(inconclusive=True)``.

Deliberate difference: keepalived sets SO_LINGER {on, 5 s}.  On Linux that
changes no packet; it only makes close() wait, even on a non-blocking socket,
until the peer acknowledges our FIN, up to 5 s (measured: 5.01 s with the
peer's packets dropped).  On an event loop that would stall every other
check, so we close without lingering; the kernel finishes the close the same
way in the background.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from .probe import ProbeFailure, ProbeResult, Target, seconds

# connect() errors that fail the check at once (layer4.c socket_bind_connect)
PATH_ERRORS = frozenset({
    errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.EHOSTDOWN,
    errno.ENETDOWN, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
})


def describe_errno(code: int) -> str:
    """``ECONNREFUSED`` -> ``connection refused``."""
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def describe_error(err: OSError) -> str:
    """An OSError as a message: its errno's text, else what it says."""
    return describe_errno(err.errno) if err.errno else str(err) or type(err).__name__


def sockaddr(ip: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """The family and socket address of a numeric IPv4/IPv6 address (``fe80::1%eth0`` too)."""
    try:
        infos = socket.getaddrinfo(ip, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError) as err:
        raise ProbeFailure(f"bad address {ip!r}: {err}", inconclusive=True) from None
    family, _, _, _, addr = infos[0]
    return family, addr


def make_socket(target: Target) -> tuple[socket.socket, tuple[object, ...]]:
    """A non-blocking TCP socket set up for ``target`` (mark, device, source), and the
    address to connect to.  Raises an inconclusive ProbeFailure when refused."""
    family, dst = sockaddr(target.ip, target.port)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC, socket.IPPROTO_TCP)
    except OSError as err:
        raise ProbeFailure(f"cannot create socket: {describe_error(err)}",
                           inconclusive=True) from None
    try:
        sock.setblocking(False)
        _set_up(sock, target, family)
    except BaseException:
        sock.close()
        raise
    return sock, dst


def _set_up(sock: socket.socket, target: Target, family: socket.AddressFamily) -> None:
    if target.fwmark:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, target.fwmark)
        except OSError as err:
            raise ProbeFailure(f"cannot set fwmark {target.fwmark}: "
                               f"{describe_error(err)}", inconclusive=True) from None
    if target.bind_if:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                            target.bind_if.encode() + b"\0")
        except OSError as err:
            raise ProbeFailure(f"cannot bind to device {target.bind_if}: "
                               f"{describe_error(err)}", inconclusive=True) from None
    if target.bindto or target.bind_port:
        # keepalived ignores a bind_port without bindto; we bind the wildcard address
        # with that port, which is what the configuration asks for
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        source = target.bindto or wildcard
        try:
            _, addr = sockaddr(source, target.bind_port or 0)
            sock.bind(addr)
        except ProbeFailure:
            raise
        except OSError as err:
            raise ProbeFailure(f"cannot bind to {_pair(source, target.bind_port or 0)}: "
                               f"{describe_error(err)}", inconclusive=True) from None


def _pair(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def wait_writable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` became writable within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_writer(fd, on_writable)
    try:
        await asyncio.wait_for(ready, max(timeout, 0.0))
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_writer(fd)


async def connect(target: Target, timeout: float | None = None) -> socket.socket:
    """An established, non-blocking TCP connection to ``target``.

    Raises ProbeFailure: inconclusive for our own set-up, a plain failure for a
    refused, unreachable or timed-out connection.
    """
    timeout = target.timeout if timeout is None else timeout
    sock, dst = make_socket(target)
    try:
        code = sock.connect_ex(dst)
        if code == errno.EINPROGRESS:
            if not await wait_writable(sock, timeout):
                raise ProbeFailure(f"connect timeout after {seconds(target.timeout)}")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == errno.ETIMEDOUT:
                raise ProbeFailure(f"connect timeout after {seconds(target.timeout)}")
            if code:
                # connect() had been accepted: whatever went wrong was on the way
                raise ProbeFailure(describe_errno(code))
        elif code in PATH_ERRORS:
            raise ProbeFailure(describe_errno(code))
        elif code:
            raise ProbeFailure(f"cannot connect: {describe_errno(code)}", inconclusive=True)
    except BaseException:
        sock.close()
        raise
    return sock


async def tcp_probe(target: Target) -> ProbeResult:
    """TCP_CHECK: connect within connect_timeout, then close."""
    try:
        sock = await connect(target)
    except ProbeFailure as failure:
        return failure.result()
    sock.close()
    return ProbeResult(True)
