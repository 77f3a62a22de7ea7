"""A stand-in agent for the module tests, and a way to run a module in-process.

The modules run the agent's *real* command line (``keepalived-py status --json``,
``keepalived-py set``) through a launcher script; what is fake is the daemon behind
the control socket: ``FakeDaemon`` serves canned state over the agent's own
control-socket server code, records every request, and applies ``set`` to its
state the way the agent does.  State changes that the VRRP engine would make
(a hand-over after a forced BACKUP) are scheduled by the test: ``schedule``.

So the tests check the module against the CLI's actual arguments, exit codes
and messages, not against our idea of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.keepalived_py.ha.agent.core.control import serve_control
from ansible_collections.keepalived_py.ha.agent.core.paths import AgentKey, RunPaths

COLLECTION_ROOT = Path(__file__).resolve().parents[4]

try:        # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args  # type: ignore[import-not-found]
except ImportError:
    @contextlib.contextmanager
    def patch_module_args(args: dict[str, Any]) -> Iterator[None]:
        from ansible.module_utils import basic
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved

LAUNCHER = """#!{python}
import sys
sys.path.insert(0, {root!r})
from agent.cli import main
sys.exit(main())
"""

# The same, with the run directory that ``--namespace`` / ``--instance`` look in moved
# from /run/keepalived-py to the test's: the CLI's own lookup, on the test's daemons.
KEYED_LAUNCHER = """#!{python}
import functools, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from agent.core import paths
paths.find_control_socket = functools.partial(paths.find_control_socket,
                                              run_dir=Path({run_dir!r}))
from agent.cli import main
sys.exit(main())
"""


def agent_dir(run_dir: Path, namespace: str | None = None, instance: str | None = None
              ) -> Path:
    """Where the agent of that namespace and instance keeps its control socket."""
    return RunPaths.of(AgentKey(namespace, instance), run_dir).run_dir


def instance(name: str, *, vrid: int = 51, state: str = "MASTER", priority: int = 100,
             vips: tuple[str, ...] = ("198.18.0.100/24",), **extra: Any) -> dict[str, Any]:
    """A VRRP snapshot instance (docs/control-socket.md), as the agent answers it."""
    master = state == "MASTER"
    snap = {
        "name": name, "vrid": vrid, "interface": "eth0", "ifindex": 2, "family": 4,
        "version": 2, "state": state, "want_state": state, "initial_state": "BACKUP",
        "base_priority": priority, "configured_priority": priority, "priority_override": None,
        "force_backup": False, "effective_priority": priority, "total_priority": priority,
        "master_address": "198.18.0.11" if master else "198.18.0.12",
        "master_priority": priority if master else 200,
        "vips": [f"{v} dev eth0 scope global{' set' if master else ''}" for v in vips],
        "excluded_vips": [], "routes": [], "rules": [], "vips_set": master,
        "faults": [], "last_transition": 1795250827.276843,
        "transitions": [{"time": 1795250827.276843, "from": "BACKUP", "to": state}],
        "stats": {"advert_rcvd": 0, "advert_sent": 3},
    }
    snap.update(extra)
    return snap


def status_answer(*instances: dict[str, Any], vrrp: bool = True) -> dict[str, Any]:
    return {
        "ok": True,
        "agent": {"version": "0.1.0", "pid": 4242, "started": 1795250820.5,
                  "config_file": "/etc/keepalived/keepalived.conf",
                  "children": [{"name": "vrrp", "pid": 4243, "running": True, "ready": True,
                                "started": 1795250820.6, "restarts": 0, "last_exit": None}]},
        "vrrp": {"schema_version": 1, "pid": 4243, "time": 1795250834.12, "global": {},
                 "instances": list(instances), "sockets": [], "sync_groups": [],
                 "scripts": [], "track_files": [], "interfaces": []} if vrrp else None,
    }


class FakeDaemon:
    """The agent's control socket with canned state; ``requests`` records what came."""

    def __init__(self, answer: dict[str, Any], directory: Path) -> None:
        self.answer = answer
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = str(directory / "control.sock")
        self.requests: list[dict[str, Any]] = []
        self._scheduled: list[list[Any]] = []      # [status reads left, name, state]
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> FakeDaemon:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(serve_control(self.socket, self._handle),
                                                  self._loop)
        self._server = future.result(10)
        return self

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def instance(self, name: str) -> dict[str, Any]:
        return next(i for i in self.answer["vrrp"]["instances"] if i["name"] == name)

    def schedule(self, name: str, state: str, after_reads: int) -> None:
        """``name`` turns ``state`` once ``after_reads`` more status requests were answered."""
        self._scheduled.append([after_reads, name, state])

    def requested(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("request") == kind]

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if request.get("request") == "status":
            self._advance()
            return copy.deepcopy(self.answer)
        if request.get("request") == "set":
            return self._set(request)
        return {"ok": False, "error": f"unknown request {request.get('request')!r}"}

    def _advance(self) -> None:
        for entry in self._scheduled:
            entry[0] -= 1
            if entry[0] < 0:
                self.instance(entry[1])["state"] = entry[2]
        self._scheduled = [e for e in self._scheduled if e[0] >= 0]

    def _set(self, request: dict[str, Any]) -> dict[str, Any]:
        """As agent/vrrp/runtime.py's override: the settings, and the priorities they make."""
        try:
            snap = self.instance(request["instance"])
        except StopIteration:
            return {"ok": False, "error": f"no instance {request['instance']!r}"}
        if "priority" in request:
            snap["priority_override"] = request["priority"]
            snap["base_priority"] = request["priority"] or snap["configured_priority"]
            snap["effective_priority"] = snap["base_priority"]
        if "force_backup" in request:
            snap["force_backup"] = request["force_backup"]
        return {"ok": True, "instance": snap["name"], "priority_override":
                snap["priority_override"], "force_backup": snap["force_backup"],
                "state": snap["state"], "effective_priority": snap["effective_priority"]}


def script(workdir: Path, name: str, body: str) -> str:
    """A small shell script standing in for an agent that misbehaves."""
    path = workdir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def run_module(main: Any, args: dict[str, Any], capsys: pytest.CaptureFixture[str], *,
               check_mode: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run a module's ``main`` in this process; its JSON result (``rc`` added)."""
    full = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff,
            "_ansible_remote_tmp": tempfile.gettempdir(), "_ansible_keep_remote_files": False}
    capsys.readouterr()
    with patch_module_args(full), pytest.raises(SystemExit) as exited:
        main()
    result = json.loads(capsys.readouterr().out)
    result["rc_exit"] = exited.value.code
    return result


def not_a_socket_listener(workdir: Path) -> str:
    """A socket file nobody listens on (the agent killed with -9)."""
    import socket
    path = str(workdir / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    assert os.path.exists(path)
    return path
