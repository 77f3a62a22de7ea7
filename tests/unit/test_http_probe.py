"""The checker probes without a lab: keepalived's HTTP request bytes, the reply
parser, the url judgement, the regex options, MISC exit statuses, genhash's
command line; and the probes over loopback (no root needed)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keepalived_py.check.connect import tcp_probe
from keepalived_py.check.genhash import genhash, genhash_main, hex_dump
from keepalived_py.check.http import HttpRequest, first_set, http_probe
from keepalived_py.check.http_regex import (
    compile_regex,
    regex_error,
    regex_found,
    unsupported_options,
)
from keepalived_py.check.http_wire import (
    Response,
    ResponseError,
    ResponseParser,
    UrlCheck,
    build_request,
    host_header,
    judge,
    parse_content_length,
    parse_status,
    protocol_name,
)
from keepalived_py.check.misc import misc_result
from keepalived_py.check.probe import ProbeResult, Target
from keepalived_py.config import load

from tests.httpd import HttpServer, reply
from tests.netns_loop import NetnsLoop

BODY = b"<html><body>hello, checker</body></html>\n"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- the request ----------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (("/", "198.18.0.12", 80, None, "1.0"),
     b"GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.18.0.12:80\r\n\r\n"),
    (("/a b", "198.18.0.12", 80, None, "1.0c"),
     b"GET /a b HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
     b"Host: 198.18.0.12:80\r\n\r\n"),
    (("/x", "2001:db8:0:0::12", 443, None, "1.1"),
     b"GET /x HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
     b"Host: [2001:db8::12]:443\r\n\r\n"),
    (("/x", "2001:db8::12", 443, "www.example.test", "1.0"),
     b"GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: www.example.test\r\n\r\n"),
    (("/", "fe80::1%eth0", 8080, None, "1.0"),
     b"GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: [fe80::1]:8080\r\n\r\n"),
    (("/caf\u00e9", "198.18.0.12", 80, "h\u00f4te", "1.0"),
     "GET /caf\u00e9 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: h\u00f4te\r\n\r\n"
     .encode()),
])
def test_request_bytes(args: tuple[str, str, int, str | None, str], expected: bytes) -> None:
    assert build_request(*args) == expected


def test_protocol_names() -> None:
    assert [protocol_name(p) for p in ("1.0", "1.0c", "1.0C", "1.1")] == \
        ["1.0", "1.0C", "1.0C", "1.1"]
    with pytest.raises(ValueError):
        protocol_name("2")


def test_host_header_without_an_ip() -> None:
    assert host_header("not-an-ip", 80, None) == "not-an-ip:80"


def test_virtualhost_precedence_helper() -> None:
    assert first_set(None, "checker", "rs", "vs") == "checker"
    assert first_set(None, None, None, None) is None
    assert first_set("", None, "rs") == "rs"


# -- the reply --------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "status"), [
    (b"HTTP/1.0 200 OK\r\n\r\n", 200),
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 503),
    (b"HTTP/2 204 \r\n\r\n", 204),
    (b"HTTP/1.1 200\r\n\r\n", 0),          # the space after the code is required
    (b"HTTP/1.1  200 OK\r\n\r\n", 0),
    (b"HTTP/1.1 20 OK\r\n\r\n", 0),
    (b"HTTP/1.1 2000 OK\r\n\r\n", 0),
    (b"HTTP/1.1 +20 OK\r\n\r\n", 0),
    (b"ICY 200 OK\r\n\r\n", 0),
    (b"http/1.1 200 OK\r\n\r\n", 0),
    (b"HTTP/1.1 099 Low\r\n\r\n", 99),      # parsed; no status_code can allow it
])
def test_status_line(header: bytes, status: int) -> None:
    assert parse_status(header) == status


@pytest.mark.parametrize(("header", "length"), [
    (b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n", 12),
    (b"HTTP/1.0 200 OK\r\nContent-Length:12\r\n\r\n", 12),
    (b"HTTP/1.0 200 OK\r\nContent-Length: \t0\r\n\r\n", 0),
    (b"HTTP/1.0 200 OK\r\nServer: x\r\nContent-Length: 7\r\nContent-Length: 9\r\n\r\n", 7),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 12\r\n\r\n", None),      # matched exactly
    (b"HTTP/1.0 200 OK\r\nX-Content-Length: 12\r\n\r\n", None),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 12 \r\n\r\n", None),
    (b"HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", None),
    (b"HTTP/1.0 200 OK\r\nContent-Length: \r\n\r\n", None),
    (b"HTTP/1.0 200 OK\r\nContent-Length: x\r\nContent-Length: 3\r\n\r\n", None),
    (b"Content-Length: 5\r\n\r\n", None),                            # not on the status line
])
def test_content_length(header: bytes, length: int | None) -> None:
    assert parse_content_length(header) == length


def parse(*chunks: bytes, keep_body: int = 0) -> tuple[Response, bool]:
    parser = ResponseParser(keep_body=keep_body)
    complete = False
    for chunk in chunks:
        complete = parser.feed(chunk)
        if complete:
            break
    return parser.finish(), complete


def test_body_after_the_first_blank_line() -> None:
    response, complete = parse(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n" + BODY, keep_body=10**6)
    assert (response.status, response.received, response.digest, response.body, complete) == \
        (200, len(BODY), md5(BODY), BODY, False)
    assert response.header == b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n"
    assert response.status_line == "HTTP/1.0 200 OK"


def test_content_length_caps_the_digest_and_ends_the_reply() -> None:
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n"
    response, complete = parse(head + BODY[:4], BODY[4:], keep_body=100)
    assert complete
    assert (response.digest, response.body, response.content_length) == \
        (md5(BODY[:10]), BODY[:10], 10)
    # what came beyond Content-Length is counted as received, and shown
    assert response.received == len(BODY)
    assert response.summary().endswith("(Content-Length 10)")


def test_complete_at_once_with_an_empty_body() -> None:
    response, complete = parse(b"HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n")
    assert complete
    assert response.digest == md5(b"")


def test_keep_body_limits_what_is_kept_not_what_is_hashed() -> None:
    response, _ = parse(b"HTTP/1.0 200 OK\r\n\r\n" + BODY, keep_body=5)
    assert (response.body, response.digest) == (BODY[:5], md5(BODY))


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8),
       st.one_of(st.none(), st.integers(0, 300)))
def test_how_the_bytes_are_cut_does_not_matter(body: bytes, cuts: list[int],
                                               length: int | None) -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: t\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n".encode()
    data = head + b"\r\n" + body
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole, whole_complete = parse(data, keep_body=1000)
    pieces, pieces_complete = parse(*chunks, keep_body=1000)
    capped = body if length is None else body[:length]
    assert (pieces.status, pieces.header, pieces.digest, pieces.body) == \
        (whole.status, whole.header, md5(capped), capped)
    assert pieces_complete == whole_complete == (length is not None and len(body) >= length)


def test_reply_errors() -> None:
    with pytest.raises(ResponseError, match="^no data received$"):
        ResponseParser().finish()
    parser = ResponseParser()
    parser.feed(b"HTTP/1.0 200 OK\r\n")
    with pytest.raises(ResponseError, match="before the end of the HTTP header"):
        parser.finish()
    small = ResponseParser(header_limit=100)
    small.feed(b"HTTP/1.0 200 OK\r\n" + b"X: y\r\n" * 10)
    with pytest.raises(ResponseError, match="within 100 bytes"):
        small.feed(b"X: y\r\n" * 10)


# -- judging a reply ----------------------------------------------------------------------

def response(status: int = 200, body: bytes = BODY, status_line: bytes | None = None) -> Response:
    line = status_line or f"HTTP/1.0 {status} Something".encode()
    return Response(status, line + b"\r\n\r\n", None, len(body), md5(body), body)


def test_judge_order_and_messages() -> None:
    url = UrlCheck("/", digest="0" * 32, regex="nothing")
    assert judge(response(500), url).error == "HTTP status 500"
    assert judge(response(200), url).error == f"MD5 digest mismatch (got {md5(BODY)})"
    url = UrlCheck("/", digest=md5(BODY), regex="nothing")
    assert judge(response(200), url).error == "regex 'nothing' did not match"
    ok = judge(response(200), UrlCheck("/", digest=md5(BODY).upper(), regex="hello"))
    assert ok == ProbeResult(True, detail=f"HTTP 200, {len(BODY)} bytes, MD5 {md5(BODY)}")
    bad = judge(response(0, status_line=b"garbage"), UrlCheck("/"))
    assert bad.error == "bad HTTP status line 'garbage'"
    assert judge(response(99), UrlCheck("/", status_code=((0, 999),))).error == "HTTP status 99"
    assert judge(response(200), UrlCheck("/", regex="(")).error.startswith("invalid regex '('")


# -- regex ------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "options", "body", "offsets", "found"), [
    ("hello", (), BODY, (0, None), True),
    ("HELLO", (), BODY, (0, None), False),
    ("HELLO", ("caseless",), BODY, (0, None), True),
    ("<html>.*</html>", (), b"<html>\n</html>", (0, None), False),
    ("<html>.*</html>", ("dotall",), b"<html>\n</html>", (0, None), True),
    ("^b$", (), b"a\nb\nc", (0, None), False),
    ("^b$", ("multiline",), b"a\nb\nc", (0, None), True),
    ("h e l l o  # comment", ("extended",), BODY, (0, None), True),
    # offsets: "hello" starts at 12; max is the last start allowed
    ("hello", (), BODY, (12, 12), True),
    ("hello", (), BODY, (13, None), False),
    ("hello", (), BODY, (0, 11), False),
    ("l+", (), BODY, (0, 14), True),            # the first match, at 14, counts
    ("(?<=hel)lo", (), BODY, (15, 15), True),   # lookbehind sees before the offset
    ("hello", (), BODY, (10**6, None), False),
    ("^x", (), b"ab\nxy", (3, None), False),   # ^ does not match at the offset (as PCRE2)
    # firstline: the match must start on the first line searched
    ("c", ("firstline",), b"ab\ncd", (0, None), False),
    ("b", ("firstline",), b"ab\ncd", (0, None), True),
    ("d", ("firstline",), b"ab\ncd", (3, None), True),
    # utf: text; offsets still count bytes
    ("\u00e9t\u00e9", ("utf",), "\u00e9t\u00e9".encode(), (0, None), True),
    (r"\w+t", ("utf",), "\u00e9t\u00e9".encode(), (0, None), False),    # \w is ASCII
    (r"\w+t", ("utf", "ucp"), "\u00e9t\u00e9".encode(), (0, None), True),
    ("t", ("utf",), "\u00e9t\u00e9".encode(), (2, 2), True),
    ("t", ("utf",), "\u00e9t\u00e9".encode(), (1, None), False),          # inside a character
    ("x", ("utf",), b"\xff x", (0, None), False),                       # not UTF-8
    # bytes without utf: the pattern's UTF-8 bytes match byte for byte
    ("\u00e9", (), "caf\u00e9".encode(), (0, None), True),
    (".*", (), b"", (0, None), False),          # an empty body is never matched
    ("hello", ("no_auto_capture", "ungreedy"), BODY, (0, None), True),
])
def test_regex_found(pattern: str, options: tuple[str, ...], body: bytes,
                     offsets: tuple[int, int | None], found: bool) -> None:
    assert regex_found(compile_regex(pattern, options), body, *offsets) is found


def test_regex_options_without_python_equivalent() -> None:
    assert unsupported_options(("caseless", "ungreedy", "utf", "dollar_endonly")) == \
        ("ungreedy", "dollar_endonly")
    assert regex_error("ok") is None
    error = regex_error("(")
    assert error is not None and error.startswith("invalid regex '(': ")
    with pytest.raises(re.error):
        compile_regex(r"\K")


# -- the url block from a configuration --------------------------------------------------

def url_blocks(url_lines: str) -> list[UrlCheck]:
    text = f"""
virtual_server 198.18.1.1 80 {{
    real_server 198.18.0.12 80 {{
        HTTP_GET {{
{url_lines}
        }}
    }}
}}
"""
    root = load("keepalived.conf", text=text).root
    http = root.blocks("virtual_server")[0].blocks("real_server")[0].blocks("HTTP_GET")[0]
    return [UrlCheck.from_node(url) for url in http.blocks("url")]


def test_url_from_configuration() -> None:
    urls = url_blocks("""
            url {
                path /a
            }
            url {
                path /b
                digest 0123456789ABCDEF0123456789abcdef
                status_code 200 300-302
                regex "a b"
                regex_no_match
                regex_options caseless dotall
                regex_min_offset 2
                regex_max_offset 5
            }
            url {
                path /c
                regex_no_match
                regex_min_offset 2
            }
            url {
                path /d
                regex x
                regex_min_offset 6
                regex_max_offset 5
            }
""")
    assert urls == [
        UrlCheck("/a"),
        UrlCheck("/b", ((200, 200), (300, 302)), "0123456789ABCDEF0123456789abcdef", "a b",
                 True, ("caseless", "dotall"), 2, 5),
        UrlCheck("/c"),                           # regex settings without a regex
        UrlCheck("/d", regex="x"),                # min past max: both dropped
    ]


# -- MISC_CHECK's verdicts ---------------------------------------------------------------

@pytest.mark.parametrize(("status", "dynamic", "expected"), [
    (0, False, ProbeResult(True, detail="exit status 0")),
    (0, True, ProbeResult(True, detail="exit status 0")),
    (1, True, ProbeResult(False, "exited with status 1")),
    (2, True, ProbeResult(True, weight=0, detail="exit status 2")),
    (2, False, ProbeResult(False, "exited with status 2")),
    (255, True, ProbeResult(True, weight=253, detail="exit status 255")),
    (-15, True, ProbeResult(False, "killed by signal 15 (SIGTERM)")),
    (None, True, ProbeResult(False, "timeout after 2.5 s")),
])
def test_misc_result(status: int | None, dynamic: bool, expected: ProbeResult) -> None:
    assert misc_result(status, dynamic, 2.5) == expected


# -- genhash's command line ---------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    ([], "genhash: missing -s, -p, -u"),
    (["-h"], None),
    (["-s", "198.18.0.12", "-p", "80"], "genhash: missing -u"),
    (["-s", "www.example.test", "-p", "80", "-u", "/"], "genhash: -s needs an IP address"),
    (["-s", "198.18.0.12", "-p", "0", "-u", "/"], "genhash: bad port '0'"),
    (["-s", "198.18.0.12", "-p", "65536", "-u", "/"], "genhash: bad port '65536'"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "-P", "2"],
     "genhash: bad HTTP protocol version '2'"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "-t", "0"], "genhash: bad timeout '0'"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "-t", "soon"], "genhash: bad timeout"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "-m", "-1"], "genhash: bad fwmark '-1'"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "--bogus"], "genhash: unrecognized"),
    (["-s", "198.18.0.12", "-p", "80", "-u", "/", "extra"], "genhash: unrecognized"),
    (["-s"], "genhash: argument -s/--server: expected one argument"),
])
def test_genhash_usage_errors(argv: list[str], message: str | None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert genhash_main(argv, stdout=out, stderr=err) == 1
    assert out.getvalue() == ""
    text = err.getvalue()
    if message:
        assert text.startswith(message)
    assert "Usage: keepalived-py genhash" in text
    assert "Traceback" not in text


def test_hex_dump() -> None:
    assert hex_dump(b"GET / HTTP/1.0\r\n\x00abc") == [
        "00000000  47 45 54 20 2f 20 48 54 54 50 2f 31 2e 30 0d 0a  GET / HTTP/1.0..",
        "00000010  00 61 62 63                                      .abc",
    ]


# -- over loopback -----------------------------------------------------------------------

@pytest.fixture
def server_loop() -> Iterator[NetnsLoop]:
    loop = NetnsLoop(None, "loopback-server")
    yield loop
    loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probes_over_loopback(server_loop: NetnsLoop) -> None:
    port = free_port()
    server = HttpServer({"/ka": reply(body=BODY, version="HTTP/1.1", keep_open=True)})
    server_loop.run(server.start("127.0.0.1", port))
    target = Target("127.0.0.1", port, timeout=2)

    async def probes() -> list[ProbeResult]:
        return [await tcp_probe(target),
                await tcp_probe(Target("127.0.0.1", free_port())),
                await http_probe(target, UrlCheck("/ka", digest=md5(BODY), regex="checker"),
                                 HttpRequest("h.test", "1.1"))]

    tcp, refused, http = asyncio.run(probes())
    assert tcp == ProbeResult(True)
    assert (refused.ok, refused.error) == (False, "connection refused")
    assert http.ok, http
    assert server.seen[0].request == (b"GET /ka HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\n"
                                      b"Connection: close\r\nHost: h.test\r\n\r\n")


def test_genhash_over_loopback(server_loop: NetnsLoop) -> None:
    port = free_port()
    server = HttpServer({"/p": reply(body=BODY)})
    server_loop.run(server.start("127.0.0.1", port))
    assert asyncio.run(genhash(Target("127.0.0.1", port), "/p")) == md5(BODY)
    out, err = io.StringIO(), io.StringIO()
    assert genhash_main(["-s", "127.0.0.1", "-p", str(port), "-u", "/p"], stdout=out,
                        stderr=err) == 0
    assert (out.getvalue(), err.getvalue()) == (md5(BODY) + "\n", "")
    out = io.StringIO()
    assert genhash_main(["-v", "-s", "127.0.0.1", "-p", str(port), "-u", "/p"], stdout=out,
                        stderr=err) == 0
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["---- request ----", "GET /p HTTP/1.0"]
    assert f"---- body: {len(BODY)} bytes received, {len(BODY)} hashed, Content-Length " \
           f"{len(BODY)} ----" in lines
    assert lines[-2:-1] == [md5(BODY)]
    assert lines[-1].startswith("response time for /p: ")
