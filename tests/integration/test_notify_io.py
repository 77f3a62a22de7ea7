"""Notify scripts, notify FIFOs and script processes for real (root).

Real FIFOs with real reader processes, real shell scripts recording what they
got, real users and process groups; keepalived 2.2.7's own run
(shared/conformance/keepalived-2.2.7-runtime) is the reference for the lines and
argv, and keepalived itself, run here, for the way a script line becomes argv.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from keepalived_py.config import load
from keepalived_py.config.diag import Level
from keepalived_py.config.script_words import split_script_line
from keepalived_py.host.fifo import NotifyFifo
from keepalived_py.host.scripts import (
    ScriptUser,
    config_scripts,
    lookup_user,
    run_script,
    spawn_script,
)
from keepalived_py.vrrp.notify import Notifier

from tests.conftest import REPO, SHARED, tier_missing

RUN_DIR = SHARED / "conformance" / "keepalived-2.2.7-runtime"
ROOT = ScriptUser(0, 0, "root")
_LINE = re.compile(r'^(INSTANCE|GROUP) "([^"]+)" (\S+) (\d+)$')


@pytest.fixture(autouse=True)
def _root(root_only: None) -> None:
    """Every test here needs root: other users, chown, process groups of other users."""


@pytest.fixture
def runtime_capture() -> Path:
    if not (RUN_DIR / "tmp" / "notify_fifo.log").is_file():
        tier_missing(f"conformance tier: keepalived 2.2.7 runtime capture not found at {RUN_DIR}")
    return RUN_DIR


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may walk to (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kpy-notify-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


# -- the reference run, replayed ------------------------------------------------------

def test_replay_of_keepalived_s_run(runtime_capture: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """vrrp_test.conf and notify.sh as keepalived ran them, the same transitions, a reader
    on the FIFO started late, a reload, a stop: the reader gets keepalived's bytes and
    notify.sh records keepalived's argv."""
    capture = (runtime_capture / "tmp" / "notify_fifo.log").read_bytes()
    expected_fifo = b"".join(line + b"\n" for line in capture.splitlines()
                             if _LINE.match(line.decode()))
    expected_argv = [line.split(" ", 1)[1] for line in
                     lines_of(runtime_capture / "tmp" / "notify.log")]
    events = [_LINE.match(line).groups() for line in expected_fifo.decode().splitlines()]

    shutil.copy(runtime_capture / "notify.sh", tmp_path / "notify.sh")
    (tmp_path / "notify.sh").chmod(0o755)
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path)                   # the config names ./notify.sh, ./tmp/...
    root = load(str(runtime_capture / "vrrp_test.conf"), interfaces={"v0"}).root
    checked = config_scripts(root)
    assert [d for d in checked.diagnostics if d.level > Level.OK] == []
    fifo = tmp_path / "tmp" / "notify.fifo"
    notify_log = tmp_path / "tmp" / "notify.log"
    received = tmp_path / "received"

    async def scenario() -> subprocess.Popen[bytes]:
        notifier = Notifier(root, checked)
        notifier.start()
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        assert stat.S_IMODE(fifo.lstat().st_mode) == 0o600
        reader = None
        scripted = 0
        for kind, name, state, priority in events:
            if kind == "INSTANCE":
                notifier.instance(name, state, int(priority))
                scripted += name == "VI_1"
                continue
            notifier.group(name, state)
            scripted += 1
            # one step at a time, as the transitions were seconds apart
            assert await async_wait_until(lambda n=scripted: len(lines_of(notify_log)) == n)
            if reader is None:          # lines written before a reader wait in the pipe
                reader = subprocess.Popen(["cat", str(fifo)], stdout=received.open("wb"))
        await notifier.reload(root)     # the FIFO is made anew: the reader sees its end
        assert reader is not None
        assert await async_wait_until(lambda: reader.poll() is not None)
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        await notifier.stop()
        await notifier.close()
        return reader

    reader = asyncio.run(scenario())
    assert reader.returncode == 0
    assert received.read_bytes() == expected_fifo
    got = [line.split(" ", 1)[1] for line in lines_of(notify_log)]
    # the instance's and the group's scripts of one step run side by side
    assert [sorted(got[i:i + 2]) for i in range(0, len(got), 2)] == \
        [sorted(expected_argv[i:i + 2]) for i in range(0, len(expected_argv), 2)]
    assert fifo.exists()        # 2.2.7 leaves a lone global notify_fifo behind at exit


# -- FIFO scripts ------------------------------------------------------------------

def test_fifo_script_gets_the_path_and_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "script.log"
    received = tmp_path / "lines.log"
    fifo_script = script(tmp_path / "fifo.sh", f"""
trap 'echo TERM >> {record}; exit 0' TERM
for a in "$@"; do printf '[%s]' "$a"; done >> {record}
echo >> {record}
cat "$2" >> {received} &
wait
""")
    fifo = tmp_path / "v.fifo"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""global_defs {{
    enable_script_security
    script_user root
    vrrp_notify_fifo {fifo}
    vrrp_notify_fifo_script "{fifo_script} arg1"
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    priority 120
}}
""")
    root = load(str(conf), interfaces={"eth0"}).root

    async def scenario() -> int:
        notifier = Notifier(root)
        notifier.start()
        [opened] = notifier.fifos
        assert opened.process is not None
        pid = opened.process.pid
        assert await async_wait_until(lambda: len(lines_of(record)) == 1)
        notifier.instance("VI_1", "MASTER", 120)
        notifier.priority_changed("VI_1", "MASTER", 110)    # not asked for: no line
        notifier.rx_lower_priority("VI_1", 110)
        assert await async_wait_until(lambda: len(lines_of(received)) == 2)
        await notifier.close()
        return pid

    pid = asyncio.run(scenario())
    assert lines_of(record) == [f"[arg1][{fifo}]", "TERM"]
    assert lines_of(received) == ['INSTANCE "VI_1" MASTER 120',
                                  'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 110']
    assert not fifo.exists()            # vrrp_notify_fifo: removed, as keepalived does
    assert not alive(pid)


def test_writing_never_waits_for_a_reader(tmp_path: Path) -> None:
    fifo = NotifyFifo(str(tmp_path / "n.fifo"), lookup_user("nobody"))
    assert fifo.open()
    st = (tmp_path / "n.fifo").lstat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    started = time.monotonic()
    for n in range(20000):              # far more than a pipe holds: the rest is dropped
        fifo.write(f'INSTANCE "VI_{n}" MASTER 100\n')
    assert time.monotonic() - started < 5
    asyncio.run(fifo.close())
    assert not (tmp_path / "n.fifo").exists()


def test_an_existing_file_is_used_as_it_is(tmp_path: Path) -> None:
    """keepalived opens whatever is at the path; a regular file gets the lines written
    over it from the start, and stays (we did not create it)."""
    path = tmp_path / "plain"
    path.write_text("0123456789" * 5)
    fifo = NotifyFifo(str(path), ROOT)
    assert fifo.open()
    fifo.write('GROUP "SG1" FAULT 0\n')
    asyncio.run(fifo.close())
    assert path.read_text() == 'GROUP "SG1" FAULT 0\n' + ("0123456789" * 5)[20:]
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert not NotifyFifo(str(tmp_path / "link"), ROOT).open()     # never followed


# -- script security -----------------------------------------------------------------

@pytest.mark.parametrize("unsafe", ["world-writable directory", "owned by nobody"])
def test_insecure_script_is_refused_with_script_security(tmp_path: Path, unsafe: str) -> None:
    marker = tmp_path / "ran"
    safe_log = tmp_path / "safe.log"
    directory = tmp_path / "scripts"
    directory.mkdir()
    bad = script(directory / "master.sh", f"echo ran >> {marker}\n")
    safe = script(tmp_path / "notify.sh", f'echo "$@" >> {safe_log}\n')
    if unsafe == "owned by nobody":
        os.chown(bad, 65534, 65534)
    else:
        directory.chmod(0o777)

    def run(security: bool) -> list[str]:
        marker.unlink(missing_ok=True)
        safe_log.unlink(missing_ok=True)
        conf = tmp_path / "keepalived.conf"
        conf.write_text(f"""global_defs {{
    {"enable_script_security" if security else ""}
    script_user root
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    notify_master {bad}
    notify {safe}
}}
""")
        root = load(str(conf), interfaces={"eth0"}).root
        checked = config_scripts(root)

        async def scenario() -> None:
            notifier = Notifier(root, checked)
            notifier.start()
            notifier.instance("VI_1", "MASTER", 100)
            assert await async_wait_until(safe_log.exists)
            await asyncio.sleep(0.3)    # time enough for the other script to have run
            await notifier.close()

        asyncio.run(scenario())
        return [str(d) for d in checked.diagnostics]

    refused = run(security=True)
    assert not marker.exists()
    assert f"{conf_where(tmp_path, 8)}: Unsafe permissions found for script '{bad}' - " \
        "disabling." in refused
    assert lines_of(safe_log) == ["INSTANCE VI_1 MASTER 100"]

    allowed = run(security=False)
    assert lines_of(marker) == ["ran"]
    assert f"{conf_where(tmp_path, 8)}: Unsafe permissions found for script '{bad}'." in allowed
    assert "SECURITY VIOLATION - scripts are being executed but script_security not enabled." \
        " There are insecure scripts." in allowed


def conf_where(tmp_path: Path, line: int) -> str:
    return f"{tmp_path / 'keepalived.conf'}:{line}"


# -- processes --------------------------------------------------------------------------

def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def test_script_runs_as_its_user_in_its_own_group() -> None:
    nobody = lookup_user("nobody")

    async def scenario() -> tuple[dict[str, list[str]], int, int]:
        process = spawn_script(["/bin/sleep", "30"], nobody)
        assert process is not None
        try:
            return _status(process.pid), os.getpgid(process.pid), process.pid
        finally:
            await process.terminate()

    status, pgid, pid = asyncio.run(scenario())
    assert status["Uid"] == ["65534"] * 4 and status["Gid"] == ["65534"] * 4
    assert status["Groups"] == ["65534"]
    assert status["Umask"] == ["0177"]                  # keepalived's umask
    assert status["SigBlk"] == ["0000000000000000"]
    assert pgid == pid != os.getpgid(0)
    assert not alive(pid)


def test_exit_status_and_signals() -> None:
    async def scenario() -> list[int | None]:
        return [await run_script(["/bin/sh", "-c", "exit 3"], ROOT, 5),
                await run_script(["/bin/sh", "-c", "kill -KILL $$"], ROOT, 5),
                await run_script(["/nonexistent/script"], ROOT, 5),   # keepalived: exit 0
                await run_script(["</etc/hostname"], ROOT, 5, shell=True),
                await run_script(["</nonexistent"], ROOT, 5, shell=True)]

    ok, killed, missing, readable, unreadable = asyncio.run(scenario())
    assert (ok, killed, missing, readable) == (3, -signal.SIGKILL, 0, 0)
    assert unreadable not in (0, None)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"

    async def scenario(body: str, timeout: float) -> tuple[int | None, float]:
        started = time.monotonic()
        status = await run_script(["/bin/sh", "-c", body], ROOT, timeout)
        return status, time.monotonic() - started

    # the shell dies of the SIGTERM; what it started goes with its group
    status, took = asyncio.run(scenario(f"sleep 60 & echo $! > {pid_file}; wait", 0.5))
    assert status is None and 0.5 <= took < 2
    child = int(pid_file.read_text())
    assert wait_until(lambda: not alive(child), 2)

    # a script deaf to SIGTERM gets SIGKILL 2 s later, with everything it started
    status, took = asyncio.run(scenario(
        f"trap '' TERM; sleep 60 & echo $! > {pid_file}; wait; wait", 0.5))
    assert status is None and 2.5 <= took < 4
    child = int(pid_file.read_text())
    assert wait_until(lambda: not alive(child), 2)

    # one that exits on its own when asked counts with its own status, as in keepalived
    status, _ = asyncio.run(scenario("trap 'exit 0' TERM; sleep 60 & wait", 0.5))
    assert status == 0


def test_script_gets_sigterm_when_we_die(tmp_path: Path) -> None:
    record = tmp_path / "term"
    body = f"trap 'echo TERM > {record}; exit 0' TERM; while :; do sleep 0.1; done"
    parent = f"""
import asyncio, os, sys
from keepalived_py.host.scripts import our_user, spawn_script
async def main():
    process = spawn_script(["/bin/sh", "-c", {body!r}], our_user())
    print(process.pid, flush=True)
    await asyncio.sleep(0.3)
    os._exit(0)
asyncio.run(main())
"""
    run = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         timeout=30, cwd=REPO, check=True)
    pid = int(run.stdout)
    assert wait_until(record.exists, 5), "the script outlived us"
    assert record.read_text() == "TERM\n"
    assert wait_until(lambda: not alive(pid), 2)


# -- keepalived itself as the reference ------------------------------------------------

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


def test_keepalived_splits_script_lines_as_we_do(netns: str, tmp_path: Path) -> None:
    """keepalived runs notify_backup lines with quotes and escapes; the argv its script
    records is split_script_line's.  Its notify FIFO's mode and owner are ours too."""
    if not os.access(KEEPALIVED, os.X_OK):
        tier_missing("reference tier: keepalived 2.2.7 is not installed")
    records = tmp_path / "argv"
    records.mkdir()
    recorder = script(tmp_path / "rec.sh",      # one file per run: the two run side by side
                      f"for a in \"$@\"; do printf '%s\\0' \"$a\"; done > {records}/$$\n")
    lines = [
        f"notify_backup \"{recorder} a\\x41b 'c d' \\\\\\\"e\\\\\\\" f\\\\ g\" root",
        f"notify \"{recorder} \\t\\101 '' \\\"x y\\\"\" root root",
    ]
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""global_defs {{
    enable_script_security
    script_user root
    notify_fifo {tmp_path}/ka.fifo nobody
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface d0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {{
        198.18.0.10/24
    }}
    {lines[0]}
    {lines[1]}
}}
""")
    for command in (["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["link", "set", "d0", "up"], ["link", "set", "d1", "up"],
                    ["addr", "add", "198.18.0.1/24", "dev", "d0"]):
        subprocess.run(["ip", "-n", netns, *command], check=True)
    pids = [f"{tmp_path}/{name}.pid" for name in ("ka", "vrrp", "chk", "bfd")]
    keepalived = subprocess.Popen(
        ["ip", "netns", "exec", netns, KEEPALIVED, "-n", "-l", "-f", str(conf),
         "-p", pids[0], "-r", pids[1], "-c", pids[2], "-b", pids[3]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(list(records.iterdir())) >= 2, 10), "keepalived ran nothing"
        ka_fifo = (tmp_path / "ka.fifo").lstat()
    finally:
        keepalived.terminate()
        keepalived.wait(15)
    recorded = {tuple(os.fsdecode(f.read_bytes()).split("\0")[:-1]) for f in records.iterdir()}
    backup_argv, _ = split_script_line(lines[0])
    notify_argv, users = split_script_line(lines[1])
    assert users == ["root", "root"]
    assert recorded == {tuple(backup_argv[1:]),
                        (*notify_argv[1:], "INSTANCE", "VI_1", "BACKUP", "100"),
                        (*notify_argv[1:], "INSTANCE", "VI_1", "STOP", "100")}

    ours = NotifyFifo(str(tmp_path / "our.fifo"), lookup_user("nobody"))
    assert ours.open()
    our_fifo = (tmp_path / "our.fifo").lstat()
    asyncio.run(ours.close())
    assert (stat.filemode(our_fifo.st_mode), our_fifo.st_uid, our_fifo.st_gid) == \
        (stat.filemode(ka_fifo.st_mode), ka_fifo.st_uid, ka_fifo.st_gid)
