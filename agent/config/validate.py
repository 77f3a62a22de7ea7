"""Checks made once the whole file is read, as keepalived 2.2.7 makes them
after parsing (interfaces that must exist, scripts and their security...)."""

from __future__ import annotations

import socket

from .diag import Level
from .parser import ParseResult


def local_interfaces() -> set[str]:
    """The links of the network namespace this process runs in."""
    return {name for _index, name in socket.if_nameindex()}


def validate(result: ParseResult, interfaces: set[str] | None = None) -> None:
    links = local_interfaces() if interfaces is None else interfaces
    root = result.root
    for inst in root.blocks("vrrp_instance"):
        ifname = inst.values.get("interface")
        if ifname is not None and ifname not in links:
            result.diags.add(
                Level.GENERAL_ERROR,
                f"WARNING - interface {ifname} for vrrp_instance {inst.head} doesn't exist",
                inst.value_where.get("interface", inst.where))
