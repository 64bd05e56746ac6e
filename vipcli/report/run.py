"""The report of one run directory: settings, data, metrics, calibration, sets, weights, test gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vipcli.console import plural
from vipcli.errors import VipError
from vipcli.image_fit import fit_words
from vipcli.plots import backbone_label, figure_title, method_color
from vipcli.report import html
from vipcli.report.data_notes import (copied_files, copies_note, images_per_split, left_out_files, skipped_files,
                                      test_copies)
from vipcli.report.figures import (SHARE_NOTE, confusion_matrix_alt, confusion_matrix_svg, merge_weights_alt,
                                   merge_weights_svg, reliability_alt, reliability_svg)
from vipcli.report.gallery import gallery_html, gallery_items, sets_explained
from vipcli.report.notices import random_weights_banner
from vipcli.report.swatches import method_swatch
from vipcli.report.units import coverage_percent, figures_meaning, percent, percent_text
from vipcli.shares import exact_percent

HELD_OUT_NOTE = (
    "Temperature and prediction sets are fitted on the validation split: images the prompts were not trained "
    "on. The same split also chose the best training epoch, so it is not perfectly untouched; with a few "
    "dozen epochs to choose from the effect is small, but the coverage promise is exact only where the "
    "validation and test images are exchangeable and the model was fixed before the validation split was seen "
    "(true for the zero-shot methods)."
)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VipError(f"{path} is missing or unreadable ({type(error).__name__})",
                       "pass a complete run directory written by `vip train`") from None


def _fmt(value, digits: int = 2) -> str:
    return html.number(value, digits)


def describe_run(run_dir: Path) -> dict:
    """Everything a report shows that does not need the model: metadata, split, metrics, titles."""
    from vipcli.checkpoint import read_checkpoint
    from vipcli.trust import read_calibration

    _, meta = read_checkpoint(run_dir)
    split, metrics = _read_json(run_dir / "split.json"), _read_json(run_dir / "metrics.json")
    data = Path(split.get("root", "data")).name
    backbone = backbone_label(meta.get("backbone"), meta.get("arch"))
    return {"meta": meta, "split": split, "metrics": metrics, "data": data, "backbone": backbone,
            "calibration": read_calibration(meta), "color": method_color(meta.get("method", "")),
            "class_names": meta["class_names"]}


def _settings(run: dict) -> str:
    meta, split = run["meta"], run["split"]
    config, schedule = meta.get("config") or {}, meta.get("schedule") or {}
    settings = meta.get("method_settings") or {}
    views = (config.get("encoding") or {}).get("views", config.get("views"))  # format 2, else 0.1.0
    shots = "all" if split.get("shots") is None else split.get("shots")
    rows = [
        ["method", method_swatch(meta.get("method"))],
        ["backbone", html.text(f"{meta.get('backbone')} (arch {meta.get('arch') or 'default'}, "
                               f"weights {meta.get('pretrained') or 'default'})")],
        ["classes", html.text(", ".join(run["class_names"]))],
        ["shots per class", html.text(shots)],
        ["seed", html.text(split.get("seed"))],
        ["schedule", html.text(run.get("fitting") or f"{schedule.get('name', '-')}: {schedule.get('epochs', '-')} "
                               f"{plural(schedule.get('epochs'), 'epoch')}, batch "
                               f"{schedule.get('batch_size', '-')}, lr {schedule.get('lr', '-')}")],
        ["method settings", html.text(", ".join(f"{k.replace('_', '-')} {v}" for k, v in settings.items()) or "none")],
        ["augmented views per image", html.text(views)],
        ["image fit", html.text(fit_words(meta.get("image_fit")))],
        ["data folder", f"<code>{html.path(split.get('root'))}</code>{html.text(_origin(split.get('origin')))}"],
        ["trained by", html.text(f"vip {meta.get('vip_version', '?')}{_trained_when(run['metrics'])}")],
    ]
    return html.table("Settings of this run", ["setting", "value"], rows, raw=True) + _data_table(run)


def _trained_when(metrics: dict) -> str:
    """', on 2026-11-29 20:11 UTC (cpu, x86_64)': when and where the run was trained, as its metrics.json
    records it; the machine alone for a run of a vip that recorded no time."""
    where = ", ".join(str(metrics[key]) for key in ("device", "machine") if metrics.get(key))
    when = html.utc_time(metrics.get("finished_at"))
    return (f", on {html.utc_minute(when)}" if when else "") + (f" ({where})" if where else "")


def own_fitting(cls, method_id) -> str | None:
    """The report's schedule row for a method that does not follow the run's schedule (which its run
    still records); None for one that follows it."""
    from vipcli.methods import fitting_without_schedule

    fitting = fitting_without_schedule(cls, method_id)
    return f"none: {fitting}" if fitting else None


def _origin(origin) -> str:
    """' (splits: train folder, val made by vip...)' from split.json's origin record."""
    if not isinstance(origin, dict) or not origin:
        return ""
    return " (splits: " + "; ".join(f"{name}: {how}" for name, how in origin.items()) + ")"


def _data_table(run: dict) -> str:
    split, names = run["split"], run["class_names"]
    train_used = [0] * len(names)
    by_path = {path: label for path, label in split.get("train", [])}
    for path in split.get("train_subset", []):
        if path in by_path:
            train_used[int(by_path[path])] += 1
    return (images_per_split(split, names, train_used) + skipped_files(split) + left_out_files(split)
            + copied_files(split))


def _metrics(run: dict) -> str:
    from vipcli.metrics import SCORE_TITLES, split_figure

    metrics = run["metrics"]
    splits = [split for split in ("val", "test") if split in metrics]
    # a score a row and a split a column: three columns fit a phone's width (a split a row made six, which scrolled)
    rows = [["images", *(metrics[split]["n"] for split in splits)]]
    rows += [[title, *(_fmt(split_figure(metrics[split], key)) for split in splits)] for key, title in SCORE_TITLES]
    body = html.table("Scores on each split", ["score", *splits], rows, numeric=set(range(1, len(splits) + 1)))
    timings, best = metrics.get("timings", {}), metrics.get("best_epoch")
    facts = []
    if best is not None:
        facts.append(f"best validation epoch {best + 1}")
    if timings:
        facts.append(f"encoding {timings.get('encode_s', 0):.1f} s, fitting {timings.get('fit_s', 0):.1f} s, "
                     f"total {timings.get('total_s', 0):.1f} s on {metrics.get('device', '?')}")
    meaning = figures_meaning("Accuracy, sensitivity (recall), specificity, precision and coverage")
    return (f"<p>{html.text(meaning)}</p>" + body + _per_class(run)
            + (f"<p>{html.text('; '.join(facts))}.</p>" if facts else ""))


def _test_figures(run: dict) -> tuple[list, list[dict]]:
    """The test confusion matrix and each class's figures from it (`metrics.per_class_figures`); ([], []) for a
    run without test images."""
    from vipcli.metrics import per_class_figures

    matrix = run["metrics"].get("test", {}).get("confusion_matrix") or []
    return matrix, per_class_figures(matrix) if matrix else []


def _per_class(run: dict) -> str:
    """Sensitivity, specificity and precision of each class on test, with their counts, and a caption saying that
    their mean sensitivity is the balanced accuracy."""
    matrix, figures = _test_figures(run)
    if not matrix:
        return ""
    rows = [[name, _share(f["recall"], f["found"], f["images"]),
             _share(f["specificity"], f["rejected"], f["others"]),
             _share(f["precision"], f["found"], f["predicted"]) if f["predicted"] else "- (never predicted)"]
            for name, f in zip(run["class_names"], figures)]
    # four columns fit a phone's width: a class's test images are the count under its sensitivity (found/images)
    table = html.table("Each class on test", ["class", "sensitivity (recall) %", "specificity %", "precision %"],
                       rows, numeric={1, 2, 3}) + f'<p class="caption">{html.text(_balanced_note(matrix, figures))}</p>'
    # a class never found, and a model not shown to beat chance, are noted at the top of the page (`_summary`)
    return table


def _unfound_note(class_names: list[str], figures: list[dict]) -> str:
    """A note when the model finds no test image of a class (`figures`: `_test_figures`'): accuracy alone hides it
    on unbalanced data."""
    from vipcli.metrics import unfound_classes

    missed = unfound_classes(class_names, figures) if figures else []
    if not missed:
        return ""
    names = ", ".join(f"{name} (0 of {images})" for name, images in missed)
    return html.note(html.text(f"The model finds no test image of {names}: its accuracy comes from the other "
                               "classes alone."))


def _summary(run: dict) -> str:
    """The first section of the page: the test scores in a sentence, on how many images of each class, then the
    notes that decide whether to trust them (a class the model never finds, a model not shown to beat chance, the
    same image in two splits or classes), so that a reader sees the answer before the settings; "" for a run without
    test images."""
    from vipcli.metrics import split_figure

    test = run["metrics"].get("test") or {}
    if not test.get("n"):
        return ""
    matrix, figures = _test_figures(run)
    counts = ", ".join(f"{sum(row)} {name}" for row, name in zip(matrix, run["class_names"]))
    scores = ", ".join(f"{title} {_fmt(figure)}%" for key, title in (("accuracy", "accuracy"),
                                                                     ("balanced_accuracy", "balanced accuracy"),
                                                                     ("auroc", "AUROC"))
                       if (figure := split_figure(test, key)) is not None)
    copies = test_copies(run["split"])  # of train or val images: not unseen, as the sentence says of the others
    unseen = (f", {copies} of them {plural(copies, 'a copy', 'copies')} of train or val images" if copies
              else ", which the model was neither trained nor calibrated on")
    sentence = (f"On the {test['n']} test {plural(test['n'], 'image')}" + (f" ({counts})" if counts else "")
                + f"{unseen}: {scores}. "
                + _guess_sentence(matrix, run["class_names"])
                + _found_sentence(run["class_names"], figures) + "Each score is explained under Metrics")
    notes = _unfound_note(run["class_names"], figures) + _chance_note(run) + copies_note(run["split"])
    sentence += "; the notes below say what limits them." if notes else "."
    return html.section("Summary", f"<p>{html.text(sentence)}</p>" + notes)


def _guess_sentence(matrix: list[list[int]], class_names: list[str]) -> str:
    """'Calling every test image nevus, the largest class, would score an accuracy of 77.06% ... ': on unbalanced
    test images, what the accuracy reads beside (`metrics.largest_class_sentence`); "" on balanced ones."""
    from vipcli.metrics import largest_class_sentence

    sentence = largest_class_sentence([sum(row) for row in matrix], class_names)
    return f"{sentence} " if sentence else ""


def _found_sentence(class_names: list[str], figures: list[dict]) -> str:
    """'It finds 101 of the 150 melanoma images (sensitivity 67.33%) and 137 of the 150 nevus images (91.33%). ':
    each class's sensitivity on test with its counts (`figures`: `_test_figures`'), which accuracy alone hides (""
    without a confusion matrix; a class without test images is left out)."""
    from vipcli.metrics import round_half_up

    tested = [(name, f) for name, f in zip(class_names, figures) if f["images"]]
    parts = [f"{f['found']} of the {f['images']} {name} {plural(f['images'], 'image')} "
             f"({'' if index else 'sensitivity '}{_fmt(round_half_up(f['recall']))}%)"
             for index, (name, f) in enumerate(tested)]  # the first says what its figure is
    return f"It finds {_and(parts)}. " if parts else ""


def _chance_note(run: dict) -> str:
    """A note when the test images do not show that the model tells a class apart better than chance (metrics.json's
    `test.vs_chance`, written since vip 0.2.0), unless the backbone had random weights, which the report's banner
    says."""
    from vipcli.chance import at_chance, chance_sentence, too_few, too_few_to_judge
    from vipcli.report.notices import random_weights

    test = run["metrics"].get("test", {})
    scores = test.get("vs_chance") or []
    if not at_chance(scores) or random_weights(run["meta"]):
        return ""
    sentence = chance_sentence(scores, run["class_names"], test.get("n", 0))
    then = ("Give the test split more images of each class to measure the model."
            if too_few(scores) or too_few_to_judge(scores)
            else "Its figures above are no evidence that it tells these classes apart.")
    return html.note(html.with_commands(f"{sentence[0].upper()}{sentence[1:]}. {then}"))


def _balanced_note(matrix: list[list[int]], figures: list[dict]) -> str:
    """The caption under the classes' table (`figures`: `per_class_figures(matrix)`): their sensitivities' mean
    is the balanced accuracy of the scores table (a class without test images, which has no sensitivity, left out,
    as there)."""
    from vipcli.metrics import exact_figures, round_half_up

    absent = sum(not f["images"] for f in figures)
    mean = round_half_up(exact_figures(matrix)["balanced_accuracy"])
    present = len(figures) - absent
    return (f"The mean of the sensitivity column over the {present} {plural(present, 'class', 'classes')}"
            f"{' with test images' if absent else ''}, {_fmt(mean)}%, is the balanced accuracy on test"
            + (f" ({absent} {plural(absent, 'class', 'classes')} without test images, and so without a sensitivity, "
               "left out)." if absent else "."))


def _share(value, part: int, whole: int) -> str:
    """'67.33 (101/150)': a percentage with the counts it comes from ('-' without any)."""
    from vipcli.metrics import round_half_up

    return f"{_fmt(round_half_up(value))} ({part}/{whole})" if whole else "-"


def _confusion(run: dict) -> str:
    matrix = run["metrics"].get("test", {}).get("confusion_matrix") or []
    if not matrix:
        return html.note("No test images: no confusion matrix.")
    title = figure_title("test confusion matrix", run["data"], run["backbone"])
    return html.figure(confusion_matrix_svg(matrix, run["class_names"], run["color"], title),
                       confusion_matrix_alt(matrix, run["class_names"], title), SHARE_NOTE)


RELIABILITY_CAPTION = ("bars: accuracy per confidence bin (the number at the foot of a bar: its test images); "
                       "hatched: the gap to the bin's mean confidence; dashed: perfect calibration")


CALIBRATION_MEANING = (
    "<p>A probability can be taken at its word when the model is <b>calibrated</b>: of the images it calls "
    "80% likely to be a class, about 8 in 10 are. The reliability diagram below shows how far this holds: a "
    "bar on the dashed diagonal is calibrated, a bar below it is more sure than right (overconfident), a bar "
    "above it less sure than right.</p>")
SCORE_NAMES = {"ece": "ECE", "nll": "NLL", "brier": "Brier score"}
CALIBRATION_HEADER = ["on test", "ECE %", "NLL", "Brier"]


def score_text(key: str, value, sign: bool = True) -> str:
    """A calibration score as the report writes it: the ECE as a percentage (of confidence: '6.54%', or '6.54'
    without `sign`, in a column that says %), the NLL and the Brier score as plain numbers ('0.4912')."""
    if key == "ece":
        return percent_text(value) if sign else percent(value)
    return html.number(value, 4)


def _scores_row(label: str, scores: dict) -> list[str]:
    """A row of the calibration table: its label, then the ECE (%), NLL and Brier score."""
    return [label, *(score_text(key, scores[key], sign=False) for key in SCORE_NAMES)]


def scaling_verdict(test: dict) -> str:
    """Whether temperature scaling made the test scores better or worse, in a sentence, e.g. 'On the test
    images temperature scaling lowered the NLL (0.4912 to 0.4817) but raised the ECE (6.54% to 7.50%) ...'.

    Args:
        test: metrics.json's calibration test block ({"before": {ece, nll, brier}, "after": {...}}).

    Returns:
        "" when there is nothing to compare (no test images: the scores are None).
    """
    if any(test[side][key] is None for side in ("before", "after") for key in SCORE_NAMES):
        return ""
    moves = {"lowered {}": [], "raised {}": [], "left {} unchanged": []}
    for key, name in SCORE_NAMES.items():
        before, after = (score_text(key, test[side][key]) for side in ("before", "after"))
        if before == after:
            moves["left {} unchanged"].append(f"the {name} ({before})")
        else:
            lower = test["after"][key] < test["before"][key]
            moves["lowered {}" if lower else "raised {}"].append(f"the {name} ({before} to {after})")
    parts = [verb.format(_and(scores)) for verb, scores in moves.items() if scores]
    sentence = "On the test images temperature scaling " + " but ".join(parts) + "."
    if not moves["lowered {}"]:
        return sentence + " It did not help here: read these probabilities as no better calibrated than before."
    if moves["raised {}"]:
        return sentence + (" It helped on some scores only: T is chosen to lower the NLL of the validation "
                           "images, which need not lower the others.")
    return sentence


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _calibration(run: dict, test_probabilities, test_labels) -> str:
    from vipcli.calibration import calibration_scores, reliability_bins

    block, title = run["metrics"].get("calibration"), figure_title("reliability on test", run["data"], run["backbone"])
    if run["calibration"] is None or block is None:
        body = html.note("<b>Uncalibrated.</b> This run was written by an earlier vip that stored no temperature: "
                         "its probabilities are the raw softmax and no prediction sets can be given. Retrain it "
                         "with this vip to calibrate it.")
        if test_probabilities is not None and len(test_labels):
            scores = calibration_scores(test_probabilities, test_labels)
            body += html.table("Calibration on test", CALIBRATION_HEADER, [_scores_row("uncalibrated", scores)],
                               numeric={1, 2, 3})
            panel = [("uncalibrated", reliability_bins(test_probabilities, test_labels), scores["ece"])]
            body += html.figure(reliability_svg(panel, run["color"], title), reliability_alt(panel, title),
                                RELIABILITY_CAPTION)
        return body
    test = block["test"]
    rows = [_scores_row(f"{name} (T = {t})", test[key])
            for name, key, t in (("before", "before", 1), ("after", "after", f"{block['temperature']:.4g}"))]
    body = CALIBRATION_MEANING + (f"<p>Temperature scaling divides every logit by T = <b>{block['temperature']:.4g}</b>, fitted on "
            f"{block['n_held_out']} {html.text(block['held_out'])} {plural(block['n_held_out'], 'image')} by minimising "
            f"the negative log-likelihood; it never changes the predicted class. Scores on {test['n']} test "
            f"{plural(test['n'], 'image')}, lower is better for each: ECE, the expected calibration error (the "
            f"gap between confidence and accuracy, in percentage points, averaged over {block['ece_bins']} equal-width "
            "confidence bins, each weighted by its share of the images); "
            f"NLL, the negative log-likelihood of the true class; Brier, the squared error of the probabilities:</p>")
    body += html.table("Calibration on test, before and after temperature scaling", CALIBRATION_HEADER,
                       rows, numeric={1, 2, 3})
    verdict = scaling_verdict(test)
    body += f"<p>{html.text(verdict)}</p>" if verdict else ""
    if test["n"]:
        panels = [("before (T = 1)", block["reliability"]["before"], test["before"]["ece"]),
                  (f"after (T = {block['temperature']:.4g})", block["reliability"]["after"], test["after"]["ece"])]
        body += html.figure(reliability_svg(panels, run["color"], title), reliability_alt(panels, title),
                            RELIABILITY_CAPTION)
    return body + html.note(html.text(HELD_OUT_NOTE))


UNDER_COVERED_POINTS = 10  # a class this many percentage points below the asked coverage gets a note


def per_class_coverage(probabilities, labels, cutoff: float, class_names: list[str]) -> list[tuple[str, int, int]]:
    """Per class: (name, its test images whose prediction set at `cutoff` holds it, its test images).

    Args:
        probabilities: [N, C] calibrated test probabilities; labels: the N true class indices.
        cutoff: the conformal threshold (a class is in the set when 1 - p <= cutoff).
    """
    from vipcli.conformal import prediction_sets

    labels = np.asarray(labels, dtype=int).reshape(-1)
    sets = prediction_sets(probabilities, cutoff) if len(labels) else []
    held = np.array([int(y) in s for s, y in zip(sets, labels)], dtype=bool)
    return [(name, int(held[labels == c].sum()), int((labels == c).sum())) for c, name in enumerate(class_names)]


def under_covered(per_class: list[tuple[str, int, int]], coverage: float) -> list[tuple[str, int, int]]:
    """The classes whose test coverage is more than UNDER_COVERED_POINTS points below `coverage`."""
    return [(name, held, n) for name, held, n in per_class
            if n and 100 * (coverage - held / n) > UNDER_COVERED_POINTS]


def _per_class_figure(held: int, n: int) -> str:
    """A class's test coverage as its table cell: '88.60 (101/114)'."""
    return f"{percent(held / n if n else None)} ({held}/{n})"


def _under_covered_note(shortfalls: list[tuple[float, list[tuple[str, int, int]]]]) -> str:
    if not shortfalls:
        return ""
    parts = [f"at coverage {coverage_percent(coverage)}, " + ", ".join(f"{name}: {percent_text(held / n)} ({held} of its "
                                                                     f"{n} test images)" for name, held, n in classes)
             for coverage, classes in shortfalls]
    return html.note(html.text(
        f"Some classes are covered far less often than asked (more than {UNDER_COVERED_POINTS} percentage points "
        "below): "
        + "; ".join(parts) + ". The promise is marginal, an average over all images, not a promise for each "
        "class: a set for an image of these classes misses its true class more often than the coverage says."))


SET_FIGURES = ["threshold %", "expected ± sd %", "test coverage %", "mean set size", "empty sets"]  # a row each


def _coverage_column(row: dict, run: dict, test_probabilities, test_labels) -> dict:
    """One coverage asked as its column of the prediction-set tables: {"figures": one per SET_FIGURES, "classes":
    `per_class_coverage` (None when no test image was predicted for this report), "low": `under_covered`, "note"}."""
    from vipcli.conformal import coverage_shortfall

    if "error" in row:
        return {"figures": ["-"] * len(SET_FIGURES), "classes": None, "low": [], "note": row["error"]}
    spread = (f"{percent(row['expected_coverage'])} ± {percent(row['coverage_sd'])}" if "coverage_sd" in row else "-")
    shortfall = coverage_shortfall(row, run["metrics"].get("test", {}).get("n", 0))
    known = test_probabilities is not None and test_labels is not None and len(test_labels) > 0
    per_class = (per_class_coverage(test_probabilities, test_labels, row["threshold"], run["class_names"])
                 if known else None)
    low = under_covered(per_class, row["coverage"]) if per_class else []
    note = "far below the expected coverage: test images not drawn like the validation images" if shortfall else ""
    return {"figures": [exact_percent(1 - row["threshold"]), spread, percent(row["empirical_coverage"]),
                        _fmt(row["mean_set_size"], 2), row["empty_sets"]],
            "classes": per_class, "low": low, "note": note}  # the classes far below: `_under_covered_note`


def _conformal(run: dict, test_probabilities=None, test_labels=None) -> str:
    """The prediction-set tables, a coverage asked a column (three and the row names fit a phone's width): the
    stored test figures, then each class's test coverage (recomputed from the test images predicted for this
    report) a row, with notes on what falls short."""
    from vipcli.conformal import askable_coverage

    block = run["metrics"].get("conformal")
    if run["calibration"] is None or block is None:
        return html.note("No prediction sets: this run stores no conformal scores (written by an earlier vip).")
    columns = [_coverage_column(row, run, test_probabilities, test_labels) for row in block["test"]]
    intro = (f"<p>Split conformal prediction with the score {html.text(block['score'])}, calibrated on "
             f"{block['n_held_out']} {html.text(block['held_out'])} {plural(block['n_held_out'], 'image')}. The set at "
             f"a coverage holds every class whose calibrated probability is at least its threshold; under "
             f"exchangeability the set at coverage 90% contains the true class for at least 90% of images. The "
             f"highest coverage these images can promise is {coverage_percent(askable_coverage(block['n_held_out']))} "
             f"(--coverage {askable_coverage(block['n_held_out']):g}). An empty set means no class is likely enough: "
             f"look at that image twice. The promise holds on average over draws of the validation images: with "
             f"this many, the coverage one run gets varies around its expectation by the ± shown (one standard "
             f"deviation, in percentage points). It is marginal: an average over all images, not a promise for "
             f"each class, so a second table shows, per class, the share of its test images whose set holds it "
             f"(with counts); the mean set size is in classes, the empty sets are counted in images. Measured on the "
             f"test images:</p>")
    asked = [coverage_percent(row["coverage"]) for row in block["test"]]
    numeric = set(range(1, len(columns) + 1))
    rows = [[title, *(column["figures"][i] for column in columns)] for i, title in enumerate(SET_FIGURES)]
    body = intro + html.table("Prediction sets on test, by coverage asked", ["coverage asked", *asked], rows, numeric)
    notes = " ".join(f"At coverage {coverage}: {column['note']}." for coverage, column in zip(asked, columns)
                     if column["note"])
    body += html.note(html.text(notes)) if notes else ""
    if any(column["classes"] for column in columns):
        classes = [[name, *(_per_class_figure(*column["classes"][c][1:]) if column["classes"] else "-"
                            for column in columns)] for c, name in enumerate(run["class_names"])]
        body += html.table("Test coverage % of each class, by coverage asked", ["class", *asked], classes, numeric)
    shortfalls = [(row["coverage"], column["low"]) for row, column in zip(block["test"], columns) if column["low"]]
    return body + _under_covered_note(shortfalls)


def merge_weights(predictor) -> dict[str, list[tuple[str, float]]] | None:
    """Per class, (symptom, merge weight) for methods with a learned merge prompt; None for others."""
    method = predictor.method
    if getattr(method, "merge", None) is None or not hasattr(method, "merge_weights"):
        return None
    symptoms = predictor.metadata.get("symptoms") or {}
    weights = method.merge_weights().detach().float().cpu()  # [C, K]
    return {name: [(phrase, float(weights[c, k])) for k, phrase in enumerate(symptoms.get(name, []))]
            for c, name in enumerate(predictor.class_names)}


def merge_meaning(weights: dict[str, list[tuple[str, float]]]) -> str:
    """A paragraph saying in plain words what the merge-weight chart shows (HTML)."""
    from vipcli.report.figures import weights_add_to_one

    adds_up = " A class's weights add up to 1." if weights_add_to_one(weights) else ""
    return ("<p>This method describes each class by its symptoms and learns how much each symptom counts in the "
            f"class's description: its <b>merge weight</b>.{adds_up} A bar past the dashed line counts more than a "
            "plain average of the symptoms would give it, a shorter one less. The weights are the same for every "
            "image: they say which symptoms the model leans on for a class, not what it sees in one image (a card "
            "of the gallery names the symptoms that pushed its prediction up, with their similarity to its "
            "image).</p>")


def _merge(run: dict, predictor) -> str:
    weights = merge_weights(predictor) if predictor is not None else None
    if not weights or not all(weights.values()):
        method = run["meta"].get("method")
        return html.note(f"Method <b>{html.text(method)}</b> has no merge prompt: its class embeddings weigh "
                         f"every prompt equally (or, for a linear probe, use no prompts), so there are no learned "
                         f"symptom weights to show.")
    title = figure_title("merge weights per class", run["data"], run["backbone"])
    return merge_meaning(weights) + html.figure(merge_weights_svg(weights, run["color"], title), merge_weights_alt(weights, title),
                       "the weight of each symptom in its class's description; dashed: the equal weight a plain "
                       "average would give")


def uses_symptoms(meta: dict) -> bool:
    """The method's prompts are the classes' symptoms (so its explanations name symptoms)."""
    symptoms = meta.get("symptoms") or {}
    prompts = (meta.get("method_state") or {}).get("prompts") or meta.get("prompts") or []
    return bool(symptoms) and prompts == [symptoms.get(name) for name in meta["class_names"]]


def find_test_images(run: dict) -> tuple[list[Path], dict[str, str]]:
    """The run's test image files (those still on disk) and each one's true class."""
    root, names = Path(run["split"].get("root", ".")), run["class_names"]
    paths, truths = [], {}
    for relative, label in run["split"].get("test", []):
        path = Path(relative) if Path(relative).is_absolute() else root / relative
        if path.is_file():
            paths.append(path)
            truths[str(path)] = names[int(label)]
    return paths, truths


RIGHT_CARDS = 16  # right predictions a suggested --gallery shows after all the wrong ones


def _more_cards(items) -> str:
    """How to see the right predictions too: a --gallery showing every error and a few right ones."""
    errors = sum(i.wrong for i in items)
    wanted = min(errors + RIGHT_CARDS, len(items))
    return f"vip report --gallery {wanted} shows all {errors} wrong ones and {wanted - errors} right ones"


def run_report(run_dir: Path, coverage: float = 0.9, gallery: int = 48, device="cpu", workers: int = 2,
               progress=None) -> str:
    """The HTML report of a run directory (loads its backbone to show test images and merge weights).

    Args:
        coverage: the prediction sets shown in the gallery.
        gallery: how many test images the gallery shows (errors first).
    """
    from vipcli.features import default_cache_dir
    from vipcli.predict import load_predictor, predict

    run_dir = Path(run_dir)
    run = describe_run(run_dir)
    cache_root = default_cache_dir()  # a cache folder every user can write: refused before the backbone loads
    predictor = load_predictor(run_dir, device)
    if not predictor.method.uses_shots:  # a zero-shot run of an earlier vip lists --shots images it never used
        run["split"] = {**run["split"], "train_subset": []}
    run["fitting"] = own_fitting(type(predictor.method), run["meta"].get("method"))
    paths, truths = find_test_images(run)
    notes, cutoff_coverage = [], coverage if run["calibration"] is not None else None
    if cutoff_coverage is not None:
        try:
            run["calibration"].threshold(coverage)
        except VipError as error:
            notes.append(html.note(html.text(f"No prediction sets in the gallery: {error.message}.")))
            cutoff_coverage = None
    predictions = []
    if paths:
        cache = predictor.feature_cache(cache_root)
        predictions, _ = predict(predictor, paths, explain=True, cache=cache, workers=workers, progress=progress,
                                 coverage=cutoff_coverage)
    names = run["class_names"]
    probabilities = np.array([[p.probabilities[n] for n in names] for p in predictions]).reshape(-1, len(names))
    labels = np.array([names.index(truths[p.path]) for p in predictions], dtype=int)
    missing = len(run["split"].get("test", [])) - len(paths)
    if missing:
        notes.append(html.note(html.text(f"{missing} test images listed in split.json are no longer on disk under "
                                         f"{run['split'].get('root')}; the gallery leaves them out.")))
    caption = (f"prediction sets at coverage {coverage_percent(cutoff_coverage)}" if cutoff_coverage is not None
               else "no prediction sets")
    if cutoff_coverage is not None:
        notes.append(sets_explained(cutoff_coverage))
    items = gallery_items(predictions, truths, uses_symptoms(run["meta"]))
    sections = [
        random_weights_banner(run["meta"], "this run's results"),
        _summary(run),
        html.section("Settings and data", _settings(run)),
        html.section("Metrics", _metrics(run)),
        html.section("Confusion matrix", _confusion(run)),
        html.section("Calibration", _calibration(run, probabilities if predictions else None, labels)),
        html.section("Prediction sets", _conformal(run, probabilities if predictions else None, labels)),
        html.section("Merge weights of each class's symptoms", _merge(run, predictor)),
        html.section(f"Test images ({caption})", "".join(notes) + gallery_html(items, gallery, Path(run["split"]["root"]),
                                                                       _more_cards(items))),
    ]
    meta = run["meta"]
    subtitle = html.text(f"{meta.get('method')} on {run['data']} ({len(names)} classes), backbone {run['backbone']}"
                         + ("" if run["calibration"] is not None else " · uncalibrated"))
    return html.page(f"vip report: {run_dir.name}", subtitle, sections,
                     html.written_by(run_dir.resolve()))
