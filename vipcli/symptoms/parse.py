"""Turn an LLM answer into a clean list of visual symptoms.

Understands the shapes real models give: markdown bullets, numbered lists, JSON arrays or objects
(also inside ``` fences), and plain one-item-per-line prose. Strips numbering, bold and trailing
punctuation; drops empty, duplicated, over-long and disease-naming items; refuses refusals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from vipcli.errors import VipError

MAX_WORDS = 40  # CLIP reads 77 tokens, 4 of them go to the learned context
REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry\b|i cannot|i can'?t|i'?m unable|i am unable|i'?m not able|"
    r"i am not able|as an ai|i won'?t|i will not|i must decline|unfortunately,? i)",
    re.IGNORECASE,
)
ITEM = re.compile(r"^\s*(?:[-*•+–—]|\d{1,2}\s*[.)]|\(\d{1,2}\)|[a-z][.)](?=\s))\s+(.+)$", re.IGNORECASE)
# Words too generic to count as naming a multi-word disease on their own ("normal lung" -> "lung").
GENERIC_WORDS = frozenset(
    "normal lung lungs chest skin cell cells lesion lesions disease diseases tissue benign malignant "
    "acute chronic pleural pulmonary heart cardiac finding findings with without type".split()
)


class AnswerError(VipError):
    """The LLM's answer cannot be used (empty, a refusal, not a list)."""


@dataclass(frozen=True)
class ParsedAnswer:
    """The usable items of an answer and what was removed."""

    items: tuple[str, ...]  # clean symptoms, in the model's order
    removed: tuple[tuple[str, str], ...]  # (item, reason) for every item dropped


def parse_answer(text: str, disease: str, aliases: tuple[str, ...] = (), what: str = "LLM answer") -> ParsedAnswer:
    """Parse an LLM answer into symptoms that do not name the disease.

    Args:
        text: the assistant message.
        disease: the class name; items containing it (or its distinctive words) are removed.
        aliases: other names of the class, removed the same way.
        what: how to name this answer in error messages, e.g. "stage 1 answer for 'melanoma'".

    Returns:
        The clean items and the removed ones with a reason.

    Raises:
        AnswerError: the answer is empty, a refusal, or not a list.
    """
    text = (text or "").replace("\u2019", "'").strip()
    if not text:
        raise AnswerError(f"{what} is empty")
    raw = extract_items(text)
    if not raw:
        first = _first_line(text)
        if REFUSAL.search(text):
            raise AnswerError(f"{what} is a refusal: {first!r}")
        raise AnswerError(f"{what} is not a list (bullets, numbered lines or JSON): {first!r}")
    return _filter_items([clean_item(item) for item in raw], disease, aliases)


def extract_items(text: str) -> list[str]:
    """The raw list items of `text`: from JSON if it is JSON, else bullet/numbered lines, else short lines."""
    items = _json_items(text)
    if items is not None:
        return items
    lines = [line for line in _strip_fences(text).splitlines() if line.strip()]
    bulleted = [m.group(1) for m in map(ITEM.match, lines) if m]
    if bulleted:
        return [item for item in bulleted if not _is_header(item)]
    return _prose_items(lines)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0]
    return line if len(line) <= 100 else line[:97] + "..."


def _strip_fences(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("```"))


def _json_items(text: str) -> list[str] | None:
    """Items of a JSON answer (array, or object with list/string values), or None if not JSON."""
    body = _strip_fences(text).strip()
    if not body or body[0] not in "[{":
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    items = _json_strings(data)
    return items or None


def _json_strings(data) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, list):
        return [s for element in data for s in _json_strings_of_element(element)]
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if lists:
            return [s for value in lists for s in _json_strings(value)]
        return [f"{k}: {v}" for k, v in data.items() if isinstance(v, str) and v.strip()]
    return []


def _json_strings_of_element(element) -> list[str]:
    if isinstance(element, dict):
        parts = [str(v).strip() for v in element.values() if isinstance(v, str) and v.strip()]
        return [": ".join(parts)] if parts else []
    return _json_strings(element)


def _is_header(item: str) -> bool:
    """A section title such as '**Color:**' (ends with a colon, nothing after it)."""
    return clean_item(item, keep_colon=True).endswith(":")


def _prose_items(lines: list[str]) -> list[str]:
    """One item per line, if the lines look like a list (2+ short lines); else nothing."""
    lines = [line.strip() for line in lines if not line.lstrip().startswith("#")]
    lines = [line for line in lines if not line.rstrip("*_ ").endswith(":")]
    if len(lines) < 2 or any(len(line.split()) > 25 for line in lines):
        return []
    if any(REFUSAL.search(line) for line in lines[:1]):
        return []
    return lines


def clean_item(item: str, keep_colon: bool = False) -> str:
    """Strip numbering, markdown emphasis, links, quotes and trailing punctuation.

    Args:
        item: one raw list item.
        keep_colon: keep a trailing colon (used to recognise section headers).

    Returns:
        The cleaned text ("" if nothing is left).
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", item)  # [text](url) -> text
    text = re.sub(r"\*\*|__|`", "", text)
    text = re.sub(r"(?<!\w)[*_]|[*_](?!\w)", "", text)  # *italic* / _italic_
    text = ITEM.sub(r"\1", text)
    text = " ".join(text.split()).strip(" \"'“”")
    trailing = ".;,!" if keep_colon else ".;,:!"
    return text.rstrip(trailing + " ").strip(" \"'“”")


def normalize_text(text: str) -> str:
    """Lower-case words only, for duplicate detection."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def disease_pattern(disease: str, aliases: tuple[str, ...] = ()) -> re.Pattern:
    """A regex matching the disease, its aliases, and (for multi-word names) their distinctive words.

    Args:
        disease: the class name, e.g. "basal cell carcinoma".
        aliases: other names, e.g. ("bcc",).

    Returns:
        A case-insensitive pattern with word boundaries and optional plural endings.
    """
    terms = set()
    for name in (disease, *aliases):
        words = re.findall(r"[a-z0-9]+", name.lower())
        if not words:
            continue
        terms.add(r"[\s_\-]*".join(map(re.escape, words)))
        if len(words) > 1:
            terms.update(re.escape(w) for w in words if len(w) >= 4 and w not in GENERIC_WORDS)
    alternatives = "|".join(sorted(terms, key=len, reverse=True)) or r"(?!x)x"
    return re.compile(rf"\b(?:{alternatives})(?:s|es)?\b", re.IGNORECASE)


def names_disease(symptom: str, disease: str, aliases: tuple[str, ...] = ()) -> bool:
    """True if `symptom` contains the disease name, an alias, or a distinctive word of them."""
    return bool(disease_pattern(disease, aliases).search(symptom))


def _filter_items(items: list[str], disease: str, aliases: tuple[str, ...]) -> ParsedAnswer:
    pattern = disease_pattern(disease, aliases)
    kept, removed, seen = [], [], set()
    for item in items:
        reason = _reject_reason(item, pattern, seen)
        if reason:
            if item:
                removed.append((item, reason))
            continue
        seen.add(normalize_text(item))
        kept.append(item)
    return ParsedAnswer(items=tuple(kept), removed=tuple(removed))


def _reject_reason(item: str, pattern: re.Pattern, seen: set[str]) -> str | None:
    if not normalize_text(item):
        return "empty"
    if REFUSAL.search(item):
        return "refusal"
    if pattern.search(item):
        return "names the disease"
    if normalize_text(item) in seen:
        return "repeated"
    if len(item.split()) > MAX_WORDS:
        return f"too long for CLIP (over {MAX_WORDS} words)"
    return None
