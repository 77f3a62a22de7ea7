"""Shared test fixtures.

Tests that need root (network namespaces, raw sockets) are marked ``root``.
Where they cannot run, they are skipped *and* the tier is written down, so that
``./lab test`` ends with a loud list of what did not run and a non-zero status.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "conformance" / "keepalived-2.2.7-config-test"
MISSING_TIERS = REPO / ".pytest-tiers-missing"


def tier_missing(reason: str) -> None:
    with MISSING_TIERS.open("a", encoding="utf-8") as f:
        f.write(f"- {reason}\n")
    pytest.skip(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    MISSING_TIERS.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def root_only() -> None:
    if os.geteuid() != 0:
        tier_missing("root tier: needs root for network namespaces")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        tier_missing(f"conformance tier: keepalived 2.2.7 corpus not found at {CORPUS}")
    return CORPUS


def make_netns() -> str:
    name = f"kpytest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


@pytest.fixture
def netns(root_only: None) -> Iterator[str]:
    """A fresh network namespace with only ``lo``, removed afterwards."""
    name = make_netns()
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
