"""The BFD process as the parent knows it: its declaration (``core/children.py``)."""

from __future__ import annotations

from ..config.model import Node
from ..core.children import ChildKind, build_refusals, lazy


def wanted(root: Node) -> bool:
    """keepalived starts its BFD process for a configuration with a bfd_instance."""
    return bool(root.blocks("bfd_instance"))


BFD = ChildKind(
    name="bfd", title="BFD", ident="Keepalived_bfd", module="keepalived_py.bfd.main",
    pid_option="bfd_pid", wanted=wanted, check=build_refusals(f"{__package__}.spec"),
    dumps=frozenset({"data", "json"}), publishes=frozenset({"bfd.session"}),
    metrics=lazy(f"{__package__}.metrics", "metric_families"),
    status_lines=lazy(f"{__package__}.status", "status_lines"))
