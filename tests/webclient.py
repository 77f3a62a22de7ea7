"""A web client that never stops asking: the demo's client of a load-balanced service.

    python webclient.py ADDRESS PORT INTERVAL TIMEOUT

Every INTERVAL seconds it opens a new TCP connection to ADDRESS:PORT, sends
``GET / HTTP/1.0`` and reads the reply to its end, without waiting for the
requests still under way (a silent server delays no later request).  Each
request gives a line when it is sent and one when it ends::

    <t_sent> sent
    <t_sent> <t_done> <outcome>

on the monotonic clock (the same for every process of the machine), so that a
reader knows which requests are still under way; ``outcome`` is
the first word of the reply's body (the demo's real servers answer
with their name) or ``!`` and why it failed: ``!refused``, ``!reset``,
``!timeout`` (no complete reply within TIMEOUT seconds), ``!status-503``,
``!unreachable``, ``!error``.  It runs until stdin closes, then lets the requests
under way end (each has at most TIMEOUT) and says how they did.

One connection per request, as a browser without keep-alive: every request is
scheduled afresh by the director.  Run it inside a network namespace
(``ip netns exec``); it only talks to the address it is given.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import time


async def fetch(address: str, port: int, timeout: float) -> str:
    """One request; its outcome as the module's doc describes."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            writer.write(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            reply = await reader.read()
    except TimeoutError:
        return "!timeout"
    except ConnectionRefusedError:
        return "!refused"
    except ConnectionResetError:
        return "!reset"
    except OSError as err:
        if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "!unreachable"
        return "!error"
    finally:
        if writer is not None:
            writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        return f"!status-{(status or [b'none'])[0].decode(errors='replace')}"
    words = body.split()
    return words[0].decode(errors="replace") if words else "!empty"


async def watch(address: str, port: int, interval: float, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def on_stdin() -> None:
        if not sys.stdin.buffer.raw.read(4096) and not stdin_closed.done():
            stdin_closed.set_result(None)
    loop.add_reader(sys.stdin.fileno(), on_stdin)

    async def one() -> None:
        sent = time.monotonic()
        print(f"{sent:.6f} sent", flush=True)
        outcome = await fetch(address, port, timeout)
        print(f"{sent:.6f} {time.monotonic():.6f} {outcome}", flush=True)

    tasks: set[asyncio.Task[None]] = set()
    next_send = time.monotonic()
    while not stdin_closed.done():
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        # paced from the schedule, not from the previous send: a slow moment
        # (the VM's emulated CPU) is caught up rather than stretching the pace
        next_send += interval
        delay = next_send - time.monotonic()
        if delay < -1.0:
            next_send = time.monotonic()     # too far behind: start afresh
        await asyncio.wait([stdin_closed], timeout=max(0.0, delay))
    # every request sent gets its line: a reader may be waiting for it
    if tasks:
        await asyncio.wait(tasks)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    address, port, interval, timeout = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    asyncio.run(watch(address, port, interval, timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
