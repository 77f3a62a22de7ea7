"""The BFD part of ``keepalived-py status``: a row per session, like ``birdc show bfd sessions``."""

from __future__ import annotations

from typing import Any

from ..core.status import MISSING, align, as_dict, as_list, duration, number, text

_COLUMNS = ("SESSION", "STATE", "NEIGHBOR", "TX", "RX", "DETECT", "IN/OUT", "DROPS", "SINCE")
_WIDE = ("SOURCE", "DISCR LOCAL/REMOTE")


def _ms(value: Any) -> str:
    """Microseconds as milliseconds, as people configure them: ``20 ms``, ``3.3 ms``."""
    us = number(value)
    if us is None or us <= 0:
        return MISSING
    return f"{us / 1000:g} ms"


def _state(s: dict[str, Any]) -> str:
    state = text(s.get("state"))
    if s.get("remote_admin_down"):
        return f"{state} (peer AdminDown)"
    diag = s.get("diag")
    if state != "Up" and diag and diag != "none":
        return f"{state} ({diag})"
    return state


def _session(s: dict[str, Any], wide: bool, now: float) -> list[str]:
    drops = sum(v for v in as_dict(s.get("drops")).values() if isinstance(v, int))
    since = number(s.get("since"))
    detect = _ms(s.get("detection_time_us"))
    if detect != MISSING and s.get("remote_multiplier"):
        detect += f" (x{s['remote_multiplier']})"
    neighbor = text(s.get("neighbor"))
    if s.get("multihop"):
        neighbor += " multihop"
    row = [text(s.get("name")), _state(s), neighbor, _ms(s.get("tx_interval_us")),
           _ms(s.get("remote_tx_interval_us")), detect,
           f"{text(s.get('packets_in'))}/{text(s.get('packets_out'))}", str(drops),
           duration(now - since) if since is not None else MISSING]
    if wide:
        source = s.get("source") or "*"
        port = s.get("source_port")
        row += [f"{source}:{port}" if port else source,
                f"{int(s.get('local_discr') or 0):#x}/{int(s.get('remote_discr') or 0):#x}"]
    return row


def status_lines(snapshot: dict[str, Any], wide: bool, now: float) -> list[str]:
    sessions = [s for s in as_list(snapshot.get("sessions")) if isinstance(s, dict)]
    up = sum(1 for s in sessions if s.get("state") == "Up")
    listening = " ".join(f"{text(r.get('family'))}:{text(r.get('port'))}"
                         for r in as_list(snapshot.get("listening")) if isinstance(r, dict))
    head = f"BFD: {len(sessions)} session{'' if len(sessions) == 1 else 's'}, {up} Up"
    if listening:
        head += f"; listening on {listening}"
    lines = [head]
    if sessions:
        columns = list(_COLUMNS) + (list(_WIDE) if wide else [])
        lines += align(columns, [_session(s, wide, now) for s in sessions])
    drops = {k: v for k, v in as_dict(snapshot.get("drops")).items()
             if isinstance(v, int) and v}
    if drops:
        lines.append("dropped, no session: " + ", ".join(f"{k} {v}" for k, v in
                                                          sorted(drops.items())))
    timers = as_dict(snapshot.get("timers"))
    late = number(timers.get("late_max_us"))
    counts = [c for c in as_list(timers.get("late_counts")) if isinstance(c, int)]
    if wide and late is not None and counts:
        bounds = as_list(timers.get("late_buckets_us"))
        under_1ms = sum(c for c, b in zip(counts, bounds, strict=False)
                        if isinstance(b, int) and b <= 1000)
        lines.append(f"timers: {sum(counts)} wake-ups for a deadline, "
                     f"{100 * under_1ms / sum(counts):.2f} % within 1 ms, latest "
                     f"{late / 1000:g} ms late")
    return lines
