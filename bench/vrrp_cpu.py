"""CPU of one VRRP router running many fast instances, ours beside keepalived 2.2.7.

    python bench/vrrp_cpu.py [--instances 200] [--advert-int 0.1] [--settle 10]
                             [--window 30] [--peer] [--only agent|keepalived]

Root only.  For each implementation, a lab of network namespaces on one bridge
runs one router (host r1) with ``--instances`` VRRPv3 instances on eth0, each
``state MASTER``, priority 150, one VIP (198.18.1.N/32 for VRID N).  With
``--peer`` a second router of the same kind (r2) runs the same instances
(``state BACKUP``, priority 100), started once r1 is master everywhere, so it
is their backup; without it there is no peer and every instance is master on
its own.

When every VIP is up on r1, the bench waits ``--settle`` seconds (the start-up
gratuitous ARP rounds are over by then), then reads the CPU time of r1's
process tree (utime + stime of the router and all its descendants, from
/proc/PID/stat) at the start and end of a ``--window`` of seconds, and gives it
as a percentage of one core.

Over the same window a capture host (cap) counts the adverts it receives per
VRID, with kernel receive time stamps: the rate per VRID shows whether the
router keeps its advert interval, and every gap longer than the backups'
Master_Down_Interval is one where a backup would have taken over.  With a peer,
the bench also counts the peer's "Entering MASTER STATE" lines in the window.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import KINDS, machine  # noqa: E402  (the sibling bench, for the machine lines)

from tests.integration.agents import Router, wait_for  # noqa: E402
from tests.lab import Host, Lab, unwind_on_signals  # noqa: E402

HERE = Path(__file__).resolve()
VRRP_PROTO = 112
VRRP_GROUP = "224.0.0.18"
SO_TIMESTAMPNS = 35
MASTER_PRIORITY, PEER_PRIORITY = 150, 100


def config(name: str, instances: int, advert_int: str, priority: int, state: str) -> str:
    parts = [f"global_defs {{\n    router_id {name}\n}}\n"]
    for vrid in range(1, instances + 1):
        parts.append(f"""
vrrp_instance VI_{vrid} {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_int}
    version 3
    virtual_ipaddress {{
        {vip(vrid)}/32
    }}
}}
""")
    return "".join(parts)


def vip(vrid: int) -> str:
    return f"198.18.{1 + (vrid - 1) // 250}.{1 + (vrid - 1) % 250}"


def master_down(advert_int: float, backup_priority: int = PEER_PRIORITY) -> float:
    """RFC 5798: 3 x Master_Adver_Interval + Skew_Time of the backup."""
    return 3 * advert_int + (256 - backup_priority) * advert_int / 256


# -- CPU time from /proc ------------------------------------------------------------

@dataclass(frozen=True)
class Cpu:
    """CPU seconds: in user space and in the kernel (which includes, for a sender on a
    veth, delivering its packets to the other end)."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.user + other.user, self.system + other.system)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)


def _stat(pid: int) -> tuple[int, Cpu] | None:
    """(parent pid, CPU used) of one process, or None if it has gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)); ppid is field 4, utime 14, stime 15
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), Cpu(int(fields[11]) / ticks, int(fields[12]) / ticks)


def tree_cpu(root: int) -> Cpu:
    """CPU used so far by ``root`` and every live descendant."""
    stats = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, stat in stats.items():
        if stat is not None:
            children[stat[0]].append(pid)
    total, todo = Cpu(), [root]
    while todo:
        pid = todo.pop()
        stat = stats.get(pid)
        if stat is not None:
            total += stat[1]
        todo.extend(children.get(pid, []))
    return total


# -- the capture point ---------------------------------------------------------------

def capture(seconds: float) -> None:
    """Run inside the capture host: count VRRP adverts per (source, VRID), print JSON."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTO)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    mreq = struct.pack("4s4si", socket.inet_aton(VRRP_GROUP), bytes(4),
                       socket.if_nametoindex("eth0"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.settimeout(0.1)
    times: dict[str, list[float]] = defaultdict(list)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, anc, _flags, _addr = sock.recvmsg(2048, 64)
        except TimeoutError:
            continue
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8 or data[ihl + 2] == 0:
            continue                    # too short, or a priority-0 advert
        stamp = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec / 1e9
        src = socket.inet_ntoa(data[12:16])
        times[f"{src} {data[ihl + 1]}"].append(stamp)
    json.dump(times, sys.stdout)


@dataclass
class Wire:
    """What the capture host saw from one router over the window."""

    rates: list[float]            # adverts per second, one per VRID
    gaps: list[float]             # every interval between two adverts of one VRID

    def summary(self, advert_int: float, instances: int, window: float) -> list[tuple[str, str]]:
        if not self.gaps:
            return [("adverts/s per VRID", "none seen")]
        gaps = sorted(self.gaps)
        p99 = gaps[int(0.99 * (len(gaps) - 1))]
        down = master_down(advert_int)
        seen = len(self.rates)
        return [
            ("VRIDs heard", f"{seen} of {instances}"),
            ("adverts/s per VRID", f"{statistics.median(self.rates):.2f} median, "
                                   f"{min(self.rates):.2f} min (want {1 / advert_int:.2f})"),
            ("advert interval", f"{statistics.median(gaps) * 1000:.0f} ms median, "
                                f"{p99 * 1000:.0f} ms p99, {gaps[-1] * 1000:.0f} ms max"),
            (f"intervals > {1.5 * advert_int * 1000:.0f} ms",
             f"{sum(g > 1.5 * advert_int for g in gaps)} of {len(gaps)}"),
            (f"intervals > {down * 1000:.0f} ms (backup takes over)",
             f"{sum(g > down for g in gaps)}"),
        ]


def wire(raw: dict[str, list[float]], source: str, window: float) -> Wire:
    rates, gaps = [], []
    for key, stamps in raw.items():
        if key.split()[0] != source:
            continue
        rates.append(len(stamps) / window)
        gaps.extend(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    return Wire(rates, gaps)


# -- one measurement -----------------------------------------------------------------

@dataclass
class Measure:
    cpu: Cpu
    window: float
    wire: Wire
    peer_cpu: Cpu | None = None
    peer_masters: int | None = None
    peer_adverts: int | None = None

    @property
    def percent(self) -> float:
        return 100 * self.cpu.total / self.window


def _all_vips(host: Host, instances: int) -> bool:
    # ip(8) rather than pyroute2, whose netns helper process can time out on a busy box
    out = host.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    have = {line.split()[3].split("/")[0] for line in out.splitlines()}
    return all(vip(v) in have for v in range(1, instances + 1))


def measure(kind: str, args: argparse.Namespace) -> Measure:
    hosts = ["r1", "cap", *(["r2"] if args.peer else [])]
    with Lab(hosts) as lab:
        r1 = Router(lab.host("r1"), config("r1", args.instances, args.advert_int,
                                           MASTER_PRIORITY, "MASTER"), kind)
        peer = None
        if args.peer:
            peer = Router(lab.host("r2"), config("r2", args.instances, args.advert_int,
                                                 PEER_PRIORITY, "BACKUP"), kind)
        routers = [r for r in (r1, peer) if r is not None]
        try:
            r1.start()
            wait_for(f"{args.instances} VIPs on r1", lambda: _all_vips(r1.host, args.instances),
                     60, every=0.5)
            if peer is not None:
                # started once r1 is master everywhere, so it only ever is a backup
                peer.start()
                wait_for(f"{args.instances} backups on r2",
                         lambda: peer.log_text().count("Entering BACKUP STATE")
                         >= args.instances, 60, every=0.5)
            time.sleep(args.settle)
            cap = lab.host("cap").spawn(
                [sys.executable, str(HERE), "capture", str(args.window)],
                stdout=subprocess.PIPE, text=True)
            assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
            assert r1.proc is not None
            masters_before = peer.log_text().count("Entering MASTER STATE") if peer else 0
            t0, cpu0 = time.monotonic(), tree_cpu(r1.proc.pid)
            peer0 = tree_cpu(peer.proc.pid) if peer and peer.proc else Cpu()
            time.sleep(args.window)
            t1, cpu1 = time.monotonic(), tree_cpu(r1.proc.pid)
            peer1 = tree_cpu(peer.proc.pid) if peer and peer.proc else Cpu()
            raw = json.loads(cap.stdout.read())
            cap.wait(10)
            window = t1 - t0
            result = Measure(cpu1 - cpu0, window, wire(raw, str(lab.host("r1").ip4), window))
            if peer:
                result.peer_cpu = peer1 - peer0
                result.peer_masters = (peer.log_text().count("Entering MASTER STATE")
                                       - masters_before)
                peer_ip = str(lab.host("r2").ip4)
                result.peer_adverts = sum(len(stamps) for key, stamps in raw.items()
                                          if key.split()[0] == peer_ip)
            return result
        except BaseException:
            for router in routers:
                tail = "".join(router.log_text().splitlines(keepends=True)[-15:])
                print(f"--- last lines of {KINDS[kind]} {router.host.name}'s log:\n{tail}",
                      file=sys.stderr)
            raise
        finally:
            for router in routers:
                router.close()


# -- report ---------------------------------------------------------------------------

def table(results: dict[str, Measure], args: argparse.Namespace) -> str:
    kinds = list(results)
    advert_int = float(args.advert_int)
    rows = [["", *(KINDS[k] for k in kinds)]]
    rows.append(["CPU, % of one core", *(f"{results[k].percent:.1f} %" for k in kinds)])
    rows.append(["CPU seconds in window",
                 *(f"{results[k].cpu.total:.2f} s of {results[k].window:.1f} s" for k in kinds)])
    rows.append(["  of which user / kernel",
                 *(f"{results[k].cpu.user:.2f} s / {results[k].cpu.system:.2f} s" for k in kinds)])
    lines = {k: results[k].wire.summary(advert_int, args.instances, results[k].window)
             for k in kinds}
    for i, (label, _) in enumerate(lines[kinds[0]]):
        rows.append([label, *(lines[k][i][1] if i < len(lines[k]) else "-" for k in kinds)])
    if args.peer:
        peer = {k: results[k].peer_cpu or Cpu() for k in kinds}
        rows.append(["peer (r2) CPU, % of one core",
                     *(f"{100 * peer[k].total / results[k].window:.1f} % (user "
                       f"{peer[k].user:.2f} s / kernel {peer[k].system:.2f} s)" for k in kinds)])
        rows.append(["peer MASTER entries in window",
                     *(str(results[k].peer_masters) for k in kinds)])
        rows.append(["adverts sent by the peer in window",
                     *(str(results[k].peer_adverts) for k in kinds)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["capture"]:
        capture(float(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200, help="VRRP instances (200)")
    parser.add_argument("--advert-int", default="0.1", help="advert_int in seconds (0.1)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait once every VIP is up (10)")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds (30)")
    parser.add_argument("--peer", action="store_true", help="run a backup peer (r2) as well")
    parser.add_argument("--only", choices=sorted(KINDS), help="measure one implementation")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("vrrp_cpu.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.instances <= 255:
        parser.error("--instances: one VRID each, 1 to 255")

    unwind_on_signals()

    print("\n".join(machine()))
    peer = "one backup peer (r2, priority 100)" if args.peer else "no peer"
    print(f"\n{args.instances} VRRPv3 instances, advert_int {args.advert_int}, all MASTER "
          f"on r1, {peer}; CPU of r1's process tree over {args.window:g} s after "
          f"{args.settle:g} s settle\n", flush=True)
    results: dict[str, Measure] = {}
    for kind in [args.only] if args.only else list(KINDS):
        results[kind] = measure(kind, args)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"  {KINDS[kind]}: {results[kind].percent:.1f} % of one core "
              f"(load avg {load} after it)", flush=True)
    print()
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
