"""Turn an LLM answer into a clean list of visual symptoms.

The list is found in whatever shape the model chose (`vipcli.symptoms.shapes`: JSON, markdown
tables, nested bullets, numbered lines, "Feature: description" lines, plain lines, or a sentence
listing the items with semicolons or commas), with any preamble and closing remark left out.
A reasoning model's "<think> ... </think>" is left out. Items are stripped of numbering, bold and
trailing punctuation; empty, duplicated, over-long and
disease-naming items are dropped; refusals are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vipcli.errors import VipError
from vipcli.symptoms.shapes import ITEM, REFUSAL, clean_item, cut_json, extract_items, strip_reasoning

__all__ = [
    "CUT_HINT", "CUT_LIMIT", "EMPTY_HINT", "FILTER_HINT", "CUT_REASON", "ITEM", "REFUSAL", "AnswerError", "ParsedAnswer", "clean_item", "disease_pattern", "extract_items",
    "names_disease", "normalize_text", "parse_answer",
]

MAX_WORDS = 40  # CLIP reads 77 tokens, 4 of them go to the learned context
MAX_TOKENS = 70  # of CLIP's 77: the start and end tokens, 4 of learned context and the full stop leave 70
# finish_reason "length": the server stopped at its output-token limit, mid-line
CUT_REASON = "cut off at the model's output limit"
CUT_LIMIT = "raise the server's output-token limit (max_tokens; Ollama num_predict, llama.cpp --n-predict)"
CUT_HINT = f"{CUT_LIMIT}; this answer is cached, --no-cache asks again"
EMPTY_HINT = "try again, or another --model (an empty answer is not cached)"
FILTER_HINT = ("rephrase the class name (--disease with its medical term, e.g. 'nevus' for 'mole'), or try another "
               "--model (an empty answer is not cached)")
SHAPES = "bullets, numbered or 'Feature: description' lines, a table, a list in a sentence, or JSON"
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


def parse_answer(text: str, disease: str, aliases: tuple[str, ...] = (), what: str = "LLM answer",
                 others: tuple[str, ...] = (), truncated: bool = False, filtered: bool = False) -> ParsedAnswer:
    """Parse an LLM answer into symptoms that name neither the disease nor the other classes.

    Args:
        text: the assistant message.
        disease: the class name; items containing it (or its distinctive words) are removed.
        aliases: other names of the class, removed the same way.
        what: how to name this answer in error messages, e.g. "stage 1 answer for 'melanoma'".
        others: the other classes of the data set ("nevus" beside "melanoma"); an item that names one
            ("darker than a typical nevus") would pull this class's prompts towards it, so it is removed.
        truncated: the server stopped at its output-token limit (finish_reason "length"): the last
            line, unless the answer ends with a line break, is cut mid-way; it is removed, with CUT_REASON.
        filtered: the provider's content filter stopped the answer (finish_reason "content_filter"): an
            empty answer says so, with FILTER_HINT.

    Returns:
        The clean items and the removed ones with a reason.

    Raises:
        AnswerError: the answer is empty, a refusal, or not a list.
    """
    text = (text or "").replace("\u2019", "'")
    text, cut = _cut_off(text) if truncated else (text, "")
    text = text.strip()
    if not text and not cut:
        if truncated:  # a reasoning model can spend the whole limit thinking, before a word of its answer
            raise AnswerError(f"{what} is empty: the model stopped at its output limit before writing any (a "
                              "reasoning model may have spent it all thinking)", CUT_LIMIT)
        if filtered:
            raise AnswerError(f"{what} is empty: the provider's content filter removed it (finish_reason "
                              "'content_filter')", FILTER_HINT)
        raise AnswerError(f"{what} is empty", EMPTY_HINT)
    text = strip_reasoning(text)  # the thinking's drafts are not the answer
    if not text:
        if cut:
            raise AnswerError(f"{what} was {CUT_REASON} before any complete item", CUT_HINT)
        raise AnswerError(f"{what} holds only the model's reasoning (<think> with no answer after it)")
    text, elsewhere = _this_class_only(text, disease, aliases, others)
    raw = extract_items(text)
    if not raw:
        first = _first_line(text)
        if cut:
            raise AnswerError(f"{what} was {CUT_REASON} before any complete item: {first!r}", CUT_HINT)
        if REFUSAL.search(text):
            raise AnswerError(f"{what} is a refusal: {first!r}")
        if _empty_json(text):
            raise AnswerError(f"{what} is an empty list, no symptom in it: {first!r}")
        raise AnswerError(f"{what} is not a list ({SHAPES}): {first!r}")
    parsed = _filter_items([clean_item(item) for item in raw], disease, aliases, others)
    parsed = ParsedAnswer(items=parsed.items, removed=(*parsed.removed, *elsewhere))
    if not cut:
        return parsed
    return ParsedAnswer(items=parsed.items, removed=((clean_item(cut) or cut, CUT_REASON), *parsed.removed))


def _this_class_only(text: str, disease: str, aliases: tuple[str, ...],
                     others: tuple[str, ...]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A JSON object of lists keyed by class (`{"melanoma": [...], "nevus": [...]}`) as the list of this
    class alone, and the other classes' items as removed; any other answer as it is, nothing removed.

    The lists under keys that name the disease are kept; without such a key, those under keys naming
    another class (`others`) are removed, as their items would be.
    """
    import json

    from vipcli.symptoms.jsonish import json_documents

    documents = json_documents(text)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        return text, ()
    lists = {str(key): value for key, value in documents[0].items() if isinstance(value, (list, tuple))}
    mine = [key for key in lists if disease_pattern(disease, aliases).search(key)]
    theirs = [key for key in lists if any(name_pattern(other).search(key) for other in others
                                          if other.strip().lower() != disease.lower())]
    if not mine and not theirs:
        return text, ()
    kept = mine or [key for key in lists if key not in theirs]
    removed = tuple((f"{key}: {item}", f"the answer for {key!r}, not {disease!r}")
                    for key in lists if key not in kept for item in lists[key] if isinstance(item, str))
    return json.dumps([item for key in kept for item in lists[key]]), removed


def _cut_off(text: str) -> tuple[str, str]:
    """(the complete part of an answer that stopped at the output limit, the cut-off rest).

    JSON keeps its complete list elements (closed again); any other answer loses its last line unless
    it ends with a line break.
    """
    json_cut = cut_json(strip_reasoning(text))
    if json_cut is not None:
        return json_cut
    body = text.rstrip(" \t")
    if not body.strip() or body.endswith("\n"):
        return text, ""
    head, _, last = body.rpartition("\n")
    return head, last.strip()


def _empty_json(text: str) -> bool:
    """Whether the answer is JSON listing nothing: `[]`, or an object whose lists are all empty."""
    from vipcli.symptoms.jsonish import json_documents

    documents = json_documents(text)
    values = [value for doc in documents for value in (doc.values() if isinstance(doc, dict) else [doc])]
    return bool(documents) and all(isinstance(value, list) and not value for value in values)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0]
    return line if len(line) <= 100 else line[:97] + "..."


WORD = r"[^\W_]+"  # letters and digits of any script: "café", "Sjögren" are one word each


def normalize_text(text: str) -> str:
    """Lower-case words only, for duplicate detection."""
    return " ".join(re.findall(WORD, text.lower()))


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
        words = re.findall(WORD, name.lower())
        if not words:
            continue
        terms.add(r"[\s_\-]*".join(map(re.escape, words)))
        if len(words) > 1:
            terms.update(re.escape(w) for w in words if len(w) >= 4 and w not in GENERIC_WORDS)
    alternatives = "|".join(sorted(terms, key=len, reverse=True)) or r"(?!x)x"
    return re.compile(rf"\b(?:{alternatives})(?:s|es)?\b", re.IGNORECASE)


def name_pattern(name: str) -> re.Pattern:
    """A regex matching `name` whole (words in order, any separator, optional plural ending), never
    one of its words alone: "normal fundus" must not catch "tessellated fundus"."""
    words = re.findall(WORD, name.lower())
    phrase = r"[\s_\-]*".join(map(re.escape, words)) or r"(?!x)x"
    return re.compile(rf"\b{phrase}(?:s|es)?\b", re.IGNORECASE)


def initials(disease: str) -> str:
    """The initials of a disease of two or more words, upper-case ("LP" for lichen planus, "BCC" for basal cell
    carcinoma): the shorthand a model uses for it once it has named it. "" for one word, or a word starting with
    a digit ("COVID-19 pneumonia")."""
    words = re.findall(WORD, disease)
    if len(words) < 2 or not all(word[0].isalpha() for word in words):
        return ""
    return "".join(word[0] for word in words).upper()


def names_disease(symptom: str, disease: str, aliases: tuple[str, ...] = ()) -> bool:
    """True if `symptom` contains the disease name, an alias, or a distinctive word of them."""
    return bool(disease_pattern(disease, aliases).search(symptom))


def _filter_items(items: list[str], disease: str, aliases: tuple[str, ...],
                  others: tuple[str, ...] = ()) -> ParsedAnswer:
    pattern = disease_pattern(disease, aliases)
    short = initials(disease)
    other_patterns = [(other, name_pattern(other)) for other in others  # a grade folder "2" names nothing
                      if other.strip().lower() != disease.lower() and re.search(r"[^\W\d_]", other)]
    kept, removed, seen, meanings = [], [], set(), {}
    for item in items:
        reason = _reject_reason(item, pattern, seen) or next(
            (f"names another class ({other!r})" for other, named in other_patterns if named.search(item)), None)
        if reason is None and short and re.search(rf"\b{short}s?\b", item):
            reason = f"names the disease by its initials ({short!r})"
        meaning = same_meaning_key(item)
        if reason is None and meaning in meanings:
            reason = f"repeats {meanings[meaning]!r} in other words"
        if reason:
            if item:
                removed.append((item, reason))
            continue
        seen.add(_wording(item))
        meanings.setdefault(meaning, item)
        kept.append(item)
    return ParsedAnswer(items=tuple(kept), removed=tuple(removed))


COMPARISONS = "<>≤≥±"  # "< 6 mm" and "> 6 mm" say different things in the same words


def _wording(item: str) -> str:
    """`item` up to case, spacing and punctuation, its comparison signs kept: "Irregular border." and "irregular
    border" are one wording, "< 6 mm" and "> 6 mm" two."""
    return normalize_text(item) + " " + "".join(c for c in item if c in COMPARISONS)


# Words that name one visual feature in a symptom, and the one word each stands for when symptoms are compared. Only
# words that say the same of any image, whatever they describe: "irregular borders" and "irregular edges", "blurry"
# and "fuzzy", "bluish" and "blue". Never a word of another degree or kind ("jagged" is one way to be irregular,
# "notched" another; "hazy" is an opacity on an X-ray; "clear" is a transparent lung field), nor a negation.
SAME_WORDS = {
    "border": "edge margin boundary outline",
    "blurry": "blurred fuzzy indistinct",
    "irregular": "uneven",
    "asymmetric": "lopsided",
    "color": "hue",
    "round": "rounded circular",
    "large": "big",
    "small": "tiny",
    "blue": "bluish blueish",
    "red": "reddish",
    "brown": "brownish",
    "white": "whitish",
    "gray": "grayish greyish",
    "yellow": "yellowish",
    "pink": "pinkish",
    "black": "blackish",
    "purple": "purplish",
    "green": "greenish",
}
# Phrases of two words that say one of those words: "well-defined edges" are sharp edges.
SAME_PHRASES = {
    "sharp": "well defined|sharply defined|well demarcated|sharply demarcated|well circumscribed|clearly defined",
    "blurry": "ill defined|poorly defined|poorly demarcated",
}
_PHRASE = re.compile(r"\b(" + "|".join(p.replace(" ", r"[\s-]+") for ps in SAME_PHRASES.values()
                                        for p in ps.split("|")) + r")\b")
_WORD_FOR_PHRASE = {phrase: word for word, ps in SAME_PHRASES.items() for phrase in ps.split("|")}
_WORD_FOR = {variant: word for word, variants in SAME_WORDS.items() for variant in (word, *variants.split())}


def same_words(text: str) -> str:
    """`text` lower-cased, each word or phrase of `SAME_WORDS` / `SAME_PHRASES` (and its plural) written as the one
    word it stands for: "Bluish-white veil" -> "blue-white veil", "Irregular edges" -> "irregular borders",
    "Well-defined margins" -> "sharp borders"."""
    text = _PHRASE.sub(lambda m: _WORD_FOR_PHRASE[" ".join(re.split(r"[\s-]+", m.group(1)))], text.lower())
    return re.sub(r"[a-z]+", _canonical_word, text)


def _canonical_word(match: re.Match) -> str:
    word = match.group(0)
    if word in _WORD_FOR:
        return _WORD_FOR[word]
    for plural in ("es", "s"):  # "edges" -> "borders", "boundaries" -> "borders"
        if word.endswith(plural) and word[: -len(plural)] in _WORD_FOR:
            return _WORD_FOR[word[: -len(plural)]] + "s"
    if word.endswith("ies") and word[:-3] + "y" in _WORD_FOR:
        return _WORD_FOR[word[:-3] + "y"] + "s"
    return word


def same_meaning_key(item: str) -> tuple:
    """What two wordings of one symptom share: its content words stemmed to their root, and its comparison signs.
    "Asymmetric shape", "Asymmetrical shape" and "The shape is asymmetric" give one key; "Symmetric shape", "No
    dark dots", "> 6 mm" beside "< 6 mm", or "Larger than 8 mm" beside "Larger than 6 mm" give another. Words of
    `SAME_WORDS` and `SAME_PHRASES` count as the one word they stand for: "Irregular edges" and "Irregular
    borders", "Bluish-white veil" and "Blue-white veil" give one key. Word order counts once an item has more than
    two roots, where it says which word goes with which: "Dark center with light edges" and "Light center with dark
    edges" are two symptoms. An item of no content word gets a key of its own (the item itself)."""
    from vipcli.symptoms.agree import content_word_sequence, stem

    roots = tuple(_root(word, stem) for word in content_word_sequence(same_words(item)) if not _is_number(word))
    if not roots:
        return ("", item)
    words = frozenset(roots) if len(set(roots)) <= 2 else roots
    return words, "".join(sorted(c for c in item if c in COMPARISONS)), numbers_in(item)


NUMBER_WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                "seventeen eighteen nineteen twenty").split()
_NUMBER_STEMS = {stem for word in NUMBER_WORDS for stem in (word, word.rstrip("e"))}  # "twelve" stems to "twelv"


def _is_number(word: str) -> bool:
    """True for a content word that is a number, in digits or (stemmed) words up to twenty: `numbers_in` gives the
    key its numbers, so "six mm" and "6 mm" share one."""
    return word[:1].isdigit() or word in _NUMBER_STEMS


def numbers_in(text: str) -> tuple[str, ...]:
    """The numbers `text` gives, in digits or words up to twenty, in order: "Larger than 6 mm" and "Larger than six
    mm" -> ("6",), "Two dark dots" -> ("2",). The key's words leave out numbers, which this gives instead: "6 mm"
    and "8 mm", or one dot and two, are two symptoms; "six mm" and "6 mm" one."""
    found = re.findall(r"\d+(?:[.,]\d+)?|[a-z]+", text.lower())
    return tuple(str(NUMBER_WORDS.index(word) + 1) if word in NUMBER_WORDS else word for word in found
                 if word[0].isdigit() or word in NUMBER_WORDS)


def _root(word: str, stem) -> str:
    """`word` stemmed until no suffix comes off ("asymmetrical" -> "asymmetric" -> "asymmetr"), a short plural
    in the singular ("dots" -> "dot")."""
    if len(word) >= 4 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    shorter = stem(word)
    while shorter != word:
        word, shorter = shorter, stem(shorter)
    return word


# a template's blank a model echoed instead of filling it: "[Feature 1]", "<symptom>", "{symptom_2}", "Symptom 3",
# "[Insert visual feature here]"
PLACEHOLDER = re.compile(
    r"^\s*(?:[\[<{][^\]>}]*[\]>}]"  # wholly in brackets
    r"|(?:feature|symptom|item|sign|finding|characteristic|description)[\s_-]*\d+)\s*[.:]?\s*$", re.IGNORECASE)


def _reject_reason(item: str, pattern: re.Pattern, seen: set[str]) -> str | None:
    if not normalize_text(item):
        return "empty"
    if REFUSAL.search(item):
        return "refusal"
    if PLACEHOLDER.match(item):
        return "a template's placeholder, not a symptom"
    if pattern.search(item):
        return "names the disease"
    if _wording(item) in seen:
        return "repeated"
    if len(item.split()) > MAX_WORDS:
        return f"too long for CLIP (over {MAX_WORDS} words)"
    tokens = clip_tokens_estimate(item)
    if tokens > MAX_TOKENS:
        return f"too long for CLIP (about {tokens} tokens; its text encoder reads 77)"
    return None


def clip_tokens_estimate(text: str) -> int:
    """A generous estimate of the tokens CLIP's tokenizer makes of `text` (without its start and end).

    One per digit and per punctuation mark, one per 4 letters of an ASCII word (long medical words split
    into several pieces), three per letter beyond ASCII (a "µ" or a CJK character is several byte tokens).
    Exact counts differ by backbone; `vip train` checks them, this only keeps a symptom that cannot fit
    out of the pack.
    """
    count = 0
    for piece in re.findall(r"[^\W\d_]+|\S", text):
        if not piece.isalpha():
            count += 1
            continue
        ascii_letters = sum(c.isascii() for c in piece)
        count += -(-ascii_letters // 4) + 3 * (len(piece) - ascii_letters)
    return count
