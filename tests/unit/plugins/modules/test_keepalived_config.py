"""keepalived_config on the target: compare, check with the agent, write atomically, reload.

The module runs in-process (agent_double.run_module) against a file in a temporary
directory.  The agent is its real command line (the ``agent`` fixture), so ``-t``
checks the text as it would on a host; the daemon behind ``reload`` is a
FakeDaemon that accepts or refuses.  No root needed except where owners change.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.keepalived_py.ha.plugins.module_utils.keepalived_config import (
    HEADER,
    mask_secrets,
    read_config_test,
)
from ansible_collections.keepalived_py.ha.plugins.modules import keepalived_config

from .agent_double import FakeDaemon, agent_dir, run_module, script, status_answer


def an_interface() -> str | None:
    """A link of this host that an instance may use (not lo), if there is one."""
    return next((name for _i, name in socket.if_nameindex() if name != "lo"), None)


def config(interface: str | None = None, *, password: str = "s3cret",
           vips: tuple[str, ...] = ("192.0.2.10/24",)) -> str:
    """A file as the action sends it: header and canonical text."""
    name = interface or an_interface()
    dynamic = "" if name else "global_defs {\n    dynamic_interfaces\n}\n"
    lines = "".join(f"        {v}\n" for v in vips)
    return (HEADER + dynamic + "vrrp_instance VI_1 {\n    state MASTER\n"
            f"    interface {name or 'eth0'}\n    virtual_router_id 51\n    priority 150\n"
            "    authentication {\n        auth_type PASS\n"
            f"        auth_pass {password}\n    }}\n"
            f"    virtual_ipaddress {{\n{lines}    }}\n}}\n")


class ReloadDaemon(FakeDaemon):
    """The control socket of a running agent that applies (or refuses) a reload."""

    accept = True

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("request") == "reload":
            self.requests.append(request)
            if self.accept:
                return {"ok": True}
            return {"ok": False, "errors": ["keepalived.conf:9: error: refused for the test"]}
        return await super()._handle(request)


@pytest.fixture
def daemon(workdir: Path):
    started = ReloadDaemon(status_answer(), workdir).start()
    yield started
    started.close()


@pytest.fixture
def dest(workdir: Path) -> Path:
    directory = workdir / "etc"
    directory.mkdir()
    return directory / "keepalived.conf"


def run(args: dict[str, Any], capsys, **kwargs: Any) -> dict[str, Any]:
    return run_module(keepalived_config.main, args, capsys, **kwargs)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- writing ------------------------------------------------------------------------

def test_new_file_written_checked_and_private(agent, dest, capsys):
    text = config()
    result = run({"content": text, "dest": str(dest), "agent": agent}, capsys)
    assert result["rc_exit"] == 0, result
    assert result["changed"] is True and result["validated"] is True
    assert result["reloaded"] is False          # no agent running: not an error
    assert result["dest"] == str(dest)
    assert dest.read_text() == text
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert leftovers(dest.parent) == []
    assert result["diagnostics"] == []


def test_same_bytes_are_no_change(agent, dest, capsys, daemon):
    text = config()
    dest.write_text(text)
    before = dest.stat()
    result = run({"content": text, "dest": str(dest), "agent": agent,
                  "control_socket": daemon.socket}, capsys)
    assert result["changed"] is False and result["reloaded"] is False
    assert result["validated"] is False         # nothing new to check
    assert daemon.requested("reload") == []
    assert dest.stat().st_mtime_ns == before.st_mtime_ns


def test_mode_owner_and_group_are_kept(agent, dest, capsys):
    dest.write_text("# old\n")
    dest.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(dest, 65534, 65534)
    result = run({"content": config(), "dest": str(dest), "agent": agent}, capsys)
    assert result["changed"] is True
    st = dest.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_symlink_is_followed(agent, dest, capsys):
    real = dest.parent / "real.conf"
    real.write_text("# old\n")
    dest.symlink_to(real)
    run({"content": config(), "dest": str(dest), "agent": agent}, capsys)
    assert dest.is_symlink() and real.read_text() == config()


def test_backup_keeps_the_previous_file(agent, dest, capsys):
    dest.write_text("# the old one\n")
    result = run({"content": config(), "dest": str(dest), "agent": agent, "backup": True},
                 capsys)
    backup = Path(result["backup_file"])
    assert backup.parent == dest.parent and backup.read_text() == "# the old one\n"


def test_a_failed_write_leaves_the_old_file_whole(dest, monkeypatch):
    dest.write_text("# old\n")

    def full_disk(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        keepalived_config.write_atomically(str(dest), b"# new\n", dest.stat())
    assert dest.read_text() == "# old\n" and leftovers(dest.parent) == []


def test_missing_directory_fails(agent, workdir, capsys):
    dest = workdir / "nowhere" / "keepalived.conf"
    result = run({"content": config(), "dest": str(dest), "agent": agent}, capsys)
    assert result["failed"] is True and "does not exist" in result["msg"]


# -- check mode and diff ---------------------------------------------------------------

def test_check_mode_checks_but_writes_nothing(agent, dest, capsys, daemon):
    dest.write_text("# old\n")
    result = run({"content": config(), "dest": str(dest), "agent": agent,
                  "control_socket": daemon.socket}, capsys, check_mode=True, diff=True)
    assert result["changed"] is True and result["validated"] is True
    assert result["reloaded"] is False and daemon.requested("reload") == []
    assert dest.read_text() == "# old\n"
    assert leftovers(dest.parent) == []
    assert result["diff"]["before"] == "# old\n"


def test_check_mode_reports_the_host_errors_too(agent, dest, capsys):
    result = run({"content": config("kpy-no-such0"), "dest": str(dest), "agent": agent},
                 capsys, check_mode=True)
    assert result["failed"] is True and not dest.exists()


def test_diff_has_headers_and_no_password(agent, dest, capsys):
    dest.write_text(config(password="oldpass1"))
    result = run({"content": config(password="newpass2"), "dest": str(dest), "agent": agent},
                 capsys, diff=True)
    diff = result["diff"]
    assert diff["before_header"] == diff["after_header"] == str(dest)
    assert "auth_pass ********" in diff["before"] and "auth_pass ********" in diff["after"]
    assert diff["after"] == mask_secrets(config(password="newpass2"))
    whole = json.dumps(result)
    assert "oldpass1" not in whole and "newpass2" not in whole
    # the text itself stays readable in the invocation, its secret masked
    assert "virtual_router_id 51" in result["invocation"]["module_args"]["content"]
    assert dest.read_text() == config(password="newpass2")


def test_diff_of_a_new_file(agent, dest, capsys):
    result = run({"content": config(), "dest": str(dest), "agent": agent}, capsys, diff=True)
    assert result["diff"]["before"] == "" and result["diff"]["before_header"].endswith("(absent)")


# -- the agent's check on the host ---------------------------------------------------------

def test_host_errors_fail_before_the_file_is_touched(agent, dest, capsys):
    dest.write_text("# old\n")
    result = run({"content": config("kpy-no-such0"), "dest": str(dest), "agent": agent},
                 capsys)
    assert result["failed"] is True and result["changed"] is False
    assert "interface kpy-no-such0 for vrrp_instance VI_1 doesn't exist" in result["msg"]
    assert "line 4:" in result["msg"]           # the line of the file sent (header is 1)
    assert {"line": 4, "kind": "error",
            "message": "WARNING - interface kpy-no-such0 for vrrp_instance VI_1 doesn't exist"} \
        in result["diagnostics"]
    assert dest.read_text() == "# old\n" and leftovers(dest.parent) == []


def test_warnings_only_from_the_agent_pass(agent, dest, capsys):
    # unicast_src_ip without peers: deprecated, a warning; -t exits 5 all the same
    text = config().replace("    priority 150\n", "    priority 150\n    unicast_src_ip 10.0.0.1\n")
    result = run({"content": text, "dest": str(dest), "agent": agent}, capsys)
    assert result["rc_exit"] == 0, result
    assert [d["kind"] for d in result["diagnostics"]] == ["warning"]
    assert dest.read_text() == text


def test_an_agent_that_cannot_run(workdir, dest, capsys):
    broken = script(workdir, "broken-agent", "echo 'Traceback: something broke' >&2; exit 1")
    result = run({"content": config(), "dest": str(dest), "agent": broken}, capsys)
    assert result["failed"] is True and "exit 1" in result["msg"]
    assert "something broke" in result["msg"] and not dest.exists()


def test_no_agent_installed_writes_with_a_warning(workdir, dest, capsys):
    result = run({"content": config(), "dest": str(dest),
                  "agent": str(workdir / "not-installed")}, capsys)
    assert result["changed"] is True and result["validated"] is False
    assert any("not installed" in w for w in result["warnings"])
    assert dest.read_text() == config()


def test_a_bare_agent_name_is_looked_up_in_path(agent, dest, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(agent).parent}:{os.environ['PATH']}")
    result = run({"content": config(), "dest": str(dest), "agent": "keepalived-py"}, capsys)
    assert result["changed"] is True and result["validated"] is True


# -- reload -------------------------------------------------------------------------------

def test_reload_when_changed(agent, dest, capsys, daemon):
    result = run({"content": config(), "dest": str(dest), "agent": agent,
                  "control_socket": daemon.socket}, capsys)
    assert result["reloaded"] is True
    assert daemon.requested("reload") == [{"request": "reload"}]


def test_no_reload_when_told(agent, dest, capsys, daemon):
    result = run({"content": config(), "dest": str(dest), "agent": agent, "reload": False,
                  "control_socket": daemon.socket}, capsys)
    assert result["changed"] is True and result["reloaded"] is False
    assert daemon.requested("reload") == []


def test_refused_reload_puts_the_previous_file_back(agent, dest, capsys, daemon):
    daemon.accept = False
    dest.write_text("# what the agent runs\n")
    dest.chmod(0o600)
    result = run({"content": config(), "dest": str(dest), "agent": agent,
                  "control_socket": daemon.socket}, capsys)
    assert result["failed"] is True
    assert "refused for the test" in result["msg"] and "put back" in result["msg"]
    assert dest.read_text() == "# what the agent runs\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert leftovers(dest.parent) == []


def test_refused_reload_of_a_new_file_removes_it(agent, dest, capsys, daemon):
    daemon.accept = False
    result = run({"content": config(), "dest": str(dest), "agent": agent,
                  "control_socket": daemon.socket}, capsys)
    assert result["failed"] is True and not dest.exists()


def test_reload_goes_to_the_agent_named(keyed_agent, run_dir, dest, capsys):
    """namespace and agent_instance reach `keepalived-py reload` as --namespace/--instance."""
    daemons = {name: ReloadDaemon(status_answer(), agent_dir(run_dir, "blue", name)).start()
               for name in ("edge", "core")}
    try:
        result = run({"content": config(), "dest": str(dest), "agent": keyed_agent,
                      "namespace": "blue", "agent_instance": "edge"}, capsys)
    finally:
        for daemon in daemons.values():
            daemon.close()
    assert result["reloaded"] is True
    assert daemons["edge"].requested("reload") == [{"request": "reload"}]
    assert daemons["core"].requests == []


def test_several_agents_fail_and_put_the_file_back(keyed_agent, run_dir, dest, capsys):
    """Exit 3 then is not an agent that is not running: the task fails naming them."""
    daemons = [ReloadDaemon(status_answer(), agent_dir(run_dir, "blue", name)).start()
               for name in ("a", "b")]
    dest.write_text("# what the agents run\n")
    try:
        result = run({"content": config(), "dest": str(dest), "agent": keyed_agent,
                      "namespace": "blue"}, capsys)
    finally:
        for daemon in daemons:
            daemon.close()
    assert result["failed"] is True and result["reloaded"] is False
    assert result["msg"] == ("several keepalived-py agents run in namespace blue (instances "
                             "a, b): name the one meant with the option agent_instance; "
                             f"{dest} was put back as it was, nothing reloaded")
    assert dest.read_text() == "# what the agents run\n"
    assert [d.requests for d in daemons] == [[], []]


# -- arguments -----------------------------------------------------------------------------

def test_structured_variables_need_the_action(agent, dest, capsys):
    result = run({"instances": [{"name": "VI_1"}], "dest": str(dest), "agent": agent}, capsys)
    assert result["failed"] is True and "action plugin" in result["msg"]


def test_content_and_variables_exclude_each_other(agent, dest, capsys):
    result = run({"content": config(), "instances": [], "dest": str(dest), "agent": agent},
                 capsys)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]


# -- module_utils ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "masked"), [
    ("    auth_pass s3cret\n", "    auth_pass ********\n"),
    ("auth_pass \"a b\" # c\n", "auth_pass ********\n"),
    ("authentication { auth_type PASS auth_pass s3cret }\n",
     "authentication { auth_type PASS auth_pass ********\n"),
    ("    key 1 0123456789abcdef\n", "    key ********\n"),
    ("SSL {\n    password hunter2\n}\n", "SSL {\n    password ********\n}\n"),
    ("    virtual_router_id 51\n    keyword_like_key 3\n",
     "    virtual_router_id 51\n    keyword_like_key 3\n"),
])
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


def test_read_config_test_output():
    output = ("/tmp/x.conf:4: error: WARNING - interface eth9 doesn't exist\n"
              "/tmp/other.conf:2: warning: something\n"
              "error: Non-existent interface specified in configuration\n"
              "security: SECURITY VIOLATION - scripts are being executed\n"
              "note: read but not acted on by this version of the agent yet: x\n"
              "/tmp/x.conf: configuration test: general error (exit 5)\n")
    assert read_config_test(output, "/tmp/x.conf") == [
        {"line": 4, "kind": "error", "message": "WARNING - interface eth9 doesn't exist"},
        {"line": None, "kind": "warning", "message": "/tmp/other.conf:2: something"},
        {"line": None, "kind": "error",
         "message": "Non-existent interface specified in configuration"},
        {"line": None, "kind": "security",
         "message": "SECURITY VIOLATION - scripts are being executed"},
    ]
