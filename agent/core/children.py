"""What the parent needs to know of a kind of child process: one declaration each.

The supervisor runs, restarts, checks and asks its children through these
declarations only; it imports no subsystem.  VRRP declares itself in
``agent/vrrp/child.py``; a new child (the checker, BFD) is a new declaration
listed in ``agent/children.py``, not an edit of the supervisor.

A child is started as ``python -m MODULE`` with the common arguments
(``-f FILE -i ID --ipc-fd N --namespace NS --instance NAME`` and the log
options) plus ``--pid-file`` when it has one, and talks to the parent over
``core/ipc.py``.  The first line it reads there is the parent's ``hello``
(``read_hello``): what it published before it was restarted (``last_state``,
by topic) and the operator's settings it asked the parent to keep (``kept``);
they travel on the line, not on the command line, whose arguments are limited
to 128 KiB each.  It must answer the requests ``snapshot``, ``reload`` and
``dump`` (the kinds it declares), send ``ready`` once running and a
``heartbeat`` every second, and publishes its declared topics
(``core/events.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Node

Snapshot = dict[str, Any]


def lazy(module: str, attribute: str) -> Callable[..., Any]:
    """``module.attribute``, imported when first called: the parent loads only what it
    uses of a child's code (its status lines, its metrics)."""
    def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - whatever it returns
        return getattr(importlib.import_module(module), attribute)(*args, **kwargs)
    return call


def build_refusals(module: str) -> Callable[[Node, str], list[str]]:
    """A child's ``check``: the error its ``module.build_checked(root)`` raises as
    ``module.BuildError`` for what the parser took but the child cannot run."""
    def check(root: Node, path: str) -> list[str]:
        build = importlib.import_module(module)
        try:
            build.build_checked(root)
        except build.BuildError as err:
            return [str(err)]
        return []
    return check


def _no_errors(root: Node, path: str) -> list[str]:
    return []


@dataclass(frozen=True)
class ChildKind:
    name: str
    """Its key everywhere: in the status answer, the pid file ``NAME.pid``, the log."""
    title: str
    """What people call it, in messages (``VRRP``)."""
    ident: str
    """Its syslog ident, as keepalived names its children (``Keepalived_vrrp``)."""
    module: str
    """Its entry point, run as ``python -m MODULE``."""
    pid_option: str
    """keepalived's option naming its pid file (``vrrp_pid`` for ``-r/--vrrp_pid``)."""
    wanted: Callable[[Node], bool]
    """Whether a configuration needs this child (keepalived starts a child only for
    configurations that have work for it)."""
    check: Callable[[Node, str], list[str]] = _no_errors
    """The errors that make it refuse a configuration (root, path), beyond the
    parser's; a reload goes ahead only when no child refuses."""
    dumps: frozenset[str] = frozenset()
    """The dumps it writes (``data``, ``stats``, ``stats_clear``, ``json``)."""
    requests: frozenset[str] = frozenset()
    """Control-socket requests the parent hands to it as they are (``set``)."""
    publishes: frozenset[str] = frozenset()
    """The event topics it owns (``core/events.py``)."""
    consumes: frozenset[str] = frozenset()
    """The event topics delivered to it."""
    hung_after: float = 5.0
    """Seconds without a heartbeat after which it is taken for hung and killed."""
    metrics: Callable[[Snapshot], Iterable[Any]] | None = None
    """Prometheus metric families from its snapshot."""
    status_lines: Callable[[Snapshot, bool, float], list[str]] | None = None
    """Lines for ``keepalived-py status`` from its snapshot (wide, now)."""
    extra_argv: Callable[[Any], Sequence[str]] = field(default=lambda settings: ())
    """Arguments of its own, from the parent's settings (``-V`` for VRRP)."""


def child_parser(prog: str) -> argparse.ArgumentParser:
    """The arguments the parent gives every child (see the module docstring)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("-f", dest="path", required=True)
    parser.add_argument("-i", dest="config_id", required=True)
    parser.add_argument("--ipc-fd", type=int)
    parser.add_argument("--pid-file")
    parser.add_argument("--namespace")
    parser.add_argument("--instance")
    parser.add_argument("-l", dest="console", action="store_true")
    parser.add_argument("-D", dest="detail", action="store_true")
    parser.add_argument("-G", dest="no_syslog", action="store_true")
    parser.add_argument("-S", dest="facility", default="daemon")
    return parser


HELLO_TIMEOUT = 30.0


def read_hello(ipc_fd: int) -> dict[str, Any]:
    """The parent's first line on the IPC socket, read before the child's loop runs.

    The parent sends nothing else until the child says it is ready, so reading
    whole chunks cannot swallow a later message."""
    sock = socket.socket(fileno=ipc_fd)
    try:
        sock.settimeout(HELLO_TIMEOUT)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the parent closed the line before its hello")
            data += chunk
    finally:
        sock.settimeout(None)
        sock.detach()           # the fd stays open for the child's channel
    hello = json.loads(data)
    if not isinstance(hello, dict) or hello.get("event") != "hello":
        raise ValueError(f"expected the parent's hello, got {data[:80]!r}")
    return hello


def hello_message(last_state: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    return {"event": "hello", "last_state": last_state, "kept": kept}
