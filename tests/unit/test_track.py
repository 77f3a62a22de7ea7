"""keepalived's weight rules (vrrp_track.c) and how build.py assigns tracked objects."""

from __future__ import annotations

import pytest
from keepalived_py.config import parse
from keepalived_py.vrrp.build import build_instances
from keepalived_py.vrrp.track import FILE, INTERFACE, PENDING, PROCESS, SCRIPT, Track, evaluate


@pytest.mark.parametrize("kind", [INTERFACE, SCRIPT, PROCESS])
@pytest.mark.parametrize(("weight", "reverse", "up", "expected"), [
    (0, False, True, None), (0, False, False, "fault"),
    (0, True, True, "fault"), (0, True, False, None),
    # a positive weight counts while up, a negative one while down ...
    (10, False, True, 10), (10, False, False, None),
    (-10, False, True, None), (-10, False, False, -10),
    # ... and reverse turns the change round (initialise_*_tracking_priorities)
    (10, True, True, -10), (10, True, False, None),
    (-10, True, True, None), (-10, True, False, 10),
])
def test_up_down_objects(kind: str, weight: int, reverse: bool, up: bool,
                         expected: int | str | None) -> None:
    t = Track(kind, "x", weight, reverse)
    result = evaluate([t], {t.key: up})
    if expected == "fault":
        assert result.faults == {f"{kind}:x"} and result.delta == 0
    else:
        assert not result.faults and result.delta == (expected or 0)


def test_a_script_without_a_result_waits_silently_or_counts_nothing() -> None:
    needed, weighted = Track(SCRIPT, "a", 0), Track(SCRIPT, "b", 20)
    result = evaluate([needed, weighted], {})
    assert result.faults == {PENDING + "script:a"} and result.silent
    assert result.delta == 0
    result = evaluate([needed, weighted], {needed.key: False, weighted.key: None})
    assert result.faults == {"script:a"} and not result.silent


@pytest.mark.parametrize(("value", "weight", "reverse", "expected"), [
    (0, 0, False, None), (3, 0, False, "fault"), (0, 0, True, "fault"), (3, 0, True, None),
    (5, 2, False, 10), (5, 2, True, -10), (-5, 2, False, -10),
    (100, 3, False, 253),                       # capped at 253
    (-127, 2, False, "fault"),                  # -254 or lower: FAULT
    (-126, 2, False, -252),
])
def test_track_file_value_times_weight(value: int, weight: int, reverse: bool,
                                       expected: int | str | None) -> None:
    t = Track(FILE, "f", weight, reverse)
    result = evaluate([t], {t.key: value})
    if expected == "fault":
        assert result.faults == {"file:f"}
    else:
        assert not result.faults and result.delta == (expected or 0)


def test_weights_add_up() -> None:
    tracks = [Track(INTERFACE, "eth1", -20), Track(SCRIPT, "s", 15), Track(FILE, "f", 1)]
    values = {("if", "eth1"): False, ("script", "s"): True, ("file", "f"): 7}
    assert evaluate(tracks, values).delta == -20 + 15 + 7


CONFIG = """
vrrp_script chk {
  script "/bin/true"
  weight 10
}
vrrp_script chk_reverse {
  script "/bin/true"
  weight -5 reverse
}
track_file tf {
  file /tmp/kpy-tf
}
vrrp_track_process tp {
  process sleep
  weight 7
}
%(group)s
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 1
  priority %(priority)s
  track_interface {
    eth1 weight -20
    eth2
  }
  track_script {
    chk
    chk_reverse weight 3 noreverse
  }
  track_file {
    tf
  }
  track_process {
    tp
  }
  virtual_ipaddress {
    198.18.0.1
  }
}
vrrp_instance VI_2 {
  interface eth0
  virtual_router_id 2
  virtual_ipaddress {
    198.18.0.2
  }
}
"""

GROUP = """
vrrp_sync_group SG {
  group {
    VI_1
    VI_2
  }
  track_script {
    chk weight -30
  }
  %s
}
"""


def tracks(group: str = "", priority: int = 100) -> dict[str, set[Track]]:
    result = parse("t.conf", text=CONFIG % {"group": group, "priority": priority})
    return {s.cfg.name: set(s.tracks) for s in build_instances(result.root)}


def test_an_instance_takes_each_objects_own_weight_unless_it_gives_one() -> None:
    got = tracks()["VI_1"]
    assert got == {Track(INTERFACE, "eth0", 0), Track(INTERFACE, "eth1", -20),
                   Track(INTERFACE, "eth2", 0), Track(SCRIPT, "chk", 10),
                   Track(SCRIPT, "chk_reverse", 3, False), Track(FILE, "tf", 1),
                   Track(PROCESS, "tp", 7)}


def test_in_a_sync_group_only_unweighted_objects_of_the_instance_stay() -> None:
    got = tracks(GROUP % "")
    # weighted interface: weight 0; weighted scripts and processes: dropped; a file of
    # weight 1: weight 0 (vrrp_complete_instance); the group's script: on every member
    assert got["VI_1"] == {Track(INTERFACE, "eth0", 0), Track(INTERFACE, "eth1", 0),
                           Track(INTERFACE, "eth2", 0), Track(FILE, "tf", 0),
                           Track(SCRIPT, "chk", -30)}
    assert got["VI_2"] == {Track(INTERFACE, "eth0", 0), Track(SCRIPT, "chk", -30)}


def test_sync_group_tracking_weight_keeps_the_members_weights() -> None:
    got = tracks(GROUP % "sync_group_tracking_weight")
    assert Track(INTERFACE, "eth1", -20) in got["VI_1"]
    assert Track(PROCESS, "tp", 7) in got["VI_1"]
    # tracked by the instance and its group: the group's weight (add_vrrp_to_track_script)
    assert [t for t in got["VI_1"] if t.key == ("script", "chk")] == [Track(SCRIPT, "chk", -30)]


def test_an_address_owner_ignores_weights() -> None:
    got = tracks(priority=255)["VI_1"]
    assert got == {Track(INTERFACE, "eth0", 0), Track(INTERFACE, "eth2", 0),
                   Track(FILE, "tf", 0)}
    # and a group with an owner member tracks its objects without weight
    got = tracks(GROUP % "sync_group_tracking_weight", priority=255)
    assert Track(SCRIPT, "chk", 0) in got["VI_2"]


def test_instances_know_their_sync_group() -> None:
    result = parse("t.conf", text=CONFIG % {"group": GROUP % "", "priority": 100})
    assert {s.cfg.name: s.sync_group for s in build_instances(result.root)} == {
        "VI_1": "SG", "VI_2": "SG"}
