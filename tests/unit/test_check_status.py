"""What the checker process shows: its snapshot, the status table, the metrics, the dumps."""

from __future__ import annotations

import json
import random
import textwrap

from keepalived_py.check import engine as E
from keepalived_py.check.dumps import data_dump, dump_path, json_dump
from keepalived_py.check.metrics import metric_families
from keepalived_py.check.snapshot import check_snapshot
from keepalived_py.check.spec import build
from keepalived_py.check.status import status_lines
from keepalived_py.config import load
from keepalived_py.core.paths import AgentKey

CONF = """
virtual_server 198.18.1.10 80 {
    delay_loop 10
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    warmup 0
    sorry_server 198.18.3.1 8080
    real_server 198.18.2.11 8080 {
        weight 3
        TCP_CHECK { connect_timeout 2 }
    }
    real_server 198.18.2.12 8080 {
        HTTP_GET { url { path / } }
    }
}
"""


def snapshot() -> dict:
    root = load("t.conf", text=textwrap.dedent(CONF), interfaces={"eth0"}).root
    pool = E.Pool(build(root).servers, rng=random.Random(1))
    pool.start(0.0)
    [probe, _] = sorted(pool.due(1.0), key=lambda p: p.ref[1])
    pool.result(probe.ref, False, 1.5, error="connection refused")
    counters = {next(iter(pool.servers)): {"dests": {("198.18.2.12", 8080): {
        "active_conns": 4, "inact_conns": 7}}}}
    snap = check_snapshot(pool, now=2.0, plane={"name": "ipvs", "available": True},
                          counters=counters, fifo_lines=["VS [198.18.1.10]:tcp:80 UP"],
                          probes_run=2)
    return json.loads(json.dumps(snap))         # what goes over the control socket


def test_snapshot_shows_state_weights_and_the_last_error() -> None:
    snap = snapshot()
    [vs] = snap["virtual_servers"]
    assert (vs["name"], vs["quorum_up"], vs["live_weight"]) == ("[198.18.1.10]:tcp:80", True, 1)
    a, b = vs["real_servers"]
    assert (a["ip"], a["alive"], a["kernel_weight"], a["weight"]) == \
        ("198.18.2.11", False, None, 3)
    assert a["checkers"][0]["last_result"] == "failed"
    assert a["checkers"][0]["last_error"] == "connection refused"
    assert (b["alive"], b["kernel_weight"], b["kernel"]["active_conns"]) == (True, 1, 4)


def test_status_reads_like_ipvsadm() -> None:
    snap = snapshot()
    now = snap["virtual_servers"][0]["real_servers"][0]["checkers"][0]["last_time"] + 3.5
    lines = status_lines(snap, wide=True, now=now)
    assert lines[0] == "data plane: ipvs"
    text = "\n".join(lines)
    assert "[198.18.1.10]:tcp:80 wrr" in text and "quorum up 1/1" in text
    row = next(line for line in lines if "198.18.2.11:8080" in line)
    assert "DOWN" in row and "TCP:FAIL" in row and "3s ago" in row
    assert "[connection refused]" in row
    assert "4/7" in next(line for line in lines if "198.18.2.12:8080" in line)
    assert "sorry 198.18.3.1:8080" in text


def test_metrics_families() -> None:
    families = {f.name: f for f in metric_families(snapshot())}
    up = {tuple(s.labels.values()): s.value
          for s in families["keepalived_py_real_server_up"].samples}
    assert up == {("[198.18.1.10]:tcp:80", "198.18.2.11:8080"): 0.0,
                  ("[198.18.1.10]:tcp:80", "198.18.2.12:8080"): 1.0}
    conns = {s.labels["state"]: s.value
             for s in families["keepalived_py_real_server_connections"].samples}
    assert conns == {"active": 4.0, "inactive": 7.0}
    [checks] = families["keepalived_py_checks"].samples
    assert checks.value == 2


def test_dumps() -> None:
    text = data_dump(snapshot())
    assert " VS VIP = 198.18.1.10, VPORT = 80" in text
    assert "   RIP = 198.18.2.11, RPORT = 8080, WEIGHT = 3 EFF WEIGHT = 3" in text
    assert json.loads(json_dump(snapshot()))["probes_run"] == 2
    assert str(dump_path("data", AgentKey("blue", "lb1"), {})) == \
        "/tmp/keepalived_check.blue_lb1.data"
