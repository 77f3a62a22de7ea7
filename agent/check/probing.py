"""From a checker's configuration to one probe: what the engine's ``RunProbe`` runs.

:class:`Prober` resolves, once per checker, what its probe needs (the target
with its connection options, the url blocks, the request's Host and the TLS
settings, the MISC_CHECK command) and runs the probe of its kind.  It is made
afresh for each configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.model import Node
from ..host.scripts import ConfigScripts
from .connect import Endpoint, resolve
from .http import HttpRequest, TlsOptions, first_set, http_probe
from .http_wire import UrlCheck
from .misc import misc_probe
from .probe import ProbeFailure, ProbeResult, Target
from .spec import CheckerSpec, RealServerSpec, VirtualServerSpec


@dataclass(frozen=True)
class Prepared:
    target: Target
    endpoint: Endpoint | ProbeResult    # resolved once; a bad address: its failed result
    urls: tuple[UrlCheck, ...] = ()
    requests: tuple[HttpRequest, ...] = ()      # one per url: its Host
    tls: tuple[TlsOptions | None, ...] = ()     # one per url: its SNI name


def target_of(rs: RealServerSpec, spec: CheckerSpec) -> Target:
    o = spec.option
    return Target(ip=str(o("connect_ip") or rs.ip), port=int(o("connect_port") or rs.port),
                  bindto=o("bindto"), bind_port=o("bind_port"), bind_if=o("bind_if"),
                  fwmark=o("fwmark"), timeout=spec.connect_timeout)


class Prober:
    def __init__(self, root: Node, scripts: ConfigScripts) -> None:
        self.scripts = scripts
        ssl = root.values.get("SSL")
        self.ssl: dict[str, Any] = dict(ssl.values) if ssl is not None else {}
        self._prepared: dict[int, tuple[CheckerSpec, Prepared]] = {}

    async def __call__(self, vs: VirtualServerSpec, rs: RealServerSpec, spec: CheckerSpec,
                       url: int) -> ProbeResult:
        kind = spec.kind
        if kind == "MISC_CHECK":
            return await self._misc(vs, rs, spec)
        prepared = self._prepare(vs, rs, spec)
        if kind in ("HTTP_GET", "SSL_GET"):
            if not prepared.urls:
                return ProbeResult(False, "no url to check")
            if isinstance(prepared.endpoint, ProbeResult):
                return prepared.endpoint
            i = url % len(prepared.urls)
            return await http_probe(prepared.target, prepared.urls[i], prepared.requests[i],
                                    prepared.tls[i], prepared.endpoint)
        # TCP_CHECK runs on the runtime's Connects (endpoint())
        return ProbeResult(False, f"{kind} is not run by this version", inconclusive=True)

    def known_endpoint(self, spec: CheckerSpec) -> Endpoint | ProbeResult | None:
        """A TCP_CHECK's endpoint if it was resolved before (the common case: nothing
        else to look up), else None."""
        cached = self._prepared.get(id(spec))
        return cached[1].endpoint if cached is not None and cached[0] is spec else None

    def endpoint(self, vs: VirtualServerSpec, rs: RealServerSpec,
                 spec: CheckerSpec) -> Endpoint | ProbeResult:
        """Where a TCP_CHECK connects, resolved once per checker; a failed result when
        its address is bad."""
        known = self.known_endpoint(spec)
        return known if known is not None else self._prepare(vs, rs, spec).endpoint

    def _prepare(self, vs: VirtualServerSpec, rs: RealServerSpec,
                 spec: CheckerSpec) -> Prepared:
        cached = self._prepared.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached[1]
        target = target_of(rs, spec)
        try:
            endpoint: Endpoint | ProbeResult = resolve(target)
        except ProbeFailure as failure:
            endpoint = failure.result()
        prepared = Prepared(target, endpoint)
        if spec.kind in ("HTTP_GET", "SSL_GET") and spec.node is not None:
            nodes = spec.node.blocks("url")
            own = spec.option("virtualhost")
            protocol = str(spec.option("http_protocol") or "1.0")
            # Host: the url's virtualhost, the checker's, the real server's, the VS's;
            # SNI (enable_sni): the url's, the checker's, the VS's
            requests = tuple(HttpRequest(
                virtualhost=first_set(n.values.get("virtualhost"), own, rs.virtualhost,
                                      vs.virtualhost), protocol=protocol) for n in nodes)
            tls: tuple[TlsOptions | None, ...] = (None,) * len(nodes)
            if spec.kind == "SSL_GET":
                sni = spec.option("enable_sni")
                tls = tuple(TlsOptions(
                    sni=first_set(n.values.get("virtualhost"), own, vs.virtualhost)
                    if sni else None,
                    certfile=self.ssl.get("certificate"), keyfile=self.ssl.get("key"),
                    password=self.ssl.get("password"), cafile=self.ssl.get("ca"))
                    for n in nodes)
            prepared = Prepared(target, endpoint, tuple(UrlCheck.from_node(n) for n in nodes),
                                requests, tls)
        self._prepared[id(spec)] = (spec, prepared)
        return prepared

    async def _misc(self, vs: VirtualServerSpec, rs: RealServerSpec,
                    spec: CheckerSpec) -> ProbeResult:
        command = self.scripts.get("MISC_CHECK", f"{rs.script_name}/{spec.nth}", "misc_path")
        if command is None:
            return ProbeResult(False, "the MISC_CHECK script was refused or is missing")
        timeout = spec.option("misc_timeout") or vs.delay_loop
        return await misc_probe(command, float(timeout), spec.misc_dynamic)
