"""What every process of the agent shares: keepalived's exit codes and signals, and
how a configuration is read for running."""

from __future__ import annotations

import logging
import signal

from ..config import ParseResult, load
from ..config.diag import Level

log = logging.getLogger("keepalived_py")

# keepalived's exit codes (lib/scheduler.h); 1, 2 and 4 from a child tell the parent
# not to respawn it
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_MISSING_PERMISSION = 4
EXIT_NO_CONFIG = 6
EXIT_PROGRAM_ERROR = 70
PERMANENT_EXITS = {EXIT_FATAL: "FATAL", EXIT_CONFIG: "CONFIG",
                   EXIT_MISSING_PERMISSION: "missing permission"}

SIGJSON = signal.SIGRTMIN + 2
SIGSTATS_CLEAR = signal.SIGRTMAX - 1


class ConfigRefused(Exception):
    """A configuration that cannot be run; ``lines`` say why, each with file and line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines

    def log(self, verdict: str) -> None:
        """Each reason, then what follows from it."""
        for line in self.lines:
            log.error("%s", line)
        log.error("%s", verdict)


def errors_of(result: ParseResult) -> list[str]:
    """The diagnostics that make a reload refuse a configuration: every error.

    At start keepalived runs a configuration with errors, skipping what is
    wrong, and so do we; on reload we keep the running one instead (as
    keepalived does with ``reload_check_config``), since the old one works.
    """
    return [str(d) for d in result.diags
            if Level.OK < d.level < Level.WARNING or d.level is Level.SECURITY_ERROR]


def read_checked(path: str, config_id: str, strict: bool) -> ParseResult:
    """The configuration, or ``ConfigRefused`` when it cannot run (with ``strict``: when
    it has any error)."""
    result = load(path, config_id=config_id)
    highest = result.diags.highest()
    errors = errors_of(result)
    if highest in (Level.FILE_NOT_FOUND, Level.FATAL) or (strict and errors):
        raise ConfigRefused(errors or [f"{path}: the configuration cannot be run"])
    return result
