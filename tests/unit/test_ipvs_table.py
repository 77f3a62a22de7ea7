"""agent/ipvs/netlink.py without a kernel: keepalived's ipvs_talk semantics and the
one-line errors, on a table whose requests are answered here.

The same behaviours against the real kernel: test_ipvs_vm.py.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest
from keepalived_py.ipvs import messages as m
from keepalived_py.ipvs.model import (
    DestKey,
    DestSpec,
    IpvsError,
    IpvsUnavailable,
    ServiceKey,
    ServiceSpec,
)
from keepalived_py.ipvs.netlink import IpvsTable, errno_text

WEB = ServiceKey.of("tcp", "198.18.1.10", 80)
SERVER = DestSpec(DestKey("198.18.2.11", 8080), fwd="DR")


class Answered(IpvsTable):
    """A table whose requests get the errno given for their command (0: done)."""

    def __init__(self, **answers: int) -> None:
        super().__init__()
        self.answers = {getattr(m, name): code for name, code in answers.items()}
        self.sent: list[tuple[int, dict[str, Any]]] = []

    def _talk(self, what: str, command: int, *, dump: bool = False,
              **attrs: Any) -> list[m.IpvsMessage]:
        self.sent.append((command, attrs))
        code = self.answers.get(command, 0)
        if code:
            raise IpvsError(f"{what}: {errno_text(code)}", code)
        return []


def test_adding_what_exists_and_deleting_what_is_gone_succeed() -> None:
    Answered(NEW_SERVICE=errno.EEXIST).add_service(ServiceSpec(WEB))
    Answered(NEW_DEST=errno.EEXIST).add_dest(WEB, SERVER)
    Answered(DEL_SERVICE=errno.ESRCH).del_service(WEB)
    Answered(DEL_DEST=errno.ENOENT).del_dest(WEB, SERVER.key)
    Answered(DEL_DEST=errno.ESRCH).del_dest(WEB, SERVER.key)     # the service is gone too
    Answered(DEL_DAEMON=errno.ESRCH).stop_sync_daemon("master")


@pytest.mark.parametrize("call", [
    lambda t: t.add_service(ServiceSpec(WEB)), lambda t: t.edit_service(ServiceSpec(WEB)),
    lambda t: t.add_dest(WEB, SERVER), lambda t: t.del_dest(WEB, SERVER.key),
    lambda t: t.del_service(WEB), lambda t: t.flush()])
def test_other_refusals_are_errors(call: Any) -> None:
    everything_refused = {name: errno.EPERM for name in
                          ("NEW_SERVICE", "SET_SERVICE", "DEL_SERVICE", "NEW_DEST", "DEL_DEST",
                           "FLUSH")}
    with pytest.raises(IpvsError) as refused:
        call(Answered(**everything_refused))
    assert refused.value.code == errno.EPERM
    assert str(refused.value).endswith(": Operation not permitted (EPERM)")


def test_an_edit_of_a_real_server_that_is_gone_adds_it() -> None:
    table = Answered(SET_DEST=errno.ENOENT)
    table.edit_dest(WEB, SERVER)
    assert [command for command, _ in table.sent] == [m.SET_DEST, m.NEW_DEST]
    # both on the service's port, as keepalived programs a DR server
    for _, attrs in table.sent:
        assert ("IPVS_DEST_ATTR_PORT", 80) in attrs["dest"]["attrs"]


def test_an_edit_of_a_service_that_is_gone_is_an_error() -> None:
    with pytest.raises(IpvsError, match=r"^edit virtual service TCP 198\.18\.1\.10:80: "
                                        r"no such virtual service \(ESRCH\)$"):
        Answered(SET_SERVICE=errno.ESRCH).edit_service(ServiceSpec(WEB))


def test_errno_text_names_the_errno_and_what_it_means_here() -> None:
    assert errno_text(errno.EEXIST) == "File exists (EEXIST)"
    assert errno_text(errno.ESRCH) == "no such virtual service (ESRCH)"
    assert errno_text(errno.EINVAL, "why") == "Invalid argument (EINVAL: why)"


def test_a_reply_the_model_cannot_hold_is_an_error_of_the_dump() -> None:
    class Odd(Answered):
        def _talk(self, what: str, command: int, *, dump: bool = False,
                  **attrs: Any) -> list[m.IpvsMessage]:
            msg = m.request(m.GET_SERVICE, service={"attrs": [
                ("IPVS_SVC_ATTR_AF", 2), ("IPVS_SVC_ATTR_PROTOCOL", 47),
                ("IPVS_SVC_ATTR_ADDR", bytes(16)), ("IPVS_SVC_ATTR_PORT", 1)]})
            msg.encode()
            return [m.decode(msg.data)]

    with pytest.raises(IpvsError, match="^list virtual services: cannot read the kernel's "
                                        "answer: the kernel holds a service of protocol 47$"):
        Odd().dump()


def test_a_namespace_that_does_not_exist_is_unavailable() -> None:
    table = IpvsTable("kpy-unit-no-such-namespace")
    assert table.available() is False
    with pytest.raises(IpvsUnavailable, match="^cannot open netlink in network namespace "
                                              "kpy-unit-no-such-namespace: "):
        table.dump()


def test_a_running_event_loop_is_told_to_use_a_thread() -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="asyncio.to_thread"):
            IpvsTable().dump()
    asyncio.run(inside())


def test_no_ipvs_family_tries_modprobe_once_then_says_why(monkeypatch: Any) -> None:
    import keepalived_py.ipvs.netlink as netlink
    from pyroute2.netlink.exceptions import NetlinkError

    class NoFamily:
        def __init__(self, **_: Any) -> None:
            pass

        def bind(self, *_: Any) -> None:
            raise NetlinkError(errno.ENOENT)

        def close(self) -> None:
            pass

    class Done:
        returncode = 1
        stderr = "modprobe: FATAL: Module ip_vs not found in directory /lib/modules/x\n"

    runs: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> Done:
        runs.append(argv)
        return Done()

    monkeypatch.setattr(netlink, "_IpvsSocket", NoFamily)
    monkeypatch.setattr(netlink, "_modprobe_result", None)
    monkeypatch.setattr(netlink.subprocess, "run", fake_run)
    for _ in range(2):
        with pytest.raises(IpvsUnavailable) as missing:
            IpvsTable().dump()
        assert str(missing.value) == (
            "the kernel has no IPVS (no generic netlink family IPVS; modprobe ip_vs: "
            "modprobe: FATAL: Module ip_vs not found in directory /lib/modules/x)")
    assert runs == [["modprobe", "ip_vs"]]


def test_timeouts_left_at_zero_stay_and_nothing_is_sent_for_none() -> None:
    table = Answered()
    table.set_timeouts(udp=77)
    table.set_timeouts()
    assert table.sent == [(m.SET_CONFIG, {"timeout_udp": 77})]
    with pytest.raises(ValueError, match="tcp timeout"):
        table.set_timeouts(tcp=-5)
