"""Fixtures of the module tests: the agent's command line and a fake daemon behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agent_double import FakeDaemon


@pytest.fixture
def daemon_factory(workdir: Path) -> Iterator[Any]:
    started: list[FakeDaemon] = []

    def make(answer: dict[str, Any], directory: Path | None = None) -> FakeDaemon:
        daemon = FakeDaemon(answer, directory or workdir).start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.close()
