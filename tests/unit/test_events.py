"""Events between children through the parent (agent/core/events.py), with two fake children.

A producer (VRRP's part: instance states) and a consumer (the checker's part)
talk only through the parent's EventHub, as the real children do over their
IPC lines.  The real thing, with processes, is in tests/integration/test_agents.py.
"""

from __future__ import annotations

from typing import Any

from keepalived_py.core.events import EventHub, Subscriptions, publish_message

TOPIC = "vrrp.instance"


class FakeChild:
    """A consumer child: what reached it, and what it believes now."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.changes: list[tuple[str, str, Any]] = []
        self.subs = Subscriptions(lambda t, k, v: self.changes.append((t, k, v)))
        self.alive = True

    def send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            raise ConnectionResetError("gone")
        self.messages.append(message)
        self.subs.deliver(message)

    @property
    def believes(self) -> dict[str, Any]:
        return self.subs.known.get(TOPIC, {})


def publish(hub: EventHub, items: dict[str, Any], replace: bool = False,
            producer: str = "vrrp") -> None:
    message = publish_message(TOPIC, items, replace)     # what a producer child sends
    hub.publish(producer, message["topic"], message["items"], message["replace"])


def test_a_consumer_gets_the_current_state_then_every_change_in_order() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    publish(hub, {"VI_1": {"state": "BACKUP"}, "VI_2": {"state": "MASTER"}}, replace=True)
    checker = FakeChild()
    hub.attach("checker", {TOPIC}, checker.send)
    assert checker.messages == [{"event": "deliver", "topic": TOPIC, "replace": True,
                                 "items": {"VI_1": {"state": "BACKUP"},
                                           "VI_2": {"state": "MASTER"}}}]
    for state in ("MASTER", "BACKUP", "FAULT", "BACKUP"):
        publish(hub, {"VI_1": {"state": state}})
    publish(hub, {"VI_2": {"state": "MASTER"}})          # no change: nothing sent
    assert [c for c in checker.changes if c[1] == "VI_1"][1:] == [
        (TOPIC, "VI_1", {"state": s}) for s in ("MASTER", "BACKUP", "FAULT", "BACKUP")]
    assert len(checker.messages) == 5


def test_a_restarting_consumer_gets_the_state_it_missed_when_it_is_back() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    publish(hub, {"VI_1": {"state": "MASTER"}, "VI_2": {"state": "MASTER"}}, replace=True)
    checker = FakeChild()
    hub.attach("checker", {TOPIC}, checker.send)
    hub.detach("checker")                    # it died; the parent restarts it
    publish(hub, {"VI_1": {"state": "BACKUP"}})
    publish(hub, {"VI_2": None})             # removed by a reload
    assert len(checker.messages) == 1        # nothing reached it meanwhile
    reborn = FakeChild()                     # a new process knows nothing
    hub.attach("checker", {TOPIC}, reborn.send)
    assert reborn.believes == {"VI_1": {"state": "BACKUP"}}
    # the old process' belief, updated by the same delivery, also comes right: a key
    # it knew and that is gone now is reported gone
    checker.changes.clear()
    checker.subs.deliver(reborn.messages[0])
    assert checker.changes == [(TOPIC, "VI_1", {"state": "BACKUP"}), (TOPIC, "VI_2", None)]


def test_a_consumer_that_dies_while_sent_to_is_detached() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    checker = FakeChild()
    hub.attach("checker", {TOPIC}, checker.send)
    checker.alive = False
    publish(hub, {"VI_1": {"state": "MASTER"}})
    checker.alive = True
    publish(hub, {"VI_1": {"state": "BACKUP"}})
    assert len(checker.messages) == 1        # only the first, empty, current state
    assert hub.current[TOPIC] == {"VI_1": {"state": "BACKUP"}}


def test_a_restarted_producer_republishes_and_what_it_lost_is_withdrawn() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    publish(hub, {"VI_1": {"state": "MASTER"}, "VI_2": {"state": "BACKUP"}}, replace=True)
    checker = FakeChild()
    hub.attach("checker", {TOPIC}, checker.send)
    assert hub.state_of("vrrp") == {TOPIC: {"VI_1": {"state": "MASTER"},
                                            "VI_2": {"state": "BACKUP"}}}
    publish(hub, {"VI_1": {"state": "MASTER"}}, replace=True)     # VI_2 is no more
    assert checker.believes == {"VI_1": {"state": "MASTER"}}
    assert checker.changes[-1] == (TOPIC, "VI_2", None)
    hub.withdraw("vrrp")                     # the VRRP child is no longer wanted
    assert checker.believes == {}
    assert hub.state_of("vrrp") == {TOPIC: {}}


def test_the_producer_does_not_hear_itself_and_a_topic_has_one_owner() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    vrrp, checker = FakeChild(), FakeChild()
    hub.attach("vrrp", {TOPIC}, vrrp.send)
    hub.attach("checker", {TOPIC}, checker.send)
    publish(hub, {"VI_1": {"state": "MASTER"}})
    publish(hub, {"VI_1": {"state": "FAULT"}}, producer="bfd")   # not its topic
    hub.publish("vrrp", "bfd.session", {"s1": {"state": "Up"}})   # declared by nobody
    assert len(vrrp.messages) == 1           # the initial current state only
    assert checker.believes == {"VI_1": {"state": "MASTER"}}
    assert hub.current[TOPIC] == {"VI_1": {"state": "MASTER"}}
    assert "bfd.session" not in hub.current


def test_a_child_that_consumes_nothing_gets_nothing() -> None:
    hub = EventHub({TOPIC: "vrrp"})
    vrrp = FakeChild()
    hub.attach("vrrp", set(), vrrp.send)
    publish(hub, {"VI_1": {"state": "MASTER"}})
    assert vrrp.messages == []
