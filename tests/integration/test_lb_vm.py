"""Load balancing side by side with keepalived 2.2.7, in a throw-away VM (tests/vm/).

One boot for the module: the session fixture runs lb_vm_batch.py inside the VM, which
builds two identical setups (a director, real servers, a sorry server, a client: one
for keepalived-py, one for keepalived 2.2.7), applies the same script of events to
both and records, after each, the IPVS table, the notify FIFO lines and the notify
scripts' lines of each side; then measures the client-visible figures.

For each event the test asserts what our side must show, then that keepalived's side
shows the same, except where a difference is listed here (``DIFFERENCES`` and the
keepalived table of the event in lb_vm_batch.EVENTS), each with its entry in
docs/lb-differences.md: a new difference fails the test.  The same for the two data
dumps (keepalived_check.data, compared line by line: tests/check_dump.py and
``DUMP_DIFFERENCES``).  The HTTPS server's certificate is made here (openssl), once.
"""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import check_dump
from tests.conftest import REPO, tier_missing
from tests.integration import lb_vm_batch as batch
from tests.integration.conftest import report
from tests.vm import runner

pytestmark = [pytest.mark.root, pytest.mark.vm]

BOOT_TIMEOUT = 900.0        # seconds; one boot and the batch take about 4-5 minutes
DOC = REPO / "docs" / "lb-differences.md"
VIP = batch.VIP
EVENTS = {event.name: event for event in batch.ALL_EVENTS}


def rs_line(octet: str, port: int, up: bool) -> str:
    rs_port = batch.RS_PORTS.get(port, 8080)
    return f"RS [198.18.2.{octet}]:tcp:{rs_port} [{VIP}]:tcp:{port} {'UP' if up else 'DOWN'}"


def vs_line(port: int, up: bool) -> str:
    return f"VS [{VIP}]:tcp:{port} {'UP' if up else 'DOWN'}"


# What our side must write to the lvs_notify_fifo (in this order) and what its notify
# scripts must append (in any order: they run side by side), event by event.
EXPECTED_LINES: dict[str, tuple[list[str], list[str]]] = {
    # the alpha .12 comes up after its first check; the alpha .13 fails its first one
    # quietly (it never was up); no line for the non-alpha .11 (rs_init_notifies off)
    "start": ([vs_line(80, True), vs_line(81, True), vs_line(82, True), vs_line(84, True),
               vs_line(85, True), rs_line("12", 80, True)], ["B quorum_up", "A12 up"]),
    "tcp_server_stopped": ([rs_line("12", 80, False)], ["A12 down"]),
    "tcp_server_back": ([rs_line("12", 80, True)], ["A12 up"]),
    "http_status_404": ([rs_line("11", 80, False)], ["A11 down"]),
    "http_status_200": ([rs_line("11", 80, True)], ["A11 up"]),
    "digest_fixed": ([rs_line("13", 80, True)], ["A13 up"]),
    "digest_changed": ([rs_line("13", 80, False)], ["A13 down"]),
    # two SSL_GETs on one server: one line when the first fails, one when both pass again
    # (its only server: :85's live weight falls under its quorum 1, and back)
    "https_server_stopped": ([rs_line("13", 85, False), vs_line(85, False)], ["G13 down"]),
    "https_server_back": ([rs_line("13", 85, True), vs_line(85, True)], ["G13 up"]),
    "https_digest_changed": ([rs_line("13", 85, False), vs_line(85, False)], ["G13 down"]),
    "https_digest_fixed": ([rs_line("13", 85, True), vs_line(85, True)], ["G13 up"]),
    "file_value_3": ([rs_line("13", 82, False)], ["C13 down"]),
    "file_value_0": ([rs_line("13", 82, True)], ["C13 up"]),
    "misc_fails_quorum_lost": ([rs_line("11", 81, False), vs_line(81, False)],
                               ["B11 down", "B quorum_down"]),
    "misc_ok_quorum_gained": ([rs_line("11", 81, True), vs_line(81, True)],
                              ["B11 up", "B quorum_up"]),
    "misc_dynamic_weight": ([], []),
    "dump_data": ([], []),
    "misc_timeout": ([rs_line("11", 84, False), vs_line(84, False)], ["E11 down"]),
    "misc_ok_after_timeout": ([rs_line("11", 84, True), vs_line(84, True)], ["E11 up"]),
    # the removed server's notify_down is the one the previous configuration gave it
    "reload_vs_removed": ([rs_line("11", 84, False), vs_line(84, False)], ["E11 down"]),
    "reload_unchanged": ([], []),
    "reload_rs_added": ([], []),
    "reload_rs_removed": ([rs_line("12", 80, False)], ["A12 down"]),
    "reload_checker_changed": ([], []),
    "reload_vs_added": ([vs_line(83, True)], []),
    "reload_scheduler_changed": ([], []),
    "reload_weight_changed": ([], []),
    "dump_data_after_reloads": ([], []),
    # without omega, a stop notifies nothing
    "shutdown_default": ([], []),
    "start_flush_config": ([vs_line(80, True)], []),
    "shutdown_flush_on_stop": ([], []),
}


@dataclass(frozen=True)
class Difference:
    """Where keepalived 2.2.7 shows something else than we do, on purpose: ``anchor``
    is its entry in docs/lb-differences.md; the lines are the evidence in each side's
    log. Keepalived's table, when it differs, is the event's ``keepalived_table``."""

    anchor: str
    our_log: tuple[str, ...] = ()
    their_log: tuple[str, ...] = ()
    not_in_their_log: tuple[str, ...] = ()


DIFFERENCES: dict[str, Difference] = {
    "misc_ok_after_timeout": Difference(
        "misc-weight-after-timeout",
        their_log=("Misc check for [[198.18.2.11]:tcp:8080 VS [198.18.1.10]:tcp:84] by "
                   "[/run/lb/ka/misc.sh] succeeded.",)),
    "reload_rs_removed": Difference(
        "drain-on-reload",
        our_log=(f"Draining service [198.18.2.12]:tcp:8080 from VS [{VIP}]:tcp:80",),
        their_log=(f"Removing service [198.18.2.12]:tcp:8080 from VS [{VIP}]:tcp:80",),
        not_in_their_log=("Draining",)),
}
# where our data dump says something else than keepalived's for the same state, by dump
DUMP_DIFFERENCES: dict[str, tuple[check_dump.BlockDifference, ...]] = {
    # .13's HTTP_GET on :80 failed before the reloads (its page lacks the digest): the
    # reloads kept its retry count and its failed url; 2.2.7 caps the count at retry - 1
    # (0) and forgets the url
    "dump_data_after_reloads": (check_dump.BlockDifference(
        "reload-http-retry-state", " [198.18.1.10]:tcp:80 -> [198.18.2.13]:tcp:8080",
        theirs=("   Retries iterations = 0",),
        ours=("   Retries iterations = 2", "   Failed URL = /digest.html")),),
}
# differences seen in the figures, not in an event's table or lines
FIGURE_DIFFERENCES = ("tcp-down-cadence",)

Seen = dict[str, Any]


@pytest.fixture(scope="session")
def lb_run(request: pytest.FixtureRequest, root_only: None,
           tmp_path_factory: pytest.TempPathFactory) -> Seen:
    try:
        runner.check_tools()
        runner.find_kernel()
    except runner.VmUnavailable as e:
        tier_missing(f"vm tier: {e}")
    if not (REPO / ".venv" / "bin" / "keepalived-py").is_file():
        tier_missing("vm tier: no .venv/bin/keepalived-py (pip install -e .)")
    if not Path(batch.KEEPALIVED).is_file():
        tier_missing("vm tier: keepalived 2.2.7 is not installed (apt-get install keepalived)")
    if shutil.which("openssl") is None:
        tier_missing("vm tier: no openssl command, the HTTPS real server (apt-get install openssl)")
    # the guest would compile them on every start of a daemon, slowly, into its RAM
    compileall.compile_dir(REPO / "agent", quiet=1)
    py_compile.compile(batch.__file__)
    python = REPO / ".venv" / "bin" / "python"
    share = tmp_path_factory.mktemp("lb-vm")      # kept by pytest: the daemons' logs
    tls = make_certificate(share / "tls")
    script = (f"cd {REPO} && exec {python} -m tests.integration.lb_vm_batch "
              f"\"$KPY_VM_SHARE/results\" {tls}\n")
    load_before = os.getloadavg()
    result = runner.boot(script, timeout=BOOT_TIMEOUT, share=share)
    load_after = os.getloadavg()
    results = share / "results" / "lb.json"
    if result.status != 0 or not results.is_file():
        pytest.fail(f"the load-balancing batch failed in the VM (exit {result.status}):\n"
                    f"{result.output[-5000:]}")
    seen: Seen = json.loads(results.read_text())
    seen["share"] = str(share)
    report(request.config, f"lb: one boot, {len(batch.ALL_EVENTS)} events side by side with "
           f"keepalived 2.2.7 and 3 figures: {result.seconds:.0f} s (host load "
           f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; VM load "
           f"{'/'.join(seen['loadavg_vm'])}, longest VM stall {seen['stalls']['worst']:.1f} s;"
           f" logs in {share})", tier="vm tier")
    for line in figure_lines(seen.get("figures", {})):
        report(request.config, f"lb: {line}", tier="vm tier")
    return seen


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate and its key for the HTTPS real server, made here: key
    generation in the emulated VM is slow.  P-256: the cheapest handshake there."""
    directory.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={batch.SNI_NAME}",
                    "-days", "2", "-keyout", str(directory / "key.pem"),
                    "-out", str(directory / "cert.pem")], check=True, capture_output=True)
    return directory


def figure_lines(figures: Seen) -> list[str]:
    """The client-visible figures, one line each, for the log and the README."""
    lines = []
    failure = figures.get("failure")
    if failure:
        def case(name: str) -> str:
            c = failure["cases"].get(name, {})
            if "detection" not in c:
                return "not measured"
            return (f"{c['detection']:.2f} s after its first failed check "
                    f"(delay_loop part {c['delay_loop_part']:.2f} s, VM stalled "
                    f"{c['vm_stalled']:.2f} s meanwhile)")
        lines.append(f"a failing server leaves the table (bound {failure['bound']:.1f} s): "
                     f"stopped {case('py_stopped')}, black-holed {case('py_blackholed')}; "
                     f"keepalived 2.2.7: {case('ka_stopped')}, {case('ka_blackholed')}")
    removal = figures.get("reload_removal")
    if removal:
        parts = []
        for side, name in (("py", "keepalived-py"), ("ka", "keepalived 2.2.7")):
            s = removal["sides"].get(side)
            if s:
                parts.append(f"{name} {s['failed']} of {s['requests']} requests lost "
                             f"({s['requests'] / s['seconds']:.0f}/s)")
        lines.append("a reload removes a server under traffic: " + ", ".join(parts))
    killed = figures.get("checker_killed")
    if killed:
        client = killed["client"]
        lines.append(f"our checker killed -9 under traffic: restarted in "
                     f"{killed['restart_seconds']:.1f} s, {len(killed['history']) - 1} table "
                     f"changes over {killed['polls']} polls, {client['failed']} of "
                     f"{client['requests']} requests lost "
                     f"({client['requests'] / killed['observed_seconds']:.0f}/s)")
    timings = figures.get("timings")
    if timings:
        lines.append(f"batch timings (s): {timings}")
    return lines


def record_of(seen: Seen, name: str) -> Seen:
    found = [r for r in seen["events"] if r["event"] == name]
    assert found, f"event {name} did not run; errors in the VM:\n" + "\n".join(seen["errors"])
    return found[0]


def test_the_batch_ran_without_errors(lb_run: Seen) -> None:
    assert lb_run["errors"] == []
    assert [r["event"] for r in lb_run["events"]] == list(EVENTS)


@pytest.mark.parametrize("name", list(EVENTS))
def test_event(lb_run: Seen, name: str) -> None:
    event = EVENTS[name]
    record = record_of(lb_run, name)
    ours, theirs = record["sides"]["py"], record["sides"]["ka"]

    # our side: the table we must have (as ipvsadm -Ln lists it, and the kernel's
    # /proc/net/ip_vs the same), the FIFO lines in order, the scripts' lines
    assert ours["table"] == event.expect, f"{name}: {event.doc}"
    assert ours["polled_table"] is None
    fifo, notify = EXPECTED_LINES[name]
    assert ours["fifo"] == fifo
    assert sorted(ours["notify"]) == sorted(notify)

    # keepalived 2.2.7's side: the same, but for the listed differences
    difference = DIFFERENCES.get(name)
    if event.keepalived_table is not None:
        assert difference is not None, f"{name}: keepalived's table differs, unlisted"
    assert theirs["table"] == (event.keepalived_table or ours["table"])
    assert theirs["polled_table"] is None
    assert theirs["fifo"] == ours["fifo"]
    assert sorted(theirs["notify"]) == sorted(ours["notify"])
    if difference is not None:
        for line in difference.our_log:
            assert any(line in logged for logged in ours["log"]), line
        for line in difference.their_log:
            assert any(line in logged for logged in theirs["log"]), line
        for text in difference.not_in_their_log:
            assert not any(text in logged for logged in theirs["log"]), text


def _first_table_with(history: list[Seen], service: str, *servers: str) -> Seen:
    return next(t[service] for t in history
                if service in t and all(s in t[service] for s in servers))


def test_start_puts_non_alpha_servers_in_before_any_check(lb_run: Seen) -> None:
    """Non-alpha servers are in the kernel from the start (#2064), alpha ones after their
    first success, an alpha inhibit_on_failure one at weight 0 until then: seen in the
    first table of each side that had .11 and .13, before .12's first check."""
    record = record_of(lb_run, "start")
    service = batch.svc(80, "wrr")
    for side in ("py", "ka"):
        first = _first_table_with(record["sides"][side]["history"], service,
                                  batch.rs("11"), batch.rs("13"))
        assert first == {batch.rs("11"): "Masq 3", batch.rs("13"): "Masq 0"}, side


def test_a_failing_server_leaves_the_table_in_time(lb_run: Seen) -> None:
    """Within connect_timeout + retry x delay_before_retry + 0.5 s of its first failed
    check: a stopped server (its probes refused at once) and a black-holed one (the
    connect_timeout runs out); the delay_loop part (from the failure to the first
    probe) is reported apart."""
    failure = lb_run["figures"]["failure"]
    assert failure["stopped_gone"] and failure["blackholed_gone"] and failure["back"]
    for name in ("py_stopped", "py_blackholed"):
        case = failure["cases"][name]
        assert case["detection"] <= failure["bound"], (name, case)
        # the first probe after the failure came within a delay_loop (and a margin)
        assert case["delay_loop_part"] <= failure["delay_loop"] + 0.5, (name, case)
    # refused at once: the real server's kernel answered the probes with a reset; the
    # black hole answered nothing
    assert failure["cases"]["py_stopped"]["resets"]
    assert failure["cases"]["py_blackholed"]["resets"] == []


def test_a_down_server_is_probed_every_delay_loop(lb_run: Seen) -> None:
    """Ours every delay_loop; keepalived 2.2.7 counts retries again while down and
    alternates delay_before_retry and delay_loop (tcp-down-cadence)."""
    failure = lb_run["figures"]["failure"]
    ours = failure["cases"]["py_stopped"]["down_intervals"]
    theirs = failure["cases"]["ka_stopped"]["down_intervals"]
    assert len(ours) >= 2 and len(theirs) >= 2
    assert all(abs(i - failure["delay_loop"]) < 0.5 for i in ours), ours
    assert any(abs(i - failure["delay_before_retry"]) < 0.5 for i in theirs), theirs


def test_removing_a_server_by_reload_under_traffic_loses_no_request(lb_run: Seen) -> None:
    removal = lb_run["figures"]["reload_removal"]
    assert removal["gone"] and removal["reloaded"]
    ours = removal["sides"]["py"]
    assert ours["failed"] == 0, ours["failures"]
    assert ours["requests"] >= 50 and ours["after_reload"]["requests"] >= 30
    # drained: at weight 0 first (no new connection), deleted when the drain time ran
    # out (the client's connections linger in TIME_WAIT)
    service = batch.svc(80, "rr")
    weights = [t[service].get(batch.rs("11")) for _, t in ours["history"]]
    assert weights[0] == "Masq 1" and "Masq 0" in weights and weights[-1] is None
    drained = [at for at, t in ours["history"] if t[service].get(batch.rs("11")) == "Masq 0"]
    gone = next(at for at, t in ours["history"] if batch.rs("11") not in t[service])
    assert gone - drained[0] >= batch.DRAIN_TIME - 0.5


def test_our_checker_killed_is_restarted_and_adopts_the_kernel_table(lb_run: Seen) -> None:
    killed = lb_run["figures"]["checker_killed"]
    assert killed["restarted"]
    # the table was never emptied, nor changed, while the new process started: it
    # adopted what the kernel had instead of flushing it
    assert [table for _, table in killed["history"]] == [killed["before"]]
    service = killed["before"][batch.svc(80, "rr")]
    assert service == {batch.rs("12"): "Masq 1", batch.rs("13"): "Masq 1"}
    assert killed["polls"] >= 5 * killed["observed_seconds"]
    assert killed["client"]["failed"] == 0, killed["client"]["failures"]
    assert killed["client"]["requests"] >= 100


def test_ssl_get_sends_sni_only_with_enable_sni(lb_run: Seen) -> None:
    """The HTTPS server saw, on both sides, the digested page asked for with the SNI
    name (enable_sni, the checker's virtualhost) and the other page without one."""
    for side in ("py", "ka"):
        seen = lb_run["https"][side]
        assert seen.get(f"{batch.SNI_NAME} /ssl.html", 0) >= 5, (side, seen)
        assert seen.get("- /status.html", 0) >= 5, (side, seen)
        assert set(seen) == {"ready", f"{batch.SNI_NAME} /ssl.html", "- /status.html"}, \
            (side, seen)


DUMPS = [name for name in EVENTS if name.startswith("dump_data")]


@pytest.mark.parametrize("label", DUMPS)
def test_the_data_dump_is_keepalived_s(lb_run: Seen, label: str) -> None:
    """keepalived_check.data of both checker processes, written on SIGUSR1 in the same
    state: line for line the same once times and each side's directory are masked,
    but for the differences listed in tests/check_dump.py (check-data-dump)."""
    dumps = Path(lb_run["share"]) / "results" / "dumps"
    ours = check_dump.normalise((dumps / f"{label}-py.data").read_text(), "/run/lb/py")
    theirs = check_dump.normalise((dumps / f"{label}-ka.data").read_text(), "/run/lb/ka")
    assert check_dump.has_config_parts(ours)     # the global definitions and the rest
    for difference in DUMP_DIFFERENCES.get(label, ()):
        ours = check_dump.without_block_lines(ours, difference.header, difference.ours)
        theirs = check_dump.without_block_lines(theirs, difference.header, difference.theirs)
    a, b = check_dump.comparable(ours, theirs)
    assert a == b


def test_every_difference_is_documented(lb_run: Seen) -> None:
    headings = [line for line in DOC.read_text().splitlines() if line.startswith("#")]
    anchors = [d.anchor for d in DIFFERENCES.values()] + list(FIGURE_DIFFERENCES)
    anchors += [d.anchor for ds in DUMP_DIFFERENCES.values() for d in ds]
    anchors += [check_dump.ANCHOR]
    for anchor in anchors:
        assert any(f"`{anchor}`" in line for line in headings), anchor
