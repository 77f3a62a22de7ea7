"""The lab itself: hosts reach each other, cables unplug, nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from pyroute2 import IPRoute

from tests.integration.conftest import LabFactory
from tests.lab import Host, Lab

IFF_LOWER_UP = 0x10000

SERVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 9999))
print("ready", flush=True)
data, peer = sock.recvfrom(100)
sock.sendto(data.upper(), peer)
"""
CLIENT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.sendto(b"hello", (sys.argv[1], 9999))
print(sock.recvfrom(100)[0].decode())
"""


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def eth0(host: Host) -> tuple[int, str]:
    """(flags, operstate) of the host's eth0."""
    with IPRoute(netns=host.netns, flags=0) as ipr:
        link = ipr.link("get", ifname="eth0")[0]
        return link["flags"], link.get("IFLA_OPERSTATE")


def wait_for(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("family", [4, 6])
def test_hosts_reach_each_other(lab_factory: LabFactory, family: int) -> None:
    lab = lab_factory(["a", "b"])
    a, b = lab.host("a"), lab.host("b")
    server_ip = str(b.ip4 if family == 4 else b.ip6)
    server = b.spawn([sys.executable, "-c", SERVER, server_ip],
                     stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline() == "ready\n"
    assert a.run([sys.executable, "-c", CLIENT, server_ip]).stdout == "HELLO\n"
    assert server.wait(timeout=5) == 0
    assert a.neighbour_mac(server_ip) == b.mac
    assert a.neighbour_mac("198.18.0.99") is None


def test_hosts_have_their_addresses(lab_factory: LabFactory) -> None:
    lab = lab_factory(["a", "b"])
    a, b = lab.host("a"), lab.host("b")
    assert (str(a.ip4), str(b.ip4), str(b.ip6)) == ("198.18.0.11", "198.18.0.12", "2001:db8::12")
    assert {"198.18.0.11/24", "2001:db8::11/64"} <= a.addresses()
    assert len(a.mac) == 6 and a.mac != b.mac
    assert lab.lan.endswith("-lan") and a.netns == f"kpy-{lab.tag}-a"


def test_cable_down_and_up(lab_factory: LabFactory) -> None:
    lab = lab_factory(["a", "b"])
    b = lab.host("b")
    assert eth0(b)[0] & IFF_LOWER_UP and eth0(b)[1] == "UP"
    lab.cable("b", False)
    assert wait_for(lambda: not eth0(b)[0] & IFF_LOWER_UP)
    assert eth0(b)[1] != "UP"
    assert eth0(lab.host("a"))[0] & IFF_LOWER_UP      # only b's cable is out
    lab.cable("b", True)
    assert wait_for(lambda: bool(eth0(b)[0] & IFF_LOWER_UP) and eth0(b)[1] == "UP")


def test_close_leaves_nothing(root_only: None) -> None:
    lab = Lab(["a", "b"])
    made = {lab.lan, lab.host("a").netns, lab.host("b").netns}
    assert made <= namespaces()
    # a child that has a child of its own, and one that leaves the process group
    shell = lab.host("a").spawn(["sh", "-c", "sleep 300 & setsid sleep 300 & wait"])
    assert wait_for(lambda: len(pids_in(lab.host("a").netns)) == 3)
    pids = pids_in(lab.host("a").netns)
    assert shell.pid in pids
    lab.close()
    assert not made & namespaces()
    assert not [pid for pid in pids if alive(pid)]
    lab.close()                                       # a second close is harmless


def test_failed_setup_removes_only_its_own(root_only: None) -> None:
    with Lab(["a"]) as first:
        with pytest.raises(RuntimeError, match="File exists"):
            Lab(["a"], tag=first.tag)
        assert {first.lan, first.host("a").netns} <= namespaces()
    assert not {first.lan, first.host("a").netns} & namespaces()


def test_exception_in_body_still_cleans_up(root_only: None) -> None:
    with pytest.raises(KeyError):
        with Lab(["a"]) as lab:
            made = {lab.lan, lab.host("a").netns}
            lab.host("b")
    assert not made & namespaces()


def test_bad_host_names(root_only: None) -> None:
    for hosts in (["a", "a"], ["lan"], ["x" * 15], ["A/b"]):
        with pytest.raises(ValueError):
            Lab(hosts)


def pids_in(netns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}
