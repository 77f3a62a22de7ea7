"""Prometheus metrics of the agent, read from its status answer at each scrape.

``start_metrics_server`` serves them with prometheus_client's own HTTP server on a
registry of its own (not the library's global one), holding:

* ``AgentCollector``: on every scrape it calls ``get_state()``, which returns the
  control socket's status answer (see ``control.py``), and turns it into metrics.
  When ``get_state`` raises or answers ``"ok": false``, the scrape holds only
  ``keepalived_py_up 0``.
* prometheus_client's ``ProcessCollector`` for this process (``process_*``) and
  for the VRRP child (``keepalived_py_vrrp_process_*``), unless
  ``process_metrics=False``.

The metrics:

``keepalived_py_up``
    1 when the status answer came back, else 0.
``keepalived_py_child_running{child}``, ``keepalived_py_child_restarts_total{child}``
    Each supervised child: running now (1/0), and how often it was restarted.
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

Counters restart from 0 when the VRRP child restarts; Prometheus' ``rate`` and
``increase`` treat that as a counter reset.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("keepalived_py.metrics")

DEFAULT_ADDRESS = "127.0.0.1"
STATES = ("INIT", "BACKUP", "MASTER", "FAULT")
ERROR_STATS = (
    "packet_len_err", "ip_ttl_err", "invalid_type_rcvd", "advert_interval_err", "addr_list_err",
    "invalid_authtype", "authtype_mismatch", "auth_failure", "vers_err", "chk_err",
)

GetState = Callable[[], dict[str, Any]]


class AgentCollector(Collector):
    """Turns the status answer of ``get_state()`` into metric families at each scrape."""

    def __init__(self, get_state: GetState) -> None:
        self._get_state = get_state
        self.vrrp_pid: int | None = None

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would collect (call get_state) just to learn the names.
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            state = self._get_state()
            if not isinstance(state, dict) or state.get("ok") is not True:
                raise ValueError(f"status answer not ok: {state!r:.200}")
            families = agent_families(state)
        except Exception as exc:
            # A scrape every few seconds: a warning each time would flood the log.
            log.debug("metrics: no state (%s)", exc, exc_info=True)
            self.vrrp_pid = None
            yield _gauge("keepalived_py_up", "Whether the agent answered its status.", 0)
            return
        vrrp = state.get("vrrp")
        self.vrrp_pid = _integer(vrrp.get("pid")) if isinstance(vrrp, dict) else None
        yield _gauge("keepalived_py_up", "Whether the agent answered its status.", 1)
        yield from families


def agent_families(state: dict[str, Any]) -> list[Metric]:
    """The metric families of one status answer (everything but ``keepalived_py_up``)."""
    agent = _dict(state.get("agent"))
    vrrp = _dict(state.get("vrrp"))
    instances = [i for i in _list(vrrp.get("instances"))
                 if isinstance(i, dict) and i.get("name") is not None]
    return [*_child_families(_list(agent.get("children"))), *_instance_families(instances)]


def _child_families(children: list[Any]) -> list[Metric]:
    running = GaugeMetricFamily("keepalived_py_child_running",
                                "Whether the supervised child process runs.", labels=["child"])
    restarts = CounterMetricFamily("keepalived_py_child_restarts",
                                   "Restarts of the supervised child process.", labels=["child"])
    for child in children:
        if not isinstance(child, dict) or child.get("name") is None:
            continue
        name = str(child["name"])
        if isinstance(child.get("running"), bool):
            running.add_metric([name], float(child["running"]))
        _add(restarts, [name], child.get("restarts"))
    return [running, restarts]


def _instance_families(instances: list[dict[str, Any]]) -> list[Metric]:
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
        _add(priority, [name, "base"], inst.get("base_priority"))
        _add(priority, [name, "effective"], inst.get("effective_priority"))
        stats = _dict(inst.get("stats"))
        _add_sum(transitions, [name], stats.get("become_master"), stats.get("release_master"))
        _add(received, [name], stats.get("advert_rcvd"))
        _add(sent, [name], stats.get("advert_sent"))
        for error in error_names(stats):
            _add(errors, [name, error], stats[error])
        _add(interval, [name], inst.get("master_advert_interval", inst.get("advert_interval")))
    return [state, priority, transitions, received, sent, errors, interval]


def _add_state(family: GaugeMetricFamily, name: str, inst: dict[str, Any]) -> None:
    current = inst.get("state")
    labels = [name, _label(inst.get("interface")), _label(inst.get("vrid"))]
    # A state this version does not know still shows, as a series of its own.
    unknown = [str(current)] if current is not None and current not in STATES else []
    for state in (*STATES, *unknown):
        family.add_metric([*labels, state], float(state == current))


def error_names(stats: dict[str, Any]) -> list[str]:
    """The error counters among ``stats``: ``ERROR_STATS`` and any other ``*_err``."""
    known = [name for name in ERROR_STATS if name in stats]
    return known + sorted(n for n in stats if n.endswith("_err") and n not in ERROR_STATS)


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: Any) -> None:
    number = _float(value)
    if number is not None:
        family.add_metric(labels, number)


def _add_sum(family: CounterMetricFamily, labels: list[str], *values: Any) -> None:
    numbers = [_float(v) for v in values]
    if all(n is not None for n in numbers):
        family.add_metric(labels, sum(n for n in numbers if n is not None))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# The HTTP server ------------------------------------------------------------------------


class MetricsServer:
    """A running metrics listener; ``close`` stops it and frees the port."""

    def __init__(self, httpd: Any, thread: threading.Thread, registry: CollectorRegistry) -> None:
        self._httpd = httpd
        self._thread = thread
        self.registry = registry

    @property
    def address(self) -> tuple[str, int]:
        """The bound address and port (the real port when 0 was asked for)."""
        host, port = self._httpd.server_address[:2]
        return host, port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_metrics_server(listen: str, get_state: GetState, *,
                         process_metrics: bool = True) -> MetricsServer:
    """Serve the metrics over HTTP on ``listen`` in a thread of its own.

    ``listen`` is ``ADDR:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT``; without an
    address it binds 127.0.0.1 only (all interfaces only when asked: ``0.0.0.0:PORT``
    or ``[::]:PORT``).  ``get_state`` runs in the server's thread, once per scrape;
    see ``state_from_loop`` for one that asks an asyncio loop.
    """
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    collector = AgentCollector(get_state)
    registry.register(collector)
    if process_metrics:
        ProcessCollector(registry=registry)
        ProcessCollector(namespace="keepalived_py_vrrp", registry=registry,
                         pid=lambda: collector.vrrp_pid or "-")  # "-": no /proc entry
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    server = MetricsServer(httpd, thread, registry)
    log.info("metrics on http://%s/metrics", _format_address(*server.address))
    return server


def parse_listen(listen: str) -> tuple[str, int]:
    """``"ADDR:PORT"``, ``"[V6]:PORT"``, ``":PORT"`` or ``"PORT"`` as (address, port)."""
    text = listen.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"metrics listen {listen!r}: expected [IPV6]:PORT")
        ipaddress.IPv6Address(host.split("%", 1)[0])  # raises ValueError when it is not
    elif text.count(":") > 1:
        raise ValueError(f"metrics listen {listen!r}: write an IPv6 address in brackets, "
                         "[ADDR]:PORT")
    else:
        host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics listen {listen!r}: bad port {port!r}")
    return host or DEFAULT_ADDRESS, int(port)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def state_from_loop(loop: asyncio.AbstractEventLoop,
                    handle: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]],
                    timeout: float = 5.0) -> GetState:
    """A ``get_state`` for the metrics thread that asks ``handle`` on the agent's loop.

    The agent's state lives in its asyncio loop; the scrape runs in the HTTP server's
    thread, so it hands the status request over to the loop and waits for it.
    """
    def get_state() -> dict[str, Any]:
        future = asyncio.run_coroutine_threadsafe(handle({"request": "status"}), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # the scrape has given up: don't leave the request running
            raise

    return get_state
