"""`vip demo`: generate a lesion world, show packs, train, predict with --explain, benchmark, report."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from vipcli import console
from vipcli.cli import options as opt


def _step(title: str) -> None:
    console.stdout().rule(f"[bold]{title}")


DEMO_MARKER = ".vip-demo"  # marks a folder `vip demo` made, which a later demo may replace
# what vip 0.1's demo wrote, before the marker: these folders, with these files in run/ and benchmark/
EARLIER_DEMO_FILES = {
    "run": {"run.yaml", "model.safetensors", "metrics.json", "split.json", "report.html"},
    "benchmark": {"results.csv", "results.json", "shots.png", "split.json", "report.html"},
}
DEMO_CLASSES = ("melanoma", "nevus")


def made_by_an_earlier_demo(out: Path) -> bool:
    """Whether `out` holds only what `vip demo` of vip 0.1 wrote (no marker then): a lesion world in
    data/ (train/val/test x melanoma/nevus of CLASS_00000.png files) and the files of its run/ and
    benchmark/. Anything else in it (a user's file, another data set) makes it not the demo's."""
    import re

    def names(folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir()} if folder.is_dir() and not folder.is_symlink() else {""}

    parts = names(out)
    if "data" not in parts or not parts <= {"data", *EARLIER_DEMO_FILES}:
        return False
    if any(not names(out / part) <= files for part, files in EARLIER_DEMO_FILES.items() if part in parts):
        return False
    data = out / "data"
    if not names(data) <= {"train", "val", "test"}:
        return False
    for split in names(data):
        if not names(data / split) <= set(DEMO_CLASSES):
            return False
        for name in names(data / split):
            image = re.compile(rf"{name}_\d{{5}}\.png")
            if not all(image.fullmatch(file) for file in names(data / split / name)):
                return False
    return True


def check_demo_folder(out: Path, force: bool) -> None:
    """Refuse an --out that holds files the demo did not make (the demo replaces its own files, also
    those of vip 0.1's demo, which left no marker); with `force`, still refuse a run/ or benchmark/ in it that
    `vip train --force` or `vip benchmark --force` would refuse, before the demo writes anything."""
    from vipcli.errors import VipError

    if not (force or not out.exists() or (out / DEMO_MARKER).exists() or made_by_an_earlier_demo(out)):
        if not out.is_dir():
            raise VipError(f"--out {out} is a file", "choose a folder for the demo")
        if any(out.iterdir()):
            raise VipError(f"--out {out} holds files that `vip demo` did not make; the demo would replace its "
                           "data/, run/ and benchmark/", "choose another --out, or pass --force")
    if out.is_dir():
        check_demo_parts(out)


SPLITS = ("train", "val", "test")  # what the demo's data/ holds


def check_demo_parts(out: Path) -> None:
    """The checks the demo's own `vip train --force` and `vip benchmark --force` make of `out`/run and
    `out`/benchmark, made first, and a data/ holding more than the demo's splits (the demo replaces data/ whole):
    a folder of the user's there stops the demo before it writes its data set."""
    from vipcli.errors import VipError
    from vipcli.preflight import check_run_dir
    from vipcli.sweep_folder import refuse_foreign_files

    check_run_dir(out / "run", force=True)
    for part in ("benchmark", "data"):
        if (out / part).exists() and not (out / part).is_dir():
            raise VipError(f"--out {out / part} is a file", "choose another --out")
    refuse_foreign_files(out / "benchmark", "choose another --out")
    data = out / "data"  # replaced whole by the demo's new data set
    others = sorted(p.name for p in data.iterdir() if p.name not in SPLITS) if data.is_dir() else []
    if others:
        raise VipError(f"--out {data} holds other files than the demo's train/, val/ and test/ ({', '.join(others[:3])}"
                       f"{', ...' if len(others) > 3 else ''}), which the demo would delete", "choose another --out")


def demo_command(
    out: Path = typer.Option(Path("vip-demo"), "--out", help="Folder for the generated data, run and benchmark."),
    seed: int = opt.seed(0, "Seed of the generated lesion world."),
    test_per_class: int = typer.Option(150, "--test-per-class", hidden=True),
    bench_seeds: str = typer.Option("1,2,3", "--bench-seeds", hidden=True),
    force: bool = typer.Option(False, "--force", help="Use an --out folder that holds other files: the train, "
                               "val and test folders of its data/ are replaced; a run/, benchmark/ or other files in "
                               "data/ that vip did not write are still refused."),
) -> None:
    """Run the whole product offline on the shipped toy backbone (about 30 s on a 2-core CPU)."""
    from vipcli.demo import DemoConfig
    from vipcli.locks import folder_lock
    from vipcli.preflight import check_output_folder

    check_demo_folder(out, force)
    check_output_folder(out)
    started = time.perf_counter()
    from vipcli.cli.benchmark import parse_list

    seeds = parse_list("--bench-seeds", bench_seeds, opt.seed_value, opt.seed_range)
    config = DemoConfig(out=out, seed=seed, test_per_class=test_per_class, bench_seeds=seeds)
    with folder_lock(out):  # a second `vip demo` into `out` meanwhile refuses at once
        run_demo(config, started)


def run_demo(config, started: float) -> None:
    """The demo's six steps into `config.out`, which the caller has checked and holds; `started`: when the command
    began (perf_counter), for the closing line."""
    from vipcli.cli.benchmark import print_benchmark
    from vipcli.cli.predict import print_predictions
    from vipcli.cli.symptoms import show_command
    from vipcli.cli.train import print_train_result
    from vipcli.benchmark import run_benchmark
    from vipcli.demo import benchmark_config, make_dataset, sample_images, train_config
    from vipcli.predict import load_predictor, predict
    from vipcli.train import train

    out, seeds = config.out, config.bench_seeds
    _step("1. a generated lesion world (melanoma-like vs nevus-like spots, 64x64)")
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by `vip demo`; running it again here replaces this folder's demo files\n")
    data = make_dataset(config)
    console.stdout().print(f"wrote {data}: train/val/test x melanoma/nevus", markup=False)
    for part, name in zip("ab", ("melanoma", "nevus")):
        _step(f"2{part}. the shipped '{name}' symptom pack (the paper's symptoms)")
        show_command(name, as_json=False)
    _step("3. vip train --backbone toy --shots 16")
    with console.progress_bar() as progress:
        result = train(train_config(config, data), progress)
    print_train_result(result, as_json=False)
    _step("4. vip predict --explain --coverage 0.9")
    predictor = load_predictor(result.run_dir)
    predictions, _ = predict(predictor, sample_images(data), explain=True, workers=0, coverage=0.9)
    print_predictions(predictions, explain=True)
    _step(f"5. vip benchmark (1, 4, 16 shots; seeds {', '.join(map(str, seeds))})")
    with console.progress_bar() as progress:
        bench = run_benchmark(benchmark_config(config, data), progress)
    print_benchmark(bench, as_json=False)
    _step("6. vip report (calibration, prediction sets, merge weights, test images)")
    _reports(result.run_dir, bench.out, config.workers)
    console.stdout().print(f"demo finished in {time.perf_counter() - started:.0f}s; everything is in {out}{os.sep}",
                           markup=False)
    console.info("next: train on your own images, one subfolder per class: vip train --data FOLDER "
                 "(README: Train on your own images)")  # a hint: stderr


def _reports(run_dir: Path, bench_dir: Path, workers: int) -> None:
    """Write the run's and the benchmark's HTML reports and say where to open them (#11)."""
    from vipcli.report import write_report

    out = console.stdout()
    with console.progress_bar() as progress:
        run_report = write_report(run_dir, workers=workers, device="cpu", progress=progress)
    bench_report = write_report(bench_dir)
    out.print(f"report of the run:       {run_report}", markup=False)
    out.print(f"report of the benchmark: {bench_report}", markup=False)
    out.print(f"open in a browser:       {run_report.resolve().as_uri()}", markup=False)
