"""HTTP_GET and SSL_GET: one url per call (check_http.c, check_ssl.c).

:func:`http_probe` connects (connect_timeout), for SSL_GET does the TLS
handshake within what is left of that time, sends keepalived's request
(:mod:`.http_wire`), and reads the reply, each read waiting at most
connect_timeout for more bytes (an idle timeout, as keepalived: a reply that
keeps trickling in may take longer in total, keepalived issue #1822).  The
reply ends when the server closes or, unlike keepalived, once Content-Length
body bytes are in.  :func:`http_exchange` is the same without the judging;
genhash uses it.

SSL_GET never verifies the server's certificate (keepalived does not either:
the check is whether the service answers, not who it is); the ``SSL`` block's
certificate and key are offered as a client certificate, its CA file is
loaded as keepalived loads it and, as there, not used.  keepalived 2.2.7 does
not send close_notify (a quiet shutdown) and neither do we.
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
from dataclasses import dataclass

from .connect import Endpoint, connect, describe_error, wait_ready
from .http_wire import (
    REGEX_BODY_LIMIT,
    Response,
    ResponseError,
    ResponseParser,
    UrlCheck,
    build_request,
    judge,
)
from .probe import ProbeFailure, ProbeResult, Target, seconds

READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """What goes into the request besides the path, resolved by the caller."""

    virtualhost: str | None = None   # the url's, else the checker's, the real server's, the VS's
    protocol: str = "1.0"            # http_protocol: 1.0, 1.0C or 1.1


@dataclass(frozen=True)
class TlsOptions:
    """SSL_GET's TLS settings: the SNI name and the global ``SSL`` block."""

    sni: str | None = None           # sent only with enable_sni: url, checker, VS virtualhost
    certfile: str | None = None      # SSL { certificate }
    keyfile: str | None = None       # SSL { key }
    password: str | None = None      # SSL { password }
    cafile: str | None = None        # SSL { ca }: loaded, never used to verify


def first_set(*values: str | None) -> str | None:
    """The first value that is set: ``first_set(url_vh, checker_vh, rs_vh, vs_vh)``."""
    for value in values:
        if value:
            return value
    return None


@dataclass(frozen=True)
class Exchange:
    request: bytes
    response: Response
    elapsed: float


# -- TLS ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def client_context(certfile: str | None = None, keyfile: str | None = None,
                   password: str | None = None, cafile: str | None = None) -> ssl.SSLContext:
    """A client context that verifies nothing.  Raises OSError / ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # OpenSSL's own cipher defaults, as keepalived gets them, rather than Python's
    # narrower list: a check that cannot tell the server from an impostor anyway
    # should not fail on an old cipher suite
    context.set_ciphers("DEFAULT:@SECLEVEL=1")
    if certfile:
        context.load_cert_chain(certfile, keyfile or None, password or None)
    if cafile:
        context.load_verify_locations(cafile)
    return context


def _tls_context(tls: TlsOptions) -> ssl.SSLContext:
    try:
        return client_context(tls.certfile, tls.keyfile, tls.password, tls.cafile)
    except (OSError, ssl.SSLError) as err:
        raise ProbeFailure(f"cannot set up TLS (SSL block): {_ssl_reason(err)}",
                           inconclusive=True) from None


def _ssl_reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.replace("_", " ").lower()
    if isinstance(err, OSError):
        return describe_error(err)
    return str(err) or type(err).__name__


# -- channels: the same reads and writes over TCP or TLS ------------------------------

class _ReadTimeout(ProbeFailure):
    """Nothing came for a whole timeout."""


class _Plain:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    async def send(self, data: bytes, timeout: float | None = None) -> None:
        limit = self.timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + limit
        view = memoryview(data)
        try:
            while view:
                # straight to the socket: a request fits in its buffer, and the event
                # loop's sock_sendall under wait_for cost a task and a future per call
                try:
                    view = view[self.sock.send(view):]
                except BlockingIOError:
                    if not await wait_ready(self.sock, deadline - time.monotonic(),
                                            write=True):
                        raise ProbeFailure(f"send timeout after {seconds(self.timeout)}"
                                           ) from None
        except OSError as err:
            raise ProbeFailure(f"cannot send: {describe_error(err)}") from None

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next bytes; b"" at the end; ProbeFailure after ``timeout`` idle."""
        limit = self.timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + limit
        try:
            while True:
                try:
                    return self.sock.recv(READ_SIZE)
                except BlockingIOError:
                    if not await wait_ready(self.sock, deadline - time.monotonic()):
                        raise _ReadTimeout(f"read timeout after {seconds(self.timeout)}"
                                           ) from None
        except OSError as err:
            raise ProbeFailure(f"read error: {describe_error(err)}") from None


class _Tls:
    """TLS through memory BIOs over the plain channel, so that every read and
    write keeps its own timeout and nothing blocks."""

    def __init__(self, plain: _Plain, context: ssl.SSLContext, sni: str | None) -> None:
        self.plain = plain
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                    server_hostname=sni or None)

    async def _flush(self, timeout: float | None = None) -> None:
        pending = self.outgoing.read()
        if pending:
            await self.plain.send(pending, timeout)

    async def _fill(self, timeout: float | None = None) -> bool:
        data = await self.plain.recv(timeout)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def handshake(self, deadline: float) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush(deadline - time.monotonic())
                try:
                    more = await self._fill(deadline - time.monotonic())
                except _ReadTimeout:
                    raise ProbeFailure(f"TLS handshake timeout after "
                                       f"{seconds(self.plain.timeout)}") from None
                if not more:
                    raise ProbeFailure("connection closed during the TLS handshake") from None
            except ssl.SSLError as err:
                raise ProbeFailure(f"TLS handshake failed: {_ssl_reason(err)}") from None
        await self._flush(deadline - time.monotonic())

    async def send(self, data: bytes) -> None:
        try:
            self.tls.write(data)
        except ssl.SSLError as err:
            raise ProbeFailure(f"cannot send: {_ssl_reason(err)}") from None
        await self._flush()

    async def recv(self) -> bytes:
        while True:
            try:
                return self.tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()         # a post-handshake message may want an answer
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a close without it: both end the reply, as in keepalived
                return b""
            except ssl.SSLError as err:
                raise ProbeFailure(f"TLS error: {_ssl_reason(err)}") from None


# -- one exchange -------------------------------------------------------------------

async def http_exchange(target: Target, path: str, request: HttpRequest | None = None,
                        tls: TlsOptions | None = None, *, keep_body: int = 0,
                        endpoint: Endpoint | None = None) -> Exchange:
    """GET ``path`` from ``target`` (over TLS when ``tls`` is given) and read the
    reply.  Raises ProbeFailure for anything that is not a complete reply."""
    request = request or HttpRequest()
    try:
        payload = build_request(path, target.ip, target.port, request.virtualhost,
                                request.protocol)
    except ValueError as err:
        raise ProbeFailure(str(err), inconclusive=True) from None
    context = _tls_context(tls) if tls is not None else None
    started = time.monotonic()
    deadline = started + target.timeout
    sock = await connect(target, endpoint=endpoint)
    try:
        plain = _Plain(sock, target.timeout)
        channel: _Plain | _Tls = plain
        if context is not None and tls is not None:
            channel = _Tls(plain, context, tls.sni)
            await channel.handshake(deadline)
        await channel.send(payload)
        parser = ResponseParser(keep_body=keep_body)
        while True:
            try:
                data = await channel.recv()
            except ProbeFailure as failure:
                if parser.started:
                    failure.detail = f"{parser.received} body bytes" if parser.header \
                        else "HTTP header incomplete"
                raise
            if not data or parser.feed(data):
                break
        response = parser.finish()
    except ResponseError as err:
        raise ProbeFailure(str(err)) from None
    finally:
        sock.close()
    return Exchange(payload, response, time.monotonic() - started)


async def http_probe(target: Target, url: UrlCheck, request: HttpRequest | None = None,
                     tls: TlsOptions | None = None, endpoint: Endpoint | None = None,
                     ) -> ProbeResult:
    """HTTP_GET (``tls`` None) or SSL_GET: one url, judged by its url block."""
    keep = REGEX_BODY_LIMIT if url.regex is not None else 0
    try:
        exchange = await http_exchange(target, url.path, request, tls, keep_body=keep,
                                       endpoint=endpoint)
    except ProbeFailure as failure:
        return failure.result()
    return judge(exchange.response, url)
