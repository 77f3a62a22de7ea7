"""The checker process as the parent knows it: its declaration (``core/children.py``)."""

from __future__ import annotations

from typing import Any

from ..config.model import Node
from ..core.children import ChildKind, build_refusals, lazy


def wanted(root: Node) -> bool:
    """keepalived starts its checker process for a configuration with a virtual server."""
    return bool(root.blocks("virtual_server"))


def extra_argv(settings: Any) -> list[str]:  # noqa: ANN401 - the parent's settings
    return [] if settings.release_ipvs else ["-I"]


CHECKER = ChildKind(
    name="checker", title="checker", ident="Keepalived_healthcheckers",
    module="keepalived_py.check.main", pid_option="checkers_pid", wanted=wanted,
    check=build_refusals(f"{__package__}.build"), dumps=frozenset({"data", "json"}),
    metrics=lazy(f"{__package__}.metrics", "metric_families"),
    status_lines=lazy(f"{__package__}.status", "status_lines"), extra_argv=extra_argv)
