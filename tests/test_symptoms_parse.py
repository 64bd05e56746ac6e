"""Parsing LLM answers into symptoms, and matching the two stages (no network)."""

from __future__ import annotations

import pytest

from vipcli.symptoms.agree import agree_by_judgement, agree_by_overlap, similarity
from vipcli.symptoms.parse import AnswerError, names_disease, parse_answer
from vipcli.errors import VipError

BULLETS = """Here are some useful visual features for detecting melanoma in dermoscopic images:

- **Asymmetry**: The spot is not the same on both sides.
- **Irregular borders**: Edges are blurry, jagged or notched.
* **Multiple colors**: Shades of brown, black, blue, red or white.
• Small dark dots inside the spot

These features can help CLIP tell suspicious spots apart."""


def test_markdown_bullets_drop_intro_outro_and_markup():
    parsed = parse_answer(BULLETS, "melanoma")
    assert parsed.items == (
        "Asymmetry: The spot is not the same on both sides",
        "Irregular borders: Edges are blurry, jagged or notched",
        "Multiple colors: Shades of brown, black, blue, red or white",
        "Small dark dots inside the spot",
    )


def test_numbered_list_strips_numbers_and_trailing_punctuation():
    parsed = parse_answer("1. Asymmetric shape.\n2) Irregular edges;\n(3) Many colors\n10. Dark dots!", "melanoma")
    assert parsed.items == ("Asymmetric shape", "Irregular edges", "Many colors", "Dark dots")


def test_prose_lines_become_items():
    parsed = parse_answer("Asymmetric shape\nIrregular edges\n\nMany colours", "melanoma")
    assert parsed.items == ("Asymmetric shape", "Irregular edges", "Many colours")


@pytest.mark.parametrize(
    "answer",
    [
        '["Asymmetric shape", "Irregular edges"]',
        '```json\n{"features": ["Asymmetric shape", "Irregular edges"]}\n```',
        '[{"feature": "Asymmetric shape"}, {"feature": "Irregular edges"}]',
    ],
)
def test_json_arrays_and_objects(answer):
    assert parse_answer(answer, "melanoma").items == ("Asymmetric shape", "Irregular edges")


def test_section_headers_are_not_items():
    answer = "### Color\n- Shades of brown\n**Shape:**\n- Round outline\n- **Texture:**\n  - Rough surface"
    assert parse_answer(answer, "melanoma").items == ("Shades of brown", "Round outline", "Rough surface")


def test_items_naming_the_disease_and_repeats_are_removed_with_reasons():
    answer = (
        "- Melanoma-like dark center\n- Asymmetric shape\n- asymmetric shape.\n- Typical of melanomas\n- Many colors"
    )
    parsed = parse_answer(answer, "melanoma")
    assert parsed.items == ("Asymmetric shape", "Many colors")
    assert dict(parsed.removed) == {
        "Melanoma-like dark center": "names the disease",
        "asymmetric shape": "repeated",
        "Typical of melanomas": "names the disease",
    }


def test_multiword_disease_words_are_removed_but_generic_words_stay():
    assert names_disease("Looks like a carcinoma", "basal cell carcinoma")
    assert names_disease("Basal cell pattern", "basal cell carcinoma")
    assert not names_disease("Sharp and clear lung borders", "normal lung")
    assert names_disease("covid-19 haze", "COVID-19 pneumonia")


@pytest.mark.parametrize(
    "answer, message",
    [
        ("", "is empty"),
        ("   \n ", "is empty"),
        ("I'm sorry, but I can't help with identifying medical conditions.", "is a refusal"),
        ("I cannot provide medical advice.", "is a refusal"),
        ("Melanoma often looks asymmetric and has several colors in one spot, with blurry edges.", "is not a list"),
    ],
)
def test_unusable_answers_raise_one_clear_error(answer, message):
    with pytest.raises(AnswerError, match=message):
        parse_answer(answer, "melanoma", what="the stage 1 answer")


def test_disclaimer_before_a_list_is_not_a_refusal():
    answer = "I can't diagnose, but these features help:\n- Asymmetric shape\n- Many colors"
    assert parse_answer(answer, "melanoma").items == ("Asymmetric shape", "Many colors")


def test_overlap_keeps_matching_items_and_names_the_best_match():
    stage1 = [
        "The spot is asymmetric on both sides",
        "Small, dark areas within the spot",
        "Larger than six millimeters",
    ]
    stage2 = ["Asymmetric shape", "Dark dots and small globules", "Smooth texture"]
    agreement = agree_by_overlap(stage1, stage2, threshold=0.3)
    assert [m.symptom for m in agreement.kept] == stage1[:2]
    assert [m.best for m in agreement.kept] == ["Asymmetric shape", "Dark dots and small globules"]
    assert [m.symptom for m in agreement.dropped] == ["Larger than six millimeters"]
    assert similarity("many colours", "many colors") == 1.0


def test_llm_judgement_parses_array_and_rejects_garbage():
    agreement = agree_by_judgement(["a b", "c d"], ["x", "y"], "Sure: [2, 0]")
    assert [(m.symptom, m.best) for m in agreement.kept] == [("a b", "y")]
    with pytest.raises(VipError, match="not a JSON array of 2 numbers"):
        agree_by_judgement(["a b", "c d"], ["x"], "the first one matches")
