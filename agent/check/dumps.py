"""The checker process's state files, written from its snapshot (``snapshot.py``).

- ``data_dump``: keepalived_check.data (SIGUSR1), in the layout of keepalived
  2.2.7's ``dump_check_data``: the LVS topology, a block per virtual server and
  per real server.  Lines whose value the snapshot does not carry are left
  out, never made up.
- ``json_dump``: keepalived_check.json (keepalived-py's: keepalived 2.2.7 has no
  JSON dump of its checkers): the snapshot itself.

Both go under $TMPDIR (or /tmp); an agent known by a namespace or an instance
puts ``.NS_INSTANCE`` in the names, as the VRRP files do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.paths import AgentKey

Snapshot = dict[str, Any]
METHOD_NAMES = {"Masq": "NAT", "Route": "DR", "Tunnel": "TUN"}


def dump_path(kind: str, key: AgentKey = AgentKey(),  # noqa: B008
              environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    tag = f".{key.tag}" if key.tag else ""
    return Path(env.get("TMPDIR") or "/tmp") / f"keepalived_check{tag}.{kind}"


def data_dump(snap: Snapshot) -> str:
    out = []
    servers = snap.get("virtual_servers") or []
    if servers:
        out.append("------< LVS Topology >------")
        for vs in servers:
            out += _vs_lines(vs)
    return "".join(f"{line}\n" for line in out)


def _flag(value: Any) -> str:
    return "ON" if value else "OFF"


def _vs_lines(vs: Snapshot) -> list[str]:
    out = [" ------< Virtual server >------"]
    if vs.get("fwmark"):
        out.append(f" VS FWMARK = {vs['fwmark']}")
    else:
        out.append(f" VS VIP = {vs.get('ip')}, VPORT = {vs.get('port')}")
    out.append(f"   lvs_sched = {vs.get('scheduler')}")
    if vs.get("persistence_timeout"):
        out.append(f"   persistence timeout = {vs['persistence_timeout']}")
    protocol = str(vs.get("protocol"))
    out.append(f"   protocol = {protocol.upper() if protocol != 'none' else 'none'}")
    out.append(f"   quorum = {vs.get('quorum')}, hysteresis = {vs.get('hysteresis')}")
    sorry = vs.get("sorry_server")
    if isinstance(sorry, dict):
        out.append(f"   sorry server = [{sorry.get('ip')}]:{protocol}:{sorry.get('port')}")
        out.append(f"     Inhibit on failure is {_flag(sorry.get('inhibit'))}")
    out.append(f"   alive = {int(bool(vs.get('programmed')))}")
    out.append(f"   quorum_state_up = {int(bool(vs.get('quorum_up')))}")
    for rs in vs.get("real_servers") or []:
        out += _rs_lines(rs)
    return out


def _rs_lines(rs: Snapshot) -> list[str]:
    weight = rs.get("kernel_weight")
    effective = rs.get("effective_weight", 0)
    out = ["   ------< Real server >------",
           f"   RIP = {rs.get('ip')}, RPORT = {rs.get('port')}, WEIGHT = "
           f"{max(0, effective) if weight is None else weight} EFF WEIGHT = {effective}",
           f"   forwarding method = {METHOD_NAMES.get(str(rs.get('method')), rs.get('method'))}"]
    if "inhibit" in rs:
        out.append(f"   Inhibit on failure is {_flag(rs['inhibit'])}")
    if "weight" in rs:
        out.append(f"   initial weight = {rs['weight']}")
    out.append(f"   effective weight = {effective}")
    out.append(f"   alive = {int(bool(rs.get('alive')))}")
    if "failed_checkers" in rs:
        out.append(f"   num failed checkers = {rs['failed_checkers']}")
    out.append(f"   RS set = {int(bool(rs.get('in_kernel')))}")
    return out


def json_dump(snap: Snapshot) -> str:
    return json.dumps(snap, indent=1, sort_keys=True) + "\n"
