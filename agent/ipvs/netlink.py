"""The kernel's IPVS table of one network namespace, over generic netlink (pyroute2).

``IpvsTable`` reads the table in one dump of the services and one dump of the real
servers of each, and changes it one request at a time, with keepalived's
``ipvs_talk`` semantics: adding what exists or deleting what is gone succeeds, and an
edit of a real server that is gone adds it. A refusal is an ``IpvsError`` naming the
operation and the kernel's errno; a kernel without IPVS (after one ``modprobe ip_vs``,
as keepalived tries) is an ``IpvsUnavailable`` with a one-line reason.

The calls block (a request and its answer take well under a millisecond); an asyncio
caller runs them in a worker thread (pyroute2's synchronous sockets cannot run on a
thread whose event loop is running; each thread gets a socket of its own). The
messages are pyroute2's generic netlink classes with the attribute types of
messages.py. pyroute2's own ``IPVS`` helpers are
not used: seen in the VM with 0.9.7, ``IPVSDest.from_message`` reports every real
server as DR, a ``dest("set")`` without ``fwd_method`` turns a NAT server into DR,
``service("update")`` deletes the service, firewall-mark and IPv6 services are
refused (EINVAL: no netmask), a GUE port 6080 is programmed as 49175, and there is
no flush, timeout or sync daemon request.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import threading
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkDecodeError, NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket, GenericNetlinkSocket

from . import messages as m
from .model import (
    DaemonState,
    DestKey,
    DestSpec,
    IpvsError,
    IpvsUnavailable,
    KernelService,
    ServiceKey,
    ServiceSpec,
    SyncDaemon,
    Timeouts,
)

MODPROBE_TIMEOUT = 30.0     # seconds

_modprobe_lock = threading.Lock()
_modprobe_result: str | None = None     # None until tried; "" when it worked

__all__ = ["IpvsError", "IpvsTable", "IpvsUnavailable", "errno_text"]


def errno_text(code: int, hint: str = "") -> str:
    """``File exists (EEXIST)``; the kernel answers ESRCH for a missing virtual service."""
    name = errno.errorcode.get(code, str(code))
    if code == errno.ESRCH:
        return f"no such virtual service ({name})"
    return f"{os.strerror(code)} ({name}{': ' + hint if hint else ''})"


# What the kernel means by an errno it gives for many reasons, per command
# (ip_vs_ctl.c, seen in the VM).
HINTS = {
    # ip_vs_add_service: the scheduler or persistence engine module is not found
    ("add virtual service", errno.ENOENT): "no scheduler or persistence engine of that name",
    # ip_vs_genl_set_cmd, ip_vs_new_dest: another family than the service's is for TUN
    # only; a GUE tunnel needs a port; an IPv4 real server is refused in a namespace
    # without any IPv4 address yet (no local routing table: not even lo is up)
    ("add real server", errno.EINVAL): "another family than the service's without TUN, "
                                       "a GUE tunnel without a port, or no IPv4 address "
                                       "in the namespace (lo down)",
    # ip_vs_genl_new_daemon
    ("start the", errno.EINVAL): "refused while a service mixes address families",
}


def _hint(what: str, code: int) -> str:
    return next((hint for (start, known), hint in HINTS.items()
                 if known == code and what.startswith(start)), "")


def _load_module() -> str:
    """``modprobe ip_vs``, once per process; "" when it worked, else why not."""
    global _modprobe_result
    with _modprobe_lock:
        if _modprobe_result is None:
            try:
                done = subprocess.run(["modprobe", "ip_vs"], capture_output=True, text=True,
                                      timeout=MODPROBE_TIMEOUT)
                _modprobe_result = "" if done.returncode == 0 else \
                    (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            except (OSError, subprocess.TimeoutExpired) as e:
                _modprobe_result = str(e)
        return _modprobe_result


class _AsyncIpvsSocket(AsyncGenericNetlinkSocket):
    # a missing family becomes IpvsUnavailable, not pyroute2's error log lines
    module_err_level = "debug"


class _IpvsSocket(GenericNetlinkSocket):
    async_class = _AsyncIpvsSocket


class IpvsTable:
    """The IPVS table of network namespace ``netns`` (None: the one we run in).

    The netlink socket opens on first use; a namespace that does not exist is an
    error, never created.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._sock: _IpvsSocket | None = None

    def __enter__(self) -> IpvsTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- the socket ----------------------------------------------------------------

    def _where(self) -> str:
        return f"network namespace {self.netns}" if self.netns else "this network namespace"

    def _new_socket(self) -> _IpvsSocket:
        # flags=0: a namespace that does not exist is an error, never created
        try:
            return _IpvsSocket(netns=self.netns, flags=0) if self.netns else _IpvsSocket()
        except (OSError, NetlinkError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise IpvsUnavailable(f"cannot open netlink in {self._where()}: {reason}") from None

    def _bound(self) -> _IpvsSocket | None:
        """A socket bound to the IPVS family; None when the kernel has no such family."""
        sock = self._new_socket()
        try:
            sock.bind(m.GENL_NAME, m.IpvsMessage)
            return sock
        except NetlinkError as e:
            sock.close()
            if e.code != errno.ENOENT:
                raise IpvsUnavailable(f"cannot reach IPVS in {self._where()}: "
                                      f"{errno_text(e.code)}", e.code) from None
            return None

    def _open(self) -> _IpvsSocket:
        sock = self._bound()
        if sock is not None:
            return sock
        # the family appears with the module, as keepalived's ipvs_start expects
        why = _load_module()
        sock = self._bound()
        if sock is None:
            reason = f"modprobe ip_vs: {why}" if why else "ip_vs loaded, still no family"
            raise IpvsUnavailable(f"the kernel has no IPVS (no generic netlink family IPVS; "
                                  f"{reason})", errno.ENOENT)
        return sock

    def _socket(self) -> _IpvsSocket:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("IpvsTable blocks: call it in a worker thread "
                               "(asyncio.to_thread), not on a running event loop")
        if self._sock is None:
            self._sock = self._open()
        return self._sock

    def available(self) -> bool:
        """Whether the table can be reached (the operations say why not)."""
        try:
            self._socket()
        except IpvsUnavailable:
            return False
        return True

    def _talk(self, what: str, command: int, *, dump: bool = False,
              **attrs: Any) -> list[m.IpvsMessage]:
        sock = self._socket()
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            replies = sock.nlm_request(m.request(command, **attrs), msg_type=sock.prid,
                                       msg_flags=flags)
            # the acknowledgement of a request comes back as an empty message
            return [r for r in replies if r.get("attrs")]
        except NetlinkError as e:
            raise IpvsError(f"{what}: {errno_text(e.code, _hint(what, e.code))}",
                            e.code) from None
        except OSError as e:
            raise IpvsError(f"{what}: {e.strerror or e}", e.errno or 0) from None
        except NetlinkDecodeError as e:
            raise IpvsError(f"{what}: cannot read the kernel's answer: {e.exception}") from None

    # -- reading -------------------------------------------------------------------

    def dump(self) -> dict[ServiceKey, KernelService]:
        """Every virtual service with its real servers and counters."""
        read = []
        for reply in self._talk("list virtual services", m.GET_SERVICE, dump=True):
            try:
                read.append(m.parse_service(reply))
            except (ValueError, TypeError, KeyError) as e:
                raise IpvsError(f"list virtual services: cannot read the kernel's answer: {e}"
                                ) from None
        table = {}
        for spec, stats in read:
            what = f"list real servers of {spec.key}"
            try:
                dests = [m.parse_dest(reply, spec.key.af) for reply in
                         self._talk(what, m.GET_DEST, dump=True,
                                    service=m.service_key_attrs(spec.key))]
            except (ValueError, TypeError, KeyError) as e:
                raise IpvsError(f"{what}: cannot read the kernel's answer: {e}") from None
            table[spec.key] = KernelService(spec=spec, dests={d.key: d for d in dests},
                                            stats=stats)
        return table

    # -- virtual services ------------------------------------------------------------

    def add_service(self, spec: ServiceSpec) -> None:
        """Add a virtual service; one that exists already is left as it is."""
        try:
            self._talk(f"add virtual service {spec.key}", m.NEW_SERVICE,
                       service=m.service_attrs(spec))
        except IpvsError as e:
            if e.code != errno.EEXIST:
                raise

    def edit_service(self, spec: ServiceSpec) -> None:
        """Change a virtual service's scheduler, flags, persistence and engine."""
        self._talk(f"edit virtual service {spec.key}", m.SET_SERVICE,
                   service=m.service_attrs(spec))

    def del_service(self, key: ServiceKey) -> None:
        """Delete a virtual service and its real servers; one that is gone is fine."""
        try:
            self._talk(f"delete virtual service {key}", m.DEL_SERVICE,
                       service=m.service_key_attrs(key))
        except IpvsError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise

    # -- real servers ----------------------------------------------------------------

    def add_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        """Add a real server (its port as keepalived sets it: ``DestSpec.for_service``);
        one that exists already is left as it is."""
        dest = dest.for_service(service)
        try:
            self._talk(f"add real server {dest.key} to {service}", m.NEW_DEST,
                       service=m.service_key_attrs(service), dest=m.dest_attrs(dest))
        except IpvsError as e:
            if e.code != errno.EEXIST:
                raise

    def edit_dest(self, service: ServiceKey, dest: DestSpec) -> None:
        """Change a real server; one that is gone is added."""
        dest = dest.for_service(service)
        try:
            self._talk(f"edit real server {dest.key} of {service}", m.SET_DEST,
                       service=m.service_key_attrs(service), dest=m.dest_attrs(dest))
        except IpvsError as e:
            if e.code != errno.ENOENT:
                raise
            self.add_dest(service, dest)

    def del_dest(self, service: ServiceKey, dest: DestKey) -> None:
        """Delete a real server; one that is gone (or whose service is) is fine."""
        try:
            self._talk(f"delete real server {dest} of {service}", m.DEL_DEST,
                       service=m.service_key_attrs(service), dest=m.dest_key_attrs(dest))
        except IpvsError as e:
            if e.code not in (errno.ENOENT, errno.ESRCH):
                raise

    # -- the whole table -------------------------------------------------------------

    def flush(self) -> None:
        """Delete every virtual service (``ipvsadm -C``, keepalived's ``lvs_flush``)."""
        self._talk("flush the IPVS table", m.FLUSH)

    def get_timeouts(self) -> Timeouts:
        replies = self._talk("read the IPVS timeouts", m.GET_CONFIG)
        if not replies:
            raise IpvsError("read the IPVS timeouts: the kernel did not answer")
        return m.parse_timeouts(replies[0])

    def set_timeouts(self, tcp: int = 0, tcpfin: int = 0, udp: int = 0) -> None:
        """Change the connection timeouts in seconds (``ipvsadm --set``, keepalived's
        ``lvs_timeouts``); one left at 0 stays as it is."""
        attrs = m.timeout_attrs(Timeouts(tcp=tcp, tcpfin=tcpfin, udp=udp))
        if attrs:
            self._talk("set the IPVS timeouts", m.SET_CONFIG, **attrs)

    # -- the sync daemon -------------------------------------------------------------

    def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        self._talk(f"start the {daemon.state} sync daemon on {daemon.ifname}", m.NEW_DAEMON,
                   daemon=m.daemon_attrs(daemon))

    def stop_sync_daemon(self, state: DaemonState) -> None:
        """Stop the master or the backup sync daemon; one that is not running is fine."""
        try:
            self._talk(f"stop the {state} sync daemon", m.DEL_DAEMON,
                       daemon=m.daemon_stop_attrs(state))
        except IpvsError as e:
            if e.code != errno.ESRCH:
                raise

    def sync_daemons(self) -> dict[DaemonState, SyncDaemon]:
        """The running sync daemons by state."""
        replies = self._talk("list the sync daemons", m.GET_DAEMON, dump=True)
        try:
            daemons = [m.parse_daemon(reply) for reply in replies]
        except (ValueError, TypeError, KeyError) as e:
            raise IpvsError(f"list the sync daemons: cannot read the kernel's answer: {e}"
                            ) from None
        return {d.state: d for d in daemons}
