"""Open an HTML file in a real headless browser (Debian's chromium) and say how it rendered.

No new Python dependency: chromium itself dumps the DOM after a probe script has written its
findings into it, takes the screenshot, and logs console messages on stderr. (Playwright's Python
package would need its own browser download, which this project's machines cannot make.)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--mute-audio")
# runs before anything else in the page: records errors, then, once everything has loaded, every image's size
PROBE = """<script>
(function () {
  var errors = [];
  var original = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    errors.push(e.message || ("failed to load " + ((e.target && (e.target.src || e.target.href)) || "a resource")));
  }, true);
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      var box = img.getBoundingClientRect();
      return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
              shown: box.width, left: box.left + window.scrollX, top: box.top + window.scrollY,
              rendering: getComputedStyle(img).imageRendering, figure: !!img.closest("figure")};
    });
    var cue = function (element) { return getComputedStyle(element).backgroundImage.indexOf("radial-gradient") >= 0; };
    var smallestText = function (figure, shown) {  // px, as drawn: its smallest font size x its scale (its width inside its border)
      if (!figure.viewBox || !figure.viewBox.baseVal || !figure.viewBox.baseVal.width) return null;
      var sizes = Array.prototype.map.call(figure.querySelectorAll("text"), function (t) { return parseFloat(getComputedStyle(t).fontSize); });
      return sizes.length ? Math.min.apply(null, sizes) * shown / figure.viewBox.baseVal.width : null;
    };
    var figures = Array.prototype.map.call(document.querySelectorAll("figure img, figure svg"), function (f) {
      var box = f.getBoundingClientRect(), scroller = f.closest(".scroll"), frame = scroller && scroller.getBoundingClientRect();
      return {kind: f.tagName.toLowerCase(), label: f.getAttribute("alt") || f.getAttribute("aria-label") || "",
              left: box.left, right: box.right, shown: box.width, height: box.height,
              readable: parseFloat(getComputedStyle(f).minWidth) || 0, text: smallestText(f, f.clientWidth || box.width),
              box: scroller && {left: frame.left, right: frame.right, overflow: scroller.scrollWidth - scroller.clientWidth,
                                content: scroller.scrollWidth, cue: cue(scroller)}};
    });
    var tables = Array.prototype.map.call(document.querySelectorAll(".table"), function (t) {
      var caption = t.querySelector("caption");
      return {caption: caption ? caption.textContent : "", overflow: t.scrollWidth - t.clientWidth,
              columns: t.querySelectorAll("thead th").length, cue: cue(t)};
    });
    var bold = Array.prototype.filter.call(document.querySelectorAll("td *, td"), function (e) {
      return e.childElementCount === 0 && e.textContent.trim() && parseInt(getComputedStyle(e).fontWeight, 10) >= 600;
    }).map(function (e) { return e.textContent.trim(); });
    var overflowing = Array.prototype.filter.call(document.querySelectorAll(".card"), function (c) {
      return c.scrollWidth > c.clientWidth + 1;  // text running past the card's border
    }).map(function (c) { return c.textContent.slice(0, 80); });
    var role = function (e) {  // an element's ARIA role: its own, or the one its tag implies (lists only)
      return e.getAttribute("role") || ({UL: "list", OL: "list", LI: "listitem"})[e.tagName] || "";
    };
    var galleries = Array.prototype.map.call(document.querySelectorAll(".gallery"), function (g) {
      return {role: role(g), cards: g.querySelectorAll(".card").length,
              items: Array.prototype.filter.call(g.children, function (c) { return role(c) === "listitem"; }).length,
              markers: Array.prototype.map.call(g.children, function (c) { return getComputedStyle(c).listStyleType; })};
    });
    var handlers = Array.prototype.filter.call(document.querySelectorAll("*"), function (e) {
      return Array.prototype.some.call(e.attributes, function (a) { return a.name.indexOf("on") === 0; });
    }).length;
    var root = document.documentElement, narrowed = root.hasAttribute("data-vip-width");
    var out = document.createElement("pre");
    out.id = "vip-probe";
    out.textContent = JSON.stringify({images: images, figures: figures, tables: tables, bold: bold, errors: errors, height: document.body.scrollHeight,
                                      overflowing: overflowing, galleries: galleries, scripts: document.scripts.length - 1, handlers: handlers,
                                      title: document.title, text: document.body.innerText,
                                      width: narrowed ? document.body.scrollWidth : root.scrollWidth,
                                      viewport: narrowed ? root.getBoundingClientRect().width : window.innerWidth});
    document.body.appendChild(out);
  });
})();
</script>"""


def find_browser() -> str | None:
    """A chromium-family executable ($VIP_TEST_BROWSER first), or None."""
    configured = os.environ.get("VIP_TEST_BROWSER")
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


BROWSER_TIMEOUT_S = 120  # one browser run; a screenshot takes seconds, tens on a loaded machine


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the browser once on a profile of its own; a run that hangs (headless chromium now and then never ends
    one, seen once in a full CI run at a dark-mode screenshot that takes seconds alone) is run again once, on a new
    profile, before the test fails."""
    for attempt in (1, 2):
        run_profile = profile if attempt == 1 else profile.with_name(f"{profile.name}-again")
        run_profile.mkdir(parents=True, exist_ok=True)
        try:
            return subprocess.run([browser, *FLAGS, f"--user-data-dir={run_profile}", *args], capture_output=True,
                                  text=True, timeout=BROWSER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            if attempt == 2:
                raise


def console_messages(stderr: str) -> list[str]:
    """The page's console messages from chromium's log (its own log lines are left out).

    Chromium logs every console message, whatever its level, as `...:CONSOLE(line)] "text"`; a report
    has no script, so any such line is an error of the page (a failed resource, a CSP violation...).
    """
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


MIN_WINDOW_WIDTH = 500  # px: headless chromium lays out a --dump-dom page no narrower (its screenshots are as asked)


def render(page: Path, workdir: Path, width: int = 1200, max_height: int = 12000) -> dict:
    """Load `page` twice: once with the probe (DOM dump), once as it is (screenshot of the whole page,
    up to `max_height` pixels, and the console log).

    A `width` under MIN_WINDOW_WIDTH (a phone's 390) is laid out by making the probed page's root element
    that wide; the media queries then see a 500 px screen, which every phone rule (max-width: 600px) covers.

    Returns:
        {"images": [{alt, complete, width, height (natural), shown (rendered width), left, top (its place on the
                     page, px), rendering (its CSS image-rendering), figure (inside one)}],
         "figures": [{kind ("img" or "svg"), label (alt text), left, right, shown (rendered width), height,
                      readable (its CSS min-width, px), text (an SVG's smallest text as drawn, px), box (None, or the box that scrolls it sideways: {left, right,
                      overflow (px hidden sideways), content (scroll width), cue (a shadow at an edge with more)})}],
         "tables": [{caption, overflow (px a table's scroll box hides sideways), columns,
                     cue (a shadow drawn at an edge with more beyond it)}],
         "bold": the texts of table cells drawn in bold (font weight 600 or more), in page order,
         "overflowing": the start of the text of each gallery card whose text runs past its border,
         "scripts": the page's own script elements (the probe's left out), "handlers": elements with an on* attribute,
         "errors": [...], "height": px, "title": str, "text": the page's text as laid out (innerText),
         "width": the page's scroll width (px), "viewport": the window's width (px),
         "console": [console lines], "screenshot": Path}
    """
    browser = find_browser()
    assert browser, "no browser"
    workdir.mkdir(parents=True, exist_ok=True)
    text = page.read_text(encoding="utf-8")
    probed = workdir / f"probed-{page.name}"
    narrow = (f'<style>html {{ width: {width}px; }}</style>' if width < MIN_WINDOW_WIDTH else "")
    probed.write_text(text.replace("<head>", "<head>" + PROBE + narrow, 1)
                      .replace("<html", f'<html data-vip-width="{width}"' if narrow else "<html", 1), encoding="utf-8")
    dumped = _run(browser, workdir / "profile-dom", f"--window-size={max(width, MIN_WINDOW_WIDTH)},1000", "--virtual-time-budget=10000",
                  "--dump-dom", probed.resolve().as_uri())
    match = re.search(r'<pre id="vip-probe">(.*?)</pre>', dumped.stdout, re.S)
    assert match, f"the probe wrote nothing (exit {dumped.returncode}): {dumped.stderr[-2000:]}"
    import html

    result = json.loads(html.unescape(match.group(1)))
    screenshot = workdir / f"{page.stem}.png"
    height = min(int(result["height"]) + 20, max_height)
    shot = _run(browser, workdir / "profile-shot", "--enable-logging=stderr", "--v=0", f"--window-size={width},{height}",
                f"--screenshot={screenshot}", page.resolve().as_uri())
    assert screenshot.is_file(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    result.update(console=console_messages(shot.stderr) + console_messages(dumped.stderr), screenshot=screenshot)
    return result


def screenshot(page: Path, png: Path, width: int, height: int, *flags: str) -> Path:
    """A screenshot of the top `width` x `height` pixels of `page`, in a browser started with `flags`
    (e.g. "--force-dark-mode": the page is told the reader prefers dark)."""
    browser = find_browser()
    assert browser, "no browser"
    shot = _run(browser, png.parent / f"profile-{png.stem}", *flags, f"--window-size={width},{height}",
                "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",  # the page settled, drawn whole
                f"--screenshot={png}", page.resolve().as_uri())
    assert png.is_file(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    return png


def pixel_difference(first: Path, second: Path) -> str | None:
    """None when two screenshots are the same image pixel for pixel; else what differs, in words (their sizes,
    or how many pixels differ and the box around them), for a failing test's message."""
    import numpy
    from PIL import Image, ImageChops

    with Image.open(first) as a, Image.open(second) as b:
        if a.size != b.size:
            return f"{first.name} is {a.size}, {second.name} {b.size}"
        difference = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
        box = difference.getbbox()
        if box is None:
            return None
        changed = int(numpy.asarray(difference).any(axis=2).sum())
        return f"{changed} pixels of {first.name} and {second.name} differ, within {box}"


def blank_fraction(png: Path) -> float:
    """The share of the screenshot's pixels that have the most common colour (1.0: blank)."""
    from PIL import Image

    with Image.open(png) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 24)
    total = sum(count for count, _ in colors)
    return max(count for count, _ in colors) / total


def distinct_colors(png: Path) -> int:
    """How many different colours the screenshot shows (text alone gives few; figures and photos many)."""
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24))


def unreadable_figures(result: dict, smallest_text: float) -> list:
    """The figures of a rendered page a reader cannot see whole and read, each as (label, why): off the screen,
    cut off inside the box that scrolls it, an SVG's smallest text drawn under `smallest_text` px, or more of it hidden sideways with no shadow at the edge to say so."""
    found = []
    for figure in result["figures"]:
        box, label = figure["box"] or figure, figure["label"][:40]
        if box["left"] < -0.5 or box["right"] > result["viewport"] + 0.5 or not figure["height"]:
            found.append((label, f"off the {result['viewport']:.0f} px screen: {box['left']:.0f} to {box['right']:.0f}"))
        elif figure["box"] and figure["box"]["content"] < figure["shown"] - 1:
            found.append((label, "cut off inside its box"))
        elif figure["text"] is not None and figure["text"] < smallest_text - 0.01:
            found.append((label, f"text drawn {figure['text']:.1f} px high"))
        elif figure["box"] and figure["box"]["overflow"] > 1 and not figure["box"]["cue"]:
            found.append((label, "hides some of itself sideways with no shadow at the edge"))
    return found


PAPERS = {"A4": (8.27, 11.69), "Letter": (8.5, 11.0)}  # inches
PRINT_MARGIN = 0.4  # inches on every side: about Chrome's print dialog's "Default" margins


def print_to_pdf(page: Path, pdf: Path, paper: str = "A4", backgrounds: bool = False) -> Path:
    """`page` printed to `pdf` on `paper` (a key of PAPERS) as Chrome's print dialog prints it, "Background
    graphics" unchecked unless `backgrounds`. `--print-to-pdf` cannot say that (it prints backgrounds), so this
    asks through the DevTools protocol, on a pipe (no new dependency: JSON messages ended by a NUL byte)."""
    import base64
    import select
    import time

    browser = find_browser()
    assert browser, "no browser"
    profile = pdf.parent / f"profile-print-{pdf.stem}"
    profile.mkdir(parents=True, exist_ok=True)
    to_browser, from_browser = os.pipe(), os.pipe()

    def pipes_as_3_and_4():  # in the child: the browser reads commands on fd 3 and writes answers on fd 4
        reading, writing = os.dup(to_browser[0]), os.dup(from_browser[1])
        os.dup2(reading, 3)
        os.dup2(writing, 4)
        os.set_inheritable(3, True)  # dup2 onto itself would keep its close-on-exec
        os.set_inheritable(4, True)

    process = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                               preexec_fn=pipes_as_3_and_4)
    os.close(to_browser[0])
    os.close(from_browser[1])
    pending, sent, deadline = b"", [0], time.monotonic() + 120

    def ask(method: str, session: str | None = None, until=None, **params) -> dict:
        nonlocal pending
        sent[0] += 1
        message = {"id": sent[0], "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(to_browser[1], json.dumps(message).encode() + b"\0")
        wanted = until or (lambda answer: answer.get("id") == sent[0])
        while True:
            while b"\0" in pending:
                raw, pending = pending.split(b"\0", 1)
                answer = json.loads(raw)
                assert "error" not in answer, answer["error"]
                if wanted(answer):
                    return answer
            assert select.select([from_browser[0]], [], [], max(0.0, deadline - time.monotonic()))[0], "the browser did not answer"
            chunk = os.read(from_browser[0], 1 << 20)
            assert chunk, "the browser closed its pipe"
            pending += chunk

    try:
        target = ask("Target.createTarget", url="about:blank")["result"]["targetId"]
        session = ask("Target.attachToTarget", targetId=target, flatten=True)["result"]["sessionId"]
        ask("Page.enable", session)
        ask("Page.navigate", session, until=lambda answer: answer.get("method") == "Page.loadEventFired",
            url=page.resolve().as_uri())
        width, height = PAPERS[paper]
        printed = ask("Page.printToPDF", session, printBackground=backgrounds, paperWidth=width, paperHeight=height,
                      **{f"margin{side}": PRINT_MARGIN for side in ("Top", "Bottom", "Left", "Right")})
        pdf.write_bytes(base64.b64decode(printed["result"]["data"]))
    finally:
        os.close(to_browser[1])
        os.close(from_browser[0])
        process.kill()
        process.wait()
    return pdf


def find_pdf_renderer() -> str | None:
    """poppler's pdftoppm, which draws a PDF's pages as images (apt-get install poppler-utils), or None."""
    return shutil.which("pdftoppm")


def pdf_pages(pdf: Path, dpi: int = 100, grey: bool = False) -> list[Path]:
    """The pages of `pdf` drawn as PNG files (in greys with `grey`), in order."""
    prefix = pdf.with_suffix("")
    subprocess.run([find_pdf_renderer(), "-r", str(dpi), "-png", *(["-gray"] if grey else []), str(pdf), str(prefix)],
                   check=True, capture_output=True, timeout=120)
    return sorted(pdf.parent.glob(f"{prefix.name}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def pdf_words(pdf: Path) -> list[tuple[str, float]]:
    """Each word of `pdf`'s first page with its height as printed, in points (poppler's pdftotext -bbox)."""
    found = subprocess.run([shutil.which("pdftotext"), "-f", "1", "-l", "1", "-bbox", str(pdf), "-"],
                           check=True, capture_output=True, text=True, timeout=60).stdout
    return [(word, float(bottom) - float(top))
            for top, bottom, word in re.findall(r'<word [^>]*yMin="([\d.]+)" [^>]*yMax="([\d.]+)">([^<]*)</word>', found)]


def pdf_page_texts(pdf: Path, raw: bool = False) -> list[str]:
    """The text of each page of `pdf`, in order (poppler's pdftotext): as laid out on the page, lines of columns side
    by side interleaved, or with `raw` in the order the browser drew it (a box's lines together)."""
    found = subprocess.run([shutil.which("pdftotext"), *(["-raw"] if raw else []), str(pdf), "-"], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    return found.split("\f")[:-1]  # each page ends with a form feed


def pdf_images(pdf: Path) -> list[tuple[int, int, int, int]]:
    """Each image drawn in `pdf` as (its width and height in pixels, the pixels per inch it is printed at across
    and down: the same two unless it is stretched) (poppler's pdfimages -list)."""
    found = subprocess.run([shutil.which("pdfimages"), "-list", str(pdf)], check=True, capture_output=True, text=True,
                           timeout=60).stdout
    rows = [line.split() for line in found.splitlines()[2:]]  # after the header and its rule
    return [(int(row[3]), int(row[4]), int(row[12]), int(row[13])) for row in rows if len(row) > 12 and row[2] == "image"]


# every piece of text of a page, as laid out: a line of an HTML text node (one box per line) or an SVG <text>
TEXT_BOXES = """<script>
window.addEventListener("load", function () {
  var boxes = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), node;
  var add = function (rect, text) {
    if (rect.width >= 4 && rect.height >= 4) boxes.push({text: text.slice(0, 40), left: rect.left + window.scrollX,
      top: rect.top + window.scrollY, right: rect.right + window.scrollX, bottom: rect.bottom + window.scrollY});
  };
  while ((node = walker.nextNode())) {
    var text = node.textContent.trim(), parent = node.parentElement;
    if (!text || !parent || parent.closest("style, script, title, #vip-boxes")) continue;
    if (parent.closest("svg")) { add(parent.getBoundingClientRect(), text); continue; }
    var range = document.createRange();
    range.selectNodeContents(node);
    Array.prototype.forEach.call(range.getClientRects(), function (rect) { add(rect, text); });
  }
  var out = document.createElement("pre");
  out.id = "vip-boxes";
  out.style.display = "none";
  out.textContent = JSON.stringify({boxes: boxes, height: document.body.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def text_contrasts(page: Path, workdir: Path, width: int, *flags: str,
                   max_height: int = 8000) -> list[tuple[float, str]]:
    """How each piece of text of `page` stands out from what is behind it, as a browser started with `flags` draws it
    (e.g. "--enable-features=WebContentsForceDark": it darkens the page): for each text box of the page's top
    `max_height` px (`TEXT_BOXES`), the contrast ratio of its darkest and lightest pixels (the 2nd and 98th
    percentile of its luminance, so that a stray pixel of a line drawn through it counts for little), with the text.
    Glyphs are anti-aliased, so a thin one reads under its colours' own ratio; a word drawn in white on a white
    figure reads near 1."""
    import html

    import numpy
    from PIL import Image

    browser = find_browser()
    assert browser, "no browser"
    workdir.mkdir(parents=True, exist_ok=True)
    probed = workdir / f"boxed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + TEXT_BOXES, 1), encoding="utf-8")
    dumped = _run(browser, workdir / "profile-boxes", *flags, f"--window-size={width},1000",
                  "--virtual-time-budget=10000", "--dump-dom", probed.resolve().as_uri())
    match = re.search(r'<pre id="vip-boxes"[^>]*>(.*?)</pre>', dumped.stdout, re.S)
    assert match, f"the probe wrote nothing (exit {dumped.returncode}): {dumped.stderr[-2000:]}"
    found = json.loads(html.unescape(match.group(1)))
    height = min(int(found["height"]) + 20, max_height)
    png = screenshot(page, workdir / f"{page.stem}-{width}-{len(flags)}.png", width, height, *flags)
    with Image.open(png) as image:
        pixels = numpy.asarray(image.convert("RGB"), dtype=float) / 255
    linear = numpy.where(pixels <= 0.04045, pixels / 12.92, ((pixels + 0.055) / 1.055) ** 2.4)
    luminance = linear @ numpy.array([0.2126, 0.7152, 0.0722])
    contrasts = []
    for box in found["boxes"]:
        top, bottom = max(0, int(box["top"])), min(luminance.shape[0], int(math.ceil(box["bottom"])))
        left, right = max(0, int(box["left"])), min(luminance.shape[1], int(math.ceil(box["right"])))
        if bottom - top < 4 or right - left < 4:
            continue  # below the screenshot, or off the screen sideways (in a box that scrolls)
        low, high = numpy.percentile(luminance[top:bottom, left:right], [2, 98])
        contrasts.append(((high + 0.05) / (low + 0.05), box["text"]))
    return contrasts
