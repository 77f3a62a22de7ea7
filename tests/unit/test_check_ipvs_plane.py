"""The checker's IPVS data plane (agent/check/ipvs_plane.py) on an in-memory table.

The kernel's side is the VM tier's (test_ipvs_vm.py, test_lb_vm.py); here the table is
a dictionary that answers as the kernel does, so that what the plane asks of it, and
in which order, can be seen.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import threading
import time
from dataclasses import replace

import pytest
from keepalived_py.check import engine as E
from keepalived_py.check import runtime
from keepalived_py.check.build import build_checked
from keepalived_py.check.dataplane import NoDataPlane
from keepalived_py.check.ipvs_plane import IpvsDataPlane, stray_spec
from keepalived_py.check.probe import ProbeResult
from keepalived_py.check.spec import Forwarding, build
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
    sorry_server 198.18.2.20 8080
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
        self.conns: dict[DestKey, int] = {}     # the kernel's active connections

    def dump(self) -> dict[ServiceKey, KernelService]:
        self.threads.add(threading.get_ident())
        self.calls.append("dump")
        return {key: KernelService(spec, {k: KernelDest(d, active_conns=self.conns.get(k, 0))
                                          for k, d in dests.items()})
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


# -- a restart: what the kernel holds is adopted or drained --------------------------------

WEB = ServiceKey.of("tcp", "198.18.1.10", 80)
MARK = ServiceKey.of_fwmark(5)


def kernel_left_by_a_previous_process() -> MemoryTable:
    """Our services as a checker process left them, with servers its configuration had
    then and the one read now has not; a foreign service besides."""
    table = MemoryTable()
    table.services[WEB] = (ServiceSpec(WEB, scheduler="rr"), {d.key: d for d in (
        DestSpec(DestKey("198.18.2.11", 8080), fwd="NAT", weight=2),
        DestSpec(DestKey("198.18.2.20", 8080), fwd="NAT", weight=1),    # the sorry server
        # gone from the configuration: NAT with thresholds, TUN over gue, a local one
        DestSpec(DestKey("198.18.2.21", 8080), fwd="NAT", weight=3, u_threshold=100,
                 l_threshold=10),
        DestSpec(DestKey("198.18.2.22", 80), fwd="TUN", weight=1, tun_type="gue",
                 tun_port=6080, tun_flags="csum"),
        DestSpec(DestKey("198.18.1.1", 8080), fwd="LOCAL", weight=0))})
    table.services[MARK] = (ServiceSpec(MARK, scheduler="wrr"), {d.key: d for d in (
        DestSpec(DestKey("198.18.2.12", 0), fwd="DR", weight=1),
        DestSpec(DestKey("198.18.2.23", 0), fwd="DR", weight=1))})
    table.services[FOREIGN] = (ServiceSpec(FOREIGN), {d.key: d for d in (
        DestSpec(DestKey("198.18.2.99", 25), weight=9),)})
    return table


def servers() -> list:
    return build(load("t.conf", text=textwrap.dedent(CONFIG)).root).servers


def test_read_adopts_the_configured_servers_and_returns_the_others_as_the_kernel_has_them(
        ) -> None:
    table = kernel_left_by_a_previous_process()
    plane = plane_with(table)

    async def run() -> E.InKernel:
        found = await plane.read(servers())
        await plane.stop({}, "none")
        return found
    found = asyncio.run(run())
    web, mark, _ = (vs.key for vs in servers())
    # the configured ones serving: adopted; the 443 service is not in the kernel
    assert set(found) == {(web, ("198.18.2.11", 8080)), (mark, ("198.18.2.12", 0))}
    strays = {key: (spec.forwarding, spec.weight, spec.uthreshold, spec.lthreshold)
              for key, spec in found.strays.items()}
    assert strays == {
        (web, ("198.18.2.21", 8080)): (Forwarding("NAT"), 3, 100, 10),
        (web, ("198.18.2.22", 80)): (Forwarding("TUN", "gue", 6080, "csum"), 1, 0, 0),
        # the kernel's LOCAL (an address of the director's): asked as NAT, it stays LOCAL
        (web, ("198.18.1.1", 8080)): (Forwarding("NAT"), 0, 0, 0),
        (mark, ("198.18.2.23", 0)): (Forwarding("DR"), 1, 0, 0),
    }
    # the foreign service's server is nobody's business here
    assert not any(spec.ip == "198.18.2.99" for spec in found.strays.values())


def test_after_a_restart_a_stray_is_set_to_weight_0_as_it_is_then_deleted_when_drained(
        ) -> None:
    table = kernel_left_by_a_previous_process()
    table.conns[DestKey("198.18.2.21", 8080)] = 2
    plane = plane_with(table)
    before = {k: d for k, d in table.services[WEB][1].items()}

    async def run() -> None:
        found = await plane.read(servers())
        pool = E.Pool(servers(), drain_time=60.0)
        pool.start(0.0, adopt=found)
        table.calls.clear()
        await plane.apply(pool.wanted())
        # weight 0, nothing else changed (a NAT server stays NAT, its thresholds and
        # tunnel stay); the configured ones untouched; nothing deleted but what was
        # never ours to drain
        assert table.calls == [
            "dump", "edit FWM 5 198.18.2.23:0 weight 0",
            # the sorry server is configured: out at once while the pool serves
            "del TCP 198.18.1.10:80 198.18.2.20:8080",
            "edit TCP 198.18.1.10:80 198.18.2.21:8080 weight 0",
            "edit TCP 198.18.1.10:80 198.18.2.22:80 weight 0",
            "add TCP 198.18.1.10:443", "add TCP 198.18.1.10:443 198.18.2.13:443"]
        for key in (DestKey("198.18.2.21", 8080), DestKey("198.18.2.22", 80)):
            assert table.services[WEB][1][key] == replace(before[key], weight=0)
        assert table.services[WEB][1][DestKey("198.18.1.1", 8080)].fwd == "LOCAL"
        assert list(table.services[FOREIGN][1]) == [DestKey("198.18.2.99", 25)]
        # the connections, as the engine names the servers: the ones with none go
        connections = await plane.connections()
        web = servers()[0].key
        assert connections[(web, ("198.18.2.21", 8080))] == 2
        pool.drained(2.0, connections)
        table.calls.clear()
        await plane.apply(pool.wanted())
        assert table.calls == ["del FWM 5 198.18.2.23:0",
                               "del TCP 198.18.1.10:80 198.18.1.1:8080",
                               "del TCP 198.18.1.10:80 198.18.2.22:80"]
        # the one with connections stays at weight 0 until they are gone
        assert table.services[WEB][1][DestKey("198.18.2.21", 8080)].weight == 0
        table.conns.clear()
        pool.drained(4.0, await plane.connections())
        table.calls.clear()
        await plane.apply(pool.wanted())
        assert table.calls == ["del TCP 198.18.1.10:80 198.18.2.21:8080"]
        assert set(table.services[WEB][1]) == {DestKey("198.18.2.11", 8080)}
        await plane.stop(pool.wanted(), "none")
    asyncio.run(run())


def test_a_destination_no_spec_can_program_back_as_it_is_is_not_drained() -> None:
    # a DR server with a port under a firewall-mark service (we program port 0 there,
    # as keepalived does; another tool may not): programmed from a spec it would be on
    # port 0, another destination; it is left to the reconcile, which deletes it at once
    odd = KernelDest(DestSpec(DestKey("198.18.2.30", 80), fwd="DR", weight=1))
    assert stray_spec(MARK, odd) is None
    table = kernel_left_by_a_previous_process()
    table.services[MARK][1][odd.key] = odd.spec
    plane = plane_with(table)

    async def run() -> None:
        found = await plane.read(servers())
        assert not any(spec.ip == "198.18.2.30" for spec in found.strays.values())
        pool = E.Pool(servers())
        pool.start(0.0, adopt=found)
        await plane.apply(pool.wanted())
        assert odd.key not in table.services[MARK][1]
        await plane.stop(pool.wanted(), "none")
    asyncio.run(run())


def test_lvs_flush_at_start_leaves_nothing_to_adopt_or_drain() -> None:
    table = kernel_left_by_a_previous_process()
    plane = plane_with(table)
    plane.flush_at_start = True

    async def run() -> E.InKernel:
        found = await plane.read(servers())
        await plane.stop({}, "none")
        return found
    found = asyncio.run(run())
    assert (set(found), found.strays) == (set(), {})


def test_without_a_data_plane_nothing_is_adopted_or_drained() -> None:
    found = asyncio.run(NoDataPlane("no IPVS here").read(servers()))
    assert isinstance(found, E.InKernel) and (set(found), found.strays) == (set(), {})


class Healthy:
    """Every check passes, known without connecting anywhere (TCP_CHECK's endpoint is
    its result)."""

    def known_endpoint(self, _spec: object) -> ProbeResult:
        return ProbeResult(True)

    def endpoint(self, *_: object) -> ProbeResult:
        return ProbeResult(True)

    async def __call__(self, *_: object) -> ProbeResult:
        return ProbeResult(True)


def test_a_restarted_checker_process_drains_a_stray_through_its_runtime(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # the whole path a restart takes: read, the pool's start, the first table, then the
    # runtime's poll of the connections deleting the stray once it has none
    monkeypatch.setattr(runtime, "DRAIN_POLL", 0.05)
    table = kernel_left_by_a_previous_process()
    table.conns[DestKey("198.18.2.21", 8080)] = 1
    root = load("t.conf", text=textwrap.dedent(CONFIG)).root
    lvs, scripts = build_checked(root)

    async def run() -> None:
        checker = runtime.CheckerRuntime(lvs, root, scripts, prober=Healthy(),
                                         dataplane=plane_with(table))
        await checker.start()
        assert table.services[WEB][1][DestKey("198.18.2.21", 8080)].weight == 0
        await asyncio.sleep(0.3)            # several polls: it still has its connection
        assert DestKey("198.18.2.21", 8080) in table.services[WEB][1]
        table.conns.clear()
        for _ in range(100):
            if DestKey("198.18.2.21", 8080) not in table.services[WEB][1]:
                break
            await asyncio.sleep(0.05)
        assert set(table.services[WEB][1]) == {DestKey("198.18.2.11", 8080)}
        await checker.stop()

    with caplog.at_level(logging.INFO, logger="keepalived_py.check"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records]
    assert "IPVS: 4 real servers in the kernel are no longer in the configuration: " \
        "draining them" in said
    assert "Draining service [198.18.2.21]:tcp:8080 from VS [198.18.1.10]:tcp:80" in said
    assert "Removing service [198.18.2.21]:tcp:8080 from VS [198.18.1.10]:tcp:80 " \
        "(drained)" in said
