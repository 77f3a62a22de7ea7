"""IPVS's global settings in a configuration: ``lvs_timeouts`` and ``lvs_sync_daemon``.

keepalived's rules (check_daemon.c, ipvswrapper.c, vrrp.c):

- ``lvs_timeouts`` are set when the checker process starts and at each reload;
  the values found before are put back when it stops.
- ``lvs_sync_daemon IF`` without a VRRP instance: the checker process runs both
  the master and the backup sync daemon, restarted at a reload only when the
  settings changed.  With ``inst VI`` the VRRP process drives them: master
  daemon while VI is MASTER, backup daemon otherwise; the sync id defaults to
  VI's VRID (0 without an instance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config.model import Node
from .model import IpvsError, IpvsUnavailable, SyncDaemon, Timeouts
from .netlink import IpvsTable

log = logging.getLogger("keepalived_py.ipvs")


def timeouts_of(root: Node) -> Timeouts | None:
    glob = root.values.get("global_defs")
    value = glob.values.get("lvs_timeouts") if glob is not None else None
    if not value:
        return None
    return Timeouts(**dict(value))


@dataclass(frozen=True)
class SyncDaemonConfig:
    """``lvs_sync_daemon`` as written: the daemon settings, and the VRRP instance
    that drives it (None: the checker process runs both daemons)."""

    ifname: str
    instance: str | None
    syncid: int | None
    maxlen: int = 0
    port: int = 0
    ttl: int = 0
    group: str | None = None

    def daemon(self, state: str, vrid: int | None = None) -> SyncDaemon:
        syncid = self.syncid if self.syncid is not None else (vrid or 0)
        return SyncDaemon(state=state, ifname=self.ifname, syncid=syncid,  # type: ignore[arg-type]
                          maxlen=self.maxlen, port=self.port, ttl=self.ttl, group=self.group)


def sync_daemon_of(root: Node) -> SyncDaemonConfig | None:
    glob = root.values.get("global_defs")
    words = glob.values.get("lvs_sync_daemon") if glob is not None else None
    if not words:
        return None
    options: dict[str, str] = {}
    for i in range(1, len(words) - 1, 2):
        options[words[i]] = words[i + 1]
    return SyncDaemonConfig(
        ifname=words[0], instance=options.get("inst"),
        syncid=int(options["id"]) if "id" in options else None,
        maxlen=int(options.get("maxlen", 0)), port=int(options.get("port", 0)),
        ttl=int(options.get("ttl", 0)), group=options.get("group"))


class IpvsGlobals:
    """Carries out a configuration's lvs_timeouts and (instance-less) lvs_sync_daemon
    on a table, and undoes them at the end.  Errors are logged, never raised: a
    refused timeout does not stop the checks."""

    def __init__(self, table: IpvsTable) -> None:
        self.table = table
        self.saved: Timeouts | None = None
        self.daemon: SyncDaemonConfig | None = None

    def apply(self, root: Node) -> None:
        timeouts = timeouts_of(root)
        try:
            if timeouts is not None:
                if self.saved is None:
                    self.saved = self.table.get_timeouts()
                self.table.set_timeouts(timeouts.tcp, timeouts.tcpfin, timeouts.udp)
                log.info("IPVS timeouts set: tcp %s, tcpfin %s, udp %s", timeouts.tcp or "-",
                         timeouts.tcpfin or "-", timeouts.udp or "-")
            elif self.saved is not None:
                self._restore_timeouts()
        except IpvsError as err:
            log.error("lvs_timeouts: %s", err)
        daemon = sync_daemon_of(root)
        wanted = daemon if daemon is not None and daemon.instance is None else None
        if wanted == self.daemon:
            return                      # keepalived restarts the daemons only on a change
        self._stop_daemons()
        self.daemon = wanted
        if wanted is not None:
            for state in ("master", "backup"):
                try:
                    self.table.start_sync_daemon(wanted.daemon(state))
                except IpvsError as err:
                    log.error("lvs_sync_daemon: %s", err)

    def restore(self) -> None:
        if self.saved is not None:
            self._restore_timeouts()
        self._stop_daemons()
        self.daemon = None

    def _restore_timeouts(self) -> None:
        assert self.saved is not None
        try:
            self.table.set_timeouts(self.saved.tcp, self.saved.tcpfin, self.saved.udp)
        except IpvsError as err:
            log.error("lvs_timeouts: cannot restore the previous timeouts: %s", err)
        self.saved = None

    def _stop_daemons(self) -> None:
        if self.daemon is None:
            return
        for state in ("master", "backup"):
            try:
                self.table.stop_sync_daemon(state)  # type: ignore[arg-type]
            except IpvsError as err:
                log.error("lvs_sync_daemon: %s", err)


class SyncDaemonDriver:
    """``lvs_sync_daemon IF inst VI``: the VRRP process runs the master sync daemon
    while VI is MASTER and the backup daemon otherwise (keepalived's
    ipvs_syncd_master / ipvs_syncd_backup).  Blocking netlink: call from a thread."""

    def __init__(self, config: SyncDaemonConfig, vrid: int | None,
                 netns: str | None = None) -> None:
        self.config = config
        self.vrid = vrid
        self.netns = netns
        self.running: str | None = None
        self.table: IpvsTable | None = None
        self.broken = False

    def follow(self, state: str) -> None:
        """VI entered ``state`` (MASTER, BACKUP, FAULT...)."""
        wanted = "master" if state == "MASTER" else "backup"
        if wanted == self.running or self.broken:
            return
        try:
            if self.table is None:
                self.table = IpvsTable(self.netns)
            other = "backup" if wanted == "master" else "master"
            self.table.stop_sync_daemon(other)  # type: ignore[arg-type]
            self.table.start_sync_daemon(self.config.daemon(wanted, self.vrid))
            self.running = wanted
            log.info("lvs_sync_daemon: %s daemon on %s (instance %s %s)", wanted,
                     self.config.ifname, self.config.instance, state)
        except IpvsError as err:
            # a kernel without IPVS says so once; VRRP goes on
            self.broken = isinstance(err, IpvsUnavailable)
            log.error("lvs_sync_daemon: %s", err)

    def stop(self) -> None:
        if self.running is None or self.table is None:
            return
        try:
            self.table.stop_sync_daemon(self.running)  # type: ignore[arg-type]
        except IpvsError as err:
            log.error("lvs_sync_daemon: %s", err)
        self.running = None
        self.table.close()
        self.table = None
