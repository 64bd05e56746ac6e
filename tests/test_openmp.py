"""The `vip` command makes torch's idle CPU threads spin briefly (vipcli/openmp.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from vipcli.openmp import SPIN_COUNT, prefer_short_spins


def test_short_spins_are_chosen_only_where_the_user_chose_no_policy_and_torch_is_not_loaded():
    environ = {}
    assert prefer_short_spins(environ, modules={}) and environ == {"GOMP_SPINCOUNT": SPIN_COUNT}
    for chosen in ({"GOMP_SPINCOUNT": "50000"}, {"OMP_WAIT_POLICY": "PASSIVE"}):
        environ = dict(chosen)
        assert not prefer_short_spins(environ, modules={}) and environ == chosen  # the user's choice stands
    environ = {}
    assert not prefer_short_spins(environ, modules={"torch": object()}) and environ == {}  # too late to matter


def test_the_vip_command_sets_it_before_torch_loads():
    """Two vip processes on one machine starved each other's threads (two small-CLIP runs: 405 s each, not 10 s)."""
    code = ("import atexit, os, sys\n"
            "sys.argv = ['vip', '--version']\n"
            "atexit.register(lambda: print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules))\n"
            "from vipcli.cli.main import run\n"
            "run()\n")
    environ = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{SPIN_COUNT} False"
