"""Several agents on one host, one per network namespace, as keepalived users run them.

Each agent is started keepalived's way: in its namespace, with its own pid
files (``-p``/``-r``) and nothing else, so its control socket and
maintenance file are the ones keyed by its namespace (agent/core/paths.py).
Clients run in a namespace (``status``, ``reload``, ``set``, the Ansible
module ``vrrp_facts``) reach that namespace's agent with no flag; a third
agent on a live agent's paths is refused in one line and the live agent keeps
its VIP.  Then the event path between children, through the real parent: a
consumer restarted while VRRP changes state receives the current state when
it is back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keepalived_py.core.paths import AgentKey, RunPaths

from tests.conftest import REPO
from tests.integration.agents import Router, vrrp_config, wait_for
from tests.integration.conftest import LabFactory
from tests.lab import Host

VIP = "198.18.0.100"


class NamespaceAgent(Router):
    """An agent given only its pid files, as keepalived is in each namespace."""

    def private_files(self) -> list[str]:
        return ["-p", str(self.dir / "agent.pid"), "-r", str(self.dir / "vrrp.pid")]

    @property
    def paths(self) -> RunPaths:
        return RunPaths.of(AgentKey(self.host.netns))

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.paths.state_dir, ignore_errors=True)


def cli(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """``keepalived-py ARGS`` run inside ``host``'s namespace, with no flag naming an agent."""
    return host.run([sys.executable, "-m", "keepalived_py.cli", *args], check=False,
                    timeout=60, cwd=REPO)


def status(host: Host) -> dict[str, Any]:
    done = cli(host, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def agents(lab_factory: LabFactory) -> Iterator[tuple[NamespaceAgent, NamespaceAgent]]:
    lab = lab_factory(["a", "b"])
    a = NamespaceAgent(lab.host("a"), vrrp_config("a", priority=150, vip=f"{VIP}/24"))
    b = NamespaceAgent(lab.host("b"), vrrp_config("b", priority=100, vip=f"{VIP}/24"))
    try:
        a.start(), b.start()
        a.wait_log("Entering MASTER STATE", timeout=15)
        b.wait_log("Entering BACKUP STATE", timeout=15)
        yield a, b
    finally:
        a.close(), b.close()


def test_each_client_reaches_the_agent_of_its_namespace(
        agents: tuple[NamespaceAgent, NamespaceAgent]) -> None:
    a, b = agents
    for router, state in ((a, "MASTER"), (b, "BACKUP")):
        assert router.paths.control_socket.is_socket()
        answer = status(router.host)
        assert answer["agent"]["namespace"] == router.host.netns
        assert answer["agent"]["pid"] == router.proc.pid
        assert answer["vrrp"]["instances"][0]["state"] == state
        assert state in cli(router.host, "status").stdout

    # set in b changes b, and is kept in b's own maintenance file
    done = cli(b.host, "set", "VI_51", "--priority", "120")
    assert done.returncode == 0 and "VI_51: BACKUP, priority 120" in done.stdout, done.stderr
    assert status(b.host)["vrrp"]["instances"][0]["effective_priority"] == 120
    assert status(a.host)["vrrp"]["instances"][0]["effective_priority"] == 150
    kept = json.loads(b.paths.maintenance_file.read_text())
    assert kept["children"] == {"vrrp": {"VI_51": {"priority": 120, "force_backup": False}}}
    assert not a.paths.maintenance_file.exists()
    assert cli(b.host, "set", "VI_51", "--priority", "none").returncode == 0

    # reload in a reloads a only
    since = time.time()
    done = cli(a.host, "reload")
    assert done.returncode == 0 and done.stdout.strip() == "reloaded", done.stderr
    a.wait_log("Reload finished", since=since)
    assert not b.times("Reload finished", since=since)

    # a client in the host's own namespace reaches neither
    mine = subprocess.run([sys.executable, "-m", "keepalived_py.cli", "status", "--json"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    if mine.returncode == 0:        # an agent of the host's own may run here
        assert json.loads(mine.stdout)["agent"]["pid"] not in (a.proc.pid, b.proc.pid)
    else:
        assert "no socket at /run/keepalived-py/control.sock" in mine.stderr


def test_vrrp_facts_in_a_namespace_reads_that_namespace_agent(
        agents: tuple[NamespaceAgent, NamespaceAgent], tmp_path: Path) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    if not ansible.exists():
        pytest.fail(f"{ansible} is missing: pip install -e '.[test]'")
    collections = tmp_path / "ansible_collections" / "keepalived_py"
    collections.mkdir(parents=True)
    (collections / "ha").symlink_to(REPO)
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path),
           "ANSIBLE_STDOUT_CALLBACK": "minimal", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path)}
    agent = Path(sys.executable).parent / "keepalived-py"
    for router, state in zip(agents, ("MASTER", "BACKUP"), strict=True):
        done = router.host.run(
            [str(ansible), "localhost", "-c", "local", "-i", "localhost,",
             "-m", "keepalived_py.ha.vrrp_facts", "-a", f"agent={agent}",
             "-e", f"ansible_python_interpreter={sys.executable}"],
            check=False, timeout=120, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        # minimal: "localhost | SUCCESS => {...}"
        result = json.loads(done.stdout.split(" => ", 1)[1])
        facts = result["ansible_facts"]["keepalived_py"]
        (instance,) = facts["instances"].values() if isinstance(facts["instances"], dict) \
            else facts["instances"]
        assert instance["state"] == state, facts


def test_a_third_agent_on_live_paths_is_refused_and_harms_nothing(
        agents: tuple[NamespaceAgent, NamespaceAgent]) -> None:
    a, _ = agents
    began = time.time()
    conf = str(a.conf)
    elsewhere = Path(tempfile.mkdtemp(prefix="kpy-third-"))
    try:
        # its own pid files, the live agent's namespace: the control socket is a's
        done = cli(a.host, "-n", "-f", conf, "-p", str(elsewhere / "k.pid"),
                   "-r", str(elsewhere / "v.pid"))
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        # the one line: plain, or a log line when there is no syslog to log to
        assert done.stderr.splitlines()[-1].endswith(
            f"another keepalived-py answers on {a.paths.control_socket}")
        # a's own pid files: "already running", as keepalived says it
        done = cli(a.host, "-n", "-f", conf, "-p", str(a.dir / "agent.pid"),
                   "-r", str(elsewhere / "v.pid"))
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.splitlines()[-1].endswith(
            f"daemon is already running (pid {a.proc.pid} in {a.dir / 'agent.pid'})")
        assert not list(elsewhere.iterdir())
    finally:
        shutil.rmtree(elsewhere)
    time.sleep(1.5)
    assert a.proc.poll() is None and a.has(VIP)
    assert a.paths.control_socket.is_socket()
    assert (a.dir / "agent.pid").read_text().strip() == str(a.proc.pid)
    assert status(a.host)["vrrp"]["instances"][0]["state"] == "MASTER"
    assert not a.times("Entering BACKUP STATE", since=began)


# -- events between children, through the parent ---------------------------------------------

def deliveries(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_restarted_consumer_receives_the_current_state(lab_factory: LabFactory) -> None:
    lab = lab_factory(["a"])
    host = lab.host("a")
    work = Path(tempfile.mkdtemp(prefix="kpy-events-"))
    conf, out, delay = work / "k.conf", work / "deliveries", work / "delay"
    conf.write_text(vrrp_config("a", priority=150, vip=f"{VIP}/24", advert_int="0.2"))
    env = {**os.environ, "KPY_PROBE_OUT": str(out), "KPY_PROBE_DELAY_FILE": str(delay),
           "PYTHONPATH": str(REPO)}
    with (work / "log").open("w") as log:
        house = host.spawn([sys.executable, "-m", "tests.integration.event_house", str(conf),
                            str(work)], stdout=log, stderr=subprocess.STDOUT, env=env,
                           cwd=REPO)
    control = str(work / "control.sock")

    def known(pid: int | None = None) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for d in deliveries(out):
            if pid is None or d["pid"] == pid:
                state = dict(d["items"]) if d["replace"] else {**state, **d["items"]}
        return {k: v["state"] for k, v in state.items() if v is not None}

    try:
        wait_for("the probe to hear VI_51 MASTER", lambda: known() == {"VI_51": "MASTER"},
                 timeout=15)
        first = deliveries(out)[0]
        assert first["replace"], first       # a consumer starts from the whole state
        old = first["pid"]

        # the consumer dies; it is back at once but is not ready for 2 s, and meanwhile
        # VRRP changes state: it must get that state when it is ready
        delay.write_text("2")
        os.kill(old, signal.SIGKILL)
        done = cli(host, "set", "VI_51", "--force-backup", "on", "--control-socket", control)
        assert done.returncode == 0, done.stderr
        changed_at = time.time()
        new = wait_for("a restarted probe", lambda: next(
            (d["pid"] for d in deliveries(out) if d["pid"] != old), None), timeout=15)
        reborn = [d for d in deliveries(out) if d["pid"] == new]
        assert reborn[0]["replace"] and reborn[0]["t"] > changed_at
        assert known(new) == {"VI_51": "BACKUP"}

        # and it follows the changes after that, in order
        delay.unlink()
        cli(host, "set", "VI_51", "--force-backup", "off", "--control-socket", control)
        wait_for("the probe to hear VI_51 MASTER again",
                 lambda: known(new) == {"VI_51": "MASTER"}, timeout=10)
        states = [d["items"]["VI_51"]["state"] for d in deliveries(out)
                  if d["pid"] == new and not d["replace"]]
        assert states[-1] == "MASTER" and "BACKUP" not in states[states.index("MASTER"):]
    finally:
        house.send_signal(signal.SIGTERM)
        try:
            house.wait(20)
        except subprocess.TimeoutExpired:
            house.kill()
            house.wait()
        print((work / "log").read_text()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
