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
from keepalived_py.core.supervisor import (
    already_running,
    load_maintenance,
    next_delay,
    save_maintenance,
)


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


def test_already_running_reads_a_live_pid_only(tmp_path) -> None:  # noqa: ANN001
    pid_file = tmp_path / "k.pid"
    assert already_running(str(pid_file)) is None
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        assert already_running(str(pid_file)) == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert already_running(str(pid_file)) is None
    pid_file.write_text("garbage")
    assert already_running(str(pid_file)) is None


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



def test_maintenance_settings_round_trip_and_a_bad_file_is_ignored(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state" / "maintenance.json"
    assert load_maintenance(str(path)) == {}
    kept = {"VI_1": {"priority": None, "force_backup": True},
            "VI_2": {"priority": 50, "force_backup": False}}
    save_maintenance(str(path), kept)
    assert load_maintenance(str(path)) == kept
    for bad in ("{", '{"instances": []}', '{"instances": {"VI_1": {"priority": 300, '
                '"force_backup": false}}}', '{"instances": {"VI_1": {"priority": 5}}}'):
        path.write_text(bad)
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            assert load_maintenance(str(path)) == {}
        assert f"Ignoring the maintenance settings in {path}" in caplog.text
