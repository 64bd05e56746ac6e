"""Reports as they come out of a printer: printed by Chromium to PDF as its print dialog prints them by
default ("Background graphics" unchecked), on A4 and US Letter, then drawn as images (poppler's pdftoppm)
and looked at pixel by pixel."""

from __future__ import annotations

import re

import pytest

from browser import PAPERS, find_browser, find_pdf_renderer, pdf_pages, pdf_words, print_to_pdf
from vipcli.plots import METHOD_COLORS, draw_shots, method_marker, pyplot, svg_markup
from vipcli.report import html
from vipcli.report.benchmark import _tables
from vipcli.report.swatches import marker_shape

pytestmark = pytest.mark.skipif(find_browser() is None or find_pdf_renderer() is None,
                                reason="needs a chromium-family browser and poppler's pdftoppm "
                                       "(apt-get install chromium poppler-utils)")

METHODS = list(METHOD_COLORS) + ["my-plugin"]
ROWS = [{"method": m, "shots": 0 if "zeroshot" in m else s, "seed": 1, "test_accuracy": 50.0 + i + s,
         "test_macro_f1": 40.0 + i, "test_auroc": 60.0 + i, "fit_s": 1.0}
        for i, m in enumerate(METHODS) for s in (1, 4)]


def _printed(tmp_path, name: str, sections: list[str], paper: str = "A4"):
    """The page of `sections` printed on `paper` without backgrounds: (its PDF, its pages as PNG files)."""
    page = tmp_path / f"{name}.html"
    page.write_text(html.page(f"vip report: {name}", "", sections, ""), encoding="utf-8")
    pdf = print_to_pdf(page, tmp_path / f"{name}-{paper}.pdf", paper)
    return pdf, pdf_pages(pdf)


def _pixels_like(pages, colour: str, within: float = 40.0) -> int:
    """How many pixels of `pages` are within `within` (RGB, 0-255) of `colour` ('#RRGGBB')."""
    import numpy
    from PIL import Image

    target = numpy.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    found = 0
    for png in pages:
        with Image.open(png) as image:
            pixels = numpy.asarray(image.convert("RGB"), dtype=float)
        found += int((numpy.linalg.norm(pixels - target, axis=2) < within).sum())
    return found


def test_a_printed_table_keeps_each_methods_key_without_background_graphics(tmp_path):
    """Each method's key in the benchmark tables was a square painted as a CSS background: printed with
    Chrome's default settings it was left out, and the tables told methods apart from the figure's lines by
    name only. The key is now the figure's marker in the method's colour, drawn (SVG), so it prints."""
    tables = _tables(ROWS)
    for method in METHODS:  # the key is the marker the shots plot draws the method with
        key = re.search(rf'<path d="([^"]*)"[^>]*/></svg>{re.escape(method)}\b', tables)
        assert key and key.group(1) == marker_shape(method_marker(method))[0], method
    _, pages = _printed(tmp_path, "keys", [tables])
    chromatic = {m: c for m, c in METHOD_COLORS.items()
                 if max(int(c[i:i + 2], 16) for i in (1, 3, 5)) - min(int(c[i:i + 2], 16) for i in (1, 3, 5)) > 60}
    assert len(chromatic) == len(METHOD_COLORS) - 1  # all but zero-shot's grey, which text's edges have too
    missing = {m: c for m, c in chromatic.items() if _pixels_like(pages, c) < 20}
    assert not missing, f"keys left out of the printed tables: {missing}"


def test_printed_right_and_wrong_tags_stay_readable_without_background_graphics(tmp_path):
    """A gallery card's 'wrong' and 'misses the true class' tags were white text on red: printed without
    backgrounds the red was left out and the browser drew the white text in a pale grey on the white page.
    In print they are an outline with the text in its colour."""
    tags = ('<p><span class="tag wrong">wrong</span> predicted: melanoma <span class="tag right">right</span> '
            '<span class="tag wrong">misses the true class</span></p>')
    _, pages = _printed(tmp_path, "tags", [tags])
    assert _pixels_like(pages, "#c62828") > 200 and _pixels_like(pages, "#1b5e20") > 50


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_a_printed_benchmark_report_fits_the_paper_at_its_own_size(tmp_path, paper):
    """A page wider than the paper is printed smaller, every word with it, rather than cut. The shots plot of
    eleven methods and a plugin, with its table, print on A4 and US Letter at the size a page with nothing
    wide prints at (the title's height as printed is compared)."""
    rows = ROWS
    figure = draw_shots(rows, title="test accuracy by shots: data, toy")
    shots = html.figure(svg_markup(figure), "shots")
    pyplot().close(figure)
    wide, _ = _printed(tmp_path, "wide", [shots, _tables(rows)], paper)
    plain, _ = _printed(tmp_path, "plain", [], paper)
    wide_title, plain_title = pdf_words(wide)[0], pdf_words(plain)[0]
    assert wide_title[0] == plain_title[0] == "vip"
    assert wide_title[1] >= 0.99 * plain_title[1], f"printed at {wide_title[1] / plain_title[1]:.0%} of its size"


def test_the_size_check_can_fail(tmp_path):
    """What the size check above would see of a page too wide for the paper: it is printed smaller."""
    wide, _ = _printed(tmp_path, "too-wide", ['<div style="width: 1400px; height: 20px; background: red"></div>'])
    plain, _ = _printed(tmp_path, "plain", [])
    assert pdf_words(wide)[0][1] < 0.9 * pdf_words(plain)[0][1]
