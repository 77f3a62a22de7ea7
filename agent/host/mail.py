"""E-mail alerts (``smtp_alert``) as keepalived 2.2.7 sends them.

The pure part says *whether* a VRRP instance, a sync group or a checker event
sends mail, and *what* the mail says, byte for byte as keepalived composes it
(core/smtp.c ``smtp_alert``/``body_cmd``, include/smtp.h, vrrp/vrrp_notify.c,
check/check_*.c, check/ipwrapper.c).  :class:`Mailer` is the asyncio adapter:
``send()`` only queues, a sender task talks SMTP through aiosmtplib.

The SMTP dialogue is keepalived's: ``HELO`` (never EHLO, never STARTTLS),
``MAIL FROM:<from>``, one ``RCPT TO:<addr>`` per address, ``DATA``, the
message, ``QUIT``.  Only 220/250/354 are accepted where keepalived expects
them; any other reply ends the mail with a log line and a ``QUIT``.

Deliberate differences from keepalived:

* keepalived opens one connection per alert at once, so alerts may arrive out
  of order; we deliver one after the other, in order, from a bounded queue.
* keepalived formats the whole DATA block into a 1024-byte buffer and cuts it
  (losing the terminating dot) when it is longer; we send it whole.  The
  subject (255 bytes), body (511 bytes) and To header (1023 bytes) limits are
  kept.
* A name in ``smtp_server`` is resolved when the first alert is sent (keepalived
  resolves it when it reads the config); the first address wins either way.
* keepalived says nothing when a connect is refused at once; we always log
  one line per failed alert.
* The reply to QUIT is not checked (the mail is through by then; keepalived
  logs a reply other than 221), and a greeting other than 220 closes the
  connection without the QUIT keepalived sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from ipaddress import ip_address
from typing import NamedTuple

import aiosmtplib

from ..config.model import Node

log = logging.getLogger("keepalived_py.smtp")

DEFAULT_PORT = 25
DEFAULT_CONNECT_TIMEOUT = 30.0      # DEFAULT_SMTP_CONNECTION_TIMEOUT
UNKNOWN_NAME = "[unknown]"          # init_global_data's stand-in when the host name is not found
NULL = "(null)"                     # what glibc's printf makes of keepalived's unset email_from
MAX_SUBJECT = 255                   # MAX_HEADERS_LENGTH - 1
MAX_BODY = 511                      # MAX_BODY_LENGTH - 1
MAX_TO = 1023                       # SMTP_BUFFER_MAX - 1


# -- settings -------------------------------------------------------------------------

def local_name() -> str | None:
    """The host name as keepalived's get_local_name finds it.

    The canonical name of ``uname -n`` through getaddrinfo, so usually the
    FQDN from /etc/hosts or DNS; None when the lookup fails.
    """
    try:
        found = socket.getaddrinfo(os.uname().nodename, None, flags=socket.AI_CANONNAME)
    except OSError:
        return None
    return found[0][3] or None


def login_name() -> str | None:
    """The name of the user we run as (keepalived's getpwuid(getuid()))."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


@dataclass(frozen=True)
class SmtpSettings:
    """The e-mail part of ``global_defs``, keepalived's defaults filled in.

    ``server`` is None without ``smtp_server``: then, as with an empty
    ``email_to``, no mail is ever sent.  ``email_from`` is None when keepalived
    would leave it unset (no ``notification_email_from`` and no host name).
    ``smtp_alert*`` are None when not configured (keepalived's -1).
    """

    server: tuple[str, int] | None = None
    helo_name: str = "localhost"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    router_id: str = UNKNOWN_NAME
    smtp_alert: bool | None = None
    smtp_alert_vrrp: bool | None = None
    smtp_alert_checker: bool | None = None
    no_email_faults: bool = False
    no_checker_emails: bool = False

    @classmethod
    def from_config(cls, root: Node | None,
                    host_name: Callable[[], str | None] = local_name,
                    user_name: Callable[[], str | None] = login_name) -> SmtpSettings:
        """From a parsed config (its ``global_defs``), as init_global_data completes it.

        The host name is looked up only when a default needs it, as keepalived
        does: router_id defaults to it; with an smtp_server, so do the HELO
        name and ``user@host`` as sender, unless the lookup failed.
        """
        blocks = root.blocks("global_defs") if root is not None else []
        values = blocks[0].values if blocks else {}
        server = values.get("smtp_server")
        router_id = values.get("router_id")
        helo_name = values.get("smtp_helo_name") or None
        email_from = values.get("notification_email_from") or None
        name: str | None = None
        if not router_id or (server and not (helo_name and email_from)):
            name = host_name() or UNKNOWN_NAME
        if server and name and name != UNKNOWN_NAME:
            if email_from is None:
                user = user_name()
                email_from = f"{user}@{name}" if user else None
            helo_name = helo_name or name
        return cls(
            server=(server[0], int(server[1])) if server else None,
            # keepalived falls back to "localhost" in its HELO command
            helo_name=helo_name or "localhost",
            connect_timeout=float(values.get("smtp_connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
            email_from=email_from,
            # one address per word, however the words sit on the lines
            email_to=tuple(word for line in values.get("notification_email") or ()
                           for word in line),
            router_id=router_id or name or UNKNOWN_NAME,
            smtp_alert=values.get("smtp_alert"),
            smtp_alert_vrrp=values.get("smtp_alert_vrrp"),
            smtp_alert_checker=values.get("smtp_alert_checker"),
            no_email_faults=bool(values.get("no_email_faults")),
            no_checker_emails=bool(values.get("no_checker_emails")),
        )

    @property
    def enabled(self) -> bool:
        """Mail goes out at all (smtp_alert's first test: recipients and a server)."""
        return self.server is not None and bool(self.email_to)

    # -- which objects send mail (keepalived's -1 resolution at config time) -----------

    def vrrp_alert(self, own: bool | None) -> bool:
        """A vrrp_instance's or vrrp_sync_group's ``smtp_alert``.

        Its own keyword wins; unset, ``smtp_alert_vrrp``, then ``smtp_alert``,
        else off (vrrp.c: vrrp_complete_instance, vrrp_complete_init for groups).
        """
        return _first_set(own, self.smtp_alert_vrrp, self.smtp_alert, default=False)

    def virtual_server_alert(self, own: bool | None) -> bool:
        """A virtual_server's ``smtp_alert``: own, ``smtp_alert_checker``, ``smtp_alert``, off."""
        return _first_set(own, self.smtp_alert_checker, self.smtp_alert, default=False)

    def real_server_alert(self, own: bool | None) -> bool:
        """A real_server's ``smtp_alert``: own, ``smtp_alert_checker``, ``smtp_alert``, *on*.

        keepalived keeps real servers alerting by default for backwards
        compatibility (check_data.c: validate_check_config).
        """
        return _first_set(own, self.smtp_alert_checker, self.smtp_alert, default=True)


def _first_set(*values: bool | None, default: bool) -> bool:
    for value in values:
        if value is not None:
            return value
    return default


# -- what a mail says -----------------------------------------------------------------

class Alert(NamedTuple):
    """One mail: the whole subject line and the body."""

    subject: str
    body: str


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` bytes, as keepalived's fixed buffers keep them."""
    raw = text.encode()
    return text if len(raw) <= limit else raw[:limit].decode(errors="ignore")


def alert(router_id: str, what: str, body: str) -> Alert:
    """The subject ``[router_id] what`` and the body, cut to keepalived's buffer sizes."""
    return Alert(_cut(f"[{router_id}] {what}", MAX_SUBJECT), _cut(body, MAX_BODY))


_INSTANCE_TEXT = {
    "MASTER": ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    "BACKUP": ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "FAULT": ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "STOP": ("Stopping", "=> VRRP Instance stopping <="),
    "DELETED": ("Deleted", "=> VRRP Deleted at reload <="),
}
_GROUP_TEXT = {
    "MASTER": ("Entering MASTER state",
               "=> All VRRP group instances are now in MASTER state <="),
    "BACKUP": ("Entering BACKUP state",
               "=> All VRRP group instances are now in BACKUP state <="),
    "FAULT": ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    "STOP": ("Stopping", "=> All VRRP group instances are now stopping <="),
}


def vrrp_instance_alert(router_id: str, name: str, state: str) -> Alert | None:
    """``[R] VRRP Instance VI_1 - Entering MASTER state``; None for a state without mail."""
    text = _INSTANCE_TEXT.get(state)
    return alert(router_id, f"VRRP Instance {name} - {text[0]}", text[1]) if text else None


def vrrp_group_alert(router_id: str, name: str, state: str) -> Alert | None:
    """``[R] VRRP Group G1 - Entering MASTER state``; None for a state without mail."""
    text = _GROUP_TEXT.get(state)
    return alert(router_id, f"VRRP Group {name} - {text[0]}", text[1]) if text else None


@dataclass
class VrrpAlerts:
    """Whether a state change of one instance or sync group sends mail (vrrp_notify.c).

    keepalived mails when the object's ``smtp_alert`` is on, the state is not
    FAULT under ``no_email_faults``, and the state differs from the last one
    mailed (``last_email_state``, INIT at start).  A FAULT skipped under
    ``no_email_faults`` is not remembered, so MASTER -> FAULT -> MASTER mails
    once.  States without a text (INIT; DELETED for a group) send nothing and
    are not remembered either.

    What the caller decides, as keepalived's send_instance_notifies does for
    every notify: an instance whose sync group already notified this same
    state sends nothing, and a deleted instance reports FAULT unless it has
    ``notify_deleted``.  keepalived starts every instance and group afresh at
    a reload (``last_email_state`` back to INIT): make new ones then.
    """

    name: str
    enabled: bool
    group: bool = False
    last_state: str = "INIT"

    def on_state(self, state: str, settings: SmtpSettings) -> Alert | None:
        if not self.enabled or state == self.last_state:
            return None
        if state == "FAULT" and settings.no_email_faults:
            return None
        compose = vrrp_group_alert if self.group else vrrp_instance_alert
        mail = compose(settings.router_id, self.name, state)
        if mail is not None:
            self.last_state = state
        return mail


# -- checkers ----------------------------------------------------------------------------

_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", None: "none", "": "none"}


def format_service(address: str, port: int, protocol: str | None) -> str:
    """``[192.0.2.1]:tcp:80``: keepalived's FMT_RS, and FMT_VS of an address service."""
    proto = _PROTOCOLS.get(protocol.lower() if protocol else protocol, "?")
    return f"[{ip_address(address)}]:{proto}:{port}"


def format_virtual_server(address: str | None = None, port: int = 0,
                          protocol: str | None = None, fwmark: int | None = None,
                          group: str | None = None) -> str:
    """keepalived's FMT_VS: ``[GROUP]:port``, ``FWM n`` or ``[addr]:proto:port``."""
    if group is not None:
        return f"[{group}]:{port}"
    if fwmark is not None:
        return f"FWM {fwmark}"
    if address is None:
        raise ValueError("a virtual server needs an address, a fwmark or a group")
    return format_service(address, port, protocol)


def checker_alert_due(rs_alert: bool, checker_changed: bool, rs_alive_changed: bool,
                      no_checker_emails: bool) -> bool:
    """Whether a checker result mails (check_tcp.c and its siblings).

    ``rs_alert`` is the real server's resolved ``smtp_alert``.
    ``checker_changed``: this checker went up (it was down) or down (it was
    up); for MISC_CHECK every result that keepalived logs as a state result
    counts (so also its first one), for BFD_CHECK the session state differing
    from the checker's.  Under ``no_checker_emails`` only results that change
    the real server's own state (alive <-> not alive) mail.
    """
    return rs_alert and checker_changed and (rs_alive_changed or not no_checker_emails)


CHECKER_BODIES = {
    ("TCP_CHECK", True): "=> TCP CHECK succeed on service <=",
    ("TCP_CHECK", False): "=> TCP CHECK failed on service <=",
    ("UDP_CHECK", True): "=> UDP CHECK succeed on service <=",
    ("UDP_CHECK", False): "=> UDP CHECK failed on service <=",
    ("PING_CHECK", True): "=> ICMP CHECK succeed on service <=",
    ("PING_CHECK", False): "=> ICMP CHECK failed on service <=",
    ("DNS_CHECK", True): "=> DNS_CHECK: succeed on service <=",
    ("DNS_CHECK", False): "=> DNS_CHECK: failed on service <=",
    ("HTTP_GET", True): "=> CHECK succeed on service <=",
    ("HTTP_GET", False): "=> CHECK failed on service : HTTP request failed <=",
    ("SSL_GET", True): "=> CHECK succeed on service <=",
    ("SSL_GET", False): "=> CHECK failed on service : HTTP request failed <=",
    ("SMTP_CHECK", True): "=> CHECK succeed on service <=",
    ("SMTP_CHECK", False): "=> CHECK failed on service <=",
}


def checker_body(kind: str, up: bool, detail: str | None = None) -> str:
    """The body of a checker's mail.

    ``detail``: SMTP_CHECK's failure reason; MISC_CHECK's outcome
    ("succeeded", "failed", "timed out"); BFD_CHECK's BFD instance name.
    """
    if kind == "MISC_CHECK":
        return f"=> MISC CHECK {detail or ('succeeded' if up else 'failed')} on service <="
    if kind == "BFD_CHECK":
        return f"=> BFD CHECK {detail} {'succeeded' if up else 'failed'} on service <="
    if kind == "SMTP_CHECK" and not up and detail:
        return f"=> CHECK failed on service : {detail} <="
    return CHECKER_BODIES[kind, up]


def real_server_alert(router_id: str, rs: str, vs: str, alive: bool, body: str) -> Alert:
    """``[R] Realserver [rs]:tcp:80 of virtual server [vs]:tcp:80 - UP``.

    UP/DOWN is the real server's state after the result (a second failing
    checker of a server already down says DOWN again), not the checker's.
    """
    return alert(router_id, f"Realserver {rs} of virtual server {vs} - "
                            f"{'UP' if alive else 'DOWN'}", body)


def removal_body(stopping: bool) -> str:
    """The body of a real server's DOWN mail when it is taken out (ipwrapper.c)."""
    return "=> Shutting down <=" if stopping else "=> Removing <="


def virtual_server_alert(router_id: str, vs: str, up: bool, body: str) -> Alert:
    """``[R] Virtualserver [vs]:tcp:80 - UP`` (quorum up) or ``- DOWN``."""
    return alert(router_id, f"Virtualserver {vs} - {'UP' if up else 'DOWN'}", body)


def quorum_body(up: bool, quorum: int, hysteresis: int, weight_sum: int,
                starting: bool = False, stopping: bool = False) -> str:
    """``=> Gained quorum 3+1=2 <= 5 <=``: the figures keepalived prints (ipwrapper.c).

    The third figure is quorum - hysteresis, printed after an "=" as
    keepalived does.
    """
    if stopping:
        return "=> Shutting down <="
    if up:
        what = "Starting with quorum up" if starting else "Gained quorum"
    else:
        what = "Starting with quorum down" if starting else "Lost quorum"
    return f"=> {what} {quorum}+{hysteresis}={quorum - hysteresis} <= {weight_sum} <="


# -- the message ------------------------------------------------------------------------

def to_header(addresses: Iterable[str]) -> str:
    """The To header's value: the addresses joined by ", " within 1023 bytes.

    Like keepalived, an address that does not fit ends the list, after its
    ", " has been written.
    """
    out = ""
    room = MAX_TO
    for index, address in enumerate(addresses):
        if index:
            if room < 2:
                break
            out += ", "
            room -= 2
        if room < len(address.encode()):
            break
        out += address
        room -= len(address.encode())
    return out


def rfc822_date(now: datetime | None = None) -> str:
    """The Date header as keepalived writes it: local time, ``Mon, 01 Mar 2021 09:44:08 +0000``."""
    return format_datetime((now or datetime.now()).astimezone())


def compose_message(settings: SmtpSettings, mail: Alert, date: str) -> str:
    """The DATA block keepalived sends, without the final ``.`` line.

    Headers in keepalived's order (Date, From, Subject, X-Mailer, To), a blank
    line, the body, and an empty last line: keepalived writes ``body\\r\\n``
    and then ``\\r\\n.\\r\\n``.
    """
    return (f"Date: {date}\r\n"
            f"From: {settings.email_from or NULL}\r\n"
            f"Subject: {mail.subject}\r\n"
            "X-Mailer: Keepalived\r\n"
            f"To: {to_header(settings.email_to)}\r\n"
            "\r\n"
            f"{mail.body}\r\n"
            "\r\n")


# -- the adapter ------------------------------------------------------------------------

class _Failed(Exception):
    """One alert could not be delivered; the text is the log line."""


class Mailer:
    """Sends alerts in the background, in order, one SMTP connection each.

    ``send()`` never blocks and never raises: an alert must not delay VRRP.
    Each failed alert is logged once, in keepalived's words, and dropped.
    """

    def __init__(self, settings: SmtpSettings, queue_limit: int = 256,
                 date: Callable[[], str] = rfc822_date) -> None:
        self.settings = settings
        self.queue_limit = queue_limit
        self._date = date
        self._queue: deque[Alert] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._address: tuple[int, tuple] | None = None
        self.sent = 0
        self.failed = 0

    def reconfigure(self, settings: SmtpSettings) -> None:
        """New settings (a reload): queued alerts go out with them, to a server looked up anew."""
        self.settings = settings
        self._address = None

    def send(self, subject: str, body: str) -> None:
        """Queue one alert (a full subject line and a body) and return at once.

        Call it from the event loop's thread; the sender task starts with the
        first alert.  Nothing is queued when mail is off (no server or no
        recipients) or the mailer is closing.
        """
        if not self.settings.enabled or self._closing:
            return
        if len(self._queue) >= self.queue_limit:
            log.info("SMTP alert queue full - dropping alert: %s", subject)
            return
        self._queue.append(Alert(subject, body))
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="smtp-alerts")

    @property
    def pending(self) -> int:
        """Alerts queued and not yet delivered or given up."""
        return len(self._queue)

    async def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then stop."""
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            if self._queue:
                log.info("SMTP: %d alert(s) not sent at shutdown", len(self._queue))
            self._queue.clear()

    async def _run(self) -> None:
        while True:
            while self._queue:
                mail = self._queue[0]
                try:
                    await self._deliver(mail)
                    self.sent += 1
                except _Failed as err:
                    self.failed += 1
                    log.info("%s", err)
                except Exception as err:  # a bug here must not stop later alerts
                    self.failed += 1
                    log.exception("SMTP alert failed: %s", err)
                self._queue.popleft()
            if self._closing:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _resolve(self) -> tuple[int, tuple]:
        """The server's family and socket address, looked up once; the first answer wins."""
        if self._address is None:
            assert self.settings.server is not None
            host, port = self.settings.server
            try:
                found = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
            except OSError as err:
                raise _Failed(f"Invalid smtp server {host} {port}: {err}") from None
            self._address = (found[0][0], found[0][4])
        return self._address

    async def _connect(self, where: str) -> aiosmtplib.SMTP:
        """A client past the server's 220 greeting; the socket is closed on any failure."""
        family, address = await self._resolve()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            return await self._greet(sock, address, where)
        except BaseException:
            sock.close()
            raise

    async def _greet(self, sock: socket.socket, address: tuple, where: str) -> aiosmtplib.SMTP:
        # The TCP connect is ours and the greeting aiosmtplib's, so that a
        # timeout is told apart as keepalived tells it: opening the connection
        # versus reading from it.
        s = self.settings
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address),
                                   s.connect_timeout)
        except TimeoutError:
            raise _Failed(f"Timeout opening connection to remote SMTP server {where}.") from None
        except OSError:
            raise _Failed(f"SMTP connection ERROR to {where}.") from None
        client = aiosmtplib.SMTP(sock=sock, timeout=s.connect_timeout,
                                 local_hostname=s.helo_name, start_tls=False)
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectResponseError as err:
            raise _Failed(f"Error processing (E)SMTP cmd on SMTP server {where}."
                          f" SMTP status code = {err.code}") from None
        except aiosmtplib.SMTPTimeoutError:
            raise _Failed(f"Timeout reading data to remote SMTP server {where}.") from None
        except (aiosmtplib.SMTPException, OSError):
            raise _Failed(f"Remote SMTP server {where} has closed the connection.") from None
        log.debug("Remote SMTP server %s connected.", where)
        return client

    async def _deliver(self, mail: Alert) -> None:
        _, address = await self._resolve()
        where = f"[{address[0]}]:{address[1]}"      # keepalived's FMT_SMTP_HOST
        client = await self._connect(where)
        s = self.settings
        sender = s.email_from or NULL
        message = compose_message(s, mail, self._date()).encode()
        steps = [("HELO", b"HELO " + s.helo_name.encode(), 250),
                 ("MAIL", b"MAIL FROM:<" + sender.encode() + b">", 250),
                 *(("RCPT", b"RCPT TO:<" + to.encode() + b">", 250) for to in s.email_to),
                 ("DATA", b"DATA", 354),
                 # sent as keepalived sends it: no dot-stuffing, then the "." line
                 ("BODY", message + b".", 250)]
        try:
            for name, command, expected in steps:
                reply = await client.execute_command(command)
                if reply.code != expected:
                    await self._quit(client)
                    raise _Failed(f"Error processing {name} cmd on SMTP server {where}."
                                  f" SMTP status code = {reply.code}")
            log.debug("SMTP alert successfully sent.")
            await self._quit(client)
        except aiosmtplib.SMTPTimeoutError:
            await self._quit(client)
            raise _Failed(f"Timeout reading data to remote SMTP server {where}.") from None
        except (aiosmtplib.SMTPServerDisconnected, OSError):
            raise _Failed(f"Remote SMTP server {where} has closed the connection.") from None
        finally:
            client.close()

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        """keepalived's QUIT after a mail or an error; its reply changes nothing."""
        if not client.is_connected:
            return
        try:
            await client.execute_command(b"QUIT")
        except (aiosmtplib.SMTPException, OSError):
            pass
