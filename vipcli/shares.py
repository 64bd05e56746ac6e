"""How a probability or a share of images is rounded for showing: never to a bound it is not.

A probability of 0.99996 rounded to the nearest at three places reads 1.000: a certainty the model did not
compute (and, where every validation image was right, a class needs a probability of exactly 1 to be in a
prediction set, so a card read "100.0%" beside an empty set). Strictly between 0 and 1, a figure is shown
strictly between them at every precision: the terminal's 0.999, a predictions file's 0.9999 and a report's
99.9% say the same thing. Figures at 0 or 1, and every other figure, are rounded to the nearest.
"""

from __future__ import annotations


def rounded_share(value: float, digits: int) -> float:
    """`value` (a probability or share, 0 to 1) rounded to `digits` places; strictly between 0 and 1 it stays
    strictly between them: 0.99996 at 3 places is 0.999 (not 1.0), 0.00004 is 0.001 (not 0.0)."""
    shown = round(value, digits)
    if 0.0 < value < 1.0:
        step = 10.0**-digits
        shown = min(max(shown, step), round(1.0 - step, digits))
    return shown


def exact_percent(fraction: float, digits: int = 2, most: int = 4) -> str:
    """`fraction` as a percentage with `digits` decimals, more (up to `most`) when needed to show it exactly:
    a figure that is a rule, not a measure (the probability a class needs to be in a prediction set), must not
    read as another one (0.99996 as 100.00, 0.462851 as 46.29). Trailing zeros past `digits` are dropped."""
    shown = f"{100 * fraction:.{most}f}"
    whole, _, decimals = shown.partition(".")
    kept = decimals.rstrip("0").ljust(digits, "0")
    return f"{whole}.{kept}" if kept else whole
