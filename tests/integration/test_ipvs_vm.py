"""agent/ipvs against a real kernel's IPVS, in a throw-away VM (tests/vm/).

One boot for the whole module: the session fixture runs ipvs_vm_batch.py inside the
VM, every case in a network namespace (an IPVS table) of its own, and each test
here asserts on what its case saw: what ``ipvsadm`` printed, what ``IpvsTable.dump``
read back, the errors. The reference reader is ipvsadm 1.31, the judge Debian's
kernel. One case runs our checker process itself, over a table a previous one left
(``restart_drain``).
"""

from __future__ import annotations

import json
import py_compile
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, tier_missing
from tests.integration import ipvs_vm_batch
from tests.integration.conftest import report
from tests.vm import runner

pytestmark = [pytest.mark.root, pytest.mark.vm]

BOOT_TIMEOUT = 420.0        # seconds; one boot and the batch take about 120
VIP = "198.18.1.10"
Seen = dict[str, Any]


@pytest.fixture(scope="session")
def vm_cases(request: pytest.FixtureRequest, root_only: None) -> dict[str, dict[str, Any]]:
    try:
        runner.check_tools()
        runner.find_kernel()
    except runner.VmUnavailable as e:
        tier_missing(f"vm tier: {e}")
    # the guest would compile it on every boot, slowly, into its RAM overlay
    py_compile.compile(ipvs_vm_batch.__file__)
    python = REPO / ".venv" / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="kpy-ipvs-vm-") as share:
        script = (f"cd {REPO} && exec {python} -m tests.integration.ipvs_vm_batch "
                  f"\"$KPY_VM_SHARE/results\"\n")
        result = runner.boot(script, timeout=BOOT_TIMEOUT, share=Path(share))
        report(request.config, f"one boot, {len(ipvs_vm_batch.CASES)} IPVS cases: "
                               f"{result.seconds:.1f} s", tier="vm tier")
        if result.status != 0:
            pytest.fail(f"the IPVS batch failed in the VM (exit {result.status}):\n"
                        f"{result.output}")
        return {path.stem: json.loads(path.read_text())
                for path in (Path(share) / "results").glob("*.json")}


def seen(vm_cases: dict[str, dict[str, Any]], name: str) -> Seen:
    result = vm_cases.get(name)
    assert result is not None, f"case {name} did not run"
    assert result["error"] is None, f"case {name} failed in the VM:\n{result['error']}"
    return result["seen"]


def dests(dump: dict[str, Any], service: str) -> dict[str, tuple[Any, ...]]:
    """A service's real servers as read back: (fwd, weight, u, l, tun type/port/flags)."""
    out = {}
    for name, dest in dump[service]["dests"].items():
        spec = dest["spec"]
        out[name] = (spec["fwd"], spec["weight"], spec["u_threshold"], spec["l_threshold"],
                     spec["tun_type"], spec["tun_port"], spec["tun_flags"])
    return out


def service_settings(dump: dict[str, Any], service: str) -> tuple[Any, ...]:
    spec = dump[service]["spec"]
    return (spec["scheduler"], spec["flags"], spec["timeout"], spec["granularity"],
            spec["pe_name"])


NAT, DR, TUN = "NAT", "DR", "TUN"
PLAIN = ("ipip", 0, "nocsum")


def test_a_kernel_without_ip_vs_loaded_gets_it_loaded(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "modprobe")
    assert (case["loaded_before"], case["available"], case["loaded_after"]) == \
        (False, True, True)
    assert case["dump"] == {}


def test_nat_dr_tun_dests_added_edited_deleted(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "dests")
    # DR and TUN servers given port 8080 are programmed on the service's port
    assert case["added"] == [
        f"-A -t {VIP}:80 -s wrr",
        f"-a -t {VIP}:80 -r 198.18.2.11:8080 -m -w 3",
        f"-a -t {VIP}:80 -r 198.18.2.12:80 -g -w 0",
        f"-a -t {VIP}:80 -r 198.18.2.13:80 -i -w 1 --tun-type ipip",
        f"-a -t {VIP}:80 -r 198.18.2.14:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum",
        f"-a -t {VIP}:80 -r [2001:db8:2::15]:80 -i -w 2 --tun-type ipip",
    ]
    assert any("198.18.2.14:80" in line and "gue:6080:+c" in line
               for line in case["added_tun_info"])
    assert dests(case["added_dump"], f"TCP {VIP}:80") == {
        "198.18.2.11:8080": (NAT, 3, 0, 0, *PLAIN),
        "198.18.2.12:80": (DR, 0, 100, 10, *PLAIN),
        "198.18.2.13:80": (TUN, 1, 0, 0, *PLAIN),
        "198.18.2.14:80": (TUN, 1, 0, 0, "gue", 6080, "csum"),
        "[2001:db8:2::15]:80": (TUN, 2, 0, 0, *PLAIN),
    }
    # keepalived's ipvs_talk: adding what exists and deleting what is gone succeed
    assert case["idempotent_errors"] == [None] * 5
    assert case["edited"] == [
        f"-A -t {VIP}:80 -s wrr",
        f"-a -t {VIP}:80 -r 198.18.2.11:8080 -m -w 5",
        f"-a -t {VIP}:80 -r 198.18.2.12:80 -m -w 4",
        f"-a -t {VIP}:80 -r 198.18.2.14:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum",
        f"-a -t {VIP}:80 -r 198.18.2.16:8080 -m -w 7",
        f"-a -t {VIP}:80 -r [2001:db8:2::15]:80 -i -w 2 --tun-type ipip",
    ]
    # a NAT server edited stays NAT when read back (pyroute2 would say DR); an edit of
    # a server that was not there added it
    assert dests(case["edited_dump"], f"TCP {VIP}:80") == {
        "198.18.2.11:8080": (NAT, 5, 0, 0, *PLAIN),
        "198.18.2.12:80": (NAT, 4, 50, 5, *PLAIN),
        "198.18.2.14:80": (TUN, 1, 0, 0, "gue", 6081, "remcsum"),
        "198.18.2.16:8080": (NAT, 7, 0, 0, *PLAIN),
        "[2001:db8:2::15]:80": (TUN, 2, 0, 0, *PLAIN),
    }
    assert case["deleted"] == [] and case["deleted_dump"] == {}


def test_ipv6_service_with_prefix_persistence(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "ipv6")
    service = "TCP [2001:db8:1::10]:443"
    assert case["saved"] == [
        "-A -t [2001:db8:1::10]:443 -s lc -p 600 -M 64",
        "-a -t [2001:db8:1::10]:443 -r [2001:db8:2::11]:8443 -m -w 2",
        "-a -t [2001:db8:1::10]:443 -r [2001:db8:2::12]:443 -g -w 1",
    ]
    assert service_settings(case["dump"], service) == ("lc", 1, 600, 64, None)
    assert dests(case["dump"], service) == {"[2001:db8:2::11]:8443": (NAT, 2, 0, 0, *PLAIN),
                                            "[2001:db8:2::12]:443": (DR, 1, 0, 0, *PLAIN)}
    assert case["edited"][0] == "-A -t [2001:db8:1::10]:443 -s rr"
    assert service_settings(case["edited_dump"], service) == ("rr", 0, 0, 128, None)


def test_fwmark_services_inet_and_inet6(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "fwmark")
    assert case["saved"] == [
        "-A -f 7 -s wlc",
        "-a -f 7 -r 198.18.2.11:0 -g -w 1",
        "-a -f 7 -r 198.18.2.12:8080 -m -w 1",
        "-A -f 8 -6 -s rr -p 30",
        "-a -f 8 -6 -r [2001:db8:2::11]:0 -g -w 3",
        "-a -f 8 -6 -r [2001:db8:2::12]:0 -i -w 1 --tun-type ipip",
    ]
    dump = case["dump"]
    assert sorted(dump) == ["FWM 7", "FWM 8 inet6"]
    assert dump["FWM 8 inet6"]["spec"]["key"] == {"af": 10, "protocol": None, "addr": None,
                                                  "port": 0, "fwmark": 8}
    assert service_settings(dump, "FWM 7") == ("wlc", 0, 0, "255.255.255.255", None)
    assert service_settings(dump, "FWM 8 inet6") == ("rr", 1, 30, 128, None)
    assert dests(dump, "FWM 7") == {"198.18.2.11:0": (DR, 1, 0, 0, *PLAIN),
                                    "198.18.2.12:8080": (NAT, 1, 0, 0, *PLAIN)}
    assert case["after_delete"] == ["-A -f 8 -6 -s rr -p 30",
                                    "-a -f 8 -6 -r [2001:db8:2::11]:0 -g -w 3"]


def test_persistence_timeout_and_granularity(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "persistence")
    assert case["saved"] == [f"-A -t {VIP}:443 -s rr -p 600 -M 255.255.255.0",
                             f"-A -u {VIP}:53 -s rr -p 360 -M 255.255.0.0"]
    assert service_settings(case["dump"], f"TCP {VIP}:443") == \
        ("rr", 1, 600, "255.255.255.0", None)
    # a granularity alone means 360 s, as in keepalived
    assert service_settings(case["dump"], f"UDP {VIP}:53") == ("rr", 1, 360, "255.255.0.0", None)
    assert case["unpersisted"][0] == f"-A -t {VIP}:443 -s rr"
    assert service_settings(case["unpersisted_dump"], f"TCP {VIP}:443") == \
        ("rr", 0, 0, "255.255.255.255", None)


def test_schedulers_and_their_flags(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "schedulers")
    assert set(case["errors"].values()) == {None}
    assert {f"-A -t {VIP}:1 -s sh -b sh-fallback,sh-port", f"-A -t {VIP}:2 -s mh -b mh-port",
            f"-A -u {VIP}:3 -s wrr -o", f"-A -u {VIP}:5060 -s rr -p 60 --pe sip",
            f"-A --sctp-service {VIP}:4 -s lc"} <= set(case["saved"])
    schedulers = {re.sub(r".* -s (\w+).*", r"\1", line) for line in case["saved"]}
    assert schedulers == {"sh", "mh", "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sed",
                          "nq", "fo", "ovf"}
    dump = case["dump"]
    assert service_settings(dump, f"TCP {VIP}:1") == ("sh", 0x18, 0, "255.255.255.255", None)
    assert service_settings(dump, f"TCP {VIP}:2") == ("mh", 0x10, 0, "255.255.255.255", None)
    assert service_settings(dump, f"UDP {VIP}:3")[1] == 0x04
    assert service_settings(dump, f"UDP {VIP}:5060") == ("rr", 1, 60, "255.255.255.255", "sip")
    assert dump[f"SCTP {VIP}:4"]["spec"]["key"]["protocol"] == "sctp"
    assert case["sh_edited"] == [f"-A -t {VIP}:1 -s sh"]


def test_flush(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "flush")
    assert len(case["before"]) == 3
    assert case["after"] == [] and case["dump"] == {}


def test_lvs_timeouts(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "timeouts")
    assert case["initial"] == {"tcp": 900, "tcpfin": 120, "udp": 300}
    assert case["set"] == {"tcp": 1000, "tcpfin": 120, "udp": 77}
    assert case["set_ipvsadm"] == "Timeout (tcp tcpfin udp): 1000 120 77"
    assert case["set_again"] == {"tcp": 1000, "tcpfin": 33, "udp": 77}
    assert case["set_by_ipvsadm"] == {"tcp": 500, "tcpfin": 60, "udp": 200}


def test_globals_from_the_configuration(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "globals")
    assert case["timeouts"] == {**case["before"], "tcp": 1000, "udp": 77}
    assert case["daemons"] == [
        "master sync daemon (mcast=v0, syncid=7, maxlen=1472, group=224.0.0.81, port=8850, "
        "ttl=1)",
        "backup sync daemon (mcast=v0, syncid=7, maxlen=1472, group=224.0.0.81, port=8850, "
        "ttl=1)"]
    assert case["daemons_after_reload"] == case["daemons"]
    assert case["restored"] == case["before"] and case["daemons_restored"] == []
    # syncid: the instance's VRID
    assert case["driven_backup"] == [
        "backup sync daemon (mcast=v0, syncid=51, maxlen=1472, group=224.0.0.81, port=8850, "
        "ttl=1)"]
    assert case["driven_master"] == [
        "master sync daemon (mcast=v0, syncid=51, maxlen=1472, group=224.0.0.81, port=8850, "
        "ttl=1)"]
    assert case["driven_stopped"] == []


def test_sync_daemon(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "sync_daemon")
    assert case["none"] == "{}"
    assert case["both"] == {
        "master": {"state": "master", "ifname": "v0", "syncid": 5, "maxlen": 1400,
                   "port": 8849, "ttl": 3, "group": "239.1.1.1"},
        # what the kernel chose where nothing was asked
        "backup": {"state": "backup", "ifname": "v1", "syncid": 6, "maxlen": 1472,
                   "port": 8848, "ttl": 1, "group": "224.0.0.81"},
    }
    assert case["both_ipvsadm"] == [
        "master sync daemon (mcast=v0, syncid=5, maxlen=1400, group=239.1.1.1, port=8849, ttl=3)",
        "backup sync daemon (mcast=v1, syncid=6, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)",
    ]
    assert case["again"] == "start the master sync daemon on v0: File exists (EEXIST)"
    assert case["stop_twice"] is None
    assert case["backup_only"] == ["backup"] and case["stopped"] == []
    assert case["by_ipvsadm"] == {"master": {"state": "master", "ifname": "v0", "syncid": 9,
                                             "maxlen": 1000, "port": 9000, "ttl": 2,
                                             "group": "239.2.2.2"}}
    assert case["ipv6_group"]["master"]["group"] == "ff02::81"
    assert case["missing_interface"] == \
        "start the master sync daemon on nosuch0: No such device (ENODEV)"
    assert case["mixed_families"] == ("start the master sync daemon on v0: Invalid argument "
                                      "(EINVAL: refused while a service mixes address families)")


def test_reconcile_repairs_ours_and_leaves_foreign_alone(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "reconcile")
    web = f"-t {VIP}:80"
    dns6 = "-u [2001:db8:1::10]:53"
    assert case["first_ops"] == [
        "-A -f 5 -s rr -p 100",
        "-a -f 5 -r 198.18.2.31:0 -g -w 1",
        f"-A {web} -s wrr",
        f"-a {web} -r 198.18.2.11:8080 -m -w 2",
        f"-a {web} -r 198.18.2.12:8080 -m -w 1",
        f"-a {web} -r 198.18.2.13:80 -g -w 0",
        f"-A {dns6} -s sh -b sh-port",
        f"-a {dns6} -r 198.18.2.21:53 -i -w 1 --tun-type gue --tun-port 5555",
        f"-a {dns6} -r [2001:db8:2::11]:53 -g -w 1",
    ]
    # after ipvsadm deleted a server, changed one's weight and another's method, added a
    # stranger and changed the fwmark service's scheduler (dropping its persistence)
    assert case["repair_ops"] == [
        "-E -f 5 -s rr -p 100",
        f"-d {web} -r 198.18.2.77:80",
        f"-e {web} -r 198.18.2.11:8080 -m -w 2",
        f"-a {web} -r 198.18.2.12:8080 -m -w 1",
        f"-e {web} -r 198.18.2.13:80 -g -w 0",
    ]
    assert case["dropped_ops"] == ["-D -f 5"]
    foreign = case["foreign_before"]
    assert foreign == ["-A -t 198.18.1.99:25 -s rr",
                       "-a -t 198.18.1.99:25 -r 198.18.2.99:25 -m -w 9"]
    for round_ in ("first", "repair", "dropped"):
        assert case[f"{round_}_errors"] == []
        assert case[f"{round_}_ops_after"] == [], f"{round_}: not converged"
        assert case[f"{round_}_foreign"] == ["TCP 198.18.1.99:25"]
        assert set(foreign) <= set(case[f"{round_}_saved"])
    assert not any("-f 5" in line for line in case["dropped_saved"])
    assert len(case["dropped_saved"]) == len(foreign) + 7


def test_operations_read_like_ipvsadm(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "ipvsadm_words")
    assert case["errors"] == [] and case["refused"] == []
    assert case["ours"] == case["ipvsadm"] and len(case["ours"]) == 8
    assert case["ours_thresholds"] == case["ipvsadm_thresholds"]
    assert any("198.18.2.11:8080" in line and re.search(r"\b10\s+2\b", line)
               for line in case["ours_thresholds"])


def test_refusals_are_one_line_with_the_errno(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "errors")
    assert case["edit_missing_service"] == \
        f"edit virtual service TCP {VIP}:81: no such virtual service (ESRCH)"
    assert case["unknown_scheduler"] == (
        f"add virtual service TCP {VIP}:82: No such file or directory "
        "(ENOENT: no scheduler or persistence engine of that name)")
    einval = ("Invalid argument (EINVAL: another family than the service's without TUN, "
              "a GUE tunnel without a port, or no IPv4 address in the namespace (lo down))")
    assert case["nat_of_other_family"] == \
        f"add real server [2001:db8:2::1]:80 to TCP {VIP}:80: {einval}"
    assert case["gue_without_port"] == f"add real server 198.18.2.1:80 to TCP {VIP}:80: {einval}"
    assert case["dest_of_missing_service"] == \
        f"add real server 198.18.2.1:80 to TCP {VIP}:83: no such virtual service (ESRCH)"
    assert case["no_ipv4_address"] == f"add real server 198.18.2.1:80 to TCP {VIP}:80: {einval}"
    assert case["no_ipv4_address_ipv6_dest"] is None
    assert case["lo_up"] is None
    assert case["missing_namespace_available"] is False
    assert case["missing_namespace"] == ("cannot open netlink in network namespace "
                                         "kpy-no-such-namespace: No such file or directory")
    assert case["namespace_exists_after"] is False


def _ipvsadm_counters(lines: list[str], endpoint: str) -> list[int]:
    line = next(line for line in lines if endpoint in line)
    return [int(n) for n in line.split()[-5:]]


def test_counters_after_real_traffic(vm_cases: dict[str, Any]) -> None:
    case = seen(vm_cases, "traffic")
    assert case["bodies"] == ["real server 11"] * 5
    service = case["dump"][f"TCP {VIP}:80"]
    dest = service["dests"]["198.18.20.11:8080"]
    assert dest["spec"]["fwd"] == NAT
    for stats in (service["stats"], dest["stats"]):
        assert stats["conns"] == 5
        assert stats["inpkts"] > 0 and stats["outpkts"] > 0
        # five HTTP requests in, five pages out
        assert stats["inbytes"] > 5 * 70 and stats["outbytes"] > 5 * 100
    # the connections are over: none active, all inactive (TIME_WAIT)
    assert (dest["active_conns"], dest["inact_conns"]) == (0, 5)
    totals = ["conns", "inpkts", "outpkts", "inbytes", "outbytes"]
    ours = [dest["stats"][name] for name in totals]
    assert _ipvsadm_counters(case["ipvsadm_stats"], "198.18.20.11:8080") == ours
    assert _ipvsadm_counters(case["ipvsadm_stats"], f"{VIP}:80") == \
        [service["stats"][name] for name in totals]
    after = case["dump_after_ipvsadm"][f"TCP {VIP}:80"]["dests"]["198.18.20.11:8080"]
    assert [after["stats"][name] for name in totals] == ours
    assert any(re.search(r"198\.18\.20\.11:8080\s+Masq\s+1\s+0\s+5", line)
               for line in case["ipvsadm_list"])


def test_pyroute2_pitfalls_are_still_there(vm_cases: dict[str, Any]) -> None:
    """Why agent/ipvs builds its own messages: pyroute2 0.9.7's helpers, seen wrong. When
    this fails, pyroute2 changed: the workarounds may go."""
    case = seen(vm_cases, "pyroute2")
    assert (case["from_message_fwd"], case["raw_fwd"]) == (3, 0)
    assert case["after_set"][-1] == f"-a -t {VIP}:80 -r 198.18.2.11:80 -g -w 2"
    assert case["after_update"] == []
    assert (case["fwmark"], case["ipv6"]) == (22, 22)
    assert any("gue:49175" in line for line in case["gue_port"])
    # the kernel reports its own IP_VS_SVC_F_HASHED bit: not a setting, left out of ours
    assert case["raw_flags"] & 0x2


def test_a_restarted_checker_drains_a_server_no_longer_configured(
        vm_cases: dict[str, Any], request: pytest.FixtureRequest) -> None:
    case = seen(vm_cases, "restart_drain")
    service = f"UDP {VIP}:53"
    stray = "198.18.2.12:53"

    def conns(dump: dict[str, Any]) -> int:
        dest = dump[service]["dests"][stray]
        return dest["active_conns"] + dest["inact_conns"]
    # what the previous process left: .12, weight 3 with thresholds, holding a UDP flow
    assert dests(case["before_dump"], service) == {
        "198.18.2.11:53": (NAT, 1, 0, 0, *PLAIN), stray: (NAT, 3, 100, 10, *PLAIN)}
    assert conns(case["before_dump"]) == 1
    # our checker, whose configuration has .11 only: .12 at weight 0 and otherwise as it
    # was, .11 adopted as it serves
    assert case["draining_saved"] == [f"-A -u {VIP}:53 -s rr",
                                      f"-a -u {VIP}:53 -r 198.18.2.11:53 -m -w 1",
                                      f"-a -u {VIP}:53 -r 198.18.2.12:53 -m -w 0"]
    assert dests(case["draining_dump"], service) == {
        "198.18.2.11:53": (NAT, 1, 0, 0, *PLAIN), stray: (NAT, 0, 100, 10, *PLAIN)}
    # 5 s (two of its looks at the connections) later, the flow still on it: still there
    assert dests(case["held_dump"], service)[stray][1] == 0
    assert conns(case["held_dump"]) == 1 and conns(case["after_flow_dump"]) == 1
    # the flow stopped, its entry expires (UDP timeout 2 s) and the next look deletes
    # it: long before lvs_drain_time (60 s)
    assert case["after_saved"] == [f"-A -u {VIP}:53 -s rr",
                                   f"-a -u {VIP}:53 -r 198.18.2.11:53 -m -w 1"]
    assert case["gone_seconds"] < 30
    said = [line.split(": ", 1)[1] for line in case["log"]]
    assert said == [
        "IPVS: adopting 1 real servers found serving in the kernel",
        "IPVS: 1 real servers in the kernel are no longer in the configuration: "
        "draining them",
        "service [198.18.2.12]:udp:53 no longer exist",
        f"Draining service [198.18.2.12]:udp:53 from VS [{VIP}]:udp:53",
        f"Removing service [198.18.2.12]:udp:53 from VS [{VIP}]:udp:53 (drained)"]
    report(request.config, f"restart drain: the checker up {case['started_seconds']:.1f} s "
                           f"after its start, .12 deleted {case['gone_seconds']:.1f} s after "
                           "its flow stopped", tier="vm tier")
