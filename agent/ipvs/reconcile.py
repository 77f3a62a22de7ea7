"""From what we want and what the kernel holds, the operations that repair the difference.

keepalived never reads the table back: a real server deleted behind its back, or a
service left over by a crash, stays wrong until a restart. Here the caller dumps
the table (``IpvsTable.dump``), ``plan`` compares it with what it wants, and
``apply`` carries the plan out. Sans-I/O but for ``apply``.

Only the services we own are touched: those we want, and those we made before
(``owned``: a service no longer wanted is deleted only if it is ours). The others,
made by someone else (``ipvsadm``, another agent), are left alone and reported in
``Plan.foreign``. A wanted service that exists already is taken as ours and
repaired, as keepalived's add of an existing service succeeds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from .model import (
    AF_INET6,
    DestKey,
    DestSpec,
    IpvsError,
    IpvsUnavailable,
    KernelService,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
)

Wanted = Mapping[ServiceKey, tuple[ServiceSpec, Mapping[DestKey, DestSpec]]]


class Table(Protocol):
    """What ``apply`` needs of an ``IpvsTable``."""

    def add_service(self, spec: ServiceSpec) -> None: ...
    def edit_service(self, spec: ServiceSpec) -> None: ...
    def del_service(self, key: ServiceKey) -> None: ...
    def add_dest(self, service: ServiceKey, dest: DestSpec) -> None: ...
    def edit_dest(self, service: ServiceKey, dest: DestSpec) -> None: ...
    def del_dest(self, service: ServiceKey, dest: DestKey) -> None: ...


# -- ipvsadm's words, for the operations' text ------------------------------------------

_PROTOCOL_OPTIONS = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}
_FORWARDING_OPTIONS = {"NAT": "-m", "DR": "-g", "TUN": "-i", "LOCAL": "-g"}
_HOST_GRANULARITY = ("255.255.255.255", 128)


def _service_words(key: ServiceKey) -> list[str]:
    if key.fwmark:
        return ["-f", str(key.fwmark)] + (["-6"] if key.af == AF_INET6 else [])
    assert key.protocol is not None and key.addr is not None
    address = f"[{key.addr}]" if key.af == AF_INET6 else key.addr
    return [_PROTOCOL_OPTIONS[key.protocol], f"{address}:{key.port}"]


def _scheduler_flag_names(spec: ServiceSpec) -> list[str]:
    """``-b``'s words: ipvsadm names the scheduler flags after sh and mh."""
    prefix = spec.scheduler if spec.scheduler in ("sh", "mh") else None
    names = []
    for flag, own, generic in ((ServiceFlag.SCHED1, "fallback", "flag-1"),
                               (ServiceFlag.SCHED2, "port", "flag-2"),
                               (ServiceFlag.SCHED3, None, "flag-3")):
        if spec.flags & flag:
            names.append(f"{prefix}-{own}" if prefix and own else generic)
    return names


def _spec_words(spec: ServiceSpec) -> list[str]:
    words = ["-s", spec.scheduler]
    if spec.flags & ServiceFlag.PERSISTENT:
        words += ["-p", str(spec.persistence)]
        if spec.granularity not in _HOST_GRANULARITY:
            words += ["-M", str(spec.granularity)]
    if spec.flags & ServiceFlag.ONEPACKET:
        words.append("-o")
    if flags := _scheduler_flag_names(spec):
        words += ["-b", ",".join(flags)]
    if spec.pe_name:
        words += ["--pe", spec.pe_name]
    return words


def _dest_key_words(dest: DestKey) -> list[str]:
    return ["-r", str(dest)]


def _dest_words(dest: DestSpec) -> list[str]:
    words = [*_dest_key_words(dest.key), _FORWARDING_OPTIONS[dest.fwd], "-w", str(dest.weight)]
    if dest.u_threshold:
        words += ["-x", str(dest.u_threshold)]
    if dest.l_threshold:
        words += ["-y", str(dest.l_threshold)]
    if dest.fwd == "TUN":
        words += ["--tun-type", dest.tun_type]
        if dest.tun_port:
            words += ["--tun-port", str(dest.tun_port)]
        if dest.tun_flags != "nocsum":
            words.append(f"--tun-{dest.tun_flags}")
    return words


# -- the operations ----------------------------------------------------------------

@dataclass(frozen=True)
class AddService:
    spec: ServiceSpec

    def run(self, table: Table) -> None:
        table.add_service(self.spec)

    def __str__(self) -> str:
        return " ".join(["-A", *_service_words(self.spec.key), *_spec_words(self.spec)])


@dataclass(frozen=True)
class EditService:
    spec: ServiceSpec

    def run(self, table: Table) -> None:
        table.edit_service(self.spec)

    def __str__(self) -> str:
        return " ".join(["-E", *_service_words(self.spec.key), *_spec_words(self.spec)])


@dataclass(frozen=True)
class DelService:
    key: ServiceKey

    def run(self, table: Table) -> None:
        table.del_service(self.key)

    def __str__(self) -> str:
        return " ".join(["-D", *_service_words(self.key)])


@dataclass(frozen=True)
class AddDest:
    service: ServiceKey
    dest: DestSpec

    def run(self, table: Table) -> None:
        table.add_dest(self.service, self.dest)

    def __str__(self) -> str:
        return " ".join(["-a", *_service_words(self.service), *_dest_words(self.dest)])


@dataclass(frozen=True)
class EditDest:
    service: ServiceKey
    dest: DestSpec

    def run(self, table: Table) -> None:
        table.edit_dest(self.service, self.dest)

    def __str__(self) -> str:
        return " ".join(["-e", *_service_words(self.service), *_dest_words(self.dest)])


@dataclass(frozen=True)
class DelDest:
    service: ServiceKey
    dest: DestKey

    def run(self, table: Table) -> None:
        table.del_dest(self.service, self.dest)

    def __str__(self) -> str:
        return " ".join(["-d", *_service_words(self.service), *_dest_key_words(self.dest)])


Op = AddService | EditService | DelService | AddDest | EditDest | DelDest


class Plan(list[Op]):
    """The operations, in the order to run them, and the services left alone."""

    def __init__(self, ops: Iterable[Op] = (), foreign: Iterable[ServiceKey] = ()) -> None:
        super().__init__(ops)
        self.foreign: list[ServiceKey] = list(foreign)


# -- planning ----------------------------------------------------------------------

def _as_programmed(service: ServiceKey, dests: Mapping[DestKey, DestSpec]
                   ) -> dict[DestKey, DestSpec]:
    """The real servers as the kernel will hold them (DR and TUN on the service's port)."""
    programmed: dict[DestKey, DestSpec] = {}
    for key, dest in dests.items():
        if dest.key != key:
            raise ValueError(f"real server {dest.key} of {service} is filed under {key}")
        dest = dest.for_service(service)
        if dest.key in programmed:
            raise ValueError(f"real servers {key} and {programmed[dest.key].key} of {service} "
                             f"are one in the kernel ({dest.key})")
        programmed[dest.key] = dest
    return programmed


def _same_dest(wanted: DestSpec, actual: DestSpec) -> bool:
    # the kernel makes a real server with one of the director's own addresses LOCAL,
    # whatever method it was given: asking again would not change it
    if actual.fwd == "LOCAL":
        wanted = replace(wanted, fwd="LOCAL")
    return wanted == actual


def plan(wanted: Wanted, actual: Mapping[ServiceKey, KernelService],
         owned: Collection[ServiceKey]) -> Plan:
    """The operations that make the kernel hold the ``wanted`` services (each with its
    spec and real servers), and no other service of ours. Additions and changes come
    first, deletions of services last."""
    ops: list[Op] = []
    for key in sorted(wanted, key=ServiceKey.sort_key):
        spec, dests = wanted[key]
        if spec.key != key:
            raise ValueError(f"virtual service {spec.key} is filed under {key}")
        programmed = _as_programmed(key, dests)
        current = actual.get(key)
        if current is None:
            ops.append(AddService(spec))
            ops += [AddDest(key, programmed[d]) for d in sorted(programmed, key=DestKey.sort_key)]
            continue
        if spec != current.spec:
            ops.append(EditService(spec))
        for dest_key in sorted(current.dests.keys() - programmed.keys(), key=DestKey.sort_key):
            ops.append(DelDest(key, dest_key))
        for dest_key in sorted(programmed, key=DestKey.sort_key):
            have = current.dests.get(dest_key)
            if have is None:
                ops.append(AddDest(key, programmed[dest_key]))
            elif not _same_dest(programmed[dest_key], have.spec):
                ops.append(EditDest(key, programmed[dest_key]))
    ours = set(owned) | set(wanted)
    for key in sorted(set(owned) - set(wanted), key=ServiceKey.sort_key):
        if key in actual:
            ops.append(DelService(key))
    foreign = sorted((key for key in actual if key not in ours), key=ServiceKey.sort_key)
    return Plan(ops, foreign)


def apply(table: Table, ops: Iterable[Op]) -> list[IpvsError]:
    """Run ``ops`` in order; return the errors, one per failed operation. Never raises
    for a failed operation; stops at the first ``IpvsUnavailable`` (all would fail)."""
    errors: list[IpvsError] = []
    for op in ops:
        try:
            op.run(table)
        except IpvsUnavailable as e:
            errors.append(e)
            break
        except IpvsError as e:
            errors.append(e)
    return errors
