"""smtp_alert: settings and defaults, which objects mail, and the exact text.

The expected strings are written out from keepalived 2.2.7's sources, not from
our code: the header block is smtp.h's SMTP_HEADERS_CMD ("Date: %s\\r\\nFrom:
%s\\r\\nSubject: %s\\r\\nX-Mailer: Keepalived\\r\\nTo: %s\\r\\n\\r\\n"), then
SMTP_BODY_CMD ("%s\\r\\n") and SMTP_SEND_CMD ("\\r\\n.\\r\\n", whose leading CRLF
ends up in the message); subjects are smtp.c smtp_alert's snprintf formats;
bodies are the literals of vrrp_notify.c, check_*.c and ipwrapper.c.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from keepalived_py.config import load
from keepalived_py.host import mail as smtp
from keepalived_py.host.mail import (
    Alert,
    SmtpSettings,
    VrrpAlerts,
    checker_alert_due,
    checker_body,
    compose_message,
    format_service,
    format_virtual_server,
    quorum_body,
    real_server_alert,
    removal_body,
    rfc822_date,
    to_header,
    virtual_server_alert,
    vrrp_group_alert,
    vrrp_instance_alert,
)


def settings_of(tmp_path: Path, global_defs: str, host: str | None = "lb1.example.net",
                user: str | None = "root") -> SmtpSettings:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"global_defs {{\n{global_defs}\n}}\n")
    root = load(str(conf), interfaces={"eth0"}).root
    return SmtpSettings.from_config(root, host_name=lambda: host, user_name=lambda: user)


# -- settings -------------------------------------------------------------------------

def test_everything_configured(tmp_path: Path) -> None:
    s = settings_of(tmp_path, """
        notification_email {
            ops@example.com
            noc@example.com other@example.com
        }
        notification_email_from keepalived@example.com
        smtp_server 198.18.0.25 2525
        smtp_helo_name mx-client
        smtp_connect_timeout 7
        router_id LB_A
        smtp_alert
        smtp_alert_vrrp off
        smtp_alert_checker yes
        no_email_faults
        no_checker_emails
    """, host=None)
    assert s == SmtpSettings(
        server=("198.18.0.25", 2525), helo_name="mx-client", connect_timeout=7.0,
        email_from="keepalived@example.com",
        # read_value_block: every word of the block is one address
        email_to=("ops@example.com", "noc@example.com", "other@example.com"),
        router_id="LB_A", smtp_alert=True, smtp_alert_vrrp=False, smtp_alert_checker=True,
        no_email_faults=True, no_checker_emails=True)
    assert s.enabled


def test_defaults_come_from_the_host_name(tmp_path: Path) -> None:
    # global_data.c init_global_data: router_id = local name; with an smtp_server,
    # smtp_helo_name = local name and email_from = "<user>@<local name>";
    # global_parser.c: port "25" (SMTP_PORT_STR); global_data.h: 30 s timeout.
    s = settings_of(tmp_path, "notification_email {\n a@example.com\n}\n"
                              "smtp_server mail.example.com")
    assert s.server == ("mail.example.com", 25)
    assert s.router_id == "lb1.example.net"
    assert s.helo_name == "lb1.example.net"
    assert s.email_from == "root@lb1.example.net"
    assert s.connect_timeout == 30.0
    assert (s.smtp_alert, s.smtp_alert_vrrp, s.smtp_alert_checker) == (None, None, None)


def test_unknown_host_name(tmp_path: Path) -> None:
    # get_local_name failing gives "[unknown]": router_id takes it, the HELO
    # name and the sender are left unset (helo_cmd then says "localhost").
    s = settings_of(tmp_path, "smtp_server 198.18.0.25", host=None)
    assert s.router_id == "[unknown]"
    assert s.helo_name == "localhost"
    assert s.email_from is None


def test_host_name_is_looked_up_only_when_needed(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("global_defs {\n router_id R\n smtp_server 198.18.0.25\n"
                    " smtp_helo_name h\n notification_email_from f@x\n}\n")
    root = load(str(conf), interfaces={"eth0"}).root

    def no_lookup() -> str:
        raise AssertionError("looked up")

    s = SmtpSettings.from_config(root, host_name=no_lookup, user_name=no_lookup)
    assert (s.router_id, s.helo_name, s.email_from) == ("R", "h", "f@x")


def test_no_server_or_no_recipients_sends_nothing(tmp_path: Path) -> None:
    # smtp_alert: "if (list_empty(&global_data->email) || !smtp_server.ss_family) return"
    assert not settings_of(tmp_path, "notification_email {\n a@x\n}").enabled
    assert not settings_of(tmp_path, "smtp_server 198.18.0.25").enabled
    assert not SmtpSettings.from_config(None, host_name=lambda: "h").enabled
    # without smtp_server the HELO/sender defaults are not filled in
    s = settings_of(tmp_path, "notification_email {\n a@x\n}")
    assert (s.email_from, s.helo_name) == (None, "localhost")


def test_connect_timeout_zero_becomes_one(tmp_path: Path) -> None:
    s = settings_of(tmp_path, "smtp_server 198.18.0.25\nsmtp_connect_timeout 0")
    assert s.connect_timeout == 1.0


# -- which objects mail ------------------------------------------------------------------

# (global smtp_alert, smtp_alert_vrrp / smtp_alert_checker, own keyword) -> resolved
CASCADE = [
    (None, None, None), (True, None, None), (False, None, None),
    (None, True, None), (None, False, None), (True, False, None), (False, True, None),
    (True, True, False), (False, False, True), (None, None, True), (None, None, False),
]


@pytest.mark.parametrize(("general", "specific", "own"), CASCADE)
def test_vrrp_and_checker_cascades(general: bool | None, specific: bool | None,
                                   own: bool | None) -> None:
    # vrrp.c / check_data.c: own if set, else the specific global, else smtp_alert,
    # else false -- except real servers, which default to true.
    def expected(default: bool) -> bool:
        for value in (own, specific, general):
            if value is not None:
                return value
        return default

    vrrp = SmtpSettings(smtp_alert=general, smtp_alert_vrrp=specific)
    check = SmtpSettings(smtp_alert=general, smtp_alert_checker=specific)
    assert vrrp.vrrp_alert(own) is expected(False)
    assert check.virtual_server_alert(own) is expected(False)
    assert check.real_server_alert(own) is expected(True)
    # the other family's global never counts
    assert SmtpSettings(smtp_alert_checker=True).vrrp_alert(None) is False
    assert SmtpSettings(smtp_alert_vrrp=False).real_server_alert(None) is True


def test_vrrp_alert_from_parsed_blocks(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("""
global_defs {
  smtp_alert_vrrp
}
vrrp_sync_group G1 {
  group { VI_1 VI_2 }
  smtp_alert off
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 1
  virtual_ipaddress { 198.18.0.100 }
}
vrrp_instance VI_2 {
  interface eth0
  virtual_router_id 2
  smtp_alert no
  virtual_ipaddress { 198.18.0.101 }
}
""")
    root = load(str(conf), interfaces={"eth0"}).root
    s = SmtpSettings.from_config(root, host_name=lambda: "h")
    vi1, vi2 = root.blocks("vrrp_instance")
    (group,) = root.blocks("vrrp_sync_group")
    assert s.vrrp_alert(vi1.get("smtp_alert")) is True
    assert s.vrrp_alert(vi2.get("smtp_alert")) is False
    assert s.vrrp_alert(group.get("smtp_alert")) is False


def test_instance_mails_each_new_state_once() -> None:
    # vrrp_notify.c vrrp_smtp_notifier: last_email_state starts at INIT and
    # only a state with a text is remembered.
    s = SmtpSettings(router_id="R")
    vi = VrrpAlerts("VI_1", enabled=True)
    got = [vi.on_state(state, s) for state in
           ("BACKUP", "BACKUP", "MASTER", "INIT", "MASTER", "FAULT", "BACKUP", "STOP")]
    assert [a.subject if a else None for a in got] == [
        "[R] VRRP Instance VI_1 - Entering BACKUP state", None,
        "[R] VRRP Instance VI_1 - Entering MASTER state", None, None,
        "[R] VRRP Instance VI_1 - Entering FAULT state",
        "[R] VRRP Instance VI_1 - Entering BACKUP state",
        "[R] VRRP Instance VI_1 - Stopping"]


def test_no_email_faults_leaves_the_last_state() -> None:
    # The FAULT is neither mailed nor remembered: back to MASTER is no news.
    s = SmtpSettings(router_id="R", no_email_faults=True)
    vi = VrrpAlerts("VI_1", enabled=True)
    assert vi.on_state("MASTER", s) is not None
    assert vi.on_state("FAULT", s) is None
    assert vi.on_state("MASTER", s) is None
    assert vi.on_state("BACKUP", s) is not None
    assert vi.last_state == "BACKUP"


def test_disabled_instance_never_mails() -> None:
    vi = VrrpAlerts("VI_1", enabled=False)
    assert all(vi.on_state(st, SmtpSettings()) is None for st in ("MASTER", "BACKUP", "STOP"))


def test_group_states() -> None:
    s = SmtpSettings(router_id="R")
    g = VrrpAlerts("G1", enabled=True, group=True)
    assert g.on_state("DELETED", s) is None     # vrrp_sync_smtp_notifier has no DELETED text
    assert g.on_state("MASTER", s) == Alert(
        "[R] VRRP Group G1 - Entering MASTER state",
        "=> All VRRP group instances are now in MASTER state <=")


def test_checker_decision() -> None:
    # check_tcp.c: rs->smtp_alert && checker changed &&
    #              (rs_was_alive != rs->alive || !no_checker_emails)
    assert checker_alert_due(True, True, True, True)
    assert checker_alert_due(True, True, False, False)
    assert not checker_alert_due(True, True, False, True)
    assert not checker_alert_due(True, False, True, False)
    assert not checker_alert_due(False, True, True, False)


# -- the text ---------------------------------------------------------------------------

VRRP_TEXTS = [
    ("MASTER", "Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    ("BACKUP", "Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    ("FAULT", "Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    ("STOP", "Stopping", "=> VRRP Instance stopping <="),
    ("DELETED", "Deleted", "=> VRRP Deleted at reload <="),
]


@pytest.mark.parametrize(("state", "what", "body"), VRRP_TEXTS)
def test_instance_texts(state: str, what: str, body: str) -> None:
    # "[%s] VRRP Instance %s - %s" with router_id, iname, subject
    assert vrrp_instance_alert("LB_A", "VI_1", state) == Alert(
        f"[LB_A] VRRP Instance VI_1 - {what}", body)


@pytest.mark.parametrize(("state", "what", "body"), [
    ("MASTER", "Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
    ("BACKUP", "Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
    ("FAULT", "Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    ("STOP", "Stopping", "=> All VRRP group instances are now stopping <="),
])
def test_group_texts(state: str, what: str, body: str) -> None:
    assert vrrp_group_alert("LB_A", "G1", state) == Alert(f"[LB_A] VRRP Group G1 - {what}", body)
    assert vrrp_instance_alert("LB_A", "VI_1", "INIT") is None


def test_service_formats() -> None:
    # inet_sockaddrtotrio: "[%s]:%s:%d"; format_vs: "[%s]:%d" for a group, "FWM %u"
    assert format_service("198.18.0.2", 80, "TCP") == "[198.18.0.2]:tcp:80"
    assert format_service("2001:db8:0::2", 53, "udp") == "[2001:db8::2]:udp:53"
    assert format_service("198.18.0.2", 0, None) == "[198.18.0.2]:none:0"
    assert format_service("198.18.0.2", 9, "sctp") == "[198.18.0.2]:sctp:9"
    assert format_virtual_server(fwmark=7) == "FWM 7"
    assert format_virtual_server(group="web", port=0) == "[web]:0"
    assert format_virtual_server("198.18.0.1", 443, "tcp") == "[198.18.0.1]:tcp:443"


def test_real_server_subjects() -> None:
    rs, vs = format_service("198.18.0.2", 80, "tcp"), format_service("198.18.0.1", 80, "tcp")
    # "[%s] Realserver %s of virtual server %s - %s", rs->alive ? "UP" : "DOWN"
    assert real_server_alert("R", rs, vs, False, checker_body("TCP_CHECK", False)) == Alert(
        "[R] Realserver [198.18.0.2]:tcp:80 of virtual server [198.18.0.1]:tcp:80 - DOWN",
        "=> TCP CHECK failed on service <=")
    assert real_server_alert("R", rs, vs, True, removal_body(False)).body == "=> Removing <="
    assert removal_body(True) == "=> Shutting down <="


@pytest.mark.parametrize(("kind", "up", "detail", "body"), [
    ("TCP_CHECK", True, None, "=> TCP CHECK succeed on service <="),
    ("UDP_CHECK", False, None, "=> UDP CHECK failed on service <="),
    ("PING_CHECK", True, None, "=> ICMP CHECK succeed on service <="),
    ("PING_CHECK", False, None, "=> ICMP CHECK failed on service <="),
    ("DNS_CHECK", True, None, "=> DNS_CHECK: succeed on service <="),
    ("DNS_CHECK", False, None, "=> DNS_CHECK: failed on service <="),
    ("HTTP_GET", True, None, "=> CHECK succeed on service <="),
    ("SSL_GET", False, None, "=> CHECK failed on service : HTTP request failed <="),
    ("SMTP_CHECK", False, None, "=> CHECK failed on service <="),
    ("SMTP_CHECK", False, "Read timeout from server [198.18.0.2]:tcp:25",
     "=> CHECK failed on service : Read timeout from server [198.18.0.2]:tcp:25 <="),
    ("MISC_CHECK", False, "timed out", "=> MISC CHECK timed out on service <="),
    ("MISC_CHECK", True, None, "=> MISC CHECK succeeded on service <="),
    ("BFD_CHECK", False, "bfd_rs1", "=> BFD CHECK bfd_rs1 failed on service <="),
    ("BFD_CHECK", True, "bfd_rs1", "=> BFD CHECK bfd_rs1 succeeded on service <="),
])
def test_checker_bodies(kind: str, up: bool, detail: str | None, body: str) -> None:
    assert checker_body(kind, up, detail) == body


def test_virtual_server_quorum() -> None:
    # ipwrapper.c do_vs_notifies: "=> %s %u+%u=%ld <= %ld <=" with quorum,
    # hysteresis, quorum - hysteresis and the live weight sum
    vs = format_service("198.18.0.1", 80, "tcp")
    assert virtual_server_alert("R", vs, False, quorum_body(False, 3, 1, 1)) == Alert(
        "[R] Virtualserver [198.18.0.1]:tcp:80 - DOWN", "=> Lost quorum 3+1=2 <= 1 <=")
    assert quorum_body(True, 2, 0, 5) == "=> Gained quorum 2+0=2 <= 5 <="
    assert quorum_body(True, 1, 0, 1, starting=True) == \
        "=> Starting with quorum up 1+0=1 <= 1 <="
    assert quorum_body(False, 1, 0, 0, starting=True) == \
        "=> Starting with quorum down 1+0=1 <= 0 <="
    assert quorum_body(False, 1, 0, 0, stopping=True) == "=> Shutting down <="


def test_subject_and_body_are_cut_to_keepalived_buffers() -> None:
    # MAX_HEADERS_LENGTH 256 / MAX_BODY_LENGTH 512, both NUL-terminated
    a = smtp.alert("R", "x" * 400, "y" * 600)
    assert a.subject == ("[R] " + "x" * 400)[:255]
    assert a.body == "y" * 511


def test_to_header() -> None:
    assert to_header(["a@x", "b@y"]) == "a@x, b@y"
    assert to_header(["only@x"]) == "only@x"
    # build_to_header_rcpt_addrs: 1023 bytes; the address that does not fit is
    # dropped but its ", " was already written
    first = "a" * 1000
    assert to_header([first, "b" * 30, "c"]) == first + ", "


def test_the_whole_message() -> None:
    s = SmtpSettings(server=("198.18.0.25", 25), email_from="ka@example.com",
                     email_to=("ops@example.com", "noc@example.com"), router_id="LB_A")
    mail = vrrp_instance_alert("LB_A", "VI_1", "MASTER")
    assert mail is not None
    assert compose_message(s, mail, "Mon, 01 Mar 2021 09:44:08 +0000") == (
        "Date: Mon, 01 Mar 2021 09:44:08 +0000\r\n"
        "From: ka@example.com\r\n"
        "Subject: [LB_A] VRRP Instance VI_1 - Entering MASTER state\r\n"
        "X-Mailer: Keepalived\r\n"
        "To: ops@example.com, noc@example.com\r\n"
        "\r\n"
        "=> VRRP Instance is now owning VRRP VIPs <=\r\n"
        "\r\n")
    # an unset sender prints as glibc prints a NULL %s
    assert "From: (null)\r\n" in compose_message(SmtpSettings(), mail, "d")


@pytest.fixture
def utc_plus_one(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "XYZ-1")      # POSIX: one hour east of UTC, no tzdata needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_date_format(utc_plus_one: None) -> None:
    # body_cmd: localtime_r + strftime "%a, %d %b %Y %H:%M:%S %z" (C locale)
    assert rfc822_date(datetime(2021, 3, 5, 8, 4, 8, tzinfo=UTC)) == \
        "Fri, 05 Mar 2021 09:04:08 +0100"
    assert rfc822_date(datetime(2021, 12, 31, 23, 30, 0, tzinfo=UTC)) == \
        "Sat, 01 Jan 2022 00:30:00 +0100"
    assert rfc822_date().endswith(" +0100")
