"""Scripts as keepalived 2.2.7 runs them: words, users, security checks, processes.

keepalived (lib/notify.c, lib/parser.c) splits a configured script string into
argv itself and execs it without a shell; it runs it as a chosen user in its own
process group with parent-death SIGTERM; and, before anything runs, it checks
that a script run as root cannot be replaced by a non-root user.  This module
does the same:

- :func:`split_command` - the string to argv (``alloc_strvec_quoted_escaped``);
- :class:`ScriptUsers` - who runs a script (``script_user``, ``USER [GROUP]``,
  ``keepalived_script``, ``enable_script_security``);
- :func:`check_script` / :func:`insecure_reason` - ``check_script_secure``;
- :func:`config_scripts` - every script of a configuration, checked, with
  keepalived's messages at the right file:line;
- :func:`run_script` / :func:`spawn_script` - the processes.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import grp
import logging
import os
import pwd
import signal
import stat
import subprocess
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import IntFlag

from ..config.diag import Level, Where
from ..config.model import Node
from ..config.script_words import (
    ScriptError,
    cmd_str,
    is_redirection,
    split_command,
)

log = logging.getLogger("keepalived_py.host")

DEFAULT_SCRIPT_USER = "keepalived_script"
# keepalived's process umask unless `umask` or -m says otherwise (lib/utils.c umask_val);
# scripts and FIFOs inherit it.
KEEPALIVED_UMASK = 0o177
TERM_GRACE = 2.0        # after a timeout's SIGTERM, this long before SIGKILL (vrrp_scheduler.c)

_NAME_MAX = 255
_PATH_MAX = 4096


# -- users --------------------------------------------------------------------

@dataclass(frozen=True)
class ScriptUser:
    uid: int
    gid: int
    name: str


def our_user() -> ScriptUser:
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return ScriptUser(uid, gid, name)


def lookup_user(user: str, group: str | None = None) -> ScriptUser:
    """``USER [GROUP]`` as keepalived resolves it: the group defaults to the user's own."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ScriptError(f"Script user '{user}' does not exist") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ScriptError(f"Script group '{group}' does not exist") from None
    return ScriptUser(entry.pw_uid, gid, user)


class ScriptUsers:
    """Who runs scripts for one configuration (lib/notify.c ``get_default_script_user``).

    The default is the global ``script_user USER [GROUP]``; without it the user
    ``keepalived_script`` if it exists, else the user keepalived runs as, except
    that with ``enable_script_security`` that fallback is refused.  keepalived
    resolves ``script_user`` when it reads it and the fallback when a script
    first needs it; a failure (``default_error``) is reported once and every
    script that needs the default then fails.
    """

    def __init__(self, script_user: Sequence[str] | None = None, security: bool = False) -> None:
        self.security = security
        self.default: ScriptUser | None = None
        self.default_error: str | None = None
        self._looked_up = bool(script_user)
        if script_user:
            try:
                self.default = lookup_user(script_user[0], _at(script_user, 1))
            except ScriptError as err:
                self.default_error = f"{err}; Error setting global script uid/gid"

    def resolve(self, words: Sequence[str] = ()) -> ScriptUser:
        """``USER [GROUP]`` when given, else the default; raises :class:`ScriptError`."""
        if words:
            return lookup_user(words[0], _at(words, 1))
        if not self._looked_up:
            self._looked_up = True
            try:
                self.default = lookup_user(DEFAULT_SCRIPT_USER)
            except ScriptError:
                if self.security:
                    self.default_error = (f"Unable to set default user {DEFAULT_SCRIPT_USER} "
                                          "for script")
                else:
                    self.default = our_user()
        if self.default is None:
            raise ScriptError(self.default_error or "no default script user")
        return self.default


def _at(words: Sequence[str], index: int) -> str | None:
    return words[index] if len(words) > index else None


@dataclass(frozen=True)
class ScriptCommand:
    """A script ready to run: argv (after keepalived's path search and realpath), its
    user, and whether the shell runs it (only the ``</file`` form)."""

    argv: tuple[str, ...]
    user: ScriptUser
    shell: bool = False

    def with_args(self, *extra: str) -> ScriptCommand:
        return replace(self, argv=(*self.argv, *extra))


# -- security (lib/notify.c check_script_secure) --------------------------------

class Sc(IntFlag):
    """keepalived's SC_* result bits."""

    INSECURE = 0x01
    ISSCRIPT = 0x02
    INHIBIT = 0x04
    NOTFOUND = 0x08
    EXECUTABLE = 0x10
    SYSTEM = 0x40


@dataclass(frozen=True)
class SecurityCheck:
    argv: tuple[str, ...]           # as it will run: found on PATH, symlinks resolved
    flags: Sc
    messages: tuple[str, ...]       # what keepalived logs, in order
    reason: str | None              # the message saying why it is refused or insecure

    @property
    def runnable(self) -> bool:
        """A vrrp_script, MISC_CHECK or startup/shutdown script runs (check_track_script_secure)."""
        return not self.flags & (Sc.INHIBIT | Sc.NOTFOUND) and bool(
            self.flags & (Sc.EXECUTABLE | Sc.SYSTEM))

    @property
    def notify_runnable(self) -> bool:
        """A notify script runs (check_notify_script_secure): a ``</file`` one never does."""
        return not self.flags & (Sc.INHIBIT | Sc.NOTFOUND) and bool(self.flags & Sc.EXECUTABLE)


def is_executable(st: os.stat_result, uid: int, gid: int) -> bool:
    """keepalived's test: only the primary group counts, root needs any x bit."""
    mode = st.st_mode
    if uid == 0 and mode & 0o111:
        return True
    if uid == st.st_uid:
        return bool(mode & stat.S_IXUSR)
    if gid == st.st_gid:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def _search_denied(path: str, user: ScriptUser) -> bool:
    """Whether ``user`` may not walk the directories to ``path`` (keepalived switches to
    the user's euid/egid to look; we read the mode bits instead)."""
    if user.uid == 0:
        return False
    names = os.path.abspath(path).split("/")[1:-1]
    directories = ["/"] + ["/" + "/".join(names[:i]) for i in range(1, len(names) + 1)]
    for directory in directories:
        try:
            st = os.stat(directory)
        except OSError:
            return False                # the lookup itself says what is wrong
        if not _may(st, user, 0o1):
            return True
    return False


def _may(st: os.stat_result, user: ScriptUser, bit: int) -> bool:
    if user.uid == st.st_uid:
        return bool(st.st_mode & (bit << 6))
    if user.gid == st.st_gid:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _path_search(name: str, user: ScriptUser, path: str | None) -> tuple[str | None, int]:
    """glibc's execvp search as keepalived repeats it: the file, or an errno."""
    if not name:
        return None, errno.ENOENT
    if len(name) >= _PATH_MAX or len(name) > _NAME_MAX:
        return None, errno.ENAMETOOLONG
    if path is None:
        path = os.environ.get("PATH")
        if path is None:
            path = os.confstr("CS_PATH") or "/bin:/usr/bin"
    got_eacces = False
    for directory in path.split(":"):
        candidate = f"{directory}/{name}" if directory else name
        try:
            st = os.stat(candidate)
        except PermissionError:
            got_eacces = True
            continue
        except OSError:
            continue
        if _search_denied(candidate, user) or not stat.S_ISREG(st.st_mode) or \
                not is_executable(st, user.uid, user.gid):
            got_eacces = True
            continue
        return candidate, 0
    return None, errno.EACCES if got_eacces else errno.ENOENT


def _path_security(filename: str, security: bool) -> tuple[Sc, str | None]:
    """Every element of the path, from ``/``, must be root's and not writable by
    anyone else (a directory may be if it is sticky)."""
    parts = filename.split("/")
    prefixes = ["/" if i == 1 and not parts[0] else "/".join(parts[:i])
                for i in range(1, len(parts))]
    for index, element in enumerate([*prefixes, filename]):
        last = index == len(prefixes)
        try:
            st = os.lstat(element)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
                return Sc.NOTFOUND, f"check_script_secure could not find script '{filename}'" \
                                    " - disabling"
            return Sc.NOTFOUND, (f"check_script_secure('{filename}') returned errno "
                                 f"{err.errno} - {os.strerror(err.errno)} - disabling")
        mode = st.st_mode
        if (not last and not stat.S_ISDIR(mode)) or \
                (last and not stat.S_ISREG(mode) and not stat.S_ISLNK(mode)):
            return Sc.INHIBIT, f"Wrong file type found in script path '{filename}'."
        writable_kind = (stat.S_ISDIR(mode) and not mode & stat.S_ISVTX) or stat.S_ISREG(mode)
        others_write = (st.st_gid and mode & stat.S_IWGRP) or mode & stat.S_IWOTH
        if st.st_uid or (writable_kind and others_write):
            suffix = " - disabling" if security else ""
            flags = Sc.INSECURE | (Sc.INHIBIT if security else Sc(0))
            return flags, f"Unsafe permissions found for script '{filename}'{suffix}."
    return Sc(0), None


def check_script(argv: Sequence[str], user: ScriptUser, security: bool,
                 path: str | None = None) -> SecurityCheck:
    """keepalived's ``check_script_secure`` for a script run as ``user``.

    ``path`` stands for keepalived's ``$PATH`` (our own by default).  Deliberate
    difference: access as the script's user is judged from the mode bits (no
    ACLs), where keepalived switches its effective ids.
    """
    messages: list[str] = []

    def done(flags: Sc, reason: str | None, words: Sequence[str] = argv) -> SecurityCheck:
        if reason:
            messages.append(reason)
        return SecurityCheck(tuple(words), flags, tuple(messages), reason)

    if not argv:
        return done(Sc.NOTFOUND, "empty script - disabling")
    if is_redirection(argv):
        return done(Sc.SYSTEM, None)
    words = list(argv)
    if "/" not in words[0]:
        found, err = _path_search(words[0], user, path)
        if found is None:
            what = "Permissions failure for" if err == errno.EACCES else "Cannot find"
            return done(Sc.NOTFOUND, f"{what} script {words[0]} in path - disabling")
        messages.append(f"WARNING - script `{words[0]}` resolved by path search to `{found}`."
                        " Please specify full path.")
        words[0] = found

    try:
        if _search_denied(words[0], user):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        resolved = os.path.realpath(words[0], strict=True)
    except OSError as err:
        reason = f"Script {words[0]} cannot be accessed - {os.strerror(err.errno or 0)}"
        return done(Sc.NOTFOUND, reason, words)

    # Keep the name the script was called by (some programs look at argv[0]) when the
    # resolved directory holds the same file under that name.
    real_file: str | None = None
    if resolved != words[0]:
        given_name = words[0].rsplit("/", 1)[1]
        real_dir, real_name = resolved.rsplit("/", 1)
        new_path = resolved
        if given_name != real_name:
            renamed = f"{real_dir}/{given_name}"
            if _same_file(renamed, resolved):
                new_path, real_file = renamed, resolved
        words[0] = new_path

    try:
        st = os.stat(real_file or words[0])
    except OSError:
        return done(Sc.NOTFOUND, f"Unable to access script `{words[0]}` - disabling", words)

    flags = Sc.ISSCRIPT
    protect = False
    if is_executable(st, user.uid, user.gid):
        flags |= Sc.EXECUTABLE
        setuid_root = st.st_uid == 0 and st.st_mode & stat.S_IXUSR and st.st_mode & stat.S_ISUID
        setgid_root = st.st_gid == 0 and st.st_mode & stat.S_IXGRP and st.st_mode & stat.S_ISGID
        protect = user.uid == 0 or user.gid == 0 or bool(setuid_root or setgid_root)
    else:
        reason = (f"WARNING - script '{words[0]}' is not executable for uid:gid "
                  f"{user.uid}:{user.gid} - disabling.")
        return done(flags, reason, words)
    if not protect:
        return done(flags, None, words)
    reason = None
    for name in (words[0], real_file):
        if name is None:
            continue
        more, message = _path_security(name, security)
        flags |= more
        reason = reason or message
        if message:
            messages.append(message)
    return SecurityCheck(tuple(words), flags, tuple(messages), reason)


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def insecure_reason(argv: Sequence[str], user: ScriptUser, security: bool = True,
                    path: str | None = None) -> str | None:
    """The message keepalived logs when this script is refused or insecure, or None."""
    return check_script(argv, user, security, path).reason


# -- every script of a configuration ---------------------------------------------

@dataclass(frozen=True)
class ScriptDiagnostic:
    level: Level
    message: str
    where: Where | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


ScriptKey = tuple[str, str | None, str]      # (block kind, block name, keyword)


@dataclass
class ConfigScripts:
    """The scripts of one configuration after keepalived's checks.

    ``commands`` holds what may run, keyed ``(block kind, block name, keyword)``,
    e.g. ``("vrrp_instance", "VI_1", "notify_master")``, ``("vrrp_script", "chk",
    "script")``, ``("global_defs", None, "vrrp_notify_fifo_script")``.  A refused
    script is absent and ``disabled`` says why.
    """

    users: ScriptUsers
    security: bool
    commands: dict[ScriptKey, ScriptCommand] = field(default_factory=dict)
    disabled: dict[ScriptKey, str] = field(default_factory=dict)
    diagnostics: list[ScriptDiagnostic] = field(default_factory=list)
    _default_reported: bool = False

    def get(self, kind: str, name: str | None, keyword: str) -> ScriptCommand | None:
        return self.commands.get((kind, name, keyword))

    def note(self, level: Level, message: str, where: Where | None) -> None:
        self.diagnostics.append(ScriptDiagnostic(level, message, where))

    def user(self, words: Sequence[str], where: Where | None) -> ScriptUser:
        """Resolve a script's user; the default's failure is reported the first time."""
        try:
            return self.users.resolve(words)
        except ScriptError:
            if not words and not self._default_reported and self.users.default_error:
                self._default_reported = True
                self.note(Level.GENERAL_ERROR, self.users.default_error, where)
            raise


# What keepalived does with an instance's or group's refused notify script: it is
# dropped, the other notifications still happen.
_VRRP_NOTIFY = ("notify_backup", "notify_master", "notify_fault", "notify_stop",
                "notify_deleted", "notify", "notify_master_rx_lower_pri")
_GROUP_NOTIFY = ("notify_backup", "notify_master", "notify_fault", "notify_stop", "notify")


def config_scripts(root: Node, security: bool | None = None,
                   path: str | None = None) -> ConfigScripts:
    """Resolve users for, and security-check, every script of a configuration.

    Messages follow keepalived's (vrrp.c ``check_vrrp_script_security``,
    check_data.c ``check_check_script_security``, main.c start/stop scripts).
    keepalived reads the global settings as it meets them; we apply
    ``global_defs`` to every script wherever it stands in the file.
    """
    glob = _global(root)
    if security is None:
        security = bool(glob is not None and glob.get("enable_script_security"))
    script_user = glob.get("script_user") if glob is not None else None
    users = ScriptUsers(script_user, security)
    out = ConfigScripts(users, security)
    if users.default_error:
        where = glob.value_where.get("script_user") if glob is not None else None
        out.note(Level.GENERAL_ERROR, users.default_error, where)
        out._default_reported = True

    vrrp_flags = Sc(0)
    for vscript in root.blocks("vrrp_script"):
        vrrp_flags |= _check_track_script(out, vscript, path)
    for kind, keywords in (("vrrp_instance", _VRRP_NOTIFY), ("vrrp_sync_group", _GROUP_NOTIFY)):
        for node in root.blocks(kind):
            for keyword in keywords:
                vrrp_flags |= _check_notify(out, node, (kind, node.head, keyword), "notify",
                                            path)
    if glob is not None:
        for keyword in ("notify_fifo_script", "vrrp_notify_fifo_script"):
            vrrp_flags |= _check_notify(out, glob, ("global_defs", None, keyword),
                                        keyword.removesuffix("_script"), path)
    _violation(out, vrrp_flags, "scripts")

    check_flags = _check_lvs(out, root, path)
    if glob is not None:
        check_flags |= _check_notify(out, glob, ("global_defs", None, "lvs_notify_fifo_script"),
                                     "lvs_notify_fifo", path)
    _violation(out, check_flags, "check scripts")

    parent_flags = Sc(0)
    if glob is not None:
        for keyword in ("startup_script", "shutdown_script"):
            parent_flags |= _check_start_stop(out, glob, keyword, path)
    _violation(out, parent_flags, "start/shutdown scripts")
    return out


def _global(root: Node) -> Node | None:
    blocks = root.blocks("global_defs")
    return blocks[0] if blocks else None


def _violation(out: ConfigScripts, flags: Sc, what: str) -> None:
    if out.security or not flags & Sc.ISSCRIPT:
        return
    extra = " There are insecure scripts." if flags & Sc.INSECURE else ""
    out.note(Level.SECURITY_ERROR,
             f"SECURITY VIOLATION - {what} are being executed but script_security not "
             f"enabled.{extra}", None)


def _command(value: Sequence[str]) -> list[str]:
    """argv from a parsed ``COMMAND [USER [GROUP]]`` value.

    keepalived re-splits the raw line (quotes and escapes) and then splits its
    second word again; the parsed value has lost the raw line, so the command
    word is split once.  The two agree unless the line has a single quote or a
    backslash outside the double-quoted command.
    """
    return split_command(value[0]) if value else []


def _prepare(out: ConfigScripts, node: Node, keyword: str, value: Sequence[str],
             user_words: Sequence[str], what: str) -> ScriptCommand | None:
    where = node.value_where.get(keyword)
    try:
        argv = _command(value)
    except ScriptError as err:
        out.note(Level.GENERAL_ERROR, str(err), where)
        out.note(Level.GENERAL_ERROR, f"Unable to parse script '{value[0]}' - ignoring", where)
        return None
    if not argv:
        out.note(Level.GENERAL_ERROR, f"Unable to parse script '{value[0]}' - ignoring", where)
        return None
    try:
        user = out.user(user_words, where)
    except ScriptError as err:
        if user_words:
            out.note(Level.GENERAL_ERROR, str(err), where)
            out.note(Level.GENERAL_ERROR,
                     f"Invalid user/group for {what} script {argv[0]} - ignoring", where)
        else:
            out.note(Level.GENERAL_ERROR,
                     f"Failed to set default user for {what} script {argv[0]} - ignoring", where)
        return None
    return ScriptCommand(tuple(argv), user)


def _checked(out: ConfigScripts, command: ScriptCommand, where: Where | None,
             path: str | None) -> SecurityCheck:
    check = check_script(command.argv, command.user, out.security, path)
    for message in check.messages:
        out.note(Level.GENERAL_ERROR if message is check.reason else Level.NOTE, message, where)
    return check


def _check_notify(out: ConfigScripts, node: Node, key: ScriptKey, what: str,
                  path: str | None) -> Sc:
    kind, name, keyword = key
    value = node.values.get(keyword)
    if not value:
        return Sc(0)                    # absent, or notify_deleted without a script
    command = _prepare(out, node, keyword, value, value[1:3], what)
    if command is None:
        out.disabled[key] = "not usable"
        return Sc(0)
    where = node.value_where.get(keyword)
    check = _checked(out, command, where, path)
    if check.notify_runnable:
        out.commands[key] = replace(command, argv=check.argv)
    else:
        out.disabled[key] = check.reason or "not executable"
        label = f"({name}) " if name else ""
        out.note(Level.NOTE, f"{label}{keyword} will not be run; the other notifications are"
                 " still sent", where)
    return check.flags


def _check_track_script(out: ConfigScripts, vscript: Node, path: str | None) -> Sc:
    name = vscript.head
    key = ("vrrp_script", name, "script")
    value = vscript.values.get("script")
    where = vscript.value_where.get("script", vscript.where)
    if not value:
        out.note(Level.GENERAL_ERROR, f"No script set for vrrp_script {name} - removing",
                 vscript.where)
        out.disabled[key] = "no script"
        return Sc(0)
    try:
        argv = _command(value)
    except ScriptError as err:
        out.note(Level.GENERAL_ERROR, f"{err}; No script set for vrrp_script {name} - removing",
                 where)
        out.disabled[key] = str(err)
        return Sc(0)
    user_words = vscript.values.get("user")
    try:
        user = out.user(user_words or (), vscript.value_where.get("user", where))
    except ScriptError as err:
        message = (f"{err}; Unable to set uid/gid for script {cmd_str(argv)}" if user_words else
                   f"Unable to set default user for vrrp script {name} - removing")
        out.note(Level.GENERAL_ERROR, message, vscript.value_where.get("user", where))
        out.disabled[key] = message
        return Sc(0)
    # keepalived drops a refused script from every track_script list: the instances
    # and groups tracking it behave as if it were not tracked (no FAULT, no weight).
    return _check_or_disable(out, key, ScriptCommand(tuple(argv), user), where, path,
                             f"track script {name}",
                             f"vrrp_script {name} is removed; instances tracking it ignore it")


def _check_start_stop(out: ConfigScripts, glob: Node, keyword: str, path: str | None) -> Sc:
    value = glob.values.get(keyword)
    if not value:
        return Sc(0)
    key = ("global_defs", None, keyword)
    what = keyword.removesuffix("_script")
    command = _prepare(out, glob, keyword, value, value[1:3], what)
    if command is None:
        out.note(Level.GENERAL_ERROR, f"Invalid {what} script", glob.value_where.get(keyword))
        out.disabled[key] = "not usable"
        return Sc(0)
    check = _checked(out, command, glob.value_where.get(keyword), path)
    if check.runnable:
        out.commands[key] = replace(command, argv=check.argv, shell=bool(check.flags & Sc.SYSTEM))
    else:
        out.disabled[key] = check.reason or "not executable"
    return check.flags


def _lvs_nodes(root: Node) -> Iterator[tuple[str, str, Node]]:
    for vs in root.blocks("virtual_server"):
        vs_name = _label(vs.head)
        yield "virtual_server", vs_name, vs
        for rs in vs.blocks("real_server"):
            rs_name = f"{vs_name}/{_label(rs.head)}"
            yield "real_server", rs_name, rs
            for index, misc in enumerate(rs.blocks("MISC_CHECK")):
                yield "MISC_CHECK", f"{rs_name}/{index}", misc


def _label(head: object) -> str:
    if isinstance(head, tuple):
        return " ".join(str(part) for part in head)
    return str(head)


def _check_lvs(out: ConfigScripts, root: Node, path: str | None) -> Sc:
    flags = Sc(0)
    for kind, name, node in _lvs_nodes(root):
        if kind == "MISC_CHECK":
            flags |= _check_misc(out, node, name, path)
            continue
        keywords = ("quorum_up", "quorum_down") if kind == "virtual_server" else (
            "notify_up", "notify_down")
        for keyword in keywords:
            flags |= _check_notify(out, node, (kind, name, keyword), "notify", path)
    return flags


def _check_misc(out: ConfigScripts, misc: Node, name: str, path: str | None) -> Sc:
    value = misc.values.get("misc_path")
    key = ("MISC_CHECK", name, "misc_path")
    if not value:
        return Sc(0)
    where = misc.value_where.get("misc_path")
    try:
        argv = _command(value)
        user = out.user(misc.values.get("user") or (), where)
    except ScriptError as err:
        out.note(Level.GENERAL_ERROR, f"{err}; misc script {value[0]} is removed", where)
        out.disabled[key] = str(err)
        return Sc(0)
    if not argv:
        return Sc(0)
    return _check_or_disable(out, key, ScriptCommand(tuple(argv), user), where, path,
                             None, "the MISC_CHECK is removed from its real server")


def _check_or_disable(out: ConfigScripts, key: ScriptKey, command: ScriptCommand,
                      where: Where | None, path: str | None, what: str | None,
                      consequence: str) -> Sc:
    """A vrrp_script's or MISC_CHECK's command, kept when it may run, else disabled
    with keepalived's message (``what`` None: the misc script named by its argv)."""
    check = _checked(out, command, where, path)
    if check.runnable:
        out.commands[key] = ScriptCommand(check.argv, command.user,
                                          shell=bool(check.flags & Sc.SYSTEM))
        return check.flags
    what = what or f"misc script {cmd_str(check.argv)}"
    if check.flags & Sc.INHIBIT:
        message: str | None = f"Disabling {what} due to insecure"
    elif check.flags & Sc.NOTFOUND:
        message = f"Disabling {what} since not found/accessible"
    else:
        message = None
    if message:
        out.note(Level.GENERAL_ERROR, message, where)
    out.disabled[key] = message or check.reason or "not executable"
    out.note(Level.NOTE, consequence, where)
    return check.flags


# -- processes ------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)      # loaded here: never in a forked child
_PR_SET_PDEATHSIG = 1


def _child_setup(parent: int) -> None:
    """Runs in the child after the uid/gid switch (which would clear a parent-death
    signal set earlier): default signal dispositions, and SIGTERM when we die."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in signal.valid_signals():
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass                        # SIGKILL, SIGSTOP and the C library's own
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:          # we died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


class ScriptProcess:
    """A started script, reaped by the event loop through a pidfd (no zombies, no threads)."""

    def __init__(self, argv: Sequence[str], user: ScriptUser, *, env: dict[str, str] | None,
                 umask: int) -> None:
        loop = asyncio.get_running_loop()
        same_ids = (user.uid, user.gid) == (os.geteuid(), os.getegid())
        self.argv = list(argv)
        self._proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env, umask=umask, close_fds=True,
            user=None if same_ids else user.uid, group=None if same_ids else user.gid,
            extra_groups=[user.gid] if os.geteuid() == 0 else None, process_group=0,
            preexec_fn=functools.partial(_child_setup, os.getpid()))
        self.pid = self._proc.pid
        self.exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap, loop)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        status = self._proc.wait()
        if not self.exited.done():
            self.exited.set_result(status)

    @property
    def running(self) -> bool:
        return not self.exited.done()

    def kill_group(self, sig: int) -> None:
        """Signal the script and everything it started (its process group)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def wait(self, timeout: float | None = None) -> int | None:
        """The exit status (negative: killed by that signal), or None if still running."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        except TimeoutError:
            return None

    async def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds (keepalived's reload and
        shutdown of the scripts it waits for)."""
        if not self.running:
            return
        self.kill_group(signal.SIGTERM)
        if await self.wait(grace) is None:
            self.kill_group(signal.SIGKILL)
            await self.wait()


_tasks: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[None, None, None]) -> None:
    """Run ``work`` on its own, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def exec_argv(argv: Sequence[str], shell: bool = False) -> list[str]:
    """What is exec'd: the argv itself, or ``/bin/sh -c`` for the ``</file`` form."""
    return ["/bin/sh", "-c", cmd_str(argv)] if shell else list(argv)


def spawn_script(argv: Sequence[str], user: ScriptUser, *, env: dict[str, str] | None = None,
                 umask: int = KEEPALIVED_UMASK, shell: bool = False) -> ScriptProcess | None:
    """Start a script and forget it; it is reaped when it exits.  Needs a running loop."""
    try:
        return ScriptProcess(exec_argv(argv, shell), user, env=env, umask=umask)
    except (OSError, subprocess.SubprocessError) as err:
        code = getattr(err, "errno", None) or 0
        log.info("Error exec-ing command '%s', error %d: %s", argv[0] if argv else "", code, err)
        return None


async def run_script(argv: Sequence[str], user: ScriptUser, timeout: float | None,
                     env: dict[str, str] | None = None, *, umask: int = KEEPALIVED_UMASK,
                     shell: bool = False) -> int | None:
    """Run a script to its end as keepalived runs a vrrp_script.

    Returns its exit status (negative: killed by that signal), or None when it timed
    out: at ``timeout`` its process group gets SIGTERM, 2 s later SIGKILL; once it has
    died of our SIGTERM the group gets SIGKILL for anything left behind.  A script
    that exits on its own after the SIGTERM reports that status, as keepalived counts
    it.  A script that cannot be exec'd counts as status 0: keepalived's child exits 0
    then ("script errors aren't server errors").  Cancelling kills the group likewise.
    """
    process = spawn_script(argv, user, env=env, umask=umask, shell=shell)
    if process is None:
        return 0
    try:
        status = await process.wait(timeout)
    except asyncio.CancelledError:
        _background(process.terminate())
        raise
    if status is not None:
        if shell and status in (126, 127):
            log.info("Couldn't %s command: %s", "find" if status == 127 else "execute",
                     cmd_str(argv))
            return 0
        return status
    process.kill_group(signal.SIGTERM)
    status = await process.wait(TERM_GRACE)
    if status is None:
        process.kill_group(signal.SIGKILL)
        status = await process.wait()
        return None if status in (-signal.SIGKILL, -signal.SIGTERM) else status
    if status == -signal.SIGTERM:
        process.kill_group(signal.SIGKILL)    # whatever it started
        return None
    return status
