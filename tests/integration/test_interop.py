"""Our agent and keepalived 2.2.7 as the two routers of one VRRP segment.

Three hosts on one bridge: ``a`` runs our agent, ``k`` runs keepalived, ``c`` is a client
that sends real UDP traffic to the VIP (each router host runs a responder that answers with
its host name, so the answer says who holds the VIP).  For every protocol flavour and for
both arrangements (our agent the higher priority, or keepalived) the test walks one story:

1. the higher one starts and becomes master; the lower one starts and stays backup (it
   hears and accepts the master's adverts for longer than its master-down interval);
2. both agree: exactly one holds the VIP, both logs say so, the client reaches the master;
3. kill -9 of the master: the backup takes over within its master-down interval and the
   client follows (its neighbour cache entry for the VIP is the new master's MAC), although
   the dead master's host still holds the VIP, as after any crash;
4. the higher one comes back and preempts;
5. SIGTERM of the master: its priority-0 advert hands over within the backup's skew time;
6. it comes back and preempts again.

The mismatch case shows that different PASS passwords keep the two from agreeing.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest

from tests.conftest import tier_missing
from tests.integration.agents import KEEPALIVED, Router, serve, vrrp_config, wait_for, who_answers
from tests.integration.conftest import LabFactory
from tests.lab import Host

HIGH, LOW = 150, 100
VRID = 51
INSTANCE = f"VI_{VRID}"
STATE_LINE = re.compile(rf"\({INSTANCE}\) Entering (\w+) STATE")
# Slack for process start-up, netlink polling and a busy machine.
START_SLACK = 3.0
POLL_SLACK = 0.35


@dataclass(frozen=True)
class Flavour:
    version: int
    advert_int: float
    auth: str = ""                  # "", "PASS" or "AH"
    vip: str = "198.18.0.100/24"
    unicast: bool = False

    @property
    def address(self) -> str:
        return self.vip.split("/")[0]

    def skew(self, priority: int) -> float:
        return (256 - priority) / 256 * self.advert_int

    def master_down(self, priority: int) -> float:
        return 3 * self.advert_int + self.skew(priority)

    def config(self, host: Host, peer: Host, priority: int, password: str = "interop") -> str:
        extra = ""
        if self.auth:
            extra += (f"authentication {{\n        auth_type {self.auth}\n"
                      f"        auth_pass {password}\n    }}\n")
        if self.unicast:
            extra += f"unicast_src_ip {host.ip4}\n    unicast_peer {{\n        {peer.ip4}\n    }}\n"
        interval = f"{self.advert_int:g}"
        return vrrp_config(host.name, vrid=VRID, priority=priority, vip=self.vip,
                           advert_int=interval, version=self.version, extra=extra)


FLAVOURS = {
    "v2-noauth": Flavour(2, 1.0),
    "v2-pass": Flavour(2, 1.0, auth="PASS"),
    "v2-ah": Flavour(2, 1.0, auth="AH"),
    "v3-ipv4": Flavour(3, 0.2),
    "v3-ipv6": Flavour(3, 0.2, vip="2001:db8::100/64"),
    "v3-unicast": Flavour(3, 0.2, unicast=True),
}


@pytest.fixture(scope="module")
def keepalived() -> str:
    if not Path(KEEPALIVED).is_file():
        tier_missing(f"interop tier: keepalived 2.2.7 not installed at {KEEPALIVED} "
                     "(apt-get install keepalived)")
    done = subprocess.run([KEEPALIVED, "--version"], capture_output=True, text=True)
    if "v2.2.7 " not in done.stdout + done.stderr:
        tier_missing(f"interop tier: keepalived 2.2.7 not installed ({KEEPALIVED} is "
                     f"{(done.stdout + done.stderr).strip().splitlines()[:1]})")
    return KEEPALIVED


# -- reading the routers --------------------------------------------------------------


def states(router: Router, since: int = 0) -> list[str]:
    """Every state the router's log says the instance entered, in order.

    ``since``: a length of the log (see ``start``), to look only at what came after.
    """
    return STATE_LINE.findall(router.log_text()[since:])


def state(router: Router, since: int = 0) -> str | None:
    seen = states(router, since)
    return seen[-1] if seen else None


def holds(router: Router, vip: str) -> bool:
    """Whether the router's host has ``vip`` on eth0.

    Asked through ``ip`` rather than ``Router.has``: polled every few milliseconds, pyroute2's
    netns sockets fork this process each time, and once timed out on a loaded machine.
    """
    done = subprocess.run(["ip", "-j", "-n", router.host.netns, "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, check=True)
    wanted = ip_address(vip)
    return any(ip_address(a["local"]) == wanted for link in json.loads(done.stdout)
               for a in link.get("addr_info", []))


def is_master(router: Router, vip: str, since: int = 0) -> bool:
    return state(router, since) == "MASTER" and holds(router, vip)


def start(router: Router) -> int:
    """Start (or restart) the router; the length of its log so far, for ``since``."""
    since = len(router.log_text()) if router.log.exists() else 0
    router.start()
    return since


def signal_and_wait(router: Router, sig: int, until: Callable[[], object], what: str,
                    timeout: float) -> float:
    """Signal the router, wait for ``until()``; the seconds it took. The router is reaped."""
    assert router.proc is not None
    began = time.monotonic()
    if sig == signal.SIGKILL:
        router.stop(signal.SIGKILL)
    else:
        router.proc.send_signal(sig)
    wait_for(what, until, timeout=timeout, every=0.01)
    took = time.monotonic() - began
    if router.proc is not None:
        router.proc.wait(10)
        router.proc = None
    if sig == signal.SIGKILL:
        # keepalived's VRRP child, orphaned, is reaped late by this machine's init; as a
        # zombie it would make a restarted keepalived say "daemon is already running".
        for pid_file in router.dir.glob("*.pid"):
            pid_file.unlink()
    return took


def show_logs(*routers: Router) -> None:
    """Print the routers' logs: pytest shows them when the test fails."""
    for router in routers:
        if router.log.exists():
            print(f"----- {router.kind} on {router.host.name}\n{router.log_text()}")


def client_follows(client: Host, flavour: Flavour, master: Router) -> None:
    """The client's traffic reaches ``master``, through a neighbour entry with its MAC."""
    vip = flavour.address
    wait_for(f"the client to be answered by {master.host.name}",
             lambda: who_answers(client, vip, timeout=0.5) == master.host.name, timeout=3)
    assert client.neighbour_mac(vip) == master.host.mac


def agree(master: Router, backup: Router, flavour: Flavour) -> None:
    """Exactly one holds the VIP, and both logs say which."""
    vip = flavour.address
    assert holds(master, vip) and not holds(backup, vip)
    assert state(master) == "MASTER", master.log_text()
    assert state(backup) == "BACKUP", backup.log_text()


# -- the story ------------------------------------------------------------------------


@pytest.fixture
def routers(lab_factory: LabFactory, keepalived: str) -> Iterator[tuple[Host, Host, Host]]:
    lab = lab_factory(["a", "k", "c"])
    yield lab.host("a"), lab.host("k"), lab.host("c")


@pytest.mark.parametrize("high_kind", ["agent", "keepalived"])
@pytest.mark.parametrize("name", list(FLAVOURS))
def test_agent_and_keepalived_share_a_segment(routers: tuple[Host, Host, Host], name: str,
                                              high_kind: str) -> None:
    flavour = FLAVOURS[name]
    a, k, client = routers
    prio = {"agent": HIGH, "keepalived": LOW} if high_kind == "agent" else {
        "agent": LOW, "keepalived": HIGH}
    agent = Router(a, flavour.config(a, k, prio["agent"]), "agent")
    ka = Router(k, flavour.config(k, a, prio["keepalived"]), "keepalived")
    high, low = (agent, ka) if high_kind == "agent" else (ka, agent)
    vip = flavour.address
    figures: dict[str, float] = {}
    try:
        serve(a)
        serve(k)

        # 1. the higher one becomes master, then the lower one joins as backup and stays
        high.start()
        wait_for("the first master", lambda: is_master(high, vip),
                 timeout=flavour.master_down(HIGH) + START_SLACK)
        low.start()
        wait_for("the backup to start", lambda: state(low) == "BACKUP", timeout=START_SLACK)
        time.sleep(flavour.master_down(LOW) + flavour.advert_int)
        assert "MASTER" not in states(low), low.log_text()

        # 2. they agree, and the client reaches the master
        agree(high, low, flavour)
        client_follows(client, flavour, high)

        def comes_back_and_preempts() -> None:
            since = start(high)
            wait_for("preemption", lambda: is_master(high, vip, since) and not holds(low, vip)
                     and state(low) == "BACKUP",
                     timeout=flavour.master_down(HIGH) + START_SLACK)
            assert states(high, since) == ["BACKUP", "MASTER"]
            agree(high, low, flavour)
            client_follows(client, flavour, high)

        # 3. the master dies: the backup takes over and the client follows
        took = signal_and_wait(high, signal.SIGKILL, lambda: is_master(low, vip),
                               "takeover after kill -9",
                               timeout=flavour.master_down(LOW) + 2)
        figures["kill -9 takeover"] = took
        assert 2 * flavour.advert_int + flavour.skew(LOW) - 0.05 < took, took
        assert took < flavour.master_down(LOW) + max(POLL_SLACK, flavour.advert_int / 2), took
        client_follows(client, flavour, low)

        # 4. the higher one comes back and preempts
        comes_back_and_preempts()

        # 5. a graceful stop hands over within the backup's skew time
        took = signal_and_wait(high, signal.SIGTERM, lambda: is_master(low, vip),
                               "takeover after SIGTERM", timeout=flavour.master_down(LOW))
        figures["SIGTERM takeover"] = took
        # well inside the master-down interval: the priority-0 advert was heard
        assert took < flavour.skew(LOW) + max(POLL_SLACK, 1.5 * flavour.advert_int), took
        assert not holds(high, vip)
        client_follows(client, flavour, low)

        # 6. and preempts again when it returns
        comes_back_and_preempts()

        for router in (high, low):
            router.stop(signal.SIGTERM)
            assert not holds(router, vip)
        print(f"{name} {high_kind} high: " +
              ", ".join(f"{what} {seconds:.3f} s" for what, seconds in figures.items()))
    except BaseException:
        show_logs(agent, ka)
        raise
    finally:
        agent.close()
        ka.close()


def test_different_passwords_do_not_agree(routers: tuple[Host, Host, Host],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side drops the other's adverts as an authentication failure: both are master.

    keepalived 2.2.7 as master restarts its advert timer on every packet it reads, even
    one it drops (vrrp_dispatcher_read calls vrrp_init_instance_sands after
    vrrp_state_master_rx), so while our adverts come just before its own are due it sends
    none.  Its first advert as master and its priority-0 advert at stop always go out:
    those are the two our agent is sure to reject.
    """
    flavour = FLAVOURS["v2-pass"]
    a, k, _client = routers
    agent = Router(a, flavour.config(a, k, HIGH, password="agentpw"), "agent")
    ka = Router(k, flavour.config(k, a, LOW, password="kapw"), "keepalived")
    # keepalived writes its statistics (SIGUSR2) to $TMPDIR/keepalived.stats
    monkeypatch.setenv("TMPDIR", str(ka.dir))
    bad = f"({INSTANCE}) received an invalid passwd!"
    try:
        agent.start()
        ka.start()
        for router in (agent, ka):
            wait_for(f"{router.kind} to be master", lambda r=router: is_master(r, flavour.address),
                     timeout=flavour.master_down(LOW) + START_SLACK)
        wait_for("auth failures on both sides", lambda: agent.log_text().count(bad) >= 1
                 and ka.log_text().count(bad) >= 2, timeout=5)
        assert states(agent) == ["BACKUP", "MASTER"] and states(ka) == ["BACKUP", "MASTER"]
        assert holds(agent, flavour.address) and holds(ka, flavour.address)

        stats = ka.dir / "keepalived.stats"
        assert ka.proc is not None
        ka.proc.send_signal(signal.SIGUSR2)
        text = wait_for("keepalived's statistics", lambda: stats.is_file()
                        and "Priority Zero" in stats.read_text() and stats.read_text(), timeout=5)
        failures = re.search(r"Authentication Errors:\n.*\n.*\n\s+Failure: (\d+)", str(text))
        assert failures and int(failures.group(1)) >= 2, text

        # keepalived's priority-0 advert carries the wrong password too: ours stays master
        seen = agent.log_text().count(bad)
        ka.stop(signal.SIGTERM)
        wait_for("the priority-0 advert rejected", lambda: agent.log_text().count(bad) > seen,
                 timeout=5)
        assert states(agent) == ["BACKUP", "MASTER"] and holds(agent, flavour.address)
    except BaseException:
        show_logs(agent, ka)
        raise
    finally:
        agent.close()
        ka.close()
