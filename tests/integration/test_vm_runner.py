"""tests/vm/runner.py: what comes back from a boot, what does not leak out, and a VM
that overruns its time is killed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, tier_missing
from tests.vm import runner

pytestmark = [pytest.mark.root, pytest.mark.vm]


@pytest.fixture(scope="module")
def bootable(root_only: None) -> None:
    try:
        runner.check_tools()
        runner.find_kernel()
    except runner.VmUnavailable as e:
        tier_missing(f"vm tier: {e}")


def qemu_processes_of(share: Path) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"path={share}".encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass                        # gone meanwhile
    return found


def test_status_output_and_files_come_back_and_the_host_stays_untouched(bootable: None
                                                                        ) -> None:
    probe = REPO / ".kpy-vm-write-probe"
    script = (f"echo inside > {probe} && cat {probe}\n"
              "uname -r\n"
              'echo result > "$KPY_VM_SHARE/made-inside"\n'
              "exit 3\n")
    with runner.boot(script, timeout=120) as result:
        assert result.status == 3
        assert result.output.splitlines() == ["inside", runner.find_kernel().version]
        assert (result.files_dir / "made-inside").read_text() == "result\n"
        share = result.files_dir
    assert not share.exists()
    # the guest wrote into its RAM overlay, not into the host's tree
    assert not probe.exists()


def test_a_vm_that_overruns_is_killed(bootable: None) -> None:
    with tempfile.TemporaryDirectory(prefix="kpy-vm-") as directory:
        share = Path(directory)
        with pytest.raises(runner.VmError, match="did not finish within 12 s"):
            runner.boot("sleep 600\n", timeout=12, share=share)
        assert qemu_processes_of(share) == []
        assert not (share / "status").exists()
