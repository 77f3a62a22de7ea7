"""vrrp_instance against the agent's real CLI and a fake daemon (see agent_double.py)."""

from __future__ import annotations

import pytest
from ansible_collections.keepalived_py.ha.plugins.modules import vrrp_instance

from .agent_double import agent_dir, instance, run_module, status_answer


@pytest.fixture
def pair_daemon(daemon_factory):
    """VI_1 MASTER (priority 150), VI_2 BACKUP."""
    return daemon_factory(status_answer(instance("VI_1", priority=150),
                                        instance("VI_2", vrid=52, state="BACKUP")))


def run(daemon, agent, capsys, check_mode=False, diff=False, **args):
    return run_module(vrrp_instance.main,
                      {"agent": agent, "control_socket": daemon.socket, **args}, capsys,
                      check_mode=check_mode, diff=diff)


def test_force_backup_sends_only_what_differs(pair_daemon, agent, capsys):
    result = run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup")
    assert result["changed"] is True
    assert pair_daemon.requested("set") == [
        {"request": "set", "instance": "VI_1", "force_backup": True}]
    assert result["before"] == {"priority_override": None, "force_backup": False}
    assert result["after"] == {"priority_override": None, "force_backup": True}
    assert result["instance"]["force_backup"] is True
    assert result["waited"] == 0.0


def test_setting_what_is_set_changes_nothing(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_1").update(force_backup=True, priority_override=None)
    result = run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup")
    assert result["changed"] is False
    assert pair_daemon.requested("set") == []


def test_twice_is_idempotent(pair_daemon, agent, capsys):
    first = run(pair_daemon, agent, capsys, name="VI_1", priority=20)
    second = run(pair_daemon, agent, capsys, name="VI_1", priority=20)
    assert (first["changed"], second["changed"]) == (True, False)
    assert pair_daemon.requested("set") == [{"request": "set", "instance": "VI_1",
                                             "priority": 20}]
    assert second["instance"]["effective_priority"] == 20


def test_check_mode_reports_without_doing(pair_daemon, agent, capsys):
    result = run(pair_daemon, agent, capsys, check_mode=True, diff=True, name="VI_1",
                 maintenance="backup", priority=10, wait=True)
    assert result["changed"] is True
    assert pair_daemon.requested("set") == []
    assert len(pair_daemon.requested("status")) == 1       # nothing waited for
    assert result["state"] == "MASTER" and result["waited"] == 0.0
    assert result["diff"]["before"] == {"priority_override": None, "force_backup": False}
    assert result["diff"]["after"] == {"priority_override": 10, "force_backup": True}
    assert result["diff"]["before_header"] == "VI_1 (maintenance settings)"


def test_no_diff_unless_asked(pair_daemon, agent, capsys):
    assert "diff" not in run(pair_daemon, agent, capsys, name="VI_1", maintenance="none")


def test_maintenance_none_clears_both(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_2").update(force_backup=True, priority_override=50)
    result = run(pair_daemon, agent, capsys, name="VI_2", maintenance="none")
    assert result["changed"] is True
    assert pair_daemon.requested("set") == [
        {"request": "set", "instance": "VI_2", "priority": None, "force_backup": False}]
    assert result["instance"]["priority_override"] is None


def test_backup_without_priority_clears_an_override(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_1")["priority_override"] = 50
    run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup")
    assert pair_daemon.requested("set") == [
        {"request": "set", "instance": "VI_1", "priority": None, "force_backup": True}]


def test_priority_alone_means_maintenance_priority(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_1")["force_backup"] = True
    result = run(pair_daemon, agent, capsys, name="VI_1", priority=10)
    assert result["after"] == {"priority_override": 10, "force_backup": False}
    assert pair_daemon.requested("set") == [
        {"request": "set", "instance": "VI_1", "priority": 10, "force_backup": False}]


def test_nothing_asked_only_reports(pair_daemon, agent, capsys):
    result = run(pair_daemon, agent, capsys, name="VI_2")
    assert result["changed"] is False and result["state"] == "BACKUP"
    assert pair_daemon.requested("set") == []


def test_waits_for_the_hand_over(pair_daemon, agent, capsys):
    # status reads: the one before the set, then MASTER twice more, then BACKUP
    pair_daemon.schedule("VI_1", "BACKUP", after_reads=3)
    result = run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup", wait=True,
                 delay=0.05, timeout=20)
    assert result["changed"] is True and result["state"] == "BACKUP"
    assert result["instance"]["state"] == "BACKUP"
    assert len(pair_daemon.requested("status")) == 4
    assert result["waited"] >= 0.1


def test_wait_times_out_with_the_last_state(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_1")["faults"] = ["if:eth0"]
    result = run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup", wait=True,
                 delay=0.05, timeout=1.5)
    assert result["failed"] is True
    assert result["changed"] is True              # the setting was made
    assert result["msg"] == ("VI_1: not BACKUP after 1.5 s; last state seen MASTER (effective "
                             "priority 150, master 198.18.0.11, faults if:eth0)")
    assert result["state"] == "MASTER" and result["waited"] >= 1.5
    # it kept reading (each read runs the agent's CLI: slow on a loaded machine)
    assert len(pair_daemon.requested("status")) >= 3


def test_wait_for_any_and_master(pair_daemon, agent, capsys):
    pair_daemon.instance("VI_2")["state"] = "FAULT"
    pair_daemon.schedule("VI_2", "BACKUP", after_reads=2)
    result = run(pair_daemon, agent, capsys, name="VI_2", wait=True, delay=0.05)
    assert result["changed"] is False and result["state"] == "BACKUP"
    pair_daemon.schedule("VI_2", "MASTER", after_reads=1)
    result = run(pair_daemon, agent, capsys, name="VI_2", maintenance="none", wait=True,
                 wait_for="MASTER", delay=0.05)
    assert result["state"] == "MASTER"


def test_an_instance_name_that_looks_like_an_option(daemon_factory, agent, capsys):
    daemon = daemon_factory(status_answer(instance("-x")))
    result = run(daemon, agent, capsys, name="-x", maintenance="backup")
    assert result["changed"] is True
    assert daemon.requested("set") == [{"request": "set", "instance": "-x",
                                        "force_backup": True}]


def test_unknown_instance(pair_daemon, agent, capsys):
    result = run(pair_daemon, agent, capsys, name="VI_9", maintenance="backup")
    assert result["failed"] is True
    assert result["msg"] == "no VRRP instance 'VI_9' in keepalived-py (instances: VI_1, VI_2)"


def test_no_vrrp_process(daemon_factory, agent, capsys):
    daemon = daemon_factory(status_answer(vrrp=False))
    result = run(daemon, agent, capsys, name="VI_1", maintenance="backup")
    assert result["msg"] == "keepalived-py runs no VRRP process now: no instance to change"


def test_agent_refusing_the_set(pair_daemon, agent, capsys, monkeypatch):
    """The instance disappears between the read and the set (a reload): the agent's word."""
    original = pair_daemon._set
    monkeypatch.setattr(pair_daemon, "_set", lambda request: original({**request,
                                                                       "instance": "gone"}))
    result = run(pair_daemon, agent, capsys, name="VI_1", maintenance="backup")
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "keepalived-py set VI_1 failed (exit 1): no instance 'gone'"


def test_not_running(agent, workdir, capsys):
    result = run_module(vrrp_instance.main, {"agent": agent, "name": "VI_1",
                                             "control_socket": str(workdir / "x.sock")}, capsys)
    assert result["msg"] == ("keepalived-py is not running on this host "
                             f"(no control socket at {workdir}/x.sock)")


def test_the_agent_of_a_namespace_and_instance(keyed_agent, run_dir, daemon_factory, capsys):
    """status and set both go to the agent the options name (the CLI's lookup)."""
    other = daemon_factory(status_answer(instance("VI_1")), agent_dir(run_dir, "blue", "a"))
    edge = daemon_factory(status_answer(instance("VI_1")), agent_dir(run_dir, "blue", "edge"))
    result = run_module(vrrp_instance.main, {"agent": keyed_agent, "name": "VI_1",
                                             "maintenance": "backup", "namespace": "blue",
                                             "agent_instance": "edge"}, capsys)
    assert result["changed"] is True and result["instance"]["force_backup"] is True
    assert edge.requested("set") == [{"request": "set", "instance": "VI_1",
                                      "force_backup": True}]
    assert other.requests == []


def test_several_agents_fail_before_any_change(keyed_agent, run_dir, daemon_factory, capsys):
    daemons = [daemon_factory(status_answer(instance("VI_1")), agent_dir(run_dir, "blue", name))
               for name in ("a", "b")]
    result = run_module(vrrp_instance.main, {"agent": keyed_agent, "name": "VI_1",
                                             "maintenance": "backup", "namespace": "blue"},
                        capsys)
    assert result["failed"] is True
    assert result["msg"] == ("several keepalived-py agents run in namespace blue (instances "
                             "a, b): name the one meant with the option agent_instance")
    assert [d.requests for d in daemons] == [[], []]


@pytest.mark.parametrize(("args", "message"), [
    ({"priority": 255}, "priority must be 1-254, not 255"),
    ({"priority": 0}, "priority must be 1-254, not 0"),
    ({"maintenance": "none", "priority": 10},
     "priority does not go with maintenance=none (which clears the override)"),
    ({"maintenance": "priority"}, "maintenance is priority but all of the following are "
                                  "missing: priority"),
    ({"wait_for": "MASTER"}, "wait_for is set but wait is false"),
    ({"maintenance": "drain"}, "value of maintenance must be one of: none, priority, backup, "
                               "got: drain"),
])
def test_bad_parameters(pair_daemon, agent, capsys, args, message):
    result = run(pair_daemon, agent, capsys, name="VI_1", **args)
    assert result["failed"] is True and result["msg"] == message
    assert pair_daemon.requests == []
