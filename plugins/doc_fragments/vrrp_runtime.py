# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Options of the modules that ask the running agent through its command line."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  agent:
    description:
      - The agent's command line on the target, C(keepalived-py). The module runs it
        (C(keepalived-py status --json), C(keepalived-py set)); it carries no client of
        the control socket of its own.
      - A bare command name is looked up in E(PATH).
    type: path
    default: /opt/keepalived-py/bin/keepalived-py
  control_socket:
    description:
      - The agent's control socket, as given to the agent with C(--control-socket).
      - When not set, the agent's default, C(/run/keepalived-py/control.sock).
    type: path
requirements:
  - The keepalived-py agent installed on the target (see O(agent)), running, and the
    module run as root (the control socket answers root only).
notes:
  - The module talks to the agent only through the agent's own command line, so the
    agent and the module cannot disagree about the protocol of the control socket.
"""
