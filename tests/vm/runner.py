"""A throw-away VM booting Debian's kernel over the host's root, for what this host's kernel
cannot do (IPVS).

``boot(script, timeout)`` starts ``qemu-system-x86_64`` (software emulation: the
``/dev/kvm`` of our machines cannot run a stock kernel) with the installed
``linux-image-amd64`` kernel, the host's ``/`` shared read-only over 9p with a RAM
overlay on top, and a second, writable 9p share for results. The guest runs the
shell ``script`` once, as root, and powers off; its output and exit status come back
through the share, which the guest mounts at the same path as the host's, so that
a script can write files there by their host path (``$KPY_VM_SHARE``).

The repository, its ``.venv`` and every installed package are visible inside at
their host paths. Nothing the guest does reaches the host but the share. The qemu
process never outlives ``boot()``: a timeout or any error kills it.

The initramfs (busybox-static, the 9p/virtio/overlay modules of the kernel and
``init.sh``) is built once and cached under ``CACHE``, keyed by the kernel version
and a hash of what goes in.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CACHE = Path("/var/cache/keepalived-py-vm")
INIT = Path(__file__).with_name("init.sh")
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "mount", "umount", "insmod", "mkdir", "switch_root", "cat", "echo",
                   "mkfifo")
# what stage 1 needs to reach the host's root: 9p over virtio-pci, and overlayfs
STAGE1_MODULES = ("9p", "9pnet_virtio", "virtio_pci", "overlay")
QEMU = "qemu-system-x86_64"
CONSOLE_TAIL = 3000         # characters of the serial console quoted in an error


class VmUnavailable(Exception):
    """This machine cannot boot the VM (qemu, the kernel or busybox-static missing):
    a missing tier, not a failure."""


class VmError(Exception):
    """The VM did not run the script to its end (a timeout, a crash); the message
    quotes the end of the serial console."""


@dataclass
class VmResult:
    """What came back from one boot: the script's exit ``status`` and ``output``, and
    ``files_dir``, the share the script could write to (its host path)."""

    status: int
    output: str
    files_dir: Path
    seconds: float
    console: str = field(repr=False)
    owns_files_dir: bool = field(default=False, repr=False)

    def cleanup(self) -> None:
        """Remove ``files_dir`` if ``boot()`` made it."""
        if self.owns_files_dir:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def __enter__(self) -> VmResult:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.cleanup()


@dataclass(frozen=True)
class Kernel:
    version: str
    image: Path


def find_kernel() -> Kernel:
    """The newest installed Debian kernel whose modules are installed too."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version / "modules.dep").is_file():
            found.append(Kernel(version, image))
    if not found:
        raise VmUnavailable("no kernel in /boot with its modules "
                            "(apt-get install linux-image-amd64)")

    def version_key(kernel: Kernel) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", kernel.version)]
    return max(found, key=version_key)


def check_tools() -> None:
    if shutil.which(QEMU) is None:
        raise VmUnavailable(f"{QEMU} not found (apt-get install qemu-system-x86)")
    if not BUSYBOX.is_file() or not _is_static(BUSYBOX):
        raise VmUnavailable(f"{BUSYBOX} is missing or not static (apt-get install busybox-static)")


def _is_static(path: Path) -> bool:
    """An ELF file without a program interpreter (PT_INTERP) runs without a libc."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:       # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _stage1_modules(kernel: Kernel) -> list[Path]:
    """The .ko files of ``STAGE1_MODULES`` and their dependencies, in load order."""
    paths: list[Path] = []
    for name in STAGE1_MODULES:
        shown = subprocess.run(["modprobe", "-S", kernel.version, "--show-depends", name],
                               capture_output=True, text=True)
        if shown.returncode != 0:
            raise VmUnavailable(f"kernel {kernel.version} has no module {name}: "
                                f"{shown.stderr.strip()}")
        for line in shown.stdout.splitlines():
            words = line.split()
            if words[:1] == ["insmod"] and Path(words[1]) not in paths:
                paths.append(Path(words[1]))
    return paths


class _Cpio:
    """An initramfs archive in the kernel's "newc" cpio format."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
               ) -> None:
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0)
        self.inode += 1
        header = b"070701" + b"".join(b"%08x" % n for n in fields)
        self.out.write(header + name.encode() + b"\0")
        self.out.write(b"\0" * (-self.out.tell() % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, executable: bool = False) -> None:
        self._entry(name, 0o100755 if executable else 0o100644, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def initramfs(kernel: Kernel) -> Path:
    """The cached initramfs for ``kernel``, built first if needed."""
    check_tools()
    modules = _stage1_modules(kernel)
    recipe = hashlib.sha256()
    recipe.update(INIT.read_bytes())
    recipe.update(" ".join(BUSYBOX_APPLETS).encode())
    for path in (BUSYBOX, *modules):
        stat = path.stat()
        recipe.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    target = CACHE / f"initramfs-{kernel.version}-{recipe.hexdigest()[:16]}.cpio"
    if target.is_file():
        return target

    archive = _Cpio()
    for directory in ("bin", "dev", "proc", "sys", "run", "lower", "upper", "newroot",
                      "modules"):
        archive.directory(directory)
    # the kernel opens the console for init before anything is mounted
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), executable=True)
    for applet in BUSYBOX_APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    order = []
    for path in modules:
        data = path.read_bytes()
        name = path.name
        if name.endswith(".xz"):            # busybox's insmod wants them plain
            data, name = lzma.decompress(data), name.removesuffix(".xz")
        archive.file(f"modules/{name}", data)
        order.append(name)
    archive.file("modules.order", "".join(f"{n}\n" for n in order).encode())
    archive.file("init", INIT.read_bytes(), executable=True)

    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob(f"initramfs-{kernel.version}-*.cpio"):
        stale.unlink(missing_ok=True)
    temporary = target.with_suffix(f".tmp{os.getpid()}")
    temporary.write_bytes(archive.finish())
    temporary.rename(target)
    return target


def boot(script: str, timeout: float, share: Path | None = None, memory: str = "1G",
         cpus: int | None = None) -> VmResult:
    """Boot the VM, run ``script`` (sh) in it as root, return when it has powered off.

    ``share``: the directory the guest may write to (made and owned by the result
    when None: ``VmResult.cleanup()`` removes it). Raises ``VmUnavailable`` when this
    machine cannot boot it, ``VmError`` when the script did not finish (qemu is
    killed at ``timeout`` seconds).
    """
    kernel = find_kernel()
    image = initramfs(kernel)
    owns_share = share is None
    share = Path(tempfile.mkdtemp(prefix="kpy-vm-")) if share is None else share.resolve()
    for word in (str(share), str(INIT)):
        if not re.fullmatch(r"[\w./+-]+", word):
            raise ValueError(f"a path on the kernel command line must be plain: {word!r}")
    (share / "status").unlink(missing_ok=True)
    (share / "script").write_text(script)
    console_path = share / "console.log"
    command = [
        QEMU, "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(cpus or os.cpu_count() or 1),
        "-m", memory, "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
        "-kernel", str(kernel.image), "-initrd", str(image),
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=share,path={share},security_model=none",
        "-device", "virtio-9p-pci,fsdev=share,mount_tag=share",
        "-append", f"console=ttyS0 quiet loglevel=3 panic=-1 kpyvm.init={INIT} "
                   f"kpyvm.share={share}",
    ]
    started = time.monotonic()
    try:
        with console_path.open("wb") as console:
            qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                qemu.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise VmError(f"the VM did not finish within {timeout:.0f} s; console:\n"
                              f"{_tail(console_path)}") from None
            finally:
                if qemu.poll() is None:
                    os.killpg(qemu.pid, signal.SIGKILL)
                    qemu.wait()
        seconds = time.monotonic() - started
        status_file = share / "status"
        if not status_file.is_file():
            raise VmError(f"the VM stopped without an exit status (qemu exit {qemu.returncode});"
                          f" console:\n{_tail(console_path)}")
        output_file = share / "output"
        return VmResult(status=int(status_file.read_text()),
                        output=output_file.read_text(errors="replace")
                        if output_file.is_file() else "",
                        files_dir=share, seconds=seconds,
                        console=console_path.read_text(errors="replace"),
                        owns_files_dir=owns_share)
    except BaseException:
        if owns_share:
            shutil.rmtree(share, ignore_errors=True)
        raise


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-CONSOLE_TAIL:]
