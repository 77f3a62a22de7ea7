"""The control socket over a real unix socket: server and client in this process,
and a client run as ``nobody`` in a child process for the root-only checks."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from keepalived_py.core import control
from keepalived_py.core.control import (
    MAX_LINE,
    ControlError,
    NoAnswerError,
    NotRunningError,
    PermissionDeniedError,
    SocketInUseError,
    query,
    serve_control,
)

from tests.conftest import tier_missing

NOBODY = 65534
STATUS = {"ok": True, "agent": {"version": "0.1.0", "pid": 1}, "vrrp": None}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Short and under /tmp: a unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="kpyctl-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


class Recorder:
    """A handle that answers every request with its name and remembers what it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if request["request"] == "status":
            return STATUS
        if request["request"] == "boom":
            raise RuntimeError("the handler broke")
        if request["request"] == "list":
            return [1, 2]  # type: ignore[return-value]
        if request["request"] == "nan":
            return {"ok": True, "value": float("nan")}
        return {"ok": True, "echo": request}


async def exchange(path: Path, payload: bytes, answers: int) -> list[dict[str, Any]]:
    """Write ``payload`` raw on one connection, end it, and read ``answers`` answer lines."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=8 * MAX_LINE)
    try:
        writer.write(payload)
        writer.write_eof()  # the server answers everything it got before the client's EOF
        await writer.drain()
        return [json.loads(await reader.readline()) for _ in range(answers)]
    finally:
        writer.close()


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


# Requests and answers -------------------------------------------------------------------


def test_query_gets_the_handlers_answer(sockdir: Path) -> None:
    path = sockdir / "control.sock"
    handle = Recorder()

    async def scenario() -> None:
        async with await serve_control(str(path), handle):
            answer = await asyncio.to_thread(query, str(path), {"request": "status"})
            assert answer == STATUS
            answer = await asyncio.to_thread(
                query, str(path), {"request": "dump", "what": "stats"})
            assert answer == {"ok": True, "echo": {"request": "dump", "what": "stats"}}

    run(scenario())
    assert handle.requests == [{"request": "status"}, {"request": "dump", "what": "stats"}]


def test_several_requests_on_one_connection_are_answered_in_order(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def scenario() -> list[dict[str, Any]]:
        async with await serve_control(str(path), Recorder()):
            payload = b"".join(line({"request": "reload", "n": n}) for n in range(5))
            # Blank lines are skipped, and a last line without its newline is answered.
            payload += b"\n\n" + json.dumps({"request": "reload", "n": 5}).encode()
            return await exchange(path, payload, 6)

    answers = run(scenario())
    assert [a["echo"]["n"] for a in answers] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("payload", "error"), [
    (b"this is not json\n", "bad request: not JSON"),
    (b"\xff\xfe\n", "bad request: not JSON"),
    (b"[1, 2, 3]\n", "bad request: expected a JSON object"),
    (b'"status"\n', "bad request: expected a JSON object"),
    (b'{"what": "stats"}\n', 'bad request: no "request" name'),
    (b'{"request": 7}\n', 'bad request: no "request" name'),
])
def test_bad_lines_get_an_error_and_the_connection_goes_on(
        sockdir: Path, payload: bytes, error: str) -> None:
    path = sockdir / "control.sock"
    handle = Recorder()

    async def scenario() -> list[dict[str, Any]]:
        async with await serve_control(str(path), handle):
            return await exchange(path, payload + line({"request": "status"}), 2)

    bad, good = run(scenario())
    assert bad["ok"] is False and bad["error"].startswith(error)
    assert good == STATUS
    assert handle.requests == [{"request": "status"}]


def test_an_oversized_line_is_refused_and_skipped(sockdir: Path) -> None:
    path = sockdir / "control.sock"
    handle = Recorder()
    # Exactly MAX_LINE bytes before the newline is still allowed; one more is not.
    head = b'{"request": "reload", "pad": "'
    fits = head + b"x" * (MAX_LINE - len(head) - 2) + b'"}\n'
    too_long = head + b"y" * (4 * MAX_LINE) + b'"}\n'
    assert len(fits) == MAX_LINE + 1

    async def scenario() -> list[dict[str, Any]]:
        async with await serve_control(str(path), handle):
            return await exchange(path, too_long + fits + line({"request": "status"}), 3)

    refused, fitted, status = run(scenario())
    assert refused == {"ok": False, "error": f"bad request: line longer than {MAX_LINE} bytes"}
    assert fitted["ok"] is True and len(fitted["echo"]["pad"]) == MAX_LINE - len(head) - 2
    assert status == STATUS
    assert [r["request"] for r in handle.requests] == ["reload", "status"]


def test_handler_failures_are_answered_and_the_server_goes_on(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def scenario() -> list[dict[str, Any]]:
        async with await serve_control(str(path), Recorder()):
            answers = []
            for name in ("boom", "list", "nan", "status"):
                answers.append(await asyncio.to_thread(query, str(path), {"request": name}))
            return answers

    boom, listed, nan, status = run(scenario())
    assert boom == {"ok": False, "error": "boom failed: RuntimeError: the handler broke"}
    assert listed == {"ok": False, "error": "list failed: the answer is not an object"}
    assert nan["ok"] is False and "cannot be encoded as JSON" in nan["error"]
    assert status == STATUS


def test_clients_are_served_at_the_same_time(sockdir: Path) -> None:
    path = sockdir / "control.sock"
    clients = 20
    arrived = 0

    async def scenario() -> list[dict[str, Any]]:
        all_in = asyncio.Event()

        async def handle(request: dict[str, Any]) -> dict[str, Any]:
            # Each answer waits until every client's request is in: served one at a
            # time, the first request would wait forever.
            nonlocal arrived
            arrived += 1
            if arrived == clients:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 10)
            return {"ok": True, "n": request["n"]}

        async with await serve_control(str(path), handle):
            answers = await asyncio.gather(*(
                exchange(path, line({"request": "status", "n": n}), 1) for n in range(clients)))
            return [a for (a,) in answers]

    answers = run(scenario())
    assert sorted(a["n"] for a in answers) == list(range(clients))


# The socket file ------------------------------------------------------------------------


def test_socket_is_0600_in_a_new_0700_directory(sockdir: Path) -> None:
    path = sockdir / "run" / "keepalived-py" / "control.sock"
    umask = os.umask(0o022)
    os.umask(umask)

    async def scenario() -> tuple[int, int]:
        async with await serve_control(str(path), Recorder()):
            return (stat.S_IMODE(path.stat().st_mode),
                    stat.S_IMODE(path.parent.stat().st_mode))

    socket_mode, dir_mode = run(scenario())
    assert socket_mode == 0o600
    assert dir_mode == 0o700
    assert os.umask(umask) == umask  # the process umask is left as it was


def test_close_removes_the_socket_file_even_with_a_client_connected(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def scenario() -> None:
        server = await serve_control(str(path), Recorder())
        assert stat.S_ISSOCK(path.stat().st_mode)
        _reader, idle = await asyncio.open_unix_connection(str(path))
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        idle.close()

    run(scenario())
    assert not path.exists()
    with pytest.raises(NotRunningError,
                       match=f"^keepalived-py is not running \\(no socket at {path}\\)$"):
        query(str(path), {"request": "status"})


def test_a_stale_socket_file_is_replaced(sockdir: Path) -> None:
    path = sockdir / "control.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # left behind, with no listener: like a crashed agent's
    os.chmod(path, 0o666)
    with pytest.raises(NotRunningError, match="not running \\(stale socket at "):
        query(str(path), {"request": "status"})

    async def scenario() -> dict[str, Any]:
        async with await serve_control(str(path), Recorder()):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            return await asyncio.to_thread(query, str(path), {"request": "status"})

    assert run(scenario()) == STATUS


def test_a_live_socket_is_not_taken_over(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def scenario() -> dict[str, Any]:
        async with await serve_control(str(path), Recorder()):
            inode = path.stat().st_ino
            with pytest.raises(SocketInUseError,
                               match=f"another keepalived-py is running: .* on {path}"):
                await serve_control(str(path), Recorder())
            assert path.stat().st_ino == inode
            return await asyncio.to_thread(query, str(path), {"request": "status"})

    assert run(scenario()) == STATUS


def test_a_file_that_is_not_a_socket_is_left_alone(sockdir: Path) -> None:
    path = sockdir / "control.sock"
    path.write_text("keep me")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        run(serve_control(str(path), Recorder()))
    assert path.read_text() == "keep me"


def test_close_leaves_a_successors_socket_alone(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def scenario() -> None:
        first = await serve_control(str(path), Recorder())
        path.unlink()  # as if someone removed it and another agent bound anew
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))
            first.close()
            await first.wait_closed()
            assert path.exists()

    run(scenario())


# The client -----------------------------------------------------------------------------


def test_query_gives_up_after_its_timeout(sockdir: Path) -> None:
    path = sockdir / "control.sock"

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"ok": True}

    async def scenario() -> None:
        async with await serve_control(str(path), slow):
            with pytest.raises(NoAnswerError,
                               match="^no answer from keepalived-py within 0.3 s$"):
                await asyncio.to_thread(query, str(path), {"request": "status"}, 0.3)

    run(scenario())


def test_query_reports_a_peer_that_closes_without_answering(sockdir: Path) -> None:
    path = sockdir / "mute.sock"
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(path))
        mute.listen()

        def accept_and_close() -> None:
            conn, _ = mute.accept()
            conn.recv(1024)
            conn.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        with pytest.raises(ControlError, match="closed the connection without an answer"):
            query(str(path), {"request": "status"})
        thread.join()


# Root only: a real client running as nobody ----------------------------------------------


_CLIENT = r"""
import json, os, socket, sys, types
source, path, how = sys.stdin.read(), sys.argv[1], sys.argv[2]
control = types.ModuleType("control")
exec(compile(source, "control.py", "exec"), control.__dict__)
out = {"uid": os.getuid()}
if how == "query":
    try:
        out["answer"] = control.query(path, {"request": "status"}, 5.0)
    except control.ControlError as exc:
        out["raised"], out["message"] = type(exc).__name__, str(exc)
else:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError as exc:
        out["errno"] = exc.errno
    else:
        try:
            s.sendall(b'{"request": "status"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the request went out: the answer is still there
        out["raw"] = s.makefile("rb").readline().decode()
        try:
            out["then"] = s.recv(100).decode()  # "" once the server has closed
        except ConnectionResetError:
            out["then"] = ""  # closed, with our unread request still in its buffer
print(json.dumps(out))
"""


async def as_nobody(path: Path, how: str) -> dict[str, Any]:
    """Run the real ``query`` (or a raw exchange) in a process whose uid is nobody's."""
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        sys.executable, "-I", "-c", _CLIENT, str(path), how,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    source = Path(control.__file__).read_bytes()
    out, err = await proc.communicate(source)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    assert result["uid"] == NOBODY
    return result


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        tier_missing("control-socket root tier: running a client as nobody needs root "
                     "(setpriv); the root-only refusal was not tested")


def test_a_non_root_client_is_refused_by_mode_then_by_peer_credentials(
        root: None, sockdir: Path) -> None:
    os.chmod(sockdir, 0o755)  # nobody may reach the socket: its own mode is what refuses
    path = sockdir / "control.sock"
    handle = Recorder()

    async def scenario() -> tuple[dict[str, Any], ...]:
        async with await serve_control(str(path), handle):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            by_mode = (await as_nobody(path, "raw"), await as_nobody(path, "query"))
            # Widened by hand: the server's SO_PEERCRED check must still refuse.
            os.chmod(path, 0o666)
            by_creds = (await as_nobody(path, "raw"), await as_nobody(path, "query"))
            mine = await asyncio.to_thread(query, str(path), {"request": "status"})
            return (*by_mode, *by_creds, mine)

    mode_raw, mode_query, creds_raw, creds_query, mine = run(scenario())

    assert mode_raw["errno"] == errno.EACCES
    assert mode_query == {"uid": NOBODY, "raised": "PermissionDeniedError",
                          "message": f"permission denied on {path}: root only"}

    assert json.loads(creds_raw["raw"]) == {"ok": False, "error": "permission denied: root only"}
    assert creds_raw["then"] == ""
    assert creds_query == {"uid": NOBODY, "raised": "PermissionDeniedError",
                           "message": f"permission denied on {path}: root only "
                                      "(refused by keepalived-py)"}

    assert handle.requests == [{"request": "status"}]  # root's only: nobody never got through
    assert mine == STATUS


def test_permission_denied_is_a_control_error() -> None:
    # The CLI and the Ansible modules catch ControlError alone.
    for kind in (NotRunningError, PermissionDeniedError, NoAnswerError, SocketInUseError):
        assert issubclass(kind, ControlError)

