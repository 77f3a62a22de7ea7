"""The demonstration behind ``./lab demo``: a load-balanced web service behind a VIP.

Two directors (node-a, node-b) run keepalived-py with the bundled
agent/examples/lb-pair.conf, read as node-a and as node-b (``-i``): VRRP holds the
VIP on one of them, and on both the checker process health-checks three real web
servers (busybox httpd) and programs the kernel's IPVS table (direct routing).  A
client fetches the VIP over and over, each request on a new connection
(tests/webclient.py).  Every host is a network namespace on one bridge
(tests/lab.py).

The story, narrated with time stamps and the agents' own log lines: the client's
requests spread over the real servers; web2's web server stops, the checkers take
it out of the pool, it comes back and is put back; node-a, the master, dies
(kill -9 of its agent, its cable pulled) and node-b takes the VIP with an IPVS
table its own checker already filled; node-a comes back and takes the VIP back.
Every figure (how long each change took, what the client saw) is measured, shown
at the end and, with ``--results FILE``, written as JSON (tests/integration/
test_demo.py asserts on it).

IPVS needs a kernel that has it.  Where this machine's kernel has none (a
container, this project's CI), the same demo runs inside the throw-away VM of
tests/vm/ (Debian's kernel over this machine's root, read-only) and its output is
shown as it comes.  Everything is made inside the lab (or the VM) and removed at
the end, also on failure or Ctrl-C.

Run as root from the repository's top: ``python -m tests.demo [--quick]``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.lab import Host, Lab, unwind_on_signals

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "agent" / "examples" / "lb-pair.conf"
WEBCLIENT = str(REPO / "tests" / "webclient.py")
VIP = "198.18.0.100"
PORT = 80
DIRECTORS = ("node-a", "node-b")
WEBS = ("web1", "web2", "web3")
FAILING = "web2"                               # the real server whose web server stops
# the lab numbers its hosts 198.18.0.11, .12 ... in this order: the real servers get
# .13-.15, the addresses lb-pair.conf lists
HOSTS = (*DIRECTORS, *WEBS, "client")
PRIORITY = {"node-a": 150, "node-b": 100}     # as the example config sets them
ADVERT_INT, DOWN_ADVERTS = 1.0, 3             # the example's advert_int, VRRPv3
# the agent's console line: "Sat Nov 21 09:59:44.730 2026: (VI_1) Entering MASTER STATE"
AGENT_LINE = re.compile(r"(\w{3} \w{3} +\d+ (\d\d:\d\d:\d\d)\.(\d{3}) (\d{4})): (.*)")
# ipvsadm -Ln: "  -> 198.18.0.13:80               Route   1      0          0"
IPVSADM_DEST = re.compile(r"\s*->\s+(\S+):(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)")
# the VM's whole run: the demo inside takes four to six minutes, longer on a loaded machine
VM_TIMEOUT = 1200.0
_print_lock = threading.Lock()


@dataclass(frozen=True)
class Pace:
    """How fast the story goes: on this machine, or in the VM where Python runs 10-40
    times slower (an emulated CPU) and every time limit is generous."""

    where: str                  # "host" or "vm"
    interval: float             # the client starts a request this often
    timeout: float              # and gives each this long
    silence: float              # a longer gap between two answered requests is reported
    scene: float                # how long the client runs between two events
    start: float                # time limit for an agent to start
    change: float               # time limit for a change (a check, a failover)


def pace_for(where: str, quick: bool) -> Pace:
    if where == "vm":
        return Pace("vm", interval=0.1, timeout=3.0, silence=1.0, scene=3.0 if quick else 6.0,
                    start=300.0, change=90.0)
    return Pace("host", interval=0.02, timeout=1.0, silence=0.25, scene=1.5 if quick else 4.0,
                start=60.0, change=30.0)


# -- printing ---------------------------------------------------------------------------

def clock(monotonic: float) -> str:
    """A monotonic time (the client's and our stamps) as wall-clock time of day."""
    wall = monotonic + time.time() - time.monotonic()
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


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread(counts: Counter[str]) -> str:
    """The answers per real server, in the order of WEBS: "web1 34, web2 33, web3 33"."""
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in WEBS)


def wait_until(what: str, check: Callable[[], object], timeout: float,
               every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# -- the directors ------------------------------------------------------------------------

@dataclass(frozen=True)
class LogLine:
    at: float                   # monotonic time of the agent's own stamp
    text: str


def _agent_time(match: re.Match[str]) -> float:
    """The agent's stamp ("Sat Nov 21 09:59:44.730 2026") on our monotonic clock."""
    try:
        wall = time.mktime(time.strptime(f"{match[1][:-9]} {match[4]}",
                                         "%a %b %d %H:%M:%S %Y")) + int(match[3]) / 1000
    except ValueError:
        return time.monotonic()             # an unexpected stamp: when we read it
    return wall - time.time() + time.monotonic()


class Director:
    """One director: keepalived-py (its parent, VRRP and checker processes)."""

    def __init__(self, host: Host, rundir: Path) -> None:
        self.host = host
        self.rundir = rundir            # its pid files and control socket
        self.agent: subprocess.Popen[str] | None = None
        self.lines: list[LogLine] = []

    @property
    def name(self) -> str:
        return self.host.name

    def start(self) -> None:
        run = self.rundir / self.name
        self.agent = self.host.spawn(
            [sys.executable, "-m", "keepalived_py.cli", "-n", "-l", "-D", "-f", str(CONF),
             "-i", self.name, "-p", f"{run}.pid", "-r", f"{run}-vrrp.pid",
             "-c", f"{run}-checkers.pid", "--control-socket", f"{run}.sock"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._echo, args=(self.agent.stdout,), daemon=True).start()

    def _echo(self, stream: IO[str]) -> None:
        for line in stream:
            match = AGENT_LINE.fullmatch(line.rstrip("\n"))
            if match:
                self.lines.append(LogLine(_agent_time(match), match[5]))
                say(f"{match[2]}.{match[3]}", self.name, match[5])
            elif line.strip():
                self.lines.append(LogLine(time.monotonic(), line.strip()))
                say(" " * 12, self.name, line.rstrip())

    def logged(self, text: str, after: float) -> LogLine | None:
        """The first log line containing ``text`` stamped after ``after``."""
        return next((line for line in list(self.lines) if line.at > after and text in line.text),
                    None)

    def wait_log(self, text: str, after: float, timeout: float) -> LogLine:
        wait_until(f"{self.name} to log {text!r}",
                   lambda: self.logged(text, after) is not None, timeout)
        line = self.logged(text, after)
        assert line is not None
        return line

    def crash(self) -> None:
        """SIGKILL the agent's process group (its parent, VRRP and checker processes):
        nothing gets to clean up."""
        if self.agent is not None:
            try:
                os.killpg(self.agent.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.agent.wait()
        self.agent = None

    def stop(self, timeout: float) -> None:
        """SIGTERM: the agent gives the VIP up and takes its services out of IPVS."""
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout)
            except subprocess.TimeoutExpired:
                self.crash()
        self.agent = None

    def vip(self) -> bool:
        return f"{VIP}/" in " ".join(self.host.addresses())

    def holds(self) -> str:
        return f"{self.name} {'holds' if self.vip() else 'does not hold'} {VIP}"

    def pool(self) -> dict[str, int]:
        """The real servers in this director's IPVS table for the VIP and their weights,
        by name, as ipvsadm reads them ({} without the service)."""
        done = self.host.run(["ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}"], check=False)
        names = {str(self.host.lab.host(web).ip4): web for web in WEBS}
        pool = {}
        for line in done.stdout.splitlines():
            match = IPVSADM_DEST.match(line)
            if match:
                pool[names.get(match[1], match[1])] = int(match[4])
        return pool

    def connections(self) -> int:
        """How many connections this director's IPVS has forwarded to the service."""
        done = self.host.run(["ipvsadm", "-Ln", "--stats", "--exact", "-t", f"{VIP}:{PORT}"],
                             check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            if words[:2] == ["TCP", f"{VIP}:{PORT}"]:
                return int(words[2])
        return 0


def pools(directors: Iterable[Director]) -> str:
    """"node-a: web1 web2 web3 | node-b: web1 web2 web3"."""
    return " | ".join(f"{d.name}: {' '.join(sorted(d.pool())) or '(empty)'}"
                      for d in directors)


# -- the real servers ---------------------------------------------------------------------

class WebServer:
    """A real server: busybox httpd answering its name, the VIP on its loopback."""

    def __init__(self, host: Host, docroot: Path) -> None:
        self.host = host
        self.docroot = docroot
        self.proc: subprocess.Popen[bytes] | None = None

    def setup(self) -> None:
        self.docroot.mkdir(parents=True)
        (self.docroot / "index.html").write_text(f"{self.host.name}\n")
        # Direct routing: the director hands the client's packet on unchanged (to the
        # VIP) to this host's MAC, so the host must take the VIP as its own, and
        # must never answer ARP for it, or clients would bypass the directors.
        self.host.run(["sh", "-c",
                       "sysctl -qw net.ipv4.conf.all.arp_ignore=1 "
                       "net.ipv4.conf.all.arp_announce=2 "
                       f"&& ip addr add {VIP}/32 dev lo"])

    def start(self) -> None:
        self.proc = self.host.spawn(["busybox", "httpd", "-f", "-p", str(PORT),
                                     "-h", str(self.docroot)])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


# -- the client ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    sent: float                 # monotonic
    done: float
    outcome: str                # the real server's name, or "!why" (webclient.py)

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("!")


@dataclass
class Client:
    """tests/webclient.py on the client host: every request, and every silence, seen."""

    host: Host
    pace: Pace
    requests: list[Request] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)       # sent, no outcome yet (t_sent)
    counted_until: float = 0.0
    proc: subprocess.Popen[str] | None = None
    _last_answer: float = 0.0
    _last_failure: float = 0.0

    def start(self) -> None:
        self.proc = self.host.spawn(
            [sys.executable, WEBCLIENT, VIP, str(PORT), str(self.pace.interval),
             str(self.pace.timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def stop(self) -> None:
        """Close its stdin: it sends no more, lets the requests under way end, exits."""
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(self.pace.timeout + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.2)                 # its last lines, through the reader thread
        self.pending.clear()            # what never ended has no outcome to wait for
        self.proc = None

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if words[1:] == ["sent"]:
                self.pending.add(words[0])
                continue
            try:
                sent, done, outcome = words
                request = Request(float(sent), float(done), outcome)
            except ValueError:
                continue                # not a request's line: nothing to count
            self.pending.discard(sent)
            self.requests.append(request)
            if not request.ok:
                # one line for the first failure after a quiet second, not one a request
                if request.done - self._last_failure > 1.0:
                    say(clock(request.done), "client",
                        f"a request failed ({outcome[1:]}); more may follow")
                self._last_failure = request.done
            elif self._last_answer and request.done - self._last_answer > self.pace.silence:
                say(clock(request.done), "client",
                    f"answered again, after {request.done - self._last_answer:.2f} s "
                    f"without an answer (since {clock(self._last_answer)})")
            if request.ok:
                self._last_answer = max(self._last_answer, request.done)

    def between(self, start: float, end: float) -> list[Request]:
        """The requests sent from ``start`` up to ``end``."""
        return [r for r in list(self.requests) if start <= r.sent < end]

    def failed(self, start: float, end: float) -> list[Request]:
        return [r for r in self.between(start, end) if not r.ok]

    def outcomes(self, start: float, end: float) -> dict[str, int]:
        """What the requests sent from ``start`` up to ``end`` got: {"web1": 30, "!refused": 2}."""
        return dict(Counter(r.outcome for r in self.between(start, end)))

    def silence(self, start: float, end: float) -> tuple[float, float, float]:
        """The longest time without an answer from ``start`` to ``end``, as the client
        lives it (between two answers received): (length, from, to)."""
        answers = sorted(r.done for r in list(self.requests) if r.ok and r.done < end)
        before = [t for t in answers if t <= start][-1:]
        times = before + [t for t in answers if t > start]
        gaps = [(y - x, x, y) for x, y in zip(times, times[1:], strict=False)]
        return max(gaps, default=(0.0, start, start))

    def wait_answer(self, after: float, timeout: float) -> Request:
        """The first answered request sent after ``after``."""
        found: list[Request] = []

        def answered() -> bool:
            found[:] = [r for r in self.between(after, float("inf")) if r.ok][:1]
            return bool(found)
        wait_until("an answer at the client", answered, timeout)
        return found[0]

    def settle(self, end: float) -> None:
        """Wait until every request sent before ``end`` has its outcome (each has at most
        ``timeout``; a line still in the pipe is a moment more)."""
        wait_until("the client's requests to end",
                   lambda: all(float(sent) >= end for sent in list(self.pending)),
                   self.pace.timeout + 5, every=0.05)

    def tally(self) -> Counter[str]:
        """Print and return the outcomes of the requests sent since the last tally."""
        end = time.monotonic()
        self.settle(end)
        window = self.between(self.counted_until, end)
        counts = Counter(r.outcome for r in window)
        answered = sum(n for outcome, n in counts.items() if not outcome.startswith("!"))
        failures = {outcome[1:]: n for outcome, n in counts.items() if outcome.startswith("!")}
        if window:
            sent = [r.sent for r in window]
            text = (f"{plural(len(window), 'request')} sent {clock(min(sent))}-"
                    f"{clock(max(sent))}: {answered} answered ({spread(counts)})")
            if failures:
                text += ", " + ", ".join(f"{n} failed ({why})" for why, n in failures.items())
            say(clock(time.monotonic()), "client", text)
        self.counted_until = end
        return counts


# -- the story ----------------------------------------------------------------------------

@dataclass
class Results:
    """What the demo measured; ``--results`` writes it as JSON for the test."""

    where: str
    quick: bool
    steps: list[str] = field(default_factory=list)        # the scenes that completed
    figures: dict[str, Any] = field(default_factory=dict)


def check_config(lab: Lab) -> None:
    heading(f"the bundled config {CONF.relative_to(REPO)}, checked as each director reads it "
            "(keepalived-py -t)")
    # both at once: in the VM each Python start takes seconds
    tests = {name: lab.host(name).spawn(
        [sys.executable, "-m", "keepalived_py.cli", "-t", "-f", str(CONF), "-i", name],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in DIRECTORS}
    for name, proc in tests.items():
        _, err = proc.communicate()
        verdict = (err.strip().splitlines() or ["(no output)"])[-1]
        note(f"{name}: {verdict.split(': ', 1)[-1]}")


def show_table(director: Director) -> None:
    done = director.host.run(["ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}"], check=False)
    note(f"{director.name}'s IPVS table (ipvsadm -Ln):")
    for line in done.stdout.splitlines():
        if not line.startswith("IP Virtual Server version"):
            note(f"    {line.rstrip()}")


def how(requests: list[Request]) -> dict[str, int]:
    """Failed requests by why: {"refused": 12}."""
    return dict(Counter(r.outcome[1:] for r in requests))


def describe(requests: list[Request]) -> str:
    return ", ".join(f"{n} {why}" for why, n in how(requests).items()) or "none"


def scene(client: Client, pace: Pace, factor: float = 1.0) -> Counter[str]:
    time.sleep(pace.scene * factor)
    return client.tally()


def story(lab: Lab, rundir: Path, pace: Pace, results: Results) -> None:
    directors = {name: Director(lab.host(name), rundir) for name in DIRECTORS}
    a, b = directors["node-a"], directors["node-b"]
    webs = {name: WebServer(lab.host(name), rundir / name) for name in WEBS}
    client = Client(lab.host("client"), pace)
    figures = results.figures

    heading("real servers web1, web2, web3: busybox httpd on port 80, each answering its "
            f"name; {VIP} on their loopback (direct routing)")
    for web in webs.values():
        web.setup()
        web.start()
    note(", ".join(f"{name} {web.host.ip4}" for name, web in webs.items()))

    heading("starting keepalived-py on node-a (priority 150) and node-b (priority 100): VRRP "
            "for the VIP, a checker process programming IPVS; their log lines follow")
    if pace.where == "vm":
        note("(in the VM each agent takes a minute or so to start: Python on an emulated CPU)")
    started = time.monotonic()
    for director in directors.values():
        director.start()
    full = set(WEBS)
    # the log first: a poll runs a program, and in the VM the agents need the CPU
    a.wait_log("Entering MASTER STATE", started, pace.start)
    wait_until("node-a to hold the VIP", a.vip, pace.change)
    wait_until("both IPVS tables to hold the three real servers",
               lambda: set(a.pool()) == full and set(b.pool()) == full, pace.start, every=0.5)
    figures["startup"] = round(time.monotonic() - started, 2)
    heading(f"node-a is master and holds {VIP}; both directors' checkers filled their IPVS "
            "tables (the backup's too: it is ready before it is needed)")
    show_table(a)
    note(pools(directors.values()))
    results.steps.append("started")

    heading(f"the client fetches http://{VIP}/ every {pace.interval * 1000:.0f} ms, "
            "a new connection each time; IPVS spreads them (round robin)")
    client.start()
    client.wait_answer(0.0, pace.change)
    client.counted_until = time.monotonic()
    counts = scene(client, pace, 1.5)
    figures["spread"] = {name: counts.get(name, 0) for name in WEBS}
    results.steps.append("spread")

    # -- a real server fails ------------------------------------------------------------
    heading(f"{FAILING}'s web server stops: its checkers fail, it is taken out of both pools")
    stopped = time.monotonic()
    webs[FAILING].stop()
    say(clock(stopped), "demo", f"web server on {FAILING} stopped")
    address = f"[{webs[FAILING].host.ip4}]:tcp:{PORT}"
    removed = {d.name: d.wait_log(f"Removing service {address}", stopped, pace.change).at
               for d in directors.values()}
    wait_until(f"{FAILING} out of both IPVS tables",
               lambda: all(FAILING not in d.pool() for d in directors.values()), pace.change)
    gone = time.monotonic()
    out_after = {name: round(at - stopped, 2) for name, at in removed.items()}
    note(f"out of the pool {seconds(out_after['node-a'])} after the stop on node-a, "
         f"{seconds(out_after['node-b'])} on node-b (a check each second; down on the second "
         "failure in a row, a second apart: retry 1, delay_before_retry 1)")
    note(f"IPVS now: {pools(directors.values())}")
    scene(client, pace)
    lost = client.failed(stopped, client.counted_until)
    # the client's view of node-a's kernel: every third request went to web2 (round
    # robin) until its table no longer held it, so the last one that failed tells when
    last_lost = max((r.sent for r in lost), default=None)
    figures["rs_down"] = {
        "removed_after": out_after,
        "pools": {d.name: sorted(d.pool()) for d in directors.values()},
        "failed": len(lost),
        "failed_how": how(lost),
        "last_failed_after": None if last_lost is None else round(last_lost - stopped, 2),
        "after_removal": client.outcomes(gone, client.counted_until),
    }
    note(f"since {FAILING} is out of both tables: "
         f"{spread(Counter(figures['rs_down']['after_removal']))}, "
         f"{plural(len(client.failed(gone, client.counted_until)), 'request')} failed")
    if last_lost is not None:
        lag = last_lost - removed["node-a"]
        note(f"the client: {plural(len(lost), 'request')} failed ({describe(lost)}), the last "
             f"one sent {last_lost - stopped:.2f} s after the stop: the round robin gave "
             f"{FAILING} its share until node-a's kernel no longer held it"
             + (f", {lag:.2f} s after node-a logged the removal" if lag > 0.1 else ""))
    else:
        note("the client: no request failed")
    results.steps.append("rs_down")

    heading(f"{FAILING}'s web server comes back: the next check passes, it is back in the pool")
    restarted = time.monotonic()
    webs[FAILING].start()
    say(clock(restarted), "demo", f"web server on {FAILING} started")
    added = {d.name: d.wait_log(f"Adding service {address}", restarted, pace.change).at
             for d in directors.values()}
    wait_until(f"{FAILING} back in both IPVS tables",
               lambda: all(FAILING in d.pool() for d in directors.values()), pace.change)
    returned = time.monotonic()
    in_after = {name: round(at - restarted, 2) for name, at in added.items()}
    note(f"back in the pool {seconds(in_after['node-a'])} after its start on node-a, "
         f"{seconds(in_after['node-b'])} on node-b")
    client.tally()                     # the requests while it came back
    scene(client, pace)
    lost = client.failed(restarted, client.counted_until)
    after_return = client.outcomes(returned, client.counted_until)
    note(f"the client: {plural(len(lost), 'request')} failed ({describe(lost)})" if lost
         else "the client: no request failed")
    note(f"since {FAILING} is back: {spread(Counter(after_return))}")
    figures["rs_up"] = {
        "added_after": in_after,
        "pools": {d.name: sorted(d.pool()) for d in directors.values()},
        "failed": len(lost),
        "failed_how": how(lost),
        "after_return": after_return,
    }
    results.steps.append("rs_up")

    # -- the master director dies ---------------------------------------------------------
    heading("node-a, the master director, dies: kill -9 of keepalived-py (all its processes) "
            "and its cable pulled")
    note("(a killed keepalived alone leaves the VIP and the IPVS table in its kernel, which "
         "go on forwarding; a dead machine forwards nothing, hence the cable)")
    note(f"{b.holds()}; its IPVS table: {' '.join(sorted(b.pool()))}")
    # the kill first, so that the agent never sees its cable go (it would go to FAULT
    # and give its VIP up, which a dead machine does not); its adverts stop at the
    # kill, its kernel forwards until the cable is out, a moment later
    killed = time.monotonic()
    a.crash()
    lab.cable("node-a", up=False)
    say(clock(killed), "demo", "node-a's keepalived-py killed (kill -9), then its cable "
                               f"pulled ({time.monotonic() - killed:.2f} s later)")
    master = b.wait_log("Entering MASTER STATE", killed, pace.change)
    at_takeover = sorted(b.pool())
    client.wait_answer(master.at, pace.change)
    now = time.monotonic()
    client.settle(now)                  # the requests sent meanwhile have their outcome
    down = DOWN_ADVERTS * ADVERT_INT + (256 - PRIORITY["node-b"]) * ADVERT_INT / 256
    heading(f"node-b took over: {b.holds()}, and its IPVS table already held "
            f"{' '.join(at_takeover)} when it did")
    note(f"node-b master {seconds(master.at - killed)} after the kill (its master-down timer "
         f"runs {down:.2f} s from node-a's last advert, so {down - ADVERT_INT:.2f}-{down:.2f} s "
         "after a kill)")
    outage, since, until = client.silence(killed, now)
    lost = client.failed(killed - pace.timeout, now)
    note(f"the client: no answer for {outage:.2f} s ({clock(since)} to {clock(until)}), "
         f"{plural(len(lost), 'request')} failed ({describe(lost)}); node-b's gratuitous ARPs "
         "brought it to node-b")
    scene(client, pace)
    figures["failover"] = {
        "master_after": round(master.at - killed, 2),
        "pool_at_takeover": at_takeover,
        "vip_on_b": b.vip(),
        "outage": round(outage, 2),
        "failed": len(lost),
        "failed_how": how(lost),
        "after_takeover": client.outcomes(until, client.counted_until),
    }
    results.steps.append("failover")

    # -- the old master comes back ----------------------------------------------------------
    heading("node-a comes back (cable in, keepalived-py started): its checker finds the "
            "table still in its kernel, VRRP preempts (priority 150 beats 100)")
    stale = a.vip()
    if stale:
        note(f"{a.holds()} still: its killed agent could not remove it")
    back = time.monotonic()
    lab.cable("node-a", up=True)
    a.start()
    say(clock(back), "demo", "node-a's cable plugged back, keepalived-py started")
    a.wait_log("Entering BACKUP STATE", back, pace.start)
    as_backup = a.vip()
    say(clock(time.monotonic()), "demo", f"node-a's VRRP is up, a backup: {a.holds()}")
    preempted = a.wait_log("Entering MASTER STATE", back, pace.change)
    released = b.wait_log("Entering BACKUP STATE", back, pace.change)
    time.sleep(1.0)                     # the client, a moment after the hand-over
    now = time.monotonic()
    client.settle(now)
    gap, _, _ = client.silence(back, now)
    lost = client.failed(back, now)
    adopted = a.logged("IPVS: adopting", back)
    vrrp_up = a.logged("Entering BACKUP STATE", back)
    heading(f"node-a is master again: {a.holds()}, {b.holds()}")
    note(f"node-a took the VIP back {seconds(preempted.at - back)} after its start"
         + (f", {seconds(preempted.at - vrrp_up.at)} after its VRRP process was up (a "
            "backup first, it waits out its master-down timer)" if vrrp_up else "")
         + f"; node-b backup at {clock(released.at)}")
    note(f"the client meanwhile: longest silence {gap:.2f} s, "
         f"{plural(len(lost), 'request')} failed ({describe(lost)})")
    if "reset" in how(lost):
        note("(a reset: a connection under way through node-b when the VIP moved sent its "
             "next packets to node-a, whose IPVS had never seen it)")
    if adopted is not None:
        note(f"node-a's checker: {adopted.text}")
    note(f"IPVS now: {pools(directors.values())}")
    figures["handback"] = {
        "master_after": round(preempted.at - back, 2),
        "vip_on_a": a.vip(),
        "vip_on_b": b.vip(),
        "longest_gap": round(gap, 2),
        "failed": len(lost),
        "adopted": adopted.text if adopted else None,
        "stale_vip": stale,
        "vip_as_backup": as_backup,
    }
    scene(client, pace, 0.5)
    results.steps.append("handback")

    # -- the end ------------------------------------------------------------------------
    heading("stopping the client, then both agents, the backup first (SIGTERM: each takes its "
            "services out of IPVS and gives up its VIP)")
    client.stop()
    client.tally()
    forwarded = {d.name: d.connections() for d in directors.values()}
    for director in (b, a):             # the backup first: no last failover
        director.stop(pace.change)
    total = Counter(r.outcome for r in client.requests)
    figures["client"] = {
        "requests": len(client.requests),
        "answered": sum(1 for r in client.requests if r.ok),
        "by_outcome": dict(total),
    }
    figures["forwarded"] = forwarded
    results.steps.append("stopped")
    summary(results)


def summary(results: Results) -> None:
    f = results.figures
    c, down, up, fo, hb = (f["client"], f["rs_down"], f["rs_up"], f["failover"],
                           f["handback"])
    failed = c["requests"] - c["answered"]
    failures = ", ".join(f"{n} {o[1:]}" for o, n in c["by_outcome"].items() if o[0] == "!")
    heading("summary")
    note(f"client           {c['requests']} requests, {c['answered']} answered "
         f"({spread(Counter(c['by_outcome']))}), {failed} failed"
         + (f" ({failures})" if failures else ""))
    note(f"{FAILING} stopped     out of the pool after {seconds(down['removed_after']['node-a'])}"
         f" (node-a), {seconds(down['removed_after']['node-b'])} (node-b), by their logs; "
         f"{plural(down['failed'], 'request')} failed meanwhile"
         + (f", the last sent {seconds(down['last_failed_after'])} after the stop"
            if down["last_failed_after"] is not None else ""))
    note(f"{FAILING} back        in the pool after {seconds(up['added_after']['node-a'])} "
         f"(node-a), {seconds(up['added_after']['node-b'])} (node-b); "
         f"{plural(up['failed'], 'request')} failed")
    note(f"node-a killed    node-b master after {seconds(fo['master_after'])}, its table "
         f"already holding {' '.join(fo['pool_at_takeover'])}; the client had no answer for "
         f"{seconds(fo['outage'])} ({plural(fo['failed'], 'request')} failed)")
    note(f"node-a back      master again {seconds(hb['master_after'])} after its start; "
         f"longest silence at the client {seconds(hb['longest_gap'])}, "
         f"{plural(hb['failed'], 'request')} failed")
    note(f"forwarded        node-a {f['forwarded']['node-a']} connections, node-b "
         f"{f['forwarded']['node-b']} (IPVS counters, ipvsadm --stats)")


# -- where it runs ----------------------------------------------------------------------------

def host_has_ipvs() -> tuple[bool, str]:
    """Whether this kernel has IPVS, and how we know."""
    if Path("/proc/net/ip_vs").exists():
        return True, "/proc/net/ip_vs exists"
    try:
        done = subprocess.run(["modprobe", "ip_vs"], capture_output=True, text=True)
    except FileNotFoundError:
        return False, "no modprobe here, and no /proc/net/ip_vs"
    if done.returncode == 0:
        return True, "modprobe ip_vs loaded it"
    return False, f"modprobe ip_vs: {done.stderr.strip().removeprefix('modprobe: ')}"


def run_here(args: argparse.Namespace, pace: Pace) -> int:
    for tool in ("ipvsadm", "busybox"):
        if shutil.which(tool) is None:
            print(f"demo: {tool} is missing (apt-get install {tool}; ./lab demo installs it)",
                  file=sys.stderr)
            return 1
    results = Results(pace.where, args.quick)
    started = time.monotonic()
    lab: Lab | None = None
    rundir = Path(tempfile.mkdtemp(prefix="kpy-demo-"))
    status = 1
    try:
        lab = Lab(list(HOSTS))
        for name, host in lab.hosts.items():
            note(f"{name:<7} {host.ip4}  (namespace {host.netns})")
        missing = [web for web in WEBS if str(lab.host(web).ip4) not in CONF.read_text()]
        if missing:
            raise RuntimeError(f"{CONF.name} does not list {', '.join(missing)} as real servers")
        if not args.quick:
            check_config(lab)
        story(lab, rundir, pace, results)
        status = 0
    except KeyboardInterrupt:
        heading("interrupted")
        status = 130
    except SystemExit:
        heading("stopped by a signal")
        raise
    except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as err:
        heading(f"FAILED: {err}")
    finally:
        results.figures["ok"] = status == 0
        if args.results:
            Path(args.results).write_text(json.dumps(results.__dict__, indent=1))
        if lab is not None:
            lab.close()
        shutil.rmtree(rundir, ignore_errors=True)
        heading(f"cleaned up: processes killed, namespaces removed "
                f"({time.monotonic() - started:.0f} s in all)")
    return status


class _Tail:
    """Copies a file that another writes (the guest's output, in the VM's share) to our
    stdout as it grows, until stopped; then what is left."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.path.exists():
            if self.stopping.wait(0.2):
                return
        with self.path.open("rb") as f:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                elif self.stopping.is_set():
                    return
                else:
                    time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def run_in_vm(args: argparse.Namespace, why: str) -> int:
    from tests.vm import runner
    try:
        runner.check_tools()
        kernel = runner.find_kernel()
    except runner.VmUnavailable as err:
        print(f"demo: this kernel has no IPVS ({why}) and the VM cannot run: {err}",
              file=sys.stderr)
        return 1
    print(f"This machine's kernel ({os.uname().release}) has no IPVS ({why}), so the demo "
          "runs inside a throw-away VM:\n"
          f"qemu (software emulation) booting Debian's kernel {kernel.version} over this "
          "machine's root, read-only.\n"
          "Python runs 10-40x slower in there: the agents take a minute or so to start, the "
          f"whole demo {'two to four' if args.quick else 'four to six'} minutes.\n"
          "The VM's output follows as it comes (its clock is set from this machine's).",
          flush=True)
    # compiled here, once: the guest would compile every module it imports, slowly, into
    # its RAM overlay, on every boot
    for tree in ("agent", "tests"):
        compileall.compile_dir(REPO / tree, quiet=1)
    share = Path(tempfile.mkdtemp(prefix="kpy-demo-vm-"))
    quick = " --quick" if args.quick else ""
    script = (f"cd {REPO} && exec {sys.executable} -m tests.demo --guest{quick} "
              "--results \"$KPY_VM_SHARE/results.json\"\n")
    tail = _Tail(share / "output")
    try:
        print("booting the VM ...", flush=True)
        result = runner.boot(script, timeout=VM_TIMEOUT, share=share)
        tail.stop()
        if args.results and (share / "results.json").is_file():
            shutil.copyfile(share / "results.json", args.results)
        print(f"\n(the VM ran {result.seconds:.0f} s and is gone)", flush=True)
        return result.status
    except runner.VmError as err:
        tail.stop()
        print(f"\ndemo: {err}", file=sys.stderr)
        return 1
    except runner.VmUnavailable as err:
        tail.stop()
        print(f"demo: the VM cannot run: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        tail.stop()
        print("\n== interrupted: the VM is stopped", flush=True)
        return 130
    except SystemExit:
        tail.stop()
        print("\n== stopped by a signal: the VM is stopped", flush=True)
        raise
    finally:
        tail.stop()
        shutil.rmtree(share, ignore_errors=True)


def _thread_failed(hook: threading.ExceptHookArgs) -> None:
    """A reader thread that breaks says so in one line; the story then times out."""
    if os.environ.get("KPY_DEMO_DEBUG"):
        threading.__excepthook__(hook)
    else:
        print(f"demo: {hook.exc_type.__name__} in a reader thread: {hook.exc_value}",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="shorter scenes, no config check (the test's variant)")
    parser.add_argument("--results", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--vm", action="store_true",
                        help="run in the VM even where this kernel has IPVS")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    unwind_on_signals()
    threading.excepthook = _thread_failed
    try:
        if args.guest:
            print(f"inside the VM (kernel {os.uname().release}): "
                  "keepalived-py load-balancing a web service behind a VIP", flush=True)
            return run_here(args, pace_for("vm", args.quick))
        print("keepalived-py demo: a web service load-balanced behind the VIP "
              f"{VIP} by two directors (VRRP + IPVS),\nthree real web servers and a client, "
              "each in its own network namespace on one bridge.", flush=True)
        has_ipvs, why = host_has_ipvs()
        if has_ipvs and not args.vm:
            print(f"This machine's kernel has IPVS ({why}): the demo runs here.", flush=True)
            return run_here(args, pace_for("host", args.quick))
        return run_in_vm(args, why if not has_ipvs else "--vm asked for the VM")
    except KeyboardInterrupt:
        print("\n== interrupted", flush=True)
        return 130
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except Exception as err:            # one line for the user, never a traceback
        if os.environ.get("KPY_DEMO_DEBUG"):
            raise
        print(f"demo: failed: {type(err).__name__}: {err} (KPY_DEMO_DEBUG=1 shows where)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
