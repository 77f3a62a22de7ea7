"""vrrp_facts against the agent's real CLI and a fake daemon (see agent_double.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.keepalived_py.ha.plugins.modules import vrrp_facts

from .agent_double import (
    agent_dir,
    instance,
    not_a_socket_listener,
    run_module,
    script,
    status_answer,
)

DATA = Path(__file__).resolve().parent / "data"


def facts_of(result: dict) -> dict:
    return result["ansible_facts"]["keepalived_py"]


def test_facts_of_a_master_and_a_backup(agent, daemon_factory, capsys):
    daemon = daemon_factory(status_answer(
        instance("VI_1", vrid=51, state="MASTER", priority=150,
                 vips=("198.18.0.100/24", "198.18.0.101"),
                 excluded_vips=["2001:db8::100/64 dev eth0 scope global set"]),
        instance("VI_2", vrid=52, state="BACKUP", priority=90,
                 priority_override=90, configured_priority=120, force_backup=True)))
    result = run_module(vrrp_facts.main, {"agent": agent, "control_socket": daemon.socket},
                        capsys)
    assert result["rc_exit"] == 0 and result["changed"] is False
    facts = facts_of(result)
    assert (facts["version"], facts["pid"], facts["vrrp_running"]) == ("0.1.0", 4242, True)
    assert facts["children"][0]["name"] == "vrrp" and facts["schema_version"] == 1
    assert facts["control_socket"] == daemon.socket
    assert [i["name"] for i in facts["instance_list"]] == ["VI_1", "VI_2"]
    assert facts["instances"]["VI_1"] == facts["instance_list"][0]
    master, backup = facts["instances"]["VI_1"], facts["instances"]["VI_2"]
    assert master["state"] == "MASTER" and master["vrid"] == 51
    assert master["interface"] == "eth0"
    assert master["vips"] == ["198.18.0.100/24", "198.18.0.101"]
    assert master["vips_held"] == ["198.18.0.100/24", "198.18.0.101", "2001:db8::100/64"]
    assert master["master_address"] == "198.18.0.11"
    assert master["last_transition"] == 1795250827.276843
    assert backup["vips_held"] == []
    assert (backup["configured_priority"], backup["base_priority"],
            backup["effective_priority"]) == (120, 90, 90)
    assert backup["priority_override"] == 90 and backup["force_backup"] is True
    assert daemon.requests == [{"request": "status"}]


def test_check_mode_reads_the_same(agent, daemon_factory, capsys):
    daemon = daemon_factory(status_answer(instance("VI_1")))
    result = run_module(vrrp_facts.main, {"agent": agent, "control_socket": daemon.socket},
                        capsys, check_mode=True)
    assert result["changed"] is False
    assert facts_of(result)["instances"]["VI_1"]["state"] == "MASTER"


def test_agent_without_vrrp_process(agent, daemon_factory, capsys):
    daemon = daemon_factory(status_answer(vrrp=False))
    facts = facts_of(run_module(vrrp_facts.main,
                                {"agent": agent, "control_socket": daemon.socket}, capsys))
    assert facts["vrrp_running"] is False
    assert facts["instances"] == {} and facts["instance_list"] == []
    assert facts["schema_version"] is None


def test_not_running(agent, workdir, capsys):
    missing = str(workdir / "nothing.sock")
    result = run_module(vrrp_facts.main, {"agent": agent, "control_socket": missing}, capsys)
    assert result["failed"] is True and result["rc_exit"] == 1
    assert result["msg"] == (f"keepalived-py is not running on this host "
                             f"(no control socket at {missing})")
    assert result["rc"] == 3


def test_stale_socket(agent, workdir, capsys):
    stale = not_a_socket_listener(workdir)
    result = run_module(vrrp_facts.main, {"agent": agent, "control_socket": stale}, capsys)
    assert result["msg"] == (f"keepalived-py is not running on this host "
                             f"(stale control socket at {stale})")


def test_agent_not_installed(workdir, capsys):
    result = run_module(vrrp_facts.main, {"agent": str(workdir / "bin/keepalived-py")}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith(f"keepalived-py agent not found at {workdir}/bin/")


def test_agent_refusal_is_reported(agent, daemon_factory, capsys):
    daemon = daemon_factory({"ok": False, "error": "no VRRP state", "agent": {}})
    result = run_module(vrrp_facts.main, {"agent": agent, "control_socket": daemon.socket},
                        capsys)
    assert result["msg"] == "keepalived-py status failed (exit 1): no VRRP state"


def test_output_that_is_not_json(workdir, capsys):
    odd = script(workdir, "old-agent", "echo 'VI_1 MASTER'; exit 0")
    result = run_module(vrrp_facts.main, {"agent": odd}, capsys)
    assert result["msg"] == "keepalived-py status failed (exit 0): VI_1 MASTER"


def test_arguments_given_to_the_agent(workdir, capsys):
    """Only the options set are passed: with none, the CLI finds the agent itself."""
    log = workdir / "argv"
    recorder = script(workdir, "recorder", f"echo \"$@\" >> {log}; "
                      f"echo '{json.dumps(status_answer())}'")
    plain = run_module(vrrp_facts.main, {"agent": recorder}, capsys)
    run_module(vrrp_facts.main, {"agent": recorder, "control_socket": "/run/x.sock"}, capsys)
    run_module(vrrp_facts.main, {"agent": recorder, "namespace": "blue",
                                 "agent_instance": "edge"}, capsys)
    assert log.read_text().splitlines() == [
        "status --json",
        "status --control-socket /run/x.sock --json",
        "status --namespace blue --instance edge --json"]
    # the CLI does not say which socket it found: the facts do not pretend to know
    assert facts_of(plain)["control_socket"] is None
    assert facts_of(plain)["namespace"] is None and facts_of(plain)["instance"] is None


# -- which agent: the CLI's own lookup, under a run directory of the test's --------------

def keyed_answer(namespace: str | None, name: str | None) -> dict:
    answer = status_answer(instance("VI_1"))
    answer["agent"].update(namespace=namespace, instance=name)
    return answer


def test_the_only_agent_of_a_namespace(keyed_agent, run_dir, daemon_factory, capsys):
    daemon = daemon_factory(keyed_answer("blue", "edge"), agent_dir(run_dir, "blue", "edge"))
    result = run_module(vrrp_facts.main, {"agent": keyed_agent, "namespace": "blue"}, capsys)
    facts = facts_of(result)
    assert (facts["namespace"], facts["instance"]) == ("blue", "edge")
    assert facts["control_socket"] is None
    assert daemon.requests == [{"request": "status"}]


def test_several_agents_are_named(keyed_agent, run_dir, daemon_factory, capsys):
    a = daemon_factory(keyed_answer("blue", "a"), agent_dir(run_dir, "blue", "a"))
    b = daemon_factory(keyed_answer("blue", "b"), agent_dir(run_dir, "blue", "b"))
    result = run_module(vrrp_facts.main, {"agent": keyed_agent, "namespace": "blue"}, capsys)
    assert result["failed"] is True and result["rc"] == 3
    assert result["msg"] == ("several keepalived-py agents run in namespace blue (instances "
                             "a, b): name the one meant with the option agent_instance")
    chosen = run_module(vrrp_facts.main, {"agent": keyed_agent, "namespace": "blue",
                                          "agent_instance": "b"}, capsys)
    assert facts_of(chosen)["instance"] == "b"
    assert a.requests == [] and b.requests == [{"request": "status"}]


def test_control_socket_wins(keyed_agent, run_dir, daemon_factory, capsys):
    daemon_factory(keyed_answer("blue", "a"), agent_dir(run_dir, "blue", "a"))
    mine = daemon_factory(keyed_answer(None, None))
    result = run_module(vrrp_facts.main, {"agent": keyed_agent, "control_socket": mine.socket,
                                          "namespace": "blue", "agent_instance": "a"}, capsys)
    assert facts_of(result)["control_socket"] == mine.socket
    assert mine.requests == [{"request": "status"}]


def test_not_running_names_the_socket_tried(keyed_agent, run_dir, capsys):
    result = run_module(vrrp_facts.main, {"agent": keyed_agent, "namespace": "red"}, capsys)
    assert result["msg"] == ("keepalived-py is not running on this host (no control socket "
                             f"at {agent_dir(run_dir, 'red')}/control.sock)")


def test_unreachable_names_only_a_socket_it_knows(workdir, capsys):
    """Another exit 3 (no answer in time): the socket is named if the module gave it, and
    no default is guessed when the CLI found the agent."""
    silent = script(workdir, "silent", "echo 'keepalived-py: no answer from keepalived-py "
                    "within 5 s' >&2; exit 3")
    given = run_module(vrrp_facts.main, {"agent": silent, "control_socket": "/run/x.sock"},
                       capsys)
    found = run_module(vrrp_facts.main, {"agent": silent}, capsys)
    assert given["msg"] == ("cannot reach keepalived-py on /run/x.sock: no answer from "
                            "keepalived-py within 5 s")
    assert found["msg"] == "cannot reach keepalived-py: no answer from keepalived-py within 5 s"


def test_a_real_agent_answer():
    """The ``status --json`` of a real agent (MASTER of VI_51, in a lab), read as facts."""
    from ansible_collections.keepalived_py.ha.plugins.module_utils.vrrp_runtime import (
        agent_facts,
    )
    answer = json.loads((DATA / "status_master.json").read_text())
    facts = agent_facts(answer)
    inst = facts["instances"]["VI_51"]
    assert inst["state"] == "MASTER" and inst["vrid"] == 51
    assert inst["vips_held"] == inst["vips"] == ["198.18.0.100/24"]
    assert inst["effective_priority"] == inst["configured_priority"] == 150
    assert inst["priority_override"] is None and inst["force_backup"] is False
    assert isinstance(inst["last_transition"], float)
    assert facts["version"] == answer["agent"]["version"]
