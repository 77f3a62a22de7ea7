"""The VRRP part of ``keepalived-py status``: one row per instance, then the sync groups."""

from __future__ import annotations

from typing import Any

from ..core.status import MISSING, align, as_list, duration, number, text


def status_lines(snapshot: dict[str, Any], wide: bool, now: float) -> list[str]:
    instances = [i for i in as_list(snapshot.get("instances")) if isinstance(i, dict)]
    lines = _table(instances, wide, now) if instances else ["no VRRP instances"]
    groups = _sync_groups(as_list(snapshot.get("sync_groups")))
    return [*lines, groups] if groups else lines


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
    return align(list(columns), rows)


def _cells(instance: dict[str, Any], now: float) -> dict[str, str]:
    last = number(instance.get("last_transition"))
    return {
        "NAME": text(instance.get("name")),
        "STATE": text(instance.get("state")),
        "PRIO": _priority(instance.get("effective_priority"), instance.get("base_priority")),
        "VRID": text(instance.get("vrid")),
        "INTERFACE": text(instance.get("interface")),
        "MASTER": text(instance.get("master_address")),
        "VIPS": MISSING,
        "LAST CHANGE": f"{duration(now - last)} ago" if last is not None else MISSING,
    }


def _priority(effective: Any, base: Any) -> str:
    if effective is None:
        return text(base)
    if base is None or base == effective:
        return text(effective)
    return f"{effective} ({base})"
