"""Reports as they come out of a printer: printed by Chromium to PDF as its print dialog prints them by
default ("Background graphics" unchecked), on A4 and US Letter, then drawn as images (poppler's pdftoppm)
and looked at pixel by pixel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser import (PAPERS, find_browser, find_pdf_renderer, pdf_images, pdf_page_texts, pdf_pages, pdf_words,
                     print_to_pdf)
from vipcli.plots import METHOD_COLORS, draw_shots, method_marker, pyplot, svg_markup
from vipcli.report import html
from vipcli.report.benchmark import _tables
from vipcli.report.gallery import GalleryItem, gallery_html
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
                 if max(int(c[i:i + 2], 16) for i in (1, 3, 5)) - min(int(c[i:i + 2], 16) for i in (1, 3, 5)) > 20}
    assert len(chromatic) == len(METHOD_COLORS) - 2  # but zero-shot's grey and the linear probe's black: text has those
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


LONGEST_SYMPTOMS = ["The spot has multiple colors, like brown, black, blue, red, or white",  # melanoma's pack
                    "The spot has a consistent color, usually brown, tan or black",
                    "Pink to red background between the hair openings, like a strawberry"]


def _gallery(folder, sizes: list[tuple[int, int]]) -> str:
    """A run report's gallery of one card per image size (width, height in pixels): each a wrong prediction whose
    set misses the true class, with three long symptoms (as tall a card as two classes give)."""
    from PIL import Image

    items = []
    for i, size in enumerate(sizes):
        image = folder / "test" / "melanoma" / f"melanoma_{i:05d}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (180, 120 + i % 100, 90)).save(image)
        symptoms = [{"symptom": s, "similarity": 0.412, "weight": 0.251, "contribution": 2.632} for s in LONGEST_SYMPTOMS]
        items.append(GalleryItem(str(image), "melanoma", "nevus", 0.835, ["nevus"], symptoms))
    return gallery_html(items, root=folder)


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_a_printed_gallery_puts_eight_cards_on_a_page_in_readable_type(tmp_path, paper):
    """The gallery printed one row of three cards a page, each page half blank (48 cards: 16 pages). In print a
    card is smaller (its image at 9/16 of its size on screen, its type 8.5 pt, the smallest 8 pt), a row across the
    page, eight to a page, on A4 and US Letter, with the tallest cards two classes give."""
    ruler = '<p style="font-size: 8pt">eight-point</p>'  # the smallest type a card may print
    pdf, _ = _printed(tmp_path, "gallery", [ruler, _gallery(tmp_path, [(64, 64)] * 24)], paper)
    cards = [len(re.findall(r"true class:", page)) for page in pdf_page_texts(pdf)]
    assert sum(cards) == 24 and len(cards) >= 3
    assert min(cards[1:-1]) >= 8, f"cards on each printed page: {cards}"
    words = pdf_words(pdf)  # page 1: the title, the ruler, what the cards say, the first cards
    detail = min(height for word, height in words if word == "contribution")  # a symptom's figures: the smallest type
    assert detail >= 0.99 * dict(words)["eight-point"]


def test_a_printed_card_image_is_never_larger_than_on_screen(tmp_path):
    """Printed smaller, a card's image keeps at least the pixels per inch it has on screen (96 CSS px an inch), and
    its shape: a small one (100x40, shown as it is) is not enlarged, one reduced to 192 px (a photo) is not stretched
    to a square, and a tiny one shown pixelated (64x64 and 4x4, shown 192 px wide) stays no larger than on screen."""
    sizes = [(64, 64), (4, 4), (100, 40), (300, 200), (150, 300)]
    on_screen = {(64, 64): 32, (4, 4): 2, (100, 40): 96, (192, 128): 96, (96, 192): 96}  # as embedded -> ppi shown
    pdf, _ = _printed(tmp_path, "images", [_gallery(tmp_path, sizes)])
    printed = {(width, height): (across, down) for width, height, across, down in pdf_images(pdf)}
    assert printed.keys() == on_screen.keys()
    assert all(min(printed[size]) >= on_screen[size] - 1 for size in on_screen), printed
    assert all(abs(across - down) <= 1 for across, down in printed.values()), f"stretched: {printed}"


NINE_CLASSES = ["actinic keratosis", "basal cell carcinoma", "pigmented benign keratosis", "dermatofibroma", "melanoma",
                "melanocytic nevus", "squamous cell carcinoma", "seborrheic keratosis", "vascular lesion"]  # ISIC 2019's


@pytest.mark.parametrize("paper", sorted(PAPERS))
@pytest.mark.parametrize("set_size, per_page", [(4, 8), (6, 7), (9, 7)])
def test_a_printed_nine_class_gallery_puts_several_cards_on_a_page_each_set_whole(tmp_path, paper, set_size, per_page):
    """A nine-class run's card is taller: long class names that wrap, a prediction set of four to nine of them, three
    long symptoms. Printed four to a row, a row of cards with sets of six took over half a US Letter page, so each
    page held one row of four and left the rest blank (24 cards: 6 pages). Printed a card a row across the page
    (image | verdict and set | symptoms), a longer set makes its own card a line or two taller: seven or eight
    cards a page on A4 and US Letter, every name of every set printed in full, next to its image."""
    from PIL import Image

    items = []
    for i in range(24):
        truth = NINE_CLASSES[i % 9]
        image = tmp_path / "test" / truth / f"ISIC_{i:07d}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (300, 200), (180, 120 + i, 90)).save(image)
        symptoms = [{"symptom": s, "similarity": 0.412, "weight": 0.251, "contribution": 2.632} for s in LONGEST_SYMPTOMS]
        items.append(GalleryItem(str(image), truth, NINE_CLASSES[(i + 1) % 9], 0.435,
                                 [NINE_CLASSES[(i + k) % 9] for k in range(1, set_size + 1)], symptoms))
    pdf, _ = _printed(tmp_path, "nine", [gallery_html(items, root=tmp_path)], paper)
    cards = [len(re.findall(r"true class:", page)) for page in pdf_page_texts(pdf)]
    assert sum(cards) == 24 and min(cards[1:-1]) >= per_page, f"cards on each printed page: {cards}"
    def squeezed(words: str) -> str:  # a file name wraps at any separator, a set at any space
        return re.sub(r"\s+", "", words)

    printed = [squeezed(page) for page in pdf_page_texts(pdf, raw=True)]  # each card's text in its own order
    for item in items:  # a card is never split: its file name, its true class and its whole set on one page
        name = squeezed(f"{Path(item.path).relative_to(tmp_path).as_posix()} true class: {item.truth}")
        whole = squeezed(f"prediction set: {{{', '.join(item.prediction_set)}}}")
        assert [name in page and whole in page for page in printed].count(True) == 1, (name, whole)


def _nine_class_prediction_sets() -> str:
    """A run report's prediction-set section for nine classes (ISIC 2019's), 20 test images each, at the three
    coverages `vip train` stores, the sets holding six classes on average."""
    import numpy as np

    from vipcli.report.run import _conformal

    rows = [{"coverage": c, "threshold": 1 - (1 - c) / 3, "expected_coverage": c, "coverage_sd": 0.03,
             "empirical_coverage": c, "mean_set_size": 6.0, "empty_sets": 0} for c in (0.8, 0.9, 0.95)]
    run = {"calibration": {}, "class_names": NINE_CLASSES, "metrics": {"test": {"n": 180}, "conformal": {
        "score": "LAC", "n_held_out": 90, "held_out": "val", "test": rows}}}
    probabilities = np.random.default_rng(0).dirichlet(np.ones(9), 180)
    return html.section("Prediction sets", _conformal(run, probabilities, np.repeat(np.arange(9), 20)))


def test_a_nine_class_prediction_set_table_fits_a_phone(tmp_path):
    """On a phone (390 px) the prediction-set table, a coverage asked a row with every class's coverage in one cell
    (eight columns), hid 299 px past the screen's edge. A coverage asked is a column now, and each class a row of
    a second table: both fit, nothing to scroll."""
    from browser import render

    page = tmp_path / "sets.html"
    page.write_text(html.page("vip report: sets", "", [_nine_class_prediction_sets()], ""), encoding="utf-8")
    result = render(page, tmp_path / "phone", width=390)
    assert [t["caption"] for t in result["tables"]] == ["Prediction sets on test, by coverage asked",
                                                       "Test coverage % of each class, by coverage asked"]
    hidden = [(t["caption"], t["overflow"]) for t in result["tables"] if t["overflow"] > 1]
    assert not hidden and result["width"] <= result["viewport"] == 390, hidden


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_a_printed_nine_class_prediction_set_table_flows_from_page_to_page(tmp_path, paper):
    """Printed, a nine-class run's prediction-set table put one row on each page, the rest of it blank (US Letter:
    six pages for the section): each row listed every class's coverage in one narrow cell, over half a page tall.
    The section prints on two pages now, each class's row whole on one of them."""
    pdf, pages = _printed(tmp_path, "sets", [_nine_class_prediction_sets()], paper)
    texts = pdf_page_texts(pdf)
    assert len(texts) == len(pages) <= 2, f"{len(texts)} pages"
    for name in NINE_CLASSES:  # its row: the name and its three figures, on one page
        found = [len(re.findall(rf"{re.escape(name)}(?:\s+[\d.]+\s+\(\d+/20\)){{3}}", " ".join(t.split())))
                 for t in texts]
        assert sum(found) == 1, (name, found)


OPTION_PHRASES = ["Prediction sets at coverage 90% (--coverage 0.9; the classes the model cannot rule out)",
                  "Only wrong ones fit in the 4 shown (vip report --gallery 21 shows all 21)",
                  "a run made with --pretrained none has random weights; --no-batch trains rows one by one"]


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_a_printed_option_name_is_never_broken_at_its_hyphens(tmp_path, paper):
    """Printed (and in a narrow box on a phone), `--coverage 0.9` came out as `(-` at the end of a line and
    `-coverage 0.9` on the next, or `--` and `coverage`: the browser may break a line after a hyphen-minus, and a
    reader took it for another option. An option name now stays whole on its line, in a paragraph and in a card
    (which wraps a long word anywhere) of any width, and the page's text is unchanged."""
    boxes = [f'<div class="{kind}" style="width: {width}px">{html.text(phrase)}</div>'
             for kind in ("note", "card") for width in range(70, 330, 10) for phrase in OPTION_PHRASES]
    pdf, _ = _printed(tmp_path, "options", boxes, paper)
    lines = [line.strip() for page in pdf_page_texts(pdf, raw=True) for line in page.splitlines()]
    names = [name for phrase in OPTION_PHRASES for name in re.findall(r"--[a-z-]+", phrase)]
    whole = {name: sum(len(re.findall(rf"(?<![\w-]){name}", line)) for line in lines) for name in set(names)}
    expected = {name: names.count(name) * len(boxes) // len(OPTION_PHRASES) for name in set(names)}
    assert whole == expected, [line for line in lines if line.endswith("-")][:5]


def test_printed_tags_stay_readable_with_background_graphics_on(tmp_path):
    """Printed with "Background graphics" ticked (as a reader does to keep the cards' colours, and as chromium's
    --print-to-pdf does), a 'wrong' or 'misses the true class' tag was a solid red bar: the print rule made its text
    red but left its red background, which outranked the rule. It is the same outline as without backgrounds."""
    tags = ('<p><span class="tag wrong">wrong</span> predicted: melanoma <span class="tag right">right</span> '
            '<span class="tag wrong">misses the true class</span></p>')
    page = tmp_path / "tags.html"
    page.write_text(html.page("vip report: tags", "", [tags], ""), encoding="utf-8")
    plain = pdf_pages(print_to_pdf(page, tmp_path / "plain.pdf"))
    coloured = pdf_pages(print_to_pdf(page, tmp_path / "coloured.pdf", backgrounds=True))
    for colour in ("#c62828", "#1b5e20"):
        assert _pixels_like(coloured, colour) < 1.5 * _pixels_like(plain, colour), colour
