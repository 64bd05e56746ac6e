"""The report's figures as inline SVG: confusion matrix, reliability diagram, merge weights; and each
one's alt text, which says what the figure shows (its figures, where no table of the report has them)
for a reader who cannot see it.

Every figure is at most MAX_FIGURE_WIDTH inches wide and none of its text is smaller than MIN_FONT_SIZE
points, so it is shown at its own size on a wide screen and on paper, and stays sharp when zoomed."""

from __future__ import annotations

import re
import textwrap

from vipcli.plots import (MAX_FIGURE_WIDTH, MIN_FONT_SIZE, contrast_ratio, legend_below, pyplot, svg_markup,
                          text_color_on, wrap_title)
from vipcli.report.html import number
from vipcli.report.units import percent_text

CLASS_LABEL = 40  # characters of a class name a figure shows (its tables and the alt text have it whole)


def class_label(name: str, width: int = 20) -> str:
    """A class name as a figure shows it: at most CLASS_LABEL characters (the rest cut, with "…"), in lines of
    about `width` characters, so that one long name cannot squeeze a chart into a corner of its figure."""
    if len(name) > CLASS_LABEL:
        name = name[:CLASS_LABEL - 1].rstrip() + "…"
    return textwrap.fill(name, width, break_on_hyphens=False)


def confusion_matrix_svg(matrix: list[list[int]], class_names: list[str], color: str, title: str) -> str:
    """Counts of true (rows) against predicted (columns) classes, each cell shaded white -> `color` by its share of
    its row (`row_shares`)."""
    return crisp_cells(svg_markup(draw_confusion_matrix(matrix, class_names, color, title)))


CELLS_GID = "confusion-cells"  # the group of the matrix's cells in its SVG


def crisp_cells(svg: str) -> str:
    """`svg` with its confusion-matrix cells (the CELLS_GID group) drawn without anti-aliasing
    (shape-rendering="crispEdges"): each pixel then belongs to exactly one cell. Anti-aliased, the shared edge of two
    neighbouring see-through cells was covered partly by each, so the white page showed through it in a thin light
    seam; the same-coloured outline matplotlib draws against that overlapped its neighbour's into a darker line."""
    return re.sub(rf'(<g id="[^"]*-{CELLS_GID}")', r'\1 shape-rendering="crispEdges"', svg, count=1)


def row_shares(matrix: list[list[int]]) -> list[list[float]]:
    """Each cell's share of its row's test images (0 to 1): on the diagonal, that class's sensitivity (recall). A
    confusion matrix shaded by these rather than by count shows how well each class is found, whatever its size
    (shaded by count, 393 nevi drowned 117 melanomas: a class the model never finds looked pale either way)."""
    return [[count / total if (total := sum(row)) else 0.0 for count in row] for row in matrix]


def share_shading(color: str):
    """The colour map of a confusion matrix's cells: `color`, from clear (a share of 0) to solid (1). On the white page
    it is the white -> `color` scale; a page a browser darkens shows through a pale cell instead of leaving it white
    under its darkened (lightened) count, which could not be read there."""
    from matplotlib.colors import LinearSegmentedColormap, to_rgb

    return LinearSegmentedColormap.from_list("share", [(*to_rgb(color), 0.0), (*to_rgb(color), 1.0)])


def cell_on_white(shading, share: float) -> tuple[float, float, float]:
    """The sRGB of a cell of `share` (`share_shading`) as drawn over the white page."""
    red, green, blue, alpha = shading(share)
    return tuple(alpha * c + (1 - alpha) for c in (red, green, blue))


SHARE_NOTE = ("Each cell: its count of test images and, under it, its share of its true class's images (a row adds "
              "up to 100%; on the diagonal, that class's sensitivity). The shade follows the share, not the count, so a "
              "small class found well is as dark as a large one.")


def draw_confusion_matrix(matrix: list[list[int]], class_names: list[str], color: str, title: str):
    """The figure of `confusion_matrix_svg`: each cell shows its count and, under it, its share of the row; its title
    is wrapped to the figure's width (long backbone ids). The report's caption says what the shade means
    (SHARE_NOTE)."""
    plt = pyplot()
    size = min(max(3.6, 0.9 * len(class_names) + 2.2), MAX_FIGURE_WIDTH - 0.8)
    figure, axes = plt.subplots(figsize=(size + 0.8, size), dpi=110)
    shading, shares = share_shading(color), row_shares(matrix)
    edges = [i - 0.5 for i in range(len(class_names) + 1)]
    cells = axes.pcolormesh(edges, edges, shares, cmap=shading, vmin=0, vmax=1,  # cells as vector squares: sharp at
                            edgecolors="none", antialiased=False)  # any zoom, with no outline or seam (crisp_cells)
    cells.set_gid(CELLS_GID)
    axes.set_aspect("equal")
    axes.set_anchor("W")  # the square's left edge where the layout puts it: centred, "true class" fell off the left
    axes.invert_yaxis()  # the first true class on top
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ink = text_color_on(cell_on_white(shading, shares[i][j]))  # on the cell as drawn on the white page
            axes.text(j, i, str(count), ha="center", va="bottom", fontsize=11, color=ink)
            if sum(row):  # a class without test images has no shares
                axes.text(j, i, percent_text(shares[i][j], 1), ha="center", va="top", fontsize=MIN_FONT_SIZE, color=ink)
    ticks, labels = range(len(class_names)), [class_label(name) for name in class_names]
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(wrap_title(title, 0.9 * (size + 0.8), 10), fontsize=10)
    _place_column_labels(axes, ticks, labels)
    _fit_title(axes, title)
    return figure


SLANT = 30  # degrees: the predicted classes' labels under a confusion matrix of more than 3 classes, or of 2 or 3
UPRIGHT_CLASSES = 3  # whose upright labels would run into each other
LABEL_GAP = 4  # px: the least space between two upright labels under neighbouring columns


def _place_column_labels(axes, ticks, labels: list[str]) -> None:
    """The predicted classes' labels under the columns of `axes`, and the figure laid out around them: upright for up
    to UPRIGHT_CLASSES classes where they fit side by side, else slanted by SLANT degrees, else (wrapped long names
    under many columns) at 90 degrees. Upright, two-line names under three columns ran together ('bacterial
    pneumonia (consolidation)viral pneumonia')."""
    figure = axes.figure
    if len(labels) <= UPRIGHT_CLASSES:
        axes.set_xticks(ticks, labels, rotation=0, ha="center")
        figure.tight_layout()
        if not _upright_labels_touch(axes):
            return
    axes.set_xticks(ticks, labels, rotation=SLANT, ha="right")
    figure.tight_layout()
    if _slanted_labels_overlap(axes, labels):
        axes.set_xticks(ticks, labels, rotation=90, ha="center")
        figure.tight_layout()


def _fit_title(axes, title: str) -> None:
    """Wrap the title, centred over the matrix, to the width it has there: the matrix keeps to the left of its
    figure (its labels' side), so a title as wide as the figure would run past the figure's left edge."""
    figure = axes.figure
    figure.draw_without_rendering()
    box, width = axes.get_window_extent(), figure.bbox.width
    room = 2 * min(box.x0 + box.width / 2, width - box.x0 - box.width / 2) / figure.dpi  # inches
    axes.set_title(wrap_title(title, 0.9 * room, 10), fontsize=10)
    figure.tight_layout()


def _upright_labels_touch(axes) -> bool:
    """Whether two neighbouring upright labels under the columns of `axes` lie closer than LABEL_GAP, as drawn."""
    axes.figure.draw_without_rendering()  # the labels in their places
    renderer = axes.figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in axes.get_xticklabels()]
    return any(left.x1 + LABEL_GAP > right.x0 for left, right in zip(boxes, boxes[1:]))


def _slanted_labels_overlap(axes, labels: list[str]) -> bool:
    """Whether labels slanted by SLANT degrees under the columns of `axes` run into each other: two neighbours lie a
    column's width times sin(SLANT) apart across their slant, less than the lines of a wrapped long name take
    (9 classes with `seborrheic keratosis – solar lentigo (lichenoid)`); upright, they have the whole width."""
    import math

    text = axes.get_xticklabels()[0]
    line = text.get_fontsize() * 1.2 * axes.figure.dpi / 72  # px (1.2: matplotlib's line spacing)
    lines = max(label.count("\n") + 1 for label in labels)
    column = axes.get_window_extent().width / len(labels)
    return lines * line > column * math.sin(math.radians(SLANT))


def reliability_svg(panels: list[tuple[str, list[dict], float | None]], color: str, title: str) -> str:
    """Accuracy against confidence per bin, one panel per (label, bins, ECE); the diagonal is perfect.

    Args:
        panels: e.g. [("before (T = 1)", bins, 0.12), ("after (T = 1.8)", bins, 0.03)]; bins as
            vipcli.calibration.reliability_bins returns them.
    """
    return svg_markup(draw_reliability(panels, color, title))


def draw_reliability(panels: list[tuple[str, list[dict], float | None]], color: str, title: str):
    """The figure of `reliability_svg`. The test images of each bin are counted at the bar's foot (see
    `_count_bins`); the gap to each bin's confidence is hatched (see `gap_color`); one legend below the panels."""
    from matplotlib.colors import to_rgb
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()
    side = min(4.2, MAX_FIGURE_WIDTH / len(panels))
    figure, axes_row = plt.subplots(1, len(panels), figsize=(side * len(panels), side + 0.5), dpi=110, squeeze=False,
                                    layout="constrained")
    bar_alpha = 0.85
    bar = [bar_alpha * c + (1 - bar_alpha) for c in to_rgb(color)]  # the bar's colour over the white axes
    for axes, (label, bins, ece) in zip(axes_row[0], panels):
        width = bins[0]["upper"] - bins[0]["lower"] if bins else 1 / 15
        filled = [b for b in bins if b["count"]]
        axes.plot([0, 1], [0, 1], linestyle="--", color="#888888", linewidth=1, label="perfectly calibrated")
        axes.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
                 color=color, alpha=bar_alpha, edgecolor="white", label="accuracy in bin")
        axes.bar([b["lower"] for b in filled], [b["confidence"] - b["accuracy"] for b in filled], width=width,
                 bottom=[b["accuracy"] for b in filled], align="edge", color="none", edgecolor=gap_color(bar),
                 hatch="//", linewidth=0.6, label="gap to confidence")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        for axis in (axes.xaxis, axes.yaxis):  # in %, as the report writes every probability and accuracy
            axis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        axes.set_xlabel("confidence of the predicted class")
        axes.set_ylabel("accuracy")
        axes.set_title(label + (f", ECE {percent_text(ece)}" if ece is not None else ""), fontsize=MIN_FONT_SIZE)
    legend_below(figure, *axes_row[0, 0].get_legend_handles_labels())
    figure.suptitle(wrap_title(title, side * len(panels), 10), fontsize=10)
    figure.draw_without_rendering()  # lays the panels out: the width of a bin is known
    for axes, (_, bins, _) in zip(axes_row[0], panels):
        _count_bins(axes, bins, bar)
    return figure


DIGIT_WIDTH = 0.64  # of a digit, in font sizes (DejaVu Sans: 0.636)
COUNT_GAP = 3  # points: the least space between two counts side by side


def _count_bins(axes, bins: list[dict], bar) -> None:
    """Each filled bin's test images, at the foot of its bar (`bar`: its sRGB as drawn): on the bar when it
    reaches above the number, else on the white axes, in black or white, whichever contrasts more. A count
    wider than its bar less COUNT_GAP is written upright: side by side, "12", "24" and "41" ran together."""
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 1 / 15
    bin_points = axes.get_window_extent().width * 72 / axes.figure.dpi * width  # the x axis runs from 0 to 1
    for b in (b for b in bins if b["count"]):
        on = bar if b["accuracy"] >= 0.06 else (1.0, 1.0, 1.0)
        upright = len(str(b["count"])) * DIGIT_WIDTH * MIN_FONT_SIZE > bin_points - COUNT_GAP
        axes.text(b["lower"] + width / 2, 0.02, str(b["count"]), ha="center", va="bottom", fontsize=MIN_FONT_SIZE,
                  rotation=90 if upright else 0, color=text_color_on(on))


GAP_COLORS = ("#000000", "#767676")  # black, and a grey at 4.5:1 on white for a bar too dark for black


def gap_color(bar) -> str:
    """The colour of the hatched gap between a reliability bar and its confidence: it runs over the white axes
    (a bar below its confidence) and over the bar (one above it), so it is the one of GAP_COLORS that contrasts
    more with the weaker of the two; `bar`: the bar's sRGB as drawn (floats in [0, 1]).

    e.g. black on vip's vermillion (6.6:1; a red hatch was 1.8:1 there, 1.7:1 to a deuteranope)."""
    from matplotlib.colors import to_rgb

    return max(GAP_COLORS, key=lambda c: min(contrast_ratio(to_rgb(c), bar), contrast_ratio(to_rgb(c), (1.0, 1.0, 1.0))))


def merge_weights_svg(weights: dict[str, list[tuple[str, float]]], color: str, title: str) -> str:
    """One horizontal bar chart per class: how much its merge prompt draws on each symptom."""
    return svg_markup(draw_merge_weights(weights, color, title))


def draw_merge_weights(weights: dict[str, list[tuple[str, float]]], color: str, title: str):
    """The figure of `merge_weights_svg`. Each bar's value is written right of both the bar and the dashed
    uniform-weight line, so the line never runs through a label; a long symptom is wrapped onto two lines
    (the alt text has every symptom whole)."""
    plt = pyplot()
    classes = list(weights)
    rows = max(len(v) for v in weights.values())
    figure, axes_col = plt.subplots(len(classes), 1, figsize=(MAX_FIGURE_WIDTH, 0.9 + (0.5 * rows + 0.6) * len(classes)),
                                    dpi=110, squeeze=False, layout="constrained")  # the title clear of the first chart
    for axes, name in zip(axes_col[:, 0], classes):
        entries = weights[name]
        labels = [textwrap.fill(textwrap.shorten(symptom, 76, placeholder="…"), 38) for symptom, _ in entries]
        values = [w for _, w in entries]
        positions = list(range(len(entries)))[::-1]
        axes.barh(positions, values, color=color, alpha=0.85)
        axes.set_yticks(positions, labels, fontsize=MIN_FONT_SIZE)
        uniform = 1 / len(entries)
        right = max(max(values), uniform)
        axes.axvline(uniform, color="#888888", linestyle="--", linewidth=1)
        for y, value in zip(positions, values):
            start = max(value, uniform) + 0.015 * right  # past the bar's end and the dashed line
            axes.text(start, y, number(value, 3), va="center", fontsize=MIN_FONT_SIZE)
        axes.set_xlim(0, right * 1.35)
        axes.set_title(f"{class_label(name, 60)} (dashed: uniform weight 1/{len(entries)})", fontsize=MIN_FONT_SIZE)
    axes_col[-1, 0].set_xlabel("merge weight" + (" (a class's weights add up to 1)" if weights_add_to_one(weights) else ""))
    figure.suptitle(wrap_title(title, MAX_FIGURE_WIDTH, 10), fontsize=10)
    return figure


def weights_add_to_one(weights: dict[str, list[tuple[str, float]]]) -> bool:
    """Whether each class's merge weights add up to 1 (a softmax, as ViP's attention gives; a plugin's may not)."""
    return all(abs(sum(w for _, w in entries) - 1) < 1e-3 for entries in weights.values())


def confusion_matrix_alt(matrix: list[list[int]], class_names: list[str], title: str) -> str:
    """The alt text of the confusion matrix: every count, by true class.

    e.g. 'test confusion matrix: data, toy. Test images by true class: melanoma: 120 predicted melanoma,
    30 predicted nevus; nevus: 32 predicted melanoma, 118 predicted nevus.'
    """
    rows = "; ".join(f"{name}: " + ", ".join(f"{count} predicted {predicted}" for predicted, count in zip(class_names, row))
                     for name, row in zip(class_names, matrix))
    return f"{title}. Test images by true class: {rows}."


def reliability_alt(panels: list[tuple[str, list[dict], float | None]], title: str) -> str:
    """The alt text of the reliability diagram: what its panels plot and each one's ECE (the bins' figures
    are in metrics.json; the report's table has the scores)."""
    parts = [label + (f", ECE {percent_text(ece)}" if ece is not None else "") + f" ({sum(1 for b in bins if b['count'])} "
             f"confidence bins with test images)" for label, bins, ece in panels]
    return (f"{title}. Bar chart of the accuracy of the test images in each bin of the predicted class's "
            f"confidence, against the diagonal of perfect calibration; {'; '.join(parts)}.")


def merge_weights_alt(weights: dict[str, list[tuple[str, float]]], title: str) -> str:
    """The alt text of the merge-weights chart: every symptom's weight, by class."""
    classes = "; ".join(f"{name} (uniform weight {number(1 / len(entries), 3) if entries else '-'}): "
                        + ", ".join(f"{symptom} {number(weight, 3)}" for symptom, weight in entries)
                        for name, entries in weights.items())
    return f"{title}. Merge weight of each symptom in its class embedding: {classes}."
