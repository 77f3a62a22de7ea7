"""The checker part of ``keepalived-py status``: a table that reads like ``ipvsadm -Ln``."""

from __future__ import annotations

from typing import Any

from ..core.status import MISSING, align, as_dict, as_list, duration, number, text

_COLUMNS = ("SERVER", "STATE", "WEIGHT", "CHECKERS", "LAST CHECK", "CONN")


def status_lines(snapshot: dict[str, Any], wide: bool, now: float) -> list[str]:
    plane = as_dict(snapshot.get("data_plane"))
    head = f"data plane: {text(plane.get('name'))}"
    if plane.get("reason"):
        head += f" ({plane['reason']})"
    servers = [s for s in as_list(snapshot.get("virtual_servers")) if isinstance(s, dict)]
    if not servers:
        return [head, "no virtual servers"]
    rows: list[list[str]] = []
    for vs in servers:
        quorum = f"quorum {'up' if vs.get('quorum_up') else 'DOWN'} " \
                 f"{text(vs.get('live_weight'))}/{text(vs.get('quorum'))}"
        if vs.get("suspended"):
            quorum += ", suspended (ha_suspend)"
        rows.append([f"{text(vs.get('name'))} {text(vs.get('scheduler'))}", quorum,
                     "", "", "", ""])
        for rs in as_list(vs.get("real_servers")):
            if isinstance(rs, dict):
                rows.append(_real(rs, wide, now))
        sorry = vs.get("sorry_server")
        if isinstance(sorry, dict):
            rows.append([f"  sorry {text(sorry.get('ip'))}:{text(sorry.get('port'))}",
                         "ACTIVE" if sorry.get("active") else "standby",
                         text(sorry.get("kernel_weight")), "", "", ""])
    return [head, *align(list(_COLUMNS), rows)]


def _real(rs: dict[str, Any], wide: bool, now: float) -> list[str]:
    checkers = [c for c in as_list(rs.get("checkers")) if isinstance(c, dict)]
    results = []
    last = None
    for c in checkers:
        mark = {"ok": "ok", "failed": "FAIL"}.get(str(c.get("last_result")), "-")
        results.append(f"{str(c.get('kind')).removesuffix('_CHECK')}:{mark}")
        t = number(c.get("last_time"))
        if t is not None and (last is None or t > last):
            last = t
    errors = [str(c["last_error"]) for c in checkers if c.get("last_error")]
    kernel = as_dict(rs.get("kernel"))
    conn = MISSING if not kernel else \
        f"{text(kernel.get('active_conns'))}/{text(kernel.get('inact_conns'))}"
    weight = text(rs.get("kernel_weight")) if rs.get("kernel_weight") is not None else "-"
    configured = text(rs.get("effective_weight", rs.get("weight")))
    row = [f"  -> {text(rs.get('ip'))}:{text(rs.get('port'))} {text(rs.get('method'))}",
           text(rs.get("state")), f"{weight} ({configured})", " ".join(results) or MISSING,
           f"{duration(now - last)} ago" if last is not None else MISSING, conn]
    if wide and errors:
        row[3] += f" [{'; '.join(errors)}]"
    return row
