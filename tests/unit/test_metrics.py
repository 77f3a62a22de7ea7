"""Prometheus metrics: a real HTTP scrape of the metrics server, parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from keepalived_py.children import KINDS
from keepalived_py.core.metrics import (
    MetricsServer,
    parse_listen,
    start_metrics_server,
    state_from_loop,
)
from keepalived_py.vrrp.metrics import ERROR_STATS
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def stats(**values: int) -> dict[str, int]:
    base = dict.fromkeys(("advert_rcvd", "advert_sent", "become_master", "release_master",
                          "pri_zero_rcvd", "pri_zero_sent", *ERROR_STATS), 0)
    return base | values


def state(vrrp_state: str = "MASTER") -> dict[str, Any]:
    return {
        "ok": True,
        "agent": {"version": "0.1.0", "pid": os.getpid(), "started": 0.0,
                  "children": [{"name": "vrrp", "pid": os.getpid(), "running": True,
                                "restarts": 3, "last_exit": "killed by SIGKILL"}]},
        "vrrp": {
            # This test process stands in for the VRRP child: /proc has it.
            "pid": os.getpid(), "time": 0.0,
            "instances": [
                {"name": "VI_1", "vrid": 51, "interface": "eth0", "state": vrrp_state,
                 "base_priority": 150, "effective_priority": 140, "advert_interval": 1.0,
                 "stats": stats(advert_rcvd=7, advert_sent=8, become_master=2,
                                release_master=1, auth_failure=4, ip_ttl_err=5,
                                pri_zero_rcvd=9, future_err=6)},
                {"name": "VI_6", "vrid": 7, "interface": "eth1", "state": "BACKUP",
                 "base_priority": 100, "effective_priority": 100, "advert_interval": 1.0,
                 "master_advert_interval": 0.5, "stats": stats(advert_rcvd=100)},
            ],
        },
    }


def scrape(server: MetricsServer) -> Samples:
    host, port = server.address
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples, prefix: str) -> set[str]:
    return {name for name, _ in samples if name.startswith(prefix)}


@pytest.fixture
def current() -> dict[str, Any]:
    """What the fake agent answers; a test changes it between scrapes."""
    return {"answer": state()}


@pytest.fixture
def server(current: dict[str, Any]) -> Iterator[MetricsServer]:
    calls = current.setdefault("calls", [])

    def get_state() -> dict[str, Any]:
        calls.append(1)
        answer = current["answer"]
        if isinstance(answer, Exception):
            raise answer
        return answer

    with start_metrics_server(":0", get_state, kinds=KINDS) as metrics:
        yield metrics


def test_binds_loopback_by_default(server: MetricsServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1" and port > 0


def test_vrrp_instances(server: MetricsServer) -> None:
    samples = scrape(server)
    assert value(samples, "keepalived_py_up") == 1
    one_hot = {s: value(samples, "keepalived_py_vrrp_state", instance="VI_1", interface="eth0",
                        vrid="51", state=s) for s in ("INIT", "BACKUP", "MASTER", "FAULT")}
    assert one_hot == {"INIT": 0, "BACKUP": 0, "MASTER": 1, "FAULT": 0}
    assert value(samples, "keepalived_py_vrrp_state", instance="VI_6", interface="eth1",
                 vrid="7", state="BACKUP") == 1
    assert value(samples, "keepalived_py_vrrp_priority", instance="VI_1", kind="base") == 150
    assert value(samples, "keepalived_py_vrrp_priority", instance="VI_1", kind="effective") == 140
    assert value(samples, "keepalived_py_vrrp_transitions_total", instance="VI_1") == 3
    assert value(samples, "keepalived_py_vrrp_transitions_total", instance="VI_6") == 0
    assert value(samples, "keepalived_py_vrrp_adverts_received_total", instance="VI_1") == 7
    assert value(samples, "keepalived_py_vrrp_adverts_sent_total", instance="VI_1") == 8
    assert value(samples, "keepalived_py_vrrp_adverts_received_total", instance="VI_6") == 100
    # The configured interval, or the master's when the snapshot has learnt it.
    assert value(samples, "keepalived_py_vrrp_master_advert_interval_seconds",
                 instance="VI_1") == 1.0
    assert value(samples, "keepalived_py_vrrp_master_advert_interval_seconds",
                 instance="VI_6") == 0.5


def test_every_error_counter_and_only_those(server: MetricsServer) -> None:
    samples = scrape(server)
    errors = {dict(labels)["error"]: v for (name, labels), v in samples.items()
              if name == "keepalived_py_vrrp_errors_total" and ("instance", "VI_1") in labels}
    expected = dict.fromkeys(ERROR_STATS, 0.0) | {"auth_failure": 4, "ip_ttl_err": 5,
                                                   "future_err": 6}
    assert errors == expected
    assert "pri_zero_rcvd" not in errors and "advert_rcvd" not in errors


def test_children_and_process_metrics(server: MetricsServer) -> None:
    samples = scrape(server)
    assert value(samples, "keepalived_py_child_restarts_total", child="vrrp") == 3
    assert value(samples, "keepalived_py_child_running", child="vrrp") == 1
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "keepalived_py_vrrp_process_resident_memory_bytes") > 0


def test_each_scrape_asks_again(server: MetricsServer, current: dict[str, Any]) -> None:
    scrape(server)
    current["answer"] = state("FAULT")
    samples = scrape(server)
    labels = {"instance": "VI_1", "interface": "eth0", "vrid": "51"}
    assert value(samples, "keepalived_py_vrrp_state", state="FAULT", **labels) == 1
    assert value(samples, "keepalived_py_vrrp_state", state="MASTER", **labels) == 0
    assert len(current["calls"]) == 2  # once per scrape, none at registration


@pytest.mark.parametrize("failure", [
    RuntimeError("keepalived-py is not running"),
    {"ok": False, "error": "busy"},
    "not a dict",
])
def test_no_state_gives_up_0_and_nothing_else(
        server: MetricsServer, current: dict[str, Any], failure: Any) -> None:
    current["answer"] = failure
    samples = scrape(server)
    assert names(samples, "keepalived_py_") == {"keepalived_py_up"}
    assert value(samples, "keepalived_py_up") == 0
    assert "process_cpu_seconds_total" in names(samples, "process_")  # the agent's own


def test_unknown_state_and_odd_fields(server: MetricsServer, current: dict[str, Any]) -> None:
    answer = state()
    answer["vrrp"]["instances"] = [
        {"name": "VI_new", "vrid": 9, "interface": "eth9", "state": "STOPPED",
         "base_priority": "high", "stats": {"advert_rcvd": None, "become_master": 1}},
        {"vrid": 10},  # no name: no series
        "garbage",
    ]
    answer["agent"]["children"] = [{"name": "vrrp", "running": False}, "x"]
    current["answer"] = answer
    samples = scrape(server)
    assert value(samples, "keepalived_py_up") == 1
    labels = {"instance": "VI_new", "interface": "eth9", "vrid": "9"}
    assert value(samples, "keepalived_py_vrrp_state", state="STOPPED", **labels) == 1
    assert value(samples, "keepalived_py_vrrp_state", state="MASTER", **labels) == 0
    assert ("keepalived_py_vrrp_priority", frozenset({("instance", "VI_new"),
                                                       ("kind", "base")})) not in samples
    assert value(samples, "keepalived_py_child_running", child="vrrp") == 0
    assert {dict(labels).get("instance") for (name, labels) in samples
            if name.startswith("keepalived_py_vrrp_")} <= {"VI_new", None}


def test_close_frees_the_port() -> None:
    metrics = start_metrics_server("127.0.0.1:0", lambda: state(), kinds=KINDS,
                                   process_metrics=False)
    samples = scrape(metrics)
    assert not names(samples, "process_")
    port = metrics.address[1]
    metrics.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with start_metrics_server("[::1]:0", lambda: state(), kinds=KINDS) as metrics:
        assert metrics.address[0] == "::1"
        assert value(scrape(metrics), "keepalived_py_up") == 1


@pytest.mark.parametrize(("listen", "address"), [
    (":9650", ("127.0.0.1", 9650)),
    ("9650", ("127.0.0.1", 9650)),
    ("0.0.0.0:9650", ("0.0.0.0", 9650)),
    ("198.18.0.1:80", ("198.18.0.1", 80)),
    ("localhost:9650", ("localhost", 9650)),
    ("[::1]:9650", ("::1", 9650)),
    ("[::]:0", ("::", 0)),
    ("[fe80::1%eth0]:9650", ("fe80::1%eth0", 9650)),
])
def test_parse_listen(listen: str, address: tuple[str, int]) -> None:
    assert parse_listen(listen) == address


@pytest.mark.parametrize("listen", [
    "::1:9650", "[::1]9650", "[not-v6]:9650", "host:", "host:http", "host:65536", "", "[::1]",
])
def test_parse_listen_refuses(listen: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(listen)


def test_state_from_loop_asks_the_agents_loop() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    seen: list[tuple[dict[str, Any], bool]] = []

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        seen.append((request, asyncio.get_running_loop() is loop))
        if request.get("slow"):
            await asyncio.sleep(10)
        return {"ok": True, "vrrp": None}

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        return await handle(request | {"slow": True})

    try:
        assert state_from_loop(loop, handle)() == {"ok": True, "vrrp": None}
        assert seen == [({"request": "status"}, True)]
        with pytest.raises(TimeoutError):
            state_from_loop(loop, slow, timeout=0.2)()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
