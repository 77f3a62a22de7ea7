# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Options of the modules that ask the running agent through its command line.

``DOCUMENTATION`` is the agent's command line; ``WHICH_AGENT``
(``keepalived_py.ha.vrrp_runtime.which_agent``) says which agent is asked, and
serves keepalived_config's reload too.
"""

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
requirements:
  - The keepalived-py agent installed on the target (see O(agent)), running, and the
    module run as root (the control socket answers root only).
notes:
  - The module talks to the agent only through the agent's own command line, so the
    agent and the module cannot disagree about the protocol of the control socket.
"""

    # Which agent: the rule of the agent's own command line (keepalived-py status,
    # reload and set), which the module follows by passing these options to it.
    WHICH_AGENT = r"""
options:
  control_socket:
    description:
      - The agent's control socket, as given to the agent with C(--control-socket).
      - When set, it alone names the agent; O(namespace) and O(agent_instance) are not
        used.
      - When not set, the socket is found from O(namespace) and O(agent_instance), as
        C(keepalived-py status) finds it. With neither set, that is the agent of the
        network namespace the module runs in; in the host's own namespace, the agent
        at C(/run/keepalived-py/control.sock).
    type: path
  namespace:
    description:
      - The agent of that network namespace (C(keepalived-py --namespace)), the name an
        agent runs under by its C(net_namespace) keyword or its C(-s) option.
      - When not set, the namespace the module runs in. keepalived keys its pid files by
        C(net_namespace) and C(instance), and keepalived-py keys its run-time files, the
        control socket among them, the same way (under
        C(/run/keepalived-py/netns/NAME/)); so a module run in a namespace reaches the
        agent of that namespace with no option.
    type: str
  agent_instance:
    description:
      - The agent with that C(instance) name (the C(instance) keyword at the top of its
        configuration, C(keepalived-py --instance)), where several agents share a
        network namespace.
      - When not set, the agent without an instance name, or else the only agent of the
        namespace. When several run there, the task fails and names them.
      - Not called C(instance), which in M(keepalived_py.ha.vrrp_instance) is the VRRP
        instance's name.
    type: str
"""
