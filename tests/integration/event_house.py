"""The agent's parent with one more declared child, the event probe: ``python -m
tests.integration.event_house CONFIG RUN_DIR``.

The supervisor is the real one, with VRRP's real declaration; only the list of
kinds is longer, as it will be when the checker and BFD join.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from keepalived_py.children import KINDS
from keepalived_py.core import logs
from keepalived_py.core.children import ChildKind
from keepalived_py.core.daemon import read_checked
from keepalived_py.core.supervisor import Settings, Supervisor

PROBE = ChildKind(name="probe", title="event probe", ident="Keepalived_probe",
                  module="tests.integration.event_probe", pid_option="probe_pid",
                  wanted=lambda root: True, consumes=frozenset({"vrrp.instance"}))


def main() -> int:
    config, run_dir = sys.argv[1], Path(sys.argv[2])
    options = logs.LogOptions(console=True, detail=True)
    logs.setup("Keepalived", options)
    root = read_checked(config, "test", strict=False).root
    settings = Settings(path=config, config_id="test", log=options,
                        pid_file=str(run_dir / "agent.pid"),
                        child_pid_files={"vrrp": str(run_dir / "vrrp.pid")},
                        control_socket=str(run_dir / "control.sock"))
    return asyncio.run(Supervisor(settings, [*KINDS, PROBE], root).run())


if __name__ == "__main__":
    sys.exit(main())
