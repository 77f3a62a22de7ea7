"""Time keepalived-py's configuration reader on large files, beside keepalived's.

    python bench/parse_bench.py [--out DIR | --tmp] [--runs 3] [--no-install] [--profile]

Generates two files with ``bench/gen_config.py`` (10,000 vrrp_instance blocks;
2,000 virtual_server blocks of 20 real_server each), then for each file takes
the median of ``--runs`` runs of:

* ours, in process: ``keepalived_py.config.load(path, config_id=...)``;
* ours, end to end: ``keepalived-py -t -f FILE -i ID`` as a subprocess;
* keepalived 2.2.7, if installed: ``keepalived -t -f FILE -i ID``, run inside a
  fresh network namespace (``unshare -n``; else a named ``ip netns`` that is
  deleted afterwards) so that it only sees ``lo``.

``-t`` may exit 5 for warnings: exit codes are recorded, not judged.  Run as
root with apt available, a missing keepalived is installed with
``apt-get install -y keepalived`` unless ``--no-install`` is given.
``--profile`` adds a cProfile of the in-process load (top 15 by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_config  # noqa: E402  (the sibling script, importable once bench/ is on the path)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"            # git-ignored
GOAL_SECONDS = 2.0
VRRP_INSTANCES = 10_000
LVS_SERVERS = 2_000
LVS_REALS = 20
CONFIG_ID = gen_config.CONFIG_ID
NETNS_PREFIX = "kpybench-"
SUBPROCESS_TIMEOUT = 600


@dataclass
class Case:
    name: str
    path: Path
    size: int
    blocks: str                       # what it holds, for the table


@dataclass
class Timing:
    seconds: float | None = None      # median wall-clock time
    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)    # CPU time (user + sys) of each run
    exit_code: int | None = None
    output_lines: int = 0
    note: str = ""


@dataclass
class Row:
    case: Case
    ours_load: Timing
    ours_cli: Timing
    keepalived: Timing


# -- generating ------------------------------------------------------------------

def generate(out_dir: Path) -> list[Case]:
    vrrp = out_dir / "vrrp_10000.conf"
    lvs = out_dir / "lvs_2000x20.conf"
    vrrp_size = gen_config.write_vrrp(VRRP_INSTANCES, vrrp)
    lvs_size = gen_config.write_lvs(LVS_SERVERS, LVS_REALS, lvs)
    return [
        Case("vrrp", vrrp, vrrp_size, f"{VRRP_INSTANCES:,} vrrp_instance"),
        Case("lvs", lvs, lvs_size,
             f"{LVS_SERVERS:,} VS x {LVS_REALS} RS = {LVS_SERVERS * LVS_REALS:,} RS"),
    ]


# -- timing ----------------------------------------------------------------------

Measure = tuple[float, float, int | None, int]     # wall s, CPU s, exit code, output lines


def median_of(runs: int, once: Callable[[], Measure]) -> Timing:
    timing = Timing()
    for _ in range(runs):
        seconds, cpu, code, lines = once()
        timing.runs.append(seconds)
        timing.cpu.append(cpu)
        timing.exit_code = code
        timing.output_lines = lines
    timing.seconds = statistics.median(timing.runs)
    return timing


def time_load(case: Case, runs: int) -> Timing:
    from keepalived_py.config import load

    def once() -> Measure:
        cpu = time.process_time()
        start = time.perf_counter()
        result = load(str(case.path), config_id=CONFIG_ID)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        return seconds, cpu, result.diags.exit_code(), len(result.diags)

    return median_of(runs, once)


def guarded(what: str, measure: Callable[[], Timing]) -> Timing:
    """``measure()``, or an empty Timing noting why it failed (the reader is being
    worked on concurrently: a broken import must not stop the other timings)."""
    try:
        return measure()
    except Exception as e:  # noqa: BLE001 - reported, and the run goes on
        print(f"  {what} failed: {type(e).__name__}: {e}", flush=True)
        return Timing(note=f"{type(e).__name__}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(argv: Sequence[str]) -> Measure:
    """Run ``argv`` with its output captured; return wall and CPU time, exit code
    and output lines."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=SUBPROCESS_TIMEOUT, check=False)
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    lines = proc.stdout.count(b"\n") + proc.stderr.count(b"\n")
    return seconds, cpu, proc.returncode, lines


def ours_command() -> list[str]:
    exe = shutil.which("keepalived-py")
    return [exe] if exe else [sys.executable, "-m", "keepalived_py"]


def time_cli(case: Case, runs: int) -> Timing:
    argv = [*ours_command(), "-t", "-f", str(case.path), "-i", CONFIG_ID]
    return median_of(runs, lambda: run_timed(argv))


# -- keepalived ------------------------------------------------------------------

def find_keepalived(install: bool) -> tuple[str | None, str]:
    """The keepalived binary, installing it when allowed; else None and why not."""
    exe = shutil.which("keepalived") or next(
        (p for p in ("/usr/sbin/keepalived", "/sbin/keepalived") if os.access(p, os.X_OK)),
        None)
    if exe:
        return exe, ""
    if not install:
        return None, "keepalived is missing (--no-install given)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "keepalived is missing (install it: apt-get install -y keepalived)"
    print("keepalived is missing: apt-get install -y keepalived ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "keepalived"]
    ok = subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0
    if not ok:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        ok = subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0
    exe = shutil.which("keepalived")
    if ok and exe:
        return exe, ""
    return None, "keepalived is missing and apt-get install -y keepalived failed"


def keepalived_version(exe: str) -> str:
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0] if text else "keepalived (version unknown)"


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return proc.returncode == 0


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Let SIGTERM/SIGHUP unwind through ``finally`` blocks (namespace clean-up)."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def isolated_prefix() -> Iterator[list[str] | None]:
    """A command prefix that runs a program in a fresh network namespace, or None.

    ``unshare -n`` makes an anonymous namespace that goes away with the process;
    failing that, a named ``ip netns`` is made here and always deleted.
    """
    if _unshare_works():
        yield ["unshare", "-n"]
        return
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    name = f"{NETNS_PREFIX}{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True,
                          check=False).returncode == 0
    if not made:
        yield None
        return
    try:
        with _terminate_as_exit():
            yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def time_keepalived(exe: str, prefix: list[str], case: Case, runs: int) -> Timing:
    argv = [*prefix, exe, "-t", "-f", str(case.path), "-i", CONFIG_ID]
    return median_of(runs, lambda: run_timed(argv))


# -- profile ---------------------------------------------------------------------

def profile(case: Case, top: int = 15) -> str:
    from keepalived_py.config import load

    prof = cProfile.Profile()
    prof.enable()
    load(str(case.path), config_id=CONFIG_ID)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- report ----------------------------------------------------------------------

def _secs(t: Timing) -> str:
    if t.seconds is None:
        return "failed" if t.note else "-"
    return f"{t.seconds:.3f} s"


def _code(t: Timing) -> str:
    return "-" if t.exit_code is None else str(t.exit_code)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"nproc {os.cpu_count()}, {cpu}, Python {sys.version.split()[0]} "
            f"({sys.implementation.name})")


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def table(rows: list[Row]) -> str:
    head = ("file", "size", "instances/servers", "ours load()", "ours CLI",
            "keepalived", "exit ours", "exit ka")
    body = [
        (r.case.path.name, f"{r.case.size / 1e6:.2f} MB", r.case.blocks,
         _secs(r.ours_load), _secs(r.ours_cli), _secs(r.keepalived),
         _code(r.ours_cli), _code(r.keepalived))
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in (head, *body)) for i in range(len(head))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(b) for b in body)])


def verdict(rows: list[Row]) -> list[str]:
    lines = [f"Goal: ours under {GOAL_SECONDS:g} s per file (in process and CLI)."]
    for r in rows:
        for label, t in (("load()", r.ours_load), ("CLI", r.ours_cli)):
            if t.seconds is not None:
                ok = "met" if t.seconds < GOAL_SECONDS else "MISSED"
                lines.append(f"  {r.case.path.name} {label}: {t.seconds:.3f} s - {ok}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"where to write the files (default {DEFAULT_OUT})")
    where.add_argument("--tmp", action="store_true", help="use a temporary directory")
    parser.add_argument("--runs", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not apt-get install keepalived when it is missing")
    parser.add_argument("--no-keepalived", action="store_true",
                        help="time ours only")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of load() on each file (top 15 by cumtime)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="kpybench-") as tmp:
        out_dir = Path(tmp) if args.tmp else args.out
        print(f"machine: {machine()}; load average {_loadavg()}")
        print(f"generating into {out_dir} ...", flush=True)
        cases = generate(out_dir)

        exe: str | None = None
        why = "not asked for (--no-keepalived)"
        if not args.no_keepalived:
            exe, why = find_keepalived(install=not args.no_install)
        if exe:
            print(f"reference: {keepalived_version(exe)} ({exe})")
        else:
            print(f"reference: {why}; timing ours only")

        rows: list[Row] = []
        with isolated_prefix() as prefix:
            if exe and prefix is None:
                print("reference: cannot make a network namespace (needs root and "
                      "unshare or ip netns); not running keepalived")
            for case in cases:
                print(f"timing {case.path.name} ({args.runs} runs each) ...", flush=True)
                ka = (time_keepalived(exe, prefix, case, args.runs)
                      if exe and prefix is not None else Timing())
                ours_load = guarded("load()", lambda c=case: time_load(c, args.runs))
                rows.append(Row(case, ours_load, time_cli(case, args.runs), ka))

        print()
        print(table(rows))
        print()
        print("\n".join(verdict(rows)))
        print()
        for r in rows:
            print(f"{r.case.path.name}: ours reported {r.ours_load.output_lines} "
                  f"diagnostics, keepalived printed {r.keepalived.output_lines} lines")
            print(f"  ours load(): {_runs(r.ours_load)}")
            print(f"  ours CLI:    {_runs(r.ours_cli)}")
            print(f"  keepalived:  {_runs(r.keepalived)}")
        print(f"load average during the run: {_loadavg()} (on {os.cpu_count()} CPUs; "
              "wall times on a busy machine run high - compare the CPU figures)")
        print("Exit codes: 0 ok, 4 cannot run, 5 errors/warnings but would run, "
              "6 script security.")

        if args.profile:
            for case in cases:
                print(f"\n== cProfile: load({case.path.name}), top 15 by cumtime ==")
                try:
                    print(profile(case))
                except Exception as e:  # noqa: BLE001 - reported, and the run goes on
                    print(f"  load() failed: {type(e).__name__}: {e}")
    return 0


def _runs(t: Timing) -> str:
    if not t.runs:
        return "-"
    return (", ".join(f"{s:.2f}" for s in t.runs)
            + f" s wall (CPU median {statistics.median(t.cpu):.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
