"""The tracked objects running for real: scripts, files (inotify) and processes
(the kernel's proc connector, from the initial network namespace and from a
fresh one, and the /proc polling fallback).

Process tests start copies of /bin/sleep under a distinctive name (a symlink:
the kernel names a process after the file it executes) and kill them again.
The checks that must run inside a fresh network namespace run this module as a
child: ``ip netns exec NS python -m tests.integration.test_trackers_io MODE DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keepalived_py.config import load
from keepalived_py.config.model import Node
from keepalived_py.host.procevents import EVENTS, EVENTS_VIA_INITIAL_NETNS, POLL_INTERVAL, POLLING
from keepalived_py.vrrp.tracking_io import Status, Trackers

REPO = Path(__file__).resolve().parents[2]


# -- helpers ------------------------------------------------------------------------


def instance(tracks: str) -> str:
    return f"""
vrrp_instance VI {{
    interface eth0
    virtual_router_id 1
    priority 100
    {tracks}
    virtual_ipaddress {{
        198.18.0.100
    }}
}}
"""


def config_root(text: str) -> Node:
    return load("keepalived.conf", text=text, interfaces={"eth0"}).root


async def run_script(name: str, argv: list[str], user: tuple[str, ...] | None,
                     timeout: float) -> int | None:
    """A plain runner: the script in its own session, killed (group) on timeout --
    SIGTERM, then SIGKILL 2 s later, as keepalived does -- and on cancel."""
    proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True)

    def kill(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 2)
        except TimeoutError:
            kill(signal.SIGKILL)
            await proc.wait()
        return None
    except asyncio.CancelledError:
        kill(signal.SIGKILL)
        await proc.wait()
        raise


class Changes:
    """The on_change callback: every change with its (wall clock) time."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, Status]] = []
        self._event = asyncio.Event()

    def __call__(self, kind: str, name: str, value: Status) -> None:
        self.seen.append((time.time(), kind, name, value))
        self._event.set()

    def of(self, kind: str, name: str) -> list[tuple[float, Status]]:
        return [(t, v) for t, k, n, v in self.seen if (k, n) == (kind, name)]

    async def wait(self, kind: str, name: str, value: Status, *, after: float,
                   timeout: float) -> float:
        """When ``name`` changed to ``value`` (at or after ``after``)."""
        deadline = time.monotonic() + timeout
        while True:
            for t, v in self.of(kind, name):
                if t >= after and v == value:
                    return t
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{kind} {name} did not become {value!r} in {timeout} s; "
                                     f"changes: {self.of(kind, name)}")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)


@pytest.fixture
def workdir(root_only: None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kpy-trackers-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write(path: Path, text: str) -> None:
    path.write_text(text)


# -- vrrp_script ----------------------------------------------------------------------


def test_script_rise_and_fall_at_the_interval(workdir: Path) -> None:
    """rise 2, fall 3, interval 1: the status flips on the 3rd failing run after
    the script starts failing and on the 2nd succeeding one after it recovers,
    with runs 1 s apart (start to start)."""
    rc, runs = workdir / "rc", workdir / "runs"
    script = workdir / "chk.sh"
    script.write_text(f'#!/bin/sh\nread rc < {rc}\necho "$(date +%s.%N) $rc" >> {runs}\n'
                      'exit $rc\n')
    write(rc, "0\n")
    root = config_root(f"""
vrrp_script chk {{
    script "/bin/sh {script}"
    interval 1
    rise 2
    fall 3
}}
""" + instance("track_script {\n chk\n }"))

    def runs_after(t: float) -> list[tuple[float, int]]:
        lines = [line.split() for line in runs.read_text().splitlines()]
        return [(float(a), int(b)) for a, b in lines if float(a) >= t]

    async def scenario() -> None:
        changes = Changes()
        trackers = Trackers(root, run_script, changes)
        started = time.time()
        await trackers.start()
        try:
            assert trackers.status("script", "chk") is None     # no result yet
            up = await changes.wait("script", "chk", True, after=started, timeout=3)
            first = runs_after(started)[0][0]
            assert first - started < 0.5, "the first run starts at once"
            assert up - first < 0.5, "one success decides from the initial state"

            write(rc, "1\n")
            flipped = time.time()
            down = await changes.wait("script", "chk", False, after=flipped, timeout=6)
            failing = [t for t, code in runs_after(flipped) if code == 1]
            assert len(failing) >= 3
            assert failing[2] <= down < failing[2] + 0.5, "down at the 3rd failure"
            for a, b in zip(failing, failing[1:3], strict=False):
                assert 0.8 < b - a < 1.3, f"runs {b - a:.3f} s apart"
            assert trackers.status("script", "chk") is False

            write(rc, "0\n")
            flipped = time.time()
            up = await changes.wait("script", "chk", True, after=flipped, timeout=5)
            passing = [t for t, code in runs_after(flipped) if code == 0]
            assert passing[1] <= up < passing[1] + 0.5, "up at the 2nd success"
            assert 0.8 < passing[1] - passing[0] < 1.3
            snap = trackers.snapshot()["scripts"][0]
            assert (snap["result"], snap["status"], snap["init_state"]) == (4, "GOOD", "DONE")
        finally:
            await trackers.stop()

    asyncio.run(scenario())


def test_a_script_that_times_out_fails_and_is_killed(workdir: Path) -> None:
    pidfile = workdir / "pid"
    script = workdir / "slow.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    root = config_root(f"""
vrrp_script slow {{
    script "/bin/sh {script}"
    interval 3
    timeout 1
}}
""" + instance("track_script {\n slow\n }"))

    async def scenario() -> None:
        changes = Changes()
        trackers = Trackers(root, run_script, changes)
        started = time.time()
        await trackers.start()
        try:
            down = await changes.wait("script", "slow", False, after=started, timeout=5)
            assert 0.9 < down - started < 1.6, f"failed {down - started:.2f} s after the start"
            pid = int(pidfile.read_text())
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            assert trackers.snapshot()["scripts"][0]["state"] == "idle"
        finally:
            await trackers.stop()

    asyncio.run(scenario())


# -- track_file -----------------------------------------------------------------------


def test_track_file_changes_are_seen_at_once(workdir: Path) -> None:
    value, made = workdir / "value", workdir / "made"
    root = config_root(f"""
track_file tf {{
    file {value}
}}
track_file made {{
    file {made}
    init_file 3
}}
track_file untracked {{
    file {workdir}/untracked
    init_file 4
}}
track_file nodir {{
    file {workdir}/nodir/value
}}
""" + instance("track_file {\n tf weight 0\n made\n nodir\n }"))

    async def scenario() -> list[float]:
        changes = Changes()
        trackers = Trackers(root, run_script, changes)
        await trackers.start()
        latencies = []
        try:
            assert trackers.process_mode is None                # no process to follow
            assert trackers.status("file", "tf") == 0           # missing: 0
            assert trackers.status("file", "made") == 3         # created by init_file
            assert made.read_text() == "3\n"
            assert (workdir / "untracked").read_text() == "4\n"  # init_file runs for all
            # only tracked files run, and keepalived drops one whose directory is missing
            assert trackers.names("file") == ["tf", "made"]

            async def step(action: Any, expected: int) -> None:
                t = time.time()
                action()
                seen = await changes.wait("file", "tf", expected, after=t, timeout=2)
                latencies.append(seen - t)

            await step(lambda: write(value, "5\n"), 5)                         # in place
            await step(lambda: (write(workdir / "x", "7\n"),
                                os.rename(workdir / "x", value)), 7)            # by rename
            await step(value.unlink, 0)                                         # deleted
            await step(lambda: write(value, "0x20\n"), 32)                      # made again
            await step(lambda: write(value, "junk\n"), 0)                       # no number
            before = len(changes.seen)
            write(value, "0\n")
            await asyncio.sleep(0.3)
            assert len(changes.seen) == before, "an unchanged value is not reported"
            assert trackers.snapshot()["files"][0]["file"] == str(value)
        finally:
            await trackers.stop()
        return latencies

    latencies = asyncio.run(scenario())
    assert max(latencies) < 0.1, latencies


# -- against keepalived itself ---------------------------------------------------------

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
FILE_CONTENTS = {"hex": "0x10\n", "spaced": "  \t 12abc\n", "junk": "abc\n",
                 "huge": "99999999999999999999\n", "edge": "2147483648\n", "neg": "-7\n",
                 "octal": "010\n", "empty": "", "missing": None}


def dump_sections(text: str) -> list[str]:
    """The trackers' sections of a data dump: from "VRRP Scripts" to the next
    section that is not one of them."""
    ours = ("------< VRRP Scripts >------", "------< VRRP Track files >------",
            "------< VRRP Track processes >------")
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("------<"):
            inside = line in ours
        if inside:
            out.append(line)
    return out


def test_dump_and_file_values_match_keepalived(netns: str, workdir: Path) -> None:
    """keepalived 2.2.7 and we read the same files and print the same dump lines."""
    if not os.path.exists(KEEPALIVED):
        from tests.conftest import tier_missing
        tier_missing(f"conformance tier: {KEEPALIVED} not installed")
    subprocess.run(["ip", "-n", netns, "link", "add", "v0", "type", "veth", "peer", "name",
                    "v1"], check=True)
    for link in ("v0", "v1"):
        subprocess.run(["ip", "-n", netns, "link", "set", link, "up"], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", "198.18.7.1/24", "dev", "v0"], check=True)
    for name, content in FILE_CONTENTS.items():
        if content is not None:
            write(workdir / name, content)
    files = "".join(f"track_file f_{n} {{\n    file {workdir / n}\n}}\n" for n in FILE_CONTENTS)
    text = f"""
global_defs {{
    router_id conformance
    script_user root
}}
vrrp_script chk {{
    script "/bin/true"
    interval 1
    weight 10
    rise 2
}}
{files}
vrrp_track_process procs {{
    process kpyt-none-such
    quorum 2
    quorum_max 5
    delay 0.5
}}
vrrp_instance VI {{
    state BACKUP
    interface v0
    virtual_router_id 51
    priority 100
    track_script {{
        chk weight 0
    }}
    track_file {{
{"".join(f"        f_{n} weight 1{chr(10)}" for n in FILE_CONTENTS)}    }}
    track_process {{
        procs
    }}
    virtual_ipaddress {{
        198.18.7.10/24
    }}
}}
"""
    conf = workdir / "keepalived.conf"
    conf.write_text(text)
    tmp = workdir / "tmp"
    tmp.mkdir()
    pids = [str(workdir / f"{p}.pid") for p in ("a", "v", "c", "b")]
    keepalived = subprocess.Popen(
        ["ip", "netns", "exec", netns, KEEPALIVED, "-n", "-l", "-D", "-f", str(conf),
         "-p", pids[0], "-r", pids[1], "-c", pids[2], "-b", pids[3]],
        env={**os.environ, "TMPDIR": str(tmp)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.5)         # the script has run, twice
        os.kill(keepalived.pid, signal.SIGUSR1)
        data = tmp / "keepalived.data"
        deadline = time.monotonic() + 10
        while not (data.exists() and "VRRP Track processes" in data.read_text()):
            assert time.monotonic() < deadline, "no data dump from keepalived"
            time.sleep(0.1)
        time.sleep(0.2)
        theirs = dump_sections(data.read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keepalived.pid, signal.SIGTERM)
        try:
            keepalived.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(keepalived.pid, signal.SIGKILL)
            keepalived.wait()

    root = load(str(conf), interfaces={"v0"}).root
    tracking = {("script", "chk"): [("VI", 0, False)], ("process", "procs"): [("VI", 0, False)],
                **{("file", f"f_{n}"): [("VI", 1, False)] for n in FILE_CONTENTS}}

    async def ours() -> list[str]:
        changes = Changes()
        trackers = Trackers(root, run_script, changes)
        started = time.time()
        await trackers.start()
        try:
            await changes.wait("script", "chk", True, after=started, timeout=3)
            await asyncio.sleep(1.2)        # a second run, as keepalived's had
            return trackers.dump_lines(tracking)
        finally:
            await trackers.stop()

    mine = asyncio.run(ours())
    assert mine == theirs
    assert "   Status = 16" in mine and "   Status = 2147483648" in mine


# -- reload ---------------------------------------------------------------------------


def test_reload_keeps_unchanged_trackers_running(workdir: Path) -> None:
    runs = workdir / "runs"
    value = workdir / "value"
    keep, change = workdir / "keep.sh", workdir / "change.sh"
    for script in (keep, change):
        script.write_text(f"#!/bin/sh\necho {script.stem} >> {runs}\nexit 0\n")
    write(value, "2\n")

    def text(rise: int, quorum_max: str = "") -> str:
        return f"""
vrrp_track_process procs {{
    process kpyt-none-such
    {quorum_max}
}}
vrrp_script keep {{
    script "/bin/sh {keep}"
    interval 5
}}
vrrp_script change {{
    script "/bin/sh {change}"
    interval 5
    rise {rise}
}}
track_file tf {{
    file {value}
}}
""" + instance("track_script {\n keep\n change\n }\n track_file {\n tf\n }\n"
               " track_process {\n procs\n }")

    async def scenario() -> None:
        changes = Changes()
        trackers = Trackers(config_root(text(1)), run_script, changes)
        started = time.time()
        await trackers.start()
        try:
            await changes.wait("script", "keep", True, after=started, timeout=3)
            await changes.wait("script", "change", True, after=started, timeout=3)
            assert trackers.status("process", "procs") is False
            await trackers.reload(config_root(text(3, "quorum_max 0")))
            assert trackers.status("process", "procs") is True       # none may run: none do
            # the redefined script carries its GOOD over (rise 1 -> 3: still at the
            # top) and runs at once; the unchanged one waits for its next tick
            assert trackers.status("script", "change") is True
            assert trackers.snapshot()["scripts"][1]["result"] == 3
            await asyncio.sleep(0.5)
            assert runs.read_text().split().count("change") == 2
            assert runs.read_text().split().count("keep") == 1
            assert trackers.status("file", "tf") == 2
            t = time.time()
            write(value, "6\n")
            await changes.wait("file", "tf", 6, after=t, timeout=1)
        finally:
            await trackers.stop()

    asyncio.run(scenario())


# -- vrrp_track_process -----------------------------------------------------------------


async def measure_processes(workdir: Path, events: bool) -> dict[str, Any]:
    """Real processes started and killed; returns the mode and the latencies."""
    name = f"kpyt{secrets.token_hex(4)}"
    renamed = f"kpyr{secrets.token_hex(4)}"
    link = workdir / name
    link.symlink_to(shutil.which("sleep") or "/bin/sleep")
    root = config_root(f"""
vrrp_track_process two {{
    process {name}
    quorum 2
}}
vrrp_track_process two_delayed {{
    process {name}
    quorum 2
    terminate_delay 0.5
}}
vrrp_track_process full {{
    process {link} 1000
    param_match partial
    quorum 2
}}
vrrp_track_process renamed {{
    process {renamed}
}}
""" + instance("track_process {\n two\n two_delayed\n full\n renamed\n }"))
    changes = Changes()
    trackers = Trackers(root, run_script, changes, process_events=events)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv)
        procs.append(proc)
        return proc

    out: dict[str, Any] = {}
    await trackers.start()
    try:
        out["mode"] = trackers.process_mode
        out["why"] = trackers.why_polling
        start_wait = POLL_INTERVAL + 2 if trackers.process_mode == POLLING else 2
        spawn([str(link), "1000", "1"])
        await asyncio.sleep(0.3 if events else POLL_INTERVAL + 0.3)
        out["one_running"] = {n: trackers.status("process", n) for n in trackers.names("process")}

        t = time.time()
        second = spawn([str(link), "1000"])
        out["gain"] = await changes.wait("process", "two", True, after=t,
                                         timeout=start_wait) - t
        out["gain_full"] = await changes.wait("process", "full", True, after=t,
                                              timeout=start_wait) - t

        t = time.time()
        second.kill()               # reaped later: the exit is seen at the zombie stage
        out["loss"] = await changes.wait("process", "two", False, after=t, timeout=2) - t
        out["loss_full"] = await changes.wait("process", "full", False, after=t, timeout=2) - t
        out["loss_delayed"] = await changes.wait("process", "two_delayed", False, after=t,
                                                 timeout=3) - t

        t = time.time()
        rename = (f"import ctypes, time; ctypes.CDLL(None).prctl(15, b'{renamed}'); "
                  "time.sleep(1000)")
        renamer = spawn([sys.executable, "-c", rename])
        out["renamed"] = await changes.wait("process", "renamed", True, after=t,
                                            timeout=start_wait) - t
        t = time.time()
        renamer.kill()
        out["renamed_exit"] = await changes.wait("process", "renamed", False, after=t,
                                                 timeout=2) - t
        out["mode_at_end"] = trackers.process_mode     # still events: the kernel confirmed
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        await trackers.stop()
    return out


def check_process_figures(out: dict[str, Any], *, polling: bool) -> None:
    assert out["mode_at_end"] == out["mode"]
    assert out["one_running"] == {"two": False, "two_delayed": False, "full": False,
                                  "renamed": False}
    new_process = POLL_INTERVAL + 0.5 if polling else 0.25
    assert out["gain"] < new_process and out["gain_full"] < new_process
    assert out["renamed"] < new_process + 0.5       # python itself takes a while to start
    # exits: connector events, or pidfds when polling -- never a scan away
    assert out["loss"] < 0.25 and out["loss_full"] < 0.25 and out["renamed_exit"] < 0.25
    assert 0.45 < out["loss_delayed"] < 0.9, "terminate_delay 0.5"


def report_figures(request: pytest.FixtureRequest, where: str, out: dict[str, Any]) -> None:
    from tests.integration.conftest import report
    report(request.config, f"track_process {where}: mode {out['mode']!r}, new process seen in "
           f"{out['gain'] * 1000:.1f} ms, exit in {out['loss'] * 1000:.1f} ms "
           f"(terminate_delay 0.5 s: {out['loss_delayed'] * 1000:.0f} ms)",
           tier="trackers")


def test_processes_from_the_current_namespace(workdir: Path,
                                              request: pytest.FixtureRequest) -> None:
    out = asyncio.run(measure_processes(workdir, events=True))
    report_figures(request, "in the test's own netns", out)
    assert out["mode"] in (EVENTS, EVENTS_VIA_INITIAL_NETNS)
    check_process_figures(out, polling=False)


def test_lost_process_events_are_made_up_by_a_rescan(workdir: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A tiny receive buffer (process_monitor_rcv_bufs) overflows while the loop is
    busy: the socket reports ENOBUFS, and a /proc rescan a second later counts
    what the lost events would have told."""
    name = f"kpyt{secrets.token_hex(4)}"
    link = workdir / name
    link.symlink_to(shutil.which("sleep") or "/bin/sleep")
    root = config_root(f"""
global_defs {{
    process_monitor_rcv_bufs 1
}}
vrrp_track_process p {{
    process {name}
    quorum 2
}}
""" + instance("track_process {\n p\n }"))

    async def scenario() -> None:
        changes = Changes()
        trackers = Trackers(root, run_script, changes)
        procs = []
        await trackers.start()
        try:
            assert trackers.process_mode in (EVENTS, EVENTS_VIA_INITIAL_NETNS)
            t = time.time()
            # the loop is held here: nothing reads the events of this burst
            procs = [subprocess.Popen([str(link), "1000"]) for _ in range(2)]
            for _ in range(100):
                subprocess.run(["true"], check=True)
            await changes.wait("process", "p", True, after=t, timeout=4)
            assert trackers.snapshot()["processes"][0]["current_processes"] == 2
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            await trackers.stop()

    with caplog.at_level("WARNING", logger="keepalived_py"):
        asyncio.run(scenario())
    assert "process events lost" in caplog.text


def in_netns(netns: str, mode: str, workdir: Path, *, wrapper: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    done = subprocess.run(["ip", "netns", "exec", netns, *wrapper, sys.executable, "-m",
                           "tests.integration.test_trackers_io", mode, str(workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_processes_from_a_fresh_namespace_via_setns(netns: str, workdir: Path,
                                                    request: pytest.FixtureRequest) -> None:
    """The connector refuses us in the namespace; the socket opened from a thread
    that joined the initial one carries the events."""
    out = in_netns(netns, "events", workdir)
    report_figures(request, "in a fresh netns", out)
    assert out["mode"] == EVENTS_VIA_INITIAL_NETNS
    check_process_figures(out, polling=False)


def test_processes_by_polling_without_the_privilege_to_join(
        netns: str, workdir: Path, request: pytest.FixtureRequest) -> None:
    """Without CAP_SYS_ADMIN the initial namespace cannot be joined: the watcher
    says why and polls."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        from tests.conftest import tier_missing
        tier_missing("root tier: setpriv (util-linux) is needed to drop CAP_SYS_ADMIN")
    out = in_netns(netns, "events", workdir,
                   wrapper=(setpriv, "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"))
    report_figures(request, "in a fresh netns without CAP_SYS_ADMIN", out)
    assert out["mode"] == POLLING
    assert "setns: Operation not permitted" in out["why"]
    check_process_figures(out, polling=True)


def test_processes_by_polling_in_a_fresh_namespace(netns: str, workdir: Path,
                                                   request: pytest.FixtureRequest) -> None:
    out = in_netns(netns, "poll", workdir)
    report_figures(request, "in a fresh netns, polling", out)
    assert out["mode"] == POLLING
    check_process_figures(out, polling=True)


if __name__ == "__main__":
    figures = asyncio.run(measure_processes(Path(sys.argv[2]), events=sys.argv[1] == "events"))
    print(json.dumps(figures))
