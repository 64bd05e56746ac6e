"""Reports as a reader meets them without the README: when a page was written, and what calibration,
prediction sets and merge weights mean, said on the page in plain words."""

from __future__ import annotations

import re
from pathlib import Path
from datetime import datetime, timezone

import test_report
from browser import render

lesion_run, benchmark_dir = test_report.lesion_run, test_report.benchmark_dir  # the fixtures, shared


def test_the_footer_says_when_the_page_was_written_in_utc():
    from vipcli import __version__
    from vipcli.report.html import written_by

    moment = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)
    assert written_by("/runs/a", moment) == f"written by vip {__version__} on 2026-03-01 23:30 UTC from /runs/a"
    assert written_by(None, moment) == f"written by vip {__version__} on 2026-03-01 23:30 UTC"


def test_a_recorded_time_reads_as_utc_and_a_missing_or_damaged_one_as_none():
    from vipcli.report.html import utc_time

    assert utc_time("2026-11-29T21:11:00+01:00") == datetime(2026, 11, 29, 20, 11, tzinfo=timezone.utc)
    assert utc_time(None) is None and utc_time("yesterday") is None and utc_time(7) is None


@test_report.needs_browser
def test_a_rendered_benchmark_report_says_when_it_was_written_and_when_its_rows_ran(benchmark_dir, tmp_path):
    """A printed report said which vip wrote it, never when: two printouts of one folder could not be told
    apart, nor could a reader see how old its figures were."""
    from vipcli.report.benchmark import benchmark_report, read_results

    page = tmp_path / "bench.html"
    page.write_text(benchmark_report(benchmark_dir), encoding="utf-8")
    shown = render(page, tmp_path / "shot")["text"]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert re.search(rf"written by vip \S+ on {today} \d\d:\d\d UTC from ", shown), shown[-300:]
    first = min(r["finished_at"] for r in read_results(benchmark_dir)["rows"])[:10]
    assert re.search(rf"rows\s+\d+, finished {first} \d\d:\d\d to [\d: -]+ UTC", shown)


@test_report.needs_browser
def test_a_prediction_gallery_says_what_a_set_means_how_often_it_held_the_truth_and_which_cards_it_missed(
        cli, lesion_run, tmp_path):
    """`vip predict --report` showed `prediction set: {melanoma}` on each card with no word on what a set is
    (only "LAC score"), no card said when its set left out the true class, and the page gave no count of
    right predictions or of sets holding the truth, though every image's folder named its class."""
    data, run = lesion_run
    images = sorted((data / "test" / "nevus").glob("*.png"))[:6] + sorted((data / "test" / "melanoma").glob("*.png"))[:6]
    out = tmp_path / "predicted.html"
    code, stdout, err = cli("predict", *images, "--model", run, "--coverage", "0.9", "--report", out, "--workers", "0")
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if "  set {" in line]
    truths = [line.split("/")[-2] for line in lines]
    labels = [line.split()[1] for line in lines]
    sets = [re.search(r"set \{(.*)\}", line).group(1).split(", ") for line in lines]
    right, held = sum(t == y for t, y in zip(truths, labels)), sum(t in s for t, s in zip(truths, sets))
    shown = re.sub(r"\s+", " ", render(out, tmp_path / "shot")["text"])
    assert "Prediction set (coverage 90%): the classes the model cannot rule out" in shown
    assert f"Of these 12, {right} are predicted right ({100 * right / 12:.2f}%); the prediction set holds the " \
           f"true class for {held} ({100 * held / 12:.2f}%)." in shown
    assert shown.count("misses the true class") == 12 - held


def test_a_card_whose_set_misses_the_true_class_says_so_and_no_other_does(tmp_path):
    from vipcli.report.gallery import GalleryItem, gallery_html

    items = [GalleryItem(str(tmp_path / "nevus" / f"{i}.png"), "nevus", label, 0.8, members, None)
             for i, (label, members) in enumerate([("melanoma", ["melanoma"]), ("melanoma", ["melanoma", "nevus"]),
                                                    ("nevus", ["nevus"]), ("nevus", [])])]
    cards = gallery_html(items).split('<li class="card')[1:]
    assert ["misses the true class" in card for card in cards] == [True, False, False, True]
    unknown = GalleryItem(str(tmp_path / "x.png"), None, "nevus", 0.8, ["melanoma"], None)
    assert "misses the true class" not in gallery_html([unknown])


def _calibration_page(before: dict, after: dict, tmp_path):
    """The calibration section of a run whose test scores went from `before` to `after`, as a page on disk."""
    from vipcli.report import html
    from vipcli.report.run import _calibration

    block = {"temperature": 1.5993, "held_out": "val", "n_held_out": 64, "ece_bins": 15,
             "test": {"n": 0, "before": before, "after": after}, "reliability": {"before": [], "after": []}}
    section = _calibration({"calibration": object(), "metrics": {"calibration": block}, "data": "d", "backbone": "b"},
                           None, [])
    tmp_path.mkdir(parents=True, exist_ok=True)
    page = tmp_path / "calibration.html"
    page.write_text(html.page("vip report: t", "", [html.section("Calibration", section)], ""), encoding="utf-8")
    return page


@test_report.needs_browser
def test_the_calibration_section_says_what_calibrated_means_and_whether_scaling_helped_on_test(tmp_path):
    """The demo's report showed T = 1.599 making the test ECE worse (0.0654 to 0.0750) under a text that
    praised the method and left ECE, NLL and Brier unexplained: a reader had to spot the rise in the table."""
    before = {"ece": 0.0654, "nll": 0.4912, "brier": 0.3117}
    shown = re.sub(r"\s+", " ", render(_calibration_page(before, {"ece": 0.075, "nll": 0.4817, "brier": 0.3122},
                                                           tmp_path / "mixed"), tmp_path / "mixed")["text"])
    assert "of the images it calls 80% likely to be a class, about 8 in 10 are" in shown
    assert "ECE, the expected calibration error" in shown and "NLL, the negative log-likelihood" in shown
    assert ("On the test images temperature scaling lowered the NLL (0.4912 to 0.4817) but raised the ECE "
            "(6.54% to 7.50%) and the Brier score (0.3117 to 0.3122). It helped on some scores only") in shown

    from vipcli.report.run import scaling_verdict

    better = scaling_verdict({"before": before, "after": {"ece": 0.05, "nll": 0.48, "brier": 0.3}})
    assert better == ("On the test images temperature scaling lowered the ECE (6.54% to 5.00%), the NLL (0.4912 to "
                      "0.4800) and the Brier score (0.3117 to 0.3000).")
    worse = scaling_verdict({"before": before, "after": {"ece": 0.07, "nll": 0.4912, "brier": 0.32}})
    assert "raised the ECE (6.54% to 7.00%) and the Brier score (0.3117 to 0.3200) but left the NLL (0.4912) " \
           "unchanged. It did not help here" in worse



def test_a_run_without_test_images_says_nothing_of_whether_scaling_helped():
    """With no test image every score is None ('-'): the verdict said scaling "left the ECE (-), the NLL (-) and
    the Brier score (-) unchanged. It did not help here"."""
    from vipcli.report.run import scaling_verdict

    none = {"ece": None, "nll": None, "brier": None}
    assert scaling_verdict({"n": 0, "before": none, "after": none}) == ""
    scored = {"ece": 0.1, "nll": 0.5, "brier": 0.3}
    assert scaling_verdict({"n": 3, "before": scored, "after": scored}).startswith("On the test images")

def _outside(figure) -> list[str]:
    """The texts of a drawn matplotlib figure that reach past its edges (cut off in the SVG)."""
    from matplotlib.text import Text

    figure.canvas.draw()
    renderer, width, height = figure.canvas.get_renderer(), figure.bbox.width, figure.bbox.height
    undrawn = set()  # the labels of ticks outside an axis's limits: matplotlib keeps them, but never draws them
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            undrawn.update(id(label) for tick in axis.get_major_ticks() if not low - 1e-9 <= tick.get_loc() <= high + 1e-9
                           for label in (tick.label1, tick.label2))
    found = []
    for text in figure.findobj(Text):
        if text.get_visible() and text.get_text().strip() and id(text) not in undrawn:
            box = text.get_window_extent(renderer)
            if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
                found.append(text.get_text())
    return found


def test_no_text_of_a_report_figure_is_cut_off_at_its_edge():
    """A label wider than the plots it is centred under runs past the figure's edge, cut off mid-word in the
    SVG (a first, longer wording of the merge-weight chart's x label did, under plots pushed right by long
    symptoms); no text of any report figure may. An uncalibrated run's one-panel reliability diagram cut its
    legend's three entries, laid side by side, at both edges ("erfectly calibrated", "gap to confi")."""
    from vipcli.report.figures import draw_confusion_matrix, draw_merge_weights, draw_reliability

    long = "The spot has multiple colors, like brown, black, blue, red, or white, and a few more words"
    weights = {"melanoma": [(long, 0.253), ("Small, dark areas within the spot", 0.747)],
               "nevus with a long class name": [("The spot is symmetric on both sides", 0.5), (long, 0.5)]}
    bins = [{"lower": 0.5, "upper": 0.75, "count": 3, "confidence": 0.6, "accuracy": 0.67}]
    title = "merge weights per class: a data folder with a long name, clip small-clip.json#4dd1abc484f9121f"
    figures = {"merge weights": draw_merge_weights(weights, "#D55E00", title),
               "reliability": draw_reliability([("before (T = 1)", bins, 0.1), ("after (T = 1.599)", bins, 0.05)],
                                                "#D55E00", title),
               "reliability, one panel": draw_reliability([("uncalibrated", bins, 0.1)], "#D55E00", title),
               "confusion": draw_confusion_matrix([[10, 2], [3, 12]], ["melanoma in situ", "nevus"], "#D55E00", title)}
    assert {name: _outside(figure) for name, figure in figures.items()} == {name: [] for name in figures}


def test_a_long_class_name_neither_squeezes_the_confusion_matrix_nor_runs_off_the_merge_weights_chart():
    """With one 86-character class name among 10, the confusion matrix was drawn in 13% of its figure's width,
    its counts overlapping, its title and 'true class' cut off; that class's merge-weight title ran off the
    chart, and the chart's title overlapped the first class's."""
    from vipcli.report.figures import CLASS_LABEL, draw_confusion_matrix, draw_merge_weights

    long = "melanoma in situ with regression and atypical pigment network (superficial spreading)"
    names = ["<b>&", long] + [f"c{i}" for i in range(8)]
    confusion = draw_confusion_matrix([[i + j for j in range(10)] for i in range(10)], names, "#D55E00", "t: d10, toy")
    assert _outside(confusion) == []
    assert confusion.axes[0].get_window_extent().width > 0.5 * confusion.bbox.width
    labels = [label.get_text() for label in confusion.axes[0].get_yticklabels()]
    assert labels[0] == "<b>&" and labels[1].replace("\n", " ").endswith("…")
    assert len(labels[1].replace("\n", " ")) == CLASS_LABEL
    weights = draw_merge_weights({name: [("dark spot", 0.6), ("symmetric", 0.4)] for name in names[:3]}, "#D55E00",
                                 "merge weights per class: d10, toy")
    assert _outside(weights) == []
    renderer = weights.canvas.get_renderer()
    assert not weights._suptitle.get_window_extent(renderer).overlaps(weights.axes[0].title.get_window_extent(renderer))


def _overlapping_tick_labels(figure) -> list[tuple[str, str]]:
    """The pairs of the x-axis labels of a figure's first axes whose drawn pixels cover the same pixel."""
    import numpy as np

    def dark(shown=None):  # the figure's dark pixels with only the label `shown` of the x-axis drawn
        for label in labels:  # the others transparent: still laid out, so nothing else moves
            label.set_alpha(1 if label is shown else 0)
        figure.canvas.draw()
        return (np.asarray(figure.canvas.buffer_rgba())[..., :3] < 128).any(axis=2)

    labels = figure.axes[0].get_xticklabels()
    rest = dark()
    inked = [dark(label) & ~rest for label in labels]
    for label in labels:
        label.set_alpha(None)
    return [(labels[i].get_text(), labels[j].get_text()) for i in range(len(labels)) for j in range(i + 1, len(labels))
            if (inked[i] & inked[j]).any()]


def test_the_predicted_classes_of_a_9_class_confusion_matrix_with_a_long_name_do_not_overprint_each_other():
    """Nine dermoscopy classes, one of them `seborrheic keratosis – solar lentigo (lichenoid)`: its two-line label,
    slanted at 30 degrees, was drawn over `nævus` and `squamous cell carcinoma` under the matrix. Labels that would
    run into each other slanted are now upright; short names keep their slant."""
    from vipcli.report.figures import draw_confusion_matrix

    names = ["actinic keratosis", "basal cell carcinoma", "dermatofibroma", "melanoma", "nævus",
             "seborrheic keratosis – solar lentigo (lichenoid)", "squamous cell carcinoma", "unknown", "vascular lesion"]
    matrix = [[int(i == j) * 9 + 1 for j in range(9)] for i in range(9)]
    long = draw_confusion_matrix(matrix, names, "#D55E00", "test confusion matrix: skin, toy")
    assert _overlapping_tick_labels(long) == [] and _outside(long) == []
    assert long.axes[0].get_window_extent().width > 0.5 * long.bbox.width
    short = draw_confusion_matrix(matrix, [f"class {i}" for i in range(9)], "#D55E00", "t")
    assert _overlapping_tick_labels(short) == []
    assert {label.get_rotation() for label in short.axes[0].get_xticklabels()} == {30}


def test_a_confusion_matrix_of_two_or_three_classes_with_two_line_names_keeps_its_labels_apart_and_inside():
    """Chest X-rays in three classes, `NORMAL`, `bacterial pneumonia (consolidation)`, `viral pneumonia`: the predicted
    classes stayed upright under three columns and ran together ('(consolidation)viral pneumonia'), and 'true class'
    was cut off at the figure's left edge beside the two-line name; two long names under two columns lost it too."""
    from vipcli.plots import pyplot
    from vipcli.report.figures import draw_confusion_matrix

    long_title = "test confusion matrix: a data folder with a long name, clip small-clip.json#4dd1abc484f9121f"
    for names in (["NORMAL", "bacterial pneumonia (consolidation)", "viral pneumonia"],
                  ["seborrheic keratosis (lichenoid)", "basal cell carcinoma (nodular)"]):
        for title in ("test confusion matrix: cxr3, toy", long_title):
            matrix = [[i + 2 * j for j in range(len(names))] for i in range(len(names))]
            figure = draw_confusion_matrix(matrix, names, "#D55E00", title)
            assert _outside(figure) == [] and _overlapping_tick_labels(figure) == [], (names, title)
            pyplot().close(figure)
    short = draw_confusion_matrix([[5, 1], [2, 6]], ["melanoma", "nevus"], "#D55E00", "t")
    assert {label.get_rotation() for label in short.axes[0].get_xticklabels()} == {0}  # fits upright: stays so
    pyplot().close(short)


@test_report.needs_browser
def test_a_long_class_name_wraps_in_the_prediction_set_table_instead_of_pushing_it_off_the_page(tmp_path):
    """Each class's coverage was kept on one line, its name included: one 86-character name made the table
    wider than a 1280 px window (its per-class figures and notes scrolled out of sight)."""
    import numpy as np

    from vipcli.report import html
    from vipcli.report.run import _conformal

    names = ["melanoma in situ with regression and atypical pigment network (superficial spreading)"] + \
        [f"c{i}" for i in range(9)]
    row = {"coverage": 0.9, "threshold": 0.9, "empirical_coverage": 0.9, "mean_set_size": 3.0, "empty_sets": 0,
           "expected_coverage": 0.9, "coverage_sd": 0.03}
    block = {"score": "LAC", "held_out": "val", "n_held_out": 60, "test": [row]}
    run = {"calibration": object(), "metrics": {"conformal": block, "test": {"n": 20}}, "class_names": names}
    labels = np.repeat(np.arange(10), 2)
    section = _conformal(run, np.full((20, 10), 0.1), labels)
    assert '<th scope="row">melanoma in situ with regression' in section  # the name a cell of its own, wrapping
    page = tmp_path / "sets.html"
    page.write_text(html.page("vip report: t", "", [html.section("Prediction sets", section)], ""), encoding="utf-8")
    for width in (1280, 390):  # a window, a phone
        tables = render(page, tmp_path / f"shot-{width}", width=width)["tables"]
        assert [t["overflow"] for t in tables] == [0, 0], width


def test_the_merge_weights_section_says_in_plain_words_what_a_weight_is():
    """The chart's only words were 'attention of the class's merge token' and 'class embedding'."""
    from vipcli.report.figures import draw_merge_weights
    from vipcli.report.run import merge_meaning

    softmax = {"melanoma": [("a", 0.25), ("b", 0.75)], "nevus": [("c", 0.5), ("d", 0.5)]}
    said = merge_meaning(softmax)
    assert "how much each symptom counts" in said and "A class's weights add up to 1." in said
    assert "The weights are the same for every image" in said
    assert draw_merge_weights(softmax, "#D55E00", "t").axes[-1].get_xlabel() == "merge weight (a class's weights add up to 1)"
    other = {"melanoma": [("a", 0.4), ("b", 0.9)]}  # a plugin's weights need not add up to 1: not claimed
    assert "add up to 1" not in merge_meaning(other)
    assert draw_merge_weights(other, "#D55E00", "t").axes[-1].get_xlabel() == "merge weight"


def test_a_gallery_cut_before_any_right_prediction_says_so_and_how_to_see_them(tmp_path):
    """The demo's run report showed 48 cards, all wrong (it had 62 errors), under "... then the right ones,
    least sure first": a reader looked for right ones that were never on the page."""
    from vipcli.report.gallery import GalleryItem, gallery_html
    from vipcli.report.run import _more_cards

    items = [GalleryItem(str(tmp_path / f"{i}.png"), "nevus", "melanoma" if i < 5 else "nevus", 0.8, None, None)
             for i in range(30)]
    cut = gallery_html(items, 4, more=_more_cards(items))
    assert ("Only wrong ones fit in the 4 shown, so none of the right ones is here (vip report --gallery 21 shows all "
            "5 wrong ones and 16 right ones).") in cut
    assert "Only wrong ones fit in the 5 shown" in gallery_html(items, 5)  # the right ones start at card 6
    for limit in (6, None):  # a right one shown: nothing to say
        assert "Only wrong ones" not in gallery_html(items, limit, more=_more_cards(items))
    assert "Only wrong ones" not in gallery_html(items[:5], 4)  # no right prediction exists to miss
    assert "Only wrong ones" not in gallery_html(items, 0, more=_more_cards(items))  # --gallery 0: no card at all


def test_a_run_report_says_when_and_on_what_the_run_was_trained(cli, lesion_run, tmp_path):
    """A run report named the vip that trained the run but not when, nor on which device: metrics.json now
    records `finished_at`; a run of an earlier vip shows its device alone."""
    import json
    import shutil

    _, run = lesion_run
    metrics = json.loads((run / "metrics.json").read_text())
    when = datetime.fromisoformat(metrics["finished_at"]).astimezone(timezone.utc)
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 3600
    page = test_report._report_page(cli, run, tmp_path / "run.html")
    assert f"vip {metrics_version(run)}, on {when:%Y-%m-%d %H:%M} UTC (cpu" in page
    old = shutil.copytree(run, tmp_path / "old")
    del metrics["finished_at"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    page = test_report._report_page(cli, old, tmp_path / "old.html")
    assert f"vip {metrics_version(run)} (cpu" in page and " UTC (cpu" not in page


def metrics_version(run) -> str:
    """The vip version a run's run.yaml names."""
    import yaml

    return yaml.safe_load((run / "run.yaml").read_text())["vip_version"]


def test_a_prediction_page_says_what_the_model_measured_on_its_own_test_split(cli, lesion_run, tmp_path):
    """`vip predict --report` said nothing of how good the model is; it now gives the run's test accuracy,
    balanced accuracy and macro-F1 from its metrics.json, and when it was trained; a run of an earlier vip,
    whose metrics.json has no balanced accuracy, gets it from its confusion matrix."""
    import json
    import shutil

    from vipcli.metrics import exact_figures, round_half_up

    data, run = lesion_run
    old_run = tmp_path / "old-run"
    shutil.copytree(run, old_run)
    metrics = json.loads((run / "metrics.json").read_text())
    test, when = metrics["test"], datetime.fromisoformat(metrics["finished_at"]).astimezone(timezone.utc)
    (old_run / "metrics.json").write_text(json.dumps(
        {**metrics, "test": {key: value for key, value in test.items() if key != "balanced_accuracy"}}))
    balanced = round_half_up(exact_figures(test["confusion_matrix"])["balanced_accuracy"])
    assert balanced == test["balanced_accuracy"]
    for model in (run, old_run):
        out = tmp_path / f"{model.name}.html"
        code, _, err = cli("predict", *sorted((data / "test" / "nevus").glob("*.png"))[:2], "--model", model,
                           "--report", out, "--workers", "0")
        assert code == 0, err
        assert (f"accuracy {test['accuracy']:.2f}%, balanced accuracy {balanced:.2f}%, macro-F1 "
                f"{test['macro_f1']:.2f}% on {test['n']} test images (vip train, {when:%Y-%m-%d %H:%M} UTC)"
                ) in out.read_text(), model.name


def test_a_benchmark_report_says_what_its_rows_ran_on(benchmark_dir, tmp_path):
    """A benchmark report named no device or machine unless `--speed` had run; each row of results.json now
    records its device and machine, and the settings say them (rows of an earlier vip say nothing)."""
    import json
    import shutil

    from vipcli.report.benchmark import benchmark_report, read_results

    rows = read_results(benchmark_dir)["rows"]
    assert {row["device"] for row in rows} == {"cpu"} and all(row["machine"] for row in rows)
    page = re.sub(r"\s+", " ", benchmark_report(benchmark_dir))
    assert f'<th scope="row">ran on</th><td>cpu ({rows[0]["machine"]})</td>' in page
    old = shutil.copytree(benchmark_dir, tmp_path / "old")
    document = json.loads((old / "results.json").read_text())
    for row in document["rows"]:
        del row["device"], row["machine"]
    (old / "results.json").write_text(json.dumps(document))
    assert "ran on" not in benchmark_report(old)


@test_report.needs_browser
def test_a_cards_image_is_drawn_crisp_at_the_size_it_was_embedded_never_stretched_into_a_blur(cli, lesion_run, tmp_path):
    """The demo's 64 px images were embedded as 64 px JPEGs and stretched by the browser to 160 px: every card's
    lesion was a blur. A small image now keeps its pixels and is shown a whole number of times larger, each pixel
    a sharp square; a large one is reduced once, by vip, to the size it is shown at."""
    import numpy as np
    from PIL import Image

    _, run = lesion_run
    folder = tmp_path / "nevus"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)  # every pixel unlike its neighbours
    Image.fromarray(noise).save(folder / "small.png")
    Image.fromarray(noise).resize((600, 600), Image.Resampling.NEAREST).save(folder / "large.png")
    out = tmp_path / "cards.html"
    code, _, err = cli("predict", folder / "small.png", folder / "large.png", "--model", run, "--report", out,
                       "--workers", "0")
    assert code == 0, err
    result = render(out, tmp_path / "shot", width=1280)
    images = {Path(i["alt"].split(": ")[0]).name: i for i in result["images"]}  # alt: "FILE: ... predicted ..."
    small, large = images["small.png"], images["large.png"]
    assert (small["width"], small["shown"], small["rendering"]) == (48, 192, "pixelated")  # 4 x 48 px
    assert (large["width"], large["shown"]) == (192, 192)  # drawn at its own size: the browser resizes nothing
    with Image.open(result["screenshot"]) as shot:
        drawn = np.asarray(shot.convert("RGB").crop((round(small["left"]), round(small["top"]),
                                                     round(small["left"]) + 192, round(small["top"]) + 192)), float)
    expected = np.asarray(Image.fromarray(noise).resize((192, 192), Image.Resampling.NEAREST), float)
    assert np.abs(drawn - expected).mean() < 2, "the card's pixels are not the image's, magnified"


@test_report.needs_browser
def test_every_share_of_images_and_every_probability_is_a_percentage_on_every_page(cli, lesion_run, tmp_path):
    """The run report gave accuracy as 79.33 (%) but the coverage of the same test images as 0.810 and the
    ECE as 0.0654; a card's probability was 0.950 while the line above said 79.3% right. Every share of
    images and every probability is now a percentage, and the page says what its % figures are."""
    import json

    data, run = lesion_run
    assert cli("report", run, "--out", tmp_path / "run.html", "--workers", "0", "--device", "cpu", "--gallery", "4")[0] == 0
    metrics = json.loads((run / "metrics.json").read_text())
    shown = re.sub(r"\s+", " ", render(tmp_path / "run.html", tmp_path / "run")["text"])
    assert "Figures in % run from 0 to 100" in shown and "Test images (prediction sets at coverage 90%)" in shown
    rows = metrics["conformal"]["test"]  # a coverage asked a column
    needed = [f"{100 * (1 - row['threshold']):.4f}".rstrip("0") for row in rows]  # the stored threshold, every digit
    needed = [figure + "0" * (2 - len(figure.partition(".")[2])) for figure in needed]  # (2 at least)
    assert "coverage asked " + " ".join(f"{100 * row['coverage']:.4g}%" for row in rows) in shown
    assert "threshold % " + " ".join(needed) in shown
    assert "expected ± sd % " + " ".join(f"{100 * row['expected_coverage']:.2f} ± {100 * row['coverage_sd']:.2f}"
                                         for row in rows) in shown
    assert "test coverage % " + " ".join(f"{100 * row['empirical_coverage']:.2f}" for row in rows) in shown
    ece = metrics["calibration"]["test"]["after"]["ece"]
    assert f"ECE {100 * ece:.2f}%" in shown and f"{ece:.4f}" not in shown
    images = sorted((data / "test" / "nevus").glob("*.png"))[:4]
    assert cli("predict", *images, "--model", run, "--coverage", "0.9", "--report", tmp_path / "p.html",
               "--workers", "0")[0] == 0
    for page in (tmp_path / "run.html", tmp_path / "p.html"):
        text = re.sub(r"\s+", " ", render(page, tmp_path / page.stem)["text"])
        assert len(re.findall(r"\(probability \d{1,3}\.\d%\)", text)) == 4 and "(probability 0." not in text
        assert not re.search(r"(?<!-)coverage 0\.\d", text), page.name  # only --coverage 0.9, the option as typed


def test_a_gallery_says_once_how_many_images_it_shows_and_how_many_are_wrong(tmp_path):
    """`vip predict --report` on the demo's 300 test images read "300 of 300 images sit in a folder named
    after a class..." and then "300 of 300 images; 62 of 300 with a known class are predicted wrongly": the
    same count twice, as if some were left out."""
    from vipcli.report.gallery import GalleryItem, gallery_html

    items = [GalleryItem(str(tmp_path / f"{i}.png"), "nevus", "melanoma" if i < 5 else "nevus", 0.8, None, None)
             for i in range(30)]
    text = re.sub(r"<[^>]+>", "", gallery_html(items))
    assert text.startswith("All 30 images are shown; 5 of the 30 whose class is known are predicted wrongly and come "
                           "first") and "30 of 30" not in text
    assert re.sub(r"<[^>]+>", "", gallery_html(items, 4)).startswith("4 of the 30 images are shown; 5 of the 30 ")
    one = [GalleryItem(str(tmp_path / "a.png"), "nevus", "melanoma", 0.8, None, None)]
    assert "The one image is shown; its class is known, and it is predicted wrongly" in gallery_html(one)
    one_of_many = re.sub(r"<[^>]+>", "", gallery_html(items[4:]))  # 26 images, the first of them wrong
    assert "; 1 of the 26 whose class is known is predicted wrongly and comes first, then the right ones" in one_of_many
    none_wrong = re.sub(r"<[^>]+>", "", gallery_html(items[5:]))
    assert "; none of the 25 whose class is known is predicted wrongly: the least sure come first" in none_wrong
    all_wrong = re.sub(r"<[^>]+>", "", gallery_html(items[:5]))
    assert all_wrong.startswith("All 5 images are shown; 5 of the 5 whose class is known are predicted wrongly and "
                                "come first (most confident first)") and "then the right ones" not in all_wrong
    assert "1 of the 30 images is shown;" in gallery_html(items, 1)


def test_a_predictions_page_of_one_image_reads_in_the_singular(tmp_path):
    """`vip predict scan.png --report` wrote "vip predictions: 1 images", "1 of 1 images sit in a folder" and "Of
    these 1, 1 is predicted right (100.00%)"."""
    from vipcli.report.gallery import GalleryItem
    from vipcli.report.predictions import _in_class_folders, agreement

    assert _in_class_folders(1, 1) == ("The image sits in a folder named after a class; that name is shown as its true "
                                       "class.")
    assert _in_class_folders(1, 4).startswith("1 of the 4 images sits in a folder")
    assert _in_class_folders(3, 4).startswith("3 of 4 images sit in a folder")
    wrong = GalleryItem(str(tmp_path / "a.png"), "nevus", "melanoma", 0.8, None, None)
    assert agreement([wrong]) == "It is predicted wrongly."
    assert agreement([wrong, wrong]).startswith("Of these 2, 0 are predicted right")
