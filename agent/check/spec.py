"""The load-balancing part of a configuration, resolved as keepalived resolves it.

``build(root)`` turns the parsed ``virtual_server`` blocks into frozen specs with
every inherited setting filled in (keepalived's ``validate_check_config``):
timing from the checker, else the real server, else the virtual server, else
the checker's own default; forwarding, weight, alpha and inhibit from the
virtual server; real-server ports completed or reset to the service's.

The specs are what the real-server engine (``engine.py``) and the probes run
on, and what a reload compares: a spec that compares equal keeps its state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Node

CHECKER_KINDS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "FILE_CHECK", "SMTP_CHECK",
                 "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "BFD_CHECK")
# The checkers that do not run on a timer: they are told.
EVENT_DRIVEN = ("FILE_CHECK", "BFD_CHECK")
# The checker kinds this agent runs so far; the others are read, reported and left out.
RUNNABLE = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "FILE_CHECK")

# keepalived's own defaults per checker (check_*.c: default_retry,
# default_delay_before_retry; None: the checker's delay_loop)
DEFAULT_RETRY = {"MISC_CHECK": 0, "DNS_CHECK": 3}
DEFAULT_DELAY_BEFORE_RETRY: dict[str, float | None] = {"HTTP_GET": 3.0, "SSL_GET": 3.0,
                                                       "DNS_CHECK": None}
IPVS_WEIGHT_LIMIT = 2**31 - 1
WEIGHT_FAULT = -(2**31)         # a FILE_CHECK product at or below this fails the server
PERSISTENCE_DEFAULT = 360


@dataclass(frozen=True)
class Forwarding:
    method: str = "NAT"                 # NAT | DR | TUN
    tun_type: str = "ipip"              # ipip | gue | gre
    tun_port: int = 0
    tun_csum: str = "nocsum"

    @classmethod
    def from_words(cls, words: tuple[Any, ...]) -> Forwarding:
        method, options = words[0], list(words[1:])
        kwargs: dict[str, Any] = {}
        i = 0
        while i < len(options):
            if options[i] == "type":
                kwargs["tun_type"] = options[i + 1]
                i += 1
            elif options[i] == "port":
                kwargs["tun_port"] = int(options[i + 1])
                i += 1
            else:
                kwargs["tun_csum"] = options[i]
            i += 1
        return cls(method, **kwargs)


@dataclass(frozen=True)
class CheckerSpec:
    """One checker of a real server, with its timing resolved."""

    kind: str
    index: int                          # its place among the real server's checkers
    nth: int                            # its place among the checkers of its kind
    retry: int
    delay_before_retry: float
    delay_loop: float
    warmup: float
    connect_timeout: float
    alpha: bool
    log_all_failures: bool = False
    # what the probe needs, as configured (compared on reload: a change restarts it)
    options: tuple[tuple[str, Any], ...] = ()
    urls: int = 1                       # HTTP_GET / SSL_GET: how many URLs
    fast_recovery: bool = False
    misc_dynamic: bool = False
    file: str | None = None             # FILE_CHECK: the track_file's name
    file_weight: int = 1
    file_reverse: bool = False
    node: Node | None = field(default=None, compare=False, repr=False)   # its block

    @property
    def timed(self) -> bool:
        return self.kind not in EVENT_DRIVEN

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class RealServerSpec:
    ip: str
    port: int
    weight: int                         # the configured weight (keepalived's iweight)
    forwarding: Forwarding
    inhibit: bool
    alpha: bool
    uthreshold: int = 0
    lthreshold: int = 0
    smtp_alert: bool = True
    virtualhost: str | None = None
    script_name: str = ""               # its key among the configuration's scripts
    checkers: tuple[CheckerSpec, ...] = ()
    skipped: tuple[str, ...] = ()       # checker kinds configured but not run yet
    # its block, for what only the data dump shows (what was set here, not inherited)
    node: Node | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def name(self, protocol: str) -> str:
        """keepalived's FMT_RS: ``[198.18.2.11]:tcp:8080``."""
        return f"[{self.ip}]:{protocol}:{self.port}"


@dataclass(frozen=True)
class VirtualServerSpec:
    kind: str                           # "address" | "fwmark"
    af: int                             # 2 (inet) | 10 (inet6)
    protocol: str                       # tcp | udp | sctp | none (keepalived's FMT names)
    ip: str | None
    port: int
    fwmark: int
    scheduler: str
    flags: tuple[str, ...]              # hashed, ops, flag-1.., sh-port, sh-fallback, ...
    persistence_timeout: int
    persistence_granularity: str | int | None
    persistence_engine: str | None
    quorum: int
    hysteresis: int
    alpha: bool
    omega: bool
    ha_suspend: bool
    smtp_alert: bool
    virtualhost: str | None
    script_name: str
    sorry: RealServerSpec | None
    sorry_inhibit: bool
    reals: tuple[RealServerSpec, ...]
    delay_loop: float = 60.0
    # its block, for what only the data dump shows (what was set here, not inherited)
    node: Node | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """keepalived's FMT_VS: ``[198.18.1.10]:tcp:80`` or ``FWM 5``."""
        if self.kind == "fwmark":
            return f"FWM {self.fwmark}"
        return f"[{self.ip}]:{self.protocol}:{self.port}"

    @property
    def key(self) -> tuple[Any, ...]:
        """What keeps a virtual server the same one across a reload (vs_iseq)."""
        if self.kind == "fwmark":
            return ("fwmark", self.af, self.fwmark)
        return ("address", self.protocol, self.ip, self.port)

    def service_settings(self) -> tuple[Any, ...]:
        """What an IPVS service is programmed with beyond its key (a change edits it)."""
        return (self.scheduler, self.flags, self.persistence_timeout,
                self.persistence_granularity, self.persistence_engine)


@dataclass
class LvsConfig:
    """Every virtual server of a configuration, plus what was left out and why."""

    servers: list[VirtualServerSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _timer(node: Node, name: str) -> float | None:
    value = node.values.get(name)
    return float(value) if value is not None else None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _port(head: tuple[Any, ...]) -> int:
    return int(head[1]) if len(head) > 1 else 0


def _label(head: object) -> str:
    """A block's head as the scripts table names it (host/scripts.py)."""
    if isinstance(head, tuple):
        return " ".join(str(part) for part in head)
    return str(head)


def _canonical(ip: str) -> str:
    """An address as inet_ntop writes it (what keepalived prints and the kernel reads)."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def _family(ip: str) -> int:
    return 10 if ipaddress.ip_address(ip.split("%")[0]).version == 6 else 2


def _checker_options(node: Node) -> tuple[tuple[str, Any], ...]:
    """The checker's own keywords as configured, minus timing (resolved apart)."""
    timing = {"retry", "delay_before_retry", "delay_loop", "warmup", "connect_timeout",
              "alpha", "log_all_failures"}
    out = []
    for name, value in node.values.items():
        if name in timing:
            continue
        if isinstance(value, list):
            value = tuple(v.to_json() if isinstance(v, Node) else v for v in value)
        elif isinstance(value, Node):
            value = value.to_json()
        out.append((name, _frozen(value)))
    return tuple(out)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _checker(kind: str, index: int, nth: int, node: Node, rs: Node, vs: Node,
             rs_alpha: bool) -> CheckerSpec:
    delay_loop = _first(_timer(node, "delay_loop"), _timer(rs, "delay_loop"),
                        _timer(vs, "delay_loop"), 60.0)
    retry = _first(node.values.get("retry"), rs.values.get("retry"), vs.values.get("retry"),
                   DEFAULT_RETRY.get(kind, 1))
    own_default = DEFAULT_DELAY_BEFORE_RETRY.get(kind, 1.0)
    delay_before_retry = _first(_timer(node, "delay_before_retry"),
                                _timer(rs, "delay_before_retry"),
                                _timer(vs, "delay_before_retry"),
                                own_default if own_default is not None else delay_loop)
    warmup = _first(_timer(node, "warmup"), _timer(rs, "warmup"), _timer(vs, "warmup"),
                    delay_loop)
    connect_timeout = _first(_timer(node, "connect_timeout"), _timer(rs, "connect_timeout"),
                             _timer(vs, "connect_timeout"), 5.0)
    alpha = node.values.get("alpha")
    spec: dict[str, Any] = dict(
        kind=kind, index=index, nth=nth, retry=int(retry), delay_before_retry=delay_before_retry,
        delay_loop=delay_loop, warmup=warmup, connect_timeout=connect_timeout,
        alpha=bool(rs_alpha if alpha is None else alpha),
        log_all_failures=bool(node.values.get("log_all_failures", False)),
        options=_checker_options(node), node=node)
    if kind in ("HTTP_GET", "SSL_GET"):
        spec["urls"] = max(1, len(node.blocks("url")))
        spec["fast_recovery"] = bool(node.values.get("fast_recovery", False))
    elif kind == "MISC_CHECK":
        spec["misc_dynamic"] = "misc_dynamic" in node.values
    elif kind == "FILE_CHECK":
        spec["file"] = node.values.get("track_file")
        spec["alpha"] = False           # keepalived: a FILE_CHECK is never alpha
        if "weight" in node.values:
            spec["file_weight"], spec["file_reverse"] = node.values["weight"]
        else:
            spec["file_weight"] = None  # the track_file's own weight (filled by build)
    return CheckerSpec(**spec)


def _real_server(node: Node, vs: Node, vs_spec: dict[str, Any], vs_label: str,
                 smtp_global: bool | None) -> RealServerSpec:
    head = node.head
    ip = _canonical(str(head[0]))
    port = _port(head)
    forwarding = Forwarding.from_words(node.values.get("lvs_method")
                                       or vs.values.get("lvs_method") or ("NAT",))
    if vs_spec["kind"] == "fwmark":
        if forwarding.method != "NAT":
            port = 0
    elif forwarding.method != "NAT" or port == 0:
        port = vs_spec["port"]
    alpha_value = node.values.get("alpha")
    alpha = bool(alpha_value) if alpha_value is not None else "alpha" in vs.values
    inhibit_value = node.values.get("inhibit_on_failure")
    inhibit = bool(inhibit_value) if inhibit_value is not None else \
        "inhibit_on_failure" in vs.values
    checkers: list[CheckerSpec] = []
    skipped: list[str] = []
    index = 0
    for kind in CHECKER_KINDS:
        for nth, block in enumerate(node.blocks(kind)):
            if kind not in RUNNABLE:
                skipped.append(kind)
                continue
            checkers.append(_checker(kind, index, nth, block, node, vs, alpha))
            index += 1
    smtp = node.values.get("smtp_alert")
    return RealServerSpec(
        ip=ip, port=port, weight=int(node.values.get("weight", vs.values.get("weight", 1))),
        forwarding=forwarding, inhibit=inhibit, alpha=alpha,
        uthreshold=int(node.values.get("uthreshold", 0)),
        lthreshold=int(node.values.get("lthreshold", 0)),
        # a real server alerts unless told not to (keepalived keeps this old default)
        smtp_alert=bool(smtp) if smtp is not None else
        smtp_global if smtp_global is not None else True,
        virtualhost=node.values.get("virtualhost"),
        script_name=f"{vs_label}/{_label(head)}",
        checkers=tuple(checkers), skipped=tuple(skipped), node=node)


def _sorry(vs: Node, vs_spec: dict[str, Any]) -> RealServerSpec | None:
    head = vs.values.get("sorry_server")
    if head is None:
        return None
    forwarding = Forwarding.from_words(vs.values.get("sorry_server_lvs_method")
                                       or vs.values.get("lvs_method") or ("NAT",))
    port = _port(head)
    if vs_spec["kind"] == "fwmark":
        if forwarding.method != "NAT":
            port = 0
    elif forwarding.method != "NAT" or port == 0:
        port = vs_spec["port"]
    return RealServerSpec(ip=_canonical(str(head[0])), port=port,
                          weight=int(vs.values.get("weight", 1)), forwarding=forwarding,
                          inhibit="sorry_server_inhibit" in vs.values, alpha=False)


def _virtual_server(node: Node, smtp_global: bool | None,
                    notes: list[str]) -> VirtualServerSpec | None:
    head = node.head
    if head is None or head[0] == "group":
        notes.append(f"virtual_server group {head[1] if head else ''}: virtual server groups "
                     "are not run yet - skipped")
        return None
    if not node.blocks("real_server"):
        return None
    base: dict[str, Any]
    if head[0] == "fwmark":
        af = 10 if len(head) > 2 and head[2] == "inet6" else 2
        if node.values.get("ip_family") == "inet6":
            af = 10
        base = dict(kind="fwmark", af=af, protocol="none", ip=None, port=0,
                    fwmark=int(head[1]))
    else:
        ip = _canonical(str(head[0]))
        base = dict(kind="address", af=_family(ip),
                    protocol=str(node.values.get("protocol", "UDP")).lower(), ip=ip,
                    port=_port(head), fwmark=0)
    label = _label(head)
    persistence = int(node.values.get("persistence_timeout", 0) or 0)
    granularity = node.values.get("persistence_granularity")
    if granularity is not None and not persistence:
        persistence = PERSISTENCE_DEFAULT
    if base["kind"] == "address" and base["port"] == 0 and not persistence:
        persistence = PERSISTENCE_DEFAULT
    flags = tuple(f for f in ("hashed", "ops", "flag-1", "flag-2", "flag-3", "sh-port",
                              "sh-fallback", "mh-port", "mh-fallback") if f in node.values)
    if "ops" in flags and base["protocol"] not in ("udp", "none"):
        flags = tuple(f for f in flags if f != "ops")
    reals: list[RealServerSpec] = []
    seen: set[tuple[str, int]] = set()
    for rs in node.blocks("real_server"):
        spec = _real_server(rs, node, base, label, smtp_global)
        if spec.key in seen:             # keepalived removes the second one
            continue
        seen.add(spec.key)
        reals.append(spec)
    total = sum(r.weight for r in reals)
    quorum = min(int(node.values.get("quorum", 1)), total)
    hysteresis = min(int(node.values.get("hysteresis", 0)), max(quorum - 1, 0))
    smtp = node.values.get("smtp_alert")
    return VirtualServerSpec(
        **base, scheduler=str(node.values.get("lvs_sched", "wlc")), flags=flags,
        persistence_timeout=persistence, persistence_granularity=granularity,
        persistence_engine=node.values.get("persistence_engine"),
        quorum=quorum, hysteresis=hysteresis, alpha="alpha" in node.values,
        omega="omega" in node.values,
        ha_suspend="ha_suspend" in node.values and base["kind"] != "fwmark",
        smtp_alert=bool(smtp) if smtp is not None else bool(smtp_global),
        virtualhost=node.values.get("virtualhost"), script_name=label,
        sorry=_sorry(node, base), sorry_inhibit="sorry_server_inhibit" in node.values,
        reals=tuple(reals), delay_loop=float(node.values.get("delay_loop", 60.0)), node=node)


def build(root: Node) -> LvsConfig:
    """Every runnable virtual server of a parsed configuration, resolved."""
    out = LvsConfig()
    glob = root.values.get("global_defs")
    smtp_global = None
    if glob is not None:
        for key in ("smtp_alert_checker", "smtp_alert"):
            if key in glob.values:
                smtp_global = bool(glob.values[key])
                break
    track_files = {str(n.head): n for n in root.blocks("track_file")}
    for node in root.blocks("virtual_server"):
        spec = _virtual_server(node, smtp_global, out.notes)
        if spec is None:
            continue
        out.servers.append(_with_file_weights(spec, track_files))
    return out


def _with_file_weights(vs: VirtualServerSpec, track_files: dict[str, Node]) -> VirtualServerSpec:
    """A FILE_CHECK without its own weight takes its track_file's (default 1)."""
    from dataclasses import replace
    reals = []
    for rs in vs.reals:
        checkers = []
        for c in rs.checkers:
            if c.kind == "FILE_CHECK" and c.file_weight is None:
                node = track_files.get(str(c.file))
                weight, reverse = (node.values.get("weight", (1, False))
                                   if node is not None else (1, False))
                c = replace(c, file_weight=int(weight), file_reverse=bool(reverse))
            checkers.append(c)
        reals.append(replace(rs, checkers=tuple(checkers)))
    return replace(vs, reals=tuple(reals))
