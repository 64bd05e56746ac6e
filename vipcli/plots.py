"""Figures (matplotlib, Agg backend: no display needed) and the one colour of each method.

Every figure that shows methods (the benchmark's shots plot, the demo, the reports) takes its
colours from `method_color`, so a method looks the same everywhere; a figure of several plugin
methods takes them from `method_styles`, which moves a plugin whose colour another plugin there has
already taken to the next free one (in that figure and the table beside it).
"""

from __future__ import annotations

import hashlib
import io
import re
import textwrap
from pathlib import Path

from vipcli.colours import xyz

# Okabe-Ito hues (colour-blind safe) for vip, coop and vip-mep-only, Okabe-Ito's black for the linear probe, grey
# for zero-shot; the others, and the plugins' EXTRA_COLORS, found by a search over sRGB so that any two colours a
# report can show together, built-in or plugin, are LEAST_DIFFERENCE or more apart in CIEDE2000 to normal vision and,
# simulated (Machado et al. 2009, severity 1, in linear RGB: vipcli.colours), to a reader with protanopia,
# deuteranopia or tritanopia; two built-in methods BUILT_IN_LEAST_DIFFERENCE or more to normal vision.
# vip-cop-only's brick red #962D0F and tip-adapter's brown #8C564B were 13.4 apart (one red-brown on the shots plot),
# the plugins' dark red #8B0000 6.5 from that brick red, their olive green #4E7D17 and olive #7A7A00 0.7 apart to a
# protanope. Every one is at least 3:1 on white, the WCAG minimum for lines and markers (1.4.11), and no darker than
# L* 25 (but the linear probe's black). 19 colours are more than a dichromat tells apart at a glance: each method
# also has its own marker (METHOD_MARKERS, EXTRA_MARKERS)
LEAST_DIFFERENCE = 9.5  # CIEDE2000, any two of METHOD_COLORS and EXTRA_COLORS, to every reader (least: 9.7)
BUILT_IN_LEAST_DIFFERENCE = 15.0  # CIEDE2000, any two of METHOD_COLORS, to normal vision (least: 15.6)
METHOD_COLORS = {
    "vip": "#D55E00",  # vermillion
    "vip-cop-only": "#4B465F",  # slate (brick red #962D0F: tip-adapter's brown, a shade darker)
    "vip-mep-only": "#CC79A7",  # reddish purple
    "coop": "#0072B2",  # blue
    "zeroshot": "#7F7F7F",  # grey
    "symptom-zeroshot": "#B4328C",  # magenta
    "linear-probe": "#000000",  # black (Okabe-Ito's; its sky blue #4B9DCC read as a lighter coop)
    "tip-adapter": "#825523",  # brown
    "tip-adapter-f": "#9B82FA",  # lavender
    "clap": "#009B46",  # green (#005F69, #117A8B and #B8860B each looked like another method's)
    "biomedcoop": "#577852",  # sage
}
# other methods (plugins) get one of these, chosen by a digest of their name (stable across runs); each at least 3:1
# on white (a yellow #F0E442 was 1.3:1, nearly invisible) and LEAST_DIFFERENCE from every built-in's and each other
EXTRA_COLORS = ("#004632", "#502873", "#3C10B9", "#5F00FF", "#829B7D", "#695A5F", "#5A3200", "#910F3C")
# dark green, plum, indigo, violet, grey green, taupe, dark brown, crimson


# an hourglass, two filled triangles tip to tip (matplotlib vertices, closed): clap's marker. Its hexagon ("h") was,
# at the 7 pt of the shots plot and the 0.8 rem of a table's key, a circle to the eye: vip's marker
HOURGLASS = ((-1, 1), (1, 1), (-1, -1), (1, -1), (-1, 1))
# and one marker each, so that methods are told apart without colour (greyscale print, colour blindness):
# a marker is never shared by two built-in methods, nor one of them with a plugin (EXTRA_MARKERS: by a digest of
# a plugin's name)
METHOD_MARKERS = {
    "vip": "o", "vip-cop-only": "s", "vip-mep-only": "D", "coop": "^", "zeroshot": "x", "symptom-zeroshot": "P",
    "linear-probe": "v", "tip-adapter": "<", "tip-adapter-f": ">", "clap": HOURGLASS, "biomedcoop": "*",
}
# plugins' markers: filled letter shapes (closed vertices, as HOURGLASS), each unlike every built-in's and the
# others' on a line and in a table's key. matplotlib's own that were left ("p", "H", "8": round, vip's dot to the
# eye; "d", "X", "+": thinner or bolder copies of vip-mep-only's, zeroshot's and symptom-zeroshot's; "1", "2": one
# Y, turned) were not (MARKER_LOOKALIKES)
TEE = ((-1, 1), (1, 1), (1, 0.4), (0.3, 0.4), (0.3, -1), (-0.3, -1), (-0.3, 0.4), (-1, 0.4), (-1, 1))
WYE = ((-0.3, -1), (0.3, -1), (0.3, -0.05), (1, 0.7), (0.6, 1), (0, 0.35), (-0.6, 1), (-1, 0.7), (-0.3, -0.05),
       (-0.3, -1))
ELL = ((-1, 1), (-0.3, 1), (-0.3, -0.3), (1, -0.3), (1, -1), (-1, -1), (-1, 1))
CUP = ((-1, 1), (-0.35, 1), (-0.35, -0.3), (0.35, -0.3), (0.35, 1), (1, 1), (1, -1), (-1, -1), (-1, 1))
EXTRA_MARKERS = (TEE, WYE, ELL, CUP)
# markers that look alike at the shots plot's 7 pt and a key's 0.8 rem: no two of one family are used
ROUND_MARKERS = frozenset({"o", ".", "8", "h", "H", "p"})  # a dot to the eye (clap's hexagon "h" was taken for vip's)
MARKER_LOOKALIKES = (ROUND_MARKERS, frozenset({"D", "d"}), frozenset({"P", "+"}), frozenset({"x", "X"}),
                     frozenset({"1", "2", "3", "4", WYE}), frozenset({"s", ","}), frozenset({"|", "_"}))


def lookalike_markers(markers) -> list[tuple]:
    """The pairs of `markers` a reader could take for each other: the same marker twice, or two of one family of
    MARKER_LOOKALIKES (e.g. 'o' and 'H', both round), in the order given."""
    markers = list(markers)
    return [(first, second) for i, first in enumerate(markers) for second in markers[i + 1:]
            if first == second or any(first in family and second in family for family in MARKER_LOOKALIKES)]


def method_marker(method: str) -> str | tuple:
    """The matplotlib marker of `method` in every figure that draws methods as lines: a marker string, or the
    vertices of a shape (clap's HOURGLASS, a plugin's EXTRA_MARKERS)."""
    if method in METHOD_MARKERS:
        return METHOD_MARKERS[method]
    return EXTRA_MARKERS[(_name_digest(method) // len(EXTRA_COLORS)) % len(EXTRA_MARKERS)]


def method_color(method: str) -> str:
    """The colour of `method` in every figure (a hex string)."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return EXTRA_COLORS[_name_digest(method) % len(EXTRA_COLORS)]


def method_styles(methods) -> dict[str, tuple[str, str | tuple]]:
    """{method: (colour, marker)} for the methods one figure or table shows: built-ins keep theirs, and each
    plugin its own `method_color` and `method_marker` unless a plugin named before it (sorted) in the same
    figure already has that colour (or marker); it then takes the next one free in `EXTRA_COLORS`
    (`EXTRA_MARKERS`). Two plugins drawn together are never of one colour, and a plugin keeps its colour
    in every figure where it meets no such clash."""
    styles = {m: (METHOD_COLORS[m], METHOD_MARKERS[m]) for m in methods if m in METHOD_COLORS}
    taken_colors, taken_markers = set(), set()
    for method in sorted(set(methods) - set(styles)):
        color = _first_free(EXTRA_COLORS, EXTRA_COLORS.index(method_color(method)), taken_colors)
        marker = _first_free(EXTRA_MARKERS, EXTRA_MARKERS.index(method_marker(method)), taken_markers)
        taken_colors.add(color)
        taken_markers.add(marker)
        styles[method] = (color, marker)
    return styles


def _first_free(choices: tuple, start: int, taken: set):
    """The first of `choices` from index `start` on (wrapping round) not in `taken`; `choices[start]` when
    every one is (more plugins in one figure than choices)."""
    for step in range(len(choices)):
        choice = choices[(start + step) % len(choices)]
        if choice not in taken:
            return choice
    return choices[start]


def _name_digest(method: str) -> int:
    """A plugin method's name as a number (sha256), which picks its colour and marker the same in every run."""
    return int(hashlib.sha256(method.encode()).hexdigest(), 16)


def relative_luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as three floats in [0, 1] (0: black, 1: white): the Y of
    its CIE XYZ (`colours.xyz`, whose middle row holds WCAG's 0.2126, 0.7152 and 0.0722)."""
    return xyz(rgb)[1]


def contrast_ratio(first, second) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (1 to 21; text needs 4.5, graphics 3)."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_color_on(background) -> str:
    """"black" or "white": whichever contrasts more with `background` (sRGB floats in [0, 1]); at
    least 4.58:1 whatever the background, so a label drawn on a shaded cell stays readable."""
    on_black = contrast_ratio(background, (0.0, 0.0, 0.0))
    return "black" if on_black >= contrast_ratio(background, (1.0, 1.0, 1.0)) else "white"


def figure_title(what: str, data: str | None = None, backbone: str | None = None) -> str:
    """A figure title naming what it shows, the data and the backbone: 'what: data, backbone'."""
    context = ", ".join(part for part in (data, backbone) if part)
    return f"{what}: {context}" if context else what


def backbone_label(backbone: str | None, arch: str | None) -> str | None:
    """'toy' or 'clip ViT-B-16': the backbone id and, when given, the architecture's short name."""
    if not backbone:
        return None
    short = Path(str(arch)).name if arch else ""
    return f"{backbone} {short}".strip() if short and short != backbone else backbone


def benchmark_title(record: dict, what: str = "test accuracy by shots") -> str:
    """The title of a benchmark figure from the benchmark's stored config (data folder, backbone)."""
    arch = record.get("arch") or (record.get("backbone_describe") or {}).get("arch")
    data = Path(str(record["data"])).name if record.get("data") else None
    return figure_title(what, data, backbone_label(record.get("backbone"), arch))


def seeds_label(seeds, per: str | None = None) -> str:
    """'mean ± std over seeds 1, 2, 3', or 'seed 1' when there is one seed (no spread to show).

    `per` ("point", "cell"): the figures do not all average the same seeds (`uneven_seeds`): 'mean ± std
    over each cell's seeds, of seeds 1, 2, 3'."""
    seeds = sorted({int(s) for s in seeds})
    listed = ", ".join(map(str, seeds))
    if per and len(seeds) > 1:
        return f"mean ± std over each {per}'s seeds, of seeds {listed}"
    return f"mean ± std over seeds {listed}" if len(seeds) > 1 else f"seed {listed}"


def uneven_seeds(rows: list[dict]) -> bool:
    """Whether the (method, shots) figures of benchmark `rows` average different sets of seeds: a sweep
    extended with more seeds for some methods or shots only, or one stopped before its last rows."""
    seeds: dict[tuple[str, str], set[int]] = {}
    for row in (row for row in rows if row.get("seed") is not None):
        seeds.setdefault((row["method"], str(row["shots"])), set()).add(int(row["seed"]))
    return len({frozenset(found) for found in seeds.values()}) > 1


CHARACTER_WIDTH = 0.6  # of a title character, in font sizes (a generous average for the default font)


def wrap_title(title: str, width_inches: float, fontsize: float) -> str:
    """`title` broken into lines that fit a figure `width_inches` wide (at `fontsize` points), at
    spaces first (a single word longer than a line, such as a long backbone id, is split)."""
    characters = max(12, int(width_inches * 72 / (fontsize * CHARACTER_WIDTH)))
    return textwrap.fill(title, characters, break_on_hyphens=False)


MIN_FONT_SIZE = 9  # points: the smallest text of a figure, shown at its own size on screen and paper
MAX_FIGURE_WIDTH = 7.2  # inches: a figure fits a printed A4 or Letter page at its own size


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SVG_STYLE = {
    "svg.fonttype": "none",  # text stays text: it scales, and it can be searched, selected and copied
    "svg.hashsalt": "vip",  # the same figure, the same markup (no random ids)
    "font.sans-serif": ["DejaVu Sans"],  # the font matplotlib lays the text out with, named once per text
}


def svg_markup(figure) -> str:
    """The figure (then closed) as SVG markup to put inline in an HTML page: its text as text (see
    SVG_STYLE), without the XML prologue and metadata, and with ids of its own (prefixed by a digest of
    its content), so that several figures share one page without one's clip paths or markers
    standing in for another's. Its background is clear, the page's white showing through, and its black (text,
    axes, ticks, black lines) is the system colour CanvasText: black on a light page, light where a browser darkens
    the page regardless (Chromium's forced dark mode on a light system theme). Such a browser once lightened a
    figure's black and left a white fill white (white words on white); Chromium 156 leaves inline SVG's own colours
    alone and darkens the page behind it (black words on a dark page). CanvasText follows the page either way."""
    import matplotlib

    buffer = io.StringIO()
    try:
        with matplotlib.rc_context(SVG_STYLE):
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, transparent=True)
    finally:
        pyplot().close(figure)
    markup = buffer.getvalue()
    markup = re.sub(r"\s*<metadata>.*?</metadata>", "", markup[markup.index("<svg"):], flags=re.S)
    markup = _black_follows_the_page(markup)
    prefix = "f" + hashlib.sha256(markup.encode()).hexdigest()[:8] + "-"
    markup = re.sub(r'\bid="', f'id="{prefix}', markup)
    return re.sub(r'(url\(#|href="#)', rf"\g<1>{prefix}", markup)


def _black_follows_the_page(markup: str) -> str:
    """Matplotlib's SVG with its black as CanvasText (see `svg_markup`): its explicit black fills and strokes (black
    kept first, for a viewer that does not know the system colour: it drops the second declaration), and its text
    drawn without a fill of its own (SVG's default fill is black). Colours other than black are kept."""
    markup = re.sub(r"\b(fill|stroke): ?#000000\b", r"\1: #000000; \1: CanvasText", markup)
    return re.sub(r'<text style="(?![^"]*\bfill:)', '<text style="fill: CanvasText; ', markup)


def _series(rows: list[dict]) -> dict[str, dict]:
    """Per method: {shots text: [test accuracies over seeds, from each row's confusion matrix]}; methods that
    learn nothing under "0"."""
    from vipcli.metrics import row_figure

    series: dict[str, dict] = {}
    for row in rows:
        if row.get("test_accuracy") is None:
            continue
        accuracy = float(row_figure(row, "test_accuracy"))
        series.setdefault(row["method"], {}).setdefault(str(row["shots"]), []).append(accuracy)
    return series


def _mean_std(values: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_shots(rows: list[dict], path: Path, shots_order: list | None = None, title: str | None = None,
               class_names: list[str] | None = None) -> Path:
    """Write the shots figure (see `draw_shots`) to a PNG, atomically.

    Args:
        rows: benchmark rows (method, shots, seed, test_accuracy, ...).
        path: the PNG to write.
        shots_order: x-axis shots values in order (default: those in `rows`, numbers first, then "all").
        title: the figure's title (name the data and the backbone; see `figure_title`).
        class_names: the classes, in the order of the rows' confusion matrices (names the largest-class line).
    Returns:
        path
    """
    return _save(draw_shots(rows, shots_order, title, class_names), Path(path))


def draw_shots(rows: list[dict], shots_order: list | None = None, title: str | None = None,
               class_names: list[str] | None = None):
    """Test accuracy against shots, one line per method, mean over seeds with a +-std band (with one
    seed: that seed's figures, and the axis says which seed).

    Methods that learn nothing (rows at shots 0) are drawn as dashed horizontal lines; every method
    in its colour and with its marker (`method_styles`: told apart without colour too). On unbalanced
    test images shared by every row, a dotted line (`draw_largest_class_line`) marks what calling every
    image the largest class scores. The legend is below the plot, so the figure is no wider than
    MAX_FIGURE_WIDTH and one scaled to a phone's width shows it whole.

    Returns:
        a matplotlib Figure.
    """
    plt = pyplot()
    series = _series(rows)
    if shots_order is None:
        found = {str(r["shots"]) for r in rows} - {"0"}
        shots_order = sorted((s for s in found if s != "all"), key=int) + (["all"] if "all" in found else [])
    labels = [str(s) for s in shots_order]
    x = list(range(len(labels)))
    figure, axes = plt.subplots(figsize=(MAX_FIGURE_WIDTH, 4.2), dpi=120, layout="constrained")
    styles = method_styles(list(dict.fromkeys(r["method"] for r in rows)))  # as the report's tables of these rows
    for method, by_shots in series.items():
        color, marker = styles[method]
        if set(by_shots) == {"0"}:  # a dashed line across the plot, its marker at every shots value
            mean, std = _mean_std(by_shots["0"])
            axes.axhline(mean, color=color, linestyle="--", linewidth=1.2)  # the one dashed line: a second one
            axes.plot(x, [mean] * len(x), color=color, linestyle="none", marker=marker, markersize=7)  # would fill its gaps
            axes.plot([], [], color=color, linestyle="--", linewidth=1.2, marker=marker, markersize=7,
                      label=f"{method} (no training)")  # its legend entry: dashes and marker
            axes.axhspan(mean - std, mean + std, color=color, alpha=0.12)
            continue
        points = [(i, *_mean_std(by_shots[s])) for i, s in zip(x, labels) if s in by_shots]
        if not points:
            continue
        xs, means, stds = zip(*points)
        axes.plot(xs, means, color=color, marker=marker, markersize=7, linewidth=1.6, label=method)
        axes.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                          color=color, alpha=0.18)
    draw_largest_class_line(axes, rows, class_names)
    axes.set_xticks(x, labels)
    axes.set_xlabel("labelled training images per class (shots)")
    seeds = [r["seed"] for r in rows if r.get("seed") is not None]
    spread = seeds_label(seeds, "point" if seeds and uneven_seeds(rows) else None)
    axes.set_ylabel(f"test accuracy % ({spread})" if seeds else "test accuracy %")
    axes.grid(alpha=0.3)
    legend_below(figure, *axes.get_legend_handles_labels())
    if title:
        axes.set_title(wrap_title(title, MAX_FIGURE_WIDTH, 10), fontsize=10)
    return figure


LARGEST_CLASS_COLOR = "#333333"  # no method's colour; 12.6:1 on white


def largest_class_line(rows: list[dict], class_names) -> tuple[float, str, str] | None:
    """(accuracy %, class name, 'the largest class' or 'one of the largest classes') of calling every test image of
    benchmark `rows` the largest class: (77.06, 'nevus', 'the largest class') on ISIC; None when the rows' test
    images are balanced, differ between rows, or are not recorded."""
    from vipcli.metrics import largest_class_guess, shared_test_counts

    counts = list(shared_test_counts(rows) or [])
    guess = largest_class_guess(counts)
    if guess is None or not isinstance(class_names, list) or len(class_names) != len(counts):
        return None
    largest, share = guess
    return share, class_names[largest], ("the largest class" if counts.count(counts[largest]) == 1
                                         else "one of the largest classes")


def draw_largest_class_line(axes, rows: list[dict], class_names) -> None:
    """A dotted line across `axes` at the accuracy of calling every test image the largest class (`largest_class_line`),
    where the test images are unbalanced, labelled in the legend ('every image called nevus: 77.06%', short enough
    to keep two columns): a method's accuracy means something only above it (zero-shot's 77.06% on ISIC called every
    image nevus)."""
    line = largest_class_line(rows, class_names)
    if line:
        share, name, _ = line
        axes.axhline(share, color=LARGEST_CLASS_COLOR, linestyle=":", linewidth=1.6,
                     label=f"every image called {name}: {share:.2f}%")


def legend_below(figure, handles: list, labels: list[str]) -> None:
    """The legend under the plot (it covers no line), in as many columns as its longest entry allows in the
    figure's width (never wider than the figure: a one-panel reliability diagram's cut off both its ends)."""
    if not labels:
        return
    entry = max(len(label) for label in labels) * CHARACTER_WIDTH * MIN_FONT_SIZE / 72 + 0.8  # inches, with its marker
    columns = max(1, min(len(labels), int(figure.get_figwidth() // entry)))
    figure.set_figheight(figure.get_figheight() + 0.22 * -(-len(labels) // columns))  # room for its rows
    figure.legend(handles, labels, fontsize=MIN_FONT_SIZE, loc="outside lower center", ncols=columns,
                  facecolor="none")  # the page shows through, as through the figure (`svg_markup`)


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from vipcli.atomic import atomic_path

    try:
        with atomic_path(path, suffix=".png") as temp:
            figure.savefig(temp, format="png")
    finally:
        plt.close(figure)
    return path
