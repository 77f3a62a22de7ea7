#!/usr/bin/python
# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vrrp_instance
short_description: Put a live VRRP instance of keepalived-py into maintenance and back, and wait
version_added: 0.1.0
description:
  - Sets the maintenance state of one running VRRP instance of the keepalived-py agent - a
    priority override, a forced BACKUP, or neither - and optionally waits until the
    instance reaches a state.
  - The agent keeps these settings across reloads, restarts of its VRRP process and
    restarts of the agent or of the host (in C(/var/lib/keepalived-py/maintenance.json)),
    until they are set back - so a host upgraded or rebooted in maintenance comes back
    still in maintenance.
  - Idempotent. The module reads the instance first (C(keepalived-py status --json)) and
    runs C(keepalived-py set) only for the settings that differ, so setting what is already
    set reports C(changed=false).
author:
  - keepalived-py developers (!UNKNOWN)
extends_documentation_fragment:
  - keepalived_py.ha.vrrp_runtime
  - keepalived_py.ha.vrrp_runtime.which_agent
options:
  name:
    description:
      - The C(vrrp_instance) name.
      - The agent's own C(instance) name, where several agents share a namespace, is
        O(agent_instance).
    type: str
    required: true
    aliases: [instance]
  maintenance:
    description:
      - The maintenance state wanted for the instance. It describes both settings at once;
        a setting the value does not ask for is cleared.
      - V(none) - no maintenance - the configured priority, not held in BACKUP.
      - V(priority) - the priority O(priority) instead of the configured one, not held in
        BACKUP. Whether the master hands over then depends on the peers (a peer hands over
        or takes over only if it preempts); use V(backup) for a hand-over that does not.
      - V(backup) - held in BACKUP. A master hands over at once (it sends a priority-0
        advert, and keeps the addresses until it hears the new master, so that clients see
        no gap) and the instance never becomes master while held. With O(priority) the
        priority override is set too; without it, an override is cleared.
      - When omitted, V(priority) if O(priority) is given; otherwise the settings are left
        as they are and the module only reports (and with O(wait=true), waits).
    type: str
    choices: [none, priority, backup]
  priority:
    description:
      - The maintenance priority, 1-254. Required with O(maintenance=priority); allowed with
        O(maintenance=backup); not allowed with O(maintenance=none).
    type: int
  wait:
    description:
      - Wait until the instance's state is O(wait_for), polling every O(delay) seconds for up
        to O(timeout) seconds; fail with the last state seen if it is not reached.
      - Waits also when nothing had to change (for example to gate on a state).
      - Not in check mode, where nothing changes and nothing is waited for.
    type: bool
    default: false
  wait_for:
    description:
      - The state to wait for with O(wait=true). V(any) is V(MASTER) or V(BACKUP) - the
        instance is running and not in FAULT or INIT.
      - Default V(BACKUP) when the instance is held in BACKUP (O(maintenance=backup)), V(any)
        otherwise. A priority override moves mastership only with preempting peers, so name
        the state you expect then.
      - This host is BACKUP as soon as it has handed over; a peer becomes MASTER (and adds
        the addresses) a moment later, after its skew time. To gate on the addresses, wait
        for the peer too - M(keepalived_py.ha.vrrp_facts) on the peer, or this module there
        with O(wait_for=MASTER).
    type: str
    choices: [MASTER, BACKUP, any]
  timeout:
    description:
      - Seconds to wait at most, with O(wait=true). A read of the state under way when the
        time runs out is finished first (it takes a fraction of a second, at most the agent's
        own 5 s limit).
    type: float
    default: 30
  delay:
    description: Seconds between two reads of the state while waiting.
    type: float
    default: 1
attributes:
  check_mode:
    support: full
    description: Reports what would change, changes nothing and does not wait.
  diff_mode:
    support: full
    description: The maintenance settings (V(priority_override), V(force_backup)) before and after.
  platform:
    support: full
    platforms: linux
    description: Linux hosts running the keepalived-py agent.
seealso:
  - module: keepalived_py.ha.vrrp_facts
    description: The live state of every instance, as facts.
notes:
  - Reading the state back is the same C(keepalived-py status --json) that
    M(keepalived_py.ha.vrrp_facts) runs, so RV(instance) has the same fields as one of its
    instances.
"""

EXAMPLES = r"""
- name: Hand VI_1 over to the peer and wait until this host is BACKUP
  keepalived_py.ha.vrrp_instance:
    name: VI_1
    maintenance: backup
    wait: true

- name: Lower the priority for maintenance (the peers preempt) and wait for BACKUP
  keepalived_py.ha.vrrp_instance:
    name: VI_1
    priority: 10
    wait: true
    wait_for: BACKUP
    timeout: 20

- name: End maintenance and wait until this host is MASTER again
  keepalived_py.ha.vrrp_instance:
    name: VI_1
    maintenance: none
    wait: true
    wait_for: MASTER

- name: Only wait (no change) until VI_1 is MASTER or BACKUP after a restart
  keepalived_py.ha.vrrp_instance:
    name: VI_1
    wait: true

- name: Hand over VI_1 of the agent of network namespace blue (instance edge there)
  keepalived_py.ha.vrrp_instance:
    name: VI_1
    maintenance: backup
    namespace: blue
    agent_instance: edge
"""

RETURN = r"""
before:
  description: The maintenance settings found.
  returned: success
  type: dict
  contains:
    priority_override:
      description: The priority override, null when none.
      type: int
      returned: success
    force_backup:
      description: Whether the instance is held in BACKUP.
      type: bool
      returned: success
  sample: {priority_override: null, force_backup: false}
after:
  description: The maintenance settings wanted (set now, unless in check mode).
  returned: success
  type: dict
  sample: {priority_override: null, force_backup: true}
state:
  description: The instance's state after the change (and the wait); the state found in check mode.
  returned: success
  type: str
  sample: BACKUP
instance:
  description:
    - The instance as read after the change and the wait (in check mode, as found), with the
      fields of
      RV(keepalived_py.ha.vrrp_facts#module:ansible_facts.keepalived_py.instance_list).
  returned: success
  type: dict
  sample:
    name: VI_1
    state: BACKUP
    effective_priority: 150
    force_backup: true
    priority_override: null
    master_address: 192.168.77.2
    vips_held: []
waited:
  description: Seconds spent waiting (0 when not waiting).
  returned: success
  type: float
  sample: 1.52
"""

import time  # noqa: E402 - imports follow the documentation, as in every module

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.keepalived_py.ha.plugins.module_utils.vrrp_runtime import (  # noqa: E402
    AGENT_ARGUMENT_SPEC,
    Agent,
    AgentError,
    agent_facts,
    settings,
)

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True, "aliases": ["instance"]},
    "maintenance": {"type": "str", "choices": ["none", "priority", "backup"]},
    "priority": {"type": "int"},
    "wait": {"type": "bool", "default": False},
    "wait_for": {"type": "str", "choices": ["MASTER", "BACKUP", "any"]},
    "timeout": {"type": "float", "default": 30},
    "delay": {"type": "float", "default": 1},
    **AGENT_ARGUMENT_SPEC,
}


def check_params(params: dict) -> str | None:
    """What argument_spec cannot say; the message for a bad combination, if any."""
    priority = params["priority"]
    if priority is not None and not 1 <= priority <= 254:
        return f"priority must be 1-254, not {priority}"
    if params["maintenance"] == "none" and priority is not None:
        return "priority does not go with maintenance=none (which clears the override)"
    if params["wait_for"] and not params["wait"]:
        return "wait_for is set but wait is false"
    if params["timeout"] < 0 or params["delay"] <= 0:
        return "timeout must be 0 or more and delay more than 0"
    return None


def wanted_settings(params: dict, found: dict) -> dict:
    """The maintenance settings the parameters ask for (``found`` when they ask nothing)."""
    maintenance = params["maintenance"]
    if maintenance is None and params["priority"] is not None:
        maintenance = "priority"
    if maintenance is None:
        return dict(found)
    return {"priority_override": None if maintenance == "none" else params["priority"],
            "force_backup": maintenance == "backup"}


def default_wait_for(params: dict, wanted: dict) -> str:
    if params["wait_for"]:
        return params["wait_for"]
    return "BACKUP" if wanted["force_backup"] else "any"


def state_matches(state: str | None, wait_for: str) -> bool:
    if wait_for == "any":
        return state in ("MASTER", "BACKUP")
    return state == wait_for


def read_instance(agent: Agent, name: str) -> dict:
    facts = agent_facts(agent.status())
    if not facts["vrrp_running"]:
        raise AgentError("keepalived-py runs no VRRP process now: no instance to change")
    instance = facts["instances"].get(name)
    if instance is None:
        known = ", ".join(facts["instances"]) or "none"
        raise AgentError(f"no VRRP instance {name!r} in keepalived-py (instances: {known})")
    return instance


def apply(agent: Agent, name: str, found: dict, wanted: dict) -> None:
    """Run ``keepalived-py set`` for the settings that differ."""
    changes = {}
    if wanted["priority_override"] != found["priority_override"]:
        changes["priority"] = wanted["priority_override"]
    if wanted["force_backup"] != found["force_backup"]:
        changes["force_backup"] = wanted["force_backup"]
    agent.set(name, **changes)


def wait_for_state(agent: Agent, name: str, wait_for: str, timeout: float,
                   delay: float) -> tuple[dict, float]:
    """Poll until the instance is in ``wait_for``: the instance and the seconds waited.

    A read that fails (the VRRP process restarting) is retried until the timeout.
    """
    began = time.monotonic()
    deadline = began + timeout
    last, error = None, None
    while True:
        try:
            last, error = read_instance(agent, name), None
        except AgentError as err:
            error = err
        if last is not None and error is None and state_matches(last["state"], wait_for):
            return last, round(time.monotonic() - began, 3)
        left = deadline - time.monotonic()
        if left <= 0:
            raise AgentError(_timed_out(name, wait_for, timeout, last, error), instance=last,
                             state=None if last is None else last["state"],
                             waited=round(time.monotonic() - began, 3))
        time.sleep(min(delay, left))


def _timed_out(name: str, wait_for: str, timeout: float, last: dict | None,
               error: AgentError | None) -> str:
    wanted = "MASTER or BACKUP" if wait_for == "any" else wait_for
    text = f"{name}: not {wanted} after {timeout:g} s"
    if last is not None:
        text += (f"; last state seen {last['state']} (effective priority "
                 f"{last['effective_priority']}, master {last['master_address'] or 'unknown'}")
        text += f", faults {', '.join(last['faults'])})" if last["faults"] else ")"
    if error is not None:
        text += f"; last read failed: {error}"
    return text


def run(module: AnsibleModule) -> dict:
    params = module.params
    agent = Agent(module)
    name = params["name"]
    found_instance = read_instance(agent, name)
    found = settings(found_instance)
    wanted = wanted_settings(params, found)
    changed = wanted != found
    result = {"changed": changed, "before": found, "after": wanted, "waited": 0.0}
    if module._diff:
        result["diff"] = {"before": found, "after": wanted,
                          "before_header": f"{name} (maintenance settings)",
                          "after_header": f"{name} (maintenance settings)"}
    instance = found_instance
    if changed and not module.check_mode:
        try:
            apply(agent, name, found, wanted)
        except AgentError as err:
            err.details.update(result, changed=False)
            raise
    if params["wait"] and not module.check_mode:
        try:
            instance, result["waited"] = wait_for_state(
                agent, name, default_wait_for(params, wanted), params["timeout"],
                params["delay"])
        except AgentError as err:
            err.details = {**result, **err.details}
            raise
    elif changed and not module.check_mode:
        instance = read_instance(agent, name)
    result.update(instance=instance, state=instance["state"])
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("maintenance", "priority", ["priority"])])
    problem = check_params(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        result = run(module)
    except AgentError as err:
        module.fail_json(msg=str(err), **err.details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
