"""Which stage-1 symptoms the stage-2 (image) answer agrees with.

Default: deterministic token overlap, no embeddings. Each item becomes a set of lightly stemmed
content words; similarity is the cosine of the two sets, |A & B| / sqrt(|A| |B|); a stage-1 item
is kept when its best stage-2 match reaches the threshold. Optional: an LLM judge.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from vipcli.errors import VipError
from vipcli.symptoms.shapes import strip_reasoning

DEFAULT_THRESHOLD = 0.3
STOPWORDS = frozenset(
    "a an and are as at be been being both by can could do does for from has have having in into is it its "
    "like may might more most of on or often other over such than that the their them there these they this "
    "those through to under usually very was were which while with within would also any each either some "
    "spot spots lesion lesions area areas region regions image images appearance appear appears appearing "
    "seen visible presence present show shows showing feature features look looks looking typically may "
    "which who whose one two".split()
)
SPELLING = {"colour": "color", "grey": "gray", "centre": "center", "haemorrhage": "hemorrhage", "oedema": "edema"}
SUFFIXES = (
    "ically",
    "ations",
    "ation",
    "ness",
    "ities",
    "ity",
    "ies",
    "ing",
    "ed",
    "ly",
    "es",
    "s",
    "ic",
    "al",
    "y",
    "e",
)


@dataclass(frozen=True)
class Match:
    """A stage-1 symptom and its closest stage-2 item."""

    symptom: str  # the stage-1 item
    best: str  # the most similar stage-2 item ("" if none)
    score: float  # similarity in [0, 1] (1.0/0.0 when an LLM judged)


@dataclass(frozen=True)
class Agreement:
    """The split of stage-1 symptoms into agreed (kept) and not agreed (dropped)."""

    kept: tuple[Match, ...]  # in stage-1 order
    dropped: tuple[Match, ...]  # in stage-1 order
    method: str  # "overlap >= <threshold>" or "llm judge"


def stem(word: str) -> str:
    """Light stemming: British spellings to US, then one common suffix off (stem kept >= 4 letters)."""
    word = SPELLING.get(word, word)
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return SPELLING.get(word, word)


def content_word_sequence(text: str) -> tuple[str, ...]:
    """Stemmed words of `text` that carry meaning (stopwords and 1-letter words removed), in their order."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return tuple(stem(w) for w in words if w not in STOPWORDS and len(w) > 1)


def content_words(text: str) -> frozenset[str]:
    """The set of `content_word_sequence(text)`."""
    return frozenset(content_word_sequence(text))


def similarity(a: str, b: str) -> float:
    """Cosine of the content-word sets of `a` and `b`, in [0, 1]."""
    x, y = content_words(a), content_words(b)
    if not x or not y:
        return 0.0
    return len(x & y) / math.sqrt(len(x) * len(y))


def agree_by_overlap(stage1: list[str], stage2: list[str], threshold: float = DEFAULT_THRESHOLD) -> Agreement:
    """Keep each stage-1 item whose best stage-2 match has similarity >= `threshold`.

    Args:
        stage1: symptoms from the text question.
        stage2: features from the image-grid question.
        threshold: minimum similarity to count as agreeing.

    Returns:
        Kept and dropped stage-1 items, each with its best stage-2 match and score.
    """
    matches = [_best_match(item, stage2) for item in stage1]
    return Agreement(
        kept=tuple(m for m in matches if m.score >= threshold),
        dropped=tuple(m for m in matches if m.score < threshold),
        method=f"token overlap >= {threshold:g}",
    )


def _best_match(item: str, candidates: list[str]) -> Match:
    scored = [(similarity(item, c), c) for c in candidates]
    score, best = max(scored, key=lambda pair: pair[0], default=(0.0, ""))
    return Match(symptom=item, best=best if score > 0 else "", score=round(score, 3))


def judge_prompt(disease: str, stage1: list[str], stage2: list[str]) -> str:
    """The question asking an LLM which stage-1 items a stage-2 item also describes."""
    list_a = "\n".join(f"A{i}. {s}" for i, s in enumerate(stage1, 1))
    list_b = "\n".join(f"B{i}. {s}" for i, s in enumerate(stage2, 1))
    return (
        f"Two lists describe visual features of {disease} images.\n\nList A:\n{list_a}\n\nList B:\n{list_b}\n\n"
        f"For each item of list A, give the number of the item of list B that describes the same visual "
        f"feature, or 0 if none does. Answer only with a JSON array of {len(stage1)} integers, e.g. [2, 0, 1]."
    )


def agree_by_judgement(stage1: list[str], stage2: list[str], answer: str) -> Agreement:
    """Split stage-1 items using an LLM judge's answer to `judge_prompt`.

    Args:
        stage1: symptoms from the text question.
        stage2: features from the image-grid question.
        answer: the judge's reply, a JSON array with one stage-2 number (or 0) per stage-1 item.

    Raises:
        VipError: the reply is not such an array.
    """
    picks = _parse_judgement(answer, len(stage1), len(stage2))
    matches = [Match(s, stage2[p - 1] if p else "", 1.0 if p else 0.0) for s, p in zip(stage1, picks)]
    return Agreement(
        kept=tuple(m for m in matches if m.score),
        dropped=tuple(m for m in matches if not m.score),
        method="llm judge",
    )


def _parse_judgement(answer: str, count: int, limit: int) -> list[int]:
    answer = strip_reasoning(answer or "")  # "<think> ... [1, 0] ... </think>" drafts are not the verdict
    found = re.search(r"\[[^\[\]]*\]", answer)
    try:
        picks = json.loads(found.group(0)) if found else None
    except ValueError:
        picks = None
    valid = (
        isinstance(picks, list) and len(picks) == count and all(isinstance(p, int) and 0 <= p <= limit for p in picks)
    )
    if not valid:
        shown = " ".join((answer or "").split())[:80]
        raise VipError(
            f"the --judge llm answer is not a JSON array of {count} numbers: {shown!r}",
            "use the default --judge overlap, or a stronger --model",
        )
    return picks
