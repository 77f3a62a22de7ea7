"""The checker and BFD keywords: values, defaults and keepalived 2.2.7's messages."""

from __future__ import annotations

from typing import Any

import pytest
from keepalived_py.config.diag import Level
from keepalived_py.config.keywords_lvs import (
    BFD_INSTANCE,
    HTTP_GET,
    LVS_ROOT_KEYWORDS,
    REAL_SERVER,
    SSL_GET,
    VIRTUAL_SERVER,
)
from keepalived_py.config.parser import parse
from keepalived_py.config.schema import Ctx, Invalid
from keepalived_py.config.values_lvs import (
    Digest,
    Forwarding,
    HexString,
    StatusCodes,
    Timer,
    UInt,
    VirtualServerHead,
    VsgEntry,
    read_hex,
)


def msgs(result: Any) -> list[tuple[Level, str]]:
    return [(d.level, d.message) for d in result.diags]


def vs(body: str, head: str = "10.0.0.1 80") -> Any:
    return parse("t.conf", text=f"virtual_server {head} {{\n{body}\n}}\n")


def rs(body: str) -> Any:
    return vs(f"real_server 10.0.0.2 80 {{\n{body}\n}}")


def one_vs(result: Any) -> Any:
    (node,) = result.root.blocks("virtual_server")
    return node


def one_rs(result: Any) -> Any:
    (node,) = one_vs(result).blocks("real_server")
    return node


class Collect:
    """A Ctx that keeps what a value type reports."""

    def __init__(self, keyword: str = "kw") -> None:
        self.seen: list[tuple[Level, str]] = []
        self.ctx = Ctx(lambda level, msg: self.seen.append((level, msg)), keyword)


def read(arg: Any, words: list[str]) -> tuple[Any, list[tuple[Level, str]]]:
    c = Collect()
    try:
        return arg.parse(words, c.ctx), c.seen
    except Invalid:
        return Invalid, c.seen


# -- declarations ------------------------------------------------------------------

def test_root_keywords() -> None:
    assert [kw.name for kw in LVS_ROOT_KEYWORDS] == [
        "bfd_instance", "SSL", "virtual_server_group", "virtual_server"]


def test_checkers_are_in_real_server_only() -> None:
    for name in ("TCP_CHECK", "HTTP_GET", "SSL_GET", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK",
                 "PING_CHECK", "FILE_CHECK", "MISC_CHECK", "BFD_CHECK"):
        assert REAL_SERVER.keyword(name).repeat
        assert VIRTUAL_SERVER.lookup(name) is None


def test_later_keywords_are_marked() -> None:
    assert BFD_INSTANCE.keyword("multihop").since == "2.2.8"
    assert SSL_GET.keyword("tls_compliant").since == "2.2.8"
    assert SSL_GET.keyword("url").block.keyword("tls_compliant").since == "2.2.8"
    assert HTTP_GET.lookup("tls_compliant") is None
    assert HTTP_GET.keyword("sni_name").since > "2.4.3"


# -- virtual_server ------------------------------------------------------------------

def test_defaults() -> None:
    node = one_vs(vs("real_server 10.0.0.2 80 {\nTCP_CHECK {\n}\n}"))
    assert node.get("lvs_sched") == "wlc"
    assert node.get("lvs_method") == ("NAT",)
    assert node.get("delay_loop") == 60.0
    assert node.get("connect_timeout") == 5.0
    assert node.get("quorum") == 1
    assert node.get("weight") == 1
    (check,) = one_rs(vs("real_server 10.0.0.2 80 {\nTCP_CHECK {\n}\n}")).blocks("TCP_CHECK")
    assert check.get("retry") == 1 and check.get("delay_before_retry") == 1.0


@pytest.mark.parametrize(("head", "value"), [
    ("10.0.0.1 80", ("10.0.0.1", 80)),
    ("10.0.0.1", ("10.0.0.1",)),
    ("10.0.0.1 0", ("10.0.0.1",)),           # port 0 means none
    ("2001:db8::1 443", ("2001:db8::1", 443)),
    ("fwmark 7", ("fwmark", 7)),
    ("fwmark 7 inet6", ("fwmark", 7, "inet6")),
    ("group web", ("group", "web")),
])
def test_virtual_server_heads(head: str, value: tuple) -> None:
    result = vs("lb_algo rr", head)
    assert one_vs(result).head == value
    arg = VirtualServerHead()
    assert arg.parse(arg.render(value), Collect().ctx) == value
    assert not msgs(result)


def test_bad_virtual_server_heads() -> None:
    result = vs("", "1.2.3.300 22")
    assert (Level.GENERAL_ERROR,
            "Invalid virtual server IP address/port 1.2.3.300/22 - skipping") in msgs(result)
    assert result.root.blocks("virtual_server") == []
    _, seen = read(VirtualServerHead(), ["10.0.0.1", "asd"])
    assert seen == [(Level.INVALID_NUMBER, "invalid number 'asd'"),
                    (Level.GENERAL_ERROR,
                     "Invalid virtual server IP address/port 10.0.0.1/asd - skipping")]
    _, seen = read(VirtualServerHead(), ["fwmark", "-1"])
    assert seen == [(Level.INVALID_NUMBER, "negative number '-1'"),
                    (Level.GENERAL_ERROR,
                     "virtual server fwmark '-1' must be in [0, 4294967295] - ignoring")]


def test_aliases_and_messages() -> None:
    node = one_vs(vs("lb_algo rr\nlb_kind DR"))
    assert node.values["lvs_sched"] == "rr" and node.values["lvs_method"] == ("DR",)
    result = vs("lb_algo wlc2\nlb_kind DR1\nquorum none\nip_family inet20\nprotocol udp")
    assert msgs(result) == [
        (Level.GENERAL_ERROR, "Invalid lvs_scheduler 'wlc2' - ignoring"),
        (Level.GENERAL_ERROR, "PARSER : unknown [DR1] routing method for virtual server."),
        (Level.INVALID_NUMBER, "invalid number 'none'"),
        (Level.GENERAL_ERROR, "Quorum none must be in [1, 4294967295]. Setting to 1."),
        (Level.GENERAL_ERROR, "unknown address family inet20"),
    ]
    node = one_vs(result)
    assert node.values["quorum"] == 1 and node.values["protocol"] == "UDP"
    assert "lvs_sched" not in node.values


def test_timers() -> None:
    result = vs("delay_loop string\ndelay_loop 0\nconnect_timeout 2.5\nwarmup 1.1234567")
    assert msgs(result) == [
        (Level.INVALID_NUMBER, "invalid number 'string'"),
        (Level.GENERAL_ERROR, "virtual server delay loop 'string' invalid - ignoring"),
        (Level.INVALID_NUMBER,
         "number '0' outside range [0.000001, 18446744073709.551614]"),
        (Level.GENERAL_ERROR, "virtual server delay loop '0' invalid - ignoring"),
        (Level.INVALID_NUMBER, "number '1.1234567' has too many decimal places"),
    ]
    node = one_vs(result)
    assert node.values["connect_timeout"] == 2.5
    assert node.values["warmup"] == 1.123457        # rounded, as keepalived does
    assert "delay_loop" not in node.values
    timer = Timer(error="x")
    for value in (2.5, 0.000001, 60.0, 18446744073709.551614):
        assert timer.parse(timer.render(value), Collect().ctx) == value


def test_persistence() -> None:
    node = one_vs(vs("persistence_timeout\npersistence_granularity 255.255.255.0"))
    assert node.values["persistence_timeout"] == 360
    assert node.values["persistence_granularity"] == "255.255.255.0"
    result = vs("persistence_timeout 0\npersistence_granularity 129\n"
                "persistence_engine abcdefghijklmnopq")
    assert msgs(result) == [
        (Level.INVALID_NUMBER, "number '0' outside range [1, 2678400]"),
        (Level.GENERAL_ERROR, "persistence_timeout invalid"),
        (Level.INVALID_NUMBER, "number '129' outside range [1, 128]"),
        (Level.GENERAL_ERROR, "Invalid IPv6 persistence_granularity specified - 129"),
        (Level.GENERAL_ERROR, "persistence_name too long, truncating - abcdefghijklmnopq"),
    ]
    assert one_vs(result).values["persistence_engine"] == "abcdefghijklmno"


@pytest.mark.parametrize(("words", "value", "seen"), [
    (["TUN"], ("TUN",), []),
    (["TUN", "type", "gue", "port", "5555", "csum"], ("TUN", "type", "gue", "port", 5555, "csum"),
     []),
    (["TUN", "type", "gre", "remcsum"], ("TUN",),
     ["gre tunnels do not support remote checksum option."]),
    (["TUN", "type", "gue"], ("TUN",), ["gue tunnels require port, otherwise cannot have port."]),
    (["TUN", "csum"], ("TUN",), ["ipip tunnels do not support checksum option."]),
    (["TUN", "type"], ("TUN",), ["Missing tunnel type for real server."]),
    (["DR", "fast"], ("DR",), ["Invalid tunnel option fast for real server."]),
    (["nat"], Invalid, ["PARSER : unknown [nat] routing method for real server."]),
])
def test_forwarding(words: list[str], value: Any, seen: list[str]) -> None:
    got, reported = read(Forwarding("real"), words)
    assert got == value
    assert [m for _, m in reported] == seen
    if value is not Invalid:
        assert Forwarding("real").parse(Forwarding("real").render(value), Collect().ctx) == value


def test_real_server() -> None:
    node = one_rs(rs("weight 0\nlvs_method TUN\ninhibit_on_failure no\n"
                     "notify_up \"/bin/up arg\" nobody\nalpha"))
    assert node.head == ("10.0.0.2", 80)
    assert node.values == {"weight": 0, "lvs_method": ("TUN",), "inhibit_on_failure": False,
                           "notify_up": ("/bin/up arg", "nobody"), "alpha": True}
    result = vs("real_server 10.0.0.300 {\n}")
    assert (Level.GENERAL_ERROR,
            "Invalid real server ip address/port 10.0.0.300/(null) - skipping") in msgs(result)
    result = rs("weight 100a\nretry 0\nsmtp_alert maybe\nsnmp_name a b")
    assert msgs(result) == [
        (Level.INVALID_NUMBER, "invalid number '100a'"),
        (Level.GENERAL_ERROR, "Real server weight 100a is outside range 0-2147483647"),
        (Level.INVALID_NUMBER, "number '0' outside range [1, 4294967295]"),
        (Level.GENERAL_ERROR, "retry value invalid - 0"),
        (Level.GENERAL_ERROR, "Invalid real_server smtp_alert parameter maybe"),
        (Level.GENERAL_ERROR, "real server snmp_name missing or extra parameters"),
    ]


def test_sorry_server() -> None:
    node = one_vs(vs("sorry_server 10.0.0.9 8080\nsorry_server_lvs_method DR"))
    assert node.values["sorry_server"] == ("10.0.0.9", 8080)
    result = vs("sorry_server xxx 80")
    assert msgs(result) == [(Level.GENERAL_ERROR, "Invalid sorry server IP address xxx - skipping")]


# -- virtual_server_group -------------------------------------------------------------

def test_virtual_server_group() -> None:
    text = ("virtual_server_group G {\n 10.0.0.1-10 80\n 10.1.0.0/24 443\n"
            " 10.2.0.1-10.2.1.5\n 2001:db8::1-ff 80\n fwmark 3 inet\n fwmark 4\n}\n")
    result = parse("t.conf", text=text)
    assert not msgs(result)
    (group,) = result.root.blocks("virtual_server_group")
    assert group.head == "G"
    assert group.values["entries"] == [
        ("10.0.0.1-10", 80), ("10.1.0.0/24", 443), ("10.2.0.1-10.2.1.5",),
        ("2001:db8::1-ff", 80), ("fwmark", 3, "inet"), ("fwmark", 4)]


@pytest.mark.parametrize(("words", "message"), [
    (["10.0.0.5-3"], "Address range end is not greater than address range start - "
                     "10.0.0.5-3 - skipping"),
    (["10.0.0.1-300"], "Virtual server group range '10.0.0.1-300' end '300' too large"),
    (["10.0.0.1-3x"], "Virtual server group range '10.0.0.1-3x' has extra characters at "
                      "end 'x'"),
    (["10.0.0.1/24"], "Address mask bits not empty - 10.0.0.1/24 - skipping"),
    (["10.0.0.0/33"], "Invalid netmask - 10.0.0.0/33 - skipping"),
    (["10.0.1.0-10.0.0.1"], "Address range end is less than address range start - "
                            "10.0.1.0-10.0.0.1 - skipping"),
    (["10.0.0.x", "80"], "Invalid virtual server group IP address 10.0.0.x /port/80 - skipping"),
    (["fwmark", "1", "ipx"], "(): fwmark '1' family ipx unknown - ignoring"),
])
def test_virtual_server_group_errors(words: list[str], message: str) -> None:
    got, seen = read(VsgEntry(), words)
    assert got is Invalid
    assert seen[-1][1] == message


# -- checkers ----------------------------------------------------------------------

def test_checker_common() -> None:
    result = rs("TCP_CHECK {\nconnect_ip 10.0.0.3\nconnect_port 0\nbind_if "
                "averyveryverylongname\nretry 0\nconnect_timeout 0\nalpha maybe\n}")
    (check,) = one_rs(result).blocks("TCP_CHECK")
    assert check.values == {"connect_ip": "10.0.0.3", "retry": 0}
    assert msgs(result) == [
        (Level.INVALID_NUMBER, "number '0' outside range [1, 65535]"),
        (Level.GENERAL_ERROR, "Invalid checker connect_port '0'"),
        (Level.GENERAL_ERROR, "Interface name averyveryverylongname is too long - ignoring"),
        (Level.INVALID_NUMBER, "number '0' outside range [0.000001, 4294.967295]"),
        (Level.GENERAL_ERROR, "connect_timeout 0 invalid - ignoring"),
        (Level.GENERAL_ERROR, "Invalid alpha parameter maybe"),
    ]


def test_misc_check_has_no_connection_options() -> None:
    result = rs('MISC_CHECK {\nmisc_path "/bin/check arg"\nuser nobody nogroup\n'
                "misc_timeout 5000\nconnect_port 80\n}")
    (check,) = one_rs(result).blocks("MISC_CHECK")
    assert check.values["misc_path"] == ("/bin/check arg",)
    assert check.values["user"] == ("nobody", "nogroup")
    assert check.get("retry") == 0
    assert msgs(result) == [
        (Level.INVALID_NUMBER, "number '5000' outside range [0, 4294]"),
        (Level.GENERAL_ERROR, "Invalid misc_timeout value '5000'"),
        (Level.UNKNOWN_KEYWORD, "Unknown keyword 'connect_port'"),
    ]


def test_http_get() -> None:
    result = rs("HTTP_GET {\nnb_get_retry 3\nhttp_protocol 1.0c\nurl {\npath /\n"
                "digest 9b3a0c85a887a256d6939da88aabd8cd\nstatus_code 200-299 404 99 300-200\n"
                "}\nurl {\npath /x\n}\n}")
    (check,) = one_rs(result).blocks("HTTP_GET")
    assert check.values["retry"] == 3 and check.values["http_protocol"] == "1.0C"
    first, second = check.blocks("url")
    assert first.values["status_code"] == ((200, 299), (404, 404))
    assert second.get("status_code") == ((200, 299),)
    assert check.get("delay_before_retry") == 3.0
    assert msgs(result) == [
        (Level.GENERAL_ERROR, "nb_get_retry is deprecated - please use 'retry'"),
        (Level.GENERAL_ERROR, "Invalid HTTP_GET status code '99'"),
        (Level.GENERAL_ERROR, "Invalid HTTP_GET status code '300-200'"),
    ]


def test_ssl_get_later_keywords() -> None:
    result = rs("SSL_GET {\ntls_compliant\nsni_name\nurl {\npath /\ntls_compliant off\n}\n}")
    (check,) = one_rs(result).blocks("SSL_GET")
    assert check.values["tls_compliant"] is True and check.values["sni_name"] == ""
    assert check.blocks("url")[0].values["tls_compliant"] is False
    assert not msgs(result)
    result = rs("HTTP_GET {\ntls_compliant\n}")
    assert msgs(result) == [(Level.UNKNOWN_KEYWORD, "Unknown keyword 'tls_compliant'")]


def test_digest_and_status_codes() -> None:
    assert read(Digest(), ["abc"]) == (
        Invalid, [(Level.GENERAL_ERROR, "digest 'abc' character length should be 32 rather "
                                        "than 3")])
    got, seen = read(Digest(), ["9b3a0c85a887a256d6939da88aabd8cg"])
    assert got is Invalid and seen == [(
        Level.GENERAL_ERROR, "Unable to interpret hex digit in "
        "'9b3a0c85a887a256d6939da88aabd8cg' at offset 30/31")]
    codes = StatusCodes()
    value = codes.parse(["100", "200-299", "599"], Collect().ctx)
    assert codes.parse(codes.render(value), Collect().ctx) == value


def test_smtp_dns_udp() -> None:
    result = rs("SMTP_CHECK {\nhelo_name me\nhost {\nconnect_ip 10.0.0.4\n}\n}\n"
                "DNS_CHECK {\ntype aaaa\nname a.example.\n}\n"
                "DNS_CHECK {\nname example..com\ntype PTR\n}\n"
                "UDP_CHECK {\npayload 01 2 3a4\nrequire_reply 0x x1\nmax_reply_length 70000\n}")
    node = one_rs(result)
    (smtp,) = node.blocks("SMTP_CHECK")
    assert smtp.blocks("host")[0].values == {"connect_ip": "10.0.0.4"}
    dns1, dns2 = node.blocks("DNS_CHECK")
    assert dns1.values == {"type": "AAAA"} and dns1.get("retry") == 3
    assert dns2.values == {} and dns2.get("type") == "SOA"
    (udp,) = node.blocks("UDP_CHECK")
    assert udp.values == {"payload": "01023a04", "require_reply": "0xx1"}
    assert msgs(result) == [
        (Level.GENERAL_ERROR, "DNS_CHECK name 'a.example.' has empty label - ignoring"),
        (Level.GENERAL_ERROR, "DNS_CHECK name 'example..com' has empty label - ignoring"),
        (Level.GENERAL_ERROR, "Unknown DNS check type PTR - ignoring"),
        (Level.INVALID_NUMBER, "number '70000' outside range [0, 65535]"),
        (Level.GENERAL_ERROR, "UDP_CHECK max length 70000 not valid - must be between 0 & 65535"),
    ]


def test_hex_strings() -> None:
    assert read_hex("0a 1 ff", False) == "0a01ff"
    assert read_hex("0x", False) is None
    assert read_hex("xX 1x", True) == "xx1x"
    assert read(HexString(), ["zz"]) == (
        Invalid, [(Level.GENERAL_ERROR, "Invalid hex string for UDP_CHECK payload")])
    assert read(HexString(), []) == (
        Invalid, [(Level.GENERAL_ERROR, "UDP_CHECK payload requires a payload")])
    arg = HexString("reply", wildcard=True, optional=True)
    assert arg.parse(arg.render("0xx1"), Collect().ctx) == "0xx1"
    assert arg.parse([], Collect().ctx) == ""


def test_file_and_bfd_checks() -> None:
    result = rs("FILE_CHECK {\ntrack_file TF\nweight -5 reverse\n}\n"
                "FILE_CHECK {\ntrack_file TF\nweight 5 sideways\n}\n"
                "BFD_CHECK {\nname a b\nalpha\n}")
    first, second = one_rs(result).blocks("FILE_CHECK")
    assert first.values["weight"] == (-5, True) and "weight" not in second.values
    assert msgs(result) == [
        (Level.GENERAL_ERROR, "unknown track file weight option sideways - ignoring"),
        (Level.GENERAL_ERROR,
         "(10.0.0.2 80) BFD_CHECK - No or too many names specified - skipping checker"),
    ]


# -- SSL and BFD ---------------------------------------------------------------------

def test_ssl() -> None:
    result = parse("t.conf", text="SSL {\npassword secret\nca /etc/ca.pem\nkey\n}\n")
    (ssl,) = [result.root.values["SSL"]]
    assert ssl.values == {"password": "secret", "ca": "/etc/ca.pem"}
    assert msgs(result) == [(Level.GENERAL_ERROR, "SSL keyfile missing")]


def test_bfd_instance() -> None:
    text = ("bfd_instance B1 {\nneighbour_ip 192.0.2.1\nmin_rx 5.5\nmin_tx 20000\n"
            "idle_tx 999\nhoplimit 64\nmax_hops -1\nmultihop\nweight 300 reverse\n}\n")
    result = parse("t.conf", text=text)
    (bfd,) = result.root.blocks("bfd_instance")
    assert bfd.values == {"neighbor_ip": "192.0.2.1", "min_rx": 5.5, "min_tx": 20000.0,
                          "ttl": 64, "max_hops": -1, "multihop": True, "weight": (0, True)}
    assert bfd.get("idle_tx") == 1000.0 and bfd.get("multiplier") == 5
    levels = msgs(result)
    assert (Level.INVALID_NUMBER, "number '999' outside range [1000.000, 4294967.000]") in levels
    assert (Level.INVALID_NUMBER, "number '300' outside range [-253, 253]") in levels
    assert any(m.endswith("min_tx value 20000 is larger than max sensible (10000)")
               and lv is Level.NOTE for lv, m in levels)
    result = parse("t.conf", text="bfd_instance " + "n" * 32 + " {\n}\n")
    assert msgs(result)[0][1].endswith("name too long (maximum length is 31 characters) - "
                                       "ignoring")


def test_unsigned_reading_is_strtoul_like() -> None:
    arg = UInt(0, 100, "bad {word}")
    assert read(arg, ["+7"]) == (7, [])
    assert read(arg, ["1_0"])[1][0] == (Level.INVALID_NUMBER, "invalid number '1_0'")
    assert read(arg, ["99999999999"])[1][0] == (
        Level.INVALID_NUMBER, "number '99999999999' outside unsigned integer range")
