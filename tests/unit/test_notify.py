"""Which notify scripts run and which FIFO lines are written, per event (agent/vrrp/notify.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from keepalived_py.config import load
from keepalived_py.config.model import Node
from keepalived_py.host import scripts
from keepalived_py.host.fifo import notify_fifos
from keepalived_py.host.scripts import ScriptCommand, ScriptUser, config_scripts
from keepalived_py.vrrp.notify import (
    BACKUP,
    DELETED,
    FAULT,
    GROUP,
    INSTANCE,
    MASTER,
    STOP,
    Launch,
    Notices,
    Notifier,
    NotifySettings,
    deleted_notices,
    fifo_line,
    generic_argv,
    group_notices,
    instance_notices,
    notify_settings,
    priority_notices,
    rx_lower_notices,
)

ROOT = ScriptUser(0, 0, "root")


def cmd(*argv: str) -> ScriptCommand:
    return ScriptCommand(argv, ROOT)


VI_1 = NotifySettings(INSTANCE, "VI_1", {MASTER: cmd("/m.sh", "a"), STOP: cmd("/s.sh"),
                                         DELETED: cmd("/d.sh")},
                      generic=cmd("/n.sh", "x"), rx_lower_pri=cmd("/rx.sh"),
                      notify_deleted=True, priority_changes=True, sync_group="SG1")
SG1 = NotifySettings(GROUP, "SG1", {STOP: cmd("/gs.sh")}, generic=cmd("/g.sh"))


def argvs(notices: Notices) -> list[tuple[tuple[str, ...], bool]]:
    return [(launch.command.argv, launch.wait) for launch in notices.launches]


def test_lines_are_keepalived_s() -> None:
    assert fifo_line(INSTANCE, "VI_1", MASTER, 150) == 'INSTANCE "VI_1" MASTER 150\n'
    assert fifo_line(GROUP, "SG1", BACKUP, 0) == 'GROUP "SG1" BACKUP 0\n'
    assert generic_argv(["/n.sh", "x"], INSTANCE, "VI_1", FAULT, 150) == (
        "/n.sh", "x", "INSTANCE", "VI_1", "FAULT", "150")


def test_instance_runs_its_state_script_then_the_generic_one() -> None:
    notices = instance_notices(VI_1, MASTER, 150)
    assert argvs(notices) == [(("/m.sh", "a"), False),
                              (("/n.sh", "x", "INSTANCE", "VI_1", "MASTER", "150"), False)]
    assert notices.lines == ('INSTANCE "VI_1" MASTER 150\n',)
    # no notify_backup: only the generic script and the line
    assert argvs(instance_notices(VI_1, BACKUP, 100)) == [
        (("/n.sh", "x", "INSTANCE", "VI_1", "BACKUP", "100"), False)]


def test_stop_scripts_are_waited_for() -> None:
    assert argvs(instance_notices(VI_1, STOP, 150)) == [
        (("/s.sh",), True), (("/n.sh", "x", "INSTANCE", "VI_1", "STOP", "150"), True)]
    # a group's own notify_stop is not waited for, its generic script is
    notices = group_notices(SG1, STOP)
    assert argvs(notices) == [(("/gs.sh",), False), (("/g.sh", "GROUP", "SG1", "STOP", "0"), True)]
    assert notices.lines == ('GROUP "SG1" STOP 0\n',)


def test_groups_report_priority_zero_and_have_no_deleted() -> None:
    assert group_notices(SG1, MASTER).lines == ('GROUP "SG1" MASTER 0\n',)
    with pytest.raises(ValueError):
        group_notices(SG1, DELETED)
    with pytest.raises(ValueError):
        instance_notices(VI_1, "INIT", 100)


def test_sync_group_already_in_that_state_speaks_for_the_instance() -> None:
    assert instance_notices(VI_1, MASTER, 150, notified_before=True, group_state=MASTER) == \
        Notices()
    # the first notification of an instance is always sent
    assert instance_notices(VI_1, MASTER, 150, notified_before=False, group_state=MASTER).lines
    assert instance_notices(VI_1, MASTER, 150, notified_before=True, group_state=BACKUP).lines
    alone = NotifySettings(INSTANCE, "VI_2")
    assert instance_notices(alone, MASTER, 150, notified_before=True, group_state=MASTER).lines


def test_deleted() -> None:
    notices = deleted_notices(VI_1, MASTER, 150)
    assert argvs(notices) == [(("/d.sh",), False),
                              (("/n.sh", "x", "INSTANCE", "VI_1", "DELETED", "150"), False)]
    assert notices.lines == ('INSTANCE "VI_1" DELETED 150\n',)
    # without notify_deleted a deletion is reported as FAULT, unless it was in FAULT
    old_style = NotifySettings(INSTANCE, "VI_3", {FAULT: cmd("/f.sh")}, generic=cmd("/n.sh"))
    assert deleted_notices(old_style, BACKUP, 90).lines == ('INSTANCE "VI_3" FAULT 90\n',)
    assert argvs(deleted_notices(old_style, BACKUP, 90))[0] == (("/f.sh",), False)
    assert deleted_notices(old_style, FAULT, 90) == Notices()
    # notify_deleted without a script still sends DELETED
    bare = NotifySettings(INSTANCE, "VI_4", notify_deleted=True)
    assert deleted_notices(bare, FAULT, 90).lines == ('INSTANCE "VI_4" DELETED 90\n',)


def test_priority_changes() -> None:
    assert priority_notices(VI_1, MASTER, 140).lines == ('INSTANCE "VI_1" MASTER_PRIORITY 140\n',)
    assert priority_notices(VI_1, BACKUP, 90).lines == ('INSTANCE "VI_1" BACKUP_PRIORITY 90\n',)
    assert priority_notices(VI_1, FAULT, 90).lines == ('INSTANCE "VI_1" BACKUP_PRIORITY 90\n',)
    assert priority_notices(NotifySettings(INSTANCE, "VI_2"), MASTER, 90) == Notices()


def test_master_rx_lower_pri() -> None:
    notices = rx_lower_notices(VI_1, 150)
    assert notices.launches == (Launch(cmd("/rx.sh")),)
    assert notices.lines == ('INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150\n',)
    assert rx_lower_notices(NotifySettings(INSTANCE, "VI_2"), 90).launches == ()


def test_settings_from_a_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""global_defs {{
    script_user root
    vrrp_notify_priority_changes
    notify_fifo {tmp_path}/same.fifo
    vrrp_notify_fifo {tmp_path}/same.fifo
    vrrp_notify_fifo_script /bin/true
}}
vrrp_sync_group SG1 {{
    group {{
        VI_1
        VI_2
    }}
    notify_priority_changes false
    notify_master /bin/true
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    notify_priority_changes
    notify_deleted
    notify /bin/true
}}
vrrp_instance VI_2 {{
    interface eth0
    virtual_router_id 2
}}
vrrp_instance VI_3 {{
    interface eth0
    virtual_router_id 3
}}
""")
    root = load(str(conf), interfaces={"eth0"}).root
    checked = config_scripts(root)
    settings = notify_settings(root, checked)
    assert list(settings) == ["INSTANCE:VI_1", "INSTANCE:VI_2", "INSTANCE:VI_3", "GROUP:SG1"]
    vi1, vi2, vi3, sg1 = settings.values()
    assert vi1.priority_changes and not vi2.priority_changes and vi3.priority_changes
    assert vi1.notify_deleted and not vi1.by_state and vi1.generic is not None
    assert (vi1.sync_group, vi2.sync_group, vi3.sync_group) == ("SG1", "SG1", None)
    assert set(sg1.by_state) == {MASTER} and sg1.generic is None
    common, vrrp = notify_fifos(root, checked)
    assert common is not None and common.path == f"{tmp_path}/same.fifo"
    assert vrrp is None                 # the same FIFO twice: the vrrp one is ignored
    assert common.owner == ROOT and common.script is None


def test_fifo_owner_and_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripts, "DEFAULT_SCRIPT_USER", "no-such-user-x")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""global_defs {{
    notify_fifo {tmp_path}/a.fifo nobody
    notify_fifo_script "/bin/true x" root
    vrrp_notify_fifo {tmp_path}/b.fifo
}}
""")
    root = load(str(conf), interfaces={"eth0"}).root
    checked = config_scripts(root)
    common, vrrp = notify_fifos(root, checked)
    assert common is not None and vrrp is not None
    assert common.owner.name == "nobody" and vrrp.owner == scripts.our_user()
    assert common.script is not None and common.script.argv[1:] == ("x", f"{tmp_path}/a.fifo")
    # when a checker process runs the global FIFO's script, the VRRP process does not
    common, _ = notify_fifos(root, checked, run_global_script=False)
    assert common is not None and common.script is None


class Recording(Notifier):
    """A Notifier whose FIFO lines are kept in a list (no FIFO, no scripts configured)."""

    def __init__(self, root: Node) -> None:
        super().__init__(root)
        self.lines: list[str] = []

    def _write(self, line: str) -> None:
        self.lines.append(line)


def test_notifier_remembers_what_it_sent(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    members = """vrrp_sync_group SG1 {
    group {
        VI_1
        VI_2
    }
}
"""
    instances = """vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    priority 150
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    notify_deleted
}
"""
    conf.write_text(members + instances)
    notifier = Recording(load(str(conf), interfaces={"eth0"}).root)
    notifier.instance("VI_1", BACKUP, 150)
    notifier.instance("VI_2", BACKUP, 100)
    notifier.group("SG1", BACKUP)
    notifier.instance("VI_1", MASTER, 150)
    notifier.group("SG1", MASTER)
    notifier.instance("VI_2", MASTER, 100)      # synced by its group: the group spoke for it
    assert notifier.lines == ['INSTANCE "VI_1" BACKUP 150\n', 'INSTANCE "VI_2" BACKUP 100\n',
                              'GROUP "SG1" BACKUP 0\n', 'INSTANCE "VI_1" MASTER 150\n',
                              'GROUP "SG1" MASTER 0\n']
    notifier.lines.clear()
    conf.write_text(instances.split("vrrp_instance VI_2")[0])
    asyncio.run(notifier.reload(load(str(conf), interfaces={"eth0"}).root))
    notifier.deleted("VI_2", MASTER, 100)       # its settings come from the old config
    asyncio.run(notifier.stop({"VI_1": 140}))
    assert notifier.lines == ['INSTANCE "VI_2" DELETED 100\n', 'INSTANCE "VI_1" STOP 140\n']
