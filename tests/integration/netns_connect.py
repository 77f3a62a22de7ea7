"""ssh's ProxyCommand into a lab: ``ip netns exec NETNS netns_connect.py HOST PORT``.

Connects to HOST:PORT from inside the network namespace NETNS and relays the
connection over stdin/stdout, so that a program outside the lab (the Ansible
controller of tests/integration/test_ansible.py) reaches lab hosts, and nothing
else: its own traffic (the controller's pip, say) stays where it is.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main(host: str, port: str) -> None:
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.settimeout(None)

    def upstream() -> None:
        while data := os.read(0, 65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    out = sys.stdout.buffer
    while data := conn.recv(65536):
        out.write(data)
        out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:3])
