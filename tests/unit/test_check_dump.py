"""Our keepalived_check.data against the one keepalived 2.2.7 wrote, for the same
configuration in the same state, without a VM.

The reference (data/keepalived-2.2.7-check/) comes from the VM tier
(tests/integration/lb_vm_batch.py, event ``dump_data``): keepalived 2.2.7 read
``keepalived.conf`` (its directory /run/lb/ka), went through the tier's events up to
``misc_dynamic_weight`` and wrote ``keepalived_check.data`` on SIGUSR1.  The state it
shows then: every server up but .13 on :80, whose page does not have its digest
(alpha, inhibit_on_failure: down, still in the kernel at weight 0); :84's
misc_dynamic script exits 7 (weight 5); the track file holds 0.

Here the same configuration (its directory rewritten to a temporary one holding the
scripts, so that their users resolve) goes through our engine on a simulated clock,
its probes answered as the VM's servers answered, and is dumped.  Both dumps are
compared line by line (tests/check_dump.py): equal, but for the listed differences.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from keepalived_py.check import engine as E
from keepalived_py.check.dumps import _status_ranges, cmd_str, data_dump
from keepalived_py.check.snapshot import check_snapshot
from keepalived_py.check.spec import build
from keepalived_py.config import load
from keepalived_py.host.scripts import config_scripts

from tests import check_dump

DATA = Path(__file__).parent / "data" / "keepalived-2.2.7-check"
THEIR_DIR = "/run/lb/ka"


def _answer(probe: E.RunProbe) -> tuple[bool, int | None]:
    """What the VM's servers answered at the dump: ok, and a MISC_CHECK's dynamic
    weight (its exit status - 2)."""
    vs_key, (ip, _), _ = probe.ref
    port = vs_key[3]
    if (port, ip) == (80, "198.18.2.13"):       # the page lacks its digest
        return False, None
    if (port, probe.spec.kind) == (84, "MISC_CHECK"):
        return True, 7 - 2
    return True, None


def run_to_dump_state(tmp_path: Path) -> tuple[str, str]:
    """Our dump and keepalived's, for the reference configuration in the reference
    state; the paths in both written with ``DIR``."""
    text = (DATA / "keepalived.conf").read_text().replace(THEIR_DIR, str(tmp_path))
    for script in ("notify.sh", "misc.sh"):
        (tmp_path / script).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / script).chmod(0o755)
    (tmp_path / "track").write_text("0\n")
    root = load(str(tmp_path / "keepalived.conf"), text=text).root
    scripts = config_scripts(root)
    pool = E.Pool(build(root).servers, rng=random.Random(1))
    now = 0.0
    pool.start(now, file_values={"tfile": 0})
    pending: list[tuple[float, E.RunProbe]] = []
    while now < 30.0:
        deadline = pool.next_deadline()
        now = min([t for t in [deadline, *(t for t, _ in pending)] if t is not None] or [30.0])
        for t, probe in [p for p in pending if p[0] <= now]:
            pending.remove((t, probe))
            ok, weight = _answer(probe)
            pool.result(probe.ref, ok, now, weight=weight,
                        error="" if ok else "MD5 digest mismatch")
        for probe in pool.due(now):
            pending.append((now + 0.05, probe))
    snap = check_snapshot(pool, now=now, plane={"name": "ipvs"}, counters={},
                          fifo_lines=[], probes_run=0, root=root, scripts=scripts,
                          detail=True)
    return data_dump(snap), (DATA / "keepalived_check.data").read_text()


def test_the_data_dump_has_keepalived_lines(tmp_path: Path) -> None:
    ours, theirs = run_to_dump_state(tmp_path)
    ours_lines = check_dump.normalise(ours, str(tmp_path))
    their_lines = check_dump.normalise(theirs, THEIR_DIR)
    a, b = check_dump.comparable(ours_lines, their_lines)
    assert a == b


def test_the_reference_differs_only_where_listed(tmp_path: Path) -> None:
    """Each listed difference is seen in the reference: a stale entry fails."""
    ours, theirs = run_to_dump_state(tmp_path)
    for difference in check_dump.DIFFERENCES:
        assert any(line.startswith(difference.prefix) for line in theirs.splitlines()), \
            difference.prefix
        assert any(line.startswith(difference.prefix) for line in ours.splitlines()) \
            != difference.theirs_only, difference.prefix


@pytest.mark.parametrize(("ranges", "text"), [
    ([[200, 299]], ["200-299"]),
    ([[200, 200]], ["200"]),
    ([[200, 200], [201, 204], [404, 404]], ["200-204", "404"]),
    ([[599, 700]], ["599"]),
    ([[50, 101]], ["100-101"]),
])
def test_status_codes_as_keepalived_prints_its_bitmap(ranges: list, text: list) -> None:
    assert _status_ranges(ranges) == text


def test_cmd_str_quotes_each_word_but_a_redirection() -> None:
    assert cmd_str(["/bin/x", "a b", "c"]) == "'/bin/x' 'a b' 'c'"
    assert cmd_str(["</tmp/flag"]) == "</tmp/flag"
