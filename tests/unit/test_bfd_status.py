"""What people see of the BFD process: ``keepalived-py status`` and the data / JSON dumps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from keepalived_py.bfd.dumps import data_dump, dump_path, json_dump
from keepalived_py.bfd.status import status_lines
from keepalived_py.core.paths import AgentKey
from keepalived_py.core.status import render_status

NOW = 1_700_000_000.0


def session(**kw: object) -> dict:
    s = {"name": "to-bird", "neighbor": "198.18.0.12", "source": "198.18.0.11",
         "family": "inet", "min_rx_us": 20000, "min_tx_us": 20000, "idle_tx_us": 1000000,
         "multiplier": 3, "passive": False, "ttl": 255, "max_hops": 0, "multihop": False,
         "weight": 0, "reverse": False, "vrrp": True, "checker": True, "state": "Up",
         "remote_state": "Up", "diag": "none", "remote_diag": "none",
         "remote_admin_down": False, "local_discr": 0x1234, "remote_discr": 0xABCD,
         "desired_min_tx_us": 20000, "required_min_rx_us": 20000,
         "remote_min_tx_us": 20000, "remote_min_rx_us": 10000, "remote_multiplier": 3,
         "remote_demand": False, "tx_interval_us": 20000, "remote_tx_interval_us": 20000,
         "detection_time_us": 60000, "remote_detection_time_us": 60000, "polling": False,
         "source_port": 49321, "packets_in": 1200, "packets_out": 1210, "send_errors": 0,
         "drops": {"ttl": 2, "admin_down": 0}, "since": NOW - 312, "transitions": 2,
         "failures": 0, "last_rx": NOW - 0.004, "last_expiry": None}
    s.update(kw)
    return s


def snapshot(*sessions: dict) -> dict:
    return {"sessions": list(sessions), "drops": {"your_discr_unknown": 3, "no_session": 0},
            "listening": [{"family": "inet", "port": 3784, "multihop": False}],
            "timers": {"late_max_us": 812, "late_buckets_us": [100, 500, 1000, 2000],
                       "late_counts": [900, 90, 10, 0, 0]}}


def test_status_lines() -> None:
    down = session(name="v6", neighbor="2001:db8::12", source=None, family="inet6",
                   state="Down", diag="control_detection_expired", tx_interval_us=1000000,
                   remote_tx_interval_us=0, detection_time_us=0, remote_multiplier=0,
                   packets_in=0, drops={}, since=NOW - 5)
    lines = status_lines(snapshot(session(), down), False, NOW)
    assert lines[0] == "BFD: 2 sessions, 1 Up; listening on inet:3784"
    assert lines[1].split() == ["SESSION", "STATE", "NEIGHBOR", "TX", "RX", "DETECT",
                                "IN/OUT", "DROPS", "SINCE"]
    assert lines[2].split() == ["to-bird", "Up", "198.18.0.12", "20", "ms", "20", "ms", "60",
                                "ms", "(x3)", "1200/1210", "2", "5m12s"]
    assert lines[3].split() == ["v6", "Down", "(control_detection_expired)", "2001:db8::12",
                                "1000", "ms", "-", "-", "0/1210", "0", "5s"]
    assert lines[4] == "dropped, no session: your_discr_unknown 3"
    wide = status_lines(snapshot(session()), True, NOW)
    assert wide[1].split()[-3:] == ["SOURCE", "DISCR", "LOCAL/REMOTE"]
    assert wide[2].split()[-2:] == ["198.18.0.11:49321", "0x1234/0xabcd"]
    assert wide[-1] == ("timers: 1000 wake-ups for a deadline, 100.00 % within 1 ms, latest "
                        "0.812 ms late")


def test_a_peer_admin_down_is_shown_as_such() -> None:
    lines = status_lines(snapshot(session(state="Down", diag="neighbor_down",
                                          remote_admin_down=True)), False, NOW)
    assert "Down (peer AdminDown)" in lines[2]


def test_no_session_and_missing_fields() -> None:
    assert status_lines({}, False, NOW) == ["BFD: 0 sessions, 0 Up"]
    lines = status_lines({"sessions": [{"name": "x"}]}, True, NOW)
    assert lines[2].split()[:3] == ["x", "-", "-"]


def test_the_status_table_of_the_agent() -> None:
    from keepalived_py.children import KINDS
    text = render_status(KINDS, {"ok": True, "agent": {"version": "0.1.0", "pid": 1},
                                 "bfd": snapshot(session())}, now=NOW)
    assert "BFD: 1 session, 1 Up" in text and "to-bird" in text
    assert "no BFD process running" in render_status(KINDS, {"ok": True, "bfd": None}, now=NOW)


def test_the_data_dump_in_keepalived_layout() -> None:
    text = data_dump(snapshot(session(), session(name="v6", neighbor="2001:db8::12",
                                                 source=None, family="inet6",
                                                 last_rx=None, polling=True)))
    lines = text.splitlines()
    assert lines[:30] == [
        "------< BFD Topology >------",
        " BFD Instance = to-bird",
        "   Neighbor IP = 198.18.0.12",
        "   Source IP = 198.18.0.11",
        "   Required min RX interval = 20000 us",
        "   Desired min TX interval = 20000 us",
        "   Desired idle TX interval = 1000000 us",
        "   Detection multiplier = 3",
        "   TTL = 255",
        "   max_hops = 0",
        "   passive = false",
        "   send event to VRRP process = Yes",
        "   send event to checker process = Yes",
        "   send error = false",
        "   local state = Up",
        "   remote state = Up",
        "   local discriminator = 0x1234",
        "   remote discriminator = 0xabcd",
        "   local diag = No Diagnostic",
        "   remote diag = No Diagnostic",
        "   remote min tx intv = 20000 us",
        "   remote min rx intv = 10000 us",
        "   local demand = 0",
        "   remote demand = 0",
        "   remote detect multiplier = 3",
        "   !poll, !final",
        "   local tx intv = 20000 us",
        "   remote tx intv = 20000 us",
        "   local detection time = 60000 us",
        "   remote detection time = 60000 us"]
    seen = NOW - 0.004
    assert lines[30] == (f"   last seen = 1699999999.996000 ({time.ctime(int(seen))}.996000)")
    second = lines[31:]
    assert second[0] == " BFD Instance = v6" and "   Source IP" not in " ".join(second)
    assert "   hoplimit = 255" in second and "   poll, !final" in second
    assert second[-1] == "   last_seen = [never]"
    assert data_dump({"sessions": []}) == ""


def test_the_json_dump_and_the_paths() -> None:
    snap = snapshot(session())
    assert json.loads(json_dump(snap)) == snap
    assert str(dump_path("data", environ={"TMPDIR": "/x"})) == "/x/keepalived_bfd.data"
    assert str(dump_path("json", AgentKey("blue", "lb1"), environ={})) == \
        "/tmp/keepalived_bfd.blue_lb1.json"


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ctime() in UTC, where keepalived's dump was taken."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_data_dump_reads_as_keepalived_2_2_7s(utc: None) -> None:
    """keepalived 2.2.7's own dump of two sessions (with our agent, in the lab), less
    the lines about its internals, is what we write for the same state."""
    theirs = (Path(__file__).parent / "data" / "bfd" /
              "keepalived-2.2.7-bfd-topology.data").read_text().splitlines()
    internal = ("   fd_out ", "   thread_", "   sands_")
    expected = [line for line in theirs if not line.startswith(internal)]
    ours = data_dump({"sessions": [
        session(name="v4", neighbor="198.18.0.11", source="198.18.0.12",
                remote_min_rx_us=20000, local_discr=0xC1CF477D, remote_discr=0xB141735F,
                last_rx=1796593062.616551),
        session(name="v6", neighbor="2001:db8::11", source="2001:db8::12", family="inet6",
                remote_min_rx_us=20000, local_discr=0x67D6C06D, remote_discr=0x1AE892D7,
                last_rx=1796593062.626021)]}).splitlines()
    assert ours == expected


def test_metrics_families() -> None:
    from keepalived_py.bfd.metrics import metric_families
    down = session(name="v6", state="Down", failures=1, packets_in=0,
                   drops={"ttl": 0, "admin_down": 4})
    families = {f.name: f for f in metric_families(snapshot(session(), down))}

    def value(family: str, **labels: str) -> float:
        return next(s.value for s in families[family].samples if s.labels == labels)

    assert value("keepalived_py_bfd_session_up", session="to-bird") == 1.0
    assert value("keepalived_py_bfd_session_up", session="v6") == 0.0
    assert value("keepalived_py_bfd_session_state", session="v6", state="Down") == 1.0
    assert value("keepalived_py_bfd_session_state", session="v6", state="Up") == 0.0
    assert value("keepalived_py_bfd_detection_time_seconds", session="to-bird") == 0.06
    assert value("keepalived_py_bfd_transmit_interval_seconds", session="to-bird") == 0.02
    assert value("keepalived_py_bfd_packets", session="to-bird", direction="in") == 1200
    assert value("keepalived_py_bfd_drops", session="v6", reason="admin_down") == 4
    assert value("keepalived_py_bfd_unmatched_drops", reason="your_discr_unknown") == 3
    assert value("keepalived_py_bfd_failures", session="v6") == 1
    assert value("keepalived_py_bfd_timer_late_max_seconds") == 0.000812
