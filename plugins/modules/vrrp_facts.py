#!/usr/bin/python
# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vrrp_facts
short_description: Live VRRP state of the keepalived-py agent, as facts
version_added: 0.1.0
description:
  - Reads the running keepalived-py agent's state on the target and returns it as
    C(ansible_facts['keepalived_py']) - the agent's version, pid and child processes, and
    for every VRRP instance its state, priorities, maintenance settings, master, the
    virtual addresses it holds and when its state last changed.
  - Read the facts as C(ansible_facts['keepalived_py']), not as a top-level variable;
    ansible-core 2.20 deprecates facts injected as variables (E(ANSIBLE_INJECT_FACT_VARS)).
  - The state comes from C(keepalived-py status --json), run on the target (see O(agent));
    the module changes nothing and reports C(changed=false) always.
  - The agent asked is the one of the network namespace the module runs in, unless
    O(namespace), O(agent_instance) or O(control_socket) names another.
  - Fails with C(keepalived-py is not running on this host), naming the control socket
    tried, when nothing answers on it; and with C(several keepalived-py agents run in),
    naming their instances, when several agents share the namespace and
    O(agent_instance) does not say which.
author:
  - keepalived-py developers (!UNKNOWN)
extends_documentation_fragment:
  - keepalived_py.ha.vrrp_runtime
  - keepalived_py.ha.vrrp_runtime.which_agent
attributes:
  check_mode:
    support: full
    description: Runs in check mode too (it only reads), so facts are there for later tasks.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  facts:
    support: full
    description: Returns C(ansible_facts['keepalived_py']).
  platform:
    support: full
    platforms: linux
    description: Linux hosts running the keepalived-py agent.
seealso:
  - module: keepalived_py.ha.vrrp_instance
    description: Change an instance's live state (maintenance) and wait for a state.
"""

EXAMPLES = r"""
- name: Read the live VRRP state
  keepalived_py.ha.vrrp_facts:

- name: Show every instance's state
  ansible.builtin.debug:
    msg: "{{ item.name }} is {{ item.state }} (priority {{ item.effective_priority }})"
  loop: "{{ ansible_facts['keepalived_py']['instance_list'] }}"
  loop_control:
    label: "{{ item.name }}"

- name: Gate on the state (rolling upgrade) - wait until this host is BACKUP for VI_1
  keepalived_py.ha.vrrp_facts:
  register: vrrp
  until: vrrp.ansible_facts['keepalived_py']['instances']['VI_1']['state'] == 'BACKUP'
  retries: 30
  delay: 1

- name: Exactly one host of the play is MASTER of VI_1
  ansible.builtin.assert:
    that: >-
      ansible_play_hosts
      | map('extract', hostvars, ['ansible_facts', 'keepalived_py', 'instances', 'VI_1', 'state'])
      | select('eq', 'MASTER') | list | length == 1
  run_once: true

- name: The agent of the network namespace blue (net_namespace blue), from the host's own
  keepalived_py.ha.vrrp_facts:
    namespace: blue

- name: One of several agents in this namespace (the one with "instance edge")
  keepalived_py.ha.vrrp_facts:
    agent_instance: edge

- name: An agent in a venv of its own, with its own control socket
  keepalived_py.ha.vrrp_facts:
    agent: /srv/kpy/bin/keepalived-py
    control_socket: /run/kpy-test/control.sock
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's C(ansible_facts).
  returned: success
  type: dict
  contains:
    keepalived_py:
      description:
        - The agent and its VRRP instances.
        - Read it as C(ansible_facts['keepalived_py']).
      returned: success
      type: dict
      contains:
        version:
          description: The agent's version.
          returned: success
          type: str
          sample: 0.1.0
        pid:
          description: Process id of the agent's parent process.
          returned: success
          type: int
          sample: 4242
        started:
          description: When the agent started (Unix epoch seconds).
          returned: success
          type: float
          sample: 1795250820.5
        config_file:
          description: The configuration file the agent runs.
          returned: success
          type: str
          sample: /etc/keepalived/keepalived.conf
        control_socket:
          description:
            - The control socket asked, O(control_socket); null when it is not set and the
              agent's command line found the agent (see
              RV(ansible_facts.keepalived_py.namespace) and
              RV(ansible_facts.keepalived_py.instance)).
          returned: success
          type: str
          sample: /run/kpy-test/control.sock
        namespace:
          description:
            - The network namespace the agent runs for (its C(net_namespace) or C(-s), or the
              namespace it was started in); null in the host's own namespace.
          returned: success
          type: str
          sample: blue
        instance:
          description:
            - The agent's C(instance) name (the keyword at the top of its configuration),
              null when it has none. Not a VRRP instance - those are
              RV(ansible_facts.keepalived_py.instances).
          returned: success
          type: str
          sample: edge
        children:
          description:
            - The agent's child processes (today the VRRP process), as the agent reports
              them.
          returned: success
          type: list
          elements: dict
          sample:
            - name: vrrp
              pid: 4243
              running: true
              ready: true
              started: 1795250820.6
              restarts: 0
              last_exit: null
        vrrp_running:
          description:
            - Whether a VRRP process runs. When V(false), RV(ansible_facts.keepalived_py.instances)
              is empty.
          returned: success
          type: bool
        schema_version:
          description: Version of the agent's state layout (1); null when no VRRP process runs.
          returned: success
          type: int
          sample: 1
        time:
          description:
            - When the agent took the snapshot (epoch seconds); null when no VRRP process runs.
          returned: success
          type: float
        instances:
          description:
            - The VRRP instances keyed by their C(vrrp_instance) name; each value is
              the dict described under RV(ansible_facts.keepalived_py.instance_list).
          returned: success
          type: dict
          sample:
            VI_1:
              name: VI_1
              state: MASTER
        instance_list:
          description: The same instances as a list, in the order of the configuration.
          returned: success
          type: list
          elements: dict
          contains:
            name:
              description: The C(vrrp_instance) name.
              type: str
              returned: success
              sample: VI_1
            vrid:
              description: The C(virtual_router_id).
              type: int
              returned: success
              sample: 51
            interface:
              description: The instance's interface.
              type: str
              returned: success
              sample: eth0
            family:
              description: Address family, V(4) or V(6).
              type: int
              returned: success
            version:
              description: VRRP version, V(2) or V(3).
              type: int
              returned: success
            state:
              description: The state now.
              type: str
              returned: success
              choices: [INIT, BACKUP, MASTER, FAULT]
              sample: MASTER
            initial_state:
              description: The configured C(state) (V(MASTER) for an address owner).
              type: str
              returned: success
              choices: [MASTER, BACKUP]
            configured_priority:
              description: C(priority) as configured (255 for an address owner).
              type: int
              returned: success
              sample: 150
            base_priority:
              description:
                - The priority that tracking weights are added to - the configured one, or
                  RV(ansible_facts.keepalived_py.instance_list[].priority_override) when set.
              type: int
              returned: success
              sample: 150
            effective_priority:
              description: The priority advertised now (base plus tracking weights, 1-254).
              type: int
              returned: success
              sample: 150
            priority_override:
              description:
                - The operator's maintenance priority (see M(keepalived_py.ha.vrrp_instance)),
                  null when none is set.
              type: int
              returned: success
            force_backup:
              description:
                - Held in BACKUP by the operator (see M(keepalived_py.ha.vrrp_instance)). The
                  instance never becomes master while this is V(true).
              type: bool
              returned: success
            source_address:
              description:
                - This host's address in the instance's adverts (its C(unicast_src_ip), else
                  the interface's primary address).
                - RV(ansible_facts.keepalived_py.instance_list[].master_address) differs from it
                  when a peer is master.
              type: str
              returned: success
              sample: 192.168.77.2
            master_address:
              description:
                - The current master - this host's own source address while it is master, the
                  sender of the last accepted advert while backup - or null when none is known.
              type: str
              returned: success
              sample: 192.168.77.1
            master_priority:
              description: That master's priority.
              type: int
              returned: success
            vips:
              description:
                - The configured C(virtual_ipaddress) addresses, C(ADDRESS) or
                  C(ADDRESS/PREFIX) (the prefix is left out when it is the full length).
              type: list
              elements: str
              returned: success
              sample: [192.168.77.10/24, 192.168.77.11/24]
            excluded_vips:
              description: The configured C(virtual_ipaddress_excluded) addresses, the same way.
              type: list
              elements: str
              returned: success
            vips_held:
              description:
                - The virtual addresses (C(virtual_ipaddress) and C(virtual_ipaddress_excluded))
                  this instance has put on its interfaces now. That is all of them while the
                  instance is MASTER, and V([]) in every other state (BACKUP, FAULT, INIT).
                - Taken from the agent's own record (its C(vips_set)), not from the kernel. An
                  address another process added, or one left behind by a killed VRRP process
                  that has not resumed yet, is not listed.
              type: list
              elements: str
              returned: success
              sample: [192.168.77.10/24, 192.168.77.11/24]
            last_transition:
              description: When the state last changed (epoch seconds), null if it never did.
              type: float
              returned: success
              sample: 1795250827.276843
            faults:
              description: What holds the instance in FAULT (V(if:eth0)...); empty when none.
              type: list
              elements: str
              returned: success
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the docs
from ansible_collections.keepalived_py.ha.plugins.module_utils.vrrp_runtime import (  # noqa: E402
    AGENT_ARGUMENT_SPEC,
    Agent,
    AgentError,
    agent_facts,
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(AGENT_ARGUMENT_SPEC), supports_check_mode=True)
    try:
        agent = Agent(module)
        answer = agent.status()
    except AgentError as err:
        module.fail_json(msg=str(err), **err.details)
    facts = agent_facts(answer, module.params["control_socket"])
    module.exit_json(changed=False, ansible_facts={"keepalived_py": facts})


if __name__ == "__main__":
    main()
