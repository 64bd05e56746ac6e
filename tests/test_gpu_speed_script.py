"""scripts/gpu_speed.py, the one-shot check of the GPU goals: what it records when a part fails, is
stopped at --time-limit or is skipped, so a machine lent for a fixed time still returns true figures."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_speed.py"


@pytest.fixture(scope="module")
def gpu_speed():
    spec = importlib.util.spec_from_file_location("gpu_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def part(rc=0, wall_s=1.0, **extra):
    return {"command": "vip ...", "rc": rc, "wall_s": wall_s, "warnings": [], **extra}


def report(judged=True, **parts):
    base = {"judged": judged, "train_cold": part(wall_s=9.0), "train_warm": part(wall_s=4.0),
            "train_warm_no_graphs": part(wall_s=4.5),
            "speed": part(report={"predict": {"images_per_s": 350.0, "load_s": 2.0}})}
    return {**base, **parts}


def test_goals_are_judged_only_for_parts_that_ran_to_the_end(gpu_speed):
    checks = gpu_speed.checks(report(sweep=part(wall_s=100.0)))
    assert checks["train_cold_s"] == {"measured": 9.0, "at_most": 10.7, "met": True}
    assert checks["sweep_s"]["met"] is True and checks["predict_images_per_s"]["met"] is True

    failed = gpu_speed.checks(report(train_cold=part(rc=1, wall_s=2.0)))
    assert failed["train_cold_s"]["measured"] is None and failed["train_cold_s"]["met"] is None
    assert failed["sweep_s"]["measured"] is None  # the sweep never ran

    off_the_goals = gpu_speed.checks(report(judged=False, sweep=part(wall_s=100.0)))
    assert all(off_the_goals[name]["met"] is None for name in ("train_cold_s", "sweep_s", "predict_images_per_s"))


def test_a_sweep_stopped_at_the_limit_fails_the_goal_only_once_it_ran_past_it(gpu_speed):
    long = gpu_speed.checks(report(sweep=part(rc=None, wall_s=130.0, timed_out=True)))
    assert long["sweep_s"]["measured"] == "more than 130.0" and long["sweep_s"]["met"] is False
    short = gpu_speed.checks(report(sweep=part(rc=None, wall_s=60.0, timed_out=True)))
    assert short["sweep_s"]["met"] is None  # stopped before 120 s: not known either way


def test_commands_past_the_deadline_are_skipped_and_logged(gpu_speed, tmp_path):
    runner = gpu_speed.Runner(tmp_path, deadline=time.monotonic() - 1)
    result = runner.vip(["--help"], tmp_path / "cache")
    assert result["rc"] is None and result["skipped"] == "time limit reached"
    assert "skipped: the time limit was reached" in (tmp_path / "gpu_speed.log").read_text()


def test_a_command_running_past_the_deadline_is_stopped_and_recorded(gpu_speed, tmp_path, monkeypatch):
    # stand in for `python -m vipcli ...` with a process that sleeps past the limit
    monkeypatch.setattr(gpu_speed.sys, "executable", sys.executable)
    sleeper = tmp_path / "vipcli"
    sleeper.mkdir()
    (sleeper / "__main__.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(30)\n")
    monkeypatch.chdir(tmp_path)  # `-m vipcli` finds the sleeper first
    # the deadline set last and with room: on a loaded machine 2 s could pass before the call, which then
    # skipped the command (under 1 s left) instead of starting and stopping it
    runner = gpu_speed.Runner(tmp_path, deadline=time.monotonic() + 5)
    started = time.monotonic()
    result = runner.vip(["train"], tmp_path / "cache")
    assert time.monotonic() - started < 20
    assert result["timed_out"] is True and result["rc"] is None
    assert "rc=None (timed out)" in (tmp_path / "gpu_speed.log").read_text()


def test_the_report_is_written_whole_after_each_part(gpu_speed, tmp_path):
    target = tmp_path / "gpu_speed.json"
    partial = report(complete=False)
    gpu_speed.save(partial, target)
    written = json.loads(target.read_text())
    assert written["complete"] is False and written["checks"]["train_warm_s"]["met"] is True
    assert not target.with_suffix(".json.tmp").exists()


def test_data_that_cannot_be_made_is_one_error_line_and_the_json_says_it(gpu_speed, tmp_path, capsys):
    """On a lent GPU machine ../shared/data is not beside the repository: making the data folder failed with a
    CalledProcessError traceback, before any JSON was written."""
    out = tmp_path / "gs"
    code = gpu_speed.main(["--out", str(out), "--source", str(tmp_path / "no-such-folder"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("error: could not make the Derm7pt-sized folder: no ISIC") and "--source" in err[0]
    written = json.loads((out / "gpu_speed.json").read_text())
    assert written["complete"] is False and written["error"] in err[0] and "torch" in written["machine"]
    assert "train_cold" not in written  # nothing ran


def test_an_uninstalled_vip_is_named_before_anything_runs(gpu_speed, tmp_path, capsys, monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    code = gpu_speed.main(["--out", str(tmp_path / "gs"), "--data", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: vip is not installed") and "pip install" in err


def test_the_carry_script_run_without_prepare_names_the_step_to_take(tmp_path):
    """scripts/gpu_carry.sh run on a machine where `prepare` was not carried: one line naming it, before pip."""
    import shutil
    import subprocess

    (tmp_path / "scripts").mkdir()
    carry = shutil.copy(SCRIPT.with_name("gpu_carry.sh"), tmp_path / "scripts")
    ran = subprocess.run(["bash", carry, "run", str(tmp_path / "out")], capture_output=True, text=True)
    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: no gpu-carry/: run scripts/gpu_carry.sh prepare first"
    usage = subprocess.run(["bash", carry], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: scripts/gpu_carry.sh prepare | run OUT")
