"""How torch's CPU threads wait: short spins, so that two vip processes on one machine do not starve each other.

torch's CPU wheels run their threads on GNU OpenMP, whose idle threads spin (burn a core) for a
while before they sleep, waiting for the next parallel region. Alone on a machine that saves a few
microseconds per region. With another torch process on the same cores, each process's spinning
threads take the cores the other's working threads need: on this project's 2-core machine two `vip
train` runs of the small CLIP at once fitted in 405 s each instead of about 10 s alone (three toy
runs: 54-60 s instead of 3 s). With `GOMP_SPINCOUNT=1000` the same two runs took 27 s each, and a
run alone 10.4-13.1 s against 9.7-11.7 s by default (docs/SPEED.md, the eighteenth day).

The spin count changes only how threads wait, never what they compute or in which order, so
results are the same to the last digit. It must be set before torch (and its OpenMP library) loads:
the `vip` command does so first thing, unless the user set `GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "1000"  # GNU OpenMP's idle spins before a thread sleeps (its default: 300,000)


def prefer_short_spins(environ=os.environ, modules=sys.modules) -> bool:
    """Set `GOMP_SPINCOUNT` to `SPIN_COUNT` in `environ` when the user chose no OpenMP waiting policy and torch
    is not among the loaded `modules` yet; True if it was set."""
    if "torch" in modules or environ.get("GOMP_SPINCOUNT") or environ.get("OMP_WAIT_POLICY"):
        return False
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
