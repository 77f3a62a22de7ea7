"""HTTP_GET and SSL_GET on the wire, without I/O (check_http.c, lib/html.c).

The request is keepalived's, byte for byte::

    GET <path> HTTP/1.0|1.1\\r\\n
    User-Agent: KeepAliveClient\\r\\n
    [Connection: close\\r\\n]                 (http_protocol 1.0C and 1.1)
    Host: <virtualhost> | <ip>:<port> | [<ipv6>]:<port>\\r\\n
    \\r\\n

The reply is read as keepalived reads it: the header ends at the first
CRLFCRLF; the status line must be ``HTTP/<version> NNN `` (three digits and a
space); a ``Content-Length:`` header line (spelled exactly so, as keepalived
matches it) caps the body that is hashed; there is no chunked decoding, so the
digest is the MD5 of the raw body bytes.  :class:`ResponseParser` takes the
bytes as they come; :func:`judge` applies a ``url`` block to the result.

Deliberate differences from keepalived 2.2.7 (docs/checkers.md):

- the reply is complete once Content-Length body bytes are in: keepalived
  waits for the server to close, so a server that keeps the connection open
  fails on the read timeout;
- the regex sees the body only, and its offsets count from the body's first
  byte: keepalived also matches the status line and header whenever they
  arrive in the same read as the first body bytes;
- the status line must start with ``HTTP/`` (keepalived takes any first word);
- a header may be up to 64 KiB (keepalived: about 4 KiB, then "no data");
- ``Content-Length:`` counts only at the start of a header line (keepalived
  finds it anywhere in its first buffer, ``X-Content-Length:`` included).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Node
from .http_regex import compile_regex, regex_found
from .probe import ProbeResult

USER_AGENT = "KeepAliveClient"
PROTOCOLS = ("1.0", "1.0C", "1.1")
DEFAULT_STATUS = ((200, 299),)
HEADER_LIMIT = 64 * 1024
# what the regex is matched against at most (keepalived streams the whole body)
REGEX_BODY_LIMIT = 1024 * 1024

_STATUS_LINE = re.compile(rb"HTTP/[^ \r]* ([0-9]{3}) ")
_CONTENT_LENGTH = b"Content-Length:"
_LENGTH_VALUE = re.compile(rb"[ \t]*([0-9]+)")


# -- the request --------------------------------------------------------------------

def protocol_name(value: str) -> str:
    """``http_protocol`` as one of PROTOCOLS (``1.0c`` is ``1.0C``)."""
    canonical = value.upper()
    if canonical not in PROTOCOLS:
        raise ValueError(f"unknown http_protocol {value!r}")
    return canonical


def host_header(ip: str, port: int, virtualhost: str | None) -> str:
    """The Host value: the virtualhost as given, else the address and port
    (IPv6 in brackets, the address in its canonical form, no zone)."""
    if virtualhost:
        return virtualhost
    bare = ip.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return f"{bare}:{port}"
    if address.version == 6:
        return f"[{address.compressed}]:{port}"
    return f"{address}:{port}"


def build_request(path: str, ip: str, port: int, virtualhost: str | None = None,
                  protocol: str = "1.0") -> bytes:
    """keepalived's GET request for one url."""
    protocol = protocol_name(protocol)
    minor = 1 if protocol == "1.1" else 0
    close = "Connection: close\r\n" if protocol in ("1.0C", "1.1") else ""
    text = (f"GET {path} HTTP/1.{minor}\r\n"
            f"User-Agent: {USER_AGENT}\r\n"
            f"{close}"
            f"Host: {host_header(ip, port, virtualhost)}\r\n\r\n")
    # the configuration's own bytes go out unchanged
    return text.encode("utf-8", "surrogateescape")


# -- the reply ----------------------------------------------------------------------

class ResponseError(Exception):
    """The reply cannot be an HTTP response (the message is one line)."""


def parse_status(header: bytes) -> int:
    """The status code of the status line, or 0 when it is not ``HTTP/x NNN ``."""
    match = _STATUS_LINE.match(header)
    return int(match.group(1)) if match else 0


def parse_content_length(header: bytes) -> int | None:
    """The first ``Content-Length:`` line's value, None if absent or not a number
    (keepalived reads only the first one and ignores one it cannot read)."""
    for line in header.split(b"\r\n")[1:]:
        if line.startswith(_CONTENT_LENGTH):
            match = _LENGTH_VALUE.fullmatch(line, len(_CONTENT_LENGTH))
            return int(match.group(1)) if match else None
    return None


@dataclass
class Response:
    """What one reply held, as far as the checks need it."""

    status: int                     # 0: no valid status line
    header: bytes                   # status line and header lines, up to CRLFCRLF included
    content_length: int | None
    received: int                   # body bytes received
    digest: str                     # MD5 (hex) of the body, capped at Content-Length
    body: bytes = b""               # the (capped) body, at most the parser's keep_body bytes
    complete: bool = False          # ended because Content-Length bytes were in

    @property
    def status_line(self) -> str:
        line = self.header.split(b"\r\n", 1)[0]
        return line.decode("latin-1")

    def summary(self) -> str:
        """One line for the status display."""
        text = f"HTTP {self.status}, {self.received} bytes, MD5 {self.digest}"
        if self.content_length is not None and self.content_length != self.received:
            text += f" (Content-Length {self.content_length})"
        return text


@dataclass
class ResponseParser:
    """Feed it the bytes of a reply; it finds the header, the status and
    Content-Length, and hashes the body as keepalived does."""

    keep_body: int = 0              # how many body bytes to keep (for the regex)
    header_limit: int = HEADER_LIMIT
    header: bytes | None = field(default=None, init=False)
    status: int = field(default=0, init=False)
    content_length: int | None = field(default=None, init=False)
    received: int = field(default=0, init=False)
    _head: bytearray = field(default_factory=bytearray, init=False)
    _scanned: int = field(default=0, init=False)
    _counted: int = field(default=0, init=False)     # body bytes hashed (<= Content-Length)
    _md5: Any = field(default_factory=hashlib.md5, init=False)
    _body: bytearray = field(default_factory=bytearray, init=False)

    @property
    def started(self) -> bool:
        return bool(self._head) or self.header is not None

    @property
    def complete(self) -> bool:
        """All the body Content-Length announced is in."""
        return self.content_length is not None and self.received >= self.content_length

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the reply is complete (Content-Length)."""
        if self.header is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(self._head)
                if len(self._head) > self.header_limit:
                    raise ResponseError(f"no end of the HTTP header within "
                                        f"{self.header_limit} bytes")
                return False
            end += 4
            self.header = bytes(self._head[:end])
            data = bytes(self._head[end:])
            self._head = bytearray()
            self.status = parse_status(self.header)
            self.content_length = parse_content_length(self.header)
        self._take_body(data)
        return self.complete

    def _take_body(self, data: bytes) -> None:
        self.received += len(data)
        counted = data
        if self.content_length is not None:
            counted = data[:max(0, self.content_length - self._counted)]
        if counted:
            self._counted += len(counted)
            self._md5.update(counted)
            room = self.keep_body - len(self._body)
            if room > 0:
                self._body += counted[:room]

    def finish(self) -> Response:
        """The reply as received so far; ResponseError if its header never ended."""
        if self.header is None:
            if not self._head:
                raise ResponseError("no data received")
            raise ResponseError("connection closed before the end of the HTTP header")
        return Response(self.status, self.header, self.content_length, self.received,
                        self._md5.hexdigest(), bytes(self._body), self.complete)


# -- the url block ------------------------------------------------------------------

@dataclass(frozen=True)
class UrlCheck:
    """One ``url`` block: what a reply must look like.

    ``regex_max_offset`` is as configured: the last offset at which a match
    may start (keepalived stores it plus one); None when not set.
    """

    path: str
    status_code: tuple[tuple[int, int], ...] = DEFAULT_STATUS
    digest: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    regex_options: tuple[str, ...] = ()
    regex_min_offset: int = 0
    regex_max_offset: int | None = None

    @classmethod
    def from_node(cls, node: Node) -> UrlCheck:
        """From a parsed ``url`` block, with keepalived's url_check() corrections:
        regex settings without a regex are dropped, and so are offsets whose
        minimum is past their maximum."""
        values = node.values
        regex = values.get("regex")
        min_offset = values.get("regex_min_offset", 0) if regex else 0
        max_offset = values.get("regex_max_offset") if regex else None
        if max_offset is not None and min_offset > max_offset:
            min_offset, max_offset = 0, None
        return cls(
            path=values["path"],
            status_code=tuple(values.get("status_code") or DEFAULT_STATUS),
            digest=values.get("digest"),
            regex=regex,
            regex_no_match=bool(values.get("regex_no_match")) and regex is not None,
            regex_options=tuple(values.get("regex_options", ())) if regex else (),
            regex_min_offset=min_offset,
            regex_max_offset=max_offset,
        )


def status_allowed(status: int, ranges: Sequence[tuple[int, int]]) -> bool:
    if not 100 <= status <= 599:
        return False
    return any(low <= status <= high for low, high in ranges)


def judge(response: Response, url: UrlCheck) -> ProbeResult:
    """keepalived's order: the status code, then the digest, then the regex."""
    detail = response.summary()

    def fail(error: str) -> ProbeResult:
        return ProbeResult(False, error, detail=detail)

    if response.status == 0:
        return fail(f"bad HTTP status line {_show(response.status_line)}")
    if not status_allowed(response.status, url.status_code or DEFAULT_STATUS):
        return fail(f"HTTP status {response.status}")
    if url.digest and response.digest != url.digest.lower():
        return fail(f"MD5 digest mismatch (got {response.digest})")
    if url.regex is not None:
        try:
            regex = compile_regex(url.regex, tuple(url.regex_options))
        except re.error as err:
            return fail(f"invalid regex {url.regex!r}: {err}")
        found = regex_found(regex, response.body, url.regex_min_offset, url.regex_max_offset)
        if found and url.regex_no_match:
            return fail(f"regex {url.regex!r} matched (regex_no_match)")
        if not found and not url.regex_no_match:
            return fail(f"regex {url.regex!r} did not match")
    return ProbeResult(True, detail=detail)


def _show(text: str, limit: int = 60) -> str:
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown
