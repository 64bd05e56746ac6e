"""Check vip's GPU speed goals (README, Speed) on your own machine and gather every figure into one JSON.

Runs vip as whole processes, the way a user does, each timed from the outside:

  1. `vip train --shots all --epochs 50` on a cold feature cache, then again on the warm cache
     (goal: cold at most 10.7 s, aim 5.4 s; warm at most 5 s on one H100/H200), and warm once more
     with VIP_CUDA_GRAPHS=0 (the text step without CUDA graphs: its time and test accuracy);
  2. `vip benchmark --speed` (feature extraction, cached and reference training, `vip predict`
     images/s after the model has loaded and its load time; goal: at least 300 images/s, load at
     most 3 s), plus the machine, per-phase seconds, steps/s and peak memory;
  3. the default `vip benchmark` sweep (5 methods x 5 shot counts x 3 seeds) on a cold cache
     (goal: at most 120 s), optionally also with `--no-batch` for comparison.

Defaults are the issue's setting: the Derm7pt-sized folder of `scripts/make_derm7pt_sized.py`
(made if --data is not given, from --source where ../shared/data is not beside the repository, as on
a lent GPU machine) and ViT-B/16 (`ViT-B-16-quickgelu`) with random weights saved once
to a local safetensors file, so the model loads from local disk as it would with real weights.

The three parts run in that order of certainty: the full runs, then `--speed`, then the sweep, whose
length on a new GPU is the least known. OUT/gpu_speed.json is rewritten after each part
(`"complete": false` until the end), and `--time-limit` stops the part that would run past it, so a
machine lent for a fixed time still returns every figure measured before the limit.

Usage (on the GPU machine, in the vip environment):
    python scripts/gpu_speed.py --out gpu-speed            # everything, about 5-10 minutes
    python scripts/gpu_speed.py --out gpu-speed --time-limit 480  # stop what would run past 8 minutes
    python scripts/gpu_speed.py --out gpu-speed --no-sweep # goals 1 and 3 only
    python scripts/gpu_speed.py --out gpu-speed --source isic2017_mel_nv  # the ISIC images carried along
    # a quick dry run on a CPU (tiny settings; the goals then say nothing):
    python scripts/gpu_speed.py --out /tmp/s --device cpu --data DIR --arch small-clip --epochs 2 \\
        --sweep-shots 1,2 --sweep-seeds 1 --sweep-methods vip,coop --views 2

Writes OUT/gpu_speed.json (and OUT/gpu_speed.log with every command's output). Without the data, the
weights or an installed vip, nothing runs: one `error:` line says what to pass or install (exit 2), and the
JSON holds it beside the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOALS = {  # README's Speed goals, on one H100/H200
    "train_cold_s": 10.7, "train_cold_aim_s": 5.4, "train_warm_s": 5.0, "sweep_s": 120.0,
    "predict_images_per_s": 300.0, "model_load_s": 3.0,
}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (`argv`, default sys.argv[1:]) as a Namespace; argparse exits 2 on a bad one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_speed.json and scratch runs")
    parser.add_argument("--data", type=Path, help="benchmark folder (default: make the Derm7pt-sized one in OUT)")
    parser.add_argument("--source", type=Path, help="ISIC melanoma/nevus folder the Derm7pt-sized one is made from "
                        "(default: make_derm7pt_sized.py's, ../shared/data/isic2017_mel_nv, which a GPU machine "
                        "may lack); the run is still judged, as with no --data")
    parser.add_argument("--arch", default="ViT-B-16-quickgelu", help="open_clip architecture")
    parser.add_argument("--pretrained", help="local weights file (default: random weights saved once in OUT)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, cpu")
    parser.add_argument("--epochs", type=int, default=50, help="epochs of the full run (default: the paper's 50)")
    parser.add_argument("--views", type=int, help="augmented views per training image (default: vip's)")
    parser.add_argument("--workers", type=int, help="decoding workers (default: vip's, the usable cores)")
    parser.add_argument("--sweep-methods", help="default: vip benchmark's default methods")
    parser.add_argument("--sweep-shots", help="default: vip benchmark's 1,2,4,8,16")
    parser.add_argument("--sweep-seeds", help="default: vip benchmark's 1,2,3")
    parser.add_argument("--sweep-epochs", type=int, help="override the sweep's schedule epochs")
    parser.add_argument("--no-sweep", action="store_true", help="skip goal 2 (the benchmark sweep)")
    parser.add_argument("--compare-sequential", action="store_true", help="also time the sweep with --no-batch")
    parser.add_argument("--no-graphs-comparison", action="store_true", help="skip the warm run without CUDA graphs")
    parser.add_argument("--import-profile", action="store_true", help="time one more warm run under Python's "
                        "-X importtime and keep the slowest imports (where a fresh process's seconds go)")
    parser.add_argument("--predict-all", action="store_true", help="also time `vip predict` (after the model has "
                        "loaded) on every image of the folder, not only its test split")
    parser.add_argument("--time-limit", type=float, help="seconds for the whole script: a command that would run "
                        "past it is stopped and recorded as timed out, later ones are skipped (default: none)")
    return parser.parse_args(argv)


class Runner:
    """Runs `vip ...` commands as processes with a chosen feature cache, timing each, logging output."""

    def __init__(self, out: Path, deadline: float | None = None):
        self.out = out
        self.deadline = deadline  # time.monotonic() after which no command runs; None: no limit
        self.log = (out / "gpu_speed.log").open("a", encoding="utf-8")

    def time_left(self) -> float | None:
        """Seconds before the deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def vip(self, args: list, cache: Path, env: dict | None = None, keep_stderr: bool = False) -> dict:
        """Run `vip ARGS` with VIP_CACHE_DIR=cache (and `env`); return {command, rc, wall_s, stdout, warnings}
        (and stderr, with `keep_stderr`).

        Past the deadline the command is not started (`"skipped"`); one that would run past it is stopped
        there (`"timed_out"`, rc None), so the figures measured before it still reach the JSON.
        """
        return self.run([sys.executable, "-m", "vipcli", *[str(a) for a in args]], "vip " + " ".join(str(a) for a in args),
                        cache, env, keep_stderr)

    def run(self, command: list, shown: str, cache: Path, env: dict | None = None, keep_stderr: bool = False) -> dict:
        """Run `command` (shown in the log as `shown`) as `vip` above; with `keep_stderr`, the result holds its stderr."""
        left = self.time_left()
        if left is not None and left <= 1:
            self.log.write(f"$ {shown}\nskipped: the time limit was reached\n\n")
            self.log.flush()
            return {"command": shown, "rc": None, "skipped": "time limit reached", "wall_s": None, "stdout": "",
                    "warnings": []}
        env = {**os.environ, "VIP_CACHE_DIR": str(cache), **(env or {})}
        started = time.perf_counter()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
            rc, stdout, stderr, timed_out = done.returncode, done.stdout, done.stderr, False
        except subprocess.TimeoutExpired as stopped:
            rc, timed_out = None, True
            stdout, stderr = (_text(stopped.stdout), _text(stopped.stderr))
        wall = time.perf_counter() - started
        logged = "(its -X importtime lines are summarised in the JSON)\n" if keep_stderr else stderr
        self.log.write(f"$ {shown}\n{stdout}{logged}rc={rc}{' (timed out)' if timed_out else ''} wall={wall:.2f}s\n\n")
        self.log.flush()
        if rc != 0:
            why = "ran past the time limit" if timed_out else f"failed (rc {rc})"
            print(f"error: `{shown}` {why}; see {self.log.name}", file=sys.stderr)
        warnings = [line for line in stderr.splitlines() if line.startswith(("warning:", "error:"))]
        result = {"command": shown, "rc": rc, "wall_s": round(wall, 3), "stdout": stdout, "warnings": warnings[:20],
                  **({"stderr": stderr} if keep_stderr else {})}
        return {**result, "timed_out": True} if timed_out else result


def fresh(folder: Path) -> Path:
    """An empty folder (a cold feature cache, a new run directory)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def random_weights(arch: str, path: Path) -> Path:
    """Random weights of `arch` saved once as safetensors (what a downloaded checkpoint would be)."""
    if path.is_file():
        return path
    import torch
    from safetensors.torch import save_file

    from vip_backbones.openclip_base import create_open_clip

    model, _ = create_open_clip(arch, None, torch.device("cpu"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


class SetupFailed(Exception):
    """The data, the weights or vip itself cannot be had: nothing can be measured (the message says what to do)."""


def prepare(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """The benchmark folder and the weights file every part uses, made where not given; SetupFailed if not."""
    from importlib.metadata import entry_points

    if "clip" not in {entry.name for entry in entry_points(group="vip.backbones")}:
        raise SetupFailed(f"vip is not installed in this Python ({sys.executable}): its backbones are registered "
                          "when it is; run `pip install --no-deps --no-build-isolation -e .` in the repository")
    data = args.data
    if data is None:
        data = out / "derm7pt-sized"
        if not data.is_dir():
            source = ["--source", str(args.source)] if args.source else []
            made = subprocess.run([sys.executable, str(HERE / "make_derm7pt_sized.py"), str(data), *source],
                                  capture_output=True, text=True)
            if made.returncode != 0:
                said = (made.stderr.strip().splitlines() or [f"rc {made.returncode}"])[-1].removeprefix("error: ")
                raise SetupFailed(f"could not make the Derm7pt-sized folder: {said}; pass --source with the ISIC "
                                  "melanoma/nevus folder, or --data with a benchmark folder (not judged)")
    if args.pretrained:
        return data.resolve(), Path(args.pretrained).resolve()
    try:
        return data.resolve(), random_weights(args.arch, out / "weights.safetensors")
    except Exception as error:  # open_clip missing, an architecture it does not know, a full disk
        said = " ".join(str(error).split()) or type(error).__name__
        raise SetupFailed(f"could not save random weights of {args.arch}: {type(error).__name__}: {said}; install "
                          "open_clip_torch, or pass --pretrained with a weights file") from error


def machine() -> dict:
    """The GPU(s) as nvidia-smi names them, torch's view, CPU cores and load."""
    import torch

    from vipcli.settings import usable_cores

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
            "usable_cores": usable_cores(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    return info


def main(argv=None) -> int:
    """Time the speed goals into OUT/gpu_speed.json; exit status 0 when every timed command succeeded, 1 when one
    failed, 2 when the data or weights could not be prepared."""
    args = parse_args(argv)
    started = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, started + args.time_limit if args.time_limit else None)
    # the setting (--no-sweep changes no other part, so such a run is still judged)
    defaults = (args.arch == "ViT-B-16-quickgelu" and args.epochs == 50 and args.views is None and args.data is None
                and not any((args.sweep_methods, args.sweep_shots, args.sweep_seeds, args.sweep_epochs)))
    report = {"format": "vip-gpu-speed", "complete": False, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "time_limit_s": args.time_limit, "machine": machine(), "arch": args.arch, "epochs": args.epochs,
              "goals": GOALS}
    report["judged"] = bool(report["machine"]["cuda_available"] and args.device != "cpu" and defaults)
    target = out / "gpu_speed.json"
    try:  # what every part needs, before any of them: a failure here is one line, and the JSON says it
        data, weights = prepare(args, out)
    except SetupFailed as failed:
        report["error"] = str(failed)
        save(report, target)
        print(f"error: {failed}", file=sys.stderr)
        return 2
    report.update(data=str(data), weights=str(weights))
    backbone = ["--arch", args.arch, "--pretrained", weights, "--device", args.device]
    common = [*backbone, *(["--views", args.views] if args.views else []),
              *(["--workers", args.workers] if args.workers is not None else [])]

    # goal 1: a full default run, cold then warm cache, as whole processes
    cache = fresh(out / "cache-train")
    train = ["train", "--data", data, "--shots", "all", "--epochs", args.epochs, *common, "--force", "--json"]
    # then warm without CUDA graphs: what the graphs save, and that the accuracy does not move
    parts = [("train_cold", None), ("train_warm", None)]
    parts += [] if args.no_graphs_comparison else [("train_warm_no_graphs", {"VIP_CUDA_GRAPHS": "0"})]
    for name, env in parts:
        result = runner.vip([*train, "--out", out / f"run-{name}"], cache, env)
        metrics = _json(out / f"run-{name}" / "metrics.json") if result["rc"] == 0 else None
        result.pop("stdout")
        report[name] = {**result, "timings": (metrics or {}).get("timings"), "steps": (metrics or {}).get("steps"),
                        "test_accuracy": ((metrics or {}).get("test") or {}).get("accuracy")}
        save(report, target)

    if args.import_profile:  # the warm run once more, its imports timed: where a fresh process's seconds go
        result = runner.vip([*train, "--out", out / "run-import-profile"], cache, {"PYTHONPROFILEIMPORTTIME": "1"},
                            keep_stderr=True)
        result.pop("stdout")
        report["import_profile"] = {**result, "slowest": slowest_imports(result.pop("stderr"))}
        save(report, target)
    if args.predict_all and (report.get("train_warm") or {}).get("rc") == 0:
        report["predict_all"] = predict_all(runner, out / "run-train_warm", data, args, cache)
        save(report, target)

    # goal 3 (and the rest): vip benchmark --speed, predict images/s after load and the load time
    speed = ["benchmark", "--speed", "--data", data, *common, "--speed-epochs", args.epochs, "--out", out / "speed",
             "--json"]
    result = runner.vip(speed, fresh(out / "cache-speed"))
    result.pop("stdout")
    report["speed"] = {**result, "report": _json(out / "speed" / "speed.json") if result["rc"] == 0 else None}
    save(report, target)

    # goal 2: the default benchmark sweep, cold cache, batched (and optionally one row at a time); last,
    # since its length on a new GPU is the least known
    if not args.no_sweep:
        sweep = ["benchmark", "--data", data, *common, "--force", "--json"]
        for option, value in (("--methods", args.sweep_methods), ("--shots", args.sweep_shots),
                              ("--seeds", args.sweep_seeds), ("--epochs", args.sweep_epochs)):
            sweep += [option, value] if value is not None else []
        modes = [("sweep", [])] + ([("sweep_sequential", ["--no-batch"])] if args.compare_sequential else [])
        for name, extra in modes:
            result = runner.vip([*sweep, *extra, "--out", out / name], fresh(out / f"cache-{name}"))
            rows = (_loads(result.pop("stdout")) or {}).get("rows", [])
            report[name] = {**result, "rows": len(rows), "fit_s_sum": round(sum(r.get("fit_s", 0) for r in rows), 3)}
            save(report, target)

    report["complete"] = True
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save(report, target)
    print(json.dumps(report["checks"], indent=2))
    print(f"written to {target}")
    return 0 if all(r.get("rc", 0) == 0 for r in report.values() if isinstance(r, dict)) else 1


PREDICT_ALL = """
import json, sys, time
from pathlib import Path
from vipcli.data import load_dataset
from vipcli.devices import resolve_device
from vipcli.settings import default_workers
from vipcli.speed import measure_predict
run, data, device, workers = sys.argv[1:5]
dataset = load_dataset(Path(data))
paths = [str(s.path) for name in ("train", "val", "test") for s in dataset.splits.get(name, [])]
workers = int(workers) if workers else default_workers()
first = measure_predict(Path(run), paths, resolve_device(device), workers, 64)
again = measure_predict(Path(run), paths, resolve_device(device), workers, 64)  # the same process, kernels warm
print(json.dumps({"first": first, "again": again}))
"""


def predict_all(runner: Runner, run_dir: Path, data: Path, args: argparse.Namespace, cache: Path) -> dict:
    """`vip predict`'s images/s after the model has loaded, on every image of `data` (as `--speed` times it on the
    test split), twice in one process: the first call as a user's, the second with the GPU's kernels warm; then
    `vip predict --out` on the same images as a whole process (`to_file`: its wall time and records written)."""
    workers = "" if args.workers is None else str(args.workers)
    command = [sys.executable, "-c", PREDICT_ALL, str(run_dir), str(data), args.device, workers]
    result = runner.run(command, f"predict on every image of {data} with {run_dir}", cache)
    # and `vip predict --out` as a whole process (model load and imports included): its chunks grow from 128
    # images, so it is the case one set of decoding workers for every chunk is for
    records = run_dir.parent / "predict-all.jsonl"
    to_file = runner.vip(["predict", data, "--model", run_dir, "--out", records, "--no-cache", "--force",
                          *(["--workers", args.workers] if args.workers is not None else [])], cache)
    to_file.pop("stdout")
    written = len(records.read_text().splitlines()) if to_file["rc"] == 0 and records.exists() else None
    return {**{k: v for k, v in result.items() if k != "stdout"}, **(_loads(result["stdout"]) or {}),
            "to_file": {**to_file, "records": written}}


def slowest_imports(stderr: str, top: int = 25) -> dict:
    """From `-X importtime` output: the total seconds of the top-level imports and the `top` slowest imports
    by cumulative time (name, seconds, depth: 0 for a top-level import)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append({"module": name.strip(), "s": round(int(cumulative) / 1e6, 3), "depth": depth})
    total = round(sum(r["s"] for r in rows if r["depth"] == 0), 3)
    return {"top_level_total_s": total, "slowest": sorted(rows, key=lambda r: -r["s"])[:top]}


def save(report: dict, target: Path) -> None:
    """Recompute the verdicts and write the report atomically (after every part, so a stopped run keeps its figures)."""
    report["checks"] = checks(report)
    scratch = target.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(report, indent=2))
    scratch.replace(target)


def checks(report: dict) -> dict:
    """Each goal's measured figure and whether it is met (None where it was not measured, or not judged)."""
    def completed(name: str) -> dict:  # a part that ran to the end (rc 0); {} if it failed, was stopped or skipped
        part = report.get(name) or {}
        return part if part.get("rc") == 0 else {}

    speed = completed("speed").get("report") or {}
    predict = speed.get("predict") or {}
    figures = {
        "train_cold_s": (completed("train_cold").get("wall_s"), GOALS["train_cold_s"]),
        "train_warm_s": (completed("train_warm").get("wall_s"), GOALS["train_warm_s"]),
        "sweep_s": (completed("sweep").get("wall_s"), GOALS["sweep_s"]),
        "model_load_s": (predict.get("load_s"), GOALS["model_load_s"]),
    }
    judged = report["judged"]
    result = {name: {"measured": value, "at_most": goal, "met": value <= goal if judged and value is not None else None}
              for name, (value, goal) in figures.items()}
    sweep = report.get("sweep") or {}
    if sweep.get("timed_out"):  # stopped at the time limit: the sweep takes longer than it ran
        missed = judged and sweep["wall_s"] > GOALS["sweep_s"]
        result["sweep_s"].update(measured=f"more than {sweep['wall_s']}", met=False if missed else None)
    rate = predict.get("images_per_s")
    result["predict_images_per_s"] = {"measured": rate, "at_least": GOALS["predict_images_per_s"],
                                      "met": rate >= GOALS["predict_images_per_s"] if judged and rate is not None
                                      else None}
    every = completed("predict_all")  # not a goal of its own: the same rate on a folder larger than the test split
    if every:
        result["predict_all_images_per_s"] = {"images": (every.get("first") or {}).get("images"),
                                              "first": (every.get("first") or {}).get("images_per_s"),
                                              "again": (every.get("again") or {}).get("images_per_s")}
    with_graphs, without = completed("train_warm"), completed("train_warm_no_graphs")
    result["cuda_graphs"] = {
        "status": (with_graphs.get("timings") or {}).get("cuda_graphs"),  # from the run's metrics.json
        "turned_off": [w for w in with_graphs.get("warnings", []) if "CUDA graphs are off" in w],
        "warm_s_with": with_graphs.get("wall_s"), "warm_s_without": without.get("wall_s"),
        "fit_s_with": (with_graphs.get("timings") or {}).get("fit_s"),
        "fit_s_without": (without.get("timings") or {}).get("fit_s"),
        "test_accuracy_with": with_graphs.get("test_accuracy"), "test_accuracy_without": without.get("test_accuracy"),
    }
    result["note"] = ("judged against the issue's goals (one H100/H200, default settings)" if judged else
                      "not judged (met: null): the goals are for a CUDA GPU with the default settings; this run only "
                      "exercised the script")
    return result


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _text(output) -> str:
    """What a stopped process had printed (bytes or str or None) as text."""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
