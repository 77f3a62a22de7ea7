#!/usr/bin/python
# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

# Documentation only: the action plugin plugins/action/keepalived_topology.py does the work,
# on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: keepalived_topology
short_description: Check the VRRP topology of a group of hosts before touching any
version_added: 0.1.0
description:
  - "Runs once, on the controller, over the VRRP instances of many hosts (each host's
    O(instances_var)) and fails listing every problem found, each with the hosts and the
    variable paths involved, such as C(node-a: keepalived_py_instances[0].virtual_router_id)."
  - Nothing is sent to any host. Each host's variable is templated with that host's own
    variables (as a task on it would see it), and interface subnets come from the facts
    already gathered for it, when there are some.
  - Values are read with the agent's own keyword table, so a value keepalived would refuse
    (a VRID of 300, a bad address) is a problem too, with keepalived's message.
  - "A B(VRRP router) is the set of instances, across hosts, that share a segment, an address
    family, a VRID and the set of C(virtual_ipaddress) addresses (address and prefix). The
    B(segment) of an instance is the segment its host's O(segments_var) names for its
    C(interface), else the IPv4 network of that interface from the host's facts (IPv6
    without IPv4), else the network of its first VIP."
  - The checks follow.
  - B(VRID clashes) - one VRID, on one segment and address family, used by instances that are
    not one VRRP router (their VIP sets differ), or one host with two instances of one router.
    Two unicast-only routers whose hosts never send to each other do not clash.
  - B(Priorities) - two hosts of one router with the same C(priority).
  - B(One intended master) per router - the address owner (C(priority 255)) if there is one,
    else the host with the highest priority. A tie for the highest priority leaves no single
    intended master; several address owners, C(state MASTER) on several hosts, or on a host
    that is not the highest in priority, leave more than one.
  - B(VIPs outside the interface subnet) - each VIP must be inside a network of its interface
    (its C(dev), else the instance's C(interface)), from the host's gathered facts. Without
    facts for a host this is a warning naming the host, not a failure.
  - B(Unicast peers that do not mirror) - in a router using C(unicast_peer), each host's
    unicast source (C(unicast_src_ip), else the interface's primary address from the facts)
    must be in every other host's C(unicast_peer), and each peer listed must be another host's
    source. Unicast and multicast hosts mixed in one router is a problem too.
  - B(Differing settings) - C(version), C(advert_int) and C(authentication) must be the same on
    all hosts of a router (authentication only for VRRPv2, which has it). Passwords never
    appear in messages, only labels telling equal ones from different ones.
author:
  - keepalived-py developers (!UNKNOWN)
options:
  hosts:
    description:
      - The hosts to check together. Group names stand for their hosts.
      - Default the play's hosts (C(ansible_play_hosts_all)).
      - Hosts that do not define O(instances_var) are left out (listed in
        RV(hosts_without_instances)); the task fails when none defines it.
    type: list
    elements: str
  instances_var:
    description:
      - The name of the variable holding each host's list of VRRP instances. Each instance is a
        dict whose keys are keepalived keywords - C(name), C(interface), C(virtual_router_id),
        C(priority), C(state), C(advert_int), C(version), C(virtual_ipaddress) (a list of
        C(ADDRESS[/LEN] [dev IF] ...) lines), C(unicast_src_ip), C(unicast_peer) (a list),
        C(authentication) (a dict with C(auth_type), C(auth_pass)).
      - Other keys are ignored here, so the same list can be given to
        M(keepalived_py.ha.keepalived_config) as its C(instances).
    type: str
    default: keepalived_py_instances
  segments_var:
    description:
      - "The name of the variable holding, per host, where its interfaces are attached: a dict
        of interface name to segment name, such as C({eth0: dc1-vlan12, eth1: dc1-backend})."
      - A segment is a property of the host's wiring, not of an instance, so it is not a key
        of the instance dicts. An instance is on the segment named for its C(interface).
      - Name segments where the subnets do not tell them apart (two sites reusing one subnet),
        or where they split one (hosts whose primary addresses are in different subnets on one
        LAN). Segment names are compared as they are; a name may be a network, such as
        C(192.0.2.0/24), to match the segment of hosts that do not name theirs.
      - Interfaces not in it, and hosts that do not define it, fall back to the interface's
        network from the facts, then to the network of the first VIP.
      - "A value that is not a dict of strings to strings fails the task before anything is
        checked, naming the host and the variable (C(node-a: keepalived_py_segments.eth0))."
    type: str
    default: keepalived_py_segments
attributes:
  action:
    support: full
    description: An action plugin; it runs on the controller.
  async:
    support: none
    description: Not to be run asynchronously.
  bypass_host_loop:
    support: full
    description: Runs once for the whole play, not once per host, and on no host.
  check_mode:
    support: full
    description: Changes nothing anyway; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes.
  platform:
    support: full
    platforms: all
    description: The controller.
notes:
  - Run it first in a play (or in a play of its own before the roll-out), after gathering
    facts for the subnet and segment checks.
  - A router that only one host has is a warning; when the same VRID and VIPs are on
    another segment for other hosts (a segment named on some hosts only), the warning names
    those instances and where each segment came from.
seealso:
  - module: keepalived_py.ha.vrrp_facts
"""

EXAMPLES = r"""
# First in the play that rolls out the HA pairs, with facts gathered (gather_facts: true),
# so that no host is touched when the topology is wrong:
- name: Check the VRRP topology of all hosts of the play
  keepalived_py.ha.keepalived_topology:

- name: Check the instances of two groups together, from other variables
  keepalived_py.ha.keepalived_topology:
    hosts: [lb_dc1, lb_dc2]
    instances_var: vrrp_instances
    segments_var: vrrp_segments

# host_vars/node-a.yml
# keepalived_py_instances:
#   - name: VI_1
#     interface: eth0
#     virtual_router_id: 51
#     state: MASTER
#     priority: 150
#     advert_int: 1
#     virtual_ipaddress: [192.0.2.10/24]
#     unicast_src_ip: 192.0.2.11
#     unicast_peer: [192.0.2.12]
#     authentication:
#       auth_type: PASS
#       auth_pass: "{{ vault_vrrp_pass }}"
#
# group_vars/lb_dc2.yml: dc2 reuses dc1's subnet on its own VLAN; naming the segment
# keeps its VRID 51 from clashing with dc1's
# keepalived_py_segments:
#   eth0: dc2-vlan12
"""

RETURN = r"""
msg:
  description: What was found, one line per problem (each starting with C(- )).
  returned: always
  type: str
  sample: |-
    VRRP topology of 2 hosts: 1 problem:
    - VRID 51 (IPv4, 192.0.2.10/24) on segment 192.0.2.0/24: priority 100 ties between hosts -
      the highest, so no single intended master: node-a: keepalived_py_instances[0].priority,
      node-b: keepalived_py_instances[0].priority
problems:
  description: The problems, one string each, naming hosts and variable paths.
  returned: always
  type: list
  elements: str
hosts:
  description: The hosts whose instances were checked.
  returned: always
  type: list
  elements: str
  sample: [node-a, node-b]
hosts_without_instances:
  description: The hosts left out, which do not define O(instances_var).
  returned: always
  type: list
  elements: str
routers:
  description: The VRRP routers found.
  returned: when the instances could be read
  type: list
  elements: dict
  contains:
    vrid:
      description: The VRID.
      type: int
      returned: always
    family:
      description: The address family, V(4) or V(6).
      type: int
      returned: always
    segment:
      description: The segment (see the description).
      type: str
      returned: always
      sample: 192.0.2.0/24
    vips:
      description: The router's virtual addresses.
      type: list
      elements: str
      returned: always
    intended_master:
      description: The host with the highest priority, null when that priority ties.
      type: str
      returned: always
      sample: node-a
    members:
      description:
        - The instances making the router - C(host), C(instance) (name), C(path) (of the
          variable), C(priority), C(state), C(segment_from) (where the segment came from -
          V(segments) for O(segments_var), V(facts), V(vips), or V(interface) when there
          was nothing else).
      type: list
      elements: dict
      returned: always
"""
