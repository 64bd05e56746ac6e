"""Symptoms a CLIP-like text encoder cannot use well: not written in English, only a name, or another's repeat.

CLIP's tokenizer and training captions are English, so a symptom in French or Chinese reaches the
text tower as rare word pieces; and a symptom that only names a disease or its family ("skin
cancer", "melanoma") says nothing about what is seen. Both are warned about, never refused.

The rules (simple on purpose, and documented in the README):

- a class's symptoms, taken together, **look non-English** when more than a quarter of their letters
  are outside ASCII (another script), or when they hold at least two function words of French,
  Spanish, German, Italian or Portuguese ("de", "la", "et", "und", "der", "y", "con", ...) and more
  of them than English function words ("the", "of", "and", "with", ...). Medical terms do not count
  either way, so "Irregular pigment network" is English and "Réseau pigmentaire" is not judged;
- a symptom **only names** when nothing is left of it after taking out the names it is checked
  against (the class and pack names, aliases, the other classes), words of disease families
  ("cancer", "tumor", "carcinoma", "lesion", "malignant", ...) and filler words ("a", "the", "of");
- a symptom **repeats another in other words** when its content words are an earlier one's up to their endings
  and the synonyms of `vipcli.symptoms.parse.SAME_WORDS` ("Irregular edges" after "Irregular borders"), as
  `vip symptoms generate` finds the repeats it removes.
"""

from __future__ import annotations

import re

WORD = r"[^\W_]+"  # letters and digits of any script
NON_ASCII_SHARE = 0.25  # more of the letters outside ASCII than this: another script
MIN_FOREIGN_WORDS = 2  # at least this many foreign function words (and more than English ones)

ENGLISH_FUNCTION_WORDS = frozenset(
    "the of and or with without on in at by to from its their than more less no not like as into onto within "
    "around over under between along across near is are has have be may can often".split()
)
# function words of French, Spanish, German, Italian and Portuguese that are not English words
# ("a", "die", "do", "as", "son", "plus" are left out: they would count English text)
OTHER_FUNCTION_WORDS = frozenset(
    "de la le les des du et une avec sur dans est sont aux au ou très peu "  # French
    "el los las y con del una por es muy "  # Spanish
    "der das und mit ist sind ein eine einer den dem von auf im oder nicht "  # German
    "il di gli della delle dei è "  # Italian
    "dos com em uma são".split()  # Portuguese ("das" is German's too)
)
FAMILY_WORDS = frozenset(
    "cancer cancers cancerous tumor tumors tumour tumours carcinoma carcinomas malignancy malignant benign "
    "neoplasm neoplasia neoplastic disease diseases disorder condition syndrome lesion lesions infection "
    "pathology abnormality abnormal skin lung lungs chest eye retina retinal type form kind case sign signs "
    "symptom symptoms possible suspected suspicious likely".split()
)
FILLER_WORDS = frozenset("a an the of with in on or and this that is are it".split())


def _words(text: str) -> list[str]:
    return re.findall(WORD, text.lower())


def non_english_evidence(symptoms: list[str] | tuple[str, ...]) -> str | None:
    """Why the symptoms, taken together, look non-English ("62% of the letters outside ASCII", "7
    French/Spanish/German/Italian/Portuguese function words such as 'de', 'et', against 1 English"); None
    when they look English (see the module's rules)."""
    text = " ".join(symptoms)
    letters = [c for c in text if c.isalpha()]
    outside = sum(1 for c in letters if not c.isascii())
    if letters and outside / len(letters) > NON_ASCII_SHARE:
        return f"{round(100 * outside / len(letters))}% of the letters outside ASCII"
    words = _words(text)
    foreign = [w for w in words if w in OTHER_FUNCTION_WORDS]
    english = sum(1 for w in words if w in ENGLISH_FUNCTION_WORDS)
    if len(foreign) >= MIN_FOREIGN_WORDS and len(foreign) > english:
        examples = ", ".join(repr(w) for w in dict.fromkeys(foreign))
        return (f"{len(foreign)} French/Spanish/German/Italian/Portuguese function words ({examples}) "
                f"against {english} English")
    return None


def names_only(symptom: str, names: list[str] | tuple[str, ...]) -> bool:
    """True if `symptom` has no descriptive word: nothing is left after taking out `names` (class and
    pack names, aliases), disease-family words and filler words (plural endings, Latin ones too, ignored)."""
    known = {word for name in names for word in _words(name)} | FAMILY_WORDS | FILLER_WORDS
    words = _words(symptom)
    return bool(words) and all(_singular_forms(word) & known for word in words)


def _singular_forms(word: str) -> set[str]:
    """`word` and the singulars it may be the plural of: English (-s, -es) and the Latin and Greek plurals
    of medicine (nevi -> nevus, maculae -> macula, carcinomata -> carcinoma)."""
    forms = {word}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    if word.endswith("i"):
        forms.add(word[:-1] + "us")
    if word.endswith("ae"):
        forms.add(word[:-1])
    if word.endswith("ata"):
        forms.add(word[:-2])
    return forms


def wording_warnings(label: str, class_name: str, symptoms, names, skip=(), generated: bool = False) -> list[str]:
    """The warning lines (at most three: one per rule) about one class's symptoms.

    Args:
        label: what the lines start with (the pack's file, or the class).
        class_name: the class the symptoms describe.
        symptoms: its symptoms.
        names: the names a symptom must say more than (class and pack names, aliases, other classes).
        skip: symptoms already warned about for naming their own class (not listed again).
        generated: the symptoms are an LLM's answer `vip symptoms generate` just took (asking it again the same
            way is no fix).
    """
    lines = []
    evidence = non_english_evidence(symptoms)
    if evidence:
        fix = ("translate them, or generate them again with another --model and --force (this one answered in "
               "another language, though asked for English)" if generated else
               "translate them, or generate them again with `vip symptoms generate` (it asks for English)")
        lines.append(f"{label}: the symptoms of {class_name!r} do not look English ({evidence}); CLIP-like text "
                     f"encoders read English (their tokenizer and training captions are): {fix}")
    bare = [s for s in symptoms if s not in skip and names_only(s, names)]
    if bare:
        listed = ", ".join(repr(s) for s in bare)
        lines.append(f"{label}: {len(bare)} symptom{'s' if len(bare) > 1 else ''} of {class_name!r} only "
                     f"name{'' if len(bare) > 1 else 's'} a disease, with no word for what is seen: {listed}; "
                     "describe what the images show instead (color, shape, borders, texture)")
    repeats = repeated_in_other_words(symptoms)
    if repeats:
        listed = ", ".join(f"{later!r} repeats {first!r}" for later, first in repeats)
        lines.append(f"{label}: {len(repeats)} symptom{'s' if len(repeats) > 1 else ''} of {class_name!r} "
                     f"repeat{'' if len(repeats) > 1 else 's'} another in other words ({listed}), taking a place "
                     "of its own in the prompts: remove it, or say what sets the two apart")
    return lines


def repeated_in_other_words(symptoms) -> list[tuple[str, str]]:
    """(later, first) for each symptom that says what an earlier one says in other words (the same content words up
    to endings and synonyms, `vipcli.symptoms.parse.same_meaning_key`): "Irregular edges" after "Irregular
    borders". Symptoms that differ only in case, spacing or punctuation are not listed: a pack refuses those."""
    from vipcli.symptoms.parse import normalize_text, same_meaning_key

    first: dict[tuple, str] = {}
    repeats = []
    for symptom in symptoms:
        key = same_meaning_key(symptom)
        earlier = first.setdefault(key, symptom)
        if earlier is not symptom and normalize_text(earlier) != normalize_text(symptom):
            repeats.append((symptom, earlier))
    return repeats
