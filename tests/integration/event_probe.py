"""A child process for the event tests: consumes ``vrrp.instance`` and writes what reaches it.

Run by the real supervisor (tests/integration/event_house.py) as any child is,
over the real IPC line.  Each message delivered to it is appended, with its
pid, as a JSON line to $KPY_PROBE_OUT.  When $KPY_PROBE_DELAY_FILE names a
file, it waits that many seconds before saying it is ready: a consumer caught
while restarting.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

from keepalived_py.core.children import child_parser
from keepalived_py.core.ipc import Channel


async def run(ipc_fd: int) -> int:
    out = Path(os.environ["KPY_PROBE_OUT"])
    delay_file = os.environ.get("KPY_PROBE_DELAY_FILE")
    channel = await Channel.open(socket.socket(fileno=ipc_fd))
    done = asyncio.Event()

    def on_message(message: dict) -> None:
        if message.get("event") == "deliver":
            with out.open("a") as f:
                f.write(json.dumps({"pid": os.getpid(), "t": time.time(), **message}) + "\n")
        elif "request" in message:
            if message["request"] == "stop":
                done.set()
            channel.reply(message, {"ok": True, "result": {"pid": os.getpid()}})

    listening = asyncio.create_task(channel.serve(on_message))
    if delay_file and os.path.exists(delay_file):
        await asyncio.sleep(float(Path(delay_file).read_text()))
    channel.send({"event": "ready", "pid": os.getpid()})
    while not done.is_set() and not listening.done():
        channel.send({"event": "heartbeat"})
        await asyncio.sleep(0.5)
    return 0


def main() -> int:
    args = child_parser("event probe").parse_args()
    return asyncio.run(run(args.ipc_fd))


if __name__ == "__main__":
    sys.exit(main())
