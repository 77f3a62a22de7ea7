"""A small HTTP(S) server for the probe tests, on asyncio.

Each path answers with a :class:`Reply`: exact bytes sent in timed parts, then
the connection closed or kept open until the client goes.  Every request is
recorded (the exact bytes up to the blank line, the client's address, the TLS
SNI name and client certificate), so tests assert what went on the wire.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    parts: tuple[tuple[float, bytes], ...]     # (seconds to wait first, bytes to send)
    keep_open: bool = False                    # after the last part, wait for the client


def reply(status: int = 200, body: bytes = b"", *, reason: str = "OK",
          version: str = "HTTP/1.0", headers: tuple[tuple[str, str], ...] = (),
          content_length: int | None | bool = True, keep_open: bool = False,
          body_delays: tuple[float, ...] = ()) -> Reply:
    """A reply; ``content_length`` True: the body's length, False/None: no header,
    an int: that value (a lie, if it differs).  ``body_delays``: the body is sent
    one byte-slice per delay, after that delay."""
    lines = [f"{version} {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length is True:
        lines.append(f"Content-Length: {len(body)}")
    elif isinstance(content_length, int) and content_length is not False:
        lines.append(f"Content-Length: {content_length}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if not body_delays:
        return Reply(((0.0, head + body),), keep_open)
    size = -(-len(body) // len(body_delays))
    parts = [(0.0, head)]
    parts += [(delay, body[i * size:(i + 1) * size]) for i, delay in enumerate(body_delays)]
    return Reply(tuple(parts), keep_open)


def raw(data: bytes, keep_open: bool = False) -> Reply:
    return Reply(((0.0, data),), keep_open)


@dataclass
class Seen:
    request: bytes
    peer: tuple[Any, ...]
    sni: str | None = None
    client_cert: dict[str, Any] | None = None


@dataclass
class HttpServer:
    routes: dict[str, Reply] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    _sni: dict[int, str | None] = field(default_factory=dict)
    _server: asyncio.AbstractServer | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, host: str | None, port: int) -> None:
        if self.tls is not None:
            self.tls.sni_callback = self._on_sni
        self._server = await asyncio.start_server(self._handle, host, port, ssl=self.tls,
                                                  reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()

    def _on_sni(self, sslobj: Any, name: str | None, _context: ssl.SSLContext) -> None:
        self._sni[id(sslobj)] = name

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            try:
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError):
                return
            sslobj = writer.get_extra_info("ssl_object")
            self.seen.append(Seen(request, writer.get_extra_info("peername"),
                                  self._sni.get(id(sslobj)) if sslobj else None,
                                  writer.get_extra_info("peercert")))
            path = request.split(b" ", 2)[1].decode()
            answer = self.routes.get(path) or reply(404, b"not here\n", reason="Not Found")
            for delay, data in answer.parts:
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
            if answer.keep_open:
                await reader.read()             # until the client closes
        except ConnectionError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._handlers.discard(task)


@dataclass
class SilentServer:
    """Accepts connections and never says a word (a TLS server that hangs)."""

    _server: asyncio.AbstractServer | None = None
    _held: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self, host: str | None, port: int) -> None:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)

        self._server = await asyncio.start_server(hold, host, port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._held:
            writer.close()
