"""The checker process on this host's kernel, which has no IPVS: real servers in
network namespaces, real HTTP and TCP checks, state seen through the control socket,
the notify FIFO and the log.  (IPVS itself is the VM tier's: test_ipvs_vm.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agents import FifoReader, Router, wait_for
from tests.lab import Host, Lab

pytestmark = pytest.mark.root

VIP = "198.18.1.10"
BODY = b"<html>keepalived-py real server</html>\n"


def web(host: Host, root: Path, port: int = 8080) -> subprocess.Popen:
    """A real HTTP server (Python's) on ``host``, serving ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    proc = host.spawn([sys.executable, "-m", "http.server", str(port), "--bind", str(host.ip4),
                       "--directory", str(root)], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    wait_for(f"{host.name}'s web server", lambda: host.run(
        ["python3", "-c", f"import socket; socket.create_connection(('{host.ip4}', {port}), 1)"],
        check=False).returncode == 0, timeout=10)
    return proc


def config(lab: Lab, fifo: Path, extra_global: str = "") -> str:
    w1, w2 = lab.host("w1"), lab.host("w2")
    digest = hashlib.md5(BODY).hexdigest()
    return f"""
global_defs {{
    lvs_notify_fifo {fifo}
    {extra_global}
}}
virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {w1.ip4} 8080 {{
        HTTP_GET {{
            url {{
                path /index.html
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server {w2.ip4} 8080 {{
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}
"""


def status(agent: Router) -> dict:
    """The agent's status answer ({} while it does not answer yet)."""
    done = subprocess.run([sys.executable, "-m", "keepalived_py.cli", "status", "--json",
                           "--control-socket", str(agent.control)],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def real_servers(agent: Router) -> dict[str, dict]:
    snap = status(agent).get("checker")
    if not snap:
        return {}
    [vs] = snap["virtual_servers"]
    return {rs["ip"]: rs for rs in vs["real_servers"]}


def checker_pid(agent: Router) -> int | None:
    children = status(agent).get("agent", {}).get("children", [])
    return next((c["pid"] for c in children if c["name"] == "checker"), None)


@pytest.fixture
def lvs_lab(lab_factory) -> Iterator[tuple[Lab, Router, FifoReader, dict]]:
    lab = lab_factory(["dir", "w1", "w2"])
    agent = Router(lab.host("dir"), "")
    fifo = FifoReader(agent.dir / "lvs.fifo")
    roots = {"w1": agent.dir / "w1", "w2": agent.dir / "w2"}
    roots["w1"].mkdir()
    (roots["w1"] / "index.html").write_bytes(BODY)
    servers = {name: web(lab.host(name), roots[name]) for name in ("w1", "w2")}
    agent.conf.write_text(config(lab, agent.dir / "lvs.fifo"))
    agent.start()
    try:
        yield lab, agent, fifo, {"servers": servers, "roots": roots}
    finally:
        fifo.close()
        agent.close()


def test_checks_drive_real_server_state_without_ipvs(lvs_lab) -> None:
    lab, agent, fifo, env = lvs_lab
    w1, w2 = str(lab.host("w1").ip4), str(lab.host("w2").ip4)
    wait_for("both real servers up after their first checks", lambda: (servers := real_servers(
        agent)) and all(rs["alive"] and rs["checkers"][0]["last_result"] == "ok"
                        for rs in servers.values()), timeout=15)
    snap = status(agent)["checker"]
    assert snap["data_plane"]["name"] == "none"
    assert "IPVS" in snap["data_plane"]["reason"]
    assert agent.log_text().count("No data plane") == 1

    # the TCP server stops: down after its retry, within
    # connect_timeout + retry x delay_before_retry + delay_loop + 0.5 s
    stopped = time.monotonic()
    env["servers"]["w2"].send_signal(signal.SIGTERM)
    env["servers"]["w2"].wait(5)
    wait_for("w2 down", lambda: not real_servers(agent)[w2]["alive"], timeout=5)
    assert time.monotonic() - stopped < 1 + 1 * 0.5 + 1 + 0.5 + 0.5
    line = f"RS [{w2}]:tcp:8080 [{VIP}]:tcp:80 DOWN"
    wait_for("the FIFO line", lambda: line in fifo.lines(), timeout=2)

    # the body changes under the digest: HTTP_GET fails it
    (env["roots"]["w1"] / "index.html").write_bytes(b"changed\n")
    wait_for("w1 down on its digest", lambda: not real_servers(agent)[w1]["alive"], timeout=6)
    error = real_servers(agent)[w1]["checkers"][0]["last_error"]
    assert "digest" in error.lower()
    assert fifo.lines()[-1] == f"VS [{VIP}]:tcp:80 DOWN"

    # both come back
    (env["roots"]["w1"] / "index.html").write_bytes(BODY)
    env["servers"]["w2"] = web(lab.host("w2"), env["roots"]["w2"])
    wait_for("both up again", lambda: all(rs["alive"] for rs in real_servers(agent).values()),
             timeout=8)
    assert fifo.lines()[-1].endswith("UP")


def test_killed_checker_process_comes_back_with_its_servers(lvs_lab) -> None:
    lab, agent, fifo, env = lvs_lab
    wait_for("both real servers up", lambda: (servers := real_servers(agent)) and all(
        rs["alive"] for rs in servers.values()), timeout=15)
    pid = checker_pid(agent)
    os.kill(pid, signal.SIGKILL)
    wait_for("a new checker process", lambda: checker_pid(agent) not in (None, pid),
             timeout=10)
    wait_for("its servers up", lambda: (servers := real_servers(agent)) and all(
        rs["alive"] for rs in servers.values()), timeout=10)


def misc_file_config(lab: Lab, d: Path) -> str:
    w1, w2 = lab.host("w1"), lab.host("w2")
    return f"""
global_defs {{
    lvs_notify_fifo {d / "lvs.fifo"}
    enable_script_security
    script_user root
}}
track_file weight_file {{
    file {d / "weight"}
}}
virtual_server {VIP} 80 {{
    delay_loop 0.5
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    warmup 0
    real_server {w1.ip4} 8080 {{
        weight 10
        MISC_CHECK {{
            misc_path "{d / "misc.sh"}"
            misc_dynamic
            misc_timeout 2
        }}
    }}
    real_server {w2.ip4} 8080 {{
        weight 10
        FILE_CHECK {{
            track_file weight_file
            weight 3
        }}
    }}
}}
"""


def test_misc_exit_codes_and_file_values_set_weights(lab_factory) -> None:
    lab = lab_factory(["dir", "w1", "w2"])
    agent = Router(lab.host("dir"), "")
    try:
        d = agent.dir
        d.chmod(0o755)
        (d / "status").write_text("7\n")
        script = d / "misc.sh"
        script.write_text(f"#!/bin/sh\nexit $(cat {d / 'status'})\n")
        script.chmod(0o755)
        (d / "weight").write_text("2\n")
        agent.conf.write_text(misc_file_config(lab, d))
        agent.start()
        w1, w2 = str(lab.host("w1").ip4), str(lab.host("w2").ip4)

        def weights() -> dict[str, tuple[bool, int]]:
            return {ip: (rs["alive"], rs["effective_weight"])
                    for ip, rs in real_servers(agent).items()}

        # exit 7 with misc_dynamic: weight 5; the file's 2 x 3 added to 10
        wait_for("dynamic weights", lambda: weights() == {w1: (True, 5), w2: (True, 16)},
                 timeout=15)
        (d / "status").write_text("1\n")           # a failure: down, its weight taken back
        (d / "weight").write_text("-1\n")
        wait_for("misc down, file weight lowered",
                 lambda: weights() == {w1: (False, 10), w2: (True, 7)}, timeout=10)
        (d / "status").write_text("0\n")            # exit 0: up at the configured weight
        wait_for("misc up again", lambda: weights()[w1] == (True, 10), timeout=10)
    finally:
        agent.close()


def test_reload_keeps_state_drains_removed_and_refuses_a_bad_config(lvs_lab) -> None:
    lab, agent, fifo, env = lvs_lab
    w1, w2 = str(lab.host("w1").ip4), str(lab.host("w2").ip4)
    wait_for("both real servers checked", lambda: (servers := real_servers(agent)) and all(
        rs["alive"] and rs["checkers"][0]["has_run"] for rs in servers.values()), timeout=15)

    text = agent.conf.read_text()
    # a bad configuration: refused, the running one goes on
    agent.conf.write_text(text.replace("lb_algo rr", "lb_algo rr\n    real_server {"))
    done = subprocess.run([sys.executable, "-m", "keepalived_py.cli", "reload",
                           "--control-socket", str(agent.control)],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "keepalived.conf" in done.stdout + done.stderr
    assert set(real_servers(agent)) == {w1, w2}

    # w2 removed: drained (no kernel here: no connections, so gone at the next look)
    block = text[text.index(f"    real_server {w2}"):text.rindex("}")]
    agent.conf.write_text(text.replace(block, ""))
    done = subprocess.run([sys.executable, "-m", "keepalived_py.cli", "reload",
                           "--control-socket", str(agent.control)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the unchanged checker kept its state (a new one would not have run yet)
    after = real_servers(agent)[w1]
    assert after["alive"] and after["checkers"][0]["has_run"]
    wait_for("w2 gone", lambda: set(real_servers(agent)) == {w1}, timeout=6)
    assert f"RS [{w2}]:tcp:8080 [{VIP}]:tcp:80 DOWN" in fifo.lines()


def test_ha_suspend_checks_only_while_the_vip_is_here(lab_factory) -> None:
    lab = lab_factory(["dir", "w1"])
    director, w1 = lab.host("dir"), lab.host("w1")
    agent = Router(director, f"""
virtual_server {VIP} 80 {{
    delay_loop 0.5
    lb_algo rr
    protocol TCP
    warmup 0
    ha_suspend
    real_server {w1.ip4} 8080 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
""")
    try:
        web(w1, agent.dir / "w1")
        agent.start()

        def checker() -> dict:
            [rs] = real_servers(agent).values() or [{}]
            return rs.get("checkers", [{}])[0]

        wait_for("the checker process", lambda: checker().get("enabled") is False, timeout=15)
        time.sleep(2)
        assert checker()["last_result"] is None       # suspended: never ran
        director.run(["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])
        wait_for("checks once the VIP is here", lambda: checker().get("last_result") == "ok",
                 timeout=5)
        director.run(["ip", "addr", "del", f"{VIP}/32", "dev", "lo"])
        wait_for("suspended again", lambda: checker().get("enabled") is False, timeout=5)
        assert "Suspending healthchecker for service" in agent.log_text()
    finally:
        agent.close()
