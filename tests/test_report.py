"""`vip report` and `vip predict --report`: self-contained HTML, checked in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from browser import blank_fraction, distinct_colors, find_browser, render
from conftest import error_lines
from lesion_runs import make_lesions, strip_calibration, train_toy
from vipcli.plots import METHOD_COLORS, draw_shots, method_color

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no chromium-family browser installed "
                                   "(apt-get install chromium)")


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = make_lesions(root / "lesions")
    return data, train_toy(data, root / "run", root / "cache")


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory, lesion_run):
    from vipcli.benchmark import BenchmarkConfig, run_benchmark

    data, _ = lesion_run
    out = tmp_path_factory.mktemp("bench") / "bench"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(out.parent / "cache"))
        from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

        run_benchmark(BenchmarkConfig(data=data, methods=("symptom-zeroshot", "coop", "vip"), shots=(1, 2), seeds=(1, 2),
                                      backbone=BackboneSettings("toy", device="cpu"), schedule=ScheduleSettings(epochs=2),
                                      encoding=EncodingSettings(views=2, workers=0), out=out))
    return out


def _cards(page: str) -> list[str]:
    """The class attribute of every gallery card, in page order."""
    return re.findall(r'<li class="(card(?: wrong)?)">', page)


def _self_contained(page: str) -> None:
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page), "every image is a data: URI or inline SVG; nothing is linked"


def test_the_address_to_open_the_report_at_is_a_url_a_browser_and_a_terminal_take(cli, lesion_run, tmp_path):
    """`file://` + the path: a folder with a space or a `#` cut the address there (a terminal's link, a
    browser's fragment), and on Windows `file://C:\\Users\\...` names a host `C`. It is the path's file URL."""
    _, run = lesion_run
    out = tmp_path / "my runs #1" / "run.html"
    out.parent.mkdir()
    code, stdout, err = cli("report", run, "--out", out, "--workers", "0", "--device", "cpu", "--gallery", "0")
    assert code == 0, err
    url = f"file://{tmp_path.resolve()}/my%20runs%20%231/run.html"
    assert stdout.strip().endswith(f"open it in a browser ({url})"), stdout


def test_run_report_is_one_self_contained_file_with_every_part(cli, lesion_run, tmp_path):
    data, run = lesion_run
    out = tmp_path / "run.html"
    code, stdout, err = cli("report", run, "--out", out, "--workers", "0", "--device", "cpu", "--gallery", "12")
    assert code == 0, err
    assert str(out) in stdout and "open it in a browser" in stdout
    page = out.read_text()
    _self_contained(page)
    for heading in ("Settings and data", "Metrics", "Confusion matrix", "Calibration", "Prediction sets",
                    "Merge weights of each class", "Test images (prediction sets at coverage 90%)"):
        assert heading in page
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['calibration']['temperature']:.4g}" in page and f"{metrics['test']['accuracy']:.2f}" in page
    assert "The spot is asymmetric on both sides" in page  # merge weights and top symptoms name symptoms
    cards = _cards(page)
    errors = sum(1 for row, col in [(i, j) for i in range(2) for j in range(2) if i != j]
                 for _ in range(metrics["test"]["confusion_matrix"][row][col]))
    assert len(cards) == 12 and cards == sorted(cards, key=lambda c: c != "card wrong")  # errors first
    assert cards.count("card wrong") == min(errors, 12)
    assert page.count("prediction set: {") == 12 and METHOD_COLORS["vip"] in page


def test_run_report_gives_each_classs_sensitivity_and_warns_of_a_class_never_found(cli, lesion_run, tmp_path):
    """Accuracy hides a model that never finds the minority class (74% on 30 melanoma, 90 nevus by
    calling everything nevus): the Metrics section gives each class's sensitivity and precision from
    the test confusion matrix, and says so when a class is never found."""
    _, run = lesion_run
    page = _report_page(cli, run, tmp_path / "ok.html")
    matrix = json.loads((run / "metrics.json").read_text())["test"]["confusion_matrix"]
    found, images = matrix[0][0], sum(matrix[0])
    assert "sensitivity (recall) %" in page and f"{100 * found / images:.2f} ({found}/{images})" in page
    assert "finds no test image" not in page
    blind = shutil.copytree(run, tmp_path / "blind")
    metrics = json.loads((blind / "metrics.json").read_text())
    metrics["test"]["confusion_matrix"] = [[0, 30], [1, 89]]
    (blind / "metrics.json").write_text(json.dumps(metrics))
    page = _report_page(cli, blind, tmp_path / "blind.html")
    assert "0.00 (0/30)" in page and "98.89 (89/90)" in page and "- (never predicted)" not in page
    each_class = re.search(r"<caption>Each class on test</caption>(.*?)</table>", page).group(1)
    rows = {row[0]: row[1:] for row in (re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", found)
                                         for found in re.findall(r"<tr>(.*?)</tr>", each_class))}
    assert "specificity %" in page  # a radiologist reads sensitivity with specificity: the table gives both
    # a class's test images are the count under its sensitivity (a column of its own did not fit a phone)
    assert rows["melanoma"] == ["0.00 (0/30)", "98.89 (89/90)", "0.00 (0/1)"]
    assert rows["nevus"] == ["98.89 (89/90)", "0.00 (0/30)", "74.79 (89/119)"]

    assert "The model finds no test image of melanoma (0 of 30): its accuracy comes from the other classes alone" \
        in page


def _report_page(cli, run, out) -> str:
    code, _, err = cli("report", run, "--out", out, "--workers", "0", "--device", "cpu", "--gallery", "0")
    assert code == 0, err
    return out.read_text()


def test_report_of_a_method_without_merge_prompt_says_so(cli, lesion_run, tmp_path):
    data, _ = lesion_run
    run = train_toy(data, tmp_path / "coop", tmp_path / "cache", method="coop")
    code, _, err = cli("report", run, "--workers", "0", "--device", "cpu")
    assert code == 0, err
    page = (run / "report.html").read_text()
    assert "has no merge prompt" in page and METHOD_COLORS["coop"] in page
    assert "top symptoms" not in page  # CoOp's prompts are class names, not symptoms


def test_report_of_an_uncalibrated_run_still_reports(cli, lesion_run, tmp_path):
    _, run = lesion_run
    old = strip_calibration(shutil.copytree(run, tmp_path / "old"))
    code, _, err = cli("report", old, "--workers", "0", "--device", "cpu")
    assert code == 0, err
    page = (old / "report.html").read_text()
    assert "Uncalibrated." in page and "no prediction sets" in page and "prediction set: {" not in page
    assert "uncalibrated, ECE" in page or "reliability on test" in page


def test_report_refuses_what_it_cannot_report_in_one_line(cli, lesion_run, tmp_path):
    _, run = lesion_run
    for args, message in (([tmp_path], "neither a run directory"), ([tmp_path / "nope"], "no such folder"),
                          ([run / "run.yaml"], f"run.yaml is a file, not a folder (pass {run}, the folder it belongs"),
                          ([run, "--out", tmp_path / "missing" / "r.html"], "does not exist"),
                          ([run, "--out", tmp_path], "is a folder, not a file")):
        code, _, err = cli("report", *args)
        assert code == 1 and len(error_lines(err)) == 1 and message in err, err
    code, _, err = cli("report", run, "--coverage", "1")
    assert code == 2 and "outside (0, 1)" in err
    (tmp_path / "results.csv").write_text("mine")  # an HTML page over a file of another kind: refused by its name
    for command in (("report", run, "--out", tmp_path / "results.csv"),
                    ("predict", run, "--model", run, "--report", tmp_path / "results.csv")):
        code, _, err = cli(*command)
        option = command[-2]
        assert code == 2 and error_lines(err) == [
            f"error: {option} {tmp_path / 'results.csv'}: a report is an HTML page, and this name does not end in "
            f".html (a browser would not show it as one) (pass {option} {tmp_path / 'results.html'})"]
    assert (tmp_path / "results.csv").read_text() == "mine"


def test_a_script_of_an_earlier_vip_giving_report_no_suffix_is_told_the_whole_name_to_pass(cli, lesion_run, tmp_path):
    """An earlier vip wrote `vip report RUN --out RUN/report` as a file named 'report'; a script doing so
    is now refused before any work, and the fix names the path to pass, folder and all (it said only
    'name it report.html', leaving where to the reader)."""
    _, run = lesion_run
    out = tmp_path / "old-run" / "report"
    out.parent.mkdir()
    for command in (("report", run, "--out", out), ("predict", run, "--model", run, "--report", out)):
        code, _, err = cli(*command)
        option = command[-2]
        assert code == 2 and error_lines(err) == [
            f"error: {option} {out}: a report is an HTML page, and this name does not end in .html (a browser "
            f"would not show it as one) (pass {option} {out}.html)"], err
    assert list(out.parent.iterdir()) == []


def test_an_html_file_vip_did_not_write_is_never_replaced_by_a_report(cli, lesion_run, tmp_path):
    """`vip report RUN --out notes.html` and `vip predict ... --report notes.html` replaced the user's own page
    without a word; now refused before any work. A page vip wrote (a report redrawn) is still replaced."""
    data, run = lesion_run
    mine = tmp_path / "notes.html"
    mine.write_text("<html><title>my notes</title>ward round</html>")
    for command in (("report", run, "--out", mine), ("predict", run, "--model", run, "--report", mine)):
        code, _, err = cli(*command, "--workers", "0", "--device", "cpu")
        option = command[-2]
        assert code == 1 and error_lines(err) == [
            f"error: {option} {mine} already exists and is not a page vip wrote, which vip would replace (choose "
            f"another {option}, or delete the file first)"], err
    assert mine.read_text() == "<html><title>my notes</title>ward round</html>"
    ours = tmp_path / "ours.html"
    for command in (("report", run, "--out", ours), ("report", run, "--out", ours),
                    ("predict", sorted((data / "test" / "nevus").glob("*.png"))[0], "--model", run, "--report", ours)):
        code, _, err = cli(*command, "--workers", "0", "--device", "cpu")
        assert code == 0, err
    assert "<title>vip predictions:" in ours.read_text()


def test_predict_report_shows_the_images_just_predicted(cli, lesion_run, tmp_path):
    data, run = lesion_run
    images = sorted((data / "test" / "nevus").glob("*.png"))[:5]
    out = tmp_path / "predicted.html"
    code, stdout, err = cli("predict", *images, "--model", run, "--coverage", "0.9", "--report", out, "--workers", "0")
    assert code == 0, err
    page = out.read_text()
    _self_contained(page)
    cards = _cards(page)
    assert len(cards) == 5 and page.count("true class: <b>nevus</b>") == 5  # the folder names the class
    wrong = stdout.count("  melanoma  ")  # predictions of melanoma for these nevus images
    assert cards.count("card wrong") == wrong and cards == sorted(cards, key=lambda c: c != "card wrong")
    shown = re.sub(r"<[^>]+>", "", page)  # the option name is in a span that keeps it whole on its line
    assert page.count("prediction set: {") == 5 and "Prediction sets at coverage 90% (--coverage 0.9;" in shown
    # a chest X-ray given to a skin model gets "melanoma 80%" and a set: the page says vip cannot tell
    assert "vip does not check that an image is of the kind the run was trained on" in page
    code, _, err = cli("predict", images[0], "--model", run, "--report", tmp_path / "no" / "x.html")
    assert code == 1 and "--report" in err and len(error_lines(err)) == 1


def test_predict_report_of_a_subset_of_links_names_the_images_as_given(cli, lesion_run, tmp_path):
    """Images picked into class folders as symbolic links to one pool (`picked/nevus/a.png -> pool/0016.png`): the
    page said its images lay under the pool and named each card by the pool's file (`0016.png`, beside "true
    class: nevus", read from the link's folder, which it no longer showed). It names the folder given, and each
    card by the class folder its true class comes from."""
    data, run = lesion_run
    pool, picked = tmp_path / "pool", tmp_path / "picked"
    pool.mkdir()
    for name in ("melanoma", "nevus"):
        source = sorted((data / "test" / name).glob("*.png"))[0]
        shutil.copyfile(source, pool / f"case-{name[0]}.png")
        (picked / name).mkdir(parents=True)
        (picked / name / f"{name}-pick.png").symlink_to(pool / f"case-{name[0]}.png")
    out = tmp_path / "picked.html"
    code, _, err = cli("predict", picked, "--model", run, "--report", out, "--workers", "0")
    assert code == 0, err
    page = out.read_text()
    assert str(pool) not in page and "case-" not in page
    assert re.search(r"<th scope=\"row\">images under</th><td>[^<]*<span class=\"path\">.*picked</span>", page)
    for name in ("melanoma", "nevus"):
        assert f'<div class="name">{name}/<wbr>' in page and f"true class: <b>{name}</b>" in page


def test_predict_report_of_images_of_unknown_class_says_in_which_order_they_come(cli, lesion_run, tmp_path):
    """A patient's folder (no class folders) gave cards ordered least sure first, under "All 4 images are shown."
    alone: a reader took the first card for the most important finding, or for the first file."""
    data, run = lesion_run
    patient = tmp_path / "patient 0042"
    patient.mkdir()
    for image in sorted((data / "test" / "nevus").glob("*.png"))[:2] + sorted((data / "test" / "melanoma").glob("*.png"))[:2]:
        shutil.copyfile(image, patient / f"visit-{image.name}")
    out = tmp_path / "patient.html"
    code, stdout, err = cli("predict", patient, "--model", run, "--report", out, "--workers", "0")
    assert code == 0, err
    page = out.read_text()
    assert "All 4 images are shown, least sure first." in page and "true class" not in page
    shown = [float(p) for p in re.findall(r"\(probability ([\d.]+)%\)", page)]
    assert len(shown) == 4 and shown == sorted(shown)


def test_benchmark_report_has_plot_tables_and_seconds(cli, benchmark_dir):
    code, _, err = cli("report", benchmark_dir)
    assert code == 0, err
    page = (benchmark_dir / "report.html").read_text()
    _self_contained(page)
    for part in ("Results", "test accuracy by shots", "test accuracy %", "test macro-F1 %", "test AUROC %", "seconds per run",
                 "1-shot", "2-shot", "symptom-zeroshot *"):
        assert part in page
    for method in ("symptom-zeroshot", "coop", "vip"):
        assert re.search(rf'<path d="[^"]*" fill="{method_color(method)}"/></svg>{method}\b', page)  # its key


def test_a_run_only_option_given_for_a_benchmark_folder_is_refused_not_ignored(cli, benchmark_dir, tmp_path):
    out = tmp_path / "r.html"
    code, _, err = cli("report", benchmark_dir, "--coverage", "0.8", "--out", out)
    assert code == 2 and error_lines(err) == [
        f"error: --coverage applies to a run's report; {benchmark_dir} is a benchmark folder (drop --coverage)"]
    code, _, err = cli("report", benchmark_dir, "--gallery", "48", "--coverage", "0.9", "--out", out)  # the defaults
    assert code == 2 and "--coverage, --gallery apply to a run's report" in err and not out.exists()
    # how a run's images are encoded: a script reporting runs and sweeps alike passes them for both
    code, _, err = cli("report", benchmark_dir, "--device", "cpu", "--workers", "0", "--out", out)
    assert code == 0 and out.exists(), err


def test_the_report_of_an_unfinished_sweep_says_which_rows_are_missing(cli, benchmark_dir, tmp_path):
    """A killed sweep's report averaged the seeds that finished under "mean ± std over seeds 1, 2" without
    a word: it now names the missing rows and says how to resume."""
    assert cli("report", benchmark_dir, "--out", tmp_path / "whole.html")[0] == 0
    assert "has not finished" not in (tmp_path / "whole.html").read_text()
    half = shutil.copytree(benchmark_dir, tmp_path / "half")
    document = json.loads((half / "results.json").read_text())
    document["rows"] = [r for r in document["rows"] if not (r["method"] == "vip" and str(r["shots"]) == "2"
                                                            and int(r["seed"]) == 2)]
    (half / "results.json").write_text(json.dumps(document))
    code, _, err = cli("report", half)
    assert code == 0, err
    page = (half / "report.html").read_text()
    assert "This sweep has not finished: 1 of its rows is missing (vip 2-shot seed 2)" in page
    assert "run the same vip benchmark command again to resume it" in page


def test_the_report_of_a_sweep_being_written_says_so_on_the_page_and_on_stderr(cli, benchmark_dir, tmp_path):
    """During a `vip benchmark --force`, until its first row was saved, the report showed the old rows without a
    word; during any sweep, its rows so far as if final."""
    import os
    import socket

    from vipcli.locks import output_lock
    from vipcli.sweep_folder import SWEEP_LOCK

    folder = shutil.copytree(benchmark_dir, tmp_path / "running")
    with output_lock(folder, lock=folder / SWEEP_LOCK):  # as a sweep running in another process holds it
        code, _, err = cli("report", folder)
    assert code == 0, err
    said = (f"a vip benchmark is writing {folder} now (pid {os.getpid()} on host {socket.gethostname()}): this "
            "report shows the rows saved so far, which that sweep may still add to or replace; run vip report again "
            "when it ends")
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [f"warning: {said}"]
    assert "A" + said[1:] + "." in (folder / "report.html").read_text()
    code, _, err = cli("report", folder)  # the sweep has ended (its lock file is gone)
    assert code == 0 and "writing" not in err and "is writing" not in (folder / "report.html").read_text()
    (folder / SWEEP_LOCK).write_text("123 elsewhere\n")  # left by a killed sweep: the OS lock died with it
    code, _, err = cli("report", folder)
    assert code == 0 and "writing" not in err


def test_each_method_has_one_colour_whatever_the_figure_shows():
    rows = [{"method": m, "shots": s, "seed": 1, "test_accuracy": 50.0 + s} for m in ("vip", "coop") for s in (1, 2)]
    reordered = [{"method": "linear-probe", "shots": 1, "seed": 1, "test_accuracy": 40.0}] + rows[::-1]
    for figure_rows in (rows, reordered):
        figure = draw_shots(figure_rows, title="t")
        colors = {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
        assert colors["vip"] == method_color("vip") and colors["coop"] == method_color("coop")
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert method_color("my-plugin") == method_color("my-plugin") not in METHOD_COLORS.values()


def test_two_plugins_drawn_together_never_share_a_colour(tmp_path):
    """`derm-coop` and `proto` both hash to one plugin colour (#B03060 then): one plot drew them in one colour, and its table's
    swatches too, so a reader could not tell them apart."""
    from vipcli.plots import EXTRA_COLORS, method_styles
    from vipcli.report.benchmark import _tables

    plugins = ["proto", "derm-coop"]
    assert method_color("derm-coop") == method_color("proto")  # the clash this test is about
    rows = [{"method": m, "shots": s, "seed": 1, "test_accuracy": 50.0 + s, "test_macro_f1": 40.0, "test_auroc": 60.0, "fit_s": 1.0}
            for m in ["vip", *plugins] for s in (1, 2)]
    colors = {line.get_label(): line.get_color() for line in draw_shots(rows, title="t").axes[0].get_lines()}
    assert colors["derm-coop"] == method_color("derm-coop")  # first by name keeps its own colour
    assert colors["proto"] != colors["derm-coop"] and colors["proto"] in EXTRA_COLORS
    assert colors["vip"] == method_color("vip")
    tables = _tables(rows)
    for method in plugins:  # the table's swatches are the plot's colours
        assert re.search(rf'<path d="[^"]*"[^>]* (fill|stroke)="{colors[method]}"[^>]*/></svg>{method}<', tables)
    assert method_styles(["proto"])["proto"][0] == method_color("proto")  # alone: its own colour, as everywhere
    many = method_styles([f"plugin-{i}" for i in range(len(EXTRA_COLORS))])
    assert len({color for color, _ in many.values()}) == len(EXTRA_COLORS)


def test_the_shots_legend_lies_below_the_plot_and_covers_no_line():
    """Eleven methods: a legend inside the axes ("best") covered the lines and bands of some; one beside
    the plot made the figure 8.6 inches wide, its legend off-screen on a phone (390 px)."""
    from vipcli.plots import MAX_FIGURE_WIDTH, MIN_FONT_SIZE

    methods = ["zeroshot", "symptom-zeroshot", "vip", "coop", "clap", "linear-probe", "tip-adapter", "tip-adapter-f",
               "biomedcoop", "vip-cop-only", "vip-mep-only"]
    rows = [{"method": m, "shots": 0 if "zeroshot" in m else s, "seed": seed, "test_accuracy": 50.0 + i + s + seed}
            for i, m in enumerate(methods) for s in (1, 4, 16) for seed in (1, 2)]
    figure = draw_shots(rows, title="t")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = figure.legends[0]
    plot, box = figure.axes[0].get_tightbbox(renderer), legend.get_window_extent(renderer)
    assert box.y1 < plot.y0 and box.y0 >= 0  # under the axes and their labels, inside the image
    assert box.x0 >= 0 and box.x1 <= figure.bbox.x1
    assert figure.get_figwidth() <= MAX_FIGURE_WIDTH and legend.get_texts()[0].get_fontsize() >= MIN_FONT_SIZE
    assert len(legend.get_texts()) == len(methods)


@needs_browser
def test_reports_render_in_a_real_browser(cli, lesion_run, benchmark_dir, tmp_path):
    data, run = lesion_run
    pages = [tmp_path / "run.html", tmp_path / "predicted.html", benchmark_dir / "report.html"]
    assert cli("report", run, "--out", pages[0], "--workers", "0", "--device", "cpu", "--gallery", "8")[0] == 0
    assert cli("predict", data / "test" / "melanoma", "--model", run, "--coverage", "0.9", "--report", pages[1],
               "--workers", "0")[0] == 0
    assert cli("report", benchmark_dir)[0] == 0
    for page in pages:
        result = render(page, tmp_path / f"browser-{page.stem}")
        text = page.read_text()
        embedded, drawn = text.count("<img "), text.count('<svg role="img"')
        assert len(result["images"]) == embedded and embedded + drawn > 0
        assert sum(f["kind"] == "svg" and f["shown"] > 100 and f["height"] > 100 for f in result["figures"]) == drawn
        undecoded = [i["alt"] for i in result["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
        assert not undecoded, f"{page.name}: images not decoded: {undecoded}"
        assert not result["errors"] and not result["console"], (result["errors"], result["console"])
        assert result["title"].startswith("vip ") and result["height"] > 600
        # not blank (a page of text with a figure drawn in thin vector lines is about 90% white)
        assert blank_fraction(result["screenshot"]) < 0.95 and distinct_colors(result["screenshot"]) > 200


@needs_browser
def test_the_shots_plot_is_whole_and_readable_on_a_phone(cli, benchmark_dir, tmp_path):
    """The shots plot kept its own size on a phone and the page scrolled sideways: at 390 px its legend was
    off-screen. Then it was scaled to the screen's width, its 9 pt text drawn 5 px high. Now it is scaled down
    no further than READABLE_TEXT_PX text, in a box that scrolls sideways with a shadow at the edge."""
    from browser import unreadable_figures
    from vipcli.report.html import READABLE_TEXT_PX

    page = tmp_path / "bench.html"
    assert cli("report", benchmark_dir, "--out", page)[0] == 0
    result = render(page, tmp_path / "phone", width=390)
    assert result["width"] <= result["viewport"] == 390 and len(result["figures"]) == 1
    assert not unreadable_figures(result, READABLE_TEXT_PX), unreadable_figures(result, READABLE_TEXT_PX)
    shots = result["figures"][0]
    assert shots["box"]["overflow"] > 50 and shots["box"]["cue"], shots  # it scrolls: the screen is narrower
    assert shots["text"] == pytest.approx(READABLE_TEXT_PX, abs=0.1), shots  # shrunk as far as it may be


@needs_browser
def test_figures_on_a_desktop_keep_their_own_size(cli, benchmark_dir, tmp_path):
    """The readable minimum width changes nothing where the figure fits: it is shown at its own size (9 pt, 12 px)."""
    page = tmp_path / "bench.html"
    assert cli("report", benchmark_dir, "--out", page)[0] == 0
    shots = render(page, tmp_path / "desktop", width=1280)["figures"][0]
    assert shots["shown"] == pytest.approx(7.2 * 96 + 2, abs=0.5) and shots["box"]["overflow"] == 0, shots  # +its border
    assert shots["text"] == pytest.approx(12, abs=0.05), shots


@pytest.mark.parametrize("method, used", [("zeroshot", 0), ("coop", 4)])
def test_report_of_a_0_1_0_zero_shot_run_says_it_used_no_training_image(cli, tmp_path, method, used):
    """vip 0.1.0 listed --shots images per class in a zero-shot run's train_subset, which the method
    never used: its report's "train (used)" says 0, as for a run of this vip; a few-shot run's stays."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0" / method
    assert json.loads((fixture / "split.json").read_text())["train_subset"]  # what 0.1.0 wrote
    page = _report_page(cli, fixture, tmp_path / "report.html")
    row = re.search(r"<tr><th scope=\"row\">melanoma</th><td class=\"num\">(\d+)</td>", page)
    assert row and int(row.group(1)) == used, page[:2000]


@pytest.mark.parametrize("method, schedule", [
    ("coop", "fewshot: 3 epochs, batch 4, lr 0.002"),
    ("linear-probe", "none: the method&#x27;s own fitting (`vip methods show linear-probe`)"),
    ("zeroshot", "none: no labelled images, no training")])
def test_report_schedule_row_is_the_fitting_the_method_did(cli, tmp_path, method, schedule):
    """A run records the schedule of --epochs/--batch-size/--lr whatever its method; the report showed it
    also for a method with its own fitting (tip-adapter-f: 20 epochs; clap: 300) or none (zeroshot),
    which never used it. It now says what `vip train` said: the method's own fitting, or no training."""
    from pathlib import Path

    run = Path(__file__).parent / "fixtures" / "run-v0.1.0" / method
    page = _report_page(cli, run, tmp_path / "report.html")
    row = re.search(r"<th scope=\"row\">schedule</th><td>([^<]*)</td>", page)
    assert row and row.group(1) == schedule, row and row.group(1)


def test_the_data_table_names_each_skipped_file_with_its_reason():
    from vipcli.report.run import _data_table

    split = {"train": [["a.png", 0]], "val": [], "test": [], "train_subset": ["a.png"],
             "unreadable": {"x/train/b/cine.dcm": "a multi-frame DICOM (3 frames): export the frame to classify"}}
    one = _data_table({"split": split, "class_names": ["a", "b"]})
    assert "1 file was skipped: x/train/b/cine.dcm (a multi-frame DICOM (3 frames)" in one
    split["unreadable"] = {f"x/{i}<.png": "cannot identify image file" for i in range(5)}
    five = _data_table({"split": split, "class_names": ["a", "b"]})
    assert "5 files were skipped: x/0&lt;.png (cannot identify image file)" in five and " and 2 more" in five
    assert "x/3&lt;.png" not in five


def test_a_run_records_the_files_no_class_took_and_its_report_names_them(cli, tmp_path):
    """Files left out of the data (a DICOM export without a suffix, an image beside the class folders) were
    only warned about when the run was trained: its report did not account for them."""
    import json

    from vipcli.lesion_world import write_dataset
    from vipcli.report.run import _data_table

    data = tmp_path / "data"
    write_dataset(data, n_per_class={"train": 6, "val": 4, "test": 4}, seed=0)
    (data / "train" / "melanoma" / "IM000001").write_bytes(b"\0" * 200)
    loose = next((data / "train" / "nevus").glob("*.png"))
    (data / "train" / "stray.png").write_bytes(loose.read_bytes())
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "2", "--epochs", "1",
                       "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["left_out"] == {"not_images": ["train/melanoma/IM000001"], "in_no_class": ["train/stray.png"]}
    table = _data_table({"split": split, "class_names": split["class_names"]})
    assert "Left out of the data: 1 file not named as an image vip reads (train/melanoma/IM000001); 1 file in " \
           "no class folder (train/stray.png) (all listed in split.json)." in table


def _data_with_copies(data: Path, n_per_class: dict) -> Path:
    """Lesion-world data whose test/melanoma holds copies of two training images, and whose train/nevus holds a
    copy of a training melanoma (one image in two classes)."""
    from vipcli.lesion_world import write_dataset

    write_dataset(data, n_per_class=n_per_class, seed=0)
    melanomas = sorted((data / "train" / "melanoma").glob("*.png"))
    for index, name in enumerate(("leak1.png", "leak2.png")):
        (data / "test" / "melanoma" / name).write_bytes(melanomas[index].read_bytes())
    (data / "train" / "nevus" / "twice.png").write_bytes(melanomas[2].read_bytes())
    return data


def test_a_run_records_the_images_in_two_splits_and_its_report_warns_of_them_first(cli, tmp_path):
    """`vip train` warned that the same image was in train and test, but kept it nowhere: its report said its test
    images were ones "the model was neither trained nor calibrated on". split.json now records every copy, and the
    report's summary counts them; a run recorded without them (an earlier vip) reports as before."""
    import hashlib

    data = _data_with_copies(tmp_path / "data", {"train": 6, "val": 4, "test": 4})
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "2", "--epochs", "1",
                       "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert "3 images are in more than one split or class" in err
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    leak = data / "test" / "melanoma" / "leak1.png"
    assert {"sha256": hashlib.sha256(leak.read_bytes()).hexdigest(), "files": [
        {"path": "train/melanoma/melanoma_00000.png", "split": "train", "class": "melanoma"},
        {"path": "test/melanoma/leak1.png", "split": "test", "class": "melanoma"}]} in split["duplicates"]
    assert sorted(tuple(f["path"] for f in group["files"]) for group in split["duplicates"]) == [
        ("train/melanoma/melanoma_00000.png", "test/melanoma/leak1.png"),
        ("train/melanoma/melanoma_00001.png", "test/melanoma/leak2.png"),
        ("train/melanoma/melanoma_00002.png", "train/nevus/twice.png")]
    assert split["linked_class_folders"] == []
    page = _report_page(cli, tmp_path / "run", tmp_path / "report.html")
    summary = page[page.index("<h2>Summary</h2>"):page.index("<h2>Settings and data</h2>")]
    assert "On the 10 test images (6 melanoma, 4 nevus), 2 of them copies of train or val images: " in summary
    assert "neither trained nor calibrated on" not in summary
    assert ('<p class="note">3 images are in more than one split or class of the data (2 in test/melanoma and '
            "train/melanoma, 1 in train/melanoma and train/nevus): a copy in val or test inflates its figures, a "
            "copy in two classes contradicts itself. Remove the copies; the files are named under Settings and "
            "data.</p>") in summary
    assert ("The same image is in more than one split or class: train/melanoma/melanoma_00000.png and "
            f"test/melanoma/leak1.png (sha256 {hashlib.sha256(leak.read_bytes()).hexdigest()[:12]}); ") in page
    for key in ("duplicates", "linked_class_folders"):  # as an earlier vip wrote it
        del split[key]
    (tmp_path / "run" / "split.json").write_text(json.dumps(split))
    older = _report_page(cli, tmp_path / "run", tmp_path / "older.html")
    assert "which the model was neither trained nor calibrated on: " in older
    assert "more than one split or class" not in older


def test_a_benchmark_records_the_images_in_two_splits_and_its_report_warns_of_them(cli, tmp_path):
    from vipcli.benchmark import BenchmarkConfig, run_benchmark
    from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

    data = _data_with_copies(tmp_path / "data", {"train": 4, "val": 2, "test": 3})
    shutil.rmtree(data / "test" / "nevus")  # test/nevus becomes a link to train/nevus
    (data / "test" / "nevus").symlink_to(data / "train" / "nevus", target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))
        run_benchmark(BenchmarkConfig(data=data, methods=("linear-probe",), shots=(1,), seeds=(1,),
                                      backbone=BackboneSettings("toy", device="cpu"), schedule=ScheduleSettings(epochs=1),
                                      encoding=EncodingSettings(views=1, workers=0), out=tmp_path / "bench"))
    split = json.loads((tmp_path / "bench" / "split.json").read_text())
    assert split["linked_class_folders"] == [{"folder": "test/nevus", "same_as": "train/nevus"}]
    assert len(split["duplicates"]) == 3
    code, _, err = cli("report", tmp_path / "bench", "--out", tmp_path / "bench.html")
    assert code == 0, err
    page = (tmp_path / "bench.html").read_text()
    top = page[:page.index("<h2>Settings and data</h2>")]
    assert ("3 images are in more than one split or class of the data (2 in test/melanoma and train/melanoma, 1 in "
            "train/melanoma and train/nevus); 1 class folder is the same folder as another (a symbolic link: "
            "test/nevus is train/nevus): ") in top
    assert ("Class folder test/nevus is the same folder as train/nevus (a symbolic link): its images are in two "
            "splits or classes.") in page


def _benchmark_with_files_left_out(root: Path) -> Path:
    """A tiny benchmark on data holding a DICOM export without a suffix, an image beside the class folders
    and a damaged test image."""
    from vipcli.benchmark import BenchmarkConfig, run_benchmark
    from vipcli.lesion_world import write_dataset
    from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

    data = root / "data"
    write_dataset(data, n_per_class={"train": 4, "val": 2, "test": 3}, seed=0)
    (data / "train" / "melanoma" / "IM000001").write_bytes(b"\0" * 200)
    (data / "train" / "stray.png").write_bytes(next((data / "train" / "nevus").glob("*.png")).read_bytes())
    (data / "test" / "nevus" / "broken.png").write_bytes(b"not a png")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        run_benchmark(BenchmarkConfig(data=data, methods=("linear-probe",), shots=(1,), seeds=(1,),
                                      backbone=BackboneSettings("toy", device="cpu"), schedule=ScheduleSettings(epochs=1),
                                      encoding=EncodingSettings(views=1, workers=0), out=root / "bench"))
    return root / "bench"


def test_a_benchmark_records_the_files_it_skipped_or_left_out_and_its_report_names_them(cli, tmp_path):
    """A run's report named the unreadable files and those no class took; a benchmark's, on the same data,
    did not, and its split.json did not record the files left out."""
    import json

    bench = _benchmark_with_files_left_out(tmp_path)
    split = json.loads((bench / "split.json").read_text())
    assert split["left_out"] == {"not_images": ["train/melanoma/IM000001"], "in_no_class": ["train/stray.png"]}
    assert list(split["unreadable"]) == ["test/nevus/broken.png"]  # relative to the data folder, as a run's
    code, _, err = cli("report", bench, "--out", tmp_path / "bench.html")
    assert code == 0, err
    page = (tmp_path / "bench.html").read_text()
    assert "1 file was skipped: " in page and "broken.png" in page
    assert "Left out of the data: 1 file not named as an image vip reads (train/melanoma/IM000001); 1 file in " \
           "no class folder (train/stray.png) (all listed in split.json)." in page
    for key in ("left_out", "unreadable"):  # written by an earlier vip: the report names what is recorded
        del split[key]
    (bench / "split.json").write_text(json.dumps(split))
    code, _, err = cli("report", bench, "--out", tmp_path / "older.html")
    assert code == 0 and "Left out" not in (tmp_path / "older.html").read_text(), err
    (bench / "split.json").unlink()
    code, _, err = cli("report", bench, "--out", tmp_path / "no-split.html")
    assert code == 0 and "skipped" not in (tmp_path / "no-split.html").read_text(), err


@needs_browser
def test_a_reader_sees_each_columns_best_mean_in_bold_in_the_rendered_report(benchmark_dir, tmp_path):
    from vipcli.metrics import mean_and_std, row_figure
    from vipcli.report.benchmark import METRICS, benchmark_report

    (tmp_path / "bench.html").write_text(benchmark_report(benchmark_dir), encoding="utf-8")
    result = render(tmp_path / "bench.html", tmp_path / "browser")
    rows = json.loads((benchmark_dir / "results.json").read_text())["rows"]
    expected, names = [], []
    for key, _ in METRICS:  # each table in page order: the best mean of each row of cells, recomputed here
        means = {(r["method"], str(r["shots"])): None for r in rows}
        for method, shots in means:  # zero-shot rows (shots 0): one figure for every column
            mine = [row_figure(r, key) for r in rows if r["method"] == method and str(r["shots"]) == shots]
            means[method, shots] = mean_and_std(mine)
        named = []
        for column in ("1", "2"):
            cells = {m: v for (m, s), v in means.items() if s in (column, "0") and v[0] is not None}
            top = max(mean for mean, _ in cells.values()) if len(cells) > 1 else None
            expected += [(m, v) for m, v in cells.items() if v[0] == top]
            named.append(" and ".join(m for m in dict.fromkeys(r["method"] for r in rows) if m in cells
                                      and cells[m][0] == top) + f" at {column}-shot")
        names.append(", ".join(named))
    shown = result["bold"]
    assert shown and sorted(shown) == sorted(f"{mean:.2f} ± {std:.2f}" for _, (mean, std) in expected)
    assert not result["console"]
    text = " ".join(result["text"].split())  # what a screen reader, which says nothing of bold, reads: who they are
    assert [f"In bold: the highest mean in each column (each of a tie): {n}." for n in names] == re.findall(
        r"In bold: the highest mean in each column \(each of a tie\)[^.]*\.", text)


@needs_browser
def test_a_reader_sees_the_files_a_benchmark_left_out_in_its_rendered_report(cli, tmp_path):
    bench = _benchmark_with_files_left_out(tmp_path)
    assert cli("report", bench, "--out", tmp_path / "bench.html")[0] == 0
    result = render(tmp_path / "bench.html", tmp_path / "browser")
    text = " ".join(result["text"].split())
    assert "Left out of the data: 1 file not named as an image vip reads (train/melanoma/IM000001); 1 file in no " \
           "class folder (train/stray.png) (all listed in split.json)." in text
    assert "1 file was skipped: " in text and "broken.png" in text and not result["console"]


def test_an_unfinished_sweep_counts_every_row_of_a_method_that_finished_none(cli, benchmark_dir, tmp_path):
    """A sweep killed before vip's first row said "1 of its rows is missing (vip (no finished row))" for all of
    vip's rows (a method with none is listed as one entry): the count is now of rows."""
    half = shutil.copytree(benchmark_dir, tmp_path / "half")
    document = json.loads((half / "results.json").read_text())
    sweep = document["config"]["last_sweep"]
    assert "vip" in sweep["methods"] and len(sweep["shots"]) * len(sweep["seeds"]) > 1
    document["rows"] = [r for r in document["rows"] if r["method"] != "vip"]
    (half / "results.json").write_text(json.dumps(document))
    code, _, err = cli("report", half)
    assert code == 0, err
    vip_rows = len(sweep["shots"]) * len(sweep["seeds"])
    assert (f"This sweep has not finished: {vip_rows} of its rows are missing (vip (no finished row))"
            in (half / "report.html").read_text())


def test_an_unfinished_sweep_counts_the_rows_it_does_not_name_in_rows(cli, benchmark_dir, tmp_path):
    """Past the six rows it names, the note said "and 2 more" beside "11 of its rows": the 2 were entries, one of
    them a method with no finished row (4 rows). What is not named is now counted in rows too."""
    half = shutil.copytree(benchmark_dir, tmp_path / "half")
    document = json.loads((half / "results.json").read_text())
    sweep = document["config"]["last_sweep"]
    assert (sweep["methods"], sweep["shots"], sweep["seeds"]) == (["symptom-zeroshot", "coop", "vip"], [1, 2], [1, 2])
    kept = {(m, shots, 1) for m, shots in (("symptom-zeroshot", 0), ("coop", 1), ("vip", 1))}
    document["rows"] = [r for r in document["rows"] if (r["method"], int(r["shots"]), int(r["seed"])) in kept]
    sweep["methods"].append("not-installed")  # no finished row: all its 2 x 2 rows are missing, one entry
    (half / "results.json").write_text(json.dumps(document))
    code, _, err = cli("report", half)
    assert code == 0, err
    page = " ".join((half / "report.html").read_text().split())
    assert ("This sweep has not finished: 11 of its rows are missing (symptom-zeroshot seed 2, coop 1-shot seed 2, "
            "coop 2-shot seed 1, coop 2-shot seed 2, vip 1-shot seed 2, vip 2-shot seed 1 and 5 more rows)") in page
