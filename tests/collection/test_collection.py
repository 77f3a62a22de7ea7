"""The collection tier: what Galaxy, ansible-test and ansible-lint say about keepalived_py.ha.

The repository root is the collection root, but the tools want it at
``.../ansible_collections/keepalived_py/ha``: a copy of the working tree's files
(what git tracks, and new files it does not ignore) is made there once, and every
check runs on that copy:

- ``ansible-galaxy collection build`` and ``install``: the tarball holds what the
  role needs (the agent, pyproject.toml, the systemd unit) and no development files;
- ``ansible-doc`` renders every module of plugins/modules;
- ``ansible-test sanity --venv --python 3.11`` on the collection's content (not on
  the agent and its own tests, which ruff and their own suites cover); any error fails;
- ``ansible-test units --venv --python 3.11`` on tests/unit/plugins;
- ``ansible-lint`` with the production profile (.ansible-lint);
- a real ``ansible-playbook`` run of keepalived_config from the installed collection.

A missing tool is a missing tier (tests/conftest.py), never a silent skip.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.collection.galaxy import build, copy_tree, install, run, tool
from tests.conftest import REPO

PYTHON = "3.11"                             # the agent's Python; one version keeps CI short
# The collection's content directories that exist: ansible-test sanity looks at these.
CONTENT = ("plugins", "roles", "playbooks", "meta", "extensions", "tests/unit/plugins",
           "tests/integration/targets")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("collection")


@pytest.fixture(scope="module")
def tree(work: Path) -> Path:
    return copy_tree(work)


@pytest.fixture(scope="module")
def tarball(tree: Path, work: Path) -> Path:
    return build(tree, work / "dist")


@pytest.fixture(scope="module")
def installed(tarball: Path, work: Path) -> Path:
    """The top of a collections path holding the installed collection."""
    return install(tarball, work / "installed")


# -- Galaxy -----------------------------------------------------------------------------------

def test_tarball_has_what_the_role_needs_and_no_development_files(tarball):
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    needed = {"MANIFEST.json", "README.md", "CHANGELOG.md", "meta/runtime.yml",
              "pyproject.toml", "packaging/systemd/keepalived-py.service",
              "agent/__init__.py", "agent/cli.py", "agent/config/parser.py",
              "plugins/modules/keepalived_config.py", "plugins/action/keepalived_config.py",
              "plugins/module_utils/keepalived_config.py", "tests/sanity/ignore-2.18.txt",
              "tests/unit/plugins/action/test_keepalived_config.py"}
    assert needed - names == set()
    unwanted = [n for n in names if n.endswith(".pyc") or "__pycache__" in n
                or n.split("/")[0] in (".venv", ".ci", "bench", "lab", ".git")
                or n.startswith(("tests/integration", "tests/conformance", "tests/collection",
                                 "tests/output", "tests/unit/test_", "tests/lab.py"))]
    assert unwanted == []


def test_installs(installed):
    root = installed / "ansible_collections" / "keepalived_py" / "ha"
    assert (root / "MANIFEST.json").is_file()
    assert (root / "agent" / "config" / "parser.py").is_file()


def test_ansible_doc_renders_every_module_and_the_role(installed, work):
    modules = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")
                     if p.stem != "__init__")
    assert "keepalived_config" in modules
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed)}
    for name in modules:
        done = run([tool("ansible-doc"), f"keepalived_py.ha.{name}"], work, env)
        assert "WARNING" not in done.stderr and "ERROR" not in done.stderr, done.stderr
        assert f"keepalived_py.ha.{name}" in done.stdout
    # the role's argument specs, as ansible-doc shows a role
    done = run([tool("ansible-doc"), "-t", "role", "keepalived_py.ha.keepalived_py"], work, env)
    assert "WARNING" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert "keepalived_py_wheels_dir" in done.stdout and "keepalived_py_instances" in done.stdout


# -- ansible-test -------------------------------------------------------------------------------

_BOOTSTRAP = re.compile(r"saved to: (?P<path>\S+get_pip_(?P<version>[0-9_]+)\.py)")


def provide_pip_bootstrap(output: str) -> bool:
    """ansible-test bootstraps pip in its virtual environments with a get-pip script
    downloaded from ci-files.testing.ansible.com, which CI cannot reach (only package
    registries), and takes it from its cache when saved there.  Saved there: the same
    thing made from pip's wheel, from PyPI.  True if it was missing and is now there."""
    m = _BOOTSTRAP.search(output)
    if m is None:
        return False
    script = Path(m.group("path"))
    version = m.group("version").replace("_", ".")
    script.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "-d", str(script.parent), f"pip=={version}"],
                   check=True, timeout=600)
    (wheel,) = script.parent.glob(f"pip-{version}-*.whl")
    script.write_text(textwrap.dedent(f"""\
        # Stands in for get-pip.py {version} (see tests/collection/test_collection.py).
        import sys
        sys.path.insert(0, {str(wheel)!r})
        from pip._internal.cli.main import main
        args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
        sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
        """))
    return True


def ansible_test(tree: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [tool("ansible-test"), *arguments, "--venv", "--python", PYTHON, "--color", "no"]
    done = run(command, tree, ok=False)
    if done.returncode != 0 and provide_pip_bootstrap(done.stdout + done.stderr):
        done = run(command, tree, ok=False)
    return done


def test_ansible_test_sanity(tree):
    targets = [f"{d}/" for d in CONTENT if (tree / d).is_dir()]
    done = ansible_test(tree, "sanity", *targets)
    errors = [line for line in (done.stdout + done.stderr).splitlines()
              if line.startswith("ERROR")]
    assert done.returncode == 0, "\n".join(errors) or done.stdout + done.stderr


def test_ansible_test_units(tree):
    done = ansible_test(tree, "units", "tests/unit/plugins/")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-3000:]


# -- ansible-lint -------------------------------------------------------------------------------

def test_ansible_lint_production_profile(tree):
    # the collection's own playbooks and role name its modules by their full names
    done = run([tool("ansible-lint")], tree, {"ANSIBLE_COLLECTIONS_PATH": str(tree.parents[2])},
               ok=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


# -- a real playbook run --------------------------------------------------------------------------

PLAYBOOK = """\
- name: keepalived_config from the installed collection
  hosts: localhost
  gather_facts: false
  vars:
    vrrp_instances:
      - name: VI_1
        state: MASTER
        interface: {interface}
        virtual_router_id: 51
        priority: 150
        authentication: {{auth_type: PASS, auth_pass: s3cret}}
        virtual_ipaddress: [192.0.2.10/24]
  tasks:
    - name: Write
      keepalived_py.ha.keepalived_config:
        dest: {dest}
        agent: {agent}
        global_defs: {global_defs}
        instances: "{{{{ vrrp_instances }}}}"
      register: first
    - name: Write again
      keepalived_py.ha.keepalived_config:
        dest: {dest}
        agent: {agent}
        global_defs: {global_defs}
        instances: "{{{{ vrrp_instances }}}}"
      register: second
    - name: A bad value
      keepalived_py.ha.keepalived_config:
        dest: {dest}
        agent: {agent}
        instances: "{{{{ [vrrp_instances[0] | combine({{'advert_int': 'abc'}})] }}}}"
      register: bad
      ignore_errors: true
    - name: Changed once, then not; the error names the variable
      ansible.builtin.assert:
        that:
          - first is changed
          - second is not changed
          - bad is failed
          - "'instances[0].advert_int: invalid number' in bad.msg"
"""


def test_a_playbook_run(installed, work):
    interface = next((n for _i, n in socket.if_nameindex() if n != "lo"), None)
    agent = work / "keepalived-py"
    agent.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                     "from agent.cli import main\nsys.exit(main())\n")
    agent.chmod(0o755)
    dest = work / "keepalived.conf"
    playbook = work / "playbook.yml"
    playbook.write_text(PLAYBOOK.format(
        interface=interface or "eth0", dest=dest, agent=agent,
        global_defs="{dynamic_interfaces: true}" if interface is None else "{}"))
    done = run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
                "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)], work,
               {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_NOCOLOR": "1"}, ok=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"localhost\s*: ok=\d+\s+changed=1\s", done.stdout), done.stdout
    assert "auth_pass s3cret" in dest.read_text()
