"""`vip benchmark`: ViP against the baselines on the user's data (few-shot sweep), or `--speed`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.errors import UsageError, VipError
from vipcli.cli import completion, options as opt
from vipcli.cli.options import parse_list  # noqa: F401  (kept importable from here, as in vip 0.1.0)

DEFAULT_METHODS = ("zeroshot", "symptom-zeroshot", "linear-probe", "coop", "tip-adapter", "tip-adapter-f", "clap",
                   "biomedcoop", "vip")  # vipcli.methods.DEFAULT_BENCHMARK, repeated so `vip -h` imports no torch


def benchmark_command(
    data: Path = opt.DATA,
    methods: str = typer.Option(",".join(DEFAULT_METHODS), "--methods", help="Comma-separated method ids, or 'all' "
                                "for every installed method (see `vip methods list`).",
                                show_default=", ".join(DEFAULT_METHODS),
                                autocompletion=completion.method_list),  # spaced, so help wraps it whole
    shots: str = typer.Option("1,2,4,8,16", "--shots", help="Comma-separated shots per class ('all': every image)."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Comma-separated seeds, or a range such as 1-5 (few-shot "
                               "subset, init, batches)."),
    backbone: str = opt.BACKBONE,
    arch: Optional[str] = opt.ARCH,
    pretrained: Optional[str] = opt.PRETRAINED,
    symptoms: Optional[List[str]] = opt.SYMPTOMS,
    schedule: str = opt.SCHEDULE,
    epochs: Optional[int] = opt.EPOCHS,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    lr: Optional[float] = opt.LR,
    n_ctx: Optional[int] = opt.N_CTX,
    class_specific_context: bool = opt.CLASS_SPECIFIC,
    method_option: Optional[List[str]] = opt.METHOD_OPTION,
    views: int = opt.VIEWS,
    image_fit: str = opt.BENCHMARK_IMAGE_FIT,
    split_seed: Optional[int] = opt.seed(None, "Seed of a split vip makes (default: the stored sweep's, else the "
                                         "first seed).", "--split-seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default benchmarks/<data name>); "
                                       "an interrupted sweep resumes there."),
    force: bool = typer.Option(False, "--force", help="Start over instead of resuming the sweep stored in --out."),
    keep_going: bool = typer.Option(False, "--keep-going", help="A row that fails is recorded in results.json and the "
                                    "other rows run; exit code 1 at the end (without it the sweep stops there)."),
    batch: bool = typer.Option(True, "--batch/--no-batch", help="Train the seeds and shot counts of one prompt "
                               "method together (one text forward per step for all rows); --no-batch runs rows "
                               "one by one (same results up to float rounding)."),
    device: str = opt.DEVICE,
    workers: Optional[int] = opt.WORKERS,
    encode_batch: int = opt.ENCODE_BATCH,
    no_cache: bool = opt.NO_CACHE,
    as_json: bool = opt.JSON,
    speed: bool = typer.Option(False, "--speed", help="Measure speed instead: feature extraction, a full ViP run "
                               "cached vs re-encoding every epoch, predict, memory; writes speed.json."),
    speed_epochs: Optional[int] = typer.Option(None, "--speed-epochs", help="With --speed: epochs of the timed runs "
                                               "(default: the paper schedule's 50)."),
) -> None:
    """Compare methods on the same seeded few-shot subsets of your data, or measure speed (--speed)."""
    backbone_settings = opt.backbone_settings(backbone, arch, pretrained, device)
    encoding = opt.encoding_settings(views, workers, no_cache, encode_batch, image_fit)
    seed_values = opt.parse_list("--seeds", seeds, opt.seed_value, opt.seed_range)
    check_speed_options(speed, speed_epochs, {
        "--methods": methods != ",".join(DEFAULT_METHODS), "--shots": shots != "1,2,4,8,16",
        "--epochs": epochs is not None, "--batch-size": batch_size is not None, "--lr": lr is not None,
        "--schedule": schedule != "auto", "--n-ctx": n_ctx is not None, "--class-specific-context": class_specific_context,
        "--method-option": bool(method_option), "--split-seed": split_seed is not None, "--force": force,
        "--keep-going": keep_going,
        "--no-batch": not batch, "--seeds": seeds != "1,2,3" and len(seed_values) > 1})
    if speed:
        from vipcli.distributed import world_from_env
        from vipcli.speed import SpeedConfig, measure_speed

        if world_from_env().distributed:  # (#13)
            raise UsageError("--speed times one process; under torchrun every rank would time itself",
                             "run `vip benchmark --speed` without torchrun")

        config = SpeedConfig(data=data, backbone=backbone_settings, encoding=encoding,
                             symptoms=opt.symptom_sources(symptoms), epochs=speed_epochs,
                             seed=seed_values[0], out=out)
        with console.progress_bar() as progress:
            report = measure_speed(config, progress)
        print_speed(report, as_json)
        return
    method_ids, shot_values = opt.parse_list("--methods", methods), opt.parse_list("--shots", shots, opt.parse_shots)
    options = opt.method_options(method_option, n_ctx, class_specific_context)
    from vipcli.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        data=data, methods=method_ids, shots=shot_values, seeds=seed_values, method_options=options,
        backbone=backbone_settings, encoding=encoding, schedule=opt.schedule_settings(schedule, epochs, batch_size, lr),
        symptoms=opt.symptom_sources(symptoms), split_seed=split_seed, out=out, force=force, batched=batch,
        keep_going=keep_going,
    )
    from vipcli.cli.train import _rank_progress
    from vipcli.distributed import world_from_env
    from vipcli.plugins import scans_held

    with scans_held():  # the sweep and its tables read the installed plugins once
        with _rank_progress() as progress:
            result = run_benchmark(config, progress)
        if result is not None and world_from_env().main:  # torchrun: rank 0 reports (#13)
            print_benchmark(result, as_json)
            check_no_failed_rows(result)


def check_no_failed_rows(result) -> None:
    """After the tables of a `--keep-going` sweep whose rows failed: one error line naming them (exit code 1), as
    `make -k` ends; the rows that finished are kept."""
    from vipcli.benchmark import failed_row_name

    failed = result.failed_rows
    if not failed:
        return
    named = console.first_few(map(failed_row_name, failed), 3)
    total = len(failed) + result.trained
    which = (f"{len(failed)} of the {console.counted(total, 'row')}" if result.trained
             else "the row" if total == 1 else f"all {total} rows")
    kept = f"the others are kept in {result.out / 'results.json'}, which" if result.trained else \
        f"{result.out / 'results.json'}"
    raise VipError(f"{which} run now failed ({named}); {kept} lists the failures under last_sweep.failed_rows",
                   "fix the cause and run the same command again: it runs the failed rows only")


def _cell(entry: dict | None, metric: str) -> str:
    if entry is None or entry[f"{metric}_mean"] is None:
        return "-"
    if len(entry.get("seeds", [])) < 2 or entry.get(f"{metric}_std") is None:  # one figure: no spread to show
        return f"{entry[f'{metric}_mean']:.2f}"
    return f"{entry[f'{metric}_mean']:.2f}±{entry[f'{metric}_std']:.2f}"


TABLES = (("accuracy", "test accuracy %"), ("balanced_accuracy", "test balanced accuracy %"),
          ("macro_f1", "test macro-F1 %"))  # the summary's metric, the table's title: `vip report`'s order


def benchmark_tables(result) -> list:
    """Three (rich table, note) pairs (test accuracy, test balanced accuracy, test macro-F1): rows = methods,
    columns = shots; the highest mean of each column in bold (on a terminal), and named in words by the note,
    to print as one line under the table (bold is lost in a log file and not said by a screen reader), as in
    `vip report`; the note is None where no column has a figure.

    Where every class has as many test images as the others, balanced accuracy is accuracy, figure for figure:
    its pair is (None, a line saying so) rather than the same table twice."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from vipcli.methods import method_class
    from vipcli.metrics import (CAPPED_MARK, best_note, capped_columns, column_leaders, even_test_classes,
                                unmarked_cells)

    columns = list(dict.fromkeys(str(r["shots"]) for r in result.rows if str(r["shots"]) != "0"))
    capped = capped_columns(result.rows)
    methods = list(dict.fromkeys(r["method"] for r in result.rows))
    by_key = {(s["method"], str(s["shots"])): s for s in result.summary}
    seed_list = sorted({int(r["seed"]) for r in result.rows})
    seeds = ", ".join(map(str, seed_list))
    spread = f"mean±std over seeds {seeds}" if len(seed_list) > 1 else f"seed {seeds}"
    tables = []
    even = even_test_classes(result.rows)
    for metric, title in TABLES:
        if metric == "balanced_accuracy" and even:
            tables.append((None, f"{title}: the same figures as {TABLES[0][1]} ({even} test "
                                 f"{'image' if even == 1 else 'images'} in each class; balanced accuracy differs "
                                 "only where classes are uneven)"))
            continue
        table = Table(title=f"{title}, {spread}", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("method", no_wrap=True)
        for c in columns or ["0"]:
            table.add_column(f"{c}-shot{CAPPED_MARK if c in capped else ''}", justify="right", no_wrap=True)
        entries = {(m, c): by_key.get((m, c if method_class(m).uses_shots else "0")) for m in methods
                   for c in columns or ["0"]}
        unmarked = unmarked_cells(result.rows, getattr(result, "class_names", None), metric)
        leaders = column_leaders({key: (entry or {}).get(f"{metric}_mean") for key, entry in entries.items()},
                                 unmarked)
        for method in methods:
            cells = [Text(_cell(entries[method, c], metric), style="bold" if method in leaders.get(c, ()) else "")
                     for c in columns or ["0"]]
            table.add_row(method if method_class(method).uses_shots else f"{method}*", *cells)
        note = best_note(leaders, methods, columns or ["0"], len(seed_list) > 1, bool(unmarked)) or None
        tables.append((table, note))
    return tables


def print_benchmark(result, as_json: bool) -> None:
    """The tables and where the files are, or one JSON document with rows and summary."""
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    from rich.measure import Measurement

    from vipcli.metrics import shared_test_images

    out = console.stdout()
    measured_on = shared_test_images(result.rows, getattr(result, "class_names", None))
    if measured_on:  # a figure means little without the images behind it (2 test images: 100.00, 50.00 or 0.00)
        out.print(f"every score below is measured on the same {measured_on}", markup=False, soft_wrap=True)
    for table, note in benchmark_tables(result) if result.rows else ():  # every row failed: no table to print
        # never truncate a figure: wider than the terminal, lines wrap
        if table is not None:
            natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
            out.width = max(out.width, natural)
            out.print(table, crop=False)
        if note:
            out.print(note, markup=False, soft_wrap=True)  # one line, as a log file keeps it for grep
    from vipcli.metrics import capped_columns, capped_note

    if capped_columns(result.rows):
        out.print(capped_note(capped_columns(result.rows)), markup=False)
    if any(not r["shots"] for r in result.rows):
        out.print("* uses no labelled images (zero-shot): evaluated once per seed, the same figure in every column")
    failed = getattr(result, "failed_rows", [])
    if failed:  # not in the tables: each named with its error, as results.json's last_sweep.failed_rows holds them
        from vipcli.benchmark import failed_row_name

        named = "; ".join(f"{failed_row_name(row)} ({row['error']})" for row in failed)
        lead = "failed, not in the tables" if result.rows else "no row has finished, so there are no tables; failed"
        out.print(f"{lead}: {named}", markup=False, soft_wrap=True)
    out.print(f"{console.counted(result.trained, 'row')} run, {f'{len(failed)} failed, ' if failed else ''}"
              f"{result.skipped} resumed from earlier; "
              f"{console.counted(result.encoded_views, 'image view')} encoded; results in {written_files(result.out)}")


RESULT_FILES = ("results.csv", "summary.csv", "results.json", "shots.png", "split.json")  # as the count line names them


def written_files(out: Path) -> str:
    """The sweep's result files that `out` holds, as the count line names them: the first with its folder
    ("benchmarks/isic/results.csv, summary.csv, ..."); shots.png only where a row finished to draw."""
    present = [name for name in RESULT_FILES if (out / name).exists()]
    return ", ".join([str(out / present[0]), *present[1:]]) if present else str(out)


def print_speed(report: dict, as_json: bool) -> None:
    """The speed figures as a table (or the speed.json document)."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.table import Table

    from vipcli.speed import load_phases_text

    machine, data = report["machine"], report["data"]
    cached, warm, reference = report["train_cached"], report["train_cached_warm"], report["train_reference"]
    epochs = cached["epochs"]
    table = Table("measure", "value", title=f"speed of {report['backbone']['describe'].get('arch', '')} on "
                  f"{machine['accelerator']} ({machine['cpu']}, {machine['usable_cores']} cores, "
                  f"{machine['torch_threads']} torch threads)")
    table.add_row("data (train / val / test images)", f"{data['train']} / {data['val']} / {data['test']}")
    table.add_row("feature extraction, cold cache", f"{report['feature_extraction']['images_per_s']:.1f} images/s")
    table.add_row(f"ViP train, {epochs} epochs, cached features",
                  f"{cached['seconds']:.1f} s (load {cached['timings']['load_backbone_s']:.1f} s, encode "
                  f"{cached['timings']['encode_s']:.1f} s, fit {cached['timings']['fit_s']:.1f} s: "
                  f"{cached['steps']} steps, {cached['steps_per_s']:.1f} steps/s), test acc {cached['test_accuracy']:.2f}%")
    table.add_row("  same, warm cache (each further run)",
                  f"{warm['seconds']:.1f} s (load {warm['timings']['load_backbone_s']:.1f} s, fit "
                  f"{warm['timings']['fit_s']:.1f} s, {warm['steps_per_s']:.1f} steps/s), test acc "
                  f"{warm['test_accuracy']:.2f}%")
    table.add_row(f"ViP train, {epochs} epochs, reference (authors' way)",
                  f"{reference['seconds']:.1f} s, test acc {reference['test_accuracy']:.2f}%")
    table.add_row("speed-up cached vs reference", f"{report['speedup']:.2f}x (warm cache {report['speedup_warm']:.2f}x)")
    if epochs != report["schedule_paper_epochs"]:
        table.add_row(f"  projected to {report['schedule_paper_epochs']} epochs (linear in epochs)",
                      f"{cached['projected_paper_s']:.0f} s vs {reference['projected_paper_s']:.0f} s: "
                      f"{report['speedup_projected_paper']:.2f}x")
    table.add_row("vip predict on the test images",
                  f"{report['predict']['images_per_s']:.1f} images/s (+ {report['predict']['load_s']:.1f} s model load)")
    for name, phases in (("backbone load, first in the process", report["backbone"].get("load_phases")),
                         ("backbone load in vip predict", report["predict"].get("load_phases"))):
        if phases:
            table.add_row(f"  {name}", load_phases_text(phases))
    table.add_row("peak memory", peak_memory_text(report["memory"]))
    from rich.measure import Measurement

    out = console.stdout()
    out.width = max(out.width, Measurement.get(out, out.options.update_width(10_000), table).maximum)
    out.print(table, crop=False)
    out.print(f"written to {report['path']}")


def peak_memory_text(memory: dict) -> str:
    """speed.json's peak memory as one cell: "812 MiB RSS, 530 MiB CUDA" (no RSS where the OS cannot tell it)."""
    rss = memory.get("peak_rss_mib")
    peak = f"{rss:.0f} MiB RSS" if rss is not None else "RSS not measured on this system"
    if memory.get("cuda_peak_allocated_mib") is not None:
        peak += f", {memory['cuda_peak_allocated_mib']:.0f} MiB CUDA"
    return peak


def check_speed_options(speed: bool, speed_epochs: Optional[int], sweep_options: dict[str, bool]) -> None:
    """UsageError for options that --speed would ignore (`sweep_options`: name -> given), or that need --speed."""
    if not speed:
        if speed_epochs is not None:
            raise UsageError("--speed-epochs goes with --speed", "add --speed, or use --epochs for the sweep")
        return
    if speed_epochs is not None and speed_epochs < 1:
        raise UsageError(f"--speed-epochs must be positive, got {speed_epochs}", "e.g. --speed-epochs 5")
    ignored = [name for name, given in sweep_options.items() if given]
    if ignored == ["--seeds"]:
        raise UsageError("--speed times one seed", "pass a single --seeds value")
    if ignored == ["--epochs"]:
        raise UsageError("--epochs sets the sweep's schedule; --speed times its own runs", "use --speed-epochs N")
    if ignored:
        raise UsageError(f"--speed times ViP on every training image with the paper's schedule; "
                         f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply",
                         f"leave out {', '.join(ignored)}, or drop --speed for the sweep")
