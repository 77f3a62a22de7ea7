"""What the checker process shows of itself: the control socket's ``checker`` part.

Virtual servers with their real servers (state, configured and effective
weight, the weight in the kernel, each checker's last result), the quorum, the
data plane's own view (available or why not, connection counters, services
it found that are not ours) and the last notify FIFO lines.  Times are wall
clock (seconds since the epoch), as the VRRP snapshot gives them.
"""

from __future__ import annotations

import time
from typing import Any

from . import engine as E

METHODS = {"NAT": "Masq", "DR": "Route", "TUN": "Tunnel"}


def check_snapshot(pool: E.Pool, *, now: float, plane: dict[str, Any],
                   counters: dict[E.VsKey, dict[str, Any]],
                   fifo_lines: list[str], probes_run: int) -> dict[str, Any]:
    """``now``: the monotonic clock the pool runs on; counters: the data plane's
    per-service figures (``dests`` by real-server key)."""
    wall = time.time() - now
    servers = []
    for vs in pool.servers.values():
        kernel = counters.get(vs.key, {})
        reals = [_real(vs, rs, kernel.get("dests", {}).get(key), wall, now)
                 for key, rs in vs.reals.items()]
        for key, d in vs.draining.items():
            reals.append({"ip": key[0], "port": key[1], "name": d.spec.name(vs.spec.protocol),
                          "state": "DRAINING", "weight": d.spec.weight,
                          "kernel_weight": vs.table.get(key),
                          "method": METHODS[d.spec.forwarding.method],
                          "drain_deadline": wall + d.deadline, "checkers": [],
                          "kernel": kernel.get("dests", {}).get(key)})
        sorry = vs.sorry
        servers.append({
            "name": vs.spec.name, "kind": vs.spec.kind, "protocol": vs.spec.protocol,
            "ip": vs.spec.ip, "port": vs.spec.port, "fwmark": vs.spec.fwmark or None,
            "scheduler": vs.spec.scheduler,
            "persistence_timeout": vs.spec.persistence_timeout or None,
            "quorum": vs.spec.quorum, "hysteresis": vs.spec.hysteresis,
            "quorum_up": vs.quorum_up, "live_weight": vs.live_weight(),
            "suspended": vs.suspended, "programmed": vs.alive,
            "sorry_server": None if sorry is None else {
                "ip": sorry.spec.ip, "port": sorry.spec.port, "active": sorry.alive,
                "inhibit": sorry.inhibit, "kernel_weight": vs.table.get(sorry.spec.key)},
            "real_servers": reals,
            "kernel": {k: v for k, v in kernel.items() if k != "dests"} or None,
        })
    return {"virtual_servers": servers, "data_plane": plane, "fifo_lines": fifo_lines,
            "probes_run": probes_run}


def _real(vs: E.VirtualServer, rs: E.RealServer, kernel: dict[str, Any] | None, wall: float,
          now: float) -> dict[str, Any]:
    state = "UP" if rs.alive else "DOWN"
    if not vs.quorum_up and vs.sorry is not None and vs.sorry.alive and rs.alive:
        state = "UP (sorry server serves)"
    return {
        "ip": rs.spec.ip, "port": rs.spec.port, "name": rs.spec.name(vs.spec.protocol),
        "state": state, "alive": rs.alive, "in_kernel": rs.spec.key in vs.table,
        "weight": rs.spec.weight, "effective_weight": rs.effective_weight,
        "kernel_weight": vs.table.get(rs.spec.key), "inhibit": rs.inhibit,
        "method": METHODS[rs.spec.forwarding.method], "failed_checkers": rs.failed,
        "checkers": [_checker(c, wall, now) for c in rs.checkers],
        "not_run": list(rs.spec.skipped),
        "kernel": kernel,
    }


def _checker(c: E.Checker, wall: float, now: float) -> dict[str, Any]:
    return {
        "kind": c.spec.kind, "up": c.up, "has_run": c.has_run,
        "last_result": None if c.last_result is None else ("ok" if c.last_result else "failed"),
        "last_error": c.last_error or None,
        "last_time": None if c.last_time is None else wall + c.last_time,
        "next_run": None if c.next_run is None else wall + c.next_run,
        "running": c.running, "enabled": c.enabled, "retries": c.retry_it,
        "weight_added": c.cur_weight,
        "delay_loop": c.spec.delay_loop,
    }
