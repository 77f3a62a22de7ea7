"""``keepalived-py status``: the table a person reads."""

from __future__ import annotations

from typing import Any

import pytest
from keepalived_py.children import KINDS
from keepalived_py.core.status import duration, render_status

NOW = 1_760_000_000.0


def answer() -> dict[str, Any]:
    return {
        "ok": True,
        "agent": {
            "version": "0.1.0", "pid": 1234, "started": NOW - 7385,
            "config_file": "/etc/keepalived/keepalived.conf",
            "children": [{"name": "vrrp", "pid": 1240, "running": True, "started": NOW - 3600,
                          "restarts": 2, "last_exit": "killed by SIGKILL"}],
        },
        "vrrp": {
            "pid": 1240, "time": NOW,
            "instances": [
                {"name": "VI_1", "vrid": 51, "interface": "eth0", "family": 4, "version": 2,
                 "state": "MASTER", "base_priority": 150, "effective_priority": 150,
                 "master_address": "198.18.0.1", "master_priority": 150,
                 "advert_interval": 1.0,
                 "vips": ["198.18.0.100/24 dev eth0 scope global",
                          "198.18.0.101/24 dev eth0 scope global"],
                 "last_transition": NOW - 312, "stats": {"advert_sent": 8}},
                {"name": "VI_storage_v6", "vrid": 7, "interface": "bond0.120", "family": 6,
                 "version": 3, "state": "BACKUP", "base_priority": 150,
                 "effective_priority": 140, "master_address": "fe80::1",
                 "vips": ["2001:db8::10/64 dev bond0.120"],
                 "last_transition": NOW - 3 * 86400 - 4 * 3600 - 59},
            ],
            "sync_groups": [],
        },
    }


def columns(header: str) -> dict[str, int]:
    names = ["NAME", "STATE", "PRIO", "VRID", "INTERFACE", "MASTER", "VIPS", "LAST CHANGE"]
    return {name: header.index(name) for name in names}


def cell(row: str, start: int) -> str:
    """The text of the column starting at ``start``: up to the two spaces before the next."""
    assert start == 0 or row[start - 1] == " ", f"column not aligned at {start} in {row!r}"
    return row[start:].split("  ", 1)[0]


def test_header_tells_version_pid_uptime_config_and_children() -> None:
    lines = render_status(KINDS, answer(), now=NOW).splitlines()
    assert lines[0] == ("keepalived-py 0.1.0, pid 1234, up 2h03m, "
                        "config /etc/keepalived/keepalived.conf")
    assert lines[1] == "children: vrrp (pid 1240, 2 restarts, last exit: killed by SIGKILL)"
    assert lines[2] == ""


def test_one_aligned_row_per_instance() -> None:
    lines = render_status(KINDS, answer(), now=NOW).splitlines()
    header, first, second = lines[3:6]
    assert len(lines) == 6
    at = columns(header)
    assert list(at) == sorted(at, key=at.__getitem__)  # in this order, left to right
    assert {name: cell(first, start) for name, start in at.items()} == {
        "NAME": "VI_1", "STATE": "MASTER", "PRIO": "150", "VRID": "51", "INTERFACE": "eth0",
        "MASTER": "198.18.0.1", "VIPS": "2", "LAST CHANGE": "5m12s ago"}
    assert {name: cell(second, start) for name, start in at.items()} == {
        "NAME": "VI_storage_v6", "STATE": "BACKUP", "PRIO": "140 (150)", "VRID": "7",
        "INTERFACE": "bond0.120", "MASTER": "fe80::1", "VIPS": "1",
        "LAST CHANGE": "3d04h ago"}


def test_wide_lists_every_address_under_the_first() -> None:
    lines = render_status(KINDS, answer(), wide=True, now=NOW).splitlines()
    header, first, more, second = lines[3:7]
    vips = header.index("VIPS")
    assert header.endswith("VIPS") and vips > header.index("LAST CHANGE")
    assert first[vips:] == "198.18.0.100/24 dev eth0 scope global"
    assert more[:vips].strip() == "" and more[vips:] == "198.18.0.101/24 dev eth0 scope global"
    assert second.startswith("VI_storage_v6") and second[vips:] == "2001:db8::10/64 dev bond0.120"


def test_plain_ascii_without_trailing_blanks() -> None:
    for wide in (False, True):
        text = render_status(KINDS, answer(), wide=wide, now=NOW)
        assert text.isascii() and "\x1b" not in text
        assert all(line == line.rstrip() for line in text.splitlines())
        assert text.endswith("\n")


def test_missing_fields_show_as_a_dash() -> None:
    sparse = {"ok": True, "agent": {"version": "0.2.0"},
              "vrrp": {"instances": [{"name": "VI_old"}, {"state": "FAULT", "vips": []}]}}
    lines = render_status(KINDS, sparse, now=NOW).splitlines()
    assert lines[0] == "keepalived-py 0.2.0, pid -, up -, config -"
    header, old, nameless = lines[2:5]
    at = columns(header)
    assert [cell(old, at[c]) for c in at] == ["VI_old"] + ["-"] * 7
    assert cell(nameless, at["STATE"]) == "FAULT"
    assert cell(nameless, at["VIPS"]) == "0"
    assert cell(nameless, at["PRIO"]) == "-"


def test_effective_priority_alone_or_equal_to_base_has_no_brackets() -> None:
    base_only = {"ok": True, "agent": {}, "vrrp": {"instances": [
        {"name": "a", "base_priority": 100},
        {"name": "b", "effective_priority": 90},
        {"name": "c", "base_priority": 100, "effective_priority": 100},
        {"name": "d", "base_priority": 100, "effective_priority": 0},
    ]}}
    rows = render_status(KINDS, base_only, now=NOW).splitlines()[2:]
    prio = columns(rows[0])["PRIO"]
    assert [cell(row, prio) for row in rows[1:]] == ["100", "90", "100", "0 (100)"]


@pytest.mark.parametrize("vrrp", [None, "garbage", 7])
def test_no_vrrp_child(vrrp: Any) -> None:
    text = render_status(KINDS, {"ok": True, "agent": {"version": "0.1.0"}, "vrrp": vrrp}, now=NOW)
    assert text.splitlines()[-1] == "no VRRP process running"


def test_wrong_types_do_not_crash() -> None:
    odd = {"ok": True,
           "agent": {"started": "yesterday", "children": ["vrrp", {"name": "bfd",
                                                                    "running": False}]},
           "vrrp": {"instances": ["VI_1", {"name": "VI_2", "last_transition": None,
                                           "vips": "10.0.0.1", "stats": None}],
                    "sync_groups": [{"name": "G1", "state": "MASTER"}, "G2"]}}
    lines = render_status(KINDS, odd, now=NOW).splitlines()
    assert lines[0].endswith("up -, config -")
    assert lines[1] == "children: bfd (not running)"
    assert lines[4].startswith("VI_2") and lines[4].endswith("-")
    assert lines[-1] == "sync groups: G1 (MASTER)"


def test_no_instances_and_an_error_answer() -> None:
    empty = {"ok": True, "agent": {}, "vrrp": {"instances": []}}
    assert render_status(KINDS, empty, now=NOW).splitlines()[-1] == "no VRRP instances"
    error = render_status(KINDS, {"ok": False, "error": "reload failed"})
    assert error == "keepalived-py: error: reload failed\n"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (60, "1m00s"), (312, "5m12s"), (3599, "59m59s"),
    (3600, "1h00m"), (7385, "2h03m"), (86399, "23h59m"), (86400, "1d00h"),
    (3 * 86400 + 4 * 3600 + 59, "3d04h"), (-5, "0s"),
])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
