# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""keepalived_topology: check the VRRP topology of many hosts, once, on the controller.

Nothing runs on any host: the action reads each host's variables (templated with
that host's own variables, as a task on it would see them) and gathered facts from
the inventory, and hands them to ``plugin_utils/topology.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import Templar
from ansible_collections.keepalived_py.ha.plugins.plugin_utils.topology import check, summary

ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "str"},
    "instances_var": {"type": "str", "default": "keepalived_py_instances"},
}

MISSING = object()


class ActionModule(ActionBase):
    BYPASS_HOST_LOOP = True         # once per task, not once per host
    TRANSFERS_FILES = False
    _requires_connection = False    # touches no host
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict:
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            hosts = self._hosts(args["hosts"], task_vars)
        except AnsibleError as err:
            return {**result, "failed": True, "msg": str(err)}
        var = args["instances_var"]
        inputs, without, unreadable = {}, [], []
        for host in hosts:
            try:
                value, facts = self._host_input(task_vars["hostvars"], host, var)
            except AnsibleError as err:
                unreadable.append(f"{host}: {var}: cannot be templated: {err}")
                continue
            if value is MISSING:
                without.append(host)
            else:
                inputs[host] = (var, value, facts)
        return {**result, **self._outcome(inputs, without, unreadable, var)}

    def _outcome(self, inputs: dict, without: list[str], unreadable: list[str],
                 var: str) -> dict[str, Any]:
        result: dict[str, Any] = {"changed": False, "hosts": list(inputs),
                                  "hosts_without_instances": without}
        if not inputs and not unreadable:
            return {**result, "failed": True, "routers": [], "problems": [],
                    "msg": f"no host among {', '.join(without) or 'none'} defines {var}"}
        report, routers = check(inputs)
        report.problems[:0] = unreadable
        result.update(routers=[summary(r) for r in routers], problems=report.problems)
        if report.warnings:
            result["warnings"] = report.warnings
        if report.problems:
            count = len(report.problems)
            result["failed"] = True
            result["msg"] = (f"VRRP topology of {len(inputs)} hosts: {count} problem"
                             f"{'s' if count > 1 else ''}:\n- " + "\n- ".join(report.problems))
        else:
            result["msg"] = (f"VRRP topology of {len(inputs)} hosts: {len(routers)} VRRP "
                             f"router{'s' if len(routers) != 1 else ''}, no problem")
        return result

    def _hosts(self, wanted: list[str] | None, task_vars: Mapping[str, Any]) -> list[str]:
        """Host names: the play's hosts by default; a group name stands for its hosts."""
        if wanted is None:
            return list(task_vars.get("ansible_play_hosts_all") or [])
        groups = task_vars.get("groups") or {}
        known = set(groups.get("all", [])) | set(groups.get("ungrouped", []))
        found: list[str] = []
        for name in wanted:
            if name in groups:
                found += groups[name]
            elif name in known or name in task_vars["hostvars"]:
                found.append(name)
            else:
                raise AnsibleError(f"hosts: {name} is neither a host nor a group of the "
                                   "inventory")
        return list(dict.fromkeys(found))

    def _host_input(self, hostvars: Any, host: str, var: str) -> tuple[Any, Any]:
        """The host's ``var``, templated with the host's own variables, and its facts.

        hostvars are lazy: the raw variables are templated here, in the host's context
        (its vars, plus ``hostvars`` for references to other hosts).
        """
        raw = hostvars.raw_get(host)
        facts = raw.get("ansible_facts") or None
        if var not in raw:
            return MISSING, facts
        templar = Templar(loader=self._loader, variables={**raw, "hostvars": hostvars})
        return templar.template(raw[var], fail_on_undefined=True), facts
