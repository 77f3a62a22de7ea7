"""agent/ipvs/reconcile.py: the plan from wanted and read-back tables, its text, apply.

``KernelLike`` below is an in-memory table with the kernel's semantics as seen in the
VM (test_ipvs_vm.py): DR and TUN on the service's port, a duplicate add refused with
EEXIST, a missing service ESRCH, a missing real server ENOENT.
"""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keepalived_py.ipvs.model import (
    AF_INET6,
    DestKey,
    DestSpec,
    IpvsError,
    IpvsUnavailable,
    KernelDest,
    KernelService,
    ServiceFlag,
    ServiceKey,
    ServiceSpec,
)
from keepalived_py.ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Wanted,
    apply,
    plan,
)

WEB = ServiceKey.of("tcp", "198.18.1.10", 80)
DNS6 = ServiceKey.of("udp", "2001:db8:1::10", 53)
MARK = ServiceKey.of_fwmark(5)
FOREIGN = ServiceKey.of("tcp", "198.18.1.99", 25)


class KernelLike:
    """An IPVS table in memory, refusing what the kernel refuses."""

    def __init__(self, services: dict[ServiceKey, KernelService] | None = None) -> None:
        self.services = dict(services or {})
        self.calls: list[str] = []

    def _service(self, key: ServiceKey) -> KernelService:
        if key not in self.services:
            raise IpvsError(f"no service {key}", errno.ESRCH)
        return self.services[key]

    def add_service(self, spec: ServiceSpec) -> None:
        self.calls.append(f"add {spec.key}")
        if spec.key in self.services:
            raise IpvsError("exists", errno.EEXIST)
        self.services[spec.key] = KernelService(spec)

    def edit_service(self, spec: ServiceSpec) -> None:
        self.calls.append(f"edit {spec.key}")
        old = self._service(spec.key)
        self.services[spec.key] = KernelService(spec, old.dests)

    def del_service(self, key: ServiceKey) -> None:
        self.calls.append(f"del {key}")
        self._service(key)
        del self.services[key]

    def add_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        self.calls.append(f"add {dest.key}")
        dests = self._service(service).dests
        dest = dest.for_service(service)
        if dest.key in dests:
            raise IpvsError("exists", errno.EEXIST)
        dests[dest.key] = KernelDest(dest)

    def edit_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        self.calls.append(f"edit {dest.key}")
        dests = self._service(service).dests
        dest = dest.for_service(service)
        if dest.key not in dests:
            raise IpvsError("gone", errno.ENOENT)
        dests[dest.key] = KernelDest(dest)

    def del_dest(self, service: ServiceKey, dest: DestKey) -> None:
        self.calls.append(f"del {dest}")
        dests = self._service(service).dests
        if dest not in dests:
            raise IpvsError("gone", errno.ENOENT)
        del dests[dest]


def kernel(*services: tuple[ServiceSpec, list[DestSpec]]) -> dict[ServiceKey, KernelService]:
    return {spec.key: KernelService(spec, {d.key: KernelDest(d) for d in dests})
            for spec, dests in services}


def wanting(*services: tuple[ServiceSpec, list[DestSpec]]) -> Wanted:
    return {spec.key: (spec, {d.key: d for d in dests}) for spec, dests in services}


def nat(addr: str, port: int = 8080, weight: int = 1) -> DestSpec:
    return DestSpec(DestKey(addr, port), fwd="NAT", weight=weight)


def dr(addr: str, port: int = 80, weight: int = 1) -> DestSpec:
    return DestSpec(DestKey(addr, port), fwd="DR", weight=weight)


WEB_SPEC = ServiceSpec(WEB, scheduler="wrr")
WEB_DESTS = [nat("198.18.2.11", weight=2), nat("198.18.2.12"), dr("198.18.2.13", weight=0)]


def texts(ops: list[object]) -> list[str]:
    return [str(op) for op in ops]


def test_from_an_empty_table_everything_is_added_in_order() -> None:
    mark = ServiceSpec(MARK, scheduler="rr", timeout=100)
    ops = plan(wanting((WEB_SPEC, WEB_DESTS), (mark, [dr("198.18.2.31", 443)])), {}, set())
    assert texts(ops) == [
        "-A -f 5 -s rr -p 100",
        "-a -f 5 -r 198.18.2.31:0 -g -w 1",                  # DR on a fwmark: port 0
        "-A -t 198.18.1.10:80 -s wrr",
        "-a -t 198.18.1.10:80 -r 198.18.2.11:8080 -m -w 2",
        "-a -t 198.18.1.10:80 -r 198.18.2.12:8080 -m -w 1",
        "-a -t 198.18.1.10:80 -r 198.18.2.13:80 -g -w 0",
    ]
    assert ops.foreign == []


def test_a_table_that_matches_needs_nothing() -> None:
    # also with DR servers filed under another port than the service's
    wanted = wanting((WEB_SPEC, [*WEB_DESTS[:2], dr("198.18.2.13", 8080, weight=0)]))
    assert plan(wanted, kernel((WEB_SPEC, WEB_DESTS)), {WEB}) == []


def test_what_drifted_is_repaired() -> None:
    actual = kernel((ServiceSpec(WEB, scheduler="rr"), [
        nat("198.18.2.11", weight=9),                       # weight changed
        DestSpec(DestKey("198.18.2.13", 80), fwd="NAT", weight=0),     # method changed
        nat("198.18.2.77", 80),                             # a stranger
    ]))                                                     # .12 deleted
    ops = plan(wanting((WEB_SPEC, WEB_DESTS)), actual, {WEB})
    assert ops == [
        EditService(WEB_SPEC),
        DelDest(WEB, DestKey("198.18.2.77", 80)),
        EditDest(WEB, WEB_DESTS[0]),
        AddDest(WEB, WEB_DESTS[1]),
        EditDest(WEB, WEB_DESTS[2]),
    ]


@pytest.mark.parametrize("change", [
    {"scheduler": "sh"}, {"flags": ServiceFlag.SH_PORT}, {"timeout": 50},
    {"granularity": "255.255.255.0"}, {"timeout": 60, "pe_name": "sip"}])
def test_any_service_setting_is_an_edit(change: dict[str, object]) -> None:
    wanted_spec = replace(WEB_SPEC, **change)  # type: ignore[arg-type]
    ops = plan(wanting((wanted_spec, [])), kernel((WEB_SPEC, [])), set())
    assert ops == [EditService(wanted_spec)]


@pytest.mark.parametrize("change", [
    {"weight": 7}, {"u_threshold": 9}, {"l_threshold": 1}, {"fwd": "DR"},
    {"fwd": "TUN", "tun_type": "gue", "tun_port": 6080}])
def test_any_dest_setting_is_an_edit(change: dict[str, object]) -> None:
    dest = DestSpec(DestKey("198.18.2.11", 80))
    wanted_dest = replace(dest, **change)  # type: ignore[arg-type]
    ops = plan(wanting((WEB_SPEC, [wanted_dest])), kernel((WEB_SPEC, [dest])), set())
    assert ops == [EditDest(WEB, wanted_dest)]


def test_a_local_real_server_is_not_edited_forever() -> None:
    # the kernel makes a server with one of the director's addresses LOCAL
    local = DestSpec(DestKey("198.18.1.10", 80), fwd="LOCAL")
    assert plan(wanting((WEB_SPEC, [dr("198.18.1.10")])), kernel((WEB_SPEC, [local])), set()) \
        == []


def test_only_our_services_are_deleted_the_others_are_foreign() -> None:
    foreign = ServiceSpec(FOREIGN, scheduler="rr")
    actual = kernel((WEB_SPEC, WEB_DESTS), (ServiceSpec(MARK), []), (foreign, [nat("198.18.2.9")]))
    ops = plan(wanting((WEB_SPEC, WEB_DESTS)), actual, owned={WEB, MARK, DNS6})
    assert ops == [DelService(MARK)]         # DNS6 is ours but already gone
    assert ops.foreign == [FOREIGN]


def test_a_wanted_service_that_exists_is_taken_as_ours() -> None:
    actual = kernel((WEB_SPEC, [nat("198.18.2.50")]))
    ops = plan(wanting((WEB_SPEC, WEB_DESTS)), actual, owned=set())
    assert ops.foreign == []
    assert ops[0] == DelDest(WEB, DestKey("198.18.2.50", 8080))


def test_misfiled_or_colliding_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="filed under"):
        plan({WEB: (ServiceSpec(MARK), {})}, {}, set())
    with pytest.raises(ValueError, match="filed under"):
        plan({WEB: (WEB_SPEC, {DestKey("198.18.2.1", 1): nat("198.18.2.2")})}, {}, set())
    with pytest.raises(ValueError, match="are one in the kernel"):
        plan(wanting((WEB_SPEC, [dr("198.18.2.1", 80), dr("198.18.2.1", 8080)])), {}, set())


def test_operations_read_like_ipvsadm() -> None:
    tun = DestSpec(DestKey("198.18.2.14", 80), fwd="TUN", weight=0, u_threshold=100,
                   l_threshold=10, tun_type="gue", tun_port=6080, tun_flags="csum")
    six = ServiceSpec(DNS6, scheduler="sh", timeout=60, granularity=48,
                      flags=ServiceFlag.SH_FALLBACK | ServiceFlag.SH_PORT | ServiceFlag.ONEPACKET)
    cases = {
        AddService(six): "-A -u [2001:db8:1::10]:53 -s sh -p 60 -M 48 -o -b sh-fallback,sh-port",
        EditService(ServiceSpec(ServiceKey.of("sctp", "198.18.1.1", 9), scheduler="lc",
                                flags=ServiceFlag.SCHED1 | ServiceFlag.SCHED3)):
            "-E --sctp-service 198.18.1.1:9 -s lc -b flag-1,flag-3",
        AddService(ServiceSpec(ServiceKey.of_fwmark(9, AF_INET6), scheduler="mh",
                               flags=ServiceFlag.MH_PORT, timeout=30, pe_name="sip")):
            "-A -f 9 -6 -s mh -p 30 -b mh-port --pe sip",
        DelService(WEB): "-D -t 198.18.1.10:80",
        AddDest(WEB, tun):
            "-a -t 198.18.1.10:80 -r 198.18.2.14:80 -i -w 0 -x 100 -y 10 "
            "--tun-type gue --tun-port 6080 --tun-csum",
        EditDest(MARK, DestSpec(DestKey("2001:db8::11", 0), fwd="TUN")):
            "-e -f 5 -r [2001:db8::11]:0 -i -w 1 --tun-type ipip",
        DelDest(DNS6, DestKey("2001:db8::11", 53)):
            "-d -u [2001:db8:1::10]:53 -r [2001:db8::11]:53",
    }
    assert [str(op) for op in cases] == list(cases.values())


def test_apply_runs_every_operation_and_returns_the_failures() -> None:
    table = KernelLike(kernel((WEB_SPEC, [])))
    ops = [AddDest(MARK, nat("198.18.2.1")),               # no such service
           EditService(replace(WEB_SPEC, scheduler="rr")),
           DelService(FOREIGN)]                             # gone
    errors = apply(table, ops)
    assert [e.code for e in errors] == [errno.ESRCH, errno.ESRCH]
    assert table.services[WEB].spec.scheduler == "rr"


def test_apply_stops_when_ipvs_is_unavailable() -> None:
    class Gone(KernelLike):
        def add_service(self, spec: ServiceSpec) -> None:
            self.calls.append("add")
            raise IpvsUnavailable("the kernel has no IPVS")

    table = Gone()
    errors = apply(table, [AddService(WEB_SPEC), AddService(ServiceSpec(MARK))])
    assert [str(e) for e in errors] == ["the kernel has no IPVS"] and table.calls == ["add"]


# -- any state converges --------------------------------------------------------------

SERVICES = [WEB, DNS6, MARK, FOREIGN, ServiceKey.of_fwmark(6, AF_INET6)]
ADDRESSES = ["198.18.2.1", "198.18.2.2", "2001:db8:2::1"]


@st.composite
def dest_specs(draw: st.DrawFn) -> DestSpec:
    fwd = draw(st.sampled_from(["NAT", "DR", "TUN"]))
    tunnel = {}
    if fwd == "TUN" and draw(st.booleans()):
        tunnel = {"tun_type": "gue", "tun_port": draw(st.sampled_from([6080, 6081])),
                  "tun_flags": draw(st.sampled_from(["nocsum", "csum"]))}
    return DestSpec(DestKey(draw(st.sampled_from(ADDRESSES)), draw(st.sampled_from([0, 80, 8080]))),
                    fwd=fwd, weight=draw(st.integers(0, 3)),  # type: ignore[arg-type]
                    u_threshold=draw(st.sampled_from([0, 5])), **tunnel)  # type: ignore[arg-type]


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, tuple[ServiceSpec, list[DestSpec]]]:
    out = {}
    for key in draw(st.sets(st.sampled_from(SERVICES))):
        spec = ServiceSpec(key, scheduler=draw(st.sampled_from(["rr", "wlc"])),
                           timeout=draw(st.sampled_from([0, 60])))
        dests: dict[DestKey, DestSpec] = {}
        for dest in draw(st.lists(dest_specs(), max_size=4)):
            dest = dest.for_service(key)
            dests.setdefault(dest.key, dest)
        out[key] = (spec, list(dests.values()))
    return out


@settings(max_examples=200, deadline=None)
@given(wanted=tables(), actual=tables(), owned=st.sets(st.sampled_from(SERVICES)))
def test_any_table_converges_in_one_plan(wanted: dict, actual: dict, owned: set) -> None:
    wanted.pop(FOREIGN, None)
    owned.discard(FOREIGN)
    before = kernel(*actual.values())
    table = KernelLike({k: KernelService(s.spec, dict(s.dests)) for k, s in before.items()})
    ops = plan(wanting(*wanted.values()), before, owned)
    assert apply(table, ops) == []
    assert plan(wanting(*wanted.values()), table.services, owned) == []
    for key, (spec, dests) in wanted.items():
        assert table.services[key].spec == spec
        assert {d.spec for d in table.services[key].dests.values()} == \
            {d.for_service(key) for d in dests}
    for key in before:
        if key not in wanted and key not in owned:
            assert table.services[key] == before[key]      # foreign: untouched
            assert key in ops.foreign
        elif key not in wanted:
            assert key not in table.services
