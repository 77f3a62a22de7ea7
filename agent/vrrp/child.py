"""The VRRP process as the parent knows it: its declaration (``core/children.py``)."""

from __future__ import annotations

from typing import Any

from ..config.model import Node
from ..core.children import ChildKind, Snapshot

# Blocks that give the VRRP process work (keepalived's have_vrrp_config).
VRRP_BLOCKS = ("vrrp_instance", "vrrp_sync_group", "vrrp_script", "track_file",
               "vrrp_track_file", "vrrp_track_process", "static_ipaddress", "static_routes",
               "static_rules", "garp_group", "track_group", "linkbeat_interfaces")
INSTANCE_TOPIC = "vrrp.instance"


def wanted(root: Node) -> bool:
    return any(root.blocks(block) for block in VRRP_BLOCKS)


def check(root: Node, path: str) -> list[str]:
    """What VRRP cannot run although the parser took it (an instance that cannot be
    built)."""
    from .build import BuildError, build_checked
    try:
        build_checked(root)
    except BuildError as err:
        return [str(err)]
    return []


def metrics(snapshot: Snapshot) -> list[Any]:
    from .metrics import metric_families
    return metric_families(snapshot)


def status_lines(snapshot: Snapshot, wide: bool, now: float) -> list[str]:
    from .status import status_lines as lines
    return lines(snapshot, wide, now)


def extra_argv(settings: Any) -> list[str]:
    return [] if settings.release_vips else ["-V"]


VRRP = ChildKind(
    name="vrrp", title="VRRP", ident="Keepalived_vrrp", module="keepalived_py.vrrp.main",
    pid_option="vrrp_pid", wanted=wanted, check=check,
    dumps=frozenset({"data", "stats", "stats_clear", "json"}),
    requests=frozenset({"set"}), publishes=frozenset({INSTANCE_TOPIC}),
    metrics=metrics, status_lines=status_lines, extra_argv=extra_argv)
