#!/usr/bin/python
# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: keepalived_config
short_description: Write keepalived.conf, checked by the agent's own parser, and reload
version_added: 0.1.0
description:
  - Writes the keepalived-py agent's configuration file (keepalived.conf, read unchanged
    from keepalived) on the target, from raw text (O(content)) or from structured
    variables (O(global_defs), O(instances), O(scripts), O(track_files),
    O(track_processes), O(sync_groups), O(virtual_servers)).
  - On the controller, the configuration is read by the agent's own parser, the one the
    agent runs with. An error fails the task B(before anything is sent to the host) and
    names the variable (C(instances[1].advert_int)) or, for O(content), the line. Warnings
    are returned in RV(warnings). What only the host can tell (its interfaces, script
    files, users) is checked on the target by the installed agent (C(keepalived-py -t)),
    before the file is replaced; its errors are named the same way.
  - The file written is the agent's canonical rendering of what was read (one keyword a
    line, four-space indents, quoting only where needed) after a header comment saying
    that Ansible manages it. Equal input gives equal bytes; C(changed) is V(true) only
    when the bytes on the target differ.
  - The file is replaced atomically (a temporary file in the same directory, flushed to
    disk, then renamed), keeping the mode, owner and group of the file it replaces; a new
    file gets mode C(0640).
  - When the file changed and O(reload=true), the running agent is asked to reload
    (C(keepalived-py reload)); it is never restarted, so VRRP instances that did not change
    keep their state. An agent that is not running is not an error (RV(reloaded=false));
    an agent that refuses the configuration fails the task, and the previous file is put
    back so that the file on disk stays what the agent runs.
  - The agent reloaded is the one of the network namespace the module runs in, unless
    O(namespace), O(agent_instance) or O(control_socket) names another. When several
    agents share the namespace and O(agent_instance) does not say which, the task fails
    and the previous file is put back too.
  - "Structured variables use keepalived's keywords as keys, and become text mechanically:
    a string or a number is the keyword's value, one word, quoted when it must be
    (V(script: killall -0 haproxy) gives C(script \"killall -0 haproxy\")); V(true) gives
    the bare keyword (V(nopreempt: true)); V(false) leaves a flag keyword out and writes
    C(false) for a keyword that takes a boolean value (C(smtp_alert false)); V(null) leaves
    the keyword out; a dict is a nested block (V(authentication: {auth_type: PASS,
    auth_pass: secret})); a list is a block with one item a line (V(virtual_ipaddress),
    V(unicast_peer), V(track_interface)), a string item being the line's words
    (V(10.0.0.10/24 dev eth0)) and a list item the words themselves; a list given to a
    keyword that takes several words on its own line is those words
    (V(smtp_server: [192.0.2.25, 25]), V(weight: [-20, reverse]))."
  - A string reaches the agent as given, or the task fails naming the variable. keepalived
    replaces C($NAME) and C(${NAME}) of its definitions (C($_PWD), C(${_RANDOM}), ...) even
    inside quotes, and a C($) cannot be escaped, so a value in which it would replace one
    (V(x $_PWD y), V(a${_HASH})) is refused; any other C($) (V(a$b)) is written as it is.
  - Includes, C(${_ENV}) and other things that read the controller's files or environment
    are refused in O(content), since the file is rendered on the controller as one text.
author:
  - keepalived-py developers (!UNKNOWN)
extends_documentation_fragment:
  - keepalived_py.ha.vrrp_runtime.which_agent
options:
  content:
    description:
      - The configuration as keepalived.conf text.
      - Conditional lines (C(@id)) are resolved with O(config_id), definitions (C($NAME))
        expanded; the file written holds the result in canonical form.
      - Mutually exclusive with the structured options.
    type: str
  global_defs:
    description:
      - The C(global_defs) block, keyword to value (V(router_id), V(enable_script_security),
        V(vrrp_garp_master_delay) ...).
    type: dict
  instances:
    description:
      - One dict per C(vrrp_instance); V(name) is the instance's name, every other key a
        keyword of the block (V(state), V(interface), V(virtual_router_id), V(priority),
        V(advert_int), V(authentication), V(virtual_ipaddress), V(virtual_routes),
        V(unicast_src_ip), V(unicast_peer), V(track_interface), V(track_script),
        V(nopreempt) ...).
    type: list
    elements: dict
  scripts:
    description:
      - One dict per C(vrrp_script); V(name) is the script's name, the other keys its
        keywords (V(script), V(interval), V(weight), V(fall), V(rise), V(user) ...).
    type: list
    elements: dict
  track_files:
    description:
      - One dict per C(track_file) block (keepalived's C(vrrp_track_file)); V(name) is its
        name, the other keys its keywords (V(file), V(weight) ...).
    type: list
    elements: dict
  track_processes:
    description:
      - One dict per C(vrrp_track_process); V(name) is its name, the other keys its
        keywords (V(process), V(quorum), V(weight) ...).
    type: list
    elements: dict
  sync_groups:
    description:
      - One dict per C(vrrp_sync_group); V(name) is its name, the other keys its keywords
        (V(group) as a list of instance names, V(track_script) ...).
    type: list
    elements: dict
  virtual_servers:
    description:
      - One dict per C(virtual_server); V(name) is what follows the keyword (V(198.18.1.10 80),
        V(fwmark 5)), every other key a keyword of the block (V(lb_algo), V(lb_kind),
        V(protocol), V(delay_loop), V(quorum), V(sorry_server) ...). V(real_server) is a list
        of dicts, each with its V(name) (V(198.18.2.11 8080)) and its keywords; a checker
        (V(TCP_CHECK), V(HTTP_GET) ...) is a list of dicts of its keywords, without a name,
        and so is V(url) in an HTTP checker.
    type: list
    elements: dict
  dest:
    description:
      - The configuration file on the target. Its directory must exist.
      - A symbolic link is followed, and the file it points to is replaced.
    type: path
    default: /etc/keepalived/keepalived.conf
  backup:
    description:
      - Keep a copy of the file it replaces, named with a time stamp, beside it.
    type: bool
    default: false
  reload:
    description:
      - When the file changed, ask the running agent to reload it (C(keepalived-py reload)).
    type: bool
    default: true
  agent:
    description:
      - The agent's command line on the target. When it is there, it checks the new file
        (C(keepalived-py -t -f FILE)) before the file is replaced, and reloads.
      - When it is not there, the file is written unchecked on the target (the controller
        has still read it) and a warning says so.
      - A bare command name is looked up in E(PATH).
    type: path
    default: /opt/keepalived-py/bin/keepalived-py
  config_id:
    description:
      - The id C(@id) conditional lines and C(${_INSTANCE}) are resolved with, as
        keepalived's C(-i).
      - Defaults to the target's short host name from gathered facts
        (C(ansible_facts['hostname'])), else to C(inventory_hostname_short).
    type: str
  return_rendered:
    description:
      - Return the text written as RV(rendered).
    type: bool
    default: false
attributes:
  action:
    support: full
    description: An action plugin renders and reads the configuration on the controller.
  check_mode:
    support: full
    description: Reports what would change and checks the text on the target; writes nothing.
  diff_mode:
    support: full
    description: The file before and after, with passwords and keys masked.
  platform:
    support: full
    platforms: linux
    description: Linux hosts, where the keepalived-py agent runs.
requirements:
  - On the controller, Python 3.11 or later (the agent's parser, which the action plugin
    imports from this collection).
  - On the target, the keepalived-py agent at O(agent) to check the file there and to
    reload; without it the file is written after the controller's check only.
notes:
  - Passwords (C(auth_pass)), C(auth_hmac) keys and SSL passwords never appear in the diff,
    in RV(rendered), in messages or in the target's log; they are shown as C(********).
  - A reload refused by the agent fails the task with the agent's reasons; the previous
    file is put back, so a second run tries again.
seealso:
  - module: keepalived_py.ha.vrrp_facts
    description: Read the live VRRP state once the configuration is applied.
  - name: keepalived.conf(5)
    description: The configuration language, which the agent reads as keepalived 2.2.7.
    link: https://keepalived.readthedocs.io/en/latest/configuration_synopsis.html
"""

EXAMPLES = r"""
- name: An HA pair's instance from variables
  keepalived_py.ha.keepalived_config:
    global_defs:
      router_id: "{{ inventory_hostname_short }}"
      enable_script_security: true
      script_user: keepalived_script
    scripts:
      - name: chk_haproxy
        script: killall -0 haproxy
        interval: 2
        weight: -20
    instances:
      - name: VI_1
        state: "{{ 'MASTER' if inventory_hostname == groups['lb'][0] else 'BACKUP' }}"
        interface: eth0
        virtual_router_id: 51
        priority: "{{ 150 if inventory_hostname == groups['lb'][0] else 100 }}"
        advert_int: 1
        authentication:
          auth_type: PASS
          auth_pass: "{{ vault_vrrp_pass }}"
        unicast_src_ip: "{{ ansible_facts['eth0']['ipv4']['address'] }}"
        unicast_peer: "{{ lb_peer_addresses }}"
        virtual_ipaddress:
          - 192.0.2.10/24 dev eth0 label eth0:vip
        track_script:
          - chk_haproxy
        nopreempt: true

- name: A load-balanced web service behind the VIP, its real servers health-checked
  keepalived_py.ha.keepalived_config:
    virtual_servers:
      - name: 192.0.2.10 80
        delay_loop: 5
        lb_algo: wrr
        lb_kind: NAT
        protocol: TCP
        real_server:
          - name: 192.0.2.21 8080
            weight: 2
            HTTP_GET:
              - url:
                  - path: /health
                    status_code: 200
                connect_timeout: 3
          - name: 192.0.2.22 8080
            TCP_CHECK:
              - connect_timeout: 3

- name: An existing keepalived.conf, unchanged
  keepalived_py.ha.keepalived_config:
    content: "{{ lookup('ansible.builtin.file', 'files/keepalived.conf') }}"
    backup: true

- name: The configuration of the agent of network namespace blue, reloaded there
  keepalived_py.ha.keepalived_config:
    content: "{{ lookup('ansible.builtin.template', 'keepalived-blue.conf.j2') }}"
    dest: /etc/keepalived/keepalived-blue.conf
    namespace: blue

- name: Only see what would be written (no reload, nothing changed)
  keepalived_py.ha.keepalived_config:
    instances: "{{ keepalived_py_instances }}"
    return_rendered: true
  check_mode: true
  register: preview
"""

RETURN = r"""
dest:
  description: The file written (or that would be).
  returned: always
  type: str
  sample: /etc/keepalived/keepalived.conf
reloaded:
  description:
    - Whether the running agent applied the new file. V(false) when nothing changed, in
      check mode, with O(reload=false), or when the agent is not running.
  returned: always
  type: bool
  sample: true
validated:
  description:
    - Whether the installed agent on the target checked the new file (C(keepalived-py -t)).
      V(false) when nothing changed or the agent is not installed at O(agent).
  returned: always
  type: bool
  sample: true
backup_file:
  description: The copy of the previous file, with O(backup=true).
  returned: when the file changed and O(backup=true)
  type: str
  sample: /etc/keepalived/keepalived.conf.2841.2026-05-01@10:02:11~
warnings:
  description:
    - What the agent's parser warns about, on the controller and on the target, named by
      variable or line as errors are (for example a unicast keyword without peers), and
      one line listing RV(not_acted).
  returned: when there are any
  type: list
  elements: str
  sample: ["instances[0]: (VI_1) A unicast keyword has been specified without any unicast
           peers. Defaulting to multicast. This usage is deprecated - please update your
           configuration."]
not_acted:
  description:
    - The keywords this version of the agent reads but does not act on yet (the notes of
      C(keepalived-py -t)), named by variable or line. They are kept in the file.
  returned: when there are any
  type: list
  elements: str
  sample: ["instances[0].track_script", "scripts[0]"]
rendered:
  description:
    - The text written (or that would be), header included, with secrets masked.
  returned: when O(return_rendered=true)
  type: str
  sample: "# Managed by Ansible ...\nvrrp_instance VI_1 {\n    state MASTER\n}\n"
"""

import os  # noqa: E402 - after the documentation, as Ansible modules are laid out
import stat  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.keepalived_py.ha.plugins.module_utils.keepalived_config import (  # noqa: E402
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    mask_secrets,
    read_config_test,
)
from ansible_collections.keepalived_py.ha.plugins.module_utils.vrrp_runtime import (  # noqa: E402
    several_agents,
    which_agent,
)

# keepalived-py's config-test and reload exit codes (README, agent/cli.py)
TEST_OK = 0
TEST_ERRORS = 5         # errors, but keepalived would still run (warnings count too)
TEST_SECURITY = 6       # script security
RELOAD_APPLIED = 0
RELOAD_NOT_RUNNING = 3
# A new file may hold passwords: not readable by everyone.
NEW_FILE_MODE = 0o640


class Failed(Exception):
    """The task fails with this message; ``details`` go into the result."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomically(path: str, data: bytes, like: os.stat_result | None) -> None:
    """Replace ``path`` by ``data`` so that a reader sees the old file or the new, whole.

    The temporary file lives in the same directory (a rename within one file
    system is atomic), is flushed to disk before the rename, and takes the mode,
    owner and group of the file it replaces (``like``), or ``NEW_FILE_MODE``.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if like is None:
            os.chmod(tmp, NEW_FILE_MODE)
        else:
            os.chmod(tmp, stat.S_IMODE(like.st_mode))
            if (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
                os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # the rename itself is durable only once the directory is on disk
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ConfigFile:
    """One run of the module: compare, check on the host, write, reload."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.dest = self.params["dest"]
        self.path = os.path.realpath(self.dest)
        self.agent = self.find_agent(self.params["agent"])
        self.result: dict[str, Any] = {"changed": False, "dest": self.dest,
                                       "reloaded": False, "validated": False}

    def find_agent(self, path: str) -> str:
        """The agent's path; a bare command name is looked up in PATH."""
        if "/" not in path:
            return self.module.get_bin_path(path) or path
        return path

    def agent_present(self) -> bool:
        return os.path.isfile(self.agent) and os.access(self.agent, os.X_OK)

    def run(self) -> dict[str, Any]:
        new = self.params["content"].encode("utf-8")
        if os.path.isdir(self.path):
            raise Failed(f"{self.dest} is a directory")
        old = read_file(self.path)
        self.result["changed"] = old != new
        if self.module._diff:
            self.result["diff"] = self.diff(old, new)
        if not self.result["changed"]:
            return self.result
        self.check_on_host(new)
        if self.module.check_mode:
            return self.result
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise Failed(f"the directory of {self.dest} does not exist: {directory}")
        like = os.stat(self.path) if old is not None else None
        if self.params["backup"] and old is not None:
            self.result["backup_file"] = self.module.backup_local(self.path)
        write_atomically(self.path, new, like)
        if self.params["reload"]:
            self.reload(old, like)
        return self.result

    def diff(self, old: bytes | None, new: bytes) -> dict[str, str]:
        before = "" if old is None else old.decode("utf-8", errors="replace")
        return {"before": mask_secrets(before), "after": mask_secrets(new.decode("utf-8")),
                "before_header": self.dest if old is not None else f"{self.dest} (absent)",
                "after_header": self.dest}

    # -- the agent's config test on the host ---------------------------------------
    def check_on_host(self, new: bytes) -> None:
        """``keepalived-py -t`` on the new text, from a file in the module's own
        temporary directory: nothing is written beside ``dest`` before it passes,
        and check mode runs it too."""
        if not self.agent_present():
            self.module.warn(f"the keepalived-py agent is not installed at {self.agent}: "
                             f"{self.dest} was checked on the controller only")
            return
        fd, tmp = tempfile.mkstemp(prefix="keepalived.", suffix=".conf",
                                   dir=self.module.tmpdir)
        with os.fdopen(fd, "wb") as f:
            f.write(new)
        try:
            rc, out, err = self.module.run_command([self.agent, "-t", "-f", tmp])
        finally:
            os.unlink(tmp)
        diagnostics = read_config_test(err + "\n" + out, tmp)
        self.result["validated"] = True
        self.result["diagnostics"] = diagnostics
        errors = [d for d in diagnostics if d["kind"] == "error"]
        # keepalived's exit 5 also covers warnings, and 6 (script security) outranks
        # plain errors: the verdict is read from the diagnostics, the code only guards
        # against an agent that could not run at all or said nothing we can read.
        unreadable = rc in (TEST_ERRORS, TEST_SECURITY) and not diagnostics
        if errors or rc not in (TEST_OK, TEST_ERRORS, TEST_SECURITY) or unreadable:
            self.result["changed"] = False      # refused: nothing was or will be written
            shown = [f"line {d['line']}: {d['message']}" if d["line"] else d["message"]
                     for d in errors] or [mask_secrets(err.strip() or out.strip())]
            raise Failed(f"the agent on the host refused the configuration (keepalived-py -t "
                         f"exit {rc}): " + "; ".join(shown), diagnostics=diagnostics)

    # -- reload --------------------------------------------------------------------
    def reload(self, old: bytes | None, like: os.stat_result | None) -> None:
        if not self.agent_present():
            return
        command = [self.agent, "reload", *which_agent(self.params)]
        rc, out, err = self.module.run_command(command)
        if rc == RELOAD_APPLIED:
            self.result["reloaded"] = True
            return
        # Exit 3 is also "several agents here, name one": not an agent that is not running
        several = several_agents(err) if rc == RELOAD_NOT_RUNNING else None
        if rc == RELOAD_NOT_RUNNING and several is None:
            return
        # The agent keeps running the previous configuration: put the previous file
        # back, or the next run would find nothing to change and never retry.
        if old is None:
            os.unlink(self.path)
        else:
            write_atomically(self.path, old, like)
        if several is not None:
            raise Failed(f"{several}; {self.dest} was put back as it was, nothing reloaded",
                         rc=rc)
        reasons = mask_secrets((err or out).strip()) or f"exit {rc}"
        raise Failed(f"the agent refused to reload; {self.dest} was put back as it was: "
                     f"{reasons}", rc=rc)


def finish(module: AnsibleModule, result: dict[str, Any], failed: str | None = None) -> None:
    """Exit with secrets masked, and the text itself visible.

    ``content`` is no_log so that Ansible never writes it to the target's log; but
    as a no-log value, every copy of it in the result would be blanked, the diff
    with it.  What must stay hidden are the secrets inside: they are masked here
    (and in the diff), and the text leaves the no-log set.
    """
    content = module.params["content"]
    module.no_log_values.discard(content)
    result["invocation"] = {"module_args": dict(module.params, content=mask_secrets(content))}
    if failed is not None:
        module.fail_json(msg=failed, **result)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           required_one_of=REQUIRED_ONE_OF, supports_check_mode=True)
    if module.params["content"] is None:
        module.fail_json(msg="structured variables are rendered on the controller by the "
                             "keepalived_config action plugin: run the module as a task "
                             "(keepalived_py.ha.keepalived_config), not on its own")
    config = ConfigFile(module)
    try:
        result = config.run()
    except Failed as failure:
        finish(module, {**config.result, **failure.details}, failed=str(failure))
    except OSError as error:
        finish(module, config.result, failed=f"{config.dest}: {error}")
    finish(module, result)


if __name__ == "__main__":
    main()
