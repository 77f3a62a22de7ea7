"""What a state change sets off outside the VRRP process: notify scripts, notify
FIFO lines and e-mail alerts (keepalived's send_instance_notifies and
send_group_notifies: scripts and FIFO first, then the mail).
"""

from __future__ import annotations

import logging

from ..config.model import Node
from ..host.mail import Mailer, SmtpSettings, VrrpAlerts
from ..host.scripts import ConfigScripts
from .notify import Notifier

log = logging.getLogger("keepalived_py.vrrp")


class StateEvents:
    def __init__(self, root: Node, scripts: ConfigScripts) -> None:
        self.notifier = Notifier(root, scripts)
        self.mailer = Mailer(SmtpSettings.from_config(root))
        self._alerts: dict[tuple[bool, str], VrrpAlerts] = {}
        self._configure(root)

    def _configure(self, root: Node) -> None:
        settings = self.mailer.settings
        # keepalived starts every instance's and group's mail memory afresh at a reload
        self._alerts = {
            **{(False, n.head): VrrpAlerts(n.head, settings.vrrp_alert(n.values.get("smtp_alert")))
               for n in root.blocks("vrrp_instance")},
            **{(True, n.head): VrrpAlerts(n.head, settings.vrrp_alert(n.values.get("smtp_alert")),
                                          group=True)
               for n in root.blocks("vrrp_sync_group")},
        }

    def start(self) -> None:
        self.notifier.start()

    def instance(self, name: str, state: str, priority: int) -> None:
        if self.notifier.instance(name, state, priority):
            self._mail(False, name, state)

    def group(self, name: str, state: str) -> None:
        self.notifier.group(name, state)
        self._mail(True, name, state)

    def _mail(self, group: bool, name: str, state: str) -> None:
        alerts = self._alerts.get((group, name))
        if alerts is None:
            return
        mail = alerts.on_state(state, self.mailer.settings)
        if mail is not None:
            self.mailer.send(*mail)

    async def reload(self, root: Node, scripts: ConfigScripts) -> None:
        await self.notifier.reload(root, scripts)
        self.mailer.reconfigure(SmtpSettings.from_config(root))
        self._configure(root)

    async def stop(self, priorities: dict[str, int]) -> None:
        """STOP for every instance, then every group (notify_shutdown), and the mail
        still queued goes out."""
        await self.notifier.stop(priorities)
        await self.notifier.close()
        await self.mailer.close()
