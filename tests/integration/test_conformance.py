"""keepalived 2.2.7's verdicts on 652 real configs, against ours.

The corpus was recorded in a network namespace holding only ``lo``, so we run
our config test in such a namespace too: interface checks then see exactly
what 2.2.7 saw, through the same kernel interface, with no names special-cased.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, make_netns

RUNNER = REPO / "tests" / "conformance" / "run_corpus.py"
DISAGREEMENTS = REPO / "tests" / "conformance" / "disagreements.tsv"
_LOCATED = re.compile(r"^\((?:(?P<file>[^:()]+): )?Line (?P<line>\d+)\)")


def exit_class(rc: int) -> str:
    """keepalived's -t verdicts as the issue compares them: clean, security, other."""
    return "0" if rc == 0 else "6" if rc == 6 else "not 0"


def keepalived_first_line(stderr: str, main: str) -> tuple[str, int] | None:
    for line in stderr.splitlines():
        m = _LOCATED.match(line)
        if m:
            return Path(m["file"] or main).name, int(m["line"])
    return None


@pytest.fixture(scope="module")
def records(corpus: Path, corpus_netns: str) -> dict[str, dict]:
    run = subprocess.run(
        ["ip", "netns", "exec", corpus_netns, sys.executable, str(RUNNER), str(corpus)],
        capture_output=True, text=True, timeout=1200, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = {}
    for line in run.stdout.splitlines():
        rec = json.loads(line)
        out[rec["name"]] = rec
    return out


@pytest.fixture(scope="module")
def corpus_netns(root_only: None) -> Iterator[str]:
    name = make_netns()
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def listed_disagreements() -> dict[str, dict[str, str]]:
    with DISAGREEMENTS.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(
            (line for line in f if not line.startswith("#")), delimiter="\t")]
    return {r["config"]: r for r in rows}


def test_every_file_read_without_crash_or_hang(records: dict[str, dict], corpus: Path) -> None:
    configs = sorted(p.stem for p in (corpus / "configs").glob("*.conf"))
    assert sorted(records) == configs
    bad = {n: r["rc"] for n, r in records.items() if r["rc"] in ("crash", "hang")}
    assert not bad, "\n".join(f"{n}: {records[n].get('traceback', r)}" for n, r in bad.items())
    slowest = max(records.values(), key=lambda r: r["seconds"])
    print(f"\nslowest file: {slowest['name']} {slowest['seconds']} s")
    # 1719 and 1996 hang keepalived 2.2.7 ($IF=$IF); we must answer.
    for name in ("1719", "1996"):
        assert records[name]["rc"] != 0


def test_exit_class_agrees_with_keepalived(records: dict[str, dict], corpus: Path) -> None:
    listed = listed_disagreements()
    for name, row in listed.items():
        assert row["reason"].strip(), f"{name}: a listed disagreement needs a reason"
    found: dict[str, tuple[str, str]] = {}
    for name, rec in records.items():
        theirs = int((corpus / "results" / f"{name}.rc").read_text())
        if exit_class(theirs) != exit_class(rec["rc"]):
            found[name] = (str(theirs), str(rec["rc"]))
    share = 1 - len(found) / len(records)
    print(f"\nexit class agrees with keepalived 2.2.7 on {len(records) - len(found)}"
          f"/{len(records)} files ({share:.1%}); {len(found)} listed disagreements")
    unlisted = sorted(set(found) - set(listed))
    stale = sorted(set(listed) - set(found))
    assert not unlisted, "disagreements missing from disagreements.tsv:\n" + "\n".join(
        f"{n}\tkeepalived={found[n][0]}\tours={found[n][1]}" for n in unlisted)
    assert not stale, f"listed in disagreements.tsv but now agreeing: {stale}"
    for name, (theirs, ours) in found.items():
        row = listed[name]
        assert (row["keepalived"], row["ours"]) == (theirs, ours), f"{name}: codes changed"
    assert share >= 0.95


def test_rejected_files_point_at_the_same_line(records: dict[str, dict], corpus: Path) -> None:
    compared = same = 0
    for name, rec in records.items():
        theirs = int((corpus / "results" / f"{name}.rc").read_text())
        if theirs == 0:
            continue
        stderr = (corpus / "results" / f"{name}.stderr").read_text(errors="replace")
        first = keepalived_first_line(stderr, f"{name}.conf")
        if first is None:
            continue
        compared += 1
        ours = {(f, line) for level, _msg, f, line in rec["diags"]
                if level != "NOTE" and line is not None}
        same += first in ours
    share = same / compared
    print(f"\nfor {compared} rejected files with a located message, our diagnostics include "
          f"keepalived's first line in {same} ({share:.1%})")
    assert share > 0.5
