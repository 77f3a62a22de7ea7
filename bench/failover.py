"""Failover time of our VRRP pair beside a keepalived 2.2.7 pair, measured by a client.

    python bench/failover.py [--runs 10] [--quick] [--only agent|keepalived]

Root only.  For each implementation and each timer case, a lab of three network
namespaces (routers r1 and r2, client c, on one bridge) runs a pair of routers
with the same keepalived.conf apart from the priority (r1 150, r2 100).  Both
routers answer UDP probes with their name (tests/vipprobe.py serve), and the
client sends a numbered probe to the VIP every 5 ms (vipprobe.py watch).

A run stops the master (r1) with SIGKILL or with SIGTERM and measures the time
from the signal to the first reply from r2.  The signal time and the client's
reply times are both CLOCK_MONOTONIC, which is one clock for the whole system,
so they compare directly.  Then r1 is started again and the run waits until it
is master, r2 has released the VIP and the client is answered by r1 again.
Before each stop the bench waits a random fraction of an advert interval (the
same sequence for both implementations), so the kill falls anywhere between
two adverts.

Cases: VRRPv2 at advert_int 1 (keepalived's default) and VRRPv3 at 0.05 s.
Everything is made inside the lab's namespaces and removed at the end, also on
failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.integration.agents import (  # noqa: E402
    KEEPALIVED,
    VIPPROBE,
    Router,
    serve,
    vrrp_config,
    wait_for,
)
from tests.lab import Host, Lab, unwind_on_signals  # noqa: E402

VIP = "198.18.0.100"
PORT = 7777
PROBE_INTERVAL = 0.005
MASTER, BACKUP = "r1", "r2"
PRIORITY = {MASTER: 150, BACKUP: 100}
KINDS = {"agent": "ours", "keepalived": "keepalived 2.2.7"}
MODES = {signal.SIGKILL: "kill -9", signal.SIGTERM: "SIGTERM"}


@dataclass(frozen=True)
class Case:
    version: int
    advert_int: str                   # as written in keepalived.conf

    @property
    def interval(self) -> float:
        return float(self.advert_int)

    @property
    def label(self) -> str:
        return f"VRRPv{self.version} advert_int {self.advert_int}"

    def skew(self, priority: int) -> float:
        """The backup's Skew_Time, as RFC 3768 (v2) and RFC 5798 (v3) define it."""
        if self.version == 2:
            return (256 - priority) / 256
        return (256 - priority) * self.interval / 256

    def expected(self, sig: int) -> str:
        """What the backup's timers allow: the skew after a priority-0 advert,
        else Master_Down_Interval less the time since the last advert."""
        skew = self.skew(PRIORITY[BACKUP])
        if sig == signal.SIGTERM:
            return f"{skew:.3f} s"
        down = 3 * self.interval + skew
        return f"{down - self.interval:.3f}-{down:.3f} s"


CASES = (Case(2, "1"), Case(3, "0.05"))


@dataclass(frozen=True)
class Reply:
    seq: int
    sent: float
    got: float
    name: str


class Client:
    """``vipprobe.py watch`` on the client host; a thread collects the replies."""

    def __init__(self, host: Host) -> None:
        self.proc = host.spawn(
            [sys.executable, VIPPROBE, "watch", VIP, str(PORT), str(PROBE_INTERVAL), "86400"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.replies: list[Reply] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seq, sent, got, name = line.split()
            self.replies.append(Reply(int(seq), float(sent), float(got), name))

    def mark(self) -> int:
        """A position in the replies: later searches start here."""
        return len(self.replies)

    def first_from(self, name: str, start: int, after: float) -> Reply | None:
        for reply in self.replies[start:]:
            if reply.name == name and reply.got > after:
                return reply
        return None

    def longest_silence(self, start: int, until: Reply) -> float:
        """The longest time without any reply, from the last one before ``start`` to ``until``."""
        times = [r.got for r in self.replies[max(start - 1, 0):] if r.got <= until.got]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


@dataclass
class Result:
    takeover: list[float] = field(default_factory=list)   # signal -> first reply from r2
    silence: list[float] = field(default_factory=list)    # longest gap the client saw
    failed: int = 0


# -- the lab --------------------------------------------------------------------

def has_vip(host: Host) -> bool:
    """Whether the host's kernel has the VIP on eth0.

    Asked with ip(8): pyroute2 forks a helper per namespace socket, which is slow
    on a busy machine and can time out.
    """
    out = host.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    return any(line.split()[3].split("/")[0] == VIP for line in out.splitlines())


class Pair:
    """Two routers of one kind and a probing client in a fresh lab."""

    def __init__(self, lab: Lab, kind: str, case: Case) -> None:
        self.case = case
        self.routers: dict[str, Router] = {}
        try:
            for name in (MASTER, BACKUP):
                host = lab.host(name)
                serve(host)
                config = vrrp_config(name, priority=PRIORITY[name], advert_int=case.advert_int,
                                     version=case.version)
                self.routers[name] = Router(host, config, kind)
            for router in self.routers.values():
                router.start()
            self.client = Client(lab.host("c"))
        except BaseException:
            self.close()
            raise

    @property
    def restore_timeout(self) -> float:
        return 10.0 + 5 * self.case.interval

    def restored(self) -> None:
        """Wait until r1 holds the VIP, r2 does not, and the client is answered by r1."""
        master, backup = self.routers[MASTER].host, self.routers[BACKUP].host
        timeout = self.restore_timeout
        wait_for("r1 master and r2 backup", lambda: has_vip(master) and not has_vip(backup),
                 timeout, every=0.05)
        start, now = self.client.mark(), time.monotonic()
        wait_for("a reply from r1", lambda: self.client.first_from(MASTER, start, now),
                 timeout)

    def stop_master(self, sig: int) -> tuple[float, float]:
        """Stop r1 with ``sig``: (signal to first reply from r2, longest client silence)."""
        start = self.client.mark()
        t0 = time.monotonic()
        self.routers[MASTER].stop(sig)
        timeout = 10.0 + 5 * self.case.interval
        reply = wait_for("a reply from r2", lambda: self.client.first_from(BACKUP, start, t0),
                         timeout, every=0.005)
        assert isinstance(reply, Reply)
        return reply.got - t0, self.client.longest_silence(start, reply)

    def restart_master(self) -> None:
        """Start r1 again and wait until the pair is as it was."""
        router = self.routers[MASTER]
        # keepalived killed with SIGKILL leaves its pid files; by then the pids in
        # them may belong to other processes, and it would refuse to start
        for stale in router.dir.glob("*.pid"):
            stale.unlink()
        router.start()
        self.restored()

    def close(self) -> None:
        for router in self.routers.values():
            router.close()


def measure(kind: str, case: Case, runs: int, seed: int) -> dict[int, Result]:
    rng = random.Random(seed)
    results = {sig: Result() for sig in MODES}
    settle = max(1.0, 3 * case.interval)
    with Lab([MASTER, BACKUP, "c"]) as lab:
        pair = Pair(lab, kind, case)
        try:
            pair.restored()
            for run in range(1, runs + 1):
                for sig, mode in MODES.items():
                    time.sleep(settle + rng.uniform(0, case.interval))
                    result = results[sig]
                    try:
                        takeover, silence = pair.stop_master(sig)
                    except AssertionError as err:
                        result.failed += 1
                        print(f"  {KINDS[kind]:<16} {case.label:<24} {mode:<8} run {run}: {err}",
                              flush=True)
                    else:
                        result.takeover.append(takeover)
                        result.silence.append(silence)
                        print(f"  {KINDS[kind]:<16} {case.label:<24} {mode:<8} run {run}: "
                              f"{takeover:.3f} s (client silent {silence:.3f} s at most)",
                              flush=True)
                    pair.restart_master()
        except BaseException:
            for name, router in pair.routers.items():
                tail = "".join(router.log_text().splitlines(keepends=True)[-15:])
                print(f"--- last lines of {KINDS[kind]} {name}'s log:\n{tail}", file=sys.stderr)
            raise
        finally:
            pair.close()
    return results


# -- report ---------------------------------------------------------------------

def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0] if out else "not available"


def machine() -> list[str]:
    """CPU model, cores, kernel, Python and keepalived, one per line."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [f"CPU:        {cpu}, {os.cpu_count()} cores",
            f"kernel:     {platform.system()} {platform.release()}",
            f"Python:     {platform.python_version()} ({sys.executable})",
            f"keepalived: {_first_line([KEEPALIVED, '--version'])}",
            f"load avg:   {load} (at start)"]


def _cell(values: list[float], pick: str) -> str:
    if not values:
        return "-"
    value = statistics.median(values) if pick == "median" else max(values)
    return f"{value:.3f} s"


def table(results: dict[tuple[Case, int, str], Result], kinds: Sequence[str],
          what: str) -> str:
    groups = ["", "", *(KINDS[k] for k in kinds)]
    head = ["case", "stop", *(["median", "max"] * len(kinds))]
    if what == "takeover":
        groups.append("")
        head.append("timers allow")
    rows = [head]
    for case in CASES:
        for sig, mode in MODES.items():
            row = [case.label, mode]
            for kind in kinds:
                result = results.get((case, sig, kind))
                values = [] if result is None else getattr(result, what)
                row += [_cell(values, "median"), _cell(values, "max")]
                if result is not None and result.failed:
                    row[-1] += f" ({result.failed} failed)"
            if what == "takeover":
                row.append(case.expected(sig))
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    # the implementation's name over its two columns
    spans = widths[:2] + [widths[i] + 2 + widths[i + 1] for i in range(2, 2 + 2 * len(kinds), 2)]
    spans += widths[2 + 2 * len(kinds):]
    lines = ["  ".join(g.ljust(w) for g, w in zip(groups, spans, strict=True)).rstrip()]
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per case and stop (10)")
    parser.add_argument("--quick", action="store_true", help="a 2-run smoke run")
    parser.add_argument("--only", choices=sorted(KINDS), help="measure one implementation")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill timing (1)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("failover.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    runs = 2 if args.quick else args.runs
    kinds = [args.only] if args.only else list(KINDS)

    unwind_on_signals()

    print("\n".join(machine()))
    print(f"\nfailover: r1 (priority 150) master, r2 (100) backup, client probing {VIP} "
          f"every {PROBE_INTERVAL * 1000:.0f} ms; {runs} runs per row\n", flush=True)
    results: dict[tuple[Case, int, str], Result] = {}
    for case in CASES:
        for kind in kinds:
            for sig, result in measure(kind, case, runs, args.seed).items():
                results[(case, sig, kind)] = result
    print("\nsignal to r1 -> first reply from r2 at the client (takeover):\n")
    print(table(results, kinds, "takeover"))
    print("\nlongest time the client went without any reply, around the same event:\n")
    print(table(results, kinds, "silence"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
