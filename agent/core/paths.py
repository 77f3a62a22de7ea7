"""Where an agent keeps its run-time files, so that several agents share a host.

keepalived keys its pid files by ``instance`` and ``net_namespace`` (or
``-s``); users run one keepalived per network namespace that way.  An agent
of ours is known by the same two names, its ``AgentKey``:

- ``namespace``: ``-s NAME``, else the configuration's ``net_namespace``,
  else the network namespace the agent runs in (its name under /run/netns,
  or ``net-INODE`` for one without a name); none in the host's own namespace;
- ``instance``: the configuration's root ``instance`` keyword, if any.

Every run-time path follows from the key (``RunPaths``): with neither name,
the agent uses the plain paths (``/run/keepalived-py/control.sock`` ...);
with a namespace they move to ``/run/keepalived-py/netns/NAME/``, with an
instance to ``.../instance/NAME/`` under that, and so does the maintenance
file under ``/var/lib/keepalived-py``.  A client (``status``, ``reload``,
``set``, the Ansible modules) computes the same key from where it runs and
from ``--namespace`` / ``--instance``, so it reaches the agent of its own
namespace with no flag; ``find_control_socket`` says how.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path("/run/keepalived-py")           # systemd's RuntimeDirectory=keepalived-py
STATE_DIR = Path("/var/lib/keepalived-py")     # systemd's StateDirectory=keepalived-py
NETNS_DIR = Path("/run/netns")                 # where `ip netns add` names namespaces
CONTROL_SOCKET = "control.sock"
MAINTENANCE_FILE = "maintenance.json"


class PathsError(Exception):
    """A run-time path cannot be used; the message names it and is meant for a person."""


@dataclass(frozen=True)
class AgentKey:
    namespace: str | None = None
    instance: str | None = None

    def __post_init__(self) -> None:
        # each name becomes a directory: it must stay one
        for name in (self.namespace, self.instance):
            if name is not None and (name in ("", ".", "..") or "/" in name or "\0" in name):
                raise PathsError(f"{name!r} cannot name an agent's directory")

    def relative(self) -> Path:
        """The key as a relative directory ('.' for the plain paths)."""
        path = Path(".")
        if self.namespace:
            path /= Path("netns", self.namespace)
        if self.instance:
            path /= Path("instance", self.instance)
        return path

    @property
    def tag(self) -> str:
        """keepalived's ``NS_INSTANCE`` (``data_use_instance`` file names), '' for none."""
        return "_".join(x for x in (self.namespace, self.instance) if x)

    def describe(self) -> str:
        words = [f"namespace {self.namespace}" if self.namespace else "",
                 f"instance {self.instance}" if self.instance else ""]
        return ", ".join(w for w in words if w) or "the host's namespace"


@dataclass(frozen=True)
class RunPaths:
    """An agent's run-time files."""

    run_dir: Path
    state_dir: Path

    @classmethod
    def of(cls, key: AgentKey, run_dir: Path = RUN_DIR, state_dir: Path = STATE_DIR
           ) -> RunPaths:
        rel = key.relative()
        return cls(run_dir / rel, state_dir / rel)

    def pid_file(self, name: str) -> Path:
        """``keepalived`` for the parent, else the child's name (``vrrp``...)."""
        return self.run_dir / f"{name}.pid"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / CONTROL_SOCKET

    @property
    def maintenance_file(self) -> Path:
        return self.state_dir / MAINTENANCE_FILE


# -- the namespace we run in -----------------------------------------------------------

def _ns_id(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def current_namespace() -> str | None:
    """The name of the network namespace this process runs in; None for the host's own.

    The host's own is PID 1's; when that cannot be read (not root), a namespace
    named under /run/netns still counts as a named one.
    """
    ours = _ns_id("/proc/self/ns/net")
    if ours is None:
        return None
    if ours == _ns_id("/proc/1/ns/net"):
        return None
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        names = []
    for name in names:
        if _ns_id(NETNS_DIR / name) == ours:
            return name
    if _ns_id("/proc/1/ns/net") is None:
        return None         # cannot tell; take it for the host's own
    return f"net-{ours[1]}"


def join_namespace(name: str) -> None:
    """Move this process into the network namespace ``/run/netns/NAME`` (keepalived's
    ``-s`` and ``net_namespace``); before any thread or socket is made."""
    from pyroute2.netns import setns
    path = NETNS_DIR / name
    if "/" in name or not path.exists():
        raise PathsError(f"no network namespace {name} ({path} does not exist)")
    try:
        setns(str(path), flags=0)       # flags=0: join, never create
    except OSError as err:
        raise PathsError(f"cannot enter network namespace {name}: "
                         f"{err.strerror or err}") from None


# -- clients ---------------------------------------------------------------------------

def find_control_socket(namespace: str | None = None, instance: str | None = None,
                        run_dir: Path = RUN_DIR) -> Path:
    """The control socket of the agent a client means.

    ``namespace`` defaults to the one the client runs in.  Without ``instance``,
    the agent without one is meant; when there is none but exactly one agent
    with an instance name runs in that namespace, that one.  Several: a
    ``PathsError`` lists them, to be named.
    """
    from .control import answers
    if namespace is None:
        namespace = current_namespace()
    plain = RunPaths.of(AgentKey(namespace, instance), run_dir).control_socket
    if instance is not None or answers(str(plain)):
        return plain
    named = sorted(p.parent.name for p in
                   (RunPaths.of(AgentKey(namespace), run_dir).run_dir / "instance")
                   .glob(f"*/{CONTROL_SOCKET}") if answers(str(p)))      # live ones only
    if len(named) == 1:
        return RunPaths.of(AgentKey(namespace, named[0]), run_dir).control_socket
    if len(named) > 1:
        raise PathsError(f"several agents run in {AgentKey(namespace).describe()} (instances "
                         f"{', '.join(named)}): name one with --instance")
    return plain


# -- files -----------------------------------------------------------------------------

def make_dir(path: Path, mode: int = 0o755) -> None:
    """``mkdir -p`` with a one-line error naming the path."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as err:
        raise PathsError(f"cannot create {path}: {err.strerror or err}") from None


def remove_empty_dirs(path: Path, top: Path) -> None:
    """Remove ``path`` and its parents below ``top`` while they are empty (an agent's
    keyed run directory, at its stop)."""
    path, top = path.resolve(), top.resolve()
    while path != top and top in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def write_pid_file(path: str | os.PathLike[str]) -> None:
    """Written whole or not at all: a reader never finds it empty (``live_pid``, or
    a test polling for a restarted child)."""
    make_dir(Path(path).parent)
    try:
        write_atomic(path, f"{os.getpid()}\n")
    except OSError as err:
        raise PathsError(f"cannot write {path}: {err.strerror or err}") from None


def dump_file(stem: str, kind: str, key: AgentKey = AgentKey(),  # noqa: B008
              environ: dict[str, str] | None = None) -> Path:
    """Where a child writes a dump, as keepalived names it: ``$TMPDIR/STEM.KIND`` (else
    /tmp), with ``.NS_INSTANCE`` after the stem for an agent known by a namespace or an
    instance, so that several agents on a host never overwrite each other's."""
    env = os.environ if environ is None else environ
    tag = f".{key.tag}" if key.tag else ""
    return Path(env.get("TMPDIR") or "/tmp") / f"{stem}{tag}.{kind}"


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    Readers never see half a file, and a symbolic link planted at ``path`` is
    replaced, not followed.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def live_pid(pid_file: str | os.PathLike[str] | None) -> int | None:
    """The pid in ``pid_file`` if that process is alive and not us."""
    if not pid_file:
        return None
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    except OSError as err:
        if err.errno == errno.ESRCH:
            return None
        raise
    return pid
