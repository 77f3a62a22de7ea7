"""Our keepalived.data / .stats / .json against the files keepalived 2.2.7 wrote.

The reference run (../shared/conformance/keepalived-2.2.7-runtime) has two
instances on one veth, both MASTER when dumped: VI_1 (VRRPv2 multicast, VIPs
with a label, an IPv6 excluded VIP, a virtual route and rule) and VI_6
(VRRPv3 unicast, 0.5 s adverts, nopreempt).  We read the same vrrp_test.conf,
build the same instances, drive their engines to MASTER on a simulated clock,
and snapshot them without a network: the per-instance part of the snapshot
is a plain function of the Running objects and the clock offset.

Compared: the stats dump byte for byte (same counters set); the JSON keys,
their order and types, and every config-derived value; every line of each
" VRRP Instance = X" block, of the global definitions (VRRP process and
parent) and of the v0 interface block, except the short lists below, each
with its reason.

Not compared yet, because the agent does not have the feature (their lines
and keys are listed in NOT_IMPLEMENTED_* so the list stays exact):
sync groups (the "Sync group" line, the Sync groups section), vrrp_script
and track_file (the "Tracked scripts/files" lines, their sections, JSON
"track_script"), notify scripts and the notify FIFO ("Generic state
transition script", JSON "script", "Global notify fifo"), and the
interfaces keepalived dumps but the agent does not use (lo, v1).
The Sockpool section is not compared: keepalived opens one socket per
interface, family, protocol and unicast source; the agent one per interface
and family (checked on its own below).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from keepalived_py.config import load, parse
from keepalived_py.core.paths import AgentKey, write_atomic
from keepalived_py.vrrp import dumps
from keepalived_py.vrrp import engine as e
from keepalived_py.vrrp import snapshot as snap_mod
from keepalived_py.vrrp.build import build_instances
from keepalived_py.vrrp.kernel import (
    KernelError,
    LinkState,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    number_rules,
)
from keepalived_py.vrrp.runtime import TRANSITIONS_KEPT, Running

from tests.conftest import SHARED, tier_missing

RUN_DIR = SHARED / "conformance" / "keepalived-2.2.7-runtime"
CONF = RUN_DIR / "vrrp_test.conf"
V0_ADDRESS = ip_address("192.168.77.1")     # v0's address in run.sh: VI_1's advert source
V0_LINK_LOCAL = ip_address("fe80::2cde:ffff:fe51:59f6")
V0_MAC = bytes.fromhex("2edeff5159f6")
# keepalived's last transitions in the reference files (epoch seconds)
LAST_TRANSITION = {"VI_1": 1795250828.893499, "VI_6": 1795250827.276843}
OFFSET = 1795250000.0                        # wall clock minus our simulated loop clock

# Lines whose values come from the moment of the run, not from the config.
RUNTIME_LINES = (
    "   Read timeout = ",        # when the next advert was due at dump time
    "   fd_in ",                 # file descriptor numbers; we also share one socket per link
    " umask = ",                 # keepalived sets its umask to 0177; we keep the one we got
)
# Lines of facilities the agent does not have yet (see the module docstring).
NOT_IMPLEMENTED_LINES = (
    "   Sync group = ",
    "   Generic state transition script = ",
    " Global notify fifo = ",
    " libnftnl version ",        # a build detail of keepalived's: we link no libnftnl
)
NOT_IMPLEMENTED_LISTS = ("   Tracked scripts :", "   Tracked files :")
# v0's lines we cannot print until the kernel adapter reports them (see the report):
# the link flags, broadcast MAC and hardware type, keepalived's "seen up" and its
# IPv6 forwarding check, which the agent does not make.
INTERFACE_LINES_NOT_READ = (
    "   MAC broadcast = ", "   State = ", "   Seen up = ", "   HW Type = ",
    "   Not IPv6 forwarding.",
)
JSON_RUNTIME_KEYS = {
    # keepalived keeps the priority of the last master it heard (0: none);
    # the agent reports the current master's, its own while it is master
    "master_priority",
}
JSON_NOT_IMPLEMENTED_KEYS = {"script", "track_script"}


@pytest.fixture(scope="module")
def reference() -> Path:
    if not CONF.is_file():
        tier_missing(f"dumps reference: keepalived 2.2.7 runtime captures not found at {RUN_DIR}")
    return RUN_DIR / "tmp"


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """The reference run's clock was UTC; keepalived prints local times."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


class FakeFd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def make_runs(root: Any) -> list[Running]:
    """The config's instances as the runtime makes them, MASTER, with no socket or kernel."""
    specs = build_instances(root)
    sock = SimpleNamespace(ifname="v0", ifindex=3, family=4, rx=[FakeFd(16)], tx=FakeFd(17))
    numbered = iter(number_rules([VirtualRule.from_words(w) for s in specs for w in s.rules]))
    runs = []
    for spec in specs:
        name = spec.cfg.name
        source = spec.source_configured or V0_ADDRESS
        engine = e.Instance(dataclasses.replace(spec.cfg, source=source))
        start = LAST_TRANSITION[name] - OFFSET - engine.master_down_us() / e.US
        engine.start(start)
        engine.tick(engine.deadline)
        assert engine.state == e.State.MASTER
        run = Running(spec=spec, engine=engine, sock=sock, announcer=None, mac=V0_MAC,
                      vips=[VirtualAddress.from_words(w, spec.ifname) for w in spec.vips],
                      evips=[VirtualAddress.from_words(w, spec.ifname)
                             for w in spec.excluded_vips],
                      routes=[VirtualRoute.from_words(w) for w in spec.routes],
                      rules=[next(numbered) for _ in spec.rules])
        run.transitions.extend([(start, e.State.INIT, e.State.BACKUP),
                                (LAST_TRANSITION[name] - OFFSET, e.State.BACKUP, e.State.MASTER)])
        runs.append(run)
    return runs


def make_snapshot(root: Any, runs: list[Running], link_up: dict[str, bool] | None = None,
                  firewall: bool = False) -> dict[str, Any]:
    link_up = {"v0": True} if link_up is None else link_up
    glob = snap_mod.global_snapshot(root, firewall=firewall)
    nodes = snap_mod.instance_nodes(root)
    sockets, index = snap_mod.sockets_snapshot(runs)
    instances = [snap_mod.instance_snapshot(run, OFFSET, node=nodes[run.spec.cfg.name],
                                            glob=glob, link_up=link_up, firewall=firewall,
                                            socket_index=index[id(run.sock)])
                 for run in runs]
    link = LinkState(3, "v0", True, V0_MAC, 1500)
    # the kernel lists our VIPs among v0's addresses while we are master
    v0 = snap_mod.interface_snapshot(
        "v0", link, [V0_ADDRESS, ip_address("192.168.77.10"), ip_address("192.168.77.11")],
        [V0_LINK_LOCAL, ip_address("fd00::10")], runs)
    return {"schema_version": 1, "pid": 1, "time": 0.0, "global": glob,
            "instances": instances, "sockets": sockets, "sync_groups": [], "scripts": [],
            "track_files": [], "interfaces": [v0]}


@pytest.fixture(scope="module")
def root(reference: Path) -> Any:
    return load(str(CONF), interfaces={"lo", "v0", "v1"}).root


@pytest.fixture
def snapshot(root: Any) -> dict[str, Any]:
    return make_snapshot(root, make_runs(root))


def set_counters(snapshot: dict[str, Any], counters: dict[str, dict[str, int]]) -> None:
    for inst in snapshot["instances"]:
        inst["stats"].update(counters[inst["name"]])


# -- reading keepalived's files -------------------------------------------------------

def sections(text: str) -> dict[str, list[str]]:
    """keepalived.data by "------< Name >------" section."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("------<"):
            current = line.strip("-<> ")
            out[current] = []
        else:
            out[current].append(line)
    return out


def blocks(lines: list[str], head: str) -> dict[str, list[str]]:
    """A section's blocks by the name on their " Head = name" line."""
    out: dict[str, list[str]] = {}
    name = ""
    for line in lines:
        if line.startswith(head):
            name = line[len(head):]
            out[name] = []
        out[name].append(line)
    return out


def compared(lines: list[str], *excluded: tuple[str, ...]) -> list[str]:
    """``lines`` without the excluded ones (and the items listed under excluded lists)."""
    out, skipping = [], False
    for line in lines:
        if line in NOT_IMPLEMENTED_LISTS:
            skipping = True
            continue
        if skipping and line.startswith("     "):
            continue
        skipping = False
        if any(line.startswith(p) for group in excluded for p in group):
            continue
        out.append(line)
    return out


def stats_counters(text: str) -> dict[str, dict[str, int]]:
    """keepalived.stats back into counters, by instance."""
    names = ("advert_rcvd", "advert_sent", "become_master", "release_master", "packet_len_err",
             "ip_ttl_err", "invalid_type_rcvd", "advert_interval_err", "addr_list_err",
             "invalid_authtype", "authtype_mismatch", "auth_failure", "pri_zero_rcvd",
             "pri_zero_sent")
    out: dict[str, dict[str, int]] = {}
    for block in text.split("VRRP Instance: ")[1:]:
        lines = block.splitlines()
        numbers = [int(line.rsplit(":", 1)[1]) for line in lines[1:]
                   if line.rsplit(":", 1)[1].strip()]
        out[lines[0]] = dict(zip(names, numbers, strict=True))
    return out


# -- keepalived.stats -------------------------------------------------------------------

def test_stats_dump_is_byte_identical_for_the_same_counters(
        reference: Path, snapshot: dict[str, Any]) -> None:
    expected = (reference / "keepalived.stats").read_text()
    set_counters(snapshot, stats_counters(expected))
    assert dumps.stats_dump(snapshot) == expected


def test_stats_dump_prints_every_counter_by_its_line(snapshot: dict[str, Any]) -> None:
    inst = snapshot["instances"][0]
    names = list(inst["stats"])
    inst["stats"].update({name: 100 + i for i, name in enumerate(names)})
    text = dumps.stats_dump(snapshot)
    block = text.split("VRRP Instance: ")[1]
    # each of keepalived's 14 counters lands on its own line: no value printed twice
    values = [line.rsplit(": ", 1)[1] for line in block.splitlines()[1:] if ": " in line]
    assert len(values) == len(set(values)) == 14
    assert "    TTL: " + str(inst["stats"]["ip_ttl_err"]) in block


# -- keepalived.json --------------------------------------------------------------------

def test_json_has_keepalived_keys_types_and_config_values(
        reference: Path, snapshot: dict[str, Any]) -> None:
    expected = json.loads((reference / "keepalived.json").read_text())
    set_counters(snapshot, {item["data"]["iname"]: item["stats"] for item in expected})
    ours = json.loads(dumps.json_dump(snapshot))
    assert [o["data"]["iname"] for o in ours] == [x["data"]["iname"] for x in expected]
    skip = JSON_RUNTIME_KEYS
    for mine, theirs in zip(ours, expected, strict=True):
        assert list(mine) == ["data", "stats"]
        assert mine["stats"] == theirs["stats"]
        keys = [k for k in theirs["data"] if k not in JSON_NOT_IMPLEMENTED_KEYS]
        assert list(mine["data"]) == keys
        for key in keys:
            assert type(mine["data"][key]) is type(theirs["data"][key]), key
            if key not in skip:
                assert mine["data"][key] == theirs["data"][key], key


def test_json_is_one_line_with_keepalived_escapes(snapshot: dict[str, Any]) -> None:
    text = dumps.json_dump(snapshot)
    assert text.endswith("]\n") and text.count("\n") == 1
    # json_writer.c escapes "/" and prints intervals with %g, times with %f
    assert '"192.168.77.10\\/24 dev v0 scope global label v0:1 set"' in text
    assert '"adver_int":0.5,' in text and '"last_transition":1795250827.276843,' in text
    assert json.loads(text)[0]["data"]["vips"][0].startswith("192.168.77.10/24")


def test_json_leaves_out_empty_lists_and_the_password() -> None:
    root = parse("t.conf", text=(
        "vrrp_instance A {\n interface v0\n virtual_router_id 9\n"
        " authentication {\n auth_type PASS\n auth_pass secret\n }\n"
        " virtual_ipaddress {\n 10.0.0.1/32\n }\n}\n")).root
    snapshot = make_snapshot(root, make_runs_plain(root))
    data = json.loads(dumps.json_dump(snapshot))[0]["data"]
    assert data["auth_type"] == 1 and "auth_data" not in data
    assert "evips" not in data and "vroutes" not in data and "track_ifp" not in data
    assert "secret" not in json.dumps(snapshot)


def make_runs_plain(root: Any, state_master: bool = False) -> list[Running]:
    """Instances of a small config, in BACKUP (or MASTER), at loop time 10."""
    runs = []
    sock = SimpleNamespace(ifname="v0", ifindex=3, family=4, rx=[FakeFd(5)], tx=FakeFd(6))
    for spec in build_instances(root):
        engine = e.Instance(dataclasses.replace(spec.cfg, source=spec.source_configured
                                                or V0_ADDRESS))
        engine.start(10.0)
        if state_master:
            engine.tick(engine.deadline)
        runs.append(Running(spec=spec, engine=engine, sock=sock, announcer=None, mac=V0_MAC,
                            vips=[VirtualAddress.from_words(w, spec.ifname) for w in spec.vips],
                            evips=[VirtualAddress.from_words(w, spec.ifname)
                                   for w in spec.excluded_vips],
                            routes=[VirtualRoute.from_words(w) for w in spec.routes],
                            rules=number_rules(VirtualRule.from_words(w) for w in spec.rules)))
    return runs


# -- keepalived.data ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["VI_1", "VI_6"])
def test_instance_block_has_every_line_keepalived_printed(
        reference: Path, snapshot: dict[str, Any], name: str) -> None:
    theirs = blocks(sections((reference / "keepalived.data.master_state").read_text())
                    ["VRRP Topology"], " VRRP Instance = ")[name]
    ours = blocks(sections(dumps.data_dump(snapshot))["VRRP Topology"],
                  " VRRP Instance = ")[name]
    excluded = (RUNTIME_LINES, NOT_IMPLEMENTED_LINES)
    assert compared(ours, *excluded) == compared(theirs, *excluded)


def test_fault_block_matches_keepalived_after_the_track_file_fault(
        reference: Path, root: Any) -> None:
    runs = make_runs(root)
    vi1 = runs[0]
    # keepalived went to FAULT when the track file read 1; any fault reason prints the same
    at = 1795250837.502079 - OFFSET
    vi1.engine.link(at, False, "track_file:tf1")
    vi1.transitions.append((at, e.State.MASTER, e.State.FAULT))
    snapshot = make_snapshot(root, runs)
    theirs = blocks(sections((reference / "keepalived.data.after_trackfile_fault").read_text())
                    ["VRRP Topology"], " VRRP Instance = ")["VI_1"]
    ours = blocks(sections(dumps.data_dump(snapshot))["VRRP Topology"],
                  " VRRP Instance = ")["VI_1"]
    excluded = (RUNTIME_LINES, NOT_IMPLEMENTED_LINES)
    assert compared(ours, *excluded) == compared(theirs, *excluded)
    # no timer runs in FAULT, so this one is not a runtime value here
    assert "   Read timeout = DISABLED" in ours and "   Read timeout = DISABLED" in theirs
    assert snapshot["instances"][0]["faults"] == ["track_file:tf1"]


def test_global_definitions_match_the_vrrp_process(
        reference: Path, snapshot: dict[str, Any]) -> None:
    theirs = sections((reference / "keepalived.data.master_state").read_text())
    ours = sections(dumps.data_dump(snapshot))
    excluded = (RUNTIME_LINES, NOT_IMPLEMENTED_LINES)
    assert compared(ours["Global definitions"], *excluded) == \
        compared(theirs["Global definitions"], *excluded)


def test_global_definitions_match_the_parent(reference: Path, root: Any) -> None:
    theirs = (reference / "keepalived_parent.data").read_text().splitlines()
    # the parent has the configuration only, no VRRP state
    ours = dumps.parent_dump({"global": dumps.global_settings(root)}).splitlines()
    excluded = (RUNTIME_LINES, NOT_IMPLEMENTED_LINES)
    assert compared(ours, *excluded) == compared(theirs, *excluded)
    # the parent leaves the lower priority GARP settings unset
    assert " Gratuitous ARP lower priority delay = 4294967295" in ours


def test_interface_block_has_keepalived_lines_we_can_read(
        reference: Path, snapshot: dict[str, Any]) -> None:
    theirs = blocks(sections((reference / "keepalived.data.master_state").read_text())
                    ["Interfaces"], " Name = ")["v0"]
    ours = blocks(sections(dumps.data_dump(snapshot))["Interfaces"], " Name = ")["v0"]
    assert compared(ours) == compared(theirs, INTERFACE_LINES_NOT_READ)


def test_sockpool_describes_our_one_socket_per_link_and_family(
        snapshot: dict[str, Any]) -> None:
    lines = sections(dumps.data_dump(snapshot))["VRRP Sockpool"]
    # keepalived would show two sockets; ours serves the multicast and the unicast instance
    assert lines == [" fd_in 16 fd_out = 17", "   Interface = v0", "   Family = IPv4",
                     "   Protocol = VRRP", "   Rx buf size = 1048576", "   VRRP instances",
                     "     VI_1 vrid 51", "     VI_6 vrid 61"]


def test_backup_block_names_the_master(root: Any) -> None:
    runs = make_runs(root)
    vi6 = runs[1]
    # a higher priority advert from the peer sends VI_6 back to BACKUP
    eng = vi6.engine
    eng.state, eng.vips_set = e.State.BACKUP, False
    eng.master_source, eng.master_priority = ip_address("192.168.77.2"), 200
    eng.master_adver_int_us = 1_000_000
    snapshot = make_snapshot(root, runs)
    block = blocks(sections(dumps.data_dump(snapshot))["VRRP Topology"],
                   " VRRP Instance = ")["VI_6"]
    assert block[2:7] == ["   State = BACKUP", "   Master router = 192.168.77.2",
                          "   Master priority = 200", "   Master advert int = 1.00 sec",
                          "   Flags:"]
    assert "   Master advert interval = 1000 milli-sec" in block
    assert "     192.168.77.20/24 dev v0 scope global" in block     # no longer "set"


# -- the snapshot itself -------------------------------------------------------------------

def only_json_types(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and only_json_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(only_json_types(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_instance_snapshot_fields(snapshot: dict[str, Any]) -> None:
    assert only_json_types(snapshot)
    vi1, vi6 = snapshot["instances"]
    assert (vi1["state"], vi1["want_state"], vi1["initial_state"]) == \
        ("MASTER", "MASTER", "BACKUP")
    # a master names itself as the master
    assert vi1["master_address"] == vi1["source_address"] == "192.168.77.1"
    assert not vi1["source_from_config"] and vi6["source_from_config"]
    assert vi1["last_transition"] == LAST_TRANSITION["VI_1"]
    assert [(t["from"], t["to"]) for t in vi1["transitions"]] == \
        [("INIT", "BACKUP"), ("BACKUP", "MASTER")]
    assert vi1["multicast_group"] == "224.0.0.18" and vi6["multicast_group"] is None
    assert vi6["unicast_peers"] == [{"address": "192.168.77.2", "min_ttl": 0, "max_ttl": 255}]
    assert (vi6["advert_interval"], vi6["nopreempt"], vi6["preempt"]) == (0.5, True, False)
    assert vi1["master_down_interval"] == 3.414062
    assert vi1["trackers"]["interfaces"] == [
        {"name": "v0", "weight": 0, "reverse": False, "kind": "interface", "up": True}]
    assert vi1["trackers"]["scripts"] == [] and vi1["faults"] == []
    assert vi1["rules"] == ["from 192.168.77.10 priority 1000 tos 0x0 protocol 18 lookup 100"]
    assert set(vi1["stats"]) >= {"advert_rcvd", "pri_zero_sent", "vers_err", "chk_err"}
    assert vi1["socket"] == vi6["socket"] == 0


def test_transitions_are_the_recent_ones(root: Any) -> None:
    runs = make_runs(root)
    runs[0].transitions.extend((float(i), e.State.BACKUP, e.State.MASTER) for i in range(50))
    inst = make_snapshot(root, runs)["instances"][0]
    assert len(inst["transitions"]) == TRANSITIONS_KEPT
    assert inst["transitions"][-1]["time"] == 49.0 + OFFSET == inst["last_transition"]


def test_global_defaults_and_settings() -> None:
    glob = snap_mod.global_snapshot(parse("t.conf", text=(
        "global_defs {\n router_id r1\n vrrp_garp_master_delay 2\n vrrp_strict\n"
        " vrrp_garp_lower_prio_repeat 7\n}\n")).root)
    assert glob["router_id"] == "r1" and glob["vrrp_strict"] is True
    # unset lower priority GARP settings follow the master ones, set ones stay
    assert (glob["vrrp_garp_lower_prio_delay"], glob["vrrp_garp_lower_prio_repeat"]) == (2, 7)
    assert glob["configured"] == ["router_id", "vrrp_garp_lower_prio_repeat",
                                  "vrrp_garp_master_delay", "vrrp_strict"]
    empty = snap_mod.global_snapshot(None)
    assert (empty["vrrp_garp_master_delay"], empty["vrrp_mcast_group4"],
            empty["default_interface"]) == (5, "224.0.0.18", "eth0")
    assert empty["router_id"] == os.uname().nodename and empty["nftables"] is None


def test_vrrp_snapshot_reads_the_runtime_and_the_kernel(root: Any) -> None:
    runs = make_runs(root)

    class Kernel:
        async def link_state(self, name: str) -> LinkState:
            if name != "v0":
                raise KernelError(f"cannot read link {name}: No such device")
            return LinkState(3, "v0", True, V0_MAC, 1500)

        async def interface_addresses(self, ifindex: int, version: int) -> list[Any]:
            return [V0_ADDRESS] if version == 4 else [ip_address("fd00::1"), V0_LINK_LOCAL]

    runtime = SimpleNamespace(instances=runs, config=root, firewall=None, kernel=Kernel(),
                              _link_up={"v0": True, "gone": False}, tracker_values={})

    async def take() -> dict[str, Any]:
        return await snap_mod.vrrp_snapshot(runtime)

    snapshot = asyncio.run(take())
    assert only_json_types(snapshot)
    assert list(snapshot) == ["schema_version", "pid", "time", "global", "instances",
                              "sockets", "sync_groups", "scripts", "track_files", "interfaces"]
    assert snapshot["pid"] == os.getpid() and abs(snapshot["time"] - time.time()) < 60
    v0, gone = snapshot["interfaces"]
    assert (v0["name"], v0["index"], v0["mac"], v0["mtu"]) == ("v0", 3, "2e:de:ff:51:59:f6",
                                                               1500)
    assert v0["ipv6"] == [str(V0_LINK_LOCAL), "fd00::1"]        # link-local first
    assert v0["tracking"] == [{"instance": "VI_1", "weight": 0, "reverse": False},
                              {"instance": "VI_6", "weight": 0, "reverse": False}]
    assert (gone["name"], gone["exists"], gone["index"]) == ("gone", False, 0)
    assert "   index = 0 (deleted)" in dumps.data_dump(snapshot)
    # the loop clock became epoch time
    last = snapshot["instances"][0]["last_transition"]
    assert abs(last - (time.time() - asyncio.new_event_loop().time()
                       + runs[0].transitions[-1][0])) < 60


# -- keepalived's one-line forms ---------------------------------------------------------

@pytest.mark.parametrize(("words", "text"), [
    (("10.1.1.1/24", "brd", "+"), "10.1.1.1/24 brd 10.1.1.255 dev v0 scope global"),
    (("10.1.1.1", "peer", "10.1.1.2", "scope", "link"),
     "10.1.1.1 dev v0 scope link peer 10.1.1.2/32"),
    (("10.1.1.1/32", "dev", "v1", "no_track"), "10.1.1.1 dev v1 scope global no_track"),
    (("fd00::1/128",), "fd00::1 dev v0 scope global deprecated"),
    (("fd00::1/64", "-nodad", "preferred_lft", "30"),
     "fd00::1/64 dev v0 scope global -nodad preferred_lft 30"),
])
def test_address_format(words: tuple[str, ...], text: str) -> None:
    addr = VirtualAddress.from_words(words, "v0")
    assert snap_mod.format_address(addr, words) == text
    assert snap_mod.format_address(addr, words, True, True) == text + " set nftable_set"


@pytest.mark.parametrize(("words", "text"), [
    (("10.9.0.0/16", "via", "10.1.1.254"),
     "prepend 10.9.0.0/16 via inet 10.1.1.254 proto 18 no_track"),    # no dev: not tracked
    (("blackhole", "10.8.0.0/16", "table", "100", "metric", "5", "add", "dev", "v0"),
     "add blackhole 10.8.0.0/16 dev v0 table 100 proto 18 metric 5"),
    (("10.7.0.1", "src", "10.1.1.1", "dev", "v0", "mtu", "lock", "1400", "no_track"),
     "prepend 10.7.0.1 src 10.1.1.1 dev v0 mtu lock 1400 no_track"),
    (("default", "via", "10.1.1.254", "dev", "v0", "onlink"),
     "prepend 0.0.0.0/0 via inet 10.1.1.254 dev v0 proto 18 onlink"),
])
def test_route_format(words: tuple[str, ...], text: str) -> None:
    assert snap_mod.format_route(VirtualRoute.from_words(words), words) == text


@pytest.mark.parametrize(("words", "text"), [
    (("to", "10.0.0.0/8", "table", "5", "priority", "7"),
     "from all to 10.0.0.0/8 priority 7 tos 0x0 protocol 18 lookup 5"),
    (("inet6", "not", "fwmark", "3/0xff", "prohibit", "priority", "9", "no_track"),
     "inet6 not from all priority 9 tos 0x0 fwmark 0x3/0xff type prohibit no_track"),
    (("from", "all", "iif", "v0", "goto", "100", "priority", "50"),
     "from 0.0.0.0/0 priority 50 tos 0x0 iif v0 protocol 18 goto 100"),
])
def test_rule_format(words: tuple[str, ...], text: str) -> None:
    assert snap_mod.format_rule(VirtualRule.from_words(words), words) == text


# -- where the files go ------------------------------------------------------------------

def test_dump_paths_default_to_tmpdir() -> None:
    glob = snap_mod.global_snapshot(None)
    assert dumps.dump_paths(glob, environ={"TMPDIR": "/run/x"}) == {
        "data": Path("/run/x/keepalived.data"),
        "parent": Path("/run/x/keepalived_parent.data"),
        "stats": Path("/run/x/keepalived.stats"),
        "json": Path("/run/x/keepalived.json")}
    assert dumps.dump_paths({"global": glob}, environ={})["data"] == Path("/tmp/keepalived.data")


def test_dump_paths_follow_the_dump_file_settings() -> None:
    glob = snap_mod.global_snapshot(parse("t.conf", text=(
        "instance ka1\nglobal_defs {\n data_use_instance\n"
        " state_dump_file /var/lib/ka/state.txt\n stats_dump_file /var/lib/ka/\n"
        " json_dump_file status.json\n}\n")).root)
    assert dumps.dump_paths(glob, AgentKey(None, "ka1"), {"TMPDIR": "/t"}) == {
        "data": Path("/var/lib/ka/state.ka1.txt"),
        "parent": Path("/var/lib/ka/state_parent.ka1.txt"),
        "stats": Path("/var/lib/ka/keepalived.ka1.stats"),
        "json": Path("/t/status.ka1.json")}


def test_dump_paths_of_an_agent_in_a_namespace() -> None:
    # keepalived names only the data files, and only with data_use_instance; an agent
    # of ours with a key names all four, so that two agents never share one
    glob = snap_mod.global_snapshot(None)
    assert dumps.dump_paths(glob, AgentKey("blue", "lb1"), {}) == {
        "data": Path("/tmp/keepalived.blue_lb1.data"),
        "parent": Path("/tmp/keepalived_parent.blue_lb1.data"),
        "stats": Path("/tmp/keepalived.blue_lb1.stats"),
        "json": Path("/tmp/keepalived.blue_lb1.json")}


def test_write_atomic(tmp_path: Path) -> None:
    target = tmp_path / "keepalived.data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me\n")
    target.symlink_to(elsewhere)        # a planted link is replaced, not followed
    write_atomic(target, "one\n")
    assert target.read_text() == "one\n" and not target.is_symlink()
    assert elsewhere.read_text() == "keep me\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "keepalived.data"]
