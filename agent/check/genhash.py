"""``keepalived-py genhash``: the MD5 digest a HTTP_GET/SSL_GET ``digest`` must hold.

keepalived's genhash (``keepalived --genhash``, check_genhash.c) fetches one
url the way the checker does and prints the MD5 of the body; this command
takes the same options and prints the same digest, computed by the checker's
own code (:func:`.http.http_exchange`): the raw body, no chunked decoding,
capped at Content-Length.  Like keepalived's, it prints the digest whatever the
status code (it notes a status outside 200-299 on stderr).

Differences from keepalived 2.2.7's genhash: a failure (refused, timeout, no
reply) is one line on stderr and exit status 2, where keepalived prints a
message on stdout and exits 0; the timeout defaults to 5 s (the checkers'
connect_timeout) where keepalived waits about 71 minutes; ``-t`` takes
fractions of a second; ``-v`` shows the request, the header and the body in a
layout of our own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from .connect import sockaddr
from .http import HttpRequest, TlsOptions, http_exchange
from .http_wire import REGEX_BODY_LIMIT, protocol_name
from .probe import ProbeFailure, Target

PROG = "keepalived-py genhash"
DEFAULT_TIMEOUT = 5.0
EXIT_USAGE = 1
EXIT_FAILED = 2

USAGE = f"""\
Usage: {PROG} [-S [-I]] -s ADDRESS -p PORT -u PATH [OPTIONS]
Prints the MD5 digest of the body of http(s)://ADDRESS:PORT/PATH, as the
HTTP_GET / SSL_GET checkers compute it for a url's `digest`.

  -s, --server ADDRESS         IPv4 or IPv6 address of the server (required)
  -p, --port PORT              TCP port (required)
  -u, --url PATH               path to request, e.g. /index.html (required)
  -S, --use-ssl                use TLS (SSL_GET); the certificate is not verified
  -I, --use-sni                send the virtual host (-V) as TLS SNI
  -V, --use-virtualhost HOST   Host header to send (default ADDRESS:PORT)
  -P, --protocol VERSION       HTTP version: 1.0 (default), 1.0c (1.0 with
                               "Connection: close") or 1.1
  -m, --fwmark MARK            firewall mark for the connection (SO_MARK)
  -t, --timeout SECONDS        connect and read timeout (default {DEFAULT_TIMEOUT:g})
  -v, --verbose                also show the request, the header and the body
  -h, --help                   show this help
"""


async def genhash(target: Target, path: str, request: HttpRequest | None = None,
                  tls: TlsOptions | None = None) -> str:
    """The MD5 digest (hex) of ``path``'s body as the checker computes it; raises
    ProbeFailure when no complete reply came."""
    return (await http_exchange(target, path, request, tls)).response.digest


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, add_help=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-S", "--use-ssl", action="store_true")
    parser.add_argument("-I", "--use-sni", action="store_true")
    parser.add_argument("-s", "--server")
    parser.add_argument("-V", "--use-virtualhost")
    parser.add_argument("-p", "--port")
    parser.add_argument("-u", "--url")
    parser.add_argument("-m", "--fwmark")
    parser.add_argument("-P", "--protocol")
    parser.add_argument("-t", "--timeout")
    return parser


def _settings(args: argparse.Namespace) -> tuple[Target, str, HttpRequest, TlsOptions | None]:
    if args.help:
        raise _UsageError("")
    missing = [f"-{flag}" for flag, value in (("s", args.server), ("p", args.port),
                                              ("u", args.url)) if value is None]
    if missing:
        raise _UsageError(f"missing {', '.join(missing)}")
    try:
        sockaddr(args.server, 0)
    except ProbeFailure:
        raise _UsageError(f"-s needs an IP address, not {args.server!r}") from None
    if not args.port.isdigit() or not 0 < int(args.port) <= 65535:
        raise _UsageError(f"bad port {args.port!r}")
    fwmark = None
    if args.fwmark is not None:
        if not args.fwmark.strip().isdigit() or int(args.fwmark) > 0xFFFFFFFF:
            raise _UsageError(f"bad fwmark {args.fwmark!r}")
        fwmark = int(args.fwmark)
    timeout = DEFAULT_TIMEOUT
    if args.timeout is not None:
        try:
            timeout = float(args.timeout)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout < float("inf"):
            raise _UsageError(f"bad timeout {args.timeout!r}")
    protocol = "1.0"
    if args.protocol is not None:
        try:
            protocol = protocol_name(args.protocol)
        except ValueError:
            raise _UsageError(f"bad HTTP protocol version {args.protocol!r}") from None
    target = Target(args.server, int(args.port), fwmark=fwmark, timeout=timeout)
    request = HttpRequest(virtualhost=args.use_virtualhost, protocol=protocol)
    tls = None
    if args.use_ssl:
        tls = TlsOptions(sni=args.use_virtualhost if args.use_sni else None)
    return target, args.url, request, tls


def genhash_main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    """Run genhash with ``argv`` (without the program name); the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        target, path, request, tls = _settings(args)
    except _UsageError as usage:
        if str(usage):
            print(f"genhash: {usage}", file=err)
        print(USAGE, end="", file=err)
        return EXIT_USAGE
    try:
        exchange = asyncio.run(http_exchange(target, path, request, tls,
                                             keep_body=REGEX_BODY_LIMIT if args.verbose else 0))
    except ProbeFailure as failure:
        print(f"genhash: {_where(target)}{path}: {failure.error}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    response = exchange.response
    if args.verbose:
        _show(out, exchange.request, response.header, response.body, response.received,
              response.content_length)
    print(response.digest, file=out)
    if args.verbose:
        print(f"response time for {path}: {exchange.elapsed * 1e6:.0f} us", file=out)
    if not 200 <= response.status <= 299:
        shown = response.status or response.status_line
        print(f"genhash: note: the server answered {shown!r}; this is the digest of "
              "that reply", file=err)
    return 0


def _where(target: Target) -> str:
    host = f"[{target.ip}]" if ":" in target.ip else target.ip
    return f"{host}:{target.port}"


def _show(out: TextIO, request: bytes, header: bytes, body: bytes, received: int,
          content_length: int | None) -> None:
    print("---- request ----", file=out)
    print(request.decode("latin-1").replace("\r\n", "\n"), end="", file=out)
    print("---- HTTP header ----", file=out)
    print(header.decode("latin-1").replace("\r\n", "\n"), end="", file=out)
    hashed = received if content_length is None else min(received, content_length)
    extra = "" if content_length is None else f", Content-Length {content_length}"
    print(f"---- body: {received} bytes received, {hashed} hashed{extra} ----", file=out)
    if len(body) < hashed:
        print(f"(the first {len(body)} bytes)", file=out)
    for line in hex_dump(body):
        print(line, file=out)
    print("---- MD5 ----", file=out)


def hex_dump(data: bytes) -> list[str]:
    """16 bytes a line: offset, hex, printable ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    return lines


if __name__ == "__main__":
    sys.exit(genhash_main())
