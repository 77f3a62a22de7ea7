"""Run our config test over keepalived 2.2.7's corpus and print one JSON line per file.

Run it inside a network namespace that has only ``lo`` (the condition 2.2.7's
verdicts were recorded in); the test in tests/integration makes one.  Each file
gets a time limit, so a hang is recorded as such instead of stopping the run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

from keepalived_py.config import load

TIME_LIMIT = 20


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang()


def main() -> int:
    corpus = sys.argv[1]
    names = sys.argv[2:] or sorted(n[:-5] for n in os.listdir(os.path.join(corpus, "configs"))
                                   if n.endswith(".conf"))
    os.chdir(corpus)
    signal.signal(signal.SIGALRM, _alarm)
    for name in names:
        record: dict = {"name": name}
        start = time.monotonic()
        signal.alarm(TIME_LIMIT)
        try:
            result = load(f"configs/{name}.conf", config_id="oracle")
            record["rc"] = result.diags.exit_code()
            record["diags"] = [
                [d.level.name, d.message, os.path.basename(d.where.file) if d.where else None,
                 d.where.line if d.where else None]
                for d in result.diags]
        except Hang:
            record["rc"] = "hang"
        except BaseException:  # noqa: BLE001 - a crash is what we are here to record
            record["rc"] = "crash"
            record["traceback"] = traceback.format_exc()
        finally:
            signal.alarm(0)
        record["seconds"] = round(time.monotonic() - start, 3)
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
