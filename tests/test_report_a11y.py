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
