"""The VRRP process as the parent knows it: its declaration (``core/children.py``)."""

from __future__ import annotations

from typing import Any

from ..config.model import Node
from ..core.children import ChildKind, build_refusals, lazy

# Blocks that give the VRRP process work (keepalived's have_vrrp_config).
VRRP_BLOCKS = ("vrrp_instance", "vrrp_sync_group", "vrrp_script", "track_file",
               "vrrp_track_file", "vrrp_track_process", "static_ipaddress", "static_routes",
               "static_rules", "garp_group", "track_group", "linkbeat_interfaces")
INSTANCE_TOPIC = "vrrp.instance"


def wanted(root: Node) -> bool:
    return any(root.blocks(block) for block in VRRP_BLOCKS)


def extra_argv(settings: Any) -> list[str]:
    return [] if settings.release_vips else ["-V"]


VRRP = ChildKind(
    name="vrrp", title="VRRP", ident="Keepalived_vrrp", module="keepalived_py.vrrp.main",
    pid_option="vrrp_pid", wanted=wanted, check=build_refusals(f"{__package__}.build"),
    dumps=frozenset({"data", "stats", "stats_clear", "json"}),
    requests=frozenset({"set"}), publishes=frozenset({INSTANCE_TOPIC}),
    metrics=lazy(f"{__package__}.metrics", "metric_families"),
    status_lines=lazy(f"{__package__}.status", "status_lines"), extra_argv=extra_argv)
