"""Fixtures of the module tests: the agent's command line and a fake daemon behind it."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agent_double import COLLECTION_ROOT, LAUNCHER, FakeDaemon


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (a unix socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="kpy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(workdir: Path) -> str:
    """The agent's real command line, from this repository, as an executable file."""
    path = workdir / "keepalived-py"
    path.write_text(LAUNCHER.format(python=sys.executable, root=str(COLLECTION_ROOT)))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def daemon_factory(workdir: Path) -> Iterator[Any]:
    started: list[FakeDaemon] = []

    def make(answer: dict[str, Any]) -> FakeDaemon:
        daemon = FakeDaemon(answer, workdir).start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.close()
