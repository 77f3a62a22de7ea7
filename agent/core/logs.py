"""Logging as keepalived does it: syslog by default, the console with ``-l``.

Every process logs under its own ident (``Keepalived``, ``Keepalived_vrrp``),
so syslog and journald tell the parent from the children.  On a journald
stream (systemd sets ``$JOURNAL_STREAM``) console lines carry the ``<N>``
priority prefix and no time stamp: journald adds its own.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass

FACILITIES = {
    **{str(n): logging.handlers.SysLogHandler.LOG_LOCAL0 + n for n in range(8)},
    **{f"local{n}": logging.handlers.SysLogHandler.LOG_LOCAL0 + n for n in range(8)},
    "user": logging.handlers.SysLogHandler.LOG_USER,
    "daemon": logging.handlers.SysLogHandler.LOG_DAEMON,
}
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


@dataclass(frozen=True)
class LogOptions:
    console: bool = False           # -l
    detail: bool = False            # -D
    facility: str = "daemon"        # -S
    syslog: bool = True             # not -G

    def argv(self) -> list[str]:
        """The same options for a child's command line."""
        out = ["-S", self.facility]
        if self.console:
            out.append("-l")
        if self.detail:
            out.append("-D")
        if not self.syslog:
            out.append("-G")
        return out


class ConsoleFormatter(logging.Formatter):
    """keepalived's console time stamp, with milliseconds added for timing."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        t = time.localtime(record.created)
        return (time.strftime("%a %b %d %H:%M:%S", t) + f".{int(record.msecs):03d}"
                + time.strftime(" %Y", t))


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def on_journal(stream) -> bool:  # noqa: ANN001 - a text stream
    """True when ``stream`` is the journald stream systemd connected us to."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return wanted == f"{st.st_dev}:{st.st_ino}"


def setup(ident: str, options: LogOptions = LogOptions(console=True), stream=None) -> None:  # noqa: ANN001,B008
    stream = stream or sys.stderr
    handlers: list[logging.Handler] = []
    if options.console:
        console = logging.StreamHandler(stream)
        if on_journal(stream):
            console.setFormatter(JournalFormatter("%(message)s"))
        else:
            console.setFormatter(ConsoleFormatter("%(asctime)s: %(message)s"))
        handlers.append(console)
    if options.syslog and not options.console and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(
            "/dev/log", facility=FACILITIES.get(options.facility, FACILITIES["daemon"]))
        handler.ident = f"{ident}[{os.getpid()}]: "
        handlers.append(handler)
    if not handlers:
        # Neither a console nor syslog: say it somewhere rather than nowhere.
        fallback = logging.StreamHandler(stream)
        fallback.setFormatter(ConsoleFormatter("%(asctime)s: %(message)s"))
        handlers.append(fallback)
    root = logging.getLogger("keepalived_py")
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if options.detail else logging.INFO)
    root.propagate = False
