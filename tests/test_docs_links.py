"""Every link between vip's own documents leads somewhere: README, CHANGELOG, docs/ and the examples' READMEs.

README's Speed history moved to docs/SPEED.md and is reached by links such as `docs/SPEED.md#every-run`; a heading
renamed on one side would leave a link that opens the top of the page, or no page. Links are read the way a
Markdown renderer reads them (markdown-it, which rich already installs), so a link shown inside a code block is not
one; anchors are GitHub's heading slugs, plus explicit `id="..."` anchors.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "examples").rglob("*.md"))]


def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, only letters, digits, spaces, hyphens and underscores kept,
    spaces turned into hyphens."""
    kept = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


@functools.cache
def anchors(document: Path) -> frozenset[str]:
    """The anchors of `document`: its headings' slugs (a repeated heading's get -1, -2, ...) and its `id="..."`s.
    Read once per document, however many links lead into it."""
    text = document.read_text(encoding="utf-8")
    tokens = _parser().parse(text)
    seen: dict[str, int] = {}
    found = set(re.findall(r'\bid="([^"]+)"', text))
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open":
            slug = github_slug("".join(c.content for c in inline.children if c.type in ("text", "code_inline")))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return frozenset(found)


def links(document: Path) -> list[str]:
    """The targets of the Markdown links of `document` (not those shown in code)."""
    return [child.attrs["href"] for token in _parser().parse(document.read_text(encoding="utf-8"))
            if token.type == "inline" for child in token.children if child.type == "link_open"]


def test_the_slugs_are_githubs():
    assert github_slug("Checking the GPU goals: scripts/gpu_speed.py") == "checking-the-gpu-goals-scriptsgpu_speedpy"
    assert github_slug("Thirty-fifth day: a vip train process's fixed costs") == \
        "thirty-fifth-day-a-vip-train-processs-fixed-costs"


@pytest.mark.parametrize("document", _documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_of_vips_documents_leads_to_a_file_and_heading_that_exist(document):
    broken = []
    for href in links(document):
        if re.match(r"[a-z][a-z0-9+.-]*:", href):
            continue  # https:, mailto: ... (not fetched: tests are offline)
        target, _, anchor = href.partition("#")
        destination = (document.parent / target).resolve() if target else document
        if not destination.exists():
            broken.append(f"{href}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{href}: no such heading in {destination.name}")
    assert not broken, f"{document.relative_to(ROOT)}: {broken}"


def test_the_check_finds_a_broken_link(tmp_path):
    """The test above could not fail if no link were read or every anchor matched."""
    (tmp_path / "a.md").write_text("# Speed\n\n[ok](#speed) [gone](#every-run) [file](b.md#x)\n\n    [code](#no)\n")
    (tmp_path / "b.md").write_text('<a id="x"></a>\n')
    document = tmp_path / "a.md"
    assert links(document) == ["#speed", "#every-run", "b.md#x"]
    assert anchors(document) == {"speed"} and anchors(tmp_path / "b.md") == {"x"}
    assert len(links(ROOT / "README.md")) > 20
