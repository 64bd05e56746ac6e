"""A method's key in a report's tables: its figure marker in its colour, drawn as a tiny inline SVG.

The key was a coloured square painted as a CSS background, which a browser leaves out when it prints
without "background graphics" (Chrome's and Firefox's default): on paper a table's methods were told
apart from the figure's lines by name only. An SVG shape is ink, printed like the figures; its marker, the
one the shots plot draws, ties a row to its line in greyscale print and for a reader who does not see
the colour difference too.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

from vipcli.plots import method_color, method_marker
from vipcli.report.html import text

STROKE = 0.14  # the line width of a marker drawn as lines only ('x', '+', '1'), in marker units


@lru_cache(maxsize=None)
def marker_shape(marker: str | tuple) -> tuple[str, bool, float]:
    """(SVG path data, filled, half the side of the square it fits in) of a matplotlib `marker` (a marker string, or
    a tuple of (x, y) vertices: `vipcli.plots.HOURGLASS`), centred on 0,
    y pointing down as in SVG, in matplotlib's marker units (a circle's diameter is 1, a diamond's 1.41)."""
    from matplotlib.markers import MarkerStyle
    from matplotlib.path import Path

    style = MarkerStyle(marker)
    path = style.get_path().transformed(style.get_transform())
    letters = {Path.MOVETO: "M", Path.LINETO: "L", Path.CURVE3: "Q", Path.CURVE4: "C"}
    parts = []
    for vertices, code in path.iter_segments(simplify=False, curves=True):
        if code == Path.CLOSEPOLY:
            parts.append("Z")
            continue
        points = zip(vertices[0::2], vertices[1::2])
        parts.append(letters[code] + " ".join(f"{x:.3f},{-y:.3f}" for x, y in points))
    half = float(abs(path.vertices).max()) + STROKE / 2  # a line marker's stroke reaches past its ends
    return "".join(parts).replace("-0.000", "0.000"), style.is_filled(), round(half, 3)


def swatch(label, color: str, marker: str | tuple) -> str:
    """`label` (escaped) after its key: `marker` drawn in `color` (hidden from screen readers: the label says it)."""
    data, filled, half = marker_shape(marker)
    paint = (f'fill="{escape(color)}"' if filled
             else f'fill="none" stroke="{escape(color)}" stroke-width="{STROKE}" stroke-linecap="round"')
    return (f'<svg class="swatch" viewBox="{-half} {-half} {2 * half:g} {2 * half:g}" aria-hidden="true" focusable="false">'
            f'<path d="{data}" {paint}/></svg>{text(label)}')


def method_swatch(method) -> str:
    """`method` after its key, in its own colour and marker (a page that shows one method)."""
    return swatch(method, method_color(method or ""), method_marker(method or ""))
