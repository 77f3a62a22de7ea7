"""Reload of a large configuration, and a restart of the VRRP process: time, CPU and
transitions, ours beside keepalived 2.2.7.

    python bench/reload.py [--instances 1000] [--runs 3] [--only agent|keepalived]

Root only.  For each implementation, a lab holds one router (host r1) with
``--instances`` VRRPv2 instances, ``state MASTER``, priority 150, advert_int 1
and no peer, so it is master of all of them.  A VRID is unique per interface
and family only, so the instances are spread over eth0, eth1, ... (250 per
interface, VRIDs 1..250): eth0 is the lab's link to the LAN bridge, the others
are extra veth pairs whose far end is left alone in the LAN namespace.  Each
instance has one VIP (198.19.L.V/32 for VRID V on interface L), every second
one a second VIP (198.19.64+L.V/32).  Both daemons are started with
/dev/null bound over /dev/console in their own mount namespace: with no
syslog daemon, keepalived's -l (syslog with LOG_CONS) would otherwise write
every log line to this machine's serial console (see ConsoleMuted).

Once every VIP is in the kernel and the router has settled, each run rewrites
the config file and sends SIGHUP to the router's parent process:

* **one VIP changed**: instance N/2's first VIP goes to 198.19.128+L.V/32 (and
  back on the next run);
* **no change**: the same text again.

Then, ``--runs`` times, **VRRP process killed**: kill -9 of the VRRP child (its
pid from ``DIR/vrrp.pid``), not of the parent, which starts a new one.  Both
parents start it at once only if it ran for 60 s (keepalived's
calc_restart_delay, our supervisor's next_delay), so each kill waits for that
uptime, and for the router to be at rest, after the previous one has settled
(every instance MASTER again, every VIP in the kernel, every VRID advertising).

Measured from the HUP (from the kill), the same way for both implementations:

* the VIP swap: until the new VIP is in the kernel and the old one gone, from
  RTM_NEWADDR/RTM_DELADDR events read by a netlink listener in r1's namespace,
  stamped with CLOCK_MONOTONIC (one clock for the whole machine);
* the log: the lines the router appends, each stamped when a thread polling
  the file every 5 ms reads it: when the VRRP child logs "Reloading" (both
  do), and the last line of the reload.  Ours ends with "Reload finished in N
  usec"; keepalived 2.2.7 logs nothing at the end of a reload
  (vrrp_daemon.c: reload_vrrp_thread; its parent's "Reload complete" only
  means the children have read the file), its last lines are "(VI_n) setting
  VIPs.", one per instance, as it sets every VIP again;
* after a kill, from the log: when the parent starts a new child, when that
  child logs its last startup line (ours "Startup complete"; keepalived 2.2.7
  has none such: its last is "VRRP sockpool: [...]", one per socket, logged
  with -D at the end of vrrp_dispatcher_init), and the first and last
  "Entering MASTER STATE"; from the wire, when every VRID heard before the
  kill has been heard again;
* CPU: the CPU time of the router's processes (``/proc/PID/task/*/schedstat``,
  in ns) over a whole number of advert intervals from the HUP, less their rate
  at rest measured over the 2 s before it (after a kill: the parent's and the
  new child's).  The run ends once neither a 20 ms CPU sample over half a core
  nor a log line has been seen for 0.5 s (after a kill, also not before every
  instance is MASTER again, every VRID advertising and every VIP back);
* transitions: "Entering ... STATE" lines logged after the HUP;
* VIP losses: any VIP of both the old and the new config deleted from the
  kernel after the HUP, even if it came back (after a kill: also the longest
  any was out of the kernel);
* the longest interval between two adverts of one VRID, over every VRID on
  every interface, seen from the LAN side of the links (an AF_PACKET socket in
  the LAN namespace), how many VRIDs had an interval over the Master_Down_Interval
  of a backup of priority 100 (3.61 s: such a backup would have taken over),
  and how many priority-0 adverts were sent.

If the router cannot start with every instance at once (ours, when its
netlink replies overflow: "No buffer space available"), the bench says so,
starts it again with 250 instances and adds 250 more per reload.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import queue
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))
from failover import KINDS, machine  # noqa: E402  (the sibling bench, for the machine lines)

from tests.integration.agents import Router, wait_for  # noqa: E402
from tests.lab import Host, Lab, ip, unwind_on_signals  # noqa: E402

PER_LINK = 250                  # instances (VRIDs) per interface
PRIORITY = 150
ADVERT_INT = 1.0
SAMPLE = 0.02                   # CPU sampling period while a reload runs
BUSY = 0.5                      # a sample is busy above this share of one core
QUIET = 0.5                     # no busy sample nor log line for this long: the reload is over
BASELINE = 2.0                  # seconds of rest measured before each reload
IDLE = 0.3                      # ... and the most CPU (share of a core) taken as rest
SETTLE = 6.0                    # after the start (vrrp_garp_master_delay is 5 s)
SWAP_TIMEOUT = 30.0             # give up waiting for the VIP swap after this

# netlink (linux/rtnetlink.h, linux/if_addr.h)
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL = 1, 2
SO_RCVBUFFORCE = 33
ETH_P_ALL = 0x0003    # not ETH_P_IP: on a bridge port only ETH_P_ALL taps see frames
PACKET_OUTGOING = 4
VRRP_PROTO = 112
# A backup of priority 100 takes over after this long without an advert (RFC 3768 6.1:
# 3 x Advertisement_Interval + Skew_Time, Skew_Time = (256 - priority) / 256 s)
BACKUP_PRIORITY = 100
DOWN_INTERVAL = 3 * ADVERT_INT + (256 - BACKUP_PRIORITY) / 256 * ADVERT_INT

_FINISHED = re.compile(r"Reload finished in (\d+) usec")
_ENTERING = re.compile(r"Entering (\w+) STATE")
ENOBUFS = "No buffer space available"
# the parent's line as it starts a VRRP child: ours "Starting Keepalived_vrrp child
# process, pid=N", keepalived's "Starting VRRP child process, pid=N"
_RESPAWN = re.compile(r"Starting \S+ child process, pid=(\d+)")
# the last line a VRRP child logs as it starts: ours "Startup complete"; keepalived
# 2.2.7 has none such, its last is "VRRP sockpool: [...]" (one per socket, logged with
# -D at the end of vrrp_dispatcher_init) before the scheduler loop
STARTUP_DONE = {"agent": "Startup complete", "keepalived": "VRRP sockpool: "}
RESPAWN_UPTIME = 61.0           # a VRRP child that ran 60 s is restarted at once
STEP = 250                      # instances added per reload when a full start fails


class StartFailed(Exception):
    def __init__(self, errors: int, have: int, want: int) -> None:
        super().__init__(f"{errors} '{ENOBUFS}' errors logged, {have} of {want} VIPs up")


# -- the configuration ---------------------------------------------------------------

@dataclass(frozen=True)
class Instance:
    name: str
    link: int                   # the n of eth<n>
    vrid: int
    vips: tuple[str, ...]

    @property
    def ifname(self) -> str:
        return f"eth{self.link}"


def layout(count: int) -> list[Instance]:
    out = []
    for n in range(count):
        link, vrid = divmod(n, PER_LINK)
        vrid += 1
        vips = [f"198.19.{link}.{vrid}/32"]
        if n % 2:
            vips.append(f"198.19.{64 + link}.{vrid}/32")
        out.append(Instance(f"VI_{n + 1}", link, vrid, tuple(vips)))
    return out


def links_for(count: int) -> int:
    return -(-count // PER_LINK)


def changed_vip(inst: Instance) -> str:
    """The other value of the VIP that a "one VIP changed" run flips."""
    return f"198.19.{128 + inst.link}.{inst.vrid}/32"


def with_change(instances: list[Instance], flipped: bool) -> list[Instance]:
    """The instances, with instance N/2's first VIP moved when ``flipped``."""
    if not flipped:
        return instances
    out = list(instances)
    inst = out[len(out) // 2]
    out[len(out) // 2] = Instance(inst.name, inst.link, inst.vrid,
                                  (changed_vip(inst), *inst.vips[1:]))
    return out


def config(instances: list[Instance]) -> str:
    parts = ["global_defs {\n    router_id r1\n}\n"]
    for inst in instances:
        vips = "\n".join(f"        {v}" for v in inst.vips)
        parts.append(f"""
vrrp_instance {inst.name} {{
    state MASTER
    interface {inst.ifname}
    virtual_router_id {inst.vrid}
    priority {PRIORITY}
    advert_int {ADVERT_INT:g}
    virtual_ipaddress {{
{vips}
    }}
}}
""")
    return "".join(parts)


def vip_set(instances: list[Instance]) -> set[str]:
    return {str(ip_interface(v).ip) for inst in instances for v in inst.vips}


# -- the lab ---------------------------------------------------------------------------

def add_links(lab: Lab, host: Host, count: int) -> None:
    """eth1 .. eth<count-1> on ``host``: veths whose other end (x<n>) is up, alone, in
    the LAN namespace, so the same VRID on two interfaces never meets on one wire."""
    for n in range(1, count):
        ip("-n", lab.lan, "link", "add", f"x{n}", "type", "veth",
           "peer", "name", f"eth{n}", "netns", host.netns)
        ip("-n", lab.lan, "link", "set", f"x{n}", "up")
        ip("-n", host.netns, "link", "set", f"eth{n}", "up")
        octet = int(str(host.ip4).rsplit(".", 1)[1])
        ip("-n", host.netns, "addr", "add", f"198.18.{n}.{octet}/24", "dev", f"eth{n}")


def kernel_vips(host: Host) -> set[str]:
    """The VIPs (addresses in 198.19.0.0/16) on any interface of ``host``."""
    return {a["local"] for link in host._ip_json("addr", "show") for a in link.get("addr_info", [])
            if a["local"].startswith("198.19.")}


class ConsoleMuted(Host):
    """``host``, but the processes it starts see /dev/null as /dev/console.

    keepalived runs with -l, so it opens syslog with LOG_CONS; with no syslog
    daemon (no /dev/log, as on this machine) glibc then writes every message to
    /dev/console too, here a serial port: about 0.7 ms of kernel time a line,
    which made keepalived take 26.7 s instead of 4.0 s to start 1,000 instances.
    The bind mount is made in the mount namespace that ``ip netns exec`` gives
    each process, so the machine's console is left alone.  Both daemons are
    started so (ours logs to the console only, with -l).
    """

    def __init__(self, host: Host) -> None:
        self.__dict__.update(vars(host))

    def spawn(self, argv: list[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        muted = ["sh", "-c", 'mount --bind /dev/null /dev/console && exec "$@"', "sh", *argv]
        return super().spawn(muted, **popen_kw)


# -- tools run inside the namespaces -----------------------------------------------------

def monitor() -> None:
    """In r1's namespace: print every address added or deleted, with CLOCK_MONOTONIC."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 24)
    sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    print("ready", flush=True)
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError as err:
            if err.errno != errno.ENOBUFS:
                raise
            print(f"{time.monotonic():.6f} overrun -", flush=True)
            continue
        now = time.monotonic()
        lines = []
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind in (RTM_NEWADDR, RTM_DELADDR):
                family, prefix = struct.unpack_from("=BB", data, offset + 16)
                attrs: dict[int, bytes] = {}
                at = offset + 24
                while at + 4 <= offset + length:
                    alen, atype = struct.unpack_from("=HH", data, at)
                    if alen < 4:
                        break
                    attrs[atype] = data[at + 4:at + alen]
                    at += (alen + 3) & ~3
                raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
                if raw is not None:
                    what = "new" if kind == RTM_NEWADDR else "del"
                    lines.append(f"{now:.6f} {what} {socket.inet_ntop(family, raw)}/{prefix}")
            offset += (length + 3) & ~3
        if lines:
            print("\n".join(lines), flush=True)


def capture(ifnames: list[str]) -> None:
    """In the LAN namespace: the advert intervals of every VRID.

    Commands on stdin: ``mark`` starts a window; ``cut`` (sent once the VRRP
    process is dead) notes every VRID heard so far, frames already queued
    counted before it, and the first advert of each after it; ``?`` answers
    ``report MAX KEY KEYS ZEROS OVER RESUMED PENDING LAST``: the longest
    interval that ended in the window or is still open, the VRID it belongs
    to, how many VRIDs were heard in the window, how many priority-0 adverts,
    how many VRIDs had an interval over DOWN_INTERVAL, how many of the VRIDs
    noted at the cut were heard after it, out of how many, and the time of
    the last of those first adverts (0 if none).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 24)
    wanted = set(ifnames)
    last: dict[str, float] = {}
    mark, zeros = time.monotonic(), 0
    longest: dict[str, float] = {}          # per VRID, the intervals that ended in the window
    pending: set[str] = set()               # VRIDs heard before the cut
    resumed: dict[str, float] = {}          # ... and their first advert after it

    def drain() -> None:
        nonlocal zeros
        while True:
            try:
                frame, addr = sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            now = time.monotonic()
            if addr[0] not in wanted or addr[2] == PACKET_OUTGOING or len(frame) < 34:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != VRRP_PROTO:
                continue
            vrrp = 14 + (frame[14] & 0x0F) * 4
            if len(frame) < vrrp + 3:
                continue
            key = f"{addr[0]}/{frame[vrrp + 1]}"
            if frame[vrrp + 2] == 0:
                zeros += 1
                continue
            before = last.get(key)
            if before is not None:
                longest[key] = max(longest.get(key, 0.0), now - before)
            else:
                longest.setdefault(key, 0.0)
            last[key] = now
            if key in pending and key not in resumed:
                resumed[key] = now

    print("ready", flush=True)
    buffered = b""
    while True:
        readable, _, _ = select.select([sock, 0], [], [], 0.5)
        if sock in readable:
            drain()
        if 0 in readable:
            chunk = os.read(0, 4096)
            if not chunk:
                return
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                if line == b"mark":
                    mark, zeros = time.monotonic(), 0
                    longest.clear()
                elif line == b"cut":
                    drain()
                    pending, resumed = set(last), {}
                elif line == b"?":
                    now = time.monotonic()
                    gaps = dict(longest)
                    for key, t in last.items():
                        gaps[key] = max(gaps.get(key, 0.0), now - max(t, mark))
                    gap, gap_key = max(((g, k) for k, g in gaps.items()), default=(0.0, "-"))
                    over = sum(g > DOWN_INTERVAL for g in gaps.values())
                    print(f"report {gap:.6f} {gap_key} {len(longest)} {zeros} {over} "
                          f"{len(resumed)} {len(pending)} {max(resumed.values(), default=0.0):.6f}",
                          flush=True)


# -- watching from the bench -------------------------------------------------------------

@dataclass(frozen=True)
class AddrEvent:
    t: float
    kind: str                   # "new", "del" or "overrun"
    address: str                # without the prefix length


class AddressWatch:
    """``reload.py monitor`` in the router's namespace; a thread collects its events."""

    def __init__(self, host: Host) -> None:
        self.proc = host.spawn([sys.executable, str(HERE), "monitor"],
                               stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.events: list[AddrEvent] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, kind, address = line.split()
            self.events.append(AddrEvent(float(t), kind, address.split("/")[0]))

    def since(self, t0: float) -> list[AddrEvent]:
        return [e for e in list(self.events) if e.t >= t0]

    def first(self, kind: str, address: str, t0: float) -> float | None:
        return next((e.t for e in self.since(t0) if e.kind == kind and e.address == address),
                    None)


@dataclass(frozen=True)
class WireReport:
    gap: float                  # the longest advert interval of one VRID in the window
    key: str                    # ... that VRID ("vr1/7": the far end of eth0, VRID 7)
    heard: int                  # VRIDs heard in the window
    zeros: int                  # priority-0 adverts
    over: int                   # VRIDs with an interval over DOWN_INTERVAL
    resumed: int                # VRIDs heard before the cut and again after it
    pending: int                # VRIDs heard before the cut
    last: float                 # when the last of those was first heard after it

    @property
    def all_resumed(self) -> bool:
        return self.pending > 0 and self.resumed == self.pending


class Wire:
    """``reload.py capture`` in the LAN namespace, on the far ends of r1's links."""

    def __init__(self, lab: Lab, links: int) -> None:
        ifnames = ["vr1", *(f"x{n}" for n in range(1, links))]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.lan, sys.executable, str(HERE), "capture", *ifnames],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        lab.processes.append(self.proc)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.reports: queue.Queue[WireReport] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            _, gap, key, heard, zeros, over, resumed, pending, last = line.split()
            self.reports.put(WireReport(float(gap), key, int(heard), int(zeros), int(over),
                                        int(resumed), int(pending), float(last)))

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def mark(self) -> None:
        self._send("mark")

    def cut(self) -> None:
        self._send("cut")

    def report(self) -> WireReport:
        self._send("?")
        return self.reports.get(timeout=10)


class LogTail:
    """The lines appended to a log file from now on, each stamped with CLOCK_MONOTONIC
    when a thread polling every 5 ms first reads it.  Both daemons write a log line
    at a time (keepalived to stderr, unbuffered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        partial = b""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            while True:
                chunk = log.read()
                if chunk:
                    now = time.monotonic()
                    *complete, partial = (partial + chunk).split(b"\n")
                    self.lines.extend((now, line.decode(errors="replace")) for line in complete)
                elif self._stop.wait(0.005):
                    return

    def last(self) -> float | None:
        return self.lines[-1][0] if self.lines else None

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join()
        return self.lines


# -- CPU of the router's processes ---------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def cpu_ns(pids: Sequence[int]) -> int:
    """CPU time of every thread of ``pids`` so far, in ns (the first field of schedstat)."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total


def baseline(pids: Sequence[int], timeout: float = 300.0) -> float:
    """The CPU rate (share of one core) of ``pids`` at rest: measured over BASELINE
    seconds, a whole number of advert intervals, again until it is under IDLE."""
    end = time.monotonic() + timeout
    while True:
        t0, c0 = time.monotonic(), cpu_ns(pids)
        time.sleep(BASELINE)
        t1, c1 = time.monotonic(), cpu_ns(pids)
        rate = (c1 - c0) / 1e9 / (t1 - t0)
        if rate < IDLE:
            return rate
        if t1 > end:
            raise AssertionError(f"the router did not go idle in {timeout:.0f} s")


# -- one reload --------------------------------------------------------------------------


def wait_quiet(t0: float, c0: int, pids: Callable[[], Sequence[int]], tail: LogTail,
               done: Callable[[float], bool], too_long: str) -> float:
    """Sample the CPU of ``pids()`` until neither it nor the log has been busy for
    QUIET seconds and ``done(now)`` holds; the time of the last busy sample."""
    busy_t, prev_t, prev_c = t0, t0, c0
    while True:
        time.sleep(SAMPLE)
        t, c = time.monotonic(), cpu_ns(pids())
        if (c - prev_c) / 1e9 > BUSY * (t - prev_t):
            busy_t = t
        prev_t, prev_c = t, c
        if t - max(busy_t, tail.last() or t0) >= QUIET and done(t):
            return busy_t
        if t - t0 > 120:
            raise AssertionError(too_long)


@dataclass
class Result:
    swap: float | None = None           # HUP -> new VIP in and old VIP out (change only)
    last_line: float | None = None      # HUP -> the last line it logged for the reload
    busy: float = 0.0                   # HUP -> the last CPU sample over BUSY
    cpu: float = 0.0                    # CPU seconds of the reload (less the rate at rest)
    began: float | None = None          # HUP -> the VRRP child logs "Reloading"
    usec: int | None = None             # the N of "Reload finished in N usec" (ours)
    entering: list[str] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    gap: float = 0.0                    # longest advert interval of one VRID
    gap_key: str = "-"
    zeros: int = 0                      # priority-0 adverts
    wrong: str = ""                     # the VIPs in the kernel afterwards, if not as expected
    overrun: bool = False
    over: int = 0                       # VRIDs with an advert interval over DOWN_INTERVAL
    # the "VRRP process killed" case, each from the kill
    waited: float = 0.0                 # (before the kill, for the child's uptime to pass 60 s)
    respawned: float | None = None      # the parent logs "Starting ... child process"
    ready: float | None = None          # the new child logs its last startup line
    first_master: float | None = None   # the first "Entering MASTER STATE"
    last_master: float | None = None    # the last one
    resumed: float | None = None        # every VRID heard again on the wire
    vip_out: float = 0.0                # the longest a VIP was out of the kernel


def process_age(pid: int) -> float:
    """Seconds since ``pid`` started (/proc/PID/stat starttime against /proc/uptime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def vip_outages(events: Sequence[AddrEvent], vips: set[str],
                now: float) -> tuple[set[str], float, set[str]]:
    """Of ``vips``, those deleted in ``events``, the longest any was out of the kernel
    (until ``now`` if still out), and those still out."""
    lost: set[str] = set()
    out: dict[str, float] = {}
    longest = 0.0
    for event in events:
        if event.address not in vips:
            continue
        if event.kind == "del":
            lost.add(event.address)
            out.setdefault(event.address, event.t)
        elif event.kind == "new" and event.address in out:
            longest = max(longest, event.t - out.pop(event.address))
    longest = max([longest, *(now - t for t in out.values())])
    return lost, longest, set(out)


class Bench:
    """One router of one kind in its lab, reloaded again and again, its VRRP child killed."""

    def __init__(self, lab: Lab, kind: str, count: int) -> None:
        self.kind = kind
        self.host = lab.host("r1")
        self.instances = layout(count)
        self.flipped = False
        add_links(lab, self.host, links_for(count))
        self.watch = AddressWatch(self.host)
        self.wire = Wire(lab, links_for(count))
        self.router = Router(ConsoleMuted(self.host), config(self.instances), kind)

    @property
    def current(self) -> list[Instance]:
        return with_change(self.instances, self.flipped)

    def start(self, step: int | None = None) -> float:
        """Start the router, and wait until it holds every VIP and has logged every
        instance's MASTER entry; the time that took.

        With ``step``, start with the first ``step`` instances and add ``step``
        more at a time by reloads, each once the previous ones are up.
        """
        count = len(self.instances)
        sizes = [count] if step is None else [*range(step, count, step), count]
        t0 = time.monotonic()
        for n, size in enumerate(sizes):
            part = self.current[:size]
            self.router.conf.write_text(config(part))
            if n == 0:
                self.router.start()
            else:
                assert self.router.proc is not None
                self.router.proc.send_signal(signal.SIGHUP)
            want = vip_set(part)

            def ready(want: set[str] = want, size: int = size) -> bool:
                text = self.router.log_text()
                if ENOBUFS in text:
                    time.sleep(10)      # what it comes to
                    have = len(want & kernel_vips(self.host))
                    raise StartFailed(self.router.log_text().count(ENOBUFS), have, len(want))
                return (text.count("Entering MASTER STATE") >= size
                        and want <= kernel_vips(self.host))

            wait_for(f"{size} instances MASTER and {len(want)} VIPs on r1", ready,
                     60 + 0.1 * size, every=0.5)
            if step is not None:
                finished = _FINISHED.findall(self.router.log_text()) if n else []
                took = f" (that reload: {int(finished[-1]) / 1e6:.1f} s)" if finished else ""
                print(f"    {size} instances MASTER with every VIP "
                      f"{time.monotonic() - t0:.1f} s after the start{took}", flush=True)
        return time.monotonic() - t0

    def start_again(self) -> None:
        """A new router process (and directory) on a host without any VIP."""
        self.router.close()
        for link in range(links_for(len(self.instances))):
            ip("-n", self.host.netns, "addr", "flush", "dev", f"eth{link}", "to", "198.19.0.0/16")
        self.router = Router(ConsoleMuted(self.host), config(self.current), self.kind)

    def pids(self) -> list[int]:
        assert self.router.proc is not None
        return process_tree(self.router.proc.pid)

    def reload(self, change: bool) -> Result:
        before = self.current
        if change:
            self.flipped = not self.flipped
        after = self.current
        old_vip = str(ip_interface(before[len(before) // 2].vips[0]).ip)
        new_vip = str(ip_interface(after[len(after) // 2].vips[0]).ip)
        kept = vip_set(before) & vip_set(after)
        pids = self.pids()
        idle_rate = baseline(pids)
        self.router.conf.write_text(config(after))
        tail = LogTail(self.router.log)
        self.wire.mark()
        assert self.router.proc is not None
        t0, c0 = time.monotonic(), cpu_ns(pids)
        self.router.proc.send_signal(signal.SIGHUP)
        result = Result()

        def swapped() -> bool:
            if not change:
                return True
            added = self.watch.first("new", new_vip, t0)
            gone = self.watch.first("del", old_vip, t0)
            if added is not None and gone is not None:
                result.swap = max(added, gone) - t0
                return True
            return False

        # Over when neither the CPU nor the log has been busy for QUIET seconds.
        # keepalived's reload has pauses of up to 0.2 s between busy stretches;
        # the advert rounds of 1,000 instances take under half a core in a sample.
        try:
            busy_t = wait_quiet(t0, c0, lambda: pids, tail,
                                lambda t: swapped() or t - t0 > SWAP_TIMEOUT,
                                "the router was still busy 120 s after the HUP")
        finally:
            lines = tail.stop()
        result.busy = busy_t - t0
        result.last_line = lines[-1][0] - t0 if lines else None
        # CPU over a whole number of advert intervals from the HUP, less the rest
        # rate; long enough after the reload for every VRID to send two adverts
        window = math.ceil((busy_t - t0 + 2 * ADVERT_INT) / ADVERT_INT) * ADVERT_INT
        time.sleep(max(0.0, t0 + window - time.monotonic()))
        t1, c1 = time.monotonic(), cpu_ns(pids)
        result.cpu = (c1 - c0) / 1e9 - idle_rate * (t1 - t0)
        wire = self.wire.report()
        result.gap, result.gap_key, result.zeros, result.over = (wire.gap, wire.key, wire.zeros,
                                                                 wire.over)

        result.entering = [line for _, line in lines if "Entering" in line]
        for t, line in lines:
            # our parent logs "Reloading ..." as keepalived's does, the child "Reloading"
            if line.endswith(": Reloading") and result.began is None:
                result.began = t - t0
            finished = _FINISHED.search(line)
            if finished:
                result.usec = int(finished[1])
        events = self.watch.since(t0)
        result.lost = {e.address for e in events if e.kind == "del" and e.address in kept}
        result.overrun = any(e.kind == "overrun" for e in events)
        have, want = kernel_vips(self.host), vip_set(after)
        if have != want:
            result.wrong = (f"missing {sorted(want - have)[:5]} ({len(want - have)}), "
                            f"extra {sorted(have - want)[:5]} ({len(have - want)})")
        return result

    def vrrp_pid(self) -> int:
        """The VRRP child's pid, from its pid file (``-r DIR/vrrp.pid`` for both)."""
        assert self.router.proc is not None
        pid = int((self.router.dir / "vrrp.pid").read_text())
        if pid == self.router.proc.pid or pid not in self.pids():
            raise AssertionError(f"vrrp.pid holds {pid}, not a child of the router "
                                 f"({self.pids()})")
        return pid

    def kill(self) -> Result:
        """kill -9 of the VRRP child (not the parent, which starts a new one); measured
        from the kill until every instance is MASTER again and the router is quiet."""
        count, vips = len(self.current), vip_set(self.current)
        result = Result()
        victim = self.vrrp_pid()
        # Both parents restart a child at once only if it ran over 60 s; otherwise
        # after 1, 2, 4 ... s (keepalived's calc_restart_delay; our next_delay).
        result.waited = max(0.0, RESPAWN_UPTIME - process_age(victim))
        time.sleep(result.waited)
        idle_rate = baseline(self.pids())
        others = [pid for pid in self.pids() if pid != victim]
        tail = LogTail(self.router.log)
        self.wire.mark()
        t0, c0 = time.monotonic(), cpu_ns(others)
        os.kill(victim, signal.SIGKILL)
        wait_for("the VRRP child to die", lambda: not alive(victim), 5.0, every=0.001)
        self.wire.cut()         # the adverts heard from now on are the new child's
        done_marker = STARTUP_DONE[self.kind]

        child: list[int] = []

        def pids_now() -> list[int]:
            """The parent and the new child, from the parent's log line (no /proc scan
            every sample: that would slow the bench's own log reader)."""
            if not child:
                child.extend(int(m[1]) for _, line in tail.lines[:50]
                             if (m := _RESPAWN.search(line)))
            return [*others, *child[:1]]

        def settled(now: float) -> bool:
            lines = list(tail.lines)
            if not any(done_marker in line for _, line in lines):
                return False
            if sum("Entering MASTER STATE" in line for _, line in lines) < count:
                return False
            if vip_outages(self.watch.since(t0), vips, now)[2]:
                return False
            wire = self.wire.report()
            if not wire.all_resumed:
                return False
            result.resumed = wire.last - t0
            return True

        try:
            busy_t = wait_quiet(t0, c0, pids_now, tail, settled,
                                "not every instance MASTER 120 s after the kill")
        finally:
            lines = tail.stop()
        result.busy = busy_t - t0
        window = math.ceil((busy_t - t0 + 2 * ADVERT_INT) / ADVERT_INT) * ADVERT_INT
        time.sleep(max(0.0, t0 + window - time.monotonic()))
        t1, c1 = time.monotonic(), cpu_ns([pid for pid in self.pids() if pid != victim])
        result.cpu = (c1 - c0) / 1e9 - idle_rate * (t1 - t0)
        wire = self.wire.report()
        result.gap, result.gap_key, result.zeros, result.over = (wire.gap, wire.key, wire.zeros,
                                                                 wire.over)

        masters = [t - t0 for t, line in lines if "Entering MASTER STATE" in line]
        result.first_master, result.last_master = masters[0], masters[-1]
        result.respawned = next((t - t0 for t, line in lines if _RESPAWN.search(line)), None)
        result.ready = [t - t0 for t, line in lines if done_marker in line][-1]
        result.entering = [line for _, line in lines if "Entering" in line]
        events = self.watch.since(t0)
        result.lost, result.vip_out, _ = vip_outages(events, vips, t1)
        result.overrun = any(e.kind == "overrun" for e in events)
        have = kernel_vips(self.host)
        if have != vips:
            result.wrong = (f"missing {sorted(vips - have)[:5]} ({len(vips - have)}), "
                            f"extra {sorted(have - vips)[:5]} ({len(have - vips)})")
        return result

    def close(self) -> None:
        self.router.close()


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def describe(result: Result) -> str:
    parts = []
    if result.swap is not None:
        parts.append(f"VIP swap {result.swap:.3f} s")
    if result.respawned is not None:
        parts.append(f"new child started {_s(result.respawned)}, its startup done "
                     f"{_s(result.ready)}, MASTER from {_s(result.first_master)} to "
                     f"{_s(result.last_master)}, every VRID heard {_s(result.resumed)}")
    else:
        parts.append(f"child began {_s(result.began)}, last line {_s(result.last_line)}")
    if result.usec is not None:
        parts.append(f"'Reload finished in {result.usec} usec'")
    parts.append(f"CPU used {result.cpu:.3f} s (busy until {result.busy:.3f} s)")
    states = Counter(m[1] for m in map(_ENTERING.search, result.entering) if m)
    split = f" ({', '.join(f'{n} {s}' for s, n in states.items())})" if states else ""
    parts.append(f"{len(result.entering)} Entering{split}")
    parts.append(f"{len(result.lost)} VIPs lost")
    if result.lost:
        parts.append(f"out of the kernel up to {result.vip_out:.3f} s")
    parts.append(f"longest advert interval {result.gap:.3f} s ({result.gap_key})")
    if result.over:
        parts.append(f"{result.over} VRIDs silent over {DOWN_INTERVAL:.2f} s")
    if result.zeros:
        parts.append(f"{result.zeros} priority-0 adverts")
    if result.wrong:
        parts.append(f"kernel VIPs wrong: {result.wrong}")
    if result.overrun:
        parts.append("address monitor overrun")
    return ", ".join(parts)


CASES = {"change": "one VIP changed", "same": "no change", "kill": "VRRP process killed"}
RELOADS = frozenset({"change", "same"})
KILL = frozenset({"kill"})


def measure(kind: str, args: argparse.Namespace) -> tuple[str, dict[str, list[Result]]]:
    """Start the router, reload it ``--runs`` times per case, then kill its VRRP child
    ``--runs`` times; how it started and the results."""
    results: dict[str, list[Result]] = {case: [] for case in CASES}
    with Lab(["r1"]) as lab:
        bench = Bench(lab, kind, args.instances)
        try:
            try:
                started = f"{bench.start():.1f} s"
            except StartFailed as failed:
                # ours, when its netlink replies overflow: see bench/README.md
                print(f"  {KINDS[kind]}: start with {args.instances} instances FAILED: "
                      f"{failed}; starting again with {STEP} instances and {STEP} more per "
                      f"reload", flush=True)
                bench.start_again()
                took = bench.start(STEP)
                started = f"failed (*); in steps of {STEP}: {took:.1f} s"
            print(f"  {KINDS[kind]}: {args.instances} instances MASTER with every VIP: "
                  f"{started}", flush=True)
            time.sleep(SETTLE)      # past the second round of gratuitous ARPs
            runs: list[str] = [case for _ in range(args.runs) for case in ("change", "same")]
            runs += ["kill"] * args.runs
            for case in runs:
                result = bench.kill() if case == "kill" else bench.reload(case == "change")
                results[case].append(result)
                waited = (f" (after {result.waited:.0f} s for the child's uptime to pass "
                          f"{RESPAWN_UPTIME:.0f} s)" if result.waited >= 1 else "")
                print(f"  {KINDS[kind]:<16} {CASES[case]:<19} run {len(results[case])}"
                      f"{waited}: {describe(result)}", flush=True)
                shown = result.entering if case != "kill" else []
                for line in shown[:5]:
                    print(f"      {line}", flush=True)
        except BaseException:
            tail = "".join(bench.router.log_text().splitlines(keepends=True)[-20:])
            print(f"--- last lines of {KINDS[kind]}'s log:\n{tail}", file=sys.stderr)
            raise
        finally:
            bench.close()
    return started, results


# -- report ----------------------------------------------------------------------------------

def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} s / {max(values):.3f} s"


def _counts(values: list[int]) -> str:
    return f"{statistics.median(values):g} / {max(values)}" if values else "-"


def _given(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


ROWS: list[tuple[str, frozenset[str] | None, Callable[[list[Result]], str]]] = [
    ("HUP -> new VIP in, old VIP out", frozenset({"change"}),
     lambda rs: _seconds(_given([r.swap for r in rs]))
     + (f" ({sum(r.swap is None for r in rs)} never)" if any(r.swap is None for r in rs)
        else "")),
    ("HUP -> VRRP child logs 'Reloading'", RELOADS,
     lambda rs: _seconds(_given([r.began for r in rs]))),
    ("HUP -> its last line for the reload", RELOADS,
     lambda rs: _seconds(_given([r.last_line for r in rs]))),
    ("  'Reload finished in N usec' (ours)", RELOADS,
     lambda rs: _seconds([r.usec / 1e6 for r in rs if r.usec is not None])),
    ("CPU used by the reload", RELOADS, lambda rs: _seconds([r.cpu for r in rs])),
    ("kill -> parent starts a new VRRP child", KILL,
     lambda rs: _seconds(_given([r.respawned for r in rs]))),
    ("kill -> new child's last startup line (**)", KILL,
     lambda rs: _seconds(_given([r.ready for r in rs]))),
    ("kill -> first 'Entering MASTER STATE'", KILL,
     lambda rs: _seconds(_given([r.first_master for r in rs]))),
    ("kill -> last 'Entering MASTER STATE'", KILL,
     lambda rs: _seconds(_given([r.last_master for r in rs]))),
    ("kill -> every VRID advertises again", KILL,
     lambda rs: _seconds(_given([r.resumed for r in rs]))),
    ("CPU used by the restart", KILL, lambda rs: _seconds([r.cpu for r in rs])),
    ("'Entering ... STATE' lines", None, lambda rs: _counts([len(r.entering) for r in rs])),
    ("VIPs deleted that should stay", None, lambda rs: _counts([len(r.lost) for r in rs])),
    ("  longest a VIP was out of the kernel", KILL,
     lambda rs: _seconds([r.vip_out for r in rs])),
    ("longest advert interval (any VRID)", None, lambda rs: _seconds([r.gap for r in rs])),
    (f"VRIDs silent over {DOWN_INTERVAL:.2f} s (***)", None,
     lambda rs: _counts([r.over for r in rs])),
    ("priority-0 adverts", None, lambda rs: _counts([r.zeros for r in rs])),
    ("kernel VIPs as configured after", None,
     lambda rs: f"{sum(not r.wrong for r in rs)} of {len(rs)}"),
]

NOTES = [
    "(**) ours: 'Startup complete'; keepalived 2.2.7 logs no such line, its last as it "
    "starts is\n     'VRRP sockpool: [...]' (one per socket, with -D), before its first "
    "state change",
    f"(***) a backup of priority {BACKUP_PRIORITY} takes over after {DOWN_INTERVAL:.2f} s "
    f"without an advert\n      (Master_Down_Interval: 3 x advert_int + Skew_Time)",
]


def table(starts: dict[str, str], results: dict[str, dict[str, list[Result]]]) -> str:
    kinds = list(results)
    rows = [["case", "figure (median / max)", *(KINDS[k] for k in kinds)]]
    rows.append(["start", "all MASTER, every VIP in the kernel", *(starts[k] for k in kinds)])
    rows.append([])
    for case, label in CASES.items():
        for name, only, cell in ROWS:
            if only is not None and case not in only:
                continue
            rows.append([label, name, *(cell(results[k][case]) for k in kinds)])
        rows.append([])
    rows.pop()
    widths = [max(len(r[i]) for r in rows if r) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        if not row:
            out.append("")
            continue
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join([*out, "", *NOTES])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["monitor"]:
        monitor()
        return 0
    if argv[:1] == ["capture"]:
        capture(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000, help="VRRP instances (1000)")
    parser.add_argument("--runs", type=int, default=3,
                        help="reloads per case, and kills of the VRRP child (3)")
    parser.add_argument("--only", choices=sorted(KINDS), help="measure one implementation")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("reload.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 2 <= args.instances <= 64 * PER_LINK:
        parser.error(f"--instances: 2 to {64 * PER_LINK}")

    unwind_on_signals()

    print("\n".join(machine()))
    links = links_for(args.instances)
    print(f"\n{args.instances} VRRPv2 instances on r1 (eth0..eth{links - 1}, {PER_LINK} a link), "
          f"advert_int {ADVERT_INT:g}, state MASTER, priority {PRIORITY}, no peer; "
          f"{args.runs} runs per case\n", flush=True)
    results: dict[str, dict[str, list[Result]]] = {}
    starts: dict[str, str] = {}
    for kind in [args.only] if args.only else list(KINDS):
        starts[kind], results[kind] = measure(kind, args)
    print()
    print(table(starts, results))
    if any("(*)" in started for started in starts.values()):
        print(f"\n(*) netlink replies overflowed the socket ('{ENOBUFS}'), so VIPs were "
              f"missing; started again with {STEP} instances and {STEP} more added per reload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
