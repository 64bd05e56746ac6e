"""`vip train`: parse options, build a TrainConfig, call vipcli.train.train, print the result."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.cli import completion, options as opt

parse_shots = opt.parse_shots  # vip 0.1.0 defined it here: `from vipcli.cli.train import parse_shots` still works


def train_command(
    data: Path = opt.DATA,
    shots: str = typer.Option("16", "--shots", help="Labelled images per class, or 'all'."),
    method: str = typer.Option("vip", "--method", help="Method id (see `vip methods list`).",
                                autocompletion=completion.methods),
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
    image_fit: str = opt.IMAGE_FIT,
    seed: int = opt.seed(1, "Seed of the split, the few-shot subset and training."),
    split_seed: Optional[int] = opt.seed(None, "Seed of a split vip makes, if not --seed (a `vip benchmark` "
                                         "row's: its sweep's --split-seed, by default its first seed).",
                                         "--split-seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: a new folder in runs/, named "
                                       "after the data, method, backbone, shots and seed)."),
    force: bool = opt.FORCE,
    device: str = opt.DEVICE,
    reference: bool = typer.Option(False, "--reference", help="Train the authors' way, for speed comparisons: "
                                   "every image re-encoded every epoch, the whole text tower every step."),
    no_cache: bool = opt.NO_CACHE,
    workers: Optional[int] = opt.WORKERS,
    encode_batch: int = opt.ENCODE_BATCH,
    as_json: bool = opt.JSON,
) -> None:
    """Train a method (ViP by default) on a folder of images sorted by class."""
    from vipcli.train import TrainConfig, train

    config = TrainConfig(
        data=data, shots=opt.parse_shots(shots), method=method,
        method_options=opt.method_options(method_option, n_ctx, class_specific_context),
        backbone=opt.backbone_settings(backbone, arch, pretrained, device),
        encoding=opt.encoding_settings(views, workers, no_cache, encode_batch, image_fit),
        schedule=opt.schedule_settings(schedule, epochs, batch_size, lr),
        symptoms=opt.symptom_sources(symptoms), seed=seed, split_seed=split_seed, out=out, force=force,
        reference=reference,
    )
    with _rank_progress() as progress:
        result = train(config, progress)
    if result is not None:  # None: a torchrun rank other than 0, done after encoding its share
        print_train_result(result, as_json)


def _rank_progress():
    """A progress bar on rank 0 only: under torchrun the other ranks would draw over it."""
    import contextlib

    from vipcli.distributed import world_from_env

    return console.progress_bar() if world_from_env().main else contextlib.nullcontext()


def print_train_result(result, as_json: bool) -> None:
    """The run's metrics: a table for people, one JSON document for tools (`train` has warned of the
    unreadable files, as of short classes, where `result.warnings` keeps them)."""
    import json

    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out = console.stdout()
    out.print(scores_table(result.metrics, console.printable(result.run_dir)))
    timings = result.metrics["timings"]
    note = best_epoch_note(result.metrics.get("best_epoch"), len(result.metrics.get("history") or []))
    out.print(f"{note}encoded {timings['encoded_views']} views in {timings['encode_s']:.1f}s, "
              f"fitted in {timings['fit_s']:.1f}s, total {timings['total_s']:.1f}s on {result.metrics['device']}")


def scores_table(metrics: dict, run_dir: str):
    """The closing table of `vip train`: per split its images, accuracy, balanced accuracy, macro-F1 and AUROC
    (76 columns wide: it fits an 80-column terminal). A metrics dict without balanced accuracy (a run of an
    earlier vip) gets it from its confusion matrix, as `vip report` does (`split_figure`); '-' where a figure
    cannot be had (no images, AUROC with a class absent)."""
    from rich.markup import escape
    from rich.table import Table

    from vipcli.metrics import SCORE_TITLES, split_figure

    table = Table("split", "images", *(title for _, title in SCORE_TITLES), title=f"run saved to {escape(run_dir)}")
    for split in ("val", "test"):
        block = metrics[split]
        figures = (split_figure(block, key) for key, _ in SCORE_TITLES)
        table.add_row(split, str(block["n"]), *("-" if value is None else f"{value:.2f}" for value in figures))
    return table


def best_epoch_note(best: int | None, epochs: int) -> str:
    """"best validation epoch 6 of 100 (best_epoch 5 in metrics.json, counted from 0); ", or "" without one.

    People count epochs from 1, metrics.json (`best_epoch`, `history[].epoch`) from 0: the line says both.
    """
    if best is None:
        return ""
    of = f" of {epochs}" if epochs > best else ""
    return f"best validation epoch {best + 1}{of} (best_epoch {best} in metrics.json, counted from 0); "
