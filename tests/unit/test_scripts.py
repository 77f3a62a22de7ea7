"""Script words, users and keepalived's script security check (agent/vrrp/scripts.py)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from keepalived_py.config import load
from keepalived_py.config.diag import Level
from keepalived_py.config.script_words import split_script_line
from keepalived_py.host import scripts
from keepalived_py.host.scripts import (
    Sc,
    ScriptError,
    ScriptUser,
    ScriptUsers,
    check_script,
    cmd_str,
    config_scripts,
    insecure_reason,
    is_redirection,
    lookup_user,
    split_command,
)

ROOT = ScriptUser(0, 0, "root")
NOBODY = ScriptUser(65534, 65534, "nobody")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="files must be root's for this case")


# -- words ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "argv"), [
    ("/bin/true", ["/bin/true"]),
    ("  /bin/echo   a  b  ", ["/bin/echo", "a", "b"]),
    ("/bin/sh -c 'exit 1'", ["/bin/sh", "-c", "exit 1"]),
    ('/bin/sh -c "exit 1"', ["/bin/sh", "-c", "exit 1"]),
    ("a\"b c\"d", ["ab cd"]),                          # quotes join, they do not split
    ("x '' y", ["x", "", "y"]),                         # an empty quoted word is a word
    ("'it''s'", ["its"]),
    ("\"a 'b' c\"", ["a 'b' c"]),                       # the other quote is plain inside
    ("a\\ b", ["a b"]),
    ("'a\\'b'", ["a'b"]),                               # escapes work inside quotes too
    ("\\t\\n\\a\\b\\E\\f\\r\\v", ["\t\n\a\b\x1b\f\r\v"]),
    ("\\x41\\x4a", ["AJ"]),
    ("\\x414", ["\x14"]),                               # every hex digit, kept to 8 bits
    ("\\xg", ["xg"]),                                   # \x without a hex digit is x
    ("\\101\\60", ["A0"]),                              # octal, up to three digits
    ("\\1011", ["A1"]),
    ("\\cA\\c[", ["\x01\x1b"]),                         # control characters
    ("a\\0b c", ["a", "c"]),                            # NUL ends the word, as in C
    ("\\q\\\\", ["q\\"]),
    ("tab\tsep\vvt", ["tab", "sep", "vt"]),
    ("", []),
    ("   ", []),
])
def test_split_command(text: str, argv: list[str]) -> None:
    assert split_command(text) == argv


def test_split_command_high_bytes_reach_the_program_as_bytes() -> None:
    [word] = split_command("\\xff\\xc3\\xa9é")
    assert os.fsencode(word) == b"\xff\xc3\xa9\xc3\xa9"


@pytest.mark.parametrize(("text", "message"), [
    ("/bin/sh -c 'exit 1", "missing terminating '"),
    ('"abc', 'missing terminating "'),
    ("abc\\", "Missing escape char at end"),
])
def test_split_command_errors(text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        split_command(text)


def test_split_script_line_splits_twice_like_keepalived() -> None:
    # keepalived 2.2.7 ran this line's notify_backup with exactly this argv (seen in
    # a run of /usr/sbin/keepalived with a script recording its arguments).
    line = r"""notify_backup "/tmp/ta_ka/rec.sh a\x41b 'c d' \\\"e\\\" f\\ g" root"""
    assert split_script_line(line) == (
        ["/tmp/ta_ka/rec.sh", "a\x1b", "c d", '"e"', "f g"], ["root"])
    assert split_script_line("notify /x.sh nobody nogroup") == (["/x.sh"], ["nobody", "nogroup"])
    with pytest.raises(ScriptError):
        split_script_line("notify")


def test_cmd_str_and_redirection() -> None:
    assert cmd_str(["/bin/echo", "a b"]) == "'/bin/echo' 'a b'"
    assert cmd_str(["</dev/tcp/127.0.0.1/80", "x"]) == "</dev/tcp/127.0.0.1/80 'x'"
    assert is_redirection(["< \t/etc/hosts"])
    assert not is_redirection(["<etc/hosts"]) and not is_redirection(["/bin/true"])


# -- users ----------------------------------------------------------------------

def test_lookup_user() -> None:
    assert lookup_user("root") == ROOT
    assert lookup_user("nobody", "root") == ScriptUser(65534, 0, "nobody")
    with pytest.raises(ScriptError, match="Script user 'no-such-user-x' does not exist"):
        lookup_user("no-such-user-x")
    with pytest.raises(ScriptError, match="Script group 'no-such-group-x' does not exist"):
        lookup_user("root", "no-such-group-x")


def test_default_user_is_keepalived_script_when_it_exists(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(scripts, "DEFAULT_SCRIPT_USER", "nobody")
    for security in (False, True):
        assert ScriptUsers(None, security).resolve() == NOBODY


def test_default_user_without_keepalived_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripts, "DEFAULT_SCRIPT_USER", "no-such-user-x")
    me = ScriptUsers(None, security=False)
    assert me.resolve() == scripts.our_user() and me.default_error is None
    refused = ScriptUsers(None, security=True)
    assert refused.resolve(["nobody"]) == NOBODY          # an explicit user still works
    assert refused.default_error is None                  # looked up when first needed
    with pytest.raises(ScriptError, match="Unable to set default user"):
        refused.resolve()
    assert refused.default_error == "Unable to set default user no-such-user-x for script"


def test_global_script_user() -> None:
    assert ScriptUsers(["nobody"], True).resolve() == NOBODY
    assert ScriptUsers(["nobody", "root"]).resolve() == ScriptUser(65534, 0, "nobody")
    bad = ScriptUsers(["no-such-user-x"], False)
    assert bad.default_error is not None and "Error setting global script uid/gid" in \
        bad.default_error
    with pytest.raises(ScriptError):
        bad.resolve()


# -- security ---------------------------------------------------------------------

def _script(directory: Path, name: str = "s.sh", mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


@as_root
def test_a_root_owned_script_is_fine(tmp_path: Path) -> None:
    path = _script(tmp_path / "d")
    result = check_script([str(path), "arg"], ROOT, security=True)
    assert result.reason is None and result.messages == ()
    assert result.argv == (str(path), "arg")
    assert result.flags == Sc.ISSCRIPT | Sc.EXECUTABLE and result.runnable


def test_world_writable_directory_is_insecure_for_root(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    path = _script(directory)
    directory.chmod(0o777)
    reason = insecure_reason([str(path)], ROOT, security=True)
    assert reason == f"Unsafe permissions found for script '{path}' - disabling."
    refused = check_script([str(path)], ROOT, security=True)
    assert refused.flags & Sc.INHIBIT and not refused.runnable and not refused.notify_runnable
    # without enable_script_security keepalived says so, and runs it anyway
    allowed = check_script([str(path)], ROOT, security=False)
    assert allowed.reason == f"Unsafe permissions found for script '{path}'."
    assert allowed.flags & Sc.INSECURE and allowed.runnable and allowed.notify_runnable


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory that every user can walk to (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kpy-scripts-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_nothing_to_protect_when_the_script_does_not_run_as_root(public_dir: Path) -> None:
    directory = public_dir / "open"
    path = _script(directory, mode=0o757)
    directory.chmod(0o777)
    result = check_script([str(path)], NOBODY, security=True)
    assert result.reason is None and result.runnable


@as_root
def test_the_user_must_reach_the_script(tmp_path: Path) -> None:
    path = _script(tmp_path / "d")
    tmp_path.chmod(0o700)
    assert insecure_reason([str(path)], NOBODY) == \
        f"Script {path} cannot be accessed - Permission denied"


@as_root
def test_sticky_world_writable_directory_is_fine(tmp_path: Path) -> None:
    directory = tmp_path / "sticky"
    path = _script(directory)
    directory.chmod(0o1777)
    assert insecure_reason([str(path)], ROOT) is None


@as_root
@pytest.mark.parametrize(("mode", "group", "insecure"), [
    (0o775, 0, False),            # group-writable, but root's group
    (0o775, 65534, True),         # group-writable by another group
    (0o757, 0, True),             # world-writable
])
def test_file_permissions(tmp_path: Path, mode: int, group: int, insecure: bool) -> None:
    path = _script(tmp_path / "d", mode=mode)
    os.chown(path, 0, group)
    assert (insecure_reason([str(path)], ROOT) is not None) is insecure


@as_root
def test_owned_by_another_user_is_insecure(tmp_path: Path) -> None:
    path = _script(tmp_path / "d")
    os.chown(path, 65534, 0)
    assert insecure_reason([str(path)], ROOT) == \
        f"Unsafe permissions found for script '{path}' - disabling."
    os.chown(path, 0, 0)
    os.chown(tmp_path / "d", 65534, 65534)
    assert insecure_reason([str(path)], ROOT) is not None


@as_root
def test_setuid_root_script_is_protected_even_for_nobody(public_dir: Path) -> None:
    directory = public_dir / "open"
    path = _script(directory, mode=0o4755)
    directory.chmod(0o777)
    assert insecure_reason([str(path)], NOBODY) == \
        f"Unsafe permissions found for script '{path}' - disabling."
    path.chmod(0o755)
    assert insecure_reason([str(path)], NOBODY) is None


def test_not_executable(tmp_path: Path) -> None:
    path = _script(tmp_path / "d", mode=0o644)
    result = check_script([str(path)], ROOT, security=True)
    assert result.reason == (f"WARNING - script '{path}' is not executable for uid:gid 0:0"
                             " - disabling.")
    assert result.flags == Sc.ISSCRIPT and not result.runnable


def test_missing_script(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sh"
    result = check_script([str(missing)], ROOT, security=True)
    assert result.reason == f"Script {missing} cannot be accessed - No such file or directory"
    assert result.flags == Sc.NOTFOUND


def test_path_search(tmp_path: Path) -> None:
    path = _script(tmp_path / "bin", "tool")
    search = f"/nonexistent:{tmp_path / 'bin'}"
    result = check_script(["tool", "x"], ROOT, security=False, path=search)
    assert result.argv == (str(path), "x")
    assert result.messages[0] == (f"WARNING - script `tool` resolved by path search to "
                                  f"`{path}`. Please specify full path.")
    missing = check_script(["nothere"], ROOT, security=True, path=search)
    assert missing.reason == "Cannot find script nothere in path - disabling"
    _script(tmp_path / "bin", "plain", mode=0o644)
    denied = check_script(["plain"], ROOT, security=True, path=search)
    assert denied.reason == "Permissions failure for script plain in path - disabling"


@as_root
def test_symlink_keeps_its_name_when_the_target_directory_has_it(tmp_path: Path) -> None:
    real = _script(tmp_path / "d", "real.sh")
    (tmp_path / "d" / "alias").symlink_to("real.sh")
    same_dir = check_script([str(tmp_path / "d" / "alias")], ROOT, security=True)
    assert same_dir.argv == (str(tmp_path / "d" / "alias"),) and same_dir.reason is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other-name").symlink_to(real)
    elsewhere = check_script([str(tmp_path / "other" / "other-name")], ROOT, security=True)
    assert elsewhere.argv == (str(real),)


@as_root
def test_directory_is_the_wrong_file_type(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    directory.chmod(0o755)
    assert insecure_reason([str(directory)], ROOT) == \
        f"Wrong file type found in script path '{directory}'."


def test_redirection_is_left_to_the_shell() -> None:
    result = check_script(["</etc/hostname"], ROOT, security=True)
    assert result.flags == Sc.SYSTEM and result.runnable and not result.notify_runnable


# -- a whole configuration ----------------------------------------------------------

def _config(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    return conf


def test_config_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripts, "DEFAULT_SCRIPT_USER", "no-such-user-x")
    open_dir = tmp_path / "open"
    bad = _script(open_dir, "bad.sh")
    open_dir.chmod(0o777)
    safe = Path("/bin/true")
    conf = _config(tmp_path, f"""global_defs {{
    enable_script_security
    vrrp_notify_fifo {tmp_path}/fifo
    vrrp_notify_fifo_script "{safe} fifo" root
}}
vrrp_script chk_bad {{
    script "{bad} arg"
    user root
}}
vrrp_script chk_default_user {{
    script {safe}
}}
vrrp_sync_group SG1 {{
    group {{
        VI_1
    }}
    notify "{safe} group" root
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    notify_master "{bad}" root
    notify "{safe} x" nobody
    notify_deleted
    track_script {{
        chk_bad
    }}
}}
""")
    result = config_scripts(load(str(conf), interfaces={"eth0"}).root)
    assert result.security
    real_true = os.path.realpath(safe)
    assert result.get("vrrp_instance", "VI_1", "notify").argv == (real_true, "x")
    assert result.get("vrrp_instance", "VI_1", "notify").user == NOBODY
    assert result.get("vrrp_sync_group", "SG1", "notify").argv == (real_true, "group")
    assert result.get("global_defs", None, "vrrp_notify_fifo_script").argv == (real_true, "fifo")
    assert result.get("vrrp_instance", "VI_1", "notify_master") is None
    assert result.get("vrrp_script", "chk_bad", "script") is None
    assert result.get("vrrp_script", "chk_default_user", "script") is None
    assert result.get("vrrp_instance", "VI_1", "notify_deleted") is None
    messages = [(d.level, d.message, d.where.line if d.where else None)
                for d in result.diagnostics]
    unsafe = f"Unsafe permissions found for script '{bad}' - disabling."
    assert (Level.GENERAL_ERROR, unsafe, 7) in messages
    assert (Level.GENERAL_ERROR, "Disabling track script chk_bad due to insecure", 7) in messages
    assert (Level.GENERAL_ERROR, unsafe, 22) in messages
    assert (Level.GENERAL_ERROR,
            "Unable to set default user for vrrp script chk_default_user - removing",
            11) in messages
    assert (Level.GENERAL_ERROR, "Unable to set default user no-such-user-x for script",
            11) in messages
    assert not [m for m in messages if m[0] is Level.SECURITY_ERROR]


def test_security_violation_without_script_security(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    bad = _script(open_dir, "bad.sh")
    open_dir.chmod(0o777)
    conf = _config(tmp_path, f"""vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
    notify_master {bad} root
}}
global_defs {{
    startup_script /bin/true root
}}
""")
    result = config_scripts(load(str(conf), interfaces={"eth0"}).root)
    assert result.get("vrrp_instance", "VI_1", "notify_master").argv == (str(bad),)
    violations = [d.message for d in result.diagnostics if d.level is Level.SECURITY_ERROR]
    assert violations == [
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
        " There are insecure scripts.",
        "SECURITY VIOLATION - start/shutdown scripts are being executed but script_security"
        " not enabled."]


def test_unknown_user_on_a_notify_script(tmp_path: Path) -> None:
    conf = _config(tmp_path, """vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    notify_backup /bin/true no-such-user-x
}
""")
    result = config_scripts(load(str(conf), interfaces={"eth0"}).root, security=True)
    assert [d.message for d in result.diagnostics] == [
        "Script user 'no-such-user-x' does not exist",
        "Invalid user/group for notify script /bin/true - ignoring"]
    assert result.diagnostics[0].where is not None and result.diagnostics[0].where.line == 4


def test_stat_helpers_agree_with_keepalived() -> None:
    st = os.stat_result((stat.S_IFREG | 0o010, 0, 0, 1, 5, 7, 0, 0, 0, 0))
    assert scripts.is_executable(st, 0, 0)                 # root needs any x bit
    assert not scripts.is_executable(st, 5, 7)             # owner bits only for the owner
    assert scripts.is_executable(st, 6, 7)                 # group bits for the group
    assert not scripts.is_executable(st, 6, 8)
