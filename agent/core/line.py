"""The parent's line (``ipc.py``'s protocol) for a child that runs its own select loop.

``ipc.Channel`` needs asyncio; the BFD process runs a loop of its own on
absolute deadlines (asyncio rounds its timeouts to milliseconds) and reads
this line from the same ``select``.  Same wire format: newline-delimited JSON,
requests with ``"id"``, answers with ``"reply_to"``, anything else an event.

Non-blocking both ways: ``read()`` returns the whole lines that have come,
``send()`` writes what the socket takes and keeps the rest for ``flush()``
(select for writing while ``wants_write``), so a slow parent never stalls the
caller's loop.
"""

from __future__ import annotations

import json
import logging
import socket

from .ipc import LIMIT, ChannelClosed, Message

log = logging.getLogger("keepalived_py.ipc")

__all__ = ["ChannelClosed", "LineChannel"]


class LineChannel:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._in = bytearray()
        self._out = bytearray()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        return bool(self._out) and not self.closed

    def send(self, message: Message) -> None:
        if self.closed:
            raise ChannelClosed("the other end is gone")
        self._out += json.dumps(message, separators=(",", ":")).encode()
        self._out += b"\n"
        self.flush()

    def reply(self, request: Message, answer: Message) -> None:
        self.send({**answer, "reply_to": request.get("id")})

    def flush(self) -> None:
        """Write what the socket takes now; the rest waits for the next call."""
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.closed = True
                raise ChannelClosed(f"the other end is gone ({err})") from None
            del self._out[:sent]

    def read(self) -> list[Message]:
        """The messages that have come (JSON objects; other lines are logged and
        skipped).  ``ChannelClosed`` once the other end has closed and every
        whole line before that was returned."""
        eof = False
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            self._in += chunk
            if len(self._in) > LIMIT:
                log.error("a line from the parent is longer than %d bytes: dropped", LIMIT)
                self._in.clear()
        messages: list[Message] = []
        start = 0
        while True:
            end = self._in.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._in[start:end])
            start = end + 1
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.error("ignoring a line that is not JSON: %r", line[:80])
                continue
            if isinstance(message, dict):
                messages.append(message)
        del self._in[:start]
        if eof and not messages:
            self.closed = True
            raise ChannelClosed("the other end is gone")
        # with messages, the close is reported by the next read(): recv() on a
        # closed peer keeps returning b""
        return messages

    def close(self) -> None:
        self.closed = True
        self.sock.close()
