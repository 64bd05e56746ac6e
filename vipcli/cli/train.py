"""`vip train`: parse options, build a TrainConfig, call vipcli.train.train, print the result."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.errors import UsageError


def parse_shots(value: str) -> int | None:
    """'all' -> None (use every image); a positive integer -> that many per class."""
    if value.strip().lower() == "all":
        return None
    try:
        shots = int(value)
    except ValueError:
        raise UsageError(f"--shots {value}: expected a positive number or 'all'") from None
    if shots < 1:
        raise UsageError(f"--shots {value}: expected a positive number or 'all'")
    return shots


def train_command(
    data: Path = typer.Option(..., "--data", help="Folder of class subfolders (optionally under train/ val/ test/)."),
    shots: str = typer.Option("16", "--shots", help="Labelled images per class, or 'all'."),
    method: str = typer.Option("vip", "--method", help="vip, vip-cop-only, vip-mep-only, coop, zeroshot, "
                               "symptom-zeroshot or linear-probe."),
    backbone: str = typer.Option("clip", "--backbone", help="Backbone plugin id (see `vip backbones list`)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture: open_clip name, model-config JSON, hf-hub: id."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Weights: tag, local file, hf-hub: id, or none."),
    symptoms: Optional[List[str]] = typer.Option(None, "--symptoms", help="Pack file, class-to-symptoms YAML file, "
                                                 "folder of packs, or shipped pack name. Repeatable."),
    schedule: str = typer.Option("auto", "--schedule", help="auto, fewshot (batch 4, 100 epochs) or paper "
                                 "(batch 32, 50 epochs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the schedule's epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the schedule's batch size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the schedule's learning rate."),
    n_ctx: int = typer.Option(4, "--n-ctx", help="Learned context vectors M."),
    class_specific_context: bool = typer.Option(False, "--class-specific-context", help="One context per class."),
    views: int = typer.Option(8, "--views", help="Augmented views encoded and cached per training image."),
    seed: int = typer.Option(1, "--seed", help="Seed of the split, the few-shot subset and training."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<data>-<method>-...)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    reference: bool = typer.Option(False, "--reference", help="Re-encode every image every epoch (the authors' "
                                   "way; for speed comparisons)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the on-disk feature cache."),
    workers: int = typer.Option(2, "--workers", help="Image-decoding worker processes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Train ViP prompts (or a baseline) on a folder of images sorted by class."""
    from vipcli.train import TrainConfig, train

    config = TrainConfig(
        data=data, shots=parse_shots(shots), method=method, backbone=backbone, arch=arch, pretrained=pretrained,
        symptoms=tuple(symptoms or ()), schedule=schedule, epochs=epochs, batch_size=batch_size, lr=lr,
        n_ctx=n_ctx, class_specific_context=class_specific_context, views=views, seed=seed, out=out, force=force,
        device=device, reference=reference, use_cache=not no_cache, workers=workers,
    )
    with console.progress_bar() as progress:
        result = train(config, progress)
    print_train_result(result, as_json)


def print_train_result(result, as_json: bool) -> None:
    """Unreadable files and metrics: a table for people, one JSON document for tools."""
    import json

    console.warn_skipped(result.failures)
    for name, count in result.metrics.get("shortfalls", {}).items():
        console.warn(f"class '{name}' has only {count} readable training images; used {count} shots")
    if as_json:
        print(json.dumps({"run_dir": str(result.run_dir), "class_names": result.class_names,
                          "skipped": result.failures, **result.metrics}, indent=2))
        return
    from rich.table import Table

    from rich.markup import escape

    title = f"run saved to {escape(console.printable(result.run_dir))}"
    table = Table("split", "images", "accuracy %", "macro-F1 %", "AUROC %", title=title)
    for split in ("val", "test"):
        m = result.metrics[split]
        table.add_row(split, str(m["n"]), *(("-" if m[k] is None else f"{m[k]:.2f}") for k in ("accuracy", "macro_f1", "auroc")))
    out = console.stdout()
    out.print(table)
    timings = result.metrics["timings"]
    best = result.metrics.get("best_epoch")
    note = f"best validation epoch {best + 1}; " if best is not None else ""
    out.print(f"{note}encoded {timings['encoded_views']} views in {timings['encode_s']:.1f}s, "
              f"trained in {timings['fit_s']:.1f}s, total {timings['total_s']:.1f}s on {result.metrics['device']}")
