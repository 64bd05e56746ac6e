"""`vip predict`: classify images with a trained run, optionally explaining by symptom."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.cli import options as opt
from vipcli.errors import VipError


def predict_command(
    paths: List[Path] = typer.Argument(..., help="Image files or folders of images."),
    model: Path = typer.Option(..., "--model", help="Run directory written by `vip train`."),
    explain: bool = typer.Option(False, "--explain", help="Show each symptom's similarity and merge weight."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Refuse runs trained with another backbone."),
    device: str = opt.DEVICE,
    no_cache: bool = opt.NO_CACHE,
    workers: Optional[int] = opt.WORKERS,
    coverage: Optional[float] = typer.Option(None, "--coverage", help="Add the set of classes that holds the true "
                                             "class with this probability (e.g. 0.9; split conformal)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML gallery of these images."),
) -> None:
    """Predict the class of each image, with its probability (and symptoms with --explain)."""
    from vipcli.devices import resolve_device
    from vipcli.features import FeatureCache, default_cache_dir
    from vipcli.predict import collect_images, load_predictor, predict

    from vipcli.settings import default_workers

    _check_trust_options(coverage, report)  # usage errors before any work
    workers = default_workers() if workers is None else workers
    files = collect_images(paths)
    predictor = load_predictor(model, resolve_device(device), backbone)
    cache = FeatureCache(None if no_cache else default_cache_dir(), predictor.backbone)
    with console.progress_bar() as progress:
        predictions, failures = predict(predictor, files, explain or report is not None, cache, workers,
                                        progress=progress, coverage=coverage)  # coverage; a report needs the symptoms
    if predictor.calibration is None:  # say so for runs of an earlier vip
        console.warn(f"{model} stores no calibration (trained by an earlier vip): probabilities are uncalibrated")
    if report is not None:  # the gallery of these images
        from vipcli.report.predictions import write_prediction_report

        write_prediction_report(report, predictor, predictions, coverage)
        console.info(f"report written to {report}")
    if as_json:
        document = {"model": str(model), "method": predictor.metadata["method"], "classes": predictor.class_names,
                    **_trust_fields(predictor, coverage),
                    "predictions": [_prediction_json(p, explain) for p in predictions], "errors": failures}
        print(json.dumps(document, indent=2))
    else:
        print_predictions(predictions, explain)
    for path, reason in failures.items():
        console.stderr().print(f"error: {console.printable(path)}: {reason}", markup=False)
    if failures:
        raise VipError(f"{len(failures)} of {len(files)} images could not be read (listed above)",
                       "fix or remove those files")


# --- calibration and prediction sets --- ---------------------------------------------------------


def _check_trust_options(coverage: float | None, report: Path | None) -> None:
    """--coverage strictly inside (0, 1); --report a file whose folder exists."""
    from vipcli.conformal import check_coverage
    from vipcli.report.html import check_writable

    if coverage is not None:
        check_coverage(coverage)
    if report is not None:
        check_writable(report, "--report")


def _trust_fields(predictor, coverage: float | None) -> dict:
    """Document-level JSON fields: calibrated or not, the temperature, the asked coverage."""
    calibration = predictor.calibration
    return {"calibrated": calibration is not None,
            "temperature": calibration.temperature if calibration is not None else None, "coverage": coverage}


def _prediction_json(prediction, explain: bool) -> dict:
    """One prediction as JSON (the explanation only when asked for, even if a report computed it)."""
    document = asdict(prediction)
    if not explain:
        document["explanation"] = None
    return document


def print_predictions(predictions, explain: bool) -> None:
    """One line per image (with its prediction set when there is one); with `explain`, symptoms below it."""
    from rich.markup import escape
    from rich.table import Table

    out = console.stdout()
    for p in predictions:
        others = "  ".join(f"{name} {prob:.3f}" for name, prob in p.probabilities.items())
        members = "" if p.prediction_set is None else f"   set {{{', '.join(p.prediction_set)}}}"
        out.print(escape(console.printable(p.path)) + f"  [bold]{escape(p.label)}[/bold]  {p.probability:.3f}   " + escape(f"({others}){members}"))
        if explain and p.explanation:
            table = Table("class", "symptom", "similarity", "merge weight", show_edge=False)
            for group in p.explanation:
                for entry in group["symptoms"]:
                    table.add_row(group["class"], entry["symptom"], f"{entry['similarity']:+.3f}", f"{entry['weight']:.3f}")
            out.print(table)
