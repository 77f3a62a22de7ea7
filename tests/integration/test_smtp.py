"""smtp_alert over real SMTP: aiosmtpd servers on loopback, and keepalived 2.2.7 beside us.

The loopback tests need no root: the SMTP server is an aiosmtpd Controller on
127.0.0.1 in this process.  The last test runs keepalived 2.2.7 and our
Mailer in one lab namespace against one aiosmtpd server there, and compares
the two mails byte for byte except the Date header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from keepalived_py.config import load
from keepalived_py.host.mail import (
    Mailer,
    SmtpSettings,
    VrrpAlerts,
    checker_alert_due,
    checker_body,
    compose_message,
    format_service,
    real_server_alert,
)

from tests.integration.agents import KEEPALIVED, wait_for
from tests.integration.conftest import LabFactory

DATE = "Mon, 01 Mar 2021 09:44:08 +0000"
LOGGER = "keepalived_py.smtp"


class Recorder:
    """An aiosmtpd handler that keeps every mail and can refuse recipients."""

    def __init__(self, refuse_rcpts: int = 0) -> None:
        self.mails: list[dict[str, Any]] = []
        self.refuse_rcpts = refuse_rcpts

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        if self.refuse_rcpts:
            self.refuse_rcpts -= 1
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append({"helo": session.host_name, "mail_from": envelope.mail_from,
                           "rcpt_tos": list(envelope.rcpt_tos),
                           "content": envelope.original_content})
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve() -> Iterator[Callable[[Recorder], int]]:
    """Starts aiosmtpd servers on 127.0.0.1 (``serve(recorder)`` -> port), stops them after."""
    controllers: list[Controller] = []

    def start(recorder: Recorder) -> int:
        controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        return controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(serve: Callable[[Recorder], int], recorder: Recorder) -> int:
    return serve(recorder)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def settings_for(tmp_path: Path, port: int, timeout: int = 5) -> SmtpSettings:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""
global_defs {{
  notification_email {{
    ops@example.com
    noc@example.com
  }}
  notification_email_from keepalived@lb1.example.com
  smtp_server 127.0.0.1 {port}
  smtp_helo_name lb1.example.com
  smtp_connect_timeout {timeout}
  router_id LB_A
}}
""")
    return SmtpSettings.from_config(load(str(conf), interfaces={"eth0"}).root)


def smtp_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= logging.INFO]


def test_vrrp_and_checker_alerts_arrive_in_order(tmp_path: Path, server: int,
                                                 recorder: Recorder,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path, server)
    vi = VrrpAlerts("VI_1", enabled=settings.vrrp_alert(True))
    rs = format_service("198.18.0.2", 80, "tcp")
    vs = format_service("198.18.0.1", 80, "tcp")
    # a real server without its own smtp_alert mails by default
    assert checker_alert_due(settings.real_server_alert(None), True, True,
                             settings.no_checker_emails)
    mails = [vi.on_state("BACKUP", settings), vi.on_state("MASTER", settings),
             real_server_alert(settings.router_id, rs, vs, False,
                               checker_body("TCP_CHECK", False))]

    async def run() -> None:
        mailer = Mailer(settings, date=lambda: DATE)
        for mail in mails:
            assert mail is not None
            mailer.send(*mail)
        await mailer.close()
        assert (mailer.sent, mailer.failed, mailer.pending) == (3, 0, 0)

    with caplog.at_level(logging.DEBUG, LOGGER):
        asyncio.run(run())
    assert smtp_lines(caplog) == []
    assert [r.getMessage() for r in caplog.records].count("SMTP alert successfully sent.") == 3

    got = recorder.mails
    assert [m["content"] for m in got] == [
        compose_message(settings, mail, DATE).encode() for mail in mails if mail]
    for m in got:
        assert m["helo"] == "lb1.example.com"
        assert m["mail_from"] == "keepalived@lb1.example.com"
        assert m["rcpt_tos"] == ["ops@example.com", "noc@example.com"]
    master = message_from_bytes(got[1]["content"])
    assert master.items() == [
        ("Date", DATE), ("From", "keepalived@lb1.example.com"),
        ("Subject", "[LB_A] VRRP Instance VI_1 - Entering MASTER state"),
        ("X-Mailer", "Keepalived"), ("To", "ops@example.com, noc@example.com")]
    assert master.get_payload() == "=> VRRP Instance is now owning VRRP VIPs <=\r\n\r\n"
    checker = message_from_bytes(got[2]["content"])
    assert checker["Subject"] == ("[LB_A] Realserver [198.18.0.2]:tcp:80 of virtual server"
                                  " [198.18.0.1]:tcp:80 - DOWN")
    assert checker.get_payload() == "=> TCP CHECK failed on service <=\r\n\r\n"


def test_refused_recipient_is_one_log_line(tmp_path: Path, serve: Callable[[Recorder], int],
                                           caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(refuse_rcpts=1)
    server = serve(recorder)
    settings = settings_for(tmp_path, server)

    async def run() -> Mailer:
        mailer = Mailer(settings, date=lambda: DATE)
        mailer.send("[LB_A] first", "refused")
        mailer.send("[LB_A] second", "delivered")
        await mailer.close()
        return mailer

    with caplog.at_level(logging.INFO, LOGGER):
        mailer = asyncio.run(run())
    assert smtp_lines(caplog) == [
        f"Error processing RCPT cmd on SMTP server [127.0.0.1]:{server}."
        " SMTP status code = 550"]
    assert (mailer.sent, mailer.failed) == (1, 1)
    # the first mail never reached DATA; the next one went through whole
    assert [message_from_bytes(m["content"])["Subject"] for m in recorder.mails] == [
        "[LB_A] second"]


def test_nobody_listening(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = settings_for(tmp_path, port)

    async def run() -> Mailer:
        mailer = Mailer(settings)
        mailer.send("[LB_A] one", "x")
        mailer.send("[LB_A] two", "y")
        await mailer.close()
        return mailer

    with caplog.at_level(logging.INFO, LOGGER):
        mailer = asyncio.run(run())
    assert smtp_lines(caplog) == [f"SMTP connection ERROR to [127.0.0.1]:{port}."] * 2
    assert (mailer.sent, mailer.failed) == (0, 2)


def test_silent_server_times_out(tmp_path: Path, silent_port: int,
                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path, silent_port, timeout=1)

    async def run() -> float:
        mailer = Mailer(settings)
        start = time.monotonic()
        mailer.send("[LB_A] one", "x")
        await mailer.close()
        return time.monotonic() - start

    with caplog.at_level(logging.INFO, LOGGER):
        took = asyncio.run(run())
    # connected (the kernel accepted), then no 220 within smtp_connect_timeout
    assert smtp_lines(caplog) == [
        f"Timeout reading data to remote SMTP server [127.0.0.1]:{silent_port}."]
    assert 0.9 < took < 5


def test_close_delivers_what_is_queued(tmp_path: Path, server: int, recorder: Recorder) -> None:
    settings = settings_for(tmp_path, server)

    async def run() -> None:
        mailer = Mailer(settings)
        mailer.send("[LB_A] queued", "before close")
        assert mailer.pending == 1              # nothing has run yet
        await mailer.close()
        mailer.send("[LB_A] after", "close")    # dropped: the mailer is closed
        await asyncio.sleep(0.2)

    asyncio.run(run())
    assert [message_from_bytes(m["content"])["Subject"] for m in recorder.mails] == [
        "[LB_A] queued"]


def test_reconfigure_follows_the_new_server(tmp_path: Path,
                                            serve: Callable[[Recorder], int]) -> None:
    first, second = Recorder(), Recorder()
    old = settings_for(tmp_path, serve(first))
    new = settings_for(tmp_path, serve(second))

    async def run() -> None:
        mailer = Mailer(old)
        mailer.send("[LB_A] before", "reload")
        while mailer.pending:
            await asyncio.sleep(0.01)
        mailer.reconfigure(new)
        mailer.send("[LB_A] after", "reload")
        await mailer.close()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert [message_from_bytes(m["content"])["Subject"] for m in first.mails] == [
        "[LB_A] before"]
    assert [message_from_bytes(m["content"])["Subject"] for m in second.mails] == [
        "[LB_A] after"]


def test_send_returns_at_once_and_close_is_bounded(tmp_path: Path, silent_port: int,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path, silent_port, timeout=30)

    async def run() -> tuple[float, float]:
        mailer = Mailer(settings)
        start = time.monotonic()
        for n in range(50):
            mailer.send(f"[LB_A] {n}", "x")
        sending = time.monotonic() - start
        await asyncio.sleep(0.1)                # the sender is now stuck on the greeting
        start = time.monotonic()
        await mailer.close(timeout=0.5)
        return sending, time.monotonic() - start

    with caplog.at_level(logging.INFO, LOGGER):
        sending, closing = asyncio.run(run())
    assert sending < 0.05
    assert 0.4 < closing < 2
    assert smtp_lines(caplog) == ["SMTP: 50 alert(s) not sent at shutdown"]


# -- keepalived 2.2.7 against the same server ------------------------------------------

SINK = r"""
import json, signal, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        record = {"helo": session.host_name, "mail_from": envelope.mail_from,
                  "rcpt_tos": envelope.rcpt_tos,
                  "content": envelope.original_content.decode("latin-1")}
        with open(sys.argv[2], "a") as out:
            out.write(json.dumps(record) + "\n")
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
"""

# our side of the comparison, from the same config file, in the same namespace
OURS = r"""
import asyncio, sys
from keepalived_py.config import load
from keepalived_py.host.mail import Mailer, SmtpSettings, VrrpAlerts

async def main(path):
    root = load(path, interfaces={"eth0"}).root
    settings = SmtpSettings.from_config(root)
    (node,) = root.blocks("vrrp_instance")
    instance = VrrpAlerts(node.head, settings.vrrp_alert(node.get("smtp_alert")))
    mailer = Mailer(settings)
    mailer.send(*instance.on_state("MASTER", settings))
    await mailer.close()
    sys.exit(0 if mailer.sent == 1 else 1)

asyncio.run(main(sys.argv[1]))
"""

# router_id, sender and HELO name left to the defaults, so that those are compared too
KEEPALIVED_CONF = """
global_defs {
  notification_email {
    ops@example.com
    noc@example.com
  }
  smtp_server 127.0.0.1 2525
  smtp_connect_timeout 5
}
vrrp_instance VI_1 {
  state MASTER
  interface eth0
  virtual_router_id 51
  priority 255
  advert_int 1
  smtp_alert
  virtual_ipaddress {
    198.18.0.100/24
  }
}
"""

_DATE_LINE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4}"
                        rb" \d\d:\d\d:\d\d [+-]\d{4}\r\n")


def test_same_mail_as_keepalived(lab_factory: LabFactory, tmp_path: Path) -> None:
    if not Path(KEEPALIVED).exists():
        pytest.skip("keepalived 2.2.7 is not installed")
    host = lab_factory(["a"]).host("a")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF)
    received = tmp_path / "received.jsonl"
    sink = host.spawn([sys.executable, "-c", SINK, "2525", str(received)],
                      stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    assert select.select([sink.stdout], [], [], 30)[0], "the SMTP sink did not start"
    assert sink.stdout.readline() == "ready\n"

    def mails() -> list[dict[str, Any]]:
        text = received.read_text() if received.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    with (tmp_path / "keepalived.log").open("w") as log:
        host.spawn([KEEPALIVED, "-n", "-l", "-D", "-f", str(conf),
                    "-p", str(tmp_path / "ka.pid"), "-r", str(tmp_path / "vrrp.pid"),
                    "-c", str(tmp_path / "chk.pid"), "-b", str(tmp_path / "bfd.pid")],
                   stdout=log, stderr=subprocess.STDOUT,
                   env={**os.environ, "TMPDIR": str(tmp_path)})
    wait_for("keepalived's mail", lambda: len(mails()) == 1, timeout=30)
    host.run([sys.executable, "-c", OURS, str(conf)])
    theirs, ours = mails()

    assert ours["helo"] == theirs["helo"]
    assert ours["mail_from"] == theirs["mail_from"]
    assert ours["rcpt_tos"] == theirs["rcpt_tos"] == ["ops@example.com", "noc@example.com"]
    their_content = theirs["content"].encode("latin-1")
    our_content = ours["content"].encode("latin-1")
    assert b"VRRP Instance VI_1 - Entering MASTER state\r\n" in their_content
    assert _DATE_LINE.match(their_content) and _DATE_LINE.match(our_content)
    assert _DATE_LINE.sub(b"", our_content) == _DATE_LINE.sub(b"", their_content)
