"""Which addresses are on this host, as they come and go (rtnetlink address events).

The checker's ``ha_suspend`` needs it: a virtual server's checks pause while its
VIP is not here (keepalived's netlink address reflector in its checker process).
An address on several links counts once per link, so that it is gone only when
the last copy is.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from ipaddress import ip_address

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR

log = logging.getLogger("keepalived_py")


def _address(msg: dict) -> str | None:
    value = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")  # type: ignore[attr-defined]
    return str(ip_address(value)) if value else None


class AddressWatch:
    """:meth:`start` subscribes and returns the addresses here now; :meth:`follow`
    then calls ``on_change(address, present)`` for every one that comes or goes."""

    def __init__(self, on_change: Callable[[str, bool], None]) -> None:
        self.on_change = on_change
        self.count: Counter[str] = Counter()
        self._sock: AsyncIPRoute | None = None

    async def start(self) -> set[str]:
        sock = AsyncIPRoute(groups=RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        self._sock = sock
        await sock.bind()
        # read after subscribing, so that no change is missed
        for msg in [m async for m in await sock.addr("dump")]:
            address = _address(msg)
            if address is not None:
                self.count[address] += 1
        return set(self.count)

    async def follow(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            while self._sock is sock:
                async for msg in sock.get():
                    self._event(msg["header"]["type"], msg)
        except (NetlinkError, OSError) as err:
            if self._sock is sock:
                log.error("address events stopped: %s - ha_suspend stays as it is", err)
        finally:
            sock.close()

    def _event(self, kind: int, msg: dict) -> None:
        address = _address(msg)
        if address is None:
            return
        if kind == RTM_NEWADDR:
            self.count[address] += 1
            if self.count[address] == 1:
                self.on_change(address, True)
        elif kind == RTM_DELADDR and self.count[address] > 0:
            self.count[address] -= 1
            if self.count[address] == 0:
                del self.count[address]
                self.on_change(address, False)

    def present(self) -> set[str]:
        return set(self.count)

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
