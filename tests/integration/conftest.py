"""Fixtures for the root tier: labs of network namespaces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.conftest import tier_missing
from tests.integration import containers
from tests.integration.containers import Image, Unavailable
from tests.lab import Lab

log = logging.getLogger(__name__)

LabFactory = Callable[[Sequence[str]], Lab]


@pytest.fixture
def lab_factory(root_only: None) -> Iterator[LabFactory]:
    """Makes labs (``lab_factory(["a", "b"])``) and closes them all at teardown."""
    labs: list[Lab] = []

    def make(hosts: Sequence[str]) -> Lab:
        lab = Lab(hosts)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


def report(config: pytest.Config, message: str, tier: str = "systemd tier") -> None:
    """Timings for the log and, even under -q, the terminal."""
    log.info("%s", message)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[{tier}] {message}")


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest, root_only: None) -> Image:
    try:
        image = containers.ensure_image()
    except Unavailable as err:
        tier_missing(f"systemd tier: cannot build the container root: {err}")
    if image.built_in is None:
        report(request.config, f"debootstrap root cached at {image.root}")
    else:
        report(request.config, f"debootstrap root built in {image.built_in:.1f} s")
    return image
