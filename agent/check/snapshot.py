"""What the checker process shows of itself: the control socket's ``checker`` part.

Virtual servers with their real servers (state, configured and effective
weight, the weight in the kernel, each checker's last result), the quorum, the
data plane's own view (available or why not, connection counters, services
it found that are not ours) and the last notify FIFO lines.  Times are wall
clock (seconds since the epoch), as the VRRP snapshot gives them.

It also carries what keepalived 2.2.7's data dump (keepalived_check.data,
``dumps.py``) prints: each server's and checker's settings as resolved, and
the state behind them (retry iterations, the failed url, a MISC_CHECK's last
run).  The global definitions, the SSL block, the track files and the scripts'
users need the configuration itself: they are there when the caller passes
``root`` (and ``scripts``, for the users the scripts run as).
"""

from __future__ import annotations

import time
from typing import Any

from ..config.model import Node
from ..host.scripts import ConfigScripts, ScriptCommand, ScriptError, ScriptUsers
from . import engine as E
from .http_wire import UrlCheck
from .spec import DEFAULT_DELAY_BEFORE_RETRY, CheckerSpec, Forwarding

METHODS = {"NAT": "Masq", "DR": "Route", "TUN": "Tunnel"}
# keepalived's default connect_timeout of a virtual server (alloc_vs)
DEFAULT_CONNECT_TIMEOUT = 5.0
# the checkers that connect somewhere (keepalived gives them connection options)
CONNECTING = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK",
              "PING_CHECK")


def check_snapshot(pool: E.Pool, *, now: float, plane: dict[str, Any],
                   counters: dict[E.VsKey, dict[str, Any]],
                   fifo_lines: list[str], probes_run: int, root: Node | None = None,
                   scripts: ConfigScripts | None = None, detail: bool = False,
                   ) -> dict[str, Any]:
    """``now``: the monotonic clock the pool runs on; counters: the data plane's
    per-service figures (``dests`` by real-server key).  ``detail``: also every setting
    keepalived_check.data prints, for the dumps (six times the work, at 10,000 real
    servers most of a second of the checker's loop: the status leaves it out);
    ``root`` and ``scripts``: the running configuration, for the parts of the data
    dump only it has."""
    wall = time.time() - now
    servers = []
    for vs in pool.servers.values():
        kernel = counters.get(vs.key, {})
        reals = [_real(vs, rs, kernel.get("dests", {}).get(key), wall, now, scripts, detail)
                 for key, rs in vs.reals.items()]
        for key, d in vs.draining.items():
            reals.append({"ip": key[0], "port": key[1], "name": d.spec.name(vs.spec.protocol),
                          "state": "DRAINING", "weight": d.spec.weight,
                          "kernel_weight": vs.table.get(key),
                          "method": METHODS[d.spec.forwarding.method],
                          "drain_deadline": wall + d.deadline, "checkers": [],
                          "kernel": kernel.get("dests", {}).get(key)})
        sorry = vs.sorry
        spec = vs.spec
        node = spec.node
        server: dict[str, Any] = {
            "name": spec.name, "kind": spec.kind, "protocol": spec.protocol,
            "ip": spec.ip, "port": spec.port, "fwmark": spec.fwmark or None,
            "scheduler": spec.scheduler,
            "persistence_timeout": spec.persistence_timeout or None,
            "quorum": spec.quorum, "hysteresis": spec.hysteresis,
            "quorum_up": vs.quorum_up, "live_weight": vs.live_weight(),
            "suspended": vs.suspended, "programmed": vs.alive,
            "sorry_server": None if sorry is None else {
                "ip": sorry.spec.ip, "port": sorry.spec.port, "active": sorry.alive,
                "inhibit": sorry.inhibit, "kernel_weight": vs.table.get(sorry.spec.key),
                "method": METHODS[sorry.spec.forwarding.method],
                "tunnel": _tunnel(sorry.spec.forwarding),
                "duplicates_rs": sorry.spec.key in vs.reals},
            "real_servers": reals,
            "kernel": {k: v for k, v in kernel.items() if k != "dests"} or None,
        }
        servers.append(server)
        if not detail:
            continue
        server.update({
            # settings as keepalived's data dump shows them
            "af": spec.af, "flags": list(spec.flags),
            "persistence_granularity": spec.persistence_granularity,
            "virtualhost": spec.virtualhost,
            "snmp_name": _value(node, "snmp_name"),
            "connect_timeout": float(_value(node, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            "delay_loop": spec.delay_loop,
            "alpha": spec.alpha, "omega": spec.omega,
            # set on the virtual server itself (else keepalived prints no line)
            "retry": _value(node, "retry"),
            "delay_before_retry": _value(node, "delay_before_retry"),
            "warmup": _value(node, "warmup"),
            "inhibit": node is not None and "inhibit_on_failure" in node.values,
            "quorum_scripts": {keyword: _script(scripts, "virtual_server", spec.script_name,
                                                keyword)
                               for keyword in ("quorum_up", "quorum_down")},
            "ha_suspend": spec.ha_suspend, "smtp_alert": spec.smtp_alert,
            "default_method": METHODS[_vs_forwarding(node).method],
            "default_tunnel": _tunnel(_vs_forwarding(node)),
            # a virtual server a reload kept (the engine marks its real servers only)
            "reloaded": any(rs.reloaded for rs in vs.reals.values()),
        })
    out: dict[str, Any] = {"virtual_servers": servers, "data_plane": plane,
                           "fifo_lines": fifo_lines, "probes_run": probes_run}
    if detail and root is not None:
        out["config"] = _config(root, pool, scripts)
    return out


def _real(vs: E.VirtualServer, rs: E.RealServer, kernel: dict[str, Any] | None, wall: float,
          now: float, scripts: ConfigScripts | None, detail: bool) -> dict[str, Any]:
    state = "UP" if rs.alive else "DOWN"
    if not vs.quorum_up and vs.sorry is not None and vs.sorry.alive and rs.alive:
        state = "UP (sorry server serves)"
    spec, node, vs_node = rs.spec, rs.spec.node, vs.spec.node
    real = {
        "ip": spec.ip, "port": spec.port, "name": spec.name(vs.spec.protocol),
        "state": state, "alive": rs.alive, "in_kernel": spec.key in vs.table,
        "weight": spec.weight, "effective_weight": rs.effective_weight,
        "kernel_weight": vs.table.get(spec.key), "inhibit": rs.inhibit,
        "method": METHODS[spec.forwarding.method],
        "failed_checkers": rs.failed,
        "checkers": [_checker(c, spec, wall, now, scripts, detail) for c in rs.checkers],
        "not_run": list(spec.skipped),
        "kernel": kernel,
    }
    if not detail:
        return real
    real.update({
        # settings as keepalived's data dump shows them: the real server's own, else
        # the virtual server's (validate_check_config)
        "set": rs.set, "tunnel": _tunnel(spec.forwarding),
        "alpha": spec.alpha,
        "connect_timeout": float(_value(node, "connect_timeout")
                                 or _value(vs_node, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
        "delay_loop": float(_value(node, "delay_loop") or vs.spec.delay_loop),
        "retry": _first(_value(node, "retry"), _value(vs_node, "retry")),
        "delay_before_retry": _first(_value(node, "delay_before_retry"),
                                     _value(vs_node, "delay_before_retry")),
        "warmup": _first(_value(node, "warmup"), _value(vs_node, "warmup")),
        "lthreshold": spec.lthreshold, "uthreshold": spec.uthreshold,
        "notify_scripts": {keyword: _script(scripts, "real_server", spec.script_name, keyword)
                           for keyword in ("notify_up", "notify_down")},
        "virtualhost": spec.virtualhost, "snmp_name": _value(node, "snmp_name"),
        "smtp_alert": spec.smtp_alert,
        "reloaded": rs.reloaded,
        # keepalived's peffective_weight: 0 until a reload, then the effective weight the
        # reload found, which the engine does not keep (None: unknown)
        "previous_weight": None if rs.reloaded else 0,
        "track_files": [{"name": c.spec.file, "weight": c.spec.file_weight,
                         "reverse": c.spec.file_reverse}
                        for c in rs.checkers if c.spec.kind == "FILE_CHECK"],
    })
    return real


def _checker(c: E.Checker, rs: Any, wall: float, now: float,  # noqa: ANN401 - RealServerSpec
             scripts: ConfigScripts | None, detail: bool) -> dict[str, Any]:
    spec = c.spec
    out: dict[str, Any] = {
        "kind": spec.kind, "up": c.up, "has_run": c.has_run,
        "last_result": None if c.last_result is None else ("ok" if c.last_result else "failed"),
        "last_error": c.last_error or None,
        "last_time": None if c.last_time is None else wall + c.last_time,
        "next_run": None if c.next_run is None else wall + c.next_run,
        "running": c.running, "enabled": c.enabled, "retries": c.retry_it,
        "weight_added": c.cur_weight,
        "delay_loop": spec.delay_loop,
    }
    if not detail:
        return out
    out.update({
        # settings as keepalived's data dump shows them
        "line": spec.node.where.line if spec.node is not None and spec.node.where else None,
        "alpha": spec.alpha, "warmup": spec.warmup, "retry": spec.retry,
        "delay_before_retry": spec.delay_before_retry,
        "default_delay_before_retry": _default_delay_before_retry(spec),
        "log_all_failures": spec.log_all_failures,
    })
    if spec.kind in CONNECTING:
        o = spec.option
        out["connection"] = {"ip": str(o("connect_ip") or rs.ip),
                             "port": int(o("connect_port") or rs.port),
                             "bindto": o("bindto"), "bind_port": o("bind_port"),
                             "bind_if": o("bind_if"), "fwmark": o("fwmark"),
                             "timeout": spec.connect_timeout}
    if spec.kind in ("HTTP_GET", "SSL_GET"):
        urls = [UrlCheck.from_node(n) for n in spec.node.blocks("url")] \
            if spec.node is not None else []
        nodes = spec.node.blocks("url") if spec.node is not None else []
        out["http"] = {
            "protocol": str(spec.option("http_protocol") or "1.0"),
            "virtualhost": spec.option("virtualhost"),
            "enable_sni": bool(spec.option("enable_sni")),
            "fast_recovery": spec.fast_recovery,
            "urls": [{"path": u.path, "digest": u.digest,
                      "status_code": [list(r) for r in u.status_code],
                      "virtualhost": n.values.get("virtualhost"),
                      "regex": u.regex, "regex_no_match": u.regex_no_match,
                      "regex_options": list(u.regex_options),
                      "regex_min_offset": u.regex_min_offset,
                      "regex_max_offset": u.regex_max_offset}
                     for u, n in zip(urls, nodes, strict=True)],
            "failed_url": None if c.failed_url is None or c.failed_url >= len(urls)
            else urls[c.failed_url].path,
        }
    elif spec.kind == "MISC_CHECK":
        command = scripts.get("MISC_CHECK", f"{rs.script_name}/{spec.nth}", "misc_path") \
            if scripts is not None else None
        out["misc"] = {
            "command": None if command is None else list(command.argv),
            "uid": None if command is None else command.user.uid,
            "gid": None if command is None else command.user.gid,
            "timeout": int(spec.option("misc_timeout") or 0),
            "dynamic": spec.misc_dynamic,
            # keepalived keeps the epoch's start until a first run
            "last_ran": wall + c.last_ran if c.has_run or c.running else None,
            # the status whose weight is applied; None after a failure (we forget it)
            "last_status": c.last_exit,
        }
    elif spec.kind == "FILE_CHECK":
        out["file"] = {"name": spec.file, "value": c.file_value}
    return out


def _default_delay_before_retry(spec: CheckerSpec) -> float:
    """The checker kind's own delay_before_retry (check_*.c default_delay_before_retry)."""
    own = DEFAULT_DELAY_BEFORE_RETRY.get(spec.kind, 1.0)
    return spec.delay_loop if own is None else own


def _value(node: Node | None, name: str, default: Any = None) -> Any:  # noqa: ANN401
    """A keyword as set in the block itself (not its default), else ``default``."""
    if node is None:
        return default
    value = node.values.get(name)
    return default if value is None else value


def _first(*values: Any) -> Any:  # noqa: ANN401
    return next((v for v in values if v is not None), None)


def _vs_forwarding(node: Node | None) -> Forwarding:
    words = _value(node, "lvs_method")
    return Forwarding.from_words(tuple(words)) if words else Forwarding()


def _tunnel(forwarding: Forwarding) -> dict[str, Any] | None:
    if forwarding.method != "TUN":
        return None
    return {"type": forwarding.tun_type, "port": forwarding.tun_port,
            "csum": forwarding.tun_csum}


def _script(scripts: ConfigScripts | None, kind: str, name: str,
            keyword: str) -> dict[str, Any] | None:
    command = scripts.get(kind, name, keyword) if scripts is not None else None
    return None if command is None else _command(command)


def _command(command: ScriptCommand) -> dict[str, Any]:
    return {"argv": list(command.argv), "uid": command.user.uid, "gid": command.user.gid}


# -- what only the configuration has ---------------------------------------------------

def _config(root: Node, pool: E.Pool, scripts: ConfigScripts | None) -> dict[str, Any]:
    from ..core.global_dump import global_snapshot
    return {"global": global_snapshot(root), "notify_fifos": _fifos(root, scripts),
            "ssl": _ssl(root, pool), "track_files": _track_files(root, pool)}


def _fifos(root: Node, scripts: ConfigScripts | None) -> list[dict[str, Any]]:
    """The notify FIFOs of global_defs: name, the user it is made for (the words after
    its name, else the default script user), its script."""
    blocks = root.blocks("global_defs")
    glob = blocks[0] if blocks else None
    if glob is None:
        return []
    users = ScriptUsers(glob.get("script_user"), bool(glob.get("enable_script_security")))
    out = []
    for kind in ("", "vrrp_", "lvs_"):
        value = glob.values.get(f"{kind}notify_fifo")
        if not value:
            continue
        words = (value,) if isinstance(value, str) else tuple(value)
        try:
            user = users.resolve(words[1:3])
        except ScriptError:
            continue                # keepalived ignores the FIFO, and so do we
        script = _script(scripts, "global_defs", None,  # type: ignore[arg-type]
                         f"{kind}notify_fifo_script")
        out.append({"kind": kind, "name": str(words[0]), "uid": user.uid, "gid": user.gid,
                    "script": script})
    return out


def _ssl(root: Node, pool: E.Pool) -> dict[str, Any] | None:
    """The SSL block's files; an SSL_GET without one has keepalived make its own
    context ("autogen"); None: no SSL section."""
    block = root.values.get("SSL")
    if block is not None:
        # the password stays out of the snapshot (it goes over the control socket)
        return {"password_set": bool(block.values.get("password")),
                "ca": block.values.get("ca"), "certificate": block.values.get("certificate"),
                "key": block.values.get("key")}
    if any(c.spec.kind == "SSL_GET" for _, _, _, c in pool.checkers()):
        return {"autogen": True}
    return None


def _track_files(root: Node, pool: E.Pool) -> list[dict[str, Any]]:
    """The track_file blocks and the FILE_CHECKs on each (keepalived's "Tracking
    instances"), with the number the file holds when a FILE_CHECK reads it."""
    out = []
    for node in root.blocks("track_file"):
        name = str(node.head)
        weight, reverse = node.values.get("weight", (1, False))
        tracking = []
        value = None
        for _, vs, rs, c in pool.checkers():
            if c.spec.kind == "FILE_CHECK" and c.spec.file == name:
                tracking.append({"vs": vs.spec.name, "rs": rs.spec.name(vs.spec.protocol),
                                 "weight": c.spec.file_weight, "reverse": c.spec.file_reverse})
                value = c.file_value
        out.append({"name": name, "file": node.values.get("file"), "weight": int(weight),
                    "reverse": bool(reverse), "value": value, "tracking": tracking})
    return out
