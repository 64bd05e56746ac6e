"""How a report writes the numbers a reader compares: every share of images and every probability as a
percentage, on every page (run, benchmark, predictions), so 79.33% accuracy and a 90% coverage read alike.

Only the HTML: metrics.json, results.json and results.csv keep their own units (a contract).
"""

from __future__ import annotations

from vipcli.report.html import number
from vipcli.shares import rounded_share


def figures_meaning(shares: str) -> str:
    """What a figure in % is, in a sentence; `shares`: the figures that are shares of images, e.g. 'Accuracy'."""
    return (f"Figures in % run from 0 to 100. {shares} {'is a share' if ' ' not in shares else 'are shares'} of "
            "the images counted; balanced accuracy is the mean over the classes of each one's sensitivity "
            "(recall), so a small class counts as much as a large one (a class without images in the split has "
            "none, and is left out); macro-F1 is the mean over the classes of each one's F1, which weighs its "
            "sensitivity and precision together (a class without images in the split counts 0); AUROC is how often the model ranks an image of a class above an "
            "image of another (50: no better than a coin toss, 100: always).")


def percent(fraction, digits: int = 2) -> str:
    """A fraction as a percentage without its sign, for a table cell whose column says %: 0.81 -> '81.00'
    ('-' for None); one strictly between 0 and 1 never reads 0 or 100 (0.99996 -> '99.99',
    `vipcli.shares.rounded_share`)."""
    if fraction is None:
        return "-"
    shown = number(100 * fraction, digits)
    if 0 < fraction < 1 and float(shown) in (0.0, 100.0):
        return number(100 * rounded_share(fraction, digits + 2), digits)
    return shown


def percent_text(fraction, digits: int = 2) -> str:
    """A fraction as a percentage with its sign, for a sentence: 0.81 -> '81.00%' ('-' for None)."""
    shown = percent(fraction, digits)
    return shown if fraction is None else f"{shown}%"


def coverage_percent(coverage: float, sign: bool = True) -> str:
    """An asked coverage (a --coverage value) as the percentage a reader says, every digit it was given:
    0.9 -> '90%', 0.984 -> '98.4%', 0.99999 -> '99.999%' (never '100%', a promise no set makes; '90' without
    `sign`, in a column that says %)."""
    return f"{100 * coverage:.8f}".rstrip("0").rstrip(".") + ("%" if sign else "")
