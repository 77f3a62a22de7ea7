"""Trackers, sync groups, notify and mail with our agent, for real: processes in lab
namespaces, real scripts, files and processes, a real FIFO reader and a real SMTP
server.  keepalived 2.2.7's own notify argv and FIFO lines
(../shared/conformance/keepalived-2.2.7-runtime/tmp/) are the reference.

Routers use VRRPv3 with 0.1 s adverts so that failovers take a fraction of a
second; trackers keep their own pace (scripts run every second).
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import secrets
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.integration.agents import Router, vrrp_config, wait_for
from tests.integration.conftest import LabFactory
from tests.lab import Lab

VIP = "198.18.0.100"
VIP2 = "198.18.0.101"
FAST = "version 3\n    advert_int 0.1"
RUNTIME = SHARED / "conformance" / "keepalived-2.2.7-runtime"


def holder(routers: list[Router], vip: str = VIP) -> list[str]:
    return [r.name for r in routers if r.has(vip)]


def wait_holder(routers: list[Router], name: str, vip: str = VIP, timeout: float = 10) -> None:
    wait_for(f"{name} alone to hold {vip}", lambda: holder(routers, vip) == [name], timeout)


@pytest.fixture
def pair(lab_factory: LabFactory) -> Iterator[tuple[Lab, Path]]:
    lab = lab_factory(["a", "b"])
    workdir = Path(f"/tmp/kpy-track-{secrets.token_hex(3)}")
    workdir.mkdir(mode=0o755)
    try:
        yield lab, workdir
    finally:
        for path in sorted(workdir.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
        workdir.rmdir()


def start_pair(lab: Lab, tracking: str, blocks: str) -> list[Router]:
    """a (priority 150, with ``tracking`` in its instance and ``blocks`` beside it) and
    b (priority 100), both started."""
    a = Router(lab.host("a"), blocks + vrrp_config("a", priority=150,
                                                   extra=f"{FAST}\n    {tracking}"))
    b = Router(lab.host("b"), vrrp_config("b", priority=100, extra=FAST))
    return [a.start(), b.start()]


# -- a script, a file and a process each pull the master down and let it back -------

def test_a_script_pulls_the_master_down_and_lets_it_back(pair) -> None:  # noqa: ANN001
    lab, work = pair
    down = work / "down"
    routers = start_pair(lab, "track_script {\n        chk\n    }",
                         f'vrrp_script chk {{\n    script "/usr/bin/test ! -e {down}"\n'
                         "    interval 1\n}")
    try:
        wait_holder(routers, "a")
        down.touch()
        began = time.time()
        routers[0].wait_log("Entering FAULT STATE", began - 0.01, timeout=5)
        wait_holder(routers, "b")
        down.unlink()
        began = time.time()
        routers[0].wait_log("Entering MASTER STATE", began - 0.01, timeout=5)
        wait_holder(routers, "a")
    finally:
        for r in routers:
            r.close()


def test_a_file_moves_the_priority_and_the_master_with_it(pair) -> None:  # noqa: ANN001
    lab, work = pair
    value = work / "value"
    value.write_text("0\n")
    routers = start_pair(lab, "track_file {\n        tf weight -60\n    }",
                         f"track_file tf {{\n    file {value}\n}}")
    try:
        wait_holder(routers, "a")
        # 150 - 60 = 90 < 100: b preempts; written by rename, as tools do
        (work / "value.new").write_text("1\n")
        (work / "value.new").rename(value)
        routers[0].wait_log("Changing effective priority from 150 to 90", timeout=5)
        wait_holder(routers, "b")
        value.write_text("0\n")
        routers[0].wait_log("Changing effective priority from 90 to 150", timeout=5)
        wait_holder(routers, "a")
    finally:
        for r in routers:
            r.close()


def test_a_process_pulls_the_master_down_and_lets_it_back(pair) -> None:  # noqa: ANN001
    lab, work = pair
    name = f"kpy-{secrets.token_hex(4)}"         # unique: the kernel's events are global
    sentinel = work / name
    sentinel.symlink_to("/bin/sleep")

    def run_sentinel():  # noqa: ANN202 - a Popen
        return lab.host("a").spawn([str(sentinel), "600"])

    process = run_sentinel()
    routers = start_pair(lab, "track_process {\n        tp\n    }",
                         f"vrrp_track_process tp {{\n    process {name}\n}}")
    try:
        wait_holder(routers, "a")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        began = time.time()
        seen = routers[0].wait_log("Entering FAULT STATE", began - 0.01, timeout=5)
        wait_holder(routers, "b")
        process = run_sentinel()
        routers[0].wait_log("Entering MASTER STATE", time.time() - 0.01, timeout=5)
        wait_holder(routers, "a")
        # the kernel's process events, not a poll: the exit is seen at once
        assert seen - began < 0.5, f"process exit seen after {seen - began:.3f} s"
        assert "Quorum lost for tracked process tp" in routers[0].log_text()
    finally:
        with contextlib.suppress(ProcessLookupError):     # killed by the test already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for r in routers:
            r.close()


# -- a sync group fails over as one -------------------------------------------------------

def sync_config(name: str, priority: int, tracking: str = "") -> str:
    instances = "".join(f"""
vrrp_instance VI_{vrid} {{
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    {FAST}
    virtual_ipaddress {{
        {vip}/24
    }}
}}""" for vrid, vip in ((51, VIP), (52, VIP2)))
    group_tracks = "track_file {\n        tf weight 0\n    }" if tracking else ""
    return f"""
global_defs {{
    router_id {name}
}}
{tracking}
vrrp_sync_group SG {{
    group {{
        VI_51
        VI_52
    }}
    {group_tracks}
}}
{instances}
"""


def test_a_sync_group_fails_over_as_one(pair) -> None:  # noqa: ANN001
    lab, work = pair
    value = work / "value"
    value.write_text("0\n")
    a = Router(lab.host("a"), sync_config("a", 150, f"track_file tf {{\n    file {value}\n}}"))
    b = Router(lab.host("b"), sync_config("b", 100))
    routers = [a.start(), b.start()]
    try:
        for vip in (VIP, VIP2):
            wait_holder(routers, "a", vip)
        value.write_text("1\n")
        a.wait_log("VRRP_Group(SG) Syncing instances to FAULT state", timeout=5)
        for vip in (VIP, VIP2):
            wait_holder(routers, "b", vip)
        b.wait_log("VRRP_Group(SG) Syncing instances to MASTER state")
        value.write_text("0\n")
        for vip in (VIP, VIP2):
            wait_holder(routers, "a", vip)
        # both of a's instances entered MASTER together, each time
        entered = [t for t, m in a.messages() if "Entering MASTER STATE" in m]
        assert len(entered) == 4
        assert abs(entered[0] - entered[1]) < 0.05 and abs(entered[2] - entered[3]) < 0.05
    finally:
        for r in routers:
            r.close()


# -- notify argv and FIFO lines, byte for byte ------------------------------------------

def conformance_config(work: Path) -> str:
    """keepalived's run (vrrp_test.conf) on our lab: its addresses moved into 198.18.0.0/15
    and its relative paths made absolute; nothing else changed."""
    text = (RUNTIME / "vrrp_test.conf").read_text()
    return (text.replace("./tmp/", f"{work}/").replace("./notify.sh", f"{work}/notify.sh")
            .replace(" v0", " eth0").replace("v0:1", "eth0:1")
            .replace("192.168.77.1\n", "198.18.0.11\n")
            .replace("192.168.77.2\n", "198.18.0.99\n")
            .replace("192.168.77.", "198.18.77.").replace("10.99.0.0/16", "198.19.99.0/24")
            .replace("fd00::10/64", "2001:db8:77::10/64"))


def dump_sections(text: str) -> str:
    """The sync group and tracker sections of a keepalived.data."""
    start = text.index("------< VRRP Sync groups >------")
    return text[start:text.index("------< Interfaces >------")]


def read_fifo(lab: Lab, fifo: Path, into: Path):  # noqa: ANN201 - a Popen
    """A reader on host a that copies the FIFO's lines to a file as they come."""
    return lab.host("a").spawn([sys.executable, "-c", f"""
import os, time
while not os.path.exists({str(fifo)!r}):
    time.sleep(0.01)
with open({str(fifo)!r}, 'rb') as fifo, open({str(into)!r}, 'wb') as out:
    for line in fifo:
        out.write(line); out.flush()
"""])


@pytest.mark.skipif(not RUNTIME.is_dir(), reason=f"{RUNTIME} is absent: no reference to "
                    "compare with (CI has ../shared)")
def test_notify_argv_and_fifo_lines_are_keepalived_s(pair) -> None:  # noqa: ANN001
    lab, work = pair
    notify = work / "notify.sh"
    notify.write_text((RUNTIME / "notify.sh").read_text().replace("./tmp/", f"{work}/"))
    notify.chmod(0o755)
    fifo_log = work / "fifo.log"
    reader = read_fifo(lab, work / "notify.fifo", fifo_log)
    agent = Router(lab.host("a"), conformance_config(work)).start()
    try:
        agent.wait_log("(VI_1) Entering MASTER STATE", timeout=10)
        agent.wait_log("(VI_6) Entering MASTER STATE", timeout=10)
        # run.sh: the track file set to 1 (FAULT), then back to 0 (MASTER again)
        began = time.time()
        (work / "track_file_value_x").write_text("1\n")
        (work / "track_file_value_x").rename(work / "track_file_value")
        agent.wait_log("(VI_1) Entering FAULT STATE", began - 0.01, timeout=5)
        # run.sh: a data dump in the FAULT state; its sync group and tracker sections
        # are keepalived's, paths apart
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGUSR1)
        data = agent.dump_file("keepalived.data")
        wait_for("the data dump", lambda: data.exists() and "< Interfaces >" in data.read_text())
        reference = (RUNTIME / "tmp" / "keepalived.data.after_trackfile_fault").read_text()
        reference = reference.replace("./tmp/", f"{work}/").replace("./notify.sh",
                                                                     f"{work}/notify.sh")
        assert dump_sections(data.read_text()) == dump_sections(reference)
        (work / "track_file_value").write_text("0\n")
        began = time.time()
        agent.wait_log("(VI_1) Entering MASTER STATE", began - 0.01, timeout=10)
        time.sleep(0.3)
        agent.stop(signal.SIGTERM)
        reader.wait(10)
        # the capture begins with a line from run.sh's first reader, not from keepalived
        expected = b"".join(line for line in (RUNTIME / "tmp" / "notify_fifo.log")
                            .read_bytes().splitlines(keepends=True)
                            if not line.startswith(b"cat: "))
        # keepalived's capture lost the reader at the reload before the stop (run.sh);
        # here the reader runs to the end and also reads the STOP lines
        got = fifo_log.read_bytes()
        assert got[:len(expected)] == expected
        assert got[len(expected):] == b'INSTANCE "VI_1" STOP 150\nINSTANCE "VI_6" STOP 100\n' \
                                      b'GROUP "SG1" STOP 0\n'
        wait_for("notify.sh's last lines", lambda: len(
            (work / "notify.log").read_text().splitlines()) >= 12, timeout=5)
        args = [line.split(" args: ", 1)[1] for line in
                (work / "notify.log").read_text().splitlines()]
        reference = [line.split(" args: ", 1)[1] for line in
                     (RUNTIME / "tmp" / "notify.log").read_text().splitlines()]
        # the scripts run in parallel, so the instance's and the group's may swap places
        assert sorted(args) == sorted(reference)
        assert [a for a in args if a.startswith("INSTANCE")] == \
               [a for a in reference if a.startswith("INSTANCE")]
    finally:
        agent.close()
        reader.kill()


# -- script security ------------------------------------------------------------------

def test_an_insecure_script_is_refused_and_a_secure_one_runs(pair) -> None:  # noqa: ANN001
    lab, work = pair
    unsafe_dir = work / "unsafe"
    unsafe_dir.mkdir()
    unsafe_dir.chmod(0o777)                 # anyone may replace what is in it
    for directory, marker in ((unsafe_dir, "unsafe-ran"), (work, "safe-ran")):
        script = directory / "mark.sh"
        script.write_text(f"#!/bin/sh\necho \"$@\" >> {work / marker}\nexit 1\n")
        script.chmod(0o755)
    config = f"""
global_defs {{
    router_id a
    enable_script_security
    script_user root
}}
vrrp_script chk_unsafe {{
    script "{unsafe_dir / 'mark.sh'} check"
    interval 1
}}
vrrp_instance VI_51 {{
    interface eth0
    virtual_router_id 51
    priority 150
    {FAST}
    track_script {{
        chk_unsafe
    }}
    notify_master "{unsafe_dir / 'mark.sh'} master"
    notify "{work / 'mark.sh'} generic"
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""
    agent = Router(lab.host("a"), config).start()
    try:
        # The insecure track script is removed (keepalived: "Disabling track script ...
        # due to insecure"), so the instance is not held in FAULT by its failures.
        agent.wait_log("(VI_51) Entering MASTER STATE", timeout=10)
        wait_for("the secure notify script's line", lambda: (work / "safe-ran").exists())
        time.sleep(1.5)                     # a tracker would have run by now
        assert (work / "safe-ran").read_text().splitlines()[-1] == \
            "generic INSTANCE VI_51 MASTER 150"
        assert not (work / "unsafe-ran").exists()
        log = agent.log_text()
        assert "Disabling track script chk_unsafe due to insecure" in log
        assert "notify_master will not be run" in log
        mode = stat.S_IMODE(unsafe_dir.stat().st_mode)
        assert mode == 0o777
    finally:
        agent.close()


# -- e-mail -------------------------------------------------------------------------------

def test_smtp_alerts_reach_a_real_server(pair) -> None:  # noqa: ANN001
    lab, work = pair
    box = work / "mail"
    server = lab.host("a").spawn([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                                  "127.0.0.1:2525", "-c", "aiosmtpd.handlers.Mailbox",
                                  str(box)])
    config = vrrp_config("a", priority=150, extra=f"{FAST}\n    smtp_alert", globals_=(
        "smtp_server 127.0.0.1 2525\n    notification_email_from ha@example.org\n"
        "    notification_email {\n        ops@example.org\n    }"))
    try:
        wait_for("the SMTP server", lambda: box.exists(), timeout=10)
        agent = Router(lab.host("a"), config).start()
        try:
            agent.wait_log("(VI_51) Entering MASTER STATE", timeout=10)

            def subjects() -> list[str]:
                return [m["Subject"] for m in mailbox.Maildir(box, create=False)]

            wait_for("two alerts", lambda: len(subjects()) >= 2, timeout=10)
            got = sorted(mailbox.Maildir(box, create=False), key=lambda m: m["Date"])
            assert sorted(m["Subject"] for m in got) == [
                "[a] VRRP Instance VI_51 - Entering BACKUP state",
                "[a] VRRP Instance VI_51 - Entering MASTER state"]
            assert {m["From"] for m in got} == {"ha@example.org"}
            assert {m["To"] for m in got} == {"ops@example.org"}
            assert {m["X-Mailer"] for m in got} == {"Keepalived"}
        finally:
            agent.close()
    finally:
        server.terminate()
        server.wait(10)


# -- startup and shutdown scripts ------------------------------------------------------

def test_startup_and_shutdown_scripts_run_around_the_children(pair) -> None:  # noqa: ANN001
    lab, work = pair
    script = work / "stamp.sh"
    script.write_text(f"#!/bin/sh\nsleep 0.3\necho \"$1\" >> {work / 'stamps'}\n")
    script.chmod(0o755)
    agent = Router(lab.host("a"), vrrp_config("a", extra=FAST, globals_=(
        f"enable_script_security\n    script_user root\n"
        f"    startup_script \"{script} startup\"\n"
        f"    shutdown_script \"{script} shutdown\"\n    shutdown_script_timeout 5"))).start()
    try:
        agent.wait_log("(VI_51) Entering MASTER STATE", timeout=10)
        # the VRRP process started only once the startup script had finished
        assert (work / "stamps").read_text() == "startup\n"
        started = agent.times("Starting Keepalived_vrrp child process")[0]
        running = agent.times("Running startup script")[0]
        assert started - running >= 0.25
        agent.stop(signal.SIGTERM)
        assert (work / "stamps").read_text() == "startup\nshutdown\n"
    finally:
        agent.close()


def test_priority_changes_are_notified_when_asked(pair) -> None:  # noqa: ANN001
    lab, work = pair
    value = work / "value"
    value.write_text("0\n")
    fifo_log = work / "fifo.log"
    reader = read_fifo(lab, work / "notify.fifo", fifo_log)
    agent = Router(lab.host("a"), f"track_file tf {{\n    file {value}\n}}\n" + vrrp_config(
        "a", priority=150, extra=f"{FAST}\n    notify_priority_changes\n"
        "    track_file {\n        tf weight -60\n    }",
        globals_=f"notify_fifo {work / 'notify.fifo'}")).start()
    try:
        agent.wait_log("(VI_51) Entering MASTER STATE", timeout=10)
        value.write_text("1\n")
        agent.wait_log("Changing effective priority from 150 to 90", timeout=5)
        value.write_text("0\n")
        agent.wait_log("Changing effective priority from 90 to 150", timeout=5)
        wait_for("four FIFO lines", lambda: fifo_log.exists() and len(
            fifo_log.read_bytes().splitlines()) >= 4, timeout=5)
        assert fifo_log.read_bytes() == (b'INSTANCE "VI_51" BACKUP 150\n'
                                         b'INSTANCE "VI_51" MASTER 150\n'
                                         b'INSTANCE "VI_51" MASTER_PRIORITY 90\n'
                                         b'INSTANCE "VI_51" MASTER_PRIORITY 150\n')
    finally:
        agent.close()
        reader.kill()
