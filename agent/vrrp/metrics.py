"""The VRRP process's Prometheus metrics, from its part of the status answer.

``keepalived_py_vrrp_state{instance,interface,vrid,state}``
    One-hot: one series per state (INIT, BACKUP, MASTER, FAULT), 1 for the state the
    instance is in and 0 for the others, the usual pattern for an enum, so that
    ``keepalived_py_vrrp_state{state="MASTER"} == 1`` selects the masters and a
    change of state is not a new series.
``keepalived_py_vrrp_priority{instance,kind}``
    ``kind="base"``: the configured priority; ``kind="effective"``: after tracking.
``keepalived_py_vrrp_transitions_total{instance}``
    ``become_master + release_master`` from the instance's stats: counters the VRRP
    process never trims (the ``transitions`` list is a recent history and may be), so
    this stays monotonic.  Moves between BACKUP and FAULT are not counted, as in
    keepalived's own statistics.
``keepalived_py_vrrp_adverts_received_total{instance}``, ``..._sent_total{instance}``
    ``advert_rcvd`` and ``advert_sent``.
``keepalived_py_vrrp_errors_total{instance,error}``
    One series per error counter of the stats (``ERROR_STATS``, and any other stat
    whose name ends in ``_err``), labelled with the stat's name.
``keepalived_py_vrrp_master_advert_interval_seconds{instance}``
    The advertisement interval of the instance's master: the snapshot's
    ``master_advert_interval`` when it has one (learnt from the master's adverts in
    VRRPv3), else the configured ``advert_interval``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..core.metrics import add_sum, add_value, label
from ..core.status import as_dict, as_list

STATES = ("INIT", "BACKUP", "MASTER", "FAULT")
ERROR_STATS = (
    "packet_len_err", "ip_ttl_err", "invalid_type_rcvd", "advert_interval_err", "addr_list_err",
    "invalid_authtype", "authtype_mismatch", "auth_failure", "vers_err", "chk_err",
)


def metric_families(snapshot: dict[str, Any]) -> list[Metric]:
    """The VRRP process's metric families, from its snapshot."""
    instances = [i for i in as_list(snapshot.get("instances"))
                 if isinstance(i, dict) and i.get("name") is not None]
    state = GaugeMetricFamily(
        "keepalived_py_vrrp_state", "VRRP instance state, one-hot: 1 for the current state.",
        labels=["instance", "interface", "vrid", "state"])
    priority = GaugeMetricFamily("keepalived_py_vrrp_priority", "VRRP priority.",
                                 labels=["instance", "kind"])
    transitions = CounterMetricFamily(
        "keepalived_py_vrrp_transitions", "Transitions to and from MASTER.", labels=["instance"])
    received = CounterMetricFamily("keepalived_py_vrrp_adverts_received",
                                   "VRRP advertisements received.", labels=["instance"])
    sent = CounterMetricFamily("keepalived_py_vrrp_adverts_sent",
                               "VRRP advertisements sent.", labels=["instance"])
    errors = CounterMetricFamily("keepalived_py_vrrp_errors",
                                 "VRRP errors, by the name of keepalived's statistic.",
                                 labels=["instance", "error"])
    interval = GaugeMetricFamily("keepalived_py_vrrp_master_advert_interval_seconds",
                                 "Advertisement interval of the master.", labels=["instance"])
    for inst in instances:
        name = str(inst["name"])
        _add_state(state, name, inst)
        add_value(priority, [name, "base"], inst.get("base_priority"))
        add_value(priority, [name, "effective"], inst.get("effective_priority"))
        stats = as_dict(inst.get("stats"))
        add_sum(transitions, [name], stats.get("become_master"), stats.get("release_master"))
        add_value(received, [name], stats.get("advert_rcvd"))
        add_value(sent, [name], stats.get("advert_sent"))
        for error in error_names(stats):
            add_value(errors, [name, error], stats[error])
        add_value(interval, [name], inst.get("master_advert_interval", inst.get("advert_interval")))
    return [state, priority, transitions, received, sent, errors, interval]


def _add_state(family: GaugeMetricFamily, name: str, inst: dict[str, Any]) -> None:
    current = inst.get("state")
    labels = [name, label(inst.get("interface")), label(inst.get("vrid"))]
    # A state this version does not know still shows, as a series of its own.
    unknown = [str(current)] if current is not None and current not in STATES else []
    for state in (*STATES, *unknown):
        family.add_metric([*labels, state], float(state == current))


def error_names(stats: dict[str, Any]) -> list[str]:
    """The error counters among ``stats``: ``ERROR_STATS`` and any other ``*_err``."""
    known = [name for name in ERROR_STATS if name in stats]
    return known + sorted(n for n in stats if n.endswith("_err") and n not in ERROR_STATS)
