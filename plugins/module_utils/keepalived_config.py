# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""What the keepalived_config action (controller) and module (target) share.

Runs on the target's Python too: standard library and vrrp_runtime only.  The
action renders and checks the configuration with the agent's parser on the
controller; the module writes it on the target, has the installed agent check it
there (``-t``) and asks for a reload.  This file holds the options both sides
validate, the header of the written file, how the agent's ``-t`` output is read,
and how secrets are masked in anything shown to a person.
"""

from __future__ import annotations

import re

from ansible_collections.keepalived_py.ha.plugins.module_utils.vrrp_runtime import (
    WHICH_AGENT_SPEC,
)

DEFAULT_DEST = "/etc/keepalived/keepalived.conf"
DEFAULT_AGENT = "/opt/keepalived-py/bin/keepalived-py"

# The first line of every file we write.  Stable (no date, no host) so that equal
# input gives equal bytes.
HEADER = ("# Managed by Ansible (keepalived_py.ha.keepalived_config): "
          "local changes will be overwritten.\n")
HEADER_LINES = HEADER.count("\n")

# The options holding structured configuration, in the order their blocks are
# written, and the top-level keepalived keyword each becomes.  ``global_defs`` is
# one block; the others are lists of blocks whose ``name`` is the block's name.
SECTIONS = (
    ("global_defs", "global_defs"),
    ("track_files", "track_file"),
    ("track_processes", "vrrp_track_process"),
    ("scripts", "vrrp_script"),
    ("instances", "vrrp_instance"),
    ("sync_groups", "vrrp_sync_group"),
    ("virtual_servers", "virtual_server"),
)
STRUCTURED = tuple(option for option, _keyword in SECTIONS)

ARGUMENT_SPEC = {
    # no_log keeps the text (it may hold auth_pass) out of the target's syslog; the
    # module masks the secrets in what it returns (see the module's finish()).
    "content": {"type": "str", "no_log": True},
    "global_defs": {"type": "dict"},
    "track_files": {"type": "list", "elements": "dict"},
    "track_processes": {"type": "list", "elements": "dict"},
    "scripts": {"type": "list", "elements": "dict"},
    "instances": {"type": "list", "elements": "dict"},
    "sync_groups": {"type": "list", "elements": "dict"},
    "virtual_servers": {"type": "list", "elements": "dict"},
    "dest": {"type": "path", "default": DEFAULT_DEST},
    "backup": {"type": "bool", "default": False},
    "reload": {"type": "bool", "default": True},
    "agent": {"type": "path", "default": DEFAULT_AGENT},
    # the agent to reload: control_socket, namespace, agent_instance, as vrrp_facts has them
    **WHICH_AGENT_SPEC,
    "config_id": {"type": "str"},
    "return_rendered": {"type": "bool", "default": False},
}
MUTUALLY_EXCLUSIVE = [["content", option] for option in STRUCTURED]
REQUIRED_ONE_OF = [["content", *STRUCTURED]]

# -- secrets -----------------------------------------------------------------------

# Keywords whose value is a secret: authentication { auth_pass }, auth_hmac { key },
# SSL { password }.  Masking ``key`` everywhere also hides SSL's key file name:
# harmless in a diff, and it needs no knowledge of blocks.
SECRET_KEYWORDS = ("auth_pass", "key", "password")
MASK = "********"
_SECRET = re.compile(r"((?:^|[\s{])(?:" + "|".join(SECRET_KEYWORDS) + r")[ \t]+)[^\n]*",
                     re.MULTILINE)


def mask_secrets(text: str) -> str:
    """``text`` with everything after a secret keyword on its line replaced by ``MASK``.

    Works on hand-written files too (the previous file in a diff), where a block
    may sit on one line: the rest of such a line is hidden, braces included.
    """
    return _SECRET.sub(lambda m: m.group(1) + MASK, text)


# -- the agent's config test ---------------------------------------------------------

# One diagnostic line of ``keepalived-py -t``: ``FILE:LINE: KIND: MESSAGE``, or
# ``KIND: MESSAGE`` when it has no place (agent/config/diag.py, Diagnostic.__str__).
_DIAGNOSTIC = re.compile(
    r"^(?:(?P<file>.+?):(?P<line>\d+): )?(?P<kind>error|warning|security|note): (?P<message>.*)$")


def read_config_test(output: str, path: str) -> list[dict]:
    """The diagnostics in ``keepalived-py -t -f PATH`` output, notes left out.

    Each is ``{"line": N or None, "kind": "error"|"warning"|"security", "message"}``;
    ``line`` is a line of ``path`` (a place in another file stays in the message).
    """
    found = []
    for text in output.splitlines():
        m = _DIAGNOSTIC.match(text.strip())
        if m is None or m.group("kind") == "note":
            continue
        line = None
        message = m.group("message")
        if m.group("file") is not None:
            if m.group("file") == path:
                line = int(m.group("line"))
            else:
                message = f"{m.group('file')}:{m.group('line')}: {message}"
        found.append({"line": line, "kind": m.group("kind"), "message": message})
    return found
