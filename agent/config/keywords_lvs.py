"""virtual_server_group, virtual_server, real_server, checkers, SSL and BFD.

Declared from keepalived 2.2.7's ``install_keyword`` calls in keepalived/check
and keepalived/bfd, with the later additions marked by ``since``.  Defaults
are keepalived's; for checker timing options they are the checker's own
fallback, used when neither the real server nor the virtual server sets one.
"""

from __future__ import annotations

from .schema import BlockSpec, Flag, Kw, Script, Str
from .values_lvs import (
    INT_MAX,
    SCHEDULERS,
    UINT_MAX,
    BfdInterval,
    BfdWeight,
    Bool,
    Choose,
    ConnectAddress,
    Digest,
    DnsName,
    FileWeight,
    Forwarding,
    Granularity,
    HexString,
    KnownWords,
    NotingBlock,
    Offset,
    OptUInt,
    Regex,
    RegexStack,
    Server,
    SInt,
    StatusCodes,
    Text,
    Timer,
    UInt,
    VirtualServerHead,
    VsgEntry,
)

TIMER_UINT_MAX = UINT_MAX / 10**6      # read_timer(..., UINT_MAX) in seconds
ONE_US = 0.000001
IFNAMSIZ = 16
BFD_INAME_MAX = 32
IP_VS_PENAME_MAXLEN = 16
BFD_MS_MAX = UINT_MAX // 1000          # BFD intervals, in milliseconds

# -- checkers ------------------------------------------------------------------------

def _checker_common(connection: bool, retry: int = 1,
                    delay_before_retry: float | None = 1.0) -> tuple[Kw, ...]:
    """The options every checker takes (``install_checker_common_keywords``)."""
    conn: tuple[Kw, ...] = ()
    if connection:
        conn = (
            Kw("connect_ip", ConnectAddress("Invalid connect_ip address {word} - ignoring")),
            Kw("connect_port", UInt(1, 65535, "Invalid checker connect_port '{word}'")),
            Kw("bindto", ConnectAddress("Invalid bindto address {word} - ignoring")),
            Kw("bind_port", UInt(1, 65535, "Invalid checker bind_port '{word}'")),
            Kw("bind_if", Text(max_len=IFNAMSIZ - 1,
                               too_long="Interface name {word} is too long - ignoring")),
            Kw("connect_timeout", Timer(ONE_US, TIMER_UINT_MAX,
                                        error="connect_timeout {word} invalid - ignoring"),
               doc="default: the real server's, then the virtual server's (5 s)"),
            Kw("fwmark", UInt(0, UINT_MAX, "Invalid fwmark connection value '{word}'")),
        )
    return conn + (
        Kw("retry", UInt(0, UINT_MAX, "Invalid retry connection value '{word}'"),
           default=retry),
        Kw("delay_before_retry",
           Timer(error="Invalid delay_before_retry connection value '{word}'"),
           default=delay_before_retry,
           doc="None: the checker's delay_loop"),
        Kw("warmup", Timer(error="Invalid warmup connection value '{word}'"),
           doc="default: a random delay up to delay_loop"),
        Kw("delay_loop", Timer(ONE_US, error="delay_loop '{word}' is invalid - ignoring"),
           default=60.0),
        Kw("alpha", Bool("Invalid alpha parameter {word}"), default=False),
        Kw("log_all_failures", Bool("Invalid log_all_failures parameter {word}"),
           default=False),
    )


TCP_CHECK = BlockSpec("TCP_CHECK", _checker_common(True))
PING_CHECK = BlockSpec("PING_CHECK", _checker_common(True))

REGEX_OPTIONS = (
    "allow_empty_class", "alt_bsux", "auto_callout", "caseless", "dollar_endonly", "dotall",
    "dupnames", "extended", "firstline", "match_unset_backref", "multiline", "never_ucp",
    "never_utf", "no_auto_capture", "no_auto_possess", "no_dotstar_anchor",
    "no_start_optimize", "ucp", "ungreedy", "utf", "never_backslash_c", "alt_circumflex",
    "alt_verbnames", "use_offset_limit",
)


def _url(ssl: bool) -> BlockSpec:
    keywords = (
        Kw("path", Str()),
        Kw("digest", Digest()),
        Kw("status_code", StatusCodes(), default=((200, 299),)),
        Kw("virtualhost", Text("Missing HTTP_GET virtualhost name")),
        Kw("regex", Regex()),
        Kw("regex_no_match"),
        Kw("regex_options", KnownWords(REGEX_OPTIONS)),
        Kw("regex_min_offset", Offset("min")),
        Kw("regex_max_offset", Offset("max")),
        Kw("regex_stack", RegexStack()),
    )
    if ssl:
        keywords += (Kw("tls_compliant", Bool("Invalid tls_compliant option {word}"),
                        since="2.2.8"),)
    return BlockSpec("url", keywords)


def _http(kind: str) -> NotingBlock:
    ssl = kind == "SSL_GET"
    keywords = _checker_common(True, delay_before_retry=3.0) + (
        Kw("virtualhost", Text("HTTP_GET virtualhost name missing")),
        Kw("http_protocol", Choose(("1.0", "1.1", "1.0C"),
                                   error="Invalid http_protocol version {word}",
                                   ignore_case=True, missing="Missing http_protocol version")),
        Kw("enable_sni", Bool("Invalid enable_sni parameter {word}"), default=False),
        # unreleased (acassen/keepalived HEAD after v2.4.3)
        Kw("sni_name", Text(optional=True), since="2.4.4"),
        Kw("fast_recovery", Bool("Invalid fast_recovery parameter {word}"), default=False),
        Kw("url", block=_url(ssl), repeat=True),
    )
    if ssl:
        keywords += (Kw("tls_compliant", Bool("Invalid tls_compliant option {word}"),
                        since="2.2.8"),)
    # nb_get_retry is retry's old name, with a warning and a range starting at 0
    keywords = tuple(
        Kw(kw.name, kw.arg, default=kw.default, aliases=("nb_get_retry",), doc=kw.doc)
        if kw.name == "retry" else kw for kw in keywords)
    return NotingBlock(kind, keywords, notes=(
        ("nb_get_retry", "nb_get_retry is deprecated - please use 'retry'",
         UInt(0, UINT_MAX, "Invalid nb_get_retry value '{word}'")),))


HTTP_GET = _http("HTTP_GET")
SSL_GET = _http("SSL_GET")

SMTP_HOST = BlockSpec("host", _checker_common(True))

SMTP_CHECK = BlockSpec("SMTP_CHECK", (
    Kw("helo_name", Text("SMTP_CHECK helo name missing")),
    *_checker_common(True),
    Kw("host", block=SMTP_HOST, repeat=True, doc="deprecated: use one SMTP_CHECK per host"),
))

DNS_TYPES = ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY")

DNS_CHECK = BlockSpec("DNS_CHECK", (
    *_checker_common(True, retry=3, delay_before_retry=None),
    Kw("type", Choose(DNS_TYPES, error="Unknown DNS check type {word} - ignoring",
                      ignore_case=True),
       default="SOA"),
    Kw("name", DnsName(), default=""),
))

UDP_CHECK = BlockSpec("UDP_CHECK", (
    *_checker_common(True),
    Kw("payload", HexString("payload")),
    Kw("require_reply", HexString("reply", wildcard=True, optional=True)),
    Kw("min_reply_length", UInt(0, 65535, "UDP_CHECK min length {word} not valid - must be "
                                          "between 0 & 65535"), default=0),
    Kw("max_reply_length", UInt(0, 65535, "UDP_CHECK max length {word} not valid - must be "
                                          "between 0 & 65535"), default=255),
))

MISC_CHECK = BlockSpec("MISC_CHECK", (
    *_checker_common(False, retry=0),
    Kw("misc_path", Script(max_words=1, missing=""), doc="the script and its arguments"),
    Kw("misc_timeout", UInt(0, UINT_MAX // 10**6, "Invalid misc_timeout value '{word}'"),
       doc="seconds; default: delay_loop"),
    Kw("misc_dynamic"),
    Kw("user", Script(max_words=2, missing="No user specified for misc checker script"),
       doc="USER [GROUP]"),
))

FILE_CHECK = BlockSpec("FILE_CHECK", (
    Kw("track_file", Str()),
    Kw("weight", FileWeight(), doc="default: the track_file's weight"),
))

BFD_CHECK = BlockSpec("BFD_CHECK", (
    Kw("name", Text("({head}) BFD_CHECK - No or too many names specified - skipping checker",
                    exact=True, max_len=BFD_INAME_MAX - 1,
                    too_long="({head}) BFD_CHECK - BFD name {word} too long")),
    Kw("alpha", Bool("Invalid alpha parameter {word}"), default=False),
))

CHECKERS = (
    Kw("MISC_CHECK", block=MISC_CHECK, repeat=True),
    Kw("SMTP_CHECK", block=SMTP_CHECK, repeat=True),
    Kw("TCP_CHECK", block=TCP_CHECK, repeat=True),
    Kw("PING_CHECK", block=PING_CHECK, repeat=True),
    Kw("UDP_CHECK", block=UDP_CHECK, repeat=True),
    Kw("HTTP_GET", block=HTTP_GET, repeat=True),
    Kw("SSL_GET", block=SSL_GET, repeat=True),
    Kw("DNS_CHECK", block=DNS_CHECK, repeat=True),
    Kw("FILE_CHECK", block=FILE_CHECK, repeat=True),
    Kw("BFD_CHECK", block=BFD_CHECK, repeat=True),
)

# -- servers -------------------------------------------------------------------------

REAL_SERVER = BlockSpec("real_server", (
    Kw("weight", UInt(0, INT_MAX, f"Real server weight {{word}} is outside range "
                                  f"0-{INT_MAX}"),
       default=1, doc="default: the virtual server's weight"),
    Kw("lvs_method", Forwarding("real"), doc="default: the virtual server's"),
    Kw("uthreshold", UInt(0, UINT_MAX, "Invalid real_server uthreshold '{word}' - ignoring")),
    Kw("lthreshold", UInt(0, UINT_MAX, "Invalid real_server lthreshold '{word}' - ignoring")),
    Kw("inhibit_on_failure", Bool("Invalid inhibit_on_failure parameter {word}")),
    Kw("notify_up", Script()),
    Kw("notify_down", Script()),
    Kw("alpha", Bool("Invalid alpha parameter {word}")),
    Kw("retry", UInt(1, UINT_MAX, "retry value invalid - {word}")),
    Kw("delay_before_retry",
       Timer(error="real server delay_before_retry '{word}' invalid - ignoring")),
    Kw("warmup", Timer(error="real server warmup '{word}' invalid - ignoring")),
    Kw("connect_timeout", Timer(ONE_US, TIMER_UINT_MAX,
                                error="real server connect_timeout {word} invalid - ignoring")),
    Kw("delay_loop", Timer(ONE_US, error="real server delay_loop '{word}' invalid - ignoring")),
    Kw("smtp_alert", Bool("Invalid real_server smtp_alert parameter {word}")),
    Kw("virtualhost", Text("real server virtualhost missing")),
    Kw("snmp_name", Text("real server snmp_name missing or extra parameters", exact=True)),
    *CHECKERS,
), head=Server("Invalid real server ip address/port {ip}/{port} - skipping"))

VIRTUAL_SERVER = BlockSpec("virtual_server", (
    Kw("ip_family", Choose(("inet", "inet6"), error="unknown address family {word}"),
       doc="default: from the addresses"),
    Kw("retry", UInt(1, UINT_MAX, "retry value invalid - {word}")),
    Kw("delay_before_retry",
       Timer(error="virtual server delay before retry '{word}' invalid - ignoring")),
    Kw("warmup", Timer(error="virtual server warmup '{word}' invalid - ignoring")),
    Kw("connect_timeout",
       Timer(ONE_US, TIMER_UINT_MAX,
             error="virtual server connect_timeout {word} invalid - ignoring"),
       default=5.0),
    Kw("delay_loop", Timer(ONE_US, error="virtual server delay loop '{word}' invalid - ignoring"),
       default=60.0),
    Kw("inhibit_on_failure", doc="a flag here: any argument is ignored"),
    Kw("lvs_sched", Choose(SCHEDULERS, error="Invalid lvs_scheduler '{word}' - ignoring"),
       default="wlc", aliases=("lb_algo",)),
    Kw("hashed"),
    Kw("ops"),
    Kw("flag-1"),
    Kw("flag-2"),
    Kw("flag-3"),
    Kw("sh-port"),
    Kw("sh-fallback"),
    Kw("mh-port"),
    Kw("mh-fallback"),
    Kw("lvs_method", Forwarding("virtual"), default=("NAT",), aliases=("lb_kind",)),
    Kw("persistence_engine",
       Text(max_len=IP_VS_PENAME_MAXLEN - 1, truncate=True,
            too_long="persistence_name too long, truncating - {word}")),
    Kw("persistence_timeout",
       OptUInt(1, 86400 * 31, "persistence_timeout invalid", bare=360),
       doc="seconds; bare: 360; 360 as well when only persistence_granularity is set"),
    Kw("persistence_granularity", Granularity()),
    Kw("protocol", Choose(("TCP", "UDP", "SCTP"), error="Unknown protocol {word} - ignoring",
                          ignore_case=True),
       doc="default: TCP (UDP for a fwmark service without one)"),
    Kw("ha_suspend"),
    Kw("smtp_alert", Bool("Invalid virtual_server smtp_alert parameter {word}")),
    Kw("virtualhost", Text("virtual server virtualhost missing")),
    Kw("snmp_name", Text("virtual server snmp_name missing or extra parameters", exact=True)),
    Kw("alpha", doc="a flag here: any argument is ignored"),
    Kw("omega"),
    Kw("quorum_up", Script()),
    Kw("quorum_down", Script()),
    Kw("quorum", UInt(1, UINT_MAX, f"Quorum {{word}} must be in [1, {UINT_MAX}]. "
                                   "Setting to 1.", fallback=1), default=1),
    Kw("hysteresis", UInt(0, UINT_MAX, f"Hysteresis {{word}} must be in [0, {UINT_MAX}] "
                                       "- ignoring"), default=0),
    Kw("weight", UInt(1, INT_MAX, f"Virtual server weight {{word}} is outside range "
                                  f"1-{INT_MAX}"), default=1),
    Kw("sorry_server", Server("Invalid sorry server IP address {ip} - skipping")),
    Kw("sorry_server_inhibit", Flag()),
    Kw("sorry_server_lvs_method", Forwarding("sorry")),
    Kw("real_server", block=REAL_SERVER, repeat=True),
), head=VirtualServerHead())

VIRTUAL_SERVER_GROUP = BlockSpec("virtual_server_group", (), head=Str(), entries=VsgEntry())

SSL = BlockSpec("SSL", (
    Kw("password", Text("SSL password missing")),
    Kw("ca", Text("SSL cafile missing")),
    Kw("certificate", Text("SSL certfile missing")),
    Kw("key", Text("SSL keyfile missing")),
))

# -- BFD -----------------------------------------------------------------------------

_BFD = "Configuration error: BFD instance {head} "

BFD_INSTANCE = BlockSpec("bfd_instance", (
    Kw("source_ip", ConnectAddress(_BFD + "has malformed source address {word}, ignoring")),
    Kw("neighbor_ip", ConnectAddress(_BFD + "has malformed neighbor address {word}, "
                                            "ignoring instance"),
       aliases=("neighbour_ip",)),
    Kw("min_rx", BfdInterval(1, BFD_MS_MAX, error=_BFD + "min_rx value {word} is not valid "
                             f"(must be in range [1-{BFD_MS_MAX}]), ignoring"),
       default=10.0, doc="milliseconds"),
    Kw("min_tx", BfdInterval(1, BFD_MS_MAX, error=_BFD + "min_tx value {word} is not valid "
                             f"(must be in range [1-{BFD_MS_MAX}]), ignoring"),
       default=10.0, doc="milliseconds"),
    Kw("idle_tx", BfdInterval(1000, BFD_MS_MAX, error=_BFD + "idle_tx value {word} is not "
                              f"valid (must be in range [1000-{BFD_MS_MAX}]), ignoring"),
       default=1000.0, doc="milliseconds"),
    Kw("multiplier", UInt(1, 255, _BFD + "multiplier value {word} not valid (must be in "
                                         "range [1-255]), ignoring"), default=5),
    Kw("passive"),
    Kw("ttl", UInt(1, 255, _BFD + "ttl/hoplimit value {word} not valid (must be in range "
                                  "[1-255]), ignoring"),
       aliases=("hoplimit",), doc="default: 255 (keepalived 2.2.7: 64 for IPv6, a bug)"),
    Kw("max_hops", SInt(-1, 255, _BFD + "max_hops value {word} not valid (must be in range "
                                        "[-1-255]), ignoring"), default=0),
    Kw("multihop", Bool(_BFD + "multihop setting not valid - {word}"), default=False,
       since="2.2.8"),
    Kw("weight", BfdWeight(), default=(0, False)),
    Kw("vrrp"),
    Kw("checker"),
), head=Text(max_len=BFD_INAME_MAX - 1,
             too_long="Configuration error: BFD instance {word} name too long (maximum "
                      f"length is {BFD_INAME_MAX - 1} characters) - ignoring"))

# What the checker process acts on today (agent/check/spec.py, probing.py);
# ``-t`` lists the rest as read but not acted on.
NOT_ACTED = {
    "virtual_server": {"snmp_name"},
    "real_server": {"snmp_name", "SMTP_CHECK", "PING_CHECK", "UDP_CHECK", "DNS_CHECK",
                    "BFD_CHECK"},
    "url": {"regex_stack", "tls_compliant"},
    "SSL_GET": {"tls_compliant", "sni_name"},
    "HTTP_GET": {"sni_name"},
}

# The BFD process runs the sessions (agent/bfd/spec.py); who consumes a session's
# state is VRRP's track_bfd and the checker's BFD_CHECK, not acted on yet.
BFD_NOT_ACTED = {"bfd_instance": {"weight", "vrrp", "checker"}}

LVS_ROOT_KEYWORDS: tuple[Kw, ...] = (
    Kw("bfd_instance", block=BFD_INSTANCE.acting_all(BFD_NOT_ACTED), repeat=True, acted=True),
    Kw("SSL", block=SSL.acting_all(), acted=True),
    Kw("virtual_server_group", block=VIRTUAL_SERVER_GROUP, repeat=True),
    Kw("virtual_server", block=VIRTUAL_SERVER.acting_all(NOT_ACTED), repeat=True, acted=True),
)
