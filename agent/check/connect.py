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
import logging
import os
import select
import socket
import time
from _socket import socket as raw_socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .probe import ProbeFailure, ProbeResult, Target, seconds

log = logging.getLogger("keepalived_py.check")

# a plain int: the flags' enum arithmetic showed in profiles at thousands of sockets a second
_NONBLOCKING_STREAM = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)

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


@dataclass(frozen=True)
class Endpoint:
    """A target resolved once, for all its probes: family, socket address, and whether
    the socket needs setting up (mark, device, source) before connect()."""

    target: Target
    family: int
    address: tuple[object, ...]
    plain: bool


def resolve(target: Target) -> Endpoint:
    """``target`` resolved; raises an inconclusive ProbeFailure for a bad address."""
    family, address = sockaddr(target.ip, target.port)
    plain = not (target.fwmark or target.bind_if or target.bindto or target.bind_port)
    return Endpoint(target, int(family), address, plain)


def make_socket(target: Target, endpoint: Endpoint | None = None, *,
                kind: type[raw_socket] = socket.socket) -> tuple[Any, tuple[object, ...]]:
    """A non-blocking TCP socket set up for ``target`` (mark, device, source), and the
    address to connect to.  Raises an inconclusive ProbeFailure when refused.
    ``kind``: socket.socket, or the C type under it where nothing needs the Python
    layer (its constructor and close() showed in profiles)."""
    if endpoint is None:
        endpoint = resolve(target)
    try:
        sock = kind(endpoint.family, _NONBLOCKING_STREAM, socket.IPPROTO_TCP)
    except OSError as err:
        raise ProbeFailure(f"cannot create socket: {describe_error(err)}",
                           inconclusive=True) from None
    if not endpoint.plain:
        try:
            _set_up(sock, target, socket.AddressFamily(endpoint.family))
        except BaseException:
            sock.close()
            raise
    return sock, endpoint.address


def _set_up(sock: raw_socket, target: Target, family: socket.AddressFamily) -> None:
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


async def wait_ready(sock: raw_socket, timeout: float, *, write: bool = False) -> bool:
    """Whether ``sock`` became readable (``write``: writable) within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()

    def settle(value: bool) -> None:
        if not ready.done():
            ready.set_result(value)

    fd = sock.fileno()
    watch, unwatch = (loop.add_writer, loop.remove_writer) if write else \
        (loop.add_reader, loop.remove_reader)
    watch(fd, settle, True)
    # one timer handle, not asyncio.wait_for's wrapper future and task per wait
    timer = loop.call_later(max(timeout, 0.0), settle, False)
    try:
        return await ready
    finally:
        timer.cancel()
        unwatch(fd)


def connect_error(code: int, timeout: float) -> ProbeResult:
    """The failed check for a connect() that the kernel had accepted and that then failed
    with ``code`` (SO_ERROR): whatever went wrong was on the way."""
    if code == errno.ETIMEDOUT:
        return ProbeResult(False, f"connect timeout after {seconds(timeout)}")
    return ProbeResult(False, describe_errno(code))


def refused_at_once(code: int) -> ProbeResult:
    """A connect() that failed at once: a path error fails the check, any other error
    is ours (inconclusive)."""
    if code in PATH_ERRORS:
        return ProbeResult(False, describe_errno(code))
    return ProbeResult(False, f"cannot connect: {describe_errno(code)}", inconclusive=True)


async def connect(target: Target, timeout: float | None = None,
                  endpoint: Endpoint | None = None) -> socket.socket:
    """An established, non-blocking TCP connection to ``target``.

    Raises ProbeFailure: inconclusive for our own set-up, a plain failure for a
    refused, unreachable or timed-out connection.
    """
    timeout = target.timeout if timeout is None else timeout
    sock, dst = make_socket(target, endpoint)
    try:
        code = sock.connect_ex(dst)
        if code == errno.EINPROGRESS:
            if not await wait_ready(sock, timeout, write=True):
                raise ProbeFailure(f"connect timeout after {seconds(target.timeout)}")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise ProbeFailure(connect_error(code, target.timeout).error)
        elif code:
            failed = refused_at_once(code)
            raise ProbeFailure(failed.error, inconclusive=failed.inconclusive)
    except BaseException:
        sock.close()
        raise
    return sock


CONNECTED = ProbeResult(True)
_TROUBLE = select.EPOLLERR | select.EPOLLHUP
_ONCE_WRITABLE = select.EPOLLOUT | select.EPOLLONESHOT


class Connects:
    """TCP_CHECK for many servers at once: connects in flight on one epoll of ours, each
    with its connect_timeout, and ``done(token, result)`` called for each.

    At thousands of checks a second, what a probe cost as a coroutine (a task, the
    event loop's selector bookkeeping, a future and a timer handle per connect) was
    most of the checker's CPU: here a probe is a socket, a dict entry and a queue
    entry.  Results are taken in batches, ``TICK`` seconds after the first of them
    came (not one wake-up of the loop per connect); timeouts are swept at most every
    ``RESOLUTION`` seconds, one queue per connect_timeout value (deadlines come in
    order in each).
    """

    TICK = 0.01
    RESOLUTION = 0.05
    BATCH = 4096

    def __init__(self, done: Callable[[Any, ProbeResult], None]) -> None:
        self._done = done
        self._epoll = select.epoll()
        self._pending: dict[int, tuple[raw_socket, Any, float]] = {}
        self._deadlines: dict[float, deque[tuple[float, int, raw_socket]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._harvest: asyncio.TimerHandle | None = None

    def attach(self) -> None:
        """Start serving on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._epoll.fileno(), self._woken)

    def close(self) -> None:
        """Drop every connect in flight (no result for them) and stop."""
        for handle in (self._timer, self._harvest):
            if handle is not None:
                handle.cancel()
        self._timer = self._harvest = None
        if self._loop is not None and not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
        for sock, _, _ in self._pending.values():
            sock.close()
        self._pending.clear()
        self._deadlines.clear()
        self._epoll.close()

    def __len__(self) -> int:
        return len(self._pending)

    def connect(self, endpoint: Endpoint, token: Any) -> None:  # noqa: ANN401 - the caller's
        """Start a check of ``endpoint``; its result comes to ``done(token, result)``,
        never before this returns."""
        assert self._loop is not None, "attach() first"
        target = endpoint.target
        try:
            if endpoint.plain:          # the common case, without make_socket's layers
                sock = raw_socket(endpoint.family, _NONBLOCKING_STREAM, socket.IPPROTO_TCP)
            else:
                sock, _ = make_socket(target, endpoint, kind=raw_socket)
        except ProbeFailure as failure:
            self._loop.call_soon(self._done, token, failure.result())
            return
        except OSError as err:
            self._loop.call_soon(self._done, token, ProbeResult(
                False, f"cannot create socket: {describe_error(err)}", inconclusive=True))
            return
        code = sock.connect_ex(endpoint.address)
        if code != errno.EINPROGRESS:
            sock.close()
            self._loop.call_soon(self._done, token, refused_at_once(code) if code else CONNECTED)
            return
        fd = sock.fileno()
        self._epoll.register(fd, _ONCE_WRITABLE)
        timeout = target.timeout
        self._pending[fd] = (sock, token, timeout)
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        queue.append((time.monotonic() + timeout, fd, sock))
        if self._timer is None:
            self._arm()

    def _woken(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self._epoll.fileno())
        self._harvest = self._loop.call_later(self.TICK, self._harvested)

    def _harvested(self) -> None:
        assert self._loop is not None
        self._harvest = None
        self._ready()
        self._loop.add_reader(self._epoll.fileno(), self._woken)

    def _ready(self) -> None:
        pending = self._pending
        while True:
            # every ready connect, not the 1,023 a bare poll() returns: the rest would
            # wait a turn, and a sweep in that turn would time them out
            events = self._epoll.poll(0, self.BATCH)
            for fd, flags in events:
                entry = pending.pop(fd, None)
                if entry is None:
                    continue
                sock, token, timeout = entry
                # writable without an error or hang-up: connected, no need to ask
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) \
                    if flags & _TROUBLE else 0
                sock.close()            # which also takes it out of the epoll
                self._report(token, connect_error(code, timeout) if code else CONNECTED)
            if len(events) < self.BATCH:
                return

    def _report(self, token: Any, result: ProbeResult) -> None:  # noqa: ANN401
        try:
            self._done(token, result)
        except Exception:           # one bad result must not lose the others of the batch
            log.exception("TCP_CHECK: handling a result failed")

    def _sweep(self) -> None:
        self._timer = None
        # connects that completed while the loop was busy elsewhere are not late
        self._ready()
        now = time.monotonic()
        for timeout, queue in list(self._deadlines.items()):
            while queue and queue[0][0] <= now:
                _, fd, sock = queue.popleft()
                entry = self._pending.get(fd)
                if entry is None or entry[0] is not sock:
                    continue        # it finished meanwhile
                del self._pending[fd]
                sock.close()
                self._report(entry[1], connect_error(errno.ETIMEDOUT, timeout))
        self._arm()

    def _arm(self) -> None:
        heads = [queue[0][0] for queue in self._deadlines.values() if queue]
        if not heads or self._loop is None:
            return
        delay = max(min(heads) - time.monotonic(), self.RESOLUTION)
        self._timer = self._loop.call_later(delay, self._sweep)


async def tcp_probe(target: Target) -> ProbeResult:
    """TCP_CHECK once: connect within connect_timeout, then close (the checker process
    runs its TCP_CHECKs on one :class:`Connects`; this one runs a single check on one)."""
    try:
        endpoint = resolve(target)
    except ProbeFailure as failure:
        return failure.result()
    result: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
    connects = Connects(lambda _token, outcome: result.set_result(outcome))
    connects.attach()
    try:
        connects.connect(endpoint, None)
        return await result
    finally:
        connects.close()
