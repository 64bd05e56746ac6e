"""Reports as everyone reads them: contrast of text on figures and pages, figures told apart without
colour, and what a screen reader is given (alt text, table headers)."""

from __future__ import annotations

import math

import pytest
from matplotlib.colors import to_rgb

import test_report
from vipcli.colours import DICHROMACY, VISIONS, as_seen_with, closest_pair, colour_difference, delta_e76, lab
from vipcli.plots import (BUILT_IN_LEAST_DIFFERENCE, EXTRA_COLORS, LEAST_DIFFERENCE, METHOD_COLORS,
                          contrast_ratio)

lesion_run = test_report.lesion_run  # the fixtures, shared
benchmark_dir = test_report.benchmark_dir
EVERY_METHOD_COLOR = sorted(set(METHOD_COLORS.values()) | set(EXTRA_COLORS))


@pytest.fixture(autouse=True)
def _close_figures():
    """The figures a test drew are closed after it (pyplot keeps every one open)."""
    yield
    from vipcli.plots import pyplot

    pyplot().close("all")


@pytest.mark.parametrize("color", EVERY_METHOD_COLOR)
def test_confusion_matrix_counts_contrast_with_their_cell(color):
    """Counts just above 60% of the largest were white on a pale cell: 1.6:1 on vip-cop-only's orange. Cells are
    shaded by their row's share now, and drawn over the white page."""
    from vipcli.report.figures import cell_on_white, draw_confusion_matrix, row_shares

    matrix = [[100, 61], [59, 30]]
    shares = row_shares(matrix)
    figure = draw_confusion_matrix(matrix, ["a", "b"], color, "t")
    cells = figure.axes[0].collections[0]
    for label in figure.axes[0].texts:
        i, j = (round(v) for v in label.get_position()[::-1])
        cell = cell_on_white(cells.cmap, shares[i][j])
        ratio = contrast_ratio(to_rgb(label.get_color()), cell)
        assert ratio >= 4.5, f"{label.get_text()} on {color}: contrast {ratio:.2f}"


def _cell_colour(png, figure, axes, column: int, row: int) -> tuple[int, int, int]:
    """The colour of a confusion-matrix cell in `png`, near its top left corner (clear of its count)."""
    from PIL import Image

    x, y = axes.transData.transform((column - 0.4, row - 0.4))
    with Image.open(png) as image:
        return image.convert("RGB").getpixel((round(x), round(figure.bbox.height - y)))


def test_confusion_matrix_cells_are_shaded_by_their_rows_share_and_show_it(tmp_path):
    """Cells were shaded by count: of 10 melanomas, 9 found (90%) showed near white beside 900 of 990 nevi found
    (91%), so the small class's sensitivity could not be seen. A cell now shows its count and its row's share, and
    is as dark as its share."""
    from vipcli.report.figures import draw_confusion_matrix

    matrix = [[9, 1], [90, 900]]
    figure = draw_confusion_matrix(matrix, ["melanoma", "nevus"], "#0072B2", "t")
    axes = figure.axes[0]
    png = tmp_path / "matrix.png"
    figure.savefig(png)
    found, missed, nevi = (_cell_colour(png, figure, axes, *cell) for cell in ((0, 0), (1, 0), (1, 1)))
    assert max(abs(a - b) for a, b in zip(found, nevi)) <= 6, (found, nevi)  # 90% and 91%: one shade
    assert sum(missed) > sum(found) + 300, (missed, found)  # 10% of the melanomas: pale
    texts = [t.get_text() for t in axes.texts]
    assert {"9", "90.0%", "1", "10.0%", "900", "90.9%"} <= set(texts)


PAGE_BACKGROUNDS = ("#ffffff", "#fafafa", "#fff5f5", "#fff8e1", "#eef7ee", "#fdecea", "#f4f4f6")  # body, cards, notes, th


def test_every_text_colour_of_a_report_is_readable_on_its_backgrounds():
    """The footer (where the report says which vip wrote it, from which folder) was #777 on white: 4.48:1."""
    import re

    from vipcli.report.html import STYLE

    for selector, rule in re.findall(r"([^{}]+)\{([^}]*)\}", STYLE):
        color = re.search(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{3,6})", rule)
        if not color or "background" in rule:  # a rule with its own background (the tags) is checked below
            continue
        for background in PAGE_BACKGROUNDS:
            ratio = contrast_ratio(to_rgb(_long(color.group(1))), to_rgb(background))
            assert ratio >= 4.5, f"{selector.strip()}: {color.group(1)} on {background} is {ratio:.2f}:1"
    for foreground, background in (("#fff", "#c62828"), ("#fff", "#2e7d32")):  # .tag.wrong, .tag.right
        assert contrast_ratio(to_rgb(_long(foreground)), to_rgb(background)) >= 4.5


def _long(color: str) -> str:
    """'#777' -> '#777777'."""
    return "#" + "".join(c * 2 for c in color[1:]) if len(color) == 4 else color


def test_table_cells_are_tied_to_their_column_and_row_names():
    """Every header cell was a bare <th> and every row's name a <td>: a screen reader read "79.33" without
    saying that it is the test accuracy of the split "test"."""
    import re

    from vipcli.report.html import table

    facts = table("Scores", ["split", "images", "accuracy %"], [["val", 64, "79.69"], ["test", 300, "79.33"]],
                  numeric={1, 2})
    assert re.findall(r"<th\b[^>]*>", facts.split("<tbody>")[0]) == ['<th scope="col">'] * 3
    rows = re.findall(r"<tr>(.*?)</tr>", facts.split("<tbody>")[1])
    assert rows[1] == '<th scope="row">test</th><td class="num">300</td><td class="num">79.33</td>'
    keyed = table("Facts", ["", ""], [["model", "run"]])  # key-value facts: no header row, the key names the row
    assert "<thead>" not in keyed and '<th scope="row">model</th><td>run</td>' in keyed


def test_figure_alt_text_says_what_the_figure_shows():
    """Every figure's alt text was its title alone ("test confusion matrix: data, toy"): a reader who
    cannot see the image learnt nothing of its counts or weights, which no table of the report holds."""
    from vipcli.report.benchmark import _shots_alt
    from vipcli.report.figures import confusion_matrix_alt, merge_weights_alt, reliability_alt

    alt = confusion_matrix_alt([[120, 30], [32, 118]], ["melanoma", "nevus"], "test confusion matrix: data, toy")
    assert alt == ("test confusion matrix: data, toy. Test images by true class: melanoma: 120 predicted melanoma, "
                   "30 predicted nevus; nevus: 32 predicted melanoma, 118 predicted nevus.")
    alt = merge_weights_alt({"melanoma": [("asymmetric", 0.2534), ("dots", 0.7466)]}, "merge weights: data, toy")
    assert "melanoma (uniform weight 0.500): asymmetric 0.253, dots 0.747" in alt
    bins = [{"lower": 0.5, "upper": 0.6, "count": 3, "accuracy": 0.5, "confidence": 0.55},
            {"lower": 0.6, "upper": 0.7, "count": 0, "accuracy": 0.0, "confidence": 0.0}]
    alt = reliability_alt([("before (T = 1)", bins, 0.1234), ("after (T = 1.8)", bins, 0.05)], "reliability: data")
    assert "accuracy" in alt and "before (T = 1), ECE 12.34% (1 confidence bins" in alt and "ECE 5.00%" in alt
    rows = [{"method": "vip", "shots": s, "seed": 1, "test_accuracy": 70.0} for s in (1, 4)]
    rows.append({"method": "zeroshot", "shots": 0, "seed": 1, "test_accuracy": 50.0})
    alt = _shots_alt(rows, "test accuracy by shots: data, toy")
    assert "(1, 4 shots)" in alt and "(vip, zeroshot)" in alt and "test accuracy %" in alt


def test_the_run_reports_figures_carry_their_figures_in_alt_text(cli, lesion_run, tmp_path):
    import json
    import re
    from html import unescape

    _, run = lesion_run
    assert cli("report", run, "--out", tmp_path / "r.html", "--workers", "0", "--device", "cpu", "--gallery", "2")[0] == 0
    alts = [unescape(a) for a in re.findall(r'<svg role="img" aria-label="([^"]*)"', (tmp_path / "r.html").read_text())]
    matrix = json.loads((run / "metrics.json").read_text())["test"]["confusion_matrix"]
    assert len(alts) == 3 and f"melanoma: {matrix[0][0]} predicted melanoma, {matrix[0][1]} predicted nevus" in alts[0]
    assert "ECE" in alts[1] and "Merge weight of each symptom" in alts[2]


def test_methods_in_the_shots_plot_are_told_apart_without_colour():
    """Every learning method was a solid line with round markers and every zero-shot method a plain dashed
    line: in greyscale print, or for a reader who cannot tell vip's vermillion from vip-cop-only's orange,
    the legend could not be matched to the lines."""
    from vipcli.plots import METHOD_MARKERS, draw_shots, method_marker

    methods = list(METHOD_COLORS) + ["my-plugin"]
    rows = [{"method": m, "shots": 0 if "zeroshot" in m else s, "seed": 1, "test_accuracy": 50.0 + i + s}
            for i, m in enumerate(methods) for s in (1, 4)]
    figure = draw_shots(rows, title="t")
    legend = figure.legends[0]
    styles = {text.get_text().split(" ")[0]: (handle.get_marker(), handle.get_linestyle())
              for text, handle in zip(legend.get_texts(), legend.legend_handles)}
    assert set(styles) == set(methods)
    assert len(set(styles.values())) == len(methods), styles  # no two methods drawn alike
    assert all(styles[m][0] == method_marker(m) not in ("", "None") for m in methods)
    assert len(set(METHOD_MARKERS.values())) == len(METHOD_MARKERS) and set(METHOD_MARKERS) == set(METHOD_COLORS)


@pytest.mark.parametrize("color", EVERY_METHOD_COLOR)
def test_reliability_bin_counts_are_readable_on_their_bar(color):
    """The test images of each bin were counted in 6-point #333 on the bar: 2.5:1 on coop's blue, 1.5:1 on
    biomedcoop's navy, and too small to read once the report was printed."""
    from vipcli.report.figures import draw_reliability

    bins = [{"lower": 0.5, "upper": 0.6, "count": 12, "accuracy": 0.5, "confidence": 0.55},
            {"lower": 0.6, "upper": 0.7, "count": 3, "accuracy": 0.0, "confidence": 0.65}]
    figure = draw_reliability([("before (T = 1)", bins, 0.1)], color, "t")
    bar = [0.85 * c + 0.15 for c in to_rgb(color)]  # the bar (alpha 0.85) over the white axes
    counts = {label.get_text(): label for label in figure.axes[0].texts}
    assert set(counts) == {"12", "3"}
    for count, background in (("12", bar), ("3", (1.0, 1.0, 1.0))):  # an empty bar: its count is on white
        ratio = contrast_ratio(to_rgb(counts[count].get_color()), background)
        assert ratio >= 4.5 and counts[count].get_fontsize() >= 7, (count, round(ratio, 2))


def _roundness(ink) -> float:
    """How much a marker drawn as `ink` (an array of coverage, 0-1) looks like a dot: its overlap (intersection over
    union) with the disc of its own area about its own centre, 1 for a disc."""
    import numpy as np

    y, x = np.mgrid[0:ink.shape[0], 0:ink.shape[1]] + 0.5
    area = ink.sum()
    distance = np.hypot(y - (ink * y).sum() / area, x - (ink * x).sum() / area)
    disc = np.clip(np.sqrt(area / np.pi) - distance + 0.5, 0, 1)  # drawn with a pixel of anti-aliasing, as the key is
    return float(np.minimum(ink, disc).sum() / np.maximum(ink, disc).sum())


@test_report.needs_browser
def test_no_other_built_in_methods_key_looks_like_vips_dot_at_the_size_a_report_draws_it(tmp_path):
    """clap's key was a hexagon: drawn 0.8 rem high (12.8 px) by a browser, as a report's tables draw it, it was a dot
    to the eye, vip's (roundness 0.93 against vip's 0.98; a square is 0.84). clap's is now an hourglass. Each key is
    drawn in black by Chromium at that size and compared with a disc of its own area."""
    import numpy as np
    from PIL import Image

    from browser import screenshot
    from vipcli.plots import METHOD_MARKERS
    from vipcli.report.html import STYLE
    from vipcli.report.swatches import swatch

    from vipcli.plots import EXTRA_MARKERS

    plugins = {f"plugin {i}": marker for i, marker in enumerate(EXTRA_MARKERS)}
    before = {"a hexagon (clap's before)": "h", "a plugin's 'H' before": "H", "a plugin's '8' before": "8"}
    markers = {**METHOD_MARKERS, **plugins, **before}
    cells = "".join(f'<div style="height: 40px; font-size: 16px">{swatch("", "#000000", marker)}</div>'
                    for marker in markers.values())
    page = tmp_path / "keys.html"
    page.write_text(f"<!DOCTYPE html><html><head><style>{STYLE}</style></head><body style='margin: 0; padding: 0'>"
                    f"<div style='display: grid; grid-template-columns: repeat({len(markers)}, 40px); padding-top: 30px'>"
                    f"{cells}</div></body></html>", encoding="utf-8")
    png = screenshot(page, tmp_path / "keys.png", 40 * len(markers) + 40, 200)
    with Image.open(png) as image:
        ink = 1 - np.asarray(image.convert("L"), dtype=float) / 255
    round_ = {name: _roundness(ink[25:75, 40 * i: 40 * (i + 1)]) for i, name in enumerate(markers)}
    assert all(3 < ink[25:75, 40 * i: 40 * (i + 1)].sum() < 200 for i in range(len(markers)))  # each drawn, whole
    assert round_["vip"] > 0.95 and all(round_[name] > 0.9 for name in before)  # what the check tells apart
    alike = {name: round(value, 3) for name, value in round_.items() if value > 0.9 and name != "vip"}
    assert set(alike) == set(before), f"keys that look like vip's dot: {alike}"


def test_no_two_methods_markers_look_alike():
    """A plugin's marker could be 'H' or '8', round like vip's dot 'o' to the eye at the shots plot's 7 pt (and
    'p' too), 'd' a thin copy of vip-mep-only's diamond, 'X' and '+' of zeroshot's 'x' and symptom-zeroshot's 'P'.
    Plugins now draw filled letter shapes unlike each other and every built-in's (the families of look-alikes,
    round markers among them, are named in `MARKER_LOOKALIKES`)."""
    from vipcli.plots import EXTRA_MARKERS, METHOD_MARKERS, ROUND_MARKERS, lookalike_markers

    assert {"o", "h", "H", "8", "p"} <= ROUND_MARKERS
    assert lookalike_markers([*METHOD_MARKERS.values(), *EXTRA_MARKERS]) == []
    assert len(EXTRA_MARKERS) >= 4  # four plugins in one figure, four shapes
    before = [*METHOD_MARKERS.values(), "p", "X", "d", "H", "8", "+", "1", "2"]  # the plugins' markers were
    assert {("o", "H"), ("o", "8"), ("H", "8"), ("D", "d"), ("x", "X"), ("P", "+")} <= set(lookalike_markers(before))


def _rgb(colour: str) -> tuple[float, float, float]:
    """'#56B4E9' -> (0.34, 0.71, 0.91)."""
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


def test_every_plugin_method_colour_shows_on_white_at_the_minimum_for_lines():
    """A plugin method could be drawn in #F0E442, 1.3:1 on the white figure: nearly invisible."""
    assert all(contrast_ratio(_rgb(colour), (1.0, 1.0, 1.0)) >= 3.0 for colour in EXTRA_COLORS)


def test_every_built_in_method_colour_shows_on_white_at_the_minimum_for_lines():
    """vip-cop-only's (then) Okabe-Ito orange #E69F00 was 2.25:1 on white and linear-probe's sky blue #56B4E9 2.31:1,
    under WCAG 1.4.11's 3:1 for the lines and markers that tell methods apart."""
    low = {method: round(contrast_ratio(_rgb(colour), (1.0, 1.0, 1.0)), 2) for method, colour in METHOD_COLORS.items()
           if contrast_ratio(_rgb(colour), (1.0, 1.0, 1.0)) < 3.0}
    assert not low, low


def _sample_figures():
    """Every figure a report draws, with awkward data: many classes, 3-digit bin counts, long symptoms,
    eleven methods."""
    from vipcli.plots import draw_shots
    from vipcli.report.figures import draw_confusion_matrix, draw_merge_weights, draw_reliability

    names = [f"class {i}" for i in range(8)]
    yield "confusion, 2 classes", draw_confusion_matrix([[101, 49], [13, 137]], ["melanoma", "nevus"], "#D55E00", "t")
    yield "confusion, 8 classes", draw_confusion_matrix([[i * j for j in range(8)] for i in range(8)], names, "#0072B2", "t")
    bins = [{"lower": i / 15, "upper": (i + 1) / 15, "count": 100 + i, "accuracy": i / 15, "confidence": (i + 0.5) / 15}
            for i in range(15)]
    yield "reliability", draw_reliability([("before (T = 1)", bins, 0.1), ("after (T = 1.6)", bins, 0.05)], "#D55E00", "t")
    long = "The lesion shows an irregular pigment network with thick, dark lines that end abruptly at its edge"
    yield "merge weights", draw_merge_weights({"melanoma": [(long, 0.6), ("dots", 0.4)], "nevus": [("even", 1.0)]},
                                              "#D55E00", "merge weights: data, toy")
    rows = [{"method": m, "shots": 0 if "zeroshot" in m else s, "seed": 1, "test_accuracy": 50.0 + i + s}
            for i, m in enumerate(METHOD_COLORS) for s in (1, 4)]
    yield "shots", draw_shots(rows, title="test accuracy by shots: data, toy")


def test_every_figure_is_printable_at_its_own_size_with_text_of_9_points_or_more():
    """Legends, merge weights and bin counts were 7-8 pt, in figures up to 8.6 inches wide that a printed page
    shrank further (to about 5.5 pt)."""
    from matplotlib.text import Text

    from vipcli.plots import MAX_FIGURE_WIDTH, MIN_FONT_SIZE

    for name, figure in _sample_figures():
        figure.canvas.draw()
        assert figure.get_figwidth() <= MAX_FIGURE_WIDTH, (name, figure.get_figwidth())
        small = [(t.get_text(), t.get_fontsize()) for t in figure.findobj(Text)
                 if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_SIZE]
        assert not small, (name, small[:5])


def test_a_figure_shrinks_on_a_narrow_screen_no_further_than_its_smallest_text_stays_readable():
    """At 390 px a 7.2-inch figure was scaled to the screen, its 9 pt text drawn 5 CSS px high. Each figure now
    keeps a minimum width, from its own width and its smallest text, at which that text is READABLE_TEXT_PX high
    (a figure whose smallest text is larger may shrink further; none is made wider than its own size)."""
    import re

    from matplotlib.text import Text

    from vipcli.plots import MAX_FIGURE_WIDTH, MIN_FONT_SIZE, svg_markup
    from vipcli.report.html import READABLE_TEXT_PX, figure, readable_width

    widths = {}
    for name, drawn in _sample_figures():
        drawn.canvas.draw()
        smallest = min(t.get_fontsize() for t in drawn.findobj(Text) if t.get_visible() and t.get_text().strip())
        inches = drawn.get_figwidth()
        svg = svg_markup(drawn)
        widths[name] = readable_width(svg)
        assert widths[name] == pytest.approx(min(inches * 96, inches * 72 * READABLE_TEXT_PX / smallest), abs=0.01), name
        shown = re.search(r'--readable-width: (\d+)px', figure(svg, "alt"))
        assert shown and int(shown.group(1)) == math.ceil(widths[name])  # never rounded below the readable width
    assert widths["shots"] == pytest.approx(MAX_FIGURE_WIDTH * 72 * READABLE_TEXT_PX / MIN_FONT_SIZE, abs=0.01)  # 461 px
    assert widths["confusion, 2 classes"] < widths["shots"]  # its smallest text is 10 pt, its width 4.8 inches
    assert readable_width("<svg></svg>") == 0  # markup that is not matplotlib's: scaled to the screen as before


def test_a_figure_too_wide_for_the_screen_scrolls_in_its_box_with_the_tables_edge_shadow():
    """The figure's box scrolls sideways with the same shadow rule as a wide table's; the page itself never does.
    On paper it shows whole, like a table."""
    import re

    from vipcli.report.html import STYLE

    screen, printed = STYLE[:STYLE.index("@media print")], STYLE[STYLE.index("@media print"):]
    shadow = re.search(r"^([^{}\n]*)\{[^{}]*overflow-x: auto;[^{}]*radial-gradient[^{}]*\}", screen, re.M)
    assert shadow and {".table", ".scroll"} <= {selector.strip() for selector in shadow.group(1).split(",")}
    assert re.search(r"figure svg \{[^{}]*max-width: 100%;[^{}]*min-width: var\(--readable-width, 0\);", screen)
    assert re.search(r"\.table, \.scroll \{ overflow: visible; background: none; \}", printed)
    # the shadow shows through the figure's clear background; it was blended through a white one on a phone
    # ("multiply"), which a page a browser darkens regardless turned into dark words on the dark edge
    assert "mix-blend-mode" not in STYLE


def test_a_report_declares_itself_a_light_document():
    """Its colours carry meaning (a method's colour in the figure and its swatch in the table, the calibration
    diagonal, wrong/right tags) and are checked against white; a browser's forced dark mode recoloured the
    page around the figures. It says it is light only, which tells a browser not to darken it."""
    import re

    from vipcli.report.html import STYLE, page

    document = page("vip report: t", "", [], "")
    head = document[:document.index("</head>")]
    assert '<meta name="color-scheme" content="only light">' in head
    assert re.search(r":root \{ color-scheme: only light; \}", STYLE)
    assert "prefers-color-scheme" not in STYLE  # no dark theme to fall into


@test_report.needs_browser
def test_a_report_looks_the_same_to_a_reader_who_prefers_dark_or_has_the_browser_darken_pages(cli, benchmark_dir,
                                                                                            tmp_path):
    """With Chromium's Auto Dark Mode for Web Contents and a dark preference (how a phone darkens pages), the
    page's text, tables and swatches turned light-on-dark around figures that stayed white.

    A screenshot that differs is taken again, with a light one beside it: a real effect of the dark flags
    repeats, while a frame a busy machine drew once differently (this test failed once in a full CI run and
    never alone) does not. The failing screenshots stay in pytest's kept temporary folder, named in the message."""
    import re

    from browser import pixel_difference, screenshot

    page = tmp_path / "bench.html"
    assert cli("report", benchmark_dir, "--out", page)[0] == 0
    dark = ("--force-dark-mode", "--enable-features=WebContentsForceDark")
    # the flags darken a page that does not say it is light, in this browser (else the test could not fail)
    undeclared = tmp_path / "undeclared.html"
    undeclared.write_text(re.sub(r'<meta name="color-scheme"[^>]*>|color-scheme: only light;', "", page.read_text()))
    assert pixel_difference(screenshot(undeclared, tmp_path / "undeclared-light.png", 1000, 1400),
                            screenshot(undeclared, tmp_path / "undeclared-darkened.png", 1000, 1400, *dark))
    for name, flags in (("prefers-dark", dark[:1]), ("darkened", dark)):
        differences = []
        for attempt in (1, 2):
            light = screenshot(page, tmp_path / f"light-{name}-{attempt}.png", 1000, 1400)
            difference = pixel_difference(light, screenshot(page, tmp_path / f"{name}-{attempt}.png", 1000, 1400, *flags))
            if difference is None:
                break
            differences.append(difference)
        assert len(differences) < 2, f"{name}: {'; '.join(differences)} (in {tmp_path})"


@test_report.needs_browser
@pytest.mark.parametrize("width", [1000, 500])
def test_a_report_a_browser_darkens_regardless_stays_readable(cli, lesion_run, benchmark_dir, tmp_path, width):
    """Chromium's forced dark mode on a light system theme darkens a page whatever it declares. It lightened every
    figure's dark words and lines but left the figures' white backgrounds white: axis labels, ticks, legends and the
    confusion matrix's counts drawn white on white (contrast 1:1), and the linear probe's black line with them.
    Figures have a clear background now (the page shows through) and the matrix's pale cells are see-through.

    Each piece of text, as drawn at a laptop's and a phone's width, must stand out from what is behind it (its
    box's darkest and lightest pixels; anti-aliased glyphs read under their colours' ratio, so 3:1)."""
    from browser import text_contrasts

    _, run = lesion_run
    pages = [tmp_path / "run.html", tmp_path / "bench.html"]
    assert cli("report", run, "--out", pages[0], "--workers", "0", "--device", "cpu", "--gallery", "2")[0] == 0
    assert cli("report", benchmark_dir, "--out", pages[1])[0] == 0
    for page in pages:
        contrasts = text_contrasts(page, tmp_path / f"{page.stem}-{width}", width,
                                   "--enable-features=WebContentsForceDark")
        assert len(contrasts) > 100, page.name  # the page's words were found
        faint = sorted((round(ratio, 2), text) for ratio, text in contrasts if ratio < 3.0)
        assert not faint, f"{page.name} at {width} px: {faint[:12]} (in {tmp_path})"


def test_report_figures_are_inline_svg_whose_text_is_text(cli, lesion_run, tmp_path):
    """The figures were PNGs: blurred at 200% zoom, and their words could not be searched or copied."""
    import re

    _, run = lesion_run
    assert cli("report", run, "--out", tmp_path / "r.html", "--workers", "0", "--device", "cpu", "--gallery", "2")[0] == 0
    page = (tmp_path / "r.html").read_text()
    figures = re.findall(r"<figure>(.*?)</figure>", page, re.S)
    assert len(figures) == 3 and all(re.match(r'<div class="scroll" style="--readable-width: \d+px"><svg role="img" '
                                              r'aria-label="', f) for f in figures)
    assert not any(re.search(r"<img|data:image/png", f) for f in figures) and "<?xml" not in page and "<metadata>" not in page
    assert ">predicted class</text>" in figures[0] and ">confidence of the predicted class</text>" in figures[1]
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "an id is used twice: one figure's clip path or marker would stand in for another's"
    references = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', page))
    assert references and references <= set(ids)


def test_the_same_figure_gives_the_same_svg():
    from vipcli.plots import svg_markup
    from vipcli.report.figures import draw_confusion_matrix

    first, second = (svg_markup(draw_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], "#D55E00", "t")) for _ in range(2))
    assert first == second and first.startswith("<svg ")


def test_a_figures_black_follows_the_page_and_falls_back_to_black():
    """Chromium 156's forced dark mode leaves inline SVG's own colours alone: black words on the darkened page. A
    figure's black is CanvasText (it follows the page), after a plain black for a viewer without system colours."""
    import re

    from vipcli.plots import svg_markup
    from vipcli.report.figures import draw_confusion_matrix

    markup = svg_markup(draw_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], "#D55E00", "t"))
    texts = re.findall(r"<text [^>]*>", markup)
    assert texts and all(re.search(r'style="[^"]*\bfill: ', t) for t in texts)  # no text left to SVG's default black
    assert "fill: CanvasText" in markup and "stroke: #000000; stroke: CanvasText" in markup
    assert not re.search(r"(fill|stroke): #000000(?!; \1: CanvasText)", markup)


def test_every_table_of_every_report_is_named_by_a_caption(cli, lesion_run, tmp_path):
    """A screen reader listed "table, 5 columns" with no name, and some tables (images per class and split,
    sensitivity and precision) had no heading of their own."""
    import re

    data, run = lesion_run
    pages = [tmp_path / "run.html", tmp_path / "predicted.html", tmp_path / "bench.html"]
    assert cli("report", run, "--out", pages[0], "--workers", "0", "--device", "cpu", "--gallery", "2")[0] == 0
    assert cli("predict", data / "test" / "nevus", "--model", run, "--report", pages[1], "--workers", "0")[0] == 0
    for page in pages[:2]:
        tables = re.findall(r"<table>(.*?)</table>", page.read_text(), re.S)
        assert tables and all(re.match(r"<caption>[^<]{3,80}</caption>", t) for t in tables), page.name
    captions = re.findall(r"<caption>([^<]*)</caption>", pages[0].read_text())
    assert len(set(captions)) == len(captions) and "Images per class and split" in captions


def test_every_table_of_a_benchmark_report_is_named_by_a_caption(benchmark_dir):
    import re

    from vipcli.report.benchmark import benchmark_report

    tables = re.findall(r"<table>(.*?)</table>", benchmark_report(benchmark_dir), re.S)
    captions = [re.match(r"<caption>([^<]{3,80})</caption>", t) for t in tables]
    assert len(tables) == 7 and all(captions)  # settings, images per class and split, 4 metrics, seconds
    assert [c.group(1) for c in captions[1:3]] == ["Images per class and split",
                                                   "test accuracy % (mean ± std over seeds 1, 2)"]


def test_no_two_built_in_methods_share_a_look_alike_colour():
    """clap's dark goldenrod #B8860B and vip-cop-only's orange, once darkened to 3:1 (#C68900), were 6.5 apart
    in CIELAB: the same colour to the eye (the legend told them apart only by marker)."""
    import itertools

    for (a, one), (b, other) in itertools.combinations(METHOD_COLORS.items(), 2):
        distance = delta_e76(lab(one), lab(other))
        assert distance >= 15, f"{a} {one} and {b} {other} are {distance:.1f} apart in CIELAB"


@pytest.mark.parametrize("vision", sorted(DICHROMACY))
def test_no_two_built_in_methods_look_alike_to_a_reader_with_dichromacy(vision):
    """To a deuteranope vip's vermillion and vip-cop-only's orange #C68900 were 6.4 apart in CIELAB, coop's blue
    and tip-adapter-f's purple #6A3D9A 8.2, zero-shot's grey and symptom-zeroshot's bluish green #009E73 9.7;
    to a protanope tip-adapter-f's purple and biomedcoop's navy 5.9, vip-mep-only's reddish purple and clap's
    teal #117A8B 9.4; to a tritanope that teal and coop's blue 5.7: told apart only by marker."""
    import itertools

    seen = {method: lab(as_seen_with(colour, vision)) for method, colour in METHOD_COLORS.items()}
    close = {(a, b): round(delta_e76(seen[a], seen[b]), 1) for a, b in itertools.combinations(METHOD_COLORS, 2)
             if delta_e76(seen[a], seen[b]) < 12.0}
    assert not close, close


@pytest.mark.parametrize("vision", VISIONS)
def test_no_two_built_in_methods_are_shades_of_one_colour_in_ciede2000(vision):
    """The linear probe's sky blue #4B9DCC was a lighter copy of coop's blue on the shots plot (15.8 apart in
    CIEDE2000, though 20.1 in CIELAB), 7.8 from vip-mep-only's reddish purple to a protanope and 8.2 from
    symptom-zeroshot's green to a tritanope. It is Okabe-Ito's black now. vip-cop-only's brick red #962D0F and
    tip-adapter's brown #8C564B were 13.4 apart to normal vision: two shades of one red-brown on the shots plot."""
    import itertools

    least = BUILT_IN_LEAST_DIFFERENCE if vision is None else LEAST_DIFFERENCE
    close = {(a, b): round(colour_difference(METHOD_COLORS[a], METHOD_COLORS[b], vision), 1)
             for a, b in itertools.combinations(METHOD_COLORS, 2)
             if colour_difference(METHOD_COLORS[a], METHOD_COLORS[b], vision) < least}
    assert not close, close
    assert colour_difference(METHOD_COLORS["coop"], METHOD_COLORS["linear-probe"], vision) >= 20
    assert not set(METHOD_COLORS.values()) & set(EXTRA_COLORS)  # no plugin drawn in a built-in's colour


@pytest.mark.parametrize("vision", VISIONS)
def test_every_two_method_colours_a_report_can_show_together_are_told_apart(vision):
    """A benchmark report draws every built-in method and the plugins swept beside them: plugin colours were
    checked against nothing. vip-cop-only's brick red and the plugins' dark red #8B0000 were 6.5 apart (CIEDE2000)
    to normal vision; to a protanope the plugins' olive green #4E7D17 and olive #7A7A00 were 0.7 apart, to a
    deuteranope zero-shot's grey and the plugins' pink #E7298A 4.2, to a tritanope that pink and vip's vermillion
    5.8. Now every two of them, built-in or plugin, are LEAST_DIFFERENCE apart in CIEDE2000 to every reader."""
    palette = {**METHOD_COLORS, **{f"plugin colour {colour}": colour for colour in EXTRA_COLORS}}
    distance, first, second = closest_pair(palette, vision)
    assert distance >= LEAST_DIFFERENCE, (f"{first} {palette[first]} and {second} {palette[second]} are "
                                          f"{distance:.1f} apart to {vision or 'normal vision'}")


def _gap_hatch(figure):
    """The hatched 'gap to confidence' boxes of a reliability diagram's first panel."""
    return [patch for patch in figure.axes[0].patches if patch.get_hatch()]


@pytest.mark.parametrize("color", EVERY_METHOD_COLOR)
def test_the_gap_to_confidence_shows_on_the_bar_and_on_white(color):
    """The gap was hatched in red #c62828: 1.8:1 on vip's vermillion bar (1.7:1 to a deuteranope), 1.1:1 on
    tip-adapter-f's purple, so an underconfident bin's gap, drawn over its bar, could not be seen."""
    from vipcli.report.figures import draw_reliability

    bins = [{"lower": 0.5, "upper": 0.6, "count": 12, "accuracy": 0.8, "confidence": 0.55},  # gap over the bar
            {"lower": 0.6, "upper": 0.7, "count": 9, "accuracy": 0.4, "confidence": 0.65}]  # gap over white
    figure = draw_reliability([("before (T = 1)", bins, 0.1)], color, "t")
    bar = [0.85 * c + 0.15 for c in to_rgb(color)]
    hatched = _gap_hatch(figure)
    assert len(hatched) == 2
    # no colour reaches 3:1 on both white and a very dark bar (#8B0000's): there the best of them, 2.7:1
    least = 3.0 if color in METHOD_COLORS.values() else 2.7
    for patch in hatched:
        hatch = patch.get_edgecolor()[:3]
        on_bar, on_white = contrast_ratio(hatch, bar), contrast_ratio(hatch, (1.0, 1.0, 1.0))
        assert min(on_bar, on_white) >= least, (color, round(on_bar, 2), round(on_white, 2))


def test_bin_counts_side_by_side_never_run_together():
    """In the two-panel diagram, 2-digit counts in neighbouring bins were written 1.5 points apart:
    "5 12244139376676" read as one number."""
    from vipcli.report.figures import COUNT_GAP, draw_reliability

    bins = [{"lower": i / 15, "upper": (i + 1) / 15, "count": 10 + i, "accuracy": 0.5, "confidence": 0.5}
            for i in range(15)]
    for panels in (1, 2):
        figure = draw_reliability([(f"panel {i}", bins, 0.1) for i in range(panels)], "#D55E00", "t")
        figure.canvas.draw()
        renderer, points = figure.canvas.get_renderer(), 72 / figure.dpi
        for axes in figure.axes:
            boxes = sorted((label.get_window_extent(renderer) for label in axes.texts), key=lambda box: box.x0)
            assert len(boxes) == 15
            gaps = [(right.x0 - left.x1) * points for left, right in zip(boxes, boxes[1:])]
            assert min(gaps) >= COUNT_GAP - 0.5, (panels, [round(g, 1) for g in gaps])


@test_report.needs_browser
def test_a_cards_image_tells_a_screen_reader_what_vip_made_of_it(tmp_path):
    """A card's image had its file name for alt text, the same words as the line under it: a screen reader going
    from image to image (NVDA's G key) heard 48 file names and none of the verdicts."""
    from PIL import Image

    from browser import render
    from vipcli.report import html
    from vipcli.report.gallery import GalleryItem, gallery_html

    (tmp_path / "nevus").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (32, 32), (180, 120, 90)).save(tmp_path / "nevus" / name)
    items = [GalleryItem(str(tmp_path / "nevus" / "a.png"), "nevus", "melanoma", 0.95, ["melanoma"], None),
             GalleryItem(str(tmp_path / "nevus" / "b.png"), "nevus", "nevus", 0.8, ["nevus"], None),
             GalleryItem(str(tmp_path / "nevus" / "c.png"), None, "nevus", 0.612, None, None)]
    page = tmp_path / "cards.html"
    page.write_text(html.page("vip predictions: 3 images", "", [gallery_html(items, root=tmp_path)], ""), encoding="utf-8")
    rendered = render(page, tmp_path / "browser")
    alts = [image["alt"] for image in rendered["images"]]
    assert alts == ["nevus/a.png: true class nevus, predicted melanoma (wrong), probability 95.0%",
                    "nevus/b.png: true class nevus, predicted nevus (right), probability 80.0%",
                    "nevus/c.png: predicted nevus, probability 61.2%"]
    # the cards were 3 <div>s: a screen reader could neither say "list, 3 items" nor jump card to card; a list
    # now, its bullets hidden (the page looks as it did)
    assert rendered["galleries"] == [{"role": "list", "cards": 3, "items": 3, "markers": ["none"] * 3}]


def test_a_method_that_learns_nothing_is_drawn_dashed_all_across_the_shots_plot():
    """Its line was drawn twice, each dashed, across the plot and between its markers: the two dash patterns
    started at different places and filled each other's gaps, so between the first and the last shots value
    the line looked solid, like a learning method's, in greyscale print most of all. Along its height, between
    its markers, a good share of the line's pixels are now gaps."""
    import io

    import numpy
    from PIL import Image

    from vipcli.plots import draw_shots

    rows = [{"method": m, "shots": 0 if m == "zeroshot" else s, "seed": 1, "test_accuracy": 60.0 if m == "zeroshot" else 50.0 + s}
            for m in ("zeroshot", "coop") for s in (1, 4, 16)]
    figure = draw_shots(rows, title="t")
    axes = figure.axes[0]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    (left, y), (right, _) = axes.transData.transform([(0, 60.0), (2, 60.0)])
    with Image.open(buffer) as image:
        pixels = numpy.asarray(image.convert("RGB"), dtype=float)
    row = pixels[pixels.shape[0] - round(y), round(left) + 12:round(right) - 12]  # between the markers
    grey = numpy.array(to_rgb(METHOD_COLORS["zeroshot"])) * 255
    line = numpy.linalg.norm(row - grey, axis=1) < 60
    assert 0.2 < 1 - line.mean() < 0.8, f"{1 - line.mean():.0%} of the dashed line between its markers is gaps"


@test_report.needs_browser
@pytest.mark.parametrize("zoom", ["1", "1.5"])
def test_equally_shaded_neighbouring_cells_of_a_confusion_matrix_meet_without_a_seam(tmp_path, zoom):
    """In Chromium, at 1.5x, each cell's see-through outline overlapped its neighbour's: a darker grid ran between
    cells of one shade, and anti-aliased edges let the white page through in thin lighter seams. A matrix of four
    cells of one share is drawn in a report page, and every pixel along the lines where its cells meet must be that
    cell's colour."""
    import numpy as np
    from PIL import Image

    from browser import screenshot
    from vipcli.report import html
    from vipcli.report.figures import cell_on_white, confusion_matrix_svg, share_shading

    color = METHOD_COLORS["vip"]
    svg = confusion_matrix_svg([[3, 3], [3, 3]], ["melanoma", "nevus"], color, "test confusion matrix")
    page = tmp_path / "matrix.html"
    page.write_text(html.page("matrix", "", [html.figure(svg, "four cells of one share")], ""), encoding="utf-8")
    png = screenshot(page, tmp_path / "matrix.png", 700, 700, f"--force-device-scale-factor={zoom}")
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)  # (height, width, 3)
    cell = np.array([round(255 * c) for c in cell_on_white(share_shading(color), 0.5)])
    rows, columns = np.nonzero((np.abs(pixels - cell) <= 4).all(axis=2))  # the matrix: one square of that shade
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    assert right - left > 100 and abs((right - left) - (bottom - top)) <= 3, (top, bottom, left, right)
    middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
    along_columns = pixels[top + 3:bottom - 2, middle_x - 3:middle_x + 4]  # the line between the two columns
    along_rows = pixels[middle_y - 3:middle_y + 4, left + 3:right - 2]  # and between the two rows
    for line, name in ((along_columns, "columns"), (along_rows, "rows")):
        off = np.abs(line - cell).max(axis=2) > 6  # (pixels along, across) off the cell's colour
        lighter = int((off & (line.sum(axis=2) > cell.sum())).sum())
        assert not off.any(), (f"a seam between the {name} at {zoom}x: {int(off.sum())} pixels off {cell.tolist()}, "
                               f"{lighter} of them lighter (screenshot: {png})")
