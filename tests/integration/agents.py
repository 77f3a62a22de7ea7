"""Routers in a lab: our agent or keepalived 2.2.7 as real processes, and a client.

Every process is started through ``Host.spawn`` so the lab kills it on close.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.lab import Host

VIPPROBE = str(Path(__file__).resolve().parent.parent / "vipprobe.py")
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


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

    def start(self) -> Router:
        if self.kind == "agent":
            argv = [sys.executable, "-m", "keepalived_py.cli", "-n", "-l", "-D",
                    "-f", str(self.conf)]
        else:
            d = self.dir
            argv = [KEEPALIVED, "-n", "-l", "-D", "-P", "-f", str(self.conf),
                    "-p", str(d / "ka.pid"), "-r", str(d / "vrrp.pid"),
                    "-c", str(d / "chk.pid"), "-b", str(d / "bfd.pid")]
        with self.log.open("a") as log:
            self.proc = self.host.spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Graceful with SIGTERM (waits for the exit), or SIGKILL of the whole group."""
        if self.proc is None:
            return
        if sig == signal.SIGKILL:
            import os
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            # ip netns exec has exec'd the router: the pid is the router itself
            self.proc.send_signal(sig)
        self.proc.wait(timeout)
        self.proc = None

    def has(self, vip: str) -> bool:
        return any(a.split("/")[0] == vip for a in self.host.addresses())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


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
