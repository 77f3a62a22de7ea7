"""Notify FIFOs as keepalived 2.2.7 keeps them (lib/notify.c fifo_open / fifo_close).

The global ``notify_fifo`` carries every subsystem's lines; ``vrrp_notify_fifo``
and ``lvs_notify_fifo`` carry one subsystem's.  A FIFO's script is started with
the FIFO's path as its last argument and is stopped with it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import stat

from ..config.model import Node
from .scripts import (
    KEEPALIVED_UMASK,
    ConfigScripts,
    ScriptCommand,
    ScriptError,
    ScriptProcess,
    ScriptUser,
    spawn_script,
)

log = logging.getLogger("keepalived_py.host")

FIFO_SCRIPT_GRACE = 1.0         # SIGTERM, then SIGKILL this much later (child_killed_reload)


class NotifyFifo:
    """One notify FIFO (lib/notify.c fifo_open / fifo_close).

    Created with mode 0644 less keepalived's umask (0600 by default) and given
    to its user; an existing file of any kind is used as it is.  Opened
    read-write and non-blocking: opening never waits for a reader, writing never
    blocks, and lines written before a reader comes wait in the pipe (until it
    is full; then they are dropped, as keepalived drops them).  The FIFO script
    is started first, with the path as its last argument.
    """

    def __init__(self, path: str, owner: ScriptUser, script: ScriptCommand | None = None,
                 label: str = "", umask: int = KEEPALIVED_UMASK) -> None:
        self.path = path
        self.owner = owner
        self.script = script.with_args(path) if script is not None else None
        self.label = label                  # "", "vrrp_" or "lvs_", for messages
        self.umask = umask
        self.fd: int | None = None
        self.created = False
        self.process: ScriptProcess | None = None

    def open(self) -> bool:
        """Create (if needed) and open the FIFO, starting its script; needs a running loop
        when there is a script."""
        mode = 0o644 & ~self.umask
        try:
            os.mkfifo(self.path, mode)
        except FileExistsError:
            if not _is_fifo(self.path):
                log.info("%snotify fifo %s exists and is not a FIFO", self.label, self.path)
        except OSError:
            log.info("Unable to create %snotify fifo %s", self.label, self.path)
            return False
        else:
            self.created = True
            os.chmod(self.path, mode)       # whatever our own process umask is
            self._chown()
        if self.script is not None:
            self.process = spawn_script(self.script.argv, self.script.user, umask=self.umask)
            if self.process is not None:
                self.process.exited.add_done_callback(self._script_exited)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
        try:
            self.fd = os.open(self.path, flags)
        except OSError as err:
            log.info("Unable to open %snotify fifo %s - errno %d", self.label, self.path,
                     err.errno)
            if self.created:
                os.unlink(self.path)
                self.created = False
            return False
        return True

    def _chown(self) -> None:
        uid, gid = os.geteuid(), os.getegid()
        if (self.owner.uid, self.owner.gid) == (uid, gid):
            return
        try:
            os.chown(self.path, self.owner.uid if self.owner.uid != uid else -1,
                     self.owner.gid if self.owner.gid != gid else -1)
        except OSError:
            log.info("Failed to set uid:gid for fifo %s", self.path)

    def _script_exited(self, _: asyncio.Future[int]) -> None:
        log.info("%snotify fifo script terminated", self.label)

    def write(self, line: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, line.encode())
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EPIPE):
                log.debug("notify fifo %s: %s", self.path, err)

    async def close(self, unlink: bool = True) -> None:
        """SIGTERM the script's process group, remove the FIFO if we made it (first, so a
        reader that reopens in a loop cannot find it again), close it; SIGKILL the
        script if it is still there after a second."""
        if self.process is not None and self.process.running:
            self.process.kill_group(signal.SIGTERM)
        if self.created and unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.created = False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.process is not None:
            await self.process.terminate(FIFO_SCRIPT_GRACE)
            self.process = None


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.lstat(path).st_mode)
    except OSError:
        return True                     # gone again: the open says what is wrong


def notify_fifos(root: Node, scripts: ConfigScripts, *, run_global_script: bool = True,
                 umask: int = KEEPALIVED_UMASK) -> tuple[NotifyFifo | None, NotifyFifo | None]:
    """The global ``notify_fifo`` and the ``vrrp_notify_fifo`` of a configuration
    (not yet open).  ``run_global_script`` is false when a checker process runs the
    global FIFO's script, as keepalived lets only one process run it."""
    return _global_and(root, scripts, "vrrp", run_global_script, umask)


def lvs_notify_fifos(root: Node, scripts: ConfigScripts, *, run_global_script: bool = True,
                     umask: int = KEEPALIVED_UMASK) -> list[NotifyFifo]:
    """The checker process's FIFOs: the global ``notify_fifo`` and ``lvs_notify_fifo``
    (one of them when both name the same path)."""
    return [f for f in _global_and(root, scripts, "lvs", run_global_script, umask)
            if f is not None]


def _global_and(root: Node, scripts: ConfigScripts, process: str, run_global_script: bool,
                umask: int) -> tuple[NotifyFifo | None, NotifyFifo | None]:
    """The global FIFO and a process's own (``vrrp_notify_fifo``, ``lvs_notify_fifo``)."""
    glob = root.blocks("global_defs")
    if not glob:
        return None, None
    g = glob[0]
    common = _fifo(g, "notify_fifo", "", scripts, umask, run_global_script)
    own = _fifo(g, f"{process}_notify_fifo", f"{process}_", scripts, umask, True)
    if common is not None and own is not None and common.path == own.path:
        log.info("notify FIFO %s has been specified for global and %s FIFO - ignoring %s"
                 " FIFO", own.path, process.upper() if process == "lvs" else process,
                 process.upper() if process == "lvs" else process)
        own = None
    return common, own


def _fifo(glob: Node, keyword: str, label: str, scripts: ConfigScripts, umask: int,
          with_script: bool) -> NotifyFifo | None:
    value = glob.values.get(keyword)
    if not value:
        return None
    path, owner_words = value[0], value[1:3]
    try:
        owner = scripts.users.resolve(owner_words)
    except ScriptError as err:
        log.info("%s", err)
        what = "Invalid user/group" if owner_words else "Failed to set default user"
        log.info("%s for %s fifo %s - ignoring", what, label or "global", path)
        return None
    script = scripts.get("global_defs", None, f"{keyword}_script") if with_script else None
    return NotifyFifo(path, owner, script, label, umask)
