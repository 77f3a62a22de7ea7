"""Prometheus metrics of the agent, read from its status answer at each scrape.

``start_metrics_server`` serves them with prometheus_client's own HTTP server on a
registry of its own (not the library's global one), holding:

* ``AgentCollector``: on every scrape it calls ``get_state()``, which returns the
  control socket's status answer (see ``control.py``), and turns it into metrics.
  When ``get_state`` raises or answers ``"ok": false``, the scrape holds only
  ``keepalived_py_up 0``.
* prometheus_client's ``ProcessCollector`` for this process (``process_*``) and
  for each child (``keepalived_py_vrrp_process_*`` ...), unless
  ``process_metrics=False``.

The agent's own metrics are below; each kind of child adds its own from its
part of the status answer (its declaration's ``metrics``: VRRP's are in
``agent/vrrp/metrics.py``).

``keepalived_py_up``
    1 when the status answer came back, else 0.
``keepalived_py_child_running{child}``, ``keepalived_py_child_restarts_total{child}``
    Each supervised child: running now (1/0), and how often it was restarted.
Counters restart from 0 when a child restarts; Prometheus' ``rate`` and
``increase`` treat that as a counter reset.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from .children import ChildKind
from .status import as_dict, as_list, number

log = logging.getLogger("keepalived_py.metrics")

DEFAULT_ADDRESS = "127.0.0.1"

GetState = Callable[[], dict[str, Any]]


class AgentCollector(Collector):
    """Turns the status answer of ``get_state()`` into metric families at each scrape."""

    def __init__(self, get_state: GetState, kinds: Sequence[ChildKind] = ()) -> None:
        self._get_state = get_state
        self._kinds = list(kinds)
        self.pids: dict[str, int] = {}        # each child's, for its process metrics

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would collect (call get_state) just to learn the names.
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            state = self._get_state()
            if not isinstance(state, dict) or state.get("ok") is not True:
                raise ValueError(f"status answer not ok: {state!r:.200}")
            families = agent_families(state, self._kinds)
        except Exception as exc:
            # A scrape every few seconds: a warning each time would flood the log.
            log.debug("metrics: no state (%s)", exc, exc_info=True)
            self.pids = {}
            yield _gauge("keepalived_py_up", "Whether the agent answered its status.", 0)
            return
        self.pids = {kind.name: pid for kind in self._kinds
                     if (pid := _integer(as_dict(state.get(kind.name)).get("pid"))) is not None}
        yield _gauge("keepalived_py_up", "Whether the agent answered its status.", 1)
        yield from families


def agent_families(state: dict[str, Any], kinds: Sequence[ChildKind]) -> list[Metric]:
    """The metric families of one status answer (everything but ``keepalived_py_up``)."""
    families = _child_families(as_list(as_dict(state.get("agent")).get("children")))
    for kind in kinds:
        if kind.metrics is not None:
            families += kind.metrics(as_dict(state.get(kind.name)))
    return families


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
        add_value(restarts, [name], child.get("restarts"))
    return [running, restarts]


def add_value(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str],
              value: Any) -> None:
    value = number(value)
    if value is not None:
        family.add_metric(labels, value)


def add_sum(family: CounterMetricFamily, labels: list[str], *values: Any) -> None:
    numbers = [number(v) for v in values]
    if all(n is not None for n in numbers):
        family.add_metric(labels, sum(n for n in numbers if n is not None))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def label(value: Any) -> str:
    return "" if value is None else str(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
                         kinds: Sequence[ChildKind] = (),
                         process_metrics: bool = True) -> MetricsServer:
    """Serve the metrics over HTTP on ``listen`` in a thread of its own.

    ``listen`` is ``ADDR:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT``; without an
    address it binds 127.0.0.1 only (all interfaces only when asked: ``0.0.0.0:PORT``
    or ``[::]:PORT``).  ``get_state`` runs in the server's thread, once per scrape;
    see ``state_from_loop`` for one that asks an asyncio loop.
    """
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    collector = AgentCollector(get_state, kinds)
    registry.register(collector)
    if process_metrics:
        ProcessCollector(registry=registry)
        for kind in kinds:
            ProcessCollector(namespace=f"keepalived_py_{kind.name}", registry=registry,
                             pid=lambda name=kind.name: collector.pids.get(name, "-"))
            # "-": no /proc entry, so no series while the child does not run
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
