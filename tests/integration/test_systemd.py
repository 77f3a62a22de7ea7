"""The shipped unit (packaging/systemd/keepalived-py.service) under a real systemd.

Each test boots a Debian container (tests/integration/containers.py) in a lab
namespace, installs the agent from wheels into /opt/keepalived-py as a user
would, installs the unit unchanged and drives it with systemctl: a Type=notify
start only reaches ``active`` on the agent's READY=1, a reload must keep the
same process, a stop must leave nothing, and the watchdog must be fed while
the agent works and fire when it hangs.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, tier_missing
from tests.integration import containers
from tests.integration.agents import vrrp_config
from tests.integration.conftest import LabFactory, report
from tests.integration.containers import Container, Image, Unavailable
from tests.lab import Host

pytestmark = pytest.mark.root

log = logging.getLogger(__name__)

UNIT = REPO / "packaging/systemd/keepalived-py.service"
SERVICE = "keepalived-py"
DROP_IN = f"/etc/systemd/system/{SERVICE}.service.d"
VIP = "198.18.0.100/24"
CONFIG = vrrp_config("node_a", priority=255, state="MASTER", vip=VIP)
PROPS = ("ActiveState", "SubState", "Result", "MainPID", "NRestarts", "StatusText",
         "WatchdogUSec")
# bounding set of CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status shows it
NET_CAPS_ONLY = f"{(1 << 12) | (1 << 13):016x}"
EXPOSURE_AT_MOST = 3.0


@pytest.fixture(scope="session")
def wheels(request: pytest.FixtureRequest, image: Image) -> Iterator[Path]:
    dest = Path(tempfile.mkdtemp(prefix="kpy-wheels-"))
    try:
        started = time.monotonic()
        try:
            found = containers.build_wheels(dest)
        except Unavailable as err:
            tier_missing(f"systemd tier: cannot gather the wheels: {err}")
        report(request.config, f"wheels {', '.join(w.name for w in found)} "
                                f"in {time.monotonic() - started:.1f} s")
        yield dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)


BootNode = Callable[..., Container]


@pytest.fixture
def boot_node(request: pytest.FixtureRequest, image: Image,
              lab_factory: LabFactory) -> Iterator[BootNode]:
    """Boots containers on lab hosts (``boot_node(lab.host("a"))``); all shut down after."""
    booted: list[Container] = []

    def boot(host: Host) -> Container:
        node = Container(image, host)
        booted.append(node)
        try:
            took = node.boot()
        except Unavailable as err:
            tier_missing(f"systemd tier: systemd-nspawn cannot run here: {err}")
        report(request.config, f"{node.name}: booted to is-system-running in {took:.1f} s")
        return node

    try:
        yield boot
    finally:
        for node in booted:
            node.close()


@pytest.fixture
def node(request: pytest.FixtureRequest, boot_node: BootNode, lab_factory: LabFactory,
         wheels: Path) -> Container:
    """A booted container with the agent, its configuration and the unit installed."""
    node = boot_node(lab_factory(["a"]).host("a"))
    took = node.install_agent(wheels)
    report(request.config, f"{node.name}: agent installed in {took:.1f} s")
    node.write(f"/etc/systemd/system/{SERVICE}.service", UNIT.read_text())
    node.write("/etc/keepalived/keepalived.conf", CONFIG)
    node.run(["systemctl", "daemon-reload"])
    return node


# -- looking at the service -------------------------------------------------------------

def show(node: Container) -> dict[str, str]:
    out = node.run(["systemctl", "show", SERVICE, "-p", ",".join(PROPS)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(node: Container) -> list[dict[str, str]]:
    out = node.run(["journalctl", "-u", SERVICE, "-o", "json", "--no-pager"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def journal_text(node: Container) -> str:
    return node.run(["journalctl", "-u", SERVICE, "--no-pager", "-n", "60"],
                    check=False).stdout


def messages(node: Container, by_systemd: bool) -> list[str]:
    """The journal's messages about the unit from systemd, or else from the agent.

    The agent logs under keepalived's names (Keepalived, Keepalived_vrrp), so
    it is told apart as "not systemd".
    """
    return [str(entry.get("MESSAGE", "")) for entry in journal(node)
            if (entry.get("SYSLOG_IDENTIFIER") == "systemd") == by_systemd]


def until(node: Container, what: str, check: Callable[[], object],
          timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; service: {show(node)}"
                        f"\n--- journal:\n{journal_text(node)}")
        time.sleep(0.2)


def start(node: Container) -> dict[str, str]:
    """``systemctl start``: returns when the agent said READY=1 (Type=notify), or fails."""
    done = node.run(["systemctl", "start", SERVICE], check=False, timeout=120)
    props = show(node)
    assert done.returncode == 0 and props["ActiveState"] == "active", \
        f"{done.stderr}service: {props}\n--- journal:\n{journal_text(node)}"
    return props


def vip_on(node: Container) -> bool:
    return VIP in node.host.addresses("eth0")


def agent_processes(node: Container) -> dict[int, str]:
    return {pid: cmd for pid, cmd in node.processes().items() if containers.VENV in cmd}


# -- the tests ----------------------------------------------------------------------------

def test_unit_verifies_and_is_hardened(request: pytest.FixtureRequest, node: Container) -> None:
    # --man=no: the container has no manual pages to check Documentation= against
    verify = node.run(["systemd-analyze", "verify", "--man=no", f"{SERVICE}.service"],
                      check=False)
    assert verify.returncode == 0 and SERVICE not in verify.stderr, verify.stderr
    security = node.run(["systemd-analyze", "security", "--no-pager", SERVICE]).stdout
    found = re.search(rf"exposure level for {SERVICE}\.service: (\d+\.\d+) (\S+)", security)
    assert found, security
    report(request.config, f"systemd-analyze security {SERVICE}: {found[1]} {found[2]}")
    assert float(found[1]) <= EXPOSURE_AT_MOST, security


def agent_spoke_before_started(node: Container) -> bool:
    """Type=notify at work: systemd says "Started" only after the agent's READY=1,
    so after the agent's own start-up messages (a simple service is "Started"
    the moment it is forked, before Python has even run)."""
    for entry in journal(node):
        if entry.get("SYSLOG_IDENTIFIER") != "systemd":
            return True
        if str(entry.get("MESSAGE", "")).startswith("Started "):
            return False
    return False


def test_start_reload_stop(node: Container) -> None:
    props = start(node)
    assert agent_spoke_before_started(node), journal_text(node)
    assert props["SubState"] == "running"
    assert props["NRestarts"] == "0"
    assert props["WatchdogUSec"] == "30s"
    assert "vrrp" in props["StatusText"].lower(), props
    until(node, f"the VIP {VIP} on eth0", lambda: vip_on(node), timeout=15)
    main_pid = props["MainPID"]
    caps = node.run(["grep", "^CapBnd:", f"/proc/{main_pid}/status"]).stdout.split()[1]
    assert caps == NET_CAPS_ONLY, f"bounding set {caps}, wanted CAP_NET_ADMIN CAP_NET_RAW"

    node.run(["systemctl", "reload", SERVICE], timeout=90)
    # systemd 252 ends the reload job as soon as "kill -HUP" returns; the agent's
    # RELOADING=1 (sent before it logs) holds the unit in "reloading" until READY=1
    until(node, "the agent to log its reload", lambda: any(
        "reload" in m.lower() for m in messages(node, by_systemd=False)), timeout=15)
    until(node, "the agent's READY=1 after the reload",
          lambda: show(node)["ActiveState"] == "active")
    after = show(node)
    assert after["SubState"] == "running", after
    assert after["MainPID"] == main_pid, "a reload must not restart the agent"
    assert after["NRestarts"] == "0"
    assert any(m.startswith("Reloaded") for m in messages(node, by_systemd=True)), \
        journal_text(node)
    assert vip_on(node), "the VIP must survive a reload"

    node.run(["systemctl", "stop", SERVICE], timeout=120)
    stopped = show(node)
    assert node.run(["systemctl", "is-active", SERVICE], check=False).stdout.strip() \
        == "inactive", stopped
    assert stopped["Result"] == "success", f"{stopped}\n--- journal:\n{journal_text(node)}"
    assert not vip_on(node), "a stopped agent must release its VIP"
    assert agent_processes(node) == {}, "processes left after the stop"


def test_watchdog_fed_while_working_fires_when_hung(node: Container) -> None:
    node.write(f"{DROP_IN}/watchdog.conf", "[Service]\nWatchdogSec=4s\n")
    node.run(["systemctl", "daemon-reload"])
    props = start(node)
    assert props["WatchdogUSec"] == "4s"
    first = props["MainPID"]

    # two and a half watchdog periods: unfed, systemd would have killed it by now
    end = time.monotonic() + 10.5
    while time.monotonic() < end:
        now = show(node)
        assert (now["ActiveState"], now["NRestarts"], now["MainPID"]) == ("active", "0", first), \
            f"not fed? {now}\n--- journal:\n{journal_text(node)}"
        time.sleep(0.5)
    assert not any("Watchdog timeout" in m for m in messages(node, by_systemd=True))

    def restarted() -> bool:
        now = show(node)
        return (now["ActiveState"], now["NRestarts"]) == ("active", "1") \
            and now["MainPID"] not in ("0", first)

    node.run(["kill", "-STOP", first])
    until(node, "systemd's watchdog to kill and restart the hung agent", restarted, timeout=30)
    assert any("Watchdog timeout" in m for m in messages(node, by_systemd=True)), journal_text(node)
    assert node.run(["kill", "-0", first], check=False).returncode != 0, "the hung agent lives"
    until(node, f"the VIP {VIP} back on eth0", lambda: vip_on(node), timeout=15)


def test_containers_side_by_side_answer_ssh(boot_node: BootNode,
                                           lab_factory: LabFactory) -> None:
    """How the Ansible tests reach their hosts: two containers from the one root, each
    logged into as root over ssh with the image's key, from a third lab host."""
    lab = lab_factory(["a", "b", "ctl"])
    nodes = [boot_node(lab.host("a")), boot_node(lab.host("b"))]
    for node in nodes:
        done = lab.host("ctl").run(node.ssh_argv("hostname"), timeout=30)
        assert done.stdout.strip() == node.name
