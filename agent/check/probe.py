"""What every probe shares: where it connects and what one attempt found.

A probe makes ONE check attempt (a TCP connect, one HTTP GET, one run of a
MISC_CHECK script) and returns a :class:`ProbeResult`.  It never raises for a
failed check: refused connections, timeouts, TLS errors and malformed replies
all become ``ProbeResult(ok=False, error=...)``.  When and how often to probe,
and what a result means for the real server, is the checker engine's business.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Where a probe connects: the real server and the checker's connection options."""

    ip: str                         # connect_ip or the real server's address (IPv4 or IPv6)
    port: int                       # connect_port or the real server's port (0 for MISC/FILE)
    bindto: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None      # SO_BINDTODEVICE (needed for IPv6 link-local)
    fwmark: int | None = None       # SO_MARK
    timeout: float = 5.0            # connect_timeout; for HTTP also the idle timeout of each read


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one attempt.

    ``error`` is one line saying why it failed.  ``weight`` is set only by a
    MISC_CHECK with ``misc_dynamic`` whose script asked for a weight (exit
    status - 2); None means the real server's configured weight.

    ``inconclusive`` marks a failure on our side, before anything reached the
    server (no socket, bind, bind_if or fwmark refused, a connect() the kernel
    refused for a reason that says nothing about the server): keepalived logs
    such an attempt and tries again after delay_loop without counting it, and
    the engine should do the same.  ``ok`` is False for it too.
    """

    ok: bool
    error: str = ""
    weight: int | None = None
    detail: str = ""
    inconclusive: bool = False


class ProbeFailure(Exception):
    """Raised inside a probe's steps; the probe turns it into its ProbeResult."""

    def __init__(self, error: str, *, inconclusive: bool = False, detail: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.inconclusive = inconclusive
        self.detail = detail

    def result(self) -> ProbeResult:
        return ProbeResult(False, self.error, detail=self.detail, inconclusive=self.inconclusive)


def seconds(value: float) -> str:
    """A timeout for a message: ``5 s``, ``0.5 s``."""
    return f"{value:g} s"
