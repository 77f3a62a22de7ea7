# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Live VRRP state through the installed agent's command line.

The modules ``vrrp_facts`` and ``vrrp_instance`` run on the target and talk to
the agent only through its CLI (``keepalived-py status --json`` and
``keepalived-py set``): no protocol code of ours travels with the module, so the
agent's CLI stays the one client of its control socket.  The state schema is
the agent's ``docs/control-socket.md`` (``schema_version`` 1); fields this code
does not know are ignored, and fields it expects but does not find read as
absent, as that schema's stability rule asks.

Runs on the target's Python: standard library and ``ansible.module_utils`` only.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

DEFAULT_AGENT = "/opt/keepalived-py/bin/keepalived-py"
EXIT_NOT_RUNNING = 3        # the CLI's (LSB) "program is not running", or unreachable

# Which agent a module means, by the CLI's own rule (agent/core/paths.py): the one
# of the network namespace the module runs in unless these options name another,
# and control_socket wins over both.  The CLI applies the rule; we only pass the
# options that are set.  Documented by the doc fragment
# keepalived_py.ha.vrrp_runtime.which_agent.  The instance option is not called
# ``instance``: vrrp_instance has that as an alias of its VRRP instance's name.
WHICH_AGENT_SPEC = {
    "control_socket": {"type": "path"},
    "namespace": {"type": "str"},
    "agent_instance": {"type": "str"},
}
_WHICH_AGENT_FLAGS = (("control_socket", "--control-socket"), ("namespace", "--namespace"),
                      ("agent_instance", "--instance"))

# The options every module that drives the agent takes; their documentation is
# the doc fragments keepalived_py.ha.vrrp_runtime and its which_agent.
AGENT_ARGUMENT_SPEC = {
    "agent": {"type": "path", "default": DEFAULT_AGENT},
    **WHICH_AGENT_SPEC,
}

_SOCKET_IN_MESSAGE = re.compile(r"socket at (\S+?)\)")
_SEVERAL_AGENTS = re.compile(r"several agents run in (.+?) \(instances ([^)]*)\)")


def which_agent(params: dict[str, Any]) -> list[str]:
    """The CLI's flags for the agent the options name; none when none is set, so
    the CLI's default applies and an agent older than ``--namespace`` still runs."""
    flags = []
    for option, flag in _WHICH_AGENT_FLAGS:
        if params.get(option):
            flags += [flag, params[option]]
    return flags


def several_agents(err: str) -> str | None:
    """The module's message when the CLI could not tell which agent is meant, else None."""
    match = _SEVERAL_AGENTS.search(err)
    if match is None:
        return None
    return (f"several keepalived-py agents run in {match.group(1)} (instances "
            f"{match.group(2)}): name the one meant with the option agent_instance")


class AgentError(Exception):
    """The agent could not be asked, or refused; the message is meant for a person."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class Agent:
    """The installed agent's CLI on this host, run through ``module.run_command``."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.path = self._find(module.params["agent"])
        self.control_socket = module.params.get("control_socket")
        self.flags = which_agent(module.params)

    def _find(self, path: str) -> str:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        if "/" not in path:
            found = self.module.get_bin_path(path)
            if found:
                return found
        raise AgentError(
            f"keepalived-py agent not found at {path} (option agent): install the agent "
            "(role keepalived_py.ha.keepalived_py) or point agent at its keepalived-py")

    def _argv(self, command: str, *args: str) -> list[str]:
        return [self.path, command, *self.flags, *args]

    def _run(self, argv: list[str]) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        return rc, out, err.strip()

    def status(self) -> dict[str, Any]:
        """The agent's ``status`` answer (``agent`` and ``vrrp``), as a dict."""
        argv = self._argv("status", "--json")
        rc, out, err = self._run(argv)
        if rc == EXIT_NOT_RUNNING:
            raise self._unreachable(err, argv)
        answer = _decode(out)
        if rc != 0 or answer is None or not answer.get("ok"):
            error = (answer or {}).get("error") or err or out.strip() or "no output"
            raise AgentError(f"keepalived-py status failed (exit {rc}): {error}",
                             cmd=argv, rc=rc, stdout=out, stderr=err)
        return answer

    def set(self, instance: str, priority: int | None | bool = False,
            force_backup: bool | None = None) -> str:
        """``keepalived-py set``: ``priority`` an int or None (back to the configured one);
        False leaves it alone, as does ``force_backup`` None."""
        args = []
        if priority is not False:
            args += ["--priority", "none" if priority is None else str(priority)]
        if force_backup is not None:
            args += ["--force-backup", "on" if force_backup else "off"]
        argv = self._argv("set", *args) + ["--", instance]
        rc, out, err = self._run(argv)
        if rc == EXIT_NOT_RUNNING:
            raise self._unreachable(err, argv)
        if rc != 0:
            error = _strip_prog(err) or out.strip() or "no output"
            raise AgentError(f"keepalived-py set {instance} failed (exit {rc}): {error}",
                             cmd=argv, rc=rc, stdout=out, stderr=err)
        return out.strip()

    def _unreachable(self, err: str, argv: list[str]) -> AgentError:
        """Exit 3: nothing listens on the socket, several agents and none named, or the
        socket refused us (not root, no answer).  The socket is named as the CLI names
        the one it tried: without control_socket, only the CLI knows which it found."""
        message = several_agents(err)
        match = _SOCKET_IN_MESSAGE.search(err)
        if message is None and match and "not running" in err:
            kind = "stale control socket" if "stale" in err else "no control socket"
            message = f"keepalived-py is not running on this host ({kind} at {match.group(1)})"
        if message is None:
            where = self.control_socket
            on = f" on {where}" if where and where not in err else ""
            message = f"cannot reach keepalived-py{on}: {_strip_prog(err) or 'no output'}"
        return AgentError(message, cmd=argv, rc=EXIT_NOT_RUNNING, stderr=err)


def _strip_prog(text: str) -> str:
    prefix = "keepalived-py: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _decode(text: str) -> dict[str, Any] | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


# -- facts ------------------------------------------------------------------------


def _address(vip: str) -> str:
    """``192.168.77.10/24`` from the agent's ``192.168.77.10/24 dev v0 scope global set``."""
    return vip.split(None, 1)[0] if vip else vip


def instance_facts(snap: dict[str, Any]) -> dict[str, Any]:
    """One instance of the agent's VRRP snapshot, as the facts give it."""
    vips = [_address(v) for v in snap.get("vips") or []]
    excluded = [_address(v) for v in snap.get("excluded_vips") or []]
    held = vips + excluded if snap.get("vips_set") else []
    return {
        "name": snap.get("name"),
        "vrid": snap.get("vrid"),
        "interface": snap.get("interface"),
        "family": snap.get("family"),
        "version": snap.get("version"),
        "state": snap.get("state"),
        "initial_state": snap.get("initial_state"),
        "configured_priority": snap.get("configured_priority"),
        "base_priority": snap.get("base_priority"),
        "effective_priority": snap.get("effective_priority"),
        "priority_override": snap.get("priority_override"),
        "force_backup": bool(snap.get("force_backup")),
        "source_address": snap.get("source_address"),
        "master_address": snap.get("master_address"),
        "master_priority": snap.get("master_priority"),
        "vips": vips,
        "excluded_vips": excluded,
        "vips_held": held,
        "last_transition": snap.get("last_transition"),
        "faults": list(snap.get("faults") or []),
    }


def agent_facts(answer: dict[str, Any], control_socket: str | None = None) -> dict[str, Any]:
    """``ansible_facts['keepalived_py']`` from a ``status`` answer.

    ``control_socket`` is the one the module named; None when the CLI found the
    agent itself (the answer does not say where), then ``namespace`` and
    ``instance``, the agent's own, say which agent answered."""
    agent = answer.get("agent") or {}
    vrrp = answer.get("vrrp")
    instances = [instance_facts(i) for i in (vrrp or {}).get("instances") or []]
    return {
        "version": agent.get("version"),
        "pid": agent.get("pid"),
        "started": agent.get("started"),
        "config_file": agent.get("config_file"),
        "control_socket": control_socket,
        "namespace": agent.get("namespace"),
        "instance": agent.get("instance"),
        "children": list(agent.get("children") or []),
        "vrrp_running": vrrp is not None,
        "schema_version": (vrrp or {}).get("schema_version"),
        "time": (vrrp or {}).get("time"),
        "instances": dict((i["name"], i) for i in instances),
        "instance_list": instances,
    }


def settings(instance: dict[str, Any]) -> dict[str, Any]:
    """The operator's maintenance settings of an instance (facts form)."""
    return {"priority_override": instance.get("priority_override"),
            "force_backup": bool(instance.get("force_backup"))}
