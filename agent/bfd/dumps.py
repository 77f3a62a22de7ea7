"""The BFD process's state files, written from its snapshot (``Runner.snapshot``).

- ``data_dump``: keepalived_bfd.data (SIGUSR1), in the layout of keepalived
  2.2.7's ``dump_bfd`` (bfd_data.c): a ``BFD Topology`` header and a block per
  instance, the configuration and then the state, in its words and units.
  Left out: what keepalived writes first (its global definitions, the parent
  dump has them), its internal pointers and file descriptors (``fd_in``,
  ``thread_out 0x...``) and its timer sands, which are times of its own
  scheduler's clock; the values that are ours to know are all there.
- ``json_dump``: keepalived_bfd.json.  keepalived 2.2.7 writes no JSON for
  BFD (only its VRRP process answers SIGJSON), so this is keepalived-py's own:
  the snapshot, as ``keepalived-py status --json`` shows it.

Both go under $TMPDIR (or /tmp); an agent known by a namespace or an instance
puts ``.NS_INSTANCE`` in the names, as the VRRP and checker files do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..core.paths import AgentKey, dump_file

Snapshot = dict[str, Any]

_DIAG_TEXT = {"none": "No Diagnostic",
              "control_detection_expired": "Control Detection Time Expired",
              "echo_failed": "Echo Function Failed",
              "neighbor_down": "Neighbor Signaled Session Down",
              "forwarding_reset": "Forwarding Plane Reset",
              "path_down": "Path Down",
              "concatenated_path_down": "Concatenated Path Down",
              "admin_down": "Administratively Down",
              "reverse_concatenated_path_down": "Reverse Concatenated Path Down"}


def dump_path(kind: str, key: AgentKey = AgentKey(),  # noqa: B008
              environ: dict[str, str] | None = None) -> Path:
    return dump_file("keepalived_bfd", kind, key, environ)


def _yes(value: Any) -> str:
    return "Yes" if value else "No"


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _diag(label: Any) -> str:
    return _DIAG_TEXT.get(str(label), "Unknown")


def _last_seen(when: Any) -> str:
    if not isinstance(when, int | float) or isinstance(when, bool):
        return "   last_seen = [never]"
    secs = int(when)
    usecs = int(round((when - secs) * 1e6)) % 1_000_000
    return f"   last seen = {secs}.{usecs:06d} ({time.ctime(secs)[:24]}.{usecs:06d})"


def _session_lines(s: Snapshot) -> list[str]:
    ipv4 = s.get("family") != "inet6"
    out = [f" BFD Instance = {s.get('name')}",
           f"   Neighbor IP = {s.get('neighbor')}"]
    if s.get("source"):
        out.append(f"   Source IP = {s.get('source')}")
    out += [f"   Required min RX interval = {s.get('min_rx_us')} us",
            f"   Desired min TX interval = {s.get('min_tx_us')} us",
            f"   Desired idle TX interval = {s.get('idle_tx_us')} us",
            f"   Detection multiplier = {s.get('multiplier')}",
            f"   {'TTL' if ipv4 else 'hoplimit'} = {s.get('ttl')}",
            f"   max_hops = {255 if s.get('max_hops') is None else s.get('max_hops')}",
            f"   passive = {_bool(s.get('passive'))}",
            f"   send event to VRRP process = {_yes(s.get('vrrp'))}",
            f"   send event to checker process = {_yes(s.get('checker'))}",
            f"   send error = {_bool(s.get('send_errors'))}",
            f"   local state = {s.get('state')}",
            f"   remote state = {s.get('remote_state')}",
            f"   local discriminator = 0x{int(s.get('local_discr') or 0):x}",
            f"   remote discriminator = 0x{int(s.get('remote_discr') or 0):x}",
            f"   local diag = {_diag(s.get('diag'))}",
            f"   remote diag = {_diag(s.get('remote_diag'))}",
            f"   remote min tx intv = {s.get('remote_min_tx_us')} us",
            f"   remote min rx intv = {s.get('remote_min_rx_us')} us",
            "   local demand = 0",
            f"   remote demand = {int(bool(s.get('remote_demand')))}",
            f"   remote detect multiplier = {s.get('remote_multiplier')}",
            f"   {'' if s.get('polling') else '!'}poll, !final",
            f"   local tx intv = {s.get('tx_interval_us')} us",
            f"   remote tx intv = {s.get('remote_tx_interval_us')} us",
            f"   local detection time = {s.get('detection_time_us')} us",
            f"   remote detection time = {s.get('remote_detection_time_us')} us",
            _last_seen(s.get("last_rx"))]
    return out


def data_dump(snap: Snapshot) -> str:
    out: list[str] = []
    sessions = [s for s in snap.get("sessions") or [] if isinstance(s, dict)]
    if sessions:
        out.append("------< BFD Topology >------")
        for session in sessions:
            out += _session_lines(session)
    return "".join(f"{line}\n" for line in out)


def json_dump(snap: Snapshot) -> str:
    return json.dumps(snap, indent=2, sort_keys=True) + "\n"
