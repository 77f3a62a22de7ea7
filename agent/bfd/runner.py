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
- a wake-up pipe for the reload thread.

The garbage collector is paused: ``main.py`` freezes what start-up made
(``gc.freeze``) and disables automatic collection; this loop collects the
objects made since then at a quiet moment (no deadline within 2 ms), or after
a reload in a thread of its own.  Reading the configuration at a reload is
Python work of unbounded length: it runs in a thread (with ordinary
scheduling, see realtime.py) while this loop goes on, and the switch interval
is lowered so that the thread hands the interpreter back within 0.5 ms.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.daemon import SIGJSON, SIGSTATS_CLEAR, ConfigRefused
from ..core.events import publish_message
from ..core.ipc import Message
from ..core.line import ChannelClosed, LineChannel
from .realtime import leave_realtime, relaxed
from .sessions import SessionTable, TransportError
from .spec import BfdConfig
from .transport import Receiver

log = logging.getLogger("keepalived_py")

TOPIC = "bfd.session"
HEARTBEAT_US = 1_000_000
SWITCH_INTERVAL = 0.0005        # seconds: how long a busy thread may keep the interpreter
GC_QUIET_US = 2_000             # collect only when no deadline is this close
GC_YOUNG = 5_000                # net new tracked objects before a collection is wanted
GC_FORCE = 100_000              # ... and before one is made whatever the deadlines

Load = Callable[[], BfdConfig]
Dump = Callable[[str, dict[str, Any]], str]


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def _ignore(signum: int, frame: object) -> None:
    """A Python-level handler must exist for the wake-up fd to be written; the
    loop acts on the numbers it reads there."""


class Runner:
    def __init__(self, table: SessionTable, config: BfdConfig, *, line: LineChannel | None,
                 load: Load, dump: Dump, process: dict[str, Any] | None = None,
                 clock: Callable[[], int] = monotonic_us, signals: bool = True) -> None:
        self.table = table
        self.config = config
        self.line = line
        self._load = load
        self._dump = dump
        self.process = process if process is not None else {}
        self.clock = clock
        self._signals = signals
        self.stopping = False
        self.exit_code = 0
        self._sig_r = self._sig_w = -1
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._rlist: list[Any] = []
        self._receivers: set[Receiver] = set()
        self._heartbeat_at = 0
        # reloads: one at a time in a thread; those asked meanwhile wait for the next
        self._reload_thread: threading.Thread | None = None
        self._reload_batch: list[Message | None] = []
        self._reload_waiting: list[Message | None] = []
        self._reload_began = 0.0
        self._results: collections.deque[BfdConfig | BaseException] = collections.deque()
        self.reloads = 0
        # figures for the snapshot
        self.wakeups = 0
        self.started = time.time()
        self.collections = 0
        self.collect_max_us = 0

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
        self._rlist = [*receivers, self._wake_r]
        if self._sig_r >= 0:
            self._rlist.append(self._sig_r)
        if self.line is not None and not self.line.closed:
            self._rlist.append(self.line)

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
        sys.setswitchinterval(SWITCH_INTERVAL)
        if self._signals:
            self._install_signals()
        self._rebuild_rlist()
        table = self.table
        clock = self.clock
        # The first packets were due when the sessions were made, before start-up's
        # last steps: sent now, and start-up's delay not counted as the loop's.
        now = clock()
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
            if self._signals:
                signal.set_wakeup_fd(-1)
            for fd in (self._sig_r, self._sig_w, self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
        return self.exit_code

    def stop(self) -> None:
        self.stopping = True

    def _others(self, readable: list[Any], now: int) -> None:
        for ready in readable:
            if ready is self.line:
                self._read_line(now)
            elif ready == self._sig_r:
                self._read_signals(now)
            elif ready == self._wake_r:
                try:
                    os.read(self._wake_r, 64)
                except BlockingIOError:
                    pass
                while self._results:
                    self._reload_done(self._results.popleft(), now)

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
            with relaxed():             # grows with the sessions: not under RLIMIT_RTTIME
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
            with relaxed():
                path = self._dump(kind, self.snapshot(now))
        except OSError as err:
            return {"ok": False, "error": str(err)}
        return {"ok": True, "path": path}

    # -- reload ----------------------------------------------------------------------

    def reload(self, request: Message | None) -> None:
        """Read the configuration again (in a thread) and apply it as a difference;
        ``request`` is answered when done (None: SIGHUP, nobody to answer)."""
        self._reload_waiting.append(request)
        if self._reload_thread is None:
            self._launch_reload()

    def _launch_reload(self) -> None:
        self._reload_batch, self._reload_waiting = self._reload_waiting, []
        log.info("Reloading")
        self._reload_began = time.monotonic()
        self._reload_thread = threading.Thread(target=self._reload_work, name="bfd-reload",
                                               daemon=True)
        self._reload_thread.start()

    def _reload_work(self) -> None:
        leave_realtime()
        try:
            result: BfdConfig | BaseException = self._load()
        except BaseException as err:  # noqa: BLE001 - handed to the loop, which answers
            result = err
        self._results.append(result)
        os.write(self._wake_w, b"r")

    def _reload_done(self, result: BfdConfig | BaseException, now: int) -> None:
        self._reload_thread = None
        answer: Message
        if isinstance(result, ConfigRefused):
            result.log("Reload refused: keeping the running configuration")
            answer = {"ok": False, "error": "configuration refused", "errors": result.lines}
        elif isinstance(result, BaseException):
            log.error("Reload failed: %s: %s", type(result).__name__, result)
            answer = {"ok": False, "error": f"{type(result).__name__}: {result}"}
        else:
            with relaxed():
                answer = self._apply(result, now)
        for request in self._reload_batch:
            if request is not None:
                self._reply(request, answer)
        self._reload_batch = []
        if self._reload_waiting:
            self._launch_reload()

    def _apply(self, config: BfdConfig, now: int) -> Message:
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
        self._collect_in_thread()
        took = time.monotonic() - self._reload_began
        log.info("Reload finished in %d usec: %d added, %d removed, %d changed, %d unchanged",
                 took * 1e6, len(report.added), len(report.removed), len(report.changed),
                 len(report.unchanged))
        return {"ok": True, "seconds": took, "added": report.added, "removed": report.removed,
                "changed": report.changed, "unchanged": len(report.unchanged)}

    # -- the garbage collector -----------------------------------------------------------

    def _collect(self) -> None:
        began = time.perf_counter_ns()
        gc.collect()
        took = (time.perf_counter_ns() - began) // 1000
        self.collections += 1
        self.collect_max_us = max(self.collect_max_us, took)

    def _collect_in_thread(self) -> None:
        """After a reload: what the old configuration leaves, collected by a thread
        with ordinary scheduling (the loop waits for the interpreter meanwhile: it
        sleeps, it does not spin under RLIMIT_RTTIME)."""
        def work() -> None:
            leave_realtime()
            self._collect()
        threading.Thread(target=work, name="bfd-gc", daemon=True).start()

    def _maybe_collect(self, now: int, deadline: int | None) -> None:
        young = gc.get_count()[0]
        if young < GC_YOUNG:
            return
        if young < GC_FORCE and deadline is not None and deadline - now < GC_QUIET_US:
            return
        self._collect()
