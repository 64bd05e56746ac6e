"""Reports as everyone reads them: contrast of text on figures and pages, figures told apart without
colour, and what a screen reader is given (alt text, table headers)."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_rgb

from vipcli.plots import EXTRA_COLORS, METHOD_COLORS, contrast_ratio

EVERY_METHOD_COLOR = sorted(set(METHOD_COLORS.values()) | set(EXTRA_COLORS))


@pytest.mark.parametrize("color", EVERY_METHOD_COLOR)
def test_confusion_matrix_counts_contrast_with_their_cell(color):
    """Counts just above 60% of the largest were white on a pale cell: 1.6:1 on vip-cop-only's orange."""
    from vipcli.report.figures import draw_confusion_matrix

    matrix = [[100, 61], [59, 30]]
    figure = draw_confusion_matrix(matrix, ["a", "b"], color, "t")
    image = figure.axes[0].images[0]
    for label in figure.axes[0].texts:
        i, j = (round(v) for v in label.get_position()[::-1])
        cell = image.cmap(image.norm(matrix[i][j]))[:3]
        ratio = contrast_ratio(to_rgb(label.get_color()), cell)
        assert ratio >= 4.5, f"count {label.get_text()} on {color}: contrast {ratio:.2f}"


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

    facts = table(["split", "images", "accuracy %"], [["val", 64, "79.69"], ["test", 300, "79.33"]], numeric={1, 2})
    assert re.findall(r"<th\b[^>]*>", facts.split("<tbody>")[0]) == ['<th scope="col">'] * 3
    rows = re.findall(r"<tr>(.*?)</tr>", facts.split("<tbody>")[1])
    assert rows[1] == '<th scope="row">test</th><td class="num">300</td><td class="num">79.33</td>'
    keyed = table(["", ""], [["model", "run"]])  # key-value facts: no header row, the key names the row
    assert "<thead>" not in keyed and '<th scope="row">model</th><td>run</td>' in keyed
