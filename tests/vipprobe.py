"""Real client traffic to a VIP, for tests, the demo and the failover bench.

    python vipprobe.py serve NAME [PORT]          answer UDP probes with NAME (IPv4 and IPv6)
    python vipprobe.py ask VIP [PORT] [TIMEOUT]   print who answers at VIP, exit 1 on silence
    python vipprobe.py watch VIP [PORT] [INTERVAL] [SECONDS]
        send a numbered probe every INTERVAL; print "<seq> <t_sent> <t_reply> <name>" per reply
        (monotonic clock seconds) until SECONDS have passed or stdin closes

Run it inside a network namespace (``ip netns exec``); it only talks to the
address it is given.
"""

from __future__ import annotations

import select
import socket
import sys
import time

PORT = 7777


def serve(name: str, port: int = PORT) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    print("ready", flush=True)
    while True:
        data, addr = sock.recvfrom(512)
        sock.sendto(data + b" " + name.encode(), addr)


def _socket(vip: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def ask(vip: str, port: int = PORT, timeout: float = 2.0) -> str | None:
    sock = _socket(vip)
    end = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < end:
        seq += 1
        try:
            sock.sendto(f"ask {seq}".encode(), (vip, port))
        except OSError:
            pass                    # no route or neighbour yet: try again
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            try:
                data = sock.recv(512)
            except OSError:
                continue
            return data.decode().split()[-1]
    return None


def watch(vip: str, port: int = PORT, interval: float = 0.01, seconds: float = 3600) -> None:
    sock = _socket(vip)
    sent: dict[int, float] = {}
    seq = 0
    start = time.monotonic()
    next_send = start
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            sent[seq] = now
            try:
                sock.sendto(f"{seq}".encode(), (vip, port))
            except OSError:
                pass
            next_send += interval
        watched = [sock, sys.stdin] if not sys.stdin.closed else [sock]
        ready, _, _ = select.select(watched, [], [], max(0.0, next_send - time.monotonic()))
        if sys.stdin in ready and not sys.stdin.readline():
            return
        if sock in ready:
            try:
                data = sock.recv(512)
            except OSError:
                continue
            got = time.monotonic()
            number, name = data.decode().split()
            print(f"{number} {sent.get(int(number), 0):.6f} {got:.6f} {name}", flush=True)


def main(argv: list[str]) -> int:
    if argv[0] == "serve":
        serve(argv[1], *(int(a) for a in argv[2:3]))
        return 0
    if argv[0] == "ask":
        name = ask(argv[1], *(int(a) for a in argv[2:3]), *(float(a) for a in argv[3:4]))
        print(name or "", flush=True)
        return 0 if name else 1
    if argv[0] == "watch":
        watch(argv[1], *(int(a) for a in argv[2:3]), *(float(a) for a in argv[3:5]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
