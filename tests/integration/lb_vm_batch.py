"""Load balancing side by side with keepalived 2.2.7, run inside the test VM (tests/vm/)
by test_lb_vm.py, all in one boot.

``python -m tests.integration.lb_vm_batch OUTDIR TLSDIR`` builds two identical, independent
load-balancing setups, one per director: ``py`` runs keepalived-py, ``ka`` keepalived
2.2.7.  Each has a director namespace (its own IPVS table; the VIP on its client-side
interface, there is no VRRP), real servers 198.18.2.11-13 and a sorry server .20
(busybox httpd, their default route via the director for NAT), an HTTPS server on
.13:8443 (``HTTPS_SERVER``, for SSL_GET) and a client.  Both read the same
configuration text (only the directory of their files differs).

Then a script of events is applied to both setups in the same way (a server
stopped, a page gone, a digest broken, the HTTPS server stopped and its digested page
changed, MISC_CHECK exit codes, FILE_CHECK values, a quorum crossing, reloads,
shutdowns); after each one both are left to settle and what each shows is recorded:
its IPVS table as ``ipvsadm -Ln`` prints it (normalised: services and real servers
sorted, with forward method and weight; the connection counters dropped), the lines
written to its lvs_notify_fifo and the lines its notify scripts appended.  Two events
send SIGUSR1 to both checker processes and keep their keepalived_check.data.  Last
come the client-visible figures, on a fresh start of both: the time a failing server
takes to leave the table, a reload removing a server under client traffic, and our
checker process killed under client traffic.

The expected results are in ``EVENTS`` (what our side must show); the assertions
are in test_lb_vm.py, on the host.  Here nothing is asserted: a step that cannot go
on is recorded as an error.  Only the standard library is imported (Python in the VM
is slow), the daemons are separate processes.  Results: ``OUTDIR/lb.json``, and the
daemons' logs under ``OUTDIR/logs``, the data dumps under ``OUTDIR/dumps``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / ".venv" / "bin" / "keepalived-py"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
SIDES = ("py", "ka")
RUN = Path("/run/lb")
TLS_DIR: Path | None = None     # the HTTPS server's cert.pem and key.pem (main's 2nd argument)

VIP = "198.18.1.10"
DIRECTOR_SERVER_SIDE = "198.18.2.1"
SERVERS = {"11": "198.18.2.11", "12": "198.18.2.12", "13": "198.18.2.13", "20": "198.18.2.20"}
FOREIGN = "198.18.1.99:25"          # a service made with ipvsadm: neither daemon's

GOOD_BODY = b"<html>the page the digest was taken of</html>\n"
BAD_BODY = b"<html>a page someone changed</html>\n"
OTHER_BAD_BODY = b"<html>changed again</html>\n"
DIGEST = hashlib.md5(GOOD_BODY).hexdigest()

# The HTTPS real server (``HTTPS_SERVER``) on .13, serving files from a directory of its
# own.  Its certificate and key are made on the host (test_lb_vm.py) and passed as the
# batch's second argument: a directory holding cert.pem and key.pem.
HTTPS_OCTET = "13"
HTTPS_PORT = 8443
SNI_NAME = "www.lb.test"
SSL_BODY = b"<html>served over TLS</html>\n"
SSL_OTHER_BODY = b"<html>served over TLS, changed</html>\n"
SSL_DIGEST = hashlib.md5(SSL_BODY).hexdigest()
# the real-server port of each virtual server (the others' servers listen on 8080)
RS_PORTS = {85: HTTPS_PORT}

DUMP_TIMEOUT = 20.0         # seconds for a checker process to write its data dump
QUIET = 1.5                 # seconds without any change before an event counts as settled
POLL = 0.1                  # seconds between two ipvsadm polls while events settle
FAST_POLL = 0.05            # ... while a figure is measured
EVENT_TIMEOUT = 20.0
START_TIMEOUT = 90.0        # our agent imports for many seconds in the VM
# the VM stalls for seconds when the host is busy: keepalived 2.2.7 then counts a
# script that was not scheduled as timed out (seen with 3 s); the timeout event waits it
MISC_TIMEOUT = 8.0
DRAIN_TIME = 3.0            # lvs_drain_time (keepalived-py only; keepalived warns, ignores it)

# The checker timing of the failure figure (phase 2's TCP_CHECKs); delay_loop is not
# delay_before_retry, so that the cadence of a down server tells the two apart
CONNECT_TIMEOUT = 1.0
RETRY = 1
DELAY_BEFORE_RETRY = 1.0
DELAY_LOOP = 2.0

Table = dict[str, dict[str, str]]
"""A normalised IPVS table: ``{"TCP 198.18.1.10:80 wrr": {"198.18.2.11:8080": "Masq 3"}}``."""


# -- configuration ----------------------------------------------------------------------

def svc(port: int, scheduler: str, extra: str = "") -> str:
    """A service's line in a normalised table."""
    return f"TCP {VIP}:{port} {scheduler}{' ' + extra if extra else ''}"


def rs(octet: str, port: int = 8080) -> str:
    return f"198.18.2.{octet}:{port}"


def notify(d: Path, who: str) -> str:
    return (f'        notify_up "{d}/notify.sh {who} up"\n'
            f'        notify_down "{d}/notify.sh {who} down"\n')


def http_get(path: str, check: str, connect_timeout: float = 1) -> str:
    return f"""        HTTP_GET {{
            url {{
                path {path}
                {check}
            }}
            connect_timeout {connect_timeout:g}
            retry 1
            delay_before_retry 1
        }}
"""


TCP_CHECK = """        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
"""


def ssl_get(path: str, check: str, extra: str = "") -> str:
    """An SSL_GET of one url.  connect_timeout 5 s (keepalived's default), which covers
    the connect and the TLS handshake: in the loaded VM the server saw our handshakes
    take 0.3 s on average and up to 1.8 s (keepalived's 0.15 s): our event loop,
    Python on an emulated CPU, answers each handshake message late.  The events fail
    the server at once (refused, a wrong digest): the timeout does not slow them."""
    return f"""        SSL_GET {{
            url {{
                path {path}
                {check}
            }}
            connect_timeout 5
            retry 1
            delay_before_retry 1
{extra}        }}
"""


@dataclass(frozen=True)
class Phase1:
    """What the first configuration is made of; the reload events change one thing."""

    a_scheduler: str = "wrr"
    a_weight_11: int = 3
    a_connect_timeout_11: float = 1
    a_has_12: bool = True
    b_has_12: bool = False
    has_d: bool = False
    has_e: bool = True

    def text(self, d: Path) -> str:
        a12 = f"""    real_server {SERVERS['12']} 8080 {{
        weight 2
        alpha
{notify(d, 'A12')}{TCP_CHECK}    }}
""" if self.a_has_12 else ""
        b12 = f"""    real_server {SERVERS['12']} 8080 {{
        weight 2
{notify(d, 'B12')}{TCP_CHECK}    }}
""" if self.b_has_12 else ""
        vs_d = f"""
virtual_server {VIP} 83 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {SERVERS['11']} 8080 {{
        weight 1
{notify(d, 'D11')}{TCP_CHECK}    }}
}}
""" if self.has_d else ""
        vs_e = f"""
virtual_server {VIP} 84 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {SERVERS['11']} 8080 {{
        weight 2
{notify(d, 'E11')}        MISC_CHECK {{
            misc_path "{d}/misc.sh E"
            misc_dynamic
            misc_timeout {MISC_TIMEOUT:g}
        }}
    }}
}}
""" if self.has_e else ""
        # :85, over TLS: one server, two SSL_GETs (a real server is up only while
        # both pass): a digested page fetched with SNI, and a page with a status range
        ssl_checks = (ssl_get("/ssl.html", f"digest {SSL_DIGEST}\n                status_code 200",
                              f"            enable_sni\n            virtualhost {SNI_NAME}\n")
                      + ssl_get("/status.html", "status_code 200-299"))
        vs_f = f"""
virtual_server {VIP} 85 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {SERVERS[HTTPS_OCTET]} {HTTPS_PORT} {{
        weight 2
{notify(d, 'G13')}{ssl_checks}    }}
}}
"""
        return f"""global_defs {{
    router_id lb
    script_user root
    lvs_notify_fifo {d}/lvs.fifo
    enable_script_security
    lvs_drain_time {DRAIN_TIME:g}
}}

track_file tfile {{
    file {d}/track
}}

virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo {self.a_scheduler}
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {SERVERS['11']} 8080 {{
        weight {self.a_weight_11}
{notify(d, 'A11')}{http_get('/status.html', 'status_code 200', self.a_connect_timeout_11)}    }}
{a12}    real_server {SERVERS['13']} 8080 {{
        weight 1
        alpha
        inhibit_on_failure
{notify(d, 'A13')}{http_get('/digest.html', f'digest {DIGEST}')}    }}
}}

virtual_server {VIP} 81 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    quorum 3
    sorry_server {SERVERS['20']} 8080
    sorry_server_inhibit
    quorum_up "{d}/notify.sh B quorum_up"
    quorum_down "{d}/notify.sh B quorum_down"
    real_server {SERVERS['11']} 8080 {{
        weight 2
{notify(d, 'B11')}        MISC_CHECK {{
            misc_path "{d}/misc.sh B"
            misc_timeout {MISC_TIMEOUT:g}
        }}
    }}
{b12}    real_server {SERVERS['13']} 8080 {{
        weight 2
{notify(d, 'B13')}{TCP_CHECK}    }}
}}

virtual_server {VIP} 82 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {SERVERS['11']} 8080 {{
        weight 10
{notify(d, 'C11')}        FILE_CHECK {{
            track_file tfile
            weight 2
        }}
    }}
    real_server {SERVERS['12']} 8080 {{
        weight 10
{notify(d, 'C12')}        FILE_CHECK {{
            track_file tfile
            weight 1 reverse
        }}
    }}
    real_server {SERVERS['13']} 8080 {{
        weight 10
{notify(d, 'C13')}        FILE_CHECK {{
            track_file tfile
            weight 0
        }}
    }}
}}
{vs_d}{vs_e}{vs_f}"""


def phase2_text(d: Path, with_11: bool = True) -> str:
    """The figures' configuration: three TCP-checked servers of weight 1, and
    lvs_flush_on_stop (its shutdown is the second shutdown case)."""
    reals = "".join(f"""    real_server {SERVERS[o]} 8080 {{
        weight 1
{notify(d, 'F' + o)}        TCP_CHECK {{
            connect_timeout {CONNECT_TIMEOUT:g}
            retry {RETRY}
            delay_before_retry {DELAY_BEFORE_RETRY:g}
        }}
    }}
""" for o in ("11", "12", "13") if with_11 or o != "11")
    return f"""global_defs {{
    router_id lb
    script_user root
    lvs_notify_fifo {d}/lvs.fifo
    enable_script_security
    lvs_drain_time {DRAIN_TIME:g}
    lvs_flush_on_stop
}}

virtual_server {VIP} 80 {{
    delay_loop {DELAY_LOOP:g}
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
{reals}}}
"""


# -- processes and namespaces ----------------------------------------------------------

def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout + done.stderr


class Shell:
    """A shell kept running in a namespace: a command costs one fork, not the
    ``ip netns exec`` of a new process (slow in the VM)."""

    MARK = "__lb_done__"

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "sh"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)

    def run(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\necho {self.MARK}\n")
        self.proc.stdin.flush()
        out = []
        for line in self.proc.stdout:
            if line.rstrip("\n") == self.MARK:
                return "".join(out)
            out.append(line)
        raise RuntimeError(f"the shell ended: {''.join(out)}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def normalise(text: str) -> Table:
    """``ipvsadm -Ln`` as a table: services and their real servers with forward method
    and weight; the connection counters and the headers dropped."""
    table: Table = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("IP", "Prot"):
            continue
        if words[0] == "->":
            if words[1] == "RemoteAddress:Port":
                continue
            if current is not None:
                current[words[1]] = f"{words[2]} {words[3]}"
        elif words[0] in ("TCP", "UDP", "SCTP", "FWM"):
            current = table.setdefault(" ".join(words), {})
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def _endpoint(text: str) -> str:
    """``C612020B:1F90`` (/proc/net/ip_vs) as ipvsadm -n prints it: ``198.18.2.11:8080``."""
    address, port = text.split(":")
    return f"{ipaddress.IPv4Address(int(address, 16))}:{int(port, 16)}"


def proc_table(text: str) -> Table:
    """/proc/net/ip_vs (the kernel's own listing: hexadecimal IPv4 endpoints) as a
    table like ``normalise`` makes of ``ipvsadm -Ln``."""
    table: Table = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] in ("IP", "Prot") or words[1] == "RemoteAddress:Port":
            continue
        if words[0] == "->":
            if current is not None:
                current[_endpoint(words[1])] = f"{words[2]} {words[3]}"
        else:
            endpoint = _endpoint(words[1]) if ":" in words[1] else str(int(words[1], 16))
            current = table.setdefault(" ".join([words[0], endpoint, *words[2:]]), {})
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


class Poller(threading.Thread):
    """A director's IPVS table read over and over: its history of changes, each with
    the time of the read that first saw it.  It reads /proc/PID/net/ip_vs of a shell
    living in the director's namespace: no process to start per read (a fork of
    ipvsadm ten times a second costs the slow VM most of a CPU)."""

    def __init__(self, ns: str) -> None:
        super().__init__(daemon=True, name=f"poller-{ns}")
        self.shell = Shell(ns)
        self.proc_file = Path(f"/proc/{self.shell.proc.pid}/net/ip_vs")
        self.interval = POLL
        self.lock = threading.Lock()
        self.history: list[tuple[float, Table]] = []
        self.polls: list[float] = []
        self.stopped = threading.Event()
        self.table: Table = {}
        self.last_change = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            text = self.proc_file.read_text()
            now = time.monotonic()
            table = proc_table(text)
            with self.lock:
                self.polls.append(now)
                if not self.history or table != self.table:
                    self.history.append((now, table))
                    self.table = table
                    self.last_change = now
            self.stopped.wait(self.interval)

    def snapshot(self) -> tuple[Table, float, int]:
        with self.lock:
            return self.table, self.last_change, len(self.polls)

    def since(self, start: float) -> list[tuple[float, Table]]:
        """The table as it was at ``start`` and every change after it."""
        with self.lock:
            before = [h for h in self.history if h[0] <= start]
            after = [h for h in self.history if h[0] > start]
        return before[-1:] + after

    def polls_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t in self.polls if start <= t <= end)

    def wait_poll(self) -> None:
        """Until a poll has started and ended after now."""
        start = time.monotonic()
        while True:
            with self.lock:
                if self.polls and self.polls[-1] > start:
                    return
            time.sleep(0.02)


class StallWatch(threading.Thread):
    """How long the VM stops now and then (qemu's vCPUs not scheduled by a busy host):
    a thread that sleeps 0.1 s and notes by how much more it slept."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="stall-watch")
        self.stalls: list[tuple[float, float]] = []      # (when, how long), over 50 ms
        self.worst = 0.0

    def run(self) -> None:
        while True:
            before = time.monotonic()
            time.sleep(0.1)
            late = time.monotonic() - before - 0.1
            self.worst = max(self.worst, late)
            if late > 0.05:
                self.stalls.append((before, late))

    def within(self, start: float, end: float) -> float:
        """How long the VM stood still (beyond 50 ms at a time) between two times."""
        return round(sum(late for at, late in list(self.stalls) if start <= at <= end), 3)


class Lines:
    """Lines appended to something (a FIFO held open, a file), read as they come."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self.buffer = b""
        self.lines: list[str] = []
        self.last_change = 0.0

    def poll(self) -> None:
        chunk = self._read()
        if not chunk:
            return
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        if complete:
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self.last_change = time.monotonic()


def fifo_reader(path: Path) -> Callable[[], bytes]:
    os.mkfifo(path)
    # held open for reading and writing: a writer never finds it without a reader
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def read() -> bytes:
        out = b""
        try:
            while chunk := os.read(fd, 65536):
                out += chunk
        except BlockingIOError:
            pass
        return out
    return read


def file_reader(path: Path) -> Callable[[], bytes]:
    offset = 0

    def read() -> bytes:
        nonlocal offset
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        offset += len(data)
        return data
    return read


# The HTTPS real server: a thread per connection, so that connections are served side by
# side as a real server serves them, and only the ssl and threading modules to import (it
# is started again by an event, and asyncio alone takes seconds to import in the VM).
# ``openssl s_server -WWW`` was tried first: it serves one connection at a time and
# lingers up to 0.5 s after each, so in the loaded VM a slow client (ours) made the next
# one time out, each timed-out probe left a dead connection it still handshook, and it
# fell behind for 10-20 s.  One line per request: the SNI name and the path.
HTTPS_SERVER = r"""
import socket, ssl, sys, threading, time
cert, key, www, log, address, port = sys.argv[1:7]
out = open(log, "a", buffering=1)
names = {}

def on_sni(sslobj, name, context):
    names[id(sslobj)] = name

def serve(conn):
    try:
        conn.settimeout(10)
        tls = context.wrap_socket(conn, server_side=True)
        sni = names.pop(id(tls), None)
        head = b""
        while b"\r\n\r\n" not in head:
            data = tls.recv(4096)
            if not data:
                return
            head += data
        path = head.split(b" ", 2)[1].decode()
        out.write(f"{time.monotonic():.3f} {sni or '-'} {path}\n")
        try:
            with open(www + path, "rb") as f:
                body, status = f.read(), "200 OK"
        except OSError:
            body, status = b"not found\n", "404 Not Found"
        tls.sendall(f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body)
        tls.close()
    except (OSError, ValueError, IndexError):
        pass
    finally:
        conn.close()

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.sni_callback = on_sni
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, int(port)))
listener.listen(64)
out.write(f"{time.monotonic():.3f} ready\n")
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

_STAMP = re.compile(r"^\w{3} \w{3} +\d+ [\d:.]+ \d{4}: ")

SNIFFER = r"""
import socket, struct, sys, time
# ETH_P_ALL: a socket bound to one protocol sees only what comes in
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
print("ready", flush=True)
while True:
    frame = s.recv(256)
    now = time.monotonic()
    ip = frame[14:]
    if frame[12:14] != b"\x08\x00" or ip[9] != 6:
        continue
    tcp = ip[(ip[0] & 15) * 4:]
    sport, dport = struct.unpack("!HH", tcp[:4])
    flags = tcp[13]
    if 8080 in (sport, dport) and flags & 0x06:     # SYN or RST
        print(f"{now:.4f} {socket.inet_ntoa(ip[12:16])} {socket.inet_ntoa(ip[16:20])} "
              f"{sport} {dport} {flags}", flush=True)
"""


@dataclass
class Side:
    """One load-balancing setup: its namespaces, its files, its daemon."""

    name: str
    dir: Path = field(init=False)
    director: str = field(init=False)
    httpd: dict[str, subprocess.Popen] = field(default_factory=dict)
    daemon: subprocess.Popen | None = None
    log_file: Path | None = None
    log: TextIO | None = None
    poller: Poller | None = None
    fifo: Lines | None = None
    notify: Lines | None = None
    shells: dict[str, Shell] = field(default_factory=dict)
    https_starts: int = 0

    def __post_init__(self) -> None:
        self.dir = RUN / self.name
        self.director = f"{self.name}-dir"

    def ns(self, octet: str) -> str:
        return f"{self.name}-rs{octet}"

    @property
    def client(self) -> str:
        return f"{self.name}-client"

    def www(self, octet: str) -> Path:
        return self.dir / f"www{octet}"

    @property
    def www_tls(self) -> Path:
        """What the HTTPS server serves (its working directory)."""
        return self.dir / "www-tls"

    def shell(self, ns: str) -> Shell:
        if ns not in self.shells:
            self.shells[ns] = Shell(ns)
        return self.shells[ns]

    # -- the network ----------------------------------------------------------------
    def build(self) -> None:
        self.dir.mkdir(parents=True)
        names = [self.director, self.client, *(self.ns(o) for o in SERVERS)]
        for name in names:
            run("ip", "netns", "add", name)
        lines = ["link set lo up", "link add brs type bridge", "link set brs up",
                 f"addr add {DIRECTOR_SERVER_SIDE}/24 dev brs",
                 "link add c0 type veth peer name eth0 netns " + self.client,
                 "link set c0 up", "addr add 198.18.1.1/24 dev c0",
                 # the VIP: added by the test, there is no VRRP here
                 f"addr add {VIP}/32 dev c0"]
        for octet in SERVERS:
            lines += [f"link add s{octet} type veth peer name eth0 netns {self.ns(octet)}",
                      f"link set s{octet} master brs", f"link set s{octet} up"]
        run("ip", "-n", self.director, "-batch", "-", input="\n".join(lines) + "\n")
        run("ip", "netns", "exec", self.director, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns, address, gateway in ([(self.client, "198.18.1.2", "198.18.1.1")]
                                     + [(self.ns(o), ip, DIRECTOR_SERVER_SIDE)
                                        for o, ip in SERVERS.items()]):
            run("ip", "-n", ns, "-batch", "-", input=(
                f"link set lo up\nlink set eth0 up\naddr add {address}/24 dev eth0\n"
                f"route add default via {gateway}\n"))
        for octet in SERVERS:
            www = self.www(octet)
            www.mkdir()
            (www / "index.html").write_text(f"rs{octet} ")
            (www / "status.html").write_text("ok\n")
            (www / "digest.html").write_bytes(BAD_BODY)
            self.start_httpd(octet)
        self.www_tls.mkdir()
        (self.www_tls / "ssl.html").write_bytes(SSL_BODY)
        (self.www_tls / "status.html").write_text("ok\n")
        self.start_https()
        (self.dir / "notify.sh").write_text(
            f"#!/bin/sh\necho \"$*\" >> {self.dir}/notify.log\n")
        # exits with the number in misc_<VS>, or hangs when it says "sleep"; only
        # shell builtins (a fork is dear in the VM), its runs traced with their times
        (self.dir / "misc.sh").write_text(
            "#!/bin/sh\n"
            "read up _ < /proc/uptime\n"
            f"read status < {self.dir}/misc_$1\n"
            f"echo \"$1 $$ $up start $status\" >> {self.dir}/misc.trace\n"
            "[ \"$status\" = sleep ] && exec sleep 60\n"
            "read up _ < /proc/uptime\n"
            f"echo \"$1 $$ $up end\" >> {self.dir}/misc.trace\n"
            "exit $status\n")
        for script in ("notify.sh", "misc.sh"):
            (self.dir / script).chmod(0o755)
        for vs in ("B", "E"):
            (self.dir / f"misc_{vs}").write_text("0\n")
        (self.dir / "track").write_text("0\n")
        self.fifo = Lines(fifo_reader(self.dir / "lvs.fifo"))
        self.notify = Lines(file_reader(self.dir / "notify.log"))
        self.poller = Poller(self.director)
        self.poller.start()

    def start_httpd(self, octet: str) -> None:
        self.httpd[octet] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(octet), "busybox", "httpd", "-f", "-p", "8080",
             "-h", str(self.www(octet))])

    def stop_httpd(self, octet: str) -> None:
        proc = self.httpd.pop(octet)
        proc.kill()
        proc.wait()

    def start_https(self) -> None:
        """The HTTPS server (``HTTPS_SERVER``): each request a file of ``www_tls`` read
        anew (a changed body is served at once), with its Content-Length, the
        connection closed after it; the SNI name and path logged to https.log."""
        assert TLS_DIR is not None
        self.https_starts += 1
        # -S: no site-packages to scan, it starts sooner in the slow VM
        with (self.dir / "https.out").open("a") as output:
            self.httpd["https"] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(HTTPS_OCTET), sys.executable, "-S", "-c",
                 HTTPS_SERVER, str(TLS_DIR / "cert.pem"), str(TLS_DIR / "key.pem"),
                 str(self.www_tls), str(self.dir / "https.log"), SERVERS[HTTPS_OCTET],
                 str(HTTPS_PORT)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)

    def wait_https(self, timeout: float = 30.0) -> None:
        """Until the HTTPS server started last says it listens."""
        end = time.monotonic() + timeout
        while self.https_lines().count("ready") < self.https_starts:
            if time.monotonic() > end:
                raise RuntimeError("the HTTPS server did not start")
            time.sleep(0.1)

    def https_lines(self) -> list[str]:
        """What the HTTPS server logged: ``ready``, and ``SNI PATH`` per request."""
        path = self.dir / "https.log"
        if not path.exists():
            return []
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines() if " " in line]

    def stop_https(self) -> None:
        self.stop_httpd("https")

    # -- the daemon -------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.dir / "keepalived.conf"

    def start(self, text: str, phase: int) -> None:
        self.conf.write_text(text)
        d = self.dir
        if self.name == "py":
            argv = [str(AGENT), "-n", "-l", "-D", "-C", "-f", str(self.conf),
                    "-p", str(d / "agent.pid"), "-r", str(d / "vrrp.pid"),
                    "-c", str(d / "checkers.pid"), "--control-socket", str(d / "control.sock"),
                    "--maintenance-file", str(d / "maintenance.json")]
        else:
            argv = [KEEPALIVED, "-n", "-l", "-D", "-C", "-f", str(self.conf),
                    "-p", str(d / "ka.pid"), "-c", str(d / "chk.pid"), "-r", str(d / "vrrp.pid"),
                    "-b", str(d / "bfd.pid")]
        self.log_file = d / f"daemon-{phase}.log"
        self.log = self.log_file.open("w")
        # keepalived writes its dumps to $TMPDIR: each daemon gets its own
        self.daemon = subprocess.Popen(["ip", "netns", "exec", self.director, *argv],
                                       stdout=self.log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "TMPDIR": str(d)})

    def log_lines(self) -> list[str]:
        """The daemon's log so far, without the time stamps."""
        if self.log_file is None:
            return []
        return [_STAMP.sub("", line) for line in
                self.log_file.read_text(errors="replace").splitlines()]

    def log_count(self, text: str) -> int:
        if self.log_file is None:
            return 0
        return sum(text in line for line in self.log_file.read_text(errors="replace")
                   .splitlines())

    def reloads(self) -> int:
        """How many reloads its checker has done: ours logs when one is finished,
        keepalived 2.2.7's checker only when one begins (the rest is synchronous)."""
        if self.name == "py":
            return self.log_count("Reload finished")
        return self.log_count(": Reloading")

    def reload(self, text: str) -> None:
        assert self.daemon is not None
        self.conf.write_text(text)
        self.daemon.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        try:
            code = self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
            code = None
        self.daemon = None
        return code

    @property
    def data_dump_file(self) -> Path:
        """Where its checker process writes keepalived_check.data ($TMPDIR is our
        directory): ours puts the name of the namespace it runs in into the file's name
        (an agent known by a namespace, agent/check/dumps.py), keepalived only with
        ``data_use_instance`` and a configured namespace or instance name."""
        if self.name == "py":
            return self.dir / f"keepalived_check.{self.director}.data"
        return self.dir / "keepalived_check.data"

    def checker_pid(self) -> int | None:
        path = self.dir / ("checkers.pid" if self.name == "py" else "chk.pid")
        try:
            return int(path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
            self.daemon.wait()
        for proc in self.httpd.values():
            proc.kill()
        for shell in self.shells.values():
            shell.close()
        if self.poller is not None:
            self.poller.stopped.set()


# -- events ------------------------------------------------------------------------------

@dataclass
class Event:
    """One step of the script: what is done to both setups, and the table our side
    must show once it has settled (the assertions are test_lb_vm.py's)."""

    name: str
    doc: str
    act: Callable[[Lab], None]
    expect: Table
    # keepalived 2.2.7's table where it differs (a difference in docs/lb-differences.md)
    keepalived_table: Table | None = None
    reload: bool = False
    timeout: float = EVENT_TIMEOUT


@dataclass(frozen=True)
class Marks:
    fifo: int
    notify: int
    log_file: Path | None
    log: int


class Lab:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.sides = {name: Side(name) for name in SIDES}
        self.records: list[dict[str, Any]] = []
        self.phase1 = Phase1()
        self.errors: list[str] = []

    def each(self, action: Callable[[Side], object]) -> None:
        for side in self.sides.values():
            action(side)

    def drain_lines(self) -> None:
        for side in self.sides.values():
            assert side.fifo is not None and side.notify is not None
            side.fifo.poll()
            side.notify.poll()

    def marks(self) -> dict[str, Marks]:
        """Where each side's lines stand before an event."""
        self.drain_lines()
        return {s.name: Marks(len(s.fifo.lines), len(s.notify.lines),  # type: ignore[union-attr]
                              s.log_file, len(s.log_lines()))
                for s in self.sides.values()}

    def settle(self, event: Event, started: float, marks: dict[str, Marks],
               reloads: dict[str, int] | None) -> dict[str, Any]:
        """Wait until both sides show their expected table (ours: ``event.expect``,
        keepalived's: the same unless a difference is listed), have reloaded when
        it is a reload, and nothing changed for QUIET seconds; or the timeout."""
        wanted = {"py": event.expect,
                  "ka": event.expect if event.keepalived_table is None
                  else event.keepalived_table}
        timed_out = False
        while True:
            now = time.monotonic()
            self.drain_lines()
            last = started
            reached = True
            for side in self.sides.values():
                assert side.poller is not None
                table, changed, _ = side.poller.snapshot()
                last = max(last, changed, side.fifo.last_change,  # type: ignore[union-attr]
                           side.notify.last_change)  # type: ignore[union-attr]
                reached &= table == wanted[side.name]
                if reloads is not None:
                    reached &= side.reloads() > reloads[side.name]
            if reached and now - last >= QUIET:
                break
            if now - started > event.timeout:
                timed_out = True
                break
            time.sleep(0.1)
        record: dict[str, Any] = {"event": event.name, "doc": event.doc,
                                  "wall_start": round(time.time() - (time.monotonic()
                                                                     - started), 3),
                                  "seconds": round(time.monotonic() - started, 2),
                                  "timed_out": timed_out, "sides": {}}
        for side in self.sides.values():
            assert side.poller is not None
            mark = marks[side.name]
            # a daemon started by the event logs to a new file
            log_mark = mark.log if mark.log_file == side.log_file else 0
            listed = normalise(side.shell(side.director).run("ipvsadm -Ln"))
            polled = side.poller.snapshot()[0]
            record["sides"][side.name] = {
                "table": listed,
                "polled_table": polled if polled != listed else None,
                "history": [t for _, t in side.poller.since(started)],
                "fifo": side.fifo.lines[mark.fifo:],  # type: ignore[union-attr]
                "notify": side.notify.lines[mark.notify:],  # type: ignore[union-attr]
                "log": side.log_lines()[log_mark:],
            }
        return record

    def apply(self, event: Event) -> None:
        marks = self.marks()
        reloads = {s.name: s.reloads() for s in self.sides.values()} if event.reload else None
        started = time.monotonic()
        try:
            event.act(self)
        except Exception:
            self.errors.append(f"{event.name}: {traceback.format_exc()}")
        record = self.settle(event, started, marks, reloads)
        self.records.append(record)
        self.save()
        print(f"{event.name}: {record['seconds']} s"
              f"{' TIMED OUT' if record['timed_out'] else ''}", flush=True)

    def save(self, figures: dict[str, Any] | None = None) -> None:
        data = {"events": self.records, "errors": self.errors}
        previous = self.out / "lb.json"
        if figures is None and previous.is_file():
            figures = json.loads(previous.read_text()).get("figures")
        data["figures"] = figures or {}
        data["loadavg_vm"] = Path("/proc/loadavg").read_text().split()[:3]
        # the HTTPS server's requests, by SNI name and path
        data["https"] = {s.name: dict(Counter(s.https_lines())) for s in self.sides.values()}
        data["stalls"] = {"worst": round(STALLS.worst, 2), "over_half_a_second":
                          [(round(at, 2), round(late, 2)) for at, late in STALLS.stalls
                           if late > 0.5][-50:]}
        (self.out / "lb.json.tmp").write_text(json.dumps(data, indent=1))
        (self.out / "lb.json.tmp").rename(self.out / "lb.json")

    # -- what the events do --------------------------------------------------------
    def reload_both(self, phase1: Phase1) -> None:
        self.phase1 = phase1
        self.each(lambda s: s.reload(phase1.text(s.dir)))


def _start_phase1(lab: Lab) -> None:
    lab.each(lambda s: s.start(lab.phase1.text(s.dir), 1))


def _write(path_of: Callable[[Side], Path], data: bytes) -> Callable[[Lab], None]:
    def act(lab: Lab) -> None:
        for side in lab.sides.values():
            path_of(side).write_bytes(data)
    return act


def _reload(**changes: Any) -> Callable[[Lab], None]:
    """Reload both with the running configuration changed (changes accumulate)."""
    def act(lab: Lab) -> None:
        lab.reload_both(replace(lab.phase1, **changes))
    return act


def _add_foreign_and_stop(lab: Lab) -> None:
    for side in lab.sides.values():
        side.shell(side.director).run(f"ipvsadm -A -t {FOREIGN} -s rr && "
                                      f"ipvsadm -a -t {FOREIGN} -r 198.18.2.99:25 -m -w 9")
        assert side.poller is not None
        side.poller.wait_poll()
    _stop(lab)


def _stop(lab: Lab) -> None:
    codes = {side.name: side.stop() for side in lab.sides.values()}
    if any(code != 0 for code in codes.values()):
        lab.errors.append(f"exit codes on stop: {codes}")


Servers = dict[str, int]
"""The real servers of a virtual server (all NAT, port 8080 or ``RS_PORTS``'s): last octet
-> weight."""


def table_of(services: dict[int, tuple[str, Servers]]) -> Table:
    """A normalised table from ``{port: (scheduler, {octet: weight})}``."""
    return {svc(port, scheduler): {rs(octet, RS_PORTS.get(port, 8080)): f"Masq {weight}"
                                   for octet, weight in sorted(servers.items())}
            for port, (scheduler, servers) in sorted(services.items())}


FOREIGN_TABLE: Table = {f"TCP {FOREIGN} rr": {"198.18.2.99:25": "Masq 9"}}
START: dict[int, tuple[str, Servers]] = {
    # :80 HTTP_GET .11 (non-alpha), TCP_CHECK .12 (alpha), HTTP_GET digest .13 (alpha,
    # inhibit_on_failure, the page starts wrong)
    80: ("wrr", {"11": 3, "12": 2, "13": 0}),
    # :81 quorum 3, MISC_CHECK .11 and TCP_CHECK .13 of weight 2, sorry server .20
    # with sorry_server_inhibit
    81: ("rr", {"11": 2, "13": 2, "20": 0}),
    # :82 FILE_CHECKs on one track file: weight 2, weight 1 reverse, weight 0
    82: ("rr", {"11": 10, "12": 10, "13": 10}),
    # :84 MISC_CHECK misc_dynamic, weight 2
    84: ("rr", {"11": 2}),
    # :85 two SSL_GETs on .13:8443 (non-alpha), weight 2
    85: ("rr", {"13": 2}),
}


class Script:
    """The events in order; each one's expected table is the one before it changed
    as the event says (``changes``: port -> the new servers, None when the virtual
    server goes; ``scheduler``: port -> its new lb_algo)."""

    def __init__(self) -> None:
        self.state = dict(START)
        self.events: list[Event] = []

    def add(self, name: str, doc: str, act: Callable[[Lab], None], *,
            changes: dict[int, Servers | None] | None = None,
            scheduler: dict[int, str] | None = None,
            keepalived: dict[int, Servers] | None = None, **options: Any) -> None:
        for port, servers in (changes or {}).items():
            if servers is None:
                self.state.pop(port)
            else:
                self.state[port] = (self.state.get(port, ("rr", {}))[0], servers)
        for port, name_ in (scheduler or {}).items():
            self.state[port] = (name_, self.state[port][1])
        theirs = None
        if keepalived is not None:
            theirs = table_of({**self.state, **{port: (self.state[port][0], servers)
                                                for port, servers in keepalived.items()}})
        self.events.append(Event(name, doc, act, table_of(self.state),
                                 keepalived_table=theirs, **options))


def _misc(vs: str, status: str) -> Callable[[Lab], None]:
    return _write(lambda s: s.dir / f"misc_{vs}", f"{status}\n".encode())


def _https(up: bool) -> Callable[[Lab], None]:
    return lambda lab: lab.each(lambda s: s.start_https() if up else s.stop_https())


def _stopped(octet: str) -> Callable[[Lab], None]:
    return lambda lab: lab.each(lambda s: s.stop_httpd(octet))


def _started(octet: str) -> Callable[[Lab], None]:
    return lambda lab: lab.each(lambda s: s.start_httpd(octet))


def _page_gone(lab: Lab) -> None:
    lab.each(lambda s: (s.www("11") / "status.html").unlink())


def _dump(label: str) -> Callable[[Lab], None]:
    """SIGUSR1 to both checker processes; their keepalived_check.data kept as
    ``OUTDIR/dumps/LABEL-SIDE.data``."""
    def act(lab: Lab) -> None:
        target = lab.out / "dumps"
        target.mkdir(exist_ok=True)
        files = {side.name: side.data_dump_file for side in lab.sides.values()}
        for side in lab.sides.values():
            files[side.name].unlink(missing_ok=True)
            pid = side.checker_pid()
            if pid is None:
                raise RuntimeError(f"{side.name}: no checker pid")
            os.kill(pid, signal.SIGUSR1)
        for name, path in files.items():
            wait_written(path, DUMP_TIMEOUT)
            shutil.copy(path, target / f"{label}-{name}.data")
    return act


def wait_written(path: Path, timeout: float) -> None:
    """Until ``path`` exists and its size stayed the same for a while: keepalived writes
    its dump in place (fopen, fprintf, fclose), not by a rename."""
    end = time.monotonic() + timeout
    size = -1
    while time.monotonic() < end:
        now = path.stat().st_size if path.exists() else -1
        if now > 0 and now == size:
            return
        size = now
        time.sleep(0.3)
    raise RuntimeError(f"{path} was not written within {timeout:.0f} s")


script = Script()
script.add("start", "both daemons start: the non-alpha .11 is in before its first check, "
           "the alpha .12 after its first success, the alpha inhibit_on_failure .13 (its "
           "page wrong) pre-added at weight 0; the sorry server pre-added at weight 0 "
           "(sorry_server_inhibit)", _start_phase1, timeout=START_TIMEOUT)
script.add("tcp_server_stopped", "the TCP_CHECKed server .12 stops: out of :80",
           _stopped("12"), changes={80: {"11": 3, "13": 0}})
script.add("tcp_server_back", "it starts again: back at weight 2", _started("12"),
           changes={80: {"11": 3, "12": 2, "13": 0}})
script.add("http_status_404", "the page HTTP_GET fetches from .11 is gone (404): out of :80",
           _page_gone, changes={80: {"12": 2, "13": 0}})
script.add("http_status_200", "the page is back: .11 back at weight 3",
           _write(lambda s: s.www("11") / "status.html", b"ok\n"),
           changes={80: {"11": 3, "12": 2, "13": 0}})
script.add("digest_fixed", "the page under .13's digest gets the right body: the inhibited "
           "server recovers, weight 0 -> 1",
           _write(lambda s: s.www("13") / "digest.html", GOOD_BODY),
           changes={80: {"11": 3, "12": 2, "13": 1}})
script.add("digest_changed", "the body under the digest changes: inhibit_on_failure keeps "
           ".13 at weight 0 instead of removing it",
           _write(lambda s: s.www("13") / "digest.html", OTHER_BAD_BODY),
           changes={80: {"11": 3, "12": 2, "13": 0}})
script.add("https_server_stopped", "the HTTPS server of :85 stops: both SSL_GETs fail, "
           ".13:8443 out of :85", _https(False), changes={85: {}})
script.add("https_server_back", "it starts again: both SSL_GETs pass, back at weight 2",
           _https(True), changes={85: {"13": 2}})
script.add("https_digest_changed", "the page under the SSL_GET's digest changes: out of :85",
           _write(lambda s: s.www_tls / "ssl.html", SSL_OTHER_BODY), changes={85: {}})
script.add("https_digest_fixed", "the digested body is back: back at weight 2",
           _write(lambda s: s.www_tls / "ssl.html", SSL_BODY), changes={85: {"13": 2}})
script.add("file_value_3", "the track file says 3: weight 2 -> 10 + 6, weight 1 reverse -> "
           "10 - 3, weight 0 -> down (removed)",
           _write(lambda s: s.dir / "track", b"3\n"), changes={82: {"11": 16, "12": 7}})
script.add("file_value_0", "the track file says 0: all three at their weight 10",
           _write(lambda s: s.dir / "track", b"0\n"),
           changes={82: {"11": 10, "12": 10, "13": 10}})
script.add("misc_fails_quorum_lost", "MISC_CHECK of :81 exits 1: .11 down, the live weight 2 "
           "falls under quorum 3: the pool leaves, the sorry server gets weight 1",
           _misc("B", "1"), changes={81: {"20": 1}})
script.add("misc_ok_quorum_gained", "it exits 0: .11 up, quorum back: the pool returns, "
           "the sorry server back to weight 0", _misc("B", "0"),
           changes={81: {"11": 2, "13": 2, "20": 0}})
script.add("misc_dynamic_weight", "MISC_CHECK misc_dynamic of :84 exits 7: weight 7 - 2 = 5",
           _misc("E", "7"), changes={84: {"11": 5}})
script.add("dump_data", "SIGUSR1 to both checker processes: keepalived_check.data compared; "
           "nothing else changes", _dump("dump_data"))
script.add("misc_timeout", "the script hangs: killed after misc_timeout, .11 down",
           _misc("E", "sleep"), changes={84: {}})
script.add("misc_ok_after_timeout", "it exits 0 again: .11 up at its configured weight 2 "
           "(keepalived 2.2.7 kept the dynamic weight 5 through the timeout: #2720)",
           _misc("E", "0"), changes={84: {"11": 2}}, keepalived={84: {"11": 5}})
script.add("reload_vs_removed", "reload without virtual server :84",
           _reload(has_e=False), changes={84: None}, reload=True)
script.add("reload_unchanged", "reload with the same configuration: nothing changes",
           _reload(), reload=True)
script.add("reload_rs_added", "reload adding .12 (TCP_CHECK, non-alpha) to :81: in at once",
           _reload(b_has_12=True), changes={81: {"11": 2, "12": 2, "13": 2, "20": 0}},
           reload=True)
script.add("reload_rs_removed", "reload removing .12 from :80: gone (keepalived-py drains it "
           "at weight 0 first, deleted when it has no connections)",
           _reload(a_has_12=False), changes={80: {"11": 3, "13": 0}}, reload=True)
script.add("reload_checker_changed", "reload changing .11's HTTP_GET connect_timeout in :80: "
           "the table stays", _reload(a_connect_timeout_11=2), reload=True)
script.add("reload_vs_added", "reload adding virtual server :83 (.11, TCP_CHECK)",
           _reload(has_d=True), changes={83: {"11": 1}}, reload=True)
script.add("reload_scheduler_changed", "reload changing :80's lb_algo wrr -> wlc",
           _reload(a_scheduler="wlc"), scheduler={80: "wlc"}, reload=True)
script.add("reload_weight_changed", "reload changing .11's weight in :80, 3 -> 5",
           _reload(a_weight_11=5), changes={80: {"11": 5, "13": 0}}, reload=True)
script.add("dump_data_after_reloads", "SIGUSR1 again, after the reloads",
           _dump("dump_data_after_reloads"))
EVENTS: list[Event] = [
    *script.events,
    Event("shutdown_default", "a service made with ipvsadm is added, then both stop "
          "(SIGTERM): each removes its own services, the foreign one stays",
          _add_foreign_and_stop, FOREIGN_TABLE),
]

PHASE2_TABLE: Table = table_of({80: ("rr", {"11": 1, "12": 1, "13": 1})})


def _start_phase2(lab: Lab) -> None:
    lab.each(lambda s: s.start(phase2_text(s.dir), 2))


START_PHASE2 = Event("start_flush_config", "both start again with lvs_flush_on_stop and "
                     "three TCP_CHECKed servers of weight 1 (the figures' setup); the "
                     "foreign service is left as it is", _start_phase2,
                     {**PHASE2_TABLE, **FOREIGN_TABLE}, timeout=START_TIMEOUT)
SHUTDOWN_FLUSH = Event("shutdown_flush_on_stop", "both stop: lvs_flush_on_stop flushes "
                       "everything, the foreign service too", _stop, {})
ALL_EVENTS = [*EVENTS, START_PHASE2, SHUTDOWN_FLUSH]


# -- the client-visible figures ----------------------------------------------------------

class Client:
    """curl in the client namespace, one request after the other through the VIP, each
    on a new connection (``Connection: close``; busybox httpd closes anyway); one line
    per request: the body (``rsNN``, who answered) and the status (000: failed)."""

    def __init__(self, side: Side, name: str) -> None:
        self.path = side.dir / f"client-{name}.out"
        self.out = self.path.open("w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", side.client, "curl", "-s", "-m", "2", "-H",
             "Connection: close", "-w", "%{http_code}\n",
             f"http://{VIP}/index.html?[1-10000000]"], stdout=self.out)

    def lines(self) -> list[str]:
        return self.path.read_text(errors="replace").splitlines()

    def wait_requests(self, count: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while len(self.lines()) < count and time.monotonic() < end:
            time.sleep(0.1)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait()
        self.out.close()
        return summarise(self.lines()[:-1])     # the last one may be cut short


def summarise(lines: list[str], split: int | None = None) -> dict[str, Any]:
    """Requests, those that failed (not a 200), and who answered."""
    answered: dict[str, int] = {}
    failed = []
    for number, line in enumerate(lines):
        words = line.split()
        if not words or words[-1] != "200":
            failed.append((number, line))
            continue
        answered[words[0]] = answered.get(words[0], 0) + 1
    return {"requests": len(lines), "failed": len(failed), "failures": failed[:20],
            "answered": dict(sorted(answered.items()))}


def wait_tables(lab: Lab, done: Callable[[str, Table], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(done(s.name, s.poller.snapshot()[0])  # type: ignore[union-attr]
               for s in lab.sides.values()):
            return True
        time.sleep(0.05)
    return False


def _first_change(history: list[tuple[float, Table]], gone: str) -> float | None:
    for t, table in history:
        if gone not in table.get(svc(80, "rr"), {}):
            return t
    return None


def _previous_poll(poller: Poller, t: float) -> float | None:
    with poller.lock:
        earlier = [p for p in poller.polls if p < t]
    return earlier[-1] if earlier else None


_LOG_LINE = re.compile(r"\w{3} (\w{3} +\d+ \d\d:\d\d:\d\d)\.(\d{3}) (\d{4}): (.*)")


def logged_at(side: Side, text: str, after: float) -> float | None:
    """When (monotonic) our agent logged a line containing ``text``, first after
    ``after``: its lines carry milliseconds (keepalived's only seconds)."""
    if side.log_file is None:
        return None
    offset = time.time() - time.monotonic()
    for line in side.log_file.read_text(errors="replace").splitlines():
        match = _LOG_LINE.fullmatch(line)
        if match is None or text not in match[4]:
            continue
        wall = time.mktime(time.strptime(f"{match[1]} {match[3]}", "%b %d %H:%M:%S %Y"))
        at = wall + int(match[2]) / 1000 - offset
        if at >= after - 0.002:
            return at
    return None


def failure_figure(lab: Lab) -> dict[str, Any]:
    """How long a failing server stays in the table: stopped (refused at once), then
    black-holed (its SYNs dropped: the connect_timeout runs out).  The probes are
    seen on the wire in the real server's namespace; the table is polled every 50 ms."""
    sniffers: dict[tuple[str, str], tuple[subprocess.Popen, Path]] = {}
    for side in lab.sides.values():
        assert side.poller is not None
        side.poller.interval = FAST_POLL
        for octet in ("12", "13"):
            path = side.dir / f"sniff-{octet}.out"
            out = path.open("w")
            proc = subprocess.Popen(["ip", "netns", "exec", side.ns(octet), sys.executable,
                                     "-c", SNIFFER], stdout=out)
            sniffers[(side.name, octet)] = (proc, path)
    end = time.monotonic() + 30
    while not all(p.read_text().startswith("ready") for _, p in sniffers.values()):
        if time.monotonic() > end:
            raise RuntimeError("the sniffers did not start")
        time.sleep(0.1)
    failed_at: dict[tuple[str, str], float] = {}
    for side in lab.sides.values():
        side.stop_httpd("12")
        failed_at[(side.name, "12")] = time.monotonic()
    stopped_gone = wait_tables(lab, lambda n, t: rs("12") not in t.get(svc(80, "rr"), {}), 15)
    for side in lab.sides.values():
        side.shell(side.ns("13")).run(
            "nft 'add table inet blackhole; add chain inet blackhole input "
            "{ type filter hook input priority 0 ; }; "
            "add rule inet blackhole input tcp dport 8080 drop'")
        failed_at[(side.name, "13")] = time.monotonic()
    blackholed_gone = wait_tables(lab, lambda n, t: rs("13") not in t.get(svc(80, "rr"), {}),
                                  15)
    time.sleep(0.5)
    for proc, _ in sniffers.values():
        proc.kill()
        proc.wait()
    for side in lab.sides.values():
        side.start_httpd("12")
        side.shell(side.ns("13")).run("nft delete table inet blackhole")
    back = wait_tables(lab, lambda n, t: t == START_PHASE2.expect, 20)
    figure: dict[str, Any] = {"stopped_gone": stopped_gone, "blackholed_gone": blackholed_gone,
                              "back": back, "bound": CONNECT_TIMEOUT + RETRY * DELAY_BEFORE_RETRY
                              + 0.5, "connect_timeout": CONNECT_TIMEOUT, "retry": RETRY,
                              "delay_before_retry": DELAY_BEFORE_RETRY,
                              "delay_loop": DELAY_LOOP, "cases": {}}
    for (side_name, octet), (_, path) in sniffers.items():
        side = lab.sides[side_name]
        assert side.poller is not None
        t0 = failed_at[(side_name, octet)]
        probes: dict[int, float] = {}          # the first SYN of each probe, by source port
        resets = []
        for line in path.read_text().splitlines()[1:]:
            words = line.split()
            if len(words) != 6:
                continue
            t, src, sport, dport, flags = float(words[0]), words[1], \
                int(words[3]), int(words[4]), int(words[5])
            if t < t0:
                continue
            if src == DIRECTOR_SERVER_SIDE and dport == 8080 and flags & 0x02 \
                    and not flags & 0x10:
                probes.setdefault(sport, t)
            elif src == SERVERS[octet] and sport == 8080 and flags & 0x04:
                resets.append(t)
        starts = sorted(probes.values())
        changed = _first_change(side.poller.since(t0), rs(octet))
        refused = octet == "12"
        case: dict[str, Any] = {"probes_after_failure": [round(s - t0, 3) for s in starts],
                                "resets": [round(r - t0, 3) for r in resets],
                                "left_table_after": None if changed is None
                                else round(changed - t0, 3)}
        if starts and changed is not None:
            # the first failed check: refused at once, or its connect_timeout later
            first_failed = starts[0] + (0.0 if refused else CONNECT_TIMEOUT)
            previous = _previous_poll(side.poller, changed)
            case.update({
                "delay_loop_part": round(starts[0] - t0, 3),
                "first_failed_check": round(first_failed - t0, 3),
                "detection": round(changed - first_failed, 3),
                "poll_before_change": None if previous is None
                else round(previous - first_failed, 3),
                # the VM not running (the host busy) meanwhile: part of "detection"
                "vm_stalled": STALLS.within(first_failed, changed),
            })
            if side_name == "py":
                # what of the detection is ours: from the decision to the kernel
                decided = logged_at(side, f"on service [{SERVERS[octet]}]:tcp:8080 failed", t0)
                if decided is not None:
                    case["decided_after_first_failure"] = round(decided - first_failed, 3)
                    case["decision_to_table"] = round(changed - decided, 3)
        if refused and len(starts) > 2:
            # once down (at the probe after the first failure, retry 1): how often tried
            case["down_intervals"] = [round(b - a, 3) for a, b in zip(starts[1:], starts[2:],
                                                                     strict=False)]
        figure["cases"][f"{side_name}_{'stopped' if refused else 'blackholed'}"] = case
    for side in lab.sides.values():
        assert side.poller is not None
        side.poller.interval = POLL
    return figure


def reload_figure(lab: Lab) -> dict[str, Any]:
    """A reload removes .11 while a client sends requests through the VIP."""
    clients = {s.name: Client(s, "reload") for s in lab.sides.values()}
    for client in clients.values():
        client.wait_requests(20)
    time.sleep(1.0)
    at_reload = {name: len(c.lines()) for name, c in clients.items()}
    reloads = {s.name: s.reloads() for s in lab.sides.values()}
    started = time.monotonic()
    lab.each(lambda s: s.reload(phase2_text(s.dir, with_11=False)))
    gone = wait_tables(lab, lambda n, t: rs("11") not in t.get(svc(80, "rr"), {}),
                       DRAIN_TIME + 20)
    reloaded = all(s.reloads() > reloads[s.name] for s in lab.sides.values())
    time.sleep(1.0)
    out: dict[str, Any] = {"gone": gone, "reloaded": reloaded, "drain_time": DRAIN_TIME,
                           "sides": {}}
    for name, client in clients.items():
        side = lab.sides[name]
        assert side.poller is not None
        result = client.stop()
        after = summarise(client.lines()[at_reload[name]:-1])
        history = side.poller.since(started)
        result.update({
            "after_reload": after,
            "history": [(round(t - started, 3), table) for t, table in history],
            "seconds": round(time.monotonic() - started, 2),
        })
        out["sides"][name] = result
    return out


def kill_figure(lab: Lab) -> dict[str, Any]:
    """kill -9 of our checker process under client traffic: the parent restarts it,
    the new one adopts the kernel's table."""
    py = lab.sides["py"]
    assert py.poller is not None
    py.poller.interval = FAST_POLL
    client = Client(py, "kill")
    client.wait_requests(20)
    time.sleep(1.0)
    pid = py.checker_pid()
    before = py.poller.snapshot()[0]
    killed = time.monotonic()
    if pid is None:
        raise RuntimeError("our checker's pid file is missing")
    os.kill(pid, signal.SIGKILL)
    end = killed + 90
    while py.checker_pid() in (None, pid) and time.monotonic() < end:
        time.sleep(0.1)
    back = time.monotonic()
    new_pid = py.checker_pid()
    time.sleep(3.0)                    # the new process runs its first checks
    ended = time.monotonic()
    result = client.stop()
    history = py.poller.since(killed)
    py.poller.interval = POLL
    return {"restarted": new_pid not in (None, pid), "restart_seconds": round(back - killed, 2),
            "before": before, "history": [(round(t - killed, 3), table) for t, table in history],
            "polls": py.poller.polls_between(killed, ended),
            "observed_seconds": round(ended - killed, 2), "client": result}


# -- the batch ---------------------------------------------------------------------------

STALLS = StallWatch()


def main() -> int:
    global TLS_DIR
    STALLS.start()
    out = Path(sys.argv[1])
    TLS_DIR = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    run("modprobe", "-a", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_wlc")
    run("sysctl", "-qw", "net.ipv4.vs.conntrack=0", check=False)
    lab = Lab(out)
    figures: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:
        lab.each(Side.build)
        # the HTTPS servers listen before the daemons start: their first checks must
        # find them (both started first, then waited for: Python starts slowly here)
        lab.each(Side.wait_https)
        timings["setup"] = round(time.monotonic() - began, 2)
        for event in EVENTS:
            lab.apply(event)
        lab.apply(START_PHASE2)
        for name, figure in (("failure", failure_figure), ("reload_removal", reload_figure),
                             ("checker_killed", kill_figure)):
            started = time.monotonic()
            try:
                figures[name] = figure(lab)
            except Exception:
                lab.errors.append(f"figure {name}: {traceback.format_exc()}")
            timings[f"figure_{name}"] = round(time.monotonic() - started, 2)
            lab.save(figures)
            print(f"figure {name}: {timings[f'figure_{name}']} s", flush=True)
        lab.apply(SHUTDOWN_FLUSH)
    except Exception:
        lab.errors.append(traceback.format_exc())
    finally:
        timings["total"] = round(time.monotonic() - began, 2)
        figures["timings"] = timings
        lab.save(figures)
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for side in lab.sides.values():
            for log in side.dir.glob("*.log"):
                shutil.copy(log, logs / f"{side.name}-{log.name}")
            for extra in [*side.dir.glob("*.out"), *side.dir.glob("*.trace")]:
                shutil.copy(extra, logs / f"{side.name}-{extra.name}")
            side.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
