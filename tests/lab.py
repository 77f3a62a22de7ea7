"""A lab of network namespaces for integration tests.

Each host is a namespace with ``lo`` and ``eth0``; every ``eth0`` is one end of
a veth pair whose other end (``v<host>``) sits on bridge ``br0`` in a LAN
namespace.  Nothing is created in the caller's own namespace, so labs never
touch the machine's interfaces and several labs can run side by side.

``Host.addresses`` and ``Host.neighbour_mac`` read the host through the ``ip``
command, so they work from anywhere, also inside a running asyncio loop.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import TracebackType
from typing import Any

PREFIX = "kpy"
LAN = "lan"
BRIDGE = "br0"
# the peer is named "v<host>": the whole name must fit in IFNAMSIZ - 1
_HOST_NAME = re.compile(r"[a-z0-9-]{1,14}")


def ip(*args: str) -> None:
    """Run ``ip ARGS``; a failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def unwind_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind through ``finally``, so a lab is always removed.

    SIGINT too, as it may arrive ignored (a background job of a script).  Only
    in this process: pyroute2 forks helpers that inherit the handlers and are
    ended with SIGTERM; a helper that unwound our stack would remove the lab
    under our feet, so it just exits.
    """
    main_pid = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


class Host:
    """One host of a lab: a namespace with ``eth0`` on the LAN."""

    def __init__(self, lab: Lab, name: str, index: int) -> None:
        self.lab = lab
        self.name = name
        self.netns = f"{PREFIX}-{lab.tag}-{name}"
        self.ip4 = IPv4Address(f"198.18.0.{11 + index}")
        self.ip6 = IPv6Address(f"2001:db8::{11 + index}")
        self.mac = b""

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    def spawn(self, argv: list[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace; the lab kills it on close."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                start_new_session=True, **popen_kw)
        self.lab.processes.append(proc)
        return proc

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace and wait; text, captured, checked."""
        kw.setdefault("check", True)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], **kw)

    def _ip_json(self, *args: str) -> list[dict[str, Any]]:
        # The ip command, not pyroute2: pyroute2 forks to enter a namespace and
        # that fork times out on a loaded machine, while tests poll these often.
        done = subprocess.run(["ip", "-j", "-n", self.netns, *args], capture_output=True,
                              text=True, timeout=30)
        if done.returncode != 0:
            raise LookupError(f"{self.netns}: ip {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout or "[]")

    def addresses(self, ifname: str = "eth0") -> set[str]:
        """The addresses on ``ifname`` as ``"198.18.0.100/24"`` strings."""
        links = self._ip_json("addr", "show", "dev", ifname)
        return {f"{a['local']}/{a['prefixlen']}" for link in links
                for a in link.get("addr_info", [])}

    def neighbour_mac(self, ip: str) -> bytes | None:
        """The MAC this host's ARP/NDP cache holds for ``ip``, if it has a usable one."""
        wanted = ip_address(ip)
        for entry in self._ip_json("neigh", "show"):
            lladdr = entry.get("lladdr")
            if lladdr is None or {"FAILED", "INCOMPLETE"} & set(entry.get("state", [])):
                continue
            if ip_address(entry["dst"]) == wanted:
                return bytes.fromhex(lladdr.replace(":", ""))
        return None


class Lab:
    """Hosts on one bridge; everything made here is removed by ``close()``."""

    def __init__(self, hosts: Sequence[str], tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.lan = f"{PREFIX}-{self.tag}-{LAN}"
        self.hosts: dict[str, Host] = {}
        self.processes: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        for name in hosts:
            if not _HOST_NAME.fullmatch(name) or name == LAN or hosts.count(name) > 1:
                raise ValueError(f"bad or repeated host name {name!r}")
        try:
            self._add_netns(self.lan)
            ip("-n", self.lan, "link", "add", BRIDGE, "type", "bridge")
            ip("-n", self.lan, "link", "set", BRIDGE, "up")
            for index, name in enumerate(hosts):
                self.hosts[name] = self._add_host(name, index)
        except BaseException:
            self.close()
            raise

    def _add_netns(self, netns: str) -> None:
        ip("netns", "add", netns)
        self._namespaces.append(netns)
        ip("-n", netns, "link", "set", "lo", "up")

    def _add_host(self, name: str, index: int) -> Host:
        host = Host(self, name, index)
        self._add_netns(host.netns)
        peer = f"v{name}"
        # made inside the LAN namespace, so no name ever appears in ours
        ip("-n", self.lan, "link", "add", peer, "type", "veth",
           "peer", "name", "eth0", "netns", host.netns)
        ip("-n", self.lan, "link", "set", peer, "master", BRIDGE, "up")
        # link-local addresses usable at once (VRRP over IPv6 sends from them)
        host.run(["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("-n", host.netns, "addr", "add", f"{host.ip4}/24", "dev", "eth0")
        ip("-n", host.netns, "addr", "add", f"{host.ip6}/64", "dev", "eth0", "nodad")
        link = host._ip_json("link", "show", "dev", "eth0")[0]
        host.mac = bytes.fromhex(link["address"].replace(":", ""))
        return host

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def cable(self, name: str, up: bool) -> None:
        """Unplug (``up=False``) or plug back the host's cable: its eth0 loses carrier."""
        ip("-n", self.lan, "link", "set", f"v{self.hosts[name].name}",
           "up" if up else "down")

    def close(self) -> None:
        """Kill every process started here and delete every namespace; safe to repeat."""
        for proc in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.processes.clear()
        for netns in reversed(self._namespaces):
            # strays that left the process group still live in the namespace
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                _kill(int(pid))
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
