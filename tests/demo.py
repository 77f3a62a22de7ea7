"""The demonstration behind ``./lab demo``: an HA pair fails over while a client watches.

Three network namespaces on one bridge (node-a, node-b and a client) run
keepalived-py with the bundled agent/examples/ha-pair.conf, read as node-a and
as node-b (``-i``).  Each node also runs a small service that answers UDP
probes on the VIP with the node's name; the client probes the VIP every 10 ms.

The demo shows the agents' own log lines as they come, kills node-a (its agent
and its service, with SIGKILL, as a crash would), measures how long the client
went unanswered, brings node-a back and shows it take the VIP back.  Everything
is made inside the lab and removed at the end, also on failure or Ctrl-C.

Run as root from the repository's top: ``python -m tests.demo``.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.lab import Host, Lab, unwind_on_signals

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "agent" / "examples" / "ha-pair.conf"
VIPPROBE = str(REPO / "tests" / "vipprobe.py")
VIP = "198.18.0.100"
PORT = "7777"
PROBE_INTERVAL = 0.01
SILENCE = 0.1                   # a longer gap between two replies is reported as an outage
NODES = ("node-a", "node-b")
PRIORITY = {"node-a": 150, "node-b": 100}     # as the example config sets them
ADVERT_INT, DOWN_ADVERTS = 1.0, 3             # the example's advert_int, VRRPv3
# the agent's console line: "Sat Nov 21 09:59:44.730 2026: (VI_1) Entering MASTER STATE"
AGENT_LINE = re.compile(r"\w{3} \w{3} +\d+ (\d\d:\d\d:\d\d\.\d{3}) \d{4}: (.*)")
# monotonic clock (vipprobe's time stamps) to wall-clock time
WALL_OFFSET = time.time() - time.monotonic()
_print_lock = threading.Lock()


def clock(monotonic: float) -> str:
    wall = monotonic + WALL_OFFSET
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"


def say(stamp: str, who: str, text: str) -> None:
    with _print_lock:
        print(f"  {stamp}  {who:<7} {text}", flush=True)


def heading(text: str) -> None:
    with _print_lock:
        print(f"\n== {text}", flush=True)


def note(text: str) -> None:
    with _print_lock:
        print(f"   {text}", flush=True)


# -- the agents and the client ----------------------------------------------------

def _echo_agent(name: str, stream: IO[str]) -> None:
    for line in stream:
        match = AGENT_LINE.fullmatch(line.rstrip("\n"))
        if match:
            say(match[1], name, match[2])
        elif line.strip():
            say(" " * 12, name, line.rstrip())


class Node:
    """One router of the pair: keepalived-py and the service behind the VIP."""

    def __init__(self, host: Host, rundir: Path) -> None:
        self.host = host
        self.rundir = rundir            # its pid files and control socket
        self.agent: subprocess.Popen[str] | None = None
        self.service: subprocess.Popen[str] | None = None

    @property
    def name(self) -> str:
        return self.host.name

    def start(self) -> None:
        self.service = self.host.spawn([sys.executable, VIPPROBE, "serve", self.name, PORT],
                                       stdout=subprocess.PIPE, text=True)
        assert self.service.stdout is not None
        self.service.stdout.readline()          # "ready"
        self.agent = self.host.spawn(
            [sys.executable, "-m", "keepalived_py.cli", "-n", "-l", "-D", "-f", str(CONF),
             "-i", self.name, "-p", str(self.rundir / f"{self.name}.pid"),
             "-r", str(self.rundir / f"{self.name}-vrrp.pid"),
             "--control-socket", str(self.rundir / f"{self.name}.sock")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=_echo_agent, args=(self.name, self.agent.stdout),
                         daemon=True).start()

    def crash(self) -> None:
        """SIGKILL the agent and the service: nothing on the node gets to clean up."""
        for proc in (self.agent, self.service):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.agent = self.service = None

    def stop(self) -> None:
        """SIGTERM the agent (it gives the VIP up properly) and the service."""
        for proc in (self.agent, self.service):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        self.agent = self.service = None

    def vip(self) -> str:
        """Where this node's kernel has the VIP, as ``ip addr`` shows it, or ""."""
        out = self.host.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        for line in out.splitlines():
            words = line.replace("\\", " ").split()
            if f"{VIP}/" in line and "inet" in words:
                where = f"{words[words.index('inet') + 1]} on {words[1]}"
                labels = [w for w in words if w.startswith(f"{words[1]}:")]
                return where + (f" (label {labels[0]})" if labels else "")
        return ""

    def holds(self) -> str:
        return f"{self.name} has {self.vip() or 'no VIP'}"


@dataclass(frozen=True)
class Reply:
    got: float                  # monotonic time of the reply
    name: str                   # who answered


class Client:
    """``vipprobe.py watch`` on the client host; prints who answers and every silence."""

    def __init__(self, host: Host) -> None:
        self.replies: list[Reply] = []
        self.proc = host.spawn(
            [sys.executable, VIPPROBE, "watch", VIP, PORT, str(PROBE_INTERVAL), "3600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        last: Reply | None = None
        for line in self.proc.stdout:
            _seq, _sent, got, name = line.split()
            reply = Reply(float(got), name)
            self.replies.append(reply)
            if last is not None and reply.got - last.got > SILENCE:
                say(clock(reply.got), "client", f"no reply for {reply.got - last.got:.2f} s "
                                                f"(since {clock(last.got)})")
            if last is None or reply.name != last.name:
                say(clock(reply.got), "client", f"{VIP} answered by {reply.name}")
            last = reply

    def wait_for(self, name: str, after: float, timeout: float) -> Reply:
        """The first reply from ``name`` later than ``after``."""
        end = time.monotonic() + timeout
        start = 0
        while time.monotonic() < end:
            replies = self.replies[start:]
            start += len(replies)
            for reply in replies:
                if reply.name == name and reply.got > after:
                    return reply
            time.sleep(0.01)
        raise TimeoutError(f"the client got no reply from {name} within {timeout:.0f} s")

    def before(self, reply: Reply) -> Reply | None:
        """The reply that came just before ``reply``."""
        earlier = [r for r in self.replies if r.got < reply.got]
        return earlier[-1] if earlier else None


def wait_until(what: str, check: Callable[[], object], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# -- the story ------------------------------------------------------------------------

def check_config(lab: Lab) -> None:
    heading(f"the bundled config {CONF.relative_to(REPO)}, checked as each node reads it "
            "(keepalived-py -t)")
    for name in NODES:
        done = lab.host(name).run([sys.executable, "-m", "keepalived_py.cli", "-t",
                                   "-f", str(CONF), "-i", name], check=False)
        verdict = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        note(f"{name}: {verdict.split(': ', 1)[-1]}")


def story(lab: Lab, rundir: Path) -> None:
    nodes = {name: Node(lab.host(name), rundir) for name in NODES}
    a, b = nodes["node-a"], nodes["node-b"]
    down = DOWN_ADVERTS * ADVERT_INT + (256 - PRIORITY["node-b"]) * ADVERT_INT / 256
    try:
        heading("starting keepalived-py on node-a (priority 150) and node-b (priority 100);"
                " their log lines follow")
        for node in nodes.values():
            node.start()
        wait_until("node-a to become master", a.vip, 15)
        time.sleep(0.2)
        heading(f"node-a is master: {a.holds()}, {b.holds()}")
        client = Client(lab.host("client"))
        client.wait_for("node-a", 0.0, 5)
        time.sleep(1.5)

        heading("node-a crashes: kill -9 of its agent and of the service behind the VIP")
        killed = time.monotonic()
        a.crash()
        say(clock(killed), "demo", "kill -9 node-a")
        first = client.wait_for("node-b", killed, 15)
        time.sleep(0.3)
        last = client.before(first)
        heading(f"node-b took over: {b.holds()}")
        note(f"failover: node-b answered {first.got - killed:.2f} s after the kill (its "
             f"master-down timer runs {down:.2f} s from node-a's last advert, so "
             f"{down - ADVERT_INT:.2f}-{down:.2f} s after a kill)")
        if last is not None:
            note(f"outage:   {first.got - last.got:.2f} s (no reply from {clock(last.got)} "
                 f"to {clock(first.got)})")
        note(f"{a.holds()}: a killed agent cannot remove it (nor can keepalived); "
             "the client went to node-b on its gratuitous ARPs")
        time.sleep(1.0)

        heading("node-a comes back and preempts: its priority 150 beats node-b's 100")
        restarted = time.monotonic()
        a.start()
        back = client.wait_for("node-a", restarted, 15)
        time.sleep(0.3)
        gaps = [r.got - p.got for p, r in zip(client.replies, client.replies[1:], strict=False)
                if r.got > restarted]
        note(f"node-a answers again {back.got - restarted:.2f} s after its start (a backup "
             f"first, it waits out its master-down timer); longest silence at the client "
             f"during the handover: {max(gaps, default=0) * 1000:.0f} ms")
        note(f"{a.holds()}, {b.holds()}")

        heading("stopping both agents (SIGTERM)")
        for node in (a, b):
            node.stop()
        time.sleep(0.1)
    finally:
        for node in nodes.values():
            node.crash()


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    unwind_on_signals()
    started = time.monotonic()
    print("keepalived-py demo: an HA pair (node-a, node-b) and a client, each in its own "
          "network namespace on one bridge;\n"
          f"the VIP {VIP} moves between the nodes, the client probes it every "
          f"{PROBE_INTERVAL * 1000:.0f} ms.")
    lab = Lab(["node-a", "node-b", "client"])
    rundir = Path(tempfile.mkdtemp(prefix="kpy-demo-"))
    try:
        for name, host in lab.hosts.items():
            note(f"{name:<7} {host.ip4}  (namespace {host.netns})")
        check_config(lab)
        story(lab, rundir)
    except KeyboardInterrupt:
        heading("interrupted")
        return 130
    except SystemExit:
        heading("stopped by a signal")
        raise
    except TimeoutError as err:
        heading(f"FAILED: {err}")
        return 1
    finally:
        lab.close()
        shutil.rmtree(rundir, ignore_errors=True)
        heading(f"cleaned up: processes killed, namespaces removed "
                f"({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
