"""What the parent needs to know of a kind of child process: one declaration each.

The supervisor runs, restarts, checks and asks its children through these
declarations only; it imports no subsystem.  VRRP declares itself in
``agent/vrrp/child.py``; a new child (the checker, BFD) is a new declaration
listed in ``agent/children.py``, not an edit of the supervisor.

A child is started as ``python -m MODULE`` with the common arguments
(``-f FILE -i ID --ipc-fd N --namespace NS --instance NAME --last-state JSON
--kept JSON`` and the log options) plus ``--pid-file`` when it has one, and
talks to the parent over ``core/ipc.py``.  It must answer the requests
``snapshot``, ``reload``, ``dump`` (the kinds it declares) and ``stop``, send
``ready`` once running and a ``heartbeat`` every second, and may publish
events for other children (``core/events.py``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Node

Snapshot = dict[str, Any]


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
    consumes: frozenset[str] = frozenset()
    """The event topics delivered to it (``core/events.py``)."""
    hung_after: float = 5.0
    """Seconds without a heartbeat after which it is taken for hung and killed."""
    metrics: Callable[[Snapshot], Iterable[Any]] | None = None
    """Prometheus metric families from its snapshot."""
    status_lines: Callable[[Snapshot, bool, float], list[str]] | None = None
    """Lines for ``keepalived-py status`` from its snapshot (wide, now)."""
    extra_argv: Callable[[Any], Sequence[str]] = field(default=lambda settings: ())
    """Arguments of its own, from the parent's settings (``-V`` for VRRP)."""


def wanted_kinds(kinds: Iterable[ChildKind], root: Node, enabled: Callable[[str], bool]
                 ) -> list[ChildKind]:
    """The kinds ``root`` needs among those the command line lets run."""
    return [k for k in kinds if enabled(k.name) and k.wanted(root)]


def child_parser(prog: str) -> argparse.ArgumentParser:
    """The arguments the parent gives every child (see the module docstring)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("-f", dest="path", required=True)
    parser.add_argument("-i", dest="config_id", required=True)
    parser.add_argument("--ipc-fd", type=int)
    parser.add_argument("--pid-file")
    parser.add_argument("--namespace")
    parser.add_argument("--instance")
    parser.add_argument("--last-state", type=json.loads, default={},
                        help="JSON: what it published before, by topic")
    parser.add_argument("--kept", type=json.loads, default={},
                        help="JSON: the operator's settings it asked the parent to keep")
    parser.add_argument("-l", dest="console", action="store_true")
    parser.add_argument("-D", dest="detail", action="store_true")
    parser.add_argument("-G", dest="no_syslog", action="store_true")
    parser.add_argument("-S", dest="facility", default="daemon")
    return parser
