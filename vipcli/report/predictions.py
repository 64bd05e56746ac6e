"""`vip predict --report FILE`: the gallery of the images just predicted, as one HTML file."""

from __future__ import annotations

from pathlib import Path

from vipcli.console import counted
from vipcli.plots import backbone_label
from vipcli.report import html
from vipcli.report.gallery import OUT_OF_KIND, gallery_html, gallery_items, sets_explained, truth_from_folder
from vipcli.report.notices import random_weights_banner
from vipcli.report.swatches import method_swatch
from vipcli.report.units import coverage_percent, percent_text
from vipcli.report.run import uses_symptoms

MAX_IMAGES = 1000  # cards in one page; more would make a file too large to open comfortably


def prediction_report(predictor, predictions, coverage: float | None) -> str:
    """The HTML page of `predictions` made with `predictor` (a loaded run).

    True classes are taken from the images' folder names where those equal a class name.
    """
    meta, names = predictor.metadata, predictor.class_names
    truths = {p.path: truth_from_folder(p.path, names) for p in predictions}
    items = gallery_items(predictions, truths, uses_symptoms(meta))
    method = meta.get("method", "")
    backbone = backbone_label(meta.get("backbone"), meta.get("arch"))
    if predictor.calibration is None:
        status = html.note("<b>Uncalibrated.</b> This run was written by an earlier vip and stores no temperature: "
                           "the probabilities are the raw softmax, and no prediction sets can be given.")
    else:
        sets = (f" Prediction sets at coverage {coverage_percent(coverage)} (--coverage {coverage:g}; LAC score, "
                f"{len(predictor.calibration.scores)} validation images)." if coverage is not None
                else " No prediction sets (pass --coverage).")
        broken = broken_on_test(predictor, coverage)  # the run's own test images: calibration or sets fell short
        status = html.note(f"Probabilities calibrated with temperature T = {predictor.calibration.temperature:.4g}."
                           + html.text(sets), "note" if broken else "ok")
        status += (sets_explained(coverage) if coverage is not None else "") + broken
    root = _common_folder(items)
    facts = html.table("The model and the images", ["", ""], [["model", html.path(predictor.run_dir)], ["images under", html.path(root)],
                                  ["method", method_swatch(method)],
                                  ["backbone", html.text(backbone)], ["classes", html.text(", ".join(names))],
                                  ["measured when trained", html.text(measured_when_trained(predictor.run_dir))]],
                       raw=True)
    known = sum(t is not None for t in truths.values())
    truth_note = f"<p>{_in_class_folders(known, len(predictions))} {html.text(agreement(items))}</p>" if known else ""
    limit_note = (html.note(html.text(f"Showing the first {MAX_IMAGES} of {len(items)} images."))
                  if len(items) > MAX_IMAGES else "")
    sections = [random_weights_banner(meta, "these predictions"), trained_at_chance_note(predictor),
                html.section("Model", facts + status + html.note(html.text(OUT_OF_KIND))),
                html.section("Images", truth_note + limit_note + gallery_html(items, MAX_IMAGES, root))]
    return html.page(f"vip predictions: {counted(len(predictions), 'image')}", html.text(f"{method} · {backbone}"), sections,
                     html.written_by())


def trained_at_chance_note(predictor) -> str:
    """A note for the top of the page when the run's own test images did not show that its model beats chance
    (`vipcli.predict.trained_at_chance`), as its `vip report` says: these predictions are then no evidence of a
    class. "" otherwise, for random weights (the banner says more) and for a run whose metrics.json cannot be read."""
    from vipcli.predict import trained_at_chance

    sentence = trained_at_chance(predictor)
    if not sentence:
        return ""
    return html.note(html.with_commands(f"Measured when this run was trained: {sentence}. Read its predictions "
                                        "below as no evidence of a class: `vip report` of the run has its figures."))


def broken_on_test(predictor, coverage: float | None) -> str:
    """A note when the run's own test images showed that its calibration does not hold for them (metrics.json, as
    `vip train` warned): temperature scaling made their NLL worse, or the prediction sets at `coverage` (when it is
    one the run measured; else the first that fell short, 90% first) held the true class far less often than
    promised. "" when neither, and for a run whose metrics.json has no such record.

    e.g. 'Measured when this run was trained, on its 624 test images: temperature scaling made the NLL worse
    (0.6752 to 0.6967), and the prediction sets at coverage 80% held the true class for 70.35% of them, far below
    the 80.11% expected. ...'"""
    from vipcli.predict import run_metrics
    from vipcli.trust import scaling_hurt_nll

    try:
        metrics = run_metrics(predictor.run_dir)
        n_test, test = metrics["test"]["n"], metrics["calibration"]["test"]
        rows = metrics["conformal"]["test"]
        found = []
        if scaling_hurt_nll(test):
            found.append(f"temperature scaling made the NLL worse ({test['before']['nll']:.4f} to "
                         f"{test['after']['nll']:.4f})")
        short = _short_row(rows, coverage, n_test) if coverage is not None else None
        if short is not None:
            found.append(f"the prediction sets at coverage {coverage_percent(short['coverage'])} held the true class "
                         f"for {percent_text(short['empirical_coverage'])} of them, far below the "
                         f"{percent_text(short['expected_coverage'])} expected")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    if not found:
        return ""
    return html.note(html.with_commands(
        f"Measured when this run was trained, on its {n_test} test images: {' and '.join(found)}. Those test images "
        "were not drawn like the validation images the calibration was fitted on, so the probabilities and sets "
        "below cannot be taken at their word for images like them: `vip report` of the run has the figures."))


def _short_row(rows: list[dict], coverage: float, n_test: int) -> dict | None:
    """The stored test row of the prediction sets at `coverage` when it fell far short of its promise
    (`coverage_shortfall`); for a coverage the run did not measure, the first stored row that did (90% first)."""
    from vipcli.conformal import coverage_shortfall

    asked = [row for row in rows if abs(row.get("coverage", -1) - coverage) < 1e-9]
    candidates = asked or sorted(rows, key=lambda row: row.get("coverage") != 0.9)
    return next((row for row in candidates if coverage_shortfall(row, n_test)), None)


def measured_when_trained(run_dir) -> str:
    """What the run measured on its own test split, from its metrics.json: 'accuracy 79.33%, balanced accuracy
    78.90%, macro-F1 79.03% on 300 test images (vip train, 2026-11-29 20:11 UTC)' (balanced accuracy computed from
    the confusion matrix for a run of an earlier vip); '-' when the run has none to show."""
    from vipcli.metrics import split_figure
    from vipcli.predict import run_metrics

    try:
        metrics = run_metrics(run_dir)
        test = metrics["test"]
        balanced = split_figure(test, "balanced_accuracy")
        said = (f"accuracy {test['accuracy']:.2f}%, "
                + (f"balanced accuracy {balanced:.2f}%, " if balanced is not None else "")
                + f"macro-F1 {test['macro_f1']:.2f}% on {test['n']} test images")
    except (OSError, ValueError, KeyError, TypeError):
        return "-"
    when = html.utc_time(metrics.get("finished_at"))
    return f"{said} (vip train, {html.utc_minute(when)})" if when else said


def agreement(items) -> str:
    """How often the predictions (and their sets, when given) agree with the known true classes, e.g.
    'Of these 300, 238 are predicted right (79.33%); the prediction set holds the true class for 282 (94.00%).'"""
    known = [i for i in items if i.truth is not None]
    if not known:
        return ""
    right = sum(not i.wrong for i in known)
    with_sets = [i for i in known if i.prediction_set is not None]
    if len(known) == 1:  # "Of these 1, 1 is predicted right (100.00%)" said less than this
        said = f"It is predicted {'right' if right else 'wrongly'}"
        if with_sets:
            said += f", and its prediction set {'holds' if known[0].truth in known[0].prediction_set else 'misses'} the true class"
        return said + "."
    said = f"Of these {len(known)}, {right} {'is' if right == 1 else 'are'} predicted right ({_percent(right, len(known))})"
    if with_sets:
        held = sum(i.truth in i.prediction_set for i in with_sets)
        said += f"; the prediction set holds the true class for {held} ({_percent(held, len(with_sets))})"
    return said + "."


def _in_class_folders(known: int, total: int) -> str:
    """What the page reads of the true classes: "12 of 300 images sit in a folder named after a class; ...", in the
    singular where one image does."""
    if known == total == 1:
        return "The image sits in a folder named after a class; that name is shown as its true class."
    if known == 1:
        return f"1 of the {total} images sits in a folder named after a class; that name is shown as its true class."
    return f"{known} of {total} images sit in a folder named after a class; that name is shown as their true class."


def _percent(part: int, whole: int) -> str:
    return percent_text(part / whole)


def _common_folder(items) -> Path | None:
    """The deepest folder holding every image as the images were given (card names are shown relative to it): the
    folders named after classes of a subset of symbolic links stay in the names, as their true classes come from
    them."""
    import os

    if not items:
        return None
    folders = [os.path.dirname(os.path.abspath(i.path)) for i in items]
    return Path(os.path.commonpath(folders))


def write_prediction_report(path: Path, predictor, predictions, coverage: float | None) -> Path:
    """Write `prediction_report` to `path` atomically."""
    from vipcli.report.html import write_html

    return write_html(Path(path), prediction_report(predictor, predictions, coverage), option="--report")
