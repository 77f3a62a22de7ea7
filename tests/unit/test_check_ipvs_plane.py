"""The checker's IPVS data plane (agent/check/ipvs_plane.py) on an in-memory table.

The kernel's side is the VM tier's (test_ipvs_vm.py, test_lb_vm.py); here the table is
a dictionary that answers as the kernel does, so that what the plane asks of it, and
in which order, can be seen.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time

from keepalived_py.check import engine as E
from keepalived_py.check.ipvs_plane import IpvsDataPlane
from keepalived_py.check.spec import build
from keepalived_py.config import load
from keepalived_py.ipvs.model import (
    DestKey,
    DestSpec,
    IpvsError,
    KernelDest,
    KernelService,
    ServiceKey,
    ServiceSpec,
)

CONFIG = """
virtual_server 198.18.1.10 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.18.2.11 8080 {
        weight 2
        TCP_CHECK {
        }
    }
}
virtual_server fwmark 5 {
    lb_algo wrr
    lb_kind DR
    real_server 198.18.2.12 80 {
        TCP_CHECK {
        }
    }
}
virtual_server 198.18.1.10 443 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.18.2.13 443 {
        TCP_CHECK {
        }
    }
}
"""


class MemoryTable:
    """Services and destinations in a dictionary, with keepalived's ipvs_talk answers
    (adding what exists, deleting what is gone: no error)."""

    def __init__(self) -> None:
        self.services: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, DestSpec]]] = {}
        self.calls: list[str] = []
        self.threads: set[int] = set()

    def dump(self) -> dict[ServiceKey, KernelService]:
        self.threads.add(threading.get_ident())
        self.calls.append("dump")
        return {key: KernelService(spec, {k: KernelDest(d) for k, d in dests.items()})
                for key, (spec, dests) in self.services.items()}

    def add_service(self, spec: ServiceSpec) -> None:
        self.calls.append(f"add {spec.key}")
        self.services.setdefault(spec.key, (spec, {}))

    def edit_service(self, spec: ServiceSpec) -> None:
        self.calls.append(f"edit {spec.key}")
        self.services[spec.key] = (spec, self.services[spec.key][1])

    def del_service(self, key: ServiceKey) -> None:
        self.calls.append(f"del {key}")
        self.services.pop(key, None)

    def add_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        self.calls.append(f"add {service} {dest.key}")
        self.services[service][1][dest.key] = dest

    def edit_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        self.calls.append(f"edit {service} {dest.key} weight {dest.weight}")
        self.services[service][1][dest.key] = dest

    def del_dest(self, service: ServiceKey, dest: DestKey) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append(f"del {service} {dest}")
        self.services[service][1].pop(dest, None)

    def flush(self) -> None:
        self.calls.append("flush")
        self.services.clear()

    def close(self) -> None:
        self.calls.append("close")


def plane_with(table: MemoryTable) -> IpvsDataPlane:
    plane = IpvsDataPlane()
    plane.table = table  # type: ignore[assignment]
    return plane


def wanted() -> E.Wanted:
    specs = build(load("t.conf", text=textwrap.dedent(CONFIG)).root).servers
    pool = E.Pool(specs)
    pool.start(0.0)
    return pool.wanted()


FOREIGN = ServiceKey.of("tcp", "198.18.1.99", 25)


def programmed_then_stopped(flush: str) -> MemoryTable:
    table = MemoryTable()
    table.add_service(ServiceSpec(FOREIGN))
    plane = plane_with(table)

    async def run() -> None:
        await plane.read([])
        await plane.apply(wanted())
        table.calls.clear()
        await plane.stop(wanted(), flush)
    asyncio.run(run())
    return table


def test_stop_deletes_our_services_in_a_stable_order_and_leaves_a_foreign_one() -> None:
    # ServiceKey has no order of its own: a plain sorted() of them raised TypeError,
    # and the services stayed in the kernel after the stop (seen in the VM)
    table = programmed_then_stopped("none")
    assert table.calls == ["del FWM 5", "del TCP 198.18.1.10:80", "del TCP 198.18.1.10:443",
                           "close"]
    assert list(table.services) == [FOREIGN]


def test_stop_with_lvs_flush_on_stop_flushes_everything() -> None:
    table = programmed_then_stopped("full")
    assert table.calls == ["flush", "close"]
    assert table.services == {}


class RefusingTable(MemoryTable):
    """Refuses the next ``refusals`` destination additions, as a kernel would refuse
    an IPv4 real server in a namespace without an IPv4 address."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def add_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        if self.refusals:
            self.refusals -= 1
            self.calls.append(f"refused {service} {dest.key}")
            raise IpvsError(f"add real server {dest.key} to {service}: Invalid argument")
        super().add_dest(service, dest)


def without(wanted_: E.Wanted, service_port: int, rs_ip: str) -> E.Wanted:
    out = {}
    for key, (vs, dests) in wanted_.items():
        if vs.port == service_port:
            dests = {k: v for k, v in dests.items() if k[0] != rs_ip}
        out[key] = (vs, dests)
    return out


def test_a_change_is_one_request_planned_against_the_table_as_we_left_it() -> None:
    # the VM showed a dump before each change costing 0.6 s from a check's verdict to
    # the kernel (keepalived: one request)
    table = MemoryTable()
    plane = plane_with(table)

    async def run() -> None:
        await plane.read([])
        await plane.apply(wanted())
        table.calls.clear()
        await plane.apply(without(wanted(), 80, "198.18.2.11"))
        assert table.calls == ["del TCP 198.18.1.10:80 198.18.2.11:8080"]
        table.calls.clear()
        await plane.apply(without(wanted(), 80, "198.18.2.11"))
        assert table.calls == []                # nothing to do: not even a dump
        await plane.stop(wanted(), "none")
    asyncio.run(run())


def test_the_periodic_reconcile_reads_the_kernel_and_repairs_drift() -> None:
    table = MemoryTable()
    plane = plane_with(table)

    async def run() -> None:
        await plane.read([])
        await plane.apply(wanted())
        # someone deletes a destination behind our back (ipvsadm -d)
        table.del_dest(ServiceKey.of("tcp", "198.18.1.10", 80), DestKey("198.18.2.11", 8080))
        table.calls.clear()
        await plane._reconcile(report=True)
        assert table.calls == ["dump", "add TCP 198.18.1.10:80 198.18.2.11:8080"]
        assert plane.repairs == 1
        await plane.stop(wanted(), "none")
    asyncio.run(run())


def test_after_a_refusal_the_next_change_reads_the_kernel_first() -> None:
    table = RefusingTable(refusals=1)
    plane = plane_with(table)

    async def run() -> None:
        await plane.read([])
        await plane.apply(wanted())
        assert any(call.startswith("refused") for call in table.calls)
        table.calls.clear()
        await plane.apply(wanted())
        # read afresh: the refused destination is missing and is added again
        assert table.calls[0] == "dump"
        assert [c for c in table.calls if c.startswith("add")] == ["add FWM 5 198.18.2.12:0"]
        table.calls.clear()
        await plane.apply(wanted())
        assert table.calls == []
        await plane.stop(wanted(), "none")
    asyncio.run(run())


def test_the_kernel_is_called_from_one_thread_of_its_own() -> None:
    # pyroute2 sets its socket up again on each new thread: 0.2 s and more in the VM,
    # seen as a failed server leaving the kernel 0.5 s after its verdict
    table = MemoryTable()
    plane = plane_with(table)

    async def busy_elsewhere() -> None:
        # the loop's default executor is busy with someone else's work meanwhile
        await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.05) for _ in range(4)))

    async def run() -> None:
        await plane.read([])
        await asyncio.gather(plane.apply(wanted()), busy_elsewhere())
        for _ in range(3):
            await asyncio.gather(plane.apply(without(wanted(), 80, "198.18.2.11")),
                                 busy_elsewhere())
            await asyncio.gather(plane._reconcile(report=True), busy_elsewhere())
        await plane.stop(wanted(), "none")
    asyncio.run(run())
    assert len(table.threads) == 1 and threading.get_ident() not in table.threads
