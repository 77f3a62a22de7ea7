"""The plumbing every child process shares: its line to the parent, its heartbeat,
the requests it answers and keepalived's signals.

A child (see ``children.py``) builds a :class:`ChildLoop` with a handler per
request name, starts it on its running loop, sends ``ready`` when it runs and
waits on ``done``.  A request that fails is answered with its error and logged;
it never ends the process.  When the parent's end of the line closes, ``done``
is set and the child stops gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from . import logs
from .children import child_parser, read_hello
from .daemon import EXIT_PROGRAM_ERROR, SIGJSON, SIGSTATS_CLEAR
from .ipc import Channel, ChannelClosed, Message

log = logging.getLogger("keepalived_py")

HEARTBEAT_EVERY = 1.0
Handler = Callable[[Message], Awaitable[Message]]
# keepalived's dump signals and the dump each asks for
DUMP_SIGNALS = ((signal.SIGUSR1, "data"), (signal.SIGUSR2, "stats"), (SIGJSON, "json"),
                (SIGSTATS_CLEAR, "stats_clear"))


class ChildLoop:
    def __init__(self, ipc_fd: int | None, handlers: dict[str, Handler]) -> None:
        self.ipc_fd = ipc_fd
        self.handlers = handlers
        self.channel: Channel | None = None
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def supervised(self) -> bool:
        return self.ipc_fd is not None

    async def start(self, *, on_reload: Callable[[], Coroutine[Any, Any, Any]],
                    on_dump: Callable[[str], Coroutine[Any, Any, Any]],
                    dumps: tuple[str, ...] = ()) -> None:
        """Take the signals and open the line to the parent (when there is one)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(on_reload()))
        for sig, kind in DUMP_SIGNALS:
            if kind in dumps:
                loop.add_signal_handler(sig, lambda kind=kind: self.spawn(on_dump(kind)))
            else:
                # a dump this child does not write: its signal must not end it (their
                # default action), as `pkill -USR2 keepalived-py` reaches every process
                loop.add_signal_handler(sig, lambda: None)
        if self.ipc_fd is not None:
            self.channel = await Channel.open(socket.socket(fileno=self.ipc_fd))
            self.spawn(self._listen())

    def ready(self) -> None:
        self.send({"event": "ready", "pid": os.getpid()})
        self.spawn(self._heartbeat())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, message: Message) -> None:
        if self.channel is None:
            return
        try:
            self.channel.send(message)
        except ChannelClosed:
            self.done.set()

    async def _heartbeat(self) -> None:
        while True:
            self.send({"event": "heartbeat"})
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def _listen(self) -> None:
        assert self.channel is not None
        await self.channel.serve(lambda message: self.spawn(self._answer(message)))
        log.info("The parent process is gone - stopping")
        self.done.set()

    async def _answer(self, message: Message) -> None:
        what = str(message.get("request"))
        handler = self.handlers.get(what)
        try:
            if what == "stop":
                self.done.set()
                answer: Message = {"ok": True}
            elif handler is None:
                answer = {"ok": False, "error": f"unknown request {what!r}"}
            else:
                answer = await handler(message)
        except Exception as err:  # noqa: BLE001 - an answer, never a dead process
            log.exception("request %s failed", what)
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        if self.channel is not None:
            try:
                self.channel.reply(message, answer)
            except ChannelClosed:
                self.done.set()


def child_main(prog: str, ident: str, argv: Sequence[str] | None,
               add_arguments: Callable[[argparse.ArgumentParser], Any],
               start: Callable[[argparse.Namespace, dict[str, Any]], int]) -> int:
    """A child's entry point: its arguments, its log (as ``ident``), the parent's hello
    read, then ``start(args, hello)``.  An unexpected error is one line in the log and
    keepalived's program-error exit, after which the parent restarts the child."""
    parser = child_parser(prog)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.setup(ident, logs.LogOptions(console=args.console, detail=args.detail,
                                      facility=args.facility, syslog=not args.no_syslog))
    try:
        hello = read_hello(args.ipc_fd) if args.ipc_fd is not None else {}
        return start(args, hello)
    except Exception as err:  # noqa: BLE001 - one line in the log, and the parent restarts us
        log.debug("unexpected error", exc_info=True)
        log.error("Stopping: unexpected error %s: %s (a bug: please report it)",
                  type(err).__name__, err)
        return EXIT_PROGRAM_ERROR
