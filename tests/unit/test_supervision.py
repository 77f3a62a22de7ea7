"""The parent's pieces that need no processes: back-off, the IPC line, logging, signals."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import socket
import subprocess

import pytest
from keepalived_py.cli import SIGNALS, main
from keepalived_py.core import logs
from keepalived_py.core.ipc import Channel, ChannelClosed
from keepalived_py.core.paths import live_pid
from keepalived_py.core.supervisor import load_kept, next_delay, save_kept
from keepalived_py.vrrp.main import kept_overrides
from keepalived_py.vrrp.runtime import Override


def test_back_off_follows_keepalived_calc_restart_delay() -> None:
    # keepalived: at once, then 1, 2, 4 ... doubling, 60 once past 30; a child
    # that ran 60 s or more restarts at once and the sequence starts over.
    delay, waits = 0, []
    for _ in range(9):
        wait, delay = next_delay(uptime=1.0, delay=delay)
        waits.append(wait)
    assert waits == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert next_delay(uptime=60.0, delay=60) == (0, 0)
    assert next_delay(uptime=59.9, delay=0) == (0, 1)


def test_channel_answers_requests_and_passes_events() -> None:
    async def scenario() -> None:
        a, b = socket.socketpair()
        parent, child = await Channel.open(a), await Channel.open(b)
        events = []

        def on_child_message(message: dict) -> None:
            child.reply(message, {"ok": True, "echo": message["request"]})

        serving = [asyncio.create_task(child.serve(on_child_message)),
                   asyncio.create_task(parent.serve(events.append))]
        assert await parent.request({"request": "snapshot"}, 2) == {
            "ok": True, "echo": "snapshot", "reply_to": 1}
        child.writer.write(b"not json\n[1, 2]\n")
        child.send({"event": "heartbeat", "states": {"VI_1": "MASTER"}})
        await asyncio.sleep(0.05)
        assert events == [{"event": "heartbeat", "states": {"VI_1": "MASTER"}}]
        # the child goes away: a pending request fails at once instead of hanging
        serving[0].cancel()
        pending = asyncio.create_task(parent.request({"request": "snapshot"}, 5))
        await asyncio.sleep(0.05)
        child.close()
        with pytest.raises(ChannelClosed):
            await pending
        parent.close()
        await asyncio.gather(*serving, return_exceptions=True)

    asyncio.run(scenario())


def test_live_pid_reads_a_live_pid_only(tmp_path) -> None:  # noqa: ANN001
    pid_file = tmp_path / "k.pid"
    assert live_pid(str(pid_file)) is None
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        assert live_pid(str(pid_file)) == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert live_pid(str(pid_file)) is None
    pid_file.write_text("garbage")
    assert live_pid(str(pid_file)) is None
    pid_file.write_text(f"{os.getpid()}\n")
    assert live_pid(str(pid_file)) is None       # ourselves


def test_journal_stream_gets_priority_prefixes(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "out"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        try:
            logs.setup("Keepalived", logs.LogOptions(console=True), stream=stream)
            log = logging.getLogger("keepalived_py.test")
            log.info("(VI_1) Entering MASTER STATE")
            log.error("bad thing")
        finally:
            del os.environ["JOURNAL_STREAM"]
    assert path.read_text().splitlines() == ["<6>(VI_1) Entering MASTER STATE", "<3>bad thing"]


def test_console_lines_carry_keepalived_time_stamps() -> None:
    stream = io.StringIO()
    logs.setup("Keepalived", logs.LogOptions(console=True), stream=stream)
    logging.getLogger("keepalived_py").info("Startup complete")
    line = stream.getvalue().strip()
    assert line.endswith(": Startup complete")
    assert len(line.split(": ", 1)[0].split()) == 5     # "Sat Nov 21 08:47:07.276 2026"


@pytest.mark.parametrize("name", list(SIGNALS))
def test_signum_prints_the_signal_numbers(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--signum", name]) == 0
    number = int(capsys.readouterr().out)
    assert number == int(SIGNALS[name])
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if os.path.exists(keepalived):
        theirs = subprocess.run([keepalived, f"--signum={name}"], capture_output=True,
                                text=True, timeout=10)
        assert int(theirs.stdout) == number, f"keepalived says {theirs.stdout!r}"



def test_kept_settings_round_trip_and_a_bad_file_is_ignored(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state" / "maintenance.json"
    assert load_kept(str(path)) == {}
    kept = {"vrrp": {"VI_1": {"priority": None, "force_backup": True},
                     "VI_2": {"priority": 50, "force_backup": False}}}
    save_kept(str(path), kept)
    assert load_kept(str(path)) == kept
    # the file of 0.1.0: VRRP's instances alone
    path.write_text('{"schema_version": 1, "instances": {"VI_1": {"priority": 7, '
                    '"force_backup": false}}}')
    assert load_kept(str(path)) == {"vrrp": {"VI_1": {"priority": 7, "force_backup": False}}}
    for bad in ("{", '{"instances": []}', '{"schema_version": 2, "children": {"vrrp": 3}}',
                '{"schema_version": 2, "children": {"vrrp": {"VI_1": 5}}}'):
        path.write_text(bad)
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            assert load_kept(str(path)) == {}
        assert f"Ignoring the maintenance settings in {path}" in caplog.text


def test_vrrp_checks_the_kept_settings_it_is_given(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        overrides = kept_overrides({"VI_1": {"priority": 300, "force_backup": False},
                                    "VI_2": {"priority": 5},
                                    "VI_3": {"priority": None, "force_backup": True}})
    assert overrides == {"VI_3": Override(None, True)}
    assert "(VI_1) ignoring the kept maintenance setting" in caplog.text
    assert "(VI_2) ignoring the kept maintenance setting" in caplog.text
