"""Record every frame seen on an interface into a classic pcap file, from inside a namespace.

    python pcap.py IFNAME FILE

Prints "ready" once the socket is bound, then writes each frame as it comes (flushed at
once, so a reader may look at the file while the capture runs) until SIGTERM or SIGINT.
Only what the interface sees is recorded; nothing is sent.  ``read_pcap`` reads the file
back (and any classic Ethernet pcap, such as tcpdump's).
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)   # Ethernet


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(time, frame) for every frame of a classic pcap file with Ethernet link type."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    if struct.unpack_from(endian + "I", data, 20)[0] != 1:
        raise ValueError(f"{path}: not an Ethernet capture")
    frames, offset = [], 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _ = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        frames.append((seconds + fraction / (1e9 if nano else 1e6),
                       data[offset:offset + caplen]))
        offset += caplen
    return frames


def capture(ifname: str, path: Path) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with path.open("wb") as out:
        out.write(PCAP_HEADER)
        out.flush()
        print("ready", flush=True)
        while not stop:
            try:
                frame = sock.recv(65535)
            except (TimeoutError, InterruptedError):
                continue
            now = time.time()
            seconds = int(now)
            out.write(struct.pack("<IIII", seconds, int((now - seconds) * 1e6), len(frame),
                                  len(frame)))
            out.write(frame)
            out.flush()


if __name__ == "__main__":
    capture(sys.argv[1], Path(sys.argv[2]))
