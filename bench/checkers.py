"""Health checks per second and their CPU, ours beside keepalived 2.2.7's checker process.

    python bench/checkers.py [--runs 3] [--window 15] [--settle 5] [--quick]
                             [--tcp-rates 1000,5000,10000,20000] [--http-rates 1000,5000,10000]
                             [--only agent|keepalived] [--no-status] [--logs DIR]
                             [--profile [RATE]]

Root only.  The project's goal: **10,000 TCP checks per second in under 50 % of
one core, with no false failure.**

For every case (a check kind, TCP_CHECK or HTTP_GET, and a target rate R) and
every implementation, a fresh lab of two network namespaces on one bridge
(tests/lab.py) holds:

* **rs**, the real servers: ONE small C program (``rs_server``, compiled with
  gcc at bench time) with an epoll loop listening on ``0.0.0.0`` ports
  20000..20999, and the addresses 198.19.0.1, .2, ... on its eth0.  Real server
  *i* is address ``i // 1000``, port ``20000 + i % 1000``: R distinct
  (address, port) pairs for 1,000 listening sockets.  It accepts, reads, answers
  any request (up to its blank line) with a fixed 3-byte ``200 OK`` and closes;
  a connection closed without a request (TCP_CHECK) is just closed.  It counts
  accepted connections and answered requests, and prints the counts when a line
  arrives on its stdin.  Why C: a forking server (busybox httpd) or a Python one
  would take most of the two cores at 10,000+ connections a second and starve the
  director being measured; this one stays at a few % (its CPU is printed).
  Without gcc a Python ``selectors`` server of the same protocol stands in, and
  the bench says so.
* **dir**, the director: ``keepalived-py -n -l -C -f CONF`` (checker process only,
  private pid files and control socket) or ``keepalived -n -l -C -f CONF`` with
  its own pid files, the SAME configuration text: R real servers, 50 to a
  virtual server, ``delay_loop 1`` (``--delay-loop``), and in each checker
  ``connect_timeout 3``, ``retry 0`` and ``warmup`` = delay_loop, so that the
  first checks are spread uniformly over one delay_loop and R checks fall in
  every second.  ``retry 0`` on purpose: any failed check takes its real server
  DOWN at once, so every failed check shows as an ``RS ... DOWN`` line on the
  ``lvs_notify_fifo`` (a false failure: every server is up all along).  A route
  198.19.0.0/16 via rs's eth0 address keeps the neighbour table at one entry.
  Both are started with /dev/null bound over /dev/console (bench/reload.py's
  ConsoleMuted: keepalived's syslog with LOG_CONS would write its 10,000+
  "Activating healthchecker" lines to the serial console).

**How keepalived 2.2.7 runs without IPVS.**  This kernel has no IPVS, and
keepalived's checker process stops when ``ipvs_start()`` fails
(check_daemon.c).  libipvs.c first tries the "IPVS" generic netlink family
(absent here, so that fails as it would on any such kernel) and then falls back
to a raw socket and ``getsockopt(IPPROTO_IP, IP_VS_SO_GET_INFO)``.  A tiny
LD_PRELOAD shim (``ipvs_shim.so``, also compiled at bench time) wraps
``getsockopt``/``setsockopt`` and answers ONLY ``level == IPPROTO_IP`` with an
option in the IP_VS range (1152..1167, ``IP_VS_SO_SET_*``/``IP_VS_SO_GET_*`` of
linux/ip_vs.h): every SET succeeds without doing anything, GET_INFO says
version 1.2.1 with no service, every other GET returns zeros (no services, no
destinations, no timeouts).  Every other call goes to libc unchanged, so the
checks themselves (socket, connect, epoll, read/write, the HTTP parsing, the
timers) are keepalived's own, against the real servers; the servers' counts
prove it.  The shim counts what it faked and logs it at exit.  keepalived then
"programs" each real server into that void, as ours programs nothing
(``NoDataPlane``): neither side pays for a kernel IPVS table.  On a kernel with
IPVS the netlink path would succeed and the shim would never be called.

**What is measured**, once the servers have counted a first round of checks (as
many as there are real servers) and ``--settle`` seconds more, over a
``--window`` of seconds:

* checks/s: the servers' accepted connections (TCP_CHECK) or answered requests
  (HTTP_GET) in the window, over the window; for ours also ``probes_run``, from
  the status request ``keepalived-py status --json`` makes (sent on the control
  socket with a 120 s timeout instead of the command's 5 s), asked once AFTER
  the window, because the status of thousands of real servers stops the checker's
  loop for seconds: it is compared with the servers' counts just before and just
  after the request;
* CPU of the checker child process (its pid from its -c pid file): utime +
  stime from /proc/PID/stat over the window, as % of one core, split user /
  kernel, and per 1,000 checks (the servers' count); the parent's CPU beside it;
  the kernel time includes the sender's share of the TCP work on the veth;
* RSS of the checker process at the end of the window (VmRSS);
* false failures: ``RS ... DOWN`` lines on the FIFO in the window and since the
  start; for ours also the real servers not alive in the status after the
  window; and how often the checker process was killed by its parent (no heartbeat
  for 5 s) or died, from the log, at any time of the run;
* how busy the whole machine was (/proc/stat) and the load average, as the two
  cores are shared with other work.

Each case runs ``--runs`` times, ours and keepalived alternating, and the
table gives medians.  ``--profile`` runs our checker process alone (no parent:
``keepalived_py.check.main`` as the parent would start it) under cProfile in
the same lab at the 10,000 rate, enabled for the window only, timed with the
process's CPU clock (not wall time, which on a shared machine charges waiting for
a core to whatever ran then), and prints the top functions.

Everything (namespaces, processes, the build directory) is removed at the end,
also on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import machine  # noqa: E402  (the sibling bench: the machine lines)
from reload import ConsoleMuted  # noqa: E402  (/dev/null as /dev/console)

from tests.integration.agents import KEEPALIVED, FifoReader, wait_for  # noqa: E402
from tests.lab import Host, Lab, ip, unwind_on_signals  # noqa: E402

HERE = Path(__file__).resolve()
KINDS = {"agent": "ours", "keepalived": "keepalived 2.2.7"}
PORT_BASE = 20000
PORTS = 1000                    # listening sockets; real server i: address i // PORTS
RS_NET = "198.19.0"             # the real servers' addresses: 198.19.0.1 ...
CABLE_NET = "198.19.255"        # the director-servers cable, a /30
PER_VS = 50                     # real servers per virtual server
CHECKS = {"tcp": "TCP_CHECK", "http": "HTTP_GET"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- the real servers and the IPVS shim, in C ---------------------------------------------

RS_SERVER_C = r"""
/* Real servers for bench/checkers.py: one epoll loop on N listening ports.
 * Accepts, reads; a request (up to its blank line) gets a fixed 200 and the
 * connection is closed; EOF without a request (TCP_CHECK) is closed too.
 * Each line on stdin is answered with "accepts requests eofs errors". */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char REPLY[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
enum { FREE, LISTENER, CONN };

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: rs_server PORT_BASE NPORTS\n"); return 2; }
    int base = atoi(argv[1]), n = atoi(argv[2]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    size_t maxfd = rl.rlim_cur;
    unsigned char *kind = calloc(maxfd, 1), *seen = calloc(maxfd, 1);
    unsigned long long accepts = 0, requests = 0, eofs = 0, errors = 0;
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN };
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(base + i) };
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) || listen(s, 4096)) {
            perror("rs_server: listen"); return 1;
        }
        kind[s] = LISTENER;
        ev.data.fd = s;
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    }
    ev.data.fd = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready\n");
    fflush(stdout);
    struct epoll_event evs[512];
    char buf[4096];
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        for (int e = 0; e < k; e++) {
            int fd = evs[e].data.fd;
            if (fd == 0) {
                ssize_t r = read(0, buf, sizeof buf);
                if (r <= 0) return 0;
                for (ssize_t j = 0; j < r; j++)
                    if (buf[j] == '\n')
                        printf("%llu %llu %llu %llu\n", accepts, requests, eofs, errors);
                fflush(stdout);
            } else if (kind[fd] == LISTENER) {
                for (;;) {
                    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                            errors++;
                        break;
                    }
                    accepts++;
                    kind[c] = CONN;
                    seen[c] = 0;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
                int done = r <= 0;
                if (r == 0) eofs++;
                if (r < 0) errors++;
                for (ssize_t j = 0; j < r && !done; j++) {
                    static const char end[] = "\r\n\r\n";
                    if (buf[j] == end[seen[fd]]) seen[fd]++;
                    else seen[fd] = buf[j] == '\r';
                    if (seen[fd] == 4) {
                        if (write(fd, REPLY, sizeof REPLY - 1) < 0) errors++;
                        else requests++;
                        done = 1;
                    }
                }
                if (done) { kind[fd] = FREE; close(fd); }
            }
        }
    }
}
"""

IPVS_SHIM_C = r"""
/* LD_PRELOAD shim for bench/checkers.py: keepalived's raw-socket IPVS calls
 * (getsockopt/setsockopt at IPPROTO_IP with an IP_VS_SO_* option, 1152..1167)
 * succeed without a kernel IPVS.  Everything else goes to libc unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IP_VS_BASE_CTL (64 + 1024 + 64)
#define IP_VS_SO_SET_MAX (IP_VS_BASE_CTL + 15)
#define IP_VS_SO_GET_INFO (IP_VS_BASE_CTL + 1)
#define IP_VS_SO_GET_MAX (IP_VS_BASE_CTL + 7)

static unsigned long sets, gets;

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    static int (*real)(int, int, int, const void *, socklen_t);
    if (level == IPPROTO_IP && name >= IP_VS_BASE_CTL && name <= IP_VS_SO_SET_MAX) {
        sets++;
        return 0;
    }
    if (!real)
        real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
    return real(fd, level, name, value, len);
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    static int (*real)(int, int, int, void *, socklen_t *);
    if (level == IPPROTO_IP && name >= IP_VS_BASE_CTL && name <= IP_VS_SO_GET_MAX) {
        gets++;
        if (value && len) memset(value, 0, *len);
        if (name == IP_VS_SO_GET_INFO && value && len && *len >= 3 * sizeof(unsigned)) {
            unsigned *info = value;     /* struct ip_vs_getinfo */
            info[0] = 0x010201;         /* version 1.2.1 */
            info[1] = 4096;             /* connection table size */
            info[2] = 0;                /* services */
        }
        return 0;
    }
    if (!real)
        real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
    return real(fd, level, name, value, len);
}

/* keepalived's children may have no stderr left: the counts go to $IPVS_SHIM_LOG */
__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("IPVS_SHIM_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f && (sets || gets)) {
        fprintf(f, "ipvs_shim: pid %d faked %lu IP_VS set and %lu get calls\n",
                (int)getpid(), sets, gets);
    }
    if (f) fclose(f);
}
"""

# the same real servers in Python, used only when there is no gcc
FALLBACK_SERVER = r"""
import selectors, socket, sys
base, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
REPLY = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
         b"Connection: close\r\n\r\nok\n")
counts = [0, 0, 0, 0]   # accepts requests eofs errors
for port in range(base, base + n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(4096); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, "listen")
sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "stdin":
            if not sys.stdin.readline():
                sys.exit(0)
            print(*counts, flush=True)
        elif key.data == "listen":
            while True:
                try:
                    c, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                counts[0] += 1
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, bytearray())
        else:
            c, buf = key.fileobj, key.data
            try:
                data = c.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data, counts[3] = None, counts[3] + 1
            if data:
                buf += data
                if b"\r\n\r\n" not in buf:
                    continue
                try:
                    c.send(REPLY); counts[1] += 1
                except OSError:
                    counts[3] += 1
            elif data == b"":
                counts[2] += 1
            sel.unregister(c); c.close()
"""


@dataclass
class Tools:
    """What was built: the servers' command and keepalived's shim (or why not)."""

    server: list[str]
    server_note: str
    shim: Path | None
    shim_missing: str


def build(where: Path) -> Tools:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        note = "Python fallback servers (no gcc): high rates may be limited by them"
        print(f"checkers.py: gcc not found: {note}; keepalived cannot run without its "
              "IPVS shim", file=sys.stderr)
        return Tools([sys.executable, "-c", FALLBACK_SERVER], note, None,
                     "missing: gcc (needed to build the IPVS shim)")
    (where / "rs_server.c").write_text(RS_SERVER_C)
    (where / "ipvs_shim.c").write_text(IPVS_SHIM_C)
    for argv in ([gcc, "-O2", "-Wall", "-o", str(where / "rs_server"), str(where / "rs_server.c")],
                 [gcc, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(where / "ipvs_shim.so"),
                  str(where / "ipvs_shim.c"), "-ldl"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"checkers.py: {' '.join(argv)} failed:\n{done.stderr}")
    return Tools([str(where / "rs_server")], "C epoll server (rs_server)",
                 where / "ipvs_shim.so", "")


# -- configuration ---------------------------------------------------------------------------

def rs_address(i: int) -> tuple[str, int]:
    return f"{RS_NET}.{1 + i // PORTS}", PORT_BASE + i % PORTS


def vip(v: int) -> str:
    return f"198.18.{1 + v // 250}.{1 + v % 250}"


def config(check: str, count: int, fifo: Path, args: argparse.Namespace) -> str:
    delay = f"{args.delay_loop:g}"
    if check == "tcp":
        checker = f"""        TCP_CHECK {{
            connect_timeout {args.connect_timeout:g}
            retry 0
            warmup {delay}
        }}"""
    else:
        checker = f"""        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout {args.connect_timeout:g}
            retry 0
            warmup {delay}
        }}"""
    parts = [f"global_defs {{\n    router_id bench\n    lvs_notify_fifo {fifo}\n}}\n"]
    for v, first in enumerate(range(0, count, PER_VS)):
        parts.append(f"virtual_server {vip(v)} 80 {{\n    delay_loop {delay}\n"
                     "    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n")
        for i in range(first, min(first + PER_VS, count)):
            ip, port = rs_address(i)
            parts.append(f"    real_server {ip} {port} {{\n        weight 1\n{checker}\n    }}\n")
        parts.append("}\n")
    return "".join(parts)


# -- /proc ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cpu:
    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.user + other.user, self.system + other.system)


def proc_cpu(pid: int | None) -> Cpu:
    """utime and stime of one process (all its threads), in seconds; zero if gone."""
    if pid is None:
        return Cpu()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return Cpu()
    return Cpu(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def threads_cpu(pids: list[int]) -> Cpu:
    total = Cpu()
    for pid in pids:
        total += proc_cpu(pid)
    return total


def proc_rss(pid: int | None) -> float:
    """VmRSS in MB (0 if gone)."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]          # idle + iowait
    total = sum(values[:8])               # guest time is already in user
    return total - idle, total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


# -- the lab's processes ---------------------------------------------------------------------

class Servers:
    """The real servers' process in the rs namespace, and its counters."""

    def __init__(self, host: Host, tools: Tools, count: int) -> None:
        self.rx_threads: list[int] = []     # the director's receive thread(s) on the cable
        self.drops: Callable[[], int] = lambda: 0
        addresses = (count + PORTS - 1) // PORTS
        for a in range(1, addresses + 1):
            host.run(["ip", "addr", "add", f"{RS_NET}.{a}/32", "dev", "eth0"])
        self.proc = host.spawn([*tools.server, str(PORT_BASE), str(min(PORTS, count))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the real servers did not start (said {line!r})")

    def counts(self) -> tuple[int, int, int, int]:
        """(accepted connections, answered requests, closed without request, errors)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        a, r, e, x = (int(v) for v in self.proc.stdout.readline().split())
        return a, r, e, x

    def checks(self, check: str) -> int:
        accepts, requests, _, _ = self.counts()
        return accepts if check == "tcp" else requests


class Director:
    """Our agent or keepalived, checker process only, on the director host."""

    def __init__(self, host: Host, kind: str, workdir: Path) -> None:
        self.host = ConsoleMuted(host)
        self.kind = kind
        self.dir = workdir
        self.conf = workdir / "keepalived.conf"
        self.log = workdir / "log"
        self.fifo_path = workdir / "lvs.fifo"
        self.fifo = FifoReader(self.fifo_path)
        self.proc: subprocess.Popen[Any] | None = None
        self.child_file = workdir / ("checkers.pid" if kind == "agent" else "chk.pid")
        self.shim_log = workdir / "ipvs_shim.log"
        self.status_seconds: list[float] = []

    @property
    def control(self) -> Path:
        return self.dir / "control.sock"

    def start(self, shim: Path | None) -> None:
        d = self.dir
        env = {**os.environ, "TMPDIR": str(d)}
        if self.kind == "agent":
            argv = [sys.executable, "-m", "keepalived_py.cli", "-n", "-l", "-C",
                    "-f", str(self.conf), "-p", str(d / "agent.pid"), "-r", str(d / "vrrp.pid"),
                    "-c", str(self.child_file), "--control-socket", str(self.control),
                    "--maintenance-file", str(d / "maintenance.json")]
        else:
            assert shim is not None
            env["LD_PRELOAD"] = str(shim)
            env["IPVS_SHIM_LOG"] = str(self.shim_log)
            argv = [KEEPALIVED, "-n", "-l", "-C", "-f", str(self.conf),
                    "-p", str(d / "ka.pid"), "-r", str(d / "vrrp.pid"),
                    "-c", str(self.child_file), "-b", str(d / "bfd.pid")]
        with self.log.open("a") as log:
            self.proc = self.host.spawn(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def child(self) -> int | None:
        return read_pid(self.child_file)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """Our status answer, as ``keepalived-py status --json`` gets it ({} if none).

        The same request on the control socket, with a longer timeout than the
        command's 5 s: thousands of real servers take longer.  How long it took
        is kept in ``status_seconds``."""
        from keepalived_py.core.control import ControlError, query
        began = time.monotonic()
        try:
            answer = query(str(self.control), {"request": "status"}, timeout=120)
        except ControlError as err:
            print(f"  status: {err}", file=sys.stderr)
            answer = {}
        self.status_seconds.append(time.monotonic() - began)
        return answer

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.fifo.close()

    def kills(self) -> int:
        """How often the log says the checker process was killed or died."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if "sent no heartbeat" in line
                   or " died" in line)

    def why(self) -> str:
        """The log's lines about a killed or dead checker process, for a failure."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        said = [line.split(": ", 1)[-1] for line in text.splitlines()
                if "heartbeat" in line or "died" in line or "exited" in line]
        return f" ({len(said)} such lines; first: {said[0]})" if said else ""

    def tail(self, lines: int = 15) -> str:
        try:
            return "".join(self.log.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""


# -- one measurement -------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    check: str                      # tcp | http
    rate: int                       # real servers / delay_loop

    @property
    def label(self) -> str:
        return f"{CHECKS[self.check]} {self.rate:,}/s"


@dataclass
class Measure:
    window: float
    checks: int                     # as the servers counted them
    cpu: Cpu                        # the checker process
    parent_cpu: Cpu
    rx_cpu: Cpu                     # the director's receive thread (direct cable)
    server_cpu: Cpu
    rss: float
    busy: float                     # the whole machine, % of all its CPUs
    load: str
    probes: tuple[int, int, int] | None     # ours: probes_run, servers' count before/after
    down_window: int
    down_run: int
    not_alive: int | None           # ours: real servers not alive after the window
    server_errors: int
    drops: int                              # packets the direct cable dropped, whole run
    status_seconds: float | None = None     # ours: the longest status answer
    kills: int = 0                          # the checker process killed or dead, any time

    @property
    def rate(self) -> float:
        return self.checks / self.window

    @property
    def percent(self) -> float:
        """The checker process, as top shows it."""
        return 100 * self.cpu.total / self.window

    @property
    def rx_percent(self) -> float:
        """The director's receive work (what top shows as si on a real machine)."""
        return 100 * self.rx_cpu.total / self.window

    @property
    def ms_per_1k(self) -> float:
        return 1000 * self.cpu.total / (self.checks / 1000) if self.checks else float("nan")

    @property
    def rx_ms_per_1k(self) -> float:
        return 1000 * self.rx_cpu.total / (self.checks / 1000) if self.checks else float("nan")

    @property
    def user_ms_per_1k(self) -> float:
        return 1000 * self.cpu.user / (self.checks / 1000) if self.checks else float("nan")

    @property
    def probes_diff(self) -> float:
        """probes_run against the servers' count, in % (0 when it lies in their bracket)."""
        if self.probes is None:
            return float("nan")
        run, before, after = self.probes
        if before <= run <= after:
            return 0.0
        near = before if run < before else after
        return 100 * (run - near) / max(near, 1)

    def line(self) -> str:
        probes = ""
        if self.probes is not None:
            run, before, after = self.probes
            probes = (f"; probes_run {run:,} at the end, the servers counted {before:,} to "
                      f"{after:,} ({self.probes_diff:+.2f} %)")
        if self.status_seconds is not None:
            probes += f", status took {self.status_seconds:.1f} s"
        alive = "" if self.not_alive is None else f", {self.not_alive} not alive after"
        again = f", CHECKER PROCESS KILLED {self.kills} times" if self.kills else ""
        return (f"{self.rate:,.0f} checks/s{probes}; checker {self.percent:.1f} % of a core "
                f"(user {self.cpu.user:.2f} s, kernel {self.cpu.system:.2f} s in "
                f"{self.window:.1f} s), {self.ms_per_1k:.1f} ms/1k checks; its receive work "
                f"{self.rx_percent:.1f} % ({self.rx_ms_per_1k:.1f} ms/1k); RSS "
                f"{self.rss:.0f} MB; parent {100 * self.parent_cpu.total / self.window:.1f} %; "
                f"servers {100 * self.server_cpu.total / self.window:.1f} %; DOWN "
                f"{self.down_window} in window, {self.down_run} in run{alive}{again}; "
                + (f"server errors {self.server_errors}; " if self.server_errors else "")
                + (f"CABLE DROPPED {self.drops} packets; " if self.drops else "") +
                f"machine {self.busy:.0f} % busy, load {self.load}")


class Failed(Exception):
    """A run that could not be measured; said under the table."""

    kills = 0


def downs(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("RS ") and line.endswith(" DOWN"))


# pyroute2's ethtool (no ethtool command here): GRO on puts a veth end in NAPI mode
GRO_ON = """import sys
from pyroute2.ethtool import Ethtool
with Ethtool() as tool:
    features = tool.get_features(sys.argv[1])
    features.features["rx-gro"].enable = True
    # TCP segments of a TSO sender never take the veth's NAPI path (its
    # veth_skb_is_eligible_for_gro): they would be received in the sender's context
    for name, feature in features.features.items():
        if name.startswith("tx-tcp"):
            feature.enable = False
    tool.set_features(sys.argv[1], features)
"""


def direct_cable(lab: Lab, director: Host, servers: Host) -> tuple[str, str]:
    """A veth cable from the director straight to the servers, each end receiving in a
    NAPI thread of its own, as two machines would: the servers' TCP work then runs in
    their thread, not in the director's context.  Returns the director's and the
    servers' ends."""
    d_end, s_end = f"kd{lab.tag[:4]}", f"ks{lab.tag[:4]}"
    ip("-n", director.netns, "link", "add", d_end, "type", "veth",
       "peer", "name", s_end, "netns", servers.netns)
    for host, end, address in ((director, d_end, f"{CABLE_NET}.1"),
                               (servers, s_end, f"{CABLE_NET}.2")):
        host.run([sys.executable, "-c", GRO_ON, end])
        # a queue in front of each end: this kernel's veth then holds back a sender whose
        # peer's 256-packet ring is full (since Linux 6.15) instead of dropping, which on
        # a busy machine failed checks of either implementation (veth has no qdisc)
        host.run(["tc", "qdisc", "replace", "dev", end, "root", "pfifo", "limit", "10000"])
        ip("-n", host.netns, "link", "set", end, "up")
        host.run(["sh", "-c", f"echo 1 > /sys/class/net/{end}/threaded"])
        ip("-n", host.netns, "addr", "add", f"{address}/30", "dev", end)
    ip("-n", director.netns, "route", "add", f"{RS_NET.rsplit('.', 1)[0]}.0.0/16",
       "via", f"{CABLE_NET}.2")
    return d_end, s_end


def cable_drops(host: Host, end: str) -> int:
    """Packets the cable's end dropped, both ways."""
    stats = host._ip_json("-s", "link", "show", "dev", end)[0]["stats64"]
    return int(stats["rx"]["dropped"]) + int(stats["tx"]["dropped"])


def thread_pids(prefix: str) -> list[int]:
    """The kernel threads whose name starts with ``prefix``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(prefix):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def measure(kind: str, case: Case, tools: Tools, args: argparse.Namespace,
            profile_out: Path | None = None) -> Measure:
    count = round(case.rate * args.delay_loop)
    with Lab(["rs", "dir"]) as lab, tempfile.TemporaryDirectory(prefix="kpy-chk-") as tmp:
        rs, host = lab.host("rs"), lab.host("dir")
        servers = Servers(rs, tools, count)
        if args.shared_path:
            host.run(["ip", "route", "add", f"{RS_NET.rsplit('.', 1)[0]}.0.0/16",
                      "via", str(rs.ip4)])
            servers.rx_threads = []
        else:
            d_end, s_end = direct_cable(lab, host, rs)
            servers.rx_threads = thread_pids(f"napi/{d_end}-")
            if not servers.rx_threads:
                raise Failed(f"no receive thread napi/{d_end}-* on the direct cable")
            servers.drops = lambda: cable_drops(host, d_end) + cable_drops(rs, s_end)
        director = Director(host, kind, Path(tmp))
        director.conf.write_text(config(case.check, count, director.fifo_path, args))
        try:
            if profile_out is not None:
                result = _profiled(director, servers, case, args, profile_out)
            else:
                director.start(tools.shim)
                result = _steady(director, servers, case, args)
        except Failed as err:
            director.close()
            err.kills = director.kills()
            raise
        except BaseException:
            print(f"--- last lines of {KINDS[kind]}'s log:\n{director.tail()}", file=sys.stderr)
            raise
        finally:
            director.close()
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                name = f"{case.check}-{case.rate}-{kind}-{time.strftime('%H%M%S')}"
                for part in ("log", "ipvs_shim.log"):
                    if (Path(tmp) / part).exists():
                        shutil.copy(Path(tmp) / part, args.logs / f"{name}.{part}")
        result.kills = director.kills()
        return result


def _wait_checks(director: Director, servers: Servers, case: Case,
                 args: argparse.Namespace, pid: int | None = None) -> int:
    """Wait for the first round of checks (the servers have counted as many checks as
    there are real servers), then ``settle`` seconds; the checker's pid."""
    before = servers.checks(case.check)
    count = round(case.rate * args.delay_loop)

    def done(at_least: int) -> bool:
        if not director.alive() and pid is None:
            raise Failed(f"{KINDS[director.kind]} exited: {director.tail(3).strip()}")
        return servers.checks(case.check) - before >= at_least

    try:
        wait_for("the first checks", lambda: done(1), timeout=args.start_timeout, every=0.2)
        wait_for("a first round of checks", lambda: done(count), timeout=args.start_timeout,
                 every=0.2)
    except AssertionError as err:
        raise Failed(f"{KINDS[director.kind]}: {err}" + director.why()) from None
    time.sleep(args.settle)
    child = pid or director.child()
    if child is None:
        raise Failed(f"{KINDS[director.kind]}: no checker process after the first checks"
                     + director.why())
    return child


def _window(director: Director, servers: Servers, case: Case, args: argparse.Namespace,
            child: int, parent: int | None) -> dict[str, Any]:
    lines0 = len(director.fifo.lines())
    busy0, t0 = machine_ticks(), time.monotonic()
    c0, cpu0, p0 = servers.checks(case.check), proc_cpu(child), proc_cpu(parent)
    s0, rx0 = proc_cpu(servers.proc.pid), threads_cpu(servers.rx_threads)
    time.sleep(args.window)
    c1, cpu1, p1 = servers.checks(case.check), proc_cpu(child), proc_cpu(parent)
    s1, rx1 = proc_cpu(servers.proc.pid), threads_cpu(servers.rx_threads)
    t1, busy1 = time.monotonic(), machine_ticks()
    rss = proc_rss(child)
    if not Path(f"/proc/{child}").exists():
        raise Failed(f"the checker process (pid {child}) died during the window"
                     + director.why())
    lines = director.fifo.lines()
    *_, errors = servers.counts()
    drops = servers.drops()
    return {"window": t1 - t0, "checks": c1 - c0, "cpu": cpu1 - cpu0, "parent_cpu": p1 - p0,
            "rx_cpu": rx1 - rx0, "server_cpu": s1 - s0, "rss": rss,
            "busy": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
            "load": loadavg(), "down_window": downs(lines[lines0:]), "down_run": downs(lines),
            "server_errors": errors, "drops": drops}


def _steady(director: Director, servers: Servers, case: Case,
            args: argparse.Namespace) -> Measure:
    child = _wait_checks(director, servers, case, args)
    assert director.proc is not None
    figures = _window(director, servers, case, args, child, director.proc.pid)
    probes = not_alive = None
    if director.kind == "agent" and not args.no_status:
        # after the window: the status of thousands of real servers stops the checker's
        # loop for seconds (and the checks with it); the servers' counts just before and
        # just after it bracket the probes_run it reports
        before = servers.checks(case.check)
        snap = director.status().get("checker") or {}
        after = servers.checks(case.check)
        if "probes_run" in snap:
            probes = (int(snap["probes_run"]), before, after)
            not_alive = sum(1 for vs in snap.get("virtual_servers", [])
                            for rs in vs.get("real_servers", []) if not rs.get("alive"))
        time.sleep(1.0)             # a restart for a missed heartbeat shows by now
    return Measure(**figures, probes=probes, not_alive=not_alive,
                   status_seconds=max(director.status_seconds, default=None))


# -- profile ----------------------------------------------------------------------------------

def _profiled(director: Director, servers: Servers, case: Case, args: argparse.Namespace,
              out: Path) -> Measure:
    """Our checker process alone under cProfile (enabled by SIGALRM for the window)."""
    d = director.dir
    argv = [sys.executable, str(HERE), "_profile", str(out), "--", "-f", str(director.conf),
            "-i", "bench", "-l", "--pid-file", str(director.child_file)]
    with director.log.open("a") as log:
        director.proc = director.host.spawn(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "TMPDIR": str(d)})
    pid = director.proc.pid
    child = _wait_checks(director, servers, case, args, pid)
    os.kill(pid, signal.SIGALRM)            # profiler on
    figures = _window(director, servers, case, args, child, None)
    os.kill(pid, signal.SIGALRM)            # profiler off, stats written, then SIGTERM
    wait_for("the profile", lambda: out.exists() and director.proc is not None
             and director.proc.poll() is not None, timeout=120, every=0.2)
    return Measure(**figures, probes=None, not_alive=None)


def profile_child(argv: list[str]) -> int:
    """Inside the director's namespace: the checker process's main() under cProfile,
    switched on by the first SIGALRM and off (stats written, then SIGTERM) by the second."""
    out = argv[0]
    child_argv = argv[argv.index("--") + 1:]
    from keepalived_py.check import main as check_main
    # CPU time, not wall time: on a shared machine a wall-clock profile charges the
    # time this process waits for a core to whatever it was doing then
    profiler = cProfile.Profile(time.process_time)
    state: list[bool] = []

    def on_alarm(_signum: int, _frame: object) -> None:
        if not state:
            state.append(True)
            profiler.enable()
        else:
            profiler.disable()
            profiler.dump_stats(out)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGALRM, on_alarm)
    return check_main.main(child_argv)


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        print(f"\ncProfile of our checker process, top {top} by {order}:\n")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())


# -- report ------------------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Failure:
    """A run that could not be measured, and how often its checker process was killed."""

    reason: str
    kills: int


Run = Measure | Failure


def cells(runs: list[Run], notes: list[str]) -> list[str]:
    """The table's figures for one implementation and case: medians of its runs.  The
    reasons of failed runs go to ``notes``, referred to by number."""
    ok = [r for r in runs if isinstance(r, Measure)]
    failed = [r for r in runs if isinstance(r, Failure)]
    refs = ""
    for failure in failed:
        if failure.reason not in notes:
            notes.append(failure.reason)
        ref = f"[{notes.index(failure.reason) + 1}]"
        if ref not in refs:
            refs += ref
    killed = sum(1 for r in runs if r.kills)
    runs_cell = f"{len(ok)} of {len(runs)}" + (f" {refs}" if refs else "")
    if not ok:
        return ["-"] * 8 + [f"{killed}", "-", runs_cell]
    probes = [r.probes_diff for r in ok if r.probes is not None]
    not_alive = [r.not_alive for r in ok if r.not_alive is not None]
    downs_ = f"{sum(r.down_window for r in ok)} / {sum(r.down_run for r in ok)}"
    if not_alive:
        downs_ += f" / {max(not_alive)}"
    return [
        f"{_median([r.rate for r in ok]):,.0f}",
        ("agrees" if not any(probes) else f"{max(probes, key=abs):+.2f} %") if probes else "-",
        f"{_median([r.percent for r in ok]):.1f} %",
        f"{_median([100 * r.cpu.user / r.window for r in ok]):.0f} / "
        f"{_median([100 * r.cpu.system / r.window for r in ok]):.0f}",
        f"{_median([r.ms_per_1k for r in ok]):.0f} ({_median([r.user_ms_per_1k for r in ok]):.0f}"
        f" + {_median([r.ms_per_1k - r.user_ms_per_1k for r in ok]):.0f})",
        f"{_median([r.rx_percent for r in ok]):.1f} % "
        f"({_median([r.rx_ms_per_1k for r in ok]):.0f})",
        f"{_median([r.rss for r in ok]):.0f} MB",
        downs_,
        f"{killed}",
        f"{_median([r.busy for r in ok]):.0f} %",
        runs_cell,
    ]


HEAD = ["case", "implementation", "checks/s", "probes_run", "checker, % of a core",
        "user / kernel %", "ms / 1k checks", "receive work (ms/1k)", "RSS", "DOWN", "killed",
        "machine busy", "runs ok"]


def table(results: dict[tuple[Case, str], list[Run]], cases: list[Case],
          kinds: list[str]) -> str:
    rows = [HEAD]
    notes: list[str] = []
    for case in cases:
        for n, kind in enumerate(kinds):
            rows.append([case.label if n == 0 else "", KINDS[kind],
                         *cells(results.get((case, kind), []), notes)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out += [f"[{n}] {note}" for n, note in enumerate(notes, 1)]
    return "\n".join(out)


LEGEND = """\
checks/s: as the real servers counted them (accepts; answered requests for HTTP_GET),
  median over the runs.  probes_run: ours' own count after the window, against the
  servers' counts just before and after that status request ("agrees": within them).
checker: the checker process (utime + stime, as top shows it) over the window, % of one
  core and CPU ms per 1,000 checks (user + kernel).  receive work: the kernel thread
  receiving the director's packets (its end of the direct cable, in NAPI thread mode:
  what a real machine does in softirq, top's "si"), beside it.  The servers' TCP work
  runs in their own end's thread and is counted nowhere (with --shared-path it is
  charged to the checker process: one bridge, softirq in the sender's context).
DOWN: real servers taken DOWN (RS ... DOWN on the lvs_notify_fifo, every one a false
  failure) in the windows / since the starts, summed over the runs; ours: / real servers
  not alive in the status after the window (the most in a run).
killed: runs in which the checker process was killed by its parent (no heartbeat for
  5 s) or died, at any time.  machine busy: all CPUs, /proc/stat, median over the windows.
"""


def verdict(results: dict[tuple[Case, str], list[Run]]) -> str:
    runs = [r for r in results.get((Case("tcp", 10000), "agent"), []) if isinstance(r, Measure)]
    if not runs:
        return "goal (10,000 TCP checks/s under 50 % of one core, no false failure): not measured"
    rate = _median([r.rate for r in runs])
    percent = _median([r.percent for r in runs])
    downs_ = sum(r.down_run for r in runs)
    met = rate >= 0.95 * 10000 and percent < 50 and downs_ == 0
    failed = len(results[(Case("tcp", 10000), "agent")]) - len(runs)
    met = met and not failed and not any(r.kills for r in runs)
    text = (f"goal (10,000 TCP checks/s under 50 % of one core, no false failure): "
            f"{'MET' if met else 'NOT MET'} - ours {rate:,.0f} checks/s at {percent:.1f} % of "
            f"a core (user {_median([100 * r.cpu.user / r.window for r in runs]):.0f} %, "
            f"median of {len(runs)}), {downs_} real servers DOWN"
            + (f", {failed} runs failed" if failed else ""))
    text += f", its receive work {_median([r.rx_percent for r in runs]):.1f} % more"
    theirs = [r for r in results.get((Case("tcp", 10000), "keepalived"), [])
              if isinstance(r, Measure)]
    if theirs:
        text += (f"; keepalived 2.2.7 at the same target: "
                 f"{_median([r.rate for r in theirs]):,.0f} checks/s at "
                 f"{_median([r.percent for r in theirs]):.1f} % (user "
                 f"{_median([100 * r.cpu.user / r.window for r in theirs]):.0f} %), its "
                 f"receive work {_median([r.rx_percent for r in theirs]):.1f} % more")
    return text


def _rates(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()] if text else []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_profile"]:
        return profile_child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case and kind (3)")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds (15)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after a first round of checks, before the window (5)")
    parser.add_argument("--tcp-rates", default="1000,5000,10000,20000",
                        help="TCP_CHECK target rates, checks/s (1000,5000,10000,20000)")
    parser.add_argument("--http-rates", default="1000,5000,10000",
                        help="HTTP_GET target rates, checks/s (1000,5000,10000)")
    parser.add_argument("--delay-loop", type=float, default=1.0,
                        help="delay_loop; real servers = rate x delay_loop (1)")
    parser.add_argument("--connect-timeout", type=float, default=3.0, help="(3)")
    parser.add_argument("--start-timeout", type=float, default=180.0,
                        help="seconds allowed from start to the first check, and again to "
                        "a first round (180)")
    parser.add_argument("--shared-path", action="store_true",
                        help="servers reached over the lab's bridge, whose TCP work is then "
                        "charged to the director (as before the direct cable)")
    parser.add_argument("--no-status", action="store_true",
                        help="do not ask ours for its status (probes_run) after each window")
    parser.add_argument("--only", choices=sorted(KINDS), help="measure one implementation")
    parser.add_argument("--quick", action="store_true",
                        help="1 run, 10 s window, TCP 1k and 10k, HTTP 1k")
    parser.add_argument("--profile", nargs="?", type=int, const=10000, metavar="RATE",
                        help="only profile our checker at TCP_CHECK RATE/s (10000)")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep each run's director log (and the shim's counts) in DIR")
    parser.add_argument("--top", type=int, default=30, help="profile lines (30)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("checkers.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.quick:
        args.runs, args.window = 1, 10.0
        args.tcp_rates, args.http_rates = "1000,10000", "1000"
    cases = [Case("tcp", r) for r in _rates(args.tcp_rates)] + \
        [Case("http", r) for r in _rates(args.http_rates)]
    if any(round(c.rate * args.delay_loop) > 250 * PORTS for c in cases):
        parser.error("at most 250,000 real servers")
    kinds = [args.only] if args.only else list(KINDS)

    unwind_on_signals()
    build_dir = Path(tempfile.mkdtemp(prefix="kpy-chk-build-"))
    try:
        tools = build(build_dir)
        missing = ""
        if "keepalived" in kinds and not Path(KEEPALIVED).exists():
            missing = f"missing: {KEEPALIVED} (apt-get install keepalived)"
            print(f"checkers.py: keepalived not found at {KEEPALIVED}: its side is skipped",
                  file=sys.stderr)
        elif "keepalived" in kinds and tools.shim is None:
            missing = tools.shim_missing
        print("\n".join(machine()))
        print(f"servers:    {tools.server_note}")
        if args.profile:
            return run_profile(args, tools)
        print(f"\nper case: real servers = rate x delay_loop {args.delay_loop:g} s, {PER_VS} "
              f"per virtual server, connect_timeout {args.connect_timeout:g}, retry 0; window "
              f"{args.window:g} s after a first round of checks + {args.settle:g} s; "
              f"{args.runs} runs\n", flush=True)
        results: dict[tuple[Case, str], list[Run]] = {}
        for run in range(1, args.runs + 1):
            for case in cases:
                for kind in kinds:
                    cell = results.setdefault((case, kind), [])
                    if kind == "keepalived" and missing:
                        cell.append(Failure(missing, 0))
                        continue
                    try:
                        result = measure(kind, case, tools, args)
                    except (Failed, AssertionError, RuntimeError) as err:
                        kills = err.kills if isinstance(err, Failed) else 0
                        cell.append(Failure(f"{case.label}, {KINDS[kind]}, run {run}: {err}",
                                            kills))
                        print(f"  {case.label:<18} {KINDS[kind]:<16} run {run}: failed: {err}",
                              flush=True)
                        continue
                    cell.append(result)
                    print(f"  {case.label:<18} {KINDS[kind]:<16} run {run}: {result.line()}",
                          flush=True)
        print()
        print(table(results, cases, kinds))
        print()
        print(LEGEND)
        print(verdict(results))
        return 0
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)


def run_profile(args: argparse.Namespace, tools: Tools) -> int:
    case = Case("tcp", args.profile)
    print(f"\nprofile: our checker process alone (no parent) at {case.label}, cProfile on "
          f"for a {args.window:g} s window\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="kpy-chk-prof-") as tmp:
        out = Path(tmp) / "checker.prof"
        result = measure("agent", case, tools, args, profile_out=out)
        print(f"  under cProfile: {result.line()}")
        print_profile(out, args.top)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:           # the lab is gone by now (finally blocks)
        print("checkers.py: interrupted", file=sys.stderr)
        sys.exit(130)
