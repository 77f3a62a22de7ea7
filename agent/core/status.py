"""``keepalived-py status``: the control socket's status answer as a table for people.

Plain ASCII in aligned columns, like ``ip`` or ``systemctl`` print.  Every field is
optional: an older or newer agent may leave some out or add others, and a missing
value is shown as ``-`` rather than failing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .children import ChildKind

MISSING = "-"
_GAP = "  "


def render_status(kinds: Sequence[ChildKind], answer: dict[str, Any], wide: bool = False, *,
                  now: float | None = None) -> str:
    """The status answer as text: a header about the agent, then each child's part
    (its declaration's ``status_lines``: VRRP's is a row per instance).

    ``wide`` lists each virtual address instead of counting them; ``now`` (epoch
    seconds, default the current time) is what "5m12s ago" is measured from.
    """
    now = time.time() if now is None else now
    if answer.get("ok") is False:
        return f"keepalived-py: error: {answer.get('error', 'unknown error')}\n"
    lines = _header(as_dict(answer.get("agent")), now)
    for kind in kinds:
        if kind.name not in answer:
            continue                    # the configuration does not need it
        part = answer.get(kind.name)
        if not isinstance(part, dict):
            lines.append(f"no {kind.title} process running")
        elif kind.status_lines is not None:
            lines += ["", *kind.status_lines(part, wide, now)]
    return "\n".join(lines) + "\n"


# Header ---------------------------------------------------------------------------------


def _header(agent: dict[str, Any], now: float) -> list[str]:
    parts = [f"keepalived-py {text(agent.get('version'))}", f"pid {text(agent.get('pid'))}"]
    started = number(agent.get("started"))
    parts.append(f"up {duration(now - started)}" if started is not None else "up -")
    parts.append(f"config {text(agent.get('config_file'))}")
    lines = [", ".join(parts)]
    children = [c for c in as_list(agent.get("children")) if isinstance(c, dict)]
    if children:
        lines.append("children: " + "; ".join(_child(c) for c in children))
    return lines


def _child(child: dict[str, Any]) -> str:
    facts = []
    if child.get("running") is False:
        facts.append("not running")
    else:
        facts.append(f"pid {text(child.get('pid'))}")
    restarts = child.get("restarts")
    if isinstance(restarts, int):
        facts.append(f"{restarts} restart" + ("" if restarts == 1 else "s"))
    if child.get("last_exit"):
        facts.append(f"last exit: {child['last_exit']}")
    return f"{text(child.get('name'))} ({', '.join(facts)})"


def align(header: list[str], rows: Sequence[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [_GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


# Values ---------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``42s``, ``5m12s``, ``2h03m``, ``3d04h``: two units at most, like ``systemctl``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def text(value: Any) -> str:
    return MISSING if value is None or value == "" else str(value)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
