# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""keepalived_topology: check the VRRP topology of many hosts, once, on the controller.

Nothing runs on any host: the action reads each host's variables (templated with
that host's own variables, as a task on it would see them) and gathered facts from
the inventory, and hands them to ``plugin_utils/topology.py``.

The segments variables are read first: a wrong one would put instances on the
wrong segments, and every check after that would mislead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import Templar
from ansible_collections.keepalived_py.ha.plugins.plugin_utils.topology import (
    DEFAULT_SEGMENTS_VAR,
    HostInput,
    check,
    read_segments,
    summary,
)

ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "str"},
    "instances_var": {"type": "str", "default": "keepalived_py_instances"},
    "segments_var": {"type": "str", "default": DEFAULT_SEGMENTS_VAR},
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
        var, segments_var = args["instances_var"], args["segments_var"]
        inputs: dict[str, HostInput] = {}
        without: list[str] = []
        unreadable: list[str] = []      # variables that cannot be templated
        refused: list[str] = []         # segments variables that cannot be used
        for host in hosts:
            read = _HostReader(self._loader, task_vars["hostvars"], host)
            try:
                value = read(var)
            except AnsibleError as err:
                unreadable.append(f"{host}: {var}: cannot be templated: {err}")
                continue
            if value is MISSING:
                without.append(host)
                continue
            try:
                found = read(segments_var)
            except AnsibleError as err:
                refused.append(f"{host}: {segments_var}: cannot be templated: {err}")
                continue
            segments: dict[str, str] = {}
            if found is not MISSING:
                segments, problems = read_segments(host, segments_var, found)
                refused += problems
            inputs[host] = HostInput(var, value, read.facts, segments_var, segments)
        return {**result, **self._outcome(inputs, without, unreadable, refused, var)}

    def _outcome(self, inputs: dict[str, HostInput], without: list[str], unreadable: list[str],
                 refused: list[str], var: str) -> dict[str, Any]:
        result: dict[str, Any] = {"changed": False, "hosts": list(inputs),
                                  "hosts_without_instances": without}
        if not inputs and not unreadable and not refused:
            return {**result, "failed": True, "routers": [], "problems": [],
                    "msg": f"no host among {', '.join(without) or 'none'} defines {var}"}
        if refused:
            return {**result, **_failure(len(inputs), [*unreadable, *refused]), "routers": []}
        report, routers = check(inputs)
        report.problems[:0] = unreadable
        result.update(routers=[summary(r) for r in routers], problems=report.problems)
        if report.warnings:
            result["warnings"] = report.warnings
        if report.problems:
            result.update(_failure(len(inputs), report.problems))
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


def _failure(hosts: int, problems: list[str]) -> dict[str, Any]:
    count = len(problems)
    return {"failed": True, "problems": problems,
            "msg": (f"VRRP topology of {hosts} hosts: {count} problem"
                    f"{'s' if count > 1 else ''}:\n- " + "\n- ".join(problems))}


class _HostReader:
    """A host's variables, each templated with the host's own variables, and its facts.

    hostvars are lazy: the raw variables are templated here, in the host's context
    (its vars, plus ``hostvars`` for references to other hosts).
    """

    def __init__(self, loader: Any, hostvars: Any, host: str) -> None:
        self.raw = hostvars.raw_get(host)
        self.facts = self.raw.get("ansible_facts") or None
        self.templar = Templar(loader=loader, variables={**self.raw, "hostvars": hostvars})

    def __call__(self, var: str) -> Any:
        """The variable's value, or MISSING; AnsibleError when it cannot be templated."""
        if var not in self.raw:
            return MISSING
        return self.templar.template(self.raw[var], fail_on_undefined=True)
