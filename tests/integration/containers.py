"""Debian containers with a real systemd, booted by systemd-nspawn inside a lab.

One Debian root is made by debootstrap and cached under ``CACHE``; every
container boots it with ``--volatile=overlay`` (a throw-away writable layer in
RAM over the read-only root), so any number of containers share one build and
leave nothing behind.  Each container runs in the network namespace of a lab
host (tests/lab.py): its ``eth0`` is the host's, on the lab's bridge, and it
reaches nothing but the lab.  The agent goes in from wheels built on this
machine, the way an air-gapped user installs it.

Commands run in a container through nsenter (``Container.run``) or over ssh as
root with the image's key (``Container.ssh_argv``; ssh needs a process in a lab
namespace, e.g. another lab host, as an Ansible controller would be).

This host's PID 1 is not systemd, hence ``--register=no --keep-unit``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.lab import Host

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/keepalived-py-lab")
SUITE = "bookworm"
# Part of the cache key: bump it whenever _customise changes, so that the next
# run builds a fresh root instead of booting a stale one.
RECIPE_VERSION = 2
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "procps", "python3", "python3-venv",
            "openssh-server", "nftables",
            # what Ansible's apt and package modules need on a Debian target
            "python3-apt")
# Nothing to do in a lab (no network, no disks) and noise in the boot, or a
# console login racing our commands.
MASKED = ("console-getty.service", "getty@tty1.service", "apt-daily.timer",
          "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
          "e2scrub_reap.service", "fstrim.timer")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
VENV = "/opt/keepalived-py"
WHEELS_IN_CONTAINER = "/var/tmp/keepalived-py-wheels"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a command inside gets instead of ours: pytest's PIP_*, NOTIFY_SOCKET and
# the like must not leak into the container.
CLEAN_ENV = ("env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", "SYSTEMD_COLORS=0",
             "PIP_DISABLE_PIP_VERSION_CHECK=1")


class Unavailable(Exception):
    """This machine cannot build or boot containers: a missing tier, not a failure."""


class CommandFailed(Exception):
    """A command inside a container failed; the message holds its output."""


class BootError(Exception):
    """A container started but its systemd did not come up."""


@dataclass(frozen=True)
class Image:
    """A cached debootstrap root and the ssh key that logs in as its root."""

    root: Path
    key: Path
    built_in: float | None = None   # seconds, None when it came from the cache


# -- the debootstrap root ---------------------------------------------------------------

def recipe() -> str:
    return "\n".join((f"recipe {RECIPE_VERSION}", f"suite {SUITE}",
                      f"packages {','.join(PACKAGES)}", f"masked {','.join(MASKED)}", ""))


def image_dir() -> Path:
    return CACHE / f"{SUITE}-{hashlib.sha256(recipe().encode()).hexdigest()[:12]}"


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The URI apt uses for ``SUITE`` (deb822 stanzas), else Debian's CDN."""
    try:
        text = sources.read_text()
    except OSError:
        return DEFAULT_MIRROR
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
            return fields["URIs"].split()[0]
    return DEFAULT_MIRROR


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise Unavailable(f"not installed: {' '.join(missing)} "
                          "(Debian packages debootstrap, systemd-container)")


def _remove_tree(path: Path) -> None:
    # --one-file-system: never descend into a mount a killed debootstrap left
    # (it builds in a private mount namespace, so there should be none)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _debootstrap(root: Path, log: Path) -> None:
    mirror = debian_mirror()
    argv = ["unshare", "--mount", "--propagation", "private",
            "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            SUITE, str(root), mirror]
    with log.open("w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-5:])
        raise Unavailable(f"debootstrap {SUITE} from {mirror} failed "
                          f"(exit {done.returncode}):\n{tail}")


def _customise(root: Path, public_key: str) -> None:
    # without /etc/hostname the name given to nspawn (-M) is the host name
    (root / "etc/hostname").unlink(missing_ok=True)
    units = root / "etc/systemd/system"
    for unit in MASKED:
        link = units / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(public_key)
    (ssh / "authorized_keys").chmod(0o600)


def _build(final: Path) -> float:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".build-"))
    try:
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "keepalived-py-lab",
                        "-f", str(key)], check=True, capture_output=True)
        _debootstrap(tmp / "root", tmp / "debootstrap.log")
        _customise(tmp / "root", (tmp / "id_ed25519.pub").read_text())
        (tmp / "RECIPE").write_text(recipe())
        # a rename is atomic: a root under its final name is always complete
        os.rename(tmp, final)
    except BaseException:
        _remove_tree(tmp)
        raise
    return time.monotonic() - started


def ensure_image() -> Image:
    """The cached root for this recipe, built first when missing (about a minute)."""
    _require("debootstrap", "systemd-nspawn", "nsenter", "unshare", "ssh-keygen", "ssh")
    final = image_dir()
    built_in = None
    with _cache_lock():
        if not (final / "RECIPE").is_file() or (final / "RECIPE").read_text() != recipe():
            # leftovers of interrupted builds and roots of older recipes
            for stale in CACHE.iterdir():
                if stale.is_dir() and (stale.name.startswith(".build-")
                                       or stale.name.startswith(f"{SUITE}-")):
                    _remove_tree(stale)
            built_in = _build(final)
    return Image(final / "root", final / "id_ed25519", built_in)


# -- wheels -------------------------------------------------------------------------------

def _constraints() -> str:
    """Every distribution of the test environment at its version here, so that the
    container runs the dependencies the other tiers test (new ones: the newest)."""
    pins = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower() != "keepalived-py"}
    return "".join(f"{pin}\n" for pin in sorted(pins))


def build_wheels(dest: Path, source: Path = REPO) -> list[Path]:
    """Wheels of the working tree (or of ``source``) and its dependencies, for
    ``pip install --no-index``."""
    work = Path(tempfile.mkdtemp(prefix="kpy-wheel-build-"))
    try:
        src = work / "src"
        # built from a copy: an in-tree build would write build/ into the shared tree
        shutil.copytree(source, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache",
            ".hypothesis", "bench"))
        pip = [sys.executable, "-m", "pip"]
        done = subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(dest), str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip wheel of the working tree failed:\n{done.stderr}")
        (work / "constraints.txt").write_text(_constraints())
        ours = next(dest.glob("keepalived_py-*.whl"))
        # the dependencies the wheel declares, so a new one is never missed
        done = subprocess.run([*pip, "download", "-q", "--only-binary=:all:", "-d", str(dest),
                               "-c", str(work / "constraints.txt"), str(ours)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"pip download of the dependencies failed:\n"
                              f"{done.stderr[-2000:]}")
    finally:
        _remove_tree(work)
    return sorted(dest.glob("*.whl"))


# -- containers ---------------------------------------------------------------------------

def _ns_pid(pid: int) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return line.split()[1:]
    return []


class Container:
    """A container booted from ``image`` in ``host``'s network namespace.

    ``close()`` (or leaving the ``with`` block) shuts it down and removes its
    files; if it does not halt in time it is killed, and the lab's own close
    kills whatever is still in the namespace.
    """

    def __init__(self, image: Image, host: Host, name: str | None = None) -> None:
        self.image, self.host = image, host
        self.name = name or host.name
        self.dir = Path(tempfile.mkdtemp(prefix=f"kpy-nspawn-{self.name}-"))
        self.console_log = self.dir / "console.log"
        self.proc: subprocess.Popen[Any] | None = None
        self.pid1 = 0

    def __repr__(self) -> str:
        return f"Container({self.name!r}, netns={self.host.netns!r})"

    def boot(self, timeout: float = 60.0) -> float:
        """Start the container and wait for ``is-system-running``; seconds it took."""
        started = time.monotonic()
        argv = ["systemd-nspawn", "--quiet", "-D", str(self.image.root), "--boot",
                "--register=no", "--keep-unit", "--volatile=overlay", "--link-journal=no",
                "--console=read-only", f"--network-namespace-path=/run/netns/{self.host.netns}",
                # nspawn drops CAP_NET_ADMIN unless it made the network itself; the
                # namespace is the lab's, so the container may have it
                "--capability=CAP_NET_ADMIN", "-M", self.name]
        with self.console_log.open("wb") as console:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.host.lab.processes.append(self.proc)
        self.pid1 = self._wait_pid1(started + timeout)
        self._wait_running(started + timeout)
        return time.monotonic() - started

    def _wait_pid1(self, deadline: float) -> int:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"systemd-nspawn exited with {self.proc.returncode}:\n"
                                  f"{self.console(20)}")
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                for pid in map(int, children.read_text().split()):
                    ns = _ns_pid(pid)
                    if len(ns) > 1 and ns[-1] == "1":
                        return pid
            except OSError:
                pass
            time.sleep(0.05)
        raise BootError(f"{self}: no init process appeared:\n{self.console(20)}")

    def _wait_running(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            state = self.run(["systemctl", "is-system-running"], check=False,
                             timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                return
            # "offline" too is normal at first: nsenter came before systemd did
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.1)
        raise BootError(f"{self}: systemd is {state or 'not answering'}:\n{self.console(20)}")

    def console(self, lines: int = 50) -> str:
        """The last lines of the container's console (the boot messages)."""
        text = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        return "".join(text.splitlines(True)[-lines:])

    def run(self, argv: Sequence[str], *, check: bool = True, input: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container as root; text, captured."""
        if not self.pid1:
            raise RuntimeError(f"{self} is not running")
        done = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *CLEAN_ENV, *argv],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise CommandFailed(f"{self}: {' '.join(argv)!r} exited with {done.returncode}:\n"
                                f"{done.stdout}{done.stderr}")
        return done

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-ec", script], **kw)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside (directories made as needed)."""
        self.run(["sh", "-ec", 'mkdir -p "$(dirname "$1")"; cat > "$1"; chmod "$2" "$1"',
                  "sh", path, f"{mode:o}"], input=text)

    def push(self, src: Path, dest: str) -> None:
        """Copy the directory ``src`` to ``dest`` inside.

        Through tar in the container rather than /proc/PID/root, where an
        absolute symbolic link inside would resolve on this machine.
        """
        pack = subprocess.run(["tar", "-C", str(src), "-cf", "-", "."], capture_output=True,
                              check=True)
        done = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *CLEAN_ENV, "sh", "-ec",
                               'mkdir -p "$1"; tar -C "$1" -xf -', "sh", dest],
                              input=pack.stdout, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"push to {self}:{dest}: {done.stderr.decode(errors='replace')}")

    def install_agent(self, wheels: Path) -> float:
        """Install keepalived-py into the ``VENV`` virtualenv from ``wheels``; seconds."""
        started = time.monotonic()
        self.push(wheels, WHEELS_IN_CONTAINER)
        self.sh(f"python3 -m venv {VENV}\n"
                f"{VENV}/bin/pip install -q --no-index --find-links {WHEELS_IN_CONTAINER} "
                "keepalived-py", timeout=300)
        return time.monotonic() - started

    def processes(self) -> dict[int, str]:
        """The container's processes: pid (on this machine) to command line."""
        if not self.pid1:
            return {}
        try:
            pidns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        except OSError:
            return {}
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns/pid") == pidns:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                        b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue            # gone meanwhile
        return found

    def ssh_argv(self, *argv: str) -> list[str]:
        """ssh as root into the container, for a process in a lab namespace to run."""
        return ["ssh", "-i", str(self.image.key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                f"root@{self.host.ip4}", "--", *argv]

    def close(self, timeout: float = 20.0) -> None:
        """Halt the container (SIGTERM to nspawn is a clean shutdown), else kill it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.pid1:
                    # killing a PID namespace's init kills the whole namespace
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid1, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.pid1 = 0
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
