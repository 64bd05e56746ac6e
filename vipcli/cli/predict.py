"""`vip predict`: classify images with a trained run, optionally explaining by symptom."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from vipcli import console
from vipcli.cli import completion, options as opt
from vipcli.errors import UsageError, VipError


def predict_command(
    paths: List[Path] = typer.Argument(..., metavar="PATHS", help="Image files or folders of images."),
    model: Path = typer.Option(..., "--model", help="Run directory written by `vip train`."),
    explain: bool = typer.Option(False, "--explain", help="Show, per class, each symptom's similarity to the image, "
                                 "its merge weight and its contribution to the class's logit."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Refuse runs trained with another backbone.",
                                             autocompletion=completion.backbones),
    image_fit: Optional[str] = typer.Option(None, "--image-fit", help="Not needed: the run's own fit (crop, pad or "
                                            "squash, as trained) is used; another one is refused.",
                                            autocompletion=completion.image_fits),
    device: str = opt.DEVICE,
    no_cache: bool = opt.NO_CACHE,
    workers: Optional[int] = opt.WORKERS,
    coverage: Optional[float] = typer.Option(None, "--coverage", help="Add each image's prediction set: the classes "
                                             "that hold the true one with at least this probability, on average over "
                                             "images (e.g. 0.9; split conformal on the run's validation images)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML gallery of these images to "
                                          "this .html file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Stream one record per image to this .jsonl or .csv "
                                       "file; rerun with the same --out to resume. Required under torchrun."),
    force: bool = typer.Option(False, "--force", help="Start --out afresh instead of resuming it."),
) -> None:
    """Predict the class of each image, with its calibrated probability (and symptoms with --explain).

    Folders are searched with their subfolders. Every image gets one of the run's classes: vip does not check
    that an image is of the kind the run was trained on (another modality or body site).

    Under torchrun (`-m vipcli predict ... --out FILE`) the processes share the images; FILE keeps input order.
    """
    workers = opt.worker_count(workers)
    if force and out is None:  # --force would otherwise do nothing, silently
        raise UsageError("--force starts an --out file afresh, and no --out was given",
                         "add --out FILE, or leave out --force")
    _check_trust_options(coverage, report)  # usage errors before any work (and before torch is imported)
    if image_fit is not None:
        from vipcli.image_fit import checked_fit

        image_fit = checked_fit(image_fit)
    from vipcli import distributed

    world = distributed.world_from_env()
    if out is not None or world.distributed:
        _check_file_options(out, as_json, report, explain, world)
    from vipcli.cache_use import using_cache

    # a second vip writing the same --out refuses at its lock, before any work; --no-cache: nothing remembered
    with _holding(out, world), using_cache(not no_cache):
        _predict(paths, model, explain, as_json, backbone, image_fit, device, no_cache, workers, coverage, report,
                 out, force)


def _holding(out: Path | None, world):
    """The lock of --out, held by the process that writes it (rank 0 under torchrun); else nothing."""
    if out is None or not world.main:
        return contextlib.nullcontext()
    from vipcli.locks import output_lock

    return output_lock(out)


def _predict(paths, model, explain, as_json, backbone, image_fit, device, no_cache, workers, coverage, report, out,
             force) -> None:
    """Load the run and predict `paths`: printed, as JSON, into a gallery, or streamed to --out; a --backbone or
    --image-fit given that is not the run's is refused."""
    from vipcli import distributed
    from vipcli.checkpoint import checkpoint_file
    from vipcli.features import default_cache_dir
    from vipcli.images import left_out_warning
    from vipcli.predict import collect_images, load_predictor, predict

    _refuse_model_and_images_swapped(paths, model)
    checkpoint_file(model)  # a --model that is no run: said before anything about the images
    left_out: list[Path] = []
    files = collect_images(paths, left_out)
    ours = _own_outputs(out, report)
    left_out = [path for path in left_out if os.path.abspath(path) not in ours]
    world = distributed.world_from_env()  # joined below, after the checks every process shares (one line each)
    if world.main and left_out:
        from rich.markup import escape

        console.warn(escape(left_out_warning(left_out)))
    if out is not None and not force:
        from vipcli.predict import check_resumable

        check_resumable(model, files, out, coverage, explain)  # an --out of another model: before it loads
    root = None if no_cache else default_cache_dir()  # a cache folder every user can write: refused before loading
    predictor = load_predictor(model, distributed.rank_device(device, world), backbone, image_fit)
    if world.main:
        _warn_if_trained_at_chance(predictor)
        _warn_if_folders_name_other_classes(files, predictor.class_names, model)
    if explain and world.main:
        _note_if_nothing_to_explain(predictor.method)
    cache = predictor.feature_cache(root)
    if out is not None:
        distributed.join()
        _predict_to_file(predictor, files, out, world, force, explain, cache, workers, coverage, model)
        return
    with console.progress_bar() as progress:
        predictions, failures = predict(predictor, files, explain or report is not None, cache, workers,
                                        progress=progress, coverage=coverage)  # coverage; a report needs the symptoms
    if predictor.calibration is None:  # say so for runs of an earlier vip
        console.warn(f"{model} stores no calibration (trained by an earlier vip): probabilities are uncalibrated")
    if report is not None:  # the gallery of these images
        from vipcli.report.predictions import write_prediction_report

        write_prediction_report(report, predictor, predictions, coverage)
        console.info(f"report written to {report}; open it in a browser ({report.resolve().as_uri()})")  # as `vip report`
    if as_json:
        document = {"model": str(model), "method": predictor.metadata["method"], "classes": predictor.class_names,
                    "image_fit": predictor.image_fit,
                    **_trust_fields(predictor, coverage),
                    "predictions": [p.record(explain) for p in predictions], "errors": failures}
        print(json.dumps(document, indent=2))
    else:
        print_predictions(predictions, explain)
    for path, reason in failures.items():
        console.stderr().print(f"error: {console.printable(path)}: {reason}", markup=False)
    if failures:
        failed = sum(str(path) in failures for path in files)  # a file given twice is two of len(files)
        raise VipError(f"{failed} of {console.counted(len(files), 'image')} could not be read",
                       "fix or remove the files listed above")


def _refuse_model_and_images_swapped(paths, model) -> None:
    """`vip predict RUN --model IMAGES`: a --model folder that is no run, given with a run among the images, is
    refused as the two swapped, with the command that has them the right way round. A --model that is another
    thing vip wrote (a benchmark folder) or a folder of runs is no folder of images: `checkpoint_file` says what
    it is."""
    from vipcli import shell
    from vipcli.checkpoint import runs_inside
    from vipcli.data import written_by_vip

    model = Path(model)
    runs = [Path(path) for path in paths if (Path(path) / "model.safetensors").is_file()]
    if len(runs) != 1 or not model.is_dir() or written_by_vip(model) is not None or runs_inside(model):
        return
    images = [shell.quote(path) for path in paths if Path(path) != runs[0]] + [shell.quote(model)]
    raise VipError(f"--model {model} is not a run directory, and {runs[0]}, given as images, is one: the two are "
                   "swapped", f"run `vip predict {' '.join(images)} --model {shell.quote(runs[0])}`")


def _own_outputs(out: Path | None, report: Path | None) -> set[str]:
    """The files (absolute paths) this command writes, which are not images left out where they lie among
    the images it reads (--out inside a folder it predicts): the --out file, its lock and its torchrun part
    files, and the --report page."""
    from vipcli.locks import lock_file
    from vipcli.prediction_files import part_files

    ours = [report] if report is not None else []
    if out is not None:
        ours += [out, lock_file(out), *part_files(out)]
    return {os.path.abspath(own) for own in ours}


# --- --out: streaming, resuming, torchrun ---------------------------------------------------------


def _warn_if_folders_name_other_classes(files, class_names: list[str], model) -> None:
    """One warning when the images sit in folders named after other classes than the run's (the one
    folder given, or at least two of several).

    A folder names another class when it is the name or alias of a shipped symptom pack that matches
    none of the run's classes (NORMAL/ and PNEUMONIA/ given to a melanoma/nevus run): most likely the
    wrong images or the wrong --model, and the run still answers melanoma or nevus for each. Folders
    named after no known class (patients, dates) say nothing either way.
    """
    from vipcli.packs import normalize_name, shipped_packs

    folders = sorted({Path(f).parent.name for f in files})
    ours = {normalize_name(name) for name in class_names}
    if not folders or any(normalize_name(folder) in ours for folder in folders):
        return
    packs = shipped_packs()
    other = [folder for folder in folders
             if any(p.matches(folder) and not any(p.matches(name) for name in class_names) for p in packs)]
    if len(other) >= min(2, len(folders)):  # one folder: it alone; several: at least two of them
        shown = ", ".join(other[:4]) + (", ..." if len(other) > 4 else "")
        console.warn(f"the images sit in folders named after other classes ({console.printable(shown)}) than those of "
                     f"{model} ({', '.join(class_names)}); each image still gets one of its classes "
                     f"(is it the right --model?)")


def _note_if_nothing_to_explain(method) -> None:
    """One stderr note when --explain was asked of a method that gives no explanation (the base `explain`)."""
    from vipcli.methods.base import gives_explanations

    if not gives_explanations(method):
        console.info(f"note: method '{method.id}' gives no per-symptom explanation; --explain shows nothing for it")


def _check_file_options(out: Path | None, as_json: bool, report: Path | None, explain: bool, world) -> None:
    """--out needs a .jsonl/.csv file in an existing folder; it excludes --json and --report."""
    from vipcli.errors import UsageError
    from vipcli.prediction_files import check_out_file, output_format

    if out is None:
        raise UsageError(f"vip predict under torchrun ({world.size} processes) needs --out",
                         "pass --out preds.jsonl (or .csv); the ranks' results are merged there")
    kind = output_format(out)
    if as_json:
        raise UsageError("--json prints one document with every prediction; --out streams them to a file",
                         "drop --json (the .jsonl file holds the same records)")
    if report is not None:
        raise UsageError("--report holds every image in memory; --out is for archives of any size",
                         "drop --report, or run --report without --out on a smaller set")
    if explain and kind == "csv":
        raise UsageError("--explain with a .csv --out: explanations do not fit in columns",
                         "write a .jsonl file instead")
    check_out_file(out)


def _warn_if_trained_at_chance(predictor) -> None:
    """One warning, before any image is read, when the run did not beat chance on its own test images (a toy run on
    real images): its predictions say nothing, as `vip train` warned when it was trained."""
    from rich.markup import escape

    from vipcli.predict import trained_at_chance_warning

    warning = trained_at_chance_warning(predictor)
    if warning:
        console.warn(escape(warning))  # class names and paths are the user's


def _predict_to_file(predictor, files, out, world, force, explain, cache, workers, coverage, model) -> None:
    """Stream to --out (this rank's share under torchrun); rank 0 reports the merged file."""
    from vipcli import distributed
    from vipcli.predict import predict_to_file

    progress = console.progress_bar() if world.main else contextlib.nullcontext()
    try:
        with progress as bar:
            run = predict_to_file(predictor, files, out, world, force, explain, cache, workers,
                                  progress=bar if world.main else None, coverage=coverage)
    finally:
        distributed.leave(world)
    if not world.main:
        return
    if predictor.calibration is None:
        console.warn(f"{model} stores no calibration (trained by an earlier vip): probabilities are uncalibrated")
    merged = run.merged
    console.info(file_run_line(out, run, world))
    if merged.dropped:
        console.warn(f"{merged.dropped} {console.plural(merged.dropped, 'record')} in {out} "
                     f"{console.plural(merged.dropped, 'was', 'were')} of {console.plural(merged.dropped, 'an image', 'images')} "
                     "not in this input; left out of it")
    if merged.repeated:
        console.warn(f"{merged.repeated} records in {out} repeated an image already recorded; each image keeps "
                     "its first record")
    if merged.missing:
        raise VipError(f"{merged.missing} of {run.images} images have no record in {out}", "rerun to resume",
                       whole_job=True)
    if merged.errors:  # whichever ranks' shares held them: said of the merged file, naming no rank
        raise VipError(f"{merged.errors} of {console.counted(run.images, 'image')} could not be read; {out} records "
                       "why",
                       "fix those files and rerun: unreadable images are tried again; or remove them from the input",
                       whole_job=True)


def file_run_line(out: Path, run, world) -> str:
    """What `vip predict --out` did, in counts that add up to the images given: "p.jsonl: 9 of 9 images, 2 already
    there, 4 predicted now, 3 unreadable" (the unreadable ones have a record saying why; a record of an image
    unreadable before is tried again, so none of them is among those already there)."""
    merged = run.merged
    unreadable = merged.errors
    predicted = merged.records - unreadable - run.already
    resumed = f", {run.already} already there" if run.already else ""
    processes = f" by {world.size} processes" if world.distributed else ""
    failed = f", {unreadable} unreadable" if unreadable else ""
    return f"{out}: {merged.records} of {run.images} images{resumed}, {predicted} predicted now{processes}{failed}"


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


def print_predictions(predictions, explain: bool) -> None:
    """One line per image (with its prediction set when there is one); with `explain`, symptoms below it."""
    from rich.markup import escape
    from rich.table import Table

    from vipcli.shares import rounded_share

    out = console.stdout()
    for p in predictions:
        others = "  ".join(f"{name} {rounded_share(prob, 3):.3f}" for name, prob in p.probabilities.items())
        members = "" if p.prediction_set is None else f"   set {{{', '.join(p.prediction_set)}}}"
        out.print(escape(console.printable(p.path)) + f"  [bold]{escape(p.label)}[/bold]  {rounded_share(p.probability, 3):.3f}   " + escape(f"({others}){members}"))
        if explain and p.explanation:
            table = Table("class", "symptom", "similarity", "merge\nweight", "contri-\nbution", show_edge=False)
            for group in p.explanation:
                for entry in group["symptoms"]:
                    contribution = entry.get("contribution")
                    table.add_row(group["class"], entry["symptom"], f"{entry['similarity']:+.3f}",
                                  f"{entry['weight']:.3f}", "-" if contribution is None else f"{contribution:+.3f}")
            out.print(table)
