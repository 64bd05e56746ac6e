"""`vip` under torchrun with two test hooks, for tests/test_distributed.py (run as a script by torchrun).

VIP_TEST_RECORD_LOG=FILE: each rank appends the path of every record it wrote, once written.
VIP_TEST_KILL=R:N: rank R writes N records, then half of the next line, then kills itself (SIGKILL),
as a node that dies or a job that runs out of time would.
"""

from __future__ import annotations

import os
import signal
import sys

from vipcli import prediction_files
from vipcli.cli.main import run

_rank = os.environ.get("RANK", "0")
_kill_rank, _, _kill_after = os.environ.get("VIP_TEST_KILL", "").partition(":")
_log = os.environ.get("VIP_TEST_RECORD_LOG")
_write = prediction_files.RecordWriter._write


def _hooked_write(self, line: str) -> None:
    if _kill_rank == _rank and self.written == int(_kill_after) and not line.startswith("path,"):
        self.stream.write(line[: len(line) // 2])  # a torn last line
        self.stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    _write(self, line)
    if _log and not (self.form.kind == "csv" and line.startswith("path,")):
        with open(_log, "a", encoding="utf-8") as log:
            log.write(self.form.parse(line.rstrip("\n"), False)[0] + "\n")


prediction_files.RecordWriter._write = _hooked_write

if __name__ == "__main__":
    sys.argv[0] = "vip"
    run()
