"""The checker process's Prometheus metrics, from its part of the status answer.

``keepalived_py_virtual_server_quorum_up{virtual_server}``
    1 while the virtual server has its quorum (0: the sorry server serves, if any).
``keepalived_py_virtual_server_live_weight{virtual_server}``
    The sum of the weights of the real servers in the pool, compared with ``quorum``.
``keepalived_py_real_server_up{virtual_server,real_server}``
    1 while every checker of the real server passes.
``keepalived_py_real_server_weight{virtual_server,real_server,kind}``
    ``kind="configured"``, ``"effective"`` (with MISC/FILE weights) and ``"kernel"``
    (what the data plane is given; absent when the server is not programmed).
``keepalived_py_real_server_connections{virtual_server,real_server,state}``
    The kernel's active and inactive connections (``state="active"|"inactive"``).
``keepalived_py_checker_up{virtual_server,real_server,checker}``
    Each checker's state; ``checker`` is its kind and place (``TCP_CHECK/0``).
``keepalived_py_checks_total``
    Probes started since the checker process started.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..core.metrics import add_value
from ..core.status import as_dict, as_list


def metric_families(snapshot: dict[str, Any]) -> list[Metric]:
    quorum = GaugeMetricFamily("keepalived_py_virtual_server_quorum_up",
                               "1 while the virtual server has its quorum.",
                               labels=["virtual_server"])
    live = GaugeMetricFamily("keepalived_py_virtual_server_live_weight",
                             "Sum of the weights of the real servers in the pool.",
                             labels=["virtual_server"])
    up = GaugeMetricFamily("keepalived_py_real_server_up",
                           "1 while every checker of the real server passes.",
                           labels=["virtual_server", "real_server"])
    weight = GaugeMetricFamily("keepalived_py_real_server_weight", "Real server weight.",
                               labels=["virtual_server", "real_server", "kind"])
    conns = GaugeMetricFamily("keepalived_py_real_server_connections",
                              "Connections to the real server, as the kernel counts them.",
                              labels=["virtual_server", "real_server", "state"])
    checker = GaugeMetricFamily("keepalived_py_checker_up", "1 while the checker passes.",
                                labels=["virtual_server", "real_server", "checker"])
    checks = CounterMetricFamily("keepalived_py_checks", "Probes started.")
    for vs in as_list(snapshot.get("virtual_servers")):
        if not isinstance(vs, dict):
            continue
        name = str(vs.get("name"))
        add_value(quorum, [name], float(bool(vs.get("quorum_up"))))
        add_value(live, [name], vs.get("live_weight"))
        for rs in as_list(vs.get("real_servers")):
            if not isinstance(rs, dict) or "alive" not in rs:
                continue
            real = f"{rs.get('ip')}:{rs.get('port')}"
            add_value(up, [name, real], float(bool(rs.get("alive"))))
            add_value(weight, [name, real, "configured"], rs.get("weight"))
            add_value(weight, [name, real, "effective"], rs.get("effective_weight"))
            add_value(weight, [name, real, "kernel"], rs.get("kernel_weight"))
            kernel = as_dict(rs.get("kernel"))
            add_value(conns, [name, real, "active"], kernel.get("active_conns"))
            add_value(conns, [name, real, "inactive"], kernel.get("inact_conns"))
            for index, c in enumerate(as_list(rs.get("checkers"))):
                if isinstance(c, dict):
                    add_value(checker, [name, real, f"{c.get('kind')}/{index}"],
                              float(bool(c.get("up"))))
    add_value(checks, [], snapshot.get("probes_run"))
    return [quorum, live, up, weight, conns, checker, checks]
