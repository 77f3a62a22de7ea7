"""Netlink sessions: rtnetlink sockets of one network namespace, opened on first use.

Every subsystem that talks to the kernel (VRRP's addresses, routes and rules,
the checker's IPVS, VMAC links) shares these rules: a namespace that does not
exist is an error (never created), a socket that cannot open says why in one
line, at most ``IN_FLIGHT`` requests wait for replies at a time, and a reply
lost to a full socket buffer (ENOBUFS) is asked for again.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

IN_FLIGHT = 32              # requests outstanding on the command socket at most
OVERFLOW_RETRIES = 5


class KernelError(Exception):
    """The kernel refused a request; the message names the object."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class NetlinkSession:
    """rtnetlink for one network namespace (``None``: the one we run in).

    Make it anywhere; the command socket opens on first use, on the running loop.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: AsyncIPRoute | None = None
        self._watchers: set[AsyncIPRoute] = set()
        self._slots: asyncio.Semaphore | None = None

    def open_socket(self, groups: int = 0) -> AsyncIPRoute:
        """A new socket (``groups``: the multicast groups to listen to), open now so
        that a failure says why."""
        # flags=0: a namespace that does not exist is an error, never created
        sock = AsyncIPRoute(netns=self.netns, flags=0, groups=groups) if self.netns \
            else AsyncIPRoute(groups=groups)
        try:
            _ = sock.socket
        except OSError as e:
            sock.close()
            where = f"network namespace {self.netns}" if self.netns else "this namespace"
            raise KernelError(f"cannot open netlink in {where}: {e.strerror}",
                              e.errno or 0) from None
        return sock

    @property
    def ipr(self) -> AsyncIPRoute:
        """The command socket."""
        if self._ipr is None:
            self._ipr = self.open_socket()
        return self._ipr

    def watching(self, sock: AsyncIPRoute) -> None:
        """Close ``sock`` with the session (an event socket)."""
        self._watchers.add(sock)

    def unwatch(self, sock: AsyncIPRoute) -> bool:
        """Forget an event socket; False when the session closed it already."""
        if sock not in self._watchers:
            return False
        self._watchers.discard(sock)
        return True

    async def close(self) -> None:
        for sock in [*self._watchers, *([self._ipr] if self._ipr else [])]:
            sock.close()
        self._watchers.clear()
        self._ipr = None

    async def __aenter__(self) -> NetlinkSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, *args: Any, **kw: Any) -> Any:
        """One request on the command socket, its reply read to the end.

        At most IN_FLIGHT at a time: a thousand instances turning master at
        once would otherwise queue more replies than the socket buffer holds,
        the kernel drops them (ENOBUFS) and pyroute2 fails every pending
        request.  An overflow all the same is retried.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(IN_FLIGHT)
        async with self._slots:
            for attempt in range(1, OVERFLOW_RETRIES + 1):
                try:
                    reply = await getattr(self.ipr, method)(*args, **kw)
                    if hasattr(reply, "__aiter__"):     # a dump: read it while we hold the slot
                        reply = [msg async for msg in reply]
                    return reply
                except (NetlinkError, OSError) as e:
                    code = getattr(e, "code", None) or e.errno
                    if code != errno.ENOBUFS or attempt == OVERFLOW_RETRIES:
                        raise
                    await asyncio.sleep(0.05 * attempt)
