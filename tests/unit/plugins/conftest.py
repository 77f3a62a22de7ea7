"""Unit tests of the Ansible plugins: runnable by ``ansible-test units`` and by plain pytest.

ansible-test puts the collection on its import path as
``ansible_collections.keepalived_py.ha``.  Under plain pytest from the repository
root (``.venv/bin/python -m pytest tests/unit/plugins``) nothing does, because the
repository root *is* the collection: this conftest then makes a temporary
``ansible_collections/keepalived_py/ha`` symlink to it and puts its top on
``sys.path`` (removed at exit).  ``COLLECTIONS_PATH`` is that top either way, for
tests that run ``ansible-playbook`` (``ANSIBLE_COLLECTIONS_PATH``).
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

COLLECTION_ROOT = Path(__file__).resolve().parents[3]


def _importable() -> bool:
    try:
        return importlib.util.find_spec("ansible_collections.keepalived_py.ha") is not None
    except ModuleNotFoundError:
        return False


def _link_collection() -> Path:
    top = Path(tempfile.mkdtemp(prefix="kpy-collections-"))
    namespace = top / "ansible_collections" / "keepalived_py"
    namespace.mkdir(parents=True)
    (namespace / "ha").symlink_to(COLLECTION_ROOT, target_is_directory=True)
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    sys.path.insert(0, str(top))
    return top


if _importable():
    COLLECTIONS_PATH = COLLECTION_ROOT.parents[2]
else:
    COLLECTIONS_PATH = _link_collection()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (a unix socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="kpy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(workdir: Path) -> str:
    """The agent's real command line, from this repository, as an executable file."""
    from .modules.agent_double import LAUNCHER
    path = workdir / "keepalived-py"
    path.write_text(LAUNCHER.format(python=sys.executable, root=str(COLLECTION_ROOT)))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def run_dir(workdir: Path) -> Path:
    """The test's /run/keepalived-py, for ``keyed_agent``."""
    path = workdir / "run"
    path.mkdir()
    return path


@pytest.fixture
def keyed_agent(workdir: Path, run_dir: Path) -> str:
    """The agent's real command line, finding agents by namespace and instance under
    ``run_dir``."""
    from .modules.agent_double import KEYED_LAUNCHER
    path = workdir / "keyed-keepalived-py"
    path.write_text(KEYED_LAUNCHER.format(python=sys.executable, root=str(COLLECTION_ROOT),
                                          run_dir=str(run_dir)))
    path.chmod(0o755)
    return str(path)
