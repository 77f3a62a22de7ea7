"""``keepalived-py status``: the control socket's status answer as a table for people.

Plain ASCII in aligned columns, like ``ip`` or ``systemctl`` print.  Every field is
optional: an older or newer agent may leave some out or add others, and a missing
value is shown as ``-`` rather than failing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

MISSING = "-"
_GAP = "  "


def render_status(answer: dict[str, Any], wide: bool = False, *,
                  now: float | None = None) -> str:
    """The status answer as text: a header about the agent, then one row per instance.

    ``wide`` lists each virtual address instead of counting them; ``now`` (epoch
    seconds, default the current time) is what "5m12s ago" is measured from.
    """
    now = time.time() if now is None else now
    if answer.get("ok") is False:
        return f"keepalived-py: error: {answer.get('error', 'unknown error')}\n"
    lines = _header(_dict(answer.get("agent")), now)
    vrrp = answer.get("vrrp")
    if not isinstance(vrrp, dict):
        lines.append("no VRRP process running")
        return "\n".join(lines) + "\n"
    instances = [i for i in _list(vrrp.get("instances")) if isinstance(i, dict)]
    lines.append("")
    if instances:
        lines.extend(_table(instances, wide, now))
    else:
        lines.append("no VRRP instances")
    groups = _sync_groups(_list(vrrp.get("sync_groups")))
    if groups:
        lines.append(groups)
    return "\n".join(lines) + "\n"


# Header ---------------------------------------------------------------------------------


def _header(agent: dict[str, Any], now: float) -> list[str]:
    parts = [f"keepalived-py {_text(agent.get('version'))}", f"pid {_text(agent.get('pid'))}"]
    started = _number(agent.get("started"))
    parts.append(f"up {duration(now - started)}" if started is not None else "up -")
    parts.append(f"config {_text(agent.get('config_file'))}")
    lines = [", ".join(parts)]
    children = [c for c in _list(agent.get("children")) if isinstance(c, dict)]
    if children:
        lines.append("children: " + "; ".join(_child(c) for c in children))
    return lines


def _child(child: dict[str, Any]) -> str:
    facts = []
    if child.get("running") is False:
        facts.append("not running")
    else:
        facts.append(f"pid {_text(child.get('pid'))}")
    restarts = child.get("restarts")
    if isinstance(restarts, int):
        facts.append(f"{restarts} restart" + ("" if restarts == 1 else "s"))
    if child.get("last_exit"):
        facts.append(f"last exit: {child['last_exit']}")
    return f"{_text(child.get('name'))} ({', '.join(facts)})"


def _sync_groups(groups: list[Any]) -> str:
    named = []
    for group in groups:
        if isinstance(group, dict) and group.get("name"):
            state = group.get("state")
            named.append(f"{group['name']} ({state})" if state else str(group["name"]))
    return f"sync groups: {', '.join(named)}" if named else ""


# Instances ------------------------------------------------------------------------------


_COLUMNS = ("NAME", "STATE", "PRIO", "VRID", "INTERFACE", "MASTER", "VIPS", "LAST CHANGE")
# With ``wide`` the address list comes last, where a long one cannot push other columns.
_WIDE_COLUMNS = ("NAME", "STATE", "PRIO", "VRID", "INTERFACE", "MASTER", "LAST CHANGE", "VIPS")


def _table(instances: list[dict[str, Any]], wide: bool, now: float) -> list[str]:
    columns = _WIDE_COLUMNS if wide else _COLUMNS
    rows: list[list[str]] = []
    for instance in instances:
        cells = _cells(instance, now)
        vips = instance.get("vips")
        more: list[str] = []
        if isinstance(vips, list):
            if not wide:
                cells["VIPS"] = str(len(vips))
            elif vips:
                cells["VIPS"], *more = (str(v) for v in vips)
        rows.append([cells[c] for c in columns])
        # With ``wide``, each further address goes on a line of its own under the first.
        rows.extend([""] * (len(columns) - 1) + [vip] for vip in more)
    return _align(list(columns), rows)


def _cells(instance: dict[str, Any], now: float) -> dict[str, str]:
    last = _number(instance.get("last_transition"))
    return {
        "NAME": _text(instance.get("name")),
        "STATE": _text(instance.get("state")),
        "PRIO": _priority(instance.get("effective_priority"), instance.get("base_priority")),
        "VRID": _text(instance.get("vrid")),
        "INTERFACE": _text(instance.get("interface")),
        "MASTER": _text(instance.get("master_address")),
        "VIPS": MISSING,
        "LAST CHANGE": f"{duration(now - last)} ago" if last is not None else MISSING,
    }


def _priority(effective: Any, base: Any) -> str:
    if effective is None:
        return _text(base)
    if base is None or base == effective:
        return _text(effective)
    return f"{effective} ({base})"


def _align(header: list[str], rows: Sequence[list[str]]) -> list[str]:
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


def _text(value: Any) -> str:
    return MISSING if value is None or value == "" else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
