"""The checker process as the parent knows it: its declaration (``core/children.py``)."""

from __future__ import annotations

from typing import Any

from ..config.model import Node
from ..core.children import ChildKind, Snapshot


def wanted(root: Node) -> bool:
    """keepalived starts its checker process for a configuration with a virtual server."""
    return bool(root.blocks("virtual_server"))


def check(root: Node, path: str) -> list[str]:
    """What the checker cannot run although the parser took it."""
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


def extra_argv(settings: Any) -> list[str]:  # noqa: ANN401 - the parent's settings
    return [] if settings.release_ipvs else ["-I"]


CHECKER = ChildKind(
    name="checker", title="checker", ident="Keepalived_healthcheckers",
    module="keepalived_py.check.main", pid_option="checkers_pid", wanted=wanted, check=check,
    dumps=frozenset({"data", "json"}), metrics=metrics, status_lines=status_lines,
    extra_argv=extra_argv)
