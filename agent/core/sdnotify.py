"""systemd's readiness protocol: one datagram to ``$NOTIFY_SOCKET`` per message.

The protocol is a single ``sendto`` (sd_notify(3)); a library would add a
dependency for four lines.  Outside systemd the variable is unset and every
call does nothing.
"""

from __future__ import annotations

import os
import socket


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    # An abstract socket is written with a leading "@".
    return "\0" + path[1:] if path.startswith("@") else path


def notify(*fields: str) -> bool:
    """Send ``READY=1``, ``STATUS=...`` and the like; False when not under systemd."""
    address = _address()
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``WatchdogSec`` (systemd's advice), when the watchdog is ours to feed."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
