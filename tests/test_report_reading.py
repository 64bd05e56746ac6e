"""Reports as a clinician reads them: only symptoms that pushed a class up, one-seed benchmarks without
a spread, a banner on random weights, coverage per class, and rendering (titles, file names, no
negative zero, merge-weight labels, the seconds table)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import test_report
from vipcli.predict import Prediction

lesion_run, benchmark_dir = test_report.lesion_run, test_report.benchmark_dir  # the fixtures, shared
NEGATIVE_ZERO = re.compile(r"(?<![\d.])-0\.0+(?![0-9])")  # "-0.000", never "-0.001"


def _visible(page: str) -> str:
    """The text of a page without tags and embedded images (what a reader sees, roughly)."""
    from html import unescape

    page = re.sub(r'src="data:[^"]*"', "", page)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


# --- #1: the gallery lists only symptoms that pushed the class up ----------------------------------

def _prediction(contributions: list[float]) -> Prediction:
    symptoms = [{"symptom": f"s{i}", "similarity": c / 2, "weight": 0.5, "contribution": c}
                for i, c in enumerate(contributions)]
    return Prediction("x/nevus.png", "nevus", 0.6, {"melanoma": 0.4, "nevus": 0.6},
                      [{"class": "nevus", "symptoms": symptoms}])


def test_top_symptoms_leave_out_those_that_pushed_the_class_down():
    from vipcli.report.gallery import top_symptoms

    assert [e["symptom"] for e in top_symptoms(_prediction([-0.3, 0.2, 0.0, 1.0, -0.01]))] == ["s3", "s1"]
    assert [e["symptom"] for e in top_symptoms(_prediction([0.1, 0.4, 0.3, 0.2]))] == ["s1", "s2", "s3"]
    assert top_symptoms(_prediction([-0.002, -0.074, -0.294])) == []
    plugin = _prediction([0.0])  # no contribution: merge weight x similarity
    plugin.explanation[0]["symptoms"] = [{"symptom": "down", "similarity": -0.2, "weight": 0.5},
                                         {"symptom": "up", "similarity": 0.1, "weight": 0.5}]
    assert [e["symptom"] for e in top_symptoms(plugin)] == ["up"]


def test_a_card_whose_class_no_symptom_pushed_up_says_so():
    from vipcli.report.gallery import gallery_html, gallery_items

    page = gallery_html(gallery_items([_prediction([-0.002, -0.074, -0.294])], {}, with_symptoms=True))
    text = _visible(page)
    assert "no symptom pushed towards nevus" in text and "symptoms that pushed" not in text
    assert "s0" not in text and "contribution -" not in text
    mixed = _visible(gallery_html(gallery_items([_prediction([-0.5, 0.25])], {}, with_symptoms=True)))
    assert "symptoms that pushed towards nevus most:" in mixed and "s1" in mixed and "s0" not in mixed
    assert "no symptom pushed" not in _visible(gallery_html(gallery_items([_prediction([-1.0])], {}, False)))


def test_a_card_names_an_image_of_a_subset_of_links_relative_to_the_data_folder(tmp_path):
    """A data folder of symbolic links (a small subset of a large set) showed each card's full path,
    because the link was resolved before it was compared with the data folder."""
    from PIL import Image

    from vipcli.report.gallery import gallery_html, gallery_items

    (tmp_path / "store").mkdir()
    Image.new("RGB", (8, 8), "brown").save(tmp_path / "store" / "ISIC_1.png")
    (tmp_path / "subset" / "test" / "nevus").mkdir(parents=True)
    link = tmp_path / "subset" / "test" / "nevus" / "ISIC_1.png"
    link.symlink_to(tmp_path / "store" / "ISIC_1.png")
    prediction = Prediction(str(link), "nevus", 0.6, {"melanoma": 0.4, "nevus": 0.6}, None)
    page = gallery_html(gallery_items([prediction], {}, False), root=tmp_path / "subset")
    assert re.search(r'<div class="name">test/<wbr>nevus/<wbr>IS<span class="nowrap">IC_1.png</span></div>', page)
    assert str(tmp_path) not in page


# --- #3: a benchmark with one seed shows no spread --------------------------------------------------

def _one_seed_benchmark(benchmark_dir, folder, pretrained=None):
    """A copy of the benchmark folder keeping seed 1 only (optionally claiming other weights)."""
    folder = shutil.copytree(benchmark_dir, folder)
    document = json.loads((folder / "results.json").read_text())
    document["rows"] = [r for r in document["rows"] if int(r["seed"]) == 1]
    if pretrained is not None:
        document["config"]["pretrained"] = pretrained
    (folder / "results.json").write_text(json.dumps(document))
    return folder


def test_benchmark_report_with_one_seed_shows_no_spread(benchmark_dir, tmp_path):
    from vipcli.report.benchmark import benchmark_report

    page = benchmark_report(_one_seed_benchmark(benchmark_dir, tmp_path / "one"))
    text = _visible(page)
    assert "±" not in text and "over seeds" not in text
    assert "test accuracy % (seed 1)" in text and "seed 1; dashed" in text
    assert "seconds per run (fitting and evaluation, seed 1)" in text
    several = _visible(benchmark_report(benchmark_dir))
    assert "test accuracy % (mean ± std over seeds 1, 2)" in several and " ± " in several
    # which std: with two seeds the sample std is 1.41 times the population one, so the page says which
    assert "± is the sample standard deviation over the seeds (divided by n − 1" in several
    assert "standard deviation" not in text


def test_a_benchmark_reports_std_is_the_sample_std_of_the_rows():
    """The page says the ± is the sample std (n − 1); the figure it shows is that, from the confusion matrices."""
    import statistics

    from vipcli.metrics import row_figure
    from vipcli.report.benchmark import _mean_std

    rows = [{"test_confusion_matrix": [[93, 57], [24, 126]]}, {"test_confusion_matrix": [[88, 62], [8, 142]]}]
    figures = [row_figure(r, "test_accuracy") for r in rows]  # 73.0 and 76.666...
    assert _mean_std(figures) == f"74.83 ± {statistics.stdev([73.0, 230 / 3]):.2f}" == "74.83 ± 2.59"


def test_each_metric_table_marks_the_best_mean_of_each_column_and_says_so():
    """A reader had to compare "74.83 ± 2.59" cells by eye to see which method won each column; then the best
    were in bold, which a screen reader does not announce, so the note "In bold: ..." named nothing to one."""
    from vipcli.report.benchmark import _tables

    def row(method, shots, seed, accuracy, auroc=None):
        return {"method": method, "shots": shots, "seed": seed, "test_accuracy": accuracy, "test_macro_f1": 50.0,
                "test_auroc": auroc, "fit_s": 1.0}

    rows = [row("zeroshot", 0, 1, 70.0), row("zeroshot", 0, 2, 70.0),  # learns nothing: same in every column
            row("coop", 1, 1, 60.0), row("coop", 1, 2, 62.0), row("coop", 4, 1, 80.0), row("coop", 4, 2, 82.0),
            row("vip", 1, 1, 64.0), row("vip", 1, 2, 66.0), row("vip", 4, 1, 79.0), row("vip", 4, 2, 79.0)]
    accuracy, balanced, f1, auroc, seconds = re.split(r"<caption>", _tables(rows))[1:6]
    assert re.findall(r"<strong>([^<]*)</strong>", accuracy) == ["70.00 ± 0.00", "81.00 ± 1.41"]  # zeroshot, coop
    assert len(re.findall(r"<strong>", f1)) == 6  # all tied at 50: each of a tie
    assert "<strong>" not in auroc and "<strong>" not in seconds  # no figures to compare; seconds: not a contest
    assert "<strong>" not in balanced  # rows without it (nor a confusion matrix to compute it from)
    # a screen reader does not say that a cell is bold: the note under the table names them
    assert "In bold: the highest mean in each column (each of a tie): zeroshot at 1-shot, coop at 4-shot. " in accuracy
    assert "(each of a tie): zeroshot and coop and vip at 1-shot, zeroshot and coop and vip at 4-shot. " in f1
    assert "In bold" not in auroc  # no cell in bold: no line that says there are
    one_seed = _tables([r for r in rows if r["seed"] == 1])
    assert "In bold: the highest figure in each column" in one_seed and "spread over" not in one_seed


def test_a_row_that_finds_no_test_image_of_a_class_never_leads_the_accuracy_table(capsys):
    """On ISIC's 117 melanomas to 393 nevi, random-weight zero-shot calls every image nevus and led the accuracy
    table in bold with 77.06%, in the report and on the console. Such cells are not marked now, and the note
    says why; the other tables (which such a row brings down) mark as before."""
    import io
    from pathlib import Path
    from types import SimpleNamespace
    from unittest.mock import patch

    from rich.console import Console

    from vipcli.cli import benchmark as cli_benchmark
    from vipcli.report.benchmark import _tables
    from vipcli.sweep_folder import summarize

    def row(method, shots, seed, matrix):
        found = sum(matrix[i][i] for i in range(2)) / sum(map(sum, matrix)) * 100
        return {"method": method, "shots": shots, "seed": seed, "test_accuracy": found, "test_macro_f1": 50.0,
                "test_confusion_matrix": matrix, "fit_s": 1.0}

    nevus_only, learned = [[0, 117], [0, 393]], [[80, 37], [90, 303]]  # 77.06% and 75.10%
    rows = [row("zeroshot", 0, seed, nevus_only) for seed in (1, 2)] + [
        row("vip", shots, seed, learned) for shots in (1, 4) for seed in (1, 2)]
    accuracy = re.split(r"<caption>", _tables(rows, ["melanoma", "nevus"]))[1]
    assert re.findall(r"<strong>([^<]*)</strong>", accuracy) == ["75.10 ± 0.00", "75.10 ± 0.00"]  # vip, not zeroshot
    assert ("vip at 1-shot, vip at 4-shot. A lead smaller than the spread over the seeds may be chance. Not in bold, "
            "whatever their figure: cells whose rows find no test image of a class") in accuracy
    out = Console(file=io.StringIO(), width=200, color_system=None)
    result = SimpleNamespace(rows=rows, summary=summarize(rows), out=Path("sweep"), trained=6, skipped=0,
                             encoded_views=0, class_names=["melanoma", "nevus"])
    with patch.object(cli_benchmark.console, "stdout", lambda: out):
        cli_benchmark.print_benchmark(result, as_json=False)
    [note] = [line for line in out.file.getvalue().splitlines() if line.startswith("In bold: ")][:1]
    assert note.startswith("In bold: the highest mean in each column (each of a tie): vip at 1-shot, vip at 4-shot.")
    assert "Not in bold, whatever their figure" in note


def _unbalanced_rows():
    """Benchmark rows on ISIC's 117 melanomas and 393 nevi: zero-shot calls every image nevus (77.06%), vip learns."""
    def row(method, shots, seed, matrix):
        found = sum(matrix[i][i] for i in range(2)) / sum(map(sum, matrix)) * 100
        return {"method": method, "shots": shots, "seed": seed, "test_accuracy": found, "test_macro_f1": 50.0,
                "test_confusion_matrix": matrix, "fit_s": 1.0}

    return [row("zeroshot", 0, seed, [[0, 117], [0, 393]]) for seed in (1, 2)] + [
        row("vip", shots, seed, [[80, 37], [90, 303]]) for shots in (1, 4) for seed in (1, 2)]


def _row_of_pixels(png, y: float) -> np.ndarray:
    """The pixels of the row of `png` at `y` (matplotlib's display y: from the bottom), as RGB integers."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    return rgb[rgb.shape[0] - 1 - round(y)]


def test_the_shots_plot_draws_what_calling_every_image_the_largest_class_scores(tmp_path):
    """The caption said that calling every test image nevus scores 77.06% on ISIC, but the plot had no line for it:
    a method's line near 77% read as good. A dotted line now marks it, named in the legend."""
    from matplotlib.colors import to_rgb

    from vipcli.plots import LARGEST_CLASS_COLOR, draw_shots

    figure = draw_shots(_unbalanced_rows(), class_names=["melanoma", "nevus"])
    axes = figure.axes[0]
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "every image called nevus: 77.06%" in legend
    png = tmp_path / "shots.png"
    figure.savefig(png)
    ink = np.array([round(255 * c) for c in to_rgb(LARGEST_CLASS_COLOR)])
    left, right = (axes.transAxes.transform((x, 0))[0] for x in (0, 1))
    on_line = [int((np.abs(_row_of_pixels(png, axes.transData.transform((0, 77.06))[1] + dy)[round(left):round(right)]
                           - ink).max(axis=1) <= 40).sum()) for dy in (-1, 0, 1)]
    assert max(on_line) > 0.3 * (right - left), on_line  # dotted, across the plot, at 77.06
    balanced = draw_shots([{**r, "test_confusion_matrix": [[100, 50], [40, 110]]} for r in _unbalanced_rows()],
                          class_names=["melanoma", "nevus"])  # 150 and 150 test images: no such line
    assert not any("called" in t.get_text() for t in balanced.legends[0].get_texts())


def test_the_benchmark_report_draws_and_explains_the_largest_class_line(benchmark_dir, tmp_path):
    """Its caption and alt text say what the dotted line is; balanced test images have none."""
    from vipcli.report.benchmark import benchmark_report

    assert "dotted" not in benchmark_report(benchmark_dir)  # the lesion world: 150 and 150 test images
    folder = shutil.copytree(benchmark_dir, tmp_path / "isic-like")
    document = json.loads((folder / "results.json").read_text())
    document["rows"], document["class_names"] = _unbalanced_rows(), ["melanoma", "nevus"]
    (folder / "results.json").write_text(json.dumps(document))
    markup = benchmark_report(folder)
    assert ("dotted: calling every test image nevus, the largest class, with no model (77.06%): an accuracy means "
            "something only above it") in _visible(markup)
    assert re.search(r'aria-label="[^"]*; a dotted line marks calling every test image nevus, the largest class: '
                     r'77\.06%\.', markup)  # the alt text
    assert ">every image called nevus: 77.06%</text>" in markup  # the legend, in the figure


def test_the_missed_class_note_points_to_the_balanced_accuracy_table_not_to_a_file(benchmark_dir, tmp_path):
    """The report's note said 'each row's test_confusion_matrix is in results.csv', to a reader of the page, and
    pointed to the macro-F1 table where the balanced accuracy table shows a class never found plainly."""
    from vipcli.metrics import missed_rows_warning
    from vipcli.report.benchmark import benchmark_report

    folder = shutil.copytree(benchmark_dir, tmp_path / "isic-like")
    document = json.loads((folder / "results.json").read_text())
    document["rows"], document["class_names"] = _unbalanced_rows(), ["melanoma", "nevus"]
    (folder / "results.json").write_text(json.dumps(document))
    page = _visible(benchmark_report(folder))
    note = page[page.index("2 rows find no test image of a class"):][:400]
    assert "results.csv" not in note and "macro-F1" not in note
    assert "(the test balanced accuracy table below shows it: there a class never found counts 0" in note
    assert "test balanced accuracy %" in page  # the table it points to is there
    console = missed_rows_warning(_unbalanced_rows(), ["melanoma", "nevus"])  # the sweep's warning, on stderr
    assert console.endswith("(the balanced accuracy table shows it; each row's test_confusion_matrix is in "
                            "results.csv)")
    even = [{**r, "test_confusion_matrix": [[0, 150], [0, 150]]} for r in _unbalanced_rows()]
    assert missed_rows_warning(even, ["melanoma", "nevus"]).endswith(  # the console prints no balanced table then
        "(the macro-F1 table shows it; each row's test_confusion_matrix is in results.csv)")


def test_the_shots_caption_explains_dashed_lines_only_when_the_plot_has_some(benchmark_dir, tmp_path):
    from vipcli.report.benchmark import benchmark_report

    assert "over seeds 1, 2; dashed: methods that learn nothing" in _visible(benchmark_report(benchmark_dir))
    folder = shutil.copytree(benchmark_dir, tmp_path / "trained-only")
    document = json.loads((folder / "results.json").read_text())
    document["rows"] = [r for r in document["rows"] if int(r["shots"]) > 0]  # no zero-shot method, no dashed line
    (folder / "results.json").write_text(json.dumps(document))
    page = benchmark_report(folder)
    assert "mean ± std over seeds 1, 2" in _visible(page) and "dashed" not in page  # nor in the plot's alt text
    top = max(int(r["shots"]) for r in document["rows"])
    document["rows"] = [{**r, "shots": "all"} if int(r["shots"]) == top else r for r in document["rows"]]
    (folder / "results.json").write_text(json.dumps(document))  # a sweep with --shots ...,all: no crash either
    assert "dashed" not in benchmark_report(folder)


def test_shots_plot_says_seed_with_one_seed():
    from vipcli.plots import draw_shots

    rows = [{"method": "vip", "shots": s, "seed": 3, "test_accuracy": 50.0 + s} for s in (1, 2)]
    assert draw_shots(rows).axes[0].get_ylabel() == "test accuracy % (seed 3)"
    rows += [{**r, "seed": 4} for r in rows]
    assert draw_shots(rows).axes[0].get_ylabel() == "test accuracy % (mean ± std over seeds 3, 4)"



def test_a_report_of_a_sweep_extended_for_some_cells_gives_each_cells_number_of_seeds(benchmark_dir, tmp_path):
    """A sweep of seeds 1-2, extended with `--methods vip --shots 1 --seeds 3,4` and a one-seed check of coop at
    4 shots: the report titled every table "mean ± std over seeds 1, 2, 3, 4", so vip's 1-shot cell (4 seeds)
    read like its others (2 seeds) and coop's single run like a mean; its settings named only the last command's
    grid (coop, 4 shots, seed 1). Each cell now says its n, and the settings list what the tables hold."""
    from vipcli.plots import draw_shots
    from vipcli.report.benchmark import benchmark_report

    folder = shutil.copytree(benchmark_dir, tmp_path / "extended")
    document = json.loads((folder / "results.json").read_text())
    rows = document["rows"]
    vip_one = [r for r in rows if r["method"] == "vip" and str(r["shots"]) == "1"]
    coop_two = next(r for r in rows if r["method"] == "coop" and str(r["shots"]) == "2" and int(r["seed"]) == 1)
    coop_four = {**coop_two, "shots": 4, "shots_used": 4}  # as a 4-shot row records it (else it reads as capped)
    document["rows"] = rows + [{**r, "seed": int(r["seed"]) + 2} for r in vip_one] + [coop_four]
    document["config"]["last_sweep"] = {"methods": ["coop"], "shots": [4], "seeds": [1]}
    (folder / "results.json").write_text(json.dumps(document))
    text = _visible(benchmark_report(folder))
    assert "test accuracy % (mean ± std over each cell's seeds, of seeds 1, 2, 3, 4)" in text
    cells = re.search(r"test accuracy % \(mean[^)]*\) method 1-shot 2-shot 4-shot (.*?) In bold", text).group(1)
    assert re.search(r"vip \d+\.\d\d ± \d+\.\d\d \(n=4\) \d+\.\d\d ± \d+\.\d\d \(n=2\) -", cells), cells
    assert re.search(r"coop \d+\.\d\d ± \d+\.\d\d \(n=2\) \d+\.\d\d ± \d+\.\d\d \(n=2\) \d+\.\d\d \(n=1\)",
                     cells), cells
    assert "n is the number of seeds behind each cell" in text
    assert "methods symptom-zeroshot, coop, vip shots 1, 2, 4 seeds 1, 2, 3, 4" in text
    assert "few-shot at 1, 2, 4 shots" in text  # the schedule of every stored shot count
    assert draw_shots(document["rows"]).axes[0].get_ylabel() == (
        "test accuracy % (mean ± std over each point's seeds, of seeds 1, 2, 3, 4)")
    even = _visible(benchmark_report(benchmark_dir))  # every cell of seeds 1, 2: no n, as before
    assert "(n=" not in even and "test accuracy % (mean ± std over seeds 1, 2)" in even

# --- #6: random weights carry a banner ---------------------------------------------------------------

@pytest.mark.parametrize("record, random", [
    ({"pretrained_option": "none", "pretrained": "none"}, True),  # a run of this vip
    ({"pretrained": "none"}, True),  # a 0.1.0 run's flat header
    ({"config": {"backbone": {"id": "clip", "pretrained": "None "}}}, True),
    ({"pretrained": None, "backbone_describe": {"pretrained": "none"}}, True),  # a benchmark's defaults
    ({"backbone_describe": {"weights_sha256": "random:abc"}}, True),
    ({"backbone_describe": {"pretrained": "none", "weights": "random (seed 0)"}}, True),
    ({"pretrained_option": "", "pretrained": "shipped", "backbone_describe": {"pretrained": "shipped"}}, False),
    ({"pretrained": "openai", "backbone_describe": {"weights": "openai"}}, False),
    ({}, False),
])
def test_random_weights_are_recognised_in_every_stored_form(record, random):
    from vipcli.report.notices import random_weights, random_weights_banner

    assert random_weights(record) is random
    assert ("timing or plumbing test" in random_weights_banner(record)) is random


@pytest.mark.parametrize("record, why", [
    ({"pretrained_option": "none", "pretrained": "none"}, "--pretrained none"),
    ({"pretrained": "none"}, "--pretrained none"),  # a 0.1.0 run's header, a benchmark's --pretrained none
    # a plugin whose weights are random unless it is given some (vip-plugin-example): its run said "--pretrained
    # none", an option nobody passed
    ({"pretrained_option": "", "pretrained": "none", "backbone_describe": {"pretrained": "none"}},
     "the backbone's default"),
    ({"pretrained": None, "backbone_describe": {"pretrained": "none"}}, "the backbone's default"),
])
def test_the_random_weights_banner_says_whether_the_option_or_the_backbone_chose_them(record, why):
    from vipcli.report.notices import random_weights_banner

    assert f"<b>Random weights ({why}).</b>" in random_weights_banner(record)


def test_reports_of_random_weights_carry_a_banner_at_the_top(cli, lesion_run, benchmark_dir, tmp_path):
    from vipcli.report.benchmark import benchmark_report

    data, _ = lesion_run
    random_run = tmp_path / "random"
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--pretrained", "none", "--shots", "2",
                       "--epochs", "1", "--views", "1", "--workers", "0", "--out", random_run)
    assert code == 0, err
    assert cli("report", random_run, "--workers", "0", "--device", "cpu", "--gallery", "2")[0] == 0
    page = (random_run / "report.html").read_text()
    banner = page.find('class="banner"')
    assert 0 < banner < page.find("<h2>") and "mean nothing except as a timing or plumbing test" in _visible(page)
    image = next((data / "test" / "nevus").iterdir())
    assert cli("predict", image, "--model", random_run, "--report", tmp_path / "p.html", "--workers", "0")[0] == 0
    assert 'class="banner"' in (tmp_path / "p.html").read_text()
    stated = benchmark_report(_one_seed_benchmark(benchmark_dir, tmp_path / "b", pretrained="none"))
    assert 0 < stated.find('class="banner"') < stated.find("<h2>")
    assert 'class="banner"' not in benchmark_report(benchmark_dir)  # the shipped toy weights


# --- #7: coverage per class ---------------------------------------------------------------------------

PROBABILITIES = np.array([[0.9, 0.1], [0.3, 0.7], [0.3, 0.7], [0.45, 0.55], [0.8, 0.2]])
LABELS = [0, 0, 1, 1, 0]  # with cutoff 0.5 the sets are {a}, {b}, {b}, {b}, {a}: a is held 2/3, b 2/2


def test_per_class_coverage_counts_the_sets_that_hold_each_class():
    from vipcli.report.run import per_class_coverage, under_covered

    per_class = per_class_coverage(PROBABILITIES, LABELS, 0.5, ["a", "b"])
    assert per_class == [("a", 2, 3), ("b", 2, 2)]
    assert under_covered(per_class, 0.9) == [("a", 2, 3)]  # 66.7% is 23 points under 90%
    assert under_covered(per_class, 0.75) == []  # 8 points under: within the margin
    assert per_class_coverage(np.zeros((0, 2)), [], 0.5, ["a", "b"]) == [("a", 0, 0), ("b", 0, 0)]


def test_prediction_set_table_shows_each_class_and_notes_a_badly_covered_one():
    from vipcli.report.run import _conformal

    row = {"coverage": 0.9, "threshold": 0.5, "empirical_coverage": 0.8, "mean_set_size": 1.0, "empty_sets": 0,
           "expected_coverage": 0.9, "coverage_sd": 0.05}
    run = {"calibration": object(), "class_names": ["a", "b"], "metrics": {
        "test": {"n": 5}, "conformal": {"score": "LAC", "held_out": "val", "n_held_out": 20, "max_coverage": 0.95,
                                        "test": [row, {"coverage": 0.99, "error": "too few"}]}}}
    text = _visible(_conformal(run, PROBABILITIES, LABELS))
    assert "Test coverage % of each class, by coverage asked class 90% 99%" in text  # a coverage a column
    assert "a 66.67 (2/3) - b 100.00 (2/2) -" in text  # a class a row; 99% cannot be asked of 20 images
    assert "At coverage 99%: too few." in text
    assert "at coverage 90%, a: 66.67% (2 of its 3 test images)" in text
    assert "(more than 10 percentage points below)" in text  # as the table: coverage in percent
    assert "not a promise for each class" in text
    unknown = _visible(_conformal(run))  # no test images predicted: no per-class figures, no note
    assert "far below for" not in unknown and "(2/3)" not in unknown


def test_highest_coverage_in_the_report_is_one_vip_predict_accepts():
    """26 held-out images promise at most 26/27 = 0.96296: the report says 0.962, as the refusal of
    --coverage 0.963 does, never the 0.963 a floor of the rounded max_coverage gave."""
    from vipcli.conformal import askable_coverage, threshold
    from vipcli.errors import VipError
    from vipcli.report.run import _conformal

    row = {"coverage": 0.9, "threshold": 0.5, "empirical_coverage": 0.8, "mean_set_size": 1.0, "empty_sets": 0,
           "expected_coverage": 0.9, "coverage_sd": 0.05}
    run = {"calibration": object(), "class_names": ["a", "b"], "metrics": {
        "test": {"n": 5}, "conformal": {"score": "LAC", "held_out": "val", "n_held_out": 26,
                                        "max_coverage": round(26 / 27, 4), "test": [row]}}}
    assert "can promise is 96.2% (--coverage 0.962)." in _visible(_conformal(run))
    scores = sorted(i / 26 for i in range(26))
    with pytest.raises(VipError, match=r"--coverage 0.962 or less"):
        threshold(scores, 0.963)
    threshold(scores, askable_coverage(26))  # accepted
    for n in range(1, 999):  # the figure shown is always accepted, and the next one up never is
        shown = askable_coverage(n)
        threshold(list(range(n)), shown)
        with pytest.raises(VipError):
            threshold(list(range(n)), round(shown + 0.001, 3))


def test_calibration_table_shows_the_temperature_as_its_text_does():
    """T = 1.5993 was 'T = 1.599' in the sentence and 'after (T = 1.6)' in the table below it."""
    from vipcli.report.run import _calibration

    scores = {"ece": 0.07, "nll": 0.48, "brier": 0.31}
    block = {"temperature": 1.5993, "held_out": "val", "n_held_out": 64, "ece_bins": 15,
             "test": {"n": 0, "before": scores, "after": scores}, "reliability": {"before": [], "after": []}}
    text = _visible(_calibration({"calibration": object(), "metrics": {"calibration": block}, "data": "d",
                                  "backbone": "b"}, None, []))
    assert "T = 1.599 ," in text and "after (T = 1.599)" in text and "T = 1.6)" not in text
    # the ECE is a weighted mean over its bins (by their images), not a plain mean of 15 gaps
    assert "averaged over 15 equal-width confidence bins, each weighted by its share of the images" in text


def test_reliability_diagram_shows_its_caption_and_its_alt_begins_with_the_title():
    """The caption saying what the numbers at the bars' feet are was passed as the image's alt text,
    so no reader saw it; the figure showed those counts unlabelled."""
    from vipcli.report.run import _calibration

    scores = {"ece": 0.07, "nll": 0.48, "brier": 0.31}
    bins = [{"lower": 0.5, "upper": 0.75, "count": 3, "confidence": 0.6, "accuracy": 0.67},
            {"lower": 0.75, "upper": 1.0, "count": 2, "confidence": 0.9, "accuracy": 1.0}]
    block = {"temperature": 1.5, "held_out": "val", "n_held_out": 64, "ece_bins": 2,
             "test": {"n": 5, "before": scores, "after": scores}, "reliability": {"before": bins, "after": bins}}
    page = _calibration({"calibration": object(), "metrics": {"calibration": block}, "data": "d", "backbone": "b",
                         "color": "#d55e00"}, None, [])
    caption = re.search(r"<figcaption>(.*?)</figcaption>", page)
    assert caption and "the number at the foot of a bar: its test images" in caption.group(1)
    assert re.search(r'<figure><div class="scroll" [^>]*><svg role="img" aria-label="reliability on test: d, b\. Bar chart [^"]*" ', page)


# --- #11: rendering ------------------------------------------------------------------------------------

def test_no_negative_zero_in_numbers():
    from vipcli.report.gallery import GalleryItem, gallery_html
    from vipcli.report.html import number
    from vipcli.report.run import _fmt

    assert number(-0.0002, 3) == "0.000" and number(-0.0002, 3, signed=True) == "0.000"
    assert number(0.25, 3, signed=True) == "+0.250" and number(-0.25, 3, signed=True) == "-0.250"
    assert _fmt(-0.00001, 4) == "0.0000" and _fmt(None) == "-"
    item = GalleryItem("x.png", None, "a", 0.5, None,
                       [{"symptom": "s", "similarity": -0.0003, "weight": 0.2, "contribution": 0.0004}])
    page = gallery_html([item])
    assert not NEGATIVE_ZERO.search(page) and "similarity 0.000" in page and "contribution 0.000" in page


def test_file_names_break_at_separators_never_inside_the_extension():
    from vipcli.report.html import file_name

    shown = file_name("NORMAL/NORMAL2-IM-0198-0001.jpeg")
    assert shown.endswith('<span class="nowrap">0001.jpeg</span>') and "NORMAL/<wbr>" in shown
    assert re.sub(r"<[^>]+>", "", shown) == "NORMAL/NORMAL2-IM-0198-0001.jpeg"
    long = "scans/" + "patient-0042_" * 12 + "x.png"  # 163 characters: shown whole, wrapping, never cut
    assert re.sub(r"<[^>]+>", "", file_name(long)) == long
    assert file_name("README") == "README" and "nowrap" not in file_name("dir.d/file")


def test_confusion_matrix_title_fits_its_figure():
    from vipcli.report.figures import draw_confusion_matrix

    title = "test confusion matrix: chest_xray, clip small-clip.json#4dd1abc484f9121f"
    figure = draw_confusion_matrix([[10, 2], [3, 12]], ["NORMAL", "PNEUMONIA"], "#D55E00", title)
    figure.canvas.draw()
    box = figure.axes[0].title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width
    assert figure.axes[0].get_title().replace("\n", " ") == title


def test_merge_weight_labels_stay_clear_of_the_uniform_line():
    from vipcli.report.figures import draw_merge_weights

    weights = {"melanoma": [("asymmetric", 0.253), ("colours", 0.239), ("blurry edges", 0.247), ("dots", 0.261)],
               "nevus": [("symmetric", 0.25), ("clear edges", 0.26), ("one colour", 0.237), ("no redness", 0.251)]}
    figure = draw_merge_weights(weights, "#D55E00", "merge weights per class: data, toy")
    figure.canvas.draw()
    for axes in figure.axes:
        line = axes.transData.transform((0.25, 0))[0]
        assert len(axes.texts) == 4
        for label in axes.texts:
            box = label.get_window_extent()
            assert box.x0 > line or box.x1 < line, f"the dashed line runs through {label.get_text()}"


def _named_twice(page: str) -> list[tuple[str, str]]:
    """Each heading of `page` whose words the name of the table or figure right under it says again, as
    (heading, name): most of the heading's words (numbers aside) recur in the name."""
    from html import unescape

    parts = re.findall(r'<h[23]>(.*?)</h[23]>|<caption>(.*?)</caption>|aria-label="([^"]*)"', page, re.S)
    def words(said: str) -> set[str]:
        return set(re.findall(r"[a-z][a-z-]*", unescape(said).lower())) - {"and", "of", "the", "by", "per", "each"}

    found = []
    for (heading, _, _), (_, caption, label) in zip(parts, parts[1:]):
        name = caption or label
        if heading and name and len(words(heading) & words(name)) > len(words(heading)) / 2:
            found.append((heading, name[:60]))
    return found


def test_a_benchmark_reports_headings_do_not_repeat_the_names_of_the_tables_and_figures_under_them(benchmark_dir):
    """The benchmark report said each thing twice or three times: "Test accuracy by shots" over the figure
    titled "test accuracy by shots", and "Per-method tables", then "test accuracy % (seed 1)" over the table
    named "test accuracy % of each method by shots". Its results are now one section, each table and figure
    named once, by its caption or title."""
    from vipcli.report.benchmark import benchmark_report

    page = benchmark_report(benchmark_dir)
    assert _named_twice(page) == [] and "<h3>" not in page
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Settings and data", "Results"]
    captions = re.findall(r"<caption>(.*?)</caption>", page)
    assert captions[1:] == ["Images per class and split", "test accuracy % (mean ± std over seeds 1, 2)",
                            "test balanced accuracy % (mean ± std over seeds 1, 2)",
                            "test macro-F1 % (mean ± std over seeds 1, 2)", "test AUROC % (mean ± std over seeds 1, 2)",
                            "seconds per run (fitting and evaluation, mean over seeds)"]
    assert _named_twice("<h2>Test accuracy by shots</h2><figure><svg aria-label=\"test accuracy by shots: d, toy\">")


def test_benchmark_seconds_say_that_rows_trained_together_share_their_time(benchmark_dir):
    from vipcli.report.benchmark import benchmark_report

    text = _visible(benchmark_report(benchmark_dir))
    after = text[text.index("seconds per run"):]
    assert "equal share of its group's training time plus its own evaluation" in after and "--no-batch" in after


def test_rendered_reports_have_no_negative_zero(cli, lesion_run, tmp_path):
    _, run = lesion_run
    assert cli("report", run, "--out", tmp_path / "r.html", "--workers", "0", "--device", "cpu")[0] == 0
    page = (tmp_path / "r.html").read_text()
    assert not NEGATIVE_ZERO.search(_visible(page))
    assert "per class" in _visible(page)


# --- printing ------------------------------------------------------------------------------------------

PRINT_PROBE = """<script>window.addEventListener("load", function () {
  var cut = Array.prototype.filter.call(document.querySelectorAll(".table"), function (box) {
    return box.scrollWidth > box.clientWidth + 1;
  }).length;
  var out = document.createElement("pre");
  out.id = "vip-print";
  out.textContent = JSON.stringify({cut: cut, width: document.documentElement.scrollWidth, viewport: window.innerWidth});
  document.body.appendChild(out);
});</script>"""


def _as_printed(page: str) -> str:
    """`page` with its print rules applied on screen, and a probe that counts the tables wider than their box."""
    return page.replace("@media print", "@media all", 1).replace("<head>", "<head>" + PRINT_PROBE, 1)


@test_report.needs_browser
def test_printed_prediction_set_table_keeps_every_column(tmp_path):
    """Printed, the prediction-set table lost its last columns (empty sets, note): paper cannot scroll
    a table sideways. Its print rules wrap the cells to the width of a page (about 700 CSS px)."""
    from browser import _run, find_browser
    from vipcli.report import html
    from vipcli.report.run import _conformal

    rows = [{"coverage": c, "threshold": 0.5, "empirical_coverage": 0.8, "mean_set_size": 1.0, "empty_sets": 0,
             "expected_coverage": c, "coverage_sd": 0.05} for c in (0.8, 0.9, 0.95)]
    run = {"calibration": object(), "class_names": ["melanoma in situ", "nevus, junctional"], "metrics": {
        "test": {"n": 5}, "conformal": {"score": "LAC", "held_out": "val", "n_held_out": 64, "max_coverage": 0.98,
                                        "test": rows}}}
    page = html.page("vip report: t", "", [html.section("Prediction sets", _conformal(run, PROBABILITIES, LABELS))], "")
    printed = tmp_path / "printed.html"
    printed.write_text(_as_printed(page), encoding="utf-8")
    dumped = _run(find_browser(), tmp_path / "profile", "--window-size=700,1000", "--virtual-time-budget=5000",
                  "--dump-dom", printed.resolve().as_uri())
    from html import unescape

    found = json.loads(unescape(re.search(r'<pre id="vip-print">(.*?)</pre>', dumped.stdout, re.S).group(1)))
    assert found["cut"] == 0 and found["width"] <= found["viewport"], found


def test_printed_reports_keep_each_image_with_its_labels_and_each_heading_with_its_content():
    """Printed, a gallery card could leave its image at the foot of one page and its true class and
    prediction at the top of the next, and a heading could end a page without what it heads. A table could
    leave its caption and header row at the foot of a page (the demo benchmark's "test macro-F1 %") and its rows
    on the next."""
    from vipcli.report.html import STYLE

    rules = STYLE[STYLE.index("@media print"):]
    avoid_inside = re.search(r"^\s*([^{}\n]*)\{\s*break-inside:\s*avoid;", rules, re.M)
    assert avoid_inside and {".card", "figure", ".table"} <= {s.strip() for s in avoid_inside.group(1).split(",")}
    assert re.search(r"h2[^{}]*\{\s*break-after:\s*avoid;", rules)


def test_a_long_file_name_is_shown_whole_and_wraps_with_nothing_only_in_a_tooltip(tmp_path):
    """Names over 80 characters lost their middle to an ellipsis, the full name only in a title tooltip: absent
    on a touch screen, on paper and for most screen readers."""
    from PIL import Image

    from vipcli.report.gallery import GalleryItem, gallery_html
    from vipcli.report.html import STYLE, path

    name = "melanoma/" + "ISIC_0000042_dermoscopy_left_forearm_follow_up_visit_" * 3 + "final.jpg"
    (tmp_path / name).parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / name)
    page = gallery_html([GalleryItem(str(tmp_path / name), None, "melanoma", 0.9, None, None)], root=tmp_path)
    assert name in re.sub(r"<[^>]+>", "", page) and "…" not in page and " title=" not in page
    assert re.search(r"\.name, \.path, footer \{ overflow-wrap: anywhere; \}", STYLE)
    assert path(tmp_path).startswith('<span class="path">') and re.sub(r"<[^>]+>", "", path(tmp_path)) == str(tmp_path)


def test_a_gallery_with_symptoms_says_what_similarity_weight_and_contribution_are():
    """A card of `vip predict --report` read "(similarity +0.258, weight 0.239, contribution +1.402)", and nothing
    on that page said what any of the three numbers was (the run report explains only the merge weight)."""
    from vipcli.report.gallery import gallery_html, gallery_items

    explained = _visible(gallery_html(gallery_items([_prediction([0.5, 0.25])], {}, with_symptoms=True))).replace(" :", ":")
    assert "similarity: how close the image is to the symptom's words, from -1 to +1" in explained
    assert "weight: how much the symptom counts" in explained and "contribution: how much it added" in explained
    assert "the descriptions the image matches best in the backbone's features, not signs found in the image" in explained
    assert explained.index("contribution: how much") < explained.index("symptoms that pushed towards nevus most:")
    for plain in (gallery_items([_prediction([0.5])], {}, with_symptoms=False),  # a method without symptoms
                  gallery_items([_prediction([-0.5])], {}, with_symptoms=True)):  # none pushed the class up
        assert "similarity:" not in _visible(gallery_html(plain))


def test_a_benchmarks_schedule_setting_says_what_each_shot_count_trained_with(benchmark_dir):
    """'schedule: auto' told a reader nothing: the setting names the schedule the shots got, overrides applied."""
    from vipcli.report.benchmark import benchmark_report
    from vipcli.schedule import schedule_words

    text = _visible(benchmark_report(benchmark_dir))
    assert "schedule auto: few-shot at 1, 2 shots (2 epochs, 4 images a step, learning rate 0.002)" in text
    assert schedule_words("auto", [16, "all"]) == (
        "auto: few-shot at 16 shots (100 epochs, 4 images a step, learning rate 0.002); "
        "the paper's with all images (50 epochs, 32 images a step, learning rate 0.002)")
    assert schedule_words("a schedule of a later vip", [1]) == "a schedule of a later vip"


@test_report.needs_browser
def test_hostile_class_names_and_symptoms_are_shown_as_text_and_stay_inside_their_card(tmp_path):
    """Class folders, file names and symptoms holding markup (`<script>`, `onerror=`, `javascript:`, quotes) are
    shown as the text they are, nothing in them runs, and nothing reaches outside the page. A symptom or class
    name with no space in it ran past its card's border (by 13 px at 1200 px, 55 px on a phone); it now wraps."""
    from PIL import Image

    from browser import render
    from vipcli.report.gallery import GalleryItem, gallery_html
    from vipcli.report.html import page

    hostile = "<script>document.title='ran'</script>mel\"o'ma"
    other = "névus<img src=x onerror=\"document.title='ran'\"><style>body{display:none}</style>"
    image = tmp_path / "<b onmouseover=alert(1)>" / "a'\"b.png"
    image.parent.mkdir()
    Image.new("RGB", (32, 32), (200, 120, 90)).save(image)
    symptom = '<a href="javascript:alert(7)">click</a> blue-white_veil_with_regression_structures'
    items = [GalleryItem(str(image), truth, label, 0.7, [label], [{"symptom": symptom, "similarity": 0.3,
                                                                   "weight": 0.5, "contribution": 1.2}])
             for truth, label in ((hostile, other), (other, other), (hostile, hostile))]
    report = tmp_path / "report.html"
    report.write_text(page("vip report: <i>x</i>", "sub", [gallery_html(items, root=tmp_path)], "footer"),
                      encoding="utf-8")
    for width in (1200, 390):
        result = render(report, tmp_path / f"shot-{width}", width=width)
        assert result["title"] == "vip report: <i>x</i>" and not result["scripts"] and not result["handlers"]
        assert not result["errors"] and not result["console"], (result["errors"], result["console"])
        assert hostile in result["text"] and other in result["text"] and symptom in result["text"].replace("\n", "")
        assert not result["overflowing"], result["overflowing"]
        assert result["width"] <= result["viewport"]


# --- figures never read as a bound they are not ---------------------------------------------------------


def test_a_probability_under_one_reads_under_one_in_the_terminal_the_files_and_the_report(capsys):
    """0.99996 was 1.000 on the terminal, 1.0 in --json and predictions files, 100.0% on a card: a certainty
    the model did not compute, beside an empty set where a class needs a probability of exactly 1."""
    from vipcli.cli.predict import print_predictions
    from vipcli.report.gallery import GalleryItem, _card

    sure = Prediction("x.png", "a", 0.99996, {"a": 0.99996, "b": 0.00004}, prediction_set=[])
    record = sure.record(explain=False)
    assert record["probability"] == 0.9999 and record["probabilities"] == {"a": 0.9999, "b": 0.0001}
    certain = Prediction("y.png", "a", 1.0, {"a": 1.0, "b": 0.0}, prediction_set=["a"])
    assert certain.record(explain=False)["probabilities"] == {"a": 1.0, "b": 0.0}  # exactly: as it is
    print_predictions([sure, certain], explain=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["x.png", "a", "0.999", "(a", "0.999", "b", "0.001)", "set", "{}"], lines
    assert lines[1].split() == ["y.png", "a", "1.000", "(a", "1.000", "b", "0.000)", "set", "{a}"], lines
    card = _visible(_card(GalleryItem("x.png", None, "a", 0.99996, [], None), None))
    assert "(probability 99.9%)" in card, card
    assert "(probability 100.0%)" in _visible(_card(GalleryItem("y.png", None, "a", 1.0, ["a"], None), None))
    assert "(probability 73.5%)" in _visible(_card(GalleryItem("z.png", None, "a", 0.73456, None, None), None))


def test_the_prediction_set_table_shows_the_stored_threshold_and_the_asked_coverage_exactly():
    """The probability a class needs was rounded to two decimals: 99.996% (threshold 0.00004) read 100.00, as if
    only a certain class were in a set, and 46.2851% read 46.29; --coverage 0.99999 read 'coverage 100%'."""
    from vipcli.report.run import _conformal

    def row(coverage, cutoff, covered):
        return {"coverage": coverage, "threshold": cutoff, "empirical_coverage": covered, "mean_set_size": 1.0,
                "empty_sets": 0, "expected_coverage": 0.9, "coverage_sd": 0.05}

    run = {"calibration": object(), "class_names": ["a", "b"], "metrics": {
        "test": {"n": 30000}, "conformal": {"score": "LAC", "held_out": "val", "n_held_out": 200000,
                                            "max_coverage": 0.99999, "test": [
                                                row(0.8, 0.537149, 0.8), row(0.9, 0.5, 0.9),
                                                row(0.99999, 0.00004, 0.99997)]}}}
    rows = [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", found)
            for found in re.findall(r"<tr>(.*?)</tr>", _conformal(run), re.S)]  # a coverage asked a column
    assert rows[0] == ["coverage asked", "80%", "90%", "99.999%"], rows
    assert rows[1] == ["threshold %", "46.2851", "50.00", "99.996"], rows
    assert rows[3] == ["test coverage %", "80.00", "90.00", "99.99"], rows  # 99.997%: not 100.00


def _scores_run() -> dict:
    """What a run report's metrics section reads of a run: 3 melanomas to 9 nevi on test, its val block as an
    earlier vip stored it (no balanced accuracy)."""
    return {"class_names": ["melanoma", "nevus"],
            "metrics": {"val": {"n": 8, "accuracy": 87.5, "macro_f1": 87.3, "auroc": 93.75,
                                "confusion_matrix": [[3, 1], [0, 4]]},
                        "test": {"n": 12, "accuracy": 83.33, "balanced_accuracy": 66.67, "macro_f1": 72.94,
                                 "auroc": None, "confusion_matrix": [[1, 2], [0, 9]]}}}


def test_the_scores_table_is_a_score_a_row_and_a_split_a_column():
    """Read by rows, the scores table gives each score on val and test; balanced accuracy of a run of an earlier vip
    is computed from its matrix, a figure that cannot be had is '-'."""
    from test_balanced_accuracy import _table
    from vipcli.report.run import _metrics

    scores = _table(_metrics(_scores_run()), "Scores on each split")
    assert scores == {"score": ["val", "test"], "images": ["8", "12"], "accuracy %": ["87.50", "83.33"],
                      "balanced accuracy %": ["87.50", "66.67"], "macro-F1 %": ["87.30", "72.94"],
                      "AUROC %": ["93.75", "-"]}


@test_report.needs_browser
def test_the_scores_table_fits_a_phone_without_scrolling_sideways(tmp_path):
    """A split a row, the scores table had six columns (split, images, accuracy, balanced accuracy, macro-F1, AUROC):
    at 390 px it hid AUROC past the screen's edge, to scroll to. A score a row, it has three and fits, every figure
    in view; at 1200 px too."""
    from browser import render
    from vipcli.report.html import page
    from vipcli.report.run import _metrics

    report = tmp_path / "scores.html"
    report.write_text(page("vip report: run", "sub", [_metrics(_scores_run())], "footer"), encoding="utf-8")
    for width in (390, 1200):
        result = render(report, tmp_path / f"shot-{width}", width=width)
        scores = next(t for t in result["tables"] if t["caption"] == "Scores on each split")
        assert scores["columns"] == 3 and scores["overflow"] <= 0, (width, scores)
        assert result["width"] <= result["viewport"] == width
        assert "AUROC %\t93.75\t-" in result["text"] and "balanced accuracy %\t87.50\t66.67" in result["text"]


def test_a_benchmark_report_names_the_rows_that_find_no_test_image_of_a_class(benchmark_dir, tmp_path):
    """On unbalanced data a row that calls every test image the larger class leads the accuracy table in bold;
    the sweep warned on stderr, while the report, which a reader opens later, said nothing of it."""
    from vipcli.report.benchmark import benchmark_report

    assert "find no test image" not in _visible(benchmark_report(benchmark_dir))  # every row finds every class
    folder = shutil.copytree(benchmark_dir, tmp_path / "missed")
    document = json.loads((folder / "results.json").read_text())
    row = next(r for r in document["rows"] if r["method"] == "symptom-zeroshot" and int(r["seed"]) == 1)
    images = [sum(line) for line in row["test_confusion_matrix"]]
    row["test_confusion_matrix"] = [[0, images[0]], [0, images[1]]]  # every test image called the second class
    (folder / "results.json").write_text(json.dumps(document))
    first = document["class_names"][0]
    assert (f"1 row finds no test image of a class: symptom-zeroshot (seed 1: {first}); its accuracy comes from the other "
            "classes alone") in _visible(benchmark_report(folder))


def test_a_benchmark_report_says_how_many_images_of_each_class_its_figures_are_measured_on(benchmark_dir, tmp_path):
    """A benchmark's page gave test accuracies, bold where they lead, without saying on how many test images, nor
    how they divide among the classes (what accuracy against balanced accuracy turns on): the run's page had its
    images per class and split, the sweep's, the same data, none. It has the table, from split.json, and says what
    its scores are measured on, from the rows' confusion matrices; without split.json the sentence stays."""
    from vipcli.report.benchmark import benchmark_report

    split = json.loads((benchmark_dir / "split.json").read_text())
    names = json.loads((benchmark_dir / "results.json").read_text())["class_names"]
    counts = {part: [sum(int(label) == c for _, label in split[part]) for c in range(len(names))]
              for part in ("train", "val", "test")}
    measured = (f"Every score below is measured on the same {sum(counts['test'])} test images ("
                + ", ".join(f"{n} {name}" for n, name in zip(counts["test"], names)) + ").")
    page = benchmark_report(benchmark_dir)
    rows = re.findall(r"<tr><th scope=\"row\">([^<]*)</th>((?:<td class=\"num\">\d+</td>){3})</tr>",
                      page.split("<caption>Images per class and split</caption>")[1].split("</table>")[0])
    assert [(name, [int(n) for n in re.findall(r"\d+", cells)]) for name, cells in rows] == [
        *((name, [counts[part][c] for part in ("train", "val", "test")]) for c, name in enumerate(names)),
        ("all", [sum(counts[part]) for part in ("train", "val", "test")])]
    assert measured in _visible(page)
    folder = shutil.copytree(benchmark_dir, tmp_path / "no-split")
    (folder / "split.json").unlink()
    bare = _visible(benchmark_report(folder))
    assert "Images per class and split" not in bare and measured in bare


def test_a_run_report_whose_test_images_are_gone_says_there_are_none_to_show(cli, tmp_path):
    """The report of a run whose test images are no longer on disk (a run of vip 0.1.0, copied without its data)
    ended its gallery with "All 0 images are shown."."""
    from pathlib import Path

    run = Path(__file__).parent / "fixtures" / "run-v0.1.0" / "linear-probe"
    out = tmp_path / "gone.html"
    code, _, err = cli("report", run, "--out", out, "--workers", "0", "--device", "cpu")
    assert code == 0, err
    text = _visible(out.read_text())
    assert "All 0 images" not in text and "0 images are shown" not in text
    assert "are no longer on disk" in text and "There are no images to show." in text


def test_option_names_are_kept_whole_without_changing_the_text_a_reader_copies():
    """A page's option names (`--coverage`, `--no-batch`) sit in a span that never wraps (printed, `--coverage 0.9`
    broke as `(-` and `-coverage 0.9`); its text is what it was, and attributes and figures are left alone."""
    from vipcli.report import html

    sections = ['<p title="set --coverage">Prediction sets at coverage 90% (--coverage 0.9; see --no-batch, '
                'a non-trivial ---x)</p>', '<figure><svg viewBox="0 0 9 9"><text>--views 8</text></svg></figure>']
    page = html.page("vip report: r", "", sections, "")
    assert re.sub(r"<[^>]+>", "", page).endswith("90% (--coverage 0.9; see --no-batch, a non-trivial ---x)--views 8\n")
    assert '(<span class="option">--coverage</span> 0.9; see <span class="option">--no-batch</span>, a' in page
    assert 'title="set --coverage"' in page and "<text>--views 8</text>" in page and "---x" in page
    assert re.search(r"\.option \{ white-space: nowrap; \}", page) and ".option {" not in page.split("@media print")[1]


# --- the first screen: the answer, and whether to trust it ----------------------------------------------

AT_CHANCE = [{"class": "nevus", "auroc": 54.19, "p": 0.0842, "p_perfect": 0.0, "auroc_needed": 56.0}]


def test_a_run_report_opens_with_its_test_scores_and_the_notes_that_decide_whether_to_trust_them(cli, lesion_run,
                                                                                                  tmp_path):
    """The toy backbone on ISIC (AUROC 54) gave a page whose first screen was the settings table: the note that its
    figures are no evidence that it tells melanoma from nevus apart came under the metrics, 1,300 px down at a
    laptop's width. The page now opens with a summary, the test scores on how many images of each class, and the
    notes (not shown to beat chance, a class never found) come there, before the settings."""
    import json

    _, run = lesion_run
    copy = shutil.copytree(run, tmp_path / "run")
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["test"]["vs_chance"] = AT_CHANCE
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert cli("report", copy, "--workers", "0", "--device", "cpu", "--gallery", "0")[0] == 0
    text = _visible((copy / "report.html").read_text())
    test, names = metrics["test"], json.loads((copy / "split.json").read_text())["class_names"]
    counts = ", ".join(f"{sum(row)} {name}" for row, name in zip(test["confusion_matrix"], names))
    summary = text.index(f"On the {test['n']} test images ({counts}), which the model was neither trained nor "
                         f"calibrated on: accuracy {test['accuracy']:.2f}%")
    chance = text.index("do not show that the model tells")
    assert summary < chance < text.index("Settings of this run") and text.count("do not show that the model tells") == 1
    assert f"AUROC {test['auroc']:.2f}%" in text[summary:chance]
    (melanoma, missed), (wrong, nevus) = test["confusion_matrix"]  # each class's sensitivity, which accuracy hides
    assert (f"It finds {melanoma} of the {melanoma + missed} melanoma images (sensitivity "
            f"{100 * melanoma / (melanoma + missed):.2f}%) and {nevus} of the {wrong + nevus} nevus images "
            f"({100 * nevus / (wrong + nevus):.2f}%)") in text[summary:chance]


def test_a_benchmark_report_names_the_rows_not_to_trust_before_its_settings(benchmark_dir, tmp_path):
    """The note naming the rows not shown to beat chance came after the settings and the shots plot, below the first
    screen; it now comes first, as the random-weights banner does."""
    from vipcli.report.benchmark import benchmark_report

    folder = shutil.copytree(benchmark_dir, tmp_path / "chance")
    document = json.loads((folder / "results.json").read_text())
    for row in document["rows"]:
        if row["method"] == "symptom-zeroshot":
            row["test_vs_chance"] = AT_CHANCE
    (folder / "results.json").write_text(json.dumps(document))
    text = _visible(benchmark_report(folder))
    note = text.index("do not show on test that their model beats chance: symptom-zeroshot")
    assert note < text.index("Settings of this benchmark") < text.index("test accuracy %")
    # the other rows beat chance on the same images: the backbone is not blamed, and no command is suggested
    assert "so the backbone tells these classes apart" in text and "`" not in text
    assert "results.json" not in text[note:text.index("Settings of this benchmark")]  # no file a reader must open
    for row in document["rows"]:  # every row at chance: the commands it names are set as code, not shown between
        row["test_vs_chance"] = AT_CHANCE  # the backticks of the terminal's line
    (folder / "results.json").write_text(json.dumps(document))
    page = benchmark_report(folder)
    assert "<code>vip backbones list</code>" in page and "`" not in _visible(page)


def test_a_run_report_of_random_weights_has_its_banner_and_no_chance_note(cli, lesion_run, tmp_path):
    """The chance note is left out for random weights, whose banner says no figure means anything (as `vip train`
    leaves its warning out): the report asked the run's report record, which never holds the weights, instead of
    the run's metadata, and gave both."""
    import json

    data, _ = lesion_run
    run = tmp_path / "random"
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--pretrained", "none", "--shots", "2",
                       "--epochs", "1", "--views", "1", "--workers", "0", "--out", run)
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["vs_chance"] = AT_CHANCE
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert cli("report", run, "--workers", "0", "--device", "cpu", "--gallery", "0")[0] == 0
    page = (run / "report.html").read_text()
    assert 'class="banner"' in page and "better than chance" not in _visible(page)


def test_a_predictions_report_of_a_run_not_shown_to_beat_chance_says_so_first(cli, lesion_run, tmp_path):
    """`vip predict --report` with the toy run on ISIC (AUROC 54 on its own test split) showed a card per image,
    each with a class, a probability and a set, and 'measured when trained: accuracy 54.12%': nothing said that the
    run's own test images did not show it beats chance, as its `vip report` does. The page now says so first."""
    import json

    data, run = lesion_run
    copy = shutil.copytree(run, tmp_path / "run")
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    assert cli("predict", *images, "--model", copy, "--report", tmp_path / "plain.html", "--workers", "0")[0] == 0
    assert "better than chance" not in _visible((tmp_path / "plain.html").read_text())
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["test"]["vs_chance"] = AT_CHANCE
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert cli("predict", *images, "--model", copy, "--report", tmp_path / "p.html", "--workers", "0")[0] == 0
    text = _visible((tmp_path / "p.html").read_text())
    note = text.index(f"Measured when this run was trained: the {metrics['test']['n']} test images do not show that "
                      "the model tells melanoma from nevus better than chance")
    assert note < text.index("The model and the images") and "Read its predictions below as no evidence" in text


def test_predict_warns_once_of_a_run_not_shown_to_beat_chance_and_keeps_json_clean(cli, lesion_run, tmp_path):
    """`vip predict` with the toy run on ISIC (AUROC 54 on its own test split) printed classes and probabilities
    without a word, though `vip train` had warned that its figures say nothing of these images. It now says so once,
    on stderr, in one line naming the images the toy backbone knows; --json stays one JSON document on stdout."""
    import json

    data, run = lesion_run
    copy = shutil.copytree(run, tmp_path / "run")
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    code, out, err = cli("predict", *images, "--model", copy, "--json", "--workers", "0")
    assert code == 0 and "better than chance" not in err  # the run beats chance on its own test images: no word
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["test"]["vs_chance"] = AT_CHANCE
    (copy / "metrics.json").write_text(json.dumps(metrics))
    code, out, err = cli("predict", *images, "--model", copy, "--json", "--workers", "0")
    assert code == 0 and len(json.loads(out)["predictions"]) == 2
    warned = [line for line in err.splitlines() if "better than chance" in line]
    assert warned == [f"warning: measured when {copy} was trained, the {metrics['test']['n']} test images do not show "
                      "that the model tells melanoma from nevus better than chance: its AUROC of 54.19 is not clearly "
                      "above the 50 of guessing (a guess scores at least as high 8.4% of the time; better than chance "
                      "takes 5% or less); backbone 'toy' knows only the generated lesion world of `vip demo` "
                      "(coloured spots on skin-toned squares): read these predictions as no evidence of a class"]
