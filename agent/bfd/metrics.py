"""The BFD process's Prometheus metrics, from its part of the status answer.

``keepalived_py_bfd_session_up{session}``
    1 while the session is Up.
``keepalived_py_bfd_session_state{session,state}``
    1 for the state the session is in (``Up``, ``Down``, ``Init``, ``AdminDown``).
``keepalived_py_bfd_detection_time_seconds{session}``
    The detection time in force (the remote's multiplier x the agreed receive interval).
``keepalived_py_bfd_transmit_interval_seconds{session}``
    The negotiated transmit interval, before jitter.
``keepalived_py_bfd_packets_total{session,direction}``
    Packets accepted (``in``) and sent (``out``).
``keepalived_py_bfd_drops_total{session,reason}``
    Received packets the session discarded, by reason (``ttl``, ``admin_down`` ...).
``keepalived_py_bfd_unmatched_drops_total{reason}``
    Received packets that reached no session: malformed, an unknown discriminator,
    no session for the source, a known discriminator from another address.
``keepalived_py_bfd_failures_total{session}``
    Up -> Down by the path (a detection timeout or the peer saw it down); a peer's
    AdminDown is not counted.
``keepalived_py_bfd_send_errors_total{session}``
    Packets the kernel refused to send (no route, a full queue).
``keepalived_py_bfd_timer_late_max_seconds``
    The latest a timer fired after its deadline since the process started.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..core.metrics import add_value
from ..core.status import as_dict, as_list, number

STATES = ("AdminDown", "Down", "Init", "Up")


def _seconds(us: Any) -> float | None:
    value = number(us)
    return None if value is None else value / 1e6


def metric_families(snapshot: dict[str, Any]) -> list[Metric]:
    up = GaugeMetricFamily("keepalived_py_bfd_session_up", "1 while the BFD session is Up.",
                           labels=["session"])
    state = GaugeMetricFamily("keepalived_py_bfd_session_state",
                              "1 for the state the BFD session is in.",
                              labels=["session", "state"])
    detection = GaugeMetricFamily("keepalived_py_bfd_detection_time_seconds",
                                  "Detection time in force.", labels=["session"])
    interval = GaugeMetricFamily("keepalived_py_bfd_transmit_interval_seconds",
                                 "Negotiated transmit interval, before jitter.",
                                 labels=["session"])
    packets = CounterMetricFamily("keepalived_py_bfd_packets", "BFD packets.",
                                  labels=["session", "direction"])
    drops = CounterMetricFamily("keepalived_py_bfd_drops",
                                "Received packets the session discarded.",
                                labels=["session", "reason"])
    unmatched = CounterMetricFamily("keepalived_py_bfd_unmatched_drops",
                                    "Received packets that reached no session.",
                                    labels=["reason"])
    failures = CounterMetricFamily("keepalived_py_bfd_failures",
                                   "Up -> Down by the path (not by the peer's AdminDown).",
                                   labels=["session"])
    errors = CounterMetricFamily("keepalived_py_bfd_send_errors",
                                 "Packets the kernel refused to send.", labels=["session"])
    late = GaugeMetricFamily("keepalived_py_bfd_timer_late_max_seconds",
                             "The latest a timer fired after its deadline.")
    for s in as_list(snapshot.get("sessions")):
        if not isinstance(s, dict):
            continue
        name = str(s.get("name"))
        current = s.get("state")
        add_value(up, [name], float(current == "Up"))
        for each in STATES:
            add_value(state, [name, each], float(current == each))
        add_value(detection, [name], _seconds(s.get("detection_time_us")))
        add_value(interval, [name], _seconds(s.get("tx_interval_us")))
        add_value(packets, [name, "in"], s.get("packets_in"))
        add_value(packets, [name, "out"], s.get("packets_out"))
        for reason, count in as_dict(s.get("drops")).items():
            add_value(drops, [name, str(reason)], count)
        add_value(failures, [name], s.get("failures"))
        add_value(errors, [name], s.get("send_errors"))
    for reason, count in as_dict(snapshot.get("drops")).items():
        add_value(unmatched, [str(reason)], count)
    add_value(late, [], _seconds(as_dict(snapshot.get("timers")).get("late_max_us")))
    return [up, state, detection, interval, packets, drops, unmatched, failures, errors, late]
