"""track_file through inotify, as keepalived does it (trackers/track_file.c).

Each file's *directory* is watched for a file closed after writing, moved in or
out, or deleted, so a value written in place, a file replaced by rename
(``echo 1 > x; mv x value``), and a file deleted and made again are all seen.
A file that is gone reads 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from asyncinotify import Event, Inotify, Mask, Watch

from ..trackers import READ_SIZE, FileConfig, FileValue

log = logging.getLogger("keepalived_py.host")

WATCH_MASK = Mask.CLOSE_WRITE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO


def apply_init_file(name: str, config: FileConfig, *, reloading: bool) -> None:
    """``init_file``: write the initial value, as keepalived does when it reads the
    configuration (for every track_file, tracked or not)."""
    try:
        info = os.stat(config.path)
    except OSError:
        exists = regular = False
    else:
        exists, regular = True, stat.S_ISREG(info.st_mode)
    if exists and not regular and config.init is not None and config.init[1]:
        log.error("Cannot initialise track file %s - it is not a regular file", name)
        return
    content = FileValue.init_content(config.init, exists=exists, regular=regular,
                                     reloading=reloading)
    if content is None:
        return
    try:
        with open(config.path, "w", encoding="ascii") as f:
            f.write(content)
    except OSError as err:
        log.error("Unable to initialise track file %s: %s", name, err)


def resolve(name: str, path: str) -> tuple[str, bool] | None:
    """The absolute path keepalived watches, and whether the file exists; None when
    keepalived drops the track file (its directory is missing or unreachable).

    An existing file is followed through symlinks; a missing one is placed in
    its resolved directory.
    """
    try:
        return os.path.realpath(path, strict=True), True
    except FileNotFoundError:
        pass
    except OSError:
        log.error("track file %s is not accessible - ignoring", name)
        return None
    directory, base = os.path.split(path)
    try:
        directory = os.path.realpath(directory or ".", strict=True)
    except OSError:
        directory = ""
    if not directory or not os.path.isdir(directory):
        log.error("Track file directory for %s does not exist - removing", name)
        return None
    return os.path.join(directory, base), False


def read_content(path: str) -> bytes | None:
    """What keepalived reads of the file: its first bytes; None if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, READ_SIZE)
    except OSError:
        return b""
    finally:
        os.close(fd)


@dataclass
class _File:
    name: str
    path: str
    directory: str
    base: str
    value: FileValue


class FileWatcher:
    """The track files, on one inotify instance; ``on_change(name, value)`` is called
    when a file's value changes."""

    def __init__(self, on_change: Callable[[str, int], None]) -> None:
        self._on_change = on_change
        self._inotify: Inotify | None = None
        self._files: dict[str, _File] = {}
        self._watches: dict[str, Watch] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, name: str, path: str) -> int | None:
        """Watch a file and read its value, which is returned; None when keepalived
        would drop the track file (see :func:`resolve`)."""
        resolved = resolve(name, path)
        if resolved is None:
            return None
        full, exists = resolved
        directory, base = os.path.split(full)
        if self._inotify is None:
            self._inotify = Inotify()
        if directory not in self._watches:
            try:
                self._watches[directory] = self._inotify.add_watch(directory, WATCH_MASK)
            except OSError as err:
                log.error("Unable to monitor track file %s: %s", name, err)
                return None
        file = _File(name, full, directory, base, FileValue())
        if exists:
            file.value.update(read_content(full))
        self._files[name] = file
        return file.value.value

    def remove(self, name: str) -> None:
        file = self._files.pop(name, None)
        if file is None or any(f.directory == file.directory for f in self._files.values()):
            return
        watch = self._watches.pop(file.directory, None)
        if watch is not None and self._inotify is not None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._inotify.rm_watch(watch)

    def value(self, name: str) -> int:
        return self._files[name].value.value

    def path(self, name: str) -> str:
        return self._files[name].path

    def names(self) -> list[str]:
        return list(self._files)

    async def start(self) -> None:
        if self._inotify is None:
            self._inotify = Inotify()
        if self._task is None:
            self._task = asyncio.create_task(self._read_events(self._inotify))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._watches.clear()
        self._files.clear()

    async def _read_events(self, inotify: Inotify) -> None:
        while True:
            event = await inotify.get()
            try:
                self._handle(event)
            except Exception:       # one bad event must not end the watching
                log.exception("track file event %r", event)

    def _handle(self, event: Event) -> None:
        if event.mask & Mask.Q_OVERFLOW:
            # events were lost: read every file again (keepalived does not)
            for file in list(self._files.values()):
                self._update(file, read_content(file.path))
            return
        if event.mask & Mask.IGNORED:
            watch = event.watch
            if watch is not None:
                log.warning("track file directory %s is gone: no longer watched", watch.path)
                self._watches.pop(str(watch.path), None)
            return
        if event.mask & Mask.ISDIR or event.name is None or event.watch is None:
            return
        directory, base = str(event.watch.path), str(event.name)
        for file in list(self._files.values()):
            if file.directory != directory or file.base != base:
                continue
            if event.mask & (Mask.MOVED_FROM | Mask.DELETE):
                self._update(file, None)
            else:
                self._update(file, read_content(file.path))

    def _update(self, file: _File, content: bytes | None) -> None:
        number = FileValue.parse(content)
        if number is None:
            log.info("Invalid number read from %s - ignoring", file.path)
            return
        if file.value.update(content):
            self._on_change(file.name, file.value.value)
