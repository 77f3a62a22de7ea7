"""The checker probes against real servers in a lab (agent/check/connect.py, http.py,
misc.py, genhash.py).

Each test gets a lab of two namespaces on a bridge: ``d`` (the director: the
probes run there, on a loop in a thread that joined it) and ``a`` (a real
server, 198.18.0.12 and 2001:db8::12: tests/httpd.py, python's http.server, a
silent listener).  What the servers received is asserted byte for byte; the
timeouts are short (0.5 s) so that the failures they cause are quick.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from keepalived_py.check.connect import tcp_probe
from keepalived_py.check.http import HttpRequest, TlsOptions, http_probe
from keepalived_py.check.http_wire import UrlCheck
from keepalived_py.check.misc import misc_probe
from keepalived_py.check.probe import ProbeResult, Target
from keepalived_py.host.scripts import (
    ScriptCommand,
    ScriptError,
    ScriptUser,
    lookup_user,
    our_user,
)

from tests.conftest import REPO, tier_missing
from tests.httpd import HttpServer, Reply, SilentServer, raw, reply
from tests.integration.conftest import LabFactory
from tests.lab import Host, Lab
from tests.netns_loop import NetnsLoop

pytestmark = pytest.mark.root

T = TypeVar("T")
PORT = 8080
SERVER4, SERVER6 = "198.18.0.12", "2001:db8::12"
QUICK = 0.5                  # connect_timeout for the tests that time out
BODY = b"<html><body>keepalived-py probe test page</body></html>\n"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Net:
    lab: Lab
    director: Host
    server_host: Host
    client: NetnsLoop           # runs probes in the director's namespace
    server_loop: NetnsLoop      # runs servers in the real server's namespace

    def probe(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.client.run(coro)

    def timed(self, coro: Coroutine[Any, Any, T]) -> tuple[T, float]:
        start = time.monotonic()
        result = self.client.run(coro)
        return result, time.monotonic() - start

    def serve(self, server: HttpServer | SilentServer, host: str | None = None,
              port: int = PORT) -> Any:
        self.server_loop.run(server.start(host, port))
        return server

    def http(self, routes: dict[str, Reply], tls: ssl.SSLContext | None = None,
             port: int = PORT) -> HttpServer:
        return self.serve(HttpServer(routes, tls), port=port)


@pytest.fixture
def net(lab_factory: LabFactory, request: pytest.FixtureRequest) -> Net:
    lab = lab_factory(["d", "a"])
    client = NetnsLoop(lab.host("d").netns, "director")
    request.addfinalizer(client.close)
    server_loop = NetnsLoop(lab.host("a").netns, "server")
    request.addfinalizer(server_loop.close)
    return Net(lab, lab.host("d"), lab.host("a"), client, server_loop)


def target(ip: str = SERVER4, port: int = PORT, **kw: Any) -> Target:
    return Target(ip, port, **kw)


def ip_in(host: Host, *args: str) -> None:
    host.run(["ip", *args])


def nft_in(host: Host, script: str) -> None:
    host.run(["nft", script])


# -- TCP_CHECK ----------------------------------------------------------------------

@pytest.mark.parametrize("ip", [SERVER4, SERVER6])
def test_tcp_check_connects_to_an_open_port(net: Net, ip: str) -> None:
    net.http({})
    assert net.probe(tcp_probe(target(ip))) == ProbeResult(True)


def test_tcp_check_closed_port_fails_at_once(net: Net) -> None:
    result, took = net.timed(tcp_probe(target(port=8099, timeout=5)))
    assert (result.ok, result.error, result.inconclusive) == (False, "connection refused", False)
    assert took < 1


def test_tcp_check_no_route_fails_at_once(net: Net) -> None:
    result, took = net.timed(tcp_probe(target("198.18.200.1", timeout=5)))
    assert (result.ok, result.error, result.inconclusive) == \
        (False, "network is unreachable", False)
    assert took < 1


def test_tcp_check_unreachable_route_fails_at_once(net: Net) -> None:
    ip_in(net.director, "route", "add", "unreachable", "198.18.7.0/24")
    result, took = net.timed(tcp_probe(target("198.18.7.1", timeout=5)))
    assert (result.ok, result.error, result.inconclusive) == (False, "no route to host", False)
    assert took < 1


def test_tcp_check_times_out_when_syns_are_dropped(net: Net) -> None:
    net.http({})
    nft_in(net.server_host, "add table inet cut; add chain inet cut input "
           "{ type filter hook input priority -300 ; }; "
           f"add rule inet cut input tcp dport {PORT} drop")
    result, took = net.timed(tcp_probe(target(timeout=QUICK)))
    assert (result.ok, result.error) == (False, "connect timeout after 0.5 s")
    assert QUICK <= took < QUICK + 0.5


def test_closing_does_not_wait_for_the_peer(net: Net) -> None:
    """keepalived's SO_LINGER {1, 5} would hold close() until our FIN is acknowledged:
    5 s here, where the server's packets after its SYN-ACK are dropped."""
    net.http({})
    nft_in(net.server_host, "add table inet cut; add chain inet cut output "
           "{ type filter hook output priority -300 ; }; "
           f"add rule inet cut output tcp sport {PORT} tcp flags & syn == 0 drop")
    result, took = net.timed(tcp_probe(target(timeout=5)))
    assert result.ok
    assert took < 1


def test_bindto_and_bind_port_are_the_source(net: Net) -> None:
    ip_in(net.director, "addr", "add", "198.18.0.111/24", "dev", "eth0")
    ip_in(net.director, "addr", "add", "2001:db8::111/64", "dev", "eth0", "nodad")
    server = net.http({"/": reply(body=BODY)})
    for ip, source, port in ((SERVER4, "198.18.0.111", 40111), (SERVER6, "2001:db8::111", 40112)):
        result = net.probe(http_probe(target(ip, bindto=source, bind_port=port), UrlCheck("/")))
        assert result.ok, result
        assert server.seen[-1].peer[:2] == (source, port)


def test_bind_port_alone_binds_the_wildcard_address(net: Net) -> None:
    server = net.http({"/": reply(body=BODY)})
    assert net.probe(http_probe(target(bind_port=40113), UrlCheck("/"))).ok
    assert server.seen[-1].peer[:2] == ("198.18.0.11", 40113)


def test_bindto_an_address_we_do_not_have_is_inconclusive(net: Net) -> None:
    net.http({})
    result = net.probe(tcp_probe(target(bindto="198.18.0.250")))
    assert result == ProbeResult(False, "cannot bind to 198.18.0.250:0: cannot assign requested "
                                        "address", inconclusive=True)


def link_local(host: Host) -> str:
    links = host._ip_json("-6", "addr", "show", "dev", "eth0", "scope", "link")
    # ip's filtered JSON holds an empty entry for each address filtered out
    return next(a["local"] for a in links[0]["addr_info"] if "local" in a)


def test_bind_if_reaches_an_ipv6_link_local_server(net: Net) -> None:
    server = net.http({"/": reply(body=BODY)})
    peer = link_local(net.server_host)
    result = net.probe(http_probe(target(peer, bind_if="eth0"), UrlCheck("/", digest=md5(BODY))))
    assert result.ok, result
    assert server.seen[-1].request.endswith(f"Host: [{peer}]:{PORT}\r\n\r\n".encode())
    # without the device the kernel cannot tell which link: our side, no verdict
    result = net.probe(tcp_probe(target(peer)))
    assert (result.ok, result.inconclusive) == (False, True)
    assert result.error == "cannot connect: invalid argument"


def test_bind_if_unknown_device_is_inconclusive(net: Net) -> None:
    result = net.probe(tcp_probe(target(bind_if="nosuchdev0")))
    assert result == ProbeResult(False, "cannot bind to device nosuchdev0: no such device",
                                 inconclusive=True)


def test_fwmark_marks_the_connection(net: Net) -> None:
    """198.18.9.1 is reachable only by a route that policy routing picks for mark 42."""
    ip_in(net.server_host, "addr", "add", "198.18.9.1/32", "dev", "eth0")
    ip_in(net.director, "rule", "add", "fwmark", "42", "lookup", "42")
    ip_in(net.director, "route", "add", "198.18.9.0/24", "via", SERVER4, "table", "42")
    server = net.http({"/": reply(body=BODY)})
    unmarked = net.probe(tcp_probe(target("198.18.9.1")))
    assert (unmarked.ok, unmarked.error) == (False, "network is unreachable")
    assert net.probe(tcp_probe(target("198.18.9.1", fwmark=42))).ok
    assert net.probe(http_probe(target("198.18.9.1", fwmark=42), UrlCheck("/"))).ok
    assert server.seen[-1].request.startswith(b"GET / HTTP/1.0\r\n")


# -- HTTP_GET: the request ------------------------------------------------------------

@pytest.mark.parametrize(("ip", "vhost", "protocol", "expected"), [
    (SERVER4, None, "1.0",
     b"GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.18.0.12:8080\r\n\r\n"),
    (SERVER4, "www.example.test", "1.0C",
     b"GET /p?q=1 HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
     b"Host: www.example.test\r\n\r\n"),
    (SERVER4, "www.example.test:8080", "1.1",
     b"GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
     b"Host: www.example.test:8080\r\n\r\n"),
    (SERVER6, None, "1.1",
     b"GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
     b"Host: [2001:db8::12]:8080\r\n\r\n"),
])
def test_the_server_receives_keepalived_s_request(net: Net, ip: str, vhost: str | None,
                                                  protocol: str, expected: bytes) -> None:
    server = net.http({"/p?q=1": reply(body=BODY)})
    result = net.probe(http_probe(target(ip), UrlCheck("/p?q=1"), HttpRequest(vhost, protocol)))
    assert result.ok, result
    assert [seen.request for seen in server.seen] == [expected]


# -- HTTP_GET: judging the reply ------------------------------------------------------

@pytest.mark.parametrize(("status", "codes", "ok"), [
    (200, ((200, 299),), True),
    (299, ((200, 299),), True),
    (302, ((200, 299),), False),
    (503, ((200, 299),), False),
    (503, ((500, 503),), True),
    (404, ((200, 200), (404, 404)), True),
    (201, ((200, 200), (404, 404)), False),
])
def test_status_code_ranges(net: Net, status: int, codes: tuple[tuple[int, int], ...],
                            ok: bool) -> None:
    net.http({"/s": reply(status, BODY, reason="Whatever")})
    result = net.probe(http_probe(target(), UrlCheck("/s", status_code=codes)))
    assert result.ok is ok
    assert result.error == ("" if ok else f"HTTP status {status}")
    assert result.detail.startswith(f"HTTP {status}, {len(BODY)} bytes, MD5 {md5(BODY)}")


def test_digest_of_the_body(net: Net) -> None:
    net.http({"/d": reply(body=BODY)})
    assert net.probe(http_probe(target(), UrlCheck("/d", digest=md5(BODY).upper()))).ok
    wrong = net.probe(http_probe(target(), UrlCheck("/d", digest="0" * 32)))
    assert (wrong.ok, wrong.error) == (False, f"MD5 digest mismatch (got {md5(BODY)})")


def test_status_is_judged_before_the_digest(net: Net) -> None:
    net.http({"/d": reply(500, BODY)})
    result = net.probe(http_probe(target(), UrlCheck("/d", digest=md5(BODY))))
    assert result.error == "HTTP status 500"


def test_content_length_caps_the_hashed_body(net: Net) -> None:
    net.http({"/short": reply(body=BODY, content_length=10),
              "/long": reply(body=BODY, content_length=len(BODY) + 100)})
    short = net.probe(http_probe(target(), UrlCheck("/short", digest=md5(BODY[:10]))))
    assert short.ok, short
    # more announced than sent, then closed: what came is hashed (keepalived only logs it)
    long = net.probe(http_probe(target(), UrlCheck("/long", digest=md5(BODY))))
    assert long.ok, long
    assert long.detail.endswith(f"(Content-Length {len(BODY) + 100})")


def test_lower_case_content_length_is_not_a_cap(net: Net) -> None:
    """keepalived matches ``Content-Length:`` exactly; so do we (the digest stays theirs)."""
    net.http({"/lc": raw(b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\n" + BODY)})
    assert net.probe(http_probe(target(), UrlCheck("/lc", digest=md5(BODY)))).ok


def test_chunked_body_is_hashed_raw(net: Net) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    net.http({"/c": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)})
    assert net.probe(http_probe(target(), UrlCheck("/c", digest=md5(body)))).ok


def test_a_server_that_keeps_the_connection_after_content_length(net: Net) -> None:
    """keepalived 2.2.7 waits for the close and fails on the read timeout; we stop at
    Content-Length."""
    net.http({"/ka": reply(body=BODY, version="HTTP/1.1", keep_open=True),
              "/ka-no-length": reply(body=BODY, content_length=False, keep_open=True)})
    result, took = net.timed(http_probe(target(timeout=2), UrlCheck("/ka", digest=md5(BODY))))
    assert result.ok, result
    assert took < 1
    result = net.probe(http_probe(target(timeout=QUICK), UrlCheck("/ka-no-length")))
    assert (result.ok, result.error) == (False, "read timeout after 0.5 s")
    assert result.detail == f"{len(BODY)} body bytes"


def test_timeout_is_per_read(net: Net) -> None:
    """A body trickling in slower than connect_timeout in total but never idle that long
    passes (keepalived's semantics, issue #1822); one pause longer than it fails."""
    net.http({"/slow": reply(body=BODY, body_delays=(0.3, 0.3, 0.3, 0.3)),
              "/stall": reply(body=BODY, body_delays=(0.0, 1.5))})
    result, took = net.timed(http_probe(target(timeout=QUICK), UrlCheck("/slow", digest=md5(BODY))))
    assert result.ok, result
    assert took > QUICK * 2
    result = net.probe(http_probe(target(timeout=QUICK), UrlCheck("/stall")))
    assert (result.ok, result.error) == (False, "read timeout after 0.5 s")


def test_a_server_that_never_answers(net: Net) -> None:
    net.serve(SilentServer())
    result, took = net.timed(http_probe(target(timeout=QUICK), UrlCheck("/")))
    assert (result.ok, result.error, result.detail) == (False, "read timeout after 0.5 s", "")
    assert took < QUICK + 0.5


@pytest.mark.parametrize(("answer", "error"), [
    (raw(b""), "no data received"),
    (raw(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n"), "connection closed before the end of "
                                                         "the HTTP header"),
    (raw(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok"), "connection closed before the end of "
                                                        "the HTTP header"),
    (raw(b"ICY 200 OK\r\n\r\nok"), "bad HTTP status line 'ICY 200 OK'"),
    (raw(b"HTTP/1.1 200\r\n\r\nok"), "bad HTTP status line 'HTTP/1.1 200'"),
])
def test_malformed_replies(net: Net, answer: Reply, error: str) -> None:
    net.http({"/m": answer})
    result = net.probe(http_probe(target(), UrlCheck("/m")))
    assert (result.ok, result.error) == (False, error)


@pytest.mark.parametrize(("url", "ok", "error"), [
    (UrlCheck("/r", regex="probe test"), True, ""),
    (UrlCheck("/r", regex="PROBE TEST"), False, "regex 'PROBE TEST' did not match"),
    (UrlCheck("/r", regex="PROBE TEST", regex_options=("caseless",)), True, ""),
    (UrlCheck("/r", regex="probe test", regex_no_match=True), False,
     "regex 'probe test' matched (regex_no_match)"),
    (UrlCheck("/r", regex="error", regex_no_match=True), True, ""),
    # "keepalived-py" starts at body offset 12
    (UrlCheck("/r", regex="keepalived-py", regex_min_offset=12, regex_max_offset=12), True, ""),
    (UrlCheck("/r", regex="keepalived-py", regex_min_offset=13), False,
     "regex 'keepalived-py' did not match"),
    (UrlCheck("/r", regex="keepalived-py", regex_max_offset=11), False,
     "regex 'keepalived-py' did not match"),
    # the header is not part of the subject
    (UrlCheck("/r", regex="Content-Length"), False, "regex 'Content-Length' did not match"),
])
def test_regex(net: Net, url: UrlCheck, ok: bool, error: str) -> None:
    net.http({"/r": reply(body=BODY)})
    result = net.probe(http_probe(target(), url))
    assert (result.ok, result.error) == (ok, error)


def test_python_http_server_file_digest(net: Net, tmp_path: Path) -> None:
    """A third-party server: python's http.server serving a file."""
    page = os.urandom(50_000)
    (tmp_path / "page.bin").write_bytes(page)
    net.server_host.spawn([sys.executable, "-m", "http.server", "8081", "--bind", SERVER4,
                           "--directory", str(tmp_path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(net, 8081)
    result = net.probe(http_probe(target(port=8081), UrlCheck("/page.bin", digest=md5(page))))
    assert result.ok, result
    missing = net.probe(http_probe(target(port=8081), UrlCheck("/nope")))
    assert missing.error == "HTTP status 404"


def wait_listening(net: Net, port: int, ip: str = SERVER4) -> None:
    deadline = time.monotonic() + 10
    while not net.probe(tcp_probe(target(ip, port))).ok:
        assert time.monotonic() < deadline, f"nothing listens on {ip}:{port}"
        time.sleep(0.05)


# -- SSL_GET --------------------------------------------------------------------------

@dataclass(frozen=True)
class Certs:
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Self-signed certificates made by the openssl command."""
    if shutil.which("openssl") is None:
        tier_missing("root tier: the openssl command is needed for SSL_GET tests")
    where = tmp_path_factory.mktemp("certs")
    for name, cn in (("server", "server.probe.invalid"), ("client", "client.probe.invalid")):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={cn}", "-keyout", str(where / f"{name}.key"),
                        "-out", str(where / f"{name}.crt")], check=True, capture_output=True)
    return Certs(where / "server.crt", where / "server.key", where / "client.crt",
                 where / "client.key")


def server_tls(certs: Certs, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(client_ca)
    return context


@pytest.mark.parametrize("ip", [SERVER4, SERVER6])
def test_ssl_get_does_not_verify_and_sends_no_sni_by_default(net: Net, certs: Certs,
                                                             ip: str) -> None:
    server = net.http({"/": reply(body=BODY)}, tls=server_tls(certs))
    result = net.probe(http_probe(target(ip), UrlCheck("/", digest=md5(BODY)), tls=TlsOptions()))
    assert result.ok, result
    assert server.seen[0].sni is None


def test_ssl_get_sends_sni_when_asked(net: Net, certs: Certs) -> None:
    server = net.http({"/": reply(body=BODY)}, tls=server_tls(certs))
    result = net.probe(http_probe(target(), UrlCheck("/"), HttpRequest("www.example.test", "1.1"),
                                  TlsOptions(sni="sni.example.test")))
    assert result.ok, result
    assert server.seen[0].sni == "sni.example.test"
    assert server.seen[0].request == (b"GET / HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\n"
                                      b"Connection: close\r\nHost: www.example.test\r\n\r\n")


def test_ssl_get_keep_alive_and_regex(net: Net, certs: Certs) -> None:
    net.http({"/ka": reply(body=BODY, version="HTTP/1.1", keep_open=True)},
             tls=server_tls(certs))
    result, took = net.timed(http_probe(target(timeout=2), UrlCheck("/ka", regex="body>keep"),
                                        tls=TlsOptions()))
    assert result.ok, result
    assert took < 1


def test_ssl_get_offers_the_ssl_block_certificate(net: Net, certs: Certs) -> None:
    server = net.http({"/": reply(body=BODY)}, tls=server_tls(certs, client_ca=certs.client_cert))
    tls = TlsOptions(certfile=str(certs.client_cert), keyfile=str(certs.client_key))
    assert net.probe(http_probe(target(), UrlCheck("/"), tls=tls)).ok
    subject = dict(pair[0] for pair in server.seen[0].client_cert["subject"])
    assert subject["commonName"] == "client.probe.invalid"


def test_ssl_get_unreadable_client_certificate_is_inconclusive(net: Net, tmp_path: Path) -> None:
    tls = TlsOptions(certfile=str(tmp_path / "missing.crt"))
    result = net.probe(http_probe(target(), UrlCheck("/"), tls=tls))
    assert (result.ok, result.inconclusive) == (False, True)
    assert result.error.startswith("cannot set up TLS (SSL block): ")


def test_ssl_get_handshake_timeout(net: Net) -> None:
    net.serve(SilentServer())
    result, took = net.timed(http_probe(target(timeout=QUICK), UrlCheck("/"), tls=TlsOptions()))
    assert (result.ok, result.error) == (False, "TLS handshake timeout after 0.5 s")
    assert took < QUICK + 0.5


def test_ssl_get_against_plain_http(net: Net) -> None:
    net.http({"/": reply(body=BODY)})
    result = net.probe(http_probe(target(timeout=QUICK), UrlCheck("/"), tls=TlsOptions()))
    assert not result.ok
    assert result.error.startswith(("TLS handshake failed: ", "TLS handshake timeout")), result


# -- genhash ----------------------------------------------------------------------------

def genhash(net: Net, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "import sys; from keepalived_py.check.genhash import "
            "genhash_main; sys.exit(genhash_main(sys.argv[1:]))", *args]
    return net.director.run(argv, check=False, cwd=REPO)


def test_genhash_prints_the_body_digest(net: Net) -> None:
    net.http({"/index.html": reply(body=BODY)})
    done = genhash(net, "-s", SERVER4, "-p", str(PORT), "-u", "/index.html")
    assert (done.returncode, done.stdout, done.stderr) == (0, md5(BODY) + "\n", "")


def test_genhash_ssl_ipv6_vhost_sni(net: Net, certs: Certs) -> None:
    server = net.http({"/x": reply(body=BODY)}, tls=server_tls(certs))
    done = genhash(net, "-S", "-I", "-V", "www.example.test", "-P", "1.1",
                   "-s", SERVER6, "-p", str(PORT), "-u", "/x")
    assert (done.returncode, done.stdout) == (0, md5(BODY) + "\n")
    assert server.seen[0].sni == "www.example.test"
    assert b"Host: www.example.test\r\n" in server.seen[0].request


def test_genhash_digest_of_an_error_page_with_a_note(net: Net) -> None:
    net.http({})
    done = genhash(net, "-s", SERVER4, "-p", str(PORT), "-u", "/missing")
    assert done.returncode == 0
    assert done.stdout == md5(b"not here\n") + "\n"
    assert "404" in done.stderr


def test_genhash_failure_is_one_line(net: Net) -> None:
    done = genhash(net, "-s", SERVER4, "-p", "8099", "-u", "/", "-t", "1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "genhash: 198.18.0.12:8099/: connection refused\n"


@pytest.fixture
def keepalived_genhash() -> str:
    path = shutil.which("genhash") or "/usr/bin/genhash"
    if not os.access(path, os.X_OK):
        tier_missing("conformance tier: keepalived's genhash (apt-get install keepalived)")
    return path


@pytest.mark.parametrize("args", [
    ("-s", SERVER4),
    ("-s", SERVER4, "-P", "1.0c"),
    ("-s", SERVER6, "-P", "1.1"),
    ("-s", SERVER4, "-P", "1.1", "-V", "www.example.test"),
])
def test_same_request_and_digest_as_keepalived_genhash(net: Net, keepalived_genhash: str,
                                                       args: tuple[str, ...]) -> None:
    """keepalived 2.2.7's own genhash against the same server: the same request bytes,
    the same digest."""
    server = net.http({"/page": reply(body=BODY, content_length=20)})
    theirs = net.director.run([keepalived_genhash, *args, "-p", str(PORT), "-u", "/page"],
                              check=False)
    ours = genhash(net, *args, "-p", str(PORT), "-u", "/page")
    assert theirs.stdout.strip() == md5(BODY[:20]), theirs
    assert ours.stdout == theirs.stdout
    assert len(server.seen) == 2
    assert server.seen[0].request == server.seen[1].request


# -- MISC_CHECK -------------------------------------------------------------------------

def script(tmp_path: Path, body: str, name: str = "check.sh") -> ScriptCommand:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return ScriptCommand((str(path),), our_user())


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.mark.parametrize(("status", "dynamic", "expected"), [
    (0, False, ProbeResult(True, detail="exit status 0")),
    (0, True, ProbeResult(True, detail="exit status 0")),
    (1, False, ProbeResult(False, "exited with status 1")),
    (1, True, ProbeResult(False, "exited with status 1")),
    (3, False, ProbeResult(False, "exited with status 3")),
    (2, True, ProbeResult(True, weight=0, detail="exit status 2")),
    (7, True, ProbeResult(True, weight=5, detail="exit status 7")),
    (255, True, ProbeResult(True, weight=253, detail="exit status 255")),
])
def test_misc_exit_status(tmp_path: Path, root_only: None, status: int, dynamic: bool,
                          expected: ProbeResult) -> None:
    command = script(tmp_path, f"exit {status}")
    assert run(misc_probe(command, 5, dynamic)) == expected


def test_misc_killed_by_a_signal(tmp_path: Path, root_only: None) -> None:
    command = script(tmp_path, "kill -KILL $$")
    assert run(misc_probe(command, 5, True)) == ProbeResult(False, "killed by signal 9 (SIGKILL)")


def test_misc_arguments_and_shell_form(tmp_path: Path, root_only: None) -> None:
    command = script(tmp_path, 'exit $(( $1 + $2 ))')
    assert run(misc_probe(command.with_args("3", "4"), 5, True)).weight == 5


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_misc_timeout_kills_the_whole_group(tmp_path: Path, root_only: None) -> None:
    pids = tmp_path / "pids"
    command = script(tmp_path, f"sleep 60 & echo $$ $! > {pids}; wait")
    result, took = timed_run(misc_probe(command, QUICK))
    assert result == ProbeResult(False, "timeout after 0.5 s")
    assert took < QUICK + 1
    assert_gone(pids)


def test_misc_timeout_sigkill_when_sigterm_is_ignored(tmp_path: Path, root_only: None) -> None:
    pids = tmp_path / "pids"
    # an ignored signal stays ignored across exec: the sleep ignores SIGTERM too
    command = script(tmp_path, f"trap '' TERM; sleep 60 & echo $$ $! > {pids}; wait")
    result, took = timed_run(misc_probe(command, QUICK))
    assert result == ProbeResult(False, "timeout after 0.5 s")
    assert QUICK + 2 <= took < QUICK + 3
    assert_gone(pids)


def test_misc_timeout_fails_even_if_the_script_then_exits_0(tmp_path: Path,
                                                             root_only: None) -> None:
    """keepalived counts the exit status of a script that exits on its SIGTERM: 0 passes."""
    pids = tmp_path / "pids"
    command = script(tmp_path, f"trap 'exit 0' TERM; sleep 60 & echo $$ $! > {pids}; wait")
    result = run(misc_probe(command, QUICK))
    assert result == ProbeResult(False, "timeout after 0.5 s")
    assert_gone(pids)


def timed_run(coro: Coroutine[Any, Any, T]) -> tuple[T, float]:
    start = time.monotonic()
    result = asyncio.run(coro)
    return result, time.monotonic() - start


def assert_gone(pids: Path) -> None:
    numbers = [int(p) for p in pids.read_text().split()]
    assert len(numbers) == 2
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in numbers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in numbers if alive(pid)]


def test_misc_script_that_cannot_run(tmp_path: Path, root_only: None) -> None:
    command = ScriptCommand((str(tmp_path / "gone.sh"),), our_user())
    result = run(misc_probe(command, 5))
    assert result == ProbeResult(False, f"cannot run {tmp_path / 'gone.sh'}: "
                                        "no such file or directory")


def test_misc_runs_as_the_configured_user(root_only: None) -> None:
    try:
        nobody: ScriptUser = lookup_user("nobody")
    except ScriptError:
        pytest.skip("no user nobody")
    # pytest's own temporary directories are root's only
    with tempfile.TemporaryDirectory(dir="/tmp") as where:
        os.chmod(where, 0o755)
        command = script(Path(where), 'exit $(( 2 + $(id -u) % 250 ))')
        result = run(misc_probe(ScriptCommand(command.argv, nobody), 5, True))
    assert result.weight == nobody.uid % 250


def test_misc_runs_in_the_director_namespace(net: Net, tmp_path: Path) -> None:
    """A script started by the checker sees the checker's network (here: the lab)."""
    command = script(tmp_path, 'ip -j addr show dev eth0 > "$1"')
    out = tmp_path / "addr.json"
    assert net.probe(misc_probe(command.with_args(str(out)), 5)).ok
    addrs = {a["local"] for link in json.loads(out.read_text()) for a in link["addr_info"]}
    assert "198.18.0.11" in addrs


def test_misc_cancelled_probe_kills_the_group(tmp_path: Path, root_only: None) -> None:
    pids = tmp_path / "pids"
    command = script(tmp_path, f"sleep 60 & echo $$ $! > {pids}; wait")

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(misc_probe(command, 30))
        while not pids.exists() or not pids.read_text().strip():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)            # the clean-up task's SIGTERM

    run(cancel_soon())
    assert_gone(pids)


def test_misc_never_blocks_other_probes(net: Net, tmp_path: Path) -> None:
    """A MISC script and HTTP probes share one loop: the probes finish while it runs."""
    net.http({"/": reply(body=BODY)})
    command = script(tmp_path, "sleep 1")

    async def both() -> tuple[ProbeResult, list[ProbeResult], float]:
        misc = asyncio.ensure_future(misc_probe(command, 5))
        start = time.monotonic()
        https = await asyncio.gather(*(http_probe(target(), UrlCheck("/")) for _ in range(5)))
        took = time.monotonic() - start
        return await misc, https, took

    misc, https, took = net.probe(both())
    assert misc.ok and all(r.ok for r in https)
    assert took < 0.9

