"""Events between children, through the parent: one path, ordered, and never lost to a restart.

A child publishes the state of things it owns under a *topic*: VRRP the
state of its instances (``vrrp.instance``), BFD its sessions
(``bfd.session``).  Each item is a key (an instance, a session) and a value
(a JSON object), or null when the thing is gone.  The parent keeps the
latest value of every key and hands each change to the children whose
declaration consumes the topic, in the order it received them.

A consumer that is (re)starting gets nothing until it is ready; then it
first gets the whole current state of each topic it consumes (``replace``:
what it knew before is void), and the changes after that.  keepalived drops
events for a child that is restarting; a restarted consumer here starts from
the truth instead.  A producer that restarts republishes its whole state
(``replace`` again), so keys it no longer has are withdrawn from consumers.

On the wire (``core/ipc.py``):

- child to parent: ``{"event": "publish", "topic": T, "items": {KEY: VALUE|null},
  "replace": BOOL}``
- parent to child: ``{"event": "deliver", "topic": T, "items": {...}, "replace": BOOL}``
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("keepalived_py.events")

Items = dict[str, Any]
Send = Callable[[dict[str, Any]], None]


class EventHub:
    """The parent's side: the current state of every topic, and who gets what."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.current: dict[str, Items] = {}
        self._owner = owners                            # topic -> producing child, declared
        self._consumers: dict[str, tuple[frozenset[str], Send]] = {}

    def publish(self, producer: str, topic: str, items: Items, replace: bool = False) -> None:
        owner = self._owner.get(topic)
        if owner != producer:
            log.error("%s published %s, which %s: ignored", producer, topic,
                      f"{owner} owns" if owner else "no child declares")
            return
        known = self.current.setdefault(topic, {})
        if replace:
            items = {**dict.fromkeys(known), **items}     # withdraw what is not there now
        changed = {k: v for k, v in items.items() if known.get(k) != v}    # None: absent
        for key, value in changed.items():
            if value is None:
                known.pop(key, None)
            else:
                known[key] = value
        if changed:
            self._deliver(topic, changed, replace=False, skip=producer)

    def state_of(self, producer: str) -> dict[str, Items]:
        """What ``producer`` last published, by topic (handed back to it at a restart)."""
        return {t: dict(self.current.get(t, {})) for t, o in self._owner.items() if o == producer}

    def withdraw(self, producer: str) -> None:
        """``producer`` no longer runs (removed by a reload): its keys are gone."""
        for topic in [t for t, o in self._owner.items() if o == producer]:
            self.publish(producer, topic, {}, replace=True)

    def attach(self, child: str, topics: Iterable[str], send: Send) -> None:
        """``child`` is ready: it gets the current state of its topics, then every change."""
        topics = frozenset(topics)
        if not topics:
            return
        self._consumers[child] = (topics, send)
        for topic in sorted(topics):
            self._send(child, send, {"event": "deliver", "topic": topic,
                                     "items": dict(self.current.get(topic, {})),
                                     "replace": True})

    def detach(self, child: str) -> None:
        """``child`` is gone or restarting: nothing is sent until it is ready again."""
        self._consumers.pop(child, None)

    def _deliver(self, topic: str, items: Items, replace: bool, skip: str) -> None:
        message = {"event": "deliver", "topic": topic, "items": items, "replace": replace}
        for child, (topics, send) in list(self._consumers.items()):
            if topic in topics and child != skip:
                self._send(child, send, message)

    def _send(self, child: str, send: Send, message: dict[str, Any]) -> None:
        try:
            send(message)
        except ConnectionError:
            # it is dying; it will be attached again, with the whole state, when back
            self.detach(child)


class Subscriptions:
    """A child's side: what it knows of the topics it consumes.

    ``on_change(topic, key, value)`` is called for every key that changes
    (value None: gone), also for what a ``replace`` delivery voids.
    """

    def __init__(self, on_change: Callable[[str, str, Any], None]) -> None:
        self.known: dict[str, Items] = {}
        self._on_change = on_change

    def deliver(self, message: dict[str, Any]) -> None:
        topic = str(message.get("topic"))
        items = message.get("items")
        if not isinstance(items, dict):
            return
        known = self.known.setdefault(topic, {})
        if message.get("replace"):
            items = {**dict.fromkeys(known), **items}
        for key, value in items.items():
            if known.get(key) == value:     # None: absent
                continue
            if value is None:
                known.pop(key, None)
            else:
                known[key] = value
            self._on_change(topic, key, value)


def publish_message(topic: str, items: Items, replace: bool = False) -> dict[str, Any]:
    return {"event": "publish", "topic": topic, "items": items, "replace": replace}
