"""VMAC (use_vmac) end to end: routers, a client, and the frames on the wire.

With a VMAC the VIPs live on a macvlan whose MAC is the VRRP router's virtual
MAC, 00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID (IPv6), the same on
every router of the segment.  A client that resolved the VIP once never
needs to learn another MAC: after a failover its neighbour entry is still
right, and only the bridge has to learn the MAC's new port (from the new
master's adverts, which leave from the VMAC, and its gratuitous ARPs).

Each test runs routers r1 (priority 150) and r2 (100), or our agent a and
keepalived 2.2.7 k, and a client c that sends a numbered UDP probe to the VIP
every 20 ms; each router host answers probes with its name.  Around each
failover the test samples the client's neighbour entry for the VIP and counts
the probes lost and the longest time without an answer.

Bounds (VRRPv3, advert interval ADVERT): a graceful stop hands over within
the backup's skew time (its priority-0 advert), a dead link within the
backup's Master_Down_Interval (3 * ADVERT + skew); LATE is the slack for a
busy 2-core machine (two processes, the kernel and the bridge in between),
as in test_vrrp.py; two probe intervals more for a probe in flight at each end.
A takeover from a live master (preemption) may cost one advert interval more:
the old master can still hold the VIP when the new master's gratuitous ARPs
(requests for the VIP) arrive, and its VMAC answers them from the virtual
MAC, which takes the bridge's entry back until the new master's next advert.
keepalived's routers do exactly the same (seen in the lab with a sniffer on
the old master: five ARP replies from 00:00:5e:00:01:33, one per GARP).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tier_missing
from tests.integration.agents import (
    KEEPALIVED,
    Probe,
    Router,
    link_local,
    serve,
    vrrp_config,
    wait_for,
)
from tests.integration.conftest import LabFactory
from tests.lab import Host, Lab

VRID = 51
VIP4 = "198.18.0.100"
VIP6 = "2001:db8::100"
VMAC = "vrrp.51"
ADVERT = 0.1            # our agents
ADVERT_KEEPALIVED = 0.2     # with keepalived, as test_interop.py runs VRRPv3
PROBE_EVERY = 0.02
LATE = 0.3
STATE_LINE = re.compile(rf"\(VI_{VRID}\) Entering (\w+) STATE")


def virtual_mac(family: int) -> str:
    return f"00:00:5e:00:0{2 if family == 6 else 1}:{VRID:02x}"


def skew(priority: int, advert: float) -> float:
    return (256 - priority) * advert / 256


def down_interval(priority: int, advert: float) -> float:
    return 3 * advert + skew(priority, advert)


def figure(name: str, value: float | int | str, expected: str = "") -> None:
    """Measured figures go to stdout (``pytest -s`` shows them)."""
    shown = f"{value:.3f} s" if isinstance(value, float) else str(value)
    print(f"\nFIGURE {name}: {shown}{f' ({expected})' if expected else ''}")


# -- reading hosts ----------------------------------------------------------------------

def ip_json(host: Host, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", "-n", host.netns, *args], capture_output=True,
                          text=True, timeout=30)
    return json.loads(done.stdout or "[]") if done.returncode == 0 else []


def vmac_link(host: Host, name: str = VMAC) -> dict[str, Any] | None:
    """The link ``name`` as ``ip -d`` shows it, or None."""
    links = ip_json(host, "-d", "link", "show", "dev", name)
    return links[0] if links else None


def addresses(host: Host, ifname: str) -> set[str]:
    return {a["local"] for link in ip_json(host, "addr", "show", "dev", ifname)
            for a in link.get("addr_info", [])}


def nft_tables(host: Host) -> set[str]:
    done = host.run(["nft", "-j", "list", "tables"])
    return {f"{t['table']['family']} {t['table']['name']}"
            for t in json.loads(done.stdout)["nftables"] if "table" in t}


def states(router: Router, since: int = 0) -> list[str]:
    """The states the router's log says VI_51 entered (our agent's and keepalived's
    lines read alike); ``since``: a length of the log to start from."""
    return STATE_LINE.findall(router.log_text()[since:])


def log_length(router: Router) -> int:
    return len(router.log_text()) if router.log.exists() else 0


def wait_state(router: Router, state: str, since: int = 0, timeout: float = 10.0) -> None:
    wait_for(f"{router.name} to enter {state}",
             lambda: (states(router, since) or [None])[-1] == state, timeout=timeout)


# -- frames on the wire -----------------------------------------------------------------

_FRAMES = r"""
import json, socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("eth0", 0))
sock.settimeout(0.05)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        frame, addr = sock.recvfrom(2048)
    except TimeoutError:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    seen = {"t": round(time.monotonic(), 4), "src": frame[6:12].hex(":")}
    kind = frame[12:14]
    if kind == b"\x08\x06":
        seen.update(kind="arp", op=frame[21], sha=frame[22:28].hex(":"),
                    spa=socket.inet_ntoa(frame[28:32]), tpa=socket.inet_ntoa(frame[38:42]))
    elif kind == b"\x08\x00":
        start = 14 + (frame[14] & 0xF) * 4
        seen.update(ip_src=socket.inet_ntoa(frame[26:30]), ip_dst=socket.inet_ntoa(frame[30:34]))
        if frame[23] == 112:
            seen.update(kind="vrrp", vrid=frame[start + 1], priority=frame[start + 2])
        elif frame[23] == 2:
            seen.update(kind="igmp")
    elif kind == b"\x86\xdd":
        seen.update(ip_src=socket.inet_ntop(socket.AF_INET6, frame[22:38]),
                    ip_dst=socket.inet_ntop(socket.AF_INET6, frame[38:54]))
        header, at = frame[20], 54
        if header == 0:                 # hop-by-hop options (MLD reports carry them)
            header, at = frame[at], at + (frame[at + 1] + 1) * 8
        if header == 112:
            seen.update(kind="vrrp", vrid=frame[at + 1], priority=frame[at + 2])
        elif header == 58 and frame[at] == 136:
            option = frame[at + 24:at + 32]
            seen.update(kind="na", target=socket.inet_ntop(socket.AF_INET6, frame[at + 8:at + 24]),
                        tlla=option[2:8].hex(":") if option[:1] == b"\x02" else None)
        elif header == 58 and frame[at] in (133, 143):
            seen.update(kind="rs" if frame[at] == 133 else "mld")
    if "kind" in seen:
        print(json.dumps(seen), flush=True)
"""


class Frames:
    """VRRP, ARP, IGMP and some ICMPv6 frames a host receives, for ``seconds``."""

    def __init__(self, host: Host, seconds: float) -> None:
        self.seconds = seconds
        self.proc = host.spawn([sys.executable, "-c", _FRAMES, str(seconds)],
                               stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def result(self) -> list[dict[str, Any]]:
        out, _ = self.proc.communicate(timeout=self.seconds + 10)
        return [json.loads(line) for line in out.splitlines()]


# -- routers ----------------------------------------------------------------------------

@dataclass
class Segment:
    """Router hosts and the client c of one test; routers made here are closed at the end."""

    lab: Lab
    client: Host
    routers: list[Router] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)

    def router(self, name: str, priority: int, vip: str = VIP4, kind: str = "agent",
               extra: str = "", advert: float = ADVERT) -> Router:
        prefix = "64" if ":" in vip else "24"
        config = vrrp_config(name, vrid=VRID, priority=priority, vip=f"{vip}/{prefix}",
                             advert_int=f"{advert:g}", version=3, extra=f"use_vmac\n{extra}")
        router = Router(self.lab.host(name), config, kind)
        self.routers.append(router)
        return router

    def probe(self, vip: str) -> Probe:
        probe = Probe(self.client, vip, PROBE_EVERY)
        self.probes.append(probe)
        probe.wait_answered()
        return probe


@pytest.fixture
def segment(lab_factory: LabFactory) -> Iterator[Callable[[list[str]], Segment]]:
    made: list[Segment] = []

    def make(routers: list[str]) -> Segment:
        lab = lab_factory([*routers, "c"])
        for name in routers:
            serve(lab.host(name))
        made.append(Segment(lab, lab.host("c")))
        return made[-1]

    yield make
    for seg in made:
        for probe in seg.probes:
            probe.stop()
        for router in seg.routers:
            print(f"----- {router.kind} on {router.name} -----\n{router.log_text()}")
            router.close()


@pytest.fixture(scope="module")
def keepalived() -> str:
    done = subprocess.run([KEEPALIVED, "--version"], capture_output=True, text=True) \
        if Path(KEEPALIVED).is_file() else None
    if done is None or "v2.2.7 " not in done.stdout + done.stderr:
        tier_missing(f"interop tier: keepalived 2.2.7 not installed at {KEEPALIVED}")
    return KEEPALIVED


def start_pair(high: Router, low: Router) -> None:
    """The higher one first, master; then the lower one, backup."""
    high.start()
    wait_state(high, "MASTER")
    low.start()
    wait_state(low, "BACKUP")


def assert_vmac(router: Router, family: int, vip: str | None) -> None:
    """The router's VMAC is a private macvlan on eth0 with the virtual MAC, up,
    holding ``vip`` (None: no address but, for IPv6, its link-local one)."""
    link = vmac_link(router.host)
    assert link is not None, f"{router.name} has no {VMAC}"
    info = link["linkinfo"]
    assert (info["info_kind"], info["info_data"]["mode"]) == ("macvlan", "private")
    assert link["link"] == "eth0" and link["address"] == virtual_mac(family)
    assert "UP" in link["flags"]
    held = addresses(router.host, VMAC)
    lladdr = {str(link_local(router.host))} if family == 6 else set()
    assert held == lladdr | ({vip} if vip else set()), held
    assert vip is None or vip not in addresses(router.host, "eth0")


@dataclass
class Failover:
    gap: float              # the longest time without an answer
    lost: int               # probes never answered
    macs: set[str | None]   # the client's neighbour entries for the VIP meanwhile


def failover(seg: Segment, vip: str, new_master: str, event: Callable[[], None],
             settle: float = 0.5) -> Failover:
    """Run ``event`` while the client probes the VIP; wait until ``new_master`` answers."""
    probe = seg.probe(vip)
    time.sleep(0.3)
    began = time.monotonic()
    macs = set()

    def answered() -> bool:
        mac = seg.client.neighbour_mac(vip)
        macs.add(mac.hex(":") if mac else None)
        return new_master in probe.who(time.monotonic() - 0.1)

    event()
    wait_for(f"{new_master} to answer the client", answered, timeout=10)
    time.sleep(settle)
    macs.add((seg.client.neighbour_mac(vip) or b"").hex(":") or None)
    probe.stop()
    return Failover(probe.longest_gap(began - 0.2), probe.lost(began - 0.2), macs)


def check(name: str, result: Failover, family: int, bound: float) -> None:
    figure(f"{name} longest gap", result.gap, f"bound {bound:.3f} s")
    figure(f"{name} lost probes", result.lost, f"bound {int(bound / PROBE_EVERY) + 1}")
    figure(f"{name} client's MACs for the VIP", ", ".join(sorted(map(str, result.macs))))
    assert result.macs == {virtual_mac(family)}, result.macs
    assert result.gap <= bound, result.gap
    assert result.lost <= int(bound / PROBE_EVERY) + 1, result.lost


# -- two of our agents --------------------------------------------------------------------

@pytest.mark.parametrize("event", ["stop", "kill", "cable"])
def test_the_client_keeps_the_virtual_mac_across_a_failover(
        segment: Callable[[list[str]], Segment], event: str) -> None:
    """The master goes (SIGTERM, kill -9, or its cable): the backup takes over, the
    client's entry for the VIP stays the virtual MAC and its traffic continues."""
    seg = segment(["r1", "r2"])
    r1, r2 = seg.router("r1", 150), seg.router("r2", 100)
    start_pair(r1, r2)
    assert_vmac(r1, 4, VIP4)
    assert_vmac(r2, 4, None)
    # the IGMP join of a backup's VMAC leaves from its base (nftables)
    assert nft_tables(r2.host) >= {"ip keepalived_py"}

    since = log_length(r2)
    sniff = Frames(seg.client, 2.0)
    if event == "stop":
        result = failover(seg, VIP4, "r2", lambda: r1.stop(signal.SIGTERM))
        bound = skew(100, ADVERT) + LATE + 2 * PROBE_EVERY
    elif event == "kill":
        # r1's host keeps its VIP and answers until the bridge follows r2's adverts
        result = failover(seg, VIP4, "r2", lambda: r1.stop(signal.SIGKILL))
        bound = down_interval(100, ADVERT) + LATE + 2 * PROBE_EVERY
    else:
        result = failover(seg, VIP4, "r2", lambda: seg.lab.cable("r1", False))
        bound = down_interval(100, ADVERT) + LATE + 2 * PROBE_EVERY
    frames = sniff.result()
    check(f"ipv4 {event}", result, 4, bound)
    assert states(r2, since)[-1:] == ["MASTER"]
    assert_vmac(r2, 4, VIP4)
    # the new master's adverts and gratuitous ARPs come from the virtual MAC
    vmac = virtual_mac(4)
    adverts = [f for f in frames if f["kind"] == "vrrp" and f["priority"] == 100]
    garps = [f for f in frames if f["kind"] == "arp" and f["spa"] == VIP4 == f["tpa"]]
    assert adverts and {(f["src"], f["ip_src"]) for f in adverts} == {(vmac, str(r2.host.ip4))}
    assert garps and {(f["src"], f["sha"]) for f in garps} == {(vmac, vmac)}, garps

    if event == "stop":
        assert vmac_link(r1.host) is None, "a stopped agent leaves no VMAC behind"
        assert nft_tables(r1.host) == set()
    if event == "cable":
        # plugged back, r1 preempts: the client's entry does not move either
        since = log_length(r1)
        back = failover(seg, VIP4, "r1", lambda: seg.lab.cable("r1", True))
        check("ipv4 preemption after the cable is back", back, 4,
              ADVERT + LATE + 2 * PROBE_EVERY)
        assert states(r1, since)[-2:] == ["BACKUP", "MASTER"]


def test_ipv6_vmac_failover(segment: Callable[[list[str]], Segment]) -> None:
    """IPv6: the VMAC carries 00:00:5e:00:02:VRID and the base's link-local address,
    adverts leave from it with that address, NAs carry the virtual MAC."""
    seg = segment(["r1", "r2"])
    r1, r2 = seg.router("r1", 150, VIP6), seg.router("r2", 100, VIP6)
    start_pair(r1, r2)
    assert_vmac(r1, 6, VIP6)
    assert_vmac(r2, 6, None)
    assert nft_tables(r2.host) >= {"ip6 keepalived_py"}

    sniff = Frames(seg.client, 1.5)
    result = failover(seg, VIP6, "r2", lambda: r1.stop(signal.SIGTERM))
    frames = sniff.result()
    check("ipv6 stop", result, 6, skew(100, ADVERT) + LATE + 2 * PROBE_EVERY)
    vmac = virtual_mac(6)
    adverts = [f for f in frames if f["kind"] == "vrrp" and f["priority"] == 100]
    assert adverts and {(f["src"], f["ip_src"]) for f in adverts} == \
        {(vmac, str(link_local(r2.host)))}
    nas = [f for f in frames if f["kind"] == "na" and f["target"] == VIP6]
    assert nas and {(f["src"], f["tlla"]) for f in nas} == {(vmac, vmac)}, nas
    # no router solicitation and no MLD report ever leaves from a VMAC
    assert not [f for f in frames if f["kind"] in ("rs", "mld") and f["src"] == vmac]


def test_a_backup_s_group_join_leaves_from_its_base(
        segment: Callable[[list[str]], Segment]) -> None:
    """keepalived's nftables rule: the IGMP report of a starting backup's VMAC is sent
    from the base (so a switch never learns the virtual MAC on the backup's port)."""
    seg = segment(["r1", "r2"])
    r1, r2 = seg.router("r1", 150), seg.router("r2", 100)
    r1.start()
    wait_state(r1, "MASTER")
    sniff = Frames(seg.client, 2.0)
    r2.start()
    wait_state(r2, "BACKUP")
    frames = sniff.result()
    # IGMP reports come from r2's eth0 (and r1's, whose join is recent too), none
    # from the virtual MAC
    sources = {f["src"] for f in frames if f["kind"] == "igmp"}
    figure("IGMP reports while the backup starts (source MACs)", ", ".join(sorted(sources)),
           f"r2's eth0: {r2.host.mac.hex(':')}")
    assert r2.host.mac.hex(":") in sources and virtual_mac(4) not in sources, sources


def test_vmac_xmit_base_sends_adverts_from_the_base(
        segment: Callable[[list[str]], Segment]) -> None:
    """vmac_xmit_base: adverts leave from the base with its own MAC; the VIP is still
    on the VMAC and its gratuitous ARPs carry the virtual MAC."""
    seg = segment(["r1", "r2"])
    r1 = seg.router("r1", 150, extra="vmac_xmit_base")
    r2 = seg.router("r2", 100, extra="vmac_xmit_base")
    sniff = Frames(seg.client, 3.0)
    start_pair(r1, r2)
    assert_vmac(r1, 4, VIP4)
    frames = sniff.result()
    adverts = [f for f in frames if f["kind"] == "vrrp" and f["priority"] == 150]
    garps = [f for f in frames if f["kind"] == "arp" and f["spa"] == VIP4 == f["tpa"]]
    assert adverts and {f["src"] for f in adverts} == {r1.host.mac.hex(":")}
    assert garps and {(f["src"], f["sha"]) for f in garps} == {(virtual_mac(4),) * 2}
    assert states(r2) == ["BACKUP"], "r2 did not hear r1's adverts on its base"
    # the status shows the VMAC as keepalived's dumps do ("Use VMAC, i/f name ...")
    done = subprocess.run([sys.executable, "-m", "keepalived_py.cli", "status", "--json",
                           "--control-socket", str(r1.control)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    vrrp = json.loads(done.stdout)["vrrp"]
    (inst,) = vrrp["instances"]
    assert inst["vmac"] == {"ifname": VMAC, "base": "eth0", "mac": virtual_mac(4),
                            "mac_configured": False, "up": True, "xmit_base": True}
    assert vrrp["sockets"][inst["socket"]]["interface"] == "eth0"
    # tracked as keepalived tracks them: the interface, then the VMAC
    assert [(t["name"], t["kind"], t["up"]) for t in inst["trackers"]["interfaces"]] == \
        [("eth0", "interface", True), (VMAC, "interface", True)]


def test_reload_moves_the_vip_with_use_vmac(segment: Callable[[list[str]], Segment]) -> None:
    """A reload that drops use_vmac replaces the instance (keepalived's vrrp_exist): its
    VMAC goes, the VIP comes back on eth0; adding use_vmac again brings the VMAC back."""
    seg = segment(["r1"])
    r1 = seg.router("r1", 150)
    r1.start()
    wait_state(r1, "MASTER")
    assert_vmac(r1, 4, VIP4)
    plain = r1.config.replace("use_vmac\n", "")

    def reload(config: str) -> None:
        since = time.time()
        r1.conf.write_text(config)
        assert r1.proc is not None
        r1.proc.send_signal(signal.SIGHUP)
        r1.wait_log("Reload finished", since=since)

    reload(plain)
    wait_for("the VIP back on eth0", lambda: VIP4 in addresses(r1.host, "eth0"), timeout=5)
    assert vmac_link(r1.host) is None and nft_tables(r1.host) == set()
    reload(r1.config)
    wait_for("the VIP on the VMAC", lambda: vmac_link(r1.host) is not None
             and VIP4 in addresses(r1.host, VMAC), timeout=5)
    assert_vmac(r1, 4, VIP4)


def test_a_deleted_vmac_is_made_again(segment: Callable[[list[str]], Segment]) -> None:
    """Someone deletes the master's VMAC: the instance goes to FAULT, the VMAC is made
    again at once (keepalived's recreate_vmac_thread) and the router is master again."""
    seg = segment(["r1"])
    r1 = seg.router("r1", 150)
    r1.start()
    wait_state(r1, "MASTER")
    since = log_length(r1)
    r1.host.run(["ip", "link", "del", VMAC])
    wait_state(r1, "MASTER", since)
    assert states(r1, since) == ["FAULT", "BACKUP", "MASTER"]
    assert_vmac(r1, 4, VIP4)


def test_a_respawned_vrrp_child_takes_over_the_vmac(
        segment: Callable[[list[str]], Segment]) -> None:
    """kill -9 of the master's VRRP process: the agent starts another one, which
    adopts the VMAC (same base, same MAC) and its VIP; r2 never takes over and the
    client is not disturbed.  A 1 s advert interval: starting a Python process takes
    longer than the 0.36 s down interval of the other tests."""
    seg = segment(["r1", "r2"])
    r1, r2 = seg.router("r1", 150, advert=1.0), seg.router("r2", 100, advert=1.0)
    start_pair(r1, r2)
    before = vmac_link(r1.host)
    probe = seg.probe(VIP4)
    began = time.monotonic()
    since, since_r2 = log_length(r1), log_length(r2)
    child = int((r1.dir / "vrrp.pid").read_text())
    subprocess.run(["kill", "-9", str(child)], check=True)
    wait_state(r1, "MASTER", since)
    time.sleep(down_interval(100, 1.0))
    probe.stop()
    figure("VRRP child respawn with a VMAC: longest gap", probe.longest_gap(began))
    assert "MASTER" not in states(r2, since_r2)
    assert probe.who(began) == {"r1"} and probe.lost(began) == 0
    after = vmac_link(r1.host)
    assert before is not None and after is not None and after["ifindex"] == before["ifindex"]
    assert_vmac(r1, 4, VIP4)


def test_garp_extra_if_refreshes_the_other_vmacs(
        segment: Callable[[list[str]], Segment]) -> None:
    """use_vmac_addr puts an IPv6 eVIP on an address VMAC (vrrp6.51, MAC
    00:00:5e:00:02:33); with garp_extra_if 1 the master sends one NA for it from there
    every second, looked at when it sends an advert (keepalived's vrrp_send_vmac_update)."""
    seg = segment(["r1"])
    r1 = seg.router("r1", 150, extra="use_vmac_addr\n    garp_extra_if 1\n"
                    "    virtual_ipaddress_excluded {\n        2001:db8::51/64\n    }")
    r1.start()
    wait_state(r1, "MASTER")
    wait_for("the eVIP on vrrp6.51", lambda: "2001:db8::51" in addresses(r1.host, "vrrp6.51"))
    time.sleep(1.5)         # past the master's delayed second round of announcements
    frames = Frames(seg.client, 3.2).result()
    nas = [f for f in frames if f["kind"] == "na" and f["target"] == "2001:db8::51"]
    times = [round(b["t"] - a["t"], 2) for a, b in zip(nas, nas[1:], strict=False)]
    figure("garp_extra_if 1: NAs in 3.2 s", len(nas), f"intervals {times}")
    assert {(f["src"], f["tlla"]) for f in nas} == {(virtual_mac(6),) * 2}
    assert 3 <= len(nas) <= 4 and all(1.0 <= t <= 1.0 + ADVERT + 0.05 for t in times), nas
    garps = [f for f in frames if f["kind"] == "arp" and f["spa"] == VIP4]
    assert garps == [], "the own VMAC is refreshed by the adverts, not by garp_extra_if"


# -- our agent and keepalived 2.2.7 ---------------------------------------------------------

@pytest.mark.parametrize("high_kind", ["agent", "keepalived"])
def test_agent_and_keepalived_share_the_virtual_mac(
        segment: Callable[[list[str]], Segment], keepalived: str, high_kind: str) -> None:
    """Our agent and keepalived, both with use_vmac: the same virtual MAC on both, and
    the client keeps it while mastership goes from one to the other and back."""
    seg = segment(["a", "k"])
    kinds = {"a": "agent", "k": "keepalived"}
    high_host = "a" if high_kind == "agent" else "k"
    low_host = "k" if high_host == "a" else "a"
    high = seg.router(high_host, 150, kind=kinds[high_host], advert=ADVERT_KEEPALIVED)
    low = seg.router(low_host, 100, kind=kinds[low_host], advert=ADVERT_KEEPALIVED)
    start_pair(high, low)
    assert_vmac(high, 4, VIP4)
    assert_vmac(low, 4, None)

    since = log_length(low)
    stopped = failover(seg, VIP4, low_host, lambda: high.stop(signal.SIGTERM))
    check(f"{high_kind} high: stop", stopped, 4,
          skew(100, ADVERT_KEEPALIVED) + LATE + 2 * PROBE_EVERY)
    assert states(low, since)[-1:] == ["MASTER"]
    assert vmac_link(high.host) is None
    assert_vmac(low, 4, VIP4)

    since = log_length(high)
    back = failover(seg, VIP4, high_host, high.start)
    # the VIP is served until the preemption, which may cost an advert interval
    check(f"{high_kind} high: preemption", back, 4,
          ADVERT_KEEPALIVED + LATE + 2 * PROBE_EVERY)
    assert states(high, since)[-2:] == ["BACKUP", "MASTER"]
    assert_vmac(high, 4, VIP4)
    assert_vmac(low, 4, None)
