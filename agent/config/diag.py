"""Diagnostics: what the config reader says about a file, with file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Level(IntEnum):
    """Severity, in keepalived 2.2.7's order (lib/parser.h ``config_err_t``).

    keepalived keeps the highest level reported and derives the ``-t`` exit code
    from it; we do the same so that scripts written against keepalived's exit
    codes keep working.  ``NOTE`` is ours: a message that does not count.
    """

    NOTE = -1
    OK = 0
    FILE_NOT_FOUND = 1
    BAD_IF = 2
    FATAL = 3
    MULTIPLE_FILES = 4
    UNKNOWN_KEYWORD = 5
    UNEXPECTED_BOB = 6
    MISSING_BOB = 7
    UNEXPECTED_EOB = 8
    MISSING_EOB = 9
    UNMATCHED_QUOTE = 10
    MISSING_PARAMETER = 11
    INVALID_NUMBER = 12
    GENERAL_ERROR = 13
    WARNING = 14
    DEPRECATED = 15
    SECURITY_ERROR = 16


class Invalid(Exception):
    """A value that cannot be used, raised once it is reported; the keyword is then ignored.

    It lives here, below the schema, so that the number readers can raise it too.
    """


# keepalived's config-test exit codes (keepalived/core/main.c config_test_exit)
EXIT_OK = 0
EXIT_CANNOT_RUN = 4
EXIT_ERRORS = 5
EXIT_SECURITY = 6


@dataclass(frozen=True)
class Where:
    """A place in the configuration text."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Diagnostic:
    level: Level
    message: str
    where: Where | None = None

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        kind = "note" if self.level is Level.NOTE else (
            "security" if self.level is Level.SECURITY_ERROR else
            "warning" if self.level >= Level.WARNING else "error")
        return f"{prefix}{kind}: {self.message}"


@dataclass
class Diagnostics:
    """Collects diagnostics; ``where`` is filled in from the current position."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, level: Level, message: str, where: Where | None = None) -> None:
        self.items.append(Diagnostic(level, message, where))

    def highest(self) -> Level:
        counted = [d.level for d in self.items if d.level > Level.OK]
        return max(counted, default=Level.OK)

    def exit_code(self) -> int:
        level = self.highest()
        if level is Level.OK:
            return EXIT_OK
        if level <= Level.FATAL:
            return EXIT_CANNOT_RUN
        if level is Level.SECURITY_ERROR:
            return EXIT_SECURITY
        return EXIT_ERRORS

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
