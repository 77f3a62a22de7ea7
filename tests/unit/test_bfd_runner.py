"""The BFD process's loop and session table, for real over loopback (no root needed).

Two runners (127.0.0.1 and 127.0.0.2, a free port instead of 3784) each in a
thread, each with its parent's line a socketpair that the test reads: they
come Up, answer requests, reload as a difference (an unchanged session never
flaps, a timer change goes through Poll/Final, a removed session says
AdminDown), stop with AdminDown, count what they drop, and detect a peer that
goes silent never before the detection time.

Timers are 50 ms x 3 here (two loops, a reader thread and pytest share one
interpreter); the lab tier (tests/integration/test_bfd.py) runs 20 ms x 3 in
separate processes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from keepalived_py.bfd.child import BFD, wanted
from keepalived_py.bfd.packet import Control, State, encode
from keepalived_py.bfd.runner import Runner, monotonic_us
from keepalived_py.bfd.sessions import SessionTable
from keepalived_py.bfd.spec import BfdConfig, SessionSpec
from keepalived_py.children import KINDS
from keepalived_py.config import load
from keepalived_py.core.daemon import ConfigRefused
from keepalived_py.core.ipc import ChannelClosed
from keepalived_py.core.line import LineChannel

A, B = "127.0.0.1", "127.0.0.2"
MS = 1000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((A, 0))
        return int(s.getsockname()[1])


def spec(local: str, peer: str, **kw: Any) -> SessionSpec:
    values: dict[str, Any] = {"min_rx_us": 50 * MS, "min_tx_us": 50 * MS, "multiplier": 3}
    values.update(kw)
    return SessionSpec("s", peer, local, **values)


def wait(what: str, check: Callable[[], object], timeout: float = 5.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Parent:
    """The test's end of a runner's line: what it sent, and requests with answers."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair()
        self.line = LineChannel(theirs)
        self.events: list[dict[str, Any]] = []
        self.answers: dict[int, dict[str, Any]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.sock.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                with self._lock:
                    if "reply_to" in message:
                        self.answers[message["reply_to"]] = message
                    else:
                        self.events.append(message)

    def request(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        self._ids += 1
        ident = self._ids
        self.sock.sendall(json.dumps({**request, "id": ident}).encode() + b"\n")
        return wait(f"an answer to {request}", lambda: self.answers.get(ident), timeout)

    def states(self) -> list[str | None]:
        """The ``bfd.session`` values published for session s, in order."""
        with self._lock:
            # a replacing publish without s withdraws it, as core/events.py reads it
            return [None if e["items"].get("s") is None else e["items"]["s"]["state"]
                    for e in self.events if e.get("event") == "publish"
                    and ("s" in e["items"] or e.get("replace"))]

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            for event in reversed(self.events):
                if event.get("event") == "publish" and ("s" in event["items"]
                                                        or event.get("replace")):
                    return event["items"].get("s")
        return None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Side:
    """A runner in a thread, as the BFD process runs it."""

    def __init__(self, local: str, config: BfdConfig, port: int) -> None:
        self.table = SessionTable(listen={socket.AF_INET: local}, ports=(port, port + 1))
        self.table.apply(config, monotonic_us())
        self.parent = Parent()
        self.next_load: Callable[[], BfdConfig] = lambda: config
        self.dumped: list[tuple[str, dict[str, Any]]] = []
        self.collections = 0
        # not gc.collect: this process (pytest's) has frozen nothing, and a full pass
        # over its heap would stall both runners
        self.runner = Runner(self.table, config, line=self.parent.line,
                             load=lambda: self.next_load(), dump=self._dump, signals=False,
                             collect=self._collect)
        self.runner.publish_all()
        self.runner.ready()
        self.thread = threading.Thread(target=self.runner.run, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        self.collections += 1

    def _dump(self, kind: str, snap: dict[str, Any]) -> str:
        self.dumped.append((kind, snap))
        return f"/nowhere/{kind}"

    def session(self) -> dict[str, Any]:
        answer = self.parent.request({"request": "snapshot"})
        assert answer["ok"], answer
        (one,) = answer["result"]["sessions"]
        return one

    def snapshot(self) -> dict[str, Any]:
        return self.parent.request({"request": "snapshot"})["result"]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.runner.stop()
            self.parent.sock.send(b"\n")           # wake its select
            self.thread.join(5)
        self.parent.close()


@pytest.fixture
def pair() -> Iterator[tuple[Side, Side]]:
    port = free_port()
    a = Side(A, BfdConfig((spec(A, B),)), port)
    b = Side(B, BfdConfig((spec(B, A),)), port)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def both_up(a: Side, b: Side) -> None:
    wait("both Up", lambda: a.parent.states()[-1:] == ["Up"] and b.parent.states()[-1:] == ["Up"])


def test_two_runners_come_up_publish_and_answer(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    states = a.parent.states()
    assert states[0] == "Down" and "Up" in states and "Init" not in states[:1]
    kinds = {e["event"] for e in a.parent.events}
    assert {"ready", "publish", "heartbeat"} <= kinds
    wait("negotiated fast timers", lambda: a.session()["detection_time_us"] == 150 * MS)
    s = a.session()
    assert (s["state"], s["remote_state"], s["tx_interval_us"]) == ("Up", "Up", 50 * MS)
    assert s["remote_discr"] == b.session()["local_discr"] != 0
    assert s["packets_in"] > 0 and s["packets_out"] > 0
    assert 49152 <= s["source_port"] <= 65535
    last = a.parent.last()
    assert last is not None and last["detection_time_us"] == 150 * MS
    assert (last["vrrp"], last["checker"], last["remote_admin_down"]) == (True, True, False)
    bad = a.parent.request({"request": "nonsense"})
    assert (bad["ok"], bad["error"]) == (False, "unknown request 'nonsense'")
    dumped = a.parent.request({"request": "dump", "kind": "data"})
    assert dumped["ok"] and dumped["path"] == "/nowhere/data"
    assert a.dumped[0][1]["sessions"][0]["name"] == "s"


def test_a_reload_that_changes_nothing_never_flaps(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    before = a.session()
    for _ in range(20):
        answer = a.parent.request({"request": "reload"})
        assert answer["ok"] and answer["unchanged"] == 1 and answer["changed"] == []
    after = a.session()
    assert after["local_discr"] == before["local_discr"]
    assert after["transitions"] == before["transitions"]
    assert after["state"] == "Up" and b.session()["failures"] == 0
    assert "Down" not in a.parent.states()[1:]


def test_a_timer_change_goes_through_a_poll_and_no_one_goes_down(
        pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    wait("fast timers", lambda: b.session()["detection_time_us"] == 150 * MS)
    a.next_load = lambda: BfdConfig((spec(A, B, min_tx_us=100 * MS, min_rx_us=80 * MS),))
    answer = a.parent.request({"request": "reload"})
    assert answer["ok"] and answer["changed"] == ["s"]
    # the peer learns the slower rate and its detection time follows it
    wait("the peer's detection time", lambda: b.session()["detection_time_us"] == 300 * MS)
    wait("ours", lambda: a.session()["detection_time_us"] == 3 * 80 * MS)
    # the slower rate is ours only once the peer's Final has come
    wait("the Final", lambda: (lambda s: (s["tx_interval_us"], s["polling"]) == (100 * MS, False))(
        a.session()))
    assert a.session()["failures"] == b.session()["failures"] == 0
    assert "Down" not in a.parent.states()[1:] + b.parent.states()[1:]


def test_a_removed_session_says_admin_down_first(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    a.next_load = lambda: BfdConfig(())
    answer = a.parent.request({"request": "reload"})
    assert answer["ok"] and answer["removed"] == ["s"]
    assert a.parent.states()[-1] is None                    # withdrawn from consumers
    wait("the peer Down", lambda: b.parent.states()[-1] == "Down")
    s = b.session()
    # RFC 5882: the peer's AdminDown is not a failure of the path
    assert (s["remote_admin_down"], s["failures"], s["diag"]) == (True, 0, "neighbor_down")
    assert b.parent.last()["remote_admin_down"] is True     # type: ignore[index]


def test_a_refused_reload_keeps_the_running_sessions(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)

    def refuse() -> BfdConfig:
        raise ConfigRefused(["t.conf:3: bad"])

    a.next_load = refuse
    answer = a.parent.request({"request": "reload"})
    assert answer["ok"] is False and answer["errors"] == ["t.conf:3: bad"]
    assert a.session()["state"] == "Up"


def test_stop_tells_the_peer_admin_down(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    assert a.parent.request({"request": "stop"})["ok"]
    a.thread.join(5)
    assert not a.thread.is_alive()
    wait("the peer Down", lambda: b.parent.states()[-1] == "Down")
    assert b.session()["remote_admin_down"] is True


def test_the_parent_gone_stops_the_process(pair: tuple[Side, Side]) -> None:
    a, _b = pair
    a.parent.sock.shutdown(socket.SHUT_RDWR)       # the reader's file keeps the fd open
    a.thread.join(5)
    assert not a.thread.is_alive()


def test_what_is_dropped_is_counted_and_changes_nothing(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    port = a.table.receivers[(socket.AF_INET, False)].sock.getsockname()[1]
    ours = a.session()["local_discr"]
    theirs = b.session()["local_discr"]
    up = encode(Control(state=State.UP, my_discr=theirs, your_discr=ours,
                        desired_min_tx_us=50 * MS, required_min_rx_us=50 * MS))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as garbage:
        garbage.bind(("127.0.0.3", 0))
        for data in (b"", b"\x20\x00", b"\x00" * 24, up[:20],
                     encode(Control(my_discr=5, your_discr=ours ^ 1))):
            garbage.sendto(data, (A, port))
        garbage.sendto(encode(Control(my_discr=5)), (A, port))      # no session for .3
        garbage.sendto(up, (A, port))           # a good discriminator from elsewhere
        garbage.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as near:
        near.bind((B, 0))
        near.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)      # GTSM: 255 only
        near.sendto(up, (A, port))
    snap = wait("the drops counted", lambda: (lambda s: s if s["drops"]["ttl"] else None)(
        a.snapshot()["sessions"][0]))
    drops = a.snapshot()["drops"]
    assert drops["truncated"] == 2 and drops["version"] == 1
    assert drops["length_exceeds_payload"] == 1
    assert drops["your_discr_unknown"] == 1 and drops["no_session"] == 1
    assert drops["wrong_source"] == 1
    assert snap["drops"]["ttl"] == 1 and snap["state"] == "Up" and snap["failures"] == 0


def test_a_silent_peer_is_detected_never_before_the_detection_time() -> None:
    port = free_port()
    a = Side(A, BfdConfig((spec(A, B, min_rx_us=30 * MS, min_tx_us=30 * MS),)), port)
    peer = SessionTable(listen={socket.AF_INET: B}, ports=(port, port + 1))
    peer.apply(BfdConfig((spec(B, A, min_rx_us=30 * MS, min_tx_us=30 * MS),)),
               monotonic_us())
    silent = threading.Event()
    done = threading.Event()

    def drive() -> None:
        while not done.is_set():
            if silent.is_set():
                time.sleep(0.01)
                continue
            now = monotonic_us()
            peer.drain_all(now)
            peer.fire_due(now)
            time.sleep(0.001)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        wait("Up at the fast rate", lambda: a.session()["detection_time_us"] == 90 * MS
             and a.session()["state"] == "Up")
        silent.set()                            # the cut: the peer says nothing more
        wait("the detection", lambda: a.parent.states()[-1] == "Down", timeout=3)
        expiry = a.session()["last_expiry"]
        assert expiry["detection_time_us"] == 90 * MS
        assert expiry["silent_us"] >= expiry["detection_time_us"]
        assert expiry["overdue_us"] < 90 * MS   # one more detection time of slack: robust
        assert a.session()["diag"] == "control_detection_expired"
        assert a.session()["failures"] == 1
    finally:
        done.set()
        driver.join(2)
        a.stop()
        peer.shutdown(monotonic_us())


def test_the_line_to_the_parent() -> None:
    ours, theirs = socket.socketpair()
    line = LineChannel(theirs)
    try:
        assert line.read() == []
        ours.sendall(b'{"request": "snapshot", "id": 1}\nnot json\n[1]\n{"event": "deliv')
        assert line.read() == [{"request": "snapshot", "id": 1}]
        ours.sendall(b'er"}\n')
        assert line.read() == [{"event": "deliver"}]
        line.reply({"id": 1}, {"ok": True})
        line.send({"event": "heartbeat"})
        assert ours.recv(1000) == b'{"ok":true,"reply_to":1}\n{"event":"heartbeat"}\n'
        ours.sendall(b'{"last": 1}\n')
        ours.close()
        assert line.read() == [{"last": 1}]
        with pytest.raises(ChannelClosed):
            line.read()
        assert line.closed
        with pytest.raises(ChannelClosed):
            line.send({"event": "heartbeat"})
    finally:
        line.close()


def test_the_child_declaration() -> None:
    assert BFD in KINDS
    assert (BFD.name, BFD.ident, BFD.pid_option, BFD.module) == \
        ("bfd", "Keepalived_bfd", "bfd_pid", "keepalived_py.bfd.main")
    assert BFD.publishes == frozenset({"bfd.session"})
    assert BFD.dumps == frozenset({"data", "json"})
    conf = load("t.conf", text="bfd_instance a {\nneighbor_ip 198.18.0.12\n}\n").root
    assert wanted(conf) and BFD.check(conf, "t.conf") == []
    assert not wanted(load("t.conf", text="global_defs {\nrouter_id x\n}\n").root)


def test_a_reload_collects_at_a_quiet_moment(pair: tuple[Side, Side]) -> None:
    a, b = pair
    both_up(a, b)
    before = a.snapshot()["process"]["gc"]["collections"]
    assert a.parent.request({"request": "reload"})["ok"]
    wait("a collection after the reload",
         lambda: a.snapshot()["process"]["gc"]["collections"] > before)
    assert a.collections >= 1


def test_a_hanging_configuration_reader_is_given_up(
        pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch) -> None:
    from keepalived_py.bfd import runner
    a, b = pair
    both_up(a, b)
    monkeypatch.setattr(runner, "READ_LIMIT", 0.5)
    config = a.runner.config

    def hang() -> BfdConfig:
        time.sleep(60)              # in the forked child: the loop goes on meanwhile
        return config

    a.next_load = hang
    answer = a.parent.request({"request": "reload"}, timeout=10)
    assert answer["ok"] is False and "given up" in answer["error"]
    assert a.session()["state"] == "Up" and b.session()["failures"] == 0
    a.next_load = lambda: config
    assert a.parent.request({"request": "reload"})["ok"]
