"""Shipped symptom packs, `vip symptoms list` and `vip symptoms show`."""

from __future__ import annotations

import json

import pytest

from vipcli.cli.main import main
from vipcli.packs import normalize_name, shipped_pack_dir, shipped_packs, symptoms_for_classes
from vipcli.symptoms.parse import names_disease

PAPER = {"melanoma", "nevus", "pneumonia", "normal lung"}
EXTRA = {
    "basal cell carcinoma",
    "seborrheic keratosis",
    "actinic keratosis",
    "dermatofibroma",
    "vascular lesion",
    "COVID-19 pneumonia",
    "tuberculosis",
    "pleural effusion",
    "cardiomegaly",
}
# Added for issue 12 (all eight ISIC 2019 classes, common chest X-ray findings, retinal fundus), written by an
# AI assistant from published criteria and marked as such (source.kind: llm, with references).
WRITTEN = {
    "squamous cell carcinoma",
    "benign keratosis",
    "atelectasis",
    "pneumothorax",
    "lung nodule",
    "lung mass",
    "consolidation",
    "pulmonary edema",
    "emphysema",
    "pulmonary fibrosis",
    "diabetic retinopathy",
    "glaucoma",
    "cataract",
    "age-related macular degeneration",
    "pathologic myopia",
    "normal fundus",
}
MODALITIES = ("dermoscopic images", "chest X-ray images", "retinal fundus photographs")


def vip(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_shipped_pack_validates_with_4_to_8_plain_symptoms():
    packs = shipped_packs()
    assert {p.name for p in packs} == PAPER | EXTRA | WRITTEN and len(packs) >= 20
    assert len(list(shipped_pack_dir().glob("*.yaml"))) == len(packs)
    for pack in packs:
        assert 4 <= len(pack.symptoms) <= 8, pack.name
        assert pack.modality in MODALITIES, pack.name
        for symptom in pack.symptoms:
            assert normalize_name(pack.name) not in normalize_name(symptom), (pack.name, symptom)


def test_paper_packs_cite_the_paper_and_have_its_four_symptoms():
    for pack in (p for p in shipped_packs() if p.name in PAPER):
        assert pack.source["kind"] == "paper" and "MICCAI 2024" in pack.source["citation"]
        assert len(pack.symptoms) == 4


def test_added_packs_are_honestly_marked_manual_and_never_name_the_disease_or_aliases():
    for pack in (p for p in shipped_packs() if p.name in EXTRA):
        assert pack.source["kind"] == "manual" and "not validated clinically" in pack.source["note"]
        named = [s for s in pack.symptoms if names_disease(s, pack.name, pack.aliases)]
        assert not named, (pack.name, named)


def test_packs_written_for_issue_12_say_who_wrote_them_and_never_name_the_disease():
    for pack in (p for p in shipped_packs() if p.name in WRITTEN):
        source = pack.source
        assert source["kind"] == "llm" and source["model"] and source["date"] and source["references"], pack.name
        assert "not validated clinically" in source["note"] and "no image stage" in source["how"]
        named = [s for s in pack.symptoms if names_disease(s, pack.name, pack.aliases)]
        assert not named, (pack.name, named)


def test_every_isic_2019_class_and_common_finding_has_a_pack():
    isic_2019 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    chest = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Mass",
             "Nodule", "Pneumonia", "Pneumothorax"]
    fundus = ["diabetic_retinopathy", "glaucoma", "cataract", "AMD", "myopia"]
    found = symptoms_for_classes(isic_2019 + chest + fundus)
    assert len({tuple(v) for v in found.values()}) == len(isic_2019 + chest + fundus)  # each its own pack


@pytest.mark.parametrize(
    "folder, pack",
    [
        ("bcc", "basal cell carcinoma"),
        ("bkl", "benign keratosis"),
        ("SCC", "squamous cell carcinoma"),
        ("melanocytic_nevus", "nevus"),
        ("akiec", "actinic keratosis"),
        ("df", "dermatofibroma"),
        ("vasc", "vascular lesion"),
        ("COVID-19", "COVID-19 pneumonia"),
        ("covid", "COVID-19 pneumonia"),
        ("TB", "tuberculosis"),
        ("Effusion", "pleural effusion"),
        ("Cardiomegaly", "cardiomegaly"),
        ("seborrheic_keratosis", "seborrheic keratosis"),
    ],
)
def test_common_class_folder_names_find_their_pack(folder, pack):
    expected = next(p for p in shipped_packs() if p.name == pack)
    assert symptoms_for_classes([folder]) == {folder: list(expected.symptoms)}


def test_list_shows_every_pack_with_count_and_source_in_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = vip(capsys, "symptoms", "list")
    assert code == 0
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    rows = {line.split("  ")[0].strip(" …"): line for line in out.splitlines()[3:] if line.strip()}
    for name in PAPER | EXTRA | WRITTEN:
        assert any(name.startswith(shown) and shown for shown in rows), name
    melanoma = next(line for line in out.splitlines() if line.strip().startswith("melanoma "))
    assert melanoma.split()[1:3] == ["4", "paper"]


def test_list_shows_every_name_whole_in_80_columns(capsys, monkeypatch):
    """The name is what `vip symptoms show NAME` and `--symptoms NAME` take: never cut with '…'."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = vip(capsys, "symptoms", "list")
    names = {line[1:].split("  ")[0] for line in out.splitlines()[3:] if line.strip() and "vip symptoms show" not in line}
    assert code == 0 and names == PAPER | EXTRA | WRITTEN, names
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80


@pytest.mark.parametrize("columns", ["40", "79"])
def test_list_in_a_narrow_terminal_keeps_every_name_whole_and_folds_the_rest(capsys, monkeypatch, columns):
    """At 40 columns rich cut the names ('age-related macular deg…') and dropped the count and source columns."""
    monkeypatch.setenv("COLUMNS", columns)
    code, out, _ = vip(capsys, "symptoms", "list")
    lines = out.splitlines()
    names = [line for line in lines if line and not line.startswith(" ") and "vip symptoms show" not in line]
    assert code == 0 and names == sorted(PAPER | EXTRA | WRITTEN, key=str.lower) and "…" not in out, out
    assert max(len(line) for line in lines if line.startswith(" ")) <= int(columns)
    amd = lines.index("age-related macular degeneration")
    details = " ".join(line.strip() for line in lines[amd + 1:lines.index("atelectasis")])
    assert details == "5 symptoms, llm, retinal fundus photographs; aliases: amd, armd, macular degeneration"


def test_show_of_a_missing_pack_file_says_how_to_fix_it(capsys, tmp_path):
    code, _, err = vip(capsys, "symptoms", "show", str(tmp_path / "nosuch.yaml"))
    assert code == 1 and err.strip() == (f"error: symptom pack file not found: {tmp_path / 'nosuch.yaml'} (check the "
                                         "path, or give a shipped pack's name: vip symptoms list)"), err

def test_list_json_is_one_document(capsys):
    code, out, _ = vip(capsys, "symptoms", "list", "--json")
    packs = json.loads(out)
    assert code == 0 and len(packs) == len(PAPER | EXTRA | WRITTEN)
    melanoma = next(p for p in packs if p["name"] == "melanoma")
    assert melanoma["symptoms"][0] == "The spot is asymmetric on both sides" and melanoma["source"]["kind"] == "paper"


def test_show_by_name_or_alias(capsys):
    code, out, _ = vip(capsys, "symptoms", "show", "melanoma")
    assert code == 0 and "1. The spot is asymmetric on both sides" in out and "modality: dermoscopic images" in out
    code, out, _ = vip(capsys, "symptoms", "show", "BCC", "--json")
    assert code == 0 and json.loads(out)["name"] == "basal cell carcinoma"


def test_show_of_a_symptoms_file_shows_each_class_as_train_reads_it(capsys, tmp_path):
    """`vip symptoms show` took only pack files: the {class: [symptoms]} file `vip train --symptoms` reads
    was refused as "has no 'name'"."""
    mapping = tmp_path / "mine.yaml"
    mapping.write_text('melanoma: ["Irregular, blurry borders", Melanoma cells visible]\nnevus: ["A round, even spot"]\n')
    code, out, err = vip(capsys, "symptoms", "show", str(mapping))
    assert code == 0 and out.split("\n\n")[0].splitlines()[0] == "melanoma" and "1. Irregular, blurry borders" in out
    assert out.split("\n\n")[1].splitlines()[0] == "nevus" and "1. A round, even spot" in out
    assert "symptom 'Melanoma cells visible' names its class 'melanoma'" in err  # checked as vip train checks it
    code, out, _ = vip(capsys, "symptoms", "show", str(mapping), "--json")
    assert code == 0 and [(p["name"], p["symptoms"]) for p in json.loads(out)] == [
        ("melanoma", ["Irregular, blurry borders", "Melanoma cells visible"]), ("nevus", ["A round, even spot"])]
    code, _, err = vip(capsys, "symptoms", "show", str(tmp_path))
    assert code == 1 and f"{tmp_path} is a folder" in err
    (tmp_path / "melanoma").mkdir()  # a class folder where the user stands: the shipped pack is meant
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code, out, _ = vip(capsys, "symptoms", "show", "melanoma")
    assert code == 0 and "modality: dermoscopic images" in out


def test_show_of_a_run_gives_the_symptoms_it_trained_on(capsys, tmp_path):
    """`vip symptoms show RUN/run.yaml` said "symptom pack has no 'name'" and a run's folder "is a folder":
    a run's symptoms are now shown (folder, run.yaml or model.safetensors), also of a vip 0.1.0 run."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip"
    for given in (fixture, fixture / "run.yaml", fixture / "model.safetensors"):
        code, out, err = vip(capsys, "symptoms", "show", str(given))
        melanoma, nevus = out.split("\n\n")
        assert code == 0 and err == "" and melanoma.splitlines()[0] == "melanoma" and nevus.splitlines()[0] == "nevus"
        assert f"source:   run: the symptoms vip train recorded in {fixture / 'run.yaml'}" in melanoma
        assert "1. The spot is asymmetric on both sides" in melanoma and "1. The spot is symmetric on both sides" in nevus
    code, out, _ = vip(capsys, "symptoms", "show", str(fixture), "--json")
    assert code == 0 and [(p["name"], p["source"]["kind"], len(p["symptoms"])) for p in json.loads(out)] == [
        ("melanoma", "run", 4), ("nevus", "run", 4)]
    empty = tmp_path / "probe"  # a method that needs no symptoms records none
    shutil.copytree(fixture.parent / "linear-probe", empty)
    text = (empty / "run.yaml").read_text()
    (empty / "run.yaml").write_text(text[:text.index("symptoms:")] + "symptoms: {}\n" + text[text.index("schedule:"):])
    code, _, err = vip(capsys, "symptoms", "show", str(empty))
    assert code == 1 and err.strip() == (f"error: {empty / 'run.yaml'}: the run used no symptoms (its method, "
                                         "linear-probe, needs none) (pass a pack file, a symptoms file or a shipped "
                                         "pack's name)"), err


def test_a_run_folder_given_to_symptoms_trains_on_that_runs_symptoms(tmp_path):
    """`--symptoms RUN` (train, benchmark, rank) read the run's folder as a folder of packs and refused run.yaml."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip"
    mine = tmp_path / "run"
    mine.mkdir()
    for name in ("model.safetensors", "run.yaml"):
        (mine / name).write_bytes((fixture / name).read_bytes())
    text = (mine / "run.yaml").read_text().replace("The spot is asymmetric on both sides", "An uneven outline")
    (mine / "run.yaml").write_text(text)
    symptoms = symptoms_for_classes(["melanoma", "nevus", "pneumonia"], [str(mine)])
    assert symptoms["melanoma"][0] == "An uneven outline" and symptoms["nevus"][0] == "The spot is symmetric on both sides"
    assert symptoms["pneumonia"] == list(next(p for p in shipped_packs() if p.name == "pneumonia").symptoms)


def test_a_pack_without_a_source_says_so_in_words(capsys, tmp_path):
    pack = tmp_path / "mine.yaml"
    pack.write_text("name: melanoma\nsymptoms: [An uneven border]\n")
    code, out, _ = vip(capsys, "symptoms", "show", str(pack))
    assert code == 0 and "source:   not given (a pack can record it under 'source:', with kind paper, llm or " \
                          "manual)" in out and "unknown" not in out, out


def test_show_of_your_own_pack_warns_of_a_symptom_that_names_its_class(capsys, tmp_path):
    pack = tmp_path / "names.yaml"
    pack.write_text('name: melanoma\nsymptoms: [Melanoma cells visible, "Irregular, blurry borders"]\n')
    code, out, err = vip(capsys, "symptoms", "show", str(pack))
    assert code == 0 and "2. Irregular, blurry borders" in out
    assert err.splitlines() == [f"warning: {pack}: symptom 'Melanoma cells visible' names its class 'melanoma' (ViP "
                                "describes a class by what it looks like, never by its name: reword it, or the "
                                "prompts learn the name)"]
    code, _, err = vip(capsys, "symptoms", "show", "melanoma")  # a shipped pack is checked before it ships
    assert code == 0 and err == ""


def test_show_of_your_own_pack_warns_of_a_symptom_that_repeats_another_in_other_words(capsys, tmp_path):
    """A pack written by hand with "Irregular borders" and "Irregular edges" spent two of the class's prompts on one
    symptom, and nothing said so (only repeats up to case and punctuation were caught)."""
    pack = tmp_path / "mine.yaml"
    pack.write_text("melanoma:\n  - Irregular borders\n  - Irregular edges\n  - Blue-white veil\n"
                    "  - Bluish-white veil\n  - Regular edges\n  - Jagged edges\n  - Whitish veil\n")
    code, out, err = vip(capsys, "symptoms", "show", str(pack))
    assert code == 0 and "7. Whitish veil" in out  # a warning: the pack is shown and used as written
    assert err.splitlines() == [f"warning: {pack}: 2 symptoms of 'melanoma' repeat another in other words ('Irregular "
                                "edges' repeats 'Irregular borders', 'Bluish-white veil' repeats 'Blue-white veil'), "
                                "taking a place of its own in the prompts: remove it, or say what sets the two apart"]


def test_show_unknown_name_lists_the_shipped_ones(capsys):
    code, _, err = vip(capsys, "symptoms", "show", "psoriasis")
    assert code == 2 and "no shipped symptom pack named 'psoriasis' (shipped packs: " in err and "melanoma, nevus" in err


@pytest.mark.parametrize("typed, meant", [("melanomaa", "melanoma"), ("pnuemonia", "pneumonia"),
                                          ("Normal-Lungs", "normal lung"), ("mell", "mel")])
def test_a_misspelt_pack_name_gets_the_shipped_name_it_is_close_to(capsys, typed, meant):
    """`vip symptoms show melanomaa` and `--symptoms melanomaa` listed all 29 shipped packs to look through,
    where a misspelt backbone or method gets "did you mean"; a pack name or alias one typo away is named."""
    from vipcli.errors import UsageError

    code, _, err = vip(capsys, "symptoms", "show", typed)
    assert code == 2 and f"error: no shipped symptom pack named '{typed}'; did you mean '{meant}'? (shipped " in err
    with pytest.raises(UsageError, match=f"^--symptoms {typed}: no such file, folder or shipped pack; "
                                         f"did you mean '{meant}'\\? \\(shipped packs: actinic keratosis, "):
        symptoms_for_classes(["melanoma", "nevus"], [typed])



def test_a_class_folder_holding_a_pack_name_gets_that_pack_named_not_a_look_alike(capsys):
    """A radiologist's `bacterial_pneumonia` and `viral_pneumonia` folders were told "did you mean 'covid
    pneumonia'?" by `vip symptoms show`, and `vip train` named no pack to start from."""
    from vipcli.errors import VipError

    code, _, err = vip(capsys, "symptoms", "show", "viral_pneumonia")
    assert code == 2 and "error: no shipped symptom pack named 'viral_pneumonia'; did you mean 'pneumonia'? " in err
    with pytest.raises(VipError) as both:
        symptoms_for_classes(["Normal", "bacterial_pneumonia", "viral_pneumonia"])
    assert str(both.value).startswith(
        "no symptoms for classes 'bacterial_pneumonia', 'viral_pneumonia' ('bacterial_pneumonia' and 'viral_pneumonia' "
        "hold the name of the shipped pack 'pneumonia' (`vip symptoms show pneumonia`), but one pack's symptoms "
        "cannot tell classes apart: give each its own; or write packs with `vip symptoms generate --data DIR`")
    with pytest.raises(VipError) as taken:
        symptoms_for_classes(["pneumonia", "viral_pneumonia"])
    assert "'viral_pneumonia' holds the name of the shipped pack 'pneumonia' (`vip symptoms show pneumonia`), " \
           "which class 'pneumonia' uses, but one pack's symptoms cannot tell classes apart" in str(taken.value)
    with pytest.raises(VipError) as one:
        symptoms_for_classes(["Normal", "bacterial_pneumonia"])
    assert "('bacterial_pneumonia' holds the name of the shipped pack 'pneumonia': to use it, rename the folder " \
           "'pneumonia', or copy its symptoms (`vip symptoms show pneumonia`) into a --symptoms FILE under " \
           "'bacterial_pneumonia:'; or write packs" in str(one.value)
    with pytest.raises(VipError) as none:
        symptoms_for_classes(["Normal", "psoriasis"])
    assert "(write packs with `vip symptoms generate --data DIR`" in str(none.value)

def test_a_class_folder_spelled_with_a_ligature_or_an_accent_matches_its_pack(capsys):
    """A Danish or French dermatologist's `nævus` (or `Névus`) folder matched no pack, though 'naevus' is an alias of
    the shipped nevus pack: `vip train` stopped with "no symptoms for class 'nævus'"."""
    assert normalize_name("Nævus") == "naevus" and normalize_name("Névus") == "nevus"
    assert normalize_name("Œdème pulmonaire") == "oedeme pulmonaire"
    packs = symptoms_for_classes(["melanoma", "nævus"])
    assert packs["nævus"] == list(next(p for p in shipped_packs() if p.name == "nevus").symptoms)
    code, out, _ = vip(capsys, "symptoms", "show", "Nævus")
    assert code == 0 and out.startswith("nevus  (aliases: ")
    with pytest.raises(Exception, match="no symptoms for class 'mélanome'"):  # no alias spells melanoma so
        symptoms_for_classes(["mélanome", "nævus"])


def test_the_show_command_named_for_a_pack_of_two_words_runs_as_written(capsys):
    """A dermatologist's `seborrheic keratosis – solar lentigo (lichenoid)` folder was told to run `vip symptoms show
    seborrheic keratosis`, which the shell splits in two words: "Got unexpected extra argument(s) (keratosis)"."""
    import re
    import shlex

    from vipcli.errors import VipError

    with pytest.raises(VipError) as missing:
        symptoms_for_classes(["melanoma", "seborrheic keratosis – solar lentigo (lichenoid)"])
    shown = re.search(r"copy its symptoms \(`(vip symptoms show [^`]*)`\)", str(missing.value))
    assert shown and shown.group(1) == "vip symptoms show seborrheic-keratosis", str(missing.value)
    code, out, err = vip(capsys, *shlex.split(shown.group(1))[1:])
    assert code == 0 and out.startswith("seborrheic keratosis  (aliases: ") and not err


def test_malformed_pack_yaml_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: melanoma\nsymptoms:\n  - Asymmetric shape\n  - [unclosed\n")
    code, _, err = vip(capsys, "symptoms", "show", str(bad))
    assert code == 1 and f"{bad}:5: malformed symptom pack YAML" in err and "Traceback" not in err


def test_pack_file_without_symptoms_is_reported(capsys, tmp_path):
    bad = tmp_path / "empty.yaml"
    bad.write_text("name: melanoma\n")
    code, _, err = vip(capsys, "symptoms", "show", str(bad))
    assert code == 1 and "has no 'symptoms' list" in err


def test_packs_of_different_modalities_are_named_and_warned_about(capsys, tmp_path):
    from vipcli.packs import symptoms_for_classes

    from vipcli.packs import matched_packs_line, packs_for_classes

    symptoms = symptoms_for_classes(["glaucoma", "normal"])  # a fundus folder whose 'normal' is the lung pack
    err = capsys.readouterr().err
    line = matched_packs_line(packs_for_classes(["glaucoma", "normal"]))
    assert "glaucoma <- pack 'glaucoma'" in line and "normal <- pack 'normal lung'" in line
    assert "different modalities" in err and "--symptoms FILE" in err and set(symptoms) == {"glaucoma", "normal"}
    symptoms_for_classes(["melanoma", "nevus"])
    assert "different modalities" not in capsys.readouterr().err


def _pack(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_pack_with_an_unknown_source_kind_is_refused(capsys, tmp_path):
    bad = _pack(tmp_path, "expert.yaml", "name: melanoma\nsymptoms: [Dark areas, Jagged edges]\nsource:\n  kind: expert\n")
    code, _, err = vip(capsys, "symptoms", "show", str(bad))
    assert code == 1 and "source.kind of symptom pack 'melanoma' is 'expert', not one of paper, llm, manual" in err
    assert "use 'manual'" in err


def test_a_symptoms_file_that_matches_no_class_is_refused_not_ignored(tmp_path):
    from vipcli.errors import VipError

    typo = _pack(tmp_path, "melanoma.yaml", "name: melanomma\nsymptoms: [Dark areas, Jagged edges]\n")
    with pytest.raises(VipError, match=r"its pack 'melanomma' matches no class of the data \(melanoma, nevus\)"):
        symptoms_for_classes(["melanoma", "nevus"], [typo])
    folder = tmp_path / "packs"  # a folder of packs for more classes than the data has is fine
    folder.mkdir()
    _pack(folder, "melanoma.yaml", "name: melanoma\nsymptoms: [Dark areas, Jagged edges]\n")
    _pack(folder, "psoriasis.yaml", "name: psoriasis\nsymptoms: [Silvery scales, Red plaques]\n")
    assert symptoms_for_classes(["melanoma", "nevus"], [folder])["melanoma"] == ["Dark areas", "Jagged edges"]


def test_a_misspelt_pack_beside_others_that_match_is_named_not_silently_replaced(capsys, tmp_path):
    from vipcli.errors import VipError

    mine = _pack(tmp_path, "mine.yaml", "melanomma: [Dark areas, Jagged edges]\nnevus: [Round, Even colour]\n")
    symptoms = symptoms_for_classes(["melanoma", "nevus"], [mine])
    assert symptoms["nevus"] == ["Round", "Even colour"] and symptoms["melanoma"][0] == "The spot is asymmetric on both sides"
    assert capsys.readouterr().err.replace("\n", " ").split() == (
        f"warning: --symptoms {mine}: its pack 'melanomma' matches no class, and class 'melanoma' uses the shipped "
        "pack 'melanoma' (if 'melanomma' is meant for 'melanoma', rename it or list 'melanoma' under its aliases)").split()
    mine.write_text("psoriasiss: [Silvery scales, Red plaques]\nnevus: [Round, Even colour]\n")  # no shipped pack
    with pytest.raises(VipError, match=r"no symptoms for class 'psoriasis' \(the pack 'psoriasiss' of --symptoms "
                                       r".*mine.yaml matches no class: if it is meant for 'psoriasis', rename it"):
        symptoms_for_classes(["psoriasis", "nevus"], [mine])
    other = _pack(tmp_path, "more.yaml", "psoriasis: [Silvery scales, Red plaques]\nnevus: [Round, Even colour]\n")
    symptoms_for_classes(["melanoma", "nevus"], [other])  # a pack for a class the data does not have: no word
    assert capsys.readouterr().err == ""


def test_a_user_symptom_that_names_its_class_is_warned_about(capsys, tmp_path):
    named = _pack(tmp_path, "mel.yaml", "name: melanoma\naliases: [mel]\nsymptoms: [Typical MEL pattern, Dark areas]\n")
    symptoms = symptoms_for_classes(["MEL", "nevus"], [named])
    err = capsys.readouterr().err
    assert symptoms["MEL"] == ["Typical MEL pattern", "Dark areas"]  # still used: a warning, not an error
    assert f"{named}: symptom 'Typical MEL pattern' names its class 'melanoma'" in err and "Dark areas" not in err
    symptoms_for_classes(["melanoma", "nevus"])  # the shipped packs never do
    assert "names its class" not in capsys.readouterr().err


FRENCH_PACK = """name: melanoma
symptoms:
  - Bordures irrégulières et mal définies
  - Plusieurs couleurs dans la lésion
  - Asymétrie de la forme
  - Points noirs au centre
"""


def test_no_shipped_pack_looks_non_english_or_only_names_a_disease(capsys):
    from vipcli.packs import load_pack, warn_wording
    from vipcli.symptoms.wording import wording_warnings

    every_name = [name for pack in shipped_packs() for name in (pack.name, *pack.aliases)]
    for pack in shipped_packs():  # not even when every other pack's names count as class names
        assert wording_warnings(pack.name, pack.name, pack.symptoms, every_name) == [], pack.name
    for path in sorted(shipped_pack_dir().glob("*.yaml")):  # as `vip symptoms show FILE` checks your own packs
        warn_wording(load_pack(path))
    assert capsys.readouterr().err == ""


def test_show_warns_once_of_a_pack_in_another_language(capsys, tmp_path):
    pack = tmp_path / "fr.yaml"
    pack.write_text(FRENCH_PACK)
    code, out, err = vip(capsys, "symptoms", "show", str(pack))
    assert code == 0 and "1. Bordures irrégulières et mal définies" in out  # a warning, not an error
    assert len(err.splitlines()) == 1
    assert err.startswith(f"warning: {pack}: the symptoms of 'melanoma' do not look English (")
    assert "'et'" in err and "translate them" in err


def test_show_warns_of_symptoms_that_only_name_a_disease(capsys, tmp_path):
    pack = tmp_path / "names.yaml"
    pack.write_text("name: melanoma\naliases: [mel]\nsymptoms: [Skin cancer, A malignant tumour, MEL, Dark areas]\n")
    code, _, err = vip(capsys, "symptoms", "show", str(pack))
    assert code == 0
    named = f"warning: {pack}: symptom 'MEL' names its class 'melanoma'"
    bare = (f"warning: {pack}: 2 symptoms of 'melanoma' only name a disease, with no word for what is seen: "
            "'Skin cancer', 'A malignant tumour'; describe what the images show instead")
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(named) and lines[1].startswith(bare)  # 'MEL' is not told twice


@pytest.mark.parametrize("symptoms, english", [
    (["Irregular, blurry borders", "Café-au-lait coloured spot", "Blue-white veil"], True),
    (["Réseau pigmentaire atypique"], True),  # no function word: not judged
    (["Bordes irregulares y borrosos", "Varios colores en la mancha", "Asimetría de la forma"], False),
    (["Unregelmäßige Ränder und mehrere Farben", "Dunkle Punkte in der Mitte"], False),
    (["边界不规则", "颜色不均匀"], False),
])
def test_the_language_rule(symptoms, english):
    from vipcli.symptoms.wording import non_english_evidence

    assert (non_english_evidence(symptoms) is None) == english


def test_train_warns_of_a_pack_in_another_language_and_of_a_symptom_naming_the_other_class(cli, isic_small, tmp_path):
    pack = tmp_path / "mel.yaml"
    pack.write_text(FRENCH_PACK.replace("Points noirs au centre", "Nevus"))
    code, _, err = cli("train", "--data", isic_small, "--backbone", "toy", "--symptoms", pack, "--shots", "2",
                       "--epochs", "1", "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert f"warning: {pack}: the symptoms of 'melanoma' do not look English" in err
    assert f"warning: {pack}: 1 symptom of 'melanoma' only names a disease, with no word for what is seen: 'Nevus'" in err
    assert sum("do not look English" in line for line in err.splitlines()) == 1


@pytest.mark.parametrize("symptom, only_names", [
    ("benign nevi", True),  # the Latin plural of the class name: still only a name
    ("Melanomata", True),
    ("Multiple nevi with a pigment network", False),
    ("Irregular borders", False),
])
def test_a_symptom_that_only_names_its_disease_in_a_latin_plural_is_told(symptom, only_names):
    """"benign nevi" passed as a description: only English plural endings were taken off the words."""
    from vipcli.symptoms.wording import names_only

    assert names_only(symptom, ["nevus", "melanoma"]) is only_names


@pytest.mark.parametrize("content, expected", [
    ("é: [dark spot]\n".encode("latin-1"), "symptoms file is not UTF-8 text (save it as UTF-8)"),
    (b"", "symptoms file is empty (write {class: [symptom, ...]} or a pack with 'name' and 'symptoms')"),
    (b"- dark spot\n- brown spot\n", "symptoms file must be a YAML mapping, not a list (write {class: [symptom"),
])
def test_a_symptoms_file_of_the_wrong_text_or_shape_is_one_line_naming_it(tmp_path, content, expected):
    from vipcli.errors import VipError

    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    with pytest.raises(VipError) as caught:
        symptoms_for_classes(["melanoma", "nevus"], [path])
    assert type(caught.value) is VipError and str(caught.value).startswith(f"{path}: {expected}")


def test_a_symptoms_path_that_does_not_exist_is_a_missing_file_not_an_unknown_pack(tmp_path):
    """`--symptoms packs/mine.yaml` that is not there said "no such file, folder or shipped pack" and exited 2
    (a bad command line); a path is a missing file (exit 1), a bare name still an unknown shipped pack (2)."""
    from vipcli.errors import UsageError, VipError

    for given in (str(tmp_path / "mine.yaml"), "packs/melanoma"):
        with pytest.raises(VipError) as raised:
            symptoms_for_classes(["melanoma", "nevus"], [given])
        assert type(raised.value) is VipError and raised.value.exit_code == 1
        assert str(raised.value) == (f"--symptoms {given}: no such file or folder (check the path, or give a shipped "
                                     "pack's name: vip symptoms list)")
    with pytest.raises(UsageError, match="--symptoms psoriasis: no such file, folder or shipped pack"):
        symptoms_for_classes(["melanoma", "nevus"], ["psoriasis"])


@pytest.mark.parametrize("text, line, message, fix", [
    # the same class twice: YAML kept the second list, and the first one's symptoms were lost without a word
    ("melanoma:\n  - Dark spots\nnevus:\n  - A round spot\nmelanoma:\n  - Blurry edges\n", 5,
     "'melanoma' is written twice (lines 1 and 5); YAML would keep only the second, and the symptoms under line 1 "
     "would be lost", "merge the two lists under one 'melanoma:'"),
    ("name: melanoma\nsymptoms: [Dark spots]\nname: nevus\nsymptoms: [A round spot]\n", 3,
     "'name' is written twice (lines 1 and 3)", "one pack file holds one pack"),
    ("name: melanoma\nsymptoms: [Dark spots]\nsource:\n  kind: llm\n  model: a\n  model: b\n", 6,
     "'model' is written twice (lines 5 and 6); YAML would keep only the second", "keep one 'model:'"),
    # "Feature: description", as an LLM writes it, pasted unquoted: read as a mapping
    ("melanoma:\n  - Dark spots\n  - Borders: blurry or jagged\n", 3,
     "symptom 2 of 'melanoma' was read as a 'key: value' mapping (a ': ' starts one), not as text",
     'put it in quotes: - "Borders: blurry or jagged"'),
    ("name: melanoma\nsymptoms:\n  - Dark spots\n  - yes\n", 4,
     "symptom 2 of 'melanoma' was read as true (YAML reads yes, no, on, off, true and false unquoted", '- "yes"'),
    ("melanoma:\n  - Dark spots\n  -\n", 3, "symptom 2 of 'melanoma' is empty", "remove the empty '-' line"),
    ("melanoma:\n  - Dark spots\nnevus:\n", 3, "symptom pack 'nevus' lists no symptoms",
     "list them under 'nevus:', one '  - symptom' line each"),
    ("melanoma: []\n", 1, "symptom pack 'melanoma' lists no symptoms", "under 'melanoma:'"),
    ("melanoma:\n  color: brown\n", 1, "'melanoma' is a 'key: value' mapping (a ': ' starts one), not a list",
     "on its own '  - ' line under 'melanoma:'"),
    ("melanoma:\n\t- Dark spots\n", 2, "malformed symptom pack YAML", "indent with spaces, not tabs"),
    ("melanoma:\n  - Dark spots\n nevus:\n  - A round spot\n", 3, "malformed symptom pack YAML",
     "check the indentation of that line"),
    ("name: melanoma\nsymptoms:\n  - Dark spots\n  - Blurry edges\n  - dark  spots\n", 5,
     "symptom pack 'melanoma' repeats 'Dark spots' as 'dark  spots' (the two differ only in case, spacing or "
     "punctuation)", "remove the duplicate"),
    ("melanoma:\n  - Irregular border.\n  - Many colours\n  - \"irregular border\"\n", 4,
     "symptom pack 'melanoma' repeats 'Irregular border.' as 'irregular border' (the two differ only in case, "
     "spacing or punctuation)", "remove the duplicate"),
    ("name: nevus\nsymptoms:\n  - A round, even spot\n  - Red-brown colour\n  - A round even spot!\n", 5,
     "symptom pack 'nevus' repeats 'A round even spot!' as 'A round, even spot'", "remove the duplicate"),
])
def test_a_hand_edited_pack_mistake_is_one_line_naming_file_line_and_fix(capsys, tmp_path, text, line, message, fix):
    """A class written twice was silently half-lost; a symptom YAML read as a mapping or as true was "'symptoms' must
    be a list of non-empty strings (fix 'symptoms' in the pack)", with no class, item or line; an empty class asked
    for a 'symptoms:' key the file does not use; a tab said only "fix the YAML syntax"."""
    pack = tmp_path / "mine.yaml"
    pack.write_text(text)
    code, out, err = vip(capsys, "symptoms", "show", str(pack))
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {pack}:{line}: ") and message in err and fix in err, err


def test_symptoms_that_differ_in_meaning_by_a_symbol_are_not_repeats():
    """Repeats are found up to case, spacing and punctuation (a hand-written "Irregular border." and "irregular
    border" were both kept, while a generated answer's were removed); a symbol that changes the meaning is kept."""
    from vipcli.packs import pack_from_dict, symptom_key

    assert symptom_key(" Irregular  border. ") == symptom_key("irregular border") == "irregular border"
    assert symptom_key("Red-brown (patchy) colour;") == "red brown patchy colour"
    kept = ("A spot > 6 mm wide", "A spot < 6 mm wide", "HER2+ staining", "HER2 staining")
    assert pack_from_dict({"name": "melanoma", "symptoms": list(kept)}).symptoms == kept


def test_train_refuses_a_class_written_twice_before_any_image_is_read(cli, isic_small, tmp_path):
    pack = tmp_path / "mine.yaml"
    pack.write_text("melanoma:\n  - Dark spots\nnevus:\n  - A round spot\nmelanoma:\n  - Blurry edges\n")
    code, _, err = cli("train", "--data", isic_small, "--backbone", "toy", "--symptoms", pack, "--shots", "2",
                       "--epochs", "1", "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 1 and err.strip() == (f"error: {pack}:5: 'melanoma' is written twice (lines 1 and 5); YAML would "
                                         "keep only the second, and the symptoms under line 1 would be lost (merge "
                                         "the two lists under one 'melanoma:')")
    assert not (tmp_path / "run").exists()


def test_class_folders_named_by_numbers_or_yes_and_no_keep_their_names(tmp_path):
    """A grade folder `0:` was "symptom pack has no 'name'" (YAML read a number), and `no:` became false, the same
    key as 0, so one class's symptoms replaced the other's."""
    from vipcli.packs import load_symptom_file

    pack = tmp_path / "grades.yaml"
    pack.write_text("0:\n  - No dots\n1:\n  - A few dots\nno:\n  - Hazy lens\n'yes': [Clear lens]\n")
    assert [(p.name, p.symptoms) for p in load_symptom_file(pack)] == [
        ("0", ("No dots",)), ("1", ("A few dots",)), ("no", ("Hazy lens",)), ("yes", ("Clear lens",))]


def test_a_pack_with_a_byte_order_mark_and_crlf_line_ends_reads_as_any_other(tmp_path):
    from vipcli.packs import load_symptom_file

    pack = tmp_path / "windows.yaml"
    pack.write_bytes(b"\xef\xbb\xbfmelanoma:\r\n  - Dark spots\r\n  - Blurry edges\r\nnevus:\r\n  - A round spot\r\n")
    assert [(p.name, p.symptoms) for p in load_symptom_file(pack)] == [
        ("melanoma", ("Dark spots", "Blurry edges")), ("nevus", ("A round spot",))]


def test_anchors_and_aliases_are_read_once_not_followed_forever(capsys, tmp_path):
    """The check for a key written twice walked every alias again: a list holding itself (`&a [*a]`) was
    "unexpected RecursionError ... this is a bug in vip", and ten aliases of ten aliases (which YAML reads at
    once, sharing them) kept it busy for hours. Each is now one line about the pack, as YAML read it."""
    selfish = tmp_path / "selfish.yaml"
    selfish.write_text("melanoma: &a\n  - Dark spots\n  - *a\n")
    code, _, err = vip(capsys, "symptoms", "show", str(selfish))
    assert code == 1 and err.startswith(f"error: {selfish}:1: symptom 2 of 'melanoma' was read as a list"), err
    nested = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    many = tmp_path / "many.yaml"
    many.write_text("\n".join(nested) + "\n")
    code, _, err = vip(capsys, "symptoms", "show", str(many))
    assert code == 1 and err.strip() == f"error: {many}:1: symptom pack 'a0' repeats 'x' (remove the duplicate)", err


def test_classes_given_the_same_symptoms_are_named_before_any_work(capsys, tmp_path, isic_small, tiny_clip):
    """Two classes whose generated symptoms came out the same were trained without a word: zero-shot then called
    them alike. Symptoms that differ say nothing."""
    from conftest import tiny_train_args

    alike = tmp_path / "alike.yaml"
    alike.write_text("melanoma: [dark brown spot, irregular border]\nnevus: [Irregular border., dark  brown spot]\n")
    own = tmp_path / "own.yaml"
    own.write_text("melanoma: [dark brown spot, irregular border]\nnevus: [even tan spot, smooth round border]\n")
    for symptoms, warned in ((alike, True), (own, False)):
        code = main([str(a) for a in tiny_train_args(isic_small, tiny_clip, tmp_path / symptoms.stem, "--symptoms",
                                                     symptoms, "--method", "zeroshot")])
        err = " ".join(capsys.readouterr().err.split())
        assert code == 0 and ("classes 'melanoma' and 'nevus' have the same symptoms, so their symptom prompts "
                              "cannot tell them apart" in err) is warned, err
