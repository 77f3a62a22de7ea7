"""keepalived.conf's ``bfd_instance`` blocks resolved to session specs, as keepalived 2.2.7 does.

The parser (``config/keywords_lvs.py`` BFD_INSTANCE) has checked each value
and reported what is malformed; what is left here is what keepalived's
``bfd_end_handler`` (bfd_parser.c) decides once a block is read, and the
defaults it fills in:

- a second instance of the same name is ignored ("already configured");
- an instance without a neighbour is disabled (the validator reports it);
- a source address of the other family disables the instance;
- a second instance to the same neighbour (and the same source, or either
  without one) is ignored;
- ``ttl`` / ``hoplimit`` defaults to 255, for IPv6 as well: keepalived 2.2.7's
  64 makes every RFC 5881 peer (BIRD, FRR, keepalived's own receive check with
  max_hops 0) drop our single-hop packets; ``max_hops`` above it is lowered to it;
- ``vrrp`` / ``checker`` name the processes that get the instance's events,
  both when neither is given.

``build`` returns the specs and keepalived's messages for what it dropped (the
process logs them at start, as keepalived runs without those instances);
``build_checked`` raises ``BuildError`` for them too, so that a reload is refused
rather than silently losing a session (``core.children.build_refusals``), and
always for what the parser took but this process cannot run.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Node
from .engine import SessionConfig
from .packet import TTL

__all__ = ["BfdConfig", "BuildError", "ProcessSettings", "SessionSpec", "build",
           "build_checked", "process_settings"]

DEFAULT_TTL = TTL           # both families (keepalived 2.2.7: 64 for IPv6, see above)
# microseconds of CPU without a blocking call before SIGKILL under bfd_rt_priority:
# keepalived's default is 10_000, too tight for CPython (realtime.py says why)
RLIMIT_RTTIME_DEFAULT = 100_000


class BuildError(Exception):
    """A configuration the BFD process cannot run (or, checked strictly, would run
    without some of its instances)."""


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """One ``bfd_instance``, resolved.  Times in microseconds, as the engine takes them."""

    name: str
    neighbor: str                   # canonical text (inet_ntop's), as recvmsg reports sources
    source: str | None = None
    family: int = socket.AF_INET
    min_rx_us: int = 10_000
    min_tx_us: int = 10_000
    idle_tx_us: int = 1_000_000
    multiplier: int = 5
    passive: bool = False
    ttl: int = DEFAULT_TTL
    max_hops: int | None = 0        # None: the engine's default (multihop: no TTL rule)
    multihop: bool = False
    # Not used by the BFD process: kept for its consumers, as keepalived keeps them
    # (VRRP's track_bfd takes the weight as its default; events go only to the
    # processes named).
    weight: int = 0
    reverse: bool = False
    to_vrrp: bool = True
    to_checker: bool = True

    @property
    def path(self) -> tuple[int, str, str | None, bool]:
        """What identifies the session on the wire: a reload that changes it makes a
        new session (new sockets, a new discriminator); anything else is a change of
        the running one."""
        return (self.family, self.neighbor, self.source, self.multihop)

    @property
    def port(self) -> int:
        return self.engine_config().port

    def engine_config(self) -> SessionConfig:
        return SessionConfig(min_tx_us=self.min_tx_us, min_rx_us=self.min_rx_us,
                             idle_tx_us=self.idle_tx_us, multiplier=self.multiplier,
                             passive=self.passive, multihop=self.multihop, ttl=self.ttl,
                             max_hops=self.max_hops)

    def describe(self) -> dict[str, Any]:
        """The spec as JSON, for the snapshot and the dumps."""
        return {"name": self.name, "neighbor": self.neighbor, "source": self.source,
                "family": "inet6" if self.family == socket.AF_INET6 else "inet",
                "min_rx_us": self.min_rx_us, "min_tx_us": self.min_tx_us,
                "idle_tx_us": self.idle_tx_us, "multiplier": self.multiplier,
                "passive": self.passive, "ttl": self.ttl, "max_hops": self.max_hops,
                "multihop": self.multihop, "weight": self.weight, "reverse": self.reverse,
                "vrrp": self.to_vrrp, "checker": self.to_checker}


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """global_defs' scheduling keywords for the BFD process (keepalived's bfd_*)."""

    priority: int = 0                       # bfd_priority: nice, -20..19
    rt_priority: int | None = None          # bfd_rt_priority 1..99
    rlimit_rttime_us: int = RLIMIT_RTTIME_DEFAULT
    no_swap: bool = False                   # bfd_no_swap
    cpu_affinity: tuple[int, ...] = ()      # bfd_cpu_affinity


@dataclass(frozen=True)
class BfdConfig:
    sessions: tuple[SessionSpec, ...] = ()
    settings: ProcessSettings = field(default_factory=ProcessSettings)
    errors: tuple[str, ...] = ()
    """keepalived's messages for the instances it would drop or correct."""

    def by_name(self) -> dict[str, SessionSpec]:
        return {s.name: s for s in self.sessions}

    def to_json(self) -> dict[str, Any]:
        """As plain JSON: the BFD process reads its configuration in a child process
        at a reload and hands it over this way (runner.py says why)."""
        return {"sessions": [{f: getattr(s, f) for f in SessionSpec.__slots__}
                             for s in self.sessions],
                "settings": {f: getattr(self.settings, f)
                             for f in ProcessSettings.__slots__},
                "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BfdConfig:
        sessions = tuple(SessionSpec(**{**s, "family": socket.AddressFamily(s["family"])})
                         for s in data["sessions"])
        settings = dict(data["settings"])
        settings["cpu_affinity"] = tuple(settings["cpu_affinity"])
        return cls(sessions, ProcessSettings(**settings), tuple(data["errors"]))


def _us(milliseconds: float) -> int:
    """keepalived reads BFD intervals as milliseconds with three decimals."""
    return round(milliseconds * 1000)


def _address(text: str) -> tuple[int, str]:
    """The family and canonical text of an address as keepalived's inet_stosockaddr
    reads it: a ``/mask`` or ``-range`` tail is ignored."""
    for cut in ("-", "/"):
        text = text.split(cut, 1)[0]
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return family, socket.inet_ntop(family, socket.inet_pton(family, text))


def _where(node: Node) -> str:
    return f"{node.where}: " if node.where is not None else ""


def build(root: Node) -> BfdConfig:
    """The sessions keepalived 2.2.7 would run, and its messages about the others."""
    sessions: list[SessionSpec] = []
    errors: list[str] = []
    names: set[str] = set()
    for node in root.blocks("bfd_instance"):
        name = str(node.head)
        prefix = f"{_where(node)}Configuration error: BFD instance {name}"
        if name in names:
            errors.append(f"{prefix} already configured - ignoring")
            continue
        names.add(name)
        if "neighbor_ip" not in node.values:
            continue                # the validator has said so ("no neighbor address set")
        family, neighbor = _address(node.values["neighbor_ip"])
        source = None
        if "source_ip" in node.values:
            src_family, source = _address(node.values["source_ip"])
            if src_family != family:
                errors.append(f"{prefix} source address {source} and neighbor address "
                              f"{neighbor} are not of the same family, disabling instance")
                continue
        if any(s.neighbor == neighbor and (s.source is None or source is None
                                           or s.source == source) for s in sessions):
            if source is not None:
                errors.append(f"{prefix} has duplicate source/neighbor address "
                              f"{source}/{neighbor}, ignoring instance")
            else:
                errors.append(f"{prefix} has duplicate neighbor address {neighbor}, "
                              "ignoring instance")
            continue
        ttl = node.values.get("ttl", DEFAULT_TTL)
        multihop = bool(node.get("multihop"))
        max_hops: int | None = node.values.get("max_hops")
        if max_hops is None:
            # single hop: keepalived's default 0 (exactly ttl, RFC 5881's GTSM);
            # multihop: the engine's default, no TTL rule (RFC 5883 has none)
            max_hops = None if multihop else 0
        elif max_hops > ttl:
            errors.append(f"{_where(node)}BFD instance {name}: max_hops exceeds ttl/hoplimit "
                          "- setting to ttl/hoplimit")
            max_hops = ttl
        weight, reverse = node.get("weight")
        named = [p for p in ("vrrp", "checker") if node.values.get(p)]
        sessions.append(SessionSpec(
            name=name, neighbor=neighbor, source=source, family=family,
            min_rx_us=_us(node.get("min_rx")), min_tx_us=_us(node.get("min_tx")),
            idle_tx_us=_us(node.get("idle_tx")), multiplier=int(node.get("multiplier")),
            passive=bool(node.values.get("passive")), ttl=ttl, max_hops=max_hops,
            multihop=multihop, weight=weight, reverse=reverse,
            to_vrrp=not named or "vrrp" in named, to_checker=not named or "checker" in named))
    return BfdConfig(tuple(sessions), process_settings(root), tuple(errors))


def process_settings(root: Node) -> ProcessSettings:
    glob = root.blocks("global_defs")
    if not glob:
        return ProcessSettings()
    g = glob[0]
    return ProcessSettings(
        priority=int(g.get("bfd_priority") or 0),
        rt_priority=g.values.get("bfd_rt_priority"),
        rlimit_rttime_us=int(g.values.get("bfd_rlimit_rttime") or RLIMIT_RTTIME_DEFAULT),
        no_swap=bool(g.values.get("bfd_no_swap")),
        cpu_affinity=tuple(g.values.get("bfd_cpu_affinity") or ()))


def _cannot_run(sessions: Iterable[SessionSpec], root: Node) -> list[str]:
    where = {str(n.head): n for n in root.blocks("bfd_instance")}
    out = []
    for spec in sessions:
        node = where.get(spec.name)
        prefix = f"{_where(node) if node is not None else ''}BFD instance {spec.name}"
        for what, address in (("neighbor", spec.neighbor), ("source", spec.source)):
            # keepalived's address syntax has no %interface, and a link-local
            # address means nothing without one: sendto() would fail for ever
            if address is not None and spec.family == socket.AF_INET6 \
                    and address.lower().startswith("fe80"):
                out.append(f"{prefix}: a link-local {what} address ({address}) needs an "
                           "interface, which bfd_instance cannot name")
        if spec.max_hops is not None and spec.max_hops < 0:
            # keepalived takes -1 and then drops every packet whose TTL is not above
            # ttl: with ttl 255, all of them.  Refused rather than run dead.
            out.append(f"{prefix}: max_hops {spec.max_hops} would drop every packet "
                       "(use 0..255; 255 turns the TTL check off)")
    return out


def build_checked(root: Node, strict: bool = True) -> BfdConfig:
    """``build``, raising ``BuildError`` for what cannot run and, when ``strict``
    (a reload, the parent's check), for keepalived's errors about dropped instances."""
    config = build(root)
    errors = _cannot_run(config.sessions, root)
    if strict:
        errors = [*config.errors, *errors]
    if errors:
        raise BuildError("; ".join(errors))
    return config
