"""Routers in a lab: our agent or keepalived 2.2.7 as real processes, and a client.

Every process is started through ``Host.spawn`` so the lab kills it on close.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from pathlib import Path

from tests.lab import Host, Lab

VIPPROBE = str(Path(__file__).resolve().parent.parent / "vipprobe.py")
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
# the agent's console log line: "Sat Nov 21 09:59:44.730 2026: (VI_51) Entering MASTER STATE"
_LOG_LINE = re.compile(r"(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d)\.(\d{3}) (\d{4}): (.*)")


def wait_for(what: str, check: Callable[[], object], timeout: float = 10.0,
             every: float = 0.02) -> object:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Router:
    """A VRRP router process on a lab host; ``kind`` is "agent" or "keepalived"."""

    def __init__(self, host: Host, config: str, kind: str = "agent") -> None:
        self.host, self.kind, self.config = host, kind, config
        self.dir = Path(tempfile.mkdtemp(prefix=f"kpy-{host.name}-"))
        self.conf = self.dir / "keepalived.conf"
        self.conf.write_text(config)
        self.log = self.dir / "log"
        self.proc: subprocess.Popen | None = None
        self.extra_args: list[str] = []

    def start(self) -> Router:
        if self.kind == "agent":
            argv = [sys.executable, "-m", "keepalived_py.cli", "-n", "-l", "-D",
                    "-f", str(self.conf), *self.private_files(), *self.extra_args]
        else:
            d = self.dir
            # A killed keepalived leaves its pid files, and 2.2.7 then refuses
            # to start ("daemon is already running").
            for stale in ("ka.pid", "vrrp.pid", "chk.pid", "bfd.pid"):
                (d / stale).unlink(missing_ok=True)
            argv = [KEEPALIVED, "-n", "-l", "-D", "-P", "-f", str(self.conf),
                    "-p", str(d / "ka.pid"), "-r", str(d / "vrrp.pid"),
                    "-c", str(d / "chk.pid"), "-b", str(d / "bfd.pid")]
        # keepalived writes its dumps to $TMPDIR: each router gets its own
        env = {**os.environ, "TMPDIR": str(self.dir)}
        with self.log.open("a") as log:
            self.proc = self.host.spawn(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def private_files(self) -> list[str]:
        """Pid files, control socket and maintenance file of our own: agents in a lab never meet."""
        return ["-p", str(self.dir / "agent.pid"), "-r", str(self.dir / "vrrp.pid"),
                "-c", str(self.dir / "checkers.pid"), "-b", str(self.dir / "bfd.pid"),
                "--control-socket", str(self.control),
                "--maintenance-file", str(self.dir / "maintenance.json")]

    @property
    def control(self) -> Path:
        return self.dir / "control.sock"

    def dump_file(self, name: str) -> Path:
        """Where a dump lands (TMPDIR is the router's dir).  An agent of ours in a lab
        host's namespace tags its files with the namespace (README: several agents on
        one host): ``keepalived.data`` is ``keepalived.NETNS.data``."""
        if self.kind != "agent":
            return self.dir / name
        stem, ext = name.rsplit(".", 1)
        return self.dir / f"{stem}.{self.host.netns}.{ext}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Graceful with SIGTERM (waits for the exit), or SIGKILL of the whole group."""
        if self.proc is None:
            return
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            # ip netns exec has exec'd the router: the pid is the router itself
            self.proc.send_signal(sig)
        self.proc.wait(timeout)
        self.proc = None

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def running(self) -> bool:
        return self.proc is not None

    def has(self, vip: str) -> bool:
        wanted = ip_address(vip)
        return any(ip_address(a.split("/")[0]) == wanted for a in self.host.addresses())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def messages(self, since: float = 0.0) -> list[tuple[float, str]]:
        """The agent's log messages with their wall-clock times, from ``since`` on."""
        found = []
        for line in self.log_text().splitlines():
            match = _LOG_LINE.fullmatch(line)
            if match is None:
                continue
            stamp = time.mktime(time.strptime(f"{match[1]} {match[3]}", "%a %b %d %H:%M:%S %Y"))
            stamp += int(match[2]) / 1000
            if stamp >= since - 0.001:
                found.append((stamp, match[4]))
        return found

    def times(self, text: str, since: float = 0.0) -> list[float]:
        """Wall-clock times (``time.time()``) of the agent's log lines containing ``text``.

        The agent stamps its lines to the millisecond, truncated: a line logged
        at ``since`` may read up to 1 ms earlier, hence the allowance.
        """
        return [stamp for stamp, message in self.messages(since) if text in message]

    def wait_log(self, text: str, since: float = 0.0, timeout: float = 10.0) -> float:
        """The time of the first log line containing ``text`` at or after ``since``."""
        found = wait_for(f"{self.name} to log {text!r}", lambda: self.times(text, since),
                         timeout)
        assert isinstance(found, list)
        return found[0]

    def close(self) -> None:
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Probe:
    """A client sending a numbered UDP probe to a VIP every ``interval`` seconds."""

    def __init__(self, client: Host, vip: str, interval: float = 0.02) -> None:
        self.interval = interval
        self.replies: list[tuple[int, float, float, str]] = []     # seq, sent, answered, who
        self.proc = client.spawn([sys.executable, VIPPROBE, "watch", vip, "7777", str(interval),
                                  "3600"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seq, sent, got, who = line.split()
            self.replies.append((int(seq), float(sent), float(got), who))

    def wait_answered(self, timeout: float = 10.0) -> None:
        wait_for("the client's first reply", lambda: self.replies, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)
        self._reader.join(5)

    def since(self, start: float) -> list[tuple[int, float, float, str]]:
        """Replies to probes sent at or after ``start`` (time.monotonic())."""
        return [r for r in self.replies if r[1] >= start]

    def longest_gap(self, start: float = 0.0) -> float:
        """The longest time between two replies (to probes sent after ``start``)."""
        got = sorted(r[2] for r in self.since(start))
        return max((b - a for a, b in zip(got, got[1:], strict=False)), default=0.0)

    def lost(self, start: float = 0.0) -> int:
        """Probes sent after ``start`` (up to the last answered one) that got no reply."""
        seqs = sorted({r[0] for r in self.since(start)})
        return (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0

    def who(self, start: float = 0.0) -> set[str]:
        return {r[3] for r in self.since(start)}


class FifoReader:
    """A notify FIFO made and read by the test, without blocking (so a writer never
    waits and no line is lost before the first read)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buffer = b""

    def lines(self) -> list[str]:
        try:
            while chunk := os.read(self.fd, 1 << 16):
                self.buffer += chunk
        except BlockingIOError:
            pass
        return self.buffer.decode(errors="replace").splitlines()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def holders(routers: Iterable[Router], vip: str) -> list[str]:
    """The names of the running routers whose host holds ``vip``.

    A router killed with SIGKILL cannot remove its addresses (neither can
    keepalived): its host keeps the VIP, so only running ones are asked.
    """
    return [r.name for r in routers if r.running and r.has(vip)]


def link_local(host: Host, ifname: str = "eth0") -> IPv6Address:
    """The host's IPv6 link-local address: its VRRP source address for IPv6."""
    for text in host.addresses(ifname):
        address = ip_address(text.split("/")[0])
        if address.version == 6 and address.is_link_local:
            return address
    raise LookupError(f"{host.name}: no link-local address on {ifname}")


def hear_multicast(lab: Lab, name: str, on: bool) -> None:
    """Stop (or restart) the bridge flooding multicast to host ``name``.

    Without it the host hears no VRRP multicast (nor IPv6 neighbour
    solicitations): two routers partitioned like this both become master.
    """
    done = subprocess.run(["bridge", "-n", lab.lan, "link", "set", "dev", f"v{name}",
                           "mcast_flood", "on" if on else "off"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bridge link set v{name}: {done.stderr.strip()}")


_SNIFF = r"""
import socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("eth0", 0))
sock.settimeout(0.05)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        frame, addr = sock.recvfrom(2048)
    except TimeoutError:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    if frame[12:14] == b"\x08\x00" and frame[23] == 112:
        family, src, dst, vrrp = socket.AF_INET, frame[26:30], frame[30:34], \
            frame[14 + (frame[14] & 0xF) * 4:]
    elif frame[12:14] == b"\x86\xdd" and frame[20] == 112:
        family, src, dst, vrrp = socket.AF_INET6, frame[22:38], frame[38:54], frame[54:]
    else:
        continue
    print(socket.inet_ntop(family, src), socket.inet_ntop(family, dst), vrrp[0] >> 4,
          vrrp[1], vrrp[2], flush=True)
"""


@dataclass(frozen=True)
class Seen:
    """A VRRP packet seen on the wire."""

    src: str
    dst: str
    version: int
    vrid: int
    priority: int


def sniff_vrrp(host: Host, seconds: float) -> list[Seen]:
    """Every VRRP packet ``host`` receives on eth0 for ``seconds``."""
    done = host.run([sys.executable, "-c", _SNIFF, str(seconds)])
    return [Seen(src, dst, int(version), int(vrid), int(priority))
            for src, dst, version, vrid, priority in
            (line.split() for line in done.stdout.splitlines())]


def serve(host: Host) -> subprocess.Popen:
    """Answer probes on ``host`` with its name (the VIP tells us who holds it)."""
    proc = host.spawn([sys.executable, VIPPROBE, "serve", host.name],
                      stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def who_answers(client: Host, vip: str, timeout: float = 2.0) -> str | None:
    done = client.run([sys.executable, VIPPROBE, "ask", vip, "7777", str(timeout)],
                      check=False)
    return done.stdout.strip() or None


def vrrp_config(name: str, *, vrid: int = 51, priority: int = 100, vip: str = "198.18.0.100/24",
                advert_int: str = "1", version: int = 2, extra: str = "",
                state: str = "BACKUP", interface: str = "eth0", globals_: str = "") -> str:
    return f"""
global_defs {{
    router_id {name}
    vrrp_garp_master_delay 1
    {globals_}
}}
vrrp_instance VI_{vrid} {{
    state {state}
    interface {interface}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_int}
    version {version}
    {extra}
    virtual_ipaddress {{
        {vip}
    }}
}}
"""
