"""Fixtures for the root tier: labs of network namespaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.lab import Lab

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
