"""The collection driven by a real ``ansible-playbook`` against systemd containers.

Debian containers (tests/integration/containers.py) boot in lab namespaces; the
controller is this machine: ``ansible-playbook`` with the collection installed
from its tarball, reaching the containers over ssh through a ProxyCommand that
connects from inside the lab (tests/integration/netns_connect.py).  The role
builds the agent's wheels on the controller and pushes them, as for targets that
reach no package index.  A client in another lab namespace sends a probe to the
VIP every 20 ms; each lab host answers with its name, so the client sees who
holds the VIP, and every gap.

- two hosts: a bad topology fails before any host is touched; the rollout gives
  one MASTER (by vrrp_facts and by the kernel's addresses); a second run changes
  nothing; a VIP added is applied by reload, with no failover and no probe lost
  on the VIP that was there; the rolling upgrade to a new version hands over and
  back while the client probes, and the longest gap is printed.
- three hosts: the rollout, a second run, and the rolling upgrade, backups first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collection.galaxy import build, copy_tree, install, tool
from tests.conftest import REPO, tier_missing
from tests.integration.agents import Probe, serve
from tests.integration.conftest import LabFactory, report
from tests.integration.containers import Container, Image, Unavailable, build_wheels
from tests.lab import Lab

pytestmark = pytest.mark.root

TIER = "ansible tier"
RELAY = Path(__file__).resolve().parent / "netns_connect.py"
VIP_A = "198.18.0.100"
VIP_B = "198.18.0.101"
PRIORITIES = (150, 100, 50)
PLAYBOOK_TIMEOUT = 900
# containers' ssh, as the Ansible controller's, to the lab only
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
# the files the role writes: none may exist after a run that failed its checks
ROLE_FILES = ("/etc/keepalived/keepalived.conf", "/opt/keepalived-py",
              "/etc/systemd/system/keepalived-py.service", "/var/cache/keepalived-py",
              "/etc/default/keepalived-py")


def instance(priority: int, vips: list[str], vrid: int = 51) -> dict[str, Any]:
    return {"name": "VI_1", "state": "MASTER" if priority == max(PRIORITIES) else "BACKUP",
            "interface": "eth0", "virtual_router_id": vrid, "priority": priority,
            "advert_int": 1, "authentication": {"auth_type": "PASS", "auth_pass": "s3cret"},
            "virtual_ipaddress": [f"{vip}/24" for vip in vips]}


class AnsibleLab:
    """Containers n1..nN on a lab, a client ``c``, and the controller's files."""

    def __init__(self, lab: Lab, nodes: list[Container], work: Path, collections: Path,
                 image: Image) -> None:
        self.lab, self.nodes, self.work = lab, nodes, work
        self.collections, self.image = collections, image
        self.inventory = work / "inventory.yml"
        self.cache = work / "controller-cache"
        self.probes: list[Probe] = []

    def write_inventory(self, instances: dict[str, list[dict[str, Any]]],
                        **extra: Any) -> None:
        proxy = f"ip netns exec {self.lab.hosts['c'].netns} {sys.executable} {RELAY}"
        hosts = {node.name: {"ansible_host": str(node.host.ip4),
                             "keepalived_py_instances": instances[node.name]}
                 for node in self.nodes}
        group_vars = {"ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3",
                      "ansible_ssh_private_key_file": str(self.image.key),
                      "ansible_ssh_common_args": f"{SSH_ARGS} -o ProxyCommand='{proxy} %h %p'",
                      "keepalived_py_controller_cache": str(self.cache), **extra}
        self.inventory.write_text(json.dumps(
            {"keepalived": {"hosts": hosts, "vars": group_vars}}, indent=2))

    def playbook(self, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """``ansible-playbook keepalived_py.ha.NAME``, as a user runs the collection's."""
        env = {"ANSIBLE_COLLECTIONS_PATH": str(self.collections), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOST_KEY_CHECKING": "False",
               "ANSIBLE_LOCAL_TEMP": str(self.work / "tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "0"}
        started = time.monotonic()
        done = subprocess.run([tool("ansible-playbook", TIER), "-i", str(self.inventory),
                               f"keepalived_py.ha.{name}", *extra], cwd=self.work,
                              env={**_clean_env(), **env}, capture_output=True, text=True,
                              timeout=PLAYBOOK_TIMEOUT)
        print(f"$ ansible-playbook keepalived_py.ha.{name} {' '.join(extra)} -> exit "
              f"{done.returncode} in {time.monotonic() - started:.1f} s\n{done.stdout}"
              f"{done.stderr}")
        return done

    def holders(self, vip: str) -> list[str]:
        """The containers whose kernel holds ``vip``."""
        return [n.name for n in self.nodes
                if any(a.split("/")[0] == vip for a in n.host.addresses())]

    def probe(self, vip: str) -> Probe:
        probe = Probe(self.lab.hosts["c"], vip)
        self.probes.append(probe)
        probe.wait_answered(timeout=15)
        return probe

    def agent(self, node: Container, *argv: str) -> subprocess.CompletedProcess[str]:
        return node.run(["/opt/keepalived-py/bin/keepalived-py", *argv], check=False)

    def states(self) -> dict[str, str]:
        """VI_1's state on each container, from ``keepalived-py status --json``."""
        found = {}
        for node in self.nodes:
            answer = json.loads(self.agent(node, "status", "--json").stdout)
            (inst,) = answer["vrrp"]["instances"]
            found[node.name] = inst["state"]
        return found

    def journal(self, node: Container) -> str:
        return node.run(["journalctl", "-u", "keepalived-py", "-o", "cat", "--no-pager"],
                        check=False).stdout

    def transitions(self) -> dict[str, int]:
        """How many times each container's VI_1 changed state (the agent's journal)."""
        return {n.name: self.journal(n).count("Entering ") for n in self.nodes}

    def masterships(self) -> dict[str, int]:
        """How many times each container's VI_1 became MASTER (the agent's journal)."""
        return {n.name: self.journal(n).count("Entering MASTER STATE") for n in self.nodes}


def _clean_env() -> dict[str, str]:
    # pytest's and CI's settings that would change what ansible-playbook does
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ANSIBLE_", "PYTEST_")) and k != "NOTIFY_SOCKET"}


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host: {"n1": {"ok": 12, "changed": 0, ...}}."""
    found = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return found


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path with keepalived_py.ha installed from its tarball."""
    tool("ansible-playbook", TIER)
    work = tmp_path_factory.mktemp("ansible-collection")
    return install(build(copy_tree(work / "tree"), work / "dist"), work / "installed")


@pytest.fixture(scope="module")
def new_version_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheels of the working tree as version 0.1.1, for the rolling upgrade."""
    work = tmp_path_factory.mktemp("new-version")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "bench",
        "tests", "plugins", "roles", "playbooks"))
    for path, old, new in (("pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"'),
                           ("agent/__init__.py", '__version__ = "0.1.0"',
                            '__version__ = "0.1.1"')):
        text = (src / path).read_text()
        assert old in text, f"{path}: the test expects the version 0.1.0"
        (src / path).write_text(text.replace(old, new))
    try:
        build_wheels(work / "wheels", source=src)
    except Unavailable as err:
        pytest.fail(f"cannot build the new version's wheels: {err}")
    return work / "wheels"


def _ansible_lab(request: pytest.FixtureRequest, image: Image, lab_factory: LabFactory,
                 collections: Path, count: int, tmp_path: Path) -> Iterator[AnsibleLab]:
    names = [f"n{i + 1}" for i in range(count)]
    lab = lab_factory([*names, "c"])
    nodes: list[Container] = []
    ansible_lab = AnsibleLab(lab, nodes, tmp_path, collections, image)
    (tmp_path / "tmp").mkdir()
    try:
        for name in names:
            node = Container(image, lab.hosts[name])
            nodes.append(node)
            try:
                took = node.boot()
            except Unavailable as err:
                tier_missing(f"{TIER}: systemd-nspawn cannot run here: {err}")
            report(request.config, f"{name}: booted in {took:.1f} s", TIER)
            # every lab host answers the client's probes with its name
            serve(lab.hosts[name])
        yield ansible_lab
    finally:
        for probe in ansible_lab.probes:
            probe.stop()
        for node in nodes:
            journal = node.run(["journalctl", "-u", "keepalived-py", "-o", "short-precise",
                                "--no-pager"], check=False).stdout if node.pid1 else ""
            print(f"----- {node.name}: keepalived-py's journal -----\n{journal}")
            node.close()


@pytest.fixture
def pair(request: pytest.FixtureRequest, image: Image, lab_factory: LabFactory,
         collections: Path, tmp_path: Path) -> Iterator[AnsibleLab]:
    yield from _ansible_lab(request, image, lab_factory, collections, 2, tmp_path)


@pytest.fixture
def trio(request: pytest.FixtureRequest, image: Image, lab_factory: LabFactory,
         collections: Path, tmp_path: Path) -> Iterator[AnsibleLab]:
    yield from _ansible_lab(request, image, lab_factory, collections, 3, tmp_path)


def roll_out(alab: AnsibleLab, vips: list[str]) -> None:
    """The first rollout: it succeeds and gives one MASTER, n1, by facts and by kernel."""
    alab.write_inventory({n.name: [instance(p, vips)]
                          for n, p in zip(alab.nodes, PRIORITIES, strict=False)})
    done = alab.playbook("rollout")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # the playbook's own check, from vrrp_facts on every host
    assert "VI_1: MASTER on n1" in done.stdout
    assert alab.holders(VIP_A) == ["n1"]
    assert alab.states() == {n.name: "MASTER" if n.name == "n1" else "BACKUP"
                             for n in alab.nodes}


def second_run_changes_nothing(alab: AnsibleLab) -> None:
    done = alab.playbook("rollout")
    assert done.returncode == 0, done.stdout[-6000:]
    counts = recap(done.stdout)
    assert {h: c["changed"] for h, c in counts.items()} == {n.name: 0 for n in alab.nodes}, \
        done.stdout[-4000:]


def rolling_upgrade(request: pytest.FixtureRequest, alab: AnsibleLab, wheels: Path) -> None:
    """0.1.0 to 0.1.1 host by host while the client probes the VIP; the longest gap."""
    probe = alab.probe(VIP_A)
    before = alab.masterships()
    started = time.monotonic()
    done = alab.playbook("rolling_upgrade", "-e", f"keepalived_py_wheels_dir={wheels}")
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-3000:]
    time.sleep(1.0)
    gap, lost = probe.longest_gap(started), probe.lost(started)
    report(request.config, f"rolling upgrade of {len(alab.nodes)} hosts: longest gap "
                           f"{gap * 1000:.0f} ms, {lost} probes lost, answered by "
                           f"{sorted(probe.who(started))}", TIER)
    # backups first: the MASTER, n1, is the last host upgraded
    upgraded = re.findall(r"^included: keepalived_py\.ha\.keepalived_py for (n\d+)$",
                          done.stdout, re.M)
    assert sorted(upgraded) == [n.name for n in alab.nodes] and upgraded[-1] == "n1", upgraded
    for node in alab.nodes:
        assert alab.agent(node, "--version").stdout.strip() == "keepalived-py 0.1.1"
    # handed over and back: n1 is MASTER again, once more the only holder
    assert alab.holders(VIP_A) == ["n1"]
    assert alab.states() == {n.name: "MASTER" if n.name == "n1" else "BACKUP"
                             for n in alab.nodes}
    # one planned hand-over and one hand-back: a single peer became MASTER, once
    after = alab.masterships()
    became = {name: after[name] - before[name] for name in after}
    assert became["n1"] == 1 and sum(became.values()) == 2, became
    assert probe.who(started) <= {n.name for n in alab.nodes}
    assert gap < 3.0, f"longest gap {gap:.2f} s"


def test_two_hosts_check_roll_out_reload_and_upgrade(
        request: pytest.FixtureRequest, pair: AnsibleLab, new_version_wheels: Path) -> None:
    # a tie for the highest priority: no host may be touched
    pair.write_inventory({"n1": [instance(150, [VIP_A])],
                          "n2": [{**instance(150, [VIP_A]), "state": "BACKUP"}]})
    done = pair.playbook("rollout")
    assert done.returncode != 0
    assert "priority 150 ties" in done.stdout, done.stdout[-4000:]
    assert "n1: keepalived_py_instances[0].priority" in done.stdout
    assert "n2: keepalived_py_instances[0].priority" in done.stdout
    for node in pair.nodes:
        present = [f for f in ROLE_FILES if node.run(["test", "-e", f], check=False).returncode
                   == 0]
        assert present == [], f"{node.name} was touched: {present}"

    roll_out(pair, [VIP_A])
    second_run_changes_nothing(pair)

    # a VIP added: applied by reload, no failover, nothing lost on the VIP there before
    probe = pair.probe(VIP_A)
    before = pair.transitions()
    pids = {n.name: n.run(["systemctl", "show", "-P", "MainPID", "keepalived-py"]).stdout
            for n in pair.nodes}
    started = time.monotonic()
    pair.write_inventory({n.name: [instance(p, [VIP_A, VIP_B])]
                          for n, p in zip(pair.nodes, PRIORITIES, strict=False)})
    done = pair.playbook("rollout")
    assert done.returncode == 0, done.stdout[-6000:]
    assert "RUNNING HANDLER [keepalived_py.ha.keepalived_py : Reload keepalived-py]" \
        in done.stdout
    assert pair.holders(VIP_B) == ["n1"] and pair.holders(VIP_A) == ["n1"]
    time.sleep(1.0)
    assert probe.lost(started) == 0 and probe.who(started) == {"n1"}
    assert pair.transitions() == before
    assert {n.name: n.run(["systemctl", "show", "-P", "MainPID", "keepalived-py"]).stdout
            for n in pair.nodes} == pids
    report(request.config, f"VIP added by reload: 0 transitions, 0 of "
                           f"{len(probe.since(started))} probes lost, longest gap "
                           f"{probe.longest_gap(started) * 1000:.0f} ms", TIER)
    probe.stop()

    rolling_upgrade(request, pair, new_version_wheels)


def test_three_hosts_roll_out_and_upgrade_backups_first(
        request: pytest.FixtureRequest, trio: AnsibleLab, new_version_wheels: Path) -> None:
    roll_out(trio, [VIP_A])
    second_run_changes_nothing(trio)
    rolling_upgrade(request, trio, new_version_wheels)
