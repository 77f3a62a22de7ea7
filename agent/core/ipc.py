"""The parent's line to each child: newline-delimited JSON over a socketpair.

A message with ``"id"`` is a request; its answer carries ``"reply_to"``.
Anything else is an event (``ready``, ``heartbeat``).  Either end may send
either; a line that is not a JSON object is logged and skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("keepalived_py.ipc")

Message = dict[str, Any]
LIMIT = 64 * 1024 * 1024        # a snapshot of thousands of instances is several MB


class ChannelClosed(ConnectionError):
    pass


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=LIMIT)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        if self.writer.is_closing():
            raise ChannelClosed("the other end is gone")
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def request(self, message: Message, timeout: float) -> Message:
        ident = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self.send({**message, "id": ident})
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ident, None)

    def reply(self, request: Message, answer: Message) -> None:
        self.send({**answer, "reply_to": request.get("id")})

    async def serve(self, on_message: Callable[[Message], Awaitable[None] | None]) -> None:
        """Read until the other end closes; answers go to their requests, the rest to
        ``on_message``."""
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                try:
                    message = json.loads(line)
                except ValueError:
                    log.error("ignoring a line that is not JSON: %r", line[:80])
                    continue
                if not isinstance(message, dict):
                    continue
                if "reply_to" in message:
                    future = self._pending.get(message["reply_to"])
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                result = on_message(message)
                if asyncio.iscoroutine(result):
                    await result
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as err:
            log.debug("channel closed: %s", err)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ChannelClosed("the other end is gone"))

    def close(self) -> None:
        self.writer.close()
