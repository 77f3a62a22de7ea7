"""What tracked objects do to an instance: keepalived's weight rules (vrrp_track.c).

An instance (or its sync group) tracks interfaces, vrrp_scripts, track_files
and vrrp_track_processes, each with a weight.  Weight 0 means "FAULT while the
object is down"; any other weight moves the priority.  keepalived keeps a
running total and adjusts it on each change; here the total is worked out
from the objects' current states every time, which gives the same numbers
and cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

INTERFACE, SCRIPT, FILE, PROCESS = "if", "script", "file", "process"
PENDING = "init:"       # prefix of a fault reason that is never notified
FILE_FAULT = -254       # a file status at or below this puts the instance in FAULT

Value = bool | int | None


@dataclass(frozen=True)
class Track:
    """One tracked object of an instance, with the weight this instance gives it."""

    kind: str           # INTERFACE, SCRIPT, FILE or PROCESS
    name: str
    weight: int
    reverse: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def reason(self) -> str:
        """The fault reason this object gives when it puts the instance in FAULT."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Tracking:
    faults: frozenset[str]      # reasons for FAULT (including the PENDING ones)
    delta: int                  # added to the base priority

    @property
    def silent(self) -> bool:
        return only_pending(self.faults)


def only_pending(faults: Iterable[str]) -> bool:
    """FAULT only because tracked scripts have not answered yet: keepalived sends
    no notify for that state."""
    faults = list(faults)
    return bool(faults) and all(f.startswith(PENDING) for f in faults)


def effect(track: Track, value: Value) -> int | str | None:
    """What one object in state ``value`` does: a priority change (int), a fault
    reason (str), or nothing (None).

    ``value`` is up/down (bool) for interfaces, scripts and processes, None
    for a script that has not finished a first run, and the number read for
    a file.
    """
    if track.kind == FILE:
        return _file_effect(track, int(value or 0))
    if value is None:
        # keepalived's script INIT state: no priority change yet, and an
        # instance that needs the script to be up waits in a silent FAULT.
        return PENDING + track.reason if track.weight == 0 else None
    up = bool(value)
    if track.weight == 0:
        return track.reason if up == track.reverse else None
    counts = up if track.weight > 0 else not up
    if not counts:
        return None
    return -track.weight if track.reverse else track.weight


def _file_effect(track: Track, number: int) -> int | str | None:
    if track.weight == 0:
        return track.reason if (number != 0) != track.reverse else None
    status = number * track.weight * (-1 if track.reverse else 1)
    if status <= FILE_FAULT:
        return track.reason
    return min(status, 253) or None


def evaluate(tracks: Iterable[Track], values: Mapping[tuple[str, str], Value]) -> Tracking:
    """The faults and priority change of an instance from its objects' states.

    An object without a known state counts as down (an interface that is
    missing) or not answered (a script) – the caller fills ``values``.
    """
    faults: set[str] = set()
    delta = 0
    for track in tracks:
        outcome = effect(track, values.get(track.key))
        if isinstance(outcome, str):
            faults.add(outcome)
        elif outcome:
            delta += outcome
    return Tracking(frozenset(faults), delta)
