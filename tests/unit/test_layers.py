"""The floors of docs/architecture.md: each part of the agent imports only the floors below it."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
SUBSYSTEMS = {"vrrp", "check", "bfd"}
# what each part may import (besides itself)
ALLOWED = {
    "config": set(),
    "trackers": {"config"},
    "host": {"config", "trackers"},
    "core": {"config", "host", "trackers"},
    # the data planes: the checker process programs them, the VRRP process drives
    # IPVS's sync daemon
    "ipvs": {"config", "host"},
}


def part_of(module: str) -> str:
    """``vrrp.engine`` -> ``vrrp``; ``trackers`` -> ``trackers``."""
    return module.split(".", 1)[0]


def imports(path: Path) -> set[str]:
    """The agent's own modules that ``path`` imports, as dotted names from agent/."""
    here = path.relative_to(AGENT).with_suffix("").parts
    package = here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            found.update(".".join((*base, n)) for n in names)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names]
            found.update(n.removeprefix("keepalived_py.") for n in names
                         if n and n.startswith("keepalived_py."))
    return found


def test_each_floor_imports_only_the_floors_below() -> None:
    wrong = []
    for path in sorted(AGENT.rglob("*.py")):
        module = ".".join(path.relative_to(AGENT).with_suffix("").parts)
        part = part_of(module)
        for imported in imports(path):
            other = part_of(imported)
            if other in ("", part, "__init__") or other == "__version__":
                continue
            if part in ALLOWED:
                ok = other in ALLOWED[part]
            elif part in SUBSYSTEMS:
                ok = other not in SUBSYSTEMS and other not in ("cli", "children")
            else:                   # the composition: cli, children, __main__
                ok = True
            if not ok:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_the_rule_sees_a_wrong_import(tmp_path: Path) -> None:
    # the checker of the rule works: core importing VRRP is found
    found = imports(AGENT / "core" / "supervisor.py")
    assert "core.children" in found and "config.model" in found
    assert not any(part_of(m) in SUBSYSTEMS for m in found)
    assert "vrrp.runtime" in imports(AGENT / "vrrp" / "main.py")


def test_every_package_of_the_agent_is_installed() -> None:
    # a package missing from pyproject.toml works in the editable install of the tests
    # and is missing from the wheel the role installs
    import tomllib
    pyproject = tomllib.loads((AGENT.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    packages = {".".join(("keepalived_py", *p.parent.relative_to(AGENT).parts))
                for p in AGENT.rglob("__init__.py")}
    assert packages - listed == set()
