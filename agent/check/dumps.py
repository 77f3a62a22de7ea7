"""The checker process's state files, written from its snapshot (``snapshot.py``).

- ``data_dump``: keepalived_check.data (SIGUSR1), in the layout of keepalived
  2.2.7's ``dump_data_check`` (check_data.c, check_api.c, the check_*.c dump
  functions, global_data.c): the global definitions, the SSL definitions, the
  LVS topology (a block per virtual server and per real server), the health
  checkers with their options and state, the checkers' track files.  Lines
  whose value the snapshot does not carry are left out, never made up; the
  sections that need the configuration itself (global definitions, SSL, track
  files) and the scripts' users need a snapshot taken with it.
- ``json_dump``: keepalived_check.json (keepalived-py's: keepalived 2.2.7 has no
  JSON dump of its checkers): the snapshot itself.

Both go under $TMPDIR (or /tmp); an agent known by a namespace or an instance
puts ``.NS_INSTANCE`` in the names, as the VRRP files do.

Where our lines differ from keepalived 2.2.7's for the same state, and why:
docs/lb-differences.md, ``check-data-dump``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.global_dump import english_time, global_lines, yes_no
from ..core.paths import AgentKey, dump_file

Snapshot = dict[str, Any]
METHOD_NAMES = {"Masq": "NAT", "Route": "DR", "Tunnel": "TUN"}
# IP_VS_VERSION_CODE of the kernel headers keepalived is built with: it has been 1.2.1
# since Linux 2.6.10, whatever the running kernel
LVS_VERSION = "1.2.1"
IPVS_WEIGHT_LIMIT = 2**31 - 1
STATUS_MIN, STATUS_MAX = 100, 599       # check_http.c HTTP_STATUS_CODE_MIN/MAX
CSUM = {"nocsum": ", no checksum", "csum": ", checksum", "remcsum": ", remote checksum"}
FIFO_TITLES = {"": "Global", "vrrp_": "VRRP", "lvs_": "LVS"}


def dump_path(kind: str, key: AgentKey = AgentKey(),  # noqa: B008
              environ: dict[str, str] | None = None) -> Path:
    return dump_file("keepalived_check", kind, key, environ)


def data_dump(snap: Snapshot) -> str:
    out: list[str] = []
    config = snap.get("config")
    if config is not None:
        out += global_lines(config["global"], parent=True,
                            fifos=_fifo_lines(config.get("notify_fifos", [])))
        out += _ssl_lines(config.get("ssl"))
    # a server a reload removed and ours drains is no longer in keepalived's
    # configuration: its data dump has no block for it
    servers = [{**vs, "real_servers": [rs for rs in vs.get("real_servers") or []
                                       if rs.get("state") != "DRAINING"]}
               for vs in snap.get("virtual_servers") or []]
    if servers:
        out.append("------< LVS Topology >------")
        out.append(f" System is compiled with LVS v{LVS_VERSION}")
        for vs in servers:
            out += _vs_lines(vs)
    queue = _checkers_queue(servers)
    if queue:
        out.append("------< Health checkers >------")
        for vs, rs, checker in queue:
            out += _checker_lines(vs, rs, checker)
    if config is not None and config.get("track_files"):
        out.append("------< Checker track files >------")
        for track in config["track_files"]:
            out += _track_file_lines(track)
    return "".join(f"{line}\n" for line in out)


# -- values as keepalived writes them ------------------------------------------------

def _flag(value: Any) -> str:
    return "ON" if value else "OFF"


def _seconds(value: float) -> str:
    """format_decimal(microseconds, 6): ``5.000000``."""
    us = round(value * 1_000_000)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _us(value: float) -> int:
    return round(value * 1_000_000)


def cmd_str(argv: Iterable[str]) -> str:
    """lib/notify.c cmd_str: each word in single quotes, but a first word that is a
    shell redirection (the ``</file`` form)."""
    words = []
    for i, word in enumerate(argv):
        words.append(word if i == 0 and word[:1] in ("<", ">") else f"'{word}'")
    return " ".join(words)


def _script_line(title: str, script: dict[str, Any] | None) -> list[str]:
    if not script:
        return []
    return [f"{title} = {cmd_str(script['argv'])}, uid:gid {script['uid']}:{script['gid']}"]


def _forwarding(prefix: str, method: str, tunnel: dict[str, Any] | None) -> str:
    """dump_forwarding_method: ``   {prefix}forwarding method = NAT``; a tunnel says
    its type (keepalived built with IPVS tunnel types and checksums)."""
    name = METHOD_NAMES.get(method, method)
    if name != "TUN" or tunnel is None:
        return f"   {prefix}forwarding method = {name}"
    kind = str(tunnel.get("type", "ipip")).lower()
    csum = CSUM.get(str(tunnel.get("csum", "nocsum")), ", unknown checksum type")
    if kind == "gue":
        # keepalived leaves the prefix out of this one line
        return f"   forwarding method = TUN, type = GUE, port = {tunnel.get('port', 0)}{csum}"
    if kind == "gre":
        return f"   {prefix}forwarding method = TUN, type = GRE{csum}"
    return f"   {prefix}forwarding method = TUN, type = IPIP"


# -- global definitions and SSL ------------------------------------------------------

def _fifo_lines(fifos: list[dict[str, Any]]) -> list[str]:
    out = []
    for fifo in fifos:
        title = FIFO_TITLES[fifo["kind"]]
        out.append(f" {title} notify fifo = {fifo['name']}, uid:gid {fifo['uid']}:{fifo['gid']}")
        out += _script_line(f" {title} notify fifo script", fifo.get("script"))
    return out


def _ssl_lines(ssl: dict[str, Any] | None) -> list[str]:
    if ssl is None:
        return []
    out = ["------< SSL definitions >------"]
    files = [("CA-file", ssl.get("ca")), ("Certificate file", ssl.get("certificate")),
             ("Key file", ssl.get("key"))]
    if not ssl.get("password_set") and not any(value for _, value in files):
        return [*out, " Using autogen SSL context"]
    # the password is not in the snapshot: its line is not written
    return out + [f" {title} : {value}" for title, value in files if value]


# -- LVS topology --------------------------------------------------------------------

def _vs_lines(vs: Snapshot) -> list[str]:
    out = [" ------< Virtual server >------"]
    if vs.get("fwmark"):
        out.append(f" VS FWMARK = {vs['fwmark']}")
    else:
        out.append(f" VS VIP = {vs.get('ip')}, VPORT = {vs.get('port')}")
    if vs.get("virtualhost"):
        out.append(f"   VirtualHost = {vs['virtualhost']}")
    if vs.get("snmp_name"):
        out.append(f"   SNMP name = '{vs['snmp_name']}'")
    if "af" in vs:
        out.append(f"   Address family = inet{'6' if vs['af'] == 10 else ''}")
    if "connect_timeout" in vs:
        out.append(f"   connection timeout = {_seconds(vs['connect_timeout'])}")
    if "delay_loop" in vs:
        out.append(f"   delay_loop = {_seconds(vs['delay_loop'])}")
    out.append(f"   lvs_sched = {vs.get('scheduler')}")
    flags = vs.get("flags")
    protocol = str(vs.get("protocol"))
    if flags is not None:
        out += _flag_lines(str(vs.get("scheduler")), flags, protocol)
    if vs.get("persistence_timeout"):
        out.append(f"   persistence timeout = {vs['persistence_timeout']}")
    if vs.get("persistence_granularity") is not None:
        out.append(f"   persistence granularity = {vs['persistence_granularity']}")
    out.append(f"   protocol = {protocol.upper() if protocol != 'none' else 'none'}")
    if "alpha" in vs:
        out += [f"   alpha is {_flag(vs['alpha'])}", f"   omega is {_flag(vs.get('omega'))}"]
        if vs.get("retry") is not None:
            out.append(f"   Retry count = {vs['retry']}")
        if vs.get("delay_before_retry") is not None:
            out.append(f"   Retry delay = {_seconds(vs['delay_before_retry'])}")
        if vs.get("warmup") is not None:
            out.append(f"   Warmup = {_seconds(vs['warmup'])}")
        out.append(f"   Inhibit on failure is {_flag(vs.get('inhibit'))}")
    out.append(f"   quorum = {vs.get('quorum')}, hysteresis = {vs.get('hysteresis')}")
    scripts = vs.get("quorum_scripts") or {}
    out += _script_line("   Quorum up notify script", scripts.get("quorum_up"))
    out += _script_line("   Quorum down notify script", scripts.get("quorum_down"))
    if vs.get("ha_suspend"):
        out.append("   Using HA suspend")
    if "smtp_alert" in vs:
        out.append(f"   Using smtp notification = {yes_no(vs['smtp_alert'])}")
    if "default_method" in vs:
        out.append(_forwarding("default ", vs["default_method"], vs.get("default_tunnel")))
    sorry = vs.get("sorry_server")
    if isinstance(sorry, dict):
        duplicate = "(duplicates rs) " if sorry.get("duplicates_rs") else ""
        out.append(f"   sorry server {duplicate}= [{sorry.get('ip')}]:{protocol}:"
                   f"{sorry.get('port')}")
        if "method" in sorry:
            out.append(_forwarding("  ", sorry["method"], sorry.get("tunnel")))
        out.append(f"     Inhibit on failure is {_flag(sorry.get('inhibit'))}")
    out.append(f"   alive = {int(bool(vs.get('programmed')))}")
    out.append(f"   quorum_state_up = {int(bool(vs.get('quorum_up')))}")
    if "reloaded" in vs:
        out.append(f"   reloaded = {int(bool(vs['reloaded']))}")
    for rs in vs.get("real_servers") or []:
        out += _rs_lines(rs)
    return out


def _flag_lines(scheduler: str, flags: list[str], protocol: str) -> list[str]:
    def abled(flag: str) -> str:
        return "enabled" if flag in flags else "disabled"
    out = [f"   Hashed = {abled('hashed')}"]
    if scheduler in ("sh", "mh"):
        out += [f"   {scheduler}-port = {abled(scheduler + '-port')}",
                f"   {scheduler}-fallback = {abled(scheduler + '-fallback')}"]
    else:
        out += [f"   flag-{n} = {abled(f'flag-{n}')}" for n in (1, 2, 3)]
    inactive = " (inactive due to not UDP)" if "ops" in flags and protocol != "udp" else ""
    out.append(f"   One packet scheduling = {abled('ops')}{inactive}")
    return out


def _real_weight(weight: int) -> int:
    return max(0, min(weight, IPVS_WEIGHT_LIMIT))


def _rs_lines(rs: Snapshot) -> list[str]:
    effective = rs.get("effective_weight", 0)
    out = ["   ------< Real server >------",
           # WEIGHT is what the effective weight gives IPVS, not the kernel's weight
           # (an inhibited server keeps its effective weight at weight 0 there)
           f"   RIP = {rs.get('ip')}, RPORT = {rs.get('port')}, WEIGHT = "
           f"{_real_weight(effective)} EFF WEIGHT = {effective}",
           _forwarding("", str(rs.get("method")), rs.get("tunnel"))]
    if "alpha" in rs:
        out += [
            f"   Alpha is {_flag(rs['alpha'])}",
            f"   connection timeout = {_seconds(rs['connect_timeout'])}",
            f"   connection limit range = {rs.get('lthreshold', 0)} -> "
            f"{rs.get('uthreshold', 0)}",
            f"   Delay loop = {_seconds(rs['delay_loop'])}",
        ]
        if rs.get("retry") is not None:
            out.append(f"   Retry count = {rs['retry']}")
        if rs.get("delay_before_retry") is not None:
            out.append(f"   Retry delay = {_seconds(rs['delay_before_retry'])}")
        if rs.get("warmup") is not None:
            out.append(f"   Warmup = {_seconds(rs['warmup'])}")
    if "inhibit" in rs:
        out.append(f"   Inhibit on failure is {_flag(rs['inhibit'])}")
    scripts = rs.get("notify_scripts") or {}
    out += _script_line("     RS up notify script", scripts.get("notify_up"))
    out += _script_line("     RS down notify script", scripts.get("notify_down"))
    if rs.get("virtualhost"):
        out.append(f"    VirtualHost = '{rs['virtualhost']}'")
    if rs.get("snmp_name"):
        out.append(f"   SNMP name = {rs['snmp_name']}")
    if "smtp_alert" in rs:
        out.append(f"   Using smtp notification = {yes_no(rs['smtp_alert'])}")
    if "weight" in rs:
        out.append(f"   initial weight = {rs['weight']}")
    out.append(f"   effective weight = {effective}")
    if rs.get("previous_weight") is not None:
        out.append(f"   previous effective_weight = {rs['previous_weight']}")
    out.append(f"   alive = {int(bool(rs.get('alive')))}")
    if "failed_checkers" in rs:
        out.append(f"   num failed checkers = {rs['failed_checkers']}")
    out.append(f"   RS set = {int(bool(rs.get('set', rs.get('in_kernel'))))}")
    if "reloaded" in rs:
        out.append(f"   reloaded = {int(bool(rs['reloaded']))}")
    if rs.get("track_files"):
        out.append("   Tracked Files")
        out += [f"     {t['name']}, weight {t['weight']}{' reverse' if t['reverse'] else ''}"
                for t in rs["track_files"]]
    return out


# -- health checkers -----------------------------------------------------------------

def _checkers_queue(servers: list[Snapshot]) -> list[tuple[Snapshot, Snapshot, Snapshot]]:
    """keepalived's checkers_queue: every checker in the order of the configuration,
    but the FILE_CHECKs after all the others (they join when their track files are
    set up, once the configuration is read)."""
    timed, files = [], []
    for vs in servers:
        for rs in vs.get("real_servers") or []:
            checkers = sorted(rs.get("checkers") or [], key=lambda c: c.get("line") or 0)
            for checker in checkers:
                (files if checker.get("kind") == "FILE_CHECK" else timed).append(
                    (vs, rs, checker))
    return timed + files


def _checker_lines(vs: Snapshot, rs: Snapshot, c: Snapshot) -> list[str]:
    kind = c.get("kind")
    out = [f" {vs.get('name')} -> {rs.get('name')}",
           f"   Enabled = {yes_no(c.get('enabled', True))}",
           f"   Up = {yes_no(c.get('up'))}",
           f"   Has run = {yes_no(c.get('has_run'))}",
           f"   Current weight = {c.get('weight_added', 0)}"]
    if "alpha" in c and kind != "FILE_CHECK":
        out += [f"   Alpha = {yes_no(c['alpha'])}",
                f"   Delay loop = {_us(c['delay_loop'])} us",
                f"   Warmup = {_us(c['warmup'])} us",
                f"   Retries = {c['retry']}"]
        if c["retry"]:
            out += [f"   Delay before retry = {_us(c['delay_before_retry'])} us",
                    f"   Retries iterations = {c.get('retries', 0)}"]
        out.append(f"   Default delay before retry = {_us(c['default_delay_before_retry'])} us")
    if "log_all_failures" in c:
        out.append(f"   Log all failures = {yes_no(c['log_all_failures'])}")
    connection = c.get("connection")
    if connection:
        out += ["   Connection", f"     Dest = [{connection['ip']}]:{connection['port']}"]
        if connection.get("bindto"):
            out.append(f"     Bind to = [{connection['bindto']}]:"
                       f"{connection.get('bind_port') or 0}")
        if connection.get("bind_if"):
            out.append(f"     Bind i/f = {connection['bind_if']}")
        if connection.get("fwmark"):
            out.append(f"     Mark = {connection['fwmark']}")
        out.append(f"     Timeout = {connection['timeout']:f}")
    if kind in ("HTTP_GET", "SSL_GET") and "http" in c:
        out += _http_lines(kind, c["http"])
    elif kind == "MISC_CHECK" and "misc" in c:
        out += _misc_lines(c["misc"])
    elif kind == "FILE_CHECK" and "file" in c:
        out += ["   Keepalive method = FILE_CHECK",
                f"     Tracked file = {c['file']['name']}",
                # the track file's reloaded flag is cleared once a reload has set the
                # files up: keepalived's dump never shows Yes
                "     Reloaded = No"]
    elif kind:
        out.append(f"   Keepalive method = {kind}")
    return out


def _http_lines(kind: str, http: Snapshot) -> list[str]:
    out = [f"   Keepalive method = {kind}, http protocol {str(http['protocol']).upper()}"]
    if http.get("virtualhost"):
        out.append(f"   Virtualhost = {http['virtualhost']}")
    out += [f"   Enable SNI {'' if http.get('enable_sni') else 'un'}set",
            f"   Fast recovery {'' if http.get('fast_recovery') else 'un'}set"]
    for url in http.get("urls") or []:
        out.append(f"   Checked url = {url['path']}")
        if url.get("digest"):
            out.append(f"     digest = {str(url['digest']).lower()}")
        out.append("     HTTP Status Code(s)")
        out += [f"       {r}" for r in _status_ranges(url.get("status_code") or [[200, 299]])]
        if url.get("virtualhost"):
            out.append(f"     Virtual host = {url['virtualhost']}")
        if url.get("regex"):
            out.append(f"     Regex = \"{url['regex']}\"")
            if url.get("regex_no_match"):
                out.append("     Regex no match")
            low, high = url.get("regex_min_offset") or 0, url.get("regex_max_offset")
            if high is not None:
                out.append(f"     Regex min offset = {low}, max_offset = {high}")
            elif low:
                out.append(f"     Regex min offset = {low}")
            options = "".join(f" {o}" for o in url.get("regex_options") or [])
            out.append(f"     Regex options:{options}")
    if http.get("failed_url"):
        out.append(f"   Failed URL = {http['failed_url']}")
    return out


def _status_ranges(ranges: Iterable[Iterable[int]]) -> list[str]:
    """The status codes as keepalived prints its bitmap: merged runs, in order."""
    codes = sorted({code for low, high in (tuple(r) for r in ranges)
                    for code in range(max(low, STATUS_MIN), min(high, STATUS_MAX) + 1)})
    out: list[str] = []
    start = previous = None
    for code in [*codes, None]:
        if code is not None and previous is not None and code == previous + 1:
            previous = code
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = code
    return out


def _misc_lines(misc: Snapshot) -> list[str]:
    out = ["   Keepalive method = MISC_CHECK"]
    if misc.get("command"):
        out.append(f"   script = {cmd_str(misc['command'])}")
    out += [f"   timeout = {misc.get('timeout', 0)}",
            f"   dynamic = {'YES' if misc.get('dynamic') else 'NO'}"]
    if misc.get("uid") is not None:
        out.append(f"   uid:gid = {misc['uid']}:{misc['gid']}")
    out.append(f"   Last ran = {_ctime_usec(misc.get('last_ran') or 0.0)}")
    if misc.get("last_status") is not None:
        out.append(f"   Last status = {misc['last_status']}")
    return out


def _ctime_usec(t: float) -> str:
    """check_misc.c: ``sec.usec (ctime.usec)``, ctime in local time, English names."""
    sec, usec, day, year = english_time(t)
    return f"{sec}.{usec:06d} ({day} {year}.{usec:06d})"


def _track_file_lines(track: Snapshot) -> list[str]:
    out = [f" Track file = {track['name']}", f"   File = {track.get('file')}"]
    if track.get("value") is not None:
        out.append(f"   Status = {track['value']}")
    out.append(f"   Weight = {track['weight']}{' reverse' if track.get('reverse') else ''}")
    if track.get("tracking"):
        out.append("   Tracking instances :")
        out += [f"     {t['vs']} -> {t['rs']}, weight {t['weight']}"
                f"{' reverse' if t.get('reverse') else ''}" for t in track["tracking"]]
    return out


def json_dump(snap: Snapshot) -> str:
    return json.dumps(snap, indent=1, sort_keys=True) + "\n"
