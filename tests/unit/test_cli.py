"""Every refusal of the command line is one line, with keepalived's exit code, never a traceback.

The daemon's refusals that need a live agent (paths held by it) are in
tests/integration/test_agents.py; these need no agent and no privilege.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from keepalived_py.core.paths import AgentKey, PathsError, RunPaths, find_control_socket

CONFIG = """vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority 100
  virtual_ipaddress { 198.18.0.100/24 }
}
"""


def cli(*args: str, user: str | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "keepalived_py.cli", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def refused(done: subprocess.CompletedProcess[str], code: int, message: str) -> str:
    """The one line of a refusal: on stderr, naming the cause, with the exit code."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if message in line]
    assert lines, f"{message!r} not in:\n{done.stderr}"
    assert done.returncode == code, (done.returncode, done.stderr)
    return lines[-1]


def test_a_missing_configuration(tmp_path: Path) -> None:
    missing = tmp_path / "none.conf"
    done = cli("-n", "-G", "-f", str(missing))
    # keepalived's KEEPALIVED_EXIT_NO_CONFIG
    refused(done, 6, f"Unable to find configuration file {missing}")


def test_a_directory_as_configuration(tmp_path: Path) -> None:
    done = cli("-n", "-G", "-f", str(tmp_path))
    refused(done, 6, f"Configuration file '{tmp_path}' is a directory")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory that nobody can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kpy-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="setpriv needs root")
def test_an_unreadable_configuration(open_dir: Path) -> None:
    conf = open_dir / "k.conf"
    conf.write_text(CONFIG)
    conf.chmod(0o600)
    done = cli("-n", "-G", "-f", str(conf), user="65534", cwd=open_dir)
    refused(done, 6, f"Configuration file '{conf}' open problem (Permission denied)")


def test_no_such_namespace(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(CONFIG)
    done = cli("-n", "-G", "-s", "kpy-no-such-ns", "-f", str(conf))
    refused(done, 1, "no network namespace kpy-no-such-ns (/run/netns/kpy-no-such-ns "
                     "does not exist)")


def test_no_such_namespace_in_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("net_namespace kpy-no-such-ns\n" + CONFIG)
    done = cli("-n", "-G", "-f", str(conf))
    refused(done, 1, "no network namespace kpy-no-such-ns")


@pytest.mark.skipif(os.geteuid() != 0, reason="setpriv needs root")
def test_no_permission(open_dir: Path) -> None:
    conf = open_dir / "k.conf"
    conf.write_text(CONFIG)
    conf.chmod(0o644)
    held = open_dir / "held"
    held.mkdir(mode=0o755)          # root's: nobody may write there
    done = cli("-n", "-G", "-f", str(conf), "-p", str(held / "k.pid"), "-r",
               str(held / "v.pid"), "--control-socket", str(held / "c.sock"),
               "--maintenance-file", "", user="65534", cwd=open_dir)
    # KEEPALIVED_EXIT_MISSING_PERMISSION
    refused(done, 4, f"cannot write {held / 'k.pid'}: Permission denied")


def test_a_bad_option() -> None:
    done = cli("--no-such-option")
    refused(done, 2, "unrecognized arguments: --no-such-option")


def test_a_bad_metrics_address(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(CONFIG)
    done = cli("-n", "-G", "-f", str(conf), "--metrics-listen", "localhost:http",
               "-p", str(tmp_path / "k.pid"), "-r", str(tmp_path / "v.pid"),
               "--control-socket", str(tmp_path / "c.sock"))
    refused(done, 1, "metrics listen 'localhost:http': bad port 'http'")
    assert not list(tmp_path.glob("*.pid")) and not (tmp_path / "c.sock").exists()


def test_a_config_test_log_that_cannot_be_written(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(CONFIG)
    log = tmp_path / "no" / "dir" / "log"
    refused(cli("-t", str(log), "-f", str(conf)), 4, f"cannot write the test's log {log}")


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["reload"],
                                     ["set", "VI_1", "--priority", "5"]])
def test_clients_without_an_agent(tmp_path: Path, command: list[str]) -> None:
    sock = tmp_path / "control.sock"
    done = cli(*command, "--control-socket", str(sock))
    refused(done, 3, f"keepalived-py is not running (no socket at {sock})")


def test_a_client_naming_a_namespace_without_an_agent() -> None:
    done = cli("status", "-s", "kpy-no-such-ns")
    where = RunPaths.of(AgentKey("kpy-no-such-ns")).control_socket
    refused(done, 3, f"keepalived-py is not running (no socket at {where})")


@pytest.mark.parametrize(("command", "message"), [
    (["set", "VI_1"], "nothing to set: give --priority or --force-backup"),
    (["set", "VI_1", "--priority", "high"], "--priority high: a number or 'none'"),
    (["set"], "the following arguments are required: INSTANCE"),
    (["config", "render", "--nope"], "unrecognized arguments: --nope"),
])
def test_client_usage_errors(command: list[str], message: str) -> None:
    refused(cli(*command), 2, message)


def test_config_render_of_a_missing_file(tmp_path: Path) -> None:
    refused(cli("config", "render", "-f", str(tmp_path / "x.conf")), 4,
            "Unable to find configuration file")


# -- which agent a client means -------------------------------------------------------------

def test_keyed_paths() -> None:
    assert RunPaths.of(AgentKey()).control_socket == Path("/run/keepalived-py/control.sock")
    assert RunPaths.of(AgentKey("blue")).pid_file("vrrp") == \
        Path("/run/keepalived-py/netns/blue/vrrp.pid")
    paths = RunPaths.of(AgentKey("blue", "lb1"))
    assert paths.control_socket == Path("/run/keepalived-py/netns/blue/instance/lb1/control.sock")
    assert paths.maintenance_file == \
        Path("/var/lib/keepalived-py/netns/blue/instance/lb1/maintenance.json")
    assert RunPaths.of(AgentKey(None, "lb1")).pid_file("keepalived") == \
        Path("/run/keepalived-py/instance/lb1/keepalived.pid")


def test_find_control_socket(tmp_path: Path) -> None:
    listening: list[socket.socket] = []

    def agent(key: AgentKey, live: bool = True) -> Path:
        path = RunPaths.of(key, tmp_path).control_socket
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.listen()
        if live:
            listening.append(sock)
        else:
            sock.close()            # what a kill -9 leaves: the file, nobody listening
        return path

    try:
        # nothing runs: the plain path of the namespace, for the "not running" message
        assert find_control_socket("blue", run_dir=tmp_path) == \
            tmp_path / "netns/blue/control.sock"
        one = agent(AgentKey("blue", "lb1"))
        agent(AgentKey("blue", "dead"), live=False)
        assert find_control_socket("blue", run_dir=tmp_path) == one     # the only live one
        two = agent(AgentKey("blue", "lb2"))
        with pytest.raises(PathsError, match=r"several agents run in namespace blue "
                                             r"\(instances lb1, lb2\): name one with --instance"):
            find_control_socket("blue", run_dir=tmp_path)
        assert find_control_socket("blue", "lb2", run_dir=tmp_path) == two
        plain = agent(AgentKey("blue"))
        assert find_control_socket("blue", run_dir=tmp_path) == plain  # the one without a name
        assert find_control_socket("green", run_dir=tmp_path) == \
            tmp_path / "netns/green/control.sock"
    finally:
        for sock in listening:
            sock.close()


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "x\0y"])
def test_a_name_that_cannot_be_a_directory_is_refused(name: str) -> None:
    with pytest.raises(PathsError, match="cannot name an agent's directory"):
        AgentKey(None, name)
    with pytest.raises(PathsError):
        AgentKey(name)
