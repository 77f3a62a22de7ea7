"""vrrp_sync_group: instances that change state together (keepalived's vrrp_sync.c).

A group is FAULT while any member has a fault of its own (the others are
held in FAULT with the reason ``sync:<group>``), MASTER once every member
wants to be master (or one already is), and BACKUP otherwise; a master
member that steps down takes the others down with it.  The group drives
its members' engines and returns their actions; like the engines, it never
does I/O itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .engine import Action, Instance, State
from .track import only_pending


@dataclass
class SyncGroup:
    name: str
    members: tuple[str, ...]
    state: State = State.INIT
    # a FAULT that only waits for scripts' first results is not notified (as keepalived)
    silent: bool = False
    _busy: bool = field(default=False, repr=False)

    @property
    def reason(self) -> str:
        return f"sync:{self.name}"

    def own_faults(self, engine: Instance) -> frozenset[str]:
        return frozenset(r for r in engine.fault_reasons if r != self.reason)

    def update(self, now: float, engines: Mapping[str, Instance]
               ) -> tuple[list[tuple[str, list[Action]]], tuple[State, State] | None]:
        """Bring the members in line after any of them changed (a transition, a fault
        reason, a wish to be master).  Returns the members' actions, and the group's
        own transition if it had one.  Calls made while it is at work are ignored:
        the members' transitions it causes come back here."""
        if self._busy:
            return [], None
        self._busy = True
        try:
            return self._update(now, [(m, engines[m]) for m in self.members if m in engines])
        finally:
            self._busy = False

    def _update(self, now: float, members: list[tuple[str, Instance]]
                ) -> tuple[list[tuple[str, list[Action]]], tuple[State, State] | None]:
        out: list[tuple[str, list[Action]]] = []
        old = self.state
        states = [e.state for _, e in members]
        if State.INIT in states:
            return out, None            # starting or stopping: nothing to keep in step yet
        faults = [f for _, e in members for f in self.own_faults(e)]
        if faults:
            self.silent = only_pending(faults)
            self.state = State.FAULT
            for name, e in members:
                if self.reason not in e.fault_reasons:
                    out.append((name, e.link(now, False, self.reason)))
        elif old == State.FAULT:
            self.state = State.BACKUP
            for name, e in members:
                out.append((name, e.link(now, True, self.reason)))
        elif old == State.MASTER and any(s != State.MASTER for s in states):
            self.state = State.BACKUP
            for name, e in members:
                out.append((name, e.sync_backup(now)))
        elif old != State.MASTER and (
                State.MASTER in states
                or all(e.wants_master or e.state == State.MASTER for _, e in members)):
            self.state = State.MASTER
            for name, e in members:
                out.append((name, e.sync_master(now)))
            if any(e.state != State.MASTER for _, e in members):
                # a held member (maintenance) keeps the whole group back
                self.state = State.BACKUP
                for name, e in members:
                    out.append((name, e.sync_backup(now)))
        elif old == State.INIT:
            self.state = State.MASTER if all(s == State.MASTER for s in states) else State.BACKUP
        return out, (old, self.state) if self.state != old else None
