"""The BFD process's loop: one thread on absolute monotonic deadlines, in microseconds.

Not asyncio: its timers go through the selector's timeout, which epoll rounds
up to whole milliseconds (measured: a median of 1.1 ms late, p99 2.5 ms, where
a 10 ms x 3 session has 30 ms to spare).  Here every deadline is an absolute
``time.monotonic_ns() // 1000`` and the loop waits with ``select.select``,
whose timeout has microsecond resolution, on:

- the BFD receivers (``sessions.SessionTable``), drained before any timer is
  fired: a packet that was in time is never beaten by a late wake-up;
- the line to the parent (``core/line.py``: the same protocol as the asyncio
  children's ``ChildLoop``: ``ready``, a ``heartbeat`` every second, the
  requests ``snapshot``, ``reload``, ``dump`` and ``stop`` answered, and the
  ``bfd.session`` topic published);
- the signal wake-up fd (``signal.set_wakeup_fd``): the signal numbers are read
  from it, so a signal is handled in the loop and never in the middle of it;
- the pipe from the process reading the configuration at a reload.

No thread: the loop is the process's only one, so nothing ever waits for the
interpreter lock.  (A first version read the configuration at a reload in a
thread: with a CPU hog per core and a reload a second, that thread, at
ordinary priority, was preempted while it held the lock, and the real-time
loop behind it went silent long enough for its peers to declare it down: 3
false Downs in 30 s at 10 ms x 3, none without the reloads.)  A reload forks:
the child (ordinary scheduling, SCHED_RESET_ON_FORK; no memory lock, which
fork does not pass on) reads and resolves the configuration and writes it to
a pipe as JSON (``BfdConfig.to_json``); the loop reads the pipe like any other
fd and applies the result as a difference.  The fork itself costs the loop a
page-table copy (about a millisecond; ``gc.freeze`` keeps the copy-on-write
pages shared).

The garbage collector is paused: ``main.py`` freezes what start-up made
(``gc.freeze``) and disables automatic collection; this loop collects the
objects made since then at a quiet moment (no deadline within 2 ms).  A reload
leaves little: the configuration was parsed in the child.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from ..core.daemon import SIGJSON, SIGSTATS_CLEAR, ConfigRefused
from ..core.events import publish_message
from ..core.ipc import Message
from ..core.line import ChannelClosed, LineChannel
from .realtime import leave_realtime
from .sessions import SessionTable, TransportError
from .spec import BfdConfig
from .transport import Receiver

log = logging.getLogger("keepalived_py")

TOPIC = "bfd.session"
HEARTBEAT_US = 1_000_000
GC_QUIET_US = 2_000             # collect only when no deadline is this close
GC_YOUNG = 5_000                # net new tracked objects before a collection is wanted
GC_FORCE = 100_000              # ... and before one is made whatever the deadlines
READ_LIMIT = 120.0              # seconds a reload's configuration reader may take

Load = Callable[[], BfdConfig]
Dump = Callable[[str, dict[str, Any]], str]


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def _ignore(signum: int, frame: object) -> None:
    """A Python-level handler must exist for the wake-up fd to be written; the
    loop acts on the numbers it reads there."""


class _Reader:
    """A reload's child process: reads the configuration, writes it to a pipe."""

    def __init__(self, load: Load, signals: bool) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.began = time.monotonic()
        self.pid = os.fork()
        if self.pid == 0:                           # the child
            os.close(r)
            _child(load, w, signals)                # never returns
        os.close(w)
        os.set_blocking(r, False)
        self.fd = r
        self._data = bytearray()

    def fileno(self) -> int:
        return self.fd

    def read(self) -> BfdConfig | BaseException | None:
        """What the child wrote, once it is all there (None: not yet)."""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return None
            if not chunk:
                break
            self._data += chunk
        self.close()
        try:
            answer = json.loads(self._data)
            if "config" in answer:
                return BfdConfig.from_json(answer["config"])
            if "refused" in answer:
                return ConfigRefused([str(line) for line in answer["refused"]])
            return RuntimeError(str(answer.get("error")))
        except (ValueError, KeyError, TypeError) as err:
            return RuntimeError(f"the configuration reader's answer is unreadable ({err}, "
                                f"{len(self._data)} bytes)")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.reap()

    def reap(self) -> bool:
        """Collect the child's exit status if it has one; True when it is gone."""
        if self.pid <= 0:
            return True
        try:
            done, _status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            done = self.pid
        if done:
            self.pid = 0
        return not self.pid

    def kill(self) -> None:
        if self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _child(load: Load, fd: int, signals: bool) -> None:
    """The reload reader, in the forked child: the configuration as JSON, then exit
    without running anything of the parent's (no atexit, no finally, no flush)."""
    code = 0
    try:
        if signals:
            signal.set_wakeup_fd(-1)        # the parent's: a signal here is not its
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
        leave_realtime()
        try:
            answer: dict[str, Any] = {"config": load().to_json()}
        except ConfigRefused as refused:
            answer = {"refused": refused.lines}
        except Exception as err:  # noqa: BLE001 - handed to the parent, which answers
            answer = {"error": f"{type(err).__name__}: {err}"}
        data = json.dumps(answer).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code
        code = 1
    finally:
        os._exit(code)


class Runner:
    def __init__(self, table: SessionTable, config: BfdConfig, *, line: LineChannel | None,
                 load: Load, dump: Dump, process: dict[str, Any] | None = None,
                 clock: Callable[[], int] = monotonic_us, signals: bool = True,
                 collect: Callable[[], object] = gc.collect) -> None:
        self.table = table
        self.config = config
        self.line = line
        self._load = load
        self._dump = dump
        self.process = process if process is not None else {}
        self.clock = clock
        self._signals = signals
        self._gc_collect = collect      # cheap once main.py has frozen start-up's objects
        self.stopping = False
        self.exit_code = 0
        self._sig_r = self._sig_w = -1
        self._rlist: list[Any] = []
        self._receivers: set[Receiver] = set()
        self._heartbeat_at = 0
        # reloads: one at a time; those asked meanwhile wait for the next
        self._reader: _Reader | None = None
        self._reload_batch: list[Message | None] = []
        self._reload_waiting: list[Message | None] = []
        self._zombies: list[_Reader] = []
        self._collect_wanted = False
        self.reloads = 0
        # figures for the snapshot
        self.wakeups = 0
        self.started = time.time()
        self.collections = 0
        self.collect_max_us = 0
        self.fork_max_us = 0

    # -- set-up --------------------------------------------------------------------

    def _install_signals(self) -> None:
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGUSR2, SIGJSON, SIGSTATS_CLEAR, signal.SIGXCPU):
            signal.signal(sig, _ignore)

    def _rebuild_rlist(self) -> None:
        receivers = list(self.table.receivers.values())
        self._receivers = set(receivers)
        self._rlist = list(receivers)
        if self._sig_r >= 0:
            self._rlist.append(self._sig_r)
        if self.line is not None and not self.line.closed:
            self._rlist.append(self.line)
        if self._reader is not None:
            self._rlist.append(self._reader)

    # -- the parent's line -----------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.line is None or self.line.closed:
            return
        try:
            self.line.send(message)
        except ChannelClosed:
            self._parent_gone()

    def publish_all(self) -> None:
        """Everything, replacing what the parent had: at start and after a reload, so
        that a session that is gone is withdrawn from the consumers."""
        self.table.take_changes()
        self.send(publish_message(TOPIC, self.table.items(), replace=True))

    def ready(self) -> None:
        self.send({"event": "ready", "pid": os.getpid()})

    def _parent_gone(self) -> None:
        if not self.stopping:
            log.info("The parent process is gone - stopping")
        self.stopping = True

    # -- the loop --------------------------------------------------------------------

    def run(self) -> int:
        """Until ``stop`` (a request, SIGTERM, the parent gone); the sessions are shut
        down (AdminDown to every peer) on the way out."""
        if self._signals:
            self._install_signals()
        self._rebuild_rlist()
        table = self.table
        clock = self.clock
        # The first packets were due when the sessions were made, before start-up's
        # last steps: sent now, and start-up's delay not counted as the loop's.
        now = clock()
        table.due(now)
        table.drain_all(now)
        table.fire_due(now)
        table.lateness = [0] * len(table.lateness)
        table.late_max_us = 0
        self._heartbeat_at = now
        try:
            while not self.stopping:
                deadline = table.next_deadline()
                wake = self._heartbeat_at
                if deadline is not None and deadline < wake:
                    wake = deadline
                now = clock()
                timeout = (wake - now) / 1e6 if wake > now else 0.0
                writers = [self.line] if self.line is not None and self.line.wants_write \
                    else ()
                readable, writable, _ = select.select(self._rlist, writers, (), timeout)
                now = clock()
                self.wakeups += 1
                # BFD first: packets, then timers; the rest waits for them
                if table.due(now):
                    table.drain_all(now)
                elif readable:
                    for ready in readable:
                        if ready in self._receivers:
                            table.drain(ready, now)
                table.fire_due(now)
                if readable:
                    self._others(readable, now)
                if now >= self._heartbeat_at:
                    self.send({"event": "heartbeat"})
                    self._heartbeat_at = max(self._heartbeat_at + HEARTBEAT_US, now)
                    self._reap(now)
                changes = table.take_changes()
                if changes:
                    self.send(publish_message(TOPIC, changes))
                if writable and self.line is not None:
                    try:
                        self.line.flush()
                    except ChannelClosed:
                        self._parent_gone()
                self._maybe_collect(now, table.next_deadline())
        finally:
            leave_realtime()            # what is left (and the interpreter's exit) has no bound
            table.shutdown(self.clock())
            if self._reader is not None:
                self._reader.kill()
            for zombie in self._zombies:
                zombie.kill()
            if self._signals:
                signal.set_wakeup_fd(-1)
            for fd in (self._sig_r, self._sig_w):
                if fd >= 0:
                    os.close(fd)
        return self.exit_code

    def stop(self) -> None:
        self.stopping = True

    def _others(self, readable: list[Any], now: int) -> None:
        for ready in readable:
            if ready is self.line:
                self._read_line(now)
            elif ready is self._reader:
                self._read_reload(now)
            elif ready == self._sig_r:
                self._read_signals(now)

    def _read_signals(self, now: int) -> None:
        try:
            numbers = os.read(self._sig_r, 64)
        except BlockingIOError:
            return
        for signum in numbers:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping and self.line is None:
                    log.info("Stopping")
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reload(None)
            elif signum == signal.SIGUSR1:
                self._write_dump("data", now)
            elif signum == SIGJSON:
                self._write_dump("json", now)
            elif signum == signal.SIGXCPU:
                log.info("BFD process has used too much CPU time, bfd_rlimit_rttime may need "
                         "to be increased")
            # SIGUSR2, STATS_CLEAR: keepalived's BFD process writes no statistics;
            # ignored (`pkill -USR2 keepalived-py` must not end it)

    def _read_line(self, now: int) -> None:
        assert self.line is not None
        try:
            messages = self.line.read()
        except ChannelClosed:
            self._parent_gone()
            self._rebuild_rlist()
            return
        for message in messages:
            if "reply_to" in message or message.get("event") is not None:
                continue                # we ask nothing, and consume no topic
            try:
                self._request(message, now)
            except Exception as err:  # noqa: BLE001 - an answer, never a dead process
                log.exception("request %s failed", message.get("request"))
                self._reply(message, {"ok": False, "error": f"{type(err).__name__}: {err}"})

    def _reply(self, request: Message, answer: Message) -> None:
        if self.line is None or self.line.closed:
            return
        try:
            self.line.reply(request, answer)
        except ChannelClosed:
            self._parent_gone()

    def _request(self, message: Message, now: int) -> None:
        what = str(message.get("request"))
        if what == "stop":
            self._reply(message, {"ok": True})
            self.stopping = True
        elif what == "snapshot":
            self._reply(message, {"ok": True, "result": self.snapshot(now)})
        elif what == "reload":
            self.reload(message)
        elif what == "dump":
            self._reply(message, self._write_dump(str(message.get("kind", "data")), now))
        else:
            self._reply(message, {"ok": False, "error": f"unknown request {what!r}"})

    # -- snapshot and dumps ------------------------------------------------------------

    def snapshot(self, now: int) -> dict[str, Any]:
        snap = self.table.snapshot(now)
        snap["process"] = {**self.process, "pid": os.getpid(), "started": self.started,
                           "wakeups": self.wakeups, "reloads": self.reloads,
                           "reload_fork_max_us": self.fork_max_us,
                           "gc": {"frozen": gc.get_freeze_count(),
                                  "young": gc.get_count()[0],
                                  "collections": self.collections,
                                  "collect_max_us": self.collect_max_us}}
        snap["config_errors"] = list(self.config.errors)
        return snap

    def _write_dump(self, kind: str, now: int) -> Message:
        if kind not in ("data", "json"):
            return {"ok": False, "error": f"unknown dump {kind!r}"}
        log.info("Printing BFD %s for process(%d) on signal",
                 "data" if kind == "data" else "as json", os.getpid())
        try:
            path = self._dump(kind, self.snapshot(now))
        except OSError as err:
            return {"ok": False, "error": str(err)}
        return {"ok": True, "path": path}

    # -- reload ----------------------------------------------------------------------

    def reload(self, request: Message | None) -> None:
        """Read the configuration again (in a child process) and apply it as a
        difference; ``request`` is answered when done (None: SIGHUP, nobody to answer)."""
        self._reload_waiting.append(request)
        if self._reader is None:
            self._launch_reload()

    def _launch_reload(self) -> None:
        self._reload_batch, self._reload_waiting = self._reload_waiting, []
        log.info("Reloading")
        began = time.perf_counter_ns()
        try:
            self._reader = _Reader(self._load, self._signals)
        except OSError as err:
            self._reload_done(RuntimeError(f"cannot start reading the configuration: {err}"),
                              self.clock())
            return
        self.fork_max_us = max(self.fork_max_us, (time.perf_counter_ns() - began) // 1000)
        self._rebuild_rlist()

    def _read_reload(self, now: int) -> None:
        reader = self._reader
        assert reader is not None
        result = reader.read()
        if result is None:
            return
        self._reader = None
        if not reader.reap():
            self._zombies.append(reader)        # it exits right after writing: soon
        self._rebuild_rlist()
        took = time.monotonic() - reader.began
        self._reload_done(result, now, took)

    def _reap(self, now: int) -> None:
        """Once a second: reap finished readers; give up on one that hangs (a
        configuration file on a dead file system) so that later reloads can run."""
        self._zombies = [z for z in self._zombies if not z.reap()]
        reader = self._reader
        if reader is not None and time.monotonic() - reader.began > READ_LIMIT:
            reader.kill()
            self._reader = None
            self._rebuild_rlist()
            self._reload_done(RuntimeError(f"reading the configuration took more than "
                                           f"{READ_LIMIT:g} s: given up"), now)

    def _reload_done(self, result: BfdConfig | BaseException, now: int,
                     took: float = 0.0) -> None:
        answer: Message
        if isinstance(result, ConfigRefused):
            result.log("Reload refused: keeping the running configuration")
            answer = {"ok": False, "error": "configuration refused", "errors": result.lines}
        elif isinstance(result, BaseException):
            log.error("Reload failed: %s", result)
            answer = {"ok": False, "error": str(result)}
        else:
            answer = self._apply(result, now, took)
        for request in self._reload_batch:
            if request is not None:
                self._reply(request, answer)
        self._reload_batch = []
        if self._reload_waiting:
            self._launch_reload()

    def _apply(self, config: BfdConfig, now: int, took: float) -> Message:
        try:
            report = self.table.apply(config, now)
        except TransportError as err:
            log.error("Reload failed, the running sessions are kept: %s", err.strerror)
            return {"ok": False, "error": err.strerror}
        if config.settings != self.config.settings:
            log.info("bfd_priority, bfd_rt_priority, bfd_no_swap and bfd_cpu_affinity "
                     "changes take effect when the BFD process next starts")
        for line in config.errors:
            log.error("%s", line)
        self.config = config
        self.reloads += 1
        self._rebuild_rlist()
        self.publish_all()
        self._collect_wanted = True         # what the old configuration leaves, when quiet
        log.info("Reload finished in %d usec: %d added, %d removed, %d changed, %d unchanged",
                 took * 1e6, len(report.added), len(report.removed), len(report.changed),
                 len(report.unchanged))
        return {"ok": True, "seconds": took, "added": report.added, "removed": report.removed,
                "changed": report.changed, "unchanged": len(report.unchanged)}

    # -- the garbage collector -----------------------------------------------------------

    def _maybe_collect(self, now: int, deadline: int | None) -> None:
        young = gc.get_count()[0]
        if young < GC_YOUNG and not self._collect_wanted:
            return
        if young < GC_FORCE and deadline is not None and deadline - now < GC_QUIET_US:
            return
        self._collect_wanted = False
        began = time.perf_counter_ns()
        self._gc_collect()
        took = (time.perf_counter_ns() - began) // 1000
        self.collections += 1
        self.collect_max_us = max(self.collect_max_us, took)
