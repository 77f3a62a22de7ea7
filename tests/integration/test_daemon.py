"""The agent as a daemon: supervision, reload, signals, control socket.

Real agents (a parent and its VRRP child) in lab namespaces, with a client
probing the VIPs every 20 ms throughout (``Probe``).  VRRPv2 with 1 s
adverts: its Master_Down_Interval (about 3.4 s) is the budget a restart of
the VRRP child must stay within for the pair not to fail over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.agents import Probe, Router, holders, serve, wait_for
from tests.integration.conftest import LabFactory
from tests.lab import Lab

VIP_A = "198.18.0.100"
VIP_B = "198.18.0.101"
VIP_C = "198.18.0.102"


def instance(name: str, vrid: int, priority: int, vips: list[str], extra: str = "") -> str:
    lines = "\n".join(f"        {v}/24" for v in vips)
    return f"""
vrrp_instance {name} {{
    state BACKUP
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int 1
    {extra}
    virtual_ipaddress {{
{lines}
    }}
}}
"""


def config(router_id: str, *instances: str, globals_: str = "") -> str:
    return (f"global_defs {{\n    router_id {router_id}\n    vrrp_garp_master_delay 1\n"
            f"    {globals_}\n}}\n" + "".join(instances))


class Pair:
    """r1 (the master, priority 150) and r2 (100) running the same instances, and client c."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.client = lab.host("c")
        self.routers: list[Router] = []
        self.probes: list[Probe] = []
        for name in ("r1", "r2"):
            serve(lab.host(name))

    def start(self, make: Callable[[int], list[str]],
              globals_: str = "") -> tuple[Router, Router]:
        """``make(priority)`` gives the instances of a router."""
        r1 = Router(self.lab.host("r1"), config("r1", *make(150), globals_=globals_))
        r2 = Router(self.lab.host("r2"), config("r2", *make(100), globals_=globals_))
        self.routers += [r1, r2]
        r1.start()
        r2.start()
        r1.wait_log("Entering MASTER STATE", timeout=15)
        return r1, r2

    def reload(self, make: Callable[[int], list[str]]) -> float:
        """Write the new configs and SIGHUP both routers at once; the time of the HUP."""
        r1, r2 = self.routers
        r1.conf.write_text(config("r1", *make(150)))
        r2.conf.write_text(config("r2", *make(100)))
        hup = time.time()
        for router in (r1, r2):
            router.proc.send_signal(signal.SIGHUP)
        for router in (r1, r2):
            router.wait_log("Reload finished", since=hup)
        return hup

    def probe(self, vip: str) -> Probe:
        probe = Probe(self.client, vip)
        self.probes.append(probe)
        probe.wait_answered()
        return probe


@pytest.fixture
def pair(lab_factory: LabFactory) -> Iterator[Pair]:
    pair = Pair(lab_factory(["r1", "r2", "c"]))
    yield pair
    for probe in pair.probes:
        probe.stop()
    for router in pair.routers:
        print(f"----- {router.name} log -----\n{router.log_text()}")
        router.close()


def vrrp_pid(router: Router) -> int:
    return int((router.dir / "vrrp.pid").read_text())


def transitions(router: Router, since: float) -> list[float]:
    return router.times("Entering", since)


def settle(seconds: float = 2.5) -> None:
    time.sleep(seconds)


# -- supervision ------------------------------------------------------------------------

def test_kill_9_of_the_vrrp_child_is_respawned_without_a_failover(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    probe = pair.probe(VIP_A)
    old = vrrp_pid(r1)
    killed = time.time()
    mono = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_for("a new VRRP child", lambda: (r1.dir / "vrrp.pid").exists()
             and vrrp_pid(r1) != old, timeout=10)
    r1.wait_log("Entering MASTER STATE", since=killed, timeout=10)
    settle(4.0)         # longer than r2's Master_Down_Interval
    assert r2.times("Entering MASTER STATE", since=killed) == [], \
        "r2 took over: the restart was noticed"
    assert holders(pair.routers, VIP_A) == ["r1"]
    assert probe.who(mono) == {"r1"}
    assert probe.lost(mono) == 0
    print(f"\nFIGURE vrrp child respawn: master again "
          f"{r1.times('Entering MASTER STATE', killed)[0] - killed:.3f} s after kill -9, "
          f"longest client gap {probe.longest_gap(mono) * 1000:.0f} ms")


def test_a_frozen_vrrp_child_is_killed_and_restarted(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    old = vrrp_pid(r1)
    stopped = time.time()
    os.kill(old, signal.SIGSTOP)
    r1.wait_log("sent no heartbeat", since=stopped, timeout=15)
    wait_for("a new VRRP child", lambda: vrrp_pid(r1) != old, timeout=15)
    # Frozen for 5 s, longer than r2's down interval: r2 took over meanwhile,
    # and r1's new child (higher priority, preempting) takes the VIP back.
    r1.wait_log("Entering MASTER STATE", since=stopped + 5, timeout=15)
    wait_for("r1 alone to hold the VIP", lambda: holders(pair.routers, VIP_A) == ["r1"], 10)
    assert r2.times("Entering BACKUP STATE", stopped)


def test_a_child_that_keeps_dying_is_restarted_with_back_off(pair: Pair) -> None:
    r1, _r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    deaths = []
    for _ in range(3):
        old = vrrp_pid(r1)
        deaths.append(time.time())
        os.kill(old, signal.SIGKILL)
        wait_for("a new VRRP child", lambda old=old: (r1.dir / "vrrp.pid").exists()
                 and vrrp_pid(r1) != old, timeout=20)
    log = r1.log_text()
    # keepalived's calc_restart_delay: at once, then 1 s, then 2 s while it dies young
    assert "Restart of vrrp process delayed 1 seconds" in log
    assert "Restart of vrrp process delayed 2 seconds" in log
    starts = r1.times("Starting Keepalived_vrrp child process")
    assert len(starts) == 4
    assert starts[2] - deaths[1] >= 0.95 and starts[3] - deaths[2] >= 1.95


# -- reload -----------------------------------------------------------------------------

def test_reload_unchanged_instances_keep_state_and_vips(pair: Pair) -> None:
    def make(p: int) -> list[str]:
        return [instance("VI_1", 51, p, [VIP_A]), instance("VI_2", 52, p, [VIP_B])]

    r1, r2 = pair.start(make)
    probe = pair.probe(VIP_A)
    settle(1.0)
    mono = time.monotonic()
    hup = pair.reload(make)
    settle()
    for router in (r1, r2):
        assert transitions(router, hup) == [], f"{router.name} changed state on reload"
        assert "0 added, 0 removed, 0 changed, 2 unchanged" in router.log_text()
    assert probe.lost(mono) == 0 and probe.who(mono) == {"r1"}


def test_reload_applies_a_changed_vip_set_as_a_difference(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A, VIP_B])])
    probe = pair.probe(VIP_A)
    settle(1.0)
    mono = time.monotonic()
    hup = pair.reload(lambda p: [instance("VI_1", 51, p, [VIP_A, VIP_C])])
    wait_for("the new VIP on r1", lambda: r1.has(VIP_C), timeout=5)
    assert not r1.has(VIP_B)
    settle()
    assert holders(pair.routers, VIP_A) == ["r1"] and holders(pair.routers, VIP_C) == ["r1"]
    for router in (r1, r2):
        assert transitions(router, hup) == []
    assert probe.lost(mono) == 0, "a probe to the unchanged VIP was lost"
    assert "removing VIPs 198.18.0.101" in r1.log_text()


def test_reload_removed_added_renamed_and_swapped_instances(pair: Pair) -> None:
    def before(p: int) -> list[str]:
        return [instance("VI_1", 51, p, [VIP_A]), instance("VI_2", 52, p, [VIP_B]),
                instance("VI_3", 53, p, [VIP_C])]

    def after(p: int) -> list[str]:
        # VI_1 and VI_2 swap VRIDs (each VRID now carries the other VIP), VI_3 goes
        # and VI_4 comes.
        return [instance("VI_1", 52, p, [VIP_A]), instance("VI_2", 51, p, [VIP_B]),
                instance("VI_4", 54, p, ["198.18.0.104"])]

    r1, r2 = pair.start(before)
    probe_a, probe_b = pair.probe(VIP_A), pair.probe(VIP_B)
    settle(1.0)
    mono = time.monotonic()
    hup = pair.reload(after)
    wait_for("VI_3's VIP to go", lambda: holders(pair.routers, VIP_C) == [], timeout=5)
    r1.wait_log("(VI_4) Entering MASTER STATE", since=hup, timeout=10)
    settle()
    assert holders(pair.routers, VIP_A) == ["r1"] and holders(pair.routers, VIP_B) == ["r1"]
    assert holders(pair.routers, "198.18.0.104") == ["r1"]
    # the swapped instances kept their state: only VI_4 changed state, on both
    for router in (r1, r2):
        entered = [m for _t, m in router.messages(hup) if "Entering" in m]
        assert entered and all(m.startswith("(VI_4)") for m in entered), entered
    assert probe_a.lost(mono) == 0 and probe_b.lost(mono) == 0
    assert "(VI_3) removed" in r1.log_text()


def test_reload_renamed_instance_keeps_its_state(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    probe = pair.probe(VIP_A)
    mono = time.monotonic()
    hup = pair.reload(lambda p: [instance("web", 51, p, [VIP_A])])
    settle()
    assert "(VI_1) renamed to web" in r1.log_text()
    assert transitions(r1, hup) == [] and transitions(r2, hup) == []
    assert probe.lost(mono) == 0


def test_reload_with_a_bad_config_keeps_the_running_one(pair: Pair, tmp_path: Path) -> None:
    check_log = tmp_path / "reload-check.log"
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])],
                        globals_=f"reload_check_config {check_log}")
    probe = pair.probe(VIP_A)
    mono = time.monotonic()
    good = r1.conf.read_text()
    bad = good.replace("priority 150", "priority 150\n    advert_int banana")
    r1.conf.write_text(bad)
    hup = time.time()
    r1.proc.send_signal(signal.SIGHUP)
    refused = r1.wait_log("Reload refused", since=hup)
    line = next(i for i, text in enumerate(bad.splitlines(), 1) if "banana" in text)
    assert f"{r1.conf}:{line}:" in r1.log_text(), "the error does not name file and line"
    assert f"{r1.conf}:{line}:" in check_log.read_text()
    settle()
    assert transitions(r1, hup) == [] and holders(pair.routers, VIP_A) == ["r1"]
    assert probe.lost(mono) == 0
    # `keepalived-py reload` waits for the outcome and says it
    done = keepalived_py("reload", "--control-socket", str(r1.control))
    assert done.returncode == 1 and f"{r1.conf}:{line}:" in done.stderr, done
    # the agent still answers, and a good config is taken afterwards
    r1.conf.write_text(good.replace(f"{VIP_A}/24", f"{VIP_A}/24\n        {VIP_B}/24"))
    done = keepalived_py("reload", "--control-socket", str(r1.control))
    assert done.returncode == 0, done
    assert r1.times("Reload finished", since=refused)
    assert r1.has(VIP_B), "the reload answered before the new VIP was in place"


# -- signals and their files -----------------------------------------------------------

def test_signals_write_keepalived_files(pair: Pair) -> None:
    r1, _r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    settle(1.5)
    agent = r1.proc.pid
    files = {signal.SIGUSR1: ["keepalived.data", "keepalived_parent.data"],
             signal.SIGUSR2: ["keepalived.stats"],
             signal.SIGRTMIN + 2: ["keepalived.json"]}
    for sig, names in files.items():
        os.kill(agent, sig)
        for name in names:
            wait_for(f"{name} after {sig!r}", lambda n=name: r1.dump_file(n).exists(),
                     timeout=5)
    data = r1.dump_file("keepalived.data").read_text()
    assert " VRRP Instance = VI_1\n" in data and "   State = MASTER\n" in data
    parent = r1.dump_file("keepalived_parent.data").read_text()
    assert "------< Global definitions >------" in parent
    dumped = json.loads(r1.dump_file("keepalived.json").read_text())
    assert dumped[0]["data"]["iname"] == "VI_1" and dumped[0]["data"]["state"] == 2
    stats = r1.dump_file("keepalived.stats").read_text()
    assert "  Became master: 1\n" in stats
    # SIGRTMAX-1: the stats as they are, then cleared
    r1.dump_file("keepalived.stats").unlink()
    os.kill(agent, signal.SIGRTMAX - 1)
    wait_for("keepalived.stats", lambda: r1.dump_file("keepalived.stats").exists(), timeout=5)
    assert "  Became master: 1\n" in r1.dump_file("keepalived.stats").read_text()
    r1.dump_file("keepalived.stats").unlink()
    os.kill(agent, signal.SIGUSR2)
    wait_for("keepalived.stats", lambda: r1.dump_file("keepalived.stats").exists(), timeout=5)
    assert "  Became master: 0\n" in r1.dump_file("keepalived.stats").read_text()


def test_sigterm_releases_vips_and_dont_release_keeps_them(pair: Pair) -> None:
    r1, _r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    r1.stop(signal.SIGTERM)
    assert not r1.has(VIP_A)
    assert not (r1.dir / "agent.pid").exists() and not (r1.dir / "vrrp.pid").exists()
    # -V: the VIP stays in the kernel on stop, as with keepalived -V
    r1.extra_args = ["-V"]
    r1.start()
    r1.wait_log("Entering MASTER STATE", since=time.time() - 1, timeout=15)
    wait_for("r1 to hold the VIP again", lambda: r1.has(VIP_A), timeout=10)
    r1.stop(signal.SIGTERM)
    assert r1.has(VIP_A)


# -- control socket -----------------------------------------------------------------------

def keepalived_py(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "keepalived_py.cli", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_status_over_the_control_socket(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    r2.wait_log("Entering BACKUP STATE")
    done = keepalived_py("status", "--json", "--control-socket", str(r1.control))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    (inst,) = answer["vrrp"]["instances"]
    assert inst["name"] == "VI_1" and inst["state"] == "MASTER"
    assert inst["effective_priority"] == 150 and inst["vrid"] == 51
    assert answer["agent"]["children"][0]["pid"] == vrrp_pid(r1)
    table = keepalived_py("status", "--control-socket", str(r2.control))
    assert table.returncode == 0, table.stderr
    assert "VI_1" in table.stdout and "BACKUP" in table.stdout


def test_the_control_socket_refuses_a_non_root_client(pair: Pair) -> None:
    r1, _r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    assert oct(r1.control.stat().st_mode & 0o777) == "0o600"
    os.chmod(r1.dir, 0o755)         # let nobody reach the socket file itself
    done = keepalived_py("status", "--control-socket", str(r1.control), user="65534")
    assert done.returncode != 0
    assert "permission denied" in done.stderr.lower()
    assert "VI_1" not in done.stdout


_SCRAPE = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


def test_prometheus_metrics_on_the_optional_listener(pair: Pair) -> None:
    r1 = Router(pair.lab.host("r1"), config("r1", instance("VI_1", 51, 150, [VIP_A])))
    r1.extra_args = ["--metrics-listen", "127.0.0.1:9650"]
    pair.routers.append(r1)
    r1.start()
    r1.wait_log("Entering MASTER STATE", timeout=15)
    done = r1.host.run([sys.executable, "-c", _SCRAPE, "http://127.0.0.1:9650/metrics"])
    lines = done.stdout.splitlines()
    assert "keepalived_py_up 1.0" in lines
    assert any(line.startswith("keepalived_py_vrrp_state{")
               and 'instance="VI_1"' in line and 'state="MASTER"' in line
               and line.endswith(" 1.0") for line in lines), done.stdout
    sent = [line for line in lines if line.startswith("keepalived_py_vrrp_adverts_sent_total{")]
    assert sent and float(sent[0].rsplit(" ", 1)[1]) >= 1


def _keys(block: list[str]) -> list[str]:
    """The field names of a dump block: the text before " = ", or for a line without
    one (a VIP, the fds) the line with its numbers and the "set" mark taken out."""
    keys = []
    for line in block:
        key = line.split(" = ", 1)[0] if " = " in line else re.sub(r"[\d.]+", "N", line)
        keys.append(key.removesuffix(" set").rstrip(":").rstrip())
    return keys


def _instance_block(data: str) -> list[str]:
    lines = data.splitlines()
    start = lines.index(" VRRP Instance = VI_1")
    end = next(i for i in range(start + 1, len(lines))
               if not lines[i].startswith("   "))
    return lines[start:end]


def test_dump_files_read_like_keepalived_s_on_the_same_lan(pair: Pair) -> None:
    """keepalived 2.2.7 (master) and our agent (backup: its dump has every line a
    master's has, plus the master's address and priority) run the same instance;
    each is sent keepalived's dump signals, and a parser of keepalived's files must
    find in ours every field it finds in keepalived's, in the same layout."""
    theirs = Router(pair.lab.host("r1"), config("r1", instance("VI_1", 51, 150, [VIP_A])),
                    kind="keepalived")
    ours = Router(pair.lab.host("r2"), config("r2", instance("VI_1", 51, 100, [VIP_A])))
    pair.routers += [ours, theirs]
    theirs.start()
    ours.start()
    wait_for("keepalived to be MASTER", lambda: "Entering MASTER STATE" in theirs.log_text(), 15)
    ours.wait_log("Entering BACKUP STATE", timeout=15)
    settle(1.5)
    for router in (ours, theirs):
        for sig, name in ((signal.SIGUSR1, "keepalived.data"), (signal.SIGUSR2, "keepalived.stats"),
                          (signal.SIGRTMIN + 2, "keepalived.json")):
            router.proc.send_signal(sig)
            wait_for(f"{router.name}'s {name}", lambda r=router, n=name: r.dump_file(n).exists()
                     and r.dump_file(n).stat().st_size > 0, timeout=10)
    def read(router: Router, name: str) -> str:
        return router.dump_file(name).read_text()

    # stats: the same text once the numbers are taken out
    assert re.sub(r"\d+", "N", read(ours, "keepalived.stats")) == \
        re.sub(r"\d+", "N", read(theirs, "keepalived.stats"))
    # JSON: the same keys in the same order, with the same types
    (mine,), (their,) = json.loads(read(ours, "keepalived.json")), \
        json.loads(read(theirs, "keepalived.json"))
    for part in ("data", "stats"):
        assert list(mine[part]) == list(their[part]), part
        for key, value in their[part].items():
            assert type(mine[part][key]) is type(value), (part, key)
    assert (mine["data"]["state"], their["data"]["state"]) == (1, 2)
    # data: every field of keepalived's instance block, in keepalived's order
    our_keys = _keys(_instance_block(read(ours, "keepalived.data")))
    their_keys = _keys(_instance_block(read(theirs, "keepalived.data")))
    missing = [k for k in their_keys if k not in our_keys]
    assert missing == [], f"fields keepalived prints that we do not: {missing}"
    assert [k for k in our_keys if k in their_keys] == their_keys
    assert {k for k in our_keys if k not in their_keys} == {"   Master router",
                                                           "   Master priority"}
    for section in ("------< Global definitions >------", "------< VRRP Topology >------",
                    "------< Interfaces >------"):
        assert section in read(ours, "keepalived.data")


def test_maintenance_moves_the_master_and_outlives_a_restart(pair: Pair) -> None:
    r1, r2 = pair.start(lambda p: [instance("VI_1", 51, p, [VIP_A])])
    socket_ = str(r1.control)

    def set_(*args: str) -> str:
        done = keepalived_py("set", "VI_1", *args, "--control-socket", socket_)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # a priority below the peer's: the peer preempts
    assert "priority 50" in set_("--priority", "50")
    wait_for("r2 to take over", lambda: holders(pair.routers, VIP_A) == ["r2"], timeout=10)
    # it survives a reload and a restart of the VRRP process
    hup = time.time()
    r1.proc.send_signal(signal.SIGHUP)
    r1.wait_log("Reload finished", since=hup)
    old = vrrp_pid(r1)
    os.kill(old, signal.SIGKILL)
    wait_for("a new VRRP child", lambda: (r1.dir / "vrrp.pid").exists()
             and vrrp_pid(r1) != old, timeout=10)
    settle(4.5)
    assert holders(pair.routers, VIP_A) == ["r2"]
    answer = json.loads(keepalived_py("status", "--json", "--control-socket", socket_).stdout)
    (inst,) = answer["vrrp"]["instances"]
    assert (inst["priority_override"], inst["effective_priority"], inst["state"]) == \
        (50, 50, "BACKUP")
    # back to the configured priority: r1 preempts again
    set_("--priority", "none")
    wait_for("r1 to take back", lambda: holders(pair.routers, VIP_A) == ["r1"], timeout=10)
    # forced BACKUP: r1 hands over at once (priority 0: r2 within its skew time)
    forced = time.time()
    assert "forced BACKUP" in set_("--force-backup", "on")
    wait_for("r2 to take over", lambda: holders(pair.routers, VIP_A) == ["r2"], timeout=5)
    taken = r2.wait_log("Entering MASTER STATE", since=forced)
    assert taken - forced < 1.0
    settle(4.5)
    assert holders(pair.routers, VIP_A) == ["r2"]
    # kept across a stop and a start of the whole agent (as across a reboot)
    kept = json.loads((r1.dir / "maintenance.json").read_text())["children"]["vrrp"]
    assert kept == {"VI_1": {"priority": None, "force_backup": True}}
    r1.stop()
    restarted = time.time()
    r1.start()
    r1.wait_log("maintenance kept from before", since=restarted)
    wait_for("r1's control socket", r1.control.exists, timeout=10)
    settle(4.5)
    assert holders(pair.routers, VIP_A) == ["r2"]
    assert not [m for _, m in r1.messages(restarted) if "Entering MASTER STATE" in m]
    set_("--force-backup", "off")
    wait_for("r1 to take back", lambda: holders(pair.routers, VIP_A) == ["r1"], timeout=10)
    # nothing left to keep
    assert json.loads((r1.dir / "maintenance.json").read_text())["children"] == {}
    bad = keepalived_py("set", "VI_9", "--priority", "10", "--control-socket", socket_)
    assert bad.returncode == 1 and "VI_9" in bad.stderr
