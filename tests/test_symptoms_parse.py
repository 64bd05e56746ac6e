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


def test_items_naming_another_class_are_removed_with_their_reason():
    answer = "- Scaly red patch\n- Paler than lichen planus\n- Not a basal-cell carcinoma\n- Silvery scales"
    parsed = parse_answer(answer, "psoriasis", others=("lichen planus", "basal cell carcinoma", "psoriasis"))
    assert parsed.items == ("Scaly red patch", "Silvery scales")
    assert parsed.removed == (("Paler than lichen planus", "names another class ('lichen planus')"),
                              ("Not a basal-cell carcinoma", "names another class ('basal cell carcinoma')"))
    assert parse_answer(answer, "psoriasis").items == tuple(line[2:] for line in answer.splitlines())
    # another class's single words are not its name: "normal fundus" leaves "tessellated fundus" alone
    fundus = "- Tessellated fundus\n- Looks like a normal fundus\n- Arborizing vascular pattern"
    kept = parse_answer(fundus, "pathologic myopia", others=("normal fundus", "vascular lesion")).items
    assert kept == ("Tessellated fundus", "Arborizing vascular pattern")
    # names with letters beyond ASCII are caught whole, the class's own and the others'
    spots = "- Like a café-au-lait macule\n- Uniform light brown\n- Sjögren syndrome signs\n- Oval outline"
    assert parse_answer(spots, "café au lait macule", others=("Sjögren syndrome",)).items == (
        "Uniform light brown", "Oval outline")
    # grade folders ("0" to "4") name no class in words: "1 or 2 spots" stays
    assert parse_answer("- 1 or 2 small red dots\n- Hard exudates", "3", others=("1", "2")).items == (
        "1 or 2 small red dots", "Hard exudates")


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


# --- the other shapes real models answer in (issue 12) -------------------------------------------

SEMICOLON_PARAGRAPH = (
    "When using CLIP to spot melanoma in dermoscopic images, focus on these visual features: an asymmetric "
    "shape where one half does not match the other; ragged, notched or blurred edges; several colors in one "
    "spot (brown, black, blue-gray, red or white); a dark spot larger than a pencil eraser; and a blue-white "
    "veil over part of the spot. Keep in mind that these cues support, but do not replace, a clinical diagnosis."
)
COMMA_PARAGRAPH = (
    "Useful visual features for melanoma in dermoscopic images include an uneven, lopsided shape, blurry or "
    "jagged borders, a mix of colors such as brown, black and blue, irregular dark dots, and a whitish veil. "
    "These plain descriptions work well as CLIP prompts."
)
LABEL_LINES = """Sure! Here are visual features CLIP can pick up for melanoma in dermoscopic images.

Asymmetry: one half of the spot looks different from the other half.
**Border:** edges are ragged, notched or fade into the skin.
Color – several shades in one spot, such as brown, black, blue or red.
Dots and globules: small dark dots of different sizes, unevenly spread.

These descriptions avoid the disease name, so CLIP has to rely on what it sees."""
TABLE = """Here is a table of visual features for detecting melanoma in dermoscopic images:

| # | Feature | What it looks like | Why it helps |
|---|---------|--------------------|--------------|
| 1 | **Asymmetry** | One half does not match the other | Benign spots are usually symmetric |
| 2 | Irregular border | Ragged, notched or blurred edges | Uneven growth |
| 3 | Color variation | Brown, black and blue in one spot<br>sometimes red | Pigment at different depths |
| 4 | Dark dots | Small black dots scattered unevenly | |

Use these phrases as prompts for CLIP."""
NESTED = """Here are useful visual features, grouped by type:

1. **Shape**
   - Asymmetric outline, one half differs from the other
   - Irregular, lopsided form
2. **Border**
   - Ragged or notched edges
   - Edges that fade
     into the surrounding skin
3. **Multiple colors:**
   - brown
   - black
   - blue-gray
4. Small dark dots scattered unevenly inside the spot
   - often near the edge

I hope this helps you build good prompts for CLIP!"""


@pytest.mark.parametrize(
    "answer, expected",
    [
        (
            SEMICOLON_PARAGRAPH,
            (
                "An asymmetric shape where one half does not match the other",
                "Ragged, notched or blurred edges",
                "Several colors in one spot (brown, black, blue-gray, red or white)",
                "A dark spot larger than a pencil eraser",
                "A blue-white veil over part of the spot",
            ),
        ),
        (
            COMMA_PARAGRAPH,
            (
                "An uneven, lopsided shape",
                "Blurry or jagged borders",
                "A mix of colors such as brown, black and blue",
                "Irregular dark dots",
                "A whitish veil",
            ),
        ),
        (
            "The key visual features to look for are asymmetric shape, irregular borders, multiple colors and "
            "small dark dots.",
            ("Asymmetric shape", "Irregular borders", "Multiple colors", "Small dark dots"),
        ),
        (
            "Asymmetric shape; blurry edges; several colors; small dark dots",
            ("Asymmetric shape", "Blurry edges", "Several colors", "Small dark dots"),
        ),
    ],
    ids=["semicolons-with-preamble-and-remark", "commas-with-nested-list", "commas-no-oxford-comma", "bare-semicolons"],
)
def test_a_paragraph_listing_features_with_semicolons_or_commas(answer, expected):
    assert parse_answer(answer, "melanoma").items == expected


def test_feature_description_lines_drop_the_preamble_and_the_closing_remark():
    assert parse_answer(LABEL_LINES, "melanoma").items == (
        "Asymmetry: one half of the spot looks different from the other half",
        "Border: edges are ragged, notched or fade into the skin",
        "Color: several shades in one spot, such as brown, black, blue or red",
        "Dots and globules: small dark dots of different sizes, unevenly spread",
    )


def test_markdown_table_rows_become_feature_description_items():
    assert parse_answer(TABLE, "melanoma").items == (
        "Asymmetry: One half does not match the other",
        "Irregular border: Ragged, notched or blurred edges",
        "Color variation: Brown, black and blue in one spot; sometimes red",
        "Dark dots: Small black dots scattered unevenly",
    )


def test_nested_bullets_keep_sub_points_and_fold_short_ones_into_their_parent():
    assert parse_answer(NESTED, "melanoma").items == (
        "Asymmetric outline, one half differs from the other",
        "Irregular, lopsided form",
        "Ragged or notched edges",
        "Edges that fade into the surrounding skin",
        "Multiple colors: brown, black, blue-gray",
        "Small dark dots scattered unevenly inside the spot (often near the edge)",
    )


def test_plain_lines_around_a_preamble_and_a_closing_remark():
    answer = "Sure, here are some features.\nAsymmetric shape\nBlurry edges\nSeveral colors\nThese should help CLIP."
    assert parse_answer(answer, "melanoma").items == ("Asymmetric shape", "Blurry edges", "Several colors")


def test_a_line_that_lists_colors_among_plain_lines_stays_one_item():
    answer = "Asymmetric shape\nSeveral colors: brown, black, blue and red\nSmall dark dots"
    assert parse_answer(answer, "melanoma").items == (
        "Asymmetric shape", "Several colors: brown, black, blue and red", "Small dark dots",
    )


@pytest.mark.parametrize(
    "answer, message",
    [
        (
            "It is hard to describe these features in words that CLIP would understand. A dermatologist looks at "
            "the whole picture, and the history of the spot matters more than any single feature.",
            "is not a list",
        ),
        ("Good question! Visual diagnosis needs an expert.\nPlease consult a dermatologist.", "is not a list"),
        ("I'm sorry, I cannot help with diagnosing conditions such as melanoma, nevus, or cancer.", "is a refusal"),
        ("| Feature | Description |\n|---|---|\n", "is not a list"),
    ],
    ids=["prose", "remarks-only", "refusal-with-a-list-inside", "empty-table"],
)
def test_answers_without_a_list_stay_a_clear_error(answer, message):
    with pytest.raises(AnswerError, match=message) as error:
        parse_answer(answer, "melanoma", what="the stage 1 answer")
    assert "\n" not in str(error.value)


THINKING = """<think>
The user wants features. Let me recall the ABCDE rule:
- Asymmetry of the lesion
- Border irregularity
I should avoid the word melanoma.
</think>

- One half of the spot does not match the other
- Ragged, notched or blurry edges"""


def test_a_reasoning_models_thinking_is_not_the_answer():
    # DeepSeek-R1, QwQ, Qwen3: the drafts inside <think> are not symptoms (they came first, so --n kept them)
    assert parse_answer(THINKING, "melanoma").items == (
        "One half of the spot does not match the other", "Ragged, notched or blurry edges")
    # some servers drop the opening tag and send only "</think>"
    assert parse_answer(THINKING.replace("<think>", ""), "melanoma").items == (
        "One half of the spot does not match the other", "Ragged, notched or blurry edges")
    with pytest.raises(AnswerError, match="only the model's reasoning"):
        parse_answer("<think>\nThe user wants features.\n- Asymmetry\n- Border", "melanoma")
    # the llm judge's verdict is after the thinking, not a draft array inside it
    judged = agree_by_judgement(["Blurry edges", "Dark dots"], ["Jagged borders", "Black dots"],
                                "<think>maybe [0, 0]? no: [1, 2]</think>\n[1, 2]")
    assert [m.best for m in judged.kept] == ["Jagged borders", "Black dots"]


FOUR = ("Irregular borders", "Several colors", "Blue-white veil", "Lesion's uneven shape")


@pytest.mark.parametrize("answer", [
    'Sure! Here is the list:\n```json\n["Irregular borders", "Several colors", "Blue-white veil", '
    '"Lesion\'s uneven shape"]\n```\nLet me know if you need more.',
    '```json\n{"features": ["Irregular borders", "Several colors", "Blue-white veil", "Lesion\'s uneven shape"]}\n```'
    "\n\n**Note:** these are general features.",
    'Colors:\n```json\n["Irregular borders", "Several colors"]\n```\nShapes:\n```json\n'
    '["Blue-white veil", "Lesion\'s uneven shape"]\n```',
    'Here you go: ["Irregular borders", "Several colors", "Blue-white veil", "Lesion\'s uneven shape"]',
    '["Irregular borders", "Several colors", "Blue-white veil", "Lesion\'s uneven shape",]',
    '{"features": ["Irregular borders", "Several colors", "Blue-white veil", "Lesion\'s uneven shape",],}',
    '[\n  "Irregular borders", // the edges\n  "Several colors", /* hue, not "tone" */\n  "Blue-white veil",\n'
    '  "Lesion\'s uneven shape"\n]',
    "['Irregular borders', 'Several colors', 'Blue-white veil', 'Lesion\\'s uneven shape']",
    "{'features': ('Irregular borders', 'Several colors', 'Blue-white veil', \"Lesion's uneven shape\")}",
    '"- Irregular borders\\n- Several colors\\n- Blue-white veil\\n- Lesion\'s uneven shape"',
])
def test_json_as_models_write_it_is_read_as_json(answer):
    """A JSON list after a preamble, with a note after its fence, in two fenced blocks, after "Here you go:",
    with trailing commas, comments or single quotes was read line by line: items such as '["Irregular
    borders' and 'Several colors", // the edges' went into the pack, or the answer was "not a list"."""
    assert parse_answer(answer, "melanoma").items == FOUR


def test_commas_and_comment_marks_inside_json_strings_are_kept():
    answer = '["Dots, globules and streaks", "A veil // blue-white",]'
    assert parse_answer(answer, "melanoma").items == ("Dots, globules and streaks", "A veil // blue-white")


def test_brackets_in_a_bullet_list_are_not_taken_for_json():
    answer = "- Irregular borders [1]\n- Several colors [2]\n- {dark} dots\n- Blue-white veil"
    assert parse_answer(answer, "melanoma").items == ("Irregular borders [1]", "Several colors [2]", "{dark} dots",
                                                      "Blue-white veil")


def test_a_json_answer_keyed_by_class_gives_this_class_its_own_items_only():
    """`{"melanoma": [...], "nevus": [...]}` gave the melanoma pack nevus's items too (beyond --n, or kept
    by stage 2), without a word."""
    answer = '{"melanoma": ["Irregular borders", "Several colors"], "nevus": ["Round shape", "One color"]}'
    parsed = parse_answer(answer, "melanoma", others=("nevus",))
    assert parsed.items == ("Irregular borders", "Several colors")
    assert parsed.removed == (("nevus: Round shape", "the answer for 'nevus', not 'melanoma'"),
                              ("nevus: One color", "the answer for 'nevus', not 'melanoma'"))
    # only another class's key: its items go, those under plain keys stay
    other = parse_answer('{"nevus": ["Round shape"], "colors": ["Dark spots"]}', "melanoma", others=("nevus",))
    assert other.items == ("Dark spots",) and [reason for _, reason in other.removed] == [
        "the answer for 'nevus', not 'melanoma'"]
    # keys that name no class (a grouping by color and shape) are all read
    assert parse_answer('{"color": ["Dark"], "shape": ["Round"]}', "melanoma", others=("nevus",)).items == (
        "Dark", "Round")


def test_a_symptom_too_long_for_the_text_encoder_is_removed_with_its_reason():
    """30 words of abbreviations and units (83 tokens of CLIP's 77) passed the 40-word rule: the pack was
    written, and `vip train` on it failed with "prompt too long for the text tower"."""
    long = ("Microaneurysms (small red dots, 15-60 µm), dot-and-blot hemorrhages, hard exudates (yellowish-white "
            "deposits), cotton-wool spots, venous beading, intraretinal microvascular abnormalities (IRMA), "
            "neovascularization of the disc (NVD) or elsewhere (NVE), vitreous hemorrhage")
    parsed = parse_answer(f"- {long}\n- Hard exudates\n- Cotton-wool spots", "diabetic retinopathy")
    assert parsed.items == ("Hard exudates", "Cotton-wool spots")
    [(item, reason)] = parsed.removed
    assert item == long and reason.startswith("too long for CLIP (about ") and "77" in reason
    # every shipped symptom fits
    from vipcli.packs import shipped_packs
    from vipcli.symptoms.parse import MAX_TOKENS, clip_tokens_estimate

    assert max(clip_tokens_estimate(s) for pack in shipped_packs() for s in pack.symptoms) < MAX_TOKENS // 2


def test_control_and_invisible_characters_are_left_out_of_symptoms():
    answer = "- Irregular\u200b borders\x1b[31m\n- Several colors\x07\n- Blue\u2060-white veil\u200e\n- 45º angle, 2 µm dots"
    assert parse_answer(answer, "melanoma").items == ("Irregular borders", "Several colors", "Blue-white veil",
                                                      "45º angle, 2 µm dots")


@pytest.mark.parametrize("answer, kept", [
    ("- [Feature 1]\n- [Feature 2]\n- irregular dark borders", ["irregular dark borders"]),
    ("1. <symptom>\n2. {symptom_2}\n3. Symptom 3\n4. asymmetric shape", ["asymmetric shape"]),
    ('["Feature 1", "Feature 2", "blue-white veil"]', ["blue-white veil"]),
    ("- [Insert visual feature here]\n- scaly patches\n- dots (1-2 mm) [brown]", ["scaly patches", "dots (1-2 mm) [brown]"]),
])
def test_a_templates_placeholders_echoed_by_the_model_are_removed_not_kept_as_symptoms(answer, kept):
    """A model that echoes the blanks of a template ("[Feature 1]") gave packs whose symptoms were those blanks."""
    parsed = parse_answer(answer, "melanoma")
    assert list(parsed.items) == kept
    assert parsed.removed and all(reason == "a template's placeholder, not a symptom" for _, reason in parsed.removed)


def test_an_answer_of_json_nested_hundreds_deep_is_not_a_list_not_a_crash():
    """It ended in an uncaught RecursionError: "unexpected RecursionError ... a bug in vip"."""
    with pytest.raises(AnswerError, match="is not a list"):
        parse_answer("[" * 900 + '"irregular border"' + "]" * 900, "melanoma")


def test_an_item_naming_the_disease_by_its_initials_is_removed():
    """"Violet bumps, as in LP" was kept in a lichen planus pack: the label by its shorthand, in every prompt."""
    parsed = parse_answer("- Violet flat-topped bumps, as in LP\n- Fine white lines\n- Shiny LPs surface\n"
                          "- A shiny surface (lp-like)\n- Help from an MD", "lichen planus")
    assert parsed.items == ("Fine white lines", "A shiny surface (lp-like)", "Help from an MD")
    assert parsed.removed == (("Violet flat-topped bumps, as in LP", "names the disease by its initials ('LP')"),
                              ("Shiny LPs surface", "names the disease by its initials ('LP')"))
    # one-word names and names with a number have no initials to look for
    assert parse_answer("- Dark dots, ML\n- CP pattern", "melanoma").items == ("Dark dots, ML", "CP pattern")
    assert parse_answer("- Dark dots\n- CP pattern", "COVID-19 pneumonia").items == ("Dark dots", "CP pattern")
