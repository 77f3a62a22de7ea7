"""keepalived_topology: each check with a good and a bad topology.

The action runs in-process on a real inventory (YAML, with templated variables),
a real VariableManager (hostvars are lazy) and facts put in its fact cache, as
``ansible-playbook`` would give them; the last tests run ``ansible-playbook``
itself against hosts that cannot be reached, to show nothing is sent to them.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager
from ansible_collections.keepalived_py.ha.plugins.action.keepalived_topology import ActionModule

from ..conftest import COLLECTIONS_PATH

SECRET = "s3cr3tpw"       # 8 characters: keepalived keeps no more


def iface(*cidrs: str) -> dict[str, Any]:
    """An interface's facts as setup gathers them, from addresses like 192.0.2.11/24."""
    v4 = [ipaddress.ip_interface(c) for c in cidrs if ":" not in c]
    v6 = [ipaddress.ip_interface(c) for c in cidrs if ":" in c]
    entry = [{"address": str(a.ip), "netmask": str(a.netmask),
              "network": str(a.network.network_address), "prefix": str(a.network.prefixlen),
              "broadcast": str(a.network.broadcast_address)} for a in v4]
    out: dict[str, Any] = {"device": "x", "active": True}
    if entry:
        out["ipv4"] = entry[0]
    if entry[1:]:
        out["ipv4_secondaries"] = entry[1:]
    if v6:
        out["ipv6"] = [{"address": str(a.ip), "prefix": str(a.network.prefixlen),
                        "scope": "link" if a.is_link_local else "global"} for a in v6]
    return out


def host_facts(**ifaces: dict[str, Any]) -> dict[str, Any]:
    return {"interfaces": ["lo", *ifaces], **ifaces}


def vi(**over: Any) -> dict[str, Any]:
    """An instance as users write it; VI_1 on eth0, VRID 51, 192.0.2.10/24."""
    base = {"name": "VI_1", "interface": "eth0", "virtual_router_id": 51, "priority": 100,
            "advert_int": 1, "virtual_ipaddress": ["192.0.2.10/24"],
            "authentication": {"auth_type": "PASS", "auth_pass": SECRET}}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def pair(a: dict | None = None, b: dict | None = None) -> dict[str, dict[str, Any]]:
    """node-a (MASTER, 150) and node-b (100): one good VRRP router."""
    return {"node-a": {"keepalived_py_instances": [vi(**{"state": "MASTER", "priority": 150,
                                                         **(a or {})})]},
            "node-b": {"keepalived_py_instances": [vi(**{"state": "BACKUP", **(b or {})})]}}


LAN_FACTS = {"node-a": host_facts(eth0=iface("192.0.2.11/24")),
             "node-b": host_facts(eth0=iface("192.0.2.12/24")),
             "node-c": host_facts(eth0=iface("192.0.2.13/24"))}


def run_topology(tmp_path: Path, hosts: dict[str, dict[str, Any]],
                 facts: dict[str, dict[str, Any]] | None = None,
                 args: dict[str, Any] | None = None, check_mode: bool = False,
                 groups: dict[str, list[str]] | None = None,
                 extra_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The action's result for these hosts (inventory vars), run as from the first host."""
    children = {name: {"hosts": {h: None for h in members}}
                for name, members in (groups or {}).items()}
    inventory = {"all": {"hosts": hosts, "children": children}}
    source = tmp_path / "inventory.yml"
    source.write_text(yaml.safe_dump(inventory))
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(source)])
    variables = VariableManager(loader=loader, inventory=manager)
    HostVars(inventory=manager, variable_manager=variables, loader=loader)  # as a play has
    for host, gathered in (LAN_FACTS if facts is None else facts).items():
        if host in hosts:
            variables.set_host_facts(host, copy.deepcopy(gathered))
    task_vars = variables.get_vars(host=manager.get_host(next(iter(hosts))))
    task_vars.update(extra_vars or {})
    task = Task()
    task.args = dict(args if args is not None else {"hosts": list(hosts)})
    task.check_mode = check_mode
    # a connection the action must not use: no exec_command, no put_file
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    action = ActionModule(task, connection, PlayContext(), loader,
                          Templar(loader=loader, variables=task_vars), None)
    return action.run(task_vars=task_vars)


def problems(result: dict[str, Any]) -> list[str]:
    return result["problems"]


def assert_secret_kept(result: dict[str, Any]) -> None:
    assert SECRET not in json.dumps(result)
    assert SECRET[:8] not in json.dumps(result)


# -- a good topology ---------------------------------------------------------------------


def test_a_good_pair(tmp_path):
    result = run_topology(tmp_path, pair())
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False and "warnings" not in result
    assert result["msg"] == "VRRP topology of 2 hosts: 1 VRRP router, no problem"
    [router] = result["routers"]
    assert router["vrid"] == 51 and router["segment"] == "192.0.2.0/24"
    assert router["vips"] == ["192.0.2.10/24"] and router["intended_master"] == "node-a"
    assert [m["host"] for m in router["members"]] == ["node-a", "node-b"]
    assert router["members"][0]["segment_from"] == "facts"


def test_check_mode_is_the_same(tmp_path):
    result = run_topology(tmp_path, pair(b={"priority": 150}), check_mode=True)
    assert result["failed"] is True and len(problems(result)) == 1


def test_templated_variables_with_references_to_other_hosts(tmp_path):
    """hostvars are lazy: each host's list is templated in its own context."""
    peers = "{{ groups['lb'] | difference([inventory_hostname]) | map('extract', hostvars, " \
            "'vrrp_ip') | list }}"
    template = [vi(priority="{{ vrrp_prio }}", unicast_src_ip="{{ vrrp_ip }}",
                   unicast_peer=peers)]
    hosts = {"node-a": {"vrrp_prio": 150, "vrrp_ip": "192.0.2.11",
                        "keepalived_py_instances": template},
             "node-b": {"vrrp_prio": 100, "vrrp_ip": "192.0.2.12",
                        "keepalived_py_instances": template}}
    result = run_topology(tmp_path, hosts, groups={"lb": ["node-a", "node-b"]})
    assert not result.get("failed"), result["msg"]
    assert result["routers"][0]["intended_master"] == "node-a"
    hosts["node-b"]["vrrp_ip"] = "192.0.2.99"
    result = run_topology(tmp_path, hosts, groups={"lb": ["node-a", "node-b"]})
    # node-a's peer list is made from node-b's variable: it follows, the mirror holds
    assert not result.get("failed"), result["msg"]


def test_a_variable_that_cannot_be_templated(tmp_path):
    hosts = pair()
    hosts["node-b"]["keepalived_py_instances"][0]["priority"] = "{{ undefined_prio }}"
    result = run_topology(tmp_path, hosts)
    assert result["failed"] is True
    assert problems(result)[0].startswith("node-b: keepalived_py_instances: cannot be "
                                          "templated: ")
    assert "undefined_prio" in problems(result)[0]


# -- VRID clashes --------------------------------------------------------------------------


def test_vrid_clash_on_a_segment(tmp_path):
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_other", virtual_ipaddress=["192.0.2.20/24"])]}
    result = run_topology(tmp_path, hosts)
    assert result["failed"] is True
    [clash] = [p for p in problems(result) if p.startswith("VRID clash")]
    assert clash.startswith("VRID clash: VRID 51 (IPv4) on segment 192.0.2.0/24 is used by "
                            "instances that are not one VRRP router")
    for ref in ("node-a: keepalived_py_instances[0].virtual_router_id (virtual_ipaddress: "
                "192.0.2.10/24)",
                "node-c: keepalived_py_instances[0].virtual_router_id (virtual_ipaddress: "
                "192.0.2.20/24)"):
        assert ref in clash
    assert ref in result["msg"]


def test_same_vrid_on_other_segments_is_fine(tmp_path):
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_other", virtual_ipaddress=["198.51.100.20/24"])]}
    facts = {**LAN_FACTS, "node-c": host_facts(eth0=iface("198.51.100.13/24"))}
    result = run_topology(tmp_path, hosts, facts=facts)
    assert not [p for p in problems(result) if p.startswith("VRID clash")]


# -- segments named by a host variable --------------------------------------------------------


def test_a_named_segment_separates_equal_networks(tmp_path):
    """Two sites reusing one subnet: the same VRID on each is no clash."""
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_other", virtual_ipaddress=["192.0.2.20/24"])],
        "keepalived_py_segments": {"eth0": "dc2-vlan12"}}
    result = run_topology(tmp_path, hosts)
    assert not [p for p in problems(result) if p.startswith("VRID clash")]
    assert {r["segment"] for r in result["routers"]} == {"192.0.2.0/24", "dc2-vlan12"}
    [other] = [r for r in result["routers"] if r["segment"] == "dc2-vlan12"]
    assert other["members"][0]["segment_from"] == "segments"
    assert "VRID 51 (IPv4, 192.0.2.20/24) on segment dc2-vlan12: only node-c has it (node-c: " \
           "keepalived_py_instances[0]): no peer among the hosts on this segment (named by " \
           "node-c: keepalived_py_segments.eth0)" in result["warnings"]


def test_a_named_segment_joins_interfaces_of_other_networks(tmp_path):
    """node-b's primary address is in another subnet (the VIP's is a secondary one): by
    the facts the two are on two segments; named, they are one VRRP router."""
    hosts = pair()
    facts = {"node-a": LAN_FACTS["node-a"],
             "node-b": host_facts(bond0=iface("198.51.100.12/24", "192.0.2.12/24"))}
    hosts["node-b"]["keepalived_py_instances"][0]["interface"] = "bond0"
    split = run_topology(tmp_path, hosts, facts=facts)
    assert len(split["routers"]) == 2
    hosts["node-a"]["keepalived_py_segments"] = {"eth0": "lan", "eth1": "backend"}
    hosts["node-b"]["keepalived_py_segments"] = {"bond0": "lan"}
    result = run_topology(tmp_path, hosts, facts=facts)
    assert not result.get("failed"), result["msg"]
    assert "warnings" not in result
    [router] = result["routers"]
    assert router["segment"] == "lan" and router["intended_master"] == "node-a"
    assert [m["segment_from"] for m in router["members"]] == ["segments", "segments"]


def test_a_segment_named_on_one_host_only_is_told(tmp_path):
    hosts = pair()
    hosts["node-a"]["keepalived_py_segments"] = {"eth0": "lan"}
    result = run_topology(tmp_path, hosts)
    assert not result.get("failed"), result["msg"]
    assert result["warnings"] == [
        "VRID 51 (IPv4, 192.0.2.10/24) on segment lan: only node-a has it (node-a: "
        "keepalived_py_instances[0]): no peer among the hosts on this segment (named by "
        "node-a: keepalived_py_segments.eth0); the same VRID and VIPs are on another segment "
        "for node-b: keepalived_py_instances[0] (segment 192.0.2.0/24, the network of eth0 in "
        "node-b's facts)",
        "VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: only node-b has it (node-b: "
        "keepalived_py_instances[0]): no peer among the hosts; the same VRID and VIPs are on "
        "another segment for node-a: keepalived_py_instances[0] (segment lan, named by "
        "node-a: keepalived_py_segments.eth0)"]


def test_a_clash_on_a_named_segment_names_the_variable(tmp_path):
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_other", virtual_ipaddress=["192.0.2.20/24"])]}
    for host in hosts:
        hosts[host]["keepalived_py_segments"] = {"eth0": "lan"}
    result = run_topology(tmp_path, hosts)
    [clash] = problems(result)
    assert clash.startswith("VRID clash: VRID 51 (IPv4) on segment lan is used by instances "
                            "that are not one VRRP router")
    assert "node-c: keepalived_py_instances[0].virtual_router_id (virtual_ipaddress: " \
           "192.0.2.20/24; segment named by node-c: keepalived_py_segments.eth0)" in clash


def test_a_segment_key_in_an_instance_is_not_read(tmp_path):
    """A segment is where an interface is attached, not a keepalived keyword: the
    instance dicts go to keepalived_config as they are."""
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_other", virtual_ipaddress=["192.0.2.20/24"], segment="dc2-vlan12")]}
    result = run_topology(tmp_path, hosts)
    assert any(p.startswith("VRID clash: VRID 51 (IPv4) on segment 192.0.2.0/24")
               for p in problems(result))


@pytest.mark.parametrize(("segments", "problem"), [
    (["eth0", "lan"], "node-b: keepalived_py_segments: must be a dict of interface name -> "
                      "segment name, not a list"),
    ("lan", "node-b: keepalived_py_segments: must be a dict of interface name -> segment name, "
            "not a string"),
    (None, "node-b: keepalived_py_segments: must be a dict of interface name -> segment name, "
           "not null"),
    ({"eth0": 12}, "node-b: keepalived_py_segments.eth0: must be a segment name (a string), "
                   "not a number"),
    ({"eth0": {"name": "lan"}}, "node-b: keepalived_py_segments.eth0: must be a segment name "
                                "(a string), not a dict"),
    ({"eth0": " "}, "node-b: keepalived_py_segments.eth0: must be a segment name, not empty"),
    ({12: "lan"}, "node-b: keepalived_py_segments: 12: a key must be an interface name (a "
                  "string), not a number"),
    ({"": "lan"}, "node-b: keepalived_py_segments: an empty key: keys are interface names"),
])
def test_a_segments_variable_that_cannot_be_used(tmp_path, segments, problem):
    # a priority tie too: not reported, nothing is checked on segments that may be wrong
    hosts = pair(b={"priority": 150, "state": None})
    hosts["node-a"]["keepalived_py_segments"] = {"eth0": "lan"}
    hosts["node-b"]["keepalived_py_segments"] = segments
    result = run_topology(tmp_path, hosts)
    assert result["failed"] is True and result["changed"] is False
    assert problems(result) == [problem]
    assert result["msg"] == f"VRRP topology of 2 hosts: 1 problem:\n- {problem}"
    assert result["routers"] == []


def test_a_segments_variable_that_cannot_be_templated(tmp_path):
    hosts = pair()
    hosts["node-a"]["keepalived_py_segments"] = {"eth0": "{{ undefined_vlan }}"}
    result = run_topology(tmp_path, hosts)
    assert result["failed"] is True and result["routers"] == []
    [problem] = problems(result)
    assert problem.startswith("node-a: keepalived_py_segments: cannot be templated: ")
    assert "undefined_vlan" in problem


def test_templated_segments_and_another_variable_name(tmp_path):
    hosts = pair()
    for host in hosts:
        hosts[host].update(site_vlan="vlan12", vlans={"eth0": "{{ site_vlan }}"})
    result = run_topology(tmp_path, hosts, args={"hosts": list(hosts), "segments_var": "vlans"})
    assert not result.get("failed"), result["msg"]
    assert result["routers"][0]["segment"] == "vlan12"
    hosts["node-b"]["vlans"] = ["eth0"]
    result = run_topology(tmp_path, hosts, args={"hosts": list(hosts), "segments_var": "vlans"})
    assert problems(result) == ["node-b: vlans: must be a dict of interface name -> segment "
                                "name, not a list"]


def test_unicast_routers_that_never_meet_do_not_clash(tmp_path):
    def uni(src: str, peer: str, vip: str, prio: int) -> list[dict]:
        return [vi(priority=prio, unicast_src_ip=src, unicast_peer=[peer],
                   virtual_ipaddress=[vip])]
    hosts = {"node-a": {"keepalived_py_instances": uni("192.0.2.11", "192.0.2.12",
                                                       "192.0.2.10/24", 150)},
             "node-b": {"keepalived_py_instances": uni("192.0.2.12", "192.0.2.11",
                                                       "192.0.2.10/24", 100)},
             "node-c": {"keepalived_py_instances": uni("192.0.2.13", "192.0.2.14",
                                                       "192.0.2.20/24", 150)},
             "node-d": {"keepalived_py_instances": uni("192.0.2.14", "192.0.2.13",
                                                       "192.0.2.20/24", 100)}}
    facts = {**LAN_FACTS, "node-d": host_facts(eth0=iface("192.0.2.14/24"))}
    result = run_topology(tmp_path, hosts, facts=facts)
    assert not result.get("failed"), result["msg"]
    assert len(result["routers"]) == 2
    # node-c now sends to node-b too: the two routers meet
    hosts["node-c"]["keepalived_py_instances"][0]["unicast_peer"] = ["192.0.2.14",
                                                                     "192.0.2.12"]
    result = run_topology(tmp_path, hosts, facts=facts)
    assert any(p.startswith("VRID clash: VRID 51") for p in problems(result))


def test_one_host_with_two_instances_of_one_router(tmp_path):
    hosts = pair()
    hosts["node-a"]["keepalived_py_instances"].append(vi(name="VI_again", priority=120))
    result = run_topology(tmp_path, hosts)
    assert any("node-a has 2 instances of this one VRRP router: node-a: "
               "keepalived_py_instances[0], node-a: keepalived_py_instances[1]" in p
               for p in problems(result))


# -- priorities and the intended master ----------------------------------------------------


def test_tied_highest_priority(tmp_path):
    result = run_topology(tmp_path, pair(a={"priority": 100, "state": None}))
    assert problems(result) == [
        "VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: priority 100 ties between "
        "hosts - the highest, so no single intended master: node-a: "
        "keepalived_py_instances[0].priority, node-b: keepalived_py_instances[0].priority"]
    assert result["routers"][0]["intended_master"] is None


def test_tie_below_the_top(tmp_path):
    hosts = pair()
    hosts["node-c"] = {"keepalived_py_instances": [vi()]}
    result = run_topology(tmp_path, hosts)
    [tie] = problems(result)
    assert "priority 100 ties between hosts: node-b: keepalived_py_instances[0].priority, " \
           "node-c: keepalived_py_instances[0].priority" in tie
    assert "no single intended master" not in tie


def test_two_hosts_in_state_master(tmp_path):
    result = run_topology(tmp_path, pair(b={"state": "MASTER"}))
    assert problems(result) == [
        "VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: more than one intended "
        "master: state MASTER on node-a: keepalived_py_instances[0].state, node-b: "
        "keepalived_py_instances[0].state"]


def test_state_master_on_the_lower_priority(tmp_path):
    result = run_topology(tmp_path, pair(a={"state": "BACKUP"}, b={"state": "MASTER"}))
    [problem] = problems(result)
    assert problem.endswith(
        "the intended master is unclear: node-b: keepalived_py_instances[0].state is MASTER, "
        "but node-a: keepalived_py_instances[0].priority has the higher priority "
        "(150 > 100), so node-a takes over")


def test_two_address_owners(tmp_path):
    owners = pair(a={"priority": 255}, b={"priority": 255, "state": None})
    result = run_topology(tmp_path, owners)
    assert any("more than one intended master: several address owners (priority 255): "
               "node-a: keepalived_py_instances[0].priority, "
               "node-b: keepalived_py_instances[0].priority" in p for p in problems(result))


def test_a_router_of_one_host_is_a_warning(tmp_path):
    hosts = pair()
    hosts["node-b"]["keepalived_py_instances"][0]["virtual_router_id"] = 52
    result = run_topology(tmp_path, hosts)
    assert not result.get("failed"), result["msg"]
    assert any("only node-b has it (node-b: keepalived_py_instances[0]): no peer" in w
               for w in result["warnings"])


# -- VIPs and subnets ----------------------------------------------------------------------


def test_vip_outside_the_interface_subnet(tmp_path):
    vips = ["192.0.2.10/24", "203.0.113.10/24"]
    result = run_topology(tmp_path, pair(a={"virtual_ipaddress": vips},
                                         b={"virtual_ipaddress": vips}))
    assert problems(result) == [
        f"{host}: keepalived_py_instances[0].virtual_ipaddress[1]: 203.0.113.10/24 is outside "
        f"the subnets of eth0 on {host} (IPv4: 192.0.2.0/24)" for host in ("node-a", "node-b")]


def test_vip_on_another_device_and_secondary_networks(tmp_path):
    vips = ["192.0.2.10/24", "203.0.113.10/24 dev eth1", "198.51.100.10/24"]
    facts = {h: host_facts(eth0=iface(f"192.0.2.1{n}/24", f"198.51.100.1{n}/24"),
                           eth1=iface(f"203.0.113.1{n}/24"))
             for n, h in ((1, "node-a"), (2, "node-b"))}
    result = run_topology(tmp_path, pair(a={"virtual_ipaddress": vips},
                                         b={"virtual_ipaddress": vips}), facts=facts)
    assert not result.get("failed"), result["msg"]


def test_ipv6_vips(tmp_path):
    vips = ["2001:db8:1::10/64"]
    facts = {h: host_facts(eth0=iface(f"192.0.2.1{n}/24", f"fe80::{n}/64",
                                      f"2001:db8:1::{n}/64"))
             for n, h in ((1, "node-a"), (2, "node-b"))}
    good = run_topology(tmp_path, pair(a={"virtual_ipaddress": vips, "version": 3},
                                       b={"virtual_ipaddress": vips, "version": 3}),
                        facts=facts)
    assert not good.get("failed"), good["msg"]
    assert good["routers"][0]["family"] == 6
    vips = ["2001:db8:2::10/64"]
    bad = run_topology(tmp_path, pair(a={"virtual_ipaddress": vips, "version": 3},
                                      b={"virtual_ipaddress": vips, "version": 3}), facts=facts)
    assert "2001:db8:2::10/64 is outside the subnets of eth0 on node-a (IPv6: fe80::/64, " \
           "2001:db8:1::/64)" in bad["msg"]


def test_without_facts_a_warning_names_the_host(tmp_path):
    vips = ["203.0.113.10/24"]
    result = run_topology(tmp_path, pair(a={"virtual_ipaddress": vips},
                                         b={"virtual_ipaddress": vips}),
                          facts={"node-a": LAN_FACTS["node-a"]})
    assert "node-b: no network facts gathered: VIPs not checked against interface subnets, " \
           "segments taken from the VIPs (gather facts first, or name the segments of the " \
           "interfaces in keepalived_py_segments)" in result["warnings"]
    # node-a has facts: its VIP is checked; node-b's is not
    assert [p.split(":")[0] for p in problems(result)] == ["node-a"]


def test_without_facts_named_segments_are_enough(tmp_path):
    hosts = pair()
    for host in hosts:
        hosts[host]["keepalived_py_segments"] = {"eth0": "lan"}
    result = run_topology(tmp_path, hosts, facts={})
    assert not result.get("failed"), result["msg"]
    assert result["routers"][0]["segment"] == "lan"
    assert result["warnings"] == [
        f"{host}: no network facts gathered: VIPs not checked against interface subnets "
        "(gather facts first)" for host in ("node-a", "node-b")]


def test_interface_missing_from_the_facts(tmp_path):
    result = run_topology(tmp_path, pair(b={"interface": "bond0"}))
    assert "node-b: keepalived_py_instances[0].interface: interface bond0 is not among " \
           "node-b's gathered interfaces: 192.0.2.10/24 not checked" in result["warnings"]


# -- unicast -------------------------------------------------------------------------------


def unicast_pair(a_peers: list[str], b_peers: list[str], **b: Any) -> dict[str, Any]:
    return pair(a={"unicast_src_ip": "192.0.2.11", "unicast_peer": a_peers},
                b={"unicast_src_ip": "192.0.2.12", "unicast_peer": b_peers, **b})


def test_unicast_peers_that_mirror(tmp_path):
    result = run_topology(tmp_path, unicast_pair(["192.0.2.12"], ["192.0.2.11 min_ttl 1"]))
    assert not result.get("failed"), result["msg"]


def test_unicast_peer_missing(tmp_path):
    result = run_topology(tmp_path, unicast_pair(["192.0.2.12"], ["192.0.2.99"]))
    assert sorted(p.split(": unicast peers do not mirror: ")[1] for p in problems(result)) == [
        "node-b: keepalived_py_instances[0].unicast_peer lacks 192.0.2.11, the "
        "unicast_src_ip of node-a",
        "node-b: keepalived_py_instances[0].unicast_peer lists 192.0.2.99, which is the "
        "unicast source of no other host of this router"]


def test_unicast_source_from_the_facts(tmp_path):
    hosts = pair(a={"unicast_peer": ["192.0.2.12"]}, b={"unicast_peer": ["192.0.2.11"]})
    assert not run_topology(tmp_path, hosts).get("failed")
    hosts["node-a"]["keepalived_py_instances"][0]["unicast_peer"] = ["192.0.2.13"]
    result = run_topology(tmp_path, hosts)
    assert any("unicast_peer lacks 192.0.2.12, the primary address of node-b" in p
               for p in problems(result))


def test_unicast_source_unknown_is_a_warning(tmp_path):
    hosts = pair(a={"unicast_peer": ["192.0.2.12"]},
                 b={"unicast_peer": ["192.0.2.11"], "unicast_src_ip": "192.0.2.12"})
    result = run_topology(tmp_path, hosts, facts={})
    assert "node-a: keepalived_py_instances[0].unicast_src_ip: not set and no facts for eth0: " \
           "unicast peers of node-a not checked" in result["warnings"]


def test_unicast_and_multicast_mixed(tmp_path):
    result = run_topology(tmp_path, pair(a={"unicast_src_ip": "192.0.2.11",
                                            "unicast_peer": ["192.0.2.12"]}))
    assert problems(result) == [
        "VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: unicast and multicast mixed: "
        "node-a: keepalived_py_instances[0].unicast_peer send unicast, "
        "node-b: keepalived_py_instances[0] multicast"]


# -- settings that must agree --------------------------------------------------------------


def test_version_and_advert_int_differ(tmp_path):
    result = run_topology(tmp_path, pair(b={"version": 3, "advert_int": 0.5}))
    assert sorted(p.split(": ", 1)[1] for p in problems(result)) == [
        "advert_int differs between hosts: node-a: keepalived_py_instances[0].advert_int = 1, "
        "node-b: keepalived_py_instances[0].advert_int = 0.5",
        "version differs between hosts: node-a: keepalived_py_instances[0].version = 2, "
        "node-b: keepalived_py_instances[0].version = 3"]


def test_authentication_differs_without_telling_the_password(tmp_path):
    result = run_topology(tmp_path, pair(b={"authentication": {"auth_type": "PASS",
                                                               "auth_pass": "other"}}))
    assert problems(result) == [
        "VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: authentication differs "
        "between hosts: node-a: keepalived_py_instances[0].authentication: PASS, password A, "
        "node-b: keepalived_py_instances[0].authentication: PASS, password B"]
    assert_secret_kept(result)
    result = run_topology(tmp_path, pair(b={"authentication": None}))
    assert "node-b: keepalived_py_instances[0].authentication: none" in result["msg"]
    assert_secret_kept(result)


def test_passwords_compared_as_keepalived_reads_them(tmp_path):
    """keepalived keeps 8 characters (and says so): the same password on the wire."""
    long = {"authentication": {"auth_type": "PASS", "auth_pass": SECRET + "-tail"}}
    result = run_topology(tmp_path, pair(b=long))
    assert problems(result) == ["node-b: keepalived_py_instances[0].authentication.auth_pass: "
                                "Truncating auth_pass to 8 characters"]
    assert_secret_kept(result)


def test_vrrp3_has_no_authentication_to_compare(tmp_path):
    result = run_topology(tmp_path, pair(a={"version": 3}, b={"version": 3,
                                                              "authentication": None}))
    assert not result.get("failed"), result["msg"]


# -- values keepalived refuses -------------------------------------------------------------


def test_values_read_as_keepalived_does(tmp_path):
    hosts = pair(b={"virtual_router_id": 300})
    hosts["node-c"] = {"keepalived_py_instances": [
        vi(name="VI_3", virtual_router_id=None, virtual_ipaddress=["192.0.2.300/24"]), "VI_4"]}
    result = run_topology(tmp_path, hosts)
    found = problems(result)
    assert "node-b: keepalived_py_instances[0].virtual_router_id: (VI_1): VRID '300' not valid "\
           "- must be between 1 & 255" in found
    assert "node-c: keepalived_py_instances[0].virtual_router_id: missing: every VRRP instance "\
           "needs a virtual_router_id" in found
    assert "node-c: keepalived_py_instances[0].virtual_ipaddress[0]: VRRP parsed invalid IP " \
           "192.0.2.300/24. skipping IP..." in found
    assert "node-c: keepalived_py_instances[1]: must be a dict of keepalived keywords, not " \
           "a string" in found


def test_not_a_list(tmp_path):
    hosts = pair(a={"virtual_ipaddress": "192.0.2.10/24"})
    hosts["node-b"]["keepalived_py_instances"] = {"name": "VI_1"}
    result = run_topology(tmp_path, hosts)
    assert problems(result) == [
        "node-a: keepalived_py_instances[0].virtual_ipaddress: must be a list of strings, not "
        "a string",
        "node-b: keepalived_py_instances: must be a list of instance dicts, not a dict"]


# -- which hosts ---------------------------------------------------------------------------


def test_groups_and_hosts_without_the_variable(tmp_path):
    hosts = {**pair(), "web-1": {"http_port": 80}}
    result = run_topology(tmp_path, hosts, args={"hosts": ["lb", "web-1"]},
                          groups={"lb": ["node-a", "node-b"]})
    assert not result.get("failed"), result["msg"]
    assert result["hosts"] == ["node-a", "node-b"]
    assert result["hosts_without_instances"] == ["web-1"]


def test_default_hosts_are_the_play_hosts(tmp_path):
    hosts = {**pair(), "node-c": {"keepalived_py_instances": [vi(priority=100)]}}
    result = run_topology(tmp_path, hosts, args={},
                          extra_vars={"ansible_play_hosts_all": ["node-a", "node-b"]})
    assert result["hosts"] == ["node-a", "node-b"] and not result.get("failed")


def test_another_variable_name(tmp_path):
    hosts = {h: {"vrrp": v["keepalived_py_instances"]} for h, v in pair().items()}
    result = run_topology(tmp_path, hosts, args={"hosts": list(hosts), "instances_var": "vrrp"})
    assert not result.get("failed"), result["msg"]
    result = run_topology(tmp_path, hosts, args={"hosts": list(hosts)})
    assert result["failed"] is True
    assert result["msg"] == "no host among node-a, node-b defines keepalived_py_instances"


def test_unknown_host(tmp_path):
    result = run_topology(tmp_path, pair(), args={"hosts": ["node-a", "nodea"]})
    assert result["msg"] == "hosts: nodea is neither a host nor a group of the inventory"


def test_every_problem_in_one_message(tmp_path):
    result = run_topology(tmp_path, pair(b={"priority": 150, "advert_int": 2}))
    assert result["msg"].startswith("VRRP topology of 2 hosts: 2 problems:\n- ")
    assert result["msg"].count("\n- ") == 2


# -- ansible-playbook: runs once, touches no host ----------------------------------------------

PLAYBOOK = """
- name: Check the topology of the lb hosts
  hosts: lb
  gather_facts: false
  tasks:
    - name: Check
      keepalived_py.ha.keepalived_topology:
    - name: Not reached when the check fails
      ansible.builtin.ping:
"""


_LINE = re.compile(r"^(ok|changed|fatal): \[([^\]]+)\](?:: ([A-Z]+)!)? => (\{.*\})$")


def playbook(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """Run PLAYBOOK; every task result as (task, host, result), with its ``status``."""
    unreachable = {"ansible_host": "192.0.2.1", "ansible_connection": "ssh",
                   "ansible_ssh_common_args": "-o ConnectTimeout=1"}
    inventory = {"all": {"children": {"lb": {"hosts": {
        h: {**unreachable, **v} for h, v in hosts.items()}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    cache = tmp_path / "facts"
    cache.mkdir(exist_ok=True)
    for host in hosts:      # facts gathered "earlier", as a fact cache holds them
        (cache / host).write_text(json.dumps({f"ansible_{k}": v
                                              for k, v in LAN_FACTS[host].items()}))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_PATH),
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
           "ANSIBLE_GATHERING": "explicit", "ANSIBLE_INJECT_FACT_VARS": "false",
           "ANSIBLE_HOST_KEY_CHECKING": "false", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_DISPLAY_OK_HOSTS": "true"}
    bindir = Path(sys.executable).parent
    done = subprocess.run([str(bindir / "ansible-playbook"), "-v", "-i", "inventory.yml",
                           "play.yml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    results, task = [], ""
    for line in done.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):line.index("]")]
        elif match := _LINE.match(line):
            result = json.loads(match[4])
            result["status"] = match[3] or match[1]       # ok, changed, FAILED, UNREACHABLE
            results.append((task, match[2], result))
    return results


@pytest.mark.skipif(not (Path(sys.executable).parent / "ansible-playbook").exists(),
                    reason="ansible-playbook is not beside this Python")
def test_ansible_playbook_on_unreachable_hosts(tmp_path):
    bad = playbook(tmp_path, pair(b={"priority": 150, "state": "MASTER"}))
    # once, not once per host, and no task after it
    [(task, host, outcome)] = bad
    assert (task, host) == ("Check", "node-a")
    assert outcome["status"] == "FAILED" and outcome["changed"] is False
    assert "more than one intended master" in outcome["msg"]
    assert "priority 150 ties between hosts" in outcome["msg"]
    good = playbook(tmp_path, pair())
    (task, host, outcome), *ping = good
    assert outcome["status"] == "ok"
    assert outcome["msg"] == "VRRP topology of 2 hosts: 1 VRRP router, no problem"
    assert "warnings" not in outcome                       # the facts came from the cache
    # the next task is the first to try the hosts: they cannot be reached
    assert sorted(h for t, h, r in ping if t == "Not reached when the check fails"
                  and r["status"] == "UNREACHABLE") == ["node-a", "node-b"]
