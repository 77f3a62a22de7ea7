"""A configuration's load-balancing part, checked and resolved for the checker process."""

from __future__ import annotations

from ..config.model import Node
from ..host.scripts import ConfigScripts, config_scripts
from .spec import LvsConfig, build


class BuildError(Exception):
    """A configuration the checker process cannot run."""


def build_checked(root: Node) -> tuple[LvsConfig, ConfigScripts]:
    """The virtual servers to run and every script, security-checked (a refused
    script is left out, as keepalived leaves it out)."""
    scripts = config_scripts(root)
    lvs = build(root)
    for vs in lvs.servers:
        if vs.ip is not None and vs.ip.startswith("fe80") and "%" not in vs.ip:
            raise BuildError(f"virtual server {vs.name}: a link-local address needs an "
                             "interface")
    return lvs, scripts
