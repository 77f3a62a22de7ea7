"""The engine as the runtime drives it, without a network: the runtime's own rules.

- a transition's wall-clock time is taken once, when it happens (the control
  socket and the Ansible facts read the same value every time);
- a timer reads what the VRRP sockets hold before it acts (a backup thawed
  after SIGSTOP must hear the live master before declaring it down);
- announcements leave only while the instance holds its addresses, and the
  first advert as master waits for the first round.

A real ``VrrpRuntime`` on a real asyncio loop, with stand-ins for the kernel,
the sockets and the announcer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from keepalived_py.config import parse
from keepalived_py.vrrp import engine as e
from keepalived_py.vrrp import packet
from keepalived_py.vrrp import snapshot as snap_mod
from keepalived_py.vrrp.build import build_instances
from keepalived_py.vrrp.kernel import VirtualAddress
from keepalived_py.vrrp.runtime import Running, VrrpRuntime
from keepalived_py.vrrp.transport import Packet

from tests.unit.engine_sim import ipv4_datagram

ME = IPv4Address("198.18.0.11")
PEER = IPv4Address("198.18.0.12")
VIP = "198.18.0.100/24"
CONFIG = f"""
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    virtual_ipaddress {{
        {VIP}
    }}
}}
"""


class FakeSocket:
    """A VRRP socket holding packets queued while the process was frozen."""

    def __init__(self) -> None:
        self.ifname, self.ifindex, self.family = "eth0", 2, 4
        self.rx = [SimpleNamespace(fileno=lambda: 16)]
        self.queued: list[Packet] = []
        self.sent: list[packet.Advert] = []

    def read(self, rx: object, limit: int = 64) -> list[Packet]:
        out, self.queued = self.queued[:limit], self.queued[limit:]
        return out

    def send(self, adv: packet.Advert, *args: Any) -> None:
        self.sent.append(adv)


class FakeAnnouncer:
    def __init__(self) -> None:
        self.sent: list[IPv4Address] = []

    def announce(self, mac: bytes, address: IPv4Address) -> None:
        self.sent.append(address)


def advert_from_peer(priority: int) -> Packet:
    adv = packet.Advert(version=2, vrid=51, priority=priority, interval_cs=100,
                        addresses=(IPv4Address(VIP.split("/")[0]),))
    data = ipv4_datagram(packet.encode(adv, PEER, packet.VRRP_GROUP_V4), PEER,
                         packet.VRRP_GROUP_V4)
    return Packet(51, e.Received(data, PEER, packet.VRRP_GROUP_V4))


def in_runtime(body: Callable[[VrrpRuntime, Running, FakeSocket], Awaitable[None]],
               **spec_changes: Any) -> None:
    """Run ``body`` with a runtime holding one instance (not started: no kernel)."""
    (spec,) = build_instances(parse("t.conf", text=CONFIG).root)

    async def main() -> None:
        runtime = VrrpRuntime([spec], kernel=SimpleNamespace())
        runtime._loop = asyncio.get_running_loop()
        sock = FakeSocket()
        engine = e.Instance(e.InstanceConfig(**{**spec.cfg.__dict__, "source": ME,
                                                **spec_changes}))
        run = Running(spec=spec, engine=engine, sock=sock, announcer=FakeAnnouncer(),
                      mac=b"\x02" * 6, vips=[VirtualAddress.from_words((VIP,), "eth0")],
                      evips=[], routes=[], rules=[])
        runtime.instances.append(run)
        runtime._sockets[("eth0", 4)] = sock
        runtime._by_vrid[(id(sock), 51)].append(run)
        try:
            await body(runtime, run, sock)
        finally:
            if run.timer:
                run.timer.cancel()

    asyncio.run(main())


# -- last_transition ---------------------------------------------------------------------

def test_a_transition_keeps_the_wall_clock_time_it_happened_at() -> None:
    async def body(runtime: VrrpRuntime, run: Running, _sock: FakeSocket) -> None:
        before = time.time()
        runtime._perform(run, run.engine.start(runtime._loop.time()))
        after = time.time()
        (record,) = run.transitions
        assert before <= record.wall <= after
        # the offset between the loop clock and the wall clock moves between two
        # reads (NTP slews, or just the two clocks read a moment apart): the
        # transition's time does not
        reads = [snap_mod.instance_snapshot(run, offset) for offset in
                 (1.7e9, 1.7e9 + 0.25, 1.7e9 - 3.0, time.time() - runtime._loop.time())]
        assert {r["last_transition"] for r in reads} == {round(record.wall, 6)}
        assert {r["transitions"][0]["time"] for r in reads} == {round(record.wall, 6)}

    in_runtime(body)


def test_a_quiet_instance_reads_the_same_last_transition_every_time() -> None:
    async def body(runtime: VrrpRuntime, run: Running, _sock: FakeSocket) -> None:
        runtime._perform(run, run.engine.start(runtime._loop.time()))
        seen = set()
        for _ in range(100):
            snap = await snap_mod.vrrp_snapshot(SimpleNamespace(
                instances=[run], config=None, firewall=None, kernel=NoKernel(),
                _link_up={}, tracker_values={}))
            seen.add(snap["instances"][0]["last_transition"])
            await asyncio.sleep(0)
        assert len(seen) == 1

    in_runtime(body)


class NoKernel:
    async def link_state(self, name: str) -> Any:
        raise snap_mod.KernelError("no kernel here")


# -- a timer reads the sockets first --------------------------------------------------

def test_an_expired_down_timer_hears_the_queued_advert_before_it_acts() -> None:
    async def body(runtime: VrrpRuntime, run: Running, sock: FakeSocket) -> None:
        loop = runtime._loop
        runtime._perform(run, run.engine.start(loop.time()))
        assert run.engine.state == e.State.BACKUP
        # frozen past the down timer, while the master's adverts queued up
        sock.queued = [advert_from_peer(200) for _ in range(20)]
        run.engine.deadline = loop.time()       # as if the down timer were due now
        run.engine._sands = loop.time()
        runtime._on_timer(run)
        assert run.engine.state == e.State.BACKUP
        assert sock.queued == [] and sock.sent == []
        assert run.engine.stats.advert_rcvd == 20
        assert run.engine.deadline > loop.time() + 3.0     # restarted by the last advert

    in_runtime(body)


def test_an_expired_down_timer_with_nothing_queued_takes_over() -> None:
    async def body(runtime: VrrpRuntime, run: Running, sock: FakeSocket) -> None:
        loop = runtime._loop
        runtime._perform(run, run.engine.start(loop.time()))
        run.engine._sands = loop.time()
        runtime._on_timer(run)
        assert run.engine.state == e.State.MASTER

    in_runtime(body)


# -- announcements ----------------------------------------------------------------------

def test_the_first_advert_as_master_follows_the_first_announcement() -> None:
    async def body(runtime: VrrpRuntime, run: Running, sock: FakeSocket) -> None:
        loop = runtime._loop
        runtime._perform(run, run.engine.start(loop.time()))
        actions = run.engine.tick(run.engine.deadline)
        (announce,) = [a for a in actions if isinstance(a, e.Announce)]
        assert announce.ticket and not any(isinstance(a, e.SendAdvert) for a in actions)
        sent_before = len(sock.sent)
        await runtime._announce(run, announce.repeat, ticket=announce.ticket)
        assert run.announcer.sent == [IPv4Address("198.18.0.100")] * 5
        assert len(sock.sent) == sent_before + 1 and sock.sent[-1].priority == 100

    in_runtime(body)


def test_no_announcement_leaves_once_the_addresses_are_let_go() -> None:
    async def body(runtime: VrrpRuntime, run: Running, sock: FakeSocket) -> None:
        loop = runtime._loop
        runtime._perform(run, run.engine.start(loop.time()))
        actions = run.engine.tick(run.engine.deadline)
        (announce,) = [a for a in actions if isinstance(a, e.Announce)]
        # the master is heard before the queued announcement runs: back to BACKUP
        run.engine.receive(loop.time(), advert_from_peer(200).received)
        assert run.engine.state == e.State.BACKUP and not run.engine.vips_set
        await runtime._announce(run, announce.repeat, ticket=announce.ticket)
        assert run.announcer.sent == []

    in_runtime(body)


def test_rounds_stop_when_the_addresses_go_between_two_rounds() -> None:
    async def body(runtime: VrrpRuntime, run: Running, sock: FakeSocket) -> None:
        loop = runtime._loop
        runtime._perform(run, run.engine.start(loop.time()))
        run.engine.tick(run.engine.deadline)
        run.spec = run.spec.__class__(**{**run.spec.__dict__, "garp_interval_us": 20_000})
        task = asyncio.create_task(runtime._announce(run, 5))
        await asyncio.sleep(0.03)               # one or two rounds out
        run.engine.receive(loop.time(), advert_from_peer(200).received)
        await task
        assert 1 <= len(run.announcer.sent) <= 2

    in_runtime(body)
