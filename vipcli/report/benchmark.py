"""The report of a benchmark folder: settings, the shots plot, per-method tables, seconds per run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from rich.markup import escape

from vipcli import console
from vipcli.errors import VipError
from vipcli.image_fit import fit_words
from vipcli.metrics import (CAPPED_MARK, best_note, capped_columns, capped_note, column_leaders, mean_and_std,
                            missed_rows_warning, row_figure, unmarked_cells)
from vipcli.plots import (benchmark_title, draw_shots, largest_class_line, method_styles, seeds_label, svg_markup,
                          uneven_seeds)
from vipcli.report import html
from vipcli.report.data_notes import copied_files, copies_note, images_per_split, left_out_files, skipped_files
from vipcli.report.notices import random_weights, random_weights_banner
from vipcli.report.swatches import swatch
from vipcli.report.units import figures_meaning

REFERENCE_LABELS = {  # by whether speed.json says its reference ran the plain text tower (written since 0.2.0)
    True: "ViP train, reference (the authors' way)",
    False: "ViP train, reference (re-encode every epoch)",
}
METRICS = (("test_accuracy", "test accuracy %"), ("test_balanced_accuracy", "test balanced accuracy %"),
           ("test_macro_f1", "test macro-F1 %"), ("test_auroc", "test AUROC %"))


def read_results(folder: Path) -> dict:
    """results.json of a benchmark folder (a clear error when it is not one)."""
    from vipcli.sweep_folder import RESULTS_FORMAT

    path = Path(folder) / "results.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VipError(f"{path} is missing or unreadable ({type(error).__name__})",
                       "pass a folder written by `vip benchmark`") from None
    if document.get("format") != RESULTS_FORMAT:
        raise VipError(f"{path} is not a vip benchmark results file", "pass a folder written by `vip benchmark`")
    return document


def _mean_std(values: list) -> str:
    """'mean ± std' of the figures over seeds (as results.json's summary computes them); one figure
    alone (one seed) has no spread to show."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, std = mean_and_std(values)
    return html.number(mean) if len(values) == 1 else f"{html.number(mean)} ± {html.number(std)}"


def _mean_std_n(values: list) -> str:
    """`_mean_std` with the number of seeds behind it, '75.67 ± 2.53 (n=5)': for a table whose cells
    do not all average the same seeds."""
    shown = _mean_std(values)
    return shown if shown == "-" else f"{shown} (n={sum(v is not None for v in values)})"


def _columns(rows: list[dict]) -> list[str]:
    """Shots columns in sweep order ('0' only when nothing learns)."""
    found = list(dict.fromkeys(str(r["shots"]) for r in rows if str(r["shots"]) != "0"))
    return found or ["0"]


def _grid(rows: list[dict], key: str, fmt, mark_best: bool = False, unmarked: set | frozenset = frozenset()
          ) -> tuple[list[str], list[list[str]], tuple]:
    """Rows = methods (in their colour), columns = shots; methods that learn nothing repeat their figure.
    `mark_best`: the cells of the highest mean in each column (ties: each) in bold (<strong>), leaving out the
    (method, column) cells in `unmarked`; the third item returned, (leaders, methods, columns), is what
    `best_note` names them from (no leaders without `mark_best`)."""
    columns, methods = _columns(rows), list(dict.fromkeys(r["method"] for r in rows))
    styles = method_styles(methods)  # the plot's colours
    fixed = {m: all(str(r["shots"]) == "0" for r in rows if r["method"] == m) for m in methods}  # learns nothing
    figures = {(m, c): [row_figure(r, key) for r in rows if r["method"] == m and (fixed[m] or str(r["shots"]) == c)]
               for m in methods for c in columns}  # (method, column) -> the figures over seeds
    best = column_leaders({key: mean_and_std(values)[0] for key, values in figures.items()},
                          unmarked) if mark_best else {}
    body = []
    for method in methods:
        cells = [html.text(fmt(figures[method, c])) for c in columns]
        cells = [f"<strong>{cell}</strong>" if method in best.get(c, ()) else cell for c, cell in zip(columns, cells)]
        body.append([swatch(method + (" *" if fixed[method] else ""), *styles[method]), *cells])
    capped = capped_columns(rows)
    return [f"{c}-shot{CAPPED_MARK if c in capped else ''}" for c in columns], body, (best, methods, columns)


SHARED_TIME_NOTE = (
    "The images are encoded once for the whole sweep, not in any row's seconds. Rows of one prompt-learning "
    "method (vip, vip-cop-only, coop, biomedcoop) are trained together, its seeds and shot counts in one "
    "batched loop, unless the benchmark ran with --no-batch: each such row's seconds are an equal share of its "
    "group's training time plus its own evaluation, so they do not grow with the shots as a row trained alone "
    "would."
)


SPREAD_MEANING = ("The ± is the sample standard deviation over the seeds (divided by n − 1: with two seeds, "
                  "their difference over √2), as results.json's summary gives it.")


UNEVEN_NOTE = ("Not every cell averages the same seeds (the sweep was extended for some methods or shots, or "
               "stopped before its last rows): n is the number of seeds behind each cell.")


def test_images_sentence(rows: list[dict], class_names) -> str:
    """What the tables' figures are measured on, from the rows' test confusion matrices: 'Every score below is
    measured on the same 300 test images (150 melanoma, 150 nevus).'; "" when no row records its matrix (rows of
    an earlier vip), or the rows were measured on different test images (`vipcli.metrics.shared_test_images`)."""
    from vipcli.metrics import shared_test_images

    images = shared_test_images(rows, class_names)
    return f"Every score below is measured on the same {images}." if images else ""


def _guess_sentence(rows: list[dict], class_names) -> str:
    """What calling every test image the largest class would score, when every row is measured on the same
    unbalanced test images (`vipcli.metrics.largest_class_sentence`); "" otherwise."""
    from vipcli.metrics import largest_class_sentence, shared_test_counts

    return largest_class_sentence(shared_test_counts(rows) or [], class_names)


def _tables(rows: list[dict], class_names=None) -> str:
    """One table per metric and one of seconds per run, each named once, by its caption."""
    seeds, uneven = sorted({int(r["seed"]) for r in rows}), uneven_seeds(rows)
    measured_on = test_images_sentence(rows, class_names)
    meaning = figures_meaning("Accuracy") + (" " + SPREAD_MEANING if len(seeds) > 1 else "") + (
        " " + UNEVEN_NOTE if uneven else "") + (" " + measured_on if measured_on else "")
    spread, parts = seeds_label(seeds, "cell" if uneven else None), [f"<p>{html.text(meaning)}</p>"]
    for key, title in METRICS:
        unmarked = unmarked_cells(rows, class_names, key)
        header, body, marked = _grid(rows, key, _mean_std_n if uneven else _mean_std, mark_best=True,
                                     unmarked=unmarked)
        note = best_note(*marked, several_seeds=len(seeds) > 1, unmarked=bool(unmarked))
        if key == "test_accuracy":  # on unbalanced test images, what the accuracy reads beside
            note = " ".join(part for part in (note, _guess_sentence(rows, class_names)) if part)
        parts.append(html.table(f"{title} ({spread})", ["method", *header], body,
                                numeric=set(range(1, len(header) + 1)), raw=True)
                     + (f'<p class="caption">{html.text(note)}</p>' if note else ""))
    over = "mean over seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    header, body, _ = _grid(rows, "fit_s", lambda v: "-" if not v else f"{html.number(statistics.fmean(v))} s")
    parts.append(html.table(f"seconds per run (fitting and evaluation, {over})", ["method", *header], body,
                            numeric=set(range(1, len(header) + 1)), raw=True)
                 + f'<p class="caption">{html.text(SHARED_TIME_NOTE)}</p>')
    if capped_columns(rows):
        parts.append(f"<p>{html.text(capped_note(capped_columns(rows)))}.</p>")
    if any(str(r["shots"]) == "0" for r in rows):
        parts.append("<p>* uses no labelled images (zero-shot): evaluated once per seed, the same figure in every column.</p>")
    return "".join(parts)


def _shots_alt(rows: list[dict], title: str, class_names=None) -> str:
    """The alt text of the shots plot: what it draws, for which methods, and where its figures are."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    line = largest_class_line(rows, class_names)
    return (f"{title}. Line chart of test accuracy % against labelled training images per class "
            f"({', '.join(_columns(rows))} shots), one line per method ({', '.join(methods)})"
            + ("; methods that learn nothing are horizontal dashed lines" if _dashed_note(rows) else "")
            + (f"; a dotted line marks calling every test image {line[1]}, {line[2]}: {line[0]:.2f}%" if line else "")
            + ". The table test accuracy % below has its figures.")


def missing_rows(document: dict) -> list[str]:
    """The rows the last sweep asked for that results.json does not hold, e.g. "coop 16-shot seed 3"
    (a method without any finished row: "vip (no finished row)"), in sweep order."""
    sweep = document.get("config", {}).get("last_sweep") or {}
    rows = document.get("rows", [])
    failed = failed_rows(document)  # named by their own note, with why
    done = {(r["method"], str(r["shots"]), str(r["seed"])) for r in [*rows, *failed]}
    missing = []
    for method in sweep.get("methods", []):
        mine = [r for r in [*rows, *failed] if r["method"] == method]
        if not mine:
            missing.append(f"{method} (no finished row)")
            continue
        zero_shot = all(str(r["shots"]) == "0" for r in mine)
        for shots in ["0"] if zero_shot else [str(s) for s in sweep.get("shots", [])]:
            for seed in sweep.get("seeds", []):
                if (method, shots, str(seed)) not in done:
                    missing.append(f"{method} {'' if zero_shot else f'{shots}-shot '}seed {seed}")
    return missing


def _rows_of_unstarted(method: str, sweep: dict) -> int:
    """How many rows the last sweep asked of `method`, which has none finished: one per seed for a method
    that uses no shots (zeroshot), one per shots value and seed otherwise (also for a method not installed)."""
    seeds = len(sweep.get("seeds", []))
    try:
        from vipcli.methods import method_class

        if not method_class(method).uses_shots:
            return seeds
    except VipError:
        pass
    return len(sweep.get("shots", [])) * seeds


MISSING_SHOWN = 6  # the missing rows an unfinished sweep's note names


def _unfinished_note(document: dict) -> str:
    """A note when the last sweep did not finish: its tables average the seeds that did."""
    missing = missing_rows(document)
    if not missing:
        return ""
    sweep = document.get("config", {}).get("last_sweep") or {}
    unstarted = " (no finished row)"  # one entry for all of a method's rows
    rows = [_rows_of_unstarted(m.removesuffix(unstarted), sweep) if m.endswith(unstarted) else 1 for m in missing]
    count = sum(rows)
    # the entries not named are counted in rows, as the sentence counts (an unstarted method is several)
    hidden = sum(rows[MISSING_SHOWN:])
    shown = ", ".join(missing[:MISSING_SHOWN]) + (f" and {console.counted(hidden, 'more row')}" if hidden else "")
    verb = "is" if count == 1 else "are"
    return html.note(html.text(f"This sweep has not finished: {count} of its rows {verb} missing ({shown}). "
                               "A cell shows the seeds that finished; run the same vip benchmark command again "
                               "to resume it."))


def failed_rows(document: dict) -> list[dict]:
    """The rows the last sweep (`--keep-going`) recorded as failed (`last_sweep.failed_rows`): each a dict with
    method, shots, seed and error; malformed entries are passed over."""
    failed = (document.get("config", {}).get("last_sweep") or {}).get("failed_rows")
    return [row for row in failed if isinstance(row, dict) and {"method", "shots", "seed"} <= set(row)] \
        if isinstance(failed, list) else []


FAILED_SHOWN = 6  # the failed rows the note names, with their errors


def _failed_note(document: dict) -> str:
    """A note naming the rows of the last sweep that failed (`--keep-going`), each with its error: the tables
    show the seeds that finished, and the console said it once, on a screen since closed."""
    from vipcli.benchmark import failed_row_name

    failed = failed_rows(document)
    if not failed:
        return ""
    named = "; ".join(f"{failed_row_name(row)} ({row.get('error') or 'no error recorded'})"
                      for row in failed[:FAILED_SHOWN])
    more = f"; and {console.counted(len(failed) - FAILED_SHOWN, 'more row')}" if len(failed) > FAILED_SHOWN else ""
    verb = "row" if len(failed) == 1 else "rows"
    return html.note(html.text(f"{len(failed)} {verb} of the last sweep failed (--keep-going): {named}{more}. A cell "
                               "shows the seeds that finished; once the cause is fixed, run the same vip benchmark "
                               "command again to run the failed rows."))


def _left_out_note(document: dict) -> str:
    """A note naming each plugin that the last sweep (`--methods all`) left out when it failed, where and why
    (`last_sweep.left_out`), and what of it the tables show: the sweep warned of it on stderr only, and the tables
    showed its finished rows, or nothing of it, with no word of the failure."""
    sweep = document.get("config", {}).get("last_sweep") or {}
    left_out = sweep.get("left_out")
    if not isinstance(left_out, dict) or not left_out:
        return ""
    rows = document.get("rows", [])
    parts = []
    for method, record in left_out.items():
        record = record if isinstance(record, dict) else {}
        kept = sum(r["method"] == method for r in rows)
        shown = (f"the tables show the {console.counted(kept, 'row')} it finished before" if kept
                 else "it has no row in the tables")
        error = str(record.get("error") or f"method '{method}' failed")
        parts.append(f"{error[0].upper() + error[1:]} (in {record.get('failed_in', 'a row')}): {shown}.")
    its, it_is = ("Its", "it is") if len(parts) == 1 else ("Their", "they are")
    return html.note(html.text(f"Left out of the last sweep (--methods all), when it failed: {' '.join(parts)} "
                               f"{its} other rows were not run; once {it_is} fixed, run the same vip benchmark "
                               "command again to run them."))


def held_grid(rows: list[dict]) -> dict[str, list]:
    """The methods, shots and seeds that the stored `rows` hold (the tables' rows, columns and seeds), not
    only those of the last `vip benchmark` command, which may have extended the sweep by a seed or a method."""
    shots = list(dict.fromkeys(r["shots"] for r in rows if str(r["shots"]) != "0"))
    return {"methods": list(dict.fromkeys(r["method"] for r in rows)),
            "shots": sorted((s for s in shots if str(s) != "all"), key=int) + [s for s in shots if str(s) == "all"],
            "seeds": sorted({int(r["seed"]) for r in rows})}


def _settings(document: dict) -> str:
    config = document.get("config", {})
    held = held_grid(document.get("rows", []))
    described = config.get("backbone_describe") or {}  # what the defaults resolved to
    rows = [
        ["classes", ", ".join(document.get("class_names", []))],
        ["backbone", f"{config.get('backbone')} (arch {config.get('arch') or described.get('arch') or 'default'}, "
                     f"weights {config.get('pretrained') or described.get('pretrained') or 'default'})"],
        ["methods", ", ".join(held["methods"])], ["shots", ", ".join(map(str, held["shots"])) or "0 (zero-shot only)"],
        ["seeds", ", ".join(map(str, held["seeds"]))], ["split seed", config.get("split_seed")],
        ["schedule", _schedule(config, held)], ["augmented views per image", config.get("views")],
        ["image fit", fit_words(config.get("image_fit"))],
        ["rows", f"{len(document.get('rows', []))}{_finished(document.get('rows', []))}"],
        *([["ran on", ran_on]] if (ran_on := _ran_on(document.get("rows", []))) else []),
    ]
    rows = [["data", html.path(config.get("data"))], *([name, html.text(value)] for name, value in rows)]
    return html.table("Settings of this benchmark", ["setting", "value"], rows, raw=True)


def _schedule(config: dict, held: dict) -> str:
    """'auto: few-shot for 1 shot, 2 shots (100 epochs, ...)': what --schedule meant for the stored rows' shots."""
    from vipcli.schedule import schedule_words

    name = config.get("schedule")
    if name is None:
        return "not recorded"
    return schedule_words(name, held.get("shots") or [], config.get("epochs"), config.get("batch_size"),
                          config.get("lr"))


def _ran_on(rows: list[dict]) -> str:
    """'cuda:0 (x86_64, NVIDIA H200)': the devices and machines the rows ran on, as results.json records them
    (several for a sweep resumed elsewhere); "" when no row says (rows of an earlier vip)."""
    seen = {f"{row['device']} ({row['machine']})" if row.get("machine") else str(row["device"]): None
            for row in rows if isinstance(row, dict) and row.get("device")}
    return "; ".join(seen)


def _finished(rows: list[dict]) -> str:
    """', finished 2026-11-29 19:58 to 19:59 UTC': when the first and the last row finished (as results.json
    records it); "" when no row says."""
    times = [when for row in rows if isinstance(row, dict) and (when := html.utc_time(row.get("finished_at")))]
    if not times:
        return ""
    first, last = min(times), max(times)
    end = last.strftime("%H:%M") + " UTC" if last.date() == first.date() else html.utc_minute(last)
    return f", finished {first.strftime(html.MINUTE)} to {end}"


def _split(folder: Path) -> dict:
    """The sweep's split.json; {} when it is missing or unreadable (results.json alone still makes a report)."""
    try:
        split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return split if isinstance(split, dict) else {}


def _data(split: dict, class_names) -> str:
    """The images of each class in each split the sweep drew from, the files it skipped (unreadable) or left out
    (taken by no class), and the images in more than one split or class, from its split.json (`_split`); "" when
    there is none."""
    if not split:
        return ""
    names = split.get("class_names") or class_names
    table = images_per_split(split, names) if isinstance(names, list) and names else ""
    return table + skipped_files(split) + left_out_files(split) + copied_files(split)


def _speed(folder: Path) -> str:
    path = folder / "speed.json"
    if not path.is_file():
        return ""
    try:
        speed = json.loads(path.read_text())
        rows = [
            ["feature extraction, cold cache", f"{speed['feature_extraction']['images_per_s']:.1f} images/s"],
            ["ViP train, cached features", f"{speed['train_cached']['seconds']:.1f} s"],
            [REFERENCE_LABELS[speed.get("reference_text_tower") == "plain"],
             f"{speed['train_reference']['seconds']:.1f} s"],
            ["speed-up", f"{speed['speedup']:.2f}x"],
            ["vip predict", f"{speed['predict']['images_per_s']:.1f} images/s"],
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return html.section("Speed", html.note(f"{html.text(path)} could not be read."))
    machine = speed.get("machine", {})
    return html.section("Speed", f"<p>{html.text(machine.get('accelerator'))}, "
                        f"{html.text(machine.get('cpu'))}</p>" + html.table("measured by vip benchmark --speed (speed.json)",
                                                                           ["measure", "value"], rows))


def _dotted_note(rows: list[dict], class_names) -> str:
    """The caption's key to the dotted largest-class line, only when the plot has it (unbalanced test images)."""
    line = largest_class_line(rows, class_names)
    return (f"; dotted: calling every test image {line[1]}, {line[2]}, with no model ({line[0]:.2f}%): an accuracy "
            "means something only above it") if line else ""


def _dashed_note(rows: list[dict]) -> str:
    """The caption's key to the dashed lines, only when the plot has some (methods that learn nothing, shots 0)."""
    from vipcli.benchmark import ZERO_SHOTS

    return "; dashed: methods that learn nothing" if any(str(r["shots"]) == str(ZERO_SHOTS) for r in rows) else ""


def _missed_note(rows: list[dict], class_names) -> str:
    """A note naming every row that finds no test image of a class, as the sweep warned on stderr: on unbalanced
    data such a row's accuracy is the share of the other classes (never the accuracy table's bold lead:
    `unmarked_cells`); "" when every row finds every class. It points to the page's balanced accuracy table, not to
    results.csv: the page is read by people who never open it."""
    return _warning_note(missed_rows_warning(rows, class_names, shown=len(rows), detail=MISSED_DETAIL)
                         if isinstance(class_names, list) else "")


MISSED_DETAIL = ("the test balanced accuracy table below shows it: there a class never found counts 0, as much as a "
                 "class found every time counts 100")


def _chance_note(rows: list[dict], config: dict) -> str:
    """A note naming every row whose test images do not show that its model beats chance, as the sweep warned on
    stderr; "" when every row does, or when the backbone had random weights (the report's banner says what that
    means). Unlike the terminal's line it names no file: the page is read by people who never open results.json."""
    from vipcli.chance import chance_rows_warning

    if random_weights(config):
        return ""
    return _warning_note(chance_rows_warning(rows, shown=len(rows), detail=""))


def _running_note(folder: Path) -> str:
    """A note (and a warning on stderr) when a `vip benchmark` is writing the folder now: the report shows the
    rows saved so far, which that sweep may still add to or, started with --force, replace."""
    from vipcli.sweep_folder import running_sweep

    holder = running_sweep(folder)
    if holder is None:
        return ""
    message = (f"a vip benchmark is writing {folder} now{holder}: this report shows the rows saved so far, which "
               "that sweep may still add to or replace; run vip report again when it ends")
    console.warn(escape(message))
    return _warning_note(message)


def _warning_note(message: str) -> str:
    """A warning's `message` (as stderr says it, in lower case, without a full stop) as the report's note, each
    `command` it quotes set as code; "" for none."""
    return html.note(html.with_commands(message[0].upper() + message[1:] + ".")) if message else ""


def benchmark_report(folder: Path) -> str:
    """The HTML report of a folder written by `vip benchmark`."""
    folder = Path(folder)
    running = _running_note(folder)
    document = read_results(folder)
    rows, config = document.get("rows", []), document.get("config", {})
    if not rows:
        failed = failed_rows(document)
        said = (f": the {console.counted(len(failed), 'row')} of its last sweep failed (first {failed[0]['method']}: "
                f"{failed[0].get('error') or 'no error recorded'})" if failed else "")
        raise VipError(f"{folder / 'results.json'} has no finished rows{said}",
                       "let `vip benchmark` finish at least one row")
    title = benchmark_title(config)
    seeds = sorted({int(r["seed"]) for r in rows})
    split, names = _split(folder), document.get("class_names")
    sections = [
        random_weights_banner(config, "this benchmark's results"),
        running,
        _unfinished_note(document),
        _failed_note(document),
        _left_out_note(document),
        # what decides whether to trust a row comes before the settings, on the first screen
        _missed_note(rows, document.get("class_names")) + _chance_note(rows, config) + copies_note(split),
        html.section("Settings and data", _settings(document) + _data(split, document.get("class_names"))),
        html.section("Results", html.figure(svg_markup(draw_shots(rows, title=title, class_names=names)),
                                            _shots_alt(rows, title, names),
                                            seeds_label(seeds, "point" if uneven_seeds(rows) else None)
                                            + _dashed_note(rows) + _dotted_note(rows, names))
                    + _tables(rows, document.get("class_names"))),
        _speed(folder),
    ]
    subtitle = html.text(f"{len(rows)} runs on {Path(str(config.get('data', ''))).name}, backbone "
                         f"{config.get('backbone')}")
    return html.page(f"vip benchmark report: {folder.name}", subtitle, sections,
                     html.written_by(folder.resolve()))
