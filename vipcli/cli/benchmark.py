"""`vip benchmark`: ViP against the baselines on the user's data (few-shot sweep), or `--speed`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.errors import UsageError


def parse_list(option: str, value: str, convert=str) -> tuple:
    """'a,b, c' -> (convert(a), convert(b), convert(c)); an empty list or bad item is a usage error."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} needs at least one value, got '{value}'")
    try:
        return tuple(dict.fromkeys(convert(item) for item in items))
    except ValueError:
        raise UsageError(f"{option} {value}: expected a comma-separated list of numbers") from None


def benchmark_command(
    data: Path = typer.Option(..., "--data", help="Folder of class subfolders (optionally under train/ val/ test/)."),
    methods: str = typer.Option("zeroshot,symptom-zeroshot,linear-probe,coop,vip", "--methods",
                                help="Comma-separated methods: vip, vip-cop-only, vip-mep-only, coop, zeroshot, "
                                "symptom-zeroshot, linear-probe."),
    shots: str = typer.Option("1,2,4,8,16", "--shots", help="Comma-separated shots per class ('all': every image)."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Comma-separated seeds (few-shot subset, init, batches)."),
    backbone: str = typer.Option("clip", "--backbone", help="Backbone plugin id (see `vip backbones list`)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture: open_clip name, model-config JSON, hf-hub: id."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Weights: tag, local file, hf-hub: id, or none."),
    symptoms: Optional[List[str]] = typer.Option(None, "--symptoms", help="Pack file, {class: [symptoms]} file, "
                                                 "folder of packs, or shipped pack name. Repeatable."),
    schedule: str = typer.Option("auto", "--schedule", help="auto (fewshot for K shots, paper for all), fewshot "
                                 "or paper."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the schedule's epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the schedule's batch size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the schedule's learning rate."),
    views: int = typer.Option(8, "--views", help="Augmented views encoded and cached per training image."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of a split vip makes (default: the "
                                             "stored sweep's, else the first seed)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default benchmarks/<data name>); "
                                       "an interrupted sweep resumes there."),
    force: bool = typer.Option(False, "--force", help="Start over instead of resuming the sweep stored in --out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    workers: int = typer.Option(2, "--workers", help="Image-decoding worker processes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
    speed: bool = typer.Option(False, "--speed", help="Measure speed instead: feature extraction, a full ViP run "
                               "cached vs re-encoding every epoch, predict, memory; writes speed.json."),
    speed_epochs: Optional[int] = typer.Option(None, "--speed-epochs", help="With --speed: epochs of the timed runs "
                                               "(default: the paper schedule's 50)."),
) -> None:
    """Compare ViP with the baselines on the same seeded few-shot subsets, or measure speed (--speed)."""
    if speed:
        from vipcli.speed import SpeedConfig, measure_speed

        config = SpeedConfig(data=data, backbone=backbone, arch=arch, pretrained=pretrained,
                             symptoms=tuple(symptoms or ()), epochs=speed_epochs, views=views,
                             seed=parse_list("--seeds", seeds, int)[0], out=out, device=device, workers=workers)
        with console.progress_bar() as progress:
            report = measure_speed(config, progress)
        print_speed(report, as_json)
        return
    from vipcli.benchmark import BenchmarkConfig, run_benchmark
    from vipcli.cli.train import parse_shots

    config = BenchmarkConfig(
        data=data, methods=parse_list("--methods", methods), shots=parse_list("--shots", shots, parse_shots),
        seeds=parse_list("--seeds", seeds, int), backbone=backbone, arch=arch, pretrained=pretrained,
        symptoms=tuple(symptoms or ()), schedule=schedule, epochs=epochs, batch_size=batch_size, lr=lr, views=views,
        split_seed=split_seed, out=out, force=force, device=device, workers=workers,
    )
    with console.progress_bar() as progress:
        result = run_benchmark(config, progress)
    print_benchmark(result, as_json)


def _cell(entry: dict | None, metric: str) -> str:
    if entry is None or entry[f"{metric}_mean"] is None:
        return "-"
    return f"{entry[f'{metric}_mean']:.2f}±{entry[f'{metric}_std']:.2f}"


def benchmark_tables(result) -> list:
    """Two rich tables (test accuracy, test macro-F1): rows = methods, columns = shots."""
    from rich import box
    from rich.table import Table

    from vipcli.methods import get_method

    columns = list(dict.fromkeys(str(r["shots"]) for r in result.rows if str(r["shots"]) != "0"))
    methods = list(dict.fromkeys(r["method"] for r in result.rows))
    by_key = {(s["method"], str(s["shots"])): s for s in result.summary}
    seeds = ", ".join(map(str, sorted({int(r["seed"]) for r in result.rows})))
    tables = []
    for metric, title in (("accuracy", "test accuracy %"), ("macro_f1", "test macro-F1 %")):
        table = Table(title=f"{title}, mean±std over seeds {seeds}", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("method", no_wrap=True)
        for c in columns or ["0"]:
            table.add_column(f"{c}-shot", justify="right", no_wrap=True)
        for method in methods:
            learns = get_method(method).trainable
            cells = [_cell(by_key.get((method, c if learns else "0")), metric) for c in columns or ["0"]]
            table.add_row(method if learns else f"{method}*", *cells)
        tables.append(table)
    return tables


def print_benchmark(result, as_json: bool) -> None:
    """The tables and where the files are, or one JSON document with rows and summary."""
    if as_json:
        document = {"out": str(result.out), "class_names": result.class_names, "skipped": result.skipped,
                    "trained": result.trained, "encoded_views": result.encoded_views, "warnings": result.warnings,
                    "unreadable": result.failures, "config": result.config, "summary": result.summary,
                    "rows": result.rows}
        print(json.dumps(document, indent=2))
        return
    from rich.measure import Measurement

    out = console.stdout()
    for table in benchmark_tables(result):  # never truncate a figure: wider than the terminal, lines wrap
        natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
        out.width = max(out.width, natural)
        out.print(table, crop=False)
    if any(not r["shots"] for r in result.rows):
        out.print("* learns nothing (zero-shot): evaluated once per seed, the same figure shown in every column")
    out.print(f"{result.trained} rows run, {result.skipped} resumed from earlier; {result.encoded_views} image "
              f"views encoded; results in {result.out}/results.csv, results.json, shots.png, split.json")


def print_speed(report: dict, as_json: bool) -> None:
    """The speed figures as a table (or the speed.json document)."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.table import Table

    machine, data = report["machine"], report["data"]
    cached, warm, reference = report["train_cached"], report["train_cached_warm"], report["train_reference"]
    epochs = cached["epochs"]
    table = Table("measure", "value", title=f"speed of {report['backbone']['describe'].get('arch', '')} on "
                  f"{machine['accelerator']} ({machine['cpu']}, {machine['usable_cores']} cores, "
                  f"{machine['torch_threads']} torch threads)")
    table.add_row("data (train / val / test images)", f"{data['train']} / {data['val']} / {data['test']}")
    table.add_row("feature extraction, cold cache", f"{report['feature_extraction']['images_per_s']:.1f} images/s")
    table.add_row(f"ViP train, {epochs} epochs, cached features",
                  f"{cached['seconds']:.1f} s (encode {cached['timings']['encode_s']:.1f} s, fit "
                  f"{cached['timings']['fit_s']:.1f} s), test acc {cached['test_accuracy']:.2f}%")
    table.add_row("  same, warm cache (each further run)", f"{warm['seconds']:.1f} s, test acc {warm['test_accuracy']:.2f}%")
    table.add_row(f"ViP train, {epochs} epochs, reference (re-encode)",
                  f"{reference['seconds']:.1f} s, test acc {reference['test_accuracy']:.2f}%")
    table.add_row("speed-up cached vs reference", f"{report['speedup']:.2f}x (warm cache {report['speedup_warm']:.2f}x)")
    if epochs != report["schedule_paper_epochs"]:
        table.add_row(f"  projected to {report['schedule_paper_epochs']} epochs (linear in epochs)",
                      f"{cached['projected_paper_s']:.0f} s vs {reference['projected_paper_s']:.0f} s: "
                      f"{report['speedup_projected_paper']:.2f}x")
    table.add_row("vip predict on the test images",
                  f"{report['predict']['images_per_s']:.1f} images/s (+ {report['predict']['load_s']:.1f} s model load)")
    memory = report["memory"]
    peak = f"{memory['peak_rss_mib']:.0f} MiB RSS"
    if memory.get("cuda_peak_allocated_mib") is not None:
        peak += f", {memory['cuda_peak_allocated_mib']:.0f} MiB CUDA"
    table.add_row("peak memory", peak)
    from rich.measure import Measurement

    out = console.stdout()
    out.width = max(out.width, Measurement.get(out, out.options.update_width(10_000), table).maximum)
    out.print(table, crop=False)
    out.print(f"written to {report['path']}")
