"""Building one self-contained HTML page: escaped text, tables, embedded images, inline CSS.

Nothing in a page refers to anything outside it: figures are inline SVG, photographs data URIs,
and there is no script, so a report opens the same way offline, from an e-mail attachment or years
later.
"""

from __future__ import annotations

import base64
import math
import re
from html import escape
from pathlib import Path

STYLE = """
:root { color-scheme: only light; }  /* a light document: a browser's forced dark mode leaves its colours as they are */
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5rem; color: #1d1d1f; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
.table, .scroll {  /* a table or figure wider than a phone scrolls inside itself, and a shadow at the edge with more
            beyond it says so (the white covers scroll away with the content, uncovering the shadow of the edge it leaves) */
  max-width: 100%; overflow-x: auto; margin: 0.6rem 0;
  background: linear-gradient(to right, #fff 30%, rgba(255, 255, 255, 0)) left / 2rem 100% no-repeat local,
              linear-gradient(to left, #fff 30%, rgba(255, 255, 255, 0)) right / 2rem 100% no-repeat local,
              radial-gradient(farthest-side at 0 50%, rgba(0, 0, 0, 0.3), transparent) left / 0.8rem 100% no-repeat scroll,
              radial-gradient(farthest-side at 100% 50%, rgba(0, 0, 0, 0.3), transparent) right / 0.8rem 100% no-repeat scroll;
}
.table table { margin: 0; }
caption { text-align: left; font-weight: 600; padding: 0.1rem 0 0.3rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } tbody th { background: none; font-weight: normal; }  /* a row's name looks like a cell */
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; margin: 0.6rem 0; }
.ok { background: #eef7ee; border-left: 4px solid #2e7d32; padding: 0.5rem 0.8rem; margin: 0.6rem 0; }
figure { margin: 0.8rem 0; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid #eee;  /* its own size, or the width, */
             min-width: var(--readable-width, 0); }  /* but never so narrow that its smallest text is unreadable */
figure .scroll { margin: 0; }  /* a figure's background is clear (plots.svg_markup): the shadow at its edge shows through */
figcaption, .caption { color: #555; font-size: 0.85rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.35rem;  /* a method's marker, */
          vertical-align: -0.1rem; }  /* inline SVG: ink, printed without "background graphics" (swatches.py) */
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 0.8rem;
            list-style: none; margin: 0; padding: 0; }  /* a list of cards, drawn as a grid */
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; font-size: 0.82rem; background: #fafafa;
        overflow-wrap: anywhere; }  /* a class name or symptom with no space in it wraps inside the card */
.card.wrong { border: 2px solid #c62828; background: #fff5f5; }
.card img { display: block; margin: 0 auto 0.4rem; max-width: 100%; height: auto; }  /* at the size it was embedded */
.card img.pixels { image-rendering: pixelated; }  /* a small image shown a whole number of times larger: crisp pixels */
.card .name { color: #666; font-size: 0.75rem; }
.nowrap { white-space: nowrap; }
.option { white-space: nowrap; }  /* an option name (--views) never parts at its hyphens, in print too */
.banner { background: #fdecea; border: 2px solid #c62828; border-radius: 6px; padding: 0.6rem 0.9rem;
          margin: 0.8rem 0; font-size: 1rem; }
.card .detail { color: #666; font-size: 0.75rem; }
.card ul { margin: 0.2rem 0 0; padding-left: 1.1rem; list-style: disc; }  /* not the gallery's none */
.tag { display: inline-block; padding: 0 0.35rem; border-radius: 3px; font-weight: 600; }
.tag.wrong { background: #c62828; color: #fff; } .tag.right { background: #2e7d32; color: #fff; }
code { background: #f4f4f6; padding: 0 0.2rem; border-radius: 3px; }
footer { margin-top: 2rem; color: #595959; font-size: 0.8rem; }  /* 7:1 on white: small text */
.name, .path, footer { overflow-wrap: anywhere; }  /* a long file name wraps, shown whole */
@media (max-width: 600px) { body { padding: 0.8rem; } table { font-size: 0.8rem; } th, td { padding: 0.2rem 0.35rem; }
  td.num { white-space: normal; } }  /* "88.60 (101/114)" breaks at its space rather than past the screen's edge */
@media print {  /* paper cannot scroll sideways: a wide table wraps its cells to fit the page */
  body { max-width: none; padding: 0; }
  .table, .scroll { overflow: visible; background: none; }
  td, td.num, .nowrap { white-space: normal; }
  h1, h2 { break-after: avoid; }  /* a heading stays with what it heads */
  .tag, .tag.wrong, .tag.right { background: none; border: 1px solid; }  /* printing leaves backgrounds out by
        default, and the white text with them; with "Background graphics" on, the red stays: either way an outline */
  .tag.wrong { color: #c62828; } .tag.right { color: #1b5e20; }  /* with the text in its colour */
  .gallery { grid-template-columns: minmax(0, 1fr); gap: 3px; }  /* a list of cases, a card a row across the page */
  .card { display: grid; grid-template-columns: 108px minmax(0, 5fr) minmax(0, 7fr); column-gap: 0.4rem;
          align-items: start; padding: 2px; font-size: 8.5pt; line-height: 1.1; }  /* image | verdict and set | why:
        a longer set makes its own card a line taller, never a row of four more than half a page (one row a page) */
  .card .facts:last-child { grid-column: 2 / -1; }  /* no symptoms (a method without them): the verdict takes the row */
  .card .name, .card .detail { font-size: 8pt; }  /* the smallest printed type */
  .card ul { padding-left: 0.9rem; }
  .card img { max-width: min(100%, 108px); max-height: 108px;  /* at most 9/16 of its size on screen, never larger, */
              object-fit: contain; margin: 0 auto; }  /* its shape kept when its height is the longer side */
  .card, figure, tr, .note, .banner, .table { break-inside: avoid; }  /* an image never parts from its labels, nor a
                                            table from its caption and header (one longer than a page still breaks) */
}
"""


def text(value) -> str:
    """`value` as HTML-escaped text ('-' for None)."""
    return "-" if value is None else escape(str(value))


def with_commands(message: str) -> str:
    """`message` as HTML-escaped text, each `command` it quotes in backticks (as a terminal line does) set as
    <code>, without the backticks a page would otherwise show."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text(message))


def number(value, digits: int = 2, signed: bool = False) -> str:
    """`value` with `digits` decimals ('-' for None), never a negative zero: -0.0002 -> '0.000'.

    Args:
        signed: write '+' before positive figures (zero has no sign).
    """
    if value is None:
        return "-"
    shown = f"{value:.{digits}f}"
    if float(shown) == 0:
        return f"{0:.{digits}f}"
    return f"+{shown}" if signed and value > 0 else shown


SEPARATORS = "/-_. "  # a file name may break after these


def file_name(name: str) -> str:
    """A file name as HTML, whole however long: it wraps at separators, never inside its extension
    (and, in a `.name` or `.path` element, anywhere else where one part is wider than its box)."""
    name = str(name)
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or any(c in SEPARATORS for c in extension) or len(extension) > 8:
        stem, extension = name, ""
    tail = (stem[-4:] + "." + extension) if extension else ""  # the extension and a few characters before it
    head = stem[:-4] if extension else stem
    breakable = "".join(escape(c) + ("<wbr>" if c in SEPARATORS else "") for c in head)
    return breakable + (f'<span class="nowrap">{escape(tail)}</span>' if tail else "")


def data_uri(payload: bytes, mime: str) -> str:
    """An inline `data:` URI of `payload`."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image(payload: bytes, alt: str, mime: str = "image/png", css_class: str | None = None,
          size: tuple[int, int] | None = None) -> str:
    """An <img> holding `payload` inline; `size` (width, height): the CSS pixels it is shown at."""
    klass = f' class="{css_class}"' if css_class else ""
    shown = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return f'<img{klass}{shown} src="{data_uri(payload, mime)}" alt="{escape(alt)}">'


def figure(svg: str, alt: str, caption: str | None = None) -> str:
    """A figure from inline SVG markup (`vipcli.plots.svg_markup`) with an optional caption; a screen
    reader announces it as one image described by `alt` (role="img"), not as its many bits of text.

    On a screen narrower than the figure it is scaled down, but no narrower than `readable_width`: there
    its box scrolls sideways (with the wide tables' edge shadow) and the caption stays at the screen's width.
    """
    caption_html = f"<figcaption>{text(caption)}</figcaption>" if caption else ""
    labelled = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(alt)}" ', 1)
    box = f'<div class="scroll" style="--readable-width: {math.ceil(readable_width(svg))}px">{labelled}</div>'
    return f"<figure>{box}{caption_html}</figure>"


READABLE_TEXT_PX = 8  # CSS px: the smallest figure text still readable on a phone (at its own size, 9 pt is 12 px)


def readable_width(svg: str) -> float:
    """The narrowest width (CSS px) at which figure `svg` shows its smallest text READABLE_TEXT_PX high: its
    viewBox width x READABLE_TEXT_PX / its smallest font size (both in the viewBox's units; MIN_FONT_SIZE
    where it has no text), never wider than the figure's own size.

    e.g. a 7.2-inch figure (viewBox 518.4 pt wide) whose smallest text is 9 pt: 518.4 x 8 / 9 = 461 px.
    """
    from vipcli.plots import MIN_FONT_SIZE

    view_box = re.search(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) [\d.]+"', svg)
    width = re.search(r'<svg [^>]*?\swidth="([\d.]+)(pt|px)?"', svg)
    if not view_box or not width:  # not matplotlib's markup: shown as before, scaled to the screen
        return 0.0
    own = float(width.group(1)) * (96 / 72 if width.group(2) == "pt" else 1)  # CSS px at the figure's own size
    sizes = [float(size) for size in re.findall(r"font-size:\s*([\d.]+)px", svg)]
    smallest = min(sizes, default=MIN_FONT_SIZE)
    return min(own, float(view_box.group(1)) * READABLE_TEXT_PX / smallest)


def table(caption: str, header: list[str], rows: list[list], numeric: set[int] | None = None, raw: bool = False) -> str:
    """A <table> in a box that scrolls sideways when the table is wider than the screen; cells are
    escaped unless `raw` (then they must already be HTML).

    Args:
        caption: what the table holds, shown above it (a screen reader names the table by it).
        header: column titles; all empty: a table without a header row (key-value facts). Screen readers
            announce each cell with its column's title and its row's first cell (scope="col"/"row").
        numeric: indices of right-aligned columns.
    """
    numeric = numeric or set()
    head = "".join(f'<th scope="col">{text(h)}</th>' for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            klass = ' class="num"' if i in numeric else ""
            content = cell if raw else text(cell)
            if i == 0:  # the first cell names its row (a class, a split, a method, a setting)
                cells.append(f'<th scope="row"{klass}>{content}</th>')
            else:
                cells.append(f"<td{klass}>{content}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<div class=\"table\"><table><caption>{text(caption)}</caption>{head}<tbody>{''.join(body)}</tbody>"
            "</table></div>")


def path(value) -> str:
    """A file or folder path as HTML, whole: it wraps (see `file_name`) rather than widen its table."""
    return f'<span class="path">{file_name(value)}</span>' if value is not None else "-"


def note(message_html: str, kind: str = "note") -> str:
    """A highlighted paragraph ('note' for a caveat, 'ok' for good news); `message_html` is HTML."""
    return f'<p class="{kind}">{message_html}</p>'


def page(title: str, subtitle: str, sections: list[str], footer: str) -> str:
    """The whole document (its option names kept whole: `keep_options_whole`)."""
    body = keep_options_whole(f"<h1>{text(title)}</h1><p class=\"sub\">{subtitle}</p>{''.join(sections)}"
                              f"<footer>{footer}</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"only light\">"  # its colours carry meaning: never recoloured dark
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


OPTION_NAME = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # --views, --no-cache; not a-b, not ---
TAG = re.compile(r"(<[^>]*>)")
UNWRAPPED = ("svg", "style", "script", "title", "textarea")  # elements whose text a <span> must not enter


def keep_options_whole(markup: str) -> str:
    """`markup` with each option name in its text (`--views`, `--no-cache`) inside a `<span class="option">`,
    which never wraps: a browser may break a line after a hyphen-minus, and printed, or in a narrow card, `--views`
    came out as `-` at a line's end and `-views` on the next (or `--` and `views`), which reads as another
    option. The text, and what a reader copies, is unchanged; attributes, and the text of SVG figures and of
    the elements in UNWRAPPED, are left as they are."""
    parts, inside = [], 0
    for part in TAG.split(markup):
        if part.startswith("<"):
            element = re.match(r"<(/?)([a-zA-Z]+)", part)
            if element and element.group(2).lower() in UNWRAPPED and not part.endswith("/>"):
                inside = max(0, inside + (-1 if element.group(1) else 1))
            parts.append(part)
        else:
            parts.append(part if inside else OPTION_NAME.sub(r'<span class="option">\g<0></span>', part))
    return "".join(parts)


def utc_time(value):
    """A recorded ISO time (metrics.json's or a benchmark row's `finished_at`) as an aware UTC datetime; None when
    it is missing (None: a run or row of an earlier vip) or not an ISO time."""
    from datetime import datetime, timezone

    try:
        return datetime.fromisoformat(str(value)).astimezone(timezone.utc) if value is not None else None
    except ValueError:
        return None


MINUTE = "%Y-%m-%d %H:%M"  # how the reports write a time (in UTC, said after it)


def utc_minute(when) -> str:
    """An aware datetime as the reports write a time: '2026-11-29 21:57 UTC'."""
    from datetime import timezone

    return f"{when.astimezone(timezone.utc).strftime(MINUTE)} UTC"


def written_by(source=None, now=None) -> str:
    """The footer's line, as HTML: which vip wrote the page, when (UTC, to the minute) and from which folder.

    e.g. 'written by vip 0.2.0 on 2026-11-29 20:04 UTC from /home/you/vip-demo/run'.

    Args:
        source: the run or benchmark folder the page was made from (None: not named).
        now: the time to show (default: the current time), a timezone-aware datetime.
    """
    from datetime import datetime, timezone

    from vipcli import __version__

    when = utc_minute(now or datetime.now(timezone.utc))
    return text(f"written by vip {__version__} on {when}" + (f" from {source}" if source is not None else ""))


def section(heading: str, body: str) -> str:
    """An <h2> and its content."""
    return f"<section><h2>{text(heading)}</h2>{body}</section>"


def check_writable(path: Path, option: str = "--out") -> Path:
    """`path` if an HTML file can be written there (not a folder; its folder exists, is writable and not
    full); else a VipError. Called before any work, as `vip train` checks its --out."""
    from vipcli.errors import UsageError
    from vipcli.preflight import check_output_file

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm") and not path.is_dir():  # a folder: check_output_file names it
        raise UsageError(f"{option} {path}: a report is an HTML page, and this name does not end in .html "
                         "(a browser would not show it as one)", f"pass {option} {path.with_suffix('.html')}")
    check_output_file(path, option, create_folder=False)
    check_ours(path, option)
    return path


def check_ours(path: Path, option: str) -> None:
    """VipError when `path` is a file vip did not write (the user's own page), which writing the report would
    replace; a missing or empty file, or a page vip wrote, passes."""
    from vipcli.errors import VipError

    if not replaces_ours(path):
        raise VipError(f"{option} {path} already exists and is not a page vip wrote, which vip would replace",
                       f"choose another {option}, or delete the file first")


def replaces_ours(path: Path) -> bool:
    """Whether writing a page at `path` replaces nothing of the user's: no file there (or not one that can be
    read: the writer names what is wrong), an empty one, or a page vip wrote (by the titles its pages have had)."""
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return True
    return not head.strip() or any(b"<title>" + title in head for title in OWN_TITLES)


OWN_TITLES = (b"vip report: ", b"vip benchmark report: ", b"vip predictions: ")  # how each page vip writes is titled


def write_html(path: Path, document: str, option: str = "--out") -> Path:
    """Write the page atomically (temp file + rename); a failed write leaves nothing and is one line."""
    from vipcli.atomic import write_atomic
    from vipcli.preflight import write_failed

    from vipcli.console import undecoded_escaped

    check_writable(path, option)
    try:
        write_atomic(path, undecoded_escaped(document))  # a file name not in UTF-8 shows its bytes as \xe9
    except OSError as error:  # the disk filled up or went read-only while the report was made
        raise write_failed(path, error, "nothing was written") from None
    return Path(path)
