"""vrrp_track_process: the kernel's process events feeding ProcessQuorum.

Like keepalived (core/track_process.c): subscribe to the proc connector
(NETLINK_CONNECTOR, CN_IDX_PROC) for fork/exec/comm/exit events, count the
matching processes with one scan of /proc, then follow the events.

The connector only answers in the initial network namespace; elsewhere the
subscription is refused (ECONNREFUSED).  keepalived opens it before entering
its ``net_namespace``; we, usually already inside a namespace, open the socket
from a short-lived thread that joins the initial one (setns changes only the
calling thread; the socket keeps working from the event loop).  Without that
privilege, or when the kernel never confirms the subscription (a process in
another PID namespace is silently ignored), we scan /proc every
``POLL_INTERVAL`` and watch each counted process with a pidfd, so an exit --
the change that costs a quorum -- is still seen at once; new processes are
seen at the next scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..trackers import ProcessInfo, ProcessQuorum, ProcessSpec

log = logging.getLogger("keepalived_py.host")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
PROC_EVENT_NONE, PROC_EVENT_FORK, PROC_EVENT_EXEC = 0x0, 0x1, 0x2
PROC_EVENT_COMM, PROC_EVENT_EXIT = 0x200, 0x80000000
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33

_NLMSGHDR = struct.Struct("=IHHII")         # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")          # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")         # what, cpu, timestamp_ns
_EVENT_DATA = _NLMSGHDR.size + _CN_MSG.size + _EVENT_HEAD.size
_PIDS = struct.Struct("=ii")
_FORK = struct.Struct("=iiii")              # parent pid, parent tgid, child pid, child tgid

# A /proc scan costs a few milliseconds for a few hundred processes; once a
# second matches keepalived's default vrrp_script interval, the polling
# alternative users had before track_process.  Exits are not polled (pidfds).
POLL_INTERVAL = 1.0
ACK_WAIT = 1.0          # keepalived waits 0.1 s; a loaded machine needs longer
ENOBUFS_SETTLE = 1.0    # keepalived lets lost events settle a second, then rescans
READ_BATCH = 256        # events handled per wake-up of the loop

EVENTS, EVENTS_VIA_INITIAL_NETNS, POLLING = "events", "events via initial netns", "polling"


@dataclass(frozen=True)
class ProcEvent:
    """One process event we act on; ``pid`` is the process (thread group) id."""

    kind: str                   # "ack", "fork", "exec", "comm" or "exit"
    pid: int = 0
    parent: int = 0             # fork: the parent process
    comm: bytes = b""           # comm: the new name


def listen_message(op: int = PROC_CN_MCAST_LISTEN) -> bytes:
    body = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, 4, 0) + struct.pack("=I", op)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), NLMSG_DONE, 0, 0, 0) + body


def parse_event(data: bytes) -> ProcEvent | None:
    """A connector message as a ProcEvent; None for anything else, including
    threads' events, other connectors' messages and short or malformed data."""
    if len(data) < _EVENT_DATA:
        return None
    _, nl_type, _, _, _ = _NLMSGHDR.unpack_from(data)
    if nl_type in (NLMSG_ERROR, NLMSG_NOOP):
        return None
    idx, val, _, _, _, _ = _CN_MSG.unpack_from(data, _NLMSGHDR.size)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return None
    what, _, _ = _EVENT_HEAD.unpack_from(data, _NLMSGHDR.size + _CN_MSG.size)
    body = data[_EVENT_DATA:]
    if what == PROC_EVENT_NONE:
        return ProcEvent("ack")
    if what == PROC_EVENT_FORK and len(body) >= _FORK.size:
        _, parent_tgid, child_pid, child_tgid = _FORK.unpack_from(body)
        # a new thread has child_pid != child_tgid: not a new process
        return ProcEvent("fork", child_tgid, parent=parent_tgid) if child_pid == child_tgid \
            else None
    kinds = {PROC_EVENT_EXEC: "exec", PROC_EVENT_COMM: "comm", PROC_EVENT_EXIT: "exit"}
    if what not in kinds or len(body) < _PIDS.size:
        return None
    pid, tgid = _PIDS.unpack_from(body)
    if pid != tgid:
        return None                 # a thread's, not the process's
    if what == PROC_EVENT_COMM:
        if len(body) < _PIDS.size + 16:
            return None
        return ProcEvent("comm", tgid, comm=body[_PIDS.size:_PIDS.size + 16].split(b"\0")[0])
    return ProcEvent(kinds[what], tgid)


# -- /proc --------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """What to read of each process: comm, and how much of the cmdline."""

    comm: bool = False
    cmdline: int = 0            # bytes; 0: not needed

    @classmethod
    def of(cls, specs: list[ProcessSpec]) -> Needs:
        # keepalived reads only as much of the command line as the longest
        # configured one, plus two bytes to tell a longer one apart
        lengths = [len(os.fsencode(s.name)) + 1 + sum(len(os.fsencode(p)) + 1 for p in s.params)
                   for s in specs if s.full_command]
        return cls(comm=any(not s.full_command for s in specs),
                   cmdline=max(lengths) + 2 if lengths else 0)


def _read(path: str, size: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_process(pid: int, needs: Needs, *, skip_zombie: bool = False) -> ProcessInfo | None:
    """A process's comm and cmdline; None if it is gone (or a zombie, when asked)."""
    comm = cmdline = None
    if needs.comm:
        stat = _read(f"/proc/{pid}/stat", 512)
        if stat is None:
            return None
        # "PID (COMM) STATE ...": COMM may hold anything, so the last ")" ends it
        start, end = stat.find(b"("), stat.rfind(b")")
        if start < 0 or end < start:
            return None
        if skip_zombie and stat[end + 2:end + 3] == b"Z":
            return None
        comm = stat[start + 1:end]
    if needs.cmdline:
        cmdline = _read(f"/proc/{pid}/cmdline", needs.cmdline)
        if cmdline is None:
            return None
    return ProcessInfo(comm=comm, cmdline=cmdline)


def scan_processes(needs: Needs) -> dict[int, ProcessInfo]:
    """Every process in /proc (threads are not listed there), zombies left out."""
    found: dict[int, ProcessInfo] = {}
    try:
        entries = os.listdir("/proc")
    except OSError as err:
        log.error("cannot list /proc: %s", err)
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        info = read_process(int(entry), needs, skip_zombie=True)
        if info is not None:
            found[int(entry)] = info
    return found


# -- the connector socket -------------------------------------------------------------


def open_connector() -> socket.socket:
    """A proc connector socket subscribed to process events; OSError if refused."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                         NETLINK_CONNECTOR)
    try:
        sock.bind((0, CN_IDX_PROC))
        sock.send(listen_message())
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _netns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _parent(pid: int) -> int:
    status = _read(f"/proc/{pid}/status", 4096) or b""
    for line in status.splitlines():
        if line.startswith(b"PPid:"):
            return int(line.split()[1])
    return 0


def initial_netns_candidates() -> list[int]:
    """Processes whose network namespace may be the initial one: PID 1 first, then
    our ancestors (PID 1's may be out of reach, e.g. in a sandbox); only
    namespaces other than ours that we can open, each once."""
    ours = _netns_inode("self")
    pids, pid = [1], _parent(os.getpid())
    while pid > 1 and len(pids) < 64:
        pids.append(pid)
        pid = _parent(pid)
    seen = {ours}
    found = []
    for pid in pids:
        inode = _netns_inode(pid)
        if inode is not None and inode not in seen:
            seen.add(inode)
            found.append(pid)
    return found


def open_connector_in_initial_netns() -> tuple[socket.socket, int]:
    """``open_connector`` from a thread that joins another network namespace (see
    :func:`initial_netns_candidates`), trying each until one accepts us.  Returns
    the socket and the PID whose namespace it was."""
    outcome: list[tuple[socket.socket, int] | OSError] = []

    def join_and_open() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        failure = OSError(errno.ENOENT, "no other network namespace can be opened")
        for pid in initial_netns_candidates():
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, f"setns: {os.strerror(code)}")
                finally:
                    os.close(fd)
                outcome.append((open_connector(), pid))
                return
            except OSError as err:
                failure = err
        outcome.append(failure)

    # the thread ends here, and its namespace with it; the socket stays in the
    # namespace it was made in
    thread = threading.Thread(target=join_and_open, name="proc-connector-netns")
    thread.start()
    thread.join()
    result = outcome[0] if outcome else OSError(errno.EIO, "no result from the netns thread")
    if isinstance(result, OSError):
        raise result
    return result


# -- the watcher ----------------------------------------------------------------------


class ProcessWatcher:
    """Drives the vrrp_track_process trackers from process events (or /proc scans).

    ``on_change(name, have_quorum)`` is called when a tracker's quorum changes.
    ``events=False`` goes straight to polling (tests of that path).
    ``receive_buffer`` (and ``force``) size the event socket, as global_defs'
    ``process_monitor_rcv_bufs`` (``_force``) do.
    """

    def __init__(self, on_change: Callable[[str, bool], None], *, events: bool = True,
                 receive_buffer: int = 0, force: bool = False) -> None:
        self._on_change = on_change
        self._use_events = events
        self._receive_buffer = (receive_buffer, force)
        self.mode: str | None = None
        self.why_polling: str | None = None
        self._trackers: dict[str, ProcessQuorum] = {}
        self._needs = Needs()
        self._sock: socket.socket | None = None
        self._confirmed = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._rescan_timer: asyncio.TimerHandle | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._seen: dict[int, ProcessInfo] = {}
        self._pidfds: dict[int, int] = {}
        self._running = False

    def track(self, trackers: Mapping[str, ProcessQuorum]) -> None:
        """The trackers to drive, at start and on reload.  Ones not driven before
        are counted from a fresh /proc scan (once running); kept ones go on."""
        fresh = {name: q for name, q in trackers.items() if self._trackers.get(name) is not q}
        self._trackers = dict(trackers)
        self._needs = Needs.of([q.spec for q in self._trackers.values()])
        if not self._running or not fresh:
            return
        if self.mode is None:
            self._begin()
        else:
            self._count(fresh)

    async def start(self) -> None:
        """Start following processes -- once there is a tracker to drive."""
        self._running = True
        if self._trackers:
            self._begin()

    def _begin(self) -> None:
        loop = asyncio.get_running_loop()
        if self._use_events:
            self._open_events(loop)
        else:
            self.why_polling = "process events turned off"
        if self._sock is None:
            self._start_polling(loop, report=False)
        else:
            # subscribed before the scan, so nothing is missed in between
            self._count(self._trackers)

    async def stop(self) -> None:
        self._running = False
        for timer in (self._ack_timer, self._deadline_timer, self._rescan_timer):
            if timer is not None:
                timer.cancel()
        self._ack_timer = self._deadline_timer = self._rescan_timer = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        self._close_socket()
        for pid in list(self._pidfds):
            self._unwatch_pid(pid)
        self.mode = None
        self._confirmed = False
        self._seen = {}

    # -- events --

    def _open_events(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._sock = open_connector()
            self.mode = EVENTS
        except OSError as err:
            if err.errno != errno.ECONNREFUSED:
                self.why_polling = f"the process connector refused us: {err}"
                return
            try:
                self._sock, pid = open_connector_in_initial_netns()
                self.mode = EVENTS_VIA_INITIAL_NETNS
                log.info("track_process: process connector opened in the network namespace "
                         "of PID %d", pid)
            except OSError as err2:
                self.why_polling = ("the process connector works only in the initial network "
                                    f"namespace ({err.strerror}), and joining it failed: {err2}")
                return
        size, force = self._receive_buffer
        if size:
            option = SO_RCVBUFFORCE if force else socket.SO_RCVBUF
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, option, size)
            except OSError as err:
                log.warning("Cannot set process monitor SO_RCVBUF%s option: %s",
                            "FORCE" if force else "", err)
        loop.add_reader(self._sock.fileno(), self._readable)
        self._ack_timer = loop.call_later(ACK_WAIT, self._no_ack)
        log.info("track_process: following kernel process events (%s)", self.mode)

    def _no_ack(self) -> None:
        self._ack_timer = None
        if self._confirmed:
            return
        self.why_polling = (f"the kernel did not confirm the process event subscription within "
                            f"{ACK_WAIT:g} s (no CONFIG_PROC_EVENTS, or another PID namespace)")
        self._close_socket()
        self._start_polling(asyncio.get_running_loop(), report=True)

    def _close_socket(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.send(listen_message(PROC_CN_MCAST_IGNORE))
        self._sock.close()
        self._sock = None

    def _readable(self) -> None:
        sock = self._sock
        # a bounded batch, so that a storm of events cannot starve the loop
        for _ in range(READ_BATCH):
            if sock is None or sock is not self._sock:
                return
            try:
                data, (sender, _) = sock.recvfrom(65536)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    self._events_lost(sock)
                else:
                    log.warning("process monitor netlink recv error: %s", err)
                return
            if sender != 0:
                continue            # only the kernel speaks here
            event = parse_event(data)
            if event is not None:
                self._dispatch(event)

    def _events_lost(self, sock: socket.socket) -> None:
        """The socket overflowed: give it more room, let things settle, count again."""
        with contextlib.suppress(OSError):
            size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size * 2)
            log.warning("process events lost: receive buffer now %d bytes, rescanning /proc",
                        size * 2)
        loop = asyncio.get_running_loop()
        if self._rescan_timer is not None:
            self._rescan_timer.cancel()
        self._rescan_timer = loop.call_later(ENOBUFS_SETTLE, self._rescan)

    def _rescan(self) -> None:
        self._rescan_timer = None
        now = asyncio.get_running_loop().time()
        processes = scan_processes(self._needs)
        for name, q in self._trackers.items():
            self._report(name, q, q.rescan(now, processes))
        self._arm_deadline()

    def _dispatch(self, event: ProcEvent) -> None:
        if event.kind == "ack":
            self._confirmed = True
            return
        if not self._trackers:
            return
        now = asyncio.get_running_loop().time()
        if event.kind == "fork":
            for name, q in self._trackers.items():
                self._report(name, q, q.fork(now, event.parent, event.pid))
        elif event.kind == "exec":
            info = read_process(event.pid, self._needs)
            for name, q in self._trackers.items():
                self._report(name, q, q.exec(now, event.pid, info))
        elif event.kind == "comm":
            for name, q in self._trackers.items():
                self._report(name, q, q.comm(now, event.pid, event.comm))
        elif event.kind == "exit":
            self._process_exited(event.pid, now)
            return
        self._arm_deadline()

    def _process_exited(self, pid: int, now: float) -> None:
        for name, q in self._trackers.items():
            self._report(name, q, q.exit(now, pid))
        self._arm_deadline()

    # -- polling --

    def _start_polling(self, loop: asyncio.AbstractEventLoop, *, report: bool) -> None:
        """Count from a scan, then keep scanning; ``report``: the trackers were
        already counting (from events), so tell of the changes."""
        self.mode = POLLING
        log.error("track_process: kernel process events are unavailable (%s); scanning /proc "
                  "every %g s instead, with pidfds for the exits of counted processes",
                  self.why_polling, POLL_INTERVAL)
        self._seen = scan_processes(self._needs)
        for name, q in self._trackers.items():
            changed = q.start(self._seen)
            if report:
                self._report(name, q, changed)
        self._sync_pidfds()
        self._poll_task = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            now = asyncio.get_running_loop().time()
            current = scan_processes(self._needs)
            for pid in self._seen.keys() - current.keys():
                self._process_exited(pid, now)
            for pid, info in current.items():
                if self._seen.get(pid) != info:
                    # a new process, or a new name: matched again, as after an exec
                    for name, q in self._trackers.items():
                        self._report(name, q, q.exec(now, pid, info))
            self._seen = current
            self._arm_deadline()
            self._sync_pidfds()

    def _sync_pidfds(self) -> None:
        counted = set().union(*(q.pids for q in self._trackers.values()))
        for pid in set(self._pidfds) - counted:
            self._unwatch_pid(pid)
        for pid in counted - set(self._pidfds):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._process_exited(pid, asyncio.get_running_loop().time())
                continue
            except OSError as err:
                log.warning("pidfd_open(%d): %s", pid, err)
                continue
            self._pidfds[pid] = fd
            asyncio.get_running_loop().add_reader(fd, self._pidfd_readable, pid)

    def _pidfd_readable(self, pid: int) -> None:
        self._unwatch_pid(pid)
        self._process_exited(pid, asyncio.get_running_loop().time())

    def _unwatch_pid(self, pid: int) -> None:
        fd = self._pidfds.pop(pid, None)
        if fd is None:
            return
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)

    # -- common --

    def _count(self, trackers: Mapping[str, ProcessQuorum]) -> None:
        # when polling, the last scan stays the reference of the others: they
        # catch up at the next one, and these re-match what changed, harmlessly
        processes = scan_processes(self._needs)
        for q in trackers.values():
            q.start(processes)
        if self.mode == POLLING:
            self._sync_pidfds()

    def _report(self, name: str, q: ProcessQuorum, changed: bool) -> None:
        if changed:
            log.info("Quorum %s for tracked process %s", "gained" if q.have_quorum else "lost",
                     name)
            self._on_change(name, q.have_quorum)

    def _arm_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        deadlines = [d for q in self._trackers.values() if (d := q.deadline) is not None]
        if deadlines and self._running:
            self._deadline_timer = asyncio.get_running_loop().call_at(min(deadlines),
                                                                      self._deadline_due)

    def _deadline_due(self) -> None:
        self._deadline_timer = None
        now = asyncio.get_running_loop().time()
        for name, q in self._trackers.items():
            self._report(name, q, q.advance(now))
        self._arm_deadline()
