"""Data planes the checker process can program, and the one for a kernel without any.

The IPVS data plane lives in ``agent/ipvs``; :class:`NoDataPlane` keeps the
checker running where the kernel has no IPVS (a container, a host kernel
built without it): the checks run, the state is visible, nothing is
programmed, and the reason is said once.
"""

from __future__ import annotations

import logging
from typing import Any

from . import engine as E
from .spec import VirtualServerSpec

log = logging.getLogger("keepalived_py.check")


class NoDataPlane:
    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def read(self, servers: list[VirtualServerSpec]) -> E.InKernel:
        log.warning("No data plane: %s - the checkers run, nothing is programmed",
                    self.reason)
        return E.InKernel()            # no kernel table: nothing to adopt or drain

    async def apply(self, wanted: E.Wanted) -> None:
        pass

    async def connections(self) -> dict[tuple[E.VsKey, E.RsKey], int]:
        return {}

    async def counters(self) -> dict[E.VsKey, dict[str, Any]]:
        return {}

    async def stop(self, wanted: E.Wanted, flush: str) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "available": False, "reason": self.reason}
