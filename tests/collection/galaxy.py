"""The collection as users get it: the working tree copied to where Ansible's tools
want it, built by ``ansible-galaxy collection build`` and installed from the tarball.

Shared by the collection tier (tests/collection) and the Ansible integration tier
(tests/integration/test_ansible.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import REPO, tier_missing

TOOLS = Path(sys.executable).parent         # the virtualenv's bin, where pip put them
# Left out of the copy: what is not part of the working tree's content.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "output",
                                    ".pytest_cache", ".ruff_cache", ".hypothesis", "*.egg-info")
TIMEOUT = 1800


def tool(name: str, tier: str = "collection tier") -> str:
    path = TOOLS / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        tier_missing(f"{tier}: {name} not found (pip install -e '.[test]')")
    return found


def run(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
        ok: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(list(command), cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - started
    print(f"$ {' '.join(command[:4])} ... -> exit {done.returncode} in {took:.1f} s")
    if ok:
        assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


def working_tree_files() -> list[str] | None:
    """The files of the working tree: tracked, and new ones git does not ignore."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode()
    return [name for name in listed.split("\0")
            if name and (REPO / name).is_file() and not name.startswith("tests/output/")]


def copy_tree(top: Path) -> Path:
    """The working tree at ``top``/ansible_collections/keepalived_py/ha."""
    root = top / "ansible_collections" / "keepalived_py" / "ha"
    files = working_tree_files()
    if files is None:                       # not a git checkout: the files as they are
        shutil.copytree(REPO, root, ignore=NOT_COPIED)
        return root
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return root


def build(tree: Path, out: Path) -> Path:
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(out)], tree)
    (built,) = out.glob("keepalived_py-ha-*.tar.gz")
    return built


def install(tarball: Path, top: Path) -> Path:
    """``top``, a collections path now holding the collection installed from ``tarball``."""
    run([tool("ansible-galaxy"), "collection", "install", "-p", str(top), str(tarball)],
        tarball.parent)
    return top
