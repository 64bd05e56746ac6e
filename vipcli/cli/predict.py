"""`vip predict`: classify images with a trained run, optionally explaining by symptom."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.errors import VipError


def predict_command(
    paths: List[Path] = typer.Argument(..., help="Image files or folders of images."),
    model: Path = typer.Option(..., "--model", help="Run directory written by `vip train`."),
    explain: bool = typer.Option(False, "--explain", help="Show each symptom's similarity and merge weight."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Refuse runs trained with another backbone."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the on-disk feature cache."),
    workers: int = typer.Option(2, "--workers", help="Image-decoding worker processes."),
) -> None:
    """Predict the class of each image, with its probability (and symptoms with --explain)."""
    from vipcli.devices import resolve_device
    from vipcli.features import FeatureCache, default_cache_dir
    from vipcli.predict import collect_images, load_predictor, predict

    files = collect_images(paths)
    predictor = load_predictor(model, resolve_device(device), backbone)
    cache = FeatureCache(None if no_cache else default_cache_dir(), predictor.backbone)
    with console.progress_bar() as progress:
        predictions, failures = predict(predictor, files, explain, cache, workers, progress=progress)
    if as_json:
        document = {"model": str(model), "method": predictor.metadata["method"], "classes": predictor.class_names,
                    "predictions": [asdict(p) for p in predictions], "errors": failures}
        print(json.dumps(document, indent=2))
    else:
        print_predictions(predictions, explain)
    for path, reason in failures.items():
        console.stderr().print(f"error: {console.printable(path)}: {reason}", markup=False)
    if failures:
        raise VipError(f"{len(failures)} of {len(files)} images could not be read (listed above)",
                       "fix or remove those files")


def print_predictions(predictions, explain: bool) -> None:
    """One line per image; with `explain`, a table of symptoms per class below it."""
    from rich.markup import escape
    from rich.table import Table

    out = console.stdout()
    for p in predictions:
        others = "  ".join(f"{name} {prob:.3f}" for name, prob in p.probabilities.items())
        out.print(f"{escape(console.printable(p.path))}  [bold]{escape(p.label)}[/bold]  {p.probability:.3f}   "
                  f"({escape(others)})")
        if explain and p.explanation:
            table = Table("class", "symptom", "similarity", "merge weight", show_edge=False)
            for group in p.explanation:
                for entry in group["symptoms"]:
                    table.add_row(group["class"], entry["symptom"], f"{entry['similarity']:+.3f}", f"{entry['weight']:.3f}")
            out.print(table)
