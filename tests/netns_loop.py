"""An asyncio loop on a thread that has joined a network namespace.

setns(CLONE_NEWNET) changes the namespace of the calling thread only, so a
test can run a checker probe "on" the director host of a lab and a server "on"
a real-server host, each on its own loop, in one process.  Sockets belong to
the namespace of the thread that made them; processes started from the
thread (MISC_CHECK scripts) start in it too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def join_netns(name: str) -> None:
    """Move the calling thread into the network namespace ``ip netns`` calls ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


class NetnsLoop:
    """``run(coro)`` runs a coroutine on a loop inside ``netns`` and returns its result."""

    def __init__(self, netns: str | None, name: str = "netns-loop") -> None:
        self.netns = netns
        self.loop = asyncio.new_event_loop()
        started: Future[None] = Future()

        def main() -> None:
            try:
                if netns is not None:       # None: stay where we are (loopback tests)
                    join_netns(netns)
            except OSError as err:
                self.loop.close()
                started.set_exception(err)
                return
            asyncio.set_event_loop(self.loop)
            started.set_result(None)
            self.loop.run_forever()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=main, name=f"{name}-{netns or 'here'}", daemon=True)
        self.thread.start()
        started.result(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
