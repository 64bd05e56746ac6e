"""Find the list inside an LLM answer, whatever shape the model chose.

`extract_items(text)` returns the raw list items, trying the shapes in this order:

    JSON          an array, or an object with list or string values (also inside ``` fences and prose,
                  with trailing commas, comments or single quotes: `vipcli.symptoms.jsonish`)
    table         a markdown table: one item per row, "first column: second column"
    bullets       -, *, •, numbered or lettered lines, nested by indentation (sub-points)
    label lines   "Feature: description" lines (two or more)
    prose lines   one short item per line
    inline list   a sentence listing the items, separated by semicolons or commas

Whatever surrounds the list (a preamble such as "Sure! Here are the features:", section titles,
a closing remark such as "These features help CLIP ...") is left out, and so is a reasoning
model's "<think> ... </think>" (`strip_reasoning`, which the caller applies first). `clean_item` then strips
numbering, markdown and trailing punctuation from each item.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

ITEM = re.compile(r"^\s*(?:[-*•+–—]|\d{1,2}\s*[.)]|\(\d{1,2}\)|[a-z][.)](?=\s))\s+(.+)$", re.IGNORECASE)
REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry\b|i cannot|i can'?t|i'?m unable|i am unable|i'?m not able|"
    r"i am not able|as an ai|i won'?t|i will not|i must decline|unfortunately,? i)",
    re.IGNORECASE,
)
# Sentences around a list: an introduction, a summary, advice, a sign-off. Not symptoms.
REMARK = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|okay|ok|great|here (?:are|is)|here's|below (?:are|is)|"
    r"the following|these|this|those|they|all of these|together|overall|in summary|in short|"
    r"to summari[sz]e|summary|note|please|remember|keep in mind|i hope|hope|let me know|feel free|"
    r"however|by focusing|focusing on|using these|when using|for best results|consult|"
    r"it is important|it's important|always|good luck|disclaimer|important)\b",
    re.IGNORECASE,
)
# A reasoning model's thinking before its answer (DeepSeek-R1, QwQ, Qwen3 ...): "<think> ... </think>".
REASONING_OPEN = re.compile(r"^\s*<(think|thinking|reasoning)>", re.IGNORECASE)
REASONING_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
MENTIONS_CLIP = re.compile(r"\bCLIP\b")  # the question names CLIP; the model's remarks echo it
# Words that introduce a list inside a sentence ("Key features include a, b and c").
LIST_CUE = re.compile(
    r"\b(?:include|includes|including|such as|look for|looking for|consist of|consists of|comprise|comprises)\b",
    re.IGNORECASE,
)
# "The key features are a, b and c": "are" introduces a list only after such a noun.
ARE_CUE = re.compile(
    r"\b(?:features|signs|characteristics|clues|cues|findings|traits|indicators|attributes|patterns|things)"
    r"\b[^,;:]{0,40}?\b(?:are|would be)\b",
    re.IGNORECASE,
)
NESTED_LIST = re.compile(r"\b(?:such as|like|e\.g\.|including|for example|especially|namely)\b", re.IGNORECASE)
LABEL_LINE = re.compile(r"^([A-Za-z][^:]{0,40}?)\s*(?::|\s[-–—]\s)\s*(\S.*)$")  # "Border: ragged edges"
TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
MAX_INLINE_WORDS = 12  # an item of a list inside a sentence is a phrase, not a clause
MAX_LINE_WORDS = 25  # a line longer than this is prose, not a list item
# Telling "irregular, jagged borders" (one item) from "asymmetry, jagged borders" (two) without a tagger.
COMMON_ADJECTIVES = frozenset(
    "uneven even dark light round flat smooth rough thin thick large small pale shiny faint bright sharp clear "
    "raised firm soft hazy dull patchy".split()
)
ADJECTIVE_ENDINGS = ("ar", "ed", "ous", "ic", "al", "ish", "ive", "ful", "less", "y", "ible", "able")
NOUN_ENDINGS = ("ity", "metry")
FRAGMENT_WORDS = 2  # sub-points this short under a label ("brown", "blue-gray") are joined: "Color: brown, ..."
QUALIFIER_WORDS = 5  # sub-points this short under a description ("often near the edge") join it
NESTED_WORDS = 3  # words of one entry of a nested enumeration ("such as brown, dark blue and black")


def extract_items(text: str) -> list[str]:
    """The raw list items of an answer, in the model's order ([] when it holds no list).

    Args:
        text: the assistant message.

    Returns:
        Raw items (not yet cleaned or filtered), from the first shape that finds a list.
    """
    for shape in (_json_items, _table_items, _bullet_items, _label_line_items, _line_or_inline_items):
        items = shape(text)
        if items:
            return items
    return []


def clean_item(item: str, keep_colon: bool = False) -> str:
    """Strip numbering, markdown emphasis, links, quotes and trailing punctuation.

    Args:
        item: one raw list item.
        keep_colon: keep a trailing colon (used to recognise section headers).

    Returns:
        The cleaned text ("" if nothing is left).
    """
    text = re.sub(r"\[([^\]\[\n]*)\]\(([^)\n]*)\)", r"\1", item)  # [text](url) -> text (no nested "[": linear time)
    text = re.sub(r"<br\s*/?>", "; ", text, flags=re.IGNORECASE)
    text = re.sub(r"\*\*|__|`", "", text)
    text = re.sub(r"(?<!\w)[*_]|[*_](?!\w)", "", text)  # *italic* / _italic_
    text = ITEM.sub(r"\1", text)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # a terminal colour code, whole
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))  # ESC, zero-width
    text = " ".join(text.split()).strip(" \"'“”")
    trailing = ".;,!" if keep_colon else ".;,:!"
    return text.rstrip(trailing + " ").strip(" \"'“”")


def is_remark(line: str) -> bool:
    """True for a sentence around a list (introduction, summary, advice) rather than an item."""
    text = clean_item(line, keep_colon=True)
    return bool(REMARK.search(text) or REFUSAL.search(text) or MENTIONS_CLIP.search(text))


def strip_reasoning(text: str) -> str:
    """`text` without a reasoning model's thinking: everything up to the last closing </think> tag.

    Some servers leave out the opening tag and send only the closing one; an opening tag that is never
    closed means the whole answer is thinking, and "" is returned.
    """
    closes = list(REASONING_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :].strip()
    return "" if REASONING_OPEN.match(text) else text


# JSON -------------------------------------------------------------------------------------------


def strip_fences(text: str) -> str:
    """The text without ``` fence lines."""
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("```"))


def _json_items(text: str) -> list[str]:
    """Items of the JSON in an answer (arrays, or objects with list/string values; `json_documents`
    finds it inside prose and fences, and reads trailing commas, comments and single quotes); [] if none.
    A document that is one string is read as an answer of its own (it may hold bullets or a sentence)."""
    from vipcli.symptoms.jsonish import json_documents

    items = []
    for document in json_documents(text):
        try:
            items += extract_items(document) if isinstance(document, str) else _json_strings(document)
        except RecursionError:  # JSON nested hundreds deep: no list of symptoms
            continue
    return items


def cut_json(text: str) -> tuple[str, str] | None:
    """A JSON answer cut off mid-way: (the document up to its last complete list element, closed; the rest).

    Tried at each comma directly inside a list, the last first: `{"a": ["x", "y", "z` gives
    ('{"a": ["x", "y"]}', '"z'); JSON that parses whole is returned whole, with nothing cut. None when
    `text` is not JSON or has no such comma.
    """
    body = strip_fences(text).strip()
    if not body or body[0] not in "[{":
        return None
    try:
        json.loads(body)
        return body, ""
    except ValueError:
        pass
    open_brackets: list[str] = []  # the closing bracket of each container still open
    in_string = escaped = False
    cuts: list[tuple[int, str]] = []  # (index of a comma inside a list, the brackets that close it there)
    for index, char in enumerate(body):
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char in "[{":
            open_brackets.append("]" if char == "[" else "}")
        elif char in "]}" and open_brackets:
            open_brackets.pop()
        elif char == "," and open_brackets[-1:] == ["]"]:
            cuts.append((index, "".join(reversed(open_brackets))))
    for index, closing in reversed(cuts):
        try:
            json.loads(body[:index] + closing)
        except ValueError:
            continue
        return body[:index] + closing, " ".join(body[index + 1 :].split())
    return None


def _json_strings(data) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, (list, tuple)):
        return [s for element in data for s in _json_strings_of_element(element)]
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, (list, tuple))]
        if lists:
            return [s for value in lists for s in _json_strings(value)]
        return [f"{k}: {v}" for k, v in data.items() if isinstance(v, str) and v.strip()]
    return []


def _json_strings_of_element(element) -> list[str]:
    if isinstance(element, dict):
        parts = [str(v).strip() for v in element.values() if isinstance(v, str) and v.strip()]
        return [": ".join(parts)] if parts else []
    return _json_strings(element)


# Markdown tables --------------------------------------------------------------------------------


def _table_items(text: str) -> list[str]:
    """One item per row of every markdown table: "first column: second column".

    The header row (the one above the |---| separator) is skipped, and so is a column holding only
    numbers (a "#" column). Further columns (often "why it helps") are left out.
    """
    lines = text.splitlines()
    items: list[str] = []
    for index, line in enumerate(lines):
        if index == 0 or not TABLE_SEPARATOR.match(line) or "|" not in lines[index - 1]:
            continue
        rows = []
        for row in lines[index + 1 :]:
            if "|" not in row or TABLE_SEPARATOR.match(row):
                break
            rows.append(_cells(row))
        items.extend(_rows_to_items(rows))
    return items


def _cells(row: str) -> list[str]:
    cells = [cell.strip() for cell in row.strip().split("|")]
    if cells and not cells[0]:
        cells = cells[1:]
    if cells and not cells[-1]:
        cells = cells[:-1]
    return cells


def _rows_to_items(rows: list[list[str]]) -> list[str]:
    width = max((len(r) for r in rows), default=0)
    numeric = {
        c for c in range(width) if all(re.fullmatch(r"\W*\d+\W*", r[c]) for r in rows if c < len(r) and r[c])
    }
    items = []
    for row in rows:
        cells = [clean_item(cell) for c, cell in enumerate(row) if c not in numeric]
        cells = [cell for cell in cells if cell]
        if cells:
            items.append(": ".join(cells[:2]))
    return items


# Bullets, nested --------------------------------------------------------------------------------


@dataclass
class _Node:
    """One bullet and its sub-points."""

    indent: int  # columns before the marker
    text: str  # the item after the marker
    children: list["_Node"] = field(default_factory=list)


def _bullet_items(text: str) -> list[str]:
    """Items of bullet / numbered / lettered lines, sub-points folded in (see `_flatten`)."""
    roots: list[_Node] = []
    stack: list[_Node] = []
    for line in strip_fences(text).splitlines():
        if not line.strip():
            continue
        indent = len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())
        match = ITEM.match(line)
        if match is None:
            if stack and indent > stack[-1].indent:  # a wrapped bullet continues on this line
                stack[-1].text += " " + line.strip()
            else:  # a title or remark between bullets ends any nesting
                stack = []
            continue
        node = _Node(indent, match.group(1))
        while stack and stack[-1].indent >= indent:
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
    return [item for root in roots for item in _flatten(root)]


def _flatten(node: _Node) -> list[str]:
    """A bullet's items: itself, its sub-points, or both joined.

    - no sub-points: the bullet itself, unless it is a section title ("**Color:**");
    - short sub-points ("brown", "black"): one item, "Color: brown, black" under a label, or
      "Dark dots (near the edge)" under a description;
    - otherwise the sub-points, after the bullet itself unless that is only a label ("Color", "Border:").
    """
    if not node.children:
        return [] if _is_header(node.text) else [node.text]
    children = [item for child in node.children for item in _flatten(child)]
    label = _is_label(node.text)
    short = [clean_item(c) for c in children]
    limit = FRAGMENT_WORDS if label else QUALIFIER_WORDS
    leaves = all(not c.children for c in node.children)
    if leaves and (len(short) >= 2 or not label) and all(len(s.split()) <= limit for s in short):
        parent = clean_item(node.text)
        return [f"{parent}: {', '.join(short)}" if label else f"{parent} ({', '.join(short)})"]
    return children if label else [node.text, *children]


def _is_header(item: str) -> bool:
    """A section title such as '**Color:**' (ends with a colon, nothing after it)."""
    return clean_item(item, keep_colon=True).endswith(":")


def _is_label(item: str) -> bool:
    """A title of sub-points: ends with a colon, or a few words without a description ("Border")."""
    text = clean_item(item, keep_colon=True)
    return text.endswith(":") or (len(text.split()) <= 3 and ":" not in text)


# "Feature: description" lines -------------------------------------------------------------------

def _label_line_items(text: str) -> list[str]:
    """Lines shaped "Feature: description" (at least two, and most of the lines); others are left out."""
    lines = _candidate_lines(text)
    labelled = []
    for line in lines:
        match = LABEL_LINE.match(clean_item(line, keep_colon=True))
        if match and len(match.group(1).split()) <= 5 and not is_remark(line):
            labelled.append(f"{match.group(1).strip()}: {match.group(2).strip()}")
    if len(labelled) >= 2 and 2 * len(labelled) >= len(lines):
        return labelled
    return []


# Prose lines and inline lists -------------------------------------------------------------------


def _candidate_lines(text: str) -> list[str]:
    """Non-empty lines that are not markdown titles or lead-ins ending with a colon."""
    lines = [line.strip() for line in strip_fences(text).splitlines() if line.strip()]
    return [
        line for line in lines
        if not line.startswith(("#", "|")) and not TABLE_SEPARATOR.match(line) and not line.rstrip("*_ ").endswith(":")
    ]


def _line_or_inline_items(text: str) -> list[str]:
    """One item per short line, or the items of a list written inside a sentence.

    Short lines win when there are at least three of them and most are not themselves lists
    (a line like "Colors: brown, black and blue" among plain lines is one item); a paragraph
    or a single line listing the items gives the inline list.
    """
    lines = [line for line in _candidate_lines(text) if not is_remark(line)]
    inline_lines = [line for line in lines if _inline_list(line)]
    short = len(lines) >= 2 and all(len(line.split()) <= MAX_LINE_WORDS for line in lines)
    if short and (not inline_lines or (len(lines) >= 3 and 2 * len(inline_lines) < len(lines))):
        return lines
    return _inline_items(text)


def _inline_items(text: str) -> list[str]:
    """Items of every sentence of `text` that is a list (see `_inline_list`)."""
    return [item for sentence in _sentences(text) if not REFUSAL.search(sentence) for item in _inline_list(sentence)]


def _sentences(text: str) -> list[str]:
    protected = re.sub(r"\b(e\.g|i\.e|vs|etc)\.", lambda m: m.group(1) + "\0", strip_fences(text), flags=re.I)
    parts = re.split(r"(?<=[.!?])\s+|\n+", protected)
    return [part.replace("\0", ".").strip() for part in parts if part.strip()]


def _inline_list(sentence: str) -> list[str]:
    """The items of one sentence if it lists them, else [].

    A list is three or more parts separated by semicolons, or, after an introduction (a colon,
    "include", "such as", "look for", "the key features are"), two or more semicolon parts or
    three or more comma parts; each part a phrase of at most 12 words.
    """
    sentence = clean_item(sentence)
    body, introduced = _list_body(sentence)
    parts = _split_top_level(body, ";")
    if len(parts) >= 3 or (introduced and len(parts) >= 2):
        items = [_strip_conjunction(p) for p in parts]
    elif introduced:
        items = _comma_items(body)
        if len(items) < 3:
            return []
    else:
        return []
    items = [_capitalize(clean_item(re.sub(r",?\s*\betc\.?$", "", item))) for item in items]
    items = [item for item in items if item]
    if len(items) < 2 or any(len(item.split()) > MAX_INLINE_WORDS for item in items):
        return []
    return items


def _list_body(sentence: str) -> tuple[str, bool]:
    """The part of `sentence` after its list introduction, and whether there was one."""
    colon = _top_level_index(sentence, ":")
    if colon >= 0 and sentence[colon + 1 :].strip():
        return sentence[colon + 1 :].strip(), True
    cues = sorted([*LIST_CUE.finditer(sentence), *ARE_CUE.finditer(sentence)], key=lambda m: m.end())
    if not cues:
        return sentence, False
    first_break = min((i for i in (sentence.find(","), sentence.find(";")) if i >= 0), default=len(sentence))
    before = [m for m in cues if m.end() <= first_break]
    cue = before[-1] if before else cues[0]  # "features to look for are a, b": the last cue before the items
    return re.sub(r"^(?:are|is|would be)\s+", "", sentence[cue.end() :].strip()), True


def _top_level_index(text: str, mark: str) -> int:
    depth = 0
    for index, char in enumerate(text):
        depth += char == "("
        depth -= char == ")" and depth > 0
        if char == mark and depth == 0:
            return index
    return -1


def _split_top_level(text: str, mark: str) -> list[str]:
    """`text` split at `mark`, except inside parentheses; empty parts dropped."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")" and depth > 0
        if char == mark and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _comma_items(body: str) -> list[str]:
    """Comma-separated items: "a, b such as x, y and z, and c" -> [a, b such as x, y and z, c].

    A nested enumeration after "such as" / "like" stays with its item; without an Oxford comma the
    last part is split at its last "and" / "or" when both sides are phrases of 2+ words (or all
    items are single words).
    """
    items: list[str] = []
    nested_open = False
    for part in _join_adjectives(_split_top_level(body, ",")):
        if items and nested_open and len(part.split()) <= NESTED_WORDS and not re.match(r"(and|or)\b", part):
            items[-1] += ", " + part
            nested_open = not re.search(r"\b(and|or)\b", part)
            continue
        oxford = re.match(r"(?:and|or)\s+", part)
        items.append(part[oxford.end() :] if oxford else part)
        nested_open = bool(NESTED_LIST.search(part))
    if items and not any(re.match(r"(?:and|or)\s", p) for p in _split_top_level(body, ",")[1:]):
        items[-1:] = _split_last(items[-1], single_words=all(len(i.split()) == 1 for i in items[:-1]))
    return items


def _join_adjectives(parts: list[str]) -> list[str]:
    """Rejoin coordinate adjectives split at their comma: ["an uneven", "lopsided shape"] -> one part."""
    joined: list[str] = []
    for part in parts:
        if joined and _lone_adjective(joined[-1]) and len(part.split()) >= 2 and not re.match(r"(and|or)\s", part):
            joined[-1] += ", " + part
        else:
            joined.append(part)
    return joined


def _lone_adjective(part: str) -> bool:
    """One word (after an article) that reads as an adjective: "an uneven", "irregular", "blurry"."""
    words = re.sub(r"^(?:a|an|the)\s+", "", part.strip(), flags=re.IGNORECASE).split()
    if len(words) != 1:
        return False
    word = words[0].lower()
    suffix = len(word) >= 5 and word.endswith(ADJECTIVE_ENDINGS) and not word.endswith(NOUN_ENDINGS)
    return word in COMMON_ADJECTIVES or suffix


def _split_last(item: str, single_words: bool) -> list[str]:
    if NESTED_LIST.search(item):
        return [item]
    match = list(re.finditer(r"\s(?:and|or)\s", item))
    if not match:
        return [item]
    left, right = item[: match[-1].start()].strip(), item[match[-1].end() :].strip()
    if single_words or (len(left.split()) >= 2 and len(right.split()) >= 2):
        return [left, right]
    return [item]


def _strip_conjunction(part: str) -> str:
    return re.sub(r"^(?:and|or)\s+", "", part.strip())


def _capitalize(item: str) -> str:
    return item[:1].upper() + item[1:] if item[:1].islower() else item
