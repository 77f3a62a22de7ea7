"""connect.Connects: many TCP_CHECKs in flight on one epoll, on loopback."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from keepalived_py.check.connect import Connects, resolve
from keepalived_py.check.probe import ProbeResult, Target


def listener(backlog: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


async def run_checks(targets: list[Target], *, stall: float = 0.0,
                     ) -> dict[int, ProbeResult]:
    """Check every target at once; ``stall``: block the loop that long first."""
    results: dict[int, ProbeResult] = {}
    finished = asyncio.Event()

    def done(token: int, result: ProbeResult) -> None:
        results[token] = result
        if len(results) == len(targets):
            finished.set()

    connects = Connects(done)
    connects.attach()
    try:
        for n, target in enumerate(targets):
            connects.connect(resolve(target), n)
        assert not results, "a result came before connect() returned"
        if stall:
            time.sleep(stall)       # the loop is busy elsewhere (a large status, say)
        await asyncio.wait_for(finished.wait(), 10)
        assert len(connects) == 0
    finally:
        connects.close()
    return results


def test_more_ready_connects_than_one_poll_returns_all_pass_after_a_stall() -> None:
    # 1,500 handshakes complete while the loop is blocked for longer than their
    # connect_timeout: none of them may be reported as timed out
    server = listener(4096)
    try:
        port = server.getsockname()[1]
        targets = [Target("127.0.0.1", port, timeout=0.2)] * 1500
        results = asyncio.run(run_checks(targets, stall=0.5))
    finally:
        server.close()
    assert [r for r in results.values() if not r.ok] == []
    assert len(results) == 1500


def test_refused_and_bad_setup_are_told_apart() -> None:
    port = closed_port()
    results = asyncio.run(run_checks([
        Target("127.0.0.1", port, timeout=1),
        Target("127.0.0.1", port, bind_if="nosuchdev0", timeout=1),
    ]))
    assert results[0] == ProbeResult(False, "connection refused")
    assert results[1].inconclusive and "cannot bind to device nosuchdev0" in results[1].error


def test_close_drops_connects_in_flight_without_results() -> None:
    async def scenario() -> list[int]:
        seen: list[int] = []
        connects = Connects(lambda token, _result: seen.append(token))
        connects.attach()
        server = listener(16)
        try:
            connects.connect(resolve(Target("127.0.0.1", server.getsockname()[1])), 1)
            connects.close()
            await asyncio.sleep(0.1)
        finally:
            server.close()
        return seen

    assert asyncio.run(scenario()) == []


def test_connect_before_attach_is_a_bug() -> None:
    connects = Connects(lambda _t, _r: None)
    try:
        with pytest.raises(AssertionError):
            connects.connect(resolve(Target("127.0.0.1", 1)), 0)
    finally:
        connects.close()
