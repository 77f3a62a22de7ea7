"""The control socket: newline-delimited JSON between the parent process and its clients.

The parent listens on a unix stream socket (``control.sock`` in the agent's run
directory, ``core/paths.py``; mode 0600).  A client writes one JSON object per
line and reads one JSON object per line back, in order; it may send several
requests on one connection.  Only root may talk to it (or the agent's own user,
when the agent does not run as root): the file mode keeps others out, and the
peer's credentials (``SO_PEERCRED``) are checked too, in case the file mode was
widened.

Every request is ``{"request": NAME, ...}``.  This module only carries them; the
parent's ``handle`` coroutine answers them:

==============  ==========================  ===================================================
request         other fields                answer
==============  ==========================  ===================================================
``status``      none                        ``{"ok": true, "agent": {...}, "vrrp": {...}}``;
                                            ``"vrrp"`` is null when no VRRP child runs
``reload``      none                        ``{"ok": true, "children": {...}}`` once every
                                            child has reloaded, as SIGHUP does
``dump``        ``"what"``: ``data``,       ``{"ok": true, ...}`` once the file is written, as
                ``stats``, ``stats_clear``  SIGUSR1 (data), SIGUSR2 (stats) and keepalived's
                or ``json``                 STATS_CLEAR and JSON signals do
``set``         ``instance``, ``priority``  maintenance: a priority override (null clears
                and/or ``force_backup``     it) or a forced BACKUP, kept across reloads
==============  ==========================  ===================================================

Any failure is ``{"ok": false, "error": TEXT}``: a line that is not a JSON object
with a string ``"request"``, a line over ``MAX_LINE`` bytes, an answer that cannot
be encoded, an exception in ``handle``, or a peer that is not root (that one is
answered ``PERMISSION_DENIED`` and the connection is closed).  The server keeps
serving after any of them.

``query`` is the blocking client for the CLI and for the Ansible modules on the
target host, so it uses nothing but the standard library.  It returns the answer,
``"ok"`` true or false, and raises a ``ControlError`` subclass when there is none:
``NotRunningError``, ``PermissionDeniedError`` (the file mode's EACCES, or the
agent's ``PERMISSION_DENIED`` answer) or ``NoAnswerError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("keepalived_py.control")

MAX_LINE = 64 * 1024
PERMISSION_DENIED = "permission denied: root only"

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlError(Exception):
    """Talking to the control socket failed; the message is meant for a person."""


class NotRunningError(ControlError):
    """Nothing listens on the socket."""


class PermissionDeniedError(ControlError):
    """The caller is not root: refused by the file mode or by the agent."""


class NoAnswerError(ControlError):
    """The agent did not answer in time."""


class SocketInUseError(ControlError):
    """Another live server answers on the socket path."""


# Server ---------------------------------------------------------------------------------


class ControlServer(asyncio.AbstractServer):
    """The listening server; ``close`` also ends open connections and removes the file."""

    def __init__(self, server: asyncio.Server, path: str, identity: tuple[int, int],
                 connections: set[asyncio.Task[None]]) -> None:
        self._server = server
        self._path = path
        self._identity = identity
        self._connections = connections

    @property
    def path(self) -> str:
        return self._path

    @property
    def sockets(self) -> tuple[Any, ...]:
        return self._server.sockets

    def close(self) -> None:
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        self._remove_socket_file()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        try:
            await self._server.serve_forever()
        finally:
            self.close()

    def _remove_socket_file(self) -> None:
        # Only our own file: a successor may already have bound a new socket there.
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            _unlink_quietly(self._path)


async def serve_control(path: str, handle: Handler) -> ControlServer:
    """Listen on ``path`` and answer each request line with ``await handle(request)``.

    Raises ``SocketInUseError`` when another server answers on ``path``, and
    ``ControlError`` when ``path`` exists and is not a socket.
    """
    _make_directory(os.path.dirname(path) or ".")
    _remove_stale_socket(path)
    sock = _bind_private(path)
    st = os.lstat(path)
    connections: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _serve_connection(reader, writer, handle)
        except asyncio.CancelledError:
            # Cancelled by ControlServer.close(), the end of this task anyway: ending
            # quietly keeps asyncio's stream callback (3.11) from logging it as an error.
            pass
        finally:
            connections.discard(task)

    try:
        server = await asyncio.start_unix_server(on_connect, sock=sock, limit=MAX_LINE)
    except BaseException:
        sock.close()
        _unlink_quietly(path)
        raise
    log.debug("control socket listening on %s", path)
    return ControlServer(server, path, (st.st_dev, st.st_ino), connections)


def _make_directory(directory: str) -> None:
    if os.path.isdir(directory):
        return
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # makedirs' mode passes through the umask; the socket's directory must be 0700 exactly.
    os.chmod(directory, 0o700)


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"{path} exists and is not a socket; not replacing it")
    if answers(path):
        raise SocketInUseError(
            f"another keepalived-py is running: a server answers on {path}")
    log.info("removing stale control socket %s", path)
    _unlink_quietly(path)


def answers(path: str) -> bool:
    """Whether a server listens on ``path``, without waiting on it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        probe.setblocking(False)
        code = probe.connect_ex(path)
    # EAGAIN: a listener whose backlog is full is still a live listener.
    return code in (0, errno.EAGAIN, errno.EINPROGRESS)


def _bind_private(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # bind() creates the file with 0777 & ~umask: narrow the umask for that one call
        # so that the file is never wider than 0600, not even briefly.  Nothing awaits in
        # between, so no other coroutine creates files under this umask.
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
    except BaseException:
        sock.close()
        raise
    try:
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        _unlink_quietly(path)
        raise
    return sock


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(raw)
    return uid


def _allowed(uid: int | None) -> bool:
    # Root, or the server's own user: an agent run unprivileged (tests) can still be asked.
    return uid is not None and uid in (0, os.geteuid())


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            handle: Handler) -> None:
    try:
        uid = _peer_uid(writer)
        if not _allowed(uid):
            log.warning("control socket: refused a client with uid %s", uid)
            await _send(writer, _error(PERMISSION_DENIED))
            return
        while True:
            try:
                line = await _read_line(reader)
            except _LineTooLong:
                await _send(writer, _error(f"bad request: line longer than {MAX_LINE} bytes"))
                continue
            if line is None:
                return
            if line.strip():
                await _send(writer, await _answer(line, handle))
    except ConnectionError:
        pass  # the client went away; nothing to answer
    finally:
        writer.close()


class _LineTooLong(Exception):
    """A request line over ``MAX_LINE`` bytes, already skipped."""


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next request line, or None at EOF; raises ``_LineTooLong`` after skipping one."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as eof:
        # A last request without its newline still gets an answer.
        return eof.partial or None
    except asyncio.LimitOverrunError as overrun:
        await reader.readexactly(overrun.consumed)
        if not await _skip_to_newline(reader):
            return None
        raise _LineTooLong from None


async def _skip_to_newline(reader: asyncio.StreamReader) -> bool:
    """Drop the rest of an overlong line; False when the client closed first."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return True
        except asyncio.LimitOverrunError as overrun:
            await reader.readexactly(overrun.consumed)
        except asyncio.IncompleteReadError:
            return False


async def _answer(line: bytes, handle: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(f"bad request: not JSON ({exc})")
    if not isinstance(request, dict):
        return _error("bad request: expected a JSON object")
    if not isinstance(request.get("request"), str):
        return _error('bad request: no "request" name')
    try:
        answer = await handle(request)
    except Exception as exc:
        log.exception("control request %r failed", request.get("request"))
        return _error(f"{request['request']} failed: {type(exc).__name__}: {exc}")
    if not isinstance(answer, dict):
        log.error("control request %r answered %r, not an object", request["request"], answer)
        return _error(f"{request['request']} failed: the answer is not an object")
    return answer


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    try:
        data = _encode(answer)
    except (TypeError, ValueError) as exc:
        log.error("control answer cannot be encoded: %s", exc)
        data = _encode(_error(f"the answer cannot be encoded as JSON: {exc}"))
    writer.write(data)
    await writer.drain()


def _encode(message: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN is not JSON, and jq or a JSON parser on the client would choke.
    return json.dumps(message, allow_nan=False).encode() + b"\n"


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


# Client ---------------------------------------------------------------------------------


def query(path: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the agent's answer (``"ok"`` true or false).

    Raises a ``ControlError`` subclass when there is no answer to return: the agent
    is not running, the caller is not root, or nothing came back within ``timeout``
    seconds in all.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        try:
            _connect(sock, path, deadline, timeout)
            _send_request(sock, request, deadline, timeout)
            line = _receive_line(sock, deadline, timeout)
        except TimeoutError:
            raise NoAnswerError(
                f"no answer from keepalived-py within {timeout:g} s") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ControlError(f"keepalived-py closed the connection on {path}: {exc}") from None
    answer = _decode_answer(line, path)
    if answer.get("ok") is False and answer.get("error") == PERMISSION_DENIED:
        raise PermissionDeniedError(f"permission denied on {path}: root only "
                                    "(refused by keepalived-py)")
    return answer


def _connect(sock: socket.socket, path: str, deadline: float, timeout: float) -> None:
    _set_timeout(sock, deadline, timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotRunningError(f"keepalived-py is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        raise NotRunningError(
            f"keepalived-py is not running (stale socket at {path})") from None
    except PermissionError:
        raise PermissionDeniedError(f"permission denied on {path}: root only") from None
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None


def _send_request(sock: socket.socket, request: dict[str, Any], deadline: float,
                  timeout: float) -> None:
    _set_timeout(sock, deadline, timeout)
    try:
        sock.sendall(_encode(request))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent may have answered (a refusal) and closed first: read that answer


def _set_timeout(sock: socket.socket, deadline: float, timeout: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)


def _receive_line(sock: socket.socket, deadline: float, timeout: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        _set_timeout(sock, deadline, timeout)
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if b"\n" in chunk:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def _decode_answer(line: bytes, path: str) -> dict[str, Any]:
    if not line:
        raise ControlError(f"keepalived-py on {path} closed the connection without an answer")
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"bad answer from keepalived-py on {path}: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"bad answer from keepalived-py on {path}: not a JSON object")
    return answer
